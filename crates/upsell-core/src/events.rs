//! Upstream customer events: the EventBridge envelope, the typed details it carries and the
//! home-services catalogue they refer to.
//!
//! Wire format: one EventBridge event per JSON object. The envelope keeps EventBridge's own field
//! names (`detail-type`, kebab-case); detail payloads use camelCase and carry their unit in the
//! field name (`priceCents`, `lotSizeSqft`). Dates are ISO 8601 calendar dates (`YYYY-MM-DD`),
//! instants are RFC 3339 and are stored in UTC.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An EventBridge event as delivered by a rule target, generic over its `detail`.
///
/// `RawEvent` (`EventEnvelope<serde_json::Value>`) is what arrives before the detail type is
/// known; [`CustomerEvent`] is the typed form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventEnvelope<D> {
    /// Envelope version; EventBridge always sends `"0"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Event id, unique per event; a redelivery keeps the same id (deduplication key).
    #[schemars(length(min = 1, max = 128))]
    pub id: String,
    /// Producing system, reverse-DNS style, e.g. `com.greenleaf.field-service`.
    #[schemars(length(min = 1, max = 256))]
    pub source: String,
    /// Name of the detail type, e.g. `ServiceCompleted`; selects the schema of `detail`.
    #[serde(rename = "detail-type")]
    #[schemars(length(min = 1, max = 128))]
    pub detail_type: String,
    /// AWS account id of the producer (12 digits); absent for local events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// When the event happened, RFC 3339; normalised to UTC.
    pub time: DateTime<Utc>,
    /// AWS region of the producer, e.g. `us-east-1`; absent for local events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ARNs of resources involved; usually empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The typed payload.
    pub detail: D,
}

/// An envelope whose detail has not been checked yet.
pub type RawEvent = EventEnvelope<serde_json::Value>;

/// A typed detail payload that travels as `detail-type` = [`EventDetail::DETAIL_TYPE`].
pub trait EventDetail: Serialize + DeserializeOwned + JsonSchema + Clone + std::fmt::Debug {
    /// The EventBridge `detail-type` string.
    const DETAIL_TYPE: &'static str;
    /// The customer this event is about.
    fn customer_id(&self) -> &str;
}

/// A home service the company sells. Serialised as a kebab-case code, e.g. `"hvac-tune-up"`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// Mowing, edging, fertilising (recurring, spring to autumn).
    LawnCare,
    /// Quarterly or one-off pest treatment (peaks in summer).
    PestControl,
    /// Heating/cooling system inspection and tune-up (spring and autumn).
    HvacTuneUp,
    /// Pool opening, weekly cleaning, closing (summer; pool owners only).
    PoolService,
    /// Gutter cleaning and guard installation (autumn, spring).
    GutterCleaning,
    /// Interior/exterior window cleaning.
    WindowCleaning,
    /// Pressure washing of driveways, decks and siding.
    PressureWashing,
    /// Tree and shrub trimming.
    TreeTrimming,
    /// Sprinkler start-up, repair and winterisation.
    IrrigationService,
    /// Snow plowing and de-icing (winter; cold regions).
    SnowRemoval,
    /// Air duct cleaning.
    DuctCleaning,
    /// Carpet and upholstery cleaning.
    CarpetCleaning,
}

impl Service {
    /// Every service, in catalogue order.
    pub const ALL: [Service; 12] = [
        Service::LawnCare,
        Service::PestControl,
        Service::HvacTuneUp,
        Service::PoolService,
        Service::GutterCleaning,
        Service::WindowCleaning,
        Service::PressureWashing,
        Service::TreeTrimming,
        Service::IrrigationService,
        Service::SnowRemoval,
        Service::DuctCleaning,
        Service::CarpetCleaning,
    ];

    /// The wire code, e.g. `"lawn-care"`.
    pub fn code(self) -> &'static str {
        match self {
            Service::LawnCare => "lawn-care",
            Service::PestControl => "pest-control",
            Service::HvacTuneUp => "hvac-tune-up",
            Service::PoolService => "pool-service",
            Service::GutterCleaning => "gutter-cleaning",
            Service::WindowCleaning => "window-cleaning",
            Service::PressureWashing => "pressure-washing",
            Service::TreeTrimming => "tree-trimming",
            Service::IrrigationService => "irrigation-service",
            Service::SnowRemoval => "snow-removal",
            Service::DuctCleaning => "duct-cleaning",
            Service::CarpetCleaning => "carpet-cleaning",
        }
    }

    /// A human-readable name for messages, e.g. `"HVAC tune-up"`.
    pub fn display_name(self) -> &'static str {
        match self {
            Service::LawnCare => "lawn care",
            Service::PestControl => "pest control",
            Service::HvacTuneUp => "HVAC tune-up",
            Service::PoolService => "pool service",
            Service::GutterCleaning => "gutter cleaning",
            Service::WindowCleaning => "window cleaning",
            Service::PressureWashing => "pressure washing",
            Service::TreeTrimming => "tree trimming",
            Service::IrrigationService => "irrigation service",
            Service::SnowRemoval => "snow removal",
            Service::DuctCleaning => "duct cleaning",
            Service::CarpetCleaning => "carpet cleaning",
        }
    }

    /// Months (1 = January) in which the service is normally sold.
    pub fn season(self) -> &'static [u32] {
        match self {
            Service::LawnCare => &[4, 5, 6, 7, 8, 9, 10],
            Service::PestControl => &[3, 4, 5, 6, 7, 8, 9, 10],
            Service::HvacTuneUp => &[3, 4, 5, 9, 10, 11],
            Service::PoolService => &[5, 6, 7, 8, 9],
            Service::GutterCleaning => &[4, 5, 10, 11, 12],
            Service::WindowCleaning => &[3, 4, 5, 6, 9, 10],
            Service::PressureWashing => &[4, 5, 6, 7, 8, 9],
            Service::TreeTrimming => &[1, 2, 3, 10, 11, 12],
            Service::IrrigationService => &[3, 4, 5, 10, 11],
            Service::SnowRemoval => &[1, 2, 3, 11, 12],
            Service::DuctCleaning => &[1, 2, 3, 9, 10, 11, 12],
            Service::CarpetCleaning => &[1, 2, 3, 4, 11, 12],
        }
    }

    /// Typical price range in cents (inclusive).
    pub fn typical_price_cents(self) -> (u64, u64) {
        match self {
            Service::LawnCare => (4_500, 9_500),
            Service::PestControl => (8_900, 19_900),
            Service::HvacTuneUp => (8_900, 22_900),
            Service::PoolService => (12_000, 35_000),
            Service::GutterCleaning => (12_500, 32_500),
            Service::WindowCleaning => (15_000, 45_000),
            Service::PressureWashing => (17_500, 49_500),
            Service::TreeTrimming => (25_000, 95_000),
            Service::IrrigationService => (7_500, 22_500),
            Service::SnowRemoval => (4_000, 12_000),
            Service::DuctCleaning => (29_900, 59_900),
            Service::CarpetCleaning => (12_900, 34_900),
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A field-service job was finished. `detail-type`: `ServiceCompleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceCompleted {
    /// Customer id as issued by the CRM, e.g. `cust-000042`.
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    /// Which service was performed.
    pub service: Service,
    /// Calendar date of the visit (`YYYY-MM-DD`, customer's local date).
    pub service_date: NaiveDate,
    /// Amount charged, in US cents (integer; `12999` = $129.99).
    #[serde(deserialize_with = "de_cents")]
    #[schemars(range(max = 100_000_000))]
    pub price_cents: u64,
    /// Free-text notes the technician left on the job; may be empty.
    #[serde(default)]
    #[schemars(length(max = 4000))]
    pub technician_notes: String,
    /// Customer's star rating of the visit, 1..=5; absent when the customer did not rate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub rating: Option<u8>,
}

impl EventDetail for ServiceCompleted {
    const DETAIL_TYPE: &'static str = "ServiceCompleted";
    fn customer_id(&self) -> &str {
        &self.customer_id
    }
}

/// US service regions used for seasonality and routing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Region {
    /// New England, NY, NJ, PA.
    Northeast,
    /// From Virginia to Florida, Gulf states.
    Southeast,
    /// Great Lakes and plains.
    Midwest,
    /// Texas, Arizona, New Mexico, Oklahoma, Nevada.
    Southwest,
    /// California, Colorado, Utah and the mountain states.
    West,
    /// Washington, Oregon, Idaho.
    Northwest,
}

impl Region {
    /// Every region.
    pub const ALL: [Region; 6] = [
        Region::Northeast,
        Region::Southeast,
        Region::Midwest,
        Region::Southwest,
        Region::West,
        Region::Northwest,
    ];

    /// Whether winters bring snow (snow removal sells, pools close early).
    pub fn has_snow(self) -> bool {
        matches!(
            self,
            Region::Northeast | Region::Midwest | Region::Northwest
        )
    }
}

/// A postal address in the US.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    /// Street line, e.g. `1208 Maple Ave`.
    #[schemars(length(min = 1, max = 200))]
    pub street: String,
    /// City name.
    #[schemars(length(min = 1, max = 100))]
    pub city: String,
    /// Two-letter USPS state code, e.g. `OH`.
    #[schemars(length(min = 2, max = 2))]
    pub state: String,
    /// ZIP or ZIP+4, e.g. `43004` or `43004-1234`.
    #[schemars(length(min = 5, max = 10))]
    pub postal_code: String,
    /// Service region the address belongs to.
    pub region: Region,
}

/// Kind of dwelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HomeType {
    /// Detached house.
    SingleFamily,
    /// Attached row house.
    Townhouse,
    /// Apartment in a condominium.
    Condo,
    /// Duplex or larger.
    MultiFamily,
    /// Manufactured home.
    Mobile,
}

/// Pets living at the property (relevant for pest control products and lawn treatments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Pet {
    /// Dog.
    Dog,
    /// Cat.
    Cat,
    /// Any other animal.
    Other,
}

/// Facts about the customer's property.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Property {
    /// Kind of dwelling.
    pub home_type: HomeType,
    /// Lot size in square feet (0 for condos without a yard).
    #[schemars(range(max = 100_000_000))]
    pub lot_size_sqft: u32,
    /// Whether the property has a swimming pool.
    pub has_pool: bool,
    /// Pets living at the property; empty when none.
    #[serde(default)]
    pub pets: Vec<Pet>,
    /// Year the home was built (four digits); absent when unknown.
    /// See [`Property::home_age_years`] for the age in years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1600, max = 2100))]
    pub year_built: Option<u16>,
}

impl Property {
    /// Age of the home in whole years at calendar year `at_year`, when the build year is known.
    pub fn home_age_years(&self, at_year: i32) -> Option<u32> {
        self.year_built
            .map(|y| u32::try_from(at_year - i32::from(y)).unwrap_or(0))
    }
}

/// The CRM changed a customer's contact details or property facts (also sent on sign-up).
/// `detail-type`: `CustomerProfileUpdated`. Each event carries the full current profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerProfileUpdated {
    /// Customer id as issued by the CRM.
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    /// Given name.
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    /// Family name.
    #[schemars(length(min = 1, max = 100))]
    pub last_name: String,
    /// Email address; normalised to lower case.
    #[schemars(length(min = 3, max = 254))]
    pub email: String,
    /// Phone number; normalised to E.164 (`+15551234567`), US (+1) assumed without a country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 40))]
    pub phone: Option<String>,
    /// Postal address and service region.
    pub address: Address,
    /// Property facts.
    pub property: Property,
    /// Whether the customer agreed to receive marketing messages.
    #[serde(default = "default_true")]
    pub marketing_opt_in: bool,
}

fn default_true() -> bool {
    true
}

impl EventDetail for CustomerProfileUpdated {
    const DETAIL_TYPE: &'static str = "CustomerProfileUpdated";
    fn customer_id(&self) -> &str {
        &self.customer_id
    }
}

/// A customer answered a satisfaction survey. `detail-type`: `SurveySubmitted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SurveySubmitted {
    /// Customer id as issued by the CRM.
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    /// Overall satisfaction, 1 (very unhappy) ..= 10 (delighted).
    #[schemars(range(min = 1, max = 10))]
    pub satisfaction: u8,
    /// Free-text comment; may be empty.
    #[serde(default)]
    #[schemars(length(max = 4000))]
    pub free_text: String,
    /// Calendar date the survey was answered (`YYYY-MM-DD`).
    pub survey_date: NaiveDate,
    /// The service the survey asked about, when it followed a visit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
}

impl EventDetail for SurveySubmitted {
    const DETAIL_TYPE: &'static str = "SurveySubmitted";
    fn customer_id(&self) -> &str {
        &self.customer_id
    }
}

/// What the customer did with an upsell message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpsellResponse {
    /// Booked the offered service.
    Accepted,
    /// Said no to this offer.
    Declined,
    /// Did not answer within the messaging system's answer window.
    NoAnswer,
    /// Asked to receive no more marketing messages (withdraws marketing consent).
    OptedOut,
}

impl UpsellResponse {
    /// Every response, in the order above.
    pub const ALL: [UpsellResponse; 4] = [
        UpsellResponse::Accepted,
        UpsellResponse::Declined,
        UpsellResponse::NoAnswer,
        UpsellResponse::OptedOut,
    ];

    /// The wire code, e.g. `"no-answer"`.
    pub fn code(self) -> &'static str {
        match self {
            UpsellResponse::Accepted => "accepted",
            UpsellResponse::Declined => "declined",
            UpsellResponse::NoAnswer => "no-answer",
            UpsellResponse::OptedOut => "opted-out",
        }
    }
}

impl std::fmt::Display for UpsellResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// The messaging system reports what a customer did with an upsell message.
/// `detail-type`: `UpsellResponded`. The outcome that closes the loop: responses update the
/// customer's features, and an accepted message becomes a past success in the knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpsellResponded {
    /// Customer id as issued by the CRM.
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    /// The id of the upstream event the message answered (`eventId` of `UpsellMessageApproved`,
    /// the key of the message record).
    #[schemars(length(min = 1, max = 128))]
    pub message_event_id: String,
    /// What the customer did.
    pub response: UpsellResponse,
    /// The service the message offered (`offer.service` of `UpsellMessageApproved`), when the
    /// messaging system kept it; the enrich worker fills it in from the message record
    /// otherwise, so accepted services reach the features (`servicesAccepted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    /// Generator version that wrote the message, when the messaging system kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<crate::agent::AgentRef>,
    /// Judge version that approved the message, when the messaging system kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<crate::agent::AgentRef>,
}

impl EventDetail for UpsellResponded {
    const DETAIL_TYPE: &'static str = "UpsellResponded";
    fn customer_id(&self) -> &str {
        &self.customer_id
    }
}

/// A typed upstream event, one variant per known `detail-type`.
///
/// Serialises as the plain EventBridge event. Deserialising picks the variant from
/// `detail-type` and fails on unknown ones (use [`crate::validate`] for full error reports).
// Profiles are bigger than the other details; events are few and short-lived, so no boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerEvent {
    /// `ServiceCompleted`.
    ServiceCompleted(EventEnvelope<ServiceCompleted>),
    /// `CustomerProfileUpdated`.
    CustomerProfileUpdated(EventEnvelope<CustomerProfileUpdated>),
    /// `SurveySubmitted`.
    SurveySubmitted(EventEnvelope<SurveySubmitted>),
    /// `UpsellResponded`.
    UpsellResponded(EventEnvelope<UpsellResponded>),
}

/// Every `detail-type` the system accepts.
pub const KNOWN_DETAIL_TYPES: [&str; 4] = [
    ServiceCompleted::DETAIL_TYPE,
    CustomerProfileUpdated::DETAIL_TYPE,
    SurveySubmitted::DETAIL_TYPE,
    UpsellResponded::DETAIL_TYPE,
];

/// Why a [`RawEvent`] could not become a [`CustomerEvent`].
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// `detail-type` names no known event.
    #[error("unknown detail-type {found:?}; known detail-types: {}", KNOWN_DETAIL_TYPES.join(", "))]
    UnknownDetailType {
        /// The detail-type received.
        found: String,
    },
    /// The detail does not match its type.
    #[error("invalid detail for {detail_type}: {source}")]
    InvalidDetail {
        /// The detail-type.
        detail_type: String,
        /// The serde error.
        source: serde_json::Error,
    },
}

fn retype<D: EventDetail>(raw: RawEvent) -> Result<EventEnvelope<D>, EventError> {
    let EventEnvelope {
        version,
        id,
        source,
        detail_type,
        account,
        time,
        region,
        resources,
        detail,
    } = raw;
    let detail = serde_json::from_value(detail).map_err(|source| EventError::InvalidDetail {
        detail_type: detail_type.clone(),
        source,
    })?;
    Ok(EventEnvelope {
        version,
        id,
        source,
        detail_type,
        account,
        time,
        region,
        resources,
        detail,
    })
}

impl TryFrom<RawEvent> for CustomerEvent {
    type Error = EventError;

    fn try_from(raw: RawEvent) -> Result<Self, Self::Error> {
        match raw.detail_type.as_str() {
            ServiceCompleted::DETAIL_TYPE => Ok(CustomerEvent::ServiceCompleted(retype(raw)?)),
            CustomerProfileUpdated::DETAIL_TYPE => {
                Ok(CustomerEvent::CustomerProfileUpdated(retype(raw)?))
            }
            SurveySubmitted::DETAIL_TYPE => Ok(CustomerEvent::SurveySubmitted(retype(raw)?)),
            UpsellResponded::DETAIL_TYPE => Ok(CustomerEvent::UpsellResponded(retype(raw)?)),
            other => Err(EventError::UnknownDetailType {
                found: other.to_owned(),
            }),
        }
    }
}

/// Applies `$body` to the envelope inside whichever variant `$ev` is.
macro_rules! with_envelope {
    ($ev:expr, $e:ident => $body:expr) => {
        match $ev {
            CustomerEvent::ServiceCompleted($e) => $body,
            CustomerEvent::CustomerProfileUpdated($e) => $body,
            CustomerEvent::SurveySubmitted($e) => $body,
            CustomerEvent::UpsellResponded($e) => $body,
        }
    };
}

impl CustomerEvent {
    /// The event id (deduplication key).
    pub fn id(&self) -> &str {
        with_envelope!(self, e => &e.id)
    }

    /// The `detail-type`.
    pub fn detail_type(&self) -> &'static str {
        match self {
            CustomerEvent::ServiceCompleted(_) => ServiceCompleted::DETAIL_TYPE,
            CustomerEvent::CustomerProfileUpdated(_) => CustomerProfileUpdated::DETAIL_TYPE,
            CustomerEvent::SurveySubmitted(_) => SurveySubmitted::DETAIL_TYPE,
            CustomerEvent::UpsellResponded(_) => UpsellResponded::DETAIL_TYPE,
        }
    }

    /// The producing system.
    pub fn source(&self) -> &str {
        with_envelope!(self, e => &e.source)
    }

    /// When the event happened (UTC).
    pub fn time(&self) -> DateTime<Utc> {
        with_envelope!(self, e => e.time)
    }

    /// The customer the event is about.
    pub fn customer_id(&self) -> &str {
        with_envelope!(self, e => e.detail.customer_id())
    }

    /// The event as an untyped envelope (for publishing or storing).
    pub fn to_raw(&self) -> RawEvent {
        serde_json::from_value(serde_json::to_value(self).expect("events always serialise"))
            .expect("a serialised event is a valid envelope")
    }
}

impl Serialize for CustomerEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        with_envelope!(self, e => e.serialize(serializer))
    }
}

impl<'de> Deserialize<'de> for CustomerEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawEvent::deserialize(deserializer)?;
        CustomerEvent::try_from(raw).map_err(serde::de::Error::custom)
    }
}

/// Accepts integer cents, and also integral floats such as `12999.0` that some producers emit;
/// rejects fractional cents and negatives.
fn de_cents<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(deserializer)?;
    if let Some(v) = n.as_u64() {
        return Ok(v);
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9.0e15 =>
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(f as u64)
        }
        _ => Err(serde::de::Error::custom(format!(
            "price must be a non-negative whole number of cents, got {n}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service_event() -> serde_json::Value {
        json!({
            "version": "0", "id": "evt-1", "source": "com.greenleaf.field-service",
            "detail-type": "ServiceCompleted", "time": "2025-05-01T10:00:00+02:00",
            "detail": {"customerId": "cust-1", "service": "lawn-care", "serviceDate": "2025-05-01",
                       "priceCents": 6500.0, "technicianNotes": "Edged beds", "rating": 5}
        })
    }

    #[test]
    fn typed_round_trip_keeps_envelope_and_converts_to_utc() {
        let ev: CustomerEvent = serde_json::from_value(service_event()).unwrap();
        assert_eq!(ev.detail_type(), "ServiceCompleted");
        assert_eq!(ev.customer_id(), "cust-1");
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["time"], "2025-05-01T08:00:00Z");
        assert_eq!(v["detail"]["priceCents"], 6500);
        assert_eq!(v["detail-type"], "ServiceCompleted");
    }

    #[test]
    fn unknown_detail_type_lists_known_ones() {
        let mut v = service_event();
        v["detail-type"] = json!("InvoicePaid");
        let err = serde_json::from_value::<CustomerEvent>(v)
            .unwrap_err()
            .to_string();
        assert!(err.contains("InvoicePaid"), "{err}");
        assert!(
            err.contains("ServiceCompleted, CustomerProfileUpdated, SurveySubmitted"),
            "{err}"
        );
    }

    #[test]
    fn fractional_cents_are_rejected() {
        let mut v = service_event();
        v["detail"]["priceCents"] = json!(64.99);
        assert!(serde_json::from_value::<CustomerEvent>(v).is_err());
    }

    #[test]
    fn responses_round_trip_with_optional_agent_versions() {
        let v = json!({
            "id": "evt-r1", "source": "com.greenleaf.messaging", "detail-type": "UpsellResponded",
            "time": "2025-05-03T10:00:00Z",
            "detail": {"customerId": "cust-1", "messageEventId": "evt-1", "response": "no-answer",
                       "generator": {"agentId": "upsell-generator", "version": "1.0.0"}}
        });
        let ev: CustomerEvent = serde_json::from_value(v.clone()).unwrap();
        let CustomerEvent::UpsellResponded(e) = &ev else {
            panic!("{ev:?}")
        };
        assert_eq!(e.detail.response, UpsellResponse::NoAnswer);
        assert_eq!(e.detail.judge, None);
        assert_eq!(serde_json::to_value(&ev).unwrap()["detail"], v["detail"]);
        for r in UpsellResponse::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.code());
        }
    }

    #[test]
    fn service_codes_match_serde() {
        for s in Service::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.code());
        }
    }
}
