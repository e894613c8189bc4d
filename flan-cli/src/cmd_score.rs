//! `flan score`: log-likelihood of given targets for given inputs, JSONL in and out.

use anyhow::Result;
use flan_data::TruncationCounts;
use flan_model::score::score_batch;
use serde::Deserialize;
use std::io::Write;
use std::path::PathBuf;

use crate::model_io::{annotate, encode_limited, read_input, writer, InputLimitArgs, ModelArgs};

/// Arguments of `flan score`.
#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub limits: InputLimitArgs,
    /// Cut targets longer than this many tokens (EOS included and kept): the score is then of
    /// the cut target, and the output line says how many tokens were cut. No limit by default.
    #[arg(long)]
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
    let mut out = writer(args.output.as_ref())?;
    for (chunk, records) in encoded
        .chunks(args.model.batch_size)
        .zip(records.chunks(args.model.batch_size))
    {
        let inputs: Vec<Vec<i64>> = chunk.iter().map(|(i, _, _)| i.clone()).collect();
        let targets: Vec<Vec<i64>> = chunk.iter().map(|(_, t, _)| t.clone()).collect();
        let scores = score_batch(&loaded.model, &inputs, &targets)?;
        for ((s, (_, _, [inputs_cut, targets_cut])), record) in
            scores.iter().zip(chunk).zip(records)
        {
            let mut line = serde_json::json!({"logprob": s.logprob, "num_tokens": s.num_tokens});
            annotate(
                &mut line,
                record.id.as_ref(),
                &[
                    ("input_tokens_cut", *inputs_cut),
                    ("target_tokens_cut", *targets_cut),
                ],
            );
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    let notes = [
        input_limit.and_then(|l| input_counts.describe("inputs", l.max_tokens)),
        target_limit.and_then(|l| target_counts.describe("targets", l.max_tokens)),
    ];
    for note in notes.into_iter().flatten() {
        eprintln!("flan score: {note}");
    }
    Ok(())
}
