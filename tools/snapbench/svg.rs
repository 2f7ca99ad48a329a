//! A self-contained SVG of each load run: copy-on-write over time (upper chart) and the
//! parent's write latency per 20 ms bucket, p99 and max on a log scale, against the
//! baseline p99 without a snapshot (lower chart).

use crate::mutator::Point;
use std::fmt::Write;

pub struct Panel {
    pub title: String,
    pub series: Vec<Point>,
    pub baseline_p99_ns: u64,
    pub wall_s: f64,
}

const W: f64 = 860.0;
const H: f64 = 170.0;
const LEFT: f64 = 70.0;
const PLOT_W: f64 = W - LEFT - 20.0;
const PANEL_H: f64 = 2.0 * H + 70.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn polyline(svg: &mut String, pts: &[(f64, f64)], color: &str, dash: &str) {
    if pts.is_empty() {
        return;
    }
    let mut d = String::new();
    for (x, y) in pts {
        let _ = write!(d, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" {dash} points="{d}"/>"#
    );
}

fn frame(svg: &mut String, top: f64, label: &str) {
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{PLOT_W}" height="{H}" fill="none" stroke="#999"/>
<text x="12" y="{:.0}" font-size="11" transform="rotate(-90 12 {:.0})">{label}</text>"##,
        top + H / 2.0,
        top + H / 2.0
    );
}

pub fn render(panels: &[Panel]) -> String {
    let mut svg = String::new();
    let total_h = PANEL_H * panels.len() as f64 + 10.0;
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" font-family="sans-serif">"#
    );
    for (i, p) in panels.iter().enumerate() {
        let top = i as f64 * PANEL_H + 20.0;
        let t_max = p
            .series
            .last()
            .map_or(p.wall_s, |q| q.t_s)
            .max(p.wall_s)
            .max(0.001);
        let x = |t: f64| LEFT + t / t_max * PLOT_W;
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{top}" font-size="13" font-weight="bold">{}</text>"#,
            esc(&p.title)
        );
        // CoW, linear MiB.
        let cow_top = top + 10.0;
        let cow_max = p
            .series
            .iter()
            .map(|q| q.cow_bytes)
            .max()
            .unwrap_or(0)
            .max(1 << 20) as f64;
        frame(&mut svg, cow_top, "CoW MiB");
        let pts: Vec<(f64, f64)> = p
            .series
            .iter()
            .map(|q| (x(q.t_s), cow_top + H - q.cow_bytes as f64 / cow_max * H))
            .collect();
        polyline(&mut svg, &pts, "#1f77b4", "");
        let _ = writeln!(
            svg,
            r#"<text x="{:.0}" y="{:.0}" font-size="10" text-anchor="end">{:.0}</text><text x="{:.0}" y="{:.0}" font-size="10" text-anchor="end">0</text>"#,
            LEFT - 4.0,
            cow_top + 10.0,
            cow_max / 1048576.0,
            LEFT - 4.0,
            cow_top + H
        );
        // Latency, log10 µs from 0.1 µs up.
        let lat_top = cow_top + H + 30.0;
        frame(&mut svg, lat_top, "write µs (log)");
        let hi = p
            .series
            .iter()
            .map(|q| q.max_ns)
            .max()
            .unwrap_or(1000)
            .max(p.baseline_p99_ns)
            .max(1000) as f64;
        let (lo_l, hi_l) = (100f64.log10(), (hi * 1.5).log10());
        let y = |ns: u64| {
            let l = (ns.max(100) as f64).log10();
            lat_top + H - (l - lo_l) / (hi_l - lo_l) * H
        };
        let with_writes: Vec<&Point> = p.series.iter().filter(|q| q.writes > 0).collect();
        let p99: Vec<(f64, f64)> = with_writes
            .iter()
            .map(|q| (x(q.t_s), y(q.p99_ns)))
            .collect();
        let max: Vec<(f64, f64)> = with_writes
            .iter()
            .map(|q| (x(q.t_s), y(q.max_ns)))
            .collect();
        polyline(&mut svg, &max, "#d62728", "");
        polyline(&mut svg, &p99, "#2ca02c", "");
        let by = y(p.baseline_p99_ns);
        polyline(
            &mut svg,
            &[(LEFT, by), (LEFT + PLOT_W, by)],
            "#555",
            r#"stroke-dasharray="5,4""#,
        );
        for us in [0.1f64, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0] {
            let ns = (us * 1000.0) as u64;
            if (ns as f64) < hi * 1.5 {
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.0}" y="{:.0}" font-size="10" text-anchor="end">{us}</text>"#,
                    LEFT - 4.0,
                    y(ns) + 3.0
                );
            }
        }
        let _ = writeln!(
            svg,
            r##"<text x="{:.0}" y="{:.0}" font-size="10">time, s (0 .. {t_max:.2})</text>
<text x="{:.0}" y="{:.0}" font-size="10" fill="#2ca02c">p99 per 20 ms</text>
<text x="{:.0}" y="{:.0}" font-size="10" fill="#d62728">max per 20 ms</text>
<text x="{:.0}" y="{:.0}" font-size="10" fill="#555">dashed: p99 without a snapshot</text>"##,
            LEFT,
            lat_top + H + 14.0,
            LEFT + 180.0,
            lat_top + H + 14.0,
            LEFT + 290.0,
            lat_top + H + 14.0,
            LEFT + 400.0,
            lat_top + H + 14.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
