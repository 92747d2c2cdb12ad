//! Domain model and ports of upsell-flow.
//!
//! This crate knows nothing about AWS, SQLite or the network: it holds the types that cross
//! every boundary (events, features, agents, messages) and the port traits that adapters implement.

pub mod agent;
pub mod counters;
#[cfg(feature = "contract")]
pub mod counters_contract;
pub mod drift;
pub mod evaluation;
pub mod events;
pub mod features;
#[cfg(feature = "contract")]
pub mod features_contract;
pub mod grounding;
pub mod guard;
pub mod hash;
pub mod ingest;
#[cfg(feature = "contract")]
pub mod ingest_contract;
pub mod kb;
pub mod message;
pub mod monitor;
pub mod outbound;
pub mod outcome;
pub mod paired_stats;
pub mod ports;
pub mod rebuild;
pub mod registry;
#[cfg(feature = "contract")]
pub mod registry_contract;
pub mod rollout;
pub mod sample;
pub mod schema;
pub mod stats;
pub mod telemetry;
pub mod validate;
pub mod worker;
