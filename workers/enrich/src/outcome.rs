//! Responses to upsell messages (`UpsellResponded`): the features already count them (the
//! feature store folds every event); here an opt-out withdraws the contact's marketing
//! consent, and an accepted, approved message is written to the knowledge base as a past
//! success (`upsell_core::outcome`).

use std::sync::Arc;

use upsell_core::events::{CustomerEvent, EventEnvelope, UpsellResponded, UpsellResponse};
use upsell_core::features::CustomerFeatures;
use upsell_core::outcome::{PastSuccess, PastSuccessStore};
use upsell_core::ports::{CustomerContact, MessageStore};

use crate::{Deps, WorkerError};

/// What recording an accepted message needs.
#[derive(Clone)]
pub struct OutcomeDeps {
    /// Message records, to find the message a response answers.
    pub messages: Arc<dyn MessageStore>,
    /// Where past successes go (local index, or the Bedrock data source's bucket).
    pub successes: Arc<dyn PastSuccessStore>,
}

/// The event with the offered service filled in from the message record, for an accepted
/// response that does not name it (so the features learn which service was accepted);
/// any other event as it is.
pub async fn with_offered_service(
    mut event: CustomerEvent,
    deps: &Deps,
) -> Result<CustomerEvent, WorkerError> {
    if let (CustomerEvent::UpsellResponded(e), Some(outcomes)) = (&mut event, &deps.outcomes)
        && e.detail.response == UpsellResponse::Accepted
        && e.detail.service.is_none()
        && let Some(record) = outcomes.messages.get(&e.detail.message_event_id).await?
    {
        e.detail.service = record.recommended_service;
    }
    Ok(event)
}

/// Applies a response's side effects beyond the features. Returns whether a past success was
/// written. An accepted response whose message is unknown or was not approved writes nothing
/// (logged): the features still count it.
pub async fn record(
    response: &EventEnvelope<UpsellResponded>,
    features: &CustomerFeatures,
    deps: &Deps,
) -> Result<bool, WorkerError> {
    let d = &response.detail;
    if d.response == UpsellResponse::OptedOut
        && let Some(contact) = deps.contacts.get(&d.customer_id).await?
        && contact.updated_at <= response.time
    {
        deps.contacts
            .put(&CustomerContact {
                marketing_opt_in: false,
                updated_at: response.time,
                ..contact
            })
            .await?;
    }
    let (UpsellResponse::Accepted, Some(outcomes)) = (d.response, &deps.outcomes) else {
        return Ok(false);
    };
    let record = outcomes.messages.get(&d.message_event_id).await?;
    match PastSuccess::from_accepted(response, record.as_ref(), features) {
        Ok(success) => {
            outcomes.successes.add(&success).await?;
            Ok(true)
        }
        Err(why) => {
            tracing::info!(
                event_id = %response.id,
                message_event_id = %d.message_event_id,
                "accepted response not added to the knowledge base: {why}"
            );
            Ok(false)
        }
    }
}
