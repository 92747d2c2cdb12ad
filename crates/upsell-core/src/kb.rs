//! Knowledge base (RAG) types and ports: documents, chunks, metadata filters, retrieval,
//! text embedders, and the pure helpers every adapter shares (chunking, keyword extraction,
//! reciprocal rank fusion, retrieval metrics and a deterministic hashing embedder).
//!
//! The shapes follow Amazon Bedrock Knowledge Bases so that the AWS adapter maps one to one:
//! metadata comes from `*.metadata.json` sidecars (`{"metadataAttributes": {...}}`), filters
//! mirror Bedrock's `RetrievalFilter`, and `k` is `numberOfResults`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::ports::PortError;

/// A metadata value, as a Bedrock sidecar allows: string, number, boolean or list of strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum MetaValue {
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<String>),
}

impl MetaValue {
    /// Parses a command-line value: `true`/`false`, a number, or text.
    pub fn parse_cli(raw: &str) -> MetaValue {
        match raw {
            "true" => MetaValue::Bool(true),
            "false" => MetaValue::Bool(false),
            _ => raw
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(MetaValue::Number)
                .unwrap_or_else(|| MetaValue::Text(raw.to_owned())),
        }
    }

    /// The text of a `Text` value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            MetaValue::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// Metadata attributes of a document (and of each of its chunks).
pub type Metadata = BTreeMap<String, MetaValue>;

/// The sidecar file `<document>.metadata.json` of a Bedrock Knowledge Base S3 data source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MetadataSidecar {
    #[serde(rename = "metadataAttributes")]
    pub metadata_attributes: Metadata,
}

/// A metadata filter; the same tree as Bedrock's `RetrievalFilter`.
///
/// On a list-valued attribute `Equals` means "the list contains the value", which is what a
/// user typing `--filter service=lawn_care` expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Filter {
    Equals { key: String, value: MetaValue },
    NotEquals { key: String, value: MetaValue },
    In { key: String, values: Vec<MetaValue> },
    ListContains { key: String, value: String },
    GreaterThanOrEquals { key: String, value: f64 },
    LessThanOrEquals { key: String, value: f64 },
    AndAll(Vec<Filter>),
    OrAll(Vec<Filter>),
}

impl Filter {
    /// Parses `key=value` pairs (as given to `--filter`) into one filter that requires all of them.
    pub fn from_pairs<S: AsRef<str>>(pairs: &[S]) -> Result<Option<Filter>, PortError> {
        let mut all = Vec::new();
        for pair in pairs {
            let pair = pair.as_ref();
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                PortError::Invalid(format!("filter `{pair}` is not of the form key=value"))
            })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(PortError::Invalid(format!(
                    "filter `{pair}` has an empty key"
                )));
            }
            all.push(Filter::Equals {
                key: key.to_owned(),
                value: MetaValue::parse_cli(value.trim()),
            });
        }
        Ok(match all.len() {
            0 => None,
            1 => all.pop(),
            _ => Some(Filter::AndAll(all)),
        })
    }

    /// Whether a chunk with this metadata passes the filter.
    pub fn matches(&self, meta: &Metadata) -> bool {
        match self {
            Filter::Equals { key, value } => meta.get(key).is_some_and(|v| value_equals(v, value)),
            Filter::NotEquals { key, value } => {
                !meta.get(key).is_some_and(|v| value_equals(v, value))
            }
            Filter::In { key, values } => meta
                .get(key)
                .is_some_and(|v| values.iter().any(|want| value_equals(v, want))),
            Filter::ListContains { key, value } => match meta.get(key) {
                Some(MetaValue::List(items)) => items.iter().any(|i| i == value),
                Some(MetaValue::Text(s)) => s == value,
                _ => false,
            },
            Filter::GreaterThanOrEquals { key, value } => {
                matches!(meta.get(key), Some(MetaValue::Number(n)) if n >= value)
            }
            Filter::LessThanOrEquals { key, value } => {
                matches!(meta.get(key), Some(MetaValue::Number(n)) if n <= value)
            }
            Filter::AndAll(items) => items.iter().all(|f| f.matches(meta)),
            Filter::OrAll(items) => items.iter().any(|f| f.matches(meta)),
        }
    }
}

fn value_equals(have: &MetaValue, want: &MetaValue) -> bool {
    match (have, want) {
        (MetaValue::List(items), MetaValue::Text(w)) => items.iter().any(|i| i == w),
        (MetaValue::Number(a), MetaValue::Number(b)) => (a - b).abs() < 1e-9,
        // A number typed on the command line may be stored as text, and the reverse.
        (MetaValue::Text(a), MetaValue::Number(b)) | (MetaValue::Number(b), MetaValue::Text(a)) => {
            a.parse::<f64>().is_ok_and(|a| (a - b).abs() < 1e-9)
        }
        (a, b) => a == b,
    }
}

/// How to search: BM25 keywords, vectors, or both fused with reciprocal rank fusion.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    Keyword,
    Vector,
    #[default]
    Hybrid,
}

impl SearchMode {
    pub const ALL: [SearchMode; 3] = [SearchMode::Keyword, SearchMode::Vector, SearchMode::Hybrid];

    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Keyword => "keyword",
            SearchMode::Vector => "vector",
            SearchMode::Hybrid => "hybrid",
        }
    }
}

impl std::str::FromStr for SearchMode {
    type Err = PortError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keyword" => Ok(SearchMode::Keyword),
            "vector" => Ok(SearchMode::Vector),
            "hybrid" => Ok(SearchMode::Hybrid),
            other => Err(PortError::Invalid(format!(
                "unknown search mode `{other}` (expected keyword, vector or hybrid)"
            ))),
        }
    }
}

/// A retrieval request: Bedrock `Retrieve` with `numberOfResults = k` and an optional filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RetrieveRequest {
    pub query: String,
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub mode: SearchMode,
}

fn default_k() -> usize {
    5
}

impl RetrieveRequest {
    pub fn new(query: impl Into<String>, k: usize) -> Self {
        RetrieveRequest {
            query: query.into(),
            k,
            filter: None,
            mode: SearchMode::Hybrid,
        }
    }

    pub fn with_filter(mut self, filter: Option<Filter>) -> Self {
        self.filter = filter;
        self
    }

    pub fn with_mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }

    /// Largest `k` a caller may ask for (Bedrock's own limit on `numberOfResults`).
    pub const MAX_K: usize = 100;

    /// Rejects requests no backend could serve.
    pub fn validate(&self) -> Result<(), PortError> {
        if self.k == 0 || self.k > Self::MAX_K {
            return Err(PortError::Invalid(format!(
                "k must be between 1 and {}, got {}",
                Self::MAX_K,
                self.k
            )));
        }
        if self.query.len() > 20_000 {
            return Err(PortError::Invalid(
                "query text is longer than 20000 bytes".into(),
            ));
        }
        Ok(())
    }
}

/// One retrieved chunk, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RetrievedChunk {
    pub chunk_id: String,
    pub doc_id: String,
    pub text: String,
    pub metadata: Metadata,
    /// Higher is better. BM25 (negated), cosine similarity or fused RRF score depending on mode.
    pub score: f64,
    /// Where the document came from (a path locally, an `s3://` URI in AWS).
    pub source: String,
}

/// Retrieval over the knowledge base. Local: SQLite FTS5 + vectors; AWS: Bedrock `Retrieve`.
#[async_trait::async_trait]
pub trait KnowledgeBase: Send + Sync {
    /// The `k` best chunks for the query that pass the filter. An empty index gives `Ok(vec![])`.
    async fn retrieve(&self, request: &RetrieveRequest) -> Result<Vec<RetrievedChunk>, PortError>;
}

/// What an embedder is, for logs, the index header and the eval table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedderInfo {
    /// Short provider name: `hashing`, `minilm`, `titan`.
    pub provider: String,
    /// Model id and version, e.g. `hashing-v1`, `sentence-transformers/all-MiniLM-L6-v2`.
    pub model: String,
    pub dimensions: usize,
}

/// Turns texts into unit-length vectors of `info().dimensions` floats.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync {
    fn info(&self) -> EmbedderInfo;
    /// One vector per input text, in order; each L2-normalised.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError>;
}

// ---------------------------------------------------------------------------------------------
// Documents and chunking.

/// Chunking settings, read from `knowledge-base/ingestion.json` (Bedrock's fixed-size strategy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkingSettings {
    /// Maximum words per chunk (Bedrock counts tokens; words are our local approximation).
    pub max_tokens: usize,
    /// Percentage of a chunk repeated at the start of the next one.
    pub overlap_percentage: usize,
}

impl Default for ChunkingSettings {
    fn default() -> Self {
        ChunkingSettings {
            max_tokens: 300,
            overlap_percentage: 20,
        }
    }
}

/// A source document with its sidecar metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Stable id: the path relative to the knowledge-base folder, without extension.
    pub doc_id: String,
    pub source: String,
    pub text: String,
    pub metadata: Metadata,
}

/// A chunk of a document, the unit of retrieval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub chunk_id: String,
    pub doc_id: String,
    pub source: String,
    pub text: String,
    pub metadata: Metadata,
}

/// Splits a document into overlapping chunks of at most `max_tokens` words, breaking at
/// paragraph boundaries where possible. Chunk ids are `<doc_id>#<n>`.
pub fn chunk_document(doc: &Document, settings: ChunkingSettings) -> Vec<Chunk> {
    let max = settings.max_tokens.max(16);
    let overlap = (max * settings.overlap_percentage.min(50)) / 100;
    let words: Vec<&str> = doc.text.split_whitespace().collect();
    let mut chunks = Vec::new();
    if words.is_empty() {
        return chunks;
    }
    let mut start = 0;
    while start < words.len() {
        let end = (start + max).min(words.len());
        let text = words[start..end].join(" ");
        chunks.push(Chunk {
            chunk_id: format!("{}#{}", doc.doc_id, chunks.len()),
            doc_id: doc.doc_id.clone(),
            source: doc.source.clone(),
            text,
            metadata: doc.metadata.clone(),
        });
        if end == words.len() {
            break;
        }
        start = end - overlap;
    }
    chunks
}

// ---------------------------------------------------------------------------------------------
// Text helpers shared by keyword search and the hashing embedder.

/// Common English words that carry no meaning for retrieval.
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have",
    "he", "her", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me",
    "more", "my", "no", "not", "of", "on", "or", "our", "out", "she", "so", "some", "than", "that",
    "the", "their", "them", "then", "there", "these", "they", "this", "to", "up", "us", "was",
    "we", "were", "what", "when", "which", "who", "will", "with", "would", "you", "your",
];

/// Lower-cased alphanumeric words of `text` (Unicode-aware), stopwords removed.
pub fn content_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// An FTS5 MATCH expression for arbitrary user text: every word becomes a double-quoted string
/// (quotes doubled), joined with OR, so operators (`NEAR`, `*`, `AND`, parentheses, `:`, `^`)
/// in the text are only ever searched as words. `None` when the text has no searchable word.
pub fn fts5_query(text: &str) -> Option<String> {
    let mut seen = HashSet::new();
    let terms: Vec<String> = content_words(text)
        .into_iter()
        .filter(|w| seen.insert(w.clone()))
        .take(64)
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

/// A light suffix stripper so that "mowing", "mowed" and "mows" meet in the hashing embedder.
fn stem(word: &str) -> &str {
    for suffix in ["ings", "ing", "ed", "es", "s"] {
        if word.len() > suffix.len() + 3
            && let Some(stripped) = word.strip_suffix(suffix)
        {
            return stripped;
        }
    }
    word
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Scales a vector to unit length in place (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Dot product; on unit vectors this is the cosine similarity.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise the loop.
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks..a.len().min(b.len()) {
        sum += a[i] * b[i];
    }
    sum
}

/// Deterministic feature-hashing embedder: stemmed words and word bigrams hashed with a sign
/// into `dimensions` buckets, sub-linear term weights, L2-normalised. No model, no I/O; the same
/// text gives the same vector on every machine, which is what tests and CI need.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimensions: usize,
}

impl HashingEmbedder {
    pub const MODEL: &'static str = "hashing-v1";

    pub fn new(dimensions: usize) -> Self {
        HashingEmbedder {
            dimensions: dimensions.max(8),
        }
    }

    /// Embeds one text synchronously.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let words: Vec<String> = content_words(text)
            .iter()
            .map(|w| stem(w).to_owned())
            .collect();
        let mut counts: HashMap<String, f32> = HashMap::new();
        for w in &words {
            *counts.entry(w.clone()).or_default() += 1.0;
        }
        for pair in words.windows(2) {
            *counts
                .entry(format!("{} {}", pair[0], pair[1]))
                .or_default() += 0.5;
        }
        let mut v = vec![0.0f32; self.dimensions];
        for (term, count) in counts {
            let h = fnv1a(term.as_bytes(), 0);
            let idx = (h % self.dimensions as u64) as usize;
            let sign = if (h >> 63) == 1 { -1.0 } else { 1.0 };
            v[idx] += sign * (1.0 + count.ln());
        }
        l2_normalize(&mut v);
        v
    }
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        HashingEmbedder::new(384)
    }
}

#[async_trait::async_trait]
impl Embedder for HashingEmbedder {
    fn info(&self) -> EmbedderInfo {
        EmbedderInfo {
            provider: "hashing".into(),
            model: Self::MODEL.into(),
            dimensions: self.dimensions,
        }
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Fusion and evaluation.

/// The usual RRF constant (Cormack et al., 2009).
pub const RRF_K: f64 = 60.0;

/// Reciprocal rank fusion: each id scores `sum(1 / (RRF_K + rank))` over the lists it appears
/// in (rank starting at 1). Returns ids best first; ties keep first-seen order.
pub fn reciprocal_rank_fusion(lists: &[Vec<String>]) -> Vec<(String, f64)> {
    let mut scores: Vec<(String, f64)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f64 + 1.0);
            match index.get(id) {
                Some(&i) => scores[i].1 += add,
                None => {
                    index.insert(id.clone(), scores.len());
                    scores.push((id.clone(), add));
                }
            }
        }
    }
    // Stable sort keeps first-seen order among equal scores.
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    scores
}

/// One labelled retrieval query from `knowledge-base/eval/queries.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalQuery {
    pub id: String,
    pub query: String,
    /// Document ids that answer the query.
    pub relevant: Vec<String>,
    #[serde(default)]
    pub filter: Option<BTreeMap<String, String>>,
}

/// Retrieval quality over a set of queries, as printed by `upsell kb eval`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    #[serde(rename = "recall@1")]
    pub recall_at_1: f64,
    #[serde(rename = "recall@5")]
    pub recall_at_5: f64,
    #[serde(rename = "recall@10")]
    pub recall_at_10: f64,
    pub mrr: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg_at_10: f64,
    pub queries: usize,
}

/// Accumulates per-query results into [`RetrievalMetrics`].
#[derive(Debug, Default)]
pub struct MetricsAccumulator {
    sum: RetrievalMetrics,
}

impl MetricsAccumulator {
    /// Adds one query: `ranked` are document ids best first (duplicates are ignored after their
    /// first position), `relevant` the labelled answers.
    pub fn add(&mut self, ranked: &[String], relevant: &[String]) {
        let relevant: HashSet<&str> = relevant.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        let docs: Vec<&str> = ranked
            .iter()
            .map(String::as_str)
            .filter(|d| seen.insert(*d))
            .collect();
        let n_rel = relevant.len().max(1) as f64;
        let recall = |k: usize| {
            docs.iter()
                .take(k)
                .filter(|d| relevant.contains(*d))
                .count() as f64
                / n_rel
        };
        let first = docs.iter().position(|d| relevant.contains(*d));
        let dcg: f64 = docs
            .iter()
            .take(10)
            .enumerate()
            .filter(|(_, d)| relevant.contains(*d))
            .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..relevant.len().min(10))
            .map(|i| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        self.sum.recall_at_1 += recall(1);
        self.sum.recall_at_5 += recall(5);
        self.sum.recall_at_10 += recall(10);
        self.sum.mrr += first.map_or(0.0, |p| 1.0 / (p as f64 + 1.0));
        self.sum.ndcg_at_10 += if ideal > 0.0 { dcg / ideal } else { 0.0 };
        self.sum.queries += 1;
    }

    /// Means over the queries added so far.
    pub fn finish(&self) -> RetrievalMetrics {
        let n = self.sum.queries.max(1) as f64;
        RetrievalMetrics {
            recall_at_1: self.sum.recall_at_1 / n,
            recall_at_5: self.sum.recall_at_5 / n,
            recall_at_10: self.sum.recall_at_10 / n,
            mrr: self.sum.mrr / n,
            ndcg_at_10: self.sum.ndcg_at_10 / n,
            queries: self.sum.queries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, MetaValue)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

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

    #[test]
    fn filters_follow_bedrock_semantics() {
        let m = meta(&[
            ("region", MetaValue::Text("southwest".into())),
            (
                "services",
                MetaValue::List(vec!["pool_cleaning".into(), "lawn_care".into()]),
            ),
            ("price_cents", MetaValue::Number(12900.0)),
            ("has_pool", MetaValue::Bool(true)),
        ]);
        let f = Filter::from_pairs(&["region=southwest", "services=lawn_care", "has_pool=true"])
            .unwrap()
            .unwrap();
        assert!(f.matches(&m));
        assert!(
            !Filter::from_pairs(&["region=northeast"])
                .unwrap()
                .unwrap()
                .matches(&m)
        );
        assert!(
            Filter::from_pairs(&["price_cents=12900"])
                .unwrap()
                .unwrap()
                .matches(&m)
        );
        assert!(
            !Filter::from_pairs(&["missing=1"])
                .unwrap()
                .unwrap()
                .matches(&m)
        );
        assert!(
            Filter::NotEquals {
                key: "missing".into(),
                value: MetaValue::Bool(true)
            }
            .matches(&m)
        );
        assert!(
            Filter::GreaterThanOrEquals {
                key: "price_cents".into(),
                value: 100.0
            }
            .matches(&m)
        );
        assert!(
            !Filter::LessThanOrEquals {
                key: "price_cents".into(),
                value: 100.0
            }
            .matches(&m)
        );
        assert!(
            Filter::OrAll(vec![
                Filter::ListContains {
                    key: "services".into(),
                    value: "gutter_cleaning".into()
                },
                Filter::In {
                    key: "region".into(),
                    values: vec![MetaValue::Text("southwest".into())]
                },
            ])
            .matches(&m)
        );
        let err = Filter::from_pairs(&["novalue"]).unwrap_err();
        assert!(err.to_string().contains("novalue"), "{err}");
        assert!(Filter::from_pairs(&["=x"]).is_err());
        assert_eq!(Filter::from_pairs::<&str>(&[]).unwrap(), None);
    }

    #[test]
    fn sidecar_parses_bedrock_shape() {
        let s: MetadataSidecar = serde_json::from_str(
            r#"{"metadataAttributes":{"doc_type":"past_message","year":2024,"ok":true,"tags":["a","b"]}}"#,
        )
        .unwrap();
        assert_eq!(s.metadata_attributes["year"], MetaValue::Number(2024.0));
        assert_eq!(s.metadata_attributes["ok"], MetaValue::Bool(true));
        assert_eq!(
            s.metadata_attributes["tags"],
            MetaValue::List(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            s.metadata_attributes["doc_type"].as_text(),
            Some("past_message")
        );
    }

    #[test]
    fn rrf_rewards_agreement() {
        let a = vec!["x".to_owned(), "y".to_owned(), "z".to_owned()];
        let b = vec!["y".to_owned(), "w".to_owned()];
        let fused = reciprocal_rank_fusion(&[a, b]);
        let ids: Vec<&str> = fused.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["y", "x", "w", "z"]);
        assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert!(reciprocal_rank_fusion(&[]).is_empty());
    }

    #[test]
    fn hashing_embedder_is_deterministic_and_meaningful() {
        let e = HashingEmbedder::new(384);
        let a = e.embed_one("weekly pool cleaning for a family with a pool");
        assert_eq!(
            a,
            e.embed_one("weekly pool cleaning for a family with a pool")
        );
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        let near = e.embed_one("pool cleaning every week");
        let far = e.embed_one("gutter repair after autumn storms");
        assert!(dot(&a, &near) > dot(&a, &far) + 0.2);
        assert!(e.embed_one("").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn chunking_overlaps_and_covers_everything() {
        let text: Vec<String> = (0..250).map(|i| format!("w{i}")).collect();
        let doc = Document {
            doc_id: "d".into(),
            source: "d.txt".into(),
            text: text.join(" "),
            metadata: Metadata::new(),
        };
        let chunks = chunk_document(
            &doc,
            ChunkingSettings {
                max_tokens: 100,
                overlap_percentage: 20,
            },
        );
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].chunk_id, "d#1");
        assert!(chunks[1].text.starts_with("w80 "));
        assert!(chunks[2].text.ends_with("w249"));
        let empty = Document {
            text: "  ".into(),
            ..doc
        };
        assert!(chunk_document(&empty, ChunkingSettings::default()).is_empty());
    }

    #[test]
    fn metrics_match_hand_computation() {
        let mut acc = MetricsAccumulator::default();
        let ranked: Vec<String> = ["a", "b", "a", "c"].iter().map(|s| (*s).into()).collect();
        acc.add(&ranked, &["b".into(), "c".into()]);
        acc.add(&ranked, &["z".into()]);
        let m = acc.finish();
        assert_eq!(m.queries, 2);
        assert!((m.recall_at_1 - 0.0).abs() < 1e-12);
        assert!((m.recall_at_5 - 0.5).abs() < 1e-12);
        assert!((m.mrr - 0.25).abs() < 1e-12);
        let ideal = 1.0 + 1.0 / 3f64.log2();
        let dcg = 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((m.ndcg_at_10 - dcg / ideal / 2.0).abs() < 1e-12);
        let json = serde_json::to_value(m).unwrap();
        for key in [
            "recall@1",
            "recall@5",
            "recall@10",
            "mrr",
            "ndcg@10",
            "queries",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }
}
