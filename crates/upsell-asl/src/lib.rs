//! Amazon States Language interpreter: parses, validates and runs Step Functions state
//! machines locally with the same results, errors and history as AWS.
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

pub mod checkpoint;
pub mod clock;
pub mod definition;
pub mod error;
pub mod exec;
pub mod history;
pub mod intrinsics;
pub mod items;
pub mod jsonpath;
pub(crate) use upsell_jsonata as jsonata_api;
pub mod mock;
mod mock_shapes;
pub mod single_state;
pub mod task;
pub mod template;

pub use checkpoint::{Checkpoint, CheckpointStore, MemoryCheckpoints};
pub use clock::{Clock, HeldTime, RealClock, VirtualClock, virtual_runtime};
pub use definition::{MachineType, ParseOptions, QueryLanguage, StateMachine, parse, parse_str};
pub use error::{Failure, InvalidDefinition, Problem};
pub use exec::{Engine, EngineBuilder, Execution, Outcome, StartOptions};
pub use history::{HistoryEvent, HistorySink, MemorySink, NullSink};
pub use items::{ItemSource, ObjectInfo, ResultSink};
pub use mock::{MockedResponse, StateMocks};
pub use single_state::{
    FieldValidationMode, InspectionLevel, StateConfiguration, TestMock, TestStateError,
    TestStateRequest, TestStateResponse, TestStatus, run_test_state,
};
pub use task::{LambdaError, LambdaInvoker, Resources, TaskContext, TaskFailure, TaskHandler};
