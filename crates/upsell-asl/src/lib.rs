//! Amazon States Language interpreter: parses, validates and runs Step Functions state
//! machines locally with the same results, errors and history as AWS.
//!
//! The crate root is the whole API (the modules are private):
//! - definitions: [`parse`], [`parse_str`], [`StateMachine`] and its options and errors;
//! - running: [`Engine`], [`StartOptions`], [`Execution`] and [`Outcome`], with the ports the
//!   engine calls out through: tasks ([`Resources`], [`TaskHandler`], [`LambdaInvoker`]),
//!   history ([`HistorySink`]), checkpoints ([`CheckpointStore`]), Distributed Map items
//!   ([`ItemSource`], [`ResultSink`]) and time ([`Clock`], [`VirtualClock`]);
//! - the TestState API ([`run_test_state`]) and mocked task responses ([`StateMocks`]);
//! - [`JsonPath`] and [`read_csv`], for callers that evaluate paths or read CSV items alike.
//!
//! ```no_run
//! # async fn demo() {
//! use upsell_asl::{Engine, Resources, StartOptions, parse_str, ParseOptions};
//! let sm = parse_str(r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#, ParseOptions::default()).unwrap();
//! let engine = Engine::builder().resources(Resources::new()).build();
//! let run = engine.execute(&sm, serde_json::json!({}), StartOptions::default()).await;
//! println!("{}", run.outcome.to_json());
//! # }
//! ```

mod checkpoint;
mod clock;
mod definition;
mod error;
mod exec;
mod history;
mod intrinsics;
mod items;
mod jsonpath;
pub(crate) use upsell_jsonata as jsonata_api;
mod mock;
mod mock_shapes;
mod single_state;
mod task;
mod template;

pub use checkpoint::{Checkpoint, CheckpointStore, MemoryCheckpoints};
pub use clock::{Clock, HeldTime, RealClock, VirtualClock, virtual_runtime};
pub use definition::{
    MAX_DEFINITION_BYTES, MachineType, ParseOptions, QueryLanguage, StateMachine, parse, parse_str,
};
pub use error::{Failure, InvalidDefinition, Problem};
pub use exec::{Engine, EngineBuilder, Execution, Outcome, StartOptions};
pub use history::{HistoryEvent, HistorySink, MemorySink, NullSink};
pub use items::{ItemSource, ObjectInfo, ResultSink, read_csv};
pub use jsonpath::{JsonPath, PathSyntaxError};
pub use mock::{MockedResponse, StateMocks};
pub use single_state::{
    FieldValidationMode, InspectionLevel, StateConfiguration, TestMock, TestStateError,
    TestStateRequest, TestStateResponse, TestStatus, run_test_state,
};
pub use task::{LambdaError, LambdaInvoker, Resources, TaskContext, TaskFailure, TaskHandler};
