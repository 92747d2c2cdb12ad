//! Table definitions matching sam/template.yaml, for tests against moto and for DynamoDB Local.
//! The template is the source of truth in AWS; `tests/template_tables.rs` checks the two agree.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use upsell_core::ports::PortError;

use crate::error::{error_code, port_error};

/// Which table to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Message records, quarantine records and idempotency claims.
    Messages,
    /// Agent versions and routing items.
    AgentRegistry,
    /// Customer feature snapshots.
    FeatureStore,
    /// Agent-evaluation cases.
    Evaluations,
    /// The webhook's idempotency receipts.
    WebhookReceipts,
    /// Per-version live counters.
    VersionCounters,
}

impl TableKind {
    /// The global secondary indexes of the table: (name, partition key, sort key, projection
    /// type `ALL` or `KEYS_ONLY`).
    pub fn indexes(self) -> &'static [(&'static str, &'static str, &'static str, &'static str)] {
        match self {
            TableKind::Messages => &[
                (
                    crate::dynamo::messages::BY_CUSTOMER_INDEX,
                    "gsi1pk",
                    "gsi1sk",
                    "ALL",
                ),
                (
                    crate::dynamo::messages::BY_STATUS_INDEX,
                    "gsi2pk",
                    "gsi2sk",
                    "ALL",
                ),
            ],
            TableKind::AgentRegistry => &[],
            TableKind::FeatureStore => crate::dynamo::features::INDEXES,
            TableKind::Evaluations => &[],
            TableKind::WebhookReceipts => &[],
            TableKind::VersionCounters => &[],
        }
    }
}

fn key_element(name: &str, kind: KeyType) -> Result<KeySchemaElement, PortError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| PortError::Invalid(e.to_string()))
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, PortError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| PortError::Invalid(e.to_string()))
}

/// Creates the table (on-demand, keys `pk`/`sk` + the kind's indexes). An existing table with
/// that name is left as it is.
pub async fn create_table(client: &Client, name: &str, kind: TableKind) -> Result<(), PortError> {
    let mut attributes = vec![string_attribute("pk")?, string_attribute("sk")?];
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key_element("pk", KeyType::Hash)?)
        .key_schema(key_element("sk", KeyType::Range)?);
    for (index, pk, sk, projection) in kind.indexes() {
        for name in [pk, sk] {
            if !attributes.iter().any(|a| a.attribute_name() == *name) {
                attributes.push(string_attribute(name)?);
            }
        }
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(*index)
                .key_schema(key_element(pk, KeyType::Hash)?)
                .key_schema(key_element(sk, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(*projection))
                        .build(),
                )
                .build()
                .map_err(|e| PortError::Invalid(e.to_string()))?,
        );
    }
    match request
        .set_attribute_definitions(Some(attributes))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("ResourceInUseException") => Ok(()),
        Err(e) => Err(port_error("DynamoDB CreateTable", e)),
    }
}
