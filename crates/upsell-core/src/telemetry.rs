//! The metric catalogue: every metric the system records, with its unit and dimensions, in one
//! place. Lambda emits these as CloudWatch Embedded Metric Format lines; the local runtime stores
//! the very same data points in SQLite. Dashboards, `upsell monitor` and alarms read these names.
//!
//! Dimension names are in [`crate::ports::dims`] plus [`STATE`] and [`ERROR_TYPE`] here.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ports::dims::{AGENT_ID, AGENT_VERSION, REASON};
use crate::ports::{MetricDatum, MetricUnit, PortError};

/// Dimension: the ASL state (worker) that recorded the data point, e.g. `Generate`.
pub const STATE: &str = "State";
/// Dimension: a stable error name, e.g. `ModelThrottled`.
pub const ERROR_TYPE: &str = "ErrorType";
/// Dimension: a drift test's name, e.g. `region` or `approval_rate[upsell-generator@1.0.0]`.
pub const FEATURE: &str = "Feature";

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    /// Metric name as CloudWatch shows it.
    pub name: &'static str,
    /// Its unit.
    pub unit: MetricUnit,
    /// The dimension names it carries, in order.
    pub dimensions: &'static [&'static str],
    /// What it measures, for docs and dashboards.
    pub help: &'static str,
}

/// Wall time of one worker invocation. Generate and judge add the agent that ran.
pub const STATE_LATENCY: MetricSpec = MetricSpec {
    name: "StateLatency",
    unit: MetricUnit::Milliseconds,
    dimensions: &[STATE, AGENT_ID, AGENT_VERSION],
    help: "Wall time of one worker invocation",
};
/// Model input tokens of one call.
pub const MODEL_INPUT_TOKENS: MetricSpec = MetricSpec {
    name: "ModelInputTokens",
    unit: MetricUnit::Count,
    dimensions: &[STATE, AGENT_ID, AGENT_VERSION],
    help: "Model input tokens of one call",
};
/// Model output tokens of one call.
pub const MODEL_OUTPUT_TOKENS: MetricSpec = MetricSpec {
    name: "ModelOutputTokens",
    unit: MetricUnit::Count,
    dimensions: &[STATE, AGENT_ID, AGENT_VERSION],
    help: "Model output tokens of one call",
};
/// Model cost of one call in US dollars (generator and judge alike).
pub const MODEL_COST: MetricSpec = MetricSpec {
    name: "ModelCostUsd",
    unit: MetricUnit::None,
    dimensions: &[STATE, AGENT_ID, AGENT_VERSION],
    help: "Model cost of one call in US dollars",
};
/// One message approved and published, by generator version.
pub const MESSAGES_APPROVED: MetricSpec = MetricSpec {
    name: "MessagesApproved",
    unit: MetricUnit::Count,
    dimensions: &[AGENT_ID, AGENT_VERSION],
    help: "Messages approved by the judge and published",
};
/// One message given up after its attempts ran out, by generator version and reason code.
pub const MESSAGES_REJECTED: MetricSpec = MetricSpec {
    name: "MessagesRejected",
    unit: MetricUnit::Count,
    dimensions: &[AGENT_ID, AGENT_VERSION, REASON],
    help: "Messages rejected after the last attempt, by reason code",
};
/// One judge verdict's score (0..=10), by judged generator version.
pub const JUDGE_SCORE: MetricSpec = MetricSpec {
    name: "JudgeScore",
    unit: MetricUnit::None,
    dimensions: &[AGENT_ID, AGENT_VERSION],
    help: "Judge score of one verdict, by generator version",
};
/// One worker invocation that failed, by state and error name.
pub const WORKER_ERRORS: MetricSpec = MetricSpec {
    name: "WorkerErrors",
    unit: MetricUnit::Count,
    dimensions: &[STATE, ERROR_TYPE],
    help: "Worker invocations that failed, by error name",
};
/// One event whose workflow ended failed, by generator version and error name.
pub const EVENTS_FAILED: MetricSpec = MetricSpec {
    name: "EventsFailed",
    unit: MetricUnit::Count,
    dimensions: &[AGENT_ID, AGENT_VERSION, ERROR_TYPE],
    help: "Events whose workflow ended failed",
};
/// One event quarantined, by reason.
pub const EVENTS_QUARANTINED: MetricSpec = MetricSpec {
    name: "EventsQuarantined",
    unit: MetricUnit::Count,
    dimensions: &[REASON],
    help: "Events quarantined as invalid, by reason",
};
/// One event skipped (no message due), by reason.
pub const EVENTS_SKIPPED: MetricSpec = MetricSpec {
    name: "EventsSkipped",
    unit: MetricUnit::Count,
    dimensions: &[REASON],
    help: "Events that needed no message, by reason",
};

/// One drift check: 1 when drift was detected, else 0 (the drift alarm's metric).
pub const DRIFT_DETECTED: MetricSpec = MetricSpec {
    name: "DriftDetected",
    unit: MetricUnit::Count,
    dimensions: &[],
    help: "Drift checks that detected drift (1) or not (0)",
};
/// Holm-adjusted p-value of one drift test of one check, by test name.
pub const DRIFT_P_VALUE: MetricSpec = MetricSpec {
    name: "DriftPValue",
    unit: MetricUnit::None,
    dimensions: &[FEATURE],
    help: "Holm-adjusted p-value of one drift test",
};

/// Every metric of the catalogue.
pub const CATALOGUE: &[MetricSpec] = &[
    STATE_LATENCY,
    MODEL_INPUT_TOKENS,
    MODEL_OUTPUT_TOKENS,
    MODEL_COST,
    MESSAGES_APPROVED,
    MESSAGES_REJECTED,
    JUDGE_SCORE,
    WORKER_ERRORS,
    EVENTS_FAILED,
    EVENTS_QUARANTINED,
    EVENTS_SKIPPED,
    DRIFT_DETECTED,
    DRIFT_P_VALUE,
];

/// The catalogue entry of a metric name.
pub fn spec(name: &str) -> Option<&'static MetricSpec> {
    CATALOGUE.iter().find(|m| m.name == name)
}

/// Reads recorded data points back: the local SQLite metric log. (In AWS, CloudWatch is the
/// source for dashboards and alarms; nothing reads EMF lines back.)
#[async_trait]
pub trait MetricLog: Send + Sync {
    /// Data points recorded at or after `since` (all when `None`), oldest first.
    async fn metrics_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<MetricDatum>, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, m) in CATALOGUE.iter().enumerate() {
            assert!(
                CATALOGUE[..i].iter().all(|o| o.name != m.name),
                "{}",
                m.name
            );
            assert_eq!(spec(m.name), Some(m));
        }
        assert_eq!(spec("NoSuchMetric"), None);
    }
}
