//! CPU of the model path of one event without the stores: the generate worker (registry
//! lookup, prompt rendering, offline model) followed by the judge worker (brand checks, prompt
//! rendering, offline rubric), for a first attempt and for a retry with feedback. The registry
//! is an in-memory fake so that only the workers' and upsell-models' own work is measured.
//! Run with `cargo bench -p judge --bench worker_path`.

use std::hint::black_box;
use std::sync::Arc;

use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use semver::Version;
use upsell_core::agent::{AgentSpec, PerformanceMetrics};
use upsell_core::ports::{AgentRegistry, PortError};
use upsell_core::registry::{RegisterRequest, Routing, TransitionRecord, TransitionRequest};
use upsell_models::agents::AgentSelector;
use upsell_models::offline::OfflineModel;
use upsell_models::prompt::{Example, PreviousAttempt};
use upsell_models::seed::{GENERATOR_ID, seed_agents};
use upsell_models::testing::facts;

/// The seed agents in memory (reads only).
struct Seeds(Vec<AgentSpec>);

#[async_trait]
impl AgentRegistry for Seeds {
    async fn get(&self, agent_id: &str, version: &Version) -> Result<AgentSpec, PortError> {
        self.0
            .iter()
            .find(|s| s.agent_id == agent_id && s.version == *version)
            .cloned()
            .ok_or_else(|| PortError::NotFound(format!("{agent_id}@{version}")))
    }
    async fn list_versions(&self, agent_id: &str) -> Result<Vec<AgentSpec>, PortError> {
        Ok(self
            .0
            .iter()
            .filter(|s| s.agent_id == agent_id)
            .cloned()
            .collect())
    }
    async fn list_all(&self) -> Result<Vec<AgentSpec>, PortError> {
        Ok(self.0.clone())
    }
    async fn register(&self, _: &AgentSpec, _: &RegisterRequest) -> Result<(), PortError> {
        Err(PortError::Invalid("read-only".into()))
    }
    async fn transition(
        &self,
        _: &str,
        _: &Version,
        _: &TransitionRequest,
    ) -> Result<AgentSpec, PortError> {
        Err(PortError::Invalid("read-only".into()))
    }
    async fn routing(&self, agent_id: &str) -> Result<Routing, PortError> {
        Ok(Routing::of(
            self.0.iter().filter(|s| s.agent_id == agent_id),
        ))
    }
    async fn history(&self, _: &str) -> Result<Vec<TransitionRecord>, PortError> {
        Ok(Vec::new())
    }
    async fn set_performance(
        &self,
        _: &str,
        _: &Version,
        _: &PerformanceMetrics,
    ) -> Result<(), PortError> {
        Err(PortError::Invalid("read-only".into()))
    }
}

fn generate_input(previous: Option<PreviousAttempt>) -> generate::Input {
    generate::Input {
        event_id: "evt-bench-1".into(),
        attempt: if previous.is_some() { 2 } else { 1 },
        generator: AgentSelector {
            agent_id: GENERATOR_ID.into(),
            version: Some("1.0.0".into()),
        },
        facts: facts("gutter_cleaning", 10),
        examples: vec![Example {
            text:
                "Hi Tom, hello. Clear gutters keep the basement dry all winter long. Reply to book."
                    .into(),
            offering: Some("gutter_cleaning".into()),
            source: Some("past-messages/0001.md".into()),
            score: 0.8,
        }],
        previous,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let registry: Arc<dyn AgentRegistry> = Arc::new(Seeds(seed_agents()));
    let model = Arc::new(OfflineModel::new());
    let gen_deps = generate::Deps {
        registry: registry.clone(),
        model: model.clone(),
    };
    let judge_deps = judge::Deps { registry, model };

    let mut group = c.benchmark_group("worker_path");
    group.throughput(Throughput::Elements(1));
    for (name, previous) in [
        ("first_attempt", None),
        (
            "retry",
            Some(PreviousAttempt {
                message: "Hi Dana, a very long message.".into(),
                feedback: "say it in at most 280 characters.".into(),
                reasons: vec!["too-wordy".into()],
            }),
        ),
    ] {
        let input = generate_input(previous);
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let g = generate::handle(black_box(input.clone()), &gen_deps)
                        .await
                        .expect("generates");
                    let j = judge::handle(
                        judge::Input {
                            event_id: g.event_id,
                            attempt: g.attempt,
                            judge: None,
                            facts: input.facts.clone(),
                            generation: judge::Generation {
                                message: g.message,
                                generator: g.generator,
                                usage: g.usage,
                            },
                            history: Vec::new(),
                        },
                        &judge_deps,
                    )
                    .await
                    .expect("judges");
                    black_box(j)
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
