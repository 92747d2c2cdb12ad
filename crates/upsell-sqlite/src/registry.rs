//! The local agent registry: every version of every agent (key: agent id + version), with the
//! status and traffic-weight rules of `upsell_core::agent`. [`SqliteAgentRegistry::routing`]
//! gives the same routing record the DynamoDB adapter keeps (production version, canary version,
//! canary weight), for the local service integration behind the ASL's LoadRouting state.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use semver::Version;
use upsell_core::agent::{AgentSpec, AgentStatus, PerformanceMetrics};
use upsell_core::ports::{AgentRegistry, PortError};

use crate::{db_err, open_connection};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS agent_versions (
    agent_id TEXT NOT NULL,
    major    INTEGER NOT NULL,
    minor    INTEGER NOT NULL,
    patch    INTEGER NOT NULL,
    version  TEXT NOT NULL,      -- canonical semver
    status   TEXT NOT NULL,
    spec     TEXT NOT NULL,      -- AgentSpec as JSON
    PRIMARY KEY (agent_id, version)
) WITHOUT ROWID;
"#;

/// The routing record of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    /// The highest production version.
    pub production_version: Option<Version>,
    /// The highest canary version.
    pub canary_version: Option<Version>,
    /// The canary's traffic weight (0 without a canary).
    pub canary_weight: u8,
}

/// SQLite agent registry.
pub struct SqliteAgentRegistry {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteAgentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAgentRegistry")
            .finish_non_exhaustive()
    }
}

fn json_err(e: serde_json::Error) -> PortError {
    PortError::Other(format!("corrupt agent registry row: {e}"))
}

impl SqliteAgentRegistry {
    /// Opens (and creates) the registry in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::from_connection(open_connection(path)?)
    }

    /// A registry in memory (tests).
    pub fn in_memory() -> Result<Self, PortError> {
        Self::from_connection(Connection::open_in_memory().map_err(db_err)?)
    }

    fn from_connection(conn: Connection) -> Result<Self, PortError> {
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        Ok(SqliteAgentRegistry {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_sync(
        conn: &Connection,
        agent_id: &str,
        version: &Version,
    ) -> Result<Option<AgentSpec>, PortError> {
        conn.prepare_cached("SELECT spec FROM agent_versions WHERE agent_id = ?1 AND version = ?2")
            .map_err(db_err)?
            .query_row(params![agent_id, version.to_string()], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map_err(db_err)?
            .map(|s| serde_json::from_str(&s).map_err(json_err))
            .transpose()
    }

    fn write(conn: &Connection, spec: &AgentSpec) -> Result<(), PortError> {
        let json = serde_json::to_string(spec).map_err(json_err)?;
        conn.prepare_cached(
            "INSERT OR REPLACE INTO agent_versions (agent_id, major, minor, patch, version, status, spec)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(db_err)?
        .execute(params![
            spec.agent_id,
            spec.version.major as i64,
            spec.version.minor as i64,
            spec.version.patch as i64,
            spec.version.to_string(),
            spec.status.as_str(),
            json
        ])
        .map_err(db_err)?;
        Ok(())
    }

    fn list_sync(conn: &Connection, agent_id: Option<&str>) -> Result<Vec<AgentSpec>, PortError> {
        let mut stmt = conn
            .prepare_cached("SELECT spec FROM agent_versions WHERE ?1 IS NULL OR agent_id = ?1")
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![agent_id], |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        let mut specs = Vec::new();
        for row in rows {
            specs.push(serde_json::from_str::<AgentSpec>(&row.map_err(db_err)?).map_err(json_err)?);
        }
        specs.sort_by(|a, b| a.agent_id.cmp(&b.agent_id).then(a.version.cmp(&b.version)));
        Ok(specs)
    }

    /// The routing record of `agent_id`, as the ASL's LoadRouting state reads it.
    pub fn routing(&self, agent_id: &str) -> Result<Routing, PortError> {
        let specs = Self::list_sync(&self.conn(), Some(agent_id))?;
        let top = |status| {
            specs
                .iter()
                .filter(|s| s.status == status)
                .max_by(|a, b| a.version.cmp(&b.version))
        };
        let canary = top(AgentStatus::Canary);
        Ok(Routing {
            production_version: top(AgentStatus::Production).map(|s| s.version.clone()),
            canary_version: canary.map(|s| s.version.clone()),
            canary_weight: canary.map_or(0, |s| s.traffic_weight),
        })
    }

    /// Registers every spec that is not registered yet (first-run seeding); returns how many
    /// were added.
    pub fn seed(&self, specs: &[AgentSpec]) -> Result<usize, PortError> {
        let conn = self.conn();
        let mut added = 0;
        for s in specs {
            if Self::get_sync(&conn, &s.agent_id, &s.version)?.is_none() {
                check(s)?;
                Self::write(&conn, s)?;
                added += 1;
            }
        }
        Ok(added)
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
        Self::get_sync(&self.conn(), agent_id, version)?.ok_or_else(|| {
            PortError::NotFound(format!("agent {agent_id}@{version} is not registered"))
        })
    }

    async fn list_versions(&self, agent_id: &str) -> Result<Vec<AgentSpec>, PortError> {
        Self::list_sync(&self.conn(), Some(agent_id))
    }

    async fn list_all(&self) -> Result<Vec<AgentSpec>, PortError> {
        Self::list_sync(&self.conn(), None)
    }

    async fn register(&self, spec: &AgentSpec) -> Result<(), PortError> {
        check(spec)?;
        let conn = self.conn();
        if Self::get_sync(&conn, &spec.agent_id, &spec.version)?.is_some() {
            return Err(PortError::Conflict(format!(
                "agent {}@{} is already registered; versions are immutable, register a new version",
                spec.agent_id, spec.version
            )));
        }
        Self::write(&conn, spec)
    }

    async fn set_status(
        &self,
        agent_id: &str,
        version: &Version,
        status: AgentStatus,
        traffic_weight: u8,
    ) -> Result<AgentSpec, PortError> {
        let conn = self.conn();
        let mut spec = Self::get_sync(&conn, agent_id, version)?.ok_or_else(|| {
            PortError::NotFound(format!("agent {agent_id}@{version} is not registered"))
        })?;
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
        Self::write(&conn, &spec)?;
        Ok(spec)
    }

    async fn set_performance(
        &self,
        agent_id: &str,
        version: &Version,
        performance: &PerformanceMetrics,
    ) -> Result<(), PortError> {
        let conn = self.conn();
        let mut spec = Self::get_sync(&conn, agent_id, version)?.ok_or_else(|| {
            PortError::NotFound(format!("agent {agent_id}@{version} is not registered"))
        })?;
        spec.performance = Some(performance.clone());
        Self::write(&conn, &spec)
    }
}
