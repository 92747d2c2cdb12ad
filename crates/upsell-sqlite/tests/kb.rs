//! Knowledge-base index: empty index, fusion, filters, hostile query text, sync semantics and
//! the committed `knowledge-base/` folder.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use upsell_core::kb::{
    Chunk, ChunkingSettings, ChunkingStrategy, Document, Filter, FusionWeights, HashingEmbedder,
    HierarchicalSettings, KnowledgeBase, MetaValue, Metadata, RerankSettings, RetrieveRequest,
    SearchMode, SemanticSettings, chunk_document, rerank_passages, sentence_rerank_score,
    weighted_reciprocal_rank_fusion,
};
use upsell_sqlite::load_documents;
use upsell_sqlite::{IndexDocument, SqliteKnowledgeBase};

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
    let w = kb.fusion_weights();
    let expected =
        weighted_reciprocal_rank_fusion(&[(w.keyword, &kw_ids[..]), (w.vector, &vec_ids[..])]);
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

/// Filtered doc ids for `region`, best first, in hybrid mode.
async fn in_region(kb: &SqliteKnowledgeBase, region: &str) -> BTreeSet<String> {
    let filter = Filter::from_pairs(&[&format!("region={region}")]).unwrap();
    kb.retrieve(&RetrieveRequest::new("pool cleaning gutter dogs snow", 10).with_filter(filter))
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.doc_id)
        .collect()
}

#[tokio::test]
async fn filters_follow_metadata_changed_and_added_by_a_sync() {
    let kb = index().await;
    let set = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(
        in_region(&kb, "northeast").await,
        set(&["gutters", "pool-ne"])
    );
    // "gutters" moves region (its text, hence its chunk, is unchanged), a new document shares
    // the metadata text another one had, and "snow" is deleted with its metadata.
    let mut docs: Vec<IndexDocument> = corpus()
        .into_iter()
        .filter(|d| d.doc_id != "gutters" && d.doc_id != "snow")
        .collect();
    let mut moved = doc(
        "gutters",
        "Gutter cleaning in autumn under tall oak trees; downspouts flushed.",
        &[("region", "southwest"), ("doc_type", "catalogue")],
    );
    moved.content_hash.push_str("-moved");
    docs.push(moved);
    docs.push(doc(
        "pool-sw",
        "Pool cleaning for desert homes: filters, pumps and chlorine.",
        &[("region", "southwest"), ("doc_type", "catalogue")],
    ));
    kb.sync(&docs).await.unwrap();
    assert_eq!(in_region(&kb, "northeast").await, set(&["pool-ne"]));
    assert_eq!(
        in_region(&kb, "southwest").await,
        set(&["gutters", "pool", "pool-sw"])
    );
    assert_eq!(in_region(&kb, "midwest").await, set(&["dogs"]));
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

fn hierarchical_doc(id: &str, text: &str, settings: HierarchicalSettings) -> IndexDocument {
    let d = Document {
        doc_id: id.into(),
        source: format!("{id}.md"),
        text: text.into(),
        metadata: Metadata::from([(
            "doc_type".to_owned(),
            MetaValue::Text("past_message".into()),
        )]),
    };
    IndexDocument {
        doc_id: id.into(),
        source: d.source.clone(),
        content_hash: format!("{:x}", text.len()),
        chunks: ChunkingStrategy::Hierarchical(settings).chunk(&d),
    }
}

/// Two long documents whose children all mention "pool", so that a search for it matches many
/// children of every parent.
fn hierarchical_corpus() -> (Vec<IndexDocument>, HierarchicalSettings) {
    let settings = HierarchicalSettings {
        parent_max_tokens: 24,
        child_max_tokens: 6,
        overlap_tokens: 2,
    };
    let text = |topic: &str| {
        (0..12)
            .map(|i| format!("pool {topic} item{i} ready."))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let docs = vec![
        hierarchical_doc("a", &text("chlorine"), settings),
        hierarchical_doc("b", &text("heater"), settings),
        doc(
            "gutters",
            "Gutter cleaning in autumn.",
            &[("doc_type", "catalogue")],
        ),
    ];
    (docs, settings)
}

#[tokio::test]
async fn hierarchical_results_are_parents_once_each() {
    let (docs, _) = hierarchical_corpus();
    let parents: BTreeSet<String> = docs
        .iter()
        .flat_map(|d| &d.chunks)
        .filter_map(|c| c.parent.as_ref().map(|p| p.chunk_id.clone()))
        .collect();
    let children = docs.iter().map(|d| d.chunks.len()).sum::<usize>();
    assert!(
        children > parents.len() * 3,
        "{children} children, {parents:?}"
    );
    let kb = SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::new(64))).unwrap();
    let report = kb.sync(&docs).await.unwrap();
    assert_eq!(report.chunks_total, children);
    for mode in SearchMode::ALL {
        for k in [1, 2, 5, 20] {
            let hits = kb
                .retrieve(&RetrieveRequest::new("pool chlorine heater", k).with_mode(mode))
                .await
                .unwrap();
            let ids: Vec<&str> = hits.iter().map(|h| h.chunk_id.as_str()).collect();
            let unique: BTreeSet<&str> = ids.iter().copied().collect();
            assert_eq!(unique.len(), ids.len(), "{mode:?} k={k}: {ids:?}");
            // As many parents as asked for, up to all parents (the gutters chunk has no "pool",
            // but vector search may still return it).
            let hierarchical: Vec<_> = hits.iter().filter(|h| h.doc_id != "gutters").collect();
            assert!(
                hits.len() == k || hierarchical.len() == parents.len(),
                "{mode:?} k={k}: {ids:?}"
            );
            for h in hierarchical {
                assert!(
                    parents.contains(&h.chunk_id),
                    "{} is not a parent",
                    h.chunk_id
                );
                // The parent's text is returned, not the child's.
                let parent = docs
                    .iter()
                    .flat_map(|d| &d.chunks)
                    .find_map(|c| c.parent.as_ref().filter(|p| p.chunk_id == h.chunk_id))
                    .unwrap();
                assert_eq!(h.text, parent.text);
                assert_eq!(
                    h.metadata["doc_type"],
                    MetaValue::Text("past_message".into())
                );
            }
            let scores: Vec<f64> = hits.iter().map(|h| h.score).collect();
            assert!(
                scores.windows(2).all(|w| w[0] >= w[1]),
                "{mode:?}: {scores:?}"
            );
        }
    }
}

#[tokio::test]
async fn hierarchical_parent_scores_its_best_child() {
    let (docs, _) = hierarchical_corpus();
    let kb = SqliteKnowledgeBase::in_memory(Arc::new(HashingEmbedder::new(64))).unwrap();
    kb.sync(&docs).await.unwrap();
    // The child holding "item7" of document b is the best keyword match; its parent comes first
    // with the child's BM25 score.
    let hits = kb
        .retrieve(&RetrieveRequest::new("heater item7", 3).with_mode(SearchMode::Keyword))
        .await
        .unwrap();
    assert_eq!(hits[0].doc_id, "b");
    assert!(hits[0].text.contains("item7"), "{}", hits[0].text);
}

#[tokio::test]
async fn deleting_a_hierarchical_document_deletes_its_parents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.db");
    let (mut docs, settings) = hierarchical_corpus();
    let kb = SqliteKnowledgeBase::open(&path, Arc::new(HashingEmbedder::new(64))).unwrap();
    kb.sync(&docs).await.unwrap();
    docs.retain(|d| d.doc_id != "a");
    // Re-chunking b with other settings replaces its parents too.
    let b = docs.iter_mut().find(|d| d.doc_id == "b").unwrap();
    *b = hierarchical_doc(
        "b",
        "pool heater only now.",
        HierarchicalSettings {
            child_max_tokens: 3,
            ..settings
        },
    );
    let report = kb.sync(&docs).await.unwrap();
    assert_eq!((report.documents_deleted, report.documents_updated), (1, 1));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let parents: Vec<(String, String)> = conn
        .prepare("SELECT parent_id, text FROM kb_parents ORDER BY parent_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        parents,
        [("b#0".to_owned(), "pool heater only now.".to_owned())]
    );
    let hits = kb
        .retrieve(&RetrieveRequest::new("pool", 5).with_mode(SearchMode::Keyword))
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["b"]);
    assert_eq!(hits[0].chunk_id, "b#0");
}

#[tokio::test]
async fn an_index_from_before_hierarchical_chunking_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.db");
    {
        // The kb_chunks table as it was, without parent_id.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE kb_docs (doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, content_hash TEXT NOT NULL);
             CREATE TABLE kb_chunks (id INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE,
                 doc_id TEXT NOT NULL REFERENCES kb_docs(doc_id) ON DELETE CASCADE,
                 source TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL, embedding BLOB NOT NULL);",
        )
        .unwrap();
    }
    let kb = SqliteKnowledgeBase::open(&path, Arc::new(HashingEmbedder::new(64))).unwrap();
    let (docs, _) = hierarchical_corpus();
    kb.sync(&docs).await.unwrap();
    let hits = kb
        .retrieve(&RetrieveRequest::new("pool heater", 2))
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    // Reopening an upgraded index leaves it as it is.
    drop(kb);
    let again = SqliteKnowledgeBase::open(&path, Arc::new(HashingEmbedder::new(64))).unwrap();
    assert_eq!(
        again.chunk_count().unwrap(),
        docs.iter().map(|d| d.chunks.len()).sum::<usize>()
    );
}

#[tokio::test]
async fn fusion_weights_move_hybrid_towards_the_heavier_list() {
    let kb = index().await;
    assert_eq!(kb.fusion_weights(), FusionWeights::for_provider("hashing"));
    let req = RetrieveRequest::new("pool opening spring cover", 5);
    let list = |mode| {
        let req = req.clone().with_mode(mode);
        let kb = &kb;
        async move {
            kb.retrieve(&req)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.chunk_id)
                .collect::<Vec<_>>()
        }
    };
    let kw = list(SearchMode::Keyword).await;
    let vec = list(SearchMode::Vector).await;
    let mut kb = kb;
    // (keyword weight, vector weight): hybrid equals weighted RRF of the two lists.
    for (keyword, vector) in [(1.0, 1.0), (1.0, 3.0), (3.0, 1.0), (0.0, 1.0), (1.0, 0.0)] {
        kb.set_fusion_weights(FusionWeights { keyword, vector })
            .unwrap();
        let hybrid = kb.retrieve(&req).await.unwrap();
        let expected =
            weighted_reciprocal_rank_fusion(&[(keyword, kw.as_slice()), (vector, vec.as_slice())]);
        let got: Vec<(&str, f64)> = hybrid
            .iter()
            .map(|h| (h.chunk_id.as_str(), h.score))
            .collect();
        for ((g, gs), (e, es)) in got.iter().zip(&expected) {
            assert_eq!(g, e, "{keyword}/{vector}");
            assert!((gs - es).abs() < 1e-12);
        }
    }
    // Only the vector list: hybrid order is the vector order.
    kb.set_fusion_weights(FusionWeights {
        keyword: 0.0,
        vector: 1.0,
    })
    .unwrap();
    let hybrid: Vec<String> = kb
        .retrieve(&req)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.chunk_id)
        .collect();
    assert_eq!(hybrid[..vec.len().min(5)], vec[..vec.len().min(5)]);
    let err = kb
        .set_fusion_weights(FusionWeights {
            keyword: -1.0,
            vector: 1.0,
        })
        .unwrap_err();
    assert!(err.to_string().contains("non-negative"), "{err}");
}

#[test]
fn ingestion_json_chunking_strategies() {
    let dir = tempfile::tempdir().unwrap();
    let config = |chunking: &str| {
        format!(
            r#"{{"inclusionPrefixes": ["docs/"], "vectorIngestionConfiguration": {{"chunkingConfiguration": {chunking}}}}}"#
        )
    };
    // (chunkingConfiguration, expected strategy or error fragment)
    let cases: &[(&str, Result<ChunkingStrategy, &str>)] = &[
        (
            r#"{"chunkingStrategy": "FIXED_SIZE", "fixedSizeChunkingConfiguration": {"maxTokens": 50, "overlapPercentage": 10}}"#,
            Ok(ChunkingStrategy::FixedSize(ChunkingSettings {
                max_tokens: 50,
                overlap_percentage: 10,
            })),
        ),
        (
            r#"{"chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": {"levelConfigurations": [{"maxTokens": 300}, {"maxTokens": 40}], "overlapTokens": 10}}"#,
            Ok(ChunkingStrategy::Hierarchical(HierarchicalSettings {
                parent_max_tokens: 300,
                child_max_tokens: 40,
                overlap_tokens: 10,
            })),
        ),
        (
            r#"{"chunkingStrategy": "NONE"}"#,
            Ok(ChunkingStrategy::None),
        ),
        (
            r#"{"chunkingStrategy": "FIXED_SIZE"}"#,
            Err("needs fixedSizeChunkingConfiguration"),
        ),
        (
            r#"{"chunkingStrategy": "HIERARCHICAL"}"#,
            Err("needs hierarchicalChunkingConfiguration"),
        ),
        (
            r#"{"chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": {"levelConfigurations": [{"maxTokens": 300}], "overlapTokens": 10}}"#,
            Err("exactly 2 levels"),
        ),
        (
            r#"{"chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": {"levelConfigurations": [{"maxTokens": 40}, {"maxTokens": 300}], "overlapTokens": 10}}"#,
            Err("larger than the parent"),
        ),
        (
            r#"{"chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": {"levelConfigurations": [{"maxTokens": 300}, {"maxTokens": 40}], "overlapTokens": 40}}"#,
            Err("overlapTokens"),
        ),
        (
            r#"{"chunkingStrategy": "SEMANTIC", "semanticChunkingConfiguration": {"maxTokens": 300, "bufferSize": 1, "breakpointPercentileThreshold": 90}}"#,
            Ok(ChunkingStrategy::Semantic(SemanticSettings {
                max_tokens: 300,
                buffer_size: 1,
                breakpoint_percentile_threshold: 90,
            })),
        ),
        (
            r#"{"chunkingStrategy": "SEMANTIC"}"#,
            Err("SEMANTIC needs semanticChunkingConfiguration"),
        ),
        (
            r#"{"chunkingStrategy": "SEMANTIC", "semanticChunkingConfiguration": {"maxTokens": 300, "bufferSize": 2, "breakpointPercentileThreshold": 90}}"#,
            Err("bufferSize must be 0 or 1"),
        ),
        (
            r#"{"chunkingStrategy": "SEMANTIC", "semanticChunkingConfiguration": {"maxTokens": 300, "bufferSize": 0, "breakpointPercentileThreshold": 40}}"#,
            Err("breakpointPercentileThreshold must be between 50 and 99"),
        ),
        (
            r#"{"chunkingStrategy": "SEMANTIC", "semanticChunkingConfiguration": {"maxTokens": 0, "bufferSize": 0, "breakpointPercentileThreshold": 95}}"#,
            Err("maxTokens must be between 1 and 8192"),
        ),
        (
            r#"{"chunkingStrategy": "CUSTOM"}"#,
            Err("`CUSTOM` is not supported locally"),
        ),
    ];
    for (chunking, expected) in cases {
        std::fs::write(dir.path().join("ingestion.json"), config(chunking)).unwrap();
        let got = upsell_sqlite::read_settings(dir.path()).and_then(|s| s.chunking());
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(&got, want, "{chunking}"),
            (Err(e), Err(needle)) => {
                let e = e.to_string();
                assert!(
                    e.contains(needle) && e.contains("ingestion.json"),
                    "{chunking}: {e}"
                );
            }
            (got, _) => panic!("{chunking}: unexpected {got:?}"),
        }
    }
}

#[test]
fn load_documents_chunks_hierarchically_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    let words: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
    std::fs::write(dir.path().join("docs/a.md"), words.join(" ")).unwrap();
    let write = |chunking: &str| {
        std::fs::write(
            dir.path().join("ingestion.json"),
            format!(
                r#"{{"vectorIngestionConfiguration": {{"chunkingConfiguration": {chunking}}}}}"#
            ),
        )
        .unwrap();
    };
    write(
        r#"{"chunkingStrategy": "FIXED_SIZE", "fixedSizeChunkingConfiguration": {"maxTokens": 300, "overlapPercentage": 20}}"#,
    );
    let fixed = load_documents(dir.path()).unwrap();
    assert_eq!(fixed[0].chunks.len(), 1);
    assert!(fixed[0].chunks[0].parent.is_none());
    write(
        r#"{"chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": {"levelConfigurations": [{"maxTokens": 30}, {"maxTokens": 10}], "overlapTokens": 5}}"#,
    );
    let hier = load_documents(dir.path()).unwrap();
    // Parents 0..30 and 25..50; children of 10 words stepping by 5 inside each.
    let ids: Vec<&str> = hier[0].chunks.iter().map(|c| c.chunk_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "docs/a#0.0",
            "docs/a#0.1",
            "docs/a#0.2",
            "docs/a#0.3",
            "docs/a#0.4",
            "docs/a#1.0",
            "docs/a#1.1",
            "docs/a#1.2",
            "docs/a#1.3"
        ]
    );
    // Changing the strategy changes every document's hash, so the next ingest re-embeds it.
    assert_ne!(fixed[0].content_hash, hier[0].content_hash);
}

/// The `ChunkingConfiguration` block of an `AWS::Bedrock::DataSource`, as sam/template.yaml
/// writes it, for a strategy.
fn cloudformation_chunking(strategy: &ChunkingStrategy) -> String {
    let head = "        ChunkingConfiguration:\n          ChunkingStrategy: ";
    match strategy {
        ChunkingStrategy::None => format!("{head}NONE\n"),
        ChunkingStrategy::FixedSize(s) => format!(
            "{head}FIXED_SIZE\n          FixedSizeChunkingConfiguration:\n            MaxTokens: {}\n            OverlapPercentage: {}\n",
            s.max_tokens, s.overlap_percentage
        ),
        ChunkingStrategy::Hierarchical(h) => format!(
            "{head}HIERARCHICAL\n          HierarchicalChunkingConfiguration:\n            LevelConfigurations:\n              - MaxTokens: {}\n              - MaxTokens: {}\n            OverlapTokens: {}\n",
            h.parent_max_tokens, h.child_max_tokens, h.overlap_tokens
        ),
        ChunkingStrategy::Semantic(s) => format!(
            "{head}SEMANTIC\n          SemanticChunkingConfiguration:\n            BreakpointPercentileThreshold: {}\n            BufferSize: {}\n            MaxTokens: {}\n",
            s.breakpoint_percentile_threshold, s.buffer_size, s.max_tokens
        ),
    }
}

#[test]
fn sam_data_sources_chunk_like_ingestion_json() {
    let root = kb_root();
    let strategy = upsell_sqlite::read_settings(&root)
        .unwrap()
        .chunking()
        .unwrap();
    let template_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sam/template.yaml");
    let template = std::fs::read_to_string(&template_path).unwrap();
    let blocks = template.matches(" ChunkingConfiguration:\n").count();
    assert!(blocks >= 1, "no data source in {}", template_path.display());
    let expected = cloudformation_chunking(&strategy);
    assert_eq!(
        template.matches(&expected).count(),
        blocks,
        "every ChunkingConfiguration in sam/template.yaml must be\n{expected}"
    );
}

/// Counts the texts it embeds (hashing vectors).
struct CountingEmbedder {
    inner: HashingEmbedder,
    texts: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl upsell_core::kb::Embedder for CountingEmbedder {
    fn info(&self) -> upsell_core::kb::EmbedderInfo {
        self.inner.info()
    }

    async fn embed(
        &self,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, upsell_core::ports::PortError> {
        self.texts
            .fetch_add(texts.len(), std::sync::atomic::Ordering::SeqCst);
        self.inner.embed(texts).await
    }
}

#[tokio::test]
async fn semantic_chunking_embeds_sentences_of_new_and_changed_documents_only() {
    use upsell_sqlite::load_sources;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    std::fs::write(
        dir.path().join("ingestion.json"),
        r#"{"vectorIngestionConfiguration": {"chunkingConfiguration": {"chunkingStrategy": "SEMANTIC", "semanticChunkingConfiguration": {"maxTokens": 12, "bufferSize": 1, "breakpointPercentileThreshold": 50}}}}"#,
    )
    .unwrap();
    let pool = "# Pool\n## Context\nThe pool water turned green. Algae covers the pool steps. \
                The filter pump is old.\n## Message\nOur weekly pool cleaning balances the water.";
    let lawn = "# Lawn\n## Context\nThe lawn has bare patches. Dogs run along the fence.";
    std::fs::write(dir.path().join("docs/pool.md"), pool).unwrap();
    std::fs::write(dir.path().join("docs/lawn.md"), lawn).unwrap();

    // The embedder is needed to chunk: load_documents says so, load_sources defers it.
    let err = load_documents(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("SEMANTIC chunking needs the embedder"),
        "{err}"
    );
    let sources = load_sources(dir.path()).unwrap();

    let embedder = Arc::new(CountingEmbedder {
        inner: HashingEmbedder::default(),
        texts: Default::default(),
    });
    let kb = SqliteKnowledgeBase::in_memory(embedder.clone()).unwrap();
    let r = kb.sync_sources(&sources).await.unwrap();
    // pool: 4 sentences (headings joined to the next one), lawn: 2.
    assert_eq!(r.sentences_embedded, 6);
    assert_eq!(r.documents_added, 2);
    assert_eq!(
        embedder.texts.load(std::sync::atomic::Ordering::SeqCst),
        r.sentences_embedded + r.chunks_embedded
    );
    let hits = kb
        .retrieve(
            &RetrieveRequest::new("green algae in the pool", 10).with_mode(SearchMode::Keyword),
        )
        .await
        .unwrap();
    assert!(hits[0].chunk_id.starts_with("docs/pool#"), "{hits:?}");
    for h in &hits {
        // Sections are hard boundaries and chunks hold at most maxTokens words.
        assert!(h.text.split_whitespace().count() <= 12, "{h:?}");
        assert!(
            !(h.text.contains("Context") && h.text.contains("Message")),
            "{h:?}"
        );
    }

    // Unchanged: nothing embedded. Changed: only that document's sentences and chunks.
    let r = kb.sync_sources(&sources).await.unwrap();
    assert_eq!(
        (
            r.documents_unchanged,
            r.sentences_embedded,
            r.chunks_embedded
        ),
        (2, 0, 0)
    );
    std::fs::write(
        dir.path().join("docs/lawn.md"),
        format!("{lawn} Grass will not grow."),
    )
    .unwrap();
    let r = kb
        .sync_sources(&load_sources(dir.path()).unwrap())
        .await
        .unwrap();
    assert_eq!((r.documents_updated, r.documents_unchanged), (1, 1));
    assert_eq!(r.sentences_embedded, 3);
}

/// Documents of several sentences: "dogs" says what the query asks in one sentence among
/// unrelated ones, so its whole-chunk vector is diluted while one of its sentences is not.
fn rerank_corpus() -> Vec<IndexDocument> {
    vec![
        doc(
            "dogs",
            "Customer for five years. Gutters cleaned every autumn. Snow removal in winter. \
             Pays by card. Prefers email. Account notes: the new puppy digs holes in the lawn. \
             Windows washed in spring. Deck stained last year. Two cars in the driveway.",
            &[("doc_type", "past_message")],
        ),
        doc(
            "lawn",
            "New lawn seed. Holes in the lawn filled. A puppy-safe lawn feed.",
            &[("doc_type", "past_message")],
        ),
        doc(
            "pool",
            "Pool opening. The pool cover comes off and the pump restarts.",
            &[("doc_type", "catalogue")],
        ),
        doc(
            "puppy",
            "Puppy training classes. Dogs and puppies welcome.",
            &[("doc_type", "catalogue")],
        ),
    ]
}

/// With re-ranking on, results are the first stage's best `candidates`, ordered by the best
/// sentence similarity plus a quarter of the second best, and carry that score.
#[tokio::test]
async fn reranking_orders_candidates_by_their_best_sentences() {
    let embedder = Arc::new(HashingEmbedder::new(256));
    let query = "new puppy digs holes in the lawn";
    let plain = SqliteKnowledgeBase::in_memory(embedder.clone()).unwrap();
    assert_eq!(plain.rerank(), None, "hashing re-ranks only when asked");
    let report = plain.sync(&rerank_corpus()).await.unwrap();
    assert_eq!(report.passages_embedded, 0);
    let kb = SqliteKnowledgeBase::in_memory(embedder.clone())
        .unwrap()
        .with_rerank(Some(RerankSettings { candidates: 3 }))
        .unwrap();
    let report = kb.sync(&rerank_corpus()).await.unwrap();
    let passages: usize = rerank_corpus()
        .iter()
        .map(|d| rerank_passages(&d.chunks[0].text).len())
        .sum();
    assert_eq!(report.passages_embedded, passages);
    for mode in SearchMode::ALL {
        let first = plain
            .retrieve(&RetrieveRequest::new(query, 3).with_mode(mode))
            .await
            .unwrap();
        for k in [1, 2, 3, 4] {
            let hits = kb
                .retrieve(&RetrieveRequest::new(query, k).with_mode(mode))
                .await
                .unwrap();
            // The candidates are the first stage's top max(k, 3).
            let pool = plain
                .retrieve(&RetrieveRequest::new(query, k.max(3)).with_mode(mode))
                .await
                .unwrap();
            assert_eq!(hits.len(), k.min(pool.len()), "{mode:?} k={k}");
            let expected = |text: &str| {
                let q = embedder.embed_one(query);
                let sims: Vec<f32> = rerank_passages(text)
                    .iter()
                    .map(|p| upsell_core::kb::dot(&q, &embedder.embed_one(p)))
                    .collect();
                f64::from(sentence_rerank_score(&sims))
            };
            let mut want: Vec<(String, f64)> = pool
                .iter()
                .map(|h| (h.chunk_id.clone(), expected(&h.text)))
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1));
            want.truncate(k);
            let got: Vec<(String, f64)> =
                hits.iter().map(|h| (h.chunk_id.clone(), h.score)).collect();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.0, w.0, "{mode:?} k={k}: {got:?} vs {want:?}");
                assert!(
                    (g.1 - w.1).abs() < 1e-5,
                    "{mode:?} k={k}: {got:?} vs {want:?}"
                );
            }
        }
        if mode == SearchMode::Vector {
            // The diluted document is not the first stage's best, but its sentence is.
            assert_ne!(first[0].doc_id, "dogs", "{first:?}");
        }
        let top = kb
            .retrieve(&RetrieveRequest::new(query, 1).with_mode(mode))
            .await
            .unwrap();
        if mode != SearchMode::Keyword || first.iter().any(|h| h.doc_id == "dogs") {
            assert_eq!(top[0].doc_id, "dogs", "{mode:?}");
        }
    }
}

/// Passages exist only while re-ranking is on: switching it re-embeds everything, an index
/// without passages answers unre-ranked, and deleting a document deletes its passages.
#[tokio::test]
async fn rerank_passages_follow_the_setting_and_the_documents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.db");
    let embedder = Arc::new(HashingEmbedder::new(64));
    let count = || {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM kb_passages", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
    };
    let on = Some(RerankSettings { candidates: 4 });
    let plain = SqliteKnowledgeBase::open(&path, embedder.clone()).unwrap();
    plain.sync(&rerank_corpus()).await.unwrap();
    assert_eq!(count(), 0);
    let request = RetrieveRequest::new("new puppy digs holes", 2).with_mode(SearchMode::Vector);
    let unranked = plain.retrieve(&request).await.unwrap();
    // Re-ranking asked for on an index without passages: the first stage's answer.
    let asked = SqliteKnowledgeBase::open(&path, embedder.clone())
        .unwrap()
        .with_rerank(on)
        .unwrap();
    assert_eq!(asked.retrieve(&request).await.unwrap(), unranked);
    assert!(!asked.has_passages().unwrap());
    // Syncing with re-ranking on re-embeds every document, even unchanged ones.
    let report = asked.sync(&rerank_corpus()).await.unwrap();
    assert_eq!(report.documents_added, 4);
    assert_eq!(report.documents_unchanged, 0);
    let all = count();
    assert!(all >= 8, "{all} passages");
    assert!(asked.has_passages().unwrap());
    let reranked = asked.retrieve(&request).await.unwrap();
    assert_eq!(reranked[0].doc_id, "dogs");
    assert_ne!(reranked, unranked);
    // Unchanged documents are kept, a deleted one takes its passages with it.
    let mut docs = rerank_corpus();
    let dogs = docs.remove(0);
    let report = asked.sync(&docs).await.unwrap();
    assert_eq!(
        (report.documents_unchanged, report.documents_deleted),
        (3, 1)
    );
    assert_eq!(report.passages_embedded, 0);
    assert_eq!(
        count() as usize,
        all as usize - rerank_passages(&dogs.chunks[0].text).len()
    );
    // Turning re-ranking off again drops the passages.
    let report = plain.sync(&docs).await.unwrap();
    assert_eq!(report.documents_added, 3);
    assert_eq!(count(), 0);
    assert!(
        SqliteKnowledgeBase::in_memory(embedder)
            .unwrap()
            .with_rerank(Some(RerankSettings { candidates: 0 }))
            .is_err()
    );
}
