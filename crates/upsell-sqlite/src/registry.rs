//! The local agent registry: [`AgentRegistry`] in the local DynamoDB table store
//! ([`TableStore`]), with the item layout of `upsell_core::registry` (the same items the DynamoDB
//! adapter writes), so the state machine's LoadRouting state (`dynamodb:getItem`) reads the
//! routing item this registry maintains, as it does in AWS.
//!
//! This adapter only translates: it reads an agent's items into
//! [`upsell_core::registry::AgentState`], asks core for a plan, and executes the plan's
//! conditional puts in one SQLite transaction.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use semver::Version;
use serde_json::Value;
use upsell_core::agent::{AgentSpec, PerformanceMetrics};
use upsell_core::ports::{AgentRegistry, PortError};
use upsell_core::registry::{
    self, AgentState, Guard, Item, Planned, RegisterRequest, Routing, TransitionRecord,
    TransitionRequest, WritePlan, layout,
};

use crate::tables::{ItemKey, KeyValue, Query, SortCondition, TableStore, Transaction};

/// The table's local name: the SAM logical id of the registry table.
pub const AGENT_REGISTRY_TABLE: &str = "AgentRegistryTable";

/// The key of an item of an agent.
pub fn agent_key(agent_id: &str, sk: impl Into<String>) -> ItemKey {
    ItemKey {
        pk: KeyValue::S(layout::agent_pk(agent_id)),
        sk: Some(KeyValue::S(sk.into())),
    }
}

/// The agent registry in the local table store.
pub struct SqliteAgentRegistry {
    tables: Arc<TableStore>,
    table: String,
    cache: Option<Mutex<VersionCache>>,
}

/// Parsed versions per agent, valid for one [`TableStore::table_version`] of the table.
#[derive(Debug, Default)]
struct VersionCache {
    version: Option<i64>,
    agents: HashMap<String, Arc<Vec<AgentSpec>>>,
}

impl std::fmt::Debug for SqliteAgentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAgentRegistry")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn corrupt(table: &str, what: impl std::fmt::Display) -> PortError {
    PortError::Other(format!("corrupt item in table {table}: {what}"))
}

/// A core item as the table store's DynamoDB JSON.
fn to_json(item: &Item) -> Result<Value, PortError> {
    serde_json::to_value(item).map_err(|e| PortError::Invalid(format!("registry item: {e}")))
}

/// The query for an agent's items from `sk >= from`.
fn agent_query(agent_id: &str, sort: SortCondition) -> Query {
    Query {
        pk: KeyValue::S(layout::agent_pk(agent_id)),
        sort,
        forward: true,
        limit: None,
        start_after: None,
    }
}

/// The items that make up an agent's current state (history skipped).
fn state_query(agent_id: &str) -> Query {
    agent_query(
        agent_id,
        SortCondition::Ge(KeyValue::S(layout::STATE_FROM.into())),
    )
}

impl SqliteAgentRegistry {
    /// The registry on `table` of `tables` (locally the table's name is its SAM logical id,
    /// [`AGENT_REGISTRY_TABLE`]).
    ///
    /// Reads (`get`, `list_versions`) are cached per agent until the table changes, which a
    /// trigger counts ([`TableStore::track_versions`]) whoever writes it; a table name that
    /// cannot be tracked is read uncached.
    pub fn new(tables: Arc<TableStore>, table: impl Into<String>) -> Self {
        let table = table.into();
        let cached = tables.track_versions(&table).is_ok();
        SqliteAgentRegistry {
            tables,
            table,
            cache: cached.then(|| Mutex::new(VersionCache::default())),
        }
    }

    /// Opens (and creates) the registry in the SQLite file at `path`, table
    /// [`AGENT_REGISTRY_TABLE`].
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Ok(Self::new(
            Arc::new(TableStore::open(path)?),
            AGENT_REGISTRY_TABLE,
        ))
    }

    /// A registry in memory (tests), table [`AGENT_REGISTRY_TABLE`].
    pub fn in_memory() -> Result<Self, PortError> {
        Ok(Self::new(
            Arc::new(TableStore::in_memory()?),
            AGENT_REGISTRY_TABLE,
        ))
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table store.
    pub fn tables(&self) -> &Arc<TableStore> {
        &self.tables
    }

    fn parse(&self, items: Vec<Value>) -> Result<Vec<Item>, PortError> {
        items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|e| corrupt(&self.table, e)))
            .collect()
    }

    /// The versions of `agent_id` in version order, from the cache while the table is
    /// unchanged.
    fn versions(&self, agent_id: &str) -> Result<Arc<Vec<AgentSpec>>, PortError> {
        let read = || -> Result<Arc<Vec<AgentSpec>>, PortError> {
            // One SELECT reads one consistent snapshot: no (write) transaction needed.
            let items = self.parse(self.tables.query(&self.table, &state_query(agent_id))?)?;
            Ok(Arc::new(AgentState::from_items(agent_id, &items)?.specs()))
        };
        let Some(cache) = &self.cache else {
            return read();
        };
        let version = self.tables.table_version(&self.table)?;
        {
            let c = cache.lock().unwrap_or_else(|e| e.into_inner());
            if c.version == Some(version)
                && let Some(v) = c.agents.get(agent_id)
            {
                return Ok(Arc::clone(v));
            }
        }
        let versions = read()?;
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.version != Some(version) {
            c.agents.clear();
            c.version = Some(version);
        }
        c.agents.insert(agent_id.to_string(), Arc::clone(&versions));
        Ok(versions)
    }

    fn state_in(&self, tx: &Transaction<'_>, agent_id: &str) -> Result<AgentState, PortError> {
        let items = self.parse(tx.query(&self.table, &state_query(agent_id))?)?;
        AgentState::from_items(agent_id, &items)
    }

    /// Executes a plan's conditional puts in `tx`. The state was read in the same
    /// transaction, so a failing guard means a bug, reported as a conflict.
    fn execute(&self, tx: &Transaction<'_>, plan: &WritePlan) -> Result<(), PortError> {
        for put in &plan.puts {
            let (Some(pk), Some(sk)) = (
                put.item.get(layout::PK).and_then(attr_s),
                put.item.get(layout::SK).and_then(attr_s),
            ) else {
                return Err(PortError::Invalid("registry item without a key".into()));
            };
            let key = ItemKey {
                pk: KeyValue::S(pk.to_owned()),
                sk: Some(KeyValue::S(sk.to_owned())),
            };
            let current = tx.get(&self.table, &key)?;
            let holds = match (put.guard, &current) {
                (Guard::Absent, None) | (Guard::AbsentOrSame, None) => true,
                (Guard::Absent, Some(_)) => false,
                (Guard::AbsentOrSame, Some(c)) => {
                    c.get("sha256") == to_json(&put.item)?.get("sha256")
                }
                (Guard::Revision(r), Some(c)) => {
                    c.get("revision")
                        .and_then(|v| v.get("N"))
                        .and_then(Value::as_str)
                        == Some(r.to_string().as_str())
                }
                (Guard::Revision(_), None) => false,
            };
            if !holds {
                return Err(PortError::Conflict(format!(
                    "registry item {pk} {sk} changed during the transaction"
                )));
            }
            tx.put(&self.table, &key, &to_json(&put.item)?)?;
        }
        Ok(())
    }

    fn register_in(
        &self,
        tx: &Transaction<'_>,
        spec: &AgentSpec,
        request: &RegisterRequest,
    ) -> Result<(), PortError> {
        let state = self.state_in(tx, &spec.agent_id)?;
        let plan = registry::plan_register(&state, spec, request, Utc::now())?;
        self.execute(tx, &plan)
    }

    /// The routing item of `agent_id` as stored, i.e. what the ASL's LoadRouting state reads
    /// (no production version, no canary when the agent has no routing item).
    pub fn stored_routing(&self, agent_id: &str) -> Result<Routing, PortError> {
        let item = self
            .tables
            .get(&self.table, &agent_key(agent_id, layout::ROUTING_SK))?
            .map(|v| serde_json::from_value::<Item>(v).map_err(|e| corrupt(&self.table, e)))
            .transpose()?;
        Routing::from_item(item.as_ref())
    }

    /// Registers every spec that is not registered yet (first-run seeding), all in one
    /// transaction, recorded with `request`; returns how many were added.
    pub fn seed(&self, specs: &[AgentSpec], request: &RegisterRequest) -> Result<usize, PortError> {
        self.tables.transact(|tx| {
            let mut added = 0;
            for spec in specs {
                let state = self.state_in(tx, &spec.agent_id)?;
                if state.version(&spec.version).is_none() {
                    self.register_in(tx, spec, request)?;
                    added += 1;
                }
            }
            Ok(added)
        })
    }
}

fn attr_s(a: &registry::Attr) -> Option<&str> {
    match a {
        registry::Attr::S(s) => Some(s),
        registry::Attr::N(_) => None,
    }
}

#[async_trait]
impl AgentRegistry for SqliteAgentRegistry {
    async fn get(&self, agent_id: &str, version: &Version) -> Result<AgentSpec, PortError> {
        self.versions(agent_id)?
            .iter()
            .find(|s| &s.version == version)
            .cloned()
            .ok_or_else(|| registry::not_registered(agent_id, version))
    }

    async fn list_versions(&self, agent_id: &str) -> Result<Vec<AgentSpec>, PortError> {
        Ok(self.versions(agent_id)?.as_ref().clone())
    }

    async fn list_all(&self) -> Result<Vec<AgentSpec>, PortError> {
        let items = self.parse(self.tables.scan(&self.table, None)?)?;
        registry::specs_from_items(&items)
    }

    async fn register(&self, spec: &AgentSpec, request: &RegisterRequest) -> Result<(), PortError> {
        self.tables
            .transact(|tx| self.register_in(tx, spec, request))
    }

    async fn transition(
        &self,
        agent_id: &str,
        version: &Version,
        request: &TransitionRequest,
    ) -> Result<AgentSpec, PortError> {
        self.tables.transact(|tx| {
            let state = self.state_in(tx, agent_id)?;
            match registry::plan_transition(&state, version, request, Utc::now())? {
                Planned::Unchanged(spec) => Ok(*spec),
                Planned::Write(plan) => {
                    self.execute(tx, &plan)?;
                    Ok(plan.spec)
                }
            }
        })
    }

    async fn routing(&self, agent_id: &str) -> Result<Routing, PortError> {
        self.stored_routing(agent_id)
    }

    async fn history(&self, agent_id: &str) -> Result<Vec<TransitionRecord>, PortError> {
        let query = agent_query(
            agent_id,
            SortCondition::BeginsWith(KeyValue::S(layout::HISTORY_PREFIX.into())),
        );
        let items = self.parse(self.tables.query(&self.table, &query)?)?;
        registry::history_from_items(&items)
    }

    async fn set_performance(
        &self,
        agent_id: &str,
        version: &Version,
        performance: &PerformanceMetrics,
    ) -> Result<(), PortError> {
        self.tables.transact(|tx| {
            let state = self.state_in(tx, agent_id)?;
            let stored = state
                .version(version)
                .ok_or_else(|| registry::not_registered(agent_id, version))?;
            let put = registry::plan_performance(stored, performance)?;
            tx.put(
                &self.table,
                &agent_key(agent_id, layout::version_sk(version)),
                &to_json(&put.item)?,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use upsell_core::agent::AgentStatus;
    use upsell_core::registry::{Actor, ActorKind};
    use upsell_core::registry_contract::spec;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn seeding() -> RegisterRequest {
        RegisterRequest {
            reason: "seed agents".into(),
            actor: Actor::new(ActorKind::Seed, "test"),
        }
    }

    async fn fresh() -> Option<SqliteAgentRegistry> {
        Some(SqliteAgentRegistry::in_memory().unwrap())
    }

    // The one AgentRegistry contract (upsell_core::registry_contract), on SQLite.
    mod contract {
        use super::fresh;
        upsell_core::agent_registry_contract!(fresh());
    }

    #[tokio::test]
    async fn a_version_written_through_the_port_is_the_documented_item() {
        let r = SqliteAgentRegistry::in_memory().unwrap();
        let s1 = spec("1.2.0", AgentStatus::Production, 100);
        r.register(&s1, &seeding()).await.unwrap();
        let key = ItemKey {
            pk: KeyValue::S("AGENT#upsell-generator".into()),
            sk: Some(KeyValue::S("VERSION#1.2.0".into())),
        };
        let item = r.tables().get("AgentRegistryTable", &key).unwrap().unwrap();
        assert_eq!(item["pk"], json!({"S": "AGENT#upsell-generator"}));
        assert_eq!(item["sk"], json!({"S": "VERSION#1.2.0"}));
        assert_eq!(item["agentId"], json!({"S": "upsell-generator"}));
        assert_eq!(item["version"], json!({"S": "1.2.0"}));
        assert_eq!(item["status"], json!({"S": "production"}));
        assert_eq!(item["trafficWeight"], json!({"N": "100"}));
        assert_eq!(item["revision"], json!({"N": "1"}));
        let hash = registry::template_hash(&s1.prompt.system);
        assert_eq!(item["systemTemplate"], json!({"S": hash}));
        let template = r
            .tables()
            .get(
                "AgentRegistryTable",
                &agent_key("upsell-generator", layout::template_sk(&hash)),
            )
            .unwrap()
            .unwrap();
        assert_eq!(template["text"], json!({"S": s1.prompt.system}));
        let routing = r
            .tables()
            .get(
                "AgentRegistryTable",
                &agent_key("upsell-generator", "ROUTING"),
            )
            .unwrap()
            .unwrap();
        assert_eq!(routing["productionVersion"], json!({"S": "1.2.0"}));
        assert_eq!(routing["canaryWeight"], json!({"N": "0"}));
        let history = r
            .tables()
            .get(
                "AgentRegistryTable",
                &agent_key("upsell-generator", "HISTORY#000000000001"),
            )
            .unwrap()
            .unwrap();
        assert_eq!(history["to"], json!({"S": "production"}));
        assert_eq!(r.get("upsell-generator", &v("1.2.0")).await.unwrap(), s1);
    }

    #[tokio::test]
    async fn seeding_adds_only_missing_versions_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upsell.db");
        let seeds = [
            spec("1.0.0", AgentStatus::Production, 90),
            spec("1.1.0", AgentStatus::Canary, 10),
        ];
        assert_eq!(
            SqliteAgentRegistry::open(&path)
                .unwrap()
                .seed(&seeds, &seeding())
                .unwrap(),
            2
        );
        let r = SqliteAgentRegistry::open(&path).unwrap();
        assert_eq!(r.seed(&seeds, &seeding()).unwrap(), 0);
        assert_eq!(r.history("upsell-generator").await.unwrap().len(), 2);
        assert_eq!(
            r.stored_routing("upsell-generator").unwrap(),
            Routing {
                production_version: Some(v("1.0.0")),
                canary_version: Some(v("1.1.0")),
                canary_weight: 10,
            }
        );
        // A seed with an invalid spec writes none of the batch.
        let mut bad = spec("5.0.0", AgentStatus::Draft, 0);
        bad.agent_id = "Bad Id".into();
        let batch = [spec("4.0.0", AgentStatus::Draft, 0), bad];
        assert!(matches!(
            r.seed(&batch, &seeding()),
            Err(PortError::Invalid(_))
        ));
        assert!(matches!(
            r.get("upsell-generator", &v("4.0.0")).await,
            Err(PortError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn cached_reads_see_writes_from_other_registries_connections_and_raw_puts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upsell.db");
        let shared = Arc::new(TableStore::open(&path).unwrap());
        let a = SqliteAgentRegistry::new(shared.clone(), AGENT_REGISTRY_TABLE);
        let b = SqliteAgentRegistry::new(shared.clone(), AGENT_REGISTRY_TABLE);
        let other_process = SqliteAgentRegistry::open(&path).unwrap();
        let status = |specs: Vec<AgentSpec>| specs.iter().map(|s| s.status).collect::<Vec<_>>();
        let req = TransitionRequest {
            to: AgentStatus::Evaluating,
            weight: 0,
            reason: "test".into(),
            actor: Actor::new(ActorKind::User, "dana"),
        };

        a.register(&spec("1.0.0", AgentStatus::Draft, 0), &seeding())
            .await
            .unwrap();
        assert_eq!(
            status(a.list_versions("upsell-generator").await.unwrap()),
            [AgentStatus::Draft]
        );

        // Another registry on the same connection.
        b.transition("upsell-generator", &v("1.0.0"), &req)
            .await
            .unwrap();
        assert_eq!(
            a.get("upsell-generator", &v("1.0.0")).await.unwrap().status,
            AgentStatus::Evaluating
        );

        // Another connection (another process).
        other_process
            .register(&spec("2.0.0", AgentStatus::Draft, 0), &seeding())
            .await
            .unwrap();
        assert_eq!(a.list_versions("upsell-generator").await.unwrap().len(), 2);

        // A raw table write of a version item (its templates are those of 1.0.0).
        let (raw, _) = registry::version_items(&spec("3.0.0", AgentStatus::Draft, 0), 1).unwrap();
        shared
            .put(
                AGENT_REGISTRY_TABLE,
                &agent_key("upsell-generator", layout::version_sk(&v("3.0.0"))),
                &to_json(&raw).unwrap(),
            )
            .unwrap();
        assert!(a.get("upsell-generator", &v("3.0.0")).await.is_ok());
        assert!(matches!(
            a.get("upsell-generator", &v("9.0.0")).await,
            Err(PortError::NotFound(_))
        ));
    }

    #[test]
    fn only_plain_table_names_are_tracked() {
        let t = TableStore::in_memory().unwrap();
        assert!(t.track_versions("Agents_v2-prod.x").is_ok());
        let err = t
            .track_versions("x'; DROP TABLE ddb_items; --")
            .unwrap_err();
        assert!(err.to_string().contains("can be tracked"), "{err}");
        assert_eq!(t.table_version("Agents_v2-prod.x").unwrap(), 0);
        // Names that differ only in punctuation are counted apart.
        t.track_versions("a-b").unwrap();
        t.track_versions("a_b").unwrap();
        let key = ItemKey {
            pk: KeyValue::S("k".into()),
            sk: None,
        };
        t.put("a_b", &key, &json!({"pk": {"S": "k"}})).unwrap();
        assert_eq!(t.table_version("a_b").unwrap(), 1);
        assert_eq!(t.table_version("a-b").unwrap(), 0);
    }
}
