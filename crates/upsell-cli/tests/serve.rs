//! `upsell serve` with a real HTTP client on 127.0.0.1: signed events are accepted and run
//! through the workflow to a terminal record; unsigned 401, bad body 400, oversize 413; a
//! redelivered event id is a duplicate; unknown routes 404.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use upsell_core::ports::MessageStore;
use upsell_sqlite::SqliteMessageStore;

const SECRET: &str = "serve-test-secret-0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(home: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_upsell"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--concurrency",
            "8",
            "--home",
        ])
        .arg(home)
        .arg("--template")
        .arg(repo().join("sam/template.yaml"))
        .arg("--kb-dir")
        .arg(repo().join("knowledge-base"))
        .env("UPSELL_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("upsell serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let base = url.trim_end_matches("/events").to_owned();
    Server { child, base }
}

fn sign(body: &[u8]) -> String {
    webhook::Secret::new(SECRET).unwrap().sign(body)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn post(base: &str, body: &[u8], signature: Option<&str>) -> (u16, Value) {
    let mut req = agent()
        .post(&format!("{base}/events"))
        .header("content-type", "application/json");
    if let Some(s) = signature {
        req = req.header("X-Upsell-Signature", s);
    }
    let mut resp = req.send(body).expect("the server answers");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn event(id: &str, customer: &str) -> Value {
    json!({
        "version": "0", "id": id, "source": "com.greenleaf.field-service",
        "detail-type": "ServiceCompleted", "time": "2025-05-01T14:00:00-04:00",
        "detail": {"customerId": customer, "service": "pest-control",
                   "serviceDate": "2025-05-01", "priceCents": 12900,
                   "technicianNotes": "Wasp nest under eaves removed.", "rating": 5}
    })
}

fn profile(customer: &str) -> Value {
    json!({
        "version": "0", "id": format!("profile-{customer}"), "source": "com.greenleaf.crm",
        "detail-type": "CustomerProfileUpdated", "time": "2025-04-01T09:00:00Z",
        "detail": {"customerId": customer, "firstName": "Dana", "lastName": "Lee",
                   "email": "dana@example.com", "phone": "(860) 555-0199",
                   "address": {"street": "1 Elm St", "city": "Hartford", "state": "CT",
                               "postalCode": "06196", "region": "northeast"},
                   "property": {"homeType": "single-family", "lotSizeSqft": 8000,
                                "hasPool": true, "pets": [], "yearBuilt": 1994},
                   "marketingOptIn": true}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_events_are_processed_and_bad_requests_refused() {
    let home = tempfile::tempdir().unwrap();
    let server = start(home.path());
    let base = server.base.clone();

    let body = event("evt-serve-1", "cust-serve-1").to_string();
    let (status, answer) = post(&base, body.as_bytes(), Some(&sign(body.as_bytes())));
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer,
        json!({"eventId": "evt-serve-1", "status": "accepted"})
    );
    // The same event again: accepted before, nothing new.
    let (status, answer) = post(&base, body.as_bytes(), Some(&sign(body.as_bytes())));
    assert_eq!((status, &answer["status"]), (202, &json!("duplicate")));

    // A customer with a profile, then a service: the workflow writes a message record.
    let p = profile("cust-serve-2").to_string();
    assert_eq!(post(&base, p.as_bytes(), Some(&sign(p.as_bytes()))).0, 202);
    let s = event("evt-serve-2", "cust-serve-2").to_string();
    assert_eq!(post(&base, s.as_bytes(), Some(&sign(s.as_bytes()))).0, 202);

    let (status, answer) = post(&base, body.as_bytes(), None);
    assert_eq!(status, 401);
    assert_eq!(answer["error"], "InvalidSignature");

    let mut bad = event("evt-serve-3", "cust-serve-3");
    bad["detail"]["rating"] = json!("five");
    let bad = bad.to_string();
    let (status, answer) = post(&base, bad.as_bytes(), Some(&sign(bad.as_bytes())));
    assert_eq!(status, 400);
    assert_eq!(answer["problems"][0]["path"], "/detail/rating", "{answer}");

    let mut big = event("evt-serve-4", "cust-serve-4");
    big["detail"]["technicianNotes"] = json!("z".repeat(300 * 1024));
    let big = big.to_string();
    let (status, answer) = post(&base, big.as_bytes(), Some(&sign(big.as_bytes())));
    assert_eq!(status, 413, "{answer}");

    let mut resp = agent().get(&format!("{base}/nope")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let _ = resp.body_mut().read_to_string();
    let mut resp = agent().get(&format!("{base}/events")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let _ = resp.body_mut().read_to_string();

    // Processed: each accepted event ends with a terminal record (the first one is skipped,
    // no profile; the second gets a message).
    let store = SqliteMessageStore::open(&home.path().join("upsell.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in ["evt-serve-1", "evt-serve-2"] {
        loop {
            if let Some(rec) = store.get(id).await.unwrap() {
                assert_eq!(rec.customer_id, id.replace("evt", "cust"));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} was accepted but never processed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        store.get("evt-serve-3").await.unwrap().is_none(),
        "a refused event starts nothing"
    );
    // The monitoring dashboard of the same home, over the same server.
    let mut resp = agent().get(&format!("{base}/dashboard")).call().unwrap();
    let status = resp.status().as_u16();
    let page = resp.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<html") || page.contains("<!DOCTYPE"),
        "{}",
        &page[..page.len().min(200)]
    );
}
