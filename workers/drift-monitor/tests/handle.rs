//! The worker over an in-memory source, driven as the Lambda runner and the local runtime drive
//! it (`upsell_core::worker::invoke`): a same-distribution window raises no alert, a drifted one
//! raises an alert naming the drifted feature; metrics are recorded for every test.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use drift_monitor::{Deps, Input, Output, Plan, SkipReason, Span, plan};
use upsell_core::drift::DriftConfig;
use upsell_core::drift::{DriftSource, events_from_jsonl};
use upsell_core::events::CustomerEvent;
use upsell_core::message::MessageRecord;
use upsell_core::ports::{MetricDatum, Metrics, PortError};
use upsell_core::sample::{DriftScenario, SampleConfig, generate_jsonl};
use upsell_core::worker::{CallClock, invoke};

/// The system clock, as the Lambda runner and the local runtime pass it.
struct SystemClock;

impl CallClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn instant(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
}

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
    invoke(deps, input(), metrics, &SystemClock).await.unwrap()
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
    assert!(out.skipped.is_none());
    let report = out.report.as_ref().expect("a report");
    assert!(!out.drift_detected, "{:?}", report.drifted);
    assert!(out.alert.is_none());
    let m = metrics.0.lock().unwrap();
    let p_values = m.iter().filter(|d| d.name == "DriftPValue").count();
    assert_eq!(
        p_values,
        report.tests().filter(|t| t.p_value.is_some()).count()
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

/// The plan of an input that must run a check.
fn checked(input: &Input) -> (DriftConfig, Span, Span) {
    match plan(input).unwrap() {
        Plan::Check(cfg, baseline, current) => (cfg, baseline, current),
        Plan::Skip(s) => panic!("skipped: {s:?}"),
    }
}

#[test]
fn daily_windows_count_looks_from_the_baseline_end() {
    let input: Input = serde_json::from_value(serde_json::json!({
        "baseline": "2025-01-01..2025-07-01",
        "at": "2025-07-04T06:00:00Z",
    }))
    .unwrap();
    let (cfg, _, (from, to)) = checked(&input);
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
        checked(&input).0.look
    };
    assert_eq!(weekly("2025-07-08T02:30:00Z"), 1);
    assert_eq!(weekly("2025-07-09T02:30:00Z"), 2);
    assert_eq!(weekly("2025-07-15T02:30:00Z"), 8);
    // Given windows count as consecutive windows of their length.
    let given: Input = serde_json::from_value(serde_json::json!({
        "baseline": "2025-01-01..2025-07-01", "current": "2025-07-15..2025-07-22"
    }))
    .unwrap();
    assert_eq!(checked(&given).0.look, 3);
    // No current window and no time: a clear error.
    let bad: Input =
        serde_json::from_value(serde_json::json!({"baseline": "2025-01-01..2025-07-01"})).unwrap();
    let e = plan(&bad).unwrap_err().to_string();
    assert!(e.contains("`current`"), "{e}");
    // A given current window inside the baseline is refused.
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

/// A scheduled run (window from `at`) whose window starts before the baseline ends is skipped,
/// with the reason and the first day a scheduled run checks; the day after, it checks (look 1).
#[test]
fn scheduled_window_before_the_baseline_end_is_skipped() {
    let at = |at: &str, days: u32| -> Input {
        serde_json::from_value(serde_json::json!({
            "baseline": "2025-01-01..2025-07-01", "currentDays": days, "at": at,
        }))
        .unwrap()
    };
    let skipped = |input: &Input| match plan(input).unwrap() {
        Plan::Skip(s) => s,
        Plan::Check(..) => panic!("checked: {input:?}"),
    };
    // On the baseline's last day and the day it ends: the window overlaps it.
    for day in ["2025-06-30T02:30:00Z", "2025-07-01T02:30:00Z"] {
        let s = skipped(&at(day, 1));
        assert_eq!(s.reason, SkipReason::CurrentOverlapsBaseline);
        assert_eq!(s.first_check_on.to_string(), "2025-07-02");
        assert_eq!(s.baseline, "2025-01-01T00:00:00Z..2025-07-01T00:00:00Z");
        assert!(s.message.contains("before the baseline"), "{}", s.message);
        assert!(s.message.contains("2025-07-02"), "{}", s.message);
    }
    assert_eq!(checked(&at("2025-07-02T02:30:00Z", 1)).0.look, 1);
    // A 7-day window: skipped for the first 7 days after the baseline ends.
    let s = skipped(&at("2025-07-07T02:30:00Z", 7));
    assert_eq!(s.current, "2025-06-30T00:00:00Z..2025-07-07T00:00:00Z");
    assert_eq!(s.first_check_on.to_string(), "2025-07-08");
    assert_eq!(checked(&at("2025-07-08T02:30:00Z", 7)).0.look, 1);
    // A baseline ending mid-day: the first whole window after it starts the next midnight.
    let mid: Input = serde_json::from_value(serde_json::json!({
        "baseline": "2025-01-01..2025-07-01T12:00:00Z", "at": "2025-07-02T02:30:00Z",
    }))
    .unwrap();
    assert_eq!(skipped(&mid).first_check_on.to_string(), "2025-07-03");
}

/// Through `invoke`, as in Lambda and locally: a skipped run succeeds with no report, reads
/// nothing and records no drift figure (the drift alarm treats a missing day as not breaching).
#[tokio::test]
async fn skipped_run_succeeds_without_report_or_metrics() {
    let (deps, metrics) = deps(None);
    let input: Input = serde_json::from_value(serde_json::json!({
        "baseline": "2025-01-01..2026-01-01", "at": "2026-01-01T02:30:00Z",
    }))
    .unwrap();
    let out = invoke(&deps, input, metrics.as_ref(), &SystemClock)
        .await
        .unwrap();
    let json = serde_json::to_value(&out).unwrap();
    let skipped = out.skipped.expect("skipped");
    assert_eq!(skipped.reason, SkipReason::CurrentOverlapsBaseline);
    assert!(!out.drift_detected && out.alert.is_none() && out.report.is_none());
    let m = metrics.0.lock().unwrap();
    assert!(
        !m.iter()
            .any(|d| d.name == "DriftDetected" || d.name == "DriftPValue"),
        "{m:?}"
    );
    assert_eq!(json["skipped"]["reason"], "currentOverlapsBaseline");
    assert!(json.get("report").is_none(), "{json}");
}
