//! Measures the drift detector: the false-alarm rate of the overall verdict over same-
//! distribution seed pairs (with a 95% Wilson interval), next to what testing each feature at
//! p < 0.05 without corrections would give, and the detection power on each `upsell sample`
//! drift scenario at two sample sizes. Prints Markdown for docs/monitoring.md.
//!
//! `cargo run --release -p upsell-core --example drift_calibration -- [PAIRS] [POWER_PAIRS] [SMALL] [LARGE]`
//! (defaults 1000 200 100 400; sizes are customers per window).

use upsell_core::drift::{
    DriftConfig, EventSample, OutcomeSample, Window, WindowData, detect, events_from_jsonl,
};
use upsell_core::sample::{DriftScenario, SampleConfig, generate_jsonl};
use upsell_core::stats::wilson_interval;

const Z95: f64 = 1.959_963_984_540_054;

fn window(seed: u64, customers: usize, drift: Option<DriftScenario>) -> WindowData {
    let text = generate_jsonl(&SampleConfig {
        customers,
        seed,
        drift,
        ..SampleConfig::default()
    });
    let loaded = events_from_jsonl(&text);
    WindowData::new(
        Window::default_label(format!("seed {seed}")),
        EventSample::from_events(&loaded.events),
        OutcomeSample::default(),
    )
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

    let (mut alarms, mut naive) = (0u64, 0u64);
    let mut per_feature: std::collections::BTreeMap<String, u64> = Default::default();
    for i in 0..pairs {
        let b = window(1_000_000 + 2 * i, small, None);
        let c = window(1_000_001 + 2 * i, small, None);
        let r = detect(&b, &c, &cfg);
        alarms += u64::from(r.drift_detected);
        let mut any = false;
        for t in r.tests() {
            if t.p_value.is_some_and(|p| p < 0.05) {
                any = true;
                *per_feature.entry(t.name.clone()).or_default() += 1;
            }
        }
        naive += u64::from(any);
    }
    println!("### False alarms ({pairs} same-distribution seed pairs, {small} customers each)\n");
    println!(
        "- overall verdict (Holm, look 1: alpha 0.05/2 = 0.025): {}",
        rate(alarms, pairs)
    );
    println!(
        "- any feature at raw p < 0.05 (no correction): {}",
        rate(naive, pairs)
    );
    let raw: Vec<String> = per_feature
        .iter()
        .map(|(k, v)| format!("{k} {:.1}%", 100.0 * *v as f64 / pairs as f64))
        .collect();
    println!("- raw p < 0.05 by feature: {}\n", raw.join(", "));

    println!(
        "### Detection power ({power_pairs} seed pairs per cell; baseline normal, current drifted)\n"
    );
    println!(
        "| scenario | customers per window | drift detected | its feature named |\n| --- | --- | --- | --- |"
    );
    for scenario in DriftScenario::ALL {
        for size in [small, large] {
            let (mut fired, mut named) = (0u64, 0u64);
            for i in 0..power_pairs {
                let b = window(2_000_000 + 2 * i, size, None);
                let c = window(2_000_001 + 2 * i, size, Some(scenario));
                let r = detect(&b, &c, &cfg);
                fired += u64::from(r.drift_detected);
                named += u64::from(
                    scenario
                        .changed_features()
                        .iter()
                        .all(|f| r.drifted.iter().any(|d| d == f)),
                );
            }
            println!(
                "| {} | {size} | {} | {} |",
                scenario.name(),
                rate(fired, power_pairs),
                rate(named, power_pairs)
            );
        }
    }
}
