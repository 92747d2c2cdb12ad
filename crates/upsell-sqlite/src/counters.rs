//! The local [`VersionCounters`]: one row of sums per agent version, one row per non-empty
//! latency bucket and one per kind of response, all added to by upserts in one immediate
//! transaction, so concurrent adds (and processes) all count. The rules (what a record adds,
//! buckets, percentiles) are `upsell_core::counters`'; this adapter only stores sums.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use semver::Version;
use upsell_core::agent::AgentRef;
use upsell_core::counters::{CounterDelta, LATENCY_BUCKETS, VersionCounters, VersionCounts};
use upsell_core::events::UpsellResponse;
use upsell_core::ports::PortError;

use crate::{SharedConnection, db_err, open_connection};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS version_counters (
    agent_id      TEXT NOT NULL,
    version       TEXT NOT NULL,
    approvals     INTEGER NOT NULL DEFAULT 0,
    rejections    INTEGER NOT NULL DEFAULT 0,
    errors        INTEGER NOT NULL DEFAULT 0,
    score_sum     INTEGER NOT NULL DEFAULT 0,
    score_count   INTEGER NOT NULL DEFAULT 0,
    cost_nano_usd INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, version)
);
CREATE TABLE IF NOT EXISTS version_latency (
    agent_id TEXT NOT NULL,
    version  TEXT NOT NULL,
    bucket   INTEGER NOT NULL,   -- upsell_core::counters::latency_bucket
    count    INTEGER NOT NULL,
    PRIMARY KEY (agent_id, version, bucket)
);
CREATE TABLE IF NOT EXISTS version_responses (
    agent_id TEXT NOT NULL,
    version  TEXT NOT NULL,
    response TEXT NOT NULL,      -- accepted | declined | no-answer | opted-out
    count    INTEGER NOT NULL,
    PRIMARY KEY (agent_id, version, response)
);
"#;

/// SQLite per-version counters.
pub struct SqliteVersionCounters {
    conn: SharedConnection,
}

impl std::fmt::Debug for SqliteVersionCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteVersionCounters")
            .finish_non_exhaustive()
    }
}

fn to_i64(n: u64, what: &str) -> Result<i64, PortError> {
    i64::try_from(n).map_err(|_| PortError::Invalid(format!("{what} {n} does not fit a counter")))
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl SqliteVersionCounters {
    /// Opens (and creates) the counters in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::shared(Arc::new(Mutex::new(open_connection(path)?)))
    }

    /// Counters in memory (tests).
    pub fn in_memory() -> Result<Self, PortError> {
        Self::shared(Arc::new(Mutex::new(
            Connection::open_in_memory().map_err(db_err)?,
        )))
    }

    /// The counters on a connection other stores of this process share (creates the tables).
    pub fn shared(conn: SharedConnection) -> Result<Self, PortError> {
        conn.lock()
            .unwrap_or_else(|e| e.into_inner())
            .execute_batch(SCHEMA)
            .map_err(db_err)?;
        Ok(SqliteVersionCounters { conn })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn read_one(conn: &Connection, agent_id: &str, version: &str) -> Result<VersionCounts, PortError> {
    let mut c = VersionCounts::default();
    let sums = conn
        .prepare_cached(
            "SELECT approvals, rejections, errors, score_sum, score_count, cost_nano_usd \
             FROM version_counters WHERE agent_id = ?1 AND version = ?2",
        )
        .map_err(db_err)?
        .query_row(params![agent_id, version], |r| {
            Ok([
                r.get::<_, i64>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ])
        })
        .optional()
        .map_err(db_err)?;
    if let Some([a, r, e, ss, sc, cost]) = sums {
        c.approvals = to_u64(a);
        c.rejections = to_u64(r);
        c.errors = to_u64(e);
        c.score_sum = to_u64(ss);
        c.score_count = to_u64(sc);
        c.cost_nano_usd = to_u64(cost);
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT bucket, count FROM version_latency WHERE agent_id = ?1 AND version = ?2",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![agent_id, version], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(db_err)?;
    for row in rows {
        let (bucket, count) = row.map_err(db_err)?;
        let slot = usize::try_from(bucket)
            .ok()
            .filter(|b| *b < LATENCY_BUCKETS)
            .ok_or_else(|| {
                PortError::Other(format!(
                    "version_latency of {agent_id}@{version} has bucket {bucket}, outside 0..{LATENCY_BUCKETS}"
                ))
            })?;
        c.latency[slot] = to_u64(count);
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT response, count FROM version_responses WHERE agent_id = ?1 AND version = ?2",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![agent_id, version], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(db_err)?;
    for row in rows {
        let (response, count) = row.map_err(db_err)?;
        let slot = UpsellResponse::ALL
            .iter()
            .position(|r| r.code() == response)
            .ok_or_else(|| {
                PortError::Other(format!(
                    "version_responses of {agent_id}@{version} has an unknown response {response:?}"
                ))
            })?;
        c.responses[slot] = to_u64(count);
    }
    Ok(c)
}

#[async_trait]
impl VersionCounters for SqliteVersionCounters {
    async fn add(&self, agent: &AgentRef, delta: &CounterDelta) -> Result<(), PortError> {
        let version = agent.version.to_string();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        tx.prepare_cached(
            "INSERT INTO version_counters \
               (agent_id, version, approvals, rejections, errors, score_sum, score_count, cost_nano_usd) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (agent_id, version) DO UPDATE SET \
               approvals = approvals + excluded.approvals, \
               rejections = rejections + excluded.rejections, \
               errors = errors + excluded.errors, \
               score_sum = score_sum + excluded.score_sum, \
               score_count = score_count + excluded.score_count, \
               cost_nano_usd = cost_nano_usd + excluded.cost_nano_usd",
        )
        .map_err(db_err)?
        .execute(params![
            agent.agent_id,
            version,
            to_i64(delta.approvals, "approvals")?,
            to_i64(delta.rejections, "rejections")?,
            to_i64(delta.errors, "errors")?,
            to_i64(delta.score_sum, "score sum")?,
            to_i64(delta.score_count, "score count")?,
            to_i64(delta.cost_nano_usd, "cost")?,
        ])
        .map_err(db_err)?;
        if let Some(bucket) = delta.latency_bucket {
            let bucket = bucket.min(LATENCY_BUCKETS - 1) as i64;
            tx.prepare_cached(
                "INSERT INTO version_latency (agent_id, version, bucket, count) \
                 VALUES (?1, ?2, ?3, 1) \
                 ON CONFLICT (agent_id, version, bucket) DO UPDATE SET count = count + 1",
            )
            .map_err(db_err)?
            .execute(params![agent.agent_id, version, bucket])
            .map_err(db_err)?;
        }
        for (response, n) in UpsellResponse::ALL.iter().zip(delta.responses) {
            if n == 0 {
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO version_responses (agent_id, version, response, count) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (agent_id, version, response) DO UPDATE SET count = count + excluded.count",
            )
            .map_err(db_err)?
            .execute(params![
                agent.agent_id,
                version,
                response.code(),
                to_i64(n, "responses")?
            ])
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    async fn read(&self, agent: &AgentRef) -> Result<VersionCounts, PortError> {
        read_one(&self.conn(), &agent.agent_id, &agent.version.to_string())
    }

    async fn versions(&self, agent_id: &str) -> Result<Vec<(Version, VersionCounts)>, PortError> {
        let conn = self.conn();
        let names: Vec<String> = conn
            .prepare_cached("SELECT version FROM version_counters WHERE agent_id = ?1")
            .map_err(db_err)?
            .query_map(params![agent_id], |r| r.get(0))
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let version = Version::parse(&name).map_err(|e| {
                PortError::Other(format!(
                    "version_counters has an unreadable version {name:?} of {agent_id}: {e}"
                ))
            })?;
            out.push((version, read_one(&conn, agent_id, &name)?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::SqliteVersionCounters;

    async fn fresh() -> Option<SqliteVersionCounters> {
        Some(SqliteVersionCounters::in_memory().unwrap())
    }

    mod contract {
        use super::fresh;
        upsell_core::version_counters_contract!(fresh());
    }
}
