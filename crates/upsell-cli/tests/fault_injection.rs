//! Fault injection at scale: `upsell run` on sample events with malformed (1%) and redelivered
//! (2%) lines, with model throttling (5% of model calls), invalid model output (1%) and
//! transient worker errors (`Lambda.ServiceException`, 1% of invocations) injected
//! (`UPSELL_FAULTS`, the `fault-injection` feature), killed with SIGKILL twice and restarted
//! until it finishes; then `upsell redrive` (without faults) for the events that failed.
//!
//! Every event must end with exactly one terminal record, no event may be approved twice,
//! every quarantine record names its reasons, every failed record its error, and the retries
//! the state machine made are counted from the execution histories.
//!
//! Size and seed: `UPSELL_FAULT_EVENTS` (default 400) and `UPSELL_FAULT_SEED` (default 7);
//! `scripts/fault-injection.sh` runs it with 10,000 events and prints the table.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use common::{approvals_on_the_bus, kill_at, stdout_ok as ok};
use serde_json::Value;
use upsell_cli::app::{AppOptions, LocalApp};
use upsell_cli::faults::FAULTS_ENV;
use upsell_core::message::MessageStatus;
use upsell_core::ports::{MessageQuery, MessageStore};
use upsell_core::sample::{LineKind, SampleConfig, generate};
use upsell_sqlite::ExecutionFilter;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name}={s} is not a number"))
        })
        .unwrap_or(default)
}

fn command(bin: &Path, home: &Path, faults: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(repo_root())
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("UPSELL_HOME")
        .env_remove("UPSELL_FAULT_POINT")
        .env_remove(FAULTS_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(f) = faults {
        c.env(FAULTS_ENV, f);
    }
    c
}

/// The first `n` sample lines (with what each is), from as many customers as that takes.
fn sample(n: usize, seed: u64) -> Vec<(String, LineKind)> {
    // About 7.3 lines per customer.
    let mut customers = (n / 7).max(10);
    loop {
        let lines = generate(&SampleConfig {
            customers,
            seed,
            malformed_share: 0.01,
            duplicate_share: 0.02,
            ..SampleConfig::default()
        });
        if lines.len() >= n {
            return lines
                .into_iter()
                .take(n)
                .map(|l| (l.text, l.kind))
                .collect();
        }
        customers *= 2;
    }
}

const INJECTED: &str = "UPSELL_FAULTS injected";

#[test]
fn every_event_survives_injected_faults_and_two_kills_with_one_terminal_record() {
    let events = usize::try_from(env_u64("UPSELL_FAULT_EVENTS", 400)).unwrap();
    let seed = env_u64("UPSELL_FAULT_SEED", 7);
    let faults = format!("seed={seed},throttle=0.05,transient=0.01,invalid=0.01");
    eprintln!("UPSELL_FAULT_EVENTS={events} UPSELL_FAULT_SEED={seed} {FAULTS_ENV}={faults}");

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // Every run uses this copy: a later build into the shared target folder cannot swap the
    // binary between the kills.
    let bin = dir.path().join("upsell");
    std::fs::copy(env!("CARGO_BIN_EXE_upsell"), &bin)
        .unwrap_or_else(|e| panic!("copying {}: {e}", env!("CARGO_BIN_EXE_upsell")));
    let file = dir.path().join("events.jsonl");
    let lines = sample(events, seed);
    let mut text = String::new();
    for (l, _) in &lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&file, &text).unwrap();
    let id_of = |l: &str| -> Option<String> {
        serde_json::from_str::<Value>(l)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
    };
    let valid: BTreeSet<String> = lines
        .iter()
        .filter(|(_, k)| matches!(k, LineKind::Valid))
        .map(|(l, _)| id_of(l).unwrap())
        .collect();
    let malformed: Vec<&str> = lines
        .iter()
        .filter(|(_, k)| matches!(k, LineKind::Malformed(_)))
        .map(|(l, _)| l.as_str())
        .collect();
    let redelivered = lines
        .iter()
        .filter(|(_, k)| matches!(k, LineKind::Duplicate))
        .count();
    assert!(
        !malformed.is_empty() && redelivered > 0,
        "{} malformed, {redelivered} redelivered",
        malformed.len()
    );

    let started = Instant::now();
    let file_arg = file.to_str().unwrap();
    let run = ["run", "--events", file_arg, "--json", "--concurrency", "32"];
    // Two kills, each at a seeded injected fault of its run (a few per cent of the way in).
    let mut kills = Vec::new();
    // Executions each restart found interrupted and resumed (`upsell run` says so on stderr).
    let mut resumed = 0u64;
    // Injected faults by kind, from every run's stderr (one line each).
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    let mut count_injected = |stderr: &str| {
        for l in stderr.lines() {
            if let Some(rest) = l.strip_prefix(INJECTED) {
                let kind = rest.split_whitespace().next().unwrap_or("?").to_owned();
                *injected.entry(kind).or_default() += 1;
            }
        }
    };
    let count_resumed = |stderr: &str| -> u64 {
        stderr
            .lines()
            .filter_map(|l| l.strip_prefix("resumed "))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    };
    for k in 0..2u64 {
        let nth = events / 40 + usize::try_from((seed.wrapping_mul(31) + k * 7) % 13).unwrap();
        let (running, seen) = kill_at(
            command(&bin, &home, Some(&faults), &run),
            Some((INJECTED, nth)),
            None,
        );
        assert!(
            running,
            "run {} ended before its {nth}th injected fault:\n{seen}",
            k + 1
        );
        kills.push(nth);
        resumed += count_resumed(&seen);
        count_injected(&seen);
    }
    // Restarted until it finishes (each restart resumes the interrupted executions first).
    let mut last = Value::Null;
    for _ in 0..3 {
        let o = command(&bin, &home, Some(&faults), &run).output().unwrap();
        last = serde_json::from_str(&ok(&o)).unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        resumed += count_resumed(&stderr);
        count_injected(&stderr);
        if last["events"].as_u64() == Some(events as u64) {
            break;
        }
    }
    assert_eq!(last["events"], events as u64, "{last}");
    assert!(resumed > 0, "no restart found an interrupted execution");
    for kind in [
        "model-throttling",
        "invalid-model-output",
        "transient-worker-error",
    ] {
        assert!(
            injected.contains_key(kind),
            "no {kind} injected: {injected:?}"
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let open = || {
        let opts = AppOptions::new(&home).with_repo_root(repo_root());
        Arc::new(rt.block_on(LocalApp::open(opts)).unwrap())
    };
    let records = |app: &LocalApp| {
        rt.block_on(app.messages.list(&MessageQuery {
            limit: 1_000_000,
            ..MessageQuery::default()
        }))
        .unwrap()
    };

    // Failed events name their error; `upsell redrive` (no faults) takes each to an outcome.
    let before = records(&open());
    let failed: Vec<_> = before
        .iter()
        .filter(|r| r.status == MessageStatus::Failed)
        .collect();
    for r in &failed {
        assert!(
            r.error.as_deref().is_some_and(|e| !e.trim().is_empty()),
            "{}: failed without an error: {r:?}",
            r.event_id
        );
    }
    let mut failed_by_error: BTreeMap<String, u64> = BTreeMap::new();
    for r in &failed {
        let e = r.error.as_deref().unwrap_or_default();
        *failed_by_error
            .entry(e.split(':').next().unwrap_or(e).to_owned())
            .or_default() += 1;
    }
    let redriven = ok(&command(&bin, &home, None, &["redrive", "--json"])
        .output()
        .unwrap())
    .lines()
    .count();
    assert_eq!(redriven, failed.len(), "every failed event redriven");

    let app = open();
    let after = records(&app);
    let quarantined = rt
        .block_on(app.messages.list_quarantine(None, 1_000_000))
        .unwrap();

    // Exactly one terminal record per event id: a message record for every valid event
    // (redelivered copies add nothing), a quarantine record with reasons for every malformed
    // line, and nothing else.
    let mut per_id: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &after {
        *per_id.entry(r.event_id.as_str()).or_default() += 1;
    }
    for q in &quarantined {
        assert!(!q.errors.is_empty(), "quarantined without reasons: {q:?}");
        if let Some(id) = &q.event_id {
            *per_id.entry(id.as_str()).or_default() += 1;
        }
    }
    for id in &valid {
        assert_eq!(per_id.get(id.as_str()), Some(&1), "event {id}");
    }
    assert_eq!(
        after.len(),
        valid.len(),
        "message records beyond the events"
    );
    for line in &malformed {
        let found = quarantined.iter().filter(|q| match id_of(line) {
            Some(id) => q.event_id.as_deref() == Some(id.as_str()),
            None => q.raw == *line,
        });
        assert_eq!(found.count(), 1, "malformed line {line}");
    }
    assert_eq!(
        quarantined.len(),
        malformed.len(),
        "extra quarantine records"
    );
    let status = |s: MessageStatus| after.iter().filter(|r| r.status == s).count();
    assert_eq!(status(MessageStatus::Failed), 0, "failed after the redrive");

    // Approvals: at least once on the bus; deduplicated on detail.eventId exactly the approved
    // records, and repeated copies identical.
    let approved: BTreeSet<&str> = after
        .iter()
        .filter(|r| r.status == MessageStatus::Approved)
        .map(|r| r.event_id.as_str())
        .collect();
    let announced = approvals_on_the_bus(&home);
    let keys: BTreeSet<&str> = announced.keys().map(String::as_str).collect();
    assert_eq!(keys, approved, "approvals on the bus = approved records");
    for (id, copies) in &announced {
        assert!(copies.iter().all(|c| c == &copies[0]), "event {id}");
    }
    let copies: usize = announced.values().map(Vec::len).sum();

    // Retries: every failed task attempt in the histories, by error name.
    let executions = app
        .executions
        .list(&ExecutionFilter {
            limit: Some(1_000_000),
            ..ExecutionFilter::default()
        })
        .unwrap();
    let mut attempts: BTreeMap<String, u64> = BTreeMap::new();
    for e in &executions {
        for h in app.executions.history(&e.arn).unwrap() {
            if h.event_type == "LambdaFunctionFailed"
                && let Some((_, d)) = &h.details
            {
                let name = d["error"].as_str().unwrap_or("?").to_owned();
                *attempts.entry(name).or_default() += 1;
            }
        }
    }
    for name in [
        "ModelThrottled",
        "ModelOutputInvalid",
        "Lambda.ServiceException",
    ] {
        assert!(
            attempts.get(name).copied().unwrap_or(0) > 0,
            "no failed attempt with {name}: {attempts:?}"
        );
    }

    let row = |k: &str, v: String| println!("| {k} | {v} |");
    println!("\n| fault-injection run | value |\n| --- | --- |");
    row("input lines", events.to_string());
    row(
        "valid events / redelivered copies / malformed lines",
        format!("{} / {redelivered} / {}", valid.len(), malformed.len()),
    );
    row(
        "injected faults",
        format!(
            "model throttling 5%, invalid model output 1%, Lambda.ServiceException 1% (seed {seed})"
        ),
    );
    row("faults injected, by kind", format!("{injected:?}"));
    row(
        "kills (SIGKILL at the n-th injected fault of runs 1 and 2)",
        format!("{} and {}", kills[0], kills[1]),
    );
    row(
        "published / rejected / skipped / quarantined",
        format!(
            "{} / {} / {} / {}",
            status(MessageStatus::Approved),
            status(MessageStatus::Rejected),
            status(MessageStatus::Skipped),
            quarantined.len()
        ),
    );
    row(
        "failed before the redrive (by error), redriven",
        format!("{} {failed_by_error:?}, {redriven}", failed.len()),
    );
    row(
        "event ids with exactly one terminal record",
        format!(
            "{} of {}",
            per_id.values().filter(|n| **n == 1).count(),
            per_id.len()
        ),
    );
    row(
        "approvals on the bus (copies / distinct event ids)",
        format!("{copies} / {}", announced.len()),
    );
    row(
        "failed task attempts (retried or caught), by error",
        format!("{attempts:?}"),
    );
    row(
        "executions (resumed after a kill)",
        format!("{} ({resumed})", executions.len()),
    );
    row(
        "elapsed",
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    );
}
