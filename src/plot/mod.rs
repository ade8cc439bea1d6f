//! Training curves: training and validation NLL against steps and against wall time,
//! from a run's `metrics.jsonl`, drawn with `plotters` into a PNG.
//!
//! Text uses DejaVu Sans Mono, embedded (fonts/, with its license): plotters' ab_glyph
//! back end has no system font lookup, and CI machines may have no fonts at all.

use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;

pub mod overlay;

static FONT: &[u8] = include_bytes!("fonts/DejaVuSansMono.ttf");

fn register_font() -> Result<()> {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        bail!("the embedded font could not be loaded")
    }
}

/// One validation record.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub step: f64,
    pub wall_seconds: f64,
    pub train: Option<f64>,
    pub valid: Option<f64>,
}

/// A run's curves.
#[derive(Clone, Debug)]
pub struct Curves {
    pub points: Vec<Point>,
    /// `nats/image` or `bits/dim`.
    pub unit: String,
    /// Lines that could not be read (e.g. a last line cut short by a crash): `(line, why)`.
    pub skipped: Vec<(usize, String)>,
}

/// Parses `metrics.jsonl` text (one JSON object per line).
pub fn parse_metrics(text: &str) -> Result<Curves> {
    let mut points = Vec::new();
    let mut unit = None;
    let mut skipped = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                skipped.push((i + 1, e.to_string()));
                continue;
            }
        };
        let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).filter(|x| x.is_finite());
        let Some(step) = num("step") else {
            skipped.push((i + 1, "no `step`".into()));
            continue;
        };
        if unit.is_none() {
            unit = v.get("unit").and_then(|u| u.as_str()).map(str::to_string);
        }
        points.push(Point {
            step,
            wall_seconds: num("wall_seconds").unwrap_or(f64::NAN),
            train: num("train_nll"),
            valid: num("valid_nll"),
        });
    }
    Ok(Curves {
        points,
        unit: unit.unwrap_or_else(|| "NLL".into()),
        skipped,
    })
}

/// Reads a run folder's `metrics.jsonl`.
pub fn read_metrics(run: &Path) -> Result<Curves> {
    let p = run.join("metrics.jsonl");
    if !run.is_dir() {
        bail!(
            "{} is not a folder: give a run folder made by `pixc train --out DIR`",
            run.display()
        );
    }
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "cannot read {}: the run has no metrics yet (they are written at each validation)",
            p.display()
        )
    })?;
    let c = parse_metrics(&text)?;
    if c.points.is_empty() {
        bail!("{} holds no validation records yet", p.display());
    }
    Ok(c)
}

/// A value range with a margin, never empty.
fn range(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = vals
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    Some((lo - pad, hi + pad))
}

/// A tick label with a few significant digits and no trailing zeros.
fn tick(v: f64) -> String {
    let a = v.abs();
    let decimals = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A chart of the NLL against a panel's x axis: steps (`which` 0) or wall minutes (1).
type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The error of a drawing call.
fn drawing(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// One panel's chart, with its axes drawn: x from `x`, NLL in `unit` from `y`. Both
/// plots (one run, several runs) use it, so their panels look alike.
fn panel_chart<'a, 'b>(
    panel: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    which: usize,
    (x0, x1): (f64, f64),
    y: (f64, f64),
    unit: &str,
) -> Result<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(panel)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y.0..y.1)
        .map_err(drawing)?;
    let xlabel = if which == 0 {
        "training step"
    } else {
        "wall time (minutes)"
    };
    let xfmt = |v: &f64| {
        if which == 0 {
            format!("{v:.0}")
        } else {
            tick(*v)
        }
    };
    let yfmt = |v: &f64| tick(*v);
    chart
        .configure_mesh()
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .x_desc(xlabel)
        .y_desc(format!("NLL ({unit})"))
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 14))
        .x_labels(6)
        .y_labels(8)
        .draw()
        .map_err(drawing)?;
    Ok(chart)
}

/// The legend box, upper right.
fn draw_legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(drawing)
}

/// A point's x in panel `which`: its step, or its wall time in minutes.
fn x_of(p: &Point, which: usize) -> f64 {
    if which == 0 {
        p.step
    } else {
        p.wall_seconds / 60.0
    }
}

/// Draws the two panels (NLL vs step, NLL vs wall time) as PNG bytes.
pub fn plot(curves: &Curves, title: &str, width: u32, height: u32) -> Result<Vec<u8>> {
    register_font()?;
    let pts = &curves.points;
    if pts.is_empty() {
        bail!("no points to plot");
    }
    let y = range(pts.iter().flat_map(|p| [p.train, p.valid]).flatten())
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
        let step_x = range(pts.iter().map(|p| p.step)).unwrap_or((0.0, 1.0));
        let wall_x = range(pts.iter().map(|p| p.wall_seconds / 60.0));
        let axes = [(Some(step_x), 0usize), (wall_x, 1usize)];
        for (panel, (xr, which)) in panels.iter().zip(axes) {
            let Some(xr) = xr else {
                panel
                    .draw(&Text::new(
                        "no wall times recorded",
                        (40, 40),
                        ("sans-serif", 14).into_font(),
                    ))
                    .map_err(|e| err(&e))?;
                continue;
            };
            let mut chart = panel_chart(panel, which, xr, y, &curves.unit)?;
            let series = |f: fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
                pts.iter()
                    .filter_map(|p| f(p).map(|v| (x_of(p, which), v)))
                    .filter(|(x, v)| x.is_finite() && v.is_finite())
                    .collect()
            };
            let train = series(|p| p.train);
            let valid = series(|p| p.valid);
            let blue = RGBColor(31, 119, 180);
            let red = RGBColor(214, 39, 40);
            chart
                .draw_series(LineSeries::new(train.clone(), blue.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label("train")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2))
                });
            chart
                .draw_series(train.iter().map(|&p| Circle::new(p, 2, blue.filled())))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(LineSeries::new(valid.clone(), red.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label("validation")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2))
                });
            chart
                .draw_series(valid.iter().map(|&p| Circle::new(p, 3, red.filled())))
                .map_err(|e| err(&e))?;
            draw_legend(&mut chart)?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    crate::sample::png_grid::encode_rgb(&buf, width as usize, height as usize)
}
