//! The one worker shape and the one error vocabulary.
//!
//! - [`ErrorName`]: every error name a worker raises, the names the state machines' Retry and
//!   Catch match. A test (`tests/error_vocabulary.rs`) checks that every `ErrorEquals` of every
//!   `state-machines/*.asl.json` is one of these, a `States.*` / `Lambda.*` error, or an error of
//!   the state's service integration.
//! - [`Worker`]: typed input, output and error. The Lambda runner (`upsell-lambda`) and the local
//!   runtime (`upsell-local`) both drive workers through [`invoke`], which records the metrics
//!   of every call once: [`STATE_LATENCY`], [`WORKER_ERRORS`] and the worker's own figures
//!   ([`Worker::figures`]: tokens, cost, approvals, rejections, quarantines...). The caller
//!   passes the [`CallClock`] the call is timed and stamped with: upsell-core reads no clock.

use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::AgentRef;
use crate::ports::dims::{AGENT_ID, AGENT_VERSION};
use crate::ports::{MetricDatum, Metrics};
use crate::telemetry::{ERROR_TYPE, MetricSpec, STATE, STATE_LATENCY, WORKER_ERRORS};

/// A stable error name: the `errorType` of a Lambda function error, and what ASL `ErrorEquals`
/// matches. Locally the runtime raises the very same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorName {
    /// An event failed validation (schema-check); the state machine quarantines it.
    SchemaInvalid,
    /// A store or service asked us to slow down; retried with backoff.
    Throttled,
    /// A transient store, service or network failure; retried.
    TransientError,
    /// Something asked for does not exist.
    NotFound,
    /// A conditional write lost.
    Conflict,
    /// The request was malformed or refused; not retried.
    InvalidRequest,
    /// Anything else; not retried.
    InternalError,
    /// The model provider throttled the call; retried with backoff.
    ModelThrottled,
    /// Model timeout, 5xx or network failure; retried.
    ModelTransient,
    /// The model answered, but not in the expected form; the judge asks again.
    ModelOutputInvalid,
}

impl ErrorName {
    /// Every name.
    pub const ALL: [ErrorName; 10] = [
        ErrorName::SchemaInvalid,
        ErrorName::Throttled,
        ErrorName::TransientError,
        ErrorName::NotFound,
        ErrorName::Conflict,
        ErrorName::InvalidRequest,
        ErrorName::InternalError,
        ErrorName::ModelThrottled,
        ErrorName::ModelTransient,
        ErrorName::ModelOutputInvalid,
    ];

    /// The name as ASL and Lambda spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorName::SchemaInvalid => "SchemaInvalid",
            ErrorName::Throttled => "Throttled",
            ErrorName::TransientError => "TransientError",
            ErrorName::NotFound => "NotFound",
            ErrorName::Conflict => "Conflict",
            ErrorName::InvalidRequest => "InvalidRequest",
            ErrorName::InternalError => "InternalError",
            ErrorName::ModelThrottled => "ModelThrottled",
            ErrorName::ModelTransient => "ModelTransient",
            ErrorName::ModelOutputInvalid => "ModelOutputInvalid",
        }
    }

    /// The name of an ASL error string, if it is one of ours.
    pub fn parse(name: &str) -> Option<ErrorName> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl std::fmt::Display for ErrorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ErrorName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// An error with a stable name: what a worker's error type implements.
pub trait StableError: std::error::Error + Send + Sync + 'static {
    /// The name the state machine matches.
    fn error_name(&self) -> ErrorName;
}

/// One Lambda worker: typed input, output and error.
#[async_trait]
pub trait Worker: Send + Sync + 'static {
    /// The worker's name: its `CodeUri` folder, e.g. `generate`.
    const NAME: &'static str;
    /// The `State` dimension of its metrics: the ASL state it serves, e.g. `Generate`.
    const STATE: &'static str;
    /// What the state machine passes.
    type Input: DeserializeOwned + Send + 'static;
    /// What it returns.
    type Output: Serialize + Send + Sync + 'static;
    /// How it fails.
    type Error: StableError;

    /// Handles one invocation.
    async fn handle(&self, input: Self::Input) -> Result<Self::Output, Self::Error>;

    /// The agent that ran, added to the call's latency (generate and judge).
    fn agent(output: &Self::Output) -> Option<&AgentRef> {
        let _ = output;
        None
    }

    /// The worker's own data points of a successful call (tokens, cost, outcomes...).
    fn figures(output: &Self::Output, out: &mut Figures) {
        let _ = (output, out);
    }
}

/// The time a worker call is timed and stamped with. The Lambda runner and the local runtime
/// pass the system clock; tests pass a fixed one.
pub trait CallClock: Send + Sync {
    /// Wall time: the stamp of the call's figures.
    fn now(&self) -> DateTime<Utc>;
    /// Monotonic time: the call's latency is the difference of two readings.
    fn instant(&self) -> Instant;
}

/// The data points of one call, stamped with one time: readers group them by it.
#[derive(Debug)]
pub struct Figures {
    at: DateTime<Utc>,
    data: Vec<MetricDatum>,
}

impl Figures {
    /// No data points yet; those added will be stamped `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Figures {
            at,
            data: Vec::new(),
        }
    }

    /// Adds one data point of `spec` with `dims` (name, value), in the catalogue's order.
    pub fn add(&mut self, spec: &MetricSpec, value: f64, dims: &[(&str, &str)]) {
        let mut d = MetricDatum::at(spec.name, value, spec.unit, self.at);
        d.dimensions = dims
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.data.push(d);
    }

    /// Adds a data point of `spec` whose dimensions are `State` and the agent's id and version.
    pub fn add_for_agent(&mut self, spec: &MetricSpec, value: f64, state: &str, agent: &AgentRef) {
        let version = agent.version.to_string();
        self.add(
            spec,
            value,
            &[
                (STATE, state),
                (AGENT_ID, &agent.agent_id),
                (AGENT_VERSION, &version),
            ],
        );
    }

    /// The data points so far.
    pub fn data(&self) -> &[MetricDatum] {
        &self.data
    }

    /// The data points.
    pub fn into_data(self) -> Vec<MetricDatum> {
        self.data
    }
}

/// Runs one invocation of `worker` and records its metrics in `metrics`: the latency (with the
/// agent that ran), one `WorkerErrors` on failure, the worker's figures on success, all
/// stamped with the time the call ended on `clock`.
pub async fn invoke<W: Worker>(
    worker: &W,
    input: W::Input,
    metrics: &dyn Metrics,
    clock: &dyn CallClock,
) -> Result<W::Output, W::Error> {
    let started = clock.instant();
    let result = worker.handle(input).await;
    let elapsed_ms = clock.instant().duration_since(started).as_secs_f64() * 1000.0;
    let mut figures = Figures::at(clock.now());
    match &result {
        Ok(output) => {
            match W::agent(output) {
                Some(agent) => figures.add_for_agent(&STATE_LATENCY, elapsed_ms, W::STATE, agent),
                None => figures.add(&STATE_LATENCY, elapsed_ms, &[(STATE, W::STATE)]),
            }
            W::figures(output, &mut figures);
        }
        Err(e) => {
            figures.add(&STATE_LATENCY, elapsed_ms, &[(STATE, W::STATE)]);
            figures.add(
                &WORKER_ERRORS,
                1.0,
                &[(STATE, W::STATE), (ERROR_TYPE, e.error_name().as_str())],
            );
        }
    }
    for d in figures.into_data() {
        metrics.record(d);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<MetricDatum>>);

    impl Metrics for Recorded {
        fn record(&self, datum: MetricDatum) {
            self.0.lock().unwrap().push(datum);
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("slow down")]
    struct Slow;

    impl StableError for Slow {
        fn error_name(&self) -> ErrorName {
            ErrorName::ModelThrottled
        }
    }

    struct Echo;

    #[async_trait]
    impl Worker for Echo {
        const NAME: &'static str = "echo";
        const STATE: &'static str = "Echo";
        type Input = i64;
        type Output = AgentRef;
        type Error = Slow;

        async fn handle(&self, input: i64) -> Result<AgentRef, Slow> {
            if input < 0 {
                return Err(Slow);
            }
            Ok(AgentRef {
                agent_id: "a".into(),
                version: semver::Version::new(1, 2, 3),
            })
        }

        fn agent(output: &AgentRef) -> Option<&AgentRef> {
            Some(output)
        }

        fn figures(_: &AgentRef, out: &mut Figures) {
            out.add(&crate::telemetry::EVENTS_SKIPPED, 1.0, &[("Reason", "x")]);
        }
    }

    fn dims(d: &MetricDatum) -> Vec<(&str, &str)> {
        d.dimensions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Each reading moves on by 5 ms and a second of wall time.
    struct Ticking(Mutex<(Instant, DateTime<Utc>)>);

    impl Ticking {
        fn new() -> Self {
            let start = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
            Ticking(Mutex::new((Instant::now(), start)))
        }
    }

    impl CallClock for Ticking {
        fn now(&self) -> DateTime<Utc> {
            let mut t = self.0.lock().unwrap();
            t.1 += chrono::Duration::seconds(1);
            t.1
        }
        fn instant(&self) -> Instant {
            let mut t = self.0.lock().unwrap();
            t.0 += std::time::Duration::from_millis(5);
            t.0
        }
    }

    #[tokio::test]
    async fn a_call_records_latency_with_its_agent_and_its_figures_or_its_error_name() {
        let m = Recorded::default();
        let clock = Ticking::new();
        invoke(&Echo, 1, &m, &clock).await.unwrap();
        invoke(&Echo, -1, &m, &clock).await.unwrap_err();
        let got = m.0.lock().unwrap();
        let names: Vec<&str> = got.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "StateLatency",
                "EventsSkipped",
                "StateLatency",
                "WorkerErrors"
            ]
        );
        assert_eq!(
            dims(&got[0]),
            [
                ("State", "Echo"),
                ("AgentId", "a"),
                ("AgentVersion", "1.2.3")
            ]
        );
        assert_eq!(dims(&got[2]), [("State", "Echo")]);
        assert_eq!(
            dims(&got[3]),
            [("State", "Echo"), ("ErrorType", "ModelThrottled")]
        );
        assert_eq!(got[3].value, 1.0);
        // The latency is the clock's, and one call's figures share one time stamp, the time the
        // call ended (the monitor groups a drift check by it).
        assert_eq!((got[0].value, got[2].value), (5.0, 5.0));
        assert_eq!(got[0].timestamp, got[1].timestamp);
        assert_eq!(got[2].timestamp, got[3].timestamp);
        assert_eq!(
            got[2].timestamp - got[0].timestamp,
            chrono::Duration::seconds(1)
        );
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        for (i, e) in ErrorName::ALL.iter().enumerate() {
            assert_eq!(ErrorName::parse(e.as_str()), Some(*e));
            assert!(ErrorName::ALL[..i].iter().all(|o| o.as_str() != e.as_str()));
        }
        assert_eq!(ErrorName::parse("States.ALL"), None);
    }
}
