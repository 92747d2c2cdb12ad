//! The local runtime: reads the SAM template, matches events to rules and runs the state machines
//! with the ASL engine, calling each worker in-process.
//!
//! The crate root is the whole API (the modules are private):
//! - [`Runtime`] ties it together (built with [`RuntimeBuilder`]), with the local event bus
//!   ([`LocalEventBus`]), the workers ([`WorkerSet`], [`WorkerRegistry`]) and the outcomes of
//!   events and executions;
//! - [`SamTemplate`] reads `sam/template.yaml` (functions, state machines, rules, tables), and
//!   [`EventPattern`] matches EventBridge patterns;
//! - task integrations for the state machines: DynamoDB getItem and putItem
//!   ([`DynamoDbTasks`]), EventBridge ([`EventsTasks`]) and Step Functions
//!   `states:startExecution` ([`StatesTasks`]); [`LocalObjects`] serves folders as S3 buckets for
//!   Distributed Map `ItemReader`s and `ResultWriter`s.

mod dynamodb;
mod item_reader;
mod pattern;
mod runtime;
mod services;
mod template;
mod workers;

pub use dynamodb::DynamoDbTasks;
pub use item_reader::LocalObjects;
pub use pattern::{EventPattern, PatternError};
pub use runtime::{
    BusEvent, BusSource, EventOutcome, ExecutionOutcome, LineOutcome, LocalEventBus, Runtime,
    RuntimeBuilder, RuntimeError, StartStats, WorkerFailure, WorkerInvoker, WorkerRegistry,
    execution_arn, execution_name, is_valid_execution_name, target_input,
};
pub use services::{
    EventsTasks, ExecutionDescription, LocalStepFunctions, PutEventsTarget, StartExecutionError,
    StatesTasks,
};
pub use template::{
    FunctionSpec, LoadOptions, RetryPolicy, RuleSpec, RuleTarget, SamTemplate, StateMachineSpec,
    TableSpec, TargetInput, TargetKind, TemplateError, apply_substitutions, state_machine_arn,
};
pub use workers::{DESERIALIZE_ERROR, WorkerSet};
