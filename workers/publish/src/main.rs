//! Lambda entry point of the publish worker (feature `lambda`): the AWS adapters are built once
//! per container, outside the handler, and every invocation borrows them.

use std::sync::Arc;

use publish::Deps;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    upsell_lambda::init_tracing();
    let deps = upsell_lambda::start("publish", build_deps()).await?;
    upsell_lambda::run(deps).await
}

/// The worker's ports on AWS; a missing resource name fails here, naming the variable.
async fn build_deps() -> Result<Deps, upsell_aws::ConfigError> {
    let ctx = upsell_aws::AwsContext::from_env().await?;
    Ok(Deps {
        messages: Arc::new(ctx.message_store()?),
        events: Arc::new(ctx.event_publisher()?),
        counters: Arc::new(ctx.version_counters()?),
    })
}
