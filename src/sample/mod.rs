//! Sampling: draws images sub-pixel by sub-pixel (raster order, R then G then B), and
//! writes PNG grids.
//!
//! Randomness is one pre-drawn uniform per sub-pixel, consumed by inverse CDF, so every
//! sampler given the same seed draws the same image.

pub mod png_grid;

use crate::backend::torch::TorchModel;
use crate::ir::HeadKind;
use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use tch::{Kind, Tensor};

/// One uniform in [0, 1) per sub-pixel, laid out N x C x H x W.
pub fn uniforms(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * c * h * w).map(|_| rng.random::<f32>()).collect()
}

/// Inverse-CDF draw of a level from logits (already divided by the temperature).
pub fn draw(logits: &[f32], head: HeadKind, u: f32) -> u8 {
    match head {
        HeadKind::Bernoulli => {
            let p = 1.0 / (1.0 + (-logits[0] as f64).exp());
            u8::from((u as f64) < p)
        }
        HeadKind::Softmax => {
            let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = logits.iter().map(|&l| ((l - m) as f64).exp()).collect();
            let total: f64 = e.iter().sum();
            let target = u as f64 * total;
            let mut acc = 0.0;
            for (v, x) in e.iter().enumerate() {
                acc += x;
                if target < acc {
                    return v as u8;
                }
            }
            (logits.len() - 1) as u8
        }
    }
}

/// Sub-pixels per image that a head has logits for, and the logits per sub-pixel.
fn per_sub_pixel(tm: &TorchModel) -> usize {
    match tm.head {
        HeadKind::Bernoulli => 1,
        HeadKind::Softmax => tm.levels,
    }
}

/// The reference sampler: a full forward pass per sub-pixel. `known` fixes sub-pixels that
/// are given (completion): `Some(values)` with a mask of which sub-pixels to keep.
pub fn sample_reference(
    tm: &TorchModel,
    n: usize,
    seed: u64,
    temperature: f64,
    keep: Option<(&[u8], &[bool])>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<u8>> {
    let (c, h, w) = (tm.channels, tm.height, tm.width);
    let u = uniforms(n, c, h, w, seed);
    let mut img = vec![0u8; n * c * h * w];
    if let Some((vals, _)) = keep {
        img.copy_from_slice(vals);
    }
    let l = per_sub_pixel(tm);
    let total = h * w * c;
    tch::no_grad(|| -> Result<()> {
        for r in 0..h {
            for col in 0..w {
                for ch in 0..c {
                    let step = (r * w + col) * c + ch;
                    progress(step, total);
                    if let Some((_, mask)) = keep {
                        if (0..n).all(|b| mask[((b * c + ch) * h + r) * w + col]) {
                            continue;
                        }
                    }
                    let x = tm.images_to_tensor(&img, n);
                    let logits = tm.forward(&x);
                    // Logits of this sub-pixel for every image: N x L.
                    let sel = logits
                        .narrow(1, (ch * l) as i64, l as i64)
                        .select(2, r as i64)
                        .select(2, col as i64)
                        .to_device(tch::Device::Cpu)
                        .to_kind(Kind::Float)
                        .contiguous();
                    let sel = &sel / temperature;
                    let mut v = vec![0f32; n * l];
                    sel.copy_data(&mut v, n * l);
                    for b in 0..n {
                        let i = ((b * c + ch) * h + r) * w + col;
                        if let Some((_, mask)) = keep {
                            if mask[i] {
                                continue;
                            }
                        }
                        img[i] = draw(&v[b * l..(b + 1) * l], tm.head, u[i]);
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(img)
}

/// Writes a small sample grid into a run folder (`samples/step_NNNNNNN.png`).
pub fn grid_for_run(tm: &TorchModel, dir: &Path, step: u64) -> Result<()> {
    let n = 8;
    let imgs = sample_reference(tm, n, step, 1.0, None, |_, _| {})?;
    let d = dir.join("samples");
    std::fs::create_dir_all(&d)?;
    let grid = png_grid::grid(&imgs, n, tm.channels, tm.height, tm.width, tm.levels, 4, 2)?;
    crate::util::write_atomic(&d.join(format!("step_{step:07}.png")), &grid)?;
    Ok(())
}

/// Input tensor for tests and tools.
pub fn to_tensor(img: &[u8], n: usize, c: usize, h: usize, w: usize) -> Tensor {
    Tensor::from_slice(img).reshape([n as i64, c as i64, h as i64, w as i64])
}
