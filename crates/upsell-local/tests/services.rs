//! Local service integrations: the DynamoDB steps in tests/data/dynamodb-steps.json, and
//! events:putEvents onto a recording bus.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use upsell_asl::{Resources, TaskContext};
use upsell_local::services::{DynamoDbTasks, EventsTasks, PutEventsTarget};
use upsell_local::template::TableSpec;
use upsell_sqlite::tables::TableStore;

fn ctx() -> TaskContext {
    TaskContext {
        execution_arn: "arn:aws:states:us-east-1:000000000000:execution:M:e".into(),
        state_name: "S".into(),
        retry_count: 0,
        state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:M".into(),
        task_token: None,
    }
}

fn table(id: &str, sk: Option<&str>) -> TableSpec {
    TableSpec {
        logical_id: id.into(),
        partition_key: "pk".into(),
        sort_key: sk.map(str::to_string),
    }
}

#[tokio::test]
async fn dynamodb_integrations_behave_like_step_functions() {
    let store = Arc::new(TableStore::in_memory().unwrap());
    let tables = [
        table("MessagesTable", Some("sk")),
        table("AgentRegistryTable", Some("sk")),
    ];
    let mut resources = Resources::new();
    Arc::new(DynamoDbTasks::new(store, &tables)).register(&mut resources);

    let data: Value = serde_json::from_str(include_str!("data/dynamodb-steps.json")).unwrap();
    let mut failures = Vec::new();
    for step in data["steps"].as_array().unwrap() {
        let name = step["name"].as_str().unwrap();
        let resource = step["resource"].as_str().unwrap();
        let handler = resources
            .find(resource)
            .unwrap_or_else(|| panic!("{name}: no handler for {resource}"));
        let result = handler
            .invoke(resource, step["input"].clone(), &ctx())
            .await;
        match (result, step.get("output"), step.get("error")) {
            (Ok(mut out), Some(expected), None) => {
                let optimized = resource.starts_with("arn:aws:states:::dynamodb:")
                    && !resource.ends_with(":query");
                let meta = out.as_object_mut().unwrap();
                let had_meta = meta.remove("SdkHttpMetadata").is_some()
                    & meta.remove("SdkResponseMetadata").is_some();
                if had_meta != optimized {
                    failures.push(format!(
                        "{name}: SDK metadata present = {had_meta}, expected {optimized}"
                    ));
                }
                if &out != expected {
                    failures.push(format!("{name}: got {out}, expected {expected}"));
                }
            }
            (Err(f), None, Some(error)) => {
                if f.error != error.as_str().unwrap() {
                    failures.push(format!(
                        "{name}: error {} (cause {:?}), expected {error}",
                        f.error, f.cause
                    ));
                }
                if let Some(cause) = step.get("cause").and_then(Value::as_str)
                    && !f.cause.as_deref().unwrap_or("").contains(cause)
                {
                    failures.push(format!("{name}: cause {:?} lacks {cause:?}", f.cause));
                }
            }
            (got, _, _) => failures.push(format!("{name}: unexpected result {got:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "failing steps:\n{}",
        failures.join("\n")
    );
}

#[derive(Default)]
struct RecordingBus {
    events: Mutex<Vec<(String, Value)>>,
}

#[async_trait::async_trait]
impl PutEventsTarget for RecordingBus {
    async fn put(&self, bus: &str, event: Value) -> Result<(), String> {
        self.events.lock().unwrap().push((bus.to_string(), event));
        Ok(())
    }
}

#[tokio::test]
async fn put_events_builds_envelopes_and_reports_entries() {
    let bus = Arc::new(RecordingBus::default());
    let mut resources = Resources::new();
    Arc::new(EventsTasks::new(bus.clone(), "default")).register(&mut resources);
    let resource = "arn:aws:states:::events:putEvents";
    let handler = resources.find(resource).unwrap();

    let input = json!({"Entries": [
        {"Source": "com.homeservices.upsell", "DetailType": "UpsellMessageApproved", "Detail": {"eventId": "e1"}, "EventBusName": "arn:aws:events:us-east-1:000000000000:event-bus/EventBus"},
        {"Source": "com.homeservices.upsell", "DetailType": "Other", "Detail": "{\"n\": 1}", "Time": "2025-05-01T10:00:00Z"}
    ]});
    let out = handler
        .invoke(resource, input, &ctx())
        .await
        .expect("put succeeds");
    assert_eq!(out["FailedEntryCount"], 0);
    let entries = out["Entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let events = bus.events.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].0, "EventBus", "bus ARN reduced to its name");
    assert_eq!(events[1].0, "default");
    assert_eq!(entries[0]["EventId"], events[0].1["id"]);
    assert_eq!(events[0].1["detail-type"], "UpsellMessageApproved");
    assert_eq!(events[0].1["source"], "com.homeservices.upsell");
    assert_eq!(events[0].1["detail"], json!({"eventId": "e1"}));
    assert_eq!(events[0].1["account"], "000000000000");
    assert_eq!(
        events[1].1["detail"],
        json!({"n": 1}),
        "string Detail is parsed"
    );
    assert_eq!(events[1].1["time"], "2025-05-01T10:00:00Z");

    let bad = json!({"Entries": [{"Source": "s", "DetailType": "d", "Detail": "not json"}, {"Source": "s", "DetailType": "d", "Detail": {}}]});
    let f = handler
        .invoke(resource, bad.clone(), &ctx())
        .await
        .expect_err("an entry failed");
    assert_eq!(f.error, "EventBridge.FailedEntry");
    let cause: Value = serde_json::from_str(f.cause.as_deref().unwrap()).unwrap();
    assert_eq!(cause["FailedEntryCount"], 1);
    assert_eq!(cause["Entries"][0]["ErrorCode"], "MalformedDetail");

    let sdk = "arn:aws:states:::aws-sdk:eventbridge:putEvents";
    let out = resources
        .find(sdk)
        .unwrap()
        .invoke(sdk, bad, &ctx())
        .await
        .expect("SDK form reports, does not fail");
    assert_eq!(out["FailedEntryCount"], 1);

    let f = handler
        .invoke(resource, json!({"Entries": []}), &ctx())
        .await
        .expect_err("empty");
    assert_eq!(f.error, "EventBridge.AmazonEventBridgeException");
}
