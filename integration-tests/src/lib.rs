//! Integration tests of upsell-flow live in `tests/`, one topic module each.
