//! A degrading model stub, for rollout tests and demos on a laptop: an agent whose `modelId` is
//! `stub:degrade?after=N&share=S` is served by the offline model for its first `N` calls, then,
//! for a share `S` (0..=1) of conversations, answers with a vague message the judge rejects
//! (no name, no offer, no price): a model endpoint that holds up under evaluation and degrades
//! under live load. Which conversations degrade is decided by a hash of the conversation's
//! first user turn, so every attempt of one event degrades alike.
//!
//! [`StubRouter`] wraps the local provider: `stub:` model ids go to the stub, every other id to
//! the wrapped provider unchanged. The degradation lives in the agent's own folder (its
//! `agent.json`), never in a check of its name or version. Bedrock knows no `stub:` model, so
//! such an agent only runs locally.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use upsell_core::hash::fnv1a;
use upsell_core::message::{StopReason, TokenUsage};
use upsell_core::ports::{ConverseRequest, ConverseResponse, ModelError, ModelProvider};

use crate::offline::{OfflineModel, estimate_tokens};

/// The model id prefix the router sends to the stub.
pub const STUB_PREFIX: &str = "stub:";

/// A parsed `stub:degrade?after=N&share=S`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Degrade {
    /// Healthy calls before the degradation starts.
    pub after: u64,
    /// Share of conversations that degrade afterwards.
    pub share: f64,
}

impl Degrade {
    /// Parses a stub model id; the error names what is wrong.
    pub fn parse(model_id: &str) -> Result<Degrade, String> {
        let rest = model_id.strip_prefix("stub:degrade").ok_or_else(|| {
            format!("unknown stub model {model_id:?} (stub:degrade?after=N&share=S)")
        })?;
        let mut d = Degrade {
            after: 0,
            share: 1.0,
        };
        let query = rest.strip_prefix('?').unwrap_or(rest);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{model_id:?}: {pair:?} is not key=value"))?;
            match k {
                "after" => {
                    d.after = v
                        .parse()
                        .map_err(|_| format!("{model_id:?}: after={v:?} is not a count"))?;
                }
                "share" => {
                    d.share = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| (0.0..=1.0).contains(s))
                        .ok_or_else(|| format!("{model_id:?}: share={v:?} is not in 0..=1"))?;
                }
                other => return Err(format!("{model_id:?}: unknown parameter {other:?}")),
            }
        }
        Ok(d)
    }
}

/// Routes `stub:` model ids to the degrading stub and every other id to `inner`.
pub struct StubRouter {
    inner: Arc<dyn ModelProvider>,
    offline: OfflineModel,
    calls: Mutex<HashMap<String, u64>>,
}

impl StubRouter {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ModelProvider>) -> StubRouter {
        StubRouter {
            inner,
            offline: OfflineModel::new(),
            calls: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl ModelProvider for StubRouter {
    async fn converse(&self, request: &ConverseRequest) -> Result<ConverseResponse, ModelError> {
        if !request.model_id.starts_with(STUB_PREFIX) {
            return self.inner.converse(request).await;
        }
        let d = Degrade::parse(&request.model_id).map_err(ModelError::InvalidRequest)?;
        let n = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            let c = calls.entry(request.model_id.clone()).or_insert(0);
            *c += 1;
            *c
        };
        let first = request.messages.first().map_or("", |m| m.text.as_str());
        let bucket = (fnv1a(first.as_bytes()) % 10_000) as f64 / 10_000.0;
        if n <= d.after || bucket >= d.share {
            return self.offline.converse(request).await;
        }
        let text = "We have a special offer for you. Let us know.".to_owned();
        Ok(ConverseResponse {
            usage: TokenUsage {
                input_tokens: estimate_tokens(&request.system) + estimate_tokens(first),
                output_tokens: estimate_tokens(&text),
            },
            text,
            stop_reason: StopReason::EndTurn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_parameters() {
        assert_eq!(
            Degrade::parse("stub:degrade?after=40&share=0.5"),
            Ok(Degrade {
                after: 40,
                share: 0.5
            })
        );
        assert!(
            Degrade::parse("stub:degrade?share=2")
                .unwrap_err()
                .contains("share")
        );
        assert!(
            Degrade::parse("stub:other")
                .unwrap_err()
                .contains("unknown stub")
        );
        assert!(
            Degrade::parse("stub:degrade?x=1")
                .unwrap_err()
                .contains("\"x\"")
        );
    }
}
