//! [`FeatureStore`] on DynamoDB, following the table design in docs/feature-store.md: every
//! snapshot kept under the customer with its event time in the sort key (a point-in-time read is
//! one descending `Query` with `Limit 1`), plus a `LATEST#` pointer item for the common read.
//!
//! Items (table `FeatureStoreTable`, `pk = CUST#<customer id>`):
//! - snapshot: `sk = FS#<feature-set version>#<last event time>` (RFC 3339 UTC with
//!   microseconds and `Z`: fixed width, so text order is time order), `features` (a map: the
//!   CustomerFeatures JSON), `lastEventTime`, `recordedAt`;
//! - latest pointer: `sk = LATEST#<feature-set version>`, the same attributes plus
//!   `featureSetVersion`, `customerId` and `region` for the sparse `ByVersionTime`
//!   (featureSetVersion, lastEventTime) and `ByRegion` (region, customerId) indexes; written
//!   only when it is not older than the stored one (`attribute_not_exists(pk) OR
//!   lastEventTime <= :t`), so late events never move it back;
//! - event log: `sk = EVT#<event time>#<event id>`, `event` (the event JSON as a string),
//!   `eventId`; written with `attribute_not_exists(sk)`, so a redelivery is logged once. A
//!   customer's log is one `Query` on `begins_with(sk, "EVT#")`, in event-time order (ties by
//!   id). The items carry none of the index attributes, so they stay out of both indexes.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use upsell_core::events::CustomerEvent;
use upsell_core::features::{CustomerFeatures, FEATURE_SET_VERSION, FeatureStore};
use upsell_core::ports::PortError;

use super::{Item, attr_to_json, get_s, json_to_attr, key, s, serde_name};
use crate::error::{error_code, port_error};

/// The table's global secondary indexes: (name, partition key, sort key, projection).
pub const INDEXES: &[(&str, &str, &str, &str)] = &[
    (
        BY_VERSION_TIME_INDEX,
        "featureSetVersion",
        "lastEventTime",
        "KEYS_ONLY",
    ),
    (BY_REGION_INDEX, "region", "customerId", "KEYS_ONLY"),
];
/// Current snapshots by feature-set version and event time (LATEST items only).
pub const BY_VERSION_TIME_INDEX: &str = "ByVersionTime";
/// Current snapshots by region (LATEST items with a known region only).
pub const BY_REGION_INDEX: &str = "ByRegion";

/// Fixed-width UTC timestamp (microseconds, `Z`): text order is time order.
pub fn sort_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Sort-key prefix of the event log items.
pub const EVENT_PREFIX: &str = "EVT#";

/// Partition key of a customer's items.
pub fn customer_pk(customer_id: &str) -> String {
    format!("CUST#{customer_id}")
}

/// Feature snapshots with history in one DynamoDB table. Reads use the feature-set version this
/// build computes ([`FEATURE_SET_VERSION`]) unless told otherwise.
#[derive(Debug, Clone)]
pub struct DynamoFeatureStore {
    client: Client,
    table: String,
    feature_set_version: String,
}

impl DynamoFeatureStore {
    /// The store on `table`, reading [`FEATURE_SET_VERSION`].
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoFeatureStore {
            client,
            table: table.into(),
            feature_set_version: FEATURE_SET_VERSION.to_owned(),
        }
    }

    /// Reads another feature-set version (evaluations of older definitions).
    pub fn with_feature_set_version(mut self, version: impl Into<String>) -> Self {
        self.feature_set_version = version.into();
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn event_of(&self, item: &Item) -> Result<CustomerEvent, PortError> {
        let json = get_s(item, "event").ok_or_else(|| {
            PortError::Other(format!(
                "event log item (pk={:?}, sk={:?}) of table {} has no `event` string",
                get_s(item, "pk").unwrap_or("?"),
                get_s(item, "sk").unwrap_or("?"),
                self.table
            ))
        })?;
        serde_json::from_str(json).map_err(|e| {
            PortError::Other(format!(
                "event log item (sk={:?}) of table {} is not an event: {e}",
                get_s(item, "sk").unwrap_or("?"),
                self.table
            ))
        })
    }

    fn features_of(&self, item: &Item) -> Result<CustomerFeatures, PortError> {
        let corrupt = |why: String| {
            PortError::Other(format!(
                "item (pk={:?}, sk={:?}) of table {} has unreadable features: {why}",
                get_s(item, "pk").unwrap_or("?"),
                get_s(item, "sk").unwrap_or("?"),
                self.table
            ))
        };
        let attr = item
            .get("features")
            .ok_or_else(|| corrupt("no `features` attribute".into()))?;
        let json = attr_to_json(attr).map_err(corrupt)?;
        serde_json::from_value(json).map_err(|e| corrupt(e.to_string()))
    }

    async fn query_desc(
        &self,
        customer_id: &str,
        version: &str,
        upto: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Item>, PortError> {
        let prefix = format!("FS#{version}#");
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", s(customer_pk(customer_id)))
            .expression_attribute_values(":lo", s(prefix.clone()))
            .scan_index_forward(false)
            .consistent_read(true);
        // Everything of this version with an event time <= upto: prefix <= sk <= prefix+time.
        // Without a bound, `~` sorts after every timestamp character.
        let hi = match upto {
            Some(t) => format!("{prefix}{}", sort_time(t)),
            None => format!("{prefix}~"),
        };
        let request = request
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":hi", s(hi));
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = request
                .clone()
                .set_exclusive_start_key(start.take())
                .limit(i32::try_from(limit.min(1000)).unwrap_or(1000))
                .send()
                .await
                .map_err(|e| port_error("DynamoDB Query (feature snapshots)", e))?;
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
}

#[async_trait]
impl FeatureStore for DynamoFeatureStore {
    async fn put(&self, features: &CustomerFeatures) -> Result<(), PortError> {
        if features.customer_id.is_empty() {
            return Err(PortError::Invalid(
                "feature snapshot has an empty customerId".into(),
            ));
        }
        let json = serde_json::to_value(features)
            .map_err(|e| PortError::Invalid(format!("cannot serialise features: {e}")))?;
        let event_time = sort_time(features.last_event_time);
        let version = &features.feature_set_version;
        let pk = customer_pk(&features.customer_id);
        let mut snapshot = key(&pk, format!("FS#{version}#{event_time}"));
        snapshot.extend([
            ("features".to_owned(), json_to_attr(&json)),
            ("lastEventTime".to_owned(), s(&event_time)),
            ("recordedAt".to_owned(), s(sort_time(Utc::now()))),
        ]);
        let mut latest = snapshot.clone();
        latest.extend(key(&pk, format!("LATEST#{version}")));
        latest.insert("featureSetVersion".to_owned(), s(version));
        latest.insert("customerId".to_owned(), s(&features.customer_id));
        if let Some(region) = &features.region {
            latest.insert("region".to_owned(), s(serde_name(region)));
        }

        // Same key again replaces the snapshot: replays are idempotent.
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(snapshot))
            .send()
            .await
            .map_err(|e| port_error("DynamoDB PutItem (feature snapshot)", e))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(latest))
            .condition_expression("attribute_not_exists(pk) OR lastEventTime <= :t")
            .expression_attribute_values(":t", s(&event_time))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A newer snapshot is already the latest: this one only joins the history.
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(port_error("DynamoDB PutItem (latest features)", e)),
        }
    }

    async fn get(
        &self,
        customer_id: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<CustomerFeatures>, PortError> {
        self.get_version(customer_id, &self.feature_set_version, as_of)
            .await
    }

    async fn get_version(
        &self,
        customer_id: &str,
        version: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<CustomerFeatures>, PortError> {
        let Some(t) = as_of else {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(
                    customer_pk(customer_id),
                    format!("LATEST#{version}"),
                )))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| port_error("DynamoDB GetItem (latest features)", e))?;
            return out.item.map(|item| self.features_of(&item)).transpose();
        };
        let items = self.query_desc(customer_id, version, Some(t), 1).await?;
        // Same as the SQLite store: time-relative features are recomputed for the read time.
        items
            .first()
            .map(|item| self.features_of(item).map(|f| f.at(t)))
            .transpose()
    }

    async fn history(
        &self,
        customer_id: &str,
        limit: usize,
    ) -> Result<Vec<CustomerFeatures>, PortError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.query_desc(customer_id, &self.feature_set_version, None, limit)
            .await?
            .iter()
            .map(|item| self.features_of(item))
            .collect()
    }

    async fn append_event(&self, event: &CustomerEvent) -> Result<bool, PortError> {
        let json = serde_json::to_string(event).map_err(|e| {
            PortError::Invalid(format!("cannot serialise event {}: {e}", event.id()))
        })?;
        let mut item = key(
            customer_pk(event.customer_id()),
            format!("{EVENT_PREFIX}{}#{}", sort_time(event.time()), event.id()),
        );
        item.extend([
            ("event".to_owned(), s(json)),
            ("eventId".to_owned(), s(event.id())),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(port_error("DynamoDB PutItem (event log)", e)),
        }
    }

    async fn events(&self, customer_id: &str) -> Result<Vec<CustomerEvent>, PortError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :evt)")
            .expression_attribute_values(":pk", s(customer_pk(customer_id)))
            .expression_attribute_values(":evt", s(EVENT_PREFIX))
            .consistent_read(true);
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = request
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("DynamoDB Query (event log)", e))?;
            for item in page.items.unwrap_or_default() {
                out.push(self.event_of(&item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    async fn logged_customers(&self) -> Result<Vec<String>, PortError> {
        let request = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(sk, :evt)")
            .expression_attribute_values(":evt", s(EVENT_PREFIX))
            .projection_expression("pk");
        let mut customers = std::collections::BTreeSet::new();
        let mut start: Option<Item> = None;
        loop {
            let page = request
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("DynamoDB Scan (event log customers)", e))?;
            for item in page.items.unwrap_or_default() {
                if let Some(c) = get_s(&item, "pk").and_then(|pk| pk.strip_prefix("CUST#")) {
                    customers.insert(c.to_owned());
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(customers.into_iter().collect()),
            }
        }
    }
}
