//! Data-driven tests of the enrich worker over the SQLite adapters (in memory).

use std::sync::Arc;

use enrich::{Deps, Input, bucket_of, handle};
use serde_json::{Value, json};
use upsell_core::features::{CustomerIndex, FeatureStore, SimilarQuery};
use upsell_core::kb::{Filter, HashingEmbedder, KnowledgeBase, MetaValue, RetrieveRequest};
use upsell_core::ports::MessageStore;
use upsell_sqlite::SqliteContactStore;
use upsell_sqlite::SqliteFeatureStore;
use upsell_sqlite::SqliteKnowledgeBase;
use upsell_sqlite::SqliteMessageStore;
use upsell_sqlite::SqlitePastSuccesses;

fn deps() -> (Deps, Arc<SqliteFeatureStore>) {
    let (deps, features, _, _) = full_deps();
    (deps, features)
}

fn full_deps() -> (
    Deps,
    Arc<SqliteFeatureStore>,
    Arc<SqliteMessageStore>,
    Arc<SqliteKnowledgeBase>,
) {
    let features = Arc::new(SqliteFeatureStore::in_memory().unwrap());
    let messages = Arc::new(SqliteMessageStore::in_memory().unwrap());
    let kb =
        Arc::new(SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::default())).unwrap());
    let deps = Deps {
        features: features.clone(),
        contacts: Arc::new(SqliteContactStore::in_memory().unwrap()),
        index: Some(features.clone()),
        outcomes: Some(enrich::outcome::OutcomeDeps {
            messages: messages.clone(),
            successes: Arc::new(SqlitePastSuccesses::new(
                kb.clone(),
                upsell_core::kb::ChunkingStrategy::None,
            )),
        }),
    };
    (deps, features, messages, kb)
}

fn response(id: &str, time: &str, message_event_id: &str, response: &str) -> Value {
    json!({"id": id, "source": "com.greenleaf.messaging", "detail-type": "UpsellResponded", "time": time,
        "detail": {"customerId": "c1", "messageEventId": message_event_id, "response": response}})
}

fn profile(id: &str, time: &str, opt_in: bool, pool: bool) -> Value {
    json!({"id": id, "source": "com.homeservices.crm", "detail-type": "CustomerProfileUpdated", "time": time,
        "detail": {"customerId": "c1", "firstName": "Dana", "lastName": "Lee", "email": "d@example.com",
          "address": {"street": "1 Main St", "city": "Columbus", "state": "OH", "postalCode": "43004", "region": "midwest"},
          "property": {"homeType": "single-family", "lotSizeSqft": 9000, "hasPool": pool, "pets": ["dog"], "yearBuilt": 1990},
          "marketingOptIn": opt_in}})
}

fn service(id: &str, time: &str, svc: &str, notes: &str) -> Value {
    json!({"id": id, "source": "com.homeservices.field", "detail-type": "ServiceCompleted", "time": time,
        "detail": {"customerId": "c1", "service": svc, "serviceDate": &time[..10], "priceCents": 6500, "technicianNotes": notes}})
}

fn survey(id: &str, time: &str, score: u8) -> Value {
    json!({"id": id, "source": "com.homeservices.survey", "detail-type": "SurveySubmitted", "time": time,
        "detail": {"customerId": "c1", "satisfaction": score, "surveyDate": &time[..10], "freeText": "ok"}})
}

async fn run(deps: &Deps, event: Value) -> enrich::Output {
    handle(
        Input {
            event: serde_json::from_value(event).unwrap(),
        },
        deps,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn eligibility_follows_profile_consent_and_mood() {
    // (events before, the event, expected skip reason or None)
    let cases: Vec<(Vec<Value>, Value, Option<&str>)> = vec![
        (
            vec![],
            service("s1", "2025-05-02T10:00:00Z", "lawn-care", ""),
            Some("no-profile"),
        ),
        (
            vec![profile("p1", "2025-05-01T10:00:00Z", false, false)],
            service("s1", "2025-05-02T10:00:00Z", "lawn-care", ""),
            Some("opted-out"),
        ),
        (
            vec![profile("p1", "2025-05-01T10:00:00Z", true, false)],
            survey("v1", "2025-05-03T10:00:00Z", 3),
            Some("unhappy-customer"),
        ),
        (
            vec![profile("p1", "2025-05-01T10:00:00Z", true, false)],
            service(
                "s1",
                "2025-05-02T10:00:00Z",
                "lawn-care",
                "Tell them ACT NOW",
            ),
            None,
        ),
        (
            vec![],
            profile("p1", "2025-05-01T10:00:00Z", true, true),
            None,
        ),
    ];
    for (before, event, want) in cases {
        let (deps, _) = deps();
        for e in before {
            run(&deps, e).await;
        }
        let out = run(&deps, event.clone()).await;
        assert_eq!(out.skip_reason.as_deref(), want, "{event}");
        assert_eq!(out.eligible, want.is_none());
        assert_eq!(out.bucket, bucket_of("c1"));
        if let Some(f) = &out.facts {
            assert_eq!(f.customer.first_name, "Dana");
            assert!(
                !f.customer.services_bought.contains(&f.offer.service),
                "offers only services not bought"
            );
            assert!(
                f.offer.reasons.iter().any(|r| r.contains("spring")),
                "{:?}",
                f.offer.reasons
            );
            assert_eq!(f.booking_month, "June");
            assert_eq!(
                out.retrieval.as_ref().unwrap().offering.as_deref(),
                Some(f.offer.offering.as_str())
            );
        }
    }
}

#[tokio::test]
async fn offers_fit_the_property() {
    let (deps, _) = deps();
    let out = run(&deps, profile("p1", "2025-05-01T10:00:00Z", true, true)).await;
    let f = out.facts.unwrap();
    let all: Vec<_> = std::iter::once(&f.offer).chain(&f.alternatives).collect();
    assert_eq!(
        f.offer.offering, "pool_opening",
        "pool owners in spring get the pool opening first: {all:?}"
    );
    let (deps, _) = self::deps();
    let out = run(&deps, profile("p1", "2025-05-01T10:00:00Z", true, false)).await;
    let f = out.facts.unwrap();
    assert!(
        std::iter::once(&f.offer)
            .chain(&f.alternatives)
            .all(|o| !o.offering.starts_with("pool"))
    );
}

#[tokio::test]
async fn reapplying_an_event_does_not_count_it_twice() {
    let (deps, store) = deps();
    run(&deps, profile("p1", "2025-05-01T10:00:00Z", true, false)).await;
    let ev = service("s1", "2025-05-02T10:00:00Z", "lawn-care", "");
    run(&deps, ev.clone()).await;
    run(&deps, ev).await;
    let f = store.get("c1", None).await.unwrap().unwrap();
    assert_eq!(f.service_count, 1);
    assert_eq!(f.lifetime_value_cents, 6500);
    assert_eq!(f.event_count, 2);
}

#[tokio::test]
async fn every_event_refreshes_the_customer_embedding() {
    let (deps, store) = deps();
    let c2 = {
        let mut p = profile("p2", "2025-05-01T09:00:00Z", true, false);
        p["detail"]["customerId"] = json!("c2");
        p
    };
    run(&deps, c2).await;
    // c1's first event is a service (no profile yet): it still gets an embedding.
    run(
        &deps,
        service("s1", "2025-05-02T10:00:00Z", "lawn-care", ""),
    )
    .await;
    let q = |id: &str| SimilarQuery {
        customer_id: id.into(),
        k: 5,
        region: None,
        service: None,
    };
    let near = store.similar(&q("c1")).await.unwrap();
    assert_eq!(near.len(), 1);
    assert_eq!(near[0].customer_id, "c2");
    assert_eq!(store.similar(&q("c2")).await.unwrap()[0].customer_id, "c1");
}

#[tokio::test]
async fn responses_update_features_and_an_opt_out_withdraws_consent() {
    let (deps, store) = deps();
    run(&deps, profile("p1", "2025-05-01T10:00:00Z", true, false)).await;
    run(
        &deps,
        service("s1", "2025-05-02T10:00:00Z", "lawn-care", ""),
    )
    .await;
    let out = run(
        &deps,
        response("r1", "2025-05-03T10:00:00Z", "s1", "declined"),
    )
    .await;
    assert_eq!(out.skip_reason.as_deref(), Some("response-recorded"));
    assert!(!out.eligible);
    let out = run(
        &deps,
        response("r2", "2025-05-04T10:00:00Z", "s1", "opted-out"),
    )
    .await;
    assert_eq!(out.skip_reason.as_deref(), Some("response-recorded"));
    let f = store.get("c1", None).await.unwrap().unwrap();
    assert_eq!(f.offers_declined, 1);
    assert_eq!(f.marketing_opt_in, Some(false));
    assert!(
        !deps
            .contacts
            .get("c1")
            .await
            .unwrap()
            .unwrap()
            .marketing_opt_in
    );
    let out = run(
        &deps,
        service("s2", "2025-05-05T10:00:00Z", "pest-control", ""),
    )
    .await;
    assert_eq!(out.skip_reason.as_deref(), Some("opted-out"));
}

#[tokio::test]
async fn an_accepted_message_becomes_a_retrievable_past_success() {
    let (deps, _, messages, kb) = full_deps();
    run(&deps, profile("p1", "2025-05-01T10:00:00Z", true, false)).await;
    run(
        &deps,
        service("s1", "2025-05-02T10:00:00Z", "lawn-care", ""),
    )
    .await;
    let record = serde_json::from_value(json!({
        "eventId": "s1", "customerId": "c1", "status": "approved",
        "message": "Hi Dana, your lawn looks great; shall we keep the ticks away this summer?",
        "recommendedService": "pest-control", "offering": "tick_treatment",
        "generator": {"agentId": "upsell-generator", "version": "1.0.0"},
        "judge": {"agentId": "upsell-judge", "version": "1.0.0"},
        "attempts": [], "totalUsage": {"inputTokens": 1, "outputTokens": 1},
        "costUsd": 0.0, "latencyMs": 1, "createdAt": "2025-05-02T10:01:00Z"
    }))
    .unwrap();
    messages.put_if_absent(&record).await.unwrap();
    // Declined and unknown messages write nothing.
    run(
        &deps,
        response("r0", "2025-05-02T12:00:00Z", "s1", "declined"),
    )
    .await;
    run(
        &deps,
        response("r9", "2025-05-02T13:00:00Z", "nope", "accepted"),
    )
    .await;
    let filter = Filter::Equals {
        key: "doc_type".into(),
        value: MetaValue::Text("past_message".into()),
    };
    let req = RetrieveRequest::new("ticks summer lawn", 5).with_filter(Some(filter));
    assert!(kb.retrieve(&req).await.unwrap().is_empty());
    run(
        &deps,
        response("r1", "2025-05-04T10:00:00Z", "s1", "accepted"),
    )
    .await;
    let hits = kb.retrieve(&req).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].doc_id, "past-messages/accepted/s1");
    assert!(hits[0].text.contains("keep the ticks away"));
    assert_eq!(
        hits[0].metadata.get("offering"),
        Some(&MetaValue::Text("tick_treatment".into()))
    );
}

#[tokio::test]
async fn a_message_is_written_from_what_is_known_and_says_what_is_not() {
    let (deps, _) = deps();
    // A profile without build year, pets or phone; a service without rating or notes; no survey.
    let mut p = profile("p1", "2025-05-01T10:00:00Z", true, false);
    let property = p["detail"]["property"].as_object_mut().unwrap();
    property.remove("yearBuilt");
    property.remove("pets");
    let out = run(&deps, p).await;
    assert!(out.eligible, "{out:?}");
    let out = run(
        &deps,
        service("s1", "2025-05-02T10:00:00Z", "lawn-care", ""),
    )
    .await;
    assert!(out.eligible, "{out:?}");
    let facts = out.facts.unwrap();
    let why = |name: &str| {
        facts
            .unknown
            .iter()
            .find(|m| m.feature == name)
            .map(|m| m.reason.as_str())
    };
    assert_eq!(
        why("homeAgeYears"),
        Some("the profile does not give the year the home was built")
    );
    assert_eq!(why("satisfactionAvg"), Some("no survey yet"));
    assert_eq!(why("region"), None);
    assert_eq!(facts.customer.home_age_years, None);
    assert_eq!(out.missing_features, facts.unknown);
}

#[test]
fn buckets_are_stable_and_spread() {
    assert_eq!(bucket_of("cust-000042"), bucket_of("cust-000042"));
    let mut seen = [0u32; 100];
    for i in 0..10_000 {
        seen[usize::from(bucket_of(&format!("cust-{i:06}")))] += 1;
    }
    assert!(seen.iter().all(|n| (50..=150).contains(n)), "{seen:?}");
}
