//! The rollout's health check: is the canary version of an agent worse than production on live
//! traffic? Written once, here; the `rollout` worker reads the per-version counters and calls
//! [`check_health`], the state machine (`state-machines/agent-rollout.asl.json`) branches on the
//! [`Decision`].
//!
//! The test is a **mixture sequential probability ratio test** (mSPRT, Robbins 1970; the
//! two-sample form of Johari, Pekelis and Walsh, "Always valid inference", 2017) on the
//! difference canary − production of each metric, inverted into a confidence sequence: an
//! interval that holds at every look at once with probability at least 1 − α. Looking after
//! every wait, as often as wanted, keeps the error rate; no look schedule or alpha spending is
//! needed. Differences are oriented so that positive is better for the canary.
//!
//! Metrics (deltas of the counters since the rollout started, canary arm vs production arm):
//! - approval rate (proportion, higher is better);
//! - error rate (proportion, lower is better);
//! - mean judge score (0..=10, higher is better). The counters keep sums only, so the variance
//!   is bounded by Bhatia–Davis, `(10 − mean) · mean`: valid, conservative;
//! - latency: the share of records slower than production's p95 (read from the latency
//!   buckets), a proportion, lower is better: a canary whose p95 is higher has more than 5% of
//!   its records above production's p95;
//! - cost per message: a threshold on the ratio (cost per message barely varies for one model
//!   and prompt; the counters keep no per-record spread), not a test.
//!
//! α is split evenly over the four tested metrics (Bonferroni), so a canary as good as
//! production on every metric is rolled back with probability at most α over the whole rollout
//! (up to the normal approximation the mSPRT uses; [`simulate`] measures it).
//!
//! The decision at a look:
//! - fewer than `min_sample_per_arm` records on an arm: **continue** (at the step's last look:
//!   **rollback**, "not enough traffic");
//! - any metric's interval lies wholly below 0 (the canary is worse, with confidence), or the
//!   cost per message rose more than `max_cost_increase`: **rollback**, one reason per metric;
//! - every tested metric's interval lies above `−margin` (non-inferior within its margin):
//!   **promote-step** early;
//! - otherwise **continue**; at the step's last look **promote-step** (no harm shown).

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{AgentStatus, semver_lenient};
use crate::counters::{LATENCY_BUCKETS, VersionCounts, latency_bucket};
use crate::events::EventDetail;

/// One arm's counters over a period: the live per-version counters
/// ([`crate::counters::VersionCounts`]) or the difference of two readings ([`ArmCounts::since`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmCounts {
    /// Approved and published records.
    pub approvals: u64,
    /// Records rejected after the last attempt.
    pub rejections: u64,
    /// Records of failed workflows.
    pub errors: u64,
    /// Sum of the judge scores of every judged attempt.
    pub score_sum: u64,
    /// Number of judged attempts.
    pub score_count: u64,
    /// Model cost, in nano-dollars.
    pub cost_nano_usd: u64,
    /// Records per latency bucket (up to [`LATENCY_BUCKETS`] entries; missing ones are 0).
    #[serde(default)]
    pub latency: Vec<u64>,
}

impl From<&VersionCounts> for ArmCounts {
    fn from(c: &VersionCounts) -> Self {
        ArmCounts {
            approvals: c.approvals,
            rejections: c.rejections,
            errors: c.errors,
            score_sum: c.score_sum,
            score_count: c.score_count,
            cost_nano_usd: c.cost_nano_usd,
            latency: c.latency.clone(),
        }
    }
}

impl ArmCounts {
    /// Records counted: approvals, rejections and errors.
    pub fn records(&self) -> u64 {
        self.approvals + self.rejections + self.errors
    }

    /// What was counted after `start` was taken (counters only grow; a smaller figure, e.g.
    /// after a counter reset, counts as 0).
    pub fn since(&self, start: &ArmCounts) -> ArmCounts {
        let latency = (0..self.latency.len().max(start.latency.len()))
            .map(|i| {
                let a = self.latency.get(i).copied().unwrap_or(0);
                a.saturating_sub(start.latency.get(i).copied().unwrap_or(0))
            })
            .collect();
        ArmCounts {
            approvals: self.approvals.saturating_sub(start.approvals),
            rejections: self.rejections.saturating_sub(start.rejections),
            errors: self.errors.saturating_sub(start.errors),
            score_sum: self.score_sum.saturating_sub(start.score_sum),
            score_count: self.score_count.saturating_sub(start.score_count),
            cost_nano_usd: self.cost_nano_usd.saturating_sub(start.cost_nano_usd),
            latency,
        }
    }

    fn latency_total(&self) -> u64 {
        self.latency.iter().sum()
    }

    /// The bucket holding the record of rank `ceil(q · n)`, if any record has a latency.
    fn latency_quantile_bucket(&self, q: f64) -> Option<usize> {
        let n = self.latency_total();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        self.latency.iter().position(|c| {
            seen += c;
            seen >= rank
        })
    }

    fn latency_above(&self, bucket: usize) -> u64 {
        self.latency.iter().skip(bucket + 1).sum()
    }
}

/// Thresholds of the health check. Every field is an input of the rollout state machine
/// (`thresholds`), with these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HealthParams {
    /// Error rate of the whole check (split over the four tested metrics): the chance that a
    /// canary as good as production is rolled back, over every look of the rollout.
    #[schemars(range(min = 0.0001, max = 0.5))]
    pub alpha: f64,
    /// Records each arm needs (since the rollout started) before any decision but continue.
    #[schemars(range(min = 1))]
    pub min_sample_per_arm: u64,
    /// Non-inferiority margin of the approval rate (0.05 = 5 points).
    pub approval_margin: f64,
    /// Non-inferiority margin of the mean judge score (points of 10).
    pub score_margin: f64,
    /// Non-inferiority margin of the error rate (0.02 = 2 points).
    pub error_margin: f64,
    /// Non-inferiority margin of the share of records slower than production's p95.
    pub latency_margin: f64,
    /// Largest allowed rise of the cost per message (0.2 = +20%).
    pub max_cost_increase: f64,
}

impl Default for HealthParams {
    fn default() -> Self {
        HealthParams {
            alpha: 0.05,
            min_sample_per_arm: 100,
            approval_margin: 0.05,
            score_margin: 0.5,
            error_margin: 0.02,
            latency_margin: 0.05,
            max_cost_increase: 0.2,
        }
    }
}

impl HealthParams {
    /// Problems with the parameters, one sentence each (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            p.push(format!("alpha must be in (0, 1), got {}", self.alpha));
        }
        if self.min_sample_per_arm == 0 {
            p.push("minSamplePerArm must be at least 1".into());
        }
        for (name, v) in [
            ("approvalMargin", self.approval_margin),
            ("scoreMargin", self.score_margin),
            ("errorMargin", self.error_margin),
            ("latencyMargin", self.latency_margin),
            ("maxCostIncrease", self.max_cost_increase),
        ] {
            if !(v.is_finite() && v > 0.0) {
                p.push(format!("{name} must be a positive number, got {v}"));
            }
        }
        p
    }
}

/// A metric the health check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Approved records over records.
    ApprovalRate,
    /// Mean judge score of judged attempts.
    JudgeScore,
    /// Failed records over records.
    ErrorRate,
    /// Share of records slower than production's p95.
    SlowerThanProductionP95,
    /// Model cost per record.
    CostPerMessage,
}

/// What a look found about one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// The canary is worse, with confidence (or above the cost threshold).
    Worse,
    /// The canary is within the margin of production, with confidence.
    NonInferior,
    /// Neither yet.
    Inconclusive,
    /// No data on one arm.
    NoData,
}

/// One metric at one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricCheck {
    /// Which metric.
    pub metric: Metric,
    /// The canary's figure.
    pub canary: Option<f64>,
    /// Production's figure.
    pub production: Option<f64>,
    /// Anytime-valid interval of the difference, oriented so positive is better for the canary
    /// (cost: the relative change, not an interval).
    pub lower: Option<f64>,
    /// Upper end of that interval.
    pub upper: Option<f64>,
    /// The non-inferiority margin (cost: the largest allowed rise).
    pub margin: f64,
    /// What it shows.
    pub finding: Finding,
}

/// What the rollout does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Wait and look again.
    Continue,
    /// Move to the next traffic step (or promote).
    PromoteStep,
    /// Take the canary out.
    Rollback,
}

/// The health check's answer at one look: what the state machine branches on
/// (`$.health.decision`) and what the registry history records (`reasons`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// What to do.
    pub decision: Decision,
    /// Why, one sentence per reason.
    pub reasons: Vec<String>,
    /// Records of the canary arm since the rollout started.
    pub canary_records: u64,
    /// Records of the production arm since the rollout started.
    pub production_records: u64,
    /// Every metric's figures.
    pub checks: Vec<MetricCheck>,
}

/// Half-width of the mSPRT confidence sequence for a difference whose estimate has variance
/// `v`, with a normal mixing distribution of variance `tau2`, at level `alpha`: the difference
/// θ is in `estimate ± radius` at every look with probability at least 1 − α.
///
/// The mixture likelihood ratio of θ0 is `sqrt(v / (v + τ²)) · exp(τ² (θ̂ − θ0)² / (2 v (v + τ²)))`;
/// θ0 is rejected when it reaches 1/α, i.e. when `|θ̂ − θ0|` exceeds this radius.
pub fn msprt_radius(v: f64, tau2: f64, alpha: f64) -> f64 {
    if v <= 0.0 {
        return 0.0;
    }
    let ln = ((v + tau2) / v).sqrt().ln() - alpha.ln();
    (2.0 * v * (v + tau2) / tau2 * ln).sqrt()
}

/// The variance of a proportion estimated from `x` of `n`, kept off 0 and 1 (x + ½ of n + 1)
/// so that an arm without a single failure still has a spread.
fn proportion_var(x: u64, n: u64) -> f64 {
    let p = (x as f64 + 0.5) / (n as f64 + 1.0);
    p * (1.0 - p) / n as f64
}

struct Compared {
    canary: f64,
    production: f64,
    /// Variance of the difference's estimate.
    v: f64,
}

fn interval_check(
    metric: Metric,
    c: Option<Compared>,
    higher_is_better: bool,
    margin: f64,
    alpha: f64,
) -> MetricCheck {
    let Some(c) = c else {
        return MetricCheck {
            metric,
            canary: None,
            production: None,
            lower: None,
            upper: None,
            margin,
            finding: Finding::NoData,
        };
    };
    let diff = if higher_is_better {
        c.canary - c.production
    } else {
        c.production - c.canary
    };
    let r = msprt_radius(c.v, margin * margin, alpha);
    let (lower, upper) = (diff - r, diff + r);
    let finding = if upper < 0.0 {
        Finding::Worse
    } else if lower > -margin {
        Finding::NonInferior
    } else {
        Finding::Inconclusive
    };
    MetricCheck {
        metric,
        canary: Some(c.canary),
        production: Some(c.production),
        lower: Some(lower),
        upper: Some(upper),
        margin,
        finding,
    }
}

fn proportions(xc: u64, nc: u64, xp: u64, np: u64) -> Option<Compared> {
    (nc > 0 && np > 0).then(|| Compared {
        canary: xc as f64 / nc as f64,
        production: xp as f64 / np as f64,
        v: proportion_var(xc, nc) + proportion_var(xp, np),
    })
}

fn scores(c: &ArmCounts, p: &ArmCounts) -> Option<Compared> {
    if c.score_count == 0 || p.score_count == 0 {
        return None;
    }
    // Bhatia–Davis: a variable in [0, 10] with mean m has variance at most (10 − m) m.
    let arm = |a: &ArmCounts| {
        let m = a.score_sum as f64 / a.score_count as f64;
        let var = ((10.0 - m) * m).max(0.25);
        (m, var / a.score_count as f64)
    };
    let (mc, vc) = arm(c);
    let (mp, vp) = arm(p);
    Some(Compared {
        canary: mc,
        production: mp,
        v: vc + vp,
    })
}

fn latency(c: &ArmCounts, p: &ArmCounts) -> Option<Compared> {
    let b = p.latency_quantile_bucket(0.95)?;
    let (nc, np) = (c.latency_total(), p.latency_total());
    proportions(c.latency_above(b), nc, p.latency_above(b), np)
}

fn cost_check(c: &ArmCounts, p: &ArmCounts, max_increase: f64) -> MetricCheck {
    let per = |a: &ArmCounts| {
        (a.records() > 0).then(|| a.cost_nano_usd as f64 / 1e9 / a.records() as f64)
    };
    let (cc, pc) = (per(c), per(p));
    let (change, finding) = match (cc, pc) {
        (Some(cc), Some(pc)) if pc > 0.0 => {
            let change = cc / pc - 1.0;
            let f = if change > max_increase {
                Finding::Worse
            } else {
                Finding::NonInferior
            };
            (Some(change), f)
        }
        (Some(cc), Some(_)) => (
            None,
            if cc > 0.0 {
                Finding::Worse
            } else {
                Finding::NonInferior
            },
        ),
        _ => (None, Finding::NoData),
    };
    MetricCheck {
        metric: Metric::CostPerMessage,
        canary: cc,
        production: pc,
        lower: change.map(|x| -x),
        upper: change.map(|x| -x),
        margin: max_increase,
        finding,
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn reason(check: &MetricCheck) -> String {
    let (c, p) = (
        check.canary.unwrap_or(f64::NAN),
        check.production.unwrap_or(f64::NAN),
    );
    let (lo, hi) = (
        check.lower.unwrap_or(f64::NAN),
        check.upper.unwrap_or(f64::NAN),
    );
    match check.metric {
        Metric::ApprovalRate => format!(
            "approval rate {} vs production {} (difference {:+.1} to {:+.1} points, anytime-valid)",
            pct(c),
            pct(p),
            lo * 100.0,
            hi * 100.0
        ),
        Metric::ErrorRate => format!(
            "error rate {} vs production {} (canary worse by {:.1} to {:.1} points, anytime-valid)",
            pct(c),
            pct(p),
            -hi * 100.0,
            -lo * 100.0
        ),
        Metric::JudgeScore => format!(
            "mean judge score {c:.2} vs production {p:.2} (difference {lo:+.2} to {hi:+.2}, anytime-valid)"
        ),
        Metric::SlowerThanProductionP95 => format!(
            "{} of canary records slower than production's p95 vs {} of production's (excess {:.1} to {:.1} points, anytime-valid)",
            pct(c),
            pct(p),
            -hi * 100.0,
            -lo * 100.0
        ),
        Metric::CostPerMessage => format!(
            "cost per message ${c:.6} vs production ${p:.6} ({:+.0}%, limit +{:.0}%)",
            -lo * 100.0,
            check.margin * 100.0
        ),
    }
}

/// The health check at one look: `canary` and `production` are each arm's counts since the
/// rollout started; `final_look` is the step's last look (the state machine counts them).
pub fn check_health(
    canary: &ArmCounts,
    production: &ArmCounts,
    params: &HealthParams,
    final_look: bool,
) -> HealthReport {
    let a = params.alpha / 4.0;
    let checks = vec![
        interval_check(
            Metric::ApprovalRate,
            proportions(
                canary.approvals,
                canary.records(),
                production.approvals,
                production.records(),
            ),
            true,
            params.approval_margin,
            a,
        ),
        interval_check(
            Metric::JudgeScore,
            scores(canary, production),
            true,
            params.score_margin,
            a,
        ),
        interval_check(
            Metric::ErrorRate,
            proportions(
                canary.errors,
                canary.records(),
                production.errors,
                production.records(),
            ),
            false,
            params.error_margin,
            a,
        ),
        interval_check(
            Metric::SlowerThanProductionP95,
            latency(canary, production),
            false,
            params.latency_margin,
            a,
        ),
        cost_check(canary, production, params.max_cost_increase),
    ];
    let (nc, np) = (canary.records(), production.records());
    let report = |decision, reasons| HealthReport {
        decision,
        reasons,
        canary_records: nc,
        production_records: np,
        checks: checks.clone(),
    };
    let min = params.min_sample_per_arm;
    if nc < min || np < min {
        let why = format!(
            "not enough traffic: {nc} canary and {np} production records, {min} needed per arm"
        );
        return if final_look {
            report(Decision::Rollback, vec![why])
        } else {
            report(Decision::Continue, vec![why])
        };
    }
    let worse: Vec<String> = checks
        .iter()
        .filter(|c| c.finding == Finding::Worse)
        .map(reason)
        .collect();
    if !worse.is_empty() {
        return report(Decision::Rollback, worse);
    }
    let tested = checks
        .iter()
        .filter(|c| c.finding != Finding::NoData)
        .collect::<Vec<_>>();
    if tested.iter().all(|c| c.finding == Finding::NonInferior) {
        return report(
            Decision::PromoteStep,
            vec![format!(
                "non-inferior on every metric after {nc} canary and {np} production records"
            )],
        );
    }
    if final_look {
        return report(
            Decision::PromoteStep,
            vec![format!(
                "no metric worse after the step's last look ({nc} canary and {np} production records)"
            )],
        );
    }
    let open: Vec<String> = tested
        .iter()
        .filter(|c| c.finding == Finding::Inconclusive)
        .map(|c| format!("{:?} inconclusive", c.metric))
        .collect();
    report(Decision::Continue, open)
}

/// Detail of `AgentRolloutRolledBack`: an agent version was taken out of service because a
/// rollout's health check failed, or a person rolled it back (`upsell rollback`). Consumers
/// deduplicate on the event id (a retried rollback step may announce twice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentRolloutRolledBack {
    /// Agent id, e.g. `upsell-generator`.
    #[schemars(length(min = 1))]
    pub agent_id: String,
    /// The version rolled back.
    #[serde(with = "semver_lenient")]
    #[schemars(with = "String")]
    pub version: semver::Version,
    /// The production version that serves everyone now (absent when the agent has none).
    #[serde(
        default,
        with = "option_version",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub production_version: Option<semver::Version>,
    /// Its status before (canary, or production).
    pub from_status: AgentStatus,
    /// Its traffic weight before (percent).
    #[schemars(range(max = 100))]
    pub from_weight: u8,
    /// Why, one sentence per failed check (as recorded in the registry history).
    pub reasons: Vec<String>,
    /// The Step Functions execution that rolled it back (locally, the local execution id).
    #[schemars(length(min = 1))]
    pub execution_arn: String,
    /// When.
    pub rolled_back_at: DateTime<Utc>,
}

impl EventDetail for AgentRolloutRolledBack {
    const DETAIL_TYPE: &'static str = "AgentRolloutRolledBack";
    /// Not about a customer: the agent id.
    fn customer_id(&self) -> &str {
        &self.agent_id
    }
}

mod option_version {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<semver::Version>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<semver::Version>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                crate::agent::parse_version(&s)
                    .map_err(|e| serde::de::Error::custom(format!("invalid version {s:?}: {e}")))
            })
            .transpose()
    }
}

/// How one arm behaves in [`simulate`]: per record, the chance of an error, else of approval;
/// judge scores, latency and cost per record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmModel {
    /// Chance a record is a failure.
    pub error_rate: f64,
    /// Chance a record that did not fail is approved.
    pub approval_rate: f64,
    /// Median latency (ms); log-normal with `latency_sigma`.
    pub latency_median_ms: f64,
    /// Spread of the log latency.
    pub latency_sigma: f64,
    /// Model cost per record (US dollars).
    pub cost_usd: f64,
}

impl ArmModel {
    /// Production in the simulations: 1% errors, 80% approvals, 1.2 s median latency.
    pub const PRODUCTION: ArmModel = ArmModel {
        error_rate: 0.01,
        approval_rate: 0.80,
        latency_median_ms: 1200.0,
        latency_sigma: 0.35,
        cost_usd: 0.0004,
    };
}

/// A simulated rollout: traffic per look, the steps' weights, the looks per step.
#[derive(Debug, Clone, PartialEq)]
pub struct SimScenario {
    /// Name in the table.
    pub name: String,
    /// Production's behaviour.
    pub production: ArmModel,
    /// The canary's behaviour.
    pub canary: ArmModel,
    /// Records per look (both arms together).
    pub records_per_look: u64,
    /// The canary's share of traffic at each step, in percent (10, 50).
    pub steps: Vec<u8>,
    /// Looks per step.
    pub looks_per_step: u32,
}

/// How one simulated rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimEnd {
    /// Every step promoted.
    Promoted,
    /// Rolled back at step `step` (0-based), look `look` (1-based), after `canary_records`.
    RolledBack {
        /// Step index.
        step: usize,
        /// Look within the step.
        look: u32,
        /// Canary records seen by then.
        canary_records: u64,
    },
}

/// One scenario's measured figures over many seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSummary {
    /// Scenario name.
    pub name: String,
    /// Rollouts simulated.
    pub runs: u32,
    /// Share rolled back.
    pub rolled_back: f64,
    /// Share rolled back at the first step.
    pub rolled_back_first_step: f64,
    /// Median canary records at rollback (None when none was rolled back).
    pub median_canary_records_at_rollback: Option<u64>,
    /// Median looks (over every step) until the rollback.
    pub median_looks_at_rollback: Option<u32>,
}

fn draw_arm(rng: &mut ChaCha8Rng, m: &ArmModel, counts: &mut ArmCounts) {
    if counts.latency.len() < LATENCY_BUCKETS {
        counts.latency.resize(LATENCY_BUCKETS, 0);
    }
    if rng.random::<f64>() < m.error_rate {
        counts.errors += 1;
    } else {
        let approved = rng.random::<f64>() < m.approval_rate;
        let score = if approved {
            rng.random_range(7..=10)
        } else {
            rng.random_range(2..=6)
        };
        counts.score_sum += score;
        counts.score_count += 1;
        if approved {
            counts.approvals += 1;
        } else {
            counts.rejections += 1;
        }
    }
    // Box–Muller for a standard normal.
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    let ms = m.latency_median_ms * (m.latency_sigma * z).exp();
    counts.latency[latency_bucket(ms.round() as u64)] += 1;
    counts.cost_nano_usd += (m.cost_usd * 1e9).round() as u64;
}

/// Runs one simulated rollout with `seed`.
pub fn simulate_once(s: &SimScenario, params: &HealthParams, seed: u64) -> SimEnd {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut c, mut p) = (ArmCounts::default(), ArmCounts::default());
    let mut looks = 0;
    for (step, &weight) in s.steps.iter().enumerate() {
        for look in 1..=s.looks_per_step {
            looks += 1;
            for _ in 0..s.records_per_look {
                if rng.random_range(0..100u8) < weight {
                    draw_arm(&mut rng, &s.canary, &mut c);
                } else {
                    draw_arm(&mut rng, &s.production, &mut p);
                }
            }
            let r = check_health(&c, &p, params, look == s.looks_per_step);
            match r.decision {
                Decision::Continue => {}
                Decision::PromoteStep => break,
                Decision::Rollback => {
                    return SimEnd::RolledBack {
                        step,
                        look: looks,
                        canary_records: c.records(),
                    };
                }
            }
        }
    }
    SimEnd::Promoted
}

/// Runs `runs` rollouts of a scenario (seeds 0..runs) and summarises them.
pub fn simulate(s: &SimScenario, params: &HealthParams, runs: u32) -> SimSummary {
    let ends: Vec<SimEnd> = (0..runs)
        .map(|seed| simulate_once(s, params, u64::from(seed)))
        .collect();
    let mut at: Vec<(u64, u32)> = ends
        .iter()
        .filter_map(|e| match e {
            SimEnd::RolledBack {
                canary_records,
                look,
                ..
            } => Some((*canary_records, *look)),
            SimEnd::Promoted => None,
        })
        .collect();
    let first = ends
        .iter()
        .filter(|e| matches!(e, SimEnd::RolledBack { step: 0, .. }))
        .count();
    let n = f64::from(runs.max(1));
    let rolled = at.len();
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    let mut records: Vec<u64> = at.iter().map(|x| x.0).collect();
    at.sort_by_key(|x| x.1);
    SimSummary {
        name: s.name.clone(),
        runs,
        rolled_back: rolled as f64 / n,
        rolled_back_first_step: first as f64 / n,
        median_canary_records_at_rollback: median(&mut records),
        median_looks_at_rollback: at.get(at.len() / 2).map(|x| x.1),
    }
}

/// The scenarios of the table in docs/agents.md: a canary as good as production, and canaries
/// worse on one metric each, at `records_per_look` records per look, steps 10% and 50%.
pub fn standard_scenarios(records_per_look: u64, looks_per_step: u32) -> Vec<SimScenario> {
    let p = ArmModel::PRODUCTION;
    let sc = |name: &str, canary: ArmModel| SimScenario {
        name: name.into(),
        production: p,
        canary,
        records_per_look,
        steps: vec![10, 50],
        looks_per_step,
    };
    vec![
        sc("same as production", p),
        sc(
            "slightly better (+3 pts approval)",
            ArmModel {
                approval_rate: 0.83,
                ..p
            },
        ),
        sc(
            "approval -5 pts",
            ArmModel {
                approval_rate: 0.75,
                ..p
            },
        ),
        sc(
            "approval -15 pts",
            ArmModel {
                approval_rate: 0.65,
                ..p
            },
        ),
        sc(
            "errors 1% -> 6%",
            ArmModel {
                error_rate: 0.06,
                ..p
            },
        ),
        sc(
            "latency x1.5",
            ArmModel {
                latency_median_ms: 1800.0,
                ..p
            },
        ),
        sc(
            "cost x1.5",
            ArmModel {
                cost_usd: 0.0006,
                ..p
            },
        ),
    ]
}

/// The simulation table as markdown (what `upsell rollout simulate` prints).
pub fn simulation_table(rows: &[SimSummary]) -> String {
    let mut out = String::from(
        "| canary | runs | rolled back | at 10% | median canary records at rollback | median looks at rollback |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.1}% | {:.1}% | {} | {} |\n",
            r.name,
            r.runs,
            r.rolled_back * 100.0,
            r.rolled_back_first_step * 100.0,
            r.median_canary_records_at_rollback
                .map_or("-".into(), |x| x.to_string()),
            r.median_looks_at_rollback
                .map_or("-".into(), |x| x.to_string()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(approvals: u64, rejections: u64, errors: u64) -> ArmCounts {
        ArmCounts {
            approvals,
            rejections,
            errors,
            score_sum: approvals * 8 + rejections * 4,
            score_count: approvals + rejections,
            cost_nano_usd: (approvals + rejections + errors) * 400_000,
            latency: {
                let mut l = vec![0; LATENCY_BUCKETS];
                l[31] = (approvals + rejections + errors) * 95 / 100;
                l[32] = (approvals + rejections + errors) - l[31];
                l
            },
        }
    }

    #[test]
    fn radius_matches_the_mixture_likelihood_ratio() {
        let (v, tau2, alpha) = (0.0009, 0.0025, 0.0125);
        let r = msprt_radius(v, tau2, alpha);
        let lr = |d: f64| (v / (v + tau2)).sqrt() * (tau2 * d * d / (2.0 * v * (v + tau2))).exp();
        assert!((lr(r) - 1.0 / alpha).abs() < 1e-6 * (1.0 / alpha));
        assert!(lr(r * 0.99) < 1.0 / alpha);
        // Wider than the fixed-sample 98.75% interval (z = 2.50): the price of looking often.
        assert!(r > 2.5 * v.sqrt());
    }

    #[test]
    fn too_little_traffic_continues_then_rolls_back_at_the_last_look() {
        let (c, p) = (arm(10, 2, 0), arm(100, 20, 1));
        let params = HealthParams::default();
        assert_eq!(
            check_health(&c, &p, &params, false).decision,
            Decision::Continue
        );
        let r = check_health(&c, &p, &params, true);
        assert_eq!(r.decision, Decision::Rollback);
        assert!(
            r.reasons[0].contains("not enough traffic"),
            "{:?}",
            r.reasons
        );
    }

    #[test]
    fn a_clearly_worse_approval_rate_rolls_back_with_its_reason() {
        let r = check_health(
            &arm(250, 250, 0),
            &arm(4000, 1000, 10),
            &HealthParams::default(),
            false,
        );
        assert_eq!(r.decision, Decision::Rollback);
        assert!(
            r.reasons[0].starts_with("approval rate 50.0% vs production 79.8%"),
            "{:?}",
            r.reasons
        );
        // Errors and cost are as production's: no reason of theirs.
        assert!(
            r.reasons
                .iter()
                .all(|x| !x.starts_with("error rate") && !x.starts_with("cost"))
        );
    }

    #[test]
    fn errors_and_cost_roll_back() {
        let mut c = arm(400, 100, 60);
        let r = check_health(&c, &arm(4000, 1000, 50), &HealthParams::default(), false);
        assert!(
            r.checks
                .iter()
                .any(|k| k.metric == Metric::ErrorRate && k.finding == Finding::Worse)
        );
        assert_eq!(r.decision, Decision::Rollback);
        c = arm(400, 100, 5);
        c.cost_nano_usd *= 2;
        let r = check_health(&c, &arm(4000, 1000, 50), &HealthParams::default(), false);
        assert_eq!(r.decision, Decision::Rollback);
        assert!(
            r.reasons[0].starts_with("cost per message"),
            "{:?}",
            r.reasons
        );
    }

    #[test]
    fn a_slower_canary_rolls_back() {
        let mut c = arm(400, 100, 5);
        let n = c.records();
        c.latency = vec![0; LATENCY_BUCKETS];
        c.latency[31] = n / 2;
        c.latency[35] = n - n / 2;
        let r = check_health(&c, &arm(4000, 1000, 50), &HealthParams::default(), false);
        let lat = r
            .checks
            .iter()
            .find(|k| k.metric == Metric::SlowerThanProductionP95)
            .unwrap();
        assert_eq!(lat.finding, Finding::Worse, "{lat:?}");
        assert_eq!(r.decision, Decision::Rollback);
    }

    #[test]
    fn an_equal_canary_with_plenty_of_data_promotes_early() {
        let r = check_health(
            &arm(8000, 2000, 100),
            &arm(8000, 2000, 100),
            &HealthParams::default(),
            false,
        );
        assert_eq!(r.decision, Decision::PromoteStep, "{r:#?}");
    }

    #[test]
    fn since_subtracts_the_start_and_never_underflows() {
        let d = arm(10, 5, 1).since(&arm(4, 2, 0));
        assert_eq!((d.approvals, d.rejections, d.errors), (6, 3, 1));
        let z = arm(1, 1, 0).since(&arm(4, 2, 0));
        assert_eq!(z.records(), 0);
    }

    #[test]
    fn params_deserialise_with_defaults_and_name_bad_fields() {
        let p: HealthParams = serde_json::from_str(r#"{"minSamplePerArm": 30}"#).unwrap();
        assert_eq!(p.min_sample_per_arm, 30);
        assert_eq!(p.alpha, 0.05);
        assert!(serde_json::from_str::<HealthParams>(r#"{"alfa": 0.1}"#).is_err());
        let bad = HealthParams {
            alpha: 1.5,
            ..HealthParams::default()
        };
        assert!(bad.problems()[0].contains("alpha"));
    }

    /// The simulation, with loose bounds: a canary as good as production is rarely rolled back
    /// (the guarantee is α = 5%), clearly worse ones nearly always, and mostly at 10%.
    #[test]
    fn simulated_error_rates() {
        let params = HealthParams::default();
        let rows: Vec<SimSummary> = standard_scenarios(1000, 4)
            .iter()
            .map(|s| simulate(s, &params, 100))
            .collect();
        println!("{}", simulation_table(&rows));
        let row = |name: &str| rows.iter().find(|r| r.name.starts_with(name)).unwrap();
        assert!(row("same").rolled_back <= 0.10, "{:?}", row("same"));
        assert!(row("slightly").rolled_back <= 0.10, "{:?}", row("slightly"));
        for bad in ["approval -15", "latency", "cost"] {
            assert!(row(bad).rolled_back >= 0.95, "{:?}", row(bad));
            assert!(row(bad).rolled_back_first_step >= 0.9, "{:?}", row(bad));
        }
        assert!(row("errors").rolled_back >= 0.95, "{:?}", row("errors"));
        assert!(
            row("errors").rolled_back_first_step >= 0.6,
            "{:?}",
            row("errors")
        );
        assert!(
            row("approval -5").rolled_back >= 0.8,
            "{:?}",
            row("approval -5")
        );
    }
}
