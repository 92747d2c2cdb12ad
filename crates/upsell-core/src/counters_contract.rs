//! The contract of [`VersionCounters`], written once and run against every adapter (SQLite in
//! `crates/upsell-sqlite`, DynamoDB on moto in `crates/upsell-aws`) with
//! [`version_counters_contract!`](crate::version_counters_contract). Behind the `contract`
//! feature; adapters enable it for their tests only.
//!
//! Each case takes a fresh, empty store and panics on the first broken promise. The expected
//! figures are [`VersionCounts::apply`] folded over the same deltas: the adapters must hold
//! exactly what the core rules compute.

use semver::Version;

use crate::agent::AgentRef;
use crate::counters::{CounterDelta, LATENCY_BUCKETS, VersionCounters, VersionCounts};

/// Makes one `#[tokio::test]` per contract case. `$make` is an async expression yielding
/// `Option<impl VersionCounters>`: a fresh, empty store (`None`: the backend is unavailable
/// and the test says it is skipped; a backend the CI requires must panic instead).
#[macro_export]
macro_rules! version_counters_contract {
    ($make:expr) => {
        $crate::version_counters_contract!(@cases $make;
            an_uncounted_version_reads_zero,
            adds_sum_per_version_and_versions_list_in_semver_order,
            every_latency_bucket_round_trips);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(store) = $make.await else { return };
                $crate::counters_contract::$case(&store).await;
            }
        )*
    };
}

fn agent(id: &str, version: &str) -> AgentRef {
    AgentRef {
        agent_id: id.into(),
        version: Version::parse(version).expect("version"),
    }
}

/// A fixed, varied sequence of deltas: every field, several buckets, costs that do not fit
/// in 32 bits.
pub fn sample_deltas() -> Vec<(AgentRef, CounterDelta)> {
    let versions = [
        agent("upsell-generator", "1.9.0"),
        agent("upsell-generator", "1.10.0"),
        agent("upsell-judge", "1.0.0"),
    ];
    (0..24u64)
        .map(|i| {
            let delta = CounterDelta {
                approvals: u64::from(i % 3 == 0),
                rejections: u64::from(i % 3 == 1),
                errors: u64::from(i % 3 == 2),
                score_sum: (i * 7) % 31,
                score_count: i % 4,
                cost_nano_usd: 4_000_000_000 + i * 1_234_567,
                latency_bucket: (i % 5 != 4)
                    .then_some(((i * 13) % LATENCY_BUCKETS as u64) as usize),
                responses: [i % 2, (i / 2) % 2, i % 5, u64::from(i % 7 == 0)],
            };
            (versions[(i % 3) as usize].clone(), delta)
        })
        .collect()
}

/// The counts the core rules give for `deltas` of `agent`.
pub fn expected(deltas: &[(AgentRef, CounterDelta)], agent: &AgentRef) -> VersionCounts {
    let mut c = VersionCounts::default();
    for (_, d) in deltas.iter().filter(|(a, _)| a == agent) {
        c.apply(d);
    }
    c
}

/// Nothing counted reads as all zeros with every bucket; an unknown agent has no versions.
pub async fn an_uncounted_version_reads_zero(store: &impl VersionCounters) {
    let c = store
        .read(&agent("upsell-generator", "9.9.9"))
        .await
        .unwrap();
    assert_eq!(c, VersionCounts::default());
    assert_eq!(c.latency.len(), LATENCY_BUCKETS);
    assert!(store.versions("nobody").await.unwrap().is_empty());
}

/// Adds accumulate per version, exactly as [`VersionCounts::apply`] says; `versions` lists an
/// agent's versions in semver order (1.9.0 before 1.10.0) and no other agent's.
pub async fn adds_sum_per_version_and_versions_list_in_semver_order(store: &impl VersionCounters) {
    let deltas = sample_deltas();
    for (a, d) in &deltas {
        store.add(a, d).await.unwrap();
    }
    for a in [
        agent("upsell-generator", "1.9.0"),
        agent("upsell-generator", "1.10.0"),
        agent("upsell-judge", "1.0.0"),
    ] {
        assert_eq!(store.read(&a).await.unwrap(), expected(&deltas, &a), "{a}");
    }
    let listed = store.versions("upsell-generator").await.unwrap();
    let names: Vec<String> = listed.iter().map(|(v, _)| v.to_string()).collect();
    assert_eq!(names, ["1.9.0", "1.10.0"]);
    assert_eq!(
        listed[1].1,
        expected(&deltas, &agent("upsell-generator", "1.10.0"))
    );
    assert_eq!(store.versions("upsell-judge").await.unwrap().len(), 1);
}

/// The first, a middle and the overflow bucket are kept apart.
pub async fn every_latency_bucket_round_trips(store: &impl VersionCounters) {
    let a = agent("upsell-generator", "2.0.0");
    let mut want = VersionCounts::default();
    for b in 0..LATENCY_BUCKETS {
        for _ in 0..=(b % 3) {
            let d = CounterDelta {
                latency_bucket: Some(b),
                ..CounterDelta::default()
            };
            store.add(&a, &d).await.unwrap();
            want.apply(&d);
        }
    }
    assert_eq!(store.read(&a).await.unwrap(), want);
}
