//! One place that builds the SDK configuration and clients, once per Lambda container, and hands
//! out the adapters. Resource names come from environment variables that sam/template.yaml sets
//! (see [`env`](mod@env)); an endpoint override points every client at moto or a canned-response server.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use thiserror::Error;
use upsell_core::kb::RerankSettings;

use crate::bedrock::BedrockModelProvider;
use crate::customer_index::S3VectorsCustomerIndex;
use crate::dynamo::contacts::DynamoContactStore;
use crate::dynamo::counters::DynamoVersionCounters;
use crate::dynamo::drift::DynamoDriftSource;
use crate::dynamo::evaluations::DynamoEvaluationStore;
use crate::dynamo::features::DynamoFeatureStore;
use crate::dynamo::messages::DynamoMessageStore;
use crate::dynamo::receipts::DynamoIngestReceipts;
use crate::dynamo::registry::DynamoAgentRegistry;
use crate::eventbridge::EventBridgePublisher;
use crate::kb::{BedrockKnowledgeBase, MAX_RETRIEVE_RESULTS, TitanEmbedder};
use crate::outcomes::{IngestionTarget, S3PastSuccesses};
use crate::secrets::SecretsManagerSecret;

/// Names of the environment variables the adapters read (set by sam/template.yaml).
pub mod env {
    /// DynamoDB table of message records, quarantine records and idempotency claims.
    pub const MESSAGES_TABLE: &str = "UPSELL_MESSAGES_TABLE";
    /// DynamoDB table of agent versions and routing items.
    pub const AGENT_REGISTRY_TABLE: &str = "UPSELL_AGENT_REGISTRY_TABLE";
    /// DynamoDB table of customer feature snapshots and contacts.
    pub const FEATURE_STORE_TABLE: &str = "UPSELL_FEATURE_STORE_TABLE";
    /// DynamoDB table of agent-evaluation cases.
    pub const EVALUATIONS_TABLE: &str = "UPSELL_EVALUATIONS_TABLE";
    /// DynamoDB table of the webhook's idempotency receipts.
    pub const WEBHOOK_RECEIPTS_TABLE: &str = "UPSELL_WEBHOOK_RECEIPTS_TABLE";
    /// Secrets Manager secret (ARN or name) holding the webhook's HMAC key.
    pub const WEBHOOK_SECRET_ARN: &str = "UPSELL_WEBHOOK_SECRET_ARN";
    /// DynamoDB table of per-version live counters.
    pub const VERSION_COUNTERS_TABLE: &str = "UPSELL_VERSION_COUNTERS_TABLE";
    /// EventBridge bus that outbound events go to.
    pub const EVENT_BUS_NAME: &str = "UPSELL_EVENT_BUS_NAME";
    /// Bedrock Knowledge Base id for `Retrieve`.
    pub const KNOWLEDGE_BASE_ID: &str = "UPSELL_KNOWLEDGE_BASE_ID";
    /// S3 bucket of the knowledge base's documents (accepted messages are written there).
    pub const KNOWLEDGE_BASE_BUCKET: &str = "UPSELL_KNOWLEDGE_BASE_BUCKET";
    /// Data source of `past-messages/` that an accepted message's sync starts; unset: the
    /// objects are written and a later sync ingests them.
    pub const PAST_MESSAGES_DATA_SOURCE_ID: &str = "UPSELL_PAST_MESSAGES_DATA_SOURCE_ID";
    /// `true` when the knowledge base's vector store supports HYBRID search (OpenSearch
    /// Serverless); S3 Vectors does not.
    pub const KB_HYBRID_SEARCH: &str = "UPSELL_KB_HYBRID_SEARCH";
    /// Foundation-model ARN of the Bedrock re-ranker applied to `Retrieve` results
    /// (`arn:aws:bedrock:REGION::foundation-model/amazon.rerank-v1:0`); unset or empty: no
    /// re-ranking.
    pub const KB_RERANK_MODEL_ARN: &str = "UPSELL_KB_RERANK_MODEL_ARN";
    /// First-stage results handed to the re-ranker, 1 to 100 (default
    /// [`upsell_core::kb::RerankSettings::DEFAULT_CANDIDATES`]); no effect without
    /// [`KB_RERANK_MODEL_ARN`].
    pub const KB_RERANK_CANDIDATES: &str = "UPSELL_KB_RERANK_CANDIDATES";
    /// S3 Vectors bucket of the customer vector index.
    pub const CUSTOMER_VECTOR_BUCKET: &str = "UPSELL_CUSTOMER_VECTOR_BUCKET";
    /// Index (in [`CUSTOMER_VECTOR_BUCKET`]) of the customer embeddings (`cust-emb-v1`).
    pub const CUSTOMER_VECTOR_INDEX: &str = "UPSELL_CUSTOMER_VECTOR_INDEX";
    /// Embedding model id (default [`super::DEFAULT_EMBEDDING_MODEL_ID`]).
    pub const EMBEDDING_MODEL_ID: &str = "UPSELL_EMBEDDING_MODEL_ID";
    /// Embedding dimensions: 256, 512 or 1024 (default 1024).
    pub const EMBEDDING_DIMENSIONS: &str = "UPSELL_EMBEDDING_DIMENSIONS";
    /// Endpoint override for every client (moto, canned-response servers).
    pub const ENDPOINT_URL: &str = "UPSELL_AWS_ENDPOINT_URL";
    /// SDK attempts per call, including the first (default 3, the SDK's standard mode).
    pub const MAX_ATTEMPTS: &str = "UPSELL_AWS_MAX_ATTEMPTS";
    /// Timeout of one HTTP attempt, in milliseconds (default: none; Lambda's timeout bounds it).
    pub const ATTEMPT_TIMEOUT_MS: &str = "UPSELL_AWS_ATTEMPT_TIMEOUT_MS";
}

/// Titan Text Embeddings v2.
pub const DEFAULT_EMBEDDING_MODEL_ID: &str = "amazon.titan-embed-text-v2:0";
/// Titan Text Embeddings v2's largest (and default) output size.
pub const DEFAULT_EMBEDDING_DIMENSIONS: usize = 1024;

/// A missing or malformed setting, named so the fix is obvious.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The adapter asked for needs a resource name that the function was not given.
    #[error(
        "environment variable {0} is not set (sam/template.yaml sets it on the functions that use this adapter)"
    )]
    MissingEnv(&'static str),
    /// A setting has a value that cannot be used.
    #[error("environment variable {name} = {value:?} is invalid: {reason}")]
    InvalidEnv {
        /// Variable name.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// Resource names and adapter settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Settings {
    messages_table: Option<String>,
    agent_registry_table: Option<String>,
    feature_store_table: Option<String>,
    evaluations_table: Option<String>,
    webhook_receipts_table: Option<String>,
    webhook_secret_arn: Option<String>,
    version_counters_table: Option<String>,
    event_bus_name: Option<String>,
    knowledge_base_id: Option<String>,
    knowledge_base_bucket: Option<String>,
    past_messages_data_source_id: Option<String>,
    kb_hybrid_search: bool,
    kb_rerank_model_arn: Option<String>,
    kb_rerank_candidates: Option<usize>,
    embedding_model_id: Option<String>,
    embedding_dimensions: Option<usize>,
    customer_vector_bucket: Option<String>,
    customer_vector_index: Option<String>,
}

/// Builds an [`AwsContext`]; every setting can come from the environment or be given in code.
#[derive(Debug, Clone, Default)]
pub struct AwsContextBuilder {
    settings: Settings,
    endpoint_url: Option<String>,
    region: Option<String>,
    test_credentials: bool,
    max_attempts: Option<u32>,
    attempt_timeout: Option<Duration>,
}

/// Looks up one variable's raw value.
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(get: Lookup<'_>, name: &'static str) -> Option<String> {
    get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn parse_var<T: std::str::FromStr>(
    get: Lookup<'_>,
    name: &'static str,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let Some(raw) = var(get, name) else {
        return Ok(None);
    };
    let value = raw.parse::<T>().map_err(|e| ConfigError::InvalidEnv {
        name,
        value: raw.clone(),
        reason: e.to_string(),
    })?;
    check(&value).map_err(|reason| ConfigError::InvalidEnv {
        name,
        value: raw,
        reason,
    })?;
    Ok(Some(value))
}

fn check_rerank_candidates(n: &usize) -> Result<(), String> {
    if (1..=MAX_RETRIEVE_RESULTS).contains(n) {
        Ok(())
    } else {
        Err(format!(
            "must be between 1 and {MAX_RETRIEVE_RESULTS} (Retrieve returns at most {MAX_RETRIEVE_RESULTS} results)"
        ))
    }
}

fn check_dimensions(d: &usize) -> Result<(), String> {
    if matches!(d, 256 | 512 | 1024) {
        Ok(())
    } else {
        Err("Titan Text Embeddings v2 supports 256, 512 or 1024 dimensions".into())
    }
}

impl AwsContextBuilder {
    /// Reads every setting from the environment (see [`env`](mod@env)). Unset resource names stay unset:
    /// only the adapters that need them fail, naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] with the variables taken from `lookup` instead of the process
    /// environment (tests, tools).
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get: Lookup<'_> = &lookup;
        Ok(AwsContextBuilder {
            settings: Settings {
                messages_table: var(get, env::MESSAGES_TABLE),
                agent_registry_table: var(get, env::AGENT_REGISTRY_TABLE),
                feature_store_table: var(get, env::FEATURE_STORE_TABLE),
                evaluations_table: var(get, env::EVALUATIONS_TABLE),
                webhook_receipts_table: var(get, env::WEBHOOK_RECEIPTS_TABLE),
                webhook_secret_arn: var(get, env::WEBHOOK_SECRET_ARN),
                version_counters_table: var(get, env::VERSION_COUNTERS_TABLE),
                event_bus_name: var(get, env::EVENT_BUS_NAME),
                knowledge_base_id: var(get, env::KNOWLEDGE_BASE_ID),
                knowledge_base_bucket: var(get, env::KNOWLEDGE_BASE_BUCKET),
                past_messages_data_source_id: var(get, env::PAST_MESSAGES_DATA_SOURCE_ID),
                kb_hybrid_search: parse_var(get, env::KB_HYBRID_SEARCH, |_: &bool| Ok(()))?
                    .unwrap_or(false),
                kb_rerank_model_arn: var(get, env::KB_RERANK_MODEL_ARN),
                kb_rerank_candidates: parse_var(
                    get,
                    env::KB_RERANK_CANDIDATES,
                    check_rerank_candidates,
                )?,
                embedding_model_id: var(get, env::EMBEDDING_MODEL_ID),
                embedding_dimensions: parse_var(get, env::EMBEDDING_DIMENSIONS, check_dimensions)?,
                customer_vector_bucket: var(get, env::CUSTOMER_VECTOR_BUCKET),
                customer_vector_index: var(get, env::CUSTOMER_VECTOR_INDEX),
            },
            endpoint_url: var(get, env::ENDPOINT_URL),
            region: None,
            test_credentials: false,
            max_attempts: parse_var(get, env::MAX_ATTEMPTS, |n: &u32| {
                if (1..=10).contains(n) {
                    Ok(())
                } else {
                    Err("must be between 1 and 10".into())
                }
            })?,
            attempt_timeout: parse_var(get, env::ATTEMPT_TIMEOUT_MS, |n: &u64| {
                if *n > 0 {
                    Ok(())
                } else {
                    Err("must be a positive number of milliseconds".into())
                }
            })?
            .map(Duration::from_millis),
        })
    }

    /// Sends every call to this endpoint (moto server, a canned-response server).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Fixes the Region instead of taking it from the environment / profile.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Uses fixed fake credentials (tests against moto or local servers only).
    pub fn test_credentials(mut self) -> Self {
        self.test_credentials = true;
        self
    }

    /// SDK attempts per call, including the first; 1 disables the SDK's own retries.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Timeout of one HTTP attempt.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Table of message records.
    pub fn messages_table(mut self, name: impl Into<String>) -> Self {
        self.settings.messages_table = Some(name.into());
        self
    }

    /// Table of agent versions.
    pub fn agent_registry_table(mut self, name: impl Into<String>) -> Self {
        self.settings.agent_registry_table = Some(name.into());
        self
    }

    /// Table of feature snapshots.
    pub fn feature_store_table(mut self, name: impl Into<String>) -> Self {
        self.settings.feature_store_table = Some(name.into());
        self
    }

    /// The evaluations table.
    pub fn evaluations_table(mut self, name: impl Into<String>) -> Self {
        self.settings.evaluations_table = Some(name.into());
        self
    }

    /// The webhook's receipts table.
    pub fn webhook_receipts_table(mut self, name: impl Into<String>) -> Self {
        self.settings.webhook_receipts_table = Some(name.into());
        self
    }

    /// The webhook's secret (ARN or name).
    pub fn webhook_secret_arn(mut self, arn: impl Into<String>) -> Self {
        self.settings.webhook_secret_arn = Some(arn.into());
        self
    }

    /// The version-counters table.
    pub fn version_counters_table(mut self, name: impl Into<String>) -> Self {
        self.settings.version_counters_table = Some(name.into());
        self
    }

    /// Event bus for outbound events.
    pub fn event_bus_name(mut self, name: impl Into<String>) -> Self {
        self.settings.event_bus_name = Some(name.into());
        self
    }

    /// Knowledge Base id.
    pub fn knowledge_base_id(mut self, id: impl Into<String>) -> Self {
        self.settings.knowledge_base_id = Some(id.into());
        self
    }

    /// The knowledge base's bucket and the data source that accepted messages are synced with.
    pub fn past_messages(
        mut self,
        bucket: impl Into<String>,
        data_source_id: Option<String>,
    ) -> Self {
        self.settings.knowledge_base_bucket = Some(bucket.into());
        self.settings.past_messages_data_source_id = data_source_id;
        self
    }

    /// Re-ranks `Retrieve` results with the Bedrock re-ranking model `model_arn`, over
    /// `candidates` first-stage results (`None`:
    /// [`upsell_core::kb::RerankSettings::DEFAULT_CANDIDATES`]).
    pub fn kb_reranking(mut self, model_arn: impl Into<String>, candidates: Option<usize>) -> Self {
        self.settings.kb_rerank_model_arn = Some(model_arn.into());
        self.settings.kb_rerank_candidates = candidates;
        self
    }

    /// The customer vector index: `index` in the S3 Vectors bucket `bucket`.
    pub fn customer_vector_index(
        mut self,
        bucket: impl Into<String>,
        index: impl Into<String>,
    ) -> Self {
        self.settings.customer_vector_bucket = Some(bucket.into());
        self.settings.customer_vector_index = Some(index.into());
        self
    }

    /// Embedding model id and dimensions.
    pub fn embedding_model(mut self, model_id: impl Into<String>, dimensions: usize) -> Self {
        self.settings.embedding_model_id = Some(model_id.into());
        self.settings.embedding_dimensions = Some(dimensions);
        self
    }

    /// Loads the SDK configuration (Region, credentials from the Lambda environment or the
    /// default chain) and creates the clients.
    pub async fn build(self) -> AwsContext {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(region) = self.region {
            loader = loader.region(Region::new(region));
        }
        if self.test_credentials {
            loader = loader.test_credentials();
        }
        if let Some(n) = self.max_attempts {
            loader = loader.retry_config(RetryConfig::standard().with_max_attempts(n));
        }
        let mut timeouts = TimeoutConfig::builder().connect_timeout(Duration::from_secs(3));
        if let Some(t) = self.attempt_timeout {
            timeouts = timeouts.operation_attempt_timeout(t);
        }
        loader = loader.timeout_config(timeouts.build());
        let config = loader.load().await;
        AwsContext::from_sdk_config(config, self.settings, self.endpoint_url.is_some())
    }
}

/// The SDK configuration and clients, built once; hands out adapters (cheap clones).
#[derive(Debug, Clone)]
pub struct AwsContext {
    config: SdkConfig,
    settings: Settings,
    dynamodb: aws_sdk_dynamodb::Client,
    bedrock: aws_sdk_bedrockruntime::Client,
    bedrock_agent: aws_sdk_bedrockagentruntime::Client,
    eventbridge: aws_sdk_eventbridge::Client,
    secretsmanager: aws_sdk_secretsmanager::Client,
    s3: aws_sdk_s3::Client,
    bedrock_agent_control: aws_sdk_bedrockagent::Client,
    s3vectors: aws_sdk_s3vectors::Client,
}

impl AwsContext {
    /// Everything from the environment: the Lambda mains call this once per container.
    pub async fn from_env() -> Result<AwsContext, ConfigError> {
        Ok(AwsContextBuilder::from_env()?.build().await)
    }

    /// A builder with nothing set (tests and tools).
    pub fn builder() -> AwsContextBuilder {
        AwsContextBuilder::default()
    }

    fn from_sdk_config(
        config: SdkConfig,
        settings: Settings,
        endpoint_override: bool,
    ) -> AwsContext {
        // Behind an endpoint override (moto, canned servers) buckets go in the path, not the host.
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(endpoint_override)
            .build();
        AwsContext {
            s3: aws_sdk_s3::Client::from_conf(s3),
            bedrock_agent_control: aws_sdk_bedrockagent::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            bedrock: aws_sdk_bedrockruntime::Client::new(&config),
            bedrock_agent: aws_sdk_bedrockagentruntime::Client::new(&config),
            eventbridge: aws_sdk_eventbridge::Client::new(&config),
            secretsmanager: aws_sdk_secretsmanager::Client::new(&config),
            s3vectors: aws_sdk_s3vectors::Client::new(&config),
            config,
            settings,
        }
    }

    /// The loaded SDK configuration (for clients this crate does not wrap).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    /// The DynamoDB client.
    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    /// The Bedrock Runtime client.
    pub fn bedrock(&self) -> &aws_sdk_bedrockruntime::Client {
        &self.bedrock
    }

    /// The Bedrock Agent Runtime client.
    pub fn bedrock_agent(&self) -> &aws_sdk_bedrockagentruntime::Client {
        &self.bedrock_agent
    }

    /// The EventBridge client.
    pub fn eventbridge(&self) -> &aws_sdk_eventbridge::Client {
        &self.eventbridge
    }

    /// The Secrets Manager client.
    pub fn secretsmanager(&self) -> &aws_sdk_secretsmanager::Client {
        &self.secretsmanager
    }

    /// The S3 client.
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    /// The Bedrock Agent client (control plane: data sources, ingestion jobs).
    pub fn bedrock_agent_control(&self) -> &aws_sdk_bedrockagent::Client {
        &self.bedrock_agent_control
    }

    /// The S3 Vectors client.
    pub fn s3vectors(&self) -> &aws_sdk_s3vectors::Client {
        &self.s3vectors
    }

    fn need(value: &Option<String>, name: &'static str) -> Result<String, ConfigError> {
        value.clone().ok_or(ConfigError::MissingEnv(name))
    }

    /// The agent registry on `UPSELL_AGENT_REGISTRY_TABLE`.
    pub fn agent_registry(&self) -> Result<DynamoAgentRegistry, ConfigError> {
        let table = Self::need(
            &self.settings.agent_registry_table,
            env::AGENT_REGISTRY_TABLE,
        )?;
        Ok(DynamoAgentRegistry::new(self.dynamodb.clone(), table))
    }

    /// The message store on `UPSELL_MESSAGES_TABLE`.
    pub fn message_store(&self) -> Result<DynamoMessageStore, ConfigError> {
        let table = Self::need(&self.settings.messages_table, env::MESSAGES_TABLE)?;
        Ok(DynamoMessageStore::new(self.dynamodb.clone(), table))
    }

    /// The drift windows (claimed events and their message records) on `UPSELL_MESSAGES_TABLE`.
    pub fn drift_source(&self) -> Result<DynamoDriftSource, ConfigError> {
        let table = Self::need(&self.settings.messages_table, env::MESSAGES_TABLE)?;
        Ok(DynamoDriftSource::new(self.dynamodb.clone(), table))
    }

    /// The feature store on `UPSELL_FEATURE_STORE_TABLE`.
    pub fn feature_store(&self) -> Result<DynamoFeatureStore, ConfigError> {
        let table = Self::need(&self.settings.feature_store_table, env::FEATURE_STORE_TABLE)?;
        Ok(DynamoFeatureStore::new(self.dynamodb.clone(), table))
    }

    /// The evaluation cases on `UPSELL_EVALUATIONS_TABLE`.
    pub fn evaluation_store(&self) -> Result<DynamoEvaluationStore, ConfigError> {
        let table = Self::need(&self.settings.evaluations_table, env::EVALUATIONS_TABLE)?;
        Ok(DynamoEvaluationStore::new(self.dynamodb.clone(), table))
    }

    /// Per-version live counters (`UPSELL_VERSION_COUNTERS_TABLE`).
    pub fn version_counters(&self) -> Result<DynamoVersionCounters, ConfigError> {
        let table = Self::need(
            &self.settings.version_counters_table,
            env::VERSION_COUNTERS_TABLE,
        )?;
        Ok(DynamoVersionCounters::new(self.dynamodb.clone(), table))
    }

    /// The customer contacts, in the feature-store table (`UPSELL_FEATURE_STORE_TABLE`).
    pub fn contact_store(&self) -> Result<DynamoContactStore, ConfigError> {
        let table = Self::need(&self.settings.feature_store_table, env::FEATURE_STORE_TABLE)?;
        Ok(DynamoContactStore::new(self.dynamodb.clone(), table))
    }

    /// The Bedrock Converse model provider (the model id comes with each request).
    pub fn model_provider(&self) -> BedrockModelProvider {
        BedrockModelProvider::new(self.bedrock.clone())
    }

    /// The Knowledge Base retriever on `UPSELL_KNOWLEDGE_BASE_ID`, re-ranked when
    /// `UPSELL_KB_RERANK_MODEL_ARN` is set (over `UPSELL_KB_RERANK_CANDIDATES` results).
    pub fn knowledge_base(&self) -> Result<BedrockKnowledgeBase, ConfigError> {
        let id = Self::need(&self.settings.knowledge_base_id, env::KNOWLEDGE_BASE_ID)?;
        let rerank = self.settings.kb_rerank_model_arn.clone().map(|arn| {
            (
                arn,
                self.settings
                    .kb_rerank_candidates
                    .unwrap_or(RerankSettings::DEFAULT_CANDIDATES),
            )
        });
        Ok(BedrockKnowledgeBase::new(self.bedrock_agent.clone(), id)
            .with_hybrid_search(self.settings.kb_hybrid_search)
            .with_reranking(rerank))
    }

    /// Accepted messages as knowledge-base documents in `UPSELL_KNOWLEDGE_BASE_BUCKET`, synced
    /// into the knowledge base `UPSELL_KNOWLEDGE_BASE_ID` by its data source
    /// `UPSELL_PAST_MESSAGES_DATA_SOURCE_ID` (both needed for the sync; without the data source
    /// the objects wait for the next sync).
    pub fn past_successes(&self) -> Result<S3PastSuccesses, ConfigError> {
        let bucket = Self::need(
            &self.settings.knowledge_base_bucket,
            env::KNOWLEDGE_BASE_BUCKET,
        )?;
        let ingestion = match &self.settings.past_messages_data_source_id {
            Some(ds) => Some(IngestionTarget::new(
                self.bedrock_agent_control.clone(),
                Self::need(&self.settings.knowledge_base_id, env::KNOWLEDGE_BASE_ID)?,
                ds.clone(),
            )),
            None => None,
        };
        Ok(S3PastSuccesses::new(self.s3.clone(), bucket, ingestion))
    }

    /// The customer vector index `UPSELL_CUSTOMER_VECTOR_INDEX` in the S3 Vectors bucket
    /// `UPSELL_CUSTOMER_VECTOR_BUCKET`.
    pub fn customer_index(&self) -> Result<S3VectorsCustomerIndex, ConfigError> {
        let bucket = Self::need(
            &self.settings.customer_vector_bucket,
            env::CUSTOMER_VECTOR_BUCKET,
        )?;
        let index = Self::need(
            &self.settings.customer_vector_index,
            env::CUSTOMER_VECTOR_INDEX,
        )?;
        Ok(S3VectorsCustomerIndex::new(
            self.s3vectors.clone(),
            bucket,
            index,
        ))
    }

    /// The Titan embedder (`UPSELL_EMBEDDING_MODEL_ID`, `UPSELL_EMBEDDING_DIMENSIONS`).
    pub fn embedder(&self) -> TitanEmbedder {
        TitanEmbedder::new(
            self.bedrock.clone(),
            self.settings
                .embedding_model_id
                .clone()
                .unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL_ID.to_owned()),
            self.settings
                .embedding_dimensions
                .unwrap_or(DEFAULT_EMBEDDING_DIMENSIONS),
        )
    }

    /// The webhook's idempotency receipts on `UPSELL_WEBHOOK_RECEIPTS_TABLE`.
    pub fn webhook_receipts(&self) -> Result<DynamoIngestReceipts, ConfigError> {
        let table = Self::need(
            &self.settings.webhook_receipts_table,
            env::WEBHOOK_RECEIPTS_TABLE,
        )?;
        Ok(DynamoIngestReceipts::new(self.dynamodb.clone(), table))
    }

    /// The webhook's HMAC secret named by `UPSELL_WEBHOOK_SECRET_ARN`.
    pub fn webhook_secret(&self) -> Result<SecretsManagerSecret, ConfigError> {
        let arn = Self::need(&self.settings.webhook_secret_arn, env::WEBHOOK_SECRET_ARN)?;
        Ok(SecretsManagerSecret::new(self.secretsmanager.clone(), arn))
    }

    /// The event publisher on `UPSELL_EVENT_BUS_NAME`.
    pub fn event_publisher(&self) -> Result<EventBridgePublisher, ConfigError> {
        let bus = Self::need(&self.settings.event_bus_name, env::EVENT_BUS_NAME)?;
        Ok(EventBridgePublisher::new(self.eventbridge.clone(), bus))
    }
}
