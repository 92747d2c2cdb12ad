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
        unknown: Vec::new(),
        similar_customers: None,
    }
}

/// Checks that the committed schema file `schemas/<rel>` matches `schema` (pretty JSON with a
/// trailing newline). With `UPSELL_UPDATE_SCHEMAS=1` it writes the file instead. Returns an
/// error naming the file and the command that regenerates it.
pub fn check_schema_file(rel: &str, schema: &serde_json::Value) -> Result<(), String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let path = root.join(rel);
    let text = upsell_core::schema::render(schema);
    if std::env::var_os("UPSELL_UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(|e| e.to_string())?;
        return std::fs::write(&path, text).map_err(|e| e.to_string());
    }
    match std::fs::read_to_string(&path) {
        Ok(committed) if committed == text => Ok(()),
        _ => Err(format!(
            "schemas/{rel} is missing or stale; regenerate with `UPSELL_UPDATE_SCHEMAS=1 cargo test -p <worker> --test schemas` and commit it"
        )),
    }
}
