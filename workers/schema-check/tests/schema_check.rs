//! Data-driven tests of the schema-check worker.

use schema_check::{Deps, Input, SchemaInvalidDetails, handle};
use serde_json::{Value, json};

fn service_event() -> Value {
    json!({
        "version": "0", "id": "evt-1", "source": "com.homeservices.field",
        "detail-type": "ServiceCompleted", "time": "2025-05-01T10:00:00+02:00",
        "detail": {"customerId": "cust-1", "service": "lawn-care", "serviceDate": "2025-05-01",
                   "priceCents": 6500, "technicianNotes": "  Edged beds  ", "rating": 5}
    })
}

#[tokio::test]
async fn valid_events_are_normalised() {
    let out = handle(
        Input {
            event: service_event(),
        },
        &Deps,
    )
    .await
    .unwrap();
    assert_eq!(out.event_id, "evt-1");
    assert_eq!(out.customer_id, "cust-1");
    assert_eq!(out.detail_type, "ServiceCompleted");
    assert_eq!(out.event["time"], "2025-05-01T08:00:00Z");
    assert_eq!(out.event["detail"]["technicianNotes"], "Edged beds");
}

#[tokio::test]
async fn invalid_events_report_every_problem_as_json() {
    // (what to break, expected reason, JSON pointers that must be reported)
    let cases: Vec<(Value, &str, Vec<&str>)> = vec![
        (
            {
                let mut e = service_event();
                e["detail"]["rating"] = json!(9);
                e["detail"]["priceCents"] = json!("a lot");
                e
            },
            "schema-violation",
            vec!["/detail/rating", "/detail/priceCents"],
        ),
        (
            {
                let mut e = service_event();
                e["detail-type"] = json!("InvoicePaid");
                e
            },
            "unknown-detail-type",
            vec!["/detail-type"],
        ),
        (json!("not an object"), "schema-violation", vec![""]),
    ];
    for (event, reason, paths) in cases {
        let err = handle(
            Input {
                event: event.clone(),
            },
            &Deps,
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type(), "SchemaInvalid");
        let d: SchemaInvalidDetails = serde_json::from_str(&err.to_string())
            .unwrap_or_else(|e| panic!("message is not JSON ({e}): {err}"));
        assert_eq!(serde_json::to_value(d.reason).unwrap(), reason, "{event}");
        for p in paths {
            assert!(
                d.problems.iter().any(|x| x.path == p),
                "{p} missing in {:?}",
                d.problems
            );
        }
    }
}
