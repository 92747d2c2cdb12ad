//! A bounded load test of `upsell serve`'s webhook on 127.0.0.1: starts the server in-process
//! on a fresh home, sends N signed events (the sample file's valid ones, ids made unique) from
//! C client threads (ureq, one keep-alive connection each), then waits until every accepted
//! event has its terminal record and prints requests/s, latency percentiles and the lost count.
//!
//! `cargo run --release -p upsell-cli --example webhook_load -- [N] [C]` (default 2000 16).
//! Figures: docs/performance.md, "Webhook".

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use upsell_cli::app::{AppOptions, DB_FILE, LocalApp};
use upsell_cli::serve::{Extras, RuntimeIngest, bind_loopback, serve};
use upsell_core::ports::MessageStore;
use upsell_sqlite::SqliteIngestReceipts;

const SECRET: &str = "load-test-secret-0123456789abcdef";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let clients: usize = args.next().map_or(Ok(16), |a| a.parse())?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let events = sample_events(&root, n)?;
    let home = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (base, app, ingest, stop) = rt.block_on(async {
        let app =
            Arc::new(LocalApp::open(AppOptions::new(home.path()).with_repo_root(&root)).await?);
        let receipts = Arc::new(SqliteIngestReceipts::open(&home.path().join(DB_FILE))?);
        let ingest = Arc::new(RuntimeIngest::start(app.runtime.clone(), 64));
        let deps = Arc::new(webhook::Deps {
            secret: webhook::Secret::new(SECRET).map_err(anyhow::Error::msg)?,
            events: ingest.clone(),
            receipts,
        });
        let listener = bind_loopback("127.0.0.1:0".parse()?).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(listener, deps, Extras::default(), rx));
        anyhow::Ok((base, app, ingest, tx))
    })?;

    let secret = webhook::Secret::new(SECRET).map_err(anyhow::Error::msg)?;
    let events = Arc::new(events);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let events = events.clone();
            let base = base.clone();
            let secret = secret.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut out = Vec::new();
                for body in events.iter().skip(c).step_by(clients) {
                    let sig = secret.sign(body.as_bytes());
                    let t = Instant::now();
                    let mut resp = agent
                        .post(&format!("{base}/events"))
                        .header("content-type", "application/json")
                        .header("X-Upsell-Signature", &sig)
                        .send(body.as_bytes())
                        .expect("the server answers");
                    let _ = resp.body_mut().read_to_string();
                    out.push((resp.status().as_u16(), t.elapsed()));
                }
                out
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.extend(h.join().expect("client thread"));
    }
    let sending = started.elapsed();
    let accepted = results.iter().filter(|(s, _)| *s == 202).count();
    let mut lat: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];

    // Zero lost: every accepted id has a terminal record (message or quarantine).
    let lost = rt.block_on(async {
        while ingest.pending() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        app.runtime.flush()?;
        let mut quarantined = std::collections::HashSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = app.messages.list_quarantine(after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.quarantine_id.clone());
            quarantined.extend(page.into_iter().filter_map(|q| q.event_id));
        }
        let mut lost = 0;
        for body in events.iter() {
            let id = serde_json::from_str::<Value>(body)?["id"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if app.messages.get(&id).await?.is_none() && !quarantined.contains(&id) {
                lost += 1;
            }
        }
        let _ = stop.send(true);
        anyhow::Ok(lost)
    })?;
    let processed = started.elapsed();
    println!(
        "webhook load: {} requests from {clients} clients in {:.2}s = {:.0} requests/s; {accepted} accepted (202), other statuses {}; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; all processed after {:.2}s ({:.0} events/s end to end); lost {lost}",
        results.len(),
        sending.as_secs_f64(),
        results.len() as f64 / sending.as_secs_f64(),
        results.len() - accepted,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.95).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        processed.as_secs_f64(),
        accepted as f64 / processed.as_secs_f64(),
    );
    anyhow::ensure!(lost == 0, "{lost} accepted events have no terminal record");
    Ok(())
}

/// `n` valid events from examples/events.jsonl (the schema-valid ones, cycled), each with a
/// unique id so none is a duplicate.
fn sample_events(root: &std::path::Path, n: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(root.join("examples/events.jsonl"))?;
    let valid: Vec<Value> = text
        .lines()
        .filter(|l| upsell_core::validate::check_event(l.as_bytes()).is_ok())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!valid.is_empty(), "no valid sample events");
    Ok((0..n)
        .map(|i| {
            let mut e = valid[i % valid.len()].clone();
            e["id"] = Value::String(format!("load-{i:06}"));
            e.to_string()
        })
        .collect())
}
