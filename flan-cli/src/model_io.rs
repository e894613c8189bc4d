//! What `flan generate` and `flan score` share: resolving and loading `--model` (directory or hub
//! id) with its tokenizer, device and dtype flags, JSONL input with file:line errors, and a
//! line-per-record output.

use anyhow::{Context, Result};
use flan_data::atomic::AtomicFile;
use flan_data::records::{read_jsonl_records, Record, ID_FIELD};
use flan_data::tokenizer::Tokenizer;
use flan_data::{LengthLimit, Overlong, TruncationCounts};
use flan_model::memory::{human_bytes, MemoryBudget, MemoryEstimate};
use flan_model::{DeviceSpec, Dtype, ModelSource, T5ForConditionalGeneration};
use serde::de::DeserializeOwned;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tch::Tensor;

use crate::exit_code::{data, usage};

/// Which model to load: `--model` and `--adapter`, the same flags in every command that loads
/// one (`generate`, `score`, `eval run`, `serve`, `merge`).
#[derive(clap::Args, Debug, Clone)]
pub struct SourceArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json) or a hub id such as
    /// google/flan-t5-small (looked up in the Hugging Face cache, downloaded when online).
    /// A PEFT LoRA adapter directory also works here (its base from base_model_name_or_path).
    #[arg(long, value_name = "DIR|HUB_ID")]
    pub model: String,
    /// A PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors) to apply over
    /// --model: a directory or a hub id.
    #[arg(long, value_name = "DIR|HUB_ID")]
    pub adapter: Option<String>,
}

impl SourceArgs {
    /// Where the model (and adapter) are: directories as given, hub ids from the cache or the hub.
    pub fn resolve(&self) -> Result<ModelSource> {
        Ok(ModelSource::resolve(&self.model, self.adapter.as_deref())?)
    }
}

/// Model flags common to the inference commands.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
    /// Examples per forward pass (at least 1).
    #[arg(long, default_value_t = 16, value_parser = crate::values::at_least_one)]
    pub batch_size: usize,
}

/// Where a model runs and in which dtype: the flags of every command that loads a model
/// (`generate`, `score`, `eval run`, `eval compare`).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct PlacementArgs {
    /// cpu, cuda, cuda:N or auto (CUDA when available). Under torchrun or srun, cuda and auto
    /// mean the process's own GPU (LOCAL_RANK, else SLURM_LOCALID).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Weights and compute dtype: f32, bf16 (also on CPU; a bf16 checkpoint loads without an
    /// fp32 copy) or f16 (T5 v1.1/Flan may overflow; prefer bf16).
    #[arg(long, default_value = "f32")]
    pub dtype: Dtype,
}

/// A loaded model and its tokenizer.
pub struct LoadedModel {
    pub model: T5ForConditionalGeneration,
    pub tokenizer: Tokenizer,
    /// What a model call may take ([`memory_budget`]), read after the weights were loaded.
    pub budget: Option<MemoryBudget>,
}

impl ModelArgs {
    /// Checks the flags and loads the model; load notes (aliases used) go to stderr.
    pub fn load(&self) -> Result<LoadedModel> {
        let device = self
            .placement
            .device
            .resolve_from_env()
            .context("--device")?;
        let kind = self.placement.dtype.kind();
        let source = self.source.resolve()?;
        let (model, report, adapter) = source
            .load(device, kind)
            // flan-model's load errors name the file (or the directory) themselves.
            .context("loading the model")?;
        for (var, key) in &report.aliased {
            tracing::info!("flan: note: {var} loaded from {key}");
        }
        if let Some(adapter) = adapter {
            tracing::info!(
                "flan: LoRA adapter {} on {} modules ({} parameters){}",
                source.adapter.as_deref().unwrap_or(Path::new("")).display(),
                adapter.modules.len(),
                adapter.adapter_parameters,
                if adapter.replaced.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; base weights it replaces: {}",
                        adapter.replaced.join(", ")
                    )
                }
            );
        }
        let tokenizer_file = source.tokenizer_file();
        let tokenizer = Tokenizer::from_file(&tokenizer_file).with_context(|| {
            format!(
                "{}: the model (or adapter) directory needs tokenizer.json",
                tokenizer_file.display()
            )
        })?;
        let budget = memory_budget(device)?;
        Ok(LoadedModel {
            model,
            tokenizer,
            budget,
        })
    }
}

/// The memory a model call on `device` may take: [`MemoryBudget::detect`] on the CPU; on a GPU
/// only `FLAN_MEMORY_LIMIT` (host memory says nothing about the GPU's, and an out-of-memory
/// there is caught as an error by [`flan_model::fallible`]).
pub fn memory_budget(device: tch::Device) -> Result<Option<MemoryBudget>> {
    if device != tch::Device::Cpu && std::env::var_os(flan_model::memory::LIMIT_VAR).is_none() {
        return Ok(None);
    }
    MemoryBudget::detect().map_err(|e| usage(e).into())
}

/// What a refused model call could change, for the message.
pub struct Remedies<'a> {
    /// Flags that would help, each with the value to try (`--max-input-tokens 1234`).
    pub flags: Vec<String>,
    /// The flags that make the call big whatever the input (`--num-beams 100000`).
    pub settings: &'a str,
}

/// Refuses a call whose [`MemoryEstimate`] exceeds the budget. `what` describes the batch (a
/// record at `file:line`, or the flags alone); the error is a data error (exit 3) for a record,
/// a usage error (exit 2) for flags that cannot fit whatever the input.
pub fn check_memory(
    budget: Option<&MemoryBudget>,
    estimate: MemoryEstimate,
    what: std::fmt::Arguments<'_>,
    remedies: Remedies<'_>,
    flags_only: bool,
) -> Result<()> {
    let Some(budget) = budget else {
        return Ok(());
    };
    if estimate.bytes <= budget.bytes {
        return Ok(());
    }
    let mut message = format!(
        "{what}: the model call needs about {}, more than the {} available ({}){}",
        human_bytes(estimate.bytes),
        human_bytes(budget.bytes),
        budget.source,
        if remedies.settings.is_empty() {
            String::new()
        } else {
            format!(" with {}", remedies.settings)
        },
    );
    if remedies.flags.is_empty() {
        message.push_str(&format!(
            "; set {} to a budget you know is free",
            flan_model::memory::LIMIT_VAR
        ));
    } else {
        message.push_str(&format!("; try {}", remedies.flags.join(", or ")));
    }
    Err(if flags_only {
        usage(message)
    } else {
        data(message)
    }
    .into())
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
        let (ids, mask) =
            flan_model::padding::inputs_and_mask(rows, i64::from(self.tokenizer.pad_id()));
        let device = self.model.device();
        (ids.to_device(device), mask.to_device(device))
    }
}

/// Reads the JSONL records of `--input` (see [`flan_data::records`]) and notes on stderr which
/// fields the command ignored.
pub fn read_input<T: DeserializeOwned>(
    command: &str,
    path: &Path,
    expected: &str,
) -> Result<Vec<Record<T>>> {
    let records = read_jsonl_records(path, expected)?;
    if let Some(note) = records.ignored_note() {
        tracing::info!("flan {command}: {}: {note}", path.display());
    }
    Ok(records.records)
}

/// `--max-input-tokens` and `--overlong`, shared by the commands that encode inputs.
#[derive(clap::Args, Debug, Clone)]
pub struct InputLimitArgs {
    /// Cut inputs longer than this many tokens (EOS included and kept; at least 1), and count
    /// the cuts in each output record and on stderr. No limit by default: T5's relative
    /// positions take any length, at a memory cost quadratic in it; a batch that would not fit
    /// in memory is refused before the model runs, naming its line and a limit that fits.
    #[arg(long, value_parser = crate::values::at_least_one)]
    pub max_input_tokens: Option<usize>,
    /// What a sequence over its limit gets: `truncate` (counted) or `error` (the run stops at
    /// its line, before any output is written).
    #[arg(long, default_value = "truncate")]
    pub overlong: Overlong,
}

impl InputLimitArgs {
    /// The input limit, when one is set.
    pub fn input_limit(&self) -> Result<Option<LengthLimit>> {
        self.limit("--max-input-tokens", self.max_input_tokens)
    }

    /// A limit of `value` tokens from `flag`, with this `--overlong`.
    pub fn limit(&self, flag: &str, value: Option<usize>) -> Result<Option<LengthLimit>> {
        match value {
            Some(0) => Err(usage(format!("{flag} must be at least 1 (the EOS)")).into()),
            Some(max_tokens) => Ok(Some(LengthLimit {
                max_tokens,
                overlong: self.overlong,
            })),
            None => Ok(None),
        }
    }
}

/// Encodes one field of the record at `path:line` under `limit` (counted in `counts`); returns
/// the ids and how many tokens were cut.
pub fn encode_limited(
    loaded: &LoadedModel,
    text: &str,
    limit: Option<&LengthLimit>,
    counts: &mut TruncationCounts,
    (path, line, flag): (&Path, usize, &str),
) -> Result<(Vec<i64>, usize)> {
    let mut ids = loaded
        .encode(text)
        .with_context(|| format!("{}:{line}: tokenizing", path.display()))?;
    let Some(limit) = limit else {
        return Ok((ids, 0));
    };
    let len = ids.len();
    limit.apply(&mut ids, counts).map_err(|too_long| {
        data(format!(
            "{}:{line}: {} tokens, over {flag} {} (--overlong error refuses it; \
             --overlong truncate cuts it and counts the cut)",
            path.display(),
            too_long.len,
            too_long.limit
        ))
    })?;
    let cut = len - ids.len();
    Ok((ids, cut))
}

/// The error for a record whose output came out NaN or infinite although the weights are finite
/// (they are checked at load): an overflow in the computation, typically in float16. Never
/// written as `null`: a consumer would read it as a score.
pub fn non_finite_output(path: &Path, line: usize, value: f64) -> crate::exit_code::Classified {
    crate::exit_code::model(format!(
        "{}:{line}: the model's log-probability for this record is {value}, not a number a \
         consumer could use; the weights are finite, so the computation overflowed (with \
         --dtype f16, try bf16 or f32)",
        path.display()
    ))
}

/// Adds `id` (when the input record had one) and the tokens cut from each field (when any) to
/// an output record.
pub fn annotate(
    record: &mut serde_json::Value,
    id: Option<&serde_json::Value>,
    cuts: &[(&str, usize)],
) {
    if let serde_json::Value::Object(map) = record {
        if let Some(id) = id {
            map.insert(ID_FIELD.to_string(), id.clone());
        }
        for (field, cut) in cuts {
            if *cut > 0 {
                map.insert(field.to_string(), serde_json::json!(cut));
            }
        }
    }
}

/// Where a command's JSONL goes: a file that replaces its old version only when the run
/// succeeds ([`AtomicFile`]), or stdout, which streams line by line.
pub enum Output {
    /// `--output PATH`.
    File(AtomicFile),
    /// No `--output`.
    Stdout(BufWriter<std::io::StdoutLock<'static>>),
}

impl Output {
    /// Opens `output`, or stdout when no path is given.
    pub fn open(output: Option<&PathBuf>) -> Result<Output> {
        Ok(match output {
            Some(path) => Output::File(AtomicFile::create(path)?),
            None => Output::Stdout(BufWriter::new(std::io::stdout().lock())),
        })
    }

    /// Writes one line; an error names the file.
    pub fn line(&mut self, line: impl std::fmt::Display) -> Result<()> {
        let text = format!("{line}\n");
        match self {
            Output::File(f) => f.write_bytes(text.as_bytes())?,
            Output::Stdout(out) => out.write_all(text.as_bytes()).context("writing stdout")?,
        }
        Ok(())
    }

    /// Puts the file in place (or flushes stdout): call it once the run has succeeded.
    pub fn finish(self) -> Result<()> {
        match self {
            Output::File(f) => f.commit()?,
            Output::Stdout(mut out) => out.flush().context("writing stdout")?,
        }
        Ok(())
    }
}
