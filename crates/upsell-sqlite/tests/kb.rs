//! Knowledge-base index: empty index, fusion, filters, hostile query text, sync semantics and
//! the committed `knowledge-base/` folder.

use std::path::PathBuf;
use std::sync::Arc;

use upsell_core::kb::{
    Chunk, ChunkingSettings, Document, Filter, HashingEmbedder, KnowledgeBase, MetaValue, Metadata,
    RetrieveRequest, SearchMode, chunk_document,
};
use upsell_sqlite::kb::{IndexDocument, SqliteKnowledgeBase};
use upsell_sqlite::kb_source::load_documents;

fn doc(id: &str, text: &str, meta: &[(&str, &str)]) -> IndexDocument {
    let metadata: Metadata = meta
        .iter()
        .map(|(k, v)| ((*k).to_owned(), MetaValue::Text((*v).to_owned())))
        .collect();
    let d = Document {
        doc_id: id.into(),
        source: format!("{id}.md"),
        text: text.into(),
        metadata,
    };
    IndexDocument {
        doc_id: id.into(),
        source: d.source.clone(),
        content_hash: format!("{:x}", text.len() * 31 + meta.len()),
        chunks: chunk_document(&d, ChunkingSettings::default()),
    }
}

fn corpus() -> Vec<IndexDocument> {
    vec![
        doc(
            "pool",
            "Weekly pool cleaning: skimming, brushing and balanced water chemistry for pool owners.",
            &[("region", "southwest"), ("doc_type", "catalogue")],
        ),
        doc(
            "pool-ne",
            "Pool opening in spring: cover removal, pump restart and shock so the pool is ready.",
            &[("region", "northeast"), ("doc_type", "catalogue")],
        ),
        doc(
            "gutters",
            "Gutter cleaning in autumn under tall oak trees; downspouts flushed.",
            &[("region", "northeast"), ("doc_type", "catalogue")],
        ),
        doc(
            "dogs",
            "Pet waste removal for households with dogs: a weekly yard sweep.",
            &[("region", "midwest"), ("doc_type", "past_message")],
        ),
        doc(
            "snow",
            "Snow plowing before dawn for early commuters; walks salted.",
            &[("region", "midwest"), ("doc_type", "past_message")],
        ),
    ]
}

async fn index() -> SqliteKnowledgeBase {
    let kb = SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::new(256))).unwrap();
    let report = kb.sync(&corpus()).await.unwrap();
    assert_eq!(report.documents_added, 5);
    assert_eq!(report.chunks_total, 5);
    kb
}

fn ids(hits: &[upsell_core::kb::RetrievedChunk]) -> Vec<&str> {
    hits.iter().map(|h| h.doc_id.as_str()).collect()
}

#[tokio::test]
async fn empty_index_returns_nothing_in_every_mode() {
    let kb = SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::new(64))).unwrap();
    for mode in SearchMode::ALL {
        let hits = kb
            .retrieve(&RetrieveRequest::new("pool cleaning", 5).with_mode(mode))
            .await
            .unwrap();
        assert!(hits.is_empty(), "{mode:?}");
    }
    assert_eq!(kb.chunk_count().unwrap(), 0);
}

#[tokio::test]
async fn every_mode_finds_the_obvious_document() {
    let kb = index().await;
    for mode in SearchMode::ALL {
        let hits = kb
            .retrieve(&RetrieveRequest::new("pool cleaning for pool owners", 3).with_mode(mode))
            .await
            .unwrap();
        assert_eq!(hits[0].doc_id, "pool", "{mode:?}: {:?}", ids(&hits));
        assert!(hits.len() <= 3);
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn hybrid_fuses_with_reciprocal_rank() {
    let kb = index().await;
    let req = RetrieveRequest::new("pool opening spring cover", 5);
    let kw = kb
        .retrieve(&req.clone().with_mode(SearchMode::Keyword))
        .await
        .unwrap();
    let vec = kb
        .retrieve(&req.clone().with_mode(SearchMode::Vector))
        .await
        .unwrap();
    let hybrid = kb.retrieve(&req).await.unwrap();
    // Recompute RRF by hand from the two lists (the hybrid path asks for more candidates, but
    // with five documents both lists are complete).
    let kw_ids: Vec<String> = kw.iter().map(|h| h.chunk_id.clone()).collect();
    let vec_ids: Vec<String> = vec.iter().map(|h| h.chunk_id.clone()).collect();
    let expected = upsell_core::kb::reciprocal_rank_fusion(&[kw_ids, vec_ids]);
    let got: Vec<(String, f64)> = hybrid
        .iter()
        .map(|h| (h.chunk_id.clone(), h.score))
        .collect();
    assert_eq!(got.len(), expected.len().min(5));
    for ((g, gs), (e, es)) in got.iter().zip(&expected) {
        assert_eq!(g, e);
        assert!((gs - es).abs() < 1e-12);
    }
    assert_eq!(hybrid[0].doc_id, "pool-ne");
}

#[tokio::test]
async fn every_filter_form_selects_exactly_the_matching_chunks() {
    // Mixed attribute types, lists and missing keys: vector search with k above the corpus size
    // returns every chunk the filter passes, which must be exactly what `Filter::matches` says.
    let meta = |pairs: Vec<(&str, MetaValue)>| -> Metadata {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    };
    let text = |s: &str| MetaValue::Text(s.to_owned());
    let docs: Vec<(&str, Metadata)> = vec![
        (
            "a",
            meta(vec![
                ("region", text("west")),
                ("year", MetaValue::Number(2023.0)),
                (
                    "seasons",
                    MetaValue::List(vec!["spring".into(), "summer".into()]),
                ),
            ]),
        ),
        (
            "b",
            meta(vec![
                ("region", text("east")),
                ("year", MetaValue::Number(2024.0)),
                ("has_pool", MetaValue::Bool(true)),
            ]),
        ),
        (
            "c",
            meta(vec![
                ("region", text("west")),
                ("year", text("2024")),
                ("seasons", MetaValue::List(vec!["winter".into()])),
            ]),
        ),
        ("d", meta(vec![("has_pool", MetaValue::Bool(false))])),
    ];
    let kb = SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::new(64))).unwrap();
    let index_docs: Vec<IndexDocument> = docs
        .iter()
        .map(|(id, m)| {
            let d = Document {
                doc_id: (*id).into(),
                source: format!("{id}.md"),
                text: format!("document {id} about lawns"),
                metadata: m.clone(),
            };
            IndexDocument {
                doc_id: (*id).into(),
                source: d.source.clone(),
                content_hash: (*id).into(),
                chunks: chunk_document(&d, ChunkingSettings::default()),
            }
        })
        .collect();
    kb.sync(&index_docs).await.unwrap();
    let eq = |k: &str, v: MetaValue| Filter::Equals {
        key: k.into(),
        value: v,
    };
    let filters = vec![
        eq("region", text("west")),
        eq("seasons", text("spring")),
        eq("year", MetaValue::Number(2024.0)),
        eq("has_pool", MetaValue::Bool(false)),
        Filter::NotEquals {
            key: "region".into(),
            value: text("west"),
        },
        Filter::In {
            key: "region".into(),
            values: vec![text("east"), text("north")],
        },
        Filter::ListContains {
            key: "seasons".into(),
            value: "winter".into(),
        },
        Filter::GreaterThanOrEquals {
            key: "year".into(),
            value: 2024.0,
        },
        Filter::LessThanOrEquals {
            key: "year".into(),
            value: 2023.5,
        },
        Filter::AndAll(vec![
            eq("region", text("west")),
            Filter::NotEquals {
                key: "seasons".into(),
                value: text("winter"),
            },
        ]),
        Filter::OrAll(vec![
            eq("has_pool", MetaValue::Bool(true)),
            eq("seasons", text("winter")),
        ]),
        Filter::OrAll(vec![]),
        Filter::AndAll(vec![]),
        eq("missing", text("x")),
    ];
    for filter in filters {
        let mut want: Vec<&str> = docs
            .iter()
            .filter(|(_, m)| filter.matches(m))
            .map(|(id, _)| *id)
            .collect();
        for mode in [SearchMode::Vector, SearchMode::Hybrid] {
            let hits = kb
                .retrieve(
                    &RetrieveRequest::new("document lawns", 10)
                        .with_mode(mode)
                        .with_filter(Some(filter.clone())),
                )
                .await
                .unwrap();
            let mut got = ids(&hits);
            got.sort();
            want.sort();
            assert_eq!(got, want, "{mode:?} {filter:?}");
        }
    }
}

#[tokio::test]
async fn filters_apply_in_every_mode() {
    let kb = index().await;
    let filter = Filter::from_pairs(&["region=northeast"]).unwrap();
    for mode in SearchMode::ALL {
        let hits = kb
            .retrieve(
                &RetrieveRequest::new("pool cleaning gutter", 5)
                    .with_mode(mode)
                    .with_filter(filter.clone()),
            )
            .await
            .unwrap();
        assert!(!hits.is_empty(), "{mode:?}");
        assert!(
            hits.iter()
                .all(|h| h.metadata["region"] == MetaValue::Text("northeast".into())),
            "{mode:?}: {:?}",
            ids(&hits)
        );
    }
    let none = Filter::from_pairs(&["region=antarctica"]).unwrap();
    let hits = kb
        .retrieve(&RetrieveRequest::new("pool", 5).with_filter(none))
        .await
        .unwrap();
    assert!(hits.is_empty());
    let both = Filter::from_pairs(&["region=midwest", "doc_type=past_message"]).unwrap();
    let hits = kb
        .retrieve(&RetrieveRequest::new("dogs snow yard", 5).with_filter(both))
        .await
        .unwrap();
    let mut got = ids(&hits);
    got.sort();
    assert_eq!(got, ["dogs", "snow"]);
}

#[tokio::test]
async fn hostile_query_text_never_breaks_fts5() {
    let kb = index().await;
    let hostile = [
        r#"pool" OR "x"#,
        r#""""#,
        "pool NEAR(gutter, 2)",
        "pool*",
        "*",
        "(pool AND (gutter",
        ")))",
        "NOT pool",
        "text:pool",
        "^pool",
        "pool + - ~ ! @ # $ % & = { } [ ] | \\ / ? < > , . ;",
        "piscine été über 🏊 泳池",
        "'; DROP TABLE kb_chunks; --",
        "\0\u{1}\u{7f}",
        "AND OR NOT NEAR",
        "",
        "   ",
    ];
    for q in hostile {
        for mode in SearchMode::ALL {
            let hits = kb
                .retrieve(&RetrieveRequest::new(q, 5).with_mode(mode))
                .await
                .unwrap_or_else(|e| panic!("{q:?} {mode:?}: {e}"));
            assert!(hits.len() <= 5);
        }
    }
    // The operators are searched as plain words: "pool*" finds the pool documents.
    let hits = kb
        .retrieve(&RetrieveRequest::new("pool*", 5).with_mode(SearchMode::Keyword))
        .await
        .unwrap();
    let mut got = ids(&hits);
    got.sort();
    assert_eq!(got, ["pool", "pool-ne"]);
    assert_eq!(kb.chunk_count().unwrap(), 5);
}

#[tokio::test]
async fn bad_requests_are_rejected_with_a_reason() {
    let kb = index().await;
    let err = kb
        .retrieve(&RetrieveRequest::new("pool", 0))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidRequest");
    assert!(err.to_string().contains("k must be"), "{err}");
}

#[tokio::test]
async fn sync_keeps_unchanged_updates_changed_and_deletes_missing() {
    let kb = index().await;
    let again = kb.sync(&corpus()).await.unwrap();
    assert_eq!(again.documents_unchanged, 5);
    assert_eq!(again.chunks_embedded, 0);

    let mut docs = corpus();
    docs.retain(|d| d.doc_id != "snow");
    docs[0] = doc(
        "pool",
        "Completely rewritten: hot tub maintenance.",
        &[("region", "southwest")],
    );
    let report = kb.sync(&docs).await.unwrap();
    assert_eq!(report.documents_updated, 1);
    assert_eq!(report.documents_deleted, 1);
    assert_eq!(report.documents_unchanged, 3);
    assert_eq!(report.chunks_total, 4);
    let hits = kb
        .retrieve(&RetrieveRequest::new("snow plowing commuters", 5).with_mode(SearchMode::Keyword))
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.doc_id != "snow"));
    let hits = kb
        .retrieve(&RetrieveRequest::new("hot tub", 5).with_mode(SearchMode::Keyword))
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["pool"]);

    let dup = vec![corpus()[0].clone(), corpus()[0].clone()];
    assert!(
        kb.sync(&dup)
            .await
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
}

#[tokio::test]
async fn a_different_embedder_is_refused_until_reingest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.db");
    let kb = SqliteKnowledgeBase::open(&path, Arc::new(HashingEmbedder::new(64))).unwrap();
    kb.sync(&corpus()).await.unwrap();
    drop(kb);
    let other = SqliteKnowledgeBase::open(&path, Arc::new(HashingEmbedder::new(128))).unwrap();
    let err = other
        .retrieve(&RetrieveRequest::new("pool", 5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upsell kb ingest"), "{err}");
    let report = other.sync(&corpus()).await.unwrap();
    assert_eq!(report.documents_added, 5);
    assert!(
        !other
            .retrieve(&RetrieveRequest::new("pool", 5))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn another_connection_sees_new_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.db");
    let reader = SqliteKnowledgeBase::open(&path, Arc::new(HashingEmbedder::new(64))).unwrap();
    assert!(
        reader
            .retrieve(&RetrieveRequest::new("pool", 5))
            .await
            .unwrap()
            .is_empty()
    );
    let writer = SqliteKnowledgeBase::open(&path, Arc::new(HashingEmbedder::new(64))).unwrap();
    writer.sync(&corpus()).await.unwrap();
    let hits = reader
        .retrieve(&RetrieveRequest::new("pool", 5).with_mode(SearchMode::Vector))
        .await
        .unwrap();
    assert!(
        !hits.is_empty(),
        "the vector cache must reload after another connection wrote"
    );
}

fn kb_root() -> PathBuf {
    std::env::var_os("UPSELL_KB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../knowledge-base"))
}

#[tokio::test]
async fn committed_knowledge_base_loads_and_answers() {
    let root = kb_root();
    let docs = load_documents(&root).unwrap();
    let past = docs
        .iter()
        .filter(|d| d.doc_id.starts_with("past-messages/"))
        .count();
    assert!(past >= 300, "only {past} past messages");
    assert!(docs.iter().any(|d| d.doc_id == "brand/guidelines"));
    assert!(docs.iter().all(|d| !d.doc_id.starts_with("eval/")));
    let chunk: &Chunk = &docs
        .iter()
        .find(|d| d.doc_id.starts_with("catalogue/"))
        .unwrap()
        .chunks[0];
    assert_eq!(
        chunk.metadata["doc_type"],
        MetaValue::Text("catalogue".into())
    );

    let kb = SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::default())).unwrap();
    kb.sync(&docs).await.unwrap();
    let hits = kb
        .retrieve(
            &RetrieveRequest::new("pool cleaning weekly chemistry", 5)
                .with_filter(Filter::from_pairs(&["doc_type=catalogue"]).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(hits[0].doc_id, "catalogue/pool_cleaning");
}
