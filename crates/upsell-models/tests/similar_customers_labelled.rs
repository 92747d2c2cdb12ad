//! Does the similar-customer signal improve the offer choice? A labelled comparison on a
//! held-out split (docs/feature-store.md, "Similar customers in the offer choice").
//!
//! Labels come from a rule that uses no embedding: a customer accepts service S when S suits
//! their region and home type under a fixed hash ([`would_accept`]; about 35% of
//! (region, home type, service) combinations), a stand-in for regional tastes the catalogue's
//! rules do not know. The sample's own response model cannot serve: its shares do not depend
//! on the offer, so under it no offer choice changes acceptance.
//!
//! Customers of `upsell sample` are split by a hash of their id. Train customers were offered
//! the baseline's top three offers and accepted those the rule says (their
//! `servicesAccepted`). Each held-out customer gets the baseline offer and the offer chosen
//! with `facts.similarCustomers` from their 10 nearest train customers (Euclidean distance on
//! `cust-emb-v1`), and both are labelled by the rule. Run with `--nocapture` for the figures.

use std::collections::HashMap;

use upsell_core::events::{CustomerEvent, Service};
use upsell_core::features::{
    CustomerFeatures, embed_customer, features_from_events, squared_distance,
};
use upsell_core::grounding::{DEFAULT_K, SimilarCustomers};
use upsell_core::hash::fnv1a;
use upsell_core::paired_stats::{mcnemar_exact, mean_t, wilson};
use upsell_core::sample::{LineKind, SampleConfig, generate};
use upsell_core::validate::check_event;
use upsell_models::catalogue::Catalogue;
use upsell_models::offers::{compute_offers, compute_offers_grounded};

/// The labelling rule: no embedding, no offer score.
fn would_accept(f: &CustomerFeatures, s: Service) -> bool {
    let (Some(region), Some(home)) = (f.region, f.home_type) else {
        return false;
    };
    fnv1a(format!("{region:?}|{home:?}|{s}").as_bytes()) % 100 < 35
}

fn held_out(customer_id: &str) -> bool {
    fnv1a(customer_id.as_bytes()).is_multiple_of(2)
}

#[test]
fn similar_customers_in_the_offer_choice_on_a_held_out_split() {
    let lines = generate(&SampleConfig {
        customers: 1200,
        seed: 2112,
        malformed_share: 0.0,
        duplicate_share: 0.0,
        ..SampleConfig::default()
    });
    let mut by_customer: HashMap<String, Vec<CustomerEvent>> = HashMap::new();
    for l in lines.iter().filter(|l| l.kind == LineKind::Valid) {
        let e = check_event(l.text.as_bytes()).unwrap();
        by_customer
            .entry(e.customer_id().to_owned())
            .or_default()
            .push(e);
    }
    let catalogue = Catalogue::builtin();
    let mut train: Vec<(CustomerFeatures, Vec<f32>)> = Vec::new();
    let mut test: Vec<CustomerFeatures> = Vec::new();
    let mut ids: Vec<&String> = by_customer.keys().collect();
    ids.sort();
    for id in ids {
        let events = &by_customer[id];
        let last = events.iter().map(CustomerEvent::time).max().unwrap();
        let Some(mut f) = features_from_events(id, events, last).unwrap() else {
            continue;
        };
        if f.region.is_none() {
            continue;
        }
        if held_out(id) {
            test.push(f);
        } else {
            let offers = compute_offers(&f, f.as_of.date_naive(), catalogue, 3);
            f.services_accepted = Service::ALL
                .into_iter()
                .filter(|s| offers.iter().any(|o| o.service == *s) && would_accept(&f, *s))
                .collect();
            f.offers_accepted = f.services_accepted.len() as u32;
            let v = embed_customer(&f);
            train.push((f, v));
        }
    }

    let (mut base_ok, mut with_ok, mut n, mut changed) = (0u64, 0u64, 0u64, 0u64);
    let (mut only_with, mut only_base) = (0u64, 0u64);
    let mut diffs = Vec::new();
    for f in &test {
        let date = f.as_of.date_naive();
        let Some(base) = compute_offers(f, date, catalogue, 1).pop() else {
            continue;
        };
        let v = embed_customer(f);
        let mut near: Vec<(f32, &CustomerFeatures)> = train
            .iter()
            .map(|(t, tv)| (squared_distance(&v, tv), t))
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        let neighbours: Vec<CustomerFeatures> = near
            .iter()
            .take(DEFAULT_K)
            .map(|(_, t)| (*t).clone())
            .collect();
        let fact = SimilarCustomers::summarise(DEFAULT_K, &neighbours);
        let with = compute_offers_grounded(f, date, catalogue, 1, Some(&fact))
            .pop()
            .expect("the same offers are eligible");
        let (a, b) = (would_accept(f, base.service), would_accept(f, with.service));
        n += 1;
        base_ok += u64::from(a);
        with_ok += u64::from(b);
        changed += u64::from(base.offering != with.offering);
        only_with += u64::from(b && !a);
        only_base += u64::from(a && !b);
        diffs.push(f64::from(u8::from(b)) - f64::from(u8::from(a)));
    }
    let (diff, ci) = mean_t(&diffs).unwrap();
    let (wb, ww) = (wilson(base_ok, n, 1.96), wilson(with_ok, n, 1.96));
    println!(
        "train customers {}, held-out customers with an offer {n}, offer changed for {changed}",
        train.len()
    );
    println!(
        "acceptance without similar customers: {base_ok}/{n} = {:.3} (95% CI {:.3}..{:.3})",
        base_ok as f64 / n as f64,
        wb.low,
        wb.high
    );
    println!(
        "acceptance with similar customers:    {with_ok}/{n} = {:.3} (95% CI {:.3}..{:.3})",
        with_ok as f64 / n as f64,
        ww.low,
        ww.high
    );
    println!(
        "paired difference {diff:+.3} (95% CI {:+.3}..{:+.3}); discordant {only_with} vs {only_base}, McNemar exact p = {:.2e}",
        ci.low,
        ci.high,
        mcnemar_exact(only_with, only_base)
    );
    // The comparison means something only with enough customers and changed choices.
    assert!(train.len() >= 400 && n >= 400, "{} / {n}", train.len());
    assert!(changed > 0, "the signal never changed an offer");
    // The paired difference is exactly the discordant pairs' balance.
    assert!((diff - (only_with as f64 - only_base as f64) / n as f64).abs() < 1e-12);
}
