//! Customer outcomes close the loop: an accepted upsell message becomes a past success the
//! knowledge base can retrieve, written in the layout of `knowledge-base/past-messages/`
//! (a Markdown document and its Bedrock metadata sidecar).
//!
//! The document is built here once ([`PastSuccess::from_accepted`]); the adapters behind
//! [`PastSuccessStore`] only put it somewhere: the local knowledge-base index (SQLite) or an S3
//! object in the Bedrock Knowledge Base data source (which a data-source sync makes
//! retrievable, docs/knowledge-base.md).

use chrono::{DateTime, Datelike, Utc};
use serde_json::json;

use crate::agent::AgentRef;
use crate::events::{EventEnvelope, UpsellResponded, UpsellResponse};
use crate::features::{CustomerFeatures, Season, region_code};
use crate::kb::{MetaValue, Metadata};
use crate::message::{MessageRecord, MessageStatus};
use crate::ports::PortError;

/// Key prefix (relative to the knowledge-base root) of accepted messages. It sits under the
/// past-messages data source's inclusion prefix (`past-messages/`), so they are ingested with
/// the synthetic corpus.
pub const ACCEPTED_PREFIX: &str = "past-messages/accepted/";

/// Why an accepted response gives no past success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotASuccess {
    /// The response is not `accepted`.
    NotAccepted,
    /// No message record for the response's `messageEventId` (another store, or never sent).
    NoMessage,
    /// The record is not an approved message with a text (skipped, rejected, failed).
    NotApproved(MessageStatus),
}

impl std::fmt::Display for NotASuccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotASuccess::NotAccepted => f.write_str("the response is not an acceptance"),
            NotASuccess::NoMessage => f.write_str("no message record for the answered event"),
            NotASuccess::NotApproved(s) => write!(f, "the answered event's record is {s:?}"),
        }
    }
}

/// An accepted message as a knowledge-base document.
#[derive(Debug, Clone, PartialEq)]
pub struct PastSuccess {
    /// Document id: `past-messages/accepted/<messageEventId>`.
    pub doc_id: String,
    /// The Markdown text.
    pub text: String,
    /// The sidecar's `metadataAttributes` (same keys as the synthetic past messages, plus
    /// `message_event_id`, `generator`, `judge`).
    pub metadata: Metadata,
}

impl PastSuccess {
    /// The past success for an accepted response: the approved message `record` answered,
    /// with the customer context from `features` (the customer's features when they accepted).
    pub fn from_accepted(
        response: &EventEnvelope<UpsellResponded>,
        record: Option<&MessageRecord>,
        features: &CustomerFeatures,
    ) -> Result<PastSuccess, NotASuccess> {
        if response.detail.response != UpsellResponse::Accepted {
            return Err(NotASuccess::NotAccepted);
        }
        let record = record.ok_or(NotASuccess::NoMessage)?;
        let message = match (&record.status, &record.message) {
            (MessageStatus::Approved, Some(m)) => m,
            (s, _) => return Err(NotASuccess::NotApproved(*s)),
        };
        let generator = response
            .detail
            .generator
            .as_ref()
            .unwrap_or(&record.generator);
        let judge = response.detail.judge.as_ref().unwrap_or(&record.judge);
        let when: DateTime<Utc> = response.time;
        let season = season_word(Season::of(when.date_naive()));
        let region = features.region.map(region_code);
        let service = record.recommended_service.map(|s| s.code());
        let offering = record.offering.as_deref();
        let days = (when - record.created_at).num_days().max(0);

        let mut text = format!(
            "# Past successful upsell: {} ({}, {} {})\n\n## Customer context\n{}\n\n## Offer\n",
            offering.or(service).unwrap_or("an offer"),
            region.unwrap_or("region unknown"),
            season,
            when.year(),
            context_line(features),
        );
        text.push_str(&format!(
            "{} (service {}, offering {}), written by {generator}, approved by {judge}.\n\n",
            offering.or(service).unwrap_or("unknown"),
            service.unwrap_or("unknown"),
            offering.unwrap_or("unknown"),
        ));
        text.push_str(&format!("## Message\n{message}\n\n## Outcome\n"));
        text.push_str(&format!(
            "Accepted within {days} day(s); the customer booked the service.\n"
        ));

        let mut metadata = Metadata::new();
        let mut put = |k: &str, v: MetaValue| {
            metadata.insert(k.to_owned(), v);
        };
        put("doc_type", MetaValue::Text("past_message".into()));
        if let Some(s) = service {
            put("service", MetaValue::Text(s.into()));
        }
        if let Some(o) = offering {
            put("offering", MetaValue::Text(o.into()));
        }
        if let Some(r) = region {
            put("region", MetaValue::Text(r.into()));
        }
        put("season", MetaValue::Text(season.into()));
        put("year", MetaValue::Number(f64::from(when.year())));
        if let Some(b) = features.has_pool {
            put("has_pool", MetaValue::Bool(b));
        }
        if let Some(b) = features.has_pets {
            put("has_pets", MetaValue::Bool(b));
        }
        put("outcome", MetaValue::Text("accepted".into()));
        put("message_event_id", MetaValue::Text(record.event_id.clone()));
        put("generator", MetaValue::Text(agent(generator)));
        put("judge", MetaValue::Text(agent(judge)));
        Ok(PastSuccess {
            doc_id: format!("{ACCEPTED_PREFIX}{}", safe_key(&record.event_id)),
            text,
            metadata,
        })
    }

    /// The document's key relative to the knowledge-base root: `<doc_id>.md`.
    pub fn key(&self) -> String {
        format!("{}.md", self.doc_id)
    }

    /// The sidecar file text (`<key>.metadata.json`), in the Bedrock shape.
    pub fn sidecar_json(&self) -> String {
        let attrs: serde_json::Map<String, serde_json::Value> = self
            .metadata
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    MetaValue::Bool(b) => json!(b),
                    MetaValue::Number(n) => json!(n),
                    MetaValue::Text(t) => json!(t),
                    MetaValue::List(l) => json!(l),
                };
                (k.clone(), v)
            })
            .collect();
        let mut s = serde_json::to_string_pretty(&json!({ "metadataAttributes": attrs }))
            .expect("metadata always serialises");
        s.push('\n');
        s
    }
}

/// Where past successes go: the local index, or the Bedrock data source's bucket.
#[async_trait::async_trait]
pub trait PastSuccessStore: Send + Sync {
    /// Adds (or replaces, for the same `doc_id`) one past success.
    async fn add(&self, success: &PastSuccess) -> Result<(), PortError>;
}

fn agent(a: &AgentRef) -> String {
    a.to_string()
}

fn season_word(s: Season) -> &'static str {
    match s {
        Season::Spring => "spring",
        Season::Summer => "summer",
        Season::Autumn => "autumn",
        Season::Winter => "winter",
    }
}

/// An S3-key-safe form of an event id: letters, digits, `-`, `_` and `.` kept, the rest `_`.
fn safe_key(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The customer context sentence, from what is known; unknown facts are said to be unknown.
fn context_line(f: &CustomerFeatures) -> String {
    let years = f.tenure_days / 365;
    let tenure = if years >= 1 {
        format!("Customer for {years} year(s)")
    } else {
        format!("Customer for {} day(s)", f.tenure_days)
    };
    let region = f.region.map_or("region unknown".to_owned(), |r| {
        format!("in the {} region", region_code(r))
    });
    let services: Vec<&str> = f.services_bought.iter().map(|s| s.code()).collect();
    let bought = if services.is_empty() {
        "no completed service yet".to_owned()
    } else {
        format!("currently buys {}", services.join(", "))
    };
    let property = match (f.lot_size_sqft, f.has_pool, f.has_pets) {
        (Some(lot), Some(pool), Some(pets)) => format!(
            "Property: {lot} sq ft lot, {}, {}",
            if pool { "pool" } else { "no pool" },
            if pets { "pets" } else { "no pets" }
        ),
        _ => "Property: unknown (no profile)".to_owned(),
    };
    let satisfaction = f.satisfaction_avg.map_or("no survey yet".to_owned(), |s| {
        format!("satisfaction {s:.1}/10 over recent surveys")
    });
    format!(
        "{tenure} {region}; {bought}; lifetime value ${:.2}. {property}. {satisfaction}. \
         Earlier offers: {} accepted, {} declined, {} unanswered.",
        f.lifetime_value_cents as f64 / 100.0,
        f.offers_accepted,
        f.offers_declined,
        f.offers_unanswered,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CustomerEvent;
    use crate::features::replay;

    fn response(kind: &str) -> EventEnvelope<UpsellResponded> {
        let ev: CustomerEvent = serde_json::from_value(json!({
            "id": "r1", "source": "com.greenleaf.messaging", "detail-type": "UpsellResponded",
            "time": "2025-05-10T10:00:00Z",
            "detail": {"customerId": "c1", "messageEventId": "evt/1", "response": kind}
        }))
        .unwrap();
        match ev {
            CustomerEvent::UpsellResponded(e) => e,
            _ => unreachable!(),
        }
    }

    fn record(status: &str, message: Option<&str>) -> MessageRecord {
        serde_json::from_value(json!({
            "eventId": "evt/1", "customerId": "c1", "status": status, "message": message,
            "recommendedService": "gutter-cleaning", "offering": "gutter_cleaning",
            "generator": {"agentId": "upsell-generator", "version": "1.0.0"},
            "judge": {"agentId": "upsell-judge", "version": "1.1.0"},
            "attempts": [], "totalUsage": {"inputTokens": 1, "outputTokens": 1},
            "costUsd": 0.0, "latencyMs": 1, "createdAt": "2025-05-07T09:00:00Z"
        }))
        .unwrap()
    }

    fn features() -> CustomerFeatures {
        let ev: CustomerEvent = serde_json::from_value(json!({
            "id": "s1", "source": "t", "detail-type": "ServiceCompleted",
            "time": "2024-05-01T00:00:00Z",
            "detail": {"customerId": "c1", "service": "lawn-care", "serviceDate": "2024-05-01",
                       "priceCents": 6500}
        }))
        .unwrap();
        replay("c1", &[ev]).unwrap().pop().unwrap()
    }

    #[test]
    fn an_accepted_approved_message_becomes_a_past_message_document() {
        let rec = record("approved", Some("Hi Dana, gutters before the leaves fall?"));
        let s = PastSuccess::from_accepted(&response("accepted"), Some(&rec), &features()).unwrap();
        assert_eq!(s.doc_id, "past-messages/accepted/evt_1");
        assert_eq!(s.key(), "past-messages/accepted/evt_1.md");
        assert!(
            s.text.contains("Hi Dana, gutters before the leaves fall?"),
            "{}",
            s.text
        );
        assert!(s.text.contains("Accepted within 3 day(s)"), "{}", s.text);
        assert!(s.text.contains("region unknown"), "{}", s.text);
        assert!(s.text.contains("upsell-judge@1.1.0"), "{}", s.text);
        let side: serde_json::Value = serde_json::from_str(&s.sidecar_json()).unwrap();
        let m = &side["metadataAttributes"];
        assert_eq!(m["doc_type"], "past_message");
        assert_eq!(m["offering"], "gutter_cleaning");
        assert_eq!(m["service"], "gutter-cleaning");
        assert_eq!(m["outcome"], "accepted");
        assert_eq!(m["year"], 2025.0);
        assert_eq!(m["season"], "spring");
        assert!(m.get("region").is_none(), "unknown region is left out: {m}");
    }

    #[test]
    fn only_accepted_approved_messages_count() {
        let f = features();
        let ok = record("approved", Some("Hi"));
        assert_eq!(
            PastSuccess::from_accepted(&response("declined"), Some(&ok), &f).unwrap_err(),
            NotASuccess::NotAccepted
        );
        assert_eq!(
            PastSuccess::from_accepted(&response("accepted"), None, &f).unwrap_err(),
            NotASuccess::NoMessage
        );
        let rejected = record("rejected", Some("Hi"));
        assert!(matches!(
            PastSuccess::from_accepted(&response("accepted"), Some(&rejected), &f),
            Err(NotASuccess::NotApproved(MessageStatus::Rejected))
        ));
    }
}
