//! The report of a finetuning run evaluated on the synthetic suite before and after training:
//! `results.json` (everything, machine-readable), `report.md` (tables, charts, samples) and the
//! SVG charts it embeds (loss curve, accuracy per family, accuracy per setting and mode).
//!
//! Every accuracy stands next to its chance baseline ([`crate::chance`]: what a model that
//! learned only the answer format scores, 1/k on a k-way choice) and its bootstrap interval,
//! and every difference (accuracy − chance, after − before) comes with its interval
//! ([`crate::scorecard`]): a two-way choice answered right half the time shows the format was
//! learned, not the task, and a change smaller than its interval shows nothing.
//!
//! The held-out-family result is stated whatever it is: the sentence is computed from the two
//! summaries, never chosen by the caller.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::breakdown::{Breakdown, ItemKey};
use crate::chart::{bar_chart, line_chart, BarGroup, Series};
use crate::interval::{Bootstrap, Side};
use crate::item::Exposure;
use crate::metrics::Tally;
use crate::runner::SampleRecord;
use crate::scorecard::{
    level, points_cell, signed, signed_range, BeforeAfter, CellScore, RunScore, Scorecard,
};
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

/// A run's chance baseline in a cell, percent.
fn chance_cell(run: Option<&RunScore>) -> String {
    run.map_or("n/a".into(), |r| format!("{:.1}%", 100.0 * r.chance))
}

/// A run's accuracy in a cell with its interval: `41.2% (32.8–50.4)`.
fn accuracy_cell(run: Option<&RunScore>) -> String {
    run.map_or("n/a".into(), |r| {
        let i = r.accuracy_interval.scaled(100.0);
        format!("{:.1}% ({:.1}–{:.1})", 100.0 * r.accuracy, i.low, i.high)
    })
}

/// The trained model's accuracy − chance in a cell.
fn margin_cell(cell: Option<&CellScore>) -> String {
    cell.and_then(|c| c.after).map_or("n/a".into(), |r| {
        points_cell(r.above_chance, r.above_chance_interval)
    })
}

/// After − before in a cell.
fn change_cell(cell: Option<&CellScore>) -> String {
    cell.and_then(|c| c.change)
        .map_or("n/a".into(), |c| points_cell(c.difference, c.interval))
}

/// What the run shows on entirely held-out families, in plain sentences: the trained model's
/// accuracy against the untrained model's and against chance, each difference with its
/// interval, and whether it is larger than the interval. Intervals use
/// [`Bootstrap::default`], as [`write_report`] does.
pub fn held_out_family_verdict(before: &Breakdown, after: &Breakdown) -> String {
    let bootstrap = Bootstrap::default();
    let runs = BeforeAfter::new(before, after);
    let held_out = |k: &ItemKey| k.exposure == Some(Exposure::HeldOutFamily);
    let (cell, no_interval) = match runs.cell(held_out, &bootstrap) {
        Ok(cell) => (cell, None),
        Err(e) => (None, Some(e.to_string())),
    };
    verdict(
        before.exposure(Exposure::HeldOutFamily),
        after.exposure(Exposure::HeldOutFamily),
        cell.as_ref(),
        no_interval.as_deref().or(runs.unpaired()),
        &bootstrap,
    )
}

/// The verdict from the two runs' tallies of held-out families and their cell of the
/// scorecard; `no_interval` says why the change has no interval (unpaired runs).
fn verdict(
    before: Option<Tally>,
    after: Option<Tally>,
    cell: Option<&CellScore>,
    no_interval: Option<&str>,
    bootstrap: &Bootstrap,
) -> String {
    let (b, a) = match (before, after) {
        (Some(b), Some(a)) if a.n > 0 => (b, a),
        _ => return "No held-out families were evaluated.".into(),
    };
    let level = level(bootstrap);
    let trained = cell.and_then(|c| c.after);
    let compared = if a.correct > b.correct {
        "above"
    } else if a.correct == b.correct {
        "the same as"
    } else {
        "below"
    };
    let mut out = format!(
        "On entirely held-out families the trained model scored {:.1}% ({} of {}",
        a.percent(),
        a.correct,
        a.n
    );
    if let Some(r) = trained {
        let i = r.accuracy_interval.scaled(100.0);
        let _ = write!(out, "; {level} interval {:.1}–{:.1}%", i.low, i.high);
    }
    let _ = write!(
        out,
        "), {compared} the untrained model's {:.1}% ({} of {}); difference {} points",
        b.percent(),
        b.correct,
        b.n,
        signed(a.percent() - b.percent())
    );
    match (cell.and_then(|c| c.change), no_interval) {
        (Some(change), _) => {
            let _ = write!(
                out,
                " ({level} interval {}), {}.",
                signed_range(change.interval),
                match change.direction {
                    Side::Above => "a rise larger than the interval",
                    Side::Below => "a fall larger than the interval",
                    Side::Within => "within the interval, so not distinguishable from no change",
                }
            );
        }
        (None, Some(why)) => {
            let _ = write!(out, " (no interval: {why}).");
        }
        (None, None) => out.push_str(" (no per-item outcomes, so no interval)."),
    }
    match trained {
        Some(r) => {
            let _ = write!(
                out,
                " Their chance baseline (1/k on items listing k answer options; on free-form ones, \
                 how often the family's majority answer among its other examples is right) is \
                 {:.1}%, and the trained model is {} points from it ({level} interval {}): {}.",
                100.0 * r.chance,
                signed(100.0 * r.above_chance),
                signed_range(r.above_chance_interval),
                match r.versus_chance {
                    Side::Above => "above chance by a margin larger than the interval",
                    Side::Below => "below chance by more than the interval",
                    Side::Within => {
                        "a margin within the interval, so not distinguishable from a model \
                         that learned only the answer format"
                    }
                }
            );
        }
        None => out.push_str(" Without per-item outcomes there is no chance baseline."),
    }
    out
}

/// The short table printed at the end of a run: accuracy per setting before and after, and
/// the chance baseline.
pub fn terminal_table(before: &Breakdown, after: &Breakdown) -> String {
    let chance = |keep: &dyn Fn(&ItemKey) -> bool| {
        let c = after.chance(keep).or_else(|| before.chance(keep));
        c.map_or("n/a".into(), |c| format!("{:.1}%", 100.0 * c))
    };
    let mut out = format!(
        "{:<40} {:>8} {:>8} {:>8} {:>6}\n",
        "setting", "before", "after", "chance", "items"
    );
    for setting in SETTINGS {
        let a = after.exposure(setting);
        let _ = writeln!(
            out,
            "{:<40} {:>8} {:>8} {:>8} {:>6}",
            label(setting),
            pct(before.exposure(setting)),
            pct(a),
            chance(&|k| k.exposure == Some(setting)),
            a.map_or(0, |s| s.n)
        );
    }
    let _ = writeln!(
        out,
        "{:<40} {:>8} {:>8} {:>8} {:>6}",
        "all",
        pct(Some(before.overall)),
        pct(Some(after.overall)),
        chance(&|_| true),
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

/// Writes `results.json`, `report.md` and `charts/*.svg` into `dir`, with intervals by
/// [`Bootstrap::default`] (1000 resamples, 95%, seed 0).
pub fn write_report(dir: &Path, report: &FinetuneReport) -> Result<ReportFiles> {
    write_report_with(dir, report, &Bootstrap::default())
}

/// [`write_report`] with intervals by `bootstrap`.
pub fn write_report_with(
    dir: &Path,
    report: &FinetuneReport,
    bootstrap: &Bootstrap,
) -> Result<ReportFiles> {
    let card = Scorecard::of(&report.before, &report.after, bootstrap)?;
    let charts_dir = dir.join("charts");
    std::fs::create_dir_all(&charts_dir).map_err(|source| Error::Io {
        path: charts_dir.clone(),
        source,
    })?;
    let verdict = verdict(
        report.before.exposure(Exposure::HeldOutFamily),
        report.after.exposure(Exposure::HeldOutFamily),
        card.setting(Exposure::HeldOutFamily),
        card.unpaired.as_deref(),
        bootstrap,
    );
    let families = Families::of(&report.after);
    let all_modes = report.after.forms();

    let mut charts = Vec::new();
    for (name, svg) in chart_svgs(report, &card, &families, &all_modes) {
        let path = charts_dir.join(name);
        write_file(&path, &svg)?;
        charts.push(path);
    }
    let results_path = dir.join("results.json");
    write_file(
        &results_path,
        &serde_json::to_string_pretty(&results_json(report, &card, &verdict))?,
    )?;
    let markdown = dir.join("report.md");
    let mut md = summary_markdown(report, &card, &families, &verdict);
    md.push_str(&tables_markdown(report, &card, &families, &all_modes));
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
/// and prompt form (the last two with each cell's chance baseline as a third bar).
fn chart_svgs(
    report: &FinetuneReport,
    card: &Scorecard,
    families: &Families,
    all_modes: &[String],
) -> [(&'static str, String); 3] {
    let chance =
        |cell: Option<&CellScore>| cell.and_then(|c| c.after).map_or(0.0, |r| 100.0 * r.chance);
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
                chance(card.family(f)),
            ],
        })
        .collect();
    let series = ["before training", "after training", "chance (format only)"];
    let families_svg = bar_chart(
        "Accuracy per family, all templates and modes",
        &series,
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
                    values: vec![b.percent(), a.percent(), chance(card.form(setting, mode))],
                });
            }
        }
    }
    let settings_svg = bar_chart(
        "Seen vs held out: accuracy per setting and prompt form",
        &series,
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

/// results.json: the run, both summaries, the change per setting, the scorecard (accuracy,
/// chance, items and intervals of every cell) and the verdict.
fn results_json(report: &FinetuneReport, card: &Scorecard, verdict: &str) -> serde_json::Value {
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
        "scorecard": card,
        "held_out_family_verdict": verdict,
        "eval_seconds": { "before": report.eval_seconds.0, "after": report.eval_seconds.1 },
    })
}

/// How to read the tables' chance and interval columns (and why a column may be empty).
fn legend_markdown(card: &Scorecard) -> String {
    let b = &card.bootstrap;
    let mut md = format!(
        "*Chance* is what a model that learned only the answer format scores: 1/k on an item \
         listing k answer options, and on a free-form item 1 when its gold answer is the \
         majority answer among the family's other examples (0 otherwise). Intervals are {} percentile \
         bootstrap intervals over the items ({} resamples, seed {}); after − before is paired \
         item by item. Differences are in points; **bold**: the whole interval lies on one side \
         of zero, so the difference is larger than the interval.",
        level(b),
        b.resamples,
        b.seed
    );
    if let Some(why) = &card.unpaired {
        let _ = write!(
            md,
            " **The runs before and after training could not be paired item by item**, so there \
             are no after − before intervals: {why}."
        );
    }
    if card.overall.is_none() {
        md.push_str(
            " No per-item outcomes were available, so there are no chance baselines or intervals.",
        );
    }
    md.push_str("\n\n");
    md
}

/// The head of report.md: model, training, evaluation, and the before/after table with chance,
/// intervals and the verdict on held-out families.
fn summary_markdown(
    report: &FinetuneReport,
    card: &Scorecard,
    families: &Families,
    verdict: &str,
) -> String {
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
    let level = level(&card.bootstrap);
    let _ = writeln!(
        md,
        "## Before and after\n\n| setting | items | chance | before | after ({level} interval) | after − chance | after − before |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    let row = |md: &mut String,
               name: &str,
               items: usize,
               before: Option<Tally>,
               cell: Option<&CellScore>| {
        let after = cell.and_then(|c| c.after);
        let _ = writeln!(
            md,
            "| {name} | {items} | {} | {} | {} | {} | {} |",
            chance_cell(after.as_ref()),
            pct(before),
            accuracy_cell(after.as_ref()),
            margin_cell(cell),
            change_cell(cell),
        );
    };
    for setting in SETTINGS {
        row(
            &mut md,
            label(setting),
            report.after.exposure(setting).map_or(0, |s| s.n),
            report.before.exposure(setting),
            card.setting(setting),
        );
    }
    row(
        &mut md,
        "all",
        report.after.overall.n,
        Some(report.before.overall),
        card.overall.as_ref(),
    );
    md.push('\n');
    md.push_str(&legend_markdown(card));
    // Which held-out families carry the number, each against its own chance: a two-way choice
    // at 50% is format, not skill.
    let per_family: Vec<String> = families
        .held_out
        .iter()
        .map(|f| {
            let s = report.after.family_total(f);
            let against = match card.family(f).and_then(|c| c.after) {
                Some(r) => format!(
                    " against chance {:.1}% ({})",
                    100.0 * r.chance,
                    match r.versus_chance {
                        Side::Above => "above it by more than the interval",
                        Side::Below => "below it by more than the interval",
                        Side::Within => "within the interval",
                    }
                ),
                None => String::new(),
            };
            format!(
                "{f} {:.1}% ({} of {}){against}",
                s.percent(),
                s.correct,
                s.n
            )
        })
        .collect();
    let per_family = if per_family.is_empty() {
        String::new()
    } else {
        format!(
            " Per held-out family after training: {}.",
            per_family.join(", ")
        )
    };
    let _ = writeln!(md, "{verdict}{per_family}\n");
    md.push_str(
        "![Seen vs held out](charts/settings.svg)\n\n![Training loss](charts/loss.svg)\n\n",
    );
    md
}

/// report.md's tables by prompt form and by family.
fn tables_markdown(
    report: &FinetuneReport,
    card: &Scorecard,
    families: &Families,
    all_modes: &[String],
) -> String {
    let mut md = String::new();
    let level = level(&card.bootstrap);
    let _ = writeln!(
        md,
        "## By prompt form\n\n| setting | form | items | chance | before | after ({level} interval) | after − chance | after − before |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for setting in SETTINGS {
        for mode in all_modes {
            if let Some(a) = report.after.form(setting, mode) {
                let cell = card.form(setting, mode);
                let after = cell.and_then(|c| c.after);
                let _ = writeln!(
                    md,
                    "| {} | {mode} | {} | {} | {} | {} | {} | {} |",
                    label(setting),
                    a.n,
                    chance_cell(after.as_ref()),
                    pct(report.before.form(setting, mode)),
                    accuracy_cell(after.as_ref()),
                    margin_cell(cell),
                    change_cell(cell),
                );
            }
        }
    }
    md.push_str("\n## By family\n\n![Accuracy per family](charts/families.svg)\n\n");
    let _ = writeln!(
        md,
        "| family | held out | items | chance | before | after ({level} interval) | after − chance | after − before | after: seen templates | after: held-out templates | after: held-out family |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for f in &families.ordered {
        let cell = card.family(f);
        let after = cell.and_then(|c| c.after);
        let _ = writeln!(
            md,
            "| {f} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            if families.is_held_out(f) { "yes" } else { "no" },
            report.after.family_total(f).n,
            chance_cell(after.as_ref()),
            pct(Some(report.before.family_total(f))),
            accuracy_cell(after.as_ref()),
            margin_cell(cell),
            change_cell(cell),
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
        assert!(
            verdict.contains(
                "difference +0.0 points (95% interval +0.0 to +0.0), within the interval"
            ),
            "{verdict}"
        );
        assert_eq!(
            verdict,
            held_out_family_verdict(&report.before, &report.after)
        );

        // Every setting and family has accuracy, chance and items, with intervals.
        let card = &results["scorecard"];
        assert_eq!(card["bootstrap"]["resamples"], 1000);
        assert!(card["unpaired"].is_null());
        let cells = card["by_setting"]
            .as_object()
            .unwrap()
            .values()
            .chain(
                card["by_family"]
                    .as_object()
                    .unwrap()
                    .values()
                    .flat_map(|f| f.as_object().unwrap().values()),
            )
            .chain(
                card["by_setting_mode"]
                    .as_object()
                    .unwrap()
                    .values()
                    .flat_map(|f| f.as_object().unwrap().values()),
            );
        let mut count = 0;
        for cell in cells {
            count += 1;
            let chance = cell["chance"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&chance), "{cell}");
            assert!(cell["items"].as_u64().unwrap() > 0, "{cell}");
            let accuracy = cell["accuracy"].as_f64().unwrap();
            let [low, high] = [0, 1].map(|i| cell["accuracy_interval"][i].as_f64().unwrap());
            assert!(low <= accuracy && accuracy <= high, "{cell}");
            assert!(cell["before"]["accuracy"].is_number(), "{cell}");
            assert!(cell["change"]["interval"].is_array(), "{cell}");
            assert!(cell["above_chance_interval"].is_array(), "{cell}");
        }
        let a = &report.after;
        let expected = a.by_setting_all_modes.len()
            + a.by_setting.values().map(|m| m.len()).sum::<usize>()
            + a.by_family.values().map(|m| m.len() + 1).sum::<usize>();
        assert_eq!(count, expected);
        // Held-out families answered "?" are at 0%, under a chance baseline above 0 (weekdays,
        // options), and the report says where they stand.
        let held_out = &card["by_setting"]["held_out_family"];
        assert_eq!(held_out["accuracy"], 0.0);
        let chance = held_out["chance"].as_f64().unwrap();
        assert!(chance > 0.05, "{held_out}");
        assert!(
            verdict.contains(&format!("Their chance baseline (1/k on items listing k answer options; on free-form ones, how often the family's majority answer among its other examples is right) is {:.1}%", 100.0 * chance)),
            "{verdict}"
        );
        assert_eq!(
            held_out["versus_chance"] == "below",
            verdict.contains("below chance by more than the interval"),
            "{verdict}"
        );
        // Trained families at 100% are above chance by more than the interval.
        assert_eq!(
            card["by_setting"]["seen_templates"]["versus_chance"],
            "above"
        );
        assert_eq!(
            card["by_setting"]["seen_templates"]["change"]["direction"],
            "above"
        );

        let md = std::fs::read_to_string(&files.markdown).unwrap();
        let n = results["after"]["by_setting_all_modes"]["held_out_templates"]["n"].clone();
        let row = format!("| trained families, held-out templates | {n} | ");
        let row = md.lines().find(|l| l.starts_with(&row)).unwrap();
        assert!(row.contains("| 0.0% | 100.0% (100.0–100.0) | **+"), "{row}");
        assert!(md.contains("| setting | items | chance | before | after (95% interval) | after − chance | after − before |"));
        assert!(md.contains("*Chance* is what a model that learned only the answer format scores"));
        assert!(md.contains(verdict));
        assert!(
            md.contains("Per held-out family after training: compose_count_weekdays 0.0% (0 of "),
            "{md}"
        );
        let day_before = card["by_family"]["day_before"]["all"]["chance"]
            .as_f64()
            .unwrap();
        assert!(
            md.contains(&format!(") against chance {:.1}% (", 100.0 * day_before)),
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
        assert!(
            table.lines().next().unwrap().contains(" chance "),
            "{table}"
        );
        let held_out_row = table
            .lines()
            .find(|l| l.starts_with("held-out families"))
            .unwrap();
        assert!(
            held_out_row.contains(&format!(" {:.1}% ", 100.0 * chance)),
            "{table}"
        );
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
        // Tallies without per-item outcomes (a breakdown read back from JSON) say what is
        // missing instead of inventing an interval.
        assert!(v.contains("(no per-item outcomes, so no interval)"), "{v}");
        assert!(
            v.ends_with("Without per-item outcomes there is no chance baseline."),
            "{v}"
        );
        assert_eq!(
            held_out_family_verdict(&Breakdown::default(), &Breakdown::default()),
            "No held-out families were evaluated."
        );
    }

    /// `n` items of a held-out two-way family (options listed), the first `right` answered right.
    fn two_way(n: usize, right: usize) -> Vec<SampleRecord> {
        (0..n)
            .map(|index| SampleRecord {
                task: "parity".into(),
                index,
                n_shot: 0,
                mode: crate::item::Mode::Direct,
                exposure: Some(Exposure::HeldOutFamily),
                prompt: String::new(),
                prompt_tokens_cut: 0,
                outputs: Vec::new(),
                extracted: Vec::new(),
                answer: None,
                targets: vec!["(A)".into()],
                options: 2,
                example: None,
                correct: index < right,
                f1: None,
                choice_logits: None,
                toxicity: None,
            })
            .collect()
    }

    #[test]
    fn the_verdict_tells_a_coin_flip_from_skill() {
        let untrained = Breakdown::of(&two_way(80, 0));
        // Half right on two options: the format, not the task, though far above the untrained
        // model.
        let v = held_out_family_verdict(&untrained, &Breakdown::of(&two_way(80, 40)));
        assert!(v.contains("scored 50.0% (40 of 80; 95% interval "), "{v}");
        assert!(v.contains("difference +50.0 points (95% interval +"), "{v}");
        assert!(v.contains("a rise larger than the interval"), "{v}");
        assert!(v.contains("chance baseline (1/k on items listing k answer options; on free-form ones, how often the family's majority answer among its other examples is right) is 50.0%, and the trained model is +0.0 points from it (95% interval -"), "{v}");
        assert!(
            v.contains("not distinguishable from a model that learned only the answer format"),
            "{v}"
        );
        // All right: skill.
        let v = held_out_family_verdict(&untrained, &Breakdown::of(&two_way(80, 80)));
        assert!(v.contains("95% interval 100.0–100.0%"), "{v}");
        assert!(v.contains("+50.0 points from it (95% interval +50.0 to +50.0): above chance by a margin larger than the interval."), "{v}");
        // The same score twice: no change.
        let v = held_out_family_verdict(&untrained, &untrained);
        assert!(
            v.contains("within the interval, so not distinguishable from no change"),
            "{v}"
        );
        assert!(v.contains("below chance by more than the interval"), "{v}");
    }

    #[test]
    fn runs_of_different_items_are_reported_not_compared() {
        let before = Breakdown::of(&two_way(10, 2));
        let after = Breakdown::of(&two_way(12, 6));
        let v = held_out_family_verdict(&before, &after);
        assert!(
            v.contains("(no interval: 2 items evaluated only after training (first: parity #10 (zero_shot, held_out_family)))."),
            "{v}"
        );
        // The trained run on its own still stands against chance.
        assert!(v.contains("chance baseline"), "{v}");
        let report = FinetuneReport {
            model: "scripted".into(),
            parameters: 1,
            train: json!({}),
            loss: Vec::new(),
            before,
            after,
            eval_seconds: (0.0, 0.0),
            samples: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let files = write_report(dir.path(), &report).unwrap();
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        assert!(
            md.contains("**The runs before and after training could not be paired item by item**"),
            "{md}"
        );
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.results).unwrap()).unwrap();
        assert!(results["scorecard"]["unpaired"]
            .as_str()
            .unwrap()
            .contains("only after training"));
        assert!(results["scorecard"]["by_setting"]["held_out_family"]["change"].is_null());
        assert_eq!(
            results["scorecard"]["by_setting"]["held_out_family"]["before"]["items"],
            10
        );
    }

    #[test]
    fn a_bad_bootstrap_setting_is_an_error_not_a_report() {
        let run = Breakdown::of(&two_way(4, 2));
        let report = FinetuneReport {
            model: "scripted".into(),
            parameters: 1,
            train: json!({}),
            loss: Vec::new(),
            before: run.clone(),
            after: run,
            eval_seconds: (0.0, 0.0),
            samples: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let bad = Bootstrap {
            level: 1.5,
            ..Bootstrap::default()
        };
        let err = write_report_with(dir.path(), &report, &bad).unwrap_err();
        assert!(err.to_string().contains("level 1.5"), "{err}");
        assert!(!dir.path().join("results.json").exists());
    }
}
