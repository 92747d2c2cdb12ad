//! The interpreter: runs a parsed [`StateMachine`] the way Step Functions does (input/output
//! processing, variables, Retry/Catch, Map/Parallel concurrency, history, checkpoints).

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::clock::{Clock, RealClock};
use crate::definition::*;
use crate::error::{Failure, names};
use crate::history::{HistoryEvent, HistorySink, NullSink};
use crate::items::{ItemSource, ResultSink};
use crate::mock::StateMocks;
use crate::task::{Resources, TaskContext};
use crate::template::{LazyContext, Scope, Template, missing_path, type_name};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Step Functions' payload limit: 256 KiB.
pub const PAYLOAD_LIMIT: usize = 256 * 1024;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs state machines. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Engine {
    pub(crate) resources: Arc<Resources>,
    clock: Arc<dyn Clock>,
    history: Arc<dyn HistorySink>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    mocks: Option<Arc<StateMocks>>,
    items: Option<Arc<dyn ItemSource>>,
    results: Option<Arc<dyn ResultSink>>,
    pub(crate) region: String,
    pub(crate) account: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("region", &self.region)
            .finish()
    }
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    engine: Engine,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineBuilder")
    }
}

impl EngineBuilder {
    /// Task handlers.
    pub fn resources(mut self, r: Resources) -> Self {
        self.engine.resources = Arc::new(r);
        self
    }
    /// The clock (default: real).
    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.engine.clock = c;
        self
    }
    /// The history sink (default: none).
    pub fn history(mut self, h: Arc<dyn HistorySink>) -> Self {
        self.engine.history = h;
        self
    }
    /// The checkpoint store (default: none).
    pub fn checkpoints(mut self, c: Arc<dyn CheckpointStore>) -> Self {
        self.engine.checkpoints = Some(c);
        self
    }
    /// MockConfig responses by state name (take precedence over handlers).
    pub fn mocks(mut self, m: StateMocks) -> Self {
        self.engine.mocks = Some(Arc::new(m));
        self
    }
    /// Where Distributed Map `ItemReader`s read objects from.
    pub fn item_source(mut self, s: Arc<dyn ItemSource>) -> Self {
        self.engine.items = Some(s);
        self
    }
    /// Where Distributed Map `ResultWriter`s write.
    pub fn result_sink(mut self, s: Arc<dyn ResultSink>) -> Self {
        self.engine.results = Some(s);
        self
    }
    /// Region and account used in ARNs (default us-east-1 / 123456789012).
    pub fn identity(mut self, region: &str, account: &str) -> Self {
        self.engine.region = region.into();
        self.engine.account = account.into();
        self
    }
    /// The engine.
    pub fn build(self) -> Engine {
        self.engine
    }
}

/// How to start one execution.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Execution name (default: a UUID).
    pub name: Option<String>,
    /// State machine name (default: `StateMachine`).
    pub state_machine_name: Option<String>,
    /// Role ARN shown in the context object.
    pub role_arn: Option<String>,
}

/// Outcome of an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// SUCCEEDED with its output.
    Succeeded(Value),
    /// FAILED (including TIMED_OUT, reported as States.Timeout).
    Failed(Failure),
}

impl Outcome {
    /// `{"status":"SUCCEEDED","output":...}` or `{"status":"FAILED","error":...,"cause":...}`.
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Succeeded(o) => json!({"status": "SUCCEEDED", "output": o}),
            Outcome::Failed(f) => json!({"status": "FAILED", "error": f.error, "cause": f.cause}),
        }
    }
}

/// A finished execution.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Execution ARN.
    pub arn: String,
    /// What happened.
    pub outcome: Outcome,
}

struct Exec {
    arn: String,
    name: String,
    sm_arn: String,
    sm_name: String,
    role_arn: String,
    /// The execution's input (`$$.Execution.Input`). Behind a lock only so that a checkpoint
    /// can borrow it by moving it out and back instead of cloning it.
    input: Mutex<Value>,
    start_time: String,
    ids: AtomicU64,
    mock_calls: Mutex<std::collections::HashMap<String, usize>>,
}

#[derive(Clone)]
struct Frame {
    vars: Map<String, Value>,
    map_item: Option<(usize, Value)>,
    prev: u64,
}

struct Step {
    output: Value,
    next: Option<usize>,
    /// `output` as JSON text when it was already serialised for the history (reused as the
    /// next state's input text).
    output_json: Option<String>,
}

impl Step {
    fn new(output: Value, next: Option<usize>) -> Step {
        Step {
            output,
            next,
            output_json: None,
        }
    }
}

/// Compact JSON text of a value: the same text as `Value::to_string`, written straight into a
/// byte buffer instead of through `fmt::Write`.
fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `{"truncated": false}`: the `inputDetails` / `outputDetails` of history payloads.
fn not_truncated() -> Value {
    let mut m = Map::with_capacity(1);
    m.insert("truncated".into(), Value::Bool(false));
    Value::Object(m)
}

/// Takes the lock even if a panicking thread poisoned it (the value is only moved in and out).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an ISO-8601 extended offset date-time (`2016-03-14T01:59:00Z`, `...+01:00`).
pub fn parse_timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    let b = s.as_bytes();
    if b.len() < 20 || b[10] != b'T' {
        return None;
    }
    let last = *b.last()?;
    if !(last == b'Z' || s[19..].contains(['+', '-'])) {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok()
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::builder().build()
    }
}

impl Engine {
    /// A builder with no handlers, the real clock and no history.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            engine: Engine {
                resources: Arc::new(Resources::new()),
                clock: Arc::new(RealClock),
                history: Arc::new(NullSink),
                checkpoints: None,
                mocks: None,
                items: None,
                results: None,
                region: "us-east-1".into(),
                account: "123456789012".into(),
            },
        }
    }

    /// The clock in use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs an execution to completion.
    pub async fn execute(
        &self,
        sm: &Arc<StateMachine>,
        input: Value,
        opts: StartOptions,
    ) -> Execution {
        let name = opts
            .name
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let sm_name = opts
            .state_machine_name
            .unwrap_or_else(|| "StateMachine".into());
        let ex = self.new_exec(
            &name,
            &sm_name,
            opts.role_arn,
            input.clone(),
            fmt_time(self.clock.now()),
            0,
        );
        let mut prev = 0;
        let mut input_json = None;
        self.emit(&ex, &mut prev, "ExecutionStarted", || {
            let text = json_text(&input);
            if self.payloads() {
                input_json = Some(text.clone());
            }
            ("executionStartedEventDetails".into(), json!({"input": text, "inputDetails": {"truncated": false}, "roleArn": ex.role_arn}))
        });
        let frame = Frame {
            vars: Map::new(),
            map_item: None,
            prev,
        };
        self.finish(sm, &ex, input, input_json, frame, sm.start_at)
            .await
    }

    /// Resumes an execution from its last checkpoint (after a crash). `Ok(None)` when no
    /// checkpoint exists for `execution_arn`.
    pub async fn resume(
        &self,
        sm: &Arc<StateMachine>,
        execution_arn: &str,
    ) -> Result<Option<Execution>, String> {
        let Some(store) = &self.checkpoints else {
            return Err("no checkpoint store configured".into());
        };
        let Some(cp) = store.load(execution_arn)? else {
            return Ok(None);
        };
        let Some(start) = sm.state(&cp.next_state) else {
            return Err(format!(
                "checkpoint refers to unknown state '{}'",
                cp.next_state
            ));
        };
        let name = execution_arn.rsplit(':').next().unwrap_or("").to_string();
        let sm_name = execution_arn
            .rsplit(':')
            .nth(1)
            .unwrap_or("StateMachine")
            .to_string();
        self.history.resumed(execution_arn, cp.last_event_id);
        let ex = self.new_exec(
            &name,
            &sm_name,
            None,
            cp.execution_input,
            cp.start_time,
            cp.last_event_id,
        );
        let frame = Frame {
            vars: cp.variables,
            map_item: None,
            prev: cp.last_event_id,
        };
        Ok(Some(
            self.finish(sm, &ex, cp.input, None, frame, start).await,
        ))
    }

    fn new_exec(
        &self,
        name: &str,
        sm_name: &str,
        role: Option<String>,
        input: Value,
        start_time: String,
        last_id: u64,
    ) -> Exec {
        let prefix = format!("arn:aws:states:{}:{}", self.region, self.account);
        Exec {
            arn: format!("{prefix}:execution:{sm_name}:{name}"),
            name: name.to_string(),
            sm_arn: format!("{prefix}:stateMachine:{sm_name}"),
            sm_name: sm_name.to_string(),
            role_arn: role
                .unwrap_or_else(|| format!("arn:aws:iam::{}:role/StepFunctionsRole", self.account)),
            input: Mutex::new(input),
            start_time,
            ids: AtomicU64::new(last_id),
            mock_calls: Mutex::new(Default::default()),
        }
    }

    async fn finish(
        &self,
        sm: &Arc<StateMachine>,
        ex: &Exec,
        input: Value,
        input_json: Option<String>,
        mut frame: Frame,
        start: usize,
    ) -> Execution {
        let run = self.run_machine(ex, sm, input, input_json, &mut frame, start, true);
        let res = match sm.timeout_seconds {
            Some(t) => match tokio::time::timeout(Duration::from_secs(t), run).await {
                Ok(r) => r,
                Err(_) => Err(Failure {
                    error: names::TIMEOUT.into(),
                    cause: None,
                }),
            },
            None => run.await,
        };
        let mut prev = frame.prev;
        let outcome = match res {
            Ok((out, out_json)) => {
                self.emit(ex, &mut prev, "ExecutionSucceeded", || {
                    let text = out_json.unwrap_or_else(|| json_text(&out));
                    (
                        "executionSucceededEventDetails".into(),
                        json!({"output": text, "outputDetails": {"truncated": false}}),
                    )
                });
                Outcome::Succeeded(out)
            }
            Err(f) => {
                let ty = if f.error == names::TIMEOUT && f.cause.is_none() {
                    "ExecutionTimedOut"
                } else {
                    "ExecutionFailed"
                };
                self.emit(ex, &mut prev, ty, || {
                    let mut d = Map::new();
                    d.insert("error".into(), Value::String(f.error.clone()));
                    if let Some(c) = &f.cause {
                        d.insert("cause".into(), Value::String(c.clone()));
                    }
                    (
                        if ty == "ExecutionTimedOut" {
                            "executionTimedOutEventDetails"
                        } else {
                            "executionFailedEventDetails"
                        }
                        .into(),
                        Value::Object(d),
                    )
                });
                Outcome::Failed(f)
            }
        };
        if let Some(store) = &self.checkpoints {
            let _ = store.clear(&ex.arn);
        }
        Execution {
            arn: ex.arn.clone(),
            outcome,
        }
    }

    /// Whether state-level history events carry their payloads.
    fn payloads(&self) -> bool {
        self.history.enabled() && self.history.payloads()
    }

    fn emit(
        &self,
        ex: &Exec,
        prev: &mut u64,
        ty: &str,
        details: impl FnOnce() -> (String, Value),
    ) -> u64 {
        let id = ex.ids.fetch_add(1, Ordering::Relaxed) + 1;
        if self.history.enabled() {
            let (k, v) = details();
            self.history.record(HistoryEvent {
                execution_arn: ex.arn.clone(),
                id,
                previous_event_id: *prev,
                timestamp: self.clock.now(),
                event_type: ty.to_string(),
                details: if k.is_empty() { None } else { Some((k, v)) },
            });
        }
        *prev = id;
        id
    }

    /// Runs states from `start` until one ends the machine; returns its output (and the
    /// output's JSON text when the history already serialised it).
    #[allow(clippy::too_many_arguments)]
    fn run_machine<'a>(
        &'a self,
        ex: &'a Exec,
        sm: &'a StateMachine,
        input: Value,
        input_json: Option<String>,
        frame: &'a mut Frame,
        start: usize,
        top: bool,
    ) -> BoxFut<'a, Result<(Value, Option<String>), Failure>> {
        Box::pin(async move {
            let mut cur = start;
            let mut input = input;
            let mut input_json = input_json;
            loop {
                let st = &sm.states[cur];
                let step = self.run_state(ex, st, input, input_json, frame).await?;
                match step.next {
                    Some(n) => {
                        cur = n;
                        input = step.output;
                        input_json = step.output_json;
                        if top && let Some(store) = &self.checkpoints {
                            self.save_checkpoint(
                                store.as_ref(),
                                ex,
                                &sm.states[n].name,
                                &mut input,
                                input_json.as_deref(),
                                frame,
                            )?;
                        }
                    }
                    None => return Ok((step.output, step.output_json)),
                }
            }
        })
    }

    /// Saves the checkpoint before `next_state`. The store only borrows the checkpoint, so the
    /// state input, the variables and the execution input are moved into it and back rather
    /// than cloned.
    fn save_checkpoint(
        &self,
        store: &dyn CheckpointStore,
        ex: &Exec,
        next_state: &str,
        input: &mut Value,
        input_json: Option<&str>,
        frame: &mut Frame,
    ) -> Result<(), Failure> {
        let mut execution_input = lock(&ex.input);
        let mut cp = Checkpoint {
            execution_arn: ex.arn.clone(),
            next_state: next_state.to_string(),
            input: std::mem::take(input),
            variables: std::mem::take(&mut frame.vars),
            execution_input: std::mem::take(&mut *execution_input),
            last_event_id: frame.prev,
            start_time: ex.start_time.clone(),
        };
        let saved = store.save_with_input_json(&cp, input_json);
        *input = std::mem::take(&mut cp.input);
        frame.vars = std::mem::take(&mut cp.variables);
        *execution_input = std::mem::take(&mut cp.execution_input);
        drop(execution_input);
        saved.map_err(|e| Failure::new(names::RUNTIME, format!("checkpoint failed: {e}")))
    }

    fn context(
        &self,
        ex: &Exec,
        st: &State,
        entered: DateTime<Utc>,
        retry: u32,
        frame: &Frame,
    ) -> Value {
        let execution_input = lock(&ex.input).clone();
        let mut c = json!({
            "Execution": {
                "Id": ex.arn, "Input": execution_input, "Name": ex.name, "RoleArn": ex.role_arn,
                "StartTime": ex.start_time, "RedriveCount": 0
            },
            "State": {"EnteredTime": fmt_time(entered), "Name": st.name, "RetryCount": retry},
            "StateMachine": {"Id": ex.sm_arn, "Name": ex.sm_name},
        });
        if let Some((i, v)) = &frame.map_item {
            c["Map"] = json!({"Item": {"Index": i, "Value": v}});
        }
        if let Kind::Task(t) = &st.kind
            && t.resource.ends_with(".waitForTaskToken")
        {
            c["Task"] = json!({"Token": format!("{}-{}", ex.name, st.name)});
        }
        c
    }

    async fn run_state(
        &self,
        ex: &Exec,
        st: &State,
        raw: Value,
        raw_json: Option<String>,
        frame: &mut Frame,
    ) -> Result<Step, Failure> {
        let mut raw = raw;
        let payloads = self.payloads();
        let entered_id = self.emit(ex, &mut frame.prev, &st.entered_event, || {
            let mut d = Map::with_capacity(3);
            d.insert("name".into(), Value::String(st.name.clone()));
            if payloads {
                let text = raw_json.unwrap_or_else(|| json_text(&raw));
                d.insert("input".into(), Value::String(text));
                d.insert("inputDetails".into(), not_truncated());
            }
            ("stateEnteredEventDetails".into(), Value::Object(d))
        });
        let entered = self.clock.now();
        let prefix = |f: Failure| -> Failure {
            if (f.error == names::RUNTIME
                || f.error == names::QUERY_EVALUATION
                || f.error == names::INTRINSIC)
                && f.cause
                    .as_deref()
                    .is_some_and(|c| !c.starts_with("An error occurred while executing the state"))
            {
                Failure::new(
                    f.error,
                    format!(
                        "An error occurred while executing the state '{}' (entered at the event id #{entered_id}). {}",
                        st.name,
                        f.cause.unwrap_or_default()
                    ),
                )
            } else {
                f
            }
        };
        let mut retry_count: u32 = 0;
        let mut attempts = vec![0u32; st.retry.len()];
        let result = loop {
            // On success `raw` may have been consumed; on failure it is intact.
            let r = self
                .attempt(ex, st, &mut raw, frame, entered, retry_count)
                .await;
            match r {
                Ok(step) => break Ok(step),
                Err(f) => {
                    let f = prefix(f);
                    if f.error == names::RUNTIME || matches!(st.kind, Kind::Fail { .. }) {
                        break Err(f);
                    }
                    if let Some(i) = st.retry.iter().position(|r| f.matches(&r.error_equals)) {
                        let r = &st.retry[i];
                        if attempts[i] < r.max_attempts {
                            let mut delay =
                                r.interval_seconds * r.backoff_rate.powi(attempts[i] as i32);
                            if let Some(m) = r.max_delay_seconds {
                                delay = delay.min(m);
                            }
                            if r.full_jitter {
                                delay *= rand::random::<f64>();
                            }
                            attempts[i] += 1;
                            retry_count += 1;
                            self.clock
                                .sleep(Duration::from_secs_f64(delay.max(0.0)))
                                .await;
                            continue;
                        }
                    }
                    if let Some(c) = st.catch.iter().find(|c| f.matches(&c.error_equals)) {
                        match self.apply_catch(ex, st, c, &mut raw, &f, frame, entered, retry_count)
                        {
                            Ok(step) => break Ok(step),
                            Err(e) => break Err(prefix(e)),
                        }
                    }
                    break Err(f);
                }
            }
        };
        let mut step = result?;
        if payload_exceeds(&step.output) {
            return Err(Failure::new(
                names::DATA_LIMIT,
                format!(
                    "The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.",
                    st.name
                ),
            ));
        }
        let mut output_json = None;
        self.emit(ex, &mut frame.prev, &st.exited_event, || {
            let mut d = Map::with_capacity(3);
            d.insert("name".into(), Value::String(st.name.clone()));
            if payloads {
                let text = json_text(&step.output);
                output_json = Some(text.clone());
                d.insert("output".into(), Value::String(text));
                d.insert("outputDetails".into(), not_truncated());
            }
            ("stateExitedEventDetails".into(), Value::Object(d))
        });
        step.output_json = output_json;
        Ok(step)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_catch(
        &self,
        ex: &Exec,
        st: &State,
        c: &Catcher,
        raw: &mut Value,
        f: &Failure,
        frame: &mut Frame,
        entered: DateTime<Utc>,
        retry: u32,
    ) -> Result<Step, Failure> {
        let mut err = Map::new();
        err.insert("Error".into(), Value::String(f.error.clone()));
        if let Some(cause) = &f.cause {
            err.insert("Cause".into(), Value::String(cause.clone()));
        }
        let err = Value::Object(err);
        let build = || self.context(ex, st, entered, retry, frame);
        let ctx = LazyContext::new(&build);
        let mut new_vars = None;
        let output = if st.ql == QueryLanguage::Jsonata {
            let scope = Scope {
                input: raw,
                context: &ctx,
                vars: &frame.vars,
                result: None,
                error_output: Some(&err),
            };
            if let Some(a) = &c.assign {
                new_vars = Some(a.eval(&scope, "Assign")?);
            }
            match &c.output {
                Some(o) => o.eval(&scope, "Output")?,
                None => err,
            }
        } else {
            if let Some(a) = &c.assign {
                let scope = Scope {
                    input: &err,
                    context: &ctx,
                    vars: &frame.vars,
                    result: None,
                    error_output: None,
                };
                new_vars = Some(a.eval(&scope, "Assign")?);
            }
            apply_result_path_mut(&c.result_path, raw, err)?
        };
        drop(ctx);
        assign_vars(&mut frame.vars, new_vars);
        Ok(Step::new(output, Some(c.next)))
    }

    pub(crate) fn input_path(
        &self,
        st: &State,
        raw: &Value,
        scope_ctx: &LazyContext<'_>,
        vars: &Map<String, Value>,
    ) -> Result<Value, Failure> {
        Ok(self
            .select_input(st, raw, scope_ctx, vars)?
            .unwrap_or_else(|| raw.clone()))
    }

    /// InputPath (JSONPath): `None` when the effective input is `raw` itself, which then is
    /// borrowed rather than cloned.
    fn select_input(
        &self,
        st: &State,
        raw: &Value,
        scope_ctx: &LazyContext<'_>,
        vars: &Map<String, Value>,
    ) -> Result<Option<Value>, Failure> {
        match &st.input_path {
            PathField::Default => Ok(None),
            PathField::Null => Ok(Some(Value::Object(Map::new()))),
            PathField::Path(p) => {
                let scope = Scope {
                    input: raw,
                    context: scope_ctx,
                    vars,
                    result: None,
                    error_output: None,
                };
                scope.read(p).map(Some).ok_or_else(|| {
                    Failure::new(
                        names::RUNTIME,
                        format!(
                            "Invalid path '{}' : No results for path: {}",
                            p.source(),
                            p.bracketed()
                        ),
                    )
                })
            }
        }
    }

    async fn attempt(
        &self,
        ex: &Exec,
        st: &State,
        raw: &mut Value,
        frame: &mut Frame,
        entered: DateTime<Utc>,
        retry: u32,
    ) -> Result<Step, Failure> {
        let jsonata = st.ql == QueryLanguage::Jsonata;
        // Synchronous states first: no awaits, so the lazily built context can live on the stack.
        match &st.kind {
            Kind::Pass { .. } | Kind::Choice { .. } | Kind::Succeed | Kind::Fail { .. } => {
                return self.sync_state(ex, st, raw, frame, entered, retry);
            }
            _ => {}
        }
        // Phase 1: effective input.
        let (effective, extra) = {
            let build = || self.context(ex, st, entered, retry, frame);
            let ctx = LazyContext::new(&build);
            let selected = if jsonata {
                None
            } else {
                self.select_input(st, raw, &ctx, &frame.vars)?
            };
            let input = selected.as_ref().unwrap_or(raw);
            let scope = Scope {
                input,
                context: &ctx,
                vars: &frame.vars,
                result: None,
                error_output: None,
            };
            let evaluated = match &st.parameters {
                Some(t) => Some(t.eval(&scope, if jsonata { "Arguments" } else { "Parameters" })?),
                None => None,
            };
            let extra = self.prepare(st, &scope, evaluated.as_ref().unwrap_or(input))?;
            // `raw` stays for ResultPath, Retry and Catch: only the effective input is owned.
            let effective = match (evaluated, selected) {
                (Some(v), _) | (None, Some(v)) => v,
                (None, None) => raw.clone(),
            };
            (effective, extra)
        };
        // Phase 2: the work.
        let result = match &st.kind {
            Kind::Task(t) => {
                self.run_task(ex, st, t, effective, &extra, frame, entered, retry)
                    .await?
            }
            Kind::Wait(_) => {
                if let Prep::Wait(d) = extra {
                    self.clock.sleep(d).await;
                }
                effective
            }
            Kind::Parallel { branches } => {
                self.run_parallel(ex, st, branches, effective, frame)
                    .await?
            }
            Kind::Map(m) => match extra {
                Prep::Map(run) => {
                    self.run_map(ex, st, m, effective, run, frame, entered, retry)
                        .await?
                }
                _ => unreachable!("map prep"),
            },
            _ => unreachable!("sync states handled above"),
        };
        // Phase 3: output processing.
        let build = || self.context(ex, st, entered, retry, frame);
        let ctx = LazyContext::new(&build);
        let (output, new_vars) = if matches!(st.kind, Kind::Wait(_)) {
            self.post_plain(st, raw, Some(result), &ctx, &frame.vars)?
        } else {
            self.post(st, raw, result, &ctx, &frame.vars)?
        };
        drop(ctx);
        assign_vars(&mut frame.vars, new_vars);
        Ok(Step::new(output, st.next))
    }

    /// Evaluates everything a state needs before awaiting (wait time, map items...).
    fn prepare(&self, st: &State, scope: &Scope<'_>, effective: &Value) -> Result<Prep, Failure> {
        match &st.kind {
            Kind::Wait(w) => Ok(Prep::Wait(self.wait_duration(w, scope)?)),
            Kind::Task(t) => {
                let timeout = match &t.timeout {
                    Some(n) => Some(self.number(n, scope, "TimeoutSeconds")?),
                    None => None,
                };
                Ok(Prep::Task(timeout))
            }
            Kind::Map(m) => {
                let items = self.map_items(st, m, scope, effective)?;
                let conc = match &m.max_concurrency {
                    Some(n) => {
                        let v = self.int_field(n, scope, "MaxConcurrencyPath")?;
                        if v < 0 {
                            return Err(Failure::new(
                                names::RUNTIME,
                                "MaxConcurrency cannot be negative.",
                            ));
                        }
                        v as usize
                    }
                    None => 0,
                };
                let tc = match &m.tolerated_count {
                    Some(n) => {
                        let v = self.int_field(n, scope, "ToleratedFailureCountPath")?;
                        if v < 0 {
                            return Err(Failure::new(
                                names::RUNTIME,
                                "ToleratedFailureCount cannot be negative.",
                            ));
                        }
                        Some(v as usize)
                    }
                    None => None,
                };
                let tp = match &m.tolerated_percentage {
                    Some(n) => {
                        let v = self.number(n, scope, "ToleratedFailurePercentagePath")?;
                        if !(0.0..=100.0).contains(&v) {
                            return Err(Failure::new(
                                names::RUNTIME,
                                "ToleratedFailurePercentage must be between 0 and 100.",
                            ));
                        }
                        Some(v)
                    }
                    None => None,
                };
                Ok(Prep::Map(MapRun {
                    items,
                    concurrency: conc,
                    tolerated_count: tc,
                    tolerated_percentage: tp,
                }))
            }
            _ => Ok(Prep::None),
        }
    }

    pub(crate) fn number(
        &self,
        n: &NumberField,
        scope: &Scope<'_>,
        field: &str,
    ) -> Result<f64, Failure> {
        match n {
            NumberField::Lit(x) => Ok(*x),
            NumberField::Path(p) => {
                let v = scope.read(p).ok_or_else(|| missing_path(p, field, scope))?;
                v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse::<f64>().ok())).ok_or_else(|| Failure::new(names::RUNTIME, format!("The {field} field refers to value {v} which is not a valid number: {}", p.source())))
            }
            NumberField::Jsonata(j) => {
                let v = scope
                    .jsonata(j, field.trim_end_matches("Path"))?
                    .unwrap_or(Value::Null);
                v.as_f64().ok_or_else(|| {
                    Failure::new(names::QUERY_EVALUATION, format!("The JSONata expression '{}' specified for the field '{}' returned an unexpected result type. Expected 'number', but was '{}' for value: {v}", j.src.trim(), field.trim_end_matches("Path"), type_name(&v)))
                })
            }
        }
    }

    pub(crate) fn int_field(
        &self,
        n: &NumberField,
        scope: &Scope<'_>,
        field: &str,
    ) -> Result<i64, Failure> {
        if let NumberField::Path(p) = n {
            let v = scope.read(p).ok_or_else(|| missing_path(p, field, scope))?;
            let parsed = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse::<i64>().ok()));
            return match parsed {
                Some(i) => Ok(i),
                None => Err(Failure::new(
                    names::RUNTIME,
                    format!(
                        "The {field} field refers to value {v} which is not a valid integer: {}",
                        p.source()
                    ),
                )),
            };
        }
        Ok(self.number(n, scope, field)? as i64)
    }

    fn wait_duration(&self, w: &WaitSpec, scope: &Scope<'_>) -> Result<Duration, Failure> {
        let now = self.clock.now();
        let until = |t: DateTime<FixedOffset>| -> Result<Duration, Failure> {
            let d = t.with_timezone(&Utc) - now;
            if d.num_days() > 366 {
                return Err(Failure::new(
                    names::RUNTIME,
                    "Wait state delay is too long.",
                ));
            }
            Ok(d.to_std().unwrap_or_default())
        };
        match w {
            WaitSpec::Seconds(NumberField::Path(p)) => {
                let v = scope
                    .read(p)
                    .ok_or_else(|| missing_path(p, "SecondsPath", scope))?;
                let Some(n) = v.as_i64() else {
                    return Err(Failure::new(
                        names::RUNTIME,
                        format!(
                            "The SecondsPath parameter cannot be parsed as a long value: {} == {v}",
                            p.source()
                        ),
                    ));
                };
                if n < 0 {
                    return Err(Failure::new(
                        names::RUNTIME,
                        format!(
                            "The SecondsPath parameter references a negative value: {} == {n}",
                            p.source()
                        ),
                    ));
                }
                Ok(Duration::from_secs(n as u64))
            }
            WaitSpec::Seconds(n) => {
                let s = self.number(n, scope, "Seconds")?;
                if s < 0.0 {
                    return Err(Failure::new(
                        names::QUERY_EVALUATION,
                        "The Seconds field cannot be negative.",
                    ));
                }
                Ok(Duration::from_secs_f64(s.trunc()))
            }
            WaitSpec::Timestamp(s) => {
                until(parse_timestamp(s).ok_or_else(|| {
                    Failure::new(names::RUNTIME, format!("Invalid timestamp {s}"))
                })?)
            }
            WaitSpec::TimestampPath(p) => {
                let v = scope
                    .read(p)
                    .ok_or_else(|| missing_path(p, "TimestampPath", scope))?;
                match v.as_str().and_then(parse_timestamp) {
                    Some(t) => until(t),
                    None => Err(Failure::new(
                        names::RUNTIME,
                        format!(
                            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                            p.source(),
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        ),
                    )),
                }
            }
            WaitSpec::TimestampJsonata(j) => {
                let v = scope.jsonata(j, "Timestamp")?.unwrap_or(Value::Null);
                match v.as_str().and_then(parse_timestamp) {
                    Some(t) => until(t),
                    None => Err(Failure::new(
                        names::QUERY_EVALUATION,
                        format!(
                            "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {}",
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        ),
                    )),
                }
            }
        }
    }

    pub(crate) fn map_items(
        &self,
        st: &State,
        m: &MapSpec,
        scope: &Scope<'_>,
        effective: &Value,
    ) -> Result<Vec<Value>, Failure> {
        if let Some(reader) = &m.item_reader {
            let Some(src) = &self.items else {
                return Err(Failure::new(
                    names::ITEM_READER,
                    "No item source is configured for ItemReader",
                ));
            };
            return crate::items::read_items(src.as_ref(), reader, scope)
                .map_err(|e| Failure::new(names::ITEM_READER, e));
        }
        if st.ql == QueryLanguage::Jsonata {
            let v = match &m.items {
                Some(Template::Jsonata(j)) => match scope.jsonata(j, "Items")? {
                    Some(v) => {
                        if !v.is_array() {
                            return Err(Failure::new(
                                names::QUERY_EVALUATION,
                                format!(
                                    "The JSONata expression '{}' specified for the field 'Items' returned an unexpected result type. Expected 'array', but was '{}' for value: {v}",
                                    j.src.trim(),
                                    type_name(&v)
                                ),
                            ));
                        }
                        v
                    }
                    None => {
                        return Err(Failure::new(
                            names::QUERY_EVALUATION,
                            format!(
                                "The JSONata expression '{}' specified for the field 'Items' returned an unsupported result type.",
                                j.src.trim()
                            ),
                        ));
                    }
                },
                Some(t) => t.eval(scope, "Items")?,
                None => effective.clone(),
            };
            return match v {
                Value::Array(a) => Ok(a),
                other => Err(Failure::new(
                    names::QUERY_EVALUATION,
                    format!("Map state input must be an array but was: {other}"),
                )),
            };
        }
        let v = match &m.items_path {
            PathField::Path(p) => {
                let inner = Scope {
                    input: scope.input,
                    context: scope.context,
                    vars: scope.vars,
                    result: None,
                    error_output: None,
                };
                inner.read(p).ok_or_else(|| {
                    Failure::new(
                        names::RUNTIME,
                        format!(
                            "Invalid path '{}' : No results for path: {}",
                            p.source(),
                            p.bracketed()
                        ),
                    )
                })?
            }
            _ => scope.input.clone(),
        };
        match v {
            Value::Array(a) => Ok(a),
            other => Err(Failure::new(
                names::RUNTIME,
                format!("Map state input must be an array but was: {other}"),
            )),
        }
    }

    fn sync_state(
        &self,
        ex: &Exec,
        st: &State,
        raw: &mut Value,
        frame: &mut Frame,
        entered: DateTime<Utc>,
        retry: u32,
    ) -> Result<Step, Failure> {
        let jsonata = st.ql == QueryLanguage::Jsonata;
        let build = || self.context(ex, st, entered, retry, frame);
        let ctx = LazyContext::new(&build);
        let vars = &frame.vars;
        let step = match &st.kind {
            Kind::Pass { result } => {
                if jsonata {
                    let (output, nv) = self.post_jsonata(st, raw, None, &ctx, vars)?;
                    (Step::new(output, st.next), nv)
                } else {
                    let selected = self.select_input(st, raw, &ctx, vars)?;
                    let r = match result {
                        Some(r) => r.clone(),
                        None => match &st.parameters {
                            Some(t) => {
                                let scope = Scope {
                                    input: selected.as_ref().unwrap_or(raw),
                                    context: &ctx,
                                    vars,
                                    result: None,
                                    error_output: None,
                                };
                                t.eval(&scope, "Parameters")?
                            }
                            None => match selected {
                                Some(v) => v,
                                // The input passes through: move it when ResultPath does not
                                // need it any more and nothing can catch a later failure.
                                None if result_replaces_input(st)
                                    && st.retry.is_empty()
                                    && st.catch.is_empty() =>
                                {
                                    std::mem::take(raw)
                                }
                                None => raw.clone(),
                            },
                        },
                    };
                    let (output, nv) = self.post(st, raw, r, &ctx, vars)?;
                    (Step::new(output, st.next), nv)
                }
            }
            Kind::Succeed => {
                let (output, nv) = if jsonata {
                    self.post_jsonata(st, raw, None, &ctx, vars)?
                } else {
                    let selected = self.select_input(st, raw, &ctx, vars)?;
                    self.post_plain(st, raw, selected, &ctx, vars)?
                };
                (Step::new(output, None), nv)
            }
            Kind::Fail { error, cause } => {
                let scope = Scope {
                    input: raw,
                    context: &ctx,
                    vars,
                    result: None,
                    error_output: None,
                };
                let text = |t: &Option<Template>, field: &str| -> Result<Option<String>, Failure> {
                    match t {
                        None => Ok(None),
                        Some(t) => {
                            let v = t.eval(&scope, field)?;
                            Ok(Some(match v {
                                Value::String(s) => s,
                                other => other.to_string(),
                            }))
                        }
                    }
                };
                let ef = if matches!(error, Some(Template::Const(_)) | Some(Template::Jsonata(_))) {
                    "Error"
                } else {
                    "ErrorPath"
                };
                let cf = if matches!(cause, Some(Template::Const(_)) | Some(Template::Jsonata(_))) {
                    "Cause"
                } else {
                    "CausePath"
                };
                let e = text(error, ef)?;
                let c = text(cause, cf)?;
                return Err(Failure {
                    error: e.unwrap_or_default(),
                    cause: c,
                });
            }
            Kind::Choice { choices, default } => {
                let selected = if jsonata {
                    None
                } else {
                    self.select_input(st, raw, &ctx, vars)?
                };
                let (next, nv, output) = {
                    let input = selected.as_ref().unwrap_or(raw);
                    let scope = Scope {
                        input,
                        context: &ctx,
                        vars,
                        result: None,
                        error_output: None,
                    };
                    let mut chosen = None;
                    for c in choices {
                        if eval_rule(&c.rule, &scope)? {
                            chosen = Some(c);
                            break;
                        }
                    }
                    let (next, rule_assign, rule_output) = match chosen {
                        Some(c) => (c.next, c.assign.as_ref(), c.output.as_ref()),
                        None => match default {
                            Some(d) => (*d, None, None),
                            None => return Err(Failure::new(names::NO_CHOICE, "No Matches!")),
                        },
                    };
                    let mut nv = None;
                    let assign = rule_assign.or(st.assign.as_ref());
                    if let Some(a) = assign {
                        nv = Some(a.eval(&scope, "Assign")?);
                    }
                    // `None`: the output is the (effective) input itself.
                    let output = if jsonata {
                        match rule_output.or(st.output.as_ref()) {
                            Some(o) => Some(o.eval(&scope, "Output")?),
                            None => None,
                        }
                    } else {
                        match &st.output_path {
                            PathField::Default => None,
                            op => Some(output_path(op, input, &scope)?),
                        }
                    };
                    (next, nv, output)
                };
                let output = match (output, selected) {
                    (Some(v), _) | (None, Some(v)) => v,
                    (None, None) => std::mem::take(raw),
                };
                (Step::new(output, Some(next)), nv)
            }
            _ => unreachable!("async states"),
        };
        drop(ctx);
        assign_vars(&mut frame.vars, step.1);
        Ok(step.0)
    }

    /// Output processing for states without a result (Wait, Succeed in JSONPath): `input` is
    /// the effective input, `None` when it is `raw` itself (then moved out when it is the output).
    fn post_plain(
        &self,
        st: &State,
        raw: &mut Value,
        input: Option<Value>,
        ctx: &LazyContext<'_>,
        vars: &Map<String, Value>,
    ) -> Result<(Value, Option<Value>), Failure> {
        if st.ql == QueryLanguage::Jsonata {
            let result = raw.clone();
            return self.post_jsonata(st, raw, Some(result), ctx, vars);
        }
        let output = {
            let doc = input.as_ref().unwrap_or(raw);
            let scope = Scope {
                input: doc,
                context: ctx,
                vars,
                result: None,
                error_output: None,
            };
            let nv = match &st.assign {
                Some(a) => Some(a.eval(&scope, "Assign")?),
                None => None,
            };
            match &st.output_path {
                PathField::Default => (None, nv),
                op => (Some(output_path(op, doc, &scope)?), nv),
            }
        };
        match output {
            (Some(v), nv) => Ok((v, nv)),
            (None, nv) => Ok((input.unwrap_or_else(|| std::mem::take(raw)), nv)),
        }
    }

    /// ResultSelector, Assign, ResultPath and OutputPath (JSONPath) or Assign and Output
    /// (JSONata). `raw` is moved into the output when ResultPath keeps it, once no failure
    /// that Retry or Catch could handle can happen any more.
    fn post(
        &self,
        st: &State,
        raw: &mut Value,
        result: Value,
        ctx: &LazyContext<'_>,
        vars: &Map<String, Value>,
    ) -> Result<(Value, Option<Value>), Failure> {
        if st.ql == QueryLanguage::Jsonata {
            return self.post_jsonata(st, raw, Some(result), ctx, vars);
        }
        let result = match &st.result_selector {
            Some(rs) => {
                let scope = Scope {
                    input: &result,
                    context: ctx,
                    vars,
                    result: None,
                    error_output: None,
                };
                rs.eval(&scope, "ResultSelector")?
            }
            None => result,
        };
        let nv = match &st.assign {
            Some(a) => {
                let scope = Scope {
                    input: &result,
                    context: ctx,
                    vars,
                    result: None,
                    error_output: None,
                };
                Some(a.eval(&scope, "Assign")?)
            }
            None => None,
        };
        let combined = apply_result_path_mut(&st.result_path, raw, result)?;
        // Past this point only States.Runtime can fail, which Retry and Catch never handle.
        match &st.output_path {
            PathField::Default => Ok((combined, nv)),
            op => {
                let scope = Scope {
                    input: &combined,
                    context: ctx,
                    vars,
                    result: None,
                    error_output: None,
                };
                Ok((output_path(op, &combined, &scope)?, nv))
            }
        }
    }

    /// Assign and Output (JSONata). `result` is `$states.result`; `None` for Pass and Succeed,
    /// whose output defaults to `raw` itself (moved out at the end).
    fn post_jsonata(
        &self,
        st: &State,
        raw: &mut Value,
        result: Option<Value>,
        ctx: &LazyContext<'_>,
        vars: &Map<String, Value>,
    ) -> Result<(Value, Option<Value>), Failure> {
        let is_pass = matches!(st.kind, Kind::Pass { .. } | Kind::Succeed);
        let (out, nv) = {
            let scope = Scope {
                input: raw,
                context: ctx,
                vars,
                result: if is_pass {
                    None
                } else {
                    Some(result.as_ref().unwrap_or(raw))
                },
                error_output: None,
            };
            let nv = match &st.assign {
                Some(a) => Some(a.eval(&scope, "Assign")?),
                None => None,
            };
            let out = match &st.output {
                Some(o) => Some(o.eval(&scope, "Output")?),
                None => None,
            };
            (out, nv)
        };
        let out = match out {
            Some(v) => v,
            None => result.unwrap_or_else(|| std::mem::take(raw)),
        };
        Ok((out, nv))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_task(
        &self,
        ex: &Exec,
        st: &State,
        t: &TaskSpec,
        input: Value,
        prep: &Prep,
        frame: &mut Frame,
        _entered: DateTime<Utc>,
        retry: u32,
    ) -> Result<Value, Failure> {
        let (rtype, rname) = resource_parts(&t.resource);
        let plain_lambda = t.resource.starts_with("arn:aws:lambda:");
        let payloads = self.payloads();
        if plain_lambda {
            self.emit(ex, &mut frame.prev, "LambdaFunctionScheduled", || {
                let mut d = Map::with_capacity(3);
                d.insert("resource".into(), Value::String(t.resource.clone()));
                if payloads {
                    d.insert("input".into(), Value::String(json_text(&input)));
                    d.insert("inputDetails".into(), not_truncated());
                }
                (
                    "lambdaFunctionScheduledEventDetails".into(),
                    Value::Object(d),
                )
            });
            self.emit(ex, &mut frame.prev, "LambdaFunctionStarted", || {
                (String::new(), Value::Null)
            });
        } else {
            self.emit(ex, &mut frame.prev, "TaskScheduled", || {
                let mut d = Map::with_capacity(4);
                d.insert("resourceType".into(), Value::String(rtype.clone()));
                d.insert("resource".into(), Value::String(rname.clone()));
                d.insert("region".into(), Value::String(self.region.clone()));
                if payloads {
                    d.insert("parameters".into(), Value::String(json_text(&input)));
                }
                ("taskScheduledEventDetails".into(), Value::Object(d))
            });
            self.emit(ex, &mut frame.prev, "TaskStarted", || {
                (
                    "taskStartedEventDetails".into(),
                    json!({"resourceType": rtype, "resource": rname}),
                )
            });
        }
        let timeout = match prep {
            Prep::Task(t) => *t,
            _ => None,
        };
        let ctx = TaskContext {
            execution_arn: ex.arn.clone(),
            state_name: st.name.clone(),
            retry_count: retry,
            state_machine_arn: ex.sm_arn.clone(),
            task_token: None,
        };
        let call = self.call_resource(ex, st, &t.resource, input, &ctx);
        let res = match timeout.or(Some(99_999_999.0)) {
            Some(secs) if secs > 0.0 => {
                match tokio::time::timeout(Duration::from_secs_f64(secs), call).await {
                    Ok(r) => r,
                    Err(_) => Err(Failure {
                        error: names::TIMEOUT.into(),
                        cause: None,
                    }),
                }
            }
            _ => call.await,
        };
        let res = res.and_then(|v| {
            if payload_exceeds(&v) {
                let who = if t.resource.starts_with("arn:aws:states:::") { rtype.clone() } else { t.resource.clone() };
                Err(Failure::new(names::DATA_LIMIT, format!("The state/task '{who}' returned a result with a size exceeding the maximum number of bytes service limit.")))
            } else {
                Ok(v)
            }
        });
        match &res {
            Ok(v) => {
                let output = |d: &mut Map<String, Value>| {
                    if payloads {
                        d.insert("output".into(), Value::String(json_text(v)));
                        d.insert("outputDetails".into(), not_truncated());
                    }
                };
                if plain_lambda {
                    self.emit(ex, &mut frame.prev, "LambdaFunctionSucceeded", || {
                        let mut d = Map::with_capacity(2);
                        output(&mut d);
                        (
                            "lambdaFunctionSucceededEventDetails".into(),
                            Value::Object(d),
                        )
                    });
                } else {
                    self.emit(ex, &mut frame.prev, "TaskSucceeded", || {
                        let mut d = Map::with_capacity(4);
                        d.insert("resourceType".into(), Value::String(rtype.clone()));
                        d.insert("resource".into(), Value::String(rname.clone()));
                        output(&mut d);
                        ("taskSucceededEventDetails".into(), Value::Object(d))
                    });
                }
            }
            Err(f) => {
                let timed_out = f.error == names::TIMEOUT;
                let (ty, key) = match (plain_lambda, timed_out) {
                    (true, true) => (
                        "LambdaFunctionTimedOut",
                        "lambdaFunctionTimedOutEventDetails",
                    ),
                    (true, false) => ("LambdaFunctionFailed", "lambdaFunctionFailedEventDetails"),
                    (false, true) => ("TaskTimedOut", "taskTimedOutEventDetails"),
                    (false, false) => ("TaskFailed", "taskFailedEventDetails"),
                };
                self.emit(ex, &mut frame.prev, ty, || {
                    let mut d = json!({"error": f.error});
                    if let Some(c) = &f.cause {
                        d["cause"] = Value::String(c.clone());
                    }
                    if !plain_lambda {
                        d["resourceType"] = Value::String(rtype.clone());
                        d["resource"] = Value::String(rname.clone());
                    }
                    (key.into(), d)
                });
            }
        }
        res
    }

    async fn call_resource(
        &self,
        ex: &Exec,
        st: &State,
        resource: &str,
        input: Value,
        ctx: &TaskContext,
    ) -> Result<Value, Failure> {
        if let Some(m) = &self.mocks {
            let n = {
                let mut calls = ex.mock_calls.lock().expect("mock calls");
                let c = calls.entry(st.name.clone()).or_insert(0);
                *c += 1;
                *c - 1
            };
            if let Some(r) = m.response(&st.name, n) {
                return r.map_err(Into::into);
            }
        }
        let Some(h) = self.resources.find(resource) else {
            return Err(Failure::new(
                names::TASK_FAILED,
                format!("No task handler is registered for resource '{resource}'"),
            ));
        };
        h.invoke(resource, input, ctx).await.map_err(Into::into)
    }

    async fn run_parallel(
        &self,
        ex: &Exec,
        st: &State,
        branches: &[Arc<StateMachine>],
        input: Value,
        frame: &mut Frame,
    ) -> Result<Value, Failure> {
        self.emit(ex, &mut frame.prev, "ParallelStateStarted", || {
            (String::new(), Value::Null)
        });
        let base = frame.clone();
        let mut futs = FuturesUnordered::new();
        for (i, b) in branches.iter().enumerate() {
            let mut f = base.clone();
            let input = input.clone();
            futs.push(Box::pin(async move {
                let r = self
                    .run_machine(ex, b, input, None, &mut f, b.start_at, false)
                    .await
                    .map(|(v, _)| v);
                (i, r)
            })
                as BoxFut<'_, (usize, Result<Value, Failure>)>);
        }
        let mut results = vec![Value::Null; branches.len()];
        while let Some((i, r)) = futs.next().await {
            match r {
                Ok(v) => results[i] = v,
                Err(f) => {
                    drop(futs);
                    self.emit(ex, &mut frame.prev, "ParallelStateFailed", || {
                        (
                            "parallelStateFailedEventDetails".into(),
                            json!({"error": f.error, "cause": f.cause}),
                        )
                    });
                    let _ = st;
                    return Err(f);
                }
            }
        }
        self.emit(ex, &mut frame.prev, "ParallelStateSucceeded", || {
            (String::new(), Value::Null)
        });
        Ok(Value::Array(results))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_map(
        &self,
        ex: &Exec,
        st: &State,
        m: &MapSpec,
        effective: Value,
        run: MapRun,
        frame: &mut Frame,
        entered: DateTime<Utc>,
        retry: u32,
    ) -> Result<Value, Failure> {
        let MapRun {
            items,
            concurrency: conc,
            tolerated_count: tol_count,
            tolerated_percentage: tol_pct,
        } = run;
        let n = items.len();
        let distributed = m.mode == MapMode::Distributed;
        self.emit(ex, &mut frame.prev, "MapStateStarted", || {
            ("mapStateStartedEventDetails".into(), json!({"length": n}))
        });
        // Build each iteration's input: ItemSelector sees the Map's effective input as `$`
        // and the item as $$.Map.Item.Value.
        let mut inputs = Vec::with_capacity(n);
        for (i, item) in items.into_iter().enumerate() {
            let v = match &m.item_selector {
                Some(sel) => {
                    let build = || {
                        let mut c = self.context(ex, st, entered, retry, frame);
                        c["Map"] = json!({"Item": {"Index": i, "Value": item}});
                        c
                    };
                    let ctx = LazyContext::new(&build);
                    let scope = Scope {
                        input: &effective,
                        context: &ctx,
                        vars: &frame.vars,
                        result: None,
                        error_output: None,
                    };
                    sel.eval(&scope, "ItemSelector")?
                }
                None => item,
            };
            inputs.push(v);
        }
        let inputs = match batch(m, inputs) {
            Ok(v) => v,
            Err(e) => return Err(e),
        };
        let n = inputs.len();
        let limit = if conc == 0 { usize::MAX } else { conc };
        let base = frame.clone();
        let mut results: Vec<Value> = vec![Value::Null; n];
        let mut failed = vec![false; n];
        let mut failures = 0usize;
        let mut first_failure: Option<Failure> = None;
        let mut pending = inputs.into_iter().enumerate();
        let mut futs = FuturesUnordered::new();
        let processor = &m.processor;
        let spawn = |i: usize,
                     input: Value,
                     prev_holder: &mut u64|
         -> BoxFut<'_, (usize, Result<Value, Failure>)> {
            let mut f = base.clone();
            f.map_item = None;
            let it_name = st.name.clone();
            self.emit(ex, prev_holder, "MapIterationStarted", || {
                (
                    "mapIterationStartedEventDetails".into(),
                    json!({"name": it_name, "index": i}),
                )
            });
            f.prev = *prev_holder;
            Box::pin(async move {
                let r = self
                    .run_machine(
                        ex,
                        processor,
                        input,
                        None,
                        &mut f,
                        processor.start_at,
                        false,
                    )
                    .await
                    .map(|(v, _)| v);
                (i, r)
            })
        };
        for _ in 0..limit.min(n) {
            if let Some((i, input)) = pending.next() {
                futs.push(spawn(i, input, &mut frame.prev));
            }
        }
        while let Some((i, r)) = futs.next().await {
            match r {
                Ok(v) => {
                    self.emit(ex, &mut frame.prev, "MapIterationSucceeded", || {
                        (
                            "mapIterationSucceededEventDetails".into(),
                            json!({"name": st.name, "index": i}),
                        )
                    });
                    results[i] = v;
                }
                Err(f) => {
                    self.emit(ex, &mut frame.prev, "MapIterationFailed", || {
                        (
                            "mapIterationFailedEventDetails".into(),
                            json!({"name": st.name, "index": i}),
                        )
                    });
                    failures += 1;
                    let tolerated = distributed
                        && (tol_count.is_some_and(|c| failures <= c)
                            || tol_pct.is_some_and(|p| {
                                (failures as f64) * 100.0 / (n.max(1) as f64) <= p
                            }));
                    if !tolerated {
                        drop(futs);
                        let f = if distributed && (tol_count.is_some() || tol_pct.is_some()) {
                            Failure::new(
                                names::EXCEED_TOLERATED,
                                "The specified tolerated failure threshold was exceeded",
                            )
                        } else {
                            f
                        };
                        self.emit(ex, &mut frame.prev, "MapStateFailed", || {
                            (String::new(), Value::Null)
                        });
                        return Err(f);
                    }
                    if first_failure.is_none() {
                        first_failure = Some(f.clone());
                    }
                    results[i] = json!({"Error": f.error, "Cause": f.cause});
                    failed[i] = true;
                }
            }
            if let Some((i, input)) = pending.next() {
                futs.push(spawn(i, input, &mut frame.prev));
            }
        }
        self.emit(ex, &mut frame.prev, "MapStateSucceeded", || {
            (String::new(), Value::Null)
        });
        if let (Some(w), Some(sink)) = (&m.result_writer, &self.results) {
            return crate::items::write_results(sink.as_ref(), w, &ex.arn, &results, &failed)
                .map_err(|e| Failure::new(names::RESULT_WRITER, e));
        }
        Ok(Value::Array(results))
    }
}

fn batch(m: &MapSpec, inputs: Vec<Value>) -> Result<Vec<Value>, Failure> {
    let Some(b) = &m.item_batcher else {
        return Ok(inputs);
    };
    let size = b
        .get("MaxItemsPerBatch")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
        .max(1) as usize;
    let batch_input = b.get("BatchInput").cloned();
    Ok(inputs
        .chunks(size.min(inputs.len().max(1)))
        .map(|c| {
            let mut o = json!({"Items": c});
            if let Some(bi) = &batch_input {
                o["BatchInput"] = bi.clone();
            }
            o
        })
        .collect())
}

enum Prep {
    None,
    Wait(Duration),
    Task(Option<f64>),
    Map(MapRun),
}

/// A Map state's evaluated run settings: its items, `MaxConcurrency` (0 = unbounded) and the
/// Distributed Map's tolerated failures.
struct MapRun {
    items: Vec<Value>,
    concurrency: usize,
    tolerated_count: Option<usize>,
    tolerated_percentage: Option<f64>,
}

fn assign_vars(vars: &mut Map<String, Value>, new: Option<Value>) {
    if let Some(Value::Object(m)) = new {
        for (k, v) in m {
            vars.insert(k, v);
        }
    }
}

pub(crate) fn apply_result_path(
    rp: &PathField,
    raw: &Value,
    result: Value,
) -> Result<Value, Failure> {
    match rp {
        PathField::Default => Ok(result),
        PathField::Null => Ok(raw.clone()),
        PathField::Path(p) => {
            if p.is_root() {
                return Ok(result);
            }
            let mut base = raw.clone();
            if !base.is_object() {
                return Err(Failure::new(
                    names::RESULT_PATH,
                    format!(
                        "Unable to apply ResultPath \"{}\" to input {}",
                        p.source(),
                        raw
                    ),
                ));
            }
            p.write(&mut base, result)
                .map_err(|e| Failure::new(names::RESULT_PATH, e))?;
            Ok(base)
        }
    }
}

/// ResultPath applied to an input the caller no longer needs: `raw` is moved into the
/// result instead of cloned, but left intact when this fails (Catch then sees it whole).
pub(crate) fn apply_result_path_mut(
    rp: &PathField,
    raw: &mut Value,
    result: Value,
) -> Result<Value, Failure> {
    match rp {
        PathField::Default => Ok(result),
        PathField::Null => Ok(std::mem::take(raw)),
        PathField::Path(p) if p.is_root() => Ok(result),
        PathField::Path(p) if raw.is_object() && p.can_write(raw) => {
            let mut base = std::mem::take(raw);
            p.write(&mut base, result)
                .map_err(|e| Failure::new(names::RESULT_PATH, e))?;
            Ok(base)
        }
        // The failures, with their messages.
        PathField::Path(_) => apply_result_path(rp, raw, result),
    }
}

/// True when the state's ResultPath replaces its input with the result (so a Pass state
/// without a result may hand its input straight through).
fn result_replaces_input(st: &State) -> bool {
    match &st.result_path {
        PathField::Default => true,
        PathField::Path(p) => p.is_root(),
        PathField::Null => false,
    }
}

pub(crate) fn output_path(op: &PathField, v: &Value, scope: &Scope<'_>) -> Result<Value, Failure> {
    match op {
        PathField::Default => Ok(v.clone()),
        PathField::Null => Ok(json!({})),
        PathField::Path(p) => scope.read(p).ok_or_else(|| {
            Failure::new(
                names::RUNTIME,
                format!(
                    "Invalid path '{}' : No results for path: {}",
                    p.source(),
                    p.bracketed()
                ),
            )
        }),
    }
}

fn resource_parts(r: &str) -> (String, String) {
    if let Some(rest) = r.strip_prefix("arn:aws:states:::") {
        let mut parts = rest.splitn(2, ':');
        let a = parts.next().unwrap_or("").to_string();
        let b = parts.next().unwrap_or("").to_string();
        if a == "aws-sdk" {
            let mut p2 = b.splitn(2, ':');
            let svc = p2.next().unwrap_or("").to_string();
            return (
                format!("aws-sdk:{svc}"),
                p2.next().unwrap_or("").to_string(),
            );
        }
        return (a, b);
    }
    if r.starts_with("arn:aws:lambda:") {
        return ("lambda".into(), r.to_string());
    }
    ("activity".into(), r.to_string())
}

/// True when the value's JSON encoding exceeds 256 KiB (stops counting early).
pub fn payload_exceeds(v: &Value) -> bool {
    fn size(v: &Value, budget: &mut isize) {
        if *budget < 0 {
            return;
        }
        match v {
            Value::Null => *budget -= 4,
            Value::Bool(_) => *budget -= 5,
            Value::Number(_) => *budget -= 8,
            Value::String(s) => *budget -= s.len() as isize + 2,
            Value::Array(a) => {
                *budget -= 2 + a.len() as isize;
                for x in a {
                    size(x, budget);
                }
            }
            Value::Object(m) => {
                *budget -= 2;
                for (k, x) in m {
                    *budget -= k.len() as isize + 4;
                    size(x, budget);
                }
            }
        }
    }
    let mut budget = PAYLOAD_LIMIT as isize;
    size(v, &mut budget);
    if budget >= 0 {
        return false;
    }
    // Close to the limit: measure exactly.
    serde_json::to_vec(v)
        .map(|b| b.len() > PAYLOAD_LIMIT)
        .unwrap_or(true)
}

/// Evaluates a Choice rule.
pub(crate) fn eval_rule(rule: &Rule, scope: &Scope<'_>) -> Result<bool, Failure> {
    match rule {
        Rule::And(rs) => {
            for r in rs {
                if !eval_rule(r, scope)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Rule::Or(rs) => {
            for r in rs {
                if eval_rule(r, scope)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Rule::Not(r) => Ok(!eval_rule(r, scope)?),
        Rule::Condition(t) => {
            let v = t.eval(scope, "Condition")?;
            match v {
                Value::Bool(b) => Ok(b),
                other => Err(Failure::new(
                    names::QUERY_EVALUATION,
                    format!(
                        "The JSONata expression specified for the field 'Condition' returned an unexpected result type. Expected 'boolean', but was '{}' for value: {other}",
                        type_name(&other)
                    ),
                )),
            }
        }
        Rule::Compare {
            variable,
            op,
            operand,
        } => {
            let var = scope.read(variable);
            if *op == Op::IsPresent {
                let present = match &var {
                    None => false,
                    Some(Value::Array(a)) if !variable.is_definite() => !a.is_empty(),
                    Some(_) => true,
                };
                return Ok(Some(present) == operand_lit(operand).as_bool());
            }
            let Some(var) = var else {
                return Err(Failure::new(
                    names::RUNTIME,
                    format!(
                        "Invalid path '{}': The choice state's condition path references an invalid value.",
                        variable.source()
                    ),
                ));
            };
            let rhs = match operand {
                Operand::Lit(v) => v.clone(),
                Operand::Path(p) => scope.read(p).ok_or_else(|| {
                    Failure::new(names::RUNTIME, format!("Invalid path '{}': The choice state's condition path references an invalid value.", p.source()))
                })?,
            };
            Ok(compare(*op, &var, &rhs))
        }
    }
}

fn operand_lit(o: &Operand) -> Value {
    match o {
        Operand::Lit(v) => v.clone(),
        Operand::Path(_) => Value::Null,
    }
}

fn compare(op: Op, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering as O;
    let strs = || Some((a.as_str()?, b.as_str()?));
    let nums = || {
        Some((
            a.as_f64().filter(|_| a.is_number())?,
            b.as_f64().filter(|_| b.is_number())?,
        ))
    };
    let ts = || Some((parse_timestamp(a.as_str()?)?, parse_timestamp(b.as_str()?)?));
    let ord_s = || strs().map(|(x, y)| x.encode_utf16().cmp(y.encode_utf16()));
    let ord_n = || nums().and_then(|(x, y)| x.partial_cmp(&y));
    let ord_t = || ts().map(|(x, y)| x.cmp(&y));
    match op {
        Op::StringEquals => strs().is_some_and(|(x, y)| x == y),
        Op::StringLessThan => ord_s() == Some(O::Less),
        Op::StringGreaterThan => ord_s() == Some(O::Greater),
        Op::StringLessThanEquals => matches!(ord_s(), Some(O::Less | O::Equal)),
        Op::StringGreaterThanEquals => matches!(ord_s(), Some(O::Greater | O::Equal)),
        Op::StringMatches => strs().is_some_and(|(x, y)| string_matches(x, y)),
        Op::NumericEquals => ord_n() == Some(O::Equal),
        Op::NumericLessThan => ord_n() == Some(O::Less),
        Op::NumericGreaterThan => ord_n() == Some(O::Greater),
        Op::NumericLessThanEquals => matches!(ord_n(), Some(O::Less | O::Equal)),
        Op::NumericGreaterThanEquals => matches!(ord_n(), Some(O::Greater | O::Equal)),
        Op::BooleanEquals => matches!((a, b), (Value::Bool(x), Value::Bool(y)) if x == y),
        Op::TimestampEquals => ord_t() == Some(O::Equal),
        Op::TimestampLessThan => ord_t() == Some(O::Less),
        Op::TimestampGreaterThan => ord_t() == Some(O::Greater),
        Op::TimestampLessThanEquals => matches!(ord_t(), Some(O::Less | O::Equal)),
        Op::TimestampGreaterThanEquals => matches!(ord_t(), Some(O::Greater | O::Equal)),
        Op::IsNull => a.is_null() == b.as_bool().unwrap_or(false),
        Op::IsNumeric => a.is_number() == b.as_bool().unwrap_or(false),
        Op::IsString => a.is_string() == b.as_bool().unwrap_or(false),
        Op::IsBoolean => a.is_boolean() == b.as_bool().unwrap_or(false),
        Op::IsTimestamp => {
            a.as_str().and_then(parse_timestamp).is_some() == b.as_bool().unwrap_or(false)
        }
        Op::IsPresent => unreachable!("handled above"),
    }
}

fn string_matches(s: &str, pattern: &str) -> bool {
    // `*` matches any run; `\*` and `\\` are literals.
    let mut parts: Vec<String> = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    parts.last_mut().expect("part").push(n);
                }
            }
            '*' => parts.push(String::new()),
            c => parts.last_mut().expect("part").push(c),
        }
    }
    if parts.len() == 1 {
        return s == parts[0];
    }
    let Some(mut rest) = s.strip_prefix(parts[0].as_str()) else {
        return false;
    };
    for (i, p) in parts[1..].iter().enumerate() {
        if i + 2 == parts.len() {
            return rest.ends_with(p.as_str()) && rest.len() >= p.len();
        }
        match rest.find(p.as_str()) {
            Some(pos) => rest = &rest[pos + p.len()..],
            None => return false,
        }
    }
    true
}
