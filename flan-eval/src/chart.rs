//! Small self-contained SVG charts for the Markdown reports: a line chart (loss curves), a
//! horizontal grouped bar chart (accuracies before vs after), and a line chart of estimates with
//! error bars, a shaded spread, dashed chance baselines and a linear or logarithmic x axis
//! ([`error_chart`]: the replication's scaling curves, drawn as the paper draws them). Plain
//! SVG 1.1 with inline styles, so the files render on GitHub, in browsers and in notebook
//! viewers without scripts or fonts.

use std::fmt::Write;

/// Colours of the series, in order (grey first: "before" reads as the baseline).
const PALETTE: [&str; 5] = ["#9aa5b1", "#2b6cb0", "#dd6b20", "#38a169", "#805ad5"];
/// Colours of an [`ErrorChart`]'s compared series, in order (grey is kept for baselines).
const SERIES_COLORS: [&str; 6] = [
    "#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795",
];
/// The colour of baselines and references in an [`ErrorChart`].
const BASELINE_GREY: &str = "#718096";
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

/// How x values become positions on the axis of an [`ErrorChart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XScale {
    /// Proportional to x.
    Linear,
    /// Proportional to log x, as the paper draws model size and numbers of samples; x <= 0
    /// cannot be drawn (such points are left out and counted in the title).
    Log,
    /// Proportional to log(1 + x): logarithmic for large x, with x = 0 at the left end (a
    /// number of finetuning tasks that starts at none).
    LogOnePlus,
}

impl XScale {
    /// The axis position of `x` (not finite when `x` cannot be drawn on this scale).
    pub fn position(self, x: f64) -> f64 {
        match self {
            XScale::Linear => x,
            XScale::Log if x > 0.0 => x.log10(),
            XScale::LogOnePlus if x > -1.0 => (1.0 + x).log10(),
            XScale::Log | XScale::LogOnePlus => f64::NAN,
        }
    }
}

/// One estimate of an [`ErrorSeries`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorPoint {
    /// Where it was measured (in data units; the chart's [`XScale`] places it).
    pub x: f64,
    /// The estimate (the mean over seeds).
    pub y: f64,
    /// Its interval, drawn as an error bar with caps.
    pub interval: Option<(f64, f64)>,
    /// The spread of what it is the mean of (min to max over seeds), drawn as a shaded band.
    pub spread: Option<(f64, f64)>,
}

/// How a series of an [`ErrorChart`] is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesStyle {
    /// A line in the next colour.
    Normal,
    /// The line the figure is about: the next colour, drawn thicker.
    Emphasis,
    /// A baseline to compare against (a model not finetuned, a prompt without the trigger): a
    /// grey line.
    Baseline,
    /// One value that holds at every x (greedy decoding, against numbers of samples): a grey
    /// horizontal line across the plot with its interval as a horizontal band. Only its first
    /// point's y and interval are used.
    Reference,
}

/// One line of an [`ErrorChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorSeries {
    /// Legend text.
    pub name: String,
    /// How it is drawn.
    pub style: SeriesStyle,
    /// Estimates in drawing order.
    pub points: Vec<ErrorPoint>,
    /// The chance baseline `(x, y)` under this series, drawn dashed in its colour (once, when
    /// several series share it): a full-width line when it is the same everywhere; empty when
    /// none applies.
    pub chance: Vec<(f64, f64)>,
}

/// A line chart of estimates with their intervals (see [`error_chart`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorChart {
    /// Title (first line).
    pub title: String,
    /// What the bars, bands and dashes are (second line, smaller).
    pub caption: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// How x values are placed.
    pub x_scale: XScale,
    /// Ticks of the x axis, `(x in data units, label)`; empty: round numbers on a linear axis,
    /// the data's x values on a logarithmic one.
    pub x_ticks: Vec<(f64, String)>,
    /// The x range shown, in data units; `None`: the data's range with a margin.
    pub x_range: Option<(f64, f64)>,
    /// The lines.
    pub series: Vec<ErrorSeries>,
}

/// Lays legend entries out left to right, wrapping into rows inside the chart's width; returns
/// the SVG and the number of rows. Each entry is a name and whether its swatch is a dashed line
/// (a chance baseline) rather than a filled square.
fn wrapped_legend(entries: &[(String, &str, bool)], top: f64) -> (String, usize) {
    let mut svg = String::new();
    let (left, right) = (64.0, WIDTH - 20.0);
    let mut x = left;
    let mut row = 0;
    for (name, color, dashed) in entries {
        let width = 16.0 + 7.0 * name.chars().count() as f64 + 18.0;
        if x + width > right && x > left {
            row += 1;
            x = left;
        }
        let y = top + 18.0 * row as f64;
        if *dashed {
            let _ = write!(
                svg,
                "<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" \
                 stroke-width=\"2\" stroke-dasharray=\"4 3\"/>",
                x + 12.0,
                y - 4.0,
                y - 4.0
            );
        } else {
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/>",
                y - 10.0
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{y:.1}\" {FONT}>{}</text>",
            x + 16.0,
            escape(name)
        );
        x += width;
    }
    (svg, if entries.is_empty() { 0 } else { row + 1 })
}

/// The colour of each series: compared series take the next colour, baselines and references
/// grey.
fn series_colors(series: &[ErrorSeries]) -> Vec<&'static str> {
    let mut next = 0;
    series
        .iter()
        .map(|s| match s.style {
            SeriesStyle::Baseline | SeriesStyle::Reference => BASELINE_GREY,
            SeriesStyle::Normal | SeriesStyle::Emphasis => {
                next += 1;
                SERIES_COLORS[(next - 1) % SERIES_COLORS.len()]
            }
        })
        .collect()
}

/// A line chart of estimates in the style of the paper's scaling figures: one line with round
/// markers per series, each estimate with an error bar (its interval) over a shaded band (its
/// spread), the series' chance baseline dashed in its colour, reference values (greedy
/// decoding) as horizontal lines with their interval as a band, ticks at round numbers or at
/// the measured x values, and a legend under the plot. The y axis includes 0. Values that
/// cannot be drawn (not finite, or x <= 0 on a logarithmic axis) are left out and counted in
/// the title, so the SVG never holds a non-number.
pub fn error_chart(chart: &ErrorChart) -> String {
    let scale = chart.x_scale;
    let (left, right, top, plot_h) = (64.0, 24.0, 60.0, 300.0);
    let plot_w = WIDTH - left - right;
    let finite = |v: f64| v.is_finite();
    let pair_ok = |p: Option<(f64, f64)>| p.filter(|(a, b)| a.is_finite() && b.is_finite());
    let mut dropped = 0usize;
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
    let mut see_y = |y: f64| {
        y0 = y0.min(y);
        y1 = y1.max(y);
    };
    for s in &chart.series {
        let reference = s.style == SeriesStyle::Reference;
        for (i, p) in s.points.iter().enumerate() {
            if reference && i > 0 {
                continue;
            }
            let px = scale.position(p.x);
            if !(finite(p.y) && (reference || finite(px))) {
                dropped += 1;
                continue;
            }
            if !reference {
                x0 = x0.min(px);
                x1 = x1.max(px);
            }
            see_y(p.y);
            for (a, b) in [pair_ok(p.interval), pair_ok(p.spread)]
                .into_iter()
                .flatten()
            {
                see_y(a);
                see_y(b);
            }
        }
        for &(x, y) in &s.chance {
            if finite(scale.position(x)) && finite(y) {
                see_y(y);
            }
        }
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if y1 < y0 {
        y1 = y0 + 1.0;
    }
    match chart.x_range {
        Some((a, b)) if finite(scale.position(a)) && finite(scale.position(b)) => {
            x0 = scale.position(a).min(x0);
            x1 = scale.position(b).max(x1);
        }
        _ => {
            let margin = if x1 > x0 { 0.05 * (x1 - x0) } else { 0.5 };
            x0 -= margin;
            x1 += margin;
        }
    }
    let y_step = nice_step(y1 - y0, 5.0);
    y0 = (y0 / y_step).floor() * y_step;
    y1 = (y1 / y_step).ceil() * y_step;
    if y1 <= y0 {
        y1 = y0 + y_step;
    }
    let px = |x: f64| left + (scale.position(x) - x0) / (x1 - x0) * plot_w;
    let py = |y: f64| top + (1.0 - (y - y0) / (y1 - y0)) * plot_h;
    let colors = series_colors(&chart.series);

    // The legend under the plot decides the height.
    let mut entries: Vec<(String, &str, bool)> = chart
        .series
        .iter()
        .zip(&colors)
        .map(|(s, &color)| (s.name.clone(), color, false))
        .collect();
    if chart.series.iter().any(|s| !s.chance.is_empty()) {
        entries.push(("chance (dashed)".into(), BASELINE_GREY, true));
    }
    let legend_top = top + plot_h + 58.0;
    let (legend_svg, rows) = wrapped_legend(&entries, legend_top);
    let height = legend_top + 18.0 * rows as f64;

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH} {height:.0}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let title = if dropped > 0 {
        format!(
            "{} ({dropped} points that cannot be drawn left out)",
            chart.title
        )
    } else {
        chart.title.clone()
    };
    let _ = writeln!(
        svg,
        "<text x=\"{left}\" y=\"22\" font-family=\"sans-serif\" font-size=\"15\" font-weight=\"bold\">{}</text>\
         <text x=\"{left}\" y=\"42\" font-family=\"sans-serif\" font-size=\"11\" fill=\"#4a5568\">{}</text>",
        escape(&title),
        escape(&chart.caption)
    );
    let mut y = y0;
    while y <= y1 + y_step * 1e-9 {
        let at = py(y);
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#e2e8f0\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT}>{}</text>",
            left + plot_w,
            left - 6.0,
            at + 4.0,
            tick_label(y)
        );
        y += y_step;
    }
    let ticks: Vec<(f64, String)> = if !chart.x_ticks.is_empty() {
        chart.x_ticks.clone()
    } else if scale == XScale::Linear {
        let step = nice_step(x1 - x0, 8.0);
        let mut ticks = Vec::new();
        let mut x = (x0 / step).ceil() * step;
        while x <= x1 + step * 1e-9 {
            ticks.push((x, tick_label(x)));
            x += step;
        }
        ticks
    } else {
        let mut xs: Vec<f64> = chart
            .series
            .iter()
            .filter(|s| s.style != SeriesStyle::Reference)
            .flat_map(|s| s.points.iter().map(|p| p.x))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        xs.into_iter().map(|x| (x, tick_label(x))).collect()
    };
    for (x, label) in &ticks {
        let at = px(*x);
        if !(finite(at) && (left - 0.5..=left + plot_w + 0.5).contains(&at)) {
            continue;
        }
        let _ = writeln!(
            svg,
            "<line x1=\"{at:.1}\" x2=\"{at:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#94a3b8\"/>\
             <text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text>",
            top + plot_h,
            top + plot_h + 5.0,
            top + plot_h + 18.0,
            escape(label)
        );
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#94a3b8\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\" {FONT}>{}</text>",
        left + plot_w / 2.0,
        top + plot_h + 38.0,
        escape(&chart.x_label),
        top + plot_h / 2.0,
        escape(&chart.y_label)
    );
    // Chance lines first (under the data), each drawn once.
    let mut drawn_chances: Vec<Vec<(f64, f64)>> = Vec::new();
    for (s, color) in chart.series.iter().zip(&colors) {
        let chance: Vec<(f64, f64)> = s
            .chance
            .iter()
            .copied()
            .filter(|&(x, y)| finite(px(x)) && finite(y))
            .collect();
        let constant = chance
            .first()
            .is_some_and(|&(_, c)| chance.iter().all(|&(_, y)| (y - c).abs() < 1e-9));
        let key = if constant {
            vec![(f64::NAN, chance[0].1)]
        } else {
            chance.clone()
        };
        let same = |a: &Vec<(f64, f64)>| {
            a.len() == key.len()
                && a.iter().zip(&key).all(|(p, q)| {
                    (p.0 == q.0 || (p.0.is_nan() && q.0.is_nan())) && (p.1 - q.1).abs() < 1e-9
                })
        };
        if chance.is_empty() || drawn_chances.iter().any(same) {
            continue;
        }
        drawn_chances.push(key);
        let dash = "stroke-width=\"1.5\" stroke-dasharray=\"5 4\" stroke-opacity=\"0.8\"";
        if constant {
            let at = py(chance[0].1);
            let _ = writeln!(
                svg,
                "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"{color}\" {dash}/>",
                left + plot_w
            );
        } else {
            let coords: Vec<String> = chance
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" {dash} points=\"{}\"/>",
                coords.join(" ")
            );
        }
    }
    // Series measured at the same x are set a few pixels apart, so that their error bars do
    // not hide each other (the order of the series, centred on the true x).
    let lines = chart
        .series
        .iter()
        .filter(|s| s.style != SeriesStyle::Reference)
        .count();
    let mut line = 0;
    for (s, &color) in chart.series.iter().zip(&colors) {
        if s.style == SeriesStyle::Reference {
            let Some(p) = s.points.first().filter(|p| finite(p.y)) else {
                continue;
            };
            if let Some((low, high)) = pair_ok(p.interval) {
                let _ = writeln!(
                    svg,
                    "<rect x=\"{left}\" y=\"{:.1}\" width=\"{plot_w}\" height=\"{:.1}\" fill=\"{color}\" fill-opacity=\"0.12\"/>",
                    py(high),
                    py(low) - py(high)
                );
            }
            let at = py(p.y);
            let _ = writeln!(
                svg,
                "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"{color}\" stroke-width=\"1.5\"/>",
                left + plot_w
            );
            continue;
        }
        let dodge = 5.0 * (line as f64 - (lines as f64 - 1.0) / 2.0);
        line += 1;
        let px = |x: f64| px(x) + dodge;
        let drawn: Vec<&ErrorPoint> = s
            .points
            .iter()
            .filter(|p| finite(px(p.x)) && finite(p.y))
            .collect();
        // The spread: upper ends left to right, then lower ends back.
        let band: Vec<(f64, (f64, f64))> = drawn
            .iter()
            .filter_map(|p| Some((px(p.x), pair_ok(p.spread)?)))
            .collect();
        if band.len() >= 2 {
            let outline: Vec<String> = band
                .iter()
                .map(|(x, (_, high))| format!("{x:.1},{:.1}", py(*high)))
                .chain(
                    band.iter()
                        .rev()
                        .map(|(x, (low, _))| format!("{x:.1},{:.1}", py(*low))),
                )
                .collect();
            let _ = writeln!(
                svg,
                "<polygon points=\"{}\" fill=\"{color}\" fill-opacity=\"0.15\" stroke=\"none\"/>",
                outline.join(" ")
            );
        } else if let Some((x, (low, high))) = band.first() {
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"{:.1}\" fill=\"{color}\" fill-opacity=\"0.15\"/>",
                x - 6.0,
                py(*high),
                py(*low) - py(*high)
            );
        }
        let coords: Vec<String> = drawn
            .iter()
            .map(|p| format!("{:.1},{:.1}", px(p.x), py(p.y)))
            .collect();
        let width = if s.style == SeriesStyle::Emphasis {
            3.0
        } else {
            2.0
        };
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\" points=\"{}\"/>",
            coords.join(" ")
        );
        for p in &drawn {
            let (x, y) = (px(p.x), py(p.y));
            if let Some((low, high)) = pair_ok(p.interval) {
                let (a, b) = (py(low), py(high));
                let _ = write!(
                    svg,
                    "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{a:.1}\" y2=\"{b:.1}\" stroke=\"{color}\" stroke-width=\"1.2\"/>\
                     <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{a:.1}\" y2=\"{a:.1}\" stroke=\"{color}\" stroke-width=\"1.2\"/>\
                     <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{b:.1}\" y2=\"{b:.1}\" stroke=\"{color}\" stroke-width=\"1.2\"/>",
                    x - 4.0,
                    x + 4.0,
                    x - 4.0,
                    x + 4.0
                );
            }
            let _ = writeln!(
                svg,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{color}\"/>"
            );
        }
    }
    svg.push_str(&legend_svg);
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

    fn point(x: f64, y: f64) -> ErrorPoint {
        ErrorPoint {
            x,
            y,
            interval: Some((y - 2.0, y + 2.0)),
            spread: Some((y - 1.0, y + 1.0)),
        }
    }

    fn numbers(svg: &str, attribute: &str) -> Vec<f64> {
        svg.split(&format!(" {attribute}=\""))
            .skip(1)
            .map(|r| r.split('"').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn error_chart_draws_bars_bands_chance_and_a_log_axis() {
        let chart = ErrorChart {
            title: "Accuracy <by size>".into(),
            caption: "bars: 95% interval".into(),
            x_label: "parameters".into(),
            y_label: "accuracy (%)".into(),
            x_scale: XScale::Log,
            x_ticks: vec![
                (1e6, "1M".into()),
                (1e7, "10M".into()),
                (1e8, "100M".into()),
            ],
            x_range: None,
            series: vec![
                ErrorSeries {
                    name: "finetuned".into(),
                    style: SeriesStyle::Emphasis,
                    points: vec![point(1e6, 20.0), point(1e7, 30.0), point(1e8, 40.0)],
                    chance: vec![(1e6, 10.0), (1e8, 10.0)],
                },
                ErrorSeries {
                    name: "not finetuned".into(),
                    style: SeriesStyle::Baseline,
                    points: vec![point(1e6, 10.0), point(0.0, 12.0), point(1e8, f64::NAN)],
                    chance: vec![(1e6, 10.0), (1e7, 12.0)],
                },
                ErrorSeries {
                    name: "greedy".into(),
                    style: SeriesStyle::Reference,
                    points: vec![ErrorPoint {
                        x: 1.0,
                        y: 25.0,
                        interval: Some((23.0, 27.0)),
                        spread: None,
                    }],
                    // The same chance as the first series: drawn once.
                    chance: vec![(1e6, 10.0), (1e8, 10.0)],
                },
            ],
        };
        let svg = error_chart(&chart);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains("Accuracy &lt;by size&gt; (2 points that cannot be drawn left out)"));
        // Four drawn points, four markers, four error bars of three lines each; two bands (the
        // second series has one drawable point: a small shaded box).
        assert_eq!(svg.matches("<circle").count(), 4);
        assert_eq!(svg.matches("stroke-width=\"1.2\"").count(), 12);
        assert_eq!(svg.matches("<polygon").count(), 1);
        assert_eq!(svg.matches("fill-opacity=\"0.15\"").count(), 2);
        // A constant chance is a full-width line, a varying one a dashed polyline; a chance
        // two series share is drawn once.
        assert_eq!(svg.matches("stroke-dasharray=\"5 4\"").count(), 2);
        // The reference is a line across the plot over its interval's band, and its x (1, far
        // left of the sizes) does not stretch the axis.
        assert_eq!(svg.matches("fill-opacity=\"0.12\"").count(), 1);
        assert!(svg.contains("<line x1=\"64\" x2=\"736.0\""), "{svg}");
        // The emphasised series is thicker, the baseline and reference grey.
        assert_eq!(svg.matches("stroke-width=\"3\"").count(), 1);
        assert!(svg.contains(&format!("stroke=\"{BASELINE_GREY}\" stroke-width=\"2\"")));
        assert!(svg.contains("chance (dashed"));
        // On the log axis the decades are equally spaced.
        let cx = numbers(&svg, "cx");
        assert!(((cx[1] - cx[0]) - (cx[2] - cx[1])).abs() < 0.2, "{cx:?}");
        for label in [">1M<", ">10M<", ">100M<"] {
            assert!(svg.contains(label), "{label}");
        }
    }

    #[test]
    fn error_chart_with_zero_on_a_log_one_plus_axis_and_categories() {
        let families = ErrorChart {
            title: "families".into(),
            caption: String::new(),
            x_label: "finetuning families".into(),
            y_label: "accuracy (%)".into(),
            x_scale: XScale::LogOnePlus,
            x_ticks: Vec::new(),
            x_range: None,
            series: vec![ErrorSeries {
                name: "held out".into(),
                style: SeriesStyle::Normal,
                points: [0.0, 1.0, 3.0, 7.0].iter().map(|&x| point(x, x)).collect(),
                chance: Vec::new(),
            }],
        };
        let svg = error_chart(&families);
        assert!(!svg.contains("left out"));
        assert!(!svg.contains("chance (dashed"));
        // log2 of 1 + x: 0, 1, 2, 3 are equally spaced; every x value is a tick.
        let cx = numbers(&svg, "cx");
        assert!(((cx[1] - cx[0]) - (cx[3] - cx[2])).abs() < 0.2, "{cx:?}");
        for label in [">0<", ">1<", ">3<", ">7<"] {
            assert!(svg.contains(label), "{label}");
        }
        // Two categories with half a category of margin; negative values put 0 inside the axis.
        let categories = ErrorChart {
            x_scale: XScale::Linear,
            x_ticks: vec![(0.0, "before".into()), (1.0, "after".into())],
            x_range: Some((-0.5, 1.5)),
            series: vec![ErrorSeries {
                name: "normalised".into(),
                style: SeriesStyle::Normal,
                points: vec![point(0.0, -12.0), point(1.0, 30.0)],
                chance: vec![(0.0, 0.0), (1.0, 0.0)],
            }],
            ..families
        };
        let svg = error_chart(&categories);
        let cx = numbers(&svg, "cx");
        assert!((cx[0] - (64.0 + 672.0 * 0.25)).abs() < 0.2, "{cx:?}");
        assert!((cx[1] - (64.0 + 672.0 * 0.75)).abs() < 0.2, "{cx:?}");
        assert!(svg.contains(">-20<") && svg.contains(">before<"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn an_empty_error_chart_is_still_a_chart() {
        let svg = error_chart(&ErrorChart {
            title: "nothing".into(),
            caption: String::new(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_scale: XScale::Log,
            x_ticks: Vec::new(),
            x_range: None,
            series: Vec::new(),
        });
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("NaN") && !svg.contains("<circle"));
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
