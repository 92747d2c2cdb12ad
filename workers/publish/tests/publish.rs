//! Tests of the publish worker: one terminal record per event, one announcement per approval.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use publish::{
    ChosenGenerator, Deps, Failed, Finished, Input, LastGeneration, LastVerdict, Quarantined,
    Skipped, StepError, handle,
};
use serde_json::json;
use upsell_core::agent::AgentRef;
use upsell_core::counters::{VersionCounters, nano_usd};
use upsell_core::events::RawEvent;
use upsell_core::message::{AttemptRecord, JudgeVerdict, MessageStatus, TokenUsage};
use upsell_core::ports::{EventPublisher, MessageStore, PortError};
use upsell_models::pricing::cost_usd;
use upsell_models::testing::facts;
use upsell_sqlite::SqliteMessageStore;
use upsell_sqlite::SqliteVersionCounters;

#[derive(Default)]
struct Bus {
    events: Mutex<Vec<RawEvent>>,
    fail_next: Mutex<bool>,
}

#[async_trait]
impl EventPublisher for Bus {
    async fn publish(&self, event: &RawEvent) -> Result<String, PortError> {
        let mut fail = self.fail_next.lock().unwrap();
        if *fail {
            *fail = false;
            return Err(PortError::Transient("bus unavailable".into()));
        }
        self.events.lock().unwrap().push(event.clone());
        Ok(event.id.clone())
    }
}

fn agent(id: &str) -> AgentRef {
    AgentRef {
        agent_id: id.into(),
        version: semver::Version::new(1, 0, 0),
    }
}

fn finished(approved: bool) -> Finished {
    Finished {
        event_id: "evt-1".into(),
        customer_id: "c1".into(),
        generator: agent("upsell-generator"),
        judge: agent("upsell-judge"),
        facts: facts("gutter_cleaning", 0),
        history: vec![AttemptRecord {
            attempt: 1,
            message: "Hi Dana, ... Reply STOP to opt out.".into(),
            verdict: JudgeVerdict {
                score: if approved { 9 } else { 3 },
                approved,
                reasons: vec![],
                feedback: String::new(),
            },
            generator_usage: TokenUsage {
                input_tokens: 1000,
                output_tokens: 100,
            },
            judge_usage: TokenUsage {
                input_tokens: 1000,
                output_tokens: 50,
            },
        }],
        generator_model_id: Some("amazon.nova-pro-v1:0".into()),
        judge_model_id: Some("amazon.nova-lite-v1:0".into()),
        started_at: None,
    }
}

fn setup() -> (Deps, Arc<SqliteMessageStore>, Arc<Bus>) {
    let (deps, store, bus, _) = setup_with_counters();
    (deps, store, bus)
}

fn setup_with_counters() -> (
    Deps,
    Arc<SqliteMessageStore>,
    Arc<Bus>,
    Arc<SqliteVersionCounters>,
) {
    let store = Arc::new(SqliteMessageStore::in_memory().unwrap());
    let bus = Arc::new(Bus::default());
    let counters = Arc::new(SqliteVersionCounters::in_memory().unwrap());
    (
        Deps {
            messages: store.clone(),
            events: bus.clone(),
            counters: counters.clone(),
        },
        store,
        bus,
        counters,
    )
}

#[tokio::test]
async fn an_approval_is_stored_and_announced_once() {
    let (deps, store, bus) = setup();
    let out = handle(Input::Published(finished(true)), &deps)
        .await
        .unwrap();
    assert!(out.record_written && out.event_published);
    let again = handle(Input::Published(finished(true)), &deps)
        .await
        .unwrap();
    assert!(!again.record_written && !again.event_published);
    assert_eq!(bus.events.lock().unwrap().len(), 1);
    let ev = bus.events.lock().unwrap()[0].clone();
    assert_eq!(ev.detail_type, "UpsellMessageApproved");
    assert_eq!(ev.detail["eventId"], "evt-1");
    assert_eq!(ev.detail["offering"], "gutter_cleaning");
    // The announcement honours its committed contract (schemas/events/out/).
    let schema: serde_json::Value = serde_json::from_str(include_str!(
        "../../../schemas/events/out/UpsellMessageApproved.schema.json"
    ))
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let wire = serde_json::to_value(&ev).unwrap();
    let problems: Vec<String> = validator
        .iter_errors(&wire)
        .map(|e| e.to_string())
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    let rec = store.get("evt-1").await.unwrap().unwrap();
    assert_eq!(rec.status, MessageStatus::Approved);
    assert_eq!(rec.total_usage.total(), 2150);
    assert!(rec.cost_usd > 0.0);
}

#[tokio::test]
async fn a_bus_failure_is_retried_without_losing_the_announcement() {
    let (deps, store, bus) = setup();
    *bus.fail_next.lock().unwrap() = true;
    let err = handle(Input::Published(finished(true)), &deps)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "TransientError");
    assert!(store.get("evt-1").await.unwrap().is_none());
    let out = handle(Input::Published(finished(true)), &deps)
        .await
        .unwrap();
    assert!(out.event_published);
    assert_eq!(bus.events.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn refuses_to_publish_an_unapproved_message() {
    let (deps, _, bus) = setup();
    let err = handle(Input::Published(finished(false)), &deps)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidRequest");
    assert!(bus.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn every_outcome_writes_exactly_one_record() {
    let (deps, store, bus) = setup();
    let event = json!({"id": "evt-9", "source": "x", "detail-type": "ServiceCompleted", "time": "2025-01-01T00:00:00Z", "detail": {"customerId": "c9"}});
    let cases = vec![
        (Input::Rejected(Finished { event_id: "evt-2".into(), ..finished(false) }), "rejected", "evt-2"),
        (Input::Skipped(Skipped { event_id: "evt-3".into(), customer_id: "c1".into(), reason: "opted-out".into(), started_at: None, event: None }), "skipped", "evt-3"),
        (Input::Failed(Failed { event: event.clone(), error: StepError { error: "ModelThrottled".into(), cause: Some("429".into()) }, started_at: None, generator: None, generation: None, judged: None }), "failed", "evt-9"),
        (Input::Quarantined(Quarantined {
            event: json!({"id": "evt-q", "detail": {}}),
            error: StepError { error: "SchemaInvalid".into(), cause: Some(r#"{"reason":"schema-violation","eventId":"evt-q","problems":[{"path":"/detail/customerId","message":"required"}]}"#.into()) },
            origin: Some("eventbridge".into()),
        }), "quarantined", "evt-q"),
    ];
    for (input, outcome, id) in cases {
        let first = handle(input.clone(), &deps).await.unwrap();
        assert_eq!(
            (
                first.outcome.as_str(),
                first.record_id.as_str(),
                first.record_written
            ),
            (outcome, id, true)
        );
        let second = handle(input, &deps).await.unwrap();
        assert!(!second.record_written, "{outcome} written twice");
    }
    assert!(bus.events.lock().unwrap().is_empty());
    let failed = store.get("evt-9").await.unwrap().unwrap();
    assert_eq!(failed.customer_id, "c9");
    assert!(failed.error.unwrap().contains("ModelThrottled: 429"));
    let q = store.list_quarantine(None, 0).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].errors[0].path, "/detail/customerId");
    let rejected = store.get("evt-2").await.unwrap().unwrap();
    assert_eq!(rejected.status, MessageStatus::Rejected);
}

#[tokio::test]
async fn quarantine_reads_problems_from_a_lambda_error_cause() {
    // Step Functions hands a caught Lambda error over as Cause = {"errorMessage", "errorType"}.
    let (deps, store, _) = setup();
    let details = r#"{"reason":"unknown-detail-type","eventId":"evt-w","problems":[{"path":"/detail-type","message":"unknown detail-type"}]}"#;
    let cause = json!({"errorMessage": details, "errorType": "SchemaInvalid"}).to_string();
    let input = Input::Quarantined(Quarantined {
        event: json!({"id": "evt-w", "detail": {}}),
        error: StepError {
            error: "SchemaInvalid".into(),
            cause: Some(cause),
        },
        origin: None,
    });
    handle(input, &deps).await.unwrap();
    let q = store.list_quarantine(None, 0).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].reason.as_str(), "unknown-detail-type");
    assert_eq!(q[0].errors[0].path, "/detail-type");
}

fn usage(input_tokens: u64, output_tokens: u64) -> TokenUsage {
    TokenUsage {
        input_tokens,
        output_tokens,
    }
}

#[tokio::test]
async fn cost_counts_the_judge_and_each_version_gets_its_own() {
    let (deps, store, _, counters) = setup_with_counters();
    handle(Input::Published(finished(true)), &deps)
        .await
        .unwrap();
    let rec = store.get("evt-1").await.unwrap().unwrap();
    let generator = cost_usd("amazon.nova-pro-v1:0", usage(1000, 100));
    let judge = cost_usd("amazon.nova-lite-v1:0", usage(1000, 50));
    assert!(judge > 0.0, "the judge's model has no price");
    assert!(
        (rec.cost_usd - (generator + judge)).abs() < 1e-12,
        "{}",
        rec.cost_usd
    );
    let g = counters.read(&agent("upsell-generator")).await.unwrap();
    let j = counters.read(&agent("upsell-judge")).await.unwrap();
    assert_eq!(g.cost_nano_usd, nano_usd(generator));
    assert_eq!(j.cost_nano_usd, nano_usd(judge));
    assert_eq!((g.approvals, g.score_sum, g.score_count), (1, 9, 1));
    assert_eq!((j.approvals, j.score_sum, j.score_count), (1, 9, 1));
    assert_eq!(g.latency.iter().sum::<u64>(), 1);
    // A redelivery writes nothing and counts nothing.
    handle(Input::Published(finished(true)), &deps)
        .await
        .unwrap();
    assert_eq!(counters.read(&agent("upsell-generator")).await.unwrap(), g);
}

fn failed_after(generation: Option<LastGeneration>, judged: Option<LastVerdict>) -> Failed {
    Failed {
        event: json!({"id": "evt-f", "detail": {"customerId": "c7"}}),
        error: StepError {
            error: "ModelThrottled".into(),
            cause: Some("429".into()),
        },
        started_at: None,
        generator: Some(ChosenGenerator {
            agent_id: "upsell-generator".into(),
            version: Some(semver::Version::new(1, 1, 0)),
        }),
        generation,
        judged,
    }
}

#[tokio::test]
async fn a_failed_record_names_the_versions_that_ran_and_what_they_cost() {
    // Attempt 1 was judged (rejected); attempt 2's generation ran, then its judge call failed.
    let f = finished(false);
    let judged = LastVerdict {
        judge: agent("upsell-judge"),
        model_id: "amazon.nova-lite-v1:0".into(),
        history: f.history.clone(),
    };
    let generation = LastGeneration {
        attempt: 2,
        generator: agent("upsell-generator"),
        model_id: "amazon.nova-pro-v1:0".into(),
        usage: usage(500, 80),
    };
    let (deps, store, _, counters) = setup_with_counters();
    handle(
        Input::Failed(failed_after(Some(generation), Some(judged))),
        &deps,
    )
    .await
    .unwrap();
    let rec = store.get("evt-f").await.unwrap().unwrap();
    assert_eq!(rec.status, MessageStatus::Failed);
    assert_eq!(rec.generator, agent("upsell-generator"));
    assert_eq!(rec.judge, agent("upsell-judge"));
    assert_eq!(rec.attempts.len(), 1);
    let generator = cost_usd("amazon.nova-pro-v1:0", usage(1500, 180));
    let judge = cost_usd("amazon.nova-lite-v1:0", usage(1000, 50));
    assert!(
        (rec.cost_usd - (generator + judge)).abs() < 1e-12,
        "{}",
        rec.cost_usd
    );
    assert_eq!(rec.total_usage, usage(2500, 230));
    let g = counters.read(&agent("upsell-generator")).await.unwrap();
    assert_eq!((g.errors, g.cost_nano_usd), (1, nano_usd(generator)));
    let j = counters.read(&agent("upsell-judge")).await.unwrap();
    assert_eq!((j.errors, j.cost_nano_usd), (1, nano_usd(judge)));
}

#[tokio::test]
async fn a_failure_before_the_first_generation_names_the_routed_version_only() {
    let (deps, store, _, counters) = setup_with_counters();
    let out = handle(Input::Failed(failed_after(None, None)), &deps)
        .await
        .unwrap();
    let rec = store.get("evt-f").await.unwrap().unwrap();
    let routed = AgentRef {
        agent_id: "upsell-generator".into(),
        version: semver::Version::new(1, 1, 0),
    };
    assert_eq!(rec.generator, routed);
    assert!(rec.judge.is_placeholder(), "{:?}", rec.judge);
    assert_eq!(rec.cost_usd, 0.0);
    assert_eq!(out.generator, Some(routed.clone()));
    assert_eq!(counters.read(&routed).await.unwrap().errors, 1);
    assert!(counters.versions("upsell-judge").await.unwrap().is_empty());
}

fn response(id: &str, message_event_id: &str, response: &str) -> RawEvent {
    serde_json::from_value(json!({
        "version": "0", "id": id, "source": "com.greenleaf.messaging",
        "detail-type": "UpsellResponded", "time": "2025-10-08T10:00:00Z",
        "detail": {"customerId": "c1", "messageEventId": message_event_id, "response": response}
    }))
    .unwrap()
}

fn skipped_response(id: &str, event: RawEvent) -> Input {
    Input::Skipped(Skipped {
        event_id: id.into(),
        customer_id: "c1".into(),
        reason: "response-recorded".into(),
        started_at: None,
        event: Some(event),
    })
}

#[tokio::test]
async fn a_response_counts_once_for_the_versions_of_the_approved_message() {
    let (deps, _, _, counters) = setup_with_counters();
    handle(Input::Published(finished(true)), &deps)
        .await
        .unwrap();
    let before = counters.read(&agent("upsell-generator")).await.unwrap();
    assert_eq!(before.responses, [0; 4]);
    let accepted = response("r-1", "evt-1", "accepted");
    for _ in 0..2 {
        // The redelivery writes no record and counts nothing.
        handle(skipped_response("r-1", accepted.clone()), &deps)
            .await
            .unwrap();
    }
    handle(
        skipped_response("r-2", response("r-2", "evt-1", "no-answer")),
        &deps,
    )
    .await
    .unwrap();
    // A response to an unknown message counts for no version.
    handle(
        skipped_response("r-3", response("r-3", "evt-unknown", "declined")),
        &deps,
    )
    .await
    .unwrap();
    for id in ["upsell-generator", "upsell-judge"] {
        let c = counters.read(&agent(id)).await.unwrap();
        assert_eq!(c.responses, [1, 0, 1, 0], "{id}");
        assert_eq!(c.acceptance_rate(), Some(0.5), "{id}");
        // The record itself was counted once, when it was written.
        assert_eq!((c.approvals, c.records()), (1, 1), "{id}");
    }
}
