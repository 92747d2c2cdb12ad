//! The worker over an in-memory source, driven as the Lambda runner and the local runtime drive
//! it (`upsell_core::worker::invoke`): a same-distribution window raises no alert, a drifted one
//! raises an alert naming the drifted feature; metrics are recorded for every test.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use drift_monitor::{Deps, Input, Output, plan};
use upsell_core::drift::{DriftSource, events_from_jsonl};
use upsell_core::events::CustomerEvent;
use upsell_core::message::MessageRecord;
use upsell_core::ports::{MetricDatum, Metrics, PortError};
use upsell_core::sample::{DriftScenario, SampleConfig, generate_jsonl};
use upsell_core::worker::invoke;

struct Events(Vec<CustomerEvent>);

#[async_trait::async_trait]
impl DriftSource for Events {
    async fn events_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CustomerEvent>, PortError> {
        Ok(self
            .0
            .iter()
            .filter(|e| e.time() >= from && e.time() < to)
            .cloned()
            .collect())
    }

    async fn records_of(&self, _: &[String]) -> Result<Vec<MessageRecord>, PortError> {
        Ok(Vec::new())
    }
}

#[derive(Default)]
struct Recorded(Mutex<Vec<MetricDatum>>);

impl Metrics for Recorded {
    fn record(&self, datum: MetricDatum) {
        self.0.lock().unwrap().push(datum);
    }
}

/// A year of baseline events (2025) and a year of current events (2026).
fn deps(drift: Option<DriftScenario>) -> (Deps, Arc<Recorded>) {
    let year = |seed, start: &str, drift| {
        events_from_jsonl(&generate_jsonl(&SampleConfig {
            customers: 300,
            seed,
            start: start.parse::<NaiveDate>().unwrap(),
            drift,
            ..SampleConfig::default()
        }))
        .events
    };
    let mut events = year(1, "2025-01-01", None);
    events.extend(year(2, "2026-01-01", drift));
    let metrics = Arc::new(Recorded::default());
    (
        Deps {
            source: Arc::new(Events(events)),
        },
        metrics,
    )
}

async fn check(deps: &Deps, metrics: &Recorded) -> Output {
    invoke(deps, input(), metrics).await.unwrap()
}

fn input() -> Input {
    serde_json::from_value(serde_json::json!({
        "baseline": "2025-01-01..2026-01-01",
        "current": "2026-01-01..2027-01-01",
    }))
    .unwrap()
}

#[tokio::test]
async fn same_distribution_raises_no_alert_and_records_metrics() {
    let (deps, metrics) = deps(None);
    let out = check(&deps, &metrics).await;
    assert!(!out.drift_detected, "{:?}", out.report.drifted);
    assert!(out.alert.is_none());
    let m = metrics.0.lock().unwrap();
    let p_values = m.iter().filter(|d| d.name == "DriftPValue").count();
    assert_eq!(
        p_values,
        out.report.tests().filter(|t| t.p_value.is_some()).count()
    );
    assert!(
        m.iter()
            .any(|d| d.name == "DriftDetected" && d.value == 0.0)
    );
}

#[tokio::test]
async fn region_shift_raises_an_alert_naming_region() {
    let (deps, metrics) = deps(Some(DriftScenario::RegionShift));
    let out = check(&deps, &metrics).await;
    let alert = out.alert.expect("drift alert");
    assert!(
        alert.drifted.iter().any(|t| t.name == "region"),
        "{alert:?}"
    );
    assert!(
        metrics
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|d| d.name == "DriftDetected" && d.value == 1.0)
    );
}

#[test]
fn daily_windows_count_looks_from_the_baseline_end() {
    let input: Input = serde_json::from_value(serde_json::json!({
        "baseline": "2025-01-01..2025-07-01",
        "at": "2025-07-04T06:00:00Z",
    }))
    .unwrap();
    let (cfg, _, (from, to)) = plan(&input).unwrap();
    assert_eq!(from.to_rfc3339(), "2025-07-03T00:00:00+00:00");
    assert_eq!(to.to_rfc3339(), "2025-07-04T00:00:00+00:00");
    assert_eq!(cfg.look, 3);
    // A 7-day window checked daily: every day is a look (the windows overlap, each check
    // spends its own alpha), counted from the first window that starts at the baseline's end.
    let weekly = |at: &str| {
        let input: Input = serde_json::from_value(serde_json::json!({
            "baseline": "2025-01-01..2025-07-01", "currentDays": 7, "at": at,
        }))
        .unwrap();
        plan(&input).unwrap().0.look
    };
    assert_eq!(weekly("2025-07-08T02:30:00Z"), 1);
    assert_eq!(weekly("2025-07-09T02:30:00Z"), 2);
    assert_eq!(weekly("2025-07-15T02:30:00Z"), 8);
    // Given windows count as consecutive windows of their length.
    let given: Input = serde_json::from_value(serde_json::json!({
        "baseline": "2025-01-01..2025-07-01", "current": "2025-07-15..2025-07-22"
    }))
    .unwrap();
    assert_eq!(plan(&given).unwrap().0.look, 3);
    // No current window and no time: a clear error.
    let bad: Input =
        serde_json::from_value(serde_json::json!({"baseline": "2025-01-01..2025-07-01"})).unwrap();
    let e = plan(&bad).unwrap_err().to_string();
    assert!(e.contains("`current`"), "{e}");
    // A current window inside the baseline is refused.
    let bad: Input = serde_json::from_value(serde_json::json!({
        "baseline": "2025-01-01..2025-07-01", "current": "2025-06-01..2025-06-02"
    }))
    .unwrap();
    assert!(
        plan(&bad)
            .unwrap_err()
            .to_string()
            .contains("before the baseline ends")
    );
}
