//! Similar-customer grounding: what the customer's nearest similar customers (the
//! [`crate::features::CustomerIndex`]) accepted, summarised as one fact that the offer choice,
//! the generator and the judge share, and the judge's check that a message's claims about
//! similar customers are backed by that fact.
//!
//! The fact holds counts per service only: no other customer's id, name or features reaches a
//! prompt. Where no index is plugged in (or the customer is not in it yet) the fact says why
//! ([`SimilarCustomers::unavailable`]) and supports no claim.

use std::sync::OnceLock;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::Service;
use crate::features::CustomerFeatures;

/// Neighbours looked up per event.
pub const DEFAULT_K: usize = 10;
/// Neighbours who accepted a service before a message may say similar customers chose it.
pub const MIN_SUPPORT: u32 = 2;
/// Weight of the similar-customer signal in the offer choice: an offer's score grows by this
/// times the share of the neighbours found who accepted its service (the pool and pets
/// bonuses are 1.5 too).
pub const OFFER_WEIGHT: f64 = 1.5;
/// Reason code of a message claiming something about similar customers that the fact does
/// not support.
pub const UNSUPPORTED_CLAIM: &str = "unsupported-similar-customers-claim";

/// How many of the neighbours found accepted one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCount {
    pub service: Service,
    /// Neighbours whose features list the service in `servicesAccepted`.
    pub customers: u32,
}

/// `facts.similarCustomers`: what the customer's nearest similar customers accepted, as known
/// at the event's time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimilarCustomers {
    /// Neighbours asked for.
    pub k: u32,
    /// Neighbours found (at most `k`; 0 when unavailable).
    pub found: u32,
    /// Neighbours found who accepted at least one upsell offer.
    pub accepted_any: u32,
    /// Services the neighbours accepted, most neighbours first (ties in catalogue order).
    #[serde(default)]
    pub accepted: Vec<ServiceCount>,
    /// Why there is no grounding, when there is none (e.g. no customer index is deployed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

impl SimilarCustomers {
    /// No grounding, and why.
    pub fn unavailable(k: usize, reason: impl Into<String>) -> SimilarCustomers {
        SimilarCustomers {
            k: u32::try_from(k).unwrap_or(u32::MAX),
            found: 0,
            accepted_any: 0,
            accepted: Vec::new(),
            unavailable: Some(reason.into()),
        }
    }

    /// The fact from the neighbours' features as known at the event's time.
    pub fn summarise(k: usize, neighbours: &[CustomerFeatures]) -> SimilarCustomers {
        let mut counts = [0u32; Service::ALL.len()];
        for f in neighbours {
            for s in &f.services_accepted {
                if let Some(i) = Service::ALL.iter().position(|x| x == s) {
                    counts[i] += 1;
                }
            }
        }
        let mut accepted: Vec<ServiceCount> = Service::ALL
            .into_iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(service, customers)| ServiceCount { service, customers })
            .collect();
        // Stable: ties keep catalogue order.
        accepted.sort_by_key(|c| std::cmp::Reverse(c.customers));
        SimilarCustomers {
            k: u32::try_from(k).unwrap_or(u32::MAX),
            found: u32::try_from(neighbours.len()).unwrap_or(u32::MAX),
            accepted_any: u32::try_from(
                neighbours.iter().filter(|f| f.offers_accepted > 0).count(),
            )
            .unwrap_or(u32::MAX),
            accepted,
            unavailable: None,
        }
    }

    /// Neighbours who accepted `service`.
    pub fn accepted_count(&self, service: Service) -> u32 {
        self.accepted
            .iter()
            .find(|c| c.service == service)
            .map_or(0, |c| c.customers)
    }

    /// Whether a message may say that similar customers chose `service`.
    pub fn supports(&self, service: Service) -> bool {
        self.unavailable.is_none() && self.accepted_count(service) >= MIN_SUPPORT
    }

    /// What the signal adds to an offer's score: [`OFFER_WEIGHT`] times the share of the
    /// neighbours found who accepted `service` (0 without grounding).
    pub fn offer_bonus(&self, service: Service) -> f64 {
        if self.unavailable.is_some() || self.found == 0 {
            return 0.0;
        }
        OFFER_WEIGHT * f64::from(self.accepted_count(service)) / f64::from(self.found)
    }
}

fn claim_pattern() -> &'static Regex {
    static P: OnceLock<Regex> = OnceLock::new();
    P.get_or_init(|| {
        Regex::new(
            r"(?x)
            \b(?:customers|homeowners|households|clients|families|people|others|neighbou?rs)\s+
              (?:like\s+you(?:rs)?|similar\s+to\s+you(?:rs)?|with\s+homes\s+like\s+yours|
                 in\s+your\s+area|near\s+you|around\s+you)\b
            | \bsimilar\s+(?:customers|homeowners|households|homes|clients)\b
            | \bpopular\s+(?:with|among)\b
            | \b(?:many|most|other)\s+(?:customers|homeowners|households|clients)\b",
        )
        .expect("valid regex")
    })
}

/// The sentences of `message` that claim something about other or similar customers.
pub fn similar_claims(message: &str) -> Vec<&str> {
    message
        .split_inclusive(['.', '!', '?', '\n'])
        .filter(|s| claim_pattern().is_match(&crate::guard::fold(s)))
        .map(str::trim)
        .collect()
}

/// The judge's check: a message may speak of similar customers only when the fact supports
/// it for the offered service ([`SimilarCustomers::supports`]), and every number in such a
/// sentence must be a count the fact gives (neighbours who accepted the service, or found).
/// `None` when the message is fine; otherwise what is wrong, for the next attempt.
pub fn check_claims(
    message: &str,
    service: Service,
    fact: Option<&SimilarCustomers>,
) -> Option<String> {
    let claims = similar_claims(message);
    let first = claims.first()?;
    let Some(fact) = fact.filter(|f| f.supports(service)) else {
        let why = match fact.and_then(|f| f.unavailable.as_deref()) {
            Some(reason) => format!("there is no similar-customer data ({reason})"),
            None => format!(
                "the facts do not show at least {MIN_SUPPORT} similar customers who accepted {service}"
            ),
        };
        return Some(format!(
            "remove the claim about other customers (\"{first}\"): {why}"
        ));
    };
    let allowed = [fact.accepted_count(service), fact.found];
    for claim in &claims {
        let bad: Vec<&str> = claim
            .split(|c: char| !c.is_ascii_digit())
            .filter(|n| !n.is_empty())
            .filter(|n| n.parse::<u32>().map_or(true, |n| !allowed.contains(&n)))
            .collect();
        if !bad.is_empty() {
            return Some(format!(
                "the claim \"{claim}\" gives {} but the facts say {} of {} similar customers accepted {service}",
                bad.join(", "),
                allowed[0],
                allowed[1]
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CustomerEvent;
    use crate::features::replay;
    use serde_json::json;

    fn neighbour(id: &str, accepted: &[&str]) -> CustomerFeatures {
        let mut events: Vec<CustomerEvent> = vec![
            serde_json::from_value(json!({
                "id": format!("{id}-s"), "source": "t", "detail-type": "ServiceCompleted",
                "time": "2025-04-01T00:00:00Z",
                "detail": {"customerId": id, "service": "lawn-care", "serviceDate": "2025-04-01",
                           "priceCents": 6500}
            }))
            .unwrap(),
        ];
        for (i, s) in accepted.iter().enumerate() {
            events.push(
                serde_json::from_value(json!({
                    "id": format!("{id}-r{i}"), "source": "t", "detail-type": "UpsellResponded",
                    "time": format!("2025-04-0{}T00:00:00Z", i + 2),
                    "detail": {"customerId": id, "messageEventId": format!("m{i}"),
                               "response": "accepted", "service": s}
                }))
                .unwrap(),
            );
        }
        replay(id, &events).unwrap().pop().unwrap()
    }

    fn fact() -> SimilarCustomers {
        SimilarCustomers::summarise(
            10,
            &[
                neighbour("a", &["gutter-cleaning", "pest-control"]),
                neighbour("b", &["gutter-cleaning"]),
                neighbour("c", &["pest-control", "gutter-cleaning"]),
                neighbour("d", &[]),
            ],
        )
    }

    #[test]
    fn the_fact_counts_neighbours_per_accepted_service() {
        let f = fact();
        assert_eq!((f.k, f.found, f.accepted_any), (10, 4, 3));
        assert_eq!(f.accepted_count(Service::GutterCleaning), 3);
        assert_eq!(f.accepted_count(Service::PestControl), 2);
        assert_eq!(f.accepted_count(Service::LawnCare), 0);
        assert_eq!(f.accepted[0].service, Service::GutterCleaning);
        assert!(f.supports(Service::PestControl));
        assert!(!f.supports(Service::LawnCare));
        assert!((f.offer_bonus(Service::GutterCleaning) - OFFER_WEIGHT * 0.75).abs() < 1e-12);
        let none = SimilarCustomers::unavailable(10, "no customer index");
        assert_eq!(none.offer_bonus(Service::GutterCleaning), 0.0);
        assert!(!none.supports(Service::GutterCleaning));
    }

    #[test]
    fn claims_need_support_in_the_fact() {
        let f = fact();
        let plain = "Hi Dana, time for gutter cleaning before the leaves fall.";
        assert_eq!(check_claims(plain, Service::GutterCleaning, None), None);
        let claim = "Hi Dana, 3 customers like you booked gutter cleaning this autumn.";
        assert_eq!(check_claims(claim, Service::GutterCleaning, Some(&f)), None);
        // Wrong number, unsupported service, no data.
        let wrong = "Hi Dana, 7 customers like you booked gutter cleaning.";
        assert!(check_claims(wrong, Service::GutterCleaning, Some(&f)).is_some());
        let other = "Hi Dana, lawn care is popular with homeowners nearby.";
        assert!(check_claims(other, Service::LawnCare, Some(&f)).is_some());
        let absent = SimilarCustomers::unavailable(10, "no customer index");
        let msg = check_claims(claim, Service::GutterCleaning, Some(&absent)).unwrap();
        assert!(msg.contains("no customer index"), "{msg}");
        assert!(check_claims(claim, Service::GutterCleaning, None).is_some());
        // Look-alike letters do not hide a claim.
        let disguised = "Hi Dana, similar сustomers chose lawn care.";
        assert!(check_claims(disguised, Service::LawnCare, Some(&f)).is_some());
        // A neighbour in the technician's notes is no claim about customers.
        let notes = "Hi Dana, protect your home after a neighbour's termites with pest control.";
        assert_eq!(check_claims(notes, Service::PestControl, None), None);
    }
}
