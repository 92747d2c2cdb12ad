//! The enrich worker: applies the event to the feature store, reads the customer's features
//! and contact, and works out what to offer. Output: the [`Facts`] the generate and judge steps
//! use, the knowledge-base query, and the sticky canary bucket (0..=99, a stable hash of the
//! customer id, so a customer always sees the same agent version during a rollout).
//!
//! Events that must not lead to a message give `eligible: false` with a reason (no profile
//! yet, so no first name; opted out of marketing; an unhappy survey; nothing suitable to offer;
//! a response to an earlier message).
//!
//! Every event also refreshes the customer's embedding in the customer index (when one is
//! plugged in), so similar-customer search covers every customer the workflow has seen. An
//! `UpsellResponded` event is an outcome ([`outcome`]): it updates the features (counts, last
//! response), an opt-out withdraws the contact's marketing consent, and an accepted message
//! becomes a past success in the knowledge base.

pub mod outcome;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use upsell_core::events::{CustomerEvent, RawEvent};
use upsell_core::features::{
    CustomerEmbedding, CustomerFeatures, CustomerIndex, FeatureStore, MissingFeature, Season,
    SimilarQuery,
};
use upsell_core::grounding::{DEFAULT_K, SimilarCustomers};
use upsell_core::guard::redact;
use upsell_core::ports::{ContactStore, CustomerContact, PortError};
use upsell_core::worker::{ErrorName, StableError, Worker};
use upsell_models::catalogue::Catalogue;
use upsell_models::offers::{compute_offers_grounded, next_month_name, season_name};
use upsell_models::prompt::{CustomerContext, Facts, RetrievalQuery};

/// Input: the normalised event (the schema-check output's `event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    /// The event.
    pub event: RawEvent,
}

/// Output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Event id.
    pub event_id: String,
    /// Customer id.
    pub customer_id: String,
    /// Sticky bucket 0..=99 for canary routing.
    pub bucket: u8,
    /// Whether a message should be written.
    pub eligible: bool,
    /// Why not, when not eligible: `no-profile`, `opted-out`, `unhappy-customer`,
    /// `no-suitable-offer`, `response-recorded` (the event is a response to a message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// Customer features that could not be computed, with why (also in `facts.unknown`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_features: Vec<MissingFeature>,
    /// What generate and judge need; present when eligible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
    /// What kb-retrieve should look for; present when eligible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalQuery>,
}

/// Worker errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The input is not a known, valid event.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A store failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl WorkerError {
    /// The stable error name the state machine matches.
    pub fn error_type(&self) -> ErrorName {
        match self {
            WorkerError::InvalidInput(_) => ErrorName::InvalidRequest,
            WorkerError::Port(e) => e.error_type(),
        }
    }
}

/// Ports the worker needs.
#[derive(Clone)]
pub struct Deps {
    /// Customer features.
    pub features: Arc<dyn FeatureStore>,
    /// First names and consent.
    pub contacts: Arc<dyn ContactStore>,
    /// Customer embeddings for similar-customer search, refreshed on every event (SQLite
    /// locally, S3 Vectors in AWS); `None` to keep features only.
    pub index: Option<Arc<dyn CustomerIndex>>,
    /// Message records and the knowledge base's past successes, for responses; `None` to only
    /// count responses in the features.
    pub outcomes: Option<outcome::OutcomeDeps>,
}

/// Offers kept in the output (the best one plus alternatives).
pub const MAX_OFFERS: usize = 3;
/// Survey satisfaction (1..=10) at or below which we do not upsell.
pub const UNHAPPY_SATISFACTION: u8 = 4;

/// The sticky canary bucket of a customer: FNV-1a of the id, modulo 100. Stable across
/// processes, platforms and Rust versions (unlike `std`'s randomised hasher).
pub fn bucket_of(customer_id: &str) -> u8 {
    (upsell_core::hash::fnv1a(customer_id.as_bytes()) % 100) as u8
}

fn skip(event_id: &str, customer_id: &str, bucket: u8, reason: &str) -> Output {
    Output {
        event_id: event_id.to_owned(),
        customer_id: customer_id.to_owned(),
        bucket,
        eligible: false,
        skip_reason: Some(reason.to_owned()),
        missing_features: Vec::new(),
        facts: None,
        retrieval: None,
    }
}

/// Enriches one event.
pub async fn handle(input: Input, deps: &Deps) -> Result<Output, WorkerError> {
    let event = CustomerEvent::try_from(input.event)
        .map_err(|e| WorkerError::InvalidInput(e.to_string()))?;
    let customer_id = event.customer_id().to_owned();
    let t: DateTime<Utc> = event.time();

    if let CustomerEvent::CustomerProfileUpdated(e) = &event {
        deps.contacts
            .put(&CustomerContact {
                customer_id: customer_id.clone(),
                first_name: e.detail.first_name.clone(),
                marketing_opt_in: e.detail.marketing_opt_in,
                updated_at: t,
            })
            .await?;
    }
    let event = outcome::with_offered_service(event, deps).await?;
    // The store folds the event into what was known just before it, with the feature
    // definitions of `upsell_core::features`: re-applying the same event gives the same
    // snapshot, so a retried or redelivered event is not counted twice.
    let features = deps.features.apply_event(&event).await?;
    if let Some(index) = &deps.index {
        index
            .upsert(&CustomerEmbedding::from_features(&features))
            .await?;
    }
    if let CustomerEvent::UpsellResponded(e) = &event {
        outcome::record(e, &features, deps).await?;
    }

    let contact = deps.contacts.get(&customer_id).await?;
    // Neighbours are looked up only for an event that may lead to a message.
    let similar = if !matches!(event, CustomerEvent::UpsellResponded(_))
        && contact.as_ref().is_some_and(|c| c.marketing_opt_in)
    {
        Some(similar_customers(deps, &features).await?)
    } else {
        None
    };
    Ok(decide(&event, &features, contact, similar))
}

/// What the customer's nearest similar customers accepted, from their features as known at
/// the customer's snapshot time (`upsell_core::grounding`); says why when there is no index
/// or the customer is not in it.
pub async fn similar_customers(
    deps: &Deps,
    features: &CustomerFeatures,
) -> Result<SimilarCustomers, WorkerError> {
    let Some(index) = &deps.index else {
        return Ok(SimilarCustomers::unavailable(
            DEFAULT_K,
            "no customer index is deployed",
        ));
    };
    let query = SimilarQuery {
        customer_id: features.customer_id.clone(),
        k: DEFAULT_K,
        region: None,
        service: None,
    };
    let neighbours = match index.similar(&query).await {
        Ok(n) => n,
        Err(PortError::NotFound(_)) => {
            return Ok(SimilarCustomers::unavailable(
                DEFAULT_K,
                "the customer is not in the customer index yet",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut known = Vec::with_capacity(neighbours.len());
    for n in &neighbours {
        if let Some(f) = deps
            .features
            .get(&n.customer_id, Some(features.as_of))
            .await?
        {
            known.push(f);
        }
    }
    Ok(SimilarCustomers::summarise(DEFAULT_K, &known))
}

/// What to write for `event`, given the customer's features after it, their contact as
/// known then and what similar customers accepted (`None`: not looked up): the facts and
/// retrieval query, or why no message (pure; the evaluator calls it with point-in-time
/// features and contact).
pub fn decide(
    event: &CustomerEvent,
    features: &CustomerFeatures,
    contact: Option<CustomerContact>,
    similar: Option<SimilarCustomers>,
) -> Output {
    let customer_id = event.customer_id().to_owned();
    let event_id = event.id().to_owned();
    let t: DateTime<Utc> = event.time();
    let bucket = bucket_of(&customer_id);
    if let CustomerEvent::UpsellResponded(_) = event {
        return skip(&event_id, &customer_id, bucket, "response-recorded");
    }
    let Some(contact) = contact else {
        return skip(&event_id, &customer_id, bucket, "no-profile");
    };
    if !contact.marketing_opt_in {
        return skip(&event_id, &customer_id, bucket, "opted-out");
    }
    if let CustomerEvent::SurveySubmitted(e) = event
        && e.detail.satisfaction <= UNHAPPY_SATISFACTION
    {
        return skip(&event_id, &customer_id, bucket, "unhappy-customer");
    }
    let date = t.date_naive();
    let mut offers = compute_offers_grounded(
        features,
        date,
        Catalogue::builtin(),
        MAX_OFFERS,
        similar.as_ref(),
    );
    if offers.is_empty() {
        return skip(&event_id, &customer_id, bucket, "no-suitable-offer");
    }
    let offer = offers.remove(0);
    // Free text is untrusted and may hold contact details: redacted before any model sees it
    // (upsell_core::guard::redact).
    let (last_service, technician_notes, survey_comment) = match event {
        CustomerEvent::ServiceCompleted(e) => (
            Some(e.detail.service),
            Some(redact(&e.detail.technician_notes)).filter(|n| !n.is_empty()),
            None,
        ),
        CustomerEvent::SurveySubmitted(e) => (
            None,
            None,
            Some(redact(&e.detail.free_text)).filter(|n| !n.is_empty()),
        ),
        CustomerEvent::CustomerProfileUpdated(_) | CustomerEvent::UpsellResponded(_) => {
            (None, None, None)
        }
    };
    let customer = CustomerContext {
        first_name: contact.first_name,
        region: features.region,
        home_type: features.home_type,
        has_pool: features.has_pool,
        pets: features.pets.clone(),
        lot_size_sqft: features.lot_size_sqft,
        home_age_years: features.home_age_years,
        tenure_years: u32::try_from(features.tenure_days / 365).unwrap_or(0),
        services_bought: features.services_bought.clone(),
        service_count: features.service_count,
        last_service,
        technician_notes,
        survey_comment,
    };
    let season = Season::of(date);
    let retrieval = RetrievalQuery {
        query: format!(
            "{} {} {}",
            offer.name,
            season_name(season),
            offer.reasons.join(" ")
        ),
        offering: Some(offer.offering.clone()),
        region: features.region,
        k: 3,
    };
    Output {
        event_id,
        customer_id,
        bucket,
        eligible: true,
        skip_reason: None,
        missing_features: features.missing.clone(),
        facts: Some(Facts {
            date: date.to_string(),
            season,
            booking_month: next_month_name(date).to_owned(),
            customer,
            offer,
            alternatives: offers,
            unknown: features.missing.clone(),
            similar_customers: similar,
        }),
        retrieval: Some(retrieval),
    }
}

#[async_trait::async_trait]
impl Worker for Deps {
    const NAME: &'static str = "enrich";
    const STATE: &'static str = "Enrich";
    type Input = Input;
    type Output = Output;
    type Error = WorkerError;

    async fn handle(&self, input: Input) -> Result<Output, WorkerError> {
        handle(input, self).await
    }
}

impl StableError for WorkerError {
    fn error_name(&self) -> ErrorName {
        self.error_type()
    }
}
