//! Lambda entry point of the webhook (feature `lambda`), behind API Gateway's HTTP API. The AWS
//! adapters (EventBridge publisher, DynamoDB receipts) and the HMAC secret are built once per
//! container, outside the handler; every proxy event goes through [`webhook::apigw::answer`],
//! which calls the same `handle` as `upsell serve`.
//!
//! The secret is read from Secrets Manager (`UPSELL_WEBHOOK_SECRET_ARN`) at start and again
//! when the cached copy is older than [`SECRET_REFRESH`], so a rotation reaches every container
//! within that time; its previous value stays accepted (`AWSPREVIOUS`). A failed refresh keeps
//! the cached secret and is logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn, tracing};
use tokio::sync::Mutex;
use upsell_aws::SecretsManagerSecret;
use webhook::apigw::{ProxyRequest, ProxyResponse, answer};
use webhook::{Deps, Secret};

/// Age after which the cached secret is read again.
const SECRET_REFRESH: Duration = Duration::from_secs(300);
/// Wait before trying again after a failed refresh.
const SECRET_RETRY: Duration = Duration::from_secs(30);

/// Everything built once per container.
struct App {
    deps: Deps,
    source: SecretsManagerSecret,
    /// The secret and when to read it again.
    cached: Mutex<(Secret, Instant)>,
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    upsell_lambda::init_tracing();
    let app = upsell_lambda::start("webhook", build()).await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ProxyRequest>| async move {
            let deps = app.deps().await;
            Ok::<ProxyResponse, Diagnostic>(answer(&event.payload, &deps).await)
        },
    ))
    .await
}

/// The webhook's ports on AWS; a missing resource name or an unreadable secret fails here.
async fn build() -> Result<App, String> {
    let ctx = upsell_aws::AwsContext::from_env()
        .await
        .map_err(|e| e.to_string())?;
    let source = ctx.webhook_secret().map_err(|e| e.to_string())?;
    let secret = read_secret(&source).await?;
    Ok(App {
        deps: Deps {
            secret: secret.clone(),
            events: Arc::new(ctx.event_publisher().map_err(|e| e.to_string())?),
            receipts: Arc::new(ctx.webhook_receipts().map_err(|e| e.to_string())?),
        },
        source,
        cached: Mutex::new((secret, Instant::now() + SECRET_REFRESH)),
    })
}

async fn read_secret(source: &SecretsManagerSecret) -> Result<Secret, String> {
    let values = source.values().await.map_err(|e| e.to_string())?;
    let secret = Secret::new(values.current)?;
    match values.previous {
        Some(previous) => secret.with_previous(previous),
        None => Ok(secret),
    }
}

impl App {
    /// The ports with the current secret, read again when the cached one is stale.
    async fn deps(&self) -> Deps {
        let mut cached = self.cached.lock().await;
        if Instant::now() >= cached.1 {
            match read_secret(&self.source).await {
                Ok(secret) => *cached = (secret, Instant::now() + SECRET_REFRESH),
                Err(error) => {
                    // Keep serving with the cached secret; try again a little later.
                    tracing::warn!(%error, secret = self.source.secret_id(), "cannot refresh the webhook secret");
                    cached.1 = Instant::now() + SECRET_RETRY;
                }
            }
        }
        Deps {
            secret: cached.0.clone(),
            ..self.deps.clone()
        }
    }
}
