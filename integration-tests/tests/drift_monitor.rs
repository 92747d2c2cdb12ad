//! The drift monitor end to end, locally: a year of baseline events and a year of current
//! events run through the real upsell workflow (template, state machine, workers), then the
//! real `state-machines/drift-monitor.asl.json` runs on the local runtime with the
//! drift-monitor worker reading what the workflow recorded (the executions' events, the
//! message records). A shifted region mix raises one `DriftDetected` on the bus naming
//! `region`; a same-distribution year raises none (no data and no concept drift). Either way
//! the report is recorded in the template's `DriftReportsTable` and the `DriftDetected` metric
//! is in the metric log. A scheduled run whose window starts before the baseline ends succeeds
//! as skipped: no report recorded, no `DriftDetected`.
//!
//! The current year's customers are new ones (`first_customer` after the baseline's). With the
//! same ids the stores would carry each customer's baseline year into the current one: every
//! current customer would have a year of tenure the baseline customers never had, the agents
//! would write differently ("thanks for a year with us"), and a same-distribution check would
//! not be one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde_json::Value;
use upsell_cli::app::{AppOptions, LocalApp};
use upsell_cli::drift_monitor::{DriftCheck, DriftRun, run_drift_monitor};
use upsell_core::drift::DriftDetected;
use upsell_core::events::EventEnvelope;
use upsell_core::monitor::MonitorReport;
use upsell_core::outbound::OUTBOUND_SOURCE;
use upsell_core::sample::{DriftScenario, SampleConfig, generate_jsonl};
use upsell_core::telemetry::MetricLog;
use upsell_sqlite::{ItemKey, KeyValue, Query, SortCondition};

const CUSTOMERS: usize = 300;
const BASELINE: &str = "2025-01-01..2026-01-01";
const CURRENT: &str = "2026-01-01..2027-01-01";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn year(seed: u64, first_customer: usize, start: &str, drift: Option<DriftScenario>) -> String {
    generate_jsonl(&SampleConfig {
        customers: CUSTOMERS,
        first_customer,
        seed,
        start: start.parse::<NaiveDate>().unwrap(),
        drift,
        ..SampleConfig::default()
    })
}

struct Checked {
    run: DriftRun,
    report_item: Value,
    drift_metric: Vec<f64>,
    monitored: Vec<upsell_core::monitor::DriftCheck>,
    rules_matching_alert: usize,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The `DriftDetected` values in the metric log.
async fn drift_metric(app: &LocalApp) -> Vec<f64> {
    app.metrics.flush().unwrap();
    app.metrics
        .metrics_since(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.name == "DriftDetected")
        .map(|d| d.value)
        .collect()
}

/// The drift checks `upsell monitor` and the dashboard's drift panel read from the metric log.
async fn monitored_checks(app: &LocalApp) -> Vec<upsell_core::monitor::DriftCheck> {
    app.metrics.flush().unwrap();
    let data = app.metrics.metrics_since(None).await.unwrap();
    MonitorReport::build(&data, None).drift_checks
}

/// Runs both years through the workflow, then the drift monitor, in a fresh home.
fn check(drift: Option<DriftScenario>) -> Checked {
    let home = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut opts = AppOptions::new(home.path()).with_repo_root(&repo_root());
        opts.lanes = 16;
        let app = Arc::new(LocalApp::open(opts).await.unwrap());
        let text = year(1, 1, "2025-01-01", None) + &year(2, CUSTOMERS + 1, "2026-01-01", drift);
        let (summary, _) = app.run_lines(&text, "drift.jsonl", |_| {}).await.unwrap();
        assert!(summary.published > 0, "{summary:?}");
        let run = run_drift_monitor(
            &app,
            &DriftCheck {
                baseline: BASELINE.into(),
                current: Some(CURRENT.into()),
                ..DriftCheck::default()
            },
        )
        .await
        .unwrap();
        let report = run.output.report.as_ref().expect("a report");
        let report_item = app
            .tables
            .get(
                "DriftReportsTable",
                &ItemKey {
                    pk: KeyValue::S(format!("BASELINE#{}", report.baseline.label)),
                    sk: Some(KeyValue::S(report.current.label.clone())),
                },
            )
            .unwrap()
            .expect("the report is recorded");
        let drift_metric = drift_metric(&app).await;
        let monitored = monitored_checks(&app).await;
        let rules_matching_alert = run
            .events
            .iter()
            .map(|e| {
                app.runtime
                    .bus()
                    .matching_rules(&app.runtime.bus().default_bus(), e)
                    .len()
            })
            .sum();
        Checked {
            run,
            report_item,
            drift_metric,
            monitored,
            rules_matching_alert,
        }
    })
}

fn attr<'a>(item: &'a Value, name: &str, ty: &str) -> &'a Value {
    &item[name][ty]
}

#[test]
fn region_shift_raises_drift_detected_naming_region() {
    let c = check(Some(DriftScenario::RegionShift));
    let out = &c.run.output;
    let report = out.report.as_ref().unwrap();
    assert!(out.drift_detected, "{:?}", report.drifted);
    // Both windows were read from what the workflow recorded, outcomes included.
    assert!(report.baseline.events > 0 && report.current.events > 0);
    assert!(
        report.baseline.messages > 0 && report.current.messages > 0,
        "{:?}",
        report.baseline
    );
    assert!(
        report.concept.iter().any(|t| t.p_value.is_some()),
        "no concept-drift test ran: {:#?}",
        report.concept
    );

    // Exactly one DriftDetected on the bus, from our source, with a detail that reads as the
    // published schema's type and names the drifted feature.
    assert_eq!(c.run.events.len(), 1, "{:?}", c.run.events);
    let event: EventEnvelope<DriftDetected> =
        serde_json::from_value(c.run.events[0].clone()).unwrap();
    assert_eq!(event.source, OUTBOUND_SOURCE);
    assert_eq!(event.detail_type, "DriftDetected");
    assert!(
        event.detail.drifted.iter().any(|t| t.name == "region"),
        "{:?}",
        event.detail.drifted
    );
    assert_eq!(Some(&event.detail), out.alert.as_ref());
    // No rule of the template starts a workflow on our own alert.
    assert_eq!(c.rules_matching_alert, 0);

    assert_eq!(
        attr(&c.report_item, "driftDetected", "BOOL"),
        &Value::Bool(true)
    );
    let recorded: Value =
        serde_json::from_str(attr(&c.report_item, "report", "S").as_str().unwrap()).unwrap();
    assert_eq!(recorded, serde_json::to_value(report).unwrap());
    assert_eq!(c.drift_metric, vec![1.0]);

    // The monitor (and so the dashboard's drift panel) reads the check back from the metric
    // log: one check that detected drift, every test with its Holm-adjusted p-value, region's
    // below the check's alpha.
    assert_eq!(c.monitored.len(), 1, "{:?}", c.monitored);
    let seen = &c.monitored[0];
    assert!(seen.drift_detected);
    let tested = report.tests().filter(|t| t.p_adjusted.is_some()).count();
    assert_eq!(seen.p_values.len(), tested, "{:?}", seen.p_values);
    let region = seen.p_values.iter().find(|(n, _)| n == "region").unwrap().1;
    assert!(region < report.alpha_look, "{region} {:?}", seen.p_values);
}

#[test]
fn same_distribution_raises_no_drift_detected() {
    let c = check(None);
    let out = &c.run.output;
    let report = out.report.as_ref().unwrap();
    // Every feature and the agents' tests ran.
    assert!(
        report.features.iter().all(|t| t.p_value.is_some()),
        "{:#?}",
        report.features
    );
    assert!(
        report.concept.iter().any(|t| t.p_value.is_some()),
        "{:#?}",
        report.concept
    );
    assert!(!out.drift_detected, "{:?}", report.drifted);
    assert!(out.alert.is_none());
    assert!(c.run.events.is_empty(), "{:?}", c.run.events);
    assert_eq!(
        attr(&c.report_item, "driftDetected", "BOOL"),
        &Value::Bool(false)
    );
    assert_eq!(c.drift_metric, vec![0.0]);
    assert_eq!(c.monitored.len(), 1, "{:?}", c.monitored);
    assert!(!c.monitored[0].drift_detected);
}

/// The schedule's run on a day whose window (the day before the execution's start) starts
/// before the baseline ends, as on the first day after deploying with a baseline that ends
/// today: the real state machine SUCCEEDS with the worker's `skipped` outcome, through its
/// `IsSkipped` choice, records no report and puts no `DriftDetected` on the bus.
#[test]
fn scheduled_run_before_the_baseline_ends_succeeds_as_skipped() {
    let home = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let opts = AppOptions::new(home.path()).with_repo_root(&repo_root());
        let app = LocalApp::open(opts).await.unwrap();
        // Ends after any execution's start: the window from `$$.Execution.StartTime` overlaps.
        let baseline = "2025-01-01T00:00:00Z..2100-01-01T00:00:00Z";
        let run = run_drift_monitor(
            &app,
            &DriftCheck {
                baseline: baseline.into(),
                current_days: Some(7),
                ..DriftCheck::default()
            },
        )
        .await
        .expect("the execution succeeds");
        let out = &run.output;
        let skipped = out.skipped.as_ref().expect("skipped");
        assert_eq!(
            serde_json::to_value(skipped.reason).unwrap(),
            "currentOverlapsBaseline"
        );
        assert_eq!(skipped.baseline, baseline);
        assert_eq!(skipped.first_check_on.to_string(), "2100-01-08");
        assert!(
            skipped.message.contains("before the baseline"),
            "{}",
            skipped.message
        );
        assert!(!out.drift_detected && out.alert.is_none() && out.report.is_none());
        assert!(run.events.is_empty(), "{:?}", run.events);
        let items = app
            .tables
            .query(
                "DriftReportsTable",
                &Query {
                    pk: KeyValue::S(format!("BASELINE#{baseline}")),
                    sort: SortCondition::Any,
                    forward: true,
                    limit: None,
                    start_after: None,
                },
            )
            .unwrap();
        assert!(items.is_empty(), "{items:?}");
        assert_eq!(drift_metric(&app).await, Vec::<f64>::new());
    });
}
