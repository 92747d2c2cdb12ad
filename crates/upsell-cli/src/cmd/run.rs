//! `upsell run`: the main job. Puts every event of a JSON-lines file on the local event bus of
//! `sam/template.yaml`, runs the upsell workflow for each matched event and prints a summary.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use upsell_cli::app::{AppOptions, LocalApp, ModelChoice, Outcome, RunSummary};
use upsell_sqlite::HistoryLevel;

use super::Context;

/// Arguments of `upsell run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events as JSON lines (EventBridge envelopes); `-` reads standard input.
    #[arg(long, default_value = "examples/events.jsonl", value_name = "FILE|-")]
    events: PathBuf,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// What the execution history keeps: full (every state's input and output, as the Step
    /// Functions console shows) or summary (event types, states, timings, errors and causes
    /// only; Step Functions' includeExecutionData=false), about a fifth faster.
    #[arg(long, default_value = "full", value_name = "LEVEL", value_parser = ["full", "summary"])]
    history: String,
    /// Model provider for the generator and the judge: offline (deterministic, no network) or
    /// openai (any OpenAI-compatible server such as Ollama or llama.cpp's server).
    #[arg(long, default_value = "offline", value_name = "PROVIDER")]
    model: String,
    /// Base URL of the OpenAI-compatible server (with --model openai).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Model name on that server (with --model openai), e.g. llama3.2:3b.
    #[arg(long, value_name = "NAME")]
    model_id: Option<String>,
    /// The SAM template whose rules, state machines and functions run locally.
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
    /// Customers processed at once (one customer's events always run in file order).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096), value_name = "N")]
    concurrency: u16,
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let model = ModelChoice::from_flags(
        &args.model,
        args.endpoint.as_deref(),
        args.model_id.as_deref(),
    )?;
    let (text, origin) = if args.events.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading events from standard input")?;
        (s, "stdin".to_owned())
    } else {
        let s = std::fs::read_to_string(&args.events)
            .with_context(|| format!("reading {}", args.events.display()))?;
        (s, args.events.display().to_string())
    };
    let total = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;

    let mut opts = AppOptions::new(&ctx.home);
    opts.template = args.template;
    opts.kb_dir = args.kb_dir;
    opts.model = model.provider();
    opts.lanes = usize::from(args.concurrency);
    opts.history = match args.history.as_str() {
        "summary" => HistoryLevel::Summary,
        _ => HistoryLevel::Full,
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
        let resumed = app.resume_interrupted().await?;
        if !resumed.is_empty() {
            eprintln!(
                "resumed {} execution(s) interrupted by an earlier run",
                resumed.len()
            );
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec}) {msg}",
            )
            .expect("a valid progress template"),
        );
        let mut failures = Vec::new();
        let (summary, _) = app
            .run_lines(&text, &origin, |r| {
                bar.inc(1);
                if r.outcome == Outcome::Failed {
                    failures.push(format!(
                        "line {} (event {}): {}",
                        r.line,
                        r.event_id.as_deref().unwrap_or("?"),
                        r.detail.as_deref().unwrap_or("no detail")
                    ));
                }
            })
            .await?;
        bar.finish_and_clear();
        for f in failures.iter().take(10) {
            eprintln!("failed: {f}");
        }
        if failures.len() > 10 {
            eprintln!("... and {} more failures", failures.len() - 10);
        }
        if args.json {
            outln!("{}", summary.to_json());
        } else {
            print_summary(&summary, &ctx.home)?;
        }
        anyhow::Ok(())
    })
}

fn print_summary(s: &RunSummary, home: &std::path::Path) -> std::io::Result<()> {
    outln!(
        "{} events in {:.2}s ({:.0} events/s)",
        s.events,
        s.elapsed_s,
        s.events_per_s()
    );
    outln!("  published           {:>7}", s.published);
    outln!(
        "  rejected            {:>7}  (the judge rejected every attempt)",
        s.rejected
    );
    outln!(
        "  skipped             {:>7}  (no message on purpose: no profile, opted out, unhappy, nothing to offer)",
        s.skipped
    );
    outln!("  quarantined         {:>7}", s.quarantined);
    outln!("  failed              {:>7}", s.failed);
    outln!("  duplicates ignored  {:>7}", s.duplicates);
    outln!(
        "records in {}: `upsell messages list`, `upsell quarantine list`, `upsell executions list`",
        home.display()
    );
    Ok(())
}
