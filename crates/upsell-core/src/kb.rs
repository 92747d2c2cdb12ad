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

/// Fixed-size chunking settings (Bedrock's `fixedSizeChunkingConfiguration`).
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

/// Hierarchical chunking settings (Bedrock's `hierarchicalChunkingConfiguration`): the document
/// is cut into parent windows of `parent_max_tokens` words, each parent into child windows of
/// `child_max_tokens` words, and `overlap_tokens` words are repeated between neighbours of the
/// same layer. Children are embedded and searched; a hit returns its parent's text, and results
/// are deduplicated by parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HierarchicalSettings {
    pub parent_max_tokens: usize,
    pub child_max_tokens: usize,
    pub overlap_tokens: usize,
}

impl HierarchicalSettings {
    /// Bedrock's console defaults: parents of 1500 tokens, children of 300, 60 overlapping.
    pub const BEDROCK_DEFAULT: HierarchicalSettings = HierarchicalSettings {
        parent_max_tokens: 1500,
        child_max_tokens: 300,
        overlap_tokens: 60,
    };

    /// Rejects settings Bedrock would reject or that could not make progress.
    pub fn validate(&self) -> Result<(), PortError> {
        let HierarchicalSettings {
            parent_max_tokens: parent,
            child_max_tokens: child,
            overlap_tokens: overlap,
        } = *self;
        if child == 0 || parent == 0 || parent > 8192 {
            return Err(PortError::Invalid(format!(
                "hierarchical chunking: maxTokens must be between 1 and 8192 (parent {parent}, child {child})"
            )));
        }
        if child > parent {
            return Err(PortError::Invalid(format!(
                "hierarchical chunking: the child level ({child} tokens) is larger than the parent level ({parent})"
            )));
        }
        if overlap == 0 || overlap >= child {
            return Err(PortError::Invalid(format!(
                "hierarchical chunking: overlapTokens must be at least 1 and below the child maxTokens ({child}), got {overlap}"
            )));
        }
        Ok(())
    }
}

/// How documents become chunks: the chunking strategies of a Bedrock data source that we run
/// locally, read from `knowledge-base/ingestion.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkingStrategy {
    /// One chunk per document (Bedrock `NONE`).
    None,
    /// Overlapping windows of words (Bedrock `FIXED_SIZE`).
    FixedSize(ChunkingSettings),
    /// Parents and children (Bedrock `HIERARCHICAL`).
    Hierarchical(HierarchicalSettings),
    /// Sentences grouped where their embeddings change topic (Bedrock `SEMANTIC`); needs the
    /// embedder, see [`chunk_semantic`].
    Semantic(SemanticSettings),
}

impl Default for ChunkingStrategy {
    fn default() -> Self {
        ChunkingStrategy::FixedSize(ChunkingSettings::default())
    }
}

impl ChunkingStrategy {
    /// A short stable description, part of each document's content hash: changing the strategy
    /// re-chunks and re-embeds every document on the next ingest.
    pub fn fingerprint(&self) -> String {
        match self {
            // The form used before other strategies existed, so that indexes stay valid.
            ChunkingStrategy::None => format!("{}:0", usize::MAX / 2),
            ChunkingStrategy::FixedSize(s) => format!("{}:{}", s.max_tokens, s.overlap_percentage),
            ChunkingStrategy::Hierarchical(h) => format!(
                "hierarchical:{}/{}:{}",
                h.parent_max_tokens, h.child_max_tokens, h.overlap_tokens
            ),
            ChunkingStrategy::Semantic(s) => format!(
                "semantic:{}:{}:{}",
                s.max_tokens, s.buffer_size, s.breakpoint_percentile_threshold
            ),
        }
    }

    /// The semantic settings if this strategy needs the embedder to chunk.
    pub fn semantic(&self) -> Option<SemanticSettings> {
        match self {
            ChunkingStrategy::Semantic(s) => Some(*s),
            _ => None,
        }
    }

    /// Splits a document; see [`chunk_document`] and [`chunk_hierarchical`]. `Semantic` needs
    /// the embedder ([`chunk_semantic`]); without it this gives what semantic chunking gives
    /// when every pair of sentences is equally similar: sentences packed up to `maxTokens`,
    /// markdown sections kept apart.
    pub fn chunk(&self, doc: &Document) -> Vec<Chunk> {
        match self {
            ChunkingStrategy::None => chunk_document(
                doc,
                ChunkingSettings {
                    max_tokens: usize::MAX / 2,
                    overlap_percentage: 0,
                },
            ),
            ChunkingStrategy::FixedSize(s) => chunk_document(doc, *s),
            ChunkingStrategy::Hierarchical(h) => chunk_hierarchical(doc, *h),
            ChunkingStrategy::Semantic(s) => {
                chunk_semantic(doc, *s, |texts| Ok(vec![vec![1.0]; texts.len()]))
                    .unwrap_or_default()
            }
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
    /// The text that is embedded and keyword-indexed.
    pub text: String,
    pub metadata: Metadata,
    /// With hierarchical chunking, the parent this child belongs to: retrieval returns the
    /// parent's id and text, once per parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentChunk>,
}

/// The parent of a hierarchical child chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentChunk {
    pub chunk_id: String,
    pub text: String,
}

/// `[start, end)` word ranges of windows of at most `max` words over `len` words, each starting
/// `overlap` words before the previous one ended. `overlap` must be below `max`.
fn windows(len: usize, max: usize, overlap: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < len {
        let end = (start + max).min(len);
        out.push((start, end));
        if end == len {
            break;
        }
        start = end - overlap;
    }
    out
}

/// Splits a document into overlapping windows of at most `max_tokens` words (at least 16),
/// repeating `overlap_percentage` (at most 50) of a window at the start of the next.
/// Chunk ids are `<doc_id>#<n>`.
pub fn chunk_document(doc: &Document, settings: ChunkingSettings) -> Vec<Chunk> {
    let max = settings.max_tokens.max(16);
    let overlap = (max * settings.overlap_percentage.min(50)) / 100;
    let words: Vec<&str> = doc.text.split_whitespace().collect();
    windows(words.len(), max, overlap)
        .into_iter()
        .enumerate()
        .map(|(n, (start, end))| Chunk {
            chunk_id: format!("{}#{n}", doc.doc_id),
            doc_id: doc.doc_id.clone(),
            source: doc.source.clone(),
            text: words[start..end].join(" "),
            metadata: doc.metadata.clone(),
            parent: None,
        })
        .collect()
}

/// Hierarchical chunking: parent windows of `parent_max_tokens` words, each cut into child
/// windows of `child_max_tokens` words that never cross the parent's boundaries; both layers
/// repeat `overlap_tokens` words between neighbours. Returns the children, each naming its
/// parent. Parent ids are `<doc_id>#<p>` (the form of fixed-size chunk ids, since a parent is what
/// a search returns), child ids `<doc_id>#<p>.<c>`. Settings are clamped to something that makes
/// progress; [`HierarchicalSettings::validate`] rejects what Bedrock would.
pub fn chunk_hierarchical(doc: &Document, settings: HierarchicalSettings) -> Vec<Chunk> {
    let parent_max = settings.parent_max_tokens.max(1);
    let child_max = settings.child_max_tokens.clamp(1, parent_max);
    let words: Vec<&str> = doc.text.split_whitespace().collect();
    let mut out = Vec::new();
    let parent_overlap = settings.overlap_tokens.min(parent_max - 1);
    for (p, (start, end)) in windows(words.len(), parent_max, parent_overlap)
        .into_iter()
        .enumerate()
    {
        let parent = ParentChunk {
            chunk_id: format!("{}#{p}", doc.doc_id),
            text: words[start..end].join(" "),
        };
        let child_overlap = settings.overlap_tokens.min(child_max - 1);
        for (c, (cs, ce)) in windows(end - start, child_max, child_overlap)
            .into_iter()
            .enumerate()
        {
            out.push(Chunk {
                chunk_id: format!("{}#{p}.{c}", doc.doc_id),
                doc_id: doc.doc_id.clone(),
                source: doc.source.clone(),
                text: words[start + cs..start + ce].join(" "),
                metadata: doc.metadata.clone(),
                parent: Some(parent.clone()),
            });
        }
    }
    out
}

/// Semantic chunking settings (Bedrock's `semanticChunkingConfiguration`): the document is split
/// into sentences, each sentence is embedded together with `buffer_size` neighbours on each side,
/// and a chunk ends where the cosine distance between consecutive sentence embeddings is above
/// the `breakpoint_percentile_threshold` percentile of the document's distances; no chunk exceeds
/// `max_tokens` words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SemanticSettings {
    pub max_tokens: usize,
    pub buffer_size: usize,
    pub breakpoint_percentile_threshold: usize,
}

impl SemanticSettings {
    /// Bedrock's console defaults: 300 tokens, buffer 0, breakpoint at the 95th percentile.
    pub const BEDROCK_DEFAULT: SemanticSettings = SemanticSettings {
        max_tokens: 300,
        buffer_size: 0,
        breakpoint_percentile_threshold: 95,
    };

    /// Rejects settings outside Bedrock's ranges (`breakpointPercentileThreshold` 50..=99,
    /// `bufferSize` 0..=1, `maxTokens` 1..=8192).
    pub fn validate(&self) -> Result<(), PortError> {
        let SemanticSettings {
            max_tokens,
            buffer_size,
            breakpoint_percentile_threshold: p,
        } = *self;
        if max_tokens == 0 || max_tokens > 8192 {
            return Err(PortError::Invalid(format!(
                "semantic chunking: maxTokens must be between 1 and 8192, got {max_tokens}"
            )));
        }
        if buffer_size > 1 {
            return Err(PortError::Invalid(format!(
                "semantic chunking: bufferSize must be 0 or 1, got {buffer_size}"
            )));
        }
        if !(50..=99).contains(&p) {
            return Err(PortError::Invalid(format!(
                "semantic chunking: breakpointPercentileThreshold must be between 50 and 99, got {p}"
            )));
        }
        Ok(())
    }
}

/// A sentence of a document, as semantic chunking sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// The sentence's words joined by single spaces; a markdown heading is kept with the first
    /// sentence under it.
    pub text: String,
    /// Word count (the local approximation of tokens).
    pub words: usize,
    /// The first sentence of a markdown section (`#` heading): always starts a chunk.
    pub starts_section: bool,
}

/// Splits text into sentences for semantic chunking. A sentence ends at `.`, `!` or `?` (and any
/// closing quotes or brackets) followed by whitespace, or at the end of a line. A markdown
/// heading line (or several in a row) is not a sentence of its own: it is prefixed to the next
/// sentence, which starts a section. A sentence longer than `max_words` is cut into windows of `max_words` words.
pub fn split_sentences(text: &str, max_words: usize) -> Vec<Sentence> {
    let max_words = max_words.max(1);
    let mut out: Vec<Sentence> = Vec::new();
    let mut heading: Option<String> = None;
    let push = |words: &[&str], out: &mut Vec<Sentence>, heading: &mut Option<String>| {
        let mut all: Vec<&str> = Vec::new();
        let head = heading.take();
        if let Some(h) = &head {
            all.extend(h.split_whitespace());
        }
        all.extend_from_slice(words);
        for (n, piece) in all.chunks(max_words).enumerate() {
            out.push(Sentence {
                text: piece.join(" "),
                words: piece.len(),
                starts_section: n == 0 && head.is_some(),
            });
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            // Headings in a row (a title, then a section) stay together with the text below.
            heading = Some(match heading.take() {
                Some(h) => format!("{h} {line}"),
                None => line.to_owned(),
            });
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut start = 0;
        for (i, w) in words.iter().enumerate() {
            let end = w.trim_end_matches(['"', '\'', ')', ']', '\u{201d}', '\u{2019}']);
            if end.ends_with(['.', '!', '?']) || i + 1 == words.len() {
                push(&words[start..=i], &mut out, &mut heading);
                start = i + 1;
            }
        }
    }
    if heading.is_some() {
        push(&[], &mut out, &mut heading);
    }
    out
}

/// The texts semantic chunking embeds: one per sentence, the sentence with `buffer_size`
/// neighbours on each side (fewer at the ends).
pub fn semantic_embedding_inputs(sentences: &[Sentence], buffer_size: usize) -> Vec<String> {
    (0..sentences.len())
        .map(|i| {
            let lo = i.saturating_sub(buffer_size);
            let hi = (i + buffer_size + 1).min(sentences.len());
            sentences[lo..hi]
                .iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The `p`-th percentile (0..=100) of `values` with linear interpolation between closest ranks
/// (NumPy's default). `None` for no values.
pub fn percentile(values: &[f32], p: f64) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = (rank - lo as f64) as f32;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Indexes `i` such that a chunk starts at sentence `i` (never 0): where the cosine distance
/// between the embeddings of sentences `i - 1` and `i` is above the percentile of the distances
/// within sections, and where a markdown section starts. `embeddings` are unit vectors, one per
/// sentence.
pub fn semantic_breakpoints(
    sentences: &[Sentence],
    embeddings: &[Vec<f32>],
    percentile_threshold: usize,
) -> Vec<usize> {
    let pairs: Vec<(usize, f32)> = (1..sentences.len().min(embeddings.len()))
        .filter(|&i| !sentences[i].starts_section)
        .map(|i| (i, 1.0 - dot(&embeddings[i - 1], &embeddings[i])))
        .collect();
    let distances: Vec<f32> = pairs.iter().map(|&(_, d)| d).collect();
    let threshold = percentile(&distances, percentile_threshold as f64);
    let mut out: Vec<usize> = (1..sentences.len())
        .filter(|&i| sentences[i].starts_section)
        .chain(
            pairs
                .iter()
                .filter(|&&(_, d)| threshold.is_some_and(|t| d > t))
                .map(|&(i, _)| i),
        )
        .collect();
    out.sort_unstable();
    out
}

/// Semantic chunking of one document given its sentences and their embeddings (from
/// [`semantic_embedding_inputs`]): sentences are grouped between the breakpoints of
/// [`semantic_breakpoints`], and a group that would exceed `max_tokens` words is closed before
/// the sentence that overflows it. Chunk ids are `<doc_id>#<n>`. The settings are validated, and
/// the embeddings must be one per sentence.
pub fn chunk_semantic_with(
    doc: &Document,
    settings: SemanticSettings,
    sentences: &[Sentence],
    embeddings: &[Vec<f32>],
) -> Result<Vec<Chunk>, PortError> {
    settings.validate()?;
    if embeddings.len() != sentences.len() {
        return Err(PortError::Invalid(format!(
            "semantic chunking of {}: {} embeddings for {} sentences",
            doc.doc_id,
            embeddings.len(),
            sentences.len()
        )));
    }
    let breaks: HashSet<usize> = semantic_breakpoints(
        sentences,
        embeddings,
        settings.breakpoint_percentile_threshold,
    )
    .into_iter()
    .collect();
    let mut groups: Vec<Vec<&str>> = Vec::new();
    let mut words = 0;
    for (i, s) in sentences.iter().enumerate() {
        if groups.is_empty() || breaks.contains(&i) || words + s.words > settings.max_tokens {
            groups.push(Vec::new());
            words = 0;
        }
        if let Some(g) = groups.last_mut() {
            g.push(&s.text);
        }
        words += s.words;
    }
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(n, g)| Chunk {
            chunk_id: format!("{}#{n}", doc.doc_id),
            doc_id: doc.doc_id.clone(),
            source: doc.source.clone(),
            text: g.join(" "),
            metadata: doc.metadata.clone(),
            parent: None,
        })
        .collect())
}

/// Semantic chunking (Bedrock `SEMANTIC`) of one document, with `embed` turning texts into unit
/// vectors (the knowledge base's embedder). Empty text gives no chunks and no call to `embed`.
pub fn chunk_semantic(
    doc: &Document,
    settings: SemanticSettings,
    embed: impl FnOnce(&[String]) -> Result<Vec<Vec<f32>>, PortError>,
) -> Result<Vec<Chunk>, PortError> {
    settings.validate()?;
    let sentences = split_sentences(&doc.text, settings.max_tokens);
    if sentences.is_empty() {
        return Ok(Vec::new());
    }
    let embeddings = embed(&semantic_embedding_inputs(&sentences, settings.buffer_size))?;
    chunk_semantic_with(doc, settings, &sentences, &embeddings)
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
            let h = crate::hash::fnv1a(term.as_bytes());
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

/// Reciprocal rank fusion with equal weights: each id scores `sum(1 / (RRF_K + rank))` over
/// the lists it appears in (rank starting at 1). Returns ids best first; ties keep first-seen
/// order.
pub fn reciprocal_rank_fusion(lists: &[Vec<String>]) -> Vec<(String, f64)> {
    let weighted: Vec<(f64, &[String])> = lists.iter().map(|l| (1.0, l.as_slice())).collect();
    weighted_reciprocal_rank_fusion(&weighted)
}

/// Weighted reciprocal rank fusion: each id scores `sum(weight / (RRF_K + rank))` over the
/// lists it appears in (rank starting at 1). Returns ids best first; ties keep first-seen order.
/// A list of weight 0 contributes nothing but the order in which ids were first seen.
pub fn weighted_reciprocal_rank_fusion<T: Clone + Eq + std::hash::Hash>(
    lists: &[(f64, &[T])],
) -> Vec<(T, f64)> {
    let mut scores: Vec<(T, f64)> = Vec::new();
    let mut index: HashMap<T, usize> = HashMap::new();
    for (weight, list) in lists {
        for (rank, id) in list.iter().enumerate() {
            let add = weight / (RRF_K + rank as f64 + 1.0);
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

/// Keeps the first (best) entry of each group in a ranked list, in order: the aggregation of
/// child-chunk hits into their parents (max score per parent) that hierarchical chunking needs.
pub fn best_per_group<T: Clone, G: Eq + std::hash::Hash>(
    ranked: &[(T, f64)],
    group: impl Fn(&T) -> G,
) -> Vec<(T, f64)> {
    let mut seen = HashSet::new();
    ranked
        .iter()
        .filter(|(item, _)| seen.insert(group(item)))
        .cloned()
        .collect()
}

/// Weights of the keyword (BM25) and vector lists in hybrid search's reciprocal rank fusion.
///
/// The default depends on the embedder: a sentence model's vectors rank better than BM25 on
/// paraphrased queries, so its list weighs more; the hashing embedder's vectors are bags of
/// words, weaker than BM25, so its list weighs less. The numbers were chosen on the odd-numbered
/// eval queries (docs/knowledge-base.md has the measurements).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FusionWeights {
    pub keyword: f64,
    pub vector: f64,
}

impl FusionWeights {
    /// Equal weights: plain reciprocal rank fusion.
    pub const EQUAL: FusionWeights = FusionWeights {
        keyword: 1.0,
        vector: 1.0,
    };

    /// The vector weight used for semantic embedders (`minilm`, `titan`, and any provider
    /// not known to be lexical), with the keyword weight 1.
    pub const SEMANTIC_VECTOR_WEIGHT: f64 = 6.0;

    /// The vector weight used for the `hashing` embedder, with the keyword weight 1.
    pub const HASHING_VECTOR_WEIGHT: f64 = 0.5;

    /// The default for an embedding provider (`EmbedderInfo::provider`).
    pub fn for_provider(provider: &str) -> FusionWeights {
        match provider {
            "hashing" => FusionWeights {
                keyword: 1.0,
                vector: Self::HASHING_VECTOR_WEIGHT,
            },
            _ => FusionWeights {
                keyword: 1.0,
                vector: Self::SEMANTIC_VECTOR_WEIGHT,
            },
        }
    }

    /// Rejects weights that are negative, not finite, or both zero.
    pub fn validate(&self) -> Result<(), PortError> {
        let ok = |w: f64| w.is_finite() && w >= 0.0;
        if !ok(self.keyword) || !ok(self.vector) || self.keyword + self.vector == 0.0 {
            return Err(PortError::Invalid(format!(
                "fusion weights must be finite, non-negative and not both zero (keyword {}, vector {})",
                self.keyword, self.vector
            )));
        }
        Ok(())
    }
}

/// Second-stage re-ranking of the first stage's best candidates (Bedrock `Retrieve`'s
/// `vectorSearchConfiguration.rerankingConfiguration`, which sends the top results to a
/// reranking model). Locally the model is the index's own embedder, used sentence by sentence:
/// each candidate's text is split into sentences ([`rerank_passages`]), and a candidate scores
/// [`sentence_rerank_score`] of the query's cosine similarities to its sentences. A whole-chunk
/// vector averages the one sentence that says what a document is about with its boilerplate;
/// a sentence vector does not. The numbers were chosen on the odd-numbered eval queries
/// (docs/knowledge-base.md has the measurements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerankSettings {
    /// How many first-stage results (parents, with hierarchical chunking) are re-ranked; the
    /// best `k` of them are returned. Bedrock's `numberOfRerankedResults` is the `k` returned.
    pub candidates: usize,
}

impl RerankSettings {
    /// Candidates re-ranked by default.
    pub const DEFAULT_CANDIDATES: usize = 20;

    /// The default for an embedding provider: on for sentence models, off for `hashing`
    /// (its bag-of-words vectors gain little from sentence scoring and the index would store a
    /// vector per sentence).
    pub fn for_provider(provider: &str) -> Option<RerankSettings> {
        match provider {
            "hashing" => None,
            _ => Some(RerankSettings {
                candidates: Self::DEFAULT_CANDIDATES,
            }),
        }
    }

    /// Most candidates: Bedrock's `Retrieve` returns at most 100 results to re-rank.
    pub const MAX_CANDIDATES: usize = 100;

    /// Rejects settings no backend could serve.
    pub fn validate(&self) -> Result<(), PortError> {
        if self.candidates == 0 || self.candidates > Self::MAX_CANDIDATES {
            return Err(PortError::Invalid(format!(
                "re-ranking candidates must be between 1 and {}, got {}",
                Self::MAX_CANDIDATES,
                self.candidates
            )));
        }
        Ok(())
    }
}

/// Weight of a candidate's second-best sentence in [`sentence_rerank_score`].
pub const RERANK_SECOND_SENTENCE_WEIGHT: f32 = 0.25;

/// Longest passage [`rerank_passages`] returns, in words (a longer sentence is cut).
pub const RERANK_MAX_PASSAGE_WORDS: usize = 64;

/// The passages a candidate is re-ranked by: its sentences. A sentence ends at a word ending
/// in `.`, `!` or `?` (closing quotes or brackets allowed); a markdown heading marker (`#`,
/// `##`, ...) starts a new passage, so a heading stays with the sentence after it. Works on
/// text whose line breaks were lost (hierarchical parents are windows of words). Passages are
/// at most [`RERANK_MAX_PASSAGE_WORDS`] words.
pub fn rerank_passages(text: &str) -> Vec<String> {
    let mut out: Vec<Vec<&str>> = vec![Vec::new()];
    for word in text.split_whitespace() {
        let current = out.last().map_or(0, Vec::len);
        let heading = word.chars().all(|c| c == '#');
        if current > 0 && (heading || current >= RERANK_MAX_PASSAGE_WORDS) {
            out.push(Vec::new());
        }
        if let Some(last) = out.last_mut() {
            last.push(word);
        }
        let end = word.trim_end_matches(['"', '\'', ')', ']', '\u{201d}', '\u{2019}']);
        if end.ends_with(['.', '!', '?']) {
            out.push(Vec::new());
        }
    }
    out.into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| p.join(" "))
        .collect()
}

/// A candidate's re-ranking score from the query's similarities to its passages: the best
/// plus [`RERANK_SECOND_SENTENCE_WEIGHT`] times the second best (a soft maximum: a document
/// that matches in two places, e.g. the customer note and the message's hook, beats one
/// that matches once). `f32::NEG_INFINITY` for no passages.
pub fn sentence_rerank_score(similarities: &[f32]) -> f32 {
    let (mut best, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &s in similarities {
        if s > best {
            second = best;
            best = s;
        } else if s > second {
            second = s;
        }
    }
    if second.is_finite() {
        best + RERANK_SECOND_SENTENCE_WEIGHT * second
    } else {
        best
    }
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
    fn rerank_passages_split_sentences_and_headings() {
        let text = "# Past upsell: Pool (west) ## Customer context Customer for 5 years. \
                    Account notes: bought a house with a pool. ## Message Hi Tom, thanks! \
                    Price $8,333.30 a visit? \"Yes.\" done";
        assert_eq!(
            rerank_passages(text),
            vec![
                "# Past upsell: Pool (west)",
                "## Customer context Customer for 5 years.",
                "Account notes: bought a house with a pool.",
                "## Message Hi Tom, thanks!",
                "Price $8,333.30 a visit?",
                "\"Yes.\"",
                "done",
            ]
        );
        assert!(rerank_passages("  ").is_empty());
        let long = vec!["word"; RERANK_MAX_PASSAGE_WORDS * 2 + 1].join(" ");
        let cut = rerank_passages(&long);
        assert_eq!(cut.len(), 3);
        assert!(
            cut.iter()
                .all(|p| p.split(' ').count() <= RERANK_MAX_PASSAGE_WORDS)
        );
    }

    #[test]
    fn sentence_rerank_score_is_best_plus_a_share_of_second() {
        assert_eq!(sentence_rerank_score(&[]), f32::NEG_INFINITY);
        assert_eq!(sentence_rerank_score(&[0.5]), 0.5);
        let s = sentence_rerank_score(&[0.2, 0.8, 0.4, 0.1]);
        assert!((s - (0.8 + RERANK_SECOND_SENTENCE_WEIGHT * 0.4)).abs() < 1e-6);
        assert!(RerankSettings { candidates: 0 }.validate().is_err());
        assert!(RerankSettings { candidates: 100 }.validate().is_ok());
        assert!(RerankSettings { candidates: 101 }.validate().is_err());
        assert!(RerankSettings::for_provider("hashing").is_none());
        assert_eq!(
            RerankSettings::for_provider("minilm"),
            Some(RerankSettings { candidates: 20 })
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

    fn numbered_doc(words: usize) -> Document {
        let text: Vec<String> = (0..words).map(|i| format!("w{i}")).collect();
        Document {
            doc_id: "d".into(),
            source: "d.md".into(),
            text: text.join(" "),
            metadata: meta(&[("doc_type", MetaValue::Text("past_message".into()))]),
        }
    }

    /// Word numbers of a chunk made by [`numbered_doc`].
    fn numbers(text: &str) -> Vec<usize> {
        text.split(' ')
            .map(|w| w.trim_start_matches('w').parse().unwrap())
            .collect()
    }

    #[test]
    fn hierarchical_chunking_boundaries_and_overlap() {
        // (words, parent, child, overlap) -> expected (parent range, child ranges) per parent.
        type Case = (
            usize,
            usize,
            usize,
            usize,
            &'static [(usize, usize, &'static [(usize, usize)])],
        );
        let cases: &[Case] = &[
            (
                250,
                100,
                40,
                10,
                &[
                    (0, 100, &[(0, 40), (30, 70), (60, 100)]),
                    (90, 190, &[(90, 130), (120, 160), (150, 190)]),
                    (180, 250, &[(180, 220), (210, 250)]),
                ],
            ),
            // A document shorter than one child: one parent, one child, both the whole text.
            (7, 100, 40, 10, &[(0, 7, &[(0, 7)])]),
            // Child as large as the parent: one child per parent.
            (30, 20, 20, 5, &[(0, 20, &[(0, 20)]), (15, 30, &[(15, 30)])]),
            // Exactly one child window.
            (40, 300, 40, 10, &[(0, 40, &[(0, 40)])]),
        ];
        for &(len, parent, child, overlap, expected) in cases {
            let settings = HierarchicalSettings {
                parent_max_tokens: parent,
                child_max_tokens: child,
                overlap_tokens: overlap,
            };
            settings.validate().unwrap();
            let doc = numbered_doc(len);
            let chunks = chunk_hierarchical(&doc, settings);
            let mut want = Vec::new();
            for (p, (ps, pe, children)) in expected.iter().enumerate() {
                for (c, (cs, ce)) in children.iter().enumerate() {
                    want.push((
                        format!("d#{p}"),
                        (*ps..*pe).collect::<Vec<_>>(),
                        format!("d#{p}.{c}"),
                        (*cs..*ce).collect::<Vec<_>>(),
                    ));
                }
            }
            let got: Vec<_> = chunks
                .iter()
                .map(|c| {
                    let parent = c.parent.as_ref().expect("every child has a parent");
                    (
                        parent.chunk_id.clone(),
                        numbers(&parent.text),
                        c.chunk_id.clone(),
                        numbers(&c.text),
                    )
                })
                .collect();
            assert_eq!(
                got, want,
                "case {len} words, {parent}/{child}, overlap {overlap}"
            );
            assert!(
                chunks
                    .iter()
                    .all(|c| c.doc_id == "d" && c.source == "d.md" && c.metadata == doc.metadata)
            );
            // Every word is in some child, and children never leave their parent.
            let covered: HashSet<usize> = chunks.iter().flat_map(|c| numbers(&c.text)).collect();
            assert_eq!(covered.len(), len);
            for c in &chunks {
                let parent = numbers(&c.parent.as_ref().unwrap().text);
                assert!(numbers(&c.text).iter().all(|w| parent.contains(w)));
            }
        }
    }

    #[test]
    fn hierarchical_chunking_of_an_empty_document_is_empty() {
        let doc = Document {
            text: " \n\t ".into(),
            ..numbered_doc(0)
        };
        let strategy = ChunkingStrategy::Hierarchical(HierarchicalSettings::BEDROCK_DEFAULT);
        assert!(strategy.chunk(&doc).is_empty());
        assert!(ChunkingStrategy::None.chunk(&doc).is_empty());
    }

    #[test]
    fn chunking_strategies_dispatch_and_fingerprint() {
        let doc = numbered_doc(700);
        assert_eq!(ChunkingStrategy::None.chunk(&doc).len(), 1);
        let fixed = ChunkingStrategy::default().chunk(&doc);
        assert_eq!(fixed, chunk_document(&doc, ChunkingSettings::default()));
        assert!(fixed.iter().all(|c| c.parent.is_none()));
        // The fixed-size fingerprint is the one indexes were built with before strategies.
        assert_eq!(ChunkingStrategy::default().fingerprint(), "300:20");
        let h = ChunkingStrategy::Hierarchical(HierarchicalSettings {
            parent_max_tokens: 300,
            child_max_tokens: 40,
            overlap_tokens: 10,
        });
        assert_ne!(h.fingerprint(), ChunkingStrategy::default().fingerprint());
        assert_ne!(
            h.fingerprint(),
            ChunkingStrategy::Hierarchical(HierarchicalSettings::BEDROCK_DEFAULT).fingerprint()
        );
        let parents: HashSet<String> = h
            .chunk(&doc)
            .iter()
            .map(|c| c.parent.as_ref().unwrap().chunk_id.clone())
            .collect();
        assert_eq!(parents.len(), 3);
    }

    #[test]
    fn hierarchical_settings_are_validated() {
        let bad = [
            (300, 0, 10, "between 1 and 8192"),
            (9000, 300, 10, "between 1 and 8192"),
            (40, 300, 10, "larger than the parent"),
            (300, 40, 0, "overlapTokens"),
            (300, 40, 40, "overlapTokens"),
        ];
        for (parent, child, overlap, needle) in bad {
            let err = HierarchicalSettings {
                parent_max_tokens: parent,
                child_max_tokens: child,
                overlap_tokens: overlap,
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(err.contains(needle), "{parent}/{child}/{overlap}: {err}");
        }
        HierarchicalSettings::BEDROCK_DEFAULT.validate().unwrap();
    }

    #[test]
    fn weighted_rrf_follows_the_weights() {
        let a = ["x", "y"];
        let b = ["y", "z"];
        // (weight of a, weight of b) -> expected order.
        let cases: &[(f64, f64, [&str; 3])] = &[
            (1.0, 1.0, ["y", "x", "z"]),
            (1.0, 2.0, ["y", "z", "x"]),
            (2.0, 1.0, ["y", "x", "z"]),
            (1.0, 0.0, ["x", "y", "z"]),
            (0.0, 1.0, ["y", "z", "x"]),
            (1.0, 4.0, ["y", "z", "x"]),
        ];
        for &(wa, wb, want) in cases {
            let fused = weighted_reciprocal_rank_fusion(&[(wa, &a[..]), (wb, &b[..])]);
            let got: Vec<&str> = fused.iter().map(|(id, _)| *id).collect();
            assert_eq!(got, want, "weights {wa}/{wb}");
            let y = fused.iter().find(|(id, _)| *id == "y").unwrap().1;
            assert!((y - (wa / 62.0 + wb / 61.0)).abs() < 1e-12);
        }
        // Equal weights are plain RRF.
        let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let plain = reciprocal_rank_fusion(&[strings(&a), strings(&b)]);
        let weighted =
            weighted_reciprocal_rank_fusion(&[(1.0, &strings(&a)[..]), (1.0, &strings(&b)[..])]);
        assert_eq!(plain, weighted);
    }

    #[test]
    fn best_per_group_keeps_the_first_of_each_parent() {
        let ranked = [
            ("p1.c2", 0.9),
            ("p2.c0", 0.8),
            ("p1.c0", 0.7),
            ("p3.c1", 0.5),
            ("p2.c1", 0.4),
        ];
        let best = best_per_group(&ranked, |id| id.split('.').next().unwrap().to_owned());
        assert_eq!(best, [("p1.c2", 0.9), ("p2.c0", 0.8), ("p3.c1", 0.5)]);
        let none: [(&str, f64); 0] = [];
        assert!(best_per_group(&none, |id| *id).is_empty());
    }

    #[test]
    fn fusion_weights_per_provider_and_validation() {
        let hashing = FusionWeights::for_provider("hashing");
        assert!(hashing.vector < hashing.keyword, "{hashing:?}");
        hashing.validate().unwrap();
        for provider in ["minilm", "titan"] {
            let w = FusionWeights::for_provider(provider);
            assert!(w.vector > w.keyword, "{provider}: {w:?}");
            w.validate().unwrap();
        }
        for (keyword, vector) in [
            (-1.0, 1.0),
            (1.0, f64::NAN),
            (0.0, 0.0),
            (f64::INFINITY, 1.0),
        ] {
            assert!(
                FusionWeights { keyword, vector }.validate().is_err(),
                "{keyword}/{vector}"
            );
        }
        FusionWeights {
            keyword: 0.0,
            vector: 1.0,
        }
        .validate()
        .unwrap();
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
    /// A fake embedder for semantic chunking: counts of the words `alpha`, `beta` and `gamma`
    /// in each text, as a unit vector (a text with none of them points along a fourth axis).
    fn topic_vectors(texts: &[String]) -> Vec<Vec<f32>> {
        texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0_f32; 4];
                for w in t.split(|c: char| !c.is_alphanumeric()) {
                    match w {
                        "alpha" => v[0] += 1.0,
                        "beta" => v[1] += 1.0,
                        "gamma" => v[2] += 1.0,
                        _ => {}
                    }
                }
                if v.iter().all(|x| *x == 0.0) {
                    v[3] = 1.0;
                }
                l2_normalize(&mut v);
                v
            })
            .collect()
    }

    fn semantic(max_tokens: usize, buffer_size: usize, p: usize) -> SemanticSettings {
        SemanticSettings {
            max_tokens,
            buffer_size,
            breakpoint_percentile_threshold: p,
        }
    }

    fn text_doc(text: &str) -> Document {
        Document {
            text: text.into(),
            ..numbered_doc(0)
        }
    }

    #[test]
    fn semantic_chunking_cases() {
        // (text, settings, expected chunk texts)
        let cases: &[(&str, SemanticSettings, &[&str])] = &[
            // Distances 0.29, 0.29, 1: only the topic change is above the 50th percentile.
            (
                "alpha alpha. alpha beta. beta beta. gamma gamma.",
                semantic(300, 0, 50),
                &["alpha alpha. alpha beta. beta beta.", "gamma gamma."],
            ),
            // Equal distances are never above their percentile: no breakpoint.
            (
                "alpha one. beta two. gamma three.",
                semantic(300, 0, 50),
                &["alpha one. beta two. gamma three."],
            ),
            // maxTokens closes a chunk before the sentence that would overflow it.
            (
                "alpha a b. alpha c d. alpha e f. alpha g h. alpha i j.",
                semantic(7, 0, 99),
                &[
                    "alpha a b. alpha c d.",
                    "alpha e f. alpha g h.",
                    "alpha i j.",
                ],
            ),
            // A sentence longer than maxTokens is cut into windows of maxTokens words.
            (
                "alpha 1 2 3 4 5 6 7 8 9 10 11.",
                semantic(5, 0, 50),
                &["alpha 1 2 3 4", "5 6 7 8 9", "10 11."],
            ),
            // One sentence, no final stop.
            ("alpha only", semantic(300, 1, 95), &["alpha only"]),
            // Markdown headings stay with the text below them and start a chunk.
            (
                "# Title\n\n## First\nalpha one. alpha two.\n\n## Second\nalpha three!\nalpha four?",
                semantic(300, 0, 50),
                &[
                    "# Title ## First alpha one. alpha two.",
                    "## Second alpha three! alpha four?",
                ],
            ),
            // A heading with nothing below it is a chunk of its own.
            (
                "alpha one.\n## Trailing",
                semantic(300, 0, 50),
                &["alpha one.", "## Trailing"],
            ),
        ];
        for (text, settings, expected) in cases {
            let chunks = chunk_semantic(&text_doc(text), *settings, |t| Ok(topic_vectors(t)))
                .unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let got: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
            assert_eq!(got, *expected, "{text:?} {settings:?}");
            for (n, c) in chunks.iter().enumerate() {
                assert_eq!(c.chunk_id, format!("d#{n}"));
                assert!(c.parent.is_none());
                assert!(c.text.split_whitespace().count() <= settings.max_tokens);
            }
        }
    }

    #[test]
    fn semantic_buffer_embeds_neighbours() {
        let sentences = split_sentences("alpha one. beta two. gamma three.", 300);
        let texts: Vec<&str> = sentences.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["alpha one.", "beta two.", "gamma three."]);
        let cases: &[(usize, &[&str])] = &[
            (0, &["alpha one.", "beta two.", "gamma three."]),
            (
                1,
                &[
                    "alpha one. beta two.",
                    "alpha one. beta two. gamma three.",
                    "beta two. gamma three.",
                ],
            ),
        ];
        for (buffer, expected) in cases {
            let mut seen = Vec::new();
            chunk_semantic(
                &text_doc("alpha one. beta two. gamma three."),
                semantic(300, *buffer, 50),
                |t| {
                    seen = t.to_vec();
                    Ok(topic_vectors(t))
                },
            )
            .unwrap();
            assert_eq!(seen, *expected, "bufferSize {buffer}");
            assert_eq!(semantic_embedding_inputs(&sentences, *buffer), *expected);
        }
        // Without a buffer the lone beta sentence is cut out (distances 0,1,1,0,1,0, threshold
        // 0.5); with one, windows of three sentences smooth it over (distances 0.11, 0, 0, 0.2,
        // 0.2, 0.11, threshold 0.11) and only the drift towards gamma breaks.
        let text = "alpha a. alpha b. beta c. alpha d. alpha e. gamma f. gamma g.";
        let plain = chunk_semantic(&text_doc(text), semantic(300, 0, 50), |t| {
            Ok(topic_vectors(t))
        })
        .unwrap();
        let buffered = chunk_semantic(&text_doc(text), semantic(300, 1, 50), |t| {
            Ok(topic_vectors(t))
        })
        .unwrap();
        let texts = |c: &[Chunk]| c.iter().map(|c| c.text.clone()).collect::<Vec<_>>();
        assert_eq!(
            texts(&plain),
            [
                "alpha a. alpha b.",
                "beta c.",
                "alpha d. alpha e.",
                "gamma f. gamma g."
            ]
        );
        assert_eq!(
            texts(&buffered),
            [
                "alpha a. alpha b. beta c. alpha d.",
                "alpha e.",
                "gamma f. gamma g."
            ]
        );
    }

    #[test]
    fn sentences_end_at_stops_and_line_ends() {
        // (text, maxTokens, expected (sentence, starts a section))
        type Case<'a> = (&'a str, usize, &'a [(&'a str, bool)]);
        let cases: &[Case] = &[
            (
                "alpha said \"yes.\" (beta beta.) beta\ngamma",
                300,
                &[
                    ("alpha said \"yes.\"", false),
                    ("(beta beta.)", false),
                    ("beta", false),
                    ("gamma", false),
                ],
            ),
            // Decimals and amounts are not stops; headings join the next sentence.
            (
                "# T\n## Context\nLot of 1.33 acres, value $8,333.30. Fine",
                300,
                &[
                    ("# T ## Context Lot of 1.33 acres, value $8,333.30.", true),
                    ("Fine", false),
                ],
            ),
            (
                "a b c d e",
                2,
                &[("a b", false), ("c d", false), ("e", false)],
            ),
            ("", 300, &[]),
        ];
        for (text, max, expected) in cases {
            let got: Vec<(String, bool)> = split_sentences(text, *max)
                .into_iter()
                .map(|s| {
                    assert_eq!(s.words, s.text.split_whitespace().count());
                    (s.text, s.starts_section)
                })
                .collect();
            let want: Vec<(String, bool)> = expected
                .iter()
                .map(|(t, b)| ((*t).to_owned(), *b))
                .collect();
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn semantic_percentile_splits_like_bedrock_documents() {
        // Bedrock: with threshold 90, 101 sentences give 100 pairs, the 10 least similar split.
        let sentences: Vec<Sentence> = (0..101)
            .map(|i| Sentence {
                text: format!("s{i}."),
                words: 1,
                starts_section: false,
            })
            .collect();
        // Unit vectors turning by a different angle at every step: all distances distinct.
        let mut angle = 0.0_f32;
        let embeddings: Vec<Vec<f32>> = (0..101)
            .map(|i| {
                angle += 0.001 * ((i * 37) % 101) as f32;
                vec![angle.cos(), angle.sin()]
            })
            .collect();
        assert_eq!(semantic_breakpoints(&sentences, &embeddings, 90).len(), 10);
        assert_eq!(semantic_breakpoints(&sentences, &embeddings, 50).len(), 50);
        assert_eq!(semantic_breakpoints(&sentences, &embeddings, 99).len(), 1);
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 50.0), Some(2.5));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 95.0), None);
    }

    #[test]
    fn semantic_chunking_of_empty_text_embeds_nothing() {
        for text in ["", " \n\t ", "\n\n"] {
            let chunks = chunk_semantic(&text_doc(text), SemanticSettings::BEDROCK_DEFAULT, |_| {
                panic!("embedder called for {text:?}")
            })
            .unwrap();
            assert!(chunks.is_empty());
        }
        // Without an embedder, the strategy packs sentences: what equal distances give.
        let strategy = ChunkingStrategy::Semantic(semantic(4, 0, 95));
        let got: Vec<String> = strategy
            .chunk(&text_doc("alpha a. beta b. gamma c d."))
            .into_iter()
            .map(|c| c.text)
            .collect();
        assert_eq!(got, ["alpha a. beta b.", "gamma c d."]);
        assert_eq!(strategy.semantic(), Some(semantic(4, 0, 95)));
        assert_eq!(strategy.fingerprint(), "semantic:4:0:95");
        assert_eq!(ChunkingStrategy::None.semantic(), None);
    }

    #[test]
    fn semantic_settings_and_embeddings_are_validated() {
        let bad = [
            (0, 0, 95, "maxTokens"),
            (8193, 0, 95, "maxTokens"),
            (300, 2, 95, "bufferSize"),
            (300, 0, 49, "breakpointPercentileThreshold"),
            (300, 0, 100, "breakpointPercentileThreshold"),
        ];
        for (max, buffer, p, needle) in bad {
            let settings = semantic(max, buffer, p);
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{settings:?}: {err}");
            let err = chunk_semantic(&text_doc("alpha."), settings, |t| Ok(topic_vectors(t)))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{settings:?}: {err}");
        }
        for ok in [
            SemanticSettings::BEDROCK_DEFAULT,
            semantic(1, 1, 50),
            semantic(8192, 0, 99),
        ] {
            ok.validate().unwrap();
        }
        // The embedder must give one vector per sentence.
        let err = chunk_semantic(
            &text_doc("alpha. beta."),
            SemanticSettings::BEDROCK_DEFAULT,
            |_| Ok(vec![vec![1.0]]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("1 embeddings for 2 sentences"), "{err}");
        // Embedder errors are passed on.
        let err = chunk_semantic(
            &text_doc("alpha."),
            SemanticSettings::BEDROCK_DEFAULT,
            |_| Err(PortError::Transient("model down".into())),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("model down"), "{err}");
    }
}
