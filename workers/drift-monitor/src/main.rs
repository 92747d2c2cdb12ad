//! Lambda entry point of the drift-monitor worker (feature `lambda`): the AWS adapters are built
//! once per container, outside the handler, and every invocation borrows them.

use std::sync::Arc;

use drift_monitor::Deps;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    upsell_lambda::init_tracing();
    let deps = upsell_lambda::start("drift-monitor", build_deps()).await?;
    upsell_lambda::run(deps).await
}

/// The worker's port on AWS: the events the upsell-message state machine claimed (each claim
/// item keeps the validated event) and their message records, both in the messages table. A
/// missing table name fails here, naming the variable.
async fn build_deps() -> Result<Deps, upsell_aws::ConfigError> {
    let ctx = upsell_aws::AwsContext::from_env().await?;
    Ok(Deps {
        source: Arc::new(ctx.drift_source()?),
    })
}
