//! Evaluated cases of agent evaluations ([`EvaluationStore`]) in a DynamoDB-shaped table of the
//! [`TableStore`]: partition `EVAL#<evaluation id>`, sort key `CASE#<event id>`, the case as
//! JSON in attribute `case` (the AWS adapter writes the same items to DynamoDB).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use upsell_core::evaluation::{EvalCase, EvaluationStore};
use upsell_core::ports::PortError;

use crate::tables::{ItemKey, KeyValue, Query, SortCondition, TableStore};

/// The local table's name: the SAM logical id of the evaluations table.
pub const EVALUATIONS_TABLE: &str = "EvaluationsTable";

/// Evaluated cases in SQLite.
pub struct SqliteEvaluationStore {
    tables: Arc<TableStore>,
    table: String,
    written: AtomicU64,
}

impl std::fmt::Debug for SqliteEvaluationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEvaluationStore")
            .field("table", &self.table)
            .finish()
    }
}

/// The partition key of an evaluation.
pub fn partition(evaluation_id: &str) -> String {
    format!("EVAL#{evaluation_id}")
}

impl SqliteEvaluationStore {
    /// The store on `table` of `tables`.
    pub fn new(tables: Arc<TableStore>, table: impl Into<String>) -> Self {
        SqliteEvaluationStore {
            tables,
            table: table.into(),
            written: AtomicU64::new(0),
        }
    }

    /// Cases this process has written through this store (for progress bars).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl EvaluationStore for SqliteEvaluationStore {
    async fn put_case(&self, case: &EvalCase) -> Result<(), PortError> {
        let pk = partition(&case.evaluation_id);
        let sk = format!("CASE#{}", case.event_id);
        let body = serde_json::to_string(case)
            .map_err(|e| PortError::Invalid(format!("case does not serialise: {e}")))?;
        let item = json!({"pk": {"S": pk}, "sk": {"S": sk}, "case": {"S": body}});
        self.tables.put(
            &self.table,
            &ItemKey {
                pk: KeyValue::S(pk.clone()),
                sk: Some(KeyValue::S(sk)),
            },
            &item,
        )?;
        self.written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn cases(&self, evaluation_id: &str) -> Result<Vec<EvalCase>, PortError> {
        let items = self.tables.query(
            &self.table,
            &Query {
                pk: KeyValue::S(partition(evaluation_id)),
                sort: SortCondition::BeginsWith(KeyValue::S("CASE#".into())),
                forward: true,
                limit: None,
                start_after: None,
            },
        )?;
        items
            .iter()
            .map(|item| {
                let body = item
                    .get("case")
                    .and_then(|c| c.get("S"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        PortError::Other(format!("table {}: a case item has no case", self.table))
                    })?;
                serde_json::from_str(body).map_err(|e| {
                    PortError::Other(format!("table {}: corrupt case: {e}", self.table))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cases_round_trip_per_evaluation_in_event_order() {
        let store = SqliteEvaluationStore::new(
            Arc::new(TableStore::in_memory().unwrap()),
            EVALUATIONS_TABLE,
        );
        let case = |eval: &str, ev: &str| EvalCase {
            evaluation_id: eval.into(),
            event_id: ev.into(),
            customer_id: "c1".into(),
            skipped: Some("opted-out".into()),
            candidate: None,
            baseline: None,
        };
        store.put_case(&case("a", "e2")).await.unwrap();
        store.put_case(&case("a", "e1")).await.unwrap();
        store.put_case(&case("b", "e1")).await.unwrap();
        store.put_case(&case("a", "e1")).await.unwrap();
        let got = store.cases("a").await.unwrap();
        assert_eq!(got, vec![case("a", "e1"), case("a", "e2")]);
        assert_eq!(store.cases("b").await.unwrap().len(), 1);
        assert!(store.cases("none").await.unwrap().is_empty());
        assert_eq!(store.written(), 4);
    }
}
