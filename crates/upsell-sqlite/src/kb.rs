//! The local knowledge-base index: chunks, their metadata and embeddings in SQLite, keyword
//! search with FTS5 BM25, exact vector search over an in-memory copy of the embeddings, and
//! reciprocal rank fusion of the two. Implements [`upsell_core::kb::KnowledgeBase`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use upsell_core::kb::{
    Chunk, Embedder, EmbedderInfo, Filter, FusionWeights, KnowledgeBase, Metadata, RerankSettings,
    RetrieveRequest, RetrievedChunk, SearchMode, best_per_group, content_words, dot,
    rerank_passages, sentence_rerank_score, weighted_reciprocal_rank_fusion,
};
use upsell_core::ports::PortError;

use crate::vectors::{Int8Matrix, VectorMatrix, blob_to_f32, f32_to_blob, scan_threads};
use crate::{db_err, open_connection};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS kb_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kb_docs (
    doc_id       TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kb_chunks (
    id        INTEGER PRIMARY KEY,
    chunk_id  TEXT NOT NULL UNIQUE,
    doc_id    TEXT NOT NULL REFERENCES kb_docs(doc_id) ON DELETE CASCADE,
    source    TEXT NOT NULL,
    text      TEXT NOT NULL,
    metadata  TEXT NOT NULL,
    embedding BLOB NOT NULL,
    parent_id TEXT
);
CREATE INDEX IF NOT EXISTS kb_chunks_doc ON kb_chunks(doc_id);
CREATE TABLE IF NOT EXISTS kb_parents (
    parent_id TEXT PRIMARY KEY,
    doc_id    TEXT NOT NULL REFERENCES kb_docs(doc_id) ON DELETE CASCADE,
    text      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kb_parents_doc ON kb_parents(doc_id);
CREATE TABLE IF NOT EXISTS kb_passages (
    unit_id   TEXT NOT NULL,
    position  INTEGER NOT NULL,
    doc_id    TEXT NOT NULL REFERENCES kb_docs(doc_id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    PRIMARY KEY (unit_id, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kb_passages_doc ON kb_passages(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS kb_fts USING fts5(
    text, content='kb_chunks', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS kb_chunks_ai AFTER INSERT ON kb_chunks BEGIN
    INSERT INTO kb_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS kb_chunks_ad AFTER DELETE ON kb_chunks BEGIN
    INSERT INTO kb_fts(kb_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"#;

/// A document ready to index: its chunks and a hash of everything that went into them.
#[derive(Debug, Clone)]
pub struct IndexDocument {
    pub doc_id: String,
    pub source: String,
    /// Changes whenever the text, metadata or chunking settings change.
    pub content_hash: String,
    pub chunks: Vec<Chunk>,
}

/// A document whose chunks depend on the embedder (Bedrock `SEMANTIC` chunking): `sync_sources`
/// chunks it only when it is new or changed, so an unchanged document costs no embedding.
#[derive(Debug, Clone)]
pub struct SemanticDocument {
    pub document: upsell_core::kb::Document,
    pub settings: upsell_core::kb::SemanticSettings,
    /// Changes whenever the text, metadata or chunking settings change.
    pub content_hash: String,
}

/// A document to index: already chunked, or to be chunked with the embedder.
#[derive(Debug, Clone)]
pub enum SourceDocument {
    Chunked(IndexDocument),
    Semantic(SemanticDocument),
}

impl SourceDocument {
    pub fn doc_id(&self) -> &str {
        match self {
            SourceDocument::Chunked(d) => &d.doc_id,
            SourceDocument::Semantic(d) => &d.document.doc_id,
        }
    }

    pub fn content_hash(&self) -> &str {
        match self {
            SourceDocument::Chunked(d) => &d.content_hash,
            SourceDocument::Semantic(d) => &d.content_hash,
        }
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    pub documents_added: usize,
    pub documents_updated: usize,
    pub documents_unchanged: usize,
    pub documents_deleted: usize,
    pub chunks_embedded: usize,
    pub chunks_total: usize,
    /// Sentence windows embedded to place semantic-chunking breakpoints (0 for other
    /// strategies).
    pub sentences_embedded: usize,
    /// Passages (sentences of each retrievable unit) embedded for re-ranking (0 without
    /// re-ranking).
    pub passages_embedded: usize,
}

/// Per-connection helpers for keyword search: the FTS5 index's vocabulary with document
/// counts, and FTS3's porter tokenizer, which stems a word as the `porter` FTS5 tokenizer does.
const TEMP_SCHEMA: &str = r#"
CREATE VIRTUAL TABLE IF NOT EXISTS temp.kb_fts_vocab USING fts5vocab(main, kb_fts, row);
CREATE VIRTUAL TABLE IF NOT EXISTS temp.kb_stem USING fts3tokenize(porter);
"#;

/// Keyword search ranks at most about this many postings (sum of the document frequencies of
/// the query terms it keeps). FTS5 scores every row an OR query matches before `LIMIT` applies,
/// so at 100,000 chunks a query made of common words would score most of the index; the terms
/// kept are the rarest ones (the highest BM25 weights), and the rarest is always kept. On the
/// real knowledge base (345 chunks) only queries of more than 17 distinct words can reach it.
const KEYWORD_POSTINGS_BUDGET: u64 = 6_000;

/// Everything vector search and filters need, kept in memory and reloaded when the data changes.
struct Cache {
    generation: u64,
    /// The `version` counter in `kb_meta` when this was loaded (bumped by every sync).
    data_version: i64,
    rowids: Vec<i64>,
    index_of: HashMap<i64, usize>,
    columns: MetadataColumns,
    vectors: VectorMatrix,
    vectors_i8: Int8Matrix,
    /// Stemmed term -> number of chunks containing it (from `kb_fts_vocab`).
    doc_freq: HashMap<String, u64>,
    /// Per row, the unit results are deduplicated by: its parent (hierarchical chunking) or
    /// the chunk itself, numbered from 0.
    groups: Vec<u32>,
    /// Most rows sharing one group (1 without hierarchical chunking).
    max_group_size: usize,
    /// Whether the index holds passage vectors for re-ranking (`kb_meta` key `passages`).
    has_passages: bool,
    /// Each distinct metadata text of the rows, parsed: the chunks of one document share one,
    /// and the next reload (after a sync that added a few documents) parses only new ones.
    parsed_metadata: Arc<HashMap<String, Metadata>>,
}

/// One bit per cached row.
#[derive(Clone)]
struct Bitmap(Vec<u64>);

impl Bitmap {
    fn filled(rows: usize, value: bool) -> Self {
        let mut words = vec![if value { u64::MAX } else { 0 }; rows.div_ceil(64)];
        if value && !rows.is_multiple_of(64) {
            // Keep bits past the last row clear so that negation and counting stay exact.
            if let Some(last) = words.last_mut() {
                *last = (1u64 << (rows % 64)) - 1;
            }
        }
        Bitmap(words)
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn set(&mut self, i: usize, value: bool) {
        if value {
            self.0[i / 64] |= 1 << (i % 64);
        } else {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }
}

/// Metadata stored by column: for every key, its distinct values with the rows holding them.
/// A filter is evaluated once per distinct value instead of once per row, giving the bitmap of
/// rows that pass, with exactly the semantics of [`Filter::matches`].
#[derive(Default)]
struct MetadataColumns {
    rows: usize,
    by_key: HashMap<String, Vec<(Metadata, Vec<u32>)>>,
}

impl MetadataColumns {
    fn build(all: &[&Metadata]) -> Self {
        let mut by_key: HashMap<String, Vec<(Metadata, Vec<u32>)>> = HashMap::new();
        let mut slot: HashMap<(String, String), usize> = HashMap::new();
        for (row, meta) in all.iter().enumerate() {
            for (key, value) in *meta {
                let id = (
                    key.clone(),
                    serde_json::to_string(value).unwrap_or_default(),
                );
                let values = by_key.entry(key.clone()).or_default();
                let i = *slot.entry(id).or_insert_with(|| {
                    values.push((Metadata::from([(key.clone(), value.clone())]), Vec::new()));
                    values.len() - 1
                });
                values[i].1.push(row as u32);
            }
        }
        MetadataColumns {
            rows: all.len(),
            by_key,
        }
    }

    /// Rows passing `filter`.
    fn allowed(&self, filter: &Filter) -> Bitmap {
        let key = match filter {
            Filter::AndAll(items) => {
                let mut out = Bitmap::filled(self.rows, true);
                for f in items {
                    let b = self.allowed(f);
                    out.0.iter_mut().zip(&b.0).for_each(|(o, x)| *o &= x);
                }
                return out;
            }
            Filter::OrAll(items) => {
                let mut out = Bitmap::filled(self.rows, false);
                for f in items {
                    let b = self.allowed(f);
                    out.0.iter_mut().zip(&b.0).for_each(|(o, x)| *o |= x);
                }
                return out;
            }
            Filter::Equals { key, .. }
            | Filter::NotEquals { key, .. }
            | Filter::In { key, .. }
            | Filter::ListContains { key, .. }
            | Filter::GreaterThanOrEquals { key, .. }
            | Filter::LessThanOrEquals { key, .. } => key,
        };
        // A leaf looks at one key only: rows without the key get the answer for no value.
        let absent = filter.matches(&Metadata::new());
        let mut out = Bitmap::filled(self.rows, absent);
        for (value, rows) in self.by_key.get(key).map(Vec::as_slice).unwrap_or_default() {
            let pass = filter.matches(value);
            if pass != absent {
                rows.iter().for_each(|&r| out.set(r as usize, pass));
            }
        }
        out
    }
}

/// SQLite knowledge-base index. Cheap to share: wrap it in an `Arc`.
pub struct SqliteKnowledgeBase {
    conn: Mutex<Connection>,
    embedder: Arc<dyn Embedder>,
    /// Weights of the keyword and vector lists in hybrid fusion.
    fusion: FusionWeights,
    /// Second-stage re-ranking; also decides whether ingestion embeds passages.
    rerank: Option<RerankSettings>,
    generation: Mutex<u64>,
    cache: Mutex<Option<Arc<Cache>>>,
}

impl std::fmt::Debug for SqliteKnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKnowledgeBase")
            .field("embedder", &self.embedder.info())
            .field("fusion", &self.fusion)
            .field("rerank", &self.rerank)
            .finish_non_exhaustive()
    }
}

/// How many candidates (parents, with hierarchical chunking) each retriever contributes to
/// fusion.
fn candidates_for(k: usize) -> usize {
    (k * 4).max(50)
}

/// The `kb_meta` value `passages` takes when the index holds re-ranking passages
/// ([`rerank_passages`] of every unit); bump it when that split changes.
const PASSAGES_VERSION: &str = "sentences-v1";

/// Texts per call to the embedder during ingestion.
const EMBED_BATCH: usize = 256;

/// A document given to `sync`, borrowed.
#[derive(Clone, Copy)]
enum DocRef<'a> {
    Chunked(&'a IndexDocument),
    Semantic(&'a SemanticDocument),
}

impl DocRef<'_> {
    fn doc_id(&self) -> &str {
        match self {
            DocRef::Chunked(d) => &d.doc_id,
            DocRef::Semantic(d) => &d.document.doc_id,
        }
    }

    fn content_hash(&self) -> &str {
        match self {
            DocRef::Chunked(d) => &d.content_hash,
            DocRef::Semantic(d) => &d.content_hash,
        }
    }
}

impl SqliteKnowledgeBase {
    /// Opens (creating if needed) the index in the SQLite file at `path`.
    pub fn open(path: &Path, embedder: Arc<dyn Embedder>) -> Result<Self, PortError> {
        Self::from_connection(open_connection(path)?, embedder)
    }

    /// An index in memory, for tests.
    pub fn in_memory(embedder: Arc<dyn Embedder>) -> Result<Self, PortError> {
        Self::from_connection(Connection::open_in_memory().map_err(db_err)?, embedder)
    }

    fn from_connection(conn: Connection, embedder: Arc<dyn Embedder>) -> Result<Self, PortError> {
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        // Indexes written before hierarchical chunking lack `kb_chunks.parent_id`.
        let has_parent: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('kb_chunks') WHERE name = 'parent_id'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db_err)?
            > 0;
        if !has_parent {
            conn.execute_batch("ALTER TABLE kb_chunks ADD COLUMN parent_id TEXT;")
                .map_err(db_err)?;
        }
        conn.execute_batch(TEMP_SCHEMA).map_err(db_err)?;
        let fusion = FusionWeights::for_provider(&embedder.info().provider);
        let rerank = RerankSettings::for_provider(&embedder.info().provider);
        Ok(SqliteKnowledgeBase {
            conn: Mutex::new(conn),
            fusion,
            rerank,
            embedder,
            generation: Mutex::new(0),
            cache: Mutex::new(None),
        })
    }

    /// Sets the weights of hybrid fusion (default: [`FusionWeights::for_provider`] of the
    /// embedder).
    pub fn with_fusion_weights(mut self, weights: FusionWeights) -> Result<Self, PortError> {
        self.set_fusion_weights(weights)?;
        Ok(self)
    }

    /// Changes the weights of hybrid fusion; refuses invalid weights.
    pub fn set_fusion_weights(&mut self, weights: FusionWeights) -> Result<(), PortError> {
        weights.validate()?;
        self.fusion = weights;
        Ok(())
    }

    /// The weights hybrid fusion uses.
    pub fn fusion_weights(&self) -> FusionWeights {
        self.fusion
    }

    /// Sets second-stage re-ranking (default: [`RerankSettings::for_provider`] of the
    /// embedder; `None` turns it off).
    pub fn with_rerank(mut self, rerank: Option<RerankSettings>) -> Result<Self, PortError> {
        self.set_rerank(rerank)?;
        Ok(self)
    }

    /// Changes second-stage re-ranking. With re-ranking on, ingestion also embeds every
    /// retrievable unit's sentences ([`rerank_passages`]); an index synced with it off has no
    /// passage vectors, and its queries skip re-ranking until the next sync with it on (which
    /// re-embeds everything, as changing the embedder does).
    pub fn set_rerank(&mut self, rerank: Option<RerankSettings>) -> Result<(), PortError> {
        if let Some(r) = &rerank {
            r.validate()?;
        }
        self.rerank = rerank;
        Ok(())
    }

    /// The re-ranking settings, if re-ranking is on.
    pub fn rerank(&self) -> Option<RerankSettings> {
        self.rerank
    }

    /// Whether the index holds re-ranking passages (it was last synced with re-ranking on).
    pub fn has_passages(&self) -> Result<bool, PortError> {
        Self::stored_passages(&self.conn())
    }

    /// Whether the index holds passage vectors (it was last synced with re-ranking on).
    fn stored_passages(conn: &Connection) -> Result<bool, PortError> {
        Ok(conn
            .query_row(
                "SELECT value FROM kb_meta WHERE key = 'passages'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(db_err)?
            .is_some_and(|v| v == PASSAGES_VERSION))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The embedder the index was built with, if it has been built.
    pub fn indexed_with(&self) -> Result<Option<EmbedderInfo>, PortError> {
        let conn = self.conn();
        let raw: Option<String> = conn
            .query_row(
                "SELECT value FROM kb_meta WHERE key = 'embedder'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        raw.map(|s| {
            serde_json::from_str(&s)
                .map_err(|e| PortError::Other(format!("corrupt kb_meta embedder: {e}")))
        })
        .transpose()
    }

    /// A value that changes whenever the index is written, by this store or another connection
    /// (its sync counter and the `kb_meta` version): result caches key on it.
    pub fn index_version(&self) -> Result<(u64, i64), PortError> {
        let generation = *self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let version = self
            .conn()
            .prepare_cached("SELECT CAST(value AS INTEGER) FROM kb_meta WHERE key = 'version'")
            .map_err(db_err)?
            .query_row([], |r| r.get(0))
            .optional()
            .map_err(db_err)?
            .unwrap_or(0);
        Ok((generation, version))
    }

    /// Number of chunks in the index.
    pub fn chunk_count(&self) -> Result<usize, PortError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM kb_chunks", [], |r| r.get(0))
            .map_err(db_err)?;
        Ok(n as usize)
    }

    /// Makes the index hold exactly `documents`, like a Bedrock ingestion job over the S3 prefix:
    /// new and changed documents are (re-)embedded, unchanged ones kept, missing ones deleted.
    /// Changing the embedder re-embeds everything. All in one transaction.
    pub async fn sync(&self, documents: &[IndexDocument]) -> Result<IngestReport, PortError> {
        let refs: Vec<DocRef<'_>> = documents.iter().map(DocRef::Chunked).collect();
        self.sync_refs(&refs, true).await
    }

    /// Adds or replaces `documents` and keeps every other document (an incremental write,
    /// e.g. an accepted message as a past success). A non-empty index must have been built with
    /// the current embedder, since re-embedding everything needs all the documents.
    pub async fn upsert_sources(
        &self,
        documents: &[SourceDocument],
    ) -> Result<IngestReport, PortError> {
        let refs: Vec<DocRef<'_>> = documents
            .iter()
            .map(|d| match d {
                SourceDocument::Chunked(d) => DocRef::Chunked(d),
                SourceDocument::Semantic(d) => DocRef::Semantic(d),
            })
            .collect();
        self.sync_refs(&refs, false).await
    }

    /// [`Self::sync`] for documents some of which are chunked with the embedder (Bedrock
    /// `SEMANTIC`): the sentence windows of new and changed documents are embedded in batches
    /// that span documents, breakpoints placed, and the resulting chunks embedded and written.
    pub async fn sync_sources(
        &self,
        documents: &[SourceDocument],
    ) -> Result<IngestReport, PortError> {
        let refs: Vec<DocRef<'_>> = documents
            .iter()
            .map(|d| match d {
                SourceDocument::Chunked(d) => DocRef::Chunked(d),
                SourceDocument::Semantic(d) => DocRef::Semantic(d),
            })
            .collect();
        self.sync_refs(&refs, true).await
    }

    /// Embeds `texts` in batches of [`EMBED_BATCH`], checking the count and size of the vectors.
    async fn embed_all(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        let info = self.embedder.info();
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(EMBED_BATCH) {
            vectors.extend(self.embedder.embed(batch).await?);
        }
        if vectors.len() != texts.len() || vectors.iter().any(|v| v.len() != info.dimensions) {
            return Err(PortError::Other(format!(
                "embedder {} returned vectors of the wrong count or size",
                info.model
            )));
        }
        Ok(vectors)
    }

    /// Writes new and changed `documents`; with `prune`, deletes the documents not among them.
    async fn sync_refs(
        &self,
        documents: &[DocRef<'_>],
        prune: bool,
    ) -> Result<IngestReport, PortError> {
        let info = self.embedder.info();
        let want_passages = self.rerank.is_some();
        // Turning passages on or off re-embeds everything, like changing the embedder.
        let same_embedder = self.indexed_with()?.as_ref() == Some(&info)
            && Self::stored_passages(&self.conn())? == want_passages;
        if !prune && !same_embedder && self.chunk_count()? > 0 {
            return Err(PortError::Invalid(format!(
                "the knowledge-base index was not built with embedder {} (or with other \
                 re-ranking settings): run `upsell kb ingest` before adding documents",
                info.model
            )));
        }
        let existing: HashMap<String, String> = if same_embedder {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT doc_id, content_hash FROM kb_docs")
                .map_err(db_err)?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?
        } else {
            HashMap::new()
        };

        let mut seen = BTreeSet::new();
        let mut report = IngestReport::default();
        let mut to_write = Vec::new();
        for doc in documents {
            if !seen.insert(doc.doc_id()) {
                return Err(PortError::Invalid(format!(
                    "document id `{}` appears twice",
                    doc.doc_id()
                )));
            }
            match existing.get(doc.doc_id()) {
                Some(h) if h == doc.content_hash() => report.documents_unchanged += 1,
                Some(_) => {
                    report.documents_updated += 1;
                    to_write.push(doc);
                }
                None => {
                    report.documents_added += 1;
                    to_write.push(doc);
                }
            }
        }

        // Semantic chunking of the new and changed documents: their sentence windows are
        // embedded together (batches spanning documents), then each document is cut at its
        // breakpoints.
        let sentences: Vec<Vec<upsell_core::kb::Sentence>> = to_write
            .iter()
            .map(|d| match d {
                DocRef::Semantic(s) => {
                    upsell_core::kb::split_sentences(&s.document.text, s.settings.max_tokens)
                }
                DocRef::Chunked(_) => Vec::new(),
            })
            .collect();
        let windows: Vec<String> = to_write
            .iter()
            .zip(&sentences)
            .flat_map(|(d, s)| match d {
                DocRef::Semantic(d) => {
                    upsell_core::kb::semantic_embedding_inputs(s, d.settings.buffer_size)
                }
                DocRef::Chunked(_) => Vec::new(),
            })
            .collect();
        let window_vectors = self.embed_all(&windows).await?;
        report.sentences_embedded = windows.len();
        let mut window_vectors = window_vectors.as_slice();
        let mut chunked: Vec<std::borrow::Cow<'_, IndexDocument>> =
            Vec::with_capacity(to_write.len());
        for (d, s) in to_write.iter().zip(&sentences) {
            chunked.push(match d {
                DocRef::Chunked(d) => std::borrow::Cow::Borrowed(*d),
                DocRef::Semantic(d) => {
                    let (mine, rest) = window_vectors.split_at(s.len());
                    window_vectors = rest;
                    std::borrow::Cow::Owned(IndexDocument {
                        doc_id: d.document.doc_id.clone(),
                        source: d.document.source.clone(),
                        content_hash: d.content_hash.clone(),
                        chunks: upsell_core::kb::chunk_semantic_with(
                            &d.document,
                            d.settings,
                            s,
                            mine,
                        )?,
                    })
                }
            });
        }
        let to_write = chunked;

        // Embed outside the connection lock, in batches that span documents: many small
        // chunks (hierarchical children) then share forward passes, and the embedder can sort a
        // batch by length so that little padding is computed.
        let texts: Vec<String> = to_write
            .iter()
            .flat_map(|d| d.chunks.iter().map(|c| c.text.clone()))
            .collect();
        let vectors = self.embed_all(&texts).await?;
        report.chunks_embedded = texts.len();
        let mut vectors = vectors.into_iter();
        let embedded: Vec<Vec<Vec<f32>>> = to_write
            .iter()
            .map(|d| vectors.by_ref().take(d.chunks.len()).collect())
            .collect();

        // Re-ranking passages: the sentences of every unit a search returns (a parent, or a
        // chunk without one), embedded in batches that span documents.
        let units: Vec<Vec<(&str, Vec<String>)>> = to_write
            .iter()
            .map(|d| {
                if !want_passages {
                    return Vec::new();
                }
                let mut seen = BTreeSet::new();
                d.chunks
                    .iter()
                    .map(|c| match &c.parent {
                        Some(p) => (p.chunk_id.as_str(), p.text.as_str()),
                        None => (c.chunk_id.as_str(), c.text.as_str()),
                    })
                    .filter(|(id, _)| seen.insert(*id))
                    .map(|(id, text)| (id, rerank_passages(text)))
                    .collect()
            })
            .collect();
        let passage_texts: Vec<String> = units
            .iter()
            .flatten()
            .flat_map(|(_, p)| p.iter().cloned())
            .collect();
        let passage_vectors = self.embed_all(&passage_texts).await?;
        report.passages_embedded = passage_texts.len();
        let mut passage_vectors = passage_vectors.into_iter();

        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        if !same_embedder {
            tx.execute_batch("DELETE FROM kb_chunks; DELETE FROM kb_docs;")
                .map_err(db_err)?;
            if want_passages {
                tx.execute(
                    "INSERT INTO kb_meta(key, value) VALUES ('passages', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [PASSAGES_VERSION],
                )
                .map_err(db_err)?;
            } else {
                tx.execute("DELETE FROM kb_meta WHERE key = 'passages'", [])
                    .map_err(db_err)?;
            }
            let json = serde_json::to_string(&info).map_err(|e| PortError::Other(e.to_string()))?;
            tx.execute(
                "INSERT INTO kb_meta(key, value) VALUES ('embedder', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [json],
            )
            .map_err(db_err)?;
        }
        for doc_id in existing.keys().filter(|_| prune) {
            if !seen.contains(doc_id.as_str()) {
                tx.execute("DELETE FROM kb_docs WHERE doc_id = ?1", [doc_id])
                    .map_err(db_err)?;
                report.documents_deleted += 1;
            }
        }
        {
            let mut del = tx
                .prepare("DELETE FROM kb_docs WHERE doc_id = ?1")
                .map_err(db_err)?;
            let mut ins_doc = tx
                .prepare("INSERT INTO kb_docs(doc_id, source, content_hash) VALUES (?1, ?2, ?3)")
                .map_err(db_err)?;
            let mut ins_chunk = tx
                .prepare(
                    "INSERT INTO kb_chunks(chunk_id, doc_id, source, text, metadata, embedding, parent_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(db_err)?;
            let mut ins_passage = tx
                .prepare(
                    "INSERT INTO kb_passages(unit_id, position, doc_id, embedding)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )
                .map_err(db_err)?;
            let mut ins_parent = tx
                .prepare(
                    "INSERT INTO kb_parents(parent_id, doc_id, text) VALUES (?1, ?2, ?3)
                     ON CONFLICT(parent_id) DO NOTHING",
                )
                .map_err(db_err)?;
            for ((doc, vectors), units) in to_write.iter().zip(&embedded).zip(&units) {
                del.execute([&doc.doc_id]).map_err(db_err)?;
                ins_doc
                    .execute(params![doc.doc_id, doc.source, doc.content_hash])
                    .map_err(db_err)?;
                for (unit, passages) in units {
                    for (position, vector) in
                        passage_vectors.by_ref().take(passages.len()).enumerate()
                    {
                        ins_passage
                            .execute(params![
                                unit,
                                position as i64,
                                doc.doc_id,
                                f32_to_blob(&vector)
                            ])
                            .map_err(db_err)?;
                    }
                }
                for (chunk, vector) in doc.chunks.iter().zip(vectors) {
                    let meta = serde_json::to_string(&chunk.metadata)
                        .map_err(|e| PortError::Other(e.to_string()))?;
                    if let Some(parent) = &chunk.parent {
                        ins_parent
                            .execute(params![parent.chunk_id, chunk.doc_id, parent.text])
                            .map_err(db_err)?;
                    }
                    ins_chunk
                        .execute(params![
                            chunk.chunk_id,
                            chunk.doc_id,
                            chunk.source,
                            chunk.text,
                            meta,
                            f32_to_blob(vector),
                            chunk.parent.as_ref().map(|p| p.chunk_id.as_str())
                        ])
                        .map_err(db_err)?;
                }
            }
        }
        // Readers compare this counter, not `PRAGMA data_version`: the knowledge base shares its
        // SQLite file with the other stores, whose commits must not invalidate the cache.
        tx.execute(
            "INSERT INTO kb_meta(key, value) VALUES ('version', '1')
             ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
            [],
        )
        .map_err(db_err)?;
        report.chunks_total = tx
            .query_row("SELECT count(*) FROM kb_chunks", [], |r| r.get::<_, i64>(0))
            .map_err(db_err)? as usize;
        tx.commit().map_err(db_err)?;
        drop(conn);
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Ok(report)
    }

    /// The in-memory copy of ids, metadata and vectors, reloaded if this or another connection
    /// changed the index since it was loaded.
    fn cache(&self, conn: &Connection) -> Result<Arc<Cache>, PortError> {
        let generation = *self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let data_version: i64 = conn
            .prepare_cached("SELECT CAST(value AS INTEGER) FROM kb_meta WHERE key = 'version'")
            .map_err(db_err)?
            .query_row([], |r| r.get(0))
            .optional()
            .map_err(db_err)?
            .unwrap_or(0);
        let mut slot = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref()
            && c.generation == generation
            && c.data_version == data_version
        {
            return Ok(Arc::clone(c));
        }
        // A metadata text parses to the same value whatever row holds it: the last reload's
        // parses are reused, and only the texts some row still holds are kept for the next.
        let earlier = slot
            .as_ref()
            .map(|c| Arc::clone(&c.parsed_metadata))
            .unwrap_or_default();
        let mut parsed: HashMap<String, Metadata> = HashMap::new();
        let mut texts: Vec<String> = Vec::new();
        let dims = self.embedder.info().dimensions;
        let mut stmt = conn
            .prepare(
                "SELECT id, metadata, embedding, coalesce(parent_id, chunk_id) FROM kb_chunks ORDER BY id",
            )
            .map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        let mut rowids = Vec::new();
        let mut vectors = VectorMatrix::new(dims);
        let mut groups = Vec::new();
        let mut group_ids: HashMap<String, u32> = HashMap::new();
        let mut group_sizes: Vec<usize> = Vec::new();
        while let Some(row) = rows.next().map_err(db_err)? {
            let group: String = row.get(3).map_err(db_err)?;
            let next = group_ids.len() as u32;
            let g = *group_ids.entry(group).or_insert(next);
            if g == next {
                group_sizes.push(0);
            }
            group_sizes[g as usize] += 1;
            groups.push(g);
            let id: i64 = row.get(0).map_err(db_err)?;
            let meta: String = row.get(1).map_err(db_err)?;
            let blob: Vec<u8> = row.get(2).map_err(db_err)?;
            let v = blob_to_f32(&blob);
            if v.len() != dims {
                return Err(PortError::Invalid(format!(
                    "the index holds {}-dimensional vectors but the embedder gives {dims}: run `upsell kb ingest`",
                    v.len()
                )));
            }
            rowids.push(id);
            if !parsed.contains_key(&meta) {
                let value = match earlier.get(&meta) {
                    Some(v) => v.clone(),
                    None => serde_json::from_str(&meta).map_err(|e| {
                        PortError::Other(format!("corrupt metadata for chunk row {id}: {e}"))
                    })?,
                };
                parsed.insert(meta.clone(), value);
            }
            texts.push(meta);
            vectors.push(&v);
        }
        let metadata: Vec<&Metadata> = texts.iter().map(|t| &parsed[t]).collect();
        let columns = MetadataColumns::build(&metadata);
        let index_of = rowids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let has_passages = Self::stored_passages(conn)?;
        let mut doc_freq = HashMap::new();
        let mut stmt = conn
            .prepare("SELECT term, doc FROM temp.kb_fts_vocab")
            .map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            doc_freq.insert(row.get(0).map_err(db_err)?, row.get(1).map_err(db_err)?);
        }
        let cache = Arc::new(Cache {
            generation,
            data_version,
            rowids,
            index_of,
            columns,
            vectors_i8: Int8Matrix::from_matrix(&vectors),
            vectors,
            doc_freq,
            groups,
            max_group_size: group_sizes.into_iter().max().unwrap_or(1),
            has_passages,
            parsed_metadata: Arc::new(parsed),
        });
        *slot = Some(Arc::clone(&cache));
        Ok(cache)
    }

    /// The FTS5 expression for `query`: its words, stopwords removed, quoted and OR-ed, keeping
    /// the rarest within [`KEYWORD_POSTINGS_BUDGET`].
    fn keyword_expression(
        conn: &Connection,
        cache: &Cache,
        query: &str,
    ) -> Result<Option<String>, PortError> {
        let mut seen = BTreeSet::new();
        let mut stem = conn
            .prepare_cached("SELECT token FROM temp.kb_stem WHERE input = ?1")
            .map_err(db_err)?;
        let mut words = Vec::new();
        let mut unknown = Vec::new();
        for word in content_words(query) {
            if seen.len() == 64 || !seen.insert(word.clone()) {
                continue;
            }
            let stemmed: Option<String> = stem
                .query_row([&word], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            match stemmed.and_then(|s| cache.doc_freq.get(&s).copied()) {
                Some(df) => words.push((df, word)),
                // A word the vocabulary does not know matches nothing: keeping it costs nothing.
                None => unknown.push(word),
            }
        }
        words.sort_by_key(|w| w.0);
        let mut postings = 0u64;
        let mut kept: Vec<String> = words
            .into_iter()
            .enumerate()
            .take_while(|(i, (df, _))| {
                postings += df;
                *i == 0 || postings <= KEYWORD_POSTINGS_BUDGET
            })
            .map(|(_, (_, w))| w)
            .collect();
        kept.extend(unknown);
        Ok(fts5_query(&kept.join(" ")))
    }

    fn keyword_ids(
        conn: &Connection,
        cache: &Cache,
        query: &str,
        allowed: Option<&Bitmap>,
        n: usize,
    ) -> Result<Vec<(i64, f64)>, PortError> {
        let Some(expr) = Self::keyword_expression(conn, cache, query)? else {
            return Ok(Vec::new());
        };
        // `ORDER BY rank` would make FTS5 copy every match with its position lists into a
        // sorter (it scores every match before any LIMIT anyway): select the best n here.
        let mut stmt = conn
            .prepare_cached("SELECT rowid, bm25(kb_fts) FROM kb_fts WHERE kb_fts MATCH ?1")
            .map_err(db_err)?;
        let mut rows = stmt.query([&expr]).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db_err)? {
            let id: i64 = row.get(0).map_err(db_err)?;
            let bm25: f64 = row.get(1).map_err(db_err)?;
            if let Some(allowed) = allowed
                && !Self::row_index(cache, id).is_some_and(|i| allowed.get(i))
            {
                continue;
            }
            // bm25() is lower-is-better; negate so every score here is higher-is-better.
            out.push((id, -bm25));
        }
        // Best first; equal scores by row id, so results do not depend on the scan order.
        let order = |a: &(i64, f64), b: &(i64, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if out.len() > n && n > 0 {
            out.select_nth_unstable_by(n - 1, order);
        }
        out.truncate(n);
        out.sort_unstable_by(order);
        Ok(out)
    }

    /// The cached row of SQLite rowid `id`. Rows are cached in ascending rowid order and are
    /// usually dense, so the offset from the first rowid is tried before a binary search: both
    /// read memory near the previous lookup when ids come in order (FTS5 returns matches by
    /// rowid), unlike a hash map probe (the largest cost of a filtered keyword search).
    fn row_index(cache: &Cache, id: i64) -> Option<usize> {
        let first = *cache.rowids.first()?;
        let guess = usize::try_from(id.checked_sub(first)?).ok()?;
        if cache.rowids.get(guess) == Some(&id) {
            return Some(guess);
        }
        cache.rowids.binary_search(&id).ok()
    }

    fn vector_ids(
        cache: &Cache,
        query: &[f32],
        allowed: Option<&Bitmap>,
        n: usize,
        threads: usize,
    ) -> Vec<(i64, f64)> {
        cache
            .vectors_i8
            .top_k_on(&cache.vectors, query, n, threads, |i| {
                allowed.is_none_or(|a| a.get(i))
            })
            .into_iter()
            .map(|(i, s)| (cache.rowids[i], f64::from(s)))
            .collect()
    }

    fn load_chunks(
        conn: &Connection,
        scored: &[(i64, f64)],
    ) -> Result<Vec<RetrievedChunk>, PortError> {
        // A hierarchical child stands for its parent: the parent's id and text are returned.
        let mut stmt = conn
            .prepare_cached(
                "SELECT coalesce(p.parent_id, c.chunk_id), c.doc_id, coalesce(p.text, c.text),
                        c.metadata, c.source
                 FROM kb_chunks c LEFT JOIN kb_parents p ON p.parent_id = c.parent_id
                 WHERE c.id = ?1",
            )
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(scored.len());
        for (id, score) in scored {
            let chunk = stmt
                .query_row([id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(db_err)?;
            let metadata = serde_json::from_str(&chunk.3)
                .map_err(|e| PortError::Other(format!("corrupt metadata for {}: {e}", chunk.0)))?;
            out.push(RetrievedChunk {
                chunk_id: chunk.0,
                doc_id: chunk.1,
                text: chunk.2,
                metadata,
                score: *score,
                source: chunk.4,
            });
        }
        Ok(out)
    }

    /// The synchronous part of retrieval, given the query vector (if the mode needs one).
    pub fn retrieve_with_vector(
        &self,
        request: &RetrieveRequest,
        query_vector: Option<&[f32]>,
    ) -> Result<Vec<RetrievedChunk>, PortError> {
        request.validate()?;
        let conn = self.conn();
        let cache = self.cache(&conn)?;
        if cache.rowids.is_empty() {
            return Ok(Vec::new());
        }
        let allowed = request.filter.as_ref().map(|f| cache.columns.allowed(f));
        let filter = allowed.as_ref();
        // With re-ranking, the first stage returns its best `candidates` and the second stage
        // keeps the best `k` of them.
        let rerank = self.rerank.filter(|_| cache.has_passages).zip(query_vector);
        let k = match rerank {
            Some((r, _)) => request.k.max(r.candidates),
            None => request.k,
        };
        // Results are deduplicated by parent (hierarchical chunking; otherwise every chunk is
        // its own parent): each list keeps the best child of a parent, i.e. the parent scores
        // the max of its children. Asking a retriever for `n * max_group_size` rows yields at
        // least `n` parents whenever that many match.
        let rows_for = |parents: usize| parents.saturating_mul(cache.max_group_size);
        let best_per_parent = |ranked: Vec<(i64, f64)>, n: usize| {
            let mut best = best_per_group(&ranked, |id| Self::group_of(&cache, *id));
            best.truncate(n);
            best
        };
        let scored: Vec<(i64, f64)> = match request.mode {
            SearchMode::Keyword => best_per_parent(
                Self::keyword_ids(&conn, &cache, &request.query, filter, rows_for(k))?,
                k,
            ),
            SearchMode::Vector => {
                let q = query_vector.ok_or_else(|| {
                    PortError::Invalid("vector search needs a query vector".into())
                })?;
                best_per_parent(
                    Self::vector_ids(&cache, q, filter, rows_for(k), scan_threads()),
                    k,
                )
            }
            SearchMode::Hybrid => {
                let n = candidates_for(k);
                let q = query_vector.ok_or_else(|| {
                    PortError::Invalid("hybrid search needs a query vector".into())
                })?;
                // The vector scan runs on one other thread while SQLite ranks keywords here: on
                // two cores that beat scanning on two threads meanwhile, and running the two one
                // after the other (measured, docs/performance.md).
                let (kw, vec) = std::thread::scope(|s| {
                    let vec = s.spawn(|| Self::vector_ids(&cache, q, filter, rows_for(n), 1));
                    let kw = Self::keyword_ids(&conn, &cache, &request.query, filter, rows_for(n));
                    (kw, vec.join().expect("vector scan thread panicked"))
                });
                let (kw, vec) = (best_per_parent(kw?, n), best_per_parent(vec, n));
                let row_of: HashMap<_, i64> = kw
                    .iter()
                    .chain(&vec)
                    .map(|(id, _)| (Self::group_of(&cache, *id), *id))
                    .collect();
                let keys = |l: &[(i64, f64)]| -> Vec<_> {
                    l.iter()
                        .map(|(id, _)| Self::group_of(&cache, *id))
                        .collect()
                };
                let (kw, vec) = (keys(&kw), keys(&vec));
                weighted_reciprocal_rank_fusion(&[
                    (self.fusion.keyword, kw.as_slice()),
                    (self.fusion.vector, vec.as_slice()),
                ])
                .into_iter()
                .take(k)
                .map(|(group, score)| (row_of[&group], score))
                .collect()
            }
        };
        let mut chunks = Self::load_chunks(&conn, &scored)?;
        if let Some((_, q)) = rerank {
            Self::rerank_chunks(&conn, q, &mut chunks)?;
            chunks.truncate(request.k);
        }
        Ok(chunks)
    }

    /// The second stage: scores each chunk by [`sentence_rerank_score`] of the query's
    /// similarities to its stored passages and sorts best first (ties keep the first stage's
    /// order). A chunk without passages scores last.
    fn rerank_chunks(
        conn: &Connection,
        query: &[f32],
        chunks: &mut Vec<RetrievedChunk>,
    ) -> Result<(), PortError> {
        let mut stmt = conn
            .prepare_cached("SELECT embedding FROM kb_passages WHERE unit_id = ?1")
            .map_err(db_err)?;
        let mut sims = Vec::new();
        let mut scored = Vec::with_capacity(chunks.len());
        for chunk in chunks.drain(..) {
            sims.clear();
            let mut rows = stmt.query([&chunk.chunk_id]).map_err(db_err)?;
            while let Some(row) = rows.next().map_err(db_err)? {
                let blob = row
                    .get_ref(0)
                    .map_err(db_err)?
                    .as_blob()
                    .map_err(|e| PortError::Other(format!("corrupt passage vector: {e}")))?;
                sims.push(dot(query, &blob_to_f32(blob)));
            }
            scored.push((sentence_rerank_score(&sims), chunk));
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        chunks.extend(scored.into_iter().map(|(score, mut chunk)| {
            chunk.score = f64::from(score);
            chunk
        }));
        Ok(())
    }

    /// The parent a row is deduplicated by (its cached group, or the row itself if the cache
    /// does not know it).
    fn group_of(cache: &Cache, rowid: i64) -> Result<u32, i64> {
        cache
            .index_of
            .get(&rowid)
            .map(|&i| cache.groups[i])
            .ok_or(rowid)
    }

    fn check_embedder(&self) -> Result<(), PortError> {
        let info = self.embedder.info();
        match self.indexed_with()? {
            Some(built) if built != info => Err(PortError::Invalid(format!(
                "the index was built with {} ({}), but queries use {} ({}): run `upsell kb ingest` with the same provider",
                built.model, built.provider, info.model, info.provider
            ))),
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl KnowledgeBase for SqliteKnowledgeBase {
    async fn retrieve(&self, request: &RetrieveRequest) -> Result<Vec<RetrievedChunk>, PortError> {
        request.validate()?;
        self.check_embedder()?;
        let vector = if request.mode == SearchMode::Keyword && self.rerank.is_none() {
            None
        } else {
            self.embedder
                .embed(std::slice::from_ref(&request.query))
                .await?
                .pop()
        };
        self.retrieve_with_vector(request, vector.as_deref())
    }
}

/// An FTS5 MATCH expression for arbitrary user text: every word becomes a double-quoted string
/// (quotes doubled), joined with OR, so operators (`NEAR`, `*`, `AND`, parentheses, `:`, `^`)
/// in the text are only ever searched as words. `None` when the text has no searchable word.
fn fts5_query(text: &str) -> Option<String> {
    let mut seen = HashSet::new();
    let terms: Vec<String> = content_words(text)
        .into_iter()
        .filter(|w| seen.insert(w.clone()))
        .take(64)
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

#[cfg(test)]
mod search_tests {
    use super::*;
    use upsell_core::kb::{ChunkingSettings, Document, HashingEmbedder, MetaValue, chunk_document};

    #[test]
    fn fts5_query_quotes_every_word_and_drops_operators() {
        assert_eq!(
            fts5_query(r#"pool "NEAR" (lawn*) AND col:umn ^x"#).unwrap(),
            r#""pool" OR "near" OR "lawn" OR "col" OR "umn" OR "x""#
        );
        assert_eq!(fts5_query("  !!! ** () \"\" "), None);
        assert_eq!(fts5_query("the and of"), None);
        assert_eq!(
            fts5_query("Gärten über piscine")
                .unwrap()
                .matches('"')
                .count(),
            6
        );
    }

    /// 300 documents whose words recur with varied frequencies and lengths, so BM25 scores
    /// differ from row to row.
    fn corpus() -> Vec<IndexDocument> {
        let words = [
            "pool", "lawn", "gutter", "snow", "dog", "fence", "pump", "leaf", "roof", "window",
            "drain", "hedge",
        ];
        (0..300)
            .map(|i| {
                let text: Vec<&str> = (0..(5 + i % 17))
                    .map(|j| words[(i * 7 + j * j * 3 + j / 2) % words.len()])
                    .collect();
                let region = if i % 3 == 0 { "west" } else { "east" };
                let d = Document {
                    doc_id: format!("d{i}"),
                    source: format!("d{i}.md"),
                    text: text.join(" "),
                    metadata: [("region".to_owned(), MetaValue::Text(region.into()))].into(),
                };
                IndexDocument {
                    doc_id: d.doc_id.clone(),
                    source: d.source.clone(),
                    content_hash: "h".into(),
                    chunks: chunk_document(&d, ChunkingSettings::default()),
                }
            })
            .collect()
    }

    /// The best `n` rows picked in Rust are exactly the first `n` of FTS5's `ORDER BY rank`,
    /// with and without a filter (scores tied in BM25 may come in either order there).
    #[tokio::test]
    async fn keyword_top_n_equals_fts5_rank_order() {
        let kb = SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::new(32))).unwrap();
        kb.sync(&corpus()).await.unwrap();
        let conn = kb.conn();
        let cache = kb.cache(&conn).unwrap();
        let west = cache
            .columns
            .allowed(&Filter::from_pairs(&["region=west"]).unwrap().unwrap());
        let mut compared = 0;
        for query in [
            "pool pump",
            "snow roof drain",
            "dog fence hedge window",
            "leaf",
        ] {
            let expr = SqliteKnowledgeBase::keyword_expression(&conn, &cache, query)
                .unwrap()
                .unwrap();
            let mut stmt = conn
                .prepare(
                    "SELECT rowid, bm25(kb_fts) FROM kb_fts WHERE kb_fts MATCH ?1 ORDER BY rank",
                )
                .unwrap();
            let ranked: Vec<(i64, f64)> = stmt
                .query_map([&expr], |r| Ok((r.get(0)?, -r.get::<_, f64>(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(ranked.len() > 20, "{query}: too few matches to compare");
            for (filter, n) in [(None, 1), (None, 10), (Some(&west), 7), (None, 1000)] {
                let expected: Vec<(i64, f64)> = ranked
                    .iter()
                    .filter(|(id, _)| filter.is_none_or(|f| f.get(cache.index_of[id])))
                    .take(n)
                    .copied()
                    .collect();
                let got =
                    SqliteKnowledgeBase::keyword_ids(&conn, &cache, query, filter, n).unwrap();
                assert_eq!(got.len(), expected.len(), "{query}, n = {n}");
                for (g, e) in got.iter().zip(&expected) {
                    assert_eq!(g.1, e.1, "{query}, n = {n}: scores differ");
                }
                // Same rows, up to the order of rows with equal scores.
                let key = |v: &[(i64, f64)]| {
                    let mut v: Vec<String> = v.iter().map(|(id, s)| format!("{s}/{id}")).collect();
                    v.sort();
                    v
                };
                let last = expected.last().map(|e| e.1);
                let strict = |v: &[(i64, f64)]| -> Vec<(i64, f64)> {
                    v.iter().filter(|x| Some(x.1) != last).copied().collect()
                };
                assert_eq!(
                    key(&strict(&got)),
                    key(&strict(&expected)),
                    "{query}, n = {n}"
                );
                compared += 1;
            }
        }
        assert_eq!(compared, 16);
    }

    /// `row_index` agrees with the map of every row, on dense rowids and with gaps.
    #[tokio::test]
    async fn row_index_finds_every_cached_row() {
        let kb = SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::new(32))).unwrap();
        let mut docs = corpus();
        kb.sync(&docs).await.unwrap();
        for round in 0..2 {
            {
                let conn = kb.conn();
                let cache = kb.cache(&conn).unwrap();
                assert!(cache.index_of.len() > 100);
                for (id, &i) in &cache.index_of {
                    assert_eq!(SqliteKnowledgeBase::row_index(&cache, *id), Some(i));
                }
                let last = cache.rowids[cache.rowids.len() - 1];
                for missing in [0, -5, i64::MIN, i64::MAX, last + 1] {
                    assert_eq!(SqliteKnowledgeBase::row_index(&cache, missing), None);
                }
                if round == 1 {
                    // The deletions left gaps, and the changed documents came back at the end.
                    assert!(last > cache.rowids.len() as i64 + 10);
                }
            }
            // Delete every fifth document and change every seventh.
            docs = docs
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % 5 != 1)
                .map(|(i, mut d)| {
                    if i % 7 == 0 {
                        d.content_hash = "changed".into();
                    }
                    d
                })
                .collect();
            kb.sync(&docs).await.unwrap();
        }
    }
}
