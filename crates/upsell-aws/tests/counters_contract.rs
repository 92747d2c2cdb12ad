//! The one VersionCounters contract (`upsell_core::counters_contract`) on DynamoDB, over HTTP
//! against moto server (`UPSELL_MOTO_ENDPOINT`; skipped, saying so, when unset; failing when
//! `UPSELL_REQUIRE_MOTO=1`), and the SQLite and DynamoDB counters compared after the same run
//! of terminal records. Each case gets its own table.

mod common;

use chrono::Utc;
use common::{builder, moto_endpoint, unique};
use semver::Version;
use upsell_aws::{DynamoVersionCounters, TableKind, tables};
use upsell_core::agent::AgentRef;
use upsell_core::counters::{VersionCounters, record_deltas};
use upsell_core::message::{AttemptRecord, JudgeVerdict, MessageRecord, MessageStatus, TokenUsage};
use upsell_sqlite::SqliteVersionCounters;

/// Counters on a fresh table, or `None` without moto.
async fn fresh() -> Option<DynamoVersionCounters> {
    let endpoint = moto_endpoint("version counters on DynamoDB")?;
    let ctx = builder(&endpoint)
        .version_counters_table(unique("counters"))
        .build()
        .await;
    let counters = ctx.version_counters().unwrap();
    tables::create_table(ctx.dynamodb(), counters.table(), TableKind::VersionCounters)
        .await
        .unwrap();
    Some(counters)
}

mod contract {
    use super::fresh;
    upsell_core::version_counters_contract!(fresh());
}

fn agent(id: &str, v: &str) -> AgentRef {
    AgentRef {
        agent_id: id.into(),
        version: Version::parse(v).unwrap(),
    }
}

/// A run's terminal records: production and canary generators, approvals, rejections after
/// several attempts, failures before and after the judge ran, skips, latencies from 3 ms to
/// over an hour.
fn run() -> Vec<(MessageRecord, f64, f64)> {
    let generators = [
        agent("upsell-generator", "1.0.0"),
        agent("upsell-generator", "1.1.0"),
    ];
    let judge = agent("upsell-judge", "1.0.0");
    (0..40u32)
        .map(|i| {
            let status = match i % 7 {
                0..=2 => MessageStatus::Approved,
                3 | 4 => MessageStatus::Rejected,
                5 => MessageStatus::Failed,
                _ => MessageStatus::Skipped,
            };
            let attempts = match status {
                MessageStatus::Approved => 1 + i % 2,
                MessageStatus::Rejected => 3,
                MessageStatus::Failed => i % 2,
                MessageStatus::Skipped => 0,
            };
            let judge_ran = attempts > 0;
            let record = MessageRecord {
                event_id: format!("evt-{i}"),
                customer_id: format!("c-{i}"),
                status,
                message: None,
                recommended_service: None,
                offering: None,
                generator: if status == MessageStatus::Skipped {
                    AgentRef::placeholder("upsell-generator")
                } else {
                    generators[(i % 4 == 0) as usize].clone()
                },
                judge: if judge_ran {
                    judge.clone()
                } else {
                    AgentRef::placeholder("upsell-judge")
                },
                attempts: (1..=attempts)
                    .map(|a| AttemptRecord {
                        attempt: a,
                        message: "m".into(),
                        verdict: JudgeVerdict {
                            score: ((i + a) % 11) as u8,
                            approved: false,
                            reasons: vec![],
                            feedback: String::new(),
                        },
                        generator_usage: TokenUsage::default(),
                        judge_usage: TokenUsage::default(),
                    })
                    .collect(),
                total_usage: TokenUsage::default(),
                cost_usd: 0.0,
                latency_ms: 3 * 3u64.pow(i % 15),
                error: None,
                created_at: Utc::now(),
            };
            let gen_cost = 0.000_37 * f64::from(attempts.max(1)) + f64::from(i) * 1e-7;
            let judge_cost = if judge_ran {
                0.000_21 * f64::from(attempts)
            } else {
                0.0
            };
            (record, gen_cost, judge_cost)
        })
        .collect()
}

#[tokio::test]
async fn sqlite_and_dynamodb_agree_after_the_same_run() {
    let Some(dynamo) = fresh().await else {
        return;
    };
    let sqlite = SqliteVersionCounters::in_memory().unwrap();
    let stores: [&dyn VersionCounters; 2] = [&sqlite, &dynamo];
    for (record, gen_cost, judge_cost) in run() {
        for (a, d) in record_deltas(&record, gen_cost, judge_cost) {
            for store in stores {
                store.add(&a, &d).await.unwrap();
            }
        }
    }
    for agent_id in ["upsell-generator", "upsell-judge"] {
        let local = sqlite.versions(agent_id).await.unwrap();
        let aws = dynamo.versions(agent_id).await.unwrap();
        assert_eq!(local, aws, "{agent_id}");
        assert!(!local.is_empty(), "{agent_id}: nothing counted");
        for (_, c) in &local {
            assert!(c.records() > 0 && c.cost_nano_usd > 0, "{c:?}");
        }
    }
    // The run reached every kind of count on both sides.
    let canary = dynamo
        .read(&agent("upsell-generator", "1.1.0"))
        .await
        .unwrap();
    let production = dynamo
        .read(&agent("upsell-generator", "1.0.0"))
        .await
        .unwrap();
    let judge = dynamo.read(&agent("upsell-judge", "1.0.0")).await.unwrap();
    for c in [&canary, &production] {
        assert!(c.approvals > 0 && c.rejections > 0 && c.errors > 0, "{c:?}");
        assert!(c.score_count > 0 && c.latency_percentile_ms(0.99).is_some());
    }
    // Failures before the judge ran count for the generator only.
    assert!(judge.records() < canary.records() + production.records());
    assert_eq!(
        judge,
        sqlite.read(&agent("upsell-judge", "1.0.0")).await.unwrap()
    );
}
