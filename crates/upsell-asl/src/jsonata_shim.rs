//! Fallback used only when the `jsonata` feature is off: same API as `upsell_jsonata`, every
//! evaluation fails with a clear error.

use serde_json::Value;

/// JSONata error.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    /// Code.
    pub code: String,
    /// Message.
    pub message: String,
    /// Position.
    pub position: Option<usize>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Bindings.
#[derive(Debug, Clone, Default)]
pub struct Env;

impl Env {
    /// New env.
    pub fn new() -> Env {
        Env
    }
    /// Ignored.
    pub fn bind(&mut self, _name: &str, _value: Value) {}
    /// Ignored.
    pub fn with_step_functions_extensions(self) -> Env {
        self
    }
}

/// Unevaluable expression.
#[derive(Debug, Clone)]
pub struct Expression {
    src: String,
}

impl Expression {
    /// Keeps the source.
    pub fn parse(src: &str) -> Result<Expression, Error> {
        Ok(Expression {
            src: src.to_string(),
        })
    }
    /// Always fails.
    pub fn evaluate(&self, _input: &Value, _env: &Env) -> Result<Option<Value>, Error> {
        Err(Error {
            code: "S0000".into(),
            message: format!("JSONata support is not compiled in: {}", self.src),
            position: None,
        })
    }
}
