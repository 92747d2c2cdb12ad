//! Lambda entry point of the schema-check worker (feature `lambda`). The worker needs no AWS client,
//! so this binary does not link the AWS SDK.

use schema_check::Deps;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    upsell_lambda::init_tracing();
    let deps = Deps;
    upsell_lambda::run(deps).await
}
