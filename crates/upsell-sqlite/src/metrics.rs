//! The local metric log: the data points that Lambda writes as CloudWatch EMF lines, stored in
//! SQLite with the same names, units and dimensions ([`upsell_core::telemetry`]). It implements
//! [`Metrics`] (record) and [`MetricLog`] (read back, for `upsell monitor` and the dashboard).
//!
//! Recording never blocks on the database and never fails the caller: [`Metrics::record`] hands
//! the data point to a writer thread over a channel, and the writer inserts whatever has queued
//! up in one transaction (a group commit), so a run recording ten thousand points a second
//! commits a few hundred times a second at most. A point the writer cannot store is counted
//! ([`SqliteMetricLog::dropped`]) and logged, not retried. [`SqliteMetricLog::flush`] waits
//! until every point recorded before it is committed; reads flush first.
//!
//! Table `metric_records`: `id` (insertion order), `at_ms` (timestamp, Unix milliseconds),
//! `name`, `value`, `unit` (CloudWatch unit name), `dimensions` (JSON array of
//! `[name, value]` pairs, in the order recorded).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use upsell_core::ports::{MetricDatum, MetricUnit, Metrics, PortError};
use upsell_core::telemetry::MetricLog;

use crate::{db_err, open_connection};

/// Most data points one commit inserts; more wait for the next commit.
const MAX_BATCH: usize = 8_192;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS metric_records (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    dimensions TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_records_at ON metric_records (at_ms);
";

enum Msg {
    Datum(MetricDatum),
    Flush(Sender<()>),
}

/// The metric log in a SQLite file (or in memory).
pub struct SqliteMetricLog {
    conn: Arc<Mutex<Connection>>,
    tx: Option<Sender<Msg>>,
    writer: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqliteMetricLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMetricLog")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Drop for SqliteMetricLog {
    fn drop(&mut self) {
        // Closing the channel lets the writer commit what is queued and stop.
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteMetricLog {
    /// Opens (and creates) the log in the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::start(open_connection(path)?)
    }

    /// A log in memory (tests).
    pub fn in_memory() -> Result<Self, PortError> {
        Self::start(Connection::open_in_memory().map_err(db_err)?)
    }

    fn start(conn: Connection) -> Result<Self, PortError> {
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        let conn = Arc::new(Mutex::new(conn));
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = channel();
        let writer = {
            let conn = conn.clone();
            let dropped = dropped.clone();
            std::thread::Builder::new()
                .name("metric-log".into())
                .spawn(move || writer_loop(&rx, &conn, &dropped))
                .map_err(|e| PortError::Other(format!("cannot start the metric writer: {e}")))?
        };
        Ok(SqliteMetricLog {
            conn,
            tx: Some(tx),
            writer: Some(writer),
            dropped,
        })
    }

    /// Waits until every data point recorded before this call is committed.
    pub fn flush(&self) -> Result<(), PortError> {
        let (ack, done) = channel();
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Msg::Flush(ack)).is_ok());
        if sent && done.recv().is_ok() {
            Ok(())
        } else {
            Err(PortError::Other("the metric writer has stopped".into()))
        }
    }

    /// Data points that could not be stored since the log was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Number of stored data points.
    pub fn len(&self) -> Result<u64, PortError> {
        self.flush()?;
        lock(&self.conn)
            .query_row("SELECT count(*) FROM metric_records", [], |r| r.get(0))
            .map_err(db_err)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> Result<bool, PortError> {
        Ok(self.len()? == 0)
    }

    fn read_since(&self, since: Option<DateTime<Utc>>) -> Result<Vec<MetricDatum>, PortError> {
        self.flush()?;
        let from = since.map_or(i64::MIN, |t| t.timestamp_millis());
        let conn = lock(&self.conn);
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, name, value, unit, dimensions FROM metric_records
                 WHERE at_ms >= ?1 ORDER BY at_ms, id",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([from], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (at_ms, name, value, unit, dims) = row.map_err(db_err)?;
            let bad = |what: &str| PortError::Other(format!("metric record {name}: {what}"));
            let unit = MetricUnit::parse(&unit).ok_or_else(|| bad("unknown unit"))?;
            let dimensions: Vec<(String, String)> =
                serde_json::from_str(&dims).map_err(|e| bad(&format!("dimensions: {e}")))?;
            let timestamp =
                DateTime::from_timestamp_millis(at_ms).ok_or_else(|| bad("bad timestamp"))?;
            out.push(MetricDatum {
                name,
                value,
                unit,
                dimensions,
                timestamp,
            });
        }
        Ok(out)
    }
}

impl Metrics for SqliteMetricLog {
    fn record(&self, datum: MetricDatum) {
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Msg::Datum(datum)).is_ok());
        if !sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl MetricLog for SqliteMetricLog {
    async fn metrics_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<MetricDatum>, PortError> {
        self.read_since(since)
    }
}

/// Receives data points until the channel closes, committing each group that queued up.
fn writer_loop(rx: &Receiver<Msg>, conn: &Mutex<Connection>, dropped: &AtomicU64) {
    let mut batch = Vec::new();
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Datum(d) => batch.push(d),
                Msg::Flush(ack) => acks.push(ack),
            }
            next = if batch.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty()
            && let Err(e) = insert(&mut lock(conn), &batch)
        {
            dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(error = %e, points = batch.len(), "metric data points dropped");
        }
        batch.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

fn insert(conn: &mut Connection, batch: &[MetricDatum]) -> Result<(), PortError> {
    let tx = conn.transaction().map_err(db_err)?;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO metric_records (at_ms, name, value, unit, dimensions)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(db_err)?;
        for d in batch {
            let dims = serde_json::to_string(&d.dimensions)
                .map_err(|e| PortError::Other(e.to_string()))?;
            stmt.execute(params![
                d.timestamp.timestamp_millis(),
                d.name,
                d.value,
                d.unit.as_str(),
                dims
            ])
            .map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use upsell_core::telemetry::{STATE, STATE_LATENCY, WORKER_ERRORS};

    fn datum(name: &str, value: f64, at_ms: i64) -> MetricDatum {
        let at = DateTime::from_timestamp_millis(at_ms).unwrap();
        MetricDatum::at(name, value, MetricUnit::Milliseconds, at).with_dim(STATE, "Judge")
    }

    #[tokio::test]
    async fn records_read_back_in_time_order_with_units_and_dimensions() {
        let log = SqliteMetricLog::in_memory().unwrap();
        log.record(datum(STATE_LATENCY.name, 12.5, 2_000));
        log.record(
            MetricDatum::at(WORKER_ERRORS.name, 1.0, MetricUnit::Count, Utc::now())
                .with_dim(STATE, "Generate")
                .with_dim("ErrorType", "ModelThrottled"),
        );
        log.record(datum(STATE_LATENCY.name, 3.0, 1_000));
        let all = log.metrics_since(None).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].value, 3.0);
        assert_eq!(all[1].value, 12.5);
        assert_eq!(all[1].unit, MetricUnit::Milliseconds);
        assert_eq!(all[2].name, "WorkerErrors");
        assert_eq!(
            all[2].dimensions,
            [
                ("State".to_owned(), "Generate".to_owned()),
                ("ErrorType".to_owned(), "ModelThrottled".to_owned())
            ]
        );
        let later = log
            .metrics_since(Some(DateTime::from_timestamp_millis(1_500).unwrap()))
            .await
            .unwrap();
        assert_eq!(later.len(), 2);
        assert_eq!(later[0].value, 12.5);
    }

    #[test]
    fn many_concurrent_recorders_lose_nothing_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.db");
        {
            let log = Arc::new(SqliteMetricLog::open(&path).unwrap());
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let log = log.clone();
                    std::thread::spawn(move || {
                        for i in 0..5_000 {
                            log.record(datum("StateLatency", f64::from(t * 10_000 + i), 0));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(log.len().unwrap(), 40_000);
            assert_eq!(log.dropped(), 0);
            // Dropped with points still queued: they are committed before the writer stops.
            log.record(datum("StateLatency", -1.0, 0));
        }
        let log = SqliteMetricLog::open(&path).unwrap();
        assert_eq!(log.len().unwrap(), 40_001);
    }

    #[test]
    fn an_unwritable_batch_is_counted_as_dropped_not_raised() {
        let log = SqliteMetricLog::in_memory().unwrap();
        lock(&log.conn)
            .execute_batch("DROP TABLE metric_records")
            .unwrap();
        log.record(datum("StateLatency", 1.0, 0));
        log.flush().unwrap();
        assert_eq!(log.dropped(), 1);
    }
}
