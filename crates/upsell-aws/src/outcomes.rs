//! Past successes in AWS: an accepted message (the document `upsell_core::outcome` builds) is
//! written to the knowledge-base bucket under the past-messages data source's prefix, as a
//! Markdown object and its `.metadata.json` sidecar, and a `StartIngestionJob` on that data
//! source makes it retrievable (Bedrock ingests only new or changed objects).
//!
//! Bedrock runs one ingestion job per data source at a time: when one is already running
//! (`ConflictException`, `ServiceQuotaExceededException`), the objects stay in the bucket and
//! the next job ingests them (the template's hourly `PastMessagesSyncSchedule`, or the next
//! accepted message). The write itself never depends on the sync.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use upsell_core::outcome::{PastSuccess, PastSuccessStore};
use upsell_core::ports::PortError;

use crate::error::{error_code, port_error};

/// Content type of the Markdown document.
pub const MARKDOWN: &str = "text/markdown; charset=utf-8";

/// The data source to sync after a write.
#[derive(Debug, Clone)]
pub struct IngestionTarget {
    client: aws_sdk_bedrockagent::Client,
    knowledge_base_id: String,
    data_source_id: String,
}

impl IngestionTarget {
    /// The data source `data_source_id` of the knowledge base `knowledge_base_id`.
    pub fn new(
        client: aws_sdk_bedrockagent::Client,
        knowledge_base_id: impl Into<String>,
        data_source_id: impl Into<String>,
    ) -> Self {
        IngestionTarget {
            client,
            knowledge_base_id: knowledge_base_id.into(),
            data_source_id: data_source_id.into(),
        }
    }
}

/// What the sync after a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    /// An ingestion job was started (its id).
    Started(String),
    /// A job was already running; the next one ingests the new objects (the error code).
    Pending(String),
    /// No data source to sync was configured.
    Off,
}

/// [`PastSuccessStore`] on S3 (+ Bedrock Agent `StartIngestionJob`).
#[derive(Debug, Clone)]
pub struct S3PastSuccesses {
    s3: aws_sdk_s3::Client,
    bucket: String,
    ingestion: Option<IngestionTarget>,
}

impl S3PastSuccesses {
    /// Writes into `bucket` (the knowledge base's bucket: keys are relative to its root, as
    /// in `knowledge-base/`), then syncs `ingestion` when given.
    pub fn new(
        s3: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        ingestion: Option<IngestionTarget>,
    ) -> Self {
        S3PastSuccesses {
            s3,
            bucket: bucket.into(),
            ingestion,
        }
    }

    /// The bucket written to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Writes the document and its sidecar (sidecar first, so an ingestion job never sees the
    /// document without its metadata), then starts the data source's sync.
    pub async fn write(&self, success: &PastSuccess) -> Result<Sync, PortError> {
        let key = success.key();
        let sidecar = format!("{key}.metadata.json");
        self.put(&sidecar, success.sidecar_json(), "application/json")
            .await?;
        self.put(&key, success.text.clone(), MARKDOWN).await?;
        let Some(target) = &self.ingestion else {
            return Ok(Sync::Off);
        };
        let started = target
            .client
            .start_ingestion_job()
            .knowledge_base_id(&target.knowledge_base_id)
            .data_source_id(&target.data_source_id)
            .description(description(&success.doc_id))
            .send()
            .await;
        match started {
            Ok(out) => Ok(Sync::Started(
                out.ingestion_job
                    .map(|j| j.ingestion_job_id)
                    .unwrap_or_default(),
            )),
            Err(e) => match error_code(&e) {
                Some(code @ ("ConflictException" | "ServiceQuotaExceededException")) => {
                    tracing::info!(
                        doc_id = %success.doc_id,
                        "ingestion job not started ({code}); the next sync ingests the document"
                    );
                    Ok(Sync::Pending(code.to_owned()))
                }
                _ => Err(port_error(
                    &format!(
                        "Bedrock StartIngestionJob ({}/{})",
                        target.knowledge_base_id, target.data_source_id
                    ),
                    e,
                )),
            },
        }
    }

    async fn put(&self, key: &str, body: String, content_type: &str) -> Result<(), PortError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .map_err(|e| port_error(&format!("S3 PutObject (s3://{}/{key})", self.bucket), e))?;
        Ok(())
    }
}

/// The job's description (at most 200 characters, as Bedrock allows).
fn description(doc_id: &str) -> String {
    format!("accepted message {doc_id}")
        .chars()
        .take(200)
        .collect()
}

#[async_trait]
impl PastSuccessStore for S3PastSuccesses {
    async fn add(&self, success: &PastSuccess) -> Result<(), PortError> {
        self.write(success).await.map(|_| ())
    }
}
