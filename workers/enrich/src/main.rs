//! Lambda entry point of the enrich worker (feature `lambda`): the AWS adapters are built once
//! per container, outside the handler, and every invocation borrows them.

use std::sync::Arc;

use enrich::Deps;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    upsell_lambda::init_tracing();
    let deps = upsell_lambda::start("enrich", build_deps()).await?;
    upsell_lambda::run(deps).await
}

/// The worker's ports on AWS; a missing resource name fails here, naming the variable.
async fn build_deps() -> Result<Deps, upsell_aws::ConfigError> {
    let ctx = upsell_aws::AwsContext::from_env().await?;
    Ok(Deps {
        features: Arc::new(ctx.feature_store()?),
        contacts: Arc::new(ctx.contact_store()?),
        // Every event refreshes the customer's embedding in the S3 Vectors customer index
        // (docs/feature-store.md, "Customer index in AWS").
        index: Some(Arc::new(ctx.customer_index()?)),
        // Accepted messages become past successes in the knowledge base's bucket, synced by
        // the past-messages data source (docs/knowledge-base.md).
        outcomes: Some(enrich::outcome::OutcomeDeps {
            messages: Arc::new(ctx.message_store()?),
            successes: Arc::new(ctx.past_successes()?),
        }),
    })
}
