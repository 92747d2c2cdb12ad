//! [`ContactStore`] on DynamoDB: one item per customer in the feature-store table, beside the
//! customer's feature snapshots (docs/feature-store.md, "DynamoDB design"), so one partition
//! holds everything known about a customer and a `Query` on `pk` finds it all.
//!
//! Item (table `FeatureStoreTable`): `pk = CUST#<customer id>`, `sk = CONTACT`, attributes
//! `customerId` (S), `firstName` (S), `marketingOptIn` (BOOL), `updatedAt` (S, RFC 3339 UTC with
//! microseconds and `Z`: fixed width, so text order is time order). The item carries neither
//! `featureSetVersion` nor `region`, so it stays out of the sparse `ByVersionTime` and
//! `ByRegion` indexes, and its sort key sorts before every `FS#` snapshot, so snapshot queries
//! never see it. A put is conditional on `attribute_not_exists(pk) OR updatedAt <= :t`: an older
//! profile event never replaces a newer contact (an equal time replaces it, as in the SQLite
//! adapter).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use upsell_core::ports::{ContactStore, CustomerContact, PortError};

use super::features::{customer_pk, sort_time};
use super::{Item, get_s, key, s};
use crate::error::{error_code, port_error};

/// Sort key of the contact item.
pub const CONTACT_SK: &str = "CONTACT";

/// Customer contacts (first name and consent) in the feature-store table.
#[derive(Debug, Clone)]
pub struct DynamoContactStore {
    client: Client,
    table: String,
}

impl DynamoContactStore {
    /// The store on `table` (the feature-store table).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoContactStore {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn contact_of(&self, item: &Item) -> Result<CustomerContact, PortError> {
        let corrupt = |why: String| {
            PortError::Other(format!(
                "contact item (pk={:?}, sk={CONTACT_SK:?}) of table {} is unreadable: {why}",
                get_s(item, "pk").unwrap_or("?"),
                self.table
            ))
        };
        let text = |name: &str| {
            get_s(item, name)
                .map(str::to_owned)
                .ok_or_else(|| corrupt(format!("no string attribute `{name}`")))
        };
        let marketing_opt_in = match item.get("marketingOptIn") {
            Some(AttributeValue::Bool(b)) => *b,
            _ => return Err(corrupt("no boolean attribute `marketingOptIn`".into())),
        };
        let updated_at = text("updatedAt")?
            .parse()
            .map_err(|e| corrupt(format!("`updatedAt` is not an RFC 3339 time: {e}")))?;
        Ok(CustomerContact {
            customer_id: text("customerId")?,
            first_name: text("firstName")?,
            marketing_opt_in,
            updated_at,
        })
    }
}

#[async_trait]
impl ContactStore for DynamoContactStore {
    async fn put(&self, contact: &CustomerContact) -> Result<(), PortError> {
        if contact.customer_id.is_empty() {
            return Err(PortError::Invalid("contact has an empty customerId".into()));
        }
        let updated_at = sort_time(contact.updated_at);
        let mut item = key(customer_pk(&contact.customer_id), CONTACT_SK);
        item.extend([
            ("customerId".to_owned(), s(&contact.customer_id)),
            ("firstName".to_owned(), s(&contact.first_name)),
            (
                "marketingOptIn".to_owned(),
                AttributeValue::Bool(contact.marketing_opt_in),
            ),
            ("updatedAt".to_owned(), s(&updated_at)),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR updatedAt <= :t")
            .expression_attribute_values(":t", s(updated_at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A newer profile is already stored: this older one changes nothing.
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(port_error("DynamoDB PutItem (contact)", e)),
        }
    }

    async fn get(&self, customer_id: &str) -> Result<Option<CustomerContact>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(customer_pk(customer_id), CONTACT_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("DynamoDB GetItem (contact)", e))?;
        out.item.map(|item| self.contact_of(&item)).transpose()
    }
}
