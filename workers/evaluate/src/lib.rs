//! The evaluate worker: the Rust steps of `state-machines/agent-evaluation.asl.json`. The
//! messages themselves are written and judged by the generate and judge workers with pinned
//! versions; this worker only prepares and keeps score.
//!
//! - `plan`: resolves the candidate, the baseline (default: the production version of the same
//!   agent) and the shared agent (the production judge for a generator candidate, the
//!   production generator for a judge candidate) to pinned versions.
//! - `facts`: validates one historical event and works out what the enrich step would have
//!   produced then, from the customer's features and contact *as known at the event's time*
//!   ([`CustomerTimeline`]): nothing that happened later leaks in.
//! - `record`: turns the two versions' generate and judge results for one event into an
//!   [`EvalCase`] (cost and latency included) and stores it.
//! - `report`: reads every case, computes the statistics and the decision
//!   ([`EvaluationReport::build`]) and records the candidate's figures in the registry.

pub mod render;

use std::sync::Arc;

use chrono::Utc;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use upsell_core::agent::{AgentRef, AgentRole, AgentSpec, PerformanceMetrics};
use upsell_core::evaluation::{
    ArmResult, CustomerTimeline, DecisionCriteria, EvalCase, EvalMode, EvaluationReport,
    EvaluationStore, EvaluationSubject,
};
use upsell_core::features::CustomerFeatures;
use upsell_core::message::{JudgeVerdict, TokenUsage};
use upsell_core::ports::{AgentRegistry, PortError};
use upsell_core::validate::check_event;
use upsell_core::worker::{ErrorName, StableError, Worker};
use upsell_models::agents::{AgentSelector, resolve};
use upsell_models::pricing::cost_usd;
use upsell_models::seed::{GENERATOR_ID, JUDGE_ID};

/// One agent version pinned for the whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pinned {
    /// Agent id.
    pub agent_id: String,
    /// Exact version (what the generate and judge workers' selectors take).
    pub version: String,
    /// Its model id (for cost).
    pub model_id: String,
}

impl Pinned {
    fn of(spec: &AgentSpec) -> Self {
        Pinned {
            agent_id: spec.agent_id.clone(),
            version: spec.version.to_string(),
            model_id: spec.model_id.clone(),
        }
    }

    /// `agentId@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.agent_id, self.version)
    }
}

/// The versions an evaluation runs, pinned by `plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Evaluation id.
    pub evaluation_id: String,
    /// Generator or judge evaluation.
    pub mode: EvalMode,
    /// The dataset as named by the caller.
    pub dataset: String,
    /// Generator of the candidate arm.
    pub candidate_generator: Pinned,
    /// Judge of the candidate arm.
    pub candidate_judge: Pinned,
    /// Generator of the baseline arm.
    pub baseline_generator: Pinned,
    /// Judge of the baseline arm.
    pub baseline_judge: Pinned,
}

impl Plan {
    fn subject(&self) -> EvaluationSubject {
        let (candidate, baseline, shared) = match self.mode {
            EvalMode::Generator => (
                &self.candidate_generator,
                &self.baseline_generator,
                &self.candidate_judge,
            ),
            EvalMode::Judge => (
                &self.candidate_judge,
                &self.baseline_judge,
                &self.candidate_generator,
            ),
        };
        EvaluationSubject {
            evaluation_id: self.evaluation_id.clone(),
            mode: self.mode,
            candidate: candidate.label(),
            baseline: baseline.label(),
            shared: shared.label(),
            dataset: self.dataset.clone(),
        }
    }
}

/// `plan` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanInput {
    /// Evaluation id (the caller's; the execution name is a good one).
    pub evaluation_id: String,
    /// The candidate, `agentId@version`.
    pub candidate: String,
    /// The baseline version of the same agent; absent = its production version.
    #[serde(default)]
    pub baseline: Option<String>,
    /// The dataset, as a name for the report.
    #[serde(default)]
    pub dataset: String,
}

/// `facts` input: one item of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FactsInput {
    /// The historical event: an EventBridge envelope as JSON, or a CSV row of one whose
    /// `detail` column holds the detail as JSON text.
    pub event: Value,
}

/// One arm's results as the state machine collected them: the generate and judge outputs, or
/// the error that stopped the arm.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmOutcome {
    /// The generate worker's output.
    #[serde(default)]
    pub generation: Option<GenerationOut>,
    /// The judge worker's output.
    #[serde(default)]
    pub judged: Option<JudgedOut>,
    /// `{Error, Cause}` when the arm failed.
    #[serde(default)]
    pub error: Option<Value>,
}

/// The parts of the generate worker's output the evaluator uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerationOut {
    /// The message.
    pub message: String,
    /// Who wrote it.
    pub generator: AgentRef,
    /// Model id used.
    pub model_id: String,
    /// Tokens.
    #[serde(default)]
    pub usage: TokenUsage,
    /// Model latency.
    #[serde(default)]
    pub latency_ms: u64,
}

/// A brand violation as the judge reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BrandViolation {
    /// Rule code.
    pub code: String,
}

/// The parts of the judge worker's output the evaluator uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JudgedOut {
    /// The verdict.
    pub verdict: JudgeVerdict,
    /// Who judged.
    pub judge: AgentRef,
    /// Tokens.
    #[serde(default)]
    pub usage: TokenUsage,
    /// Model latency.
    #[serde(default)]
    pub latency_ms: u64,
    /// Brand rules broken.
    #[serde(default)]
    pub brand_violations: Vec<BrandViolation>,
}

/// `record` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordInput {
    /// The plan.
    pub plan: Plan,
    /// The event.
    pub event_id: String,
    /// Its customer.
    #[serde(default)]
    pub customer_id: String,
    /// Why no message was written for it then (no paired run).
    #[serde(default)]
    pub skipped: Option<String>,
    /// Candidate arm.
    #[serde(default)]
    pub candidate: Option<ArmOutcome>,
    /// Baseline arm.
    #[serde(default)]
    pub baseline: Option<ArmOutcome>,
}

/// `report` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportInput {
    /// The plan.
    pub plan: Plan,
    /// Decision thresholds; defaults when absent.
    #[serde(default)]
    pub criteria: Option<DecisionCriteria>,
}

/// Input: one of the four steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Input {
    /// Pin the versions.
    Plan(PlanInput),
    /// Point-in-time facts of one event.
    Facts(FactsInput),
    /// Store one case.
    Record(Box<RecordInput>),
    /// Build the report.
    Report(Box<ReportInput>),
}

/// `record` output: small on purpose (the Map discards it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// The event.
    pub event_id: String,
    /// Whether both versions ran on it.
    pub paired: bool,
}

/// Output, by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Output {
    /// `plan`.
    Plan(Box<Plan>),
    /// `facts`: the enrich step's output at the event's time.
    Facts(Box<enrich::Output>),
    /// `record`.
    Recorded(Recorded),
    /// `report`.
    Report(Box<EvaluationReport>),
}

/// Worker errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The registry or a store failed, or an agent does not exist.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The request names something impossible (bad reference, wrong pairing).
    #[error("invalid evaluation request: {0}")]
    Invalid(String),
    /// The dataset item is not a valid event.
    #[error("{0}")]
    SchemaInvalid(String),
}

impl WorkerError {
    /// The stable error name the state machine matches.
    pub fn error_type(&self) -> ErrorName {
        match self {
            WorkerError::Port(e) => e.error_type(),
            WorkerError::Invalid(_) => ErrorName::InvalidRequest,
            WorkerError::SchemaInvalid(_) => ErrorName::SchemaInvalid,
        }
    }
}

impl StableError for WorkerError {
    fn error_name(&self) -> ErrorName {
        self.error_type()
    }
}

#[async_trait::async_trait]
impl Worker for Deps {
    const NAME: &'static str = "evaluate";
    const STATE: &'static str = "Evaluate";
    type Input = Input;
    type Output = Output;
    type Error = WorkerError;

    async fn handle(&self, input: Input) -> Result<Output, WorkerError> {
        handle(input, self).await
    }
}

/// Ports the worker needs.
#[derive(Clone)]
pub struct Deps {
    /// Agent versions (read; the candidate's figures are written back).
    pub registry: Arc<dyn AgentRegistry>,
    /// Point-in-time customer features and contacts.
    pub timeline: Arc<dyn CustomerTimeline>,
    /// Evaluated cases.
    pub store: Arc<dyn EvaluationStore>,
}

/// Runs one step.
pub async fn handle(input: Input, deps: &Deps) -> Result<Output, WorkerError> {
    match input {
        Input::Plan(i) => plan(i, deps).await.map(|p| Output::Plan(Box::new(p))),
        Input::Facts(i) => facts(i, deps).await.map(|o| Output::Facts(Box::new(o))),
        Input::Record(i) => record(*i, deps).await.map(Output::Recorded),
        Input::Report(i) => report(*i, deps).await.map(|r| Output::Report(Box::new(r))),
    }
}

/// Splits `agentId@version`.
pub fn parse_reference(s: &str) -> Result<(String, Option<String>), WorkerError> {
    match s.trim().split_once('@') {
        Some((id, v)) if !id.is_empty() && !v.is_empty() => Ok((id.to_owned(), Some(v.to_owned()))),
        None if !s.trim().is_empty() => Ok((s.trim().to_owned(), None)),
        _ => Err(WorkerError::Invalid(format!(
            "{s:?} is not an agent reference (ID@VERSION, e.g. upsell-generator@1.1.0)"
        ))),
    }
}

async fn plan(input: PlanInput, deps: &Deps) -> Result<Plan, WorkerError> {
    let (agent_id, version) = parse_reference(&input.candidate)?;
    let Some(version) = version else {
        return Err(WorkerError::Invalid(format!(
            "the candidate needs a version: {agent_id}@VERSION"
        )));
    };
    let registry = deps.registry.as_ref();
    let candidate = registry
        .get(
            &agent_id,
            &upsell_core::agent::parse_version(&version)
                .map_err(|e| WorkerError::Invalid(format!("version {version:?}: {e}")))?,
        )
        .await?;
    let selector = |v: Option<String>| AgentSelector {
        agent_id: agent_id.clone(),
        version: v,
    };
    let baseline = resolve(registry, &selector(input.baseline.clone()), candidate.role).await?;
    let (mode, shared_id, shared_role) = match candidate.role {
        AgentRole::Generator => (EvalMode::Generator, JUDGE_ID, AgentRole::Judge),
        AgentRole::Judge => (EvalMode::Judge, GENERATOR_ID, AgentRole::Generator),
    };
    let shared = resolve(registry, &AgentSelector::production(shared_id), shared_role).await?;
    let (c, b, s) = (
        Pinned::of(&candidate),
        Pinned::of(&baseline),
        Pinned::of(&shared),
    );
    let (cg, cj, bg, bj) = match mode {
        EvalMode::Generator => (c, s.clone(), b, s),
        EvalMode::Judge => (s.clone(), c, s, b),
    };
    Ok(Plan {
        evaluation_id: input.evaluation_id,
        mode,
        dataset: input.dataset,
        candidate_generator: cg,
        candidate_judge: cj,
        baseline_generator: bg,
        baseline_judge: bj,
    })
}

/// A CSV row's `detail` (JSON text) becomes JSON; an envelope passes as it is.
fn envelope(mut event: Value) -> Value {
    if let Some(detail) = event.get("detail").and_then(Value::as_str)
        && let Ok(parsed) = serde_json::from_str::<Value>(detail)
    {
        event["detail"] = parsed;
    }
    event
}

async fn facts(input: FactsInput, deps: &Deps) -> Result<enrich::Output, WorkerError> {
    let raw = serde_json::to_vec(&envelope(input.event)).map_err(|e| {
        WorkerError::SchemaInvalid(format!("the dataset item does not serialise: {e}"))
    })?;
    let event = check_event(&raw).map_err(|r| WorkerError::SchemaInvalid(r.to_string()))?;
    let at = event.time();
    let known = deps.timeline.known_at(event.customer_id(), at).await?;
    // The snapshot must include this event: fold it in when the timeline's newest snapshot at
    // that time predates it (never anything later).
    let features = match known.features {
        Some(f) if f.last_event_time >= at => f,
        previous => CustomerFeatures::next(previous.as_ref(), &event)?,
    };
    Ok(enrich::decide(&event, &features, known.contact, None))
}

fn arm_result(
    outcome: Option<&ArmOutcome>,
    generator: &Pinned,
    judge: &Pinned,
    mode: EvalMode,
) -> ArmResult {
    let label = match mode {
        EvalMode::Generator => generator.label(),
        EvalMode::Judge => judge.label(),
    };
    let Some(o) = outcome else {
        return ArmResult {
            agent: label,
            error: Some("NoResult".into()),
            ..ArmResult::default()
        };
    };
    let mut r = ArmResult {
        agent: label,
        ..ArmResult::default()
    };
    if let Some(g) = &o.generation {
        r.message = g.message.clone();
        r.cost_usd += cost_usd(&g.model_id, g.usage);
        r.latency_ms += g.latency_ms;
    }
    if let Some(j) = &o.judged {
        r.approved = j.verdict.approved;
        r.score = j.verdict.score;
        r.reasons = j.verdict.reasons.clone();
        r.brand_violations = j.brand_violations.iter().map(|v| v.code.clone()).collect();
        r.cost_usd += cost_usd(&judge.model_id, j.usage);
        r.latency_ms += j.latency_ms;
    }
    if let Some(e) = &o.error {
        r.approved = false;
        r.error = Some(
            e.get("Error")
                .and_then(Value::as_str)
                .unwrap_or("Error")
                .to_owned(),
        );
    } else if o.judged.is_none() {
        r.error = Some("NoVerdict".into());
    }
    r
}

async fn record(input: RecordInput, deps: &Deps) -> Result<Recorded, WorkerError> {
    let p = &input.plan;
    let case = match &input.skipped {
        Some(reason) => EvalCase {
            evaluation_id: p.evaluation_id.clone(),
            event_id: input.event_id.clone(),
            customer_id: input.customer_id.clone(),
            skipped: Some(reason.clone()),
            candidate: None,
            baseline: None,
        },
        None => EvalCase {
            evaluation_id: p.evaluation_id.clone(),
            event_id: input.event_id.clone(),
            customer_id: input.customer_id.clone(),
            skipped: None,
            candidate: Some(arm_result(
                input.candidate.as_ref(),
                &p.candidate_generator,
                &p.candidate_judge,
                p.mode,
            )),
            baseline: Some(arm_result(
                input.baseline.as_ref(),
                &p.baseline_generator,
                &p.baseline_judge,
                p.mode,
            )),
        },
    };
    deps.store.put_case(&case).await?;
    Ok(Recorded {
        event_id: input.event_id,
        paired: case.skipped.is_none(),
    })
}

async fn report(input: ReportInput, deps: &Deps) -> Result<EvaluationReport, WorkerError> {
    let p = &input.plan;
    let cases = deps.store.cases(&p.evaluation_id).await?;
    let report = EvaluationReport::build(
        p.subject(),
        cases.len() as u64,
        &cases,
        input.criteria.unwrap_or_default(),
    );
    // The candidate's figures go to the registry (its `performance`), where `agents show` and
    // the rollout read them.
    let candidate = match p.mode {
        EvalMode::Generator => &p.candidate_generator,
        EvalMode::Judge => &p.candidate_judge,
    };
    let version = upsell_core::agent::parse_version(&candidate.version)
        .map_err(|e| WorkerError::Invalid(format!("version {:?}: {e}", candidate.version)))?;
    let c = &report.candidate;
    deps.registry
        .set_performance(
            &candidate.agent_id,
            &version,
            &PerformanceMetrics {
                approval_rate: c.approval.value,
                avg_score: c.score.value,
                sample_size: report.paired_cases,
                avg_attempts: None,
                p95_latency_ms: Some(c.p95_latency_ms),
                cost_per_message_usd: Some(c.cost_per_message_usd),
                updated_at: Some(Utc::now()),
            },
        )
        .await?;
    Ok(report)
}
