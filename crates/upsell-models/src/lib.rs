//! Model providers that run without AWS, and the shared knowledge the generate and judge steps
//! work from.
//!
//! - [`offline::OfflineModel`]: a deterministic generator and rubric judge that read the same
//!   rendered prompts a real model reads (laptops, tests, benchmarks).
//! - `openai::OpenAiCompatible` (feature `openai`, the local binary only): any
//!   OpenAI-compatible chat server (Ollama, llama.cpp's server) over HTTP.
//! - [`catalogue`], [`offers`], [`brand`]: the service catalogue from the knowledge base, the
//!   offers that suit a customer, and the judge's deterministic brand checks.
//! - [`prompt`]: the template contexts and minijinja rendering; [`seed`]: the seed agents.
//!
//! Bedrock, the production provider, lives in crates/upsell-aws.

pub mod agents;
pub mod brand;
pub mod catalogue;
pub mod offers;
pub mod offline;
#[cfg(feature = "openai")]
pub mod openai;
pub mod pricing;
pub mod prompt;
pub mod seed;
pub mod stub;
pub mod testing;
