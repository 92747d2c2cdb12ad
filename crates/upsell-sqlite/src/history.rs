//! Durable execution history and checkpoints for the ASL engine (`upsell-asl`'s
//! [`HistorySink`] and [`CheckpointStore`]), plus the read side that `upsell executions` uses.
//!
//! Writes are grouped: history events are buffered per execution and written together with the
//! execution's checkpoint in one transaction at each top-level state transition, and with the
//! final status when the execution ends. A crash loses at most the events after the last
//! checkpoint, and those are produced again when the execution resumes from it.
//!
//! Tables: `sfn_executions` (one row per execution: status, input, output or error),
//! `sfn_history` (events as `GetExecutionHistory` shows them) and `sfn_checkpoints`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Map, Value};
use upsell_asl::{Checkpoint, CheckpointStore, HistoryEvent, HistorySink};
use upsell_core::ports::PortError;

use crate::{db_err, open_connection};

/// Events buffered for one execution before they are written without waiting for a checkpoint.
const MAX_BUFFERED: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sfn_executions (
    arn           TEXT PRIMARY KEY,
    state_machine TEXT NOT NULL,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    start_time    TEXT NOT NULL,
    stop_time     TEXT,
    input         TEXT,
    output        TEXT,
    error         TEXT,
    cause         TEXT
);
CREATE INDEX IF NOT EXISTS sfn_executions_by_start ON sfn_executions (start_time);
CREATE INDEX IF NOT EXISTS sfn_executions_by_name ON sfn_executions (name);
CREATE TABLE IF NOT EXISTS sfn_history (
    arn         TEXT NOT NULL,
    id          INTEGER NOT NULL,
    previous_id INTEGER NOT NULL,
    ts          TEXT NOT NULL,
    type        TEXT NOT NULL,
    details_key TEXT,
    details     TEXT,
    PRIMARY KEY (arn, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sfn_checkpoints (
    arn             TEXT PRIMARY KEY,
    next_state      TEXT NOT NULL,
    input           TEXT NOT NULL,
    variables       TEXT NOT NULL,
    execution_input TEXT NOT NULL,
    last_event_id   INTEGER NOT NULL,
    start_time      TEXT NOT NULL
);
";

/// One execution as `ListExecutions` / `DescribeExecution` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionSummary {
    /// Execution ARN.
    pub arn: String,
    /// State machine name.
    pub state_machine: String,
    /// Execution name.
    pub name: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: String,
    /// Start time (RFC 3339).
    pub start_time: String,
    /// Stop time, once finished.
    pub stop_time: Option<String>,
    /// Input JSON.
    pub input: Option<Value>,
    /// Output JSON (SUCCEEDED).
    pub output: Option<Value>,
    /// Error name (FAILED, TIMED_OUT).
    pub error: Option<String>,
    /// Cause.
    pub cause: Option<String>,
}

/// Which executions to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this state machine (name).
    pub state_machine: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

/// SQLite-backed history sink and checkpoint store.
pub struct ExecutionStore {
    conn: Mutex<Connection>,
    pending: Mutex<HashMap<String, Vec<HistoryEvent>>>,
    /// Executions whose checkpoint was already removed with their final events.
    finished: Mutex<HashSet<String>>,
    /// The first write error, reported by [`ExecutionStore::flush`] (sinks cannot fail).
    failed: Mutex<Option<String>>,
}

impl std::fmt::Debug for ExecutionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecutionStore")
    }
}

impl ExecutionStore {
    /// Opens (creating) the store in the SQLite file at `path` (WAL mode).
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::with_connection(open_connection(path)?)
    }

    /// A store in memory (tests).
    pub fn in_memory() -> Result<Self, PortError> {
        Self::with_connection(Connection::open_in_memory().map_err(db_err)?)
    }

    fn with_connection(conn: Connection) -> Result<Self, PortError> {
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        Ok(ExecutionStore {
            conn: Mutex::new(conn),
            pending: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashSet::new()),
            failed: Mutex::new(None),
        })
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, PortError> {
        self.conn
            .lock()
            .map_err(|_| PortError::Other("execution store lock poisoned".into()))
    }

    fn take_pending(&self, arn: &str) -> Vec<HistoryEvent> {
        self.pending
            .lock()
            .map(|mut p| p.remove(arn).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Writes `events` and, in the same transaction, saves or removes the checkpoint.
    fn write(
        &self,
        events: &[HistoryEvent],
        checkpoint: CheckpointWrite<'_>,
    ) -> Result<(), PortError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(db_err)?;
        write_events(&tx, events)?;
        match checkpoint {
            CheckpointWrite::None => {}
            CheckpointWrite::Save(c) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO sfn_checkpoints
                     (arn, next_state, input, variables, execution_input, last_event_id, start_time)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(db_err)?
                .execute(params![
                    c.execution_arn,
                    c.next_state,
                    c.input.to_string(),
                    Value::Object(c.variables.clone()).to_string(),
                    c.execution_input.to_string(),
                    i64::try_from(c.last_event_id).unwrap_or(i64::MAX),
                    c.start_time,
                ])
                .map_err(db_err)?;
            }
            CheckpointWrite::Clear(arn) => {
                tx.prepare_cached("DELETE FROM sfn_checkpoints WHERE arn = ?1")
                    .map_err(db_err)?
                    .execute([arn])
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    fn note_failure(&self, e: PortError) {
        if let Ok(mut f) = self.failed.lock()
            && f.is_none()
        {
            *f = Some(e.to_string());
        }
    }

    /// Writes every buffered event; reports the first write error since the last flush.
    pub fn flush(&self) -> Result<(), PortError> {
        let all: Vec<HistoryEvent> = self
            .pending
            .lock()
            .map(|mut p| p.drain().flat_map(|(_, v)| v).collect())
            .unwrap_or_default();
        if !all.is_empty() {
            self.write(&all, CheckpointWrite::None)?;
        }
        match self.failed.lock().ok().and_then(|mut f| f.take()) {
            Some(e) => Err(PortError::Other(format!("history write failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Executions, newest first.
    pub fn list(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>, PortError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT arn, state_machine, name, status, start_time, stop_time, input, output, error, cause
                 FROM sfn_executions
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR state_machine = ?2)
                 ORDER BY start_time DESC, arn DESC LIMIT ?3",
            )
            .map_err(db_err)?;
        let limit = i64::try_from(filter.limit.unwrap_or(100)).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(
                params![filter.status, filter.state_machine, limit],
                summary_row,
            )
            .map_err(db_err)?;
        rows.map(|r| r.map_err(db_err)).collect()
    }

    /// Counts of executions by status.
    pub fn count_by_status(&self) -> Result<Vec<(String, u64)>, PortError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT status, COUNT(*) FROM sfn_executions GROUP BY status ORDER BY status",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(db_err)?;
        rows.map(|r| {
            r.map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
                .map_err(db_err)
        })
        .collect()
    }

    /// One execution by ARN or by name (the most recent with that name).
    pub fn find(&self, arn_or_name: &str) -> Result<Option<ExecutionSummary>, PortError> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "SELECT arn, state_machine, name, status, start_time, stop_time, input, output, error, cause
             FROM sfn_executions WHERE arn = ?1 OR name = ?1 ORDER BY start_time DESC LIMIT 1",
        )
        .map_err(db_err)?
        .query_row([arn_or_name], summary_row)
        .optional()
        .map_err(db_err)
    }

    /// The execution's history in id order (written events only; call [`Self::flush`] first
    /// to include buffered ones).
    pub fn history(&self, arn: &str) -> Result<Vec<HistoryEvent>, PortError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, previous_id, ts, type, details_key, details FROM sfn_history
                 WHERE arn = ?1 ORDER BY id",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([arn], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, prev, ts, ty, key, details) = row.map_err(db_err)?;
            let timestamp = DateTime::parse_from_rfc3339(&ts)
                .map_err(|e| PortError::Other(format!("bad timestamp {ts:?} in history: {e}")))?
                .with_timezone(&Utc);
            let details = match (key, details) {
                (Some(k), Some(d)) => Some((
                    k,
                    serde_json::from_str(&d)
                        .map_err(|e| PortError::Other(format!("bad history details: {e}")))?,
                )),
                _ => None,
            };
            out.push(HistoryEvent {
                execution_arn: arn.to_string(),
                id: u64::try_from(id).unwrap_or(0),
                previous_event_id: u64::try_from(prev).unwrap_or(0),
                timestamp,
                event_type: ty,
                details,
            });
        }
        Ok(out)
    }

    /// ARNs of executions that have a checkpoint: they stopped mid-way and can be resumed.
    pub fn interrupted(&self) -> Result<Vec<String>, PortError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached("SELECT arn FROM sfn_checkpoints ORDER BY arn")
            .map_err(db_err)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(db_err)?;
        rows.map(|r| r.map_err(db_err)).collect()
    }
}

enum CheckpointWrite<'a> {
    None,
    Save(&'a Checkpoint),
    Clear(&'a str),
}

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionSummary> {
    let json = |i: usize| -> rusqlite::Result<Option<Value>> {
        Ok(r.get::<_, Option<String>>(i)?
            .map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s))))
    };
    Ok(ExecutionSummary {
        arn: r.get(0)?,
        state_machine: r.get(1)?,
        name: r.get(2)?,
        status: r.get(3)?,
        start_time: r.get(4)?,
        stop_time: r.get(5)?,
        input: json(6)?,
        output: json(7)?,
        error: r.get(8)?,
        cause: r.get(9)?,
    })
}

fn is_terminal(event_type: &str) -> bool {
    matches!(
        event_type,
        "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted"
    )
}

/// `arn:aws:states:<region>:<account>:execution:<state machine>:<name>` -> (machine, name).
fn split_arn(arn: &str) -> (String, String) {
    let mut parts = arn.rsplitn(3, ':');
    let name = parts.next().unwrap_or_default().to_string();
    let machine = parts.next().unwrap_or_default().to_string();
    (machine, name)
}

fn detail_str<'a>(e: &'a HistoryEvent, field: &str) -> Option<&'a str> {
    e.details
        .as_ref()
        .and_then(|(_, d)| d.get(field))
        .and_then(Value::as_str)
}

fn write_events(tx: &Transaction<'_>, events: &[HistoryEvent]) -> Result<(), PortError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO sfn_history (arn, id, previous_id, ts, type, details_key, details)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(db_err)?;
    for e in events {
        let ts = e
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let (key, details) = match &e.details {
            Some((k, v)) => (Some(k.as_str()), Some(v.to_string())),
            None => (None, None),
        };
        insert
            .execute(params![
                e.execution_arn,
                i64::try_from(e.id).unwrap_or(i64::MAX),
                i64::try_from(e.previous_event_id).unwrap_or(i64::MAX),
                ts,
                e.event_type,
                key,
                details,
            ])
            .map_err(db_err)?;
        match e.event_type.as_str() {
            "ExecutionStarted" => {
                let (machine, name) = split_arn(&e.execution_arn);
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO sfn_executions (arn, state_machine, name, status, start_time, input)
                     VALUES (?1, ?2, ?3, 'RUNNING', ?4, ?5)",
                )
                .map_err(db_err)?
                .execute(params![e.execution_arn, machine, name, ts, detail_str(e, "input")])
                .map_err(db_err)?;
            }
            ty if is_terminal(ty) => {
                let status = match ty {
                    "ExecutionSucceeded" => "SUCCEEDED",
                    "ExecutionFailed" => "FAILED",
                    "ExecutionTimedOut" => "TIMED_OUT",
                    _ => "ABORTED",
                };
                tx.prepare_cached(
                    "UPDATE sfn_executions SET status = ?2, stop_time = ?3, output = ?4, error = ?5, cause = ?6
                     WHERE arn = ?1",
                )
                .map_err(db_err)?
                .execute(params![
                    e.execution_arn,
                    status,
                    ts,
                    detail_str(e, "output"),
                    detail_str(e, "error"),
                    detail_str(e, "cause"),
                ])
                .map_err(db_err)?;
            }
            _ => {}
        }
    }
    Ok(())
}

impl HistorySink for ExecutionStore {
    fn record(&self, event: HistoryEvent) {
        let arn = event.execution_arn.clone();
        let terminal = is_terminal(&event.event_type);
        let full = {
            let Ok(mut pending) = self.pending.lock() else {
                return;
            };
            let buf = pending.entry(arn.clone()).or_default();
            buf.push(event);
            buf.len() >= MAX_BUFFERED
        };
        let result = if terminal {
            let events = self.take_pending(&arn);
            let r = self.write(&events, CheckpointWrite::Clear(&arn));
            if r.is_ok()
                && let Ok(mut f) = self.finished.lock()
            {
                f.insert(arn);
            }
            r
        } else if full {
            let events = self.take_pending(&arn);
            self.write(&events, CheckpointWrite::None)
        } else {
            Ok(())
        };
        if let Err(e) = result {
            self.note_failure(e);
        }
    }
}

impl CheckpointStore for ExecutionStore {
    fn save(&self, checkpoint: &Checkpoint) -> Result<(), String> {
        let events = self.take_pending(&checkpoint.execution_arn);
        self.write(&events, CheckpointWrite::Save(checkpoint))
            .map_err(|e| e.to_string())
    }

    fn load(&self, execution_arn: &str) -> Result<Option<Checkpoint>, String> {
        let conn = self.conn().map_err(|e| e.to_string())?;
        let row = conn
            .prepare_cached(
                "SELECT next_state, input, variables, execution_input, last_event_id, start_time
                 FROM sfn_checkpoints WHERE arn = ?1",
            )
            .and_then(|mut s| {
                s.query_row([execution_arn], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| e.to_string())?;
        let Some((next_state, input, variables, execution_input, last, start_time)) = row else {
            return Ok(None);
        };
        let parse = |s: &str| serde_json::from_str::<Value>(s).map_err(|e| e.to_string());
        let variables = match parse(&variables)? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Ok(Some(Checkpoint {
            execution_arn: execution_arn.to_string(),
            next_state,
            input: parse(&input)?,
            variables,
            execution_input: parse(&execution_input)?,
            last_event_id: u64::try_from(last).unwrap_or(0),
            start_time,
        }))
    }

    fn clear(&self, execution_arn: &str) -> Result<(), String> {
        if self
            .finished
            .lock()
            .map(|mut f| f.remove(execution_arn))
            .unwrap_or(false)
        {
            return Ok(());
        }
        let events = self.take_pending(execution_arn);
        self.write(&events, CheckpointWrite::Clear(execution_arn))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use upsell_asl::{Engine, Outcome, ParseOptions, Resources, StartOptions, parse_str};

    const MACHINE: &str = r#"{"StartAt":"A","States":{
        "A":{"Type":"Pass","Result":{"n":1},"Next":"B"},
        "B":{"Type":"Pass","Parameters":{"m.$":"$.n"},"Next":"C"},
        "C":{"Type":"Choice","Choices":[{"Variable":"$.m","NumericEquals":1,"Next":"Done"}],"Default":"Boom"},
        "Boom":{"Type":"Fail","Error":"Boom","Cause":"went wrong"},
        "Done":{"Type":"Succeed"}}}"#;

    fn engine(store: &Arc<ExecutionStore>) -> Engine {
        Engine::builder()
            .resources(Resources::new())
            .history(store.clone())
            .checkpoints(store.clone())
            .identity("us-east-1", "000000000000")
            .build()
    }

    #[tokio::test]
    async fn an_execution_leaves_its_history_and_summary_and_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upsell.db");
        let store = Arc::new(ExecutionStore::open(&path).unwrap());
        let sm = Arc::new(parse_str(MACHINE, ParseOptions::default()).unwrap());
        let opts = StartOptions {
            name: Some("run-1".into()),
            state_machine_name: Some("Upsell".into()),
            role_arn: None,
        };
        let run = engine(&store)
            .execute(&sm, serde_json::json!({"in": true}), opts)
            .await;
        assert_eq!(run.outcome, Outcome::Succeeded(serde_json::json!({"m": 1})));
        store.flush().unwrap();

        // Read back through a fresh connection: everything was committed.
        let again = ExecutionStore::open(&path).unwrap();
        let summary = again.find("run-1").unwrap().expect("execution row");
        assert_eq!(summary.arn, run.arn);
        assert_eq!(summary.state_machine, "Upsell");
        assert_eq!(summary.status, "SUCCEEDED");
        assert_eq!(summary.input, Some(serde_json::json!({"in": true})));
        assert_eq!(summary.output, Some(serde_json::json!({"m": 1})));
        assert!(summary.stop_time.is_some());
        let history = again.history(&run.arn).unwrap();
        let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types.first(), Some(&"ExecutionStarted"));
        assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
        assert!(types.contains(&"ChoiceStateEntered"), "{types:?}");
        let ids: Vec<u64> = history.iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "ids are 1..n without gaps"
        );
        assert!(
            again.interrupted().unwrap().is_empty(),
            "checkpoint cleared"
        );
        assert_eq!(
            again.count_by_status().unwrap(),
            vec![("SUCCEEDED".to_string(), 1)]
        );
    }

    #[tokio::test]
    async fn failures_are_recorded_with_error_and_cause() {
        let store = Arc::new(ExecutionStore::in_memory().unwrap());
        let sm = Arc::new(
            parse_str(
                &MACHINE.replace("\"NumericEquals\":1", "\"NumericEquals\":2"),
                ParseOptions::default(),
            )
            .unwrap(),
        );
        let run = engine(&store)
            .execute(&sm, serde_json::json!({}), StartOptions::default())
            .await;
        assert!(matches!(run.outcome, Outcome::Failed(_)));
        let s = store.find(&run.arn).unwrap().unwrap();
        assert_eq!(
            (s.status.as_str(), s.error.as_deref(), s.cause.as_deref()),
            ("FAILED", Some("Boom"), Some("went wrong"))
        );
        let listed = store
            .list(&ExecutionFilter {
                status: Some("FAILED".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert!(
            store
                .list(&ExecutionFilter {
                    status: Some("SUCCEEDED".into()),
                    ..Default::default()
                })
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn checkpoints_survive_a_restart_with_the_events_before_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upsell.db");
        let arn = "arn:aws:states:us-east-1:000000000000:execution:Upsell:e1";
        let event = |id: u64, ty: &str| HistoryEvent {
            execution_arn: arn.into(),
            id,
            previous_event_id: id - 1,
            timestamp: Utc::now(),
            event_type: ty.into(),
            details: Some(("x".into(), serde_json::json!({"input": "{}"}))),
        };
        let checkpoint = Checkpoint {
            execution_arn: arn.into(),
            next_state: "Enrich".into(),
            input: serde_json::json!({"a": 1}),
            variables: Map::from_iter([("v".to_string(), serde_json::json!(2))]),
            execution_input: serde_json::json!({"id": "e1"}),
            last_event_id: 3,
            start_time: "2025-01-01T00:00:00.000Z".into(),
        };
        {
            let store = ExecutionStore::open(&path).unwrap();
            store.record(event(1, "ExecutionStarted"));
            store.record(event(2, "TaskStateEntered"));
            store.record(event(3, "TaskStateExited"));
            store.save(&checkpoint).unwrap();
            store.record(event(4, "TaskStateEntered"));
            // Dropped here without a flush: a crash after the checkpoint.
        }
        let store = ExecutionStore::open(&path).unwrap();
        assert_eq!(store.interrupted().unwrap(), vec![arn.to_string()]);
        assert_eq!(store.load(arn).unwrap(), Some(checkpoint));
        assert_eq!(
            store.history(arn).unwrap().len(),
            3,
            "events up to the checkpoint are durable"
        );
        assert_eq!(store.find(arn).unwrap().unwrap().status, "RUNNING");
        store.clear(arn).unwrap();
        assert_eq!(store.load(arn).unwrap(), None);
    }
}
