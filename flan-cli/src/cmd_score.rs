//! `flan score`: log-likelihood of given targets for given inputs, JSONL in and out.

use anyhow::Result;
use flan_data::records::Record;
use flan_data::TruncationCounts;
use flan_model::fallible;
use flan_model::memory::{longest_that_fits, Call, MemoryEstimate};
use flan_model::score::score_batch;
use serde::Deserialize;
use std::path::PathBuf;

use crate::model_io::{
    annotate, check_memory, encode_limited, non_finite_output, read_input, InputLimitArgs,
    LoadedModel, ModelArgs, Output, Remedies,
};
use crate::values;

/// Arguments of `flan score`.
#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub limits: InputLimitArgs,
    /// Cut targets longer than this many tokens (EOS included and kept; at least 1): the score
    /// is then of the cut target, and the output line says how many tokens were cut. No limit
    /// by default (a target too long for memory is refused, naming its line).
    #[arg(long, value_parser = values::at_least_one)]
    pub max_target_tokens: Option<usize>,
    /// JSONL with one `{"inputs": "...", "targets": "..."}` per line; an `id` is copied to the
    /// output line, other fields are ignored (and counted on stderr).
    #[arg(long)]
    pub input: PathBuf,
    /// Output JSONL (`{"logprob": ..., "num_tokens": ...}` per input line, with `id` when the
    /// input had one and `input_tokens_cut` / `target_tokens_cut` when a field was cut); stdout
    /// if absent.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ScoreRecord {
    inputs: String,
    targets: String,
}

/// One encoded record: input ids, target ids and the tokens cut from each.
type Encoded = (Vec<i64>, Vec<i64>, [usize; 2]);

/// Refuses, before any output is written, a batch whose scoring call cannot fit in memory,
/// naming its longest record and the limits that would make it fit.
fn check_memory_of_batches(
    args: &ScoreArgs,
    loaded: &LoadedModel,
    encoded: &[Encoded],
    records: &[Record<ScoreRecord>],
) -> Result<()> {
    let Some(budget) = loaded.budget.as_ref() else {
        return Ok(());
    };
    let (cfg, kind) = (loaded.model.config(), loaded.model.kind());
    let estimate = |batch: usize, input_len: u64, target_len: u64| {
        MemoryEstimate::of(
            cfg,
            kind,
            Call::Score {
                batch: batch as u64,
                input_len,
                target_len,
            },
        )
        .bytes
    };
    for (chunk, recs) in encoded
        .chunks(args.model.batch_size)
        .zip(records.chunks(args.model.batch_size))
    {
        let b = chunk.len();
        let input_len = chunk.iter().map(|(i, _, _)| i.len()).max().unwrap_or(1) as u64;
        let target_len = chunk.iter().map(|(_, t, _)| t.len()).max().unwrap_or(1) as u64;
        let need = estimate(b, input_len, target_len);
        if need <= budget.bytes {
            continue;
        }
        // Name the record that makes the batch big: the longest input and target together.
        let (_, record) = chunk
            .iter()
            .zip(recs)
            .max_by_key(|((i, t, _), _)| i.len().max(t.len()))
            .expect("chunks are not empty");
        let mut flags = Vec::new();
        match longest_that_fits(budget.bytes, |len| estimate(b, len, target_len)) {
            Some(fit) if fit < input_len => flags.push(format!(
                "--max-input-tokens {fit} (cuts longer inputs, counted)"
            )),
            _ => {}
        }
        match longest_that_fits(budget.bytes, |len| estimate(b, input_len, len)) {
            Some(fit) if fit < target_len => flags.push(format!(
                "--max-target-tokens {fit} (cuts longer targets, counted)"
            )),
            _ => {}
        }
        if b > 1 && estimate(1, input_len, target_len) <= budget.bytes {
            flags.push("a smaller --batch-size".into());
        }
        check_memory(
            Some(budget),
            MemoryEstimate { bytes: need },
            format_args!(
                "{}:{}: {input_len} input and {target_len} target tokens (in a batch of {b}; \
                 attention grows with the square of the lengths)",
                args.input.display(),
                record.line
            ),
            Remedies {
                flags,
                settings: "",
            },
            false,
        )?;
    }
    Ok(())
}

/// Runs `flan score`.
pub fn run(args: ScoreArgs) -> Result<()> {
    let input_limit = args.limits.input_limit()?;
    let target_limit = args
        .limits
        .limit("--max-target-tokens", args.max_target_tokens)?;
    let records = read_input::<ScoreRecord>(
        "score",
        &args.input,
        r#"{"inputs": string, "targets": string}"#,
    )?;
    let loaded = args.model.load()?;
    // Every record is encoded (and checked against the limits) before any output is written.
    let (mut input_counts, mut target_counts) =
        (TruncationCounts::default(), TruncationCounts::default());
    let mut encoded = Vec::with_capacity(records.len());
    for r in &records {
        let at = |flag| (args.input.as_path(), r.line, flag);
        let (inputs, inputs_cut) = encode_limited(
            &loaded,
            &r.fields.inputs,
            input_limit.as_ref(),
            &mut input_counts,
            at("--max-input-tokens"),
        )?;
        let (targets, targets_cut) = encode_limited(
            &loaded,
            &r.fields.targets,
            target_limit.as_ref(),
            &mut target_counts,
            at("--max-target-tokens"),
        )?;
        encoded.push((inputs, targets, [inputs_cut, targets_cut]));
    }
    check_memory_of_batches(&args, &loaded, &encoded, &records)?;
    let mut out = Output::open(args.output.as_ref())?;
    for (chunk, records) in encoded
        .chunks(args.model.batch_size)
        .zip(records.chunks(args.model.batch_size))
    {
        let inputs: Vec<Vec<i64>> = chunk.iter().map(|(i, _, _)| i.clone()).collect();
        let targets: Vec<Vec<i64>> = chunk.iter().map(|(_, t, _)| t.clone()).collect();
        let scores = fallible::catch("scoring", || score_batch(&loaded.model, &inputs, &targets))?;
        for ((s, (_, _, [inputs_cut, targets_cut])), record) in
            scores.iter().zip(chunk).zip(records)
        {
            if !s.logprob.is_finite() {
                return Err(non_finite_output(&args.input, record.line, s.logprob).into());
            }
            let mut line = serde_json::json!({"logprob": s.logprob, "num_tokens": s.num_tokens});
            annotate(
                &mut line,
                record.id.as_ref(),
                &[
                    ("input_tokens_cut", *inputs_cut),
                    ("target_tokens_cut", *targets_cut),
                ],
            );
            out.line(&line)?;
        }
    }
    out.finish()?;
    let notes = [
        input_limit.and_then(|l| input_counts.describe("inputs", l.max_tokens)),
        target_limit.and_then(|l| target_counts.describe("targets", l.max_tokens)),
    ];
    for note in notes.into_iter().flatten() {
        tracing::info!("flan score: {note}");
    }
    Ok(())
}
