//! The few statistical tests and distribution functions drift detection needs, written out
//! because no small, maintained crate with them is available here: chi-square homogeneity with
//! sparse-bin merging, the two-sample Kolmogorov–Smirnov test (exact and asymptotic), the
//! two-proportion z-test, Welch's t-test, effect sizes (PSI, Jensen–Shannon, Wasserstein), Holm's
//! step-down correction, alpha spending over repeated looks and the Wilson score interval.
//!
//! Pure functions: no I/O, no clock, no randomness. Each function is checked against textbook or
//! reference-implementation values in the tests below.

use std::f64::consts::PI;

/// Natural log of the gamma function (Lanczos, g = 7, n = 9; relative error below 1e-14).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
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
        // Reflection: Γ(x)Γ(1-x) = π / sin(πx).
        return (PI / (PI * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < a + 1.0 {
        1.0 - gamma_p_series(a, x)
    } else {
        gamma_q_fraction(a, x)
    }
}

fn gamma_p_series(a: f64, x: f64) -> f64 {
    let mut sum = 1.0 / a;
    let mut term = sum;
    let mut ap = a;
    for _ in 0..10_000 {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if term.abs() < sum.abs() * 1e-16 {
            break;
        }
    }
    (sum.ln() - x + a * x.ln() - ln_gamma(a)).exp()
}

fn gamma_q_fraction(a: f64, x: f64) -> f64 {
    // Modified Lentz evaluation of the continued fraction (Numerical Recipes, gcf).
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..10_000 {
        let an = -f64::from(i) * (f64::from(i) - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    ((-x + a * x.ln() - ln_gamma(a)).exp() * h).clamp(0.0, 1.0)
}

/// Survival function of the chi-square distribution with `df` degrees of freedom: P(X ≥ x).
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, x / 2.0)
}

/// Complementary error function (via Q(1/2, x²) for x ≥ 0).
pub fn erfc(x: f64) -> f64 {
    if x >= 0.0 {
        gamma_q(0.5, x * x)
    } else {
        2.0 - gamma_q(0.5, x * x)
    }
}

/// Survival function of the standard normal distribution: P(Z ≥ z).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Regularized incomplete beta function I_x(a, b).
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
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

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    // Modified Lentz (Numerical Recipes, betacf).
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..10_000 {
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
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// Two-sided p-value of Student's t distribution with `df` degrees of freedom: P(|T| ≥ |t|).
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    beta_inc(df / 2.0, 0.5, df / (df + t * t))
}

/// Kolmogorov distribution survival function: P(K ≥ λ) = 2 Σ (-1)^(k-1) exp(-2k²λ²).
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.18 {
        // The theta-function form converges fast for small λ: P(K ≤ λ) = √(2π)/λ Σ e^{-(2k-1)²π²/(8λ²)}.
        let mut cdf = 0.0;
        for k in 1..=20 {
            let k = f64::from(2 * k - 1);
            cdf += (-(k * k) * PI * PI / (8.0 * lambda * lambda)).exp();
        }
        (1.0 - (2.0 * PI).sqrt() / lambda * cdf).clamp(0.0, 1.0)
    } else {
        let mut sf = 0.0;
        for k in 1..=100 {
            let k = f64::from(k);
            let term = (-2.0 * k * k * lambda * lambda).exp();
            sf += if k as u32 % 2 == 1 { term } else { -term };
            if term < 1e-18 {
                break;
            }
        }
        (2.0 * sf).clamp(0.0, 1.0)
    }
}

/// Result of one hypothesis test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestOutcome {
    /// The test statistic.
    pub statistic: f64,
    /// Its p-value.
    pub p_value: f64,
    /// Degrees of freedom, where the test has them.
    pub df: Option<f64>,
}

/// A chi-square test of homogeneity on a 2×k table after merging sparse bins, with the bins it
/// finally used.
#[derive(Debug, Clone, PartialEq)]
pub struct ChiSquare {
    /// The test (df = bins - 1); `None` when fewer than two bins are left.
    pub test: Option<TestOutcome>,
    /// Number of bins after merging.
    pub bins: usize,
    /// Names of the categories merged into one bin.
    pub merged: Vec<String>,
}

/// Minimum expected count per cell for the chi-square approximation (Cochran's rule).
pub const MIN_EXPECTED: f64 = 5.0;

/// Chi-square test of homogeneity between `baseline` and `current` counts of the same
/// categories (`(name, baseline count, current count)`). Categories whose expected count is
/// below [`MIN_EXPECTED`] in either row are merged into one bin; if that bin is still sparse it
/// joins the smallest remaining bin. Empty categories are ignored.
pub fn chi_square_homogeneity(cells: &[(String, u64, u64)]) -> ChiSquare {
    let cells: Vec<&(String, u64, u64)> = cells.iter().filter(|c| c.1 + c.2 > 0).collect();
    let nb: u64 = cells.iter().map(|c| c.1).sum();
    let nc: u64 = cells.iter().map(|c| c.2).sum();
    let n = (nb + nc) as f64;
    if nb == 0 || nc == 0 {
        return ChiSquare {
            test: None,
            bins: 0,
            merged: Vec::new(),
        };
    }
    let (fb, fc) = (nb as f64 / n, nc as f64 / n);
    let min_expected = |total: u64| total as f64 * fb.min(fc);
    let mut bins: Vec<(u64, u64)> = Vec::new();
    let mut other = (0u64, 0u64);
    let mut merged = Vec::new();
    for (name, b, c) in &cells {
        if min_expected(b + c) < MIN_EXPECTED {
            other.0 += b;
            other.1 += c;
            merged.push(name.clone());
        } else {
            bins.push((*b, *c));
        }
    }
    if other.0 + other.1 > 0 {
        if min_expected(other.0 + other.1) < MIN_EXPECTED
            && let Some(smallest) = bins.iter_mut().min_by_key(|(b, c)| b + c)
        {
            smallest.0 += other.0;
            smallest.1 += other.1;
        } else {
            bins.push(other);
        }
    }
    if bins.len() < 2 {
        return ChiSquare {
            test: None,
            bins: bins.len(),
            merged,
        };
    }
    let mut stat = 0.0;
    for (b, c) in &bins {
        let total = (b + c) as f64;
        let (eb, ec) = (total * fb, total * fc);
        stat += (*b as f64 - eb).powi(2) / eb + (*c as f64 - ec).powi(2) / ec;
    }
    let df = (bins.len() - 1) as f64;
    ChiSquare {
        test: Some(TestOutcome {
            statistic: stat,
            p_value: chi2_sf(stat, df),
            df: Some(df),
        }),
        bins: bins.len(),
        merged,
    }
}

/// Largest `n·m` for which [`ks_two_sample`] computes the exact p-value.
pub const KS_EXACT_MAX_NM: u64 = 10_000;

/// Two-sample Kolmogorov–Smirnov test, two-sided. Statistic D = sup |F₁ - F₂|, computed over
/// distinct values so ties are handled. The p-value is exact (lattice-path count, assuming no
/// ties) when `n·m ≤` [`KS_EXACT_MAX_NM`], else asymptotic with Stephens' small-sample
/// correction λ = (√nₑ + 0.12 + 0.11/√nₑ)·D. With ties (discrete data) both are conservative:
/// the true false-alarm rate is at most the nominal one.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> Option<TestOutcome> {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return None;
    }
    let mut x = a.to_vec();
    let mut y = b.to_vec();
    x.sort_by(f64::total_cmp);
    y.sort_by(f64::total_cmp);
    // D·n·m as an integer: max |i·m - j·n| over the merged distinct values.
    let (nn, mm) = (n as i128, m as i128);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0i128);
    while i < n || j < m {
        let v = match (x.get(i), y.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        while i < n && x[i] <= v {
            i += 1;
        }
        while j < m && y[j] <= v {
            j += 1;
        }
        d = d.max((i as i128 * mm - j as i128 * nn).abs());
    }
    let stat = d as f64 / (n as f64 * m as f64);
    let p = if (n as u64) * (m as u64) <= KS_EXACT_MAX_NM {
        ks_exact_sf(n, m, d)
    } else {
        let en = (n as f64 * m as f64 / (n + m) as f64).sqrt();
        kolmogorov_sf((en + 0.12 + 0.11 / en) * stat)
    };
    Some(TestOutcome {
        statistic: stat,
        p_value: p,
        df: None,
    })
}

/// P(D ≥ d/(n·m)) under H₀ for continuous data: one minus the share of monotone lattice paths
/// from (0,0) to (n,m) that stay strictly inside |i·m - j·n| < d.
fn ks_exact_sf(n: usize, m: usize, d: i128) -> f64 {
    let (nn, mm) = (n as i128, m as i128);
    let inside = |i: usize, j: usize| (i as i128 * mm - j as i128 * nn).abs() < d;
    // Path counts as probabilities: each step divides by the binomial growth, so values stay in
    // [0, 1]; u[j] holds paths to (i, j) / C(i + j, i).
    let mut u = vec![0.0f64; m + 1];
    for (j, cell) in u.iter_mut().enumerate() {
        *cell = if inside(0, j) { 1.0 } else { 0.0 };
        if *cell == 0.0 {
            break;
        }
    }
    for i in 1..=n {
        u[0] = if inside(i, 0) { u[0] } else { 0.0 };
        for j in 1..=m {
            if inside(i, j) {
                // paths(i,j) = paths(i-1,j) + paths(i,j-1); divide by C(i+j, i).
                let from_left = u[j] * (i as f64 / (i + j) as f64);
                let from_below = u[j - 1] * (j as f64 / (i + j) as f64);
                u[j] = from_left + from_below;
            } else {
                u[j] = 0.0;
            }
        }
    }
    (1.0 - u[m]).clamp(0.0, 1.0)
}

/// Two-proportion z-test (pooled), two-sided: successes `x1` of `n1` against `x2` of `n2`.
pub fn two_proportion_z(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<TestOutcome> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let p = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    let (z, pv) = if se == 0.0 {
        (0.0, 1.0)
    } else {
        let z = (p2 - p1) / se;
        (z, (2.0 * normal_sf(z.abs())).min(1.0))
    };
    Some(TestOutcome {
        statistic: z,
        p_value: pv,
        df: None,
    })
}

/// Count, mean and sample variance of a sample, the sufficient statistics of Welch's test.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Moments {
    /// Number of values.
    pub n: u64,
    /// Sum of values.
    pub sum: f64,
    /// Sum of squared values.
    pub sum_sq: f64,
}

impl Moments {
    /// Adds one value.
    pub fn push(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.sum_sq += v * v;
    }

    /// The mean (NaN when empty).
    pub fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }

    /// The sample variance (n - 1 denominator; 0 for fewer than two values).
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
    }
}

/// Welch's unequal-variance t-test, two-sided; t = (mean₂ - mean₁) / se with the
/// Welch–Satterthwaite degrees of freedom.
pub fn welch_t(a: &Moments, b: &Moments) -> Option<TestOutcome> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    welch_outcome(
        b.mean() - a.mean(),
        (a.variance() / a.n as f64, a.n as f64 - 1.0),
        (b.variance() / b.n as f64, b.n as f64 - 1.0),
    )
}

/// A two-sided t-test of a difference from the two sides' squared standard errors and their
/// degrees of freedom, with the Welch–Satterthwaite degrees of freedom.
fn welch_outcome(diff: f64, (va, dfa): (f64, f64), (vb, dfb): (f64, f64)) -> Option<TestOutcome> {
    let se2 = va + vb;
    if se2 <= 0.0 {
        // Both sides constant: any difference is certain, none is no evidence.
        let p = if diff.abs() > 1e-12 { 0.0 } else { 1.0 };
        return Some(TestOutcome {
            statistic: if p == 0.0 {
                diff.signum() * f64::INFINITY
            } else {
                0.0
            },
            p_value: p,
            df: None,
        });
    }
    let t = diff / se2.sqrt();
    let df = se2 * se2 / (va * va / dfa + vb * vb / dfb).max(f64::MIN_POSITIVE);
    Some(TestOutcome {
        statistic: t,
        p_value: student_t_two_sided(t, df),
        df: Some(df),
    })
}

/// One cluster's share of a ratio: `sum` over `units` (one customer: approved messages over
/// messages, or judge-score total over scored messages).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClusterTotals {
    /// Units in the cluster (messages).
    pub units: f64,
    /// Sum of the units' values (approvals, scores).
    pub sum: f64,
}

/// The ratio Σsum / Σunits over clusters and its cluster-robust variance
/// k/(k-1) · Σ(sumᵢ - r·unitsᵢ)² / (Σunits)² (the linearised ratio estimator, CR1), which holds
/// whatever the dependence between the units of one cluster. `None` without units or with
/// fewer than two clusters.
pub fn clustered_ratio(clusters: &[ClusterTotals]) -> Option<(f64, f64)> {
    let k = clusters.len();
    let units: f64 = clusters.iter().map(|c| c.units).sum();
    if k < 2 || units <= 0.0 {
        return None;
    }
    let r = clusters.iter().map(|c| c.sum).sum::<f64>() / units;
    let ss: f64 = clusters.iter().map(|c| (c.sum - r * c.units).powi(2)).sum();
    let kf = k as f64;
    Some((r, kf / (kf - 1.0) * ss / (units * units)))
}

/// Two-sided test that a ratio (a rate or a mean per unit) is the same in two samples of
/// clusters, with the clusters (customers) as the independent units: t = (r₂ - r₁) / se with
/// cluster-robust variances ([`clustered_ratio`]) and Welch–Satterthwaite degrees of freedom
/// (k - 1 per side). Counting the units (messages) as independent instead overstates the
/// evidence when the units of one cluster are alike.
pub fn clustered_ratio_t(a: &[ClusterTotals], b: &[ClusterTotals]) -> Option<TestOutcome> {
    let (ra, va) = clustered_ratio(a)?;
    let (rb, vb) = clustered_ratio(b)?;
    welch_outcome(
        rb - ra,
        (va, a.len() as f64 - 1.0),
        (vb, b.len() as f64 - 1.0),
    )
}

/// Smoothing added to empty bins before taking logs in [`psi`].
pub const PSI_EPSILON: f64 = 1e-4;

fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

/// Population stability index Σ (cᵢ - bᵢ)·ln(cᵢ/bᵢ) over bin shares, empty bins smoothed to
/// [`PSI_EPSILON`]. Rule of thumb: < 0.1 stable, 0.1–0.25 moderate, > 0.25 large shift.
pub fn psi(baseline: &[u64], current: &[u64]) -> f64 {
    let (b, c) = (shares(baseline), shares(current));
    b.iter()
        .zip(&c)
        .map(|(&b, &c)| {
            let (b, c) = (b.max(PSI_EPSILON), c.max(PSI_EPSILON));
            (c - b) * (c / b).ln()
        })
        .sum()
}

/// Jensen–Shannon distance (square root of the divergence, base-2 logs): 0 for identical
/// distributions, 1 for disjoint ones.
pub fn jensen_shannon(baseline: &[u64], current: &[u64]) -> f64 {
    let (p, q) = (shares(baseline), shares(current));
    let kl = |a: f64, m: f64| if a > 0.0 { a * (a / m).log2() } else { 0.0 };
    let js: f64 = p
        .iter()
        .zip(&q)
        .map(|(&a, &b)| {
            let m = (a + b) / 2.0;
            0.5 * kl(a, m) + 0.5 * kl(b, m)
        })
        .sum();
    js.max(0.0).sqrt()
}

/// First Wasserstein (earth mover's) distance between two empirical distributions: the area
/// between their CDFs, in the values' unit.
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut x = a.to_vec();
    let mut y = b.to_vec();
    x.sort_by(f64::total_cmp);
    y.sort_by(f64::total_cmp);
    let mut all: Vec<f64> = x.iter().chain(&y).copied().collect();
    all.sort_by(f64::total_cmp);
    let (mut i, mut j, mut area) = (0usize, 0usize, 0.0);
    for w in all.windows(2) {
        while i < x.len() && x[i] <= w[0] {
            i += 1;
        }
        while j < y.len() && y[j] <= w[0] {
            j += 1;
        }
        let fa = i as f64 / x.len() as f64;
        let fb = j as f64 / y.len() as f64;
        area += (fa - fb).abs() * (w[1] - w[0]);
    }
    area
}

/// Bin edges at the baseline's deciles (distinct values only), for PSI on numeric data.
pub fn quantile_edges(baseline: &[f64], bins: usize) -> Vec<f64> {
    let mut x = baseline.to_vec();
    x.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = Vec::new();
    if x.is_empty() {
        return edges;
    }
    for k in 1..bins {
        let idx = (k * x.len() / bins).min(x.len() - 1);
        let e = x[idx];
        if edges.last().is_none_or(|&l| e > l) && e > x[0] {
            edges.push(e);
        }
    }
    edges
}

/// Counts of `values` per bin: bin k holds values below `edges[k]` and at or above `edges[k-1]`.
pub fn bin_counts(values: &[f64], edges: &[f64]) -> Vec<u64> {
    let mut counts = vec![0u64; edges.len() + 1];
    for &v in values {
        let k = edges.partition_point(|&e| e <= v);
        counts[k] += 1;
    }
    counts
}

/// Holm's step-down adjusted p-values, in the input order: p̃₍ᵣ₎ = maxₛ≤ᵣ min(1, (m - s)·p₍ₛ₎).
/// Rejecting every test with p̃ ≤ α controls the family-wise error rate at α under any
/// dependence between the tests.
pub fn holm_adjust(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

/// The share of `alpha` spent on look `t` (1-based) since the baseline was fixed:
/// α·1/(t(t+1)). The shares sum to α over all looks (1/(t(t+1)) = 1/t - 1/(t+1) telescopes),
/// so by the union bound the chance of any false alarm over every look, however many and
/// however dependent, is at most α.
pub fn alpha_for_look(alpha: f64, look: u32) -> f64 {
    let t = f64::from(look.max(1));
    alpha / (t * (t + 1.0))
}

/// Wilson score interval for a binomial proportion `x / n` at normal quantile `z`
/// (1.959964 for 95%).
pub fn wilson_interval(x: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (nf, p) = (n as f64, x as f64 / n as f64);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * nf)) / (1.0 + z2 / nf);
    let half = z / (1.0 + z2 / nf) * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300) || (a - b).abs() < 1e-15
    }

    macro_rules! assert_close {
        ($a:expr, $b:expr, $tol:expr) => {{
            let (a, b) = ($a, $b);
            assert!(close(a, b, $tol), "{} = {a}, expected {b}", stringify!($a));
        }};
    }

    #[test]
    fn gamma_matches_factorials_and_sqrt_pi() {
        assert_close!(ln_gamma(1.0), 0.0, 1e-12);
        assert_close!(ln_gamma(5.0), 24f64.ln(), 1e-13);
        assert_close!(ln_gamma(0.5), PI.sqrt().ln(), 1e-13);
        assert_close!(ln_gamma(20.0), 121_645_100_408_832_000f64.ln(), 1e-13);
    }

    #[test]
    fn chi_square_survival_matches_tables() {
        // Critical values at 5%: df 1 -> 3.841459, df 5 -> 11.070498, df 10 -> 18.307038.
        assert_close!(chi2_sf(3.841_458_820_694_124, 1.0), 0.05, 1e-9);
        assert_close!(chi2_sf(11.070_497_693_516_35, 5.0), 0.05, 1e-9);
        assert_close!(chi2_sf(18.307_038_053_275_15, 10.0), 0.05, 1e-9);
        // df 2 is exponential: P(X ≥ x) = e^{-x/2}.
        assert_close!(chi2_sf(7.0, 2.0), (-3.5f64).exp(), 1e-12);
        assert_close!(chi2_sf(0.0, 3.0), 1.0, 1e-15);
        // Far tail (mpmath: gammainc(5, 50, inf, regularized) = 5.44970198292053e-17).
        assert_close!(chi2_sf(100.0, 10.0), 5.449_701_982_920_53e-17, 1e-7);
    }

    #[test]
    fn normal_and_t_match_tables() {
        assert_close!(normal_sf(1.959_963_984_540_054), 0.025, 1e-10);
        assert_close!(normal_sf(0.0), 0.5, 1e-15);
        assert_close!(normal_sf(-1.0), 0.841_344_746_068_542_9, 1e-12);
        assert_close!(normal_sf(5.0), 2.866_515_718_791_939e-7, 1e-9);
        // t critical values (two-sided 5%): df 10 -> 2.228139, df 1 -> 12.706205.
        assert_close!(
            student_t_two_sided(2.228_138_851_986_273_5, 10.0),
            0.05,
            1e-9
        );
        assert_close!(student_t_two_sided(12.706_204_736_174_7, 1.0), 0.05, 1e-9);
        assert_close!(student_t_two_sided(0.0, 7.0), 1.0, 1e-12);
    }

    #[test]
    fn incomplete_beta_symmetry_and_known_values() {
        assert_close!(beta_inc(2.0, 3.0, 0.4), 0.5248, 1e-12);
        assert_close!(beta_inc(1.0, 1.0, 0.3), 0.3, 1e-12);
        let (a, b, x) = (3.5, 1.25, 0.7);
        assert_close!(beta_inc(a, b, x), 1.0 - beta_inc(b, a, 1.0 - x), 1e-12);
    }

    #[test]
    fn kolmogorov_distribution_matches_tables() {
        // Critical values of the Kolmogorov distribution: 1.3581 (5%), 1.6276 (1%), 1.2238 (10%).
        assert_close!(kolmogorov_sf(1.358_098_8), 0.05, 1e-5);
        assert_close!(kolmogorov_sf(1.627_624_1), 0.01, 1e-5);
        assert_close!(kolmogorov_sf(1.223_847_9), 0.10, 1e-5);
        // Both series agree where they switch.
        let (lo, hi) = (kolmogorov_sf(1.18 - 1e-9), kolmogorov_sf(1.18));
        assert_close!(lo, hi, 1e-8);
        assert_close!(kolmogorov_sf(0.1), 1.0, 1e-12);
    }

    #[test]
    fn exact_ks_matches_hand_counts() {
        // n = m = 2, samples {1,2} and {3,4}: D = 1; only 2 of the C(4,2) = 6 paths reach
        // |i - j| = 2, so p = 2/6.
        let t = ks_two_sample(&[1.0, 2.0], &[3.0, 4.0]).unwrap();
        assert_close!(t.statistic, 1.0, 1e-15);
        assert_close!(t.p_value, 1.0 / 3.0, 1e-12);
        // n = m = 3, D = 1: 2 of C(6,3) = 20 paths.
        let t = ks_two_sample(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_close!(t.p_value, 0.1, 1e-12);
        // [1..5] vs [3..7]: D = 0.4, p = 1 - 8/63 = 55/63 (counted paths).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [3.0, 4.0, 5.0, 6.0, 7.0];
        let t = ks_two_sample(&a, &b).unwrap();
        assert_close!(t.statistic, 0.4, 1e-12);
        assert_close!(t.p_value, 55.0 / 63.0, 1e-9);
        // Identical samples: D = 0, p = 1.
        assert_close!(ks_two_sample(&a, &a).unwrap().p_value, 1.0, 1e-12);
    }

    #[test]
    fn asymptotic_ks_agrees_with_exact_near_the_switch() {
        // Two shifted grids of 100 (n·m = 10,000: exact) and the asymptotic form on the same D.
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let b: Vec<f64> = (0..100).map(|i| f64::from(i) + 19.5).collect();
        let exact = ks_two_sample(&a, &b).unwrap();
        assert_close!(exact.statistic, 0.2, 1e-12);
        let en = (50.0f64).sqrt();
        let asym = kolmogorov_sf((en + 0.12 + 0.11 / en) * exact.statistic);
        assert!((exact.p_value - asym).abs() < 0.01, "{exact:?} vs {asym}");
        // Exact by counting paths with big integers: 0.03638428787491731.
        assert_close!(exact.p_value, 0.036_384_287_874_917_33, 1e-6);
    }

    #[test]
    fn chi_square_homogeneity_matches_a_textbook_table_and_merges_sparse_bins() {
        // 2x3 table [[20, 30, 50], [30, 30, 40]]: expected 25, 30, 45 per row, so
        // chi2 = 2·(25/25 + 0 + 25/45) = 28/9, df 2, p = e^{-14/9}.
        let cells = vec![
            ("a".to_owned(), 20, 30),
            ("b".to_owned(), 30, 30),
            ("c".to_owned(), 50, 40),
        ];
        let r = chi_square_homogeneity(&cells);
        let t = r.test.unwrap();
        assert_close!(t.statistic, 28.0 / 9.0, 1e-12);
        assert_eq!(t.df, Some(2.0));
        assert_close!(t.p_value, (-14.0f64 / 9.0).exp(), 1e-12);
        assert!(r.merged.is_empty());
        // Two sparse categories are merged into one bin, which is itself sparse and joins the
        // smallest real bin: two bins, df 1.
        let cells = vec![
            ("a".to_owned(), 40, 45),
            ("b".to_owned(), 60, 50),
            ("rare1".to_owned(), 1, 0),
            ("rare2".to_owned(), 0, 2),
        ];
        let r = chi_square_homogeneity(&cells);
        assert_eq!(r.merged, vec!["rare1".to_owned(), "rare2".to_owned()]);
        assert_eq!(r.bins, 2);
        assert_eq!(r.test.unwrap().df, Some(1.0));
        // One category left: no test.
        assert!(
            chi_square_homogeneity(&[("a".to_owned(), 5, 5)])
                .test
                .is_none()
        );
    }

    #[test]
    fn proportion_and_welch_tests_match_hand_values() {
        // 45/100 vs 60/100: pooled p 0.525, se = sqrt(.525·.475·.02) = 0.0706222, z = 2.1239770;
        // two-sided p = erfc(z/√2) = 0.0336720688563455 (mpmath).
        let t = two_proportion_z(45, 100, 60, 100).unwrap();
        assert_close!(t.statistic, 2.123_976_976_214_37, 1e-9);
        assert_close!(t.p_value, 0.033_672_068_856_345_5, 1e-9);
        // Welch: a = 1..=5 (mean 3, var 2.5), b = 3..=9 step 1.5 ((3,4.5,6,7.5,9): mean 6, var 5.625).
        let (mut a, mut b) = (Moments::default(), Moments::default());
        for v in [1.0, 2.0, 3.0, 4.0, 5.0] {
            a.push(v);
        }
        for v in [3.0, 4.5, 6.0, 7.5, 9.0] {
            b.push(v);
        }
        let t = welch_t(&a, &b).unwrap();
        // se = sqrt(.5 + 1.125) = 1.27475, t = 2.35339, df = 1.625^2/(.25/4 + 1.265625/4) = 6.9640.
        assert_close!(t.statistic, 3.0 / 1.625f64.sqrt(), 1e-12);
        assert_close!(
            t.df.unwrap(),
            1.625f64.powi(2) / ((0.25 + 1.265_625) / 4.0),
            1e-12
        );
        // mpmath betainc(df/2, 1/2, 0, df/(df+t²)) = 0.0509903839067023.
        assert_close!(t.p_value, 0.050_990_383_906_702_3, 1e-9);
    }

    #[test]
    fn clustered_ratio_matches_hand_values_and_one_unit_clusters_match_welch() {
        let c = |units: f64, sum: f64| ClusterTotals { units, sum };
        // r = 6/10; residuals 2-0.6*4 = -0.4, 1-0.6*2 = -0.2, 3-0.6*4 = 0.6; Σ² = 0.56;
        // V = 3/2 * 0.56 / 100 = 0.0084.
        let (r, v) = clustered_ratio(&[c(4.0, 2.0), c(2.0, 1.0), c(4.0, 3.0)]).unwrap();
        assert!(
            (r - 0.6).abs() < 1e-12 && (v - 0.0084).abs() < 1e-12,
            "{r} {v}"
        );
        assert!(clustered_ratio(&[c(3.0, 1.0)]).is_none());
        // One unit per cluster: the variance is s²/n, so the test is Welch's.
        let xs = [3.0, 5.0, 4.0, 6.0, 2.0];
        let ys = [6.0, 7.0, 5.0, 8.0];
        let (mut a, mut b) = (Moments::default(), Moments::default());
        xs.iter().for_each(|&x| a.push(x));
        ys.iter().for_each(|&y| b.push(y));
        let w = welch_t(&a, &b).unwrap();
        let ca: Vec<_> = xs.iter().map(|&x| c(1.0, x)).collect();
        let cb: Vec<_> = ys.iter().map(|&y| c(1.0, y)).collect();
        let t = clustered_ratio_t(&ca, &cb).unwrap();
        assert!((t.statistic - w.statistic).abs() < 1e-9, "{t:?} {w:?}");
        assert!((t.df.unwrap() - w.df.unwrap()).abs() < 1e-9);
        assert!((t.p_value - w.p_value).abs() < 1e-9);
        // Customers alike inside: 2 customers × 50 identical messages a side is weak evidence
        // (2 clusters a side), though 100 messages a side look strong when counted one by one.
        let same = |v: f64| c(50.0, 50.0 * v);
        let t = clustered_ratio_t(&[same(0.2), same(0.6)], &[same(0.5), same(0.9)]).unwrap();
        let z = two_proportion_z(40, 100, 70, 100).unwrap();
        assert!(z.p_value < 0.001 && t.p_value > 0.2, "{z:?} {t:?}");
        // Constant sides.
        assert_eq!(
            clustered_ratio_t(&[c(2.0, 2.0), c(1.0, 1.0)], &[c(3.0, 3.0), c(1.0, 1.0)])
                .unwrap()
                .p_value,
            1.0
        );
    }

    #[test]
    fn effect_sizes_match_hand_values() {
        // PSI of (0.5, 0.5) -> (0.25, 0.75): 0.25·ln 1.5 + (-0.25)·ln 0.5 = 0.274653.
        assert_close!(
            psi(&[50, 50], &[25, 75]),
            0.25 * 1.5f64.ln() - 0.25 * 0.5f64.ln(),
            1e-12
        );
        assert_close!(psi(&[10, 20], &[10, 20]), 0.0, 1e-15);
        assert_close!(jensen_shannon(&[1, 0], &[0, 1]), 1.0, 1e-12);
        assert_close!(jensen_shannon(&[3, 3], &[3, 3]), 0.0, 1e-15);
        // Shifting every value by 2.5 moves the distribution by 2.5.
        let a = [1.0, 2.0, 3.0, 7.0];
        let b: Vec<f64> = a.iter().map(|v| v + 2.5).collect();
        assert_close!(wasserstein(&a, &b), 2.5, 1e-12);
        // {0} vs {0, 1}: half the mass moves 1.
        assert_close!(wasserstein(&[0.0], &[0.0, 1.0]), 0.5, 1e-12);
    }

    #[test]
    fn bins_follow_baseline_quantiles() {
        let base: Vec<f64> = (0..100).map(f64::from).collect();
        let edges = quantile_edges(&base, 10);
        assert_eq!(edges.len(), 9);
        assert_eq!(bin_counts(&base, &edges), vec![10; 10]);
        // Constant baseline: one bin.
        assert!(quantile_edges(&[3.0; 20], 10).is_empty());
    }

    #[test]
    fn holm_adjusts_step_down() {
        // p = (0.01, 0.04, 0.03, 0.005), m = 4: sorted 0.005·4 = .02, .01·3 = .03, .03·2 = .06,
        // .04·1 = .04 -> monotone .06.
        let adj = holm_adjust(&[0.01, 0.04, 0.03, 0.005]);
        for (a, b) in adj.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            assert_close!(*a, b, 1e-12);
        }
        assert!(holm_adjust(&[]).is_empty());
    }

    #[test]
    fn alpha_spending_sums_to_alpha() {
        assert_close!(alpha_for_look(0.05, 1), 0.025, 1e-15);
        assert_close!(alpha_for_look(0.05, 2), 0.05 / 6.0, 1e-15);
        let total: f64 = (1..=100_000).map(|t| alpha_for_look(0.05, t)).sum();
        assert!(total < 0.05 && total > 0.05 * (1.0 - 1e-4), "{total}");
    }

    #[test]
    fn wilson_interval_matches_hand_values() {
        // 0 of 1000 at 95%: (0, z²/(n+z²)) = (0, 0.003827).
        let (lo, hi) = wilson_interval(0, 1000, 1.959_963_984_540_054);
        assert!(lo.abs() < 1e-12, "{lo}");
        assert_close!(
            hi,
            3.841_458_820_694_124 / (1000.0 + 3.841_458_820_694_124),
            1e-12
        );
        // 50 of 100: 0.5 ± 0.0962 -> (0.4038, 0.5962).
        let (lo, hi) = wilson_interval(50, 100, 1.959_963_984_540_054);
        assert!(
            (lo - 0.4038).abs() < 1e-4 && (hi - 0.5962).abs() < 1e-4,
            "{lo} {hi}"
        );
    }
}
