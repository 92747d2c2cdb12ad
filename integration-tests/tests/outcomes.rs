//! Customer outcomes close the loop, end to end on the local workflow: after `upsell run` on
//! the sample events (which include `UpsellResponded`), every customer the run saw can be
//! searched for similar customers, responses are counted in the features and recorded as
//! skipped events, and every accepted approved message is in the knowledge base.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use upsell_asl::{VirtualClock, virtual_runtime};
use upsell_cli::app::{AppOptions, LocalApp, Outcome};
use upsell_core::events::{CustomerEvent, UpsellResponse};
use upsell_core::features::{CustomerIndex, FeatureStore, SimilarQuery};
use upsell_core::kb::{Filter, HashingEmbedder, KnowledgeBase, MetaValue, RetrieveRequest};
use upsell_core::message::MessageStatus;
use upsell_core::ports::MessageStore;
use upsell_core::sample::{LineKind, SampleConfig, generate};
use upsell_core::validate::check_event;
use upsell_models::offline::OfflineModel;
use upsell_sqlite::kb::SqliteKnowledgeBase;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn after_a_run_every_customer_has_neighbours_and_accepted_messages_are_retrievable() {
    let home = tempfile::tempdir().unwrap();
    let rt = virtual_runtime().unwrap();
    let mut opts = AppOptions::new(home.path()).with_repo_root(&repo_root());
    if let Some(t) = std::env::var_os("UPSELL_TEMPLATE") {
        opts.template = t.into();
    }
    opts.model = Arc::new(OfflineModel::new());
    opts.lanes = 16;
    let app = rt.block_on(async {
        opts.clock = Arc::new(VirtualClock::new(chrono::Utc::now()));
        Arc::new(LocalApp::open(opts).await.unwrap())
    });
    let sample = generate(&SampleConfig {
        customers: 40,
        seed: 21,
        malformed_share: 0.05,
        duplicate_share: 0.03,
        ..SampleConfig::default()
    });
    let mut text = String::new();
    let mut events = Vec::new();
    for line in &sample {
        text.push_str(&line.text);
        text.push('\n');
        if line.kind == LineKind::Valid {
            events.push(check_event(line.text.as_bytes()).unwrap());
        }
    }
    let (summary, results) = rt
        .block_on(app.run_lines(&text, "sample.jsonl", |_| {}))
        .unwrap();
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert!(summary.published > 0, "{summary:?}");

    // Every customer with a valid event has an embedding and neighbours.
    let customers: BTreeSet<&str> = events.iter().map(CustomerEvent::customer_id).collect();
    assert!(customers.len() >= 35, "{}", customers.len());
    for c in &customers {
        let near = rt
            .block_on(app.features.similar(&SimilarQuery {
                customer_id: (*c).to_owned(),
                k: 3,
                region: None,
                service: None,
            }))
            .unwrap_or_else(|e| panic!("similar {c}: {e}"));
        assert_eq!(near.len(), 3, "{c}");
        assert!(near.iter().all(|n| n.customer_id != *c));
    }

    // Responses: each one ends as a skipped event, and the features count them.
    // The first line with an id is the event; later ones are its redeliveries.
    let mut outcome_of: HashMap<&str, &Outcome> = HashMap::new();
    for r in &results {
        if let Some(id) = r.event_id.as_deref() {
            outcome_of.entry(id).or_insert(&r.outcome);
        }
    }
    let mut accepted_by_customer: HashMap<&str, u32> = HashMap::new();
    let mut accepted = Vec::new();
    for e in &events {
        if let CustomerEvent::UpsellResponded(r) = e {
            assert_eq!(
                outcome_of.get(r.id.as_str()),
                Some(&&Outcome::Skipped),
                "{}",
                r.id
            );
            let rec = rt.block_on(app.messages.get(&r.id)).unwrap().unwrap();
            assert_eq!(rec.error.as_deref(), Some("skipped: response-recorded"));
            if r.detail.response == UpsellResponse::Accepted {
                *accepted_by_customer
                    .entry(r.detail.customer_id.as_str())
                    .or_default() += 1;
                accepted.push(r.detail.message_event_id.clone());
            }
        }
    }
    assert!(!accepted.is_empty(), "the sample has acceptances");
    for (c, n) in &accepted_by_customer {
        let f = rt.block_on(app.features.get(c, None)).unwrap().unwrap();
        assert_eq!(f.offers_accepted, *n, "{c}");
    }

    // Every accepted, approved message is a past success in the knowledge base.
    let kb = SqliteKnowledgeBase::open(
        &home.path().join("upsell.db"),
        Arc::new(HashingEmbedder::default()),
    )
    .unwrap();
    let mut found = 0;
    for id in &accepted {
        // The answered event may be one of the sample's deliberately broken lines.
        let Some(rec) = rt.block_on(app.messages.get(id)).unwrap() else {
            continue;
        };
        let doc_id = format!("past-messages/accepted/{id}");
        let req = RetrieveRequest::new("upsell message", 5).with_filter(Some(Filter::Equals {
            key: "doc_id".into(),
            value: MetaValue::Text(doc_id.clone()),
        }));
        let hits = rt.block_on(kb.retrieve(&req)).unwrap();
        if rec.status == MessageStatus::Approved {
            assert_eq!(hits.len(), 1, "{doc_id}");
            assert!(hits[0].text.contains(rec.message.as_deref().unwrap()));
            found += 1;
        } else {
            assert!(hits.is_empty(), "{doc_id} was {:?}", rec.status);
        }
    }
    assert!(found > 0, "no accepted message was approved");
}
