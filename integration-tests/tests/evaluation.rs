//! Agent evaluation end to end, locally: `state-machines/agent-evaluation.asl.json` through the
//! local runtime of `sam/template.yaml` (the Distributed Map reads the dataset through the
//! local ItemReader), the real workers and the offline model, on the sample events. An unchanged
//! copy of production must pass; a candidate whose template breaks a brand rule must fail.

use std::path::{Path, PathBuf};

use semver::Version;
use upsell_cli::app::{AppOptions, LocalApp};
use upsell_cli::evaluation::{EvalRequest, EvalRun, evaluate};
use upsell_core::agent::{AgentSpec, AgentStatus};
use upsell_core::evaluation::EvalMode;
use upsell_core::ports::AgentRegistry;
use upsell_core::registry::{Actor, ActorKind, RegisterRequest};
use upsell_models::seed::load_agent_dir;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn options(home: &Path) -> AppOptions {
    AppOptions::new(home).with_repo_root(&repo_root())
}

/// A copy of the seed agent `dir` as `version`, status evaluating, with `edit` applied to its
/// system template.
fn candidate(dir: &str, version: &str, edit: impl Fn(&str) -> String) -> AgentSpec {
    let mut spec = load_agent_dir(&repo_root().join(dir)).unwrap();
    spec.version = Version::parse(version).unwrap();
    spec.status = AgentStatus::Evaluating;
    spec.traffic_weight = 0;
    spec.description = format!("evaluation test {version}");
    spec.prompt.system = edit(&spec.prompt.system);
    spec
}

fn register(rt: &tokio::runtime::Runtime, home: &Path, specs: &[AgentSpec]) {
    rt.block_on(async {
        let app = LocalApp::open(options(home)).await.unwrap();
        let request = RegisterRequest {
            reason: "evaluation test candidate".into(),
            actor: Actor {
                kind: ActorKind::User,
                id: "integration-test".into(),
            },
        };
        for s in specs {
            app.registry.register(s, &request).await.unwrap();
        }
    });
}

fn eval(rt: &tokio::runtime::Runtime, home: &Path, candidate: &str, sample: usize) -> EvalRun {
    let req = EvalRequest {
        candidate: candidate.into(),
        baseline: None,
        dataset: repo_root().join("examples/events.jsonl"),
        sample: Some(sample),
    };
    rt.block_on(evaluate(options(home), &req, |_, _| {}))
        .unwrap()
}

#[test]
fn an_unchanged_copy_of_production_passes_and_a_brand_breaking_template_fails() {
    let home = tempfile::tempdir().unwrap();
    let rt = runtime();
    let gen_dir = "agents/upsell-generator/1.0.0";
    register(
        &rt,
        home.path(),
        &[
            candidate(gen_dir, "1.1.0", str::to_owned),
            // The sign-off now pushes: "act now" is a banned phrase of the brand rules.
            candidate(gen_dir, "1.2.0", |s| {
                let out = s.replace(
                    "\"signOff\": \"The Greenway crew\"",
                    "\"signOff\": \"Act now, the Greenway crew\"",
                );
                assert_ne!(out, s, "the seed template's style changed: fix this test");
                out
            }),
        ],
    );

    let copy = eval(&rt, home.path(), "upsell-generator@1.1.0", 200);
    let r = &copy.report;
    assert_eq!(r.subject.mode, EvalMode::Generator);
    assert_eq!(r.subject.baseline, "upsell-generator@1.0.0");
    assert_eq!(r.subject.shared, "upsell-judge@1.0.0");
    assert!(r.decision.pass, "{:#?}", r.decision);
    assert!(r.paired_cases >= 30, "{r:#?}");
    assert_eq!(
        r.events,
        200 + copy.invalid.len() as u64,
        "every sampled event and every invalid line is accounted for"
    );
    assert_eq!(
        r.paired_cases + r.skipped.values().sum::<u64>(),
        r.events,
        "{:?}",
        r.skipped
    );
    assert!(
        r.skipped.get("invalid-event").copied().unwrap_or(0) > 0,
        "the sample file's malformed lines are counted: {:?}",
        r.skipped
    );
    assert_eq!(r.candidate.approval, r.baseline.approval);
    assert_eq!(r.approval_difference.p_value, 1.0);
    assert!(r.disagreements.is_empty());
    assert_eq!(r.candidate.errors, 0);
    assert!(r.candidate.approval.count > 0, "{:?}", r.candidate);
    for f in ["report.json", "report.md", "report.html", "dataset.jsonl"] {
        assert!(copy.folder.join(f).is_file(), "{f} missing");
    }
    let html = std::fs::read_to_string(copy.folder.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("PASS"));
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("<script"),
        "the HTML report is self-contained"
    );
    // The candidate's figures are recorded in the registry.
    rt.block_on(async {
        let app = LocalApp::open(options(home.path())).await.unwrap();
        let spec = app
            .registry
            .get("upsell-generator", &Version::new(1, 1, 0))
            .await
            .unwrap();
        let p = spec.performance.expect("performance recorded");
        assert_eq!(p.sample_size, r.paired_cases);
        assert!((p.approval_rate - r.candidate.approval.value).abs() < 1e-12);
    });

    let broken = eval(&rt, home.path(), "upsell-generator@1.2.0", 200);
    let r = &broken.report;
    assert!(!r.decision.pass, "{:#?}", r.decision);
    assert!(
        r.decision.reasons[0].contains("only the candidate broke a brand rule"),
        "{:?}",
        r.decision.reasons
    );
    assert_eq!(r.candidate.brand_failures, r.paired_cases);
    assert_eq!(r.candidate.approval.count, 0);
    assert!(
        r.rejection_reasons
            .iter()
            .any(|x| x.reason == "too-pushy" && x.candidate == r.paired_cases && x.baseline == 0),
        "{:?}",
        r.rejection_reasons
    );
    assert!(!r.disagreements.is_empty());
    let md = std::fs::read_to_string(broken.folder.join("report.md")).unwrap();
    assert!(md.contains("FAIL") && md.contains("Act now"));
}

#[test]
fn a_judge_candidate_is_measured_by_agreement_with_the_production_judge() {
    let home = tempfile::tempdir().unwrap();
    let rt = runtime();
    register(
        &rt,
        home.path(),
        &[candidate(
            "agents/upsell-judge/1.0.0",
            "1.1.0",
            str::to_owned,
        )],
    );
    let run = eval(&rt, home.path(), "upsell-judge@1.1.0", 120);
    let r = &run.report;
    assert_eq!(r.subject.mode, EvalMode::Judge);
    assert_eq!(r.subject.shared, "upsell-generator@1.0.0");
    let a = r.agreement.as_ref().expect("judge mode reports agreement");
    assert_eq!(a.with_baseline.value, 1.0);
    assert_eq!(a.approved_brand_failures, 0);
    assert!(r.decision.pass, "{:#?}", r.decision);
}
