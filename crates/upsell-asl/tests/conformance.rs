//! Runs every case of the recorded Step Functions conformance suite (read in place from
//! `UPSELL_ASL_CONFORMANCE`, default `<workspace>/../shared/asl-conformance`), prints
//! passed/failed/skipped per category, and checks the outcome against the committed
//! `conformance-known-failures.txt` both ways: an unlisted failure fails the test, and so
//! does a listed case that now passes. A missing suite skips the test, or fails it when
//! `UPSELL_REQUIRE_CONFORMANCE` is set (CI). `UPSELL_ASL_WRITE_KNOWN_FAILURES=1` rewrites the file.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use upsell_asl::{
    Engine, LambdaError, LambdaInvoker, MachineType, Outcome, ParseOptions, Resources,
    StartOptions, TestStateRequest, VirtualClock, parse_str, run_test_state,
};

const KNOWN: &str = "tests/conformance-known-failures.txt";

fn root() -> PathBuf {
    match std::env::var_os("UPSELL_ASL_CONFORMANCE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/asl-conformance"),
    }
}

/// The Lambda functions the README describes.
struct Mocks;

#[async_trait::async_trait]
impl LambdaInvoker for Mocks {
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, LambdaError> {
        let name = function.rsplit(':').next().unwrap_or(function);
        match name {
            "id_function" => Ok(payload),
            "echo_function" => Ok(json!({"Return": "HelloWorld"})),
            "raise_exception" => Err(LambdaError::function(
                "Exception",
                "Some exception was raised.",
            )),
            "raise_custom_exception" => Err(LambdaError::function("CustomException", "")),
            "return_bytes_str" => Ok(json!("HelloWorld!")),
            "large_output_string" => Ok(Value::String("a".repeat(257 * 1024))),
            "wait_60_seconds" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(payload)
            }
            _ => {
                let arn = if function.starts_with("arn:") {
                    function.to_string()
                } else {
                    format!("arn:aws:lambda:us-east-1:111111111111:function:{function}")
                };
                Err(LambdaError::Service {
                    error: "Lambda.ResourceNotFoundException".into(),
                    cause: format!(
                        "Function not found: {arn}:$LATEST (Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException; Request ID: <request_id>; Proxy: null)"
                    ),
                })
            }
        }
    }
}

enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

/// Equality ignoring key order, numbers compared by value, with `placeholders` in expected
/// strings matching any text (non-exact cases only).
fn matches(expected: &Value, actual: &Value, ph: &[String]) -> bool {
    // The recordings replace volatile response headers by their names (LocalStack's snapshot
    // transformers); those match any value.
    if let Value::String(e) = expected
        && ["date", "x-amzn-RequestId", "X-Amzn-Trace-Id", "RequestId"].contains(&e.as_str())
        && !actual.is_null()
        && expected != actual
        && !matches!(actual, Value::String(a) if a == "date")
    {
        return true;
    }
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| matches(x, y, ph))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| matches(v, w, ph)))
        }
        (Value::String(a), Value::String(b)) => {
            if a == b || str_matches(a, b, ph) {
                return true;
            }
            // JSON documents embedded in strings (causes) compare as JSON.
            match (
                serde_json::from_str::<Value>(a),
                serde_json::from_str::<Value>(b),
            ) {
                (Ok(x @ Value::Object(_)), Ok(y)) => matches(&x, &y, ph),
                _ => false,
            }
        }
        (Value::String(a), other) if !ph.is_empty() => {
            ph.iter().any(|p| p == a) && !other.is_null()
        }
        _ => expected == actual,
    }
}

fn str_matches(expected: &str, actual: &str, ph: &[String]) -> bool {
    if ph.is_empty() {
        return false;
    }
    // Split the expected string on placeholders; the pieces must appear in order.
    let mut pieces: Vec<String> = vec![expected.to_string()];
    for p in ph {
        pieces = pieces
            .iter()
            .flat_map(|s| s.split(p.as_str()).map(str::to_string).collect::<Vec<_>>())
            .collect();
    }
    if pieces.len() == 1 {
        return false;
    }
    let Some(mut rest) = actual.strip_prefix(pieces[0].as_str()) else {
        return false;
    };
    for (i, p) in pieces[1..].iter().enumerate() {
        if i + 2 == pieces.len() {
            return rest.ends_with(p.as_str());
        }
        match rest.find(p.as_str()) {
            Some(pos) => rest = &rest[pos + p.len()..],
            None => return false,
        }
    }
    true
}

fn placeholders(meta: &Value) -> Vec<String> {
    let mut ph: Vec<String> = meta
        .get("placeholders")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !ph.is_empty() {
        ph.extend(
            [
                "<region>",
                "<partition>",
                "<request_id>",
                "date",
                "<timestamp>",
            ]
            .map(String::from),
        );
        ph.sort_by_key(|p| std::cmp::Reverse(p.len()));
    }
    ph
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 160 {
        format!("{}...", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

fn run_execution(dir: &Path, meta: &Value) -> Verdict {
    let def = std::fs::read_to_string(dir.join("definition.json")).unwrap_or_default();
    let input = read_json(&dir.join("input.json")).unwrap_or(json!({}));
    let Some(expected) = read_json(&dir.join("expected.json")) else {
        return Verdict::Skip("no expected.json".into());
    };
    let sm = match parse_str(&def, ParseOptions::default()) {
        Ok(sm) => sm,
        Err(e) => return Verdict::Fail(format!("definition rejected: {e}")),
    };
    let rt = upsell_asl::virtual_runtime().expect("runtime");
    let outcome = rt.block_on(async {
        let clock = Arc::new(VirtualClock::new(chrono::Utc::now()));
        let mut resources = Resources::new();
        resources.register_lambda(Arc::new(Mocks));
        let engine = Engine::builder().resources(resources).clock(clock).build();
        let opts = StartOptions {
            name: Some("exec".into()),
            state_machine_name: Some("sm".into()),
            role_arn: None,
        };
        engine.execute(&sm, input, opts).await.outcome
    });
    let ph = placeholders(meta);
    let actual = outcome.to_json();
    let status = expected.get("status").and_then(Value::as_str).unwrap_or("");
    match (&outcome, status) {
        (Outcome::Succeeded(out), "SUCCEEDED") => {
            let exp = expected.get("output").cloned().unwrap_or(Value::Null);
            if matches(&exp, out, &ph) {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("output {} != expected {}", short(out), short(&exp)))
            }
        }
        (Outcome::Failed(f), "FAILED") => {
            let ee = expected.get("error").cloned().unwrap_or(Value::Null);
            let ec = expected.get("cause").cloned().unwrap_or(Value::Null);
            let ae = if f.error.is_empty() {
                Value::Null
            } else {
                Value::String(f.error.clone())
            };
            let ac = f.cause.clone().map(Value::String).unwrap_or(Value::Null);
            let cause_ok = match &ec {
                Value::Object(_) => f
                    .cause
                    .as_deref()
                    .and_then(|c| serde_json::from_str::<Value>(c).ok())
                    .is_some_and(|c| matches(&ec, &c, &ph)),
                _ => matches(&ec, &ac, &ph),
            };
            if matches(&ee, &ae, &ph) && cause_ok {
                Verdict::Pass
            } else {
                Verdict::Fail(format!(
                    "error {} / cause {} != expected {} / {}",
                    short(&ae),
                    short(&ac),
                    short(&ee),
                    short(&ec)
                ))
            }
        }
        _ => Verdict::Fail(format!(
            "got {} but expected status {status}",
            short(&actual)
        )),
    }
}

fn machine_type(meta: &Value) -> MachineType {
    let t = meta
        .pointer("/validate_args/type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let node = meta
        .pointer("/source/nodeid")
        .and_then(Value::as_str)
        .unwrap_or("");
    if t == "EXPRESS" || node.contains("api_express") {
        MachineType::Express
    } else {
        MachineType::Standard
    }
}

/// Extracts the message from LocalStack's `Error=ValueError Args=['...']` wrapping.
fn unwrap_value_error(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("Error=ValueError Args=[") else {
        return msg.to_string();
    };
    let mut chars = rest.chars();
    let Some(q) = chars.next() else {
        return msg.to_string();
    };
    let mut out = String::new();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('x') => {
                    let h: String = chars.by_ref().take(2).collect();
                    out.push(
                        char::from_u32(u32::from_str_radix(&h, 16).unwrap_or(0)).unwrap_or('?'),
                    );
                }
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => break,
            }
        } else if c == q {
            break;
        } else {
            out.push(c);
        }
    }
    // The engine reports the character the way Python's repr shows it.
    out.chars()
        .map(|c| match c {
            '\t' => "\\t".to_string(),
            '\r' => "\\r".to_string(),
            c if (c as u32) < 0x20 || (0x7f..=0x9f).contains(&(c as u32)) => {
                format!("\\x{:02x}", c as u32)
            }
            c => c.to_string(),
        })
        .collect()
}

/// The TestState API request a case describes: its definition (as text, as AWS takes it),
/// input and `meta.test_state_args`. `role` is added for test_state/ cases: the recordings were
/// made with a role ARN, which the suite does not keep (invalid/ cases use their args as they are).
fn test_state_request(dir: &Path, meta: &Value, role: bool) -> Value {
    let mut req = meta
        .get("test_state_args")
        .cloned()
        .unwrap_or_else(|| json!({}));
    req["definition"] =
        Value::String(std::fs::read_to_string(dir.join("definition.json")).unwrap_or_default());
    if let Some(input) = read_json(&dir.join("input.json")) {
        req["input"] = Value::String(input.to_string());
    }
    if role && req.get("roleArn").is_none() {
        req["roleArn"] = json!("arn:aws:iam::111111111111:role/TestStateRole");
    }
    req
}

fn run_test_state_api(req: &Value) -> Result<Value, upsell_asl::TestStateError> {
    let request = TestStateRequest::from_api_json(req)?;
    let rt = upsell_asl::virtual_runtime().expect("runtime");
    rt.block_on(async {
        let clock = Arc::new(VirtualClock::new(chrono::Utc::now()));
        let mut resources = Resources::new();
        resources.register_lambda(Arc::new(Mocks));
        let engine = Engine::builder().resources(resources).clock(clock).build();
        run_test_state(&engine, request).await.map(|r| r.to_json())
    })
}

/// TestState returns `output` and inspection values as JSON text; the recorder decoded only
/// objects, so an expected string may be the JSON text of the actual value.
fn ts_matches(expected: &Value, actual: &Value, ph: &[String]) -> bool {
    if matches(expected, actual, ph) {
        return true;
    }
    match expected {
        Value::String(s) => {
            serde_json::from_str::<Value>(s).is_ok_and(|parsed| matches(&parsed, actual, ph))
        }
        _ => false,
    }
}

fn run_test_state_case(dir: &Path, meta: &Value) -> Verdict {
    let Some(expected) = read_json(&dir.join("expected.json")) else {
        return Verdict::Skip("no expected.json".into());
    };
    let ph = placeholders(meta);
    let actual = match run_test_state_api(&test_state_request(dir, meta, true)) {
        Ok(a) => a,
        Err(e) => return Verdict::Fail(format!("request rejected: {e}")),
    };
    for key in ["status", "output", "error", "cause", "nextState"] {
        let (e, a) = (expected.get(key), actual.get(key));
        let ok = match (e, a) {
            (None, None) => true,
            (Some(e), Some(a)) => ts_matches(e, a, &ph),
            _ => false,
        };
        if !ok {
            return Verdict::Fail(format!(
                "{key}: {} != expected {}",
                a.map(short).unwrap_or("(none)".into()),
                e.map(short).unwrap_or("(none)".into())
            ));
        }
    }
    let empty = Map::new();
    let ei = expected
        .get("inspectionData")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let ai = actual
        .get("inspectionData")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let keys: BTreeSet<&String> = ei.keys().chain(ai.keys()).collect();
    for k in keys {
        let ok = match (ei.get(k), ai.get(k)) {
            (Some(e), Some(a)) => ts_matches(e, a, &ph),
            _ => false,
        };
        if !ok {
            return Verdict::Fail(format!(
                "inspectionData.{k}: {} != expected {}",
                ai.get(k).map(short).unwrap_or("(none)".into()),
                ei.get(k).map(short).unwrap_or("(none)".into())
            ));
        }
    }
    Verdict::Pass
}

fn run_invalid(dir: &Path, meta: &Value) -> Verdict {
    if meta.get("api").and_then(Value::as_str) == Some("test_state") {
        let expected = read_json(&dir.join("expected.json")).unwrap_or(Value::Null);
        let kind = expected["create_error"].as_str().unwrap_or("");
        let msg = expected["message"].as_str().unwrap_or("");
        return match run_test_state_api(&test_state_request(dir, meta, false)) {
            Ok(r) => Verdict::Fail(format!("accepted ({}); expected {kind}: {msg}", short(&r))),
            Err(e) if e.kind() == kind && e.message() == msg => Verdict::Pass,
            Err(e) => Verdict::Fail(format!("rejected with {e}; expected {kind}: {msg}")),
        };
    }
    let def = std::fs::read_to_string(dir.join("definition.json")).unwrap_or_default();
    let expected = read_json(&dir.join("expected.json")).unwrap_or(Value::Null);
    let msg = expected
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("");
    match parse_str(
        &def,
        ParseOptions {
            machine_type: machine_type(meta),
        },
    ) {
        Ok(_) => Verdict::Fail(format!("accepted; expected {msg}")),
        Err(e) => {
            let want = unwrap_value_error(msg);
            let full = e.to_string();
            if e.problems.iter().any(|p| {
                want.contains(&p.message) && (want.contains(&p.location) || !want.contains(" at /"))
            }) || full == want
            {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("rejected with '{full}', expected '{msg}'"))
            }
        }
    }
}

fn run_validate(dir: &Path, meta: &Value) -> Verdict {
    let def = std::fs::read_to_string(dir.join("definition.json")).unwrap_or_default();
    let expected = read_json(&dir.join("expected.json")).unwrap_or(Value::Null);
    let want_ok = expected.get("result").and_then(Value::as_str) == Some("OK");
    let text = match serde_json::from_str::<Value>(&def) {
        Ok(Value::String(s)) => s,
        _ => def,
    };
    let got = parse_str(
        &text,
        ParseOptions {
            machine_type: machine_type(meta),
        },
    );
    match (got, want_ok) {
        (Ok(_), true) => Verdict::Pass,
        (Ok(_), false) => Verdict::Fail("valid, expected FAIL".into()),
        (Err(e), true) => Verdict::Fail(format!("rejected: {e}")),
        (Err(e), false) => {
            let want: Vec<(String, String)> = expected["diagnostics"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|d| {
                            (
                                d["location"].as_str().unwrap_or("").to_string(),
                                d["message"].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let got: Vec<(String, String)> = e
                .problems
                .iter()
                .map(|p| (p.location.clone(), p.message.clone()))
                .collect();
            let ok = want.len() == got.len()
                && want
                    .iter()
                    .zip(&got)
                    .all(|((wl, wm), (gl, gm))| wm == gm && (wl.is_empty() || wl == gl));
            if ok {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("diagnostics {got:?} != {want:?}"))
            }
        }
    }
}

#[test]
fn conformance() {
    let root = root();
    if !root.join("index.json").exists() {
        assert!(
            std::env::var_os("UPSELL_REQUIRE_CONFORMANCE").is_none(),
            "UPSELL_REQUIRE_CONFORMANCE is set but there is no suite at {} (set UPSELL_ASL_CONFORMANCE)",
            root.display()
        );
        println!(
            "conformance: SKIPPED: no suite at {} (set UPSELL_ASL_CONFORMANCE)",
            root.display()
        );
        return;
    }
    let mut results: BTreeMap<String, (String, bool, Verdict)> = BTreeMap::new();
    let mut cats: Vec<_> = std::fs::read_dir(&root)
        .expect("suite")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    cats.sort();
    for cat in cats {
        let cname = cat.file_name().unwrap().to_string_lossy().to_string();
        let mut cases: Vec<_> = std::fs::read_dir(&cat)
            .expect("category")
            .flatten()
            .map(|e| e.path())
            .collect();
        cases.sort();
        for dir in cases {
            let id = format!("{cname}/{}", dir.file_name().unwrap().to_string_lossy());
            let meta = read_json(&dir.join("meta.json")).unwrap_or(json!({}));
            let exact = meta.get("exact").and_then(Value::as_bool).unwrap_or(false);
            let v = match cname.as_str() {
                "invalid" => run_invalid(&dir, &meta),
                "validate" => run_validate(&dir, &meta),
                "test_state" => run_test_state_case(&dir, &meta),
                _ => run_execution(&dir, &meta),
            };
            results.insert(id, (cname.clone(), exact, v));
        }
    }
    // Per-category summary.
    let mut summary: BTreeMap<(String, bool), [usize; 3]> = BTreeMap::new();
    for (cat, exact, v) in results.values() {
        let e = summary.entry((cat.clone(), *exact)).or_default();
        match v {
            Verdict::Pass => e[0] += 1,
            Verdict::Fail(_) => e[1] += 1,
            Verdict::Skip(_) => e[2] += 1,
        }
    }
    println!(
        "{:<22} {:<6} {:>6} {:>6} {:>7}",
        "category", "exact", "passed", "failed", "skipped"
    );
    let mut target = [0usize; 2];
    for ((cat, exact), [p, f, s]) in &summary {
        println!("{cat:<22} {:<6} {p:>6} {f:>6} {s:>7}", exact.to_string());
        if *exact && cat != "test_state" && cat != "validate" {
            target[0] += p;
            target[1] += p + f + s;
        }
    }
    println!(
        "exact execution + invalid-definition cases: {}/{} passed ({:.1}%)",
        target[0],
        target[1],
        100.0 * target[0] as f64 / target[1].max(1) as f64
    );
    // Known failures, both ways.
    let not_passing: BTreeMap<&String, String> = results
        .iter()
        .filter_map(|(id, (_, _, v))| match v {
            Verdict::Pass => None,
            Verdict::Fail(r) => Some((id, format!("FAIL {}", r.replace('\n', " ")))),
            Verdict::Skip(r) => Some((id, format!("SKIP {r}"))),
        })
        .collect();
    let known_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(KNOWN);
    if std::env::var_os("UPSELL_ASL_WRITE_KNOWN_FAILURES").is_some() {
        let mut text = String::from(
            "# Conformance cases that do not pass, one per line: <case> | <reason>.\n# Checked both ways by tests/conformance.rs.\n",
        );
        for (id, r) in &not_passing {
            text.push_str(&format!("{id} | {r}\n"));
        }
        std::fs::write(&known_path, text).expect("write known failures");
    }
    let known: BTreeSet<String> = std::fs::read_to_string(&known_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(" | ").next().unwrap_or("").trim().to_string())
        .collect();
    let new_failures: Vec<_> = not_passing
        .iter()
        .filter(|(id, _)| !known.contains(id.as_str()))
        .collect();
    let now_passing: Vec<_> = known
        .iter()
        .filter(|id| results.contains_key(*id) && !not_passing.contains_key(id))
        .collect();
    for (id, r) in &new_failures {
        println!("NEW FAILURE {id}: {r}");
    }
    for id in &now_passing {
        println!("NOW PASSING (remove from {KNOWN}): {id}");
    }
    assert!(
        new_failures.is_empty() && now_passing.is_empty(),
        "{} new failures, {} listed cases now pass",
        new_failures.len(),
        now_passing.len()
    );
}
