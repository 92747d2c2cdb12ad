//! SQLite adapters for the ports of `upsell-core`: the embedded store used on a laptop.
//!
//! Everything lives in one SQLite file (by default `.upsell/upsell.db`): the feature store with
//! its history ([`features`]), the customer-embedding index for similar-customer search, and the
//! knowledge-base index with FTS5 and vectors ([`kb`]).

pub mod contacts;
pub mod features;
pub mod history;
pub mod kb;
pub mod kb_source;
pub mod messages;
pub mod registry;
pub mod tables;
pub mod vectors;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use upsell_core::ports::PortError;

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

/// Opens the SQLite file at `path` (creating its folder), in WAL mode with a busy timeout so
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
    conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .map_err(db_err)?;
    Ok(conn)
}
