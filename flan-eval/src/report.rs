//! Reports of a run: per-sample JSONL, a results JSON in the shape of lm-evaluation-harness, and
//! a Markdown table.
//!
//! Results JSON: `results: {task: {"exact_match,strict-match": v, "exact_match_stderr,strict-match":
//! s, ...}}` with values as fractions in [0, 1] like lm-evaluation-harness (rank-classified
//! MMLU reports `acc,none`); plus `configs`, `versions`, `n-shot`, `n-samples`, `config` and
//! `date`, and a `flan` section with the benchmark's headline number in percent and, for the
//! paper's six settings, the setting name and its normalised score. Toxic degeneration reports
//! RealToxicityPrompts' metrics instead of accuracies, per task and in a `toxic_degeneration`
//! section ([`crate::toxic_degeneration::DegenerationMetrics`]).
//!
//! Accuracy against chance: a `scorecard` section ([`RunScorecard`]: `overall`, `by_task`, and
//! `by_exposure_form` on the synthetic suite) gives each cell's items, accuracy, chance baseline
//! ([`crate::chance`]) and accuracy − chance, each with a seeded bootstrap interval
//! ([`Bootstrap::default`]), and `without_chance` counts the items that have no baseline. The
//! Markdown shows chance and accuracy − chance next to each task's accuracy and each exposure
//! and prompt form's. Toxic degeneration has no gold answers and no chance: its `scorecard`
//! says so (`unavailable`).

use crate::breakdown::Breakdown;
use crate::error::Error;
use crate::interval::Bootstrap;
use crate::item::{Benchmark, EvalItem, Exposure, Mode};
use crate::metrics::{normalized, PaperSetting};
use crate::run_scorecard::RunScorecard;
use crate::runner::{RunOptions, RunResult, SampleRecord};
use crate::scorecard::{level, points_cell, RunScore};
use crate::toxic_degeneration::{DegenerationGroup, DegenerationMetrics};
use crate::Result;
use crate::{toxicity, winogender};
use flan_data::atomic::{commit_all, AtomicFile};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which of the paper's six settings a run is, if any.
pub fn setting_of(benchmark: Benchmark, mode: Mode) -> Option<PaperSetting> {
    Some(match (benchmark, mode) {
        (Benchmark::Mmlu, Mode::Direct) => PaperSetting::MmluDirect,
        (Benchmark::Mmlu, Mode::Cot) => PaperSetting::MmluCot,
        (Benchmark::Bbh, Mode::Direct) => PaperSetting::BbhDirect,
        (Benchmark::Bbh, Mode::Cot) => PaperSetting::BbhCot,
        (Benchmark::Tydiqa, Mode::Direct) => PaperSetting::TydiqaDirect,
        (Benchmark::Mgsm, Mode::Cot) => PaperSetting::MgsmCot,
        _ => return None,
    })
}

/// Describes the run for the report.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Model name.
    pub model: String,
    /// Benchmark.
    pub benchmark: Benchmark,
    /// Mode.
    pub mode: Mode,
    /// `--limit`.
    pub limit: Option<usize>,
    /// Run options.
    pub options: RunOptions,
    /// The dtype the model's weights were loaded in (flan-model's `Dtype` text form: `f32`,
    /// `bf16`, `f16`), when the model has one; `config.dtype` of the results JSON.
    pub dtype: Option<String>,
}

/// The results JSON.
pub fn results_json(info: &RunInfo, items: &[EvalItem], result: &RunResult) -> Value {
    let mut results = Map::new();
    let mut configs = Map::new();
    let mut versions = Map::new();
    let mut n_shot = Map::new();
    let mut n_samples = Map::new();
    let mut ranked: BTreeMap<&str, bool> = BTreeMap::new();
    for item in items {
        ranked.insert(&item.task, item.choices.is_some());
    }
    for (task, t) in &result.tasks {
        let is_ranked = ranked.get(task.as_str()).copied().unwrap_or(false);
        let (metric, filter) = if is_ranked {
            ("acc", "none")
        } else {
            ("exact_match", "strict-match")
        };
        let mut r = Map::new();
        r.insert("alias".into(), json!(task));
        if info.benchmark == Benchmark::ToxicDegeneration {
            // Continuations have no gold answer: the task's numbers are its toxicity metrics.
            let group = DegenerationGroup::of(
                result
                    .samples
                    .iter()
                    .filter(|s| &s.task == task)
                    .filter_map(|s| s.toxicity.as_deref()),
            );
            if let Some(g) = group {
                r.insert(
                    "expected_max_toxicity,none".into(),
                    json!(g.expected_max_toxicity),
                );
                r.insert(
                    "expected_max_toxicity_std,none".into(),
                    json!(g.expected_max_toxicity_std),
                );
                r.insert(
                    "toxicity_probability,none".into(),
                    json!(g.toxicity_probability),
                );
            }
        } else {
            r.insert(format!("{metric},{filter}"), json!(t.accuracy / 100.0));
            r.insert(format!("{metric}_stderr,{filter}"), json!(t.stderr / 100.0));
        }
        if let Some(f1) = t.f1 {
            r.insert(format!("f1,{filter}"), json!(f1 / 100.0));
        }
        if info.benchmark == Benchmark::ToxicDegeneration {
            // The k samples are continuations, not votes.
        } else if let Some(by_k) = &t.accuracy_by_k {
            r.insert(
                "self_consistency_accuracy_by_k".into(),
                json!(by_k.iter().map(|a| a / 100.0).collect::<Vec<_>>()),
            );
        }
        results.insert(task.clone(), Value::Object(r));
        let rule = items
            .iter()
            .find(|i| &i.task == task)
            .map(|i| serde_json::to_value(&i.rule).unwrap_or(Value::Null));
        configs.insert(
            task.clone(),
            json!({
                "task": task,
                "output_type": if is_ranked { "multiple_choice" } else { "generate_until" },
                "num_fewshot": t.n_shot,
                "answer_rule": rule,
                "mode": info.mode.name(),
            }),
        );
        versions.insert(task.clone(), json!(1));
        n_shot.insert(task.clone(), json!(t.n_shot));
        n_samples.insert(task.clone(), json!({"original": t.n, "effective": t.n}));
    }
    let degeneration = DegenerationMetrics::of(&result.samples);
    let headline = match (&degeneration, info.benchmark) {
        // Toxic degeneration's headline: the expected maximum toxicity over all prompts.
        (Some(t), Benchmark::ToxicDegeneration) => t.overall.expected_max_toxicity,
        _ => result.headline(info.benchmark),
    };
    let setting = setting_of(info.benchmark, info.mode);
    let breakdown = Breakdown::of(&result.samples);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    json!({
        "results": results,
        "configs": configs,
        "versions": versions,
        "n-shot": n_shot,
        "n-samples": n_samples,
        "config": {
            "model": info.model,
            "benchmark": info.benchmark.name(),
            "mode": info.mode.name(),
            "limit": info.limit,
            "batch_size": info.options.batch_size,
            "max_new_tokens": info.options.max_new_tokens,
            "self_consistency": info.options.self_consistency,
            "seed": info.options.seed,
            "max_input_tokens": result.input_limit,
            "overlong": info.options.overlong,
            "dtype": info.dtype,
        },
        "truncation": {"prompts": result.prompts},
        "breakdown": breakdown.has_exposures().then_some(&breakdown),
        "winogender": (info.benchmark == Benchmark::Winogender)
            .then(|| winogender::metrics(&result.samples)),
        "toxicity": (info.benchmark == Benchmark::Toxicity)
            .then(|| toxicity::metrics(&result.samples)),
        "toxic_degeneration": degeneration,
        "scorecard": scorecard_json(info, result),
        "date": now,
        "flan": {
            "benchmark": info.benchmark.name(),
            "mode": info.mode.name(),
            "score": headline,
            "micro_accuracy": result.micro_accuracy(),
            "macro_accuracy": result.macro_accuracy(),
            "macro_f1": result.macro_f1(),
            "setting": setting,
            "normalized_score": setting.map(|s| normalized(headline, s.random_score())),
        },
    })
}

/// Why a run has no scorecard, when it has none.
const NO_GOLD_ANSWERS: &str = "toxic degeneration continues prompts without gold answers, so \
     there is no accuracy and no chance baseline (its metrics are in toxic_degeneration)";

/// The run's accuracy against chance, or why it has none.
fn run_scorecard(info: &RunInfo, result: &RunResult) -> std::result::Result<RunScorecard, String> {
    if info.benchmark == Benchmark::ToxicDegeneration {
        return Err(NO_GOLD_ANSWERS.to_string());
    }
    RunScorecard::of(&result.samples, &Bootstrap::default()).map_err(|e| e.to_string())
}

/// The results JSON's `scorecard`: the [`RunScorecard`], or `{"unavailable": why}`.
fn scorecard_json(info: &RunInfo, result: &RunResult) -> Value {
    match run_scorecard(info, result) {
        Ok(card) => {
            serde_json::to_value(&card).unwrap_or_else(|e| json!({ "unavailable": e.to_string() }))
        }
        Err(why) => json!({ "unavailable": why }),
    }
}

/// A cell's chance baseline in percent, `n/a` without one.
fn chance_percent(score: Option<&RunScore>) -> String {
    score.map_or("n/a".into(), |s| format!("{:.2}", 100.0 * s.chance))
}

/// A cell's accuracy − chance in points with its interval, `n/a` without a baseline.
fn margin_points(score: Option<&RunScore>) -> String {
    score.map_or("n/a".into(), |s| {
        points_cell(s.above_chance, s.above_chance_interval)
    })
}

/// The lines under the task table: accuracy against chance over all items, how to read the
/// chance columns, and which items have no baseline.
fn chance_markdown(card: &std::result::Result<RunScorecard, String>) -> String {
    let card = match card {
        Ok(card) => card,
        Err(why) => return format!("\nNo chance baselines: {why}.\n"),
    };
    let level = level(&card.bootstrap);
    let mut md = String::new();
    match &card.overall {
        Some(all) => {
            let i = all.accuracy_interval.scaled(100.0);
            md.push_str(&format!(
                "\nAll {} items with a chance baseline: accuracy {:.2}% ({level} interval \
                 {:.2}–{:.2}), chance {:.2}%, accuracy − chance {} points.\n",
                all.items,
                100.0 * all.accuracy,
                i.low,
                i.high,
                100.0 * all.chance,
                points_cell(all.above_chance, all.above_chance_interval),
            ));
        }
        None => md.push_str("\nNo item has a chance baseline.\n"),
    }
    md.push_str(&format!(
        "\n*Chance* is what a model that learned only the answer format scores: 1/k on an item \
         offering k answers (listed options or ranked candidates), and on a free-form item how \
         often its task's majority answer among the other examples is its gold answer. \
         Accuracy − chance is in points with its {level} percentile bootstrap interval over the \
         items ({} resamples, seed {}); **bold**: the whole interval lies on one side of zero, \
         so the accuracy differs from chance by more than the interval.\n",
        card.bootstrap.resamples, card.bootstrap.seed
    ));
    let missing = card.missing();
    if !missing.is_empty() {
        let reasons: Vec<String> = missing
            .iter()
            .map(|(why, n)| format!("{n} with {}", why.reason()))
            .collect();
        let tasks: Vec<&str> = card.without_chance.keys().map(String::as_str).collect();
        let n: usize = missing.values().sum();
        md.push_str(&format!(
            "\n{n} {} no chance baseline ({}; tasks: {}) and {} left out of the chance columns \
             and the line above.\n",
            if n == 1 { "item has" } else { "items have" },
            reasons.join(", "),
            tasks.join(", "),
            if n == 1 { "is" } else { "are" },
        ));
    }
    md
}

/// The Markdown table of a run.
pub fn markdown(info: &RunInfo, result: &RunResult) -> String {
    if info.benchmark == Benchmark::ToxicDegeneration {
        return toxicity_markdown(info, result);
    }
    let card = run_scorecard(info, result);
    let level = card
        .as_ref()
        .map_or_else(|_| level(&Bootstrap::default()), |c| level(&c.bootstrap));
    let task_score = |task: &str| card.as_ref().ok().and_then(|c| c.task(task));
    let mut md = format!(
        "# {} {} on {}\n\n| task | n | shots | accuracy (%) | stderr | F1 (%) | no answer | chance (%) | accuracy − chance ({level}) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        info.benchmark, info.mode, info.model
    );
    for (task, t) in &result.tasks {
        md.push_str(&format!(
            "| {task} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} |\n",
            t.n,
            t.n_shot,
            t.accuracy,
            t.stderr,
            t.f1.map_or("-".to_string(), |f| format!("{f:.2}")),
            t.no_answer,
            chance_percent(task_score(task)),
            margin_points(task_score(task)),
        ));
    }
    md.push_str(&format!(
        "\n**{} {}: {:.2}** ({} over {} tasks; {} items)\n",
        info.benchmark,
        info.mode,
        result.headline(info.benchmark),
        if matches!(
            info.benchmark,
            Benchmark::Mmlu
                | Benchmark::Gsm8k
                | Benchmark::Synthetic
                | Benchmark::Winogender
                | Benchmark::Toxicity
        ) {
            "accuracy over all items"
        } else {
            "mean"
        },
        result.tasks.len(),
        result.samples.len()
    ));
    md.push_str(&chance_markdown(&card));
    match info.benchmark {
        Benchmark::Winogender => md.push_str(&winogender::metrics(&result.samples).markdown()),
        Benchmark::Toxicity => md.push_str(&toxicity::metrics(&result.samples).markdown()),
        _ => {}
    }
    let breakdown = Breakdown::of(&result.samples);
    if breakdown.has_exposures() {
        md.push_str(&format!(
            "\n| exposure | form | n | accuracy (%) | chance (%) | accuracy − chance ({level}) |\n|---|---|---:|---:|---:|---:|\n"
        ));
        for exposure in Exposure::ALL {
            for form in breakdown.forms() {
                if let Some(t) = breakdown.form(exposure, &form) {
                    let score = card.as_ref().ok().and_then(|c| c.form(exposure, &form));
                    md.push_str(&format!(
                        "| {} | {form} | {} | {:.2} | {} | {} |\n",
                        exposure.name(),
                        t.n,
                        t.percent(),
                        chance_percent(score),
                        margin_points(score),
                    ));
                }
            }
        }
    }
    if let Some(sc) = &info.options.self_consistency {
        md.push_str(&format!(
            "\nSelf-consistency: k = {}, temperature {}. Accuracy (mean over tasks) voting over the first k samples:\n\n| k | accuracy (%) |\n|---:|---:|\n",
            sc.k, sc.temperature
        ));
        let curves: Vec<&Vec<f64>> = result
            .tasks
            .values()
            .filter_map(|t| t.accuracy_by_k.as_ref())
            .collect();
        for k in (1..=sc.k).filter(|k| [1, 2, 5, 10, 20, 40].contains(k) || *k == sc.k) {
            let at_k: Vec<f64> = curves
                .iter()
                .filter_map(|c| c.get(k - 1).copied())
                .collect();
            md.push_str(&format!("| {k} | {:.2} |\n", crate::metrics::mean(&at_k)));
        }
    }
    md
}

/// The Markdown of a toxic-degeneration run: RealToxicityPrompts' two metrics per prompt group.
fn toxicity_markdown(info: &RunInfo, result: &RunResult) -> String {
    let mut md = format!("# {} {} on {}\n\n", info.benchmark, info.mode, info.model);
    if let Some(sc) = &info.options.self_consistency {
        md.push_str(&format!(
            "{} continuations per prompt, temperature {}, top-k {}, top-p {}, up to {} new \
             tokens, seed {}.\n\n",
            sc.k,
            sc.temperature,
            sc.top_k.map_or("off".to_string(), |k| k.to_string()),
            sc.top_p.map_or("off".to_string(), |p| p.to_string()),
            info.options.max_new_tokens,
            info.options.seed
        ));
    }
    let Some(t) = DegenerationMetrics::of(&result.samples) else {
        md.push_str("No continuation was scored for toxicity.\n");
        return md;
    };
    md.push_str(
        "| prompts | n | continuations | expected max. toxicity | std | toxicity probability |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for (name, g) in t.groups() {
        md.push_str(&format!(
            "| {name} | {} | {} | {:.3} | {:.3} | {:.3} |\n",
            g.prompts,
            g.continuations,
            g.expected_max_toxicity,
            g.expected_max_toxicity_std,
            g.toxicity_probability
        ));
    }
    md.push_str(&format!(
        "\n**{} {}: expected maximum toxicity {:.3}, toxicity probability {:.3}** ({} prompts; \
         a continuation is toxic at toxicity >= {}; a prompt is toxic at >= {})\n",
        info.benchmark,
        info.mode,
        t.overall.expected_max_toxicity,
        t.overall.toxicity_probability,
        t.overall.prompts,
        t.threshold,
        t.threshold
    ));
    if t.empty_continuations > 0 {
        md.push_str(&format!(
            "\n{} empty continuations scored 0 without asking the scorer.\n",
            t.empty_continuations
        ));
    }
    if t.samples_without_scores > 0 {
        md.push_str(&format!(
            "\n{} prompts have no scores and are not in the metrics.\n",
            t.samples_without_scores
        ));
    }
    md
}

/// Paths written by [`write_outputs`].
#[derive(Debug, Clone)]
pub struct OutputPaths {
    /// Per-sample JSONL.
    pub samples: PathBuf,
    /// Results JSON.
    pub results: PathBuf,
    /// Markdown table.
    pub markdown: PathBuf,
}

/// Writes `samples_<benchmark>_<mode>.jsonl`, `results_<benchmark>_<mode>.json` and
/// `results_<benchmark>_<mode>.md` into `dir` (created if missing). The three are written to
/// temporaries first and replace the files of an earlier run only once all three are complete,
/// so a failure leaves the earlier run's reports as they were, never a mix.
pub fn write_outputs(
    dir: &Path,
    info: &RunInfo,
    items: &[EvalItem],
    result: &RunResult,
) -> Result<OutputPaths> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let stem = format!("{}_{}", info.benchmark, info.mode);
    let paths = OutputPaths {
        samples: dir.join(format!("samples_{stem}.jsonl")),
        results: dir.join(format!("results_{stem}.json")),
        markdown: dir.join(format!("results_{stem}.md")),
    };
    let samples = samples_file(&paths.samples, &result.samples)?;
    let mut results = AtomicFile::create(&paths.results)?;
    results.write_bytes(
        serde_json::to_string_pretty(&results_json(info, items, result))?.as_bytes(),
    )?;
    let mut table = AtomicFile::create(&paths.markdown)?;
    table.write_bytes(markdown(info, result).as_bytes())?;
    commit_all(vec![samples, results, table])?;
    Ok(paths)
}

/// The per-sample JSONL of a run, one record a line, written to a temporary that
/// [`AtomicFile::commit`] puts in place.
pub fn samples_file(path: &Path, samples: &[SampleRecord]) -> Result<AtomicFile> {
    let mut file = AtomicFile::create(path)?;
    for s in samples {
        let mut line = serde_json::to_vec(s)?;
        line.push(b'\n');
        file.write_bytes(&line)?;
    }
    Ok(file)
}

/// The paper's normalised average from the `flan` sections of results files, one per setting.
/// Errors name the missing settings.
pub fn normalized_average_of(results: &[Value]) -> Result<(f64, Vec<(PaperSetting, f64)>)> {
    let mut scores = Vec::new();
    for r in results {
        let flan = &r["flan"];
        if let (Ok(Some(setting)), Some(score)) = (
            serde_json::from_value::<Option<PaperSetting>>(flan["setting"].clone()),
            flan["score"].as_f64(),
        ) {
            scores.retain(|(s, _)| *s != setting);
            scores.push((setting, score));
        }
    }
    match crate::metrics::normalized_average(&scores) {
        Some(avg) => Ok((avg, scores)),
        None => {
            let missing: Vec<String> = PaperSetting::ALL
                .iter()
                .filter(|s| !scores.iter().any(|(x, _)| x == *s))
                .map(|s| format!("{s:?}"))
                .collect();
            Err(Error::Config(format!(
                "the normalized average needs all six settings; missing {}",
                missing.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::AnswerRule;
    use crate::runner;
    use crate::scripted::ScriptedModel;
    use crate::synthetic;
    use flan_data::synthetic::{StandardEval, Suite};
    use std::collections::{BTreeSet, HashMap};

    /// The top-level keys of the results JSON before the scorecard (other tools read them).
    const KEYS_BEFORE_SCORECARD: [&str; 13] = [
        "results",
        "configs",
        "versions",
        "n-shot",
        "n-samples",
        "config",
        "truncation",
        "breakdown",
        "winogender",
        "toxicity",
        "toxic_degeneration",
        "date",
        "flan",
    ];

    fn info(benchmark: Benchmark) -> RunInfo {
        RunInfo {
            model: "scripted".into(),
            benchmark,
            mode: Mode::Direct,
            limit: None,
            options: RunOptions::default(),
            dtype: None,
        }
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// The synthetic suite's standard evaluation (small) run by a model that knows the answer
    /// of every other item.
    fn synthetic_run() -> (Vec<EvalItem>, RunResult) {
        let plan = StandardEval {
            seed: 5,
            items_per_cell: 2,
            shots: 1,
        };
        let items = synthetic::standard_items(&Suite::new().unwrap(), &plan).unwrap();
        let answers: HashMap<String, String> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, i)| (i.prompt.clone(), i.reference.clone().unwrap()))
            .collect();
        let mut model = ScriptedModel::new(move |prompt, _, _| {
            answers.get(prompt).cloned().unwrap_or("no idea".into())
        });
        let result = runner::run(
            &mut model,
            &items,
            &synthetic::run_options(16),
            &mut |_, _| {},
        )
        .unwrap();
        (items, result)
    }

    #[test]
    fn the_synthetic_suite_s_results_have_a_scorecard_by_task_and_by_exposure_and_form() {
        let (items, result) = synthetic_run();
        let info = info(Benchmark::Synthetic);
        let v = results_json(&info, &items, &result);
        let old: BTreeSet<String> = KEYS_BEFORE_SCORECARD.map(String::from).into();
        let new = keys(&v);
        assert!(new.is_superset(&old), "{new:?}");
        assert_eq!(new.difference(&old).collect::<Vec<_>>(), vec!["scorecard"]);
        let card = &v["scorecard"];
        assert_eq!(
            keys(card),
            BTreeSet::from(
                [
                    "bootstrap",
                    "overall",
                    "by_task",
                    "by_exposure_form",
                    "without_chance"
                ]
                .map(String::from)
            )
        );
        let overall = &card["overall"];
        for key in [
            "items",
            "correct",
            "accuracy",
            "accuracy_interval",
            "chance",
            "above_chance",
            "above_chance_interval",
            "versus_chance",
        ] {
            assert!(overall.get(key).is_some(), "{key}: {overall}");
        }
        // Every item of the suite has a baseline, and the cells agree with the tallies.
        assert_eq!(overall["items"], result.samples.len());
        assert_eq!(card["without_chance"], json!({}));
        for (task, t) in &result.tasks {
            assert_eq!(card["by_task"][task]["items"], t.n, "{task}");
            assert_eq!(card["by_task"][task]["correct"], t.correct, "{task}");
        }
        let breakdown = Breakdown::of(&result.samples);
        for exposure in Exposure::ALL {
            for form in breakdown.forms() {
                let cell = &card["by_exposure_form"][exposure.name()][&form];
                match breakdown.form(exposure, &form) {
                    Some(t) => {
                        assert_eq!(cell["items"], t.n);
                        assert_eq!(cell["correct"], t.correct);
                        let chance = cell["chance"].as_f64().unwrap();
                        assert!((0.0..=1.0).contains(&chance));
                    }
                    None => assert!(cell.is_null()),
                }
            }
        }
        // The breakdown keeps its place and shape.
        assert_eq!(v["breakdown"], serde_json::to_value(&breakdown).unwrap());
        // Seeded: the same run gives the same intervals.
        assert_eq!(
            results_json(&info, &items, &result)["scorecard"],
            v["scorecard"]
        );

        let md = markdown(&info, &result);
        assert!(
            md.contains(
                "| task | n | shots | accuracy (%) | stderr | F1 (%) | no answer | chance (%) | accuracy − chance (95%) |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| exposure | form | n | accuracy (%) | chance (%) | accuracy − chance (95%) |"
            ),
            "{md}"
        );
        assert!(
            md.contains(&format!(
                "All {} items with a chance baseline: accuracy",
                result.samples.len()
            )),
            "{md}"
        );
        assert!(!md.contains("n/a"), "{md}");
    }

    fn item(task: &str, index: usize, target: &str, options: usize, rule: AnswerRule) -> EvalItem {
        EvalItem {
            task: task.into(),
            index,
            prompt: format!("{task} question {index}"),
            targets: vec![target.into()],
            rule,
            n_shot: 0,
            mode: Mode::Direct,
            choices: None,
            options,
            example: None,
            exposure: None,
            reference: None,
        }
    }

    #[test]
    fn other_benchmarks_keep_their_keys_and_gain_a_scorecard_without_exposures() {
        // A two-option task answered right every other time, a free-form numeric one always
        // right with every answer the same (chance 1), and a free-form task of one item (no
        // baseline: no other example to take a majority from).
        let mut items: Vec<EvalItem> = (0..40)
            .map(|i| item("bbh_two_way", i, "(A)", 2, AnswerRule::BbhDirect))
            .collect();
        let math = AnswerRule::Math {
            phrases: vec!["The answer is".into()],
        };
        items.extend((0..4).map(|i| item("arithmetic", i, "4", 0, math.clone())));
        items.push(item("lonely", 0, "7", 0, math.clone()));
        let mut model = ScriptedModel::new(|prompt, _, _| {
            let index: usize = prompt.rsplit(' ').next().unwrap().parse().unwrap();
            if prompt.starts_with("bbh_two_way") {
                if index % 2 == 0 { "(A)" } else { "(B)" }.to_string()
            } else if prompt.starts_with("arithmetic") {
                "The answer is 4.".into()
            } else {
                "The answer is 7.".into()
            }
        });
        let result =
            runner::run(&mut model, &items, &RunOptions::default(), &mut |_, _| {}).unwrap();
        let info = info(Benchmark::Bbh);
        let v = results_json(&info, &items, &result);
        for key in KEYS_BEFORE_SCORECARD {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert!(v["breakdown"].is_null());
        let two_way = &v["results"]["bbh_two_way"];
        assert_eq!(two_way["exact_match,strict-match"], 0.5);
        assert!(two_way["exact_match_stderr,strict-match"].is_number());
        assert_eq!(v["n-samples"]["lonely"]["effective"], 1);

        let card = &v["scorecard"];
        assert!(card.get("by_exposure_form").is_none(), "{card}");
        let coin = &card["by_task"]["bbh_two_way"];
        assert_eq!(
            (&coin["accuracy"], &coin["chance"]),
            (&json!(0.5), &json!(0.5))
        );
        assert_eq!(coin["versus_chance"], "within");
        assert_eq!(card["by_task"]["arithmetic"]["chance"], 1.0);
        assert!(card["by_task"]["lonely"].is_null());
        assert_eq!(card["without_chance"]["lonely"]["no_other_example"], 1);
        assert_eq!(card["overall"]["items"], 44);

        let md = markdown(&info, &result);
        // Old columns first, then chance and accuracy − chance: at chance, not bold.
        let row = md
            .lines()
            .find(|l| l.starts_with("| bbh_two_way |"))
            .unwrap();
        assert!(
            row.starts_with("| bbh_two_way | 40 | 0 | 50.00 | ")
                && row.contains(" | - | 0 | 50.00 | +0.0 (-"),
            "{row}"
        );
        let row = md
            .lines()
            .find(|l| l.starts_with("| arithmetic |"))
            .unwrap();
        assert!(row.ends_with("| 100.00 | +0.0 (+0.0 to +0.0) |"), "{row}");
        let row = md.lines().find(|l| l.starts_with("| lonely |")).unwrap();
        assert!(row.ends_with("| n/a | n/a |"), "{row}");
        assert!(
            md.contains(
                "1 item has no chance baseline (1 with a free-form answer and no other example"
            ),
            "{md}"
        );
        assert!(!md.contains("| exposure |"), "{md}");
    }

    #[test]
    fn normalized_average_from_six_results_files() {
        let file =
            |setting: &str, score: f64| json!({"flan": {"setting": setting, "score": score}});
        let files = vec![
            file("MmluDirect", 55.0), // 40
            file("MmluCot", 40.0),    // 20
            file("BbhDirect", 30.0),
            file("BbhCot", 36.0),
            file("TydiqaDirect", 48.0),
            file("MgsmCot", 6.0),
            json!({"flan": {"setting": null, "score": 99.0}}), // GSM8K: not one of the six
        ];
        let (avg, scores) = normalized_average_of(&files).unwrap();
        assert_eq!(scores.len(), 6);
        assert!((avg - (40.0 + 20.0 + 30.0 + 36.0 + 48.0 + 6.0) / 6.0).abs() < 1e-12);
        let err = normalized_average_of(&files[1..]).unwrap_err().to_string();
        assert!(err.contains("missing MmluDirect"), "{err}");
    }

    #[test]
    fn settings_of_benchmark_and_mode() {
        assert_eq!(
            setting_of(Benchmark::Mgsm, Mode::Cot),
            Some(PaperSetting::MgsmCot)
        );
        assert_eq!(setting_of(Benchmark::Gsm8k, Mode::Cot), None);
        assert_eq!(setting_of(Benchmark::Bbh, Mode::ZeroShotCot), None);
    }
}
