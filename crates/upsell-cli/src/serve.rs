//! `upsell serve`: the webhook's `POST /events` on a laptop, feeding the local runtime.
//!
//! The HTTP front end (hyper, HTTP/1.1) only translates: it reads at most
//! [`webhook::MAX_BODY_BYTES`] of the body (413 past that; a declared oversized body of up to
//! 4 MiB is drained first so the client reads the answer), calls the
//! same [`webhook::handle`] the Lambda calls, and writes its answer. Accepted events go to
//! [`RuntimeIngest`], the local stand-in for EventBridge `PutEvents`: per-customer lanes (one
//! customer's events run in arrival order, like `upsell run`) whose tasks call
//! [`upsell_local::Runtime::submit`], so each event starts the workflow of the rules
//! it matches and ends with one terminal record. Idempotency receipts live in `upsell.db`.
//!
//! `GET /health` answers 200 with the queue depth; `GET /dashboard` serves `upsell dashboard`'s
//! page when the caller provides it ([`Extras`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use upsell_core::events::RawEvent;
use upsell_core::ports::{EventPublisher, PortError};
use upsell_local::Runtime;
use webhook::{EVENTS_PATH, MAX_BODY_BYTES, Response, SIGNATURE_HEADER};

use crate::app::lane_key;
use upsell_core::hash::fnv1a;

/// Events waiting per lane before `PutEvents` answers `Throttled` (503 to the caller).
pub const LANE_CAPACITY: usize = 1024;

/// The local `PutEvents`: queues events on per-customer lanes whose tasks run the workflow.
pub struct RuntimeIngest {
    lanes: Vec<mpsc::Sender<String>>,
    queued: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    tasks: tokio::task::JoinSet<()>,
}

impl std::fmt::Debug for RuntimeIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeIngest")
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl RuntimeIngest {
    /// Starts `lanes` tasks submitting to `runtime`.
    pub fn start(runtime: Runtime, lanes: usize) -> Self {
        let queued = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let senders = (0..lanes.max(1))
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<String>(LANE_CAPACITY);
                let runtime = runtime.clone();
                let done = done.clone();
                tasks.spawn(async move {
                    while let Some(line) = rx.recv().await {
                        let id = serde_json::from_str::<serde_json::Value>(&line)
                            .ok()
                            .and_then(|v| v["id"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        if let Err(e) = runtime.submit(&line, &format!("webhook:{id}")).await {
                            eprintln!("webhook event {id}: {e}");
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
                tx
            })
            .collect();
        RuntimeIngest {
            lanes: senders,
            queued,
            done,
            tasks,
        }
    }

    /// Events accepted and not yet processed.
    pub fn pending(&self) -> u64 {
        self.queued
            .load(Ordering::Relaxed)
            .saturating_sub(self.done.load(Ordering::Relaxed))
    }

    /// Stops taking events and waits until every queued one is processed.
    pub async fn drain(mut self) {
        self.lanes.clear();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[async_trait]
impl EventPublisher for RuntimeIngest {
    async fn publish(&self, event: &RawEvent) -> Result<String, PortError> {
        let line = serde_json::to_string(event)
            .map_err(|e| PortError::Invalid(format!("event {}: {e}", event.id)))?;
        let lane = (fnv1a(lane_key(&line).as_bytes()) % self.lanes.len() as u64) as usize;
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.lanes[lane].try_send(line).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => PortError::Throttled(format!(
                    "{LANE_CAPACITY} events are waiting for this customer's lane"
                )),
                mpsc::error::TrySendError::Closed(_) => {
                    PortError::Transient("the server is shutting down".into())
                }
            }
        })?;
        Ok(event.id.clone())
    }
}

/// What the server serves besides the webhook.
#[derive(Clone, Default)]
pub struct Extras {
    /// `GET /dashboard`: renders the monitoring dashboard (HTML), when there is one.
    pub dashboard: Option<Arc<dyn Fn() -> anyhow::Result<String> + Send + Sync>>,
    /// Queue depth for `GET /health`.
    pub pending: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras")
            .field("dashboard", &self.dashboard.is_some())
            .finish_non_exhaustive()
    }
}

/// Serves connections from `listener` until `shutdown` turns true; returns once every open
/// connection has finished its request.
pub async fn serve(
    listener: TcpListener,
    deps: Arc<webhook::Deps>,
    extras: Extras,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Too many open files and the like: wait a little rather than spin.
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let deps = deps.clone();
        let extras = extras.clone();
        let mut stop = shutdown.clone();
        conns.spawn(async move {
            let service = service_fn(move |req| route(req, deps.clone(), extras.clone()));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn route(
    req: hyper::Request<Incoming>,
    deps: Arc<webhook::Deps>,
    extras: Extras,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let answer = match (&method, path.as_str()) {
        (&Method::POST, EVENTS_PATH) => post_events(req, &deps).await,
        (&Method::GET, "/health") => Response {
            status: 200,
            body: json!({"status": "ok", "pending": extras.pending.as_ref().map(|p| p())}),
            retry_after: None,
        },
        (&Method::GET, "/dashboard") if extras.dashboard.is_some() => {
            let render = extras.dashboard.as_ref().expect("checked");
            return Ok(match render() {
                Ok(html) => html_response(html),
                Err(e) => to_http(&Response::error(
                    500,
                    webhook::ErrorBody::new("DashboardFailed", format!("{e:#}")),
                )),
            });
        }
        _ => webhook::not_routed(method.as_str(), &path),
    };
    Ok(to_http(&answer))
}

/// How much of an oversized body is read (and dropped) so its 413 reaches the client.
const DRAIN_LIMIT_BYTES: usize = 4 * 1024 * 1024;

async fn post_events(req: hyper::Request<Incoming>, deps: &webhook::Deps) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|n| *n > MAX_BODY_BYTES) {
        // Read and drop a moderately oversized body before answering, so a client that sends
        // it all before reading gets the 413 rather than a broken pipe; past the drain limit
        // the connection is closed right away.
        if n <= DRAIN_LIMIT_BYTES {
            let mut body = req.into_body();
            while let Some(Ok(_)) = body.frame().await {}
        }
        return Response::too_large(n);
    }
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Response::too_large(MAX_BODY_BYTES + 1);
        }
        Err(e) => {
            return Response::error(
                400,
                webhook::ErrorBody::new("InvalidEvent", format!("the body could not be read: {e}")),
            );
        }
    };
    webhook::handle(
        webhook::Request {
            signature: signature.as_deref(),
            body: &body,
        },
        deps,
    )
    .await
}

fn to_http(r: &Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(r.body.to_string())));
    *out.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(s) = r.retry_after {
        out.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    out
}

fn html_response(html: String) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(html)));
    out.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    out
}

/// Binds `addr`, refusing anything but a loopback address (the local server has no TLS).
pub async fn bind_loopback(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {addr}: `upsell serve` is for this machine only (use 127.0.0.1 or ::1)"
        );
    }
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}
