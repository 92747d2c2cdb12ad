//! Measures the drift detector: the false-alarm rate of the overall verdict over same-
//! distribution seed pairs (with a 95% Wilson interval), next to what testing each feature at
//! p < 0.05 without corrections would give and what counting messages instead of customers in
//! the concept tests would give, and the detection power on each `upsell sample` drift scenario
//! and on a drop of the agents' quality, at two sample sizes. Prints Markdown for
//! docs/monitoring.md.
//!
//! Events come from `upsell sample`'s generator. Message outcomes are simulated, not written by
//! the agents: one message per valid event of the window, by that event's customer; each
//! customer has their own approval chance, score level and usual rejection reason (customers
//! differ, so one customer's messages are alike), drawn from the same population in both
//! windows (or a worse one for the `agent-quality-drop` rows).
//!
//! `cargo run --release -p upsell-core --example drift_calibration -- [PAIRS] [POWER_PAIRS] [SMALL] [LARGE]`
//! (defaults 1000 200 100 400; sizes are customers per window).

use std::collections::BTreeMap;

use chrono::DateTime;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use upsell_core::agent::AgentRef;
use upsell_core::drift::{
    DriftConfig, EventSample, OutcomeSample, Window, WindowData, detect, events_from_jsonl,
};
use upsell_core::events::CustomerEvent;
use upsell_core::message::{AttemptRecord, JudgeVerdict, MessageRecord, MessageStatus, TokenUsage};
use upsell_core::sample::{DriftScenario, SampleConfig, generate_jsonl};
use upsell_core::stats::{self, Moments, wilson_interval};

const Z95: f64 = 1.959_963_984_540_054;
const REASONS: [&str; 5] = [
    "generic",
    "offer-unclear",
    "no-call-to-action",
    "too-wordy",
    "personalisation-missing",
];

/// The agents' population: mean approval chance and mean first-attempt score over customers.
#[derive(Clone, Copy)]
struct Agents {
    approval: f64,
    score: f64,
}

const NORMAL: Agents = Agents {
    approval: 0.85,
    score: 7.5,
};
/// The quality drop of the power table: approval 0.85 -> 0.78, score 7.5 -> 7.2.
const WORSE: Agents = Agents {
    approval: 0.78,
    score: 7.2,
};

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller.
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// One message per event, by its customer, from the customer's own chances.
fn outcomes(seed: u64, events: &[CustomerEvent], agents: Agents) -> Vec<MessageRecord> {
    // Its own stream, apart from the event generator's.
    const OUTCOMES: u64 = 0x0003_aaad_80d9_e450;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ OUTCOMES);
    let agent = AgentRef {
        agent_id: "upsell-generator".into(),
        version: "1.0.0".parse().expect("a version"),
    };
    let mut people: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    let mut out = Vec::with_capacity(events.len());
    for ev in events {
        let (p, level, reason) = *people
            .entry(ev.customer_id().to_owned())
            .or_insert_with(|| {
                let p = 1.0 / (1.0 + (-(logit(agents.approval) + 1.2 * normal(&mut rng))).exp());
                (
                    p,
                    agents.score + 1.0 * normal(&mut rng),
                    rng.random_range(0..REASONS.len()),
                )
            });
        let approved = rng.random_bool(p);
        let score = (level + 0.8 * normal(&mut rng)).round().clamp(0.0, 10.0) as u8;
        let reason = if rng.random_bool(0.7) {
            reason
        } else {
            rng.random_range(0..REASONS.len())
        };
        out.push(MessageRecord {
            event_id: ev.id().to_owned(),
            customer_id: ev.customer_id().to_owned(),
            status: if approved {
                MessageStatus::Approved
            } else {
                MessageStatus::Rejected
            },
            message: None,
            recommended_service: None,
            offering: None,
            generator: agent.clone(),
            judge: agent.clone(),
            attempts: vec![AttemptRecord {
                attempt: 1,
                message: String::new(),
                verdict: JudgeVerdict {
                    score,
                    approved,
                    reasons: if approved {
                        vec![]
                    } else {
                        vec![REASONS[reason].to_owned()]
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
        });
    }
    out
}

struct Side {
    data: WindowData,
    records: Vec<MessageRecord>,
}

fn window(seed: u64, customers: usize, drift: Option<DriftScenario>, agents: Agents) -> Side {
    let text = generate_jsonl(&SampleConfig {
        customers,
        seed,
        drift,
        ..SampleConfig::default()
    });
    let loaded = events_from_jsonl(&text);
    let records = outcomes(seed, &loaded.events, agents);
    Side {
        data: WindowData::new(
            Window::default_label(format!("seed {seed}")),
            EventSample::from_events(&loaded.events),
            OutcomeSample::from_records(&records),
        ),
        records,
    }
}

/// The concept tests of the first version, messages as units: two-proportion z on approvals,
/// Welch on scores, chi-square on messages' reasons. Their raw p-values.
fn message_level_p(b: &[MessageRecord], c: &[MessageRecord]) -> Vec<f64> {
    let count = |rs: &[MessageRecord]| {
        let mut m = Moments::default();
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut approved = 0;
        for r in rs {
            m.push(f64::from(r.attempts[0].verdict.score));
            if r.status == MessageStatus::Approved {
                approved += 1;
            } else {
                *reasons
                    .entry(r.attempts[0].verdict.reasons[0].clone())
                    .or_default() += 1;
            }
        }
        (approved, rs.len() as u64, m, reasons)
    };
    let (ab, nb, mb, rb) = count(b);
    let (ac, nc, mc, rc) = count(c);
    let mut p = vec![
        stats::two_proportion_z(ab, nb, ac, nc)
            .expect("messages")
            .p_value,
        stats::welch_t(&mb, &mc).expect("scores").p_value,
    ];
    let cells: Vec<(String, u64, u64)> = REASONS
        .iter()
        .map(|k| {
            (
                (*k).to_owned(),
                rb.get(*k).copied().unwrap_or(0),
                rc.get(*k).copied().unwrap_or(0),
            )
        })
        .collect();
    if let Some(t) = stats::chi_square_homogeneity(&cells).test {
        p.push(t.p_value);
    }
    p
}

fn rate(x: u64, n: u64) -> String {
    let (lo, hi) = wilson_interval(x, n, Z95);
    format!(
        "{x}/{n} = {:.1}% (95% CI {:.1}–{:.1}%)",
        100.0 * x as f64 / n as f64,
        100.0 * lo,
        100.0 * hi
    )
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are whole numbers"))
        .collect();
    let pairs = args.first().copied().unwrap_or(1000);
    let power_pairs = args.get(1).copied().unwrap_or(200);
    let small = args.get(2).copied().unwrap_or(100) as usize;
    let large = args.get(3).copied().unwrap_or(400) as usize;
    let cfg = DriftConfig::default();
    let alpha_look = stats::alpha_for_look(cfg.alpha, cfg.look);

    let (mut alarms, mut data_alarms, mut concept_alarms, mut naive, mut by_message) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut concept_tested = 0u64;
    let mut per_feature: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..pairs {
        let b = window(1_000_000 + 2 * i, small, None, NORMAL);
        let c = window(1_000_001 + 2 * i, small, None, NORMAL);
        let r = detect(&b.data, &c.data, &cfg);
        alarms += u64::from(r.drift_detected);
        data_alarms += u64::from(r.features.iter().any(|t| t.drifted));
        concept_alarms += u64::from(r.concept.iter().any(|t| t.drifted));
        concept_tested += u64::from(r.concept.iter().all(|t| t.p_value.is_some()));
        let mut any = false;
        for t in r.tests() {
            if t.p_value.is_some_and(|p| p < 0.05) {
                any = true;
                *per_feature.entry(t.name.clone()).or_default() += 1;
            }
        }
        naive += u64::from(any);
        // The same family with the concept tests counting messages.
        let mut p: Vec<f64> = r.features.iter().filter_map(|t| t.p_value).collect();
        p.extend(message_level_p(&b.records, &c.records));
        by_message += u64::from(stats::holm_adjust(&p).iter().any(|&a| a <= alpha_look));
    }
    println!("### False alarms ({pairs} same-distribution seed pairs, {small} customers each)\n");
    println!(
        "- overall verdict, data and concept tests (Holm, look 1: alpha 0.05/2 = 0.025): {}",
        rate(alarms, pairs)
    );
    println!("  - data tests: {}", rate(data_alarms, pairs));
    println!(
        "  - concept tests: {} (all concept tests ran in {concept_tested} pairs)",
        rate(concept_alarms, pairs)
    );
    println!(
        "- the same verdict with the concept tests counting messages as independent: {}",
        rate(by_message, pairs)
    );
    println!(
        "- any test at raw p < 0.05 (no correction): {}",
        rate(naive, pairs)
    );
    let raw: Vec<String> = per_feature
        .iter()
        .map(|(k, v)| format!("{k} {:.1}%", 100.0 * *v as f64 / pairs as f64))
        .collect();
    println!("- raw p < 0.05 by test: {}\n", raw.join(", "));

    println!(
        "### Detection power ({power_pairs} seed pairs per cell; baseline normal, current drifted)\n"
    );
    println!(
        "| scenario | customers per window | drift detected | its tests named |\n| --- | --- | --- | --- |"
    );
    let cells: Vec<(&str, Option<DriftScenario>, Agents, Vec<String>)> = DriftScenario::ALL
        .iter()
        .map(|s| {
            (
                s.name(),
                Some(*s),
                NORMAL,
                s.changed_features().iter().map(|f| f.to_string()).collect(),
            )
        })
        .chain([(
            "agent-quality-drop",
            None,
            WORSE,
            vec![
                "approval_rate[upsell-generator@1.0.0]".to_owned(),
                "judge_score[upsell-generator@1.0.0]".to_owned(),
            ],
        )])
        .collect();
    for (name, scenario, agents, changed) in &cells {
        for size in [small, large] {
            let (mut fired, mut named) = (0u64, 0u64);
            for i in 0..power_pairs {
                let b = window(2_000_000 + 2 * i, size, None, NORMAL);
                let c = window(2_000_001 + 2 * i, size, *scenario, *agents);
                let r = detect(&b.data, &c.data, &cfg);
                fired += u64::from(r.drift_detected);
                named += u64::from(changed.iter().all(|f| r.drifted.iter().any(|d| d == f)));
            }
            println!(
                "| {name} | {size} | {} | {} |",
                rate(fired, power_pairs),
                rate(named, power_pairs)
            );
        }
    }
}
