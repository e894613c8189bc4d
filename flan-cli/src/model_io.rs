//! What `flan generate` and `flan score` share: resolving and loading `--model` (directory or hub
//! id) with its tokenizer, device and dtype flags, JSONL input with file:line errors, and a
//! line-per-record output.

use anyhow::{bail, Context, Result};
use flan_data::tokenizer::Tokenizer;
use flan_model::{DeviceSpec, T5ForConditionalGeneration};
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Model flags common to the inference commands.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json) or a hub id such as
    /// google/flan-t5-small (looked up in the Hugging Face cache, downloaded when online).
    #[arg(long)]
    pub model: String,
    /// cpu, cuda, cuda:N or auto (CUDA when available). Under torchrun or srun, cuda and auto
    /// mean the process's own GPU (LOCAL_RANK, else SLURM_LOCALID).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Compute dtype: f32, bf16 (also on CPU) or f16 (T5 v1.1/Flan may overflow; prefer bf16).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
}

/// A loaded model and its tokenizer.
pub struct LoadedModel {
    pub model: T5ForConditionalGeneration,
    pub tokenizer: Tokenizer,
}

fn parse_dtype(dtype: &str) -> Result<Kind> {
    Ok(match dtype {
        "f32" | "fp32" | "float32" => Kind::Float,
        "bf16" | "bfloat16" => Kind::BFloat16,
        "f16" | "fp16" | "float16" => Kind::Half,
        other => bail!("unknown --dtype {other:?}; expected f32, bf16 or f16"),
    })
}

impl ModelArgs {
    /// Checks the flags and loads the model; load notes (aliases used) go to stderr.
    pub fn load(&self) -> Result<LoadedModel> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let device = self.device.resolve_from_env().context("--device")?;
        let kind = parse_dtype(&self.dtype)?;
        let dir = flan_model::hub::resolve_model(&self.model)?;
        let (model, report) = T5ForConditionalGeneration::from_pretrained(&dir, device, kind)
            .with_context(|| format!("loading model {}", dir.display()))?;
        for (var, key) in &report.aliased {
            eprintln!("flan: note: {var} loaded from {key}");
        }
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).with_context(|| {
            format!(
                "{}: the model directory needs tokenizer.json",
                dir.display()
            )
        })?;
        Ok(LoadedModel { model, tokenizer })
    }
}

impl LoadedModel {
    /// Token ids of `text` (EOS appended), as i64.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        Ok(self
            .tokenizer
            .encode(text)?
            .into_iter()
            .map(i64::from)
            .collect())
    }

    /// Right-padded `[batch, len]` ids and attention mask on the model's device.
    pub fn batch(&self, rows: &[Vec<i64>]) -> (Tensor, Tensor) {
        let width = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let pad = i64::from(self.tokenizer.pad_id());
        let mut ids = Vec::with_capacity(rows.len() * width);
        let mut mask = Vec::with_capacity(rows.len() * width);
        for r in rows {
            ids.extend_from_slice(r);
            ids.extend(std::iter::repeat_n(pad, width - r.len()));
            mask.extend(std::iter::repeat_n(1i64, r.len()));
            mask.extend(std::iter::repeat_n(0i64, width - r.len()));
        }
        let shape = [rows.len() as i64, width as i64];
        let device = self.model.device();
        (
            Tensor::from_slice(&ids).view(shape).to_device(device),
            Tensor::from_slice(&mask).view(shape).to_device(device),
        )
    }
}

/// Reads every line of a JSONL file as `T`; a bad line is an error naming the file and line.
/// Blank lines are errors too: the output must have one line per input line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, expected: &str) -> Result<Vec<T>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read", path.display(), i + 1))?;
        let record = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!("{}:{}: expected {expected}: {e}", path.display(), i + 1)
        })?;
        out.push(record);
    }
    Ok(out)
}

/// JSONL output to a file, or stdout when no path is given.
pub fn writer(output: Option<&PathBuf>) -> Result<Box<dyn Write>> {
    Ok(match output {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("{}: cannot create", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}
