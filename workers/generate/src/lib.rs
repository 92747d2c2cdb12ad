//! The generate worker: loads the generator agent version chosen by the state machine, renders
//! its prompt templates (minijinja) with the customer's facts, the offer, retrieved examples and
//! the previous attempt's feedback, calls the model with the agent's model id and inference
//! settings, and returns the message with its token usage and attempt number.
//!
//! Model throttling and transient failures surface as `ModelThrottled` / `ModelTransient` so
//! the state machine retries them with backoff; the feedback loop itself lives in the ASL.

use std::sync::Arc;
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use upsell_core::agent::{AgentRef, AgentRole};
use upsell_core::guard::MAX_MODEL_ANSWER_BYTES;
use upsell_core::message::{StopReason, TokenUsage};
use upsell_core::ports::{
    AgentRegistry, ChatMessage, ChatRole, ConverseRequest, ModelError, ModelProvider, PortError,
};
use upsell_core::worker::{ErrorName, Figures, StableError, Worker};
use upsell_models::agents::{AgentSelector, resolve};
use upsell_models::pricing::model_figures;
use upsell_models::prompt::{
    Example, Facts, GenerationContext, PreviousAttempt, PromptError, PromptVars,
};

/// Input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// Triggering event id.
    pub event_id: String,
    /// Attempt number, from 1 (the state machine increments it).
    #[serde(default = "one")]
    pub attempt: u32,
    /// Generator version chosen by canary routing.
    pub generator: AgentSelector,
    /// The enrich step's facts.
    pub facts: Facts,
    /// Retrieved examples (empty when retrieval failed).
    #[serde(default)]
    pub examples: Vec<Example>,
    /// The previous attempt and the judge's feedback, on a retry.
    #[serde(default)]
    pub previous: Option<PreviousAttempt>,
}

fn one() -> u32 {
    1
}

/// Output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Triggering event id.
    pub event_id: String,
    /// Attempt number.
    pub attempt: u32,
    /// The agent's attempt budget (the state machine's loop bound).
    pub max_attempts: u32,
    /// Generator version that wrote it.
    pub generator: AgentRef,
    /// Model id used.
    pub model_id: String,
    /// The message.
    pub message: String,
    /// Tokens used.
    pub usage: TokenUsage,
    /// Why the model stopped.
    pub stop_reason: StopReason,
    /// Model call latency in milliseconds.
    pub latency_ms: u64,
}

/// Worker errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The registry failed or has no such agent.
    #[error(transparent)]
    Registry(#[from] PortError),
    /// The agent's template does not render.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl WorkerError {
    /// The stable error name the state machine matches.
    pub fn error_type(&self) -> ErrorName {
        match self {
            WorkerError::Registry(e) => e.error_type(),
            WorkerError::Prompt(_) => ErrorName::InvalidRequest,
            WorkerError::Model(e) => e.error_type(),
        }
    }
}

/// Ports the worker needs.
#[derive(Clone)]
pub struct Deps {
    /// Agent versions.
    pub registry: Arc<dyn AgentRegistry>,
    /// The model.
    pub model: Arc<dyn ModelProvider>,
}

/// Removes quotes a model may wrap its answer in.
fn clean(text: &str) -> String {
    let t = text.trim();
    let t = t
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(t);
    t.trim().to_owned()
}

/// Writes one message.
pub async fn handle(input: Input, deps: &Deps) -> Result<Output, WorkerError> {
    let spec = resolve(
        deps.registry.as_ref(),
        &input.generator,
        AgentRole::Generator,
    )
    .await?;
    let ctx = GenerationContext {
        event_id: input.event_id.clone(),
        attempt: input.attempt,
        facts: input.facts,
        examples: input.examples,
        previous: input.previous,
    };
    // One conversion of the context for both templates.
    let vars = PromptVars::new(&ctx)?;
    let system = vars.render("system", &spec.prompt.system)?;
    let user = vars.render("user", &spec.prompt.user)?;
    let request = ConverseRequest {
        model_id: spec.model_id.clone(),
        system,
        messages: vec![ChatMessage {
            role: ChatRole::User,
            text: user,
        }],
        inference: spec.config.clone(),
    };
    let started = Instant::now();
    let response = deps.model.converse(&request).await?;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if response.text.len() > MAX_MODEL_ANSWER_BYTES {
        return Err(ModelError::InvalidOutput(format!(
            "the generator answered {} bytes; a message may have at most {MAX_MODEL_ANSWER_BYTES}",
            response.text.len()
        ))
        .into());
    }
    let message = clean(&response.text);
    if message.is_empty() {
        return Err(ModelError::InvalidOutput(
            "the generator answered with an empty message".into(),
        )
        .into());
    }
    Ok(Output {
        event_id: input.event_id,
        attempt: input.attempt,
        max_attempts: spec.max_attempts,
        generator: spec.agent_ref(),
        model_id: spec.model_id,
        message,
        usage: response.usage,
        stop_reason: response.stop_reason,
        latency_ms,
    })
}

#[async_trait::async_trait]
impl Worker for Deps {
    const NAME: &'static str = "generate";
    const STATE: &'static str = "Generate";
    type Input = Input;
    type Output = Output;
    type Error = WorkerError;

    async fn handle(&self, input: Input) -> Result<Output, WorkerError> {
        handle(input, self).await
    }

    fn agent(output: &Output) -> Option<&AgentRef> {
        Some(&output.generator)
    }

    fn figures(output: &Output, out: &mut Figures) {
        model_figures(
            out,
            Self::STATE,
            &output.generator,
            &output.model_id,
            output.usage,
        );
    }
}

impl StableError for WorkerError {
    fn error_name(&self) -> ErrorName {
        self.error_type()
    }
}
