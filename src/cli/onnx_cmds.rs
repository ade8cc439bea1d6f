//! ONNX commands (`pixc export`, `pixc eval-onnx`, `pixc onnx-info`, the ONNX half of `pixc bench`
//! and `pixc doctor`): thin wrappers over `backend::onnx` and `runtime` that return reports.
//!
//! Printing and flag parsing stay in `cli/mod.rs`; each function documents the flags it is
//! meant to serve.

use crate::backend::onnx::{self, ExportMeta};
use crate::ir::validate::Model;
use crate::runtime::{self, BenchResult, Device, ModelInfo, OnnxModel, Provider};
use crate::weights::Weights;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `export` wrote.
#[derive(Clone, Debug)]
pub struct ExportReport {
    pub path: PathBuf,
    pub bytes: usize,
    /// Building and serializing the graph (not the write).
    pub seconds: f64,
}

impl std::fmt::Display for ExportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {} ({:.1} MB, exported in {:.2} s)",
            self.path.display(),
            self.bytes as f64 / 1e6,
            self.seconds
        )
    }
}

/// `pixc export SPEC --weights W.safetensors [-o OUT.onnx]`: exports with the spec text as
/// metadata (default OUT: the weights' path with `.onnx`). Writes atomically.
pub fn export(
    model: &Model,
    weights: &Weights,
    spec_text: &str,
    out_path: &Path,
) -> Result<ExportReport> {
    export_with(model, weights, &ExportMeta::new(spec_text), out_path)
}

/// As `export`, with full metadata (spec file name, weights source, extra properties).
pub fn export_with(
    model: &Model,
    weights: &Weights,
    meta: &ExportMeta,
    out_path: &Path,
) -> Result<ExportReport> {
    let t = Instant::now();
    let bytes = onnx::export(model, weights, meta)?;
    let seconds = t.elapsed().as_secs_f64();
    crate::util::write_atomic(out_path, &bytes)
        .with_context(|| format!("writing {}", out_path.display()))?;
    Ok(ExportReport {
        path: out_path.to_path_buf(),
        bytes: bytes.len(),
        seconds,
    })
}

/// What `eval_onnx` measured.
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// Mean NLL per image in nats.
    pub nll_mean: f64,
    /// The same in bits per sub-pixel.
    pub bits_per_dim: f64,
    pub n: usize,
    pub provider: Provider,
    pub seconds: f64,
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} images: NLL {:.3} nats/image, {:.4} bits/dim ({}, {:.1} images/s)",
            self.n,
            self.nll_mean,
            self.bits_per_dim,
            self.provider,
            self.n as f64 / self.seconds.max(1e-9)
        )
    }
}

/// `pixc eval-onnx MODEL.onnx --data SOURCE [--split test] [--limit N] [--device auto|cpu|cuda]
/// [--batch 256]`: mean NLL of `n` images (`n x C x H x W` bytes holding the raw values
/// `0..levels-1`, as the data loaders give them) through ONNX Runtime.
pub fn eval_onnx(
    path: &Path,
    images_u8: &[u8],
    n: usize,
    device: Device,
    batch: usize,
) -> Result<EvalReport> {
    let (mut m, provider) = OnnxModel::load(path, device)?;
    let info = m.info().clone();
    anyhow::ensure!(n > 0, "no images to evaluate");
    anyhow::ensure!(
        images_u8.len() == n * info.dims(),
        "the data has {} values for {n} images, but {} needs {} x {} x {} per image",
        images_u8.len(),
        path.display(),
        info.channels,
        info.height,
        info.width
    );
    if let Some(&bad) = images_u8.iter().find(|&&v| v as usize >= info.levels) {
        anyhow::bail!(
            "the data holds value {bad}, but {} models {} levels (0..{}); binarize the data or use a model with more levels",
            path.display(),
            info.levels,
            info.levels - 1
        );
    }
    let t = Instant::now();
    let d = info.dims();
    let batch = batch.max(1);
    let mut total = 0f64;
    for start in (0..n).step_by(batch) {
        let k = batch.min(n - start);
        let x = runtime::images_to_f32(&images_u8[start * d..(start + k) * d]);
        total += m.nll(&x, k)?.iter().map(|&v| v as f64).sum::<f64>();
    }
    let seconds = t.elapsed().as_secs_f64();
    let nll_mean = total / n as f64;
    Ok(EvalReport {
        nll_mean,
        bits_per_dim: nll_mean / (d as f64 * std::f64::consts::LN_2),
        n,
        provider,
        seconds,
    })
}

/// `pixc onnx-info MODEL.onnx [--device ...]`: the metadata a pixc ONNX file carries and the
/// provider it would run on.
pub fn onnx_info(path: &Path, device: Device) -> Result<(ModelInfo, Provider)> {
    let (m, provider) = OnnxModel::load(path, device)?;
    Ok((m.info().clone(), provider))
}

/// `pixc bench SPEC --onnx [--batch 16,256] [--iters 20] [--device ...]`: one result per batch
/// size (weights from `Weights::init(model, 0)` unless given).
pub fn bench(
    model: &Model,
    weights: &Weights,
    batches: &[usize],
    iters: usize,
    device: Device,
) -> Result<Vec<BenchResult>> {
    batches
        .iter()
        .map(|&b| {
            runtime::bench_onnx(model, weights, b, iters, device).map_err(anyhow::Error::from)
        })
        .collect()
}

/// `pixc doctor`: lines about ONNX Runtime (library, version, providers, CUDA libraries).
pub fn doctor_lines() -> Vec<String> {
    let mut lines = Vec::new();
    match runtime::dylib_path() {
        Ok(p) => lines.push(format!("onnxruntime library: {}", p.display())),
        Err(e) => {
            lines.push(format!("onnxruntime library: {e}"));
            return lines;
        }
    }
    let (version, providers) = runtime::version_and_providers();
    lines.push(format!("onnxruntime version: {version}"));
    lines.push(format!("onnxruntime providers: {}", providers.join(", ")));
    lines
}
