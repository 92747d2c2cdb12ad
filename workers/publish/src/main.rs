//! Lambda entry point of the publish worker (feature `lambda`): AWS adapters built once.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use publish::{Deps, Input, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let ctx = upsell_aws::AwsContext::from_env().await?;
    let deps: &'static Deps = Box::leak(Box::new(Deps {
        messages: Arc::new(ctx.message_store()?),
        events: Arc::new(ctx.event_publisher()?),
    }));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Input>| async move {
        handle(event.payload, deps).await.map_err(|e| Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        })
    }))
    .await
}
