//! `upsell events`: EventBridge tooling that needs no AWS account.
//!
//! `upsell events test-pattern --pattern JSON|@FILE --event JSON|@FILE` answers like
//! `aws events test-event-pattern`: `true` or `false` on stdout and exit 0; a pattern
//! EventBridge would refuse exits 1 with its reason, an unreadable event exits 1 too. The
//! matcher is the one the local runtime routes events with ([`upsell_local::EventPattern`]).

use anyhow::{Context as _, bail};
use serde_json::Value;
use upsell_local::EventPattern;

use super::Context;

/// Arguments of `upsell events`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Tests whether an event pattern matches an event (like `aws events test-event-pattern`).
    TestPattern {
        /// The event pattern: JSON text, or @FILE to read it from a file.
        #[arg(long, value_name = "JSON|@FILE")]
        pattern: String,
        /// The event (a full EventBridge envelope): JSON text, or @FILE.
        #[arg(long, value_name = "JSON|@FILE")]
        event: String,
    },
}

/// Runs the command.
pub fn run(args: Args, _ctx: &Context) -> anyhow::Result<()> {
    let Sub::TestPattern { pattern, event } = args.command;
    let pattern_text = argument_text(&pattern, "--pattern")?;
    let event_text = argument_text(&event, "--event")?;
    let pattern = EventPattern::from_json_str(&pattern_text).map_err(|e| {
        anyhow::anyhow!(
            "InvalidEventPatternException: Event pattern is not valid. Reason: {} (at {})",
            e.message,
            e.path
        )
    })?;
    let event: Value = serde_json::from_str(&event_text)
        .with_context(|| "InvalidEventException: --event is not valid JSON")?;
    if !event.is_object() {
        bail!("InvalidEventException: --event must be a JSON object (an EventBridge event)");
    }
    outln!("{}", pattern.matches(&event));
    Ok(())
}

/// The text of a `JSON|@FILE` argument (`@-` reads standard input).
fn argument_text(arg: &str, flag: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some("-") => std::io::read_to_string(std::io::stdin())
            .with_context(|| format!("reading {flag} from standard input")),
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {flag} from {path}"))
        }
        None => Ok(arg.to_owned()),
    }
}
