//! `upsell dashboard`: the monitoring panels as one self-contained HTML page (inline SVG, no
//! network), from the local metric log (docs/monitoring.md).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use upsell_cli::app::{METRICS_FILE, existing_db};
use upsell_cli::dashboard;
use upsell_core::monitor::MonitorReport;
use upsell_core::telemetry::MetricLog;
use upsell_sqlite::SqliteMetricLog;

use super::Context;
use super::monitor::parse_since;

/// Arguments of `upsell dashboard`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The HTML file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Only data points at or after this time (as `upsell monitor --since`).
    #[arg(long, value_name = "T", value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
}

/// The metric log under `home`, or an error saying why there is none (never creates one).
fn metric_log_path(home: &Path) -> anyhow::Result<PathBuf> {
    existing_db(home)?;
    let path = home.join(METRICS_FILE);
    if !path.exists() {
        bail!(
            "{} does not exist: the runs in {} predate the metric log; `upsell run` records metrics",
            path.display(),
            home.display()
        );
    }
    Ok(path)
}

/// The report of the home folder's metric log.
pub fn load_report(ctx: &Context, since: Option<DateTime<Utc>>) -> anyhow::Result<MonitorReport> {
    let path = metric_log_path(&ctx.home)?;
    let log =
        SqliteMetricLog::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let rt = super::features::runtime()?;
    let data = rt
        .block_on(log.metrics_since(since))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(MonitorReport::build(&data, since))
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let report = load_report(ctx, args.since)?;
    let html = dashboard::render(&report);
    std::fs::write(&args.out, html).with_context(|| format!("writing {}", args.out.display()))?;
    outln!(
        "wrote {} ({} panels from {} data points)",
        args.out.display(),
        dashboard::panels(&report).len(),
        report.data_points
    );
    Ok(())
}
