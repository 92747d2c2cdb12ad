//! Offers: the catalogue offerings that suit a customer now (not yet bought, in season, offered
//! in their region, fitting the property), ranked, with the discount the offer record allows.
//! The enrich worker computes them; the generate and judge workers and their prompts use them.

use chrono::{Datelike, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use upsell_core::events::{HomeType, Service};
use upsell_core::features::{CustomerFeatures, Season};
use upsell_core::grounding::SimilarCustomers;

use crate::catalogue::{Catalogue, Offering, format_price};

/// Discount given to customers whose recent satisfaction is low (win-back) or who have been
/// with us for two years or more (loyalty); the brand's maximum is 15%.
pub const STANDARD_DISCOUNT_PERCENT: u8 = 10;

/// One offer for one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Offer {
    /// Offering id, e.g. `gutter_cleaning`.
    pub offering: String,
    /// Service family.
    pub service: Service,
    /// Catalogue name.
    pub name: String,
    /// Catalogue price in cents.
    pub price_cents: u64,
    /// Catalogue price as text, e.g. `$149`.
    pub price: String,
    /// What the price buys, e.g. `per visit`.
    pub price_unit: String,
    /// Discount on the first visit the offer allows; 0 = none.
    pub discount_percent: u8,
    /// Discounted first-visit price as text, when there is a discount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discounted_price: Option<String>,
    /// Catalogue description.
    pub description: String,
    /// Why this offer suits the customer, most important first.
    pub reasons: Vec<String>,
    /// Ranking score; higher is better.
    pub score: f64,
}

impl Offer {
    fn from_offering(o: &Offering, discount_percent: u8, reasons: Vec<String>, score: f64) -> Self {
        let discounted_price = (discount_percent > 0)
            .then(|| format_price(o.price_cents * u64::from(100 - discount_percent) / 100));
        Offer {
            offering: o.offering.clone(),
            service: o.service,
            name: o.name.clone(),
            price_cents: o.price_cents,
            price: o.price_text(),
            price_unit: o.price_unit.clone(),
            discount_percent,
            discounted_price,
            description: o.description.clone(),
            reasons,
            score,
        }
    }
}

fn needs_a_yard(s: Service) -> bool {
    matches!(
        s,
        Service::LawnCare
            | Service::TreeTrimming
            | Service::IrrigationService
            | Service::SnowRemoval
    )
}

/// The offers that suit the customer on `date`, best first (at most `limit`).
pub fn compute_offers(
    f: &CustomerFeatures,
    date: NaiveDate,
    catalogue: &Catalogue,
    limit: usize,
) -> Vec<Offer> {
    compute_offers_grounded(f, date, catalogue, limit, None)
}

/// [`compute_offers`] with what similar customers accepted: each offer's score grows by
/// [`SimilarCustomers::offer_bonus`], and an offer the fact supports says so in its reasons.
pub fn compute_offers_grounded(
    f: &CustomerFeatures,
    date: NaiveDate,
    catalogue: &Catalogue,
    limit: usize,
    similar: Option<&SimilarCustomers>,
) -> Vec<Offer> {
    let season = Season::of(date);
    let no_yard = f.home_type == Some(HomeType::Condo) || f.lot_size_sqft == Some(0);
    let discount = if f.satisfaction_avg.is_some_and(|s| s <= 6.0) || f.tenure_days >= 730 {
        STANDARD_DISCOUNT_PERCENT
    } else {
        0
    };
    // Rank first and build only the offers kept (the catalogue has a few dozen offerings).
    let mut ranked: Vec<(&Offering, Vec<String>, f64)> = catalogue
        .offerings()
        .iter()
        .filter(|o| !f.services_bought.contains(&o.service))
        .filter(|o| o.seasons.contains(&season))
        .filter(|o| f.region.is_none_or(|r| o.regions.contains(&r)))
        .filter(|o| !o.requires_pool || f.has_pool == Some(true))
        .filter(|o| !o.requires_pets || f.has_pets == Some(true))
        .filter(|o| !(no_yard && needs_a_yard(o.service)))
        .map(|o| {
            let mut reasons = Vec::new();
            let mut score = 1.0;
            if o.requires_pool {
                reasons.push("the home has a pool".to_owned());
                score += 1.5;
            }
            if o.requires_pets {
                reasons.push("there are pets at home".to_owned());
                score += 1.5;
            }
            if f.lot_size_sqft.is_some_and(|l| l >= 20_000) && needs_a_yard(o.service) {
                reasons.push("a large lot".to_owned());
                score += 0.5;
            }
            if f.home_age_years.is_some_and(|a| a >= 30)
                && matches!(o.service, Service::HvacTuneUp | Service::DuctCleaning)
            {
                reasons.push("an older home".to_owned());
                score += 0.5;
            }
            if o.seasons.len() == 1 {
                reasons.push(format!("{} is its only season", season_name(season)));
                score += 0.75;
            } else {
                reasons.push(format!("in season ({})", season_name(season)));
            }
            // Cheaper first visits convert better for customers who buy little.
            if f.service_count < 3 && o.price_cents <= 15_000 {
                score += 0.25;
            }
            if let Some(similar) = similar {
                score += similar.offer_bonus(o.service);
                if similar.supports(o.service) {
                    reasons.push(format!(
                        "{} of the {} most similar customers accepted it",
                        similar.accepted_count(o.service),
                        similar.found
                    ));
                }
            }
            (o, reasons, score)
        })
        .collect();
    ranked.sort_by(|(a, _, a_score), (b, _, b_score)| {
        b_score
            .total_cmp(a_score)
            .then(a.price_cents.cmp(&b.price_cents))
            .then(a.offering.cmp(&b.offering))
    });
    ranked.truncate(limit);
    ranked
        .into_iter()
        .map(|(o, reasons, score)| Offer::from_offering(o, discount, reasons, score))
        .collect()
}

/// `spring`, `summer`, `autumn`, `winter`.
pub fn season_name(s: Season) -> &'static str {
    match s {
        Season::Spring => "spring",
        Season::Summer => "summer",
        Season::Autumn => "autumn",
        Season::Winter => "winter",
    }
}

/// English month name of the month after `date` (for calls to action).
pub fn next_month_name(date: NaiveDate) -> &'static str {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    MONTHS[(date.month0() as usize + 1) % 12]
}
