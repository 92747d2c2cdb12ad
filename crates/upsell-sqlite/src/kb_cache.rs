//! A bounded cache of knowledge-base retrieval results in front of [`SqliteKnowledgeBase`].
//!
//! Most workflow executions send one of a few dozen distinct retrieval requests, and ranking
//! one (FTS5 BM25 plus the vector scan) costs far more than the rest of the kb-retrieve step.
//! [`CachedKnowledgeBase`] keeps the results of the most recently used requests, keyed by the
//! whole request (query text, `k`, filter and mode), and drops them all as soon as the index
//! changes: every lookup reads [`SqliteKnowledgeBase::index_version`], which any sync (by this
//! process or another one sharing the SQLite file) changes. Errors are never cached, and a
//! result computed while the index changed is not stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use upsell_core::kb::{KnowledgeBase, RetrieveRequest, RetrievedChunk};
use upsell_core::ports::PortError;

use crate::kb::SqliteKnowledgeBase;

/// Requests whose results are kept by default.
pub const DEFAULT_CAPACITY: usize = 256;

struct Entry {
    /// Value of the use counter when this entry was last read or written.
    last_used: u64,
    results: Arc<Vec<RetrievedChunk>>,
}

#[derive(Default)]
struct State {
    /// The index version the entries belong to.
    version: Option<(u64, i64)>,
    /// Use counter (least recently used = smallest `last_used`).
    tick: u64,
    entries: HashMap<String, Entry>,
}

/// [`SqliteKnowledgeBase`] with a bounded LRU cache of retrieval results, invalidated whenever
/// the index changes. Implements [`KnowledgeBase`] with the very same results and errors.
pub struct CachedKnowledgeBase {
    inner: Arc<SqliteKnowledgeBase>,
    capacity: usize,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for CachedKnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedKnowledgeBase")
            .field("inner", &self.inner)
            .field("capacity", &self.capacity)
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl CachedKnowledgeBase {
    /// A cache of the results of the last 256 distinct requests (`DEFAULT_CAPACITY`).
    pub fn new(inner: Arc<SqliteKnowledgeBase>) -> Self {
        Self::with_capacity(inner, DEFAULT_CAPACITY)
    }

    /// A cache of the results of the last `capacity` distinct requests (0 caches nothing).
    pub fn with_capacity(inner: Arc<SqliteKnowledgeBase>, capacity: usize) -> Self {
        CachedKnowledgeBase {
            inner,
            capacity,
            state: Mutex::new(State::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The index behind the cache.
    pub fn inner(&self) -> &Arc<SqliteKnowledgeBase> {
        &self.inner
    }

    /// Retrievals answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Retrievals that ran against the index.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// How many requests' results are cached now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached results of `key` at index `version`, if any.
    fn lookup(&self, key: &str, version: (u64, i64)) -> Option<Arc<Vec<RetrievedChunk>>> {
        let mut state = self.lock();
        if state.version != Some(version) {
            state.entries.clear();
            state.version = Some(version);
            return None;
        }
        state.tick += 1;
        let tick = state.tick;
        let entry = state.entries.get_mut(key)?;
        entry.last_used = tick;
        Some(entry.results.clone())
    }

    fn store(&self, key: String, version: (u64, i64), results: Arc<Vec<RetrievedChunk>>) {
        let mut state = self.lock();
        if state.version != Some(version) {
            return;
        }
        if !state.entries.contains_key(&key) && state.entries.len() >= self.capacity {
            let oldest = state
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                state.entries.remove(&oldest);
            }
        }
        state.tick += 1;
        let last_used = state.tick;
        state.entries.insert(key, Entry { last_used, results });
    }
}

#[async_trait::async_trait]
impl KnowledgeBase for CachedKnowledgeBase {
    async fn retrieve(&self, request: &RetrieveRequest) -> Result<Vec<RetrievedChunk>, PortError> {
        if self.capacity == 0 {
            return self.inner.retrieve(request).await;
        }
        request.validate()?;
        // The whole request is the key: query text, k, filter and mode.
        let key = serde_json::to_string(request).map_err(|e| {
            PortError::Invalid(format!("retrieval request does not serialise: {e}"))
        })?;
        let version = self.inner.index_version()?;
        if let Some(results) = self.lookup(&key, version) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(results.as_ref().clone());
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let results = self.inner.retrieve(request).await?;
        // Kept only if the index did not change while ranking.
        if self.inner.index_version()? == version {
            self.store(key, version, Arc::new(results.clone()));
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upsell_core::kb::{
        ChunkingSettings, Document, Filter, HashingEmbedder, MetaValue, Metadata, SearchMode,
        chunk_document,
    };

    use crate::kb::IndexDocument;

    fn doc(id: &str, text: &str, region: &str) -> IndexDocument {
        let metadata: Metadata = [("region".to_owned(), MetaValue::Text(region.to_owned()))]
            .into_iter()
            .collect();
        let d = Document {
            doc_id: id.into(),
            source: format!("{id}.md"),
            text: text.into(),
            metadata,
        };
        IndexDocument {
            doc_id: id.into(),
            source: d.source.clone(),
            content_hash: format!("{id}-{}", text.len()),
            chunks: chunk_document(&d, ChunkingSettings::default()),
        }
    }

    fn corpus() -> Vec<IndexDocument> {
        vec![
            doc(
                "pool",
                "Weekly pool cleaning: skimming, brushing and balanced water chemistry.",
                "southwest",
            ),
            doc(
                "gutters",
                "Gutter cleaning in autumn under tall oak trees; downspouts flushed.",
                "northeast",
            ),
            doc(
                "snow",
                "Snow plowing before dawn for early commuters; walks salted.",
                "midwest",
            ),
        ]
    }

    fn ids(chunks: &[RetrievedChunk]) -> Vec<&str> {
        chunks.iter().map(|c| c.doc_id.as_str()).collect()
    }

    #[tokio::test]
    async fn repeated_requests_are_answered_from_the_cache_with_the_same_results() {
        let kb =
            Arc::new(SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::default())).unwrap());
        kb.sync(&corpus()).await.unwrap();
        let cached = CachedKnowledgeBase::new(kb.clone());
        let request = RetrieveRequest::new("pool cleaning", 2);
        let direct = kb.retrieve(&request).await.unwrap();
        let first = cached.retrieve(&request).await.unwrap();
        let second = cached.retrieve(&request).await.unwrap();
        assert_eq!(first, direct);
        assert_eq!(second, direct);
        assert_eq!((cached.hits(), cached.misses()), (1, 1));
        assert_eq!(ids(&first).first(), Some(&"pool"));
    }

    #[tokio::test]
    async fn the_key_is_the_whole_request() {
        let kb =
            Arc::new(SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::default())).unwrap());
        kb.sync(&corpus()).await.unwrap();
        let cached = CachedKnowledgeBase::new(kb.clone());
        let base = RetrieveRequest::new("cleaning", 3);
        let variants = [
            base.clone(),
            RetrieveRequest::new("cleaning", 1),
            base.clone().with_mode(SearchMode::Keyword),
            base.clone().with_filter(Some(Filter::Equals {
                key: "region".into(),
                value: MetaValue::Text("northeast".into()),
            })),
            RetrieveRequest::new("snow", 3),
        ];
        for r in &variants {
            assert_eq!(
                cached.retrieve(r).await.unwrap(),
                kb.retrieve(r).await.unwrap(),
                "{r:?}"
            );
        }
        assert_eq!(
            (cached.hits(), cached.misses()),
            (0, 5),
            "five distinct keys"
        );
        let filtered = cached.retrieve(&variants[3]).await.unwrap();
        assert_eq!(ids(&filtered), vec!["gutters"]);
        assert_eq!(cached.hits(), 1);
    }

    #[tokio::test]
    async fn errors_are_returned_and_not_cached() {
        let kb =
            Arc::new(SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::default())).unwrap());
        let cached = CachedKnowledgeBase::new(kb);
        let bad = RetrieveRequest::new("pool", 0);
        assert!(matches!(
            cached.retrieve(&bad).await,
            Err(PortError::Invalid(_))
        ));
        assert!(cached.is_empty());
        // An empty index answers with no chunks (cached like any other result).
        assert!(
            cached
                .retrieve(&RetrieveRequest::new("pool", 2))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_sync_through_another_connection_invalidates_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upsell.db");
        let embedder = Arc::new(HashingEmbedder::default());
        let kb = Arc::new(SqliteKnowledgeBase::open(&path, embedder.clone()).unwrap());
        kb.sync(&corpus()).await.unwrap();
        let cached = CachedKnowledgeBase::new(kb);
        let request = RetrieveRequest::new("lawn mowing", 1);
        let before = cached.retrieve(&request).await.unwrap();
        assert_ne!(ids(&before), vec!["lawn"]);
        assert_eq!(cached.retrieve(&request).await.unwrap(), before);

        // Another process (here: another connection) adds a document about lawns.
        let other = SqliteKnowledgeBase::open(&path, embedder).unwrap();
        let mut docs = corpus();
        docs.push(doc(
            "lawn",
            "Lawn mowing every week with edging and clippings bagged.",
            "midwest",
        ));
        other.sync(&docs).await.unwrap();

        let after = cached.retrieve(&request).await.unwrap();
        assert_eq!(ids(&after), vec!["lawn"], "the new document is found");
        assert_eq!((cached.hits(), cached.misses()), (1, 2));
    }

    #[tokio::test]
    async fn the_least_recently_used_request_is_evicted_first() {
        let kb =
            Arc::new(SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::default())).unwrap());
        kb.sync(&corpus()).await.unwrap();
        let cached = CachedKnowledgeBase::with_capacity(kb, 2);
        let (a, b, c) = (
            RetrieveRequest::new("pool", 1),
            RetrieveRequest::new("gutter", 1),
            RetrieveRequest::new("snow", 1),
        );
        cached.retrieve(&a).await.unwrap();
        cached.retrieve(&b).await.unwrap();
        cached.retrieve(&a).await.unwrap(); // hit: b is now the least recently used
        cached.retrieve(&c).await.unwrap(); // evicts b
        assert_eq!(cached.len(), 2);
        assert_eq!((cached.hits(), cached.misses()), (1, 3));
        cached.retrieve(&a).await.unwrap();
        assert_eq!(cached.hits(), 2, "a stayed");
        cached.retrieve(&b).await.unwrap();
        assert_eq!(cached.misses(), 4, "b was evicted");
    }
}
