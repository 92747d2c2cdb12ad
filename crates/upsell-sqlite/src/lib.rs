//! SQLite adapters for the ports of `upsell-core`: the embedded store used on a laptop.
