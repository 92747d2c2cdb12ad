//! AWS adapters for the upsell-flow ports: DynamoDB (agent registry, message store, feature
//! store, customer contacts, per-version counters), Bedrock Runtime (Converse model provider,
//! Titan Text Embeddings v2), Bedrock Agent Runtime (`Retrieve` over a Knowledge Base),
//! EventBridge (`PutEvents`), S3 + Bedrock Agent (accepted messages as knowledge-base
//! documents and their data-source sync), S3 Vectors (the customer vector index), the
//! webhook's idempotency receipts (DynamoDB) and its HMAC secret (Secrets Manager).
//! (CloudWatch metrics are EMF lines on stdout, written by `upsell-lambda`.)
//!
//! This is the only library crate that depends on the AWS SDK. Lambda mains build one
//! [`AwsContext`] per container with [`AwsContext::from_env`] and take their adapters from it.
//! Every SDK error is mapped to [`PortError`](upsell_core::ports::PortError) or
//! [`ModelError`](upsell_core::ports::ModelError) by service error code and HTTP status (see
//! [`error`]), so the state machine's Retry and Catch see the same stable names as locally.

pub mod bedrock;
pub mod context;
pub mod customer_index;
pub mod dynamo;
pub mod error;
pub mod eventbridge;
pub mod kb;
pub mod outcomes;
pub mod secrets;

pub use bedrock::BedrockModelProvider;
pub use context::{AwsContext, AwsContextBuilder, ConfigError, env};
pub use customer_index::S3VectorsCustomerIndex;
pub use dynamo::contacts::DynamoContactStore;
pub use dynamo::counters::DynamoVersionCounters;
pub use dynamo::drift::DynamoDriftSource;
pub use dynamo::evaluations::DynamoEvaluationStore;
pub use dynamo::features::DynamoFeatureStore;
pub use dynamo::messages::DynamoMessageStore;
pub use dynamo::receipts::DynamoIngestReceipts;
pub use dynamo::registry::DynamoAgentRegistry;
pub use dynamo::tables::{self, TableKind};
pub use eventbridge::EventBridgePublisher;
pub use kb::{BedrockKnowledgeBase, TitanEmbedder};
pub use outcomes::{IngestionTarget, S3PastSuccesses};
pub use secrets::SecretsManagerSecret;

/// The SDK crates, re-exported so that callers use the very versions this crate was built with.
pub mod sdk {
    pub use aws_config;
    pub use aws_sdk_bedrockagent as bedrockagent;
    pub use aws_sdk_bedrockagentruntime as bedrockagentruntime;
    pub use aws_sdk_bedrockruntime as bedrockruntime;
    pub use aws_sdk_dynamodb as dynamodb;
    pub use aws_sdk_eventbridge as eventbridge;
    pub use aws_sdk_s3 as s3;
    pub use aws_sdk_s3vectors as s3vectors;
    pub use aws_sdk_secretsmanager as secretsmanager;
}
