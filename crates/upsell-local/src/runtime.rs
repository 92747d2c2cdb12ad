//! The local runtime: what EventBridge, Step Functions and Lambda do in AWS, in one process.
//!
//! - [`WorkerRegistry`]: the in-process workers, called by the ASL engine as Lambda functions
//!   (through [`WorkerInvoker`], which maps a function ARN of the SAM template to its worker,
//!   enforces the function's `Timeout` and reports failures exactly as Lambda does).
//! - [`LocalEventBus`]: the event bus. It records every event put on it; workflows reach it
//!   through `events:putEvents` ([`PutEventsTarget`]) and workers through core's [`EventPublisher`].
//! - [`Runtime`]: reads `sam/template.yaml`, and for each submitted event starts one execution
//!   of every state machine targeted by a matching rule, with durable history and checkpoints
//!   in an [`ExecutionStore`].
//!
//! Choices where a laptop differs from AWS (each one deliberate):
//! - Execution name = event id, so a redelivered event starts no second execution (Step
//!   Functions' name idempotency; in AWS the workflow's ClaimEvent state does this job).
//!   An id that is not a valid execution name is replaced by `event-<sha256 of the line>`.
//! - Events put on the bus by workflows (e.g. `UpsellMessageApproved`) are recorded with the
//!   rules they match but never delivered, so no pattern mistake can make a workflow feed
//!   itself. Only events entering through [`Runtime::submit`] start executions.
//! - A line EventBridge would refuse or drop (not JSON, not an object, larger than 256 KiB,
//!   matching no rule) is written as a [`QuarantineRecord`] with the reason: nothing is lost.
//! - A worker that exceeds its function's `Timeout` fails like a timed-out Lambda function:
//!   Error `Sandbox.Timedout`, Cause `{"errorMessage":"RequestId: <id> Error: Task timed out
//!   after <n>.00 seconds","errorType":"Sandbox.Timedout"}`. The worker's future is dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore};
use upsell_asl::JsonPath;
use upsell_asl::{
    Clock, Engine, Execution, Failure, InvalidDefinition, LambdaError, LambdaInvoker, Outcome,
    ParseOptions, Resources, StartOptions, StateMachine, parse_str,
};
use upsell_core::events::RawEvent;
use upsell_core::message::QuarantineRecord;
use upsell_core::ports::{
    EventPublisher, MessageStore, MetricDatum, Metrics, PortError, PutOutcome, dims,
};
use upsell_core::telemetry::EVENTS_QUARANTINED;
use upsell_core::validate::{MAX_EVENT_BYTES, Problem, RejectReason};
use upsell_sqlite::TableStore;
use upsell_sqlite::{ExecutionStore, ExecutionSummary, HistoryLevel};

use crate::dynamodb::DynamoDbTasks;
use crate::item_reader::LocalObjects;
use crate::services::{
    EventsTasks, ExecutionDescription, LocalStepFunctions, PutEventsTarget, StartExecutionError,
    StatesTasks,
};
use crate::template::{
    ACCOUNT_ID, DEFAULT_EVENT_BUS, FunctionSpec, LoadOptions, REGION, RuleSpec, SamTemplate,
    TargetInput, TargetKind, TemplateError,
};

// ---------------------------------------------------------------------------------------------
// Workers as Lambda functions

/// A worker's error, as its Lambda function would raise it (`lambda_runtime`'s `Diagnostic`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct WorkerFailure {
    /// `errorType`: the stable name the ASL's Retry/Catch match (e.g. `SchemaInvalid`).
    pub error_type: String,
    /// `errorMessage`.
    pub message: String,
}

impl WorkerFailure {
    /// A failure with this type and message.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        WorkerFailure {
            error_type: error_type.into(),
            message: message.into(),
        }
    }
}

/// The in-process workers, by worker name (the function's `CodeUri` folder, e.g. `enrich`).
#[async_trait::async_trait]
pub trait WorkerRegistry: Send + Sync {
    /// Runs `worker` with the payload Lambda would receive; returns its JSON response.
    async fn invoke(&self, worker: &str, payload: Value) -> Result<Value, WorkerFailure>;

    /// Whether `worker` exists. The runtime refuses to start when a state machine calls a
    /// function whose worker is unknown (the default says every worker exists).
    fn has_worker(&self, worker: &str) -> bool {
        let _ = worker;
        true
    }
}

#[derive(Debug, Clone)]
struct FunctionTarget {
    worker: String,
    timeout: Duration,
}

/// The engine's [`LambdaInvoker`] over a [`WorkerRegistry`]: function ARN (or name, possibly
/// qualified) -> worker, with the function's timeout.
pub struct WorkerInvoker {
    registry: Arc<dyn WorkerRegistry>,
    functions: HashMap<String, FunctionTarget>,
}

impl std::fmt::Debug for WorkerInvoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerInvoker")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WorkerInvoker {
    /// An invoker for the template's `functions`, each served by the worker named after its
    /// `CodeUri` folder.
    pub fn new<'a>(
        registry: Arc<dyn WorkerRegistry>,
        functions: impl IntoIterator<Item = &'a FunctionSpec>,
    ) -> Self {
        WorkerInvoker {
            registry,
            functions: functions
                .into_iter()
                .map(|f| {
                    (
                        f.logical_id.clone(),
                        FunctionTarget {
                            worker: f.worker.clone(),
                            timeout: Duration::from_secs(f.timeout_s.max(1)),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The function name in a name, a function ARN, or either with a `:qualifier`.
    fn function_name(function: &str) -> &str {
        let name = match function.split_once(":function:") {
            Some((_, rest)) => rest,
            None => function,
        };
        name.split(':').next().unwrap_or(name)
    }
}

#[async_trait::async_trait]
impl LambdaInvoker for WorkerInvoker {
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, LambdaError> {
        let request_id = uuid::Uuid::new_v4();
        let Some(target) = self.functions.get(Self::function_name(function)) else {
            return Err(LambdaError::Service {
                error: "Lambda.ResourceNotFoundException".into(),
                cause: format!(
                    "Function not found: {function} (Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException; Request ID: {request_id}; Proxy: null)"
                ),
            });
        };
        match tokio::time::timeout(
            target.timeout,
            self.registry.invoke(&target.worker, payload),
        )
        .await
        {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(f)) => Err(LambdaError::function(&f.error_type, &f.message)),
            Err(_) => Err(LambdaError::function(
                "Sandbox.Timedout",
                &format!(
                    "RequestId: {request_id} Error: Task timed out after {}.00 seconds",
                    target.timeout.as_secs()
                ),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The event bus

/// Who put an event on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BusSource {
    /// Submitted from outside (`upsell run`, a test): delivered to matching rules.
    External,
    /// Put by a workflow or a worker: recorded only.
    Workflow,
}

/// One event the bus received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusEvent {
    /// Bus name.
    pub bus: String,
    /// The full EventBridge envelope.
    pub event: Value,
    /// Who put it.
    pub source: BusSource,
    /// Logical ids of the enabled rules it matched.
    pub matched_rules: Vec<String>,
}

#[derive(Debug, Default)]
struct BusConfig {
    rules: Vec<Arc<RuleSpec>>,
    default_bus: String,
}

/// The local EventBridge: the template's rules and a log of recent events.
///
/// Create it before the workers (they publish through it as an [`EventPublisher`]) and hand
/// it to [`RuntimeBuilder::bus`]; the runtime installs the template's rules and bus name.
#[derive(Debug)]
pub struct LocalEventBus {
    config: RwLock<BusConfig>,
    log: Mutex<VecDeque<BusEvent>>,
    capacity: usize,
    total: std::sync::atomic::AtomicU64,
    journal: Option<Mutex<std::fs::File>>,
}

impl Default for LocalEventBus {
    fn default() -> Self {
        Self::with_capacity(10_000)
    }
}

impl LocalEventBus {
    /// A bus keeping the last 10,000 events.
    pub fn new() -> Self {
        Self::default()
    }

    /// A bus keeping the last `capacity` events.
    pub fn with_capacity(capacity: usize) -> Self {
        LocalEventBus {
            config: RwLock::new(BusConfig {
                rules: Vec::new(),
                default_bus: DEFAULT_EVENT_BUS.into(),
            }),
            log: Mutex::new(VecDeque::new()),
            capacity,
            total: std::sync::atomic::AtomicU64::new(0),
            journal: None,
        }
    }

    /// Also appends every event that workflows and workers put (what subscribers would
    /// receive) to `path` as JSON lines, one `write` per event, so the file survives a
    /// killed process: the local stand-in for a subscriber's durable log.
    pub fn with_journal(mut self, path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.journal = Some(Mutex::new(file));
        Ok(self)
    }

    fn configure(&self, rules: Vec<RuleSpec>, default_bus: &str) {
        if let Ok(mut c) = self.config.write() {
            c.rules = rules.into_iter().map(Arc::new).collect();
            c.default_bus = default_bus.to_string();
        }
    }

    /// The bus that events without a bus name go to.
    pub fn default_bus(&self) -> String {
        self.config
            .read()
            .map(|c| c.default_bus.clone())
            .unwrap_or_default()
    }

    /// The enabled rules on `bus` that match `event`.
    pub fn matching_rules(&self, bus: &str, event: &Value) -> Vec<Arc<RuleSpec>> {
        self.config
            .read()
            .map(|c| {
                c.rules
                    .iter()
                    .filter(|r| r.enabled && r.event_bus == bus && r.pattern.matches(event))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records an event; returns the rules it matched.
    fn record(&self, bus: &str, event: Value, source: BusSource) -> Vec<Arc<RuleSpec>> {
        let rules = self.matching_rules(bus, &event);
        if source == BusSource::Workflow
            && let Some(journal) = &self.journal
            && let Ok(mut f) = journal.lock()
        {
            use std::io::Write as _;
            let mut line = event.to_string();
            line.push('\n');
            // Best effort, like a subscriber that may miss a delivery: the record stands.
            let _ = f.write_all(line.as_bytes());
        }
        let entry = BusEvent {
            bus: bus.to_string(),
            event,
            source,
            matched_rules: rules.iter().map(|r| r.logical_id.clone()).collect(),
        };
        self.total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut log) = self.log.lock() {
            if log.len() >= self.capacity {
                log.pop_front();
            }
            if self.capacity > 0 {
                log.push_back(entry);
            }
        }
        rules
    }

    /// The most recent events (oldest first), at most the bus's capacity.
    pub fn events(&self) -> Vec<BusEvent> {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Recorded events put by workflows and workers with this `detail-type`.
    pub fn published(&self, detail_type: &str) -> Vec<Value> {
        self.log
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|e| {
                        e.source == BusSource::Workflow
                            && e.event.get("detail-type").and_then(Value::as_str)
                                == Some(detail_type)
                    })
                    .map(|e| e.event.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many events the bus received in total (including those no longer in the log).
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl PutEventsTarget for LocalEventBus {
    async fn put(&self, bus: &str, event: Value) -> Result<(), String> {
        self.record(bus, event, BusSource::Workflow);
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventPublisher for LocalEventBus {
    async fn publish(&self, event: &RawEvent) -> Result<String, PortError> {
        let value = serde_json::to_value(event)
            .map_err(|e| PortError::Invalid(format!("event does not serialise: {e}")))?;
        let bus = self.default_bus();
        self.record(&bus, value, BusSource::Workflow);
        Ok(event.id.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Outcomes

/// How one event ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum EventOutcome {
    /// Approved and published.
    Published,
    /// Every attempt rejected by the judge.
    Rejected,
    /// No message on purpose (opted out, nothing to offer...).
    Skipped,
    /// Kept in quarantine, with the reason (a [`RejectReason`] wire name).
    Quarantined {
        /// e.g. `schema-violation`, `malformed-json`.
        reason: String,
    },
    /// The execution failed (it wrote a failed record when the workflow got that far).
    Failed {
        /// The execution's error.
        error: String,
        /// Its cause.
        cause: Option<String>,
    },
    /// Already handled: an execution with this name existed, or the workflow found the claim.
    Duplicate,
}

impl EventOutcome {
    /// `published`, `rejected`, `skipped`, `quarantined`, `failed` or `duplicate`.
    pub fn name(&self) -> &'static str {
        match self {
            EventOutcome::Published => "published",
            EventOutcome::Rejected => "rejected",
            EventOutcome::Skipped => "skipped",
            EventOutcome::Quarantined { .. } => "quarantined",
            EventOutcome::Failed { .. } => "failed",
            EventOutcome::Duplicate => "duplicate",
        }
    }

    /// Which outcome wins when one event started several executions.
    fn severity(&self) -> u8 {
        match self {
            EventOutcome::Failed { .. } => 5,
            EventOutcome::Quarantined { .. } => 4,
            EventOutcome::Rejected => 3,
            EventOutcome::Published => 2,
            EventOutcome::Skipped => 1,
            EventOutcome::Duplicate => 0,
        }
    }
}

/// One execution that an event started (or found already started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionOutcome {
    /// Execution ARN (`arn:aws:states:us-east-1:000000000000:execution:<machine>:<name>`).
    pub arn: String,
    /// State machine logical id.
    pub state_machine: String,
    /// False when an execution with this name already existed (outcome `duplicate`).
    pub started: bool,
    /// How it ended.
    pub outcome: EventOutcome,
}

/// What became of one submitted line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineOutcome {
    /// The overall outcome (when several executions ran: failed > quarantined > rejected >
    /// published > skipped > duplicate).
    pub outcome: EventOutcome,
    /// The event id, when the line had a readable one.
    pub event_id: Option<String>,
    /// Executions, one per matched state-machine target (empty when quarantined by the runtime).
    pub executions: Vec<ExecutionOutcome>,
    /// The quarantine id, when the runtime quarantined the line itself.
    pub quarantine_id: Option<String>,
}

/// Why the runtime could not be built or could not handle a line.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The SAM template could not be read.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A state machine's definition is invalid.
    #[error("state machine {machine}: {error}")]
    Definition {
        /// Logical id.
        machine: String,
        /// Every problem.
        error: InvalidDefinition,
    },
    /// A state machine calls a function whose worker the registry does not have.
    #[error(
        "state machine {machine} calls {function} (CodeUri folder '{worker}'), but no such worker is registered"
    )]
    UnknownWorker {
        /// Logical id of the state machine.
        machine: String,
        /// Logical id of the function.
        function: String,
        /// Worker name.
        worker: String,
    },
    /// A rule's target input could not be built.
    #[error("rule {rule}, target {target}: {message}")]
    TargetInput {
        /// Rule logical id.
        rule: String,
        /// Target id.
        target: String,
        /// What is wrong.
        message: String,
    },
    /// A store failed.
    #[error("{what}: {source}")]
    Store {
        /// What was being done.
        what: String,
        /// The port error.
        source: PortError,
    },
    /// An interrupted execution could not be resumed.
    #[error("cannot resume {arn}: {message}")]
    Resume {
        /// Execution ARN.
        arn: String,
        /// Why.
        message: String,
    },
}

fn store_err(what: impl Into<String>) -> impl FnOnce(PortError) -> RuntimeError {
    let what = what.into();
    move |source| RuntimeError::Store { what, source }
}

// ---------------------------------------------------------------------------------------------
// The runtime

/// Builds a [`Runtime`].
pub struct RuntimeBuilder {
    template: PathBuf,
    load_options: LoadOptions,
    workers: Arc<dyn WorkerRegistry>,
    tables: Arc<TableStore>,
    history: Arc<ExecutionStore>,
    messages: Arc<dyn MessageStore>,
    bus: Option<Arc<LocalEventBus>>,
    event_bus: Option<String>,
    max_concurrency: usize,
    clock: Option<Arc<dyn Clock>>,
    history_level: Option<HistoryLevel>,
    objects: Option<Arc<LocalObjects>>,
    metrics: Option<Arc<dyn Metrics>>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("template", &self.template)
            .field("max_concurrency", &self.max_concurrency)
            .finish()
    }
}

impl RuntimeBuilder {
    /// Parameter overrides and stack name for the template.
    pub fn load_options(mut self, options: LoadOptions) -> Self {
        self.load_options = options;
        self
    }

    /// The bus that workers publish to (default: a new one, see [`Runtime::bus`]).
    pub fn bus(mut self, bus: Arc<LocalEventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The bus that submitted events are put on (default: the bus the template's rules listen
    /// on when they all use one, else the template's only bus, else `default`).
    pub fn event_bus(mut self, name: impl Into<String>) -> Self {
        self.event_bus = Some(name.into());
        self
    }

    /// How many executions may run at once (default 64; at least 1). Submitting more waits.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// What the execution history keeps of each event (default: the store's own level,
    /// [`HistoryLevel::Full`] unless opened otherwise): `Summary` drops input/output payloads.
    pub fn history_level(mut self, level: HistoryLevel) -> Self {
        self.history_level = Some(level);
        self
    }

    /// The engine's clock (default: real time).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Where Distributed Map `ItemReader`s read and `ResultWriter`s write (S3 buckets as local
    /// folders; default: none, and such a Map fails with `States.ItemReaderFailed`). Mounts
    /// added to it later are seen by the runtime.
    pub fn objects(mut self, objects: impl Into<Arc<LocalObjects>>) -> Self {
        self.objects = Some(objects.into());
        self
    }

    /// Where the runtime records the events it quarantines itself, before any workflow
    /// (`EventsQuarantined` by reason; default: not recorded).
    pub fn metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Loads the template, parses every state machine and checks that every function they
    /// call has a worker.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        let template = SamTemplate::load(&self.template, &self.load_options)?;
        let mut machines = HashMap::new();
        for m in &template.state_machines {
            let sm = parse_str(&m.definition, ParseOptions::default()).map_err(|error| {
                RuntimeError::Definition {
                    machine: m.logical_id.clone(),
                    error,
                }
            })?;
            for f in &template.functions {
                if m.definition.contains(&format!("\"{}", f.arn))
                    && !self.workers.has_worker(&f.worker)
                {
                    return Err(RuntimeError::UnknownWorker {
                        machine: m.logical_id.clone(),
                        function: f.logical_id.clone(),
                        worker: f.worker.clone(),
                    });
                }
            }
            machines.insert(m.logical_id.clone(), sm);
        }
        if let Some(level) = self.history_level {
            self.history.set_level(level);
        }
        let ingest_bus = self
            .event_bus
            .unwrap_or_else(|| default_ingest_bus(&template));
        let bus = self.bus.unwrap_or_default();
        bus.configure(template.rules.clone(), &ingest_bus);

        let mut resources = Resources::new();
        resources.register_lambda(Arc::new(WorkerInvoker::new(
            self.workers,
            &template.functions,
        )));
        Arc::new(DynamoDbTasks::new(self.tables, &template.tables)).register(&mut resources);
        let local_bus: Arc<dyn PutEventsTarget> = bus.clone();
        Arc::new(EventsTasks::new(local_bus, ingest_bus.clone())).register(&mut resources);
        let sfn = Arc::new(SfnHandle::default());
        Arc::new(StatesTasks::new(sfn.clone())).register(&mut resources);
        let mut engine = Engine::builder()
            .resources(resources)
            .history(self.history.clone())
            .checkpoints(self.history.clone())
            .identity(REGION, ACCOUNT_ID);
        if let Some(clock) = self.clock {
            engine = engine.clock(clock);
        }
        if let Some(objects) = &self.objects {
            engine = engine
                .item_source(objects.clone())
                .result_sink(objects.clone());
        }
        let runtime = Runtime {
            inner: Arc::new(Inner {
                template,
                machines,
                engine: engine.build(),
                history: self.history,
                messages: self.messages,
                bus,
                ingest_bus,
                permits: Semaphore::new(self.max_concurrency),
                in_flight: Mutex::new(HashSet::new()),
                done: Notify::new(),
                started: StartCounters::default(),
                objects: self.objects,
                metrics: self.metrics,
            }),
        };
        let _ = sfn.runtime.set(Arc::downgrade(&runtime.inner));
        Ok(runtime)
    }
}

#[derive(Debug, Default)]
struct StartCounters {
    succeeded: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    already: std::sync::atomic::AtomicU64,
}

/// How the executions started with `.sync` / `.sync:2` by workflows (e.g. a backfill's
/// Distributed Map) have ended so far in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StartStats {
    /// Closed with SUCCEEDED.
    pub succeeded: u64,
    /// Closed otherwise (FAILED, TIMED_OUT, ABORTED), or could not start.
    pub failed: u64,
    /// Refused as `ExecutionAlreadyExists` (an earlier run closed it).
    pub already: u64,
}

impl StartStats {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.succeeded + self.failed + self.already
    }
}

/// The runtime as the `states:startExecution` integration sees it (set once the runtime is
/// built; weak, since the runtime owns the engine that owns the integration).
#[derive(Default)]
struct SfnHandle {
    runtime: OnceLock<Weak<Inner>>,
}

#[async_trait::async_trait]
impl LocalStepFunctions for SfnHandle {
    async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: Option<&str>,
        input: Value,
        wait: bool,
    ) -> Result<ExecutionDescription, StartExecutionError> {
        let inner =
            self.runtime.get().and_then(Weak::upgrade).ok_or_else(|| {
                StartExecutionError::Internal("the local runtime has stopped".into())
            })?;
        Runtime { inner }
            .start_execution(state_machine_arn, name, input, wait)
            .await
    }
}

fn default_ingest_bus(template: &SamTemplate) -> String {
    let buses: HashSet<&str> = template
        .rules
        .iter()
        .filter(|r| {
            r.targets
                .iter()
                .any(|t| matches!(t.kind, TargetKind::StateMachine(_)))
        })
        .map(|r| r.event_bus.as_str())
        .collect();
    if buses.len() == 1 {
        return buses.into_iter().next().unwrap_or_default().to_string();
    }
    match template.event_buses.as_slice() {
        [only] => only.clone(),
        _ => DEFAULT_EVENT_BUS.to_string(),
    }
}

struct Inner {
    template: SamTemplate,
    machines: HashMap<String, Arc<StateMachine>>,
    engine: Engine,
    history: Arc<ExecutionStore>,
    messages: Arc<dyn MessageStore>,
    bus: Arc<LocalEventBus>,
    ingest_bus: String,
    permits: Semaphore,
    in_flight: Mutex<HashSet<String>>,
    /// Notified whenever an execution leaves `in_flight`.
    done: Notify,
    started: StartCounters,
    objects: Option<Arc<LocalObjects>>,
    metrics: Option<Arc<dyn Metrics>>,
}

/// The local runtime. Cheap to clone; `submit` may be called from many tasks at once.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("template", &self.inner.template.path)
            .field("ingest_bus", &self.inner.ingest_bus)
            .finish()
    }
}

/// Removes a reserved execution ARN from the in-flight set when dropped.
struct Reservation<'a> {
    inner: &'a Inner,
    arn: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.inner.in_flight.lock() {
            s.remove(&self.arn);
        }
        self.inner.done.notify_waiters();
    }
}

impl Runtime {
    /// A builder over the template at `template` (e.g. `sam/template.yaml`), the workers and
    /// the stores: DynamoDB tables, execution history + checkpoints, and the message store
    /// that receives the runtime's own quarantine records.
    pub fn builder(
        template: &Path,
        workers: Arc<dyn WorkerRegistry>,
        tables: Arc<TableStore>,
        history: Arc<ExecutionStore>,
        messages: Arc<dyn MessageStore>,
    ) -> RuntimeBuilder {
        RuntimeBuilder {
            template: template.to_path_buf(),
            load_options: LoadOptions::default(),
            workers,
            tables,
            history,
            messages,
            bus: None,
            event_bus: None,
            max_concurrency: 64,
            clock: None,
            history_level: None,
            objects: None,
            metrics: None,
        }
    }

    /// [`Runtime::builder`] with the defaults, built.
    pub fn new(
        template: &Path,
        workers: Arc<dyn WorkerRegistry>,
        tables: Arc<TableStore>,
        history: Arc<ExecutionStore>,
        messages: Arc<dyn MessageStore>,
    ) -> Result<Runtime, RuntimeError> {
        Self::builder(template, workers, tables, history, messages).build()
    }

    /// The template as read.
    pub fn template(&self) -> &SamTemplate {
        &self.inner.template
    }

    /// The event bus (rules installed).
    pub fn bus(&self) -> &Arc<LocalEventBus> {
        &self.inner.bus
    }

    /// The bus that submitted events are put on.
    pub fn ingest_bus(&self) -> &str {
        &self.inner.ingest_bus
    }

    /// The execution store.
    pub fn history(&self) -> &Arc<ExecutionStore> {
        &self.inner.history
    }

    /// How the executions that workflows started and waited for have ended so far.
    pub fn start_stats(&self) -> StartStats {
        let c = &self.inner.started;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        StartStats {
            succeeded: get(&c.succeeded),
            failed: get(&c.failed),
            already: get(&c.already),
        }
    }

    /// The local S3 buckets of Distributed Maps, when configured.
    pub fn objects(&self) -> Option<&Arc<LocalObjects>> {
        self.inner.objects.as_ref()
    }

    /// `StartExecution` of the state machine `state_machine_arn` (a template state machine's
    /// local ARN) named `name` (a UUID when `None`), as [`LocalStepFunctions`] describes it:
    /// with `wait`, returns once the execution is closed; otherwise it runs in the background.
    ///
    /// An execution with this name that is running (or was interrupted: it resumes from its
    /// checkpoint) is joined, not started twice; one that is closed is
    /// `ExecutionAlreadyExists`.
    pub async fn start_execution(
        &self,
        state_machine_arn: &str,
        name: Option<&str>,
        input: Value,
        wait: bool,
    ) -> Result<ExecutionDescription, StartExecutionError> {
        // A qualified ARN (`...:stateMachine:<name>:<alias or version>`) runs the machine
        // itself: locally each machine has one version, the one in the template.
        let machine = state_machine_arn
            .strip_prefix(&crate::template::state_machine_arn(""))
            .map(|m| m.split_once(':').map_or(m, |(name, _)| name))
            .filter(|m| self.inner.machines.contains_key(*m))
            .ok_or_else(|| {
                StartExecutionError::StateMachineDoesNotExist(state_machine_arn.to_string())
            })?
            .to_string();
        let name = match name {
            Some(n) if is_valid_execution_name(n) => n.to_string(),
            Some(n) => return Err(StartExecutionError::InvalidName(n.to_string())),
            None => uuid::Uuid::new_v4().to_string(),
        };
        if wait {
            let r = self.run_named(&machine, &name, input).await;
            let c = &self.inner.started;
            let counter = match &r {
                Ok(d) if d.status == "SUCCEEDED" => &c.succeeded,
                Err(StartExecutionError::ExecutionAlreadyExists(_)) => &c.already,
                _ => &c.failed,
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return r;
        }
        let arn = execution_arn(&machine, &name);
        if let Some(found) = self.find_exact(&arn)? {
            return if found.status == "RUNNING" {
                Ok(describe(found))
            } else {
                Err(StartExecutionError::ExecutionAlreadyExists(arn))
            };
        }
        let rt = self.clone();
        let started = input.clone();
        let spawned_name = name.clone();
        tokio::spawn(async move {
            // The outcome is in the history; nobody waits for it.
            let _ = rt.run_named(&machine, &spawned_name, started).await;
        });
        Ok(ExecutionDescription {
            execution_arn: arn,
            state_machine_arn: state_machine_arn.to_string(),
            name,
            status: "RUNNING".into(),
            start_date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            stop_date: None,
            input,
            output: None,
            error: None,
            cause: None,
        })
    }

    fn find_exact(&self, arn: &str) -> Result<Option<ExecutionSummary>, StartExecutionError> {
        Ok(self
            .inner
            .history
            .find(arn)
            .map_err(|e| StartExecutionError::Internal(format!("execution history: {e}")))?
            .filter(|e| e.arn == arn))
    }

    /// Runs (or joins, or resumes) the execution `name` of `machine` until it is closed.
    async fn run_named(
        &self,
        machine: &str,
        name: &str,
        input: Value,
    ) -> Result<ExecutionDescription, StartExecutionError> {
        let arn = execution_arn(machine, name);
        let internal = |m: String| StartExecutionError::Internal(m);
        let sm =
            self.inner.machines.get(machine).ok_or_else(|| {
                StartExecutionError::StateMachineDoesNotExist(machine.to_string())
            })?;
        loop {
            let Some(_reservation) = self.reserve(&arn) else {
                // Running in this process: wait for it and report how it ended.
                self.wait_idle(&arn).await;
                if let Some(found) = self.find_exact(&arn)?
                    && found.status != "RUNNING"
                {
                    return Ok(describe(found));
                }
                continue;
            };
            let found = self.find_exact(&arn)?;
            if found.as_ref().is_some_and(|f| f.status != "RUNNING") {
                return Err(StartExecutionError::ExecutionAlreadyExists(arn));
            }
            let _permit = self
                .inner
                .permits
                .acquire()
                .await
                .map_err(|e| internal(e.to_string()))?;
            if found.is_some() {
                // Interrupted by a stop of the process: go on from its checkpoint.
                if self
                    .inner
                    .engine
                    .resume(sm, &arn)
                    .await
                    .map_err(internal)?
                    .is_some()
                {
                    return self.described(&arn);
                }
                // Stopped before its first checkpoint: it starts again from the beginning, and
                // what the stopped run recorded is void.
                upsell_asl::HistorySink::resumed(self.inner.history.as_ref(), &arn, 0);
            }
            self.execute_named(sm, machine, name, input).await;
            return self.described(&arn);
        }
    }

    /// Waits until `arn` is not running in this process.
    async fn wait_idle(&self, arn: &str) {
        loop {
            let notified = self.inner.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let busy = self
                .inner
                .in_flight
                .lock()
                .map(|s| s.contains(arn))
                .unwrap_or(false);
            if !busy {
                return;
            }
            notified.await;
        }
    }

    /// Commits all buffered history and checkpoints (waits for the history writer) and
    /// reports a history write error, if any happened. Call it before the process exits.
    pub fn flush(&self) -> Result<(), RuntimeError> {
        self.inner
            .history
            .flush()
            .map_err(store_err("execution history"))
    }

    /// Handles one input line (a full EventBridge event as JSON), `origin` naming where it
    /// came from (e.g. `examples/events.jsonl:17`). Waits for the executions it starts.
    ///
    /// Lines EventBridge would refuse or drop are quarantined (reason + origin), never
    /// dropped. `Err` only when a store fails or a rule's target input cannot be built.
    pub async fn submit(&self, raw_line: &str, origin: &str) -> Result<LineOutcome, RuntimeError> {
        let line = raw_line.trim_end_matches(['\r', '\n']);
        if line.len() > MAX_EVENT_BYTES {
            let problem = Problem::new(
                "",
                format!(
                    "the event is {} bytes; EventBridge accepts at most {MAX_EVENT_BYTES}",
                    line.len()
                ),
            );
            return self
                .quarantine(line, None, RejectReason::Oversized, problem, origin)
                .await;
        }
        let event: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                let problem = Problem::new("", format!("the line is not valid JSON: {e}"));
                return self
                    .quarantine(line, None, RejectReason::MalformedJson, problem, origin)
                    .await;
            }
        };
        let event_id = event
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if !event.is_object() {
            let problem = Problem::new(
                "",
                format!(
                    "an event must be a JSON object, found {}",
                    json_type_name(&event)
                ),
            );
            return self
                .quarantine(line, None, RejectReason::SchemaViolation, problem, origin)
                .await;
        }
        let bus = self.inner.ingest_bus.clone();
        let rules = self
            .inner
            .bus
            .record(&bus, event.clone(), BusSource::External);
        let targets: Vec<_> = rules
            .iter()
            .flat_map(|r| r.targets.iter().map(move |t| (r, t)))
            .filter_map(|(r, t)| match &t.kind {
                TargetKind::StateMachine(m) if self.inner.machines.contains_key(m) => {
                    Some((r, t, m.clone()))
                }
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            let names: Vec<&str> = rules.iter().map(|r| r.logical_id.as_str()).collect();
            let message = if rules.is_empty() {
                format!(
                    "the event (source {}, detail-type {}) matches no rule on event bus '{bus}'",
                    event.get("source").unwrap_or(&Value::Null),
                    event.get("detail-type").unwrap_or(&Value::Null),
                )
            } else {
                format!(
                    "the event matches rules {} on event bus '{bus}', but none targets a state machine of the template",
                    names.join(", ")
                )
            };
            return self
                .quarantine(
                    line,
                    event_id,
                    RejectReason::NoMatchingRule,
                    Problem::new("", message),
                    origin,
                )
                .await;
        }
        let name = execution_name(event_id.as_deref(), line);
        let mut executions = Vec::with_capacity(targets.len());
        for (rule, target, machine) in targets {
            let input = target_input(&target.input, &event, rule).map_err(|message| {
                RuntimeError::TargetInput {
                    rule: rule.logical_id.clone(),
                    target: target.id.clone(),
                    message,
                }
            })?;
            executions.push(self.start(&machine, &name, input).await?);
        }
        let outcome = executions
            .iter()
            .map(|e| &e.outcome)
            .max_by_key(|o| o.severity())
            .cloned()
            .unwrap_or(EventOutcome::Duplicate);
        Ok(LineOutcome {
            outcome,
            event_id,
            executions,
            quarantine_id: None,
        })
    }

    /// Starts (and waits for) an execution of `machine` named `name`, unless one with that name
    /// exists or is running: then the outcome is `duplicate` and nothing starts.
    async fn start(
        &self,
        machine: &str,
        name: &str,
        input: Value,
    ) -> Result<ExecutionOutcome, RuntimeError> {
        let arn = execution_arn(machine, name);
        let duplicate = ExecutionOutcome {
            arn: arn.clone(),
            state_machine: machine.to_string(),
            started: false,
            outcome: EventOutcome::Duplicate,
        };
        let Some(_reservation) = self.reserve(&arn) else {
            return Ok(duplicate);
        };
        if self
            .inner
            .history
            .find(&arn)
            .map_err(store_err("execution history"))?
            .is_some_and(|e| e.arn == arn)
        {
            return Ok(duplicate);
        }
        let Some(sm) = self.inner.machines.get(machine) else {
            return Err(RuntimeError::Resume {
                arn,
                message: format!("no state machine {machine} in the template"),
            });
        };
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|e| RuntimeError::Resume {
                arn: arn.clone(),
                message: e.to_string(),
            })?;
        let run = self.execute_named(sm, machine, name, input).await;
        self.finished(machine, run, true)
    }

    async fn execute_named(
        &self,
        sm: &Arc<StateMachine>,
        machine: &str,
        name: &str,
        input: Value,
    ) -> Execution {
        self.inner
            .engine
            .execute(
                sm,
                input,
                StartOptions {
                    name: Some(name.to_string()),
                    state_machine_name: Some(machine.to_string()),
                    role_arn: None,
                },
            )
            .await
    }

    fn described(&self, arn: &str) -> Result<ExecutionDescription, StartExecutionError> {
        self.find_exact(arn)?.map(describe).ok_or_else(|| {
            StartExecutionError::Internal(format!("{arn} ended but is not in the history"))
        })
    }

    fn reserve(&self, arn: &str) -> Option<Reservation<'_>> {
        let mut set = self.inner.in_flight.lock().ok()?;
        if !set.insert(arn.to_string()) {
            return None;
        }
        Some(Reservation {
            inner: &self.inner,
            arn: arn.to_string(),
        })
    }

    fn finished(
        &self,
        machine: &str,
        run: Execution,
        started: bool,
    ) -> Result<ExecutionOutcome, RuntimeError> {
        let outcome = match &run.outcome {
            Outcome::Succeeded(output) => match output.get("outcome").and_then(Value::as_str) {
                Some("published") => EventOutcome::Published,
                Some("rejected") => EventOutcome::Rejected,
                Some("skipped") => EventOutcome::Skipped,
                Some("duplicate") => EventOutcome::Duplicate,
                Some("quarantined") => EventOutcome::Quarantined {
                    reason: self.quarantine_reason(&run.arn)?,
                },
                Some("failed") => EventOutcome::Failed {
                    error: "Failed".into(),
                    cause: output.get("error").map(Value::to_string),
                },
                _ => EventOutcome::Failed {
                    error: "UnrecognisedOutcome".into(),
                    cause: Some(format!(
                        "the execution succeeded but its output names no outcome (published, rejected, skipped, quarantined, duplicate): {output}"
                    )),
                },
            },
            Outcome::Failed(f) => EventOutcome::Failed {
                error: f.error.clone(),
                cause: f.cause.clone(),
            },
        };
        Ok(ExecutionOutcome {
            arn: run.arn,
            state_machine: machine.to_string(),
            started,
            outcome,
        })
    }

    /// The reason of a workflow quarantine: the `reason` in the `SchemaInvalid` error that
    /// the execution caught (the worker's `errorMessage` is its details as JSON).
    fn quarantine_reason(&self, arn: &str) -> Result<String, RuntimeError> {
        let history = self
            .inner
            .history
            .history(arn)
            .map_err(store_err("execution history"))?;
        let reason = history
            .iter()
            .rev()
            .filter(|e| matches!(e.event_type.as_str(), "LambdaFunctionFailed" | "TaskFailed"))
            .filter_map(|e| e.details.as_ref())
            .filter_map(|(_, d)| d.get("cause").and_then(Value::as_str))
            .find_map(|cause| {
                let cause: Value = serde_json::from_str(cause).ok()?;
                let message = cause.get("errorMessage")?.as_str()?;
                let details: Value = serde_json::from_str(message).ok()?;
                Some(details.get("reason")?.as_str()?.to_string())
            });
        Ok(reason.unwrap_or_else(|| RejectReason::SchemaViolation.as_str().to_string()))
    }

    async fn quarantine(
        &self,
        line: &str,
        event_id: Option<String>,
        reason: RejectReason,
        problem: Problem,
        origin: &str,
    ) -> Result<LineOutcome, RuntimeError> {
        let quarantine_id = event_id
            .clone()
            .unwrap_or_else(|| format!("line-{}", &sha256_hex(line)[..32]));
        let record = QuarantineRecord {
            quarantine_id: quarantine_id.clone(),
            event_id: event_id.clone(),
            raw: line.to_string(),
            reason,
            errors: vec![problem],
            origin: Some(origin.to_string()),
            quarantined_at: chrono::Utc::now(),
        };
        // AlreadyExists: the same line was quarantined before (e.g. a re-run); one record stays,
        // counted once.
        let written = self
            .inner
            .messages
            .quarantine(&record)
            .await
            .map_err(store_err(format!("quarantine of {origin}")))?;
        if written == PutOutcome::Inserted
            && let Some(metrics) = &self.inner.metrics
        {
            metrics.record(
                MetricDatum::at(
                    EVENTS_QUARANTINED.name,
                    1.0,
                    EVENTS_QUARANTINED.unit,
                    chrono::Utc::now(),
                )
                .with_dim(dims::REASON, reason.as_str()),
            );
        }
        Ok(LineOutcome {
            outcome: EventOutcome::Quarantined {
                reason: reason.as_str().to_string(),
            },
            event_id,
            executions: Vec::new(),
            quarantine_id: Some(quarantine_id),
        })
    }

    /// Resumes every execution that has a checkpoint (the process stopped while it ran), from
    /// its last checkpoint: Tasks that had succeeded are not run again. Runs them with the
    /// same concurrency limit; returns one result per execution.
    pub async fn resume_interrupted(
        &self,
    ) -> Result<Vec<Result<ExecutionOutcome, RuntimeError>>, RuntimeError> {
        let arns = self
            .inner
            .history
            .interrupted()
            .map_err(store_err("interrupted executions"))?;
        let mut set = tokio::task::JoinSet::new();
        for (i, arn) in arns.into_iter().enumerate() {
            let rt = self.clone();
            set.spawn(async move { (i, rt.resume(&arn).await) });
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        results.sort_by_key(|(i, _)| *i);
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }

    /// Resumes one interrupted execution.
    pub async fn resume(&self, arn: &str) -> Result<ExecutionOutcome, RuntimeError> {
        let resume_err = |message: String| RuntimeError::Resume {
            arn: arn.to_string(),
            message,
        };
        let machine = arn
            .rsplit(':')
            .nth(1)
            .ok_or_else(|| resume_err("not an execution ARN".into()))?
            .to_string();
        let sm = self
            .inner
            .machines
            .get(&machine)
            .ok_or_else(|| resume_err(format!("no state machine {machine} in the template")))?;
        let closed = |rt: &Runtime| -> Result<Option<ExecutionOutcome>, RuntimeError> {
            let found = rt
                .find_exact(arn)
                .map_err(|e| resume_err(e.to_string()))?
                .filter(|e| e.status != "RUNNING");
            let Some(e) = found else { return Ok(None) };
            let outcome = match e.status.as_str() {
                "SUCCEEDED" => Outcome::Succeeded(e.output.unwrap_or(Value::Null)),
                _ => Outcome::Failed(Failure {
                    error: e.error.unwrap_or_else(|| e.status.clone()),
                    cause: e.cause,
                }),
            };
            rt.finished(
                &machine,
                Execution {
                    arn: e.arn,
                    outcome,
                },
                true,
            )
            .map(Some)
        };
        let Some(_reservation) = self.reserve(arn) else {
            // Already resumed in this process (e.g. joined by a parent's startExecution).
            self.wait_idle(arn).await;
            return closed(self)?.ok_or_else(|| resume_err("it stopped without closing".into()));
        };
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|e| resume_err(e.to_string()))?;
        match self
            .inner
            .engine
            .resume(sm, arn)
            .await
            .map_err(resume_err)?
        {
            Some(run) => self.finished(&machine, run, true),
            None => closed(self)?.ok_or_else(|| resume_err("it has no checkpoint".into())),
        }
    }
}

fn describe(e: ExecutionSummary) -> ExecutionDescription {
    ExecutionDescription {
        state_machine_arn: crate::template::state_machine_arn(&e.state_machine),
        execution_arn: e.arn,
        name: e.name,
        status: e.status,
        start_date: e.start_time,
        stop_date: e.stop_time,
        input: e.input.unwrap_or(Value::Null),
        output: e.output,
        error: e.error,
        cause: e.cause,
    }
}

/// `arn:aws:states:us-east-1:000000000000:execution:<machine>:<name>`.
pub fn execution_arn(machine: &str, name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT_ID}:execution:{machine}:{name}")
}

/// Whether Step Functions accepts `name` as an execution name: 1 to 80 characters, no
/// whitespace, no control characters, none of `< > { } [ ] ? * " # % \ ^ | ~ ` $ & , ; : /`.
pub fn is_valid_execution_name(name: &str) -> bool {
    const FORBIDDEN: &str = "<>{}[]?*\"#%\\^|~`$&,;:/";
    (1..=80).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !FORBIDDEN.contains(c))
}

/// The execution name for an event: its id when valid, else `event-<sha256 of the line>`.
pub fn execution_name(event_id: Option<&str>, line: &str) -> String {
    match event_id {
        Some(id) if is_valid_execution_name(id) => id.to_string(),
        _ => format!("event-{}", &sha256_hex(line)[..32]),
    }
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a rule target receives: the event, a constant, an `InputPath` or an `InputTransformer`.
pub fn target_input(input: &TargetInput, event: &Value, rule: &RuleSpec) -> Result<Value, String> {
    let read = |path: &str| -> Result<Option<Value>, String> {
        JsonPath::parse(path)
            .map(|p| p.read(event))
            .map_err(|e| format!("invalid path {path}: {}", e.0))
    };
    match input {
        TargetInput::Event => Ok(event.clone()),
        TargetInput::Constant(v) => Ok(v.clone()),
        TargetInput::Path(p) => Ok(read(p)?.unwrap_or(Value::Null)),
        TargetInput::Transformer { paths, template } => {
            let mut values = HashMap::new();
            for (name, path) in paths {
                values.insert(name.as_str(), read(path)?);
            }
            let text = render_input_template(template, &values, event, rule);
            serde_json::from_str(&text)
                .map_err(|e| format!("the InputTransformer produced invalid JSON ({e}): {text}"))
        }
    }
}

/// Replaces `<name>` placeholders as EventBridge does: inside a JSON string a value is inserted
/// as text (a string without its quotes, escaped), outside as JSON. A missing value is `null`
/// outside strings and empty inside. Reserved: `<aws.events.event>`,
/// `<aws.events.event.json>`, `<aws.events.rule-name>`, `<aws.events.rule-arn>`.
fn render_input_template(
    template: &str,
    values: &HashMap<&str, Option<Value>>,
    event: &Value,
    rule: &RuleSpec,
) -> String {
    let reserved = |name: &str| -> Option<Option<Value>> {
        match name {
            "aws.events.event" | "aws.events.event.json" => Some(Some(event.clone())),
            "aws.events.rule-name" => Some(Some(Value::String(rule.logical_id.clone()))),
            "aws.events.rule-arn" => Some(Some(Value::String(format!(
                "arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{}/{}",
                rule.event_bus, rule.logical_id
            )))),
            _ => None,
        }
    };
    let mut out = String::with_capacity(template.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
        {
            let name = &rest[1..end];
            let value = values.get(name).cloned().or_else(|| reserved(name));
            if let Some(value) = value {
                match (in_string, value) {
                    (false, Some(v)) => out.push_str(&v.to_string()),
                    (false, None) => out.push_str("null"),
                    (true, Some(Value::String(s))) => {
                        let quoted = Value::String(s).to_string();
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    }
                    (true, Some(v)) => {
                        let quoted = Value::String(v.to_string()).to_string();
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    }
                    (true, None) => {}
                }
                rest = &rest[end + 1..];
                escaped = false;
                continue;
            }
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}
