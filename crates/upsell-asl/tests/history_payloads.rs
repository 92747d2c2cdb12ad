//! History payloads and checkpoints: a sink that declines payloads gets the same events minus
//! the `input`/`output`/`parameters` fields; payload texts are the states' documents; every
//! checkpoint holds the next state's input, the variables and the execution input.

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use upsell_asl::{
    Checkpoint, CheckpointStore, Engine, HistoryEvent, HistorySink, MemoryCheckpoints, MemorySink,
    Outcome, ParseOptions, Resources, StartOptions, StateMachine, TaskContext, TaskFailure,
    TaskHandler, parse,
};

const PAYLOAD_FIELDS: [&str; 5] = [
    "input",
    "output",
    "parameters",
    "inputDetails",
    "outputDetails",
];

/// Echoes its input; `...:fail` fails with `Boom`.
struct Echo;

#[async_trait::async_trait]
impl TaskHandler for Echo {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        _ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        if resource.ends_with(":fail") {
            return Err(TaskFailure {
                error: "Boom".into(),
                cause: Some("it broke".into()),
            });
        }
        Ok(json!({"echo": input}))
    }
}

/// Keeps events like [`MemorySink`] but declines payloads.
#[derive(Default)]
struct SummarySink(MemorySink);

impl HistorySink for SummarySink {
    fn payloads(&self) -> bool {
        false
    }
    fn record(&self, event: HistoryEvent) {
        self.0.record(event)
    }
}

/// Keeps every checkpoint handed over.
#[derive(Default)]
struct Recorder {
    saved: Mutex<Vec<Checkpoint>>,
    inner: MemoryCheckpoints,
}

impl CheckpointStore for Recorder {
    fn save(&self, c: &Checkpoint) -> Result<(), String> {
        self.saved.lock().unwrap().push(c.clone());
        self.inner.save(c)
    }
    fn load(&self, arn: &str) -> Result<Option<Checkpoint>, String> {
        self.inner.load(arn)
    }
    fn clear(&self, arn: &str) -> Result<(), String> {
        self.inner.clear(arn)
    }
}

fn machine() -> Arc<StateMachine> {
    parse(
        &json!({
            "StartAt": "Receive",
            "States": {
                "Receive": {"Type": "Pass", "Parameters": {"event.$": "$", "id.$": "$$.Execution.Name"}, "Next": "Lambda"},
                "Lambda": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:echo",
                           "Parameters": {"e.$": "$.event"}, "ResultPath": "$.lambda", "Next": "Service"},
                "Service": {"Type": "Task", "Resource": "arn:aws:states:::test:echo", "InputPath": "$.event",
                            "ResultSelector": {"got.$": "$.echo"}, "ResultPath": "$.svc",
                            "Assign": {"seen.$": "$.got.n"}, "Next": "Route"},
                "Route": {"Type": "Choice", "Choices": [
                    {"Variable": "$.svc.got.n", "NumericEquals": 1, "Next": "Failing"}
                ], "Default": "Done"},
                "Failing": {"Type": "Task", "Resource": "arn:aws:states:::test:fail",
                            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Mark"}],
                            "Next": "Done"},
                "Mark": {"Type": "Pass", "Result": "marked", "ResultPath": "$.mark", "Next": "Done"},
                "Done": {"Type": "Succeed", "OutputPath": "$"}
            }
        }),
        ParseOptions::default(),
    )
    .expect("valid machine")
}

fn engine(history: Arc<dyn HistorySink>, checkpoints: Arc<dyn CheckpointStore>) -> Engine {
    let mut r = Resources::new();
    let h: Arc<dyn TaskHandler> = Arc::new(Echo);
    r.register_pattern("arn:aws:lambda:*", h.clone());
    r.register_pattern("arn:aws:states:::test:*", h);
    Engine::builder()
        .resources(r)
        .history(history)
        .checkpoints(checkpoints)
        .build()
}

fn start() -> StartOptions {
    StartOptions {
        name: Some("run-1".into()),
        ..Default::default()
    }
}

fn input() -> Value {
    json!({"n": 1, "text": "quote \" and \u{e9}", "list": [1.5, null, true]})
}

/// The details as a summary-level store keeps them.
fn without_payloads(e: &HistoryEvent) -> (u64, u64, String, Option<(String, Value)>) {
    let details = e.details.clone().map(|(k, mut v)| {
        if let Value::Object(m) = &mut v {
            for f in PAYLOAD_FIELDS {
                m.remove(f);
            }
        }
        (k, v)
    });
    (e.id, e.previous_event_id, e.event_type.clone(), details)
}

fn text(e: &HistoryEvent, field: &str) -> Option<String> {
    e.details
        .as_ref()?
        .1
        .get(field)?
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn summary_sink_gets_the_same_events_without_payloads() {
    let sm = machine();
    let full = Arc::new(MemorySink::new());
    let run = engine(full.clone(), Arc::new(MemoryCheckpoints::default()))
        .execute(&sm, input(), start())
        .await;
    let summary = Arc::new(SummarySink::default());
    let run2 = engine(summary.clone(), Arc::new(MemoryCheckpoints::default()))
        .execute(&sm, input(), start())
        .await;
    assert_eq!(run.outcome, run2.outcome);
    let Outcome::Succeeded(out) = &run.outcome else {
        panic!("{:?}", run.outcome)
    };
    assert_eq!(out["mark"], json!("marked"));
    assert_eq!(out["error"]["Error"], json!("Boom"));

    let full = full.events(&run.arn);
    let summary = summary.0.events(&run.arn);
    assert_eq!(full.len(), summary.len());
    for (f, s) in full.iter().zip(&summary) {
        let execution_level = f.event_type.starts_with("Execution");
        if execution_level {
            // The execution's own events keep their input and output.
            assert_eq!(
                (f.id, &f.event_type, &f.details),
                (s.id, &s.event_type, &s.details)
            );
        } else {
            assert_eq!(without_payloads(f), without_payloads(s), "{}", f.event_type);
            assert!(
                PAYLOAD_FIELDS.iter().all(|k| text(s, k).is_none()),
                "{} kept a payload",
                s.event_type
            );
        }
    }
    // Payload texts are the compact JSON of the documents, and a state's output text is the
    // next state's input text.
    assert_eq!(
        text(&full[0], "input").unwrap(),
        input().to_string(),
        "ExecutionStarted input"
    );
    assert_eq!(
        text(full.last().unwrap(), "output").unwrap(),
        out.to_string(),
        "ExecutionSucceeded output"
    );
    let entered: Vec<String> = full
        .iter()
        .filter(|e| e.event_type.ends_with("StateEntered"))
        .map(|e| text(e, "input").expect("entered input"))
        .collect();
    let exited: Vec<String> = full
        .iter()
        .filter(|e| e.event_type.ends_with("StateExited"))
        .map(|e| text(e, "output").expect("exited output"))
        .collect();
    assert_eq!(entered[0], input().to_string());
    // Failing's catch leaves no StateExited for it; everything else chains.
    let names: Vec<String> = full
        .iter()
        .filter(|e| e.event_type.ends_with("StateEntered"))
        .map(|e| {
            e.details.as_ref().unwrap().1["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "Receive", "Lambda", "Service", "Route", "Failing", "Mark", "Done"
        ]
    );
    for t in entered.iter().chain(&exited) {
        let v: Value = serde_json::from_str(t).expect("payload is JSON");
        assert_eq!(&v.to_string(), t, "payload text is compact JSON");
    }
    assert_eq!(exited[..4], entered[1..5], "outputs feed the next inputs");
    assert_eq!(exited.last().unwrap(), &out.to_string());
    let scheduled = full
        .iter()
        .find(|e| e.event_type == "TaskScheduled")
        .unwrap();
    assert_eq!(
        text(scheduled, "parameters").unwrap(),
        input().to_string(),
        "Service's InputPath selects the event"
    );
    let lambda = full
        .iter()
        .find(|e| e.event_type == "LambdaFunctionSucceeded")
        .unwrap();
    let v: Value = serde_json::from_str(&text(lambda, "output").unwrap()).unwrap();
    assert_eq!(v, json!({"echo": {"e": input()}}));
}

#[tokio::test]
async fn checkpoints_hold_the_next_input_variables_and_execution_input() {
    let sm = machine();
    let history = Arc::new(MemorySink::new());
    let store = Arc::new(Recorder::default());
    let run = engine(history.clone(), store.clone())
        .execute(&sm, input(), start())
        .await;
    let events = history.events(&run.arn);
    let saved = store.saved.lock().unwrap().clone();
    let next: Vec<&str> = saved.iter().map(|c| c.next_state.as_str()).collect();
    assert_eq!(
        next,
        ["Lambda", "Service", "Route", "Failing", "Mark", "Done"]
    );
    for c in &saved {
        assert_eq!(c.execution_input, input());
        assert_eq!(c.execution_arn, run.arn);
        // The input is the text the state was entered with.
        let entered = events
            .iter()
            .find(|e| e.id == c.last_event_id + 1)
            .expect("event after the checkpoint");
        assert!(entered.event_type.ends_with("StateEntered"));
        assert_eq!(
            text(entered, "input").unwrap(),
            c.input.to_string(),
            "{}",
            c.next_state
        );
    }
    assert!(saved[1].variables.is_empty());
    assert_eq!(saved[2].variables.get("seen"), Some(&json!(1)));

    // Resuming from any checkpoint finishes with the same output, and the history holds the
    // stopped run's events up to the checkpoint, then the resumed run's: none twice.
    for c in &saved {
        let store = Arc::new(Recorder::default());
        store.inner.save(c).unwrap();
        let sink = Arc::new(MemorySink::new());
        for e in &events {
            sink.record(e.clone());
        }
        let resumed = engine(sink.clone(), store)
            .resume(&sm, &run.arn)
            .await
            .expect("resume")
            .expect("checkpoint found");
        assert_eq!(
            resumed.outcome, run.outcome,
            "resumed before {}",
            c.next_state
        );
        let after = sink.events(&run.arn);
        let ids: Vec<u64> = after.iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "resumed before {}",
            c.next_state
        );
        assert_eq!(
            after[..c.last_event_id as usize],
            events[..c.last_event_id as usize]
        );
    }
}
