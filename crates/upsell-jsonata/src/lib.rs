//! A JSONata parser and evaluator, with the functions AWS Step Functions adds.
//!
//! ```
//! use upsell_jsonata::{Env, Expression};
//! let expr = Expression::parse("$sum(items.price) * $rate").unwrap();
//! let mut env = Env::new();
//! env.bind("rate", serde_json::json!(2));
//! let input = serde_json::json!({"items": [{"price": 1.5}, {"price": 2}]});
//! assert_eq!(expr.evaluate(&input, &env).unwrap(), Some(serde_json::json!(7)));
//! ```
//!
//! Undefined results are `Ok(None)`, distinct from JSON `null`. Numbers are `f64`; integral
//! results serialise as JSON integers. Errors carry JSONata's error codes.

mod datetime;
mod error;
mod eval;
mod functions;
mod parser;
mod signature;
mod stepfunctions;
mod value;

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::Value;

pub use error::Error;

use crate::value::{Arr, Frame, Val};

/// Variable bindings visible as `$name`, plus evaluation options.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, Value>,
    step_functions: bool,
}

impl Env {
    /// An empty environment with the JSONata standard library.
    pub fn new() -> Env {
        Env::default()
    }

    /// Binds `$name` (without the `$`) to `value`, replacing any earlier binding.
    pub fn bind(&mut self, name: &str, value: Value) {
        self.vars.insert(name.to_string(), value);
    }

    /// The value bound to `$name`, if any.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.vars.get(name)
    }

    /// Removes the binding of `$name`.
    pub fn unbind(&mut self, name: &str) -> Option<Value> {
        self.vars.remove(name)
    }

    /// Enables the Step Functions functions `$partition`, `$range`, `$hash`, `$random([seed])`,
    /// `$uuid` and `$parse`.
    pub fn with_step_functions_extensions(mut self) -> Env {
        self.step_functions = true;
        self
    }
}

/// A parsed JSONata expression: reusable, `Send + Sync`, cheap to evaluate many times.
#[derive(Debug, Clone)]
pub struct Expression {
    src: String,
    root: std::sync::Arc<parser::Node>,
}

impl Expression {
    /// Parses `src`; syntax errors have `S0xxx` codes.
    pub fn parse(src: &str) -> Result<Expression, Error> {
        let root = parser::parse(src)?;
        Ok(Expression {
            src: src.to_string(),
            root: std::sync::Arc::new(root),
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Evaluates against `input` (the context `$` and root `$$`) with the bindings in `env`.
    /// `Ok(None)` means the result is undefined. A function result is an error with code
    /// [`Error::UNSUPPORTED_RESULT`].
    pub fn evaluate(&self, input: &Value, env: &Env) -> Result<Option<Value>, Error> {
        self.eval_with(Some(input), env, None)
    }

    /// Evaluates with no input at all (`$` is undefined).
    pub fn evaluate_without_input(&self, env: &Env) -> Result<Option<Value>, Error> {
        self.eval_with(None, env, None)
    }

    /// `stack_base` is set when evaluating from inside another evaluation (`$eval`), so the
    /// stack budget is shared.
    pub(crate) fn eval_with(
        &self,
        input: Option<&Value>,
        env: &Env,
        stack_base: Option<usize>,
    ) -> Result<Option<Value>, Error> {
        let input = input.map(|v| match v {
            Value::Array(_) => Val::Arr(Rc::new(Arr {
                items: vec![Val::from_json(v)],
                seq: true,
                outer: true,
                ..Arr::default()
            })),
            other => Val::from_json(other),
        });
        let root = input.as_ref().map(|v| match v {
            Val::Arr(a) if a.outer => a.items[0].clone(),
            other => other.clone(),
        });
        let ctx = eval::Ctx::new(env, root, stack_base.unwrap_or_else(eval::stack_address));
        let frame = Rc::new(Frame::default());
        let result = ctx.eval(&self.root, input.as_ref(), &frame)?;
        match result {
            None => Ok(None),
            Some(v) => v.to_json().map(Some).map_err(|mut e| {
                if e.position.is_none() {
                    e.position = Some(0);
                }
                e
            }),
        }
    }
}

#[cfg(test)]
mod tests;
