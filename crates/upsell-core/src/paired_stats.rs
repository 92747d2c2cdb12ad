//! Statistics of paired comparisons that the agent evaluator reports (pure functions, no I/O;
//! the shared distribution functions and drift tests are in [`crate::stats`]).
//!
//! - [`wilson`]: 95% interval of a proportion (Wilson score interval; sound near 0 and 1 and
//!   for small samples, unlike the Wald interval).
//! - [`mean_t`]: mean with its Student-t 95% interval.
//! - [`mcnemar_exact`]: exact McNemar test of paired yes/no outcomes (two-sided binomial test
//!   on the discordant pairs).
//! - [`paired_bootstrap`]: percentile 95% interval and two-sided p-value of a mean paired
//!   difference, by resampling pairs with a fixed seed (the same data give the same answer).
//! - [`percentile`]: nearest-rank percentile (latency p95).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// A two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Interval {
    /// Whether `x` lies inside (bounds included).
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// Wilson score interval of `successes` out of `n` at `z` (use [`Z_95`]); `[0, 1]` when `n` is 0.
pub fn wilson(successes: u64, n: u64, z: f64) -> Interval {
    let (low, high) = crate::stats::wilson_interval(successes, n, z);
    Interval { low, high }
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (two-sided 95%): exact table
/// values for 1..=30, the Cornish-Fisher expansion above (error < 1e-4).
pub fn t_975(df: u64) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df as usize - 1],
        _ => {
            let z = Z_95;
            let n = df as f64;
            z + (z.powi(3) + z) / (4.0 * n)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
                + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z)
                    / (384.0 * n * n * n)
        }
    }
}

/// Mean of `values` with its 95% Student-t interval (`None` when empty; a zero-width interval
/// for a single value or no spread).
pub fn mean_t(values: &[f64]) -> Option<(f64, Interval)> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Some((
            mean,
            Interval {
                low: mean,
                high: mean,
            },
        ));
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t_975(n as u64 - 1) * (var / n as f64).sqrt();
    Some((
        mean,
        Interval {
            low: mean - half,
            high: mean + half,
        },
    ))
}

/// Exact McNemar test: `b` pairs where only the first approved, `c` where only the second did.
/// Two-sided p-value of the binomial test of `min(b, c)` in `b + c` trials with p = 1/2
/// (1.0 when there are no discordant pairs).
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) with X ~ Binomial(n, 1/2), summed in log space (0.5^n underflows past ~1074).
    let mut log_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut tail = 0.0;
    for i in 0..=k {
        tail += log_pmf.exp();
        log_pmf += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    (2.0 * tail).min(1.0)
}

/// Result of a paired bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrap {
    /// Mean of the observed differences.
    pub estimate: f64,
    /// Percentile 95% interval of the resampled means.
    pub interval: Interval,
    /// Two-sided p-value: twice the smaller share of resampled means on either side of 0
    /// (capped at 1).
    pub p_value: f64,
    /// Resamples drawn.
    pub resamples: u32,
    /// The seed.
    pub seed: u64,
}

/// Paired bootstrap of the mean of `diffs` (one difference per pair): `resamples` resamples
/// of the pairs with replacement, from a ChaCha8 generator seeded with `seed`. `None` when
/// `diffs` is empty.
pub fn paired_bootstrap(diffs: &[f64], resamples: u32, seed: u64) -> Option<Bootstrap> {
    let n = diffs.len();
    if n == 0 || resamples == 0 {
        return None;
    }
    let estimate = diffs.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| diffs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * resamples as f64).floor() as usize).min(means.len() - 1)];
    let below = means.iter().filter(|m| **m <= 0.0).count() as f64;
    let above = means.iter().filter(|m| **m >= 0.0).count() as f64;
    let p_value = (2.0 * below.min(above) / resamples as f64).min(1.0);
    Some(Bootstrap {
        estimate,
        interval: Interval {
            low: at(0.025),
            high: at(0.975),
        },
        p_value,
        resamples,
        seed,
    })
}

/// Nearest-rank percentile `p` (0..=100) of `values` (`None` when empty).
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// Cohen's kappa of two raters' yes/no decisions given as (both yes, first only, second only,
/// both no); `None` when undefined (no pairs, or both raters constant and equal).
pub fn cohens_kappa(yy: u64, yn: u64, ny: u64, nn: u64) -> Option<f64> {
    let n = (yy + yn + ny + nn) as f64;
    if n == 0.0 {
        return None;
    }
    let observed = (yy + nn) as f64 / n;
    let first_yes = (yy + yn) as f64 / n;
    let second_yes = (yy + ny) as f64 / n;
    let expected = first_yes * second_yes + (1.0 - first_yes) * (1.0 - second_yes);
    if (1.0 - expected).abs() < 1e-12 {
        return None;
    }
    Some((observed - expected) / (1.0 - expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_matches_textbook_values() {
        // Newcombe (1998), Table I: 81/263 -> 0.2553 .. 0.3662; 15/148 -> 0.0624 .. 0.1605.
        let i = wilson(81, 263, Z_95);
        assert!(
            close(i.low, 0.2553, 5e-4) && close(i.high, 0.3662, 5e-4),
            "{i:?}"
        );
        let i = wilson(15, 148, Z_95);
        assert!(
            close(i.low, 0.0624, 5e-4) && close(i.high, 0.1605, 5e-4),
            "{i:?}"
        );
        // 0 of 10: the lower bound is 0 and the upper 0.2775 (not the Wald interval's 0).
        let i = wilson(0, 10, Z_95);
        assert_eq!(i.low, 0.0);
        assert!(close(i.high, 0.2775, 5e-4), "{i:?}");
        assert_eq!(
            wilson(0, 0, Z_95),
            Interval {
                low: 0.0,
                high: 1.0
            }
        );
    }

    #[test]
    fn t_quantiles_and_mean_interval() {
        assert_eq!(t_975(1), 12.706);
        assert_eq!(t_975(30), 2.042);
        // Table values: df 40 -> 2.021, 60 -> 2.000, 120 -> 1.980.
        assert!(close(t_975(40), 2.021, 1e-3));
        assert!(close(t_975(60), 2.000, 1e-3));
        assert!(close(t_975(120), 1.980, 1e-3));
        // By hand: 2, 4, 4, 4, 5, 5, 7, 9 -> mean 5, s^2 = 32/7, half = 2.365 * sqrt(32/56).
        let (m, i) = mean_t(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(m, 5.0);
        let half = 2.365 * (32.0f64 / 7.0 / 8.0).sqrt();
        assert!(close(i.low, 5.0 - half, 1e-12) && close(i.high, 5.0 + half, 1e-12));
        assert_eq!(mean_t(&[]), None);
        assert_eq!(
            mean_t(&[3.0]).unwrap().1,
            Interval {
                low: 3.0,
                high: 3.0
            }
        );
    }

    #[test]
    fn exact_mcnemar_matches_the_binomial_test() {
        // b=1, c=9: 2 * (1 + 10) / 1024 = 0.021484375.
        assert!(close(mcnemar_exact(1, 9), 22.0 / 1024.0, 1e-12));
        assert!(close(mcnemar_exact(9, 1), 22.0 / 1024.0, 1e-12));
        // b=0, c=5: 2 / 32.
        assert!(close(mcnemar_exact(0, 5), 0.0625, 1e-12));
        // Balanced discordance is no evidence at all.
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large n stays finite (no underflow): 600 vs 400 is significant, 510 vs 490 is not.
        let p = mcnemar_exact(600, 400);
        assert!(p > 0.0 && p < 1e-9, "{p}");
        let p = mcnemar_exact(510, 490);
        assert!(p > 0.5 && p < 0.6, "{p}");
    }

    #[test]
    fn paired_bootstrap_is_seeded_and_sensible() {
        let diffs: Vec<f64> = (0..200)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        let a = paired_bootstrap(&diffs, 4000, 7).unwrap();
        let b = paired_bootstrap(&diffs, 4000, 7).unwrap();
        assert_eq!(a, b, "the same seed gives the same answer");
        assert_eq!(a.estimate, 0.25);
        // The normal approximation: 0.25 +- 1.96 * sqrt(0.25 * 0.75 / 200) = 0.190 .. 0.310.
        assert!(close(a.interval.low, 0.190, 0.015), "{a:?}");
        assert!(close(a.interval.high, 0.310, 0.015), "{a:?}");
        assert_eq!(a.p_value, 0.0);
        // Identical versions: every difference 0, the interval is [0, 0] and p = 1.
        let z = paired_bootstrap(&[0.0; 50], 1000, 1).unwrap();
        assert_eq!(
            z.interval,
            Interval {
                low: 0.0,
                high: 0.0
            }
        );
        assert_eq!(z.p_value, 1.0);
        // Symmetric noise around 0: not significant.
        let noise: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        assert!(paired_bootstrap(&noise, 2000, 3).unwrap().p_value > 0.5);
        assert_eq!(paired_bootstrap(&[], 10, 1), None);
    }

    #[test]
    fn percentiles_and_kappa() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&[], 95.0), None);
        // Cohen (1960)-style example: 20 yy, 5 yn, 10 ny, 15 nn -> po 0.7, pe 0.5, kappa 0.4.
        assert!(close(cohens_kappa(20, 5, 10, 15).unwrap(), 0.4, 1e-12));
        assert_eq!(cohens_kappa(10, 0, 0, 0), None);
    }
}
