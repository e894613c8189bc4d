//! Running items on a model: batched generation (greedy or self-consistency sampling) or
//! first-token rank classification, answer extraction, per-sample records and per-task results.

use crate::item::{Benchmark, EvalItem, Exposure, Mode, RankBy};
use crate::metrics::{accuracy_stderr, mean, Tally};
use crate::model::{Decoding, EvalModel, GenerateRequest};
use crate::vote::{accuracy_by_k, majority_vote};
use crate::{Error, Result};
use flan_data::{Overlong, TruncationCounts};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Self-consistency settings (Wang et al., 2022: k = 40, temperature 0.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfConsistency {
    /// Samples per item.
    pub k: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Top-k filter (`None`: off).
    pub top_k: Option<usize>,
    /// Nucleus filter (`None`: off).
    pub top_p: Option<f64>,
}

impl Default for SelfConsistency {
    fn default() -> Self {
        SelfConsistency {
            k: 40,
            temperature: 0.7,
            top_k: None,
            top_p: None,
        }
    }
}

/// How to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    /// Prompts per model call.
    pub batch_size: usize,
    /// Generation length bound.
    pub max_new_tokens: usize,
    /// Sample and vote instead of greedy decoding.
    pub self_consistency: Option<SelfConsistency>,
    /// Seed of all sampling (each item's seed is derived from it, its task and its index).
    pub seed: u64,
    /// A prompt longer than the model's input limit ([`EvalModel::max_input_tokens`], after
    /// the few-shot budget dropped every exemplar it could): cut to the limit and counted, or
    /// refused before anything runs.
    #[serde(default)]
    pub overlong: Overlong,
    /// Decode items that carry a [`EvalItem::reference`] in batches of similar reference
    /// length, each batch generating at most its longest reference plus this many tokens
    /// (and never more than `max_new_tokens`). An output that runs further past the reference
    /// cannot match it, and a model that has not learnt to stop (an untrained one) would
    /// otherwise cost the whole budget on every item. `None`: batches in item order.
    #[serde(default)]
    pub reference_slack: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch_size: 8,
            max_new_tokens: 256,
            self_consistency: None,
            seed: 0,
            overlong: Overlong::Truncate,
            reference_slack: None,
        }
    }
}

/// What happened to one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Task name.
    pub task: String,
    /// Index within the task.
    pub index: usize,
    /// Exemplars in the prompt.
    pub n_shot: usize,
    /// How the prompt was formed.
    pub mode: Mode,
    /// How much of the item training saw (the synthetic suite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
    /// The prompt.
    pub prompt: String,
    /// Tokens cut from the end of the prompt to fit the model's input limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prompt_tokens_cut: usize,
    /// Raw outputs (one, or k for self-consistency; empty for rank classification).
    pub outputs: Vec<String>,
    /// Answer extracted from each output.
    pub extracted: Vec<Option<String>>,
    /// The answer scored (the vote, for self-consistency).
    pub answer: Option<String>,
    /// Gold answers.
    pub targets: Vec<String>,
    /// How many answers the item offered to choose from ([`EvalItem::answer_options`]; 0: a
    /// free-form answer). The item's chance baseline follows from it ([`crate::chance`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub options: usize,
    /// Which example of its task the item renders ([`EvalItem::example`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<usize>,
    /// Whether `answer` is right.
    pub correct: bool,
    /// Token F1 in percent (extractive QA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    /// Scores of the choices, higher is better (rank classification): first-token logits or
    /// sequence log-probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choice_logits: Option<Vec<f32>>,
    /// Toxicity in [0, 1] of each output, in output order (toxic degeneration, filled by
    /// [`crate::toxic_degeneration::score_samples`] after the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<Vec<f64>>,
}

#[cfg(test)]
impl SampleRecord {
    /// A direct zero-shot record of item `index` of `task` with one gold answer and `options`
    /// answer options, scored `correct`: what unit tests of the reports build their runs from.
    pub(crate) fn for_test(
        task: &str,
        index: usize,
        target: &str,
        options: usize,
        correct: bool,
    ) -> SampleRecord {
        SampleRecord {
            task: task.into(),
            index,
            n_shot: 0,
            mode: Mode::Direct,
            exposure: None,
            prompt: String::new(),
            prompt_tokens_cut: 0,
            outputs: Vec::new(),
            extracted: Vec::new(),
            answer: None,
            targets: vec![target.into()],
            options,
            example: None,
            correct,
            f1: None,
            choice_logits: None,
            toxicity: None,
        }
    }
}

/// Scores of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Items scored.
    pub n: usize,
    /// Items right.
    pub correct: usize,
    /// Accuracy (exact match) in percent.
    pub accuracy: f64,
    /// Standard error of the accuracy, percent.
    pub stderr: f64,
    /// Mean token F1 in percent (extractive QA).
    pub f1: Option<f64>,
    /// Items without an extractable answer.
    pub no_answer: usize,
    /// Largest number of exemplars used.
    pub n_shot: usize,
    /// Self-consistency accuracy voting over the first k samples, k = 1..=K.
    pub accuracy_by_k: Option<Vec<f64>>,
}

impl SampleRecord {
    /// Whether this record was made from `item`: the same task, index, prompt, gold answers,
    /// answer options, mode, exemplars and exposure (a saved run is reused only for the items
    /// it ran).
    pub fn is_of(&self, item: &EvalItem) -> bool {
        self.task == item.task
            && self.index == item.index
            && self.prompt == item.prompt
            && self.targets == item.targets
            && self.options == item.answer_options()
            && self.example == item.example
            && self.mode == item.mode
            && self.n_shot == item.n_shot
            && self.exposure == item.exposure
    }

    /// The record of `item` before it ran: what the item says, no outputs, not correct.
    pub(crate) fn of(item: &EvalItem, prompt_tokens_cut: usize) -> SampleRecord {
        SampleRecord {
            task: item.task.clone(),
            index: item.index,
            n_shot: item.n_shot,
            mode: item.mode,
            exposure: item.exposure,
            prompt: item.prompt.clone(),
            prompt_tokens_cut,
            outputs: Vec::new(),
            extracted: Vec::new(),
            answer: None,
            targets: item.targets.clone(),
            options: item.answer_options(),
            example: item.example,
            correct: false,
            f1: None,
            choice_logits: None,
            toxicity: None,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// All results of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Per-sample records in item order.
    pub samples: Vec<SampleRecord>,
    /// Per task.
    pub tasks: BTreeMap<String, TaskResult>,
    /// The model's input limit, tokens.
    pub input_limit: usize,
    /// The prompts cut to it.
    pub prompts: TruncationCounts,
    /// Wall-clock seconds of the run.
    #[serde(default)]
    pub seconds: f64,
}

impl RunResult {
    /// Accuracy over all items (percent).
    pub fn micro_accuracy(&self) -> f64 {
        let mut t = Tally::default();
        for s in &self.samples {
            t.add(s.correct);
        }
        t.percent()
    }

    /// Unweighted mean of the per-task accuracies (percent).
    pub fn macro_accuracy(&self) -> f64 {
        mean(&self.tasks.values().map(|t| t.accuracy).collect::<Vec<_>>())
    }

    /// The benchmark's headline number as its authors aggregate: MMLU over all questions
    /// (evaluate_flan.py's weighted average), the others as the mean over tasks or languages
    /// (the synthetic suite, like GSM8K, over all items).
    pub fn headline(&self, benchmark: Benchmark) -> f64 {
        match benchmark {
            Benchmark::Mmlu
            | Benchmark::Gsm8k
            | Benchmark::Synthetic
            | Benchmark::Winogender
            | Benchmark::Toxicity => self.micro_accuracy(),
            _ => self.macro_accuracy(),
        }
    }

    /// Mean over tasks of the mean F1 (extractive QA), percent.
    pub fn macro_f1(&self) -> Option<f64> {
        let f: Vec<f64> = self.tasks.values().filter_map(|t| t.f1).collect();
        (!f.is_empty()).then(|| mean(&f))
    }
}

/// The sampling seed of one item: a ChaCha20 stream keyed by the run seed, positioned by task
/// and index, so it does not depend on batch size, task selection or order.
pub fn item_seed(seed: u64, task: &str, index: usize) -> u64 {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    rng.set_stream(flan_data::hash::fnv1a(task) ^ (index as u64).rotate_left(32));
    rng.next_u64()
}

fn argmax(xs: &[f32]) -> Option<usize> {
    // First maximum wins, like np.argmax.
    let mut best: Option<usize> = None;
    for (i, x) in xs.iter().enumerate() {
        if best.is_none_or(|b| *x > xs[b]) {
            best = Some(i);
        }
    }
    best
}

/// Per prompt, one score per candidate (higher is better), checked for shape.
fn rank_scores(
    model: &mut dyn EvalModel,
    prompts: &[String],
    candidates: &[String],
    rank_by: RankBy,
) -> Result<Vec<Vec<f32>>> {
    let rows = match rank_by {
        RankBy::FirstTokenLogits => model.first_token_logits(prompts, candidates)?,
        RankBy::SequenceLogProb => {
            let inputs: Vec<String> = prompts
                .iter()
                .flat_map(|p| std::iter::repeat_n(p.clone(), candidates.len()))
                .collect();
            let targets: Vec<String> = prompts
                .iter()
                .flat_map(|_| candidates.iter().cloned())
                .collect();
            let flat = model.score(&inputs, &targets)?;
            if flat.len() != inputs.len() {
                return Err(Error::Model(format!(
                    "score returned {} values for {} input/target pairs",
                    flat.len(),
                    inputs.len()
                )));
            }
            flat.chunks(candidates.len().max(1))
                .map(|c| c.iter().map(|&x| x as f32).collect())
                .collect()
        }
    };
    if rows.len() != prompts.len() || rows.iter().any(|r| r.len() != candidates.len()) {
        return Err(Error::Model(format!(
            "ranking returned {} rows for {} prompts and {} candidates",
            rows.len(),
            prompts.len(),
            candidates.len()
        )));
    }
    Ok(rows)
}

/// Runs `items` on `model`. `progress(done, total)` is called after every batch.
pub fn run(
    model: &mut dyn EvalModel,
    items: &[EvalItem],
    opts: &RunOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RunResult> {
    let start = std::time::Instant::now();
    if opts.batch_size == 0 {
        return Err(Error::Config("batch size must be at least 1".into()));
    }
    if let Some(sc) = &opts.self_consistency {
        if sc.k == 0 {
            return Err(Error::Config("self-consistency needs k >= 1".into()));
        }
        if sc.temperature <= 0.0 {
            return Err(Error::Config(
                "self-consistency needs a temperature > 0".into(),
            ));
        }
    }
    let gen_config = match &opts.self_consistency {
        Some(sc) => Decoding {
            max_new_tokens: opts.max_new_tokens,
            do_sample: true,
            temperature: sc.temperature,
            top_k: sc.top_k,
            top_p: sc.top_p,
            num_return_sequences: sc.k,
        },
        None => Decoding::greedy(opts.max_new_tokens),
    };
    // Every prompt is measured against the model's limit before anything runs.
    let input_limit = model.max_input_tokens();
    let mut prompts = TruncationCounts::default();
    let mut prompt_cuts = Vec::with_capacity(items.len());
    for item in items {
        let len = model.count_tokens(&item.prompt)?;
        if len > input_limit && opts.overlong == Overlong::Error {
            return Err(Error::Config(format!(
                "{} item {}: the prompt has {len} tokens, over the input limit of {input_limit} \
                 even without exemplars (--max-input-tokens; --overlong truncate cuts it and \
                 counts the cut)",
                item.task, item.index
            )));
        }
        prompts.record(len, input_limit);
        prompt_cuts.push(len.saturating_sub(input_limit));
    }
    // Batches in item order, or (with a reference slack) by reference length, which wastes the
    // least decoding; records go back to item order either way.
    let mut order: Vec<usize> = (0..items.len()).collect();
    let mut reference_tokens = vec![None; items.len()];
    if opts.reference_slack.is_some() {
        for (i, item) in items.iter().enumerate() {
            if let Some(reference) = &item.reference {
                reference_tokens[i] = Some(model.count_tokens(reference)?);
            }
        }
        order.sort_by_key(|&i| (reference_tokens[i].unwrap_or(usize::MAX), i));
    }
    let mut records: Vec<Option<SampleRecord>> = vec![None; items.len()];
    let mut done = 0;
    // Rank-classified items and generated items are batched separately.
    for batch in order.chunks(opts.batch_size) {
        let ranked: Vec<usize> = batch
            .iter()
            .copied()
            .filter(|&i| items[i].choices.is_some())
            .collect();
        let generated: Vec<usize> = batch
            .iter()
            .copied()
            .filter(|&i| items[i].choices.is_none())
            .collect();
        // Items of one batch may differ in candidates or ranking only across benchmarks.
        let mut by_choices: BTreeMap<(Vec<String>, RankBy), Vec<usize>> = BTreeMap::new();
        for &i in &ranked {
            if let Some(c) = &items[i].choices {
                by_choices
                    .entry((c.candidates.clone(), c.rank_by))
                    .or_default()
                    .push(i);
            }
        }
        for ((choices, rank_by), idx) in by_choices {
            let prompts: Vec<String> = idx.iter().map(|&i| items[i].prompt.clone()).collect();
            let scores = rank_scores(model, &prompts, &choices, rank_by)?;
            for (&i, row) in idx.iter().zip(scores) {
                let item = &items[i];
                let answer = argmax(&row).map(|j| choices[j].clone());
                let correct = item.rule.is_correct(answer.as_deref(), &item.targets);
                records[i] = Some(SampleRecord {
                    outputs: Vec::new(),
                    extracted: vec![answer.clone()],
                    answer,
                    correct,
                    f1: None,
                    choice_logits: Some(row),
                    ..SampleRecord::of(item, prompt_cuts[i])
                });
            }
        }
        if !generated.is_empty() {
            let mut config = gen_config.clone();
            if let Some(slack) = opts.reference_slack {
                let longest = generated
                    .iter()
                    .map(|&i| reference_tokens[i])
                    .max()
                    .flatten();
                if let Some(longest) = longest {
                    config.max_new_tokens = config.max_new_tokens.min(longest + slack);
                }
            }
            let requests: Vec<GenerateRequest> = generated
                .iter()
                .map(|&i| GenerateRequest {
                    prompt: items[i].prompt.clone(),
                    seed: item_seed(opts.seed, &items[i].task, items[i].index),
                })
                .collect();
            let outputs = model.generate(&requests, &config)?;
            if outputs.len() != requests.len()
                || outputs
                    .iter()
                    .any(|o| o.len() != config.num_return_sequences)
            {
                return Err(Error::Model(format!(
                    "generate returned {} prompts' outputs for {} prompts (expected {} each)",
                    outputs.len(),
                    requests.len(),
                    config.num_return_sequences
                )));
            }
            for (&i, outs) in generated.iter().zip(outputs) {
                let item = &items[i];
                let extracted: Vec<Option<String>> =
                    outs.iter().map(|o| item.rule.extract(o)).collect();
                let answer = if opts.self_consistency.is_some() {
                    majority_vote(&extracted)
                } else {
                    extracted[0].clone()
                };
                let correct = item.rule.is_correct(answer.as_deref(), &item.targets);
                let f1 = item.rule.f1(answer.as_deref(), &item.targets);
                records[i] = Some(SampleRecord {
                    outputs: outs,
                    extracted,
                    answer,
                    correct,
                    f1,
                    ..SampleRecord::of(item, prompt_cuts[i])
                });
            }
        }
        done += batch.len();
        progress(done, items.len());
    }
    let samples: Vec<SampleRecord> = records.into_iter().flatten().collect();
    let tasks = task_results(items, &samples, opts.self_consistency.as_ref().map(|s| s.k));
    Ok(RunResult {
        samples,
        tasks,
        input_limit,
        prompts,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn task_results(
    items: &[EvalItem],
    samples: &[SampleRecord],
    k: Option<usize>,
) -> BTreeMap<String, TaskResult> {
    let mut grouped: BTreeMap<&str, Vec<(usize, &SampleRecord)>> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        grouped.entry(&s.task).or_default().push((i, s));
    }
    grouped
        .into_iter()
        .map(|(task, recs)| {
            let mut tally = Tally::default();
            let mut f1 = Vec::new();
            for (_, r) in &recs {
                tally.add(r.correct);
                f1.extend(r.f1);
            }
            let by_k = k.map(|k| {
                let extracted: Vec<Vec<Option<String>>> =
                    recs.iter().map(|(_, r)| r.extracted.clone()).collect();
                accuracy_by_k(&extracted, k, |j, vote| {
                    let item = &items[recs[j].0];
                    item.rule.is_correct(vote, &item.targets)
                })
            });
            let result = TaskResult {
                n: tally.n,
                correct: tally.correct,
                accuracy: tally.percent(),
                stderr: accuracy_stderr(tally.percent(), tally.n),
                f1: (!f1.is_empty()).then(|| mean(&f1)),
                no_answer: recs.iter().filter(|(_, r)| r.answer.is_none()).count(),
                n_shot: recs.iter().map(|(_, r)| r.n_shot).max().unwrap_or(0),
                accuracy_by_k: by_k,
            };
            (task.to_string(), result)
        })
        .collect()
}
