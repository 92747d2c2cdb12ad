//! Subcommands, one module each.

use std::path::PathBuf;

/// `println!` that returns the write error (`?`) instead of panicking, so that a closed stdout
/// (`upsell ... | head`) ends the command quietly; see [`is_broken_pipe`].
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

pub mod agents;
pub mod asl;
pub mod backfill;
pub mod dashboard;
pub mod drift;
pub mod eval;
pub mod events;
pub mod executions;
pub mod features;
pub mod kb;
pub mod messages;
pub mod monitor;
pub mod quarantine;
pub mod redrive;
pub mod rollout;
pub mod run;
pub mod sample;
pub mod schemas;
pub mod serve;
pub mod validate;

/// What every subcommand gets besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    /// Local state directory (`--home`, `UPSELL_HOME`, default `.upsell/`).
    pub home: PathBuf,
}

/// Whether the error is a closed stdout (e.g. piped into `head`), which is not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Parses a share between 0 and 1 (clap value parser).
pub fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}
