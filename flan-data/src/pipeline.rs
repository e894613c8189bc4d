//! The steps after mixing: tokenizing mixed examples in parallel, statistics of a mixture sample
//! (what `flan mixture --stats` prints) and exporting the stream as JSONL shards.

use crate::atomic::{commit_all, AtomicFile};
use crate::error::{Error, Result};
use crate::mixture::{MixedExample, Mixture, MixtureStream};
use crate::pack::{PackStats, Packer, TokenizedExample};
use crate::tokenizer::Tokenizer;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Tokenizes examples in parallel, truncating to the lengths with EOS kept.
pub fn tokenize_examples(
    tokenizer: &Tokenizer,
    examples: &[MixedExample],
    input_len: usize,
    target_len: usize,
) -> Result<Vec<TokenizedExample>> {
    examples
        .par_iter()
        .map(|e| tokenize_example(tokenizer, e, input_len, target_len))
        .collect()
}

/// Tokenizes one example, truncating to the lengths with EOS kept. An example that comes as ids
/// (span corruption, made with the mixture's tokenizer) keeps them, cut the same way.
pub fn tokenize_example(
    tokenizer: &Tokenizer,
    example: &MixedExample,
    input_len: usize,
    target_len: usize,
) -> Result<TokenizedExample> {
    if let Some(tokens) = &example.tokens {
        let cut = |ids: &[u32], max_len: usize| -> Vec<u32> {
            if ids.len() <= max_len {
                return ids.to_vec();
            }
            if max_len == 0 {
                return Vec::new();
            }
            let mut out = ids[..max_len - 1].to_vec();
            out.push(tokenizer.eos_id());
            out
        };
        return Ok(TokenizedExample {
            inputs: cut(&tokens.inputs, input_len),
            targets: cut(&tokens.targets, target_len),
        });
    }
    Ok(TokenizedExample {
        inputs: tokenizer.encode_truncated(&example.inputs, input_len)?,
        targets: tokenizer.encode_truncated(&example.targets, target_len)?,
    })
}

/// The next `n` examples of `stream`, rendered and tokenized in one parallel pass (see
/// [`MixtureStream::next_batch_with`]): the same ids as [`tokenize_examples`] over
/// [`MixtureStream::next_batch`], faster.
pub fn next_tokenized(
    stream: &mut MixtureStream,
    tokenizer: &Tokenizer,
    n: usize,
    input_len: usize,
    target_len: usize,
) -> Result<Vec<TokenizedExample>> {
    stream.next_batch_with(n, |e| {
        tokenize_example(tokenizer, &e, input_len, target_len)
    })
}

/// Per-task line of [`MixtureStats`].
#[derive(Debug, Clone, Serialize)]
pub struct TaskStats {
    /// Task name.
    pub task: String,
    /// Submixture.
    pub submixture: String,
    /// Examples read.
    pub examples: usize,
    /// Records skipped in lenient mode.
    pub skipped: usize,
    /// Fields the reader ignored (not used by the format), with the records they were on.
    pub ignored_fields: BTreeMap<String, usize>,
    /// min(cap, examples).
    pub rate: f64,
    /// Computed probability.
    pub probability: f64,
    /// Draws in the sample.
    pub sampled: u64,
    /// Share of the sample.
    pub sampled_share: f64,
    /// For a span-corruption task: its chunks (the examples), empty documents, documents split
    /// into several chunks and chunks shorter than `raw_length`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<crate::span_corruption::ChunkCounts>,
}

/// Statistics of a mixture over a sample of its stream.
#[derive(Debug, Clone, Serialize)]
pub struct MixtureStats {
    /// Sample size.
    pub sample: u64,
    /// Seed of the sample.
    pub seed: u64,
    /// Per task.
    pub tasks: Vec<TaskStats>,
    /// Per submixture: (computed probability, sampled share).
    pub submixtures: BTreeMap<String, (f64, f64)>,
    /// Submixtures without tasks (their weight is spread over the others).
    pub empty_submixtures: Vec<String>,
    /// Held-out tasks that were found and excluded.
    pub excluded: Vec<String>,
    /// Share of each rendering (`form` or `form+options`; `span_corruption` for examples of
    /// span-corruption tasks), over the rendered part of the sample.
    pub template_shares: BTreeMap<String, f64>,
    /// Share of each (form, template index).
    pub template_index_shares: BTreeMap<String, f64>,
    /// Mean exemplars per few-shot example.
    pub mean_exemplars: f64,
    /// Examples rendered (and tokenized/packed, with a tokenizer) for the shares.
    pub rendered: u64,
    /// Packing over the rendered examples, when a tokenizer was given.
    pub packing: Option<PackStats>,
    /// Packing efficiency, when a tokenizer was given.
    pub packing_efficiency: Option<f64>,
}

/// Draws `sample` task choices (for rates) and renders `rendered` examples (for template shares
/// and, with a tokenizer, packing into `batch_size` rows).
pub fn mixture_stats(
    mixture: &Arc<Mixture>,
    seed: u64,
    sample: u64,
    rendered: usize,
    tokenizer: Option<&Tokenizer>,
    batch_size: usize,
) -> Result<MixtureStats> {
    mixture.check()?;
    let mut counts = vec![0u64; mixture.rates().len()];
    let mut stream = mixture.stream(seed);
    for _ in 0..sample {
        counts[stream.next_task()] += 1;
    }
    let share = |c: u64| {
        if sample == 0 {
            0.0
        } else {
            c as f64 / sample as f64
        }
    };
    let mut submixtures: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let tasks: Vec<TaskStats> = mixture
        .rates()
        .iter()
        .zip(&counts)
        .enumerate()
        .map(|(i, (r, &c))| {
            let e = submixtures.entry(r.submixture.clone()).or_default();
            e.0 += r.probability;
            e.1 += share(c);
            TaskStats {
                task: r.task.clone(),
                submixture: r.submixture.clone(),
                examples: r.examples,
                skipped: mixture.skipped(i),
                ignored_fields: mixture
                    .registry()
                    .tasks()
                    .get(i)
                    .map(|t| t.ignored.clone())
                    .unwrap_or_default(),
                rate: r.rate,
                probability: r.probability,
                sampled: c,
                sampled_share: share(c),
                chunks: mixture.span_task(i).and_then(|t| t.counts()),
            }
        })
        .collect();

    let examples = mixture.stream(seed).next_batch(rendered)?;
    let mut forms: BTreeMap<String, u64> = BTreeMap::new();
    let mut indices: BTreeMap<String, u64> = BTreeMap::new();
    let (mut few, mut shots) = (0u64, 0u64);
    for e in &examples {
        if mixture.span_task(e.task_index).is_some() {
            *forms.entry("span_corruption".to_string()).or_default() += 1;
            continue;
        }
        let key = if e.with_options {
            format!("{}+options", e.form.name())
        } else {
            e.form.name().to_string()
        };
        *forms.entry(key).or_default() += 1;
        *indices
            .entry(format!("{}#{}", e.form.name(), e.template))
            .or_default() += 1;
        if e.form == crate::render::Form::FewShot {
            few += 1;
            shots += e.exemplars as u64;
        }
    }
    let n = examples.len().max(1) as f64;
    let to_share =
        |m: BTreeMap<String, u64>| m.into_iter().map(|(k, v)| (k, v as f64 / n)).collect();
    let packing = match tokenizer {
        Some(tok) => {
            let tokenized =
                tokenize_examples(tok, &examples, mixture.input_len(), mixture.target_len())?;
            let mut packer = Packer::new(batch_size, mixture.input_len(), mixture.target_len())?;
            for t in &tokenized {
                packer.push(t);
            }
            packer.finish();
            Some(packer.stats())
        }
        None => None,
    };
    Ok(MixtureStats {
        sample,
        seed,
        tasks,
        submixtures,
        empty_submixtures: mixture.empty_submixtures().to_vec(),
        excluded: mixture.excluded().to_vec(),
        template_shares: to_share(forms),
        template_index_shares: to_share(indices),
        mean_exemplars: if few == 0 {
            0.0
        } else {
            shots as f64 / few as f64
        },
        rendered: examples.len() as u64,
        packing_efficiency: packing.map(|p| p.efficiency()),
        packing,
    })
}

/// One exported record: readable back as a `flan_collection` (and as generic JSONL).
#[derive(Serialize)]
struct Record<'a> {
    task: &'a str,
    inputs: &'a str,
    targets: &'a str,
    task_source: &'a str,
    task_name: &'a str,
    template_type: &'a str,
}

/// The JSONL line of an example: `{"task", "inputs", "targets", "task_source", "task_name",
/// "template_type"}`, the last three as the Flan collection spells them, so that an export is
/// itself a collection (`format = "flan_collection"`). A span-corruption example is written as
/// its ids decoded (sentinels `<extra_id_N>` shown, EOS left out) with template type `zs_noopt`.
pub fn to_jsonl(e: &MixedExample) -> Result<String> {
    serde_json::to_string(&Record {
        task: &e.task,
        inputs: &e.inputs,
        targets: &e.targets,
        task_source: &e.task_source,
        task_name: &e.task,
        template_type: e.template_type.name(),
    })
    .map_err(|err| Error::config("jsonl", err.to_string()))
}

/// Writes the first `total` examples of the stream as `shards` JSONL files
/// (`mixture-00000-of-00004.jsonl`, ...); shard k holds positions p with p % shards == k, so the
/// files are the sharded streams a k-of-n worker would see. Returns the paths.
pub fn export_shards(
    mixture: &Arc<Mixture>,
    seed: u64,
    dir: &Path,
    total: u64,
    shards: u64,
) -> Result<Vec<PathBuf>> {
    if shards == 0 {
        return Err(Error::config("export", "need at least one shard"));
    }
    mixture.check()?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Every shard is written in full before any replaces its old version, so that a failed
    // export leaves the previous export whole.
    let written: Vec<AtomicFile> = (0..shards)
        .into_par_iter()
        .map(|k| {
            let path = dir.join(format!("mixture-{k:05}-of-{shards:05}.jsonl"));
            let mut out = AtomicFile::create(&path)?;
            let mut stream = mixture.stream(seed).shard(k, shards)?;
            let mut left = total / shards + u64::from(k < total % shards);
            while left > 0 {
                let chunk = left.min(4096);
                for e in stream.next_batch(chunk as usize)? {
                    let mut line = to_jsonl(&e)?;
                    line.push('\n');
                    out.write_bytes(line.as_bytes())?;
                }
                left -= chunk;
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    let paths = written.iter().map(|f| f.path().to_path_buf()).collect();
    commit_all(written)?;
    Ok(paths)
}

/// Trains a Unigram tokenizer (`vocab_size` pieces + 100 sentinels) on the text of a mixture:
/// every task's inputs, targets and rationales, the documents of span-corruption tasks, plus
/// `rendered` examples of the stream (its text tasks) so that the template wording is in the
/// vocabulary.
pub fn train_tokenizer_on_mixture(
    mixture: &Arc<Mixture>,
    seed: u64,
    rendered: usize,
    vocab_size: usize,
) -> Result<Tokenizer> {
    let mut corpus: Vec<String> = Vec::new();
    for task in mixture.registry().tasks() {
        if let Some(d) = &task.definition {
            corpus.push(d.clone());
        }
        for e in task.examples.iter().chain(&task.demonstrations) {
            corpus.push(e.inputs.clone());
            corpus.push(e.targets.clone());
            if let Some(r) = &e.rationale {
                corpus.push(r.clone());
            }
        }
    }
    for task in mixture.span_tasks() {
        corpus.extend(task.documents.iter().map(|d| d.text.clone()));
    }
    for e in mixture.stream(seed).next_text_batch(rendered)? {
        corpus.push(e.inputs);
        corpus.push(e.targets);
    }
    Tokenizer::train_unigram(
        corpus.into_iter(),
        vocab_size,
        crate::tokenizer::DEFAULT_NUM_SENTINELS,
    )
}
