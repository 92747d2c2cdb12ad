//! Local service integrations that state machines call directly, as ASL task handlers (the
//! DynamoDB ones are in [`crate::dynamodb`]):
//! - EventBridge: `arn:aws:states:::events:putEvents` onto the local bus ([`PutEventsTarget`]).
//! - Step Functions: `arn:aws:states:::states:startExecution` with `.sync` and `.sync:2`
//!   ([`StatesTasks`]).
//!
//! Outputs and error names follow what Step Functions returns.

use std::sync::Arc;

use serde_json::{Value, json};
use upsell_asl::{Resources, TaskContext, TaskFailure, TaskHandler};

use crate::template::{ACCOUNT_ID, REGION};

/// Where the `events:putEvents` integration puts entries: the local event bus ([`crate::runtime::LocalEventBus`]) or a test double.
#[async_trait::async_trait]
pub trait PutEventsTarget: Send + Sync {
    /// Puts one EventBridge event (full envelope) on the bus named `bus`.
    async fn put(&self, bus: &str, event: Value) -> Result<(), String>;
}

/// The `arn:aws:states:::events:putEvents` task handler.
pub struct EventsTasks {
    bus: Arc<dyn PutEventsTarget>,
    default_bus: String,
}

impl std::fmt::Debug for EventsTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventsTasks")
    }
}

impl EventsTasks {
    /// Entries without `EventBusName` go to `default_bus`.
    pub fn new(bus: Arc<dyn PutEventsTarget>, default_bus: impl Into<String>) -> Self {
        EventsTasks {
            bus,
            default_bus: default_bus.into(),
        }
    }

    /// Registers `arn:aws:states:::events:putEvents` (and its SDK form).
    pub fn register(self: Arc<Self>, resources: &mut Resources) {
        resources.register("arn:aws:states:::events:putEvents", self.clone());
        resources.register("arn:aws:states:::aws-sdk:eventbridge:putEvents", self);
    }

    /// Builds the envelope for one entry, or the entry's error code and message.
    fn envelope(&self, entry: &Value) -> Result<(String, Value), (String, String)> {
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let source = field("Source").ok_or((
            "InvalidArgument".to_string(),
            "Parameter Source is not valid. Reason: Source is a required argument.".to_string(),
        ))?;
        let detail_type = field("DetailType").ok_or((
            "InvalidArgument".to_string(),
            "Parameter DetailType is not valid. Reason: DetailType is a required argument."
                .to_string(),
        ))?;
        let detail = match entry.get("Detail") {
            Some(Value::Object(m)) => Value::Object(m.clone()),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => v,
                _ => return Err(("MalformedDetail".into(), "Detail is malformed.".into())),
            },
            None => {
                return Err((
                    "InvalidArgument".into(),
                    "Parameter Detail is not valid. Reason: Detail is a required argument.".into(),
                ));
            }
            Some(_) => return Err(("MalformedDetail".into(), "Detail is malformed.".into())),
        };
        let bus = field("EventBusName").map_or(self.default_bus.clone(), |b| {
            crate::template::event_bus_name(b).to_string()
        });
        let time = match field("Time") {
            Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    (
                        "InvalidArgument".to_string(),
                        format!("Parameter Time is not valid: {t}"),
                    )
                })?
                .with_timezone(&chrono::Utc),
            None => chrono::Utc::now(),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let event = json!({
            "version": "0",
            "id": id,
            "detail-type": detail_type,
            "source": source,
            "account": ACCOUNT_ID,
            "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": REGION,
            "resources": entry.get("Resources").cloned().unwrap_or_else(|| json!([])),
            "detail": detail,
        });
        Ok((bus, event))
    }
}

#[async_trait::async_trait]
impl TaskHandler for EventsTasks {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        _ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        let sdk = resource.contains(":aws-sdk:");
        let Some(entries) = input
            .get("Entries")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty() && e.len() <= 10)
        else {
            return Err(TaskFailure {
                error: if sdk { "EventBridge.EventBridgeException" } else { "EventBridge.AmazonEventBridgeException" }.into(),
                cause: Some("1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1".into()),
            });
        };
        let mut results = Vec::with_capacity(entries.len());
        let mut failed = 0;
        for entry in entries {
            let outcome = match self.envelope(entry) {
                Ok((bus, event)) => {
                    let id = event["id"].as_str().unwrap_or_default().to_string();
                    match self.bus.put(&bus, event).await {
                        Ok(()) => Ok(id),
                        Err(e) => Err(("InternalFailure".to_string(), e)),
                    }
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(id) => results.push(json!({"EventId": id})),
                Err((code, message)) => {
                    failed += 1;
                    results.push(json!({"ErrorCode": code, "ErrorMessage": message}));
                }
            }
        }
        let out = json!({"Entries": results, "FailedEntryCount": failed});
        if failed > 0 && !sdk {
            // The optimized integration fails the task when any entry failed.
            return Err(TaskFailure {
                error: "EventBridge.FailedEntry".into(),
                cause: Some(out.to_string()),
            });
        }
        Ok(out)
    }
}

/// What `DescribeExecution` says of one execution (what `.sync` integrations return).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionDescription {
    /// Execution ARN.
    pub execution_arn: String,
    /// State machine ARN.
    pub state_machine_arn: String,
    /// Execution name.
    pub name: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: String,
    /// Start time (RFC 3339).
    pub start_date: String,
    /// Stop time, once closed.
    pub stop_date: Option<String>,
    /// The input.
    pub input: Value,
    /// The output (SUCCEEDED).
    pub output: Option<Value>,
    /// Error name (FAILED, TIMED_OUT).
    pub error: Option<String>,
    /// Cause.
    pub cause: Option<String>,
}

impl ExecutionDescription {
    /// The `DescribeExecution` response; with `json_payloads` (`.sync:2`) `Input` and `Output`
    /// are JSON values, otherwise (`.sync`) JSON text.
    pub fn to_json(&self, json_payloads: bool) -> Value {
        let payload = |v: &Value| {
            if json_payloads {
                v.clone()
            } else {
                Value::String(v.to_string())
            }
        };
        let mut out = json!({
            "ExecutionArn": self.execution_arn,
            "StateMachineArn": self.state_machine_arn,
            "Name": self.name,
            "Status": self.status,
            "StartDate": self.start_date,
            "Input": payload(&self.input),
            "InputDetails": {"Included": true},
            "RedriveCount": 0,
            "RedriveStatus": "NOT_REDRIVABLE",
        });
        if let Some(d) = &self.stop_date {
            out["StopDate"] = Value::String(d.clone());
        }
        if let Some(o) = &self.output {
            out["Output"] = payload(o);
            out["OutputDetails"] = json!({"Included": true});
        }
        if let Some(e) = &self.error {
            out["Error"] = Value::String(e.clone());
        }
        if let Some(c) = &self.cause {
            out["Cause"] = Value::String(c.clone());
        }
        out
    }
}

/// Why `StartExecution` was refused (Step Functions' error codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartExecutionError {
    /// A closed execution (or one with another input) has this name.
    #[error("Execution Already Exists: '{0}'")]
    ExecutionAlreadyExists(String),
    /// Not a valid execution name.
    #[error("Invalid Name: '{0}'")]
    InvalidName(String),
    /// No such state machine.
    #[error("State Machine Does Not Exist: '{0}'")]
    StateMachineDoesNotExist(String),
    /// The local runtime failed (store, shutdown).
    #[error("{0}")]
    Internal(String),
}

impl StartExecutionError {
    fn code(&self) -> &'static str {
        match self {
            StartExecutionError::ExecutionAlreadyExists(_) => "ExecutionAlreadyExists",
            StartExecutionError::InvalidName(_) => "InvalidName",
            StartExecutionError::StateMachineDoesNotExist(_) => "StateMachineDoesNotExist",
            StartExecutionError::Internal(_) => "InternalFailure",
        }
    }
}

/// The local Step Functions as the `states:startExecution` integration sees it.
#[async_trait::async_trait]
pub trait LocalStepFunctions: Send + Sync {
    /// Starts an execution of `state_machine_arn` named `name` (a UUID when `None`). With
    /// `wait`, returns once it is closed; otherwise once started (status RUNNING).
    ///
    /// As in Step Functions, a name that a running execution with the same input has is not an
    /// error: that execution is returned (and waited for); a name that a closed execution has
    /// is `ExecutionAlreadyExists`.
    async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: Option<&str>,
        input: Value,
        wait: bool,
    ) -> Result<ExecutionDescription, StartExecutionError>;
}

/// The `arn:aws:states:::states:startExecution` task handler, with `.sync` and `.sync:2`, and
/// the SDK form `arn:aws:states:::aws-sdk:sfn:startExecution`.
///
/// Errors are named as Step Functions names them: `StepFunctions.<Code>Exception` (optimized)
/// or `Sfn.<Code>Exception` (SDK). A `.sync` child that does not succeed fails the task with
/// `States.TaskFailed` and its `DescribeExecution` JSON as Cause.
pub struct StatesTasks {
    sfn: Arc<dyn LocalStepFunctions>,
}

impl std::fmt::Debug for StatesTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatesTasks")
    }
}

impl StatesTasks {
    /// A handler over the local Step Functions.
    pub fn new(sfn: Arc<dyn LocalStepFunctions>) -> Self {
        StatesTasks { sfn }
    }

    /// Registers the four resource ARNs it serves.
    pub fn register(self: Arc<Self>, resources: &mut Resources) {
        for arn in [
            "arn:aws:states:::states:startExecution",
            "arn:aws:states:::states:startExecution.sync",
            "arn:aws:states:::states:startExecution.sync:2",
            "arn:aws:states:::aws-sdk:sfn:startExecution",
        ] {
            resources.register(arn, self.clone());
        }
    }
}

#[async_trait::async_trait]
impl TaskHandler for StatesTasks {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        _ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        let sdk = resource.contains(":aws-sdk:");
        let request_id = uuid::Uuid::new_v4();
        let fail = |code: &str, message: String| TaskFailure {
            error: if sdk {
                format!("Sfn.{code}Exception")
            } else {
                format!("StepFunctions.{code}Exception")
            },
            cause: Some(format!(
                "{message} (Service: {}; Status Code: 400; Error Code: {code}; Request ID: {request_id}; Proxy: null)",
                if sdk { "Sfn" } else { "AWSStepFunctions" }
            )),
        };
        let machine = input
            .get("StateMachineArn")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                fail(
                    "InvalidArn",
                    "1 validation error detected: Value null at 'stateMachineArn' failed to satisfy constraint: Member must not be null".into(),
                )
            })?;
        let name = input.get("Name").and_then(Value::as_str);
        let payload = match input.get("Input") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
                fail(
                    "InvalidExecutionInput",
                    format!("Invalid State Machine Execution Input: '{e}'"),
                )
            })?,
            Some(v) => v.clone(),
        };
        let wait = resource.ends_with(".sync") || resource.ends_with(".sync:2");
        let described = self
            .sfn
            .start_execution(machine, name, payload, wait)
            .await
            .map_err(|e| fail(e.code(), e.to_string()))?;
        if !wait {
            return Ok(json!({
                "ExecutionArn": described.execution_arn,
                "StartDate": described.start_date,
            }));
        }
        let json_payloads = resource.ends_with(".sync:2");
        let out = described.to_json(json_payloads);
        if described.status != "SUCCEEDED" {
            return Err(TaskFailure {
                error: "States.TaskFailed".into(),
                cause: Some(out.to_string()),
            });
        }
        Ok(out)
    }
}
