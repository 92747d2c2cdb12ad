//! `upsell features`: feed events into the local feature store, read features (optionally as
//! of a past time and of another feature-set version), their history, similar customers, and
//! rebuild a feature-set version from the event log (`upsell_core::rebuild`).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDate, Utc};
use upsell_core::events::{Region, Service};
use upsell_core::features::{
    CustomerFeatures, CustomerIndex, FeatureSet, FeatureStore, SimilarQuery,
};
use upsell_core::rebuild::{RebuildReport, RebuildRequest, rebuild};
use upsell_sqlite::SqliteFeatureStore;

use super::Context;

/// Arguments of `upsell features`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Read events (EventBridge JSON lines, `-` for stdin), log the valid ones and recompute the
    /// features and embeddings of every customer they touch. Invalid lines are reported and skipped.
    Ingest {
        #[arg(value_name = "FILE")]
        events: PathBuf,
    },
    /// A customer's features now, or as known at `--as-of` (RFC 3339 or YYYY-MM-DD = start of day UTC).
    Show {
        customer: String,
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        as_of: Option<DateTime<Utc>>,
        /// Read this feature-set version (default: the serving one, fs-v1).
        #[arg(long, value_name = "VERSION", value_parser = parse_feature_set)]
        feature_set: Option<FeatureSet>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A customer's feature history, newest first.
    History {
        customer: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Replay every customer's logged events under a feature-set version, store its snapshots
    /// beside the serving version's, and report which features moved for how many customers.
    Rebuild {
        /// The version to compute (default: the newest definition, fs-v2).
        #[arg(long, value_name = "VERSION", value_parser = parse_feature_set)]
        feature_set: Option<FeatureSet>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The nearest customers by customer embedding, with what makes them close.
    Similar {
        customer: String,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Only customers in this region (northeast, southeast, midwest, southwest, west, northwest).
        #[arg(long, value_parser = parse_region)]
        region: Option<Region>,
        /// Only customers who bought this service (e.g. pool-service).
        #[arg(long, value_parser = parse_service)]
        service: Option<Service>,
        #[arg(long)]
        json: bool,
    },
}

/// Parses RFC 3339 or a calendar date (midnight UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))
}

fn parse_feature_set(s: &str) -> Result<FeatureSet, String> {
    FeatureSet::parse(s).map_err(|e| e.to_string())
}

fn parse_region(s: &str) -> Result<Region, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        format!("unknown region {s:?} (northeast, southeast, midwest, southwest, west, northwest)")
    })
}

fn parse_service(s: &str) -> Result<Service, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        let all: Vec<&str> = Service::ALL.iter().map(|s| s.code()).collect();
        format!("unknown service {s:?} (one of {})", all.join(", "))
    })
}

/// The feature store in the home folder.
pub fn open_store(ctx: &Context) -> anyhow::Result<SqliteFeatureStore> {
    let path = ctx.home.join("upsell.db");
    SqliteFeatureStore::open(&path).with_context(|| format!("opening {}", path.display()))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let store = open_store(ctx)?;
    let rt = runtime()?;
    match args.command {
        Sub::Ingest { events } => ingest(&store, &events),
        Sub::Show {
            customer,
            as_of,
            feature_set,
            json,
        } => {
            let fs = feature_set.unwrap_or(FeatureSet::SERVING);
            let Some(f) = rt.block_on(store.get_version(&customer, fs.version(), as_of))? else {
                let hint = if fs == FeatureSet::SERVING {
                    "run `upsell features ingest EVENTS` first".to_owned()
                } else {
                    format!("run `upsell features rebuild --feature-set {fs}` first")
                };
                match as_of {
                    Some(t) => bail!("no {fs} features for customer {customer} as of {t}"),
                    None => bail!("no {fs} features for customer {customer}: {hint}"),
                }
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                print_table(&f)?;
            }
            Ok(())
        }
        Sub::History {
            customer,
            limit,
            json,
        } => {
            let h = rt.block_on(store.history(&customer, limit))?;
            if h.is_empty() {
                bail!("no feature history for customer {customer}");
            }
            for f in h {
                if json {
                    outln!("{}", serde_json::to_string(&f)?);
                } else {
                    outln!(
                        "{}  services={} ltv_cents={} satisfaction_avg={} region={}",
                        f.last_event_time.to_rfc3339(),
                        f.service_count,
                        f.lifetime_value_cents,
                        f.satisfaction_avg.map_or("-".into(), |s| format!("{s:.2}")),
                        f.region.map_or("-", upsell_core::features::region_code),
                    );
                }
            }
            Ok(())
        }
        Sub::Rebuild { feature_set, json } => {
            let request = RebuildRequest {
                feature_set: feature_set.unwrap_or(FeatureSet::NEWEST),
                serving: FeatureSet::SERVING,
            };
            let report = rt.block_on(rebuild(&store, &request))?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report)?;
            }
            Ok(())
        }
        Sub::Similar {
            customer,
            k,
            region,
            service,
            json,
        } => {
            let query = SimilarQuery {
                customer_id: customer,
                k,
                region,
                service,
            };
            let hits = rt.block_on(store.similar(&query))?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&hits)?);
                return Ok(());
            }
            if hits.is_empty() {
                outln!("no customer matches the filters");
            }
            for (i, h) in hits.iter().enumerate() {
                let close: Vec<&str> = h.closest_features.iter().map(|(n, _)| n.as_str()).collect();
                outln!(
                    "{:>2}. {:<14} distance {:.3}  region {:<9} close on: {}",
                    i + 1,
                    h.customer_id,
                    h.distance,
                    h.region.map_or("-", upsell_core::features::region_code),
                    close.join(", ")
                );
            }
            Ok(())
        }
    }
}

fn ingest(store: &SqliteFeatureStore, path: &PathBuf) -> anyhow::Result<()> {
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?)
    };
    let mut events = Vec::new();
    let mut rejected = 0usize;
    for (n, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match upsell_core::validate::check_event(line.as_bytes()) {
            Ok(e) => events.push(e),
            Err(r) => {
                rejected += 1;
                if rejected <= 5 {
                    eprintln!("line {}: skipped: {r}", n + 1);
                }
            }
        }
    }
    let s = store.ingest_events(&events)?;
    outln!(
        "{} events added ({} already known, {} invalid lines skipped); {} customers updated, {} feature snapshots written",
        s.events_added,
        s.events_duplicate,
        rejected,
        s.customers_updated,
        s.snapshots_written
    );
    Ok(())
}

fn print_report(r: &RebuildReport) -> anyhow::Result<()> {
    outln!(
        "rebuilt {} for {} customers from {} logged events ({} snapshots written beside {})",
        r.rebuilt,
        r.customers_rebuilt,
        r.events_replayed,
        r.snapshots_written,
        r.serving
    );
    outln!(
        "{} of {} customers with {} features have a current value that differs",
        r.customers_changed,
        r.customers_compared,
        r.serving
    );
    if r.features.is_empty() {
        outln!("no feature moved");
    }
    for f in &r.features {
        outln!("  {:<24} {:>7} customers", f.feature, f.customers);
    }
    Ok(())
}

fn print_table(f: &CustomerFeatures) -> anyhow::Result<()> {
    let value = serde_json::to_value(f)?;
    let Some(obj) = value.as_object() else {
        bail!("features did not serialise to an object");
    };
    for (k, v) in obj {
        let shown = match v {
            serde_json::Value::Null => "-".to_owned(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        outln!("{k:<24} {shown}");
    }
    Ok(())
}
