//! Past successes in the local knowledge-base index: an accepted message is indexed at once
//! (incrementally, with the knowledge base's chunking settings), so kb-retrieve can return it
//! to the generator on the next event. The document is the one `upsell_core::outcome` builds.

use std::sync::Arc;

use upsell_core::kb::ChunkingStrategy;
use upsell_core::outcome::{PastSuccess, PastSuccessStore};
use upsell_core::ports::PortError;

use crate::kb::SqliteKnowledgeBase;
use crate::kb_source::source_document;

/// [`PastSuccessStore`] over the local index.
pub struct SqlitePastSuccesses {
    kb: Arc<SqliteKnowledgeBase>,
    chunking: ChunkingStrategy,
}

impl std::fmt::Debug for SqlitePastSuccesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlitePastSuccesses")
            .finish_non_exhaustive()
    }
}

impl SqlitePastSuccesses {
    /// Indexes into `kb` with `chunking` (the knowledge base's `ingestion.json` settings,
    /// `kb_source::read_settings(dir)?.chunking()?`).
    pub fn new(kb: Arc<SqliteKnowledgeBase>, chunking: ChunkingStrategy) -> Self {
        SqlitePastSuccesses { kb, chunking }
    }
}

#[async_trait::async_trait]
impl PastSuccessStore for SqlitePastSuccesses {
    async fn add(&self, success: &PastSuccess) -> Result<(), PortError> {
        let doc = source_document(
            &success.key(),
            success.text.clone(),
            success.metadata.clone(),
            &success.sidecar_json(),
            &self.chunking,
        );
        self.kb.upsert_sources(&[doc]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kb::SourceDocument;
    use serde_json::json;
    use upsell_core::events::CustomerEvent;
    use upsell_core::features::replay;
    use upsell_core::kb::{
        ChunkingSettings, Filter, HashingEmbedder, KnowledgeBase, MetaValue, RetrieveRequest,
    };
    use upsell_core::message::MessageRecord;

    fn eq(key: &str, value: &str) -> Filter {
        Filter::Equals {
            key: key.to_owned(),
            value: MetaValue::Text(value.to_owned()),
        }
    }

    #[tokio::test]
    async fn an_accepted_message_is_retrievable_and_the_rest_of_the_index_stays() {
        let kb =
            Arc::new(SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::default())).unwrap());
        let chunking = ChunkingStrategy::FixedSize(ChunkingSettings::default());
        let existing = source_document(
            "catalogue/gutter_cleaning.md",
            "# Gutter cleaning\nClear leaves and debris from gutters.".into(),
            Default::default(),
            "",
            &chunking,
        );
        let SourceDocument::Chunked(existing) = existing else {
            panic!("fixed-size chunking gives chunked documents")
        };
        kb.sync(&[existing]).await.unwrap();

        let response: CustomerEvent = serde_json::from_value(json!({
            "id": "r1", "source": "com.greenleaf.messaging", "detail-type": "UpsellResponded",
            "time": "2025-10-10T10:00:00Z",
            "detail": {"customerId": "c1", "messageEventId": "evt-1", "response": "accepted"}
        }))
        .unwrap();
        let CustomerEvent::UpsellResponded(response) = response else {
            unreachable!()
        };
        let record: MessageRecord = serde_json::from_value(json!({
            "eventId": "evt-1", "customerId": "c1", "status": "approved",
            "message": "Hi Dana, the maples are dropping: shall we clear your gutters?",
            "recommendedService": "gutter-cleaning", "offering": "gutter_cleaning",
            "generator": {"agentId": "upsell-generator", "version": "1.0.0"},
            "judge": {"agentId": "upsell-judge", "version": "1.0.0"},
            "attempts": [], "totalUsage": {"inputTokens": 1, "outputTokens": 1},
            "costUsd": 0.0, "latencyMs": 1, "createdAt": "2025-10-08T09:00:00Z"
        }))
        .unwrap();
        let service: CustomerEvent = serde_json::from_value(json!({
            "id": "s1", "source": "t", "detail-type": "ServiceCompleted",
            "time": "2025-10-01T00:00:00Z",
            "detail": {"customerId": "c1", "service": "lawn-care", "serviceDate": "2025-10-01",
                       "priceCents": 6500}
        }))
        .unwrap();
        let features = replay("c1", &[service]).unwrap().pop().unwrap();
        let success = PastSuccess::from_accepted(&response, Some(&record), &features).unwrap();

        let store = SqlitePastSuccesses::new(kb.clone(), chunking);
        store.add(&success).await.unwrap();
        store.add(&success).await.unwrap(); // idempotent

        let req = RetrieveRequest::new("maples gutters leaves", 5).with_filter(Some(
            Filter::AndAll(vec![
                eq("doc_type", "past_message"),
                eq("offering", "gutter_cleaning"),
            ]),
        ));
        let hits = kb.retrieve(&req).await.unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].doc_id, "past-messages/accepted/evt-1");
        assert!(hits[0].text.contains("shall we clear your gutters"));
        // The catalogue document is still indexed.
        let all = kb
            .retrieve(&RetrieveRequest::new("gutters", 10))
            .await
            .unwrap();
        assert!(
            all.iter().any(|c| c.doc_id == "catalogue/gutter_cleaning"),
            "{all:?}"
        );
    }
}
