//! The one AgentRegistry contract (`upsell_core::registry_contract`) on DynamoDB, over HTTP
//! against moto server (`UPSELL_MOTO_ENDPOINT`; skipped, saying so, when unset; failing when
//! `UPSELL_REQUIRE_MOTO=1`). Each case gets its own table.

mod common;

use common::{builder, moto_endpoint, unique};
use upsell_aws::dynamo::registry::from_item;
use upsell_aws::sdk::dynamodb::types::AttributeValue;
use upsell_aws::{DynamoAgentRegistry, TableKind, tables};
use upsell_core::agent::AgentStatus;
use upsell_core::ports::AgentRegistry;
use upsell_core::registry::{Actor, ActorKind, RegisterRequest, Routing};
use upsell_core::registry_contract::spec;

/// A registry on a fresh table, or `None` without moto.
async fn fresh() -> Option<DynamoAgentRegistry> {
    let endpoint = moto_endpoint("registry contract on DynamoDB")?;
    let ctx = builder(&endpoint)
        .agent_registry_table(unique("registry"))
        .build()
        .await;
    let registry = ctx.agent_registry().unwrap();
    tables::create_table(ctx.dynamodb(), registry.table(), TableKind::AgentRegistry)
        .await
        .unwrap();
    Some(registry)
}

mod contract {
    use super::fresh;
    upsell_core::agent_registry_contract!(fresh());
}

/// The routing item on the wire is the one the state machine's LoadRouting state reads
/// (`pk`/`sk` strings, versions as S, weight as N), the same item the local store keeps.
#[tokio::test]
async fn the_routing_item_on_the_wire_is_what_load_routing_reads() {
    let Some(registry) = fresh().await else {
        return;
    };
    let request = RegisterRequest {
        reason: "seed".into(),
        actor: Actor::new(ActorKind::Seed, "stack"),
    };
    registry
        .register(&spec("1.0.0", AgentStatus::Production, 90), &request)
        .await
        .unwrap();
    registry
        .register(&spec("1.1.0", AgentStatus::Canary, 10), &request)
        .await
        .unwrap();
    let endpoint = std::env::var("UPSELL_MOTO_ENDPOINT").unwrap();
    let ctx = builder(&endpoint).build().await;
    let item = ctx
        .dynamodb()
        .get_item()
        .table_name(registry.table())
        .key("pk", AttributeValue::S("AGENT#upsell-generator".into()))
        .key("sk", AttributeValue::S("ROUTING".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("routing item");
    assert_eq!(item["productionVersion"].as_s().unwrap(), "1.0.0");
    assert_eq!(item["canaryVersion"].as_s().unwrap(), "1.1.0");
    assert_eq!(item["canaryWeight"].as_n().unwrap(), "10");
    assert_eq!(
        Routing::from_item(Some(&from_item(&item))).unwrap(),
        registry.routing("upsell-generator").await.unwrap()
    );
}
