//! What the generate and judge steps exchange, and what the pipeline stores: generation
//! requests and results with token usage, judge verdicts, the final message record and the
//! quarantine record kept for every event that failed validation.
//!
//! JSON field names are camelCase. Durations are in milliseconds, money in US dollars only
//! where noted (model cost), token counts are whole tokens.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::AgentRef;
use crate::events::Service;
use crate::validate::{Problem, RejectReason};

/// Tokens consumed by one model call (Bedrock Converse `usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

impl TokenUsage {
    /// Input plus output tokens.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

impl std::ops::Add for TokenUsage {
    type Output = TokenUsage;
    fn add(self, o: TokenUsage) -> TokenUsage {
        TokenUsage {
            input_tokens: self.input_tokens + o.input_tokens,
            output_tokens: self.output_tokens + o.output_tokens,
        }
    }
}

impl std::ops::AddAssign for TokenUsage {
    fn add_assign(&mut self, o: TokenUsage) {
        *self = *self + o;
    }
}

/// Why the model stopped producing output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its answer.
    EndTurn,
    /// `maxTokens` was reached; the text may be cut off.
    MaxTokens,
    /// A stop sequence was produced.
    StopSequence,
    /// A guardrail or content filter intervened.
    ContentFiltered,
    /// Any other reason the provider reported.
    #[serde(other)]
    Other,
}

/// Input of the generate step: one attempt at writing a message for one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerationRequest {
    /// Id of the triggering event (also the message id).
    pub event_id: String,
    /// The customer to write to.
    pub customer_id: String,
    /// Attempt number, starting at 1; incremented by the judge feedback loop.
    #[schemars(range(min = 1))]
    pub attempt: u32,
    /// Generator version chosen by traffic routing.
    pub generator: AgentRef,
    /// Template variables: customer profile and features, retrieved similar past upsells, the
    /// triggering event. Free-form JSON object so the state machine can pass it through.
    pub context: serde_json::Value,
    /// The previous attempt's message, when the judge rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_message: Option<String>,
    /// The judge's feedback on the previous attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_feedback: Option<String>,
}

/// Output of the generate step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerationResult {
    /// Id of the triggering event.
    pub event_id: String,
    /// Attempt number, starting at 1.
    pub attempt: u32,
    /// Generator version that wrote it.
    pub generator: AgentRef,
    /// Model id used.
    pub model_id: String,
    /// The message text to send to the customer.
    pub message: String,
    /// The service the message proposes, when the generator named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_service: Option<Service>,
    /// Tokens used.
    pub usage: TokenUsage,
    /// Why the model stopped.
    pub stop_reason: StopReason,
    /// Model call latency in milliseconds.
    pub latency_ms: u64,
}

/// The judge's assessment of one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JudgeVerdict {
    /// Quality score, 0 (unusable) ..= 10 (excellent).
    #[schemars(range(min = 0, max = 10))]
    pub score: u8,
    /// Whether the message may be sent.
    pub approved: bool,
    /// Short kebab-case reason codes, e.g. `off-brand`, `too-pushy`, `wrong-service`,
    /// `factual-error`, `too-long`, `personalisation-missing`; empty when approved.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Actionable feedback for the generator's next attempt.
    #[serde(default)]
    pub feedback: String,
}

/// Output of the judge step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JudgeResult {
    /// Id of the triggering event.
    pub event_id: String,
    /// Attempt judged.
    pub attempt: u32,
    /// Judge version that judged.
    pub judge: AgentRef,
    /// The verdict.
    pub verdict: JudgeVerdict,
    /// Tokens used by the judge.
    pub usage: TokenUsage,
    /// Model call latency in milliseconds.
    pub latency_ms: u64,
}

/// Final state of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MessageStatus {
    /// The judge approved it; it was published.
    Approved,
    /// Every attempt was rejected by the judge.
    Rejected,
    /// The workflow failed (model errors after retries).
    Failed,
    /// No message was written on purpose (e.g. the customer opted out of marketing).
    Skipped,
}

/// One generate + judge round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttemptRecord {
    /// Attempt number, starting at 1.
    pub attempt: u32,
    /// The generated text.
    pub message: String,
    /// The judge's verdict on it.
    pub verdict: JudgeVerdict,
    /// Generator tokens.
    pub generator_usage: TokenUsage,
    /// Judge tokens.
    pub judge_usage: TokenUsage,
}

/// The stored outcome for one event (key: `eventId`, written once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageRecord {
    /// Id of the triggering event; the idempotency key.
    pub event_id: String,
    /// The customer.
    pub customer_id: String,
    /// Final state.
    pub status: MessageStatus,
    /// The approved message; for rejected ones, the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Service proposed by the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_service: Option<Service>,
    /// Catalogue offering proposed by the message, e.g. `gutter_cleaning` (absent in records
    /// written before it was kept, and for skipped events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offering: Option<String>,
    /// Generator version used.
    pub generator: AgentRef,
    /// Judge version used.
    pub judge: AgentRef,
    /// Every attempt, in order.
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    /// Total tokens over all attempts (generator + judge).
    pub total_usage: TokenUsage,
    /// Estimated model cost in US dollars.
    #[serde(default)]
    pub cost_usd: f64,
    /// Wall time from event to record, in milliseconds.
    pub latency_ms: u64,
    /// Why the message was not sent, for failed or skipped ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the record was written.
    pub created_at: DateTime<Utc>,
}

/// An event that failed validation, kept verbatim with every problem found (never dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuarantineRecord {
    /// Key: the event id when one could be read, otherwise a caller-chosen id
    /// (e.g. `file.jsonl:17` or a hash of the raw text).
    pub quarantine_id: String,
    /// The event id, when the event had a readable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The event exactly as received, never truncated.
    pub raw: String,
    /// The main reason.
    pub reason: RejectReason,
    /// Every problem found, with JSON Pointer paths into the event.
    pub errors: Vec<Problem>,
    /// Where it came from, e.g. `eventbridge` or `examples/events.jsonl:17`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// When it was quarantined.
    pub quarantined_at: DateTime<Utc>,
}
