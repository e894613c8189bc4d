//! The report of a finetuning run evaluated on the synthetic suite before and after training:
//! `results.json` (everything, machine-readable), `report.md` (tables, charts, samples) and the
//! SVG charts it embeds (loss curve, accuracy per family, accuracy per setting and mode).
//!
//! The held-out-family result is stated whatever it is: the sentence is computed from the two
//! summaries, never chosen by the caller.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::breakdown::Breakdown;
use crate::chart::{bar_chart, line_chart, BarGroup, Series};
use crate::item::Exposure;
use crate::metrics::Tally;
use crate::runner::SampleRecord;
use crate::{Error, Result};

/// The exposures in the order reports show them.
const SETTINGS: [Exposure; 3] = Exposure::ALL;

/// What a report is made from.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    /// One line naming the model and where it came from.
    pub model: String,
    /// Trainable parameters.
    pub parameters: u64,
    /// The trainer's final summary (steps, tokens, seconds, ...), as it wrote it.
    pub train: serde_json::Value,
    /// `(step, loss)` of every logged training step.
    pub loss: Vec<(u64, f64)>,
    /// The suite on the model before training.
    pub before: Breakdown,
    /// The suite on the trained model.
    pub after: Breakdown,
    /// Seconds of the two evaluations.
    pub eval_seconds: (f64, f64),
    /// A few outputs of the trained model, shown in the report.
    pub samples: Vec<SampleRecord>,
}

/// The files a report consists of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `results.json`.
    pub results: PathBuf,
    /// `report.md`.
    pub markdown: PathBuf,
    /// The SVG charts.
    pub charts: Vec<PathBuf>,
}

fn pct(score: Option<Tally>) -> String {
    match score {
        Some(s) if s.n > 0 => format!("{:.1}%", s.percent()),
        _ => "n/a".into(),
    }
}

fn label(setting: Exposure) -> &'static str {
    match setting {
        Exposure::SeenTemplates => "trained families, seen templates",
        Exposure::HeldOutTemplates => "trained families, held-out templates",
        Exposure::HeldOutFamily => "held-out families",
    }
}

/// What the run shows on entirely held-out families, in one plain sentence.
pub fn held_out_family_verdict(before: &Breakdown, after: &Breakdown) -> String {
    match (
        before.exposure(Exposure::HeldOutFamily),
        after.exposure(Exposure::HeldOutFamily),
    ) {
        (Some(b), Some(a)) if a.n > 0 => {
            let diff = a.percent() - b.percent();
            let verdict = if a.correct > b.correct {
                "above"
            } else if a.correct == b.correct {
                "the same as"
            } else {
                "below"
            };
            format!(
                "On entirely held-out families the trained model scored {:.1}% ({} of {}), {verdict} \
                 the untrained model's {:.1}% ({} of {}); difference {diff:+.1} points.",
                a.percent(),
                a.correct,
                a.n,
                b.percent(),
                b.correct,
                b.n
            )
        }
        _ => "No held-out families were evaluated.".into(),
    }
}

/// The short table printed at the end of a run: accuracy per setting before and after.
pub fn terminal_table(before: &Breakdown, after: &Breakdown) -> String {
    let mut out = format!(
        "{:<40} {:>8} {:>8} {:>6}\n",
        "setting", "before", "after", "items"
    );
    for setting in SETTINGS {
        let a = after.exposure(setting);
        let _ = writeln!(
            out,
            "{:<40} {:>8} {:>8} {:>6}",
            label(setting),
            pct(before.exposure(setting)),
            pct(a),
            a.map_or(0, |s| s.n)
        );
    }
    let _ = writeln!(
        out,
        "{:<40} {:>8} {:>8} {:>6}",
        "all",
        pct(Some(before.overall)),
        pct(Some(after.overall)),
        after.overall.n
    );
    out
}

/// Mean of the last `window` values at each point (the smoothed loss curve).
fn moving_average(points: &[(u64, f64)], window: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for (i, &(step, loss)) in points.iter().enumerate() {
        sum += loss;
        if i >= window {
            sum -= points[i - window].1;
        }
        out.push((step as f64, sum / (i + 1).min(window) as f64));
    }
    out
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `results.json`, `report.md` and `charts/*.svg` into `dir`.
pub fn write_report(dir: &Path, report: &FinetuneReport) -> Result<ReportFiles> {
    let charts_dir = dir.join("charts");
    std::fs::create_dir_all(&charts_dir).map_err(|source| Error::Io {
        path: charts_dir.clone(),
        source,
    })?;
    let verdict = held_out_family_verdict(&report.before, &report.after);
    let families = Families::of(&report.after);
    let all_modes = report.after.forms();

    let mut charts = Vec::new();
    for (name, svg) in chart_svgs(report, &families, &all_modes) {
        let path = charts_dir.join(name);
        write_file(&path, &svg)?;
        charts.push(path);
    }
    let results_path = dir.join("results.json");
    write_file(
        &results_path,
        &serde_json::to_string_pretty(&results_json(report, &verdict))?,
    )?;
    let markdown = dir.join("report.md");
    let mut md = summary_markdown(report, &families, &verdict);
    md.push_str(&tables_markdown(report, &families, &all_modes));
    md.push_str(&samples_markdown(report));
    write_file(&markdown, &md)?;
    Ok(ReportFiles {
        results: results_path,
        markdown,
        charts,
    })
}

/// The families of a summary: trained ones first, then the held-out ones, each alphabetical.
struct Families {
    ordered: Vec<String>,
    held_out: Vec<String>,
}

impl Families {
    fn of(after: &Breakdown) -> Families {
        let held_out: Vec<String> = after
            .by_family
            .iter()
            .filter(|(_, s)| s.contains_key(Exposure::HeldOutFamily.name()))
            .map(|(f, _)| f.clone())
            .collect();
        let mut ordered: Vec<String> = after.by_family.keys().cloned().collect();
        ordered.sort_by_key(|f| (held_out.contains(f), f.clone()));
        Families { ordered, held_out }
    }

    fn is_held_out(&self, family: &str) -> bool {
        self.held_out.iter().any(|f| f == family)
    }
}

/// The three charts, by file name: the loss curve, accuracy per family, accuracy per setting
/// and prompt form.
fn chart_svgs(
    report: &FinetuneReport,
    families: &Families,
    all_modes: &[String],
) -> [(&'static str, String); 3] {
    let loss_svg = line_chart(
        "Training loss",
        "step",
        "loss (mean per target token)",
        &[
            Series {
                name: "loss".into(),
                points: report.loss.iter().map(|&(s, l)| (s as f64, l)).collect(),
            },
            Series {
                name: "mean of the last 20 steps".into(),
                points: moving_average(&report.loss, 20),
            },
        ],
    );
    let family_groups: Vec<BarGroup> = families
        .ordered
        .iter()
        .map(|f| BarGroup {
            label: if families.is_held_out(f) {
                format!("{f} (held out)")
            } else {
                f.to_string()
            },
            values: vec![
                report.before.family_total(f).percent(),
                report.after.family_total(f).percent(),
            ],
        })
        .collect();
    let families_svg = bar_chart(
        "Accuracy per family, all templates and modes",
        &["before training", "after training"],
        &family_groups,
        100.0,
        "%",
    );
    let mut setting_groups = Vec::new();
    for setting in SETTINGS {
        for mode in all_modes {
            let (b, a) = (
                report.before.form(setting, mode),
                report.after.form(setting, mode),
            );
            if let (Some(b), Some(a)) = (b, a) {
                setting_groups.push(BarGroup {
                    label: format!("{} · {mode}", setting.name().replace('_', " ")),
                    values: vec![b.percent(), a.percent()],
                });
            }
        }
    }
    let settings_svg = bar_chart(
        "Seen vs held out: accuracy per setting and prompt form",
        &["before training", "after training"],
        &setting_groups,
        100.0,
        "%",
    );
    [
        ("loss.svg", loss_svg),
        ("families.svg", families_svg),
        ("settings.svg", settings_svg),
    ]
}

/// results.json: the run, both summaries, the change per setting and the verdict.
fn results_json(report: &FinetuneReport, verdict: &str) -> serde_json::Value {
    let delta: serde_json::Map<String, serde_json::Value> = SETTINGS
        .iter()
        .filter_map(|&s| {
            let (b, a) = (report.before.exposure(s)?, report.after.exposure(s)?);
            Some((s.name().to_string(), json!(a.fraction() - b.fraction())))
        })
        .collect();
    json!({
        "model": report.model,
        "parameters": report.parameters,
        "train": report.train,
        "before": report.before,
        "after": report.after,
        "accuracy_change_by_setting": delta,
        "held_out_family_verdict": verdict,
        "eval_seconds": { "before": report.eval_seconds.0, "after": report.eval_seconds.1 },
    })
}

/// The head of report.md: model, training, evaluation, and the before/after table with the
/// verdict on held-out families.
fn summary_markdown(report: &FinetuneReport, families: &Families, verdict: &str) -> String {
    let mut md = String::from("# Finetuning report\n\n");
    let _ = writeln!(
        md,
        "Model: {} ({:.2}M parameters).",
        report.model,
        report.parameters as f64 / 1e6
    );
    let t = &report.train;
    if let (Some(steps), Some(seconds)) = (t["steps"].as_u64(), t["seconds"].as_f64()) {
        let _ = writeln!(
            md,
            "Training: {steps} steps, {} examples, {} target tokens, {:.0} s ({:.0} tokens/s), final loss {:.3} \
             (mean of the last steps {:.3}).",
            t["examples_seen"],
            t["target_tokens_seen"],
            seconds,
            t["tokens_per_second"].as_f64().unwrap_or(0.0),
            t["final_loss"].as_f64().unwrap_or(f64::NAN),
            t["recent_mean_loss"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let _ = writeln!(
        md,
        "Evaluation: greedy decoding, exact match after whitespace normalisation ({} items, {:.0} s before and {:.0} s after training).\n",
        report.after.overall.n, report.eval_seconds.0, report.eval_seconds.1
    );
    md.push_str(
        "## Before and after\n\n| setting | before | after | items |\n|---|---:|---:|---:|\n",
    );
    for setting in SETTINGS {
        let a = report.after.exposure(setting);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            label(setting),
            pct(report.before.exposure(setting)),
            pct(a),
            a.map_or(0, |s| s.n)
        );
    }
    // Which held-out families carry the number: a two-way choice at 50% is format, not skill.
    let per_family: Vec<String> = families
        .held_out
        .iter()
        .map(|f| {
            let s = report.after.family_total(f);
            format!("{f} {:.1}% ({} of {})", s.percent(), s.correct, s.n)
        })
        .collect();
    let per_family = if per_family.is_empty() {
        String::new()
    } else {
        format!(
            " Per held-out family after training: {}. Families answered by choosing among \
             options score about 1/k by guessing once the format is learned.",
            per_family.join(", ")
        )
    };
    let _ = writeln!(
        md,
        "| all | {} | {} | {} |\n\n{verdict}{per_family}\n",
        pct(Some(report.before.overall)),
        pct(Some(report.after.overall)),
        report.after.overall.n
    );
    md.push_str(
        "![Seen vs held out](charts/settings.svg)\n\n![Training loss](charts/loss.svg)\n\n",
    );
    md
}

/// report.md's tables by prompt form and by family.
fn tables_markdown(report: &FinetuneReport, families: &Families, all_modes: &[String]) -> String {
    let mut md = String::new();
    md.push_str("## By prompt form\n\n| setting | form | before | after | items |\n|---|---|---:|---:|---:|\n");
    for setting in SETTINGS {
        for mode in all_modes {
            if let Some(a) = report.after.form(setting, mode) {
                let _ = writeln!(
                    md,
                    "| {} | {mode} | {} | {} | {} |",
                    label(setting),
                    pct(report.before.form(setting, mode)),
                    pct(Some(a)),
                    a.n
                );
            }
        }
    }
    md.push_str("\n## By family\n\n![Accuracy per family](charts/families.svg)\n\n");
    md.push_str("| family | held out | before | after: seen templates | after: held-out templates | after: held-out family |\n|---|---|---:|---:|---:|---:|\n");
    for f in &families.ordered {
        let _ = writeln!(
            md,
            "| {f} | {} | {} | {} | {} | {} |",
            if families.is_held_out(f) { "yes" } else { "no" },
            pct(Some(report.before.family_total(f))),
            pct(report.after.family(f, Exposure::SeenTemplates)),
            pct(report.after.family(f, Exposure::HeldOutTemplates)),
            pct(report.after.family(f, Exposure::HeldOutFamily)),
        );
    }
    md
}

/// report.md's sample outputs after training (nothing when there are none).
fn samples_markdown(report: &FinetuneReport) -> String {
    let mut md = String::new();
    if !report.samples.is_empty() {
        md.push_str("\n## Sample outputs after training\n\n");
        for s in &report.samples {
            let _ = writeln!(
                md,
                "- **{}** ({}, {}, {}): `{}` → `{}` (expected `{}`)",
                s.task,
                s.exposure.map_or("-", Exposure::name),
                s.mode.label(s.n_shot),
                if s.correct { "correct" } else { "wrong" },
                one_line(&s.prompt, 160),
                one_line(s.outputs.first().map_or("", String::as_str), 120),
                one_line(&s.targets.join(" | "), 120)
            );
        }
    }
    md
}

/// Text on one line, cut to `max` characters, with backticks that would end a code span
/// replaced.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('`', "'");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::run;
    use crate::scripted::ScriptedModel;
    use crate::synthetic::{run_options, standard_items};
    use flan_data::synthetic::{StandardEval, Suite};
    use std::collections::HashMap;

    #[test]
    fn report_files_parse_and_say_what_the_summaries_say() {
        let suite = Suite::new().unwrap();
        let plan = StandardEval {
            seed: 1,
            items_per_cell: 2,
            shots: 1,
        };
        let items = standard_items(&suite, &plan).unwrap();
        let mut silent = ScriptedModel::new(|_, _, _| String::new());
        let before = run(&mut silent, &items, &run_options(64), &mut |_, _| {}).unwrap();
        // Knows every trained family, nothing of the held-out ones.
        let answers: HashMap<String, (bool, String)> = items
            .iter()
            .map(|i| {
                let held_out = i.exposure == Some(Exposure::HeldOutFamily);
                (i.prompt.clone(), (held_out, i.reference.clone().unwrap()))
            })
            .collect();
        let mut trained = ScriptedModel::new(move |p, _, _| {
            let (held_out, target) = &answers[p];
            if *held_out {
                "?".into()
            } else {
                target.clone()
            }
        });
        let after = run(&mut trained, &items, &run_options(64), &mut |_, _| {}).unwrap();
        let report = FinetuneReport {
            model: "scripted".into(),
            parameters: 1_500_000,
            train: json!({"steps": 3, "seconds": 1.5, "examples_seen": 30, "target_tokens_seen": 300,
                          "tokens_per_second": 200.0, "final_loss": 1.0, "recent_mean_loss": 1.2}),
            loss: vec![(1, 5.0), (2, 3.0), (3, 1.0)],
            before: Breakdown::of(&before.samples),
            after: Breakdown::of(&after.samples),
            eval_seconds: (before.seconds, after.seconds),
            samples: after.samples[..2].to_vec(),
        };
        let dir = tempfile::tempdir().unwrap();
        let files = write_report(dir.path(), &report).unwrap();
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.results).unwrap()).unwrap();
        assert_eq!(
            results["after"]["by_setting_all_modes"]["seen_templates"]["accuracy"],
            1.0
        );
        assert_eq!(
            results["accuracy_change_by_setting"]["held_out_templates"],
            1.0
        );
        assert_eq!(
            results["accuracy_change_by_setting"]["held_out_family"],
            0.0
        );
        let verdict = results["held_out_family_verdict"].as_str().unwrap();
        assert!(verdict.contains("the same as the untrained"), "{verdict}");
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        assert!(
            md.contains("| trained families, held-out templates | 0.0% | 100.0% |"),
            "{md}"
        );
        assert!(md.contains(verdict));
        assert!(
            md.contains("Per held-out family after training: day_before 0.0% (0 of "),
            "{md}"
        );
        for chart in &files.charts {
            let svg = std::fs::read_to_string(chart).unwrap();
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            let name = chart.file_name().unwrap().to_str().unwrap();
            assert!(
                md.contains(&format!("charts/{name}")),
                "{name} not embedded"
            );
        }
        let table = terminal_table(&report.before, &report.after);
        assert!(table.contains("held-out families"));
        assert_eq!(table.lines().count(), 5);
    }

    #[test]
    fn the_verdict_follows_the_numbers() {
        let mut before = Breakdown::default();
        let mut after = Breakdown::default();
        let name = Exposure::HeldOutFamily.name().to_string();
        before
            .by_setting_all_modes
            .insert(name.clone(), Tally { n: 10, correct: 2 });
        after
            .by_setting_all_modes
            .insert(name, Tally { n: 10, correct: 1 });
        let v = held_out_family_verdict(&before, &after);
        assert!(v.contains("below the untrained model's 20.0%"), "{v}");
        assert!(v.contains("-10.0 points"), "{v}");
        assert_eq!(
            held_out_family_verdict(&Breakdown::default(), &Breakdown::default()),
            "No held-out families were evaluated."
        );
    }
}
