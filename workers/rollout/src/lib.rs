//! The rollout worker: the Rust steps of `state-machines/agent-rollout.asl.json`. The state
//! machine sequences, waits and loops; this worker moves the version in the registry (every
//! change recorded with the execution as actor), reads the live per-version counters and
//! computes the health decision (`upsell_core::rollout::check_health`).
//!
//! - `plan`: registers the candidate when the input carries its spec, checks it can be rolled
//!   out, moves it from draft to evaluating, and fills every parameter's default.
//! - `reject`: the evaluation failed: the candidate goes back to draft, with the reasons.
//! - `start-canary`: the candidate becomes canary at the first step's weight; the counters of
//!   both versions are read as the baseline the checks subtract.
//! - `check`: one look: the counters since the baseline, compared ([`HealthReport`]).
//! - `next-step`: the next step's weight, or production at 100% (the version it replaces is
//!   retired).
//! - `rollback`: weight 0, status rolled-back, the reasons recorded, and an
//!   [`AgentRolloutRolledBack`] event on the bus. Without a version it takes the agent's current
//!   canary (`upsell rollback AGENT`).

use std::sync::Arc;

use chrono::Utc;
use schemars::JsonSchema;
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use upsell_core::agent::{AgentRef, AgentSpec, AgentStatus, parse_version};
use upsell_core::counters::VersionCounters;
use upsell_core::outbound::outbound_event;
use upsell_core::ports::{AgentRegistry, EventPublisher, PortError};
use upsell_core::registry::{Actor, ActorKind, RegisterRequest, TransitionRequest};
use upsell_core::rollout::{
    AgentRolloutRolledBack, ArmCounts, Decision, HealthParams, HealthReport, check_health,
};
use upsell_core::worker::{ErrorName, StableError, Worker};

/// The worker's ports.
#[derive(Clone)]
pub struct Deps {
    /// The agent registry (read and transitions).
    pub registry: Arc<dyn AgentRegistry>,
    /// The live per-version counters (read only).
    pub counters: Arc<dyn VersionCounters>,
    /// The event bus, for [`AgentRolloutRolledBack`].
    pub events: Arc<dyn EventPublisher>,
}

fn default_steps() -> Vec<u8> {
    vec![10, 50]
}
fn default_wait() -> u64 {
    1800
}
fn default_looks() -> u32 {
    4
}

/// Where the evaluation reads its historical events (JSON lines in S3; locally a mounted
/// folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dataset {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

/// `plan` input: the rollout execution's input and its ARN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanInput {
    /// The execution ARN (locally, the execution id): the actor of every change.
    pub execution_arn: String,
    /// The execution's input.
    pub request: RolloutRequest,
}

/// The rollout execution's input; every field but `agentId`, `candidate` and `dataset` has a
/// default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutRequest {
    /// `rollout` (or absent); `rollback` never reaches `plan`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Agent id.
    pub agent_id: String,
    /// The version to roll out.
    pub candidate: String,
    /// Its spec, when the rollout registers it (`upsell rollout start DIR`).
    #[serde(default)]
    pub spec: Option<Box<AgentSpec>>,
    /// The evaluation's dataset.
    pub dataset: Dataset,
    /// The canary's weight at each step, in percent, increasing, each below 100 (default 10, 50).
    #[serde(default = "default_steps")]
    pub steps: Vec<u8>,
    /// Seconds between looks (default 1800).
    #[serde(default = "default_wait")]
    pub wait_seconds: u64,
    /// Looks per step before the step ends (default 4).
    #[serde(default = "default_looks")]
    pub looks_per_step: u32,
    /// The health check's thresholds (defaults in `HealthParams`).
    #[serde(default)]
    pub thresholds: HealthParams,
}

/// The evaluation execution's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationInput {
    /// Evaluation id.
    pub evaluation_id: String,
    /// `agentId@version` of the candidate.
    pub candidate: String,
    /// The production version it is compared with.
    pub baseline: String,
    /// The dataset.
    pub dataset: Dataset,
}

/// Where a rollout is: step index (0-based) and look within the step (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    /// Step index into `steps`.
    pub step: usize,
    /// Look within the step.
    pub look: u32,
}

/// The rollout's plan: every parameter resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Agent id.
    pub agent_id: String,
    /// The candidate version.
    pub candidate: String,
    /// The production version it replaces.
    pub production: String,
    /// What the evaluation state machine gets.
    pub evaluation: EvaluationInput,
    /// Canary weights per step.
    pub steps: Vec<u8>,
    /// Seconds between looks.
    pub wait_seconds: u64,
    /// Looks per step.
    pub looks_per_step: u32,
    /// Health-check thresholds.
    pub thresholds: HealthParams,
}

impl Plan {
    fn refs(&self) -> Result<(AgentRef, AgentRef), WorkerError> {
        Ok((
            agent_ref(&self.agent_id, &self.candidate)?,
            agent_ref(&self.agent_id, &self.production)?,
        ))
    }
}

/// Counters of both arms when the canary started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    /// The candidate's counters.
    pub canary: ArmCounts,
    /// Production's counters.
    pub production: ArmCounts,
}

/// Input of the steps after `plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepInput {
    /// The execution ARN: the actor.
    pub execution_arn: String,
    /// The plan.
    pub plan: Plan,
    /// The baseline (`check`).
    #[serde(default)]
    pub baseline: Option<Baseline>,
    /// Where the rollout is (`check`, `next-step`).
    #[serde(default)]
    pub cursor: Option<Cursor>,
    /// Why (`reject`: the evaluation's decision; `next-step`: the check's reasons).
    #[serde(default)]
    pub reasons: Option<Value>,
}

/// `rollback` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackInput {
    /// Who: an execution ARN (the rollout's or `upsell rollback`'s execution).
    pub execution_arn: String,
    /// Agent id.
    pub agent_id: String,
    /// The version; absent: the agent's current canary.
    #[serde(default)]
    pub version: Option<String>,
    /// Why, one sentence each.
    pub reasons: Vec<String>,
}

/// Input: one of the steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Input {
    /// Resolve and register.
    Plan(Box<PlanInput>),
    /// Evaluation failed.
    Reject(Box<StepInput>),
    /// Canary at the first weight; read the baseline.
    StartCanary(Box<StepInput>),
    /// One health check.
    Check(Box<StepInput>),
    /// The next weight, or production.
    NextStep(Box<StepInput>),
    /// Take the canary out.
    Rollback(Box<RollbackInput>),
}

/// `start-canary` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// Counters at the start.
    pub baseline: Baseline,
    /// First look of the first step.
    pub cursor: Cursor,
    /// The canary's weight.
    pub weight: u8,
}

/// `check` output: the report and where to look next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checked {
    /// What to do (what the state machine's Choice reads).
    pub decision: Decision,
    /// Why.
    pub reasons: Vec<String>,
    /// The figures.
    pub report: HealthReport,
    /// The cursor of the next look (same step) or of this step (promote-step).
    pub cursor: Cursor,
}

/// `next-step` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stepped {
    /// Whether the candidate is now production.
    pub done: bool,
    /// The canary's weight now (100 when done).
    pub weight: u8,
    /// First look of the new step.
    pub cursor: Cursor,
}

/// Output, by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Output {
    /// `plan`.
    Plan(Box<Plan>),
    /// `start-canary`.
    Started(Box<Started>),
    /// `check`.
    Checked(Box<Checked>),
    /// `next-step`.
    Stepped(Stepped),
    /// `reject`: the version as stored.
    Version(Box<AgentSpec>),
    /// `rollback`: the event put on the bus.
    RolledBack(Box<AgentRolloutRolledBack>),
}

/// Worker errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The registry, the counters or the bus failed, or a version does not exist.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The request names something impossible.
    #[error("invalid rollout request: {0}")]
    Invalid(String),
    /// The candidate was moved by someone else mid-rollout (e.g. `upsell rollback`).
    #[error("rollout aborted: {0}")]
    Aborted(String),
}

impl StableError for WorkerError {
    fn error_name(&self) -> ErrorName {
        match self {
            WorkerError::Port(e) => e.error_type(),
            WorkerError::Invalid(_) => ErrorName::InvalidRequest,
            WorkerError::Aborted(_) => ErrorName::Conflict,
        }
    }
}

#[async_trait::async_trait]
impl Worker for Deps {
    const NAME: &'static str = "rollout";
    const STATE: &'static str = "Rollout";
    type Input = Input;
    type Output = Output;
    type Error = WorkerError;

    async fn handle(&self, input: Input) -> Result<Output, WorkerError> {
        handle(input, self).await
    }
}

fn agent_ref(agent_id: &str, version: &str) -> Result<AgentRef, WorkerError> {
    Ok(AgentRef {
        agent_id: agent_id.to_owned(),
        version: parse_version(version)
            .map_err(|e| WorkerError::Invalid(format!("version {version:?}: {e}")))?,
    })
}

fn actor(execution_arn: &str) -> Actor {
    Actor::new(ActorKind::Execution, execution_arn)
}

/// Runs one step.
pub async fn handle(input: Input, deps: &Deps) -> Result<Output, WorkerError> {
    match input {
        Input::Plan(i) => plan(*i, deps).await.map(|p| Output::Plan(Box::new(p))),
        Input::Reject(i) => reject(*i, deps).await.map(|s| Output::Version(Box::new(s))),
        Input::StartCanary(i) => start(*i, deps).await.map(|s| Output::Started(Box::new(s))),
        Input::Check(i) => check(*i, deps).await.map(|c| Output::Checked(Box::new(c))),
        Input::NextStep(i) => next_step(*i, deps).await.map(Output::Stepped),
        Input::Rollback(i) => rollback(*i, deps)
            .await
            .map(|e| Output::RolledBack(Box::new(e))),
    }
}

async fn plan(input: PlanInput, deps: &Deps) -> Result<Plan, WorkerError> {
    let execution_arn = input.execution_arn;
    let i = input.request;
    let mut problems = i.thresholds.problems();
    if i.steps.is_empty() || i.steps.iter().any(|w| *w == 0 || *w >= 100) {
        problems.push(format!(
            "steps must be canary weights between 1 and 99, got {:?}",
            i.steps
        ));
    }
    if i.steps.windows(2).any(|w| w[0] >= w[1]) {
        problems.push(format!("steps must increase, got {:?}", i.steps));
    }
    if i.looks_per_step == 0 {
        problems.push("looksPerStep must be at least 1".into());
    }
    if !problems.is_empty() {
        return Err(WorkerError::Invalid(problems.join("; ")));
    }
    let candidate = agent_ref(&i.agent_id, &i.candidate)?;
    let who = actor(&execution_arn);
    if let Some(spec) = &i.spec {
        if spec.agent_ref() != candidate {
            return Err(WorkerError::Invalid(format!(
                "the spec is {}, the rollout is of {candidate}",
                spec.agent_ref()
            )));
        }
        match deps.registry.get(&i.agent_id, &candidate.version).await {
            Ok(stored) if stored.prompt == spec.prompt && stored.model_id == spec.model_id => {}
            Ok(_) => {
                return Err(WorkerError::Invalid(format!(
                    "{candidate} is already registered with other content; versions are immutable"
                )));
            }
            Err(PortError::NotFound(_)) => {
                let mut draft = (**spec).clone();
                draft.status = AgentStatus::Draft;
                draft.traffic_weight = 0;
                let request = RegisterRequest {
                    reason: "registered by a rollout".into(),
                    actor: who.clone(),
                };
                deps.registry.register(&draft, &request).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let spec = deps.registry.get(&i.agent_id, &candidate.version).await?;
    let routing = deps.registry.routing(&i.agent_id).await?;
    let production = routing.production_version.ok_or_else(|| {
        WorkerError::Invalid(format!(
            "{} has no production version to compare with",
            i.agent_id
        ))
    })?;
    if let Some(canary) = &routing.canary_version
        && canary != &candidate.version
    {
        return Err(WorkerError::Invalid(format!(
            "{}@{canary} is already in a canary rollout; finish or roll it back first",
            i.agent_id
        )));
    }
    match spec.status {
        AgentStatus::Draft => {
            let request = TransitionRequest {
                to: AgentStatus::Evaluating,
                weight: 0,
                reason: "rollout started: evaluating against production".into(),
                actor: who,
            };
            deps.registry
                .transition(&i.agent_id, &candidate.version, &request)
                .await?;
        }
        AgentStatus::Evaluating => {}
        other => {
            return Err(WorkerError::Invalid(format!(
                "{candidate} is {}; a rollout starts from draft or evaluating",
                other.as_str()
            )));
        }
    }
    let short = execution_arn.rsplit(':').next().unwrap_or(&execution_arn);
    // The evaluation execution's name: the rollout's, marked once, within the 80 characters
    // Step Functions allows.
    let evaluation_id: String = if short.starts_with("rollout-") {
        short.to_owned()
    } else {
        format!("rollout-{short}")
    }
    .chars()
    .take(80)
    .collect();
    Ok(Plan {
        agent_id: i.agent_id.clone(),
        candidate: candidate.version.to_string(),
        production: production.to_string(),
        evaluation: EvaluationInput {
            evaluation_id,
            candidate: candidate.to_string(),
            baseline: production.to_string(),
            dataset: i.dataset,
        },
        steps: i.steps,
        wait_seconds: i.wait_seconds,
        looks_per_step: i.looks_per_step,
        thresholds: i.thresholds,
    })
}

fn reasons_text(v: &Option<Value>) -> String {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("; "),
        Some(Value::Object(o)) => match o.get("reasons") {
            Some(r) => reasons_text(&Some(r.clone())),
            None => Value::Object(o.clone()).to_string(),
        },
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

async fn reject(i: StepInput, deps: &Deps) -> Result<AgentSpec, WorkerError> {
    let (candidate, _) = i.plan.refs()?;
    let why = reasons_text(&i.reasons);
    let request = TransitionRequest {
        to: AgentStatus::Draft,
        weight: 0,
        reason: format!(
            "evaluation {} did not pass: {}",
            i.plan.evaluation.evaluation_id,
            if why.is_empty() {
                "no reason given"
            } else {
                &why
            }
        ),
        actor: actor(&i.execution_arn),
    };
    Ok(deps
        .registry
        .transition(&candidate.agent_id, &candidate.version, &request)
        .await?)
}

async fn counts(deps: &Deps, agent: &AgentRef) -> Result<ArmCounts, WorkerError> {
    Ok(ArmCounts::from(&deps.counters.read(agent).await?))
}

async fn start(i: StepInput, deps: &Deps) -> Result<Started, WorkerError> {
    let (candidate, production) = i.plan.refs()?;
    let weight = i.plan.steps[0];
    // Read before the first canary request is routed: nothing the canary serves is missed.
    let baseline = Baseline {
        canary: counts(deps, &candidate).await?,
        production: counts(deps, &production).await?,
    };
    let request = TransitionRequest {
        to: AgentStatus::Canary,
        weight,
        reason: format!(
            "evaluation {} passed: canary at {weight}%",
            i.plan.evaluation.evaluation_id
        ),
        actor: actor(&i.execution_arn),
    };
    deps.registry
        .transition(&candidate.agent_id, &candidate.version, &request)
        .await?;
    Ok(Started {
        baseline,
        cursor: Cursor { step: 0, look: 1 },
        weight,
    })
}

/// The candidate must still be the canary: a person may have rolled it back meanwhile.
async fn still_canary(deps: &Deps, candidate: &AgentRef) -> Result<AgentSpec, WorkerError> {
    let spec = deps
        .registry
        .get(&candidate.agent_id, &candidate.version)
        .await?;
    if spec.status != AgentStatus::Canary {
        return Err(WorkerError::Aborted(format!(
            "{candidate} is {} now, no longer canary",
            spec.status.as_str()
        )));
    }
    Ok(spec)
}

async fn check(i: StepInput, deps: &Deps) -> Result<Checked, WorkerError> {
    let (candidate, production) = i.plan.refs()?;
    let cursor = i
        .cursor
        .ok_or_else(|| WorkerError::Invalid("check needs the cursor".into()))?;
    let baseline = i
        .baseline
        .ok_or_else(|| WorkerError::Invalid("check needs the baseline".into()))?;
    still_canary(deps, &candidate).await?;
    let c = counts(deps, &candidate).await?.since(&baseline.canary);
    let p = counts(deps, &production).await?.since(&baseline.production);
    let final_look = cursor.look >= i.plan.looks_per_step;
    let report = check_health(&c, &p, &i.plan.thresholds, final_look);
    let next = match report.decision {
        Decision::Continue => Cursor {
            step: cursor.step,
            look: cursor.look + 1,
        },
        _ => cursor,
    };
    Ok(Checked {
        decision: report.decision,
        reasons: report.reasons.clone(),
        report,
        cursor: next,
    })
}

async fn next_step(i: StepInput, deps: &Deps) -> Result<Stepped, WorkerError> {
    let (candidate, _) = i.plan.refs()?;
    let cursor = i
        .cursor
        .ok_or_else(|| WorkerError::Invalid("next-step needs the cursor".into()))?;
    let current = still_canary(deps, &candidate).await?;
    let who = actor(&i.execution_arn);
    let why = reasons_text(&i.reasons);
    let next = cursor.step + 1;
    if let Some(&weight) = i.plan.steps.get(next) {
        let request = TransitionRequest {
            to: AgentStatus::Canary,
            weight,
            reason: format!(
                "health check passed at {}%: {why}; canary at {weight}%",
                current.traffic_weight
            ),
            actor: who,
        };
        deps.registry
            .transition(&candidate.agent_id, &candidate.version, &request)
            .await?;
        return Ok(Stepped {
            done: false,
            weight,
            cursor: Cursor {
                step: next,
                look: 1,
            },
        });
    }
    let request = TransitionRequest {
        to: AgentStatus::Production,
        weight: 100,
        reason: format!(
            "health check passed at {}%: {why}; promoted to production",
            current.traffic_weight
        ),
        actor: who.clone(),
    };
    deps.registry
        .transition(&candidate.agent_id, &candidate.version, &request)
        .await?;
    for old in deps.registry.list_versions(&candidate.agent_id).await? {
        if old.version != candidate.version && old.status.serves_traffic() {
            let request = TransitionRequest {
                to: AgentStatus::Retired,
                weight: 0,
                reason: format!("superseded by {candidate} (rollout)"),
                actor: who.clone(),
            };
            deps.registry
                .transition(&candidate.agent_id, &old.version, &request)
                .await?;
        }
    }
    Ok(Stepped {
        done: true,
        weight: 100,
        cursor,
    })
}

async fn rollback(i: RollbackInput, deps: &Deps) -> Result<AgentRolloutRolledBack, WorkerError> {
    let routing = deps.registry.routing(&i.agent_id).await?;
    let version: Version = match &i.version {
        Some(v) => agent_ref(&i.agent_id, v)?.version,
        None => routing.canary_version.clone().ok_or_else(|| {
            PortError::NotFound(format!("{} has no canary to roll back", i.agent_id))
        })?,
    };
    let before = deps.registry.get(&i.agent_id, &version).await?;
    let reasons: Vec<String> = i
        .reasons
        .iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    let reasons = if reasons.is_empty() {
        vec!["rolled back without a reason given".to_owned()]
    } else {
        reasons
    };
    let request = TransitionRequest {
        to: AgentStatus::RolledBack,
        weight: 0,
        reason: format!("rolled back: {}", reasons.join("; ")),
        actor: actor(&i.execution_arn),
    };
    deps.registry
        .transition(&i.agent_id, &version, &request)
        .await?;
    let now = Utc::now();
    let detail = AgentRolloutRolledBack {
        agent_id: i.agent_id.clone(),
        version: version.clone(),
        production_version: routing.production_version,
        from_status: before.status,
        from_weight: before.traffic_weight,
        reasons,
        execution_arn: i.execution_arn.clone(),
        rolled_back_at: now,
    };
    let short = i
        .execution_arn
        .rsplit(':')
        .next()
        .unwrap_or(&i.execution_arn);
    let event = outbound_event(
        format!("rolled-back-{}-{version}-{short}", i.agent_id),
        now,
        &detail,
    )
    .map_err(|e| PortError::Other(format!("AgentRolloutRolledBack: {e}")))?;
    deps.events.publish(&event).await?;
    Ok(detail)
}
