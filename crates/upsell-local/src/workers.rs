//! The local runtime's [`WorkerRegistry`] over typed [`Worker`]s: each call deserialises the
//! payload into the worker's `Input`, runs it through [`upsell_core::worker::invoke`] (the same
//! metrics as in Lambda, into the local metric sink) and serialises its `Output`; a worker error
//! becomes a [`WorkerFailure`] whose `error_type` is the worker's stable error name, as
//! `upsell-lambda` reports it in AWS.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use upsell_core::ports::Metrics;
use upsell_core::worker::{CallClock, StableError, Worker, invoke};

use crate::runtime::{WorkerFailure, WorkerRegistry};

/// Error type lambda_runtime reports when the payload does not deserialise into `Input`.
pub const DESERIALIZE_ERROR: &str = "lambda_runtime::deserializer::DeserializeError";

/// Error type of a call to a function that does not exist.
pub const NO_SUCH_WORKER: &str = "Lambda.ResourceNotFoundException";

/// The system clock, which times and stamps each call as in Lambda (latency is real time
/// also when the engine runs on the virtual clock).
struct SystemClock;

impl CallClock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
    fn instant(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
}

/// A worker behind JSON in, JSON out.
#[async_trait]
trait JsonWorker: Send + Sync {
    async fn call(&self, payload: Value, metrics: &dyn Metrics) -> Result<Value, WorkerFailure>;
}

struct Typed<W>(W);

#[async_trait]
impl<W: Worker> JsonWorker for Typed<W> {
    async fn call(&self, payload: Value, metrics: &dyn Metrics) -> Result<Value, WorkerFailure> {
        let input: W::Input = serde_json::from_value(payload).map_err(|e| {
            WorkerFailure::new(
                DESERIALIZE_ERROR,
                format!(
                    "failed to deserialize the incoming data into the {} worker's Input: {e}",
                    W::NAME
                ),
            )
        })?;
        match invoke(&self.0, input, metrics, &SystemClock).await {
            Ok(out) => serde_json::to_value(out).map_err(|e| {
                WorkerFailure::new(
                    "InternalError",
                    format!("the {} worker's Output does not serialise: {e}", W::NAME),
                )
            }),
            Err(e) => Err(WorkerFailure::new(e.error_name().as_str(), e.to_string())),
        }
    }
}

/// Workers by name (their `CodeUri` folder), recording metrics into one sink.
pub struct WorkerSet {
    workers: BTreeMap<&'static str, Box<dyn JsonWorker>>,
    metrics: Arc<dyn Metrics>,
}

impl std::fmt::Debug for WorkerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSet")
            .field("workers", &self.names())
            .finish_non_exhaustive()
    }
}

impl WorkerSet {
    /// No workers yet; metrics go to `metrics`.
    pub fn new(metrics: Arc<dyn Metrics>) -> Self {
        WorkerSet {
            workers: BTreeMap::new(),
            metrics,
        }
    }

    /// Adds `worker` under its name; a second worker of the same name replaces the first.
    #[must_use]
    pub fn with<W: Worker>(mut self, worker: W) -> Self {
        self.workers.insert(W::NAME, Box::new(Typed(worker)));
        self
    }

    /// The worker names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.workers.keys().copied().collect()
    }

    /// Calls one worker with a JSON payload.
    pub async fn call_worker(&self, worker: &str, payload: Value) -> Result<Value, WorkerFailure> {
        match self.workers.get(worker) {
            Some(w) => w.call(payload, self.metrics.as_ref()).await,
            None => Err(WorkerFailure::new(
                NO_SUCH_WORKER,
                format!(
                    "no worker named {worker:?} (known: {})",
                    self.names().join(", ")
                ),
            )),
        }
    }
}

#[async_trait]
impl WorkerRegistry for WorkerSet {
    async fn invoke(&self, worker: &str, payload: Value) -> Result<Value, WorkerFailure> {
        self.call_worker(worker, payload).await
    }

    fn has_worker(&self, worker: &str) -> bool {
        self.workers.contains_key(worker)
    }
}
