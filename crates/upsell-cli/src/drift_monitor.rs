//! The drift monitor on a laptop: one execution of `state-machines/drift-monitor.asl.json` (the
//! template's `DriftMonitorStateMachine`, the definition the daily schedule starts in AWS) on
//! the local runtime. The drift-monitor worker reads what the local runtime has run (the events
//! in the execution history, their message records); the report lands in the template's
//! `DriftReportsTable` (local table store) and, on drift, `DriftDetected` on the local bus
//! (`bus-events.jsonl`). `upsell drift --run` calls [`run_drift_monitor`].

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use upsell_core::drift::DRIFT_DETECTED_DETAIL_TYPE;
use upsell_local::state_machine_arn;

use crate::app::LocalApp;

/// Logical id of the drift monitor's state machine in sam/template.yaml.
pub const STATE_MACHINE: &str = "DriftMonitorStateMachine";

/// What one check asks for: the state machine's input (`None` = the worker's default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriftCheck {
    /// Baseline window `FROM..TO`.
    pub baseline: String,
    /// Current window `FROM..TO`; by default the `current_days` days before today (UTC).
    pub current: Option<String>,
    /// Length of the default current window in days.
    pub current_days: Option<u32>,
    /// False-alarm budget over every look at this baseline.
    pub alpha: Option<f64>,
    /// Look number; by default counted from the baseline's end.
    pub look: Option<u32>,
    /// Fewest observations per side for a test.
    pub min_samples: Option<u64>,
}

impl DriftCheck {
    /// The execution input, as the schedule would send it (absent settings left out).
    pub fn input(&self) -> Value {
        let mut v = json!({ "baseline": self.baseline });
        let mut set = |k: &str, x: Value| {
            if !x.is_null() {
                v[k] = x;
            }
        };
        set("current", json!(self.current));
        set("currentDays", json!(self.current_days));
        set("alpha", json!(self.alpha));
        set("look", json!(self.look));
        set("minSamples", json!(self.min_samples));
        v
    }
}

/// How one drift-monitor execution ended.
#[derive(Debug, Clone)]
pub struct DriftRun {
    /// The execution.
    pub execution_arn: String,
    /// The worker's output (report and alert), the execution's output.
    pub output: drift_monitor::Output,
    /// The `DriftDetected` events this execution put on the bus.
    pub events: Vec<Value>,
}

/// Runs the drift-monitor state machine once and waits for it. A failed execution is an error
/// carrying the state machine's error and cause.
pub async fn run_drift_monitor(app: &LocalApp, check: &DriftCheck) -> anyhow::Result<DriftRun> {
    let before = app.bus.published(DRIFT_DETECTED_DETAIL_TYPE).len();
    let execution = app
        .runtime
        .start_execution(&state_machine_arn(STATE_MACHINE), None, check.input(), true)
        .await
        .map_err(|e| anyhow::anyhow!("starting the drift monitor: {e}"))?;
    app.runtime.flush()?;
    let arn = execution.execution_arn.clone();
    let output = match (execution.status.as_str(), execution.output) {
        ("SUCCEEDED", Some(v)) => serde_json::from_value::<drift_monitor::Output>(v)
            .with_context(|| format!("reading the output of {arn}"))?,
        (status, _) => bail!(
            "the drift monitor {status}: {} {} (see `upsell executions show {arn}`)",
            execution.error.unwrap_or_default(),
            execution.cause.unwrap_or_default()
        ),
    };
    let events = app
        .bus
        .published(DRIFT_DETECTED_DETAIL_TYPE)
        .into_iter()
        .skip(before)
        .collect();
    Ok(DriftRun {
        execution_arn: arn,
        output,
        events,
    })
}
