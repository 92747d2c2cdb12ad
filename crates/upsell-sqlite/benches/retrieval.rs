//! Retrieval speed at scale: knowledge-base queries over 100,000 chunks (keyword, vector,
//! hybrid) and similar-customer search over 100,000 customers, with p50/p99 printed besides
//! criterion's estimates. Run: `cargo bench -p upsell-sqlite --bench retrieval`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use upsell_core::events::{Region, Service};
use upsell_core::features::{CustomerEmbedding, EMBEDDING_VERSION, SimilarQuery, embedding_len};
use upsell_core::kb::{
    ChunkingSettings, Document, HashingEmbedder, MetaValue, Metadata, RetrieveRequest, SearchMode,
    chunk_document,
};
use upsell_sqlite::features::SqliteFeatureStore;
use upsell_sqlite::kb::{IndexDocument, SqliteKnowledgeBase};

const N: usize = 100_000;
const WORDS: &[&str] = &[
    "lawn",
    "mowing",
    "pool",
    "cleaning",
    "gutter",
    "leaves",
    "snow",
    "driveway",
    "dog",
    "puppy",
    "pest",
    "ants",
    "mice",
    "wasps",
    "mosquito",
    "tick",
    "tree",
    "branch",
    "storm",
    "roof",
    "window",
    "glass",
    "pressure",
    "deck",
    "stain",
    "furnace",
    "cooling",
    "filter",
    "allergy",
    "sprinkler",
    "valve",
    "frost",
    "water",
    "bill",
    "weeds",
    "clover",
    "seed",
    "clay",
    "moss",
    "fence",
    "patio",
    "party",
    "wedding",
    "baby",
    "retired",
    "travel",
    "rental",
    "carpet",
    "ducts",
    "vents",
    "spring",
    "summer",
    "autumn",
    "winter",
    "weekly",
    "monthly",
    "discount",
    "customer",
    "family",
    "garden",
    "yard",
    "backyard",
    "shade",
    "sunny",
    "price",
    "visit",
];
const REGIONS: &[&str] = &[
    "northeast",
    "southeast",
    "midwest",
    "southwest",
    "west",
    "northwest",
];

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    (at(0.50), at(0.99))
}

fn synthetic_docs(rng: &mut ChaCha8Rng) -> Vec<IndexDocument> {
    (0..N)
        .map(|i| {
            let len = rng.random_range(40..90);
            let text: Vec<&str> = (0..len)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect();
            let mut metadata = Metadata::new();
            metadata.insert(
                "region".into(),
                MetaValue::Text(REGIONS[i % REGIONS.len()].into()),
            );
            metadata.insert("doc_type".into(), MetaValue::Text("past_message".into()));
            let doc = Document {
                doc_id: format!("d{i}"),
                source: format!("d{i}.md"),
                text: text.join(" "),
                metadata,
            };
            IndexDocument {
                doc_id: doc.doc_id.clone(),
                source: doc.source.clone(),
                content_hash: format!("{i}"),
                chunks: chunk_document(&doc, ChunkingSettings::default()),
            }
        })
        .collect()
}

fn kb(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let docs = synthetic_docs(&mut rng);
    let dir = tempfile::tempdir().unwrap();
    let embedder = Arc::new(HashingEmbedder::new(384));
    let index = SqliteKnowledgeBase::open(&dir.path().join("kb.db"), embedder.clone()).unwrap();
    let started = Instant::now();
    let report = rt.block_on(index.sync(&docs)).unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "ingest: {} chunks (hashing, 384 dims) in {secs:.1}s = {:.0} chunks/s",
        report.chunks_total,
        report.chunks_total as f64 / secs
    );
    let queries: Vec<String> = (0..200)
        .map(|_| {
            (0..6)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let vectors: Vec<Vec<f32>> = queries.iter().map(|q| embedder.embed_one(q)).collect();
    // Warm the in-memory vector cache.
    index
        .retrieve_with_vector(&RetrieveRequest::new("pool", 5), Some(&vectors[0]))
        .unwrap();
    for (mode, filtered) in [
        (SearchMode::Keyword, false),
        (SearchMode::Vector, false),
        (SearchMode::Hybrid, false),
        (SearchMode::Hybrid, true),
    ] {
        let name = format!(
            "kb_{}{}_100k",
            mode.as_str(),
            if filtered { "_filtered" } else { "" }
        );
        let req = |q: &str| {
            let r = RetrieveRequest::new(q, 5).with_mode(mode);
            if filtered {
                r.with_filter(upsell_core::kb::Filter::from_pairs(&["region=west"]).unwrap())
            } else {
                r
            }
        };
        let mut samples = Vec::new();
        for (q, v) in queries.iter().zip(&vectors) {
            let t = Instant::now();
            let hits = index.retrieve_with_vector(&req(q), Some(v)).unwrap();
            samples.push(t.elapsed());
            assert!(!hits.is_empty());
        }
        let (p50, p99) = percentiles(samples);
        eprintln!(
            "{name}: p50 {:.2} ms, p99 {:.2} ms (200 queries, k=5)",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        let mut i = 0;
        c.bench_function(&name, |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                index
                    .retrieve_with_vector(&req(&queries[i]), Some(&vectors[i]))
                    .unwrap()
            })
        });
    }
}

fn similar(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let store = SqliteFeatureStore::in_memory().unwrap();
    let dims = embedding_len();
    let embeddings: Vec<CustomerEmbedding> = (0..N)
        .map(|i| {
            let region = Region::ALL[i % Region::ALL.len()];
            let services: Vec<Service> = Service::ALL
                .into_iter()
                .filter(|_| rng.random_bool(0.3))
                .collect();
            let mut vector: Vec<f32> = (0..10).map(|_| rng.random_range(-2.0..2.0)).collect();
            vector.extend(
                Region::ALL
                    .iter()
                    .map(|r| if *r == region { 1.0 } else { 0.0 }),
            );
            vector.extend(
                Service::ALL
                    .iter()
                    .map(|s| if services.contains(s) { 0.5 } else { 0.0 }),
            );
            assert_eq!(vector.len(), dims);
            CustomerEmbedding {
                customer_id: format!("cust-{i:06}"),
                embedding_version: EMBEDDING_VERSION.into(),
                as_of: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
                region: Some(region),
                services_bought: services,
                vector,
            }
        })
        .collect();
    store.put_batch(&[], &embeddings).unwrap();
    let query = |i: usize, filtered: bool| SimilarQuery {
        customer_id: format!("cust-{:06}", (i * 7919) % N),
        k: 10,
        region: filtered.then_some(Region::West),
        service: filtered.then_some(Service::PoolService),
    };
    store.similar_sync(&query(0, false)).unwrap();
    for filtered in [false, true] {
        let name = format!(
            "similar_customers{}_100k",
            if filtered { "_filtered" } else { "" }
        );
        let mut samples = Vec::new();
        for i in 0..200 {
            let t = Instant::now();
            let hits = store.similar_sync(&query(i, filtered)).unwrap();
            samples.push(t.elapsed());
            assert_eq!(hits.len(), 10);
        }
        let (p50, p99) = percentiles(samples);
        eprintln!(
            "{name}: p50 {:.2} ms, p99 {:.2} ms (200 queries, k=10)",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        let mut i = 0;
        c.bench_function(&name, |b| {
            b.iter(|| {
                i += 1;
                store.similar_sync(&query(i, filtered)).unwrap()
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = similar, kb
}
criterion_main!(benches);
