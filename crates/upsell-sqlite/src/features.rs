//! The local feature store: every feature snapshot kept with its event time for point-in-time
//! reads, and the current customer embeddings with exact nearest-neighbour search over an
//! in-memory matrix. Implements [`FeatureStore`] and [`CustomerIndex`].

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use upsell_core::events::{CustomerEvent, Region, Service};
use upsell_core::features::{
    CustomerEmbedding, CustomerFeatures, CustomerIndex, EMBEDDING_VERSION, FEATURE_SET_VERSION,
    FeatureStore, MAX_SIMILAR_K, SimilarCustomer, SimilarQuery, embedding_len, replay,
    squared_distance,
};
use upsell_core::ports::PortError;

use crate::vectors::{VectorMatrix, blob_to_f32, f32_to_blob};
use crate::{SharedConnection, db_err, open_connection};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS feature_history (
    customer_id         TEXT NOT NULL,
    feature_set_version TEXT NOT NULL,
    event_time          TEXT NOT NULL,  -- RFC 3339 UTC, fixed width: sorts as time
    recorded_at         TEXT NOT NULL,
    features            TEXT NOT NULL,  -- CustomerFeatures as JSON
    PRIMARY KEY (customer_id, feature_set_version, event_time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feature_events (
    event_id    TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    event_time  TEXT NOT NULL,
    event       TEXT NOT NULL   -- the CustomerEvent as JSON
);
CREATE INDEX IF NOT EXISTS feature_events_customer ON feature_events(customer_id, event_time);
CREATE TABLE IF NOT EXISTS customer_embeddings (
    customer_id       TEXT PRIMARY KEY,
    embedding_version TEXT NOT NULL,
    as_of             TEXT NOT NULL,
    region            TEXT,
    services          TEXT NOT NULL,  -- JSON array of service codes
    vector            BLOB NOT NULL
);
"#;

/// Fixed-width UTC timestamps (microseconds) so that text order is time order.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn json_err(e: serde_json::Error) -> PortError {
    PortError::Other(format!("corrupt feature store row: {e}"))
}

struct Cache {
    generation: u64,
    data_version: i64,
    ids: Vec<String>,
    index_of: HashMap<String, usize>,
    regions: Vec<Option<Region>>,
    services: Vec<Vec<Service>>,
    vectors: VectorMatrix,
}

/// SQLite feature store and customer index.
pub struct SqliteFeatureStore {
    conn: SharedConnection,
    generation: Mutex<u64>,
    cache: Mutex<Option<Arc<Cache>>>,
}

impl std::fmt::Debug for SqliteFeatureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteFeatureStore").finish_non_exhaustive()
    }
}

impl SqliteFeatureStore {
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Self::from_connection(open_connection(path)?)
    }

    pub fn in_memory() -> Result<Self, PortError> {
        Self::from_connection(Connection::open_in_memory().map_err(db_err)?)
    }

    /// The store on a connection other stores of this process share (creates its tables). Only
    /// this store writes its tables there, so its cache stays valid across the others' writes.
    pub fn shared(conn: SharedConnection) -> Result<Self, PortError> {
        conn.lock()
            .unwrap_or_else(|e| e.into_inner())
            .execute_batch(SCHEMA)
            .map_err(db_err)?;
        Ok(SqliteFeatureStore {
            conn,
            generation: Mutex::new(0),
            cache: Mutex::new(None),
        })
    }

    fn from_connection(conn: Connection) -> Result<Self, PortError> {
        Self::shared(Arc::new(Mutex::new(conn)))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    /// Writes many snapshots and embeddings in one transaction (backfills, `features ingest`).
    pub fn put_batch(
        &self,
        features: &[CustomerFeatures],
        embeddings: &[CustomerEmbedding],
    ) -> Result<(), PortError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        {
            let mut put_f = tx.prepare_cached(PUT_FEATURES).map_err(db_err)?;
            let now = ts(Utc::now());
            for f in features {
                let json = serde_json::to_string(f).map_err(json_err)?;
                put_f
                    .execute(params![
                        f.customer_id,
                        f.feature_set_version,
                        ts(f.last_event_time),
                        now,
                        json
                    ])
                    .map_err(db_err)?;
            }
            let mut put_e = tx.prepare_cached(PUT_EMBEDDING).map_err(db_err)?;
            for e in embeddings {
                e.check()?;
                put_e.execute(embedding_params(e)?).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        drop(conn);
        self.bump();
        Ok(())
    }

    /// Feeds validated events into the store: appends new ones to the event log (a repeated
    /// event id is ignored), then for every customer touched replays that customer's whole log
    /// and rewrites its history and embedding. Late events therefore correct later snapshots.
    pub fn ingest_events(&self, events: &[CustomerEvent]) -> Result<IngestSummary, PortError> {
        let mut summary = IngestSummary::default();
        let mut touched = BTreeSet::new();
        {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_err)?;
            {
                let mut ins = tx.prepare_cached(APPEND_EVENT).map_err(db_err)?;
                for e in events {
                    if append(&mut ins, e)? {
                        summary.events_added += 1;
                        touched.insert(e.customer_id().to_owned());
                    } else {
                        summary.events_duplicate += 1;
                    }
                }
            }
            tx.commit().map_err(db_err)?;
        }
        let mut snapshots = Vec::new();
        let mut embeddings = Vec::new();
        for customer in &touched {
            let log = self.events_for(customer)?;
            let snaps = replay(customer, &log)?;
            if let Some(last) = snaps.last() {
                embeddings.push(CustomerEmbedding::from_features(last));
            }
            summary.snapshots_written += snaps.len();
            snapshots.extend(snaps);
        }
        summary.customers_updated = touched.len();
        self.put_batch(&snapshots, &embeddings)?;
        Ok(summary)
    }

    /// The customer's logged events, oldest first.
    pub fn events_for(&self, customer_id: &str) -> Result<Vec<CustomerEvent>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT event FROM feature_events WHERE customer_id = ?1 ORDER BY event_time, event_id",
            )
            .map_err(db_err)?;
        let rows: Vec<String> = stmt
            .query_map([customer_id], |r| r.get(0))
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        rows.iter()
            .map(|r| serde_json::from_str(r).map_err(json_err))
            .collect()
    }

    /// Customer ids with a logged event, sorted.
    pub fn logged_customers_sync(&self) -> Result<Vec<String>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT DISTINCT customer_id FROM feature_events ORDER BY customer_id")
            .map_err(db_err)?;
        stmt.query_map([], |r| r.get(0))
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)
    }

    /// The snapshot of `version` known at `as_of` (the newest when `None`), synchronously.
    pub fn get_version_sync(
        &self,
        customer_id: &str,
        version: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<CustomerFeatures>, PortError> {
        let conn = self.conn();
        // Without a bound, `~` sorts after every timestamp.
        let upto = as_of.map_or_else(|| "~".to_owned(), ts);
        let raw: Option<String> = conn
            .prepare_cached(
                "SELECT features FROM feature_history
                 WHERE customer_id = ?1 AND feature_set_version = ?2 AND event_time <= ?3
                 ORDER BY event_time DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![customer_id, version, upto], |r| r.get(0)))
            .optional()
            .map_err(db_err)?;
        let Some(raw) = raw else { return Ok(None) };
        let f: CustomerFeatures = serde_json::from_str(&raw).map_err(json_err)?;
        Ok(Some(match as_of {
            Some(t) => f.at(t),
            None => f,
        }))
    }

    /// Customer ids with features, sorted (for listings and tests).
    pub fn customers(&self, limit: usize) -> Result<Vec<String>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT customer_id FROM feature_history ORDER BY customer_id LIMIT ?1",
            )
            .map_err(db_err)?;
        stmt.query_map([limit as i64], |r| r.get(0))
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)
    }

    fn cache(&self, conn: &Connection) -> Result<Arc<Cache>, PortError> {
        let generation = *self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let data_version: i64 = conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(db_err)?;
        let mut slot = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref()
            && c.generation == generation
            && c.data_version == data_version
        {
            return Ok(Arc::clone(c));
        }
        let dims = embedding_len();
        let mut stmt = conn
            .prepare(
                "SELECT customer_id, region, services, vector FROM customer_embeddings
                 WHERE embedding_version = ?1 ORDER BY customer_id",
            )
            .map_err(db_err)?;
        let mut rows = stmt.query([EMBEDDING_VERSION]).map_err(db_err)?;
        let mut ids = Vec::new();
        let mut regions = Vec::new();
        let mut services = Vec::new();
        let mut vectors = VectorMatrix::new(dims);
        while let Some(row) = rows.next().map_err(db_err)? {
            let id: String = row.get(0).map_err(db_err)?;
            let region: Option<String> = row.get(1).map_err(db_err)?;
            let svc: String = row.get(2).map_err(db_err)?;
            let blob: Vec<u8> = row.get(3).map_err(db_err)?;
            let v = blob_to_f32(&blob);
            if v.len() != dims {
                return Err(PortError::Other(format!(
                    "embedding of {id} has {} dimensions, expected {dims}",
                    v.len()
                )));
            }
            regions.push(
                region
                    .map(|r| serde_json::from_value(serde_json::Value::String(r)))
                    .transpose()
                    .map_err(json_err)?,
            );
            services.push(serde_json::from_str(&svc).map_err(json_err)?);
            vectors.push(&v);
            ids.push(id);
        }
        let index_of = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let cache = Arc::new(Cache {
            generation,
            data_version,
            ids,
            index_of,
            regions,
            services,
            vectors,
        });
        *slot = Some(Arc::clone(&cache));
        Ok(cache)
    }

    /// Similar-customer search, synchronously.
    pub fn similar_sync(&self, query: &SimilarQuery) -> Result<Vec<SimilarCustomer>, PortError> {
        query.check(MAX_SIMILAR_K)?;
        let cache = {
            let conn = self.conn();
            self.cache(&conn)?
        };
        let Some(&me) = cache.index_of.get(&query.customer_id) else {
            return Err(query.not_found());
        };
        let q = cache.vectors.row(me).to_vec();
        let hits = cache.vectors.top_k_by(
            &q,
            query.k,
            |i| i != me && query.filters_admit(cache.regions[i], &cache.services[i]),
            // Highest score = nearest: negate the squared distance.
            |a, b| -squared_distance(a, b),
        );
        Ok(hits
            .into_iter()
            .map(|(i, _)| {
                SimilarCustomer::of(
                    &q,
                    cache.ids[i].clone(),
                    cache.regions[i],
                    cache.services[i].clone(),
                    cache.vectors.row(i),
                )
            })
            .collect())
    }
}

/// What [`SqliteFeatureStore::ingest_events`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestSummary {
    pub events_added: usize,
    pub events_duplicate: usize,
    pub customers_updated: usize,
    pub snapshots_written: usize,
}

// A repeated event id is ignored: the log keeps the first delivery.
const APPEND_EVENT: &str =
    "INSERT OR IGNORE INTO feature_events(event_id, customer_id, event_time, event)
    VALUES (?1, ?2, ?3, ?4)";

/// Logs `event` with a prepared [`APPEND_EVENT`]; `true` when it was new.
fn append(
    ins: &mut rusqlite::CachedStatement<'_>,
    event: &CustomerEvent,
) -> Result<bool, PortError> {
    let json = serde_json::to_string(event).map_err(json_err)?;
    let n = ins
        .execute(params![
            event.id(),
            event.customer_id(),
            ts(event.time()),
            json
        ])
        .map_err(db_err)?;
    Ok(n == 1)
}

const PUT_FEATURES: &str = "INSERT INTO feature_history
    (customer_id, feature_set_version, event_time, recorded_at, features)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT(customer_id, feature_set_version, event_time)
    DO UPDATE SET recorded_at = excluded.recorded_at, features = excluded.features";

// Only replaces an embedding with one at least as new, so replays out of order keep the latest.
// The WHERE clause is `CustomerEmbedding::supersedes` in SQL, so the check and the write are
// one statement.
const PUT_EMBEDDING: &str = "INSERT INTO customer_embeddings
    (customer_id, embedding_version, as_of, region, services, vector)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT(customer_id) DO UPDATE SET
        embedding_version = excluded.embedding_version, as_of = excluded.as_of,
        region = excluded.region, services = excluded.services, vector = excluded.vector
    WHERE excluded.as_of >= customer_embeddings.as_of
       OR excluded.embedding_version <> customer_embeddings.embedding_version";

type EmbeddingRow = (String, String, String, Option<String>, String, Vec<u8>);

fn embedding_params(e: &CustomerEmbedding) -> Result<EmbeddingRow, PortError> {
    let region = e
        .region
        .map(|r| serde_json::to_value(r).map(|v| v.as_str().unwrap_or_default().to_owned()))
        .transpose()
        .map_err(json_err)?;
    Ok((
        e.customer_id.clone(),
        e.embedding_version.clone(),
        ts(e.as_of),
        region,
        serde_json::to_string(&e.services_bought).map_err(json_err)?,
        f32_to_blob(&e.vector),
    ))
}

#[async_trait::async_trait]
impl FeatureStore for SqliteFeatureStore {
    async fn put(&self, features: &CustomerFeatures) -> Result<(), PortError> {
        let json = serde_json::to_string(features).map_err(json_err)?;
        self.conn()
            .prepare_cached(PUT_FEATURES)
            .map_err(db_err)?
            .execute(params![
                features.customer_id,
                features.feature_set_version,
                ts(features.last_event_time),
                ts(Utc::now()),
                json
            ])
            .map_err(db_err)?;
        Ok(())
    }

    async fn put_all(&self, features: &[CustomerFeatures]) -> Result<(), PortError> {
        self.put_batch(features, &[])
    }

    async fn get(
        &self,
        customer_id: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<CustomerFeatures>, PortError> {
        self.get_version_sync(customer_id, FEATURE_SET_VERSION, as_of)
    }

    async fn get_version(
        &self,
        customer_id: &str,
        version: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<CustomerFeatures>, PortError> {
        self.get_version_sync(customer_id, version, as_of)
    }

    async fn append_event(&self, event: &CustomerEvent) -> Result<bool, PortError> {
        let conn = self.conn();
        let mut ins = conn.prepare_cached(APPEND_EVENT).map_err(db_err)?;
        append(&mut ins, event)
    }

    async fn events(&self, customer_id: &str) -> Result<Vec<CustomerEvent>, PortError> {
        self.events_for(customer_id)
    }

    async fn logged_customers(&self) -> Result<Vec<String>, PortError> {
        self.logged_customers_sync()
    }

    async fn history(
        &self,
        customer_id: &str,
        limit: usize,
    ) -> Result<Vec<CustomerFeatures>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT features FROM feature_history
                 WHERE customer_id = ?1 AND feature_set_version = ?2
                 ORDER BY event_time DESC LIMIT ?3",
            )
            .map_err(db_err)?;
        let rows: Vec<String> = stmt
            .query_map(
                params![customer_id, FEATURE_SET_VERSION, limit as i64],
                |r| r.get(0),
            )
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        rows.iter()
            .map(|r| serde_json::from_str(r).map_err(json_err))
            .collect()
    }
}

#[async_trait::async_trait]
impl CustomerIndex for SqliteFeatureStore {
    async fn upsert(&self, embedding: &CustomerEmbedding) -> Result<(), PortError> {
        embedding.check()?;
        self.conn()
            .prepare_cached(PUT_EMBEDDING)
            .map_err(db_err)?
            .execute(embedding_params(embedding)?)
            .map_err(db_err)?;
        self.bump();
        Ok(())
    }

    async fn similar(&self, query: &SimilarQuery) -> Result<Vec<SimilarCustomer>, PortError> {
        self.similar_sync(query)
    }
}

#[cfg(test)]
mod tests {
    use super::SqliteFeatureStore;

    async fn fresh() -> Option<SqliteFeatureStore> {
        Some(SqliteFeatureStore::in_memory().unwrap())
    }

    mod contract {
        use super::fresh;
        upsell_core::feature_store_contract!(fresh());
    }
}
