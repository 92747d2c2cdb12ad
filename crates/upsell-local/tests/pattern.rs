//! EventBridge pattern matching: the table in tests/data/pattern-cases.json.

use serde_json::Value;
use upsell_local::EventPattern;

fn cases() -> Value {
    serde_json::from_str(include_str!("data/pattern-cases.json")).expect("pattern-cases.json")
}

#[test]
fn patterns_match_as_eventbridge_does() {
    let data = cases();
    let events = &data["events"];
    let mut failures = Vec::new();
    let cases = data["cases"].as_array().expect("cases");
    assert!(cases.len() > 80, "the table holds the cases");
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let pattern = EventPattern::parse(&case["pattern"])
            .unwrap_or_else(|e| panic!("case {name:?}: pattern rejected: {e}"));
        let event = &events[case["event"].as_str().expect("event name")];
        assert!(event.is_object(), "case {name:?}: unknown event");
        let expected = case["matches"].as_bool().expect("matches");
        if pattern.matches(event) != expected {
            failures.push(format!("{name}: expected matches = {expected}"));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

#[test]
fn malformed_patterns_are_rejected_with_a_clear_error() {
    let data = cases();
    let mut failures = Vec::new();
    for case in data["invalid"].as_array().expect("invalid") {
        let expected = case["error"].as_str().expect("error");
        match EventPattern::parse(&case["pattern"]) {
            Ok(_) => failures.push(format!("{}: accepted", case["pattern"])),
            Err(e) if !e.to_string().contains(expected) => failures.push(format!(
                "{}: error {e:?} lacks {expected:?}",
                case["pattern"]
            )),
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

#[test]
fn patterns_parse_from_text_and_report_bad_json() {
    let p = EventPattern::from_json_str(r#"{"source":[{"prefix":"com."}]}"#).expect("valid");
    assert!(p.matches(&serde_json::json!({"source": "com.x"})));
    let e = EventPattern::from_json_str("{source:").expect_err("bad json");
    assert!(e.to_string().contains("not valid JSON"), "{e}");
}

/// The parity table (tests/data/pattern-parity.json): each behaviour where the matcher used to
/// disagree with EventBridge, with the AWS page it comes from.
fn parity() -> Value {
    serde_json::from_str(include_str!("data/pattern-parity.json")).expect("pattern-parity.json")
}

#[test]
fn parity_cases_match_as_eventbridge_does() {
    let data = parity();
    let mut failures = Vec::new();
    let mut gaps = std::collections::BTreeSet::new();
    for case in data["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        assert!(case["source"].is_string(), "{name}: cite the source");
        gaps.insert(case["gap"].as_str().expect("gap").to_owned());
        let event = &data["events"][case["event"].as_str().expect("event")];
        assert!(event.is_object(), "{name}: unknown event");
        match EventPattern::parse(&case["pattern"]) {
            Err(e) => failures.push(format!("{name}: pattern rejected: {e}")),
            Ok(p) if p.matches(event) != case["matches"].as_bool().expect("matches") => {
                failures.push(format!("{name}: expected matches = {}", case["matches"]))
            }
            Ok(_) => {}
        }
    }
    for case in data["accepted"].as_array().expect("accepted") {
        if let Err(e) = EventPattern::parse(&case["pattern"]) {
            failures.push(format!("{}: rejected: {e}", case["name"]));
        }
    }
    for case in data["invalid"].as_array().expect("invalid") {
        gaps.insert(case["gap"].as_str().expect("gap").to_owned());
        let reason = case["reason"].as_str().expect("reason");
        match EventPattern::parse(&case["pattern"]) {
            Ok(_) => failures.push(format!("{}: accepted", case["pattern"])),
            Err(e) if !e.to_string().contains(reason) => {
                failures.push(format!("{}: error {e} lacks {reason:?}", case["pattern"]))
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
    // Every gap named in issue #19 has cases.
    let expected = [
        "anything-but-lists",
        "dotted-keys",
        "null",
        "numbers-with-string-operators",
        "wildcard-complexity",
    ];
    assert_eq!(gaps.into_iter().collect::<Vec<_>>(), expected);
}
