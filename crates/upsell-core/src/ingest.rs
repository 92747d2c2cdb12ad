//! Idempotent ingestion over HTTP (the webhook): each event id is put on the bus at most once
//! per successful request, and a retried request answers like the first.
//!
//! A request *claims* the id (a pending receipt with a lease), publishes, then *completes* the
//! receipt with the id the bus assigned. A request that finds a completed receipt publishes
//! nothing and answers with it; one that finds a live pending claim is told to retry later; an
//! expired claim (its request died) is taken over, so nothing accepted is ever lost. A request
//! that fails to publish releases its claim. The only double publication left is a process
//! dying between a successful publish and `complete`: at least once, never lost.
//!
//! [`IngestReceipts`] is the port; [`decide_claim`] is the rule every adapter applies inside
//! its conditional write (SQLite: one immediate transaction; DynamoDB: a put conditioned on the
//! receipt it read). `ingest_contract` (feature `contract`) is the
//! test suite both adapters pass.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::PortError;

/// How long a store keeps a receipt after its claim: a request repeating an event id within
/// this window is answered as a duplicate (the DynamoDB table's TTL deletes receipts after it;
/// SQLite keeps them).
pub const RECEIPT_RETENTION_DAYS: i64 = 30;

/// The stored receipt of one event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestReceipt {
    /// The event id (the idempotency key).
    pub event_id: String,
    /// Pending (claimed, being published) or done.
    pub state: ReceiptState,
    /// The id the bus assigned, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus_event_id: Option<String>,
    /// A pending claim is live until then; after it another request may take over.
    pub claimed_until: DateTime<Utc>,
}

/// State of a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiptState {
    /// Claimed by a request that has not finished.
    Pending,
    /// Put on the bus.
    Done,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The id is ours to publish (new, or an expired claim taken over).
    Claimed,
    /// Already published; the bus id of that publication.
    Done {
        /// Id the bus assigned.
        bus_event_id: String,
    },
    /// Another request holds a live claim until then.
    InProgress {
        /// End of that claim.
        until: DateTime<Utc>,
    },
}

/// The rule adapters apply atomically: given the stored receipt (if any), what the claim
/// finds, and the receipt to write when it is [`Claim::Claimed`].
pub fn decide_claim(
    existing: Option<&IngestReceipt>,
    event_id: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> (Claim, Option<IngestReceipt>) {
    match existing {
        Some(r) if r.state == ReceiptState::Done => (
            Claim::Done {
                bus_event_id: r.bus_event_id.clone().unwrap_or_default(),
            },
            None,
        ),
        Some(r) if r.claimed_until > now => (
            Claim::InProgress {
                until: r.claimed_until,
            },
            None,
        ),
        _ => (
            Claim::Claimed,
            Some(IngestReceipt {
                event_id: event_id.to_owned(),
                state: ReceiptState::Pending,
                bus_event_id: None,
                claimed_until: now + lease,
            }),
        ),
    }
}

/// Receipts of ingested event ids (crates/upsell-sqlite `receipts`).
#[async_trait]
pub trait IngestReceipts: Send + Sync {
    /// Claims `event_id` per [`decide_claim`], atomically.
    async fn claim(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claim, PortError>;
    /// Marks the claimed id as published with the bus's id.
    async fn complete(&self, event_id: &str, bus_event_id: &str) -> Result<(), PortError>;
    /// Drops a pending claim (publishing failed), so a retry may publish.
    async fn release(&self, event_id: &str) -> Result<(), PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("valid")
    }

    #[test]
    fn claims_follow_the_receipt() {
        let lease = Duration::seconds(30);
        let (c, w) = decide_claim(None, "e1", at(0), lease);
        assert_eq!(c, Claim::Claimed);
        let pending = w.expect("a pending receipt");
        assert_eq!(pending.claimed_until, at(30));
        let (c, w) = decide_claim(Some(&pending), "e1", at(10), lease);
        assert_eq!(c, Claim::InProgress { until: at(30) });
        assert!(w.is_none());
        let (c, w) = decide_claim(Some(&pending), "e1", at(31), lease);
        assert_eq!(c, Claim::Claimed, "an expired claim is taken over");
        assert_eq!(w.expect("new claim").claimed_until, at(61));
        let done = IngestReceipt {
            state: ReceiptState::Done,
            bus_event_id: Some("bus-1".into()),
            ..pending
        };
        let (c, w) = decide_claim(Some(&done), "e1", at(999), lease);
        assert_eq!(
            c,
            Claim::Done {
                bus_event_id: "bus-1".into()
            }
        );
        assert!(w.is_none());
    }
}
