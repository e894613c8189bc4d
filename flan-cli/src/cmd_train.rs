//! `flan train`: finetune T5 on a flan-data mixture as a `TrainConfig` says.
//!
//! Raw arguments become a checked `TrainConfig` (file, then named flags, then `--set key=value`
//! in order); flan-train does the rest. Evaluation during training is wired here, because
//! flan-train must not depend on flan-eval: the hook saves the current weights, loads them
//! through the evaluator's T5 adapter and runs the configured benchmarks with a sample limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use flan_data::tokenizer::Tokenizer;
use flan_eval::runner::{self, RunOptions};
use flan_eval::suite::{self, SuiteOptions};
use flan_eval::{Benchmark, EvalModel, Mode};
use flan_eval_t5::T5EvalModel;
use flan_model::{DeviceSpec, T5ForConditionalGeneration};
use flan_train::card::ModelCard;
use flan_train::config::{ProgressStyle, TrainConfig};
use flan_train::stop::{signal_name, StopSignals};
use flan_train::trainer::EvalHook;

use crate::logging::LogFormat;

/// `flan train ...`
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The run's TOML config (see flan-train's `TrainConfig`); without it, flags and `--set`
    /// must say everything.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override a config value, `key=value` with dotted keys (`schedule.lr=5e-4`); repeatable,
    /// applied last and in order.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue from this checkpoint directory (default: the latest in the output directory).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Start afresh even when the output directory has checkpoints.
    #[arg(long, conflicts_with = "resume")]
    no_resume: bool,
    /// A pretrained model to finetune (`model.pretrained`): a directory, or a hub id such as
    /// google/flan-t5-small (from the Hugging Face cache, downloaded when online).
    #[arg(long, value_name = "DIR|HUB_ID")]
    model: Option<PathBuf>,
    /// The flan-data mixture spec (`data.mixture`).
    #[arg(long, value_name = "FILE")]
    mixture: Option<PathBuf>,
    /// Output directory (`output_dir`).
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Optimizer steps (`train.steps`).
    #[arg(long)]
    steps: Option<u64>,
    /// Seed (`seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// cpu, cuda, cuda:N or auto (`device`). Under torchrun or srun, cuda and auto mean the
    /// rank's own GPU (LOCAL_RANK, else SLURM_LOCALID).
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// Peak learning rate (`schedule.lr`).
    #[arg(long)]
    lr: Option<f64>,
    /// Micro-batch size (`batch.size`).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Pad one example per row instead of packing (`data.pack = false`).
    #[arg(long)]
    no_pack: bool,
    /// Print the resolved config as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

impl TrainArgs {
    /// Named flags as overrides, before the explicit `--set`s.
    fn overrides(&self) -> Vec<String> {
        let path = |p: &Path| {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            toml_quote(&p.display().to_string())
        };
        let mut o = Vec::new();
        if let Some(m) = &self.model {
            let hub_id = !m.exists() && flan_model::hub::is_hub_id(&m.to_string_lossy());
            let value = if hub_id {
                toml_quote(&m.to_string_lossy())
            } else {
                path(m)
            };
            o.push(format!("model.pretrained={value}"));
        }
        if let Some(m) = &self.mixture {
            o.push(format!("data.mixture={}", path(m)));
        }
        if let Some(d) = &self.output_dir {
            o.push(format!("output_dir={}", path(d)));
        }
        if let Some(s) = self.steps {
            o.push(format!("train.steps={s}"));
        }
        if let Some(s) = self.seed {
            o.push(format!("seed={s}"));
        }
        if let Some(d) = &self.device {
            o.push(format!("device={}", toml_quote(&d.to_string())));
        }
        if let Some(lr) = self.lr {
            o.push(format!("schedule.lr={lr:e}"));
        }
        if let Some(b) = self.batch_size {
            o.push(format!("batch.size={b}"));
        }
        if self.no_pack {
            o.push("data.pack=false".into());
        }
        if self.no_resume {
            o.push("checkpoint.auto_resume=false".into());
        }
        o.extend(self.set.iter().cloned());
        o
    }
}

/// A TOML basic string (so paths with spaces or `#` survive the override parser).
fn toml_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn run(args: TrainArgs, log_format: LogFormat) -> Result<()> {
    let overrides = args.overrides();
    let mut cfg = match &args.config {
        Some(file) => TrainConfig::load(file, &overrides)?,
        None => TrainConfig::from_overrides(&overrides)
            .context("no --config given: the named flags and --set must describe the whole run")?,
    };
    if args.print_config {
        print!("{}", cfg.to_toml()?);
        return Ok(());
    }
    // A log pipeline reads events, not a bar redrawn in place.
    if log_format == LogFormat::Json
        && matches!(cfg.log.progress, ProgressStyle::Auto | ProgressStyle::Bar)
    {
        cfg.log.progress = ProgressStyle::Lines;
    }
    // A pretraining stage (`model.pretrain`) becomes its cached model, trained first if needed.
    crate::pretraining_stage::resolve(&mut cfg)?;
    // A hub id becomes its local snapshot once, for the trainer and the evaluations alike.
    cfg.resolve_pretrained()?;
    let hook: Option<Box<dyn EvalHook<T5ForConditionalGeneration>>> = if cfg.eval.every > 0 {
        Some(Box::new(BenchmarkHook::new(&cfg)?))
    } else {
        None
    };
    // Everything that can refuse the run (config, data, checkpoint, world size) is checked
    // before any evaluation spends time.
    let (mut trainer, resumed) = flan_train::run::prepare(&cfg, args.resume.as_deref())?;
    if let Some(dir) = resumed {
        tracing::info!("resuming from {} (step {})", dir.display(), trainer.step());
    }
    // `[eval.synthetic]`: the suite on the untrained model now, on the saved model at the end.
    let synthetic = crate::train_report::from_config(&cfg)?;
    let before = match &synthetic {
        Some(s) => Some(s.before(&cfg)?),
        None => None,
    };
    if let Some(hook) = hook {
        trainer = trainer.with_eval_hook(hook);
    }
    // From here the first SIGTERM/SIGINT stops training after the current step with a
    // checkpoint (exit status 75); a second one exits at once.
    let signals = StopSignals::install()?;
    // (The trainer lives to the end of this function: it holds the output directory's lock.)
    trainer = trainer.with_stop_flag(signals.flag());
    let summary = trainer.run()?;
    // Nothing is left to save: a signal now ends the process at once.
    signals.exit_on_next_signal();
    for line in summary.truncation.describe() {
        tracing::info!("truncation (data.input_len / data.target_len): {line}");
    }
    tracing::info!(
        "trained {} steps (from {}): final loss {:.4}, mean of the last steps {:.4}, {:.0} tokens/s, packing {:.1}%, {} examples, {} skipped updates, {} truncated examples, {} parameters trained ({} frozen), {:.1} s",
        summary.steps,
        summary.resumed_from,
        summary.final_loss,
        summary.recent_mean_loss,
        summary.tokens_per_second,
        100.0 * summary.packing_efficiency,
        summary.examples_seen,
        summary.skipped_steps,
        summary.truncation.truncated,
        summary.parameters.trainable,
        summary.parameters.frozen,
        summary.seconds
    );
    if let Some(signal) = signals.flag().requested() {
        // A signal during the last step: training is complete and saved, the evaluation after
        // it is not; the rerun finds the run finished and evaluates.
        return Err(flan_train::Error::Preempted {
            step: summary.steps,
            signal: signal_name(signal),
            checkpoint: summary.last_checkpoint.clone(),
        }
        .into());
    }
    let report = match (&synthetic, before, &summary.model_dir) {
        (Some(s), Some(before), Some(dir)) => {
            let (files, table) = s.after(&cfg, dir, &summary, before)?;
            ModelCard::new(&cfg, &summary)
                .with_evaluation(table)
                .write(dir)?;
            Some(files)
        }
        _ => None,
    };
    if let Some(dir) = &summary.model_dir {
        tracing::info!("model:   {}", dir.display());
    }
    if flan_train::distributed::is_primary_from_env()? {
        tracing::info!(
            "metrics: {}",
            cfg.output_dir.join("metrics.jsonl").display()
        );
    }
    if let Some(files) = &report {
        tracing::info!("results: {}", files.results.display());
        tracing::info!("report:  {}", files.markdown.display());
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// One configured evaluation: `benchmark:mode`, e.g. `bbh:direct`, `gsm8k:cot`.
struct Evaluation {
    benchmark: Benchmark,
    mode: Mode,
    data: PathBuf,
}

/// Runs flan-eval's benchmarks on the model being trained.
struct BenchmarkHook {
    evaluations: Vec<Evaluation>,
    limit: Option<usize>,
    tokenizer: PathBuf,
    seed: u64,
}

impl BenchmarkHook {
    fn new(cfg: &TrainConfig) -> Result<Self> {
        let data_dir = || {
            cfg.eval.data_dir.clone().context(
                "eval.data_dir is required for evaluation during training on a benchmark read \
                 from files (the folder with bbh/, mgsm/, gsm8k/, mmlu/, tydiqa/)",
            )
        };
        let mut evaluations = Vec::new();
        for entry in &cfg.eval.benchmarks {
            let (b, m) = entry.split_once(':').unwrap_or((entry.as_str(), "direct"));
            let benchmark: Benchmark = b
                .parse()
                .with_context(|| format!("eval.benchmarks entry `{entry}`"))?;
            let mode: Mode = m
                .parse()
                .with_context(|| format!("eval.benchmarks entry `{entry}`"))?;
            if benchmark == Benchmark::ToxicDegeneration {
                bail!(
                    "eval.benchmarks entry `{entry}`: toxic degeneration needs a toxicity \
                     scorer; run it after training with `flan eval run --benchmark \
                     toxic-degeneration`"
                );
            }
            let data = match benchmark {
                // Generated, not read.
                Benchmark::Synthetic => PathBuf::new(),
                Benchmark::Gsm8k => data_dir()?.join("gsm8k").join("test.jsonl"),
                // One JSONL file, like GSM8K's.
                Benchmark::Toxicity => data_dir()?.join("toxicity").join("test.jsonl"),
                other => data_dir()?.join(other.to_string()),
            };
            if benchmark != Benchmark::Synthetic && !data.exists() {
                bail!(
                    "eval.benchmarks entry `{entry}`: {} does not exist",
                    data.display()
                );
            }
            evaluations.push(Evaluation {
                benchmark,
                mode,
                data,
            });
        }
        let tokenizer = match (&cfg.model.tokenizer, &cfg.model.pretrained) {
            (Some(t), _) => t.clone(),
            (None, Some(dir)) => dir.join("tokenizer.json"),
            (None, None) => bail!("model.tokenizer is required"),
        };
        Ok(BenchmarkHook {
            evaluations,
            limit: cfg.eval.limit,
            tokenizer,
            seed: cfg.seed,
        })
    }

    fn scores(
        &self,
        model: &T5ForConditionalGeneration,
        step: u64,
    ) -> Result<BTreeMap<String, f64>> {
        let tokenizer = Tokenizer::from_file(&self.tokenizer)
            .with_context(|| self.tokenizer.display().to_string())?;
        let mut scores = BTreeMap::new();
        for e in &self.evaluations {
            let mut suite_opts = SuiteOptions::new(e.benchmark, e.mode, &e.data);
            suite_opts.limit = self.limit;
            suite_opts.seed = self.seed;
            // The model being trained, evaluated in place: on its device (this rank's), in its
            // dtype, with its adapter if it has one.
            let mut eval_model = T5EvalModel::new(
                model,
                tokenizer.clone(),
                format!("step {step}"),
                suite_opts.max_input_tokens,
            );
            let items = suite::build_items(&suite_opts, &mut |t| eval_model.count_tokens(t))?;
            let opts = RunOptions {
                seed: self.seed,
                // Only the synthetic suite's items carry references to bound generation by.
                reference_slack: Some(flan_eval::synthetic::REFERENCE_SLACK),
                ..RunOptions::default()
            };
            let result = runner::run(&mut eval_model, &items, &opts, &mut |_, _| {})?;
            scores.insert(
                format!("{}-{}/accuracy", e.benchmark, e.mode),
                result.headline(e.benchmark),
            );
        }
        Ok(scores)
    }
}

impl EvalHook<T5ForConditionalGeneration> for BenchmarkHook {
    fn evaluate(
        &mut self,
        model: &T5ForConditionalGeneration,
        step: u64,
    ) -> flan_train::Result<BTreeMap<String, f64>> {
        self.scores(model, step)
            .map_err(|e| flan_train::Error::Eval {
                step,
                message: format!("{e:#}"),
            })
    }
}
