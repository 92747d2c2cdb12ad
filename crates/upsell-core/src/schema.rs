//! JSON Schema generation: the contracts in `schemas/` are generated from the Rust types here,
//! committed, and checked by a test (`tests/schemas_up_to_date.rs`).
//!
//! Regenerate with `cargo run -p upsell-cli -- schemas`; check with `upsell schemas --check`.
//! To publish a new type's schema, add one line to [`all_schemas`]; an event the system emits
//! goes in [`outbound_event_schemas`] (one line: `outbound::<YourDetail>()`).

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::agent::AgentSpec;
use crate::events::{
    CustomerProfileUpdated, EventDetail, EventEnvelope, KNOWN_DETAIL_TYPES, ServiceCompleted,
    SurveySubmitted,
};
use crate::message::{
    GenerationRequest, GenerationResult, JudgeResult, JudgeVerdict, MessageRecord, QuarantineRecord,
};
use crate::outbound::{OUTBOUND_SOURCE, UpsellMessageApproved};
use crate::registry::TransitionRecord;

/// The command that regenerates the committed schemas.
pub const REGENERATE_COMMAND: &str = "cargo run -p upsell-cli -- schemas";

/// The JSON Schema (draft 2020-12) of `T`.
pub fn schema_of<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// The full EventBridge event schema for detail type `D`, with `detail-type` pinned to
/// `D::DETAIL_TYPE`.
pub fn event_schema<D: EventDetail>() -> Value {
    let mut s = schema_of::<EventEnvelope<D>>();
    s["title"] = json!(D::DETAIL_TYPE);
    s["description"] = json!(format!(
        "EventBridge event with detail-type {} (envelope fields as EventBridge sends them).",
        D::DETAIL_TYPE
    ));
    s["properties"]["detail-type"] = json!({
        "description": "Name of the detail type; selects the schema of `detail`.",
        "const": D::DETAIL_TYPE,
    });
    s
}

/// The envelope schema used when the `detail-type` is unknown: the envelope fields are checked,
/// `detail` must be an object, `detail-type` must be a known one.
pub fn envelope_schema() -> Value {
    let mut s = schema_of::<EventEnvelope<Value>>();
    s["title"] = json!("EventEnvelope");
    s["description"] = json!("Any upstream EventBridge event, before its detail is checked.");
    s["properties"]["detail"] = json!({
        "description": "The payload; its schema depends on `detail-type`.",
        "type": "object",
    });
    s["properties"]["detail-type"]["enum"] = json!(KNOWN_DETAIL_TYPES);
    s
}

/// The schema of an event the system emits with detail `D`: the envelope as EventBridge
/// delivers it to consumers, `source` and `detail-type` pinned.
pub fn outbound_event_schema<D: EventDetail>() -> Value {
    let mut s = event_schema::<D>();
    s["description"] = json!(format!(
        "EventBridge event with detail-type {} that upsell-flow emits (source {OUTBOUND_SOURCE}).",
        D::DETAIL_TYPE
    ));
    s["properties"]["source"] = json!({
        "description": "Always upsell-flow's own source.",
        "const": OUTBOUND_SOURCE,
    });
    s
}

fn outbound<D: EventDetail>() -> (String, Value) {
    (
        format!("events/out/{}.schema.json", D::DETAIL_TYPE),
        outbound_event_schema::<D>(),
    )
}

/// THE list of events the system emits (`schemas/events/out/`). Add yours here.
pub fn outbound_event_schemas() -> Vec<(String, Value)> {
    vec![
        outbound::<UpsellMessageApproved>(),
        outbound::<crate::drift::DriftDetected>(),
    ]
}

/// Every published schema as (path relative to `schemas/`, schema).
pub fn all_schemas() -> Vec<(String, Value)> {
    let mut all = inbound_and_internal_schemas();
    all.extend(outbound_event_schemas());
    all
}

fn inbound_and_internal_schemas() -> Vec<(String, Value)> {
    vec![
        ("events/envelope.schema.json".into(), envelope_schema()),
        (
            "events/ServiceCompleted.schema.json".into(),
            event_schema::<ServiceCompleted>(),
        ),
        (
            "events/CustomerProfileUpdated.schema.json".into(),
            event_schema::<CustomerProfileUpdated>(),
        ),
        (
            "events/SurveySubmitted.schema.json".into(),
            event_schema::<SurveySubmitted>(),
        ),
        ("agent-spec.schema.json".into(), schema_of::<AgentSpec>()),
        (
            "agent-transition.schema.json".into(),
            schema_of::<TransitionRecord>(),
        ),
        (
            "generation-request.schema.json".into(),
            schema_of::<GenerationRequest>(),
        ),
        (
            "generation-result.schema.json".into(),
            schema_of::<GenerationResult>(),
        ),
        (
            "judge-verdict.schema.json".into(),
            schema_of::<JudgeVerdict>(),
        ),
        (
            "judge-result.schema.json".into(),
            schema_of::<JudgeResult>(),
        ),
        (
            "message-record.schema.json".into(),
            schema_of::<MessageRecord>(),
        ),
        (
            "quarantine-record.schema.json".into(),
            schema_of::<QuarantineRecord>(),
        ),
        (
            "evaluation-report.schema.json".into(),
            schema_of::<crate::evaluation::EvaluationReport>(),
        ),
    ]
}

/// The file text of a schema: pretty JSON with a trailing newline.
pub fn render(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).expect("a JSON value always serialises");
    s.push('\n');
    s
}

/// Compares committed schema files with the generated ones: `committed(rel)` is the text of the
/// committed file at the relative path `rel` (`None` when missing; the caller reads the files).
/// Returns the relative paths that are missing or stale (empty when all are up to date).
pub fn stale_schemas(committed: impl Fn(&str) -> Option<String>) -> Vec<String> {
    all_schemas()
        .into_iter()
        .filter(|(rel, schema)| committed(rel).as_deref() != Some(render(schema).as_str()))
        .map(|(rel, _)| rel)
        .collect()
}
