//! Running the repository's shell scripts and the AWS CLI against moto server.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `tool` runs; under `UPSELL_REQUIRE_MOTO` its absence fails the test.
pub fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("UPSELL_REQUIRE_MOTO").is_none(),
        "UPSELL_REQUIRE_MOTO is set but `{tool}` does not run ({test} needs it)"
    );
    if !ok {
        eprintln!("SKIPPED {test}: `{tool}` is not installed");
    }
    ok
}

/// The AWS CLI against moto, with fake credentials; its JSON output. `--endpoint-url` is
/// passed as well as `AWS_ENDPOINT_URL`: some CLI versions ignore the variable for SQS.
pub fn aws(endpoint: &str, args: &[&str]) -> Value {
    let mut with_endpoint = vec!["--endpoint-url", endpoint];
    with_endpoint.extend_from_slice(args);
    let out = cli(endpoint, "aws", &with_endpoint);
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("aws {args:?}: {e}: {text}"))
    }
}

/// `program args` in the repository root with the AWS environment pointed at moto.
pub fn cli(endpoint: &str, program: &str, args: &[&str]) -> Output {
    command(endpoint, program, args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// The command `cli` runs, to spawn it instead.
pub fn command(endpoint: &str, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .current_dir(repo_root())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_PAGER", "")
        .env_remove("AWS_PROFILE");
    c
}

/// A stack named `name` whose outputs are `outputs` (name -> value), as `sam deploy` leaves
/// one for the scripts that read it.
pub fn stack_with_outputs(endpoint: &str, name: &str, outputs: &[(&str, &str)]) {
    let outputs: serde_json::Map<String, Value> = outputs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::json!({ "Value": v })))
        .collect();
    let template = serde_json::json!({
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": outputs,
    })
    .to_string();
    aws(
        endpoint,
        &[
            "cloudformation",
            "create-stack",
            "--stack-name",
            name,
            "--template-body",
            &template,
        ],
    );
}

/// A new SQS queue that a new rule on `bus` matching `pattern` forwards events to; its URL.
pub fn queue_for_rule(endpoint: &str, bus: &str, pattern: &Value) -> String {
    let name = format!("seen-{}", uuid::Uuid::new_v4().simple());
    let queue = aws(endpoint, &["sqs", "create-queue", "--queue-name", &name])["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let arn = aws(
        endpoint,
        &[
            "sqs",
            "get-queue-attributes",
            "--queue-url",
            &queue,
            "--attribute-names",
            "QueueArn",
        ],
    )["Attributes"]["QueueArn"]
        .as_str()
        .unwrap()
        .to_owned();
    aws(
        endpoint,
        &[
            "events",
            "put-rule",
            "--name",
            &name,
            "--event-bus-name",
            bus,
            "--event-pattern",
            &pattern.to_string(),
        ],
    );
    let targets = serde_json::json!([{"Id": "queue", "Arn": arn}]).to_string();
    aws(
        endpoint,
        &[
            "events",
            "put-targets",
            "--rule",
            &name,
            "--event-bus-name",
            bus,
            "--targets",
            &targets,
        ],
    );
    queue
}

/// The next event delivered to `queue`, waiting up to 30 s.
pub fn next_event(endpoint: &str, queue: &str) -> Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < until {
        let got = aws(
            endpoint,
            &[
                "sqs",
                "receive-message",
                "--queue-url",
                queue,
                "--wait-time-seconds",
                "5",
            ],
        );
        if let Some(m) = got["Messages"].as_array().and_then(|m| m.first()) {
            return serde_json::from_str(m["Body"].as_str().unwrap()).unwrap();
        }
    }
    panic!("no event reached the queue {queue} in 30 s");
}
