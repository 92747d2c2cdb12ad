//! SDK errors -> [`PortError`] / [`ModelError`], decided by the service's error code and the HTTP
//! status, never by message text. The variant decides the stable name the state machine's Retry
//! and Catch match, so the table below is the contract:
//!
//! | what the SDK reports | PortError | ModelError |
//! | --- | --- | --- |
//! | ConditionalCheckFailed, TransactionConflict | Conflict | Other |
//! | ResourceNotFound (table, model, knowledge base) | NotFound | InvalidRequest |
//! | Throttling, ProvisionedThroughputExceeded, RequestLimitExceeded, ServiceQuotaExceeded, HTTP 429 | Throttled | Throttled |
//! | InternalServer*, ServiceUnavailable, ModelTimeout, ModelNotReady, HTTP 5xx | Transient | Transient |
//! | attempt timeout, network failure, unreadable response (even with HTTP 200) | Transient | Transient |
//! | Validation, AccessDenied, other 4xx, request not buildable | Invalid | InvalidRequest |
//! | anything else | Other | Other |

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use upsell_core::ports::{ModelError, PortError};

/// What kind of failure an SDK error is, independent of the port it surfaces in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A conditional write lost.
    Conflict,
    /// The named resource does not exist.
    NotFound,
    /// Slow down and retry.
    Throttled,
    /// Timeout, 5xx, network: retry.
    Transient,
    /// The request is wrong or not allowed; retrying will not help.
    Invalid,
    /// Anything else.
    Other,
}

const CONFLICT: &[&str] = &[
    "ConditionalCheckFailedException",
    "TransactionConflictException",
    "ConcurrentModificationException",
];
const NOT_FOUND: &[&str] = &["ResourceNotFoundException", "ResourceNotFound"];
const THROTTLED: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ServiceQuotaExceededException",
    "LimitExceededException",
];
const TRANSIENT: &[&str] = &[
    "InternalServerError",
    "InternalServerException",
    "InternalException",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ModelTimeoutException",
    "ModelNotReadyException",
    "ModelStreamErrorException",
    "ModelErrorException",
    "DependencyFailedException",
    "BadGatewayException",
];
const INVALID: &[&str] = &[
    "ValidationException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "SerializationException",
    "ItemCollectionSizeLimitExceededException",
];

/// Classifies a service error code (`None` when the code is unknown).
pub fn classify_code(code: &str) -> Option<Failure> {
    let is = |list: &[&str]| list.contains(&code);
    if is(CONFLICT) {
        Some(Failure::Conflict)
    } else if is(NOT_FOUND) {
        Some(Failure::NotFound)
    } else if is(THROTTLED) {
        Some(Failure::Throttled)
    } else if is(TRANSIENT) {
        Some(Failure::Transient)
    } else if is(INVALID) {
        Some(Failure::Invalid)
    } else {
        None
    }
}

/// Classifies an HTTP status of an error response.
pub fn classify_status(status: u16) -> Failure {
    match status {
        429 => Failure::Throttled,
        404 => Failure::NotFound,
        408 | 500..=599 => Failure::Transient,
        400..=499 => Failure::Invalid,
        _ => Failure::Other,
    }
}

/// Classifies any SDK error and describes it as `op: <code>: <message>`.
pub fn classify<E>(op: &str, err: &SdkError<E>) -> (Failure, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        // A success status whose body could not be read surfaces as an unhandled service
        // error: the service answered, we could not understand it; a retry may get a good one.
        SdkError::ServiceError(ctx) if ctx.raw().status().is_success() => (
            Failure::Transient,
            format!(
                "{op}: unreadable response (HTTP {}): {}",
                ctx.raw().status().as_u16(),
                DisplayErrorContext(err)
            ),
        ),
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code();
            let failure = code
                .and_then(classify_code)
                .unwrap_or_else(|| classify_status(status));
            let message = ctx.err().message().unwrap_or("no message");
            let code = code.unwrap_or("unknown error code");
            (failure, format!("{op}: {code} (HTTP {status}): {message}"))
        }
        SdkError::TimeoutError(_) => (Failure::Transient, format!("{op}: timed out")),
        SdkError::DispatchFailure(f) => {
            let what = if f.is_timeout() {
                "timed out connecting"
            } else {
                "request not delivered"
            };
            (
                Failure::Transient,
                format!("{op}: {what}: {}", DisplayErrorContext(err)),
            )
        }
        SdkError::ResponseError(ctx) => {
            let status = ctx.raw().status().as_u16();
            (
                Failure::Transient,
                format!(
                    "{op}: unreadable response (HTTP {status}): {}",
                    DisplayErrorContext(err)
                ),
            )
        }
        SdkError::ConstructionFailure(_) => (
            Failure::Invalid,
            format!(
                "{op}: request could not be built: {}",
                DisplayErrorContext(err)
            ),
        ),
        _ => (
            Failure::Other,
            format!("{op}: {}", DisplayErrorContext(err)),
        ),
    }
}

/// The [`PortError`] for a failure.
pub fn port_error_of(failure: Failure, message: String) -> PortError {
    match failure {
        Failure::Conflict => PortError::Conflict(message),
        Failure::NotFound => PortError::NotFound(message),
        Failure::Throttled => PortError::Throttled(message),
        Failure::Transient => PortError::Transient(message),
        Failure::Invalid => PortError::Invalid(message),
        Failure::Other => PortError::Other(message),
    }
}

/// The [`ModelError`] for a failure. A missing model is a bad request (wrong model id in the
/// registry), not something a retry fixes.
pub fn model_error_of(failure: Failure, message: String) -> ModelError {
    match failure {
        Failure::Throttled => ModelError::Throttled(message),
        Failure::Transient => ModelError::Transient(message),
        Failure::Invalid | Failure::NotFound => ModelError::InvalidRequest(message),
        Failure::Conflict | Failure::Other => ModelError::Other(message),
    }
}

/// Maps an SDK error of operation `op` to a [`PortError`].
pub fn port_error<E>(op: &str, err: SdkError<E>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (failure, message) = classify(op, &err);
    port_error_of(failure, message)
}

/// Maps an SDK error of operation `op` to a [`ModelError`].
pub fn model_error<E>(op: &str, err: SdkError<E>) -> ModelError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (failure, message) = classify(op, &err);
    model_error_of(failure, message)
}

/// The service error code of an SDK error, if the service sent one.
pub fn error_code<E>(err: &SdkError<E>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(ctx) => ctx.err().code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_decide_before_status() {
        assert_eq!(
            classify_code("ThrottlingException"),
            Some(Failure::Throttled)
        );
        assert_eq!(
            classify_code("ConditionalCheckFailedException"),
            Some(Failure::Conflict)
        );
        assert_eq!(
            classify_code("ModelTimeoutException"),
            Some(Failure::Transient)
        );
        assert_eq!(classify_code("ValidationException"), Some(Failure::Invalid));
        assert_eq!(classify_code("SomethingNew"), None);
    }

    #[test]
    fn statuses_fall_back_sensibly() {
        assert_eq!(classify_status(429), Failure::Throttled);
        assert_eq!(classify_status(503), Failure::Transient);
        assert_eq!(classify_status(400), Failure::Invalid);
        assert_eq!(classify_status(404), Failure::NotFound);
        assert_eq!(classify_status(302), Failure::Other);
    }

    #[test]
    fn model_errors_keep_the_retry_contract() {
        let m = |f| model_error_of(f, "x".into()).error_type();
        assert_eq!(m(Failure::Throttled), "ModelThrottled");
        assert_eq!(m(Failure::Transient), "ModelTransient");
        assert_eq!(m(Failure::NotFound), "InvalidRequest");
        assert_eq!(m(Failure::Invalid), "InvalidRequest");
    }
}
