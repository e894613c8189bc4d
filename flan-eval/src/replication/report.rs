//! Writes the replication report: `report.md` (what ran, one section per experiment with its
//! figure, table and verdict, a closing summary of the six claims), `results.json` (every
//! aggregate and verdict) and `figures/*.svg`, all computed before anything is written and
//! then replaced together ([`commit_all`]), so a failure leaves the old report (or none), never
//! half of a new one.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use flan_data::atomic::{commit_all, AtomicFile};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::aggregate::{cells, combine, Cell, Difference, Scale, Term};
use super::figures::figure;
use super::points::Points;
use super::verdict::{average_at, verdict, x_text, Finding, Verdict};
use super::{Experiment, XKind, MIN_SEEDS};
use crate::interval::{Bootstrap, Interval};
use crate::{Error, Result};

/// How the report is computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The item bootstrap (seed, resamples) and the level of every interval, over seeds too.
    pub bootstrap: Bootstrap,
}

impl Default for Settings {
    /// [`Bootstrap::default`]: 1000 resamples, 95%, seed 0.
    fn default() -> Self {
        Settings {
            bootstrap: Bootstrap::default(),
        }
    }
}

/// The files of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `results.json`.
    pub results: PathBuf,
    /// `figures/<experiment>.svg`, one per experiment that ran, in report order.
    pub figures: Vec<PathBuf>,
}

/// One experiment, computed.
struct Section {
    experiment: Experiment,
    cells: Vec<Cell>,
    verdict: Verdict,
    /// The SVG, for experiments that ran.
    figure: Option<String>,
    /// The normalised average's per-setting and average values.
    normalized: Vec<Difference>,
}

fn section(experiment: Experiment, points: &Points, bootstrap: &Bootstrap) -> Result<Section> {
    let cells = cells(points, experiment, bootstrap)?;
    let verdict = verdict(experiment, &cells, bootstrap)?;
    let figure = if cells.is_empty() {
        None
    } else {
        Some(figure(experiment, &cells, bootstrap)?)
    };
    let mut normalized = Vec::new();
    if experiment == Experiment::NormalizedAverage {
        for cell in &cells {
            normalized.push(combine(
                &format!(
                    "{}, {}",
                    cell.series,
                    Experiment::condition_label(&cell.x.to_string())
                ),
                &[Term { cell, weight: 1.0 }],
                Scale::Normalized,
                bootstrap,
            )?);
        }
        if let XKind::Condition(conditions) = experiment.x_kind() {
            for condition in conditions {
                let terms = average_at(&cells, condition);
                if !terms.is_empty() {
                    normalized.push(combine(
                        &format!("average, {}", Experiment::condition_label(condition)),
                        &terms,
                        Scale::Normalized,
                        bootstrap,
                    )?);
                }
            }
        }
    }
    Ok(Section {
        experiment,
        cells,
        verdict,
        figure,
        normalized,
    })
}

/// Writes report.md, results.json and figures/*.svg into `dir` (created if needed) from
/// `points`, which are validated first. Every number, figure and verdict is computed before
/// the first file is written; the files then replace any old ones together.
///
/// Errors: invalid points or settings (nothing is written), or a file that cannot be written.
pub fn write_replication_report(
    dir: &Path,
    points: &Points,
    settings: &Settings,
) -> Result<ReplicationFiles> {
    points.validate()?;
    settings.bootstrap.validate()?;
    let bootstrap = &settings.bootstrap;
    let sections: Vec<Section> = Experiment::ALL
        .iter()
        .map(|&e| section(e, points, bootstrap))
        .collect::<Result<_>>()?;
    let markdown = markdown(points, &sections, bootstrap);
    let results = serde_json::to_string_pretty(&results_json(points, &sections, bootstrap))?;

    let figures_dir = dir.join("figures");
    std::fs::create_dir_all(&figures_dir).map_err(|e| Error::io(&figures_dir, e))?;
    let mut files = Vec::new();
    let mut figures = Vec::new();
    for s in &sections {
        if let Some(svg) = &s.figure {
            let path = figures_dir.join(s.experiment.figure_file());
            let mut file = AtomicFile::create(&path)?;
            file.write_bytes(svg.as_bytes())?;
            files.push(file);
            figures.push(path);
        }
    }
    let results_path = dir.join("results.json");
    let mut file = AtomicFile::create(&results_path)?;
    file.write_bytes(results.as_bytes())?;
    file.write_bytes(b"\n")?;
    files.push(file);
    let markdown_path = dir.join("report.md");
    let mut file = AtomicFile::create(&markdown_path)?;
    file.write_bytes(markdown.as_bytes())?;
    files.push(file);
    commit_all(files)?;
    Ok(ReplicationFiles {
        markdown: markdown_path,
        results: results_path,
        figures,
    })
}

/// Percent with one decimal.
fn pct(fraction: f64) -> String {
    format!("{:.1}%", 100.0 * fraction)
}

/// An interval of a fraction, in percent: `28.1–35.0`.
fn range(interval: Option<Interval>) -> String {
    interval.map_or("–".into(), |i| {
        format!("{:.1} to {:.1}", 100.0 * i.low, 100.0 * i.high)
    })
}

/// Points with a sign, never "-0.0".
fn signed(points: f64) -> String {
    let points = if points.abs() < 0.05 { 0.0 } else { points };
    format!("{points:+.1}")
}

fn signed_range(interval: Option<Interval>) -> String {
    interval.map_or("–".into(), |i| {
        format!("{} to {}", signed(100.0 * i.low), signed(100.0 * i.high))
    })
}

/// Seconds as the header says them: `5123 s (1 h 25 min)`.
fn duration(seconds: f64) -> String {
    let minutes = (seconds / 60.0).round() as u64;
    if minutes >= 60 {
        format!("{seconds:.0} s ({} h {} min)", minutes / 60, minutes % 60)
    } else if minutes >= 1 {
        format!("{seconds:.0} s ({minutes} min)")
    } else {
        format!("{seconds:.1} s")
    }
}

/// A table cell's text: pipes would end the cell.
fn cell_text(text: &str) -> String {
    text.replace('|', "\\|")
}

fn markdown(points: &Points, sections: &[Section], bootstrap: &Bootstrap) -> String {
    let level = format!("{:.0}%", 100.0 * bootstrap.level);
    let mut md = String::from(
        "# Replication of \"Scaling Instruction-Finetuned Language Models\" (Chung et al., 2022) at micro scale\n\n",
    );
    if let Some(note) = &points.note {
        let _ = writeln!(md, "> **Note:** {}\n", note.trim());
    }
    let seeds: Vec<String> = points.seeds().iter().map(u64::to_string).collect();
    let ran = sections.iter().filter(|s| !s.cells.is_empty()).count();
    let cells: usize = sections.iter().map(|s| s.cells.len()).sum();
    let _ = writeln!(
        md,
        "- **What ran:** {} of the paper's 6 experiments; {} points ({cells} cells of an experiment, series and x) over {} seed{}{}.",
        ran,
        points.points.len(),
        seeds.len(),
        if seeds.len() == 1 { "" } else { "s" },
        if seeds.is_empty() {
            String::new()
        } else {
            format!(" ({})", seeds.join(", "))
        }
    );
    if let Some(s) = points.seconds {
        let _ = writeln!(md, "- **Time:** {} in total.", duration(s));
    }
    if let Some(m) = &points.machine {
        let _ = writeln!(md, "- **Machine:** {}.", m.trim().trim_end_matches('.'));
    }
    if let Some(c) = &points.command {
        let _ = writeln!(md, "- **Command:** `{}`.", c.replace('`', "'"));
    }
    let _ = writeln!(
        md,
        "\n**How to read it.** Every value is the mean over seeds of each seed's accuracy; the \
         spread is the lowest to the highest seed. Intervals are {level} and say which they are: \
         *over seeds* is Student's t over the seeds' values (only with {MIN_SEEDS} or more seeds; \
         differences paired by seed when both sides have the same seeds, Welch–Satterthwaite \
         otherwise); *over pooled items* is a percentile bootstrap over every seed's items \
         together ({} resamples, seed {}; each seed weighted equally; differences paired item \
         by item when both sides evaluated the same item set). *Chance* is what a model that \
         learned only the answer format scores (1/k for k listed options; for free-form \
         answers, how often the family's majority answer among its other examples is right). \
         A claim is *reproduced here* when every interval of its difference lies on the claimed \
         side of 0 (for a scaling curve, last point minus first, with a positive Spearman rank \
         correlation over all points), *not reproduced here* when an interval lies wholly on \
         the other side, and *inconclusive here* otherwise; the full rules are in `flan_eval::replication::verdict`.\n",
        bootstrap.resamples, bootstrap.seed
    );
    for (i, s) in sections.iter().enumerate() {
        let e = s.experiment;
        let _ = writeln!(md, "## {}. {}\n", i + 1, e.title());
        let _ = writeln!(md, "**The paper:** {}\n", e.claim());
        if s.cells.is_empty() {
            let _ = writeln!(
                md,
                "**Not run:** points.json has no points of this experiment (`{e}`).\n"
            );
            continue;
        }
        let _ = writeln!(md, "![{}](figures/{})\n", e.title(), e.figure_file());
        md.push_str(&cells_table(e, &s.cells, &level));
        if e == Experiment::NormalizedAverage {
            md.push_str(&normalized_table(&s.normalized, &level));
        }
        md.push_str(&evidence_table(&s.verdict, &level));
        let _ = writeln!(md, "**Here:** {}\n", s.verdict.sentence);
    }
    let _ = writeln!(
        md,
        "## Summary\n\n| # | experiment | the paper's claim | here | seeds |\n|---:|---|---|---|---|"
    );
    for (i, s) in sections.iter().enumerate() {
        let counts: Vec<usize> = s.cells.iter().map(|c| c.runs.len()).collect();
        let seeds = match (counts.iter().min(), counts.iter().max()) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}–{b}"),
            _ => "–".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | **{}** | {seeds} |",
            i + 1,
            s.experiment.title(),
            cell_text(s.experiment.claim()),
            s.verdict.status.phrase()
        );
    }
    md
}

fn cells_table(experiment: Experiment, cells: &[Cell], level: &str) -> String {
    let x_head = match experiment.x_kind() {
        XKind::Families => "finetuning families",
        XKind::Parameters => "size",
        XKind::Samples => "samples",
        XKind::Condition(_) => "condition",
    };
    let series_head = if experiment == Experiment::NormalizedAverage {
        "setting"
    } else {
        "series"
    };
    let mut md = format!(
        "| {series_head} | {x_head} | seeds | accuracy | spread (min–max) | {level} interval over seeds | {level} interval over pooled items | chance | items |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for c in cells {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell_text(&experiment.series_label(&c.series)),
            cell_text(&x_text(experiment, &c.x, c.x_label.as_deref())),
            c.runs.len(),
            pct(c.accuracy),
            range(Some(c.spread)),
            range(c.seed_interval),
            range(c.item_interval),
            pct(c.chance),
            c.items
        );
    }
    md.push('\n');
    md
}

fn normalized_table(values: &[Difference], level: &str) -> String {
    let mut md = format!(
        "Normalised against chance, 100 × (accuracy − chance) / (1 − chance), per seed with that seed's chance:\n\n\
         | setting and condition | normalised score | {level} interval over seeds | {level} interval over pooled items |\n|---|---:|---:|---:|\n"
    );
    for d in values {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {} | {} |",
            cell_text(&d.what),
            100.0 * d.value,
            signed_range(d.seed_interval),
            signed_range(d.item_interval)
        );
    }
    md.push('\n');
    md
}

fn evidence_table(verdict: &Verdict, level: &str) -> String {
    if verdict.evidence.is_empty() {
        return String::new();
    }
    let mut md = format!(
        "| difference | points | {level} interval over seeds | {level} interval over pooled items | claimed | finding |\n|---|---:|---:|---:|---|---|\n"
    );
    for e in &verdict.evidence {
        let d = &e.difference;
        let finding = match e.finding {
            Finding::Supports => "supports the claim",
            Finding::Contradicts => "contradicts the claim",
            Finding::Within => "within the interval",
            Finding::NoInterval => "no interval",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {finding} |",
            cell_text(&d.what),
            signed(100.0 * d.value),
            signed_range(d.seed_interval),
            signed_range(d.item_interval),
            match e.claimed {
                super::verdict::Claimed::Rise => "rise",
                super::verdict::Claimed::Fall => "fall",
                super::verdict::Claimed::NoFall => "no fall",
            }
        );
    }
    // Say how the intervals were computed once when every difference shares the methods.
    let method = |e: &super::verdict::Evidence| {
        format!(
            "over seeds {}; over items {}",
            e.difference.seed_method, e.difference.item_method
        )
    };
    let first = method(&verdict.evidence[0]);
    let text = if verdict.evidence.iter().all(|e| method(e) == first) {
        format!("{first}.")
    } else {
        let each: Vec<String> = verdict
            .evidence
            .iter()
            .map(|e| format!("{}: {}", e.difference.what, method(e)))
            .collect();
        format!("{}.", each.join(". "))
    };
    let _ = writeln!(md, "\n*How the intervals were computed:* {text}\n");
    md
}

fn results_json(points: &Points, sections: &[Section], bootstrap: &Bootstrap) -> serde_json::Value {
    let experiments: Vec<serde_json::Value> = sections
        .iter()
        .map(|s| {
            let mut v = json!({
                "experiment": s.experiment,
                "title": s.experiment.title(),
                "claim": s.experiment.claim(),
                "status": s.verdict.status,
                "verdict": s.verdict.sentence,
                "figure": s.figure.as_ref().map(|_| format!("figures/{}", s.experiment.figure_file())),
                "cells": s.cells,
                "evidence": s.verdict.evidence,
                "rank_correlation": s.verdict.rank_correlation,
            });
            if s.experiment == Experiment::NormalizedAverage {
                v["normalized"] = json!(s.normalized);
            }
            v
        })
        .collect();
    json!({
        "points_version": points.version,
        "run": {
            "machine": points.machine,
            "seconds": points.seconds,
            "command": points.command,
            "note": points.note,
            "seeds": points.seeds(),
            "points": points.points.len(),
        },
        "intervals": {
            "level": bootstrap.level,
            "over_seeds": format!("Student t over the seeds' values, with at least {MIN_SEEDS} seeds; differences paired by seed when both sides have the same seeds, Welch–Satterthwaite otherwise"),
            "over_items": "percentile bootstrap over every seed's items pooled, each seed weighted equally; differences paired item by item when both sides evaluated the same item set",
            "bootstrap": bootstrap,
        },
        "normalisation": "normalized_average: each setting's 100 × (accuracy − chance) / (1 − chance), per seed with that seed's chance, averaged over settings with equal weights (the paper's normalisation against random guessing, with the suite's chance baseline as the random score)",
        "experiments": experiments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::points::{Point, X};

    fn point(experiment: Experiment, series: &str, x: X, seed: u64, right: usize) -> Point {
        let n = 50;
        Point {
            experiment,
            series: series.into(),
            x,
            x_label: None,
            seed,
            accuracy: right as f64 / n as f64,
            items: n,
            chance: 0.2,
            correct: Some((0..n).map(|i| i < right).collect()),
            item_set: Some("eval".into()),
            seconds: Some(1.5),
        }
    }

    /// Points for all six experiments over three seeds, rising everywhere the paper says.
    pub(crate) fn all_six() -> Points {
        let mut list = Vec::new();
        let c = |s: &str| X::Condition(s.into());
        for seed in 1..=3u64 {
            let s = seed as usize;
            for (i, x) in [0.0, 1.0, 4.0, 16.0, 55.0].into_iter().enumerate() {
                let mut p = point(
                    Experiment::TaskScaling,
                    "held_out_family",
                    X::Number(x),
                    seed,
                    10 + 6 * i + s,
                );
                if x == 55.0 {
                    p.x_label = Some("all".into());
                }
                list.push(p);
                let mut t = point(
                    Experiment::TaskScaling,
                    "held_out_templates",
                    X::Number(x),
                    seed,
                    15 + 7 * i + s,
                );
                t.x_label = list.last().unwrap().x_label.clone();
                list.push(t);
            }
            for (i, x) in [1.2e6, 4.5e6, 18.0e6].into_iter().enumerate() {
                let mut p = point(
                    Experiment::ModelScaling,
                    "finetuned",
                    X::Number(x),
                    seed,
                    25 + 5 * i + s,
                );
                p.x_label = Some(["tiny", "small", "base"][i].into());
                list.push(p.clone());
                p.series = "not_finetuned".into();
                p.accuracy = (10 + i + s) as f64 / 50.0;
                p.correct = Some((0..50).map(|k| k < 10 + i + s).collect());
                list.push(p);
            }
            for (condition, direct, cot) in
                [("without_cot_data", 30, 10), ("with_cot_data", 32, 36)]
            {
                list.push(point(
                    Experiment::CotMixture,
                    "direct",
                    c(condition),
                    seed,
                    direct + s,
                ));
                list.push(point(
                    Experiment::CotMixture,
                    "cot",
                    c(condition),
                    seed,
                    cot + s,
                ));
            }
            for (condition, right) in [("before_finetuning", 5), ("after_finetuning", 30)] {
                list.push(point(
                    Experiment::ZeroShotCot,
                    "zero_shot_cot",
                    c(condition),
                    seed,
                    right + s,
                ));
                list.push(point(
                    Experiment::ZeroShotCot,
                    "zero_shot_direct",
                    c(condition),
                    seed,
                    20 + s,
                ));
            }
            list.push(point(
                Experiment::SelfConsistency,
                "greedy",
                X::Number(1.0),
                seed,
                20 + s,
            ));
            for (i, k) in [1.0, 2.0, 4.0, 8.0, 16.0].into_iter().enumerate() {
                list.push(point(
                    Experiment::SelfConsistency,
                    "self_consistency",
                    X::Number(k),
                    seed,
                    18 + 4 * i + s,
                ));
            }
            for setting in [
                "seen_templates/direct",
                "held_out_templates/direct",
                "held_out_family/direct",
                "held_out_family/cot",
            ] {
                list.push(point(
                    Experiment::NormalizedAverage,
                    setting,
                    c("not_finetuned"),
                    seed,
                    12 + s,
                ));
                list.push(point(
                    Experiment::NormalizedAverage,
                    setting,
                    c("finetuned"),
                    seed,
                    30 + s,
                ));
            }
        }
        Points {
            machine: Some("test machine, 2 cores".into()),
            seconds: Some(5123.4),
            command: Some("cargo xtask replicate --quick".into()),
            note: None,
            points: list,
            ..Points::new()
        }
    }

    fn well_formed(svg: &str) {
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert_eq!(svg.matches("<svg").count(), 1);
        // Every opened element that is not self-closing is closed.
        for tag in ["text", "svg"] {
            assert_eq!(
                svg.matches(&format!("<{tag} ")).count() + svg.matches(&format!("<{tag}>")).count(),
                svg.matches(&format!("</{tag}>")).count(),
                "<{tag}> unbalanced"
            );
        }
    }

    #[test]
    fn every_experiment_gets_a_figure_a_table_and_a_verdict() {
        let points = all_six();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("runs/replicate-1");
        let files = write_replication_report(&out, &points, &Settings::default()).unwrap();
        assert_eq!(files.figures.len(), 6);
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.results).unwrap()).unwrap();
        for line in [
            "- **What ran:** 6 of the paper's 6 experiments; 114 points (38 cells of an experiment, series and x) over 3 seeds (1, 2, 3).\n",
            "- **Time:** 5123 s (1 h 25 min) in total.\n",
            "- **Machine:** test machine, 2 cores.\n",
            "- **Command:** `cargo xtask replicate --quick`.\n",
        ] {
            assert!(md.contains(line), "{line}\n{md}");
        }
        for (i, e) in Experiment::ALL.iter().enumerate() {
            let svg = std::fs::read_to_string(&files.figures[i]).unwrap();
            well_formed(&svg);
            assert!(svg.contains(&crate::chart::escape(e.title())), "{e}");
            assert!(md.contains(&format!("## {}. {}", i + 1, e.title())), "{e}");
            assert!(
                md.contains(&format!("![{}](figures/{}.svg)", e.title(), e.name())),
                "{e}"
            );
            let x = &results["experiments"][i];
            assert_eq!(x["experiment"], e.name());
            assert_eq!(x["figure"], format!("figures/{}.svg", e.name()));
            let sentence = x["verdict"].as_str().unwrap();
            assert!(md.contains(&format!("**Here:** {sentence}")), "{e}");
            // The constructed data rise wherever the paper says they do.
            assert_eq!(x["status"], "reproduced", "{e}: {sentence}");
            assert!(sentence.ends_with("reproduced here."), "{sentence}");
            assert!(!x["cells"].as_array().unwrap().is_empty());
            assert!(!x["evidence"].as_array().unwrap().is_empty(), "{e}");
            assert!(!sentence.contains("NaN"), "{sentence}");
            // The summary names the claim and the status.
            assert!(
                md.contains(&format!(
                    "| {} | {} | {} | **reproduced here** | 3 |",
                    i + 1,
                    e.title(),
                    e.claim()
                )),
                "{e}"
            );
        }
        // Every section has its figure, its table of cells, the table of the differences its
        // verdict rests on, and the verdict.
        let sections: Vec<&str> = md.split("\n## ").skip(1).take(6).collect();
        assert_eq!(sections.len(), 6);
        for (section, e) in sections.iter().zip(Experiment::ALL) {
            assert!(section.contains("![") && section.contains(".svg)"), "{e}");
            assert!(
                section.contains(" | seeds | accuracy | spread (min–max) | 95% interval over seeds | 95% interval over pooled items | chance | items |"),
                "{e}"
            );
            let rows = section
                .lines()
                .filter(|l| {
                    l.starts_with("| ")
                        && !l.starts_with("| series")
                        && !l.starts_with("| setting |")
                        && !l.starts_with("| difference")
                })
                .count();
            assert!(rows >= 4, "{e}: {rows} rows");
            assert!(
                section.contains("| difference | points | 95% interval over seeds |"),
                "{e}"
            );
            assert!(section.contains("**Here:** "), "{e}");
        }
        // Tables: a row per cell with its intervals; chance drawn dashed in the curves.
        assert!(
            md.contains("| held-out families | all (55 families) | 3 | "),
            "{md}"
        );
        assert!(
            md.contains("| instruction-finetuned | tiny (1.2M parameters) | 3 | "),
            "{md}"
        );
        assert!(
            md.contains("| held_out_family/cot | finetuned | 3 | "),
            "{md}"
        );
        assert!(md.contains("| average, finetuned | "), "{md}");
        assert!(
            md.contains("| held_out_family/cot, not finetuned | "),
            "{md}"
        );
        assert!(md.contains("*How the intervals were computed:* over seeds paired by seed, Student t over 3 seeds (2 df); over items paired by item, bootstrap over 150 pooled items."), "{md}");
        let curve = std::fs::read_to_string(&files.figures[0]).unwrap();
        assert!(curve.contains("stroke-dasharray=\"5 4\""));
        assert!(curve.contains(">55 (all)<"), "{curve}");
        let sizes = std::fs::read_to_string(&files.figures[1]).unwrap();
        assert!(sizes.contains(">tiny (1.2M)<"), "{sizes}");
        let first = &results["experiments"][0]["cells"][0];
        assert_eq!(first["series"], "held_out_family");
        assert_eq!(first["x"], 0);
        assert!(first["seed_interval"].is_array() && first["item_interval"].is_array());
        assert_eq!(first["runs"].as_array().unwrap().len(), 3);
        assert_eq!(results["run"]["seeds"], json!([1, 2, 3]));
        assert_eq!(results["intervals"]["bootstrap"]["resamples"], 1000);
        assert!(
            results["experiments"][5]["normalized"]
                .as_array()
                .unwrap()
                .len()
                == 10
        );
        // No temporaries are left behind.
        for entry in std::fs::read_dir(&out)
            .unwrap()
            .chain(std::fs::read_dir(out.join("figures")).unwrap())
        {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".tmp-"), "{name}");
        }
    }

    #[test]
    fn missing_experiments_say_not_run() {
        let mut points = all_six();
        points
            .points
            .retain(|p| p.experiment == Experiment::ZeroShotCot);
        points.machine = None;
        points.seconds = None;
        points.command = None;
        points.note = Some("constructed data".into());
        let dir = tempfile::tempdir().unwrap();
        let files = write_replication_report(dir.path(), &points, &Settings::default()).unwrap();
        assert_eq!(
            files.figures,
            vec![dir.path().join("figures/zero_shot_cot.svg")]
        );
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        assert!(md.starts_with("# Replication of"), "{md}");
        assert!(md.contains("> **Note:** constructed data"), "{md}");
        assert!(
            md.contains("- **What ran:** 1 of the paper's 6 experiments; 12 points"),
            "{md}"
        );
        for absent in ["**Machine:**", "**Time:**", "**Command:**"] {
            assert!(!md.contains(absent), "{absent}\n{md}");
        }
        for e in Experiment::ALL {
            if e == Experiment::ZeroShotCot {
                continue;
            }
            assert!(
                md.contains(&format!(
                    "**Not run:** points.json has no points of this experiment (`{e}`)."
                )),
                "{e}"
            );
            assert!(
                md.contains(&format!(
                    "| {} | {} | **not run** | – |",
                    e.title(),
                    e.claim()
                )),
                "{e}"
            );
            assert!(!dir.path().join(format!("figures/{e}.svg")).exists());
        }
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.results).unwrap()).unwrap();
        let statuses: Vec<&str> = results["experiments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            [
                "not_run",
                "not_run",
                "not_run",
                "reproduced",
                "not_run",
                "not_run"
            ]
        );
        assert!(results["experiments"][0]["figure"].is_null());
        // Nothing at all: every experiment is listed, none dropped.
        let empty = write_replication_report(
            &dir.path().join("empty"),
            &Points::new(),
            &Settings::default(),
        )
        .unwrap();
        let md = std::fs::read_to_string(&empty.markdown).unwrap();
        assert_eq!(md.matches("**Not run:**").count(), 6);
        assert_eq!(md.matches("**not run**").count(), 6);
        assert!(
            md.contains("0 points (0 cells of an experiment, series and x) over 0 seeds."),
            "{md}"
        );
    }

    #[test]
    fn bad_points_or_settings_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut points = all_six();
        points.points[3].accuracy = 1.5;
        let err = write_replication_report(dir.path(), &points, &Settings::default()).unwrap_err();
        assert!(
            err.to_string().contains("field `points[3].accuracy`"),
            "{err}"
        );
        let bad = Settings {
            bootstrap: Bootstrap {
                resamples: 0,
                ..Bootstrap::default()
            },
        };
        assert!(write_replication_report(dir.path(), &all_six(), &bad).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_rerun_with_fewer_experiments_replaces_the_report_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_replication_report(dir.path(), &all_six(), &Settings::default()).unwrap();
        let mut points = all_six();
        points
            .points
            .retain(|p| p.experiment != Experiment::CotMixture);
        let files = write_replication_report(dir.path(), &points, &Settings::default()).unwrap();
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.results).unwrap()).unwrap();
        assert_eq!(results["experiments"][2]["status"], "not_run");
        assert_eq!(files.figures.len(), 5);
        // The old figure of the experiment that no longer ran is not part of the new report.
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        assert!(!md.contains("figures/cot_mixture.svg"), "{md}");
        assert!(md.contains(
            "**Not run:** points.json has no points of this experiment (`cot_mixture`)."
        ));
    }
}
