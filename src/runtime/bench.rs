//! A micro benchmark of ONNX export and ONNX Runtime NLL evaluation, for `pixc bench`.

use super::{Device, OnnxModel, Provider, RuntimeError};
use crate::backend::onnx::{export, ExportMeta};
use crate::ir::validate::Model;
use crate::weights::Weights;
use rand::{Rng, SeedableRng};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct BenchResult {
    /// Wall time of `backend::onnx::export` (IR -> serialized bytes).
    pub export_seconds: f64,
    pub file_bytes: usize,
    /// Session creation (graph optimisation included).
    pub load_seconds: f64,
    pub provider: Provider,
    pub batch: usize,
    pub iters: usize,
    /// Images per second of NLL evaluation at `batch`, after one warm-up run.
    pub images_per_sec: f64,
}

/// Exports `model`, loads it on `device` and times `iters` NLL runs of `batch` random
/// images (uniform over the levels; the content does not change the work done).
pub fn bench_onnx(
    model: &Model,
    weights: &Weights,
    batch: usize,
    iters: usize,
    device: Device,
) -> Result<BenchResult, RuntimeError> {
    let t = Instant::now();
    let bytes = export(model, weights, &ExportMeta::new("(pixc bench)"))?;
    let export_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (mut m, provider) = OnnxModel::from_bytes(&bytes, device, "(bench model)")?;
    let load_seconds = t.elapsed().as_secs_f64();
    let im = model.graph().image;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let batch = batch.max(1);
    let images: Vec<f32> = (0..batch * im.dims())
        .map(|_| rng.random_range(0..im.levels) as f32)
        .collect();
    m.nll(&images, batch)?;
    let iters = iters.max(1);
    let t = Instant::now();
    for _ in 0..iters {
        m.nll(&images, batch)?;
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(BenchResult {
        export_seconds,
        file_bytes: bytes.len(),
        load_seconds,
        provider,
        batch,
        iters,
        images_per_sec: (batch * iters) as f64 / secs,
    })
}
