//! Feature store: point-in-time reads over history, idempotent writes, and similar customers
//! with region and service filters.

use chrono::{DateTime, Utc};
use serde_json::json;
use upsell_core::events::{CustomerEvent, Region, Service};
use upsell_core::features::{CustomerEmbedding, CustomerIndex, FeatureStore, SimilarQuery, replay};
use upsell_sqlite::SqliteFeatureStore;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn ev(v: serde_json::Value) -> CustomerEvent {
    serde_json::from_value(v).unwrap()
}

fn profile(c: &str, id: &str, time: &str, region: &str, pool: bool, lot: u32) -> CustomerEvent {
    ev(
        json!({"id": id, "source": "test", "detail-type": "CustomerProfileUpdated", "time": time,
        "detail": {"customerId": c, "firstName": "A", "lastName": "B", "email": "a@example.com",
          "address": {"street": "1 Main St", "city": "X", "state": "OH", "postalCode": "43004", "region": region},
          "property": {"homeType": "single-family", "lotSizeSqft": lot, "hasPool": pool, "pets": [], "yearBuilt": 1995}}}),
    )
}

fn service(c: &str, id: &str, date: &str, svc: &str, cents: u64) -> CustomerEvent {
    ev(
        json!({"id": id, "source": "test", "detail-type": "ServiceCompleted", "time": format!("{date}T15:00:00Z"),
        "detail": {"customerId": c, "service": svc, "serviceDate": date, "priceCents": cents}}),
    )
}

fn survey(c: &str, id: &str, date: &str, score: u8) -> CustomerEvent {
    ev(
        json!({"id": id, "source": "test", "detail-type": "SurveySubmitted", "time": format!("{date}T18:00:00Z"),
        "detail": {"customerId": c, "satisfaction": score, "surveyDate": date}}),
    )
}

async fn load(store: &SqliteFeatureStore, customer: &str, events: &[CustomerEvent]) {
    for snap in replay(customer, events).unwrap() {
        store.put(&snap).await.unwrap();
        store
            .upsert(&CustomerEmbedding::from_features(&snap))
            .await
            .unwrap();
    }
}

fn history_c1() -> Vec<CustomerEvent> {
    vec![
        profile("c1", "p1", "2024-01-10T00:00:00Z", "midwest", false, 8000),
        service("c1", "s1", "2024-04-01", "lawn-care", 6500),
        survey("c1", "v1", "2024-04-02", 3),
        service("c1", "s2", "2024-06-01", "pool-service", 25000),
        survey("c1", "v2", "2024-06-02", 5),
        profile("c1", "p2", "2024-07-01T00:00:00Z", "midwest", true, 8000),
    ]
}

#[tokio::test]
async fn point_in_time_reads_return_what_was_known_then() {
    let store = SqliteFeatureStore::in_memory().unwrap();
    load(&store, "c1", &history_c1()).await;

    assert!(
        store
            .get("c1", Some(t("2024-01-09T23:59:59Z")))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get("nobody", None).await.unwrap().is_none());

    let may = store
        .get("c1", Some(t("2024-05-15T00:00:00Z")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(may.service_count, 1);
    assert_eq!(may.lifetime_value_cents, 6500);
    assert_eq!(may.services_bought, [Service::LawnCare]);
    assert_eq!(may.satisfaction_avg, Some(3.0));
    assert_eq!(may.has_pool, Some(false));
    // Time-relative features are computed for the read time, not the snapshot's event time.
    assert_eq!(may.as_of, t("2024-05-15T00:00:00Z"));
    assert_eq!(may.days_since_last_service, Some(44));

    // Exactly at an event's time, that event is known.
    let at = store
        .get("c1", Some(t("2024-06-01T15:00:00Z")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at.service_count, 2);

    let latest = store.get("c1", None).await.unwrap().unwrap();
    assert_eq!(latest.has_pool, Some(true));
    assert_eq!(latest.satisfaction_trend, Some(2.0));
    assert_eq!(latest.event_count, 6);

    let history = store.history("c1", 100).await.unwrap();
    assert_eq!(history.len(), 6);
    assert!(
        history
            .windows(2)
            .all(|w| w[0].last_event_time > w[1].last_event_time)
    );
    assert_eq!(store.history("c1", 2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn writing_the_same_snapshot_twice_keeps_one_history_item() {
    let store = SqliteFeatureStore::in_memory().unwrap();
    load(&store, "c1", &history_c1()).await;
    load(&store, "c1", &history_c1()).await;
    assert_eq!(store.history("c1", 100).await.unwrap().len(), 6);
}

#[tokio::test]
async fn history_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upsell.db");
    load(
        &SqliteFeatureStore::open(&path).unwrap(),
        "c1",
        &history_c1(),
    )
    .await;
    let store = SqliteFeatureStore::open(&path).unwrap();
    let f = store
        .get("c1", Some(t("2024-05-01T00:00:00Z")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.service_count, 1);
    assert_eq!(store.customers(10).unwrap(), ["c1"]);
}

#[tokio::test]
async fn similar_customers_are_nearest_first_and_filtered() {
    let store = SqliteFeatureStore::in_memory().unwrap();
    // c1 (midwest, pool, lawn + pool service) and three others at growing distance.
    load(&store, "c1", &history_c1()).await;
    let mut twin = history_c1();
    twin = twin
        .into_iter()
        .map(|e| {
            let mut v = serde_json::to_value(&e).unwrap();
            v["id"] = json!(format!("twin-{}", v["id"].as_str().unwrap()));
            v["detail"]["customerId"] = json!("twin");
            ev(v)
        })
        .collect();
    load(&store, "twin", &twin).await;
    load(
        &store,
        "south",
        &[
            profile(
                "south",
                "p",
                "2024-01-10T00:00:00Z",
                "southwest",
                true,
                8000,
            ),
            service("south", "s1", "2024-04-01", "lawn-care", 6500),
            service("south", "s2", "2024-06-01", "pool-service", 25000),
        ],
    )
    .await;
    load(
        &store,
        "far",
        &[
            profile(
                "far",
                "p",
                "2015-01-10T00:00:00Z",
                "northeast",
                false,
                200000,
            ),
            service("far", "s1", "2015-12-01", "snow-removal", 900000),
            survey("far", "v1", "2016-01-02", 1),
        ],
    )
    .await;

    let q = |region: Option<Region>, service: Option<Service>| SimilarQuery {
        customer_id: "c1".into(),
        k: 10,
        region,
        service,
    };
    let all = store.similar(&q(None, None)).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|s| s.customer_id.as_str()).collect();
    assert_eq!(
        ids,
        ["twin", "south", "far"],
        "the query customer itself is excluded"
    );
    assert!(all[0].distance < 1e-6);
    assert!(all.windows(2).all(|w| w[0].distance <= w[1].distance));
    assert!(
        all[1]
            .closest_features
            .iter()
            .any(|(n, _)| n == "bought:pool-service")
    );
    assert!(
        !all[1]
            .closest_features
            .iter()
            .any(|(n, _)| n.starts_with("region:"))
    );

    let sw = store
        .similar(&q(Some(Region::Southwest), None))
        .await
        .unwrap();
    assert_eq!(sw.len(), 1);
    assert_eq!(sw[0].customer_id, "south");
    let snow = store
        .similar(&q(None, Some(Service::SnowRemoval)))
        .await
        .unwrap();
    assert_eq!(snow.len(), 1);
    assert_eq!(snow[0].customer_id, "far");
    assert!(
        store
            .similar(&q(Some(Region::West), None))
            .await
            .unwrap()
            .is_empty()
    );

    let missing = store
        .similar(&SimilarQuery {
            customer_id: "ghost".into(),
            k: 3,
            region: None,
            service: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.error_type(), "NotFound");
    let bad_k = store
        .similar(&SimilarQuery {
            customer_id: "c1".into(),
            k: 0,
            region: None,
            service: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_k.error_type(), "InvalidRequest");
}

#[tokio::test]
async fn an_older_embedding_never_replaces_a_newer_one() {
    let store = SqliteFeatureStore::in_memory().unwrap();
    let snaps = replay("c1", &history_c1()).unwrap();
    let newest = CustomerEmbedding::from_features(snaps.last().unwrap());
    store.upsert(&newest).await.unwrap();
    store
        .upsert(&CustomerEmbedding::from_features(&snaps[0]))
        .await
        .unwrap();
    load(
        &store,
        "twin",
        &[profile(
            "twin",
            "p",
            "2024-01-10T00:00:00Z",
            "midwest",
            true,
            8000,
        )],
    )
    .await;
    let hits = store
        .similar(&SimilarQuery {
            customer_id: "twin".into(),
            k: 1,
            region: None,
            service: None,
        })
        .await
        .unwrap();
    assert_eq!(
        hits[0].services_bought,
        [Service::LawnCare, Service::PoolService]
    );
}

#[tokio::test]
async fn ingested_events_are_logged_once_and_late_events_fix_history() {
    let store = SqliteFeatureStore::in_memory().unwrap();
    let mut events = history_c1();
    let late = events.remove(1); // the April lawn-care visit arrives last
    let s = store.ingest_events(&events).unwrap();
    assert_eq!(s.events_added, 5);
    assert_eq!(s.customers_updated, 1);
    let before = store
        .get("c1", Some(t("2024-05-01T00:00:00Z")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.service_count, 0);

    let s = store.ingest_events(&[late.clone(), late]).unwrap();
    assert_eq!((s.events_added, s.events_duplicate), (1, 1));
    let after = store
        .get("c1", Some(t("2024-05-01T00:00:00Z")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.service_count, 1,
        "the late event is part of the May snapshot now"
    );
    assert_eq!(store.history("c1", 100).await.unwrap().len(), 6);
    assert_eq!(store.events_for("c1").unwrap().len(), 6);
}
