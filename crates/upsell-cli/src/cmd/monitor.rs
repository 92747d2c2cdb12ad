//! `upsell monitor`: latency percentiles, approval, error and quarantine rates, rejection
//! reasons and model cost, from the local metric log, and the per-version live counters from
//! the store (docs/monitoring.md).

use std::fmt::Write as _;

use anyhow::Context as _;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use upsell_cli::app::existing_db;
use upsell_cli::dashboard::usd;
use upsell_core::counters::{VersionCounterRow, VersionCounters};
use upsell_core::monitor::{GroupBy, MonitorReport, Percentiles, ReasonCount};
use upsell_models::seed::{GENERATOR_ID, JUDGE_ID};
use upsell_sqlite::SqliteVersionCounters;

use super::Context;

/// Arguments of `upsell monitor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only data points at or after this time: RFC 3339 (2026-12-07T10:00:00Z), a UTC date
    /// (2026-12-07), or an age such as 30m, 24h, 7d.
    #[arg(long, value_name = "T", value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// Only this breakdown: per agent version, per workflow state, or by reason.
    #[arg(long, value_enum)]
    by: Option<By>,
    /// The report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `--by` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum By {
    Version,
    State,
    Reason,
}

impl From<By> for GroupBy {
    fn from(b: By) -> GroupBy {
        match b {
            By::Version => GroupBy::Version,
            By::State => GroupBy::State,
            By::Reason => GroupBy::Reason,
        }
    }
}

/// Parses `--since`: an RFC 3339 time, a UTC date, or an age (`90s`, `30m`, `24h`, `7d`).
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    parse_since_at(s, Utc::now())
}

fn parse_since_at(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    let (number, unit) = s.split_at(s.char_indices().last().map_or(0, |(i, _)| i));
    if let Ok(n) = number.parse::<i64>() {
        let age = match unit {
            "s" => Duration::try_seconds(n),
            "m" => Duration::try_minutes(n),
            "h" => Duration::try_hours(n),
            "d" => Duration::try_days(n),
            _ => None,
        };
        if let Some(age) = age.filter(|_| n >= 0) {
            return Ok(now - age);
        }
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-12-07T10:00:00Z), a date (2026-12-07) \
         or an age (30m, 24h, 7d)"
    ))
}

/// `--json`: the report plus the live counters per version.
#[derive(serde::Serialize)]
struct JsonOut {
    #[serde(flatten)]
    report: MonitorReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_counters: Option<Vec<VersionCounterRow>>,
}

/// The per-version live counters of the generator and the judge, from `<home>/upsell.db`.
fn load_counters(ctx: &Context) -> anyhow::Result<Vec<VersionCounterRow>> {
    let db = existing_db(&ctx.home)?;
    let counters =
        SqliteVersionCounters::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let rt = super::features::runtime()?;
    let mut rows = Vec::new();
    for agent_id in [GENERATOR_ID, JUDGE_ID] {
        let versions = rt
            .block_on(counters.versions(agent_id))
            .with_context(|| format!("reading the counters of {agent_id}"))?;
        rows.extend(
            versions
                .iter()
                .map(|(v, c)| VersionCounterRow::new(agent_id, v, c)),
        );
    }
    Ok(rows)
}

/// Runs the command.
pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let report = super::dashboard::load_report(ctx, args.since)?;
    let report = match args.by {
        Some(by) => report.only(by.into()),
        None => report,
    };
    let counters = match args.by {
        None | Some(By::Version) => Some(load_counters(ctx)?),
        Some(_) => None,
    };
    if args.json {
        let out = JsonOut {
            report,
            version_counters: counters,
        };
        outln!(
            "{}",
            serde_json::to_string(&out).context("writing the report")?
        );
    } else {
        let mut t = text(&report);
        if let Some(rows) = &counters {
            t.push_str(&counters_text(rows));
        }
        outln!("{}", t.trim_end());
    }
    Ok(())
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.0}"),
        Some(_) => "slower".to_owned(),
        None => "-".to_owned(),
    }
}

/// The live counters as a text table.
fn counters_text(rows: &[VersionCounterRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nLive counters per agent version (all time, from the store; latency bucket bounds)"
    );
    if rows.is_empty() {
        let _ = writeln!(out, "  none");
        return out;
    }
    let _ = writeln!(
        out,
        "  {:<18} {:<9} {:>8} {:>8} {:>6} {:>8} {:>9} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8} {:>10}",
        "AGENT",
        "VERSION",
        "APPROVED",
        "REJECTED",
        "FAILED",
        "APPROVAL",
        "RESPONSES",
        "ACCEPTED",
        "ERRORS",
        "SCORE",
        "P50 MS",
        "P95 MS",
        "P99 MS",
        "COST"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "  {:<18} {:<9} {:>8} {:>8} {:>6} {:>8} {:>9} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8} {:>10}",
            r.agent_id,
            r.version,
            r.approvals,
            r.rejections,
            r.errors,
            rate(r.approval_rate),
            r.accepted + r.declined + r.no_answer + r.opted_out,
            rate(r.acceptance_rate),
            rate(r.error_rate),
            r.mean_score
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}")),
            ms(r.latency_p50_ms),
            ms(r.latency_p95_ms),
            ms(r.latency_p99_ms),
            usd(r.cost_usd)
        );
    }
    out
}

fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn p3(p: Option<&Percentiles>) -> String {
    p.map_or_else(
        || format!("{:>8} {:>8} {:>8}", "-", "-", "-"),
        |p| format!("{:>8.1} {:>8.1} {:>8.1}", p.p50, p.p95, p.p99),
    )
}

fn reasons(out: &mut String, title: &str, list: &[ReasonCount]) {
    let _ = writeln!(out, "\n{title}");
    if list.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for c in list {
        let _ = writeln!(
            out,
            "  {:<36} {:>8} {:>7.1}%",
            c.reason,
            c.count,
            c.share * 100.0
        );
    }
}

/// The report as text tables.
fn text(r: &MonitorReport) -> String {
    let mut out = String::new();
    let s = &r.summary;
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    match (r.first, r.last) {
        (Some(f), Some(l)) => {
            let _ = writeln!(
                out,
                "{} data points from {} to {} UTC{}",
                r.data_points,
                fmt(f),
                fmt(l),
                r.since
                    .map_or_else(String::new, |t| format!(" (since {} UTC)", fmt(t)))
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "no data points{} (metrics are recorded by `upsell run`)",
                r.since
                    .map_or_else(String::new, |t| format!(" since {} UTC", fmt(t)))
            );
        }
    }
    let _ = writeln!(
        out,
        "events {}  approved {}  rejected {}  failed {}  quarantined {}  skipped {}",
        s.events, s.approved, s.rejected, s.failed, s.quarantined, s.skipped
    );
    let _ = writeln!(
        out,
        "approval rate {}  error rate {}  quarantine rate {}  worker errors {}",
        rate(s.approval_rate),
        rate(s.error_rate),
        rate(s.quarantine_rate),
        s.worker_errors
    );
    let _ = writeln!(
        out,
        "model cost {} ({} per 1,000 messages)  tokens in {} out {}",
        usd(s.cost_usd),
        s.cost_per_1000_messages.map_or_else(|| "-".to_owned(), usd),
        s.input_tokens,
        s.output_tokens
    );
    if !r.cost_by_day.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<12} {:>12} {:>9} {:>14}",
            "DAY (UTC)", "COST", "MESSAGES", "PER 1,000 MSG"
        );
        for d in &r.cost_by_day {
            let _ = writeln!(
                out,
                "{:<12} {:>12} {:>9} {:>14}",
                d.day.to_string(),
                usd(d.cost_usd),
                d.messages,
                d.cost_per_1000_messages.map_or_else(|| "-".to_owned(), usd)
            );
        }
    }
    if r.by_version.as_ref().is_some_and(Vec::is_empty) {
        let _ = writeln!(out, "\nno data points by agent version");
    }
    if let Some(rows) = r.by_version.as_ref().filter(|v| !v.is_empty()) {
        let _ = writeln!(
            out,
            "\n{:<22} {:<10} {:<12} {:>7} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>8} {:>7} {:>10}",
            "AGENT",
            "VERSION",
            "STATE",
            "CALLS",
            "P50 ms",
            "P95 ms",
            "P99 ms",
            "APPR",
            "REJ",
            "FAIL",
            "APPROVAL",
            "ERRORS",
            "COST"
        );
        for v in rows {
            let states: Vec<_> = if v.latency.is_empty() {
                vec![None]
            } else {
                v.latency.iter().map(Some).collect()
            };
            for (i, l) in states.into_iter().enumerate() {
                let head = if i == 0 {
                    format!(
                        "{:>6} {:>6} {:>6} {:>8} {:>7} {:>10}",
                        v.approved,
                        v.rejected,
                        v.failed,
                        rate(v.approval_rate),
                        rate(v.error_rate),
                        usd(v.cost_usd)
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "{:<22} {:<10} {:<12} {:>7} {} {}",
                    v.agent_id,
                    v.agent_version,
                    l.map_or("-", |l| l.state.as_str()),
                    l.map_or(0, |l| l.latency.count),
                    p3(l.map(|l| &l.latency)),
                    head
                );
            }
        }
    }
    if r.by_state.as_ref().is_some_and(Vec::is_empty) {
        let _ = writeln!(out, "\nno data points by state");
    }
    if let Some(rows) = r.by_state.as_ref().filter(|v| !v.is_empty()) {
        let _ = writeln!(
            out,
            "\n{:<14} {:>7} {:>8} {:>8} {:>8} {:>9} {:>7} {:>7} {:>10}  TOP ERROR",
            "STATE", "CALLS", "P50 ms", "P95 ms", "P99 ms", "MAX ms", "ERRORS", "RATE", "COST"
        );
        for st in rows {
            let _ = writeln!(
                out,
                "{:<14} {:>7} {} {:>9} {:>7} {:>7} {:>10}  {}",
                st.state,
                st.latency.as_ref().map_or(0, |p| p.count),
                p3(st.latency.as_ref()),
                st.latency
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |p| format!("{:.1}", p.max)),
                st.errors,
                rate(st.error_rate),
                usd(st.cost_usd),
                st.errors_by_type
                    .first()
                    .map_or_else(String::new, |e| format!("{} ({})", e.reason, e.count))
            );
        }
    }
    if let Some(b) = &r.by_reason {
        reasons(&mut out, "REJECTION REASONS", &b.rejected);
        reasons(&mut out, "QUARANTINE REASONS", &b.quarantined);
        reasons(&mut out, "SKIP REASONS", &b.skipped);
        reasons(&mut out, "FAILURES BY ERROR", &b.failed);
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use upsell_core::ports::MetricDatum;
    use upsell_core::ports::dims::{AGENT_ID, AGENT_VERSION, REASON};
    use upsell_core::telemetry::{MESSAGES_APPROVED, MESSAGES_REJECTED, STATE, STATE_LATENCY};

    use super::*;

    #[test]
    fn since_accepts_times_dates_and_ages() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        let p = |s| parse_since_at(s, now);
        assert_eq!(
            p("2026-12-07T10:30:00Z"),
            Ok(Utc.with_ymd_and_hms(2026, 12, 7, 10, 30, 0).unwrap())
        );
        assert_eq!(
            p("2026-12-07T10:30:00+01:00"),
            Ok(Utc.with_ymd_and_hms(2026, 12, 7, 9, 30, 0).unwrap())
        );
        assert_eq!(
            p("2026-12-01"),
            Ok(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(p("24h"), Ok(now - Duration::hours(24)));
        assert_eq!(p("7d"), Ok(now - Duration::days(7)));
        assert_eq!(p("30m"), Ok(now - Duration::minutes(30)));
        for bad in ["", "yesterday", "7w", "-5h", "h", "2026-13-01", "ü"] {
            let e = p(bad).unwrap_err();
            assert!(e.contains("is not a time"), "{bad}: {e}");
        }
    }

    #[test]
    fn text_has_every_section_or_only_the_chosen_one() {
        let t = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
        let data = vec![
            MetricDatum::at(STATE_LATENCY.name, 12.0, STATE_LATENCY.unit, t)
                .with_dim(STATE, "Generate")
                .with_dim(AGENT_ID, "upsell-generator")
                .with_dim(AGENT_VERSION, "1.0.0"),
            MetricDatum::at(MESSAGES_APPROVED.name, 1.0, MESSAGES_APPROVED.unit, t)
                .with_dim(AGENT_ID, "upsell-generator")
                .with_dim(AGENT_VERSION, "1.0.0"),
            MetricDatum::at(MESSAGES_REJECTED.name, 1.0, MESSAGES_REJECTED.unit, t)
                .with_dim(AGENT_ID, "upsell-generator")
                .with_dim(AGENT_VERSION, "1.0.0")
                .with_dim(REASON, "OffBrand"),
        ];
        let r = MonitorReport::build(&data, None);
        let all = text(&r);
        assert!(all.contains("approval rate 50.0%"), "{all}");
        assert!(all.contains("upsell-generator"), "{all}");
        assert!(all.contains("\nGenerate "), "{all}");
        assert!(all.contains("OffBrand"), "{all}");
        let only = text(&r.only(GroupBy::Reason));
        assert!(
            only.contains("OffBrand") && !only.contains("VERSION"),
            "{only}"
        );
        let empty = text(&MonitorReport::build(&[], None));
        assert!(empty.starts_with("no data points"), "{empty}");
        assert!(empty.contains("no data points by agent version"), "{empty}");
    }
}
