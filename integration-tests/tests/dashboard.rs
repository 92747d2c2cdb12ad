//! The HTML dashboard in a real browser: headless Chromium loads the page written by
//! `upsell_cli::dashboard`, a probe script counts the data marks each panel actually lays out
//! (non-empty bounding boxes), and the test checks every panel has some. A screenshot is kept
//! at `target/ci-artefacts/dashboard.png` (with the page next to it) for CI to publish.
//!
//! The real test runs the upsell workflow locally first (sample events, a model provider that
//! makes some messages fail the judge and some events fail for good), reads the metric log it
//! wrote and checks the figures against the run's own summary.
//!
//! The browser is `chromium` (Debian package) or `$UPSELL_CHROMIUM`. Without it the tests skip
//! with a note, unless `UPSELL_REQUIRE_BROWSER=1` (CI), where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use upsell_asl::{VirtualClock, virtual_runtime};
use upsell_cli::app::{AppOptions, LocalApp};
use upsell_cli::dashboard;
use upsell_core::monitor::MonitorReport;
use upsell_core::ports::dims::{AGENT_ID, AGENT_VERSION, REASON};
use upsell_core::ports::{
    ConverseRequest, ConverseResponse, MetricDatum, ModelError, ModelProvider,
};
use upsell_core::telemetry::MetricLog;
use upsell_core::telemetry::{
    DRIFT_DETECTED, DRIFT_P_VALUE, ERROR_TYPE, EVENTS_FAILED, EVENTS_QUARANTINED, EVENTS_SKIPPED,
    FEATURE, JUDGE_SCORE, MESSAGES_APPROVED, MESSAGES_REJECTED, MODEL_COST, MODEL_INPUT_TOKENS,
    MODEL_OUTPUT_TOKENS, MetricSpec, STATE, STATE_LATENCY, WORKER_ERRORS,
};
use upsell_models::offline::OfflineModel;
use upsell_models::prompt::GENERATION_CONTEXT_TAG;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The browser to drive, or `None` (after printing why) when the test may skip.
fn browser() -> Option<PathBuf> {
    let candidates = std::env::var_os("UPSELL_CHROMIUM")
        .map(|p| vec![PathBuf::from(p)])
        .unwrap_or_else(|| {
            ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .map(PathBuf::from)
                .collect()
        });
    let found = candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        let note =
            "no Chromium found (install the Debian package `chromium` or set UPSELL_CHROMIUM)";
        assert!(
            std::env::var("UPSELL_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "UPSELL_REQUIRE_BROWSER=1 but {note}"
        );
        eprintln!("skipping the dashboard browser test: {note}");
    }
    found
}

/// Counts, per panel, the marks the browser laid out with a non-empty box, and writes the
/// counts as JSON into `<pre id="probe">` so that `--dump-dom` carries them out.
const PROBE: &str = r#"<script>
(function () {
  var out = {};
  document.querySelectorAll("section.panel").forEach(function (p) {
    var n = 0;
    p.querySelectorAll(".mark").forEach(function (m) {
      var r = m.getBoundingClientRect();
      if (r.width > 0 && r.height > 0) { n += 1; }
    });
    out[p.dataset.panel] = n;
  });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"#;

fn chromium(browser: &Path, profile: &Path, args: &[&str], page: &Path) -> std::process::Output {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            // The page must not need the network: any lookup fails.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("starting the browser");
    assert!(
        out.status.success(),
        "{} failed: {}",
        browser.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Loads `html` in the browser, returns the mark count of each panel; keeps a screenshot as
/// `target/ci-artefacts/<name>.png`.
fn render_in_browser(browser: &Path, html: &str, name: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let probed = dir.path().join("probed.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let out = chromium(
        browser,
        &dir.path().join("profile"),
        &["--dump-dom", "--virtual-time-budget=3000"],
        &probed,
    );
    let dom = String::from_utf8(out.stdout).unwrap();
    let start = dom
        .find("<pre id=\"probe\">")
        .unwrap_or_else(|| panic!("the probe did not run; DOM:\n{dom}"));
    let json = &dom[start + "<pre id=\"probe\">".len()..];
    let json = &json[..json.find("</pre>").unwrap()];
    let counts: serde_json::Value = serde_json::from_str(json).unwrap();

    let artefacts = repo_root().join("target/ci-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let page = artefacts.join(format!("{name}.html"));
    std::fs::write(&page, html).unwrap();
    let png = artefacts.join(format!("{name}.png"));
    chromium(
        browser,
        &dir.path().join("profile"),
        &[
            "--window-size=1280,1400",
            &format!("--screenshot={}", png.display()),
        ],
        &page,
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        png.display()
    );
    eprintln!("dashboard screenshot: {}", png.display());
    counts
}

fn assert_every_panel_has_marks(report: &MonitorReport, counts: &serde_json::Value) {
    for p in dashboard::panels(report) {
        let n = counts[p.id].as_u64().unwrap_or(0);
        assert!(n > 0, "panel {} laid out no data marks: {counts}", p.id);
    }
}

fn point(spec: MetricSpec, value: f64, dims: &[(&str, &str)], day: u32) -> MetricDatum {
    let mut d = MetricDatum::at(
        spec.name,
        value,
        spec.unit,
        Utc.with_ymd_and_hms(2026, 12, day, 10, 0, 0).unwrap(),
    );
    for (n, v) in dims {
        d = d.with_dim(*n, *v);
    }
    d
}

/// Two generator versions, a judge and every metric of the catalogue over three days.
fn synthetic() -> Vec<MetricDatum> {
    let mut v = Vec::new();
    for (day, version) in [(1, "1.0.0"), (2, "1.0.0"), (3, "1.1.0")] {
        let g = [
            (STATE, "Generate"),
            (AGENT_ID, "upsell-generator"),
            (AGENT_VERSION, version),
        ];
        let j = [
            (STATE, "Judge"),
            (AGENT_ID, "upsell-judge"),
            (AGENT_VERSION, "1.0.0"),
        ];
        let by = [(AGENT_ID, "upsell-generator"), (AGENT_VERSION, version)];
        for i in 0..40 {
            v.push(point(STATE_LATENCY, 200.0 + f64::from(i * 7), &g, day));
            v.push(point(STATE_LATENCY, 90.0 + f64::from(i), &j, day));
            v.push(point(
                STATE_LATENCY,
                1.0 + f64::from(i) / 10.0,
                &[(STATE, "SchemaCheck")],
                day,
            ));
            v.push(point(MODEL_COST, 0.0011, &g, day));
            v.push(point(MODEL_COST, 0.0004, &j, day));
            v.push(point(MODEL_INPUT_TOKENS, 900.0, &g, day));
            v.push(point(MODEL_OUTPUT_TOKENS, 120.0, &g, day));
            v.push(point(JUDGE_SCORE, f64::from(5 + i % 5), &by, day));
            let approved = i % 5 != 0;
            if approved {
                v.push(point(MESSAGES_APPROVED, 1.0, &by, day));
            } else {
                let reason = if i % 10 == 0 { "OffBrand" } else { "Unsafe" };
                let dims = [by[0], by[1], (REASON, reason)];
                v.push(point(MESSAGES_REJECTED, 1.0, &dims, day));
            }
        }
        let failed = [by[0], by[1], (ERROR_TYPE, "ModelThrottled")];
        v.push(point(EVENTS_FAILED, 1.0, &failed, day));
        let errors = [(STATE, "Generate"), (ERROR_TYPE, "ModelThrottled")];
        v.push(point(WORKER_ERRORS, 3.0, &errors, day));
        v.push(point(
            EVENTS_QUARANTINED,
            1.0,
            &[(REASON, "SchemaInvalid")],
            day,
        ));
        v.push(point(EVENTS_SKIPPED, 1.0, &[(REASON, "NoConsent")], day));
        // One drift check a day; the third finds the region mix drifted.
        let region_p = if day == 3 { 0.0004 } else { 0.6 };
        v.push(point(DRIFT_P_VALUE, region_p, &[(FEATURE, "region")], day));
        v.push(point(DRIFT_P_VALUE, 0.8, &[(FEATURE, "satisfaction")], day));
        v.push(point(DRIFT_DETECTED, f64::from(day == 3), &[], day));
    }
    v
}

#[test]
fn synthetic_dashboard_has_marks_in_every_panel() {
    let Some(browser) = browser() else { return };
    let report = MonitorReport::build(&synthetic(), None);
    let html = dashboard::render(&report);
    for forbidden in ["http:", "https:", "src=", "href=", "@import", "url("] {
        assert!(
            !html.contains(forbidden),
            "the page must be self-contained but has {forbidden:?}"
        );
    }
    let counts = render_in_browser(&browser, &html, "dashboard-synthetic");
    assert_every_panel_has_marks(&report, &counts);
}

/// The offline model, except for two sets of events (matched by event id in the prompt): the
/// generator writes an off-brand message for `off_brand` every time (the judge rejects it
/// until the attempts run out), and every call for `dead` is throttled (the event fails after
/// the state machine's retries).
struct MixedModel {
    inner: OfflineModel,
    off_brand: Vec<String>,
    dead: Vec<String>,
}

#[async_trait]
impl ModelProvider for MixedModel {
    async fn converse(&self, request: &ConverseRequest) -> Result<ConverseResponse, ModelError> {
        let text: String = request.messages.iter().map(|m| m.text.as_str()).collect();
        if self.dead.iter().any(|id| text.contains(id.as_str())) {
            return Err(ModelError::Throttled("rate exceeded (test)".into()));
        }
        let generator = text.contains(&format!("<{GENERATION_CONTEXT_TAG}>"));
        if generator && self.off_brand.iter().any(|id| text.contains(id.as_str())) {
            let mut r = self.inner.converse(request).await?;
            r.text = "FREE pool opening for everyone, reply now, offer ends tonight! Call \
                      555-0100. Reply STOP to opt out."
                .into();
            return Ok(r);
        }
        self.inner.converse(request).await
    }
}

#[test]
fn dashboard_after_a_run_shows_every_panel_with_the_runs_figures() {
    let Some(browser) = browser() else { return };
    let examples = std::fs::read_to_string(repo_root().join("examples/events.jsonl")).unwrap();
    let input: String = examples.lines().take(400).collect::<Vec<_>>().join("\n");
    let service_ids: Vec<String> = input
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["detail-type"] == "ServiceCompleted")
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    let model = Arc::new(MixedModel {
        inner: OfflineModel::new(),
        dead: service_ids[..3].to_vec(),
        off_brand: service_ids[3..15].to_vec(),
    });

    let home = tempfile::tempdir().unwrap();
    let rt = virtual_runtime().unwrap();
    let (summary, data) = rt.block_on(async {
        let mut opts = AppOptions::new(home.path()).with_repo_root(&repo_root());
        opts.model = model;
        opts.clock = Arc::new(VirtualClock::new(Utc::now()));
        let app = Arc::new(LocalApp::open(opts).await.unwrap());
        let (summary, _) = app
            .run_lines(&input, "dashboard.jsonl", |_| {})
            .await
            .unwrap();
        (summary, app.metrics.metrics_since(None).await.unwrap())
    });
    assert!(summary.failed >= 1 && summary.rejected >= 1, "{summary:?}");

    let report = MonitorReport::build(&data, None);
    let s = &report.summary;
    assert_eq!(
        (s.approved, s.rejected, s.failed, s.quarantined, s.skipped),
        (
            summary.published,
            summary.rejected,
            summary.failed,
            summary.quarantined,
            summary.skipped
        ),
        "the metric log disagrees with the run: {s:?} vs {summary:?}"
    );
    assert!(s.cost_usd > 0.0 && s.input_tokens > 0, "{s:?}");
    let versions = report.by_version.as_deref().unwrap();
    assert!(
        versions.iter().any(|v| v.approved > 0 && v.cost_usd > 0.0),
        "{versions:?}"
    );
    assert!(!report.by_reason.as_ref().unwrap().rejected.is_empty());

    let counts = render_in_browser(&browser, &dashboard::render(&report), "dashboard");
    assert_every_panel_has_marks(&report, &counts);
}
