//! The error type: JSONata error codes with message and position.

/// A JSONata error: a JSONata error code (`T2001`, `D3001`, `S0201`...), a message and the
/// character offset in the expression where it was raised, when known.
///
/// Codes follow JSONata: `S0xxx` syntax errors, `T0xxx`/`T1xxx`/`T2xxx` type errors, `D1xxx`..
/// `D3xxx` dynamic errors, `U1001` recursion limit. Codes added by this crate are listed as
/// associated constants.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}{}", position.map(|p| format!(" (at position {p})")).unwrap_or_default())]
pub struct Error {
    /// JSONata error code.
    pub code: String,
    /// Human-readable message, as JSONata words it.
    pub message: String,
    /// Byte offset in the source expression, when known.
    pub position: Option<usize>,
}

impl Error {
    /// The expression evaluated to a function (or a value containing one), which has no JSON form.
    /// Step Functions reports this as "returned an unsupported result type".
    pub const UNSUPPORTED_RESULT: &'static str = "SF0001";
    /// The evaluation nested deeper than the recursion limit.
    pub const STACK_OVERFLOW: &'static str = "U1001";

    pub(crate) fn new(code: &str, message: impl Into<String>, position: Option<usize>) -> Error {
        Error {
            code: code.to_string(),
            message: message.into(),
            position,
        }
    }
}
