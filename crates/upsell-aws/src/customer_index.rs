//! The customer vector index in AWS: [`CustomerIndex`] on an S3 Vectors index (28 dimensions,
//! Euclidean; the template's `CustomerVectorIndex`). One vector per customer, keyed by the
//! customer id, with the metadata `region` and `services` (filterable), `embeddingVersion` and
//! `asOf` (non-filterable).
//!
//! - `upsert`: `GetVectors` of the customer's key (metadata only), then `PutVectors` unless the
//!   stored embedding is newer ([`CustomerEmbedding::supersedes`]).
//! - `similar`: `GetVectors` of the query customer (`NotFound` when absent), `QueryVectors`
//!   with `topK = k + 1` (the customer finds itself) and the filters as an S3 Vectors metadata
//!   filter, then `GetVectors` of the hits' vectors (`QueryVectors` returns keys, metadata and
//!   distances, not vectors); distances, agreeing dimensions and order come from
//!   [`SimilarQuery::nearest`], as locally.
//!
//! S3 Vectors has no conditional write, so the read before `PutVectors` is not atomic: two
//! events of one customer enriched at the same moment can both read, and the older embedding
//! may land last. The customer's next event writes the current one again.

use async_trait::async_trait;
use aws_sdk_s3vectors::types::{PutInputVector, VectorData};
use aws_smithy_types::Document;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::HashMap;
use upsell_core::events::{Region, Service};
use upsell_core::features::{CustomerEmbedding, CustomerIndex, SimilarCustomer, SimilarQuery};
use upsell_core::ports::PortError;

use crate::error::port_error;

/// Largest `k`: `QueryVectors` returns at most 100 results and the query customer takes one.
pub const MAX_K: usize = 99;

/// Metadata keys of a customer's vector.
pub mod meta {
    /// The customer's region (string; absent when unknown). Filterable.
    pub const REGION: &str = "region";
    /// Services bought (array of service codes). Filterable: `$eq` matches an element.
    pub const SERVICES: &str = "services";
    /// The embedding's version (`cust-emb-v1`).
    pub const EMBEDDING_VERSION: &str = "embeddingVersion";
    /// RFC 3339 UTC time the embedding describes. Non-filterable (template).
    pub const AS_OF: &str = "asOf";
}

/// [`CustomerIndex`] on one S3 Vectors index.
#[derive(Debug, Clone)]
pub struct S3VectorsCustomerIndex {
    client: aws_sdk_s3vectors::Client,
    bucket: String,
    index: String,
}

/// A stored vector read back, or why it cannot be read.
type Stored = Result<CustomerEmbedding, PortError>;

impl S3VectorsCustomerIndex {
    /// The index `index` of the vector bucket `bucket`.
    pub fn new(
        client: aws_sdk_s3vectors::Client,
        bucket: impl Into<String>,
        index: impl Into<String>,
    ) -> Self {
        S3VectorsCustomerIndex {
            client,
            bucket: bucket.into(),
            index: index.into(),
        }
    }

    /// The vector bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The index name.
    pub fn index(&self) -> &str {
        &self.index
    }

    /// `GetVectors` of `keys` (at most 100) with metadata, and the data when `data`; keys that
    /// have no vector are absent from the result.
    async fn get(&self, keys: &[String], data: bool) -> Result<Vec<Stored>, PortError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .get_vectors()
            .vector_bucket_name(&self.bucket)
            .index_name(&self.index)
            .set_keys(Some(keys.to_vec()))
            .return_data(data)
            .return_metadata(true)
            .send()
            .await
            .map_err(|e| port_error("s3vectors:GetVectors", e))?;
        Ok(out
            .vectors()
            .iter()
            .map(|v| {
                let vector = match v.data() {
                    Some(VectorData::Float32(x)) => x.clone(),
                    Some(_) => return Err(corrupt(v.key(), "data is not float32")),
                    None if data => return Err(corrupt(v.key(), "no data returned")),
                    None => Vec::new(),
                };
                from_metadata(v.key(), v.metadata(), vector)
            })
            .collect())
    }
}

fn corrupt(key: &str, what: &str) -> PortError {
    PortError::Other(format!("customer index: vector {key}: {what}"))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The wire name of a serde enum value (`midwest`, `lawn-care`).
fn wire<T: serde::Serialize>(value: T) -> Result<String, PortError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        other => Err(PortError::Other(format!(
            "customer index: not a string enum: {other:?}"
        ))),
    }
}

fn from_wire<T: serde::de::DeserializeOwned>(key: &str, s: &str) -> Result<T, PortError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|e| corrupt(key, &format!("metadata value {s:?}: {e}")))
}

/// The metadata written with a customer's vector.
pub fn metadata(e: &CustomerEmbedding) -> Result<Document, PortError> {
    let mut m = HashMap::new();
    if let Some(r) = e.region {
        m.insert(meta::REGION.to_owned(), Document::String(wire(r)?));
    }
    let services = e
        .services_bought
        .iter()
        .map(|s| wire(s).map(Document::String))
        .collect::<Result<Vec<_>, _>>()?;
    m.insert(meta::SERVICES.to_owned(), Document::Array(services));
    m.insert(
        meta::EMBEDDING_VERSION.to_owned(),
        Document::String(e.embedding_version.clone()),
    );
    m.insert(meta::AS_OF.to_owned(), Document::String(ts(e.as_of)));
    Ok(Document::Object(m))
}

/// A stored vector's metadata and data read back as the embedding that was written.
fn from_metadata(
    key: &str,
    metadata: Option<&Document>,
    vector: Vec<f32>,
) -> Result<CustomerEmbedding, PortError> {
    let Some(Document::Object(m)) = metadata else {
        return Err(corrupt(key, "no metadata"));
    };
    let text = |name: &str| match m.get(name) {
        Some(Document::String(s)) => Ok(Some(s.as_str())),
        None | Some(Document::Null) => Ok(None),
        Some(other) => Err(corrupt(key, &format!("{name} is not a string: {other:?}"))),
    };
    let region = text(meta::REGION)?
        .map(|r| from_wire::<Region>(key, r))
        .transpose()?;
    let services_bought = match m.get(meta::SERVICES) {
        Some(Document::Array(items)) => items
            .iter()
            .map(|d| match d {
                Document::String(s) => from_wire::<Service>(key, s),
                other => Err(corrupt(key, &format!("service is not a string: {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
        Some(other) => return Err(corrupt(key, &format!("services: {other:?}"))),
    };
    let embedding_version = text(meta::EMBEDDING_VERSION)?
        .ok_or_else(|| corrupt(key, "no embeddingVersion"))?
        .to_owned();
    let as_of = text(meta::AS_OF)?
        .ok_or_else(|| corrupt(key, "no asOf"))?
        .parse::<DateTime<Utc>>()
        .map_err(|e| corrupt(key, &format!("asOf: {e}")))?;
    Ok(CustomerEmbedding {
        customer_id: key.to_owned(),
        embedding_version,
        as_of,
        region,
        services_bought,
        vector,
    })
}

/// The query's filters as an S3 Vectors metadata filter (`None` without filters).
pub fn filter(query: &SimilarQuery) -> Result<Option<Document>, PortError> {
    let eq = |name: &str, value: String| {
        Document::Object(HashMap::from([(
            name.to_owned(),
            Document::Object(HashMap::from([("$eq".to_owned(), Document::String(value))])),
        )]))
    };
    let mut clauses = Vec::new();
    if let Some(r) = query.region {
        clauses.push(eq(meta::REGION, wire(r)?));
    }
    if let Some(s) = query.service {
        // `$eq` on an array matches when any element equals the value.
        clauses.push(eq(meta::SERVICES, wire(s)?));
    }
    Ok(match clauses.len() {
        0 => None,
        1 => clauses.pop(),
        _ => Some(Document::Object(HashMap::from([(
            "$and".to_owned(),
            Document::Array(clauses),
        )]))),
    })
}

#[async_trait]
impl CustomerIndex for S3VectorsCustomerIndex {
    async fn upsert(&self, embedding: &CustomerEmbedding) -> Result<(), PortError> {
        embedding.check()?;
        let key = embedding.customer_id.clone();
        // Not atomic with the write below (see the module docs).
        match self.get(std::slice::from_ref(&key), false).await?.pop() {
            Some(Ok(stored)) if !embedding.supersedes(stored.as_of, &stored.embedding_version) => {
                return Ok(());
            }
            // Unreadable metadata cannot be compared: the new embedding repairs it.
            Some(Err(why)) => {
                tracing::warn!(customer = %key, %why, "replacing an unreadable customer vector");
            }
            _ => {}
        }
        let vector = PutInputVector::builder()
            .key(key)
            .data(VectorData::Float32(embedding.vector.clone()))
            .metadata(metadata(embedding)?)
            .build()
            .map_err(|e| PortError::Invalid(format!("s3vectors:PutVectors: {e}")))?;
        self.client
            .put_vectors()
            .vector_bucket_name(&self.bucket)
            .index_name(&self.index)
            .vectors(vector)
            .send()
            .await
            .map_err(|e| port_error("s3vectors:PutVectors", e))?;
        Ok(())
    }

    async fn similar(&self, query: &SimilarQuery) -> Result<Vec<SimilarCustomer>, PortError> {
        query.check(MAX_K)?;
        let me = self
            .get(std::slice::from_ref(&query.customer_id), true)
            .await?
            .pop()
            .ok_or_else(|| query.not_found())??;
        let hits = self
            .client
            .query_vectors()
            .vector_bucket_name(&self.bucket)
            .index_name(&self.index)
            .top_k(i32::try_from(query.k + 1).unwrap_or(i32::MAX))
            .query_vector(VectorData::Float32(me.vector.clone()))
            .set_filter(filter(query)?)
            .send()
            .await
            .map_err(|e| port_error("s3vectors:QueryVectors", e))?;
        let keys: Vec<String> = hits
            .vectors()
            .iter()
            .map(|v| v.key().to_owned())
            .filter(|k| *k != query.customer_id)
            .take(query.k)
            .collect();
        let candidates = self
            .get(&keys, true)
            .await?
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(query.nearest(&me.vector, candidates))
    }
}
