//! Lambda entry point of the schema-check worker (feature `lambda`).

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use schema_check::{Deps, Input, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // Built once per container; the handler borrows it for the life of the process.
    let deps: &'static Deps = Box::leak(Box::new(Deps));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Input>| async move {
        handle(event.payload, deps).await.map_err(|e| Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        })
    }))
    .await
}
