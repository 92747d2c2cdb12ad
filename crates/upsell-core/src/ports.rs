//! Port traits: what the workers need from the outside world, and the one error type they share.
//!
//! Every port has an AWS adapter (crates/upsell-aws) and a local one (crates/upsell-sqlite,
//! crates/upsell-local). Ports are async and object-safe (`#[async_trait]`, `Send + Sync`) so
//! workers take them as `Arc<dyn Port>`. Port-specific traits for features and the knowledge base
//! live in [`crate::features`] and [`crate::kb`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::agent::{AgentSpec, InferenceConfig, PerformanceMetrics};
use crate::events::RawEvent;
use crate::message::{MessageRecord, MessageStatus, QuarantineRecord, StopReason, TokenUsage};
use crate::registry::{RegisterRequest, Routing, TransitionRecord, TransitionRequest};
use crate::worker::ErrorName;

/// What can go wrong behind a port. The variant decides the stable error name that the
/// state machine's Retry and Catch match (see [`PortError::error_type`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PortError {
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A conditional write lost: the item already exists or changed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend asked us to slow down; safe to retry with backoff.
    #[error("throttled: {0}")]
    Throttled(String),
    /// A transient backend or network failure; safe to retry.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The request was malformed or refused; retrying will not help.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Anything else; not retried.
    #[error("{0}")]
    Other(String),
}

impl PortError {
    /// The stable error name that ASL `ErrorEquals` matches, in Lambda and in the local runtime.
    pub fn error_type(&self) -> ErrorName {
        match self {
            PortError::NotFound(_) => ErrorName::NotFound,
            PortError::Conflict(_) => ErrorName::Conflict,
            PortError::Throttled(_) => ErrorName::Throttled,
            PortError::Transient(_) => ErrorName::TransientError,
            PortError::Invalid(_) => ErrorName::InvalidRequest,
            PortError::Other(_) => ErrorName::InternalError,
        }
    }

    /// Whether a retry can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Throttled(_) | PortError::Transient(_))
    }
}

/// Failure of a model call. The variant decides the stable error name (see
/// [`ModelError::error_type`]) that the state machine's Retry and Catch match.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// The provider throttled the call; retry with backoff.
    #[error("model throttled: {0}")]
    Throttled(String),
    /// Timeout, 5xx or network failure; retry.
    #[error("model transient failure: {0}")]
    Transient(String),
    /// The model answered, but not in the expected form (e.g. a judge verdict that is not JSON);
    /// regenerating may help, retrying the same call with backoff is pointless.
    #[error("invalid model output: {0}")]
    InvalidOutput(String),
    /// The request was refused (unknown model, bad parameters, access denied); not retried.
    #[error("invalid model request: {0}")]
    InvalidRequest(String),
    /// Anything else; not retried.
    #[error("model error: {0}")]
    Other(String),
}

impl ModelError {
    /// The stable error name for ASL `ErrorEquals`: model failures have names of their own
    /// (`ModelThrottled`, ...) so the state machine can retry them apart from store failures.
    pub fn error_type(&self) -> ErrorName {
        match self {
            ModelError::Throttled(_) => ErrorName::ModelThrottled,
            ModelError::Transient(_) => ErrorName::ModelTransient,
            ModelError::InvalidOutput(_) => ErrorName::ModelOutputInvalid,
            ModelError::InvalidRequest(_) => ErrorName::InvalidRequest,
            ModelError::Other(_) => ErrorName::InternalError,
        }
    }

    /// Whether retrying the same call can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ModelError::Throttled(_) | ModelError::Transient(_))
    }
}

impl From<PortError> for ModelError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Throttled(m) => ModelError::Throttled(m),
            PortError::Transient(m) => ModelError::Transient(m),
            PortError::Invalid(m) => ModelError::InvalidRequest(m),
            other => ModelError::Other(other.to_string()),
        }
    }
}

/// The agent registry: every version of every agent (key: agent id + version), the routing
/// item the state machine reads, and the history of every transition. The rules (transitions,
/// routing, item layout) are in [`crate::registry`]; adapters execute its plans.
#[async_trait]
pub trait AgentRegistry: Send + Sync {
    /// One version; `PortError::NotFound` when absent.
    async fn get(&self, agent_id: &str, version: &Version) -> Result<AgentSpec, PortError>;
    /// Every version of an agent, oldest version first (semver order); empty when unknown.
    async fn list_versions(&self, agent_id: &str) -> Result<Vec<AgentSpec>, PortError>;
    /// Every version of every agent, ordered by agent id then version.
    async fn list_all(&self) -> Result<Vec<AgentSpec>, PortError>;
    /// Registers a new version and records it in the history; `PortError::Conflict` when that
    /// version already exists (versions are immutable once registered, except status, weight
    /// and performance), `PortError::Invalid` when the spec or the request is not valid.
    async fn register(&self, spec: &AgentSpec, request: &RegisterRequest) -> Result<(), PortError>;
    /// Moves one version to a status and traffic weight, rewrites the routing item and records
    /// the transition, in one write. Returns the version as stored. A request for the status
    /// and weight the version already has changes and records nothing.
    /// `PortError::NotFound` when absent; `PortError::Invalid` when the transition is not
    /// allowed ([`crate::agent::AgentStatus::can_transition_to`]) or the weight does not fit the status.
    async fn transition(
        &self,
        agent_id: &str,
        version: &Version,
        request: &TransitionRequest,
    ) -> Result<AgentSpec, PortError>;
    /// The agent's routing item as stored: what the state machine's LoadRouting state reads
    /// (no production version and no canary when the agent has none).
    async fn routing(&self, agent_id: &str) -> Result<Routing, PortError>;
    /// Every recorded transition of an agent's versions, oldest first; empty when unknown.
    async fn history(&self, agent_id: &str) -> Result<Vec<TransitionRecord>, PortError>;
    /// Replaces the performance figures of one version (not a transition: not recorded).
    async fn set_performance(
        &self,
        agent_id: &str,
        version: &Version,
        performance: &PerformanceMetrics,
    ) -> Result<(), PortError>;
}

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// The caller.
    User,
    /// The model.
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: ChatRole,
    /// The text.
    pub text: String,
}

/// A model call (Bedrock Converse shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConverseRequest {
    /// Provider model id, e.g. `amazon.nova-pro-v1:0`.
    pub model_id: String,
    /// Rendered system prompt.
    pub system: String,
    /// Conversation so far, ending with a user turn.
    pub messages: Vec<ChatMessage>,
    /// Sampling settings.
    pub inference: InferenceConfig,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConverseResponse {
    /// The generated text.
    pub text: String,
    /// Tokens used.
    pub usage: TokenUsage,
    /// Why generation stopped.
    pub stop_reason: StopReason,
}

/// A text-generation model (Bedrock in AWS, an offline deterministic model locally).
#[async_trait]
pub trait ModelProvider: Send + Sync {
    /// Runs one conversation turn.
    async fn converse(&self, request: &ConverseRequest) -> Result<ConverseResponse, ModelError>;
}

/// Result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The record was written.
    Inserted,
    /// A record with that key already existed; nothing was written.
    AlreadyExists,
}

/// Filter and page for [`MessageStore::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageQuery {
    /// Only this customer's messages.
    pub customer_id: Option<String>,
    /// Only messages in this status (e.g. rejections).
    pub status: Option<MessageStatus>,
    /// Return records whose event id sorts after this one (paging).
    pub after_event_id: Option<String>,
    /// Maximum number of records; 0 means the store's default (100).
    pub limit: usize,
}

/// Durable store of message outcomes (approved, rejected, failed) and quarantined events.
/// Writes are idempotent by key, so at-least-once delivery never produces two records.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Writes the record unless one with the same `event_id` exists, except that a `failed`
    /// record is replaced by a record of another status (a redriven attempt's outcome):
    /// `Inserted` when written.
    async fn put_if_absent(&self, record: &MessageRecord) -> Result<PutOutcome, PortError>;
    /// The record of one event, if any.
    async fn get(&self, event_id: &str) -> Result<Option<MessageRecord>, PortError>;
    /// Records matching `query`, ordered by event id.
    async fn list(&self, query: &MessageQuery) -> Result<Vec<MessageRecord>, PortError>;
    /// Stores a quarantined event unless one with the same `quarantine_id` exists.
    async fn quarantine(&self, record: &QuarantineRecord) -> Result<PutOutcome, PortError>;
    /// Quarantined events, ordered by quarantine id; `limit` 0 means the store's default (100).
    async fn list_quarantine(
        &self,
        after_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QuarantineRecord>, PortError>;
}

/// Publishes outbound events (EventBridge `PutEvents` in AWS, the local bus on a laptop),
/// e.g. `UpsellMessageApproved`.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes one event; returns the id the bus assigned (or the event's own id).
    async fn publish(&self, event: &RawEvent) -> Result<String, PortError>;
}

/// Unit of a metric value (CloudWatch units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricUnit {
    /// A count.
    Count,
    /// Milliseconds.
    Milliseconds,
    /// Percent, 0..=100.
    Percent,
    /// No unit (scores, ratios, dollars).
    None,
}

impl MetricUnit {
    /// Every unit.
    pub const ALL: [MetricUnit; 4] = [
        MetricUnit::Count,
        MetricUnit::Milliseconds,
        MetricUnit::Percent,
        MetricUnit::None,
    ];

    /// The CloudWatch unit name (`Count`, `Milliseconds`, `Percent`, `None`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricUnit::Count => "Count",
            MetricUnit::Milliseconds => "Milliseconds",
            MetricUnit::Percent => "Percent",
            MetricUnit::None => "None",
        }
    }

    /// The unit of a CloudWatch unit name.
    pub fn parse(name: &str) -> Option<MetricUnit> {
        Self::ALL.into_iter().find(|u| u.as_str() == name)
    }
}

/// Standard dimension names.
pub mod dims {
    /// Agent id.
    pub const AGENT_ID: &str = "AgentId";
    /// Agent version.
    pub const AGENT_VERSION: &str = "AgentVersion";
    /// Rejection or quarantine reason.
    pub const REASON: &str = "Reason";
    /// Event detail-type.
    pub const DETAIL_TYPE: &str = "DetailType";
}

/// One metric data point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDatum {
    /// Metric name, e.g. `ApprovalRate`, `GenerateLatency`, `EventsQuarantined`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: MetricUnit,
    /// Dimension name/value pairs, e.g. (`AgentId`, `upsell-generator`).
    pub dimensions: Vec<(String, String)>,
    /// When it was measured.
    pub timestamp: DateTime<Utc>,
}

impl MetricDatum {
    /// A data point measured at `timestamp`, with no dimensions.
    pub fn at(
        name: impl Into<String>,
        value: f64,
        unit: MetricUnit,
        timestamp: DateTime<Utc>,
    ) -> Self {
        MetricDatum {
            name: name.into(),
            value,
            unit,
            dimensions: Vec::new(),
            timestamp,
        }
    }

    /// Adds a dimension.
    pub fn with_dim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.push((name.into(), value.into()));
        self
    }
}

/// Metrics sink (CloudWatch embedded metric format in Lambda, SQLite locally). Recording never
/// fails the caller: adapters log and drop what they cannot write.
pub trait Metrics: Send + Sync {
    /// Records one data point.
    fn record(&self, datum: MetricDatum);
}

/// The only contact details a message may use: the first name, and whether the customer agreed
/// to marketing. Kept apart from the feature store, which holds no names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerContact {
    /// Customer id.
    pub customer_id: String,
    /// Given name.
    pub first_name: String,
    /// Whether the customer agreed to receive marketing messages.
    pub marketing_opt_in: bool,
    /// Time of the profile event this comes from; a put with an older time changes nothing.
    pub updated_at: DateTime<Utc>,
}

/// Customer contacts (first name and consent), written by the enrich worker from
/// `CustomerProfileUpdated` events and read for every message.
#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Stores the contact unless a newer one (by `updated_at`) is already stored.
    async fn put(&self, contact: &CustomerContact) -> Result<(), PortError>;
    /// The customer's contact, if a profile event was seen.
    async fn get(&self, customer_id: &str) -> Result<Option<CustomerContact>, PortError>;
}
