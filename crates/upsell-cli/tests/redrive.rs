//! `upsell redrive` on events whose workflow failed: the model server was unreachable
//! (`ModelTransient` after the workflow's retries), then each failed event runs again through
//! the unchanged workflow under a derived name, its claim handed over, its failed record
//! replaced; the failed executions stay in the history, and nothing runs twice.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn upsell(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upsell"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("UPSELL_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("the upsell binary runs")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn failed_events_are_redriven_once_and_their_history_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let events = dir.path().join("events.jsonl");
    let events = events.to_str().unwrap();
    ok(&upsell(
        &home,
        &[
            "sample",
            "--customers",
            "4",
            "--malformed-share",
            "0",
            "--duplicate-share",
            "0",
            "--out",
            events,
        ],
    ));
    // Nothing listens on port 9: every Generate fails with ModelTransient after its retries.
    let summary: Value = serde_json::from_str(&ok(&upsell(
        &home,
        &[
            "run",
            "--events",
            events,
            "--json",
            "--model",
            "openai",
            "--endpoint",
            "http://127.0.0.1:9",
            "--model-id",
            "none",
        ],
    )))
    .unwrap();
    let failed = lines(&ok(&upsell(
        &home,
        &[
            "messages", "list", "--status", "failed", "--limit", "1000", "--json",
        ],
    )));
    assert!(!failed.is_empty(), "{summary}");
    assert_eq!(summary["failed"].as_u64().unwrap(), failed.len() as u64);
    assert!(
        failed
            .iter()
            .all(|r| r["error"].as_str().unwrap().starts_with("ModelTransient: "))
    );

    // Filters: another error name selects nothing; --dry-run changes nothing.
    assert!(
        ok(&upsell(
            &home,
            &["redrive", "--error", "ModelThrottled", "--json"]
        ))
        .is_empty()
    );
    let dry = ok(&upsell(&home, &["redrive", "--dry-run"]));
    assert_eq!(dry.matches("would redrive").count(), failed.len(), "{dry}");

    let redriven = lines(&ok(&upsell(
        &home,
        &[
            "redrive",
            "--error",
            "ModelTransient",
            "--since",
            "2000-01-01",
            "--json",
        ],
    )));
    assert_eq!(redriven.len(), failed.len());
    assert!(
        redriven.iter().any(|r| r["outcome"] == "published"),
        "the agents ran again: {redriven:?}"
    );
    for r in &redriven {
        let id = r["eventId"].as_str().unwrap();
        assert_eq!(r["status"], "SUCCEEDED", "{r}");
        // The redrive reads the customer's features as they are now: one who opted out or
        // answered since is skipped, as a new event would be.
        assert!(
            ["published", "rejected", "skipped"].contains(&r["outcome"].as_str().unwrap()),
            "{r}"
        );
        assert!(
            r["execution"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{id}-redrive-1")),
            "{r}"
        );
        // The failed record was replaced by the redriven outcome.
        let shown: Value =
            serde_json::from_str(&ok(&upsell(&home, &["messages", "show", id, "--json"]))).unwrap();
        assert_ne!(shown["status"], "failed", "{shown}");
        // The failed execution and its history stay.
        let old = ok(&upsell(
            &home,
            &["executions", "show", r["failedExecution"].as_str().unwrap()],
        ));
        assert!(old.contains("FAILED"), "{old}");
    }
    assert!(
        lines(&ok(&upsell(
            &home,
            &["messages", "list", "--status", "failed", "--json"]
        )))
        .is_empty()
    );

    // Nothing left to redrive, and the events submitted again are duplicates.
    assert!(ok(&upsell(&home, &["redrive", "--json"])).is_empty());
    let again: Value =
        serde_json::from_str(&ok(&upsell(&home, &["run", "--events", events, "--json"]))).unwrap();
    assert_eq!(again["published"], 0, "{again}");
    assert_eq!(again["failed"], 0, "{again}");
}
