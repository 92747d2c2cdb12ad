//! Test-only fault injection, compiled only with the `fault-injection` cargo feature (never in
//! a Lambda build nor a default build). When `UPSELL_FAULTS` is set, e.g.
//! `seed=7,throttle=0.05,transient=0.01,invalid=0.01`, [`crate::app::LocalApp::open`] wraps
//! the model provider and the workers the runtime calls:
//!
//! - `throttle`: that share of model calls fails with `ModelError::Throttled` (`ModelThrottled`);
//! - `invalid`: that share of model calls answers something unusable: the generator an empty or
//!   oversized message, the judge text that is not a verdict (`ModelOutputInvalid`);
//! - `transient`: that share of worker invocations fails with `Lambda.ServiceException`, the
//!   error Step Functions raises when the Lambda service fails an invoke.
//!
//! Whether a call fails is a hash of the seed, the call's content and how many times this
//! process has seen that content, so a run is reproducible whatever order concurrent events
//! take. Each injected fault prints one `UPSELL_FAULTS injected <kind> <target>` line on stderr
//! (the fault-injection test kills the process at a seeded one of them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use serde_json::Value;
use upsell_core::guard::MAX_MODEL_ANSWER_BYTES;
use upsell_core::hash::{fnv1a, fnv1a_from};
use upsell_core::ports::{ConverseRequest, ConverseResponse, ModelError, ModelProvider};
use upsell_local::{WorkerFailure, WorkerRegistry};
use upsell_models::prompt::JUDGE_CONTEXT_TAG;

/// The environment variable that turns fault injection on.
pub const FAULTS_ENV: &str = "UPSELL_FAULTS";

/// The error name of an injected worker fault.
pub const LAMBDA_SERVICE_EXCEPTION: &str = "Lambda.ServiceException";

/// Which share of calls fails, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// Seed of every decision.
    pub seed: u64,
    /// Share of model calls throttled.
    pub throttle: f64,
    /// Share of worker invocations failing with `Lambda.ServiceException`.
    pub transient: f64,
    /// Share of model calls answering unusable output.
    pub invalid: f64,
}

impl FaultPlan {
    /// Parses `seed=N,throttle=F,transient=F,invalid=F` (any subset; shares in 0..=1).
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        let mut plan = FaultPlan {
            seed: 0,
            throttle: 0.0,
            transient: 0.0,
            invalid: 0.0,
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                bail!("{FAULTS_ENV}: {part:?} is not key=value");
            };
            if key == "seed" {
                plan.seed = value
                    .parse()
                    .with_context(|| format!("{FAULTS_ENV}: seed {value:?} is not a number"))?;
                continue;
            }
            let share: f64 = value
                .parse()
                .ok()
                .filter(|s: &f64| (0.0..=1.0).contains(s))
                .with_context(|| {
                    format!("{FAULTS_ENV}: {key}={value:?} is not a share between 0 and 1")
                })?;
            match key {
                "throttle" => plan.throttle = share,
                "transient" => plan.transient = share,
                "invalid" => plan.invalid = share,
                other => bail!(
                    "{FAULTS_ENV}: unknown key {other:?} (seed, throttle, transient, invalid)"
                ),
            }
        }
        Ok(plan)
    }

    /// The plan in `UPSELL_FAULTS`, if set.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        match std::env::var(FAULTS_ENV) {
            Ok(spec) => Self::parse(&spec).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// A number in 0..1 drawn from the seed, the kind of fault, the content and the call count.
    fn draw(&self, kind: &str, key: u64, n: u64) -> f64 {
        let mut h = fnv1a(&self.seed.to_le_bytes());
        h = fnv1a_from(h, kind.as_bytes());
        h = fnv1a_from(h, &key.to_le_bytes());
        h = fnv1a_from(h, &n.to_le_bytes());
        // FNV's low bits mix poorly: fold the high half in.
        let mixed = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (mixed >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How many times each content was seen in this process.
#[derive(Debug, Default)]
struct Seen(Mutex<HashMap<u64, u64>>);

impl Seen {
    fn next(&self, key: u64) -> u64 {
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = seen.entry(key).or_default();
        *n += 1;
        *n
    }
}

fn injected(kind: &str, target: &str) {
    eprintln!("{FAULTS_ENV} injected {kind} {target}");
}

/// A model provider that throttles or answers garbage on a seeded share of calls.
pub struct FaultyModel {
    inner: Arc<dyn ModelProvider>,
    plan: FaultPlan,
    seen: Seen,
}

impl FaultyModel {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ModelProvider>, plan: FaultPlan) -> Self {
        FaultyModel {
            inner,
            plan,
            seen: Seen::default(),
        }
    }
}

#[async_trait]
impl ModelProvider for FaultyModel {
    async fn converse(&self, request: &ConverseRequest) -> Result<ConverseResponse, ModelError> {
        let mut key = fnv1a(request.system.as_bytes());
        for m in &request.messages {
            key = fnv1a_from(key, m.text.as_bytes());
        }
        let n = self.seen.next(key);
        let judge = request
            .messages
            .iter()
            .any(|m| m.text.contains(&format!("<{JUDGE_CONTEXT_TAG}>")));
        let target = if judge { "judge" } else { "generator" };
        if self.plan.draw("throttle", key, n) < self.plan.throttle {
            injected("model-throttling", target);
            return Err(ModelError::Throttled(
                "rate exceeded (injected fault)".into(),
            ));
        }
        if self.plan.draw("invalid", key, n) < self.plan.invalid {
            injected("invalid-model-output", target);
            let mut r = self.inner.converse(request).await?;
            r.text = if judge {
                "Looks good to me, ship it!".into()
            } else if key.is_multiple_of(2) {
                "  ".into()
            } else {
                "x".repeat(MAX_MODEL_ANSWER_BYTES + 1)
            };
            return Ok(r);
        }
        self.inner.converse(request).await
    }
}

/// Workers that fail with `Lambda.ServiceException` on a seeded share of invocations.
pub struct FaultyWorkers {
    inner: Arc<dyn WorkerRegistry>,
    plan: FaultPlan,
    seen: Seen,
}

impl FaultyWorkers {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn WorkerRegistry>, plan: FaultPlan) -> Self {
        FaultyWorkers {
            inner,
            plan,
            seen: Seen::default(),
        }
    }
}

#[async_trait]
impl WorkerRegistry for FaultyWorkers {
    async fn invoke(&self, worker: &str, payload: Value) -> Result<Value, WorkerFailure> {
        let key = fnv1a_from(fnv1a(worker.as_bytes()), payload.to_string().as_bytes());
        let n = self.seen.next(key);
        if self.plan.draw("transient", key, n) < self.plan.transient {
            injected("transient-worker-error", worker);
            return Err(WorkerFailure::new(
                LAMBDA_SERVICE_EXCEPTION,
                format!("the Lambda service failed to invoke {worker} (injected fault)"),
            ));
        }
        self.inner.invoke(worker, payload).await
    }

    fn has_worker(&self, worker: &str) -> bool {
        self.inner.has_worker(worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_bad_ones_are_named() {
        let p = FaultPlan::parse("seed=7, throttle=0.05,transient=0.01,invalid=0.01").unwrap();
        assert_eq!(
            p,
            FaultPlan {
                seed: 7,
                throttle: 0.05,
                transient: 0.01,
                invalid: 0.01
            }
        );
        for bad in ["throttle=2", "seed=x", "latency=0.1", "throttle"] {
            let e = FaultPlan::parse(bad).unwrap_err().to_string();
            assert!(e.contains(FAULTS_ENV), "{bad}: {e}");
        }
    }

    #[test]
    fn draws_are_seeded_and_near_their_share() {
        let p = FaultPlan::parse("seed=3,throttle=0.05").unwrap();
        let hits = (0..100_000u64)
            .filter(|k| p.draw("throttle", *k, 1) < p.throttle)
            .count();
        assert!((4_500..5_500).contains(&hits), "{hits}");
        assert_eq!(p.draw("throttle", 9, 1), p.draw("throttle", 9, 1));
        assert_ne!(p.draw("throttle", 9, 1), p.draw("throttle", 9, 2));
        let q = FaultPlan { seed: 4, ..p };
        assert_ne!(p.draw("throttle", 9, 1), q.draw("throttle", 9, 1));
    }
}
