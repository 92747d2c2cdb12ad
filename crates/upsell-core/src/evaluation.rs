//! Offline evaluation of an agent version against a baseline on the same historical events:
//! what one evaluated case records ([`EvalCase`]), how the cases are summarised and compared
//! ([`EvaluationReport::build`], statistics from [`crate::paired_stats`]), and the pass/fail
//! [`Decision`] a rollout consumes.
//!
//! A generator candidate and its baseline each write a message for the same customer with the
//! same point-in-time facts; the production judge scores both. A judge candidate and its
//! baseline judge the same messages; the candidate is measured by its agreement with the
//! baseline judge and with the brand checks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use crate::events::CustomerEvent;
use crate::features::{CustomerFeatures, FeatureStore};
use crate::paired_stats::{
    Bootstrap, Interval, Z_95, cohens_kappa, mcnemar_exact, mean_t, paired_bootstrap, percentile,
    wilson,
};
use crate::ports::{ContactStore, CustomerContact, PortError};

/// What is being evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EvalMode {
    /// A generator version: both versions write, the production judge judges.
    Generator,
    /// A judge version: the production generator writes once, both judges judge.
    Judge,
}

/// One version's result on one case.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmResult {
    /// `agentId@version` that wrote (generator mode) or judged (judge mode).
    pub agent: String,
    /// The message judged.
    #[serde(default)]
    pub message: String,
    /// Whether the judge approved it.
    #[serde(default)]
    pub approved: bool,
    /// Judge score 0..=10.
    #[serde(default)]
    pub score: u8,
    /// The judge's rejection reasons (empty when approved).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Brand rules the message broke (codes).
    #[serde(default)]
    pub brand_violations: Vec<String>,
    /// Model cost of writing and judging it, US dollars.
    #[serde(default)]
    pub cost_usd: f64,
    /// Model latency of writing and judging it, milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// The error name when this version failed on the case (then it counts as not approved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One evaluated event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvalCase {
    /// Evaluation id.
    pub evaluation_id: String,
    /// The historical event.
    pub event_id: String,
    /// Its customer.
    #[serde(default)]
    pub customer_id: String,
    /// Why no message was written for it at that time (no profile, opted out...), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The candidate's result (absent when skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<ArmResult>,
    /// The baseline's result (absent when skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<ArmResult>,
}

/// Where evaluated cases are kept until the report is written (local: SQLite; AWS: DynamoDB).
#[async_trait::async_trait]
pub trait EvaluationStore: Send + Sync {
    /// Stores one case (replaces an earlier one for the same evaluation and event).
    async fn put_case(&self, case: &EvalCase) -> Result<(), PortError>;
    /// Every case of an evaluation, in event-id order.
    async fn cases(&self, evaluation_id: &str) -> Result<Vec<EvalCase>, PortError>;
}

/// What was known about a customer at one moment: nothing that happened after it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KnownAt {
    /// The feature snapshot of the customer's last event at or before the moment.
    pub features: Option<CustomerFeatures>,
    /// The contact from the last profile event at or before the moment.
    pub contact: Option<CustomerContact>,
}

/// Point-in-time reads for evaluation: what was known about a customer when an event happened.
#[async_trait::async_trait]
pub trait CustomerTimeline: Send + Sync {
    /// Features and contact as known at `at` (events at `at` included, later ones never).
    async fn known_at(&self, customer_id: &str, at: DateTime<Utc>) -> Result<KnownAt, PortError>;
}

/// A timeline replayed from a dataset of events (in time order per customer): exact point in
/// time for features and contacts, whatever order the events come in.
#[derive(Debug, Clone, Default)]
pub struct ReplayTimeline {
    features: std::collections::HashMap<String, Vec<CustomerFeatures>>,
    contacts: std::collections::HashMap<String, Vec<CustomerContact>>,
}

impl ReplayTimeline {
    /// Replays `events` (any order; sorted by time per customer, ties in the given order).
    pub fn from_events(events: &[CustomerEvent]) -> Result<ReplayTimeline, PortError> {
        let mut sorted: Vec<&CustomerEvent> = events.iter().collect();
        sorted.sort_by_key(|e| e.time());
        let mut t = ReplayTimeline::default();
        for e in sorted {
            let history = t.features.entry(e.customer_id().to_owned()).or_default();
            let next = CustomerFeatures::next(history.last(), e)?;
            history.push(next);
            if let CustomerEvent::CustomerProfileUpdated(p) = e {
                t.contacts
                    .entry(e.customer_id().to_owned())
                    .or_default()
                    .push(CustomerContact {
                        customer_id: e.customer_id().to_owned(),
                        first_name: p.detail.first_name.clone(),
                        marketing_opt_in: p.detail.marketing_opt_in,
                        updated_at: e.time(),
                    });
            }
        }
        Ok(t)
    }

    /// Customers in the timeline.
    pub fn customers(&self) -> usize {
        self.features.len()
    }
}

#[async_trait::async_trait]
impl CustomerTimeline for ReplayTimeline {
    async fn known_at(&self, customer_id: &str, at: DateTime<Utc>) -> Result<KnownAt, PortError> {
        let features = self.features.get(customer_id).and_then(|h| {
            let n = h.partition_point(|f| f.last_event_time <= at);
            n.checked_sub(1).map(|i| h[i].clone().at(at))
        });
        let contact = self.contacts.get(customer_id).and_then(|h| {
            let n = h.partition_point(|c| c.updated_at <= at);
            n.checked_sub(1).map(|i| h[i].clone())
        });
        Ok(KnownAt { features, contact })
    }
}

/// The timeline of the live stores (AWS: the DynamoDB feature store keeps every snapshot by
/// time). The contact store keeps only the newest contact, so a contact updated after `at` is
/// withheld rather than leaked: the case then counts as having no profile at the time.
pub struct StoresTimeline {
    /// Feature snapshots by time.
    pub features: std::sync::Arc<dyn FeatureStore>,
    /// Newest contacts.
    pub contacts: std::sync::Arc<dyn ContactStore>,
}

impl std::fmt::Debug for StoresTimeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoresTimeline")
    }
}

#[async_trait::async_trait]
impl CustomerTimeline for StoresTimeline {
    async fn known_at(&self, customer_id: &str, at: DateTime<Utc>) -> Result<KnownAt, PortError> {
        let features = self.features.get(customer_id, Some(at)).await?;
        let contact = self
            .contacts
            .get(customer_id)
            .await?
            .filter(|c| c.updated_at <= at);
        Ok(KnownAt { features, contact })
    }
}

/// The thresholds of the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionCriteria {
    /// Fewest paired cases a decision may rest on.
    pub min_cases: u64,
    /// Non-inferiority margin on the approval rate: the lower 95% bound of (candidate -
    /// baseline) must not be below `-approval_margin`.
    pub approval_margin: f64,
    /// Non-inferiority margin on the mean score (points of 0..10).
    pub score_margin: f64,
    /// Cases where only the candidate broke a brand rule that may be tolerated.
    pub max_new_brand_failures: u64,
    /// Judge mode: lowest acceptable lower 95% bound of the agreement with the baseline judge.
    pub min_agreement: f64,
    /// Bootstrap resamples.
    pub resamples: u32,
    /// Bootstrap seed.
    pub seed: u64,
}

impl Default for DecisionCriteria {
    fn default() -> Self {
        DecisionCriteria {
            min_cases: 30,
            approval_margin: 0.05,
            score_margin: 0.5,
            max_new_brand_failures: 0,
            min_agreement: 0.8,
            resamples: 5000,
            seed: 42,
        }
    }
}

/// A rate with its 95% Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    /// Successes.
    pub count: u64,
    /// Trials.
    pub of: u64,
    /// `count / of` (0 when `of` is 0).
    pub value: f64,
    /// Wilson 95% interval.
    pub ci95: Interval,
}

impl Rate {
    fn new(count: u64, of: u64) -> Self {
        Rate {
            count,
            of,
            value: if of == 0 {
                0.0
            } else {
                count as f64 / of as f64
            },
            ci95: wilson(count, of, Z_95),
        }
    }
}

/// A mean with its 95% Student-t interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mean {
    /// The mean.
    pub value: f64,
    /// Student-t 95% interval.
    pub ci95: Interval,
}

/// One version's figures over the paired cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmSummary {
    /// `agentId@version`.
    pub agent: String,
    /// Approval rate.
    pub approval: Rate,
    /// Mean judge score.
    pub score: Mean,
    /// Cases whose message broke a brand rule.
    pub brand_failures: u64,
    /// Cases where this version failed (error).
    pub errors: u64,
    /// Mean model cost per message, US dollars.
    pub cost_per_message_usd: f64,
    /// Mean model latency per message, milliseconds.
    pub mean_latency_ms: f64,
    /// 95th percentile model latency per message, milliseconds.
    pub p95_latency_ms: f64,
}

/// The exact McNemar comparison of approvals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalDifference {
    /// Candidate minus baseline approval rate.
    pub estimate: f64,
    /// Paired-bootstrap 95% interval of the difference.
    pub ci95: Interval,
    /// Cases only the candidate got approved.
    pub candidate_only: u64,
    /// Cases only the baseline got approved.
    pub baseline_only: u64,
    /// Exact McNemar two-sided p-value.
    pub p_value: f64,
}

/// One rejection reason's count for both versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCount {
    /// The reason code.
    pub reason: String,
    /// Candidate messages rejected for it.
    pub candidate: u64,
    /// Baseline messages rejected for it.
    pub baseline: u64,
}

/// Judge mode: how the candidate judge agrees with the baseline judge and the brand checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Agreement {
    /// Same approve/reject decision as the baseline judge.
    pub with_baseline: Rate,
    /// Cohen's kappa of the two judges' decisions (absent when undefined).
    pub kappa: Option<f64>,
    /// Messages breaking a brand rule that the candidate approved (must be 0).
    pub approved_brand_failures: u64,
}

/// A case where the two versions ended differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disagreement {
    /// The event.
    pub event_id: String,
    /// The candidate's result.
    pub candidate: ArmResult,
    /// The baseline's result.
    pub baseline: ArmResult,
}

/// Pass or fail, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Whether the candidate may go on to a canary rollout.
    pub pass: bool,
    /// One sentence per criterion, failed ones first.
    pub reasons: Vec<String>,
    /// The thresholds applied.
    pub criteria: DecisionCriteria,
}

/// What was compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationSubject {
    /// Evaluation id.
    pub evaluation_id: String,
    /// Generator or judge.
    pub mode: EvalMode,
    /// `agentId@version` of the candidate.
    pub candidate: String,
    /// `agentId@version` of the baseline.
    pub baseline: String,
    /// `agentId@version` of the generator (judge mode) or judge (generator mode) both share.
    pub shared: String,
    /// The dataset, as named by the user.
    pub dataset: String,
}

/// The evaluation report: JSON is the contract; Markdown and HTML are renderings of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationReport {
    /// What was compared.
    pub subject: EvaluationSubject,
    /// Events read from the dataset.
    pub events: u64,
    /// Events both versions were run on.
    pub paired_cases: u64,
    /// Events with no message at the time, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// The candidate's figures.
    pub candidate: ArmSummary,
    /// The baseline's figures.
    pub baseline: ArmSummary,
    /// Approval: paired difference and exact McNemar test.
    pub approval_difference: ApprovalDifference,
    /// Score: paired bootstrap of the mean difference.
    pub score_difference: Bootstrap,
    /// Rejection reasons side by side, most frequent first.
    pub rejection_reasons: Vec<ReasonCount>,
    /// Judge mode only: agreement of the candidate judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<Agreement>,
    /// Up to [`EvaluationReport::MAX_EXAMPLES`] cases where the versions disagree.
    pub disagreements: Vec<Disagreement>,
    /// The decision.
    pub decision: Decision,
}

fn summarise(agent: &str, arms: &[&ArmResult]) -> ArmSummary {
    let n = arms.len() as u64;
    let scores: Vec<f64> = arms.iter().map(|a| f64::from(a.score)).collect();
    let latencies: Vec<f64> = arms.iter().map(|a| a.latency_ms as f64).collect();
    let (mean, ci95) = mean_t(&scores).unwrap_or((
        0.0,
        Interval {
            low: 0.0,
            high: 0.0,
        },
    ));
    let per = |total: f64| if n == 0 { 0.0 } else { total / n as f64 };
    ArmSummary {
        agent: agent.to_owned(),
        approval: Rate::new(arms.iter().filter(|a| a.approved).count() as u64, n),
        score: Mean { value: mean, ci95 },
        brand_failures: arms
            .iter()
            .filter(|a| !a.brand_violations.is_empty())
            .count() as u64,
        errors: arms.iter().filter(|a| a.error.is_some()).count() as u64,
        cost_per_message_usd: per(arms.iter().map(|a| a.cost_usd).sum()),
        mean_latency_ms: per(latencies.iter().sum()),
        p95_latency_ms: percentile(&latencies, 95.0).unwrap_or(0.0),
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

impl EvaluationReport {
    /// Disagreement examples kept in a report.
    pub const MAX_EXAMPLES: usize = 10;

    /// Builds the report of `cases` (paired and skipped) out of `events` dataset events.
    pub fn build(
        subject: EvaluationSubject,
        events: u64,
        cases: &[EvalCase],
        criteria: DecisionCriteria,
    ) -> EvaluationReport {
        let mut skipped = BTreeMap::new();
        let mut pairs: Vec<(&str, &ArmResult, &ArmResult)> = Vec::new();
        for c in cases {
            match (&c.skipped, &c.candidate, &c.baseline) {
                (None, Some(a), Some(b)) => pairs.push((&c.event_id, a, b)),
                (reason, _, _) => {
                    let reason = reason.clone().unwrap_or_else(|| "incomplete".into());
                    *skipped.entry(reason).or_insert(0) += 1;
                }
            }
        }
        let cand: Vec<&ArmResult> = pairs.iter().map(|p| p.1).collect();
        let base: Vec<&ArmResult> = pairs.iter().map(|p| p.2).collect();
        let candidate = summarise(&subject.candidate, &cand);
        let baseline = summarise(&subject.baseline, &base);

        let candidate_only = pairs
            .iter()
            .filter(|p| p.1.approved && !p.2.approved)
            .count() as u64;
        let baseline_only = pairs
            .iter()
            .filter(|p| !p.1.approved && p.2.approved)
            .count() as u64;
        let approval_diffs: Vec<f64> = pairs
            .iter()
            .map(|p| f64::from(u8::from(p.1.approved)) - f64::from(u8::from(p.2.approved)))
            .collect();
        let score_diffs: Vec<f64> = pairs
            .iter()
            .map(|p| f64::from(p.1.score) - f64::from(p.2.score))
            .collect();
        let zero = Bootstrap {
            estimate: 0.0,
            interval: Interval {
                low: 0.0,
                high: 0.0,
            },
            p_value: 1.0,
            resamples: 0,
            seed: criteria.seed,
        };
        let approval_boot =
            paired_bootstrap(&approval_diffs, criteria.resamples, criteria.seed).unwrap_or(zero);
        let approval_difference = ApprovalDifference {
            estimate: approval_boot.estimate,
            ci95: approval_boot.interval,
            candidate_only,
            baseline_only,
            p_value: mcnemar_exact(candidate_only, baseline_only),
        };
        let score_difference = paired_bootstrap(
            &score_diffs,
            criteria.resamples,
            criteria.seed.wrapping_add(1),
        )
        .unwrap_or(zero);

        let mut reasons: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (_, a, b) in &pairs {
            for r in &a.reasons {
                reasons.entry(r.clone()).or_default().0 += 1;
            }
            for r in &b.reasons {
                reasons.entry(r.clone()).or_default().1 += 1;
            }
        }
        let mut rejection_reasons: Vec<ReasonCount> = reasons
            .into_iter()
            .map(|(reason, (candidate, baseline))| ReasonCount {
                reason,
                candidate,
                baseline,
            })
            .collect();
        rejection_reasons.sort_by(|x, y| {
            (y.candidate + y.baseline)
                .cmp(&(x.candidate + x.baseline))
                .then_with(|| x.reason.cmp(&y.reason))
        });

        let agreement = (subject.mode == EvalMode::Judge).then(|| {
            let count = |a: bool, b: bool| {
                pairs
                    .iter()
                    .filter(|p| p.1.approved == a && p.2.approved == b)
                    .count() as u64
            };
            let (yy, yn, ny, nn) = (
                count(true, true),
                count(true, false),
                count(false, true),
                count(false, false),
            );
            Agreement {
                with_baseline: Rate::new(yy + nn, pairs.len() as u64),
                kappa: cohens_kappa(yy, yn, ny, nn),
                approved_brand_failures: cand
                    .iter()
                    .filter(|a| a.approved && !a.brand_violations.is_empty())
                    .count() as u64,
            }
        });

        let disagreements = pairs
            .iter()
            .filter(|p| p.1.approved != p.2.approved || p.1.error.is_some() != p.2.error.is_some())
            .take(Self::MAX_EXAMPLES)
            .map(|p| Disagreement {
                event_id: p.0.to_owned(),
                candidate: p.1.clone(),
                baseline: p.2.clone(),
            })
            .collect();
        let new_brand_failures = pairs
            .iter()
            .filter(|p| !p.1.brand_violations.is_empty() && p.2.brand_violations.is_empty())
            .count() as u64;

        let decision = decide(
            &subject,
            pairs.len() as u64,
            &candidate,
            &baseline,
            &approval_difference,
            &score_difference,
            agreement.as_ref(),
            new_brand_failures,
            criteria,
        );
        EvaluationReport {
            subject,
            events,
            paired_cases: pairs.len() as u64,
            skipped,
            candidate,
            baseline,
            approval_difference,
            score_difference,
            rejection_reasons,
            agreement,
            disagreements,
            decision,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decide(
    subject: &EvaluationSubject,
    n: u64,
    candidate: &ArmSummary,
    baseline: &ArmSummary,
    approval: &ApprovalDifference,
    score: &Bootstrap,
    agreement: Option<&Agreement>,
    new_brand_failures: u64,
    criteria: DecisionCriteria,
) -> Decision {
    let mut failed = Vec::new();
    let mut passed = Vec::new();
    let mut check = |ok: bool, text: String| {
        if ok {
            passed.push(text);
        } else {
            failed.push(text);
        }
    };
    check(
        n >= criteria.min_cases,
        format!(
            "{n} paired cases (at least {} needed for a decision)",
            criteria.min_cases
        ),
    );
    check(
        candidate.errors <= baseline.errors,
        format!(
            "candidate failed on {} cases, baseline on {}",
            candidate.errors, baseline.errors
        ),
    );
    match (subject.mode, agreement) {
        (EvalMode::Judge, Some(a)) => {
            check(
                a.with_baseline.ci95.low >= criteria.min_agreement,
                format!(
                    "agreement with the baseline judge {} (95% CI {} .. {}; lower bound must be at least {})",
                    pct(a.with_baseline.value),
                    pct(a.with_baseline.ci95.low),
                    pct(a.with_baseline.ci95.high),
                    pct(criteria.min_agreement)
                ),
            );
            check(
                a.approved_brand_failures == 0,
                format!(
                    "candidate judge approved {} messages that break a brand rule",
                    a.approved_brand_failures
                ),
            );
        }
        _ => {
            check(
                new_brand_failures <= criteria.max_new_brand_failures,
                format!(
                    "{new_brand_failures} cases where only the candidate broke a brand rule (at most {} allowed; candidate {} in all, baseline {})",
                    criteria.max_new_brand_failures,
                    candidate.brand_failures,
                    baseline.brand_failures
                ),
            );
            check(
                approval.ci95.low >= -criteria.approval_margin,
                format!(
                    "approval rate {} vs {}: difference {:+.1} points (95% CI {:+.1} .. {:+.1}, exact McNemar p = {:.3}); not worse by more than {:.1} points",
                    pct(candidate.approval.value),
                    pct(baseline.approval.value),
                    approval.estimate * 100.0,
                    approval.ci95.low * 100.0,
                    approval.ci95.high * 100.0,
                    approval.p_value,
                    criteria.approval_margin * 100.0
                ),
            );
            check(
                score.interval.low >= -criteria.score_margin,
                format!(
                    "mean score {:.2} vs {:.2}: difference {:+.2} (95% CI {:+.2} .. {:+.2}, paired bootstrap p = {:.3}); not worse by more than {:.2}",
                    candidate.score.value,
                    baseline.score.value,
                    score.estimate,
                    score.interval.low,
                    score.interval.high,
                    score.p_value,
                    criteria.score_margin
                ),
            );
        }
    }
    let pass = failed.is_empty();
    let reasons = failed
        .into_iter()
        .map(|r| format!("FAIL: {r}"))
        .chain(passed.into_iter().map(|r| format!("ok: {r}")))
        .collect();
    Decision {
        pass,
        reasons,
        criteria,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(agent: &str, approved: bool, score: u8, brand: &[&str]) -> ArmResult {
        ArmResult {
            agent: agent.into(),
            message: format!("{agent} {score}"),
            approved,
            score,
            reasons: if approved {
                vec![]
            } else if brand.is_empty() {
                vec!["tone".into()]
            } else {
                brand.iter().map(|s| s.to_string()).collect()
            },
            brand_violations: brand.iter().map(|s| s.to_string()).collect(),
            cost_usd: 0.001,
            latency_ms: 100,
            error: None,
        }
    }

    fn subject(mode: EvalMode) -> EvaluationSubject {
        EvaluationSubject {
            evaluation_id: "e1".into(),
            mode,
            candidate: "g@2.0.0".into(),
            baseline: "g@1.0.0".into(),
            shared: "j@1.0.0".into(),
            dataset: "d.jsonl".into(),
        }
    }

    fn case(i: usize, a: ArmResult, b: ArmResult) -> EvalCase {
        EvalCase {
            evaluation_id: "e1".into(),
            event_id: format!("ev-{i:03}"),
            customer_id: "c".into(),
            skipped: None,
            candidate: Some(a),
            baseline: Some(b),
        }
    }

    #[test]
    fn an_identical_candidate_passes() {
        let cases: Vec<EvalCase> = (0..100)
            .map(|i| {
                let approved = i % 5 != 0;
                let score = if approved { 8 } else { 5 };
                case(
                    i,
                    arm("g@2.0.0", approved, score, &[]),
                    arm("g@1.0.0", approved, score, &[]),
                )
            })
            .collect();
        let r = EvaluationReport::build(
            subject(EvalMode::Generator),
            100,
            &cases,
            Default::default(),
        );
        assert!(r.decision.pass, "{:#?}", r.decision);
        assert_eq!(r.candidate.approval.count, 80);
        assert_eq!(r.approval_difference.estimate, 0.0);
        assert_eq!(r.approval_difference.p_value, 1.0);
        assert_eq!(
            r.score_difference.interval,
            Interval {
                low: 0.0,
                high: 0.0
            }
        );
        assert!(r.disagreements.is_empty());
        assert_eq!(
            r.rejection_reasons[0],
            ReasonCount {
                reason: "tone".into(),
                candidate: 20,
                baseline: 20
            }
        );
    }

    #[test]
    fn a_candidate_breaking_a_brand_rule_fails_and_says_why() {
        let mut cases: Vec<EvalCase> = (0..100)
            .map(|i| {
                case(
                    i,
                    arm("g@2.0.0", true, 8, &[]),
                    arm("g@1.0.0", true, 8, &[]),
                )
            })
            .collect();
        cases[3].candidate = Some(arm("g@2.0.0", false, 4, &["banned-phrase"]));
        cases.push(EvalCase {
            evaluation_id: "e1".into(),
            event_id: "ev-skip".into(),
            customer_id: "c".into(),
            skipped: Some("opted-out".into()),
            candidate: None,
            baseline: None,
        });
        let r = EvaluationReport::build(
            subject(EvalMode::Generator),
            101,
            &cases,
            Default::default(),
        );
        assert!(!r.decision.pass);
        assert!(
            r.decision.reasons[0]
                .starts_with("FAIL: 1 cases where only the candidate broke a brand rule"),
            "{:?}",
            r.decision.reasons
        );
        assert_eq!(r.skipped.get("opted-out"), Some(&1));
        assert_eq!(r.paired_cases, 100);
        assert_eq!(r.disagreements.len(), 1);
        assert_eq!(r.approval_difference.baseline_only, 1);
    }

    #[test]
    fn a_clearly_worse_candidate_fails_on_approval_and_too_few_cases_fail() {
        let cases: Vec<EvalCase> = (0..100)
            .map(|i| {
                case(
                    i,
                    arm("g@2.0.0", i % 2 == 0, if i % 2 == 0 { 8 } else { 5 }, &[]),
                    arm("g@1.0.0", true, 8, &[]),
                )
            })
            .collect();
        let r = EvaluationReport::build(
            subject(EvalMode::Generator),
            100,
            &cases,
            Default::default(),
        );
        assert!(!r.decision.pass);
        assert!(r.approval_difference.p_value < 1e-10);
        assert!(
            r.decision
                .reasons
                .iter()
                .any(|x| x.starts_with("FAIL: approval rate 50.0% vs 100.0%")),
            "{:?}",
            r.decision.reasons
        );
        let r = EvaluationReport::build(
            subject(EvalMode::Generator),
            5,
            &cases[..5],
            Default::default(),
        );
        assert!(r.decision.reasons[0].starts_with("FAIL: 5 paired cases"));
    }

    #[test]
    fn judge_mode_measures_agreement() {
        let cases: Vec<EvalCase> = (0..100)
            .map(|i| {
                let base = i % 2 == 0;
                let cand = if i < 10 { !base } else { base };
                case(
                    i,
                    arm("j@2.0.0", cand, 7, &[]),
                    arm("j@1.0.0", base, 7, &[]),
                )
            })
            .collect();
        let r = EvaluationReport::build(subject(EvalMode::Judge), 100, &cases, Default::default());
        let a = r.agreement.unwrap();
        assert_eq!(a.with_baseline.count, 90);
        assert!((a.kappa.unwrap() - 0.8).abs() < 1e-12);
        assert!(r.decision.pass, "{:?}", r.decision.reasons);
    }

    #[tokio::test]
    async fn the_replayed_timeline_never_shows_what_came_later() {
        let ev = |v: serde_json::Value| -> CustomerEvent { serde_json::from_value(v).unwrap() };
        let profile = |id: &str, time: &str, name: &str, opt_in: bool| {
            ev(
                serde_json::json!({"id": id, "source": "t", "detail-type": "CustomerProfileUpdated", "time": time,
                "detail": {"customerId": "c1", "firstName": name, "lastName": "X", "email": "a@b.co",
                  "address": {"street": "1 A St", "city": "B", "state": "CA", "postalCode": "90001", "region": "west"},
                  "property": {"homeType": "single-family", "lotSizeSqft": 5000, "hasPool": false, "pets": [], "yearBuilt": 1990},
                  "marketingOptIn": opt_in}}),
            )
        };
        let service = |id: &str, time: &str, date: &str| {
            ev(
                serde_json::json!({"id": id, "source": "t", "detail-type": "ServiceCompleted", "time": time,
                "detail": {"customerId": "c1", "service": "lawn-care", "serviceDate": date, "priceCents": 5000}}),
            )
        };
        // Given out of order on purpose.
        let events = vec![
            service("s2", "2025-06-01T00:00:00Z", "2025-06-01"),
            profile("p2", "2025-05-01T00:00:00Z", "Anna", false),
            profile("p1", "2025-01-01T00:00:00Z", "Ann", true),
            service("s1", "2025-03-01T00:00:00Z", "2025-03-01"),
        ];
        let t = ReplayTimeline::from_events(&events).unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let k = t.known_at("c1", at("2025-03-01T00:00:00Z")).await.unwrap();
        let c = k.contact.unwrap();
        assert_eq!((c.first_name.as_str(), c.marketing_opt_in), ("Ann", true));
        assert_eq!(k.features.unwrap().service_count, 1);
        let k = t.known_at("c1", at("2025-06-01T00:00:00Z")).await.unwrap();
        assert_eq!(k.contact.unwrap().first_name, "Anna");
        assert_eq!(k.features.unwrap().service_count, 2);
        let k = t.known_at("c1", at("2024-12-31T00:00:00Z")).await.unwrap();
        assert_eq!(k, KnownAt::default());
    }
}
