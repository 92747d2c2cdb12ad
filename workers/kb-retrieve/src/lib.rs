//! The kb-retrieve worker: finds similar past successful upsells in the knowledge base (RAG)
//! for the generator to learn tone from. Filters on document type and offering, and on region
//! when that still leaves examples; returns at most `k`.
//!
//! Throttling and transient knowledge-base errors keep their stable names (`Throttled`,
//! `TransientError`) so the state machine retries them; when it gives up, the workflow carries
//! on without examples.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use upsell_core::kb::{Filter, KnowledgeBase, MetaValue, RetrieveRequest, RetrievedChunk};
use upsell_core::ports::PortError;
use upsell_core::worker::{ErrorName, StableError, Worker};
use upsell_models::prompt::{Example, RetrievalQuery};

/// Input: what enrich asked to retrieve.
pub type Input = RetrievalQuery;

/// Output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Examples, best first; may be empty.
    pub examples: Vec<Example>,
    /// Which filter produced them: `offering+region`, `offering` or `none`.
    pub filter_used: String,
}

/// Worker errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The request is out of range.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The knowledge base failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl WorkerError {
    /// The stable error name the state machine matches.
    pub fn error_type(&self) -> ErrorName {
        match self {
            WorkerError::InvalidInput(_) => ErrorName::InvalidRequest,
            WorkerError::Port(e) => e.error_type(),
        }
    }
}

/// Ports the worker needs.
#[derive(Clone)]
pub struct Deps {
    /// The knowledge base.
    pub kb: Arc<dyn KnowledgeBase>,
}

/// Largest `k` accepted.
pub const MAX_K: usize = 10;

fn eq(key: &str, value: &str) -> Filter {
    Filter::Equals {
        key: key.to_owned(),
        value: MetaValue::Text(value.to_owned()),
    }
}

/// The message part of a past-message document (between `## Message` and `## Outcome`).
pub fn message_text(chunk: &str) -> String {
    let body = chunk.split("## Message").nth(1).unwrap_or(chunk);
    body.split("## Outcome")
        .next()
        .unwrap_or(body)
        .trim()
        .to_owned()
}

fn to_example(c: RetrievedChunk) -> Example {
    Example {
        text: message_text(&c.text),
        offering: c
            .metadata
            .get("offering")
            .and_then(MetaValue::as_text)
            .map(str::to_owned),
        source: Some(c.source),
        score: c.score,
    }
}

/// Retrieves examples.
pub async fn handle(input: Input, deps: &Deps) -> Result<Output, WorkerError> {
    if !(1..=MAX_K).contains(&input.k) {
        return Err(WorkerError::InvalidInput(format!(
            "k must be between 1 and {MAX_K}, got {}",
            input.k
        )));
    }
    let mut base = vec![eq("doc_type", "past_message")];
    if let Some(o) = &input.offering {
        base.push(eq("offering", o));
    }
    let mut attempts = Vec::new();
    if let Some(region) = input.region {
        let mut f = base.clone();
        f.push(eq("region", upsell_core::features::region_code(region)));
        attempts.push(("offering+region", f));
    }
    attempts.push((
        if input.offering.is_some() {
            "offering"
        } else {
            "none"
        },
        base,
    ));
    for (name, filters) in attempts {
        let req = RetrieveRequest::new(input.query.clone(), input.k)
            .with_filter(Some(Filter::AndAll(filters)));
        let chunks = deps.kb.retrieve(&req).await?;
        if !chunks.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let examples = chunks
                .into_iter()
                .filter(|c| seen.insert(c.doc_id.clone()))
                .map(to_example)
                .collect();
            return Ok(Output {
                examples,
                filter_used: name.to_owned(),
            });
        }
    }
    Ok(Output {
        examples: Vec::new(),
        filter_used: "none".to_owned(),
    })
}

#[async_trait::async_trait]
impl Worker for Deps {
    const NAME: &'static str = "kb-retrieve";
    const STATE: &'static str = "KbRetrieve";
    type Input = Input;
    type Output = Output;
    type Error = WorkerError;

    async fn handle(&self, input: Input) -> Result<Output, WorkerError> {
        handle(input, self).await
    }
}

impl StableError for WorkerError {
    fn error_name(&self) -> ErrorName {
        self.error_type()
    }
}
