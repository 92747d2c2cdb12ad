//! Reads the `knowledge-base/` folder the way a Bedrock Knowledge Base reads its S3 data source:
//! `ingestion.json` gives the inclusion prefixes and the chunking settings; every `.md` or `.txt`
//! file under those prefixes is a document, and `<file>.metadata.json` beside it holds its
//! metadata attributes.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use upsell_core::kb::{
    ChunkingSettings, ChunkingStrategy, Document, HierarchicalSettings, MetadataSidecar,
    SemanticSettings,
};
use upsell_core::ports::PortError;

use crate::kb::{IndexDocument, SemanticDocument, SourceDocument};

/// `knowledge-base/ingestion.json`: the same fields as the CloudFormation data source.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestionSettings {
    /// Folder prefixes to ingest (Bedrock `inclusionPrefixes`); empty means everything.
    #[serde(default)]
    pub inclusion_prefixes: Vec<String>,
    pub vector_ingestion_configuration: VectorIngestionConfiguration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VectorIngestionConfiguration {
    pub chunking_configuration: ChunkingConfiguration,
}

/// `chunkingConfiguration`: the strategy and the settings object that goes with it, in
/// Bedrock's field names.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkingConfiguration {
    pub chunking_strategy: String,
    #[serde(default)]
    pub fixed_size_chunking_configuration: Option<ChunkingSettings>,
    #[serde(default)]
    pub hierarchical_chunking_configuration: Option<HierarchicalChunkingConfiguration>,
    /// Bedrock's `semanticChunkingConfiguration`: `maxTokens`, `bufferSize`,
    /// `breakpointPercentileThreshold`.
    #[serde(default)]
    pub semantic_chunking_configuration: Option<SemanticSettings>,
}

/// Bedrock's `hierarchicalChunkingConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HierarchicalChunkingConfiguration {
    /// Exactly two levels: the parent's, then the child's.
    pub level_configurations: Vec<LevelConfiguration>,
    pub overlap_tokens: usize,
}

/// One level of `levelConfigurations`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LevelConfiguration {
    pub max_tokens: usize,
}

impl IngestionSettings {
    /// The chunking strategy: `FIXED_SIZE`, `HIERARCHICAL`, `SEMANTIC` (validated with
    /// Bedrock's ranges; chunked at ingestion, with the embedder) or `NONE` (one chunk per
    /// document).
    pub fn chunking(&self) -> Result<ChunkingStrategy, PortError> {
        let c = &self.vector_ingestion_configuration.chunking_configuration;
        match c.chunking_strategy.as_str() {
            "FIXED_SIZE" => c
                .fixed_size_chunking_configuration
                .map(ChunkingStrategy::FixedSize)
                .ok_or_else(|| {
                    PortError::Invalid(
                        "ingestion.json: FIXED_SIZE needs fixedSizeChunkingConfiguration".into(),
                    )
                }),
            "HIERARCHICAL" => {
                let h = c
                    .hierarchical_chunking_configuration
                    .as_ref()
                    .ok_or_else(|| {
                        PortError::Invalid(
                            "ingestion.json: HIERARCHICAL needs hierarchicalChunkingConfiguration"
                                .into(),
                        )
                    })?;
                let [parent, child] = h.level_configurations.as_slice() else {
                    return Err(PortError::Invalid(format!(
                        "ingestion.json: hierarchicalChunkingConfiguration.levelConfigurations must have exactly 2 levels (parent, child), got {}",
                        h.level_configurations.len()
                    )));
                };
                let settings = HierarchicalSettings {
                    parent_max_tokens: parent.max_tokens,
                    child_max_tokens: child.max_tokens,
                    overlap_tokens: h.overlap_tokens,
                };
                settings.validate().map_err(|e| match e {
                    PortError::Invalid(m) => PortError::Invalid(format!("ingestion.json: {m}")),
                    other => other,
                })?;
                Ok(ChunkingStrategy::Hierarchical(settings))
            }
            "SEMANTIC" => {
                let settings = c.semantic_chunking_configuration.ok_or_else(|| {
                    PortError::Invalid(
                        "ingestion.json: SEMANTIC needs semanticChunkingConfiguration {maxTokens, bufferSize, breakpointPercentileThreshold}"
                            .into(),
                    )
                })?;
                settings.validate().map_err(|e| match e {
                    PortError::Invalid(m) => PortError::Invalid(format!("ingestion.json: {m}")),
                    other => other,
                })?;
                Ok(ChunkingStrategy::Semantic(settings))
            }
            "NONE" => Ok(ChunkingStrategy::None),
            other => Err(PortError::Invalid(format!(
                "ingestion.json: chunking strategy `{other}` is not supported locally (use FIXED_SIZE, HIERARCHICAL, SEMANTIC or NONE)"
            ))),
        }
    }
}

/// Reads and parses `<root>/ingestion.json`.
pub fn read_settings(root: &Path) -> Result<IngestionSettings, PortError> {
    let path = root.join("ingestion.json");
    let raw = std::fs::read_to_string(&path)
        .map_err(|e| PortError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&raw)
        .map_err(|e| PortError::Invalid(format!("{} is not valid: {e}", path.display())))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PortError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PortError::Invalid(format!("cannot read folder {}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry
            .map_err(|e| PortError::Other(format!("cannot list {}: {e}", dir.display())))?
            .path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// SHA-256 (hex) of `parts`, each prefixed with its length so that moving bytes between parts
/// changes the hash.
fn hash_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    format!("{:x}", h.finalize())
}

/// Loads every document under `root` that the settings include, chunked, sorted by id.
/// A sidecar that is not valid JSON of the Bedrock shape is an error naming the file. With
/// `SEMANTIC` chunking, which needs the embedder, this is an error: use [`load_sources`] and
/// `SqliteKnowledgeBase::sync_sources`.
pub fn load_documents(root: &Path) -> Result<Vec<IndexDocument>, PortError> {
    load_sources(root)?
        .into_iter()
        .map(|d| match d {
            SourceDocument::Chunked(d) => Ok(d),
            SourceDocument::Semantic(_) => Err(PortError::Invalid(format!(
                "{}: SEMANTIC chunking needs the embedder at ingestion (load_sources + SqliteKnowledgeBase::sync_sources)",
                root.join("ingestion.json").display()
            ))),
        })
        .collect()
}

/// One document of the knowledge base at `rel` (its path relative to the root, e.g.
/// `past-messages/pm-0001.md`), ready to index with `chunking`: its id is `rel` without the
/// extension (also added to the metadata as `doc_id`), and its content hash covers the text,
/// the sidecar text and the chunking settings.
pub fn source_document(
    rel: &str,
    text: String,
    mut metadata: upsell_core::kb::Metadata,
    sidecar_raw: &str,
    chunking: &ChunkingStrategy,
) -> SourceDocument {
    let doc_id = rel
        .rsplit_once('.')
        .map_or(rel, |(stem, _)| stem)
        .to_owned();
    metadata
        .entry("doc_id".into())
        .or_insert_with(|| upsell_core::kb::MetaValue::Text(doc_id.clone()));
    let doc = Document {
        doc_id: doc_id.clone(),
        source: rel.to_owned(),
        text,
        metadata,
    };
    let settings_key = chunking.fingerprint();
    let content_hash = hash_hex(&[
        doc.text.as_bytes(),
        sidecar_raw.as_bytes(),
        settings_key.as_bytes(),
    ]);
    match chunking.semantic() {
        Some(settings) => SourceDocument::Semantic(SemanticDocument {
            document: doc,
            settings,
            content_hash,
        }),
        None => SourceDocument::Chunked(IndexDocument {
            doc_id,
            source: rel.to_owned(),
            content_hash,
            chunks: chunking.chunk(&doc),
        }),
    }
}

/// Loads every document under `root` that the settings include, sorted by id: chunked, or with
/// `SEMANTIC` chunking left for `SqliteKnowledgeBase::sync_sources` (which chunks only new and
/// changed documents). A sidecar that is not valid JSON of the Bedrock shape is an error naming
/// the file.
pub fn load_sources(root: &Path) -> Result<Vec<SourceDocument>, PortError> {
    let settings = read_settings(root)?;
    let chunking = settings.chunking()?;
    let mut files = Vec::new();
    walk(root, &mut files)?;
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(root)
            .map_err(|e| PortError::Other(e.to_string()))?
            .to_string_lossy()
            .replace('\\', "/");
        let is_doc = rel.ends_with(".md") || rel.ends_with(".txt");
        let included = settings.inclusion_prefixes.is_empty()
            || settings
                .inclusion_prefixes
                .iter()
                .any(|p| rel.starts_with(p.as_str()));
        if !is_doc || !included {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PortError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        let sidecar_path = PathBuf::from(format!("{}.metadata.json", path.display()));
        let (sidecar, sidecar_raw) = if sidecar_path.exists() {
            let raw = std::fs::read_to_string(&sidecar_path).map_err(|e| {
                PortError::Invalid(format!("cannot read {}: {e}", sidecar_path.display()))
            })?;
            let parsed: MetadataSidecar = serde_json::from_str(&raw).map_err(|e| {
                PortError::Invalid(format!(
                    "{} is not a Bedrock metadata sidecar ({{\"metadataAttributes\": {{...}}}}): {e}",
                    sidecar_path.display()
                ))
            })?;
            (parsed, raw)
        } else {
            (MetadataSidecar::default(), String::new())
        };
        docs.push(source_document(
            &rel,
            text,
            sidecar.metadata_attributes,
            &sidecar_raw,
            &chunking,
        ));
    }
    Ok(docs)
}
