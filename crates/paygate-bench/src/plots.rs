//! SVG charts next to the JSON (`plotters`, SVG backend only: text is written as SVG `<text>`,
//! so no system fonts are needed to draw them).

use std::path::{Path, PathBuf};

use plotters::{
    coord::{ranged1d::AsRangedCoord, Shift},
    prelude::*,
};

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points: points
                .into_iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect(),
        }
    }
}

/// A chart to draw.
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Logarithmic x axis (latency CDFs).
    pub log_x: bool,
    /// Start the y axis at zero.
    pub y_from_zero: bool,
    /// The legend in the upper right corner (else lower right).
    pub legend_top: bool,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// `<json stem>.<name>.svg` beside the JSON file.
pub fn path_beside(json: &Path, name: &str) -> PathBuf {
    let stem = json
        .file_stem()
        .map_or_else(|| "bench".into(), |s| s.to_string_lossy().into_owned());
    json.with_file_name(format!("{stem}.{name}.svg"))
}

/// Draws `chart` into an SVG file.
pub fn draw(path: &Path, chart: &Chart) -> anyhow::Result<()> {
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    anyhow::ensure!(
        points().next().is_some(),
        "{}: nothing to plot",
        chart.title
    );
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points() {
        if chart.log_x && *x <= 0.0 {
            continue;
        }
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if chart.y_from_zero {
        y0 = y0.min(0.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (if chart.y_from_zero { y0 } else { y0 - pad }, y1 + pad);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    if chart.log_x {
        plot(&root, chart, (x0 * 0.9..x1 * 1.1).log_scale(), y0..y1)?;
    } else {
        plot(&root, chart, x0..x1, y0..y1)?;
    }
    root.present()?;
    Ok(())
}

fn plot<X>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &Chart,
    x: X,
    y: std::ops::Range<f64>,
) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut ctx = ChartBuilder::on(root)
        .caption(chart.title.as_str(), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)?;
    let span = ctx.y_range().end - ctx.y_range().start;
    let y_format = move |v: &f64| {
        if span >= 20.0 {
            crate::report::group(v.round() as i64)
        } else {
            format!("{v:.1}")
        }
    };
    ctx.configure_mesh()
        .y_label_formatter(&y_format)
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (i, s) in chart.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, _)| !chart.log_x || *x > 0.0)
            .collect();
        ctx.draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(if chart.legend_top {
            SeriesLabelPosition::UpperRight
        } else {
            SeriesLabelPosition::LowerRight
        })
        .draw()?;
    Ok(())
}

/// A latency CDF series from (percentile, microseconds) pairs: x in ms, y in percent.
pub fn cdf(name: impl Into<String>, percentiles: &[(f64, f64)]) -> Series {
    Series::new(
        name,
        percentiles
            .iter()
            .map(|(p, us)| (us / 1000.0, *p))
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_without_fonts() {
        let dir = std::env::temp_dir().join(format!("paygate-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.svg");
        draw(
            &path,
            &Chart {
                title: "latency".into(),
                x_label: "ms".into(),
                y_label: "percentile".into(),
                series: vec![cdf("a", &[(50.0, 100.0), (99.0, 900.0), (100.0, 2000.0)])],
                log_x: true,
                y_from_zero: true,
                legend_top: false,
            },
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("latency"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
