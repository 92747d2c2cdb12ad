//! `upsell serve`: the webhook endpoint (`POST /events`) on 127.0.0.1, feeding the local event
//! bus and runtime exactly as API Gateway + the webhook Lambda feed EventBridge in AWS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use upsell_cli::app::{AppOptions, DB_FILE, LocalApp, METRICS_FILE, ModelChoice};
use upsell_cli::dashboard;
use upsell_cli::serve::{Extras, RuntimeIngest, bind_loopback, serve};
use upsell_core::monitor::MonitorReport;
use upsell_core::telemetry::MetricLog;
use upsell_sqlite::SqliteIngestReceipts;
use upsell_sqlite::SqliteMetricLog;
use webhook::{EVENTS_PATH, SECRET_ENV, SIGNATURE_HEADER, Secret};

use super::Context;

/// Arguments of `upsell serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    addr: SocketAddr,
    /// Model provider for generate and judge: `offline` or `openai`.
    #[arg(long, default_value = "offline", value_name = "PROVIDER")]
    model: String,
    /// OpenAI-compatible server base URL (with --model openai).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Model name on that server (with --model openai).
    #[arg(long, value_name = "NAME")]
    model_id: Option<String>,
    /// SAM template (rules, state machines, functions).
    #[arg(
        long,
        env = "UPSELL_TEMPLATE",
        default_value = "sam/template.yaml",
        value_name = "FILE"
    )]
    template: PathBuf,
    /// Knowledge-base folder, indexed on first run.
    #[arg(
        long,
        env = "UPSELL_KB_DIR",
        default_value = "knowledge-base",
        value_name = "DIR"
    )]
    kb_dir: PathBuf,
    /// How many customers' events run at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096), value_name = "N")]
    concurrency: u16,
}

/// Runs the command until Ctrl-C; then finishes every accepted event before exiting.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let secret = std::env::var(SECRET_ENV).with_context(|| {
        format!("set {SECRET_ENV} to the shared HMAC secret (e.g. `export {SECRET_ENV}=$(openssl rand -hex 32)`)")
    })?;
    let secret = Secret::new(secret).map_err(anyhow::Error::msg)?;
    let model = ModelChoice::from_flags(
        &args.model,
        args.endpoint.as_deref(),
        args.model_id.as_deref(),
    )?;
    let mut opts = AppOptions::new(&ctx.home);
    opts.template = args.template;
    opts.kb_dir = args.kb_dir;
    opts.model = model.provider();
    opts.lanes = usize::from(args.concurrency);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let app = Arc::new(LocalApp::open(opts).await?);
        for n in &app.notes {
            eprintln!("{}: {n}", ctx.home.display());
        }
        let resumed = app.resume_interrupted().await?;
        if !resumed.is_empty() {
            eprintln!("resumed {} execution(s) interrupted earlier", resumed.len());
        }
        let db = ctx.home.join(DB_FILE);
        let receipts = Arc::new(
            SqliteIngestReceipts::open(&db)
                .with_context(|| format!("opening the webhook receipts in {}", db.display()))?,
        );
        let ingest = Arc::new(RuntimeIngest::start(
            app.runtime.clone(),
            usize::from(args.concurrency),
        ));
        let deps = Arc::new(webhook::Deps {
            secret,
            events: ingest.clone(),
            receipts,
        });
        let pending = ingest.clone();
        let home = ctx.home.clone();
        let extras = Extras {
            dashboard: Some(Arc::new(move || render_dashboard(&home))),
            pending: Some(Arc::new(move || pending.pending())),
        };
        let listener = bind_loopback(args.addr).await?;
        let local = listener.local_addr()?;
        // The first stdout line: tests and scripts read the address from it (with port 0).
        outln!(
            "listening on http://{local}{EVENTS_PATH} (POST, {SIGNATURE_HEADER}: sha256=<hex HMAC>)"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(listener, deps.clone(), extras, stop_rx));
        // History is group-committed: flush it every second while serving.
        let flusher = {
            let app = app.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    if let Err(e) = app.runtime.flush() {
                        eprintln!("writing the execution history: {e}");
                    }
                }
            })
        };
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        eprintln!("stopping: finishing accepted events...");
        let _ = stop_tx.send(true);
        server.await.context("the server task panicked")??;
        drop(deps);
        flusher.abort();
        match Arc::try_unwrap(ingest) {
            Ok(ingest) => ingest.drain().await,
            Err(_) => eprintln!(
                "some requests still hold the queue; accepted events resume on the next start"
            ),
        }
        app.runtime
            .flush()
            .context("writing the execution history")?;
        anyhow::Ok(())
    })
}

/// `GET /dashboard`: `upsell dashboard`'s page, rendered from the metric log at each request.
fn render_dashboard(home: &std::path::Path) -> anyhow::Result<String> {
    let path = home.join(METRICS_FILE);
    let log =
        SqliteMetricLog::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // Called on a worker thread of the multi-threaded runtime.
    let data = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(log.metrics_since(None))
    })
    .with_context(|| format!("reading {}", path.display()))?;
    Ok(dashboard::render(&MonitorReport::build(&data, None)))
}
