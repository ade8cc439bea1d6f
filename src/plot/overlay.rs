//! Several runs on one figure (`pixc plot RUN RUN...`): each run's validation NLL (thick)
//! and training NLL (thin, same colour) against steps and against wall time, the legend
//! naming the runs.

use super::{draw_legend, panel_chart, range, register_font, x_of, Curves, Point};
use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;

/// Colours of the runs, in order (matplotlib's tab10); repeated past ten runs.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of run `i`.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Draws `runs` (name, curves) over each other as PNG bytes. All runs must report NLL in
/// the same unit.
pub fn plot_overlay(
    runs: &[(String, Curves)],
    title: &str,
    width: u32,
    height: u32,
) -> Result<Vec<u8>> {
    register_font()?;
    let Some((_, first)) = runs.first() else {
        bail!("no runs to plot");
    };
    if let Some((name, c)) = runs.iter().find(|(_, c)| c.unit != first.unit) {
        bail!(
            "{name} reports NLL in {}, the first run in {}: runs on one plot must share a unit",
            c.unit,
            first.unit
        );
    }
    let all: Vec<&Point> = runs.iter().flat_map(|(_, c)| c.points.iter()).collect();
    let y = range(all.iter().flat_map(|p| [p.train, p.valid]).flatten())
        .ok_or_else(|| anyhow!("no NLL values to plot"))?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing the plot: {e}");
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let root = root
            .titled(title, ("sans-serif", 20).into_font())
            .map_err(|e| err(&e))?;
        let panels = root.split_evenly((1, 2));
        let step_x = range(all.iter().map(|p| p.step)).unwrap_or((0.0, 1.0));
        let wall_x = range(all.iter().map(|p| p.wall_seconds / 60.0)).unwrap_or((0.0, 1.0));
        for (which, panel) in panels.iter().enumerate() {
            let xr = if which == 0 { step_x } else { wall_x };
            let mut chart = panel_chart(panel, which, xr, y, &first.unit)?;
            for (i, (name, c)) in runs.iter().enumerate() {
                let col = colour(i);
                let series = |f: fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
                    c.points
                        .iter()
                        .filter_map(|p| f(p).map(|v| (x_of(p, which), v)))
                        .filter(|(x, v)| x.is_finite() && v.is_finite())
                        .collect()
                };
                chart
                    .draw_series(LineSeries::new(
                        series(|p| p.train),
                        col.mix(0.5).stroke_width(1),
                    ))
                    .map_err(|e| err(&e))?;
                // Markers too, so a run with one validation still shows.
                let valid = series(|p| p.valid);
                chart
                    .draw_series(valid.iter().map(|&p| Circle::new(p, 3, col.filled())))
                    .map_err(|e| err(&e))?;
                chart
                    .draw_series(LineSeries::new(valid, col.stroke_width(3)))
                    .map_err(|e| err(&e))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(3))
                    });
            }
            draw_legend(&mut chart)?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    crate::sample::png_grid::encode_rgb(&buf, width as usize, height as usize)
}
