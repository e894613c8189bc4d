//! From points to cells and differences: each experiment's series at each x, aggregated over its
//! seeds, and any weighted combination of cells (a difference, a gain, an average) with its
//! intervals.
//!
//! A cell's estimate is the **mean over its seeds** of each seed's accuracy, and its spread is
//! the lowest and highest seed. Two intervals stand beside it, each named wherever it is shown:
//!
//! - **over seeds**: Student's t interval of the mean of the seeds' values (n − 1 degrees of
//!   freedom, clipped to [0, 1]), when the cell has at least [`MIN_SEEDS`] seeds. It measures how much a rerun
//!   with other seeds moves the result: training noise, and evaluation noise as far as the
//!   seeds evaluated different items.
//! - **over pooled items**: a percentile bootstrap ([`Bootstrap`]) over every seed's items
//!   together, when every seed recorded its per-item outcomes. Each item counts with weight
//!   1 / (seeds × that seed's items), so the pooled mean is exactly the mean over seeds. It
//!   measures how much other items of the same families would move the result.
//!
//! A combination `Σ w · cell` (for a difference, weights +1 and −1) gets the same two intervals:
//! over seeds **paired by seed** when every cell has the same seeds (each seed's combination is
//! one value, as one seed's runs share their data order and initialisation), otherwise over
//! **unpaired seeds** with Welch–Satterthwaite degrees of freedom; over items **paired by item**
//! when, seed by seed, every cell evaluated the same `item_set`, otherwise each cell's items
//! resampled on their own ([`Bootstrap::sum_of_means`]).
//!
//! Values may be taken on the accuracy scale or normalised against chance ([`Scale`]); the
//! normalisation is applied per seed with that seed's chance, and (being affine in accuracy)
//! per item with the same constants, so both intervals are of the normalised value.

use std::collections::BTreeMap;

use serde::Serialize;

use super::points::{Point, Points, X};
use super::stats::{mean_and_variance, mean_interval, t_interval};
use super::{Experiment, MIN_SEEDS};
use crate::interval::{Bootstrap, Interval};
use crate::Result;

/// One seed's measurement of a cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// Its accuracy, a fraction.
    pub accuracy: f64,
    /// Its items' mean chance baseline, a fraction.
    pub chance: f64,
    /// Its items.
    pub items: usize,
    /// Its per-item outcomes, when recorded.
    #[serde(skip)]
    pub correct: Option<Vec<bool>>,
    /// The name of its items, when recorded.
    #[serde(skip)]
    pub item_set: Option<String>,
}

/// One experiment's series at one x value, over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// The series.
    pub series: String,
    /// The x value.
    pub x: X,
    /// How the report names x, when the points say.
    pub x_label: Option<String>,
    /// Mean accuracy over the seeds, a fraction.
    pub accuracy: f64,
    /// Lowest and highest seed's accuracy.
    pub spread: Interval,
    /// Mean chance baseline over the seeds, a fraction.
    pub chance: f64,
    /// Items over all seeds.
    pub items: usize,
    /// The interval of the mean over seeds (Student t, clipped to [0, 1]), with at least
    /// [`MIN_SEEDS`] seeds.
    pub seed_interval: Option<Interval>,
    /// The pooled item bootstrap interval, when every seed has per-item outcomes.
    pub item_interval: Option<Interval>,
    /// Each seed, ascending.
    pub runs: Vec<SeedRun>,
}

impl Cell {
    /// The seeds, ascending.
    pub fn seeds(&self) -> Vec<u64> {
        self.runs.iter().map(|r| r.seed).collect()
    }

    /// The interval a figure draws: over seeds when there is one, else over items.
    pub fn interval(&self) -> Option<Interval> {
        self.seed_interval.or(self.item_interval)
    }
}

/// What the values of a combination are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Accuracy, a fraction.
    Accuracy,
    /// Accuracy normalised against chance, `(accuracy − chance) / (1 − chance)`: 0 at chance,
    /// 1 when every item is right (the paper's normalisation against random guessing, as a
    /// fraction; the report shows it × 100).
    Normalized,
}

impl Scale {
    fn apply(self, accuracy: f64, chance: f64) -> f64 {
        match self {
            Scale::Accuracy => accuracy,
            Scale::Normalized => (accuracy - chance) / (1.0 - chance),
        }
    }
}

/// A weighted cell of a combination.
#[derive(Debug, Clone, Copy)]
pub struct Term<'a> {
    /// The cell.
    pub cell: &'a Cell,
    /// Its weight (+1, −1 for a difference; 1/n for an average).
    pub weight: f64,
}

/// A combination of cells with its intervals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// What was combined, in words.
    pub what: String,
    /// The combination of the cells' means over seeds (on the [`Scale`] given).
    pub value: f64,
    /// Its interval over seeds, when every cell has at least [`MIN_SEEDS`] seeds.
    pub seed_interval: Option<Interval>,
    /// How that interval was computed, or why there is none.
    pub seed_method: String,
    /// Its pooled item bootstrap interval, when every seed of every cell has per-item outcomes.
    pub item_interval: Option<Interval>,
    /// How that interval was computed, or why there is none.
    pub item_method: String,
}

impl Difference {
    /// The intervals there are, over seeds first.
    pub fn intervals(&self) -> Vec<Interval> {
        self.seed_interval
            .into_iter()
            .chain(self.item_interval)
            .collect()
    }
}

/// The cells of one experiment, ordered by series (the experiment's own order; names for the
/// normalised average) and then x. Errors: invalid points ([`Points::validate`]) or bootstrap
/// settings.
pub fn cells(points: &Points, experiment: Experiment, bootstrap: &Bootstrap) -> Result<Vec<Cell>> {
    points.validate()?;
    let series_rank = |s: &str| {
        experiment
            .series()
            .and_then(|names| names.iter().position(|n| *n == s))
            .unwrap_or(usize::MAX)
    };
    let mut grouped: BTreeMap<(usize, String, OrderKey), Vec<&Point>> = BTreeMap::new();
    for p in points.points.iter().filter(|p| p.experiment == experiment) {
        let order = p.x.order(experiment).unwrap_or(f64::NAN);
        grouped
            .entry((series_rank(&p.series), p.series.clone(), OrderKey(order)))
            .or_default()
            .push(p);
    }
    let mut cells = Vec::with_capacity(grouped.len());
    for ((_, series, _), mut group) in grouped {
        group.sort_by_key(|p| p.seed);
        let runs: Vec<SeedRun> = group
            .iter()
            .map(|p| SeedRun {
                seed: p.seed,
                accuracy: p.accuracy,
                chance: p.chance,
                items: p.items,
                correct: p.correct.clone(),
                item_set: p.item_set.clone(),
            })
            .collect();
        let accuracies: Vec<f64> = runs.iter().map(|r| r.accuracy).collect();
        let (mean, _) = mean_and_variance(&accuracies);
        let min = accuracies.iter().copied().fold(f64::INFINITY, f64::min);
        let max = accuracies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut cell = Cell {
            series,
            x: group[0].x.clone(),
            x_label: group[0].x_label.clone(),
            accuracy: mean,
            spread: Interval {
                low: min,
                high: max,
            },
            chance: runs.iter().map(|r| r.chance).sum::<f64>() / runs.len() as f64,
            items: runs.iter().map(|r| r.items).sum(),
            seed_interval: None,
            item_interval: None,
            runs,
        };
        let own = combine(
            "",
            &[Term {
                cell: &cell,
                weight: 1.0,
            }],
            Scale::Accuracy,
            bootstrap,
        )?;
        // An accuracy lies in [0, 1]; a t interval of a few seeds can reach past either end.
        let clip = |i: Interval| Interval {
            low: i.low.max(0.0),
            high: i.high.min(1.0),
        };
        cell.seed_interval = own.seed_interval.map(clip);
        cell.item_interval = own.item_interval;
        cells.push(cell);
    }
    Ok(cells)
}

/// A total order of x values within an experiment (validated points have no NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderKey(f64);

impl Eq for OrderKey {}

impl PartialOrd for OrderKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// `Σ weight · cell` on `scale`, with its intervals over seeds and over items (see the module
/// documentation for which and how). Errors: no terms, a cell without seeds, or invalid
/// bootstrap settings.
pub fn combine(
    what: &str,
    terms: &[Term],
    scale: Scale,
    bootstrap: &Bootstrap,
) -> Result<Difference> {
    bootstrap.validate()?;
    if terms.is_empty() || terms.iter().any(|t| t.cell.runs.is_empty()) {
        return Err(crate::Error::Config(format!(
            "{what}: a combination needs at least one cell, each with at least one seed"
        )));
    }
    let per_seed: Vec<Vec<f64>> = terms
        .iter()
        .map(|t| {
            t.cell
                .runs
                .iter()
                .map(|r| scale.apply(r.accuracy, r.chance))
                .collect()
        })
        .collect();
    let value: f64 = terms
        .iter()
        .zip(&per_seed)
        .map(|(t, v)| t.weight * mean_and_variance(v).0)
        .sum();
    let (seed_interval, seed_method) = seed_interval(terms, &per_seed, bootstrap.level);
    let (item_interval, item_method) = item_interval(terms, scale, bootstrap)?;
    Ok(Difference {
        what: what.to_string(),
        value,
        seed_interval,
        seed_method,
        item_interval,
        item_method,
    })
}

fn seed_interval(terms: &[Term], per_seed: &[Vec<f64>], level: f64) -> (Option<Interval>, String) {
    let seeds: Vec<Vec<u64>> = terms.iter().map(|t| t.cell.seeds()).collect();
    let fewest = seeds.iter().map(Vec::len).min().unwrap_or(0);
    if fewest < MIN_SEEDS {
        let what = if terms.len() == 1 {
            format!("{fewest} seed{}", if fewest == 1 { "" } else { "s" })
        } else {
            format!(
                "a cell with {fewest} seed{}",
                if fewest == 1 { "" } else { "s" }
            )
        };
        return (
            None,
            format!("none: {what}, fewer than the {MIN_SEEDS} an interval over seeds needs"),
        );
    }
    if seeds.iter().all(|s| *s == seeds[0]) {
        let n = seeds[0].len();
        let combined: Vec<f64> = (0..n)
            .map(|i| {
                terms
                    .iter()
                    .zip(per_seed)
                    .map(|(t, v)| t.weight * v[i])
                    .sum()
            })
            .collect();
        let method = if terms.len() == 1 {
            format!("Student t over {n} seeds ({} df)", n - 1)
        } else {
            format!("paired by seed, Student t over {n} seeds ({} df)", n - 1)
        };
        return (mean_interval(&combined, level), method);
    }
    // Welch–Satterthwaite: the variance of Σ w·mean is Σ w²·s²/n, with the degrees of freedom
    // of that sum of scaled variances.
    let mut value = 0.0;
    let mut variance = 0.0;
    let mut denominator = 0.0;
    for (t, v) in terms.iter().zip(per_seed) {
        let (m, s2) = mean_and_variance(v);
        let n = v.len() as f64;
        let part = t.weight * t.weight * s2 / n;
        value += t.weight * m;
        variance += part;
        denominator += part * part / (n - 1.0);
    }
    let df = if denominator > 0.0 {
        variance * variance / denominator
    } else {
        f64::INFINITY
    };
    (
        t_interval(value, variance, df, level),
        format!("unpaired seeds, Welch–Satterthwaite t ({df:.1} df)"),
    )
}

fn item_interval(
    terms: &[Term],
    scale: Scale,
    bootstrap: &Bootstrap,
) -> Result<(Option<Interval>, String)> {
    let missing = terms
        .iter()
        .flat_map(|t| t.cell.runs.iter().map(move |r| (t, r)))
        .find(|(_, r)| r.correct.is_none());
    if let Some((t, r)) = missing {
        return Ok((
            None,
            format!(
                "none: no per-item outcomes for {} at x = {}, seed {}",
                t.cell.series, t.cell.x, r.seed
            ),
        ));
    }
    // Each item's value: weight · scale(correct, chance) · (pooled items / (seeds · its
    // seed's items)), so that the mean of the rows is the combination of means over seeds.
    let row = |t: &Term, r: &SeedRun, c: bool, pooled: usize| {
        let seeds = t.cell.runs.len() as f64;
        t.weight * scale.apply(f64::from(u8::from(c)), r.chance) * pooled as f64
            / (seeds * r.items as f64)
    };
    let seeds = terms[0].cell.seeds();
    let paired = terms.iter().all(|t| t.cell.seeds() == seeds)
        && (0..seeds.len()).all(|i| {
            let first = &terms[0].cell.runs[i];
            first.item_set.is_some()
                && terms.iter().all(|t| {
                    let r = &t.cell.runs[i];
                    r.item_set == first.item_set
                        && r.correct.as_ref().map(Vec::len) == first.correct.as_ref().map(Vec::len)
                })
        });
    if paired {
        let pooled: usize = terms[0].cell.runs.iter().map(|r| r.items).sum();
        let mut rows = vec![0.0; pooled];
        for t in terms {
            let mut at = 0;
            for r in &t.cell.runs {
                for &c in r.correct.as_deref().unwrap_or(&[]) {
                    rows[at] += row(t, r, c, pooled);
                    at += 1;
                }
            }
        }
        let e = bootstrap.mean(&rows)?;
        let method = if terms.len() == 1 {
            format!("bootstrap over {pooled} pooled items")
        } else {
            format!("paired by item, bootstrap over {pooled} pooled items")
        };
        return Ok((Some(e.interval), method));
    }
    let samples: Vec<Vec<f64>> = terms
        .iter()
        .map(|t| {
            let pooled: usize = t.cell.runs.iter().map(|r| r.items).sum();
            t.cell
                .runs
                .iter()
                .flat_map(|r| {
                    r.correct
                        .as_deref()
                        .unwrap_or(&[])
                        .iter()
                        .map(move |&c| row(t, r, c, pooled))
                })
                .collect()
        })
        .collect();
    let slices: Vec<&[f64]> = samples.iter().map(Vec::as_slice).collect();
    let e = bootstrap.sum_of_means(&slices)?;
    Ok((
        Some(e.interval),
        "unpaired items (different or unnamed item sets), each cell's pooled items resampled on their own"
            .to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run_point(x: f64, seed: u64, correct: &[bool], item_set: Option<&str>) -> Point {
        let right = correct.iter().filter(|&&c| c).count();
        Point {
            experiment: Experiment::TaskScaling,
            series: "held_out_family".into(),
            x: X::Number(x),
            x_label: None,
            seed,
            accuracy: right as f64 / correct.len() as f64,
            items: correct.len(),
            chance: 0.25,
            correct: Some(correct.to_vec()),
            item_set: item_set.map(str::to_string),
            seconds: None,
        }
    }

    fn points(list: Vec<Point>) -> Points {
        let p = Points {
            points: list,
            ..Points::new()
        };
        p.validate().unwrap();
        p
    }

    fn bits(n: usize, right: usize) -> Vec<bool> {
        (0..n).map(|i| i < right).collect()
    }

    #[test]
    fn a_cell_is_the_mean_of_its_seeds_with_both_intervals() {
        let p = points(vec![
            run_point(0.0, 3, &bits(10, 4), None),
            run_point(0.0, 1, &bits(10, 2), None),
            run_point(0.0, 2, &bits(20, 6), None),
        ]);
        let cells = cells(&p, Experiment::TaskScaling, &Bootstrap::default()).unwrap();
        assert_eq!(cells.len(), 1);
        let c = &cells[0];
        assert_eq!(c.seeds(), vec![1, 2, 3]);
        assert!((c.accuracy - 0.3).abs() < 1e-12);
        assert_eq!(c.spread, Interval::from([0.2, 0.4]));
        assert_eq!(c.items, 40);
        assert_eq!(c.chance, 0.25);
        // sd 0.1 over 3 seeds: ± 4.303 × 0.1 / sqrt(3) = ± 0.248.
        let s = c.seed_interval.unwrap();
        assert!((s.high - s.low - 2.0 * 0.2484).abs() < 1e-3, "{s:?}");
        // The pooled items weigh each seed equally: the interval sits around 0.3, not 12/40.
        let i = c.item_interval.unwrap();
        assert!(i.contains(0.3) && i.half_width() < 0.2, "{i:?}");
        assert_eq!(c.interval(), c.seed_interval);
    }

    #[test]
    fn fewer_than_three_seeds_give_no_interval_over_seeds_and_say_so() {
        let mut one = run_point(1.0, 1, &bits(8, 2), None);
        one.correct = None;
        let p = points(vec![one, run_point(1.0, 2, &bits(8, 4), None)]);
        let cells = cells(&p, Experiment::TaskScaling, &Bootstrap::default()).unwrap();
        let d = combine(
            "one cell",
            &[Term {
                cell: &cells[0],
                weight: 1.0,
            }],
            Scale::Accuracy,
            &Bootstrap::default(),
        )
        .unwrap();
        assert_eq!(d.seed_interval, None);
        assert!(
            d.seed_method.contains("2 seeds, fewer than the 3"),
            "{}",
            d.seed_method
        );
        assert_eq!(d.item_interval, None);
        assert!(
            d.item_method
                .contains("no per-item outcomes for held_out_family at x = 1, seed 1"),
            "{}",
            d.item_method
        );
        assert!(d.intervals().is_empty());
    }

    #[test]
    fn differences_pair_by_seed_and_item_when_they_can() {
        let set = Some("eval-A");
        let mut list = Vec::new();
        for seed in 1..=3 {
            list.push(run_point(0.0, seed, &bits(20, 4), set));
            list.push(run_point(8.0, seed, &bits(20, 4 + seed as usize), set));
        }
        let p = points(list);
        let b = Bootstrap::default();
        let c = cells(&p, Experiment::TaskScaling, &b).unwrap();
        let terms = [
            Term {
                cell: &c[1],
                weight: 1.0,
            },
            Term {
                cell: &c[0],
                weight: -1.0,
            },
        ];
        let d = combine("8 − 0", &terms, Scale::Accuracy, &b).unwrap();
        assert!((d.value - 0.1).abs() < 1e-12);
        assert!(
            d.seed_method.starts_with("paired by seed"),
            "{}",
            d.seed_method
        );
        assert!(
            d.item_method.starts_with("paired by item"),
            "{}",
            d.item_method
        );
        // Items 0..4 are right in both: the paired differences are 0 there, and the rise comes
        // from items 4..(4 + seed): every resample's difference is at least 0.
        let i = d.item_interval.unwrap();
        assert!(i.low >= 0.0 && i.contains(0.1), "{i:?}");
        // Seeds 0.05, 0.10, 0.15: t over 3 seeds.
        let s = d.seed_interval.unwrap();
        assert!(
            (s.low - (0.1 - 4.3027 * 0.05 / 3f64.sqrt())).abs() < 1e-3,
            "{s:?}"
        );

        // Other items, other seeds: unpaired both ways.
        let mut list = Vec::new();
        for seed in 1..=3 {
            list.push(run_point(0.0, seed, &bits(20, 4), Some("A")));
            list.push(run_point(8.0, seed + 10, &bits(20, 8), Some("B")));
        }
        let p = points(list);
        let c = cells(&p, Experiment::TaskScaling, &b).unwrap();
        let terms = [
            Term {
                cell: &c[1],
                weight: 1.0,
            },
            Term {
                cell: &c[0],
                weight: -1.0,
            },
        ];
        let d = combine("8 − 0", &terms, Scale::Accuracy, &b).unwrap();
        assert!(
            d.seed_method.starts_with("unpaired seeds"),
            "{}",
            d.seed_method
        );
        assert!(
            d.item_method.starts_with("unpaired items"),
            "{}",
            d.item_method
        );
        // No seed-to-seed variation: the interval over seeds is the point itself.
        assert_eq!(d.seed_interval, Some(Interval::from([0.2, 0.2])));
        assert!(d.item_interval.unwrap().contains(0.2));
    }

    #[test]
    fn normalisation_is_against_each_seed_s_chance() {
        let mut list = Vec::new();
        for (seed, chance) in [(1u64, 0.5), (2, 0.0), (3, 0.25)] {
            let mut p = run_point(0.0, seed, &bits(4, 3), None);
            p.chance = chance;
            list.push(p);
        }
        let p = points(list);
        let b = Bootstrap::default();
        let c = cells(&p, Experiment::TaskScaling, &b).unwrap();
        let d = combine(
            "normalised",
            &[Term {
                cell: &c[0],
                weight: 1.0,
            }],
            Scale::Normalized,
            &b,
        )
        .unwrap();
        // (0.75 − 0.5) / 0.5 = 0.5, 0.75, (0.75 − 0.25) / 0.75 = 2/3.
        assert!((d.value - (0.5 + 0.75 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!(d.item_interval.unwrap().contains(d.value));
    }

    #[test]
    fn invalid_input_is_an_error_not_a_panic() {
        let b = Bootstrap::default();
        let err = combine("nothing", &[], Scale::Accuracy, &b).unwrap_err();
        assert!(err
            .to_string()
            .contains("nothing: a combination needs at least one cell"));
        let mut bad = run_point(0.0, 1, &bits(4, 2), None);
        bad.items = 9;
        let list = Points {
            points: vec![bad],
            ..Points::new()
        };
        let err = cells(&list, Experiment::TaskScaling, &b).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected one outcome per item (9), found 4"),
            "{err}"
        );
    }

    proptest! {
        /// Cells do not depend on the order of the points, and every interval contains its
        /// estimate.
        #[test]
        fn cells_ignore_point_order_and_intervals_contain_estimates(
            runs in proptest::collection::vec((0u8..3, 1u64..6, 1usize..12, 0usize..12), 1..14),
            rotate in 0usize..14,
        ) {
            let mut seen = std::collections::BTreeSet::new();
            let list: Vec<Point> = runs
                .iter()
                .filter(|(x, seed, _, _)| seen.insert((*x, *seed)))
                .map(|&(x, seed, n, right)| run_point(f64::from(x), seed, &bits(n, right.min(n)), None))
                .collect();
            let mut rotated = list.clone();
            let k = rotate % rotated.len();
            rotated.rotate_left(k);
            rotated.reverse();
            let b = Bootstrap { seed: 5, resamples: 200, level: 0.9 };
            let a = cells(&points(list), Experiment::TaskScaling, &b).unwrap();
            let r = cells(&points(rotated), Experiment::TaskScaling, &b).unwrap();
            prop_assert_eq!(&a, &r);
            for c in &a {
                for i in c.seed_interval.iter().chain(&c.item_interval) {
                    prop_assert!(i.contains(c.accuracy), "{:?} {:?}", i, c);
                }
                prop_assert!(c.spread.contains(c.accuracy));
            }
        }
    }
}
