//! What `flan generate` and `flan score` share: resolving and loading `--model` (directory or hub
//! id) with its tokenizer, device and dtype flags, JSONL input with file:line errors, and a
//! line-per-record output.

use anyhow::{Context, Result};
use flan_data::records::{read_jsonl_records, Record, ID_FIELD};
use flan_data::tokenizer::Tokenizer;
use flan_data::{LengthLimit, Overlong, TruncationCounts};
use flan_model::{DeviceSpec, T5ForConditionalGeneration};
use serde::de::DeserializeOwned;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

use crate::exit_code::{data, usage};

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
        other => {
            return Err(usage(format!(
                "unknown --dtype {other:?}; expected f32, bf16 or f16"
            ))
            .into())
        }
    })
}

impl ModelArgs {
    /// Checks the flags and loads the model; load notes (aliases used) go to stderr.
    pub fn load(&self) -> Result<LoadedModel> {
        if self.batch_size == 0 {
            return Err(usage("--batch-size must be at least 1").into());
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

/// Reads the JSONL records of `--input` (see [`flan_data::records`]) and notes on stderr which
/// fields the command ignored.
pub fn read_input<T: DeserializeOwned>(
    command: &str,
    path: &Path,
    expected: &str,
) -> Result<Vec<Record<T>>> {
    let records = read_jsonl_records(path, expected)?;
    if let Some(note) = records.ignored_note() {
        eprintln!("flan {command}: {}: {note}", path.display());
    }
    Ok(records.records)
}

/// `--max-input-tokens` and `--overlong`, shared by the commands that encode inputs.
#[derive(clap::Args, Debug, Clone)]
pub struct InputLimitArgs {
    /// Cut inputs longer than this many tokens (EOS included; the EOS is kept), and count the
    /// cuts in each output record and on stderr. No limit by default: T5's relative positions
    /// take any length, at a memory cost quadratic in it.
    #[arg(long)]
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
