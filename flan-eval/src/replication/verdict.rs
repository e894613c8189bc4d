//! Whether each of the paper's claims reproduced here, decided from the numbers alone.
//!
//! # The decision rules
//!
//! **A difference** (a [`Difference`]: e.g. held-out accuracy with all families minus with none)
//! has up to two intervals at the report's level (95% by default): over seeds (every cell
//! compared has at least [`MIN_SEEDS`] seeds) and over pooled items (every seed of every cell
//! recorded its per-item outcomes); see [`super::aggregate`]. Against the direction the paper
//! claims, it is a [`Finding`]:
//!
//! - claimed **rise**: `supports` when every interval there is lies wholly above 0;
//!   `contradicts` when any lies wholly below 0; otherwise `within` (the difference is within
//!   its interval);
//! - claimed **fall**: the mirror image;
//! - claimed **no fall** (something is "kept"): `contradicts` when any interval lies wholly
//!   below 0, `supports` otherwise;
//! - `no interval` when neither interval exists (fewer than [`MIN_SEEDS`] seeds and no per-item
//!   outcomes): the report does not guess.
//!
//! Requiring every available interval to agree makes "reproduced" the conservative word: the
//! rise must stand out both from the seed-to-seed spread and from the spread of items.
//!
//! **A scaling curve** (task scaling's held-out families against the number of families; model
//! scaling's finetuned model against parameters; self-consistency against k) is judged by its
//! end points and its shape: the difference last − first (for self-consistency, largest k minus
//! greedy decoding when greedy was run, else minus k = 1) must `support` a rise, **and**
//! Spearman's rank correlation ρ between x and the mean accuracies of all the curve's points
//! must be positive. A rise of the end points with ρ <= 0 (the points between do not follow)
//! is inconclusive; a `contradicting` end-point difference (a fall larger than its interval) is
//! not reproduced; a curve of one x value is inconclusive.
//!
//! **A claim of several parts** (model size: a gain at every size and a rising finetuned curve;
//! CoT data: the three differences below) is reproduced when every part supports it, not
//! reproduced when any part contradicts it, and inconclusive otherwise. The claims:
//!
//! 1. task scaling: the held-out-family curve rises (curve rule);
//! 2. model scaling: finetuned − not finetuned rises at every size that has both, and the
//!    finetuned curve rises with parameters (curve rule);
//! 3. CoT data: without CoT data, CoT − direct **falls** (CoT prompting is worse); with CoT data,
//!    CoT − direct does **not fall**; and the CoT data **raises** CoT − direct (the difference of
//!    the two differences);
//! 4. zero-shot CoT: accuracy with the trigger rises from before to after finetuning;
//! 5. self-consistency: the curve rises (curve rule);
//! 6. the normalised average rises from not finetuned to finetuned.
//!
//! An experiment without points is `not run`. Whatever the status, the sentence gives the
//! numbers it rests on: the means, the number of seeds, each difference with the intervals
//! that exist (and which they are), and ρ for curves.

use std::fmt::Write;

use serde::Serialize;

use super::aggregate::{combine, Cell, Difference, Scale, Term};
use super::points::{number_text, X};
use super::stats::spearman;
use super::{Experiment, XKind, MIN_SEEDS};
use crate::interval::{Bootstrap, Interval, Side};
use crate::Result;

/// Whether a claim reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The numbers support the claim beyond their intervals.
    Reproduced,
    /// The numbers go against the claim beyond their intervals.
    NotReproduced,
    /// Neither: a difference within its interval, no interval, or too few points.
    Inconclusive,
    /// The experiment has no points.
    NotRun,
}

impl Status {
    /// How the report says it.
    pub fn phrase(self) -> &'static str {
        match self {
            Status::Reproduced => "reproduced here",
            Status::NotReproduced => "not reproduced here",
            Status::Inconclusive => "inconclusive here",
            Status::NotRun => "not run",
        }
    }
}

/// The direction of a difference the paper claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Claimed {
    /// Above 0.
    Rise,
    /// Below 0.
    Fall,
    /// Not below 0.
    NoFall,
}

/// What a difference's intervals say about its claimed direction (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// Every interval is on the claimed side.
    Supports,
    /// An interval is wholly on the other side.
    Contradicts,
    /// The difference is within its interval.
    Within,
    /// There is no interval.
    NoInterval,
}

/// Decides one difference against its claimed direction.
pub fn finding(d: &Difference, claimed: Claimed) -> Finding {
    let sides: Vec<Side> = d.intervals().iter().map(Interval::side_of_zero).collect();
    if sides.is_empty() {
        return Finding::NoInterval;
    }
    let (wanted, unwanted) = match claimed {
        Claimed::Rise | Claimed::NoFall => (Side::Above, Side::Below),
        Claimed::Fall => (Side::Below, Side::Above),
    };
    if sides.contains(&unwanted) {
        Finding::Contradicts
    } else if claimed == Claimed::NoFall || sides.iter().all(|&s| s == wanted) {
        Finding::Supports
    } else {
        Finding::Within
    }
}

/// One difference a verdict rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// The difference and its intervals.
    #[serde(flatten)]
    pub difference: Difference,
    /// The direction the paper claims.
    pub claimed: Claimed,
    /// What the intervals say.
    pub finding: Finding,
}

/// The verdict on one claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The experiment.
    pub experiment: Experiment,
    /// Whether the claim reproduced.
    pub status: Status,
    /// One sentence with the numbers, ending in the status.
    pub sentence: String,
    /// The differences it rests on.
    pub evidence: Vec<Evidence>,
    /// Spearman's ρ of the scaling curve, for curve claims.
    pub rank_correlation: Option<f64>,
}

/// Percent with one decimal.
fn pct(fraction: f64) -> String {
    format!("{:.1}%", 100.0 * fraction)
}

/// Points with a sign, never "-0.0".
fn signed(points: f64) -> String {
    let points = if points.abs() < 0.05 { 0.0 } else { points };
    format!("{points:+.1}")
}

/// A difference in points with the intervals it has, and which they are.
fn difference_text(d: &Difference, level: &str, scale: f64) -> String {
    let mut parts = Vec::new();
    if let Some(i) = d.seed_interval {
        parts.push(format!(
            "{} to {} over seeds",
            signed(scale * i.low),
            signed(scale * i.high)
        ));
    }
    if let Some(i) = d.item_interval {
        parts.push(format!(
            "{} to {} over pooled items",
            signed(scale * i.low),
            signed(scale * i.high)
        ));
    }
    let unit = if scale == 100.0 { " points" } else { "" };
    if parts.is_empty() {
        format!(
            "difference {}{unit}, no interval ({}; {})",
            signed(scale * d.value),
            d.seed_method.trim_start_matches("none: "),
            d.item_method.trim_start_matches("none: ")
        )
    } else {
        format!(
            "difference {}{unit}, {level} interval {}",
            signed(scale * d.value),
            parts.join(", ")
        )
    }
}

/// "mean of 3 seeds", "means of 2 to 3 seeds", with a warning when below [`MIN_SEEDS`].
fn seeds_text(cells: &[&Cell]) -> String {
    let counts: Vec<usize> = cells.iter().map(|c| c.runs.len()).collect();
    let (low, high) = (
        counts.iter().copied().min().unwrap_or(0),
        counts.iter().copied().max().unwrap_or(0),
    );
    let mut text = if low == high {
        format!("mean of {low} seed{}", if low == 1 { "" } else { "s" })
    } else {
        format!("means of {low} to {high} seeds")
    };
    if low < MIN_SEEDS {
        let _ = write!(
            text,
            ", fewer than the {MIN_SEEDS} the replication asks for"
        );
    }
    text
}

/// How a sentence names an x value.
pub fn x_text(experiment: Experiment, x: &X, label: Option<&str>) -> String {
    match (experiment.x_kind(), x) {
        (XKind::Families, X::Number(n)) => {
            let count = format!(
                "{} famil{}",
                number_text(*n),
                if *n == 1.0 { "y" } else { "ies" }
            );
            match label {
                Some(l) => format!("{l} ({count})"),
                None => count,
            }
        }
        (XKind::Parameters, X::Number(n)) => match label {
            Some(l) => format!("{l} ({} parameters)", parameters(*n)),
            None => format!("{} parameters", parameters(*n)),
        },
        (XKind::Samples, X::Number(n)) => format!("k = {}", number_text(*n)),
        (_, X::Condition(c)) => Experiment::condition_label(c),
        (_, x) => x.to_string(),
    }
}

/// A parameter count with a unit: 1.2M, 350K, 3.0B.
pub fn parameters(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0}K", n / 1e3)
    } else {
        number_text(n)
    }
}

fn x_of(experiment: Experiment, cell: &Cell) -> String {
    x_text(experiment, &cell.x, cell.x_label.as_deref())
}

fn difference(what: &str, plus: &Cell, minus: &Cell, bootstrap: &Bootstrap) -> Result<Difference> {
    combine(
        what,
        &[
            Term {
                cell: plus,
                weight: 1.0,
            },
            Term {
                cell: minus,
                weight: -1.0,
            },
        ],
        Scale::Accuracy,
        bootstrap,
    )
}

fn evidence(difference: Difference, claimed: Claimed) -> Evidence {
    Evidence {
        finding: finding(&difference, claimed),
        difference,
        claimed,
    }
}

/// The status of a claim of several parts (see the module docs).
fn combined(findings: &[Finding]) -> Status {
    if findings.contains(&Finding::Contradicts) {
        Status::NotReproduced
    } else if !findings.is_empty() && findings.iter().all(|&f| f == Finding::Supports) {
        Status::Reproduced
    } else {
        Status::Inconclusive
    }
}

/// Why a claim is inconclusive, from its findings.
fn inconclusive_reason(findings: &[Finding]) -> &'static str {
    if findings.contains(&Finding::Within) {
        "difference within the interval"
    } else {
        "no interval to decide with"
    }
}

/// The closing words of a sentence.
fn ending(status: Status, reason: &str) -> String {
    match status {
        Status::Inconclusive => format!("inconclusive here ({reason})."),
        other => format!("{}.", other.phrase()),
    }
}

/// The verdict on `experiment` from its cells (all of that experiment, as
/// [`super::aggregate::cells`] orders them).
pub fn verdict(experiment: Experiment, cells: &[Cell], bootstrap: &Bootstrap) -> Result<Verdict> {
    if cells.is_empty() {
        return Ok(Verdict {
            experiment,
            status: Status::NotRun,
            sentence: format!("{}: not run (no points).", experiment.title()),
            evidence: Vec::new(),
            rank_correlation: None,
        });
    }
    let level = format!("{:.0}%", 100.0 * bootstrap.level);
    match experiment {
        Experiment::TaskScaling => curve(
            experiment,
            series(cells, "held_out_family"),
            None,
            "Held-out-family accuracy",
            "the number of families",
            &level,
            bootstrap,
        ),
        Experiment::SelfConsistency => {
            let greedy = series(cells, "greedy").into_iter().next();
            curve(
                experiment,
                series(cells, "self_consistency"),
                greedy,
                "Self-consistency accuracy",
                "k",
                &level,
                bootstrap,
            )
        }
        Experiment::ModelScaling => model_scaling(cells, &level, bootstrap),
        Experiment::CotMixture => cot_mixture(cells, &level, bootstrap),
        Experiment::ZeroShotCot => zero_shot_cot(cells, &level, bootstrap),
        Experiment::NormalizedAverage => normalized_average(cells, &level, bootstrap),
    }
}

/// The cells of one series, in x order.
fn series<'a>(cells: &'a [Cell], name: &str) -> Vec<&'a Cell> {
    cells.iter().filter(|c| c.series == name).collect()
}

fn inconclusive(experiment: Experiment, why: String) -> Verdict {
    Verdict {
        experiment,
        status: Status::Inconclusive,
        sentence: format!("{}: inconclusive here ({why}).", experiment.title()),
        evidence: Vec::new(),
        rank_correlation: None,
    }
}

/// A curve judged by the curve rule: `baseline` (greedy decoding) replaces the first point as
/// the start when given.
fn curve(
    experiment: Experiment,
    points: Vec<&Cell>,
    baseline: Option<&Cell>,
    subject: &str,
    x_name: &str,
    level: &str,
    bootstrap: &Bootstrap,
) -> Result<Verdict> {
    let name = experiment.series().map_or("", |s| s[0]);
    let (Some(&first), Some(&last)) = (points.first(), points.last()) else {
        return Ok(inconclusive(
            experiment,
            format!("no points of the {name} series, which the claim is about"),
        ));
    };
    let start = baseline.unwrap_or(first);
    if points.len() < 2 {
        return Ok(inconclusive(
            experiment,
            format!(
                "only one value of {x_name} was run ({}), so there is no curve",
                x_of(experiment, first)
            ),
        ));
    }
    let start_name = if baseline.is_some() {
        "greedy decoding".to_string()
    } else {
        x_of(experiment, start)
    };
    let d = difference(
        &format!("{} − {start_name}", x_of(experiment, last)),
        last,
        start,
        bootstrap,
    )?;
    let pairs: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|c| Some((c.x.order(experiment)?, c.accuracy)))
        .collect();
    let rho = spearman(&pairs);
    let e = evidence(d, Claimed::Rise);
    let (status, reason) = match e.finding {
        Finding::Supports if rho > 0.0 => (Status::Reproduced, String::new()),
        Finding::Supports => (
            Status::Inconclusive,
            format!("the end points rise but the points between do not follow, rank correlation {rho:+.2}"),
        ),
        Finding::Contradicts => (Status::NotReproduced, String::new()),
        f => (Status::Inconclusive, inconclusive_reason(&[f]).to_string()),
    };
    let mut involved: Vec<&Cell> = points.clone();
    involved.extend(baseline);
    let sentence = format!(
        "{subject} went from {} with {start_name} to {} with {} ({}; {}; rank correlation with {x_name} {rho:+.2} over {} points): {}",
        pct(start.accuracy),
        pct(last.accuracy),
        x_of(experiment, last),
        seeds_text(&involved),
        difference_text(&e.difference, level, 100.0),
        points.len(),
        ending(status, &reason)
    );
    Ok(Verdict {
        experiment,
        status,
        sentence,
        evidence: vec![e],
        rank_correlation: Some(rho),
    })
}

fn model_scaling(cells: &[Cell], level: &str, bootstrap: &Bootstrap) -> Result<Verdict> {
    let e = Experiment::ModelScaling;
    let tuned = series(cells, "finetuned");
    let base = series(cells, "not_finetuned");
    let mut evidence_list = Vec::new();
    let mut gains = Vec::new();
    for t in &tuned {
        if let Some(b) = base.iter().find(|b| b.x == t.x) {
            let d = difference(
                &format!("finetuned − not finetuned at {}", x_of(e, t)),
                t,
                b,
                bootstrap,
            )?;
            gains.push(format!(
                "{} points at {} ({})",
                signed(100.0 * d.value),
                x_of(e, t),
                difference_text(&d, level, 100.0)
                    .split_once(", ")
                    .map_or(String::new(), |(_, rest)| rest.to_string())
            ));
            evidence_list.push(evidence(d, Claimed::Rise));
        }
    }
    if evidence_list.is_empty() {
        return Ok(inconclusive(
            e,
            "no model size has both finetuned and not-finetuned points".into(),
        ));
    }
    let mut findings: Vec<Finding> = evidence_list.iter().map(|v| v.finding).collect();
    let mut rho = None;
    let mut trend = String::new();
    let mut reason = inconclusive_reason(&findings).to_string();
    if let (Some(&first), Some(&last)) = (tuned.first(), tuned.last()) {
        if tuned.len() >= 2 {
            let d = difference(
                &format!("finetuned at {} − at {}", x_of(e, last), x_of(e, first)),
                last,
                first,
                bootstrap,
            )?;
            let pairs: Vec<(f64, f64)> = tuned
                .iter()
                .filter_map(|c| Some((c.x.order(e)?, c.accuracy)))
                .collect();
            let r = spearman(&pairs);
            let ev = evidence(d, Claimed::Rise);
            let f = match ev.finding {
                Finding::Supports if r <= 0.0 => {
                    reason = format!("the finetuned model's end points rise but the sizes between do not follow, rank correlation {r:+.2}");
                    Finding::Within
                }
                f => f,
            };
            trend = format!(
                "; the finetuned model went from {} at {} to {} at {} ({}; rank correlation with size {r:+.2})",
                pct(first.accuracy),
                x_of(e, first),
                pct(last.accuracy),
                x_of(e, last),
                difference_text(&ev.difference, level, 100.0)
            );
            findings.push(f);
            if f == Finding::Within && !reason.contains("rank correlation") {
                reason = "difference within the interval".into();
            }
            rho = Some(r);
            evidence_list.push(ev);
        } else {
            findings.push(Finding::NoInterval);
            reason = "only one model size was finetuned, so there is no curve".into();
        }
    }
    let status = combined(&findings);
    let mut involved: Vec<&Cell> = tuned.clone();
    involved.extend(base.iter().copied());
    let sentence = format!(
        "Instruction finetuning changed held-out accuracy by {}{trend} ({}): {}",
        gains.join(", "),
        seeds_text(&involved),
        ending(status, &reason)
    );
    Ok(Verdict {
        experiment: e,
        status,
        sentence,
        evidence: evidence_list,
        rank_correlation: rho,
    })
}

/// The cell of `series` at the condition `condition`.
fn at<'a>(cells: &'a [Cell], series: &str, condition: &str) -> Option<&'a Cell> {
    cells
        .iter()
        .find(|c| c.series == series && c.x == X::Condition(condition.into()))
}

fn cot_mixture(cells: &[Cell], level: &str, bootstrap: &Bootstrap) -> Result<Verdict> {
    let e = Experiment::CotMixture;
    let four = (
        at(cells, "cot", "without_cot_data"),
        at(cells, "direct", "without_cot_data"),
        at(cells, "cot", "with_cot_data"),
        at(cells, "direct", "with_cot_data"),
    );
    let (Some(cot0), Some(dir0), Some(cot1), Some(dir1)) = four else {
        let missing: Vec<&str> = [
            ("CoT prompting without CoT data", four.0.is_none()),
            ("direct prompting without CoT data", four.1.is_none()),
            ("CoT prompting with CoT data", four.2.is_none()),
            ("direct prompting with CoT data", four.3.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| *n)
        .collect();
        return Ok(inconclusive(
            e,
            format!(
                "the comparison needs all four cells; missing: {}",
                missing.join(", ")
            ),
        ));
    };
    let without = evidence(
        difference("CoT − direct without CoT data", cot0, dir0, bootstrap)?,
        Claimed::Fall,
    );
    let with = evidence(
        difference("CoT − direct with CoT data", cot1, dir1, bootstrap)?,
        Claimed::NoFall,
    );
    let gap = combine(
        "(CoT − direct with CoT data) − (CoT − direct without)",
        &[
            Term {
                cell: cot1,
                weight: 1.0,
            },
            Term {
                cell: dir1,
                weight: -1.0,
            },
            Term {
                cell: cot0,
                weight: -1.0,
            },
            Term {
                cell: dir0,
                weight: 1.0,
            },
        ],
        Scale::Accuracy,
        bootstrap,
    )?;
    let gap = evidence(gap, Claimed::Rise);
    let findings = [without.finding, with.finding, gap.finding];
    let status = combined(&findings);
    let sentence = format!(
        "Without CoT data in the mixture, CoT prompting scored {} against {} with direct prompting ({}); with CoT data, {} against {} ({}); the CoT data moved CoT − direct by {} points ({}) ({}): {}",
        pct(cot0.accuracy),
        pct(dir0.accuracy),
        difference_text(&without.difference, level, 100.0),
        pct(cot1.accuracy),
        pct(dir1.accuracy),
        difference_text(&with.difference, level, 100.0),
        signed(100.0 * gap.difference.value),
        difference_text(&gap.difference, level, 100.0)
            .split_once(", ")
            .map_or_else(|| "no interval".to_string(), |(_, rest)| rest.to_string()),
        seeds_text(&[cot0, dir0, cot1, dir1]),
        ending(status, inconclusive_reason(&findings))
    );
    Ok(Verdict {
        experiment: e,
        status,
        sentence,
        evidence: vec![without, with, gap],
        rank_correlation: None,
    })
}

fn zero_shot_cot(cells: &[Cell], level: &str, bootstrap: &Bootstrap) -> Result<Verdict> {
    let e = Experiment::ZeroShotCot;
    let (Some(before), Some(after)) = (
        at(cells, "zero_shot_cot", "before_finetuning"),
        at(cells, "zero_shot_cot", "after_finetuning"),
    ) else {
        return Ok(inconclusive(
            e,
            "the comparison needs zero_shot_cot points both before and after finetuning".into(),
        ));
    };
    let ev = evidence(
        difference(
            "zero-shot CoT after − before finetuning",
            after,
            before,
            bootstrap,
        )?,
        Claimed::Rise,
    );
    let status = combined(&[ev.finding]);
    let plain = match (
        at(cells, "zero_shot_direct", "before_finetuning"),
        at(cells, "zero_shot_direct", "after_finetuning"),
    ) {
        (Some(b), Some(a)) => format!(
            "; without the trigger: {} before, {} after",
            pct(b.accuracy),
            pct(a.accuracy)
        ),
        _ => String::new(),
    };
    let sentence = format!(
        "With \"Let's think step by step\" and no exemplars, accuracy went from {} before finetuning to {} after ({}; {}{plain}): {}",
        pct(before.accuracy),
        pct(after.accuracy),
        seeds_text(&[before, after]),
        difference_text(&ev.difference, level, 100.0),
        ending(status, inconclusive_reason(&[ev.finding]))
    );
    Ok(Verdict {
        experiment: e,
        status,
        sentence,
        evidence: vec![ev],
        rank_correlation: None,
    })
}

/// The normalised average at one condition: every setting's cell there, weighted equally.
pub fn average_at<'a>(cells: &'a [Cell], condition: &str) -> Vec<Term<'a>> {
    let here: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.x == X::Condition(condition.into()))
        .collect();
    let weight = 1.0 / here.len().max(1) as f64;
    here.into_iter().map(|cell| Term { cell, weight }).collect()
}

fn normalized_average(cells: &[Cell], level: &str, bootstrap: &Bootstrap) -> Result<Verdict> {
    let e = Experiment::NormalizedAverage;
    let before = average_at(cells, "not_finetuned");
    let after = average_at(cells, "finetuned");
    if before.is_empty() || after.is_empty() {
        return Ok(inconclusive(
            e,
            "the comparison needs settings both not finetuned and finetuned".into(),
        ));
    }
    let b = combine("not finetuned", &before, Scale::Normalized, bootstrap)?;
    let a = combine("finetuned", &after, Scale::Normalized, bootstrap)?;
    let terms: Vec<Term> = after
        .iter()
        .copied()
        .chain(before.iter().map(|t| Term {
            cell: t.cell,
            weight: -t.weight,
        }))
        .collect();
    let d = combine(
        "normalised average, finetuned − not finetuned",
        &terms,
        Scale::Normalized,
        bootstrap,
    )?;
    let ev = evidence(d, Claimed::Rise);
    let status = combined(&[ev.finding]);
    let involved: Vec<&Cell> = terms.iter().map(|t| t.cell).collect();
    let sentence = format!(
        "The normalised average over {} setting{} (each setting's 100 × (accuracy − chance) / (1 − chance), averaged with equal weights) went from {:.1} not finetuned to {:.1} finetuned ({}; {}): {}",
        after.len(),
        if after.len() == 1 { "" } else { "s" },
        100.0 * b.value,
        100.0 * a.value,
        seeds_text(&involved),
        difference_text(&ev.difference, level, 100.0),
        ending(status, inconclusive_reason(&[ev.finding]))
    );
    Ok(Verdict {
        experiment: e,
        status,
        sentence,
        evidence: vec![ev],
        rank_correlation: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::aggregate::cells;
    use crate::replication::points::{Point, Points};
    use proptest::prelude::*;

    /// A point of `n` items with `right` of them right (the first ones).
    fn point(
        experiment: Experiment,
        series: &str,
        x: X,
        seed: u64,
        n: usize,
        right: usize,
    ) -> Point {
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
            item_set: Some(format!("eval-{n}")),
            seconds: None,
        }
    }

    /// Judges with fewer resamples than the default (the constructed differences are far from
    /// their intervals' ends, and the unoptimised test build is slow).
    fn judge(list: Vec<Point>, experiment: Experiment) -> Verdict {
        let b = Bootstrap {
            resamples: 300,
            ..Bootstrap::default()
        };
        judge_with(list, experiment, &b)
    }

    fn judge_with(list: Vec<Point>, experiment: Experiment, b: &Bootstrap) -> Verdict {
        let points = Points {
            points: list,
            ..Points::new()
        };
        points.validate().unwrap();
        verdict(experiment, &cells(&points, experiment, b).unwrap(), b).unwrap()
    }

    /// Task scaling over 0, 2, 8, 32 families, 3 seeds, 200 items, with accuracy
    /// `right(x index, seed)` of 200.
    fn families(right: impl Fn(usize, u64) -> usize) -> Vec<Point> {
        let mut list = Vec::new();
        for (i, x) in [0.0, 2.0, 8.0, 32.0].into_iter().enumerate() {
            for seed in 1..=3 {
                list.push(point(
                    Experiment::TaskScaling,
                    "held_out_family",
                    X::Number(x),
                    seed,
                    200,
                    right(i, seed),
                ));
            }
        }
        list
    }

    #[test]
    fn a_clear_rise_is_reproduced_with_its_numbers() {
        let v = judge(
            families(|i, seed| 30 + 30 * i + seed as usize),
            Experiment::TaskScaling,
        );
        assert_eq!(v.status, Status::Reproduced, "{}", v.sentence);
        assert_eq!(v.rank_correlation, Some(1.0));
        assert!(
            v.sentence.starts_with("Held-out-family accuracy went from 16.0% with 0 families to 61.0% with 32 families (mean of 3 seeds; difference +45.0 points, 95% interval +45.0 to +45.0 over seeds, +"),
            "{}",
            v.sentence
        );
        assert!(v.sentence.contains("over pooled items; rank correlation with the number of families +1.00 over 4 points): reproduced here."), "{}", v.sentence);
        assert_eq!(v.evidence[0].finding, Finding::Supports);
    }

    #[test]
    fn a_flat_curve_is_inconclusive_and_a_fall_is_not_reproduced() {
        let v = judge(
            families(|_, seed| 60 + seed as usize),
            Experiment::TaskScaling,
        );
        assert_eq!(v.status, Status::Inconclusive, "{}", v.sentence);
        assert!(
            v.sentence
                .ends_with("inconclusive here (difference within the interval)."),
            "{}",
            v.sentence
        );
        let v = judge(
            families(|i, seed| 150 - 30 * i + seed as usize),
            Experiment::TaskScaling,
        );
        assert_eq!(v.status, Status::NotReproduced, "{}", v.sentence);
        assert_eq!(v.rank_correlation, Some(-1.0));
        assert!(
            v.sentence.ends_with(": not reproduced here."),
            "{}",
            v.sentence
        );
    }

    #[test]
    fn end_points_that_rise_over_a_falling_middle_are_inconclusive() {
        let mut list = Vec::new();
        for (x, right) in [(0.0, 40), (1.0, 90), (2.0, 80), (4.0, 70), (8.0, 50)] {
            for seed in 1..=3 {
                list.push(point(
                    Experiment::TaskScaling,
                    "held_out_family",
                    X::Number(x),
                    seed,
                    200,
                    right,
                ));
            }
        }
        let v = judge(list, Experiment::TaskScaling);
        assert_eq!(v.evidence[0].finding, Finding::Supports);
        assert_eq!(v.status, Status::Inconclusive, "{}", v.sentence);
        assert!(
            v.sentence.contains(
                "the end points rise but the points between do not follow, rank correlation +0.00"
            ),
            "{}",
            v.sentence
        );
    }

    #[test]
    fn too_few_seeds_and_no_outcomes_leave_no_interval() {
        let mut list = families(|i, _| 40 + 40 * i);
        list.retain(|p| p.seed == 1);
        for p in &mut list {
            p.correct = None;
        }
        let v = judge(list, Experiment::TaskScaling);
        assert_eq!(v.status, Status::Inconclusive);
        assert_eq!(v.evidence[0].finding, Finding::NoInterval);
        assert!(
            v.sentence
                .contains("(mean of 1 seed, fewer than the 3 the replication asks for;"),
            "{}",
            v.sentence
        );
        assert!(v.sentence.contains("no interval (a cell with 1 seed, fewer than the 3 an interval over seeds needs; no per-item outcomes for held_out_family at x = 32, seed 1)"), "{}", v.sentence);
        assert!(
            v.sentence
                .ends_with("inconclusive here (no interval to decide with)."),
            "{}",
            v.sentence
        );
        // One x value: no curve.
        let one = families(|_, _| 50)
            .into_iter()
            .filter(|p| p.x == X::Number(8.0))
            .collect();
        let v = judge(one, Experiment::TaskScaling);
        assert_eq!(v.status, Status::Inconclusive);
        assert!(
            v.sentence
                .contains("only one value of the number of families was run (8 families)"),
            "{}",
            v.sentence
        );
        // Points of other series only: the claim's series is missing.
        let mut other = families(|_, _| 50);
        other
            .iter_mut()
            .for_each(|p| p.series = "seen_templates".into());
        let v = judge(other, Experiment::TaskScaling);
        assert!(
            v.sentence
                .contains("no points of the held_out_family series"),
            "{}",
            v.sentence
        );
        // No points at all: not run.
        let v = judge(Vec::new(), Experiment::SelfConsistency);
        assert_eq!(v.status, Status::NotRun);
        assert_eq!(v.sentence, "Self-consistency: not run (no points).");
    }

    fn sizes(tuned: [usize; 3], base: [usize; 3]) -> Vec<Point> {
        let mut list = Vec::new();
        for (i, x) in [1.0e6, 4.0e6, 16.0e6].into_iter().enumerate() {
            for seed in 1..=3 {
                let s = seed as usize;
                list.push(point(
                    Experiment::ModelScaling,
                    "not_finetuned",
                    X::Number(x),
                    seed,
                    200,
                    base[i] + s,
                ));
                list.push(point(
                    Experiment::ModelScaling,
                    "finetuned",
                    X::Number(x),
                    seed,
                    200,
                    tuned[i] + s,
                ));
            }
        }
        list
    }

    #[test]
    fn model_scaling_needs_a_gain_at_every_size_and_a_rising_curve() {
        let v = judge(sizes([60, 75, 90], [20, 25, 30]), Experiment::ModelScaling);
        assert_eq!(v.status, Status::Reproduced, "{}", v.sentence);
        assert_eq!(v.evidence.len(), 4);
        assert!(v.sentence.starts_with("Instruction finetuning changed held-out accuracy by +20.0 points at 1.0M parameters (95% interval +20.0 to +20.0 over seeds, "), "{}", v.sentence);
        assert!(v.sentence.contains("; the finetuned model went from 31.0% at 1.0M parameters to 46.0% at 16.0M parameters"), "{}", v.sentence);
        assert!(
            v.sentence.ends_with("(mean of 3 seeds): reproduced here."),
            "{}",
            v.sentence
        );
        // No gain at the middle size: inconclusive; a loss there: not reproduced.
        let v = judge(sizes([60, 60, 90], [20, 60, 30]), Experiment::ModelScaling);
        assert_eq!(v.status, Status::Inconclusive, "{}", v.sentence);
        assert!(
            v.sentence
                .ends_with("inconclusive here (difference within the interval)."),
            "{}",
            v.sentence
        );
        let v = judge(sizes([60, 40, 90], [20, 80, 30]), Experiment::ModelScaling);
        assert_eq!(v.status, Status::NotReproduced, "{}", v.sentence);
        // One size only: a gain, but no curve.
        let mut one = sizes([60, 75, 90], [20, 25, 30]);
        one.retain(|p| p.x == X::Number(1.0e6));
        let v = judge(one, Experiment::ModelScaling);
        assert_eq!(v.status, Status::Inconclusive, "{}", v.sentence);
        assert!(
            v.sentence.contains("only one model size was finetuned"),
            "{}",
            v.sentence
        );
    }

    fn mixture(cells: [[usize; 2]; 2]) -> Vec<Point> {
        let mut list = Vec::new();
        for (c, condition) in ["without_cot_data", "with_cot_data"].iter().enumerate() {
            for (m, mode) in ["direct", "cot"].iter().enumerate() {
                for seed in 1..=3 {
                    list.push(point(
                        Experiment::CotMixture,
                        mode,
                        X::Condition(condition.to_string()),
                        seed,
                        200,
                        cells[c][m] + seed as usize,
                    ));
                }
            }
        }
        list
    }

    #[test]
    fn cot_data_rules_follow_the_three_differences() {
        // [without: direct, cot], [with: direct, cot].
        let v = judge(mixture([[80, 20], [90, 100]]), Experiment::CotMixture);
        assert_eq!(v.status, Status::Reproduced, "{}", v.sentence);
        assert!(v.sentence.starts_with("Without CoT data in the mixture, CoT prompting scored 11.0% against 41.0% with direct prompting (difference -30.0 points"), "{}", v.sentence);
        // CoT as good as direct with CoT data is "kept".
        let v = judge(mixture([[80, 20], [90, 90]]), Experiment::CotMixture);
        assert_eq!(v.status, Status::Reproduced, "{}", v.sentence);
        // CoT helps even without CoT data: not what the paper found.
        let v = judge(mixture([[20, 80], [90, 100]]), Experiment::CotMixture);
        assert_eq!(v.status, Status::NotReproduced, "{}", v.sentence);
        // CoT still worse than direct with CoT data: not kept.
        let v = judge(mixture([[80, 20], [120, 60]]), Experiment::CotMixture);
        assert_eq!(v.status, Status::NotReproduced, "{}", v.sentence);
        // A cell missing: the comparison cannot be made.
        let mut partial = mixture([[80, 20], [90, 100]]);
        partial.retain(|p| !(p.series == "cot" && p.x == X::Condition("with_cot_data".into())));
        let v = judge(partial, Experiment::CotMixture);
        assert_eq!(v.status, Status::Inconclusive);
        assert!(
            v.sentence.contains("missing: CoT prompting with CoT data"),
            "{}",
            v.sentence
        );
    }

    #[test]
    fn zero_shot_cot_and_the_normalised_average_compare_two_conditions() {
        let mut list = Vec::new();
        for seed in 1..=3 {
            for (condition, right) in [("before_finetuning", 10), ("after_finetuning", 90)] {
                list.push(point(
                    Experiment::ZeroShotCot,
                    "zero_shot_cot",
                    X::Condition(condition.into()),
                    seed,
                    200,
                    right,
                ));
                list.push(point(
                    Experiment::ZeroShotCot,
                    "zero_shot_direct",
                    X::Condition(condition.into()),
                    seed,
                    200,
                    50,
                ));
            }
        }
        let v = judge(list, Experiment::ZeroShotCot);
        assert_eq!(v.status, Status::Reproduced, "{}", v.sentence);
        assert!(
            v.sentence
                .contains("accuracy went from 5.0% before finetuning to 45.0% after"),
            "{}",
            v.sentence
        );
        assert!(
            v.sentence
                .contains("; without the trigger: 25.0% before, 25.0% after): reproduced here."),
            "{}",
            v.sentence
        );

        let mut list = Vec::new();
        for seed in 1..=3 {
            for (condition, right) in [("not_finetuned", 40), ("finetuned", 140)] {
                for setting in ["held_out_family/direct", "seen_templates/direct"] {
                    list.push(point(
                        Experiment::NormalizedAverage,
                        setting,
                        X::Condition(condition.into()),
                        seed,
                        200,
                        right,
                    ));
                }
            }
        }
        let v = judge(list, Experiment::NormalizedAverage);
        assert_eq!(v.status, Status::Reproduced, "{}", v.sentence);
        // (0.2 − 0.2) / 0.8 = 0 and (0.7 − 0.2) / 0.8 = 62.5.
        assert!(v.sentence.contains("over 2 settings"), "{}", v.sentence);
        assert!(
            v.sentence
                .contains("went from 0.0 not finetuned to 62.5 finetuned"),
            "{}",
            v.sentence
        );
        assert!(
            v.sentence.contains("difference +62.5 points, 95% interval"),
            "{}",
            v.sentence
        );
    }

    #[test]
    fn self_consistency_starts_from_greedy_when_there_is_one() {
        let mut list = Vec::new();
        for seed in 1..=3 {
            list.push(point(
                Experiment::SelfConsistency,
                "greedy",
                X::Number(1.0),
                seed,
                200,
                100,
            ));
            for (k, right) in [(1.0, 60), (4.0, 110), (16.0, 140)] {
                list.push(point(
                    Experiment::SelfConsistency,
                    "self_consistency",
                    X::Number(k),
                    seed,
                    200,
                    right + seed as usize,
                ));
            }
        }
        let v = judge(list.clone(), Experiment::SelfConsistency);
        assert_eq!(v.status, Status::Reproduced, "{}", v.sentence);
        assert!(v.sentence.starts_with("Self-consistency accuracy went from 50.0% with greedy decoding to 71.0% with k = 16"), "{}", v.sentence);
        // More samples that lose to greedy decoding: not reproduced.
        for p in &mut list {
            if p.series == "greedy" {
                p.accuracy = 0.9;
                p.correct = Some((0..200).map(|i| i < 180).collect());
            }
        }
        let v = judge(list, Experiment::SelfConsistency);
        assert_eq!(v.status, Status::NotReproduced, "{}", v.sentence);
    }

    #[test]
    fn findings_follow_the_intervals() {
        let d = |intervals: &[[f64; 2]]| Difference {
            what: String::new(),
            value: 0.0,
            seed_interval: intervals.first().map(|&i| Interval::from(i)),
            seed_method: String::new(),
            item_interval: intervals.get(1).map(|&i| Interval::from(i)),
            item_method: String::new(),
        };
        assert_eq!(
            finding(&d(&[[0.1, 0.2], [0.05, 0.3]]), Claimed::Rise),
            Finding::Supports
        );
        assert_eq!(
            finding(&d(&[[0.1, 0.2], [-0.05, 0.3]]), Claimed::Rise),
            Finding::Within
        );
        assert_eq!(
            finding(&d(&[[-0.3, -0.1], [-0.05, 0.3]]), Claimed::Rise),
            Finding::Contradicts
        );
        assert_eq!(
            finding(&d(&[[-0.3, -0.1]]), Claimed::Fall),
            Finding::Supports
        );
        assert_eq!(
            finding(&d(&[[-0.3, 0.1]]), Claimed::NoFall),
            Finding::Supports
        );
        assert_eq!(
            finding(&d(&[[-0.3, -0.1]]), Claimed::NoFall),
            Finding::Contradicts
        );
        assert_eq!(finding(&d(&[]), Claimed::Rise), Finding::NoInterval);
    }

    /// Fisher–Yates with a small generator keyed by `seed`.
    fn shuffle<T>(list: &mut [T], seed: u64) {
        let mut state = seed | 1;
        for i in (1..list.len()).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = (state >> 33) as usize % (i + 1);
            list.swap(i, j);
        }
    }

    proptest! {
        // Each case judges all six experiments twice: fewer cases and resamples than usual keep
        // the unoptimised test build quick.
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// The verdict of every experiment depends on the points, not on the order they are
        /// recorded in: shuffling the points (and with them the order of seeds and x values)
        /// changes nothing, down to the sentence.
        #[test]
        fn verdicts_are_invariant_to_the_order_of_points_and_seeds(
            rights in proptest::collection::vec(0usize..=40, 24),
            seeds in proptest::collection::btree_set(0u64..100, 1..4),
            shuffle_seed in any::<u64>(),
        ) {
            let seeds: Vec<u64> = seeds.into_iter().collect();
            let mut list = Vec::new();
            let mut r = rights.iter().cycle();
            for (s, &seed) in seeds.iter().enumerate() {
                for x in [0.0, 1.0, 4.0, 16.0] {
                    list.push(point(Experiment::TaskScaling, "held_out_family", X::Number(x), seed, 40, *r.next().unwrap()));
                    list.push(point(Experiment::SelfConsistency, "self_consistency", X::Number(x + 1.0), seed, 40, *r.next().unwrap()));
                }
                for x in [1e6, 8e6] {
                    for series in ["finetuned", "not_finetuned"] {
                        list.push(point(Experiment::ModelScaling, series, X::Number(x), seed, 40, *r.next().unwrap()));
                    }
                }
                for condition in ["without_cot_data", "with_cot_data"] {
                    for series in ["direct", "cot"] {
                        let mut p = point(Experiment::CotMixture, series, X::Condition(condition.into()), seed, 40, *r.next().unwrap());
                        // Some cells without outcomes, some unpaired: every path of the rules.
                        if s == 1 && series == "cot" { p.correct = None; }
                        if series == "direct" { p.item_set = None; }
                        list.push(p);
                    }
                }
                for condition in ["not_finetuned", "finetuned"] {
                    for series in ["a", "b"] {
                        list.push(point(Experiment::NormalizedAverage, series, X::Condition(condition.into()), seed, 40, *r.next().unwrap()));
                    }
                    list.push(point(Experiment::ZeroShotCot, "zero_shot_cot", X::Condition(if condition == "finetuned" { "after_finetuning".into() } else { "before_finetuning".into() }), seed, 40, *r.next().unwrap()));
                }
            }
            let mut shuffled = list.clone();
            shuffle(&mut shuffled, shuffle_seed);
            let bootstrap = Bootstrap { seed: shuffle_seed, resamples: 200, level: 0.95 };
            for e in Experiment::ALL {
                let a = judge_with(list.clone(), e, &bootstrap);
                let b = judge_with(shuffled.clone(), e, &bootstrap);
                prop_assert_eq!(&a, &b);
                prop_assert_ne!(a.status, Status::NotRun);
                prop_assert!(a.sentence.ends_with('.'), "{}", a.sentence);
                prop_assert!(!a.sentence.contains("NaN"), "{}", a.sentence);
            }
        }
    }
}
