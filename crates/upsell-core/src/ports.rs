//! Port traits: what the workers need from the outside world, and the one error type they share.
//!
//! Every port has an AWS adapter (crates/upsell-aws) and a local one (crates/upsell-sqlite,
//! crates/upsell-local). Ports are async and object-safe (`#[async_trait]`, `Send + Sync`) so
//! workers take them as `Arc<dyn Port>`. Port-specific traits for features and the knowledge base
//! live in [`crate::features`] and [`crate::kb`].

use thiserror::Error;

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
    pub fn error_type(&self) -> &'static str {
        match self {
            PortError::NotFound(_) => "NotFound",
            PortError::Conflict(_) => "Conflict",
            PortError::Throttled(_) => "Throttled",
            PortError::Transient(_) => "TransientError",
            PortError::Invalid(_) => "InvalidRequest",
            PortError::Other(_) => "InternalError",
        }
    }

    /// Whether a retry can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Throttled(_) | PortError::Transient(_))
    }
}
