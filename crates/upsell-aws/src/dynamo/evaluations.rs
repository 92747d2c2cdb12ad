//! [`EvaluationStore`] on DynamoDB: the evaluated cases of agent evaluations, in the
//! evaluations table (`UPSELL_EVALUATIONS_TABLE`). Item: `pk = EVAL#<evaluation id>`,
//! `sk = CASE#<event id>`, the case as JSON in `case`, and `expiresAt` (epoch seconds, the
//! table's TTL attribute) 90 days on: the report keeps the figures, the cases are working data.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use upsell_core::evaluation::{EvalCase, EvaluationStore};
use upsell_core::ports::PortError;

use super::{Item, from_json, key, n, s, to_json};
use crate::error::port_error;

/// Days a case is kept.
pub const CASE_TTL_DAYS: i64 = 90;

/// Evaluated cases in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoEvaluationStore {
    client: Client,
    table: String,
}

impl DynamoEvaluationStore {
    /// The store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoEvaluationStore {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

/// The partition of an evaluation.
pub fn evaluation_pk(evaluation_id: &str) -> String {
    format!("EVAL#{evaluation_id}")
}

#[async_trait]
impl EvaluationStore for DynamoEvaluationStore {
    async fn put_case(&self, case: &EvalCase) -> Result<(), PortError> {
        let mut item: Item = key(
            evaluation_pk(&case.evaluation_id),
            format!("CASE#{}", case.event_id),
        );
        item.insert("case".into(), s(to_json(case, "evaluation case")?));
        let expires = chrono::Utc::now().timestamp() + CASE_TTL_DAYS * 86_400;
        item.insert("expiresAt".into(), n(expires));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| port_error("DynamoDB PutItem (evaluation case)", e))?;
        Ok(())
    }

    async fn cases(&self, evaluation_id: &str) -> Result<Vec<EvalCase>, PortError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :case)")
                .set_expression_attribute_names(Some(HashMap::from([
                    ("#pk".to_owned(), "pk".to_owned()),
                    ("#sk".to_owned(), "sk".to_owned()),
                ])))
                .set_expression_attribute_values(Some(HashMap::from([
                    (":pk".to_owned(), s(evaluation_pk(evaluation_id))),
                    (":case".to_owned(), s("CASE#")),
                ])))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("DynamoDB Query (evaluation cases)", e))?;
            for item in page.items.unwrap_or_default() {
                out.push(from_json(&item, "case", &self.table)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }
}
