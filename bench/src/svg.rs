//! A hand-written SVG report: per benchmark, throughput over time (one-second buckets, so write
//! stalls show as dips) and the latency-percentile curve, one polyline per engine.

use std::fmt::Write as _;

use crate::report::Summarized;
use crate::runner::RunResult;
use crate::stats::{quantile_us, CHART_QUANTILES};

const WIDTH: f64 = 1100.0;
const ROW_HEIGHT: f64 = 320.0;
const HEADER: f64 = 70.0;
const CHART_W: f64 = 440.0;
const CHART_H: f64 = 220.0;
const LEFT_X: f64 = 80.0;
const RIGHT_X: f64 = 630.0;
const COLORS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// One engine's curves in one benchmark.
#[derive(Clone, Debug)]
pub struct Series {
    /// Engine name (legend).
    pub engine: String,
    /// Operations completed in each one-second bucket.
    pub timeline: Vec<u64>,
    /// Wall time of the run (the last bucket is usually partial).
    pub secs: f64,
    /// Latency in µs at each of [`CHART_QUANTILES`].
    pub latency_us: Vec<f64>,
}

/// One benchmark's row of charts.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Row title (benchmark name).
    pub title: String,
    /// One series per engine.
    pub series: Vec<Series>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" upper bound (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) at or above `v`,
/// so the axis is not much longer than the data.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&c| c >= v)
        .unwrap_or(v)
}

fn human(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        // Tick values like 0.24 or 2.4 keep their decimals; trailing zeros go.
        let text = format!("{v:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// (seconds, ops/s) points: bucket midpoints; the partial last bucket is scaled by its length.
fn throughput_points(s: &Series) -> Vec<(f64, f64)> {
    let n = s.timeline.len();
    let mut points: Vec<(f64, f64)> = s
        .timeline
        .iter()
        .enumerate()
        .map(|(i, &ops)| {
            let span = if i + 1 == n { (s.secs - i as f64).clamp(0.05, 1.0) } else { 1.0 };
            (i as f64 + span / 2.0, ops as f64 / span)
        })
        .collect();
    if points.len() == 1 {
        // A run under a second: draw its rate as a flat line across its duration.
        let rate = points[0].1;
        points = vec![(0.0, rate), (s.secs.max(0.01), rate)];
    }
    points
}

fn axes(out: &mut String, x0: f64, y0: f64, title: &str, x_label: &str, y_label: &str) {
    let _ = writeln!(
        out,
        r##"<rect x="{x0}" y="{y0}" width="{CHART_W}" height="{CHART_H}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{}</text>"#,
        x0 + CHART_W / 2.0,
        y0 - 8.0,
        escape(title)
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        x0 + CHART_W / 2.0,
        y0 + CHART_H + 36.0,
        escape(x_label)
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
        x0 - 58.0,
        y0 + CHART_H / 2.0,
        x0 - 58.0,
        y0 + CHART_H / 2.0,
        escape(y_label)
    );
}

fn polyline(out: &mut String, points: &[(f64, f64)], color: &str, engine: &str) {
    let coords: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        out,
        r#"<polyline data-engine="{}" fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#,
        escape(engine),
        coords.join(" ")
    );
}

fn throughput_chart(
    out: &mut String,
    panel: &Panel,
    colors: &dyn Fn(&str) -> &'static str,
    y0: f64,
) {
    let x0 = LEFT_X;
    axes(out, x0, y0, &format!("{}: throughput", panel.title), "seconds", "ops/s");
    let all: Vec<Vec<(f64, f64)>> = panel.series.iter().map(throughput_points).collect();
    let max_t = nice_ceiling(all.iter().flatten().map(|p| p.0).fold(0.0, f64::max));
    let max_r = nice_ceiling(all.iter().flatten().map(|p| p.1).fold(0.0, f64::max));
    for i in 0..=5 {
        let frac = i as f64 / 5.0;
        let y = y0 + CHART_H - frac * CHART_H;
        let x = x0 + frac * CHART_W;
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 + CHART_W,
            x0 - 4.0,
            y + 4.0,
            human(frac * max_r)
        );
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            y0 + CHART_H + 16.0,
            human(frac * max_t)
        );
    }
    for (series, points) in panel.series.iter().zip(&all) {
        let scaled: Vec<(f64, f64)> = points
            .iter()
            .map(|&(t, r)| (x0 + t / max_t * CHART_W, y0 + CHART_H - r / max_r * CHART_H))
            .collect();
        polyline(out, &scaled, colors(&series.engine), &series.engine);
    }
}

fn latency_chart(out: &mut String, panel: &Panel, colors: &dyn Fn(&str) -> &'static str, y0: f64) {
    let x0 = RIGHT_X;
    axes(out, x0, y0, &format!("{}: latency", panel.title), "percentile", "µs (log)");
    let values = panel.series.iter().flat_map(|s| s.latency_us.iter().copied());
    let positive: Vec<f64> = values.filter(|v| *v > 0.0).collect();
    let lo = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = positive.iter().copied().fold(0.0, f64::max);
    let (lo_exp, hi_exp) = if positive.is_empty() {
        (0.0, 1.0)
    } else {
        (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0))
    };
    let y_of = |us: f64| {
        let e = us.max(10f64.powf(lo_exp)).log10();
        y0 + CHART_H - (e - lo_exp) / (hi_exp - lo_exp) * CHART_H
    };
    let mut exp = lo_exp;
    while exp <= hi_exp {
        let y = y_of(10f64.powf(exp));
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 + CHART_W,
            x0 - 4.0,
            y + 4.0,
            human(10f64.powf(exp))
        );
        exp += 1.0;
    }
    let step = CHART_W / (CHART_QUANTILES.len() - 1) as f64;
    for (i, q) in CHART_QUANTILES.iter().enumerate() {
        let label = if *q >= 1.0 { "max".to_string() } else { format!("p{}", q * 100.0) };
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"#,
            x0 + i as f64 * step,
            y0 + CHART_H + 16.0
        );
    }
    for series in &panel.series {
        let points: Vec<(f64, f64)> = series
            .latency_us
            .iter()
            .enumerate()
            .map(|(i, &us)| (x0 + i as f64 * step, y_of(us)))
            .collect();
        polyline(out, &points, colors(&series.engine), &series.engine);
    }
}

/// One SVG panel per benchmark position, one series per engine (its median-throughput run).
pub fn panels(summaries: &[Summarized], results: &[RunResult]) -> Vec<Panel> {
    let mut panels: Vec<(usize, Panel)> = Vec::new();
    for s in summaries {
        let run = &results[s.representative];
        let series = Series {
            engine: s.summary.engine.clone(),
            timeline: run.timeline.clone(),
            secs: run.secs,
            latency_us: CHART_QUANTILES.iter().map(|&q| quantile_us(&run.histogram, q)).collect(),
        };
        match panels.iter_mut().find(|(p, _)| *p == run.position) {
            Some((_, panel)) => panel.series.push(series),
            None => panels.push((
                run.position,
                Panel { title: run.benchmark.name().to_string(), series: vec![series] },
            )),
        }
    }
    panels.into_iter().map(|(_, p)| p).collect()
}

/// The whole report as an SVG document.
pub fn render(title: &str, panels: &[Panel]) -> String {
    let mut engines: Vec<String> = Vec::new();
    for s in panels.iter().flat_map(|p| &p.series) {
        if !engines.contains(&s.engine) {
            engines.push(s.engine.clone());
        }
    }
    let colors = |engine: &str| -> &'static str {
        let i = engines.iter().position(|e| e == engine).unwrap_or(0);
        COLORS[i % COLORS.len()]
    };
    let height = HEADER + ROW_HEIGHT * panels.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="20" y="26" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, engine) in engines.iter().enumerate() {
        let x = 20.0 + i as f64 * 130.0;
        let _ = writeln!(
            out,
            r#"<g class="legend"><line x1="{x}" y1="48" x2="{}" y2="48" stroke="{}" stroke-width="3"/><text x="{}" y="52">{}</text></g>"#,
            x + 24.0,
            colors(engine),
            x + 30.0,
            escape(engine)
        );
    }
    for (row, panel) in panels.iter().enumerate() {
        let y0 = HEADER + 30.0 + row as f64 * ROW_HEIGHT;
        throughput_chart(&mut out, panel, &colors, y0);
        latency_chart(&mut out, panel, &colors, y0);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal XML well-formedness check: every tag closes in order, attributes are quoted.
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let close = rest[open..].find('>').expect("unterminated tag") + open;
            let tag = &rest[open + 1..close];
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap().to_string());
            }
            let after = &rest[close + 1..];
            let text = &after[..after.find('<').unwrap_or(after.len())];
            assert!(!text.contains('>'), "unescaped '>' in {text:?}");
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;"].iter().any(|e| entity.starts_with(e)),
                    "unescaped '&' in {text:?}"
                );
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed tags {stack:?}");
    }

    fn series(engine: &str, timeline: Vec<u64>, secs: f64) -> Series {
        Series {
            engine: engine.into(),
            timeline,
            secs,
            latency_us: vec![1.0, 2.0, 9.0, 40.0, 300.0, 5000.0],
        }
    }

    #[test]
    fn report_is_well_formed_with_a_polyline_per_engine_per_chart() {
        let panels = vec![
            Panel {
                title: "fillrandom".into(),
                series: vec![
                    series("strata", vec![1000, 900, 100, 950, 400], 4.4),
                    series("rocksdb", vec![800, 800, 820], 2.9),
                ],
            },
            Panel { title: "readrandom <&>".into(), series: vec![series("strata", vec![5], 0.2)] },
        ];
        let svg = render("strata-bench", &panels);
        assert_well_formed(&svg);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches(r#"<polyline data-engine="strata""#).count(), 4);
        assert_eq!(svg.matches(r#"<polyline data-engine="rocksdb""#).count(), 2);
        assert_eq!(svg.matches(r#"<g class="legend">"#).count(), 2);
        assert!(svg.contains("readrandom &lt;&amp;&gt;"));
    }

    #[test]
    fn throughput_scales_the_partial_last_bucket() {
        let points = throughput_points(&series("x", vec![1000, 500], 1.5));
        assert_eq!(points.len(), 2);
        assert!((points[0].1 - 1000.0).abs() < 1e-9);
        assert!((points[1].1 - 1000.0).abs() < 1e-9, "500 ops in half a second is 1000 ops/s");
        let short = throughput_points(&series("x", vec![50], 0.1));
        assert_eq!(short.len(), 2, "a sub-second run still draws a line");
    }

    #[test]
    fn tick_labels() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(2.4), "2.4");
        assert_eq!(human(12.0), "12");
        assert_eq!(human(0.25), "0.25");
        assert_eq!(human(160_000.0), "160.0k");
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 3.0);
        assert_eq!(nice_ceiling(11.6), 12.0);
        assert_eq!(nice_ceiling(1234.0), 1500.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }
}
