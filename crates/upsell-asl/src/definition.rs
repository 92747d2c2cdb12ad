//! Typed state machine definitions: parsing from JSON and validation that reports every
//! problem with its location, as `CreateStateMachine` / `ValidateStateMachineDefinition` do.

use crate::error::{InvalidDefinition, Problem};
use crate::jsonpath::JsonPath;
use crate::template::{Jexpr, Template, jsonata_body};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The query language of a machine or state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLanguage {
    /// JSONPath (the default).
    JsonPath,
    /// JSONata.
    Jsonata,
}

/// Standard or Express (Express forbids `.sync` and `.waitForTaskToken`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MachineType {
    /// Standard workflow.
    #[default]
    Standard,
    /// Express workflow.
    Express,
}

/// A parsed, validated state machine (or a Parallel branch / Map processor).
#[derive(Debug)]
pub struct StateMachine {
    /// `Comment`.
    pub comment: Option<String>,
    /// Index of `StartAt` in `states`.
    pub start_at: usize,
    /// The states in document order.
    pub states: Vec<State>,
    /// Machine-level `TimeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// Top-level query language.
    pub query_language: QueryLanguage,
    index: HashMap<String, usize>,
}

impl StateMachine {
    /// Looks a state up by name.
    pub fn state(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// Optional path with an explicit `null` form.
#[derive(Debug, Clone)]
pub enum PathField {
    /// Not present: `$`.
    Default,
    /// `null`.
    Null,
    /// A path.
    Path(JsonPath),
}

/// One state.
#[derive(Debug)]
pub struct State {
    /// Name.
    pub name: String,
    /// Effective query language.
    pub ql: QueryLanguage,
    /// What the state does.
    pub kind: Kind,
    /// `Next` (None: `End` or a terminal state).
    pub next: Option<usize>,
    /// `InputPath`.
    pub input_path: PathField,
    /// `OutputPath`.
    pub output_path: PathField,
    /// `Parameters` / `ItemSelector` (Map) / `Arguments` (JSONata).
    pub parameters: Option<Template>,
    /// `ResultSelector`.
    pub result_selector: Option<Template>,
    /// `ResultPath`.
    pub result_path: PathField,
    /// JSONata `Output`.
    pub output: Option<Template>,
    /// `Assign`.
    pub assign: Option<Template>,
    /// `Retry`.
    pub retry: Vec<Retrier>,
    /// `Catch`.
    pub catch: Vec<Catcher>,
    /// Step Functions' state type name (`Pass`, `Task`...).
    pub type_name: &'static str,
    /// History event type on entry (`PassStateEntered`...).
    pub entered_event: String,
    /// History event type on exit.
    pub exited_event: String,
}

/// A number given literally, by path or by JSONata.
#[derive(Debug, Clone)]
pub enum NumberField {
    /// Literal.
    Lit(f64),
    /// `...Path`.
    Path(JsonPath),
    /// JSONata expression.
    Jsonata(Jexpr),
}

/// State-type specific parts.
#[derive(Debug)]
pub enum Kind {
    /// Pass: optional `Result`.
    Pass {
        /// `Result`.
        result: Option<Value>,
    },
    /// Task.
    Task(Box<TaskSpec>),
    /// Choice.
    Choice {
        /// Rules in order.
        choices: Vec<ChoiceBranch>,
        /// `Default`.
        default: Option<usize>,
    },
    /// Wait.
    Wait(WaitSpec),
    /// Succeed.
    Succeed,
    /// Fail.
    Fail {
        /// `Error` / `ErrorPath`.
        error: Option<Template>,
        /// `Cause` / `CausePath`.
        cause: Option<Template>,
    },
    /// Parallel.
    Parallel {
        /// `Branches`.
        branches: Vec<Arc<StateMachine>>,
    },
    /// Map.
    Map(Box<MapSpec>),
}

/// Task fields.
#[derive(Debug)]
pub struct TaskSpec {
    /// `Resource` (JSONata may compute it... only literal here).
    pub resource: String,
    /// `TimeoutSeconds` / `TimeoutSecondsPath`.
    pub timeout: Option<NumberField>,
    /// `HeartbeatSeconds` / `HeartbeatSecondsPath`.
    pub heartbeat: Option<NumberField>,
    /// `Credentials` as written.
    pub credentials: Option<Value>,
}

/// Wait fields.
#[derive(Debug)]
pub enum WaitSpec {
    /// `Seconds` (literal, path or JSONata).
    Seconds(NumberField),
    /// `Timestamp` literal.
    Timestamp(String),
    /// `TimestampPath`.
    TimestampPath(JsonPath),
    /// JSONata `Timestamp`.
    TimestampJsonata(Jexpr),
}

/// Map mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    /// Iterations inside the execution.
    Inline,
    /// Child executions.
    Distributed,
}

/// Map fields.
#[derive(Debug)]
pub struct MapSpec {
    /// `ItemProcessor` / `Iterator`.
    pub processor: Arc<StateMachine>,
    /// Inline or distributed.
    pub mode: MapMode,
    /// `ItemsPath`.
    pub items_path: PathField,
    /// JSONata `Items` (or a literal array).
    pub items: Option<Template>,
    /// `ItemSelector` / legacy `Parameters`.
    pub item_selector: Option<Template>,
    /// `MaxConcurrency` / `MaxConcurrencyPath` (0 = unlimited).
    pub max_concurrency: Option<NumberField>,
    /// `ToleratedFailureCount(Path)`.
    pub tolerated_count: Option<NumberField>,
    /// `ToleratedFailurePercentage(Path)`.
    pub tolerated_percentage: Option<NumberField>,
    /// `Label`.
    pub label: Option<String>,
    /// `ItemReader` as written (evaluated at run time).
    pub item_reader: Option<Value>,
    /// `ItemBatcher` as written.
    pub item_batcher: Option<Value>,
    /// `ResultWriter` as written.
    pub result_writer: Option<Value>,
}

/// A `Choices` entry.
#[derive(Debug)]
pub struct ChoiceBranch {
    /// The rule.
    pub rule: Rule,
    /// Where to go when it matches.
    pub next: usize,
    /// JSONata/JSONPath `Assign` of the rule.
    pub assign: Option<Template>,
    /// JSONata `Output` of the rule.
    pub output: Option<Template>,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

const OPS: &[(&str, Op)] = &[
    ("StringEquals", Op::StringEquals),
    ("StringLessThan", Op::StringLessThan),
    ("StringGreaterThan", Op::StringGreaterThan),
    ("StringLessThanEquals", Op::StringLessThanEquals),
    ("StringGreaterThanEquals", Op::StringGreaterThanEquals),
    ("StringMatches", Op::StringMatches),
    ("NumericEquals", Op::NumericEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("BooleanEquals", Op::BooleanEquals),
    ("TimestampEquals", Op::TimestampEquals),
    ("TimestampLessThan", Op::TimestampLessThan),
    ("TimestampGreaterThan", Op::TimestampGreaterThan),
    ("TimestampLessThanEquals", Op::TimestampLessThanEquals),
    ("TimestampGreaterThanEquals", Op::TimestampGreaterThanEquals),
    ("IsNull", Op::IsNull),
    ("IsPresent", Op::IsPresent),
    ("IsNumeric", Op::IsNumeric),
    ("IsString", Op::IsString),
    ("IsBoolean", Op::IsBoolean),
    ("IsTimestamp", Op::IsTimestamp),
];

/// Right-hand side of a comparison.
#[derive(Debug, Clone)]
pub enum Operand {
    /// A literal.
    Lit(Value),
    /// A `...Path` operand.
    Path(JsonPath),
}

/// A Choice rule.
#[derive(Debug)]
pub enum Rule {
    /// `And`.
    And(Vec<Rule>),
    /// `Or`.
    Or(Vec<Rule>),
    /// `Not`.
    Not(Box<Rule>),
    /// `Variable` + operator.
    Compare {
        /// `Variable`.
        variable: JsonPath,
        /// Operator.
        op: Op,
        /// Operand.
        operand: Operand,
    },
    /// JSONata `Condition`.
    Condition(Template),
}

/// A `Retry` entry.
#[derive(Debug, Clone)]
pub struct Retrier {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `IntervalSeconds` (default 1).
    pub interval_seconds: f64,
    /// `MaxAttempts` (default 3).
    pub max_attempts: u32,
    /// `BackoffRate` (default 2.0).
    pub backoff_rate: f64,
    /// `MaxDelaySeconds`.
    pub max_delay_seconds: Option<f64>,
    /// `JitterStrategy` FULL.
    pub full_jitter: bool,
}

/// A `Catch` entry.
#[derive(Debug)]
pub struct Catcher {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `Next`.
    pub next: usize,
    /// `ResultPath` (default `$`).
    pub result_path: PathField,
    /// JSONata `Output`.
    pub output: Option<Template>,
    /// `Assign`.
    pub assign: Option<Template>,
}

/// Options for parsing.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Standard or Express.
    pub machine_type: MachineType,
}

/// Largest definition accepted, in bytes: Step Functions' limit on a state machine definition
/// (1 MiB).
pub const MAX_DEFINITION_BYTES: usize = 1024 * 1024;

/// Parses and validates a definition given as text (at most [`MAX_DEFINITION_BYTES`]).
pub fn parse_str(text: &str, opts: ParseOptions) -> Result<Arc<StateMachine>, InvalidDefinition> {
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(InvalidDefinition {
            problems: vec![Problem {
                code: "SCHEMA_VALIDATION_FAILED",
                location: "/".into(),
                message: format!(
                    "Definition is {} bytes; at most {MAX_DEFINITION_BYTES} are allowed",
                    text.len()
                ),
            }],
        });
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v.is_object() => parse(&v, opts),
        _ => Err(InvalidDefinition {
            problems: vec![Problem {
                code: "SCHEMA_VALIDATION_FAILED",
                location: "/".into(),
                message: "Definition must be a valid JSON object".into(),
            }],
        }),
    }
}

/// Parses and validates a definition.
pub fn parse(v: &Value, opts: ParseOptions) -> Result<Arc<StateMachine>, InvalidDefinition> {
    let mut p = Parser {
        problems: Vec::new(),
        top_ql: QueryLanguage::JsonPath,
        opts,
    };
    let Some(obj) = v.as_object() else {
        return Err(InvalidDefinition {
            problems: vec![Problem {
                code: "SCHEMA_VALIDATION_FAILED",
                location: "/".into(),
                message: "Definition must be a valid JSON object".into(),
            }],
        });
    };
    let top_ql = match obj.get("QueryLanguage") {
        Some(Value::String(s)) if s == "JSONata" => QueryLanguage::Jsonata,
        Some(Value::String(s)) if s == "JSONPath" => QueryLanguage::JsonPath,
        None => QueryLanguage::JsonPath,
        Some(other) => {
            p.problem("/QueryLanguage", format!("The field 'QueryLanguage' should have one of these values: [JSONPath, JSONata] but was {other}"));
            QueryLanguage::JsonPath
        }
    };
    p.top_ql = top_ql;
    let sm = p.machine(obj, "", top_ql, true);
    if p.problems.is_empty() {
        Ok(Arc::new(sm.expect("machine without problems")))
    } else {
        Err(InvalidDefinition {
            problems: p.problems,
        })
    }
}

struct Parser {
    problems: Vec<Problem>,
    top_ql: QueryLanguage,
    opts: ParseOptions,
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage", "Next", "End", "Assign"];

fn allowed_fields(ty: &str, ql: QueryLanguage) -> Option<Vec<&'static str>> {
    let mut f: Vec<&'static str> = COMMON.to_vec();
    let jp = ql == QueryLanguage::JsonPath;
    let extra: &[&str] = match ty {
        "Pass" => {
            if jp {
                &[
                    "InputPath",
                    "OutputPath",
                    "Parameters",
                    "ResultPath",
                    "Result",
                ]
            } else {
                &["Output"]
            }
        }
        "Task" => {
            if jp {
                &[
                    "Resource",
                    "InputPath",
                    "OutputPath",
                    "Parameters",
                    "ResultPath",
                    "ResultSelector",
                    "Retry",
                    "Catch",
                    "TimeoutSeconds",
                    "TimeoutSecondsPath",
                    "HeartbeatSeconds",
                    "HeartbeatSecondsPath",
                    "Credentials",
                ]
            } else {
                &[
                    "Resource",
                    "Arguments",
                    "Output",
                    "Retry",
                    "Catch",
                    "TimeoutSeconds",
                    "HeartbeatSeconds",
                    "Credentials",
                ]
            }
        }
        "Choice" => {
            if jp {
                &["InputPath", "OutputPath", "Choices", "Default"]
            } else {
                &["Output", "Choices", "Default"]
            }
        }
        "Wait" => {
            if jp {
                &[
                    "InputPath",
                    "OutputPath",
                    "Seconds",
                    "SecondsPath",
                    "Timestamp",
                    "TimestampPath",
                ]
            } else {
                &["Output", "Seconds", "Timestamp"]
            }
        }
        "Succeed" => {
            if jp {
                &["InputPath", "OutputPath"]
            } else {
                &["Output"]
            }
        }
        "Fail" => {
            if jp {
                &["Error", "ErrorPath", "Cause", "CausePath"]
            } else {
                &["Error", "Cause"]
            }
        }
        "Parallel" => {
            if jp {
                &[
                    "Branches",
                    "InputPath",
                    "OutputPath",
                    "Parameters",
                    "ResultPath",
                    "ResultSelector",
                    "Retry",
                    "Catch",
                ]
            } else {
                &["Branches", "Arguments", "Output", "Retry", "Catch"]
            }
        }
        "Map" => {
            if jp {
                &[
                    "Iterator",
                    "ItemProcessor",
                    "ItemsPath",
                    "ItemSelector",
                    "Parameters",
                    "MaxConcurrency",
                    "MaxConcurrencyPath",
                    "InputPath",
                    "OutputPath",
                    "ResultPath",
                    "ResultSelector",
                    "Retry",
                    "Catch",
                    "ItemReader",
                    "ItemBatcher",
                    "ResultWriter",
                    "ToleratedFailureCount",
                    "ToleratedFailureCountPath",
                    "ToleratedFailurePercentage",
                    "ToleratedFailurePercentagePath",
                    "Label",
                ]
            } else {
                &[
                    "ItemProcessor",
                    "Items",
                    "ItemSelector",
                    "MaxConcurrency",
                    "Output",
                    "Retry",
                    "Catch",
                    "ItemReader",
                    "ItemBatcher",
                    "ResultWriter",
                    "ToleratedFailureCount",
                    "ToleratedFailurePercentage",
                    "Label",
                    "Arguments",
                ]
            }
        }
        _ => return None,
    };
    f.extend_from_slice(extra);
    Some(f)
}

impl Parser {
    fn problem(&mut self, loc: impl Into<String>, msg: impl Into<String>) {
        let loc = loc.into();
        self.problems.push(Problem {
            code: "SCHEMA_VALIDATION_FAILED",
            location: if loc.is_empty() { "/".into() } else { loc },
            message: msg.into(),
        });
    }

    fn machine(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
        ql: QueryLanguage,
        top: bool,
    ) -> Option<StateMachine> {
        let states_v = obj.get("States");
        let start_v = obj.get("StartAt");
        let mut missing = Vec::new();
        if states_v.is_none() {
            missing.push("States");
        }
        if start_v.is_none() {
            missing.push("StartAt");
        }
        if !missing.is_empty() {
            self.problem(
                at,
                format!("These fields are required: [{}]", missing.join(", ")),
            );
            return None;
        }
        let Some(states_obj) = states_v.and_then(Value::as_object) else {
            self.problem(
                format!("{at}/States"),
                "The field 'States' must be an OBJECT",
            );
            return None;
        };
        let Some(start) = start_v.and_then(Value::as_str) else {
            self.problem(
                format!("{at}/StartAt"),
                "The field 'StartAt' must be a STRING",
            );
            return None;
        };
        let timeout_seconds = match obj.get("TimeoutSeconds") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(n) => Some(n),
                None => {
                    self.problem(
                        format!("{at}/TimeoutSeconds"),
                        "The field 'TimeoutSeconds' must be a positive integer",
                    );
                    None
                }
            },
        };
        let _ = top;
        let index: HashMap<String, usize> = states_obj
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        if !index.contains_key(start) {
            self.problem(
                format!("{at}/StartAt"),
                format!("Missing 'Next' target: {start}"),
            );
        }
        let mut states = Vec::with_capacity(states_obj.len());
        for (name, sv) in states_obj {
            let loc = format!("{at}/States/{name}");
            if name.is_empty() || name.chars().count() > 80 {
                self.problem(&loc, "State names must be between 1 and 80 characters long");
            }
            match sv.as_object() {
                Some(so) => {
                    if let Some(s) = self.state(name, so, &loc, ql, &index) {
                        states.push(s);
                    }
                }
                None => self.problem(&loc, "A state must be a JSON object"),
            }
        }
        if states.len() != states_obj.len() {
            return None;
        }
        // Reachability from StartAt.
        if let Some(&s0) = index.get(start) {
            let mut seen = HashSet::new();
            let mut stack = vec![s0];
            while let Some(i) = stack.pop() {
                if !seen.insert(i) {
                    continue;
                }
                let st = &states[i];
                if let Some(n) = st.next {
                    stack.push(n);
                }
                for c in &st.catch {
                    stack.push(c.next);
                }
                if let Kind::Choice { choices, default } = &st.kind {
                    stack.extend(choices.iter().map(|c| c.next));
                    stack.extend(default.iter().copied());
                }
            }
            for (i, st) in states.iter().enumerate() {
                if !seen.contains(&i) {
                    self.problem(
                        format!("{at}/States/{}", st.name),
                        format!("State '{}' is not reachable", st.name),
                    );
                }
            }
        }
        Some(StateMachine {
            comment: obj
                .get("Comment")
                .and_then(Value::as_str)
                .map(str::to_string),
            start_at: index.get(start).copied().unwrap_or(0),
            states,
            timeout_seconds,
            query_language: ql,
            index,
        })
    }

    fn target(
        &mut self,
        v: Option<&Value>,
        loc: &str,
        index: &HashMap<String, usize>,
    ) -> Option<usize> {
        match v {
            Some(Value::String(s)) => match index.get(s) {
                Some(i) => Some(*i),
                None => {
                    self.problem(loc, format!("Missing 'Next' target: {s}"));
                    None
                }
            },
            Some(_) => {
                self.problem(loc, "The field 'Next' must be a STRING");
                None
            }
            None => None,
        }
    }

    fn path_field(&mut self, so: &Map<String, Value>, key: &str, loc: &str) -> PathField {
        match so.get(key) {
            None => PathField::Default,
            Some(Value::Null) => PathField::Null,
            Some(Value::String(s)) => match JsonPath::parse(s) {
                Ok(p) => PathField::Path(p),
                Err(_) => {
                    self.problem(
                        format!("{loc}/{key}"),
                        format!("The value for the field '{key}' must be a valid JSONPath"),
                    );
                    PathField::Default
                }
            },
            Some(_) => {
                self.problem(
                    format!("{loc}/{key}"),
                    format!("The value for the field '{key}' must be a valid JSONPath"),
                );
                PathField::Default
            }
        }
    }

    fn template(&mut self, v: &Value, loc: &str, ql: QueryLanguage) -> Template {
        let mut probs = Vec::new();
        let t = match ql {
            QueryLanguage::JsonPath => Template::jsonpath(v, loc, &mut probs),
            QueryLanguage::Jsonata => Template::jsonata(v, loc, &mut probs),
        };
        for (l, m) in probs {
            self.problem(l, m);
        }
        t
    }

    fn jexpr(&mut self, s: &str, loc: &str) -> Option<Jexpr> {
        let body = jsonata_body(s)?;
        match crate::jsonata_api::Expression::parse(body) {
            Ok(e) => Some(Jexpr {
                src: body.to_string(),
                expr: Arc::new(e),
            }),
            Err(e) => {
                self.problem(
                    loc,
                    format!("Invalid JSONata expression '{}': {}", body.trim(), e),
                );
                None
            }
        }
    }

    fn number_field(
        &mut self,
        so: &Map<String, Value>,
        key: &str,
        loc: &str,
        ql: QueryLanguage,
    ) -> Option<NumberField> {
        let path_key = format!("{key}Path");
        if let Some(v) = so.get(key) {
            if so.contains_key(&path_key) {
                self.problem(
                    loc,
                    format!("Only one of '{key}' and '{path_key}' may be given"),
                );
            }
            return match v {
                Value::Number(n) => Some(NumberField::Lit(n.as_f64().unwrap_or(0.0))),
                Value::String(s) if ql == QueryLanguage::Jsonata && jsonata_body(s).is_some() => {
                    self.jexpr(s, &format!("{loc}/{key}"))
                        .map(NumberField::Jsonata)
                }
                _ => {
                    self.problem(
                        format!("{loc}/{key}"),
                        format!("The field '{key}' must be a number"),
                    );
                    None
                }
            };
        }
        match so.get(&path_key) {
            Some(Value::String(s)) => match JsonPath::parse(s) {
                Ok(p) => Some(NumberField::Path(p)),
                Err(_) => {
                    self.problem(
                        format!("{loc}/{path_key}"),
                        format!("The value for the field '{path_key}' must be a valid JSONPath"),
                    );
                    None
                }
            },
            Some(_) => {
                self.problem(
                    format!("{loc}/{path_key}"),
                    format!("The value for the field '{path_key}' must be a valid JSONPath"),
                );
                None
            }
            None => None,
        }
    }

    fn state(
        &mut self,
        name: &str,
        so: &Map<String, Value>,
        loc: &str,
        parent_ql: QueryLanguage,
        index: &HashMap<String, usize>,
    ) -> Option<State> {
        let ty = match so.get("Type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) | None => {
                self.problem(format!("{loc}/Type"), "The field 'Type' should have one of these values: [Task, Wait, Pass, Succeed, Fail, Choice, Parallel, Map]");
                return None;
            }
        };
        let ql = match so.get("QueryLanguage").and_then(Value::as_str) {
            Some("JSONata") => QueryLanguage::Jsonata,
            Some("JSONPath") => {
                if self.top_ql == QueryLanguage::Jsonata {
                    self.problem(loc, "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine");
                }
                QueryLanguage::JsonPath
            }
            Some(other) => {
                self.problem(format!("{loc}/QueryLanguage"), format!("The field 'QueryLanguage' should have one of these values: [JSONPath, JSONata] but was {other}"));
                parent_ql
            }
            None => parent_ql,
        };
        let Some(allowed) = allowed_fields(ty, ql) else {
            self.problem(format!("{loc}/Type"), "The field 'Type' should have one of these values: [Task, Wait, Pass, Succeed, Fail, Choice, Parallel, Map]");
            return None;
        };
        for k in so.keys() {
            if !allowed.contains(&k.as_str()) {
                let qls = if ql == QueryLanguage::Jsonata {
                    "JSONata"
                } else {
                    "JSONPath"
                };
                let other_ok = allowed_fields(
                    ty,
                    if ql == QueryLanguage::Jsonata {
                        QueryLanguage::JsonPath
                    } else {
                        QueryLanguage::Jsonata
                    },
                )
                .is_some_and(|o| o.contains(&k.as_str()));
                if other_ok {
                    self.problem(
                        format!("{loc}/{k}"),
                        format!(
                            "This field is not supported for states with QueryLanguage '{qls}'"
                        ),
                    );
                } else {
                    self.problem(
                        format!("{loc}/{k}"),
                        format!("Field '{k}' is not supported"),
                    );
                }
            }
        }
        let terminal = matches!(ty, "Succeed" | "Fail" | "Choice");
        let end = so.get("End").and_then(Value::as_bool).unwrap_or(false);
        let next = self.target(so.get("Next"), &format!("{loc}/Next"), index);
        if !terminal {
            if so.contains_key("Next") && end {
                self.problem(loc, "Only one of 'Next' and 'End' may be given");
            } else if !so.contains_key("Next") && !end {
                self.problem(
                    loc,
                    "This state must have either a 'Next' or an 'End: true' field",
                );
            }
        }
        let jp = ql == QueryLanguage::JsonPath;
        let input_path = if jp {
            self.path_field(so, "InputPath", loc)
        } else {
            PathField::Default
        };
        let output_path = if jp {
            self.path_field(so, "OutputPath", loc)
        } else {
            PathField::Default
        };
        let result_path = if jp {
            self.path_field(so, "ResultPath", loc)
        } else {
            PathField::Default
        };
        if let PathField::Path(p) = &result_path
            && (!p.is_definite() || *p.root() != crate::jsonpath::Root::Input)
        {
            self.problem(
                format!("{loc}/ResultPath"),
                "The value for the field 'ResultPath' must be a valid reference path",
            );
        }
        let param_key = if jp { "Parameters" } else { "Arguments" };
        let parameters = if ty == "Map" {
            let k = if so.contains_key("ItemSelector") {
                "ItemSelector"
            } else {
                param_key
            };
            so.get(k)
                .map(|v| self.template(v, &format!("{loc}/{k}"), ql))
        } else {
            so.get(param_key)
                .map(|v| self.template(v, &format!("{loc}/{param_key}"), ql))
        };
        let result_selector = so
            .get("ResultSelector")
            .map(|v| self.template(v, &format!("{loc}/ResultSelector"), ql));
        let output = so
            .get("Output")
            .map(|v| self.template(v, &format!("{loc}/Output"), ql));
        let assign = so
            .get("Assign")
            .map(|v| self.assign(v, &format!("{loc}/Assign"), ql));
        let retry = self.retry(so.get("Retry"), loc);
        let catch = self.catch(so.get("Catch"), loc, ql, index);
        let (kind, type_name) = match ty {
            "Pass" => (
                Kind::Pass {
                    result: so.get("Result").cloned(),
                },
                "Pass",
            ),
            "Succeed" => (Kind::Succeed, "Succeed"),
            "Fail" => {
                let field = |p: &mut Parser, key: &str| -> Option<Template> {
                    let path_key = format!("{key}Path");
                    if so.contains_key(key) && so.contains_key(&path_key) {
                        p.problem(
                            loc,
                            format!("Only one of '{key}' and '{path_key}' may be given"),
                        );
                    }
                    if let Some(v) = so.get(key) {
                        return Some(p.template(v, &format!("{loc}/{key}"), ql));
                    }
                    match so.get(&path_key) {
                        Some(Value::String(s)) => {
                            let mut probs = Vec::new();
                            let t = Template::dynamic_string(
                                s,
                                &format!("{loc}/{path_key}"),
                                &mut probs,
                            );
                            for (l, m) in probs {
                                p.problem(l, m);
                            }
                            Some(t)
                        }
                        Some(_) => {
                            p.problem(
                                format!("{loc}/{path_key}"),
                                format!(
                                    "The value for the field '{path_key}' must be a valid JSONPath"
                                ),
                            );
                            None
                        }
                        None => None,
                    }
                };
                let error = field(self, "Error");
                let cause = field(self, "Cause");
                (Kind::Fail { error, cause }, "Fail")
            }
            "Wait" => {
                let mut specs = Vec::new();
                if let Some(n) = self.number_field(so, "Seconds", loc, ql) {
                    specs.push(WaitSpec::Seconds(n));
                }
                match so.get("Timestamp") {
                    Some(Value::String(s)) if !jp && jsonata_body(s).is_some() => {
                        if let Some(j) = self.jexpr(s, &format!("{loc}/Timestamp")) {
                            specs.push(WaitSpec::TimestampJsonata(j));
                        }
                    }
                    Some(Value::String(s)) => {
                        if crate::exec::parse_timestamp(s).is_none() {
                            self.problem(format!("{loc}/Timestamp"), "The value for the field 'Timestamp' must be a valid ISO-8601 extended offset date-time format string");
                        }
                        specs.push(WaitSpec::Timestamp(s.clone()));
                    }
                    Some(_) => self.problem(
                        format!("{loc}/Timestamp"),
                        "The field 'Timestamp' must be a STRING",
                    ),
                    None => {}
                }
                if let Some(v) = so.get("TimestampPath") {
                    match v.as_str().map(JsonPath::parse) {
                        Some(Ok(p)) => specs.push(WaitSpec::TimestampPath(p)),
                        _ => self.problem(
                            format!("{loc}/TimestampPath"),
                            "The value for the field 'TimestampPath' must be a valid JSONPath",
                        ),
                    }
                }
                if specs.len() != 1 {
                    self.problem(loc, "A Wait state must have exactly one of 'Seconds', 'SecondsPath', 'Timestamp' or 'TimestampPath'");
                    return None;
                }
                (Kind::Wait(specs.pop().expect("one spec")), "Wait")
            }
            "Choice" => {
                let mut choices = Vec::new();
                match so.get("Choices").and_then(Value::as_array) {
                    Some(arr) if !arr.is_empty() => {
                        for (i, c) in arr.iter().enumerate() {
                            let cl = format!("{loc}/Choices[{i}]");
                            let Some(co) = c.as_object() else {
                                self.problem(&cl, "A choice rule must be a JSON object");
                                continue;
                            };
                            let next =
                                match self.target(co.get("Next"), &format!("{cl}/Next"), index) {
                                    Some(n) => n,
                                    None => {
                                        if !co.contains_key("Next") {
                                            self.problem(&cl, "These fields are required: [Next]");
                                        }
                                        continue;
                                    }
                                };
                            let Some(rule) = self.rule(co, &cl, ql) else {
                                continue;
                            };
                            let assign = co
                                .get("Assign")
                                .map(|v| self.assign(v, &format!("{cl}/Assign"), ql));
                            let output = co
                                .get("Output")
                                .map(|v| self.template(v, &format!("{cl}/Output"), ql));
                            choices.push(ChoiceBranch {
                                rule,
                                next,
                                assign,
                                output,
                            });
                        }
                    }
                    _ => self.problem(loc, "A Choice state must have a non-empty 'Choices' array"),
                }
                let default = self.target(so.get("Default"), &format!("{loc}/Default"), index);
                (Kind::Choice { choices, default }, "Choice")
            }
            "Task" => {
                let resource = match so.get("Resource") {
                    Some(Value::String(s)) => s.clone(),
                    _ => {
                        self.problem(loc, "These fields are required: [Resource]");
                        String::new()
                    }
                };
                if self.opts.machine_type == MachineType::Express {
                    if resource.ends_with(".sync") || resource.contains(".sync:") {
                        self.problem(
                            format!("{loc}/Resource"),
                            "Express state machine does not support '.sync' service integration",
                        );
                    } else if resource.ends_with(".waitForTaskToken") {
                        self.problem(format!("{loc}/Resource"), "Express state machine does not support '.waitForTaskToken' service integration ");
                    }
                }
                if let Some(c) = so.get("Credentials")
                    && c.as_object()
                        .is_some_and(|o| !o.contains_key("RoleArn") && !o.contains_key("RoleArn.$"))
                {
                    self.problem(
                        format!("{loc}/Credentials"),
                        "The field 'RoleArn' is required but was missing",
                    );
                }
                let timeout = self.number_field(so, "TimeoutSeconds", loc, ql);
                let heartbeat = self.number_field(so, "HeartbeatSeconds", loc, ql);
                (
                    Kind::Task(Box::new(TaskSpec {
                        resource,
                        timeout,
                        heartbeat,
                        credentials: so.get("Credentials").cloned(),
                    })),
                    "Task",
                )
            }
            "Parallel" => {
                let mut branches = Vec::new();
                match so.get("Branches").and_then(Value::as_array) {
                    Some(arr) => {
                        for (i, b) in arr.iter().enumerate() {
                            let bl = format!("{loc}/Branches[{i}]");
                            match b.as_object() {
                                Some(bo) => {
                                    let bql = branch_ql(bo, ql);
                                    if let Some(m) = self.machine(bo, &bl, bql, false) {
                                        branches.push(Arc::new(m));
                                    }
                                }
                                None => self.problem(&bl, "A branch must be a JSON object"),
                            }
                        }
                    }
                    None => self.problem(loc, "These fields are required: [Branches]"),
                }
                (Kind::Parallel { branches }, "Parallel")
            }
            "Map" => {
                let (pk, pv) = match (so.get("ItemProcessor"), so.get("Iterator")) {
                    (Some(v), _) => ("ItemProcessor", v),
                    (None, Some(v)) => ("Iterator", v),
                    (None, None) => {
                        self.problem(loc, "These fields are required: [ItemProcessor]");
                        return None;
                    }
                };
                let pl = format!("{loc}/{pk}");
                let Some(po) = pv.as_object() else {
                    self.problem(&pl, "The field must be a JSON object");
                    return None;
                };
                let mode = match po
                    .get("ProcessorConfig")
                    .and_then(|c| c.get("Mode"))
                    .and_then(Value::as_str)
                {
                    Some("DISTRIBUTED") => MapMode::Distributed,
                    _ => MapMode::Inline,
                };
                let pql = branch_ql(po, ql);
                let processor = self.machine(po, &pl, pql, false).map(Arc::new);
                let items_path = if jp {
                    self.path_field(so, "ItemsPath", loc)
                } else {
                    PathField::Default
                };
                let items = so
                    .get("Items")
                    .map(|v| self.template(v, &format!("{loc}/Items"), ql));
                let label = match so.get("Label") {
                    Some(Value::String(l)) => {
                        if let Some(msg) = label_problem(l) {
                            self.problem(format!("{loc}/Label"), msg);
                        }
                        Some(l.clone())
                    }
                    Some(_) => {
                        self.problem(format!("{loc}/Label"), "The field 'Label' must be a STRING");
                        None
                    }
                    None => None,
                };
                let max_concurrency = self.number_field(so, "MaxConcurrency", loc, ql);
                let tolerated_count = self.number_field(so, "ToleratedFailureCount", loc, ql);
                let tolerated_percentage =
                    self.number_field(so, "ToleratedFailurePercentage", loc, ql);
                if let Some(NumberField::Lit(p)) = tolerated_percentage
                    && !(0.0..=100.0).contains(&p)
                {
                    self.problem(
                        format!("{loc}/ToleratedFailurePercentage"),
                        "ToleratedFailurePercentage must be between 0 and 100",
                    );
                }
                let processor = processor?;
                (
                    Kind::Map(Box::new(MapSpec {
                        processor,
                        mode,
                        items_path,
                        items,
                        item_selector: None,
                        max_concurrency,
                        tolerated_count,
                        tolerated_percentage,
                        label,
                        item_reader: so.get("ItemReader").cloned(),
                        item_batcher: so.get("ItemBatcher").cloned(),
                        result_writer: so.get("ResultWriter").cloned(),
                    })),
                    "Map",
                )
            }
            _ => unreachable!("checked by allowed_fields"),
        };
        let (parameters, kind) = match kind {
            Kind::Map(mut m) => {
                m.item_selector = parameters;
                (None, Kind::Map(m))
            }
            k => (parameters, k),
        };
        Some(State {
            name: name.to_string(),
            ql,
            kind,
            next: if terminal { None } else { next },
            input_path,
            output_path,
            parameters,
            result_selector,
            result_path,
            output,
            assign,
            retry,
            catch,
            type_name,
            entered_event: format!("{type_name}StateEntered"),
            exited_event: format!("{type_name}StateExited"),
        })
    }

    fn assign(&mut self, v: &Value, loc: &str, ql: QueryLanguage) -> Template {
        if let Some(o) = v.as_object() {
            for k in o.keys() {
                let name = k.strip_suffix(".$").unwrap_or(k);
                if name.is_empty()
                    || name.starts_with(|c: char| c.is_ascii_digit())
                    || name.contains(['.', '$', ' '])
                {
                    self.problem(
                        format!("{loc}/{k}"),
                        format!("The variable name '{name}' is not valid"),
                    );
                }
            }
        } else {
            self.problem(loc, "The field 'Assign' must be a JSON object");
        }
        self.template(v, loc, ql)
    }

    fn retry(&mut self, v: Option<&Value>, loc: &str) -> Vec<Retrier> {
        let Some(v) = v else { return Vec::new() };
        let Some(arr) = v.as_array() else {
            self.problem(format!("{loc}/Retry"), "The field 'Retry' must be an array");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r) in arr.iter().enumerate() {
            let rl = format!("{loc}/Retry[{i}]");
            let error_equals = self.error_equals(r, &rl, i + 1 == arr.len());
            let num = |k: &str| r.get(k).and_then(Value::as_f64);
            let max_attempts = num("MaxAttempts").unwrap_or(3.0);
            if max_attempts < 0.0 {
                self.problem(
                    format!("{rl}/MaxAttempts"),
                    "MaxAttempts must be a non-negative integer",
                );
            }
            let backoff_rate = num("BackoffRate").unwrap_or(2.0);
            if backoff_rate < 1.0 {
                self.problem(
                    format!("{rl}/BackoffRate"),
                    "BackoffRate must be greater than or equal to 1.0",
                );
            }
            let interval = num("IntervalSeconds").unwrap_or(1.0);
            if interval < 1.0 && r.get("IntervalSeconds").is_some() {
                self.problem(
                    format!("{rl}/IntervalSeconds"),
                    "IntervalSeconds must be a positive integer",
                );
            }
            out.push(Retrier {
                error_equals,
                interval_seconds: interval,
                max_attempts: max_attempts.max(0.0) as u32,
                backoff_rate,
                max_delay_seconds: num("MaxDelaySeconds"),
                full_jitter: r.get("JitterStrategy").and_then(Value::as_str) == Some("FULL"),
            });
        }
        out
    }

    fn error_equals(&mut self, r: &Value, rl: &str, last: bool) -> Vec<String> {
        let list: Vec<String> = match r.get("ErrorEquals").and_then(Value::as_array) {
            Some(a) if !a.is_empty() => a
                .iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect(),
            _ => {
                self.problem(rl, "These fields are required: [ErrorEquals]");
                Vec::new()
            }
        };
        if list.iter().any(|e| e == "States.ALL") && (list.len() > 1 || !last) {
            self.problem(
                format!("{rl}/ErrorEquals"),
                "States.ALL must appear alone in the last ErrorEquals entry",
            );
        }
        list
    }

    fn catch(
        &mut self,
        v: Option<&Value>,
        loc: &str,
        ql: QueryLanguage,
        index: &HashMap<String, usize>,
    ) -> Vec<Catcher> {
        let Some(v) = v else { return Vec::new() };
        let Some(arr) = v.as_array() else {
            self.problem(format!("{loc}/Catch"), "The field 'Catch' must be an array");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, c) in arr.iter().enumerate() {
            let cl = format!("{loc}/Catch[{i}]");
            let error_equals = self.error_equals(c, &cl, i + 1 == arr.len());
            let Some(co) = c.as_object() else { continue };
            let next = self.target(co.get("Next"), &format!("{cl}/Next"), index);
            if !co.contains_key("Next") {
                self.problem(&cl, "These fields are required: [Next]");
            }
            let result_path = if ql == QueryLanguage::JsonPath {
                self.path_field(co, "ResultPath", &cl)
            } else {
                PathField::Default
            };
            let output = co
                .get("Output")
                .map(|v| self.template(v, &format!("{cl}/Output"), ql));
            let assign = co
                .get("Assign")
                .map(|v| self.assign(v, &format!("{cl}/Assign"), ql));
            if let Some(next) = next {
                out.push(Catcher {
                    error_equals,
                    next,
                    result_path,
                    output,
                    assign,
                });
            }
        }
        out
    }

    fn rule(&mut self, co: &Map<String, Value>, cl: &str, ql: QueryLanguage) -> Option<Rule> {
        if ql == QueryLanguage::Jsonata {
            return match co.get("Condition") {
                Some(v) => Some(Rule::Condition(self.template(
                    v,
                    &format!("{cl}/Condition"),
                    ql,
                ))),
                None => {
                    self.problem(cl, "These fields are required: [Condition]");
                    None
                }
            };
        }
        for (k, ctor) in [("And", 0), ("Or", 1)] {
            if let Some(v) = co.get(k) {
                let arr = v.as_array().cloned().unwrap_or_default();
                if arr.is_empty() {
                    self.problem(
                        format!("{cl}/{k}"),
                        format!("The field '{k}' must be a non-empty array"),
                    );
                    return None;
                }
                let mut rules = Vec::new();
                for (i, x) in arr.iter().enumerate() {
                    let o = x.as_object()?;
                    rules.push(self.rule(o, &format!("{cl}/{k}[{i}]"), ql)?);
                }
                return Some(if ctor == 0 {
                    Rule::And(rules)
                } else {
                    Rule::Or(rules)
                });
            }
        }
        if let Some(v) = co.get("Not") {
            let o = v.as_object()?;
            return Some(Rule::Not(Box::new(self.rule(
                o,
                &format!("{cl}/Not"),
                ql,
            )?)));
        }
        let variable = match co.get("Variable").and_then(Value::as_str) {
            Some(s) => match JsonPath::parse(s) {
                Ok(p) => p,
                Err(_) => {
                    self.problem(
                        format!("{cl}/Variable"),
                        "The value for the field 'Variable' must be a valid JSONPath",
                    );
                    return None;
                }
            },
            None => {
                self.problem(
                    cl,
                    "A choice rule must have a 'Variable' and a comparison operator, or And/Or/Not",
                );
                return None;
            }
        };
        let mut found = None;
        for (name, op) in OPS {
            if let Some(v) = co.get(*name) {
                found = Some((*op, Operand::Lit(v.clone()), *name));
            }
            let pk = format!("{name}Path");
            if let Some(v) = co.get(&pk) {
                match v.as_str().map(JsonPath::parse) {
                    Some(Ok(p)) => found = Some((*op, Operand::Path(p), *name)),
                    _ => {
                        self.problem(
                            format!("{cl}/{pk}"),
                            format!("The value for the field '{pk}' must be a valid JSONPath"),
                        );
                        return None;
                    }
                }
            }
        }
        let Some((op, operand, name)) = found else {
            self.problem(
                cl,
                "A choice rule must have a 'Variable' and a comparison operator, or And/Or/Not",
            );
            return None;
        };
        if let Operand::Lit(v) = &operand {
            let ok = match op {
                Op::StringEquals
                | Op::StringLessThan
                | Op::StringGreaterThan
                | Op::StringLessThanEquals
                | Op::StringGreaterThanEquals
                | Op::StringMatches => v.is_string(),
                Op::NumericEquals
                | Op::NumericLessThan
                | Op::NumericGreaterThan
                | Op::NumericLessThanEquals
                | Op::NumericGreaterThanEquals => v.is_number(),
                Op::TimestampEquals
                | Op::TimestampLessThan
                | Op::TimestampGreaterThan
                | Op::TimestampLessThanEquals
                | Op::TimestampGreaterThanEquals => v.is_string(),
                _ => v.is_boolean(),
            };
            if !ok {
                self.problem(
                    format!("{cl}/{name}"),
                    format!("The field '{name}' has an invalid value type"),
                );
                return None;
            }
        }
        Some(Rule::Compare {
            variable,
            op,
            operand,
        })
    }
}

fn branch_ql(o: &Map<String, Value>, parent: QueryLanguage) -> QueryLanguage {
    match o.get("QueryLanguage").and_then(Value::as_str) {
        Some("JSONata") => QueryLanguage::Jsonata,
        Some("JSONPath") => QueryLanguage::JsonPath,
        _ => parent,
    }
}

/// Why a Map `Label` is rejected, if it is.
pub fn label_problem(l: &str) -> Option<String> {
    if l.is_empty() {
        return Some("Label cannot be empty".into());
    }
    if l.chars().count() > 40 {
        return Some("Label cannot exceed 40 characters".into());
    }
    for c in l.chars() {
        let bad = c.is_whitespace()
            || matches!(
                c,
                '<' | '>'
                    | '{'
                    | '}'
                    | '['
                    | ']'
                    | '?'
                    | '*'
                    | '"'
                    | '#'
                    | '%'
                    | '\\'
                    | '^'
                    | '|'
                    | '~'
                    | '`'
                    | '$'
                    | '&'
                    | ','
                    | ';'
                    | ':'
                    | '/'
            )
            || (c as u32) < 0x20
            || (0x7f..=0x9f).contains(&(c as u32));
        if bad {
            let shown = match c {
                '\t' => "\\t".to_string(),
                '\r' => "\\r".to_string(),
                '\n' => "\\n".to_string(),
                c if (c as u32) < 0x20 || (0x7f..=0x9f).contains(&(c as u32)) => {
                    format!("\\x{:02x}", c as u32)
                }
                c => c.to_string(),
            };
            return Some(format!("Label contains invalid character: '{shown}'"));
        }
    }
    None
}
