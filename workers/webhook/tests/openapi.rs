//! The committed OpenAPI description (schemas/openapi/webhook.json) is the one generated from
//! the code, and it states what the code does: the route, the signature header, every status
//! code `handle` answers with, and the body schemas.

use upsell_models::testing::check_schema_file;
use webhook::{EVENTS_PATH, SIGNATURE_HEADER, STATUS_CODES, openapi};

#[test]
fn committed_openapi_is_up_to_date() {
    check_schema_file("openapi/webhook.json", &openapi()).unwrap();
}

#[test]
fn openapi_states_the_route_header_statuses_and_bodies() {
    let doc = openapi();
    let op = &doc["paths"][EVENTS_PATH]["post"];
    assert_eq!(op["parameters"][0]["name"], SIGNATURE_HEADER);
    assert_eq!(op["parameters"][0]["in"], "header");
    let mut codes: Vec<u16> = op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, STATUS_CODES);
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Accepted"]["properties"]["eventId"]["type"],
        "string"
    );
    assert!(schemas["ErrorBody"]["properties"]["problems"].is_object());
    assert_eq!(
        schemas["Event"]["properties"]["detail-type"]["enum"],
        serde_json::json!(upsell_core::events::KNOWN_DETAIL_TYPES)
    );
    // Every $ref resolves inside the document.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"").skip(1) {
        let target = &r[..r.find('"').unwrap()];
        let pointer = target.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
}
