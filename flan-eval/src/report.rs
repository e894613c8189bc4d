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

use crate::breakdown::Breakdown;
use crate::error::Error;
use crate::item::{Benchmark, EvalItem, Exposure, Mode};
use crate::metrics::{normalized, PaperSetting};
use crate::runner::{RunOptions, RunResult, SampleRecord};
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

/// The Markdown table of a run.
pub fn markdown(info: &RunInfo, result: &RunResult) -> String {
    if info.benchmark == Benchmark::ToxicDegeneration {
        return toxicity_markdown(info, result);
    }
    let mut md = format!(
        "# {} {} on {}\n\n| task | n | shots | accuracy (%) | stderr | F1 (%) | no answer |\n|---|---:|---:|---:|---:|---:|---:|\n",
        info.benchmark, info.mode, info.model
    );
    for (task, t) in &result.tasks {
        md.push_str(&format!(
            "| {task} | {} | {} | {:.2} | {:.2} | {} | {} |\n",
            t.n,
            t.n_shot,
            t.accuracy,
            t.stderr,
            t.f1.map_or("-".to_string(), |f| format!("{f:.2}")),
            t.no_answer
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
    match info.benchmark {
        Benchmark::Winogender => md.push_str(&winogender::metrics(&result.samples).markdown()),
        Benchmark::Toxicity => md.push_str(&toxicity::metrics(&result.samples).markdown()),
        _ => {}
    }
    let breakdown = Breakdown::of(&result.samples);
    if breakdown.has_exposures() {
        md.push_str("\n| exposure | form | n | accuracy (%) |\n|---|---|---:|---:|\n");
        for exposure in Exposure::ALL {
            for form in breakdown.forms() {
                if let Some(t) = breakdown.form(exposure, &form) {
                    md.push_str(&format!(
                        "| {} | {form} | {} | {:.2} |\n",
                        exposure.name(),
                        t.n,
                        t.percent()
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
