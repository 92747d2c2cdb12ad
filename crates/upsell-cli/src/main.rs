//! `upsell`: the command-line entry point for running upsell-flow locally.
//!
//! Each subcommand lives in its own module under `cmd/`; adding one means adding a variant to
//! [`Command`] and a module with an `Args` struct and a `run` function.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// mimalloc instead of the system allocator: `upsell run` spends a fifth of its CPU time in
/// malloc and free with glibc's (JSON values built, cloned and dropped at every state); see
/// docs/performance.md, "upsell run".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Personalised upsell messages for a home-services company, written by a Generator agent and
/// checked by a Judge agent. Runs the same workflows locally as in AWS.
#[derive(Debug, Parser)]
#[command(name = "upsell", version, about, propagate_version = true)]
struct Cli {
    /// Where local state lives (SQLite stores, indexes, run outputs).
    #[arg(
        long,
        global = true,
        env = "UPSELL_HOME",
        default_value = ".upsell",
        value_name = "DIR"
    )]
    home: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write realistic sample customer events (EventBridge JSON lines).
    Sample(cmd::sample::Args),
    /// Check events (JSON lines) against the event schemas and normalisation rules.
    Validate(cmd::validate::Args),
    /// Write the JSON Schemas generated from the Rust types, or check they are up to date.
    Schemas(cmd::schemas::Args),
    /// Customer features: ingest events, show (as of a time), history, similar customers.
    Features(cmd::features::Args),
    /// Knowledge base (RAG): ingest, query, eval.
    Kb(cmd::kb::Args),
    /// Validate and run Amazon States Language state machines locally.
    Asl(cmd::asl::Args),
    /// Run the upsell workflow on events (JSON lines) and print a summary.
    Run(cmd::run::Args),
    /// Backfill historical events (JSONL/CSV file or folder) through the Distributed Map, with
    /// progress; `--resume NAME` finishes one an earlier process left mid-way.
    Backfill(cmd::backfill::Args),
    /// Run failed events again (claim handed over, history kept), like scripts/redrive.sh in AWS.
    Redrive(cmd::redrive::Args),
    /// Terminal records of processed events: list, show.
    Messages(cmd::messages::Args),
    /// State machine executions and their history: list, show.
    Executions(cmd::executions::Args),
    /// Quarantined events with their reasons: list.
    Quarantine(cmd::quarantine::Args),
    /// EventBridge tooling: test-pattern (like `aws events test-event-pattern`).
    Events(cmd::events::Args),
    /// Latency percentiles, approval, error and quarantine rates, rejection reasons and cost.
    Monitor(cmd::monitor::Args),
    /// Write the monitoring panels as one self-contained HTML page.
    Dashboard(cmd::dashboard::Args),
    /// Serve the webhook (POST /events, HMAC-signed) on 127.0.0.1, feeding the local runtime.
    Serve(cmd::serve::Args),
    /// Agent registry: register, list, show, diff, promote, retire, history.
    Agents(cmd::agents::Args),
    /// Data and concept drift between a baseline and a current window (or two event files).
    Drift(cmd::drift::Args),
    /// Evaluate an agent version against production on historical events (paired statistics,
    /// pass/fail).
    Eval(cmd::eval::Args),
    /// Gated rollout of an agent version (evaluate, canary 10% -> 50% with health checks,
    /// production or automatic rollback): start, status, abort, simulate.
    Rollout(cmd::rollout::Args),
    /// Take an agent's canary out now (rolled-back, weight 0, AgentRolloutRolledBack).
    Rollback(cmd::rollout::RollbackArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = cmd::Context { home: cli.home };
    let result = match cli.command {
        Command::Sample(args) => cmd::sample::run(args, &ctx),
        Command::Validate(args) => cmd::validate::run(args, &ctx),
        Command::Schemas(args) => cmd::schemas::run(args, &ctx),
        Command::Features(args) => cmd::features::run(args, &ctx),
        Command::Kb(args) => cmd::kb::run(args, &ctx),
        Command::Asl(args) => cmd::asl::run(args, &ctx),
        Command::Run(args) => cmd::run::run(args, &ctx),
        Command::Backfill(args) => cmd::backfill::run(args, &ctx),
        Command::Redrive(args) => cmd::redrive::run(args, &ctx),
        Command::Messages(args) => cmd::messages::run(args, &ctx),
        Command::Executions(args) => cmd::executions::run(args, &ctx),
        Command::Quarantine(args) => cmd::quarantine::run(args, &ctx),
        Command::Events(args) => cmd::events::run(args, &ctx),
        Command::Monitor(args) => cmd::monitor::run(args, &ctx),
        Command::Dashboard(args) => cmd::dashboard::run(args, &ctx),
        Command::Serve(args) => cmd::serve::run(args, &ctx),
        Command::Agents(args) => cmd::agents::run(args, &ctx),
        Command::Drift(args) => cmd::drift::run(args, &ctx),
        Command::Eval(args) => cmd::eval::run(args, &ctx),
        Command::Rollout(args) => cmd::rollout::run(args, &ctx),
        Command::Rollback(args) => cmd::rollout::run_rollback(args, &ctx),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if cmd::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
