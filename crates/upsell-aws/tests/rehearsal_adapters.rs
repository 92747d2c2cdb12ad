//! The AWS adapters against the stack of the offline deploy rehearsal (`.ci/rehearse-deploy.py`
//! created it in moto's CloudFormation from the translated template; `.ci/check-artefacts` runs
//! this test right after it with `UPSELL_REHEARSAL_STACK` set): the registry seeded as the
//! SeedAgents resource seeds it, one event's record written and read back, one approval put on
//! the stack's bus. The tables are the ones CloudFormation created, so their keys and indexes are
//! the template's, not a test's.
//!
//! Without `UPSELL_REHEARSAL_STACK` the test is skipped, saying so; with
//! `UPSELL_REQUIRE_REHEARSAL` set it fails instead.

mod common;

use chrono::Utc;
use common::builder;
use common::cli::{aws, have, next_event, queue_for_rule};
use serde_json::json;
use upsell_core::events::RawEvent;
use upsell_core::message::{MessageRecord, MessageStatus};
use upsell_core::ports::{AgentRegistry, EventPublisher, MessageStore};
use upsell_models::seed::{seed_agents, seed_request};

const TEST: &str = "the adapters on the rehearsal stack";

fn stack() -> Option<(String, String)> {
    let stack = std::env::var("UPSELL_REHEARSAL_STACK")
        .ok()
        .filter(|s| !s.is_empty());
    let endpoint = std::env::var("UPSELL_MOTO_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty());
    match (stack, endpoint) {
        (Some(s), Some(e)) => Some((s, e)),
        _ => {
            assert!(
                std::env::var_os("UPSELL_REQUIRE_REHEARSAL").is_none(),
                "{TEST}: UPSELL_REQUIRE_REHEARSAL is set but UPSELL_REHEARSAL_STACK or UPSELL_MOTO_ENDPOINT is not (run `bash .ci/check-artefacts`)"
            );
            eprintln!(
                "SKIPPED {TEST}: UPSELL_REHEARSAL_STACK is not set (`bash .ci/check-artefacts` runs it after the rehearsal)"
            );
            None
        }
    }
}

#[tokio::test]
async fn adapters_work_on_the_tables_and_bus_the_rehearsal_created() {
    let Some((stack, endpoint)) = stack() else {
        return;
    };
    assert!(
        have("aws", TEST),
        "{TEST} reads the stack's outputs with the AWS CLI"
    );
    let described = aws(
        &endpoint,
        &["cloudformation", "describe-stacks", "--stack-name", &stack],
    );
    let outputs: std::collections::BTreeMap<String, String> = described["Stacks"][0]["Outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["OutputKey"].as_str().unwrap().to_owned(),
                o["OutputValue"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let ctx = builder(&endpoint)
        .messages_table(&outputs["MessagesTableName"])
        .agent_registry_table(&outputs["AgentRegistryTableName"])
        .event_bus_name(&outputs["EventBusName"])
        .build()
        .await;

    // Registry seeded: what the SeedAgents custom resource does on deploy.
    let registry = ctx.agent_registry().unwrap();
    for spec in seed_agents() {
        registry
            .register(&spec, &seed_request(&stack))
            .await
            .unwrap();
        let routing = registry.routing(&spec.agent_id).await.unwrap();
        assert_eq!(
            routing.production_version.as_ref(),
            Some(&spec.version),
            "{}",
            spec.agent_id
        );
    }

    // One event's terminal record, written and read back through the messages table's keys.
    let store = ctx.message_store().unwrap();
    let event_id = format!("rehearsal-{}", uuid::Uuid::new_v4().simple());
    let record: MessageRecord = serde_json::from_value(json!({
        "eventId": event_id,
        "customerId": "cust-000006",
        "status": "approved",
        "message": "Rehearsal message.",
        "generator": {"agentId": "upsell-generator", "version": "1.0.0"},
        "judge": {"agentId": "upsell-judge", "version": "1.0.0"},
        "attempts": [],
        "totalUsage": {"inputTokens": 0, "outputTokens": 0},
        "costUsd": 0.0,
        "latencyMs": 10,
        "createdAt": Utc::now().to_rfc3339()
    }))
    .unwrap();
    store.put_if_absent(&record).await.unwrap();
    let read = store.get(&event_id).await.unwrap().expect("the record");
    assert_eq!(read.status, MessageStatus::Approved);

    // One approval on the stack's bus, seen by a rule of our own that forwards it to a queue.
    let bus = &outputs["EventBusName"];
    let queue = queue_for_rule(
        &endpoint,
        bus,
        &json!({"detail-type": ["UpsellMessageApproved"]}),
    );
    let approval = RawEvent {
        version: None,
        id: event_id.clone(),
        source: "com.greenleaf.upsell-flow".into(),
        detail_type: "UpsellMessageApproved".into(),
        account: None,
        time: Utc::now(),
        region: None,
        resources: vec![],
        detail: json!({"eventId": event_id, "customerId": "cust-000006", "message": "Rehearsal message."}),
    };
    ctx.event_publisher()
        .unwrap()
        .publish(&approval)
        .await
        .unwrap();
    let delivered = next_event(&endpoint, &queue);
    assert_eq!(delivered["detail"]["eventId"], event_id.as_str());
}
