//! The output head's distribution: logits per sub-pixel and the inverse-CDF draw every
//! sampler uses, so equal logits and uniforms give equal images in all of them.

use super::{HeadKind, ImageSpec};

/// Channels of the logits a head produces for an image.
pub fn head_out_channels(kind: HeadKind, image: &ImageSpec) -> usize {
    match kind {
        HeadKind::Bernoulli => image.channels,
        HeadKind::Softmax => image.channels * image.levels,
    }
}

/// Logits per sub-pixel: 1 (Bernoulli) or `levels` (softmax).
pub fn logits_per_sub_pixel(kind: HeadKind, levels: usize) -> usize {
    match kind {
        HeadKind::Bernoulli => 1,
        HeadKind::Softmax => levels,
    }
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

/// Divides raw logits by the temperature (in f32, the same way in every sampler) and
/// draws. Every sampler calls this, so equal logits and uniforms give equal draws.
pub fn draw_scaled(raw: &[f32], head: HeadKind, temperature: f64, u: f32) -> u8 {
    if temperature == 1.0 {
        return draw(raw, head, u);
    }
    let t = temperature as f32;
    let scaled: Vec<f32> = raw.iter().map(|&l| l / t).collect();
    draw(&scaled, head, u)
}
