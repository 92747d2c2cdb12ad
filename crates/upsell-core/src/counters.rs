//! Per-version live counters: what a rollout reads to compare agent versions while they serve
//! traffic, in AWS (a DynamoDB table updated with atomic `ADD`) and locally (SQLite) alike.
//!
//! The rules are written once, here: which terminal records count for which version
//! ([`record_deltas`]), the latency buckets ([`latency_bucket`], [`LATENCY_BOUNDS_MS`]) and how
//! rates, means and percentiles are read back ([`VersionCounts`]). Adapters only add a
//! [`CounterDelta`] to the stored sums and read the sums back.
//!
//! Every count is an integer, so that SQLite and DynamoDB hold exactly the same figures: cost is
//! kept in nano-dollars (10^-9 US dollars), scores as the sum of integer judge scores.
//!
//! The publish worker adds the deltas right after it writes a terminal record; a redelivery that
//! writes nothing adds nothing. A counter write that fails after the record was written fails
//! the call (a `Publish` `WorkerErrors` data point); the Retry then finds the record and adds
//! nothing, so each record is counted at most once. The message records stay the source of
//! truth; CloudWatch stays the source for dashboards and alarms.

use async_trait::async_trait;
use semver::Version;
use serde::Serialize;

use crate::agent::AgentRef;
use crate::events::UpsellResponse;
use crate::message::{MessageRecord, MessageStatus};
use crate::ports::PortError;

/// Number of latency buckets: one per bound of [`LATENCY_BOUNDS_MS`] plus one overflow bucket.
pub const LATENCY_BUCKETS: usize = 62;

/// Upper bounds (inclusive, milliseconds) of the latency buckets: 10 buckets per decade,
/// bucket `i` ends at 10^(i/10) ms, from 1 ms (bucket 0) to 1,000,000 ms (bucket 60, about 17
/// minutes). Bucket 61 holds everything slower. A percentile read from the buckets is the
/// bucket's upper bound, so it overstates the true value by at most 26% (10^0.1).
pub const LATENCY_BOUNDS_MS: [f64; LATENCY_BUCKETS - 1] = {
    // 10^(i/10) for i in 0..=60, written out so the bounds are the same on every platform.
    const DECADE: [f64; 10] = [
        1.0,
        1.258_925_411_794_167_2,
        1.584_893_192_461_113_5,
        1.995_262_314_968_879_6,
        2.511_886_431_509_58,
        3.162_277_660_168_379_5,
        3.981_071_705_534_972_3,
        5.011_872_336_272_722,
        6.309_573_444_801_933,
        7.943_282_347_242_815,
    ];
    let mut bounds = [0.0; LATENCY_BUCKETS - 1];
    let mut scale = 1.0;
    let mut i = 0;
    while i < LATENCY_BUCKETS - 1 {
        bounds[i] = DECADE[i % 10] * scale;
        i += 1;
        if i % 10 == 0 {
            scale *= 10.0;
        }
    }
    bounds
};

/// The bucket of a latency: the first whose upper bound is at or above it.
pub fn latency_bucket(ms: u64) -> usize {
    // u64 -> f64 is exact below 2^53 ms (285,000 years).
    let ms = ms as f64;
    LATENCY_BOUNDS_MS.partition_point(|&bound| bound < ms)
}

/// What one terminal record adds to one agent version's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterDelta {
    /// Approved and published records.
    pub approvals: u64,
    /// Records rejected after the last attempt.
    pub rejections: u64,
    /// Records of failed workflows.
    pub errors: u64,
    /// Sum of the judge scores (0..=10) of every judged attempt.
    pub score_sum: u64,
    /// Number of judged attempts.
    pub score_count: u64,
    /// This version's own model cost, in nano-dollars.
    pub cost_nano_usd: u64,
    /// The record's latency bucket ([`latency_bucket`]), when it has a latency.
    pub latency_bucket: Option<usize>,
    /// Customer responses to the version's approved messages ([`response_deltas`]), in
    /// [`UpsellResponse::ALL`] order: accepted, declined, no answer, opted out.
    pub responses: [u64; 4],
}

/// The sums of one agent version's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionCounts {
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
    /// Model cost of this version, in nano-dollars.
    pub cost_nano_usd: u64,
    /// Records per latency bucket ([`LATENCY_BUCKETS`] entries).
    pub latency: Vec<u64>,
    /// Responses to the version's approved messages, in [`UpsellResponse::ALL`] order.
    pub responses: [u64; 4],
}

impl Default for VersionCounts {
    fn default() -> Self {
        VersionCounts {
            approvals: 0,
            rejections: 0,
            errors: 0,
            score_sum: 0,
            score_count: 0,
            cost_nano_usd: 0,
            latency: vec![0; LATENCY_BUCKETS],
            responses: [0; 4],
        }
    }
}

impl VersionCounts {
    /// Adds one delta (what every adapter does, atomically, in its store).
    pub fn apply(&mut self, d: &CounterDelta) {
        self.approvals += d.approvals;
        self.rejections += d.rejections;
        self.errors += d.errors;
        self.score_sum += d.score_sum;
        self.score_count += d.score_count;
        self.cost_nano_usd += d.cost_nano_usd;
        if let Some(b) = d.latency_bucket {
            self.latency[b.min(LATENCY_BUCKETS - 1)] += 1;
        }
        for (sum, add) in self.responses.iter_mut().zip(d.responses) {
            *sum += add;
        }
    }

    /// Responses counted (every kind).
    pub fn response_count(&self) -> u64 {
        self.responses.iter().sum()
    }

    /// Accepted responses over responses, when there is any: of the approved messages the
    /// customers answered (a `no-answer` report included), the share they accepted.
    pub fn acceptance_rate(&self) -> Option<f64> {
        ratio(self.responses[0], self.response_count())
    }

    /// Records counted: approvals, rejections and errors.
    pub fn records(&self) -> u64 {
        self.approvals + self.rejections + self.errors
    }

    /// Approvals over records, when there is any.
    pub fn approval_rate(&self) -> Option<f64> {
        ratio(self.approvals, self.records())
    }

    /// Errors over records, when there is any.
    pub fn error_rate(&self) -> Option<f64> {
        ratio(self.errors, self.records())
    }

    /// Mean judge score, when any attempt was judged.
    pub fn mean_score(&self) -> Option<f64> {
        ratio(self.score_sum, self.score_count)
    }

    /// Model cost in US dollars.
    pub fn cost_usd(&self) -> f64 {
        self.cost_nano_usd as f64 / 1e9
    }

    /// The latency at or below which a share `q` (0..=1) of the records fall, read from the
    /// buckets: the upper bound of the bucket that holds the rank `ceil(q * n)` record
    /// (`f64::INFINITY` for the overflow bucket). `None` without records.
    pub fn latency_percentile_ms(&self, q: f64) -> Option<f64> {
        let n: u64 = self.latency.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.latency.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        None
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// US dollars as whole nano-dollars (negative or non-finite costs count as 0).
pub fn nano_usd(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e9).round() as u64
    } else {
        0
    }
}

/// The deltas one terminal record adds: one for the generator version and one for the judge
/// version, each with its own model cost (`generator_cost_usd`, `judge_cost_usd`) and the
/// record's outcome, judged attempts and latency. A version that did not run
/// ([`AgentRef::is_placeholder`]) gets nothing; skipped records count for no version.
pub fn record_deltas(
    record: &MessageRecord,
    generator_cost_usd: f64,
    judge_cost_usd: f64,
) -> Vec<(AgentRef, CounterDelta)> {
    let base = CounterDelta {
        approvals: u64::from(record.status == MessageStatus::Approved),
        rejections: u64::from(record.status == MessageStatus::Rejected),
        errors: u64::from(record.status == MessageStatus::Failed),
        score_sum: record
            .attempts
            .iter()
            .map(|a| u64::from(a.verdict.score))
            .sum(),
        score_count: record.attempts.len() as u64,
        cost_nano_usd: 0,
        latency_bucket: Some(latency_bucket(record.latency_ms)),
        responses: [0; 4],
    };
    if record.status == MessageStatus::Skipped {
        return Vec::new();
    }
    [
        (&record.generator, generator_cost_usd),
        (&record.judge, judge_cost_usd),
    ]
    .into_iter()
    .filter(|(agent, _)| !agent.is_placeholder())
    .map(|(agent, cost)| {
        (
            agent.clone(),
            CounterDelta {
                cost_nano_usd: nano_usd(cost),
                ..base.clone()
            },
        )
    })
    .collect()
}

/// What one customer response adds: one count of `response` for the generator and the judge
/// version of the approved message it answers (the message record names them). A record that
/// is not approved, or a version that did not run, gets nothing.
pub fn response_deltas(
    record: &MessageRecord,
    response: UpsellResponse,
) -> Vec<(AgentRef, CounterDelta)> {
    if record.status != MessageStatus::Approved {
        return Vec::new();
    }
    let mut responses = [0; 4];
    if let Some(i) = UpsellResponse::ALL.iter().position(|r| *r == response) {
        responses[i] = 1;
    }
    [&record.generator, &record.judge]
        .into_iter()
        .filter(|agent| !agent.is_placeholder())
        .map(|agent| {
            (
                agent.clone(),
                CounterDelta {
                    responses,
                    ..CounterDelta::default()
                },
            )
        })
        .collect()
}

/// One version's counters as `upsell monitor` shows them (all time, from the store).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionCounterRow {
    /// Agent id.
    pub agent_id: String,
    /// Version.
    pub version: String,
    /// Approved records.
    pub approvals: u64,
    /// Rejected records.
    pub rejections: u64,
    /// Failed records.
    pub errors: u64,
    /// [`VersionCounts::approval_rate`].
    pub approval_rate: Option<f64>,
    /// [`VersionCounts::error_rate`].
    pub error_rate: Option<f64>,
    /// [`VersionCounts::mean_score`].
    pub mean_score: Option<f64>,
    /// [`VersionCounts::cost_usd`].
    pub cost_usd: f64,
    /// Latency percentiles from the buckets ([`VersionCounts::latency_percentile_ms`]); `null`
    /// in JSON for the overflow bucket.
    pub latency_p50_ms: Option<f64>,
    /// p95.
    pub latency_p95_ms: Option<f64>,
    /// p99.
    pub latency_p99_ms: Option<f64>,
    /// Responses to approved messages: accepted, declined, no answer, opted out.
    pub accepted: u64,
    /// Declined.
    pub declined: u64,
    /// No answer.
    pub no_answer: u64,
    /// Opted out.
    pub opted_out: u64,
    /// [`VersionCounts::acceptance_rate`].
    pub acceptance_rate: Option<f64>,
}

impl VersionCounterRow {
    /// The row of `agent_id`@`version`.
    pub fn new(agent_id: &str, version: &Version, c: &VersionCounts) -> VersionCounterRow {
        VersionCounterRow {
            agent_id: agent_id.to_owned(),
            version: version.to_string(),
            approvals: c.approvals,
            rejections: c.rejections,
            errors: c.errors,
            approval_rate: c.approval_rate(),
            error_rate: c.error_rate(),
            mean_score: c.mean_score(),
            cost_usd: c.cost_usd(),
            latency_p50_ms: c.latency_percentile_ms(0.50),
            latency_p95_ms: c.latency_percentile_ms(0.95),
            latency_p99_ms: c.latency_percentile_ms(0.99),
            accepted: c.responses[0],
            declined: c.responses[1],
            no_answer: c.responses[2],
            opted_out: c.responses[3],
            acceptance_rate: c.acceptance_rate(),
        }
    }
}

/// The per-version counters store.
#[async_trait]
pub trait VersionCounters: Send + Sync {
    /// Adds `delta` to the counters of `agent`, atomically (concurrent adds all count).
    async fn add(&self, agent: &AgentRef, delta: &CounterDelta) -> Result<(), PortError>;

    /// The counters of one version (all zero when nothing was counted).
    async fn read(&self, agent: &AgentRef) -> Result<VersionCounts, PortError>;

    /// Every counted version of an agent, in semver order.
    async fn versions(&self, agent_id: &str) -> Result<Vec<(Version, VersionCounts)>, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AttemptRecord, JudgeVerdict, TokenUsage};

    #[test]
    fn buckets_are_log_spaced_and_cover_every_latency() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 0);
        assert_eq!(latency_bucket(2), 4);
        assert_eq!(latency_bucket(10), 10);
        assert_eq!(latency_bucket(11), 11);
        assert_eq!(latency_bucket(1_000), 30);
        assert_eq!(latency_bucket(1_000_000), 60);
        assert_eq!(latency_bucket(1_000_001), 61);
        assert_eq!(latency_bucket(u64::MAX), 61);
        for w in LATENCY_BOUNDS_MS.windows(2) {
            let r = w[1] / w[0];
            assert!((r - 10f64.powf(0.1)).abs() < 1e-9, "{w:?}");
        }
        for (i, b) in LATENCY_BOUNDS_MS.iter().enumerate() {
            assert!((b / 10f64.powf(i as f64 / 10.0) - 1.0).abs() < 1e-12, "{i}");
        }
    }

    #[test]
    fn percentiles_read_the_bucket_bound_of_the_rank() {
        let mut c = VersionCounts::default();
        assert_eq!(c.latency_percentile_ms(0.5), None);
        for ms in 1..=100u64 {
            c.apply(&CounterDelta {
                latency_bucket: Some(latency_bucket(ms * 10)),
                ..CounterDelta::default()
            });
        }
        // Rank 50 is 500 ms, in the bucket ending at 10^2.7 = 501.2 ms.
        let p50 = c.latency_percentile_ms(0.5).unwrap();
        assert!((p50 - 501.187).abs() < 0.01, "{p50}");
        // The estimate never understates and overstates by at most 26%.
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0), (1.0, 1000.0)] {
            let got = c.latency_percentile_ms(q).unwrap();
            assert!(got >= exact && got <= exact * 1.26, "{q}: {got}");
        }
        c.apply(&CounterDelta {
            latency_bucket: Some(latency_bucket(u64::MAX)),
            ..CounterDelta::default()
        });
        assert_eq!(c.latency_percentile_ms(1.0), Some(f64::INFINITY));
    }

    fn agent(id: &str, v: &str) -> AgentRef {
        AgentRef {
            agent_id: id.into(),
            version: Version::parse(v).unwrap(),
        }
    }

    fn record(status: MessageStatus, scores: &[u8], judge: AgentRef) -> MessageRecord {
        MessageRecord {
            event_id: "e".into(),
            customer_id: "c".into(),
            status,
            message: None,
            recommended_service: None,
            offering: None,
            generator: agent("g", "1.1.0"),
            judge,
            attempts: scores
                .iter()
                .enumerate()
                .map(|(i, s)| AttemptRecord {
                    attempt: i as u32 + 1,
                    message: "m".into(),
                    verdict: JudgeVerdict {
                        score: *s,
                        approved: false,
                        reasons: vec![],
                        feedback: String::new(),
                    },
                    generator_usage: TokenUsage::default(),
                    judge_usage: TokenUsage::default(),
                })
                .collect(),
            total_usage: TokenUsage::default(),
            cost_usd: 0.0,
            latency_ms: 1_000,
            error: None,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_record_counts_for_each_version_that_ran_with_its_own_cost() {
        let r = record(MessageStatus::Rejected, &[4, 6], agent("j", "2.0.0"));
        let d = record_deltas(&r, 0.002, 0.000_5);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].0, agent("g", "1.1.0"));
        assert_eq!(d[0].1.cost_nano_usd, 2_000_000);
        assert_eq!(d[1].0, agent("j", "2.0.0"));
        assert_eq!(d[1].1.cost_nano_usd, 500_000);
        for (_, x) in &d {
            assert_eq!((x.approvals, x.rejections, x.errors), (0, 1, 0));
            assert_eq!((x.score_sum, x.score_count), (10, 2));
            assert_eq!(x.latency_bucket, Some(30));
        }
        // A failure before the judge ran counts for the generator only.
        let f = record(MessageStatus::Failed, &[], AgentRef::placeholder("j"));
        let d = record_deltas(&f, 0.001, 0.0);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].1.errors, d[0].1.score_count), (1, 0));
        assert!(
            record_deltas(
                &record(MessageStatus::Skipped, &[], agent("j", "1.0.0")),
                0.0,
                0.0
            )
            .is_empty()
        );
        let mut c = VersionCounts::default();
        c.apply(&d[0].1);
        assert_eq!(c.error_rate(), Some(1.0));
        assert_eq!(c.approval_rate(), Some(0.0));
        assert_eq!(c.mean_score(), None);
        assert!((c.cost_usd() - 0.001).abs() < 1e-12);
    }

    #[test]
    fn a_response_counts_for_the_versions_of_the_approved_message() {
        let r = record(MessageStatus::Approved, &[9], agent("j", "2.0.0"));
        let mut c = VersionCounts::default();
        assert_eq!(c.acceptance_rate(), None);
        for response in [
            UpsellResponse::Accepted,
            UpsellResponse::Declined,
            UpsellResponse::NoAnswer,
            UpsellResponse::NoAnswer,
            UpsellResponse::OptedOut,
        ] {
            let d = response_deltas(&r, response);
            assert_eq!(d.len(), 2);
            assert_eq!(d[0].0, agent("g", "1.1.0"));
            assert_eq!(d[1].0, agent("j", "2.0.0"));
            // Nothing but the response: the record was counted when it was written.
            let x = &d[0].1;
            assert_eq!(
                (
                    x.approvals,
                    x.rejections,
                    x.errors,
                    x.score_count,
                    x.latency_bucket
                ),
                (0, 0, 0, 0, None)
            );
            c.apply(&d[0].1);
        }
        assert_eq!(c.responses, [1, 1, 2, 1]);
        assert_eq!(c.records(), 0);
        assert_eq!(c.acceptance_rate(), Some(0.2));
        let row = VersionCounterRow::new("g", &Version::new(1, 1, 0), &c);
        assert_eq!(
            (row.accepted, row.declined, row.no_answer, row.opted_out),
            (1, 1, 2, 1)
        );
        // A response to a record that was not approved counts for no version.
        let rejected = record(MessageStatus::Rejected, &[3], agent("j", "2.0.0"));
        assert!(response_deltas(&rejected, UpsellResponse::Accepted).is_empty());
    }
}
