//! The one FeatureStore contract (`upsell_core::features_contract`: event log, versioned
//! point-in-time reads, rebuild) on DynamoDB, over HTTP against moto server
//! (`UPSELL_MOTO_ENDPOINT`; skipped, saying so, when unset; failing when
//! `UPSELL_REQUIRE_MOTO=1`), the event-log items on the wire, and a rebuild on SQLite and on
//! DynamoDB compared. Each case gets its own table.

mod common;

use common::{builder, moto_endpoint, unique};
use upsell_aws::dynamo::features::BY_VERSION_TIME_INDEX;
use upsell_aws::sdk::dynamodb::types::AttributeValue;
use upsell_aws::{AwsContext, DynamoFeatureStore, TableKind, tables};
use upsell_core::features::{FeatureSet, FeatureStore};
use upsell_core::features_contract::{service, survey};
use upsell_core::rebuild::{RebuildRequest, rebuild};
use upsell_sqlite::SqliteFeatureStore;

/// A context and a feature store on a fresh table, or `None` without moto.
async fn fresh_with_context() -> Option<(AwsContext, DynamoFeatureStore)> {
    let endpoint = moto_endpoint("feature store contract on DynamoDB")?;
    let ctx = builder(&endpoint)
        .feature_store_table(unique("features"))
        .build()
        .await;
    let store = ctx.feature_store().unwrap();
    tables::create_table(ctx.dynamodb(), store.table(), TableKind::FeatureStore)
        .await
        .unwrap();
    Some((ctx, store))
}

async fn fresh() -> Option<DynamoFeatureStore> {
    fresh_with_context().await.map(|(_, store)| store)
}

mod contract {
    use super::fresh;
    upsell_core::feature_store_contract!(fresh());
}

/// One `EVT#<time>#<id>` item per event with the event JSON as a string; the log items stay
/// out of the sparse `ByVersionTime` index, which holds one LATEST item per customer.
#[tokio::test]
async fn event_log_items_on_the_wire() {
    let Some((ctx, store)) = fresh_with_context().await else {
        return;
    };
    let e = service("evt-1", "c9", "2025-04-01T12:00:00+02:00", 700);
    store.apply_event(&e).await.unwrap();
    store.apply_event(&e).await.unwrap();
    let db = ctx.dynamodb();
    let items = db
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("CUST#c9".into()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let sks: Vec<&str> = items
        .iter()
        .filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()))
        .map(String::as_str)
        .collect();
    assert_eq!(
        sks,
        [
            "EVT#2025-04-01T10:00:00.000000Z#evt-1",
            "FS#fs-v1#2025-04-01T10:00:00.000000Z",
            "LATEST#fs-v1"
        ]
    );
    let evt = &items[0];
    let json = evt["event"].as_s().unwrap();
    let back: upsell_core::events::CustomerEvent = serde_json::from_str(json).unwrap();
    assert_eq!(back, e);
    assert_eq!(evt["eventId"].as_s().unwrap(), "evt-1");
    for attr in ["featureSetVersion", "lastEventTime", "region", "customerId"] {
        assert!(!evt.contains_key(attr), "an EVT item must not carry {attr}");
    }
    let indexed = db
        .query()
        .table_name(store.table())
        .index_name(BY_VERSION_TIME_INDEX)
        .key_condition_expression("featureSetVersion = :v")
        .expression_attribute_values(":v", AttributeValue::S("fs-v1".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(indexed.count, 1);
}

/// The same live events through the port on SQLite and on DynamoDB: the same rebuild report
/// and the same `fs-v2` snapshots, read at several points in time.
#[tokio::test]
async fn a_rebuild_on_sqlite_and_on_dynamodb_agree() {
    let Some(dynamo) = fresh().await else {
        return;
    };
    let sqlite = SqliteFeatureStore::in_memory().unwrap();
    let mut events = Vec::new();
    for c in 0..6u8 {
        let customer = format!("cust-{c}");
        events.push(service(
            &format!("{customer}-s"),
            &customer,
            "2025-01-05T10:00:00Z",
            1000,
        ));
        for i in 0..c {
            let time = format!("2025-02-{:02}T10:00:00Z", i + 1);
            let score = 1 + (c * 3 + i * 5) % 10;
            events.push(survey(&format!("{customer}-v{i}"), &customer, &time, score));
        }
    }
    let stores: [&dyn FeatureStore; 2] = [&sqlite, &dynamo];
    for store in stores {
        for e in &events {
            store.apply_event(e).await.unwrap();
        }
    }
    let request = RebuildRequest {
        feature_set: FeatureSet::V2,
        serving: FeatureSet::SERVING,
    };
    let local = rebuild(&sqlite, &request).await.unwrap();
    let aws = rebuild(&dynamo, &request).await.unwrap();
    assert_eq!(local, aws);
    assert_eq!(aws.customers_rebuilt, 6);
    assert!(!aws.features.is_empty(), "{aws:?}");
    for c in 0..6 {
        let customer = format!("cust-{c}");
        for at in [
            None,
            Some("2025-02-03T00:00:00Z".parse().unwrap()),
            Some("2025-01-06T00:00:00Z".parse().unwrap()),
        ] {
            assert_eq!(
                sqlite.get_version(&customer, "fs-v2", at).await.unwrap(),
                dynamo.get_version(&customer, "fs-v2", at).await.unwrap(),
                "{customer} at {at:?}"
            );
        }
    }
}
