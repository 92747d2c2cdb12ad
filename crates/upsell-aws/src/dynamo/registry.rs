//! [`AgentRegistry`] on DynamoDB (table `AgentRegistryTable`), with the item layout of
//! `upsell_core::registry` (the same items the local SQLite registry keeps): version items,
//! content-addressed templates, the routing item the state machine's LoadRouting state reads,
//! and the history of every transition.
//!
//! This adapter only translates: it reads an agent's items with one consistent Query, asks core
//! for a plan, and executes the plan's conditional puts in one `TransactWriteItems` call. A lost
//! race (another writer of the same agent) is re-read and re-planned a few times, then reported
//! as `PortError::Conflict`.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::Utc;
use semver::Version;
use upsell_core::agent::{AgentSpec, PerformanceMetrics};
use upsell_core::ports::{AgentRegistry, PortError};
use upsell_core::registry::{
    self, AgentState, Attr, Guard, Planned, RegisterRequest, Routing, TransitionRecord,
    TransitionRequest, WritePlan, layout,
};

use super::{Item, key, s};
use crate::error::{error_code, port_error};

/// How often a write that lost a race is retried before `PortError::Conflict`.
const RACE_RETRIES: usize = 5;

/// A core registry item as a DynamoDB item.
pub fn to_item(item: &registry::Item) -> Item {
    item.iter()
        .map(|(k, v)| {
            let v = match v {
                Attr::S(t) => AttributeValue::S(t.clone()),
                Attr::N(t) => AttributeValue::N(t.clone()),
            };
            (k.clone(), v)
        })
        .collect()
}

/// A DynamoDB item as a core registry item (attributes of other types are dropped).
pub fn from_item(item: &Item) -> registry::Item {
    item.iter()
        .filter_map(|(k, v)| match v {
            AttributeValue::S(t) => Some((k.clone(), Attr::S(t.clone()))),
            AttributeValue::N(t) => Some((k.clone(), Attr::N(t.clone()))),
            _ => None,
        })
        .collect()
}

/// The agent registry in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoAgentRegistry {
    client: Client,
    table: String,
}

enum TxOutcome {
    Done,
    /// The version item's condition failed (exists / changed).
    VersionConflict,
    /// Another item's condition failed, or DynamoDB reported a transaction conflict.
    Raced,
}

impl DynamoAgentRegistry {
    /// The registry on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoAgentRegistry {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Items of one agent with `sk` matching `condition` (`:pk` and `:sk` bound), paged.
    async fn query(
        &self,
        agent_id: &str,
        condition: &str,
        sk: &str,
    ) -> Result<Vec<registry::Item>, PortError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .expression_attribute_values(":pk", s(layout::agent_pk(agent_id)))
                .expression_attribute_values(":sk", s(sk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("DynamoDB Query (agent registry)", e))?;
            out.extend(page.items.unwrap_or_default().iter().map(from_item));
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The agent's current state (routing, templates, versions; not the history).
    async fn state(&self, agent_id: &str) -> Result<AgentState, PortError> {
        let items = self
            .query(agent_id, "pk = :pk AND sk >= :sk", layout::STATE_FROM)
            .await?;
        AgentState::from_items(agent_id, &items)
    }

    fn put(&self, put: &registry::Put) -> Result<TransactWriteItem, PortError> {
        let mut p = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(&put.item)));
        p = match put.guard {
            Guard::Absent => p.condition_expression("attribute_not_exists(pk)"),
            Guard::Revision(rev) => p
                .condition_expression("revision = :rev")
                .expression_attribute_values(":rev", AttributeValue::N(rev.to_string())),
            Guard::AbsentOrSame => {
                let hash = put
                    .item
                    .get("sha256")
                    .cloned()
                    .unwrap_or(Attr::S(String::new()));
                let Attr::S(hash) = hash else {
                    return Err(PortError::Invalid("template item without sha256".into()));
                };
                p.condition_expression("attribute_not_exists(pk) OR sha256 = :hash")
                    .expression_attribute_values(":hash", AttributeValue::S(hash))
            }
        };
        let p = p
            .build()
            .map_err(|e| PortError::Invalid(format!("cannot build DynamoDB Put: {e}")))?;
        Ok(TransactWriteItem::builder().put(p).build())
    }

    /// Executes a plan in one transaction.
    async fn execute(&self, plan: &WritePlan) -> Result<TxOutcome, PortError> {
        let items = plan
            .puts
            .iter()
            .map(|p| self.put(p))
            .collect::<Result<Vec<_>, _>>()?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(TxOutcome::Done),
            Err(e) => Self::tx_outcome(e),
        }
    }

    fn tx_outcome(e: SdkError<TransactWriteItemsError>) -> Result<TxOutcome, PortError> {
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) =
            e.as_service_error()
        {
            let first = cancel.cancellation_reasons().first().and_then(|r| r.code());
            if first == Some("ConditionalCheckFailed") {
                return Ok(TxOutcome::VersionConflict);
            }
            // Routing revision moved, a concurrent transaction, or no reasons given: re-read.
            return Ok(TxOutcome::Raced);
        }
        if error_code(&e) == Some("TransactionConflictException") {
            return Ok(TxOutcome::Raced);
        }
        Err(port_error(
            "DynamoDB TransactWriteItems (agent registry)",
            e,
        ))
    }

    fn raced(agent_id: &str, what: impl std::fmt::Display) -> PortError {
        PortError::Conflict(format!(
            "agent {agent_id} changed concurrently {RACE_RETRIES} times while {what}; try again"
        ))
    }
}

#[async_trait]
impl AgentRegistry for DynamoAgentRegistry {
    async fn get(&self, agent_id: &str, version: &Version) -> Result<AgentSpec, PortError> {
        self.state(agent_id)
            .await?
            .version(version)
            .map(|v| v.spec.clone())
            .ok_or_else(|| registry::not_registered(agent_id, version))
    }

    async fn list_versions(&self, agent_id: &str) -> Result<Vec<AgentSpec>, PortError> {
        Ok(self.state(agent_id).await?.specs())
    }

    async fn list_all(&self) -> Result<Vec<AgentSpec>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk >= :sk")
                .expression_attribute_values(":sk", s(layout::STATE_FROM))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("DynamoDB Scan (agent registry)", e))?;
            items.extend(page.items.unwrap_or_default().iter().map(from_item));
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        registry::specs_from_items(&items)
    }

    async fn register(&self, spec: &AgentSpec, request: &RegisterRequest) -> Result<(), PortError> {
        for _ in 0..RACE_RETRIES {
            let state = self.state(&spec.agent_id).await?;
            let plan = registry::plan_register(&state, spec, request, Utc::now())?;
            match self.execute(&plan).await? {
                TxOutcome::Done => return Ok(()),
                TxOutcome::VersionConflict => {
                    return Err(registry::already_registered(&spec.agent_id, &spec.version));
                }
                TxOutcome::Raced => continue,
            }
        }
        Err(Self::raced(
            &spec.agent_id,
            format_args!("registering version {}", spec.version),
        ))
    }

    async fn transition(
        &self,
        agent_id: &str,
        version: &Version,
        request: &TransitionRequest,
    ) -> Result<AgentSpec, PortError> {
        for _ in 0..RACE_RETRIES {
            let state = self.state(agent_id).await?;
            let plan = match registry::plan_transition(&state, version, request, Utc::now())? {
                Planned::Unchanged(spec) => return Ok(*spec),
                Planned::Write(plan) => plan,
            };
            match self.execute(&plan).await? {
                TxOutcome::Done => return Ok(plan.spec),
                TxOutcome::VersionConflict | TxOutcome::Raced => continue,
            }
        }
        Err(Self::raced(
            agent_id,
            format_args!("moving version {version}"),
        ))
    }

    async fn routing(&self, agent_id: &str) -> Result<Routing, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(layout::agent_pk(agent_id), layout::ROUTING_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("DynamoDB GetItem (routing)", e))?;
        Routing::from_item(out.item.as_ref().map(from_item).as_ref())
    }

    async fn history(&self, agent_id: &str) -> Result<Vec<TransitionRecord>, PortError> {
        let items = self
            .query(
                agent_id,
                "pk = :pk AND begins_with(sk, :sk)",
                layout::HISTORY_PREFIX,
            )
            .await?;
        registry::history_from_items(&items)
    }

    async fn set_performance(
        &self,
        agent_id: &str,
        version: &Version,
        performance: &PerformanceMetrics,
    ) -> Result<(), PortError> {
        for _ in 0..RACE_RETRIES {
            let state = self.state(agent_id).await?;
            let stored = state
                .version(version)
                .ok_or_else(|| registry::not_registered(agent_id, version))?;
            let put = self.put(&registry::plan_performance(stored, performance)?)?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(put)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) => match Self::tx_outcome(e)? {
                    TxOutcome::Done => return Ok(()),
                    TxOutcome::VersionConflict | TxOutcome::Raced => continue,
                },
            }
        }
        Err(Self::raced(
            agent_id,
            format_args!("updating the performance of version {version}"),
        ))
    }
}
