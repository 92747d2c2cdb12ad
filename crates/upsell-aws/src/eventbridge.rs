//! [`EventPublisher`] on EventBridge `PutEvents`. `PutEvents` answers HTTP 200 even when the
//! entry was refused, so the adapter checks `FailedEntryCount` and maps the entry's error code:
//! ThrottlingException -> `Throttled`, InternalFailure -> `Transient`, anything else -> `Invalid`.
//!
//! The event's own id is not sent (EventBridge assigns ids); it is kept in the detail by the
//! caller if consumers need it. The returned id is the one EventBridge assigned.

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use upsell_core::events::RawEvent;
use upsell_core::ports::{EventPublisher, PortError};

use crate::error::{Failure, classify_code, port_error, port_error_of};

/// Largest `PutEvents` entry EventBridge accepts (256 KiB, counted as EventBridge does).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// Publishes to one event bus.
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: Client,
    bus_name: String,
}

impl EventBridgePublisher {
    /// A publisher to `bus_name` (name or ARN).
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        EventBridgePublisher {
            client,
            bus_name: bus_name.into(),
        }
    }

    /// The bus name.
    pub fn bus_name(&self) -> &str {
        &self.bus_name
    }
}

/// Entry size as EventBridge counts it: time (14 bytes), source, detail-type, detail, resources.
pub fn entry_size(event: &RawEvent, detail: &str) -> usize {
    14 + event.source.len()
        + event.detail_type.len()
        + detail.len()
        + event.resources.iter().map(String::len).sum::<usize>()
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, event: &RawEvent) -> Result<String, PortError> {
        let detail = serde_json::to_string(&event.detail)
            .map_err(|e| PortError::Invalid(format!("event {} detail: {e}", event.id)))?;
        if !event.detail.is_object() {
            return Err(PortError::Invalid(format!(
                "event {}: EventBridge needs the detail to be a JSON object",
                event.id
            )));
        }
        let size = entry_size(event, &detail);
        if size > MAX_ENTRY_BYTES {
            return Err(PortError::Invalid(format!(
                "event {} is {size} bytes; EventBridge accepts at most {MAX_ENTRY_BYTES}",
                event.id
            )));
        }
        let mut entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(&event.source)
            .detail_type(&event.detail_type)
            .detail(detail)
            .time(DateTime::from_millis(event.time.timestamp_millis()))
            .set_resources((!event.resources.is_empty()).then(|| event.resources.clone()));
        // Lambda sets the X-Ray trace header per invocation; passing it on links the traces.
        if let Ok(trace) = std::env::var("_X_AMZN_TRACE_ID") {
            entry = entry.trace_header(trace);
        }
        let out = self
            .client
            .put_events()
            .entries(entry.build())
            .send()
            .await
            .map_err(|e| port_error("EventBridge PutEvents", e))?;
        let result = out.entries().first();
        if out.failed_entry_count() > 0 || result.is_some_and(|r| r.error_code().is_some()) {
            let code = result.and_then(|r| r.error_code()).unwrap_or("unknown");
            let message = result
                .and_then(|r| r.error_message())
                .unwrap_or("no message");
            let failure = match code {
                "InternalFailure" | "InternalException" => Failure::Transient,
                other => classify_code(other)
                    .filter(|f| *f != Failure::NotFound)
                    .unwrap_or(Failure::Invalid),
            };
            return Err(port_error_of(
                failure,
                format!(
                    "EventBridge PutEvents refused event {} on bus {}: {code}: {message}",
                    event.id, self.bus_name
                ),
            ));
        }
        match result.and_then(|r| r.event_id()) {
            Some(id) => Ok(id.to_owned()),
            None => Err(PortError::Other(format!(
                "EventBridge PutEvents returned no entry for event {}",
                event.id
            ))),
        }
    }
}
