//! [`IngestReceipts`] on DynamoDB (the webhook's idempotency receipts), in the table
//! `WebhookReceiptsTable`. The rule is [`decide_claim`]; this adapter only makes it atomic: it
//! reads the receipt (strongly consistent), applies the rule, and writes the new claim with a
//! condition that the receipt is still the one it read. A request that loses that race reads
//! again and so answers what the winner wrote.
//!
//! Item: `pk = EVENT#<event id>`, `sk = RECEIPT`, `eventId`, `state` (`pending` | `done`),
//! `claimedUntil` (RFC 3339), `busEventId` (once done), `expiresAt` (epoch seconds: the table's
//! TTL attribute, [`RECEIPT_RETENTION_DAYS`] after the claim).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use upsell_core::ingest::{
    Claim, IngestReceipt, IngestReceipts, RECEIPT_RETENTION_DAYS, ReceiptState, decide_claim,
};
use upsell_core::ports::PortError;

use super::{Item, get_s, key, n, s, serde_name};
use crate::error::{error_code, port_error};

/// Sort key of a receipt.
pub const RECEIPT_SK: &str = "RECEIPT";
/// The table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expiresAt";
/// Read-decide-write rounds before giving up (each lost round means another request wrote,
/// so the next read sees its claim; two rounds suffice unless receipts churn).
const ROUNDS: usize = 4;

/// Partition key of an event id's receipt.
pub fn receipt_pk(event_id: &str) -> String {
    format!("EVENT#{event_id}")
}

/// Ingest receipts in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoIngestReceipts {
    client: Client,
    table: String,
}

impl DynamoIngestReceipts {
    /// The receipts in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoIngestReceipts {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The stored receipt of an event id (strongly consistent read).
    pub async fn get(&self, event_id: &str) -> Result<Option<IngestReceipt>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(receipt_pk(event_id), RECEIPT_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("DynamoDB GetItem (ingest receipt)", e))?;
        out.item
            .map(|item| from_item(&item, &self.table))
            .transpose()
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The item of a receipt; `expires` is its TTL time.
pub fn to_item(r: &IngestReceipt, expires: DateTime<Utc>) -> Item {
    let mut item = key(receipt_pk(&r.event_id), RECEIPT_SK);
    item.insert("eventId".into(), s(&r.event_id));
    item.insert("state".into(), s(serde_name(&r.state)));
    item.insert("claimedUntil".into(), s(time(r.claimed_until)));
    if let Some(bus) = &r.bus_event_id {
        item.insert("busEventId".into(), s(bus));
    }
    item.insert(TTL_ATTRIBUTE.into(), n(expires.timestamp()));
    item
}

/// The receipt an item holds.
pub fn from_item(item: &Item, table: &str) -> Result<IngestReceipt, PortError> {
    let bad = |what: &str| {
        PortError::Other(format!(
            "ingest receipt {:?} in table {table}: {what}",
            get_s(item, "pk").unwrap_or("?")
        ))
    };
    let state = match get_s(item, "state") {
        Some("pending") => ReceiptState::Pending,
        Some("done") => ReceiptState::Done,
        other => return Err(bad(&format!("unknown state {other:?}"))),
    };
    let claimed_until = get_s(item, "claimedUntil")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| bad("no readable claimedUntil"))?
        .with_timezone(&Utc);
    Ok(IngestReceipt {
        event_id: get_s(item, "eventId")
            .ok_or_else(|| bad("no eventId"))?
            .to_owned(),
        state,
        bus_event_id: get_s(item, "busEventId").map(str::to_owned),
        claimed_until,
    })
}

fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[async_trait]
impl IngestReceipts for DynamoIngestReceipts {
    async fn claim(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claim, PortError> {
        for _ in 0..ROUNDS {
            let existing = self.get(event_id).await?;
            let (claim, new) = decide_claim(existing.as_ref(), event_id, now, lease);
            let Some(new) = new else { return Ok(claim) };
            let expires = new.claimed_until + Duration::days(RECEIPT_RETENTION_DAYS);
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(to_item(&new, expires)));
            // Written only if the receipt is still the one the rule was applied to.
            let put = match &existing {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some(old) => put
                    .condition_expression("#state = :state AND claimedUntil = :until")
                    .set_expression_attribute_names(Some(names(&[("#state", "state")])))
                    .expression_attribute_values(":state", s(serde_name(&old.state)))
                    .expression_attribute_values(":until", s(time(old.claimed_until))),
            };
            match put.send().await {
                Ok(_) => return Ok(claim),
                Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => continue,
                Err(e) => return Err(port_error("DynamoDB PutItem (ingest receipt)", e)),
            }
        }
        Err(PortError::Transient(format!(
            "the receipt of event {event_id} changed under {ROUNDS} claims in a row; retry"
        )))
    }

    async fn complete(&self, event_id: &str, bus_event_id: &str) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(receipt_pk(event_id), RECEIPT_SK)))
            .update_expression("SET #state = :done, busEventId = :bus")
            .condition_expression("attribute_exists(pk)")
            .set_expression_attribute_names(Some(names(&[("#state", "state")])))
            .expression_attribute_values(":done", s(serde_name(&ReceiptState::Done)))
            .expression_attribute_values(":bus", s(bus_event_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Err(
                PortError::NotFound(format!("no ingest receipt for event {event_id}")),
            ),
            Err(e) => Err(port_error("DynamoDB UpdateItem (ingest receipt)", e)),
        }
    }

    async fn release(&self, event_id: &str) -> Result<(), PortError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(receipt_pk(event_id), RECEIPT_SK)))
            .condition_expression("#state = :pending")
            .set_expression_attribute_names(Some(names(&[("#state", "state")])))
            .expression_attribute_values(":pending", s(serde_name(&ReceiptState::Pending)))
            .send()
            .await;
        match result {
            // No receipt, or a done one (kept): nothing to release.
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(port_error("DynamoDB DeleteItem (ingest receipt)", e)),
        }
    }
}
