//! The schema-check worker: the first state of the upsell workflow. Validates one upstream
//! event against the JSON Schema of its detail-type and normalises it
//! (`upsell_core::validate::check_event`). A bad event fails with `SchemaInvalid` whose message
//! is JSON carrying every problem, so the state machine's Quarantine state can store them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use upsell_core::validate::{Problem, RejectReason, Rejection, check_event};
use upsell_core::worker::{ErrorName, StableError, Worker};

/// Input: the event as EventBridge delivered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    /// The raw event (any JSON: it has not been checked yet).
    pub event: Value,
}

/// Output: the normalised event and the keys later states use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Event id (the idempotency key).
    pub event_id: String,
    /// Customer id.
    pub customer_id: String,
    /// Detail type.
    pub detail_type: String,
    /// The normalised event (trimmed strings, lower-case emails, E.164 phones, UTC times).
    pub event: Value,
}

/// What a `SchemaInvalid` error message carries (as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaInvalidDetails {
    /// The main reason.
    pub reason: RejectReason,
    /// The event id, when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// Problems beyond this many are summarised in one extra problem, so the error message stays
/// under Step Functions' 32 KiB cause limit.
pub const MAX_PROBLEMS_IN_ERROR: usize = 50;

/// Worker errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The event failed validation; the message is [`SchemaInvalidDetails`] as JSON.
    #[error("{0}")]
    SchemaInvalid(String),
}

impl WorkerError {
    /// The stable error name the state machine matches.
    pub fn error_type(&self) -> ErrorName {
        match self {
            WorkerError::SchemaInvalid(_) => ErrorName::SchemaInvalid,
        }
    }
}

/// Ports the worker needs: none (validation is pure).
#[derive(Debug, Clone, Default)]
pub struct Deps;

fn invalid(r: Rejection) -> WorkerError {
    let mut problems = r.problems;
    if problems.len() > MAX_PROBLEMS_IN_ERROR {
        let more = problems.len() - MAX_PROBLEMS_IN_ERROR;
        problems.truncate(MAX_PROBLEMS_IN_ERROR);
        problems.push(Problem::new("", format!("and {more} more problems")));
    }
    let details = SchemaInvalidDetails {
        reason: r.reason,
        event_id: r.event_id,
        problems,
    };
    WorkerError::SchemaInvalid(serde_json::to_string(&details).expect("details serialise"))
}

/// Checks and normalises one event.
pub async fn handle(input: Input, _deps: &Deps) -> Result<Output, WorkerError> {
    let bytes = serde_json::to_vec(&input.event).expect("a JSON value serialises");
    let event = check_event(&bytes).map_err(invalid)?;
    Ok(Output {
        event_id: event.id().to_owned(),
        customer_id: event.customer_id().to_owned(),
        detail_type: event.detail_type().to_owned(),
        event: serde_json::to_value(&event).expect("events serialise"),
    })
}

#[async_trait::async_trait]
impl Worker for Deps {
    const NAME: &'static str = "schema-check";
    const STATE: &'static str = "SchemaCheck";
    type Input = Input;
    type Output = Output;
    type Error = WorkerError;

    async fn handle(&self, input: Input) -> Result<Output, WorkerError> {
        handle(input, self).await
    }
}

impl StableError for WorkerError {
    fn error_name(&self) -> ErrorName {
        self.error_type()
    }
}
