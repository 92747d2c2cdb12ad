//! Boundary tests of the schema check and normalisation: one case per kind of bad input, each
//! checking that every problem is reported with its path.

use serde_json::{Value, json};
use upsell_core::events::CustomerEvent;
use upsell_core::validate::{MAX_EVENT_BYTES, RejectReason, check_event, validator};

fn profile() -> Value {
    json!({
        "version": "0", "id": " evt-100 ", "source": "com.greenleaf.crm",
        "detail-type": "CustomerProfileUpdated", "account": "123456789012",
        "time": "2025-03-04T09:15:00-05:00", "region": "us-east-1",
        "detail": {
            "customerId": "cust-000001", "firstName": "  Maria ", "lastName": "Garcia",
            "email": " Maria.Garcia@GMAIL.com ", "phone": "(614) 555-0134",
            "address": {"street": "12 Oak St", "city": "Columbus", "state": "oh",
                        "postalCode": "43215", "region": "midwest"},
            "property": {"homeType": "single-family", "lotSizeSqft": 8500, "hasPool": false,
                         "pets": ["dog"], "yearBuilt": 1987}
        }
    })
}

fn service() -> Value {
    json!({
        "id": "evt-200", "source": "com.greenleaf.field-service", "detail-type": "ServiceCompleted",
        "time": "2025-05-01T14:00:00Z",
        "detail": {"customerId": "cust-000001", "service": "lawn-care", "serviceDate": "2025-05-01",
                   "priceCents": 6500, "technicianNotes": "Edged beds. ", "rating": 4}
    })
}

fn survey() -> Value {
    json!({
        "id": "evt-300", "source": "com.greenleaf.surveys", "detail-type": "SurveySubmitted",
        "time": "2025-05-03T18:00:00Z",
        "detail": {"customerId": "cust-000001", "satisfaction": 9, "freeText": "Great crew",
                   "surveyDate": "2025-05-03", "service": "lawn-care"}
    })
}

fn check(v: &Value) -> Result<CustomerEvent, upsell_core::validate::Rejection> {
    check_event(v.to_string().as_bytes())
}

fn paths(v: &Value) -> (RejectReason, Vec<String>) {
    let rej = check(v).expect_err("should be rejected");
    assert!(!rej.problems.is_empty());
    (
        rej.reason,
        rej.problems.iter().map(|p| p.path.clone()).collect(),
    )
}

#[test]
fn good_events_pass_and_are_normalised() {
    let ev = check(&profile()).unwrap();
    let v = serde_json::to_value(&ev).unwrap();
    assert_eq!(v["id"], "evt-100");
    assert_eq!(v["time"], "2025-03-04T14:15:00Z");
    assert_eq!(v["detail"]["firstName"], "Maria");
    assert_eq!(v["detail"]["email"], "maria.garcia@gmail.com");
    assert_eq!(v["detail"]["phone"], "+16145550134");
    assert_eq!(v["detail"]["address"]["state"], "OH");
    let ev = check(&service()).unwrap();
    assert_eq!(
        serde_json::to_value(&ev).unwrap()["detail"]["technicianNotes"],
        "Edged beds."
    );
    check(&survey()).unwrap();
}

#[test]
fn every_missing_field_is_reported() {
    let mut v = service();
    let d = v["detail"].as_object_mut().unwrap();
    d.remove("customerId");
    d.remove("serviceDate");
    v.as_object_mut().unwrap().remove("source");
    let (reason, mut p) = paths(&v);
    p.sort();
    assert_eq!(reason, RejectReason::SchemaViolation);
    assert_eq!(p, ["/detail/customerId", "/detail/serviceDate", "/source"]);
}

#[test]
fn wrong_types_and_ranges_are_reported_together() {
    let mut v = service();
    v["detail"]["priceCents"] = json!("$65.00");
    v["detail"]["rating"] = json!(9);
    v["detail"]["service"] = json!("roof-repair");
    let rej = check(&v).unwrap_err();
    let by_path = |p: &str| {
        rej.problems
            .iter()
            .find(|x| x.path == p)
            .unwrap_or_else(|| panic!("no problem at {p}: {rej:?}"))
            .message
            .clone()
    };
    assert!(by_path("/detail/priceCents").contains("integer"));
    assert!(by_path("/detail/rating").contains("maximum of 5"));
    assert!(by_path("/detail/service").contains("\"lawn-care\""));
}

#[test]
fn unknown_detail_type_lists_known_ones_and_still_checks_the_envelope() {
    let mut v = service();
    v["detail-type"] = json!("InvoicePaid");
    v["time"] = json!("not a time");
    let rej = check(&v).unwrap_err();
    assert_eq!(rej.reason, RejectReason::UnknownDetailType);
    assert_eq!(rej.problems[0].path, "/detail-type");
    assert!(
        rej.problems[0]
            .message
            .contains("ServiceCompleted, CustomerProfileUpdated, SurveySubmitted")
    );
    assert!(rej.problems.iter().any(|p| p.path == "/time"), "{rej:?}");
    assert_eq!(rej.event_id.as_deref(), Some("evt-200"));
}

#[test]
fn unexpected_detail_fields_are_named() {
    let mut v = survey();
    v["detail"]["satisfation"] = json!(3);
    let (_, p) = paths(&v);
    assert_eq!(p, ["/detail/satisfation"]);
}

#[test]
fn malformed_json_and_non_objects() {
    let rej = check_event(br#"{"id": "x", "source": "#).unwrap_err();
    assert_eq!(rej.reason, RejectReason::MalformedJson);
    assert!(rej.problems[0].message.contains("line 1 column"));
    let rej = check_event(b"[1,2]").unwrap_err();
    assert_eq!(rej.reason, RejectReason::SchemaViolation);
    assert!(rej.problems[0].message.contains("an array"));
    let rej = check_event(&[0xff, 0xfe, b'{']).unwrap_err();
    assert!(rej.problems[0].message.contains("UTF-8"));
}

#[test]
fn oversized_events_are_rejected_not_truncated() {
    let mut v = survey();
    v["detail"]["freeText"] = json!("x".repeat(MAX_EVENT_BYTES));
    let text = v.to_string();
    let rej = check_event(text.as_bytes()).unwrap_err();
    assert_eq!(rej.reason, RejectReason::Oversized);
    assert!(rej.problems[0].message.contains(&text.len().to_string()));
    assert!(rej.problems[0].message.contains("not truncated"));
    assert_eq!(
        validator().check_value(&v).unwrap_err().reason,
        RejectReason::Oversized
    );
    // Exactly at the limit passes the size check (and then fails the schema).
    let at_limit = format!("{{}}{}", " ".repeat(MAX_EVENT_BYTES - 2));
    assert_eq!(at_limit.len(), MAX_EVENT_BYTES);
    let rej = check_event(at_limit.as_bytes()).unwrap_err();
    assert_ne!(rej.reason, RejectReason::Oversized);
}

#[test]
fn normalisation_failures_name_the_field() {
    let mut v = profile();
    v["detail"]["phone"] = json!("555-0134 ext 2");
    v["detail"]["email"] = json!("maria at gmail");
    v["detail"]["address"]["postalCode"] = json!("4321X");
    let rej = check(&v).unwrap_err();
    assert_eq!(rej.reason, RejectReason::InvalidValue);
    let p: Vec<&str> = rej.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        p,
        [
            "/detail/email",
            "/detail/phone",
            "/detail/address/postalCode"
        ]
    );
    assert!(rej.problems[1].message.contains("cannot be made E.164"));
}

#[test]
fn integral_float_cents_become_integers_and_fractions_are_refused() {
    let mut v = service();
    v["detail"]["priceCents"] = json!(6500.0);
    let ev = check(&v).unwrap();
    assert_eq!(
        serde_json::to_value(&ev).unwrap()["detail"]["priceCents"],
        json!(6500)
    );
    v["detail"]["priceCents"] = json!(64.99);
    let (_, p) = paths(&v);
    assert_eq!(p, ["/detail/priceCents"]);
}

#[test]
fn blank_required_strings_are_refused() {
    let mut v = survey();
    v["detail"]["customerId"] = json!("   ");
    let (reason, p) = paths(&v);
    assert_eq!(reason, RejectReason::InvalidValue);
    assert_eq!(p, ["/detail/customerId"]);
}
