//! The sample generator is deterministic, realistic enough to exercise every path, and labels
//! its lines truthfully: valid ones pass validation, broken ones fail it.

use std::collections::{HashMap, HashSet};

use upsell_core::events::{CustomerEvent, Service};
use upsell_core::sample::{LineKind, SampleConfig, generate, generate_jsonl};
use upsell_core::validate::check_event;

fn cfg(seed: u64) -> SampleConfig {
    SampleConfig {
        customers: 40,
        seed,
        malformed_share: 0.1,
        duplicate_share: 0.05,
        ..SampleConfig::default()
    }
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    assert_eq!(generate_jsonl(&cfg(1)), generate_jsonl(&cfg(1)));
    assert_ne!(generate_jsonl(&cfg(1)), generate_jsonl(&cfg(2)));
}

#[test]
fn labels_match_validation() {
    let lines = generate(&cfg(3));
    let mut malformed = 0;
    for (i, l) in lines.iter().enumerate() {
        let r = check_event(l.text.as_bytes());
        match l.kind {
            LineKind::Valid | LineKind::Duplicate => {
                assert!(
                    r.is_ok(),
                    "line {} should be valid: {:?}\n{}",
                    i + 1,
                    r.err(),
                    l.text
                )
            }
            LineKind::Malformed(b) => {
                malformed += 1;
                assert!(
                    r.is_err(),
                    "line {} ({b:?}) should be invalid\n{}",
                    i + 1,
                    l.text
                )
            }
        }
    }
    assert!(malformed > 0);
}

#[test]
fn duplicates_repeat_earlier_ids_and_valid_ids_are_otherwise_unique() {
    let lines = generate(&cfg(4));
    let mut seen = HashSet::new();
    let mut dups = 0;
    for l in &lines {
        let Ok(ev) = check_event(l.text.as_bytes()) else {
            continue;
        };
        let fresh = seen.insert(ev.id().to_owned());
        match l.kind {
            LineKind::Duplicate => {
                dups += 1;
                assert!(!fresh, "a duplicate must reuse an earlier id");
            }
            _ => assert!(fresh, "ids of distinct events are unique"),
        }
    }
    assert!(dups > 0);
}

#[test]
fn customers_get_several_event_types_and_seasonal_services() {
    let lines = generate(&SampleConfig {
        malformed_share: 0.0,
        duplicate_share: 0.0,
        ..cfg(5)
    });
    let events: Vec<CustomerEvent> = lines
        .iter()
        .map(|l| serde_json::from_str(&l.text).unwrap())
        .collect();
    let mut per_customer: HashMap<String, HashSet<&str>> = HashMap::new();
    for e in &events {
        per_customer
            .entry(e.customer_id().to_owned())
            .or_default()
            .insert(e.detail_type());
        if let CustomerEvent::ServiceCompleted(s) = e {
            let month = chrono::Datelike::month(&s.detail.service_date);
            assert!(s.detail.service.season().contains(&month), "{s:?}");
            if s.detail.service == Service::SnowRemoval {
                // Only where it snows: checked via the customer's profile below.
            }
        }
    }
    assert_eq!(per_customer.len(), 40);
    let multi = per_customer.values().filter(|t| t.len() >= 2).count();
    assert!(
        multi >= 30,
        "most customers have several event types: {multi}/40"
    );
    // Times are in order.
    assert!(events.windows(2).all(|w| w[0].time() <= w[1].time()));
}

#[test]
fn responses_answer_earlier_services_at_realistic_rates_and_opt_outs_stick() {
    use upsell_core::events::UpsellResponse;
    use upsell_core::sample::RESPONSE_SHARES;
    let lines = generate(&SampleConfig {
        customers: 400,
        malformed_share: 0.0,
        duplicate_share: 0.0,
        ..cfg(6)
    });
    let events: Vec<CustomerEvent> = lines
        .iter()
        .map(|l| check_event(l.text.as_bytes()).unwrap())
        .collect();
    let services: HashMap<&str, &CustomerEvent> = events
        .iter()
        .filter(|e| matches!(e, CustomerEvent::ServiceCompleted(_)))
        .map(|e| (e.id(), e))
        .collect();
    let mut counts: HashMap<UpsellResponse, usize> = HashMap::new();
    let mut opted_out: HashMap<&str, chrono::DateTime<chrono::Utc>> = HashMap::new();
    for e in &events {
        match e {
            CustomerEvent::UpsellResponded(r) => {
                let answered = services[r.detail.message_event_id.as_str()];
                assert_eq!(answered.customer_id(), r.detail.customer_id);
                assert!(answered.time() < r.time, "a response follows its message");
                assert!(
                    !opted_out.contains_key(r.detail.customer_id.as_str()),
                    "no response after an opt-out"
                );
                if r.detail.response == UpsellResponse::OptedOut {
                    opted_out.insert(&r.detail.customer_id, r.time);
                }
                *counts.entry(r.detail.response).or_default() += 1;
            }
            CustomerEvent::CustomerProfileUpdated(p)
                if opted_out.contains_key(p.detail.customer_id.as_str()) =>
            {
                assert!(!p.detail.marketing_opt_in, "the CRM kept the opt-out");
            }
            _ => {}
        }
    }
    let total: usize = counts.values().sum();
    assert!(total > 500, "{total}");
    for (r, share) in UpsellResponse::ALL.into_iter().zip(RESPONSE_SHARES) {
        let got = counts.get(&r).copied().unwrap_or(0) as f64 / total as f64;
        assert!(
            (got - share).abs() < 0.05,
            "{r}: {got:.3} of responses, expected about {share}"
        );
    }
}

#[test]
fn first_customer_numbers_the_customers_and_changes_nothing_else() {
    // Well-formed lines only: a truncated line may cut an id in two.
    let one = SampleConfig {
        malformed_share: 0.0,
        ..cfg(3)
    };
    let base = generate_jsonl(&one);
    let moved = generate_jsonl(&SampleConfig {
        first_customer: 1001,
        ..one.clone()
    });
    assert!(base.contains("\"cust-000001\"") && !base.contains("\"cust-001001\""));
    assert!(moved.contains("\"cust-001001\"") && !moved.contains("\"cust-000001\""));
    // The same people under other ids: customer n becomes customer n + 1000.
    let mut renumbered = base.clone();
    for n in (1..=40).rev() {
        renumbered = renumbered.replace(
            &format!("\"cust-{n:06}\""),
            &format!("\"cust-{:06}\"", n + 1000),
        );
    }
    assert_eq!(renumbered, moved);
}
