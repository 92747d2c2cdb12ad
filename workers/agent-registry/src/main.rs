//! Lambda entry point of the registry worker (feature `lambda`). A direct call (register,
//! transition) is answered like any worker's; a CloudFormation custom-resource request (seeding
//! on deploy) is answered by an HTTPS PUT to its `ResponseURL`. The DynamoDB registry and the
//! HTTPS client are built once per container.

use std::sync::Arc;

use agent_registry::{
    CustomResourceEvent, CustomResourceResponse, Deps, Request, WorkerError, handle,
    is_custom_resource, seed,
};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use upsell_core::worker::Worker;

type Https = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    upsell_lambda::init_tracing();
    let (deps, http) = upsell_lambda::start("agent-registry", build()).await?;
    upsell_lambda::run(Registry { deps, http }).await
}

/// The registry worker as the Lambda runner drives it: JSON in (a direct call or a
/// CloudFormation custom-resource request), JSON out.
struct Registry {
    deps: Deps,
    http: Https,
}

#[async_trait::async_trait]
impl Worker for Registry {
    const NAME: &'static str = "agent-registry";
    const STATE: &'static str = "AgentRegistry";
    type Input = Value;
    type Output = Value;
    type Error = WorkerError;

    async fn handle(&self, payload: Value) -> Result<Value, WorkerError> {
        serve(payload, &self.deps, &self.http).await
    }
}

/// The registry on `UPSELL_AGENT_REGISTRY_TABLE` and the HTTPS client.
async fn build() -> Result<(Deps, Https), String> {
    let ctx = upsell_aws::AwsContext::from_env()
        .await
        .map_err(|e| e.to_string())?;
    let registry = ctx.agent_registry().map_err(|e| e.to_string())?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| format!("TLS roots: {e}"))?
        .https_only()
        .enable_http1()
        .build();
    let http = Client::builder(TokioExecutor::new()).build(connector);
    Ok((
        Deps {
            registry: Arc::new(registry),
        },
        http,
    ))
}

async fn serve(payload: Value, deps: &Deps, http: &Https) -> Result<Value, WorkerError> {
    let bad = |e: serde_json::Error| WorkerError::BadRequest(e.to_string());
    if is_custom_resource(&payload) {
        let event: CustomResourceEvent = serde_json::from_value(payload).map_err(bad)?;
        let response = seed(&event, deps).await;
        answer(http, &event.response_url, &response)
            .await
            .map_err(WorkerError::BadRequest)?;
        return serde_json::to_value(&response).map_err(bad);
    }
    let request: Request = serde_json::from_value(payload).map_err(bad)?;
    let spec = handle(request, deps).await?;
    serde_json::to_value(&spec).map_err(bad)
}

/// PUTs the answer to CloudFormation's presigned URL (signed with an empty content type).
async fn answer(http: &Https, url: &str, response: &CustomResourceResponse) -> Result<(), String> {
    let body = serde_json::to_vec(response).map_err(|e| e.to_string())?;
    let request = hyper::Request::put(url)
        .header("content-type", "")
        .header("content-length", body.len())
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("custom-resource answer: {e}"))?;
    let status = http
        .request(request)
        .await
        .map_err(|e| format!("answering CloudFormation: {e}"))?
        .status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("CloudFormation's response URL answered {status}"))
    }
}
