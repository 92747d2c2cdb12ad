//! Lambda entry point of the evaluate worker (feature `lambda`): the AWS adapters are built once
//! per container, outside the handler, and every invocation borrows them.

use std::sync::Arc;

use evaluate::Deps;
use upsell_core::evaluation::StoresTimeline;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    upsell_lambda::init_tracing();
    let deps = upsell_lambda::start("evaluate", build_deps()).await?;
    upsell_lambda::run(deps).await
}

/// The worker's ports on AWS: the registry, point-in-time reads of the live feature store
/// (every snapshot is kept by time) and the evaluations table. A missing resource name fails
/// here, naming the variable.
async fn build_deps() -> Result<Deps, upsell_aws::ConfigError> {
    let ctx = upsell_aws::AwsContext::from_env().await?;
    Ok(Deps {
        registry: Arc::new(ctx.agent_registry()?),
        timeline: Arc::new(StoresTimeline {
            features: Arc::new(ctx.feature_store()?),
            contacts: Arc::new(ctx.contact_store()?),
        }),
        store: Arc::new(ctx.evaluation_store()?),
    })
}
