//! The drift-monitor worker: the one Task of `state-machines/drift-monitor.asl.json`, which an
//! EventBridge Scheduler schedule starts every day.
//!
//! It reads the baseline window and the current window (by default the `currentDays` days
//! before the UTC midnight of `at`, the execution's start time) from a [`DriftSource`], runs
//! [`upsell_core::drift::detect`] and returns the report with the `DriftDetected` alert when
//! drift was found; the state machine records the report and puts the alert on the bus. Its
//! figures ([`Worker::figures`]) are [`telemetry::DRIFT_DETECTED`] and one
//! [`telemetry::DRIFT_P_VALUE`] per test that ran: EMF in Lambda, the metric log locally.
//!
//! Unless `look` is given, the look number counts the checks since the baseline's end, so that
//! every check spends its own share of alpha: for the schedule's window (from `at`) one look per
//! day, the first day whose window starts at the baseline's end being look 1; for a given
//! `current` window, one look per window length between the baseline's end and its end.
//!
//! A scheduled run (no `current`) whose window starts before the baseline ends is skipped, not
//! failed: it returns [`Output::skipped`] (why, and the first day a scheduled run checks) with
//! no report and no figures, and the state machine ends without recording a report. That is
//! the first `currentDays` days after a baseline that ends on or after the deploy day. A given
//! `current` window that starts before the baseline ends is still an `InvalidRequest`.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use upsell_core::drift::{self, DriftConfig, DriftDetected, DriftReport, DriftSource};
use upsell_core::ports::PortError;
use upsell_core::telemetry;
use upsell_core::worker::{ErrorName, Figures, StableError, Worker};

/// What the state machine passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    /// Baseline window `FROM..TO` (dates are UTC midnight, or RFC 3339 instants).
    pub baseline: String,
    /// Current window `FROM..TO`; by default the `currentDays` days before `at`'s UTC midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Length of the default current window in days (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 366))]
    pub current_days: Option<u32>,
    /// When the check runs (`$$.Execution.StartTime`); needed without `current`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// False-alarm budget over every look at this baseline (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Look number; by default counted from the baseline's end in current windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub look: Option<u32>,
    /// Fewest observations per side for a test (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
}

/// What the worker returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Whether any test drifted (false when the check was skipped).
    pub drift_detected: bool,
    /// Present when the check did not run (then there is no report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skipped>,
    /// The bus event's detail, when drift was detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<DriftDetected>,
    /// The full report, when the check ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<DriftReport>,
}

/// Why a check did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// The scheduled current window starts before the baseline ends: too early to compare.
    CurrentOverlapsBaseline,
}

/// A check that did not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// Why, as a stable name.
    pub reason: SkipReason,
    /// Why, for people.
    pub message: String,
    /// The baseline window `FROM..TO`.
    pub baseline: String,
    /// The current window `FROM..TO` the run would have compared.
    pub current: String,
    /// The first UTC day on which a scheduled run's window starts at or after the baseline's end.
    pub first_check_on: NaiveDate,
}

/// What an input asks the worker to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Compare the current window (second) with the baseline (first) under this config.
    Check(DriftConfig, Span, Span),
    /// Nothing to compare yet.
    Skip(Skipped),
}

/// Why the worker failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The input is not usable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A store failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl WorkerError {
    /// The stable error name the state machine matches.
    pub fn error_type(&self) -> ErrorName {
        match self {
            WorkerError::InvalidInput(_) => ErrorName::InvalidRequest,
            WorkerError::Port(e) => e.error_type(),
        }
    }
}

/// Ports the worker needs.
#[derive(Clone)]
pub struct Deps {
    /// Where the windows come from.
    pub source: Arc<dyn DriftSource>,
}

/// A half-open time window `[from, to)`.
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// The config, baseline and current windows an input asks for, or why a scheduled run skips.
pub fn plan(input: &Input) -> Result<Plan, WorkerError> {
    let bad = WorkerError::InvalidInput;
    let baseline = drift::parse_range(&input.baseline).map_err(bad)?;
    let days = i64::from(input.current_days.unwrap_or(1));
    if !(1..=366).contains(&days) {
        return Err(bad(format!("currentDays {days} is not between 1 and 366")));
    }
    let current = match (&input.current, input.at) {
        (Some(c), _) => drift::parse_range(c).map_err(bad)?,
        (None, Some(at)) => {
            let end = at
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc();
            (end - Duration::days(days), end)
        }
        (None, None) => {
            return Err(bad(
                "give either `current` (FROM..TO) or `at` (the execution start time)".into(),
            ));
        }
    };
    if current.0 < baseline.1 && input.current.is_none() {
        // The schedule's window: a run this early is expected (the first `days` days after
        // a baseline that ends on or after the deploy day), not an error.
        let first = baseline.1 + Duration::days(days);
        let midnight = first
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        let first_check_on = if midnight == first {
            first.date_naive()
        } else {
            first.date_naive() + Duration::days(1)
        };
        let (b, c) = (
            drift::time_window(baseline.0, baseline.1).label,
            drift::time_window(current.0, current.1).label,
        );
        return Ok(Plan::Skip(Skipped {
            reason: SkipReason::CurrentOverlapsBaseline,
            message: format!(
                "skipped: the current window {c} starts before the baseline {b} ends; \
                 too early to compare, the first scheduled check is on {first_check_on}"
            ),
            baseline: b,
            current: c,
            first_check_on,
        }));
    }
    if current.0 < baseline.1 {
        return Err(bad(format!(
            "the current window {}..{} starts before the baseline ends ({})",
            current.0, current.1, baseline.1
        )));
    }
    let look = input.look.unwrap_or_else(|| {
        let count = if input.current.is_none() {
            // The schedule's window: one run a day, each a look, whatever the window's
            // length (a 7-day window checked daily is looked at on 7 days, not once).
            (current.0 - baseline.1).num_days() + 1
        } else {
            // Given windows are taken as consecutive: one look per window since the baseline.
            let window = (current.1 - current.0).num_seconds().max(1);
            let since = (current.1 - baseline.1).num_seconds();
            (since + window - 1) / window
        };
        u32::try_from(count).unwrap_or(u32::MAX)
    });
    let alpha = input.alpha.unwrap_or(0.05);
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(bad(format!(
            "alpha {alpha} is not strictly between 0 and 1"
        )));
    }
    let cfg = DriftConfig {
        alpha,
        look: look.max(1),
        min_samples: input.min_samples.unwrap_or(30),
    };
    Ok(Plan::Check(cfg, baseline, current))
}

/// Runs one drift check, or skips it (see [`plan`]).
pub async fn handle(input: Input, deps: &Deps) -> Result<Output, WorkerError> {
    let (cfg, (bf, bt), (cf, ct)) = match plan(&input)? {
        Plan::Check(cfg, baseline, current) => (cfg, baseline, current),
        Plan::Skip(skipped) => {
            return Ok(Output {
                drift_detected: false,
                skipped: Some(skipped),
                alert: None,
                report: None,
            });
        }
    };
    let baseline = drift::read_window(deps.source.as_ref(), bf, bt).await?;
    let current = drift::read_window(deps.source.as_ref(), cf, ct).await?;
    let report = drift::detect(&baseline, &current, &cfg);
    Ok(Output {
        drift_detected: report.drift_detected,
        skipped: None,
        alert: report.alert(),
        report: Some(report),
    })
}

impl StableError for WorkerError {
    fn error_name(&self) -> ErrorName {
        self.error_type()
    }
}

#[async_trait::async_trait]
impl Worker for Deps {
    const NAME: &'static str = "drift-monitor";
    const STATE: &'static str = "CheckDrift";
    type Input = Input;
    type Output = Output;
    type Error = WorkerError;

    async fn handle(&self, input: Input) -> Result<Output, WorkerError> {
        handle(input, self).await
    }

    /// One `DriftPValue` (Holm-adjusted) per test that ran, by test name, and one
    /// `DriftDetected` (1 or 0): the drift alarm's metric. None when the check was skipped.
    fn figures(output: &Output, out: &mut Figures) {
        let Some(report) = &output.report else {
            return;
        };
        for t in report.tests() {
            if let Some(p) = t.p_adjusted {
                out.add(
                    &telemetry::DRIFT_P_VALUE,
                    p,
                    &[(telemetry::FEATURE, t.name.as_str())],
                );
            }
        }
        out.add(
            &telemetry::DRIFT_DETECTED,
            if output.drift_detected { 1.0 } else { 0.0 },
            &[],
        );
    }
}
