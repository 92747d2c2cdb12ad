//! Fuzzing the ASL parser with proptest (bounded case counts; raise them with
//! `PROPTEST_CASES`): any JSON, any text and the project's own definitions with one node
//! replaced are parsed or refused with problems, never a panic; oversized definitions get a
//! clear error.

use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;
use upsell_asl::MAX_DEFINITION_BYTES;
use upsell_asl::{ParseOptions, parse, parse_str};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "StartAt",
            "States",
            "Type",
            "Next",
            "End",
            "Resource",
            "Parameters",
            "Arguments",
            "Output",
            "Assign",
            "QueryLanguage",
            "Retry",
            "Catch",
            "ErrorEquals",
            "Choices",
            "Default",
            "Variable",
            "Condition",
            "Branches",
            "ItemProcessor",
            "ProcessorConfig",
            "Iterator",
            "ItemsPath",
            "Items",
            "MaxConcurrency",
            "Seconds",
            "Timestamp",
            "TimeoutSeconds",
            "ResultPath",
            "InputPath",
            "OutputPath",
            "ResultSelector",
            "Cause",
            "Error",
            "Task",
            "Pass",
            "Choice",
            "Wait",
            "Succeed",
            "Fail",
            "Parallel",
            "Map",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z.$]{1,12}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "Pass",
            "Task",
            "Choice",
            "Wait",
            "Succeed",
            "Fail",
            "Parallel",
            "Map",
            "JSONata",
            "JSONPath",
            "$.a",
            "{% $states.input %}",
            "{% $x + %}",
            "States.ALL",
            "States.Format('{}', $.a)",
            "arn:aws:states:::lambda:invoke",
            "A",
            "B",
        ])
        .prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn definitions() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../state-machines");
    let mut out: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".asl.json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    out.sort_by_key(|v| v.to_string());
    assert!(!out.is_empty());
    out
}

/// Every JSON pointer of `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(c, p, out);
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_json_is_parsed_or_refused(v in json_value()) {
        let _ = parse(&v, ParseOptions::default());
    }

    #[test]
    fn any_text_is_parsed_or_refused(t in ".{0,256}") {
        let _ = parse_str(&t, ParseOptions::default());
    }

    #[test]
    fn a_real_definition_with_one_node_replaced_is_parsed_or_refused(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        v in json_value(),
    ) {
        let defs = definitions();
        let mut d = which.get(&defs).clone();
        let mut ps = Vec::new();
        pointers(&d, String::new(), &mut ps);
        let p = at.get(&ps).clone();
        if let Some(node) = d.pointer_mut(&p) {
            *node = v;
        }
        let _ = parse(&d, ParseOptions::default());
    }
}

#[test]
fn oversized_definitions_get_a_clear_error() {
    let big = format!(
        r#"{{"Comment": "{}", "StartAt": "A", "States": {{"A": {{"Type": "Succeed"}}}}}}"#,
        "x".repeat(MAX_DEFINITION_BYTES)
    );
    let err = parse_str(&big, ParseOptions::default()).unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
    let small = r#"{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}"#;
    assert!(parse_str(small, ParseOptions::default()).is_ok());
}
