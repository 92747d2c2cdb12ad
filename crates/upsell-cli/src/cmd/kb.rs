//! `upsell kb`: build the local knowledge-base index from `knowledge-base/`, query it, and
//! measure retrieval quality on the labelled queries in `knowledge-base/eval/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use upsell_core::kb::{
    Embedder, EvalQuery, Filter, FusionWeights, HashingEmbedder, KnowledgeBase, MetaValue,
    MetricsAccumulator, RerankSettings, RetrieveRequest, RetrievedChunk, SearchMode,
};
use upsell_sqlite::SqliteKnowledgeBase;
use upsell_sqlite::load_sources;

use super::Context;
use super::features::runtime;

/// Arguments of `upsell kb`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The knowledge-base folder (Bedrock S3 data-source layout).
    #[arg(
        long,
        global = true,
        env = "UPSELL_KB_DIR",
        default_value = "knowledge-base",
        value_name = "DIR"
    )]
    dir: PathBuf,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Chunk, embed and index the documents (incremental: unchanged documents are kept).
    Ingest {
        /// Embedding provider: hashing (built in) or minilm (built with `--features minilm`).
        #[arg(long, default_value = "hashing")]
        provider: String,
        /// Re-rank this many first-stage results (0: off, and no passage vectors are stored;
        /// default: 20 for minilm, off for hashing).
        #[arg(long, value_name = "N")]
        rerank: Option<usize>,
    },
    /// Retrieve the best chunks for a text.
    Query {
        text: String,
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// Metadata filter key=value (repeatable; all must match; list values match if they contain it).
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        #[arg(long, default_value = "hybrid", value_parser = parse_mode)]
        mode: SearchMode,
        /// Embedding provider: the one the index was built with (hashing or minilm).
        #[arg(long, default_value = "hashing")]
        provider: String,
        /// Weight of the vector list in hybrid fusion, the keyword list weighing 1 (default:
        /// 0.5 for hashing, 6 for semantic models; see docs/knowledge-base.md).
        #[arg(long, value_name = "W")]
        vector_weight: Option<f64>,
        /// Re-rank this many first-stage results by sentence similarity (0: off; default: 20 for
        /// minilm, off for hashing; needs an index ingested with re-ranking on).
        #[arg(long, value_name = "N")]
        rerank: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Recall@1/5/10, MRR and nDCG@10 on eval/queries.jsonl for each provider and search mode.
    Eval {
        /// Providers to evaluate (default: every provider built into this binary).
        #[arg(long = "provider")]
        providers: Vec<String>,
        /// Hybrid vector weights to compare, the keyword list weighing 1 (repeatable; default:
        /// each provider's own default).
        #[arg(long = "vector-weight", value_name = "W")]
        vector_weights: Vec<f64>,
        /// Re-ranking depths to compare, 0 meaning off (repeatable; default: each provider's own
        /// default, 20 for minilm and off for hashing).
        #[arg(long = "rerank", value_name = "N")]
        reranks: Vec<usize>,
        /// Also report the odd- and even-numbered queries (by line) separately, to tune on one
        /// half and check on the other.
        #[arg(long)]
        split: bool,
        /// One JSON object per row.
        #[arg(long)]
        json: bool,
        /// After each row, list the queries whose top 5 misses a relevant document, with their
        /// top 10 (score, `*` marking relevant documents) and where the missed ones ranked.
        #[arg(long)]
        misses: bool,
    },
}

fn parse_mode(s: &str) -> Result<SearchMode, String> {
    s.parse()
        .map_err(|e: upsell_core::ports::PortError| e.to_string())
}

/// Providers compiled into this binary.
#[cfg(not(feature = "minilm"))]
const PROVIDERS: &[&str] = &["hashing"];
#[cfg(feature = "minilm")]
const PROVIDERS: &[&str] = &["hashing", "minilm"];

fn embedder(provider: &str) -> anyhow::Result<Arc<dyn Embedder>> {
    match provider {
        "hashing" => Ok(Arc::new(HashingEmbedder::default())),
        #[cfg(feature = "minilm")]
        "minilm" => Ok(Arc::new(upsell_embed::MiniLmEmbedder::from_env()?)),
        #[cfg(not(feature = "minilm"))]
        "minilm" => bail!(
            "the local sentence model (all-MiniLM-L6-v2) is not built into this binary: rebuild with \
             `cargo build -p upsell-cli --features minilm` (see docs/knowledge-base.md)"
        ),
        "titan" => bail!("Titan Text Embeddings v2 is used by the AWS deployment only"),
        other => bail!(
            "unknown embedding provider {other:?} (available: {})",
            PROVIDERS.join(", ")
        ),
    }
}

fn open_index(
    ctx: &Context,
    provider: &str,
    rerank: Option<usize>,
) -> anyhow::Result<SqliteKnowledgeBase> {
    let path = ctx.home.join("upsell.db");
    let mut index = SqliteKnowledgeBase::open(&path, embedder(provider)?)
        .with_context(|| format!("opening {}", path.display()))?;
    if let Some(n) = rerank {
        index.set_rerank(rerank_setting(n))?;
    }
    Ok(index)
}

/// `--rerank N`: 0 turns re-ranking off.
fn rerank_setting(candidates: usize) -> Option<RerankSettings> {
    (candidates > 0).then_some(RerankSettings { candidates })
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let rt = runtime()?;
    match args.command {
        Sub::Ingest { provider, rerank } => {
            let docs = load_sources(&args.dir)
                .with_context(|| format!("reading {}", args.dir.display()))?;
            let index = open_index(ctx, &provider, rerank)?;
            let started = std::time::Instant::now();
            let r = rt.block_on(index.sync_sources(&docs))?;
            println!(
                "{} documents: {} added, {} updated, {} unchanged, {} deleted; {} chunks embedded, {} in the index ({:.2}s, provider {provider})",
                docs.len(),
                r.documents_added,
                r.documents_updated,
                r.documents_unchanged,
                r.documents_deleted,
                r.chunks_embedded,
                r.chunks_total,
                started.elapsed().as_secs_f64()
            );
            if r.sentences_embedded > 0 {
                println!(
                    "semantic chunking: {} sentence windows embedded to place breakpoints",
                    r.sentences_embedded
                );
            }
            if r.passages_embedded > 0 {
                println!(
                    "re-ranking: {} passages (sentences) embedded",
                    r.passages_embedded
                );
            }
            Ok(())
        }
        Sub::Query {
            text,
            k,
            filters,
            mode,
            provider,
            vector_weight,
            rerank,
            json,
        } => {
            let mut index = open_index(ctx, &provider, rerank)?;
            if let Some(vector) = vector_weight {
                index.set_fusion_weights(FusionWeights {
                    keyword: 1.0,
                    vector,
                })?;
            }
            if index.indexed_with()?.is_none() {
                eprintln!("the index is empty: run `upsell kb ingest` first");
            } else if let Some(r) = index.rerank()
                && !index.has_passages()?
            {
                eprintln!(
                    "not re-ranked: the index was ingested without re-ranking passages (run \
                     `upsell kb ingest --provider {provider} --rerank {}` to add them, or pass \
                     --rerank 0)",
                    r.candidates
                );
            }
            let request = RetrieveRequest::new(text, k)
                .with_filter(Filter::from_pairs(&filters)?)
                .with_mode(mode);
            let hits = rt.block_on(index.retrieve(&request))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
                return Ok(());
            }
            for (i, h) in hits.iter().enumerate() {
                let excerpt: String = h.text.chars().take(160).collect();
                println!(
                    "{}. {} (score {:.4}, {})",
                    i + 1,
                    h.chunk_id,
                    h.score,
                    h.source
                );
                println!("   {}", excerpt.replace('\n', " "));
            }
            if hits.is_empty() {
                println!("no results");
            }
            Ok(())
        }
        Sub::Eval {
            providers,
            vector_weights,
            reranks,
            split,
            json,
            misses,
        } => {
            let defaulted = providers.is_empty();
            let providers = if defaulted {
                PROVIDERS.iter().map(|s| (*s).to_owned()).collect()
            } else {
                providers
            };
            // Refuse bad weights before the (possibly slow) ingestion.
            for &vector in &vector_weights {
                FusionWeights {
                    keyword: 1.0,
                    vector,
                }
                .validate()?;
            }
            let queries = read_queries(&args.dir.join("eval/queries.jsonl"))?;
            let docs = load_sources(&args.dir)?;
            // Subsets by 1-based line number among the queries.
            let subsets: &[Subset] = if split {
                &[
                    ("all", |_| true),
                    ("odd", |i| i % 2 == 1),
                    ("even", |i| i % 2 == 0),
                ]
            } else {
                &[("all", |_| true)]
            };
            if !json {
                println!(
                    "{:<10} {:<8} {:>6} {:>6} {:<6} {:>8} {:>8} {:>9} {:>6} {:>8} {:>7}",
                    "provider",
                    "mode",
                    "vec_w",
                    "rerank",
                    "subset",
                    "recall@1",
                    "recall@5",
                    "recall@10",
                    "mrr",
                    "ndcg@10",
                    "queries"
                );
            }
            for provider in providers {
                let embedder = match embedder(&provider) {
                    Ok(e) => e,
                    // Built in but not installed (model files): skip it unless asked for by name.
                    Err(e) if defaulted => {
                        eprintln!("skipping provider {provider}: {e:#}");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let mut index = SqliteKnowledgeBase::in_memory(embedder)?;
                // Passages are stored when any compared depth re-ranks.
                let rerank_runs: Vec<Option<RerankSettings>> = if reranks.is_empty() {
                    vec![index.rerank()]
                } else {
                    reranks.iter().map(|&n| rerank_setting(n)).collect()
                };
                index.set_rerank(
                    rerank_runs
                        .iter()
                        .flatten()
                        .max_by_key(|r| r.candidates)
                        .copied(),
                )?;
                let started = std::time::Instant::now();
                let r = rt.block_on(index.sync_sources(&docs))?;
                eprintln!(
                    "{provider}: {} documents, {} chunks, {} sentence windows and {} passages embedded ({:.1}s)",
                    docs.len(),
                    r.chunks_total,
                    r.sentences_embedded,
                    r.passages_embedded,
                    started.elapsed().as_secs_f64()
                );
                let default_weights = index.fusion_weights();
                let mut runs: Vec<(SearchMode, Option<FusionWeights>)> =
                    vec![(SearchMode::Keyword, None), (SearchMode::Vector, None)];
                if vector_weights.is_empty() {
                    runs.push((SearchMode::Hybrid, Some(default_weights)));
                }
                for &vector in &vector_weights {
                    runs.push((
                        SearchMode::Hybrid,
                        Some(FusionWeights {
                            keyword: 1.0,
                            vector,
                        }),
                    ));
                }
                let runs: Vec<(SearchMode, Option<FusionWeights>, Option<RerankSettings>)> =
                    rerank_runs
                        .iter()
                        .flat_map(|&r| runs.iter().map(move |&(m, w)| (m, w, r)))
                        .collect();
                for (mode, weights, rerank) in runs {
                    if let Some(w) = weights {
                        index.set_fusion_weights(w)?;
                    }
                    index.set_rerank(rerank)?;
                    let rerank_n = rerank.map(|r| r.candidates);
                    let mut accs: Vec<MetricsAccumulator> = subsets
                        .iter()
                        .map(|_| MetricsAccumulator::default())
                        .collect();
                    let mut missed = Vec::new();
                    for (i, q) in queries.iter().enumerate() {
                        let filter = q.filter.as_ref().and_then(|f| {
                            let all: Vec<Filter> = f
                                .iter()
                                .map(|(k, v)| Filter::Equals {
                                    key: k.clone(),
                                    value: MetaValue::Text(v.clone()),
                                })
                                .collect();
                            (!all.is_empty()).then_some(Filter::AndAll(all))
                        });
                        let req = RetrieveRequest::new(q.query.clone(), 20)
                            .with_filter(filter)
                            .with_mode(mode);
                        let hits = rt.block_on(index.retrieve(&req))?;
                        if misses && let Some(report) = miss_report(i + 1, q, &hits) {
                            missed.push(report);
                        }
                        let ranked: Vec<String> = hits.into_iter().map(|h| h.doc_id).collect();
                        for ((_, keep), acc) in subsets.iter().zip(&mut accs) {
                            if keep(i + 1) {
                                acc.add(&ranked, &q.relevant);
                            }
                        }
                    }
                    for ((subset, _), acc) in subsets.iter().zip(&accs) {
                        let m = acc.finish();
                        if json {
                            let mut row = serde_json::json!({
                                "provider": provider,
                                "mode": mode.as_str(),
                                "subset": subset,
                                "keyword_weight": weights.map(|w| w.keyword),
                                "vector_weight": weights.map(|w| w.vector),
                                "rerank": rerank_n,
                            });
                            if let (Some(obj), serde_json::Value::Object(metrics)) =
                                (row.as_object_mut(), serde_json::to_value(m)?)
                            {
                                obj.extend(metrics);
                            }
                            println!("{row}");
                        } else {
                            // Keyword weight 1 unless a library caller chose otherwise.
                            let weight = weights.map_or("-".to_owned(), |w| w.vector.to_string());
                            let rr = rerank_n.map_or("-".to_owned(), |n| n.to_string());
                            println!(
                                "{:<10} {:<8} {:>6} {:>6} {:<6} {:>8.3} {:>8.3} {:>9.3} {:>6.3} {:>8.3} {:>7}",
                                provider,
                                mode.as_str(),
                                weight,
                                rr,
                                subset,
                                m.recall_at_1,
                                m.recall_at_5,
                                m.recall_at_10,
                                m.mrr,
                                m.ndcg_at_10,
                                m.queries
                            );
                        }
                    }
                    if misses {
                        let weight = weights.map_or("-".to_owned(), |w| w.vector.to_string());
                        println!(
                            "misses of {provider} {} (vec_w {weight}, rerank {}): {} of {} queries",
                            mode.as_str(),
                            rerank_n.map_or("-".to_owned(), |n| n.to_string()),
                            missed.len(),
                            queries.len()
                        );
                        for report in &missed {
                            print!("{report}");
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

/// For `kb eval --misses`: the query's top 10 documents (`*` = relevant) and the ranks of the
/// relevant ones missing from its top 5, or `None` when the top 5 holds them all.
fn miss_report(line: usize, q: &EvalQuery, hits: &[RetrievedChunk]) -> Option<String> {
    use std::fmt::Write as _;
    let mut ranked: Vec<(&str, f64)> = Vec::new();
    for h in hits {
        if !ranked.iter().any(|(d, _)| *d == h.doc_id) {
            ranked.push((&h.doc_id, h.score));
        }
    }
    let rank_of = |doc: &str| ranked.iter().position(|(d, _)| *d == doc);
    let missing: Vec<&String> = q
        .relevant
        .iter()
        .filter(|r| rank_of(r).is_none_or(|i| i >= 5))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut out = format!("  {line} {}: {}\n", q.id, q.query);
    for (i, (doc, score)) in ranked.iter().take(10).enumerate() {
        let mark = if q.relevant.iter().any(|r| r == doc) {
            '*'
        } else {
            ' '
        };
        let _ = writeln!(out, "    {mark} {:>2}. {doc} ({score:.4})", i + 1);
    }
    for doc in missing {
        match rank_of(doc) {
            Some(i) => {
                let _ = writeln!(out, "    missed {doc}: rank {}", i + 1);
            }
            None => {
                let _ = writeln!(out, "    missed {doc}: not in the top {}", ranked.len());
            }
        }
    }
    Some(out)
}

/// A named subset of the eval queries: which 1-based query numbers it keeps.
type Subset = (&'static str, fn(usize) -> bool);

fn read_queries(path: &Path) -> anyhow::Result<Vec<EvalQuery>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: EvalQuery = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a labelled query", path.display(), i + 1))?;
        if q.relevant.is_empty() {
            bail!(
                "{} line {}: query {} has no relevant documents",
                path.display(),
                i + 1,
                q.id
            );
        }
        out.push(q);
    }
    if out.is_empty() {
        bail!("{} holds no queries", path.display());
    }
    Ok(out)
}
