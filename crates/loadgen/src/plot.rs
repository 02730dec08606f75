//! `--plot FILE.svg`: aggregate output tokens/s (left) and p99 TTFT (right)
//! against concurrency or request rate, one line per run, drawn with
//! `plotters` as `memwall plan --plot` draws its roofline. Several runs
//! (servers) can share one plot so a side-by-side comparison is one picture.

use crate::report::LevelReport;
use plotters::prelude::*;
use std::path::Path;

/// One line of the plot: a name and its levels.
pub struct Series<'a> {
    pub name: &'a str,
    pub levels: &'a [LevelReport],
}

/// Draws `series` to `path` (SVG) under `title`.
pub fn svg(title: &str, series: &[Series<'_>], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (1100, 460)).into_drawing_area();
    draw(title, series, root).map_err(|e| e.to_string())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

const COLOURS: [RGBColor; 4] = [BLUE, RED, GREEN, MAGENTA];

fn draw(title: &str, series: &[Series<'_>], root: Area<'_>) -> DrawResult {
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let (left, right) = root.split_horizontally(550);
    let rate = series.iter().flat_map(|s| s.levels).any(|l| l.request_rate.is_some());
    let x_desc = if rate { "request rate, requests/s (Poisson arrivals)" } else { "concurrency (requests in flight)" };
    panel(&left, series, "output throughput", x_desc, "output tokens/s, all requests", |l| l.output_tokens_per_s)?;
    panel(&right, series, "p99 time to first token", x_desc, "TTFT p99, ms", |l| l.latencies.ttft_ms.p99)?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &Area<'_>,
    series: &[Series<'_>],
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    y: impl Fn(&LevelReport) -> f64,
) -> DrawResult {
    let all = || series.iter().flat_map(|s| s.levels.iter());
    let x_max = all().map(LevelReport::x).fold(1.0, f64::max) * 1.1;
    let y_max = all().map(&y).filter(|v| v.is_finite()).fold(1e-9, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).x_label_formatter(&|v| format!("{v}")).draw()?;
    for (s, colour) in series.iter().zip(COLOURS.iter().cycle()) {
        let pts: Vec<(f64, f64)> = s.levels.iter().map(|l| (l.x(), y(l))).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Context;
    use crate::stats::{LevelStats, Slo};
    use crate::workload::PromptLength;
    use crate::Level;

    #[test]
    fn draws_both_panels_with_one_line_per_server() {
        let cx =
            Context { prompt_length: PromptLength::Tokenized, output_tokens_requested: Some(8), slo: Slo::default() };
        let level = |c: usize, tok_s: f64| {
            let s = LevelStats { completed: c, output_tokens_per_s: tok_s, ..LevelStats::default() };
            LevelReport::new(Level::Concurrency(c), &s, cx)
        };
        let a = [level(1, 10.0), level(4, 30.0)];
        let b = [level(1, 8.0), level(4, 12.0)];
        let path = std::env::temp_dir().join(format!("memwall-loadgen-plot-{}.svg", std::process::id()));
        svg("t", &[Series { name: "memwall", levels: &a }, Series { name: "llama-server", levels: &b }], &path)
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).ok();
        for label in ["output throughput", "p99 time to first token", "memwall", "llama-server", "concurrency"] {
            assert!(text.contains(label), "{label} missing from the plot");
        }
    }
}
