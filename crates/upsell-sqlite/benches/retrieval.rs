//! Retrieval speed at scale: knowledge-base queries over 100,000 chunks (keyword, vector,
//! hybrid) and similar-customer search over 100,000 customers, with p50/p99 printed besides
//! criterion's estimates. Run: `cargo bench -p upsell-sqlite --bench retrieval`.
//!
//! The knowledge-base corpus is derived from the real documents in knowledge-base/ (names,
//! regions, numbers and sentences varied) and the queries are the labelled ones in
//! knowledge-base/eval/, so term statistics look like production rather than a toy vocabulary.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use upsell_core::events::{Region, Service};
use upsell_core::features::{CustomerEmbedding, EMBEDDING_VERSION, SimilarQuery, embedding_len};
use upsell_core::kb::{
    Chunk, ChunkingSettings, Document, EvalQuery, HashingEmbedder, MetaValue, RerankSettings,
    RetrieveRequest, SearchMode, chunk_document,
};
use upsell_sqlite::SqliteFeatureStore;
use upsell_sqlite::load_documents;
use upsell_sqlite::{IndexDocument, SqliteKnowledgeBase};

const N: usize = 100_000;
const REGIONS: &[&str] = &[
    "northeast",
    "southeast",
    "midwest",
    "southwest",
    "west",
    "northwest",
];
const NAMES: &[&str] = &[
    "Tom", "Ana", "Priya", "Marcus", "Dana", "Luis", "Grace", "Omar", "Hannah", "Wei", "Sofia",
    "Jamal", "Erin", "Kenji", "Maya", "Carlos", "Fatima", "Noah", "Leah", "Ivan", "Zoe", "Ravi",
    "Chloe", "Diego", "Aisha", "Ben", "Nora", "Tariq", "Lucy", "Mateo", "Ingrid", "Samir", "Rosa",
    "Eli", "Yuki", "Paul", "Amara", "Finn", "Keiko", "Owen",
];
const KB_DIR_ENV: &str = "UPSELL_KB_DIR";

/// CPU time used by this process so far (all threads, user + system), from /proc/self/stat;
/// `None` where that file does not exist. Unlike wall time it barely moves with machine load.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture Rust targets.
    Some(Duration::from_millis(ticks * 10))
}

/// Prints the p50 and p99 of `samples` as `name: p50 .. ms, p99 .. ms (N queries, k=K)`, then
/// `extra`.
fn report_latency(name: &str, mut samples: Vec<Duration>, k: usize, extra: &str) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    eprintln!(
        "{name}: p50 {:.2} ms, p99 {:.2} ms ({} queries, k={k}){extra}",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.len()
    );
}

/// The repository's knowledge-base/ folder (override with `UPSELL_KB_DIR`).
fn kb_dir() -> PathBuf {
    std::env::var_os(KB_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../knowledge-base"))
}

/// Sentences (and headings) of a text, each kept with its trailing punctuation.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut start = 0;
        for (i, _) in line.match_indices(". ") {
            out.push(line[start..=i].to_owned());
            start = i + 2;
        }
        out.push(line[start..].to_owned());
    }
    out
}

/// Replaces every digit with a random one (same shape: "$8,333.30" stays a price).
fn vary_numbers(s: &str, rng: &mut ChaCha8Rng) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                char::from(b'0' + rng.random_range(0..10u8))
            } else {
                c
            }
        })
        .collect()
}

/// 100,000 chunks derived from the real knowledge base, so that vocabulary, document
/// frequencies and chunk lengths look like production: each synthetic document starts from a
/// real chunk, swaps about a third of its sentences for sentences of other documents of the
/// same type, and substitutes customer names, regions and numbers. Metadata follows the base
/// document (with the substituted region).
fn realistic_docs(rng: &mut ChaCha8Rng) -> Vec<IndexDocument> {
    let real = load_documents(&kb_dir()).unwrap_or_else(|e| {
        panic!(
            "the KB benchmark derives its corpus from knowledge-base/ ({}): {e}",
            kb_dir().display()
        )
    });
    let base: Vec<&Chunk> = real.iter().flat_map(|d| &d.chunks).collect();
    let doc_type = |c: &Chunk| {
        c.metadata
            .get("doc_type")
            .and_then(MetaValue::as_text)
            .unwrap_or("")
            .to_owned()
    };
    let mut pools: std::collections::HashMap<String, Vec<String>> = Default::default();
    for c in &base {
        pools
            .entry(doc_type(c))
            .or_default()
            .extend(sentences(&c.text));
    }
    (0..N)
        .map(|i| {
            let b = base[rng.random_range(0..base.len())];
            let pool = &pools[&doc_type(b)];
            let region = REGIONS[rng.random_range(0..REGIONS.len())];
            let name = NAMES[rng.random_range(0..NAMES.len())];
            let mut text = Vec::new();
            for s in sentences(&b.text) {
                let s = if !s.starts_with('#') && rng.random_bool(0.35) {
                    pool[rng.random_range(0..pool.len())].clone()
                } else {
                    s
                };
                let mut s = vary_numbers(&s, rng);
                for r in REGIONS {
                    s = s.replace(r, region);
                }
                if let Some(rest) = s.strip_prefix("Hi ")
                    && let Some((_, tail)) = rest.split_once(',')
                {
                    s = format!("Hi {name},{tail}");
                }
                text.push(s);
            }
            let mut metadata = b.metadata.clone();
            if metadata.contains_key("region") {
                metadata.insert("region".into(), MetaValue::Text(region.into()));
            }
            let doc = Document {
                doc_id: format!("bench/{i:06}"),
                source: format!("bench/{i:06}.md"),
                text: text.join("\n"),
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
    let docs = realistic_docs(&mut rng);
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
    let started = Instant::now();
    index
        .retrieve_with_vector(
            &RetrieveRequest::new("pool", 5),
            Some(&embedder.embed_one("pool")),
        )
        .unwrap();
    eprintln!(
        "first query after ingest (loads the in-memory index): {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let eval = std::fs::read_to_string(kb_dir().join("eval/queries.jsonl")).unwrap();
    let eval: Vec<EvalQuery> = eval
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let queries: Vec<String> = eval
        .iter()
        .cycle()
        .take(200)
        .map(|q| q.query.clone())
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
                r.with_filter(
                    upsell_core::kb::Filter::from_pairs(&["doc_type=past_message", "region=west"])
                        .unwrap(),
                )
            } else {
                r
            }
        };
        let mut samples = Vec::new();
        let cpu_before = cpu_time();
        for (q, v) in queries.iter().zip(&vectors) {
            let t = Instant::now();
            let hits = index.retrieve_with_vector(&req(q), Some(v)).unwrap();
            samples.push(t.elapsed());
            assert!(!hits.is_empty());
        }
        let cpu = cpu_before
            .zip(cpu_time())
            .map(|(a, b)| format!(", CPU {:.2} ms/query", (b - a).as_secs_f64() * 1e3 / 200.0))
            .unwrap_or_default();
        report_latency(&name, samples, 5, &cpu);
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
    drop(index);
    vec0(c, &dir.path().join("kb.db"), &vectors);
    rerank(c, &rt, &embedder, &queries, &vectors);
}

/// The cost of the second stage (re-ranking the best 20 by their stored sentence vectors): it
/// reads and scores the passages of 20 units whatever the index size, so it is measured on the
/// real knowledge base (storing a vector per sentence of 100,000 synthetic chunks would take
/// gigabytes), hybrid with and without re-ranking on the same index.
fn rerank(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    embedder: &Arc<HashingEmbedder>,
    queries: &[String],
    vectors: &[Vec<f32>],
) {
    let docs = load_documents(&kb_dir()).unwrap();
    let settings = RerankSettings {
        candidates: RerankSettings::DEFAULT_CANDIDATES,
    };
    let mut index = SqliteKnowledgeBase::in_memory(embedder.clone())
        .unwrap()
        .with_rerank(Some(settings))
        .unwrap();
    let report = rt.block_on(index.sync(&docs)).unwrap();
    eprintln!(
        "re-ranking index: {} chunks, {} passages",
        report.chunks_total, report.passages_embedded
    );
    for on in [false, true] {
        index.set_rerank(on.then_some(settings)).unwrap();
        let name = format!("kb_hybrid{}_real", if on { "_rerank20" } else { "" });
        let mut samples = Vec::new();
        for (q, v) in queries.iter().zip(vectors) {
            let t = Instant::now();
            let hits = index
                .retrieve_with_vector(&RetrieveRequest::new(q, 5), Some(v))
                .unwrap();
            samples.push(t.elapsed());
            assert_eq!(hits.len(), 5);
        }
        report_latency(&name, samples, 5, "");
        let mut i = 0;
        c.bench_function(&name, |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                index
                    .retrieve_with_vector(&RetrieveRequest::new(&queries[i], 5), Some(&vectors[i]))
                    .unwrap()
            })
        });
    }
}

/// Registers sqlite-vec for every connection opened afterwards.
#[allow(unsafe_code)]
fn register_sqlite_vec() {
    // SAFETY: `sqlite3_vec_init` is the extension's entry point with the signature SQLite expects
    // of an auto-extension (db, error message, API routines); the transmute only restores that
    // signature, which the crate's `extern` declaration leaves out. Registration happens before
    // the connection that uses it is opened.
    unsafe {
        rusqlite::ffi::sqlite3_auto_extension(Some(std::mem::transmute::<
            *const (),
            unsafe extern "C" fn(
                *mut rusqlite::ffi::sqlite3,
                *mut *mut std::os::raw::c_char,
                *const rusqlite::ffi::sqlite3_api_routines,
            ) -> std::os::raw::c_int,
        >(
            sqlite_vec::sqlite3_vec_init as *const ()
        )));
    }
}

/// The same vector search with sqlite-vec's `vec0` (exact KNN in C), for comparison with the
/// Rust scan over the in-memory matrix.
fn vec0(c: &mut Criterion, kb_db: &Path, vectors: &[Vec<f32>]) {
    register_sqlite_vec();
    let conn = rusqlite::Connection::open(kb_db.with_file_name("vec0.db")).unwrap();
    let version: String = conn
        .query_row("SELECT vec_version()", [], |r| r.get(0))
        .unwrap();
    let started = Instant::now();
    conn.execute_batch(&format!(
        "ATTACH '{}' AS kb;
         CREATE VIRTUAL TABLE v USING vec0(embedding float[384]);
         INSERT INTO v(rowid, embedding) SELECT id, embedding FROM kb.kb_chunks;",
        kb_db.display()
    ))
    .unwrap();
    eprintln!(
        "vec0 ({version}) load: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let blob = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut stmt = conn
        .prepare("SELECT rowid, distance FROM v WHERE embedding MATCH ?1 AND k = 5")
        .unwrap();
    let mut run = |v: &[f32]| {
        stmt.query_map([blob(v)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
    };
    let mut samples = Vec::new();
    for v in vectors {
        let t = Instant::now();
        assert_eq!(run(v).len(), 5);
        samples.push(t.elapsed());
    }
    report_latency("kb_vector_vec0_100k", samples, 5, "");
    let mut i = 0;
    c.bench_function("kb_vector_vec0_100k", |b| {
        b.iter(|| {
            i = (i + 1) % vectors.len();
            run(&vectors[i])
        })
    });
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
        report_latency(&name, samples, 10, "");
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
