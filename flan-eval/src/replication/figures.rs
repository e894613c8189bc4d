//! The figures of the replication, one per experiment, drawn as the paper draws them with
//! [`crate::chart::error_chart`]: accuracy (%) against the number of finetuning families (a
//! log(1 + x) axis, so that 0 families fits), against parameters and against the number of
//! samples k (log axes), or across two conditions; each point the mean over seeds with an
//! error bar (its interval over seeds when there is one, else over pooled items) over a shaded
//! band (lowest to highest seed), and each series' chance baseline dashed in its colour.

use super::aggregate::{combine, Cell, Scale, Term};
use super::verdict::{average_at, parameters};
use super::{Experiment, XKind, MIN_SEEDS};
use crate::chart::{error_chart, ErrorChart, ErrorPoint, ErrorSeries, SeriesStyle, XScale};
use crate::interval::{Bootstrap, Interval};
use crate::Result;

/// The caption every figure carries: what the marks mean.
pub fn caption(bootstrap: &Bootstrap) -> String {
    format!(
        "Mean over seeds; bars: {:.0}% interval over seeds (t, {MIN_SEEDS}+ seeds), else over pooled items; \
         band: lowest to highest seed.",
        100.0 * bootstrap.level
    )
}

fn scaled(i: Interval) -> (f64, f64) {
    (100.0 * i.low, 100.0 * i.high)
}

/// The figure's x position of a cell: the number, or the condition's index.
fn position(experiment: Experiment, cell: &Cell) -> f64 {
    cell.x.order(experiment).unwrap_or(f64::NAN)
}

/// A cell as a point of the chart, in percent.
fn error_point(experiment: Experiment, cell: &Cell) -> ErrorPoint {
    ErrorPoint {
        x: position(experiment, cell),
        y: 100.0 * cell.accuracy,
        interval: cell.interval().map(scaled),
        spread: Some(scaled(cell.spread)),
    }
}

/// How a series is drawn: the one the claim is about emphasised, baselines grey, greedy
/// decoding (one value for every k) a reference line.
fn style(experiment: Experiment, series: &str) -> SeriesStyle {
    match series {
        "not_finetuned" | "zero_shot_direct" => SeriesStyle::Baseline,
        "greedy" => SeriesStyle::Reference,
        s if experiment != Experiment::CotMixture
            && experiment.series().and_then(|names| names.first()) == Some(&s) =>
        {
            SeriesStyle::Emphasis
        }
        _ => SeriesStyle::Normal,
    }
}

/// The series of `cells` in their order, each with its chance baseline.
fn accuracy_series(experiment: Experiment, cells: &[Cell]) -> Vec<ErrorSeries> {
    let mut series: Vec<ErrorSeries> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for cell in cells {
        let point = error_point(experiment, cell);
        let chance = (point.x, 100.0 * cell.chance);
        match names.iter().position(|n| *n == cell.series) {
            Some(i) => {
                series[i].points.push(point);
                series[i].chance.push(chance);
            }
            None => {
                names.push(&cell.series);
                series.push(ErrorSeries {
                    name: experiment.series_label(&cell.series),
                    style: style(experiment, &cell.series),
                    points: vec![point],
                    chance: vec![chance],
                });
            }
        }
    }
    series
}

/// The x ticks: every x value there is, named as the report names it.
fn ticks(experiment: Experiment, cells: &[Cell]) -> Vec<(f64, String)> {
    let mut ticks: Vec<(f64, String)> = Vec::new();
    for c in cells {
        let x = position(experiment, c);
        if ticks.iter().any(|(t, _)| *t == x) {
            continue;
        }
        let label = match (experiment.x_kind(), &c.x) {
            (XKind::Parameters, super::X::Number(n)) => match &c.x_label {
                Some(l) => format!("{l} ({})", parameters(*n)),
                None => parameters(*n),
            },
            (XKind::Condition(_), super::X::Condition(name)) => Experiment::condition_label(name),
            (_, x) => match &c.x_label {
                Some(l) => format!("{x} ({l})"),
                None => x.to_string(),
            },
        };
        ticks.push((x, label));
    }
    ticks.sort_by(|a, b| a.0.total_cmp(&b.0));
    ticks
}

/// The SVG of one experiment's figure (`cells` as [`super::aggregate::cells`] orders them).
pub fn figure(experiment: Experiment, cells: &[Cell], bootstrap: &Bootstrap) -> Result<String> {
    let (x_label, x_scale) = match experiment.x_kind() {
        XKind::Families => (
            "finetuning task families (log scale of 1 + families)",
            XScale::LogOnePlus,
        ),
        XKind::Parameters => ("model parameters (log scale)", XScale::Log),
        XKind::Samples => ("sampled rationales k (log scale)", XScale::Log),
        XKind::Condition(_) => ("", XScale::Linear),
    };
    let x_range = match experiment.x_kind() {
        XKind::Condition(_) => Some((-0.5, 1.5)),
        _ => None,
    };
    let (y_label, series) = if experiment == Experiment::NormalizedAverage {
        (
            "normalised score (0: chance, 100: all right)",
            normalized_series(cells, bootstrap)?,
        )
    } else {
        let y = match experiment {
            Experiment::TaskScaling => "accuracy (%)",
            Experiment::ModelScaling => "held-out accuracy (%)",
            _ => "accuracy (%), families with rationales",
        };
        (y, accuracy_series(experiment, cells))
    };
    Ok(error_chart(&ErrorChart {
        title: experiment.title().to_string(),
        caption: caption(bootstrap),
        x_label: x_label.to_string(),
        y_label: y_label.to_string(),
        x_scale,
        x_ticks: ticks(experiment, cells),
        x_range,
        series,
    }))
}

/// Each setting normalised against chance, and their equal-weight average with chance (0).
fn normalized_series(cells: &[Cell], bootstrap: &Bootstrap) -> Result<Vec<ErrorSeries>> {
    let e = Experiment::NormalizedAverage;
    let mut series: Vec<ErrorSeries> = Vec::new();
    for cell in cells {
        let d = combine(
            &cell.series,
            &[Term { cell, weight: 1.0 }],
            Scale::Normalized,
            bootstrap,
        )?;
        let normalised: Vec<f64> = cell
            .runs
            .iter()
            .map(|r| 100.0 * (r.accuracy - r.chance) / (1.0 - r.chance))
            .collect();
        let low = normalised.iter().copied().fold(f64::INFINITY, f64::min);
        let high = normalised.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let point = ErrorPoint {
            x: position(e, cell),
            y: 100.0 * d.value,
            interval: d.seed_interval.or(d.item_interval).map(scaled),
            spread: Some((low, high)),
        };
        match series.iter_mut().find(|s| s.name == cell.series) {
            Some(s) => s.points.push(point),
            None => series.push(ErrorSeries {
                name: cell.series.clone(),
                style: SeriesStyle::Normal,
                points: vec![point],
                chance: Vec::new(),
            }),
        }
    }
    let mut average = ErrorSeries {
        name: "normalised average".into(),
        style: SeriesStyle::Emphasis,
        points: Vec::new(),
        chance: Vec::new(),
    };
    if let XKind::Condition(conditions) = e.x_kind() {
        for (i, condition) in conditions.iter().enumerate() {
            let terms = average_at(cells, condition);
            if terms.is_empty() {
                continue;
            }
            let d = combine("average", &terms, Scale::Normalized, bootstrap)?;
            average.points.push(ErrorPoint {
                x: i as f64,
                y: 100.0 * d.value,
                interval: d.seed_interval.or(d.item_interval).map(scaled),
                spread: None,
            });
            average.chance.push((i as f64, 0.0));
        }
    }
    // The average first: the palette's first colours go to the line the claim is about.
    series.insert(0, average);
    Ok(series)
}
