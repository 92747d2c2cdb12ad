//! Task resources: handlers keyed by ARN (exact or `*` pattern), and the two Lambda forms
//! (plain function ARN -> raw payload; `arn:aws:states:::lambda:invoke` -> SDK envelope).

use crate::error::{Failure, names};
use serde_json::{Value, json};
use std::sync::Arc;

/// What a handler knows about the call.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// Execution ARN.
    pub execution_arn: String,
    /// State name.
    pub state_name: String,
    /// Attempt number (0 = first try).
    pub retry_count: u32,
    /// State machine ARN.
    pub state_machine_arn: String,
    /// Task token, for `.waitForTaskToken` resources.
    pub task_token: Option<String>,
}

/// A task failure: the Error and Cause that Retry/Catch see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// Error name.
    pub error: String,
    /// Cause.
    pub cause: Option<String>,
}

impl From<TaskFailure> for Failure {
    fn from(t: TaskFailure) -> Failure {
        Failure {
            error: t.error,
            cause: t.cause,
        }
    }
}

/// Runs a Task state's resource.
#[async_trait::async_trait]
pub trait TaskHandler: Send + Sync {
    /// Invokes `resource` with the effective input.
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        ctx: &TaskContext,
    ) -> Result<Value, TaskFailure>;
}

/// An error returned by a Lambda function (its error payload).
#[derive(Debug, Clone, PartialEq)]
pub enum LambdaError {
    /// The function raised: `error_type` and the runtime's error JSON
    /// (`{"errorMessage", "errorType", "trace"|"stackTrace", ...}`) become Error and Cause.
    Function {
        /// `errorType`.
        error_type: String,
        /// The error object as the runtime reported it.
        payload: Value,
    },
    /// The Lambda service failed the call (e.g. `Lambda.ResourceNotFoundException`).
    Service {
        /// Error name.
        error: String,
        /// Message.
        cause: String,
    },
}

impl LambdaError {
    /// A function error with the usual `{errorMessage, errorType}` payload.
    pub fn function(error_type: &str, message: &str) -> LambdaError {
        LambdaError::Function {
            error_type: error_type.to_string(),
            payload: json!({"errorMessage": message, "errorType": error_type}),
        }
    }

    fn into_failure(self) -> TaskFailure {
        match self {
            LambdaError::Function {
                error_type,
                payload,
            } => TaskFailure {
                error: error_type,
                cause: Some(serde_json::to_string(&payload).unwrap_or_default()),
            },
            LambdaError::Service { error, cause } => TaskFailure {
                error,
                cause: Some(cause),
            },
        }
    }
}

/// Invokes Lambda functions (the local runtime calls workers in-process).
#[async_trait::async_trait]
pub trait LambdaInvoker: Send + Sync {
    /// Calls `function` (a name or ARN, possibly qualified) with `payload`.
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, LambdaError>;
}

/// Adapts a [`LambdaInvoker`] to both Lambda task forms.
pub struct LambdaTasks {
    invoker: Arc<dyn LambdaInvoker>,
}

impl LambdaTasks {
    /// Wraps an invoker.
    pub fn new(invoker: Arc<dyn LambdaInvoker>) -> LambdaTasks {
        LambdaTasks { invoker }
    }
}

#[async_trait::async_trait]
impl TaskHandler for LambdaTasks {
    async fn invoke(
        &self,
        resource: &str,
        input: Value,
        _ctx: &TaskContext,
    ) -> Result<Value, TaskFailure> {
        if resource.starts_with("arn:aws:states:::lambda:invoke") {
            let Some(function) = input.get("FunctionName").and_then(Value::as_str) else {
                return Err(TaskFailure {
                    error: names::RUNTIME.into(),
                    cause: Some(
                        "The field 'FunctionName' is required for arn:aws:states:::lambda:invoke"
                            .into(),
                    ),
                });
            };
            // A string Payload is sent as the raw request body, so Lambda sees the JSON it holds.
            let payload = match input.get("Payload") {
                Some(Value::String(s)) => {
                    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
                }
                Some(v) => v.clone(),
                None => json!({}),
            };
            let result = self
                .invoker
                .invoke(function, payload)
                .await
                .map_err(LambdaError::into_failure)?;
            let length = serde_json::to_string(&result)
                .map(|s| s.len())
                .unwrap_or(0)
                .to_string();
            let request_id = uuid::Uuid::new_v4().to_string();
            let trace = format!(
                "Root=1-{:08x}-{}",
                chrono::Utc::now().timestamp(),
                &uuid::Uuid::new_v4().simple().to_string()[..24]
            );
            let date = chrono::Utc::now()
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string();
            return Ok(json!({
                "ExecutedVersion": "$LATEST",
                "Payload": result,
                "SdkHttpMetadata": {
                    "AllHttpHeaders": {
                        "X-Amz-Executed-Version": ["$LATEST"],
                        "x-amzn-Remapped-Content-Length": ["0"],
                        "Connection": ["keep-alive"],
                        "x-amzn-RequestId": [request_id],
                        "Content-Length": [length],
                        "Date": [date],
                        "X-Amzn-Trace-Id": [trace],
                        "Content-Type": ["application/json"]
                    },
                    "HttpHeaders": {
                        "Connection": "keep-alive",
                        "Content-Length": length,
                        "Content-Type": "application/json",
                        "Date": date,
                        "X-Amz-Executed-Version": "$LATEST",
                        "x-amzn-Remapped-Content-Length": "0",
                        "x-amzn-RequestId": request_id,
                        "X-Amzn-Trace-Id": trace
                    },
                    "HttpStatusCode": 200
                },
                "SdkResponseMetadata": {"RequestId": request_id},
                "StatusCode": 200
            }));
        }
        self.invoker
            .invoke(resource, input)
            .await
            .map_err(LambdaError::into_failure)
    }
}

enum Key {
    Exact(String),
    Pattern(Vec<String>),
}

/// Handlers by resource ARN: exact matches first, then `*` patterns in registration order.
#[derive(Default)]
pub struct Resources {
    entries: Vec<(Key, Arc<dyn TaskHandler>)>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resources({} handlers)", self.entries.len())
    }
}

impl Resources {
    /// No handlers.
    pub fn new() -> Resources {
        Resources::default()
    }

    /// Registers a handler for exactly `arn`.
    pub fn register(&mut self, arn: &str, h: Arc<dyn TaskHandler>) -> &mut Self {
        self.entries.push((Key::Exact(arn.to_string()), h));
        self
    }

    /// Registers a handler for ARNs matching `pattern`, where `*` matches any run of characters.
    pub fn register_pattern(&mut self, pattern: &str, h: Arc<dyn TaskHandler>) -> &mut Self {
        self.entries.push((
            Key::Pattern(pattern.split('*').map(str::to_string).collect()),
            h,
        ));
        self
    }

    /// Routes Lambda ARNs (`arn:aws:lambda:*:*:function:*`) and `arn:aws:states:::lambda:invoke`
    /// to `invoker`.
    pub fn register_lambda(&mut self, invoker: Arc<dyn LambdaInvoker>) -> &mut Self {
        let h: Arc<dyn TaskHandler> = Arc::new(LambdaTasks::new(invoker));
        self.register_pattern("arn:aws:lambda:*:*:function:*", h.clone());
        self.register_pattern("arn:aws:states:::lambda:invoke*", h)
    }

    /// The handler for `resource`.
    pub fn find(&self, resource: &str) -> Option<&Arc<dyn TaskHandler>> {
        self.entries
            .iter()
            .find(|(k, _)| matches!(k, Key::Exact(a) if a == resource))
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|(k, _)| matches!(k, Key::Pattern(p) if glob(p, resource)))
            })
            .map(|(_, h)| h)
    }
}

fn glob(parts: &[String], s: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return s.is_empty();
    };
    let Some(mut remaining) = s.strip_prefix(first.as_str()) else {
        return false;
    };
    if rest.is_empty() {
        return remaining.is_empty();
    }
    for (i, p) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        if last {
            return remaining.ends_with(p.as_str());
        }
        match remaining.find(p.as_str()) {
            Some(pos) => remaining = &remaining[pos + p.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        let p: Vec<String> = "arn:aws:lambda:*:*:function:*"
            .split('*')
            .map(str::to_string)
            .collect();
        assert!(glob(&p, "arn:aws:lambda:us-east-1:1:function:f"));
        assert!(!glob(&p, "arn:aws:states:::lambda:invoke"));
    }
}
