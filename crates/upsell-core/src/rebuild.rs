//! Feature-set rebuilds: every logged customer's events replayed under a feature-set version
//! and written beside the serving version's snapshots (same store, keyed by version), with a
//! report of which features moved for how many customers. Adapters only provide the
//! [`FeatureStore`] port; `upsell features rebuild` only calls [`rebuild`].
//! docs/feature-store.md, "Rebuilding a feature set".

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::features::{CustomerFeatures, FeatureSet, FeatureStore, replay_as};
use crate::ports::PortError;

/// Keys of a snapshot that name or time it rather than describe the customer.
const NOT_FEATURES: [&str; 3] = ["customerId", "featureSetVersion", "asOf"];
/// Floats closer than this (relative, at least absolute) are the same value.
const FLOAT_TOLERANCE: f64 = 1e-9;

/// What to rebuild and what to compare it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildRequest {
    /// The version computed from the event log and written.
    pub feature_set: FeatureSet,
    /// The version its current values are compared with (normally [`FeatureSet::SERVING`]).
    pub serving: FeatureSet,
}

/// How many customers' current values of one feature differ between the two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureMoved {
    /// The feature's wire name (docs/feature-store.md).
    pub feature: String,
    pub customers: usize,
}

/// The result of a rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildReport {
    /// The version compared with.
    pub serving: String,
    /// The version rebuilt.
    pub rebuilt: String,
    /// Customers with a logged event, all replayed.
    pub customers_rebuilt: usize,
    /// Distinct logged events replayed (a redelivery is logged once).
    pub events_replayed: usize,
    /// Snapshots of the rebuilt version written (one per distinct event time).
    pub snapshots_written: usize,
    /// Rebuilt customers that also have a snapshot of the serving version.
    pub customers_compared: usize,
    /// Compared customers with at least one feature that moved.
    pub customers_changed: usize,
    /// Every feature that moved for at least one customer, most customers first, then by name.
    pub features: Vec<FeatureMoved>,
}

impl RebuildReport {
    fn new(request: &RebuildRequest) -> Self {
        RebuildReport {
            serving: request.serving.version().to_owned(),
            rebuilt: request.feature_set.version().to_owned(),
            customers_rebuilt: 0,
            events_replayed: 0,
            snapshots_written: 0,
            customers_compared: 0,
            customers_changed: 0,
            features: Vec::new(),
        }
    }
}

/// The features whose current values differ between two snapshots of one customer, by wire
/// name, sorted. Both are first brought to the later of their read times, so time-relative
/// features are compared at the same moment; floats within a relative 1e-9 are equal.
pub fn moved_features(serving: &CustomerFeatures, rebuilt: &CustomerFeatures) -> Vec<String> {
    let when = serving.as_of.max(rebuilt.as_of);
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) = (
        serde_json::to_value(serving.clone().at(when)),
        serde_json::to_value(rebuilt.clone().at(when)),
    ) else {
        // A snapshot always serialises to an object.
        return Vec::new();
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| !NOT_FEATURES.contains(&k.as_str()))
        .filter(|k| !same_value(a.get(*k), b.get(*k)))
        .map(|k| k.to_string())
        .collect()
}

/// Equal JSON values; an absent key equals `null` or an empty list (how snapshots omit them).
fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(xs)) => xs.is_empty(),
        _ => false,
    };
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= FLOAT_TOLERANCE * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (Some(Value::Array(xs)), Some(Value::Array(ys))) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_value(Some(x), Some(y)))
        }
        (Some(x), Some(y)) if !empty(Some(x)) || !empty(Some(y)) => x == y,
        _ => empty(a) && empty(b),
    }
}

/// Replays every logged customer's events under `request.feature_set`, writes the snapshots
/// beside the other versions' and reports which current features moved against
/// `request.serving` (read before writing, so rebuilding the serving version itself reports
/// what the replay corrected). Writing the same snapshots again replaces them: a second
/// rebuild over the same log writes the same items and reports the same figures.
pub async fn rebuild(
    store: &dyn FeatureStore,
    request: &RebuildRequest,
) -> Result<RebuildReport, PortError> {
    let mut report = RebuildReport::new(request);
    let mut moved: BTreeMap<String, usize> = BTreeMap::new();
    for customer in store.logged_customers().await? {
        let events = store.events(&customer).await?;
        let snapshots = replay_as(request.feature_set, &customer, &events)?;
        let serving = store
            .get_version(&customer, request.serving.version(), None)
            .await?;
        store.put_all(&snapshots).await?;
        report.customers_rebuilt += 1;
        report.events_replayed += snapshots.last().map_or(0, |s| s.event_count as usize);
        report.snapshots_written += snapshots.len();
        let (Some(serving), Some(current)) = (serving, snapshots.last()) else {
            continue;
        };
        report.customers_compared += 1;
        let changed = moved_features(&serving, current);
        report.customers_changed += usize::from(!changed.is_empty());
        for feature in changed {
            *moved.entry(feature).or_default() += 1;
        }
    }
    let mut features: Vec<FeatureMoved> = moved
        .into_iter()
        .map(|(feature, customers)| FeatureMoved { feature, customers })
        .collect();
    features.sort_by(|a, b| {
        b.customers
            .cmp(&a.customers)
            .then(a.feature.cmp(&b.feature))
    });
    report.features = features;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CustomerEvent;
    use crate::features::replay_as;
    use serde_json::json;

    fn survey(id: &str, day: u32, score: u8) -> CustomerEvent {
        let date = format!("2024-03-{day:02}");
        serde_json::from_value(
            json!({"id": id, "source": "test", "detail-type": "SurveySubmitted",
            "time": format!("{date}T10:00:00Z"),
            "detail": {"customerId": "c1", "satisfaction": score, "surveyDate": date}}),
        )
        .unwrap()
    }

    fn current(fs: FeatureSet, events: &[CustomerEvent]) -> CustomerFeatures {
        replay_as(fs, "c1", events).unwrap().pop().unwrap()
    }

    #[test]
    fn fs_v2_keeps_the_last_three_surveys() {
        let evs: Vec<_> = [9, 9, 8, 4, 3, 2]
            .into_iter()
            .enumerate()
            .map(|(i, s)| survey(&format!("v{i}"), i as u32 + 1, s))
            .collect();
        let v1 = current(FeatureSet::V1, &evs);
        let v2 = current(FeatureSet::V2, &evs);
        assert_eq!(v1.feature_set_version, "fs-v1");
        assert_eq!(v2.feature_set_version, "fs-v2");
        assert_eq!(v1.recent_satisfaction, [9, 8, 4, 3, 2]);
        assert_eq!(v2.recent_satisfaction, [4, 3, 2]);
        assert_eq!(v2.satisfaction_avg, Some(3.0));
        assert_eq!(v2.satisfaction_trend, Some(-1.0));
        assert_eq!(v1.satisfaction_avg, Some(5.2));
        // Resuming from a stored fs-v2 snapshot stays fs-v2 with its window.
        let next = CustomerFeatures::next(Some(&v2), &survey("v9", 20, 10)).unwrap();
        assert_eq!(next.feature_set_version, "fs-v2");
        assert_eq!(next.recent_satisfaction, [3, 2, 10]);
        assert_eq!(FeatureSet::parse("fs-v2").unwrap().satisfaction_window(), 3);
        let err = FeatureSet::parse("fs-v9").unwrap_err().to_string();
        assert!(
            err.contains("fs-v9") && err.contains("fs-v1, fs-v2"),
            "{err}"
        );
    }

    #[test]
    fn only_the_satisfaction_features_move_and_only_past_three_surveys() {
        let three: Vec<_> = (1..=3).map(|i| survey(&format!("v{i}"), i, 7)).collect();
        assert!(
            moved_features(
                &current(FeatureSet::V1, &three),
                &current(FeatureSet::V2, &three)
            )
            .is_empty()
        );
        let mut five = three.clone();
        five.push(survey("v4", 4, 2));
        five.push(survey("v5", 5, 10));
        assert_eq!(
            moved_features(
                &current(FeatureSet::V1, &five),
                &current(FeatureSet::V2, &five)
            ),
            ["recentSatisfaction", "satisfactionAvg", "satisfactionTrend"]
        );
        // Same mean and slope over 5 and over the last 3: only the list moves.
        let flat: Vec<_> = (1..=5).map(|i| survey(&format!("f{i}"), i, 6)).collect();
        assert_eq!(
            moved_features(
                &current(FeatureSet::V1, &flat),
                &current(FeatureSet::V2, &flat)
            ),
            ["recentSatisfaction"]
        );
    }

    #[test]
    fn snapshots_are_compared_at_the_same_read_time() {
        let evs = vec![survey("v1", 1, 7)];
        let old = current(FeatureSet::V1, &evs);
        let mut later = evs.clone();
        later.push(survey("v2", 20, 7));
        // The newer snapshot differs in what the second survey changed, not in tenure.
        let moved = moved_features(&old, &current(FeatureSet::V2, &later));
        assert!(!moved.contains(&"tenureDays".to_owned()), "{moved:?}");
        assert!(moved.contains(&"eventCount".to_owned()), "{moved:?}");
        assert!(moved.contains(&"satisfactionTrend".to_owned()), "{moved:?}");
    }

    #[test]
    fn absent_and_empty_values_are_equal_but_floats_must_be_close() {
        assert!(same_value(None, Some(&Value::Null)));
        assert!(same_value(None, Some(&json!([]))));
        assert!(!same_value(None, Some(&json!("accepted"))));
        assert!(same_value(Some(&json!(0.1 + 0.2)), Some(&json!(0.3))));
        assert!(!same_value(Some(&json!(4.0)), Some(&json!(4.001))));
        assert!(!same_value(Some(&json!([1, 2])), Some(&json!([2, 1]))));
    }
}
