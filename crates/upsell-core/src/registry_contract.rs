//! The contract of [`AgentRegistry`], written once and run against every adapter (SQLite in
//! `crates/upsell-sqlite`, DynamoDB on moto in `crates/upsell-aws`) with
//! [`agent_registry_contract!`](crate::agent_registry_contract). Behind the `contract` feature;
//! adapters enable it for their tests only.
//!
//! Each case takes a fresh, empty registry and panics on the first broken promise.

use semver::Version;
use serde_json::json;

use crate::agent::{AgentSpec, AgentStatus, PerformanceMetrics};
use crate::ports::{AgentRegistry, PortError};
use crate::registry::{Actor, ActorKind, RegisterRequest, Routing, TransitionRequest};

/// Makes one `#[tokio::test]` per contract case. `$make` is an async expression yielding
/// `Option<impl AgentRegistry>`: a fresh, empty registry (`None`: the
/// backend is unavailable and the test says it is skipped; a backend the CI requires must panic
/// instead).
#[macro_export]
macro_rules! agent_registry_contract {
    ($make:expr) => {
        $crate::agent_registry_contract!(@cases $make;
            versions_are_immutable_and_listed_in_semver_order,
            transitions_follow_the_rules_and_move_the_routing_item,
            every_change_is_recorded_once_with_who_and_why,
            templates_round_trip_by_content,
            performance_changes_neither_status_nor_routing,
            final_statuses_are_final);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(registry) = $make.await else { return };
                $crate::registry_contract::$case(&registry).await;
            }
        )*
    };
}

const AGENT: &str = "upsell-generator";

/// A valid generator spec.
pub fn spec(version: &str, status: AgentStatus, weight: u8) -> AgentSpec {
    serde_json::from_value(json!({
        "agentId": AGENT,
        "version": version,
        "role": "generator",
        "description": format!("version {version}"),
        "prompt": {"system": "You write upsells.", "user": "{{ facts }}"},
        "modelId": "amazon.nova-pro-v1:0",
        "config": {"temperature": 0.4, "topP": 0.9, "maxTokens": 300},
        "maxAttempts": 3,
        "status": status,
        "trafficWeight": weight,
        "createdAt": "2025-01-01T00:00:00Z",
    }))
    .expect("valid spec")
}

fn v(s: &str) -> Version {
    Version::parse(s).expect("version")
}

fn by(reason: &str) -> RegisterRequest {
    RegisterRequest {
        reason: reason.into(),
        actor: Actor::new(ActorKind::User, "dana"),
    }
}

fn to(status: AgentStatus, weight: u8, reason: &str) -> TransitionRequest {
    TransitionRequest {
        to: status,
        weight,
        reason: reason.into(),
        actor: Actor::new(
            ActorKind::Execution,
            "arn:aws:states:us-east-1:123456789012:execution:rollout:r-1",
        ),
    }
}

async fn move_to(r: &dyn AgentRegistry, version: &str, status: AgentStatus, weight: u8) {
    r.transition(AGENT, &v(version), &to(status, weight, "contract"))
        .await
        .unwrap_or_else(|e| panic!("{version} -> {status:?} {weight}: {e}"));
}

fn refs(specs: &[AgentSpec]) -> Vec<String> {
    specs.iter().map(|s| s.agent_ref().to_string()).collect()
}

/// Register, get, list: semver order, immutability, validation.
pub async fn versions_are_immutable_and_listed_in_semver_order(r: &dyn AgentRegistry) {
    assert!(r.list_versions(AGENT).await.unwrap().is_empty());
    assert_eq!(r.routing(AGENT).await.unwrap(), Routing::default());
    for ver in ["1.10.0", "1.9.0", "1.0.0"] {
        r.register(&spec(ver, AgentStatus::Draft, 0), &by("new"))
            .await
            .unwrap();
    }
    let mut changed = spec("1.9.0", AgentStatus::Draft, 0);
    changed.prompt.system = "Something else.".into();
    let err = r.register(&changed, &by("again")).await.unwrap_err();
    assert!(matches!(err, PortError::Conflict(_)), "{err}");
    assert_eq!(
        r.get(AGENT, &v("1.9.0")).await.unwrap().prompt.system,
        "You write upsells."
    );
    // Invalid specs and requests are refused with what is wrong, and nothing is written.
    let err = r
        .register(&spec("3.0.0", AgentStatus::Draft, 20), &by("bad"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PortError::Invalid(m) if m.contains("/trafficWeight")),
        "{err}"
    );
    let err = r
        .register(&spec("3.0.0", AgentStatus::Draft, 0), &by(" "))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PortError::Invalid(m) if m.contains("reason")),
        "{err}"
    );
    assert!(matches!(
        r.get(AGENT, &v("3.0.0")).await,
        Err(PortError::NotFound(_))
    ));

    let mut judge = spec("1.0.0", AgentStatus::Production, 100);
    judge.agent_id = "upsell-judge".into();
    judge.role = crate::agent::AgentRole::Judge;
    judge.approval_threshold = Some(7);
    r.register(&judge, &by("seed")).await.unwrap();

    assert_eq!(
        refs(&r.list_versions(AGENT).await.unwrap()),
        [
            "upsell-generator@1.0.0",
            "upsell-generator@1.9.0",
            "upsell-generator@1.10.0"
        ]
    );
    assert_eq!(
        refs(&r.list_all().await.unwrap()),
        [
            "upsell-generator@1.0.0",
            "upsell-generator@1.9.0",
            "upsell-generator@1.10.0",
            "upsell-judge@1.0.0"
        ]
    );
    assert_eq!(
        r.get("upsell-judge", &v("1.0.0")).await.unwrap(),
        judge,
        "a version reads back exactly as registered"
    );
    assert!(matches!(
        r.get(AGENT, &v("9.0.0")).await,
        Err(PortError::NotFound(_))
    ));
    // Each agent has its own routing item.
    assert_eq!(
        r.routing("upsell-judge").await.unwrap().production_version,
        Some(v("1.0.0"))
    );
    assert_eq!(r.routing(AGENT).await.unwrap(), Routing::default());
}

/// The rollout path: draft -> evaluating -> canary 10 -> 50 -> production, the old version
/// retired; the routing item follows every step; refused moves change nothing.
pub async fn transitions_follow_the_rules_and_move_the_routing_item(r: &dyn AgentRegistry) {
    r.register(&spec("1.0.0", AgentStatus::Production, 100), &by("seed"))
        .await
        .unwrap();
    r.register(&spec("2.0.0", AgentStatus::Draft, 0), &by("new"))
        .await
        .unwrap();
    let routing = r.routing(AGENT).await.unwrap();
    assert_eq!(routing.production_version, Some(v("1.0.0")));
    assert_eq!(routing.canary_version, None);

    let err = r
        .transition(AGENT, &v("2.0.0"), &to(AgentStatus::Canary, 10, "skip"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PortError::Invalid(m) if m.contains("cannot go from draft to canary")),
        "{err}"
    );
    move_to(r, "2.0.0", AgentStatus::Evaluating, 0).await;
    let err = r
        .transition(AGENT, &v("2.0.0"), &to(AgentStatus::Canary, 0, "w"))
        .await
        .map(|s| s.traffic_weight);
    assert!(err.is_ok(), "a canary at 0% is allowed: {err:?}");
    move_to(r, "2.0.0", AgentStatus::Canary, 10).await;
    assert_eq!(
        r.routing(AGENT).await.unwrap(),
        Routing {
            production_version: Some(v("1.0.0")),
            canary_version: Some(v("2.0.0")),
            canary_weight: 10,
        }
    );
    let updated = r
        .transition(AGENT, &v("2.0.0"), &to(AgentStatus::Canary, 50, "healthy"))
        .await
        .unwrap();
    assert_eq!(
        (updated.status, updated.traffic_weight),
        (AgentStatus::Canary, 50)
    );
    assert_eq!(r.routing(AGENT).await.unwrap().canary_weight, 50);

    move_to(r, "2.0.0", AgentStatus::Production, 100).await;
    move_to(r, "1.0.0", AgentStatus::Retired, 0).await;
    assert_eq!(
        r.routing(AGENT).await.unwrap(),
        Routing {
            production_version: Some(v("2.0.0")),
            canary_version: None,
            canary_weight: 0,
        }
    );

    // Refused: a final status, a weight on a non-serving status, an unknown version.
    let before = (
        r.list_versions(AGENT).await.unwrap(),
        r.routing(AGENT).await.unwrap(),
    );
    let history = r.history(AGENT).await.unwrap().len();
    for (ver, req) in [
        ("1.0.0", to(AgentStatus::Canary, 10, "back")),
        ("2.0.0", to(AgentStatus::Retired, 20, "weight")),
    ] {
        let err = r.transition(AGENT, &v(ver), &req).await.unwrap_err();
        assert!(matches!(err, PortError::Invalid(_)), "{err}");
    }
    let err = r
        .transition(AGENT, &v("7.0.0"), &to(AgentStatus::Retired, 0, "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::NotFound(_)), "{err}");
    assert_eq!(
        (
            r.list_versions(AGENT).await.unwrap(),
            r.routing(AGENT).await.unwrap()
        ),
        before
    );
    assert_eq!(r.history(AGENT).await.unwrap().len(), history);
}

/// Every register and transition is one history record: sequence, from, to, weights, why,
/// who. A repeated request records nothing.
pub async fn every_change_is_recorded_once_with_who_and_why(r: &dyn AgentRegistry) {
    assert!(r.history(AGENT).await.unwrap().is_empty());
    r.register(
        &spec("1.0.0", AgentStatus::Draft, 0),
        &by("from agents/x/1.0.0"),
    )
    .await
    .unwrap();
    let req = to(AgentStatus::Evaluating, 0, "evaluation eval-42 started");
    r.transition(AGENT, &v("1.0.0"), &req).await.unwrap();
    // The same request again (a retried step): nothing changes, nothing is recorded.
    r.transition(AGENT, &v("1.0.0"), &req).await.unwrap();
    move_to(r, "1.0.0", AgentStatus::Canary, 10).await;
    r.transition(
        AGENT,
        &v("1.0.0"),
        &to(
            AgentStatus::RolledBack,
            0,
            "approval rate fell below production's",
        ),
    )
    .await
    .unwrap();
    let mut other = spec("1.0.0", AgentStatus::Draft, 0);
    other.agent_id = "other-agent".into();
    r.register(&other, &by("unrelated")).await.unwrap();

    let h = r.history(AGENT).await.unwrap();
    let steps: Vec<_> = h
        .iter()
        .map(|t| (t.sequence, t.from, t.to, t.from_weight, t.to_weight))
        .collect();
    use AgentStatus::*;
    assert_eq!(
        steps,
        [
            (1, None, Draft, 0, 0),
            (2, Some(Draft), Evaluating, 0, 0),
            (3, Some(Evaluating), Canary, 0, 10),
            (4, Some(Canary), RolledBack, 10, 0),
        ]
    );
    assert!(
        h.iter()
            .all(|t| t.agent_id == AGENT && t.version == v("1.0.0"))
    );
    assert_eq!(h[0].reason, "from agents/x/1.0.0");
    assert_eq!(h[0].actor, Actor::new(ActorKind::User, "dana"));
    assert_eq!(h[1].reason, "evaluation eval-42 started");
    assert_eq!(h[3].reason, "approval rate fell below production's");
    assert_eq!(h[3].actor.kind, ActorKind::Execution);
    assert!(h[3].actor.id.starts_with("arn:aws:states:"));
    assert!(h.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(r.history("other-agent").await.unwrap().len(), 1);
    assert!(r.history("nobody").await.unwrap().is_empty());
    // Rolled back is kept apart from retired.
    assert_eq!(
        r.get(AGENT, &v("1.0.0")).await.unwrap().status,
        AgentStatus::RolledBack
    );
}

/// Templates come back byte for byte, shared or not between versions.
pub async fn templates_round_trip_by_content(r: &dyn AgentRegistry) {
    let mut a = spec("1.0.0", AgentStatus::Draft, 0);
    a.prompt.system = "Écrivez — brièvement.\n\n  {{ x }}\t\u{1F600}\n".into();
    a.prompt.user = a.prompt.system.clone();
    let mut b = spec("1.1.0", AgentStatus::Draft, 0);
    b.prompt.system = a.prompt.system.clone();
    b.prompt.user = "{% for e in examples %}{{ e }}\n{% endfor %}".repeat(200);
    for s in [&a, &b] {
        r.register(s, &by("templates")).await.unwrap();
    }
    assert_eq!(r.get(AGENT, &v("1.0.0")).await.unwrap(), a);
    assert_eq!(r.get(AGENT, &v("1.1.0")).await.unwrap(), b);
    assert_eq!(r.list_versions(AGENT).await.unwrap(), [a, b]);
}

/// Performance figures are replaced in place and move nothing else.
pub async fn performance_changes_neither_status_nor_routing(r: &dyn AgentRegistry) {
    r.register(&spec("1.0.0", AgentStatus::Production, 90), &by("seed"))
        .await
        .unwrap();
    r.register(&spec("1.1.0", AgentStatus::Canary, 10), &by("seed"))
        .await
        .unwrap();
    let perf: PerformanceMetrics = serde_json::from_value(json!({
        "approvalRate": 0.8, "avgScore": 7.5, "sampleSize": 200
    }))
    .unwrap();
    r.set_performance(AGENT, &v("1.1.0"), &perf).await.unwrap();
    let got = r.get(AGENT, &v("1.1.0")).await.unwrap();
    assert_eq!(got.performance, Some(perf.clone()));
    assert_eq!((got.status, got.traffic_weight), (AgentStatus::Canary, 10));
    assert_eq!(
        r.routing(AGENT).await.unwrap(),
        Routing {
            production_version: Some(v("1.0.0")),
            canary_version: Some(v("1.1.0")),
            canary_weight: 10,
        }
    );
    assert_eq!(r.history(AGENT).await.unwrap().len(), 2);
    // A later transition keeps the figures.
    move_to(r, "1.1.0", AgentStatus::Canary, 50).await;
    assert_eq!(
        r.get(AGENT, &v("1.1.0")).await.unwrap().performance,
        Some(perf.clone())
    );
    assert!(matches!(
        r.set_performance(AGENT, &v("3.0.0"), &perf).await,
        Err(PortError::NotFound(_))
    ));
}

/// Retired and rolled-back versions never move again; a canary may also be rolled back from
/// production.
pub async fn final_statuses_are_final(r: &dyn AgentRegistry) {
    r.register(&spec("1.0.0", AgentStatus::Production, 100), &by("seed"))
        .await
        .unwrap();
    r.register(&spec("2.0.0", AgentStatus::Evaluating, 0), &by("new"))
        .await
        .unwrap();
    move_to(r, "2.0.0", AgentStatus::Production, 100).await;
    // Both at 100%: the higher version serves.
    assert_eq!(
        r.routing(AGENT).await.unwrap().production_version,
        Some(v("2.0.0"))
    );
    move_to(r, "2.0.0", AgentStatus::RolledBack, 0).await;
    assert_eq!(
        r.routing(AGENT).await.unwrap().production_version,
        Some(v("1.0.0"))
    );
    move_to(r, "1.0.0", AgentStatus::Retired, 0).await;
    assert_eq!(r.routing(AGENT).await.unwrap(), Routing::default());
    for ver in ["1.0.0", "2.0.0"] {
        for status in AgentStatus::ALL {
            let current = r.get(AGENT, &v(ver)).await.unwrap().status;
            if status == current {
                continue;
            }
            let err = r
                .transition(AGENT, &v(ver), &to(status, 0, "revive"))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, PortError::Invalid(m) if m.contains("final")),
                "{ver} -> {status:?}: {err}"
            );
        }
    }
}
