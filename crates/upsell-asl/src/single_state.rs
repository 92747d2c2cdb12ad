//! Step Functions' TestState API: runs one state (given alone, or picked from a whole machine by
//! `stateName`) once, with optional mocked task/Map/Parallel results, a given context object,
//! variables and retry/Map-failure configuration, and reports the status (SUCCEEDED, FAILED,
//! RETRIABLE, CAUGHT_ERROR), the output, the next state and the data after each processing step
//! (`inspectionData`), as AWS does. Request validation follows AWS's ValidationException /
//! InvalidDefinition messages.

use crate::definition::{Kind, ParseOptions, PathField, QueryLanguage, State, StateMachine, parse};
use crate::error::{Failure, InvalidDefinition, names};
use crate::exec::{Engine, apply_result_path, fmt_time, output_path};
use crate::task::TaskContext;
use crate::template::{LazyContext, Scope, Template};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// How much `inspectionData` the response carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InspectionLevel {
    /// Status, output, error and next state only.
    #[default]
    Info,
    /// Plus the data after each input/output processing step.
    Debug,
    /// As DEBUG (HTTP Task request/response details are not modelled).
    Trace,
}

/// How a mocked result is checked against the AWS API response shape of the task's resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidationMode {
    /// Types and constraints of the fields present, and required fields (AWS's default).
    #[default]
    Strict,
    /// Types and constraints of the fields present only.
    Present,
    /// No check.
    None,
}

/// `mock`: the result or the error the state's work produces instead of running it.
#[derive(Debug, Clone, Default)]
pub struct TestMock {
    /// The result as JSON text (AWS takes a string).
    pub result: Option<String>,
    /// The error and cause to fail with.
    pub error_output: Option<(String, Option<String>)>,
    /// Mocked result validation.
    pub field_validation_mode: FieldValidationMode,
}

/// `stateConfiguration`.
#[derive(Debug, Clone, Default)]
pub struct StateConfiguration {
    /// Retries already made by the matching retrier.
    pub retrier_retry_count: Option<u32>,
    /// The state inside a Map/Parallel that raises the mocked error.
    pub error_caused_by_state: Option<String>,
    /// How many Map iterations failed.
    pub map_iteration_failure_count: Option<u64>,
    /// The items an ItemReader would have read (JSON text).
    pub map_item_reader_data: Option<String>,
}

/// A TestState request.
#[derive(Debug, Clone, Default)]
pub struct TestStateRequest {
    /// One state, or a whole machine (then `state_name` picks the state, at any depth).
    pub definition: Value,
    /// The state to test in a whole-machine definition.
    pub state_name: Option<String>,
    /// The state input.
    pub input: Value,
    /// Inspection level.
    pub inspection_level: InspectionLevel,
    /// Mocked result or error.
    pub mock: Option<TestMock>,
    /// The context object (`$$`), replacing the generated one.
    pub context: Option<Value>,
    /// Workflow variables in scope.
    pub variables: Option<Map<String, Value>>,
    /// Retry / Map failure configuration.
    pub state_configuration: StateConfiguration,
    /// Execution role; AWS requires it to run a Task for real.
    pub role_arn: Option<String>,
    /// `revealSecrets`.
    pub reveal_secrets: bool,
}

/// Outcome of the tested state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStatus {
    /// The state completed.
    Succeeded,
    /// The state failed and nothing handles the error.
    Failed,
    /// The state failed and a retrier would retry it.
    Retriable,
    /// The state failed and a catcher handled the error.
    CaughtError,
}

impl TestStatus {
    /// AWS's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TestStatus::Succeeded => "SUCCEEDED",
            TestStatus::Failed => "FAILED",
            TestStatus::Retriable => "RETRIABLE",
            TestStatus::CaughtError => "CAUGHT_ERROR",
        }
    }
}

/// A TestState response.
#[derive(Debug, Clone)]
pub struct TestStateResponse {
    /// Status.
    pub status: TestStatus,
    /// State output (SUCCEEDED, CAUGHT_ERROR).
    pub output: Option<Value>,
    /// Error name.
    pub error: Option<String>,
    /// Error cause.
    pub cause: Option<String>,
    /// Next state (Next, the chosen Choice branch, or the catcher's Next).
    pub next_state: Option<String>,
    /// Data after each processing step (DEBUG and TRACE).
    pub inspection_data: Option<Map<String, Value>>,
}

impl TestStateResponse {
    /// The response as AWS shapes it (with `output` as a JSON value rather than JSON text).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("status".into(), json!(self.status.as_str()));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("output", self.output.clone());
        put("error", self.error.clone().map(Value::String));
        put("cause", self.cause.clone().map(Value::String));
        put("nextState", self.next_state.clone().map(Value::String));
        put(
            "inspectionData",
            self.inspection_data.clone().map(Value::Object),
        );
        Value::Object(m)
    }
}

/// A rejected TestState request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TestStateError {
    /// AWS's ValidationException.
    #[error("ValidationException: {0}")]
    Validation(String),
    /// AWS's InvalidDefinition.
    #[error("InvalidDefinition: {0}")]
    InvalidDefinition(String),
}

impl TestStateError {
    /// `ValidationException` or `InvalidDefinition`.
    pub fn kind(&self) -> &'static str {
        match self {
            TestStateError::Validation(_) => "ValidationException",
            TestStateError::InvalidDefinition(_) => "InvalidDefinition",
        }
    }
    /// The message.
    pub fn message(&self) -> &str {
        match self {
            TestStateError::Validation(m) | TestStateError::InvalidDefinition(m) => m,
        }
    }
}

fn invalid(e: InvalidDefinition) -> TestStateError {
    TestStateError::InvalidDefinition(e.to_string())
}

fn validation(msg: impl Into<String>) -> TestStateError {
    TestStateError::Validation(msg.into())
}

fn json_text(field: &str, v: &Value) -> Result<Option<Value>, TestStateError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => serde_json::from_str(s)
            .map(Some)
            .map_err(|_| validation(format!("{field} must be valid JSON"))),
        other => Ok(Some(other.clone())),
    }
}

impl TestStateRequest {
    /// Builds a request from the TestState API's JSON request (`definition`, `input`,
    /// `context`, `variables` and `mock.result` as JSON text, as AWS takes them).
    pub fn from_api_json(req: &Value) -> Result<TestStateRequest, TestStateError> {
        let s = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_string);
        let definition = match req.get("definition") {
            Some(Value::String(t)) => serde_json::from_str(t).map_err(|_| {
                TestStateError::InvalidDefinition(
                    "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: Definition must be a valid JSON object at /'".into(),
                )
            })?,
            Some(v) => v.clone(),
            None => return Err(validation("definition is required")),
        };
        let input = json_text("input", req.get("input").unwrap_or(&Value::Null))?
            .unwrap_or_else(|| json!({}));
        let context = json_text("context", req.get("context").unwrap_or(&Value::Null))?;
        let variables = match json_text("variables", req.get("variables").unwrap_or(&Value::Null))?
        {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(validation("variables must be a JSON object")),
        };
        let inspection_level = match s("inspectionLevel").as_deref() {
            None | Some("INFO") => InspectionLevel::Info,
            Some("DEBUG") => InspectionLevel::Debug,
            Some("TRACE") => InspectionLevel::Trace,
            Some(o) => {
                return Err(validation(format!(
                    "inspectionLevel must be one of INFO, DEBUG, TRACE, not '{o}'"
                )));
            }
        };
        let mock = match req.get("mock") {
            None | Some(Value::Null) => None,
            Some(m) => {
                let mode = match m.get("fieldValidationMode").and_then(Value::as_str) {
                    None | Some("STRICT") => FieldValidationMode::Strict,
                    Some("PRESENT") => FieldValidationMode::Present,
                    Some("NONE") => FieldValidationMode::None,
                    Some(o) => {
                        return Err(validation(format!(
                            "fieldValidationMode must be one of STRICT, PRESENT, NONE, not '{o}'"
                        )));
                    }
                };
                let result = match m.get("result") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) => Some(t.clone()),
                    Some(other) => Some(other.to_string()),
                };
                let error_output = m.get("errorOutput").filter(|v| !v.is_null()).map(|e| {
                    (
                        e.get("error")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        e.get("cause").and_then(Value::as_str).map(str::to_string),
                    )
                });
                Some(TestMock {
                    result,
                    error_output,
                    field_validation_mode: mode,
                })
            }
        };
        let sc = req.get("stateConfiguration").cloned().unwrap_or(json!({}));
        let state_configuration = StateConfiguration {
            retrier_retry_count: sc
                .get("retrierRetryCount")
                .and_then(Value::as_u64)
                .map(|n| n as u32),
            error_caused_by_state: sc
                .get("errorCausedByState")
                .and_then(Value::as_str)
                .map(str::to_string),
            map_iteration_failure_count: sc.get("mapIterationFailureCount").and_then(Value::as_u64),
            map_item_reader_data: sc
                .get("mapItemReaderData")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        Ok(TestStateRequest {
            definition,
            state_name: s("stateName"),
            input,
            inspection_level,
            mock,
            context,
            variables,
            state_configuration,
            role_arn: s("roleArn"),
            reveal_secrets: req
                .get("revealSecrets")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// The name a single-state definition is tested under.
const SINGLE_STATE_NAME: &str = "StateName";

/// Wraps a single state into a machine; the states it names (Next, Default, Choices, Catch)
/// become placeholder Succeed states so the definition validates as AWS validates it.
fn wrap_single_state(state: &Value) -> Value {
    let mut targets: Vec<String> = Vec::new();
    let mut add = |v: Option<&Value>| {
        if let Some(Value::String(s)) = v
            && s != SINGLE_STATE_NAME
            && !targets.contains(s)
        {
            targets.push(s.clone());
        }
    };
    add(state.get("Next"));
    add(state.get("Default"));
    for key in ["Choices", "Catch"] {
        if let Some(Value::Array(a)) = state.get(key) {
            for c in a {
                add(c.get("Next"));
            }
        }
    }
    let mut states = Map::new();
    states.insert(SINGLE_STATE_NAME.into(), state.clone());
    for t in targets {
        states.insert(t, json!({"Type": "Succeed"}));
    }
    json!({"StartAt": SINGLE_STATE_NAME, "States": states})
}

/// Finds a state by name at any depth (Parallel branches, Map processors).
fn find_state<'a>(sm: &'a StateMachine, name: &str) -> Option<(&'a StateMachine, &'a State)> {
    for st in &sm.states {
        if st.name == name {
            return Some((sm, st));
        }
    }
    for st in &sm.states {
        let found = match &st.kind {
            Kind::Parallel { branches } => branches.iter().find_map(|b| find_state(b, name)),
            Kind::Map(m) => find_state(&m.processor, name),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn contains_state(sm: &StateMachine, name: &str) -> bool {
    find_state(sm, name).is_some()
}

/// Runs one state as Step Functions' TestState API does. Tasks without a mock go through the
/// engine's registered handlers; Wait states do not wait.
pub async fn run_test_state(
    engine: &Engine,
    req: TestStateRequest,
) -> Result<TestStateResponse, TestStateError> {
    if req.reveal_secrets && req.mock.is_some() {
        return Err(validation(
            "TestState does not support RevealSecrets when a mock is specified.",
        ));
    }
    let whole = req.definition.get("States").is_some();
    let sm: Arc<StateMachine> = if whole {
        parse(&req.definition, ParseOptions::default()).map_err(invalid)?
    } else {
        parse(&wrap_single_state(&req.definition), ParseOptions::default()).map_err(invalid)?
    };
    let (_, st) = match (&req.state_name, whole) {
        (Some(n), true) => find_state(&sm, n).ok_or_else(|| {
            validation(format!(
                "State '{n}' does not exist in the state machine definition"
            ))
        })?,
        (None, true) => (&*sm, &sm.states[sm.start_at]),
        (_, false) => (&*sm, &sm.states[sm.start_at]),
    };
    let mock = req.mock.as_ref();
    let is_map_or_parallel = matches!(st.kind, Kind::Map(_) | Kind::Parallel { .. });
    if let Some(m) = mock {
        if !matches!(st.kind, Kind::Task(_)) && !is_map_or_parallel {
            return Err(validation(format!(
                "State type '{}' is not supported when a mock is specified",
                st.type_name
            )));
        }
        if m.result.is_some() == m.error_output.is_some() {
            return Err(validation(
                "A mock must specify exactly one of result and errorOutput",
            ));
        }
    } else if is_map_or_parallel {
        return Err(TestStateError::InvalidDefinition(
            "TestState API does not support Map or Parallel states. Supported state types include: [Task, Wait, Pass, Succeed, Fail, Choice]".into(),
        ));
    } else if matches!(st.kind, Kind::Task(_)) && req.role_arn.is_none() {
        return Err(validation(
            "RoleArn must be specified when testing a Task state",
        ));
    }
    let mocked: Option<Value> = match mock.and_then(|m| m.result.as_deref()) {
        Some(t) => Some(
            serde_json::from_str(t).map_err(|_| validation("Mocked result must be valid JSON"))?,
        ),
        None => None,
    };
    if let (Some(r), Some(m)) = (&mocked, mock) {
        match &st.kind {
            Kind::Parallel { .. } if !r.is_array() => {
                return Err(validation("Mocked result must be an array."));
            }
            Kind::Map(spec) if spec.result_writer.is_some() && !r.is_object() => {
                return Err(validation("Mocked result must be a JSON object."));
            }
            Kind::Map(spec) if spec.result_writer.is_none() && !r.is_array() => {
                return Err(validation("Mocked result must be an array."));
            }
            Kind::Task(t) => {
                crate::mock_shapes::validate(&t.resource, r, m.field_validation_mode)
                    .map_err(|e| validation(format!("Mock result schema validation error: {e}")))?;
            }
            _ => {}
        }
    }
    let cfg = &req.state_configuration;
    if let Kind::Map(spec) = &st.kind {
        if let Some(name) = &cfg.error_caused_by_state
            && !contains_state(&spec.processor, name)
        {
            return Err(validation(format!(
                "errorCausedByState '{name}' is not a state of the Map's ItemProcessor"
            )));
        }
        if let (Some(n), Some(Value::Array(r))) = (cfg.map_iteration_failure_count, &mocked)
            && n > r.len() as u64
        {
            return Err(validation(
                "Map iteration failure count must be less than or equal to the number of Map iterations",
            ));
        }
    }
    let name = if whole {
        st.name.clone()
    } else {
        SINGLE_STATE_NAME.to_string()
    };
    let mut run = Run {
        engine,
        req: &req,
        st,
        name,
        mocked,
        insp: Map::new(),
        vars: req.variables.clone().unwrap_or_default(),
        context: Value::Null,
    };
    run.context = match &req.context {
        Some(c) => c.clone(),
        None => run.default_context(),
    };
    run.insp.insert("input".into(), req.input.clone());
    let result = run.execute().await;
    let mut resp = match result {
        Ok((output, next)) => TestStateResponse {
            status: TestStatus::Succeeded,
            output: Some(output),
            error: None,
            cause: None,
            next_state: next,
            inspection_data: None,
        },
        Err(f) => run.handle_failure(f),
    };
    if req.inspection_level != InspectionLevel::Info {
        if !run.vars.is_empty() {
            run.insp
                .insert("variables".into(), Value::Object(run.vars.clone()));
        }
        resp.inspection_data = Some(std::mem::take(&mut run.insp));
    }
    Ok(resp)
}

struct Run<'a> {
    engine: &'a Engine,
    req: &'a TestStateRequest,
    st: &'a State,
    name: String,
    mocked: Option<Value>,
    insp: Map<String, Value>,
    vars: Map<String, Value>,
    context: Value,
}

impl Run<'_> {
    fn default_context(&self) -> Value {
        let e = self.engine;
        let now = fmt_time(e.clock().now());
        let exec_name = uuid::Uuid::new_v4().to_string();
        let sm_name = "TestStateMachine";
        let prefix = format!("arn:aws:states:{}:{}", e.region, e.account);
        let mut state = json!({"Name": self.name, "EnteredTime": now});
        if matches!(
            self.st.kind,
            Kind::Task(_) | Kind::Map(_) | Kind::Parallel { .. }
        ) {
            state["RetryCount"] = json!(
                self.req
                    .state_configuration
                    .retrier_retry_count
                    .unwrap_or(0)
            );
        }
        let mut c = json!({
            "Execution": {
                "Id": format!("{prefix}:express:{sm_name}:{exec_name}"),
                "Input": self.req.input,
                "Name": exec_name,
                "RoleArn": self.req.role_arn,
                "StartTime": now,
            },
            "StateMachine": {"Id": format!("{prefix}:stateMachine:{sm_name}"), "Name": sm_name},
            "State": state,
        });
        if let Kind::Task(t) = &self.st.kind
            && t.resource.ends_with(".waitForTaskToken")
        {
            c["Task"] = json!({"Token": uuid::Uuid::new_v4().to_string()});
        }
        c
    }

    fn record(&mut self, key: &str, v: &Value) {
        self.insp.insert(key.into(), v.clone());
    }

    fn next_name(&self) -> Option<String> {
        self.st.next.map(|_| self.next_target())
    }

    /// The name of the state's `Next` target in its own machine.
    fn next_target(&self) -> String {
        // `State::next` is an index into the owning machine; names are looked up from the
        // source definition to stay independent of placeholder wrapping.
        let def = if self.req.definition.get("States").is_some() {
            find_state_def(&self.req.definition, &self.st.name)
        } else {
            Some(&self.req.definition)
        };
        def.and_then(|d| d.get("Next"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// Runs the state; `Ok((output, next state))`.
    async fn execute(&mut self) -> Result<(Value, Option<String>), Failure> {
        let st = self.st;
        let raw = self.req.input.clone();
        let jsonata = st.ql == QueryLanguage::Jsonata;
        let ctx_value = self.context.clone();
        let build = move || ctx_value.clone();
        match &st.kind {
            Kind::Pass { result } => {
                let ctx = LazyContext::new(&build);
                if jsonata {
                    let (out, nv) = self.jsonata_output(&raw, None, &ctx)?;
                    self.assign(nv);
                    return Ok((out, self.next_name()));
                }
                let r = match result {
                    Some(r) => {
                        self.record("result", r);
                        r.clone()
                    }
                    None => {
                        let input = self.engine.input_path(st, &raw, &ctx, &self.vars)?;
                        self.record("afterInputPath", &input);
                        let p = match &st.parameters {
                            Some(t) => t.eval(&self.scope(&input, &ctx), "Parameters")?,
                            None => input,
                        };
                        self.record("afterParameters", &p);
                        p
                    }
                };
                let out = self.jsonpath_post(&raw, r, &ctx)?;
                Ok((out, self.next_name()))
            }
            Kind::Succeed | Kind::Wait(_) => {
                let ctx = LazyContext::new(&build);
                if jsonata {
                    if let Kind::Wait(w) = &st.kind {
                        // Evaluated for its errors; TestState does not wait.
                        let vars = self.vars.clone();
                        let scope = Scope {
                            input: &raw,
                            context: &ctx,
                            vars: &vars,
                            result: None,
                            error_output: None,
                        };
                        self.wait_check(w, &scope)?;
                    }
                    let (out, nv) = self.jsonata_output(&raw, None, &ctx)?;
                    self.assign(nv);
                    return Ok((out, self.next_name()));
                }
                let input = self.engine.input_path(st, &raw, &ctx, &self.vars)?;
                self.record("afterInputPath", &input);
                let vars = self.vars.clone();
                let scope = Scope {
                    input: &input,
                    context: &ctx,
                    vars: &vars,
                    result: None,
                    error_output: None,
                };
                if let Kind::Wait(w) = &st.kind {
                    self.wait_check(w, &scope)?;
                }
                let nv = match &st.assign {
                    Some(a) => Some(a.eval(&scope, "Assign")?),
                    None => None,
                };
                let out = output_path(&st.output_path, &input, &scope)?;
                self.assign(nv);
                Ok((out, self.next_name()))
            }
            Kind::Fail { error, cause } => {
                let ctx = LazyContext::new(&build);
                if !jsonata {
                    self.record("afterInputPath", &raw);
                }
                let scope = self.scope(&raw, &ctx);
                let text = |t: &Option<Template>, field: &str| -> Result<Option<String>, Failure> {
                    match t {
                        None => Ok(None),
                        Some(t) => Ok(Some(match t.eval(&scope, field)? {
                            Value::String(s) => s,
                            other => other.to_string(),
                        })),
                    }
                };
                let e = text(error, "Error")?;
                let c = text(cause, "Cause")?;
                Err(Failure {
                    error: e.unwrap_or_default(),
                    cause: c,
                })
            }
            Kind::Choice { choices, default } => {
                let ctx = LazyContext::new(&build);
                let input = if jsonata {
                    raw.clone()
                } else {
                    let i = self.engine.input_path(st, &raw, &ctx, &self.vars)?;
                    self.record("afterInputPath", &i);
                    i
                };
                let vars = self.vars.clone();
                let scope = Scope {
                    input: &input,
                    context: &ctx,
                    vars: &vars,
                    result: None,
                    error_output: None,
                };
                let def = self.state_def();
                let mut chosen = None;
                for (i, c) in choices.iter().enumerate() {
                    if crate::exec::eval_rule(&c.rule, &scope)? {
                        chosen = Some((i, c));
                        break;
                    }
                }
                let (next, assign, out_t) = match chosen {
                    Some((i, c)) => (
                        def.and_then(|d| d.pointer(&format!("/Choices/{i}/Next")))
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        c.assign.as_ref().or(st.assign.as_ref()),
                        c.output.as_ref().or(st.output.as_ref()),
                    ),
                    None if default.is_some() => (
                        def.and_then(|d| d.get("Default"))
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        st.assign.as_ref(),
                        st.output.as_ref(),
                    ),
                    None => return Err(Failure::new(names::NO_CHOICE, "No Matches!")),
                };
                let nv = match assign {
                    Some(a) => Some(a.eval(&scope, "Assign")?),
                    None => None,
                };
                let out = if jsonata {
                    match out_t {
                        Some(o) => o.eval(&scope, "Output")?,
                        None => raw.clone(),
                    }
                } else {
                    output_path(&st.output_path, &input, &scope)?
                };
                self.assign(nv);
                Ok((out, next))
            }
            Kind::Task(t) => {
                let effective = {
                    let ctx = LazyContext::new(&build);
                    let input = if jsonata {
                        raw.clone()
                    } else {
                        let i = self.engine.input_path(st, &raw, &ctx, &self.vars)?;
                        self.record("afterInputPath", &i);
                        i
                    };
                    match &st.parameters {
                        Some(p) => p.eval(
                            &self.scope(&input, &ctx),
                            if jsonata { "Arguments" } else { "Parameters" },
                        )?,
                        None => input,
                    }
                };
                self.record(
                    if jsonata {
                        "afterArguments"
                    } else {
                        "afterParameters"
                    },
                    &effective,
                );
                let result = match self.mocked.clone() {
                    Some(r) => r,
                    None => match &self.req.mock {
                        Some(TestMock {
                            error_output: Some((e, c)),
                            ..
                        }) => {
                            return Err(Failure {
                                error: e.clone(),
                                cause: c.clone(),
                            });
                        }
                        _ => self.invoke(&t.resource, effective).await?,
                    },
                };
                self.record("result", &result);
                let ctx = LazyContext::new(&build);
                if jsonata {
                    let (out, nv) = self.jsonata_output(&raw, Some(&result), &ctx)?;
                    self.assign(nv);
                    return Ok((out, self.next_name()));
                }
                let out = self.jsonpath_post(&raw, result, &ctx)?;
                Ok((out, self.next_name()))
            }
            Kind::Parallel { .. } => {
                let ctx = LazyContext::new(&build);
                if !jsonata {
                    // Evaluated for their errors; the mocked result stands for the branches.
                    let input = self.engine.input_path(st, &raw, &ctx, &self.vars)?;
                    if let Some(p) = &st.parameters {
                        p.eval(&self.scope(&input, &ctx), "Parameters")?;
                    }
                } else if let Some(a) = &st.parameters {
                    a.eval(&self.scope(&raw, &ctx), "Arguments")?;
                }
                let result = self.mocked_or_error()?;
                if jsonata {
                    let (out, nv) = self.jsonata_output(&raw, Some(&result), &ctx)?;
                    self.assign(nv);
                    return Ok((out, self.next_name()));
                }
                let out = self.jsonpath_post(&raw, result, &ctx)?;
                Ok((out, self.next_name()))
            }
            Kind::Map(m) => {
                let ctx = LazyContext::new(&build);
                let input = if jsonata {
                    raw.clone()
                } else {
                    let i = self.engine.input_path(st, &raw, &ctx, &self.vars)?;
                    self.record("afterInputPath", &i);
                    i
                };
                let vars = self.vars.clone();
                let scope = Scope {
                    input: &input,
                    context: &ctx,
                    vars: &vars,
                    result: None,
                    error_output: None,
                };
                let items = self.map_items(m, &scope, &input)?;
                if !jsonata && m.item_reader.is_none() {
                    self.record("afterItemsPath", &Value::Array(items.clone()));
                }
                let conc = match &m.max_concurrency {
                    Some(n) => self.engine.int_field(n, &scope, "MaxConcurrencyPath")?,
                    None => 0,
                };
                self.record("maxConcurrency", &json!(conc));
                let mut tol_count = None;
                if let Some(n) = &m.tolerated_count {
                    let v = self
                        .engine
                        .int_field(n, &scope, "ToleratedFailureCountPath")?;
                    self.record("toleratedFailureCount", &json!(v));
                    tol_count = Some(v);
                }
                let mut tol_pct = None;
                if let Some(n) = &m.tolerated_percentage {
                    let v = self
                        .engine
                        .number(n, &scope, "ToleratedFailurePercentagePath")?;
                    self.record("toleratedFailurePercentage", &json!(v));
                    tol_pct = Some(v);
                }
                let result = self.mocked_or_error()?;
                let failures = self
                    .req
                    .state_configuration
                    .map_iteration_failure_count
                    .unwrap_or(0);
                let total = match &result {
                    Value::Array(a) => a.len(),
                    _ => items.len(),
                };
                let over_count = tol_count.is_some_and(|c| failures as i64 > c);
                let over_pct = tol_pct
                    .is_some_and(|p| total > 0 && failures as f64 * 100.0 / total as f64 > p);
                if failures > 0 && (over_count || over_pct) {
                    return Err(Failure::new(
                        names::EXCEED_TOLERATED,
                        "The specified tolerated failure threshold was exceeded",
                    ));
                }
                if jsonata {
                    let (out, nv) = self.jsonata_output(&raw, Some(&result), &ctx)?;
                    self.assign(nv);
                    return Ok((out, self.next_name()));
                }
                let out = self.jsonpath_post(&raw, result, &ctx)?;
                Ok((out, self.next_name()))
            }
        }
    }

    fn state_def(&self) -> Option<&Value> {
        if self.req.definition.get("States").is_some() {
            find_state_def(&self.req.definition, &self.st.name)
        } else {
            Some(&self.req.definition)
        }
    }

    fn mocked_or_error(&self) -> Result<Value, Failure> {
        if let Some(r) = &self.mocked {
            return Ok(r.clone());
        }
        match self.req.mock.as_ref().and_then(|m| m.error_output.clone()) {
            Some((error, cause)) => Err(Failure { error, cause }),
            None => Err(Failure::new(names::RUNTIME, "No mock for the state")),
        }
    }

    fn map_items(
        &self,
        m: &crate::definition::MapSpec,
        scope: &Scope<'_>,
        input: &Value,
    ) -> Result<Vec<Value>, Failure> {
        if m.item_reader.is_some()
            && let Some(data) = &self.req.state_configuration.map_item_reader_data
        {
            return match serde_json::from_str::<Value>(data) {
                Ok(Value::Array(a)) => Ok(a),
                _ => Err(Failure::new(
                    names::ITEM_READER,
                    "mapItemReaderData must be a JSON array",
                )),
            };
        }
        if let PathField::Path(p) = &m.items_path
            && p.source().starts_with("$$")
        {
            // A context-object items path that is not an array, as TestState reports it.
            return match scope.read(p) {
                Some(Value::Array(a)) => Ok(a),
                _ => Err(Failure::new(
                    names::RUNTIME,
                    format!(
                        "Reference path \"{}\" must point to array.",
                        &p.source()[1..]
                    ),
                )),
            };
        }
        self.engine.map_items(self.st, m, scope, input)
    }

    fn wait_check(
        &self,
        w: &crate::definition::WaitSpec,
        scope: &Scope<'_>,
    ) -> Result<(), Failure> {
        use crate::definition::WaitSpec;
        match w {
            WaitSpec::Seconds(n) => {
                let s = self.engine.number(n, scope, "SecondsPath")?;
                if s < 0.0 {
                    return Err(Failure::new(
                        names::RUNTIME,
                        "The Seconds field cannot be negative.",
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn scope<'s>(&'s self, input: &'s Value, ctx: &'s LazyContext<'s>) -> Scope<'s> {
        Scope {
            input,
            context: ctx,
            vars: &self.vars,
            result: None,
            error_output: None,
        }
    }

    fn assign(&mut self, nv: Option<Value>) {
        if let Some(Value::Object(m)) = nv {
            for (k, v) in m {
                self.vars.insert(k, v);
            }
        }
    }

    /// JSONata `Assign` and `Output`.
    fn jsonata_output(
        &self,
        raw: &Value,
        result: Option<&Value>,
        ctx: &LazyContext<'_>,
    ) -> Result<(Value, Option<Value>), Failure> {
        let scope = Scope {
            input: raw,
            context: ctx,
            vars: &self.vars,
            result,
            error_output: None,
        };
        let nv = match &self.st.assign {
            Some(a) => Some(a.eval(&scope, "Assign")?),
            None => None,
        };
        let out = match &self.st.output {
            Some(o) => o.eval(&scope, "Output")?,
            None => result.cloned().unwrap_or_else(|| raw.clone()),
        };
        Ok((out, nv))
    }

    /// JSONPath ResultSelector, Assign, ResultPath and OutputPath, recording each step.
    fn jsonpath_post(
        &mut self,
        raw: &Value,
        result: Value,
        ctx: &LazyContext<'_>,
    ) -> Result<Value, Failure> {
        let st = self.st;
        let selected = match &st.result_selector {
            Some(rs) => rs.eval(&self.scope(&result, ctx), "ResultSelector")?,
            None => result,
        };
        self.record("afterResultSelector", &selected);
        let nv = match &st.assign {
            Some(a) => Some(a.eval(&self.scope(&selected, ctx), "Assign")?),
            None => None,
        };
        let combined = apply_result_path(&st.result_path, raw, selected)?;
        self.record("afterResultPath", &combined);
        let out = output_path(&st.output_path, &combined, &self.scope(&combined, ctx))?;
        self.assign(nv);
        Ok(out)
    }

    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, Failure> {
        let Some(h) = self.engine.resources.find(resource) else {
            return Err(Failure::new(
                names::TASK_FAILED,
                format!("No task handler is registered for resource '{resource}'"),
            ));
        };
        let ctx = TaskContext {
            execution_arn: self
                .context
                .pointer("/Execution/Id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            state_name: self.name.clone(),
            retry_count: self
                .req
                .state_configuration
                .retrier_retry_count
                .unwrap_or(0),
            state_machine_arn: self
                .context
                .pointer("/StateMachine/Id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            task_token: self
                .context
                .pointer("/Task/Token")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        h.invoke(resource, input, &ctx).await.map_err(Into::into)
    }

    /// Applies the state's retriers (as configured by `retrierRetryCount`) and catchers.
    fn handle_failure(&mut self, f: Failure) -> TestStateResponse {
        let st = self.st;
        let mut resp = TestStateResponse {
            status: TestStatus::Failed,
            output: None,
            error: Some(f.error.clone()),
            cause: f.cause.clone(),
            next_state: None,
            inspection_data: None,
        };
        if f.error == names::RUNTIME || matches!(st.kind, Kind::Fail { .. }) {
            return resp;
        }
        let mut details = Map::new();
        if let Some(i) = st.retry.iter().position(|r| f.matches(&r.error_equals)) {
            let r = &st.retry[i];
            let count = self
                .req
                .state_configuration
                .retrier_retry_count
                .unwrap_or(0);
            details.insert("retryIndex".into(), json!(i));
            if count < r.max_attempts {
                let mut delay = r.interval_seconds * r.backoff_rate.powi(count as i32);
                if let Some(m) = r.max_delay_seconds {
                    delay = delay.min(m);
                }
                let delay = if delay.fract() == 0.0 && delay < 9.0e15 {
                    json!(delay as i64)
                } else {
                    json!(delay)
                };
                details.insert("retryBackoffIntervalSeconds".into(), delay);
                resp.status = TestStatus::Retriable;
                self.insp
                    .insert("errorDetails".into(), Value::Object(details));
                return resp;
            }
        }
        if let Some(ci) = st.catch.iter().position(|c| f.matches(&c.error_equals)) {
            details.insert("catchIndex".into(), json!(ci));
            match self.apply_catch(ci, &f) {
                Ok(out) => {
                    resp.status = TestStatus::CaughtError;
                    resp.output = Some(out);
                    resp.next_state = self
                        .state_def()
                        .and_then(|d| d.pointer(&format!("/Catch/{ci}/Next")))
                        .and_then(Value::as_str)
                        .map(str::to_string);
                }
                Err(e) => {
                    resp.error = Some(e.error);
                    resp.cause = e.cause;
                }
            }
        }
        if !details.is_empty() {
            self.insp
                .insert("errorDetails".into(), Value::Object(details));
        }
        resp
    }

    fn apply_catch(&mut self, ci: usize, f: &Failure) -> Result<Value, Failure> {
        let c = &self.st.catch[ci];
        let mut err = Map::new();
        err.insert("Error".into(), Value::String(f.error.clone()));
        if let Some(cause) = &f.cause {
            err.insert("Cause".into(), Value::String(cause.clone()));
        }
        let err = Value::Object(err);
        let ctx_value = self.context.clone();
        let build = move || ctx_value.clone();
        let ctx = LazyContext::new(&build);
        let raw = &self.req.input;
        let (out, nv) = if self.st.ql == QueryLanguage::Jsonata {
            let scope = Scope {
                input: raw,
                context: &ctx,
                vars: &self.vars,
                result: None,
                error_output: Some(&err),
            };
            let nv = match &c.assign {
                Some(a) => Some(a.eval(&scope, "Assign")?),
                None => None,
            };
            let out = match &c.output {
                Some(o) => o.eval(&scope, "Output")?,
                None => err.clone(),
            };
            (out, nv)
        } else {
            let nv = match &c.assign {
                Some(a) => Some(a.eval(&self.scope(&err, &ctx), "Assign")?),
                None => None,
            };
            (apply_result_path(&c.result_path, raw, err.clone())?, nv)
        };
        self.assign(nv);
        Ok(out)
    }
}

/// The definition object of state `name` at any depth of a machine definition.
fn find_state_def<'a>(def: &'a Value, name: &str) -> Option<&'a Value> {
    let states = def.get("States")?.as_object()?;
    if let Some(s) = states.get(name) {
        return Some(s);
    }
    for s in states.values() {
        if let Some(Value::Array(bs)) = s.get("Branches") {
            for b in bs {
                if let Some(f) = find_state_def(b, name) {
                    return Some(f);
                }
            }
        }
        for key in ["ItemProcessor", "Iterator"] {
            if let Some(p) = s.get(key)
                && let Some(f) = find_state_def(p, name)
            {
                return Some(f);
            }
        }
    }
    None
}
