//! Durable execution history and checkpoints for the ASL engine (`upsell-asl`'s
//! [`HistorySink`] and [`CheckpointStore`]), plus the read side that `upsell executions` uses.
//!
//! # Group commit
//! History events are buffered per execution and handed over together with the execution's
//! checkpoint at each top-level state transition (and with the checkpoint's removal when the
//! execution ends), as one unit. Units of all executions are queued in memory and a background
//! writer thread (which owns its own SQLite connection) commits the queue in one transaction
//! every [`HistoryOptions::commit_interval`] (5 ms by default) or as soon as
//! [`HistoryOptions::max_batch_events`] events wait, whichever comes first. Units are committed
//! whole and in order, so what is durable is always a prefix of what was handed over: an
//! execution's history never runs past its durable checkpoint. WAL checkpoints run on the
//! writer thread only (`wal_autocheckpoint` raised), never on the engine's per-state path, and
//! [`ExecutionStore::flush`] waits until everything handed over is committed, then checkpoints
//! the WAL (which syncs it to disk).
//!
//! Reads ([`ExecutionStore::find`], [`ExecutionStore::history`], [`CheckpointStore::load`],
//! [`ExecutionStore::interrupted`]) see queued units as if they were committed;
//! [`ExecutionStore::list`] and [`ExecutionStore::count_by_status`] wait for the queue first.
//!
//! # Durability window
//! A crash of the process loses at most the units queued but not yet committed: the last
//! `commit_interval` of progress (plus the events after each execution's last checkpoint,
//! as before). The connection runs with `synchronous = NORMAL`, so an operating-system crash or
//! power cut may also lose commits made since the last WAL sync (at the latest, the last
//! `flush`). Either way that is safe: every execution resumes from its last durable checkpoint
//! and its history is cut at the same point. A Task that had succeeded after that checkpoint
//! runs again, which our workers tolerate because they are idempotent: `publish` uses
//! `put_if_absent`, and the `ClaimEvent` state's conditional put accepts a claim written by the
//! same execution (`attribute_not_exists(pk) OR executionId = :me`), so a re-run claim does not
//! turn a fresh event into a duplicate. An execution whose first checkpoint was lost left no
//! durable trace at all and simply runs again when its event is submitted again.
//!
//! # Data level
//! [`HistoryLevel::Full`] keeps every event's details as Step Functions shows them;
//! [`HistoryLevel::Summary`] (Step Functions' `includeExecutionData: false`) keeps event types,
//! state names, timestamps, resources, errors and causes but drops the `input`, `output` and
//! `parameters` payloads from the history. The execution rows (`DescribeExecution`: input,
//! output, error, cause) and the checkpoints are kept whole at both levels.
//!
//! At the full level a payload equal to one stored earlier in the same execution (a state's
//! input is the previous state's output; Pass and Choice states pass theirs on) is stored as a
//! reference to the event that holds the text, `{"$ref": {"event": 12, "field": "output"}}`,
//! and one that differs from a recent payload in one stretch (a state's output is its input
//! with the result added) as an edit of it, `{"$edit": {"event", "field", "keepStart",
//! "keepEnd", "text"}}`. [`ExecutionStore::history`] puts the text back byte for byte, so
//! readers see every payload whole. On the sample workflow the lines take a quarter of the
//! bytes they take inline, and their compressed blocks 12% less (zstd finds repeats within a
//! block, not across commits; `scripts/history-encodings.py`).
//!
//! # Storage
//! Each commit writes its events as one zstd-compressed block (`sfn_history_blocks`): one line
//! of JSON per event, `[id, previousId, "timestamp", "type", "detailsKey", details]`, the lines
//! of each execution together, and a row per execution in `sfn_history_segments` saying where
//! its lines are in the block and which event ids they hold. With a row per event the writer
//! inserted 61 rows per run of the sample workflow and the file grew by 70 KB; with blocks it
//! is one segment row per execution and commit, and 3.2 KB.
//!
//! # Resumed executions
//! An execution that resumes from its checkpoint records its events under the ids that follow
//! the checkpoint; the stopped run may have committed events with those ids and beyond (more
//! than a unit's worth of events inside one state, a large Map for instance). The engine says
//! so ([`HistorySink::resumed`]), and in the same transaction as the resumed run's first events
//! the store drops the stopped run's events from that id on: segments that start there go,
//! and the others end before it (a segment's lines past its `last_id` are not read; blocks are
//! shared with other executions, so the lines themselves stay). The history then reads as the
//! stopped run's events up to the checkpoint followed by the resumed run's, each id once.
//!
//! Tables: `sfn_executions` (one row per execution: status, input, output or error),
//! `sfn_history_blocks` and `sfn_history_segments` (the events as `GetExecutionHistory` shows
//! them) and `sfn_checkpoints`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Map, Value};
use upsell_asl::{Checkpoint, CheckpointStore, HistoryEvent, HistorySink};
use upsell_core::ports::PortError;

use crate::{db_err, open_connection};

/// Events buffered for one execution before they are handed over without waiting for a
/// checkpoint.
const MAX_BUFFERED: usize = 512;

/// WAL size (pages) at which the writer's commits checkpoint the WAL (SQLite's default: 1000).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// Detail fields that [`HistoryLevel::Summary`] drops.
const PAYLOAD_FIELDS: [&str; 5] = [
    "input",
    "output",
    "parameters",
    "inputDetails",
    "outputDetails",
];

/// How much of each history event is kept (Step Functions' `includeExecutionData`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HistoryLevel {
    /// Every event with its details, input and output payloads included.
    #[default]
    Full,
    /// Event types, state names, timestamps, errors and causes; no input/output payloads.
    Summary,
}

impl HistoryLevel {
    fn to_u8(self) -> u8 {
        match self {
            HistoryLevel::Full => 0,
            HistoryLevel::Summary => 1,
        }
    }

    fn from_u8(v: u8) -> Self {
        if v == 1 {
            HistoryLevel::Summary
        } else {
            HistoryLevel::Full
        }
    }
}

/// Options of an [`ExecutionStore`].
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// What is kept of each event (default [`HistoryLevel::Full`]).
    pub level: HistoryLevel,
    /// The longest a handed-over unit waits before it is committed (default 5 ms): the
    /// durability window of a process crash.
    pub commit_interval: Duration,
    /// Commit as soon as this many events wait (default 4096). Writers of history wait when
    /// eight times as many are queued (the disk cannot keep up).
    pub max_batch_events: usize,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            level: HistoryLevel::Full,
            commit_interval: Duration::from_millis(5),
            max_batch_events: 4096,
        }
    }
}

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
CREATE TABLE IF NOT EXISTS sfn_history_blocks (
    id   INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sfn_history_segments (
    arn      TEXT NOT NULL,
    block    INTEGER NOT NULL,
    start    INTEGER NOT NULL,
    length   INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    last_id  INTEGER NOT NULL,
    PRIMARY KEY (arn, block)
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

/// What a terminal event sets in an `sfn_executions` row.
#[derive(Debug, Clone)]
struct Stopped {
    status: &'static str,
    stop_time: String,
    output: Option<Value>,
    error: Option<String>,
    cause: Option<String>,
}

/// What a batch changes in one `sfn_executions` row.
#[derive(Debug, Clone, Default)]
struct ExecPatch {
    /// From `ExecutionStarted`: the whole row (status RUNNING).
    started: Option<ExecutionSummary>,
    /// From the terminal event: status, stop time, output, error, cause.
    stopped: Option<Stopped>,
}

impl ExecPatch {
    fn apply(&self, row: Option<ExecutionSummary>) -> Option<ExecutionSummary> {
        let mut row = self.started.clone().or(row)?;
        if let Some(s) = &self.stopped {
            row.status = s.status.to_string();
            row.stop_time = Some(s.stop_time.clone());
            row.output.clone_from(&s.output);
            row.error.clone_from(&s.error);
            row.cause.clone_from(&s.cause);
        }
        Some(row)
    }
}

/// Units handed over to the writer and not committed yet.
#[derive(Debug, Default)]
struct Batch {
    /// Events in hand-over order.
    events: Vec<HistoryEvent>,
    /// Last checkpoint operation per execution: `Some` = save, `None` = remove.
    checkpoints: HashMap<String, Option<StoredCheckpoint>>,
    /// Execution rows started or stopped by these events.
    execs: HashMap<String, ExecPatch>,
    /// Executions resumed from a checkpoint, with the first id the stopped run's events are
    /// void from (handed over before the resumed run's events).
    cuts: Vec<(String, u64)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.checkpoints.is_empty() && self.cuts.is_empty()
    }

    fn push(&mut self, events: Vec<HistoryEvent>, checkpoint: CheckpointWrite) {
        for e in &events {
            let ts = timestamp(e);
            if e.event_type == "ExecutionStarted" {
                let (machine, name) = split_arn(&e.execution_arn);
                self.execs
                    .entry(e.execution_arn.clone())
                    .or_default()
                    .started = Some(ExecutionSummary {
                    arn: e.execution_arn.clone(),
                    state_machine: machine,
                    name,
                    status: "RUNNING".into(),
                    start_time: ts,
                    stop_time: None,
                    input: detail_str(e, "input").map(parse_lenient),
                    output: None,
                    error: None,
                    cause: None,
                });
            } else if let Some(status) = terminal_status(&e.event_type) {
                self.execs
                    .entry(e.execution_arn.clone())
                    .or_default()
                    .stopped = Some(Stopped {
                    status,
                    stop_time: ts,
                    output: detail_str(e, "output").map(parse_lenient),
                    error: detail_str(e, "error").map(str::to_string),
                    cause: detail_str(e, "cause").map(str::to_string),
                });
            }
        }
        self.events.extend(events);
        match checkpoint {
            CheckpointWrite::None => {}
            CheckpointWrite::Save(arn, c) => {
                self.checkpoints.insert(arn, Some(c));
            }
            CheckpointWrite::Clear(arn) => {
                self.checkpoints.insert(arn, None);
            }
        }
    }

    fn write(
        &self,
        tx: &Transaction<'_>,
        level: HistoryLevel,
        encoder: &mut Encoder,
    ) -> Result<(), PortError> {
        for (arn, from_id) in &self.cuts {
            // The void events leave the segments (blocks are shared, so their lines stay).
            let from_id = i64::try_from(*from_id).unwrap_or(i64::MAX);
            for sql in [
                "DELETE FROM sfn_history_segments WHERE arn = ?1 AND first_id >= ?2",
                "UPDATE sfn_history_segments SET last_id = ?2 - 1 WHERE arn = ?1 AND last_id >= ?2",
            ] {
                tx.prepare_cached(sql)
                    .map_err(db_err)?
                    .execute(params![arn, from_id])
                    .map_err(db_err)?;
            }
            // Its remembered payloads may belong to void events.
            encoder.seen.forget(arn);
        }
        write_events(tx, &self.events, level, encoder)?;
        for (arn, op) in &self.checkpoints {
            match op {
                Some(c) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO sfn_checkpoints
                         (arn, next_state, input, variables, execution_input, last_event_id, start_time)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(db_err)?
                    .execute(params![
                        arn,
                        c.next_state,
                        c.input,
                        c.variables,
                        c.execution_input,
                        c.last_event_id,
                        c.start_time,
                    ])
                    .map_err(db_err)?;
                }
                None => {
                    tx.prepare_cached("DELETE FROM sfn_checkpoints WHERE arn = ?1")
                        .map_err(db_err)?
                        .execute([arn])
                        .map_err(db_err)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Commit what is queued, then exit.
    Graceful,
    /// Exit without committing (a simulated crash).
    Crash,
}

#[derive(Debug)]
struct Queue {
    pending: Batch,
    /// When the oldest pending unit was handed over.
    pending_since: Option<Instant>,
    /// The batch being committed.
    inflight: Option<Arc<Batch>>,
    /// Sequence number of the last unit handed over / committed.
    submitted: u64,
    committed: u64,
    /// A flush waits for this sequence number.
    wanted: u64,
    /// The first write error since the last flush.
    error: Option<String>,
    stop: Stop,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes those waiting for a commit.
    done: Condvar,
    level: AtomicU8,
    commit_interval: Duration,
    max_batch_events: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn level(&self) -> HistoryLevel {
        HistoryLevel::from_u8(self.level.load(Ordering::Relaxed))
    }
}

/// The writer's connection: its own (file) or the readers' one (in memory).
enum WriterConn {
    Own(Connection),
    Shared(Arc<Mutex<Connection>>),
}

fn writer_loop(shared: &Shared, conn: WriterConn) {
    let mut conn = conn;
    let mut encoder = Encoder::default();
    loop {
        let (batch, seq) = {
            let mut q = shared.lock();
            loop {
                if q.stop == Stop::Crash {
                    return;
                }
                if q.pending.is_empty() {
                    if q.stop == Stop::Graceful {
                        return;
                    }
                    q = shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
                let age = q.pending_since.map_or(Duration::ZERO, |t| t.elapsed());
                if q.stop == Stop::Graceful
                    || q.wanted > q.committed
                    || q.pending.events.len() >= shared.max_batch_events
                    || age >= shared.commit_interval
                {
                    break;
                }
                q = shared
                    .work
                    .wait_timeout(q, shared.commit_interval - age)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            let batch = Arc::new(std::mem::take(&mut q.pending));
            q.pending_since = None;
            q.inflight = Some(batch.clone());
            (batch, q.submitted)
        };
        let level = shared.level();
        let result = match &mut conn {
            WriterConn::Own(c) => commit(c, &batch, level, &mut encoder),
            WriterConn::Shared(m) => match m.lock() {
                Ok(mut c) => commit(&mut c, &batch, level, &mut encoder),
                Err(_) => Err(PortError::Other("execution store lock poisoned".into())),
            },
        };
        let mut q = shared.lock();
        q.inflight = None;
        q.committed = seq;
        if let Err(e) = result
            && q.error.is_none()
        {
            q.error = Some(e.to_string());
        }
        drop(q);
        shared.done.notify_all();
    }
}

fn commit(
    conn: &mut Connection,
    batch: &Batch,
    level: HistoryLevel,
    encoder: &mut Encoder,
) -> Result<(), PortError> {
    let result = conn.transaction().map_err(db_err).and_then(|tx| {
        batch.write(&tx, level, encoder)?;
        tx.commit().map_err(db_err)
    });
    if result.is_err() {
        // Its references may point at events that were rolled back.
        encoder.seen.clear();
    }
    result
}

/// SQLite-backed history sink and checkpoint store.
pub struct ExecutionStore {
    /// The readers' connection.
    conn: Arc<Mutex<Connection>>,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Events per execution not handed over yet (they wait for the next checkpoint).
    pending: Mutex<HashMap<String, Vec<HistoryEvent>>>,
    /// Executions whose checkpoint was already removed with their final events.
    finished: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for ExecutionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecutionStore")
    }
}

impl Drop for ExecutionStore {
    /// Commits what was handed over (not the events after each execution's last checkpoint).
    fn drop(&mut self) {
        self.stop(Stop::Graceful);
    }
}

impl ExecutionStore {
    /// Opens (creating) the store in the SQLite file at `path` (WAL mode), default options.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::open_with(path, HistoryOptions::default())
    }

    /// Opens (creating) the store in the SQLite file at `path` (WAL mode).
    pub fn open_with(path: &Path, options: HistoryOptions) -> Result<Self, PortError> {
        let writer = open_connection(path)?;
        writer.execute_batch(SCHEMA).map_err(db_err)?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .map_err(db_err)?;
        let reader = open_connection(path)?;
        Self::start(
            Arc::new(Mutex::new(reader)),
            WriterConn::Own(writer),
            options,
        )
    }

    /// A store in memory (tests).
    pub fn in_memory() -> Result<Self, PortError> {
        Self::in_memory_with(HistoryOptions::default())
    }

    /// A store in memory with these options (tests).
    pub fn in_memory_with(options: HistoryOptions) -> Result<Self, PortError> {
        let conn = Connection::open_in_memory().map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        let conn = Arc::new(Mutex::new(conn));
        Self::start(conn.clone(), WriterConn::Shared(conn), options)
    }

    fn start(
        conn: Arc<Mutex<Connection>>,
        writer: WriterConn,
        options: HistoryOptions,
    ) -> Result<Self, PortError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: Batch::default(),
                pending_since: None,
                inflight: None,
                submitted: 0,
                committed: 0,
                wanted: 0,
                error: None,
                stop: Stop::Running,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            level: AtomicU8::new(options.level.to_u8()),
            commit_interval: options.commit_interval,
            max_batch_events: options.max_batch_events.max(1),
        });
        let handle = std::thread::Builder::new()
            .name("upsell-history-writer".into())
            .spawn({
                let shared = shared.clone();
                move || writer_loop(&shared, writer)
            })
            .map_err(|e| PortError::Other(format!("cannot start the history writer: {e}")))?;
        Ok(ExecutionStore {
            conn,
            shared,
            writer: Mutex::new(Some(handle)),
            pending: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashSet::new()),
        })
    }

    /// What is kept of each event from now on.
    pub fn set_level(&self, level: HistoryLevel) {
        self.shared.level.store(level.to_u8(), Ordering::Relaxed);
    }

    /// What is kept of each event.
    pub fn level(&self) -> HistoryLevel {
        self.shared.level()
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

    /// Hands `events` and a checkpoint operation over to the writer as one unit. Fails when an
    /// earlier commit failed (until [`Self::flush`] reports it).
    fn submit(&self, events: Vec<HistoryEvent>, checkpoint: CheckpointWrite) -> Result<(), String> {
        if events.is_empty() && matches!(checkpoint, CheckpointWrite::None) {
            // Nothing to commit: a unit counted here would never be committed, and `sync`
            // would wait for it forever.
            return Ok(());
        }
        self.hand_over(|b| b.push(events, checkpoint))
    }

    /// Hands a unit over to the writer: `add` puts it in the pending batch.
    fn hand_over(&self, add: impl FnOnce(&mut Batch)) -> Result<(), String> {
        let mut q = self.shared.lock();
        if let Some(e) = &q.error {
            return Err(format!("history write failed: {e}"));
        }
        // Back-pressure: wait while the writer is far behind.
        while q.pending.events.len() >= self.shared.max_batch_events.saturating_mul(8)
            && q.stop == Stop::Running
        {
            self.shared.work.notify_one();
            q = self.shared.done.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        add(&mut q.pending);
        q.submitted += 1;
        if q.pending_since.is_none() {
            q.pending_since = Some(Instant::now());
            self.shared.work.notify_one();
        } else if q.pending.events.len() >= self.shared.max_batch_events {
            self.shared.work.notify_one();
        }
        Ok(())
    }

    /// Waits until everything handed over so far is committed.
    fn sync(&self) {
        let mut q = self.shared.lock();
        let target = q.submitted;
        if q.committed >= target {
            return;
        }
        q.wanted = q.wanted.max(target);
        self.shared.work.notify_one();
        while q.committed < target && q.stop != Stop::Crash {
            q = self.shared.done.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn stop(&self, how: Stop) {
        {
            let mut q = self.shared.lock();
            if q.stop == Stop::Running {
                q.stop = how;
            }
        }
        self.shared.work.notify_all();
        self.shared.done.notify_all();
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }

    /// Stops the writer without committing what is queued, as if the process had died (tests
    /// of crash recovery). The store must not be used afterwards.
    #[doc(hidden)]
    pub fn simulate_crash(&self) {
        self.stop(Stop::Crash);
    }

    /// Hands every buffered event over, waits until all is committed, checkpoints the WAL
    /// (syncing it to disk) and reports the first write error since the last flush.
    pub fn flush(&self) -> Result<(), PortError> {
        let all: Vec<HistoryEvent> = self
            .pending
            .lock()
            .map(|mut p| p.drain().flat_map(|(_, v)| v).collect())
            .unwrap_or_default();
        if !all.is_empty() {
            // An error here is the stored one, reported below.
            let _ = self.submit(all, CheckpointWrite::None);
        }
        self.sync();
        if let Some(e) = self.shared.lock().error.take() {
            return Err(PortError::Other(format!("history write failed: {e}")));
        }
        let conn = self.conn()?;
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .optional()
            .map_err(db_err)?;
        Ok(())
    }

    /// Queued (pending, then in-flight: newest first) batches, read under the queue lock.
    fn overlay<T>(&self, f: impl Fn(&Batch) -> Option<T>) -> Vec<T> {
        let q = self.shared.lock();
        let mut out = Vec::new();
        out.extend(f(&q.pending));
        if let Some(b) = &q.inflight {
            out.extend(f(b));
        }
        out
    }

    /// Executions, newest first.
    pub fn list(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>, PortError> {
        self.sync();
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
        self.sync();
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

    /// One execution by ARN or by name (the most recent with that name), queued changes
    /// included.
    pub fn find(&self, arn_or_name: &str) -> Result<Option<ExecutionSummary>, PortError> {
        let patches = self.overlay(|b| {
            b.execs
                .iter()
                .find(|(arn, _)| *arn == arn_or_name || arn.rsplit(':').next() == Some(arn_or_name))
                .map(|(arn, p)| (arn.clone(), p.clone()))
        });
        let Some((arn, _)) = patches.first() else {
            return self.find_committed(arn_or_name);
        };
        let base = self.find_committed(arn)?.filter(|r| r.arn == *arn);
        // Oldest (in flight) first, then the pending patch.
        let row = patches
            .iter()
            .rev()
            .filter(|(a, _)| a == arn)
            .fold(base, |row, (_, p)| p.apply(row));
        match row {
            Some(r) => Ok(Some(r)),
            None => self.find_committed(arn_or_name),
        }
    }

    fn find_committed(&self, arn_or_name: &str) -> Result<Option<ExecutionSummary>, PortError> {
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

    /// The execution's history in id order: events handed over to the writer (at each
    /// checkpoint and at the end), committed or not; call [`Self::flush`] first to include
    /// the events after a running execution's last checkpoint.
    pub fn history(&self, arn: &str) -> Result<Vec<HistoryEvent>, PortError> {
        let queued = self.overlay(|b| {
            let cut = b
                .cuts
                .iter()
                .filter(|(a, _)| a == arn)
                .map(|(_, from)| *from)
                .min();
            let events = b
                .events
                .iter()
                .filter(|e| e.execution_arn == arn)
                .cloned()
                .collect::<Vec<_>>();
            Some((cut, events))
        });
        let mut out = BTreeMap::new();
        for e in self.history_committed(arn)? {
            out.insert(e.id, e);
        }
        // Oldest batch first; within a batch the cut was handed over before the events.
        for (cut, events) in queued.into_iter().rev() {
            if let Some(from) = cut {
                out.split_off(&from);
            }
            for e in events {
                out.insert(e.id, e);
            }
        }
        Ok(out.into_values().collect())
    }

    fn history_committed(&self, arn: &str) -> Result<Vec<HistoryEvent>, PortError> {
        let conn = self.conn()?;
        // Events by id; a later copy of an id (an execution resumed before a lost commit)
        // replaces an earlier one.
        let mut stored: BTreeMap<u64, StoredEvent> = BTreeMap::new();
        let mut stmt = conn
            .prepare_cached(
                "SELECT s.block, s.start, s.length, b.size, b.data, s.last_id
                 FROM sfn_history_segments s JOIN sfn_history_blocks b ON b.id = s.block
                 WHERE s.arn = ?1 ORDER BY s.block",
            )
            .map_err(db_err)?;
        let mut rows = stmt.query([arn]).map_err(db_err)?;
        let mut decompressor = zstd::bulk::Decompressor::new()
            .map_err(|e| PortError::Other(format!("cannot read history blocks: {e}")))?;
        while let Some(row) = rows.next().map_err(db_err)? {
            let block: i64 = row.get(0).map_err(db_err)?;
            let bad = |what: String| PortError::Other(format!("history block {block}: {what}"));
            let number = |i: usize| -> Result<usize, PortError> {
                let n: i64 = row.get(i).map_err(db_err)?;
                usize::try_from(n).map_err(|_| bad(format!("negative size {n}")))
            };
            let (start, length, size) = (number(1)?, number(2)?, number(3)?);
            // Lines past the segment's last id are void (see "Resumed executions").
            let last_id: i64 = row.get(5).map_err(db_err)?;
            let data = row
                .get_ref(4)
                .map_err(db_err)?
                .as_blob()
                .map_err(|e| bad(e.to_string()))?;
            let raw = decompressor
                .decompress(data, size)
                .map_err(|e| bad(format!("cannot decompress: {e}")))?;
            let segment = start
                .checked_add(length)
                .and_then(|end| raw.get(start..end))
                .ok_or_else(|| {
                    bad(format!(
                        "segment {start}+{length} is outside its {} bytes",
                        raw.len()
                    ))
                })?;
            for line in segment.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let event: StoredEvent =
                    serde_json::from_slice(line).map_err(|e| bad(format!("bad event: {e}")))?;
                if i64::try_from(event.0).is_ok_and(|id| id <= last_id) {
                    stored.insert(event.0, event);
                }
            }
        }
        // Payload references point at earlier events: resolve in id order.
        let mut out: Vec<HistoryEvent> = Vec::with_capacity(stored.len());
        let mut index = HashMap::with_capacity(stored.len());
        for StoredEvent(id, prev, ts, ty, key, details) in stored.into_values() {
            let timestamp = DateTime::parse_from_rfc3339(&ts)
                .map_err(|e| PortError::Other(format!("bad timestamp {ts:?} in history: {e}")))?
                .with_timezone(&Utc);
            let details = match (key, details) {
                (Some(k), Some(mut v)) => {
                    resolve_payload_refs(&mut v, &out, &index)?;
                    Some((k, v))
                }
                _ => None,
            };
            index.insert(id, out.len());
            out.push(HistoryEvent {
                execution_arn: arn.to_string(),
                id,
                previous_event_id: prev,
                timestamp,
                event_type: ty,
                details,
            });
        }
        Ok(out)
    }

    /// ARNs of executions that have a checkpoint (queued ones included): they stopped
    /// mid-way and can be resumed.
    pub fn interrupted(&self) -> Result<Vec<String>, PortError> {
        let queued = self.overlay(|b| {
            Some(
                b.checkpoints
                    .iter()
                    .map(|(arn, c)| (arn.clone(), c.is_some()))
                    .collect::<Vec<_>>(),
            )
        });
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached("SELECT arn FROM sfn_checkpoints ORDER BY arn")
            .map_err(db_err)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(db_err)?;
        let mut arns = rows
            .map(|r| r.map_err(db_err))
            .collect::<Result<std::collections::BTreeSet<String>, _>>()?;
        for (arn, saved) in queued.into_iter().rev().flatten() {
            if saved {
                arns.insert(arn);
            } else {
                arns.remove(&arn);
            }
        }
        Ok(arns.into_iter().collect())
    }
}

/// A history event as stored: id, previous id, timestamp, type, details key and details (with
/// payload references unresolved). In a history block each is one line of JSON, an array in
/// this order.
#[derive(Debug, serde::Deserialize)]
struct StoredEvent(u64, u64, String, String, Option<String>, Option<Value>);

/// A checkpoint as stored: JSON serialised when it is handed over (cheaper than a deep copy).
#[derive(Debug, Clone)]
struct StoredCheckpoint {
    next_state: String,
    input: String,
    variables: String,
    execution_input: String,
    last_event_id: i64,
    start_time: String,
}

impl StoredCheckpoint {
    /// `input_json`, when given, is the JSON text of `c.input`.
    fn new(c: &Checkpoint, input_json: Option<&str>) -> Self {
        StoredCheckpoint {
            next_state: c.next_state.clone(),
            input: input_json.map_or_else(|| json_text(&c.input), str::to_string),
            variables: serde_json::to_string(&c.variables).unwrap_or_else(|_| "{}".into()),
            execution_input: json_text(&c.execution_input),
            last_event_id: i64::try_from(c.last_event_id).unwrap_or(i64::MAX),
            start_time: c.start_time.clone(),
        }
    }

    fn checkpoint(self, execution_arn: &str) -> Result<Checkpoint, String> {
        let parse = |s: &str| serde_json::from_str::<Value>(s).map_err(|e| e.to_string());
        let variables = match parse(&self.variables)? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Ok(Checkpoint {
            execution_arn: execution_arn.to_string(),
            next_state: self.next_state,
            input: parse(&self.input)?,
            variables,
            execution_input: parse(&self.execution_input)?,
            last_event_id: u64::try_from(self.last_event_id).unwrap_or(0),
            start_time: self.start_time,
        })
    }
}

enum CheckpointWrite {
    None,
    Save(String, StoredCheckpoint),
    Clear(String),
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
    terminal_status(event_type).is_some()
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

/// The payload fields that hold JSON text (the others in [`PAYLOAD_FIELDS`] are objects).
const TEXT_PAYLOADS: [&str; 3] = ["input", "output", "parameters"];

/// Payloads shorter than this are always stored inline.
const MIN_SHARED_PAYLOAD: usize = 256;

/// Distinct payloads remembered per running execution.
const SEEN_PER_EXECUTION: usize = 8;

/// Running executions whose payloads are remembered; beyond this the memory starts afresh.
const SEEN_EXECUTIONS: usize = 4096;

/// Remembered payloads tried as the base of an edit (newest first).
const DELTA_CANDIDATES: usize = 3;

/// How a payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadForm {
    /// The text itself.
    Inline,
    /// `{"$ref": {"event", "field"}}`: equal to that earlier payload.
    Same(u64, &'static str),
    /// `{"$edit": {"event", "field", "keepStart", "keepEnd", "text"}}`: that earlier payload
    /// with everything between its first `keep_start` and last `keep_end` bytes replaced by
    /// `text`.
    Edit {
        base: (u64, &'static str),
        keep_start: usize,
        keep_end: usize,
    },
}

/// The lengths of the longest common prefix and suffix of `a` and `b` (in bytes, on character
/// boundaries of both, not overlapping in either).
fn common_affixes(a: &str, b: &str) -> (usize, usize) {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let limit = x.len().min(y.len());
    let mut start = x
        .iter()
        .zip(y)
        .take_while(|(p, q)| p == q)
        .count()
        .min(limit);
    while !(a.is_char_boundary(start) && b.is_char_boundary(start)) {
        start -= 1;
    }
    let mut end = x
        .iter()
        .rev()
        .zip(y.iter().rev())
        .take(limit - start)
        .take_while(|(p, q)| p == q)
        .count();
    while !(a.is_char_boundary(x.len() - end) && b.is_char_boundary(y.len() - end)) {
        end -= 1;
    }
    (start, end)
}

/// A payload stored inline: which event holds it, in which field.
#[derive(Debug)]
struct SeenPayload {
    text: String,
    event: u64,
    field: &'static str,
}

/// The writer's memory of the payloads it stored for running executions, so that a payload
/// equal to an earlier one of the same execution (a state's `input` is the `output` of the
/// state before it, a Choice passes its input on unchanged) is stored as a reference,
/// `{"$ref": {"event": 12, "field": "output"}}`, to the event that holds the text. Reading
/// the history puts the text back ([`resolve_payload_refs`]). References only point at events
/// committed earlier or in the same transaction; a failed commit forgets everything.
#[derive(Debug, Default)]
struct SeenPayloads {
    by_execution: HashMap<String, Vec<SeenPayload>>,
}

impl SeenPayloads {
    fn clear(&mut self) {
        self.by_execution.clear();
    }

    /// How to store `text`, `event`'s `field`: as a reference to an equal payload stored
    /// earlier, as an edit of a similar one, or inline; remembers it for the events after.
    fn classify(&mut self, arn: &str, text: &str, event: u64, field: &'static str) -> PayloadForm {
        if text.len() < MIN_SHARED_PAYLOAD {
            return PayloadForm::Inline;
        }
        if !self.by_execution.contains_key(arn) && self.by_execution.len() >= SEEN_EXECUTIONS {
            self.by_execution.clear();
        }
        let seen = self.by_execution.entry(arn.to_string()).or_default();
        if let Some(p) = seen.iter().find(|p| p.text == text) {
            // Within one event the text stays inline: readers resolve from earlier events.
            return if p.event == event {
                PayloadForm::Inline
            } else {
                PayloadForm::Same(p.event, p.field)
            };
        }
        // The newest payloads of earlier events are the likeliest bases: a state's output is
        // its input with the result added.
        let best = seen
            .iter()
            .rev()
            .filter(|p| p.event != event)
            .take(DELTA_CANDIDATES)
            .map(|p| {
                let (keep_start, keep_end) = common_affixes(&p.text, text);
                (p.event, p.field, keep_start, keep_end)
            })
            .max_by_key(|&(_, _, start, end)| start + end);
        if seen.len() >= SEEN_PER_EXECUTION {
            seen.remove(0);
        }
        seen.push(SeenPayload {
            text: text.to_string(),
            event,
            field,
        });
        match best {
            Some((event, field, keep_start, keep_end))
                if (keep_start + keep_end) * 2 > text.len() =>
            {
                PayloadForm::Edit {
                    base: (event, field),
                    keep_start,
                    keep_end,
                }
            }
            _ => PayloadForm::Inline,
        }
    }

    fn forget(&mut self, arn: &str) {
        self.by_execution.remove(arn);
    }
}

/// The details of a full-level event as stored: payloads seen earlier in the execution become
/// references or edits ([`PayloadForm`]).
struct StoredDetails<'a> {
    details: &'a Map<String, Value>,
    forms: [PayloadForm; 3],
}

impl serde::Serialize for StoredDetails<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = ser.serialize_map(Some(self.details.len()))?;
        for (k, v) in self.details {
            let form = TEXT_PAYLOADS
                .iter()
                .position(|f| f == k)
                .map_or(PayloadForm::Inline, |i| self.forms[i]);
            match (form, v) {
                (PayloadForm::Same(event, field), _) => map.serialize_entry(
                    k,
                    &serde_json::json!({ "$ref": { "event": event, "field": field } }),
                )?,
                (
                    PayloadForm::Edit {
                        base: (event, field),
                        keep_start,
                        keep_end,
                    },
                    Value::String(text),
                ) => map.serialize_entry(
                    k,
                    &serde_json::json!({ "$edit": {
                        "event": event,
                        "field": field,
                        "keepStart": keep_start,
                        "keepEnd": keep_end,
                        "text": &text[keep_start..text.len() - keep_end],
                    } }),
                )?,
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

/// Writes the details of `e` as stored at `level` (see [`SeenPayloads`]) to `out`.
fn write_stored_details(
    out: &mut Vec<u8>,
    e: &HistoryEvent,
    details: &Value,
    level: HistoryLevel,
    seen: &mut SeenPayloads,
) -> Result<(), PortError> {
    let written = match (level, details) {
        (HistoryLevel::Full, Value::Object(m)) => {
            let mut forms = [PayloadForm::Inline; 3];
            for (i, field) in TEXT_PAYLOADS.iter().enumerate() {
                if let Some(Value::String(text)) = m.get(*field) {
                    forms[i] = seen.classify(&e.execution_arn, text, e.id, field);
                }
            }
            serde_json::to_writer(&mut *out, &StoredDetails { details: m, forms })
        }
        (HistoryLevel::Summary, Value::Object(m))
            if PAYLOAD_FIELDS.iter().any(|k| m.contains_key(*k)) =>
        {
            let kept: Map<String, Value> = m
                .iter()
                .filter(|(k, _)| !PAYLOAD_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            serde_json::to_writer(&mut *out, &kept)
        }
        _ => serde_json::to_writer(&mut *out, details),
    };
    written.map_err(|e| PortError::Other(format!("cannot encode history details: {e}")))
}

/// Puts back the payloads that [`SeenPayloads`] stored as references or edits, from the
/// events read before (`out`, in id order, with `index` from id to position).
fn resolve_payload_refs(
    details: &mut Value,
    out: &[HistoryEvent],
    index: &HashMap<u64, usize>,
) -> Result<(), PortError> {
    let Value::Object(m) = details else {
        return Ok(());
    };
    for field in TEXT_PAYLOADS {
        let Some(Value::Object(r)) = m.get(field) else {
            continue;
        };
        let (edit, target) = match (r.get("$ref"), r.get("$edit")) {
            (Some(t), None) => (false, t),
            (None, Some(t)) => (true, t),
            _ => continue,
        };
        let bad =
            |what: &str| PortError::Other(format!("history payload {field} {target}: {what}"));
        let event = target.get("event").and_then(Value::as_u64);
        let from = target.get("field").and_then(Value::as_str);
        let base = event
            .zip(from)
            .and_then(|(id, f)| {
                let (_, d) = out.get(*index.get(&id)?)?.details.as_ref()?;
                d.get(f)?.as_str()
            })
            .ok_or_else(|| bad("points at no stored payload"))?;
        let text = if edit {
            let number = |k: &str| {
                target
                    .get(k)
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| bad(&format!("no {k}")))
            };
            let (start, end) = (number("keepStart")?, number("keepEnd")?);
            let middle = target
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("no text"))?;
            let tail = base.len().checked_sub(end).filter(|t| *t >= start);
            match tail {
                Some(tail) if base.is_char_boundary(start) && base.is_char_boundary(tail) => {
                    [&base[..start], middle, &base[tail..]].concat()
                }
                _ => return Err(bad("does not fit the payload it edits")),
            }
        } else {
            base.to_string()
        };
        m.insert(field.to_string(), Value::String(text));
    }
    Ok(())
}

/// The writer's state across commits: the payloads it remembers ([`SeenPayloads`]) and the
/// compressor of history blocks (made at the first block).
#[derive(Default)]
struct Encoder {
    seen: SeenPayloads,
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl Encoder {
    fn compress(&mut self, raw: &[u8]) -> Result<Vec<u8>, PortError> {
        let failed = |e: std::io::Error| PortError::Other(format!("cannot compress history: {e}"));
        let compressor = match &mut self.compressor {
            Some(c) => c,
            None => self
                .compressor
                .insert(zstd::bulk::Compressor::new(BLOCK_COMPRESSION_LEVEL).map_err(failed)?),
        };
        compressor.compress(raw).map_err(failed)
    }
}

/// zstd level of history blocks: level 1 compresses a commit's events about tenfold at close
/// to 1 GB/s.
const BLOCK_COMPRESSION_LEVEL: i32 = 1;

/// One execution's events within a block: their lines, and the first and last event id.
struct Segment<'a> {
    arn: &'a str,
    lines: Vec<u8>,
    first_id: u64,
    last_id: u64,
}

/// Appends `e` to `out` as one line of a history block:
/// `[id, previousId, "timestamp", "type", "detailsKey" | null, details | null]`.
fn write_event_line(
    out: &mut Vec<u8>,
    e: &HistoryEvent,
    level: HistoryLevel,
    seen: &mut SeenPayloads,
) -> Result<(), PortError> {
    use std::io::Write;
    let failed = |e: std::io::Error| PortError::Other(format!("cannot encode history: {e}"));
    write!(
        out,
        "[{},{},\"{}\",",
        e.id,
        e.previous_event_id,
        timestamp(e)
    )
    .map_err(failed)?;
    serde_json::to_writer(&mut *out, &e.event_type).map_err(|e| failed(e.into()))?;
    match &e.details {
        Some((key, details)) => {
            out.push(b',');
            serde_json::to_writer(&mut *out, key).map_err(|e| failed(e.into()))?;
            out.push(b',');
            write_stored_details(out, e, details, level, seen)?;
        }
        None => out.extend_from_slice(b",null,null"),
    }
    out.extend_from_slice(b"]\n");
    Ok(())
}

/// Writes the batch's events as one compressed block with a segment per execution, and keeps
/// the `sfn_executions` rows in step.
fn write_events(
    tx: &Transaction<'_>,
    events: &[HistoryEvent],
    level: HistoryLevel,
    encoder: &mut Encoder,
) -> Result<(), PortError> {
    if events.is_empty() {
        return Ok(());
    }
    // Each execution's lines are kept together, in the order the executions first appear.
    let mut segments: Vec<Segment<'_>> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    for e in events {
        let i = *slot.entry(e.execution_arn.as_str()).or_insert_with(|| {
            segments.push(Segment {
                arn: &e.execution_arn,
                lines: Vec::new(),
                first_id: e.id,
                last_id: e.id,
            });
            segments.len() - 1
        });
        let seg = &mut segments[i];
        write_event_line(&mut seg.lines, e, level, &mut encoder.seen)?;
        seg.first_id = seg.first_id.min(e.id);
        seg.last_id = seg.last_id.max(e.id);
        if is_terminal(&e.event_type) {
            encoder.seen.forget(&e.execution_arn);
        }
        update_execution_row(tx, e)?;
    }
    let raw = segments
        .iter()
        .map(|s| s.lines.as_slice())
        .collect::<Vec<_>>()
        .concat();
    let data = encoder.compress(&raw)?;
    let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    tx.prepare_cached("INSERT INTO sfn_history_blocks (size, data) VALUES (?1, ?2)")
        .map_err(db_err)?
        .execute(params![int(raw.len()), data])
        .map_err(db_err)?;
    let block = tx.last_insert_rowid();
    let mut insert = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO sfn_history_segments (arn, block, start, length, first_id, last_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(db_err)?;
    let mut start = 0;
    for seg in &segments {
        insert
            .execute(params![
                seg.arn,
                block,
                int(start),
                int(seg.lines.len()),
                i64::try_from(seg.first_id).unwrap_or(i64::MAX),
                i64::try_from(seg.last_id).unwrap_or(i64::MAX),
            ])
            .map_err(db_err)?;
        start += seg.lines.len();
    }
    Ok(())
}

/// Inserts the `sfn_executions` row at `ExecutionStarted` and completes it at the terminal
/// event.
fn update_execution_row(tx: &Transaction<'_>, e: &HistoryEvent) -> Result<(), PortError> {
    match e.event_type.as_str() {
        "ExecutionStarted" => {
            let (machine, name) = split_arn(&e.execution_arn);
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sfn_executions (arn, state_machine, name, status, start_time, input)
                 VALUES (?1, ?2, ?3, 'RUNNING', ?4, ?5)",
            )
            .map_err(db_err)?
            .execute(params![
                e.execution_arn,
                machine,
                name,
                timestamp(e),
                detail_str(e, "input")
            ])
            .map_err(db_err)?;
        }
        ty if is_terminal(ty) => {
            let status = terminal_status(ty).unwrap_or("ABORTED");
            tx.prepare_cached(
                "UPDATE sfn_executions SET status = ?2, stop_time = ?3, output = ?4, error = ?5, cause = ?6
                 WHERE arn = ?1",
            )
            .map_err(db_err)?
            .execute(params![
                e.execution_arn,
                status,
                timestamp(e),
                detail_str(e, "output"),
                detail_str(e, "error"),
                detail_str(e, "cause"),
            ])
            .map_err(db_err)?;
        }
        _ => {}
    }
    Ok(())
}

fn timestamp(e: &HistoryEvent) -> String {
    e.timestamp
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_lenient(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// The execution status a terminal event sets.
fn terminal_status(event_type: &str) -> Option<&'static str> {
    match event_type {
        "ExecutionSucceeded" => Some("SUCCEEDED"),
        "ExecutionFailed" => Some("FAILED"),
        "ExecutionTimedOut" => Some("TIMED_OUT"),
        "ExecutionAborted" => Some("ABORTED"),
        _ => None,
    }
}

/// Compact JSON text of a value. `serde_json::to_string` writes straight into a buffer, where
/// `Value::to_string` goes through `fmt::Display` and is markedly slower on large documents.
fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
}

/// Drops the payload fields (state-level events at [`HistoryLevel::Summary`]: the execution's
/// own events keep them until written, for the execution row).
fn strip_payload(event: &mut HistoryEvent) {
    if let Some((_, Value::Object(m))) = &mut event.details {
        for k in PAYLOAD_FIELDS {
            m.remove(k);
        }
    }
}

impl HistorySink for ExecutionStore {
    /// At [`HistoryLevel::Summary`] the engine need not build the payloads this store drops.
    fn payloads(&self) -> bool {
        self.level() == HistoryLevel::Full
    }

    fn record(&self, mut event: HistoryEvent) {
        if self.level() == HistoryLevel::Summary
            && event.event_type != "ExecutionStarted"
            && terminal_status(&event.event_type).is_none()
        {
            strip_payload(&mut event);
        }
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
        // A failed hand-over means an earlier commit failed: `flush` reports it.
        if terminal {
            let events = self.take_pending(&arn);
            if self
                .submit(events, CheckpointWrite::Clear(arn.clone()))
                .is_ok()
                && let Ok(mut f) = self.finished.lock()
            {
                f.insert(arn);
            }
        } else if full {
            let events = self.take_pending(&arn);
            let _ = self.submit(events, CheckpointWrite::None);
        }
    }

    fn resumed(&self, execution_arn: &str, last_event_id: u64) {
        if let Ok(mut pending) = self.pending.lock()
            && let Some(buf) = pending.get_mut(execution_arn)
        {
            buf.retain(|e| e.id <= last_event_id);
        }
        let from = last_event_id.saturating_add(1);
        // A failed hand-over means an earlier commit failed: `flush` reports it.
        let _ = self.hand_over(|b| {
            // Void events still waiting in this batch go now; committed ones by the cut.
            b.events
                .retain(|e| e.execution_arn != execution_arn || e.id < from);
            b.cuts.push((execution_arn.to_string(), from));
        });
    }
}

impl CheckpointStore for ExecutionStore {
    fn save(&self, checkpoint: &Checkpoint) -> Result<(), String> {
        self.save_with_input_json(checkpoint, None)
    }

    fn save_with_input_json(
        &self,
        checkpoint: &Checkpoint,
        input_json: Option<&str>,
    ) -> Result<(), String> {
        let events = self.take_pending(&checkpoint.execution_arn);
        let stored = StoredCheckpoint::new(checkpoint, input_json);
        self.submit(
            events,
            CheckpointWrite::Save(checkpoint.execution_arn.clone(), stored),
        )
    }

    fn load(&self, execution_arn: &str) -> Result<Option<Checkpoint>, String> {
        if let Some(queued) = self
            .overlay(|b| b.checkpoints.get(execution_arn).cloned())
            .into_iter()
            .next()
        {
            return queued.map(|c| c.checkpoint(execution_arn)).transpose();
        }
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
        let Some((next_state, input, variables, execution_input, last_event_id, start_time)) = row
        else {
            return Ok(None);
        };
        StoredCheckpoint {
            next_state,
            input,
            variables,
            execution_input,
            last_event_id,
            start_time,
        }
        .checkpoint(execution_arn)
        .map(Some)
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
        self.submit(events, CheckpointWrite::Clear(execution_arn.to_string()))
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

    /// The details of `e` as the writer stores them.
    fn stored_details(
        e: &HistoryEvent,
        details: &Value,
        level: HistoryLevel,
        seen: &mut SeenPayloads,
    ) -> String {
        let mut out = Vec::new();
        write_stored_details(&mut out, e, details, level, seen).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The stored lines of `arn`'s events, decompressed, payload references unresolved.
    fn stored_lines(conn: &Connection, arn: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(
                "SELECT s.start, s.length, b.data FROM sfn_history_segments s
                 JOIN sfn_history_blocks b ON b.id = s.block WHERE s.arn = ?1 ORDER BY s.block",
            )
            .unwrap();
        let segments = stmt
            .query_map([arn], |r| {
                Ok((
                    r.get::<_, usize>(0)?,
                    r.get::<_, usize>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .unwrap();
        let mut out = Vec::new();
        for seg in segments {
            let (start, length, data) = seg.unwrap();
            let raw = zstd::stream::decode_all(&data[..]).unwrap();
            let text = std::str::from_utf8(&raw[start..start + length]).unwrap();
            out.extend(text.lines().map(str::to_string));
        }
        out
    }

    fn event(arn: &str, id: u64, ty: &str) -> HistoryEvent {
        HistoryEvent {
            execution_arn: arn.into(),
            id,
            previous_event_id: id - 1,
            timestamp: Utc::now(),
            event_type: ty.into(),
            details: Some((
                "d".into(),
                serde_json::json!({"name": "S", "input": "{\"big\":1}", "error": "E", "cause": "C"}),
            )),
        }
    }

    fn checkpoint(arn: &str, next: &str, last_event_id: u64) -> Checkpoint {
        Checkpoint {
            execution_arn: arn.into(),
            next_state: next.into(),
            input: serde_json::json!({"at": next}),
            variables: Map::new(),
            execution_input: serde_json::json!({}),
            last_event_id,
            start_time: "2025-01-01T00:00:00.000Z".into(),
        }
    }

    #[tokio::test]
    async fn group_commit_after_flush_a_reopened_store_sees_every_execution() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upsell.db");
        // A commit interval far longer than the test: only `flush` commits.
        let options = HistoryOptions {
            commit_interval: Duration::from_secs(3600),
            max_batch_events: 1_000_000,
            ..HistoryOptions::default()
        };
        let store = Arc::new(ExecutionStore::open_with(&path, options).unwrap());
        let sm = Arc::new(parse_str(MACHINE, ParseOptions::default()).unwrap());
        let mut arns = Vec::new();
        for i in 0..50 {
            let opts = StartOptions {
                name: Some(format!("run-{i}")),
                state_machine_name: Some("Upsell".into()),
                role_arn: None,
            };
            let run = engine(&store)
                .execute(&sm, serde_json::json!({"i": i}), opts)
                .await;
            assert!(matches!(run.outcome, Outcome::Succeeded(_)));
            arns.push(run.arn);
        }
        // Queued, not committed: this store's reads see it, another connection does not yet.
        assert_eq!(store.find("run-7").unwrap().unwrap().status, "SUCCEEDED");
        assert!(!store.history(&arns[7]).unwrap().is_empty());
        let other = ExecutionStore::open(&path).unwrap();
        assert_eq!(other.find("run-7").unwrap(), None);

        store.flush().unwrap();
        let again = ExecutionStore::open(&path).unwrap();
        assert_eq!(
            again.count_by_status().unwrap(),
            vec![("SUCCEEDED".to_string(), 50)]
        );
        for arn in &arns {
            let h = again.history(arn).unwrap();
            assert_eq!(
                h.first().map(|e| e.event_type.as_str()),
                Some("ExecutionStarted")
            );
            assert_eq!(
                h.last().map(|e| e.event_type.as_str()),
                Some("ExecutionSucceeded")
            );
        }
        assert!(again.interrupted().unwrap().is_empty());
    }

    #[test]
    fn a_crash_loses_only_queued_progress_and_resumes_from_the_last_durable_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upsell.db");
        let arn = "arn:aws:states:us-east-1:000000000000:execution:Upsell:e2";
        let options = HistoryOptions {
            commit_interval: Duration::from_secs(3600),
            max_batch_events: 1_000_000,
            ..HistoryOptions::default()
        };
        let first = checkpoint(arn, "Enrich", 3);
        {
            let store = ExecutionStore::open_with(&path, options).unwrap();
            store.record(event(arn, 1, "ExecutionStarted"));
            store.record(event(arn, 2, "TaskStateEntered"));
            store.record(event(arn, 3, "TaskStateExited"));
            store.save(&first).unwrap();
            store.flush().unwrap();
            // Progress handed over but not committed yet, then a crash.
            store.record(event(arn, 4, "TaskStateEntered"));
            store.record(event(arn, 5, "TaskStateExited"));
            store.save(&checkpoint(arn, "Generate", 5)).unwrap();
            assert_eq!(store.load(arn).unwrap().unwrap().next_state, "Generate");
            assert_eq!(store.history(arn).unwrap().len(), 5);
            store.simulate_crash();
        }
        let store = ExecutionStore::open(&path).unwrap();
        assert_eq!(store.interrupted().unwrap(), vec![arn.to_string()]);
        assert_eq!(
            store.load(arn).unwrap(),
            Some(first),
            "the last durable checkpoint"
        );
        let ids: Vec<u64> = store.history(arn).unwrap().iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![1, 2, 3], "history is cut at the same point");
    }

    #[test]
    fn the_engine_is_asked_for_payloads_only_at_the_full_level() {
        let store = ExecutionStore::in_memory().unwrap();
        assert!(store.payloads());
        store.set_level(HistoryLevel::Summary);
        assert!(!store.payloads());
        store.set_level(HistoryLevel::Full);
        assert!(store.payloads());
    }

    #[tokio::test]
    async fn summary_level_drops_payloads_but_keeps_names_errors_and_the_execution_row() {
        let store = Arc::new(
            ExecutionStore::in_memory_with(HistoryOptions {
                level: HistoryLevel::Summary,
                ..HistoryOptions::default()
            })
            .unwrap(),
        );
        let sm = Arc::new(
            parse_str(
                &MACHINE.replace("\"NumericEquals\":1", "\"NumericEquals\":2"),
                ParseOptions::default(),
            )
            .unwrap(),
        );
        let run = engine(&store)
            .execute(
                &sm,
                serde_json::json!({"secret": 1}),
                StartOptions::default(),
            )
            .await;
        assert!(matches!(run.outcome, Outcome::Failed(_)));
        store.flush().unwrap();
        let row = store.find(&run.arn).unwrap().unwrap();
        assert_eq!(row.input, Some(serde_json::json!({"secret": 1})));
        assert_eq!(
            (row.error.as_deref(), row.cause.as_deref()),
            (Some("Boom"), Some("went wrong"))
        );
        let history = store.history(&run.arn).unwrap();
        let mut names = Vec::new();
        for e in &history {
            let (_, d) = e.details.as_ref().expect("details");
            for k in PAYLOAD_FIELDS {
                assert!(d.get(k).is_none(), "{} keeps {k}: {d}", e.event_type);
            }
            names.extend(d.get("name").and_then(Value::as_str).map(str::to_string));
        }
        assert!(names.iter().any(|n| n == "Boom"), "{names:?}");
        let failed = history.last().unwrap();
        assert_eq!(failed.event_type, "ExecutionFailed");
        assert_eq!(
            failed.details.as_ref().unwrap().1.get("cause"),
            Some(&serde_json::json!("went wrong"))
        );
    }

    #[tokio::test]
    async fn repeated_payloads_are_stored_once_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let store = Arc::new(ExecutionStore::open(&path).unwrap());
        // A document large enough to be shared, passed on unchanged by Pass and Choice states.
        let big = "x".repeat(2 * MIN_SHARED_PAYLOAD);
        let machine = r#"{"StartAt":"A","States":{
            "A":{"Type":"Pass","Next":"B"},
            "B":{"Type":"Pass","Next":"C"},
            "C":{"Type":"Choice","Choices":[{"Variable":"$.n","NumericEquals":1,"Next":"D"}],"Default":"D"},
            "D":{"Type":"Pass","Result":"small","ResultPath":"$.r","End":true}}}"#;
        let sm = Arc::new(parse_str(machine, ParseOptions::default()).unwrap());
        let run = engine(&store)
            .execute(
                &sm,
                serde_json::json!({"n": 1, "big": big}),
                StartOptions::default(),
            )
            .await;
        assert!(matches!(run.outcome, Outcome::Succeeded(_)));
        store.flush().unwrap();

        // The same run into memory: the payloads read back must be the ones recorded.
        let memory = Arc::new(upsell_asl::MemorySink::new());
        let recorded = Engine::builder()
            .resources(Resources::new())
            .history(memory.clone())
            .identity("us-east-1", "000000000000")
            .build()
            .execute(
                &sm,
                serde_json::json!({"n": 1, "big": big}),
                StartOptions::default(),
            )
            .await;
        let payloads = |events: &[HistoryEvent]| -> Vec<(u64, &'static str, String)> {
            let mut out = Vec::new();
            for e in events {
                if let Some((_, Value::Object(m))) = &e.details {
                    for f in TEXT_PAYLOADS {
                        if let Some(v) = m.get(f) {
                            out.push((e.id, f, v.as_str().expect("payloads are text").to_string()));
                        }
                    }
                }
            }
            out
        };
        let again = ExecutionStore::open(&path).unwrap();
        let read_back = payloads(&again.history(&run.arn).unwrap());
        assert_eq!(read_back, payloads(&memory.events(&recorded.arn)));
        assert!(read_back.len() >= 8, "{} payloads", read_back.len());

        // On disk, the repeats are references and the text is stored far fewer times.
        let lines = stored_lines(&Connection::open(&path).unwrap(), &run.arn);
        let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
        let refs = count("\"$ref\"");
        let copies = count(&big);
        assert!(refs >= 6, "{refs} references");
        let edits = count("\"$edit\"");
        assert!(edits >= 1, "the state that adds $.r is stored as an edit");
        assert!(copies <= 3, "the document is stored {copies} times");
    }

    #[test]
    fn a_commit_is_one_compressed_block_with_a_segment_per_execution() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let store = ExecutionStore::open(&path).unwrap();
        let (a, b) = (
            "arn:aws:states:us-east-1:0:execution:M:a",
            "arn:aws:states:us-east-1:0:execution:M:b",
        );
        let doc = format!("{{\"notes\":\"{}\"}}", "visit ".repeat(200));
        let with_input = |arn: &str, id: u64, ty: &str| {
            let mut e = event(arn, id, ty);
            e.details = Some(("d".into(), serde_json::json!({"name": "S", "input": doc})));
            e
        };
        // Interleaved, handed over as one unit: one block, lines grouped by execution.
        let events = vec![
            with_input(a, 1, "PassStateEntered"),
            with_input(b, 1, "PassStateEntered"),
            with_input(a, 2, "PassStateEntered"),
            with_input(b, 2, "PassStateEntered"),
            with_input(a, 3, "PassStateEntered"),
        ];
        store.submit(events, CheckpointWrite::None).unwrap();
        store.flush().unwrap();
        let ids =
            |arn: &str| -> Vec<u64> { store.history(arn).unwrap().iter().map(|e| e.id).collect() };
        assert_eq!(ids(a), vec![1, 2, 3]);
        assert_eq!(ids(b), vec![1, 2]);
        assert!(
            store
                .history(b)
                .unwrap()
                .iter()
                .all(|e| e.details.as_ref().unwrap().1["input"] == doc),
            "references resolved within the execution's own segment"
        );
        let conn = Connection::open(&path).unwrap();
        let (blocks, size, stored): (i64, i64, i64) = conn
            .query_row(
                "SELECT count(*), sum(size), sum(length(data)) FROM sfn_history_blocks",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(blocks, 1);
        assert!(stored * 4 < size, "compressed: {stored} of {size} bytes");
        let segments: Vec<(String, i64, i64)> = conn
            .prepare("SELECT arn, first_id, last_id FROM sfn_history_segments ORDER BY arn")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(segments, vec![(a.to_string(), 1, 3), (b.to_string(), 1, 2)]);
        assert_eq!(stored_lines(&conn, a).len(), 3);
    }

    #[test]
    fn a_resumed_run_replaces_the_events_the_stopped_run_wrote_after_its_checkpoint() {
        // The stale events in a segment of their own, or in the segment of the events before
        // the checkpoint (both units committed together).
        for together in [false, true] {
            resumed_run_replaces_stale_events(together);
        }
    }

    fn resumed_run_replaces_stale_events(together: bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let arn = "arn:aws:states:us-east-1:0:execution:M:r";
        {
            // The stopped run: 1-3, checkpoint after 3, then 4-6 committed before the crash
            // (more than a unit's worth of events inside one state, say a Map).
            let store = ExecutionStore::open(&path).unwrap();
            let mut events: Vec<HistoryEvent> = [
                (1, "ExecutionStarted"),
                (2, "PassStateEntered"),
                (3, "PassStateExited"),
            ]
            .into_iter()
            .map(|(id, ty)| event(arn, id, ty))
            .collect();
            let stale = (4..=6).map(|id| event(arn, id, "MapIterationStarted"));
            if together {
                events.extend(stale);
                store.submit(events, CheckpointWrite::None).unwrap();
                store.save(&checkpoint(arn, "Fan", 3)).unwrap();
            } else {
                store.submit(events, CheckpointWrite::None).unwrap();
                store.save(&checkpoint(arn, "Fan", 3)).unwrap();
                store.flush().unwrap();
                store
                    .submit(stale.collect(), CheckpointWrite::None)
                    .unwrap();
            }
            store.flush().unwrap();
        }
        let store = ExecutionStore::open(&path).unwrap();
        store.resumed(arn, 3);
        store.record(event(arn, 4, "MapStateEntered"));
        store.record(event(arn, 5, "MapStateExited"));
        let types = |store: &ExecutionStore| -> Vec<(u64, String)> {
            store
                .history(arn)
                .unwrap()
                .into_iter()
                .map(|e| (e.id, e.event_type))
                .collect()
        };
        let want: Vec<(u64, String)> = [
            (1, "ExecutionStarted"),
            (2, "PassStateEntered"),
            (3, "PassStateExited"),
            (4, "MapStateEntered"),
            (5, "MapStateExited"),
        ]
        .into_iter()
        .map(|(i, t)| (i, t.to_string()))
        .collect();
        store
            .submit(store.take_pending(arn), CheckpointWrite::None)
            .unwrap();
        assert_eq!(types(&store), want, "queued");
        store.flush().unwrap();
        assert_eq!(types(&store), want, "committed");
        assert_eq!(
            types(&ExecutionStore::open(&path).unwrap()),
            want,
            "reopened"
        );
    }

    /// A payload for the round-trip property: one of a few documents, maybe with a stretch
    /// inserted (so that payloads repeat, differ in one stretch, or are unrelated), with
    /// multi-byte characters around the places that change.
    fn payload(base: usize, insert: Option<(usize, String)>) -> String {
        let bases = [
            format!("{{\"doc\":\"{}\",\"n\":1}}", "ab\u{e9}".repeat(120)),
            format!("{{\"doc\":\"{}\"}}", "\u{6f22}xy".repeat(100)),
            format!("{{\"list\":[{}]}}", "1,".repeat(200) + "2"),
            "{\"small\":true}".to_string(),
        ];
        let mut text = bases[base % bases.len()].clone();
        if let Some((at, extra)) = insert {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert_str(at, &extra);
        }
        text
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Whatever the interleaving of executions, the split into units and the commits
        /// between them, every execution reads back exactly the events it recorded.
        #[test]
        fn histories_read_back_exactly_as_recorded(
            steps in proptest::collection::vec(
                (
                    0usize..4,
                    0usize..4,
                    proptest::option::of((0usize..2000, "[a-z\u{e9}\u{6f22}]{0,12}")),
                    0u8..10,
                ),
                1..120,
            ),
        ) {
            let store = ExecutionStore::in_memory_with(HistoryOptions {
                commit_interval: Duration::from_secs(3600),
                max_batch_events: 1_000_000,
                ..HistoryOptions::default()
            })
            .unwrap();
            let arns: Vec<String> =
                (0..4).map(|i| format!("arn:aws:states:us-east-1:0:execution:M:e{i}")).collect();
            let mut recorded: Vec<Vec<HistoryEvent>> = vec![Vec::new(); arns.len()];
            let mut unit: Vec<HistoryEvent> = Vec::new();
            for (exec, base, insert, action) in steps {
                let arn = &arns[exec];
                let id = recorded[exec].len() as u64 + 1;
                let field = ["input", "output", "parameters"][id as usize % 3];
                let mut e = event(arn, id, "TaskStateExited");
                e.details = Some((
                    "d".into(),
                    serde_json::json!({"name": "S", field: payload(base, insert)}),
                ));
                recorded[exec].push(e.clone());
                unit.push(e);
                // Hand the unit over now and then, and commit now and then.
                if action < 4 {
                    store.submit(std::mem::take(&mut unit), CheckpointWrite::None).unwrap();
                }
                if action == 0 {
                    store.flush().unwrap();
                }
                // Now and then the execution resumes from an earlier checkpoint: what it
                // recorded after that is void and its ids are recorded again.
                if action == 9 {
                    store.submit(std::mem::take(&mut unit), CheckpointWrite::None).unwrap();
                    let keep = base * recorded[exec].len() / 4;
                    store.resumed(arn, keep as u64);
                    recorded[exec].truncate(keep);
                }
            }
            store.submit(unit, CheckpointWrite::None).unwrap();
            store.flush().unwrap();
            for (arn, want) in arns.iter().zip(&recorded) {
                let got = store.history(arn).unwrap();
                proptest::prop_assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(want) {
                    proptest::prop_assert_eq!(g.id, w.id);
                    proptest::prop_assert_eq!(&g.details, &w.details);
                }
            }
        }
    }

    #[test]
    fn an_empty_hand_over_is_not_a_unit_that_flush_waits_for() {
        let store = ExecutionStore::in_memory_with(HistoryOptions {
            commit_interval: Duration::from_secs(3600),
            ..HistoryOptions::default()
        })
        .unwrap();
        store.submit(Vec::new(), CheckpointWrite::None).unwrap();
        assert_eq!(store.shared.lock().submitted, 0);
        // With a real unit before it, flush returns once that unit is committed.
        let arn = "arn:aws:states:us-east-1:0:execution:M:x";
        store
            .submit(
                vec![event(arn, 1, "PassStateEntered")],
                CheckpointWrite::None,
            )
            .unwrap();
        store.submit(Vec::new(), CheckpointWrite::None).unwrap();
        store.flush().unwrap();
        let q = store.shared.lock();
        assert_eq!((q.submitted, q.committed), (1, 1));
    }

    #[test]
    fn a_damaged_block_is_a_clear_error_not_a_wrong_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let store = ExecutionStore::open(&path).unwrap();
        let arn = "arn:aws:states:us-east-1:0:execution:M:x";
        store
            .submit(
                vec![event(arn, 1, "PassStateEntered")],
                CheckpointWrite::None,
            )
            .unwrap();
        store.flush().unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE sfn_history_blocks SET data = x'00010203'", [])
            .unwrap();
        let err = store.history(arn).unwrap_err().to_string();
        assert!(err.contains("history block 1: cannot decompress"), "{err}");
        conn.execute("UPDATE sfn_history_segments SET length = 100000", [])
            .unwrap();
        conn.execute(
            "UPDATE sfn_history_blocks SET data = ?1",
            [
                zstd::bulk::compress(b"[1,0,\"2026-01-01T00:00:00.000Z\",\"X\",null,null]\n", 1)
                    .unwrap(),
            ],
        )
        .unwrap();
        let err = store.history(arn).unwrap_err().to_string();
        assert!(err.contains("is outside its"), "{err}");
    }

    #[test]
    fn a_reference_to_a_missing_payload_is_a_clear_error() {
        let store = ExecutionStore::in_memory().unwrap();
        let arn = "arn:aws:states:us-east-1:0:execution:M:x";
        let mut a = event(arn, 1, "PassStateEntered");
        a.details = Some((
            "d".into(),
            serde_json::json!({"name": "S", "input": {"$ref": {"event": 7, "field": "output"}}}),
        ));
        {
            let line = format!(
                "[1,0,\"{}\",\"PassStateEntered\",\"d\",{}]\n",
                timestamp(&a),
                json_text(&a.details.as_ref().unwrap().1)
            );
            let conn = store.conn().unwrap();
            conn.execute(
                "INSERT INTO sfn_history_blocks (id, size, data) VALUES (1, ?1, ?2)",
                params![
                    line.len(),
                    zstd::bulk::compress(line.as_bytes(), 1).unwrap()
                ],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO sfn_history_segments (arn, block, start, length, first_id, last_id)
                 VALUES (?1, 1, 0, ?2, 1, 1)",
                params![arn, line.len()],
            )
            .unwrap();
        }
        let err = store.history(arn).unwrap_err().to_string();
        assert!(err.contains("points at no stored payload"), "{err}");
    }

    #[test]
    fn equal_payloads_within_one_event_stay_inline() {
        use PayloadForm::{Inline, Same};
        let mut seen = SeenPayloads::default();
        let text = "y".repeat(MIN_SHARED_PAYLOAD);
        assert_eq!(seen.classify("a", &text, 3, "input"), Inline);
        assert_eq!(seen.classify("a", &text, 3, "output"), Inline);
        assert_eq!(seen.classify("a", &text, 4, "input"), Same(3, "input"));
        assert_eq!(
            seen.classify("b", &text, 4, "input"),
            Inline,
            "per execution"
        );
        let short = "z".repeat(MIN_SHARED_PAYLOAD - 1);
        assert_eq!(seen.classify("a", &short, 5, "input"), Inline);
        assert_eq!(
            seen.classify("a", &short, 6, "input"),
            Inline,
            "short stays inline"
        );
        seen.forget("a");
        assert_eq!(
            seen.classify("a", &text, 7, "input"),
            Inline,
            "forgotten at the end"
        );
    }

    #[test]
    fn a_similar_payload_is_an_edit_that_reads_back_exactly() {
        let mut seen = SeenPayloads::default();
        let base = format!(
            "{{\"a\":\"{}\",\"z\":\"é{}\"}}",
            "x".repeat(300),
            "y".repeat(300)
        );
        let next = base.replace("\"z\"", "\"r\":\"ü new ü\",\"z\"");
        let unrelated = "q".repeat(MIN_SHARED_PAYLOAD * 2);
        assert_eq!(seen.classify("a", &base, 2, "output"), PayloadForm::Inline);
        let form = seen.classify("a", &next, 3, "output");
        let PayloadForm::Edit {
            base: (2, "output"),
            keep_start,
            keep_end,
        } = form
        else {
            panic!("{form:?}");
        };
        assert!(
            keep_start + keep_end > next.len() - 20,
            "{keep_start} + {keep_end}"
        );
        assert_eq!(
            seen.classify("a", &unrelated, 4, "output"),
            PayloadForm::Inline
        );

        // Stored and read back through the details as written.
        let mk = |id: u64, text: &str| HistoryEvent {
            execution_arn: "a".into(),
            id,
            previous_event_id: id - 1,
            timestamp: Utc::now(),
            event_type: "PassStateExited".into(),
            details: Some(("d".into(), serde_json::json!({"name": "S", "output": text}))),
        };
        let (e2, e3) = (mk(2, &base), mk(3, &next));
        let mut fresh = SeenPayloads::default();
        let stored2 = stored_details(
            &e2,
            &e2.details.as_ref().unwrap().1,
            HistoryLevel::Full,
            &mut fresh,
        );
        let stored3 = stored_details(
            &e3,
            &e3.details.as_ref().unwrap().1,
            HistoryLevel::Full,
            &mut fresh,
        );
        assert!(
            stored3.contains("$edit") && stored3.len() < 200,
            "{stored3}"
        );
        let mut out = vec![e2.clone()];
        out[0].details = Some(("d".into(), serde_json::from_str(&stored2).unwrap()));
        let index = HashMap::from([(2, 0)]);
        let mut d3: Value = serde_json::from_str(&stored3).unwrap();
        resolve_payload_refs(&mut d3, &out, &index).unwrap();
        assert_eq!(d3["output"], Value::String(next.clone()));

        // An edit that does not fit its base is an error, not a wrong payload.
        let mut broken: Value = serde_json::from_str(&stored3).unwrap();
        broken["output"]["$edit"]["keepEnd"] = serde_json::json!(base.len());
        let err = resolve_payload_refs(&mut broken, &out, &index).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn common_affixes_stay_on_character_boundaries_and_never_overlap() {
        assert_eq!(common_affixes("abc", "abc"), (3, 0));
        assert_eq!(common_affixes("abXc", "abYc"), (2, 1));
        assert_eq!(common_affixes("aa", "aaa"), (2, 0));
        assert_eq!(
            common_affixes("aéb", "aèb"),
            (1, 1),
            "é and è share their first byte"
        );
        assert_eq!(common_affixes("", "x"), (0, 0));
        assert_eq!(
            common_affixes("xyx", "xyxyx"),
            (3, 0),
            "within the shorter one"
        );
        assert_eq!(common_affixes("abcxyz", "abcQxyz"), (3, 3));
        // Every split of a longer text.
        let base: String = (0..100)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        for cut in 0..base.len() {
            let changed = format!("{}#{}", &base[..cut], &base[cut..]);
            assert_eq!(
                common_affixes(&base, &changed),
                (cut, base.len() - cut),
                "{cut}"
            );
            let replaced = format!("{}é{}", &base[..cut], &base[(cut + 1).min(base.len())..]);
            let (start, end) = common_affixes(&base, &replaced);
            assert_eq!(start, cut, "{cut}");
            assert_eq!(end, base.len() - (cut + 1).min(base.len()), "{cut}");
        }
    }
}
