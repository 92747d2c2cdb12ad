//! `upsell validate`: checks a file of JSON lines (one EventBridge event per line) against the
//! event schemas and normalisation rules, reports every problem of every event with its path,
//! and ends with a summary. Blank lines are skipped; line numbers are the file's own.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde_json::json;
use upsell_core::validate::{self, Problem, RejectReason};

use super::Context;

/// Arguments of `upsell validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON-lines file to check, or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    input: PathBuf,
    /// Print one JSON object per event line,
    /// `{"line":N,"valid":bool,"errors":[{"path":..,"message":..}]}`, then one summary object.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 when any event is invalid (by default invalid events are reported and
    /// the exit status is 0, as the pipeline quarantines them).
    #[arg(long)]
    strict: bool,
}

/// Counts over one run.
#[derive(Debug, Default)]
struct Summary {
    total: usize,
    valid: usize,
    by_reason: BTreeMap<RejectReason, usize>,
    duplicate_ids: usize,
}

impl Summary {
    fn invalid(&self) -> usize {
        self.by_reason.values().sum()
    }
}

/// Runs the command.
pub fn run(args: Args, _ctx: &Context) -> anyhow::Result<()> {
    let (reader, name): (Box<dyn Read>, String) = if args.input.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), "standard input".into())
    } else {
        let f = File::open(&args.input)
            .with_context(|| format!("cannot open {}", args.input.display()))?;
        (Box::new(f), args.input.display().to_string())
    };
    let mut reader = BufReader::new(reader);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let validator = validate::validator();
    let mut summary = Summary::default();
    let mut seen_ids: HashSet<String> = HashSet::new();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read {name}"))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let mut raw: &[u8] = &buf;
        if let Some(r) = raw.strip_suffix(b"\n") {
            raw = r;
        }
        if let Some(r) = raw.strip_suffix(b"\r") {
            raw = r;
        }
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.total += 1;
        let (id, problems): (Option<String>, Vec<Problem>) = match validator.check_bytes(raw) {
            Ok(event) => {
                summary.valid += 1;
                (Some(event.id().to_owned()), Vec::new())
            }
            Err(rej) => {
                *summary.by_reason.entry(rej.reason).or_default() += 1;
                if !args.json {
                    writeln!(out, "line {line_no}: invalid ({})", rej.reason)?;
                    for p in &rej.problems {
                        writeln!(out, "  {p}")?;
                    }
                }
                (rej.event_id, rej.problems)
            }
        };
        if let Some(id) = id
            && !seen_ids.insert(id)
        {
            summary.duplicate_ids += 1;
        }
        if args.json {
            let line = json!({"line": line_no, "valid": problems.is_empty(), "errors": problems});
            writeln!(out, "{line}")?;
        }
    }

    if args.json {
        let by_reason: serde_json::Map<String, serde_json::Value> = summary
            .by_reason
            .iter()
            .map(|(r, n)| (r.as_str().to_owned(), json!(n)))
            .collect();
        let s = json!({"summary": {
            "total": summary.total,
            "valid": summary.valid,
            "invalid": summary.invalid(),
            "invalid_by_reason": by_reason,
            "duplicate_ids": summary.duplicate_ids,
        }});
        writeln!(out, "{s}")?;
    } else {
        writeln!(
            out,
            "{name}: {} events, {} valid, {} invalid",
            summary.total,
            summary.valid,
            summary.invalid()
        )?;
        if !summary.by_reason.is_empty() {
            let parts: Vec<String> = summary
                .by_reason
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            writeln!(out, "invalid by reason: {}", parts.join(", "))?;
        }
        if summary.duplicate_ids > 0 {
            writeln!(
                out,
                "duplicate event ids: {} (redeliveries; the pipeline processes each id once)",
                summary.duplicate_ids
            )?;
        }
    }
    out.flush()?;
    if args.strict && summary.invalid() > 0 {
        bail!(
            "{} of {} events are invalid",
            summary.invalid(),
            summary.total
        );
    }
    Ok(())
}
