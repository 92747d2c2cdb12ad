//! The monitoring dashboard as one self-contained HTML page: the panels of
//! [`MonitorReport`] drawn as inline SVG, with no script, font or stylesheet fetched from
//! anywhere. `upsell dashboard` writes it to a file; [`render`] returns the string so that a
//! server can send the same page.
//!
//! Every data mark (a bar or column) is an SVG `rect` of class `mark` with the value in
//! `data-value` and a `<title>` tooltip; a panel without data says so in a `p.empty`.

use std::fmt::Write as _;

use upsell_core::monitor::{MonitorReport, Percentiles, ReasonCount};

/// One panel of the page.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Stable id (`data-panel` attribute), e.g. `latency-state`.
    pub id: &'static str,
    /// Heading.
    pub title: String,
    /// One line under the heading: the panel's headline figure or definition (plain text).
    pub note: String,
    /// The panel's body (trusted HTML/SVG made by this module's chart functions).
    pub body: String,
}

/// The page with the panels of `report`.
pub fn render(report: &MonitorReport) -> String {
    render_page("upsell-flow monitoring", &window(report), &panels(report))
}

/// A page of `panels` (other modules may add their own panels to [`panels`]'s).
pub fn render_page(title: &str, subtitle: &str, panels: &[Panel]) -> String {
    let mut html = String::with_capacity(16 * 1024);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>{t}</h1><p>{s}</p></header>\n<main>\n",
        t = esc(title),
        s = esc(subtitle),
    );
    for p in panels {
        let _ = write!(
            html,
            "<section class=\"panel\" data-panel=\"{id}\" id=\"{id}\">\n<h2>{title}</h2>\n\
             <p class=\"note\">{note}</p>\n{body}\n</section>\n",
            id = esc(p.id),
            title = esc(&p.title),
            note = esc(&p.note),
            body = p.body,
        );
    }
    html.push_str("</main>\n</body>\n</html>\n");
    html
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f5f6f8;color:#1d2330}\
header{padding:16px 24px;background:#1d2330;color:#fff}header h1{margin:0;font-size:20px}\
header p{margin:4px 0 0;color:#c9cfdb;font-size:13px}\
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:16px;padding:16px}\
.panel{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px 16px}\
.panel h2{margin:0;font-size:15px}.note{margin:4px 0 8px;color:#4a5365;font-size:13px}\
.empty{color:#8a93a6;font-style:italic}svg{display:block;max-width:100%}\
svg text{font-size:11px;fill:#1d2330}svg .axis{stroke:#c3c9d4}\
.s0{fill:#4c78a8}.s1{fill:#f58518}.s2{fill:#e45756}.s3{fill:#72b7b2}.s4{fill:#b279a2}";

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn pct_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), pct)
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

/// US dollars with enough decimals to show small per-call costs.
pub fn usd(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("${v:.0}")
    } else if v.abs() >= 1.0 {
        format!("${v:.2}")
    } else {
        format!("${v:.4}")
    }
}

fn count(v: f64) -> String {
    format!("{v:.0}")
}

fn window(r: &MonitorReport) -> String {
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let span = match (r.first, r.last) {
        (Some(f), Some(l)) => format!("data points from {} to {}", fmt(f), fmt(l)),
        _ => "no data points".to_owned(),
    };
    let since = r
        .since
        .map_or_else(String::new, |s| format!("since {}; ", fmt(s)));
    format!("{since}{span} ({} data points)", r.data_points)
}

const BAR_W: f64 = 300.0;
const LABEL_W: f64 = 190.0;
const BAR_H: f64 = 13.0;

/// Horizontal bars: one group per row, one bar per series; `max` fixes the scale (rates: 1).
fn hbars(
    rows: &[(String, Vec<f64>)],
    series: &[&str],
    fmt: fn(f64) -> String,
    max: Option<f64>,
) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\">no data in this window</p>".to_owned();
    }
    let top = max.unwrap_or_else(|| {
        rows.iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0, f64::max)
    });
    let scale = if top > 0.0 { BAR_W / top } else { 0.0 };
    let legend_h = if series.len() > 1 { 20.0 } else { 0.0 };
    let group_h = BAR_H * series.len() as f64 + 8.0;
    let height = legend_h + group_h * rows.len() as f64 + 4.0;
    let width = LABEL_W + BAR_W + 80.0;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\">"
    );
    if series.len() > 1 {
        for (i, s) in series.iter().enumerate() {
            let x = LABEL_W + i as f64 * 70.0;
            let _ = write!(
                svg,
                "<rect class=\"s{i}\" x=\"{x}\" y=\"4\" width=\"10\" height=\"10\"/>\
                 <text x=\"{}\" y=\"13\">{}</text>",
                x + 14.0,
                esc(s)
            );
        }
    }
    for (r, (label, values)) in rows.iter().enumerate() {
        let y0 = legend_h + r as f64 * group_h;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LABEL_W - 6.0,
            y0 + group_h / 2.0 + 3.0,
            esc(label)
        );
        for (i, v) in values.iter().enumerate() {
            let y = y0 + 4.0 + i as f64 * BAR_H;
            // A zero is drawn as a hairline so that it reads as a measured zero, not a gap.
            let w = (v * scale).clamp(1.0, BAR_W);
            let text = fmt(*v);
            let name = series.get(i).copied().unwrap_or("");
            let _ = write!(
                svg,
                "<rect class=\"mark s{i}\" x=\"{LABEL_W}\" y=\"{y}\" width=\"{w:.1}\" \
                 height=\"{h}\" data-value=\"{v}\"><title>{l} {n}: {t}</title></rect>\
                 <text x=\"{tx:.1}\" y=\"{ty}\">{t}</text>",
                h = BAR_H - 2.0,
                l = esc(label),
                n = esc(name),
                t = esc(&text),
                tx = LABEL_W + w + 4.0,
                ty = y + BAR_H - 3.0,
            );
        }
    }
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{LABEL_W}\" y1=\"{legend_h}\" x2=\"{LABEL_W}\" y2=\"{}\"/></svg>",
        height - 2.0
    );
    svg
}

/// Vertical columns, one per category (cost per day).
fn columns(cols: &[(String, f64)], fmt: fn(f64) -> String) -> String {
    if cols.is_empty() {
        return "<p class=\"empty\">no data in this window</p>".to_owned();
    }
    let (plot_h, col_w, gap, base) = (150.0, 72.0, 16.0, 20.0);
    let top = cols.iter().map(|c| c.1).fold(0.0, f64::max);
    let scale = if top > 0.0 { plot_h / top } else { 0.0 };
    let width = (col_w + gap) * cols.len() as f64 + gap;
    let height = plot_h + base + 34.0;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\">"
    );
    let floor = plot_h + base;
    for (i, (label, v)) in cols.iter().enumerate() {
        let x = gap + i as f64 * (col_w + gap);
        let h = (v * scale).clamp(1.0, plot_h);
        let text = esc(&fmt(*v));
        let _ = write!(
            svg,
            "<rect class=\"mark s0\" x=\"{x}\" y=\"{y:.1}\" width=\"{col_w}\" height=\"{h:.1}\" \
             data-value=\"{v}\"><title>{l}: {text}</title></rect>\
             <text x=\"{cx}\" y=\"{ty:.1}\" text-anchor=\"middle\">{text}</text>\
             <text x=\"{cx}\" y=\"{ly}\" text-anchor=\"middle\">{l}</text>",
            y = floor - h,
            l = esc(label),
            cx = x + col_w / 2.0,
            ty = floor - h - 4.0,
            ly = floor + 14.0,
        );
    }
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"0\" y1=\"{floor}\" x2=\"{width}\" y2=\"{floor}\"/></svg>"
    );
    svg
}

fn percentile_row(label: String, p: &Percentiles) -> (String, Vec<f64>) {
    (label, vec![p.p50, p.p95, p.p99])
}

fn reason_rows(list: &[ReasonCount]) -> Vec<(String, Vec<f64>)> {
    list.iter()
        .map(|c| (c.reason.clone(), vec![c.count as f64]))
        .collect()
}

const PERCENTILES: &[&str] = &["p50", "p95", "p99"];

/// The panels of `report`, in page order.
pub fn panels(r: &MonitorReport) -> Vec<Panel> {
    let s = &r.summary;
    let versions = r.by_version.as_deref().unwrap_or_default();
    let states = r.by_state.as_deref().unwrap_or_default();
    let reasons = r.by_reason.clone().unwrap_or_default();
    let version_label = |agent: &str, version: &str| format!("{agent} {version}");
    let mut out = Vec::new();

    let outcomes: Vec<(String, Vec<f64>)> = [
        ("approved", s.approved),
        ("rejected", s.rejected),
        ("failed", s.failed),
        ("quarantined", s.quarantined),
        ("skipped", s.skipped),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), vec![v as f64]))
    .collect();
    out.push(Panel {
        id: "outcomes",
        title: "Outcomes".into(),
        note: format!(
            "{} events: approval rate {}, error rate {}, quarantine rate {}",
            s.events,
            pct_opt(s.approval_rate),
            pct_opt(s.error_rate),
            pct_opt(s.quarantine_rate)
        ),
        body: hbars(
            if s.events == 0 { &[] } else { &outcomes },
            &["events"],
            count,
            None,
        ),
    });

    let rows: Vec<_> = states
        .iter()
        .filter_map(|st| {
            st.latency
                .as_ref()
                .map(|p| percentile_row(st.state.clone(), p))
        })
        .collect();
    out.push(Panel {
        id: "latency-state",
        title: "Latency by state".into(),
        note: "p50, p95 and p99 of each worker invocation's wall time (exact, nearest rank)".into(),
        body: hbars(&rows, PERCENTILES, ms, None),
    });

    let rows: Vec<_> = versions
        .iter()
        .flat_map(|v| {
            v.latency.iter().map(|l| {
                percentile_row(
                    format!(
                        "{} · {}",
                        version_label(&v.agent_id, &v.agent_version),
                        l.state
                    ),
                    &l.latency,
                )
            })
        })
        .collect();
    out.push(Panel {
        id: "latency-version",
        title: "Latency by agent version".into(),
        note: "p50, p95 and p99 of the states each agent version ran in".into(),
        body: hbars(&rows, PERCENTILES, ms, None),
    });

    let rows: Vec<_> = versions
        .iter()
        .filter_map(|v| {
            v.approval_rate
                .map(|a| (version_label(&v.agent_id, &v.agent_version), vec![a]))
        })
        .collect();
    out.push(Panel {
        id: "approval",
        title: "Approval rate by agent version".into(),
        note: format!(
            "approved / (approved + rejected): {} over {} messages",
            pct_opt(s.approval_rate),
            s.approved + s.rejected
        ),
        body: hbars(&rows, &["approval rate"], pct, Some(1.0)),
    });

    out.push(Panel {
        id: "rejections",
        title: "Rejection reasons".into(),
        note: format!(
            "{} messages rejected after the last attempt, by the judge's reason code",
            s.rejected
        ),
        body: hbars(&reason_rows(&reasons.rejected), &["rejected"], count, None),
    });

    let rows: Vec<_> = versions
        .iter()
        .filter_map(|v| {
            v.error_rate
                .map(|e| (version_label(&v.agent_id, &v.agent_version), vec![e]))
        })
        .collect();
    let state_rows: Vec<_> = states
        .iter()
        .filter_map(|st| st.error_rate.map(|e| (st.state.clone(), vec![e])))
        .collect();
    let mut body = hbars(&rows, &["error rate"], pct, Some(1.0));
    body.push_str("<h3 class=\"note\">Worker error rate by state (retried errors included)</h3>");
    body.push_str(&hbars(&state_rows, &["error rate"], pct, Some(1.0)));
    out.push(Panel {
        id: "errors",
        title: "Error rate by agent version".into(),
        note: format!(
            "failed / (approved + rejected + failed): {}; {} failed worker invocations",
            pct_opt(s.error_rate),
            s.worker_errors
        ),
        body,
    });

    let cols: Vec<_> = r
        .cost_by_day
        .iter()
        .map(|d| (d.day.format("%Y-%m-%d").to_string(), d.cost_usd))
        .collect();
    let per_version: Vec<_> = versions
        .iter()
        .map(|v| {
            (
                version_label(&v.agent_id, &v.agent_version),
                vec![v.cost_usd],
            )
        })
        .collect();
    let mut body = columns(&cols, usd);
    body.push_str("<h3 class=\"note\">Cost by agent version</h3>");
    body.push_str(&hbars(&per_version, &["cost"], usd, None));
    out.push(Panel {
        id: "cost",
        title: "Model cost per day".into(),
        note: format!(
            "{} in total (generator and judge), {} per 1,000 messages; {} input and {} output tokens",
            usd(s.cost_usd),
            s.cost_per_1000_messages
                .map_or_else(|| "n/a".to_owned(), usd),
            s.input_tokens,
            s.output_tokens
        ),
        body,
    });

    out.push(Panel {
        id: "quarantine",
        title: "Quarantine rate".into(),
        note: format!(
            "{} of {} events quarantined ({}), by reason",
            s.quarantined,
            s.events,
            pct_opt(s.quarantine_rate)
        ),
        body: hbars(
            &reason_rows(&reasons.quarantined),
            &["quarantined"],
            count,
            None,
        ),
    });

    // Only once the drift monitor has run: a page without drift checks has nothing to show.
    if let Some(last) = r.drift_checks.last() {
        let detected = r.drift_checks.iter().filter(|c| c.drift_detected).count();
        let mut rows: Vec<_> = last
            .p_values
            .iter()
            .map(|(test, p)| (test.clone(), vec![*p]))
            .collect();
        rows.sort_by(|a, b| a.1[0].total_cmp(&b.1[0]).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(DRIFT_ROWS);
        out.push(Panel {
            id: "drift",
            title: "Drift".into(),
            note: format!(
                "{detected} of {} drift checks detected drift; the last, {}, {}. \
                 Its Holm-adjusted p-values, lowest first (drift below the check's alpha)",
                r.drift_checks.len(),
                last.at.format("%Y-%m-%d %H:%M UTC"),
                if last.drift_detected {
                    "detected drift"
                } else {
                    "detected none"
                }
            ),
            body: hbars(&rows, &["p-value"], p_value, Some(1.0)),
        });
    }
    out
}

/// The drift panel shows the lowest p-values of the last check, as many as this.
const DRIFT_ROWS: usize = 20;

fn p_value(v: f64) -> String {
    if v < 0.001 {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn empty_report_has_every_panel_saying_no_data() {
        let r = MonitorReport::build(&[], None);
        let html = render(&r);
        for p in panels(&r) {
            assert!(html.contains(&format!("data-panel=\"{}\"", p.id)));
        }
        assert!(!html.contains("class=\"mark"));
        assert!(html.contains("no data in this window"));
    }

    #[test]
    fn drift_panel_shows_the_last_checks_lowest_p_values_first() {
        use upsell_core::ports::{MetricDatum, MetricUnit};
        let at = |h| {
            chrono::DateTime::parse_from_rfc3339(&format!("2026-12-0{h}T06:00:00Z"))
                .unwrap()
                .to_utc()
        };
        let datum = |name: &str, v: f64, feature: Option<&str>, day| {
            let d = MetricDatum::at(name, v, MetricUnit::None, at(day));
            match feature {
                Some(f) => d.with_dim(upsell_core::telemetry::FEATURE, f),
                None => d,
            }
        };
        let data = vec![
            datum("DriftPValue", 0.9, Some("region"), 1),
            datum("DriftDetected", 0.0, None, 1),
            datum("DriftPValue", 0.4, Some("region"), 2),
            datum("DriftPValue", 0.0001, Some("service_mix"), 2),
            datum("DriftDetected", 1.0, None, 2),
        ];
        let r = MonitorReport::build(&data, None);
        assert_eq!(r.drift_checks.len(), 2);
        let drift = panels(&r).into_iter().find(|p| p.id == "drift").unwrap();
        assert!(
            drift.note.starts_with("1 of 2 drift checks"),
            "{}",
            drift.note
        );
        assert!(drift.note.contains("detected drift"), "{}", drift.note);
        let (low, high) = (
            drift.body.find("service_mix").unwrap(),
            drift.body.find("region").unwrap(),
        );
        assert!(low < high, "lowest p-value first: {}", drift.body);
        assert!(drift.body.contains("1.0e-4"), "{}", drift.body);
        assert!(
            panels(&MonitorReport::build(&[], None))
                .iter()
                .all(|p| p.id != "drift")
        );
    }

    #[test]
    fn labels_are_escaped_in_charts() {
        let rows = vec![("<script>".to_owned(), vec![1.0])];
        let svg = hbars(&rows, &["x"], count, None);
        assert!(svg.contains("&lt;script&gt;"));
        assert!(!svg.contains("<script>"));
    }

    #[test]
    fn zero_is_a_hairline_and_scale_is_fixed_for_rates() {
        let rows = vec![("a".to_owned(), vec![0.0]), ("b".to_owned(), vec![0.5])];
        let svg = hbars(&rows, &["rate"], pct, Some(1.0));
        assert!(svg.contains("width=\"1.0\""), "{svg}");
        assert!(svg.contains("width=\"150.0\""), "{svg}");
    }
}
