//! The webhook's AWS adapters over HTTP against moto server (`UPSELL_MOTO_ENDPOINT`; skipped,
//! saying so, when unset; failing when `UPSELL_REQUIRE_MOTO=1`): the one IngestReceipts
//! contract (`upsell_core::ingest_contract`) on DynamoDB, each case on its own table; the item
//! on the wire; the HMAC secret in Secrets Manager, before and after a rotation.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{builder, moto_endpoint, unique};
use upsell_aws::dynamo::receipts::{TTL_ATTRIBUTE, receipt_pk};
use upsell_aws::sdk::dynamodb::types::AttributeValue;
use upsell_aws::secrets::SecretValues;
use upsell_aws::{DynamoIngestReceipts, TableKind, tables};
use upsell_core::ingest::{Claim, IngestReceipts, RECEIPT_RETENTION_DAYS};

/// Receipts on a fresh table, or `None` without moto.
async fn fresh() -> Option<DynamoIngestReceipts> {
    let endpoint = moto_endpoint("ingest receipts contract on DynamoDB")?;
    let ctx = builder(&endpoint)
        .webhook_receipts_table(unique("receipts"))
        .build()
        .await;
    let receipts = ctx.webhook_receipts().unwrap();
    tables::create_table(ctx.dynamodb(), receipts.table(), TableKind::WebhookReceipts)
        .await
        .unwrap();
    Some(receipts)
}

mod contract {
    use super::fresh;
    upsell_core::ingest_receipts_contract!(fresh());
}

/// The item keeps readable attributes and the TTL the template's table expires it by.
#[tokio::test]
async fn the_receipt_item_carries_its_ttl() {
    let Some(receipts) = fresh().await else {
        return;
    };
    let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
    let lease = Duration::seconds(60);
    assert_eq!(
        receipts.claim("evt-1", now, lease).await.unwrap(),
        Claim::Claimed
    );
    receipts.complete("evt-1", "bus-abc").await.unwrap();
    let endpoint = std::env::var("UPSELL_MOTO_ENDPOINT").unwrap();
    let ctx = builder(&endpoint).build().await;
    let item = ctx
        .dynamodb()
        .get_item()
        .table_name(receipts.table())
        .key("pk", AttributeValue::S(receipt_pk("evt-1")))
        .key("sk", AttributeValue::S("RECEIPT".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("receipt item");
    assert_eq!(item["state"].as_s().unwrap(), "done");
    assert_eq!(item["busEventId"].as_s().unwrap(), "bus-abc");
    let expires: i64 = item[TTL_ATTRIBUTE].as_n().unwrap().parse().unwrap();
    assert_eq!(
        expires,
        (now + lease + Duration::days(RECEIPT_RETENTION_DAYS)).timestamp()
    );
}

#[tokio::test]
async fn the_webhook_secret_is_read_by_stage() {
    let Some(endpoint) = moto_endpoint("webhook secret in Secrets Manager") else {
        return;
    };
    let name = unique("webhook-secret");
    let ctx = builder(&endpoint).webhook_secret_arn(&name).build().await;
    let secret = ctx.webhook_secret().unwrap();
    // Before the secret exists: a clear error, not an empty key.
    let err = secret.values().await.unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");

    let created = ctx
        .secretsmanager()
        .create_secret()
        .name(&name)
        .secret_string("first-secret-of-32-characters-xx")
        .send()
        .await
        .unwrap();
    // The template hands the function the ARN; both the name and the ARN work.
    let by_arn =
        upsell_aws::SecretsManagerSecret::new(ctx.secretsmanager().clone(), created.arn().unwrap());
    let first = SecretValues {
        current: "first-secret-of-32-characters-xx".into(),
        previous: None,
    };
    assert_eq!(secret.values().await.unwrap(), first);
    assert_eq!(by_arn.values().await.unwrap(), first);

    // A rotation by hand (docs/operations.md): the new value becomes AWSCURRENT and the old
    // one AWSPREVIOUS, which the webhook keeps accepting.
    ctx.secretsmanager()
        .put_secret_value()
        .secret_id(&name)
        .secret_string("second-secret-of-32-characters-x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        secret.values().await.unwrap(),
        SecretValues {
            current: "second-secret-of-32-characters-x".into(),
            previous: Some("first-secret-of-32-characters-xx".into()),
        }
    );
}
