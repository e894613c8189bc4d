//! `flan generate`: greedy, beam or sampled continuations, JSONL in and out.

use anyhow::Result;
use flan_data::TruncationCounts;
use flan_model::generate::{generate, EarlyStopping, GenerationConfig, Strategy};
use serde::Deserialize;
use std::io::Write;
use std::path::PathBuf;

use crate::exit_code::usage;
use crate::model_io::{annotate, encode_limited, read_input, writer, InputLimitArgs, ModelArgs};

/// Arguments of `flan generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub limits: InputLimitArgs,
    /// JSONL with one `{"inputs": "..."}` per line; an `id` is copied to the output line, other
    /// fields are ignored (and counted on stderr).
    #[arg(long)]
    pub input: PathBuf,
    /// Output JSONL, one line per input line (`text`, `token_ids`; `id` when the input had one;
    /// `input_tokens_cut` when the input was cut); stdout if absent.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Maximum number of generated tokens (EOS included).
    #[arg(long)]
    pub max_new_tokens: usize,
    /// Beam search with this many beams (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub num_beams: usize,
    /// Beam search: score = sum log-prob / length^penalty.
    #[arg(long, default_value_t = 1.0)]
    pub length_penalty: f64,
    /// Beam search stopping rule: true, false or never.
    #[arg(long, default_value = "false")]
    pub early_stopping: EarlyStopping,
    /// Sample instead of searching.
    #[arg(long)]
    pub sample: bool,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Sampling: keep the k most likely tokens (transformers' default 50; 0 disables).
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    /// Sampling: nucleus mass (1.0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Sampling seed (the same seed gives the same output).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sequences per input (samples, or best beams); > 1 writes `{"samples": [...]}`.
    #[arg(long, default_value_t = 1)]
    pub num_return_sequences: usize,
}

#[derive(Deserialize)]
struct GenerateRecord {
    inputs: String,
}

impl GenerateArgs {
    /// Turns the flags into a checked generation config.
    fn config(&self) -> Result<GenerationConfig> {
        let strategy = if self.sample {
            if self.num_beams > 1 {
                return Err(usage("--sample and --num-beams > 1 cannot be combined").into());
            }
            Strategy::Sample {
                temperature: self.temperature,
                top_k: (self.top_k > 0).then_some(self.top_k),
                top_p: (self.top_p < 1.0).then_some(self.top_p),
                seed: self.seed,
            }
        } else if self.num_beams > 1 {
            Strategy::Beam {
                num_beams: self.num_beams,
                length_penalty: self.length_penalty,
                early_stopping: self.early_stopping,
            }
        } else {
            Strategy::Greedy
        };
        if self.max_new_tokens == 0 {
            return Err(usage("--max-new-tokens must be at least 1").into());
        }
        Ok(GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            strategy,
            num_return_sequences: self.num_return_sequences,
            use_cache: true,
        })
    }
}

/// Runs `flan generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let config = args.config()?;
    let limit = args.limits.input_limit()?;
    let records = read_input::<GenerateRecord>("generate", &args.input, r#"{"inputs": string}"#)?;
    let loaded = args.model.load()?;
    // Every input is encoded (and checked against the limit) before any output is written.
    let mut counts = TruncationCounts::default();
    let mut encoded = Vec::with_capacity(records.len());
    for r in &records {
        let at = (args.input.as_path(), r.line, "--max-input-tokens");
        encoded.push(encode_limited(
            &loaded,
            &r.fields.inputs,
            limit.as_ref(),
            &mut counts,
            at,
        )?);
    }
    let mut out = writer(args.output.as_ref())?;
    for (chunk, records) in encoded
        .chunks(args.model.batch_size)
        .zip(records.chunks(args.model.batch_size))
    {
        let rows: Vec<Vec<i64>> = chunk.iter().map(|(ids, _)| ids.clone()).collect();
        let (ids, mask) = loaded.batch(&rows);
        let outputs = generate(&loaded.model, &ids, &mask, &config)?;
        for ((sequences, (_, cut)), record) in outputs.iter().zip(chunk).zip(records) {
            let mut items = Vec::with_capacity(sequences.len());
            for s in sequences {
                let ids: Vec<u32> = s.token_ids.iter().map(|&t| t as u32).collect();
                let text = loaded.tokenizer.decode(&ids, true)?;
                items.push(serde_json::json!({"text": text, "token_ids": s.token_ids}));
            }
            let mut line = if args.num_return_sequences > 1 {
                serde_json::json!({ "samples": items })
            } else {
                items.pop().unwrap_or_default()
            };
            annotate(&mut line, record.id.as_ref(), &[("input_tokens_cut", *cut)]);
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    if let Some(note) = limit.and_then(|l| counts.describe("inputs", l.max_tokens)) {
        eprintln!("flan generate: {note}");
    }
    Ok(())
}
