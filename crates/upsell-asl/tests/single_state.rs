//! TestState API behaviour not tied to the recorded suite: single-state wrapping, retry/catch
//! statuses and request validation.

use serde_json::{Value, json};
use upsell_asl::{Engine, TestStateRequest, TestStatus, run_test_state};

fn run(req: Value) -> Result<Value, upsell_asl::TestStateError> {
    let request = TestStateRequest::from_api_json(&req)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run_test_state(&Engine::builder().build(), request))
        .map(|r| r.to_json())
}

#[test]
fn single_state_reports_its_next_state_and_inspection_data() {
    let r = run(json!({
        "definition": r#"{"Type":"Pass","Parameters":{"x.$":"$.a"},"ResultPath":"$.r","Next":"Later"}"#,
        "input": r#"{"a": 1}"#,
        "inspectionLevel": "DEBUG"
    }))
    .unwrap();
    assert_eq!(r["status"], "SUCCEEDED");
    assert_eq!(r["nextState"], "Later");
    assert_eq!(r["output"], json!({"a": 1, "r": {"x": 1}}));
    assert_eq!(r["inspectionData"]["afterParameters"], json!({"x": 1}));
}

#[test]
fn retry_then_catch_by_retry_count() {
    let def = r#"{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Parameters":{"FunctionName":"f"},
        "Retry":[{"ErrorEquals":["Boom"],"IntervalSeconds":2,"MaxAttempts":2,"BackoffRate":3}],
        "Catch":[{"ErrorEquals":["States.ALL"],"Next":"Handle"}],"End":true}"#;
    let req = |count: u32| {
        json!({"definition": def, "inspectionLevel": "INFO",
               "mock": {"errorOutput": {"error": "Boom", "cause": "c"}},
               "stateConfiguration": {"retrierRetryCount": count}})
    };
    let r = run(req(1)).unwrap();
    assert_eq!(r["status"], TestStatus::Retriable.as_str());
    let r = run(req(2)).unwrap();
    assert_eq!(r["status"], TestStatus::CaughtError.as_str());
    assert_eq!(r["nextState"], "Handle");
    assert_eq!(r["output"], json!({"Error": "Boom", "Cause": "c"}));
}

#[test]
fn request_validation_messages() {
    let e = run(json!({"definition": r#"{"Type":"Pass","End":true}"#,
                       "mock": {"result": "{}"}}))
    .unwrap_err();
    assert_eq!(e.kind(), "ValidationException");
    assert_eq!(
        e.message(),
        "State type 'Pass' is not supported when a mock is specified"
    );
    let e = run(json!({"definition": r#"{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","End":true}"#,
                       "roleArn": "arn:aws:iam::1:role/r", "mock": {"result": "not json"}}))
    .unwrap_err();
    assert_eq!(e.message(), "Mocked result must be valid JSON");
}
