//! Agent rollout end to end, locally: `state-machines/agent-rollout.asl.json` through the local
//! runtime of `sam/template.yaml`, starting the real evaluation state machine (`.sync:2`), the
//! real workers and the offline model, with simulated live traffic through the per-event
//! workflow, on the virtual clock.
//!
//! A candidate whose own agent folder points its model at a stub that holds up during the
//! evaluation and then writes vague messages for most conversations (`stub:degrade`) must pass
//! the evaluation and be rolled back at 10%; a faithful copy of production must reach 100% and
//! be promoted. The registry history must show every step, with the execution as actor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use semver::Version;
use serde_json::Value;
use upsell_asl::{VirtualClock, virtual_runtime};
use upsell_cli::app::{AppOptions, BUS_JOURNAL_FILE, LocalApp};
use upsell_cli::rollout::{RolloutRequest, RolloutRun, Traffic, run_rollout};
use upsell_core::agent::{AgentSpec, AgentStatus};
use upsell_core::ports::{AgentRegistry, MessageQuery, MessageStore};
use upsell_core::registry::ActorKind;
use upsell_core::rollout::HealthParams;
use upsell_models::seed::load_agent_dir;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn options(home: &Path) -> AppOptions {
    let mut o = AppOptions::new(home).with_repo_root(&repo_root());
    o.history = upsell_sqlite::HistoryLevel::Summary;
    o
}

/// A copy of the seed generator as `version` with `model_id`, as a folder would hold it.
fn candidate(version: &str, model_id: &str) -> AgentSpec {
    let mut spec = load_agent_dir(&repo_root().join("agents/upsell-generator/1.0.0")).unwrap();
    spec.version = Version::parse(version).unwrap();
    spec.status = AgentStatus::Draft;
    spec.traffic_weight = 0;
    spec.description = format!("rollout test {version}");
    spec.model_id = model_id.to_owned();
    spec
}

fn request(spec: AgentSpec) -> RolloutRequest {
    RolloutRequest {
        agent_id: spec.agent_id.clone(),
        candidate: spec.version.to_string(),
        spec: Some(spec),
        dataset: repo_root().join("examples/events.jsonl"),
        dataset_sample: Some(120),
        steps: vec![10, 50],
        wait_seconds: 600,
        looks_per_step: 3,
        thresholds: HealthParams {
            min_sample_per_arm: 30,
            ..HealthParams::default()
        },
        traffic: Some(Traffic {
            customers: 2500,
            seed: Some(11),
            events_per_look: 900,
            batches_per_look: 3,
        }),
    }
}

fn roll_out(home: &Path, spec: AgentSpec) -> RolloutRun {
    let rt = virtual_runtime().unwrap();
    rt.block_on(async {
        let mut opts = options(home);
        opts.clock = Arc::new(VirtualClock::new(chrono::Utc::now()));
        run_rollout(opts, &request(spec)).await.unwrap()
    })
}

fn stored(home: &Path, version: &str) -> AgentSpec {
    let rt = virtual_runtime().unwrap();
    rt.block_on(async {
        let app = LocalApp::open(options(home)).await.unwrap();
        app.registry
            .get("upsell-generator", &Version::parse(version).unwrap())
            .await
            .unwrap()
    })
}

#[test]
fn a_candidate_that_degrades_under_live_traffic_is_rolled_back_at_10_percent() {
    let home = tempfile::tempdir().unwrap();
    // Healthy for its first 150 calls (the evaluation's 120 events need at most 120), then
    // vague messages for 60% of conversations.
    let run = roll_out(
        home.path(),
        candidate("1.1.0", "stub:degrade?after=150&share=0.6"),
    );
    let e = &run.execution;
    assert_eq!(e.status, "FAILED", "{e:#?}");
    assert_eq!(e.error.as_deref(), Some("RolloutRolledBack"), "{e:#?}");
    let steps: Vec<(Option<AgentStatus>, AgentStatus, u8)> = run
        .history
        .iter()
        .map(|r| (r.from, r.to, r.to_weight))
        .collect();
    assert_eq!(
        steps,
        vec![
            (None, AgentStatus::Draft, 0),
            (Some(AgentStatus::Draft), AgentStatus::Evaluating, 0),
            (Some(AgentStatus::Evaluating), AgentStatus::Canary, 10),
            (Some(AgentStatus::Canary), AgentStatus::RolledBack, 0),
        ],
        "{:#?}",
        run.history
    );
    for r in &run.history {
        assert_eq!(r.actor.kind, ActorKind::Execution);
        assert_eq!(r.actor.id, e.execution_arn);
    }
    let last = run.history.last().unwrap();
    assert!(
        last.reason.contains("approval rate"),
        "the reason names the failed check: {}",
        last.reason
    );
    let spec = stored(home.path(), "1.1.0");
    assert_eq!(
        (spec.status, spec.traffic_weight),
        (AgentStatus::RolledBack, 0)
    );
    assert_eq!(stored(home.path(), "1.0.0").status, AgentStatus::Production);

    // The alert on the bus, valid against its committed schema.
    let journal = std::fs::read_to_string(home.path().join(BUS_JOURNAL_FILE)).unwrap();
    let events: Vec<Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["detail-type"] == "AgentRolloutRolledBack")
        .collect();
    assert_eq!(events.len(), 1, "{journal}");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root().join("schemas/events/out/AgentRolloutRolledBack.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&events[0])
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{:#}", events[0]);
    assert_eq!(events[0]["detail"]["version"], "1.1.0");
    assert_eq!(events[0]["detail"]["executionArn"], e.execution_arn);
    assert!(run.traffic.events > 0);
}

#[test]
fn a_good_candidate_reaches_100_percent_and_is_promoted() {
    let home = tempfile::tempdir().unwrap();
    let run = roll_out(home.path(), candidate("1.2.0", "amazon.nova-pro-v1:0"));
    let e = &run.execution;
    assert_eq!(e.status, "SUCCEEDED", "{e:#?}\n{:#?}", run.history);
    let steps: Vec<(String, Option<AgentStatus>, AgentStatus, u8)> = run
        .history
        .iter()
        .map(|r| (r.version.to_string(), r.from, r.to, r.to_weight))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("1.2.0".into(), None, AgentStatus::Draft, 0),
            (
                "1.2.0".into(),
                Some(AgentStatus::Draft),
                AgentStatus::Evaluating,
                0
            ),
            (
                "1.2.0".into(),
                Some(AgentStatus::Evaluating),
                AgentStatus::Canary,
                10
            ),
            (
                "1.2.0".into(),
                Some(AgentStatus::Canary),
                AgentStatus::Canary,
                50
            ),
            (
                "1.2.0".into(),
                Some(AgentStatus::Canary),
                AgentStatus::Production,
                100
            ),
            (
                "1.0.0".into(),
                Some(AgentStatus::Production),
                AgentStatus::Retired,
                0
            ),
        ],
        "{:#?}",
        run.history
    );
    assert!(run.history.iter().all(|r| r.actor.id == e.execution_arn));
    assert_eq!(stored(home.path(), "1.2.0").status, AgentStatus::Production);
    assert_eq!(stored(home.path(), "1.0.0").status, AgentStatus::Retired);

    // Routing stayed sticky: a customer's generator version changed at most once, from
    // production to the canary, never back.
    let rt = virtual_runtime().unwrap();
    let records = rt.block_on(async {
        let app = LocalApp::open(options(home.path())).await.unwrap();
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = app
                .messages
                .list(&MessageQuery {
                    after_event_id: after.clone(),
                    limit: 1000,
                    ..MessageQuery::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|r| r.event_id.clone());
            all.extend(page);
        }
        all
    });
    let mut by_customer: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for r in records.iter().filter(|r| !r.generator.is_placeholder()) {
        by_customer
            .entry(r.customer_id.clone())
            .or_default()
            .push((r.created_at, r.generator.version.clone()));
    }
    let mut switched = 0;
    for (customer, mut seq) in by_customer {
        seq.sort();
        let changes = seq.windows(2).filter(|w| w[0].1 != w[1].1).count();
        assert!(changes <= 1, "{customer}: {seq:?}");
        if changes == 1 {
            assert!(seq[0].1 < seq[seq.len() - 1].1, "{customer}: {seq:?}");
            switched += 1;
        }
    }
    assert!(switched > 0, "some customers moved to the canary");
}
