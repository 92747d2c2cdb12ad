//! `upsell run` as users and outside checks call it: the JSON summary's exact keys, counts that
//! add up, and a rerun into the same home that publishes nothing new; then the companions
//! (`messages`, `executions`, `quarantine`) on what the run stored.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn upsell(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_upsell"))
        .current_dir(repo_root())
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("UPSELL_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the upsell binary runs");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{out}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

const KEYS: [&str; 9] = [
    "events",
    "published",
    "rejected",
    "skipped",
    "quarantined",
    "failed",
    "duplicates",
    "elapsed_s",
    "events_per_s",
];

fn summary(o: &Output) -> Value {
    let out = ok(o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "--json prints exactly one line: {out}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, KEYS);
    let six: u64 = KEYS[1..7].iter().map(|k| v[k].as_u64().unwrap()).sum();
    assert_eq!(six, v["events"].as_u64().unwrap(), "{v}");
    v
}

#[test]
fn run_twice_from_stdin_then_inspect_the_records() {
    let home = tempfile::tempdir().unwrap();
    let examples = std::fs::read_to_string(repo_root().join("examples/events.jsonl")).unwrap();
    // The first 150 example lines, with blank lines that must not count, and a broken line.
    let mut input: String = examples.lines().take(150).collect::<Vec<_>>().join("\n\n");
    input.push_str("\n{\"id\": \"cli-broken\", \"source\": \n");
    let events = input.lines().filter(|l| !l.trim().is_empty()).count() as u64;

    let first = summary(&upsell(
        home.path(),
        &["run", "--events", "-", "--json"],
        Some(&input),
    ));
    assert_eq!(first["events"], events);
    assert!(first["published"].as_u64().unwrap() > 0, "{first}");
    assert!(first["quarantined"].as_u64().unwrap() >= 1, "{first}");

    let second = summary(&upsell(
        home.path(),
        &["run", "--events", "-", "--json"],
        Some(&input),
    ));
    assert_eq!(second["events"], events);
    assert_eq!(
        second["published"], 0,
        "the rerun published again: {second}"
    );
    assert_eq!(second["rejected"], 0, "{second}");

    let list = ok(&upsell(
        home.path(),
        &[
            "messages", "list", "--status", "approved", "--json", "--limit", "1000",
        ],
        None,
    ));
    let approved: Vec<Value> = list
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(approved.len() as u64, first["published"].as_u64().unwrap());
    // The summary's words are the stores': each count is the number of records in that status.
    for status in ["rejected", "skipped"] {
        let listed = ok(&upsell(
            home.path(),
            &[
                "messages", "list", "--status", status, "--json", "--limit", "1000",
            ],
            None,
        ));
        assert_eq!(
            listed.lines().count() as u64,
            first[status].as_u64().unwrap(),
            "{status}: {first}"
        );
    }
    let id = approved[0]["eventId"].as_str().unwrap();
    let shown = ok(&upsell(home.path(), &["messages", "show", id], None));
    assert!(shown.contains(id) && shown.contains("approved"), "{shown}");

    let timeline = ok(&upsell(home.path(), &["executions", "show", id], None));
    for needle in [
        "ExecutionStarted",
        "SchemaCheck",
        "Generate",
        "Judge",
        "Publish",
        "ExecutionSucceeded",
    ] {
        assert!(timeline.contains(needle), "{needle} missing:\n{timeline}");
    }
    let executions = ok(&upsell(
        home.path(),
        &["executions", "list", "--limit", "5"],
        None,
    ));
    assert!(executions.contains("SUCCEEDED"), "{executions}");

    let quarantine = ok(&upsell(
        home.path(),
        &["quarantine", "list", "--json", "--limit", "1000"],
        None,
    ));
    assert!(
        quarantine
            .lines()
            .any(|l| l.contains("malformed-json") && l.contains("cli-broken")),
        "{quarantine}"
    );

    // Both runs recorded metrics: every state's latency, read back by `upsell monitor`.
    let report: Value = serde_json::from_str(&ok(&upsell(
        home.path(),
        &["monitor", "--json", "--by", "state"],
        None,
    )))
    .unwrap();
    assert!(report.get("by_version").is_none(), "{report}");
    let states = report["by_state"].as_array().unwrap();
    for state in [
        "SchemaCheck",
        "Enrich",
        "KbRetrieve",
        "Generate",
        "Judge",
        "Publish",
    ] {
        let row = states
            .iter()
            .find(|r| r["state"] == state)
            .unwrap_or_else(|| panic!("no {state} row: {report}"));
        assert!(row["latency"]["count"].as_u64().unwrap() > 0, "{row}");
        let p = &row["latency"];
        assert!(p["p50"].as_f64() <= p["p95"].as_f64() && p["p95"].as_f64() <= p["p99"].as_f64());
    }
    // The outcome counts are the first run's (the rerun's lines are duplicates, which record
    // nothing, and a quarantined line is counted once).
    let full: Value =
        serde_json::from_str(&ok(&upsell(home.path(), &["monitor", "--json"], None))).unwrap();
    for (metric, run) in [
        ("approved", "published"),
        ("rejected", "rejected"),
        ("failed", "failed"),
        ("quarantined", "quarantined"),
        ("skipped", "skipped"),
    ] {
        assert_eq!(full["summary"][metric], first[run], "{metric}: {full}");
    }
    assert!(!full["by_version"].as_array().unwrap().is_empty(), "{full}");
    // The live counters in the store agree with the run: every approval and rejection is
    // counted once for the generator version and once for the judge version that ran.
    let counters = full["version_counters"].as_array().unwrap();
    for agent in ["upsell-generator", "upsell-judge"] {
        let sum = |field: &str| -> u64 {
            counters
                .iter()
                .filter(|r| r["agent_id"] == agent)
                .map(|r| r[field].as_u64().unwrap())
                .sum()
        };
        assert_eq!(
            Some(sum("approvals")),
            first["published"].as_u64(),
            "{agent}: {full}"
        );
        assert_eq!(
            Some(sum("rejections")),
            first["rejected"].as_u64(),
            "{agent}: {full}"
        );
        assert!(
            sum("errors") <= first["failed"].as_u64().unwrap(),
            "{agent}: {full}"
        );
    }
    assert!(
        counters
            .iter()
            .all(|r| r["cost_usd"].as_f64().unwrap() > 0.0 && r["latency_p50_ms"].is_number()),
        "{full}"
    );
    let text = ok(&upsell(home.path(), &["monitor"], None));
    assert!(
        text.contains("P95 ms") && text.contains("Publish"),
        "{text}"
    );
    assert!(
        text.contains("Live counters per agent version") && text.contains("upsell-judge"),
        "{text}"
    );

    let page = home.path().join("dashboard.html");
    let wrote = ok(&upsell(
        home.path(),
        &["dashboard", "--out", page.to_str().unwrap()],
        None,
    ));
    assert!(wrote.contains("8 panels"), "{wrote}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("data-panel=\"latency-state\"") && html.contains("class=\"mark"));
}

#[test]
fn companions_explain_an_empty_home_instead_of_creating_one() {
    let home = tempfile::tempdir().unwrap();
    let page = home.path().join("page.html");
    for args in [
        &["messages", "list"][..],
        &["monitor"],
        &["dashboard", "--out", page.to_str().unwrap()],
    ] {
        let o = upsell(home.path(), args, None);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("upsell run"),
            "{args:?}"
        );
    }
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
}

#[test]
fn openai_needs_an_endpoint_and_a_model_id() {
    let home = tempfile::tempdir().unwrap();
    let o = upsell(home.path(), &["run", "--model", "openai"], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--endpoint") && err.contains("--model-id"),
        "{err}"
    );
}
