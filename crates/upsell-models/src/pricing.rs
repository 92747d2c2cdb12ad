//! Estimated model cost: on-demand prices per 1,000 tokens (US dollars, us-east-1, as listed
//! by Amazon Bedrock in 2025). Unknown and local models cost 0.

use upsell_core::agent::AgentRef;
use upsell_core::message::TokenUsage;
use upsell_core::telemetry::{MODEL_COST, MODEL_INPUT_TOKENS, MODEL_OUTPUT_TOKENS};
use upsell_core::worker::Figures;

/// (model id prefix, input $ per 1k tokens, output $ per 1k tokens).
const PRICES: &[(&str, f64, f64)] = &[
    ("amazon.nova-micro", 0.000_035, 0.000_14),
    ("amazon.nova-lite", 0.000_06, 0.000_24),
    ("amazon.nova-pro", 0.000_8, 0.003_2),
    ("anthropic.claude-3-5-haiku", 0.000_8, 0.004),
    ("anthropic.claude-3-haiku", 0.000_25, 0.001_25),
    ("anthropic.claude-3-5-sonnet", 0.003, 0.015),
    ("anthropic.claude-3-7-sonnet", 0.003, 0.015),
    ("meta.llama3-1-8b", 0.000_22, 0.000_22),
    ("meta.llama3-1-70b", 0.000_72, 0.000_72),
];

/// Estimated cost of `usage` on `model_id` (a cross-region prefix like `us.` is ignored).
pub fn cost_usd(model_id: &str, usage: TokenUsage) -> f64 {
    let id = model_id
        .split_once('.')
        .filter(|(p, _)| p.len() == 2)
        .map_or(model_id, |(_, r)| r);
    PRICES
        .iter()
        .find(|(prefix, _, _)| id.starts_with(prefix))
        .map_or(0.0, |(_, i, o)| {
            usage.input_tokens as f64 / 1000.0 * i + usage.output_tokens as f64 / 1000.0 * o
        })
}

/// The figures of one model call by `agent` in `state`: input and output tokens and the cost.
/// A call that used no tokens (none was made) records nothing.
pub fn model_figures(
    out: &mut Figures,
    state: &str,
    agent: &AgentRef,
    model_id: &str,
    usage: TokenUsage,
) {
    if usage.total() == 0 {
        return;
    }
    out.add_for_agent(&MODEL_INPUT_TOKENS, usage.input_tokens as f64, state, agent);
    out.add_for_agent(
        &MODEL_OUTPUT_TOKENS,
        usage.output_tokens as f64,
        state,
        agent,
    );
    out.add_for_agent(&MODEL_COST, cost_usd(model_id, usage), state, agent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_are_priced_and_others_are_free() {
        let u = TokenUsage {
            input_tokens: 1000,
            output_tokens: 1000,
        };
        assert!((cost_usd("amazon.nova-pro-v1:0", u) - 0.004).abs() < 1e-12);
        assert!((cost_usd("us.amazon.nova-pro-v1:0", u) - 0.004).abs() < 1e-12);
        assert_eq!(cost_usd("offline", u), 0.0);
        assert_eq!(cost_usd("llama3.2:3b", u), 0.0);
    }
}
