//! `pixc export --onnx`, `pixc eval --onnx` and `pixc verify`: shipping a model and
//! checking that ONNX Runtime computes what libtorch computes.

use super::onnx_cmds;
use crate::backend::onnx::ExportMeta;
use crate::backend::torch::{self, DeviceChoice, TorchModel};
use crate::ir::validate::Model;
use crate::runtime::{self, Device, OnnxModel};
use crate::spec::ast::Spec;
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

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

fn device_for_ort(d: DeviceChoice) -> Device {
    match d {
        DeviceChoice::Auto => Device::Auto,
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Cuda => Device::Cuda,
    }
}

pub fn export(target: &Path, out: Option<&Path>, seed: u64, json_out: bool) -> Result<i32> {
    let src = load_source(target, seed)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or(src.default_out.clone());
    let mut meta = ExportMeta::new(src.spec_text.clone());
    meta.spec_name = Some(src.model.graph().name.clone());
    meta.weights_source = Some(src.what.clone());
    let rep = onnx_cmds::export_with(&src.model, &src.weights, &meta, &out)?;
    if json_out {
        println!(
            "{}",
            json!({"path": rep.path.display().to_string(), "bytes": rep.bytes, "seconds": rep.seconds, "source": src.what})
        );
    } else {
        println!("{rep}");
        println!(
            "inputs:  image float32 [batch, {}, {}, {}] raw values 0..{} (scaled inside the graph)",
            src.model.graph().image.channels,
            src.model.graph().image.height,
            src.model.graph().image.width,
            src.model.graph().image.levels - 1
        );
        println!("outputs: logits, nll [batch] (nats per image)");
    }
    Ok(0)
}

/// Images to score: the split of the data set the ONNX file's spec names, or `--data`.
fn data_images(
    spec_text: Option<&str>,
    data: Option<&str>,
    split: &str,
    limit: Option<usize>,
    want: (usize, usize, usize, usize),
) -> Result<(Vec<u8>, usize, String)> {
    let name = match (data, spec_text) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => crate::spec::parse(t, crate::spec::Syntax::Yaml)
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
    let sp = if split == "test" { ds.test } else { ds.valid };
    let n = sp.n.min(limit.unwrap_or(usize::MAX));
    let size = want.0 * want.1 * want.2;
    Ok((
        sp.images[..n * size].to_vec(),
        n,
        format!("{} {split}", ds.name),
    ))
}

pub fn eval_onnx(
    path: &Path,
    data: Option<&str>,
    split: &str,
    limit: Option<usize>,
    device: DeviceChoice,
    json_out: bool,
) -> Result<i32> {
    let (m, provider) = OnnxModel::load(path, device_for_ort(device))?;
    let info = m.info().clone();
    drop(m);
    eprintln!("ONNX Runtime provider: {provider}");
    let (imgs, n, what) = data_images(
        info.spec_text.as_deref(),
        data,
        split,
        limit,
        (info.channels, info.height, info.width, info.levels),
    )?;
    let r = onnx_cmds::eval_onnx(path, &imgs, n, device_for_ort(device), 256)?;
    let (value, unit) = if info.levels == 2 {
        (r.nll_mean, "nats/image")
    } else {
        (r.bits_per_dim, "bits/dim")
    };
    if json_out {
        println!(
            "{}",
            json!({"nll": value, "unit": unit, "nats_per_image": r.nll_mean, "images": r.n, "split": split, "data": what, "provider": r.provider.to_string(), "images_per_second": r.n as f64 / r.seconds.max(1e-9)})
        );
    } else {
        println!("{split} NLL (ONNX Runtime): {value:.4} {unit} ({:.3} nats/image) over {} images of {what}", r.nll_mean, r.n);
        println!("{r}");
    }
    Ok(0)
}

/// Largest |a - b|.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

/// Runs libtorch and ONNX Runtime on the same images and compares logits and NLL.
pub fn verify(
    target: &Path,
    device: DeviceChoice,
    images: usize,
    seed: u64,
    json_out: bool,
) -> Result<i32> {
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
    let (mut ort, provider) =
        OnnxModel::from_bytes(&bytes, device_for_ort(device), &src.model.graph().name)?;
    // Real images when the spec's data set is available, else seeded random ones.
    let want = (im.channels, im.height, im.width, im.levels);
    let (imgs, n, what) = match data_images(Some(&src.spec_text), None, "test", Some(images), want)
    {
        Ok(v) => v,
        Err(_) => {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let v: Vec<u8> = (0..images * im.dims())
                .map(|_| rng.random_range(0..im.levels) as u8)
                .collect();
            (v, images, "random images".to_string())
        }
    };
    let mut max_logit = 0.0f64;
    let mut max_nll = 0.0f64;
    let d = im.dims();
    for start in (0..n).step_by(16) {
        let k = 16.min(n - start);
        let chunk = &imgs[start * d..(start + k) * d];
        let x = tm.images_to_tensor(chunk, k);
        let (tl, tn) = tch::no_grad(|| {
            let l = tm.forward(&x);
            let nl = tm.nll_from_logits(&l, &x);
            (l, nl)
        });
        let to_vec = torch::to_vec_f32;
        let out = ort.run(&runtime::images_to_f32(chunk), k)?;
        max_logit = max_logit.max(max_abs_diff(&to_vec(&tl), &out.logits));
        max_nll = max_nll.max(max_abs_diff(&to_vec(&tn), &out.nll));
    }
    let ok = max_logit <= 1e-4 && max_nll <= 1e-3;
    if json_out {
        println!(
            "{}",
            json!({"source": src.what, "images": n, "data": what, "torch_device": torch::device_name(dev), "ort_provider": provider.to_string(), "max_abs_logit_diff": max_logit, "max_abs_nll_diff_nats": max_nll, "ok": ok})
        );
    } else {
        println!(
            "verify {}: libtorch ({}) vs ONNX Runtime ({provider}) on {n} {what}",
            src.what,
            torch::device_name(dev)
        );
        println!("  max |logit difference|      {max_logit:.3e}  (limit 1e-4)");
        println!("  max |NLL difference| nats   {max_nll:.3e}  (limit 1e-3)");
        println!("  {}", if ok { "OK" } else { "MISMATCH" });
    }
    let _ = &src.spec;
    Ok(if ok { 0 } else { 1 })
}
