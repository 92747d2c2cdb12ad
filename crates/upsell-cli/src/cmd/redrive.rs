//! `upsell redrive`: runs failed events again, as `scripts/redrive.sh` does in AWS.
//!
//! For each `failed` message record (optionally since a time, or with one error name) it finds
//! the failed execution through the event's claim (`EVENT#<id>`/`CLAIM`, `executionId`), hands
//! the claim over to a new execution named `<failed name>-redrive-<n>` (a conditional update:
//! only while the failed execution still holds it), and starts that execution with the failed
//! one's input. The workflow is the unchanged `upsell-message.asl.json`: its `ClaimEvent`
//! accepts the claim (`executionId = :me`) and its terminal record replaces the failed one (a
//! `failed` record is the only one a later record may replace). The failed execution and its
//! history stay.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use upsell_cli::app::{AppOptions, LocalApp, ModelChoice};
use upsell_core::message::{MessageRecord, MessageStatus};
use upsell_core::ports::{MessageQuery, MessageStore};
use upsell_local::state_machine_arn;
use upsell_local::{execution_arn, is_valid_execution_name};
use upsell_sqlite::{CLAIM_SK, MESSAGES_TABLE, event_pk};
use upsell_sqlite::{ItemKey, KeyValue, Write};

use super::Context;

/// Arguments of `upsell redrive`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events that failed at or after this time (RFC 3339, or a date: YYYY-MM-DD).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only events whose failure has this error name (e.g. ModelThrottled, States.Timeout).
    #[arg(long, value_name = "NAME")]
    error: Option<String>,
    /// List what would be redriven; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Model provider for the generator and the judge (see `upsell run --model`).
    #[arg(long, default_value = "offline", value_name = "PROVIDER")]
    model: String,
    /// Base URL of the OpenAI-compatible server (with --model openai).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Model name on that server (with --model openai).
    #[arg(long, value_name = "NAME")]
    model_id: Option<String>,
    /// The SAM template whose state machines run locally.
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
    /// Print one JSON object per redriven event.
    #[arg(long)]
    json: bool,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| {
            format!("{s:?} is neither RFC 3339 (2026-01-31T12:00:00Z) nor a date (2026-01-31)")
        })
}

/// The error name of a failed record (`"<Error>: <cause>"`).
fn error_name(r: &MessageRecord) -> &str {
    r.error
        .as_deref()
        .and_then(|e| e.split_once(": ").map(|(n, _)| n))
        .unwrap_or("")
}

fn claim_key(event_id: &str) -> ItemKey {
    ItemKey {
        pk: KeyValue::S(event_pk(event_id)),
        sk: Some(KeyValue::S(CLAIM_SK.into())),
    }
}

/// One failed event to run again.
struct Plan {
    event_id: String,
    failed_arn: String,
    machine: String,
    name: String,
    input: Value,
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let model = ModelChoice::from_flags(
        &args.model,
        args.endpoint.as_deref(),
        args.model_id.as_deref(),
    )?;
    let mut opts = AppOptions::new(&ctx.home);
    opts.template = args.template.clone();
    opts.kb_dir = args.kb_dir.clone();
    opts.model = model.provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let app = Arc::new(LocalApp::open(opts).await?);
        let mut failed = Vec::new();
        let mut after = None;
        loop {
            let page = app
                .messages
                .list(&MessageQuery {
                    status: Some(MessageStatus::Failed),
                    after_event_id: after.clone(),
                    limit: 1000,
                    ..MessageQuery::default()
                })
                .await
                .context("listing failed records")?;
            let Some(last) = page.last() else { break };
            after = Some(last.event_id.clone());
            failed.extend(page);
        }
        failed.retain(|r| {
            args.since.is_none_or(|t| r.created_at >= t)
                && args.error.as_deref().is_none_or(|e| error_name(r) == e)
        });

        let mut plans = Vec::new();
        for r in &failed {
            plans.push(plan(&app, r)?);
        }
        if args.dry_run || plans.is_empty() {
            for p in &plans {
                outln!("would redrive {} ({}) as {}", p.event_id, p.failed_arn, p.name);
            }
            if !args.json {
                outln!("{} failed event(s) to redrive", plans.len());
            }
            return anyhow::Ok(());
        }
        let mut set = tokio::task::JoinSet::new();
        for p in plans {
            let app = app.clone();
            set.spawn(async move {
                let result = redrive(&app, &p).await;
                (p, result)
            });
        }
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        while let Some(joined) = set.join_next().await {
            let (p, result) = joined.context("a redrive task panicked")?;
            let (status, outcome) = match result {
                Ok(d) => (d.0, d.1),
                Err(e) => ("NOT_STARTED".to_owned(), format!("{e:#}")),
            };
            *counts.entry(outcome.clone()).or_default() += 1;
            if args.json {
                outln!(
                    "{}",
                    json!({"eventId": p.event_id, "failedExecution": p.failed_arn,
                           "execution": execution_arn(&p.machine, &p.name), "status": status, "outcome": outcome})
                );
            } else {
                outln!("{} -> {} {status} {outcome}", p.event_id, p.name);
            }
        }
        app.runtime.flush()?;
        if !args.json {
            let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            outln!("redrove {} event(s): {}", failed.len(), summary.join(", "));
        }
        anyhow::Ok(())
    })
}

/// Finds the failed execution (through the claim, else the execution named after the event)
/// and the next free redrive name.
fn plan(app: &LocalApp, r: &MessageRecord) -> anyhow::Result<Plan> {
    let claim = app
        .tables
        .get(MESSAGES_TABLE, &claim_key(&r.event_id))
        .context("reading the claim")?;
    let by_claim = claim
        .as_ref()
        .and_then(|c| c.pointer("/executionId/S"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let found = match by_claim {
        Some(arn) => app.executions.find(&arn)?,
        None => app.executions.find(&r.event_id)?,
    };
    let Some(failed) = found else {
        bail!(
            "event {}: no execution found for its failed record (it ran in another home?)",
            r.event_id
        );
    };
    let input = failed
        .input
        .clone()
        .with_context(|| format!("{}: the history has no input", failed.arn))?;
    let base: String = failed
        .name
        .split("-redrive-")
        .next()
        .unwrap_or(&failed.name)
        .chars()
        .take(64)
        .collect();
    let mut n = 1;
    let name = loop {
        let name = format!("{base}-redrive-{n}");
        if app
            .executions
            .find(&execution_arn(&failed.state_machine, &name))?
            .is_none_or(|e| !e.arn.ends_with(&format!(":{name}")))
        {
            break name;
        }
        n += 1;
    };
    if !is_valid_execution_name(&name) {
        bail!(
            "event {}: {name:?} is not a valid execution name",
            r.event_id
        );
    }
    Ok(Plan {
        event_id: r.event_id.clone(),
        failed_arn: failed.arn,
        machine: failed.state_machine,
        name,
        input,
    })
}

/// Hands the claim to the new execution and runs it; returns its status and outcome.
async fn redrive(app: &LocalApp, p: &Plan) -> anyhow::Result<(String, String)> {
    let new_arn = execution_arn(&p.machine, &p.name);
    let moved = app
        .tables
        .modify(MESSAGES_TABLE, &claim_key(&p.event_id), |old| {
            let Some(old) = old else {
                // Failed before ClaimEvent: the new execution claims it itself.
                return Ok(Write::Keep);
            };
            if old.pointer("/executionId/S").and_then(Value::as_str) != Some(p.failed_arn.as_str())
            {
                return Err(format!(
                    "the claim is held by {}, not by the failed execution",
                    old.pointer("/executionId/S")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                ));
            }
            let mut item = old.clone();
            item["executionId"] = json!({"S": new_arn});
            item["redriveOf"] = json!({"S": p.failed_arn});
            item["redrivenAt"] = json!({"S": Utc::now().to_rfc3339()});
            Ok(Write::Put(item))
        })?;
    if let Err(e) = moved {
        bail!("event {}: {e}", p.event_id);
    }
    let d = app
        .runtime
        .start_execution(
            &state_machine_arn(&p.machine),
            Some(&p.name),
            p.input.clone(),
            true,
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting {}: {e}", p.name))?;
    let outcome = d
        .output
        .as_ref()
        .and_then(|o| o.get("outcome"))
        .and_then(Value::as_str)
        .map_or_else(
            || d.error.clone().unwrap_or_else(|| "failed".into()),
            str::to_owned,
        );
    Ok((d.status, outcome))
}
