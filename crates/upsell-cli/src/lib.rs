//! The `upsell` command-line tool as a library, so integration tests and benchmarks can drive
//! the local application ([`app::LocalApp`]) without spawning the binary.

pub mod app;
pub mod dashboard;
pub mod drift_monitor;
pub mod evaluation;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod rollout;
pub mod serve;
