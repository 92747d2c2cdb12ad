//! Data and concept drift between a baseline window and a current window, with a controlled
//! false-alarm rate.
//!
//! - **Data drift**: each feature of the customer events ([`FEATURES`]) is tested with a test fit
//!   for its type: chi-square homogeneity (sparse bins merged) for categorical features, the
//!   two-sample Kolmogorov–Smirnov test for numeric ones. Effect sizes for people to read: PSI
//!   and Jensen–Shannon distance for categorical features, PSI over baseline deciles and the
//!   Wasserstein distance (also in baseline standard deviations) for numeric ones.
//! - **Concept drift**: approval rate and mean judge score per generator version against the
//!   baseline, each a ratio over customers tested with a customer-clustered t-test
//!   ([`stats::clustered_ratio_t`]), only with at least [`DriftConfig::min_samples`] customers
//!   on both sides; the rejection-reason mix (chi-square over customers).
//! - **Verdict**: every test is one member of one family. Holm's step-down correction keeps the
//!   chance that *any* test fires on unchanged data at or below the look's alpha, whatever the
//!   dependence between features (service mix and price are not independent, so
//!   Benjamini–Hochberg's FDR guarantee, which needs positive dependence, and its goal, a share
//!   of false discoveries rather than "no false alarm", fit worse). Repeated daily looks spend
//!   alpha: look t (1-based, counted since the baseline was fixed) uses α/(t(t+1)), which sums
//!   to α over all looks, so the chance of any false alarm over the baseline's whole life is at
//!   most α (union bound, any dependence between looks).
//!
//! Unit of observation: the customer, for the events and for the messages (see
//! [`OutcomeSample`]). One customer's events are not independent (a customer
//! buys the same services again, at similar prices, and answers surveys with a personal bias),
//! so counting events would overstate the sample size and make the tests fire on unchanged
//! data. Each customer seen in a window therefore gives one observation per feature: their
//! number of events, their last profile (region, home type, pool, opt-in, lot size), each
//! distinct service they bought, their mean price, their mean price index (price over the
//! midpoint of the service's typical price, so that a price change shows apart from a change
//! of service mix), their last rating (or `none`) and their mean satisfaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::CustomerEvent;
use crate::message::{MessageRecord, MessageStatus};
use crate::stats::{self, Moments, TestOutcome};

/// Kind of a feature, which picks its test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Categories: chi-square homogeneity, PSI and Jensen–Shannon.
    Categorical,
    /// Numbers: two-sample KS, PSI over baseline deciles and Wasserstein.
    Numeric,
    /// A concept-drift rate (approval): clustered t-test, customers as units.
    Proportion,
    /// A concept-drift mean (judge score): clustered t-test, customers as units.
    Mean,
}

/// The data-drift features, in report order.
pub const FEATURES: [(&str, FeatureKind); 11] = [
    ("events_per_customer", FeatureKind::Numeric),
    ("region", FeatureKind::Categorical),
    ("home_type", FeatureKind::Categorical),
    ("has_pool", FeatureKind::Categorical),
    ("marketing_opt_in", FeatureKind::Categorical),
    ("lot_size_sqft", FeatureKind::Numeric),
    ("service", FeatureKind::Categorical),
    ("price_cents", FeatureKind::Numeric),
    ("price_index", FeatureKind::Numeric),
    ("rating", FeatureKind::Categorical),
    ("satisfaction", FeatureKind::Numeric),
];

/// Observed values of one feature in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureValues {
    /// Category counts (categorical features).
    pub categories: BTreeMap<String, u64>,
    /// Values (numeric features).
    pub numbers: Vec<f64>,
}

impl FeatureValues {
    fn count(&mut self, category: impl Into<String>) {
        *self.categories.entry(category.into()).or_default() += 1;
    }

    /// Number of observations.
    pub fn len(&self) -> usize {
        self.categories.values().sum::<u64>() as usize + self.numbers.len()
    }

    /// Whether nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The features of the customer events of one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventSample {
    /// Number of events.
    pub events: usize,
    /// Values by feature name (every name of [`FEATURES`]).
    pub features: BTreeMap<&'static str, FeatureValues>,
}

fn wire<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl EventSample {
    /// The features of `events` (validated, normalised, deduplicated by the caller), one
    /// observation per customer (see the module docs).
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a CustomerEvent>) -> Self {
        #[derive(Default)]
        struct PerCustomer<'e> {
            events: u64,
            profile: Option<(DateTime<Utc>, &'e crate::events::CustomerProfileUpdated)>,
            services: std::collections::BTreeSet<&'static str>,
            price: Moments,
            price_index: Moments,
            last_rating: Option<(DateTime<Utc>, Option<u8>)>,
            satisfaction: Moments,
        }
        let mut s = EventSample::default();
        for (name, _) in FEATURES {
            s.features.insert(name, FeatureValues::default());
        }
        let mut customers: BTreeMap<&str, PerCustomer<'_>> = BTreeMap::new();
        for ev in events {
            // Responses are outcomes, not inputs: the drift features neither use nor count them.
            if matches!(ev, CustomerEvent::UpsellResponded(_)) {
                continue;
            }
            s.events += 1;
            let c = customers.entry(ev.customer_id()).or_default();
            c.events += 1;
            match ev {
                CustomerEvent::CustomerProfileUpdated(e) => {
                    // The last profile in the window (events may come unordered).
                    if c.profile.is_none_or(|(t, _)| e.time >= t) {
                        c.profile = Some((e.time, &e.detail));
                    }
                }
                CustomerEvent::ServiceCompleted(e) => {
                    let d = &e.detail;
                    c.services.insert(d.service.code());
                    c.price.push(d.price_cents as f64);
                    let (lo, hi) = d.service.typical_price_cents();
                    c.price_index
                        .push(d.price_cents as f64 / ((lo + hi) as f64 / 2.0));
                    if c.last_rating.is_none_or(|(t, _)| e.time >= t) {
                        c.last_rating = Some((e.time, d.rating));
                    }
                }
                CustomerEvent::SurveySubmitted(e) => {
                    c.satisfaction.push(f64::from(e.detail.satisfaction));
                }
                CustomerEvent::UpsellResponded(_) => {}
            }
        }
        for c in customers.values() {
            s.feature("events_per_customer")
                .numbers
                .push(c.events as f64);
            if let Some((_, p)) = c.profile {
                s.feature("region").count(wire(&p.address.region));
                s.feature("home_type").count(wire(&p.property.home_type));
                s.feature("has_pool").count(p.property.has_pool.to_string());
                s.feature("marketing_opt_in")
                    .count(p.marketing_opt_in.to_string());
                s.feature("lot_size_sqft")
                    .numbers
                    .push(f64::from(p.property.lot_size_sqft));
            }
            for service in &c.services {
                s.feature("service").count(*service);
            }
            if c.price.n > 0 {
                s.feature("price_cents").numbers.push(c.price.mean());
                s.feature("price_index").numbers.push(c.price_index.mean());
            }
            if let Some((_, rating)) = c.last_rating {
                s.feature("rating")
                    .count(rating.map_or_else(|| "none".to_owned(), |r| r.to_string()));
            }
            if c.satisfaction.n > 0 {
                s.feature("satisfaction")
                    .numbers
                    .push(c.satisfaction.mean());
            }
        }
        s
    }

    fn feature(&mut self, name: &'static str) -> &mut FeatureValues {
        self.features.entry(name).or_default()
    }
}

/// One customer's messages from one generator version in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CustomerOutcomes {
    /// Approved and rejected messages.
    pub messages: u64,
    /// Approved messages.
    pub approved: u64,
    /// Messages with a judge verdict.
    pub scored: u64,
    /// Sum of their first attempts' judge scores.
    pub score_sum: f64,
}

impl CustomerOutcomes {
    fn add(&mut self, o: &CustomerOutcomes) {
        self.messages += o.messages;
        self.approved += o.approved;
        self.scored += o.scored;
        self.score_sum += o.score_sum;
    }
}

/// Outcomes of one generator version in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionOutcomes {
    /// Messages approved.
    pub approved: u64,
    /// Messages rejected after the last attempt.
    pub rejected: u64,
    /// First-attempt judge score of each message.
    pub scores: Moments,
    /// The same by customer, the unit of the tests (see [`OutcomeSample`]).
    pub customers: BTreeMap<String, CustomerOutcomes>,
}

impl VersionOutcomes {
    fn clusters(&self, f: impl Fn(&CustomerOutcomes) -> (u64, f64)) -> Vec<stats::ClusterTotals> {
        self.customers
            .values()
            .map(|c| {
                let (units, sum) = f(c);
                stats::ClusterTotals {
                    units: units as f64,
                    sum,
                }
            })
            .filter(|c| c.units > 0.0)
            .collect()
    }
}

/// What the messages of one window show about the agents.
///
/// Unit: the customer, as for the data features. One customer's messages are alike (the same
/// name, home, history and tenure go into every prompt), so the approval rate and the mean
/// judge score are tested with the customers as the independent units
/// ([`stats::clustered_ratio_t`]), and the rejection-reason mix counts each customer once per
/// reason. The judge score is the first attempt's: a retry answers the judge's feedback, so it
/// is neither independent of the first attempt nor a fresh draw of the generator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutcomeSample {
    /// By generator version (`agent-id@version`).
    pub versions: BTreeMap<String, VersionOutcomes>,
    /// Customers with at least one message rejected for a main reason, by reason code.
    pub reasons: BTreeMap<String, u64>,
}

impl OutcomeSample {
    /// From stored message records (approved and rejected ones count): a message's judge
    /// score is its first attempt's, a rejection's main reason is the first reason of its last
    /// verdict.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a MessageRecord>) -> Self {
        let mut s = OutcomeSample::default();
        let mut reasons: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for r in records {
            let (approved, rejected) = match r.status {
                MessageStatus::Approved => (1, 0),
                MessageStatus::Rejected => (0, 1),
                MessageStatus::Failed | MessageStatus::Skipped => continue,
            };
            let v = s.versions.entry(r.generator.to_string()).or_default();
            v.approved += approved;
            v.rejected += rejected;
            let c = v.customers.entry(r.customer_id.clone()).or_default();
            c.messages += 1;
            c.approved += approved;
            if let Some(first) = r.attempts.first() {
                let score = f64::from(first.verdict.score);
                v.scores.push(score);
                c.scored += 1;
                c.score_sum += score;
            }
            if rejected == 1 {
                let reason = r
                    .attempts
                    .last()
                    .and_then(|a| a.verdict.reasons.first())
                    .map_or("unspecified", String::as_str);
                reasons
                    .entry(reason)
                    .or_default()
                    .insert(r.customer_id.as_str());
            }
        }
        s.reasons = reasons
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.len() as u64))
            .collect();
        s
    }

    fn pooled(&self) -> VersionOutcomes {
        let mut p = VersionOutcomes::default();
        for v in self.versions.values() {
            p.approved += v.approved;
            p.rejected += v.rejected;
            p.scores.n += v.scores.n;
            p.scores.sum += v.scores.sum;
            p.scores.sum_sq += v.scores.sum_sq;
            for (id, c) in &v.customers {
                p.customers.entry(id.clone()).or_default().add(c);
            }
        }
        p
    }
}

/// Settings of one drift check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DriftConfig {
    /// Family-wise false-alarm budget over every look at one baseline (default 0.05).
    pub alpha: f64,
    /// Which look at this baseline this is, 1-based (daily checks: days since the baseline).
    pub look: u32,
    /// Fewest observations (customers) on each side for a feature or agent test to run
    /// (default 30).
    pub min_samples: u64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            alpha: 0.05,
            look: 1,
            min_samples: 30,
        }
    }
}

/// Effect sizes of one test, for people to read (they do not decide the verdict).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EffectSize {
    /// Population stability index (categories, or numeric values in baseline deciles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<f64>,
    /// Jensen–Shannon distance, base 2 (0 = same, 1 = disjoint); categorical features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jensen_shannon: Option<f64>,
    /// Wasserstein-1 distance in the feature's unit; numeric features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
    /// Wasserstein distance in baseline standard deviations; numeric features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasserstein_std: Option<f64>,
    /// Current minus baseline (approval rate or mean judge score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<f64>,
}

/// One test of the family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeatureTest {
    /// Feature name, or `approval_rate[agent@version]`, `judge_score[agent@version]`,
    /// `rejection_reasons`.
    pub name: String,
    /// Its kind.
    pub kind: FeatureKind,
    /// The test used: `chi_square`, `ks_exact`, `ks_asymptotic`, `clustered_t` (a rate or mean
    /// per message with the customers as units), or `none` when it could not run.
    pub method: String,
    /// The test statistic (chi-square, KS D, z or t); absent when no test ran.
    pub statistic: Option<f64>,
    /// Degrees of freedom (chi-square, Welch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df: Option<f64>,
    /// Raw p-value; absent when no test ran.
    pub p_value: Option<f64>,
    /// Holm-adjusted p-value within the family; absent when no test ran.
    pub p_adjusted: Option<f64>,
    /// Effect sizes.
    pub effect_size: EffectSize,
    /// Observations in the baseline window.
    pub baseline_n: u64,
    /// Observations in the current window.
    pub current_n: u64,
    /// Whether it drifted: adjusted p-value at or below this look's alpha.
    pub drifted: bool,
    /// Why no test ran, or which sparse categories were merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A window of time (inclusive start, exclusive end), as the report names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Window {
    /// Label: `FROM..TO` or a file name.
    pub label: String,
    /// Start, when the window is a time range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// End (exclusive), when the window is a time range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Events in the window.
    pub events: u64,
    /// Message outcomes (approved + rejected) in the window.
    pub messages: u64,
}

impl Window {
    /// A window known only by its label (event files).
    pub fn default_label(label: impl Into<String>) -> Self {
        Window {
            label: label.into(),
            from: None,
            to: None,
            events: 0,
            messages: 0,
        }
    }
}

/// The drift report: every test with its numbers, and one verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DriftReport {
    /// Whether any test drifted after the corrections.
    pub drift_detected: bool,
    /// Names of the tests that drifted.
    pub drifted: Vec<String>,
    /// Baseline window.
    pub baseline: Window,
    /// Current window.
    pub current: Window,
    /// Family-wise false-alarm budget over all looks at this baseline.
    pub alpha: f64,
    /// This look (1-based).
    pub look: u32,
    /// Alpha spent on this look: alpha / (look (look + 1)).
    pub alpha_look: f64,
    /// Multiple-testing correction over the tests of one look: `holm`.
    pub correction: String,
    /// Data-drift tests, one per feature.
    pub features: Vec<FeatureTest>,
    /// Concept-drift tests (agent versions, rejection reasons).
    pub concept: Vec<FeatureTest>,
}

fn untested(name: String, kind: FeatureKind, b: u64, c: u64, note: String) -> FeatureTest {
    FeatureTest {
        name,
        kind,
        method: "none".into(),
        statistic: None,
        df: None,
        p_value: None,
        p_adjusted: None,
        effect_size: EffectSize::default(),
        baseline_n: b,
        current_n: c,
        drifted: false,
        note: Some(note),
    }
}

fn tested(
    name: String,
    kind: FeatureKind,
    method: &str,
    t: TestOutcome,
    effect_size: EffectSize,
    (b, c): (u64, u64),
    note: Option<String>,
) -> FeatureTest {
    FeatureTest {
        name,
        kind,
        method: method.into(),
        statistic: Some(t.statistic),
        df: t.df,
        p_value: Some(t.p_value),
        p_adjusted: None,
        effect_size,
        baseline_n: b,
        current_n: c,
        drifted: false,
        note,
    }
}

fn too_few(min: u64) -> String {
    format!("fewer than {min} observations on a side")
}

/// A categorical test on two count maps.
fn categorical_test(
    name: String,
    base: &BTreeMap<String, u64>,
    cur: &BTreeMap<String, u64>,
    min: u64,
) -> FeatureTest {
    let (nb, nc) = (base.values().sum::<u64>(), cur.values().sum::<u64>());
    if nb < min || nc < min {
        return untested(name, FeatureKind::Categorical, nb, nc, too_few(min));
    }
    let mut keys: Vec<&String> = base.keys().chain(cur.keys()).collect();
    keys.sort();
    keys.dedup();
    let cells: Vec<(String, u64, u64)> = keys
        .iter()
        .map(|k| {
            (
                (*k).clone(),
                base.get(*k).copied().unwrap_or(0),
                cur.get(*k).copied().unwrap_or(0),
            )
        })
        .collect();
    let b: Vec<u64> = cells.iter().map(|c| c.1).collect();
    let c: Vec<u64> = cells.iter().map(|c| c.2).collect();
    let effect = EffectSize {
        psi: Some(stats::psi(&b, &c)),
        jensen_shannon: Some(stats::jensen_shannon(&b, &c)),
        ..EffectSize::default()
    };
    let chi = stats::chi_square_homogeneity(&cells);
    let note =
        (!chi.merged.is_empty()).then(|| format!("merged sparse: {}", chi.merged.join(", ")));
    match chi.test {
        Some(t) => tested(
            name,
            FeatureKind::Categorical,
            "chi_square",
            t,
            effect,
            (nb, nc),
            note,
        ),
        None => FeatureTest {
            effect_size: effect,
            ..untested(
                name,
                FeatureKind::Categorical,
                nb,
                nc,
                "fewer than two categories after merging sparse ones".into(),
            )
        },
    }
}

fn numeric_test(name: String, base: &[f64], cur: &[f64], min: u64) -> FeatureTest {
    let (nb, nc) = (base.len() as u64, cur.len() as u64);
    if nb < min || nc < min {
        return untested(name, FeatureKind::Numeric, nb, nc, too_few(min));
    }
    let edges = stats::quantile_edges(base, 10);
    let mut m = Moments::default();
    base.iter().for_each(|&v| m.push(v));
    let w = stats::wasserstein(base, cur);
    let sd = m.variance().sqrt();
    let effect = EffectSize {
        psi: Some(stats::psi(
            &stats::bin_counts(base, &edges),
            &stats::bin_counts(cur, &edges),
        )),
        wasserstein: Some(w),
        wasserstein_std: (sd > 0.0).then(|| w / sd),
        ..EffectSize::default()
    };
    let t = stats::ks_two_sample(base, cur).expect("both sides are non-empty");
    let method = if nb * nc <= stats::KS_EXACT_MAX_NM {
        "ks_exact"
    } else {
        "ks_asymptotic"
    };
    tested(
        name,
        FeatureKind::Numeric,
        method,
        t,
        effect,
        (nb, nc),
        None,
    )
}

fn concept_tests(base: &OutcomeSample, cur: &OutcomeSample, min: u64) -> Vec<FeatureTest> {
    let mut out = Vec::new();
    let pooled = base.pooled();
    let customers = |v: &VersionOutcomes| v.customers.len() as u64;
    for (version, c) in &cur.versions {
        // The same version in the baseline when it has enough customers, else the whole
        // baseline (a new canary is compared with what ran before it).
        let (b, against) = match base.versions.get(version) {
            Some(b) if customers(b) >= min => (b, "same version"),
            _ => (&pooled, "all baseline versions"),
        };
        let note = |messages: (u64, u64)| {
            format!(
                "against {against}; customers as units ({} and {} messages)",
                messages.0, messages.1
            )
        };
        let approval = |v: &VersionOutcomes| v.clusters(|o| (o.messages, o.approved as f64));
        let score = |v: &VersionOutcomes| v.clusters(|o| (o.scored, o.score_sum));
        for (name, kind, clusters, messages) in [
            (
                format!("approval_rate[{version}]"),
                FeatureKind::Proportion,
                [approval(b), approval(c)],
                (b.approved + b.rejected, c.approved + c.rejected),
            ),
            (
                format!("judge_score[{version}]"),
                FeatureKind::Mean,
                [score(b), score(c)],
                (b.scores.n, c.scores.n),
            ),
        ] {
            let [bc, cc] = &clusters;
            let (kb, kc) = (bc.len() as u64, cc.len() as u64);
            let test = (kb >= min && kc >= min)
                .then(|| stats::clustered_ratio_t(bc, cc))
                .flatten();
            out.push(match test {
                Some(t) => {
                    let ratio = |cs: &[stats::ClusterTotals]| {
                        stats::clustered_ratio(cs).map_or(f64::NAN, |(r, _)| r)
                    };
                    tested(
                        name,
                        kind,
                        "clustered_t",
                        t,
                        EffectSize {
                            difference: Some(ratio(cc) - ratio(bc)),
                            ..EffectSize::default()
                        },
                        (kb, kc),
                        Some(note(messages)),
                    )
                }
                None => untested(name, kind, kb, kc, too_few(min)),
            });
        }
    }
    out.push(categorical_test(
        "rejection_reasons".into(),
        &base.reasons,
        &cur.reasons,
        min,
    ));
    out
}

/// One side of a comparison: events and message outcomes of a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowData {
    /// How the report names the window.
    pub window: Window,
    /// Event features.
    pub events: EventSample,
    /// Message outcomes.
    pub outcomes: OutcomeSample,
}

impl WindowData {
    /// A window from its events and outcomes; fills the window's counts.
    pub fn new(mut window: Window, events: EventSample, outcomes: OutcomeSample) -> Self {
        window.events = events.events as u64;
        let p = outcomes.pooled();
        window.messages = p.approved + p.rejected;
        WindowData {
            window,
            events,
            outcomes,
        }
    }
}

/// Compares `current` with `baseline`: every feature and agent test, Holm within the look,
/// alpha spent by look.
pub fn detect(baseline: &WindowData, current: &WindowData, cfg: &DriftConfig) -> DriftReport {
    let empty = FeatureValues::default();
    let mut features: Vec<FeatureTest> = FEATURES
        .iter()
        .map(|&(name, kind)| {
            let b = baseline.events.features.get(name).unwrap_or(&empty);
            let c = current.events.features.get(name).unwrap_or(&empty);
            match kind {
                FeatureKind::Numeric => {
                    numeric_test(name.into(), &b.numbers, &c.numbers, cfg.min_samples)
                }
                _ => categorical_test(name.into(), &b.categories, &c.categories, cfg.min_samples),
            }
        })
        .collect();
    let mut concept = concept_tests(&baseline.outcomes, &current.outcomes, cfg.min_samples);

    let alpha_look = stats::alpha_for_look(cfg.alpha, cfg.look);
    let p: Vec<f64> = features
        .iter()
        .chain(&concept)
        .filter_map(|t| t.p_value)
        .collect();
    let adjusted = stats::holm_adjust(&p);
    let mut adjusted = adjusted.into_iter();
    let mut drifted = Vec::new();
    for t in features.iter_mut().chain(concept.iter_mut()) {
        if t.p_value.is_some() {
            let a = adjusted.next().expect("one adjusted p-value per p-value");
            t.p_adjusted = Some(a);
            t.drifted = a <= alpha_look;
            if t.drifted {
                drifted.push(t.name.clone());
            }
        }
    }
    DriftReport {
        drift_detected: !drifted.is_empty(),
        drifted,
        baseline: baseline.window.clone(),
        current: current.window.clone(),
        alpha: cfg.alpha,
        look: cfg.look.max(1),
        alpha_look,
        correction: "holm".into(),
        features,
        concept,
    }
}

/// `detail-type` of the alert put on the bus when drift is detected.
pub const DRIFT_DETECTED_DETAIL_TYPE: &str = "DriftDetected";

/// One drifted test, as the alert carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriftedTest {
    /// Test name (feature, `approval_rate[...]`, ...).
    pub name: String,
    /// The test used.
    pub method: String,
    /// Raw p-value.
    pub p_value: f64,
    /// Holm-adjusted p-value.
    pub p_adjusted: f64,
    /// PSI, when the test has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<f64>,
}

/// The `DriftDetected` alert (`detail` of the bus event): which tests drifted between which
/// windows, at which look. The full report goes to the report store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriftDetected {
    /// Baseline window label (`FROM..TO`).
    pub baseline: String,
    /// Current window label.
    pub current: String,
    /// Look at this baseline, 1-based.
    pub look: u32,
    /// Alpha spent on this look.
    pub alpha_look: f64,
    /// The tests that drifted (at least one).
    pub drifted: Vec<DriftedTest>,
    /// Number of tests that ran.
    pub tests: u32,
}

impl crate::events::EventDetail for DriftDetected {
    const DETAIL_TYPE: &'static str = DRIFT_DETECTED_DETAIL_TYPE;
    /// A drift alert is about the population, not one customer: empty.
    fn customer_id(&self) -> &str {
        ""
    }
}

impl DriftReport {
    /// The alert for this report, when drift was detected.
    pub fn alert(&self) -> Option<DriftDetected> {
        if !self.drift_detected {
            return None;
        }
        let all = || self.features.iter().chain(&self.concept);
        Some(DriftDetected {
            baseline: self.baseline.label.clone(),
            current: self.current.label.clone(),
            look: self.look,
            alpha_look: self.alpha_look,
            drifted: all()
                .filter(|t| t.drifted)
                .map(|t| DriftedTest {
                    name: t.name.clone(),
                    method: t.method.clone(),
                    p_value: t.p_value.unwrap_or(0.0),
                    p_adjusted: t.p_adjusted.unwrap_or(0.0),
                    psi: t.effect_size.psi,
                })
                .collect(),
            tests: all().filter(|t| t.p_value.is_some()).count() as u32,
        })
    }

    /// Every test, data then concept.
    pub fn tests(&self) -> impl Iterator<Item = &FeatureTest> {
        self.features.iter().chain(&self.concept)
    }
}

/// Where a drift check reads its windows from (the local stores on a laptop).
#[async_trait::async_trait]
pub trait DriftSource: Send + Sync {
    /// Validated events whose event time is in `[from, to)`, each id once.
    async fn events_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CustomerEvent>, crate::ports::PortError>;
    /// Approved and rejected message records of these events (a window's, from
    /// [`DriftSource::events_between`]).
    async fn records_of(
        &self,
        event_ids: &[String],
    ) -> Result<Vec<MessageRecord>, crate::ports::PortError>;
}

/// The events of a window from what a store kept of each run (execution inputs locally, the
/// claim items in AWS), oldest run first: values that are not valid events (quarantined ones)
/// are left out, an event id counts once (its first run), only event times in `[from, to)` are
/// kept; sorted by event time, then id.
pub fn select_events(
    runs: impl IntoIterator<Item = serde_json::Value>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<CustomerEvent> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for value in runs {
        let Ok(ev) = crate::validate::validator().check_value(&value) else {
            continue;
        };
        let t = ev.time();
        if t >= from && t < to && seen.insert(ev.id().to_owned()) {
            out.push(ev);
        }
    }
    out.sort_by(|a, b| a.time().cmp(&b.time()).then_with(|| a.id().cmp(b.id())));
    out
}

/// The records a drift window reads: approved and rejected ones (failed and skipped events say
/// nothing about the agents).
pub fn counts_as_outcome(record: &MessageRecord) -> bool {
    matches!(
        record.status,
        MessageStatus::Approved | MessageStatus::Rejected
    )
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 instant"))
}

/// Parses a window `FROM..TO` (half-open; a date is UTC midnight, or an RFC 3339 instant);
/// FROM must be before TO.
pub fn parse_range(s: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let (from, to) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?} is not a range FROM..TO (e.g. 2025-01-01..2025-07-01)"))?;
    let (from, to) = (parse_instant(from.trim())?, parse_instant(to.trim())?);
    if from >= to {
        return Err(format!("range {s:?} is empty: FROM must be before TO"));
    }
    Ok((from, to))
}

/// A time window `[from, to)` with its `FROM..TO` label.
pub fn time_window(from: DateTime<Utc>, to: DateTime<Utc>) -> Window {
    Window {
        label: format!(
            "{}..{}",
            from.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            to.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ),
        from: Some(from),
        to: Some(to),
        events: 0,
        messages: 0,
    }
}

/// Reads one window from `source`.
pub async fn read_window(
    source: &dyn DriftSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<WindowData, crate::ports::PortError> {
    let events = source.events_between(from, to).await?;
    let ids: Vec<String> = events.iter().map(|e| e.id().to_owned()).collect();
    let records = source.records_of(&ids).await?;
    Ok(WindowData::new(
        time_window(from, to),
        EventSample::from_events(&events),
        OutcomeSample::from_records(&records),
    ))
}

/// Events read from JSON lines the way the pipeline admits them: invalid lines (which the
/// pipeline quarantines) and repeated event ids (redeliveries) are left out and counted.
#[derive(Debug, Clone, Default)]
pub struct LoadedEvents {
    /// Valid, normalised events, first delivery of each id.
    pub events: Vec<CustomerEvent>,
    /// Lines that failed validation.
    pub invalid: usize,
    /// Lines repeating an event id already read.
    pub duplicates: usize,
}

/// Reads JSON lines (blank lines skipped) into [`LoadedEvents`].
pub fn events_from_jsonl(text: &str) -> LoadedEvents {
    let mut out = LoadedEvents::default();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match crate::validate::check_event(line.as_bytes()) {
            Ok(ev) => {
                if seen.insert(ev.id().to_owned()) {
                    out.events.push(ev);
                } else {
                    out.duplicates += 1;
                }
            }
            Err(_) => out.invalid += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{DriftScenario, SampleConfig, generate_jsonl};

    fn window(seed: u64, drift: Option<DriftScenario>, customers: usize) -> WindowData {
        let text = generate_jsonl(&SampleConfig {
            customers,
            seed,
            drift,
            ..SampleConfig::default()
        });
        let loaded = events_from_jsonl(&text);
        WindowData::new(
            Window {
                label: format!("seed {seed}"),
                from: None,
                to: None,
                events: 0,
                messages: 0,
            },
            EventSample::from_events(&loaded.events),
            OutcomeSample::default(),
        )
    }

    #[test]
    fn ranges_parse_dates_and_instants_and_reject_bad_ones() {
        let (a, b) = parse_range("2025-01-01..2025-07-01").unwrap();
        assert_eq!(a.to_rfc3339(), "2025-01-01T00:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2025-07-01T00:00:00+00:00");
        let (a, _) = parse_range("2025-01-01T10:00:00+02:00..2025-01-02").unwrap();
        assert_eq!(a.to_rfc3339(), "2025-01-01T08:00:00+00:00");
        assert!(parse_range("2025-01-01").unwrap_err().contains("FROM..TO"));
        assert!(
            parse_range("2025-07-01..2025-01-01")
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            parse_range("2025-13-01..2025-12-01")
                .unwrap_err()
                .contains("neither")
        );
    }

    #[test]
    fn same_distribution_raises_no_alert() {
        let r = detect(
            &window(1, None, 200),
            &window(2, None, 200),
            &DriftConfig::default(),
        );
        assert!(!r.drift_detected, "{:#?}", r.drifted);
        assert!(r.alert().is_none());
        // Every feature was tested.
        assert_eq!(r.features.len(), FEATURES.len());
        assert!(r.features.iter().all(|t| t.p_value.is_some()), "{r:#?}");
    }

    #[test]
    fn each_scenario_raises_an_alert_naming_its_feature() {
        for scenario in DriftScenario::ALL {
            let r = detect(
                &window(1, None, 300),
                &window(2, Some(scenario), 300),
                &DriftConfig::default(),
            );
            let alert = r
                .alert()
                .unwrap_or_else(|| panic!("{scenario:?}: no alert"));
            for f in scenario.changed_features() {
                assert!(
                    alert.drifted.iter().any(|t| t.name == *f),
                    "{scenario:?}: {f} not in {:?}",
                    r.drifted
                );
            }
        }
    }

    #[test]
    fn later_looks_spend_less_alpha() {
        let (b, c) = (
            window(1, None, 60),
            window(2, Some(DriftScenario::RegionShift), 60),
        );
        let first = detect(&b, &c, &DriftConfig::default());
        let tenth = detect(
            &b,
            &c,
            &DriftConfig {
                look: 10,
                ..DriftConfig::default()
            },
        );
        assert!(tenth.alpha_look < first.alpha_look);
        assert_eq!(
            first
                .features
                .iter()
                .map(|t| t.p_adjusted)
                .collect::<Vec<_>>(),
            tenth
                .features
                .iter()
                .map(|t| t.p_adjusted)
                .collect::<Vec<_>>()
        );
        assert!(tenth.drifted.len() <= first.drifted.len());
    }

    fn record(
        customer: &str,
        version: &str,
        status: MessageStatus,
        score: u8,
        reason: &str,
    ) -> MessageRecord {
        use crate::agent::AgentRef;
        use crate::message::{AttemptRecord, JudgeVerdict, TokenUsage};
        let agent = AgentRef {
            agent_id: "upsell-generator".into(),
            version: version.parse().unwrap(),
        };
        MessageRecord {
            event_id: "e".into(),
            customer_id: customer.into(),
            status,
            message: None,
            recommended_service: None,
            offering: None,
            generator: agent.clone(),
            judge: agent,
            attempts: vec![AttemptRecord {
                attempt: 1,
                message: String::new(),
                verdict: JudgeVerdict {
                    score,
                    approved: status == MessageStatus::Approved,
                    reasons: if reason.is_empty() {
                        vec![]
                    } else {
                        vec![reason.into()]
                    },
                    feedback: String::new(),
                },
                generator_usage: TokenUsage::default(),
                judge_usage: TokenUsage::default(),
            }],
            total_usage: TokenUsage::default(),
            cost_usd: 0.0,
            latency_ms: 0,
            error: None,
            created_at: DateTime::UNIX_EPOCH,
        }
    }

    /// One message per customer.
    fn outcomes(version: &str, approved: usize, rejected: usize, reason: &str) -> OutcomeSample {
        let mut rs = Vec::new();
        for i in 0..approved {
            rs.push(record(
                &format!("a{i}"),
                version,
                MessageStatus::Approved,
                7 + (i % 3) as u8,
                "",
            ));
        }
        for i in 0..rejected {
            rs.push(record(
                &format!("r{i}"),
                version,
                MessageStatus::Rejected,
                3 + (i % 3) as u8,
                reason,
            ));
        }
        OutcomeSample::from_records(&rs)
    }

    #[test]
    fn outcomes_count_customers_first_attempts_and_customers_per_reason() {
        use crate::message::MessageStatus::{Approved, Failed, Rejected};
        let mut retried = record("ann", "1.0.0", Approved, 4, "");
        let mut second = retried.attempts[0].clone();
        second.attempt = 2;
        second.verdict.score = 9;
        retried.attempts.push(second);
        let s = OutcomeSample::from_records(&[
            retried,
            record("ann", "1.0.0", Rejected, 3, "too-pushy"),
            record("ann", "1.0.0", Rejected, 2, "too-pushy"),
            record("bob", "1.0.0", Rejected, 5, "too-pushy"),
            record("bob", "1.0.0", Rejected, 5, "generic"),
            record("bob", "1.0.0", Failed, 0, ""),
        ]);
        let v = &s.versions["upsell-generator@1.0.0"];
        assert_eq!((v.approved, v.rejected), (1, 4));
        // First attempts only: 4, 3, 2, 5, 5.
        assert_eq!(v.scores.n, 5);
        assert_eq!(v.scores.sum, 19.0);
        assert_eq!(
            v.customers["ann"],
            CustomerOutcomes {
                messages: 3,
                approved: 1,
                scored: 3,
                score_sum: 9.0
            }
        );
        assert_eq!(v.customers["bob"].messages, 2);
        // Each customer once per reason.
        assert_eq!(
            s.reasons,
            BTreeMap::from([("generic".into(), 1), ("too-pushy".into(), 2)])
        );
    }

    #[test]
    fn messages_of_one_customer_count_as_one_unit() {
        // Customers approve all or none of their 20 messages: 20 of 40 customers in the
        // baseline, 26 of 40 now. Message by message (400/800 against 520/800) that looks
        // certain (z = 6, p < 1e-8); customer by customer it is 20/40 against 26/40.
        let window = |label: &str, approving: usize| {
            let mut rs = Vec::new();
            for c in 0..40 {
                for _ in 0..20 {
                    rs.push(if c < approving {
                        record(&format!("c{c}"), "1.0.0", MessageStatus::Approved, 8, "")
                    } else {
                        record(
                            &format!("c{c}"),
                            "1.0.0",
                            MessageStatus::Rejected,
                            4,
                            "generic",
                        )
                    });
                }
            }
            WindowData::new(
                Window::default_label(label),
                EventSample::default(),
                OutcomeSample::from_records(&rs),
            )
        };
        let r = detect(&window("b", 20), &window("c", 26), &DriftConfig::default());
        let t = r
            .concept
            .iter()
            .find(|t| t.name == "approval_rate[upsell-generator@1.0.0]")
            .unwrap();
        assert_eq!(
            (t.method.as_str(), t.baseline_n, t.current_n),
            ("clustered_t", 40, 40)
        );
        assert!((t.effect_size.difference.unwrap() - 0.15).abs() < 1e-12);
        assert!(t.p_value.unwrap() > 0.1, "{t:?}");
        let z = stats::two_proportion_z(400, 800, 520, 800).unwrap();
        assert!(z.p_value < 1e-8, "{z:?}");
        assert!(!r.drift_detected, "{:?}", r.drifted);
    }

    #[test]
    fn approval_drop_and_reason_shift_are_concept_drift() {
        let base = WindowData::new(
            Window::default_label("b"),
            EventSample::default(),
            outcomes("1.0.0", 170, 30, "too-pushy"),
        );
        let same = WindowData::new(
            Window::default_label("c"),
            EventSample::default(),
            outcomes("1.0.0", 165, 35, "too-pushy"),
        );
        let r = detect(&base, &same, &DriftConfig::default());
        assert!(!r.drift_detected, "{:?}", r.drifted);
        // A new version approving 55% with a new main reason.
        let worse = WindowData::new(
            Window::default_label("c"),
            EventSample::default(),
            outcomes("1.1.0", 110, 90, "off-brand"),
        );
        let r = detect(&base, &worse, &DriftConfig::default());
        assert!(
            r.drifted
                .contains(&"approval_rate[upsell-generator@1.1.0]".to_owned())
        );
        assert!(
            r.drifted
                .contains(&"judge_score[upsell-generator@1.1.0]".to_owned())
        );
        assert!(r.drifted.contains(&"rejection_reasons".to_owned()));
        let t = r
            .concept
            .iter()
            .find(|t| t.name.starts_with("approval"))
            .unwrap();
        assert!(
            t.note
                .as_deref()
                .is_some_and(|n| n.starts_with("against all baseline versions")),
            "{t:?}"
        );
        assert!((t.effect_size.difference.unwrap() - (0.55 - 0.85)).abs() < 1e-12);
        // Too few messages: reported, not tested.
        let few = WindowData::new(
            Window::default_label("c"),
            EventSample::default(),
            outcomes("1.0.0", 5, 5, "off-brand"),
        );
        let r = detect(&base, &few, &DriftConfig::default());
        assert!(r.concept.iter().all(|t| t.p_value.is_none()), "{r:#?}");
    }
}
