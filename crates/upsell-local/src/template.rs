//! The SAM template as the local runtime sees it.
//!
//! Reads `sam/template.yaml` (CloudFormation YAML with short-form tags such as `!Ref`, `!GetAtt`,
//! `!Sub`), resolves parameter defaults, pseudo parameters, conditions and the intrinsic
//! functions the runtime needs, and extracts:
//! - every `AWS::Serverless::Function`: worker name (its `CodeUri` folder), environment, timeout;
//! - every `AWS::Serverless::StateMachine`: its ASL text with `DefinitionSubstitutions` applied as
//!   Step Functions does, and its `EventBridgeRule` events;
//! - every `AWS::Events::Rule` that targets a state machine or function;
//! - DynamoDB tables (key schema) and event buses.
//!
//! Local names follow the workflow design: a resource's name is its logical id, and ARNs use
//! region [`REGION`] and account [`ACCOUNT_ID`]
//! (e.g. `arn:aws:lambda:us-east-1:000000000000:function:EnrichFunction`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;

use crate::pattern::{EventPattern, PatternError};

/// Region used in local ARNs and for `AWS::Region`.
pub const REGION: &str = "us-east-1";
/// Account id used in local ARNs and for `AWS::AccountId`.
pub const ACCOUNT_ID: &str = "000000000000";
/// Name of the event bus that rules use when they name none.
pub const DEFAULT_EVENT_BUS: &str = "default";

/// Why a template could not be used.
#[derive(Debug, Error)]
pub enum TemplateError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The template is not valid YAML.
    #[error("{path} is not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Something in the template cannot be used locally; `at` is the path inside the template.
    #[error("{at}: {message}")]
    Invalid {
        /// Where, e.g. `Resources.EnrichFunction.Properties.Environment.Variables.TABLE`.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// A rule's event pattern is malformed.
    #[error("{at}: {source}")]
    Pattern {
        /// Where the pattern is.
        at: String,
        /// The pattern error.
        source: PatternError,
    },
}

fn invalid(at: &str, message: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        at: at.to_string(),
        message: message.into(),
    }
}

/// Options for loading a template.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Values that override parameter defaults (like `sam deploy --parameter-overrides`).
    pub parameter_overrides: BTreeMap<String, String>,
    /// Stack name for `AWS::StackName` (default `upsell-local`).
    pub stack_name: Option<String>,
}

/// A Lambda function of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// Logical id, e.g. `EnrichFunction`.
    pub logical_id: String,
    /// Local ARN: `arn:aws:lambda:us-east-1:000000000000:function:<LogicalId>`.
    pub arn: String,
    /// The worker that implements it: the last folder of `CodeUri`, e.g. `enrich`.
    pub worker: String,
    /// `CodeUri` as written (after `Globals`).
    pub code_uri: String,
    /// Environment variables, `Globals` merged with the function's own, resolved.
    pub environment: BTreeMap<String, String>,
    /// Timeout in seconds (`Timeout`, default 3 as in Lambda).
    pub timeout_s: u64,
    /// Memory in MB (`MemorySize`, default 128 as in Lambda).
    pub memory_mb: u64,
}

/// A Step Functions state machine of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachineSpec {
    /// Logical id, e.g. `UpsellMessageStateMachine`; also its local name.
    pub logical_id: String,
    /// Local ARN: `arn:aws:states:us-east-1:000000000000:stateMachine:<LogicalId>`.
    pub arn: String,
    /// The definition file (`DefinitionUri` resolved against the template's folder), if any.
    pub definition_path: Option<PathBuf>,
    /// Resolved `DefinitionSubstitutions`.
    pub substitutions: BTreeMap<String, String>,
    /// The ASL definition as JSON text, substitutions applied.
    pub definition: String,
}

/// Where a rule sends matched events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// A state machine of this template (logical id).
    StateMachine(String),
    /// A function of this template (logical id).
    Function(String),
    /// Anything else (SQS, SNS...): the runtime does not deliver to it.
    Other,
}

/// What a target receives.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetInput {
    /// The whole event (the default).
    Event,
    /// `Input`: a constant JSON document.
    Constant(Value),
    /// `InputPath`: a JSONPath into the event.
    Path(String),
    /// `InputTransformer`: paths into the event and a template using `<name>` placeholders.
    Transformer {
        /// `InputPathsMap`.
        paths: BTreeMap<String, String>,
        /// `InputTemplate`.
        template: String,
    },
}

/// EventBridge's delivery retry policy for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `MaximumEventAgeInSeconds` (default 86400).
    pub maximum_event_age_s: u64,
    /// `MaximumRetryAttempts` (default 185).
    pub maximum_retry_attempts: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            maximum_event_age_s: 86_400,
            maximum_retry_attempts: 185,
        }
    }
}

/// One target of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTarget {
    /// Target id.
    pub id: String,
    /// Target ARN.
    pub arn: String,
    /// The resource behind the ARN.
    pub kind: TargetKind,
    /// What the target receives.
    pub input: TargetInput,
    /// Delivery retry policy.
    pub retry_policy: RetryPolicy,
    /// ARN of the dead-letter queue for events that cannot be delivered.
    pub dead_letter_arn: Option<String>,
}

/// An EventBridge rule: a `AWS::Events::Rule` resource or a state machine's `EventBridgeRule` event.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// Logical id; for a SAM event, `<StateMachineId><EventName>` as SAM generates it.
    pub logical_id: String,
    /// Name of the bus it listens on.
    pub event_bus: String,
    /// The validated pattern.
    pub pattern: EventPattern,
    /// The pattern as JSON.
    pub pattern_json: Value,
    /// `State: ENABLED` (default) or not.
    pub enabled: bool,
    /// Where matched events go.
    pub targets: Vec<RuleTarget>,
}

/// A DynamoDB table of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Logical id; also its local name.
    pub logical_id: String,
    /// The HASH key attribute.
    pub partition_key: String,
    /// The RANGE key attribute, if any.
    pub sort_key: Option<String>,
}

/// Everything the local runtime reads from a SAM template.
#[derive(Debug, Clone)]
pub struct SamTemplate {
    /// The template file.
    pub path: PathBuf,
    /// Resolved parameter values.
    pub parameters: BTreeMap<String, Value>,
    /// Functions, by logical id order.
    pub functions: Vec<FunctionSpec>,
    /// State machines.
    pub state_machines: Vec<StateMachineSpec>,
    /// Rules (both kinds).
    pub rules: Vec<RuleSpec>,
    /// DynamoDB tables.
    pub tables: Vec<TableSpec>,
    /// Names of the event buses the template creates.
    pub event_buses: Vec<String>,
}

impl SamTemplate {
    /// Reads and resolves a template file; `DefinitionUri`s are relative to its folder.
    pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self, TemplateError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base, options)
    }

    /// Parses template text; `path` names it in errors and `base` resolves relative paths.
    pub fn parse(
        text: &str,
        path: &Path,
        base: &Path,
        options: &LoadOptions,
    ) -> Result<Self, TemplateError> {
        let yaml: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| TemplateError::Yaml {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let doc = yaml_to_json(yaml);
        let Value::Object(doc) = doc else {
            return Err(invalid("$", "a template must be a mapping"));
        };
        let resources = match doc.get("Resources") {
            Some(Value::Object(r)) => r.clone(),
            _ => {
                return Err(invalid(
                    "Resources",
                    "the template has no Resources mapping",
                ));
            }
        };
        let resolver = Resolver::new(&doc, resources.clone(), options)?;
        let globals = doc
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .cloned()
            .unwrap_or(Value::Null);

        let mut out = SamTemplate {
            path: path.to_path_buf(),
            parameters: resolver.parameters.clone(),
            functions: Vec::new(),
            state_machines: Vec::new(),
            rules: Vec::new(),
            tables: Vec::new(),
            event_buses: Vec::new(),
        };
        for (id, resource) in &resources {
            let at = format!("Resources.{id}");
            if !resolver.resource_enabled(resource, &at)? {
                continue;
            }
            let props = resource.get("Properties").cloned().unwrap_or(Value::Null);
            match resource_type(resource) {
                "AWS::Serverless::Function" => {
                    out.functions
                        .push(read_function(&resolver, id, &props, &globals, &at)?);
                }
                "AWS::Serverless::StateMachine" => {
                    let (machine, rules) = read_state_machine(&resolver, id, &props, base, &at)?;
                    out.state_machines.push(machine);
                    out.rules.extend(rules);
                }
                "AWS::Events::Rule" => {
                    if let Some(rule) = read_rule(&resolver, id, &props, &at)? {
                        out.rules.push(rule);
                    }
                }
                "AWS::DynamoDB::Table" => out.tables.push(read_table(id, &props, &at)?),
                "AWS::Serverless::SimpleTable" => out.tables.push(TableSpec {
                    logical_id: id.clone(),
                    partition_key: props
                        .get("PrimaryKey")
                        .and_then(|k| k.get("Name"))
                        .and_then(Value::as_str)
                        .unwrap_or("id")
                        .to_string(),
                    sort_key: None,
                }),
                "AWS::Events::EventBus" => out.event_buses.push(id.clone()),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The function with this logical id.
    pub fn function(&self, logical_id: &str) -> Option<&FunctionSpec> {
        self.functions.iter().find(|f| f.logical_id == logical_id)
    }

    /// The state machine with this logical id.
    pub fn state_machine(&self, logical_id: &str) -> Option<&StateMachineSpec> {
        self.state_machines
            .iter()
            .find(|m| m.logical_id == logical_id)
    }

    /// The table with this logical id (= local name).
    pub fn table(&self, logical_id: &str) -> Option<&TableSpec> {
        self.tables.iter().find(|t| t.logical_id == logical_id)
    }
}

/// Local ARN of a Lambda function.
pub fn function_arn(logical_id: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}")
}

/// Local ARN of a state machine.
pub fn state_machine_arn(logical_id: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{logical_id}")
}

/// Local ARN of an event bus.
pub fn event_bus_arn(name: &str) -> String {
    format!("arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/{name}")
}

/// An event bus name from a name or an event-bus ARN.
pub fn event_bus_name(name_or_arn: &str) -> &str {
    match name_or_arn.rsplit_once(":event-bus/") {
        Some((_, name)) => name,
        None => name_or_arn,
    }
}

/// Replaces `${Name}` placeholders in an ASL definition as Step Functions does with
/// `DefinitionSubstitutions`. A placeholder without a substitution is an error naming it.
pub fn apply_substitutions(
    definition: &str,
    substitutions: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(definition.len());
    let mut rest = definition;
    let mut unknown = Vec::new();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!(
                "unterminated placeholder \"${{{}\"",
                after.chars().take(40).collect::<String>()
            ));
        };
        let name = &after[..end];
        match substitutions.get(name) {
            Some(value) => out.push_str(value),
            None => {
                if !unknown.contains(&name) {
                    unknown.push(name);
                }
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "the definition uses placeholders with no DefinitionSubstitutions entry: {} (known: {})",
            unknown
                .iter()
                .map(|n| format!("${{{n}}}"))
                .collect::<Vec<_>>()
                .join(", "),
            if substitutions.is_empty() {
                "none".to_string()
            } else {
                substitutions.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        ))
    }
}

fn resource_type(resource: &Value) -> &str {
    resource.get("Type").and_then(Value::as_str).unwrap_or("")
}

/// Converts YAML to JSON, turning short-form tags into the long form (`!Ref X` -> `{"Ref": X}`,
/// `!GetAtt A.B` -> `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` -> `{"Fn::Sub": s}`, ...).
fn yaml_to_json(value: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match yaml_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value);
            let (key, arg) = match tag {
                "Ref" => ("Ref".to_string(), inner),
                "Condition" => ("Condition".to_string(), inner),
                "GetAtt" => {
                    let arg = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((res, attr)) => Value::from(vec![res, attr]),
                            None => Value::String(s),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_string(), arg)
                }
                other => (format!("Fn::{other}"), inner),
            };
            let mut map = Map::new();
            map.insert(key, arg);
            Value::Object(map)
        }
    }
}

/// Evaluates intrinsic functions with local values for resources.
struct Resolver {
    parameters: BTreeMap<String, Value>,
    resources: Map<String, Value>,
    conditions: Map<String, Value>,
    mappings: Map<String, Value>,
    stack_name: String,
}

/// `AWS::NoValue`: the property is removed.
type Resolved = Option<Value>;

impl Resolver {
    fn new(
        doc: &Map<String, Value>,
        resources: Map<String, Value>,
        options: &LoadOptions,
    ) -> Result<Self, TemplateError> {
        let mut parameters = BTreeMap::new();
        if let Some(Value::Object(params)) = doc.get("Parameters") {
            for (name, spec) in params {
                let at = format!("Parameters.{name}");
                let ty = spec.get("Type").and_then(Value::as_str).unwrap_or("String");
                let raw = match options.parameter_overrides.get(name) {
                    Some(v) => Some(v.clone()),
                    None => spec.get("Default").map(|d| match d {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }),
                };
                let Some(raw) = raw else {
                    // Referencing it is an error, reported where it is used.
                    continue;
                };
                if let Some(Value::Array(allowed)) = spec.get("AllowedValues")
                    && !allowed.iter().any(|a| scalar_text(Some(a)) == raw)
                {
                    return Err(invalid(
                        &at,
                        format!(
                            "value {raw:?} is not one of the AllowedValues {}",
                            Value::Array(allowed.clone())
                        ),
                    ));
                }
                let value = if ty == "CommaDelimitedList" || ty.starts_with("List<") {
                    Value::from(
                        raw.split(',')
                            .map(|s| s.trim().to_string())
                            .collect::<Vec<_>>(),
                    )
                } else {
                    Value::String(raw)
                };
                parameters.insert(name.clone(), value);
            }
        }
        for name in options.parameter_overrides.keys() {
            if !parameters.contains_key(name) {
                return Err(invalid(
                    &format!("Parameters.{name}"),
                    "an override was given for a parameter the template does not declare",
                ));
            }
        }
        let object = |key: &str| match doc.get(key) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        Ok(Resolver {
            parameters,
            conditions: object("Conditions"),
            mappings: object("Mappings"),
            resources,
            stack_name: options
                .stack_name
                .clone()
                .unwrap_or_else(|| "upsell-local".into()),
        })
    }

    fn resource_enabled(&self, resource: &Value, at: &str) -> Result<bool, TemplateError> {
        match resource.get("Condition") {
            Some(Value::String(name)) => self.condition(name, &format!("{at}.Condition"), 0),
            Some(_) => Err(invalid(at, "Condition must be a condition name")),
            None => Ok(true),
        }
    }

    fn condition(&self, name: &str, at: &str, depth: usize) -> Result<bool, TemplateError> {
        if depth > 32 {
            return Err(invalid(at, "conditions refer to each other in a cycle"));
        }
        let expr = self
            .conditions
            .get(name)
            .ok_or_else(|| invalid(at, format!("unknown condition {name:?}")))?;
        self.bool_expr(expr, &format!("Conditions.{name}"), depth + 1)
    }

    fn bool_expr(&self, expr: &Value, at: &str, depth: usize) -> Result<bool, TemplateError> {
        let Some((func, arg)) = single_key(expr) else {
            return match expr {
                Value::Bool(b) => Ok(*b),
                Value::String(s) if s == "true" => Ok(true),
                Value::String(s) if s == "false" => Ok(false),
                _ => Err(invalid(at, "expected a condition function")),
            };
        };
        let here = format!("{at}.{func}");
        let items = |n: Option<usize>| -> Result<&Vec<Value>, TemplateError> {
            match arg {
                Value::Array(items) if n.is_none_or(|n| items.len() == n) => Ok(items),
                _ => Err(invalid(&here, "wrong number of arguments")),
            }
        };
        match func {
            "Condition" => self.condition(
                arg.as_str()
                    .ok_or_else(|| invalid(&here, "expected a condition name"))?,
                &here,
                depth,
            ),
            "Fn::Equals" => {
                let args = items(Some(2))?;
                let a = self.resolve(&args[0], &here)?;
                let b = self.resolve(&args[1], &here)?;
                Ok(scalar_text(a.as_ref()) == scalar_text(b.as_ref()))
            }
            "Fn::Not" => Ok(!self.bool_expr(&items(Some(1))?[0], &here, depth)?),
            "Fn::And" => {
                for item in items(None)? {
                    if !self.bool_expr(item, &here, depth)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            "Fn::Or" => {
                for item in items(None)? {
                    if self.bool_expr(item, &here, depth)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            other => Err(invalid(
                &here,
                format!("{other} is not a condition function"),
            )),
        }
    }

    /// Resolves a value and requires it to be present (not `AWS::NoValue`).
    fn value(&self, v: &Value, at: &str) -> Result<Value, TemplateError> {
        self.resolve(v, at)?
            .ok_or_else(|| invalid(at, "resolves to AWS::NoValue where a value is required"))
    }

    /// Resolves a value to a string (numbers and booleans are stringified as CloudFormation does).
    fn string(&self, v: &Value, at: &str) -> Result<String, TemplateError> {
        match self.value(v, at)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(invalid(at, format!("expected a string, found {other}"))),
        }
    }

    fn resolve(&self, v: &Value, at: &str) -> Result<Resolved, TemplateError> {
        match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(x) = self.resolve(item, &format!("{at}[{i}]"))? {
                        out.push(x);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(map) => {
                if let Some((func, arg)) = single_key(v)
                    && (func == "Ref" || func.starts_with("Fn::"))
                {
                    return self.intrinsic(func, arg, &format!("{at}.{func}"));
                }
                let mut out = Map::new();
                for (k, item) in map {
                    if let Some(x) = self.resolve(item, &format!("{at}.{k}"))? {
                        out.insert(k.clone(), x);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    fn intrinsic(&self, func: &str, arg: &Value, at: &str) -> Result<Resolved, TemplateError> {
        let args = |n: usize| -> Result<&Vec<Value>, TemplateError> {
            match arg {
                Value::Array(items) if items.len() == n => Ok(items),
                _ => Err(invalid(at, format!("{func} takes a list of {n} arguments"))),
            }
        };
        match func {
            "Ref" => {
                let name = arg
                    .as_str()
                    .ok_or_else(|| invalid(at, "Ref takes a logical id or parameter name"))?;
                self.reference(name, at)
            }
            "Fn::GetAtt" => {
                let (res, attr) = match arg {
                    Value::Array(items) if items.len() == 2 => {
                        (self.string(&items[0], at)?, self.string(&items[1], at)?)
                    }
                    Value::String(s) => match s.split_once('.') {
                        Some((r, a)) => (r.to_string(), a.to_string()),
                        None => return Err(invalid(at, "GetAtt takes Resource.Attribute")),
                    },
                    _ => return Err(invalid(at, "GetAtt takes [Resource, Attribute]")),
                };
                self.attribute(&res, &attr, at).map(Some)
            }
            "Fn::Sub" => {
                let (template, vars) = match arg {
                    Value::String(s) => (s.clone(), Map::new()),
                    Value::Array(items) if items.len() == 2 => {
                        let template = self.string(&items[0], at)?;
                        let vars = match self.value(&items[1], at)? {
                            Value::Object(m) => m,
                            _ => return Err(invalid(at, "Sub variables must be a mapping")),
                        };
                        (template, vars)
                    }
                    _ => return Err(invalid(at, "Sub takes a string or [string, variables]")),
                };
                self.sub(&template, &vars, at)
                    .map(|s| Some(Value::String(s)))
            }
            "Fn::Join" => {
                let items = args(2)?;
                let sep = self.string(&items[0], at)?;
                let list = match self.value(&items[1], at)? {
                    Value::Array(list) => list,
                    _ => return Err(invalid(at, "Join takes [separator, list]")),
                };
                let parts = list
                    .iter()
                    .map(|x| self.string(x, at))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(Value::String(parts.join(&sep))))
            }
            "Fn::If" => {
                let items = args(3)?;
                let name = items[0]
                    .as_str()
                    .ok_or_else(|| invalid(at, "If takes [condition name, if true, if false]"))?;
                let branch = if self.condition(name, at, 0)? {
                    &items[1]
                } else {
                    &items[2]
                };
                self.resolve(branch, at)
            }
            "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or" => {
                let mut wrapper = Map::new();
                wrapper.insert(func.to_string(), arg.clone());
                self.bool_expr(&Value::Object(wrapper), at, 0)
                    .map(|b| Some(Value::Bool(b)))
            }
            "Fn::Select" => {
                let items = args(2)?;
                let index: usize = self
                    .string(&items[0], at)?
                    .parse()
                    .map_err(|_| invalid(at, "Select index must be a number"))?;
                match self.value(&items[1], at)? {
                    Value::Array(list) => list.get(index).cloned().map(Some).ok_or_else(|| {
                        invalid(at, format!("Select index {index} is out of range"))
                    }),
                    _ => Err(invalid(at, "Select takes [index, list]")),
                }
            }
            "Fn::Split" => {
                let items = args(2)?;
                let sep = self.string(&items[0], at)?;
                let text = self.string(&items[1], at)?;
                Ok(Some(Value::from(
                    text.split(sep.as_str())
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                )))
            }
            "Fn::FindInMap" => {
                let items = match arg {
                    Value::Array(items) if items.len() >= 3 => items,
                    _ => return Err(invalid(at, "FindInMap takes [map, key, key]")),
                };
                let keys = items[..3]
                    .iter()
                    .map(|x| self.string(x, at))
                    .collect::<Result<Vec<_>, _>>()?;
                self.mappings
                    .get(&keys[0])
                    .and_then(|m| m.get(&keys[1]))
                    .and_then(|m| m.get(&keys[2]))
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| {
                        invalid(
                            at,
                            format!("no mapping entry {}.{}.{}", keys[0], keys[1], keys[2]),
                        )
                    })
            }
            "Fn::GetAZs" => Ok(Some(Value::from(
                ["a", "b", "c"]
                    .iter()
                    .map(|z| format!("{REGION}{z}"))
                    .collect::<Vec<_>>(),
            ))),
            "Fn::Base64" => {
                let _ = self.string(arg, at)?;
                Err(invalid(at, "Fn::Base64 has no use in the local runtime"))
            }
            other => Err(invalid(
                at,
                format!("{other} cannot be resolved locally (no AWS account behind this template)"),
            )),
        }
    }

    fn reference(&self, name: &str, at: &str) -> Result<Resolved, TemplateError> {
        match name {
            "AWS::Region" => return Ok(Some(Value::from(REGION))),
            "AWS::AccountId" => return Ok(Some(Value::from(ACCOUNT_ID))),
            "AWS::Partition" => return Ok(Some(Value::from("aws"))),
            "AWS::URLSuffix" => return Ok(Some(Value::from("amazonaws.com"))),
            "AWS::StackName" => return Ok(Some(Value::from(self.stack_name.clone()))),
            "AWS::StackId" => {
                return Ok(Some(Value::from(format!(
                    "arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{}/local",
                    self.stack_name
                ))));
            }
            "AWS::NoValue" => return Ok(None),
            "AWS::NotificationARNs" => return Ok(Some(Value::Array(Vec::new()))),
            _ => {}
        }
        if let Some(value) = self.parameters.get(name) {
            return Ok(Some(value.clone()));
        }
        let Some(resource) = self.resources.get(name) else {
            if let Some(arn) = self.published_alias_arn(name) {
                return Ok(Some(Value::String(arn)));
            }
            return Err(invalid(
                at,
                format!(
                    "Ref to {name:?}, which is neither a parameter with a value nor a resource"
                ),
            ));
        };
        let id = name;
        let value = match resource_type(resource) {
            "AWS::Serverless::StateMachine" | "AWS::StepFunctions::StateMachine" => {
                state_machine_arn(id)
            }
            "AWS::SQS::Queue" => format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{id}"),
            _ => id.to_string(),
        };
        Ok(Some(Value::String(value)))
    }

    /// The alias SAM generates for a state machine's `AutoPublishAlias` (logical id
    /// `<StateMachine>Alias<alias>`): its ARN is the machine's ARN qualified by the alias name.
    /// Locally a machine has one version, so the alias runs the machine itself.
    fn published_alias_arn(&self, name: &str) -> Option<String> {
        self.resources.iter().find_map(|(id, resource)| {
            if !matches!(resource_type(resource), "AWS::Serverless::StateMachine") {
                return None;
            }
            let alias = resource
                .get("Properties")?
                .get("AutoPublishAlias")?
                .as_str()?;
            (name.strip_prefix(id.as_str())?.strip_prefix("Alias")? == alias)
                .then(|| format!("{}:{alias}", state_machine_arn(id)))
        })
    }

    fn attribute(&self, id: &str, attr: &str, at: &str) -> Result<Value, TemplateError> {
        let Some(resource) = self.resources.get(id) else {
            return Err(invalid(at, format!("GetAtt on unknown resource {id:?}")));
        };
        let ty = resource_type(resource);
        let arn = match ty {
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => Some(function_arn(id)),
            "AWS::Serverless::StateMachine" | "AWS::StepFunctions::StateMachine" => {
                Some(state_machine_arn(id))
            }
            "AWS::DynamoDB::Table" | "AWS::Serverless::SimpleTable" => {
                Some(format!("arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{id}"))
            }
            "AWS::Events::EventBus" => Some(event_bus_arn(id)),
            "AWS::Events::Rule" => Some(format!("arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{id}")),
            "AWS::SQS::Queue" => Some(format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{id}")),
            "AWS::SNS::Topic" => Some(format!("arn:aws:sns:{REGION}:{ACCOUNT_ID}:{id}")),
            "AWS::IAM::Role" => Some(format!("arn:aws:iam::{ACCOUNT_ID}:role/{id}")),
            "AWS::Logs::LogGroup" => Some(format!(
                "arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{id}:*"
            )),
            _ => None,
        };
        match attr {
            "Arn" => arn.map(Value::String).ok_or_else(|| {
                invalid(
                    at,
                    format!("{id} ({ty}) has no local value for attribute Arn"),
                )
            }),
            "Name" | "QueueName" | "TopicName" => Ok(Value::String(id.to_string())),
            "QueueUrl" => Ok(Value::String(format!(
                "https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{id}"
            ))),
            other => Err(invalid(
                at,
                format!("{id} ({ty}) has no local value for attribute {other}"),
            )),
        }
    }

    fn sub(
        &self,
        template: &str,
        vars: &Map<String, Value>,
        at: &str,
    ) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                invalid(at, format!("unterminated ${{ in Sub string {template:?}"))
            })?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(&self.string(v, at)?);
            } else if let Some((res, attr)) = name.split_once('.')
                && self.resources.contains_key(res)
            {
                out.push_str(&scalar_text(Some(&self.attribute(res, attr, at)?)));
            } else {
                let value = self.reference(name, at)?;
                out.push_str(&scalar_text(value.as_ref()));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn single_key(v: &Value) -> Option<(&str, &Value)> {
    match v {
        Value::Object(map) if map.len() == 1 => map.iter().next().map(|(k, v)| (k.as_str(), v)),
        _ => None,
    }
}

fn scalar_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| scalar_text(Some(i)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

fn read_function(
    resolver: &Resolver,
    id: &str,
    props: &Value,
    globals: &Value,
    at: &str,
) -> Result<FunctionSpec, TemplateError> {
    let prop = |name: &str| props.get(name).or_else(|| globals.get(name));
    let code_uri_at = format!("{at}.Properties.CodeUri");
    let code_uri = match prop("CodeUri") {
        Some(v) => resolver.string(v, &code_uri_at)?,
        None => {
            return Err(invalid(
                &code_uri_at,
                "a function needs a CodeUri (its worker folder)",
            ));
        }
    };
    let worker = code_uri
        .trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .filter(|w| !w.is_empty() && *w != "." && *w != "..")
        .ok_or_else(|| {
            invalid(
                &code_uri_at,
                format!("cannot take a worker name from {code_uri:?}"),
            )
        })?
        .to_string();
    let mut environment = BTreeMap::new();
    for (source, scope) in [
        (globals, "Globals.Function"),
        (props, &*format!("{at}.Properties")),
    ] {
        if let Some(Value::Object(vars)) =
            source.get("Environment").and_then(|e| e.get("Variables"))
        {
            for (name, v) in vars {
                let here = format!("{scope}.Environment.Variables.{name}");
                if let Some(value) = resolver.resolve(v, &here)? {
                    environment.insert(name.clone(), resolver.string(&value, &here)?);
                } else {
                    environment.remove(name);
                }
            }
        }
    }
    let number = |name: &str, default: u64| -> Result<u64, TemplateError> {
        match prop(name) {
            None => Ok(default),
            Some(v) => {
                let here = format!("{at}.Properties.{name}");
                resolver
                    .string(v, &here)?
                    .parse()
                    .map_err(|_| invalid(&here, "expected a whole number"))
            }
        }
    };
    Ok(FunctionSpec {
        logical_id: id.to_string(),
        arn: function_arn(id),
        worker,
        code_uri,
        environment,
        timeout_s: number("Timeout", 3)?,
        memory_mb: number("MemorySize", 128)?,
    })
}

fn read_state_machine(
    resolver: &Resolver,
    id: &str,
    props: &Value,
    base: &Path,
    at: &str,
) -> Result<(StateMachineSpec, Vec<RuleSpec>), TemplateError> {
    let mut substitutions = BTreeMap::new();
    if let Some(subs) = props.get("DefinitionSubstitutions") {
        let here = format!("{at}.Properties.DefinitionSubstitutions");
        let Value::Object(subs) = resolver.value(subs, &here)? else {
            return Err(invalid(&here, "must be a mapping of names to values"));
        };
        for (name, v) in subs {
            substitutions.insert(
                name.clone(),
                resolver.string(&v, &format!("{here}.{name}"))?,
            );
        }
    }
    let (definition_path, text) = match (props.get("DefinitionUri"), props.get("Definition")) {
        (Some(uri), None) => {
            let here = format!("{at}.Properties.DefinitionUri");
            let uri = match resolver.value(uri, &here)? {
                Value::String(s) => s,
                _ => {
                    return Err(invalid(
                        &here,
                        "only a local file path can be run locally (not an S3 location)",
                    ));
                }
            };
            let path = base.join(&uri);
            let text = std::fs::read_to_string(&path).map_err(|source| TemplateError::Io {
                path: path.clone(),
                source,
            })?;
            (Some(path), text)
        }
        (None, Some(definition)) => {
            let def = resolver.value(definition, &format!("{at}.Properties.Definition"))?;
            (
                None,
                serde_json::to_string_pretty(&def).expect("JSON value serialises"),
            )
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                &format!("{at}.Properties"),
                "give either Definition or DefinitionUri, not both",
            ));
        }
        (None, None) => {
            return Err(invalid(
                &format!("{at}.Properties"),
                "a state machine needs a Definition or a DefinitionUri",
            ));
        }
    };
    let definition = apply_substitutions(&text, &substitutions).map_err(|message| {
        invalid(
            &format!("{at}.Properties.DefinitionUri"),
            match &definition_path {
                Some(p) => format!("{}: {message}", p.display()),
                None => message,
            },
        )
    })?;
    serde_json::from_str::<Value>(&definition).map_err(|e| {
        invalid(
            &format!("{at}.Properties.DefinitionUri"),
            format!("the definition is not valid JSON after substitution: {e}"),
        )
    })?;

    let arn = state_machine_arn(id);
    let mut rules = Vec::new();
    if let Some(Value::Object(events)) = props.get("Events") {
        for (name, event) in events {
            let here = format!("{at}.Properties.Events.{name}");
            let ty = event.get("Type").and_then(Value::as_str).unwrap_or("");
            if ty != "EventBridgeRule" && ty != "CloudWatchEvent" {
                continue;
            }
            let p = event.get("Properties").cloned().unwrap_or(Value::Null);
            let pattern_json = match p.get("Pattern") {
                Some(pattern) => resolver.value(pattern, &format!("{here}.Properties.Pattern"))?,
                None => return Err(invalid(&here, "an EventBridgeRule event needs a Pattern")),
            };
            let pattern =
                EventPattern::parse(&pattern_json).map_err(|source| TemplateError::Pattern {
                    at: format!("{here}.Properties.Pattern"),
                    source,
                })?;
            let event_bus = match p.get("EventBusName") {
                Some(v) => {
                    event_bus_name(&resolver.string(v, &format!("{here}.Properties.EventBusName"))?)
                        .to_string()
                }
                None => DEFAULT_EVENT_BUS.to_string(),
            };
            let enabled = match p.get("State") {
                Some(v) => resolver.string(v, &here)? == "ENABLED",
                None => p
                    .get("Enabled")
                    .map(|v| resolver.string(v, &here))
                    .transpose()?
                    .is_none_or(|e| e == "true"),
            };
            let rule_id = format!("{id}{name}");
            let target = RuleTarget {
                id: p
                    .get("Target")
                    .and_then(|t| t.get("Id"))
                    .map(|v| resolver.string(v, &here))
                    .transpose()?
                    .unwrap_or_else(|| format!("{id}{name}StepFunctionsTarget")),
                arn: arn.clone(),
                kind: TargetKind::StateMachine(id.to_string()),
                input: target_input(resolver, &p, &here)?,
                retry_policy: retry_policy(resolver, p.get("RetryPolicy"), &here)?,
                dead_letter_arn: sam_dead_letter(
                    resolver,
                    p.get("DeadLetterConfig"),
                    &rule_id,
                    &here,
                )?,
            };
            rules.push(RuleSpec {
                logical_id: rule_id,
                event_bus,
                pattern,
                pattern_json,
                enabled,
                targets: vec![target],
            });
        }
    }
    Ok((
        StateMachineSpec {
            logical_id: id.to_string(),
            arn,
            definition_path,
            substitutions,
            definition,
        },
        rules,
    ))
}

fn target_input(resolver: &Resolver, p: &Value, at: &str) -> Result<TargetInput, TemplateError> {
    if let Some(input) = p.get("Input") {
        let text = resolver.string(input, &format!("{at}.Input"))?;
        let value = serde_json::from_str(&text)
            .map_err(|e| invalid(&format!("{at}.Input"), format!("not valid JSON: {e}")))?;
        return Ok(TargetInput::Constant(value));
    }
    if let Some(path) = p.get("InputPath") {
        return Ok(TargetInput::Path(
            resolver.string(path, &format!("{at}.InputPath"))?,
        ));
    }
    if let Some(t) = p.get("InputTransformer") {
        let here = format!("{at}.InputTransformer");
        let t = resolver.value(t, &here)?;
        let mut paths = BTreeMap::new();
        if let Some(Value::Object(map)) = t.get("InputPathsMap") {
            for (k, v) in map {
                paths.insert(k.clone(), resolver.string(v, &here)?);
            }
        }
        let template = t
            .get("InputTemplate")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&here, "needs an InputTemplate"))?
            .to_string();
        return Ok(TargetInput::Transformer { paths, template });
    }
    Ok(TargetInput::Event)
}

fn retry_policy(
    resolver: &Resolver,
    v: Option<&Value>,
    at: &str,
) -> Result<RetryPolicy, TemplateError> {
    let mut policy = RetryPolicy::default();
    let Some(v) = v else {
        return Ok(policy);
    };
    let here = format!("{at}.RetryPolicy");
    let v = resolver.value(v, &here)?;
    let num = |key: &str| -> Result<Option<u64>, TemplateError> {
        v.get(key)
            .map(|x| {
                resolver
                    .string(x, &format!("{here}.{key}"))?
                    .parse()
                    .map_err(|_| invalid(&format!("{here}.{key}"), "expected a whole number"))
            })
            .transpose()
    };
    if let Some(n) = num("MaximumEventAgeInSeconds")? {
        if !(60..=86_400).contains(&n) {
            return Err(invalid(&here, "MaximumEventAgeInSeconds must be 60..86400"));
        }
        policy.maximum_event_age_s = n;
    }
    if let Some(n) = num("MaximumRetryAttempts")? {
        if n > 185 {
            return Err(invalid(&here, "MaximumRetryAttempts must be 0..185"));
        }
        policy.maximum_retry_attempts = n;
    }
    Ok(policy)
}

/// SAM's `DeadLetterConfig`: `{Arn: ...}` or `{Type: SQS, QueueLogicalId?: ...}` (SAM creates
/// the queue, named `<RuleId>Queue` by default).
fn sam_dead_letter(
    resolver: &Resolver,
    v: Option<&Value>,
    rule_id: &str,
    at: &str,
) -> Result<Option<String>, TemplateError> {
    let Some(v) = v else { return Ok(None) };
    let here = format!("{at}.DeadLetterConfig");
    let v = resolver.value(v, &here)?;
    if let Some(arn) = v.get("Arn") {
        return Ok(Some(resolver.string(arn, &here)?));
    }
    match v.get("Type").and_then(Value::as_str) {
        Some("SQS") => {
            let queue = v
                .get("QueueLogicalId")
                .and_then(Value::as_str)
                .map_or_else(|| format!("{rule_id}Queue"), str::to_string);
            Ok(Some(format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue}")))
        }
        _ => Err(invalid(&here, "needs an Arn or Type: SQS")),
    }
}

fn read_rule(
    resolver: &Resolver,
    id: &str,
    props: &Value,
    at: &str,
) -> Result<Option<RuleSpec>, TemplateError> {
    let here = format!("{at}.Properties");
    let Some(pattern) = props.get("EventPattern") else {
        // A schedule rule: nothing for the event bus to match.
        return Ok(None);
    };
    let pattern_json = match resolver.value(pattern, &format!("{here}.EventPattern"))? {
        Value::String(text) => serde_json::from_str(&text).map_err(|e| {
            invalid(
                &format!("{here}.EventPattern"),
                format!("not valid JSON: {e}"),
            )
        })?,
        other => other,
    };
    let pattern = EventPattern::parse(&pattern_json).map_err(|source| TemplateError::Pattern {
        at: format!("{here}.EventPattern"),
        source,
    })?;
    let event_bus = match props.get("EventBusName") {
        Some(v) => {
            event_bus_name(&resolver.string(v, &format!("{here}.EventBusName"))?).to_string()
        }
        None => DEFAULT_EVENT_BUS.to_string(),
    };
    let enabled = match props.get("State") {
        Some(v) => resolver.string(v, &format!("{here}.State"))? == "ENABLED",
        None => true,
    };
    let mut targets = Vec::new();
    if let Some(Value::Array(items)) = props.get("Targets") {
        for (i, t) in items.iter().enumerate() {
            let t_at = format!("{here}.Targets[{i}]");
            let arn = match t.get("Arn") {
                Some(v) => resolver.string(v, &format!("{t_at}.Arn"))?,
                None => return Err(invalid(&t_at, "a target needs an Arn")),
            };
            let kind = target_kind(resolver, &arn);
            let dead_letter_arn = match t.get("DeadLetterConfig").and_then(|d| d.get("Arn")) {
                Some(v) => Some(resolver.string(v, &format!("{t_at}.DeadLetterConfig.Arn"))?),
                None => None,
            };
            targets.push(RuleTarget {
                id: match t.get("Id") {
                    Some(v) => resolver.string(v, &format!("{t_at}.Id"))?,
                    None => return Err(invalid(&t_at, "a target needs an Id")),
                },
                arn,
                kind,
                input: target_input(resolver, t, &t_at)?,
                retry_policy: retry_policy(resolver, t.get("RetryPolicy"), &t_at)?,
                dead_letter_arn,
            });
        }
    }
    Ok(Some(RuleSpec {
        logical_id: id.to_string(),
        event_bus,
        pattern,
        pattern_json,
        enabled,
        targets,
    }))
}

fn target_kind(resolver: &Resolver, arn: &str) -> TargetKind {
    for (id, resource) in &resolver.resources {
        match resource_type(resource) {
            "AWS::Serverless::StateMachine" | "AWS::StepFunctions::StateMachine"
                if state_machine_arn(id) == arn =>
            {
                return TargetKind::StateMachine(id.clone());
            }
            "AWS::Serverless::Function" | "AWS::Lambda::Function" if function_arn(id) == arn => {
                return TargetKind::Function(id.clone());
            }
            _ => {}
        }
    }
    TargetKind::Other
}

fn read_table(id: &str, props: &Value, at: &str) -> Result<TableSpec, TemplateError> {
    let here = format!("{at}.Properties.KeySchema");
    let Some(Value::Array(keys)) = props.get("KeySchema") else {
        return Err(invalid(&here, "a table needs a KeySchema"));
    };
    let key = |kind: &str| {
        keys.iter()
            .find(|k| k.get("KeyType").and_then(Value::as_str) == Some(kind))
            .and_then(|k| k.get("AttributeName"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(TableSpec {
        logical_id: id.to_string(),
        partition_key: key("HASH").ok_or_else(|| invalid(&here, "no HASH key"))?,
        sort_key: key("RANGE"),
    })
}
