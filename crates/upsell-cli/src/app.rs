//! The local application: everything `upsell run` and its companions need, under one home folder.
//!
//! [`LocalApp::open`] opens the SQLite stores in `<home>/upsell.db` (execution history in
//! `<home>/history.db`, the metric log in `<home>/metrics.db`), loads the seed agents into
//! the registry on first run, builds the knowledge-base index when it is empty, builds each
//! worker's `Deps` from the local adapters and reads `sam/template.yaml` (rules, state machines,
//! functions, tables). Workers are called in-process through [`LocalWorkers`]
//! (`upsell_local::WorkerSet`), which drives each typed `Worker` exactly as the Lambda
//! runner does: same error names for the state machine's Retry and Catch, same metrics (into the
//! SQLite metric log instead of EMF lines).
//!
//! [`LocalApp::run_lines`] is the main job: every non-blank line is put on the template's event
//! bus; a line that is not JSON, is too large or matches no rule is quarantined with its reason;
//! a matched event starts one execution of the rule's state machine. Events of one customer run
//! in file order (one lane per customer hash), different customers concurrently. Each line ends
//! with exactly one [`Outcome`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};
use upsell_asl::{Clock, RealClock};
use upsell_core::evaluation::{CustomerTimeline, StoresTimeline};
use upsell_core::hash::fnv1a;
use upsell_core::kb::HashingEmbedder;
use upsell_core::ports::{ModelProvider, PortError};
use upsell_local::LocalObjects;
use upsell_local::WorkerSet;
use upsell_local::{EventOutcome, LocalEventBus, Runtime};
use upsell_models::offline::OfflineModel;
use upsell_models::openai::OpenAiCompatible;
use upsell_models::seed::{seed_agents, seed_request};
use upsell_sqlite::CachedKnowledgeBase;
use upsell_sqlite::SqliteContactStore;
use upsell_sqlite::SqliteDriftSource;
use upsell_sqlite::SqliteFeatureStore;
use upsell_sqlite::SqliteKnowledgeBase;
use upsell_sqlite::SqliteMetricLog;
use upsell_sqlite::SqlitePastSuccesses;
use upsell_sqlite::SqliteVersionCounters;
use upsell_sqlite::TableStore;
use upsell_sqlite::open_shared;
use upsell_sqlite::{AGENT_REGISTRY_TABLE, SqliteAgentRegistry};
use upsell_sqlite::{EVALUATIONS_TABLE, SqliteEvaluationStore};
use upsell_sqlite::{ExecutionStore, HistoryLevel};
use upsell_sqlite::{MESSAGES_TABLE, SqliteMessageStore};
use upsell_sqlite::{load_documents, read_settings};

/// The SQLite file under the home folder that holds the local stores (not the history).
pub const DB_FILE: &str = "upsell.db";

/// The metric log ([`upsell_sqlite::SqliteMetricLog`]), in a file of its own for the same reason.
pub const METRICS_FILE: &str = "metrics.db";

/// The execution history and checkpoints, in a file of their own: SQLite has one write lock per
/// file, and the history writer's group commits would otherwise make every store write wait
/// (docs/performance.md, "upsell run").
pub const HISTORY_FILE: &str = "history.db";

/// The database under `home`, or an error telling the user to run `upsell run` first (read-only
/// commands never create an empty one).
pub fn existing_db(home: &Path) -> anyhow::Result<PathBuf> {
    let db = home.join(DB_FILE);
    if !db.exists() {
        bail!(
            "{} does not exist: nothing has run with --home {} yet (try `upsell run`)",
            db.display(),
            home.display()
        );
    }
    Ok(db)
}

/// Events that workflows and workers put on the local bus (e.g. `UpsellMessageApproved`), as
/// JSON lines under the home folder: what a subscriber would have received, kept across runs.
pub const BUS_JOURNAL_FILE: &str = "bus-events.jsonl";

/// Local S3 mounts (bucket, key prefix, folder) under the home folder.
pub const MOUNTS_FILE: &str = "s3-mounts.json";

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct S3Mount {
    bucket: String,
    prefix: String,
    dir: PathBuf,
}

fn load_mounts(home: &Path) -> anyhow::Result<Vec<S3Mount>> {
    let path = home.join(MOUNTS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a list of S3 mounts", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// Error type lambda_runtime reports when the payload does not deserialise into `Input`.
pub use upsell_local::DESERIALIZE_ERROR;

/// Which model provider the generate and judge workers call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// The deterministic offline generator and judge (no network).
    Offline,
    /// An OpenAI-compatible chat server (Ollama, llama.cpp's server).
    OpenAi {
        /// Base URL, e.g. `http://127.0.0.1:11434`.
        endpoint: String,
        /// Model name the server knows (replaces the agents' Bedrock model ids).
        model_id: String,
    },
}

impl ModelChoice {
    /// Parses `--model offline|openai` with its `--endpoint` and `--model-id`.
    pub fn from_flags(
        model: &str,
        endpoint: Option<&str>,
        model_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        match model {
            "offline" => {
                if endpoint.is_some() || model_id.is_some() {
                    bail!("--endpoint and --model-id only apply to --model openai");
                }
                Ok(ModelChoice::Offline)
            }
            "openai" => {
                let (Some(endpoint), Some(model_id)) = (endpoint, model_id) else {
                    bail!(
                        "--model openai needs --endpoint URL and --model-id NAME \
                         (e.g. --endpoint http://127.0.0.1:11434 --model-id llama3.2:3b)"
                    );
                };
                Ok(ModelChoice::OpenAi {
                    endpoint: endpoint.to_owned(),
                    model_id: model_id.to_owned(),
                })
            }
            other => bail!("unknown model provider {other:?} (offline or openai)"),
        }
    }

    /// The provider.
    pub fn provider(&self) -> Arc<dyn ModelProvider> {
        match self {
            ModelChoice::Offline => Arc::new(OfflineModel::new()),
            ModelChoice::OpenAi { endpoint, model_id } => {
                let mut p = OpenAiCompatible::new(endpoint.clone()).with_model(model_id.clone());
                if let Ok(key) = std::env::var("UPSELL_OPENAI_API_KEY") {
                    p = p.with_api_key(key);
                }
                Arc::new(p)
            }
        }
    }
}

/// Where things are and what to plug in.
#[derive(Clone)]
pub struct AppOptions {
    /// The home folder (`--home`, `UPSELL_HOME`, default `.upsell`).
    pub home: PathBuf,
    /// The SAM template (default `sam/template.yaml`).
    pub template: PathBuf,
    /// The knowledge-base folder, indexed on first run (default `knowledge-base`).
    pub kb_dir: PathBuf,
    /// The model provider for generate and judge.
    pub model: Arc<dyn ModelProvider>,
    /// The clock executions use (real by default; tests may pass a virtual one).
    pub clock: Arc<dyn Clock>,
    /// How many customers' events run at once.
    pub lanes: usize,
    /// What the execution history keeps (full payloads or a summary).
    pub history: HistoryLevel,
    /// What the evaluator knows about customers at a given time (default: the local feature
    /// and contact stores; `upsell eval` replays its dataset instead).
    pub timeline: Option<Arc<dyn CustomerTimeline>>,
}

impl std::fmt::Debug for AppOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppOptions")
            .field("home", &self.home)
            .field("template", &self.template)
            .field("kb_dir", &self.kb_dir)
            .field("lanes", &self.lanes)
            .finish_non_exhaustive()
    }
}

impl AppOptions {
    /// Defaults relative to the current directory (the repository root), offline model.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        AppOptions {
            home: home.into(),
            template: PathBuf::from("sam/template.yaml"),
            kb_dir: PathBuf::from("knowledge-base"),
            model: ModelChoice::Offline.provider(),
            clock: Arc::new(RealClock),
            lanes: 64,
            history: HistoryLevel::Full,
            timeline: None,
        }
    }

    /// Paths relative to `root` (a repository checkout).
    pub fn with_repo_root(mut self, root: &Path) -> Self {
        self.template = root.join("sam/template.yaml");
        self.kb_dir = root.join("knowledge-base");
        self
    }
}

/// The workers with their local ports, called in-process by worker name (the `CodeUri`
/// folder: `schema-check`, `enrich`, `kb-retrieve`, `generate`, `judge`, `publish`, `evaluate`,
/// `drift-monitor`).
pub type LocalWorkers = WorkerSet;

/// How one input line ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// An approved message was stored and announced.
    Published,
    /// Every attempt was rejected by the judge.
    Rejected,
    /// No message on purpose (no profile, opted out, unhappy, nothing to offer).
    Skipped,
    /// The event was quarantined with its reason.
    Quarantined,
    /// The workflow failed; a failed record says why.
    Failed,
    /// A redelivery of an event already handled.
    Duplicate,
}

/// What happened to one line.
#[derive(Debug, Clone)]
pub struct LineResult {
    /// 1-based line number in the input.
    pub line: usize,
    /// The event id, when readable.
    pub event_id: Option<String>,
    /// The outcome.
    pub outcome: Outcome,
    /// The execution that handled it (none for lines quarantined before the bus).
    pub execution_arn: Option<String>,
    /// For failures and quarantines: why.
    pub detail: Option<String>,
}

/// The run summary, in the words of the stores: each count is the number of events whose record
/// has that status (`upsell messages list --status rejected` lists exactly `rejected` of them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Non-blank input lines.
    pub events: u64,
    /// Approved and published.
    pub published: u64,
    /// Rejected by the judge after every attempt.
    pub rejected: u64,
    /// Deliberately not messaged.
    pub skipped: u64,
    /// Quarantined.
    pub quarantined: u64,
    /// Failed.
    pub failed: u64,
    /// Duplicates ignored.
    pub duplicates: u64,
    /// Wall time in seconds.
    pub elapsed_s: f64,
}

impl RunSummary {
    /// Counts one outcome.
    pub fn add(&mut self, o: &Outcome) {
        self.events += 1;
        match o {
            Outcome::Published => self.published += 1,
            Outcome::Rejected => self.rejected += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Quarantined => self.quarantined += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Duplicate => self.duplicates += 1,
        }
    }

    /// Events per second.
    pub fn events_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.events as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// The machine-readable summary: exactly `events`, `published`, `rejected`, `skipped`,
    /// `quarantined`, `failed`, `duplicates`, `elapsed_s`, `events_per_s`; the six counts add
    /// up to `events`.
    pub fn to_json(&self) -> Value {
        json!({
            "events": self.events,
            "published": self.published,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "quarantined": self.quarantined,
            "failed": self.failed,
            "duplicates": self.duplicates,
            "elapsed_s": (self.elapsed_s * 1000.0).round() / 1000.0,
            "events_per_s": (self.events_per_s() * 10.0).round() / 10.0,
        })
    }
}

/// Everything local, opened under one home folder.
pub struct LocalApp {
    /// The home folder.
    pub home: PathBuf,
    /// The local runtime (template, rules, state machines, engine).
    pub runtime: Runtime,
    /// Terminal records and quarantine.
    pub messages: Arc<SqliteMessageStore>,
    /// Execution history and checkpoints.
    pub executions: Arc<ExecutionStore>,
    /// Agent registry.
    pub registry: Arc<SqliteAgentRegistry>,
    /// Feature store.
    pub features: Arc<SqliteFeatureStore>,
    /// DynamoDB tables of the template (claims, routing).
    pub tables: Arc<TableStore>,
    /// The local event bus (workers publish `UpsellMessageApproved` on it).
    pub bus: Arc<LocalEventBus>,
    /// The workers.
    pub workers: Arc<LocalWorkers>,
    /// The metric log the workers record into.
    pub metrics: Arc<SqliteMetricLog>,
    /// Per-version live counters (the publish worker adds to them).
    pub counters: Arc<SqliteVersionCounters>,
    /// Cases of agent evaluations.
    pub evaluations: Arc<SqliteEvaluationStore>,
    lanes: usize,
    /// What happened while opening (seeded agents, KB ingestion), for the user.
    pub notes: Vec<String>,
}

impl std::fmt::Debug for LocalApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalApp")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

fn port(what: &str, path: &Path) -> impl FnOnce(PortError) -> anyhow::Error {
    let msg = format!("opening the {what} in {}", path.display());
    move |e| anyhow::Error::new(e).context(msg)
}

impl LocalApp {
    /// Opens the stores, seeds the registry, indexes the knowledge base when empty, and builds
    /// the runtime from the SAM template.
    pub async fn open(opts: AppOptions) -> anyhow::Result<LocalApp> {
        let db = opts.home.join(DB_FILE);
        let mut notes = Vec::new();

        // One connection for the stores in upsell.db: with one per store, every write would
        // make SQLite drop the other connections' page caches.
        let conn = open_shared(&db).map_err(port("the stores", &db))?;
        let tables = Arc::new(TableStore::shared(conn.clone()).map_err(port("tables", &db))?);
        let messages = Arc::new(
            SqliteMessageStore::new(tables.clone(), MESSAGES_TABLE)
                .map_err(port("message store", &db))?,
        );
        let history_db = opts.home.join(HISTORY_FILE);
        let executions = Arc::new(
            ExecutionStore::open(&history_db).map_err(port("execution history", &history_db))?,
        );
        let registry = Arc::new(SqliteAgentRegistry::new(
            tables.clone(),
            AGENT_REGISTRY_TABLE,
        ));
        let features =
            Arc::new(SqliteFeatureStore::shared(conn.clone()).map_err(port("feature store", &db))?);
        let contacts =
            Arc::new(SqliteContactStore::shared(conn.clone()).map_err(port("contact store", &db))?);
        let counters =
            Arc::new(SqliteVersionCounters::shared(conn).map_err(port("version counters", &db))?);
        let kb = Arc::new(
            SqliteKnowledgeBase::open(&db, Arc::new(HashingEmbedder::default()))
                .map_err(port("knowledge base", &db))?,
        );

        let seeded = registry
            .seed(
                &seed_agents(),
                &seed_request(&opts.home.display().to_string()),
            )
            .context("loading the seed agents into the registry")?;
        if seeded > 0 {
            notes.push(format!("registered {seeded} seed agent version(s)"));
        }
        if kb
            .chunk_count()
            .context("reading the knowledge-base index")?
            == 0
        {
            let docs = load_documents(&opts.kb_dir).with_context(|| {
                format!("reading the knowledge base in {}", opts.kb_dir.display())
            })?;
            let r = kb
                .sync(&docs)
                .await
                .context("indexing the knowledge base")?;
            notes.push(format!(
                "indexed the knowledge base: {} documents, {} chunks",
                docs.len(),
                r.chunks_total
            ));
        }

        // Accepted messages are indexed with the knowledge base's own chunking settings.
        let kb_chunking = read_settings(&opts.kb_dir)
            .and_then(|s| s.chunking())
            .with_context(|| {
                format!(
                    "reading the knowledge base's ingestion settings in {}",
                    opts.kb_dir.display()
                )
            })?;

        let metrics_db = opts.home.join(METRICS_FILE);
        let metrics =
            Arc::new(SqliteMetricLog::open(&metrics_db).map_err(port("metric log", &metrics_db))?);

        let bus_journal = opts.home.join(BUS_JOURNAL_FILE);
        let bus = Arc::new(
            LocalEventBus::new()
                .with_journal(&bus_journal)
                .with_context(|| format!("opening {}", bus_journal.display()))?,
        );
        let objects = Arc::new(LocalObjects::new(opts.home.join("s3")));
        for m in load_mounts(&opts.home)? {
            objects.mount(&m.bucket, &m.prefix, &m.dir);
        }
        let evaluations = Arc::new(SqliteEvaluationStore::new(
            tables.clone(),
            EVALUATIONS_TABLE,
        ));
        let timeline: Arc<dyn CustomerTimeline> = match &opts.timeline {
            Some(t) => t.clone(),
            None => Arc::new(StoresTimeline {
                features: features.clone(),
                contacts: contacts.clone(),
            }),
        };
        // Agents whose model id is `stub:...` get the degrading stub (rollout tests and demos).
        let model: Arc<dyn ModelProvider> =
            Arc::new(upsell_models::stub::StubRouter::new(opts.model.clone()));
        // Test-only: injected model and worker faults (`UPSELL_FAULTS`, crate::faults).
        #[cfg(feature = "fault-injection")]
        let faults = crate::faults::FaultPlan::from_env()?;
        #[cfg(feature = "fault-injection")]
        let model: Arc<dyn ModelProvider> = match faults {
            Some(plan) => Arc::new(crate::faults::FaultyModel::new(model, plan)),
            None => model,
        };
        let workers = Arc::new(
            WorkerSet::new(metrics.clone())
                .with(schema_check::Deps)
                .with(enrich::Deps {
                    features: features.clone(),
                    contacts,
                    index: Some(features.clone()),
                    outcomes: Some(enrich::outcome::OutcomeDeps {
                        messages: messages.clone(),
                        successes: Arc::new(SqlitePastSuccesses::new(kb.clone(), kb_chunking)),
                    }),
                })
                // Most events send one of a few dozen requests: their results are cached until
                // the index changes.
                .with(kb_retrieve::Deps {
                    kb: Arc::new(CachedKnowledgeBase::new(kb.clone())),
                })
                .with(generate::Deps {
                    registry: registry.clone(),
                    model: model.clone(),
                })
                .with(judge::Deps {
                    registry: registry.clone(),
                    model,
                })
                .with(publish::Deps {
                    messages: messages.clone(),
                    events: bus.clone(),
                    counters: counters.clone(),
                })
                .with(evaluate::Deps {
                    registry: registry.clone(),
                    timeline,
                    store: evaluations.clone(),
                })
                .with(rollout::Deps {
                    registry: registry.clone(),
                    counters: counters.clone(),
                    events: bus.clone(),
                })
                // The events the local runtime has run and their message records.
                .with(drift_monitor::Deps {
                    source: Arc::new(SqliteDriftSource::new(executions.clone(), messages.clone())),
                }),
        );
        let lanes = opts.lanes.max(1);
        let invoked: Arc<dyn upsell_local::WorkerRegistry> = workers.clone();
        #[cfg(feature = "fault-injection")]
        let invoked: Arc<dyn upsell_local::WorkerRegistry> = match faults {
            Some(plan) => Arc::new(crate::faults::FaultyWorkers::new(invoked, plan)),
            None => invoked,
        };
        let runtime = Runtime::builder(
            &opts.template,
            invoked,
            tables.clone(),
            executions.clone(),
            messages.clone(),
        )
        .bus(bus.clone())
        .objects(objects)
        .max_concurrency(lanes)
        .history_level(opts.history)
        .clock(opts.clock.clone())
        .metrics(metrics.clone())
        .build()
        .with_context(|| {
            format!(
                "building the local runtime from {}",
                opts.template.display()
            )
        })?;

        // The registry keeps the generator's ROUTING item (read by the ASL's LoadRouting) in
        // the same table, updated with every register / set_status.
        let app = LocalApp {
            home: opts.home.clone(),
            runtime,
            messages,
            executions,
            registry,
            features,
            tables,
            bus,
            workers,
            metrics,
            counters,
            evaluations,
            lanes,
            notes,
        };
        Ok(app)
    }

    /// Serves `s3://bucket/prefix...` from `dir` for Distributed Map item readers and result
    /// writers, now and in later processes (a resumed backfill reads the same folder): the
    /// mounts are kept in `<home>/s3-mounts.json`.
    pub fn mount_s3(&self, bucket: &str, prefix: &str, dir: &Path) -> anyhow::Result<()> {
        let dir =
            std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
        let mut mounts = load_mounts(&self.home)?;
        mounts.retain(|m| !(m.bucket == bucket && m.prefix == prefix));
        mounts.push(S3Mount {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            dir: dir.clone(),
        });
        let path = self.home.join(MOUNTS_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(&mounts)?)
            .with_context(|| format!("writing {}", path.display()))?;
        if let Some(objects) = self.runtime.objects() {
            objects.mount(bucket, prefix, dir);
        }
        Ok(())
    }

    /// Resumes executions that an earlier process left mid-way; returns their outcomes.
    pub async fn resume_interrupted(&self) -> anyhow::Result<Vec<Outcome>> {
        let mut out = Vec::new();
        for r in self.runtime.resume_interrupted().await? {
            out.push(Outcome::from(&r?.outcome));
        }
        self.runtime.flush()?;
        self.metrics.flush().context("writing the metric log")?;
        Ok(out)
    }

    /// Processes every non-blank line; `progress` is called after each one. Events of one
    /// customer run in file order; up to `lanes` customers run at once.
    pub async fn run_lines<F>(
        self: &Arc<Self>,
        text: &str,
        origin: &str,
        mut progress: F,
    ) -> anyhow::Result<(RunSummary, Vec<LineResult>)>
    where
        F: FnMut(&LineResult),
    {
        let started = Instant::now();
        let lines: Vec<(usize, String)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l.to_owned()))
            .collect();
        let lanes = self.lanes.min(lines.len()).max(1);
        let mut per_lane: Vec<Vec<(usize, String)>> = vec![Vec::new(); lanes];
        for (n, l) in lines {
            let lane = (fnv1a(lane_key(&l).as_bytes()) % lanes as u64) as usize;
            per_lane[lane].push((n, l));
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = tokio::task::JoinSet::new();
        for lane in per_lane.into_iter().filter(|l| !l.is_empty()) {
            let runtime = self.runtime.clone();
            let tx = tx.clone();
            let origin = origin.to_owned();
            tasks.spawn(async move {
                for (n, l) in lane {
                    let o = runtime
                        .submit(&l, &format!("{origin}:{n}"))
                        .await
                        .with_context(|| format!("{origin}:{n}"))?;
                    let r = LineResult {
                        line: n,
                        event_id: o.event_id.clone(),
                        outcome: Outcome::from(&o.outcome),
                        execution_arn: o.executions.first().map(|e| e.arn.clone()),
                        detail: detail(&o.outcome),
                    };
                    if tx.send(r).is_err() {
                        break;
                    }
                }
                anyhow::Ok(())
            });
        }
        drop(tx);
        let mut summary = RunSummary::default();
        let mut results = Vec::new();
        while let Some(r) = rx.recv().await {
            summary.add(&r.outcome);
            progress(&r);
            results.push(r);
        }
        while let Some(j) = tasks.join_next().await {
            j.context("a processing task panicked")??;
        }
        self.runtime
            .flush()
            .context("writing the execution history")?;
        self.metrics.flush().context("writing the metric log")?;
        summary.elapsed_s = started.elapsed().as_secs_f64();
        results.sort_by_key(|r| r.line);
        Ok((summary, results))
    }
}

impl From<&EventOutcome> for Outcome {
    fn from(o: &EventOutcome) -> Outcome {
        match o {
            EventOutcome::Published => Outcome::Published,
            EventOutcome::Rejected => Outcome::Rejected,
            EventOutcome::Skipped => Outcome::Skipped,
            EventOutcome::Quarantined { .. } => Outcome::Quarantined,
            EventOutcome::Failed { .. } => Outcome::Failed,
            EventOutcome::Duplicate => Outcome::Duplicate,
        }
    }
}

fn detail(o: &EventOutcome) -> Option<String> {
    match o {
        EventOutcome::Quarantined { reason } => Some(reason.clone()),
        EventOutcome::Failed { error, cause } => Some(match cause {
            Some(c) => format!("{error}: {c}"),
            None => error.clone(),
        }),
        _ => None,
    }
}

/// Lane key: the customer id when readable, else the text.
pub(crate) fn lane_key(line: &str) -> String {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| {
            v.pointer("/detail/customerId")
                .and_then(Value::as_str)
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_flags() {
        assert_eq!(
            ModelChoice::from_flags("offline", None, None).unwrap(),
            ModelChoice::Offline
        );
        let e = ModelChoice::from_flags("openai", Some("http://127.0.0.1:1"), None).unwrap_err();
        assert!(e.to_string().contains("--model-id"), "{e}");
        assert!(ModelChoice::from_flags("bedrock", None, None).is_err());
    }

    #[test]
    fn the_json_summary_has_exactly_the_documented_keys_and_adds_up() {
        let mut s = RunSummary::default();
        for o in [
            Outcome::Published,
            Outcome::Rejected,
            Outcome::Skipped,
            Outcome::Quarantined,
            Outcome::Failed,
            Outcome::Duplicate,
        ] {
            s.add(&o);
        }
        s.elapsed_s = 1.5;
        let j = s.to_json();
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "events",
                "published",
                "rejected",
                "skipped",
                "quarantined",
                "failed",
                "duplicates",
                "elapsed_s",
                "events_per_s"
            ]
        );
        let sum: u64 = [
            "published",
            "rejected",
            "skipped",
            "quarantined",
            "failed",
            "duplicates",
        ]
        .iter()
        .map(|k| j[k].as_u64().unwrap())
        .sum();
        assert_eq!(sum, j["events"].as_u64().unwrap());
        assert_eq!(
            (j["rejected"].as_u64(), j["skipped"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(j["events_per_s"], 4.0);
    }
}
