//! [`MessageStore`] on DynamoDB: one terminal record per event, written with a conditional put
//! on the event id, plus quarantined events.
//!
//! Items (table `MessagesTable`):
//! - message record: `pk = EVENT#<event id>`, `sk = RECORD`, `record` (JSON), `eventId`,
//!   `customerId`, `status`, `createdAt`, `gsi1pk = CUSTOMER#<customer>`, `gsi1sk = <event id>`,
//!   `gsi2pk = STATUS#<status>`, `gsi2sk = <event id>`;
//! - the state machine's idempotency claim: `pk = EVENT#<event id>`, `sk = CLAIM`, with the
//!   validated event (`event`, JSON text) and `eventTime` that the drift monitor reads
//!   ([`super::drift`]); not written here;
//! - quarantine record: `pk = QUARANTINE#<id>`, `sk = RECORD`, `record` (JSON),
//!   `gsi2pk = STATUS#quarantined`, `gsi2sk = <id>`.
//!
//! Listing reads the `ByCustomer` and `ByStatus` indexes, whose sort key is the event id, so
//! results come in event-id order; index reads are eventually consistent.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use upsell_core::message::{MessageRecord, MessageStatus, QuarantineRecord};
use upsell_core::ports::{MessageQuery, MessageStore, PortError, PutOutcome};

use super::{Item, from_json, key, s, serde_name, to_json};
use crate::error::{error_code, port_error};

/// Index by customer: `gsi1pk = CUSTOMER#<id>`, `gsi1sk = <event id>`.
pub const BY_CUSTOMER_INDEX: &str = "ByCustomer";
/// Index by status: `gsi2pk = STATUS#<status>`, `gsi2sk = <event id or quarantine id>`.
pub const BY_STATUS_INDEX: &str = "ByStatus";
/// Sort key of terminal records.
pub const RECORD_SK: &str = "RECORD";
/// Sort key of the state machine's idempotency claim.
pub const CLAIM_SK: &str = "CLAIM";
/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;

const STATUSES: [MessageStatus; 4] = [
    MessageStatus::Approved,
    MessageStatus::Rejected,
    MessageStatus::Failed,
    MessageStatus::Skipped,
];

/// Partition key of an event's items.
pub fn event_pk(event_id: &str) -> String {
    format!("EVENT#{event_id}")
}

/// Message records and quarantined events in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoMessageStore {
    client: Client,
    table: String,
}

impl DynamoMessageStore {
    /// The store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoMessageStore {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn put_new(&self, item: Item, what: &str) -> Result<PutOutcome, PortError> {
        self.put_unless(item, what, "attribute_not_exists(pk)", None)
            .await
    }

    /// `put_new`, but an existing item whose `status` is `replaceable` is overwritten.
    async fn put_unless(
        &self,
        item: Item,
        what: &str,
        condition: &str,
        replaceable: Option<&str>,
    ) -> Result<PutOutcome, PortError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        if let Some(status) = replaceable {
            put = put
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":replaceable", s(status));
        }
        let result = put.send().await;
        match result {
            Ok(_) => Ok(PutOutcome::Inserted),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(port_error(&format!("DynamoDB PutItem ({what})"), e)),
        }
    }

    /// Queries one index partition for records sorting after `after`, following pages until
    /// `limit` items pass the optional status filter.
    async fn query_index(
        &self,
        index: &str,
        (pk_attr, pk): (&str, String),
        sk_attr: &str,
        after: Option<&str>,
        status: Option<MessageStatus>,
        limit: usize,
    ) -> Result<Vec<Item>, PortError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut condition = "#pk = :pk".to_owned();
            let mut names = HashMap::from([("#pk".to_owned(), pk_attr.to_owned())]);
            let mut values = HashMap::from([(":pk".to_owned(), s(pk.clone()))]);
            if let Some(after) = after {
                condition.push_str(" AND #sk > :after");
                names.insert("#sk".into(), sk_attr.to_owned());
                values.insert(":after".into(), s(after));
            }
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(condition)
                .set_exclusive_start_key(start.take())
                .limit(i32::try_from(limit.min(1000)).unwrap_or(1000));
            if let Some(status) = status {
                names.insert("#status".into(), "status".into());
                values.insert(":status".into(), s(serde_name(&status)));
                request = request.filter_expression("#status = :status");
            }
            let page = request
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await
                .map_err(|e| port_error(&format!("DynamoDB Query ({index})"), e))?;
            out.extend(page.items.unwrap_or_default());
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    fn records(&self, items: Vec<Item>) -> Result<Vec<MessageRecord>, PortError> {
        items
            .iter()
            .map(|item| from_json(item, "record", &self.table))
            .collect()
    }
}

fn limit_of(limit: usize) -> usize {
    if limit == 0 { DEFAULT_LIMIT } else { limit }
}

#[async_trait]
impl MessageStore for DynamoMessageStore {
    async fn put_if_absent(&self, record: &MessageRecord) -> Result<PutOutcome, PortError> {
        if record.event_id.is_empty() {
            return Err(PortError::Invalid(
                "message record has an empty eventId".into(),
            ));
        }
        let status = serde_name(&record.status);
        let mut item = key(event_pk(&record.event_id), RECORD_SK);
        item.extend([
            ("record".to_owned(), s(to_json(record, "message record")?)),
            ("eventId".to_owned(), s(&record.event_id)),
            ("customerId".to_owned(), s(&record.customer_id)),
            ("status".to_owned(), s(&status)),
            ("createdAt".to_owned(), s(record.created_at.to_rfc3339())),
            ("gsi2pk".to_owned(), s(format!("STATUS#{status}"))),
            ("gsi2sk".to_owned(), s(&record.event_id)),
        ]);
        // An empty string is not a valid index key: records without a customer stay out of ByCustomer.
        if !record.customer_id.is_empty() {
            item.insert(
                "gsi1pk".to_owned(),
                s(format!("CUSTOMER#{}", record.customer_id)),
            );
            item.insert("gsi1sk".to_owned(), s(&record.event_id));
        }
        // A failed record gives way to a redriven attempt's record of another status.
        if record.status == MessageStatus::Failed {
            return self.put_new(item, "message record").await;
        }
        self.put_unless(
            item,
            "message record",
            "attribute_not_exists(pk) OR #status = :replaceable",
            Some(&serde_name(&MessageStatus::Failed)),
        )
        .await
    }

    async fn get(&self, event_id: &str) -> Result<Option<MessageRecord>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(event_pk(event_id), RECORD_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("DynamoDB GetItem (message record)", e))?;
        out.item
            .map(|item| from_json(&item, "record", &self.table))
            .transpose()
    }

    async fn list(&self, query: &MessageQuery) -> Result<Vec<MessageRecord>, PortError> {
        let limit = limit_of(query.limit);
        let after = query.after_event_id.as_deref();
        if let Some(customer) = &query.customer_id {
            let items = self
                .query_index(
                    BY_CUSTOMER_INDEX,
                    ("gsi1pk", format!("CUSTOMER#{customer}")),
                    "gsi1sk",
                    after,
                    query.status,
                    limit,
                )
                .await?;
            return self.records(items);
        }
        let statuses: Vec<MessageStatus> = match query.status {
            Some(status) => vec![status],
            None => STATUSES.to_vec(),
        };
        // One sorted partition per status; merging them keeps event-id order.
        let mut all = Vec::new();
        for status in statuses {
            let items = self
                .query_index(
                    BY_STATUS_INDEX,
                    ("gsi2pk", format!("STATUS#{}", serde_name(&status))),
                    "gsi2sk",
                    after,
                    None,
                    limit,
                )
                .await?;
            all.extend(self.records(items)?);
        }
        all.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        all.truncate(limit);
        Ok(all)
    }

    async fn quarantine(&self, record: &QuarantineRecord) -> Result<PutOutcome, PortError> {
        if record.quarantine_id.is_empty() {
            return Err(PortError::Invalid(
                "quarantine record has an empty quarantineId".into(),
            ));
        }
        let mut item = key(format!("QUARANTINE#{}", record.quarantine_id), RECORD_SK);
        item.extend([
            (
                "record".to_owned(),
                s(to_json(record, "quarantine record")?),
            ),
            ("quarantineId".to_owned(), s(&record.quarantine_id)),
            ("status".to_owned(), s("quarantined")),
            (
                "quarantinedAt".to_owned(),
                s(record.quarantined_at.to_rfc3339()),
            ),
            ("gsi2pk".to_owned(), s("STATUS#quarantined")),
            ("gsi2sk".to_owned(), s(&record.quarantine_id)),
        ]);
        if let Some(event_id) = &record.event_id {
            item.insert("eventId".to_owned(), AttributeValue::S(event_id.clone()));
        }
        self.put_new(item, "quarantine record").await
    }

    async fn list_quarantine(
        &self,
        after_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QuarantineRecord>, PortError> {
        let items = self
            .query_index(
                BY_STATUS_INDEX,
                ("gsi2pk", "STATUS#quarantined".to_owned()),
                "gsi2sk",
                after_id,
                None,
                limit_of(limit),
            )
            .await?;
        items
            .iter()
            .map(|item| from_json(item, "record", &self.table))
            .collect()
    }
}
