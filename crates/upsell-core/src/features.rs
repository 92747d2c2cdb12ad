//! Customer features computed from the event stream, the customer embedding built from them,
//! and the ports that store them (`FeatureStore`) and search them (`CustomerIndex`).
//!
//! Features are a fold over a customer's events in event-time order. Every snapshot records the
//! event time it describes (`as_of`), so a point-in-time read returns only what was known then.
//! Time-relative features (tenure, days since last service, home age, season) are recomputed
//! for the read time by [`CustomerFeatures::at`]. The definitions are documented in
//! docs/feature-store.md; changing any of them means a new [`FeatureSet`] version, computed
//! beside the serving one from the event log the store keeps ([`rebuild`]).

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::{CustomerEvent, HomeType, Pet, Region, Service, UpsellResponse};
use crate::ports::PortError;

/// Version of the feature definitions the workflow serves ([`FeatureSet::SERVING`]).
pub const FEATURE_SET_VERSION: &str = "fs-v1";
/// Version of the customer embedding layout and scaling ([`embed_customer`]).
pub const EMBEDDING_VERSION: &str = "cust-emb-v1";
/// How many of the most recent surveys the satisfaction average and trend use in `fs-v1`.
pub const SATISFACTION_WINDOW: usize = 5;

/// The feature-set versions this build can compute. They share one fold ([`FeatureBuilder`])
/// and differ only in the parameters below (docs/feature-store.md, "Feature set `fs-v2`").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureSet {
    /// `fs-v1`: satisfaction over the last 5 surveys. Serves the workflow.
    V1,
    /// `fs-v2`: satisfaction over the last 3 surveys, so it follows a recent change sooner.
    V2,
}

impl FeatureSet {
    /// Every version, oldest first.
    pub const ALL: [FeatureSet; 2] = [FeatureSet::V1, FeatureSet::V2];
    /// The version the workflow reads and writes.
    pub const SERVING: FeatureSet = FeatureSet::V1;
    /// The newest definition (what `upsell features rebuild` computes by default).
    pub const NEWEST: FeatureSet = FeatureSet::V2;

    /// The version's name, as stored (`featureSetVersion`).
    pub fn version(self) -> &'static str {
        match self {
            FeatureSet::V1 => FEATURE_SET_VERSION,
            FeatureSet::V2 => "fs-v2",
        }
    }

    /// How many of the most recent surveys `recentSatisfaction` keeps.
    pub fn satisfaction_window(self) -> usize {
        match self {
            FeatureSet::V1 => SATISFACTION_WINDOW,
            FeatureSet::V2 => 3,
        }
    }

    /// The feature set named `version`; an unknown name is refused with the known ones.
    pub fn parse(version: &str) -> Result<FeatureSet, PortError> {
        FeatureSet::ALL
            .into_iter()
            .find(|f| f.version() == version)
            .ok_or_else(|| {
                let known: Vec<&str> = FeatureSet::ALL.iter().map(|f| f.version()).collect();
                PortError::Invalid(format!(
                    "unknown feature set {version:?} (known: {})",
                    known.join(", ")
                ))
            })
    }
}

impl std::fmt::Display for FeatureSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.version())
    }
}

/// Meteorological season (northern hemisphere) of a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Season {
    Spring,
    Summer,
    Autumn,
    Winter,
}

impl Season {
    pub fn of(date: NaiveDate) -> Season {
        match date.month() {
            3..=5 => Season::Spring,
            6..=8 => Season::Summer,
            9..=11 => Season::Autumn,
            _ => Season::Winter,
        }
    }
}

/// One snapshot of a customer's features, valid from `as_of` until the next snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerFeatures {
    pub customer_id: String,
    pub feature_set_version: String,
    /// The point in time the values describe: the newest event time included, or the read time.
    pub as_of: DateTime<Utc>,
    /// Event time of the newest event included.
    pub last_event_time: DateTime<Utc>,
    /// Number of distinct events folded in.
    pub event_count: u32,
    /// Date of the first completed service, else of the first event.
    pub customer_since: NaiveDate,
    /// Days from `customer_since` to `as_of`.
    pub tenure_days: i64,
    /// Completed services.
    pub service_count: u32,
    /// Completed services per year of tenure (tenure floored at 90 days).
    pub services_per_year: f64,
    /// Sum of completed services' prices, US cents.
    pub lifetime_value_cents: u64,
    pub last_service_date: Option<NaiveDate>,
    /// Days from the last completed service to `as_of`.
    pub days_since_last_service: Option<i64>,
    /// Services completed at least once, catalogue order.
    pub services_bought: Vec<Service>,
    /// Catalogue services never completed, catalogue order.
    pub services_not_bought: Vec<Service>,
    /// Satisfaction scores (1..=10, as surveyed) of the last surveys (the feature set's
    /// [`FeatureSet::satisfaction_window`]), oldest first.
    pub recent_satisfaction: Vec<u8>,
    /// Mean of `recent_satisfaction`.
    pub satisfaction_avg: Option<f64>,
    /// Least-squares slope of `recent_satisfaction` against survey index (points per survey);
    /// needs two surveys.
    pub satisfaction_trend: Option<f64>,
    pub lot_size_sqft: Option<u32>,
    pub has_pool: Option<bool>,
    pub has_pets: Option<bool>,
    #[serde(default)]
    pub pets: Vec<Pet>,
    pub year_built: Option<u16>,
    /// Years from `year_built` to the year of `as_of`.
    pub home_age_years: Option<u32>,
    pub home_type: Option<HomeType>,
    pub region: Option<Region>,
    pub marketing_opt_in: Option<bool>,
    /// Season of `as_of`.
    pub season: Season,
    /// Upsell messages the customer accepted (`UpsellResponded` events).
    #[serde(default)]
    pub offers_accepted: u32,
    /// Upsell messages the customer declined.
    #[serde(default)]
    pub offers_declined: u32,
    /// Upsell messages the customer did not answer.
    #[serde(default)]
    pub offers_unanswered: u32,
    /// Services of the upsell messages the customer accepted (responses that name the offered
    /// service), catalogue order. What similar customers accepted is read from here
    /// (`upsell_core::grounding`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services_accepted: Vec<Service>,
    /// The newest response to an upsell message (an opt-out included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response: Option<UpsellResponse>,
    /// Calendar date (UTC) of `last_response`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response_date: Option<NaiveDate>,
    /// Features that could not be computed, each with why (a feature is null or empty here
    /// only for a reason listed). Recomputed with the time-relative features.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingFeature>,
}

/// A feature without a value and why (e.g. `satisfactionAvg`: "no survey yet").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MissingFeature {
    /// The feature's wire name, as in docs/feature-store.md.
    pub feature: String,
    /// Why it has no value, in words a person (and the generator) can read.
    pub reason: String,
}

const NO_PROFILE: &str = "no CustomerProfileUpdated event yet";

impl CustomerFeatures {
    /// The same snapshot seen at a later read time: time-relative features recomputed for `when`.
    /// A read time earlier than the snapshot is ignored (a snapshot never moves back in time).
    pub fn at(mut self, when: DateTime<Utc>) -> CustomerFeatures {
        if when > self.as_of {
            self.as_of = when;
            self.refresh_time_relative();
        }
        self
    }

    /// The snapshot after folding `event` into `previous` (the snapshot known just before the
    /// event; `None` for a customer's first event), with the definitions of [`FeatureBuilder`].
    /// See [`FeatureBuilder::resume`] for what this assumes about the event's time.
    pub fn next(
        previous: Option<&CustomerFeatures>,
        event: &CustomerEvent,
    ) -> Result<CustomerFeatures, PortError> {
        let mut builder = match previous {
            Some(p) => FeatureBuilder::resume(p)?,
            None => FeatureBuilder::new(event.customer_id()),
        };
        builder.apply(event)?;
        builder
            .snapshot(None)
            .ok_or_else(|| PortError::Other("no snapshot after applying an event".into()))
    }

    fn refresh_time_relative(&mut self) {
        let today = self.as_of.date_naive();
        self.tenure_days = (today - self.customer_since).num_days().max(0);
        let years = (self.tenure_days.max(90) as f64) / 365.25;
        self.services_per_year = f64::from(self.service_count) / years;
        self.days_since_last_service = self
            .last_service_date
            .map(|d| (today - d).num_days().max(0));
        self.home_age_years = self
            .year_built
            .map(|y| u32::try_from(today.year() - i32::from(y)).unwrap_or(0));
        self.season = Season::of(today);
        self.missing = self.missing_features();
    }

    /// Every feature without a value and why, in table order (docs/feature-store.md).
    pub fn missing_features(&self) -> Vec<MissingFeature> {
        let mut out = Vec::new();
        let mut add = |feature: &str, reason: String| {
            out.push(MissingFeature {
                feature: feature.to_owned(),
                reason,
            })
        };
        if self.last_service_date.is_none() {
            for f in ["lastServiceDate", "daysSinceLastService"] {
                add(f, "no completed service yet".into());
            }
        }
        match self.recent_satisfaction.len() {
            0 => {
                for f in ["satisfactionAvg", "satisfactionTrend"] {
                    add(f, "no survey yet".into());
                }
            }
            1 => add("satisfactionTrend", "needs 2 surveys, has 1".into()),
            _ => {}
        }
        let has_profile = self.home_type.is_some();
        if !has_profile {
            for f in ["lotSizeSqft", "hasPool", "hasPets"] {
                add(f, NO_PROFILE.into());
            }
        }
        if self.year_built.is_none() {
            let why = if has_profile {
                "the profile does not give the year the home was built"
            } else {
                NO_PROFILE
            };
            for f in ["yearBuilt", "homeAgeYears"] {
                add(f, why.into());
            }
        }
        if !has_profile {
            for f in ["homeType", "region"] {
                add(f, NO_PROFILE.into());
            }
        }
        if self.marketing_opt_in.is_none() {
            add("marketingOptIn", NO_PROFILE.into());
        }
        out
    }
}

/// Folds one customer's events into features. Events may arrive in any order and more than
/// once: [`features_from_events`] sorts and deduplicates before folding.
#[derive(Debug, Clone)]
pub struct FeatureBuilder {
    customer_id: String,
    feature_set: FeatureSet,
    seen: HashSet<String>,
    first_event: Option<DateTime<Utc>>,
    last_event: Option<DateTime<Utc>>,
    first_service: Option<NaiveDate>,
    last_service: Option<NaiveDate>,
    service_count: u32,
    ltv: u64,
    bought: BTreeSet<Service>,
    /// (survey date, event time, score), kept sorted.
    surveys: Vec<(NaiveDate, DateTime<Utc>, u8)>,
    profile: Option<ProfileFeatures>,
    profile_time: Option<DateTime<Utc>>,
    /// Events folded into the snapshot this builder was resumed from (their ids are unknown).
    resumed_events: u32,
    /// Accepted, declined and unanswered upsell messages.
    responses: [u32; 3],
    /// Services named by accepted responses.
    accepted: BTreeSet<Service>,
    /// The newest response and its event time.
    last_response: Option<(DateTime<Utc>, UpsellResponse)>,
    /// Event time of the newest opt-out response.
    opted_out_at: Option<DateTime<Utc>>,
}

/// The features taken from the newest profile event.
#[derive(Debug, Clone)]
struct ProfileFeatures {
    lot_size_sqft: u32,
    has_pool: bool,
    pets: Vec<Pet>,
    year_built: Option<u16>,
    home_type: HomeType,
    region: Region,
    marketing_opt_in: bool,
}

impl FeatureBuilder {
    /// A builder of the serving feature set ([`FeatureSet::SERVING`]).
    pub fn new(customer_id: impl Into<String>) -> Self {
        Self::with_feature_set(customer_id, FeatureSet::SERVING)
    }

    /// A builder computing `feature_set`.
    pub fn with_feature_set(customer_id: impl Into<String>, feature_set: FeatureSet) -> Self {
        FeatureBuilder {
            customer_id: customer_id.into(),
            feature_set,
            seen: HashSet::new(),
            first_event: None,
            last_event: None,
            first_service: None,
            last_service: None,
            service_count: 0,
            ltv: 0,
            bought: BTreeSet::new(),
            surveys: Vec::new(),
            profile: None,
            profile_time: None,
            resumed_events: 0,
            responses: [0; 3],
            accepted: BTreeSet::new(),
            last_response: None,
            opted_out_at: None,
        }
    }

    /// A builder that continues from a stored snapshot, so that one more event can be folded in
    /// with the same definitions as a full replay (the enrich worker's path: read the snapshot
    /// known just before the event, apply the event, store the result).
    ///
    /// A snapshot does not keep everything a replay knows, so the continuation assumes what is
    /// true when the next event is newer than every event in the snapshot: the event's id was
    /// not folded in before, the snapshot's surveys come before a new survey, and a new profile
    /// replaces the snapshot's. An event older than the snapshot's newest event needs a full
    /// replay of the event log ([`replay`]) instead.
    /// The snapshot's feature-set version is kept; an unknown version is refused.
    pub fn resume(snapshot: &CustomerFeatures) -> Result<Self, PortError> {
        let feature_set = FeatureSet::parse(&snapshot.feature_set_version)?;
        let profile = match (
            snapshot.lot_size_sqft,
            snapshot.has_pool,
            snapshot.home_type,
            snapshot.region,
            snapshot.marketing_opt_in,
        ) {
            (Some(lot_size_sqft), Some(has_pool), Some(home_type), Some(region), Some(opt_in)) => {
                Some(ProfileFeatures {
                    lot_size_sqft,
                    has_pool,
                    pets: snapshot.pets.clone(),
                    year_built: snapshot.year_built,
                    home_type,
                    region,
                    marketing_opt_in: opt_in,
                })
            }
            _ => None,
        };
        let since = snapshot
            .customer_since
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        Ok(FeatureBuilder {
            customer_id: snapshot.customer_id.clone(),
            feature_set,
            seen: HashSet::new(),
            first_event: Some(since.min(snapshot.last_event_time)),
            last_event: Some(snapshot.last_event_time),
            first_service: None,
            last_service: snapshot.last_service_date,
            service_count: snapshot.service_count,
            ltv: snapshot.lifetime_value_cents,
            bought: snapshot.services_bought.iter().copied().collect(),
            // Oldest first, ordered before any survey folded in after resuming.
            surveys: snapshot
                .recent_satisfaction
                .iter()
                .map(|s| (NaiveDate::MIN, DateTime::<Utc>::MIN_UTC, *s))
                .collect(),
            profile_time: profile.as_ref().map(|_| snapshot.last_event_time),
            // Without a profile, a known "no" can only come from an opt-out response.
            opted_out_at: (profile.is_none() && snapshot.marketing_opt_in == Some(false))
                .then_some(snapshot.last_event_time),
            profile,
            resumed_events: snapshot.event_count,
            responses: [
                snapshot.offers_accepted,
                snapshot.offers_declined,
                snapshot.offers_unanswered,
            ],
            accepted: snapshot.services_accepted.iter().copied().collect(),
            // Only the date is kept; a response folded in next is newer (see above).
            last_response: snapshot.last_response.map(|r| {
                let date = snapshot
                    .last_response_date
                    .unwrap_or(snapshot.last_event_time.date_naive());
                (date.and_time(chrono::NaiveTime::MIN).and_utc(), r)
            }),
        })
    }

    /// Applies one event. Another customer's event is refused; a repeated event id is ignored
    /// (returns `Ok(false)`).
    pub fn apply(&mut self, event: &CustomerEvent) -> Result<bool, PortError> {
        if event.customer_id() != self.customer_id {
            return Err(PortError::Invalid(format!(
                "event {} is for customer {}, not {}",
                event.id(),
                event.customer_id(),
                self.customer_id
            )));
        }
        if !self.seen.insert(event.id().to_owned()) {
            return Ok(false);
        }
        let t = event.time();
        self.first_event = Some(self.first_event.map_or(t, |f| f.min(t)));
        self.last_event = Some(self.last_event.map_or(t, |l| l.max(t)));
        match event {
            CustomerEvent::ServiceCompleted(e) => {
                let d = &e.detail;
                self.service_count += 1;
                self.ltv = self.ltv.saturating_add(d.price_cents);
                self.bought.insert(d.service);
                self.first_service = Some(
                    self.first_service
                        .map_or(d.service_date, |f| f.min(d.service_date)),
                );
                self.last_service = Some(
                    self.last_service
                        .map_or(d.service_date, |l| l.max(d.service_date)),
                );
            }
            CustomerEvent::SurveySubmitted(e) => {
                let d = &e.detail;
                self.surveys.push((d.survey_date, t, d.satisfaction));
                self.surveys.sort_by_key(|s| (s.0, s.1));
            }
            CustomerEvent::CustomerProfileUpdated(e) => {
                // The newest profile by event time wins, whatever the arrival order.
                if self.profile_time.is_none_or(|pt| t >= pt) {
                    let d = &e.detail;
                    self.profile = Some(ProfileFeatures {
                        lot_size_sqft: d.property.lot_size_sqft,
                        has_pool: d.property.has_pool,
                        pets: d.property.pets.clone(),
                        year_built: d.property.year_built,
                        home_type: d.property.home_type,
                        region: d.address.region,
                        marketing_opt_in: d.marketing_opt_in,
                    });
                    self.profile_time = Some(t);
                }
            }
            CustomerEvent::UpsellResponded(e) => {
                let r = e.detail.response;
                match r {
                    UpsellResponse::Accepted => {
                        self.responses[0] += 1;
                        self.accepted.extend(e.detail.service);
                    }
                    UpsellResponse::Declined => self.responses[1] += 1,
                    UpsellResponse::NoAnswer => self.responses[2] += 1,
                    UpsellResponse::OptedOut => {
                        self.opted_out_at = Some(self.opted_out_at.map_or(t, |o| o.max(t)));
                    }
                }
                if self.last_response.is_none_or(|(lt, _)| t >= lt) {
                    self.last_response = Some((t, r));
                }
            }
        }
        Ok(true)
    }

    /// The features as of `when` (at least the newest event time). `None` before any event.
    pub fn snapshot(&self, when: Option<DateTime<Utc>>) -> Option<CustomerFeatures> {
        let last_event = self.last_event?;
        let first_event = self.first_event?;
        let as_of = when.map_or(last_event, |w| w.max(last_event));
        let recent: Vec<u8> = self
            .surveys
            .iter()
            .rev()
            .take(self.feature_set.satisfaction_window())
            .rev()
            .map(|s| s.2)
            .collect();
        let profile = self.profile.as_ref();
        let mut f = CustomerFeatures {
            customer_id: self.customer_id.clone(),
            feature_set_version: self.feature_set.version().to_owned(),
            as_of,
            last_event_time: last_event,
            event_count: self.resumed_events + self.seen.len() as u32,
            customer_since: self
                .first_service
                .unwrap_or_else(|| first_event.date_naive())
                .min(first_event.date_naive()),
            tenure_days: 0,
            service_count: self.service_count,
            services_per_year: 0.0,
            lifetime_value_cents: self.ltv,
            last_service_date: self.last_service,
            days_since_last_service: None,
            services_bought: Service::ALL
                .into_iter()
                .filter(|s| self.bought.contains(s))
                .collect(),
            services_not_bought: Service::ALL
                .into_iter()
                .filter(|s| !self.bought.contains(s))
                .collect(),
            satisfaction_avg: mean(&recent),
            satisfaction_trend: slope(&recent),
            recent_satisfaction: recent,
            lot_size_sqft: profile.map(|p| p.lot_size_sqft),
            has_pool: profile.map(|p| p.has_pool),
            has_pets: profile.map(|p| !p.pets.is_empty()),
            pets: profile.map(|p| p.pets.clone()).unwrap_or_default(),
            year_built: profile.and_then(|p| p.year_built),
            home_age_years: None,
            home_type: profile.map(|p| p.home_type),
            region: profile.map(|p| p.region),
            // An opt-out response withdraws consent until a newer profile says otherwise.
            marketing_opt_in: match (profile, self.opted_out_at) {
                (Some(p), Some(o)) if self.profile_time.is_some_and(|pt| pt > o) => {
                    Some(p.marketing_opt_in)
                }
                (_, Some(_)) => Some(false),
                (p, None) => p.map(|p| p.marketing_opt_in),
            },
            season: Season::of(as_of.date_naive()),
            offers_accepted: self.responses[0],
            offers_declined: self.responses[1],
            offers_unanswered: self.responses[2],
            services_accepted: Service::ALL
                .into_iter()
                .filter(|s| self.accepted.contains(s))
                .collect(),
            last_response: self.last_response.map(|(_, r)| r),
            last_response_date: self.last_response.map(|(t, _)| t.date_naive()),
            missing: Vec::new(),
        };
        f.refresh_time_relative();
        Some(f)
    }
}

fn mean(xs: &[u8]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().map(|x| f64::from(*x)).sum::<f64>() / xs.len() as f64)
}

/// Least-squares slope of `xs` against 0, 1, 2, ...
fn slope(xs: &[u8]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = mean(xs)?;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in xs.iter().enumerate() {
        let dx = i as f64 - mx;
        num += dx * (f64::from(*y) - my);
        den += dx * dx;
    }
    Some(num / den)
}

/// Orders events for folding: by event time, then id (stable across runs).
fn sorted_unique(events: &[CustomerEvent]) -> Vec<&CustomerEvent> {
    let mut seen = HashSet::new();
    let mut v: Vec<&CustomerEvent> = events.iter().filter(|e| seen.insert(e.id())).collect();
    v.sort_by(|a, b| (a.time(), a.id()).cmp(&(b.time(), b.id())));
    v
}

/// The features of `customer_id` as of `as_of` from its events: events after `as_of` are
/// ignored, so the result never uses the future. `None` if no event happened by then.
pub fn features_from_events(
    customer_id: &str,
    events: &[CustomerEvent],
    as_of: DateTime<Utc>,
) -> Result<Option<CustomerFeatures>, PortError> {
    features_from_events_as(FeatureSet::SERVING, customer_id, events, as_of)
}

/// [`features_from_events`] computing `feature_set`.
pub fn features_from_events_as(
    feature_set: FeatureSet,
    customer_id: &str,
    events: &[CustomerEvent],
    as_of: DateTime<Utc>,
) -> Result<Option<CustomerFeatures>, PortError> {
    let mut b = FeatureBuilder::with_feature_set(customer_id, feature_set);
    for e in sorted_unique(events) {
        if e.time() <= as_of {
            b.apply(e)?;
        }
    }
    Ok(b.snapshot(Some(as_of)))
}

/// One snapshot per distinct event time, oldest first: the history a feature store keeps.
pub fn replay(
    customer_id: &str,
    events: &[CustomerEvent],
) -> Result<Vec<CustomerFeatures>, PortError> {
    replay_as(FeatureSet::SERVING, customer_id, events)
}

/// [`replay`] computing `feature_set`.
pub fn replay_as(
    feature_set: FeatureSet,
    customer_id: &str,
    events: &[CustomerEvent],
) -> Result<Vec<CustomerFeatures>, PortError> {
    let mut b = FeatureBuilder::with_feature_set(customer_id, feature_set);
    let events = sorted_unique(events);
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        b.apply(e)?;
        let next_same_time = events.get(i + 1).is_some_and(|n| n.time() == e.time());
        if !next_same_time && let Some(s) = b.snapshot(None) {
            out.push(s);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Customer embedding and similar customers.

/// Names of the embedding's dimensions, in order (`region:*` and `bought:*` are one-hot).
pub fn embedding_dimensions() -> Vec<String> {
    let mut names: Vec<String> = [
        "services_per_year",
        "tenure_years",
        "log_lifetime_value",
        "log_days_since_last_service",
        "satisfaction_avg",
        "satisfaction_trend",
        "log_lot_size",
        "has_pool",
        "has_pets",
        "home_age",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.extend(
        Region::ALL
            .iter()
            .map(|r| format!("region:{}", region_code(*r))),
    );
    names.extend(Service::ALL.iter().map(|s| format!("bought:{}", s.code())));
    names
}

/// Number of dimensions of the customer embedding.
pub fn embedding_len() -> usize {
    10 + Region::ALL.len() + Service::ALL.len()
}

pub fn region_code(r: Region) -> &'static str {
    match r {
        Region::Northeast => "northeast",
        Region::Southeast => "southeast",
        Region::Midwest => "midwest",
        Region::Southwest => "southwest",
        Region::West => "west",
        Region::Northwest => "northwest",
    }
}

fn z(x: f64, center: f64, scale: f64) -> f32 {
    ((x - center) / scale).clamp(-3.0, 3.0) as f32
}

/// The customer embedding ([`EMBEDDING_VERSION`]): numeric features standardised with fixed,
/// documented centres and scales (so vectors do not shift when the population does), booleans
/// as 0/1 (0.5 when unknown), region one-hot and services bought multi-hot at weight 0.5.
/// Unknown numeric values sit at the centre (0). Compare with Euclidean distance.
pub fn embed_customer(f: &CustomerFeatures) -> Vec<f32> {
    let mut v = Vec::with_capacity(embedding_len());
    v.push(z(f.services_per_year, 4.0, 3.0));
    v.push(z(f.tenure_days as f64 / 365.25, 3.0, 2.5));
    v.push(z(
        ((f.lifetime_value_cents as f64) / 100.0 + 1.0).log10(),
        3.0,
        0.7,
    ));
    v.push(
        f.days_since_last_service
            .map_or(0.0, |d| z((d as f64).ln_1p(), 4.0, 1.5)),
    );
    v.push(f.satisfaction_avg.map_or(0.0, |s| z(s, 7.5, 1.5)));
    v.push(f.satisfaction_trend.map_or(0.0, |t| z(t, 0.0, 1.0)));
    v.push(
        f.lot_size_sqft
            .map_or(0.0, |s| z(f64::from(s.max(1)).ln(), 8000f64.ln(), 0.8)),
    );
    v.push(f.has_pool.map_or(0.5, |b| if b { 1.0 } else { 0.0 }));
    v.push(f.has_pets.map_or(0.5, |b| if b { 1.0 } else { 0.0 }));
    v.push(
        f.home_age_years
            .map_or(0.0, |a| z(f64::from(a), 35.0, 20.0)),
    );
    for r in Region::ALL {
        v.push(if f.region == Some(r) { 1.0 } else { 0.0 });
    }
    for s in Service::ALL {
        v.push(if f.services_bought.contains(&s) {
            0.5
        } else {
            0.0
        });
    }
    v
}

/// A customer's embedding with what similar-customer filters need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerEmbedding {
    pub customer_id: String,
    pub embedding_version: String,
    pub as_of: DateTime<Utc>,
    pub region: Option<Region>,
    pub services_bought: Vec<Service>,
    pub vector: Vec<f32>,
}

impl CustomerEmbedding {
    /// Checks the vector has [`embedding_len`] finite values (every index refuses others).
    pub fn check(&self) -> Result<(), PortError> {
        if self.vector.len() != embedding_len() || self.vector.iter().any(|x| !x.is_finite()) {
            return Err(PortError::Invalid(format!(
                "embedding of {} must have {} finite values, has {}",
                self.customer_id,
                embedding_len(),
                self.vector.len()
            )));
        }
        Ok(())
    }

    /// Whether this embedding may replace the stored one (its `as_of` and version): an older
    /// embedding never replaces a newer one of the same version; a different version always
    /// replaces (a re-embedding with new definitions).
    pub fn supersedes(&self, stored_as_of: DateTime<Utc>, stored_version: &str) -> bool {
        self.as_of >= stored_as_of || self.embedding_version != stored_version
    }

    pub fn from_features(f: &CustomerFeatures) -> CustomerEmbedding {
        CustomerEmbedding {
            customer_id: f.customer_id.clone(),
            embedding_version: EMBEDDING_VERSION.to_owned(),
            as_of: f.as_of,
            region: f.region,
            services_bought: f.services_bought.clone(),
            vector: embed_customer(f),
        }
    }
}

/// `upsell features similar CUSTOMER --k 10 [--region R] [--service S]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimilarQuery {
    pub customer_id: String,
    pub k: usize,
    /// Only customers in this region.
    #[serde(default)]
    pub region: Option<Region>,
    /// Only customers who bought this service.
    #[serde(default)]
    pub service: Option<Service>,
}

/// Largest `k` of a similar-customer query (a store may allow fewer, see [`SimilarQuery::check`]).
pub const MAX_SIMILAR_K: usize = 1000;
/// Dimensions listed per neighbour in [`SimilarCustomer::closest_features`].
pub const CLOSEST_FEATURES: usize = 6;

impl SimilarQuery {
    /// Checks `k` is between 1 and `max_k`, the store's limit (at most [`MAX_SIMILAR_K`]).
    pub fn check(&self, max_k: usize) -> Result<(), PortError> {
        let max_k = max_k.min(MAX_SIMILAR_K);
        if self.k == 0 || self.k > max_k {
            return Err(PortError::Invalid(format!(
                "k must be between 1 and {max_k}, got {}",
                self.k
            )));
        }
        Ok(())
    }

    /// Whether a customer with this region and these services passes the query's filters.
    pub fn filters_admit(&self, region: Option<Region>, services: &[Service]) -> bool {
        self.region.is_none_or(|r| region == Some(r))
            && self.service.is_none_or(|s| services.contains(&s))
    }

    /// The error for a query customer without an embedding.
    pub fn not_found(&self) -> PortError {
        PortError::NotFound(format!(
            "customer {} has no embedding ({EMBEDDING_VERSION}): ingest its events first",
            self.customer_id
        ))
    }

    /// The `k` nearest of `candidates` to `query_vector` that pass the filters, the query
    /// customer excluded, nearest first (ties by customer id). For stores whose search returns
    /// candidates: distances and agreeing dimensions are computed here, as locally.
    pub fn nearest(
        &self,
        query_vector: &[f32],
        candidates: impl IntoIterator<Item = CustomerEmbedding>,
    ) -> Vec<SimilarCustomer> {
        let mut out: Vec<SimilarCustomer> = candidates
            .into_iter()
            .filter(|c| {
                c.customer_id != self.customer_id
                    && self.filters_admit(c.region, &c.services_bought)
            })
            .map(|c| {
                SimilarCustomer::of(
                    query_vector,
                    c.customer_id,
                    c.region,
                    c.services_bought,
                    &c.vector,
                )
            })
            .collect();
        out.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then_with(|| a.customer_id.cmp(&b.customer_id))
        });
        out.truncate(self.k);
        out
    }
}

/// A neighbour and why it is close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimilarCustomer {
    pub customer_id: String,
    /// Euclidean distance between the embeddings (0 = identical).
    pub distance: f32,
    pub region: Option<Region>,
    pub services_bought: Vec<Service>,
    /// The features that agree most, closest first (dimension name and absolute difference).
    pub closest_features: Vec<(String, f32)>,
}

impl SimilarCustomer {
    /// The neighbour `vector` of `query_vector`: Euclidean distance and the
    /// [`CLOSEST_FEATURES`] dimensions that agree most ([`closest_features`]).
    pub fn of(
        query_vector: &[f32],
        customer_id: String,
        region: Option<Region>,
        services_bought: Vec<Service>,
        vector: &[f32],
    ) -> SimilarCustomer {
        SimilarCustomer {
            customer_id,
            distance: squared_distance(query_vector, vector).max(0.0).sqrt(),
            region,
            services_bought,
            closest_features: closest_features(query_vector, vector, CLOSEST_FEATURES),
        }
    }
}

/// The dimensions on which two embeddings agree most: numeric ones with a difference under
/// 0.25 standard units, the shared region and the services both bought; at most `n`.
pub fn closest_features(a: &[f32], b: &[f32], n: usize) -> Vec<(String, f32)> {
    let names = embedding_dimensions();
    let mut out: Vec<(String, f32)> = names
        .into_iter()
        .zip(a.iter().zip(b))
        .filter_map(|(name, (x, y))| {
            let d = (x - y).abs();
            let one_hot = name.starts_with("region:") || name.starts_with("bought:");
            if one_hot {
                (*x > 0.0 && *y > 0.0).then_some((name, d))
            } else {
                (d < 0.25).then_some((name, d))
            }
        })
        .collect();
    // Closest first; on ties the shared region and services first, as they explain the most.
    let one_hot = |name: &str| name.starts_with("region:") || name.starts_with("bought:");
    out.sort_by(|x, y| x.1.total_cmp(&y.1).then(one_hot(&y.0).cmp(&one_hot(&x.0))));
    out.truncate(n);
    out
}

/// Squared Euclidean distance.
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Feature storage with history, and the event log the features are computed from. Local:
/// SQLite; AWS: DynamoDB (docs/feature-store.md).
#[async_trait::async_trait]
pub trait FeatureStore: Send + Sync {
    /// Adds a snapshot to the customer's history, keyed by (customer, feature-set version,
    /// `last_event_time`); writing the same key again replaces it (idempotent replays).
    async fn put(&self, features: &CustomerFeatures) -> Result<(), PortError>;
    /// [`put`](Self::put) for many snapshots (a rebuild); adapters may batch.
    async fn put_all(&self, features: &[CustomerFeatures]) -> Result<(), PortError> {
        for f in features {
            self.put(f).await?;
        }
        Ok(())
    }
    /// The snapshot of the store's feature-set version (the serving one unless the adapter was
    /// told otherwise) known at `as_of`; see [`get_version`](Self::get_version).
    async fn get(
        &self,
        customer_id: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<CustomerFeatures>, PortError>;
    /// The snapshot of feature-set `version` known at `as_of` (the newest when `None`), with
    /// time-relative features computed for `as_of`. Never returns a snapshot whose events
    /// happened after `as_of`.
    async fn get_version(
        &self,
        customer_id: &str,
        version: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<CustomerFeatures>, PortError>;
    /// Logs an event in its customer's event log; `Ok(false)` when an event with the same id
    /// (and, in DynamoDB, the same event time) is already logged, which is left unchanged.
    async fn append_event(&self, event: &CustomerEvent) -> Result<bool, PortError>;
    /// The customer's logged events in event-time order, ties by event id.
    async fn events(&self, customer_id: &str) -> Result<Vec<CustomerEvent>, PortError>;
    /// Every customer with a logged event, sorted, each once.
    async fn logged_customers(&self) -> Result<Vec<String>, PortError>;
    /// Up to `limit` snapshots, newest first.
    async fn history(
        &self,
        customer_id: &str,
        limit: usize,
    ) -> Result<Vec<CustomerFeatures>, PortError>;
    /// Folds one event into the snapshot known just before it ([`CustomerFeatures::next`]) and
    /// stores the result under the event's time; returns it. Applying the same event again
    /// gives the same snapshot under the same key, so retries and redeliveries count it once.
    /// The event is logged first ([`append_event`](Self::append_event)), so a later
    /// [`rebuild`] sees it. Every adapter gets the same behaviour from this one definition.
    async fn apply_event(&self, event: &CustomerEvent) -> Result<CustomerFeatures, PortError> {
        self.append_event(event).await?;
        let before = event.time() - chrono::Duration::microseconds(1);
        let previous = self.get(event.customer_id(), Some(before)).await?;
        let features = CustomerFeatures::next(previous.as_ref(), event)?;
        self.put(&features).await?;
        Ok(features)
    }
}

/// Customer embeddings and nearest-neighbour search. Local: SQLite + an exact in-memory scan;
/// AWS: an S3 Vectors index (docs/feature-store.md).
#[async_trait::async_trait]
pub trait CustomerIndex: Send + Sync {
    /// Inserts or replaces the customer's current embedding.
    async fn upsert(&self, embedding: &CustomerEmbedding) -> Result<(), PortError>;
    /// The `k` nearest other customers passing the filters, nearest first.
    /// `PortError::NotFound` when the query customer has no embedding.
    async fn similar(&self, query: &SimilarQuery) -> Result<Vec<SimilarCustomer>, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: serde_json::Value) -> CustomerEvent {
        serde_json::from_value(v).unwrap()
    }

    fn service(id: &str, time: &str, date: &str, svc: &str, cents: u64) -> CustomerEvent {
        ev(
            json!({"id": id, "source": "test", "detail-type": "ServiceCompleted", "time": time,
            "detail": {"customerId": "c1", "service": svc, "serviceDate": date, "priceCents": cents}}),
        )
    }

    fn survey(id: &str, time: &str, date: &str, score: u8) -> CustomerEvent {
        ev(
            json!({"id": id, "source": "test", "detail-type": "SurveySubmitted", "time": time,
            "detail": {"customerId": "c1", "satisfaction": score, "surveyDate": date}}),
        )
    }

    fn profile(id: &str, time: &str, pool: bool, region: &str) -> CustomerEvent {
        ev(
            json!({"id": id, "source": "test", "detail-type": "CustomerProfileUpdated", "time": time,
            "detail": {"customerId": "c1", "firstName": "Dana", "lastName": "Lee", "email": "d@example.com",
              "address": {"street": "1 Main St", "city": "Columbus", "state": "OH", "postalCode": "43004", "region": region},
              "property": {"homeType": "single-family", "lotSizeSqft": 9000, "hasPool": pool, "pets": ["dog"], "yearBuilt": 1990}}}),
        )
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn response(id: &str, time: &str, response: &str) -> CustomerEvent {
        ev(
            json!({"id": id, "source": "test", "detail-type": "UpsellResponded", "time": time,
            "detail": {"customerId": "c1", "messageEventId": "s1", "response": response}}),
        )
    }

    fn events() -> Vec<CustomerEvent> {
        vec![
            profile("p1", "2023-01-05T00:00:00Z", false, "midwest"),
            service(
                "s1",
                "2023-04-10T12:00:00Z",
                "2023-04-10",
                "lawn-care",
                6500,
            ),
            survey("v1", "2023-04-12T00:00:00Z", "2023-04-12", 3),
            service(
                "s2",
                "2024-05-01T12:00:00Z",
                "2024-05-01",
                "pest-control",
                12000,
            ),
            survey("v2", "2024-05-03T00:00:00Z", "2024-05-03", 4),
            survey("v3", "2024-06-03T00:00:00Z", "2024-06-03", 5),
            profile("p2", "2024-07-01T00:00:00Z", true, "southwest"),
        ]
    }

    #[test]
    fn features_follow_the_definitions() {
        let f = features_from_events("c1", &events(), t("2024-07-01T00:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(f.feature_set_version, FEATURE_SET_VERSION);
        assert_eq!(f.service_count, 2);
        assert_eq!(f.lifetime_value_cents, 18500);
        assert_eq!(
            f.customer_since,
            NaiveDate::from_ymd_opt(2023, 1, 5).unwrap()
        );
        assert_eq!(f.tenure_days, 543);
        assert_eq!(f.days_since_last_service, Some(61));
        assert_eq!(f.services_bought, [Service::LawnCare, Service::PestControl]);
        assert_eq!(f.services_not_bought.len(), Service::ALL.len() - 2);
        assert_eq!(f.recent_satisfaction, [3, 4, 5]);
        assert_eq!(f.satisfaction_avg, Some(4.0));
        assert_eq!(f.satisfaction_trend, Some(1.0));
        assert_eq!(f.has_pool, Some(true));
        assert_eq!(f.region, Some(Region::Southwest));
        assert_eq!(f.has_pets, Some(true));
        assert_eq!(f.home_age_years, Some(34));
        assert_eq!(f.season, Season::Summer);
        assert!((f.services_per_year - 2.0 / (543.0 / 365.25)).abs() < 1e-9);
    }

    #[test]
    fn as_of_never_sees_the_future_and_order_does_not_matter() {
        let mut evs = events();
        evs.reverse();
        evs.push(evs[0].clone()); // a redelivery
        let f = features_from_events("c1", &evs, t("2024-01-01T00:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(f.service_count, 1);
        assert_eq!(f.lifetime_value_cents, 6500);
        assert_eq!(f.has_pool, Some(false));
        assert_eq!(f.region, Some(Region::Midwest));
        assert_eq!(f.recent_satisfaction, [3]);
        assert_eq!(f.satisfaction_trend, None);
        assert_eq!(f.as_of, t("2024-01-01T00:00:00Z"));
        assert_eq!(f.season, Season::Winter);
        assert!(
            features_from_events("c1", &evs, t("2022-01-01T00:00:00Z"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn replay_gives_one_snapshot_per_event_time() {
        let snaps = replay("c1", &events()).unwrap();
        assert_eq!(snaps.len(), 7);
        assert!(snaps.windows(2).all(|w| w[0].as_of < w[1].as_of));
        assert_eq!(snaps.last().unwrap().event_count, 7);
        let later = snaps[0].clone().at(t("2023-03-01T00:00:00Z"));
        assert_eq!(later.tenure_days, 55);
        assert_eq!(later.season, Season::Spring);
    }

    #[test]
    fn folding_one_event_at_a_time_equals_a_replay() {
        let mut evs = events();
        // A service dated before the first event moves `customer_since` back.
        evs.push(service(
            "s0",
            "2024-07-02T00:00:00Z",
            "2022-12-20",
            "lawn-care",
            100,
        ));
        for i in 0..7u8 {
            let d = format!("2024-08-{:02}", i + 1);
            evs.push(survey(
                &format!("w{i}"),
                &format!("{d}T00:00:00Z"),
                &d,
                1 + i,
            ));
        }
        evs.push(response("r1", "2024-08-20T00:00:00Z", "accepted"));
        evs.push(response("r2", "2024-08-21T00:00:00Z", "opted-out"));
        evs.push(response("r3", "2024-08-22T00:00:00Z", "no-answer"));
        evs.push(profile("p3", "2024-09-01T00:00:00Z", false, "west"));
        let replayed = replay("c1", &evs).unwrap();
        let mut previous: Option<CustomerFeatures> = None;
        for (e, want) in evs.iter().zip(&replayed) {
            let next = CustomerFeatures::next(previous.as_ref(), e).unwrap();
            assert_eq!(&next, want, "after {}", e.id());
            // What a store hands back: JSON round trip, read just before the next event.
            let json = serde_json::to_string(&next).unwrap();
            previous = Some(serde_json::from_str(&json).unwrap());
        }
        let other = service("x", "2025-01-01T00:00:00Z", "2025-01-01", "lawn-care", 1);
        let mut other_json = serde_json::to_value(&other).unwrap();
        other_json["detail"]["customerId"] = json!("c2");
        let other = ev(other_json);
        assert!(CustomerFeatures::next(previous.as_ref(), &other).is_err());
    }

    #[test]
    fn responses_count_and_an_opt_out_withdraws_consent_until_a_newer_profile() {
        let mut evs = events();
        evs.push(response("r1", "2024-07-02T00:00:00Z", "accepted"));
        evs.push(response("r2", "2024-07-03T00:00:00Z", "declined"));
        evs.push(response("r3", "2024-07-04T00:00:00Z", "opted-out"));
        let f = replay("c1", &evs).unwrap().pop().unwrap();
        assert_eq!((f.offers_accepted, f.offers_declined), (1, 1));
        assert_eq!(f.offers_unanswered, 0);
        assert_eq!(f.last_response, Some(UpsellResponse::OptedOut));
        assert_eq!(f.last_response_date, NaiveDate::from_ymd_opt(2024, 7, 4));
        assert_eq!(f.marketing_opt_in, Some(false));
        // Resuming from the stored snapshot keeps the opt-out and the counts.
        let next = CustomerFeatures::next(
            Some(&f),
            &response("r4", "2024-07-05T00:00:00Z", "no-answer"),
        )
        .unwrap();
        assert_eq!(next.marketing_opt_in, Some(false));
        assert_eq!(next.offers_unanswered, 1);
        assert_eq!(next.offers_accepted, 1);
        // A newer profile (the CRM re-recorded consent) wins again.
        evs.push(profile("p9", "2024-08-01T00:00:00Z", true, "west"));
        let f = replay("c1", &evs).unwrap().pop().unwrap();
        assert_eq!(f.marketing_opt_in, Some(true));
        // An opt-out before any profile is a known "no".
        let only = replay("c1", &[response("r0", "2024-01-01T00:00:00Z", "opted-out")])
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(only.marketing_opt_in, Some(false));
    }

    #[test]
    fn missing_features_say_why() {
        let only_service = replay(
            "c1",
            &[service(
                "s1",
                "2024-05-01T00:00:00Z",
                "2024-05-01",
                "lawn-care",
                100,
            )],
        )
        .unwrap()
        .pop()
        .unwrap();
        let why = |f: &CustomerFeatures, name: &str| {
            f.missing
                .iter()
                .find(|m| m.feature == name)
                .map(|m| m.reason.clone())
        };
        assert_eq!(
            why(&only_service, "satisfactionAvg").as_deref(),
            Some("no survey yet")
        );
        assert_eq!(why(&only_service, "region").as_deref(), Some(NO_PROFILE));
        assert_eq!(why(&only_service, "lastServiceDate"), None);
        let full = features_from_events("c1", &events(), t("2024-07-01T00:00:00Z"))
            .unwrap()
            .unwrap();
        assert!(full.missing.is_empty(), "{:?}", full.missing);
        // A profile without a build year, one survey.
        let mut p =
            serde_json::to_value(profile("p1", "2024-01-01T00:00:00Z", false, "west")).unwrap();
        p["detail"]["property"]
            .as_object_mut()
            .unwrap()
            .remove("yearBuilt");
        let f = replay(
            "c1",
            &[ev(p), survey("v1", "2024-01-02T00:00:00Z", "2024-01-02", 8)],
        )
        .unwrap()
        .pop()
        .unwrap();
        assert_eq!(
            why(&f, "homeAgeYears").as_deref(),
            Some("the profile does not give the year the home was built")
        );
        assert_eq!(
            why(&f, "satisfactionTrend").as_deref(),
            Some("needs 2 surveys, has 1")
        );
        assert_eq!(why(&f, "satisfactionAvg"), None);
        // Every null feature of the snapshot is explained.
        let v = serde_json::to_value(&f).unwrap();
        for (k, val) in v.as_object().unwrap() {
            if val.is_null() && !k.starts_with("lastResponse") {
                assert!(why(&f, k).is_some(), "{k} is null without a reason");
            }
        }
    }

    #[test]
    fn satisfaction_window_keeps_the_last_surveys() {
        let mut evs = vec![];
        for i in 0..8u8 {
            let d = format!("2024-01-{:02}", i + 1);
            evs.push(survey(
                &format!("v{i}"),
                &format!("{d}T00:00:00Z"),
                &d,
                5 - (i % 5),
            ));
        }
        let f = features_from_events("c1", &evs, t("2024-02-01T00:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(f.recent_satisfaction.len(), SATISFACTION_WINDOW);
        assert_eq!(f.recent_satisfaction, [2, 1, 5, 4, 3]);
        assert_eq!(f.service_count, 0);
        assert_eq!(f.days_since_last_service, None);
    }

    #[test]
    fn other_customers_events_are_refused() {
        let mut b = FeatureBuilder::new("someone-else");
        let err = b.apply(&events()[0]).unwrap_err();
        assert!(err.to_string().contains("not someone-else"), "{err}");
    }

    #[test]
    fn embedding_has_named_dimensions_and_explains_closeness() {
        let f = features_from_events("c1", &events(), t("2024-07-01T00:00:00Z"))
            .unwrap()
            .unwrap();
        let v = embed_customer(&f);
        assert_eq!(v.len(), embedding_len());
        assert_eq!(embedding_dimensions().len(), embedding_len());
        let close = closest_features(&v, &v, 50);
        assert!(close.iter().any(|(n, _)| n == "region:southwest"));
        assert!(close.iter().any(|(n, _)| n == "bought:lawn-care"));
        assert!(!close.iter().any(|(n, _)| n == "region:midwest"));
        assert_eq!(squared_distance(&v, &v), 0.0);
    }

    fn emb(
        id: &str,
        as_of: &str,
        region: Region,
        services: &[Service],
        x: f32,
    ) -> CustomerEmbedding {
        let mut vector = vec![0.0; embedding_len()];
        vector[0] = x;
        CustomerEmbedding {
            customer_id: id.into(),
            embedding_version: EMBEDDING_VERSION.into(),
            as_of: t(as_of),
            region: Some(region),
            services_bought: services.to_vec(),
            vector,
        }
    }

    #[test]
    fn an_embedding_supersedes_only_an_older_one_of_its_version() {
        let e = emb("c1", "2024-07-01T00:00:00Z", Region::West, &[], 0.0);
        assert!(e.supersedes(t("2024-06-30T00:00:00Z"), EMBEDDING_VERSION));
        assert!(e.supersedes(t("2024-07-01T00:00:00Z"), EMBEDDING_VERSION));
        assert!(!e.supersedes(t("2024-07-02T00:00:00Z"), EMBEDDING_VERSION));
        assert!(e.supersedes(t("2024-07-02T00:00:00Z"), "cust-emb-v0"));
        assert!(e.check().is_ok());
        let mut bad = e.clone();
        bad.vector.push(0.0);
        assert_eq!(bad.check().unwrap_err().error_type(), "InvalidRequest");
        bad.vector.pop();
        bad.vector[2] = f32::INFINITY;
        assert!(bad.check().is_err());
    }

    #[test]
    fn nearest_excludes_the_query_customer_filters_ranks_and_keeps_k() {
        let q = |k, region, service| SimilarQuery {
            customer_id: "c1".into(),
            k,
            region,
            service,
        };
        let me = emb(
            "c1",
            "2024-07-01T00:00:00Z",
            Region::West,
            &[Service::LawnCare],
            0.0,
        );
        let candidates = || {
            vec![
                emb("far", "2024-07-01T00:00:00Z", Region::West, &[], 2.0),
                me.clone(),
                emb(
                    "b",
                    "2024-07-01T00:00:00Z",
                    Region::West,
                    &[Service::LawnCare],
                    0.5,
                ),
                emb(
                    "a",
                    "2024-07-01T00:00:00Z",
                    Region::Midwest,
                    &[Service::LawnCare],
                    0.5,
                ),
            ]
        };
        let ids = |hits: Vec<SimilarCustomer>| -> Vec<String> {
            hits.into_iter().map(|h| h.customer_id).collect()
        };
        // Ties on distance by customer id; the query customer never appears.
        assert_eq!(
            ids(q(10, None, None).nearest(&me.vector, candidates())),
            ["a", "b", "far"]
        );
        assert_eq!(
            ids(q(2, None, None).nearest(&me.vector, candidates())),
            ["a", "b"]
        );
        assert_eq!(
            ids(q(10, Some(Region::West), None).nearest(&me.vector, candidates())),
            ["b", "far"]
        );
        assert_eq!(
            ids(q(10, None, Some(Service::LawnCare)).nearest(&me.vector, candidates())),
            ["a", "b"]
        );
        let hit = &q(1, None, None).nearest(&me.vector, candidates())[0];
        assert!((hit.distance - 0.5).abs() < 1e-6);
        let a = &candidates()[3];
        assert_eq!(
            hit.closest_features,
            closest_features(&me.vector, &a.vector, CLOSEST_FEATURES)
        );
        assert_eq!(hit.closest_features.len(), CLOSEST_FEATURES);
        assert_eq!(
            q(0, None, None).check(10).unwrap_err().error_type(),
            "InvalidRequest"
        );
        assert!(q(11, None, None).check(10).is_err());
        assert!(q(10, None, None).check(10).is_ok());
        assert!(
            q(1001, None, None).check(5000).is_err(),
            "never above MAX_SIMILAR_K"
        );
        assert_eq!(q(1, None, None).not_found().error_type(), "NotFound");
    }
}
