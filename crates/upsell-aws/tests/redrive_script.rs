//! `scripts/redrive.sh` (the AWS redrive path) over the wire against moto server: the stack's
//! outputs name the messages table and the state machine; failed records are found by scan,
//! filtered by error name, their claims handed over conditionally to `<name>-redrive-<n>`
//! executions started with the failed execution's input. Needs the AWS CLI and jq besides moto;
//! with `UPSELL_REQUIRE_MOTO` set (CI) a missing tool fails the test.

mod common;

use chrono::Utc;
use common::cli::{aws, cli, have, stack_with_outputs};
use common::{builder, moto_endpoint, unique};
use serde_json::{Value, json};
use upsell_aws::sdk::dynamodb::types::AttributeValue;
use upsell_aws::{TableKind, tables};
use upsell_core::message::MessageRecord;
use upsell_core::ports::MessageStore;

fn failed_record(event_id: &str, error: &str) -> MessageRecord {
    serde_json::from_value(json!({
        "eventId": event_id,
        "customerId": format!("cust-{event_id}"),
        "status": "failed",
        "generator": {"agentId": "upsell-generator", "version": "1.0.0"},
        "judge": {"agentId": "upsell-judge", "version": "1.0.0"},
        "attempts": [],
        "totalUsage": {"inputTokens": 0, "outputTokens": 0},
        "error": error,
        "costUsd": 0.0,
        "latencyMs": 10,
        "createdAt": Utc::now().to_rfc3339()
    }))
    .unwrap()
}

#[tokio::test]
async fn redrive_script_hands_claims_over_and_starts_named_executions() {
    let Some(endpoint) =
        moto_endpoint("redrive_script_hands_claims_over_and_starts_named_executions")
    else {
        return;
    };
    if !have("aws", "the redrive script test") || !have("jq", "the redrive script test") {
        return;
    }
    let ctx = builder(&endpoint)
        .messages_table(unique("messages"))
        .build()
        .await;
    let store = ctx.message_store().unwrap();
    let table = store.table().to_owned();
    tables::create_table(ctx.dynamodb(), &table, TableKind::Messages)
        .await
        .unwrap();

    // The per-event state machine and one execution per event, as the workflow left them.
    let machine = aws(
        &endpoint,
        &[
            "stepfunctions",
            "create-state-machine",
            "--name",
            &unique("upsell"),
            "--role-arn",
            "arn:aws:iam::123456789012:role/upsell-states",
            "--definition",
            r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#,
        ],
    )["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut failed = Vec::new();
    for (id, error) in [
        ("evt-throttled", "ModelThrottled: the model is busy"),
        ("evt-invalid", "ModelOutputInvalid: no JSON"),
    ] {
        let input = json!({"id": id, "detail-type": "ServiceCompleted"}).to_string();
        let arn = aws(
            &endpoint,
            &[
                "stepfunctions",
                "start-execution",
                "--state-machine-arn",
                &machine,
                "--name",
                id,
                "--input",
                &input,
            ],
        )["executionArn"]
            .as_str()
            .unwrap()
            .to_owned();
        // ClaimEvent's item, then RecordFailure's record.
        ctx.dynamodb()
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("EVENT#{id}")))
            .item("sk", AttributeValue::S("CLAIM".into()))
            .item("eventId", AttributeValue::S(id.into()))
            .item("executionId", AttributeValue::S(arn.clone()))
            .send()
            .await
            .unwrap();
        store
            .put_if_absent(&failed_record(id, error))
            .await
            .unwrap();
        failed.push((id, arn, input));
    }

    // A stack whose outputs name them, as `sam deploy` leaves it.
    let stack = unique("upsell-flow");
    stack_with_outputs(
        &endpoint,
        &stack,
        &[("MessagesTableName", &table), ("StateMachineArn", &machine)],
    );

    let claim = |id: &'static str| {
        let db = ctx.dynamodb().clone();
        let table = table.clone();
        async move {
            db.get_item()
                .table_name(&table)
                .key("pk", AttributeValue::S(format!("EVENT#{id}")))
                .key("sk", AttributeValue::S("CLAIM".into()))
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };

    // A dry run lists the throttled event and changes nothing.
    let out = cli(
        &endpoint,
        "bash",
        &[
            "scripts/redrive.sh",
            "--stack",
            &stack,
            "--error",
            "ModelThrottled",
            "--dry-run",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("would redrive evt-throttled") && !stdout.contains("evt-invalid"),
        "{stdout}"
    );
    assert_eq!(
        claim("evt-throttled").await["executionId"].as_s().unwrap(),
        &failed[0].1
    );

    // The real run: only the throttled event, under a derived name, with its input.
    let out = cli(
        &endpoint,
        "bash",
        &[
            "scripts/redrive.sh",
            "--stack",
            &stack,
            "--error",
            "ModelThrottled",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_arn = machine.replace(":stateMachine:", ":execution:") + ":evt-throttled-redrive-1";
    assert_eq!(stdout, new_arn, "the script prints the new execution");
    let handed = claim("evt-throttled").await;
    assert_eq!(handed["executionId"].as_s().unwrap(), &new_arn);
    assert_eq!(handed["redriveOf"].as_s().unwrap(), &failed[0].1);
    let described = aws(
        &endpoint,
        &[
            "stepfunctions",
            "describe-execution",
            "--execution-arn",
            &new_arn,
        ],
    );
    let input: Value = serde_json::from_str(described["input"].as_str().unwrap()).unwrap();
    assert_eq!(input, serde_json::from_str::<Value>(&failed[0].2).unwrap());
    // The other failure keeps its claim; its failed record and execution stay.
    assert_eq!(
        claim("evt-invalid").await["executionId"].as_s().unwrap(),
        &failed[1].1
    );
    assert!(store.get("evt-invalid").await.unwrap().is_some());

    // Without a filter both go: the other failure for the first time, and the throttled one
    // again (its record is still `failed`: moto does not run the workflow, as when a redrive
    // fails), from the execution that now holds its claim, under the next free name.
    let out = cli(
        &endpoint,
        "bash",
        &["scripts/redrive.sh", "--stack", &stack],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut started: Vec<&str> = stdout.lines().collect();
    started.sort_unstable();
    let arn = |name: &str| machine.replace(":stateMachine:", ":execution:") + ":" + name;
    assert_eq!(
        started,
        [arn("evt-invalid-redrive-1"), arn("evt-throttled-redrive-2")]
    );
    assert_eq!(
        claim("evt-throttled").await["redriveOf"].as_s().unwrap(),
        &new_arn
    );
}
