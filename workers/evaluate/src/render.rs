//! The evaluation report as Markdown and as one self-contained HTML page (inline CSS and SVG,
//! no scripts, no network). Both are renderings of the JSON report; neither adds figures.

use std::fmt::Write as _;

use upsell_core::evaluation::{ArmSummary, EvalMode, EvaluationReport};
use upsell_core::paired_stats::Interval;

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn ci_pct(i: &Interval) -> String {
    format!("{} – {}", pct(i.low), pct(i.high))
}

fn verdict(r: &EvaluationReport) -> &'static str {
    if r.decision.pass { "PASS" } else { "FAIL" }
}

fn arm_rows(r: &EvaluationReport) -> Vec<(&'static str, String, String)> {
    let row = |f: &dyn Fn(&ArmSummary) -> String| (f(&r.candidate), f(&r.baseline));
    let mut rows = Vec::new();
    let mut add = |name: &'static str, (a, b): (String, String)| rows.push((name, a, b));
    add("agent", row(&|s| s.agent.clone()));
    add(
        "approval rate (95% Wilson CI)",
        row(&|s| {
            format!(
                "{} ({}/{}; {})",
                pct(s.approval.value),
                s.approval.count,
                s.approval.of,
                ci_pct(&s.approval.ci95)
            )
        }),
    );
    add(
        "mean score (95% t CI)",
        row(&|s| {
            format!(
                "{:.2} ({:.2} – {:.2})",
                s.score.value, s.score.ci95.low, s.score.ci95.high
            )
        }),
    );
    add(
        "brand-rule failures",
        row(&|s| s.brand_failures.to_string()),
    );
    add("errors", row(&|s| s.errors.to_string()));
    add(
        "cost per message",
        row(&|s| format!("${:.6}", s.cost_per_message_usd)),
    );
    add(
        "latency per message (mean / p95)",
        row(&|s| format!("{:.0} ms / {:.0} ms", s.mean_latency_ms, s.p95_latency_ms)),
    );
    rows
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The report as Markdown.
pub fn markdown(r: &EvaluationReport) -> String {
    let s = &r.subject;
    let mut o = String::new();
    let _ = writeln!(o, "# Evaluation {}: {}\n", s.evaluation_id, verdict(r));
    let _ = writeln!(
        o,
        "Candidate **{}** against baseline **{}** ({} evaluation; shared {}: {}), on {} events of `{}` ({} paired cases).\n",
        s.candidate,
        s.baseline,
        match s.mode {
            EvalMode::Generator => "generator",
            EvalMode::Judge => "judge",
        },
        match s.mode {
            EvalMode::Generator => "judge",
            EvalMode::Judge => "generator",
        },
        s.shared,
        r.events,
        s.dataset,
        r.paired_cases
    );
    let _ = writeln!(o, "## Decision: {}\n", verdict(r));
    for reason in &r.decision.reasons {
        let _ = writeln!(o, "- {}", md_cell(reason));
    }
    let _ = writeln!(
        o,
        "\n## Figures\n\n| | candidate | baseline |\n| --- | --- | --- |"
    );
    for (name, a, b) in arm_rows(r) {
        let _ = writeln!(o, "| {name} | {} | {} |", md_cell(&a), md_cell(&b));
    }
    let a = &r.approval_difference;
    let sd = &r.score_difference;
    let _ = writeln!(
        o,
        "\n## Paired differences (candidate − baseline)\n\n\
         - Approval: {:+.1} points (95% paired-bootstrap CI {:+.1} .. {:+.1}); approved only for the candidate {} times, only for the baseline {} times; exact McNemar p = {:.4}.\n\
         - Mean score: {:+.2} (95% paired-bootstrap CI {:+.2} .. {:+.2}, {} resamples, seed {}); p = {:.4}.",
        a.estimate * 100.0,
        a.ci95.low * 100.0,
        a.ci95.high * 100.0,
        a.candidate_only,
        a.baseline_only,
        a.p_value,
        sd.estimate,
        sd.interval.low,
        sd.interval.high,
        sd.resamples,
        sd.seed,
        sd.p_value
    );
    if let Some(ag) = &r.agreement {
        let _ = writeln!(
            o,
            "- Agreement with the baseline judge: {} ({}), Cohen's kappa {}; brand-failing messages approved by the candidate: {}.",
            pct(ag.with_baseline.value),
            ci_pct(&ag.with_baseline.ci95),
            ag.kappa
                .map_or("undefined".to_owned(), |k| format!("{k:.3}")),
            ag.approved_brand_failures
        );
    }
    let _ = writeln!(
        o,
        "\n## Rejection reasons\n\n| reason | candidate | baseline |\n| --- | ---: | ---: |"
    );
    for rr in &r.rejection_reasons {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            md_cell(&rr.reason),
            rr.candidate,
            rr.baseline
        );
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(o, "\n## Events without a paired case\n");
        for (reason, n) in &r.skipped {
            let _ = writeln!(o, "- {reason}: {n}");
        }
    }
    let _ = writeln!(
        o,
        "\n## Where they disagree (up to {})\n",
        EvaluationReport::MAX_EXAMPLES
    );
    if r.disagreements.is_empty() {
        let _ = writeln!(o, "None: both versions got the same verdict on every case.");
    }
    for d in &r.disagreements {
        let _ = writeln!(o, "### {}\n", d.event_id);
        for (who, a) in [("candidate", &d.candidate), ("baseline", &d.baseline)] {
            let _ = writeln!(
                o,
                "- {who} ({}): {}, score {}{}{}\n  > {}",
                a.agent,
                if a.approved { "approved" } else { "rejected" },
                a.score,
                if a.reasons.is_empty() {
                    String::new()
                } else {
                    format!(", reasons {}", a.reasons.join(", "))
                },
                a.error
                    .as_ref()
                    .map(|e| format!(", error {e}"))
                    .unwrap_or_default(),
                md_cell(&a.message)
            );
        }
        o.push('\n');
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bars with 95% whiskers, values in `0..=max`.
fn svg_bars(
    title: &str,
    rows: &[(&str, f64, Interval)],
    max: f64,
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let (w, label_w, bar_h, gap) = (560.0, 190.0, 22.0, 14.0);
    let h = 28.0 + rows.len() as f64 * (bar_h + gap);
    let x = |v: f64| label_w + (v / max).clamp(0.0, 1.0) * (w - label_w - 70.0);
    let mut s = format!(
        "<svg width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\"><text x=\"0\" y=\"16\" class=\"t\">{}</text>",
        esc(title),
        esc(title)
    );
    for (i, (name, v, ci)) in rows.iter().enumerate() {
        let y = 28.0 + i as f64 * (bar_h + gap);
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{ty}\">{name}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{bw:.1}\" height=\"{bar_h}\" class=\"b{i}\"/>\
             <line x1=\"{l:.1}\" x2=\"{hi:.1}\" y1=\"{my}\" y2=\"{my}\" class=\"w\"/><line x1=\"{l:.1}\" x2=\"{l:.1}\" y1=\"{y0}\" y2=\"{y1}\" class=\"w\"/><line x1=\"{hi:.1}\" x2=\"{hi:.1}\" y1=\"{y0}\" y2=\"{y1}\" class=\"w\"/>\
             <text x=\"{vx:.1}\" y=\"{ty}\">{val}</text>",
            ty = y + 16.0,
            name = esc(name),
            bw = x(*v) - label_w,
            l = x(ci.low),
            hi = x(ci.high),
            my = y + bar_h / 2.0,
            y0 = y + 4.0,
            y1 = y + bar_h - 4.0,
            vx = x(ci.high.max(*v)) + 6.0,
            val = esc(&fmt(*v)),
        );
    }
    s.push_str("</svg>");
    s
}

/// The report as one self-contained HTML page.
pub fn html(r: &EvaluationReport) -> String {
    let s = &r.subject;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Evaluation {id}: {v}</title><style>\
         body{{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1d2327}}\
         h1{{font-size:1.5rem}}h2{{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}}\
         .pass{{background:#e6f4ea;color:#0b6b2b}}.fail{{background:#fde8e8;color:#9b1c1c}}.badge{{padding:.15rem .6rem;border-radius:.3rem;font-weight:700}}\
         table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}}th{{background:#f6f7f7}}\
         td.n{{text-align:right}}svg text{{font:13px system-ui,sans-serif;fill:#1d2327}}svg .t{{font-weight:700}}\
         .b0{{fill:#3b82f6}}.b1{{fill:#9ca3af}}.w{{stroke:#111;stroke-width:1.5}}blockquote{{margin:.3rem 0 .8rem 1rem;color:#444}}\
         li.f{{color:#9b1c1c}}</style></head><body>",
        id = esc(&s.evaluation_id),
        v = verdict(r)
    );
    let _ = write!(
        o,
        "<h1>Evaluation {} <span class=\"badge {}\">{}</span></h1><p>Candidate <b>{}</b> against baseline <b>{}</b> (shared: {}) on {} events of <code>{}</code>: {} paired cases.</p>",
        esc(&s.evaluation_id),
        if r.decision.pass { "pass" } else { "fail" },
        verdict(r),
        esc(&s.candidate),
        esc(&s.baseline),
        esc(&s.shared),
        r.events,
        esc(&s.dataset),
        r.paired_cases
    );
    o.push_str("<h2>Decision</h2><ul>");
    for reason in &r.decision.reasons {
        let _ = write!(
            o,
            "<li{}>{}</li>",
            if reason.starts_with("FAIL") {
                " class=\"f\""
            } else {
                ""
            },
            esc(reason)
        );
    }
    o.push_str("</ul><h2>Figures</h2>");
    o.push_str(&svg_bars(
        "Approval rate (bars) with 95% Wilson intervals",
        &[
            (
                "candidate",
                r.candidate.approval.value,
                r.candidate.approval.ci95,
            ),
            (
                "baseline",
                r.baseline.approval.value,
                r.baseline.approval.ci95,
            ),
        ],
        1.0,
        &pct,
    ));
    o.push_str(&svg_bars(
        "Mean judge score (0-10) with 95% t intervals",
        &[
            ("candidate", r.candidate.score.value, r.candidate.score.ci95),
            ("baseline", r.baseline.score.value, r.baseline.score.ci95),
        ],
        10.0,
        &|v| format!("{v:.2}"),
    ));
    o.push_str("<table><tr><th></th><th>candidate</th><th>baseline</th></tr>");
    for (name, a, b) in arm_rows(r) {
        let _ = write!(
            o,
            "<tr><th>{name}</th><td>{}</td><td>{}</td></tr>",
            esc(&a),
            esc(&b)
        );
    }
    o.push_str("</table>");
    let a = &r.approval_difference;
    let sd = &r.score_difference;
    let _ = write!(
        o,
        "<h2>Paired differences (candidate − baseline)</h2><ul><li>Approval: {:+.1} points (95% paired-bootstrap CI {:+.1} .. {:+.1}); only the candidate approved {} times, only the baseline {} times; exact McNemar p = {:.4}.</li>\
         <li>Mean score: {:+.2} (95% paired-bootstrap CI {:+.2} .. {:+.2}, {} resamples, seed {}); p = {:.4}.</li>",
        a.estimate * 100.0,
        a.ci95.low * 100.0,
        a.ci95.high * 100.0,
        a.candidate_only,
        a.baseline_only,
        a.p_value,
        sd.estimate,
        sd.interval.low,
        sd.interval.high,
        sd.resamples,
        sd.seed,
        sd.p_value
    );
    if let Some(ag) = &r.agreement {
        let _ = write!(
            o,
            "<li>Agreement with the baseline judge: {} ({}), Cohen's kappa {}; brand-failing messages approved: {}.</li>",
            pct(ag.with_baseline.value),
            ci_pct(&ag.with_baseline.ci95),
            ag.kappa
                .map_or("undefined".to_owned(), |k| format!("{k:.3}")),
            ag.approved_brand_failures
        );
    }
    o.push_str("</ul><h2>Rejection reasons</h2><table><tr><th>reason</th><th>candidate</th><th>baseline</th></tr>");
    for rr in &r.rejection_reasons {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&rr.reason),
            rr.candidate,
            rr.baseline
        );
    }
    o.push_str("</table>");
    if !r.skipped.is_empty() {
        o.push_str("<h2>Events without a paired case</h2><ul>");
        for (reason, n) in &r.skipped {
            let _ = write!(o, "<li>{}: {n}</li>", esc(reason));
        }
        o.push_str("</ul>");
    }
    o.push_str("<h2>Where they disagree</h2>");
    if r.disagreements.is_empty() {
        o.push_str("<p>None: both versions got the same verdict on every case.</p>");
    }
    for d in &r.disagreements {
        let _ = write!(o, "<h3>{}</h3>", esc(&d.event_id));
        for (who, a) in [("candidate", &d.candidate), ("baseline", &d.baseline)] {
            let _ = write!(
                o,
                "<p><b>{who}</b> ({}): {}, score {}{}{}</p><blockquote>{}</blockquote>",
                esc(&a.agent),
                if a.approved { "approved" } else { "rejected" },
                a.score,
                esc(&if a.reasons.is_empty() {
                    String::new()
                } else {
                    format!(", reasons {}", a.reasons.join(", "))
                }),
                esc(&a
                    .error
                    .as_ref()
                    .map(|e| format!(", error {e}"))
                    .unwrap_or_default()),
                esc(&a.message)
            );
        }
    }
    o.push_str("</body></html>\n");
    o
}
