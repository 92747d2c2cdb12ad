//! The local message store: one terminal record per event id (approved, rejected, failed,
//! skipped) and one quarantine record per quarantine id, kept in the local DynamoDB table store
//! ([`TableStore`]) with the item layout of the DynamoDB adapter (`upsell-aws`), next to the
//! idempotency claims that the state machine's ClaimEvent state writes there.
//!
//! Items (table `MessagesTable` by default):
//! - message record: `pk = EVENT#<event id>`, `sk = RECORD`, `record` (JSON), `eventId`,
//!   `customerId`, `status`, `createdAt`, `gsi1pk = CUSTOMER#<customer>`, `gsi1sk = <event id>`
//!   (absent for an empty customer id), `gsi2pk = STATUS#<status>`, `gsi2sk = <event id>`;
//! - the state machine's idempotency claim: `pk = EVENT#<event id>`, `sk = CLAIM` (not written
//!   here);
//! - quarantine record: `pk = QUARANTINE#<id>`, `sk = RECORD`, `record` (JSON), `quarantineId`,
//!   `status = quarantined`, `quarantinedAt`, `eventId` (when known),
//!   `gsi2pk = STATUS#quarantined`, `gsi2sk = <id>`.
//!
//! Records are written only when absent (`attribute_not_exists(pk)`), so at-least-once delivery
//! never produces two. Listing reads the local `ByCustomer` (`gsi1pk`, `gsi1sk`) and `ByStatus`
//! (`gsi2pk`, `gsi2sk`) indexes, so results come in event-id order.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use upsell_core::message::{MessageRecord, MessageStatus, QuarantineRecord};
use upsell_core::ports::{MessageQuery, MessageStore, PortError, PutOutcome};

use crate::tables::{IndexQuery, ItemKey, KeyValue, TableStore, Write};

/// The table's local name: the SAM logical id of the messages table.
pub const MESSAGES_TABLE: &str = "MessagesTable";
/// Sort key of terminal and quarantine records.
pub const RECORD_SK: &str = "RECORD";
/// Sort key of the state machine's idempotency claim.
pub const CLAIM_SK: &str = "CLAIM";
/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;

/// Every message status (the `ByStatus` partitions that hold message records).
const STATUSES: [MessageStatus; 4] = [
    MessageStatus::Approved,
    MessageStatus::Rejected,
    MessageStatus::Failed,
    MessageStatus::Skipped,
];

/// Fails to compile when a status is added without adding it to [`STATUSES`].
const _: fn(MessageStatus) = |s| match s {
    MessageStatus::Approved
    | MessageStatus::Rejected
    | MessageStatus::Failed
    | MessageStatus::Skipped => {}
};

/// Partition key of an event's items.
pub fn event_pk(event_id: &str) -> String {
    format!("EVENT#{event_id}")
}

/// Partition key of a quarantine record.
pub fn quarantine_pk(quarantine_id: &str) -> String {
    format!("QUARANTINE#{quarantine_id}")
}

/// The key of a record item under partition `pk`.
pub fn record_key(pk: String) -> ItemKey {
    ItemKey {
        pk: KeyValue::S(pk),
        sk: Some(KeyValue::S(RECORD_SK.into())),
    }
}

/// The message store in the local table store.
pub struct SqliteMessageStore {
    tables: Arc<TableStore>,
    table: String,
}

impl std::fmt::Debug for SqliteMessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMessageStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// The wire name of a status (`approved`, ...).
pub fn status_name(s: MessageStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn s(v: impl Into<String>) -> Value {
    json!({ "S": v.into() })
}

fn get_s<'a>(item: &'a Value, attr: &str) -> Option<&'a str> {
    item.get(attr)?.get("S")?.as_str()
}

fn limit_of(limit: usize) -> usize {
    if limit == 0 { DEFAULT_LIMIT } else { limit }
}

impl SqliteMessageStore {
    /// The store on `table` of `tables` (locally the table's name is its SAM logical id,
    /// [`MESSAGES_TABLE`]); creates the local `ByCustomer` and `ByStatus` indexes.
    pub fn new(tables: Arc<TableStore>, table: impl Into<String>) -> Result<Self, PortError> {
        tables.ensure_index("gsi1pk", "gsi1sk")?;
        tables.ensure_index("gsi2pk", "gsi2sk")?;
        Ok(SqliteMessageStore {
            tables,
            table: table.into(),
        })
    }

    /// Opens (and creates) the store in the SQLite file at `path`, table [`MESSAGES_TABLE`].
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::new(Arc::new(TableStore::open(path)?), MESSAGES_TABLE)
    }

    /// A store in memory (tests), table [`MESSAGES_TABLE`].
    pub fn in_memory() -> Result<Self, PortError> {
        Self::new(Arc::new(TableStore::in_memory()?), MESSAGES_TABLE)
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table store.
    pub fn tables(&self) -> &Arc<TableStore> {
        &self.tables
    }

    /// Number of records by status (in name order), then `quarantined` (for run summaries).
    pub fn counts(&self) -> Result<Vec<(String, u64)>, PortError> {
        let mut out = Vec::new();
        let mut quarantined = 0;
        for (partition, count) in self.tables.count_index(&self.table, "gsi2pk", "gsi2sk")? {
            match partition.strip_prefix("STATUS#") {
                Some("quarantined") => quarantined = count,
                Some(status) => out.push((status.to_owned(), count)),
                None => {}
            }
        }
        out.push(("quarantined".into(), quarantined));
        Ok(out)
    }

    /// Writes `item` under `key` unless an item with that key exists (`attribute_not_exists(pk)`).
    fn put_new(&self, key: &ItemKey, item: Value) -> Result<PutOutcome, PortError> {
        Ok(if self.tables.put_if_absent(&self.table, key, &item)? {
            PutOutcome::Inserted
        } else {
            PutOutcome::AlreadyExists
        })
    }

    /// Reads one index partition after `after`, page by page, until `limit` items pass `keep`.
    fn query_index(
        &self,
        (pk_attr, pk): (&str, String),
        sk_attr: &str,
        after: Option<&str>,
        keep: impl Fn(&Value) -> bool,
        limit: usize,
    ) -> Result<Vec<Value>, PortError> {
        let page = limit.max(DEFAULT_LIMIT);
        let mut query = IndexQuery::new(pk_attr, pk, sk_attr);
        query.limit = Some(page);
        query.start_after = after.map(str::to_owned);
        let mut out = Vec::new();
        loop {
            let items = self.tables.query_index(&self.table, &query)?;
            let full = items.len() == page;
            query.start_after = items
                .last()
                .and_then(|i| get_s(i, sk_attr))
                .map(str::to_owned);
            out.extend(items.into_iter().filter(|i| keep(i)));
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            if !full || query.start_after.is_none() {
                return Ok(out);
            }
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, item: &Value) -> Result<T, PortError> {
        let json = get_s(item, "record").ok_or_else(|| {
            PortError::Other(format!("corrupt item in table {}: no record", self.table))
        })?;
        serde_json::from_str(json)
            .map_err(|e| PortError::Other(format!("corrupt item in table {}: {e}", self.table)))
    }

    fn parse_all<T: serde::de::DeserializeOwned>(
        &self,
        items: &[Value],
    ) -> Result<Vec<T>, PortError> {
        items.iter().map(|i| self.parse(i)).collect()
    }
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, PortError> {
    serde_json::to_string(value)
        .map_err(|e| PortError::Invalid(format!("{what} is not serialisable: {e}")))
}

#[async_trait]
impl MessageStore for SqliteMessageStore {
    async fn put_if_absent(&self, record: &MessageRecord) -> Result<PutOutcome, PortError> {
        if record.event_id.is_empty() {
            return Err(PortError::Invalid(
                "message record has an empty eventId".into(),
            ));
        }
        let status = status_name(record.status);
        let pk = event_pk(&record.event_id);
        let mut item = json!({
            "pk": s(&pk),
            "sk": s(RECORD_SK),
            "record": s(to_json(record, "message record")?),
            "eventId": s(&record.event_id),
            "customerId": s(&record.customer_id),
            "status": s(&status),
            "createdAt": s(record.created_at.to_rfc3339()),
            "gsi2pk": s(format!("STATUS#{status}")),
            "gsi2sk": s(&record.event_id),
        });
        // As in DynamoDB, an empty string cannot be an index key: such records stay out of ByCustomer.
        if !record.customer_id.is_empty() {
            item["gsi1pk"] = s(format!("CUSTOMER#{}", record.customer_id));
            item["gsi1sk"] = s(&record.event_id);
        }
        let key = record_key(pk);
        match self.put_new(&key, item.clone())? {
            PutOutcome::AlreadyExists if record.status != MessageStatus::Failed => {
                // A failed record gives way to a redriven attempt's record (one statement
                // reads and writes, so two writers cannot both replace it).
                let replaced = self.tables.modify(&self.table, &key, |old| {
                    let failed = old
                        .and_then(|o| o.pointer("/status/S"))
                        .and_then(Value::as_str)
                        == Some(status_name(MessageStatus::Failed).as_str());
                    if failed {
                        Ok(Write::Put(item))
                    } else {
                        Err(())
                    }
                })?;
                Ok(if replaced.is_ok() {
                    PutOutcome::Inserted
                } else {
                    PutOutcome::AlreadyExists
                })
            }
            inserted => Ok(inserted),
        }
    }

    async fn get(&self, event_id: &str) -> Result<Option<MessageRecord>, PortError> {
        self.tables
            .get(&self.table, &record_key(event_pk(event_id)))?
            .map(|item| self.parse(&item))
            .transpose()
    }

    async fn list(&self, query: &MessageQuery) -> Result<Vec<MessageRecord>, PortError> {
        let limit = limit_of(query.limit);
        let after = query.after_event_id.as_deref();
        if let Some(customer) = &query.customer_id {
            let wanted = query.status.map(status_name);
            let items = self.query_index(
                ("gsi1pk", format!("CUSTOMER#{customer}")),
                "gsi1sk",
                after,
                |i| {
                    wanted
                        .as_deref()
                        .is_none_or(|w| get_s(i, "status") == Some(w))
                },
                limit,
            )?;
            return self.parse_all(&items);
        }
        let statuses = match query.status {
            Some(status) => vec![status],
            None => STATUSES.to_vec(),
        };
        // One sorted partition per status; merging them keeps event-id order.
        let mut all: Vec<MessageRecord> = Vec::new();
        for status in statuses {
            let items = self.query_index(
                ("gsi2pk", format!("STATUS#{}", status_name(status))),
                "gsi2sk",
                after,
                |_| true,
                limit,
            )?;
            all.extend(self.parse_all::<MessageRecord>(&items)?);
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
        let pk = quarantine_pk(&record.quarantine_id);
        let mut item = json!({
            "pk": s(&pk),
            "sk": s(RECORD_SK),
            "record": s(to_json(record, "quarantine record")?),
            "quarantineId": s(&record.quarantine_id),
            "status": s("quarantined"),
            "quarantinedAt": s(record.quarantined_at.to_rfc3339()),
            "gsi2pk": s("STATUS#quarantined"),
            "gsi2sk": s(&record.quarantine_id),
        });
        if let Some(event_id) = &record.event_id {
            item["eventId"] = s(event_id);
        }
        self.put_new(&record_key(pk), item)
    }

    async fn list_quarantine(
        &self,
        after_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QuarantineRecord>, PortError> {
        let items = self.query_index(
            ("gsi2pk", "STATUS#quarantined".to_owned()),
            "gsi2sk",
            after_id,
            |_| true,
            limit_of(limit),
        )?;
        self.parse_all(&items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upsell_core::validate::RejectReason;

    fn record(event_id: &str, customer_id: &str, status: MessageStatus) -> MessageRecord {
        serde_json::from_value(json!({
            "eventId": event_id,
            "customerId": customer_id,
            "status": status,
            "message": "Hi Dana, time for a gutter clean?",
            "generator": {"agentId": "upsell-generator", "version": "1.0.0"},
            "judge": {"agentId": "upsell-judge", "version": "1.0.0"},
            "attempts": [],
            "totalUsage": {"inputTokens": 10, "outputTokens": 20},
            "costUsd": 0.001,
            "latencyMs": 1200,
            "createdAt": "2025-03-01T10:00:00Z",
        }))
        .unwrap()
    }

    fn quarantined(id: &str, event_id: Option<&str>) -> QuarantineRecord {
        QuarantineRecord {
            quarantine_id: id.into(),
            event_id: event_id.map(Into::into),
            raw: "{not json".into(),
            reason: RejectReason::MalformedJson,
            errors: vec![],
            origin: Some("events.jsonl:3".into()),
            quarantined_at: "2025-03-01T10:00:00Z".parse().unwrap(),
        }
    }

    fn key(pk: &str, sk: &str) -> ItemKey {
        ItemKey {
            pk: KeyValue::S(pk.into()),
            sk: Some(KeyValue::S(sk.into())),
        }
    }

    fn ids(records: &[MessageRecord]) -> Vec<&str> {
        records.iter().map(|r| r.event_id.as_str()).collect()
    }

    #[tokio::test]
    async fn a_record_written_through_the_port_is_the_documented_item() {
        let store = SqliteMessageStore::in_memory().unwrap();
        let r = record("evt-1", "cust-7", MessageStatus::Approved);
        assert_eq!(store.put_if_absent(&r).await.unwrap(), PutOutcome::Inserted);
        let item = store
            .tables()
            .get("MessagesTable", &key("EVENT#evt-1", "RECORD"))
            .unwrap()
            .expect("the RECORD item");
        for (attr, want) in [
            ("pk", "EVENT#evt-1"),
            ("sk", "RECORD"),
            ("eventId", "evt-1"),
            ("customerId", "cust-7"),
            ("status", "approved"),
            ("createdAt", "2025-03-01T10:00:00+00:00"),
            ("gsi1pk", "CUSTOMER#cust-7"),
            ("gsi1sk", "evt-1"),
            ("gsi2pk", "STATUS#approved"),
            ("gsi2sk", "evt-1"),
        ] {
            assert_eq!(item[attr], json!({"S": want}), "{attr}");
        }
        let stored: MessageRecord =
            serde_json::from_str(item["record"]["S"].as_str().unwrap()).unwrap();
        assert_eq!(stored, r);
        assert_eq!(store.get("evt-1").await.unwrap(), Some(r));
        assert_eq!(store.get("evt-2").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_record_is_written_once_and_lives_beside_the_claim() {
        let store = SqliteMessageStore::in_memory().unwrap();
        // The state machine's ClaimEvent item, as the local dynamodb:putItem writes it.
        let claim = json!({"pk": {"S": "EVENT#evt-1"}, "sk": {"S": "CLAIM"}});
        store
            .tables()
            .put(MESSAGES_TABLE, &key("EVENT#evt-1", CLAIM_SK), &claim)
            .unwrap();
        let first = record("evt-1", "cust-7", MessageStatus::Rejected);
        assert_eq!(
            store.put_if_absent(&first).await.unwrap(),
            PutOutcome::Inserted
        );
        let second = record("evt-1", "cust-7", MessageStatus::Approved);
        assert_eq!(
            store.put_if_absent(&second).await.unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(store.get("evt-1").await.unwrap(), Some(first));

        assert_eq!(
            store
                .tables()
                .get(MESSAGES_TABLE, &key("EVENT#evt-1", CLAIM_SK))
                .unwrap(),
            Some(claim)
        );
        // A claim alone is not a message record.
        let lone = json!({"pk": {"S": "EVENT#evt-2"}, "sk": {"S": "CLAIM"}});
        store
            .tables()
            .put(MESSAGES_TABLE, &key("EVENT#evt-2", CLAIM_SK), &lone)
            .unwrap();
        let all = store.list(&MessageQuery::default()).await.unwrap();
        assert_eq!(ids(&all), ["evt-1"]);
        // A failed record is replaced once by a redriven attempt's record; that one stays.
        let failed = record("evt-9", "cust-7", MessageStatus::Failed);
        assert_eq!(
            store.put_if_absent(&failed).await.unwrap(),
            PutOutcome::Inserted
        );
        let redriven = record("evt-9", "cust-7", MessageStatus::Approved);
        assert_eq!(
            store.put_if_absent(&redriven).await.unwrap(),
            PutOutcome::Inserted
        );
        assert_eq!(
            store.put_if_absent(&failed).await.unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(store.get("evt-9").await.unwrap(), Some(redriven));
        assert!(matches!(
            store
                .put_if_absent(&record("", "c", MessageStatus::Failed))
                .await,
            Err(PortError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn listing_filters_by_customer_and_status_in_event_id_order_with_paging() {
        let store = SqliteMessageStore::in_memory().unwrap();
        let statuses = STATUSES;
        for i in 0..250 {
            let status = statuses[i % 4];
            let customer = format!("cust-{}", i % 3);
            store
                .put_if_absent(&record(&format!("evt-{i:04}"), &customer, status))
                .await
                .unwrap();
        }
        // No filter: every status, merged in event-id order; default page 100.
        let page = store.list(&MessageQuery::default()).await.unwrap();
        assert_eq!(page.len(), DEFAULT_LIMIT);
        assert_eq!(page[0].event_id, "evt-0000");
        assert_eq!(page[99].event_id, "evt-0099");
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list(&MessageQuery {
                    after_event_id: after.clone(),
                    limit: 70,
                    ..MessageQuery::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|r| r.event_id.clone());
            seen.extend(page.into_iter().map(|r| r.event_id));
        }
        let want: Vec<String> = (0..250).map(|i| format!("evt-{i:04}")).collect();
        assert_eq!(seen, want);

        // By status.
        let rejected = store
            .list(&MessageQuery {
                status: Some(MessageStatus::Rejected),
                limit: 1000,
                ..MessageQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(rejected.len(), 63);
        assert!(rejected.iter().all(|r| r.status == MessageStatus::Rejected));
        assert!(rejected.windows(2).all(|w| w[0].event_id < w[1].event_id));

        // By customer and status (i % 3 == 1 and i % 4 == 2: i = 10, 22, 34, ...), paged.
        let q = |after: Option<&str>| MessageQuery {
            customer_id: Some("cust-1".into()),
            status: Some(MessageStatus::Failed),
            after_event_id: after.map(Into::into),
            limit: 3,
        };
        let first = store.list(&q(None)).await.unwrap();
        assert_eq!(ids(&first), ["evt-0010", "evt-0022", "evt-0034"]);
        let next = store.list(&q(Some("evt-0034"))).await.unwrap();
        assert_eq!(ids(&next), ["evt-0046", "evt-0058", "evt-0070"]);
        let customer = store
            .list(&MessageQuery {
                customer_id: Some("cust-2".into()),
                limit: 1000,
                ..MessageQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(customer.len(), 83);
        assert!(customer.iter().all(|r| r.customer_id == "cust-2"));

        let counts = store.counts().unwrap();
        assert_eq!(
            counts,
            [
                ("approved".to_owned(), 63),
                ("failed".to_owned(), 62),
                ("rejected".to_owned(), 63),
                ("skipped".to_owned(), 62),
                ("quarantined".to_owned(), 0),
            ]
        );
    }

    #[tokio::test]
    async fn quarantine_records_are_the_documented_items_and_listed_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upsell.db");
        let store = SqliteMessageStore::open(&path).unwrap();
        for id in ["q-3", "q-1", "q-2"] {
            let r = quarantined(id, (id != "q-2").then_some("evt-9"));
            assert_eq!(store.quarantine(&r).await.unwrap(), PutOutcome::Inserted);
        }
        assert_eq!(
            store.quarantine(&quarantined("q-1", None)).await.unwrap(),
            PutOutcome::AlreadyExists
        );
        let item = store
            .tables()
            .get(MESSAGES_TABLE, &key("QUARANTINE#q-1", "RECORD"))
            .unwrap()
            .unwrap();
        assert_eq!(item["gsi2pk"], json!({"S": "STATUS#quarantined"}));
        assert_eq!(item["gsi2sk"], json!({"S": "q-1"}));
        assert_eq!(item["eventId"], json!({"S": "evt-9"}));
        let stored: QuarantineRecord =
            serde_json::from_str(item["record"]["S"].as_str().unwrap()).unwrap();
        assert_eq!(stored, quarantined("q-1", Some("evt-9")));

        // Another process opening the same file sees them.
        let again = SqliteMessageStore::open(&path).unwrap();
        let all = again.list_quarantine(None, 0).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.quarantine_id.as_str()).collect();
        assert_eq!(ids, ["q-1", "q-2", "q-3"]);
        let rest = again.list_quarantine(Some("q-1"), 1).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].quarantine_id, "q-2");
        assert_eq!(again.counts().unwrap(), [("quarantined".to_owned(), 3)]);
        // Quarantine records are not message records.
        assert!(
            again
                .list(&MessageQuery::default())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn listing_reads_the_indexes() {
        let store = SqliteMessageStore::in_memory().unwrap();
        for (pk_attr, sk_attr) in [("gsi1pk", "gsi1sk"), ("gsi2pk", "gsi2sk")] {
            let plan = store
                .tables()
                .explain_index_query(
                    MESSAGES_TABLE,
                    &IndexQuery {
                        start_after: Some("evt-1".into()),
                        limit: Some(10),
                        ..IndexQuery::new(pk_attr, "X", sk_attr)
                    },
                )
                .unwrap();
            let index = format!("ddb_idx_{pk_attr}_{sk_attr}");
            assert!(plan.contains(&index), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
    }
}
