//! Customer outcomes close the loop, end to end on the local workflow: after `upsell run` on
//! the sample events (which include `UpsellResponded`), every customer the run saw can be
//! searched for similar customers, responses are counted in the features and recorded as
//! skipped events, every accepted approved message is in the knowledge base, and approved
//! messages carry the similar-customer grounding where the facts support it (and only then).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use upsell_asl::{VirtualClock, virtual_runtime};
use upsell_cli::app::{AppOptions, LocalApp, Outcome};
use upsell_core::agent::AgentRef;
use upsell_core::counters::VersionCounters;
use upsell_core::events::{CustomerEvent, UpsellResponse};
use upsell_core::features::{CustomerIndex, FeatureStore, SimilarQuery};
use upsell_core::grounding::{SimilarCustomers, similar_claims};
use upsell_core::kb::{Filter, HashingEmbedder, KnowledgeBase, MetaValue, RetrieveRequest};
use upsell_core::message::MessageStatus;
use upsell_core::ports::MessageStore;
use upsell_core::sample::{LineKind, SampleConfig, generate};
use upsell_core::validate::check_event;
use upsell_models::offline::OfflineModel;
use upsell_sqlite::SqliteKnowledgeBase;

/// The enrich step's `facts.similarCustomers` of an execution, from its history.
fn similar_fact(app: &LocalApp, arn: &str) -> Option<SimilarCustomers> {
    let history = app.executions.history(arn).unwrap();
    history
        .iter()
        .filter(|e| e.event_type == "TaskStateExited")
        .filter_map(|e| e.details.as_ref())
        .filter(|(_, d)| d.get("name").and_then(serde_json::Value::as_str) == Some("Enrich"))
        .filter_map(|(_, d)| d.get("output").and_then(serde_json::Value::as_str))
        .filter_map(|o| serde_json::from_str::<serde_json::Value>(o).ok())
        .find_map(|doc| {
            serde_json::from_value(doc["enriched"]["facts"]["similarCustomers"].clone()).ok()
        })
}

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

    // Each response is counted once for the generator and judge versions of the approved
    // message it answers (the message record names them), and for no version otherwise.
    let mut want: HashMap<AgentRef, [u64; 4]> = HashMap::new();
    for e in &events {
        if let CustomerEvent::UpsellResponded(r) = e
            && let Some(rec) = rt
                .block_on(app.messages.get(&r.detail.message_event_id))
                .unwrap()
            && rec.status == MessageStatus::Approved
        {
            let i = UpsellResponse::ALL
                .iter()
                .position(|x| *x == r.detail.response)
                .unwrap();
            for agent in [rec.generator.clone(), rec.judge.clone()] {
                want.entry(agent).or_default()[i] += 1;
            }
        }
    }
    assert!(!want.is_empty(), "no response answers an approved message");
    let mut counted = 0;
    for agent_id in ["upsell-generator", "upsell-judge"] {
        for (version, c) in rt.block_on(app.counters.versions(agent_id)).unwrap() {
            let agent = AgentRef {
                agent_id: agent_id.to_owned(),
                version,
            };
            assert_eq!(
                c.responses,
                want.get(&agent).copied().unwrap_or_default(),
                "{agent}"
            );
            counted += c.response_count();
        }
    }
    assert_eq!(counted, want.values().flatten().sum::<u64>());
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

    // Approved messages speak of similar customers exactly where the facts support it for
    // the offered service, with the facts' numbers.
    let mut grounded = 0;
    let mut approved = 0;
    for r in &results {
        let (Some(id), Some(arn), Outcome::Published) = (
            r.event_id.as_deref(),
            r.execution_arn.as_deref(),
            &r.outcome,
        ) else {
            continue;
        };
        let rec = rt.block_on(app.messages.get(id)).unwrap().unwrap();
        let message = rec.message.as_deref().unwrap();
        let service = rec.recommended_service.unwrap();
        let fact = similar_fact(&app, arn).unwrap_or_else(|| panic!("{id}: no similarCustomers"));
        // The index is there, and the customer is in it (enrich upserts before it searches);
        // the run's first customers may have no neighbour yet.
        assert!(fact.unavailable.is_none(), "{id}: {fact:?}");
        approved += 1;
        let claims = similar_claims(message);
        if fact.supports(service) {
            let want = format!(
                "{} of the {} customers",
                fact.accepted_count(service),
                fact.found
            );
            assert!(message.contains(&want), "{id}: {message:?} lacks {want:?}");
            grounded += 1;
        } else {
            assert!(
                claims.is_empty(),
                "{id}: unsupported claim in {message:?}: {fact:?}"
            );
        }
    }
    assert!(approved > 0);
    assert!(
        grounded > 0,
        "no approved message of {approved} is grounded"
    );
}
