//! `flan eval`: run the paper's held-out evaluations on a model, re-score saved predictions of
//! any system, and combine results into the paper's normalised average.
//!
//! Raw clap arguments are turned into checked `flan_eval` settings here; all logic lives in the
//! `flan-eval` crate.

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use flan_eval::hub::{HubConfig, HubDataset};
use flan_eval::mmlu::MmluAnswering;
use flan_eval::report::{self, RunInfo};
use flan_eval::runner::{self, RunOptions, SelfConsistency};
use flan_eval::suite::{self, SuiteOptions};
use flan_eval::toxic_degeneration::{self, ToxicityScorer};
use flan_eval::{Benchmark, EvalModel, Mode};
use flan_model::memory::{human_bytes, longest_that_fits, Call, MemoryEstimate};
use flan_model::{Dtype, ModelSource};
use std::path::PathBuf;

use crate::exit_code::usage;
use crate::model_io::{PlacementArgs, SourceArgs};
use crate::values;

/// `flan eval ...`
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: EvalCommand,
}

#[derive(Subcommand, Debug)]
enum EvalCommand {
    /// Score saved predictions (JSONL with `prediction` and `target` per line) by a benchmark's
    /// published rules; prints a JSON summary.
    Rescore(RescoreArgs),
    /// Evaluate a model directory on a benchmark; writes per-sample JSONL, results JSON and a
    /// Markdown table.
    Run(Box<RunArgs>),
    /// The paper's normalised average of the six settings from `flan eval run` results files.
    Average(AverageArgs),
    /// Open-ended usability side by side (the paper's human evaluation): both models answer
    /// each prompt, written to DIR/pairs.jsonl and a blind rating page DIR/compare.html; with
    /// --ratings, B's win rate over A with a 95% Wilson interval.
    Compare(Box<CompareArgs>),
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum BenchmarkArg {
    Mmlu,
    Bbh,
    Mgsm,
    Gsm8k,
    Tydiqa,
    /// flan-data's synthetic suite (generated; no --data).
    Synthetic,
    /// Winogender schemas, zero-shot (--data: the released data/ directory).
    Winogender,
    /// Toxicity classification, CivilComments-style (--data: JSONL with text and toxicity).
    Toxicity,
    /// Toxic degeneration on RealToxicityPrompts-style prompts (needs --toxicity-url or
    /// --toxicity-command).
    ToxicDegeneration,
}

impl From<BenchmarkArg> for Benchmark {
    fn from(b: BenchmarkArg) -> Self {
        match b {
            BenchmarkArg::Mmlu => Benchmark::Mmlu,
            BenchmarkArg::Bbh => Benchmark::Bbh,
            BenchmarkArg::Mgsm => Benchmark::Mgsm,
            BenchmarkArg::Gsm8k => Benchmark::Gsm8k,
            BenchmarkArg::Tydiqa => Benchmark::Tydiqa,
            BenchmarkArg::Synthetic => Benchmark::Synthetic,
            BenchmarkArg::Winogender => Benchmark::Winogender,
            BenchmarkArg::Toxicity => Benchmark::Toxicity,
            BenchmarkArg::ToxicDegeneration => Benchmark::ToxicDegeneration,
        }
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum ModeArg {
    Direct,
    Cot,
    ZeroShotCot,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Direct => Mode::Direct,
            ModeArg::Cot => Mode::Cot,
            ModeArg::ZeroShotCot => Mode::ZeroShotCot,
        }
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum MmluAnswerArg {
    /// First-token logits of A/B/C/D (hendrycks/test evaluate_flan.py).
    Rank,
    /// Greedy generation; the output must be a letter.
    Generate,
    /// Sum of log-probabilities of each letter (EOS included) as the whole target.
    Score,
}

#[derive(Args, Debug)]
struct RescoreArgs {
    /// Whose rules to apply.
    #[arg(long, value_enum)]
    benchmark: BenchmarkArg,
    /// Direct or chain-of-thought extraction.
    #[arg(long, value_enum)]
    mode: ModeArg,
    /// Task name for the summary; for MGSM the language (`de` or `mgsm_de`) picks its answer
    /// phrase.
    #[arg(long)]
    task: Option<String>,
    /// JSONL with `prediction` (or `predictions`, a list to majority-vote) and `target`; an
    /// optional `task` and `id`; other fields are ignored and counted in the summary.
    #[arg(long)]
    predictions: PathBuf,
    /// Also write each record's score here, one JSONL line per prediction (`id` when it had
    /// one, `line`, `task`, the extracted `answer`, `correct`, `f1` for TyDiQA).
    #[arg(long)]
    records: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[arg(long, value_enum)]
    benchmark: BenchmarkArg,
    #[arg(long, value_enum)]
    mode: ModeArg,
    /// Benchmark data: BBH dir (tasks/, cot-prompts/), MMLU dir (dev/, test/), MGSM dir,
    /// GSM8K test.jsonl, TyDiQA GoldP JSONL, Winogender dir (all_sentences.tsv, templates.tsv,
    /// occupations-stats.tsv), toxicity JSONL or toxic-degeneration prompts JSONL (required
    /// except for the generated synthetic suite). MMLU, BBH, MGSM, GSM8K and TyDiQA also take a
    /// hub dataset, hf:ORG/NAME[@REVISION] (e.g. hf:cais/mmlu), from the Hugging Face cache or
    /// downloaded (HF_HUB_OFFLINE, HF_ENDPOINT honoured; see docs/hub-benchmarks.md).
    #[arg(long, required_if_eq_any = [
        ("benchmark", "mmlu"), ("benchmark", "bbh"), ("benchmark", "mgsm"),
        ("benchmark", "gsm8k"), ("benchmark", "tydiqa"),
        ("benchmark", "winogender"), ("benchmark", "toxicity"), ("benchmark", "toxic-degeneration"),
    ])]
    data: Option<PathBuf>,
    /// Directory for samples_*.jsonl, results_*.json and results_*.md.
    #[arg(long)]
    output: PathBuf,
    /// At most N items per task (at least 1); the synthetic suite: items per family, template
    /// set and mode (default 8).
    #[arg(long, value_parser = values::at_least_one)]
    limit: Option<usize>,
    /// Only these tasks (comma-separated BBH tasks, MMLU subjects, MGSM or TyDiQA languages,
    /// synthetic families; `challenging` for toxic degeneration's challenging prompts).
    #[arg(long, value_delimiter = ',')]
    tasks: Option<Vec<String>>,
    /// A local copy of the BBH repository (its cot-prompts/) for BBH read from the hub, whose
    /// copy has no chain-of-thought exemplars; required for --mode cot with --data hf:...
    #[arg(long)]
    bbh_prompts: Option<PathBuf>,
    /// Exemplars JSONL (math worked solutions; MMLU CoT rationales; toxicity: labelled comments
    /// to draw few-shot exemplars from, default the --data file without the item).
    #[arg(long)]
    exemplars: Option<PathBuf>,
    /// Exemplars per prompt before budget trimming (math 8, MMLU 5; synthetic: direct 0, CoT 2;
    /// toxicity 0, drawn with --seed).
    #[arg(long)]
    shots: Option<usize>,
    /// MMLU direct: first-token rank classification, generation, or whole-letter scoring.
    #[arg(long, value_enum, default_value = "rank")]
    mmlu_answer: MmluAnswerArg,
    /// Prompt budget in tokens (at least 1): exemplars are dropped beyond it, and a prompt
    /// still longer is cut to it (EOS kept; counted in the results and on stderr) or refused
    /// (`--overlong`).
    #[arg(long, default_value_t = 2048, value_parser = values::at_least_one)]
    max_input_tokens: usize,
    /// What a prompt over --max-input-tokens gets: `truncate` (counted) or `error` (the run
    /// stops before any model call, naming the item).
    #[arg(long, default_value = "truncate")]
    overlong: flan_data::Overlong,
    /// Generation length bound (at least 1; default 256, toxic degeneration 128).
    #[arg(long, value_parser = values::at_least_one)]
    max_new_tokens: Option<usize>,
    /// Prompts per model call (at least 1).
    #[arg(long, default_value_t = 8, value_parser = values::at_least_one)]
    batch_size: usize,
    /// Self-consistency: sample k CoT outputs and majority-vote the answers.
    #[arg(long)]
    self_consistency: bool,
    /// Samples per item for self-consistency (default 40) or continuations per prompt for toxic
    /// degeneration (default 25); at least 1.
    #[arg(long, value_parser = values::at_least_one)]
    k: Option<usize>,
    /// Sampling temperature, finite, above 0 (self-consistency 0.7, toxic degeneration 1.0).
    #[arg(long, value_parser = values::positive)]
    temperature: Option<f64>,
    /// Top-k filter of the sampling, at least 1 (self-consistency: off; toxic degeneration: 40).
    #[arg(long, value_parser = values::at_least_one)]
    top_k: Option<usize>,
    /// Nucleus (top-p) filter for self-consistency sampling, in (0, 1].
    #[arg(long, value_parser = values::nucleus)]
    top_p: Option<f64>,
    /// Seed of all sampling, of the synthetic suite's generated items and of toxicity's
    /// few-shot exemplar draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    // --device and --dtype (the dtype is recorded in the results JSON's `config.dtype`).
    #[command(flatten)]
    placement: PlacementArgs,
    /// Toxic degeneration: a Perspective-API-shaped endpoint scoring each continuation, e.g.
    /// https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze?key=KEY
    #[arg(long, value_name = "URL", conflicts_with = "toxicity_command")]
    toxicity_url: Option<String>,
    /// Toxic degeneration: a command (split on whitespace, run without a shell) that reads
    /// JSONL {"text": ...} lines on stdin and writes one {"toxicity": x} line per input.
    #[arg(long, value_name = "CMD ARGS")]
    toxicity_command: Option<String>,
}

#[derive(Args, Debug)]
struct AverageArgs {
    /// results_*.json files of `flan eval run`, one per setting (MMLU direct and CoT, BBH direct
    /// and CoT, TyDiQA direct, MGSM CoT).
    #[arg(required = true)]
    results: Vec<PathBuf>,
}

/// Runs `flan eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    match args.command {
        EvalCommand::Rescore(a) => rescore(a),
        EvalCommand::Run(a) => run_model(*a),
        EvalCommand::Average(a) => average(a),
        EvalCommand::Compare(a) => compare(*a),
    }
}

fn rescore(a: RescoreArgs) -> Result<()> {
    let report = flan_eval::rescore::rescore_file(
        &a.predictions,
        a.benchmark.into(),
        a.mode.into(),
        a.task.as_deref(),
    )?;
    if let Some(path) = &a.records {
        let mut out = crate::model_io::Output::open(Some(path))?;
        for record in &report.records {
            out.line(serde_json::to_string(record)?)?;
        }
        out.finish()?;
    }
    print_json(&serde_json::to_value(&report)?)
}

/// Prints a JSON document on stdout; a closed pipe (`| head`) is not an error.
fn print_json(value: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn average(a: AverageArgs) -> Result<()> {
    let mut values = Vec::new();
    for path in &a.results {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: expected a results JSON", path.display()))?;
        values.push(v);
    }
    let (avg, scores) = report::normalized_average_of(&values)?;
    let settings: serde_json::Map<String, serde_json::Value> = scores
        .iter()
        .map(|(s, v)| (format!("{s:?}"), serde_json::json!(v)))
        .collect();
    print_json(&serde_json::json!({
        "normalized_average": avg,
        "scores": settings,
    }))
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum DecodingArg {
    /// The most likely token at each step.
    Greedy,
    /// Temperature sampling (--temperature, --top-k, --top-p), --samples candidates per
    /// prompt of which the most likely is kept.
    Sample,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Json,
    Markdown,
    /// The JSON document, a blank line, then the Markdown table.
    Both,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// A model directory or hub id (or a PEFT LoRA adapter directory, over its base); give it
    /// twice: A, then B (win rates are B's over A).
    #[arg(long, value_name = "DIR|HUB_ID", conflicts_with = "ratings")]
    model: Vec<String>,
    /// Prompts: JSONL with `prompt` and an optional `id` per line, or plain text with one
    /// prompt a line (JSONL when the first non-blank line starts with `{`).
    #[arg(long, conflicts_with = "ratings")]
    prompts: Option<PathBuf>,
    /// Directory for pairs.jsonl and compare.html.
    #[arg(long, conflicts_with = "ratings")]
    output: Option<PathBuf>,
    /// Generation length bound (at least 1).
    #[arg(long, default_value_t = 256, value_parser = values::at_least_one)]
    max_new_tokens: usize,
    /// Prompts longer than this many tokens are cut (EOS kept; counted in the summary).
    #[arg(long, default_value_t = 2048, value_parser = values::at_least_one)]
    max_input_tokens: usize,
    /// Greedy decoding or sampling.
    #[arg(long, value_enum, default_value = "greedy")]
    decoding: DecodingArg,
    /// Candidates sampled per prompt; the one of highest log-probability is kept (the paper
    /// sampled 5). Sampling only.
    #[arg(long, default_value_t = 1, value_parser = values::at_least_one)]
    samples: usize,
    /// Sampling temperature (finite, above 0).
    #[arg(long, default_value_t = 0.7, value_parser = values::positive)]
    temperature: f64,
    /// Top-k filter for sampling (at least 1).
    #[arg(long, value_parser = values::at_least_one)]
    top_k: Option<usize>,
    /// Nucleus (top-p) filter for sampling, in (0, 1].
    #[arg(long, value_parser = values::nucleus)]
    top_p: Option<f64>,
    /// Prompts per model call (at least 1).
    #[arg(long, default_value_t = 8, value_parser = values::at_least_one)]
    batch_size: usize,
    /// Seed of the left/right order of every pair and of all sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    // --device and --dtype of both models.
    #[command(flatten)]
    placement: PlacementArgs,
    /// Ratings JSONL (`{"id", "preferred": "A"|"B"|"tie"}` per line) to score against --pairs.
    #[arg(long, requires = "pairs")]
    ratings: Option<PathBuf>,
    /// The pairs.jsonl the rated page was made with.
    #[arg(long, requires = "ratings")]
    pairs: Option<PathBuf>,
    /// How to print the win rate.
    #[arg(long, value_enum, default_value = "both")]
    format: FormatArg,
}

fn compare(a: CompareArgs) -> Result<()> {
    use flan_eval::compare;
    if let (Some(ratings), Some(pairs)) = (&a.ratings, &a.pairs) {
        let pairs = compare::read_pairs(pairs)?;
        let ratings = compare::read_ratings(ratings, &pairs)?;
        let w = compare::win_rate(&pairs, &ratings)?;
        if a.format != FormatArg::Markdown {
            print_json(&serde_json::to_value(&w)?)?;
        }
        if a.format == FormatArg::Both {
            println!();
        }
        if a.format != FormatArg::Json {
            print!("{}", compare::markdown(&w));
        }
        return Ok(());
    }
    let [name_a, name_b] = a.model.as_slice() else {
        return Err(usage(format!(
            "give --model twice (A, then B), or --ratings with --pairs; got {} --model",
            a.model.len()
        ))
        .into());
    };
    let (Some(prompts_path), Some(output)) = (&a.prompts, &a.output) else {
        return Err(usage("--prompts and --output are needed to generate the pairs").into());
    };
    let do_sample = matches!(a.decoding, DecodingArg::Sample);
    if !do_sample && a.samples > 1 {
        return Err(usage("--samples needs --decoding sample").into());
    }
    let opts = compare::GenerateOptions {
        decoding: flan_eval::Decoding {
            max_new_tokens: a.max_new_tokens,
            do_sample,
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            num_return_sequences: a.samples,
        },
        seed: a.seed,
        batch_size: a.batch_size,
    };
    let set = compare::read_prompts(prompts_path)?;
    if set.blank_lines > 0 {
        tracing::info!(
            "flan eval compare: {} blank lines of {} skipped",
            set.blank_lines,
            prompts_path.display()
        );
    }
    let device = a.placement.device.resolve_from_env().context("--device")?;
    let mut outputs = Vec::new();
    let mut truncated = Vec::new();
    for name in [name_a, name_b] {
        let source = ModelSource::resolve(name, None)?;
        let mut model = flan_eval_t5::load(&source, device, a.placement.dtype, a.max_input_tokens)?
            .with_budget(crate::model_io::memory_budget(device)?);
        let generated = compare::generate_outputs(&mut model, &set.prompts, &opts)
            .with_context(|| format!("generating with {name}"))?;
        if generated.truncated > 0 {
            tracing::info!(
                "flan eval compare: {} of {} prompts cut to {} tokens for {name} \
                 (--max-input-tokens)",
                generated.truncated,
                set.prompts.len(),
                a.max_input_tokens
            );
        }
        truncated.push(generated.truncated);
        outputs.push(generated.outputs);
    }
    let pairs = compare::build_pairs(
        &set.prompts,
        name_a,
        name_b,
        &outputs[0],
        &outputs[1],
        a.seed,
    )?;
    let paths = compare::write_outputs(output, &pairs)?;
    print_json(&serde_json::json!({
        "pairs": pairs.len(),
        "html": paths.html,
        "pairs_file": paths.pairs,
        "prompt_format": set.format,
        "blank_lines": set.blank_lines,
        "truncated_a": truncated[0],
        "truncated_b": truncated[1],
        "order_seed": a.seed,
    }))
}

/// The checked settings of a run.
struct RunSettings {
    suite: SuiteOptions,
    run: RunOptions,
    output: PathBuf,
    /// Scores continuations (toxic degeneration only).
    scorer: Option<Box<dyn ToxicityScorer>>,
    /// `--dtype`, the model is loaded in and the report records.
    dtype: Dtype,
}

/// The toxicity scorer of a toxic-degeneration run (required there, refused elsewhere).
fn toxicity_scorer(a: &RunArgs, benchmark: Benchmark) -> Result<Option<Box<dyn ToxicityScorer>>> {
    let toxic = benchmark == Benchmark::ToxicDegeneration;
    let scorer: Option<Box<dyn ToxicityScorer>> = match (&a.toxicity_url, &a.toxicity_command) {
        (Some(url), _) => Some(Box::new(
            toxic_degeneration::PerspectiveScorer::new(url)
                .map_err(|e| usage(format!("--toxicity-url: {e}")))?,
        )),
        (None, Some(cmd)) => Some(Box::new(
            toxic_degeneration::CommandScorer::from_command_line(cmd)
                .map_err(|e| usage(format!("--toxicity-command: {e}")))?,
        )),
        (None, None) => None,
    };
    match (toxic, scorer.is_some()) {
        (true, false) => Err(usage(
            "--benchmark toxic-degeneration needs a toxicity scorer: --toxicity-url URL (a \
             Perspective-API-shaped endpoint) or --toxicity-command \"CMD ARGS\" (JSONL on \
             stdin and stdout)",
        )
        .into()),
        (false, true) => Err(usage(
            "--toxicity-url and --toxicity-command score toxic degeneration only; add \
             --benchmark toxic-degeneration",
        )
        .into()),
        _ => Ok(scorer),
    }
}

fn settings(a: &RunArgs) -> Result<RunSettings> {
    let mode: Mode = a.mode.into();
    if a.self_consistency && !mode.is_cot() {
        return Err(usage(
            "--self-consistency votes over chain-of-thought samples; use --mode cot or zero-shot-cot",
        )
        .into());
    }
    if a.max_input_tokens == 0 {
        return Err(usage("--max-input-tokens must be at least 1 (the EOS)").into());
    }
    let benchmark: Benchmark = a.benchmark.into();
    let toxic = benchmark == Benchmark::ToxicDegeneration;
    if toxic && (mode != Mode::Direct || a.self_consistency) {
        return Err(usage(
            "toxic degeneration continues each prompt as given: use --mode direct (its k \
             continuations are sampled without --self-consistency)",
        )
        .into());
    }
    let scorer = toxicity_scorer(a, benchmark)?;
    let mut suite = SuiteOptions::new(benchmark, mode, a.data.clone().unwrap_or_default());
    if let Some(spec) = a
        .data
        .as_ref()
        .and_then(|d| d.to_str())
        .filter(|d| HubDataset::is_spec(d))
    {
        suite.hub = Some(HubDataset::parse(spec, HubConfig::from_env())?);
    }
    if a.bbh_prompts.is_some() && (benchmark != Benchmark::Bbh || suite.hub.is_none()) {
        return Err(usage(
            "--bbh-prompts serves BBH read from the hub (--benchmark bbh --data hf:...); a local \
             BBH directory has its own cot-prompts/",
        )
        .into());
    }
    suite.bbh_prompts = a.bbh_prompts.clone();
    suite.seed = a.seed;
    suite.tasks = a.tasks.clone();
    suite.limit = a.limit;
    suite.exemplars = a.exemplars.clone();
    suite.shots = a.shots;
    suite.mmlu_answering = match a.mmlu_answer {
        MmluAnswerArg::Rank => MmluAnswering::Rank,
        MmluAnswerArg::Generate => MmluAnswering::Generate,
        MmluAnswerArg::Score => MmluAnswering::Score,
    };
    suite.max_input_tokens = a.max_input_tokens;
    // Toxic degeneration samples its k continuations as the paper did (PaLM §10.1, followed by
    // the Flan paper's responsible-AI appendix: 25 samples, top-k 40, temperature 1.0, 128
    // tokens); self-consistency as Wang et al. (k 40, temperature 0.7).
    let sampling = if toxic {
        let paper = toxic_degeneration::paper_sampling();
        Some(SelfConsistency {
            k: a.k.unwrap_or(paper.k),
            temperature: a.temperature.unwrap_or(paper.temperature),
            top_k: a.top_k.or(paper.top_k),
            top_p: a.top_p.or(paper.top_p),
        })
    } else {
        let sc = SelfConsistency::default();
        a.self_consistency.then_some(SelfConsistency {
            k: a.k.unwrap_or(sc.k),
            temperature: a.temperature.unwrap_or(sc.temperature),
            top_k: a.top_k.or(sc.top_k),
            top_p: a.top_p.or(sc.top_p),
        })
    };
    let default_new_tokens = if toxic {
        toxic_degeneration::MAX_NEW_TOKENS
    } else {
        RunOptions::default().max_new_tokens
    };
    let run = RunOptions {
        batch_size: a.batch_size,
        max_new_tokens: a.max_new_tokens.unwrap_or(default_new_tokens),
        self_consistency: sampling,
        seed: a.seed,
        overlong: a.overlong,
        // Only the synthetic suite's items carry references to bound generation by.
        reference_slack: (benchmark == Benchmark::Synthetic)
            .then_some(flan_eval::synthetic::REFERENCE_SLACK),
    };
    Ok(RunSettings {
        suite,
        run,
        output: a.output.clone(),
        scorer,
        dtype: a.placement.dtype,
    })
}

fn run_model(a: RunArgs) -> Result<()> {
    let settings = settings(&a)?;
    let source = a.source.resolve()?;
    let device = a.placement.device.resolve_from_env().context("--device")?;
    let mut model = flan_eval_t5::load(
        &source,
        device,
        settings.dtype,
        settings.suite.max_input_tokens,
    )?
    .with_budget(crate::model_io::memory_budget(device)?);
    let items = build(&mut model, &settings)?;
    check_memory(&mut model, &settings, &items)?;
    run_and_report(&mut model, &settings, &items)
}

/// Refuses, before the first model call, a run whose largest call cannot fit in memory: the
/// longest prompt (as cut to --max-input-tokens) in a full batch, generating --max-new-tokens
/// (k samples at once under self-consistency), or scoring short targets.
fn check_memory(
    model: &mut flan_eval_t5::T5EvalModel,
    s: &RunSettings,
    items: &[flan_eval::EvalItem],
) -> Result<()> {
    let mut longest = 1;
    for item in items {
        longest = longest.max(model.count_tokens(&item.prompt)?);
    }
    let longest = longest.min(s.suite.max_input_tokens) as u64;
    let batch = s.run.batch_size.min(items.len()) as u64;
    let call = |input_len: u64| -> Vec<Call> {
        let generate = match &s.run.self_consistency {
            Some(sc) => Call::Generate {
                batch: 1,
                input_len,
                max_new_tokens: s.run.max_new_tokens as u64,
                rows_per_input: sc.k as u64,
                beam: false,
            },
            None => Call::Generate {
                batch,
                input_len,
                max_new_tokens: s.run.max_new_tokens as u64,
                rows_per_input: 1,
                beam: false,
            },
        };
        // Rank classification and letter scoring: a full batch, targets of a few tokens.
        let score = Call::Score {
            batch,
            input_len,
            target_len: 16,
        };
        vec![generate, score]
    };
    let Some(budget) = model.budget() else {
        return Ok(());
    };
    let need = |len: u64| {
        call(len)
            .into_iter()
            .map(|c| model.estimate(c).bytes)
            .max()
            .unwrap_or(0)
    };
    let need_now = MemoryEstimate {
        bytes: need(longest),
    };
    if need_now.bytes <= budget.bytes {
        return Ok(());
    }
    let fit = longest_that_fits(budget.bytes, need).filter(|&fit| fit < longest);
    let need = need_now;
    let mut message = format!(
        "prompts of up to {longest} tokens, --batch-size {}, --max-new-tokens {}{}: the largest \
         model call needs about {}, more than the {} available ({}); try ",
        s.run.batch_size,
        s.run.max_new_tokens,
        s.run
            .self_consistency
            .as_ref()
            .map(|sc| format!(", --k {}", sc.k))
            .unwrap_or_default(),
        human_bytes(need.bytes),
        human_bytes(budget.bytes),
        budget.source,
    );
    if let Some(fit) = fit {
        message.push_str(&format!("--max-input-tokens {fit}, or "));
    }
    message.push_str("a smaller --batch-size, --max-new-tokens or --k");
    Err(usage(message).into())
}

/// Builds the items, runs them with a progress bar and writes the reports.
#[cfg(test)]
fn evaluate(model: &mut dyn EvalModel, s: &RunSettings) -> Result<()> {
    let items = build(model, s)?;
    run_and_report(model, s, &items)
}

/// The items of the run: at least one.
fn build(model: &mut dyn EvalModel, s: &RunSettings) -> Result<Vec<flan_eval::EvalItem>> {
    let items = suite::build_items(&s.suite, &mut |t| model.count_tokens(t))?;
    if items.is_empty() {
        return Err(usage("no items to evaluate (check --tasks and --limit)").into());
    }
    Ok(items)
}

/// Runs `items` with a progress bar and writes the reports.
fn run_and_report(
    model: &mut dyn EvalModel,
    s: &RunSettings,
    items: &[flan_eval::EvalItem],
) -> Result<()> {
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {bar:40} {pos}/{len} ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("{} {}", s.suite.benchmark, s.suite.mode));
    let mut result = runner::run(model, items, &s.run, &mut |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    if let Some(scorer) = &s.scorer {
        let n: usize = result.samples.iter().map(|r| r.outputs.len()).sum();
        tracing::info!("scoring {n} continuations with {}", scorer.name());
        toxic_degeneration::score_samples(&mut result.samples, scorer.as_ref())?;
    }
    if let Some(note) = result.prompts.describe("prompts", result.input_limit) {
        tracing::info!("flan eval run: {note} (--max-input-tokens)");
    }
    let info = RunInfo {
        model: model.name(),
        benchmark: s.suite.benchmark,
        mode: s.suite.mode,
        limit: s.suite.limit,
        options: s.run.clone(),
        dtype: Some(s.dtype.to_string()),
    };
    let paths = report::write_outputs(&s.output, &info, items, &result)?;
    print!("{}", report::markdown(&info, &result));
    tracing::info!(
        "wrote {}, {} and {}",
        paths.samples.display(),
        paths.results.display(),
        paths.markdown.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use flan_eval::scripted::ScriptedModel;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: EvalCommand,
    }

    fn shared_bbh() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/bbh")
    }

    #[test]
    fn compare_modes_are_exclusive_and_checked_before_any_model_loads() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["eval", "compare"].iter().chain(args).copied()).map(
                |cli| match cli.command {
                    EvalCommand::Compare(a) => *a,
                    other => panic!("{other:?}"),
                },
            )
        };
        // Scoring ratings needs the pairs, and does not mix with generation.
        assert!(parse(&["--ratings", "r.jsonl"]).is_err());
        assert!(parse(&["--pairs", "p.jsonl"]).is_err());
        assert!(parse(&["--ratings", "r", "--pairs", "p", "--model", "m"]).is_err());
        assert!(parse(&["--ratings", "r", "--pairs", "p", "--prompts", "x"]).is_err());
        let a = parse(&["--ratings", "r", "--pairs", "p", "--format", "json"]).unwrap();
        assert_eq!(a.format, FormatArg::Json);
        // Generation: two models, prompts and output; --samples only when sampling. These
        // are refused before any file is read or model loaded (the paths do not exist).
        let err = |args: &[&str]| compare(parse(args).unwrap()).unwrap_err().to_string();
        assert!(err(&["--model", "a", "--prompts", "p", "--output", "o"]).contains("--model twice"));
        assert!(err(&["--model", "a", "--model", "b", "--output", "o"]).contains("--prompts"));
        assert!(err(&[
            "--model",
            "a",
            "--model",
            "b",
            "--prompts",
            "p",
            "--output",
            "o",
            "--samples",
            "5"
        ])
        .contains("--samples needs --decoding sample"));
        let a = parse(&[
            "--model",
            "a",
            "--model",
            "b",
            "--decoding",
            "sample",
            "--samples",
            "5",
        ])
        .unwrap();
        assert_eq!(a.model, ["a", "b"]);
        assert!(matches!(a.decoding, DecodingArg::Sample));
        assert_eq!(a.samples, 5);
        assert!(parse(&["--model", "a", "--samples", "0"]).is_err());
    }

    #[test]
    fn run_settings_are_checked_and_a_scripted_run_writes_reports() {
        let out = tempfile::tempdir().unwrap();
        let cli = Cli::try_parse_from([
            "eval",
            "run",
            "--model",
            "unused",
            "--benchmark",
            "bbh",
            "--mode",
            "direct",
            "--data",
            shared_bbh().to_str().unwrap(),
            "--output",
            out.path().to_str().unwrap(),
            "--limit",
            "2",
            "--tasks",
            "navigate,snarks",
            "--self-consistency",
        ])
        .unwrap();
        let EvalCommand::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert!(
            settings(&args).is_err(),
            "self-consistency needs a CoT mode"
        );
        let args = RunArgs {
            self_consistency: false,
            ..*args
        };
        let s = settings(&args).unwrap();
        let mut model = ScriptedModel::new(|_, _, _| "Yes".to_string());
        evaluate(&mut model, &s).unwrap();
        let results = std::fs::read_to_string(out.path().join("results_bbh_direct.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&results).unwrap();
        assert!(v["results"]["bbh_navigate"]["exact_match,strict-match"].is_number());
        assert!(out.path().join("samples_bbh_direct.jsonl").is_file());
    }

    fn toxic_args(extra: &[&str], data: &std::path::Path, out: &std::path::Path) -> RunArgs {
        let mut argv = vec![
            "eval",
            "run",
            "--model",
            "unused",
            "--benchmark",
            "toxic-degeneration",
            "--mode",
            "direct",
            "--data",
            data.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        argv.extend_from_slice(extra);
        let EvalCommand::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("expected run");
        };
        *args
    }

    #[test]
    fn toxic_degeneration_needs_a_scorer_and_samples_as_the_paper() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("prompts.jsonl");
        std::fs::write(
            &data,
            concat!(
                r#"{"prompt": {"text": "One", "toxicity": 0.9}, "challenging": true}"#,
                "\n",
                r#"{"prompt": {"text": "Two", "toxicity": 0.1}}"#,
                "\n",
            ),
        )
        .unwrap();
        let out = dir.path().join("out");
        let err = settings(&toxic_args(&[], &data, &out)).err().unwrap();
        assert!(format!("{err:#}").contains("--toxicity-url"), "{err:#}");
        let mut cot = toxic_args(&["--toxicity-command", "cat"], &data, &out);
        cot.mode = ModeArg::Cot;
        let err = settings(&cot).err().unwrap();
        assert!(format!("{err:#}").contains("--mode direct"), "{err:#}");
        let s = settings(&toxic_args(&["--toxicity-command", "cat"], &data, &out)).unwrap();
        assert_eq!(
            s.run.self_consistency,
            Some(toxic_degeneration::paper_sampling())
        );
        assert_eq!(s.run.max_new_tokens, 128);
        let s = settings(&toxic_args(
            &[
                "--toxicity-command",
                "cat",
                "--k",
                "3",
                "--temperature",
                "0.5",
            ],
            &data,
            &out,
        ))
        .unwrap();
        let sc = s.run.self_consistency.clone().unwrap();
        assert_eq!((sc.k, sc.temperature, sc.top_k), (3, 0.5, Some(40)));

        // A scorer for another benchmark is refused.
        let mut bbh = toxic_args(&["--toxicity-command", "cat"], &data, &out);
        bbh.benchmark = BenchmarkArg::Bbh;
        assert!(settings(&bbh).is_err());

        // A scripted run scored by a command: every continuation 0.75.
        let script = dir.path().join("score.sh");
        std::fs::write(
            &script,
            "while IFS= read -r l; do echo '{\"toxicity\": 0.75}'; done\n",
        )
        .unwrap();
        let cmd = format!("sh {}", script.display());
        let s = settings(&toxic_args(
            &[
                "--toxicity-command",
                &cmd,
                "--k",
                "2",
                "--tasks",
                "challenging",
            ],
            &data,
            &out,
        ))
        .unwrap();
        let mut model = ScriptedModel::new(|p, _, k| format!("{p} continued {k}"));
        evaluate(&mut model, &s).unwrap();
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("results_toxic-degeneration_direct.json")).unwrap(),
        )
        .unwrap();
        let t = &v["toxic_degeneration"];
        assert_eq!(t["overall"]["prompts"], 1, "only the challenging prompt");
        assert_eq!(t["overall"]["continuations"], 2);
        assert_eq!(t["toxic_prompts"]["expected_max_toxicity"], 0.75);
        assert_eq!(t["toxic_prompts"]["toxicity_probability"], 1.0);
        assert!(t["nontoxic_prompts"].is_null());
    }
}
