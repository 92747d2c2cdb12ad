//! Fixtures for tests of the workers and models: a realistic [`Facts`] for one offering.

use upsell_core::events::{HomeType, Pet, Region, Service};
use upsell_core::features::Season;

use crate::catalogue::Catalogue;
use crate::offers::Offer;
use crate::prompt::{CustomerContext, Facts};

/// Facts for customer "Dana" (midwest, dog, lawn care customer for 3 years) being offered
/// `offering` in autumn 2025, with `discount_percent` off.
pub fn facts(offering: &str, discount_percent: u8) -> Facts {
    let o = Catalogue::builtin()
        .get(offering)
        .unwrap_or_else(|| panic!("no offering {offering}"));
    let discounted = (discount_percent > 0).then(|| {
        crate::catalogue::format_price(o.price_cents * u64::from(100 - discount_percent) / 100)
    });
    Facts {
        date: "2025-10-06".into(),
        season: Season::Autumn,
        booking_month: "November".into(),
        customer: CustomerContext {
            first_name: "Dana".into(),
            region: Some(Region::Midwest),
            home_type: Some(HomeType::SingleFamily),
            has_pool: Some(false),
            pets: vec![Pet::Dog],
            lot_size_sqft: Some(9000),
            home_age_years: Some(35),
            tenure_years: 3,
            services_bought: vec![Service::LawnCare],
            service_count: 5,
            last_service: Some(Service::LawnCare),
            technician_notes: None,
            survey_comment: None,
        },
        offer: Offer {
            offering: o.offering.clone(),
            service: o.service,
            name: o.name.clone(),
            price_cents: o.price_cents,
            price: o.price_text(),
            price_unit: o.price_unit.clone(),
            discount_percent,
            discounted_price: discounted,
            description: o.description.clone(),
            reasons: vec!["in season (autumn)".into()],
            score: 1.0,
        },
        alternatives: Vec::new(),
    }
}
