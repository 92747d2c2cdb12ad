//! The Lambda translation, without AWS: API Gateway proxy events (payload format 2.0 as the
//! HTTP API sends it, and 1.0 as a REST API would) in, proxy responses out, through
//! `webhook::apigw::answer` and the same `handle` as `upsell serve`.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use upsell_core::events::RawEvent;
use upsell_core::ports::{EventPublisher, PortError};
use upsell_sqlite::SqliteIngestReceipts;
use webhook::apigw::{ProxyRequest, ProxyResponse, answer};
use webhook::{Deps, MAX_BODY_BYTES, Secret};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[derive(Default)]
struct Bus {
    events: Mutex<Vec<RawEvent>>,
    fail_next: Mutex<bool>,
}

#[async_trait]
impl EventPublisher for Bus {
    async fn publish(&self, event: &RawEvent) -> Result<String, PortError> {
        if std::mem::take(&mut *self.fail_next.lock().unwrap()) {
            return Err(PortError::Transient("bus unavailable".into()));
        }
        let mut events = self.events.lock().unwrap();
        events.push(event.clone());
        Ok(format!("bus-{}", events.len()))
    }
}

fn setup() -> (Deps, Arc<Bus>) {
    let bus = Arc::new(Bus::default());
    let deps = Deps {
        secret: Secret::new(SECRET).unwrap(),
        events: bus.clone(),
        receipts: Arc::new(SqliteIngestReceipts::in_memory().unwrap()),
    };
    (deps, bus)
}

fn event(id: &str) -> String {
    json!({
        "version": "0", "id": id, "source": "com.greenleaf.field-service",
        "detail-type": "ServiceCompleted", "time": "2025-05-01T14:00:00-04:00",
        "detail": {"customerId": "cust-000001", "service": "pest-control",
                   "serviceDate": "2025-05-01", "priceCents": 12900,
                   "technicianNotes": "Wasp nest under eaves removed.", "rating": 5}
    })
    .to_string()
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The recorded-shape 2.0 event with this body and signature header (`None`: no header).
fn v2(body: &str, signature: Option<&str>) -> Value {
    let mut e = fixture("apigw-v2-post-events.json");
    e["body"] = json!(body);
    e["headers"]["content-length"] = json!(body.len().to_string());
    let headers = e["headers"].as_object_mut().unwrap();
    match signature {
        Some(sig) => headers.insert("x-upsell-signature".into(), json!(sig)),
        None => headers.remove("x-upsell-signature"),
    };
    e
}

fn sign(body: &[u8]) -> String {
    Secret::new(SECRET).unwrap().sign(body)
}

/// The event as Lambda hands it over (JSON), the response as Lambda sends it back (JSON).
async fn invoke(deps: &Deps, event: Value) -> (u16, Value, Value) {
    let request: ProxyRequest = serde_json::from_value(event).unwrap();
    let response = answer(&request, deps).await;
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(wire["isBase64Encoded"], false);
    assert_eq!(wire["headers"]["content-type"], "application/json");
    let back: ProxyResponse = serde_json::from_value(wire.clone()).unwrap();
    assert_eq!(back, response);
    let body: Value = serde_json::from_str(wire["body"].as_str().unwrap()).unwrap();
    (response.status_code, body, wire["headers"].clone())
}

#[tokio::test]
async fn a_signed_event_is_accepted_once() {
    let (deps, bus) = setup();
    let body = event("evt-1");
    let (status, answer, _) = invoke(&deps, v2(&body, Some(&sign(body.as_bytes())))).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer, json!({"eventId": "evt-1", "status": "accepted"}));
    let (status, answer, _) = invoke(&deps, v2(&body, Some(&sign(body.as_bytes())))).await;
    assert_eq!(status, 202);
    assert_eq!(answer["status"], "duplicate");
    let events = bus.events.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "evt-1");
}

#[tokio::test]
async fn unsigned_and_badly_signed_events_are_401() {
    let (deps, bus) = setup();
    let body = event("evt-1");
    let (status, answer, _) = invoke(&deps, v2(&body, None)).await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"], "InvalidSignature");
    assert!(answer["message"].as_str().unwrap().contains("missing"));
    let other = Secret::new("another-secret-of-32-bytes-000000").unwrap();
    let (status, _, _) = invoke(&deps, v2(&body, Some(&other.sign(body.as_bytes())))).await;
    assert_eq!(status, 401);
    assert!(bus.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_bad_body_is_400_naming_the_problem() {
    let (deps, bus) = setup();
    let mut bad: Value = serde_json::from_str(&event("evt-1")).unwrap();
    bad["detail"]["rating"] = json!(9);
    let body = bad.to_string();
    let (status, answer, _) = invoke(&deps, v2(&body, Some(&sign(body.as_bytes())))).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "InvalidEvent");
    assert_eq!(answer["eventId"], "evt-1");
    let pointers: Vec<&str> = answer["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(pointers.contains(&"/detail/rating"), "{answer}");
    let body = "{not json";
    let (status, answer, _) = invoke(&deps, v2(body, Some(&sign(body.as_bytes())))).await;
    assert_eq!(status, 400);
    assert_eq!(answer["reason"], "malformed-json");
    assert!(bus.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_oversized_body_is_413_plain_or_base64() {
    let (deps, bus) = setup();
    let body = "x".repeat(MAX_BODY_BYTES + 1);
    let (status, answer, _) = invoke(&deps, v2(&body, Some(&sign(body.as_bytes())))).await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"], "PayloadTooLarge");
    let mut encoded = v2(&STANDARD.encode(&body), Some(&sign(body.as_bytes())));
    encoded["isBase64Encoded"] = json!(true);
    let (status, _, _) = invoke(&deps, encoded).await;
    assert_eq!(status, 413);
    // Far larger than the limit (API Gateway passes up to Lambda's 6 MB): refused before decoding.
    let huge = STANDARD.encode(vec![b'x'; 5 * 1024 * 1024]);
    let mut encoded = v2(&huge, Some("sha256=00"));
    encoded["isBase64Encoded"] = json!(true);
    let (status, _, _) = invoke(&deps, encoded).await;
    assert_eq!(status, 413);
    assert!(bus.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_base64_body_is_decoded_and_signed_bytes_are_checked() {
    let (deps, bus) = setup();
    let body = event("evt-b64");
    let mut e = v2(&STANDARD.encode(&body), Some(&sign(body.as_bytes())));
    e["isBase64Encoded"] = json!(true);
    let (status, answer, _) = invoke(&deps, e).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["eventId"], "evt-b64");
    assert_eq!(bus.events.lock().unwrap().len(), 1);
    // A signature of the base64 text is not a signature of the body.
    let encoded = STANDARD.encode(&body);
    let mut e = v2(&encoded, Some(&sign(encoded.as_bytes())));
    e["isBase64Encoded"] = json!(true);
    assert_eq!(invoke(&deps, e).await.0, 401);
    let mut e = v2("%%%not base64%%%", Some("sha256=00"));
    e["isBase64Encoded"] = json!(true);
    let (status, answer, _) = invoke(&deps, e).await;
    assert_eq!(status, 400);
    assert!(answer["message"].as_str().unwrap().contains("base64"));
}

#[tokio::test]
async fn a_bus_failure_is_503_with_retry_after_and_a_retry_publishes() {
    let (deps, bus) = setup();
    *bus.fail_next.lock().unwrap() = true;
    let body = event("evt-1");
    let (status, answer, headers) = invoke(&deps, v2(&body, Some(&sign(body.as_bytes())))).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(headers["retry-after"], "1");
    let (status, answer, headers) = invoke(&deps, v2(&body, Some(&sign(body.as_bytes())))).await;
    assert_eq!(status, 202);
    assert_eq!(answer["status"], "accepted");
    assert!(headers.get("retry-after").is_none());
}

#[tokio::test]
async fn other_methods_and_routes_get_405_and_404() {
    let (deps, _) = setup();
    let mut get = v2("", None);
    get["routeKey"] = json!("GET /events");
    get["requestContext"]["http"]["method"] = json!("GET");
    let (status, answer, _) = invoke(&deps, get).await;
    assert_eq!(status, 405);
    assert_eq!(answer["error"], "MethodNotAllowed");
    let mut other = v2("", None);
    other["routeKey"] = json!("$default");
    other["rawPath"] = json!("/other");
    let (status, answer, _) = invoke(&deps, other).await;
    assert_eq!(status, 404, "{answer}");
}

#[tokio::test]
async fn a_rest_api_event_is_answered_the_same() {
    let (deps, bus) = setup();
    let body = event("evt-v1");
    let mut e = fixture("apigw-v1-post-events.json");
    e["body"] = json!(body);
    // REST APIs keep the sender's header case.
    e["headers"]["X-Upsell-Signature"] = json!(sign(body.as_bytes()));
    let (status, answer, _) = invoke(&deps, e).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(bus.events.lock().unwrap()[0].id, "evt-v1");
}

#[tokio::test]
async fn the_previous_secret_is_accepted_after_a_rotation() {
    let (mut deps, bus) = setup();
    deps.secret = Secret::new("the-new-secret-of-32-bytes-000000")
        .unwrap()
        .with_previous(SECRET)
        .unwrap();
    let body = event("evt-old");
    let (status, _, _) = invoke(&deps, v2(&body, Some(&sign(body.as_bytes())))).await;
    assert_eq!(status, 202, "signed with the previous secret");
    let body = event("evt-new");
    let (status, _, _) = invoke(&deps, v2(&body, Some(&deps.secret.sign(body.as_bytes())))).await;
    assert_eq!(status, 202, "signed with the new secret");
    let other = Secret::new("neither-secret-of-32-bytes-0000000").unwrap();
    let body = event("evt-other");
    let (status, _, _) = invoke(&deps, v2(&body, Some(&other.sign(body.as_bytes())))).await;
    assert_eq!(status, 401);
    assert_eq!(bus.events.lock().unwrap().len(), 2);
    assert!(Secret::new(SECRET).unwrap().with_previous("short").is_err());
}
