//! EventBridge publisher over HTTP against moto server (`UPSELL_MOTO_ENDPOINT`; skipped, saying
//! so, when unset).

mod common;

use chrono::{TimeZone, Utc};
use common::{builder, moto_endpoint, unique};
use serde_json::json;
use upsell_core::events::RawEvent;
use upsell_core::ports::{EventPublisher, PortError};

fn approved_event() -> RawEvent {
    RawEvent {
        version: None,
        id: "evt-123".into(),
        source: "com.homeservices.upsell".into(),
        detail_type: "UpsellMessageApproved".into(),
        account: None,
        time: Utc.with_ymd_and_hms(2026, 5, 1, 10, 0, 0).unwrap(),
        region: None,
        resources: vec![],
        detail: json!({"eventId": "evt-123", "customerId": "c-1", "message": "Hi Dana"}),
    }
}

#[tokio::test]
async fn publishes_to_the_bus_and_returns_the_assigned_id() {
    let Some(endpoint) = moto_endpoint("publishes_to_the_bus_and_returns_the_assigned_id") else {
        return;
    };
    let bus = unique("upsell-bus");
    let ctx = builder(&endpoint).event_bus_name(&bus).build().await;
    ctx.eventbridge()
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .unwrap();
    let id = ctx
        .event_publisher()
        .unwrap()
        .publish(&approved_event())
        .await
        .unwrap();
    assert!(!id.is_empty());
    assert_ne!(id, "evt-123", "EventBridge assigns its own ids");
}

#[tokio::test]
async fn refuses_what_eventbridge_would_refuse_before_calling() {
    let Some(endpoint) = moto_endpoint("refuses_what_eventbridge_would_refuse_before_calling")
    else {
        return;
    };
    let ctx = builder(&endpoint).event_bus_name("unused").build().await;
    let publisher = ctx.event_publisher().unwrap();
    let mut not_object = approved_event();
    not_object.detail = json!([1, 2, 3]);
    assert!(matches!(
        publisher.publish(&not_object).await,
        Err(PortError::Invalid(_))
    ));
    let mut huge = approved_event();
    huge.detail = json!({"message": "x".repeat(300 * 1024)});
    let err = publisher.publish(&huge).await.unwrap_err();
    assert!(matches!(err, PortError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("at most"), "{err}");
}

#[tokio::test]
async fn publisher_needs_its_bus_name() {
    let ctx = upsell_aws::AwsContext::builder()
        .region("us-east-1")
        .test_credentials()
        .build()
        .await;
    let err = ctx.event_publisher().unwrap_err();
    assert!(err.to_string().contains("UPSELL_EVENT_BUS_NAME"), "{err}");
}
