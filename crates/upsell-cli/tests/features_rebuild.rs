//! `upsell features rebuild --feature-set fs-v2` on sample events ingested into the local store:
//! the report's counts against an independent computation from the events file (exact
//! rational arithmetic over the surveys, not the core fold), point-in-time reads of one
//! customer under both versions, and a second rebuild giving the same report.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

fn run(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upsell"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("UPSELL_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("the upsell binary runs")
}

/// Standard output of a successful run.
fn stdout_ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// One survey as the independent computation sees it.
#[derive(Debug, Clone)]
struct Survey {
    date: String,
    time: DateTime<Utc>,
    id: String,
    score: i64,
}

/// Every customer's surveys from the events file, each event id once, in the order the
/// definitions keep them: by survey date, then event time.
fn surveys_by_customer(jsonl: &str) -> (BTreeMap<String, Vec<Survey>>, usize) {
    let mut seen = HashSet::new();
    let mut customers: BTreeMap<String, Vec<Survey>> = BTreeMap::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("sample lines are JSON");
        let id = v["id"].as_str().unwrap().to_owned();
        if !seen.insert(id.clone()) {
            continue;
        }
        let customer = v["detail"]["customerId"].as_str().unwrap().to_owned();
        let list = customers.entry(customer).or_default();
        if v["detail-type"] == "SurveySubmitted" {
            list.push(Survey {
                date: v["detail"]["surveyDate"].as_str().unwrap().to_owned(),
                time: DateTime::parse_from_rfc3339(v["time"].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&Utc),
                id,
                score: v["detail"]["satisfaction"].as_i64().unwrap(),
            });
        }
    }
    let n = customers.len();
    for list in customers.values_mut() {
        list.sort_by(|a, b| (&a.date, a.time, &a.id).cmp(&(&b.date, b.time, &b.id)));
    }
    (customers, n)
}

fn last(xs: &[i64], n: usize) -> &[i64] {
    &xs[xs.len().saturating_sub(n)..]
}

/// Mean as a fraction (numerator, denominator).
fn mean(xs: &[i64]) -> Option<(i64, i64)> {
    (!xs.is_empty()).then(|| (xs.iter().sum(), xs.len() as i64))
}

/// Least-squares slope against 0, 1, 2, ... as a fraction: (n Σxy - Σx Σy) / (n Σx² - (Σx)²).
fn slope(ys: &[i64]) -> Option<(i64, i64)> {
    if ys.len() < 2 {
        return None;
    }
    let n = ys.len() as i64;
    let (sx, sy) = ((0..n).sum::<i64>(), ys.iter().sum::<i64>());
    let sxy: i64 = ys.iter().enumerate().map(|(i, y)| i as i64 * y).sum();
    let sxx: i64 = (0..n).map(|i| i * i).sum();
    Some((n * sxy - sx * sy, n * sxx - sx * sx))
}

fn same_fraction(a: Option<(i64, i64)>, b: Option<(i64, i64)>) -> bool {
    match (a, b) {
        (Some((p, q)), Some((r, s))) => p * s == r * q,
        (None, None) => true,
        _ => false,
    }
}

fn show(home: &Path, customer: &str, at: &str, version: &str) -> Value {
    let out = run(
        home,
        &[
            "features",
            "show",
            customer,
            "--as-of",
            at,
            "--feature-set",
            version,
            "--json",
        ],
    );
    serde_json::from_str(&stdout_ok(&out)).unwrap()
}

#[test]
fn a_rebuilt_feature_set_reports_what_moved_and_reads_point_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let events = home.join("events.jsonl");
    let events_arg = events.to_str().unwrap();
    stdout_ok(&run(
        home,
        &[
            "sample",
            "--customers",
            "80",
            "--seed",
            "7",
            "--malformed-share",
            "0",
            "--out",
            events_arg,
        ],
    ));
    stdout_ok(&run(home, &["features", "ingest", events_arg]));

    // Before the rebuild there is no fs-v2 to read, and the error says what to do.
    let (surveys, customers) = surveys_by_customer(&std::fs::read_to_string(&events).unwrap());
    let (busy, list) = surveys
        .iter()
        .max_by_key(|(c, l)| (l.len(), std::cmp::Reverse(c.as_str())))
        .unwrap();
    let out = run(home, &["features", "show", busy, "--feature-set", "fs-v2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("upsell features rebuild --feature-set fs-v2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(home, &["features", "rebuild", "--feature-set", "fs-v9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown feature set \"fs-v9\""));

    let report: Value = serde_json::from_str(&stdout_ok(&run(
        home,
        &["features", "rebuild", "--feature-set", "fs-v2", "--json"],
    )))
    .unwrap();

    // Independent figures: only the satisfaction features differ between the 5- and 3-survey
    // windows, and only for customers with more than 3 surveys.
    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    let mut changed = 0;
    for list in surveys.values() {
        let scores: Vec<i64> = list.iter().map(|s| s.score).collect();
        let (five, three) = (last(&scores, 5), last(&scores, 3));
        let moved = [
            ("recentSatisfaction", five != three),
            ("satisfactionAvg", !same_fraction(mean(five), mean(three))),
            (
                "satisfactionTrend",
                !same_fraction(slope(five), slope(three)),
            ),
        ];
        changed += u64::from(moved.iter().any(|m| m.1));
        for (name, m) in moved {
            *want.entry(name).or_default() += u64::from(m);
        }
    }
    want.retain(|_, n| *n > 0);
    assert!(
        want.get("satisfactionAvg").is_some_and(|n| *n > 0),
        "the sample should have customers with more than 3 surveys: {want:?}"
    );
    let got: BTreeMap<&str, u64> = report["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["feature"].as_str().unwrap(),
                f["customers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want, "report: {report:#}");
    assert_eq!(report["customersRebuilt"], customers as u64);
    assert_eq!(report["customersCompared"], customers as u64);
    assert_eq!(report["customersChanged"], changed);
    assert_eq!(report["serving"], "fs-v1");
    assert_eq!(report["rebuilt"], "fs-v2");

    // Point in time: just after the busiest customer's 4th survey (by event time), both
    // versions hold the surveys known then, each in its own window.
    let mut by_time = list.clone();
    by_time.sort_by_key(|s| s.time);
    let at = by_time[3].time + Duration::seconds(1);
    let at_text = at.to_rfc3339();
    let known: Vec<i64> = list
        .iter()
        .filter(|s| s.time <= at)
        .map(|s| s.score)
        .collect();
    let v1 = show(home, busy, &at_text, "fs-v1");
    let v2 = show(home, busy, &at_text, "fs-v2");
    let recent = |v: &Value| -> Vec<i64> {
        v["recentSatisfaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    assert_eq!(recent(&v1), last(&known, 5));
    assert_eq!(recent(&v2), last(&known, 3));
    assert_eq!(v1["featureSetVersion"], "fs-v1");
    assert_eq!(v2["featureSetVersion"], "fs-v2");
    assert_eq!(v2["asOf"], v1["asOf"]);
    assert_eq!(v2["serviceCount"], v1["serviceCount"]);

    // The human report names the same figures; a second rebuild reports the same.
    let text = stdout_ok(&run(
        home,
        &["features", "rebuild", "--feature-set", "fs-v2"],
    ));
    assert!(
        text.contains(&format!("rebuilt fs-v2 for {customers} customers")),
        "{text}"
    );
    for (name, n) in &want {
        assert!(
            text.lines()
                .any(|l| l.contains(name) && l.contains(&format!(" {n} customers"))),
            "{name} {n}: {text}"
        );
    }
    let again: Value =
        serde_json::from_str(&stdout_ok(&run(home, &["features", "rebuild", "--json"]))).unwrap();
    assert_eq!(again, report);
}
