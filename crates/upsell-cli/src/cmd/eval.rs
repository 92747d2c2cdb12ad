//! `upsell eval ID@VERSION`: evaluates an agent version against a baseline (default: the
//! production version of the same agent) on historical events, locally, with the same state
//! machine as in AWS (`upsell_cli::evaluation`). The exit status is 1 when the candidate fails.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use upsell_cli::app::{AppOptions, ModelChoice};
use upsell_cli::evaluation::{EvalRequest, evaluate};
use upsell_core::evaluation::EvaluationReport;
use upsell_sqlite::HistoryLevel;

use super::Context;

/// Arguments of `upsell eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The candidate agent version, e.g. upsell-generator@1.1.0 (a generator or a judge).
    #[arg(value_name = "ID@VERSION")]
    candidate: String,
    /// Baseline version of the same agent (default: its production version).
    #[arg(long, value_name = "VERSION")]
    baseline: Option<String>,
    /// Historical events: JSON lines (EventBridge envelopes) or CSV (.csv; a `detail` column
    /// holding the detail as JSON).
    #[arg(long, default_value = "examples/events.jsonl", value_name = "FILE")]
    dataset: PathBuf,
    /// Evaluate a deterministic sample of N events (the customers' full history is still
    /// replayed for point-in-time features).
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
    /// Print the report as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    /// Model provider: offline (deterministic) or openai (with --endpoint and --model-id).
    #[arg(long, default_value = "offline", value_name = "PROVIDER")]
    model: String,
    /// Base URL of the OpenAI-compatible server (with --model openai).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Model name on that server (with --model openai).
    #[arg(long, value_name = "NAME")]
    model_id: Option<String>,
    /// The SAM template whose state machine and functions run locally.
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
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let model = ModelChoice::from_flags(
        &args.model,
        args.endpoint.as_deref(),
        args.model_id.as_deref(),
    )?;
    let mut opts = AppOptions::new(&ctx.home);
    opts.template = args.template;
    opts.kb_dir = args.kb_dir;
    opts.model = model.provider();
    opts.history = HistoryLevel::Summary;
    let req = EvalRequest {
        candidate: args.candidate,
        baseline: args.baseline,
        dataset: args.dataset,
        sample: args.sample,
    };
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec})",
        )
        .expect("a valid progress template"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let run = rt.block_on(evaluate(opts, &req, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    }))?;
    bar.finish_and_clear();
    if let Some((line, why)) = run.invalid.first() {
        eprintln!(
            "{} of {} lines are not valid events (counted as invalid-event), e.g. {}:{line}: {}",
            run.invalid.len(),
            run.lines,
            req.dataset.display(),
            why.chars().take(160).collect::<String>()
        );
    }
    let report = &run.report;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_summary(report, &run.folder)?;
    }
    if !report.decision.pass {
        bail!(
            "{} fails against {}: {}",
            report.subject.candidate,
            report.subject.baseline,
            report
                .decision
                .reasons
                .iter()
                .filter(|r| r.starts_with("FAIL"))
                .map(|r| r.trim_start_matches("FAIL: "))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

fn print_summary(r: &EvaluationReport, folder: &Path) -> anyhow::Result<()> {
    let s = &r.subject;
    outln!(
        "{} vs {} on {} events ({} paired cases): {}",
        s.candidate,
        s.baseline,
        r.events,
        r.paired_cases,
        if r.decision.pass { "PASS" } else { "FAIL" }
    );
    for (name, a) in [("candidate", &r.candidate), ("baseline", &r.baseline)] {
        outln!(
            "  {name:<9} approval {:>5.1}% (95% CI {:.1}-{:.1}%)  mean score {:.2} ({:.2}-{:.2})  brand failures {}  errors {}",
            a.approval.value * 100.0,
            a.approval.ci95.low * 100.0,
            a.approval.ci95.high * 100.0,
            a.score.value,
            a.score.ci95.low,
            a.score.ci95.high,
            a.brand_failures,
            a.errors
        );
    }
    for reason in &r.decision.reasons {
        outln!("  {reason}");
    }
    outln!(
        "report: {} (.md, .html)",
        folder.join("report.json").display()
    );
    Ok(())
}
