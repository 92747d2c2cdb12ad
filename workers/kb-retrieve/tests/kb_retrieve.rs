//! Tests of the kb-retrieve worker with a fake knowledge base that records the filters it got.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kb_retrieve::{Deps, handle, message_text};
use upsell_core::kb::{KnowledgeBase, MetaValue, Metadata, RetrieveRequest, RetrievedChunk};
use upsell_core::ports::PortError;
use upsell_models::prompt::RetrievalQuery;

/// Returns one chunk only to requests without a region filter; or fails with the given error.
struct FakeKb {
    calls: Mutex<Vec<String>>,
    fail: Option<PortError>,
}

#[async_trait]
impl KnowledgeBase for FakeKb {
    async fn retrieve(&self, r: &RetrieveRequest) -> Result<Vec<RetrievedChunk>, PortError> {
        let f = serde_json::to_string(&r.filter).unwrap();
        self.calls.lock().unwrap().push(f.clone());
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        if f.contains("region") {
            return Ok(vec![]);
        }
        let mut metadata = Metadata::new();
        metadata.insert("offering".into(), MetaValue::Text("gutter_cleaning".into()));
        Ok(vec![RetrievedChunk {
            chunk_id: "pm-1#0".into(),
            doc_id: "pm-1".into(),
            text: "# Past ## Message Hi Tom, clean gutters matter. ## Outcome Accepted".into(),
            metadata,
            score: 0.9,
            source: "past-messages/pm-1.md".into(),
        }])
    }
}

fn query() -> RetrievalQuery {
    RetrievalQuery {
        query: "Gutter cleaning autumn".into(),
        offering: Some("gutter_cleaning".into()),
        region: Some(upsell_core::events::Region::Midwest),
        k: 3,
    }
}

#[tokio::test]
async fn region_filter_is_relaxed_when_nothing_matches() {
    let kb = Arc::new(FakeKb {
        calls: Mutex::new(vec![]),
        fail: None,
    });
    let out = handle(query(), &Deps { kb: kb.clone() }).await.unwrap();
    assert_eq!(out.filter_used, "offering");
    assert_eq!(out.examples.len(), 1);
    assert_eq!(out.examples[0].text, "Hi Tom, clean gutters matter.");
    assert_eq!(out.examples[0].offering.as_deref(), Some("gutter_cleaning"));
    let calls = kb.calls.lock().unwrap();
    assert_eq!(calls.len(), 2);
    assert!(
        calls[0].contains("midwest") && calls[0].contains("past_message"),
        "{}",
        calls[0]
    );
}

#[tokio::test]
async fn errors_keep_their_stable_names() {
    for (err, name) in [
        (PortError::Throttled("slow".into()), "Throttled"),
        (PortError::Transient("down".into()), "TransientError"),
        (PortError::Invalid("bad".into()), "InvalidRequest"),
    ] {
        let kb = Arc::new(FakeKb {
            calls: Mutex::new(vec![]),
            fail: Some(err),
        });
        let e = handle(query(), &Deps { kb }).await.unwrap_err();
        assert_eq!(e.error_type(), name);
    }
    let kb = Arc::new(FakeKb {
        calls: Mutex::new(vec![]),
        fail: None,
    });
    let e = handle(RetrievalQuery { k: 0, ..query() }, &Deps { kb })
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "InvalidRequest");
    assert_eq!(message_text("no sections"), "no sections");
}
