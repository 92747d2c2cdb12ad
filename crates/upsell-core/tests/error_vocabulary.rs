//! The error vocabulary invariant: every `ErrorEquals` of every `state-machines/*.asl.json`
//! names an error a worker can raise ([`ErrorName`]), a Step Functions `States.*` error, a
//! `Lambda.*` error of a Lambda invocation, or an error of the state's service integration
//! (e.g. `DynamoDB.ConditionalCheckFailedException` for `arn:aws:states:::dynamodb:putItem`).
//! Every state machine in the folder is checked, including ones added later.

use std::path::PathBuf;

use serde_json::Value;
use upsell_core::worker::ErrorName;

/// Step Functions' own error names.
const STATES_ERRORS: &[&str] = &[
    "States.ALL",
    "States.BranchFailed",
    "States.DataLimitExceeded",
    "States.ExceedToleratedFailureThreshold",
    "States.HeartbeatTimeout",
    "States.Http.Socket",
    "States.IntrinsicFailure",
    "States.ItemReaderFailed",
    "States.NoChoiceMatched",
    "States.ParameterPathFailure",
    "States.Permissions",
    "States.QueryEvaluationError",
    "States.ResultPathMatchFailure",
    "States.ResultWriterFailed",
    "States.Runtime",
    "States.TaskFailed",
    "States.Timeout",
];

/// Errors of the optimised service integrations the state machines use, by service.
const SERVICE_ERRORS: &[(&str, &str, &[&str])] = &[
    (
        "dynamodb",
        "DynamoDB",
        &[
            "AmazonDynamoDBException",
            "ConditionalCheckFailedException",
            "InternalServerErrorException",
            "ItemCollectionSizeLimitExceededException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            "ResourceNotFoundException",
            "ThrottlingException",
            "TransactionConflictException",
        ],
    ),
    (
        "events",
        "EventBridge",
        &[
            "AmazonEventBridgeException",
            "InternalException",
            "ThrottlingException",
            "FailedEntriesException",
        ],
    ),
    (
        "states",
        "StepFunctions",
        &[
            "AWSStepFunctionsException",
            "ExecutionAlreadyExistsException",
            "ExecutionLimitExceeded",
            "ExecutionLimitExceededException",
            "InvalidNameException",
            "SdkClientException",
            "ThrottlingException",
        ],
    ),
    (
        "sqs",
        "SQS",
        &["AmazonSQSException", "QueueDoesNotExistException"],
    ),
];

/// Why `error` may not appear in `ErrorEquals` of a state with `resource`, or `None` if it may.
fn refuse(error: &str, resource: Option<&str>) -> Option<String> {
    if ErrorName::parse(error).is_some() || STATES_ERRORS.contains(&error) {
        return None;
    }
    if error.starts_with("Lambda.") {
        return None;
    }
    let service = resource
        .and_then(|r| r.strip_prefix("arn:aws:states:::"))
        .map(|r| r.strip_prefix("aws-sdk:").unwrap_or(r))
        .and_then(|r| r.split(':').next());
    if let Some(service) = service
        && let Some((_, prefix, names)) = SERVICE_ERRORS.iter().find(|(s, _, _)| *s == service)
        && let Some(name) = error.strip_prefix(prefix).and_then(|n| n.strip_prefix('.'))
        && names.contains(&name)
    {
        return None;
    }
    Some(format!(
        "{error:?} is neither a worker error ({}), a States.* or Lambda.* error, nor an error \
         of the state's service integration ({})",
        ErrorName::ALL.map(ErrorName::as_str).join(", "),
        resource.unwrap_or("no resource")
    ))
}

/// Every refused `ErrorEquals` entry of the states in `states` (and nested ones), as
/// `state: reason`.
fn check_states(states: &Value, out: &mut Vec<String>) {
    let Some(states) = states.as_object() else {
        return;
    };
    for (name, state) in states {
        let resource = state.get("Resource").and_then(Value::as_str);
        for field in ["Retry", "Catch"] {
            for rule in state
                .get(field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for e in rule
                    .get("ErrorEquals")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match e.as_str() {
                        Some(e) => {
                            if let Some(why) = refuse(e, resource) {
                                out.push(format!("{name} {field}: {why}"));
                            }
                        }
                        None => out.push(format!(
                            "{name} {field}: ErrorEquals entry {e} is not a string"
                        )),
                    }
                }
            }
        }
        for nested in ["Iterator", "ItemProcessor"] {
            if let Some(sub) = state.get(nested) {
                check_states(&sub["States"], out);
            }
        }
        for branch in state
            .get("Branches")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            check_states(&branch["States"], out);
        }
    }
}

fn problems(definition: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check_states(&definition["States"], &mut out);
    out
}

#[test]
fn every_error_equals_of_every_state_machine_names_a_known_error() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../state-machines");
    let mut checked = 0;
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".asl.json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let definition: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        all.extend(
            problems(&definition)
                .into_iter()
                .map(|p| format!("{}: {p}", path.display())),
        );
        checked += 1;
    }
    assert!(checked > 0, "no state machine in {}", dir.display());
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn a_misspelt_or_foreign_error_name_is_refused_in_nested_states_too() {
    let definition = serde_json::json!({
        "States": {
            "Generate": {
                "Type": "Task",
                "Resource": "${GenerateFunctionArn}",
                "Retry": [{"ErrorEquals": ["ModelThrottled", "Lambda.ServiceException", "States.Timeout"]}],
                "Catch": [{"ErrorEquals": ["ModelThrotled"], "Next": "X"}]
            },
            "Fan": {
                "Type": "Map",
                "ItemProcessor": {"States": {
                    "Claim": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::dynamodb:putItem",
                        "Catch": [
                            {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "Next": "Y"},
                            {"ErrorEquals": ["EventBridge.ThrottlingException"], "Next": "Y"}
                        ]
                    }
                }}
            },
            "Both": {
                "Type": "Parallel",
                "Branches": [{"States": {"Put": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::events:putEvents",
                    "Retry": [{"ErrorEquals": ["EventBridge.ThrottlingException", "States.Nope"]}]
                }}}]
            }
        }
    });
    let p = problems(&definition);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].starts_with("Generate Catch: \"ModelThrotled\""),
        "{p:#?}"
    );
    assert!(
        p[1].starts_with("Claim Catch: \"EventBridge.ThrottlingException\""),
        "{p:#?}"
    );
    assert!(p[2].starts_with("Put Retry: \"States.Nope\""), "{p:#?}");
}
