//! Embedding throughput of all-MiniLM-L6-v2 on the CPU: short queries and whole past messages
//! from knowledge-base/ (`UPSELL_KB_DIR`, default the workspace's), in batches of 32.
//! `cargo bench -p upsell-embed`; prints why and stops when the model is not installed.

use std::path::PathBuf;

use criterion::{Criterion, Throughput};
use upsell_embed::MiniLmEmbedder;

fn past_messages(n: usize) -> Vec<String> {
    let dir = std::env::var_os("UPSELL_KB_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../knowledge-base"),
        PathBuf::from,
    );
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("past-messages"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "md"));
    paths.sort();
    paths
        .iter()
        .take(n)
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

fn main() {
    let model = match MiniLmEmbedder::from_env() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipping the embedding benchmark: {e}");
            return;
        }
    };
    let queries: Vec<String> = (0..64)
        .map(|i| {
            format!(
                "customer {i} says the {} needs attention before {}",
                ["lawn", "pool", "gutter", "hedge"][i % 4],
                ["spring", "summer", "autumn", "winter"][i % 4]
            )
        })
        .collect();
    let docs = past_messages(64);
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(2))
        .configure_from_args();
    let mut group = c.benchmark_group("minilm");
    group.throughput(Throughput::Elements(queries.len() as u64));
    group.bench_function("queries_64", |b| {
        b.iter(|| model.embed_blocking(&queries).unwrap())
    });
    if docs.is_empty() {
        eprintln!("no knowledge-base/past-messages found: skipping the document benchmark");
    } else {
        group.throughput(Throughput::Elements(docs.len() as u64));
        group.bench_function(format!("past_messages_{}", docs.len()), |b| {
            b.iter(|| model.embed_blocking(&docs).unwrap())
        });
    }
    group.finish();
    c.final_summary();
}
