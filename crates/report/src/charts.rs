//! The report's charts, drawn with plotters' SVG back end: line charts with axes, ticks,
//! legends and units, and the confusion matrix as a heat map.

use crate::error::{ReportError, Result};
use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
use plotters::prelude::*;

/// Width and height of a line chart, in pixels.
const LINE_SIZE: (u32, u32) = (600, 340);

/// The colours of the series, in order (colour-blind safe: Okabe-Ito).
pub const PALETTE: [RGBColor; 4] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
];

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Its legend entry.
    pub label: String,
    /// The points (x, y).
    pub points: &'a [(f64, f64)],
    /// Its colour.
    pub color: RGBColor,
    /// Drawn thin and light (a raw series under its smoothed one), without markers.
    pub faint: bool,
}

/// What a line chart shows.
#[derive(Debug, Clone)]
pub struct LineChart<'a> {
    /// The caption.
    pub title: &'a str,
    /// The x axis' label with its unit.
    pub x_label: &'a str,
    /// The y axis' label with its unit.
    pub y_label: &'a str,
    /// The lines.
    pub series: Vec<Series<'a>>,
    /// Draw a marker at every point (few points, e.g. one per epoch).
    pub markers: bool,
    /// The preferred corner for the legend (e.g. lower right for a rising curve); another
    /// corner is taken when the lines pass through fewer of its pixels ([`legend_corner`]).
    pub legend: SeriesLabelPosition,
    /// The lowest y the axis may start at (e.g. 0 for a loss), whatever the padding.
    pub y_floor: Option<f64>,
}

fn chart_err(chart: &str, e: impl std::fmt::Display) -> ReportError {
    ReportError::Chart {
        chart: chart.to_string(),
        message: e.to_string(),
    }
}

/// The range of `values` with 5% room on each side (a unit around a single value).
fn padded_range(values: impl Iterator<Item = f64>, floor: Option<f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    let room = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    let mut lo = lo - room;
    if let Some(f) = floor {
        lo = lo.max(f);
    }
    (lo, hi + room)
}

/// Tick label of a number: whole numbers as such, others with at most four decimals and no
/// trailing zeros, very small or large ones in exponent form.
fn tick(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{v:.1e}")
    } else if (v - v.round()).abs() < 1e-9 * a.max(1.0) {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Tick label of a count (epochs, steps): whole numbers only; a fractional position gets
/// no label.
fn whole_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 * v.abs().max(1.0) {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// Approximate size of the plotting area of a line chart, in pixels (the chart less its
/// caption, margins and axis label areas).
const PLOT_SIZE: (f64, f64) = (500.0, 240.0);

/// Samples along each segment of a line when looking for a free corner.
const SEGMENT_SAMPLES: usize = 24;

/// The corner for `chart`'s legend within the data ranges `x` and `y`: of the four, the one
/// whose legend box the lines cross least (sampled along every segment), the preferred
/// corner first on a tie, so that the legend never hides the last epoch's point when a
/// curve ends where the legend was meant to go.
pub fn legend_corner(chart: &LineChart<'_>, x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    use SeriesLabelPosition::{LowerLeft, LowerRight, UpperLeft, UpperRight};
    let longest = chart.series.iter().map(|s| s.label.chars().count()).max();
    // a legend row is about 20 px high, a character about 8 px wide after a 30 px sample line
    let w = ((longest.unwrap_or(0) as f64 * 8.0 + 50.0) / PLOT_SIZE.0).min(1.0);
    let h = ((chart.series.len() as f64 * 20.0 + 14.0) / PLOT_SIZE.1).min(1.0);
    let inside = |corner: &SeriesLabelPosition, u: f64, v: f64| match corner {
        UpperRight => u >= 1.0 - w && v >= 1.0 - h,
        LowerRight => u >= 1.0 - w && v <= h,
        UpperLeft => u <= w && v >= 1.0 - h,
        _ => u <= w && v <= h,
    };
    let unit = |p: (f64, f64)| {
        let u = (p.0 - x.0) / (x.1 - x.0).max(f64::MIN_POSITIVE);
        let v = (p.1 - y.0) / (y.1 - y.0).max(f64::MIN_POSITIVE);
        (u, v)
    };
    let crossings = |corner: &SeriesLabelPosition| -> usize {
        let mut n = 0;
        for s in &chart.series {
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&p| unit(p)).collect();
            if let [only] = pts.as_slice() {
                n += usize::from(inside(corner, only.0, only.1));
            }
            for pair in pts.windows(2) {
                let ((u0, v0), (u1, v1)) = (pair[0], pair[1]);
                n += (0..=SEGMENT_SAMPLES)
                    .map(|i| i as f64 / SEGMENT_SAMPLES as f64)
                    .filter(|t| inside(corner, u0 + (u1 - u0) * t, v0 + (v1 - v0) * t))
                    .count();
            }
        }
        n
    };
    let mut order = vec![chart.legend.clone()];
    for c in [UpperRight, LowerRight, UpperLeft, LowerLeft] {
        if !order.iter().any(|o| same_corner(o, &c)) {
            order.push(c);
        }
    }
    let mut best = (usize::MAX, order[0].clone());
    for c in order {
        let n = crossings(&c);
        if n < best.0 {
            best = (n, c);
        }
    }
    best.1
}

/// Whether two legend positions are the same corner (plotters' type has no `PartialEq`).
fn same_corner(a: &SeriesLabelPosition, b: &SeriesLabelPosition) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Draws `chart` as an SVG document.
pub fn line_chart(chart: &LineChart<'_>) -> Result<String> {
    let err = |e: &dyn std::fmt::Display| chart_err(chart.title, e);
    let (x0, x1) = padded_range(
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0)),
        None,
    );
    let (y0, y1) = padded_range(
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1)),
        chart.y_floor,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, LINE_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut c = ChartBuilder::on(&root)
            .caption(chart.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        c.configure_mesh()
            .x_desc(chart.x_label)
            .y_desc(chart.y_label)
            // x counts whole epochs or steps: no more labels than whole numbers in range,
            // and none between them
            .x_labels(((x1 - x0).floor() as usize + 1).clamp(2, 8))
            .y_labels(6)
            .x_label_formatter(&|v| whole_tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(215, 215, 215))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(&e))?;
        for s in &chart.series {
            let style = if s.faint {
                ShapeStyle::from(s.color.mix(0.25)).stroke_width(1)
            } else {
                ShapeStyle::from(s.color).stroke_width(2)
            };
            let legend = style;
            c.draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(|e| err(&e))?
                .label(s.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], legend));
            if chart.markers && !s.faint {
                c.draw_series(
                    s.points
                        .iter()
                        .map(|p| Circle::new(*p, 3, ShapeStyle::from(s.color).filled())),
                )
                .map_err(|e| err(&e))?;
            }
        }
        c.configure_series_labels()
            .position(legend_corner(chart, (x0, x1), (y0, y1)))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// The colour of a heat-map cell at `t` in [0, 1]: white to dark blue.
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
}

/// Most classes whose counts are written into the cells (beyond, only colours).
const MAX_LABELLED_CLASSES: usize = 20;

/// Draws the confusion matrix (`matrix[true][predicted]`) as a heat map: each cell coloured by
/// its share of the true class' images, with the count written in it (up to 20 classes).
pub fn confusion_heat_map(title: &str, names: &[String], matrix: &[Vec<u64>]) -> Result<String> {
    let err = |e: &dyn std::fmt::Display| chart_err(title, e);
    let n = names.len().max(1) as i32;
    let side = 640u32.max(24 * n as u32 + 160).min(1400);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (side, side)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let label_every = ((n as usize) / MAX_LABELLED_CLASSES).max(1);
        let name_of = |v: &SegmentValue<i32>, flip: bool| -> String {
            let i = match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => *i,
                SegmentValue::Last => return String::new(),
            };
            let k = if flip { n - 1 - i } else { i };
            if k < 0 || !(k as usize).is_multiple_of(label_every) {
                return String::new();
            }
            names.get(k as usize).cloned().unwrap_or_default()
        };
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(110)
            .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())
            .map_err(|e| err(&e))?;
        c.configure_mesh()
            .disable_mesh()
            .x_desc("predicted class")
            .y_desc("true class")
            .x_labels(n as usize)
            .y_labels(n as usize)
            .x_label_formatter(&|v| name_of(v, false))
            .y_label_formatter(&|v| name_of(v, true))
            .label_style(("sans-serif", 11))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
        let show_counts = names.len() <= MAX_LABELLED_CLASSES;
        for (t, row) in matrix.iter().enumerate() {
            let total: u64 = row.iter().sum();
            let y = n - 1 - t as i32;
            for (p, &count) in row.iter().enumerate() {
                let share = if total > 0 {
                    count as f64 / total as f64
                } else {
                    0.0
                };
                let x = p as i32;
                c.draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    ShapeStyle::from(heat(share)).filled(),
                )))
                .map_err(|e| err(&e))?;
                if show_counts {
                    let colour = if share > 0.5 { WHITE } else { BLACK };
                    let style = TextStyle::from(("sans-serif", 12).into_font())
                        .color(&colour)
                        .pos(plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Center,
                        ));
                    c.draw_series(std::iter::once(Text::new(
                        count.to_string(),
                        (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                        style,
                    )))
                    .map_err(|e| err(&e))?;
                }
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// Exponential moving average with TensorBoard's debiasing (`weight` in [0, 1)).
pub fn smooth(points: &[(f64, f64)], weight: f64) -> Vec<(f64, f64)> {
    let mut last = 0.0;
    let mut num = 0i32;
    points
        .iter()
        .map(|&(x, y)| {
            num += 1;
            last = last * weight + (1.0 - weight) * y;
            let debias = 1.0 - weight.powi(num);
            (x, if debias > 0.0 { last / debias } else { y })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_ticks_are_whole_numbers_only() {
        assert_eq!(whole_tick(3.0), "3");
        assert_eq!(whole_tick(1.5), "");
        assert_eq!(whole_tick(690.0), "690");
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(5.0), "5");
        assert_eq!(tick(0.05), "0.05");
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(12.345678), "12.3457");
        assert_eq!(tick(2e-5), "2.0e-5");
    }

    #[test]
    fn smoothing_starts_at_the_first_value_and_follows_a_constant() {
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 2.0)).collect();
        for (_, y) in smooth(&pts, 0.9) {
            assert!((y - 2.0).abs() < 1e-12);
        }
        let s = smooth(&[(0.0, 1.0), (1.0, 0.0)], 0.5);
        assert_eq!(s[0].1, 1.0);
        assert!((s[1].1 - (0.25 / 0.75)).abs() < 1e-12);
    }

    #[test]
    fn a_line_chart_is_one_svg_with_its_legend_and_axis_labels() {
        let pts = [(1.0, 0.5), (2.0, 0.25), (3.0, 0.2)];
        let svg = line_chart(&LineChart {
            title: "loss",
            x_label: "epoch",
            y_label: "loss (nats)",
            series: vec![Series {
                label: "train".into(),
                points: &pts,
                color: PALETTE[0],
                faint: false,
            }],
            markers: true,
            legend: SeriesLabelPosition::UpperRight,
            y_floor: Some(0.0),
        })
        .unwrap();
        assert!(svg.trim_start().starts_with("<svg"), "{}", &svg[..60]);
        for text in ["loss (nats)", "epoch", "train"] {
            assert!(svg.contains(text), "{text}");
        }
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    /// A chart with one falling line through `pts`, the legend preferred lower right.
    fn falling(pts: &[(f64, f64)]) -> LineChart<'_> {
        LineChart {
            title: "throughput",
            x_label: "epoch",
            y_label: "images / s",
            series: vec![Series {
                label: "train".into(),
                points: pts,
                color: PALETTE[0],
                faint: false,
            }],
            markers: true,
            legend: SeriesLabelPosition::LowerRight,
            y_floor: None,
        }
    }

    #[test]
    fn the_legend_moves_off_the_lines() {
        use SeriesLabelPosition::*;
        let corner = |c: &LineChart<'_>| {
            let pts = c.series[0].points;
            let x = padded_range(pts.iter().map(|p| p.0), None);
            let y = padded_range(pts.iter().map(|p| p.1), None);
            legend_corner(c, x, y)
        };
        // a line falling from the upper left into the preferred lower right corner: the
        // legend goes to the upper right, which it does not cross
        let down = [(1.0, 785.0), (2.0, 749.0)];
        assert!(same_corner(&corner(&falling(&down)), &UpperRight));
        // a rising line leaves the preferred lower right free
        let up = [(1.0, 749.0), (2.0, 785.0)];
        assert!(same_corner(&corner(&falling(&up)), &LowerRight));
        // a flat line through the middle crosses no corner: the preference stands
        let flat = [(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)];
        assert!(same_corner(&corner(&falling(&flat)), &LowerRight));
    }

    #[test]
    fn the_heat_map_writes_every_count() {
        let names: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let svg = confusion_heat_map("cm", &names, &[vec![7, 1], vec![2, 9]]).unwrap();
        for count in ["7", "1", "2", "9"] {
            assert!(svg.contains(&format!(">\n{count}\n<")), "{count}");
        }
    }
}
