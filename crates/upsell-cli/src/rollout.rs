//! Agent rollouts on a laptop (`upsell rollout start`, `upsell rollback`): runs
//! `state-machines/agent-rollout.asl.json` through the local runtime of `sam/template.yaml`
//! (the same definition and DefinitionSubstitutions as `AgentRolloutStateMachine` in AWS), with
//! the evaluation dataset mounted as local S3, while simulated live traffic flows through the
//! per-event workflow.
//!
//! On the virtual clock (the default for `upsell rollout start`) the rollout's Wait states pass
//! as soon as nothing else can run: the traffic driver puts `events_per_look` sample events on
//! the bus, in `batches_per_look` batches separated by sleeps that add up to the wait, so every
//! look sees the traffic of one wait period and a whole rollout takes seconds. Each batch runs on
//! a multi-threaded runtime while simulated time is held (`Clock::hold`), so it uses every core.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use upsell_core::agent::AgentSpec;
use upsell_core::ports::AgentRegistry;
use upsell_core::registry::TransitionRecord;
use upsell_core::rollout::HealthParams;
use upsell_core::sample::{SampleConfig, generate_jsonl};
use upsell_local::ExecutionDescription;
use upsell_local::state_machine_arn;

use crate::app::{AppOptions, LocalApp, RunSummary};
use crate::evaluation::{BUCKET, load_dataset};

/// Logical id of the rollout state machine in sam/template.yaml.
pub const STATE_MACHINE: &str = "AgentRolloutStateMachine";

/// Simulated live traffic during a local rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Sample customers (each brings a profile, service visits and surveys).
    pub customers: usize,
    /// Seed of the sample; `None`: derived from the execution name, so a second rollout in the
    /// same home gets new events instead of duplicates of the first one's.
    pub seed: Option<u64>,
    /// Events put on the bus per wait period.
    pub events_per_look: usize,
    /// Batches per wait period.
    pub batches_per_look: u32,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            customers: 3000,
            seed: None,
            events_per_look: 1500,
            batches_per_look: 3,
        }
    }
}

/// What to roll out, with the state machine's parameters.
#[derive(Debug, Clone)]
pub struct RolloutRequest {
    /// Agent id.
    pub agent_id: String,
    /// Version.
    pub candidate: String,
    /// The spec to register first (from an agent folder), if not registered yet.
    pub spec: Option<AgentSpec>,
    /// The evaluation dataset (JSON lines of historical events).
    pub dataset: PathBuf,
    /// Evaluate a deterministic sample of this many of its events (`upsell eval --sample`).
    pub dataset_sample: Option<usize>,
    /// Canary weights per step.
    pub steps: Vec<u8>,
    /// Seconds between looks.
    pub wait_seconds: u64,
    /// Looks per step.
    pub looks_per_step: u32,
    /// Health-check thresholds.
    pub thresholds: HealthParams,
    /// Simulated traffic (none: only what else reaches the bus).
    pub traffic: Option<Traffic>,
}

/// A finished local rollout.
#[derive(Debug)]
pub struct RolloutRun {
    /// The execution as it ended (`SUCCEEDED` when promoted; `FAILED` with
    /// `RolloutRolledBack`, `RolloutEvaluationFailed` or `RolloutAborted` otherwise).
    pub execution: ExecutionDescription,
    /// The agent's registry history entries this execution wrote, oldest first.
    pub history: Vec<TransitionRecord>,
    /// What the simulated traffic did.
    pub traffic: RunSummary,
    /// Wall time.
    pub elapsed: Duration,
}

/// A valid execution name: `<agent>-<version>-<stamp>`.
pub fn execution_name(agent_id: &str, version: &str) -> String {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ");
    let clean: String = format!("{agent_id}-{version}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("rollout-{clean}-{stamp}")
}

/// The history entries written by `execution_arn`.
pub async fn history_of(
    app: &LocalApp,
    agent_id: &str,
    execution_arn: &str,
) -> anyhow::Result<Vec<TransitionRecord>> {
    Ok(app
        .registry
        .history(agent_id)
        .await?
        .into_iter()
        .filter(|r| r.actor.id == execution_arn)
        .collect())
}

/// Runs a rollout with the application options `opts` (home, template, model, clock; the
/// evaluation timeline is set here). Call on the runtime that `opts.clock` belongs to.
pub async fn run_rollout(mut opts: AppOptions, req: &RolloutRequest) -> anyhow::Result<RolloutRun> {
    let started = Instant::now();
    let data = load_dataset(&req.dataset, req.dataset_sample)?;
    if data.items.is_empty() {
        bail!(
            "{} holds no valid event ({} lines)",
            req.dataset.display(),
            data.total
        );
    }
    let name = execution_name(&req.agent_id, &req.candidate);
    let evaluations = opts.home.join("evaluations");
    let folder = evaluations.join(&name);
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let mut lines = String::new();
    for v in &data.items {
        lines.push_str(&serde_json::to_string(v)?);
        lines.push('\n');
    }
    std::fs::write(folder.join("dataset.jsonl"), lines)?;
    opts.timeline = Some(Arc::new(data.timeline));
    let clock = opts.clock.clone();
    let app = Arc::new(LocalApp::open(opts).await?);
    app.runtime
        .objects()
        .context("the local runtime has no object store for the evaluation's Distributed Map")?
        .mount(BUCKET, "", &evaluations);

    let mut input = json!({
        "agentId": req.agent_id,
        "candidate": req.candidate,
        "dataset": {"bucket": BUCKET, "key": format!("{name}/dataset.jsonl")},
        "steps": req.steps,
        "waitSeconds": req.wait_seconds,
        "looksPerStep": req.looks_per_step,
        "thresholds": serde_json::to_value(&req.thresholds)?,
    });
    if let Some(spec) = &req.spec {
        input["spec"] = serde_json::to_value(spec)?;
    }
    let run = {
        let app = app.clone();
        let name = name.clone();
        tokio::spawn(async move {
            app.runtime
                .start_execution(&state_machine_arn(STATE_MACHINE), Some(&name), input, true)
                .await
        })
    };

    let mut summary = RunSummary::default();
    if let Some(t) = &req.traffic {
        let sample = generate_jsonl(&SampleConfig {
            customers: t.customers,
            seed: t
                .seed
                .unwrap_or_else(|| upsell_core::hash::fnv1a(name.as_bytes())),
            malformed_share: 0.0,
            duplicate_share: 0.0,
            ..SampleConfig::default()
        });
        let events: Vec<&str> = sample.lines().filter(|l| !l.trim().is_empty()).collect();
        let batches = t.batches_per_look.max(1);
        let per_batch = (t.events_per_look / batches as usize).max(1);
        let pause = Duration::from_secs(req.wait_seconds) / batches;
        let mut next = 0;
        while !run.is_finished() {
            // Traffic flows once the canary serves (the evaluation before it sees none).
            let serving = app.registry.routing(&req.agent_id).await?.canary_version
                == upsell_core::agent::parse_version(&req.candidate).ok();
            if serving {
                if next >= events.len() {
                    bail!(
                        "the simulated traffic ran out after {} events; give it more customers",
                        events.len()
                    );
                }
                let end = (next + per_batch).min(events.len());
                let batch = events[next..end].join("\n");
                next = end;
                let s = match clock.hold() {
                    Some(_held) => run_held(&app, &batch)?,
                    None => app.run_lines(&batch, "rollout-traffic", |_| {}).await?.0,
                };
                summary.events += s.events;
                summary.published += s.published;
                summary.rejected += s.rejected;
                summary.skipped += s.skipped;
                summary.quarantined += s.quarantined;
                summary.failed += s.failed;
                summary.duplicates += s.duplicates;
            }
            clock.sleep(pause.max(Duration::from_millis(1))).await;
        }
    }
    let execution = run
        .await
        .context("the rollout task panicked")?
        .map_err(|e| anyhow::anyhow!("starting the rollout {name}: {e}"))?;
    app.runtime.flush()?;
    let history = history_of(&app, &req.agent_id, &execution.execution_arn).await?;
    Ok(RolloutRun {
        execution,
        history,
        traffic: summary,
        elapsed: started.elapsed(),
    })
}

/// Runs one traffic batch on a multi-threaded runtime of its own, so the workflows use every
/// core, while simulated time is held and the caller's (paused, current-thread) runtime blocks:
/// to the rollout the batch takes no simulated time, as it would on the paused runtime.
fn run_held(app: &Arc<LocalApp>, batch: &str) -> anyhow::Result<RunSummary> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .context("starting the traffic's runtime")?;
                Ok(rt
                    .block_on(app.run_lines(batch, "rollout-traffic", |_| {}))?
                    .0)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the simulated traffic panicked"))?
    })
}

/// Takes the agent's canary out by running the rollout state machine in `rollback` mode (the
/// same Rollback step the automatic rollback uses: registry transition and
/// `AgentRolloutRolledBack` on the bus).
pub async fn rollback(
    opts: AppOptions,
    agent_id: &str,
    reason: &str,
) -> anyhow::Result<(ExecutionDescription, Vec<TransitionRecord>)> {
    let app = LocalApp::open(opts).await?;
    let name = execution_name(agent_id, "rollback");
    let execution = app
        .runtime
        .start_execution(
            &state_machine_arn(STATE_MACHINE),
            Some(&name),
            json!({"mode": "rollback", "agentId": agent_id, "reason": reason}),
            true,
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting the rollback {name}: {e}"))?;
    app.runtime.flush()?;
    let history = history_of(&app, agent_id, &execution.execution_arn).await?;
    Ok((execution, history))
}

/// One line about a rollout execution: name, agent@version, status and error.
pub fn summary_line(e: &ExecutionDescription) -> String {
    let agent = e
        .input
        .get("agentId")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let candidate = e
        .input
        .get("candidate")
        .and_then(Value::as_str)
        .unwrap_or("-");
    format!(
        "{} {agent}@{candidate} {}{}",
        e.name,
        e.status,
        e.error
            .as_deref()
            .map(|x| format!(" ({x})"))
            .unwrap_or_default()
    )
}
