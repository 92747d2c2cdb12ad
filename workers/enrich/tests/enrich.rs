//! Data-driven tests of the enrich worker over the SQLite adapters (in memory).

use std::sync::Arc;

use enrich::{Deps, Input, bucket_of, handle};
use serde_json::{Value, json};
use upsell_core::features::FeatureStore;
use upsell_sqlite::contacts::SqliteContactStore;
use upsell_sqlite::features::SqliteFeatureStore;

fn deps() -> (Deps, Arc<SqliteFeatureStore>) {
    let features = Arc::new(SqliteFeatureStore::in_memory().unwrap());
    let deps = Deps {
        features: features.clone(),
        contacts: Arc::new(SqliteContactStore::in_memory().unwrap()),
    };
    (deps, features)
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

#[test]
fn buckets_are_stable_and_spread() {
    assert_eq!(bucket_of("cust-000042"), bucket_of("cust-000042"));
    let mut seen = [0u32; 100];
    for i in 0..10_000 {
        seen[usize::from(bucket_of(&format!("cust-{i:06}")))] += 1;
    }
    assert!(seen.iter().all(|n| (50..=150).contains(n)), "{seen:?}");
}
