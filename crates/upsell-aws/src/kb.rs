//! Knowledge base adapters: [`KnowledgeBase`] on Bedrock Knowledge Bases `Retrieve`, and
//! [`Embedder`] on Titan Text Embeddings v2 (`InvokeModel`).
//!
//! The core [`Filter`] tree mirrors Bedrock's `RetrievalFilter`, so the mapping is one to one;
//! `k` is `numberOfResults`. Document ids follow the local index: the S3 key relative to the
//! bucket without its extension (`s3://bucket/past-messages/pm-0001.md` -> `past-messages/pm-0001`),
//! because the bucket mirrors the repository's knowledge-base/ folder.
//!
//! With [`BedrockKnowledgeBase::with_reranking`], `Retrieve` asks for `max(k, candidates)` results
//! and has a Bedrock re-ranking model (`amazon.rerank-v1:0`, `cohere.rerank-v3-5:0`) keep the best
//! `k`: the AWS side of the local sentence re-ranking (`upsell_core::kb::RerankSettings`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_bedrockagentruntime::types::{
    FilterAttribute, KnowledgeBaseQuery, KnowledgeBaseRetrievalConfiguration,
    KnowledgeBaseRetrievalResult, KnowledgeBaseVectorSearchConfiguration, RetrievalFilter,
    SearchType, VectorSearchBedrockRerankingConfiguration,
    VectorSearchBedrockRerankingModelConfiguration, VectorSearchRerankingConfiguration,
    VectorSearchRerankingConfigurationType,
};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_smithy_types::{Document, Number};
use serde::Deserialize;
use upsell_core::kb::{
    Embedder, EmbedderInfo, Filter, KnowledgeBase, MetaValue, Metadata, RerankSettings,
    RetrieveRequest, RetrievedChunk, SearchMode,
};
use upsell_core::ports::PortError;

use crate::error::port_error;

/// Metadata key under which Bedrock returns a chunk's id.
pub const CHUNK_ID_KEY: &str = "x-amz-bedrock-kb-chunk-id";
/// Prefix of the metadata keys Bedrock adds itself (dropped from [`RetrievedChunk::metadata`]).
pub const BEDROCK_METADATA_PREFIX: &str = "x-amz-bedrock-kb-";

/// Most results one `Retrieve` call returns (`numberOfResults` is 1 to 100): the limit that
/// core's [`RerankSettings::MAX_CANDIDATES`] is set to.
pub const MAX_RETRIEVE_RESULTS: usize = RerankSettings::MAX_CANDIDATES;

/// Re-ranking of the first stage's results by a Bedrock re-ranking model.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reranking {
    /// Foundation-model ARN of the re-ranker.
    model_arn: String,
    /// First-stage results handed to the re-ranker (at least `k`).
    candidates: usize,
}

/// Retrieval over a Bedrock Knowledge Base.
#[derive(Debug, Clone)]
pub struct BedrockKnowledgeBase {
    client: aws_sdk_bedrockagentruntime::Client,
    knowledge_base_id: String,
    hybrid_supported: bool,
    rerank: Option<Reranking>,
}

impl BedrockKnowledgeBase {
    /// Retrieval from the knowledge base `knowledge_base_id`.
    pub fn new(
        client: aws_sdk_bedrockagentruntime::Client,
        knowledge_base_id: impl Into<String>,
    ) -> Self {
        BedrockKnowledgeBase {
            client,
            knowledge_base_id: knowledge_base_id.into(),
            hybrid_supported: false,
            rerank: None,
        }
    }

    /// Re-ranks the best `candidates` first-stage results with the Bedrock re-ranking model
    /// `model_arn` (`arn:aws:bedrock:REGION::foundation-model/amazon.rerank-v1:0`) and returns
    /// the best `k` of them: `numberOfResults` becomes `max(k, candidates)` (at most
    /// [`MAX_RETRIEVE_RESULTS`]) and `numberOfRerankedResults` is `k`. `None` (or an empty ARN)
    /// turns it off. The function's role needs `bedrock:Rerank` and `bedrock:InvokeModel` on the
    /// model.
    pub fn with_reranking(mut self, rerank: Option<(String, usize)>) -> Self {
        self.rerank = rerank
            .filter(|(model_arn, _)| !model_arn.trim().is_empty())
            .map(|(model_arn, candidates)| Reranking {
                model_arn: model_arn.trim().to_owned(),
                candidates,
            });
        self
    }

    /// The re-ranking model ARN and candidates, when re-ranking is on.
    pub fn reranking(&self) -> Option<(&str, usize)> {
        self.rerank
            .as_ref()
            .map(|r| (r.model_arn.as_str(), r.candidates))
    }

    /// Whether the vector store supports `HYBRID` search (OpenSearch Serverless with a text
    /// field; S3 Vectors does not). When false, hybrid requests use Bedrock's default strategy.
    pub fn with_hybrid_search(mut self, supported: bool) -> Self {
        self.hybrid_supported = supported;
        self
    }

    fn search_type(&self, mode: SearchMode) -> Result<Option<SearchType>, PortError> {
        match mode {
            SearchMode::Vector => Ok(Some(SearchType::Semantic)),
            SearchMode::Hybrid if self.hybrid_supported => Ok(Some(SearchType::Hybrid)),
            SearchMode::Hybrid => Ok(None),
            SearchMode::Keyword => Err(PortError::Invalid(
                "Bedrock Knowledge Bases have no keyword-only search; use mode vector or hybrid"
                    .into(),
            )),
        }
    }
}

/// A metadata value as a Bedrock document. Whole numbers go out as integers.
pub fn meta_to_document(value: &MetaValue) -> Document {
    match value {
        MetaValue::Bool(b) => Document::Bool(*b),
        MetaValue::Number(x) => Document::Number(number(*x)),
        MetaValue::Text(t) => Document::String(t.clone()),
        MetaValue::List(items) => {
            Document::Array(items.iter().cloned().map(Document::String).collect())
        }
    }
}

fn number(x: f64) -> Number {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        if x >= 0.0 {
            Number::PosInt(x as u64)
        } else {
            Number::NegInt(x as i64)
        }
    } else {
        Number::Float(x)
    }
}

/// A Bedrock metadata document as a metadata value; `None` for shapes a sidecar cannot hold.
pub fn document_to_meta(doc: &Document) -> Option<MetaValue> {
    match doc {
        Document::Bool(b) => Some(MetaValue::Bool(*b)),
        Document::Number(n) => Some(MetaValue::Number(n.to_f64_lossy())),
        Document::String(s) => Some(MetaValue::Text(s.clone())),
        Document::Array(items) => items
            .iter()
            .map(|d| match d {
                Document::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(MetaValue::List),
        Document::Object(_) | Document::Null => None,
    }
}

fn attribute(key: &str, value: Document) -> Result<FilterAttribute, PortError> {
    FilterAttribute::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| PortError::Invalid(format!("bad filter on `{key}`: {e}")))
}

/// The Bedrock filter for a core filter. Bedrock needs at least two members in `andAll` /
/// `orAll`: a single member is used on its own, an empty `andAll` is no filter, and an empty
/// `orAll` (which matches nothing) is refused.
pub fn to_retrieval_filter(filter: &Filter) -> Result<Option<RetrievalFilter>, PortError> {
    let f = match filter {
        // Locally, `Equals` with a text value on a list attribute (`seasons`, `regions`) means
        // "the list contains it". Bedrock's `equals` never matches a list, so a text value becomes
        // `equals OR listContains`, which matches both string and list attributes.
        Filter::Equals {
            key,
            value: MetaValue::Text(text),
        } => RetrievalFilter::OrAll(vec![
            RetrievalFilter::Equals(attribute(key, Document::String(text.clone()))?),
            RetrievalFilter::ListContains(attribute(key, Document::String(text.clone()))?),
        ]),
        Filter::Equals { key, value } => {
            RetrievalFilter::Equals(attribute(key, meta_to_document(value))?)
        }
        Filter::NotEquals { key, value } => {
            RetrievalFilter::NotEquals(attribute(key, meta_to_document(value))?)
        }
        Filter::In { key, values } => RetrievalFilter::In(attribute(
            key,
            Document::Array(values.iter().map(meta_to_document).collect()),
        )?),
        Filter::ListContains { key, value } => {
            RetrievalFilter::ListContains(attribute(key, Document::String(value.clone()))?)
        }
        Filter::GreaterThanOrEquals { key, value } => {
            RetrievalFilter::GreaterThanOrEquals(attribute(key, Document::Number(number(*value)))?)
        }
        Filter::LessThanOrEquals { key, value } => {
            RetrievalFilter::LessThanOrEquals(attribute(key, Document::Number(number(*value)))?)
        }
        Filter::AndAll(items) | Filter::OrAll(items) => {
            let mut inner = Vec::with_capacity(items.len());
            for item in items {
                if let Some(f) = to_retrieval_filter(item)? {
                    inner.push(f);
                }
            }
            let is_and = matches!(filter, Filter::AndAll(_));
            match inner.len() {
                0 if is_and => return Ok(None),
                0 => {
                    return Err(PortError::Invalid(
                        "an orAll filter needs at least one member".into(),
                    ));
                }
                1 => return Ok(inner.pop()),
                _ if is_and => RetrievalFilter::AndAll(inner),
                _ => RetrievalFilter::OrAll(inner),
            }
        }
    };
    Ok(Some(f))
}

/// `s3://bucket/dir/name.md` -> `dir/name`; other locations are used as they are.
pub fn doc_id_of(uri: &str) -> String {
    let key = uri
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .map_or(uri, |(_, key)| key);
    let name_start = key.rfind('/').map_or(0, |i| i + 1);
    match key[name_start..].rfind('.') {
        Some(dot) if dot > 0 => key[..name_start + dot].to_owned(),
        _ => key.to_owned(),
    }
}

fn chunk_of(index: usize, result: &KnowledgeBaseRetrievalResult) -> RetrievedChunk {
    let source = result
        .location()
        .and_then(|l| l.s3_location())
        .and_then(|s3| s3.uri())
        .map(str::to_owned)
        .or_else(|| {
            result
                .metadata()
                .and_then(|m| m.get("x-amz-bedrock-kb-source-uri"))
                .and_then(|d| d.as_string())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let doc_id = doc_id_of(&source);
    let raw: Option<&HashMap<String, Document>> = result.metadata();
    let chunk_id = raw
        .and_then(|m| m.get(CHUNK_ID_KEY))
        .and_then(|d| d.as_string())
        .map_or_else(|| format!("{doc_id}#{index}"), str::to_owned);
    let metadata: Metadata = raw
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with(BEDROCK_METADATA_PREFIX))
        .filter_map(|(k, v)| document_to_meta(v).map(|v| (k.clone(), v)))
        .collect();
    RetrievedChunk {
        chunk_id,
        doc_id,
        text: result
            .content()
            .map(|c| c.text().to_owned())
            .unwrap_or_default(),
        metadata,
        score: result.score().unwrap_or(0.0),
        source,
    }
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n.min(MAX_RETRIEVE_RESULTS)).unwrap_or(100)
}

/// `rerankingConfiguration`: the Bedrock model re-ranks the first stage and keeps the best `k`.
fn reranking_configuration(
    rerank: &Reranking,
    k: usize,
) -> Result<VectorSearchRerankingConfiguration, PortError> {
    let invalid = |e: aws_smithy_types::error::operation::BuildError| {
        PortError::Invalid(format!(
            "bad re-ranking configuration (model {:?}): {e}",
            rerank.model_arn
        ))
    };
    let model = VectorSearchBedrockRerankingModelConfiguration::builder()
        .model_arn(&rerank.model_arn)
        .build()
        .map_err(invalid)?;
    VectorSearchRerankingConfiguration::builder()
        .r#type(VectorSearchRerankingConfigurationType::BedrockRerankingModel)
        .bedrock_reranking_configuration(
            VectorSearchBedrockRerankingConfiguration::builder()
                .model_configuration(model)
                .number_of_reranked_results(to_i32(k))
                .build(),
        )
        .build()
        .map_err(invalid)
}

#[async_trait]
impl KnowledgeBase for BedrockKnowledgeBase {
    async fn retrieve(&self, request: &RetrieveRequest) -> Result<Vec<RetrievedChunk>, PortError> {
        request.validate()?;
        if request.query.trim().is_empty() {
            return Err(PortError::Invalid("query text is empty".into()));
        }
        let filter = request
            .filter
            .as_ref()
            .map(to_retrieval_filter)
            .transpose()?
            .flatten();
        let (results, reranking) = match &self.rerank {
            None => (request.k, None),
            Some(rerank) => (
                request.k.max(rerank.candidates).min(MAX_RETRIEVE_RESULTS),
                Some(reranking_configuration(rerank, request.k)?),
            ),
        };
        let search = KnowledgeBaseVectorSearchConfiguration::builder()
            .number_of_results(to_i32(results))
            .set_filter(filter)
            .set_override_search_type(self.search_type(request.mode)?)
            .set_reranking_configuration(reranking)
            .build();
        let out = self
            .client
            .retrieve()
            .knowledge_base_id(&self.knowledge_base_id)
            .retrieval_query(KnowledgeBaseQuery::builder().text(&request.query).build())
            .retrieval_configuration(
                KnowledgeBaseRetrievalConfiguration::builder()
                    .vector_search_configuration(search)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                port_error(
                    &format!(
                        "Bedrock Retrieve (knowledge base {})",
                        self.knowledge_base_id
                    ),
                    e,
                )
            })?;
        let mut chunks: Vec<RetrievedChunk> = out
            .retrieval_results()
            .iter()
            .enumerate()
            .map(|(i, r)| chunk_of(i, r))
            .collect();
        // Bedrock returns best first; keep that order but never more than asked for.
        chunks.truncate(request.k);
        Ok(chunks)
    }
}

/// Titan Text Embeddings v2 on `InvokeModel`, one call per text (the model takes one input).
#[derive(Debug, Clone)]
pub struct TitanEmbedder {
    client: aws_sdk_bedrockruntime::Client,
    model_id: String,
    dimensions: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanResponse {
    embedding: Vec<f32>,
}

/// Titan v2 accepts up to 8,192 tokens or 50,000 characters per input.
pub const TITAN_MAX_CHARS: usize = 50_000;

impl TitanEmbedder {
    /// Embeddings from `model_id` with `dimensions` outputs (256, 512 or 1024 for Titan v2).
    pub fn new(
        client: aws_sdk_bedrockruntime::Client,
        model_id: impl Into<String>,
        dimensions: usize,
    ) -> Self {
        TitanEmbedder {
            client,
            model_id: model_id.into(),
            dimensions,
        }
    }

    async fn embed_one(&self, text: &str) -> Result<Vec<f32>, PortError> {
        if text.trim().is_empty() {
            return Err(PortError::Invalid("cannot embed an empty text".into()));
        }
        if text.chars().count() > TITAN_MAX_CHARS {
            return Err(PortError::Invalid(format!(
                "text of {} characters is longer than Titan's {TITAN_MAX_CHARS}",
                text.chars().count()
            )));
        }
        let body = serde_json::json!({
            "inputText": text,
            "dimensions": self.dimensions,
            "normalize": true,
        });
        let op = format!("Bedrock InvokeModel ({})", self.model_id);
        let out = self
            .client
            .invoke_model()
            .model_id(&self.model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body.to_string()))
            .send()
            .await
            .map_err(|e| port_error(&op, e))?;
        let parsed: TitanResponse = serde_json::from_slice(out.body().as_ref()).map_err(|e| {
            PortError::Other(format!("{op}: response is not a Titan embedding: {e}"))
        })?;
        let mut v = parsed.embedding;
        if v.len() != self.dimensions {
            return Err(PortError::Other(format!(
                "{op}: expected {} dimensions, got {}",
                self.dimensions,
                v.len()
            )));
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err(PortError::Other(format!(
                "{op}: embedding has no direction (norm {norm})"
            )));
        }
        // Titan normalises already; dividing again makes the port's contract exact.
        v.iter_mut().for_each(|x| *x /= norm);
        Ok(v)
    }
}

#[async_trait]
impl Embedder for TitanEmbedder {
    fn info(&self) -> EmbedderInfo {
        EmbedderInfo {
            provider: "titan".into(),
            model: self.model_id.clone(),
            dimensions: self.dimensions,
        }
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        if !matches!(self.dimensions, 256 | 512 | 1024) {
            return Err(PortError::Invalid(format!(
                "Titan Text Embeddings v2 supports 256, 512 or 1024 dimensions, not {}",
                self.dimensions
            )));
        }
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            out.push(self.embed_one(text).await?);
        }
        Ok(out)
    }
}
