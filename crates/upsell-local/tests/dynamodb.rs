//! The DynamoDB task integrations on the real definitions: every `dynamodb:*` Task of every
//! state machine in sam/template.yaml runs through the TestState API with its own Parameters
//! (substitutions applied) over the template's tables, and what the emulation does not support
//! fails with `States.Runtime` naming it.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use upsell_asl::{
    Engine, Resources, TaskContext, TestStateRequest, TestStateResponse, TestStatus, run_test_state,
};
use upsell_local::DynamoDbTasks;
use upsell_local::{LoadOptions, SamTemplate};
use upsell_sqlite::{ItemKey, KeyValue, TableStore};

const ENTERED: &str = "2026-12-07T10:00:00.000Z";

struct World {
    template: SamTemplate,
    store: Arc<TableStore>,
    engine: Engine,
    resources: Resources,
}

fn world() -> World {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sam/template.yaml");
    let template = SamTemplate::load(path, &LoadOptions::default()).expect("template loads");
    let store = Arc::new(TableStore::in_memory().unwrap());
    let tasks = Arc::new(DynamoDbTasks::new(store.clone(), &template.tables));
    let mut resources = Resources::new();
    tasks.clone().register(&mut resources);
    let mut engine_resources = Resources::new();
    tasks.register(&mut engine_resources);
    let engine = Engine::builder().resources(engine_resources).build();
    World {
        template,
        store,
        engine,
        resources,
    }
}

/// The substituted definition of a state machine.
fn definition(w: &World, machine: &str) -> Value {
    let sm = w.template.state_machine(machine).expect("state machine");
    serde_json::from_str(&sm.definition).unwrap()
}

/// `(machine, state)` of every Task whose resource is a DynamoDB integration, at any depth.
fn dynamodb_tasks(w: &World) -> Vec<(String, String)> {
    fn walk(states: &Value, machine: &str, out: &mut Vec<(String, String)>) {
        for (name, st) in states.as_object().into_iter().flatten() {
            let resource = st["Resource"].as_str().unwrap_or("");
            if resource.contains(":dynamodb:") {
                out.push((machine.to_string(), name.clone()));
            }
            for nested in ["Iterator", "ItemProcessor"] {
                walk(&st[nested]["States"], machine, out);
            }
            for branch in st["Branches"].as_array().into_iter().flatten() {
                walk(&branch["States"], machine, out);
            }
        }
    }
    let mut out = Vec::new();
    for sm in &w.template.state_machines {
        walk(
            &definition(w, &sm.logical_id)["States"],
            &sm.logical_id,
            &mut out,
        );
    }
    out.sort();
    out
}

async fn test_state(
    w: &World,
    definition: Value,
    state: &str,
    execution: &str,
    input: Value,
) -> TestStateResponse {
    let context = json!({
        "Execution": {"Id": format!("arn:aws:states:us-east-1:000000000000:execution:M:{execution}")},
        "State": {"Name": state, "EnteredTime": ENTERED},
    });
    let request = TestStateRequest {
        definition,
        state_name: Some(state.into()),
        input,
        context: Some(context),
        role_arn: Some("arn:aws:iam::000000000000:role/local".into()),
        ..TestStateRequest::default()
    };
    run_test_state(&w.engine, request)
        .await
        .expect("a valid request")
}

fn key(pk: &str, sk: &str) -> ItemKey {
    ItemKey {
        pk: KeyValue::S(pk.into()),
        sk: Some(KeyValue::S(sk.into())),
    }
}

fn claim_input(event_id: &str) -> Value {
    json!({"checked": {"eventId": event_id, "event": {"id": event_id, "time": "2026-12-01T09:00:00Z"}}})
}

#[tokio::test]
async fn the_tests_below_cover_every_dynamodb_task() {
    let w = world();
    let expected = [
        ("DriftMonitorStateMachine", "RecordReport"),
        ("UpsellMessageStateMachine", "ClaimEvent"),
        ("UpsellMessageStateMachine", "LoadRouting"),
    ]
    .map(|(m, s)| (m.to_string(), s.to_string()));
    assert_eq!(
        dynamodb_tasks(&w),
        expected,
        "a DynamoDB task was added or removed: test it here with its real parameters"
    );
}

#[tokio::test]
async fn claim_event_claims_once_per_event_and_lets_its_own_execution_claim_again() {
    let w = world();
    let def = definition(&w, "UpsellMessageStateMachine");

    let first = test_state(&w, def.clone(), "ClaimEvent", "a", claim_input("evt-1")).await;
    assert_eq!(first.status, TestStatus::Succeeded, "{first:?}");
    assert_eq!(first.next_state.as_deref(), Some("Enrich"));
    let claim = w
        .store
        .get("MessagesTable", &key("EVENT#evt-1", "CLAIM"))
        .unwrap()
        .expect("the claim is stored");
    assert_eq!(
        claim,
        json!({
            "pk": {"S": "EVENT#evt-1"},
            "sk": {"S": "CLAIM"},
            "eventId": {"S": "evt-1"},
            "executionId": {"S": "arn:aws:states:us-east-1:000000000000:execution:M:a"},
            "claimedAt": {"S": ENTERED},
            "eventTime": {"S": "2026-12-01T09:00:00Z"},
            "event": {"S": "{\"id\":\"evt-1\",\"time\":\"2026-12-01T09:00:00Z\"}"},
        })
    );

    let again = test_state(&w, def.clone(), "ClaimEvent", "a", claim_input("evt-1")).await;
    assert_eq!(
        again.status,
        TestStatus::Succeeded,
        "the same execution re-runs its claim after a crash: {again:?}"
    );

    let other = test_state(&w, def.clone(), "ClaimEvent", "b", claim_input("evt-1")).await;
    assert_eq!(other.status, TestStatus::CaughtError, "{other:?}");
    assert_eq!(
        other.error.as_deref(),
        Some("DynamoDB.ConditionalCheckFailedException")
    );
    assert!(
        other
            .cause
            .as_deref()
            .unwrap_or("")
            .starts_with("The conditional request failed (Service: AmazonDynamoDBv2;"),
        "{:?}",
        other.cause
    );
    assert_eq!(other.next_state.as_deref(), Some("Duplicate"));
    let kept = w
        .store
        .get("MessagesTable", &key("EVENT#evt-1", "CLAIM"))
        .unwrap()
        .unwrap();
    assert_eq!(kept, claim, "a failed condition writes nothing");

    let another_event = test_state(&w, def, "ClaimEvent", "b", claim_input("evt-2")).await;
    assert_eq!(another_event.status, TestStatus::Succeeded);
}

#[tokio::test]
async fn load_routing_reads_the_routing_item_or_returns_no_item() {
    let w = world();
    let def = definition(&w, "UpsellMessageStateMachine");

    let absent = test_state(&w, def.clone(), "LoadRouting", "a", json!({"x": 1})).await;
    assert_eq!(absent.status, TestStatus::Succeeded, "{absent:?}");
    let routing = &absent.output.as_ref().unwrap()["routing"];
    assert!(routing.get("Item").is_none(), "{routing}");
    assert_eq!(routing["SdkHttpMetadata"]["HttpStatusCode"], 200);

    let item = json!({
        "pk": {"S": "AGENT#upsell-generator"},
        "sk": {"S": "ROUTING"},
        "production": {"S": "1.0.0"},
        "canary": {"S": "1.1.0"},
        "canaryWeight": {"N": "10"},
    });
    w.store
        .put(
            "AgentRegistryTable",
            &key("AGENT#upsell-generator", "ROUTING"),
            &item,
        )
        .unwrap();
    let present = test_state(&w, def, "LoadRouting", "a", json!({"x": 1})).await;
    assert_eq!(present.status, TestStatus::Succeeded, "{present:?}");
    let output = present.output.unwrap();
    assert_eq!(output["routing"]["Item"], item);
    assert_eq!(output["x"], 1, "ResultPath keeps the input");
    assert_eq!(present.next_state.as_deref(), Some("HasRoutingRecord"));
}

#[tokio::test]
async fn record_report_writes_and_a_rerun_replaces_the_report() {
    let w = world();
    let def = definition(&w, "DriftMonitorStateMachine");
    let input = |drift: bool, look: u32| {
        json!({"check": {"driftDetected": drift, "report": {
            "baseline": {"label": "2026-11"}, "current": {"label": "2026-12-06"}, "look": look,
        }}})
    };
    for (drift, look) in [(false, 1), (true, 2)] {
        let out = test_state(&w, def.clone(), "RecordReport", "d", input(drift, look)).await;
        assert_eq!(out.status, TestStatus::Succeeded, "{out:?}");
        let stored = w
            .store
            .get("DriftReportsTable", &key("BASELINE#2026-11", "2026-12-06"))
            .unwrap()
            .expect("the report is stored");
        assert_eq!(stored["driftDetected"], json!({"BOOL": drift}));
        assert_eq!(stored["look"], json!({"N": look.to_string()}));
        assert_eq!(stored["recordedAt"], json!({"S": ENTERED}));
        let report: Value = serde_json::from_str(stored["report"]["S"].as_str().unwrap()).unwrap();
        assert_eq!(report["look"], look);
    }
}

#[tokio::test]
async fn an_unsupported_condition_fails_the_state_past_its_catch_all() {
    let w = world();
    let mut def = definition(&w, "UpsellMessageStateMachine");
    let params = &mut def["States"]["ClaimEvent"]["Parameters"];
    params["ConditionExpression"] =
        json!("attribute_not_exists(pk) OR begins_with(executionId, :me)");
    let out = test_state(&w, def, "ClaimEvent", "a", claim_input("evt-1")).await;
    assert_eq!(
        out.status,
        TestStatus::Failed,
        "States.ALL does not catch it: {out:?}"
    );
    assert_eq!(out.error.as_deref(), Some("States.Runtime"));
    assert!(
        out.cause
            .as_deref()
            .unwrap_or("")
            .contains("\"begins_with(executionId, :me)\" is not supported"),
        "{:?}",
        out.cause
    );
}

#[tokio::test]
async fn unsupported_actions_parameters_and_expressions_are_named() {
    let w = world();
    let ctx = TaskContext {
        execution_arn: "arn:aws:states:us-east-1:000000000000:execution:M:e".into(),
        state_name: "S".into(),
        retry_count: 0,
        state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:M".into(),
        task_token: None,
    };
    let get = "arn:aws:states:::dynamodb:getItem";
    let put = "arn:aws:states:::dynamodb:putItem";
    let routing_key = json!({"pk": {"S": "AGENT#upsell-generator"}, "sk": {"S": "ROUTING"}});
    let claim = |condition: &str, values: Value| {
        json!({
            "TableName": "MessagesTable",
            "Item": {"pk": {"S": "EVENT#e"}, "sk": {"S": "CLAIM"}, "executionId": {"S": "x"}},
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        })
    };
    let me = json!({":me": {"S": "x"}});
    // (resource, parameters, error, what the cause must contain)
    let cases = [
        (
            "arn:aws:states:::dynamodb:updateItem",
            json!({"TableName": "MessagesTable"}),
            "States.Runtime",
            "arn:aws:states:::dynamodb:updateItem is not supported",
        ),
        (
            "arn:aws:states:::aws-sdk:dynamodb:query",
            json!({"TableName": "MessagesTable"}),
            "States.Runtime",
            "arn:aws:states:::aws-sdk:dynamodb:query is not supported",
        ),
        (
            get,
            json!({"TableName": "AgentRegistryTable", "Key": routing_key, "ProjectionExpression": "production"}),
            "States.Runtime",
            "parameter ProjectionExpression of arn:aws:states:::dynamodb:getItem is not supported",
        ),
        (
            put,
            json!({"TableName": "MessagesTable", "Item": {"pk": {"S": "a"}, "sk": {"S": "b"}}, "ReturnValues": "ALL_OLD"}),
            "States.Runtime",
            "parameter ReturnValues of arn:aws:states:::dynamodb:putItem is not supported",
        ),
        (
            put,
            json!({"TableName": "MessagesTable", "Item": {"pk": {"S": "a"}, "sk": {"S": "b"}}, "ConditionExpression": "attribute_not_exists(#p)", "ExpressionAttributeNames": {"#p": "pk"}}),
            "States.Runtime",
            "parameter ExpressionAttributeNames",
        ),
        (
            put,
            claim("attribute_not_exists(#p)", json!(null)),
            "States.Runtime",
            "\"attribute_not_exists(#p)\" is not supported",
        ),
        (
            put,
            claim("attribute_exists(pk)", json!(null)),
            "States.Runtime",
            "\"attribute_exists(pk)\" is not supported",
        ),
        (
            put,
            claim("attribute_not_exists(pk) AND executionId = :me", me.clone()),
            "States.Runtime",
            "\"attribute_not_exists(pk) AND executionId = :me\" is not supported",
        ),
        (
            put,
            claim("executionId <> :me", me.clone()),
            "States.Runtime",
            "\"executionId <> :me\" is not supported",
        ),
        (
            put,
            claim("attribute_not_exists(event.id)", json!(null)),
            "States.Runtime",
            "\"attribute_not_exists(event.id)\" is not supported",
        ),
        (
            put,
            claim("executionId = :me", json!({":me": {"SS": ["x"]}})),
            "States.Runtime",
            "comparing with :me, a set, list or map, is not supported",
        ),
        // What DynamoDB itself rejects keeps DynamoDB's error name and message.
        (
            get,
            json!({"TableName": "Nope", "Key": routing_key}),
            "DynamoDB.ResourceNotFoundException",
            "Requested resource not found: Table: Nope not found",
        ),
        (
            get,
            json!({"TableName": "AgentRegistryTable", "Key": {"pk": {"S": "AGENT#upsell-generator"}}}),
            "DynamoDB.AmazonDynamoDBException",
            "The provided key element does not match the schema",
        ),
        (
            put,
            json!({"TableName": "MessagesTable", "Item": {"sk": {"S": "CLAIM"}}}),
            "DynamoDB.AmazonDynamoDBException",
            "Missing the key pk in the item",
        ),
        (
            put,
            json!({"TableName": "MessagesTable", "Item": {"pk": {"S": "a"}, "sk": {"S": "b"}, "look": {"N": "three"}}}),
            "DynamoDB.AmazonDynamoDBException",
            "invalid N value \"three\" (attribute look)",
        ),
        (
            put,
            claim("executionId = :other", me.clone()),
            "DynamoDB.AmazonDynamoDBException",
            "attribute value: :other",
        ),
        (
            put,
            claim("attribute_not_exists(pk)", me),
            "DynamoDB.AmazonDynamoDBException",
            "unused in expressions: keys: {:me}",
        ),
    ];
    let mut failures = Vec::new();
    for (resource, params, error, cause) in cases {
        let handler = w.resources.find(resource).expect("a handler");
        match handler.invoke(resource, params.clone(), &ctx).await {
            Err(f) if f.error == error && f.cause.as_deref().unwrap_or("").contains(cause) => {}
            other => failures.push(format!(
                "{resource} {params}: expected {error} with {cause:?}, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let untouched = w.store.get("MessagesTable", &key("EVENT#e", "CLAIM"));
    assert_eq!(untouched.unwrap(), None, "no failed request wrote");
}
