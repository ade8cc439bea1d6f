//! Shipping a model: `pixc export --onnx`, `pixc eval --onnx`, `pixc verify` (ONNX Runtime
//! against libtorch), the ONNX half of `pixc bench --inference` and of `pixc doctor`.
//! Each takes options and returns a report; `cli::deploy_cmds` prints them.

use crate::backend::onnx::{self, ExportMeta};
use crate::backend::torch::{self, tch, TorchModel};
use crate::device::Device;
use crate::front::ast::Spec;
use crate::ir::validate::Model;
use crate::runtime::{self, ModelInfo, OnnxModel, Provider};
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
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

/// Exports with the spec text as metadata. Writes atomically.
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

/// Mean NLL of `n` images (`n x C x H x W` bytes holding the raw values
/// `0..levels-1`, as the data loaders give them) through ONNX Runtime; `labels`: a
/// class-conditional model's label of each image.
pub fn eval_onnx(
    path: &Path,
    images_u8: &[u8],
    n: usize,
    labels: Option<&[u16]>,
    device: Device,
    batch: usize,
) -> Result<EvalReport> {
    let (mut m, provider) = OnnxModel::load(path, device)?;
    eval_loaded(&mut m, provider, path, images_u8, n, labels, batch)
}

/// `eval_onnx` on a model already loaded (`path` names it in errors): a caller that
/// has read the metadata first does not set up the sessions twice.
fn eval_loaded(
    m: &mut OnnxModel,
    provider: Provider,
    path: &Path,
    images_u8: &[u8],
    n: usize,
    labels: Option<&[u16]>,
    batch: usize,
) -> Result<EvalReport> {
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
        let y = labels.map(|l| &l[start..start + k]);
        total += m.nll(&x, k, y)?.iter().map(|&v| v as f64).sum::<f64>();
    }
    let seconds = t.elapsed().as_secs_f64();
    let nll_mean = total / n as f64;
    Ok(EvalReport {
        nll_mean,
        bits_per_dim: nll_mean / (info.scored_dims() as f64 * std::f64::consts::LN_2),
        n,
        provider,
        seconds,
    })
}

/// The metadata a pixc ONNX file carries and the
/// provider it would run on.
pub fn onnx_info(path: &Path, device: Device) -> Result<(ModelInfo, Provider)> {
    let (m, provider) = OnnxModel::load(path, device)?;
    Ok((m.info().clone(), provider))
}

/// `pixc bench --inference [SPECS] [--batches 16,256]`: per spec, the ONNX export time
/// and file size, then images/s of NLL evaluation at each batch size through
/// - libtorch as pixc runs it (on the CPU, the fused recurrence kernels),
/// - libtorch with plain ops (what the exported ONNX graph computes, op for op),
/// - ONNX Runtime,
///
/// all on the same random images and seeded weights, and the cached sampler drawing as
/// many images. Each batch size is measured in `rounds` rounds, every path for `seconds`
/// in turn within a round: a figure is the median over the rounds, and a ratio (ONNX
/// Runtime or the sampler to libtorch) the median of the ratios within each round, with
/// their range. A shared machine's speed drifts by tens of percent over a minute, which
/// measuring each path once, one after another, put straight into the ratio. With
/// `export_only`, only the export figures (for the large specs, whose inference would
/// take minutes here).
pub fn bench_inference(
    spec_path: &Path,
    batches: &[usize],
    (seconds, rounds): (f64, usize),
    device: Device,
    export_only: bool,
) -> Result<serde_json::Value> {
    let (_, model, _) = crate::compile_file(spec_path)?;
    let weights = Weights::init(&model, 0);
    let meta = ExportMeta::new("(pixc bench)");
    // Export: best of three (the first pays for page faults of a new process).
    let mut export_s = f64::INFINITY;
    let mut bytes = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        bytes = onnx::export(&model, &weights, &meta)?;
        export_s = export_s.min(t.elapsed().as_secs_f64());
    }
    let mut out = serde_json::json!({
        "spec": spec_path.display().to_string(),
        "model": model.graph().name,
        "params": model.shapes().total_params(),
        "export_seconds": export_s,
        "onnx_bytes": bytes.len(),
    });
    if export_only {
        return Ok(out);
    }
    let dev = torch::resolve_device(device)?;
    let ort_dev = match dev {
        tch::Device::Cpu => Device::Cpu,
        _ => Device::Cuda,
    };
    let (mut ort, provider) = OnnxModel::from_bytes(&bytes, ort_dev, "(bench model)")?;
    let mut fused = TorchModel::new(&model, &weights, dev)?;
    fused.set_fused(true);
    let mut plain = TorchModel::new(&model, &weights, dev)?;
    plain.set_fused(false);
    let im = model.graph().image;
    let cached = crate::backend::cached::CachedModel::new(&model, &weights)?;
    let mut rows = Vec::new();
    for &batch in batches {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(batch as u64);
        let raw: Vec<u8> = (0..batch * im.dims())
            .map(|_| rng.random_range(0..im.levels) as u8)
            .collect();
        let as_f32: Vec<f32> = raw.iter().map(|&v| v as f32).collect();
        let labels =
            crate::sample::cycle_labels(im.classes, batch).map(|l| TorchModel::labels_tensor(&l));
        // Each path's first call in the first round is a warm-up, not timed.
        let torch_rate = |tm: &TorchModel, warm: bool| -> Result<(f64, f64)> {
            tm.apply_thread_policy();
            let x = tm.images_to_tensor(&raw, batch);
            let mut nll = 0.0;
            let r = rate(batch, seconds, warm, || {
                nll = tch::no_grad(|| {
                    f64::try_from(tm.nll_labeled(&x, labels.as_ref()).mean(tch::Kind::Double))
                })?;
                Ok(())
            })?;
            Ok((r, nll))
        };
        // The cached sampler drawing `batch` images on the same threads (CPU only): drawing
        // an image is the arithmetic of scoring it, so `pixc eval`'s rate is its limit.
        let u = crate::sample::uniforms(batch, im.channels, im.height, im.width, 0);
        let threads = torch::threads();
        let y = crate::sample::cycle_labels(im.classes, batch);
        // Per round: images/s of libtorch (fused, when pixc uses it), plain libtorch,
        // ONNX Runtime and the sampler.
        let mut per_round: Vec<[f64; 4]> = Vec::with_capacity(rounds);
        let (mut fused_nll, mut plain_nll, mut ort_nll) = (None, 0.0, 0.0);
        let fused_on = fused.fused();
        for round in 0..rounds.max(1) {
            let warm = round == 0;
            let fused_rate = if fused_on {
                let (r, n) = torch_rate(&fused, warm)?;
                fused_nll = Some(n);
                r
            } else {
                f64::NAN
            };
            let (plain_rate, n) = torch_rate(&plain, warm)?;
            plain_nll = n;
            let ort_rate = rate(batch, seconds, warm, || {
                let v = ort.nll(&as_f32, batch, y.as_deref())?;
                ort_nll = v.iter().map(|&x| x as f64).sum::<f64>() / batch as f64;
                Ok(())
            })?;
            let sampler_rate = rate(batch, seconds, warm, || {
                let y = y.as_deref();
                cached.sample_with(batch, &u, 1.0, None, y, false, threads, |_, _| {})?;
                Ok(())
            })?;
            per_round.push([fused_rate, plain_rate, ort_rate, sampler_rate]);
        }
        let col = |i: usize| per_round.iter().map(|r| r[i]).collect::<Vec<f64>>();
        let of = |s: &Option<serde_json::Value>, k: &str| s.as_ref().and_then(|s| s[k].as_f64());
        let median = |v: Vec<f64>| of(&crate::app::bench::spread(v), "median").unwrap_or(f64::NAN);
        // libtorch as pixc evaluates (fused when it can), and the faster of its two paths
        // (a NaN fused rate is never the max).
        let li = if fused_on { 0 } else { 1 };
        let eval = |r: &[f64; 4]| r[li];
        let best = |r: &[f64; 4]| r[li].max(r[1]);
        let ratios = |f: &dyn Fn(&[f64; 4]) -> f64| per_round.iter().map(f).collect::<Vec<f64>>();
        let ort_vs = crate::app::bench::spread(ratios(&|r| r[2] / best(r)));
        let sampler_vs = crate::app::bench::spread(ratios(&|r| r[3] / eval(r)));
        rows.push(serde_json::json!({
            "batch": batch,
            "rounds": per_round.len(),
            "libtorch_images_per_second": median(col(li)),
            "libtorch_fused": fused_on,
            "libtorch_plain_images_per_second": median(col(1)),
            "onnxruntime_images_per_second": median(col(2)),
            "onnxruntime_vs_libtorch": of(&ort_vs, "median"),
            "onnxruntime_vs_libtorch_range": [of(&ort_vs, "min"), of(&ort_vs, "max")],
            "onnxruntime_vs_libtorch_plain": median(ratios(&|r| r[2] / r[1])),
            "sampler_images_per_second": median(col(3)),
            "sampler_vs_libtorch": of(&sampler_vs, "median"),
            "sampler_vs_libtorch_range": [of(&sampler_vs, "min"), of(&sampler_vs, "max")],
            "images_per_second_by_round": {
                "libtorch": col(li),
                "libtorch_plain": col(1),
                "onnxruntime": col(2),
                "sampler": col(3),
            },
            "nll_nats_per_image": {"libtorch": fused_nll.unwrap_or(plain_nll), "libtorch_plain": plain_nll, "onnxruntime": ort_nll},
        }));
    }
    out["device"] = serde_json::json!(torch::device_name(dev));
    out["provider"] = serde_json::json!(provider.to_string());
    out["threads"] = serde_json::json!(torch::threads());
    out["batches"] = serde_json::Value::Array(rows);
    Ok(out)
}

/// Images/s of `f` (one batch per call) over about `seconds` (at least one call: plain
/// libtorch takes seconds a call at batch 256, and every round times it again), after one
/// warm-up call when `warm`.
fn rate(batch: usize, seconds: f64, warm: bool, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    if warm {
        f()?;
    }
    let t = Instant::now();
    let mut n = 0usize;
    while n < 1 || (t.elapsed().as_secs_f64() < seconds && n < 100_000) {
        f()?;
        n += 1;
    }
    Ok((n * batch) as f64 / t.elapsed().as_secs_f64())
}

/// A run folder (best checkpoint) or a spec file (seeded initial weights).
pub struct Source {
    pub spec: Spec,
    pub model: Model,
    pub weights: Weights,
    pub spec_text: String,
    pub what: String,
    pub default_out: PathBuf,
}

pub fn load_source(target: &Path, seed: u64) -> Result<Source> {
    if target.is_dir() {
        let (spec, model) = crate::train::checkpoint::load_spec(target)?;
        let (weights, step) = crate::train::checkpoint::best_weights(target, &model)?;
        let spec_text = std::fs::read_to_string(target.join("spec.yaml"))?;
        Ok(Source {
            spec,
            model,
            weights,
            spec_text,
            what: format!("{} (best checkpoint, step {step})", target.display()),
            default_out: target.join("model.onnx"),
        })
    } else {
        let (spec, model, text) = crate::compile_file(target)?;
        let weights = Weights::init(&model, seed);
        Ok(Source {
            spec,
            model,
            weights,
            spec_text: text,
            what: format!("{} (initial weights, seed {seed})", target.display()),
            default_out: target.with_extension("onnx"),
        })
    }
}

/// What `eval_onnx_data` scored: the report, the data it read, the file's metadata.
pub struct OnnxEval {
    pub report: EvalReport,
    pub info: ModelInfo,
    pub data: String,
}

/// `pixc eval --onnx MODEL.onnx [--data D] [--split S] [--stride K] [--limit N]`: every
/// `stride`-th image of the split of the data set the file's spec names (or `data`), at
/// most `limit`, through ONNX Runtime.
pub fn eval_onnx_data(
    path: &Path,
    data: Option<&str>,
    split: &str,
    stride: usize,
    limit: Option<usize>,
    device: Device,
) -> Result<OnnxEval> {
    // One load: its sessions score the data after its metadata has chosen it.
    let (mut m, provider) = OnnxModel::load(path, device)?;
    let info = m.info().clone();
    let DataImages {
        images: imgs,
        n,
        what,
        labels,
    } = data_images(
        info.spec_text.as_deref(),
        data,
        split,
        stride,
        limit,
        (info.channels, info.height, info.width, info.levels),
    )?;
    let labels = (info.classes > 0).then_some(labels).flatten();
    if info.classes > 0 && labels.is_none() {
        bail!(
            "{} is class-conditional, but data set {what} has no labels",
            path.display()
        );
    }
    let report = eval_loaded(&mut m, provider, path, &imgs, n, labels.as_deref(), 256)?;
    Ok(OnnxEval {
        report,
        info,
        data: what,
    })
}

/// `pixc export --onnx (RUN | SPEC) [-o OUT]`: the run's best checkpoint or the spec's
/// seeded weights, with the spec and the weights' source as metadata.
pub fn export_target(
    target: &Path,
    out: Option<&Path>,
    seed: u64,
) -> Result<(ExportReport, Source)> {
    let src = load_source(target, seed)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or(src.default_out.clone());
    let mut meta = ExportMeta::new(src.spec_text.clone());
    meta.spec_name = Some(src.model.graph().name.clone());
    meta.weights_source = Some(src.what.clone());
    let rep = export_with(&src.model, &src.weights, &meta, &out)?;
    Ok((rep, src))
}

/// Images of a data set's split, as `data_images` loads them.
struct DataImages {
    images: Vec<u8>,
    n: usize,
    /// The data set and split, for reports.
    what: String,
    /// Their class labels, when the data set has them.
    labels: Option<Vec<u16>>,
}

/// Images to score: the split of the data set the ONNX file's spec names, or `--data`.
fn data_images(
    spec_text: Option<&str>,
    data: Option<&str>,
    split: &str,
    stride: usize,
    limit: Option<usize>,
    want: (usize, usize, usize, usize),
) -> Result<DataImages> {
    let name = match (data, spec_text) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => crate::front::parse(t, crate::front::Syntax::Yaml)
            .ok()
            .and_then(|s| s.train.map(|t| t.data))
            .unwrap_or_else(|| "mnist-binarized".into()),
        (None, None) => "mnist-binarized".into(),
    };
    let src = crate::data::DataSource::parse(&name)?;
    let ds = crate::data::load(
        &src,
        &crate::data::LoadOptions {
            png_size: Some((want.0, want.1, want.2)),
            ..Default::default()
        },
    )?;
    if (ds.channels, ds.height, ds.width, ds.levels) != want {
        bail!(
            "data set {} has {}x{}x{} images with {} levels; the model needs {}x{}x{} with {}",
            ds.name,
            ds.channels,
            ds.height,
            ds.width,
            ds.levels,
            want.0,
            want.1,
            want.2,
            want.3
        );
    }
    let sp = if split == "test" { &ds.test } else { &ds.valid };
    let sp = sp.every(want.0 * want.1 * want.2, stride, limit);
    Ok(DataImages {
        images: sp.images,
        n: sp.n,
        what: format!("{} {split}{}", ds.name, crate::data::every_note(stride)),
        labels: sp.labels,
    })
}

/// Largest |a - b|.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

/// What `verify` compared.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    pub source: String,
    pub images: usize,
    pub data: String,
    pub torch_device: String,
    pub provider: Provider,
    pub max_abs_logit_diff: f64,
    pub max_abs_nll_diff_nats: f64,
}

impl VerifyReport {
    /// Within the limits: logits 1e-4, NLL 1e-3 nats per image.
    pub fn ok(&self) -> bool {
        self.max_abs_logit_diff <= 1e-4 && self.max_abs_nll_diff_nats <= 1e-3
    }
}

/// Runs libtorch and ONNX Runtime on the same images and compares logits and NLL.
pub fn verify(target: &Path, device: Device, images: usize, seed: u64) -> Result<VerifyReport> {
    let src = load_source(target, seed)?;
    let im = src.model.graph().image;
    torch::set_threads(None);
    let dev = torch::resolve_device(device)?;
    let tm = TorchModel::new(&src.model, &src.weights, dev)?;
    let bytes = crate::backend::onnx::export(
        &src.model,
        &src.weights,
        &ExportMeta::new(src.spec_text.clone()),
    )
    .context("exporting to ONNX")?;
    let (mut ort, provider) = OnnxModel::from_bytes(&bytes, device, &src.model.graph().name)?;
    // Real images when the spec's data set is available, else seeded random ones.
    let want = (im.channels, im.height, im.width, im.levels);
    let DataImages {
        images: imgs,
        n,
        what,
        labels,
    } = match data_images(Some(&src.spec_text), None, "test", 1, Some(images), want) {
        Ok(v) => v,
        Err(_) => {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            DataImages {
                images: (0..images * im.dims())
                    .map(|_| rng.random_range(0..im.levels) as u8)
                    .collect(),
                n: images,
                what: "random images".to_string(),
                labels: None,
            }
        }
    };
    // A conditional model is compared on the data's labels, else on every class in turn.
    let labels = match (im.classes, labels) {
        (0, _) => None,
        (_, Some(l)) => Some(l),
        (k, None) => crate::sample::cycle_labels(k, n),
    };
    let mut max_logit = 0.0f64;
    let mut max_nll = 0.0f64;
    let d = im.dims();
    for start in (0..n).step_by(16) {
        let k = 16.min(n - start);
        let chunk = &imgs[start * d..(start + k) * d];
        let x = tm.images_to_tensor(chunk, k);
        let y = labels.as_ref().map(|l| &l[start..start + k]);
        let yt = y.map(TorchModel::labels_tensor);
        let (tl, tn) = tch::no_grad(|| {
            let l = tm.forward_labeled(&x, yt.as_ref());
            let nl = tm.nll_from_logits(&l, &x);
            (l, nl)
        });
        let to_vec = torch::to_vec_f32;
        let out = ort.run(&runtime::images_to_f32(chunk), k, y)?;
        max_logit = max_logit.max(max_abs_diff(&to_vec(&tl), &out.logits));
        max_nll = max_nll.max(max_abs_diff(&to_vec(&tn), &out.nll));
    }
    Ok(VerifyReport {
        source: src.what,
        images: n,
        data: what,
        torch_device: torch::device_name(dev),
        provider,
        max_abs_logit_diff: max_logit,
        max_abs_nll_diff_nats: max_nll,
    })
}
