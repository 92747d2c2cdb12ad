//! `states:startExecution(.sync:2)` and Distributed Map `ItemReader`s over local folders: a
//! parent state machine reads JSONL and CSV objects, batches them and starts one child execution
//! per item, named after the item; a second run finds every child already there. The parent
//! starts the child through its `AutoPublishAlias` (a qualified ARN), as the backfill does.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use upsell_core::message::{MessageRecord, QuarantineRecord};
use upsell_core::ports::{MessageQuery, MessageStore, PortError, PutOutcome};
use upsell_local::LocalObjects;
use upsell_local::StartExecutionError;
use upsell_local::state_machine_arn;
use upsell_local::{Runtime, WorkerFailure, WorkerRegistry};
use upsell_sqlite::ExecutionStore;
use upsell_sqlite::TableStore;

const TEMPLATE: &str = r#"
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Resources:
  Data:
    Type: AWS::S3::Bucket
  ChildMachine:
    Type: AWS::Serverless::StateMachine
    Properties:
      AutoPublishAlias: live
      DefinitionUri: ../state-machines/child.asl.json
  ParentMachine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: ../state-machines/parent.asl.json
      DefinitionSubstitutions:
        # As sam/template.yaml's backfill does: the child's `live` alias, SAM's generated id.
        ChildArn: !Ref ChildMachineAliaslive
        DataBucket: !Ref Data
"#;

const CHILD: &str = r#"{
  "StartAt": "Check",
  "States": {
    "Check": {"Type": "Choice", "Choices": [{"Variable": "$.id", "StringEquals": "bad", "Next": "Fail"}], "Default": "Done"},
    "Fail": {"Type": "Fail", "Error": "Bad", "Cause": "a bad item"},
    "Done": {"Type": "Pass", "Parameters": {"outcome": "published", "id.$": "$.id"}, "End": true}
  }
}"#;

/// A Choice on `$.type`, then one Distributed Map per input type.
fn parent() -> String {
    let each = |input_type: &str| {
        json!({
            "Type": "Map",
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": input_type, "CSVHeaderLocation": "FIRST_ROW"},
                "Parameters": {"Bucket": "${DataBucket}", "Key.$": "$.key"}
            },
            "ItemBatcher": {"MaxItemsPerBatch": 2},
            "MaxConcurrency": 2,
            "ToleratedFailurePercentage": 50,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Items",
                "States": {"Items": {
                    "Type": "Map",
                    "ItemsPath": "$.Items",
                    "ItemProcessor": {"StartAt": "Start", "States": {
                        "Start": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::states:startExecution.sync:2",
                            "Parameters": {"StateMachineArn": "${ChildArn}", "Name.$": "$.id", "Input.$": "$"},
                            "ResultSelector": {"status.$": "$.Status", "outcome.$": "$.Output.outcome"},
                            "Catch": [{"ErrorEquals": ["StepFunctions.ExecutionAlreadyExistsException"], "ResultPath": null, "Next": "Already"}],
                            "End": true
                        },
                        "Already": {"Type": "Pass", "Result": {"outcome": "already-started"}, "End": true}
                    }},
                    "End": true
                }}
            },
            "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "${DataBucket}", "Prefix": "results"}},
            "End": true
        })
    };
    json!({
        "StartAt": "Type",
        "States": {
            "Type": {"Type": "Choice", "Choices": [{"Variable": "$.type", "StringEquals": "CSV", "Next": "Csv"}], "Default": "Jsonl"},
            "Jsonl": each("JSONL"),
            "Csv": each("CSV")
        }
    })
    .to_string()
}

struct NoWorkers;

#[async_trait]
impl WorkerRegistry for NoWorkers {
    async fn invoke(&self, worker: &str, _: Value) -> Result<Value, WorkerFailure> {
        Err(WorkerFailure::new("Unknown", worker))
    }
}

struct NoMessages;

#[async_trait]
impl MessageStore for NoMessages {
    async fn put_if_absent(&self, _: &MessageRecord) -> Result<PutOutcome, PortError> {
        Ok(PutOutcome::Inserted)
    }
    async fn get(&self, _: &str) -> Result<Option<MessageRecord>, PortError> {
        Ok(None)
    }
    async fn list(&self, _: &MessageQuery) -> Result<Vec<MessageRecord>, PortError> {
        Ok(Vec::new())
    }
    async fn quarantine(&self, _: &QuarantineRecord) -> Result<PutOutcome, PortError> {
        Ok(PutOutcome::Inserted)
    }
    async fn list_quarantine(
        &self,
        _: Option<&str>,
        _: usize,
    ) -> Result<Vec<QuarantineRecord>, PortError> {
        Ok(Vec::new())
    }
}

fn runtime(dir: &Path, data: &Path) -> Runtime {
    std::fs::create_dir_all(dir.join("sam")).unwrap();
    std::fs::create_dir_all(dir.join("state-machines")).unwrap();
    std::fs::write(dir.join("sam/template.yaml"), TEMPLATE).unwrap();
    std::fs::write(dir.join("state-machines/child.asl.json"), CHILD).unwrap();
    std::fs::write(dir.join("state-machines/parent.asl.json"), parent()).unwrap();
    let objects = LocalObjects::without_root();
    objects.mount("Data", "", data);
    Runtime::builder(
        &dir.join("sam/template.yaml"),
        Arc::new(NoWorkers),
        Arc::new(TableStore::in_memory().unwrap()),
        Arc::new(ExecutionStore::in_memory().unwrap()),
        Arc::new(NoMessages),
    )
    .objects(objects)
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_distributed_map_starts_one_named_child_per_item_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("a.jsonl"),
        "{\"id\":\"e1\"}\n\n{\"id\":\"e2\"}\n{\"id\":\"bad\"}\n",
    )
    .unwrap();
    std::fs::write(
        data.join("b.csv"),
        "id,note\ne3,\"x, \"\"quoted\"\"\nand a new line\"\n",
    )
    .unwrap();
    let rt = runtime(dir.path(), &data);
    let parent = state_machine_arn("ParentMachine");

    let run = rt
        .start_execution(
            &parent,
            Some("p1"),
            json!({"key": "a.jsonl", "type": "JSONL"}),
            true,
        )
        .await
        .unwrap();
    assert_eq!(run.status, "SUCCEEDED", "{run:?}");
    let manifest_key = run.output.as_ref().unwrap()["ResultWriterDetails"]["Key"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(data.join(&manifest_key)).unwrap()).unwrap();
    let succeeded = manifest["ResultFiles"]["SUCCEEDED"][0]["Key"]
        .as_str()
        .unwrap();
    let entries: Value =
        serde_json::from_slice(&std::fs::read(data.join(succeeded)).unwrap()).unwrap();
    // Batch 1 (e1, e2) succeeded; batch 2 (bad) failed and was tolerated (1 of 2 = 50%).
    assert_eq!(entries.as_array().unwrap().len(), 1);
    let out: Value = serde_json::from_str(entries[0]["Output"].as_str().unwrap()).unwrap();
    assert_eq!(
        out,
        json!([{"status": "SUCCEEDED", "outcome": "published"}, {"status": "SUCCEEDED", "outcome": "published"}])
    );
    let failed = manifest["ResultFiles"]["FAILED"][0]["Key"]
        .as_str()
        .unwrap();
    let failed: Value = serde_json::from_slice(&std::fs::read(data.join(failed)).unwrap()).unwrap();
    assert_eq!(failed[0]["Error"], "States.TaskFailed");
    let child = rt.history().find("e1").unwrap().unwrap();
    assert_eq!(
        child.arn,
        "arn:aws:states:us-east-1:000000000000:execution:ChildMachine:e1"
    );
    assert_eq!(child.status, "SUCCEEDED");

    // The same items again: every child exists already; none runs twice.
    let again = rt
        .start_execution(
            &parent,
            Some("p2"),
            json!({"key": "a.jsonl", "type": "JSONL"}),
            true,
        )
        .await
        .unwrap();
    assert_eq!(again.status, "SUCCEEDED", "{again:?}");

    // CSV: quoted commas, quotes and line breaks stay in one cell.
    let csv = rt
        .start_execution(
            &parent,
            Some("p3"),
            json!({"key": "b.csv", "type": "CSV"}),
            true,
        )
        .await
        .unwrap();
    assert_eq!(csv.status, "SUCCEEDED", "{csv:?}");
    let e3 = rt.history().find("e3").unwrap().unwrap();
    assert_eq!(e3.input.unwrap()["note"], "x, \"quoted\"\nand a new line");

    // StartExecution's own refusals.
    let err = rt
        .start_execution(
            &state_machine_arn("ChildMachine"),
            Some("e1"),
            json!({"id": "e1"}),
            true,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartExecutionError::ExecutionAlreadyExists(_)),
        "{err:?}"
    );
    let err = rt
        .start_execution(
            &state_machine_arn("ChildMachine"),
            Some("a b"),
            json!({}),
            true,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartExecutionError::InvalidName(_)),
        "{err:?}"
    );
    let err = rt
        .start_execution(&state_machine_arn("Nope"), None, json!({}), false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartExecutionError::StateMachineDoesNotExist(_)),
        "{err:?}"
    );
}
