//! Property tests: every generated valid event passes its schema, and normalisation is
//! idempotent (normalising twice, or re-validating a normalised event, changes nothing).

use chrono::{DateTime, NaiveDate, Utc};
use proptest::prelude::*;
use upsell_core::events::{
    Address, CustomerEvent, CustomerProfileUpdated, EventDetail, EventEnvelope, HomeType, Pet,
    Property, Region, Service, ServiceCompleted, SurveySubmitted,
};
use upsell_core::validate::{normalize, validator};

/// A string that is valid once trimmed, sometimes padded with whitespace.
fn padded(core: &'static str) -> impl Strategy<Value = String> {
    ("[ \t]{0,2}", core, "[ ]{0,2}").prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

fn date() -> impl Strategy<Value = NaiveDate> {
    (0i64..3650)
        .prop_map(|d| NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + chrono::Duration::days(d))
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (1_577_836_800i64..1_893_456_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

fn phone() -> impl Strategy<Value = String> {
    ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}", 0..6usize).prop_map(|(a, b, c, style)| {
        match style {
            0 => format!("({a}) {b}-{c}"),
            1 => format!("{a}.{b}.{c}"),
            2 => format!("1-{a}-{b}-{c}"),
            3 => format!("+1 {a} {b} {c}"),
            4 => format!("{a}{b}{c}"),
            _ => format!("+44 20 {b} {c}"),
        }
    })
}

fn envelope<D: EventDetail>(
    detail: impl Strategy<Value = D>,
) -> impl Strategy<Value = EventEnvelope<D>> {
    (
        padded("[a-z0-9-]{1,36}"),
        padded("com\\.[a-z]{2,10}\\.[a-z-]{2,12}"),
        time(),
        any::<bool>(),
        detail,
    )
        .prop_map(|(id, source, time, aws, detail)| EventEnvelope {
            version: Some("0".into()),
            id,
            source,
            detail_type: D::DETAIL_TYPE.into(),
            account: aws.then(|| "123456789012".into()),
            time,
            region: aws.then(|| "us-west-2".into()),
            resources: Vec::new(),
            detail,
        })
}

fn service() -> impl Strategy<Value = Service> {
    proptest::sample::select(Service::ALL.to_vec())
}

fn service_completed() -> impl Strategy<Value = ServiceCompleted> {
    (
        padded("cust-[0-9]{6}"),
        service(),
        date(),
        0u64..2_000_000,
        padded("[A-Za-z ,.;']{0,120}"),
        proptest::option::of(1u8..=5),
    )
        .prop_map(
            |(customer_id, service, service_date, price_cents, technician_notes, rating)| {
                ServiceCompleted {
                    customer_id,
                    service,
                    service_date,
                    price_cents,
                    technician_notes,
                    rating,
                }
            },
        )
}

fn survey() -> impl Strategy<Value = SurveySubmitted> {
    (
        padded("cust-[0-9]{6}"),
        1u8..=10,
        padded("[A-Za-z ,.!?']{0,200}"),
        date(),
        proptest::option::of(service()),
    )
        .prop_map(
            |(customer_id, satisfaction, free_text, survey_date, service)| SurveySubmitted {
                customer_id,
                satisfaction,
                free_text,
                survey_date,
                service,
            },
        )
}

fn profile() -> impl Strategy<Value = CustomerProfileUpdated> {
    let address = (
        padded("[0-9]{1,5} [A-Z][a-z]{2,10} (St|Ave|Rd)"),
        padded("[A-Z][a-z]{2,12}"),
        "[A-Za-z]{2}",
        "[0-9]{5}(-[0-9]{4})?",
        proptest::sample::select(Region::ALL.to_vec()),
    )
        .prop_map(|(street, city, state, postal_code, region)| Address {
            street,
            city,
            state,
            postal_code,
            region,
        });
    let property = (
        proptest::sample::select(vec![
            HomeType::SingleFamily,
            HomeType::Townhouse,
            HomeType::Condo,
            HomeType::MultiFamily,
            HomeType::Mobile,
        ]),
        0u32..200_000,
        any::<bool>(),
        proptest::collection::vec(
            proptest::sample::select(vec![Pet::Dog, Pet::Cat, Pet::Other]),
            0..3,
        ),
        proptest::option::of(1850u16..=2025),
    )
        .prop_map(
            |(home_type, lot_size_sqft, has_pool, pets, year_built)| Property {
                home_type,
                lot_size_sqft,
                has_pool,
                pets,
                year_built,
            },
        );
    (
        padded("cust-[0-9]{6}"),
        padded("[A-Z][a-z]{1,15}"),
        padded("[A-Z][a-z'-]{1,20}"),
        padded("[A-Za-z][A-Za-z0-9._]{0,12}@[A-Za-z]{2,10}\\.(com|ORG|net)"),
        proptest::option::of(phone()),
        address,
        property,
        any::<bool>(),
    )
        .prop_map(
            |(
                customer_id,
                first_name,
                last_name,
                email,
                phone,
                address,
                property,
                marketing_opt_in,
            )| {
                CustomerProfileUpdated {
                    customer_id,
                    first_name,
                    last_name,
                    email,
                    phone,
                    address,
                    property,
                    marketing_opt_in,
                }
            },
        )
}

fn event() -> impl Strategy<Value = CustomerEvent> {
    prop_oneof![
        envelope(service_completed()).prop_map(CustomerEvent::ServiceCompleted),
        envelope(profile()).prop_map(CustomerEvent::CustomerProfileUpdated),
        envelope(survey()).prop_map(CustomerEvent::SurveySubmitted),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_generated_valid_event_passes_its_schema(ev in event()) {
        let v = serde_json::to_value(&ev).unwrap();
        let problems = validator().schema_problems(&v);
        prop_assert!(problems.is_empty(), "{problems:?}\n{v}");
        prop_assert!(validator().check_value(&v).is_ok());
    }

    #[test]
    fn normalisation_is_idempotent(ev in event()) {
        let once = normalize(ev).expect("generated events are normalisable");
        let twice = normalize(once.clone()).expect("a normalised event stays valid");
        prop_assert_eq!(&once, &twice);
        // Through the wire: re-validating the normalised JSON gives the same event.
        let v = serde_json::to_value(&once).unwrap();
        let again = validator().check_value(&v).expect("normalised events validate");
        prop_assert_eq!(&once, &again);
    }

    #[test]
    fn phone_normalisation_is_idempotent(p in phone()) {
        let once = upsell_core::validate::normalize_phone(&p).unwrap();
        prop_assert!(once.starts_with('+') && once[1..].chars().all(|c| c.is_ascii_digit()));
        prop_assert_eq!(upsell_core::validate::normalize_phone(&once).unwrap(), once);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_always_explain(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Err(rej) = upsell_core::validate::check_event(&bytes) {
            prop_assert!(!rej.problems.is_empty());
        }
    }
}
