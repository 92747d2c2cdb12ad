//! Runs the `upsell` binary the way users and outside checks do.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn upsell(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upsell"))
        .args(args)
        .env_remove("UPSELL_HOME")
        .output()
        .expect("the upsell binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn good_service(id: &str) -> Value {
    json!({
        "version": "0", "id": id, "source": "com.greenleaf.field-service",
        "detail-type": "ServiceCompleted", "time": "2025-05-01T14:00:00-04:00",
        "detail": {"customerId": "cust-000001", "service": "pest-control",
                   "serviceDate": "2025-05-01", "priceCents": 12900,
                   "technicianNotes": "Wasp nest under eaves removed.", "rating": 5}
    })
}

/// The mixed file: returns its text. Line numbers are referred to in the tests below.
fn mixed_file() -> String {
    let good = good_service("evt-1");
    let mut missing = good_service("evt-2");
    missing["detail"]
        .as_object_mut()
        .unwrap()
        .remove("customerId");
    missing["detail"]
        .as_object_mut()
        .unwrap()
        .remove("serviceDate");
    let mut wrong = good_service("evt-3");
    wrong["detail"]["priceCents"] = json!("129.00");
    wrong["detail"]["rating"] = json!("five");
    let mut unknown = good_service("evt-4");
    unknown["detail-type"] = json!("InvoicePaid");
    let mut oversized = good_service("evt-5");
    oversized["detail"]["technicianNotes"] = json!("z".repeat(300 * 1024));
    let survey = json!({
        "id": "evt-6", "source": "com.greenleaf.surveys", "detail-type": "SurveySubmitted",
        "time": "2025-05-03T18:00:00Z",
        "detail": {"customerId": "cust-000001", "satisfaction": 8, "surveyDate": "2025-05-03"}
    });
    [
        good.to_string(),                              // 1 valid
        "{\"id\": \"evt-x\", \"source\": ".to_owned(), // 2 malformed JSON
        String::new(),                                 // 3 blank: skipped
        missing.to_string(),                           // 4 missing fields
        wrong.to_string(),                             // 5 wrong types
        "   ".to_owned(),                              // 6 blank: skipped
        oversized.to_string(),                         // 7 oversized
        unknown.to_string(),                           // 8 unknown detail-type
        survey.to_string(),                            // 9 valid
        good.to_string(),                              // 10 valid, duplicate id
    ]
    .join("\n")
        + "\n"
}

fn write_mixed() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(mixed_file().as_bytes()).unwrap();
    f
}

#[test]
fn validate_reports_every_problem_with_its_path_and_continues() {
    let f = write_mixed();
    let o = upsell(&["validate", f.path().to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    for expected in [
        "line 2: invalid (malformed-json)",
        "/: malformed JSON: EOF while parsing",
        "line 4: invalid (schema-violation)",
        "/detail/customerId: required property is missing",
        "/detail/serviceDate: required property is missing",
        "line 5: invalid (schema-violation)",
        "/detail/priceCents: \"129.00\" is not of type \"integer\"",
        "/detail/rating: \"five\" is not of type",
        "line 7: invalid (oversized)",
        "over the 262144-byte (256 KiB) EventBridge limit",
        "line 8: invalid (unknown-detail-type)",
        "/detail-type: unknown detail-type \"InvoicePaid\"; known detail-types: ServiceCompleted, CustomerProfileUpdated, SurveySubmitted",
        "8 events, 3 valid, 5 invalid",
        "invalid by reason: oversized 1, malformed-json 1, unknown-detail-type 1, schema-violation 2",
        "duplicate event ids: 1",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    for skipped in ["line 1:", "line 3:", "line 6:", "line 9:", "line 10:"] {
        assert!(
            !out.contains(skipped),
            "{skipped} should not be reported:\n{out}"
        );
    }
}

#[test]
fn validate_json_has_the_documented_shape() {
    let f = write_mixed();
    let o = upsell(&["validate", "--json", f.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 9, "8 event lines + 1 summary");
    let events = &lines[..8];
    let numbers: Vec<u64> = events.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 4, 5, 7, 8, 9, 10]);
    for e in events {
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["line", "valid", "errors"], "{e}");
        let errors = e["errors"].as_array().unwrap();
        assert_eq!(e["valid"].as_bool().unwrap(), errors.is_empty(), "{e}");
        for err in errors {
            let keys: Vec<&String> = err.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["path", "message"], "{err}");
        }
    }
    let paths = |i: usize| -> Vec<&str> {
        events[i]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect()
    };
    assert_eq!(paths(2), ["/detail/customerId", "/detail/serviceDate"]);
    assert_eq!(paths(3), ["/detail/priceCents", "/detail/rating"]);
    assert_eq!(paths(5), ["/detail-type"]);
    assert_eq!(
        lines[8],
        json!({"summary": {"total": 8, "valid": 3, "invalid": 5,
            "invalid_by_reason": {"oversized": 1, "malformed-json": 1, "unknown-detail-type": 1, "schema-violation": 2},
            "duplicate_ids": 1}})
    );
}

#[test]
fn validate_reads_standard_input_and_strict_fails() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_upsell"))
        .args(["validate", "--strict", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(mixed_file().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("standard input: 8 events"));
    assert_eq!(stderr(&o), "error: 5 of 8 events are invalid\n");
}

#[test]
fn errors_are_one_line_and_usage_errors_exit_2() {
    let o = upsell(&["validate", "/definitely/not/here.jsonl"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot open /definitely/not/here.jsonl: "),
        "{err}"
    );

    assert_eq!(upsell(&["validate"]).status.code(), Some(2));
    assert_eq!(upsell(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        upsell(&["sample", "--malformed-share", "1.5"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        upsell(&["sample", "--customers", "many"]).status.code(),
        Some(2)
    );
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["sample", "validate", "schemas"] {
        let o = upsell(&[sub, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{sub}");
        let out = stdout(&o);
        assert!(out.contains("Usage: upsell"), "{sub}: {out}");
        assert!(
            out.contains("--home <DIR>"),
            "{sub}: the global option is listed"
        );
    }
    let o = upsell(&["--help"]);
    for sub in ["sample", "validate", "schemas"] {
        assert!(stdout(&o).contains(sub));
    }
}

#[test]
fn sample_is_deterministic_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("nested/b.jsonl");
    for p in [&a, &b] {
        let o = upsell(&[
            "sample",
            "--customers",
            "15",
            "--seed",
            "9",
            "--out",
            p.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stderr(&o).contains("customers"));
    }
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text, std::fs::read_to_string(&b).unwrap());
    let o = upsell(&["sample", "--customers", "15", "--seed", "9"]);
    assert_eq!(stdout(&o), text, "stdout and --out give the same bytes");

    let o = upsell(&[
        "sample",
        "--customers",
        "15",
        "--seed",
        "9",
        "--malformed-share",
        "0",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let o = upsell(&["validate", "--strict", a.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn committed_examples_are_what_the_generator_makes() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let o = upsell(&["sample", "--customers", "140", "--seed", "42"]);
    let committed = std::fs::read_to_string(format!("{root}/examples/events.jsonl"))
        .expect("examples/events.jsonl exists");
    assert!(
        stdout(&o) == committed,
        "examples/events.jsonl is stale; regenerate with \
         `cargo run -p upsell-cli -- sample --customers 140 --seed 42 --out examples/events.jsonl`"
    );
}

#[test]
fn schemas_check_passes_on_the_repository_and_fails_on_an_empty_dir() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
    let o = upsell(&["schemas", "--check", "--dir", root]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let o = upsell(&["schemas", "--check", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cargo run -p upsell-cli -- schemas"));
    let o = upsell(&["schemas", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success());
    let o = upsell(&["schemas", "--check", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
}

fn knowledge_base_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../knowledge-base").to_owned()
}

/// `upsell kb --dir <knowledge-base/> eval --provider hashing` with `flags` after it.
fn kb_eval_hashing(flags: &[&str]) -> Output {
    let dir = knowledge_base_dir();
    let mut args = vec!["kb", "--dir", &dir, "eval", "--provider", "hashing"];
    args.extend_from_slice(flags);
    upsell(&args)
}

#[test]
fn kb_eval_splits_queries_and_compares_fusion_weights() {
    let out = kb_eval_hashing(&[
        "--split",
        "--json",
        "--vector-weight",
        "1",
        "--vector-weight",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // keyword, vector and two hybrid runs, each for all, odd and even queries.
    assert_eq!(rows.len(), 4 * 3, "{rows:#?}");
    let total = rows[0]["queries"].as_u64().unwrap();
    assert!(total >= 100, "{total} queries");
    for run in rows.chunks(3) {
        let subsets: Vec<&str> = run.iter().map(|r| r["subset"].as_str().unwrap()).collect();
        assert_eq!(subsets, ["all", "odd", "even"]);
        let n: Vec<u64> = run.iter().map(|r| r["queries"].as_u64().unwrap()).collect();
        assert_eq!((n[0], n[1], n[2]), (total, total.div_ceil(2), total / 2));
        // The full set's recall is the query-weighted mean of its two halves.
        let recall = |r: &Value| r["recall@5"].as_f64().unwrap();
        let mean = (recall(&run[1]) * n[1] as f64 + recall(&run[2]) * n[2] as f64) / n[0] as f64;
        assert!((recall(&run[0]) - mean).abs() < 1e-9, "{run:#?}");
    }
    let weights: Vec<Value> = rows
        .iter()
        .step_by(3)
        .map(|r| r["vector_weight"].clone())
        .collect();
    assert_eq!(weights, [Value::Null, Value::Null, json!(1.0), json!(3.0)]);
    assert_eq!(rows[6]["mode"], "hybrid");

    let bad = kb_eval_hashing(&["--vector-weight=-1"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("non-negative"), "{}", stderr(&bad));
}

/// `--rerank` compares re-ranking depths on one index (0 = off; the JSON rows carry `rerank`),
/// and `--misses` lists the queries whose top 5 misses a relevant document.
#[test]
fn kb_eval_compares_reranking_and_lists_misses() {
    let out = kb_eval_hashing(&["--json", "--rerank", "0", "--rerank", "20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // keyword, vector and hybrid, without and with re-ranking.
    let depths: Vec<Value> = rows.iter().map(|r| r["rerank"].clone()).collect();
    assert_eq!(
        depths,
        [
            Value::Null,
            Value::Null,
            Value::Null,
            json!(20),
            json!(20),
            json!(20)
        ]
    );
    assert_ne!(rows[2]["recall@5"], rows[5]["recall@5"], "{rows:#?}");

    let out = kb_eval_hashing(&["--misses"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("misses of hashing hybrid"), "{text}");
    assert!(text.contains("missed past-messages/pm-"), "{text}");
    assert!(
        text.contains(" * "),
        "relevant documents are starred: {text}"
    );
}

/// A reader that stops early (`upsell ... | head -1`) ends the command quietly, with no panic.
#[test]
fn closed_stdout_is_not_a_crash() {
    let home = tempfile::tempdir().unwrap();
    let events = home.path().join("events.jsonl");
    // Enough malformed lines that `quarantine list` prints far more than a pipe buffer holds.
    let mut lines = String::new();
    for i in 0..1000 {
        lines.push_str(&format!(
            "{{\"id\": \"bad-{i}\", \"not an event\": true}}\n"
        ));
    }
    std::fs::write(&events, lines).unwrap();
    let home_arg = home.path().to_str().unwrap();
    // `upsell run` reads sam/ and knowledge-base/ from the repository root.
    let run = Command::new(env!("CARGO_BIN_EXE_upsell"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(["--home", home_arg, "run", "--events"])
        .arg(&events)
        .args(["--json", "--history", "summary"])
        .env_remove("UPSELL_HOME")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    for args in [
        vec!["--home", home_arg, "quarantine", "list", "--limit", "1000"],
        vec!["sample", "--customers", "2000", "--seed", "1"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_upsell"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        std::io::Read::read_exact(&mut out, &mut first).unwrap();
        drop(out);
        let done = child.wait_with_output().unwrap();
        let err = stderr(&done);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            done.status.success(),
            "{args:?} exited {:?}: {err}",
            done.status
        );
    }
}

#[test]
fn events_test_pattern_answers_like_aws_events_test_event_pattern() {
    let event = good_service("evt-1").to_string();
    let yes = upsell(&[
        "events",
        "test-pattern",
        "--pattern",
        r#"{"source":[{"prefix":"com.greenleaf."}],"detail":{"priceCents":[{"numeric":[">",100]}]}}"#,
        "--event",
        &event,
    ]);
    assert!(yes.status.success(), "{}", stderr(&yes));
    assert_eq!(stdout(&yes), "true\n");
    // The pattern from a file (@FILE), not matching: still exit 0.
    let dir = tempfile::tempdir().unwrap();
    let pattern_file = dir.path().join("pattern.json");
    std::fs::write(
        &pattern_file,
        r#"{"detail":{"service":[{"anything-but":{"prefix":["pest","lawn"]}}]}}"#,
    )
    .unwrap();
    let no = upsell(&[
        "events",
        "test-pattern",
        "--pattern",
        &format!("@{}", pattern_file.display()),
        "--event",
        &event,
    ]);
    assert!(no.status.success(), "{}", stderr(&no));
    assert_eq!(stdout(&no), "false\n");
    // An invalid pattern: non-zero exit with EventBridge's reason.
    let bad = upsell(&[
        "events",
        "test-pattern",
        "--pattern",
        r#"{"source":[{"wildcard":"com.**"}]}"#,
        "--event",
        &event,
    ]);
    assert!(!bad.status.success());
    assert!(stdout(&bad).is_empty());
    let err = stderr(&bad);
    assert!(
        err.contains(
            "Event pattern is not valid. Reason: Consecutive wildcard characters at pos 5"
        ),
        "{err}"
    );
}
