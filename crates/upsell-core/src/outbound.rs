//! Events the system emits: the `detail` types of what upsell-flow puts on the event bus, for
//! the teams that consume them. Their JSON Schemas are generated into `schemas/events/out/`
//! and checked like the inbound ones.
//!
//! To publish a new outbound event: define its detail type here (or in any module of this
//! crate) implementing [`EventDetail`], build the bus event with [`outbound_event`], and add
//! one line to [`crate::schema::outbound_event_schemas`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::AgentRef;
use crate::events::{EventDetail, EventEnvelope, RawEvent, Service};

/// `source` of every event upsell-flow emits (outside the upstream rule's detail-types, so none
/// starts the workflow again).
pub const OUTBOUND_SOURCE: &str = "com.greenleaf.upsell-flow";

/// Detail of `UpsellMessageApproved`: a judge-approved message is stored and may be sent.
/// Consumers deduplicate on `eventId` (a retried publish may announce twice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpsellMessageApproved {
    /// The upstream event the message answers (deduplication key).
    #[schemars(length(min = 1))]
    pub event_id: String,
    /// Customer id.
    #[schemars(length(min = 1))]
    pub customer_id: String,
    /// The approved message text.
    pub message: Option<String>,
    /// Offering id from the service catalogue, e.g. `gutter_cleaning`.
    pub offering: String,
    /// Service family of the offering.
    pub service: Service,
    /// Generator version that wrote it.
    pub generator: AgentRef,
    /// Judge version that approved it.
    pub judge: AgentRef,
    /// The judge's score of the approved attempt (0-10).
    #[schemars(range(max = 10))]
    pub score: Option<u8>,
    /// Generate/judge attempts it took (1 = first try).
    #[schemars(range(min = 1))]
    pub attempts: u32,
}

impl EventDetail for UpsellMessageApproved {
    const DETAIL_TYPE: &'static str = "UpsellMessageApproved";
    fn customer_id(&self) -> &str {
        &self.customer_id
    }
}

/// The bus event for an outbound detail: `source` [`OUTBOUND_SOURCE`], `detail-type`
/// `D::DETAIL_TYPE`, the given id and time.
pub fn outbound_event<D: EventDetail>(
    id: String,
    time: DateTime<Utc>,
    detail: &D,
) -> Result<RawEvent, serde_json::Error> {
    Ok(EventEnvelope {
        version: Some("0".into()),
        id,
        source: OUTBOUND_SOURCE.into(),
        detail_type: D::DETAIL_TYPE.into(),
        account: None,
        time,
        region: None,
        resources: Vec::new(),
        detail: serde_json::to_value(detail)?,
    })
}
