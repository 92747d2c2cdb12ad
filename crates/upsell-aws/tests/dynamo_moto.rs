//! DynamoDB adapters over HTTP against moto server (`UPSELL_MOTO_ENDPOINT`; skipped, saying
//! so, when unset). Each test creates its own tables with unique names.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{builder, moto_endpoint, unique};
use serde_json::json;
use upsell_aws::sdk::dynamodb::types::AttributeValue;
use upsell_aws::{AwsContext, TableKind, tables};
use upsell_core::features::{CustomerFeatures, FeatureStore};
use upsell_core::message::{MessageRecord, MessageStatus, QuarantineRecord};
use upsell_core::ports::{
    ContactStore, CustomerContact, MessageQuery, MessageStore, PortError, PutOutcome,
};
use upsell_core::validate::{Problem, RejectReason};

async fn context(endpoint: &str) -> AwsContext {
    let ctx = builder(endpoint)
        .messages_table(unique("messages"))
        .agent_registry_table(unique("registry"))
        .feature_store_table(unique("features"))
        .build()
        .await;
    let db = ctx.dynamodb();
    tables::create_table(
        db,
        ctx.message_store().unwrap().table(),
        TableKind::Messages,
    )
    .await
    .unwrap();
    tables::create_table(
        db,
        ctx.agent_registry().unwrap().table(),
        TableKind::AgentRegistry,
    )
    .await
    .unwrap();
    tables::create_table(
        db,
        ctx.feature_store().unwrap().table(),
        TableKind::FeatureStore,
    )
    .await
    .unwrap();
    ctx
}

fn record(event_id: &str, customer: &str, status: MessageStatus) -> MessageRecord {
    serde_json::from_value(json!({
        "eventId": event_id,
        "customerId": customer,
        "status": status,
        "message": "Hi Dana, ...",
        "generator": {"agentId": "upsell-generator", "version": "1.0.0"},
        "judge": {"agentId": "upsell-judge", "version": "1.0.0"},
        "attempts": [],
        "totalUsage": {"inputTokens": 100, "outputTokens": 40},
        "costUsd": 0.0012,
        "latencyMs": 900,
        "createdAt": "2026-05-01T10:00:00Z"
    }))
    .unwrap()
}

#[tokio::test]
async fn message_store_writes_once_per_event() {
    let Some(endpoint) = moto_endpoint("message_store_writes_once_per_event") else {
        return;
    };
    let ctx = context(&endpoint).await;
    let store = ctx.message_store().unwrap();

    // The state machine's ClaimEvent item lives beside the record and must not block it.
    ctx.dynamodb()
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S("EVENT#e-1".into()))
        .item("sk", AttributeValue::S("CLAIM".into()))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .unwrap();

    let first = record("e-1", "c-1", MessageStatus::Approved);
    assert_eq!(
        store.put_if_absent(&first).await.unwrap(),
        PutOutcome::Inserted
    );
    let mut again = first.clone();
    again.message = Some("a different text".into());
    assert_eq!(
        store.put_if_absent(&again).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    // The first write wins.
    assert_eq!(store.get("e-1").await.unwrap(), Some(first));
    assert_eq!(store.get("missing").await.unwrap(), None);

    // A failed record is replaced once by a redriven attempt's record; that one stays.
    let failed = record("e-2", "c-1", MessageStatus::Failed);
    assert_eq!(
        store.put_if_absent(&failed).await.unwrap(),
        PutOutcome::Inserted
    );
    let redriven = record("e-2", "c-1", MessageStatus::Approved);
    assert_eq!(
        store.put_if_absent(&redriven).await.unwrap(),
        PutOutcome::Inserted
    );
    assert_eq!(
        store.put_if_absent(&failed).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(store.get("e-2").await.unwrap(), Some(redriven));
}

#[tokio::test]
async fn message_store_lists_by_customer_status_and_pages() {
    let Some(endpoint) = moto_endpoint("message_store_lists_by_customer_status_and_pages") else {
        return;
    };
    let ctx = context(&endpoint).await;
    let store = ctx.message_store().unwrap();
    let rows = [
        ("e-05", "c-1", MessageStatus::Approved),
        ("e-01", "c-2", MessageStatus::Rejected),
        ("e-03", "c-1", MessageStatus::Rejected),
        ("e-02", "c-1", MessageStatus::Failed),
        ("e-04", "c-3", MessageStatus::Approved),
    ];
    for (id, customer, status) in rows {
        store
            .put_if_absent(&record(id, customer, status))
            .await
            .unwrap();
    }
    let ids = |v: Vec<MessageRecord>| v.into_iter().map(|r| r.event_id).collect::<Vec<_>>();

    let all = store.list(&MessageQuery::default()).await.unwrap();
    assert_eq!(ids(all), ["e-01", "e-02", "e-03", "e-04", "e-05"]);

    let c1 = MessageQuery {
        customer_id: Some("c-1".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(store.list(&c1).await.unwrap()),
        ["e-02", "e-03", "e-05"]
    );

    let c1_rejected = MessageQuery {
        customer_id: Some("c-1".into()),
        status: Some(MessageStatus::Rejected),
        ..Default::default()
    };
    assert_eq!(ids(store.list(&c1_rejected).await.unwrap()), ["e-03"]);

    let approved = MessageQuery {
        status: Some(MessageStatus::Approved),
        ..Default::default()
    };
    assert_eq!(ids(store.list(&approved).await.unwrap()), ["e-04", "e-05"]);

    let page1 = MessageQuery {
        limit: 2,
        ..Default::default()
    };
    assert_eq!(ids(store.list(&page1).await.unwrap()), ["e-01", "e-02"]);
    let page2 = MessageQuery {
        limit: 2,
        after_event_id: Some("e-02".into()),
        ..Default::default()
    };
    assert_eq!(ids(store.list(&page2).await.unwrap()), ["e-03", "e-04"]);
}

#[tokio::test]
async fn quarantine_is_idempotent_and_listed_in_order() {
    let Some(endpoint) = moto_endpoint("quarantine_is_idempotent_and_listed_in_order") else {
        return;
    };
    let ctx = context(&endpoint).await;
    let store = ctx.message_store().unwrap();
    let q = |id: &str| QuarantineRecord {
        quarantine_id: id.into(),
        event_id: Some(format!("evt-{id}")),
        raw: "{\"detail-type\": 1}".into(),
        reason: RejectReason::SchemaViolation,
        errors: vec![Problem::new("/detail-type", "must be a string")],
        origin: Some("test".into()),
        quarantined_at: Utc.with_ymd_and_hms(2026, 5, 1, 10, 0, 0).unwrap(),
    };
    assert_eq!(
        store.quarantine(&q("q-2")).await.unwrap(),
        PutOutcome::Inserted
    );
    assert_eq!(
        store.quarantine(&q("q-1")).await.unwrap(),
        PutOutcome::Inserted
    );
    assert_eq!(
        store.quarantine(&q("q-1")).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    let listed = store.list_quarantine(None, 0).await.unwrap();
    assert_eq!(listed, vec![q("q-1"), q("q-2")]);
    let after = store.list_quarantine(Some("q-1"), 10).await.unwrap();
    assert_eq!(after, vec![q("q-2")]);
    // Quarantine records never show up as messages.
    assert!(
        store
            .list(&MessageQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn missing_table_is_not_found() {
    let Some(endpoint) = moto_endpoint("missing_table_is_not_found") else {
        return;
    };
    let ctx = builder(&endpoint)
        .messages_table(unique("never-created"))
        .build()
        .await;
    let err = ctx.message_store().unwrap().get("e-1").await.unwrap_err();
    assert!(matches!(err, PortError::NotFound(_)), "{err:?}");
    assert!(
        err.to_string().contains("ResourceNotFoundException"),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------
// Feature store.

fn features(customer: &str, last_event: DateTime<Utc>, services: u32) -> CustomerFeatures {
    serde_json::from_value(json!({
        "customerId": customer,
        "featureSetVersion": upsell_core::features::FEATURE_SET_VERSION,
        "asOf": last_event,
        "lastEventTime": last_event,
        "eventCount": services,
        "customerSince": "2024-01-15",
        "tenureDays": 100,
        "serviceCount": services,
        "servicesPerYear": 2.0,
        "lifetimeValueCents": 10000 * u64::from(services),
        "lastServiceDate": last_event.date_naive(),
        "daysSinceLastService": 0,
        "servicesBought": ["lawn-care"],
        "servicesNotBought": ["gutter-cleaning"],
        "recentSatisfaction": [5, 4],
        "satisfactionAvg": 4.5,
        "satisfactionTrend": -1.0,
        "lotSizeSqft": 8000,
        "hasPool": false,
        "hasPets": true,
        "pets": [],
        "yearBuilt": 1990,
        "homeAgeYears": 34,
        "homeType": null,
        "region": null,
        "marketingOptIn": true,
        "season": "spring"
    }))
    .expect("a valid CustomerFeatures")
}

#[tokio::test]
async fn feature_store_reads_points_in_time_without_leakage() {
    let Some(endpoint) = moto_endpoint("feature_store_reads_points_in_time_without_leakage") else {
        return;
    };
    let ctx = context(&endpoint).await;
    let store = ctx.feature_store().unwrap();
    let t1 = Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap();
    let t2 = t1 + Duration::days(30);
    let t3 = t2 + Duration::days(30);
    for (t, n) in [(t2, 2), (t1, 1), (t3, 3)] {
        store.put(&features("c-9", t, n)).await.unwrap();
    }
    store.put(&features("c-other", t3, 7)).await.unwrap();

    // The pointer item follows docs/feature-store.md: a map, and the sparse index keys.
    let latest = ctx
        .dynamodb()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S("CUST#c-9".into()))
        .key("sk", AttributeValue::S("LATEST#fs-v1".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("a LATEST item");
    assert_eq!(
        latest["features"].as_m().unwrap()["serviceCount"],
        AttributeValue::N("3".into())
    );
    assert_eq!(latest["featureSetVersion"].as_s().unwrap(), "fs-v1");
    assert_eq!(
        latest["lastEventTime"].as_s().unwrap(),
        "2025-04-30T09:00:00.000000Z"
    );

    let newest = store.get("c-9", None).await.unwrap().unwrap();
    assert_eq!(newest.service_count, 3);
    let mid = store
        .get("c-9", Some(t2 + Duration::days(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mid.service_count, 2);
    // Read at a later time: time-relative features move to the read time.
    assert_eq!(mid.as_of, t2 + Duration::days(1));
    assert_eq!(mid.days_since_last_service, Some(1));
    let exact = store.get("c-9", Some(t1)).await.unwrap().unwrap();
    assert_eq!(exact.service_count, 1);
    assert!(
        store
            .get("c-9", Some(t1 - Duration::seconds(1)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get("nobody", None).await.unwrap().is_none());

    let history: Vec<u32> = store
        .history("c-9", 2)
        .await
        .unwrap()
        .iter()
        .map(|f| f.service_count)
        .collect();
    assert_eq!(history, [3, 2]);

    // Writing the same (customer, version, event time) again replaces the snapshot.
    store.put(&features("c-9", t3, 30)).await.unwrap();
    assert_eq!(store.history("c-9", 10).await.unwrap().len(), 3);
    assert_eq!(
        store.get("c-9", None).await.unwrap().unwrap().service_count,
        30
    );
}

// ------------------------------------------------------------------------------------------
// Contact store (feature-store table, `sk = CONTACT`).

fn contact(customer: &str, name: &str, opt_in: bool, at: DateTime<Utc>) -> CustomerContact {
    CustomerContact {
        customer_id: customer.to_owned(),
        first_name: name.to_owned(),
        marketing_opt_in: opt_in,
        updated_at: at,
    }
}

#[tokio::test]
async fn contact_store_keeps_the_newest_profile_beside_the_features() {
    let Some(endpoint) =
        moto_endpoint("contact_store_keeps_the_newest_profile_beside_the_features")
    else {
        return;
    };
    let ctx = context(&endpoint).await;
    let contacts = ctx.contact_store().unwrap();
    let features_store = ctx.feature_store().unwrap();
    assert_eq!(contacts.table(), features_store.table());
    let t1 = Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap();
    let t2 = t1 + Duration::days(10);
    let t3 = t2 + Duration::days(10);

    assert_eq!(contacts.get("c-7").await.unwrap(), None);
    contacts
        .put(&contact("c-7", "Dana", true, t2))
        .await
        .unwrap();
    assert_eq!(
        contacts.get("c-7").await.unwrap(),
        Some(contact("c-7", "Dana", true, t2))
    );

    // An older profile event (arriving late) changes nothing.
    contacts
        .put(&contact("c-7", "Old", false, t1))
        .await
        .unwrap();
    assert_eq!(
        contacts.get("c-7").await.unwrap(),
        Some(contact("c-7", "Dana", true, t2))
    );
    // The same time replaces it (as in the SQLite adapter); a newer one too.
    contacts
        .put(&contact("c-7", "Dana", false, t2))
        .await
        .unwrap();
    assert!(!contacts.get("c-7").await.unwrap().unwrap().marketing_opt_in);
    contacts
        .put(&contact("c-7", "Danielle", true, t3))
        .await
        .unwrap();
    assert_eq!(
        contacts.get("c-7").await.unwrap(),
        Some(contact("c-7", "Danielle", true, t3))
    );
    // Other customers are untouched.
    assert_eq!(contacts.get("c-8").await.unwrap(), None);

    // The item layout of docs/feature-store.md: the customer's partition, no index attributes.
    let item = ctx
        .dynamodb()
        .get_item()
        .table_name(contacts.table())
        .key("pk", AttributeValue::S("CUST#c-7".into()))
        .key("sk", AttributeValue::S("CONTACT".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("a CONTACT item");
    assert_eq!(item["firstName"].as_s().unwrap(), "Danielle");
    assert_eq!(item["marketingOptIn"], AttributeValue::Bool(true));
    assert_eq!(
        item["updatedAt"].as_s().unwrap(),
        "2025-03-21T09:00:00.000000Z"
    );
    assert!(!item.contains_key("featureSetVersion") && !item.contains_key("region"));

    // Snapshots in the same partition do not see the contact, nor the contact the snapshots.
    features_store.put(&features("c-7", t1, 1)).await.unwrap();
    assert_eq!(features_store.history("c-7", 10).await.unwrap().len(), 1);
    assert_eq!(
        features_store
            .get("c-7", None)
            .await
            .unwrap()
            .unwrap()
            .service_count,
        1
    );
    assert_eq!(
        contacts.get("c-7").await.unwrap().unwrap().first_name,
        "Danielle"
    );

    let err = contacts
        .put(&contact("", "Nobody", true, t1))
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Invalid(_)), "{err:?}");

    // A damaged item is reported with its key, not read as "no contact".
    ctx.dynamodb()
        .put_item()
        .table_name(contacts.table())
        .item("pk", AttributeValue::S("CUST#c-bad".into()))
        .item("sk", AttributeValue::S("CONTACT".into()))
        .item("firstName", AttributeValue::S("Sam".into()))
        .send()
        .await
        .unwrap();
    let err = contacts.get("c-bad").await.unwrap_err();
    assert!(
        matches!(&err, PortError::Other(m) if m.contains("CUST#c-bad") && m.contains("marketingOptIn")),
        "{err:?}"
    );
}

#[tokio::test]
async fn contact_store_needs_the_feature_store_table() {
    let ctx = AwsContext::builder()
        .region("us-east-1")
        .test_credentials()
        .build()
        .await;
    let err = ctx.contact_store().unwrap_err();
    assert_eq!(
        err,
        upsell_aws::ConfigError::MissingEnv("UPSELL_FEATURE_STORE_TABLE")
    );
}

#[tokio::test]
async fn contact_store_missing_table_is_not_found() {
    let Some(endpoint) = moto_endpoint("contact_store_missing_table_is_not_found") else {
        return;
    };
    let ctx = builder(&endpoint)
        .feature_store_table(unique("no-such-table"))
        .build()
        .await;
    let err = ctx.contact_store().unwrap().get("c-1").await.unwrap_err();
    assert!(matches!(err, PortError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn evaluation_store_keeps_cases_per_evaluation() {
    use upsell_core::evaluation::{ArmResult, EvalCase, EvaluationStore};
    let Some(endpoint) = moto_endpoint("evaluation_store_keeps_cases_per_evaluation") else {
        return;
    };
    let ctx = builder(&endpoint)
        .evaluations_table(unique("evaluations"))
        .build()
        .await;
    let store = ctx.evaluation_store().unwrap();
    tables::create_table(ctx.dynamodb(), store.table(), TableKind::Evaluations)
        .await
        .unwrap();
    let case = |eval: &str, event: &str, approved: bool| EvalCase {
        evaluation_id: eval.into(),
        event_id: event.into(),
        customer_id: "cust-1".into(),
        skipped: None,
        candidate: Some(ArmResult {
            agent: "upsell-generator@1.1.0".into(),
            message: "Hi Dana, ...".into(),
            approved,
            score: 8,
            ..ArmResult::default()
        }),
        baseline: Some(ArmResult::default()),
    };
    // More than one page of results (moto pages at 1 MB like DynamoDB; 1,100 small items fit
    // in one, so the order and the partition filter are what this checks).
    for i in (0..30).rev() {
        store
            .put_case(&case("e1", &format!("ev-{i:03}"), i % 2 == 0))
            .await
            .unwrap();
    }
    store.put_case(&case("e2", "ev-000", true)).await.unwrap();
    store.put_case(&case("e1", "ev-000", false)).await.unwrap();
    let got = store.cases("e1").await.unwrap();
    assert_eq!(got.len(), 30);
    assert_eq!(
        got[0],
        case("e1", "ev-000", false),
        "a put replaces the case"
    );
    assert_eq!(got[29].event_id, "ev-029");
    assert_eq!(store.cases("e2").await.unwrap().len(), 1);
    assert!(store.cases("none").await.unwrap().is_empty());
}
