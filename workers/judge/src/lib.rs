//! The judge worker: decides whether a generated message may be sent.
//!
//! 1. Deterministic brand checks (`upsell_models::brand`, rules from
//!    `knowledge-base/brand-rules.json`): banned phrases, length, first-name greeting, exactly one
//!    catalogue offering at its catalogue price, no personal data, the opt-out line, no pressure,
//!    and the guards against hostile models (`upsell_core::guard`: links, foreign contact
//!    details, payment requests, other prices or services, text addressed to the judge).
//!    Any violation rejects the message without a model call, whatever a model would say.
//! 2. The model judge: the judge agent's prompt with the message, brand guidelines, catalogue and
//!    rubric; it must answer JSON `{score 0..10, approved, reasons[], feedback}`. Malformed output
//!    is `ModelOutputInvalid` (the state machine retries it), never a crash and never an approval.
//!    A message is approved only when the model approves it *and* its score reaches the judge
//!    agent's approval threshold.
//!
//! The output carries the attempt history (every message and verdict so far) and the feedback
//! for the generator's next attempt.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use upsell_core::agent::{AgentRef, AgentRole};
use upsell_core::grounding::{UNSUPPORTED_CLAIM, check_claims};
use upsell_core::guard::MAX_MODEL_ANSWER_BYTES;
use upsell_core::message::{AttemptRecord, JudgeVerdict, TokenUsage};
use upsell_core::ports::dims;
use upsell_core::ports::{
    AgentRegistry, ChatMessage, ChatRole, ConverseRequest, ModelError, ModelProvider, PortError,
};
use upsell_core::telemetry::JUDGE_SCORE;
use upsell_core::worker::{ErrorName, Figures, StableError, Worker};
use upsell_models::agents::{AgentSelector, resolve};
use upsell_models::brand::{BrandRules, CheckContext, Violation, check_message};
use upsell_models::catalogue::Catalogue;
use upsell_models::pricing::model_figures;
use upsell_models::prompt::{
    CatalogueLine, Facts, JudgeContext, PreviousAttempt, PromptError, PromptVars,
};
use upsell_models::seed::{BRAND_GUIDELINES, JUDGE_ID};

/// The generate step's output, as far as the judge needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Generation {
    /// The message to judge.
    pub message: String,
    /// Generator version that wrote it.
    pub generator: AgentRef,
    /// Generator tokens.
    #[serde(default)]
    pub usage: TokenUsage,
}

/// Input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// Triggering event id.
    pub event_id: String,
    /// Attempt judged, from 1.
    pub attempt: u32,
    /// Judge version; absent = the production version of `upsell-judge`.
    #[serde(default)]
    pub judge: Option<AgentSelector>,
    /// The enrich step's facts (customer, offer).
    pub facts: Facts,
    /// What the generator wrote.
    pub generation: Generation,
    /// Earlier attempts of this event.
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
}

/// Output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Triggering event id.
    pub event_id: String,
    /// Attempt judged.
    pub attempt: u32,
    /// Whether the message may be sent.
    pub approved: bool,
    /// The final verdict (brand checks and model combined).
    pub verdict: JudgeVerdict,
    /// Judge version.
    pub judge: AgentRef,
    /// The judge's model id (for the cost).
    pub model_id: String,
    /// Generator version that wrote the message.
    pub generator: AgentRef,
    /// Judge tokens (0 when the brand checks rejected without a model call).
    pub usage: TokenUsage,
    /// Model call latency in milliseconds.
    pub latency_ms: u64,
    /// Brand rules the message broke.
    pub brand_violations: Vec<Violation>,
    /// Every attempt so far, this one last.
    pub history: Vec<AttemptRecord>,
    /// What the generator's next attempt gets.
    pub feedback: PreviousAttempt,
}

/// Worker errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The registry failed or has no such agent.
    #[error(transparent)]
    Registry(#[from] PortError),
    /// The judge's template does not render.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// The model failed or answered something that is not a verdict.
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

/// Default approval threshold when the judge agent sets none.
pub const DEFAULT_THRESHOLD: u8 = 7;

/// Parses a model's verdict: one JSON object (optionally inside a code fence or surrounded by
/// text) with an integer `score` 0..=10 and a boolean `approved`; `reasons` (strings) and
/// `feedback` (string) are optional. Anything else is an error naming what is wrong.
pub fn parse_verdict(text: &str) -> Result<JudgeVerdict, String> {
    if text.len() > MAX_MODEL_ANSWER_BYTES {
        return Err(format!(
            "the answer is {} bytes; a verdict may have at most {MAX_MODEL_ANSWER_BYTES}",
            text.len()
        ));
    }
    let start = text.find('{').ok_or("the answer contains no JSON object")?;
    let end = text
        .rfind('}')
        .ok_or("the answer contains no JSON object")?;
    if end < start {
        return Err("the answer contains no JSON object".into());
    }
    let v: Value = serde_json::from_str(&text[start..=end])
        .map_err(|e| format!("the answer is not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("the verdict must be a JSON object")?;
    let score = match obj.get("score") {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .filter(|s| *s <= 10)
            .ok_or_else(|| format!("score must be an integer 0..10, got {n}"))?,
        Some(other) => return Err(format!("score must be an integer 0..10, got {other}")),
        None => return Err("missing `score`".into()),
    };
    let approved = match obj.get("approved") {
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("approved must be true or false, got {other}")),
        None => return Err("missing `approved`".into()),
    };
    let reasons = match obj.get("reasons") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or("reasons must be strings")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("reasons must be an array of strings".into()),
    };
    let feedback = match obj.get("feedback") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("feedback must be a string".into()),
    };
    Ok(JudgeVerdict {
        score: score as u8,
        approved,
        reasons,
        feedback,
    })
}

/// The catalogue as the judge prompt lists it (the built-in catalogue does not change while
/// the process runs).
fn catalogue_lines() -> &'static [CatalogueLine] {
    static LINES: OnceLock<Vec<CatalogueLine>> = OnceLock::new();
    LINES.get_or_init(|| {
        Catalogue::builtin()
            .offerings()
            .iter()
            .map(CatalogueLine::from)
            .collect()
    })
}

fn violations_verdict(violations: &[Violation]) -> JudgeVerdict {
    let mut reasons: Vec<String> = violations.iter().map(|v| v.code.clone()).collect();
    reasons.dedup();
    let n = violations.len() as u8;
    JudgeVerdict {
        score: 6u8.saturating_sub(2 * n),
        approved: false,
        reasons,
        feedback: violations
            .iter()
            .map(|v| v.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Judges one message.
pub async fn handle(input: Input, deps: &Deps) -> Result<Output, WorkerError> {
    let selector = input
        .judge
        .clone()
        .unwrap_or_else(|| AgentSelector::production(JUDGE_ID));
    let spec = resolve(deps.registry.as_ref(), &selector, AgentRole::Judge).await?;
    let threshold = spec.approval_threshold.unwrap_or(DEFAULT_THRESHOLD);
    let facts = &input.facts;
    let catalogue = Catalogue::builtin();
    let mut violations = check_message(
        &input.generation.message,
        &CheckContext {
            first_name: &facts.customer.first_name,
            offering: &facts.offer.offering,
            discount_percent: facts.offer.discount_percent,
            services_bought: &facts.customer.services_bought,
            private_terms: &[],
        },
        BrandRules::builtin(),
        catalogue,
    );
    // Claims about similar customers must be backed by `facts.similarCustomers`.
    if let Some(message) = check_claims(
        &input.generation.message,
        facts.offer.service,
        facts.similar_customers.as_ref(),
    ) {
        violations.push(Violation {
            code: UNSUPPORTED_CLAIM.to_owned(),
            message,
        });
    }

    let (verdict, usage, latency_ms) = if violations.is_empty() {
        let ctx = JudgeContext {
            event_id: input.event_id.clone(),
            attempt: input.attempt,
            message: input.generation.message.clone(),
            first_name: facts.customer.first_name.clone(),
            season: facts.season,
            offer: facts.offer.clone(),
            brand_guidelines: BRAND_GUIDELINES.to_owned(),
            catalogue: catalogue_lines().to_vec(),
            approval_threshold: threshold,
            similar_customers: facts.similar_customers.clone(),
        };
        // One conversion of the context for both templates.
        let vars = PromptVars::new(&ctx)?;
        let request = ConverseRequest {
            model_id: spec.model_id.clone(),
            system: vars.render("system", &spec.prompt.system)?,
            messages: vec![ChatMessage {
                role: ChatRole::User,
                text: vars.render("user", &spec.prompt.user)?,
            }],
            inference: spec.config.clone(),
        };
        let started = Instant::now();
        let response = deps.model.converse(&request).await?;
        let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut v = parse_verdict(&response.text).map_err(|e| {
            let snippet: String = response.text.chars().take(200).collect();
            ModelError::InvalidOutput(format!("judge verdict: {e}; answer began: {snippet:?}"))
        })?;
        if v.approved && v.score < threshold {
            v.approved = false;
            v.reasons.push("below-threshold".into());
            if v.feedback.is_empty() {
                v.feedback = format!(
                    "score {} is below the approval threshold {threshold}",
                    v.score
                );
            }
        }
        if v.approved {
            v.reasons.clear();
        } else if v.feedback.trim().is_empty() {
            v.feedback = if v.reasons.is_empty() {
                "The judge rejected the message without feedback; rewrite it closer to the brand guidelines.".into()
            } else {
                format!("Fix: {}.", v.reasons.join(", "))
            };
        }
        (v, response.usage, latency)
    } else {
        (violations_verdict(&violations), TokenUsage::default(), 0)
    };

    let mut history = input.history;
    history.retain(|a| a.attempt != input.attempt);
    history.push(AttemptRecord {
        attempt: input.attempt,
        message: input.generation.message.clone(),
        verdict: verdict.clone(),
        generator_usage: input.generation.usage,
        judge_usage: usage,
    });
    Ok(Output {
        event_id: input.event_id,
        attempt: input.attempt,
        approved: verdict.approved,
        feedback: PreviousAttempt {
            message: input.generation.message,
            feedback: verdict.feedback.clone(),
            reasons: verdict.reasons.clone(),
        },
        verdict,
        judge: spec.agent_ref(),
        model_id: spec.model_id,
        generator: input.generation.generator,
        usage,
        latency_ms,
        brand_violations: violations,
        history,
    })
}

#[async_trait::async_trait]
impl Worker for Deps {
    const NAME: &'static str = "judge";
    const STATE: &'static str = "Judge";
    type Input = Input;
    type Output = Output;
    type Error = WorkerError;

    async fn handle(&self, input: Input) -> Result<Output, WorkerError> {
        handle(input, self).await
    }

    fn agent(output: &Output) -> Option<&AgentRef> {
        Some(&output.judge)
    }

    fn figures(output: &Output, out: &mut Figures) {
        model_figures(
            out,
            Self::STATE,
            &output.judge,
            &output.model_id,
            output.usage,
        );
        let version = output.generator.version.to_string();
        out.add(
            &JUDGE_SCORE,
            f64::from(output.verdict.score),
            &[
                (dims::AGENT_ID, &output.generator.agent_id),
                (dims::AGENT_VERSION, &version),
            ],
        );
    }
}

impl StableError for WorkerError {
    fn error_name(&self) -> ErrorName {
        self.error_type()
    }
}
