//! Execution history: Step Functions' event types with ids, previous ids, timestamps and
//! details, written to a pluggable sink (memory here; SQLite in upsell-sqlite).

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Mutex;

/// One history event, shaped like `GetExecutionHistory` output.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    /// Execution ARN the event belongs to.
    pub execution_arn: String,
    /// 1-based id, unique within the execution.
    pub id: u64,
    /// The id of the event that led to this one (0 for none).
    pub previous_event_id: u64,
    /// When it happened (clock time).
    pub timestamp: DateTime<Utc>,
    /// Event type, e.g. `TaskStateEntered`.
    pub event_type: String,
    /// The `...EventDetails` object, keyed as AWS does (e.g. `stateEnteredEventDetails`).
    pub details: Option<(String, Value)>,
}

impl HistoryEvent {
    /// The event as AWS JSON.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), self.id.into());
        m.insert("previousEventId".into(), self.previous_event_id.into());
        m.insert(
            "timestamp".into(),
            Value::String(
                self.timestamp
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
        );
        m.insert("type".into(), Value::String(self.event_type.clone()));
        if let Some((k, v)) = &self.details {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// Receives history events as they happen.
pub trait HistorySink: Send + Sync {
    /// Whether events should be built at all (a disabled sink saves the work).
    fn enabled(&self) -> bool {
        true
    }
    /// Whether state-level events should carry their JSON payloads (the `input`, `output`
    /// and `parameters` strings of `StateEntered`, `StateExited`, `TaskScheduled`,
    /// `TaskSucceeded`, `LambdaFunction*` events). When false the engine emits the same
    /// events with names, resources, errors and causes but leaves those fields out, which
    /// saves serialising the state document at every step (Step Functions'
    /// `includeExecutionData: false`). The execution's own events (`ExecutionStarted`,
    /// `ExecutionSucceeded`) always carry their input and output.
    fn payloads(&self) -> bool {
        true
    }
    /// Records one event.
    fn record(&self, event: HistoryEvent);
    /// The execution resumes from a checkpoint taken after event `last_event_id`: the events
    /// after it that the stopped run recorded are void, and the resumed run records its own
    /// under the same ids. The default keeps them (a sink that never resumes).
    fn resumed(&self, execution_arn: &str, last_event_id: u64) {
        let _ = (execution_arn, last_event_id);
    }
}

/// Discards events.
#[derive(Debug, Default)]
pub struct NullSink;

impl HistorySink for NullSink {
    fn enabled(&self) -> bool {
        false
    }
    fn record(&self, _event: HistoryEvent) {}
}

/// Keeps events in memory.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<HistoryEvent>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }
    /// Every event recorded so far for `execution_arn`, in id order.
    pub fn events(&self, execution_arn: &str) -> Vec<HistoryEvent> {
        let mut v: Vec<HistoryEvent> = self
            .events
            .lock()
            .expect("history lock")
            .iter()
            .filter(|e| e.execution_arn == execution_arn)
            .cloned()
            .collect();
        v.sort_by_key(|e| e.id);
        v
    }
    /// Every event of every execution.
    pub fn all(&self) -> Vec<HistoryEvent> {
        self.events.lock().expect("history lock").clone()
    }
}

impl HistorySink for MemorySink {
    fn record(&self, event: HistoryEvent) {
        self.events.lock().expect("history lock").push(event);
    }
    fn resumed(&self, execution_arn: &str, last_event_id: u64) {
        self.events
            .lock()
            .expect("history lock")
            .retain(|e| e.execution_arn != execution_arn || e.id <= last_event_id);
    }
}
