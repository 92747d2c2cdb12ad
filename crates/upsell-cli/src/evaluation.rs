//! Agent evaluation on a laptop (`upsell eval`): validates a dataset of historical events,
//! replays each customer's history from it so that every event is evaluated with what was
//! known at its time ([`ReplayTimeline`]), runs `state-machines/agent-evaluation.asl.json`
//! through the local runtime of `sam/template.yaml` and writes the report as JSON, Markdown and
//! HTML under `<home>/evaluations/<evaluation id>/`. Invalid lines are counted in the report
//! (`invalid-event`), never dropped silently.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use upsell_core::evaluation::{EvalCase, EvaluationReport, EvaluationStore, ReplayTimeline};
use upsell_core::hash::fnv1a;
use upsell_core::validate::check_event;
use upsell_local::is_valid_execution_name;
use upsell_local::state_machine_arn;

use crate::app::{AppOptions, LocalApp};

/// Logical id of the evaluation state machine in sam/template.yaml.
pub const STATE_MACHINE: &str = "AgentEvaluationStateMachine";
/// The bucket the dataset is read from (the local folder `<home>/evaluations`).
pub const BUCKET: &str = "evaluations";

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// The candidate, `ID@VERSION`.
    pub candidate: String,
    /// Baseline version of the same agent (`None`: its production version).
    pub baseline: Option<String>,
    /// The dataset file.
    pub dataset: PathBuf,
    /// Evaluate a deterministic sample of this many valid events.
    pub sample: Option<usize>,
}

/// A finished evaluation.
#[derive(Debug)]
pub struct EvalRun {
    /// Evaluation id (= execution name).
    pub id: String,
    /// Where the dataset copy and the reports are.
    pub folder: PathBuf,
    /// The report.
    pub report: EvaluationReport,
    /// Lines of the dataset that are not valid events: (line number, why).
    pub invalid: Vec<(usize, String)>,
    /// Lines read.
    pub lines: usize,
}

/// What the dataset gave: the events to evaluate and the lines that are not valid events.
pub struct Dataset {
    /// Valid events to evaluate (JSON envelopes, redeliveries removed, sampled).
    pub items: Vec<Value>,
    /// Every valid event's customer history, for point-in-time reads.
    pub timeline: ReplayTimeline,
    /// Lines that are not valid events: (line number, why).
    pub invalid: Vec<(usize, String)>,
    /// Lines read.
    pub total: usize,
}

/// A CSV row's `detail` column (JSON text) becomes JSON.
fn envelope(mut v: Value) -> Value {
    if let Some(d) = v.get("detail").and_then(Value::as_str)
        && let Ok(parsed) = serde_json::from_str::<Value>(d)
    {
        v["detail"] = parsed;
    }
    v
}

/// Reads and validates a dataset (JSON lines, or CSV by the `.csv` extension) and replays its
/// customers' history; `sample` keeps a deterministic N of the valid events.
pub fn load_dataset(path: &Path, sample: Option<usize>) -> anyhow::Result<Dataset> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    // (line number, parsed item or why not)
    let rows: Vec<(usize, Result<Value, String>)> = if csv {
        upsell_asl::read_csv(&text, &json!({}))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 2, Ok(v)))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                (
                    i + 1,
                    serde_json::from_str(l).map_err(|e| format!("not JSON: {e}")),
                )
            })
            .collect()
    };
    let total = rows.len();
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    let mut events = Vec::new();
    let mut invalid = Vec::new();
    for (line, row) in rows {
        let checked = row.and_then(|v| {
            let v = envelope(v);
            let bytes = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
            check_event(&bytes)
                .map(|e| (v, e))
                .map_err(|r| r.to_string())
        });
        match checked {
            Ok((v, e)) => {
                // A redelivered event is one event.
                if seen.insert(e.id().to_owned()) {
                    items.push(v);
                    events.push(e);
                }
            }
            Err(why) => invalid.push((line, why)),
        }
    }
    let timeline = ReplayTimeline::from_events(&events)
        .map_err(|e| anyhow::anyhow!("replaying {}: {e}", path.display()))?;
    if let Some(n) = sample
        && n < items.len()
    {
        // A deterministic spread over the file: the N events with the smallest id hash, in file order.
        let mut order: Vec<(u64, usize)> = items
            .iter()
            .enumerate()
            .map(|(i, v)| (fnv1a(v["id"].as_str().unwrap_or_default().as_bytes()), i))
            .collect();
        order.sort_unstable();
        let mut keep: Vec<usize> = order.into_iter().take(n).map(|(_, i)| i).collect();
        keep.sort_unstable();
        items = keep.into_iter().map(|i| items[i].clone()).collect();
    }
    Ok(Dataset {
        items,
        timeline,
        invalid,
        total,
    })
}

/// A valid execution name for the evaluation.
pub fn evaluation_id(candidate: &str, baseline: Option<&str>) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>()
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ");
    let mut id = format!(
        "{}-vs-{}-{stamp}",
        clean(candidate),
        clean(baseline.unwrap_or("production"))
    );
    if !is_valid_execution_name(&id) {
        id = format!("eval-{stamp}");
    }
    id
}

/// Runs an evaluation with the application options `opts` (home, template, model; the
/// timeline and object folders are set here). `progress(done, total)` is called while it runs.
pub async fn evaluate(
    mut opts: AppOptions,
    req: &EvalRequest,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<EvalRun> {
    if !req.candidate.contains('@') {
        bail!(
            "{:?}: name the candidate as ID@VERSION, e.g. upsell-generator@1.1.0",
            req.candidate
        );
    }
    let data = load_dataset(&req.dataset, req.sample)?;
    if data.items.is_empty() {
        bail!(
            "{} holds no valid event ({} lines)",
            req.dataset.display(),
            data.total
        );
    }
    let id = evaluation_id(&req.candidate, req.baseline.as_deref());
    let evaluations = opts.home.join("evaluations");
    let folder = evaluations.join(&id);
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let mut lines = String::new();
    for v in &data.items {
        lines.push_str(&serde_json::to_string(v)?);
        lines.push('\n');
    }
    let copy = folder.join("dataset.jsonl");
    std::fs::write(&copy, lines).with_context(|| format!("writing {}", copy.display()))?;

    opts.timeline = Some(Arc::new(data.timeline));
    let app = Arc::new(LocalApp::open(opts).await?);
    // The dataset copy is read through the local S3 of the runtime, from this folder (a mount
    // for this process only).
    app.runtime
        .objects()
        .context("the local runtime has no object store for the Distributed Map")?
        .mount(BUCKET, "", &evaluations);
    for (line, _) in &data.invalid {
        app.evaluations
            .put_case(&EvalCase {
                evaluation_id: id.clone(),
                event_id: format!("line-{line}"),
                customer_id: String::new(),
                skipped: Some("invalid-event".into()),
                candidate: None,
                baseline: None,
            })
            .await?;
    }
    let total = (data.items.len() + data.invalid.len()) as u64;
    let input = json!({
        "evaluationId": id,
        "candidate": req.candidate,
        "baseline": req.baseline,
        "dataset": {"bucket": BUCKET, "key": format!("{id}/dataset.jsonl")},
    });
    let run = {
        let app = app.clone();
        let id = id.clone();
        tokio::spawn(async move {
            app.runtime
                .start_execution(&state_machine_arn(STATE_MACHINE), Some(&id), input, true)
                .await
        })
    };
    while !run.is_finished() {
        progress(app.evaluations.written(), total);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let execution = run
        .await
        .context("the evaluation task panicked")?
        .map_err(|e| anyhow::anyhow!("starting the evaluation {id}: {e}"))?;
    progress(app.evaluations.written(), total);
    app.runtime.flush()?;
    let report = match (execution.status.as_str(), execution.output) {
        ("SUCCEEDED", Some(v)) => serde_json::from_value::<EvaluationReport>(v)
            .context("the evaluation's output is not a report")?,
        (status, _) => bail!(
            "the evaluation {id} ended {status}: {}: {} (upsell executions show {})",
            execution.error.unwrap_or_default(),
            execution.cause.unwrap_or_default(),
            execution.execution_arn
        ),
    };
    std::fs::write(
        folder.join("report.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    std::fs::write(
        folder.join("report.md"),
        evaluate::render::markdown(&report),
    )?;
    std::fs::write(folder.join("report.html"), evaluate::render::html(&report))?;
    Ok(EvalRun {
        id,
        folder,
        report,
        invalid: data.invalid,
        lines: data.total,
    })
}
