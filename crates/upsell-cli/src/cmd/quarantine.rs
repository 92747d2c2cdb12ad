//! `upsell quarantine`: events that failed validation or matched no rule, kept verbatim with
//! every problem found.

use anyhow::Context as _;
use upsell_cli::app::existing_db;
use upsell_core::ports::MessageStore;
use upsell_sqlite::SqliteMessageStore;

use super::Context;

/// Arguments of `upsell quarantine`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Quarantined events in quarantine-id order, with their reasons and problems.
    List {
        /// Records after this quarantine id (paging).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON record per line (includes the raw event).
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let db = existing_db(&ctx.home)?;
    let store =
        SqliteMessageStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let rt = super::features::runtime()?;
    let Sub::List { after, limit, json } = args.command;
    let records = rt.block_on(store.list_quarantine(after.as_deref(), limit.max(1)))?;
    if json {
        for r in &records {
            outln!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    if records.is_empty() {
        outln!("nothing quarantined");
        return Ok(());
    }
    for r in &records {
        outln!(
            "{}  {}  {}",
            r.quarantine_id,
            r.reason,
            r.origin.as_deref().unwrap_or("-")
        );
        for p in &r.errors {
            let at = if p.path.is_empty() {
                "(event)"
            } else {
                p.path.as_str()
            };
            outln!("    {at}: {}", p.message);
        }
    }
    if records.len() == limit {
        let last = &records[records.len() - 1].quarantine_id;
        eprintln!("more may follow: --after {last}");
    }
    Ok(())
}
