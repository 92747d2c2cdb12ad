//! What every upsell-flow Lambda binary shares: JSON logging set up once per container, and
//! [`run`], which serves a [`Worker`]: each invocation goes through [`upsell_core::worker::invoke`]
//! (latency, errors and the worker's figures as CloudWatch EMF lines on stdout, [`emf`]), and a
//! worker error becomes a Lambda function error whose `errorType` is its stable
//! [`ErrorName`](upsell_core::worker::ErrorName): the name the state machine's Retry and Catch
//! match, and the one the local runtime raises.
//!
//! A worker's `main.rs` builds its ports once, outside the handler, then calls [`run`]. The AWS
//! SDK is not a dependency here, so a worker without AWS clients (schema-check) stays small.

pub mod emf;

use std::fmt::Display;
use std::future::Future;

use chrono::{DateTime, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use upsell_core::worker::{CallClock, StableError, Worker, invoke};

pub use emf::EmfMetrics;

/// Builds the worker's dependencies, logging a startup failure (a missing resource name, say)
/// before Lambda reports the init error.
pub async fn start<D, E: Display>(
    worker: &str,
    deps: impl Future<Output = Result<D, E>>,
) -> Result<D, E> {
    deps.await.inspect_err(|e| {
        lambda_runtime::tracing::error!(error = %e, "cannot start the {worker} worker");
    })
}

/// Serves invocations of `worker`, with EMF metrics from [`EmfMetrics::from_env`]. A worker
/// error becomes a function error with `errorType` = its error name and `errorMessage` =
/// its text. An input that does not deserialise is refused by lambda_runtime as
/// `lambda_runtime::deserializer::DeserializeError` (the local runtime uses the same name).
pub async fn run<W: Worker>(worker: W) -> Result<(), lambda_runtime::Error> {
    let metrics = EmfMetrics::from_env();
    let (worker, metrics) = (&worker, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<W::Input>| async move {
        invoke(worker, event.payload, metrics, &SystemClock)
            .await
            .map_err(|e| {
                let error_type = e.error_name().as_str();
                lambda_runtime::tracing::warn!(error_type, error = %e, "{} failed", W::NAME);
                Diagnostic {
                    error_type: error_type.to_owned(),
                    error_message: e.to_string(),
                }
            })
    }))
    .await
}

/// The system clock, which times and stamps each invocation.
struct SystemClock;

impl CallClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn instant(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
}

/// JSON log lines on stdout, whatever the function's log format, so Logs Insights can query the
/// fields. The level comes from Lambda's log-level control (`AWS_LAMBDA_LOG_LEVEL`), else
/// `RUST_LOG`, else INFO. lambda_runtime adds a span with the request id to every line.
pub fn init_tracing() {
    use lambda_runtime::tracing::subscriber::{EnvFilter, fmt};
    let directives = match std::env::var("AWS_LAMBDA_LOG_LEVEL") {
        // Lambda's levels are upper case and include FATAL, which tracing calls ERROR.
        Ok(level) => level.to_ascii_lowercase().replace("fatal", "error"),
        Err(_) => std::env::var("RUST_LOG").unwrap_or_default(),
    };
    let filter = match directives.trim() {
        "" => EnvFilter::new("info"),
        d => EnvFilter::try_new(d).unwrap_or_else(|_| EnvFilter::new("info")),
    };
    fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_current_span(true)
        .with_span_list(false)
        .init();
}
