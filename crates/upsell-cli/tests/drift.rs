//! `upsell drift` as users call it: over two event files (a drifted sample names the drifted
//! feature, a same-distribution one raises nothing), over what `upsell run` stored, and the
//! errors for bad ranges and files.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn upsell(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upsell"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("UPSELL_HOME")
        .output()
        .expect("the upsell binary runs")
}

fn ok_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn sample(dir: &Path, name: &str, seed: &str, extra: &[&str]) -> String {
    let path = dir.join(name).display().to_string();
    let customers = if extra.contains(&"--customers") {
        vec![]
    } else {
        vec!["--customers", "300"]
    };
    let mut args = vec!["sample", "--seed", seed, "--out", &path];
    args.extend(customers);
    args.extend_from_slice(extra);
    let o = upsell(dir, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    path
}

#[test]
fn event_files_drifted_and_not() {
    let dir = tempfile::tempdir().unwrap();
    let base = sample(dir.path(), "base.jsonl", "11", &[]);
    let same = sample(dir.path(), "same.jsonl", "12", &[]);
    let shifted = sample(
        dir.path(),
        "shifted.jsonl",
        "12",
        &["--drift", "falling-satisfaction"],
    );

    let r = ok_json(&upsell(
        dir.path(),
        &[
            "drift",
            "--baseline-events",
            &base,
            "--current-events",
            &same,
            "--json",
        ],
    ));
    assert_eq!(r["drift_detected"], false, "{r:#}");
    let features = r["features"].as_array().unwrap();
    assert_eq!(features.len(), 11);
    for f in features {
        for key in [
            "name",
            "method",
            "statistic",
            "p_value",
            "p_adjusted",
            "effect_size",
            "drifted",
        ] {
            assert!(f.get(key).is_some(), "{key} missing in {f}");
        }
        assert_ne!(f["method"], "none", "{f}");
    }

    let r = ok_json(&upsell(
        dir.path(),
        &[
            "drift",
            "--baseline-events",
            &base,
            "--current-events",
            &shifted,
            "--json",
        ],
    ));
    assert_eq!(r["drift_detected"], true, "{r:#}");
    let drifted: Vec<&str> = r["drifted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(drifted.contains(&"satisfaction"), "{drifted:?}");

    // The table names the verdict too.
    let o = upsell(
        dir.path(),
        &[
            "drift",
            "--baseline-events",
            &base,
            "--current-events",
            &shifted,
        ],
    );
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("DRIFT DETECTED: ") && text.contains("satisfaction"),
        "{text}"
    );
}

#[test]
fn bad_ranges_and_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let e = err(&upsell(
        home,
        &[
            "drift",
            "--baseline",
            "2025-07-01..2025-01-01",
            "--current",
            "2025-07-01..2025-08-01",
        ],
    ));
    assert!(e.contains("empty: FROM must be before TO"), "{e}");
    let e = err(&upsell(
        home,
        &[
            "drift",
            "--baseline",
            "last week",
            "--current",
            "2025-07-01..2025-08-01",
        ],
    ));
    assert!(e.contains("not a range FROM..TO"), "{e}");
    let e = err(&upsell(
        home,
        &["drift", "--baseline", "2025-01-01..2025-07-01"],
    ));
    assert!(e.contains("--current"), "{e}");
    let e = err(&upsell(
        home,
        &[
            "drift",
            "--baseline-events",
            "nope.jsonl",
            "--current-events",
            "nope2.jsonl",
        ],
    ));
    assert!(e.contains("cannot read events file nope.jsonl"), "{e}");
    let junk = home.join("junk.jsonl");
    std::fs::write(&junk, "{not json\n").unwrap();
    let junk = junk.display().to_string();
    let e = err(&upsell(
        home,
        &[
            "drift",
            "--baseline-events",
            &junk,
            "--current-events",
            &junk,
        ],
    ));
    assert!(e.contains("holds no valid events (1 invalid lines)"), "{e}");
    // Nothing has run in this home yet.
    let e = err(&upsell(
        home,
        &[
            "drift",
            "--baseline",
            "2025-01-01..2025-07-01",
            "--current",
            "2025-07-01..2026-01-01",
        ],
    ));
    assert!(e.contains("nothing has run"), "{e}");
}

#[test]
fn ranges_over_what_run_stored() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let events = sample(home, "events.jsonl", "5", &["--customers", "80"]);
    let o = upsell(home, &["run", "--events", &events, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = ok_json(&upsell(
        home,
        &[
            "drift",
            "--baseline",
            "2025-01-01..2025-07-01",
            "--current",
            "2025-07-01..2026-01-01",
            "--json",
        ],
    ));
    assert!(r["baseline"]["events"].as_u64().unwrap() > 100, "{r:#}");
    assert!(r["current"]["events"].as_u64().unwrap() > 100, "{r:#}");
    assert!(r["baseline"]["messages"].as_u64().unwrap() > 0, "{r:#}");
    let concept: Vec<&str> = r["concept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        concept.iter().any(|n| n.starts_with("approval_rate[")),
        "{concept:?}"
    );
    assert!(concept.contains(&"rejection_reasons"), "{concept:?}");
    // A window in which nothing happened.
    let e = err(&upsell(
        home,
        &[
            "drift",
            "--baseline",
            "2025-01-01..2025-07-01",
            "--current",
            "2030-01-01..2030-02-01",
        ],
    ));
    assert!(
        e.contains("no events with an event time in 2030-01-01T00:00:00Z..2030-02-01T00:00:00Z"),
        "{e}"
    );
}
