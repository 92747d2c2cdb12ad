//! Error types: a runtime `Failure` (the Error/Cause pair that Retry and Catch match) and
//! the definition problems reported by the validator.

use std::fmt;

/// Error names that Step Functions defines (the full list: the engine raises not all of them).
#[allow(dead_code)]
pub mod names {
    pub const ALL: &str = "States.ALL";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const RUNTIME: &str = "States.Runtime";
    pub const TIMEOUT: &str = "States.Timeout";
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    pub const DATA_LIMIT: &str = "States.DataLimitExceeded";
    pub const INTRINSIC: &str = "States.IntrinsicFailure";
    pub const NO_CHOICE: &str = "States.NoChoiceMatched";
    pub const PARAMETER_PATH: &str = "States.ParameterPathFailure";
    pub const RESULT_PATH: &str = "States.ResultPathMatchFailure";
    pub const QUERY_EVALUATION: &str = "States.QueryEvaluationError";
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    pub const EXCEED_TOLERATED: &str = "States.ExceedToleratedFailureThreshold";
    pub const ITEM_READER: &str = "States.ItemReaderFailed";
    pub const RESULT_WRITER: &str = "States.ResultWriterFailed";
    pub const PERMISSIONS: &str = "States.Permissions";
}

/// A state (or execution) failure: what Retry/Catch see and what a failed execution reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Error name, e.g. `States.TaskFailed` or a Lambda `errorType`.
    pub error: String,
    /// Human-readable cause (often JSON), if any.
    pub cause: Option<String>,
}

impl Failure {
    /// A failure with a cause.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            cause: Some(cause.into()),
        }
    }

    /// A failure without a cause.
    pub fn bare(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            cause: None,
        }
    }

    /// `States.Runtime` bypasses Retry and Catch.
    pub fn is_terminal(&self) -> bool {
        self.error == names::RUNTIME
    }

    /// Whether an `ErrorEquals` list matches this failure.
    pub fn matches(&self, error_equals: &[String]) -> bool {
        error_equals.iter().any(|e| {
            if e == &self.error {
                return true;
            }
            if e == names::ALL {
                return self.error != names::RUNTIME;
            }
            if e == names::TASK_FAILED {
                // A wildcard for every known error except the timeouts (and States.Runtime).
                return self.error != names::RUNTIME
                    && self.error != names::TIMEOUT
                    && self.error != names::HEARTBEAT_TIMEOUT;
            }
            false
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if let Some(c) = &self.cause {
            write!(f, ": {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// One problem found in a definition, with the JSON path (`/States/Foo/Next`) it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Step Functions' diagnostic code (`SCHEMA_VALIDATION_FAILED`, ...).
    pub code: &'static str,
    /// JSON pointer-like location; `/` for the top level.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} at {}", self.code, self.message, self.location)
    }
}

/// A definition that Step Functions would reject, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid State Machine Definition: {}", .problems.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", "))]
pub struct InvalidDefinition {
    /// Every problem, in document order.
    pub problems: Vec<Problem>,
}
