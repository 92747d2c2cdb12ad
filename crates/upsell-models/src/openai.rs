//! A [`ModelProvider`] for OpenAI-compatible chat servers: Ollama (`http://127.0.0.1:11434`),
//! llama.cpp's `llama-server`, vLLM and the like. One `POST {endpoint}/v1/chat/completions`
//! per call (non-streaming); the system prompt becomes the first `system` message.
//!
//! Errors map to the stable model errors: HTTP 429 -> throttled; 5xx, timeouts and connection
//! failures -> transient; other 4xx (unknown model, bad parameters) -> invalid request; a 200
//! without an answer -> invalid output. Plain HTTP only (local servers); the blocking call runs
//! on tokio's blocking pool.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use upsell_core::message::{StopReason, TokenUsage};
use upsell_core::ports::{ChatRole, ConverseRequest, ConverseResponse, ModelError, ModelProvider};

/// Client for one OpenAI-compatible server.
#[derive(Clone)]
pub struct OpenAiCompatible {
    endpoint: String,
    model_override: Option<String>,
    api_key: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("endpoint", &self.endpoint)
            .field("model_override", &self.model_override)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    max_tokens: u32,
    stream: bool,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireAnswer>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireAnswer {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl OpenAiCompatible {
    /// A client for the server at `endpoint` (e.g. `http://127.0.0.1:11434`), with a
    /// 120-second timeout per call.
    pub fn new(endpoint: impl Into<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        OpenAiCompatible {
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            model_override: None,
            api_key: None,
            agent,
        }
    }

    /// Uses `model` for every call instead of the agent's Bedrock model id
    /// (`--model-id llama3.2:3b`).
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model_override = Some(model.into());
        self
    }

    /// Sends `Authorization: Bearer <key>`.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The URL called.
    pub fn url(&self) -> String {
        format!("{}/v1/chat/completions", self.endpoint)
    }

    fn call(&self, request: &ConverseRequest) -> Result<ConverseResponse, ModelError> {
        let model = self.model_override.as_deref().unwrap_or(&request.model_id);
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if !request.system.is_empty() {
            messages.push(WireMessage {
                role: "system",
                content: &request.system,
            });
        }
        messages.extend(request.messages.iter().map(|m| WireMessage {
            role: match m.role {
                ChatRole::User => "user",
                ChatRole::Assistant => "assistant",
            },
            content: &m.text,
        }));
        let body = WireRequest {
            model,
            messages,
            temperature: request.inference.temperature,
            top_p: request.inference.top_p,
            max_tokens: request.inference.max_tokens,
            stream: false,
        };
        let url = self.url();
        let mut req = self.agent.post(&url);
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let mut resp = req.send_json(&body).map_err(|e| transport_error(&url, e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ModelError::Transient(format!("reading the answer of {url}: {e}")))?;
        if status != 200 {
            let detail: String = text.chars().take(300).collect();
            let msg = format!("{url} answered HTTP {status} for model {model}: {detail}");
            return Err(match status {
                429 => ModelError::Throttled(msg),
                408 | 500..=599 => ModelError::Transient(msg),
                _ => ModelError::InvalidRequest(msg),
            });
        }
        let wire: WireResponse = serde_json::from_str(&text).map_err(|e| {
            ModelError::InvalidOutput(format!(
                "{url} answered 200 with a body that is not a chat completion: {e}"
            ))
        })?;
        let choice = wire.choices.into_iter().next().ok_or_else(|| {
            ModelError::InvalidOutput(format!("{url} answered 200 with no choices"))
        })?;
        let answer = choice
            .message
            .and_then(|m| m.content)
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                ModelError::InvalidOutput(format!("{url} answered with empty content"))
            })?;
        let usage = wire.usage.map_or_else(
            || TokenUsage {
                input_tokens: crate::offline::estimate_tokens(&request.system)
                    + request
                        .messages
                        .iter()
                        .map(|m| crate::offline::estimate_tokens(&m.text))
                        .sum::<u64>(),
                output_tokens: crate::offline::estimate_tokens(&answer),
            },
            |u| TokenUsage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
            },
        );
        let stop_reason = match choice.finish_reason.as_deref() {
            Some("stop") | None => StopReason::EndTurn,
            Some("length") => StopReason::MaxTokens,
            Some("content_filter") => StopReason::ContentFiltered,
            Some(_) => StopReason::Other,
        };
        Ok(ConverseResponse {
            text: answer,
            usage,
            stop_reason,
        })
    }
}

fn transport_error(url: &str, e: ureq::Error) -> ModelError {
    match e {
        ureq::Error::BadUri(m) => {
            ModelError::InvalidRequest(format!("bad endpoint URL {url}: {m}"))
        }
        other => ModelError::Transient(format!("calling {url}: {other}")),
    }
}

#[async_trait]
impl ModelProvider for OpenAiCompatible {
    async fn converse(&self, request: &ConverseRequest) -> Result<ConverseResponse, ModelError> {
        let this = self.clone();
        let request = request.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(move || this.call(&request))
                .await
                .map_err(|e| ModelError::Other(format!("model call task failed: {e}")))?,
            // Not inside tokio: block the current thread.
            Err(_) => this.call(&request),
        }
    }
}
