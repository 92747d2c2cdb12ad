//! The webhook behind API Gateway: a Lambda proxy event in, a proxy response out. Payload
//! format 2.0 (HTTP API, what sam/template.yaml deploys) and 1.0 (REST API) share the fields
//! read here: `headers`, `body`, `isBase64Encoded`; the route comes from `routeKey` (2.0) or
//! `httpMethod` + `resource` (1.0), so a stage name in the path changes nothing.
//!
//! [`answer`] calls the same [`handle`](crate::handle) as `upsell serve`; the Lambda `main.rs`
//! only builds [`Deps`] and hands it every event. Plain serde types, no AWS crate: the
//! translation is tested without AWS (workers/webhook/tests/apigw.rs).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Deps, EVENTS_PATH, ErrorBody, MAX_BODY_BYTES, Request, Response, SIGNATURE_HEADER};

/// A Lambda proxy integration event (payload format 2.0 or 1.0), the fields the webhook reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyRequest {
    /// 2.0: `POST /events` (`$default` for the catch-all route).
    #[serde(default)]
    pub route_key: Option<String>,
    /// 1.0: the HTTP method.
    #[serde(default)]
    pub http_method: Option<String>,
    /// 1.0: the resource path (`/events`), without the stage.
    #[serde(default)]
    pub resource: Option<String>,
    /// 2.0: the request path as sent (with a named stage first).
    #[serde(default)]
    pub raw_path: Option<String>,
    /// 1.0: the request path.
    #[serde(default)]
    pub path: Option<String>,
    /// 2.0: `requestContext.http.method`; 1.0 has no `http`.
    #[serde(default)]
    pub request_context: Option<Value>,
    /// Header values (2.0: names in lower case, repeated headers joined by commas).
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// The body, base64 when `isBase64Encoded`.
    #[serde(default)]
    pub body: Option<String>,
    /// Whether API Gateway base64-encoded the body (binary or non-text content types).
    #[serde(default)]
    pub is_base64_encoded: bool,
}

impl ProxyRequest {
    /// The HTTP method.
    pub fn method(&self) -> &str {
        self.request_context
            .as_ref()
            .and_then(|c| c.pointer("/http/method"))
            .and_then(Value::as_str)
            .or(self.http_method.as_deref())
            .or_else(|| {
                self.route_key
                    .as_deref()
                    .and_then(|k| k.split_once(' '))
                    .map(|(m, _)| m)
            })
            .unwrap_or("")
    }

    /// The route's path (`/events`), without any stage prefix.
    pub fn route_path(&self) -> &str {
        self.route_key
            .as_deref()
            .and_then(|k| k.split_once(' '))
            .map(|(_, p)| p)
            .or(self.resource.as_deref())
            .or(self.raw_path.as_deref())
            .or(self.path.as_deref())
            .unwrap_or("")
    }

    /// A header's value, whatever the case of its name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body bytes as the sender sent them, or the answer when they cannot be had.
    pub fn body_bytes(&self) -> Result<Vec<u8>, Response> {
        let body = self.body.as_deref().unwrap_or("");
        if !self.is_base64_encoded {
            return Ok(body.as_bytes().to_vec());
        }
        // Decoded, the body is about 3/4 of its text: refuse the oversized before decoding.
        let decoded_len = body.len() / 4 * 3;
        if decoded_len > MAX_BODY_BYTES + 3 {
            return Err(Response::too_large(decoded_len));
        }
        STANDARD.decode(body).map_err(|e| {
            Response::error(
                400,
                ErrorBody::new(
                    "InvalidEvent",
                    format!("the body is marked base64 by API Gateway but does not decode: {e}"),
                ),
            )
        })
    }
}

/// A Lambda proxy integration response (the same shape for payload formats 2.0 and 1.0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyResponse {
    /// HTTP status.
    pub status_code: u16,
    /// `content-type`, and `retry-after` for 409 and 503.
    pub headers: HashMap<String, String>,
    /// The JSON body.
    pub body: String,
    /// Always false: the body is JSON text.
    pub is_base64_encoded: bool,
}

impl From<Response> for ProxyResponse {
    fn from(r: Response) -> Self {
        let mut headers =
            HashMap::from([("content-type".to_owned(), "application/json".to_owned())]);
        if let Some(seconds) = r.retry_after {
            headers.insert("retry-after".into(), seconds.to_string());
        }
        ProxyResponse {
            status_code: r.status,
            headers,
            body: r.body.to_string(),
            is_base64_encoded: false,
        }
    }
}

/// Answers one proxy event: `POST /events` goes to [`handle`](crate::handle), anything else
/// gets the same 404 / 405 as `upsell serve`.
pub async fn answer(event: &ProxyRequest, deps: &Deps) -> ProxyResponse {
    let (method, path) = (event.method(), event.route_path());
    if !method.eq_ignore_ascii_case("POST") || path != EVENTS_PATH {
        return crate::not_routed(method, path).into();
    }
    let body = match event.body_bytes() {
        Ok(body) => body,
        Err(response) => return response.into(),
    };
    let request = Request {
        signature: event.header(SIGNATURE_HEADER),
        body: &body,
    };
    crate::handle(request, deps).await.into()
}
