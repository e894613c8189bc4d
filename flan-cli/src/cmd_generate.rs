//! `flan generate`: greedy, beam or sampled continuations, JSONL in and out.

use anyhow::Result;
use flan_data::records::Record;
use flan_data::TruncationCounts;
use flan_model::fallible;
use flan_model::generate::{generate, EarlyStopping, GenerationConfig, Strategy};
use flan_model::memory::{longest_that_fits, Call, MemoryEstimate};
use serde::Deserialize;
use std::path::PathBuf;

use crate::exit_code::usage;
use crate::model_io::{
    annotate, check_memory, encode_limited, non_finite_output, read_input, InputLimitArgs,
    LoadedModel, ModelArgs, Output, Remedies,
};
use crate::values;

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
    /// Maximum number of generated tokens (EOS included; at least 1).
    #[arg(long, value_parser = values::at_least_one)]
    pub max_new_tokens: usize,
    /// Beam search with this many beams (1 = greedy; at least 1).
    #[arg(long, default_value_t = 1, value_parser = values::at_least_one)]
    pub num_beams: usize,
    /// Beam search: score = sum log-prob / length^penalty (a finite number).
    #[arg(long, default_value_t = 1.0, value_parser = values::finite)]
    pub length_penalty: f64,
    /// Beam search stopping rule: true, false or never.
    #[arg(long, default_value = "false")]
    pub early_stopping: EarlyStopping,
    /// Sample instead of searching.
    #[arg(long)]
    pub sample: bool,
    /// Sampling temperature (finite, above 0).
    #[arg(long, default_value_t = 1.0, value_parser = values::positive)]
    pub temperature: f64,
    /// Sampling: keep the k most likely tokens (transformers' default 50; 0 disables).
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    /// Sampling: nucleus mass in (0, 1] (1.0 disables).
    #[arg(long, default_value_t = 1.0, value_parser = values::nucleus)]
    pub top_p: f64,
    /// Sampling seed (the same seed gives the same output).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sequences per input (samples, or best beams; at least 1); > 1 writes
    /// `{"samples": [...]}`.
    #[arg(long, default_value_t = 1, value_parser = values::at_least_one)]
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
        let config = GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            strategy,
            num_return_sequences: self.num_return_sequences,
            use_cache: true,
        };
        // The combinations (more sequences than beams, several greedy sequences) in the
        // library's words, before anything is read or loaded.
        config.check().map_err(|e| usage(e.to_string()))?;
        Ok(config)
    }

    /// The shape of one generation call over `batch` inputs of up to `input_len` tokens.
    fn call(&self, config: &GenerationConfig, batch: usize, input_len: u64) -> Call {
        let beams = match config.strategy {
            Strategy::Beam { num_beams, .. } => Some(num_beams),
            _ => None,
        };
        Call::Generate {
            batch: batch as u64,
            input_len,
            max_new_tokens: self.max_new_tokens as u64,
            rows_per_input: beams.unwrap_or(self.num_return_sequences) as u64,
            beam: beams.is_some(),
        }
    }

    /// The flags that make every call of this run big.
    fn settings(&self, batch: usize) -> String {
        let mut s = format!(
            "--batch-size {batch}, --max-new-tokens {}",
            self.max_new_tokens
        );
        if self.num_beams > 1 {
            s.push_str(&format!(", --num-beams {}", self.num_beams));
        }
        if self.num_return_sequences > 1 {
            s.push_str(&format!(
                ", --num-return-sequences {}",
                self.num_return_sequences
            ));
        }
        s
    }
}

/// Refuses, before any output is written, a run whose model calls cannot fit in memory: first
/// the flags alone (one-token inputs), then each batch with its longest input.
fn check_memory_of_batches(
    args: &GenerateArgs,
    config: &GenerationConfig,
    loaded: &LoadedModel,
    encoded: &[(Vec<i64>, usize)],
    records: &[Record<GenerateRecord>],
) -> Result<()> {
    let Some(budget) = loaded.budget.as_ref() else {
        return Ok(());
    };
    let cfg = loaded.model.config();
    let kind = loaded.model.kind();
    let batch = args.model.batch_size.min(encoded.len()).max(1);
    let estimate = |b: usize, len: u64| MemoryEstimate::of(cfg, kind, args.call(config, b, len));
    check_memory(
        Some(budget),
        estimate(batch, 1),
        format_args!("{} (even for one-token inputs)", args.settings(batch)),
        Remedies {
            flags: vec!["fewer beams, sequences, new tokens or a smaller --batch-size".into()],
            settings: "",
        },
        true,
    )?;
    for (chunk, recs) in encoded
        .chunks(args.model.batch_size)
        .zip(records.chunks(args.model.batch_size))
    {
        let (longest, record) = chunk
            .iter()
            .zip(recs)
            .max_by_key(|((ids, _), _)| ids.len())
            .map(|((ids, _), r)| (ids.len() as u64, r))
            .expect("chunks are not empty");
        let b = chunk.len();
        let mut flags = Vec::new();
        if let Some(fit) = longest_that_fits(budget.bytes, |len| estimate(b, len).bytes) {
            flags.push(format!(
                "--max-input-tokens {fit} (cuts longer inputs, counted)"
            ));
        }
        if b > 1 && estimate(1, longest).bytes <= budget.bytes {
            flags.push("a smaller --batch-size".into());
        }
        check_memory(
            Some(budget),
            estimate(b, longest),
            format_args!(
                "{}:{}: {longest} input tokens (in a batch of {b}; the encoder's attention grows \
                 with the square of the length)",
                args.input.display(),
                record.line
            ),
            Remedies {
                flags,
                settings: &args.settings(b),
            },
            false,
        )?;
    }
    Ok(())
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
    check_memory_of_batches(&args, &config, &loaded, &encoded, &records)?;
    let mut out = Output::open(args.output.as_ref())?;
    for (chunk, records) in encoded
        .chunks(args.model.batch_size)
        .zip(records.chunks(args.model.batch_size))
    {
        let rows: Vec<Vec<i64>> = chunk.iter().map(|(ids, _)| ids.clone()).collect();
        let outputs = fallible::catch("generating", || {
            let (ids, mask) = loaded.batch(&rows);
            generate(&loaded.model, &ids, &mask, &config)
        })?;
        for ((sequences, (_, cut)), record) in outputs.iter().zip(chunk).zip(records) {
            let mut items = Vec::with_capacity(sequences.len());
            for s in sequences {
                if !s.score.is_finite() {
                    return Err(non_finite_output(&args.input, record.line, s.score).into());
                }
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
            out.line(&line)?;
        }
    }
    out.finish()?;
    if let Some(note) = limit.and_then(|l| counts.describe("inputs", l.max_tokens)) {
        tracing::info!("flan generate: {note}");
    }
    Ok(())
}
