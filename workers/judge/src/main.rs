//! Lambda entry point of the judge worker (feature `lambda`): the AWS adapters are built once
//! per container, outside the handler, and every invocation borrows them.

use std::sync::Arc;

use judge::{Deps, Input, Output, handle};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let deps = build_deps().await.inspect_err(|e| {
        lambda_runtime::tracing::error!(error = %e, "cannot start the judge worker");
    })?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Input>| invoke(&deps, event))).await
}

/// The worker's ports on AWS; a missing resource name fails here, naming the variable.
async fn build_deps() -> Result<Deps, upsell_aws::ConfigError> {
    let ctx = upsell_aws::AwsContext::from_env().await?;
    Ok(Deps {
        registry: Arc::new(ctx.agent_registry()?),
        model: Arc::new(ctx.model_provider()),
    })
}

/// One invocation. A worker error becomes a Lambda function error whose `errorType` is
/// `WorkerError::error_type()`: the name the state machine's Retry and Catch match, and the
/// one the local runtime raises. An input that does not deserialise is refused by
/// lambda_runtime as `lambda_runtime::deserializer::DeserializeError` (the local runtime uses
/// the same name).
async fn invoke(deps: &Deps, event: LambdaEvent<Input>) -> Result<Output, Diagnostic> {
    handle(event.payload, deps).await.map_err(|e| {
        let error_type = e.error_type();
        lambda_runtime::tracing::warn!(error_type, error = %e, "judge failed");
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    })
}

/// JSON log lines on stdout, whatever the function's log format, so Logs Insights can query the
/// fields. The level comes from Lambda's log-level control (`AWS_LAMBDA_LOG_LEVEL`), else
/// `RUST_LOG`, else INFO. lambda_runtime adds a span with the request id to every line.
fn init_tracing() {
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
