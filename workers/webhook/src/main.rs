//! Lambda entry point of the webhook (feature `lambda`): placeholder replaced below.
fn main() {}
