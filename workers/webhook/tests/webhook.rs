//! The webhook's contract with fake ports: 202 once per event id, 401, 400 naming the
//! problem, 413, 409 while another request holds the id, 503 (and nothing kept) when the bus
//! fails.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};
use upsell_core::events::RawEvent;
use upsell_core::ports::{EventPublisher, PortError};
use upsell_sqlite::SqliteIngestReceipts;
use webhook::{Deps, MAX_BODY_BYTES, Request, Secret, handle};

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

fn setup() -> (Deps, Arc<Bus>, Arc<SqliteIngestReceipts>) {
    let bus = Arc::new(Bus::default());
    let receipts = Arc::new(SqliteIngestReceipts::in_memory().unwrap());
    let deps = Deps {
        secret: Secret::new("0123456789abcdef0123456789abcdef").unwrap(),
        events: bus.clone(),
        receipts: receipts.clone(),
    };
    (deps, bus, receipts)
}

fn event(id: &str) -> Value {
    json!({
        "version": "0", "id": id, "source": "com.greenleaf.field-service",
        "detail-type": "ServiceCompleted", "time": "2025-05-01T14:00:00-04:00",
        "detail": {"customerId": "cust-000001", "service": "pest-control",
                   "serviceDate": "2025-05-01", "priceCents": 12900,
                   "technicianNotes": "Wasp nest under eaves removed.", "rating": 5}
    })
}

async fn post(deps: &Deps, body: &[u8], signature: Option<&str>) -> webhook::Response {
    handle(Request { signature, body }, deps).await
}

async fn signed(deps: &Deps, body: &[u8]) -> webhook::Response {
    let sig = deps.secret.sign(body);
    post(deps, body, Some(&sig)).await
}

#[tokio::test]
async fn a_signed_event_is_put_on_the_bus_once() {
    let (deps, bus, _) = setup();
    let body = event("evt-1").to_string();
    let r = signed(&deps, body.as_bytes()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body, json!({"eventId": "evt-1", "status": "accepted"}));
    let again = signed(&deps, body.as_bytes()).await;
    assert_eq!(again.status, 202);
    assert_eq!(
        again.body,
        json!({"eventId": "evt-1", "status": "duplicate"})
    );
    let events = bus.events.lock().unwrap();
    assert_eq!(events.len(), 1, "the duplicate published nothing");
    assert_eq!(serde_json::to_value(&events[0]).unwrap()["id"], "evt-1");
}

#[tokio::test]
async fn unsigned_or_badly_signed_requests_are_refused_before_parsing() {
    let (deps, bus, _) = setup();
    let body = event("evt-1").to_string();
    let r = post(&deps, body.as_bytes(), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "InvalidSignature");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("missing X-Upsell-Signature")
    );
    let other = Secret::new("another-secret-of-32-bytes-000000").unwrap();
    let r = post(&deps, body.as_bytes(), Some(&other.sign(body.as_bytes()))).await;
    assert_eq!(r.status, 401);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );
    // A signature of other bytes (the body was altered in transit).
    let sig = deps.secret.sign(body.as_bytes());
    let altered = body.replace("12900", "1");
    assert_eq!(
        post(&deps, altered.as_bytes(), Some(&sig)).await.status,
        401
    );
    assert_eq!(
        post(&deps, b"not json", Some("sha256=zz")).await.status,
        401
    );
    assert!(bus.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_bad_body_gets_400_naming_every_problem() {
    let (deps, bus, _) = setup();
    let r = signed(&deps, b"{\"id\": ").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "InvalidEvent");
    assert_eq!(r.body["reason"], "malformed-json");
    let mut bad = event("evt-2");
    bad["detail"].as_object_mut().unwrap().remove("customerId");
    bad["detail"]["rating"] = json!("five");
    let r = signed(&deps, bad.to_string().as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["reason"], "schema-violation");
    assert_eq!(r.body["eventId"], "evt-2");
    let paths: Vec<&str> = r.body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/detail/rating"), "{paths:?}");
    assert!(
        r.body["message"].as_str().unwrap().contains("customerId"),
        "{}",
        r.body
    );
    let mut unknown = event("evt-3");
    unknown["detail-type"] = json!("InvoicePaid");
    let r = signed(&deps, unknown.to_string().as_bytes()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["reason"], "unknown-detail-type");
    assert!(bus.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let (deps, bus, _) = setup();
    let mut big = event("evt-4");
    big["detail"]["technicianNotes"] = json!("z".repeat(MAX_BODY_BYTES));
    let r = signed(&deps, big.to_string().as_bytes()).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.body["error"], "PayloadTooLarge");
    assert!(bus.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_bus_failure_answers_503_and_a_retry_publishes() {
    let (deps, bus, receipts) = setup();
    *bus.fail_next.lock().unwrap() = true;
    let body = event("evt-5").to_string();
    let r = signed(&deps, body.as_bytes()).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.retry_after, Some(1));
    assert!(
        receipts.get("evt-5").unwrap().is_none(),
        "the claim was released"
    );
    let r = signed(&deps, body.as_bytes()).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["status"], "accepted");
    assert_eq!(bus.events.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_request_racing_a_live_claim_gets_409() {
    use chrono::{Duration, Utc};
    use upsell_core::ingest::IngestReceipts;
    let (deps, bus, receipts) = setup();
    receipts
        .claim("evt-6", Utc::now(), Duration::seconds(30))
        .await
        .unwrap();
    let r = signed(&deps, event("evt-6").to_string().as_bytes()).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["error"], "InProgress");
    assert!(r.retry_after.is_some_and(|s| (1..=30).contains(&s)));
    assert!(bus.events.lock().unwrap().is_empty());
}

#[test]
fn short_secrets_are_refused() {
    assert!(Secret::new("short").is_err());
}
