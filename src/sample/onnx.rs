//! Sampling an exported model with ONNX Runtime: the reference method (one full run per
//! sub-pixel), the same uniforms and draws as the libtorch samplers.

use super::{check_request, draw_scaled, uniforms};
use crate::ir::HeadKind;
use crate::runtime::OnnxModel;
use anyhow::{bail, Result};

/// Draws `n` images from a loaded pixc ONNX model. A low-res model (`info().low_res` =
/// f > 0) draws each image given its low-res pixels: `low_res` holds them, `n x C x H/f x
/// W/f`, and they are kept in the images drawn, as the libtorch samplers keep them.
pub fn sample_onnx(
    model: &mut OnnxModel,
    n: usize,
    seed: u64,
    temperature: f64,
    labels: Option<&[u16]>,
    low_res: Option<&[u8]>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<u8>> {
    check_request(n, temperature)?;
    let info = model.info().clone();
    super::check_labels(info.classes, n, labels)?;
    let (c, h, w) = (info.channels, info.height, info.width);
    let f = info.low_res;
    let mut out = vec![0u8; n * c * h * w];
    match (f, low_res) {
        (0, None) => {}
        (0, Some(_)) => bail!("low-res images given, but the model has no low-res input"),
        (f, None) => bail!(
            "the model draws an image given its low-res image (the pixels at rows and columns divisible by {f}): give them with --low-res FILE.npy (uint8, [n, {c}, {}, {}]), e.g. drawn by the run's small model: `pixc sample --onnx small.onnx --npy small.npy`",
            h / f,
            w / f
        ),
        (f, Some(small)) => {
            let size = n * info.low_res_dims();
            if small.len() != size {
                bail!("{} low-res values given for {n} images, expected {size}", small.len());
            }
            if let Some(&v) = small.iter().find(|&&v| v as usize >= info.levels) {
                bail!("a low-res value is {v}, but the model has only {} levels (0..{})", info.levels, info.levels - 1);
            }
            out = super::place_low_res_at(f, c, h, w, small, n);
        }
    }
    let head = match info.head.as_str() {
        "bernoulli" => HeadKind::Bernoulli,
        "softmax" => HeadKind::Softmax,
        other => bail!("the model's head `{other}` is neither bernoulli nor softmax"),
    };
    let per = info.logit_channels() / c.max(1);
    let u = uniforms(n, c, h, w, seed);
    let mut img: Vec<f32> = out.iter().map(|&v| f32::from(v)).collect();
    let total = c * h * w;
    let lc = info.logit_channels();
    let mut lg = vec![0f32; per];
    for r in 0..h {
        for col in 0..w {
            if f > 0 && r % f == 0 && col % f == 0 {
                // A given pixel: kept, not drawn (its uniforms go unused, as in the other
                // samplers).
                continue;
            }
            for ch in 0..c {
                progress((r * w + col) * c + ch, total);
                let logits = model.logits(&img, n, labels)?;
                for b in 0..n {
                    for (l, v) in lg.iter_mut().enumerate() {
                        *v = logits[((b * lc + ch * per + l) * h + r) * w + col];
                    }
                    let i = ((b * c + ch) * h + r) * w + col;
                    let v = draw_scaled(&lg, head, temperature, u[i]);
                    out[i] = v;
                    img[i] = v as f32;
                }
            }
        }
    }
    Ok(out)
}
