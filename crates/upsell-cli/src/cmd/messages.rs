//! `upsell messages`: the terminal records of processed events (approved, rejected, failed,
//! skipped), from the local message store.

use anyhow::Context as _;
use upsell_cli::app::existing_db;
use upsell_core::message::{MessageRecord, MessageStatus};
use upsell_core::ports::{MessageQuery, MessageStore};
use upsell_sqlite::SqliteMessageStore;

use super::Context;

/// Arguments of `upsell messages`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Records in event-id order.
    List {
        /// Only this status: approved, rejected, failed or skipped.
        #[arg(long, value_parser = parse_status)]
        status: Option<MessageStatus>,
        /// Only this customer.
        #[arg(long, value_name = "ID")]
        customer: Option<String>,
        /// Records after this event id (paging).
        #[arg(long, value_name = "EVENT_ID")]
        after: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
    /// One record with every attempt and the judge's verdicts.
    Show {
        /// Event id.
        id: String,
        /// The record as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_status(s: &str) -> Result<MessageStatus, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown status {s:?} (approved, rejected, failed, skipped)"))
}

fn status(s: MessageStatus) -> String {
    upsell_sqlite::status_name(s)
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn score(r: &MessageRecord) -> String {
    r.attempts
        .last()
        .map_or_else(|| "-".to_owned(), |a| a.verdict.score.to_string())
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let db = existing_db(&ctx.home)?;
    let store =
        SqliteMessageStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let rt = super::features::runtime()?;
    match args.command {
        Sub::List {
            status: st,
            customer,
            after,
            limit,
            json,
        } => {
            let records = rt.block_on(store.list(&MessageQuery {
                customer_id: customer,
                status: st,
                after_event_id: after,
                limit: limit.max(1),
            }))?;
            if json {
                for r in &records {
                    outln!("{}", serde_json::to_string(r)?);
                }
                return Ok(());
            }
            if records.is_empty() {
                outln!("no messages");
                return Ok(());
            }
            outln!(
                "{:<38} {:<12} {:<9} {:>3} {:>5}  MESSAGE / ERROR",
                "EVENT ID",
                "CUSTOMER",
                "STATUS",
                "TRY",
                "SCORE"
            );
            for r in &records {
                let text = r.message.as_deref().or(r.error.as_deref()).unwrap_or("");
                outln!(
                    "{:<38} {:<12} {:<9} {:>3} {:>5}  {}",
                    r.event_id,
                    r.customer_id,
                    status(r.status),
                    r.attempts.len(),
                    score(r),
                    one_line(text, 80)
                );
            }
            if records.len() == limit {
                let last = &records[records.len() - 1].event_id;
                eprintln!("more may follow: --after {last}");
            }
            Ok(())
        }
        Sub::Show { id, json } => {
            let Some(r) = rt.block_on(store.get(&id))? else {
                anyhow::bail!("no message record for event {id:?} (see `upsell messages list`)");
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            outln!("event      {}", r.event_id);
            outln!("customer   {}", r.customer_id);
            outln!("status     {}", status(r.status));
            if let Some(s) = r.recommended_service {
                outln!("service    {}", s.code());
            }
            outln!("generator  {}", r.generator);
            outln!("judge      {}", r.judge);
            outln!(
                "tokens     {} in / {} out, ${:.5}",
                r.total_usage.input_tokens,
                r.total_usage.output_tokens,
                r.cost_usd
            );
            outln!("latency    {} ms", r.latency_ms);
            outln!("created    {}", r.created_at.to_rfc3339());
            if let Some(e) = &r.error {
                outln!("error      {e}");
            }
            if let Some(m) = &r.message {
                outln!("\nmessage:\n{m}");
            }
            for a in &r.attempts {
                outln!(
                    "\nattempt {}: score {}, {}{}",
                    a.attempt,
                    a.verdict.score,
                    if a.verdict.approved {
                        "approved"
                    } else {
                        "rejected"
                    },
                    if a.verdict.reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", a.verdict.reasons.join(", "))
                    }
                );
                outln!("  {}", one_line(&a.message, 400));
                if !a.verdict.feedback.is_empty() {
                    outln!("  feedback: {}", one_line(&a.verdict.feedback, 400));
                }
            }
            Ok(())
        }
    }
}
