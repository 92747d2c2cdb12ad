//! The local agent registry, kept in the local DynamoDB table store ([`TableStore`]) with the
//! item layout of the DynamoDB adapter (`upsell-aws`), so the state machine's LoadRouting state
//! (`dynamodb:getItem`) reads the routing item this registry maintains, as it does in AWS.
//!
//! Items (table `AgentRegistryTable` by default), all under `pk = AGENT#<agent id>`:
//! - one per version: `sk = VERSION#<semver>`, `agentId`, `version`, `status`, `trafficWeight`
//!   (N), `revision` (N, bumped on every change), `spec` (the AgentSpec as JSON);
//! - the routing item: `sk = ROUTING`, `agentId`, `productionVersion` (absent when none),
//!   `canaryVersion` (absent when none), `canaryWeight` (N, 0 without a canary), `revision`,
//!   `updatedAt`.
//!
//! `register`, `set_status` and `seed` rewrite the routing item in the same transaction as the
//! version item, so the two never disagree.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use semver::Version;
use serde_json::{Value, json};
use upsell_core::agent::{AgentSpec, AgentStatus, PerformanceMetrics};
use upsell_core::ports::{AgentRegistry, PortError};

use crate::tables::{ItemKey, KeyValue, Query, SortCondition, TableStore, Transaction};

/// The table's local name: the SAM logical id of the registry table.
pub const AGENT_REGISTRY_TABLE: &str = "AgentRegistryTable";
/// Sort key of the routing item.
pub const ROUTING_SK: &str = "ROUTING";
/// Sort key prefix of version items.
pub const VERSION_SK_PREFIX: &str = "VERSION#";

/// Partition key of an agent's items.
pub fn agent_pk(agent_id: &str) -> String {
    format!("AGENT#{agent_id}")
}

/// Sort key of a version item.
pub fn version_sk(version: &Version) -> String {
    format!("{VERSION_SK_PREFIX}{version}")
}

/// The key of an item of an agent.
pub fn agent_key(agent_id: &str, sk: impl Into<String>) -> ItemKey {
    ItemKey {
        pk: KeyValue::S(agent_pk(agent_id)),
        sk: Some(KeyValue::S(sk.into())),
    }
}

/// Which versions of an agent serve traffic: what the routing item holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    /// The production version (the one with the highest weight if several).
    pub production_version: Option<Version>,
    /// The canary version, if any (the one with the highest weight if several).
    pub canary_version: Option<Version>,
    /// Percent of customers (by sticky bucket) routed to the canary; 0 without a canary.
    pub canary_weight: u8,
}

impl Routing {
    /// Routing derived from an agent's versions: the production and canary versions with the
    /// highest traffic weight (ties: the higher version), as the DynamoDB adapter derives it.
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

fn not_found(agent_id: &str, version: &Version) -> PortError {
    PortError::NotFound(format!("agent {agent_id}@{version} is not registered"))
}

fn s(v: impl Into<String>) -> Value {
    json!({ "S": v.into() })
}

fn n(v: impl ToString) -> Value {
    json!({ "N": v.to_string() })
}

fn get_s<'a>(item: &'a Value, attr: &str) -> Option<&'a str> {
    item.get(attr)?.get("S")?.as_str()
}

fn get_n<T: std::str::FromStr>(item: &Value, attr: &str) -> Option<T> {
    item.get(attr)?.get("N")?.as_str()?.parse().ok()
}

/// The query for every version item of an agent.
fn versions_query(agent_id: &str) -> Query {
    Query {
        pk: KeyValue::S(agent_pk(agent_id)),
        sort: SortCondition::BeginsWith(KeyValue::S(VERSION_SK_PREFIX.into())),
        forward: true,
        limit: None,
        start_after: None,
    }
}

/// A version item as read: the spec and its revision.
struct Stored {
    spec: AgentSpec,
    revision: u64,
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

    /// The versions of `agent_id` in version order, from the cache while the table is
    /// unchanged.
    fn versions(&self, agent_id: &str) -> Result<Arc<Vec<AgentSpec>>, PortError> {
        let read = || -> Result<Arc<Vec<AgentSpec>>, PortError> {
            // One SELECT reads one consistent snapshot: no (write) transaction needed.
            let items = self.tables.query(&self.table, &versions_query(agent_id))?;
            let versions = self.parse_versions(&items)?;
            Ok(Arc::new(versions.into_iter().map(|v| v.spec).collect()))
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

    fn parse_version(&self, item: &Value) -> Result<Stored, PortError> {
        let json = get_s(item, "spec").ok_or_else(|| corrupt(&self.table, "no spec"))?;
        let spec = serde_json::from_str(json).map_err(|e| corrupt(&self.table, e))?;
        Ok(Stored {
            spec,
            revision: get_n(item, "revision").unwrap_or(0),
        })
    }

    fn version_item(spec: &AgentSpec, revision: u64) -> Result<Value, PortError> {
        let json = serde_json::to_string(spec)
            .map_err(|e| PortError::Invalid(format!("agent spec is not serialisable: {e}")))?;
        Ok(json!({
            "pk": s(agent_pk(&spec.agent_id)),
            "sk": s(version_sk(&spec.version)),
            "agentId": s(&spec.agent_id),
            "version": s(spec.version.to_string()),
            "status": s(spec.status.as_str()),
            "trafficWeight": n(spec.traffic_weight),
            "revision": n(revision),
            "spec": s(json),
        }))
    }

    fn get_in(
        &self,
        tx: &Transaction<'_>,
        agent_id: &str,
        version: &Version,
    ) -> Result<Option<Stored>, PortError> {
        tx.get(&self.table, &agent_key(agent_id, version_sk(version)))?
            .map(|item| self.parse_version(&item))
            .transpose()
    }

    /// The versions of an agent, in version order.
    fn versions_in(&self, tx: &Transaction<'_>, agent_id: &str) -> Result<Vec<Stored>, PortError> {
        self.parse_versions(&tx.query(&self.table, &versions_query(agent_id))?)
    }

    /// Version items parsed, in version order.
    fn parse_versions(&self, items: &[Value]) -> Result<Vec<Stored>, PortError> {
        let mut out = items
            .iter()
            .map(|item| self.parse_version(item))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.spec.version.cmp(&b.spec.version));
        Ok(out)
    }

    /// Writes a version item and the agent's routing item derived from all its versions
    /// (`spec` replacing the stored version of the same number), in transaction `tx`.
    fn write_with_routing(
        &self,
        tx: &Transaction<'_>,
        spec: &AgentSpec,
        revision: u64,
    ) -> Result<(), PortError> {
        let versions = self.versions_in(tx, &spec.agent_id)?;
        let others = versions
            .iter()
            .map(|v| &v.spec)
            .filter(|v| v.version != spec.version);
        let routing = Routing::of(others.chain([spec]));
        tx.put(
            &self.table,
            &agent_key(&spec.agent_id, version_sk(&spec.version)),
            &Self::version_item(spec, revision)?,
        )?;
        let key = agent_key(&spec.agent_id, ROUTING_SK);
        let routing_revision = tx
            .get(&self.table, &key)?
            .and_then(|item| get_n::<u64>(&item, "revision"))
            .unwrap_or(0)
            + 1;
        let mut item = json!({
            "pk": s(agent_pk(&spec.agent_id)),
            "sk": s(ROUTING_SK),
            "agentId": s(&spec.agent_id),
            "canaryWeight": n(routing.canary_weight),
            "revision": n(routing_revision),
            "updatedAt": s(Utc::now().to_rfc3339()),
        });
        if let Some(v) = &routing.production_version {
            item["productionVersion"] = s(v.to_string());
        }
        if let Some(v) = &routing.canary_version {
            item["canaryVersion"] = s(v.to_string());
        }
        tx.put(&self.table, &key, &item)
    }

    fn register_in(&self, tx: &Transaction<'_>, spec: &AgentSpec) -> Result<(), PortError> {
        check(spec)?;
        if self.get_in(tx, &spec.agent_id, &spec.version)?.is_some() {
            return Err(PortError::Conflict(format!(
                "agent {}@{} is already registered; versions are immutable, register a new version",
                spec.agent_id, spec.version
            )));
        }
        self.write_with_routing(tx, spec, 1)
    }

    /// The routing item of `agent_id` as stored, i.e. what the ASL's LoadRouting state reads
    /// (no production version, no canary when the agent has no routing item).
    pub fn routing(&self, agent_id: &str) -> Result<Routing, PortError> {
        let Some(item) = self
            .tables
            .get(&self.table, &agent_key(agent_id, ROUTING_SK))?
        else {
            return Ok(Routing::default());
        };
        let version = |attr: &str| {
            get_s(&item, attr)
                .map(|v| {
                    Version::parse(v).map_err(|e| {
                        corrupt(
                            &self.table,
                            format!("routing item of {agent_id} has an invalid {attr} {v:?}: {e}"),
                        )
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

    /// Registers every spec that is not registered yet (first-run seeding), all in one
    /// transaction; returns how many were added.
    pub fn seed(&self, specs: &[AgentSpec]) -> Result<usize, PortError> {
        self.tables.transact(|tx| {
            let mut added = 0;
            for spec in specs {
                if self.get_in(tx, &spec.agent_id, &spec.version)?.is_none() {
                    self.register_in(tx, spec)?;
                    added += 1;
                }
            }
            Ok(added)
        })
    }
}

fn check(spec: &AgentSpec) -> Result<(), PortError> {
    let problems = spec.check();
    if problems.is_empty() {
        Ok(())
    } else {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Err(PortError::Invalid(format!(
            "agent {}@{}: {}",
            spec.agent_id,
            spec.version,
            list.join("; ")
        )))
    }
}

#[async_trait]
impl AgentRegistry for SqliteAgentRegistry {
    async fn get(&self, agent_id: &str, version: &Version) -> Result<AgentSpec, PortError> {
        self.versions(agent_id)?
            .iter()
            .find(|s| &s.version == version)
            .cloned()
            .ok_or_else(|| not_found(agent_id, version))
    }

    async fn list_versions(&self, agent_id: &str) -> Result<Vec<AgentSpec>, PortError> {
        Ok(self.versions(agent_id)?.as_ref().clone())
    }

    async fn list_all(&self) -> Result<Vec<AgentSpec>, PortError> {
        let mut specs = Vec::new();
        for item in self.tables.scan(&self.table, None)? {
            if get_s(&item, "sk").is_some_and(|sk| sk.starts_with(VERSION_SK_PREFIX)) {
                specs.push(self.parse_version(&item)?.spec);
            }
        }
        specs.sort_by(|a, b| (&a.agent_id, &a.version).cmp(&(&b.agent_id, &b.version)));
        Ok(specs)
    }

    async fn register(&self, spec: &AgentSpec) -> Result<(), PortError> {
        self.tables.transact(|tx| self.register_in(tx, spec))
    }

    async fn set_status(
        &self,
        agent_id: &str,
        version: &Version,
        status: AgentStatus,
        traffic_weight: u8,
    ) -> Result<AgentSpec, PortError> {
        self.tables.transact(|tx| {
            let Stored { mut spec, revision } = self
                .get_in(tx, agent_id, version)?
                .ok_or_else(|| not_found(agent_id, version))?;
            if spec.status != status && !spec.status.can_transition_to(status) {
                return Err(PortError::Invalid(format!(
                    "agent {agent_id}@{version} cannot go from {} to {}",
                    spec.status.as_str(),
                    status.as_str()
                )));
            }
            spec.status = status;
            spec.traffic_weight = traffic_weight;
            check(&spec)?;
            self.write_with_routing(tx, &spec, revision + 1)?;
            Ok(spec)
        })
    }

    async fn set_performance(
        &self,
        agent_id: &str,
        version: &Version,
        performance: &PerformanceMetrics,
    ) -> Result<(), PortError> {
        self.tables.transact(|tx| {
            let Stored { mut spec, revision } = self
                .get_in(tx, agent_id, version)?
                .ok_or_else(|| not_found(agent_id, version))?;
            spec.performance = Some(performance.clone());
            tx.put(
                &self.table,
                &agent_key(agent_id, version_sk(version)),
                &Self::version_item(&spec, revision + 1)?,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(version: &str, status: AgentStatus, weight: u8) -> AgentSpec {
        serde_json::from_value(json!({
            "agentId": "upsell-generator",
            "version": version,
            "role": "generator",
            "prompt": {"system": "You write upsells.", "user": "{{ facts }}"},
            "modelId": "offline",
            "config": {"temperature": 0.4, "maxTokens": 300},
            "maxAttempts": 3,
            "status": status,
            "trafficWeight": weight,
            "createdAt": "2025-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn routing_item(r: &SqliteAgentRegistry) -> Value {
        r.tables()
            .get(
                AGENT_REGISTRY_TABLE,
                &agent_key("upsell-generator", ROUTING_SK),
            )
            .unwrap()
            .expect("routing item")
    }

    #[tokio::test]
    async fn a_version_written_through_the_port_is_the_documented_item() {
        let r = SqliteAgentRegistry::in_memory().unwrap();
        let s1 = spec("1.2.0", AgentStatus::Production, 100);
        r.register(&s1).await.unwrap();
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
        let stored: AgentSpec = serde_json::from_str(item["spec"]["S"].as_str().unwrap()).unwrap();
        assert_eq!(stored, s1);
        assert_eq!(r.get("upsell-generator", &v("1.2.0")).await.unwrap(), s1);
        assert!(matches!(
            r.get("upsell-generator", &v("9.0.0")).await,
            Err(PortError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn the_routing_item_follows_register_and_set_status() {
        let r = SqliteAgentRegistry::in_memory().unwrap();
        assert_eq!(r.routing("upsell-generator").unwrap(), Routing::default());

        r.register(&spec("1.0.0", AgentStatus::Production, 100))
            .await
            .unwrap();
        let item = routing_item(&r);
        assert_eq!(item["pk"], json!({"S": "AGENT#upsell-generator"}));
        assert_eq!(item["sk"], json!({"S": "ROUTING"}));
        assert_eq!(item["agentId"], json!({"S": "upsell-generator"}));
        assert_eq!(item["productionVersion"], json!({"S": "1.0.0"}));
        assert_eq!(item.get("canaryVersion"), None);
        assert_eq!(item["canaryWeight"], json!({"N": "0"}));

        // A draft changes nothing that serves traffic.
        r.register(&spec("2.0.0", AgentStatus::Draft, 0))
            .await
            .unwrap();
        assert_eq!(routing_item(&r)["productionVersion"]["S"], "1.0.0");
        assert_eq!(routing_item(&r).get("canaryVersion"), None);

        // Draft -> evaluating -> canary at 10%, then 50%.
        r.set_status("upsell-generator", &v("2.0.0"), AgentStatus::Evaluating, 0)
            .await
            .unwrap();
        r.set_status("upsell-generator", &v("2.0.0"), AgentStatus::Canary, 10)
            .await
            .unwrap();
        let item = routing_item(&r);
        assert_eq!(item["canaryVersion"], json!({"S": "2.0.0"}));
        assert_eq!(item["canaryWeight"], json!({"N": "10"}));
        r.set_status("upsell-generator", &v("2.0.0"), AgentStatus::Canary, 50)
            .await
            .unwrap();
        assert_eq!(
            r.routing("upsell-generator").unwrap(),
            Routing {
                production_version: Some(v("1.0.0")),
                canary_version: Some(v("2.0.0")),
                canary_weight: 50,
            }
        );

        // Promotion: the canary becomes production at 100%, the old version retires.
        r.set_status(
            "upsell-generator",
            &v("2.0.0"),
            AgentStatus::Production,
            100,
        )
        .await
        .unwrap();
        r.set_status("upsell-generator", &v("1.0.0"), AgentStatus::Retired, 0)
            .await
            .unwrap();
        let item = routing_item(&r);
        assert_eq!(item["productionVersion"], json!({"S": "2.0.0"}));
        assert_eq!(item.get("canaryVersion"), None);
        assert_eq!(item["canaryWeight"], json!({"N": "0"}));
        // One routing revision per change: 2 registers + 5 status changes.
        assert_eq!(item["revision"], json!({"N": "7"}));

        // A refused change leaves both the version and the routing item as they were.
        let err = r
            .set_status("upsell-generator", &v("1.0.0"), AgentStatus::Canary, 10)
            .await
            .unwrap_err();
        assert!(matches!(err, PortError::Invalid(_)), "{err}");
        assert_eq!(routing_item(&r), item);
        let versions = r.list_versions("upsell-generator").await.unwrap();
        let statuses: Vec<_> = versions
            .iter()
            .map(|s| (s.version.to_string(), s.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("1.0.0".to_owned(), AgentStatus::Retired),
                ("2.0.0".to_owned(), AgentStatus::Production)
            ]
        );
    }

    #[tokio::test]
    async fn versions_are_immutable_and_listed_in_semver_order() {
        let r = SqliteAgentRegistry::in_memory().unwrap();
        for ver in ["1.10.0", "1.9.0", "1.0.0"] {
            r.register(&spec(ver, AgentStatus::Draft, 0)).await.unwrap();
        }
        let err = r
            .register(&spec("1.9.0", AgentStatus::Draft, 0))
            .await
            .unwrap_err();
        assert!(matches!(err, PortError::Conflict(_)), "{err}");
        let bad = spec("3.0.0", AgentStatus::Draft, 20);
        assert!(matches!(r.register(&bad).await, Err(PortError::Invalid(_))));
        let mut judge = spec("1.0.0", AgentStatus::Production, 100);
        judge.agent_id = "upsell-judge".into();
        r.register(&judge).await.unwrap();

        let listed: Vec<String> = r
            .list_versions("upsell-generator")
            .await
            .unwrap()
            .iter()
            .map(|s| s.version.to_string())
            .collect();
        assert_eq!(listed, ["1.0.0", "1.9.0", "1.10.0"]);
        let all: Vec<String> = r
            .list_all()
            .await
            .unwrap()
            .iter()
            .map(|s| s.agent_ref().to_string())
            .collect();
        assert_eq!(
            all,
            [
                "upsell-generator@1.0.0",
                "upsell-generator@1.9.0",
                "upsell-generator@1.10.0",
                "upsell-judge@1.0.0"
            ]
        );
        // Each agent has its own routing item.
        assert_eq!(
            r.routing("upsell-judge").unwrap().production_version,
            Some(v("1.0.0"))
        );
        assert_eq!(r.routing("upsell-generator").unwrap(), Routing::default());
    }

    #[tokio::test]
    async fn seeding_adds_only_missing_versions_and_performance_keeps_routing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upsell.db");
        let seeds = [
            spec("1.0.0", AgentStatus::Production, 90),
            spec("1.1.0", AgentStatus::Canary, 10),
        ];
        assert_eq!(
            SqliteAgentRegistry::open(&path)
                .unwrap()
                .seed(&seeds)
                .unwrap(),
            2
        );
        let r = SqliteAgentRegistry::open(&path).unwrap();
        assert_eq!(r.seed(&seeds).unwrap(), 0);
        assert_eq!(
            r.routing("upsell-generator").unwrap(),
            Routing {
                production_version: Some(v("1.0.0")),
                canary_version: Some(v("1.1.0")),
                canary_weight: 10,
            }
        );
        let perf: PerformanceMetrics = serde_json::from_value(json!({
            "approvalRate": 0.8, "avgScore": 7.5, "sampleSize": 200
        }))
        .unwrap();
        r.set_performance("upsell-generator", &v("1.1.0"), &perf)
            .await
            .unwrap();
        let got = r.get("upsell-generator", &v("1.1.0")).await.unwrap();
        assert_eq!(got.performance, Some(perf));
        assert_eq!(got.status, AgentStatus::Canary);
        assert_eq!(r.routing("upsell-generator").unwrap().canary_weight, 10);
        // A seed with an invalid spec writes none of the batch.
        let mut bad = spec("5.0.0", AgentStatus::Draft, 0);
        bad.agent_id = "Bad Id".into();
        let batch = [spec("4.0.0", AgentStatus::Draft, 0), bad];
        assert!(matches!(r.seed(&batch), Err(PortError::Invalid(_))));
        assert!(matches!(
            r.get("upsell-generator", &v("4.0.0")).await,
            Err(PortError::NotFound(_))
        ));
    }

    #[test]
    fn routing_prefers_the_heaviest_then_the_highest_version() {
        let specs = [
            spec("1.0.0", AgentStatus::Production, 60),
            spec("2.0.0", AgentStatus::Production, 30),
            spec("3.0.0", AgentStatus::Canary, 10),
            spec("4.0.0", AgentStatus::Canary, 0),
            spec("5.0.0", AgentStatus::Retired, 0),
        ];
        assert_eq!(
            Routing::of(&specs),
            Routing {
                production_version: Some(v("1.0.0")),
                canary_version: Some(v("3.0.0")),
                canary_weight: 10,
            }
        );
        let tie = [
            spec("1.0.0", AgentStatus::Production, 50),
            spec("2.0.0", AgentStatus::Production, 50),
        ];
        assert_eq!(Routing::of(&tie).production_version, Some(v("2.0.0")));
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

        a.register(&spec("1.0.0", AgentStatus::Draft, 0))
            .await
            .unwrap();
        assert_eq!(
            status(a.list_versions("upsell-generator").await.unwrap()),
            [AgentStatus::Draft]
        );

        // Another registry on the same connection.
        b.set_status("upsell-generator", &v("1.0.0"), AgentStatus::Evaluating, 0)
            .await
            .unwrap();
        assert_eq!(
            a.get("upsell-generator", &v("1.0.0")).await.unwrap().status,
            AgentStatus::Evaluating
        );

        // Another connection (another process).
        other_process
            .register(&spec("2.0.0", AgentStatus::Draft, 0))
            .await
            .unwrap();
        assert_eq!(a.list_versions("upsell-generator").await.unwrap().len(), 2);

        // A raw table write, as the workflow's dynamodb:putItem would make it.
        let mut raw =
            SqliteAgentRegistry::version_item(&spec("3.0.0", AgentStatus::Draft, 0), 1).unwrap();
        raw["status"] = json!({"S": "draft"});
        shared
            .put(
                AGENT_REGISTRY_TABLE,
                &agent_key("upsell-generator", version_sk(&v("3.0.0"))),
                &raw,
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
