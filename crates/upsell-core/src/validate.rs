//! Schema check and normalisation of raw upstream events: the logic behind the schema-check
//! worker and `upsell validate`.
//!
//! Order of checks for one raw event:
//! 1. size: more than [`MAX_EVENT_BYTES`] is rejected as a whole (never truncated);
//! 2. UTF-8 and JSON syntax;
//! 3. JSON Schema of its `detail-type` (from [`crate::schema`]); an unknown `detail-type` is
//!    rejected with the list of known ones, and the envelope is still checked so that every
//!    problem is reported at once;
//! 4. normalisation ([`normalize`]): trimmed strings, lower-case emails, E.164 phones, UTC
//!    timestamps, integer cents.
//!
//! Every problem carries a JSON Pointer path; a check never stops at the first problem.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{
    CustomerEvent, CustomerProfileUpdated, EventDetail, EventEnvelope, KNOWN_DETAIL_TYPES,
    ServiceCompleted, SurveySubmitted, UpsellResponded,
};
use crate::schema;

/// One problem found in an input, located by a JSON Pointer (`""` = the whole document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Problem {
    /// JSON Pointer (RFC 6901) to the offending value, e.g. `/detail/rating`.
    pub path: String,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// The main reason an event was rejected.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RejectReason {
    /// More than [`MAX_EVENT_BYTES`].
    Oversized,
    /// Not UTF-8 or not JSON.
    MalformedJson,
    /// `detail-type` is not one of the known ones.
    UnknownDetailType,
    /// The event does not match its JSON Schema.
    SchemaViolation,
    /// A value could not be normalised (e.g. a phone that cannot be made E.164).
    InvalidValue,
    /// The event matches no EventBridge rule that starts a workflow.
    NoMatchingRule,
}

impl RejectReason {
    /// The wire name, e.g. `"schema-violation"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Oversized => "oversized",
            RejectReason::MalformedJson => "malformed-json",
            RejectReason::UnknownDetailType => "unknown-detail-type",
            RejectReason::SchemaViolation => "schema-violation",
            RejectReason::InvalidValue => "invalid-value",
            RejectReason::NoMatchingRule => "no-matching-rule",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// EventBridge's maximum event size: 256 KiB.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Why an event was refused, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The main reason (the first failing stage).
    pub reason: RejectReason,
    /// Every problem found; never empty.
    pub problems: Vec<Problem>,
    /// The event id, when one could be read.
    pub event_id: Option<String>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.reason)?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

/// Compiled JSON Schemas for every known event type. Compile once and share (see [`validator`]).
pub struct EventValidator {
    envelope: jsonschema::Validator,
    by_type: BTreeMap<&'static str, jsonschema::Validator>,
}

impl std::fmt::Debug for EventValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventValidator")
            .field("detail_types", &self.by_type.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn compile(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("generated schemas are valid JSON Schemas")
}

impl Default for EventValidator {
    fn default() -> Self {
        Self::new()
    }
}

impl EventValidator {
    /// Compiles the schemas generated from the Rust types.
    pub fn new() -> Self {
        let mut by_type = BTreeMap::new();
        by_type.insert(
            ServiceCompleted::DETAIL_TYPE,
            compile(&schema::event_schema::<ServiceCompleted>()),
        );
        by_type.insert(
            CustomerProfileUpdated::DETAIL_TYPE,
            compile(&schema::event_schema::<CustomerProfileUpdated>()),
        );
        by_type.insert(
            SurveySubmitted::DETAIL_TYPE,
            compile(&schema::event_schema::<SurveySubmitted>()),
        );
        by_type.insert(
            UpsellResponded::DETAIL_TYPE,
            compile(&schema::event_schema::<UpsellResponded>()),
        );
        EventValidator {
            envelope: compile(&schema::envelope_schema()),
            by_type,
        }
    }

    /// Checks one raw event (bytes as received) and returns it typed and normalised.
    pub fn check_bytes(&self, raw: &[u8]) -> Result<CustomerEvent, Rejection> {
        if raw.len() > MAX_EVENT_BYTES {
            return Err(Rejection {
                reason: RejectReason::Oversized,
                problems: vec![oversized_problem(raw.len())],
                event_id: None,
            });
        }
        let text = std::str::from_utf8(raw).map_err(|e| Rejection {
            reason: RejectReason::MalformedJson,
            problems: vec![Problem::new(
                "",
                format!(
                    "event is not valid UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            )],
            event_id: None,
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| Rejection {
            reason: RejectReason::MalformedJson,
            problems: vec![Problem::new("", format!("malformed JSON: {e}"))],
            event_id: None,
        })?;
        self.check_parsed(&value)
    }

    /// Checks one raw event given as text.
    pub fn check_str(&self, raw: &str) -> Result<CustomerEvent, Rejection> {
        self.check_bytes(raw.as_bytes())
    }

    /// Checks an already parsed event (e.g. a Lambda payload). Its serialised size is checked too.
    pub fn check_value(&self, value: &Value) -> Result<CustomerEvent, Rejection> {
        let size = serde_json::to_vec(value).map(|v| v.len()).unwrap_or(0);
        if size > MAX_EVENT_BYTES {
            return Err(Rejection {
                reason: RejectReason::Oversized,
                problems: vec![oversized_problem(size)],
                event_id: event_id_of(value),
            });
        }
        self.check_parsed(value)
    }

    /// Schema problems only (no normalisation), for tests and tooling.
    pub fn schema_problems(&self, value: &Value) -> Vec<Problem> {
        let validator = value
            .get("detail-type")
            .and_then(Value::as_str)
            .and_then(|t| self.by_type.get(t))
            .unwrap_or(&self.envelope);
        validator.iter_errors(value).flat_map(to_problems).collect()
    }

    fn check_parsed(&self, value: &Value) -> Result<CustomerEvent, Rejection> {
        let event_id = event_id_of(value);
        let reject = |reason, problems| Rejection {
            reason,
            problems,
            event_id: event_id.clone(),
        };
        if !value.is_object() {
            return Err(reject(
                RejectReason::SchemaViolation,
                vec![Problem::new(
                    "",
                    format!("event must be a JSON object, got {}", json_kind(value)),
                )],
            ));
        }
        let mut problems = self.schema_problems(value);
        let mut reason = RejectReason::SchemaViolation;
        if let Some(t) = value.get("detail-type").and_then(Value::as_str)
            && !self.by_type.contains_key(t)
        {
            reason = RejectReason::UnknownDetailType;
            problems.retain(|p| p.path != "/detail-type");
            problems.insert(
                0,
                Problem::new(
                    "/detail-type",
                    format!(
                        "unknown detail-type {t:?}; known detail-types: {}",
                        KNOWN_DETAIL_TYPES.join(", ")
                    ),
                ),
            );
        }
        if !problems.is_empty() {
            return Err(reject(reason, problems));
        }
        let event: CustomerEvent = serde_json::from_value(value.clone()).map_err(|e| {
            reject(
                RejectReason::SchemaViolation,
                vec![Problem::new("", e.to_string())],
            )
        })?;
        normalize(event).map_err(|problems| reject(RejectReason::InvalidValue, problems))
    }
}

/// The shared, lazily compiled validator.
pub fn validator() -> &'static EventValidator {
    static V: OnceLock<EventValidator> = OnceLock::new();
    V.get_or_init(EventValidator::new)
}

/// Checks one raw event with the shared validator: see [`EventValidator::check_bytes`].
pub fn check_event(raw: &[u8]) -> Result<CustomerEvent, Rejection> {
    validator().check_bytes(raw)
}

fn oversized_problem(size: usize) -> Problem {
    Problem::new(
        "",
        format!(
            "event is {size} bytes, over the {MAX_EVENT_BYTES}-byte (256 KiB) EventBridge limit; \
             rejected whole, not truncated"
        ),
    )
}

fn event_id_of(value: &Value) -> Option<String> {
    value
        .get("id")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Turns one jsonschema error into problems with precise paths: a missing or unexpected
/// property is reported at the property's own path.
fn to_problems(err: jsonschema::ValidationError<'_>) -> Vec<Problem> {
    use jsonschema::error::ValidationErrorKind as K;
    let base = err.instance_path().as_str().to_owned();
    match err.kind() {
        K::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            vec![Problem::new(
                format!("{base}/{}", escape_pointer(&name)),
                "required property is missing",
            )]
        }
        K::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| {
                Problem::new(
                    format!("{base}/{}", escape_pointer(name)),
                    "unexpected property (not in the schema)",
                )
            })
            .collect(),
        // Documented enums are generated as `oneOf` of `const`s: name the allowed values.
        K::OneOfNotValid { context } | K::AnyOf { context }
            if !context.is_empty()
                && context.iter().all(|branch| {
                    branch.len() == 1 && matches!(branch[0].kind(), K::Constant { .. })
                }) =>
        {
            let allowed: Vec<String> = context
                .iter()
                .filter_map(|branch| match branch[0].kind() {
                    K::Constant { expected_value } => Some(expected_value.to_string()),
                    _ => None,
                })
                .collect();
            let shown = if err.instance().to_string().len() <= 80 {
                err.instance().to_string()
            } else {
                "value".to_owned()
            };
            vec![Problem::new(
                base,
                format!("{shown} is not one of {}", allowed.join(", ")),
            )]
        }
        _ => {
            let short = err.instance().to_string().len() <= 80;
            let message = if short {
                err.to_string()
            } else {
                err.masked_with("value").to_string()
            };
            vec![Problem::new(base, message)]
        }
    }
}

/// Normalises a typed event: trims every string, lower-cases emails, makes phones E.164 (US +1
/// assumed without a country code), upper-cases state codes. Timestamps are already UTC and
/// money already integer cents by construction of the types. Idempotent: normalising a
/// normalised event changes nothing. Returns every problem found.
pub fn normalize(event: CustomerEvent) -> Result<CustomerEvent, Vec<Problem>> {
    let mut problems = Vec::new();
    let event = match event {
        CustomerEvent::ServiceCompleted(mut e) => {
            normalize_envelope(&mut e, &mut problems);
            let d = &mut e.detail;
            required_trim(&mut d.customer_id, "/detail/customerId", &mut problems);
            trim(&mut d.technician_notes);
            if let Some(r) = d.rating
                && !(1..=5).contains(&r)
            {
                problems.push(Problem::new(
                    "/detail/rating",
                    format!("rating {r} is outside 1..=5"),
                ));
            }
            CustomerEvent::ServiceCompleted(e)
        }
        CustomerEvent::CustomerProfileUpdated(mut e) => {
            normalize_envelope(&mut e, &mut problems);
            let d = &mut e.detail;
            required_trim(&mut d.customer_id, "/detail/customerId", &mut problems);
            required_trim(&mut d.first_name, "/detail/firstName", &mut problems);
            required_trim(&mut d.last_name, "/detail/lastName", &mut problems);
            match normalize_email(&d.email) {
                Ok(v) => d.email = v,
                Err(m) => problems.push(Problem::new("/detail/email", m)),
            }
            if let Some(phone) = &d.phone {
                if phone.trim().is_empty() {
                    d.phone = None;
                } else {
                    match normalize_phone(phone) {
                        Ok(v) => d.phone = Some(v),
                        Err(m) => problems.push(Problem::new("/detail/phone", m)),
                    }
                }
            }
            let a = &mut d.address;
            required_trim(&mut a.street, "/detail/address/street", &mut problems);
            required_trim(&mut a.city, "/detail/address/city", &mut problems);
            a.state = a.state.trim().to_ascii_uppercase();
            if !(a.state.len() == 2 && a.state.chars().all(|c| c.is_ascii_uppercase())) {
                problems.push(Problem::new(
                    "/detail/address/state",
                    format!("{:?} is not a two-letter US state code", a.state),
                ));
            }
            trim(&mut a.postal_code);
            if !is_zip(&a.postal_code) {
                problems.push(Problem::new(
                    "/detail/address/postalCode",
                    format!(
                        "{:?} is not a US ZIP code (12345 or 12345-6789)",
                        a.postal_code
                    ),
                ));
            }
            CustomerEvent::CustomerProfileUpdated(e)
        }
        CustomerEvent::SurveySubmitted(mut e) => {
            normalize_envelope(&mut e, &mut problems);
            let d = &mut e.detail;
            required_trim(&mut d.customer_id, "/detail/customerId", &mut problems);
            trim(&mut d.free_text);
            if !(1..=10).contains(&d.satisfaction) {
                problems.push(Problem::new(
                    "/detail/satisfaction",
                    format!("satisfaction {} is outside 1..=10", d.satisfaction),
                ));
            }
            CustomerEvent::SurveySubmitted(e)
        }
        CustomerEvent::UpsellResponded(mut e) => {
            normalize_envelope(&mut e, &mut problems);
            let d = &mut e.detail;
            required_trim(&mut d.customer_id, "/detail/customerId", &mut problems);
            required_trim(
                &mut d.message_event_id,
                "/detail/messageEventId",
                &mut problems,
            );
            CustomerEvent::UpsellResponded(e)
        }
    };
    if problems.is_empty() {
        Ok(event)
    } else {
        Err(problems)
    }
}

fn normalize_envelope<D>(e: &mut EventEnvelope<D>, problems: &mut Vec<Problem>) {
    required_trim(&mut e.id, "/id", problems);
    required_trim(&mut e.source, "/source", problems);
    for v in [&mut e.version, &mut e.account, &mut e.region]
        .into_iter()
        .flatten()
    {
        trim(v);
    }
    for r in &mut e.resources {
        trim(r);
    }
}

fn trim(s: &mut String) {
    let t = s.trim();
    if t.len() != s.len() {
        *s = t.to_owned();
    }
}

fn required_trim(s: &mut String, path: &str, problems: &mut Vec<Problem>) {
    trim(s);
    if s.is_empty() {
        problems.push(Problem::new(path, "must not be blank"));
    }
}

fn is_zip(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => digits(b),
        10 => digits(&b[..5]) && b[5] == b'-' && digits(&b[6..]),
        _ => false,
    }
}

/// Trims and lower-cases an email address and checks its shape (`local@domain.tld`).
pub fn normalize_email(s: &str) -> Result<String, String> {
    let e = s.trim().to_lowercase();
    let shape_ok = match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if shape_ok {
        Ok(e)
    } else {
        Err(format!(
            "{:?} is not an email address (expected local@domain.tld)",
            s.trim()
        ))
    }
}

/// Makes a phone number E.164 (`+<country><number>`, 8 to 15 digits). Spaces, dashes, dots and
/// parentheses are ignored; a number without `+` or `00` is taken as US (+1): 10 digits, or 11
/// starting with 1. Anything else (letters, extensions, wrong length) is refused with a reason.
pub fn normalize_phone(s: &str) -> Result<String, String> {
    let t = s.trim();
    let mut digits = String::with_capacity(t.len());
    let mut plus = false;
    for (i, c) in t.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            '+' if i == 0 => plus = true,
            _ => {
                return Err(format!(
                    "{t:?} cannot be made E.164: {c:?} is not allowed in a phone number \
                     (extensions and letters are not supported)"
                ));
            }
        }
    }
    let international = if plus {
        Some(digits.as_str())
    } else {
        digits.strip_prefix("00")
    };
    if let Some(intl) = international {
        return if (8..=15).contains(&intl.len()) && !intl.starts_with('0') {
            Ok(format!("+{intl}"))
        } else {
            Err(format!(
                "{t:?} cannot be made E.164: an international number needs 8 to 15 digits \
                 after the country code prefix, not starting with 0"
            ))
        };
    }
    let national = match digits.len() {
        10 => digits.as_str(),
        11 if digits.starts_with('1') => &digits[1..],
        n => {
            return Err(format!(
                "{t:?} cannot be made E.164: expected a 10-digit US number or +<country code>\
                 <number>, got {n} digits"
            ));
        }
    };
    if national.starts_with(['0', '1']) {
        return Err(format!(
            "{t:?} cannot be made E.164: a US area code cannot start with 0 or 1"
        ));
    }
    Ok(format!("+1{national}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        assert_eq!(normalize_phone("(614) 555-0134").unwrap(), "+16145550134");
        assert_eq!(normalize_phone("1-614-555-0134").unwrap(), "+16145550134");
        assert_eq!(
            normalize_phone("+44 20 7946 0958").unwrap(),
            "+442079460958"
        );
        assert_eq!(
            normalize_phone("0044 20 7946 0958").unwrap(),
            "+442079460958"
        );
        assert_eq!(normalize_phone("+16145550134").unwrap(), "+16145550134");
        for bad in [
            "555-0134",
            "614-555-0134 x22",
            "call me",
            "+0123",
            "(014) 555-0134",
        ] {
            let e = normalize_phone(bad).unwrap_err();
            assert!(e.contains("cannot be made E.164"), "{bad}: {e}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Jo.Smith@Example.COM ").unwrap(),
            "jo.smith@example.com"
        );
        assert!(normalize_email("jo@localhost").is_err());
        assert!(normalize_email("jo smith@example.com").is_err());
    }
}
