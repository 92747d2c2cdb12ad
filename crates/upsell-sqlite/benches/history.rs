//! Execution-history throughput: executions shaped like `upsell run`'s (25 top-level states,
//! 52 events, a checkpoint per state, ~2 KB state document) written by 4 threads into a file
//! store, then flushed. Compares per-state commits with group commit, at both data levels.
//! Run: `cargo bench -p upsell-sqlite --bench history`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use upsell_asl::{Checkpoint, CheckpointStore, HistoryEvent, HistorySink};
use upsell_sqlite::{ExecutionStore, HistoryLevel, HistoryOptions};

const STATES: u64 = 25;
const THREADS: usize = 4;
const EXECUTIONS: usize = 200;

fn document() -> Value {
    let mut m = Map::new();
    for i in 0..40 {
        m.insert(
            format!("field{i}"),
            json!(format!("value number {i} of the state")),
        );
    }
    Value::Object(m)
}

fn event(arn: &str, id: u64, ty: &str, details: Value) -> HistoryEvent {
    HistoryEvent {
        execution_arn: arn.to_string(),
        id,
        previous_event_id: id.saturating_sub(1),
        timestamp: Utc::now(),
        event_type: ty.to_string(),
        details: Some(("details".into(), details)),
    }
}

/// One execution: started, 25 x (entered, exited, checkpoint), succeeded, cleared.
fn execution<S: HistorySink + CheckpointStore>(store: &S, arn: &str, doc: &Value) {
    let text = doc.to_string();
    store.record(event(arn, 1, "ExecutionStarted", json!({"input": text})));
    let mut id = 1;
    for s in 0..STATES {
        let name = format!("State{s}");
        id += 1;
        store.record(event(
            arn,
            id,
            "TaskStateEntered",
            json!({"name": name, "input": text}),
        ));
        id += 1;
        store.record(event(
            arn,
            id,
            "TaskStateExited",
            json!({"name": name, "output": text}),
        ));
        store
            .save(&Checkpoint {
                execution_arn: arn.to_string(),
                next_state: format!("State{}", s + 1),
                input: doc.clone(),
                variables: Map::new(),
                execution_input: doc.clone(),
                last_event_id: id,
                start_time: "2025-01-01T00:00:00.000Z".into(),
            })
            .unwrap();
    }
    id += 1;
    store.record(event(
        arn,
        id,
        "ExecutionSucceeded",
        json!({"output": text}),
    ));
    store.clear(arn).unwrap();
}

fn run<S: HistorySink + CheckpointStore + 'static>(store: Arc<S>, round: usize) {
    let doc = document();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let store = store.clone();
            let doc = doc.clone();
            scope.spawn(move || {
                for i in (t..EXECUTIONS).step_by(THREADS) {
                    let arn = format!("arn:aws:states:us-east-1:0:execution:M:r{round}-e{i}");
                    execution(store.as_ref(), &arn, &doc);
                }
            });
        }
    });
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("history");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for (label, options) in [
        (
            "per-state commits, full",
            HistoryOptions {
                commit_interval: Duration::ZERO,
                max_batch_events: 1,
                ..HistoryOptions::default()
            },
        ),
        ("group commit, full", HistoryOptions::default()),
        (
            "group commit, summary",
            HistoryOptions {
                level: HistoryLevel::Summary,
                ..HistoryOptions::default()
            },
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upsell.db");
        let mut round = 0;
        g.bench_function(format!("{EXECUTIONS} executions, {label}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let store =
                        Arc::new(ExecutionStore::open_with(&path, options.clone()).unwrap());
                    round += 1;
                    let start = Instant::now();
                    run(store.clone(), round);
                    store.flush().unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
