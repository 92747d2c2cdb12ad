//! [`FeatureStore`] on DynamoDB: every feature snapshot kept under the customer with its event
//! time in the sort key, so a point-in-time read is one descending `Query` with `Limit 1`.
//!
//! Items (table `FeatureStoreTable`):
//! `pk = CUSTOMER#<customer id>`, `sk = FS#<feature-set version>#<last event time>` (RFC 3339 UTC
//! with microseconds, fixed width, so text order is time order), `customerId`,
//! `featureSetVersion`, `eventTime`, `recordedAt`, `features` (CustomerFeatures as JSON), and for
//! the `ByFeatureSet` index `gsi1pk = FS#<feature-set version>`, `gsi1sk = <customer id>#<event time>`
//! (backfills and drift jobs read one feature-set version across customers).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use upsell_core::features::{CustomerFeatures, FEATURE_SET_VERSION, FeatureStore};
use upsell_core::ports::PortError;

use super::{Item, from_json, key, s};
use crate::error::port_error;

/// The table's global secondary indexes: (name, partition key, sort key).
pub const INDEXES: &[(&str, &str, &str)] = &[(BY_FEATURE_SET_INDEX, "gsi1pk", "gsi1sk")];
/// Index of snapshots by feature-set version.
pub const BY_FEATURE_SET_INDEX: &str = "ByFeatureSet";

/// Fixed-width UTC timestamp (microseconds): text order is time order.
pub fn sort_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Partition key of a customer's snapshots.
pub fn customer_pk(customer_id: &str) -> String {
    format!("CUSTOMER#{customer_id}")
}

/// Feature snapshots with history in one DynamoDB table. Reads and writes use the feature-set
/// version this build computes ([`FEATURE_SET_VERSION`]) unless told otherwise.
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

    fn prefix(&self) -> String {
        format!("FS#{}#", self.feature_set_version)
    }

    async fn query_desc(
        &self,
        customer_id: &str,
        upto: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Item>, PortError> {
        let prefix = self.prefix();
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", s(customer_pk(customer_id)))
            .scan_index_forward(false)
            .consistent_read(true);
        request = match upto {
            // Everything of this version with an event time <= as_of: prefix <= sk <= prefix+time.
            Some(t) => request
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":lo", s(prefix.clone()))
                .expression_attribute_values(":hi", s(format!("{prefix}{}", sort_time(t)))),
            None => request
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
        };
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
        let event_time = sort_time(features.last_event_time);
        let mut item = key(
            customer_pk(&features.customer_id),
            format!("FS#{}#{event_time}", features.feature_set_version),
        );
        item.extend([
            ("customerId".to_owned(), s(&features.customer_id)),
            (
                "featureSetVersion".to_owned(),
                s(&features.feature_set_version),
            ),
            ("eventTime".to_owned(), s(&event_time)),
            ("recordedAt".to_owned(), s(sort_time(Utc::now()))),
            (
                "features".to_owned(),
                s(super::to_json(features, "customer features")?),
            ),
            (
                "gsi1pk".to_owned(),
                s(format!("FS#{}", features.feature_set_version)),
            ),
            (
                "gsi1sk".to_owned(),
                s(format!("{}#{event_time}", features.customer_id)),
            ),
        ]);
        // Same key again replaces the snapshot: replays are idempotent.
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| port_error("DynamoDB PutItem (feature snapshot)", e))?;
        Ok(())
    }

    async fn get(
        &self,
        customer_id: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<CustomerFeatures>, PortError> {
        let items = self.query_desc(customer_id, as_of, 1).await?;
        let Some(item) = items.first() else {
            return Ok(None);
        };
        let features: CustomerFeatures = from_json(item, "features", &self.table)?;
        // Same as the SQLite store: time-relative features are recomputed for an explicit as_of.
        Ok(Some(match as_of {
            Some(t) => features.at(t),
            None => features,
        }))
    }

    async fn history(
        &self,
        customer_id: &str,
        limit: usize,
    ) -> Result<Vec<CustomerFeatures>, PortError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.query_desc(customer_id, None, limit)
            .await?
            .iter()
            .map(|item| from_json(item, "features", &self.table))
            .collect()
    }
}
