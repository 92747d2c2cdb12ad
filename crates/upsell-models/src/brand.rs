//! The judge's deterministic brand checks, read from `knowledge-base/brand-rules.json` (the
//! machine-readable form of `knowledge-base/brand/guidelines.md`): banned phrases, length, the
//! customer's first name in the greeting, one catalogue offering at its catalogue price, no
//! personal data beyond the first name, the opt-out line, no pressure tactics; and the guards
//! against hostile or broken models from `upsell_core::guard` (links in any spelling, contact
//! details other than the company's own, payment requests, prices other than the offer's,
//! services not in the catalogue, text addressed to the judge), whose reason codes they keep.
//!
//! Every check runs on every message and all violations are returned, so the generator's next
//! attempt gets complete feedback. A message with any violation is never approved, whatever a
//! model judge says.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use upsell_core::events::Service;

use upsell_core::guard::{self, GuardPolicy};

use crate::catalogue::{Catalogue, contains_words};

const BUILTIN_RULES: &str = include_str!("../../../knowledge-base/brand-rules.json");

/// A banned phrase and the reason code it gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BannedPhrase {
    /// Matched case-insensitively as whole words.
    pub phrase: String,
    /// Reason code, e.g. `too-pushy`.
    pub code: String,
}

/// SMS limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsRules {
    /// Maximum characters, opt-out line included.
    pub max_chars: usize,
}

/// The brand rules file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrandRules {
    /// Version of the guidelines these rules encode.
    pub version: String,
    /// SMS limits.
    pub sms: SmsRules,
    /// The line every message must end with.
    pub opt_out_line: String,
    /// The first name must appear within this many characters from the start.
    pub greeting_within_chars: usize,
    /// At most this many `!`.
    pub max_exclamation_marks: usize,
    /// Largest discount any offer may carry.
    pub max_discount_percent: u8,
    /// Upper-case words that are not shouting.
    #[serde(default)]
    pub allowed_uppercase_words: Vec<String>,
    /// Phrases that are never allowed.
    #[serde(default)]
    pub banned_phrases: Vec<BannedPhrase>,
    /// Services and offers the company does not sell.
    #[serde(default)]
    pub not_offered: Vec<String>,
    /// The company's own contact details (domains, e-mail addresses, phone numbers) a message
    /// may give; none by default, so every link and contact detail is rejected.
    #[serde(default)]
    pub company_contacts: Vec<String>,
}

/// Brand rules that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid brand rules: {0}")]
pub struct BrandRulesError(String);

impl BrandRules {
    /// The rules embedded from `knowledge-base/brand-rules.json` at build time.
    pub fn builtin() -> &'static BrandRules {
        static R: OnceLock<BrandRules> = OnceLock::new();
        R.get_or_init(|| {
            BrandRules::from_json(BUILTIN_RULES).expect("checked by this crate's tests")
        })
    }

    /// Parses a rules file.
    pub fn from_json(text: &str) -> Result<BrandRules, BrandRulesError> {
        let r: BrandRules =
            serde_json::from_str(text).map_err(|e| BrandRulesError(e.to_string()))?;
        if r.opt_out_line.trim().is_empty() {
            return Err(BrandRulesError("optOutLine must not be blank".into()));
        }
        if r.max_discount_percent > 100 {
            return Err(BrandRulesError("maxDiscountPercent must be 0..=100".into()));
        }
        Ok(r)
    }
}

/// What the message is supposed to offer.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckContext<'a> {
    /// The customer's first name.
    pub first_name: &'a str,
    /// Offering id the message must offer.
    pub offering: &'a str,
    /// Discount the offer record allows (0 = none).
    pub discount_percent: u8,
    /// Services the customer already buys: their catalogue names may be mentioned as context.
    pub services_bought: &'a [Service],
    /// Private strings the message must not contain (e.g. the last name), when known.
    pub private_terms: &'a [String],
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Violation {
    /// Reason code, e.g. `too-long`, `wrong-price`, `personal-data`.
    pub code: String,
    /// What is wrong and how to fix it, for the generator's next attempt.
    pub message: String,
}

impl Violation {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Violation {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

struct Patterns {
    email: Regex,
    phone: Regex,
    street: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        email: Regex::new(r"(?i)[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}").expect("valid regex"),
        phone: Regex::new(r"(?:\+?1[\s.-]?)?\(?\b\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}\b")
            .expect("valid regex"),
        street: Regex::new(
            r"\b\d{1,6}\s+(?:[A-Z][a-z]+\s+){1,3}(?:St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Ln|Lane|Dr|Drive|Ct|Court|Way|Pl|Place|Ter|Terrace|Cir|Circle)\b",
        )
        .expect("valid regex"),
    })
}

/// Runs every check; an empty result means the message follows the brand rules.
pub fn check_message(
    message: &str,
    ctx: &CheckContext<'_>,
    rules: &BrandRules,
    catalogue: &Catalogue,
) -> Vec<Violation> {
    let mut v = Vec::new();
    let text = message.trim();
    let lower = text.to_lowercase();
    let p = patterns();

    if text.is_empty() {
        v.push(Violation::new("empty", "the message is empty"));
        return v;
    }
    let chars = text.chars().count();
    if chars > rules.sms.max_chars {
        v.push(Violation::new(
            "too-long",
            format!(
                "the message is {chars} characters; an SMS may have at most {} including the opt-out line",
                rules.sms.max_chars
            ),
        ));
    }

    // Greeting by first name.
    let head: String = text.chars().take(rules.greeting_within_chars).collect();
    if ctx.first_name.trim().is_empty() || !contains_words(&head, ctx.first_name.trim()) {
        v.push(Violation::new(
            "personalisation-missing",
            format!(
                "address the customer by first name ({}) at the start of the message",
                ctx.first_name.trim()
            ),
        ));
    }

    // Banned phrases and pressure tactics.
    for b in &rules.banned_phrases {
        if contains_words(&lower, &b.phrase.to_lowercase()) {
            v.push(Violation::new(
                &b.code,
                format!("remove \"{}\": the brand guidelines forbid it", b.phrase),
            ));
        }
    }
    let bangs = text.matches('!').count();
    if bangs > rules.max_exclamation_marks {
        v.push(Violation::new(
            "too-pushy",
            format!(
                "use at most {} exclamation mark (found {bangs})",
                rules.max_exclamation_marks
            ),
        ));
    }
    let shouted: Vec<&str> = text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| w.chars().count() >= 3 && w.chars().all(char::is_uppercase))
        .filter(|w| !rules.allowed_uppercase_words.iter().any(|a| a == w))
        .collect();
    if !shouted.is_empty() {
        v.push(Violation::new(
            "too-pushy",
            format!("no capital-letter shouting: {}", shouted.join(", ")),
        ));
    }

    // Exactly one catalogue offering: the one offered.
    let offered = catalogue.get(ctx.offering);
    match offered {
        None => v.push(Violation::new(
            "wrong-service",
            format!("offering `{}` is not in the catalogue", ctx.offering),
        )),
        Some(o) => {
            let mentioned = catalogue.mentioned_in_lower(&lower);
            if !mentioned.iter().any(|m| m.offering == o.offering) {
                v.push(Violation::new(
                    "wrong-service",
                    format!(
                        "name the offered service by its catalogue name: \"{}\"",
                        o.name
                    ),
                ));
            }
            let others: Vec<&str> = mentioned
                .iter()
                .filter(|m| m.offering != o.offering && !ctx.services_bought.contains(&m.service))
                // A longer catalogue name containing the offered one is the same mention.
                .filter(|m| !m.name.to_lowercase().contains(&o.name.to_lowercase()))
                .map(|m| m.name.as_str())
                .collect();
            if !others.is_empty() {
                v.push(Violation::new(
                    "multiple-offers",
                    format!(
                        "offer exactly one service; also mentioned: {}",
                        others.join(", ")
                    ),
                ));
            }
            // The guards against hostile or broken models (upsell_core::guard): links,
            // contact details, payment requests, prices, unknown services, text addressed to
            // the judge. They also check the price against the offer.
            let mut trusted: Vec<&str> = catalogue
                .offerings()
                .iter()
                .map(|o| o.name.as_str())
                .collect();
            trusted.push(&o.description);
            trusted.push(&rules.opt_out_line);
            let policy = GuardPolicy {
                trusted_text: trusted,
                company_contacts: &rules.company_contacts,
                price_cents: o.price_cents,
                discount_percent: ctx.discount_percent.min(rules.max_discount_percent),
            };
            for f in guard::check(text, &policy) {
                v.push(Violation::new(f.code, f.message));
            }
        }
    }
    for s in &rules.not_offered {
        if contains_words(&lower, &s.to_lowercase()) {
            v.push(Violation::new(
                "wrong-service",
                format!("\"{s}\" is not something we sell; offer only catalogue services"),
            ));
        }
    }

    // Personal data beyond the first name.
    let mut pii = Vec::new();
    if p.email.is_match(text) {
        pii.push("an email address");
    }
    if p.phone.is_match(text) {
        pii.push("a phone number");
    }
    if p.street.is_match(text) {
        pii.push("a street address");
    }
    if ctx
        .private_terms
        .iter()
        .filter(|t| t.trim().chars().count() >= 2)
        .any(|t| contains_words(&lower, &t.trim().to_lowercase()))
    {
        pii.push("private customer details");
    }
    if !pii.is_empty() {
        v.push(Violation::new(
            "personal-data",
            format!(
                "use no personal data beyond the first name; found {}",
                pii.join(", ")
            ),
        ));
    }

    // Opt-out line last.
    if !text.ends_with(rules.opt_out_line.trim()) {
        v.push(Violation::new(
            "missing-opt-out",
            format!("end the message with \"{}\"", rules.opt_out_line.trim()),
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "Hi Dana, with the leaves coming down, our Gutter cleaning keeps water \
                        flowing away from your home. It is $149 per visit. Reply to book a slot \
                        in October. - The Greenway crew. Reply STOP to opt out.";

    fn ctx() -> CheckContext<'static> {
        CheckContext {
            first_name: "Dana",
            offering: "gutter_cleaning",
            discount_percent: 10,
            services_bought: &[Service::LawnCare],
            private_terms: &[],
        }
    }

    fn codes(msg: &str, ctx: &CheckContext<'_>) -> Vec<String> {
        let mut c: Vec<String> =
            check_message(msg, ctx, BrandRules::builtin(), Catalogue::builtin())
                .into_iter()
                .map(|v| v.code)
                .collect();
        c.sort();
        c.dedup();
        c
    }

    #[test]
    fn builtin_rules_parse() {
        let r = BrandRules::builtin();
        assert_eq!(r.sms.max_chars, 320);
        assert_eq!(r.opt_out_line, "Reply STOP to opt out.");
        assert!(r.banned_phrases.len() > 10);
    }

    #[test]
    fn each_rule_is_caught() {
        let c = ctx();
        let cases: &[(&str, String, &[&str])] = &[
            ("good", GOOD.to_owned(), &[]),
            (
                "discounted price",
                GOOD.replace("$149 per visit", "$134 with 10% off the first visit"),
                &[],
            ),
            (
                "no greeting",
                GOOD.replace("Hi Dana,", "Hello,"),
                &["personalisation-missing"],
            ),
            ("wrong price", GOOD.replace("$149", "$99"), &["wrong-price"]),
            (
                "too much discount",
                GOOD.replace("$149 per visit", "$104 with 30% off"),
                &["wrong-price"],
            ),
            (
                "pushy",
                GOOD.replace("Reply to book", "ACT NOW and reply to book"),
                &["too-pushy"],
            ),
            (
                "bangs",
                GOOD.replace("per visit.", "per visit!!"),
                &["too-pushy"],
            ),
            (
                "no opt out",
                GOOD.replace(" Reply STOP to opt out.", ""),
                &["missing-opt-out"],
            ),
            (
                "email",
                GOOD.replace("Reply to book", "Write to dana.lee@example.com to book"),
                // '@' is outside the characters a message may use.
                &[
                    "contact-details",
                    "link",
                    "personal-data",
                    "unexpected-characters",
                ],
            ),
            (
                "phone",
                GOOD.replace("Reply to book", "Call 555-123-4567 to book"),
                &["contact-details", "personal-data"],
            ),
            (
                "street",
                GOOD.replace("your home", "12 Maple Ave"),
                &["contact-details", "personal-data"],
            ),
            (
                "other offer",
                GOOD.replace("in October.", "in October. Pressure washing is $219 too."),
                &["multiple-offers", "wrong-price"],
            ),
            (
                "not offered",
                GOOD.replace("in October.", "in October, plus roof repair."),
                &["wrong-service"],
            ),
            (
                "missing service",
                GOOD.replace("Gutter cleaning", "gutter work"),
                &["wrong-service"],
            ),
            (
                "too long",
                GOOD.replace("flowing", &"very ".repeat(40)),
                &["too-long"],
            ),
            (
                "privacy",
                GOOD.replace(
                    "Reply to book",
                    "Your lifetime value is high. Reply to book",
                ),
                &["privacy"],
            ),
        ];
        for (name, msg, want) in cases {
            assert_eq!(codes(msg, &c), *want, "case {name}: {msg}");
        }
    }

    #[test]
    fn bought_services_may_be_mentioned_and_private_terms_are_caught() {
        let msg = GOOD.replace("It is", "Like your Lawn mowing, it is");
        assert!(codes(&msg, &ctx()).is_empty(), "{:?}", codes(&msg, &ctx()));
        let private = vec!["Lee".to_owned()];
        let c = CheckContext {
            private_terms: &private,
            ..ctx()
        };
        assert_eq!(
            codes(&GOOD.replace("Hi Dana,", "Hi Dana Lee,"), &c),
            ["personal-data"]
        );
    }
}
