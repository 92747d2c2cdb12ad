//! The local runtime end to end with fake workers: a small SAM template with two state machines
//! (written to a temporary folder), rule matching, quarantines, duplicates, worker errors,
//! Lambda timeouts and resuming after a simulated crash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::Notify;
use upsell_core::events::RawEvent;
use upsell_core::message::{MessageRecord, QuarantineRecord};
use upsell_core::ports::{EventPublisher, MessageQuery, MessageStore, PortError, PutOutcome};
use upsell_local::{
    BusSource, EventOutcome, LocalEventBus, Runtime, RuntimeError, WorkerFailure, WorkerRegistry,
};
use upsell_sqlite::TableStore;
use upsell_sqlite::{ExecutionFilter, ExecutionStore};

const TEMPLATE: &str = r#"
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Resources:
  CheckFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../workers/check
  RecordFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../workers/record
      Timeout: 2
  EventBus:
    Type: AWS::Events::EventBus
    Properties:
      Name: test-bus
  MessagesTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - { AttributeName: pk, AttributeType: S }
        - { AttributeName: sk, AttributeType: S }
      KeySchema:
        - { AttributeName: pk, KeyType: HASH }
        - { AttributeName: sk, KeyType: RANGE }
  OrdersMachine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: ../state-machines/orders.asl.json
      DefinitionSubstitutions:
        CheckFunctionArn: !GetAtt CheckFunction.Arn
        RecordFunctionArn: !GetAtt RecordFunction.Arn
        MessagesTableName: !Ref MessagesTable
        EventBusName: !Ref EventBus
      Events:
        Orders:
          Type: EventBridgeRule
          Properties:
            EventBusName: !Ref EventBus
            Pattern:
              source: [{ prefix: com.test. }]
              detail-type: [OrderPlaced]
  RefundsMachine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: ../state-machines/refunds.asl.json
      Events:
        Refunds:
          Type: EventBridgeRule
          Properties:
            EventBusName: !Ref EventBus
            InputPath: $.detail
            Pattern:
              source: [{ prefix: com.test. }]
              detail-type: [RefundRequested]
"#;

const ORDERS: &str = r#"{
  "StartAt": "Check",
  "States": {
    "Check": {
      "Type": "Task",
      "Resource": "${CheckFunctionArn}",
      "ResultPath": "$.checked",
      "Catch": [{"ErrorEquals": ["SchemaInvalid"], "ResultPath": "$.error", "Next": "Quarantine"}],
      "Next": "Claim"
    },
    "Claim": {
      "Type": "Task",
      "Resource": "arn:aws:states:::dynamodb:putItem",
      "Parameters": {
        "TableName": "${MessagesTableName}",
        "Item": {"pk": {"S.$": "States.Format('EVENT#{}', $.id)"}, "sk": {"S": "CLAIM"}},
        "ConditionExpression": "attribute_not_exists(pk)"
      },
      "ResultPath": null,
      "Catch": [{"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "ResultPath": "$.error", "Next": "Duplicate"}],
      "Next": "Record"
    },
    "Record": {"Type": "Task", "Resource": "${RecordFunctionArn}", "ResultPath": "$.record", "Next": "Announce"},
    "Announce": {
      "Type": "Task",
      "Resource": "arn:aws:states:::events:putEvents",
      "Parameters": {"Entries": [{"EventBusName": "${EventBusName}", "Source": "com.test.orders", "DetailType": "OrderPlaced", "Detail": {"orderId.$": "$.detail.orderId"}}]},
      "ResultPath": null,
      "Next": "Done"
    },
    "Done": {"Type": "Pass", "Parameters": {"outcome": "published", "recordId.$": "$.id"}, "End": true},
    "Duplicate": {"Type": "Pass", "Parameters": {"outcome": "duplicate"}, "End": true},
    "Quarantine": {"Type": "Pass", "Parameters": {"outcome": "quarantined"}, "End": true}
  }
}"#;

const REFUNDS: &str = r#"{
  "StartAt": "Note",
  "States": {"Note": {"Type": "Pass", "Parameters": {"outcome": "skipped", "got.$": "$"}, "End": true}}
}"#;

/// Writes the template and definitions into a temporary project; returns the template path.
fn project(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("sam")).unwrap();
    std::fs::create_dir_all(dir.join("state-machines")).unwrap();
    std::fs::write(dir.join("sam/template.yaml"), TEMPLATE).unwrap();
    std::fs::write(dir.join("state-machines/orders.asl.json"), ORDERS).unwrap();
    std::fs::write(dir.join("state-machines/refunds.asl.json"), REFUNDS).unwrap();
    dir.join("sam/template.yaml")
}

/// How the fake `record` worker behaves for an order id.
#[derive(Clone, Copy, PartialEq)]
enum RecordMode {
    Normal,
    /// Never answers, after telling the test it was entered.
    Hang,
}

/// Fake workers: `check` rejects orders without `orderId`; `record` fails for order `boom`,
/// sleeps for order `slow`, publishes `OrderRecorded` through the EventPublisher port.
struct Workers {
    calls: Arc<Mutex<HashMap<String, usize>>>,
    bus: Arc<LocalEventBus>,
    mode: RecordMode,
    entered: Arc<Notify>,
}

impl Workers {
    fn new(bus: Arc<LocalEventBus>, calls: Arc<Mutex<HashMap<String, usize>>>) -> Self {
        Workers {
            calls,
            bus,
            mode: RecordMode::Normal,
            entered: Arc::new(Notify::new()),
        }
    }
}

#[async_trait::async_trait]
impl WorkerRegistry for Workers {
    async fn invoke(&self, worker: &str, payload: Value) -> Result<Value, WorkerFailure> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(worker.to_string())
            .or_default() += 1;
        let order = payload["detail"]["orderId"].as_str().map(str::to_string);
        match worker {
            "check" => match order {
                Some(id) => Ok(json!({"orderId": id})),
                None => Err(WorkerFailure::new(
                    "SchemaInvalid",
                    json!({"reason": "schema-violation", "problems": [{"path": "/detail/orderId", "message": "required"}]})
                        .to_string(),
                )),
            },
            "record" => {
                if self.mode == RecordMode::Hang {
                    self.entered.notify_one();
                    std::future::pending::<()>().await;
                }
                match order.as_deref() {
                    Some("boom") => Err(WorkerFailure::new(
                        "ModelThrottled",
                        "the model said: slow down",
                    )),
                    Some("slow") => {
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        Ok(json!({}))
                    }
                    _ => {
                        let event: RawEvent = serde_json::from_value(json!({
                            "id": format!("recorded-{}", payload["id"].as_str().unwrap_or("")),
                            "source": "com.test.records",
                            "detail-type": "OrderRecorded",
                            "time": "2025-01-01T00:00:00Z",
                            "resources": [],
                            "detail": {"orderId": order}
                        }))
                        .unwrap();
                        self.bus
                            .publish(&event)
                            .await
                            .map_err(|e| WorkerFailure::new(e.error_type().as_str(), e.to_string()))?;
                        Ok(json!({"stored": true}))
                    }
                }
            }
            other => Err(WorkerFailure::new("InternalError", format!("no worker {other}"))),
        }
    }

    fn has_worker(&self, worker: &str) -> bool {
        matches!(worker, "check" | "record")
    }
}

/// A MessageStore that keeps quarantine records in memory.
#[derive(Default)]
struct Quarantines {
    records: Mutex<Vec<QuarantineRecord>>,
}

#[async_trait::async_trait]
impl MessageStore for Quarantines {
    async fn put_if_absent(&self, _record: &MessageRecord) -> Result<PutOutcome, PortError> {
        Ok(PutOutcome::Inserted)
    }
    async fn get(&self, _event_id: &str) -> Result<Option<MessageRecord>, PortError> {
        Ok(None)
    }
    async fn list(&self, _query: &MessageQuery) -> Result<Vec<MessageRecord>, PortError> {
        Ok(Vec::new())
    }
    async fn quarantine(&self, record: &QuarantineRecord) -> Result<PutOutcome, PortError> {
        let mut records = self.records.lock().unwrap();
        if records
            .iter()
            .any(|r| r.quarantine_id == record.quarantine_id)
        {
            return Ok(PutOutcome::AlreadyExists);
        }
        records.push(record.clone());
        Ok(PutOutcome::Inserted)
    }
    async fn list_quarantine(
        &self,
        _after_id: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<QuarantineRecord>, PortError> {
        Ok(self.records.lock().unwrap().clone())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    template: PathBuf,
    bus: Arc<LocalEventBus>,
    calls: Arc<Mutex<HashMap<String, usize>>>,
    history: Arc<ExecutionStore>,
    quarantines: Arc<Quarantines>,
    tables: Arc<TableStore>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let template = project(dir.path());
        Fixture {
            _dir: dir,
            template,
            bus: Arc::new(LocalEventBus::new()),
            calls: Arc::default(),
            history: Arc::new(ExecutionStore::in_memory().unwrap()),
            quarantines: Arc::default(),
            tables: Arc::new(TableStore::in_memory().unwrap()),
        }
    }

    fn runtime_with(&self, workers: Workers) -> Runtime {
        Runtime::builder(
            &self.template,
            Arc::new(workers),
            self.tables.clone(),
            self.history.clone(),
            self.quarantines.clone(),
        )
        .bus(self.bus.clone())
        .max_concurrency(4)
        .build()
        .unwrap()
    }

    fn runtime(&self) -> Runtime {
        self.runtime_with(Workers::new(self.bus.clone(), self.calls.clone()))
    }

    fn calls(&self, worker: &str) -> usize {
        self.calls.lock().unwrap().get(worker).copied().unwrap_or(0)
    }
}

fn order(id: &str, order_id: Option<&str>) -> String {
    let detail = match order_id {
        Some(o) => json!({"orderId": o}),
        None => json!({"note": "no order id"}),
    };
    json!({"version": "0", "id": id, "source": "com.test.shop", "detail-type": "OrderPlaced",
           "time": "2025-01-01T00:00:00Z", "region": "us-east-1", "resources": [], "detail": detail})
    .to_string()
}

#[tokio::test]
async fn a_matching_rule_starts_its_state_machine_with_the_target_input() {
    let f = Fixture::new();
    let rt = f.runtime();
    assert_eq!(rt.ingest_bus(), "EventBus");

    let placed = rt
        .submit(&order("ev-1", Some("o-1")), "in.jsonl:1")
        .await
        .unwrap();
    assert_eq!(placed.outcome, EventOutcome::Published);
    assert_eq!(placed.event_id.as_deref(), Some("ev-1"));
    assert_eq!(placed.executions.len(), 1);
    let exec = &placed.executions[0];
    assert_eq!(
        exec.arn,
        "arn:aws:states:us-east-1:000000000000:execution:OrdersMachine:ev-1"
    );
    assert_eq!(exec.state_machine, "OrdersMachine");
    assert!(exec.started);
    assert_eq!((f.calls("check"), f.calls("record")), (1, 1));

    let refund = json!({"id": "ev-2", "source": "com.test.shop", "detail-type": "RefundRequested",
                        "time": "2025-01-01T00:00:00Z", "detail": {"orderId": "o-1", "amount": 12}});
    let refunded = rt.submit(&refund.to_string(), "in.jsonl:2").await.unwrap();
    assert_eq!(refunded.outcome, EventOutcome::Skipped);
    assert_eq!(refunded.executions[0].state_machine, "RefundsMachine");
    // InputPath $.detail: the refunds machine received only the detail.
    let summary = f.history.find("ev-2").unwrap().unwrap();
    assert_eq!(summary.status, "SUCCEEDED");
    assert_eq!(summary.input, Some(json!({"orderId": "o-1", "amount": 12})));
    // The orders machine did not run for the refund.
    assert_eq!(f.calls("check"), 1);
    assert_eq!(
        f.history.list(&ExecutionFilter::default()).unwrap().len(),
        2
    );
}

#[tokio::test]
async fn workflow_events_are_recorded_on_the_bus_but_never_start_executions() {
    let f = Fixture::new();
    let rt = f.runtime();
    rt.submit(&order("ev-1", Some("o-1")), "in.jsonl:1")
        .await
        .unwrap();

    // The Announce state put an OrderPlaced event that matches the Orders rule: recorded, not run.
    let announced = f.bus.published("OrderPlaced");
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0]["detail"], json!({"orderId": "o-1"}));
    assert_eq!(announced[0]["source"], "com.test.orders");
    let entry = f
        .bus
        .events()
        .into_iter()
        .find(|e| e.source == BusSource::Workflow && e.event["detail-type"] == "OrderPlaced")
        .unwrap();
    assert_eq!(entry.bus, "EventBus");
    assert_eq!(entry.matched_rules, vec!["OrdersMachineOrders".to_string()]);
    // The record worker published through core's EventPublisher port onto the same bus.
    let recorded = f.bus.published("OrderRecorded");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["id"], "recorded-ev-1");
    assert_eq!(
        f.history.list(&ExecutionFilter::default()).unwrap().len(),
        1
    );
    assert_eq!(f.calls("check"), 1);
}

#[tokio::test]
async fn lines_that_are_not_json_not_objects_or_match_no_rule_are_quarantined() {
    let f = Fixture::new();
    let rt = f.runtime();

    let cases = [
        ("{\"id\": \"ev-9\", oops", "malformed-json", None),
        ("[1, 2]", "schema-violation", None),
        ("", "malformed-json", None),
        (
            r#"{"id": "ev-10", "source": "com.other.shop", "detail-type": "OrderPlaced", "detail": {}}"#,
            "no-matching-rule",
            Some("ev-10"),
        ),
    ];
    for (i, (line, reason, event_id)) in cases.iter().enumerate() {
        let out = rt
            .submit(line, &format!("in.jsonl:{}", i + 1))
            .await
            .unwrap();
        assert_eq!(
            out.outcome,
            EventOutcome::Quarantined {
                reason: reason.to_string()
            },
            "line {i}: {line}"
        );
        assert!(out.executions.is_empty());
        assert_eq!(out.event_id.as_deref(), *event_id);
    }
    let records = f.quarantines.records.lock().unwrap().clone();
    assert_eq!(records.len(), cases.len());
    for (i, (r, (line, reason, event_id))) in records.iter().zip(&cases).enumerate() {
        assert_eq!(r.raw, *line);
        assert_eq!(r.reason.as_str(), *reason);
        assert_eq!(
            r.origin.as_deref(),
            Some(format!("in.jsonl:{}", i + 1).as_str())
        );
        assert_eq!(r.event_id.as_deref(), *event_id);
        assert_eq!(r.errors.len(), 1, "{r:?}");
    }
    assert!(records[3].errors[0].message.contains("matches no rule"));
    assert!(records[3].errors[0].message.contains("com.other.shop"));
    assert_eq!(records[3].quarantine_id, "ev-10");
    assert!(records[0].quarantine_id.starts_with("line-"));
    assert_ne!(records[0].quarantine_id, records[2].quarantine_id);
    assert_eq!(f.calls("check"), 0);
    assert!(
        f.history
            .list(&ExecutionFilter::default())
            .unwrap()
            .is_empty()
    );

    // Submitting the same bad line again keeps one record.
    rt.submit("[1, 2]", "in.jsonl:2").await.unwrap();
    assert_eq!(f.quarantines.records.lock().unwrap().len(), cases.len());
}

#[tokio::test]
async fn a_workflow_quarantine_reports_the_reason_from_the_caught_error() {
    let f = Fixture::new();
    let rt = f.runtime();
    let out = rt.submit(&order("ev-3", None), "in.jsonl:1").await.unwrap();
    assert_eq!(
        out.outcome,
        EventOutcome::Quarantined {
            reason: "schema-violation".into()
        }
    );
    assert_eq!(out.executions.len(), 1);
    assert_eq!(out.quarantine_id, None);
    assert_eq!(f.calls("record"), 0);
}

#[tokio::test]
async fn a_duplicate_event_id_starts_one_execution() {
    let f = Fixture::new();
    let rt = f.runtime();
    let line = order("ev-4", Some("o-4"));

    // Concurrently: the second submit finds the first one in flight.
    let (a, b) = tokio::join!(
        rt.submit(&line, "in.jsonl:1"),
        rt.submit(&line, "in.jsonl:2")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut outcomes = [a.outcome.name(), b.outcome.name()];
    outcomes.sort();
    assert_eq!(outcomes, ["duplicate", "published"]);
    let dup = if a.outcome == EventOutcome::Duplicate {
        &a
    } else {
        &b
    };
    assert!(!dup.executions[0].started);
    assert_eq!(
        dup.executions[0].arn,
        "arn:aws:states:us-east-1:000000000000:execution:OrdersMachine:ev-4"
    );

    // Later (e.g. the same file run again): the execution exists in the store.
    let again = rt.submit(&line, "in.jsonl:3").await.unwrap();
    assert_eq!(again.outcome, EventOutcome::Duplicate);
    assert_eq!((f.calls("check"), f.calls("record")), (1, 1));
    assert_eq!(
        f.history.list(&ExecutionFilter::default()).unwrap().len(),
        1
    );

    // A new runtime over the same stores also sees it.
    let rt2 = f.runtime();
    assert_eq!(
        rt2.submit(&line, "in.jsonl:4").await.unwrap().outcome,
        EventOutcome::Duplicate
    );
    assert_eq!(f.calls("check"), 1);
}

#[tokio::test]
async fn a_worker_error_surfaces_as_lambda_reports_it() {
    let f = Fixture::new();
    let rt = f.runtime();
    let out = rt
        .submit(&order("ev-5", Some("boom")), "in.jsonl:1")
        .await
        .unwrap();
    assert_eq!(
        out.outcome,
        EventOutcome::Failed {
            error: "ModelThrottled".into(),
            cause: Some(
                r#"{"errorMessage":"the model said: slow down","errorType":"ModelThrottled"}"#
                    .into()
            ),
        }
    );
    let summary = f.history.find("ev-5").unwrap().unwrap();
    assert_eq!(summary.status, "FAILED");
    assert_eq!(summary.error.as_deref(), Some("ModelThrottled"));
    let history = f.history.history(&summary.arn).unwrap();
    let failed = history
        .iter()
        .find(|e| e.event_type == "LambdaFunctionFailed")
        .expect("a LambdaFunctionFailed event");
    let (key, details) = failed.details.clone().unwrap();
    assert_eq!(key, "lambdaFunctionFailedEventDetails");
    assert_eq!(details["error"], "ModelThrottled");
}

#[tokio::test(start_paused = true)]
async fn a_worker_slower_than_the_function_timeout_fails_like_lambda() {
    let f = Fixture::new();
    let rt = f.runtime();
    let out = rt
        .submit(&order("ev-6", Some("slow")), "in.jsonl:1")
        .await
        .unwrap();
    let EventOutcome::Failed { error, cause } = out.outcome else {
        panic!("expected a failure, got {:?}", out.outcome);
    };
    assert_eq!(error, "Sandbox.Timedout");
    let cause: Value = serde_json::from_str(&cause.unwrap()).unwrap();
    assert_eq!(cause["errorType"], "Sandbox.Timedout");
    let message = cause["errorMessage"].as_str().unwrap();
    assert!(message.starts_with("RequestId: "), "{message}");
    assert!(
        message.ends_with("Error: Task timed out after 2.00 seconds"),
        "{message}"
    );
}

#[tokio::test]
async fn resume_after_a_crash_does_not_rerun_a_succeeded_task() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("upsell.db");
    let f = Fixture::new();
    let line = order("ev-7", Some("o-7"));

    // First process: `record` hangs; the process "dies" while it runs (the task is aborted and
    // the store dropped with whatever it had not written yet).
    {
        let history = Arc::new(ExecutionStore::open(&db).unwrap());
        let mut workers = Workers::new(f.bus.clone(), f.calls.clone());
        workers.mode = RecordMode::Hang;
        let entered = workers.entered.clone();
        let rt = Runtime::builder(
            &f.template,
            Arc::new(workers),
            f.tables.clone(),
            history.clone(),
            f.quarantines.clone(),
        )
        .build()
        .unwrap();
        let task = tokio::spawn({
            let line = line.clone();
            async move { rt.submit(&line, "in.jsonl:1").await }
        });
        entered.notified().await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }
    assert_eq!((f.calls("check"), f.calls("record")), (1, 1));

    // Second process: the execution has a checkpoint after Check.
    let history = Arc::new(ExecutionStore::open(&db).unwrap());
    let arn = "arn:aws:states:us-east-1:000000000000:execution:OrdersMachine:ev-7";
    assert_eq!(history.interrupted().unwrap(), vec![arn.to_string()]);
    let rt = Runtime::builder(
        &f.template,
        Arc::new(Workers::new(f.bus.clone(), f.calls.clone())),
        f.tables.clone(),
        history.clone(),
        f.quarantines.clone(),
    )
    .build()
    .unwrap();
    // While it is interrupted, the event counts as started: submitting it again starts nothing.
    let again = rt.submit(&line, "in.jsonl:1").await.unwrap();
    assert_eq!(again.outcome, EventOutcome::Duplicate);
    assert_eq!(f.calls("check"), 1);
    let resumed = rt.resume_interrupted().await.unwrap();
    assert_eq!(resumed.len(), 1);
    let resumed = resumed.into_iter().next().unwrap().unwrap();
    assert_eq!(resumed.arn, arn);
    assert_eq!(resumed.outcome, EventOutcome::Published);
    // `check` succeeded before the crash and was not run again; `record` was interrupted, so
    // it ran again.
    assert_eq!((f.calls("check"), f.calls("record")), (1, 2));
    assert!(history.interrupted().unwrap().is_empty());

    let summary = history.find(arn).unwrap().unwrap();
    assert_eq!(summary.status, "SUCCEEDED");
    let events = history.history(arn).unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == "ExecutionStarted").count(),
        1
    );
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "each id once"
    );

    // The event submitted again is a duplicate.
    let again = rt.submit(&line, "in.jsonl:1").await.unwrap();
    assert_eq!(again.outcome, EventOutcome::Duplicate);
    assert_eq!(f.calls("check"), 1);
}

#[test]
fn a_state_machine_calling_an_unknown_worker_is_refused() {
    struct OnlyCheck;
    #[async_trait::async_trait]
    impl WorkerRegistry for OnlyCheck {
        async fn invoke(&self, _: &str, _: Value) -> Result<Value, WorkerFailure> {
            Ok(Value::Null)
        }
        fn has_worker(&self, worker: &str) -> bool {
            worker == "check"
        }
    }
    let f = Fixture::new();
    let err = Runtime::new(
        &f.template,
        Arc::new(OnlyCheck),
        f.tables.clone(),
        f.history.clone(),
        f.quarantines.clone(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::UnknownWorker { machine, function, worker }
            if machine == "OrdersMachine" && function == "RecordFunction" && worker == "record"),
        "{err}"
    );
}

#[tokio::test]
async fn many_events_in_flight_each_get_one_outcome() {
    let f = Fixture::new();
    let rt = f.runtime();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let rt = rt.clone();
        // Every fourth line repeats an earlier event id.
        let id = if i % 4 == 3 { i - 1 } else { i };
        let line = order(&format!("ev-{id}"), Some(&format!("o-{id}")));
        set.spawn(async move { rt.submit(&line, &format!("in.jsonl:{i}")).await.unwrap() });
    }
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    while let Some(out) = set.join_next().await {
        *counts.entry(out.unwrap().outcome.name()).or_default() += 1;
    }
    assert_eq!(counts.get("published"), Some(&30));
    assert_eq!(counts.get("duplicate"), Some(&10));
    assert_eq!(f.calls("record"), 30);
}

/// The repository's own sam/template.yaml and state machine: the runtime accepts them, routes
/// the example events to the upsell workflow and never routes its announcements back into it.
#[test]
fn the_repository_template_routes_upstream_events_but_not_announcements() {
    struct Workers;
    #[async_trait::async_trait]
    impl WorkerRegistry for Workers {
        async fn invoke(&self, w: &str, _: Value) -> Result<Value, WorkerFailure> {
            Err(WorkerFailure::new(
                "InternalError",
                format!("not called: {w}"),
            ))
        }
        fn has_worker(&self, worker: &str) -> bool {
            matches!(
                worker,
                "schema-check"
                    | "enrich"
                    | "kb-retrieve"
                    | "generate"
                    | "judge"
                    | "publish"
                    | "evaluate"
                    | "drift-monitor"
                    | "rollout"
            )
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let f = Fixture::new();
    let rt = Runtime::new(
        &root.join("sam/template.yaml"),
        Arc::new(Workers),
        f.tables.clone(),
        f.history.clone(),
        f.quarantines.clone(),
    )
    .unwrap();
    assert_eq!(rt.ingest_bus(), "EventBus");
    let targets = |event: &Value| -> Vec<String> {
        rt.bus()
            .matching_rules(rt.ingest_bus(), event)
            .iter()
            .flat_map(|r| r.targets.iter().map(|t| t.arn.clone()))
            .collect()
    };
    let machine = "arn:aws:states:us-east-1:000000000000:stateMachine:UpsellMessageStateMachine";
    let examples = std::fs::read_to_string(root.join("examples/events.jsonl")).unwrap();
    for (i, line) in examples.lines().take(50).enumerate() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if event["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("com.greenleaf."))
        {
            assert_eq!(
                targets(&event),
                vec![machine.to_string()],
                "examples line {}",
                i + 1
            );
        }
    }
    // Every event the system emits (schemas/events/out/), under any source.
    let detail_types: Vec<String> = upsell_core::schema::outbound_event_schemas()
        .into_iter()
        .map(|(_, schema)| {
            schema["properties"]["detail-type"]["const"]
                .as_str()
                .expect("an outbound schema pins its detail-type")
                .to_string()
        })
        .collect();
    assert!(detail_types.len() >= 3, "{detail_types:?}");
    for detail_type in &detail_types {
        for source in ["com.greenleaf.upsell-flow", "com.homeservices.upsell-flow"] {
            let announcement = json!({"id": "a", "source": source, "detail-type": detail_type,
                                      "time": "2025-01-01T00:00:00Z", "detail": {"eventId": "e"}});
            assert!(
                targets(&announcement).is_empty(),
                "{detail_type} from {source}"
            );
        }
    }
}

#[test]
fn target_inputs_follow_eventbridge() {
    use std::collections::BTreeMap;
    use upsell_local::EventPattern;
    use upsell_local::target_input;
    use upsell_local::{RuleSpec, TargetInput};

    let rule = RuleSpec {
        logical_id: "OrdersRule".into(),
        event_bus: "EventBus".into(),
        pattern: EventPattern::parse(&json!({"source": ["com.test.shop"]})).unwrap(),
        pattern_json: json!({"source": ["com.test.shop"]}),
        enabled: true,
        targets: Vec::new(),
    };
    let event = json!({"id": "e1", "source": "com.test.shop",
                       "detail": {"orderId": "o \"1\"", "total": 12.5, "lines": [1, 2]}});
    let transformer = |template: &str| TargetInput::Transformer {
        paths: BTreeMap::from([
            ("order".to_string(), "$.detail.orderId".to_string()),
            ("total".to_string(), "$.detail.total".to_string()),
            ("lines".to_string(), "$.detail.lines".to_string()),
            ("missing".to_string(), "$.detail.nothing".to_string()),
        ]),
        template: template.to_string(),
    };
    let cases = [
        (TargetInput::Event, Ok(event.clone())),
        (TargetInput::Constant(json!({"k": 1})), Ok(json!({"k": 1}))),
        (
            TargetInput::Path("$.detail.lines".into()),
            Ok(json!([1, 2])),
        ),
        (
            transformer(
                r#"{"order": <order>, "total": <total>, "lines": <lines>, "none": <missing>}"#,
            ),
            Ok(json!({"order": "o \"1\"", "total": 12.5, "lines": [1, 2], "none": null})),
        ),
        (
            transformer(r#""order <order> costs <total> (<missing>) on <aws.events.rule-name>""#),
            Ok(json!("order o \"1\" costs 12.5 () on OrdersRule")),
        ),
        (
            transformer(r#"{"event": <aws.events.event.json>, "tag": "<b>"}"#),
            Ok(json!({"event": event.clone(), "tag": "<b>"})),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(target_input(&input, &event, &rule), expected, "{input:?}");
    }
    let broken = target_input(&transformer("{\"order\": <order>"), &event, &rule).unwrap_err();
    assert!(broken.contains("invalid JSON"), "{broken}");
}

#[test]
fn execution_names_are_event_ids_when_step_functions_accepts_them() {
    use upsell_local::{execution_name, is_valid_execution_name};
    for ok in [
        "8e97d202-0aec-4fe9-9aa4-73ef1259baf5",
        "ev_1.2",
        &"a".repeat(80),
    ] {
        assert!(is_valid_execution_name(ok), "{ok}");
        assert_eq!(execution_name(Some(ok), "line"), ok);
    }
    for bad in [
        "",
        "has space",
        "a:b",
        "a/b",
        "x{y}",
        "tab\there",
        &"a".repeat(81),
    ] {
        assert!(!is_valid_execution_name(bad), "{bad}");
        let name = execution_name(Some(bad), "the line");
        assert!(
            name.starts_with("event-") && is_valid_execution_name(&name),
            "{name}"
        );
        assert_eq!(name, execution_name(None, "the line"), "deterministic");
    }
    assert_ne!(execution_name(None, "a"), execution_name(None, "b"));
}
