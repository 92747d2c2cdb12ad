//! Fuzzing with proptest (bounded case counts, so `cargo test` stays quick; raise them with
//! `PROPTEST_CASES`): event parsing, validation and normalisation, the message guards and
//! redaction never panic on any input, and oversized input gets a clear error.

use proptest::prelude::*;
use serde_json::{Value, json};
use upsell_core::guard::{self, GuardPolicy, MAX_GUARDED_BYTES};
use upsell_core::validate::{MAX_EVENT_BYTES, check_event, normalize, validator};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, small, with keys that are sometimes the event's own.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "id",
            "source",
            "detail-type",
            "time",
            "detail",
            "customerId",
            "service",
            "serviceDate",
            "priceCents",
            "technicianNotes",
            "rating",
            "firstName",
            "address",
            "satisfaction",
            "freeText",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z-]{1,12}",
    ]
}

fn valid_event() -> Value {
    json!({
        "version": "0", "id": "fuzz-1", "source": "com.greenleaf.field-service",
        "detail-type": "ServiceCompleted", "time": "2025-06-10T15:00:00Z",
        "account": "123456789012", "region": "us-east-1", "resources": [],
        "detail": {"customerId": "cust-1", "service": "lawn-care",
                   "serviceDate": "2025-06-10", "priceCents": 6500,
                   "technicianNotes": "Mowed.", "rating": 5}
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_are_an_event_or_a_rejection(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(e) = check_event(&raw) {
            let _ = normalize(e);
        }
    }

    #[test]
    fn any_json_is_an_event_or_a_rejection(v in json_value()) {
        let _ = validator().check_value(&v);
        let _ = validator().check_str(&v.to_string());
    }

    #[test]
    fn a_valid_event_with_one_field_replaced_never_panics(
        field in prop::sample::select(vec!["id", "source", "detail-type", "time", "detail"]),
        inner in key(),
        v in json_value(),
    ) {
        let mut e = valid_event();
        e[field] = v.clone();
        if let Ok(ev) = validator().check_value(&e) {
            let _ = normalize(ev);
        }
        let mut e = valid_event();
        e["detail"][inner.as_str()] = v;
        if let Ok(ev) = validator().check_value(&e) {
            let _ = normalize(ev);
        }
    }

    #[test]
    fn the_guards_read_any_text(text in ".{0,400}", price in 0u64..1_000_000, discount in 0u8..=100) {
        let policy = GuardPolicy {
            trusted_text: vec!["Gutter cleaning", "Reply STOP to opt out."],
            company_contacts: &[],
            price_cents: price,
            discount_percent: discount,
        };
        for f in guard::check(&text, &policy) {
            prop_assert!(guard::CODES.contains(&f.code));
        }
        let _ = guard::redact(&text);
    }
}

#[test]
fn oversized_input_gets_a_clear_error() {
    let mut e = valid_event();
    e["detail"]["technicianNotes"] = Value::from("x".repeat(MAX_EVENT_BYTES));
    let err = check_event(e.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.reason.as_str(), "oversized");
    assert!(err.to_string().contains("bytes"), "{err}");
    let f = guard::check(&"a".repeat(MAX_GUARDED_BYTES + 1), &GuardPolicy::default());
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("at most"), "{f:?}");
}
