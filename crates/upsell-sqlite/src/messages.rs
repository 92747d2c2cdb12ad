//! The local message store: one terminal record per event id (approved, rejected, failed,
//! skipped) and one quarantine record per quarantine id, written with INSERT ... ON CONFLICT DO
//! NOTHING so at-least-once delivery never produces two.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::SecondsFormat;
use rusqlite::{Connection, OptionalExtension, params};
use upsell_core::message::{MessageRecord, MessageStatus, QuarantineRecord};
use upsell_core::ports::{MessageQuery, MessageStore, PortError, PutOutcome};

use crate::{db_err, open_connection};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS messages (
    event_id    TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    record      TEXT NOT NULL      -- MessageRecord as JSON
);
CREATE INDEX IF NOT EXISTS messages_by_customer ON messages (customer_id, event_id);
CREATE INDEX IF NOT EXISTS messages_by_status ON messages (status, event_id);
CREATE TABLE IF NOT EXISTS quarantine (
    quarantine_id  TEXT PRIMARY KEY,
    event_id       TEXT,
    reason         TEXT NOT NULL,
    quarantined_at TEXT NOT NULL,
    record         TEXT NOT NULL   -- QuarantineRecord as JSON
);
"#;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;

/// SQLite message store.
pub struct SqliteMessageStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteMessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMessageStore").finish_non_exhaustive()
    }
}

fn json_err(e: serde_json::Error) -> PortError {
    PortError::Other(format!("corrupt message store row: {e}"))
}

/// The wire name of a status (`approved`, ...).
pub fn status_name(s: MessageStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl SqliteMessageStore {
    /// Opens (and creates) the store in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::from_connection(open_connection(path)?)
    }

    /// A store in memory (tests).
    pub fn in_memory() -> Result<Self, PortError> {
        Self::from_connection(Connection::open_in_memory().map_err(db_err)?)
    }

    fn from_connection(conn: Connection) -> Result<Self, PortError> {
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        Ok(SqliteMessageStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of records by status, plus quarantined (for run summaries).
    pub fn counts(&self) -> Result<Vec<(String, u64)>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT status, COUNT(*) FROM messages GROUP BY status ORDER BY status")
            .map_err(db_err)?;
        let mut out: Vec<(String, u64)> = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let q: i64 = conn
            .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))
            .map_err(db_err)?;
        out.push(("quarantined".into(), q as u64));
        Ok(out)
    }
}

#[async_trait]
impl MessageStore for SqliteMessageStore {
    async fn put_if_absent(&self, record: &MessageRecord) -> Result<PutOutcome, PortError> {
        let json = serde_json::to_string(record).map_err(json_err)?;
        let n = self
            .conn()
            .prepare_cached(
                "INSERT INTO messages (event_id, customer_id, status, created_at, record)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (event_id) DO NOTHING",
            )
            .map_err(db_err)?
            .execute(params![
                record.event_id,
                record.customer_id,
                status_name(record.status),
                record
                    .created_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
                json
            ])
            .map_err(db_err)?;
        Ok(if n == 1 {
            PutOutcome::Inserted
        } else {
            PutOutcome::AlreadyExists
        })
    }

    async fn get(&self, event_id: &str) -> Result<Option<MessageRecord>, PortError> {
        self.conn()
            .prepare_cached("SELECT record FROM messages WHERE event_id = ?1")
            .map_err(db_err)?
            .query_row(params![event_id], |r| r.get::<_, String>(0))
            .optional()
            .map_err(db_err)?
            .map(|s| serde_json::from_str(&s).map_err(json_err))
            .transpose()
    }

    async fn list(&self, query: &MessageQuery) -> Result<Vec<MessageRecord>, PortError> {
        let limit = if query.limit == 0 {
            DEFAULT_LIMIT
        } else {
            query.limit
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT record FROM messages
                 WHERE (?1 IS NULL OR customer_id = ?1) AND (?2 IS NULL OR status = ?2)
                   AND (?3 IS NULL OR event_id > ?3)
                 ORDER BY event_id LIMIT ?4",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(
                params![
                    query.customer_id,
                    query.status.map(status_name),
                    query.after_event_id,
                    limit as i64
                ],
                |r| r.get::<_, String>(0),
            )
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row.map_err(db_err)?).map_err(json_err)?);
        }
        Ok(out)
    }

    async fn quarantine(&self, record: &QuarantineRecord) -> Result<PutOutcome, PortError> {
        let json = serde_json::to_string(record).map_err(json_err)?;
        let n = self
            .conn()
            .prepare_cached(
                "INSERT INTO quarantine (quarantine_id, event_id, reason, quarantined_at, record)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (quarantine_id) DO NOTHING",
            )
            .map_err(db_err)?
            .execute(params![
                record.quarantine_id,
                record.event_id,
                record.reason.as_str(),
                record
                    .quarantined_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
                json
            ])
            .map_err(db_err)?;
        Ok(if n == 1 {
            PutOutcome::Inserted
        } else {
            PutOutcome::AlreadyExists
        })
    }

    async fn list_quarantine(
        &self,
        after_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QuarantineRecord>, PortError> {
        let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT record FROM quarantine WHERE (?1 IS NULL OR quarantine_id > ?1)
                 ORDER BY quarantine_id LIMIT ?2",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![after_id, limit as i64], |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row.map_err(db_err)?).map_err(json_err)?);
        }
        Ok(out)
    }
}
