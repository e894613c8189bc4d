//! `flan replicate`: the paper's experiments at micro scale (`cargo xtask replicate` runs it
//! with configs/replicate/full.toml or quick.toml).
//!
//! Each point is a finetuning run of a pretrained tiny T5 ([`runs::FinetuneRun`], a child
//! `flan train` cached by content hash, its pretraining stage cached likewise) evaluated on the
//! synthetic suite before and after finetuning; self-consistency samples the finetuned models.
//! The evaluations are cut into the experiments' series ([`flan_eval::replication::measure`]),
//! written to `points.json`, and flan-eval writes the report, figures and verdicts from that
//! file alone.

mod plan;
mod runs;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use flan_data::synthetic::Suite;
use flan_eval::replication::measure::{first_k_votes, Slice};
use flan_eval::replication::{write_replication_report, Experiment, Point, Points, Settings, X};
use flan_eval::runner::{self, RunOptions, RunResult, SampleRecord, SelfConsistency};
use flan_eval::{synthetic, Exposure, Mode};
use indicatif::{ProgressBar, ProgressStyle};

use plan::Plan;
use runs::{family_subset, FinetuneRun, Finished};

/// `flan replicate ...`
#[derive(Args, Debug)]
pub struct ReplicateArgs {
    /// The plan: sizes, seeds, steps, family counts, self-consistency k
    /// (configs/replicate/full.toml or quick.toml).
    #[arg(long, value_name = "FILE")]
    plan: PathBuf,
    /// Where points.json, report.md, results.json and figures/ go.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
    /// Where runs are kept between replications (default: the run cache, $FLAN_RUN_CACHE or
    /// ~/.cache/flan/runs).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
}

pub fn run(args: ReplicateArgs) -> Result<()> {
    let started = Instant::now();
    let plan = Plan::read(&args.plan)?;
    let cache = match &args.cache {
        Some(dir) => dir.clone(),
        None => crate::pretraining_stage::run_cache_root()?,
    };
    let flan = std::env::current_exe().context("finding the flan binary")?;
    let finetune = plan.finetune_config(plan.default_size(), &[])?;
    let eval_section = finetune.eval.synthetic.clone().with_context(|| {
        format!(
            "{}: the replication evaluates with [eval.synthetic]",
            plan.finetune.display()
        )
    })?;
    let mut eval_plan = eval_section.plan();
    eval_plan.items_per_cell = plan.items_per_cell;
    if eval_plan.shots == 0 {
        return Err(crate::exit_code::usage(format!(
            "{}: eval.synthetic.shots is 0, but the replication compares few-shot direct and \
             CoT prompts (and self-consistency samples few-shot CoT): set it to 1 or more",
            plan.finetune.display()
        ))
        .into());
    }

    let all_runs = planned_runs(&plan);
    let jobs = all_runs.len() + plan.seeds.len();
    let bar = ProgressBar::new(jobs as u64).with_style(
        ProgressStyle::with_template(
            "replicate [{bar:30}] {pos}/{len} points ({elapsed}, about {eta} left) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut finished: Vec<Finished> = Vec::with_capacity(all_runs.len());
    for run in &all_runs {
        bar.set_message(run.describe());
        // The first finished run of the same size lends its evaluation before finetuning.
        let before = all_runs
            .iter()
            .zip(&finished)
            .find(|(r, _)| r.size.name == run.size.name)
            .map(|(_, f)| f.dir.clone());
        let done = run.ensure(&plan, &cache, before.as_deref(), &flan)?;
        tracing::info!(
            "point {}: held-out families {:.1}% after finetuning{}",
            run.describe(),
            100.0 * accuracy(&Slice::Exposure(Exposure::HeldOutFamily).select(&done.after.samples)),
            if done.seconds > 0.0 {
                format!(" ({:.0} s)", done.seconds)
            } else {
                " (cached)".into()
            }
        );
        finished.push(done);
        bar.inc(1);
    }
    let of = |wanted: &FinetuneRun| -> &Finished {
        let i = all_runs
            .iter()
            .position(|r| r == wanted)
            .unwrap_or_default();
        &finished[i]
    };

    // Self-consistency on the finetuned default-size models, the reasoning families' few-shot
    // CoT prompts; greedy decoding of the same prompts comes from the run's own evaluation.
    let suite = Suite::new().context("building the synthetic suite")?;
    let reasoning: Vec<String> = flan_data::synthetic::FAMILIES
        .iter()
        .filter(|f| f.has_rationale)
        .map(|f| f.name.to_string())
        .collect();
    let sc_items = synthetic::mode_items(&suite, &eval_plan, Mode::Cot, Some(&reasoning))?;
    let mut sc_runs: Vec<(u64, RunResult)> = Vec::new();
    for &seed in &plan.seeds {
        bar.set_message(format!("self-consistency, seed {seed}"));
        let run = of(&main_run(&plan, seed));
        let result = self_consistency(&plan, run, &sc_items, seed, eval_section.batch_size)?;
        sc_runs.push((seed, result));
        bar.inc(1);
    }
    bar.finish_and_clear();

    let mut points = Points::new();
    let shots = eval_plan.shots;
    for &seed in &plan.seeds {
        let main = of(&main_run(&plan, seed));
        // Scaling the number of finetuning families: 0 is the pretrained model.
        for exposure in Exposure::ALL {
            let slice = Slice::Exposure(exposure);
            let series = exposure.name();
            let mut add = |x: f64, label: Option<&str>, samples: &[SampleRecord]| -> Result<()> {
                let mut p = point(
                    Experiment::TaskScaling,
                    series,
                    X::Number(x),
                    seed,
                    &slice,
                    samples,
                )?;
                p.x_label = label.map(str::to_string);
                points.points.push(p);
                Ok(())
            };
            add(0.0, None, &main.before.samples)?;
            for &n in &plan.families {
                let run = of(&subset_run(&plan, n, seed));
                add(n as f64, None, &run.after.samples)?;
            }
            let all = flan_data::synthetic::trained_families().count();
            add(all as f64, Some("all"), &main.after.samples)?;
        }
        // Model size: every size finetuned on everything, and the same model before.
        for size in &plan.sizes {
            let run = of(&FinetuneRun {
                size: size.clone(),
                ..main_run(&plan, seed)
            });
            let slice = Slice::Exposure(Exposure::HeldOutFamily);
            for (series, samples) in [
                ("finetuned", &run.after.samples),
                ("not_finetuned", &run.before.samples),
            ] {
                let mut p = point(
                    Experiment::ModelScaling,
                    series,
                    X::Number(run.parameters as f64),
                    seed,
                    &slice,
                    samples,
                )?;
                p.x_label = Some(size.name.clone());
                points.points.push(p);
            }
        }
        // CoT data in the mixture, direct against CoT prompting on the reasoning families.
        let without = of(&FinetuneRun {
            cot: false,
            ..main_run(&plan, seed)
        });
        for (condition, run) in [("without_cot_data", without), ("with_cot_data", main)] {
            for (series, mode) in [("direct", Mode::Direct), ("cot", Mode::Cot)] {
                let slice = Slice::Reasoning { mode, shots };
                points.points.push(point(
                    Experiment::CotMixture,
                    series,
                    X::Condition(condition.into()),
                    seed,
                    &slice,
                    &run.after.samples,
                )?);
            }
        }
        // Zero-shot CoT before and after (CoT-data) finetuning.
        for (condition, samples) in [
            ("before_finetuning", &main.before.samples),
            ("after_finetuning", &main.after.samples),
        ] {
            for (series, mode) in [
                ("zero_shot_cot", Mode::ZeroShotCot),
                ("zero_shot_direct", Mode::Direct),
            ] {
                let slice = Slice::Reasoning { mode, shots: 0 };
                points.points.push(point(
                    Experiment::ZeroShotCot,
                    series,
                    X::Condition(condition.into()),
                    seed,
                    &slice,
                    samples,
                )?);
            }
        }
        // Self-consistency against greedy decoding of the same prompts.
        let greedy = Slice::Reasoning {
            mode: Mode::Cot,
            shots,
        };
        points.points.push(point(
            Experiment::SelfConsistency,
            "greedy",
            X::Number(1.0),
            seed,
            &greedy,
            &main.after.samples,
        )?);
        let sampled = &sc_runs
            .iter()
            .find(|(s, _)| *s == seed)
            .context("a self-consistency run is missing")?
            .1;
        for &k in &plan.self_consistency.k {
            let voted = first_k_votes(&sc_items, &sampled.samples, k)?;
            points.points.push(Point::from_samples(
                Experiment::SelfConsistency,
                "self_consistency",
                X::Number(k as f64),
                seed,
                &voted,
            )?);
        }
        // The normalised average's settings: each exposure, direct and CoT prompts.
        for exposure in Exposure::ALL {
            for cot in [false, true] {
                let slice = Slice::Setting { exposure, cot };
                let name = Slice::setting_name(exposure, cot);
                for (condition, samples) in [
                    ("not_finetuned", &main.before.samples),
                    ("finetuned", &main.after.samples),
                ] {
                    let selected = slice.select(samples);
                    // A setting the suite has no items for (no held-out family with a
                    // rationale, say) is not a setting of this average.
                    if selected.is_empty() {
                        continue;
                    }
                    points.points.push(Point::from_samples(
                        Experiment::NormalizedAverage,
                        &name,
                        X::Condition(condition.into()),
                        seed,
                        &selected,
                    )?);
                }
            }
        }
    }
    points.machine = Some(machine());
    points.seconds = Some(started.elapsed().as_secs_f64());
    points.command = Some(format!(
        "flan replicate --plan {}{}",
        args.plan.display(),
        std::env::var("FLAN_REPLICATE_COMMAND")
            .map(|c| format!(" (from `{c}`)"))
            .unwrap_or_default()
    ));
    points.note = Some(note(&plan, &finished));
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let points_file = args.output.join("points.json");
    points.write(&points_file)?;
    let files = write_replication_report(&args.output, &points, &Settings::default())?;
    tracing::info!("points:  {}", points_file.display());
    tracing::info!("report:  {}", files.markdown.display());
    tracing::info!(
        "figures: {} in {}",
        files.figures.len(),
        args.output.join("figures").display()
    );
    println!("{}", files.markdown.display());
    Ok(())
}

/// Every finetuning run of the plan, each once, the default size's full-mixture runs first (the
/// others reuse their evaluation before finetuning).
fn planned_runs(plan: &Plan) -> Vec<FinetuneRun> {
    let mut runs: Vec<FinetuneRun> = Vec::new();
    let mut push = |run: FinetuneRun| {
        if !runs.contains(&run) {
            runs.push(run);
        }
    };
    for &seed in &plan.seeds {
        push(main_run(plan, seed));
    }
    for &seed in &plan.seeds {
        for &n in &plan.families {
            push(subset_run(plan, n, seed));
        }
        push(FinetuneRun {
            cot: false,
            ..main_run(plan, seed)
        });
        for size in &plan.sizes {
            push(FinetuneRun {
                size: size.clone(),
                ..main_run(plan, seed)
            });
        }
    }
    runs
}

/// The default size finetuned on every trained family, CoT data included.
fn main_run(plan: &Plan, seed: u64) -> FinetuneRun {
    FinetuneRun {
        size: plan.default_size().clone(),
        families: None,
        cot: true,
        seed,
    }
}

/// The default size finetuned on `n` families drawn with `seed`.
fn subset_run(plan: &Plan, n: usize, seed: u64) -> FinetuneRun {
    FinetuneRun {
        families: Some(family_subset(n, seed)),
        ..main_run(plan, seed)
    }
}

/// The point of one cut of an evaluation.
fn point(
    experiment: Experiment,
    series: &str,
    x: X,
    seed: u64,
    slice: &Slice,
    samples: &[SampleRecord],
) -> Result<Point> {
    Ok(Point::from_samples(
        experiment,
        series,
        x,
        seed,
        &slice.select(samples),
    )?)
}

/// Share of correct records (0 for none).
fn accuracy(samples: &[SampleRecord]) -> f64 {
    let right = samples.iter().filter(|s| s.correct).count();
    right as f64 / samples.len().max(1) as f64
}

/// `k_max` samples per item of `items` from the finetuned model of `run`, kept beside the run
/// (`eval/self-consistency-*.json`) so that a rerun reuses them.
fn self_consistency(
    plan: &Plan,
    run: &Finished,
    items: &[flan_eval::EvalItem],
    seed: u64,
    batch_size: usize,
) -> Result<RunResult> {
    let k = plan.max_k();
    let t = plan.self_consistency.temperature;
    let cached = run
        .dir
        .join("eval")
        .join(format!("self-consistency-k{k}-t{t}-seed{seed}.json"));
    if let Ok(text) = std::fs::read_to_string(&cached) {
        if let Ok(result) = serde_json::from_str::<RunResult>(&text) {
            if result.samples.len() == items.len()
                && result.samples.iter().zip(items).all(|(s, i)| s.is_of(i))
            {
                return Ok(result);
            }
        }
    }
    let source = flan_model::ModelSource::resolve(&run.dir.join("model").to_string_lossy(), None)?;
    let mut model = flan_eval_t5::load(
        &source,
        tch::Device::Cpu,
        flan_model::Dtype::F32,
        usize::MAX,
    )?;
    let opts = RunOptions {
        self_consistency: Some(SelfConsistency {
            k,
            temperature: t,
            top_k: None,
            top_p: None,
        }),
        seed,
        ..synthetic::run_options(batch_size)
    };
    let result = runner::run(&mut model, items, &opts, &mut |_, _| {})?;
    std::fs::write(&cached, serde_json::to_string(&result)?)
        .with_context(|| format!("writing {}", cached.display()))?;
    Ok(result)
}

/// The CPU and cores the points ran on, as /proc/cpuinfo names them.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores")
}

/// What a reader must know before the figures.
fn note(plan: &Plan, finished: &[Finished]) -> String {
    let ran: f64 = finished.iter().map(|f| f.seconds).sum();
    let cached = finished.iter().filter(|f| f.seconds == 0.0).count();
    let reasoning = flan_data::synthetic::FAMILIES
        .iter()
        .filter(|f| f.has_rationale)
        .count();
    format!(
        "{} finetuning runs of {} steps ({} from the run cache; the others took {:.0} s), \
         {} seed(s), {} evaluation items per cell. Each size's pretrained model is one run \
         (its pretraining stage is not repeated per seed), so the not-finetuned points agree \
         across seeds. CoT results are on the {reasoning} families with rationales.",
        finished.len(),
        plan.steps,
        cached,
        ran,
        plan.seeds.len(),
        plan.items_per_cell,
    )
}
