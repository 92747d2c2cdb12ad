//! Lambda entry point of the enrich worker (feature `lambda`): AWS adapters built once.

use std::sync::Arc;

use enrich::{Deps, Input, handle};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let ctx = upsell_aws::AwsContext::from_env().await?;
    let deps: &'static Deps = Box::leak(Box::new(Deps {
        features: Arc::new(ctx.feature_store()?),
        // AWS ADAPTER NEEDED: a DynamoDB ContactStore (FeatureStoreTable, pk CUSTOMER#<id>,
        // sk CONTACT) is not in upsell-aws yet; see the workflow helper's report.
        contacts: Arc::new(ctx.contact_store()?),
    }));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Input>| async move {
        handle(event.payload, deps).await.map_err(|e| Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        })
    }))
    .await
}
