//! [`DriftSource`] on DynamoDB: the drift windows from the messages table, the same store the
//! upsell-message state machine writes.
//!
//! - Events: the state machine's idempotency claim (`pk = EVENT#<event id>`, `sk = CLAIM`)
//!   keeps the validated, normalised event (`event`, JSON text) and its time (`eventTime`). A
//!   window is one `Scan` filtered on `sk = CLAIM` and the window's days of `eventTime`; the
//!   exact bounds, validation and de-duplication are [`upsell_core::drift::select_events`].
//!   Claims written before the claim kept its event have no `event` and are left out.
//! - Outcomes: the message records of the window's events (`BatchGetItem` on
//!   `pk = EVENT#<id>`, `sk = RECORD`), approved and rejected ones.
//!
//! The daily check scans the table twice (baseline and current window) and reads the windows'
//! records by key; its cost grows with the table, which suits a daily job (docs/monitoring.md,
//! "Drift monitor").

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, Duration, Utc};
use upsell_core::drift::{DriftSource, counts_as_outcome, select_events};
use upsell_core::events::CustomerEvent;
use upsell_core::message::MessageRecord;
use upsell_core::ports::PortError;

use super::messages::{CLAIM_SK, RECORD_SK, event_pk};
use super::{Item, SK, from_json, get_s, key, s};
use crate::error::port_error;

/// Attribute of the claim item holding the validated event (JSON text).
pub const EVENT_ATTR: &str = "event";
/// Attribute of the claim item holding the event's time (RFC 3339).
pub const EVENT_TIME_ATTR: &str = "eventTime";
/// Keys per `BatchGetItem` (DynamoDB's limit).
const BATCH: usize = 100;

/// Drift windows from the messages table.
#[derive(Debug, Clone)]
pub struct DynamoDriftSource {
    client: Client,
    table: String,
}

impl DynamoDriftSource {
    /// The source over the messages table `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDriftSource {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The claims' events whose `eventTime` falls on the window's days, in scan order.
    async fn claimed_events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<serde_json::Value>, PortError> {
        // Whole days: `eventTime` text may carry any offset digits; the exact bounds are
        // applied to the parsed events.
        let lo = from.format("%Y-%m-%d").to_string();
        let hi = (to + Duration::days(1)).format("%Y-%m-%d").to_string();
        let names = HashMap::from([
            ("#sk".to_owned(), SK.to_owned()),
            ("#t".to_owned(), EVENT_TIME_ATTR.to_owned()),
            ("#e".to_owned(), EVENT_ATTR.to_owned()),
        ]);
        let values = HashMap::from([
            (":claim".to_owned(), s(CLAIM_SK)),
            (":lo".to_owned(), s(lo)),
            (":hi".to_owned(), s(hi)),
        ]);
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#sk = :claim AND #t >= :lo AND #t < :hi")
                .projection_expression("#e")
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("DynamoDB Scan (claimed events)", e))?;
            for item in page.items.unwrap_or_default() {
                if let Some(text) = get_s(&item, EVENT_ATTR)
                    && let Ok(v) = serde_json::from_str(text)
                {
                    out.push(v);
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    async fn records_by_id(&self, ids: &[String]) -> Result<Vec<MessageRecord>, PortError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(BATCH) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|id| key(event_pk(id), RECORD_SK))
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .build()
                    .map_err(|e| PortError::Other(format!("BatchGetItem request: {e}")))?,
            );
            while let Some(request) = pending.take() {
                let page = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| port_error("DynamoDB BatchGetItem (message records)", e))?;
                for item in page
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let record: MessageRecord = from_json(&item, "record", &self.table)?;
                    if counts_as_outcome(&record) {
                        out.push(record);
                    }
                }
                pending = page
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys.is_empty());
            }
        }
        out.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        Ok(out)
    }
}

#[async_trait]
impl DriftSource for DynamoDriftSource {
    async fn events_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CustomerEvent>, PortError> {
        Ok(select_events(
            self.claimed_events(from, to).await?,
            from,
            to,
        ))
    }

    async fn records_of(&self, event_ids: &[String]) -> Result<Vec<MessageRecord>, PortError> {
        self.records_by_id(event_ids).await
    }
}

/// The attribute value of a claim's `event`, as the state machine writes it
/// (`States.JsonToString`); for tests that seed claims.
pub fn event_attr(event: &serde_json::Value) -> AttributeValue {
    s(event.to_string())
}
