//! `upsell agents` as a user runs it: register a version from a folder, look at it, compare it,
//! roll it out and read the history; locally, and (feature `aws`) on a DynamoDB registry table
//! on moto server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Runs `upsell --home HOME args...` with `env` set (and the registry table unset unless given).
fn upsell(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_upsell"));
    cmd.arg("--home")
        .arg(home)
        .args(args)
        .env_remove("UPSELL_AGENT_REGISTRY_TABLE")
        .env("UPSELL_ACTOR", "dana");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the upsell binary runs")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "upsell failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn err(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure");
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A copy of the seed generator as version 1.1.0 (draft) with one template line changed.
fn new_version(dir: &Path) -> PathBuf {
    let src = repo_root().join("agents/upsell-generator/1.0.0");
    let out = dir.join("upsell-generator/1.1.0");
    std::fs::create_dir_all(&out).unwrap();
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("agent.json")).unwrap()).unwrap();
    spec["version"] = "1.1.0".into();
    spec["status"] = "draft".into();
    spec["trafficWeight"] = 0.into();
    spec["config"]["temperature"] = 0.5.into();
    std::fs::write(out.join("agent.json"), spec.to_string()).unwrap();
    let system = std::fs::read_to_string(src.join("system.jinja")).unwrap();
    std::fs::write(
        out.join("system.jinja"),
        system.replacen("Short sentences.", "Short, friendly sentences.", 1),
    )
    .unwrap();
    std::fs::copy(src.join("user.jinja"), out.join("user.jinja")).unwrap();
    out
}

/// The whole lifecycle against one registry (`env` selects it).
fn lifecycle(home: &Path, env: &[(&str, &str)]) {
    let work = tempfile::tempdir().unwrap();
    let dir = new_version(work.path());
    let dir = dir.to_str().unwrap();
    let run = |args: &[&str]| upsell(home, env, args);

    let out = ok(&run(&["agents", "register", dir]));
    assert!(out.contains("registered upsell-generator@1.1.0"), "{out}");
    let again = err(&run(&["agents", "register", dir]));
    assert!(again.contains("already registered"), "{again}");

    let list = lines(&ok(&run(&["agents", "list", "--json"])));
    let refs: Vec<String> = list
        .iter()
        .map(|s| format!("{}@{} {}", s["agentId"], s["version"], s["status"]))
        .collect();
    assert_eq!(
        refs,
        [
            r#""upsell-generator"@"1.0.0" "production""#,
            r#""upsell-generator"@"1.1.0" "draft""#,
            r#""upsell-judge"@"1.0.0" "production""#,
        ]
    );
    let table = ok(&run(&["agents", "list"]));
    assert!(table.contains("upsell-generator     1.1.0"), "{table}");

    let show: Value = serde_json::from_str(&ok(&run(&[
        "agents",
        "show",
        "upsell-generator@1.1",
        "--json",
    ])))
    .unwrap();
    assert!(
        show["prompt"]["system"]
            .as_str()
            .unwrap()
            .contains("Short, friendly sentences.")
    );
    let text = ok(&run(&["agents", "show", "upsell-generator"]));
    assert!(text.contains("production  1.0.0"), "{text}");

    let diff = ok(&run(&[
        "agents",
        "diff",
        "upsell-generator@1.0.0",
        "upsell-generator@1.1.0",
    ]));
    assert!(diff.contains("/config/temperature: 0.7 -> 0.5"), "{diff}");
    assert!(diff.contains("-- Warm, plain and neighbourly"), "{diff}");
    assert!(diff.contains("+- Warm, plain and neighbourly"), "{diff}");
    let d: Value = serde_json::from_str(&ok(&run(&[
        "agents",
        "diff",
        "upsell-generator@1.0.0",
        "1.1.0",
        "--json",
    ])))
    .unwrap();
    assert_eq!(d["templates"].as_array().unwrap().len(), 1);
    assert_eq!(d["templates"][0]["name"], "system.jinja");

    // Draft -> evaluating -> canary 10% -> production (1.0.0 retired).
    ok(&run(&["agents", "promote", "upsell-generator@1.1.0"]));
    let canary = ok(&run(&[
        "agents",
        "promote",
        "upsell-generator@1.1.0",
        "--weight",
        "10",
        "--reason",
        "evaluation passed",
    ]));
    assert!(
        canary.contains("upsell-generator@1.1.0 is canary (10%"),
        "{canary}"
    );
    let show = ok(&run(&["agents", "show", "upsell-generator", "--json"]));
    let show: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["routing"]["canaryVersion"], "1.1.0");
    assert_eq!(show["routing"]["canaryWeight"], 10);
    let promoted = ok(&run(&[
        "agents",
        "promote",
        "upsell-generator@1.1.0",
        "--json",
    ]));
    let changed = lines(&promoted);
    assert_eq!(changed[0]["status"], "production");
    assert_eq!(changed[1]["version"], "1.0.0");
    assert_eq!(changed[1]["status"], "retired");

    let refused = err(&run(&["agents", "promote", "upsell-generator@1.0.0"]));
    assert!(refused.contains("final"), "{refused}");
    let out = ok(&run(&[
        "agents",
        "retire",
        "upsell-generator@1.1.0",
        "--rolled-back",
        "--reason",
        "complaints",
    ]));
    assert!(out.contains("rolled-back"), "{out}");

    let history = lines(&ok(&run(&[
        "agents",
        "history",
        "upsell-generator",
        "--json",
    ])));
    let steps: Vec<String> = history
        .iter()
        .map(|t| {
            format!(
                "{} {}->{} {} {}",
                t["version"].as_str().unwrap(),
                t["from"].as_str().unwrap_or("-"),
                t["to"].as_str().unwrap(),
                t["actor"]["id"].as_str().unwrap(),
                t["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(steps.len(), 7, "{steps:#?}");
    assert!(steps[0].starts_with("1.0.0 -->production"), "{steps:#?}");
    assert!(
        steps[1].starts_with("1.1.0 -->draft dana registered from"),
        "{steps:#?}"
    );
    assert_eq!(steps[3], "1.1.0 evaluating->canary dana evaluation passed");
    assert_eq!(
        steps[4..],
        [
            "1.1.0 canary->production dana promoted with the CLI",
            "1.0.0 production->retired dana superseded by upsell-generator@1.1.0",
            "1.1.0 production->rolled-back dana complaints",
        ]
    );
    let table = ok(&run(&["agents", "history", "upsell-generator"]));
    assert!(table.contains("canary 10% -> production 100%"), "{table}");
}

#[test]
fn agents_lifecycle_on_the_local_registry() {
    let home = tempfile::tempdir().unwrap();
    lifecycle(home.path(), &[]);
    // Bad input says what is wrong.
    let e = err(&upsell(
        home.path(),
        &[],
        &["agents", "show", "upsell-generator@x"],
    ));
    assert!(e.contains("not a version"), "{e}");
    let e = err(&upsell(
        home.path(),
        &[],
        &["agents", "register", "/nonexistent"],
    ));
    assert!(e.contains("cannot read agent.json"), "{e}");
}

#[cfg(not(feature = "aws"))]
#[test]
fn the_aws_table_needs_the_aws_feature() {
    let home = tempfile::tempdir().unwrap();
    let e = err(&upsell(
        home.path(),
        &[("UPSELL_AGENT_REGISTRY_TABLE", "t")],
        &["agents", "list"],
    ));
    assert!(e.contains("--features aws"), "{e}");
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn agents_lifecycle_on_a_dynamodb_table_on_moto() {
    let endpoint = match std::env::var("UPSELL_MOTO_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ if std::env::var_os("UPSELL_REQUIRE_MOTO").is_some() => {
            panic!("UPSELL_REQUIRE_MOTO is set but UPSELL_MOTO_ENDPOINT is not")
        }
        _ => {
            eprintln!(
                "SKIPPED agents_lifecycle_on_a_dynamodb_table_on_moto: UPSELL_MOTO_ENDPOINT is not set"
            );
            return;
        }
    };
    let table = format!("registry-{}", std::process::id());
    let ctx = upsell_aws::AwsContext::builder()
        .endpoint_url(&endpoint)
        .region("us-east-1")
        .test_credentials()
        .build()
        .await;
    upsell_aws::tables::create_table(ctx.dynamodb(), &table, upsell_aws::TableKind::AgentRegistry)
        .await
        .unwrap();
    // The seed agents as a deploy would have registered them.
    let registry = upsell_aws::DynamoAgentRegistry::new(ctx.dynamodb().clone(), &table);
    for spec in upsell_models::seed::seed_agents() {
        upsell_core::ports::AgentRegistry::register(
            &registry,
            &spec,
            &upsell_models::seed::seed_request("test-stack"),
        )
        .await
        .unwrap();
    }
    tokio::task::spawn_blocking(move || {
        let home = tempfile::tempdir().unwrap();
        let env = [
            ("UPSELL_AGENT_REGISTRY_TABLE", table.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("UPSELL_AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ];
        lifecycle(home.path(), &env);
        // Nothing was written to the local registry.
        assert!(!home.path().join("upsell.db").exists());
    })
    .await
    .unwrap();
}
