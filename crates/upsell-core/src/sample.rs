//! Deterministic sample data: realistic upstream events for a home-services company, as
//! EventBridge JSON lines, for demos, tests and benchmarks (`upsell sample`).
//!
//! The same [`SampleConfig`] (including the seed) always gives the same bytes. Each customer
//! gets a sign-up profile, seasonal service visits that fit the region and property (pool
//! service only with a pool, snow removal only where it snows), surveys whose satisfaction
//! follows a per-customer trend, and sometimes a later profile change. Each completed service of
//! a customer who is opted in gets an `UpsellResponded` event within a week (see
//! [`RESPONSE_SHARES`]), drawn from a second random stream so that the other events are the
//! same with or without them. A configurable share of
//! lines is deliberately broken (malformed JSON, missing fields, wrong types, unknown
//! detail-types, out-of-range values, phones that cannot be made E.164) and a configurable
//! share is redelivered with the same event id, as EventBridge's at-least-once delivery does.
//!
//! A [`DriftScenario`] changes one aspect of the population (region mix, satisfaction, service
//! mix, prices) to show drift detection fire; without one the output is unchanged.

use chrono::{Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::events::{
    Address, CustomerEvent, CustomerProfileUpdated, EventDetail, EventEnvelope, HomeType, Pet,
    Property, Region, Service, ServiceCompleted, SurveySubmitted, UpsellResponded, UpsellResponse,
};

/// Source of the sample's `UpsellResponded` events (the messaging system).
pub const RESPONSE_SOURCE: &str = "com.greenleaf.messaging";

/// Shares of the responses to an upsell message in the sample, in [`UpsellResponse::ALL`]
/// order (accepted, declined, no answer, opted out). Every `ServiceCompleted` of a customer who
/// has not opted out stands for one message (the event most messages answer), answered within a
/// week. Figures in the range home-services SMS/email campaigns report: most messages get no
/// answer, about one in ten is booked, a few recipients opt out.
pub const RESPONSE_SHARES: [f64; 4] = [0.11, 0.24, 0.61, 0.04];

/// Days the messaging system waits before it reports `no-answer`.
pub const NO_ANSWER_AFTER_DAYS: i64 = 7;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleConfig {
    /// Number of customers.
    pub customers: usize,
    /// Number of the first customer (`cust-000001` for 1); the customers are numbered from
    /// it. Two files with disjoint numbers hold different customers, e.g. a second window of
    /// new customers that the stores have no history for.
    pub first_customer: usize,
    /// RNG seed; same seed, same output.
    pub seed: u64,
    /// Share of lines (0.0..=1.0) that are deliberately invalid.
    pub malformed_share: f64,
    /// Share of valid events (0.0..=1.0) delivered a second time with the same id.
    pub duplicate_share: f64,
    /// First day of the simulated period.
    pub start: NaiveDate,
    /// Length of the simulated period in days.
    pub days: u32,
    /// A deliberate change of the population, to exercise drift detection; `None` for the
    /// normal population.
    pub drift: Option<DriftScenario>,
}

/// A deliberate population change (`upsell sample --drift NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftScenario {
    /// A quarter of the customers are drawn from the Southwest before the uniform draw
    /// (Southwest share 1/6 -> 3/8).
    RegionShift,
    /// Satisfaction falls through the period by up to 3 points (1.5 on average) for everyone.
    FallingSatisfaction,
    /// Half the customers replace one of their services with an indoor service (duct or
    /// carpet cleaning).
    NewServiceMix,
    /// Every price is 10% higher.
    PriceIncrease,
}

impl DriftScenario {
    /// Every scenario.
    pub const ALL: [DriftScenario; 4] = [
        DriftScenario::RegionShift,
        DriftScenario::FallingSatisfaction,
        DriftScenario::NewServiceMix,
        DriftScenario::PriceIncrease,
    ];

    /// Its command-line name, e.g. `region-shift`.
    pub fn name(self) -> &'static str {
        match self {
            DriftScenario::RegionShift => "region-shift",
            DriftScenario::FallingSatisfaction => "falling-satisfaction",
            DriftScenario::NewServiceMix => "new-service-mix",
            DriftScenario::PriceIncrease => "price-increase",
        }
    }

    /// The features this scenario changes directly (by drift report name).
    pub fn changed_features(self) -> &'static [&'static str] {
        match self {
            DriftScenario::RegionShift => &["region"],
            DriftScenario::FallingSatisfaction => &["satisfaction"],
            DriftScenario::NewServiceMix => &["service"],
            DriftScenario::PriceIncrease => &["price_index"],
        }
    }
}

impl std::str::FromStr for DriftScenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DriftScenario::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = DriftScenario::ALL.iter().map(|d| d.name()).collect();
                format!("unknown drift scenario {s:?}; known: {}", names.join(", "))
            })
    }
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            customers: 100,
            first_customer: 1,
            seed: 42,
            malformed_share: 0.03,
            duplicate_share: 0.02,
            start: NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date"),
            days: 365,
            drift: None,
        }
    }
}

/// How a generated line is meant to be classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineKind {
    /// A valid event.
    Valid,
    /// A valid event repeated with an id already emitted.
    Duplicate,
    /// A deliberately broken event, with what was broken.
    Malformed(Breakage),
}

/// The ways the generator breaks events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Breakage {
    /// JSON cut off mid-way.
    TruncatedJson,
    /// A required detail field removed.
    MissingField,
    /// A field with the wrong JSON type.
    WrongType,
    /// A `detail-type` nobody knows.
    UnknownDetailType,
    /// A number outside its range.
    OutOfRange,
    /// A phone number that cannot be made E.164.
    BadPhone,
    /// A service code not in the catalogue.
    UnknownService,
    /// An impossible calendar date.
    BadDate,
}

const BREAKAGES: [Breakage; 8] = [
    Breakage::TruncatedJson,
    Breakage::MissingField,
    Breakage::WrongType,
    Breakage::UnknownDetailType,
    Breakage::OutOfRange,
    Breakage::BadPhone,
    Breakage::UnknownService,
    Breakage::BadDate,
];

/// One output line.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleLine {
    /// The JSON text (no trailing newline).
    pub text: String,
    /// What it is meant to be.
    pub kind: LineKind,
}

const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Sandra",
    "Mark",
    "Ashley",
    "Priya",
    "Emily",
    "Kevin",
    "Maria",
    "Brian",
    "Michelle",
    "Wei",
    "Amanda",
    "Jamal",
    "Melissa",
    "Luis",
    "Stephanie",
    "Aisha",
    "Rebecca",
    "Tyler",
    "Laura",
    "Hiroshi",
    "Olivia",
    "Ethan",
    "Sofia",
];

const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Nguyen",
    "Patel",
    "Kim",
    "O'Brien",
    "Schmidt",
    "Kowalski",
    "Okafor",
    "Chen",
    "Rossi",
];

const STREETS: &[&str] = &[
    "Maple Ave",
    "Oak St",
    "Cedar Ln",
    "Elm St",
    "Pine Ridge Rd",
    "Willow Way",
    "Lakeview Dr",
    "Sunset Blvd",
    "Hillcrest Rd",
    "Meadow Ln",
    "Birch Ct",
    "Park Pl",
    "Chestnut St",
    "Magnolia Dr",
    "River Rd",
    "Forest Glen Dr",
    "Prairie View Rd",
    "Quail Run",
    "Juniper Ct",
];

const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "icloud.com",
    "hotmail.com",
    "comcast.net",
    "aol.com",
    "proton.me",
];

/// (city, state, ZIP prefix, area code, UTC offset hours in winter).
fn cities(
    region: Region,
) -> &'static [(&'static str, &'static str, &'static str, &'static str, i32)] {
    match region {
        Region::Northeast => &[
            ("Albany", "NY", "122", "518", -5),
            ("Worcester", "MA", "016", "508", -5),
            ("Hartford", "CT", "061", "860", -5),
            ("Cherry Hill", "NJ", "080", "856", -5),
            ("Allentown", "PA", "181", "610", -5),
        ],
        Region::Southeast => &[
            ("Tampa", "FL", "336", "813", -5),
            ("Charlotte", "NC", "282", "704", -5),
            ("Savannah", "GA", "314", "912", -5),
            ("Mobile", "AL", "366", "251", -6),
            ("Richmond", "VA", "232", "804", -5),
        ],
        Region::Midwest => &[
            ("Columbus", "OH", "432", "614", -5),
            ("Naperville", "IL", "605", "630", -6),
            ("Ann Arbor", "MI", "481", "734", -5),
            ("Madison", "WI", "537", "608", -6),
            ("Overland Park", "KS", "662", "913", -6),
        ],
        Region::Southwest => &[
            ("Austin", "TX", "787", "512", -6),
            ("Scottsdale", "AZ", "852", "480", -7),
            ("Albuquerque", "NM", "871", "505", -7),
            ("Tulsa", "OK", "741", "918", -6),
            ("Henderson", "NV", "890", "702", -8),
        ],
        Region::West => &[
            ("Sacramento", "CA", "958", "916", -8),
            ("San Diego", "CA", "921", "619", -8),
            ("Boulder", "CO", "803", "303", -7),
            ("Provo", "UT", "846", "801", -7),
        ],
        Region::Northwest => &[
            ("Portland", "OR", "972", "503", -8),
            ("Tacoma", "WA", "984", "253", -8),
            ("Boise", "ID", "837", "208", -7),
            ("Spokane", "WA", "992", "509", -8),
        ],
    }
}

fn notes(service: Service) -> &'static [&'static str] {
    match service {
        Service::LawnCare => &[
            "Mowed front and back, edged beds and walkways. Some brown patches near the driveway; likely grubs.",
            "Applied spring fertiliser and pre-emergent. Lawn is thin under the oak tree.",
            "Mowed and bagged clippings. Sprinkler head by the mailbox is broken and spraying the street.",
            "Regular cut. Noticed ant mounds along the patio edge.",
            "Aerated and overseeded the back lawn. Gutters on the garage look full of leaves.",
        ],
        Service::PestControl => &[
            "Quarterly perimeter treatment. Found a wasp nest under the back eaves and removed it.",
            "Treated for ants in kitchen and along foundation. Customer has a dog; used pet-safe product.",
            "Mouse droppings in garage; set bait stations. Recommend sealing gap under garage door.",
            "Termite inspection clear. Mosquitoes heavy near the pool area.",
            "Spider treatment on exterior. Dryer vent is clogged with lint; fire risk.",
        ],
        Service::HvacTuneUp => &[
            "Replaced filter (very dirty), cleaned condenser coils, refrigerant levels OK.",
            "Furnace tune-up done. Ducts are dusty; customer mentioned allergies.",
            "AC capacitor weak, replaced. System is 14 years old; discussed replacement timeline.",
            "Heat pump serviced. Thermostat is old non-programmable model.",
        ],
        Service::PoolService => &[
            "Opened pool for the season, balanced chemicals, cleaned filter.",
            "Weekly cleaning. Algae starting in the deep end corner; shocked the pool.",
            "Closed pool for winter, blew out lines, installed cover.",
            "Pump is noisy; bearings may be going. Lots of leaves from overhanging tree.",
        ],
        Service::GutterCleaning => &[
            "Cleared gutters and downspouts, heavy leaf load. Recommend gutter guards.",
            "Flushed downspouts. Fascia board soft on the north side.",
            "Gutters cleaned. Roof has moss growth near the chimney.",
        ],
        Service::WindowCleaning => &[
            "Cleaned all exterior windows and screens. Siding has mildew on the shaded side.",
            "Inside and out, 24 panes. Two screens torn.",
            "Exterior windows cleaned. Deck is grey and weathered.",
        ],
        Service::PressureWashing => &[
            "Washed driveway and front walk. Oil stain mostly lifted.",
            "Washed deck and siding. Deck boards would benefit from sealing.",
            "House wash done. Gutters overflowing on the back side.",
        ],
        Service::TreeTrimming => &[
            "Trimmed two maples away from the roof line. Dead limb removed over the driveway.",
            "Shaped shrubs and hedges. Oak branches touching the pool fence.",
        ],
        Service::IrrigationService => &[
            "Spring start-up, adjusted 12 heads, replaced one broken rotor.",
            "Winterised system and blew out lines. Backflow preventer due for testing.",
        ],
        Service::SnowRemoval => &[
            "Plowed driveway and salted walkway after 8 inches of snow.",
            "Cleared driveway, ice dams forming on the gutters.",
        ],
        Service::DuctCleaning => &[
            "Cleaned supply and return ducts; heavy pet hair. Recommend HVAC filter upgrade.",
            "Duct cleaning complete, dryer vent also cleared.",
        ],
        Service::CarpetCleaning => &[
            "Steam cleaned living room and stairs; pet stains treated.",
            "Cleaned three bedrooms. Customer asked about upholstery cleaning.",
        ],
    }
}

const HAPPY: &[&str] = &[
    "Great job as always, the crew was friendly and on time.",
    "Very happy with the service. Would recommend to neighbors.",
    "Technician explained everything clearly. Yard looks fantastic.",
    "Excellent, fast and tidy.",
];
const NEUTRAL: &[&str] = &[
    "Service was fine but the arrival window was long.",
    "OK overall. Price went up since last year.",
    "Decent work, missed a spot by the fence.",
    "",
];
const UNHAPPY: &[&str] = &[
    "Technician was late twice and didn't call ahead.",
    "Still seeing ants after the treatment. Not impressed.",
    "Too expensive for what was done. Thinking about switching.",
    "Left a mess in the driveway. Had to call to get it fixed.",
];

#[derive(Clone, Copy)]
enum Trend {
    Improving,
    Stable,
    Declining,
}

struct Customer {
    profile: CustomerProfileUpdated,
    utc_offset: i32,
    services: Vec<Service>,
    base_satisfaction: f64,
    trend: Trend,
    signup: NaiveDate,
}

struct Gen {
    rng: ChaCha8Rng,
    cfg: SampleConfig,
}

/// Generates the sample lines for `cfg` (ordered by event time, duplicates right after their
/// original's neighbourhood).
pub fn generate(cfg: &SampleConfig) -> Vec<SampleLine> {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        cfg: cfg.clone(),
    };
    let mut events: Vec<CustomerEvent> = Vec::new();
    for n in 0..cfg.customers {
        let c = g.customer(cfg.first_customer + n);
        g.customer_events(&c, &mut events);
    }
    events.sort_by_key(CustomerEvent::time);
    // Responses draw from their own stream, so the other events are the same bytes as
    // before responses existed.
    let mut rg = Gen {
        rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5253_5053_4e53_4553),
        cfg: cfg.clone(),
    };
    let responses = rg.responses(&mut events);
    events.extend(responses);
    events.sort_by_key(CustomerEvent::time);

    let mut lines = Vec::with_capacity(events.len() + events.len() / 10);
    let mut pending_dups: Vec<(usize, String)> = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let g = if matches!(ev, CustomerEvent::UpsellResponded(_)) {
            &mut rg
        } else {
            &mut g
        };
        let mut value = serde_json::to_value(ev).expect("events serialise");
        g.denormalise(&mut value);
        if g.rng.random_bool(cfg.malformed_share.clamp(0.0, 1.0)) {
            let breakage = *BREAKAGES.choose(&mut g.rng).expect("non-empty");
            lines.push(SampleLine {
                text: g.break_event(value, breakage),
                kind: LineKind::Malformed(breakage),
            });
        } else {
            let text = value.to_string();
            if g.rng.random_bool(cfg.duplicate_share.clamp(0.0, 1.0)) {
                pending_dups.push((i + g.rng.random_range(1..=5), text.clone()));
            }
            lines.push(SampleLine {
                text,
                kind: LineKind::Valid,
            });
        }
        pending_dups.retain(|(at, text)| {
            if *at <= i {
                lines.push(SampleLine {
                    text: text.clone(),
                    kind: LineKind::Duplicate,
                });
                false
            } else {
                true
            }
        });
    }
    for (_, text) in pending_dups {
        lines.push(SampleLine {
            text,
            kind: LineKind::Duplicate,
        });
    }
    lines
}

impl Gen {
    /// One response per `ServiceCompleted` of a customer who is opted in at the time, drawn
    /// with [`RESPONSE_SHARES`]; nothing after a customer opts out, and that customer's later
    /// profile events carry `marketingOptIn: false` (the CRM recorded the opt-out).
    /// `events` is sorted by time.
    fn responses(&mut self, events: &mut [CustomerEvent]) -> Vec<CustomerEvent> {
        let end = (self.cfg.start + Duration::days(i64::from(self.cfg.days)))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        let mut opted_in: std::collections::HashMap<String, bool> = Default::default();
        let mut opted_out_at: std::collections::HashMap<String, chrono::DateTime<Utc>> =
            Default::default();
        let mut out = Vec::new();
        for ev in events.iter_mut() {
            let customer = ev.customer_id().to_owned();
            match ev {
                CustomerEvent::CustomerProfileUpdated(e) => {
                    if opted_out_at.get(&customer).is_some_and(|t| *t <= e.time) {
                        e.detail.marketing_opt_in = false;
                    }
                    opted_in.insert(customer, e.detail.marketing_opt_in);
                }
                CustomerEvent::ServiceCompleted(e)
                    if opted_in.get(&customer) == Some(&true)
                        && !opted_out_at.contains_key(&customer) =>
                {
                    let x: f64 = self.rng.random();
                    let mut acc = 0.0;
                    let response = UpsellResponse::ALL
                        .into_iter()
                        .zip(RESPONSE_SHARES)
                        .find(|(_, share)| {
                            acc += share;
                            x < acc
                        })
                        .map_or(UpsellResponse::NoAnswer, |(r, _)| r);
                    let delay = match response {
                        UpsellResponse::NoAnswer => Duration::days(NO_ANSWER_AFTER_DAYS),
                        _ => Duration::minutes(self.rng.random_range(20..5 * 24 * 60)),
                    };
                    let t = e.time + delay;
                    if t >= end {
                        continue;
                    }
                    if response == UpsellResponse::OptedOut {
                        opted_out_at.insert(customer.clone(), t);
                    }
                    let detail = UpsellResponded {
                        customer_id: customer,
                        message_event_id: e.id.clone(),
                        response,
                        service: None,
                        generator: None,
                        judge: None,
                    };
                    let env = self.envelope(RESPONSE_SOURCE, t, detail);
                    out.push(CustomerEvent::UpsellResponded(env));
                }
                _ => {}
            }
        }
        // An answer window still open when the customer opts out closes without a report.
        out.retain(|r| {
            let CustomerEvent::UpsellResponded(e) = r else {
                return true;
            };
            e.detail.response == UpsellResponse::OptedOut
                || opted_out_at
                    .get(&e.detail.customer_id)
                    .is_none_or(|t| e.time < *t)
        });
        out
    }

    fn uuid(&mut self) -> String {
        let v: u128 = self.rng.random();
        let v = (v & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
        let h = format!("{v:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    fn customer(&mut self, n: usize) -> Customer {
        let drift = self.cfg.drift;
        let rng = &mut self.rng;
        let region = if drift == Some(DriftScenario::RegionShift) && rng.random_bool(0.25) {
            Region::Southwest
        } else {
            *Region::ALL.choose(rng).expect("non-empty")
        };
        let &(city, state, zip3, area, offset) = cities(region).choose(rng).expect("non-empty");
        let first = *FIRST_NAMES.choose(rng).expect("non-empty");
        let last = *LAST_NAMES.choose(rng).expect("non-empty");
        let home_type = *[
            HomeType::SingleFamily,
            HomeType::SingleFamily,
            HomeType::SingleFamily,
            HomeType::SingleFamily,
            HomeType::Townhouse,
            HomeType::Condo,
            HomeType::MultiFamily,
            HomeType::Mobile,
        ]
        .choose(rng)
        .expect("non-empty");
        let lot_size_sqft = match home_type {
            HomeType::Condo => 0,
            HomeType::Townhouse => rng.random_range(1_200..3_500),
            HomeType::Mobile => rng.random_range(2_000..6_000),
            _ => rng.random_range(5_000..43_560),
        };
        let pool_odds = match region {
            Region::Southeast | Region::Southwest => 0.45,
            Region::West => 0.3,
            _ => 0.12,
        };
        let has_pool = lot_size_sqft > 6_000 && rng.random_bool(pool_odds);
        let mut pets = Vec::new();
        if rng.random_bool(0.45) {
            pets.push(Pet::Dog);
        }
        if rng.random_bool(0.3) {
            pets.push(Pet::Cat);
        }
        if rng.random_bool(0.05) {
            pets.push(Pet::Other);
        }
        let year_built = rng
            .random_bool(0.9)
            .then(|| rng.random_range(1925u16..=2023));
        let email_sep = *[".", "", "_"].choose(rng).expect("non-empty");
        let email = format!(
            "{}{email_sep}{}{}@{}",
            first.to_lowercase(),
            last.to_lowercase().replace('\'', ""),
            if rng.random_bool(0.4) {
                rng.random_range(1..99).to_string()
            } else {
                String::new()
            },
            EMAIL_DOMAINS.choose(rng).expect("non-empty")
        );
        let phone = rng
            .random_bool(0.9)
            .then(|| format!("+1{area}555{:04}", rng.random_range(100..200)));
        let profile = CustomerProfileUpdated {
            customer_id: format!("cust-{n:06}"),
            first_name: first.to_owned(),
            last_name: last.to_owned(),
            email,
            phone,
            address: Address {
                street: format!(
                    "{} {}",
                    rng.random_range(10..9_999),
                    STREETS.choose(rng).expect("non-empty")
                ),
                city: city.to_owned(),
                state: state.to_owned(),
                postal_code: format!("{zip3}{:02}", rng.random_range(1..99)),
                region,
            },
            property: Property {
                home_type,
                lot_size_sqft,
                has_pool,
                pets,
                year_built,
            },
            marketing_opt_in: rng.random_bool(0.92),
        };
        let services = eligible_services(&profile);
        let k = rng.random_range(1..=3.min(services.len()));
        let mut services: Vec<Service> = services.choose_multiple(rng, k).copied().collect();
        if drift == Some(DriftScenario::NewServiceMix) && rng.random_bool(0.5) {
            let indoor = *[Service::DuctCleaning, Service::CarpetCleaning]
                .choose(rng)
                .expect("non-empty");
            if !services.contains(&indoor) {
                services[0] = indoor;
            }
        }
        let trend = *[
            Trend::Improving,
            Trend::Stable,
            Trend::Stable,
            Trend::Declining,
        ]
        .choose(rng)
        .expect("non-empty");
        Customer {
            profile,
            utc_offset: offset,
            services,
            base_satisfaction: rng.random_range(5.0..9.5),
            trend,
            signup: self.cfg.start + Duration::days(rng.random_range(0..60)),
        }
    }

    fn time_on(&mut self, c: &Customer, day: NaiveDate) -> chrono::DateTime<Utc> {
        // Daylight saving roughly April..October.
        let dst = (4..=10).contains(&day.month());
        let offset = FixedOffset::east_opt((c.utc_offset + i32::from(dst)) * 3600).expect("offset");
        let local = day
            .and_hms_opt(
                self.rng.random_range(7..19),
                self.rng.random_range(0..60),
                self.rng.random_range(0..60),
            )
            .expect("valid time");
        offset
            .from_local_datetime(&local)
            .single()
            .expect("fixed offsets are unambiguous")
            .with_timezone(&Utc)
    }

    fn envelope<D: EventDetail>(
        &mut self,
        source: &str,
        time: chrono::DateTime<Utc>,
        detail: D,
    ) -> EventEnvelope<D> {
        EventEnvelope {
            version: Some("0".into()),
            id: self.uuid(),
            source: source.into(),
            detail_type: D::DETAIL_TYPE.into(),
            account: Some("123456789012".into()),
            time,
            region: Some("us-east-1".into()),
            resources: Vec::new(),
            detail,
        }
    }

    fn customer_events(&mut self, c: &Customer, out: &mut Vec<CustomerEvent>) {
        let end = self.cfg.start + Duration::days(i64::from(self.cfg.days));
        let t = self.time_on(c, c.signup);
        let env = self.envelope("com.greenleaf.crm", t, c.profile.clone());
        out.push(CustomerEvent::CustomerProfileUpdated(env));

        // Service visits: for each subscribed service, 1..=3 visits in season.
        let mut visits: Vec<(NaiveDate, Service)> = Vec::new();
        for &service in &c.services {
            let in_season: Vec<NaiveDate> = (0..self.cfg.days)
                .map(|d| self.cfg.start + Duration::days(i64::from(d)))
                .filter(|d| *d > c.signup && service.season().contains(&d.month()))
                .collect();
            let n = self.rng.random_range(1..=3usize).min(in_season.len());
            for d in in_season.choose_multiple(&mut self.rng, n) {
                visits.push((*d, service));
            }
        }
        visits.sort();
        let span = f64::from(self.cfg.days.max(1));
        for (i, (day, service)) in visits.iter().enumerate() {
            let progress = (*day - self.cfg.start).num_days() as f64 / span;
            let sat = self.satisfaction(c, progress);
            let (lo, hi) = service.typical_price_cents();
            let mut price = self.rng.random_range(lo..=hi) / 100 * 100 + [0, 0, 50, 99][i % 4];
            if self.cfg.drift == Some(DriftScenario::PriceIncrease) {
                price = price * 110 / 100;
            }
            let rating = self
                .rng
                .random_bool(0.7)
                .then(|| ((f64::from(sat) / 2.0).round() as u8).clamp(1, 5));
            let note = *notes(*service).choose(&mut self.rng).expect("non-empty");
            let detail = ServiceCompleted {
                customer_id: c.profile.customer_id.clone(),
                service: *service,
                service_date: *day,
                price_cents: price,
                technician_notes: note.to_owned(),
                rating,
            };
            let t = self.time_on(c, *day);
            let env = self.envelope("com.greenleaf.field-service", t, detail);
            out.push(CustomerEvent::ServiceCompleted(env));

            if self.rng.random_bool(0.45) {
                let survey_day = *day + Duration::days(self.rng.random_range(1..6));
                if survey_day < end {
                    let text = match sat {
                        8..=10 => HAPPY,
                        5..=7 => NEUTRAL,
                        _ => UNHAPPY,
                    }
                    .choose(&mut self.rng)
                    .expect("non-empty");
                    let detail = SurveySubmitted {
                        customer_id: c.profile.customer_id.clone(),
                        satisfaction: sat,
                        free_text: (*text).to_owned(),
                        survey_date: survey_day,
                        service: Some(*service),
                    };
                    let t = self.time_on(c, survey_day);
                    let env = self.envelope("com.greenleaf.surveys", t, detail);
                    out.push(CustomerEvent::SurveySubmitted(env));
                }
            }
        }

        // A later profile change: new phone, a new pet, or a pool installed.
        if self.rng.random_bool(0.3) {
            let mut p = c.profile.clone();
            match self.rng.random_range(0..3) {
                0 => {
                    let area = &cities(p.address.region)[0].3;
                    p.phone = Some(format!("+1{area}555{:04}", self.rng.random_range(200..300)));
                }
                1 => p.property.pets.push(Pet::Dog),
                _ => p.property.has_pool = p.property.lot_size_sqft > 6_000,
            }
            let day = c.signup + Duration::days(self.rng.random_range(30..300));
            if day < end {
                let t = self.time_on(c, day);
                let env = self.envelope("com.greenleaf.crm", t, p);
                out.push(CustomerEvent::CustomerProfileUpdated(env));
            }
        }
    }

    fn satisfaction(&mut self, c: &Customer, progress: f64) -> u8 {
        let drift = match c.trend {
            Trend::Improving => 2.5 * progress,
            Trend::Stable => 0.0,
            Trend::Declining => -4.0 * progress,
        } - if self.cfg.drift == Some(DriftScenario::FallingSatisfaction) {
            3.0 * progress
        } else {
            0.0
        };
        let noise: f64 = self.rng.random_range(-1.0..1.0);
        (c.base_satisfaction + drift + noise)
            .round()
            .clamp(1.0, 10.0) as u8
    }

    /// Makes valid events look like real upstream data: phones in local formats, emails in
    /// mixed case, times with local offsets, stray whitespace. Normalisation undoes all of it.
    fn denormalise(&mut self, v: &mut Value) {
        if let Some(t) = v.get("time").and_then(Value::as_str)
            && self.rng.random_bool(0.3)
            && let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t)
        {
            let local = dt.with_timezone(&FixedOffset::west_opt(5 * 3600).expect("offset"));
            v["time"] = json!(local.to_rfc3339());
        }
        let d = &mut v["detail"];
        if let Some(phone) = d.get("phone").and_then(Value::as_str).map(str::to_owned) {
            let n = &phone[2..];
            let styled = match self.rng.random_range(0..5) {
                0 => format!("({}) {}-{}", &n[0..3], &n[3..6], &n[6..]),
                1 => format!("{}.{}.{}", &n[0..3], &n[3..6], &n[6..]),
                2 => format!("1-{}-{}-{}", &n[0..3], &n[3..6], &n[6..]),
                3 => n.to_owned(),
                _ => phone,
            };
            d["phone"] = json!(styled);
        }
        if let Some(email) = d.get("email").and_then(Value::as_str).map(str::to_owned)
            && self.rng.random_bool(0.25)
        {
            let (local, domain) = email.split_once('@').expect("generated emails have @");
            let mut cap = local.to_owned();
            if let Some(f) = cap.get_mut(0..1) {
                f.make_ascii_uppercase();
            }
            d["email"] = json!(format!(" {cap}@{} ", domain.to_uppercase()));
        }
        if let Some(first) = d
            .get("firstName")
            .and_then(Value::as_str)
            .map(str::to_owned)
            && self.rng.random_bool(0.1)
        {
            d["firstName"] = json!(format!("{first} "));
        }
    }

    fn break_event(&mut self, mut v: Value, breakage: Breakage) -> String {
        let dt = v["detail-type"].as_str().unwrap_or_default().to_owned();
        match breakage {
            Breakage::TruncatedJson => {
                let s = v.to_string();
                let cut = self.rng.random_range(s.len() / 3..s.len() * 2 / 3);
                let cut = (0..=cut)
                    .rev()
                    .find(|i| s.is_char_boundary(*i))
                    .unwrap_or(0);
                return s[..cut].to_owned();
            }
            Breakage::MissingField => {
                let field = match dt.as_str() {
                    "ServiceCompleted" => "serviceDate",
                    "SurveySubmitted" => "satisfaction",
                    "UpsellResponded" => "messageEventId",
                    _ => "email",
                };
                if let Some(o) = v["detail"].as_object_mut() {
                    o.remove(field);
                    o.remove("customerId");
                }
            }
            Breakage::WrongType => match dt.as_str() {
                "ServiceCompleted" => {
                    let p = v["detail"]["priceCents"].as_u64().unwrap_or(0);
                    v["detail"]["priceCents"] = json!(format!("${}.{:02}", p / 100, p % 100));
                }
                "SurveySubmitted" => v["detail"]["satisfaction"] = json!("very satisfied"),
                "UpsellResponded" => v["detail"]["response"] = json!(true),
                _ => v["detail"]["property"]["hasPool"] = json!("yes"),
            },
            Breakage::UnknownDetailType => {
                v["detail-type"] = json!(
                    *["InvoicePaid", "ServiceScheduled", "service_completed"]
                        .choose(&mut self.rng)
                        .expect("non-empty")
                );
            }
            Breakage::OutOfRange => match dt.as_str() {
                "ServiceCompleted" => v["detail"]["rating"] = json!(7),
                "SurveySubmitted" => v["detail"]["satisfaction"] = json!(11),
                "UpsellResponded" => v["detail"]["response"] = json!("maybe-later"),
                _ => v["detail"]["property"]["lotSizeSqft"] = json!(-400),
            },
            Breakage::BadPhone => {
                if dt == "CustomerProfileUpdated" {
                    v["detail"]["phone"] = json!("555-0134 ext 2");
                } else {
                    v["time"] = json!("yesterday at 5pm");
                }
            }
            Breakage::UnknownService => {
                if dt == "CustomerProfileUpdated" {
                    v["detail"]["address"]["region"] = json!("mid-atlantic");
                } else {
                    v["detail"]["service"] = json!("roof-repair");
                }
            }
            Breakage::BadDate => match dt.as_str() {
                "ServiceCompleted" => v["detail"]["serviceDate"] = json!("2025-02-30"),
                "SurveySubmitted" => v["detail"]["surveyDate"] = json!("13/05/2025"),
                _ => v["time"] = json!("2025-06-31T10:00:00Z"),
            },
        }
        v.to_string()
    }
}

/// Services that make sense for a property and region.
pub fn eligible_services(p: &CustomerProfileUpdated) -> Vec<Service> {
    let has_yard = p.property.lot_size_sqft > 0;
    Service::ALL
        .into_iter()
        .filter(|s| match s {
            Service::LawnCare | Service::TreeTrimming | Service::IrrigationService => has_yard,
            Service::PoolService => p.property.has_pool,
            Service::SnowRemoval => p.address.region.has_snow() && has_yard,
            Service::GutterCleaning | Service::PressureWashing => {
                p.property.home_type != HomeType::Condo
            }
            _ => true,
        })
        .collect()
}

/// Convenience: the JSONL text (one event per line, trailing newline).
pub fn generate_jsonl(cfg: &SampleConfig) -> String {
    let mut out = String::new();
    for line in generate(cfg) {
        out.push_str(&line.text);
        out.push('\n');
    }
    out
}
