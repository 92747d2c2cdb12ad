//! The offline model through the real seed templates: generator and judge agree with the brand
//! checks, and a too-long first attempt is fixed on the retry.

use upsell_core::ports::{ChatMessage, ChatRole, ConverseRequest, ModelProvider};
use upsell_models::brand::{BrandRules, CheckContext, check_message};
use upsell_models::catalogue::Catalogue;
use upsell_models::offline::OfflineModel;
use upsell_models::prompt::{Example, GenerationContext, render};
use upsell_models::seed::seed_agents;
use upsell_models::testing::facts;

async fn generate(ctx: &GenerationContext) -> String {
    let spec = &seed_agents()[0];
    let req = ConverseRequest {
        model_id: spec.model_id.clone(),
        system: render("system", &spec.prompt.system, ctx).unwrap(),
        messages: vec![ChatMessage {
            role: ChatRole::User,
            text: render("user", &spec.prompt.user, ctx).unwrap(),
        }],
        inference: spec.config.clone(),
    };
    OfflineModel::new().converse(&req).await.unwrap().text
}

#[tokio::test]
async fn every_offering_gets_an_on_brand_message() {
    for o in Catalogue::builtin().offerings() {
        for discount in [0, 10] {
            let ctx = GenerationContext {
                event_id: format!("e-{}", o.offering),
                attempt: 1,
                facts: facts(&o.offering, discount),
                examples: vec![],
                previous: None,
            };
            let msg = generate(&ctx).await;
            let f = &ctx.facts;
            let v = check_message(
                &msg,
                &CheckContext {
                    first_name: &f.customer.first_name,
                    offering: &f.offer.offering,
                    discount_percent: discount,
                    services_bought: &f.customer.services_bought,
                    private_terms: &[],
                },
                BrandRules::builtin(),
                Catalogue::builtin(),
            );
            // Long catalogue names may overflow the SMS limit on the first attempt; nothing else may fail.
            assert!(
                v.iter().all(|x| x.code == "too-long"),
                "{}: {msg}\n{v:?}",
                o.offering
            );
        }
    }
}

#[tokio::test]
async fn examples_shape_the_first_attempt_and_retries_drop_them() {
    let mut ctx = GenerationContext {
        event_id: "e1".into(),
        attempt: 1,
        facts: facts("gutter_cleaning", 0),
        examples: vec![],
        previous: None,
    };
    ctx.examples.push(Example {
        text: "Hi Tom, hello. Clear gutters keep the basement dry all winter long. Reply to book."
            .into(),
        offering: Some("gutter_cleaning".into()),
        source: None,
        score: 1.0,
    });
    let first = generate(&ctx).await;
    assert!(
        first.contains("Clear gutters keep the basement dry"),
        "{first}"
    );
    ctx.attempt = 2;
    ctx.previous = Some(upsell_models::prompt::PreviousAttempt {
        message: first.clone(),
        feedback: "shorter".into(),
        reasons: vec!["too-long".into()],
    });
    let second = generate(&ctx).await;
    assert!(!second.contains("basement"), "{second}");
    assert!(second.len() < first.len());
}
