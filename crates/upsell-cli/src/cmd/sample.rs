//! `upsell sample`: writes deterministic, realistic sample events as JSON lines.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::NaiveDate;
use upsell_core::sample::{self, DriftScenario, LineKind, SampleConfig};

use super::{Context, parse_share};

/// Arguments of `upsell sample`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of customers (each produces several events).
    #[arg(long, default_value_t = 100, value_name = "N")]
    customers: usize,
    /// Number of the first customer id (`cust-000001` for 1). Give a second file a range that
    /// does not overlap the first to make its customers new ones.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=999_999), value_name = "N")]
    first_customer: u64,
    /// Random seed; the same seed gives the same file.
    #[arg(long, default_value_t = 42, value_name = "S")]
    seed: u64,
    /// Share of events (0..1) deliberately broken: malformed JSON, missing fields, wrong types,
    /// unknown detail-types, out-of-range values, bad phones and dates.
    #[arg(long, default_value_t = 0.03, value_parser = parse_share, value_name = "F")]
    malformed_share: f64,
    /// Share of valid events (0..1) delivered twice with the same event id.
    #[arg(long, default_value_t = 0.02, value_parser = parse_share, value_name = "F")]
    duplicate_share: f64,
    /// First day of the simulated year (YYYY-MM-DD).
    #[arg(long, default_value = "2025-01-01", value_name = "DATE")]
    start: NaiveDate,
    /// Length of the simulated period in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3660), value_name = "DAYS")]
    days: u32,
    /// Change the population to show drift detection fire: region-shift, falling-satisfaction,
    /// new-service-mix or price-increase (without it the output is the normal population).
    #[arg(long, value_name = "SCENARIO")]
    drift: Option<DriftScenario>,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: Args, _ctx: &Context) -> anyhow::Result<()> {
    let cfg = SampleConfig {
        customers: args.customers,
        first_customer: args.first_customer as usize,
        seed: args.seed,
        malformed_share: args.malformed_share,
        duplicate_share: args.duplicate_share,
        start: args.start,
        days: args.days,
        drift: args.drift,
    };
    let lines = sample::generate(&cfg);
    let mut text = String::new();
    for l in &lines {
        text.push_str(&l.text);
        text.push('\n');
    }
    let count = |f: fn(&LineKind) -> bool| lines.iter().filter(|l| f(&l.kind)).count();
    let summary = format!(
        "{} events for {} customers: {} valid, {} malformed, {} duplicates (seed {})",
        lines.len(),
        cfg.customers,
        count(|k| *k == LineKind::Valid),
        count(|k| matches!(k, LineKind::Malformed(_))),
        count(|k| *k == LineKind::Duplicate),
        cfg.seed
    );
    match &args.out {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {summary} to {}", path.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .context("cannot write to standard output")?;
            out.flush().context("cannot write to standard output")?;
            eprintln!("{summary}");
        }
    }
    Ok(())
}
