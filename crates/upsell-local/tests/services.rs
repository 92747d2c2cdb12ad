//! Local service integrations: events:putEvents onto a recording bus (the DynamoDB ones are in
//! tests/dynamodb.rs).

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use upsell_asl::{Resources, TaskContext};
use upsell_local::{EventsTasks, PutEventsTarget};

fn ctx() -> TaskContext {
    TaskContext {
        execution_arn: "arn:aws:states:us-east-1:000000000000:execution:M:e".into(),
        state_name: "S".into(),
        retry_count: 0,
        state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:M".into(),
        task_token: None,
    }
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
