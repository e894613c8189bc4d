//! `flan merge`: folds a LoRA adapter into its base model and saves a plain Hugging Face
//! checkpoint (what peft's `merge_and_unload()` + `save_pretrained` give), for serving or
//! exporting without peft.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

use crate::exit_code::usage;
use crate::model_io::{PlacementArgs, SourceArgs};

/// Arguments of `flan merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    // The base model and the adapter to merge into it (or --model naming the adapter directory).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Where the merged model goes (config.json, generation_config.json, model.safetensors,
    /// tokenizer.json); must not exist or be empty.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub placement: PlacementArgs,
}

pub fn run(a: MergeArgs) -> Result<()> {
    let source = a.source.resolve()?;
    if source.adapter.is_none() {
        return Err(usage(format!(
            "--model {} is a plain model and no --adapter was given: nothing to merge",
            a.source.model
        ))
        .into());
    }
    if a.output.exists()
        && std::fs::read_dir(&a.output)
            .with_context(|| a.output.display().to_string())?
            .next()
            .is_some()
    {
        return Err(usage(format!(
            "--output {} exists and is not empty; choose a new directory",
            a.output.display()
        ))
        .into());
    }
    let device = a.placement.device.resolve_from_env().context("--device")?;
    let (model, _, _) = source
        .load(device, a.placement.dtype.kind())
        .context("loading the model")?;
    let merged = model.merge_adapter()?;
    model.save_pretrained(&a.output)?;
    let tokenizer = source.tokenizer_file();
    if tokenizer.is_file() {
        std::fs::copy(&tokenizer, a.output.join("tokenizer.json"))
            .with_context(|| format!("copying {}", tokenizer.display()))?;
    } else {
        bail!(
            "{}: no tokenizer.json to copy next to the merged weights",
            tokenizer.display()
        );
    }
    tracing::info!(
        "flan merge: {} merged into {} modules, saved to {}",
        source.describe(),
        merged.len(),
        a.output.display()
    );
    Ok(())
}
