//! `scripts/smoke-test.sh` (the pipeline's check after each deploy) over the wire against moto
//! server: a stack whose outputs name the bus and the two tables; the registry seeded by the
//! seeding the SeedAgents custom resource runs; the event the script puts is taken off the bus
//! (a rule to an SQS queue stands in for the workflow) and its record written with a chosen
//! status. Needs the AWS CLI and jq besides moto; with `UPSELL_REQUIRE_MOTO` set (CI) a
//! missing tool fails the test.

mod common;

use std::process::{Child, Output, Stdio};

use chrono::Utc;
use common::cli::{aws, cli, command, have, next_event, queue_for_rule, stack_with_outputs};
use common::{builder, moto_endpoint, unique};
use serde_json::json;
use upsell_aws::{TableKind, tables};
use upsell_core::message::MessageRecord;
use upsell_core::ports::{AgentRegistry, MessageStore};
use upsell_models::seed::{seed_agents, seed_request};

const TEST: &str = "the smoke script test";

fn record(event_id: &str, status: &str) -> MessageRecord {
    serde_json::from_value(json!({
        "eventId": event_id,
        "customerId": "cust-000006",
        "status": status,
        "generator": {"agentId": "upsell-generator", "version": "1.0.0"},
        "judge": {"agentId": "upsell-judge", "version": "1.0.0"},
        "attempts": [],
        "totalUsage": {"inputTokens": 0, "outputTokens": 0},
        "costUsd": 0.0,
        "latencyMs": 10,
        "createdAt": Utc::now().to_rfc3339()
    }))
    .unwrap()
}

fn smoke(endpoint: &str, stack: &str, timeout: &str) -> Child {
    command(
        endpoint,
        "bash",
        &[
            "scripts/smoke-test.sh",
            "--stack",
            stack,
            "--endpoint-url",
            endpoint,
            "--timeout",
            timeout,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn smoke_script_checks_the_seeds_then_waits_for_its_events_record() {
    let Some(endpoint) = moto_endpoint(TEST) else {
        return;
    };
    if !have("aws", TEST) || !have("jq", TEST) {
        return;
    }
    let ctx = builder(&endpoint)
        .messages_table(unique("messages"))
        .agent_registry_table(unique("registry"))
        .build()
        .await;
    let store = ctx.message_store().unwrap();
    let registry = ctx.agent_registry().unwrap();
    tables::create_table(ctx.dynamodb(), store.table(), TableKind::Messages)
        .await
        .unwrap();
    tables::create_table(ctx.dynamodb(), registry.table(), TableKind::AgentRegistry)
        .await
        .unwrap();

    // The bus, and a rule that hands the script's events to a queue instead of the workflow.
    let bus = unique("bus");
    aws(&endpoint, &["events", "create-event-bus", "--name", &bus]);
    let queue = queue_for_rule(
        &endpoint,
        &bus,
        &json!({"source": ["com.greenleaf.field-service"], "detail-type": ["ServiceCompleted"]}),
    );
    let stack = unique("upsell-flow");
    stack_with_outputs(
        &endpoint,
        &stack,
        &[
            ("EventBusName", &bus),
            ("MessagesTableName", store.table()),
            ("AgentRegistryTableName", registry.table()),
        ],
    );

    // Before seeding: the registry check fails, and no event is put.
    let out = smoke(&endpoint, &stack, "30").wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("has no production version of upsell-generator"),
        "{}",
        text(&out)
    );

    // Seeded as the stack's SeedAgents custom resource seeds it.
    for spec in seed_agents() {
        registry
            .register(&spec, &seed_request(&stack))
            .await
            .unwrap();
    }

    // Its event gets a record with an expected status: the smoke test passes and names it.
    let child = smoke(&endpoint, &stack, "60");
    let event = next_event(&endpoint, &queue);
    assert_eq!(event["detail-type"], "ServiceCompleted");
    assert_eq!(event["detail"]["customerId"], "cust-000006");
    let id = event["id"].as_str().unwrap().to_owned();
    store.put_if_absent(&record(&id, "skipped")).await.unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("event {id} ended skipped")),
        "{}",
        text(&out)
    );

    // A failed record fails it.
    let child = smoke(&endpoint, &stack, "60");
    let id = next_event(&endpoint, &queue)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    store.put_if_absent(&record(&id, "failed")).await.unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ended failed"), "{}", text(&out));

    // No record within the timeout fails it.
    let out = smoke(&endpoint, &stack, "0").wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no record for event"), "{}", text(&out));

    // An unknown stack is a clear error.
    let out = cli(
        &endpoint,
        "bash",
        &["scripts/smoke-test.sh", "--stack", "no-such-stack"],
    );
    assert!(!out.status.success());
}
