//! The statistics over seeds: Student's t quantiles (for intervals of a mean of a few seeds,
//! where the normal approximation is far too narrow: with 3 seeds the 95% factor is 4.30, not
//! 1.96), the Welch–Satterthwaite degrees of freedom of a combination of independent means,
//! and Spearman's rank correlation (the trend check of a scaling curve).

use crate::interval::Interval;

/// ln Γ(x) for x > 0 by the Lanczos approximation (g = 7, 9 terms; relative error below
/// 1e-13 in the range used here).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |acc, (i, c)| acc + c / (x + 1.0 + i as f64));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The continued fraction of the incomplete beta function (modified Lentz's method).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularised incomplete beta function I_x(a, b).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// P(T > t) for Student's t with `df` degrees of freedom, t >= 0.
fn upper_tail(t: f64, df: f64) -> f64 {
    0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// The `p` quantile of Student's t with `df` degrees of freedom, for p in [0.5, 1) and df > 0
/// (by bisection on the distribution function; accurate to about 1e-10). Returns NaN outside
/// that domain.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !((0.5..1.0).contains(&p) && df.is_finite() && df > 0.0) {
        return f64::NAN;
    }
    let tail = 1.0 - p;
    let mut high = 1.0;
    while upper_tail(high, df) > tail {
        high *= 2.0;
        if high > 1e12 {
            return f64::NAN;
        }
    }
    let mut low = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if upper_tail(mid, df) > tail {
            low = mid;
        } else {
            high = mid;
        }
        if high - low < 1e-12 * high.max(1.0) {
            break;
        }
    }
    0.5 * (low + high)
}

/// Mean and sample variance (n − 1 in the denominator; 0 for one value).
pub fn mean_and_variance(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    // Equal values have no spread, exactly (their sum divided by n may round off them).
    if values.iter().all(|&v| v == values[0]) {
        return (values[0], 0.0);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

/// The interval `estimate ± t(df) · sqrt(variance_of_estimate)` at coverage `level`; a point when
/// the variance is 0. `None` when the degrees of freedom or the inputs are not usable.
pub fn t_interval(
    estimate: f64,
    variance_of_estimate: f64,
    df: f64,
    level: f64,
) -> Option<Interval> {
    if !(estimate.is_finite() && variance_of_estimate.is_finite() && variance_of_estimate >= 0.0) {
        return None;
    }
    if variance_of_estimate == 0.0 {
        return Some(Interval {
            low: estimate,
            high: estimate,
        });
    }
    let t = t_quantile(0.5 + level / 2.0, df);
    if !t.is_finite() {
        return None;
    }
    let half = t * variance_of_estimate.sqrt();
    Some(Interval {
        low: estimate - half,
        high: estimate + half,
    })
}

/// The interval of the mean of `values` (one per seed) at coverage `level`: Student's t with
/// n − 1 degrees of freedom. `None` for fewer than two values.
pub fn mean_interval(values: &[f64], level: f64) -> Option<Interval> {
    if values.len() < 2 {
        return None;
    }
    let (mean, var) = mean_and_variance(values);
    t_interval(
        mean,
        var / values.len() as f64,
        (values.len() - 1) as f64,
        level,
    )
}

/// Ranks from 1, ties sharing the mean of their ranks.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rank correlation of `(x, y)` pairs (the Pearson correlation of their ranks, ties
/// averaged), in [-1, 1]. 0 when either coordinate does not vary (no trend can be seen) or
/// there are fewer than two pairs.
pub fn spearman(pairs: &[(f64, f64)]) -> f64 {
    if pairs.len() < 2 {
        return 0.0;
    }
    let rx = ranks(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let ry = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    let (mx, vx) = mean_and_variance(&rx);
    let (my, vy) = mean_and_variance(&ry);
    if vx == 0.0 || vy == 0.0 {
        return 0.0;
    }
    let n = pairs.len() as f64;
    let cov = rx
        .iter()
        .zip(&ry)
        .map(|(a, b)| (a - mx) * (b - my))
        .sum::<f64>()
        / (n - 1.0);
    (cov / (vx * vy).sqrt()).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95% (p = 0.975) and 90% (p = 0.95) critical values.
        for (p, df, expected) in [
            (0.975, 1.0, 12.7062),
            (0.975, 2.0, 4.3027),
            (0.975, 3.0, 3.1824),
            (0.975, 4.0, 2.7764),
            (0.975, 9.0, 2.2622),
            (0.975, 30.0, 2.0423),
            (0.975, 1000.0, 1.9623),
            (0.95, 2.0, 2.9200),
            (0.95, 5.0, 2.0150),
            (0.995, 4.0, 4.6041),
            (0.975, 2.5, 3.5747),
        ] {
            let t = t_quantile(p, df);
            assert!(
                (t - expected).abs() < 2e-4,
                "t({p}, {df}) = {t}, not {expected}"
            );
        }
        assert!(t_quantile(0.5, 3.0).abs() < 1e-9);
        assert!(t_quantile(1.0, 3.0).is_nan());
        assert!(t_quantile(0.975, 0.0).is_nan());
        assert!(t_quantile(0.975, f64::NAN).is_nan());
    }

    #[test]
    fn a_mean_of_three_seeds_has_a_wide_interval() {
        let i = mean_interval(&[0.30, 0.35, 0.40], 0.95).unwrap();
        // sd 0.05, se 0.0289, t(0.975, 2) = 4.303: ± 0.124.
        assert!((i.low - (0.35 - 0.1242)).abs() < 1e-3, "{i:?}");
        assert!((i.high - (0.35 + 0.1242)).abs() < 1e-3, "{i:?}");
        assert_eq!(
            mean_interval(&[0.3, 0.3, 0.3], 0.95).unwrap(),
            Interval::from([0.3, 0.3])
        );
        assert_eq!(mean_interval(&[0.3], 0.95), None);
        assert_eq!(t_interval(f64::NAN, 1.0, 3.0, 0.95), None);
    }

    #[test]
    fn spearman_sees_monotone_trends_and_ignores_scale() {
        let rising = [(0.0, 0.1), (1.0, 0.2), (2.0, 0.25), (4.0, 0.9)];
        assert_eq!(spearman(&rising), 1.0);
        let falling: Vec<(f64, f64)> = rising.iter().map(|&(x, y)| (x, -y)).collect();
        assert_eq!(spearman(&falling), -1.0);
        assert_eq!(spearman(&[(0.0, 0.5), (1.0, 0.5), (2.0, 0.5)]), 0.0);
        assert_eq!(spearman(&[(0.0, 0.5)]), 0.0);
        // Ties share their ranks: 1, 2.5, 2.5, 4 against 1, 2, 3, 4.
        let r = spearman(&[(0.0, 0.1), (1.0, 0.3), (2.0, 0.3), (3.0, 0.4)]);
        assert!((r - 0.9487).abs() < 1e-4, "{r}");
    }

    proptest! {
        /// The quantile inverts the distribution function.
        #[test]
        fn the_quantile_inverts_the_tail(p in 0.55f64..0.999, df in 1.0f64..200.0) {
            let t = t_quantile(p, df);
            prop_assert!((upper_tail(t, df) - (1.0 - p)).abs() < 1e-9);
        }

        /// Spearman's correlation is in [-1, 1], symmetric under swapping the coordinates, and
        /// does not depend on the order of the pairs.
        #[test]
        fn spearman_is_a_correlation(
            pairs in proptest::collection::vec((0u8..10, 0u8..10), 0..12),
            rotate in 0usize..12,
        ) {
            let pairs: Vec<(f64, f64)> = pairs.iter().map(|&(a, b)| (f64::from(a), f64::from(b))).collect();
            let r = spearman(&pairs);
            prop_assert!((-1.0..=1.0).contains(&r));
            let swapped: Vec<(f64, f64)> = pairs.iter().map(|&(a, b)| (b, a)).collect();
            prop_assert!((spearman(&swapped) - r).abs() < 1e-12);
            let mut rotated = pairs.clone();
            if !rotated.is_empty() {
                let k = rotate % rotated.len();
                rotated.rotate_left(k);
            }
            prop_assert!((spearman(&rotated) - r).abs() < 1e-12);
        }
    }
}
