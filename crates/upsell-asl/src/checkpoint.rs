//! Durable executions: a checkpoint after each top-level state transition, from which an
//! execution resumes after the process died, without re-running a Task that succeeded.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// Where the execution stands between two top-level states.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Execution ARN.
    pub execution_arn: String,
    /// The state to run next.
    pub next_state: String,
    /// Its input.
    pub input: Value,
    /// Workflow variables at that point.
    pub variables: Map<String, Value>,
    /// The execution's original input (`$$.Execution.Input`).
    pub execution_input: Value,
    /// Last history event id, so resumed events continue the numbering.
    pub last_event_id: u64,
    /// Execution start time (RFC 3339).
    pub start_time: String,
}

/// Stores checkpoints; implementations must make `save` durable before returning.
pub trait CheckpointStore: Send + Sync {
    /// Saves (replaces) the execution's checkpoint.
    fn save(&self, checkpoint: &Checkpoint) -> Result<(), String>;
    /// Like [`CheckpointStore::save`], with the checkpoint input's JSON text when the engine
    /// already has it (it serialised the same document for the history), so that a store that
    /// keeps text need not serialise it again. The default ignores the text.
    fn save_with_input_json(
        &self,
        checkpoint: &Checkpoint,
        input_json: Option<&str>,
    ) -> Result<(), String> {
        let _ = input_json;
        self.save(checkpoint)
    }
    /// Loads the latest checkpoint.
    fn load(&self, execution_arn: &str) -> Result<Option<Checkpoint>, String>;
    /// Removes it once the execution finished.
    fn clear(&self, execution_arn: &str) -> Result<(), String>;
}

/// In-memory store (tests; SQLite provides the durable one).
#[derive(Debug, Default)]
pub struct MemoryCheckpoints {
    map: Mutex<HashMap<String, Checkpoint>>,
}

impl CheckpointStore for MemoryCheckpoints {
    fn save(&self, c: &Checkpoint) -> Result<(), String> {
        self.map
            .lock()
            .map_err(|e| e.to_string())?
            .insert(c.execution_arn.clone(), c.clone());
        Ok(())
    }
    fn load(&self, arn: &str) -> Result<Option<Checkpoint>, String> {
        Ok(self
            .map
            .lock()
            .map_err(|e| e.to_string())?
            .get(arn)
            .cloned())
    }
    fn clear(&self, arn: &str) -> Result<(), String> {
        self.map.lock().map_err(|e| e.to_string())?.remove(arn);
        Ok(())
    }
}
