//! `upsell backfill` killed with SIGKILL at seeded points and resumed until it finishes: every
//! event ends with exactly one terminal record, and the approvals on the bus, deduplicated on
//! their documented key `detail.eventId`, are exactly the approved records.
//!
//! The first kill lands between the approval's bus put and the record write: the publish
//! worker's test-only crash point (`UPSELL_FAULT_POINT`, compiled with the `fault-injection`
//! feature only) blocks there and the test kills the process when it reports it. The resumed
//! run is killed again after a delay drawn from `UPSELL_KILL_SEED` (printed), then resumed
//! until the backfill succeeds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{approvals_on_the_bus, kill_at, stdout_ok};
use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn command(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_upsell"));
    c.current_dir(repo_root())
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("UPSELL_HOME")
        .env_remove("UPSELL_FAULT_POINT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    command(home, args)
        .output()
        .expect("the upsell binary runs")
}

/// The JSONL events as CSV rows (the detail column holds the detail as JSON text).
fn to_csv(jsonl: &str) -> String {
    let cell = |v: &Value| {
        let s = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        format!("\"{}\"", s.replace('"', "\"\""))
    };
    let cols = [
        "id",
        "source",
        "detail-type",
        "time",
        "account",
        "region",
        "detail",
    ];
    let mut out = cols.join(",") + "\n";
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let e: Value = serde_json::from_str(line).unwrap();
        let row: Vec<String> = cols.iter().map(|c| cell(&e[*c])).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

#[test]
fn a_killed_backfill_resumes_to_one_terminal_record_per_event_and_no_duplicate_approval() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let jsonl = input.join("a.jsonl");
    stdout_ok(&run(
        &home,
        &[
            "sample",
            "--customers",
            "40",
            "--malformed-share",
            "0",
            "--out",
            jsonl.to_str().unwrap(),
        ],
    ));
    let other = stdout_ok(&run(
        &home,
        &[
            "sample",
            "--customers",
            "15",
            "--seed",
            "7",
            "--malformed-share",
            "0",
        ],
    ));
    std::fs::write(input.join("b.csv"), to_csv(&other)).unwrap();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for line in std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .chain(other.lines())
    {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            ids.insert(v["id"].as_str().unwrap().to_string());
        }
    }
    assert!(ids.len() > 200, "{} events", ids.len());

    let input_arg = input.to_str().unwrap();
    // 1. Killed between the bus put and the record write of the first approval.
    let mut c = command(
        &home,
        &["backfill", input_arg, "--name", "bf", "--concurrency", "16"],
    );
    c.env("UPSELL_FAULT_POINT", "after-approval-put:*");
    let (running, seen) = kill_at(c, Some(("UPSELL_FAULT_POINT reached", 1)), None);
    assert!(running, "the fault point was not reached:\n{seen}");
    let fault_id = seen
        .lines()
        .find_map(|l| l.strip_prefix("UPSELL_FAULT_POINT reached: after-approval-put "))
        .unwrap()
        .to_string();

    // 2. Resumed, and killed again at a seeded moment.
    let seed: u64 = std::env::var("UPSELL_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(17);
    let delay = Duration::from_millis(300 + seed.wrapping_mul(6_364_136_223_846_793_005) % 1500);
    eprintln!("UPSELL_KILL_SEED={seed}: second kill after {delay:?}");
    kill_at(
        command(
            &home,
            &[
                "backfill",
                input_arg,
                "--resume",
                "bf",
                "--concurrency",
                "16",
            ],
        ),
        None,
        Some(delay),
    );

    // 3. Resumed until it finishes.
    let mut finished = false;
    for _ in 0..3 {
        let o = run(&home, &["backfill", input_arg, "--resume", "bf", "--json"]);
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.success() || err.contains("is not interrupted: it is SUCCEEDED") {
            finished = true;
            break;
        }
        assert!(err.contains("interrupted"), "resume failed:\n{err}");
    }
    assert!(finished, "the backfill did not finish after three resumes");

    // Exactly one terminal record per event: a message record or a quarantine record.
    let messages = stdout_ok(&run(
        &home,
        &["messages", "list", "--limit", "100000", "--json"],
    ));
    let quarantined = stdout_ok(&run(
        &home,
        &["quarantine", "list", "--limit", "100000", "--json"],
    ));
    let mut records: BTreeMap<String, usize> = BTreeMap::new();
    let mut approved: BTreeSet<String> = BTreeSet::new();
    for line in messages.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let id = r["eventId"].as_str().unwrap().to_string();
        if r["status"] == "approved" {
            approved.insert(id.clone());
        }
        *records.entry(id).or_default() += 1;
    }
    for line in quarantined.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        if let Some(id) = r["eventId"].as_str() {
            *records.entry(id.to_string()).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(records.get(id), Some(&1), "event {id}: terminal records");
    }
    assert!(
        approved.contains(&fault_id),
        "the interrupted approval was recorded"
    );

    // Approvals on the bus: at least once each; repeated copies are the same approval, so the
    // consumer's key `detail.eventId` leaves exactly one per approved record.
    let announced = approvals_on_the_bus(&home);
    let keys: BTreeSet<String> = announced.keys().cloned().collect();
    assert_eq!(
        keys, approved,
        "approvals deduplicated on detail.eventId = approved records"
    );
    for (id, copies) in &announced {
        assert!(
            copies.iter().all(|c| c == &copies[0]),
            "event {id}: the repeated approvals differ, so detail.eventId is not a safe key"
        );
    }
    assert_eq!(
        announced[&fault_id].len(),
        2,
        "the approval put before the kill is put again on resume (at-least-once)"
    );
}
