//! The offline model: a deterministic [`ModelProvider`] for laptops, tests and benchmarks.
//!
//! It reads the same rendered prompts a real model gets. For a generator prompt (a
//! `<generation-context>` block) it composes a message from the best offer, the customer's
//! facts, a retrieved example and the agent's `<style>` settings, and on a retry applies the
//! judge's feedback (shorter, no borrowed phrases). For a judge prompt (a `<judge-context>`
//! block) it scores the message with a fixed rubric and answers the JSON verdict the judge
//! expects. The same prompt always gives the same answer; the temperature only selects among
//! phrasings (0 = always the first). It never follows instructions found in the context data.

use async_trait::async_trait;
use regex::Regex;
use std::sync::OnceLock;
use upsell_core::hash::fnv1a;
use upsell_core::message::{StopReason, TokenUsage};
use upsell_core::ports::{ChatRole, ConverseRequest, ConverseResponse, ModelError, ModelProvider};

use crate::catalogue::contains_words;
use crate::offers::season_name;
use crate::prompt::{
    GENERATION_CONTEXT_TAG, GenerationContext, JUDGE_CONTEXT_TAG, JudgeContext, STYLE_TAG, Style,
    extract_tagged,
};
use upsell_core::features::Season;
use upsell_core::message::JudgeVerdict;

/// Model id the seed agents can use to ask for the offline model explicitly.
pub const OFFLINE_MODEL_ID: &str = "offline";

/// The deterministic offline model.
#[derive(Debug, Clone, Default)]
pub struct OfflineModel;

impl OfflineModel {
    /// A new offline model.
    pub fn new() -> Self {
        OfflineModel
    }
}

/// Rough token count (four characters a token), as the offline model reports usage.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

#[async_trait]
impl ModelProvider for OfflineModel {
    async fn converse(&self, request: &ConverseRequest) -> Result<ConverseResponse, ModelError> {
        let user = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == ChatRole::User)
            .ok_or_else(|| ModelError::InvalidRequest("no user message".into()))?;
        let text = if let Some(json) = extract_tagged(&user.text, JUDGE_CONTEXT_TAG) {
            let ctx: JudgeContext = serde_json::from_str(json).map_err(|e| {
                ModelError::InvalidRequest(format!(
                    "<{JUDGE_CONTEXT_TAG}> is not a judge context: {e}"
                ))
            })?;
            serde_json::to_string(&rubric_verdict(&ctx)).expect("a verdict serialises")
        } else if let Some(json) = extract_tagged(&user.text, GENERATION_CONTEXT_TAG) {
            let ctx: GenerationContext = serde_json::from_str(json).map_err(|e| {
                ModelError::InvalidRequest(format!(
                    "<{GENERATION_CONTEXT_TAG}> is not a generation context: {e}"
                ))
            })?;
            let style = match extract_tagged(&request.system, STYLE_TAG) {
                Some(s) => serde_json::from_str(s).map_err(|e| {
                    ModelError::InvalidRequest(format!("<{STYLE_TAG}> is not a style: {e}"))
                })?,
                None => Style::default(),
            };
            compose(&ctx, &style, request.inference.temperature)
        } else {
            return Err(ModelError::InvalidRequest(format!(
                "the offline model needs a <{GENERATION_CONTEXT_TAG}> or <{JUDGE_CONTEXT_TAG}> block \
                 in the user prompt; render one in the agent's template with `{{{{ ctx | tojson }}}}`"
            )));
        };
        let input: u64 = estimate_tokens(&request.system)
            + request
                .messages
                .iter()
                .map(|m| estimate_tokens(&m.text))
                .sum::<u64>();
        let output = estimate_tokens(&text);
        let stop_reason = if output > u64::from(request.inference.max_tokens) {
            StopReason::MaxTokens
        } else {
            StopReason::EndTurn
        };
        Ok(ConverseResponse {
            text,
            usage: TokenUsage {
                input_tokens: input,
                output_tokens: output,
            },
            stop_reason,
        })
    }
}

fn pick<'a>(options: &[&'a str], seed: u64, temperature: f32) -> &'a str {
    if temperature <= 0.0 || options.len() == 1 {
        options[0]
    } else {
        options[(seed % options.len() as u64) as usize]
    }
}

/// First sentence of a text.
fn first_sentence(text: &str) -> &str {
    text.find(". ").map_or(text, |i| &text[..=i]).trim()
}

/// A phrase from a retrieved example that is safe to borrow: no prices, numbers or names of
/// other services, and not the greeting, offer or sign-off.
fn borrowed_phrase(ctx: &GenerationContext) -> Option<String> {
    let ex = ctx
        .examples
        .iter()
        .find(|e| e.offering.as_deref() == Some(ctx.facts.offer.offering.as_str()))?;
    let body = ex.text.split("## Message").nth(1).unwrap_or(&ex.text);
    body.split_inclusive(['.', '!', '?'])
        .map(str::trim)
        .skip(1)
        .find(|s| {
            let words = s.split_whitespace().count();
            (4..=14).contains(&words)
                && !s
                    .chars()
                    .any(|c| c.is_ascii_digit() || c == '$' || c == '%' || c == '#')
                && !s.contains(':')
                && !s.to_lowercase().contains("reply")
                && !s
                    .to_lowercase()
                    .contains(&ctx.facts.offer.name.to_lowercase())
        })
        .map(str::to_owned)
}

fn hook(ctx: &GenerationContext, seed: u64, temperature: f32) -> String {
    let c = &ctx.facts.customer;
    let offer = &ctx.facts.offer;
    let reasons = offer.reasons.join(" ");
    if reasons.contains("pool") && c.has_pool == Some(true) {
        return "With your pool, a little routine care goes a long way.".into();
    }
    if reasons.contains("pets") && !c.pets.is_empty() {
        return "With pets at home, the yard gets a lot of use.".into();
    }
    if reasons.contains("older home") {
        return "Older homes like yours benefit from regular checks.".into();
    }
    let options: &[&str] = match ctx.facts.season {
        Season::Spring => &[
            "Spring is a good time to get the house and yard ready.",
            "With spring here, now is a good time to plan ahead.",
        ],
        Season::Summer => &[
            "Summer is in full swing, and your home works hard.",
            "With summer here, a little help goes a long way.",
        ],
        Season::Autumn => &[
            "As autumn settles in, now is a good time to get ready for winter.",
            "With autumn here, now is a good time to plan ahead.",
        ],
        Season::Winter => &[
            "Winter is a good time to plan ahead for the house.",
            "With winter here, a little help keeps things simple.",
        ],
    };
    pick(options, seed, temperature).to_owned()
}

/// Composes a generator message from the context and style; applies the previous attempt's
/// feedback on retries. The message reads like a short text from the crew: the greeting runs
/// into the first sentence ("Hi Dana, thanks for 3 years with us."), the offer is introduced
/// as a question or a mention, then its price, one call to action, the sign-off and the
/// opt-out line.
pub fn compose(ctx: &GenerationContext, style: &Style, temperature: f32) -> String {
    let seed = fnv1a(format!("{}#{}", ctx.event_id, ctx.attempt).as_bytes());
    let reasons: Vec<&str> = ctx
        .previous
        .as_ref()
        .map(|p| p.reasons.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let retry = ctx.previous.is_some();
    let offer = &ctx.facts.offer;
    let c = &ctx.facts.customer;

    let greeting = format!("{} {},", style.greeting, c.first_name.trim());
    let loyalty = (style.thank_loyal_customers && c.tenure_years >= 1).then(|| {
        let years = if c.tenure_years == 1 {
            "a year".to_owned()
        } else {
            format!("{} years", c.tenure_years)
        };
        format!("Thanks for {years} with us.")
    });
    // Borrowed phrases are the riskiest part: drop them on any retry.
    let borrowed = (style.use_examples && !retry)
        .then(|| borrowed_phrase(ctx))
        .flatten();
    let hook = hook(ctx, seed, temperature);
    let name = name_in_sentence(&offer.name);
    let ask = pick(
        &[
            "Have you thought about our {name}?",
            "We wanted to mention our {name}.",
        ],
        seed >> 4,
        temperature,
    )
    .replace("{name}", &name);
    // Grounding: what the most similar customers accepted, quoted with the fact's own
    // numbers and only when the fact supports it for the offered service.
    let similar = ctx
        .facts
        .similar_customers
        .as_ref()
        .filter(|s| s.supports(offer.service))
        .map(|s| {
            format!(
                "{} of the {} customers with homes most like yours said yes to it.",
                s.accepted_count(offer.service),
                s.found
            )
        });
    let what = first_sentence(&offer.description).to_owned();
    let price = match &offer.discounted_price {
        Some(d) => format!(
            "Your first visit is {}% off: {d} instead of {} {}.",
            offer.discount_percent, offer.price, offer.price_unit
        ),
        None => format!("It's {} {}.", offer.price, offer.price_unit),
    };
    let cta = pick(
        &[
            "Just reply and we'll book you in for {month}.",
            "Reply and we'll find a time in {month} that suits you.",
        ],
        seed >> 8,
        temperature,
    )
    .replace("{month}", &ctx.facts.booking_month);
    let sign = format!("- {}", style.sign_off.trim_end_matches('.'));

    // Optional sentences in message order, each with its drop rank: when a retry says the
    // message was too long, borrowed phrases go first, then the thanks, the hook and the
    // description.
    let optional: Vec<(usize, String)> = [(1, loyalty), (2, Some(hook)), (0, borrowed)]
        .into_iter()
        .filter_map(|(rank, text)| text.map(|t| (rank, t)))
        .collect();
    let build = |dropped: usize, describe: bool| {
        let mut sentences: Vec<String> = optional
            .iter()
            .filter(|(rank, _)| *rank >= dropped)
            .map(|(_, t)| t.clone())
            .collect();
        sentences.push(ask.clone());
        if let Some(s) = similar.as_ref().filter(|_| dropped <= 2) {
            sentences.push(s.clone());
        }
        if describe && dropped <= 3 {
            sentences.push(what.clone());
        }
        sentences.extend([price.clone(), cta.clone()]);
        // The greeting runs into the first sentence.
        if let Some(first) = sentences.first_mut() {
            *first = lower_first(first);
        }
        let mut parts = vec![greeting.clone()];
        parts.extend(sentences);
        parts.extend([sign.clone(), style.opt_out_line.clone()]);
        parts.join(" ")
    };
    // Like a person writing an SMS, stay within the style's length, leaving out the service
    // description first; after feedback that the message was too long, within 280 characters,
    // dropping parts in rank order.
    let shorten = reasons
        .iter()
        .any(|r| *r == "too-long" || *r == "too-wordy");
    let (limit, tries): (usize, Vec<(usize, bool)>) = if shorten {
        (
            style.max_chars.min(280),
            (0..=4).map(|d| (d, true)).collect(),
        )
    } else {
        (
            style.max_chars,
            vec![(0, true), (0, false), (1, false), (2, false), (4, false)],
        )
    };
    tries
        .into_iter()
        .map(|(d, describe)| build(d, describe))
        .find(|m| m.chars().count() <= limit)
        .unwrap_or_else(|| build(4, false))
}

/// A catalogue name as it reads inside a sentence: "Gutter cleaning" -> "gutter cleaning",
/// while an acronym stays ("HVAC tune-up").
fn name_in_sentence(name: &str) -> String {
    let first_word = name.split_whitespace().next().unwrap_or("");
    let acronym = first_word.chars().filter(|c| c.is_alphabetic()).count() > 1
        && first_word
            .chars()
            .filter(|c| c.is_alphabetic())
            .all(char::is_uppercase);
    if acronym {
        name.to_owned()
    } else {
        lower_first(name)
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn month_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(r"(?i)\b(january|february|march|april|may|june|july|august|september|october|november|december|this week|next week)\b")
            .expect("valid regex")
    })
}

/// The offline judge's rubric (10 points):
/// greeting by first name (2), a true personal or seasonal connection (2), the offer named with
/// its price (2), one call to action with a month (2), concise (at most 280 characters: 1; at
/// most 6 sentences: 1). Approved when the score reaches the threshold.
pub fn rubric_verdict(ctx: &JudgeContext) -> JudgeVerdict {
    let msg = ctx.message.trim();
    let lower = msg.to_lowercase();
    let mut score: u8 = 0;
    let mut reasons = Vec::new();
    let mut feedback = Vec::new();

    let head: String = msg.chars().take(40).collect();
    if !ctx.first_name.is_empty() && contains_words(&head, &ctx.first_name) {
        score += 2;
    } else {
        reasons.push("personalisation-missing");
        feedback.push(format!(
            "greet {} by first name at the start",
            ctx.first_name
        ));
    }
    let season = season_name(ctx.season);
    let connection = [
        season,
        "pool",
        "pet",
        "yard",
        "lawn",
        "home",
        "years with us",
        "a year with us",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if connection {
        score += 2;
    } else {
        reasons.push("generic");
        feedback.push(format!(
            "connect the offer to something true about the customer or the {season}"
        ));
    }
    let named = contains_words(&lower, &ctx.offer.name.to_lowercase());
    let priced = msg.contains(&ctx.offer.price)
        || ctx
            .offer
            .discounted_price
            .as_ref()
            .is_some_and(|d| msg.contains(d.as_str()));
    if named && priced {
        score += 2;
    } else {
        reasons.push("offer-unclear");
        feedback.push(format!(
            "name {} and state its price {} plainly",
            ctx.offer.name, ctx.offer.price
        ));
    }
    let cta = ["reply", "book", "call us", "schedule"]
        .iter()
        .any(|w| lower.contains(w))
        && month_regex().is_match(msg);
    if cta {
        score += 2;
    } else {
        reasons.push("no-call-to-action");
        feedback.push("end with one call to action that names a month".into());
    }
    if msg.chars().count() <= 280 {
        score += 1;
    } else {
        reasons.push("too-wordy");
        feedback.push("say it in at most 280 characters".into());
    }
    let sentences = msg.matches(['.', '!', '?']).count();
    if sentences <= 7 {
        score += 1;
    } else {
        reasons.push("too-wordy");
        feedback.push("use fewer, shorter sentences".into());
    }
    reasons.dedup();
    let approved = score >= ctx.approval_threshold;
    JudgeVerdict {
        score,
        approved,
        reasons: if approved {
            Vec::new()
        } else {
            reasons.into_iter().map(str::to_owned).collect()
        },
        feedback: if feedback.is_empty() {
            "Clear, warm and on-brand.".into()
        } else {
            let mut f = feedback.join("; ");
            f.push('.');
            lower_first(&f)
                .chars()
                .enumerate()
                .map(|(i, ch)| if i == 0 { ch.to_ascii_uppercase() } else { ch })
                .collect()
        },
    }
}
