//! The rollout worker's steps on the SQLite adapters: a candidate moved by a person mid-rollout
//! ends the rollout with `Conflict` (the ASL's `RolloutAborted`), and a manual rollback without
//! a canary names what is missing.

use std::sync::{Arc, Mutex};

use rollout::{Deps, Input, Output, handle};
use serde_json::json;
use upsell_core::agent::{AgentStatus, parse_version};
use upsell_core::events::RawEvent;
use upsell_core::ports::{AgentRegistry, EventPublisher, PortError};
use upsell_core::registry::{Actor, ActorKind, RegisterRequest, TransitionRequest};
use upsell_core::worker::{ErrorName, StableError};
use upsell_models::seed::seed_agents;
use upsell_sqlite::SqliteAgentRegistry;
use upsell_sqlite::SqliteVersionCounters;

#[derive(Default)]
struct Bus(Mutex<Vec<RawEvent>>);

#[async_trait::async_trait]
impl EventPublisher for Bus {
    async fn publish(&self, event: &RawEvent) -> Result<String, PortError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(event.id.clone())
    }
}

async fn deps() -> (Deps, Arc<Bus>) {
    let registry = Arc::new(SqliteAgentRegistry::in_memory().unwrap());
    let person = Actor::new(ActorKind::User, "test");
    for spec in seed_agents() {
        let request = RegisterRequest {
            reason: "seed".into(),
            actor: person.clone(),
        };
        registry.register(&spec, &request).await.unwrap();
    }
    let bus = Arc::new(Bus::default());
    (
        Deps {
            registry,
            counters: Arc::new(SqliteVersionCounters::in_memory().unwrap()),
            events: bus.clone(),
        },
        bus,
    )
}

#[tokio::test]
async fn a_candidate_moved_by_a_person_aborts_the_rollout_with_conflict() {
    let (deps, bus) = deps().await;
    let mut spec = seed_agents()
        .into_iter()
        .find(|s| s.agent_id == "upsell-generator")
        .unwrap();
    spec.version = parse_version("1.1.0").unwrap();
    spec.status = AgentStatus::Draft;
    spec.traffic_weight = 0;
    let arn = "arn:aws:states:us-east-1:000000000000:execution:AgentRolloutStateMachine:r1";
    let input = |v: serde_json::Value| serde_json::from_value::<Input>(v).unwrap();
    let Output::Plan(plan) = handle(
        input(json!({"action": "plan", "executionArn": arn, "request": {
            "agentId": "upsell-generator", "candidate": "1.1.0",
            "spec": serde_json::to_value(&spec).unwrap(),
            "dataset": {"bucket": "b", "key": "k"}}})),
        &deps,
    )
    .await
    .unwrap() else {
        panic!("plan answers a plan")
    };
    let plan = serde_json::to_value(&plan).unwrap();
    let Output::Started(started) = handle(
        input(json!({"action": "start-canary", "executionArn": arn, "plan": plan})),
        &deps,
    )
    .await
    .unwrap() else {
        panic!("start-canary answers Started")
    };
    assert_eq!(started.weight, 10);
    // A person takes the canary out meanwhile.
    deps.registry
        .transition(
            "upsell-generator",
            &spec.version,
            &TransitionRequest {
                to: AgentStatus::RolledBack,
                weight: 0,
                reason: "by hand".into(),
                actor: Actor::new(ActorKind::User, "test"),
            },
        )
        .await
        .unwrap();
    let err = handle(
        input(json!({"action": "check", "executionArn": arn, "plan": plan,
                     "baseline": serde_json::to_value(&started.baseline).unwrap(),
                     "cursor": {"step": 0, "look": 1}})),
        &deps,
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_name(), ErrorName::Conflict, "{err}");
    assert!(err.to_string().contains("no longer canary"), "{err}");
    // Nothing announced: the person's rollback was not the rollout's.
    assert!(bus.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_manual_rollback_without_a_canary_names_it() {
    let (deps, bus) = deps().await;
    let err = handle(
        serde_json::from_value(json!({"action": "rollback", "executionArn": "x",
                                      "agentId": "upsell-generator", "reasons": ["why"]}))
        .unwrap(),
        &deps,
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_name(), ErrorName::NotFound, "{err}");
    assert!(err.to_string().contains("has no canary"), "{err}");
    assert!(bus.0.lock().unwrap().is_empty());
}
