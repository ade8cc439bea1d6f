//! `pixc export --onnx`, `pixc eval --onnx` and `pixc verify`: printing the reports of
//! `app::deploy`.

use crate::app::deploy;
use crate::device::Device;
use anyhow::Result;
use serde_json::json;
use std::path::Path;

pub fn export(target: &Path, out: Option<&Path>, seed: u64, json_out: bool) -> Result<i32> {
    let (rep, src) = deploy::export_target(target, out, seed)?;
    if json_out {
        println!(
            "{}",
            json!({"path": rep.path.display().to_string(), "bytes": rep.bytes, "seconds": rep.seconds, "source": src.what})
        );
    } else {
        let im = src.model.graph().image;
        println!("{rep}");
        println!(
            "inputs:  image float32 [batch, {}, {}, {}] raw values 0..{} (scaled inside the graph)",
            im.channels,
            im.height,
            im.width,
            im.levels - 1
        );
        if im.classes > 0 {
            println!(
                "         label int64 [batch] class of each image, 0..{}",
                im.classes - 1
            );
        }
        if let Some(l) = im.low_res {
            println!(
                "         low_res float32 [batch, {}, {}, {}] the given pixels x[:, :, ::{f}, ::{f}], raw values",
                im.channels,
                im.height / l.factor,
                im.width / l.factor,
                f = l.factor
            );
        }
        println!("outputs: logits, nll [batch] (nats per image)");
        if src.model.small().is_some() && target.is_dir() {
            println!(
                "note: this is the multi-scale model's conditional part; export {} for its small model",
                target.join("small").display()
            );
        }
    }
    Ok(0)
}

pub fn eval_onnx(
    path: &Path,
    data: Option<&str>,
    split: &str,
    stride: usize,
    limit: Option<usize>,
    device: Device,
    json_out: bool,
) -> Result<i32> {
    let e = deploy::eval_onnx_data(path, data, split, stride, limit, device)?;
    let r = &e.report;
    eprintln!("ONNX Runtime provider: {}", r.provider);
    let (value, unit) = if e.info.levels == 2 {
        (r.nll_mean, "nats/image")
    } else {
        (r.bits_per_dim, "bits/dim")
    };
    let what = &e.data;
    if json_out {
        println!(
            "{}",
            json!({"nll": value, "unit": unit, "nats_per_image": r.nll_mean, "images": r.n, "stride": stride, "split": split, "data": what, "provider": r.provider.to_string(), "images_per_second": r.n as f64 / r.seconds.max(1e-9)})
        );
    } else {
        let nats = super::nats_aside(unit, r.nll_mean);
        println!(
            "{split} NLL (ONNX Runtime): {value:.4} {unit}{nats} over {} images of {what}",
            r.n
        );
        println!("{r}");
    }
    Ok(0)
}

pub fn verify(
    target: &Path,
    device: Device,
    images: usize,
    seed: u64,
    json_out: bool,
) -> Result<i32> {
    let r = deploy::verify(target, device, images, seed)?;
    let (n, what) = (r.images, &r.data);
    let (max_logit, max_nll, ok) = (r.max_abs_logit_diff, r.max_abs_nll_diff_nats, r.ok());
    if json_out {
        println!(
            "{}",
            json!({"source": r.source, "images": n, "data": what, "torch_device": r.torch_device, "ort_provider": r.provider.to_string(), "max_abs_logit_diff": max_logit, "max_abs_nll_diff_nats": max_nll, "ok": ok})
        );
    } else {
        println!(
            "verify {}: libtorch ({}) vs ONNX Runtime ({}) on {n} {what}",
            r.source, r.torch_device, r.provider
        );
        println!("  max |logit difference|      {max_logit:.3e}  (limit 1e-4)");
        println!("  max |NLL difference| nats   {max_nll:.3e}  (limit 1e-3)");
        println!("  {}", if ok { "OK" } else { "MISMATCH" });
    }
    Ok(if ok { 0 } else { 1 })
}
