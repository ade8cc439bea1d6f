//! Sampling an exported model with ONNX Runtime: the reference method (one full run per
//! sub-pixel), the same uniforms and draws as the libtorch samplers.

use super::{check_request, draw_scaled, uniforms};
use crate::ir::HeadKind;
use crate::runtime::OnnxModel;
use anyhow::{bail, Result};

/// Draws `n` images from a loaded pixc ONNX model.
pub fn sample_onnx(
    model: &mut OnnxModel,
    n: usize,
    seed: u64,
    temperature: f64,
    labels: Option<&[u16]>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<u8>> {
    check_request(n, temperature)?;
    let info = model.info().clone();
    super::check_labels(info.classes, n, labels)?;
    if info.low_res > 0 {
        bail!(
            "the model draws an image given its low-res subsample (rows and columns divisible by {}), which sampling an ONNX file does not take yet: sample the run with `pixc sample RUN`, which takes the test set's low-res images",
            info.low_res
        );
    }
    let head = match info.head.as_str() {
        "bernoulli" => HeadKind::Bernoulli,
        "softmax" => HeadKind::Softmax,
        other => bail!("the model's head `{other}` is neither bernoulli nor softmax"),
    };
    let (c, h, w) = (info.channels, info.height, info.width);
    let per = info.logit_channels() / c.max(1);
    let u = uniforms(n, c, h, w, seed);
    let mut img = vec![0f32; n * c * h * w];
    let mut out = vec![0u8; n * c * h * w];
    let total = c * h * w;
    let lc = info.logit_channels();
    let mut lg = vec![0f32; per];
    for r in 0..h {
        for col in 0..w {
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
