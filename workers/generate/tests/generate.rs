//! Tests of the generate worker: seed agents in a SQLite registry, the offline model and fakes.

use std::sync::Arc;

use async_trait::async_trait;
use generate::{Deps, Input, handle};
use upsell_core::ports::{ConverseRequest, ConverseResponse, ModelError, ModelProvider};
use upsell_models::agents::AgentSelector;
use upsell_models::offline::OfflineModel;
use upsell_models::prompt::PreviousAttempt;
use upsell_models::seed::{seed_agents, seed_request};
use upsell_models::testing::facts;
use upsell_sqlite::SqliteAgentRegistry;

struct Failing(ModelError);

#[async_trait]
impl ModelProvider for Failing {
    async fn converse(&self, _: &ConverseRequest) -> Result<ConverseResponse, ModelError> {
        Err(self.0.clone())
    }
}

fn deps(model: Arc<dyn ModelProvider>) -> Deps {
    let registry = SqliteAgentRegistry::in_memory().unwrap();
    registry
        .seed(&seed_agents(), &seed_request("test"))
        .unwrap();
    Deps {
        registry: Arc::new(registry),
        model,
    }
}

fn input(version: Option<&str>) -> Input {
    Input {
        event_id: "evt-1".into(),
        attempt: 1,
        generator: AgentSelector {
            agent_id: "upsell-generator".into(),
            version: version.map(Into::into),
        },
        facts: facts("gutter_cleaning", 10),
        examples: vec![],
        previous: None,
    }
}

#[tokio::test]
async fn offline_generation_uses_the_context() {
    let d = deps(Arc::new(OfflineModel::new()));
    for version in [None, Some("1.0.0"), Some("1")] {
        let out = handle(input(version), &d).await.unwrap();
        assert_eq!(out.generator.to_string(), "upsell-generator@1.0.0");
        assert_eq!(out.max_attempts, 3);
        assert!(out.message.starts_with("Hi Dana,"), "{}", out.message);
        assert!(
            out.message.to_lowercase().contains("gutter cleaning"),
            "{}",
            out.message
        );
        assert!(
            out.message.contains("10% off") && out.message.contains("$134"),
            "{}",
            out.message
        );
        assert!(out.message.contains("November"), "{}", out.message);
        assert!(
            out.message.ends_with("Reply STOP to opt out."),
            "{}",
            out.message
        );
        assert!(out.usage.input_tokens > 100 && out.usage.output_tokens > 10);
    }
}

#[tokio::test]
async fn feedback_shortens_the_retry() {
    let d = deps(Arc::new(OfflineModel::new()));
    let first = handle(input(None), &d).await.unwrap();
    let mut retry = input(None);
    retry.attempt = 2;
    retry.previous = Some(PreviousAttempt {
        message: first.message.clone(),
        feedback: "too long".into(),
        reasons: vec!["too-long".into()],
    });
    let second = handle(retry, &d).await.unwrap();
    assert_eq!(second.attempt, 2);
    assert!(
        second.message.chars().count() < first.message.chars().count(),
        "{}\n{}",
        first.message,
        second.message
    );
    assert!(second.message.chars().count() <= 280);
}

#[tokio::test]
async fn errors_have_stable_names() {
    let cases = [
        (ModelError::Throttled("429".into()), "ModelThrottled"),
        (ModelError::Transient("503".into()), "ModelTransient"),
        (ModelError::InvalidOutput("?".into()), "ModelOutputInvalid"),
        (
            ModelError::InvalidRequest("no model".into()),
            "InvalidRequest",
        ),
    ];
    for (err, name) in cases {
        let e = handle(input(None), &deps(Arc::new(Failing(err))))
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), name);
    }
    let d = deps(Arc::new(OfflineModel::new()));
    assert_eq!(
        handle(input(Some("9.9.9")), &d)
            .await
            .unwrap_err()
            .error_type(),
        "NotFound"
    );
    assert_eq!(
        handle(input(Some("x.y")), &d)
            .await
            .unwrap_err()
            .error_type(),
        "InvalidRequest"
    );
    let mut judge_as_generator = input(None);
    judge_as_generator.generator.agent_id = "upsell-judge".into();
    assert_eq!(
        handle(judge_as_generator, &d)
            .await
            .unwrap_err()
            .error_type(),
        "InvalidRequest"
    );
}
