//! The local contact store: each customer's first name and marketing consent (the newest
//! profile event wins), for the enrich worker.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::SecondsFormat;
use rusqlite::{Connection, OptionalExtension, params};
use upsell_core::ports::{ContactStore, CustomerContact, PortError};

use crate::{SharedConnection, db_err, open_connection};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS contacts (
    customer_id      TEXT PRIMARY KEY,
    first_name       TEXT NOT NULL,
    marketing_opt_in INTEGER NOT NULL,
    updated_at       TEXT NOT NULL   -- RFC 3339 UTC, fixed width: sorts as time
);
"#;

/// SQLite contact store.
pub struct SqliteContactStore {
    conn: SharedConnection,
}

impl std::fmt::Debug for SqliteContactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteContactStore").finish_non_exhaustive()
    }
}

impl SqliteContactStore {
    /// Opens (and creates) the store in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::from_connection(open_connection(path)?)
    }

    /// A store in memory (tests).
    pub fn in_memory() -> Result<Self, PortError> {
        Self::from_connection(Connection::open_in_memory().map_err(db_err)?)
    }

    /// The store on a connection other stores of this process share (creates its table).
    pub fn shared(conn: SharedConnection) -> Result<Self, PortError> {
        conn.lock()
            .unwrap_or_else(|e| e.into_inner())
            .execute_batch(SCHEMA)
            .map_err(db_err)?;
        Ok(SqliteContactStore { conn })
    }

    fn from_connection(conn: Connection) -> Result<Self, PortError> {
        Self::shared(Arc::new(Mutex::new(conn)))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ContactStore for SqliteContactStore {
    async fn put(&self, c: &CustomerContact) -> Result<(), PortError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO contacts (customer_id, first_name, marketing_opt_in, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (customer_id) DO UPDATE SET first_name = excluded.first_name,
                   marketing_opt_in = excluded.marketing_opt_in, updated_at = excluded.updated_at
                 WHERE excluded.updated_at >= contacts.updated_at",
            )
            .map_err(db_err)?
            .execute(params![
                c.customer_id,
                c.first_name,
                c.marketing_opt_in,
                c.updated_at.to_rfc3339_opts(SecondsFormat::Micros, true)
            ])
            .map_err(db_err)?;
        Ok(())
    }

    async fn get(&self, customer_id: &str) -> Result<Option<CustomerContact>, PortError> {
        self.conn()
            .prepare_cached(
                "SELECT first_name, marketing_opt_in, updated_at FROM contacts WHERE customer_id = ?1",
            )
            .map_err(db_err)?
            .query_row(params![customer_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, String>(2)?))
            })
            .optional()
            .map_err(db_err)?
            .map(|(first_name, opt_in, t)| {
                Ok(CustomerContact {
                    customer_id: customer_id.to_owned(),
                    first_name,
                    marketing_opt_in: opt_in,
                    updated_at: t
                        .parse()
                        .map_err(|e| PortError::Other(format!("corrupt contact row: {e}")))?,
                })
            })
            .transpose()
    }
}
