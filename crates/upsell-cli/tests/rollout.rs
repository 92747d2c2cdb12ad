//! `upsell rollout start|status|abort` and `upsell rollback AGENT` as an operator runs them:
//! a faithful copy of production promoted step by step on the virtual clock, a rollout in
//! progress aborted from a second process, and the errors for what cannot be rolled out or
//! back. The evaluation and the simulated traffic are kept small (`--sample`,
//! `--events-per-look`, `--min-sample`); `integration-tests/tests/rollout.rs` runs the larger
//! ends, including the automatic rollback.

// Only `stdout_ok` is used here.
#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::stdout_ok;
use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn command(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upsell"));
    cmd.current_dir(repo_root())
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("UPSELL_HOME")
        .env_remove("UPSELL_TEMPLATE")
        .env_remove("UPSELL_KB_DIR")
        .env("UPSELL_ACTOR", "dana")
        .stdin(Stdio::null());
    cmd
}

fn upsell(home: &Path, args: &[&str]) -> Output {
    command(home, args)
        .output()
        .expect("the upsell binary runs")
}

/// The command's stderr; fails unless it exited 1 (an error, not a usage error or a crash).
fn stderr_failed(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// The seed generator's folder as `version` (draft, weight 0): a faithful copy of production.
fn copy_of_production(dir: &Path, version: &str) -> PathBuf {
    let src = repo_root().join("agents/upsell-generator/1.0.0");
    let out = dir.join(format!("upsell-generator-{version}"));
    std::fs::create_dir_all(&out).unwrap();
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("agent.json")).unwrap()).unwrap();
    spec["version"] = version.into();
    spec["status"] = "draft".into();
    spec["trafficWeight"] = 0.into();
    std::fs::write(out.join("agent.json"), spec.to_string()).unwrap();
    for f in ["system.jinja", "user.jinja"] {
        std::fs::copy(src.join(f), out.join(f)).unwrap();
    }
    out
}

/// `rollout start TARGET` with a small evaluation, plus `extra` flags.
fn start_args<'a>(target: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["rollout", "start", target, "--sample", "60"];
    args.extend_from_slice(extra);
    args
}

/// Small traffic on the virtual clock: 300 events per look, 3 looks per step, 20 records per
/// arm before a decision.
const SMALL_TRAFFIC: [&str; 10] = [
    "--events-per-look",
    "300",
    "--traffic-customers",
    "900",
    "--traffic-seed",
    "5",
    "--looks-per-step",
    "3",
    "--min-sample",
    "20",
];

fn status(home: &Path) -> Value {
    let out = stdout_ok(&upsell(
        home,
        &["rollout", "status", "upsell-generator", "--json"],
    ));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// (version, from, to, weight) of each step in `rollout status --json`.
fn steps(status: &Value) -> Vec<(String, Value, String, u64)> {
    status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().to_owned(),
                r["from"].clone(),
                r["to"].as_str().unwrap().to_owned(),
                r["toWeight"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn bus_events(home: &Path, detail_type: &str) -> Vec<Value> {
    std::fs::read_to_string(home.join("bus-events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["detail-type"] == detail_type)
        .collect()
}

#[test]
fn start_promotes_a_copy_of_production_and_status_shows_every_step() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let dir = copy_of_production(work.path(), "1.1.0");
    let out = stdout_ok(&upsell(
        &home,
        &start_args(dir.to_str().unwrap(), &SMALL_TRAFFIC),
    ));
    let first = out.lines().next().unwrap();
    assert!(first.contains(" SUCCEEDED in "), "{out}");
    assert!(first.contains("simulated events"), "{out}");
    for line in [
        "upsell-generator@1.1.0 (new) -> draft (0% -> 0%): registered by a rollout",
        "upsell-generator@1.1.0 draft -> evaluating (0% -> 0%)",
        "upsell-generator@1.1.0 evaluating -> canary (0% -> 10%): evaluation rollout-",
        "upsell-generator@1.1.0 canary -> canary (10% -> 50%): health check passed at 10%",
        "upsell-generator@1.1.0 canary -> production (50% -> 100%): health check passed at 50%",
        "upsell-generator@1.0.0 production -> retired (100% -> 0%): superseded by upsell-generator@1.1.0",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    let s = status(&home);
    assert_eq!(s["productionVersion"], "1.1.0", "{s:#}");
    assert_eq!(s["canaryVersion"], Value::Null, "{s:#}");
    let arn = s["lastRollout"].as_str().unwrap();
    assert!(first.starts_with(arn), "{first} / {arn}");
    assert_eq!(
        steps(&s),
        vec![
            ("1.1.0".into(), Value::Null, "draft".into(), 0),
            ("1.1.0".into(), "draft".into(), "evaluating".into(), 0),
            ("1.1.0".into(), "evaluating".into(), "canary".into(), 10),
            ("1.1.0".into(), "canary".into(), "canary".into(), 50),
            ("1.1.0".into(), "canary".into(), "production".into(), 100),
            ("1.0.0".into(), "production".into(), "retired".into(), 0),
        ],
        "{s:#}"
    );
    for r in s["steps"].as_array().unwrap() {
        assert_eq!(r["actor"]["kind"], "execution", "{r:#}");
        assert_eq!(r["actor"]["id"], arn, "{r:#}");
    }
    let text = stdout_ok(&upsell(&home, &["rollout", "status", "upsell-generator"]));
    assert!(
        text.starts_with("upsell-generator: production 1.1.0, canary none\n"),
        "{text}"
    );
    assert!(text.contains(&format!("last rollout: {arn}")), "{text}");
    assert_eq!(text.lines().count(), 2 + 6, "{text}");

    // Nothing is in canary after a promotion: a rollback has nothing to take out, says so, and
    // changes nothing.
    let e = stderr_failed(&upsell(&home, &["rollback", "upsell-generator"]));
    assert!(
        e.contains("upsell-generator has no canary to roll back"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    let after = status(&home);
    assert_eq!(after["productionVersion"], "1.1.0", "{after:#}");
    assert_eq!(steps(&after), steps(&s), "{after:#}");
    assert!(bus_events(&home, "AgentRolloutRolledBack").is_empty());

    // A promoted version cannot be rolled out again.
    let e = stderr_failed(&upsell(
        &home,
        &start_args("upsell-generator@1.1.0", &["--events-per-look", "0"]),
    ));
    assert!(e.contains("upsell-generator@1.1.0 is production"), "{e}");
}

/// Waits until `rollout status` shows `version` as canary (the rollout passed its evaluation),
/// or fails after 10 minutes, or as soon as the rollout process has ended.
fn wait_for_canary(home: &Path, version: &str, rollout: &mut Child) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let s = status(home);
        if s["canaryVersion"] == version {
            return s;
        }
        if let Some(code) = rollout.try_wait().unwrap() {
            panic!("the rollout ended ({code}) before {version} was canary");
        }
        assert!(
            Instant::now() < deadline,
            "{version} not canary within 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn abort_rolls_back_a_rollout_in_progress_and_it_ends_aborted() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let dir = copy_of_production(work.path(), "1.1.0");
    // The home is set up (seed agents, knowledge-base index) before the rollout runs, so that
    // the status reads below never race its first-run indexing.
    assert_eq!(status(&home)["productionVersion"], "1.0.0");
    // Real time, a look every second and no traffic: the canary stays at 10% (each look
    // continues for want of records) for 10 minutes unless someone steps in.
    let mut rollout = command(
        &home,
        &start_args(
            dir.to_str().unwrap(),
            &[
                "--clock",
                "real",
                "--wait-seconds",
                "1",
                "--looks-per-step",
                "600",
                "--events-per-look",
                "0",
            ],
        ),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("the upsell binary runs");
    let running = wait_for_canary(&home, "1.1.0", &mut rollout);
    assert_eq!(running["canaryWeight"], 10, "{running:#}");
    let arn = running["lastRollout"].as_str().unwrap().to_owned();

    // A second rollout of the agent is refused while the first one's canary serves.
    let other = copy_of_production(work.path(), "1.2.0");
    let e = stderr_failed(&upsell(
        &home,
        &start_args(other.to_str().unwrap(), &["--events-per-look", "0"]),
    ));
    assert!(
        e.contains("upsell-generator@1.1.0 is already in a canary rollout"),
        "{e}"
    );
    let e = stderr_failed(&upsell(
        &home,
        &start_args("upsell-generator@1.1.0", &["--events-per-look", "0"]),
    ));
    assert!(e.contains("upsell-generator@1.1.0 is canary"), "{e}");

    let out = stdout_ok(&upsell(
        &home,
        &[
            "rollout",
            "abort",
            "upsell-generator",
            "--reason",
            "complaints from the call centre",
        ],
    ));
    assert!(out.starts_with("rolled back by execution "), "{out}");
    assert!(
        out.contains(
            "upsell-generator@1.1.0 canary -> rolled-back (10% -> 0%): rolled back: complaints from the call centre"
        ),
        "{out}"
    );

    // The running rollout finds its candidate moved at its next look and ends as aborted.
    let ended = rollout.wait_with_output().unwrap();
    let e = stderr_failed(&ended);
    assert!(
        e.contains("upsell-generator@1.1.0 was not promoted: RolloutAborted"),
        "{e}"
    );
    let printed = String::from_utf8(ended.stdout).unwrap();
    assert!(
        printed.starts_with(&format!("{arn} FAILED in ")),
        "{printed}"
    );

    let s = status(&home);
    assert_eq!(s["productionVersion"], "1.0.0", "{s:#}");
    assert_eq!(s["canaryVersion"], Value::Null, "{s:#}");
    assert_eq!(s["canaryWeight"], 0, "{s:#}");
    // The last rollout is now the abort's execution, whose one step is the rollback.
    let abort_arn = s["lastRollout"].as_str().unwrap();
    assert_ne!(abort_arn, arn);
    assert_eq!(
        steps(&s),
        vec![("1.1.0".into(), "canary".into(), "rolled-back".into(), 0)],
        "{s:#}"
    );
    assert_eq!(
        s["steps"][0]["reason"],
        "rolled back: complaints from the call centre"
    );
    let shown = stdout_ok(&upsell(
        &home,
        &["agents", "show", "upsell-generator@1.1.0", "--json"],
    ));
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "rolled-back", "{shown:#}");
    assert_eq!(shown["trafficWeight"], 0, "{shown:#}");

    let events = bus_events(&home, "AgentRolloutRolledBack");
    assert_eq!(events.len(), 1, "{events:#?}");
    let d = &events[0]["detail"];
    assert_eq!(d["agentId"], "upsell-generator");
    assert_eq!(d["version"], "1.1.0");
    assert_eq!(d["productionVersion"], "1.0.0");
    assert_eq!(
        (d["fromStatus"].clone(), d["fromWeight"].clone()),
        ("canary".into(), 10.into())
    );
    assert_eq!(
        d["reasons"],
        serde_json::json!(["complaints from the call centre"])
    );
    assert_eq!(d["executionArn"], abort_arn);

    // Nothing is running now: a second abort says there is nothing to take out.
    let e = stderr_failed(&upsell(&home, &["rollout", "abort", "upsell-generator"]));
    assert!(
        e.contains("upsell-generator has no canary to roll back"),
        "{e}"
    );
    assert_eq!(bus_events(&home, "AgentRolloutRolledBack").len(), 1);
}

#[test]
fn bad_targets_get_one_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let quiet = ["--events-per-look", "0"];

    let e = stderr_failed(&upsell(&home, &start_args("no-such-folder", &quiet)));
    assert!(
        e.contains("\"no-such-folder\" is neither an agent folder nor ID@VERSION"),
        "{e}"
    );
    let e = stderr_failed(&upsell(
        &home,
        &start_args("upsell-generator@9.9.9", &quiet),
    ));
    assert!(
        e.contains("upsell-generator@9.9.9 was not promoted: NotFound"),
        "{e}"
    );
    assert!(e.contains("9.9.9"), "{e}");
    let e = stderr_failed(&upsell(&home, &start_args("no-such-agent@1.0.0", &quiet)));
    assert!(
        e.contains("no-such-agent@1.0.0 was not promoted: NotFound"),
        "{e}"
    );
    let e = stderr_failed(&upsell(&home, &start_args("upsell-generator@one", &quiet)));
    assert!(e.contains("version \"one\""), "{e}");

    // Nothing to abort or roll back: no agent, or an agent with no canary.
    let nothing: [&[&str]; 3] = [
        &["rollout", "abort", "upsell-generator"],
        &["rollout", "abort", "no-such-agent"],
        &["rollback", "no-such-agent", "--reason", "x"],
    ];
    for args in nothing {
        let e = stderr_failed(&upsell(&home, args));
        assert!(e.contains("has no canary to roll back"), "{args:?}: {e}");
    }
    assert!(bus_events(&home, "AgentRolloutRolledBack").is_empty());
    let s = status(&home);
    assert_eq!(s["productionVersion"], "1.0.0", "{s:#}");
}
