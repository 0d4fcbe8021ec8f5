//! A small SVG line chart (no plotting library needed for one line).

use std::fmt::Write;

pub fn concurrency(points: &[(usize, f64)]) -> String {
    let (width, height, left, bottom, top, right) = (640.0, 360.0, 70.0, 50.0, 30.0, 20.0);
    let max_rate = points.iter().map(|(_, rate)| *rate).fold(1.0, f64::max) * 1.15;
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    // Concurrency on a log scale: 1, 8, 64, 256 spread evenly enough.
    let max_log = points.iter().map(|(c, _)| (*c as f64).log2()).fold(1.0, f64::max);
    let x = |c: usize| left + (c as f64).log2() / max_log * plot_w;
    let y = |rate: f64| top + plot_h - rate / max_rate * plot_h;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">notification-worker drain throughput (SQLite) against WORKER_CONCURRENCY</text>"#,
        width / 2.0
    );
    for step in 0..=4 {
        let rate = max_rate * f64::from(step) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{rate:.0}</text>"##,
            width - right,
            left - 6.0,
            y(rate) + 4.0,
            y = y(rate)
        );
    }
    let path: Vec<String> = points
        .iter()
        .map(|(c, rate)| format!("{:.1},{:.1}", x(*c), y(*rate)))
        .collect();
    let _ = writeln!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##,
        path.join(" ")
    );
    for (c, rate) in points {
        let _ = writeln!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#1f77b4"/><text x="{:.1}" y="{}" text-anchor="middle">{c}</text>"##,
            x(*c),
            y(*rate),
            x(*c),
            height - bottom + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">WORKER_CONCURRENCY (log scale)</text>"#,
        left + plot_w / 2.0,
        height - 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">events/s</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    svg.push_str("</svg>\n");
    svg
}
