//! `upsell rollout start|status|abort|simulate` and `upsell rollback AGENT`: the gated rollout
//! of an agent version (`state-machines/agent-rollout.asl.json`) on the local engine, and the
//! simulation of its health check's error rates (`upsell_core::rollout::simulate`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use upsell_asl::{RealClock, VirtualClock, virtual_runtime};
use upsell_cli::app::{AppOptions, LocalApp, ModelChoice};
use upsell_cli::rollout::{RolloutRequest, Traffic, rollback, run_rollout};
use upsell_core::ports::AgentRegistry;
use upsell_core::registry::{ActorKind, TransitionRecord};
use upsell_core::rollout::{HealthParams, simulate, simulation_table, standard_scenarios};
use upsell_local::ExecutionDescription;
use upsell_models::seed::load_agent_dir;
use upsell_sqlite::HistoryLevel;

use super::Context;

/// Arguments of `upsell rollout`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    sub: Sub,
}

/// Which clock the rollout runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClockKind {
    /// Simulated time: waits pass as soon as the traffic of the period has run.
    Virtual,
    /// Wall-clock time: waits really wait.
    Real,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Roll out a version: register (from a folder) -> evaluate -> canary -> checks ->
    /// production, or rolled back by itself. Exit status 1 unless promoted.
    Start(StartArgs),
    /// An agent's routing and the rollout steps recorded in its history.
    Status {
        /// Agent id, e.g. upsell-generator.
        agent: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a rollout: its canary is rolled back now (a running rollout ends as aborted at its
    /// next look).
    Abort {
        /// Agent id.
        agent: String,
        /// Why, for the history.
        #[arg(long)]
        reason: Option<String>,
        /// The SAM template.
        #[arg(
            long,
            env = "UPSELL_TEMPLATE",
            default_value = "sam/template.yaml",
            value_name = "FILE"
        )]
        template: PathBuf,
    },
    /// Print the health check's simulated error rates (the table in docs/agents.md).
    Simulate {
        /// Rollouts per scenario (seeds 0..N).
        #[arg(long, default_value_t = 1000)]
        runs: u32,
        /// Records per look (both arms together).
        #[arg(long, default_value_t = 1000)]
        records_per_look: u64,
        /// Looks per step.
        #[arg(long, default_value_t = 4)]
        looks_per_step: u32,
    },
}

/// Arguments of `upsell rollout start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// An agent folder (agent.json, system.jinja, user.jinja) to register and roll out, or
    /// ID@VERSION of a registered draft or evaluating version.
    target: String,
    /// Historical events for the evaluation (JSON lines).
    #[arg(long, default_value = "examples/events.jsonl", value_name = "FILE")]
    dataset: PathBuf,
    /// Evaluate a deterministic sample of N of the dataset's events.
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
    /// Canary weights per step, in percent.
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    steps: Vec<u8>,
    /// Seconds between looks.
    #[arg(long, default_value_t = 1800)]
    wait_seconds: u64,
    /// Looks per step.
    #[arg(long, default_value_t = 4)]
    looks_per_step: u32,
    /// Records each arm needs before a decision.
    #[arg(long)]
    min_sample: Option<u64>,
    /// Error rate of the health check over the whole rollout.
    #[arg(long)]
    alpha: Option<f64>,
    /// Virtual (default; a rollout takes seconds) or real time.
    #[arg(long, value_enum, default_value = "virtual")]
    clock: ClockKind,
    /// Simulated live traffic: sample events per wait period (0: none).
    #[arg(long, default_value_t = 1500)]
    events_per_look: usize,
    /// Sample customers of the simulated traffic.
    #[arg(long, default_value_t = 3000)]
    traffic_customers: usize,
    /// Seed of the simulated traffic (default: derived from the execution name, so every
    /// rollout sends new events).
    #[arg(long)]
    traffic_seed: Option<u64>,
    /// Print the execution and the history as JSON.
    #[arg(long)]
    json: bool,
    /// The SAM template whose state machines and functions run locally.
    #[arg(
        long,
        env = "UPSELL_TEMPLATE",
        default_value = "sam/template.yaml",
        value_name = "FILE"
    )]
    template: PathBuf,
    /// Knowledge-base folder, indexed on first run.
    #[arg(
        long,
        env = "UPSELL_KB_DIR",
        default_value = "knowledge-base",
        value_name = "DIR"
    )]
    kb_dir: PathBuf,
}

/// Arguments of `upsell rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// Agent id: its canary is rolled back.
    agent: String,
    /// Why, for the history and the event.
    #[arg(long)]
    reason: Option<String>,
    /// The SAM template.
    #[arg(
        long,
        env = "UPSELL_TEMPLATE",
        default_value = "sam/template.yaml",
        value_name = "FILE"
    )]
    template: PathBuf,
}

fn user() -> String {
    ["UPSELL_ACTOR", "USER", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Why an execution failed: its error and cause, with a worker's `errorMessage` taken out of
/// the Lambda-style cause (`{"errorMessage": ..., "errorType": ...}`).
fn why(e: &ExecutionDescription) -> String {
    let error = e.error.as_deref().unwrap_or("?");
    let cause = e.cause.as_deref().unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(cause)
        .ok()
        .and_then(|c| c.get("errorMessage")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| cause.to_owned());
    if message.is_empty() {
        error.to_owned()
    } else {
        format!("{error}: {message}")
    }
}

fn print_history(history: &[TransitionRecord]) -> anyhow::Result<()> {
    for r in history {
        outln!(
            "  #{} {}@{} {} -> {} ({}% -> {}%): {}",
            r.sequence,
            r.agent_id,
            r.version,
            r.from.map_or("(new)", |s| s.as_str()),
            r.to.as_str(),
            r.from_weight,
            r.to_weight,
            r.reason
        );
    }
    Ok(())
}

/// Runs `upsell rollout`.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    match args.sub {
        Sub::Start(a) => start(a, ctx),
        Sub::Status { agent, json } => status(&agent, json, ctx),
        Sub::Abort {
            agent,
            reason,
            template,
        } => {
            let reason = reason.unwrap_or_else(|| format!("rollout aborted by {}", user()));
            manual_rollback(&agent, &reason, template, ctx)
        }
        Sub::Simulate {
            runs,
            records_per_look,
            looks_per_step,
        } => {
            let params = HealthParams::default();
            let rows: Vec<_> = standard_scenarios(records_per_look, looks_per_step)
                .iter()
                .map(|s| simulate(s, &params, runs))
                .collect();
            outln!(
                "{runs} rollouts per row, {records_per_look} records per look (canary 10% then 50%), {looks_per_step} looks per step, default thresholds\n"
            );
            outln!("{}", simulation_table(&rows));
            Ok(())
        }
    }
}

/// Runs `upsell rollback`.
pub fn run_rollback(args: RollbackArgs, ctx: &Context) -> anyhow::Result<()> {
    let reason = args
        .reason
        .unwrap_or_else(|| format!("rolled back by {}", user()));
    manual_rollback(&args.agent, &reason, args.template, ctx)
}

fn manual_rollback(
    agent: &str,
    reason: &str,
    template: PathBuf,
    ctx: &Context,
) -> anyhow::Result<()> {
    let mut opts = AppOptions::new(&ctx.home);
    opts.template = template;
    opts.history = HistoryLevel::Summary;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (execution, history) = rt.block_on(rollback(opts, agent, reason))?;
    if execution.status != "SUCCEEDED" {
        bail!(
            "the rollback {} ended {}: {}",
            execution.name,
            execution.status,
            why(&execution)
        );
    }
    outln!("rolled back by execution {}:", execution.execution_arn);
    print_history(&history)
}

fn status(agent: &str, json: bool, ctx: &Context) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let app = LocalApp::open(AppOptions::new(&ctx.home)).await?;
        if app.registry.list_versions(agent).await?.is_empty() {
            bail!("no agent {agent:?} in the registry (`upsell agents list` lists them)");
        }
        let routing = app.registry.routing(agent).await?;
        let steps: Vec<TransitionRecord> = app
            .registry
            .history(agent)
            .await?
            .into_iter()
            .filter(|r| r.actor.kind == ActorKind::Execution)
            .collect();
        let last = steps.last().map(|r| r.actor.id.clone());
        let current: Vec<TransitionRecord> = steps
            .into_iter()
            .filter(|r| Some(&r.actor.id) == last.as_ref())
            .collect();
        if json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "agentId": agent,
                    "productionVersion": routing.production_version.map(|v| v.to_string()),
                    "canaryVersion": routing.canary_version.map(|v| v.to_string()),
                    "canaryWeight": routing.canary_weight,
                    "lastRollout": last,
                    "steps": current,
                }))?
            );
            return Ok(());
        }
        outln!(
            "{agent}: production {}, canary {}",
            routing
                .production_version
                .map_or("none".into(), |v| v.to_string()),
            routing.canary_version.map_or("none".into(), |v| format!(
                "{v} at {}%",
                routing.canary_weight
            ))
        );
        match last {
            Some(arn) => {
                outln!("last rollout: {arn}");
                print_history(&current)?;
            }
            None => outln!("no rollout recorded"),
        }
        Ok(())
    })
}

fn start(a: StartArgs, ctx: &Context) -> anyhow::Result<()> {
    let dir = PathBuf::from(&a.target);
    let (agent_id, candidate, spec) = if dir.is_dir() {
        let spec = load_agent_dir(&dir)?;
        (spec.agent_id.clone(), spec.version.to_string(), Some(spec))
    } else {
        let (id, v) = a.target.split_once('@').ok_or_else(|| {
            anyhow::anyhow!(
                "{:?} is neither an agent folder nor ID@VERSION (e.g. upsell-generator@1.1.0)",
                a.target
            )
        })?;
        (id.to_owned(), v.to_owned(), None)
    };
    let mut thresholds = HealthParams::default();
    if let Some(m) = a.min_sample {
        thresholds.min_sample_per_arm = m;
    }
    if let Some(al) = a.alpha {
        thresholds.alpha = al;
    }
    let req = RolloutRequest {
        agent_id,
        candidate,
        spec,
        dataset: a.dataset,
        dataset_sample: a.sample,
        steps: a.steps,
        wait_seconds: a.wait_seconds,
        looks_per_step: a.looks_per_step,
        thresholds,
        traffic: (a.events_per_look > 0).then(|| Traffic {
            customers: a.traffic_customers,
            seed: a.traffic_seed,
            events_per_look: a.events_per_look,
            ..Traffic::default()
        }),
    };
    let mut opts = AppOptions::new(&ctx.home);
    opts.template = a.template;
    opts.kb_dir = a.kb_dir;
    opts.model = ModelChoice::Offline.provider();
    opts.history = HistoryLevel::Summary;
    let run = match a.clock {
        ClockKind::Virtual => {
            let rt = virtual_runtime()?;
            rt.block_on(async {
                opts.clock = Arc::new(VirtualClock::new(chrono::Utc::now()));
                run_rollout(opts, &req).await
            })?
        }
        ClockKind::Real => {
            opts.clock = Arc::new(RealClock);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(run_rollout(opts, &req))?
        }
    };
    let e = &run.execution;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "executionArn": e.execution_arn,
                "status": e.status,
                "error": e.error,
                "cause": e.cause,
                "history": run.history,
                "elapsedSeconds": run.elapsed.as_secs_f64(),
                "trafficEvents": run.traffic.events,
            }))?
        );
    } else {
        outln!(
            "{} {} in {:.1} s ({} simulated events: {} published, {} rejected, {} skipped, {} failed, {} duplicates)",
            e.execution_arn,
            e.status,
            run.elapsed.as_secs_f64(),
            run.traffic.events,
            run.traffic.published,
            run.traffic.rejected,
            run.traffic.skipped,
            run.traffic.failed,
            run.traffic.duplicates
        );
        print_history(&run.history)?;
    }
    if e.status != "SUCCEEDED" {
        bail!(
            "{}@{} was not promoted: {}",
            req.agent_id,
            req.candidate,
            why(e)
        );
    }
    Ok(())
}
