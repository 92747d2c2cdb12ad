//! `upsell executions`: state machine executions run locally, and one execution's history as a
//! timeline like the Step Functions console's (step, event type, elapsed time, input/output).

use anyhow::Context as _;
use serde_json::Value;
use upsell_asl::HistoryEvent;
use upsell_cli::app::existing_db;
use upsell_sqlite::{ExecutionFilter, ExecutionStore, ExecutionSummary};

use super::Context;

/// Arguments of `upsell executions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Executions, newest first.
    List {
        /// Only this status: RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
        #[arg(long, value_parser = parse_status)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One execution (ARN, name, or the event id it ran for) and its history.
    Show {
        /// Execution ARN, execution name, or event id.
        id: String,
        /// The history as JSON (GetExecutionHistory's `events`).
        #[arg(long)]
        json: bool,
    },
}

fn parse_status(s: &str) -> Result<String, String> {
    let up = s.to_ascii_uppercase();
    match up.as_str() {
        "RUNNING" | "SUCCEEDED" | "FAILED" | "TIMED_OUT" | "ABORTED" => Ok(up),
        _ => Err(format!(
            "unknown status {s:?} (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED)"
        )),
    }
}

/// A JSON value (or JSON text) on one line, cut to `max` characters.
fn summarise(v: &Value, max: usize) -> String {
    let text = match v {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner) => inner.to_string(),
            Err(_) => s.clone(),
        },
        other => other.to_string(),
    };
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn outcome(e: &ExecutionSummary) -> String {
    match (&e.output, &e.error) {
        (Some(o), _) => o
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        (None, Some(err)) => err.clone(),
        _ => String::new(),
    }
}

fn find(store: &ExecutionStore, id: &str) -> anyhow::Result<Option<ExecutionSummary>> {
    if let Some(e) = store.find(id)? {
        return Ok(Some(e));
    }
    // An event id: executions are named `<event id>.<suffix>`; take the newest.
    let all = store.list(&ExecutionFilter {
        limit: Some(usize::MAX / 2),
        ..ExecutionFilter::default()
    })?;
    let prefix = format!("{id}.");
    Ok(all.into_iter().find(|e| e.name.starts_with(&prefix)))
}

fn elapsed_ms(start: &str, e: &HistoryEvent) -> i64 {
    chrono::DateTime::parse_from_rfc3339(start)
        .map(|s| (e.timestamp - s.with_timezone(&chrono::Utc)).num_milliseconds())
        .unwrap_or(0)
}

/// A state's whole input or output: its top-level keys and size, since every state of a
/// workflow carries the same growing document and the new key is what changed.
fn keys_summary(v: &Value) -> Option<String> {
    let text = v.as_str()?;
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let keys: Vec<&str> = m.keys().map(String::as_str).collect();
    Some(format!("{{{}}} ({} bytes)", keys.join(", "), text.len()))
}

/// The details worth a glance, in the console's order.
fn detail_summary(event_type: &str, details: &Value) -> String {
    let state_io = event_type.ends_with("StateEntered") || event_type.ends_with("StateExited");
    let mut parts = Vec::new();
    for key in [
        "resource",
        "error",
        "cause",
        "input",
        "output",
        "parameters",
    ] {
        if let Some(v) = details.get(key) {
            let shown = match (state_io, keys_summary(v)) {
                (true, Some(keys)) => keys,
                _ => summarise(
                    v,
                    if key == "resource" || key == "error" {
                        70
                    } else {
                        100
                    },
                ),
            };
            parts.push(format!("{key}: {shown}"));
        }
    }
    parts.join("  ")
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let db = existing_db(&ctx.home)?.with_file_name(upsell_cli::app::HISTORY_FILE);
    let store = ExecutionStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
    match args.command {
        Sub::List {
            status,
            limit,
            json,
        } => {
            let list = store.list(&ExecutionFilter {
                status,
                state_machine: None,
                limit: Some(limit.max(1)),
            })?;
            if json {
                for e in &list {
                    outln!(
                        "{}",
                        serde_json::json!({
                            "executionArn": e.arn, "stateMachine": e.state_machine, "name": e.name,
                            "status": e.status, "startDate": e.start_time, "stopDate": e.stop_time,
                            "outcome": outcome(e), "error": e.error, "cause": e.cause,
                        })
                    );
                }
                return Ok(());
            }
            if list.is_empty() {
                outln!("no executions");
                return Ok(());
            }
            outln!(
                "{:<50} {:<10} {:<24} {:<12} STATE MACHINE",
                "NAME",
                "STATUS",
                "STARTED",
                "OUTCOME"
            );
            for e in &list {
                outln!(
                    "{:<50} {:<10} {:<24} {:<12} {}",
                    e.name,
                    e.status,
                    e.start_time,
                    outcome(e),
                    e.state_machine
                );
            }
            Ok(())
        }
        Sub::Show { id, json } => {
            let Some(e) = find(&store, &id)? else {
                anyhow::bail!("no execution {id:?} (see `upsell executions list`)");
            };
            let history = store.history(&e.arn)?;
            if json {
                let events: Vec<Value> = history.iter().map(HistoryEvent::to_json).collect();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"events": events}))?
                );
                return Ok(());
            }
            outln!("execution  {}", e.arn);
            outln!("status     {}", e.status);
            outln!("started    {}", e.start_time);
            if let Some(s) = &e.stop_time {
                outln!("stopped    {s}");
            }
            if let Some(o) = &e.output {
                outln!("output     {}", summarise(o, 200));
            }
            if let Some(err) = &e.error {
                outln!(
                    "error      {err}: {}",
                    e.cause
                        .as_deref()
                        .map(|c| summarise(&Value::String(c.to_owned()), 200))
                        .unwrap_or_default()
                );
            }
            outln!();
            outln!(
                "{:>4}  {:<28} {:<22} {:>9}  DETAILS",
                "ID",
                "TYPE",
                "STEP",
                "ELAPSED"
            );
            let mut step = String::new();
            for ev in &history {
                let details = ev.details.as_ref().map(|(_, v)| v);
                if let Some(name) = details.and_then(|d| d.get("name")).and_then(Value::as_str) {
                    step = name.to_owned();
                }
                let shown = if ev.event_type.starts_with("Execution") {
                    ""
                } else {
                    step.as_str()
                };
                outln!(
                    "{:>4}  {:<28} {:<22} {:>7}ms  {}",
                    ev.id,
                    ev.event_type,
                    shown,
                    elapsed_ms(&e.start_time, ev),
                    details
                        .map(|d| detail_summary(&ev.event_type, d))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}
