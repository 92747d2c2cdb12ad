//! The local [`IngestReceipts`]: one row per event id received by the webhook (`upsell serve`),
//! claimed in an immediate transaction so concurrent requests (and processes) agree.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use upsell_core::ingest::{Claim, IngestReceipt, IngestReceipts, ReceiptState, decide_claim};
use upsell_core::ports::PortError;

use crate::{SharedConnection, db_err, open_connection};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS ingest_receipts (
    event_id TEXT PRIMARY KEY,
    receipt  TEXT NOT NULL   -- IngestReceipt as JSON
);
"#;

/// SQLite ingest receipts.
pub struct SqliteIngestReceipts {
    conn: SharedConnection,
}

impl std::fmt::Debug for SqliteIngestReceipts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteIngestReceipts")
            .finish_non_exhaustive()
    }
}

impl SqliteIngestReceipts {
    /// Opens (and creates) the receipts in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::shared(Arc::new(Mutex::new(open_connection(path)?)))
    }

    /// Receipts in memory (tests).
    pub fn in_memory() -> Result<Self, PortError> {
        Self::shared(Arc::new(Mutex::new(
            Connection::open_in_memory().map_err(db_err)?,
        )))
    }

    /// The receipts on a connection other stores of this process share (creates the table).
    pub fn shared(conn: SharedConnection) -> Result<Self, PortError> {
        conn.lock()
            .unwrap_or_else(|e| e.into_inner())
            .execute_batch(SCHEMA)
            .map_err(db_err)?;
        Ok(SqliteIngestReceipts { conn })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored receipt of an event id.
    pub fn get(&self, event_id: &str) -> Result<Option<IngestReceipt>, PortError> {
        read(&self.conn(), event_id)
    }
}

fn read(conn: &Connection, event_id: &str) -> Result<Option<IngestReceipt>, PortError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT receipt FROM ingest_receipts WHERE event_id = ?1")
        .map_err(db_err)?
        .query_row(params![event_id], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| PortError::Other(format!("ingest receipt {event_id} is unreadable: {e}")))
    })
    .transpose()
}

fn write(conn: &Connection, receipt: &IngestReceipt) -> Result<(), PortError> {
    let text = serde_json::to_string(receipt).map_err(|e| PortError::Other(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO ingest_receipts (event_id, receipt) VALUES (?1, ?2)
         ON CONFLICT (event_id) DO UPDATE SET receipt = excluded.receipt",
    )
    .map_err(db_err)?
    .execute(params![receipt.event_id, text])
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl IngestReceipts for SqliteIngestReceipts {
    async fn claim(
        &self,
        event_id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claim, PortError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let existing = read(&tx, event_id)?;
        let (claim, new) = decide_claim(existing.as_ref(), event_id, now, lease);
        if let Some(r) = new {
            write(&tx, &r)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(claim)
    }

    async fn complete(&self, event_id: &str, bus_event_id: &str) -> Result<(), PortError> {
        let conn = self.conn();
        let Some(mut r) = read(&conn, event_id)? else {
            return Err(PortError::NotFound(format!(
                "no ingest receipt for event {event_id}"
            )));
        };
        r.state = ReceiptState::Done;
        r.bus_event_id = Some(bus_event_id.to_owned());
        write(&conn, &r)
    }

    async fn release(&self, event_id: &str) -> Result<(), PortError> {
        let conn = self.conn();
        if read(&conn, event_id)?.is_some_and(|r| r.state == ReceiptState::Pending) {
            conn.execute(
                "DELETE FROM ingest_receipts WHERE event_id = ?1",
                params![event_id],
            )
            .map_err(db_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claimed_id_is_published_once() {
        let r = SqliteIngestReceipts::in_memory().unwrap();
        let now = Utc::now();
        let lease = Duration::seconds(30);
        assert_eq!(r.claim("e1", now, lease).await.unwrap(), Claim::Claimed);
        assert!(matches!(
            r.claim("e1", now, lease).await.unwrap(),
            Claim::InProgress { .. }
        ));
        r.complete("e1", "bus-1").await.unwrap();
        assert_eq!(
            r.claim("e1", now, lease).await.unwrap(),
            Claim::Done {
                bus_event_id: "bus-1".into()
            }
        );
        r.release("e1").await.unwrap();
        assert!(r.get("e1").unwrap().is_some(), "a done receipt is kept");
        assert_eq!(r.claim("e2", now, lease).await.unwrap(), Claim::Claimed);
        r.release("e2").await.unwrap();
        assert_eq!(r.claim("e2", now, lease).await.unwrap(), Claim::Claimed);
    }

    // The one IngestReceipts contract (upsell_core::ingest_contract), on SQLite.
    mod contract {
        use super::SqliteIngestReceipts;

        async fn fresh() -> Option<SqliteIngestReceipts> {
            Some(SqliteIngestReceipts::in_memory().unwrap())
        }

        upsell_core::ingest_receipts_contract!(fresh());
    }
}
