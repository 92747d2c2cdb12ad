//! `upsell`: the command-line entry point for running upsell-flow locally.

fn main() -> anyhow::Result<()> {
    Ok(())
}
