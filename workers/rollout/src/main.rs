//! Lambda entry point of the rollout worker (feature `lambda`): the AWS adapters are built once
//! per container, outside the handler, and every invocation borrows them.

use std::sync::Arc;

use rollout::Deps;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    upsell_lambda::init_tracing();
    let deps = upsell_lambda::start("rollout", build_deps()).await?;
    upsell_lambda::run(deps).await
}

/// The worker's ports on AWS: the registry, the per-version counters and the event bus. A
/// missing resource name fails here, naming the variable.
async fn build_deps() -> Result<Deps, upsell_aws::ConfigError> {
    let ctx = upsell_aws::AwsContext::from_env().await?;
    Ok(Deps {
        registry: Arc::new(ctx.agent_registry()?),
        counters: Arc::new(ctx.version_counters()?),
        events: Arc::new(ctx.event_publisher()?),
    })
}
