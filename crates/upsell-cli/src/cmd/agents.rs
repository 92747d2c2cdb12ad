//! `upsell agents`: manage the agent registry (register, list, show, diff, promote, retire,
//! history), locally (the SQLite registry in `--home`) or, with the `aws` feature, on the
//! DynamoDB registry table of a deployed stack (`--aws-table`). Every change goes through the
//! registry port's `register` / `transition`, so the rules and the history are the same in
//! both worlds.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use semver::Version;
use serde_json::json;
use upsell_core::agent::{AgentSpec, AgentStatus, parse_version};
use upsell_core::ports::AgentRegistry;
use upsell_core::registry::{Actor, ActorKind, RegisterRequest, TransitionRequest};
use upsell_models::seed::{load_agent_dir, seed_agents, seed_request};
use upsell_sqlite::SqliteAgentRegistry;

use super::Context;

/// Arguments of `upsell agents`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: Sub,
}

/// Which registry: the local one in `--home`, or a DynamoDB table.
#[derive(Debug, clap::Args)]
struct Target {
    /// Use the DynamoDB registry table of a deployed stack (stack output
    /// AgentRegistryTableName) instead of the local registry. Needs the `aws` feature.
    #[arg(
        long,
        global = true,
        env = "UPSELL_AGENT_REGISTRY_TABLE",
        value_name = "TABLE"
    )]
    aws_table: Option<String>,
    /// AWS region of the table (default: the SDK's usual configuration).
    #[arg(long, global = true, env = "AWS_REGION", value_name = "REGION")]
    aws_region: Option<String>,
    /// Endpoint URL for DynamoDB (e.g. a local moto server).
    #[arg(
        long,
        global = true,
        env = "UPSELL_AWS_ENDPOINT_URL",
        value_name = "URL"
    )]
    aws_endpoint: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Register a new version from an agent folder (agent.json, system.jinja, user.jinja).
    Register {
        /// The folder, e.g. agents/upsell-generator/1.1.0.
        dir: PathBuf,
        /// Why, for the history (default: "registered from DIR").
        #[arg(long)]
        reason: Option<String>,
        /// Print the registered version as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every version of every agent, with status, traffic weight and performance.
    List {
        /// One JSON spec per line.
        #[arg(long)]
        json: bool,
    },
    /// One agent (its versions and routing) or one version (everything, templates included).
    Show {
        /// `ID` or `ID@VERSION`.
        agent: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// What changed between two versions: settings and templates, line by line.
    Diff {
        /// `ID@VERSION`.
        a: String,
        /// `ID@VERSION` (or just `VERSION`, same agent).
        b: String,
        /// As JSON (changed fields, and unified diffs of the templates).
        #[arg(long)]
        json: bool,
    },
    /// Move a version one step up: draft -> evaluating; evaluating or canary -> canary at
    /// --weight (below 100) or production at 100, which retires the previous production version.
    Promote {
        /// `ID@VERSION`.
        agent: String,
        /// Traffic share after the promotion, 0 ..= 100 (100 = production).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
        weight: u8,
        /// Why, for the history.
        #[arg(long)]
        reason: Option<String>,
        /// Print the changed versions as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take a version out of service for good (retired, or rolled-back with --rolled-back).
    Retire {
        /// `ID@VERSION`.
        agent: String,
        /// Record it as rolled back (taken out because it misbehaved) rather than retired.
        #[arg(long)]
        rolled_back: bool,
        /// Why, for the history.
        #[arg(long)]
        reason: Option<String>,
        /// Print the version as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every recorded transition of an agent: when, version, from, to, weight, who, why.
    History {
        /// Agent id.
        agent: String,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
}

/// Parses `ID` or `ID@VERSION`.
fn parse_ref(s: &str) -> anyhow::Result<(String, Option<Version>)> {
    match s.split_once('@') {
        None => Ok((s.to_owned(), None)),
        Some((id, v)) => {
            let version = parse_version(v)
                .with_context(|| format!("{s:?}: {v:?} is not a version (e.g. 1.2.0)"))?;
            Ok((id.to_owned(), Some(version)))
        }
    }
}

fn parse_exact(s: &str) -> anyhow::Result<(String, Version)> {
    match parse_ref(s)? {
        (id, Some(v)) => Ok((id, v)),
        (id, None) => bail!("{s:?} needs a version: {id}@VERSION"),
    }
}

/// The person running the command, for the history.
fn user() -> Actor {
    let name = ["UPSELL_ACTOR", "USER", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into());
    Actor::new(ActorKind::User, name)
}

/// Opens the registry the target names.
async fn open(target: &Target, ctx: &Context) -> anyhow::Result<Arc<dyn AgentRegistry>> {
    if let Some(table) = &target.aws_table {
        return open_aws(table, target).await;
    }
    std::fs::create_dir_all(&ctx.home)
        .with_context(|| format!("creating {}", ctx.home.display()))?;
    let db = ctx.home.join(upsell_cli::app::DB_FILE);
    let registry =
        SqliteAgentRegistry::open(&db).with_context(|| format!("opening {}", db.display()))?;
    // The same first-run seeding as `upsell run`: a fresh home lists the seed agents.
    registry
        .seed(
            &seed_agents(),
            &seed_request(&ctx.home.display().to_string()),
        )
        .context("loading the seed agents into the registry")?;
    Ok(Arc::new(registry))
}

#[cfg(feature = "aws")]
async fn open_aws(table: &str, target: &Target) -> anyhow::Result<Arc<dyn AgentRegistry>> {
    let mut builder = upsell_aws::AwsContext::builder().agent_registry_table(table);
    if let Some(region) = &target.aws_region {
        builder = builder.region(region);
    }
    if let Some(endpoint) = &target.aws_endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    let ctx = builder.build().await;
    Ok(Arc::new(ctx.agent_registry()?))
}

#[cfg(not(feature = "aws"))]
async fn open_aws(table: &str, _: &Target) -> anyhow::Result<Arc<dyn AgentRegistry>> {
    bail!(
        "--aws-table {table}: this upsell was built without the `aws` feature; build it with `cargo build -p upsell-cli --features aws` (or unset UPSELL_AGENT_REGISTRY_TABLE to use the local registry)"
    )
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let rt = super::features::runtime()?;
    rt.block_on(async {
        let registry = open(&args.target, ctx).await?;
        run_on(&*registry, args.command).await
    })
}

fn weight_text(s: &AgentSpec) -> String {
    if s.status.serves_traffic() {
        format!("{}%", s.traffic_weight)
    } else {
        "-".into()
    }
}

fn perf_text(s: &AgentSpec) -> String {
    s.performance.as_ref().map_or_else(
        || "-".into(),
        |p| {
            format!(
                "{:.0}% approved, score {:.1} (n={})",
                p.approval_rate * 100.0,
                p.avg_score,
                p.sample_size
            )
        },
    )
}

async fn run_on(r: &dyn AgentRegistry, command: Sub) -> anyhow::Result<()> {
    match command {
        Sub::Register { dir, reason, json } => {
            let spec = load_agent_dir(&dir)?;
            let request = RegisterRequest {
                reason: reason.unwrap_or_else(|| format!("registered from {}", dir.display())),
                actor: user(),
            };
            r.register(&spec, &request)
                .await
                .with_context(|| format!("registering {}", spec.agent_ref()))?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&spec)?);
            } else {
                outln!(
                    "registered {} ({}, {})",
                    spec.agent_ref(),
                    serde_json::to_value(spec.role)?.as_str().unwrap_or("?"),
                    spec.status.as_str()
                );
            }
        }
        Sub::List { json } => {
            let all = r.list_all().await?;
            if json {
                for s in &all {
                    outln!("{}", serde_json::to_string(s)?);
                }
                return Ok(());
            }
            if all.is_empty() {
                outln!("no agents registered");
                return Ok(());
            }
            outln!(
                "{:<20} {:<10} {:<10} {:<12} {:>6}  PERFORMANCE",
                "AGENT",
                "VERSION",
                "ROLE",
                "STATUS",
                "WEIGHT"
            );
            for s in &all {
                outln!(
                    "{:<20} {:<10} {:<10} {:<12} {:>6}  {}",
                    s.agent_id,
                    s.version.to_string(),
                    serde_json::to_value(s.role)?.as_str().unwrap_or("?"),
                    s.status.as_str(),
                    weight_text(s),
                    perf_text(s)
                );
            }
        }
        Sub::Show { agent, json } => {
            let (id, version) = parse_ref(&agent)?;
            match version {
                Some(v) => {
                    let spec = r.get(&id, &v).await?;
                    if json {
                        outln!("{}", serde_json::to_string_pretty(&spec)?);
                    } else {
                        show_version(&spec)?;
                    }
                }
                None => {
                    let versions = r.list_versions(&id).await?;
                    if versions.is_empty() {
                        bail!("agent {id:?} is not registered (see `upsell agents list`)");
                    }
                    let routing = r.routing(&id).await?;
                    if json {
                        let out = json!({
                            "agentId": id,
                            "routing": {
                                "productionVersion": routing.production_version.map(|v| v.to_string()),
                                "canaryVersion": routing.canary_version.map(|v| v.to_string()),
                                "canaryWeight": routing.canary_weight,
                            },
                            "versions": versions,
                        });
                        outln!("{}", serde_json::to_string_pretty(&out)?);
                        return Ok(());
                    }
                    let opt =
                        |v: &Option<Version>| v.as_ref().map_or("-".into(), |v| v.to_string());
                    outln!("agent       {id}");
                    outln!("production  {}", opt(&routing.production_version));
                    outln!(
                        "canary      {}{}",
                        opt(&routing.canary_version),
                        if routing.canary_version.is_some() {
                            format!(" at {}%", routing.canary_weight)
                        } else {
                            String::new()
                        }
                    );
                    outln!(
                        "\n{:<10} {:<12} {:>6}  DESCRIPTION",
                        "VERSION",
                        "STATUS",
                        "WEIGHT"
                    );
                    for s in &versions {
                        outln!(
                            "{:<10} {:<12} {:>6}  {}",
                            s.version.to_string(),
                            s.status.as_str(),
                            weight_text(s),
                            s.description
                        );
                    }
                }
            }
        }
        Sub::Diff { a, b, json } => {
            let (id, va) = parse_exact(&a)?;
            let (id_b, vb) = match parse_ref(&b)? {
                (id_b, Some(v)) => (id_b, v),
                (v, None) => (
                    id.clone(),
                    parse_version(&v)
                        .with_context(|| format!("{b:?} is neither ID@VERSION nor a version"))?,
                ),
            };
            let sa = r.get(&id, &va).await?;
            let sb = r.get(&id_b, &vb).await?;
            let d = Diff::of(&sa, &sb)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&d.to_json())?);
            } else {
                outln!("{}", d.render());
            }
        }
        Sub::Promote {
            agent,
            weight,
            reason,
            json,
        } => {
            let (id, v) = parse_exact(&agent)?;
            let current = r.get(&id, &v).await?;
            let actor = user();
            let reason = reason.unwrap_or_else(|| "promoted with the CLI".into());
            let (to, weight) = match current.status {
                AgentStatus::Draft => (AgentStatus::Evaluating, 0),
                AgentStatus::Evaluating | AgentStatus::Canary if weight < 100 => {
                    (AgentStatus::Canary, weight)
                }
                AgentStatus::Evaluating | AgentStatus::Canary => (AgentStatus::Production, 100),
                AgentStatus::Production => bail!("{id}@{v} is already in production"),
                st => bail!(
                    "{id}@{v} is {} (final): register a new version instead",
                    st.as_str()
                ),
            };
            let mut changed = vec![
                r.transition(
                    &id,
                    &v,
                    &TransitionRequest {
                        to,
                        weight,
                        reason: reason.clone(),
                        actor: actor.clone(),
                    },
                )
                .await?,
            ];
            if to == AgentStatus::Production {
                // The version it replaces leaves service.
                for old in r.list_versions(&id).await? {
                    if old.version != v && old.status.serves_traffic() {
                        let request = TransitionRequest {
                            to: AgentStatus::Retired,
                            weight: 0,
                            reason: format!("superseded by {id}@{v}"),
                            actor: actor.clone(),
                        };
                        changed.push(r.transition(&id, &old.version, &request).await?);
                    }
                }
            }
            print_changed(&changed, json)?;
        }
        Sub::Retire {
            agent,
            rolled_back,
            reason,
            json,
        } => {
            let (id, v) = parse_exact(&agent)?;
            let to = if rolled_back {
                AgentStatus::RolledBack
            } else {
                AgentStatus::Retired
            };
            let request = TransitionRequest {
                to,
                weight: 0,
                reason: reason.unwrap_or_else(|| format!("{} with the CLI", to.as_str())),
                actor: user(),
            };
            let spec = r.transition(&id, &v, &request).await?;
            print_changed(&[spec], json)?;
            let routing = r.routing(&id).await?;
            if routing.production_version.is_none() && !json {
                eprintln!(
                    "warning: {id} has no production version now; events that need it will fail until one is promoted"
                );
            }
        }
        Sub::History { agent, json } => {
            let history = r.history(&agent).await?;
            if json {
                for t in &history {
                    outln!("{}", serde_json::to_string(t)?);
                }
                return Ok(());
            }
            if history.is_empty() {
                outln!("no history for {agent:?} (see `upsell agents list`)");
                return Ok(());
            }
            outln!(
                "{:>4} {:<25} {:<9} {:<26} {:<30} REASON",
                "#",
                "AT",
                "VERSION",
                "CHANGE",
                "BY"
            );
            for t in &history {
                let from = t.from.map_or("(registered)".to_owned(), |f| {
                    format!("{} {}%", f.as_str(), t.from_weight)
                });
                outln!(
                    "{:>4} {:<25} {:<9} {:<26} {:<30} {}",
                    t.sequence,
                    t.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    t.version.to_string(),
                    format!("{from} -> {} {}%", t.to.as_str(), t.to_weight),
                    t.actor.to_string(),
                    t.reason
                );
            }
        }
    }
    Ok(())
}

fn print_changed(changed: &[AgentSpec], json: bool) -> anyhow::Result<()> {
    for s in changed {
        if json {
            outln!("{}", serde_json::to_string(s)?);
        } else {
            outln!(
                "{} is {} ({} of traffic)",
                s.agent_ref(),
                s.status.as_str(),
                weight_text(s)
            );
        }
    }
    Ok(())
}

fn show_version(s: &AgentSpec) -> anyhow::Result<()> {
    outln!("agent       {}", s.agent_ref());
    outln!(
        "role        {}",
        serde_json::to_value(s.role)?.as_str().unwrap_or("?")
    );
    outln!(
        "status      {} ({} of traffic)",
        s.status.as_str(),
        weight_text(s)
    );
    if !s.description.is_empty() {
        outln!("about       {}", s.description);
    }
    outln!("model       {}", s.model_id);
    outln!(
        "sampling    temperature {}, top-p {}, max tokens {}",
        s.config.temperature,
        s.config.top_p.map_or("-".into(), |p| p.to_string()),
        s.config.max_tokens
    );
    outln!("attempts    {}", s.max_attempts);
    if let Some(t) = s.approval_threshold {
        outln!("approves at {t}/10");
    }
    outln!("registered  {}", s.created_at.to_rfc3339());
    outln!("performance {}", perf_text(s));
    outln!(
        "templates   system {}, user {}",
        upsell_core::registry::template_hash(&s.prompt.system),
        upsell_core::registry::template_hash(&s.prompt.user)
    );
    outln!("\n--- system.jinja\n{}", s.prompt.system.trim_end());
    outln!("\n--- user.jinja\n{}", s.prompt.user.trim_end());
    Ok(())
}

/// What differs between two versions: settings (flattened JSON paths) and templates.
#[derive(Debug)]
struct Diff {
    a: String,
    b: String,
    /// (path, value in a, value in b) for every setting that differs.
    fields: Vec<(String, serde_json::Value, serde_json::Value)>,
    /// (template name, unified diff) for each template that differs.
    templates: Vec<(&'static str, String)>,
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}/{k}"), v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

impl Diff {
    fn of(a: &AgentSpec, b: &AgentSpec) -> anyhow::Result<Diff> {
        let settings = |s: &AgentSpec| -> anyhow::Result<Vec<(String, serde_json::Value)>> {
            // Through the text form, so an f32 reads as written (0.7, not 0.699999988).
            let mut v: serde_json::Value = serde_json::from_str(&serde_json::to_string(s)?)?;
            if let Some(o) = v.as_object_mut() {
                o.remove("prompt");
            }
            let mut out = Vec::new();
            flatten("", &v, &mut out);
            Ok(out)
        };
        let (fa, fb) = (settings(a)?, settings(b)?);
        let mut paths: Vec<&String> = fa.iter().chain(&fb).map(|(p, _)| p).collect();
        paths.sort();
        paths.dedup();
        let get = |f: &[(String, serde_json::Value)], p: &str| {
            f.iter()
                .find(|(q, _)| q == p)
                .map_or(serde_json::Value::Null, |(_, v)| v.clone())
        };
        let fields = paths
            .into_iter()
            .filter_map(|p| {
                let (x, y) = (get(&fa, p), get(&fb, p));
                (x != y).then(|| (p.clone(), x, y))
            })
            .collect();
        let (ra, rb) = (a.agent_ref().to_string(), b.agent_ref().to_string());
        let mut templates = Vec::new();
        for (name, x, y) in [
            ("system.jinja", &a.prompt.system, &b.prompt.system),
            ("user.jinja", &a.prompt.user, &b.prompt.user),
        ] {
            if x != y {
                let text = similar::TextDiff::from_lines(x.as_str(), y.as_str())
                    .unified_diff()
                    .context_radius(2)
                    .header(&format!("{ra}/{name}"), &format!("{rb}/{name}"))
                    .to_string();
                templates.push((name, text));
            }
        }
        Ok(Diff {
            a: ra,
            b: rb,
            fields,
            templates,
        })
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "a": self.a,
            "b": self.b,
            "settings": self.fields.iter().map(|(p, x, y)| json!({"path": p, "a": x, "b": y})).collect::<Vec<_>>(),
            "templates": self.templates.iter().map(|(n, d)| json!({"name": n, "unifiedDiff": d})).collect::<Vec<_>>(),
        })
    }

    fn render(&self) -> String {
        let mut out = format!("{} -> {}\n", self.a, self.b);
        if self.fields.is_empty() && self.templates.is_empty() {
            out.push_str("no differences\n");
            return out;
        }
        if !self.fields.is_empty() {
            out.push_str("\nsettings:\n");
            for (p, x, y) in &self.fields {
                out.push_str(&format!("  {p}: {x} -> {y}\n"));
            }
        }
        for (_, d) in &self.templates {
            out.push('\n');
            out.push_str(d);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upsell_models::seed::seed_agents;

    #[test]
    fn refs_parse_leniently_and_say_what_is_wrong() {
        assert_eq!(parse_ref("g").unwrap(), ("g".into(), None));
        assert_eq!(
            parse_ref("g@1.2").unwrap(),
            ("g".into(), Some(Version::new(1, 2, 0)))
        );
        assert!(format!("{:#}", parse_ref("g@x").unwrap_err()).contains("not a version"));
        assert!(
            parse_exact("g")
                .unwrap_err()
                .to_string()
                .contains("needs a version")
        );
    }

    #[test]
    fn diff_shows_changed_settings_and_template_lines() {
        let a = seed_agents().remove(0);
        let mut b = a.clone();
        b.version = Version::new(1, 1, 0);
        b.config.temperature = 0.3;
        b.prompt.system = a.prompt.system.replacen("warm", "friendly", 1);
        let d = Diff::of(&a, &b).unwrap();
        let paths: Vec<&str> = d.fields.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(paths, ["/config/temperature", "/version"]);
        assert_eq!(
            d.templates.len(),
            usize::from(a.prompt.system.contains("warm"))
        );
        let text = d.render();
        assert!(text.contains("/config/temperature: 0.7"), "{text}");
        if a.prompt.system.contains("warm") {
            assert!(text.contains("+") && text.contains("friendly"), "{text}");
        }
        assert!(
            Diff::of(&a, &a)
                .unwrap()
                .render()
                .contains("no differences")
        );
    }
}
