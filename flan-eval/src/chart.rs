//! Small self-contained SVG charts for the Markdown reports: a line chart (loss curves) and a
//! horizontal grouped bar chart (accuracies before vs after). Plain SVG 1.1 with inline styles,
//! so the files render on GitHub, in browsers and in notebook viewers without scripts or fonts.

use std::fmt::Write;

/// Colours of the series, in order (grey first: "before" reads as the baseline).
const PALETTE: [&str; 5] = ["#9aa5b1", "#2b6cb0", "#dd6b20", "#38a169", "#805ad5"];
const WIDTH: f64 = 760.0;
const FONT: &str = "font-family=\"sans-serif\" font-size=\"12\"";

/// One line of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points in drawing order; non-finite points are left out and counted in the title.
    pub points: Vec<(f64, f64)>,
}

/// One row group of a bar chart: a label and one value per series.
#[derive(Debug, Clone, PartialEq)]
pub struct BarGroup {
    /// Row label (left of the bars).
    pub label: String,
    /// One value per series, in series order.
    pub values: Vec<f64>,
}

/// Escapes text for SVG or HTML content and quoted attribute values (the charts and the
/// compare page).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// A tick step of 1, 2 or 5 times a power of ten giving about `count` ticks over `span`.
fn nice_step(span: f64, count: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / count;
    let magnitude = 10f64.powf(raw.log10().floor());
    let unit = raw / magnitude;
    let nice = if unit <= 1.0 {
        1.0
    } else if unit <= 2.0 {
        2.0
    } else if unit <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A number as a tick label: no trailing zeros, at most 3 decimals.
fn tick_label(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn legend(svg: &mut String, names: &[&str], x: f64, y: f64) {
    let mut x = x;
    for (i, name) in names.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" {FONT}>{}</text>",
            y - 10.0,
            x + 16.0,
            y,
            escape(name)
        );
        x += 16.0 + 7.5 * name.chars().count() as f64 + 18.0;
    }
}

/// A line chart of `series` with axis labels; the y axis starts at 0 when all values are
/// non-negative.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let height = 380.0;
    let (left, right, top, bottom) = (64.0, 20.0, 52.0, 48.0);
    let plot_w = WIDTH - left - right;
    let plot_h = height - top - bottom;
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let dropped: usize = series
        .iter()
        .map(|s| s.points.iter().filter(|p| !finite(p)).count())
        .sum();
    let points: Vec<&(f64, f64)> = series
        .iter()
        .flat_map(|s| &s.points)
        .filter(finite)
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &&(x, y) in &points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if points.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if y0 >= 0.0 {
        y0 = 0.0;
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y_step = nice_step(y1 - y0, 5.0);
    y1 = (y1 / y_step).ceil() * y_step;
    if y1 <= y0 {
        y1 = y0 + y_step;
    }
    let px = |x: f64| left + (x - x0) / (x1 - x0) * plot_w;
    let py = |y: f64| top + (1.0 - (y - y0) / (y1 - y0)) * plot_h;

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let title = if dropped > 0 {
        format!("{title} ({dropped} non-finite points not drawn)")
    } else {
        title.to_string()
    };
    let _ = writeln!(
        svg,
        "<text x=\"{left}\" y=\"20\" font-family=\"sans-serif\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        escape(&title)
    );
    // Grid and ticks.
    let mut y = (y0 / y_step).ceil() * y_step;
    while y <= y1 + y_step * 1e-9 {
        let (x_end, at, label_x, label) = (left + plot_w, py(y), left - 6.0, tick_label(y));
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" x2=\"{x_end:.1}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#e2e8f0\"/>\
             <text x=\"{label_x:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT}>{label}</text>",
            at + 4.0,
        );
        y += y_step;
    }
    let x_step = nice_step(x1 - x0, 8.0);
    let mut x = (x0 / x_step).ceil() * x_step;
    while x <= x1 + x_step * 1e-9 {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#94a3b8\"/>\
             <text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\" {FONT}>{4}</text>",
            px(x),
            top + plot_h,
            top + plot_h + 5.0,
            top + plot_h + 18.0,
            tick_label(x)
        );
        x += x_step;
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#94a3b8\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\" {FONT}>{}</text>",
        left + plot_w / 2.0,
        height - 10.0,
        escape(x_label),
        top + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let coords: Vec<String> = s
            .points
            .iter()
            .filter(|p| finite(p))
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
            PALETTE[i % PALETTE.len()],
            coords.join(" ")
        );
    }
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    legend(&mut svg, &names, left, 40.0);
    svg.push_str("</svg>\n");
    svg
}

/// A horizontal grouped bar chart: one row group per [`BarGroup`], one bar per series, values
/// drawn on a 0..`max` scale and printed at the bar ends with `unit` appended.
pub fn bar_chart(
    title: &str,
    series_names: &[&str],
    groups: &[BarGroup],
    max: f64,
    unit: &str,
) -> String {
    let label_w = 230.0;
    let (top, bar_h, gap) = (52.0, 10.0, 8.0);
    let per_group = bar_h * series_names.len().max(1) as f64 + gap;
    let plot_w = WIDTH - label_w - 70.0;
    let height = top + per_group * groups.len() as f64 + 30.0;
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH} {height:.0}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        svg,
        "<text x=\"10\" y=\"20\" font-family=\"sans-serif\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        escape(title)
    );
    legend(&mut svg, series_names, label_w, 40.0);
    for tick in 0..=4 {
        let x = label_w + plot_w * tick as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#e2e8f0\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}{unit}</text>",
            height - 26.0,
            height - 12.0,
            tick_label(max * tick as f64 / 4.0)
        );
    }
    for (g, group) in groups.iter().enumerate() {
        let y = top + per_group * g as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT}>{}</text>",
            label_w - 8.0,
            y + per_group / 2.0,
            escape(&group.label)
        );
        for (s, &value) in group.values.iter().enumerate() {
            let v = if value.is_finite() {
                value.clamp(0.0, max)
            } else {
                0.0
            };
            let shown = if value.is_finite() {
                format!("{}{unit}", tick_label((value * 10.0).round() / 10.0))
            } else {
                "n/a".into()
            };
            let w = plot_w * v / max;
            let by = y + bar_h * s as f64;
            let _ = writeln!(
                svg,
                "<rect x=\"{label_w}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-family=\"sans-serif\" font-size=\"9\">{shown}</text>",
                bar_h - 1.0,
                PALETTE[s % PALETTE.len()],
                label_w + w + 3.0,
                by + bar_h - 2.0
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_draws_one_polyline_per_series_and_counts_what_it_leaves_out() {
        let svg = line_chart(
            "loss <train>",
            "step",
            "loss",
            &[
                Series {
                    name: "loss".into(),
                    points: vec![(1.0, 8.0), (2.0, f64::NAN), (3.0, 2.5)],
                },
                Series {
                    name: "mean & smoothed".into(),
                    points: vec![(1.0, 8.0), (3.0, 4.0)],
                },
            ],
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("loss &lt;train&gt; (1 non-finite points not drawn)"));
        assert!(svg.contains("mean &amp; smoothed"));
        assert!(!svg.contains("NaN"));
        // The first series has two drawn points.
        let first = svg.split("<polyline").nth(1).unwrap();
        let points = first
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 2);
    }

    #[test]
    fn bar_chart_has_a_bar_per_group_and_series_scaled_to_max() {
        let groups = vec![
            BarGroup {
                label: "sort_words".into(),
                values: vec![0.0, 50.0],
            },
            BarGroup {
                label: "min_number*".into(),
                values: vec![25.0, 100.0],
            },
        ];
        let svg = bar_chart("accuracy", &["before", "after"], &groups, 100.0, "%");
        // Two legend swatches, one background, 2 x 2 bars.
        assert_eq!(svg.matches("<rect").count(), 1 + 2 + 4);
        assert!(svg.contains(">100%<"));
        assert!(svg.contains(">50%<"));
        let widths: Vec<f64> = svg
            .split("<rect x=\"230\"")
            .skip(1)
            .map(|r| {
                r.split("width=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(widths.len(), 4);
        assert_eq!(widths[0], 0.0);
        assert!((widths[3] - 2.0 * widths[1]).abs() < 0.2, "{widths:?}");
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(0.7, 5.0), 0.2);
        assert_eq!(nice_step(480.0, 8.0), 100.0);
        assert_eq!(tick_label(0.30000000000000004), "0.3");
        assert_eq!(tick_label(-0.0), "0");
    }
}
