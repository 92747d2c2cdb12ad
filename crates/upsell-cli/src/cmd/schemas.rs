//! `upsell schemas`: writes the JSON Schemas generated from the core types into `schemas/`, or
//! with `--check` fails when a committed one is missing or stale.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use upsell_core::schema;

use super::Context;

/// Arguments of `upsell schemas`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only check that the files are up to date; write nothing, exit 1 when stale.
    #[arg(long)]
    check: bool,
    /// Schema directory (the repository's `schemas/`).
    #[arg(long, default_value = "schemas", value_name = "DIR")]
    dir: PathBuf,
}

/// Runs the command.
pub fn run(args: Args, _ctx: &Context) -> anyhow::Result<()> {
    if args.check {
        let stale = schema::stale_schemas(|rel| std::fs::read_to_string(args.dir.join(rel)).ok());
        if !stale.is_empty() {
            bail!(
                "{} schema(s) in {} are missing or stale: {}; regenerate with `{}`",
                stale.len(),
                args.dir.display(),
                stale.join(", "),
                schema::REGENERATE_COMMAND
            );
        }
        outln!(
            "{} schemas in {} are up to date",
            schema::all_schemas().len(),
            args.dir.display()
        );
        return Ok(());
    }
    let mut written = 0;
    for (rel, s) in schema::all_schemas() {
        let path = args.dir.join(&rel);
        let text = schema::render(&s);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        outln!("wrote {}", path.display());
        written += 1;
    }
    outln!(
        "{written} schema(s) written, {} up to date, in {}",
        schema::all_schemas().len() - written,
        args.dir.display()
    );
    Ok(())
}
