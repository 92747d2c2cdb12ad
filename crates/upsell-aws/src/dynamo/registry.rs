//! [`AgentRegistry`] on DynamoDB, with the routing item the state machine reads.
//!
//! Items (table `AgentRegistryTable`), all under `pk = AGENT#<agent id>`:
//! - one per version: `sk = VERSION#<semver>`, `agentId`, `version`, `status`, `trafficWeight`,
//!   `revision` (N, bumped on every change), `spec` (the AgentSpec as JSON);
//! - the routing item: `sk = ROUTING`, `agentId`, `productionVersion` (absent when none),
//!   `canaryVersion` (absent when none), `canaryWeight` (N), `revision`, `updatedAt`. The
//!   state machine's LoadRouting state reads it with `dynamodb:getItem`.
//!
//! Every change to a version that can move traffic (register, set_status) rewrites the routing
//! item in the same `TransactWriteItems` call, guarded by both items' revisions, so the routing
//! item never disagrees with the versions. A lost race is retried a few times, then reported as
//! `PortError::Conflict`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::Utc;
use semver::Version;
use upsell_core::agent::{AgentSpec, AgentStatus, PerformanceMetrics};
use upsell_core::ports::{AgentRegistry, PortError};

use super::{Item, from_json, get_n, get_s, key, n, s, serde_name, to_json};
use crate::error::{error_code, port_error};

/// Sort key of the routing item.
pub const ROUTING_SK: &str = "ROUTING";
/// How often a write that lost a race is retried before `PortError::Conflict`.
const RACE_RETRIES: usize = 5;

/// Partition key of an agent's items.
pub fn agent_pk(agent_id: &str) -> String {
    format!("AGENT#{agent_id}")
}

/// Sort key of a version item.
pub fn version_sk(version: &Version) -> String {
    format!("VERSION#{version}")
}

/// Which versions serve traffic: what the routing item holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    /// The production version (the one with the highest weight if several).
    pub production_version: Option<Version>,
    /// The canary version, if any.
    pub canary_version: Option<Version>,
    /// Percent of customers (by sticky bucket) routed to the canary; 0 without a canary.
    pub canary_weight: u8,
}

impl Routing {
    /// Routing derived from an agent's versions: the production and canary versions with the
    /// highest traffic weight (ties: the higher version).
    pub fn of<'a>(specs: impl IntoIterator<Item = &'a AgentSpec>) -> Routing {
        let mut production: Option<&AgentSpec> = None;
        let mut canary: Option<&AgentSpec> = None;
        let better = |cur: Option<&AgentSpec>, s: &'a AgentSpec| {
            cur.is_none_or(|c| (c.traffic_weight, &c.version) < (s.traffic_weight, &s.version))
        };
        for spec in specs {
            match spec.status {
                AgentStatus::Production if better(production, spec) => production = Some(spec),
                AgentStatus::Canary if better(canary, spec) => canary = Some(spec),
                _ => {}
            }
        }
        Routing {
            production_version: production.map(|p| p.version.clone()),
            canary_version: canary.map(|c| c.version.clone()),
            canary_weight: canary.map_or(0, |c| c.traffic_weight),
        }
    }
}

/// An agent's items as read in one consistent query.
struct AgentItems {
    versions: Vec<(AgentSpec, u64)>,
    routing_revision: Option<u64>,
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
    /// The routing item changed under us, or DynamoDB reported a transaction conflict.
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

    /// The routing item of an agent as stored (what the state machine sees).
    pub async fn routing(&self, agent_id: &str) -> Result<Routing, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(agent_pk(agent_id), ROUTING_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("DynamoDB GetItem (routing)", e))?;
        let Some(item) = out.item else {
            return Ok(Routing::default());
        };
        let version = |attr: &str| -> Result<Option<Version>, PortError> {
            get_s(&item, attr)
                .map(|v| {
                    Version::parse(v).map_err(|e| {
                        PortError::Other(format!(
                            "routing item of {agent_id} has an invalid {attr} {v:?}: {e}"
                        ))
                    })
                })
                .transpose()
        };
        Ok(Routing {
            production_version: version("productionVersion")?,
            canary_version: version("canaryVersion")?,
            canary_weight: get_n(&item, "canaryWeight").unwrap_or(0),
        })
    }

    async fn agent_items(&self, agent_id: &str) -> Result<AgentItems, PortError> {
        let mut versions = Vec::new();
        let mut routing_revision = None;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(agent_pk(agent_id)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("DynamoDB Query (agent versions)", e))?;
            for item in page.items.unwrap_or_default() {
                match get_s(&item, "sk") {
                    Some(ROUTING_SK) => {
                        routing_revision = Some(get_n(&item, "revision").unwrap_or(0))
                    }
                    Some(sk) if sk.starts_with("VERSION#") => {
                        let spec: AgentSpec = from_json(&item, "spec", &self.table)?;
                        versions.push((spec, get_n(&item, "revision").unwrap_or(0)));
                    }
                    _ => {}
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        versions.sort_by(|a, b| a.0.version.cmp(&b.0.version));
        Ok(AgentItems {
            versions,
            routing_revision,
        })
    }

    fn version_item(&self, spec: &AgentSpec, revision: u64) -> Result<Item, PortError> {
        let mut item = key(agent_pk(&spec.agent_id), version_sk(&spec.version));
        item.extend([
            ("agentId".to_owned(), s(&spec.agent_id)),
            ("version".to_owned(), s(spec.version.to_string())),
            ("status".to_owned(), s(serde_name(&spec.status))),
            ("trafficWeight".to_owned(), n(spec.traffic_weight)),
            ("revision".to_owned(), n(revision)),
            ("spec".to_owned(), s(to_json(spec, "agent spec")?)),
        ]);
        Ok(item)
    }

    fn routing_item(&self, agent_id: &str, routing: &Routing, revision: u64) -> Item {
        let mut item = key(agent_pk(agent_id), ROUTING_SK);
        item.extend([
            ("agentId".to_owned(), s(agent_id)),
            ("canaryWeight".to_owned(), n(routing.canary_weight)),
            ("revision".to_owned(), n(revision)),
            ("updatedAt".to_owned(), s(Utc::now().to_rfc3339())),
        ]);
        if let Some(v) = &routing.production_version {
            item.insert("productionVersion".into(), s(v.to_string()));
        }
        if let Some(v) = &routing.canary_version {
            item.insert("canaryVersion".into(), s(v.to_string()));
        }
        item
    }

    /// A conditional put: `None` = the item must not exist, `Some(rev)` = its revision is `rev`.
    fn guarded_put(
        &self,
        item: Item,
        expected: Option<u64>,
    ) -> Result<TransactWriteItem, PortError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(rev) => put
                .condition_expression("revision = :rev")
                .expression_attribute_values(":rev", n(rev)),
        };
        let put = put
            .build()
            .map_err(|e| PortError::Invalid(format!("cannot build DynamoDB Put: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Writes a version item and the routing item in one transaction.
    async fn write_with_routing(
        &self,
        version_item: TransactWriteItem,
        agent_id: &str,
        routing: &Routing,
        routing_revision: Option<u64>,
    ) -> Result<TxOutcome, PortError> {
        let next = routing_revision.map_or(1, |r| r + 1);
        let routing_put =
            self.guarded_put(self.routing_item(agent_id, routing, next), routing_revision)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(version_item)
            .transact_items(routing_put)
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
            let codes: Vec<Option<&str>> = cancel
                .cancellation_reasons()
                .iter()
                .map(|r| r.code())
                .collect();
            if codes.first().copied().flatten() == Some("ConditionalCheckFailed") {
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

    fn check(spec: &AgentSpec) -> Result<(), PortError> {
        let problems = spec.check();
        if problems.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        Err(PortError::Invalid(format!(
            "agent {}@{} is invalid: {}",
            spec.agent_id,
            spec.version,
            list.join("; ")
        )))
    }
}

#[async_trait]
impl AgentRegistry for DynamoAgentRegistry {
    async fn get(&self, agent_id: &str, version: &Version) -> Result<AgentSpec, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(agent_pk(agent_id), version_sk(version))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("DynamoDB GetItem (agent version)", e))?;
        match out.item {
            Some(item) => from_json(&item, "spec", &self.table),
            None => Err(PortError::NotFound(format!(
                "agent {agent_id} version {version} is not registered"
            ))),
        }
    }

    async fn list_versions(&self, agent_id: &str) -> Result<Vec<AgentSpec>, PortError> {
        Ok(self
            .agent_items(agent_id)
            .await?
            .versions
            .into_iter()
            .map(|(spec, _)| spec)
            .collect())
    }

    async fn list_all(&self) -> Result<Vec<AgentSpec>, PortError> {
        let mut specs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(sk, :v)")
                .expression_attribute_values(":v", s("VERSION#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| port_error("DynamoDB Scan (agent registry)", e))?;
            for item in page.items.unwrap_or_default() {
                specs.push(from_json::<AgentSpec>(&item, "spec", &self.table)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        specs.sort_by(|a, b| (&a.agent_id, &a.version).cmp(&(&b.agent_id, &b.version)));
        Ok(specs)
    }

    async fn register(&self, spec: &AgentSpec) -> Result<(), PortError> {
        Self::check(spec)?;
        let exists = || {
            PortError::Conflict(format!(
                "agent {} version {} is already registered (versions are immutable)",
                spec.agent_id, spec.version
            ))
        };
        for _ in 0..RACE_RETRIES {
            let items = self.agent_items(&spec.agent_id).await?;
            if items
                .versions
                .iter()
                .any(|(v, _)| v.version == spec.version)
            {
                return Err(exists());
            }
            let routing = Routing::of(items.versions.iter().map(|(v, _)| v).chain([spec]));
            let put = self.guarded_put(self.version_item(spec, 1)?, None)?;
            match self
                .write_with_routing(put, &spec.agent_id, &routing, items.routing_revision)
                .await?
            {
                TxOutcome::Done => return Ok(()),
                TxOutcome::VersionConflict => return Err(exists()),
                TxOutcome::Raced => continue,
            }
        }
        Err(PortError::Conflict(format!(
            "agent {} changed concurrently {RACE_RETRIES} times while registering version {}; try again",
            spec.agent_id, spec.version
        )))
    }

    async fn set_status(
        &self,
        agent_id: &str,
        version: &Version,
        status: AgentStatus,
        traffic_weight: u8,
    ) -> Result<AgentSpec, PortError> {
        for _ in 0..RACE_RETRIES {
            let items = self.agent_items(agent_id).await?;
            let Some((current, revision)) =
                items.versions.iter().find(|(v, _)| &v.version == version)
            else {
                return Err(PortError::NotFound(format!(
                    "agent {agent_id} version {version} is not registered"
                )));
            };
            if current.status != status && !current.status.can_transition_to(status) {
                return Err(PortError::Invalid(format!(
                    "agent {agent_id}@{version} cannot go from {} to {}",
                    current.status.as_str(),
                    status.as_str()
                )));
            }
            let mut updated = current.clone();
            updated.status = status;
            updated.traffic_weight = traffic_weight;
            Self::check(&updated)?;
            let routing = Routing::of(
                items.versions.iter().map(
                    |(v, _)| {
                        if &v.version == version { &updated } else { v }
                    },
                ),
            );
            let put =
                self.guarded_put(self.version_item(&updated, revision + 1)?, Some(*revision))?;
            match self
                .write_with_routing(put, agent_id, &routing, items.routing_revision)
                .await?
            {
                TxOutcome::Done => return Ok(updated),
                TxOutcome::VersionConflict | TxOutcome::Raced => continue,
            }
        }
        Err(PortError::Conflict(format!(
            "agent {agent_id}@{version} changed concurrently {RACE_RETRIES} times; try again"
        )))
    }

    async fn set_performance(
        &self,
        agent_id: &str,
        version: &Version,
        performance: &PerformanceMetrics,
    ) -> Result<(), PortError> {
        for _ in 0..RACE_RETRIES {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(agent_pk(agent_id), version_sk(version))))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| port_error("DynamoDB GetItem (agent version)", e))?;
            let Some(item) = out.item else {
                return Err(PortError::NotFound(format!(
                    "agent {agent_id} version {version} is not registered"
                )));
            };
            let revision: u64 = get_n(&item, "revision").unwrap_or(0);
            let mut spec: AgentSpec = from_json(&item, "spec", &self.table)?;
            spec.performance = Some(performance.clone());
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(self.version_item(&spec, revision + 1)?))
                .condition_expression("revision = :rev")
                .set_expression_attribute_values(Some(HashMap::from([(
                    ":rev".to_owned(),
                    AttributeValue::N(revision.to_string()),
                )])))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => continue,
                Err(e) => return Err(port_error("DynamoDB PutItem (agent performance)", e)),
            }
        }
        Err(PortError::Conflict(format!(
            "agent {agent_id}@{version} changed concurrently {RACE_RETRIES} times; try again"
        )))
    }
}
