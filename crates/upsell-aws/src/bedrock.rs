//! [`ModelProvider`] on the Bedrock Converse API. The model id and inference settings come with
//! each request (from the agent's registry entry), so one provider serves every agent version.
//!
//! Errors: ThrottlingException / ServiceQuotaExceeded / HTTP 429 -> `ModelError::Throttled`;
//! 5xx, ModelTimeout, ModelNotReady, timeouts and network failures -> `Transient`;
//! ValidationException, AccessDenied, unknown model -> `InvalidRequest`; an answer without text
//! -> `InvalidOutput` (see [`crate::error`]).

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, InferenceConfiguration, Message,
    StopReason as BedrockStopReason, SystemContentBlock,
};
use upsell_core::message::{StopReason, TokenUsage};
use upsell_core::ports::{ChatRole, ConverseRequest, ConverseResponse, ModelError, ModelProvider};

use crate::error::model_error;

/// Bedrock Converse.
#[derive(Debug, Clone)]
pub struct BedrockModelProvider {
    client: Client,
}

impl BedrockModelProvider {
    /// A provider on this Bedrock Runtime client.
    pub fn new(client: Client) -> Self {
        BedrockModelProvider { client }
    }
}

/// Our stop reason for Bedrock's.
pub fn stop_reason(reason: &BedrockStopReason) -> StopReason {
    match reason {
        BedrockStopReason::EndTurn => StopReason::EndTurn,
        BedrockStopReason::MaxTokens | BedrockStopReason::ModelContextWindowExceeded => {
            StopReason::MaxTokens
        }
        BedrockStopReason::StopSequence => StopReason::StopSequence,
        BedrockStopReason::ContentFiltered | BedrockStopReason::GuardrailIntervened => {
            StopReason::ContentFiltered
        }
        _ => StopReason::Other,
    }
}

fn token_count(n: i32) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl ModelProvider for BedrockModelProvider {
    async fn converse(&self, request: &ConverseRequest) -> Result<ConverseResponse, ModelError> {
        if request.model_id.trim().is_empty() {
            return Err(ModelError::InvalidRequest("model id is empty".into()));
        }
        if request.messages.is_empty() {
            return Err(ModelError::InvalidRequest(
                "a conversation needs at least one message".into(),
            ));
        }
        let mut messages = Vec::with_capacity(request.messages.len());
        for m in &request.messages {
            let role = match m.role {
                ChatRole::User => ConversationRole::User,
                ChatRole::Assistant => ConversationRole::Assistant,
            };
            messages.push(
                Message::builder()
                    .role(role)
                    .content(ContentBlock::Text(m.text.clone()))
                    .build()
                    .map_err(|e| ModelError::InvalidRequest(format!("bad message: {e}")))?,
            );
        }
        let inference = InferenceConfiguration::builder()
            .max_tokens(i32::try_from(request.inference.max_tokens).unwrap_or(i32::MAX))
            .temperature(request.inference.temperature)
            .set_top_p(request.inference.top_p)
            .build();
        let mut call = self
            .client
            .converse()
            .model_id(&request.model_id)
            .set_messages(Some(messages))
            .inference_config(inference);
        // Bedrock rejects blank text blocks; an empty system prompt means none.
        if !request.system.trim().is_empty() {
            call = call.system(SystemContentBlock::Text(request.system.clone()));
        }
        let out = call
            .send()
            .await
            .map_err(|e| model_error(&format!("Bedrock Converse ({})", request.model_id), e))?;

        let text = match out.output() {
            Some(ConverseOutput::Message(message)) => message
                .content()
                .iter()
                .filter_map(|block| block.as_text().ok())
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        };
        let stop = stop_reason(out.stop_reason());
        if text.trim().is_empty() {
            return Err(ModelError::InvalidOutput(format!(
                "model {} returned no text (stop reason {})",
                request.model_id,
                out.stop_reason().as_str()
            )));
        }
        let usage = out
            .usage()
            .map(|u| TokenUsage {
                input_tokens: token_count(u.input_tokens()),
                output_tokens: token_count(u.output_tokens()),
            })
            .unwrap_or_default();
        Ok(ConverseResponse {
            text,
            usage,
            stop_reason: stop,
        })
    }
}
