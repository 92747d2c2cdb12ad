//! Compiled payload templates: `Parameters`/`ItemSelector`/`ResultSelector` (JSONPath `.$` keys
//! and intrinsics), `Arguments`/`Output`/`Assign` (JSONata `{% %}` strings) and plain literals.

use crate::error::{Failure, names};
use crate::intrinsics::{self, Intrinsic};
use crate::jsonpath::{JsonPath, Root};
use serde_json::{Map, Value};
use std::sync::Arc;

/// A parsed JSONata expression with its source text.
#[derive(Debug, Clone)]
pub struct Jexpr {
    /// Expression text (between `{%` and `%}`).
    pub src: String,
    /// The parsed expression.
    pub expr: Arc<crate::jsonata_api::Expression>,
}

/// Returns the expression text when `s` is exactly `{% ... %}`.
pub fn jsonata_body(s: &str) -> Option<&str> {
    if s.len() >= 4 && s.starts_with("{%") && s.ends_with("%}") {
        Some(&s[2..s.len() - 2])
    } else {
        None
    }
}

/// A compiled template.
#[derive(Debug, Clone)]
pub enum Template {
    /// A literal with nothing to evaluate.
    Const(Value),
    /// An object with at least one evaluated member (keys already stripped of `.$`).
    Object(Vec<(String, Template)>),
    /// An array with at least one evaluated element.
    Array(Vec<Template>),
    /// A JSONPath reference.
    Path(JsonPath),
    /// An intrinsic function call.
    Intrinsic(Intrinsic),
    /// A JSONata expression.
    Jsonata(Jexpr),
}

/// The context object, built only when an expression reads it.
pub struct LazyContext<'a> {
    cell: std::cell::OnceCell<Value>,
    build: &'a dyn Fn() -> Value,
}

impl<'a> LazyContext<'a> {
    /// A context object produced by `build` on first use.
    pub fn new(build: &'a dyn Fn() -> Value) -> LazyContext<'a> {
        LazyContext {
            cell: std::cell::OnceCell::new(),
            build,
        }
    }
    /// The context object.
    pub fn get(&self) -> &Value {
        self.cell.get_or_init(|| (self.build)())
    }
}

/// What templates read from while evaluating.
pub struct Scope<'a> {
    /// The state's effective input (`$` / `$states.input`).
    pub input: &'a Value,
    /// The context object (`$$` / `$states.context`).
    pub context: &'a LazyContext<'a>,
    /// Workflow variables.
    pub vars: &'a Map<String, Value>,
    /// `$states.result` (JSONata, after a task).
    pub result: Option<&'a Value>,
    /// `$states.errorOutput` (JSONata, in a Catch).
    pub error_output: Option<&'a Value>,
}

impl Scope<'_> {
    /// Reads a JSONPath (any root).
    pub fn read(&self, p: &JsonPath) -> Option<Value> {
        match p.root() {
            Root::Input => p.read(self.input),
            Root::Context => p.read(self.context.get()),
            Root::Variable(name) => p.read(self.vars.get(name)?),
        }
    }

    /// Evaluates a JSONata expression; `field` names the field for error messages.
    pub fn jsonata(&self, j: &Jexpr, field: &str) -> Result<Option<Value>, Failure> {
        let mut env = crate::jsonata_api::Env::new().with_step_functions_extensions();
        for (k, v) in self.vars {
            env.bind(k, v.clone());
        }
        let mut states = Map::new();
        states.insert("input".into(), self.input.clone());
        states.insert("context".into(), self.context.get().clone());
        if let Some(r) = self.result {
            states.insert("result".into(), r.clone());
        }
        if let Some(e) = self.error_output {
            states.insert("errorOutput".into(), e.clone());
        }
        env.bind("states", Value::Object(states));
        j.expr.evaluate(self.input, &env).map_err(|e| {
            // A result JSON cannot hold (a function) is reported apart from evaluation errors.
            let what = if e.code == crate::jsonata_api::Error::UNSUPPORTED_RESULT {
                "returned an unsupported result type.".to_string()
            } else {
                format!("threw an error during evaluation. {e}")
            };
            Failure::new(
                names::QUERY_EVALUATION,
                format!(
                    "The JSONata expression '{}' specified for the field '{field}' {what}",
                    j.src.trim()
                ),
            )
        })
    }
}

/// Evaluation error before the state prefix is added.
pub type EvalResult = Result<Value, Failure>;

impl Template {
    /// Compiles a JSONPath-mode payload template (keys ending in `.$` are paths/intrinsics).
    pub fn jsonpath(v: &Value, at: &str, problems: &mut Vec<(String, String)>) -> Template {
        match v {
            Value::Object(m) => {
                let mut members = Vec::with_capacity(m.len());
                let mut dynamic = false;
                for (k, val) in m {
                    if let Some(stripped) = k.strip_suffix(".$") {
                        dynamic = true;
                        let loc = format!("{at}/{k}");
                        let t = match val {
                            Value::String(s) => Self::dynamic_string(s, &loc, problems),
                            _ => {
                                problems.push((loc, format!("The value for the field '{k}' must be a STRING that contains a JSONPath but was an {}", type_name(val).to_uppercase())));
                                Template::Const(Value::Null)
                            }
                        };
                        members.push((stripped.to_string(), t));
                    } else {
                        let t = Self::jsonpath(val, &format!("{at}/{k}"), problems);
                        dynamic |= !matches!(t, Template::Const(_));
                        members.push((k.clone(), t));
                    }
                }
                if dynamic {
                    Template::Object(members)
                } else {
                    Template::Const(v.clone())
                }
            }
            Value::Array(a) => {
                let items: Vec<Template> = a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Self::jsonpath(x, &format!("{at}[{i}]"), problems))
                    .collect();
                if items.iter().all(|t| matches!(t, Template::Const(_))) {
                    Template::Const(v.clone())
                } else {
                    Template::Array(items)
                }
            }
            _ => Template::Const(v.clone()),
        }
    }

    /// Compiles the value of a `.$` key: a path or an intrinsic call.
    pub fn dynamic_string(s: &str, loc: &str, problems: &mut Vec<(String, String)>) -> Template {
        if s.starts_with('$') {
            match JsonPath::parse(s) {
                Ok(p) => Template::Path(p),
                Err(_) => {
                    problems.push((loc.to_string(), format!("The value for the field '{}' must be a valid JSONPath or a valid intrinsic function call", loc.rsplit('/').next().unwrap_or(""))));
                    Template::Const(Value::Null)
                }
            }
        } else if intrinsics::looks_like_call(s) {
            match Intrinsic::parse(s) {
                Ok(i) => Template::Intrinsic(i),
                Err(e) => {
                    problems.push((loc.to_string(), e));
                    Template::Const(Value::Null)
                }
            }
        } else {
            problems.push((loc.to_string(), format!("The value for the field '{}' must be a valid JSONPath or a valid intrinsic function call", loc.rsplit('/').next().unwrap_or(""))));
            Template::Const(Value::Null)
        }
    }

    /// Compiles a JSONata-mode template: `{% %}` strings anywhere are expressions.
    pub fn jsonata(v: &Value, at: &str, problems: &mut Vec<(String, String)>) -> Template {
        match v {
            Value::String(s) => match jsonata_body(s) {
                Some(body) => match crate::jsonata_api::Expression::parse(body) {
                    Ok(e) => Template::Jsonata(Jexpr {
                        src: body.to_string(),
                        expr: Arc::new(e),
                    }),
                    Err(e) => {
                        problems.push((
                            at.to_string(),
                            format!("Invalid JSONata expression '{}': {}", body.trim(), e),
                        ));
                        Template::Const(Value::Null)
                    }
                },
                None => Template::Const(v.clone()),
            },
            Value::Object(m) => {
                let members: Vec<(String, Template)> = m
                    .iter()
                    .map(|(k, x)| (k.clone(), Self::jsonata(x, &format!("{at}/{k}"), problems)))
                    .collect();
                if members.iter().all(|(_, t)| matches!(t, Template::Const(_))) {
                    Template::Const(v.clone())
                } else {
                    Template::Object(members)
                }
            }
            Value::Array(a) => {
                let items: Vec<Template> = a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Self::jsonata(x, &format!("{at}[{i}]"), problems))
                    .collect();
                if items.iter().all(|t| matches!(t, Template::Const(_))) {
                    Template::Const(v.clone())
                } else {
                    Template::Array(items)
                }
            }
            _ => Template::Const(v.clone()),
        }
    }

    /// Evaluates the template. `field` is the top-level field name (for messages).
    pub fn eval(&self, scope: &Scope<'_>, field: &str) -> EvalResult {
        self.eval_at(scope, &FieldName::Top(field))
    }

    fn eval_at(&self, scope: &Scope<'_>, field: &FieldName<'_>) -> EvalResult {
        match self {
            Template::Const(v) => Ok(v.clone()),
            Template::Object(members) => {
                let mut m = Map::with_capacity(members.len());
                for (k, t) in members {
                    let sub = match t {
                        Template::Path(_) | Template::Intrinsic(_) => FieldName::PathKey(k),
                        _ => FieldName::Member(field, k),
                    };
                    m.insert(k.clone(), t.eval_at(scope, &sub)?);
                }
                Ok(Value::Object(m))
            }
            Template::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, t) in items.iter().enumerate() {
                    out.push(t.eval_at(scope, &FieldName::Element(field, i))?);
                }
                Ok(Value::Array(out))
            }
            Template::Path(p) => scope
                .read(p)
                .ok_or_else(|| missing_path(p, &field.to_string(), scope)),
            Template::Intrinsic(i) => i.eval(&|p: &JsonPath| {
                scope
                    .read(p)
                    .ok_or_else(|| missing_path(p, &field.to_string(), scope))
            }),
            Template::Jsonata(j) => {
                let field = field.to_string();
                scope.jsonata(j, &field)?.ok_or_else(|| {
                    Failure::new(
                        names::QUERY_EVALUATION,
                        format!("The JSONata expression '{}' specified for the field '{field}' returned nothing (undefined).", j.src.trim()),
                    )
                })
            }
        }
    }
}

/// The field name error messages show, rendered only when one is needed.
enum FieldName<'a> {
    /// The top-level field (`Parameters`, `Output`...).
    Top(&'a str),
    /// A member holding a path or an intrinsic: `key.$`.
    PathKey(&'a str),
    /// Any other member: `parent/key`.
    Member(&'a FieldName<'a>, &'a str),
    /// An array element: `parent[i]`.
    Element(&'a FieldName<'a>, usize),
}

impl std::fmt::Display for FieldName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldName::Top(s) => f.write_str(s),
            FieldName::PathKey(k) => write!(f, "{k}.$"),
            FieldName::Member(parent, k) => write!(f, "{parent}/{k}"),
            FieldName::Element(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// The `States.Runtime` failure for a path that selects nothing.
pub fn missing_path(p: &JsonPath, field: &str, scope: &Scope<'_>) -> Failure {
    let doc = match p.root() {
        Root::Input => scope.input,
        Root::Context => scope.context.get(),
        Root::Variable(_) => scope.input,
    };
    Failure::new(
        names::RUNTIME,
        format!(
            "The JSONPath '{}' specified for the field '{field}' could not be found in the input '{}'",
            p.source(),
            doc
        ),
    )
}

/// JSON type names as Step Functions prints them.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
