//! A self-contained SVG of a snapbench suite. First an overview per dataset: one row per
//! configuration with bars for wall time, file size and the parent's write p99 ratio,
//! each column on one scale for all rows. Then, per load run, copy-on-write over time and
//! the parent's write latency per 20 ms bucket (p99 and max, log scale), each with the
//! same figure from the baseline run without a snapshot as a dashed line. The panels of
//! one dataset share their time, CoW and latency scales, so two configurations compare at
//! a glance.

use crate::mutator::Point;
use std::fmt::Write;

/// One configuration's medians, for the overview.
pub struct Row {
    pub dataset: String,
    pub name: String,
    pub wall_s: f64,
    pub file_bytes: u64,
    /// Parent write p99 during a snapshot ÷ without (load runs only).
    pub p99_ratio: Option<f64>,
}

/// One load run over time.
pub struct Panel {
    pub dataset: String,
    pub title: String,
    pub series: Vec<Point>,
    pub baseline_p99_ns: u64,
    pub baseline_max_ns: u64,
    pub wall_s: f64,
}

const W: f64 = 960.0;
/// Load panels: a grid of this many columns, each cell a CoW plot above a latency plot.
const COLS: usize = 3;
const CELL_W: f64 = (W - 20.0) / COLS as f64;
/// Room left of each plot for its tick labels.
const INSET: f64 = 44.0;
const PLOT_W: f64 = CELL_W - INSET - 14.0;
const H: f64 = 95.0;
const CELL_H: f64 = 2.0 * H + 72.0;
const ROW_H: f64 = 18.0;
const NAME_W: f64 = 220.0;
const BAR_W: f64 = 170.0;
const GAP: f64 = 50.0;

const COW: &str = "#1f77b4";
const P99: &str = "#2ca02c";
const MAX: &str = "#d62728";
const GRID: &str = "#e4e4e4";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round step (1, 2 or 5 times a power of ten) giving about `n` ticks up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Ticks 0, step, … up to the first one at or past `max`; returns (ticks, axis top).
fn ticks(max: f64) -> (Vec<f64>, f64) {
    let step = nice_step(max, 5.0);
    let mut v = vec![0.0];
    while *v.last().expect("starts with 0") < max - 1e-9 {
        v.push(v.len() as f64 * step);
    }
    let top = *v.last().expect("non-empty");
    (v, top.max(step))
}

/// A tick or value label with three significant digits at most (no float noise).
fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn text(svg: &mut String, x: f64, y: f64, size: u32, anchor: &str, fill: &str, s: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" fill="{fill}">{}</text>"#,
        esc(s)
    );
}

fn line(svg: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), color: &str, dash: bool) {
    let d = if dash {
        r#" stroke-dasharray="6,4""#
    } else {
        ""
    };
    let _ = writeln!(
        svg,
        r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{color}" stroke-width="1.2"{d}/>"#
    );
}

fn polyline(svg: &mut String, pts: &[(f64, f64)], color: &str) {
    if pts.is_empty() {
        return;
    }
    let mut d = String::new();
    for (x, y) in pts {
        let _ = write!(d, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{d}"/>"#
    );
}

/// The datasets in order of first appearance.
fn datasets<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = Vec::new();
    for n in names {
        if !v.contains(&n) {
            v.push(n);
        }
    }
    v
}

/// One overview column: a bar per row on a shared linear scale with ticks.
fn bar_column(
    svg: &mut String,
    x0: f64,
    top: f64,
    title: &str,
    values: &[Option<f64>],
    reference: Option<f64>,
) {
    let max = values.iter().flatten().fold(0f64, |a, &b| a.max(b));
    let (tk, axis_max) = ticks(max.max(reference.unwrap_or(0.0)).max(1e-9));
    text(svg, x0, top - 22.0, 11, "start", "#000", title);
    let rows_h = values.len() as f64 * ROW_H;
    for t in &tk {
        let x = x0 + t / axis_max * BAR_W;
        line(svg, (x, top - 4.0), (x, top + rows_h), GRID, false);
        text(svg, x, top - 7.0, 9, "middle", "#666", &fmt_tick(*t));
    }
    if let Some(r) = reference {
        let x = x0 + r / axis_max * BAR_W;
        line(svg, (x, top - 4.0), (x, top + rows_h), "#555", true);
    }
    for (i, v) in values.iter().enumerate() {
        let y = top + i as f64 * ROW_H;
        match v {
            Some(v) => {
                let w = (v / axis_max * BAR_W).max(0.5);
                let _ = writeln!(
                    svg,
                    r##"<rect x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="#7aa6d6"/>"##,
                    y + 3.0,
                    ROW_H - 6.0
                );
                text(
                    svg,
                    x0 + w + 3.0,
                    y + ROW_H - 5.0,
                    9,
                    "start",
                    "#333",
                    &fmt_tick(*v),
                );
            }
            None => text(svg, x0 + 2.0, y + ROW_H - 5.0, 9, "start", "#999", "-"),
        }
    }
}

fn overview(svg: &mut String, top: f64, dataset: &str, rows: &[&Row]) -> f64 {
    text(
        svg,
        10.0,
        top + 14.0,
        14,
        "start",
        "#000",
        &format!("{dataset}: {} configurations (medians)", rows.len()),
    );
    let body = top + 50.0;
    for (i, r) in rows.iter().enumerate() {
        let y = body + i as f64 * ROW_H;
        if i % 2 == 0 {
            let _ = writeln!(
                svg,
                r##"<rect x="10" y="{y:.1}" width="{:.1}" height="{ROW_H}" fill="#f6f6f6"/>"##,
                W - 20.0
            );
        }
        text(svg, 14.0, y + ROW_H - 5.0, 10, "start", "#000", &r.name);
    }
    let x1 = 10.0 + NAME_W;
    let walls: Vec<Option<f64>> = rows.iter().map(|r| Some(r.wall_s)).collect();
    bar_column(
        svg,
        x1,
        body,
        "wall s (fork to file in place)",
        &walls,
        None,
    );
    let files: Vec<Option<f64>> = rows
        .iter()
        .map(|r| Some(r.file_bytes as f64 / 1e6))
        .collect();
    bar_column(svg, x1 + BAR_W + GAP, body, "file MB", &files, None);
    let ratios: Vec<Option<f64>> = rows.iter().map(|r| r.p99_ratio).collect();
    bar_column(
        svg,
        x1 + 2.0 * (BAR_W + GAP),
        body,
        "parent p99 during ÷ without",
        &ratios,
        Some(1.0),
    );
    body + rows.len() as f64 * ROW_H + 20.0
}

/// Shared scales of one dataset's load panels.
struct Scales {
    t_max: f64,
    t_ticks: Vec<f64>,
    cow_max: f64,
    cow_ticks: Vec<f64>,
    lat_lo: f64,
    lat_hi: f64,
}

fn scales(panels: &[&Panel]) -> Scales {
    let t = panels
        .iter()
        .map(|p| p.series.last().map_or(p.wall_s, |q| q.t_s).max(p.wall_s))
        .fold(0.001f64, f64::max);
    let (t_ticks, t_max) = ticks(t);
    let cow = panels
        .iter()
        .flat_map(|p| p.series.iter().map(|q| q.cow_bytes))
        .max()
        .unwrap_or(0) as f64
        / 1048576.0;
    let (cow_ticks, cow_max) = ticks(cow.max(1.0));
    let hi = panels
        .iter()
        .flat_map(|p| {
            p.series
                .iter()
                .map(|q| q.max_ns)
                .chain([p.baseline_max_ns, p.baseline_p99_ns])
        })
        .max()
        .unwrap_or(1000)
        .max(1000) as f64;
    Scales {
        t_max,
        t_ticks,
        cow_max,
        cow_ticks,
        lat_lo: 100f64.log10(),
        lat_hi: (hi * 1.5).log10().ceil(),
    }
}

fn plot_frame(svg: &mut String, left: f64, top: f64, label: &str) {
    let _ = writeln!(
        svg,
        r##"<rect x="{left:.1}" y="{top:.1}" width="{PLOT_W:.1}" height="{H}" fill="none" stroke="#999"/>"##
    );
    let (x, y) = (left - INSET + 8.0, top + H / 2.0);
    let _ = writeln!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="9" text-anchor="middle" transform="rotate(-90 {x:.1} {y:.1})">{}</text>"#,
        esc(label)
    );
}

fn time_axis(svg: &mut String, s: &Scales, left: f64, bottom: f64) {
    for t in &s.t_ticks {
        let x = left + t / s.t_max * PLOT_W;
        line(svg, (x, bottom - H), (x, bottom), GRID, false);
        line(svg, (x, bottom), (x, bottom + 3.0), "#999", false);
        text(svg, x, bottom + 12.0, 8, "middle", "#666", &fmt_tick(*t));
    }
}

/// One load run in the grid cell whose top-left corner is (`x0`, `top`).
fn panel(svg: &mut String, x0: f64, top: f64, p: &Panel, s: &Scales) {
    let left = x0 + INSET;
    text(svg, left, top + 11.0, 10, "start", "#000", &p.title);
    let x = |t: f64| left + t / s.t_max * PLOT_W;

    // Copy-on-write, linear MiB. Without a snapshot it is 0: the bottom edge.
    let cow_top = top + 18.0;
    plot_frame(svg, left, cow_top, "CoW MiB");
    time_axis(svg, s, left, cow_top + H);
    for c in &s.cow_ticks {
        let y = cow_top + H - c / s.cow_max * H;
        line(svg, (left, y), (left + PLOT_W, y), GRID, false);
        text(svg, left - 4.0, y + 3.0, 8, "end", "#666", &fmt_tick(*c));
    }
    let pts: Vec<(f64, f64)> = p
        .series
        .iter()
        .map(|q| {
            let mib = q.cow_bytes as f64 / 1048576.0;
            (x(q.t_s), cow_top + H - mib / s.cow_max * H)
        })
        .collect();
    polyline(svg, &pts, COW);

    // Latency, log10 ns with µs ticks.
    let lat_top = cow_top + H + 22.0;
    plot_frame(svg, left, lat_top, "write µs (log)");
    time_axis(svg, s, left, lat_top + H);
    let y = |ns: u64| {
        let l = (ns.max(100) as f64).log10();
        lat_top + H - (l - s.lat_lo) / (s.lat_hi - s.lat_lo) * H
    };
    let mut dec = s.lat_lo;
    while dec <= s.lat_hi + 1e-9 {
        let ns = 10f64.powf(dec).round() as u64;
        let yy = y(ns);
        line(svg, (left, yy), (left + PLOT_W, yy), GRID, false);
        text(
            svg,
            left - 4.0,
            yy + 3.0,
            8,
            "end",
            "#666",
            &fmt_tick(ns as f64 / 1000.0),
        );
        dec += 1.0;
    }
    let with_writes: Vec<&Point> = p.series.iter().filter(|q| q.writes > 0).collect();
    let pts = |f: fn(&Point) -> u64| -> Vec<(f64, f64)> {
        with_writes.iter().map(|q| (x(q.t_s), y(f(q)))).collect()
    };
    polyline(svg, &pts(|q| q.max_ns), MAX);
    polyline(svg, &pts(|q| q.p99_ns), P99);
    let (bm, bp) = (y(p.baseline_max_ns), y(p.baseline_p99_ns));
    line(svg, (left, bm), (left + PLOT_W, bm), MAX, true);
    line(svg, (left, bp), (left + PLOT_W, bp), P99, true);
}

fn panel_legend(svg: &mut String, y: f64) {
    let items = [
        (COW, false, "copy-on-write (none without a snapshot)"),
        (P99, false, "write p99 per 20 ms"),
        (MAX, false, "write max per 20 ms"),
        (P99, true, "p99 without a snapshot"),
        (MAX, true, "max without a snapshot"),
    ];
    let mut x = 20.0;
    for (color, dash, label) in items {
        line(svg, (x, y - 3.0), (x + 22.0, y - 3.0), color, dash);
        text(svg, x + 26.0, y, 9, "start", "#333", label);
        x += 30.0 + label.len() as f64 * 5.2;
    }
    text(svg, x, y, 9, "start", "#333", "x axis: seconds since fork");
}

pub fn render(rows: &[Row], panels: &[Panel]) -> String {
    let mut body = String::new();
    let mut y = 10.0;
    let names = datasets(
        rows.iter()
            .map(|r| r.dataset.as_str())
            .chain(panels.iter().map(|p| p.dataset.as_str())),
    );
    for d in &names {
        let rs: Vec<&Row> = rows.iter().filter(|r| r.dataset == *d).collect();
        if !rs.is_empty() {
            y = overview(&mut body, y, d, &rs);
        }
    }
    for d in &names {
        let ps: Vec<&Panel> = panels.iter().filter(|p| p.dataset == *d).collect();
        if ps.is_empty() {
            continue;
        }
        let s = scales(&ps);
        y += 10.0;
        text(
            &mut body,
            10.0,
            y + 14.0,
            14,
            "start",
            "#000",
            &format!("{d}: load runs over time, every panel on the same scales"),
        );
        panel_legend(&mut body, y + 32.0);
        y += 42.0;
        for row in ps.chunks(COLS) {
            for (i, p) in row.iter().enumerate() {
                panel(&mut body, 10.0 + i as f64 * CELL_W, y, p, &s);
            }
            y += CELL_H;
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{:.0}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n",
        y + 10.0
    )
}
