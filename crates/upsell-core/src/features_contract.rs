//! The contract of [`FeatureStore`]'s event log, versioned reads and rebuild, written once and
//! run against every adapter (SQLite in `crates/upsell-sqlite`, DynamoDB on moto in
//! `crates/upsell-aws`) with [`feature_store_contract!`](crate::feature_store_contract). Behind
//! the `contract` feature; adapters enable it for their tests only.
//!
//! Each case takes a fresh, empty store and panics on the first broken promise. Expected
//! snapshots come from the core fold over the same events ([`features_from_events_as`]).

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::events::CustomerEvent;
use crate::features::{FeatureSet, FeatureStore, features_from_events_as, replay_as};
use crate::rebuild::{RebuildRequest, moved_features, rebuild};

/// Makes one `#[tokio::test]` per contract case. `$make` is an async expression yielding
/// `Option<impl FeatureStore>`: a fresh, empty store (`None`: the backend is unavailable and
/// the test says it is skipped; a backend the CI requires must panic instead).
#[macro_export]
macro_rules! feature_store_contract {
    ($make:expr) => {
        $crate::feature_store_contract!(@cases $make;
            a_redelivered_event_is_logged_once,
            events_read_back_in_event_time_order_ties_by_id,
            versions_are_read_side_by_side_and_point_in_time,
            a_rebuild_writes_the_new_version_and_reports_what_moved);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(store) = $make.await else { return };
                $crate::features_contract::$case(&store).await;
            }
        )*
    };
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

/// A survey of `customer` at `time` (RFC 3339) with `score`.
pub fn survey(id: &str, customer: &str, time: &str, score: u8) -> CustomerEvent {
    serde_json::from_value(
        json!({"id": id, "source": "test", "detail-type": "SurveySubmitted",
        "time": time,
        "detail": {"customerId": customer, "satisfaction": score, "surveyDate": &time[..10]}}),
    )
    .expect("survey event")
}

/// A completed service of `customer` at `time`.
pub fn service(id: &str, customer: &str, time: &str, cents: u64) -> CustomerEvent {
    serde_json::from_value(
        json!({"id": id, "source": "test", "detail-type": "ServiceCompleted",
        "time": time,
        "detail": {"customerId": customer, "service": "lawn-care", "serviceDate": &time[..10],
                   "priceCents": cents}}),
    )
    .expect("service event")
}

fn ids(events: &[CustomerEvent]) -> Vec<&str> {
    events.iter().map(|e| e.id()).collect()
}

/// Appending or applying an event again logs it once and counts it once.
pub async fn a_redelivered_event_is_logged_once(store: &impl FeatureStore) {
    let e = service("e1", "c1", "2025-03-01T10:00:00Z", 5000);
    assert!(store.append_event(&e).await.unwrap(), "first append is new");
    assert!(
        !store.append_event(&e).await.unwrap(),
        "second append is a repeat"
    );
    let once = store.apply_event(&e).await.unwrap();
    let twice = store.apply_event(&e).await.unwrap();
    assert_eq!(once, twice);
    assert_eq!(once.event_count, 1);
    assert_eq!(ids(&store.events("c1").await.unwrap()), ["e1"]);
    // apply_event logs an event it has not seen.
    let e2 = survey("e2", "c1", "2025-03-02T10:00:00Z", 8);
    store.apply_event(&e2).await.unwrap();
    assert_eq!(ids(&store.events("c1").await.unwrap()), ["e1", "e2"]);
    assert!(store.events("nobody").await.unwrap().is_empty());
    assert_eq!(store.logged_customers().await.unwrap(), ["c1"]);
}

/// Events come back oldest first whatever the append order, same-time events by id, each
/// customer's own only; `logged_customers` lists each customer once, sorted.
pub async fn events_read_back_in_event_time_order_ties_by_id(store: &impl FeatureStore) {
    let appended = [
        survey("z-late", "c2", "2025-05-01T00:00:00Z", 5),
        survey("b", "c2", "2025-04-01T12:00:00Z", 6),
        service("other", "c1", "2025-04-01T12:00:00Z", 100),
        survey("a", "c2", "2025-04-01T12:00:00Z", 7),
        // Microseconds apart: fixed-width times keep them in order.
        service("m", "c2", "2025-04-01T11:59:59.999999Z", 100),
        service("early", "c2", "2024-12-31T23:00:00-02:00", 100),
    ];
    for e in &appended {
        assert!(store.append_event(e).await.unwrap(), "{}", e.id());
    }
    let back = store.events("c2").await.unwrap();
    assert_eq!(ids(&back), ["early", "m", "a", "b", "z-late"]);
    // The time with an offset is the same instant in UTC (2025-01-01T01:00Z).
    assert_eq!(back[0].time(), t("2025-01-01T01:00:00Z"));
    assert_eq!(back[2], appended[3], "events round-trip unchanged");
    assert_eq!(store.logged_customers().await.unwrap(), ["c1", "c2"]);
}

/// Snapshots of two versions live side by side; each is read by version, at a point in time.
pub async fn versions_are_read_side_by_side_and_point_in_time(store: &impl FeatureStore) {
    let events: Vec<CustomerEvent> = (1..=5u8)
        .map(|i| {
            survey(
                &format!("v{i}"),
                "c1",
                &format!("2025-06-0{i}T09:00:00Z"),
                2 * i,
            )
        })
        .collect();
    for e in &events {
        store.apply_event(e).await.unwrap();
    }
    store
        .put_all(&replay_as(FeatureSet::V2, "c1", &events).unwrap())
        .await
        .unwrap();
    let at = t("2025-06-04T12:00:00Z");
    for fs in FeatureSet::ALL {
        let got = store
            .get_version("c1", fs.version(), Some(at))
            .await
            .unwrap()
            .unwrap();
        let want = features_from_events_as(fs, "c1", &events, at)
            .unwrap()
            .unwrap();
        assert_eq!(got, want, "{fs} as of {at}");
        let newest = store
            .get_version("c1", fs.version(), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(newest.event_count, 5, "{fs}");
        assert_eq!(newest.feature_set_version, fs.version());
    }
    // The plain read is the serving version; nothing before the first event.
    let serving = store.get("c1", Some(at)).await.unwrap().unwrap();
    assert_eq!(serving.feature_set_version, FeatureSet::SERVING.version());
    assert_eq!(serving.recent_satisfaction, [2, 4, 6, 8]);
    let before = t("2025-06-01T08:59:59Z");
    for fs in FeatureSet::ALL {
        let none = store.get_version("c1", fs.version(), Some(before)).await;
        assert!(none.unwrap().is_none(), "{fs} before the first event");
    }
    assert!(
        store
            .get_version("c1", "fs-v0", None)
            .await
            .unwrap()
            .is_none()
    );
}

/// The live path logs events; a rebuild of `fs-v2` from the log writes its history beside
/// `fs-v1`, reports per feature how many customers moved, and a second rebuild changes nothing.
pub async fn a_rebuild_writes_the_new_version_and_reports_what_moved(store: &impl FeatureStore) {
    // c1: 5 surveys (the 3-survey window moves the list, mean and trend); c2: 2 surveys and a
    // service (nothing moves); c3: 4 surveys of equal scores (only the list moves).
    let mut events = vec![service("s1", "c2", "2025-01-10T08:00:00Z", 4000)];
    for (i, score) in [9u8, 8, 7, 3, 2].into_iter().enumerate() {
        let time = format!("2025-02-{:02}T08:00:00Z", i + 1);
        events.push(survey(&format!("c1-{i}"), "c1", &time, score));
    }
    for (i, score) in [6u8, 9].into_iter().enumerate() {
        let time = format!("2025-02-{:02}T09:00:00Z", i + 1);
        events.push(survey(&format!("c2-{i}"), "c2", &time, score));
    }
    for i in 0..4 {
        let time = format!("2025-03-{:02}T08:00:00Z", i + 1);
        events.push(survey(&format!("c3-{i}"), "c3", &time, 5));
    }
    for e in &events {
        store.apply_event(e).await.unwrap();
    }
    let request = RebuildRequest {
        feature_set: FeatureSet::V2,
        serving: FeatureSet::SERVING,
    };
    let report = rebuild(store, &request).await.unwrap();
    assert_eq!(
        (report.serving.as_str(), report.rebuilt.as_str()),
        ("fs-v1", "fs-v2")
    );
    assert_eq!(report.customers_rebuilt, 3);
    assert_eq!(report.customers_compared, 3);
    assert_eq!(report.events_replayed, events.len());
    assert_eq!(report.snapshots_written, events.len());
    let moved: Vec<(&str, usize)> = report
        .features
        .iter()
        .map(|f| (f.feature.as_str(), f.customers))
        .collect();
    assert_eq!(
        moved,
        [
            ("recentSatisfaction", 2),
            ("satisfactionAvg", 1),
            ("satisfactionTrend", 1)
        ]
    );
    assert_eq!(report.customers_changed, 2);
    // The figures are what the core comparison gives on the stored current snapshots.
    for c in ["c1", "c2", "c3"] {
        let v1 = store.get_version(c, "fs-v1", None).await.unwrap().unwrap();
        let v2 = store.get_version(c, "fs-v2", None).await.unwrap().unwrap();
        let n = moved_features(&v1, &v2).len();
        assert_eq!(n > 0, c != "c2", "{c}: {:?}", moved_features(&v1, &v2));
    }
    // Point in time under fs-v2, after the 4th survey of c1.
    let at = t("2025-02-04T12:00:00Z");
    let got = store
        .get_version("c1", "fs-v2", Some(at))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.recent_satisfaction, [8, 7, 3]);
    let c1: Vec<CustomerEvent> = events
        .iter()
        .filter(|e| e.customer_id() == "c1")
        .cloned()
        .collect();
    assert_eq!(
        Some(got),
        features_from_events_as(FeatureSet::V2, "c1", &c1, at).unwrap()
    );
    // The serving version is untouched and still what `get` reads.
    let serving = store.get("c1", None).await.unwrap().unwrap();
    assert_eq!(serving.recent_satisfaction, [9, 8, 7, 3, 2]);
    let again = rebuild(store, &request).await.unwrap();
    assert_eq!(again, report, "a second rebuild gives the same result");
    let history = store.history("c1", 100).await.unwrap();
    assert_eq!(history.len(), 5, "serving history unchanged");
}
