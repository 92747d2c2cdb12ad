//! [`DynamoDriftSource`] over HTTP against moto server (`UPSELL_MOTO_ENDPOINT`; skipped, saying
//! so, when unset): the windows come from the claim items the upsell-message state machine
//! writes (with the validated event) and the message records beside them.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use common::{builder, moto_endpoint, unique};
use serde_json::json;
use upsell_aws::dynamo::drift::{EVENT_ATTR, EVENT_TIME_ATTR, event_attr};
use upsell_aws::sdk::dynamodb::types::AttributeValue;
use upsell_aws::{TableKind, tables};
use upsell_core::drift::{DriftSource, events_from_jsonl};
use upsell_core::message::{MessageRecord, MessageStatus};
use upsell_core::ports::MessageStore;
use upsell_core::sample::{SampleConfig, generate_jsonl};

fn record(event_id: &str, status: MessageStatus) -> MessageRecord {
    serde_json::from_value(json!({
        "eventId": event_id,
        "customerId": "c-1",
        "status": status,
        "message": null,
        "generator": {"agentId": "upsell-generator", "version": "1.0.0"},
        "judge": {"agentId": "upsell-judge", "version": "1.0.0"},
        "attempts": [],
        "totalUsage": {"inputTokens": 1, "outputTokens": 1},
        "costUsd": 0.0,
        "latencyMs": 1,
        "createdAt": "2026-05-01T10:00:00Z"
    }))
    .unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn windows_come_from_claims_and_their_records() {
    let Some(endpoint) = moto_endpoint("windows_come_from_claims_and_their_records") else {
        return;
    };
    let ctx = builder(&endpoint)
        .messages_table(unique("messages"))
        .build()
        .await;
    let store = ctx.message_store().unwrap();
    let table = store.table().to_owned();
    tables::create_table(ctx.dynamodb(), &table, TableKind::Messages)
        .await
        .unwrap();
    let source = ctx.drift_source().unwrap();
    assert_eq!(source.table(), table);

    // A year of sample events (valid ones), claimed as the state machine claims them.
    let events = events_from_jsonl(&generate_jsonl(&SampleConfig {
        customers: 40,
        seed: 7,
        ..SampleConfig::default()
    }))
    .events;
    assert!(events.len() > 150, "{}", events.len());
    let db = ctx.dynamodb();
    for ev in &events {
        let value = serde_json::to_value(ev).unwrap();
        db.put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("EVENT#{}", ev.id())))
            .item("sk", AttributeValue::S("CLAIM".into()))
            .item("eventId", AttributeValue::S(ev.id().into()))
            .item(
                EVENT_TIME_ATTR,
                AttributeValue::S(value["time"].as_str().unwrap().into()),
            )
            .item(EVENT_ATTR, event_attr(&value))
            .send()
            .await
            .unwrap();
    }
    // A claim from before claims kept their event, and a claim whose event is not valid.
    db.put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("EVENT#old".into()))
        .item("sk", AttributeValue::S("CLAIM".into()))
        .send()
        .await
        .unwrap();
    db.put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("EVENT#bad".into()))
        .item("sk", AttributeValue::S("CLAIM".into()))
        .item(
            EVENT_TIME_ATTR,
            AttributeValue::S("2025-03-01T00:00:00Z".into()),
        )
        .item(
            EVENT_ATTR,
            event_attr(&json!({"id": "bad", "time": "2025-03-01T00:00:00Z"})),
        )
        .send()
        .await
        .unwrap();

    // The first half of the year: exactly the events whose time is in it, in time order.
    let (from, to) = (at("2025-01-01T00:00:00Z"), at("2025-07-01T00:00:00Z"));
    let got = source.events_between(from, to).await.unwrap();
    let want: Vec<&str> = {
        let mut w: Vec<_> = events
            .iter()
            .filter(|e| e.time() >= from && e.time() < to)
            .collect();
        w.sort_by(|a, b| a.time().cmp(&b.time()).then_with(|| a.id().cmp(b.id())));
        w.into_iter().map(|e| e.id()).collect()
    };
    assert!(!want.is_empty() && want.len() < events.len());
    assert_eq!(got.iter().map(|e| e.id()).collect::<Vec<_>>(), want);
    assert_eq!(
        got[0],
        **events.iter().find(|e| e.id() == want[0]).as_ref().unwrap()
    );

    // Records: approved and rejected ones of the window's events count (more than one
    // BatchGetItem page), failed ones and other windows' do not.
    let mut expected = BTreeSet::new();
    for (i, id) in want.iter().enumerate() {
        let status = match i % 3 {
            0 => MessageStatus::Approved,
            1 => MessageStatus::Rejected,
            _ => MessageStatus::Failed,
        };
        store.put_if_absent(&record(id, status)).await.unwrap();
        if status != MessageStatus::Failed {
            expected.insert((*id).to_owned());
        }
    }
    let outside = events.iter().find(|e| e.time() >= to).unwrap();
    store
        .put_if_absent(&record(outside.id(), MessageStatus::Approved))
        .await
        .unwrap();
    assert!(expected.len() > 100, "{}", expected.len());
    let window_ids: Vec<String> = got.iter().map(|e| e.id().to_owned()).collect();
    let records = source.records_of(&window_ids).await.unwrap();
    let ids: BTreeSet<String> = records.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(ids.len(), records.len());
    assert_eq!(ids, expected);

    // An empty window.
    let none = source
        .events_between(at("2030-01-01T00:00:00Z"), at("2030-02-01T00:00:00Z"))
        .await
        .unwrap();
    assert!(none.is_empty());
}
