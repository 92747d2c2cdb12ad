//! SQLite adapters for the ports of `upsell-core`: the embedded store used on a laptop.
//!
//! The crate root is the whole API (the modules are private):
//! - connections: [`open_connection`], [`open_shared`], [`SharedConnection`], [`db_err`];
//! - port adapters: [`SqliteFeatureStore`], [`SqliteContactStore`], [`SqliteVersionCounters`],
//!   [`SqliteDriftSource`], [`SqliteEvaluationStore`], [`SqliteMessageStore`],
//!   [`SqliteAgentRegistry`], [`SqliteIngestReceipts`], [`SqlitePastSuccesses`],
//!   [`SqliteMetricLog`], with the table names and keys the AWS adapters share;
//! - the knowledge base: [`SqliteKnowledgeBase`], [`CachedKnowledgeBase`] and the source
//!   loaders ([`read_settings`], [`load_documents`], [`load_sources`]);
//! - the execution history of the ASL engine: [`ExecutionStore`] and its options and queries;
//! - [`TableStore`]: DynamoDB-shaped tables (items under a partition and sort key).
//!
//! Each store takes the path of its SQLite file. The CLI keeps the stores in one file (by default
//! `.upsell/upsell.db`); the execution history goes in a file of its own (`history.db`) so that
//! its group commits never hold the stores' write lock, and so does the metric log
//! (`metrics.db`). Stores in the same file should share one [`SharedConnection`] (each has a
//! `shared` constructor): a commit on one connection makes SQLite drop every other connection's
//! page cache, so separate connections per store re-read their pages after every write.

mod contacts;
mod counters;
mod drift;
mod evaluations;
mod features;
mod history;
mod kb;
mod kb_cache;
mod kb_source;
mod messages;
mod metrics;
mod outcomes;
mod receipts;
mod registry;
mod tables;
mod vectors;

pub use contacts::SqliteContactStore;
pub use counters::SqliteVersionCounters;
pub use drift::SqliteDriftSource;
pub use evaluations::{EVALUATIONS_TABLE, SqliteEvaluationStore};
pub use features::{IngestSummary, SqliteFeatureStore};
pub use history::{
    ExecutionFilter, ExecutionStore, ExecutionSummary, HistoryLevel, HistoryOptions,
};
pub use kb::{IndexDocument, IngestReport, SemanticDocument, SourceDocument, SqliteKnowledgeBase};
pub use kb_cache::CachedKnowledgeBase;
pub use kb_source::{IngestionSettings, load_documents, load_sources, read_settings};
pub use messages::{CLAIM_SK, MESSAGES_TABLE, SqliteMessageStore, event_pk, status_name};
pub use metrics::SqliteMetricLog;
pub use outcomes::SqlitePastSuccesses;
pub use receipts::SqliteIngestReceipts;
pub use registry::{AGENT_REGISTRY_TABLE, SqliteAgentRegistry};
pub use tables::{
    IndexQuery, ItemKey, KeyValue, Modified, Query, SortCondition, TableStore, Transaction, Write,
};

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use upsell_core::ports::PortError;

/// One connection used by several stores of the same process (see the module docs).
pub type SharedConnection = Arc<Mutex<Connection>>;

/// Opens the SQLite file at `path` like [`open_connection`], for stores to share.
pub fn open_shared(path: &Path) -> Result<SharedConnection, PortError> {
    Ok(Arc::new(Mutex::new(open_connection(path)?)))
}

/// Maps a SQLite error to a port error: busy/locked is transient, constraint is a conflict.
pub fn db_err(e: rusqlite::Error) -> PortError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            PortError::Transient(format!("sqlite: {e}"))
        }
        Some(ErrorCode::ConstraintViolation) => PortError::Conflict(format!("sqlite: {e}")),
        _ => PortError::Other(format!("sqlite: {e}")),
    }
}

/// WAL size (pages) at which a commit on a connection from [`open_connection`] checkpoints the
/// WAL (SQLite's default: 1000). Four times the execution store's writer threshold
/// (`history.rs`), so that while executions run it is that writer thread that checkpoints, never
/// a store call on the engine's threads (a checkpoint copies pages and syncs the file). A process
/// without an execution store still checkpoints, at 256 MiB, and when its last connection closes.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 65_536;

/// How long a connection waits for another one's write lock before reporting the database busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The busy handler of [`open_connection`]: waits about [`BUSY_TIMEOUT`] in all, polling every
/// 100 us for the first 4 ms (the execution store's writer holds the lock for a few ms per group
/// commit), then every 2 ms. SQLite's own `busy_timeout` sleeps 1, 2, 5, 10... ms, which stalls
/// a runtime worker thread far longer than the lock is held.
fn busy_wait(attempt: i32) -> bool {
    const FAST: u64 = 40;
    let n = u64::try_from(attempt).unwrap_or(0);
    let (waited, step) = if n < FAST {
        (n * 100, 100)
    } else {
        (FAST * 100 + (n - FAST) * 2_000, 2_000)
    };
    if u128::from(waited) >= BUSY_TIMEOUT.as_micros() {
        return false;
    }
    std::thread::sleep(Duration::from_micros(step));
    true
}

/// Opens the SQLite file at `path` (creating its folder), in WAL mode with a busy handler so
/// that the CLI, the local runtime and workers can share it.
pub fn open_connection(path: &Path) -> Result<Connection, PortError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            PortError::Other(format!("cannot create folder {}: {e}", parent.display()))
        })?;
    }
    let conn = Connection::open(path)
        .map_err(|e| PortError::Other(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_handler(Some(busy_wait)).map_err(db_err)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .map_err(db_err)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(db_err)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_checkpoint_late_and_wait_about_ten_seconds_for_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_connection(&dir.path().join("x.db")).unwrap();
        let pages: u32 = conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pages, WAL_AUTOCHECKPOINT_PAGES);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // 40 polls of 100 us, then every 2 ms until 10 s have been waited.
        let give_up = 40 + (10_000_000 - 4_000) / 2_000;
        assert!(!busy_wait(give_up));
        assert!(!busy_wait(i32::MAX));
        assert!(busy_wait(give_up - 1));
    }

    #[test]
    fn a_writer_waits_for_another_connections_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let a = open_connection(&path).unwrap();
        a.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        a.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let writer = std::thread::spawn(move || {
            let b = open_connection(&path).unwrap();
            b.execute("INSERT INTO t VALUES (2)", []).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(30));
        a.execute_batch("COMMIT").unwrap();
        writer
            .join()
            .unwrap()
            .expect("the second writer waited instead of failing");
        let n: i64 = a
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }
}
