//! Plots of a plan (SVG, drawn with the `plotters` crate): on the left the
//! roofline of the chip — attainable FLOP/s against arithmetic intensity,
//! `min(peak, bandwidth × FLOP/byte)` — with the model's prefill and decode
//! steps at every batch size; on the right the aggregate decode throughput
//! against batch size, with the memory limit on the batch. Decode points sit
//! on the sloped (memory) part of the roof, prefill points under the flat
//! (compute) part: which wall a phase hits is where its point lands.

use super::Plan;
use plotters::prelude::*;
use std::path::Path;

/// Draws `p` to `path` (SVG).
pub fn svg(p: &Plan, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    draw(p, root).map_err(|e| e.to_string())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(p: &Plan, root: Area<'_>) -> DrawResult {
    root.fill(&WHITE)?;
    let title = format!("{} ({}) on {}", p.model, p.weights.name, p.hardware);
    let root = root.titled(&title, ("sans-serif", 22))?;
    let (left, right) = root.split_horizontally(640);
    roofline(p, &left)?;
    throughput(p, &right)?;
    root.present()?;
    Ok(())
}

fn roofline(p: &Plan, area: &Area<'_>) -> DrawResult {
    let ridge = p.peak_flops / p.bandwidth;
    let xs = p.batches.iter().flat_map(|b| [b.prefill.intensity, b.decode.intensity]);
    let x_min = xs.clone().fold(ridge, f64::min).max(1e-3) / 4.0;
    let x_max = xs.fold(ridge, f64::max) * 4.0;
    let y_max = p.peak_flops * 3.0;
    let y_min = (p.bandwidth * x_min).min(p.peak_flops / 100.0) / 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption("roofline", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("arithmetic intensity, FLOP/byte")
        .y_desc("attainable FLOP/s")
        .y_label_formatter(&|v| format!("{:.0e}", v))
        .x_label_formatter(&|v| if *v >= 1.0 { format!("{v:.0}") } else { format!("{v}") })
        .draw()?;
    let roof: Vec<(f64, f64)> = (0..=200)
        .map(|i| {
            let x = x_min * (x_max / x_min).powf(i as f64 / 200.0);
            (x, (p.bandwidth * x).min(p.peak_flops))
        })
        .collect();
    chart
        .draw_series(LineSeries::new(roof, BLACK.stroke_width(2)))?
        .label(format!(
            "roof: {:.0} GB/s, {:.1} T ops/s {}",
            p.bandwidth / 1e9,
            p.peak_flops / 1e12,
            p.weights.class.name()
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    let point = |intensity: f64, flops: f64, time: f64| (intensity, flops / time);
    chart
        .draw_series(p.batches.iter().map(|b| {
            let (x, y) = point(b.prefill.intensity, b.prefill.flops, b.prefill.time_s);
            Circle::new((x, y), 6, RED.filled())
        }))?
        .label("prefill (one point per batch size)")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, RED.filled()));
    chart
        .draw_series(p.batches.iter().map(|b| {
            let (x, y) = point(b.decode.intensity, b.decode.flops, b.decode.time_s);
            TriangleMarker::new((x, y), 7, BLUE.filled())
        }))?
        .label("decode (one point per batch size)")
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 5, BLUE.filled()));
    chart.draw_series(p.batches.iter().map(|b| {
        let (x, y) = point(b.decode.intensity, b.decode.flops, b.decode.time_s);
        Text::new(format!("b={}", b.batch), (x, y * 1.4), ("sans-serif", 12).into_font())
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn throughput(p: &Plan, area: &Area<'_>) -> DrawResult {
    let b_max = p.batches.iter().map(|b| b.batch).max().unwrap_or(1) as f64 * 1.1 + 1.0;
    let t_max = p.batches.iter().map(|b| b.tokens_per_s_aggregate).fold(1e-9, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("decode throughput vs batch", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..b_max, 0.0..t_max)?;
    chart.configure_mesh().x_desc("batch size (sequences)").y_desc("tokens/s, all streams").draw()?;
    let pts: Vec<(f64, f64)> = p.batches.iter().map(|b| (b.batch as f64, b.tokens_per_s_aggregate)).collect();
    chart
        .draw_series(LineSeries::new(pts.clone(), BLUE.stroke_width(2)))?
        .label("aggregate tokens/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart.draw_series(p.batches.iter().map(|b| {
        let style = if b.fits_memory { BLUE.filled() } else { RED.filled() };
        Circle::new((b.batch as f64, b.tokens_per_s_aggregate), 5, style)
    }))?;
    let per_stream: Vec<(f64, f64)> = p.batches.iter().map(|b| (b.batch as f64, b.tokens_per_s_per_stream)).collect();
    chart
        .draw_series(LineSeries::new(per_stream, GREEN.stroke_width(2)))?
        .label("tokens/s per stream")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    if (p.max_batch as f64) < b_max {
        let x = p.max_batch as f64;
        chart
            .draw_series(LineSeries::new(vec![(x, 0.0), (x, t_max)], RED.stroke_width(1)))?
            .label(format!("memory limit: batch {}", p.max_batch))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
