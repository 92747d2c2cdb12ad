//! Fuzzing EventBridge patterns with proptest (bounded case counts; raise them with
//! `PROPTEST_CASES`): any JSON is a pattern or a `PatternError`, and a pattern matches or not
//! against any event, never a panic.

use proptest::prelude::*;
use serde_json::Value;
use upsell_local::EventPattern;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "source",
            "detail-type",
            "detail",
            "id",
            "prefix",
            "suffix",
            "anything-but",
            "numeric",
            "exists",
            "equals-ignore-case",
            "wildcard",
            "cidr",
            "$or",
            "a",
            "b",
        ])
        .prop_map(str::to_owned),
        "[a-z$-]{1,10}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "<",
            "<=",
            "=",
            ">",
            ">=",
            "*",
            "a*b*c",
            "**",
            "10.0.0.0/24",
            "x",
            "",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_json_is_a_pattern_or_an_error(p in json_value(), events in prop::collection::vec(json_value(), 0..4)) {
        if let Ok(pattern) = EventPattern::parse(&p) {
            for e in &events {
                let _ = pattern.matches(e);
            }
            let _ = pattern.matches(&p);
        }
    }
}
