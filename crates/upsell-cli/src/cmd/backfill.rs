//! `upsell backfill`: historical events from JSONL / CSV files through the same Distributed Map
//! (`state-machines/backfill.asl.json`) that runs in AWS, on the local engine.
//!
//! The file or folder is mounted as the backfill bucket's `input/` prefix (results go to
//! `<home>/backfill-results/`, the bucket's `results/` prefix) and one execution of the
//! template's `BackfillStateMachine` runs over it. Each event starts one execution of the
//! per-event workflow named after its id, so a resumed or repeated backfill never runs an
//! event twice. After a kill, `--resume NAME` finishes the job from the checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use upsell_cli::app::{AppOptions, LocalApp};
use upsell_local::StartExecutionError;
use upsell_local::state_machine_arn;
use upsell_sqlite::HistoryLevel;

use super::Context;

/// Logical id of the backfill state machine in the SAM template.
const MACHINE: &str = "BackfillStateMachine";
/// Logical id of the backfill bucket (its local name).
const BUCKET: &str = "BackfillBucket";

/// Arguments of `upsell backfill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A JSONL (.jsonl, .ndjson) or CSV (.csv) file of events, or a folder of them (read
    /// recursively, in key order).
    #[arg(value_name = "FILE|DIR")]
    input: PathBuf,
    /// Finish the backfill execution NAME that an earlier process left mid-way (give the same
    /// FILE|DIR) instead of starting a new one.
    #[arg(long, value_name = "EXECUTION")]
    resume: Option<String>,
    /// Name of the new backfill execution (default: backfill-<UTC time>).
    #[arg(long, value_name = "NAME", conflicts_with = "resume")]
    name: Option<String>,
    /// Executions running at once (the backfill, its batches and the per-event workflows).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(4..=4096), value_name = "N")]
    concurrency: u16,
    /// What the execution history keeps (see `upsell run --history`).
    #[arg(long, default_value = "summary", value_name = "LEVEL", value_parser = ["full", "summary"])]
    history: String,
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
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Non-blank lines of the JSONL files and records of the CSV files under `input` (for the
/// progress bar's length; the item reader itself decides). A JSONL line that is not JSON is an
/// error here: Step Functions' JSONL reader fails the whole object on it, before any event runs.
fn count_items(input: &Path) -> anyhow::Result<u64> {
    let mut files = Vec::new();
    let mut stack = vec![input.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).with_context(|| format!("reading {}", p.display()))? {
                stack.push(e?.path());
            }
        } else {
            files.push(p);
        }
    }
    let mut n = 0u64;
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        n += if name.ends_with(".csv") {
            lines.saturating_sub(1)
        } else {
            lines
        };
    }
    Ok(n)
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    if !args.input.exists() {
        bail!("{} does not exist", args.input.display());
    }
    let prefix = if args.input.is_dir() {
        "input/".to_owned()
    } else {
        let name = args
            .input
            .file_name()
            .and_then(|n| n.to_str())
            .context("the input file has no UTF-8 name")?;
        format!("input/{name}")
    };
    let total = count_items(&args.input)?;

    let mut opts = AppOptions::new(&ctx.home);
    opts.template = args.template;
    opts.kb_dir = args.kb_dir;
    opts.lanes = usize::from(args.concurrency);
    opts.history = match args.history.as_str() {
        "full" => HistoryLevel::Full,
        _ => HistoryLevel::Summary,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let app = Arc::new(LocalApp::open(opts).await?);
        for n in &app.notes {
            eprintln!("{}: {n}", ctx.home.display());
        }
        if app.runtime.template().state_machine(MACHINE).is_none() {
            bail!("the template has no {MACHINE} (state-machines/backfill.asl.json)");
        }
        app.mount_s3(BUCKET, &prefix, &args.input)?;
        app.mount_s3(BUCKET, "results/", &ctx.home.join("backfill-results"))?;

        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec}, ETA {eta}) {msg}",
            )
            .expect("a valid progress template"),
        );
        let ticker = {
            let app = app.clone();
            let bar = bar.clone();
            tokio::spawn(async move {
                loop {
                    let s = app.runtime.start_stats();
                    bar.set_position(s.total());
                    bar.set_message(format!("failed {}, already done {}", s.failed, s.already));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let started = std::time::Instant::now();
        let name = match &args.resume {
            Some(name) => {
                let found = app
                    .executions
                    .find(name)
                    .context("reading the execution history")?
                    .filter(|e| e.state_machine == MACHINE);
                if let Some(e) = found.filter(|e| e.status != "RUNNING") {
                    bail!("backfill {name} is not interrupted: it is {}", e.status);
                }
                name.clone()
            }
            None => args.name.clone().unwrap_or_else(|| {
                format!("backfill-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"))
            }),
        };
        // Executions an earlier process left mid-way (e.g. this backfill's per-event
        // executions) resume from their checkpoints while the backfill runs: the Map starts
        // again from its beginning (its state has no checkpoint until it ends), and its
        // startExecution calls join those executions or find them closed.
        let machine_arn = state_machine_arn(MACHINE);
        let (resumed, backfill) = tokio::join!(
            app.resume_interrupted(),
            app.runtime.start_execution(
                &machine_arn,
                Some(&name),
                json!({"prefix": prefix}),
                true,
            )
        );
        let resumed = resumed?;
        if !resumed.is_empty() {
            eprintln!("resumed {} execution(s) interrupted by an earlier run", resumed.len());
        }
        // The backfill's own start is counted too: only its per-event executions are events.
        let own = match backfill {
            // Resumed from a checkpoint by resume_interrupted and closed there.
            Err(StartExecutionError::ExecutionAlreadyExists(_)) if args.resume.is_some() => {
                (0, 0, 1)
            }
            Err(e) => bail!("backfill {name}: {e}"),
            Ok(d) if d.status == "SUCCEEDED" => (1, 0, 0),
            Ok(_) => (0, 1, 0),
        };
        ticker.abort();
        app.runtime.flush()?;
        let mut stats = app.runtime.start_stats();
        stats.succeeded -= own.0;
        stats.failed -= own.1;
        stats.already -= own.2;
        bar.set_position(stats.total());
        bar.finish_and_clear();
        let done = app
            .executions
            .find(&name)
            .context("reading the execution history")?
            .with_context(|| format!("backfill {name} is not in the history"))?;
        let elapsed = started.elapsed().as_secs_f64();
        let result = json!({
            "execution": done.arn,
            "status": done.status,
            "error": done.error,
            "cause": done.cause,
            "events": stats.total(),
            "succeeded": stats.succeeded,
            "failed": stats.failed,
            "already_done": stats.already,
            "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
            "events_per_s": if elapsed > 0.0 { (stats.total() as f64 / elapsed * 10.0).round() / 10.0 } else { 0.0 },
            "results": ctx.home.join("backfill-results"),
        });
        if args.json {
            outln!("{result}");
        } else {
            outln!("backfill {name}: {} in {elapsed:.1}s", done.status);
            outln!("  events run          {:>7}  ({:.0} events/s)", stats.total(), result["events_per_s"].as_f64().unwrap_or(0.0));
            outln!("  workflow succeeded  {:>7}", stats.succeeded);
            outln!("  workflow failed     {:>7}  (`upsell messages list --status failed`, `upsell redrive`)", stats.failed);
            outln!("  already done before {:>7}", stats.already);
            if let Some(e) = &done.error {
                outln!("  error: {e}: {}", done.cause.as_deref().unwrap_or(""));
            }
            outln!("results under {}", ctx.home.join("backfill-results").display());
        }
        if done.status != "SUCCEEDED" {
            bail!("backfill {name} ended {}", done.status);
        }
        anyhow::Ok(())
    })
}
