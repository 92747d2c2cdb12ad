//! The monitoring report: what `upsell monitor` prints and the HTML dashboard draws, computed
//! from recorded metric data points (the catalogue in [`crate::telemetry`]). Pure: the caller
//! reads the data points (the local metric log) and renders the report.
//!
//! Definitions (docs/monitoring.md repeats them):
//! - *events* are terminal outcomes: approved + rejected + failed + quarantined + skipped.
//! - *messages* are events the agents finished: approved + rejected.
//! - approval rate = approved / messages; error rate = failed / (messages + failed);
//!   quarantine rate = quarantined / events; a state's error rate = its `WorkerErrors` over its
//!   invocations (`StateLatency` data points).
//! - cost per 1,000 messages = `ModelCostUsd` (generator and judge) / messages x 1,000; cost per
//!   day groups data points by their UTC date.
//! - Latency percentiles are exact, nearest-rank: the p-th percentile of n sorted values is the
//!   value at rank ceil(p/100 x n) (1-based). No sketch: the local log holds every data point.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::MetricDatum;
use crate::ports::dims::{AGENT_ID, AGENT_VERSION, REASON};
use crate::telemetry::{
    DRIFT_DETECTED, DRIFT_P_VALUE, ERROR_TYPE, EVENTS_FAILED, EVENTS_QUARANTINED, EVENTS_SKIPPED,
    FEATURE, JUDGE_SCORE, MESSAGES_APPROVED, MESSAGES_REJECTED, MODEL_COST, MODEL_INPUT_TOKENS,
    MODEL_OUTPUT_TOKENS, STATE, STATE_LATENCY, WORKER_ERRORS,
};

/// Which breakdown a report keeps (`upsell monitor --by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One row per agent version (and the states it ran in).
    Version,
    /// One row per workflow state.
    State,
    /// Rejection, quarantine, skip and failure reasons.
    Reason,
}

/// The whole report. Breakdowns are `None` when [`MonitorReport::only`] dropped them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    /// Data points at or after this time were read (`None`: all).
    pub since: Option<DateTime<Utc>>,
    /// Time of the oldest data point read.
    pub first: Option<DateTime<Utc>>,
    /// Time of the newest data point read.
    pub last: Option<DateTime<Utc>>,
    /// How many data points the report is made of.
    pub data_points: usize,
    /// Headline figures.
    pub summary: Summary,
    /// Model cost per UTC day, oldest first.
    pub cost_by_day: Vec<DayCost>,
    /// Per agent version, ordered by agent id then semantic version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_version: Option<Vec<VersionRow>>,
    /// Per workflow state, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_state: Option<Vec<StateRow>>,
    /// Reasons, most frequent first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_reason: Option<ReasonBreakdown>,
    /// Drift checks (the drift monitor's `DriftDetected` and `DriftPValue`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_checks: Vec<DriftCheck>,
}

/// A drift check's verdict (once seen) and p-values by test, while reading.
type DriftAcc = (Option<bool>, BTreeMap<String, f64>);

/// One drift check as its data points tell it: the verdict and each test's corrected p-value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftCheck {
    /// When the check ran (the time its data points carry).
    pub at: DateTime<Utc>,
    /// Whether it detected drift.
    pub drift_detected: bool,
    /// Each test with its p-value after the multiple-testing correction, by name.
    pub p_values: Vec<(String, f64)>,
}

/// Headline figures over the whole window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Terminal outcomes: approved + rejected + failed + quarantined + skipped.
    pub events: u64,
    /// Messages approved and published.
    pub approved: u64,
    /// Messages rejected after the last attempt.
    pub rejected: u64,
    /// Events whose workflow failed.
    pub failed: u64,
    /// Events quarantined as invalid.
    pub quarantined: u64,
    /// Events that needed no message.
    pub skipped: u64,
    /// approved / (approved + rejected).
    pub approval_rate: Option<f64>,
    /// failed / (approved + rejected + failed).
    pub error_rate: Option<f64>,
    /// quarantined / events.
    pub quarantine_rate: Option<f64>,
    /// Failed worker invocations (retried ones included).
    pub worker_errors: u64,
    /// Model cost in US dollars, generator and judge.
    pub cost_usd: f64,
    /// cost_usd / (approved + rejected) x 1,000.
    pub cost_per_1000_messages: Option<f64>,
    /// Model input tokens.
    pub input_tokens: u64,
    /// Model output tokens.
    pub output_tokens: u64,
}

/// Model cost of one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayCost {
    /// The day (UTC).
    pub day: NaiveDate,
    /// Model cost in US dollars.
    pub cost_usd: f64,
    /// Messages finished that day (approved + rejected).
    pub messages: u64,
    /// cost_usd / messages x 1,000.
    pub cost_per_1000_messages: Option<f64>,
}

/// Latency percentiles of a set of invocations, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Invocations measured.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (sorted in place); `None` when empty.
    pub fn of(values: &mut [f64]) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let at = |p: f64| {
            // Rank ceil(p/100 * n), 1-based; the epsilon keeps 0.95 * 100 from rounding up to 96.
            let rank = ((p / 100.0) * n as f64 - 1e-9).ceil().max(1.0) as usize;
            values[rank.min(n) - 1]
        };
        Some(Percentiles {
            count: n as u64,
            p50: at(50.0),
            p95: at(95.0),
            p99: at(99.0),
            max: values[n - 1],
        })
    }
}

/// Latency of one state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateLatency {
    /// The state, e.g. `Generate`.
    pub state: String,
    /// Its percentiles.
    pub latency: Percentiles,
}

/// Figures of one agent version. Outcome counts are those of the generator version that wrote
/// the message; a judge version has latency, tokens and cost only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRow {
    /// Agent id, e.g. `upsell-generator`.
    pub agent_id: String,
    /// Its version.
    pub agent_version: String,
    /// Latency of the states this version ran in.
    pub latency: Vec<StateLatency>,
    /// Messages approved.
    pub approved: u64,
    /// Messages rejected.
    pub rejected: u64,
    /// Events failed.
    pub failed: u64,
    /// approved / (approved + rejected).
    pub approval_rate: Option<f64>,
    /// failed / (approved + rejected + failed).
    pub error_rate: Option<f64>,
    /// Mean judge score of its messages' attempts.
    pub judge_score_mean: Option<f64>,
    /// Model cost in US dollars.
    pub cost_usd: f64,
    /// Model input tokens.
    pub input_tokens: u64,
    /// Model output tokens.
    pub output_tokens: u64,
}

/// Figures of one workflow state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRow {
    /// The state, e.g. `Judge`.
    pub state: String,
    /// Latency over every agent version; `None` when no invocation was timed.
    pub latency: Option<Percentiles>,
    /// Failed invocations.
    pub errors: u64,
    /// errors / invocations.
    pub error_rate: Option<f64>,
    /// Failed invocations by error name, most frequent first.
    pub errors_by_type: Vec<ReasonCount>,
    /// Model cost in US dollars.
    pub cost_usd: f64,
}

/// How often one reason (or error name) occurred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonCount {
    /// The reason code or error name.
    pub reason: String,
    /// Occurrences.
    pub count: u64,
    /// count / all occurrences of the list.
    pub share: f64,
}

/// Why events did not become approved messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasonBreakdown {
    /// `MessagesRejected` by reason code.
    pub rejected: Vec<ReasonCount>,
    /// `EventsQuarantined` by reason.
    pub quarantined: Vec<ReasonCount>,
    /// `EventsSkipped` by reason.
    pub skipped: Vec<ReasonCount>,
    /// `EventsFailed` by error name.
    pub failed: Vec<ReasonCount>,
}

fn dim<'a>(d: &'a MetricDatum, name: &str) -> Option<&'a str> {
    d.dimensions
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn dim_or_unknown(d: &MetricDatum, name: &str) -> String {
    dim(d, name).unwrap_or("unknown").to_owned()
}

/// A count data point's value as a whole count (negative or non-finite values count as 0).
fn count(d: &MetricDatum) -> u64 {
    if d.value.is_finite() && d.value > 0.0 {
        d.value.round() as u64
    } else {
        0
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn per_1000(cost: f64, messages: u64) -> Option<f64> {
    (messages > 0).then(|| cost / messages as f64 * 1000.0)
}

fn reason_counts(map: BTreeMap<String, u64>) -> Vec<ReasonCount> {
    let total: u64 = map.values().sum();
    let mut rows: Vec<ReasonCount> = map
        .into_iter()
        .map(|(reason, count)| ReasonCount {
            share: ratio(count, total).unwrap_or(0.0),
            reason,
            count,
        })
        .collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    rows
}

/// Orders versions semantically where they parse (1.10.0 after 1.9.0), textually otherwise.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

#[derive(Default)]
struct VersionAcc {
    latency: BTreeMap<String, Vec<f64>>,
    approved: u64,
    rejected: u64,
    failed: u64,
    score_sum: f64,
    scores: u64,
    cost: f64,
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Default)]
struct StateAcc {
    latency: Vec<f64>,
    errors: BTreeMap<String, u64>,
    cost: f64,
}

#[derive(Default)]
struct DayAcc {
    cost: f64,
    messages: u64,
}

impl MonitorReport {
    /// The report of `data` (data points at or after `since`; older ones are ignored, so the
    /// caller may pass more). Data points of names outside the catalogue are ignored.
    pub fn build(data: &[MetricDatum], since: Option<DateTime<Utc>>) -> MonitorReport {
        let mut s = Summary::default();
        let mut versions: BTreeMap<(String, String), VersionAcc> = BTreeMap::new();
        let mut states: BTreeMap<String, StateAcc> = BTreeMap::new();
        let mut days: BTreeMap<NaiveDate, DayAcc> = BTreeMap::new();
        let mut reasons: [BTreeMap<String, u64>; 4] = Default::default();
        let (mut first, mut last, mut used) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>, 0);
        // A check's data points share one time stamp (one call's figures).
        let mut drift: BTreeMap<DateTime<Utc>, DriftAcc> = BTreeMap::new();

        for d in data {
            if since.is_some_and(|t| d.timestamp < t) {
                continue;
            }
            let version_key = || {
                (
                    dim_or_unknown(d, AGENT_ID),
                    dim_or_unknown(d, AGENT_VERSION),
                )
            };
            let name = d.name.as_str();
            if name == STATE_LATENCY.name {
                let state = dim_or_unknown(d, STATE);
                states
                    .entry(state.clone())
                    .or_default()
                    .latency
                    .push(d.value);
                if dim(d, AGENT_ID).is_some() {
                    versions
                        .entry(version_key())
                        .or_default()
                        .latency
                        .entry(state)
                        .or_default()
                        .push(d.value);
                }
            } else if name == MODEL_COST.name {
                let cost = if d.value.is_finite() { d.value } else { 0.0 };
                s.cost_usd += cost;
                versions.entry(version_key()).or_default().cost += cost;
                states.entry(dim_or_unknown(d, STATE)).or_default().cost += cost;
                days.entry(d.timestamp.date_naive()).or_default().cost += cost;
            } else if name == MODEL_INPUT_TOKENS.name {
                s.input_tokens += count(d);
                versions.entry(version_key()).or_default().input_tokens += count(d);
            } else if name == MODEL_OUTPUT_TOKENS.name {
                s.output_tokens += count(d);
                versions.entry(version_key()).or_default().output_tokens += count(d);
            } else if name == MESSAGES_APPROVED.name {
                s.approved += count(d);
                versions.entry(version_key()).or_default().approved += count(d);
                days.entry(d.timestamp.date_naive()).or_default().messages += count(d);
            } else if name == MESSAGES_REJECTED.name {
                s.rejected += count(d);
                versions.entry(version_key()).or_default().rejected += count(d);
                days.entry(d.timestamp.date_naive()).or_default().messages += count(d);
                *reasons[0].entry(dim_or_unknown(d, REASON)).or_default() += count(d);
            } else if name == JUDGE_SCORE.name {
                let v = versions.entry(version_key()).or_default();
                v.score_sum += d.value;
                v.scores += 1;
            } else if name == WORKER_ERRORS.name {
                s.worker_errors += count(d);
                *states
                    .entry(dim_or_unknown(d, STATE))
                    .or_default()
                    .errors
                    .entry(dim_or_unknown(d, ERROR_TYPE))
                    .or_default() += count(d);
            } else if name == EVENTS_FAILED.name {
                s.failed += count(d);
                versions.entry(version_key()).or_default().failed += count(d);
                *reasons[3].entry(dim_or_unknown(d, ERROR_TYPE)).or_default() += count(d);
            } else if name == EVENTS_QUARANTINED.name {
                s.quarantined += count(d);
                *reasons[1].entry(dim_or_unknown(d, REASON)).or_default() += count(d);
            } else if name == EVENTS_SKIPPED.name {
                s.skipped += count(d);
                *reasons[2].entry(dim_or_unknown(d, REASON)).or_default() += count(d);
            } else if name == DRIFT_DETECTED.name {
                drift.entry(d.timestamp).or_default().0 = Some(d.value > 0.0);
            } else if name == DRIFT_P_VALUE.name {
                drift
                    .entry(d.timestamp)
                    .or_default()
                    .1
                    .insert(dim_or_unknown(d, FEATURE), d.value);
            } else {
                continue;
            }
            used += 1;
            first = Some(first.map_or(d.timestamp, |f| f.min(d.timestamp)));
            last = Some(last.map_or(d.timestamp, |l| l.max(d.timestamp)));
        }

        let messages = s.approved + s.rejected;
        s.events = messages + s.failed + s.quarantined + s.skipped;
        s.approval_rate = ratio(s.approved, messages);
        s.error_rate = ratio(s.failed, messages + s.failed);
        s.quarantine_rate = ratio(s.quarantined, s.events);
        s.cost_per_1000_messages = per_1000(s.cost_usd, messages);

        let mut by_version: Vec<VersionRow> = versions
            .into_iter()
            .map(|((agent_id, agent_version), v)| VersionRow {
                latency: v
                    .latency
                    .into_iter()
                    .filter_map(|(state, mut values)| {
                        Percentiles::of(&mut values).map(|latency| StateLatency { state, latency })
                    })
                    .collect(),
                approval_rate: ratio(v.approved, v.approved + v.rejected),
                error_rate: ratio(v.failed, v.approved + v.rejected + v.failed),
                judge_score_mean: (v.scores > 0).then(|| v.score_sum / v.scores as f64),
                approved: v.approved,
                rejected: v.rejected,
                failed: v.failed,
                cost_usd: v.cost,
                input_tokens: v.input_tokens,
                output_tokens: v.output_tokens,
                agent_id,
                agent_version,
            })
            .collect();
        by_version.sort_by(|a, b| {
            a.agent_id
                .cmp(&b.agent_id)
                .then_with(|| version_order(&a.agent_version, &b.agent_version))
        });

        let by_state = states
            .into_iter()
            .map(|(state, mut acc)| {
                let errors: u64 = acc.errors.values().sum();
                let invocations = acc.latency.len() as u64;
                StateRow {
                    latency: Percentiles::of(&mut acc.latency),
                    error_rate: ratio(errors, invocations.max(errors)),
                    errors,
                    errors_by_type: reason_counts(acc.errors),
                    cost_usd: acc.cost,
                    state,
                }
            })
            .collect();

        let [rejected, quarantined, skipped, failed] = reasons.map(reason_counts);
        let drift_checks = drift
            .into_iter()
            .filter_map(|(at, (detected, p))| {
                Some(DriftCheck {
                    at,
                    drift_detected: detected?,
                    p_values: p.into_iter().collect(),
                })
            })
            .collect();
        MonitorReport {
            since,
            first,
            last,
            data_points: used,
            summary: s,
            cost_by_day: days
                .into_iter()
                .map(|(day, a)| DayCost {
                    day,
                    cost_usd: a.cost,
                    messages: a.messages,
                    cost_per_1000_messages: per_1000(a.cost, a.messages),
                })
                .collect(),
            by_version: Some(by_version),
            by_state: Some(by_state),
            by_reason: Some(ReasonBreakdown {
                rejected,
                quarantined,
                skipped,
                failed,
            }),
            drift_checks,
        }
    }

    /// The report with only the `by` breakdown (summary and cost per day stay).
    pub fn only(mut self, by: GroupBy) -> MonitorReport {
        if by != GroupBy::Version {
            self.by_version = None;
        }
        if by != GroupBy::State {
            self.by_state = None;
        }
        if by != GroupBy::Reason {
            self.by_reason = None;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::ports::MetricUnit;
    use crate::telemetry::MetricSpec;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, hour, 0, 0).unwrap()
    }

    fn point(spec: MetricSpec, value: f64, dims: &[(&str, &str)], t: DateTime<Utc>) -> MetricDatum {
        let mut d = MetricDatum::at(spec.name, value, spec.unit, t);
        for (n, v) in dims {
            d = d.with_dim(*n, *v);
        }
        d
    }

    const GEN: &str = "upsell-generator";
    const JUDGE: &str = "upsell-judge";

    /// Two generator versions and one judge over two days, with every metric of the catalogue.
    fn sample() -> Vec<MetricDatum> {
        let mut v = Vec::new();
        let g1 = [
            (STATE, "Generate"),
            (AGENT_ID, GEN),
            (AGENT_VERSION, "1.0.0"),
        ];
        let g2 = [
            (STATE, "Generate"),
            (AGENT_ID, GEN),
            (AGENT_VERSION, "1.10.0"),
        ];
        let j = [
            (STATE, "Judge"),
            (AGENT_ID, JUDGE),
            (AGENT_VERSION, "1.0.0"),
        ];
        // Generate 1.0.0: latencies 1..=100 ms on day 1.
        for ms in 1..=100 {
            v.push(point(STATE_LATENCY, f64::from(ms), &g1, at(1, 10)));
        }
        // Generate 1.10.0: 10 calls of 500 ms on day 2.
        for _ in 0..10 {
            v.push(point(STATE_LATENCY, 500.0, &g2, at(2, 10)));
        }
        for _ in 0..20 {
            v.push(point(STATE_LATENCY, 40.0, &j, at(1, 11)));
        }
        v.push(point(
            STATE_LATENCY,
            2.0,
            &[(STATE, "SchemaCheck")],
            at(1, 9),
        ));
        v.push(point(
            STATE_LATENCY,
            3.0,
            &[(STATE, "SchemaCheck")],
            at(1, 9),
        ));
        v.push(point(MODEL_COST, 0.75, &g1, at(1, 10)));
        v.push(point(MODEL_COST, 0.25, &j, at(1, 11)));
        v.push(point(MODEL_COST, 2.0, &g2, at(2, 10)));
        v.push(point(MODEL_INPUT_TOKENS, 1200.0, &g1, at(1, 10)));
        v.push(point(MODEL_OUTPUT_TOKENS, 300.0, &g1, at(1, 10)));
        let v1 = [(AGENT_ID, GEN), (AGENT_VERSION, "1.0.0")];
        let v2 = [(AGENT_ID, GEN), (AGENT_VERSION, "1.10.0")];
        for _ in 0..6 {
            v.push(point(MESSAGES_APPROVED, 1.0, &v1, at(1, 12)));
        }
        v.push(point(
            MESSAGES_REJECTED,
            1.0,
            &[v1[0], v1[1], (REASON, "BrandTone")],
            at(1, 12),
        ));
        v.push(point(
            MESSAGES_REJECTED,
            2.0,
            &[v2[0], v2[1], (REASON, "Unsafe")],
            at(2, 12),
        ));
        v.push(point(
            EVENTS_FAILED,
            1.0,
            &[v2[0], v2[1], (ERROR_TYPE, "ModelThrottled")],
            at(2, 12),
        ));
        v.push(point(JUDGE_SCORE, 8.0, &v1, at(1, 11)));
        v.push(point(JUDGE_SCORE, 6.0, &v1, at(1, 11)));
        let throttled = [(STATE, "Generate"), (ERROR_TYPE, "ModelThrottled")];
        v.push(point(WORKER_ERRORS, 1.0, &throttled, at(2, 10)));
        v.push(point(WORKER_ERRORS, 1.0, &throttled, at(2, 10)));
        v.push(point(
            WORKER_ERRORS,
            1.0,
            &[(STATE, "Generate"), (ERROR_TYPE, "ModelOutputInvalid")],
            at(2, 10),
        ));
        for reason in ["SchemaInvalid", "SchemaInvalid", "UnknownDetailType"] {
            v.push(point(
                EVENTS_QUARANTINED,
                1.0,
                &[(REASON, reason)],
                at(1, 9),
            ));
        }
        v.push(point(
            EVENTS_SKIPPED,
            1.0,
            &[(REASON, "NoConsent")],
            at(1, 9),
        ));
        // Not in the catalogue: ignored.
        v.push(MetricDatum::at("Other", 9.0, MetricUnit::Count, at(1, 9)));
        v
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = Percentiles::of(&mut values).unwrap();
        assert_eq!(
            (p.count, p.p50, p.p95, p.p99, p.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        let p = Percentiles::of(&mut [7.0]).unwrap();
        assert_eq!((p.p50, p.p95, p.p99, p.max), (7.0, 7.0, 7.0, 7.0));
        // n = 3: ranks ceil(1.5) = 2, ceil(2.85) = 3, ceil(2.97) = 3.
        let p = Percentiles::of(&mut [30.0, 10.0, 20.0]).unwrap();
        assert_eq!((p.p50, p.p95, p.p99), (20.0, 30.0, 30.0));
        assert_eq!(Percentiles::of(&mut []), None);
    }

    #[test]
    fn summary_rates_and_cost() {
        let r = MonitorReport::build(&sample(), None);
        let s = &r.summary;
        assert_eq!(
            (s.approved, s.rejected, s.failed, s.quarantined, s.skipped),
            (6, 3, 1, 3, 1)
        );
        assert_eq!(s.events, 14);
        assert_eq!(s.approval_rate, Some(6.0 / 9.0));
        assert_eq!(s.error_rate, Some(1.0 / 10.0));
        assert_eq!(s.quarantine_rate, Some(3.0 / 14.0));
        assert_eq!(s.worker_errors, 3);
        assert!((s.cost_usd - 3.0).abs() < 1e-12);
        assert!((s.cost_per_1000_messages.unwrap() - 3.0 / 9.0 * 1000.0).abs() < 1e-9);
        assert_eq!((s.input_tokens, s.output_tokens), (1200, 300));
        assert_eq!(r.data_points, sample().len() - 1);
        assert_eq!((r.first, r.last), (Some(at(1, 9)), Some(at(2, 12))));

        let days: Vec<_> = r
            .cost_by_day
            .iter()
            .map(|d| (d.day.to_string(), d.cost_usd, d.messages))
            .collect();
        assert_eq!(
            days,
            [("2026-12-01".into(), 1.0, 7), ("2026-12-02".into(), 2.0, 2)]
        );
        assert_eq!(r.cost_by_day[1].cost_per_1000_messages, Some(1000.0));
    }

    #[test]
    fn per_version_rows() {
        let r = MonitorReport::build(&sample(), None);
        let rows = r.by_version.unwrap();
        let keys: Vec<_> = rows
            .iter()
            .map(|v| (v.agent_id.as_str(), v.agent_version.as_str()))
            .collect();
        // 1.10.0 sorts after 1.0.0 semantically; the judge after the generator.
        assert_eq!(keys, [(GEN, "1.0.0"), (GEN, "1.10.0"), (JUDGE, "1.0.0")]);
        let g1 = &rows[0];
        assert_eq!((g1.approved, g1.rejected, g1.failed), (6, 1, 0));
        assert_eq!(g1.approval_rate, Some(6.0 / 7.0));
        assert_eq!(g1.error_rate, Some(0.0));
        assert_eq!(g1.judge_score_mean, Some(7.0));
        assert_eq!(g1.latency.len(), 1);
        assert_eq!(g1.latency[0].state, "Generate");
        assert_eq!(
            (g1.latency[0].latency.p50, g1.latency[0].latency.p99),
            (50.0, 99.0)
        );
        let g2 = &rows[1];
        assert_eq!(g2.approval_rate, Some(0.0));
        assert_eq!(g2.error_rate, Some(1.0 / 3.0));
        assert_eq!(g2.latency[0].latency.p95, 500.0);
        let j = &rows[2];
        assert_eq!((j.approved, j.approval_rate, j.cost_usd), (0, None, 0.25));
        assert_eq!(j.latency[0].state, "Judge");
    }

    #[test]
    fn per_state_rows_merge_versions() {
        let r = MonitorReport::build(&sample(), None);
        let rows = r.by_state.unwrap();
        let names: Vec<_> = rows.iter().map(|s| s.state.as_str()).collect();
        assert_eq!(names, ["Generate", "Judge", "SchemaCheck"]);
        let generate = &rows[0];
        let l = generate.latency.as_ref().unwrap();
        // 100 values 1..=100 and 10 of 500: rank 55 is 55, rank 105 is 500.
        assert_eq!((l.count, l.p50, l.p95), (110, 55.0, 500.0));
        assert_eq!(generate.errors, 3);
        assert_eq!(generate.error_rate, Some(3.0 / 110.0));
        assert_eq!(generate.errors_by_type[0].reason, "ModelThrottled");
        assert_eq!(generate.errors_by_type[0].count, 2);
        assert!((generate.cost_usd - 2.75).abs() < 1e-12);
        assert_eq!(rows[2].error_rate, Some(0.0));
    }

    #[test]
    fn reasons_most_frequent_first() {
        let r = MonitorReport::build(&sample(), None);
        let b = r.by_reason.unwrap();
        let q: Vec<_> = b
            .quarantined
            .iter()
            .map(|c| (c.reason.as_str(), c.count))
            .collect();
        assert_eq!(q, [("SchemaInvalid", 2), ("UnknownDetailType", 1)]);
        assert!((b.quarantined[0].share - 2.0 / 3.0).abs() < 1e-12);
        let rj: Vec<_> = b
            .rejected
            .iter()
            .map(|c| (c.reason.as_str(), c.count))
            .collect();
        assert_eq!(rj, [("Unsafe", 2), ("BrandTone", 1)]);
        assert_eq!(b.failed[0].reason, "ModelThrottled");
        assert_eq!(b.skipped[0].reason, "NoConsent");
    }

    #[test]
    fn since_drops_older_points() {
        let r = MonitorReport::build(&sample(), Some(at(2, 0)));
        assert_eq!(r.summary.approved, 0);
        assert_eq!(r.summary.rejected, 2);
        assert_eq!(r.cost_by_day.len(), 1);
        assert_eq!(r.first, Some(at(2, 10)));
        assert_eq!(r.since, Some(at(2, 0)));
    }

    #[test]
    fn empty_log_has_no_rates() {
        let r = MonitorReport::build(&[], None);
        assert_eq!(r.data_points, 0);
        assert_eq!(r.summary.approval_rate, None);
        assert_eq!(r.summary.cost_per_1000_messages, None);
        assert!(r.by_version.unwrap().is_empty());
    }

    #[test]
    fn only_keeps_one_breakdown_and_json_round_trips() {
        let r = MonitorReport::build(&sample(), None).only(GroupBy::Reason);
        assert!(r.by_version.is_none() && r.by_state.is_none() && r.by_reason.is_some());
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("by_version").is_none());
        assert_eq!(json["summary"]["approved"], 6);
        let back: MonitorReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }
}
