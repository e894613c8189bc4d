//! Intervals of means by a seeded percentile bootstrap (Efron and Tibshirani, 1993, ch. 13).
//!
//! An evaluation cell of a few dozen items moves by several points from the luck of which items
//! were drawn, so a difference (accuracy over chance, after training over before) means
//! something only when it is larger than that. The bootstrap estimates the spread without
//! assuming a distribution: draw as many rows as there are, with replacement, take the mean, and
//! repeat; the middle `level` of those means is the interval. Several columns over the same rows
//! (an item's correctness before and after training, and its chance) are resampled together, so
//! paired differences stay paired.
//!
//! Every resampling comes from a [`ChaCha8Rng`] seeded with [`Bootstrap::seed`]: the same data
//! and settings give the same intervals.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How intervals are computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// Seed of the resampling.
    pub seed: u64,
    /// Resamples per interval.
    pub resamples: usize,
    /// Coverage of the interval, in (0, 1): 0.95 cuts 2.5% of the resampled means off each end.
    pub level: f64,
}

impl Default for Bootstrap {
    /// 1000 resamples, a 95% interval, seed 0.
    fn default() -> Self {
        Bootstrap {
            seed: 0,
            resamples: 1000,
            level: 0.95,
        }
    }
}

/// A two-sided interval `[low, high]`, written as a two-element JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "[f64; 2]", from = "[f64; 2]")]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl From<Interval> for [f64; 2] {
    fn from(i: Interval) -> Self {
        [i.low, i.high]
    }
}

impl From<[f64; 2]> for Interval {
    fn from([low, high]: [f64; 2]) -> Self {
        Interval { low, high }
    }
}

/// Differences closer to zero than this are zero: a mean of differences such as
/// `correct - 1/3` carries rounding error of this order, which must not read as a margin.
const ZERO: f64 = 1e-9;

impl Interval {
    /// Whether `value` lies in the interval (ends included, up to rounding).
    pub fn contains(&self, value: f64) -> bool {
        self.low - ZERO <= value && value <= self.high + ZERO
    }

    /// Where the interval of a difference lies relative to zero.
    pub fn side_of_zero(&self) -> Side {
        if self.low > ZERO {
            Side::Above
        } else if self.high < -ZERO {
            Side::Below
        } else {
            Side::Within
        }
    }

    /// The interval scaled by `factor` (fractions to percent: 100).
    pub fn scaled(&self, factor: f64) -> Interval {
        Interval {
            low: self.low * factor,
            high: self.high * factor,
        }
    }

    /// Half the width: the margin of error around the middle.
    pub fn half_width(&self) -> f64 {
        (self.high - self.low) / 2.0
    }
}

/// Where the interval of a difference lies relative to zero: whether the difference is larger
/// than the uncertainty of the evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The whole interval is above zero.
    Above,
    /// The whole interval is below zero.
    Below,
    /// The interval includes zero: the difference is within the uncertainty.
    Within,
}

/// A mean and its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The mean of the data.
    pub mean: f64,
    /// Its bootstrap interval.
    pub interval: Interval,
}

impl Bootstrap {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.resamples == 0 {
            return Err(Error::Config(
                "the bootstrap needs at least one resample".into(),
            ));
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(Error::Config(format!(
                "bootstrap interval level {} is not in (0, 1)",
                self.level
            )));
        }
        Ok(())
    }

    /// The mean of each column and its percentile interval. The columns are values of the same
    /// rows; every resample draws one set of rows for all of them, so statistics of different
    /// columns (and of their differences, given as a column) are paired.
    ///
    /// Errors: invalid settings, no rows, columns of different lengths, or a value that is not
    /// finite.
    pub fn means(&self, columns: &[&[f64]]) -> Result<Vec<Estimate>> {
        self.validate()?;
        let rows = columns.first().map_or(0, |c| c.len());
        if rows == 0 {
            return Err(Error::Config("a bootstrap needs at least one row".into()));
        }
        if let Some(c) = columns.iter().find(|c| c.len() != rows) {
            return Err(Error::Config(format!(
                "bootstrap columns differ in length ({} and {rows} rows)",
                c.len()
            )));
        }
        if columns.iter().any(|c| c.iter().any(|v| !v.is_finite())) {
            return Err(Error::Config(
                "a bootstrap value is not a finite number".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut replicates: Vec<Vec<f64>> = vec![Vec::with_capacity(self.resamples); columns.len()];
        let mut sums = vec![0.0; columns.len()];
        for _ in 0..self.resamples {
            sums.iter_mut().for_each(|s| *s = 0.0);
            for _ in 0..rows {
                let row = rng.gen_range(0..rows);
                for (sum, column) in sums.iter_mut().zip(columns) {
                    *sum += column[row];
                }
            }
            for (r, sum) in replicates.iter_mut().zip(&sums) {
                r.push(sum / rows as f64);
            }
        }
        let tail = (1.0 - self.level) / 2.0;
        Ok(columns
            .iter()
            .zip(replicates)
            .map(|(column, mut r)| {
                r.sort_by(f64::total_cmp);
                Estimate {
                    mean: column.iter().sum::<f64>() / rows as f64,
                    interval: Interval {
                        low: quantile(&r, tail),
                        high: quantile(&r, 1.0 - tail),
                    },
                }
            })
            .collect())
    }

    /// The mean of one column and its interval.
    pub fn mean(&self, values: &[f64]) -> Result<Estimate> {
        Ok(self.means(&[values])?[0])
    }

    /// The sum of the means of independent samples and its percentile interval: every resample
    /// draws each sample's rows on its own (as many as it has), so nothing is paired. This is
    /// the interval of a difference of accuracies measured on different items: give the
    /// subtracted sample's values negated. With one sample it is [`Bootstrap::mean`], resample
    /// for resample.
    ///
    /// Errors: invalid settings, no samples, an empty sample, or a value that is not finite.
    pub fn sum_of_means(&self, samples: &[&[f64]]) -> Result<Estimate> {
        self.validate()?;
        if samples.is_empty() || samples.iter().any(|s| s.is_empty()) {
            return Err(Error::Config(
                "a bootstrap needs at least one row in every sample".into(),
            ));
        }
        if samples.iter().any(|s| s.iter().any(|v| !v.is_finite())) {
            return Err(Error::Config(
                "a bootstrap value is not a finite number".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut sums = Vec::with_capacity(self.resamples);
        for _ in 0..self.resamples {
            let mut total = 0.0;
            for sample in samples {
                let mut sum = 0.0;
                for _ in 0..sample.len() {
                    sum += sample[rng.gen_range(0..sample.len())];
                }
                total += sum / sample.len() as f64;
            }
            sums.push(total);
        }
        sums.sort_by(f64::total_cmp);
        let tail = (1.0 - self.level) / 2.0;
        Ok(Estimate {
            mean: samples
                .iter()
                .map(|s| s.iter().sum::<f64>() / s.len() as f64)
                .sum(),
            interval: Interval {
                low: quantile(&sums, tail),
                high: quantile(&sums, 1.0 - tail),
            },
        })
    }
}

/// The `q` quantile of sorted `values` by nearest rank: the smallest value with at least a
/// share `q` of the values at or below it.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bits(correct: &[bool]) -> Vec<f64> {
        correct.iter().map(|&c| f64::from(u8::from(c))).collect()
    }

    #[test]
    fn all_correct_is_exactly_one_and_none_correct_exactly_zero() {
        let b = Bootstrap::default();
        let all = b.mean(&bits(&[true; 17])).unwrap();
        assert_eq!(all.mean, 1.0);
        assert_eq!(all.interval.scaled(100.0), Interval::from([100.0, 100.0]));
        let none = b.mean(&bits(&[false; 17])).unwrap();
        assert_eq!(none.interval, Interval::from([0.0, 0.0]));
    }

    #[test]
    fn a_coin_s_interval_matches_the_normal_approximation_and_narrows_with_more_items() {
        let b = Bootstrap::default();
        let half = |n: usize| bits(&(0..n).map(|i| i % 2 == 0).collect::<Vec<_>>());
        let small = b.mean(&half(40)).unwrap();
        let large = b.mean(&half(1000)).unwrap();
        // 1.96 * sqrt(0.25 / n): 0.155 for 40 items, 0.031 for 1000.
        assert!(
            (small.interval.half_width() - 0.155).abs() < 0.03,
            "{small:?}"
        );
        assert!(
            (large.interval.half_width() - 0.031).abs() < 0.006,
            "{large:?}"
        );
        assert!(small.interval.contains(0.5) && large.interval.contains(0.5));
    }

    #[test]
    fn paired_columns_share_their_resamples() {
        let before = bits(&[true, false, true, false, true, false, false, true]);
        let after = before.clone();
        let change: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let e = Bootstrap::default()
            .means(&[&after, &before, &change])
            .unwrap();
        assert_eq!(e[0].interval, e[1].interval);
        assert_eq!(e[2].interval, Interval::from([0.0, 0.0]));
        assert_eq!(e[2].interval.side_of_zero(), Side::Within);
    }

    #[test]
    fn bad_settings_and_data_are_errors() {
        let b = Bootstrap::default();
        assert!(b.mean(&[]).is_err());
        assert!(b.means(&[&[1.0, 0.0], &[1.0]]).is_err());
        assert!(b.mean(&[f64::NAN]).is_err());
        for bad in [
            Bootstrap { resamples: 0, ..b },
            Bootstrap { level: 1.0, ..b },
            Bootstrap { level: 0.0, ..b },
            Bootstrap {
                level: f64::NAN,
                ..b
            },
        ] {
            assert!(bad.mean(&[1.0]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sides_of_zero_allow_for_rounding() {
        assert_eq!(Interval::from([0.01, 0.2]).side_of_zero(), Side::Above);
        assert_eq!(Interval::from([-0.2, -0.01]).side_of_zero(), Side::Below);
        assert_eq!(Interval::from([-0.2, 0.01]).side_of_zero(), Side::Within);
        assert_eq!(Interval::from([1e-17, 0.2]).side_of_zero(), Side::Within);
        let json = serde_json::to_string(&Interval::from([0.25, 0.5])).unwrap();
        assert_eq!(json, "[0.25,0.5]");
    }

    #[test]
    fn independent_samples_are_resampled_apart() {
        let b = Bootstrap::default();
        // A constant difference of two constant samples is a point.
        let e = b.sum_of_means(&[&[0.75; 9], &[-0.25; 4]]).unwrap();
        assert_eq!(e.mean, 0.5);
        assert_eq!(e.interval, Interval::from([0.5, 0.5]));
        // Two coins of 200 items each: the unpaired difference is about sqrt(2) times as
        // uncertain as one coin (1.96 * sqrt(0.5 / 200) = 0.098).
        let coin = bits(&(0..200).map(|i| i % 2 == 0).collect::<Vec<_>>());
        let minus: Vec<f64> = coin.iter().map(|v| -v).collect();
        let d = b.sum_of_means(&[&coin, &minus]).unwrap();
        assert!(d.mean.abs() < 1e-12);
        assert!((d.interval.half_width() - 0.098).abs() < 0.02, "{d:?}");
        assert_eq!(d.interval.side_of_zero(), Side::Within);
        assert!(b.sum_of_means(&[]).is_err());
        assert!(b.sum_of_means(&[&coin, &[]]).is_err());
        assert!(b.sum_of_means(&[&[f64::INFINITY]]).is_err());
    }

    proptest! {
        /// One sample alone gives exactly the interval of its mean.
        #[test]
        fn a_sum_of_one_mean_is_the_mean(
            values in proptest::collection::vec(-1.0f64..1.0, 1..60),
            seed in any::<u64>(),
        ) {
            let b = Bootstrap { seed, resamples: 100, level: 0.9 };
            prop_assert_eq!(b.sum_of_means(&[&values]).unwrap(), b.mean(&values).unwrap());
        }

        /// For 0/1 data with both values present the interval is proper, lies in [0, 1] and
        /// contains the mean.
        #[test]
        fn the_interval_of_an_accuracy_contains_it(
            correct in proptest::collection::vec(any::<bool>(), 2..200),
            seed in any::<u64>(),
        ) {
            prop_assume!(correct.iter().any(|&c| c) && correct.iter().any(|&c| !c));
            let b = Bootstrap { seed, ..Bootstrap::default() };
            let e = b.mean(&bits(&correct)).unwrap();
            prop_assert!(e.interval.contains(e.mean), "{:?}", e);
            prop_assert!(0.0 <= e.interval.low && e.interval.low <= e.interval.high);
            prop_assert!(e.interval.high <= 1.0);
        }

        /// The same for differences such as correctness minus chance, which take any value in
        /// [-1, 1].
        #[test]
        fn the_interval_of_a_margin_contains_it(
            rows in proptest::collection::vec((any::<bool>(), 1usize..8), 2..150),
            seed in any::<u64>(),
        ) {
            let margin: Vec<f64> = rows
                .iter()
                .map(|&(c, k)| f64::from(u8::from(c)) - 1.0 / k as f64)
                .collect();
            prop_assume!(margin.iter().any(|&m| m != margin[0]));
            let b = Bootstrap { seed, ..Bootstrap::default() };
            let e = b.mean(&margin).unwrap();
            prop_assert!(e.interval.contains(e.mean), "{:?}", e);
        }

        /// Constant data has the constant as both ends, whatever the seed.
        #[test]
        fn constant_data_has_a_point_interval(
            value in -1.0f64..1.0,
            n in 1usize..100,
            seed in any::<u64>(),
        ) {
            let b = Bootstrap { seed, resamples: 50, level: 0.9 };
            let e = b.mean(&vec![value; n]).unwrap();
            prop_assert!((e.interval.low - value).abs() < 1e-12);
            prop_assert!((e.interval.high - value).abs() < 1e-12);
        }

        /// The same seed gives the same intervals.
        #[test]
        fn intervals_are_deterministic_for_a_seed(
            correct in proptest::collection::vec(any::<bool>(), 1..100),
            seed in any::<u64>(),
        ) {
            let b = Bootstrap { seed, resamples: 200, level: 0.95 };
            let data = bits(&correct);
            prop_assert_eq!(b.mean(&data).unwrap(), b.mean(&data).unwrap());
        }
    }
}
