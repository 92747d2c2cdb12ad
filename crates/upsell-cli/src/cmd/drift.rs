//! `upsell drift`: data and concept drift between a baseline and a current window, either over
//! what the local runtime has run (`--baseline FROM..TO --current FROM..TO`) or over two event
//! files (`--baseline-events A.jsonl --current-events B.jsonl`). The statistics are in
//! `upsell_core::drift` (docs/monitoring.md, "Drift").
//!
//! `upsell drift --run --baseline FROM..TO [--current FROM..TO]` runs the drift monitor itself:
//! the template's drift-monitor state machine on the local runtime (`upsell_cli::drift_monitor`),
//! which records the report and puts `DriftDetected` on the local bus when drift is found.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use upsell_cli::app::{AppOptions, BUS_JOURNAL_FILE, HISTORY_FILE, LocalApp, existing_db};
use upsell_cli::drift_monitor::{DriftCheck, run_drift_monitor};
use upsell_core::drift::{
    self, DriftConfig, DriftReport, EventSample, FeatureTest, OutcomeSample, Window, WindowData,
};
use upsell_sqlite::ExecutionStore;
use upsell_sqlite::HistoryLevel;
use upsell_sqlite::SqliteDriftSource;
use upsell_sqlite::SqliteMessageStore;

use super::Context;

/// Arguments of `upsell drift`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["baseline", "baseline_events"])))]
pub struct Args {
    /// Baseline window over what has run locally, by event time: `FROM..TO` (half-open; dates
    /// are UTC midnight, or RFC 3339 instants), e.g. `2025-01-01..2025-07-01`.
    #[arg(long, value_name = "FROM..TO", value_parser = drift::parse_range)]
    baseline: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Current window, same form as --baseline (with --run, by default the --current-days days
    /// before today, UTC, as the daily schedule does).
    #[arg(long, value_name = "FROM..TO", requires = "baseline", value_parser = drift::parse_range)]
    current: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Baseline events: a JSON-lines file (invalid lines and repeated ids are left out, as the
    /// pipeline does).
    #[arg(long, value_name = "FILE", requires = "current_events", conflicts_with_all = ["baseline", "current"])]
    baseline_events: Option<PathBuf>,
    /// Current events: a JSON-lines file.
    #[arg(long, value_name = "FILE", requires = "baseline_events", conflicts_with_all = ["baseline", "current"])]
    current_events: Option<PathBuf>,
    /// Run the drift monitor: the template's drift-monitor state machine on the local runtime
    /// (as the daily schedule does in AWS); the report is recorded and, on drift, a
    /// DriftDetected event goes on the local bus (bus-events.jsonl).
    #[arg(long, requires = "baseline")]
    run: bool,
    /// With --run and no --current: length of the current window in days.
    #[arg(long, requires = "run", value_parser = clap::value_parser!(u32).range(1..=366), value_name = "DAYS")]
    current_days: Option<u32>,
    /// False-alarm budget over every look at this baseline.
    #[arg(long, default_value_t = 0.05, value_parser = parse_alpha, value_name = "A")]
    alpha: f64,
    /// Which look at this baseline this is (1 = first): look t spends alpha/(t(t+1)). Default: 1,
    /// or with --run the number of current windows since the baseline's end.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "T")]
    look: Option<u32>,
    /// Fewest observations (customers) on each side for a test to run.
    #[arg(long, default_value_t = 30, value_name = "N")]
    min_samples: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// With --run: the SAM template whose state machine and functions run locally.
    #[arg(
        long,
        env = "UPSELL_TEMPLATE",
        default_value = "sam/template.yaml",
        value_name = "FILE"
    )]
    template: PathBuf,
    /// With --run: knowledge-base folder, indexed when the home has none yet.
    #[arg(
        long,
        env = "UPSELL_KB_DIR",
        default_value = "knowledge-base",
        value_name = "DIR"
    )]
    kb_dir: PathBuf,
}

fn parse_alpha(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not strictly between 0 and 1"))
    }
}

fn file_window(path: &Path) -> anyhow::Result<WindowData> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read events file {}", path.display()))?;
    let loaded = drift::events_from_jsonl(&text);
    if loaded.events.is_empty() {
        bail!(
            "{} holds no valid events ({} invalid lines): nothing to compare",
            path.display(),
            loaded.invalid
        );
    }
    Ok(WindowData::new(
        Window::default_label(path.display().to_string()),
        EventSample::from_events(&loaded.events),
        OutcomeSample::default(),
    ))
}

fn label((from, to): (DateTime<Utc>, DateTime<Utc>)) -> String {
    drift::time_window(from, to).label
}

/// `--run`: one execution of the drift-monitor state machine.
fn run_monitor(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let baseline = args.baseline.context("--run needs --baseline FROM..TO")?;
    existing_db(&ctx.home)?;
    let mut opts = AppOptions::new(&ctx.home);
    opts.template = args.template.clone();
    opts.kb_dir = args.kb_dir.clone();
    opts.history = HistoryLevel::Summary;
    let check = DriftCheck {
        baseline: label(baseline),
        current: args.current.map(label),
        current_days: args.current_days,
        alpha: Some(args.alpha),
        look: args.look,
        min_samples: Some(args.min_samples),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let run = rt.block_on(async {
        let app = LocalApp::open(opts).await?;
        run_drift_monitor(&app, &check).await
    })?;
    if args.json {
        let mut out = serde_json::json!({
            "executionArn": run.execution_arn,
            "driftDetected": run.output.drift_detected,
            "alert": run.output.alert,
            "report": run.output.report,
        });
        if let Some(skipped) = &run.output.skipped {
            out["skipped"] = serde_json::to_value(skipped)?;
        }
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let Some(report) = &run.output.report else {
        // A scheduled-window run before the baseline ends: not an error (exit 0).
        let why = run.output.skipped.as_ref().map_or_else(
            || "skipped: the drift monitor returned no report".to_string(),
            |s| s.message.clone(),
        );
        outln!("{why}");
        outln!("execution {} (no report recorded)", run.execution_arn);
        return Ok(());
    };
    print_report(report)?;
    outln!();
    outln!("execution {}", run.execution_arn);
    if run.events.is_empty() {
        outln!("no DriftDetected event");
    } else {
        outln!(
            "DriftDetected put on the local bus ({})",
            ctx.home.join(BUS_JOURNAL_FILE).display()
        );
    }
    Ok(())
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    if args.run {
        return run_monitor(&args, ctx);
    }
    let cfg = DriftConfig {
        alpha: args.alpha,
        look: args.look.unwrap_or(1),
        min_samples: args.min_samples,
    };
    let (baseline, current) = match (
        args.baseline,
        args.current,
        &args.baseline_events,
        &args.current_events,
    ) {
        (Some(_), None, _, _) => {
            bail!("--baseline needs --current FROM..TO (or --run, which defaults to the last day)")
        }
        (Some(b), Some(c), _, _) => {
            let db = existing_db(&ctx.home)?;
            let history = db.with_file_name(HISTORY_FILE);
            let source = SqliteDriftSource::new(
                Arc::new(
                    ExecutionStore::open(&history)
                        .with_context(|| format!("opening {}", history.display()))?,
                ),
                Arc::new(
                    SqliteMessageStore::open(&db)
                        .with_context(|| format!("opening {}", db.display()))?,
                ),
            );
            let rt = super::features::runtime()?;
            let read = |(from, to)| rt.block_on(drift::read_window(&source, from, to));
            let (b, c) = (read(b)?, read(c)?);
            for w in [&b, &c] {
                if w.window.events == 0 {
                    bail!(
                        "no events with an event time in {} have run under {} (see `upsell executions list`)",
                        w.window.label,
                        ctx.home.display()
                    );
                }
            }
            (b, c)
        }
        (_, _, Some(b), Some(c)) => (file_window(b)?, file_window(c)?),
        _ => bail!("give --baseline and --current, or --baseline-events and --current-events"),
    };
    let report = drift::detect(&baseline, &current, &cfg);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report)?;
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn fmt_p(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(p) if p < 1e-4 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
    }
}

fn effect(t: &FeatureTest) -> String {
    let e = &t.effect_size;
    let mut parts = Vec::new();
    if let Some(v) = e.psi {
        parts.push(format!("psi {v:.3}"));
    }
    if let Some(v) = e.jensen_shannon {
        parts.push(format!("js {v:.3}"));
    }
    if let Some(v) = e.wasserstein {
        parts.push(format!("w {v:.3}"));
    }
    if let Some(v) = e.wasserstein_std {
        parts.push(format!("({v:.2} sd)"));
    }
    if let Some(v) = e.difference {
        parts.push(format!("diff {v:+.3}"));
    }
    parts.join(" ")
}

fn print_report(r: &DriftReport) -> anyhow::Result<()> {
    outln!(
        "baseline {} ({} events, {} messages)",
        r.baseline.label,
        r.baseline.events,
        r.baseline.messages
    );
    outln!(
        "current  {} ({} events, {} messages)",
        r.current.label,
        r.current.events,
        r.current.messages
    );
    outln!(
        "look {}: alpha {} spent {:.5} (alpha/(t(t+1))), {} correction over the tests below",
        r.look,
        r.alpha,
        r.alpha_look,
        r.correction
    );
    outln!();
    outln!(
        "{:<44} {:<16} {:>10} {:>9} {:>9} {:>8} {:>8}  {:<7} effect",
        "test",
        "method",
        "statistic",
        "p",
        "p (holm)",
        "n base",
        "n cur",
        "drifted"
    );
    for t in r.tests() {
        outln!(
            "{:<44} {:<16} {:>10} {:>9} {:>9} {:>8} {:>8}  {:<7} {}{}",
            t.name,
            t.method,
            fmt_opt(t.statistic, 4),
            fmt_p(t.p_value),
            fmt_p(t.p_adjusted),
            t.baseline_n,
            t.current_n,
            if t.drifted { "YES" } else { "no" },
            effect(t),
            t.note
                .as_deref()
                .map(|n| format!("  [{n}]"))
                .unwrap_or_default()
        );
    }
    outln!();
    if r.drift_detected {
        outln!("DRIFT DETECTED: {}", r.drifted.join(", "));
    } else {
        outln!("no drift detected");
    }
    Ok(())
}
