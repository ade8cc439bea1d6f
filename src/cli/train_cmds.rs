//! `pixc train`, `pixc eval` and `pixc doctor`.

use crate::backend::torch::{self, DeviceChoice};
use crate::train::{self, EvalSplit, TrainOptions};
use anyhow::Result;
use std::path::Path;

pub fn train(spec_path: &Path, mut opts: TrainOptions) -> Result<i32> {
    let (spec, model, _) = crate::compile_file(spec_path)?;
    if opts.out.as_os_str().is_empty() {
        opts.out = Path::new("runs").join(&model.graph().name);
    }
    if !opts.json {
        let im = model.graph().image;
        eprintln!(
            "training {} ({} parameters, {}x{}x{}, {} levels) -> {}",
            model.graph().name,
            model.shapes().total_params(),
            im.channels,
            im.height,
            im.width,
            im.levels,
            opts.out.display()
        );
    }
    let rep = train::train(&spec, &model, &opts)?;
    if opts.json {
        println!("{}", serde_json::to_string(&rep)?);
    } else {
        eprintln!(
            "done: {} steps ({:.2} epochs) in {:.0} s on {}, {:.1} images/s, stopped by {}",
            rep.steps,
            rep.epochs_done,
            rep.seconds,
            rep.device,
            rep.images_per_second,
            rep.stopped_by
        );
        if let Some(b) = rep.best_valid {
            println!("best validation NLL: {b:.4} {}", rep.unit);
        }
        eprintln!("next: pixc eval {} --split test", rep.out);
    }
    Ok(if rep.stopped_by == "interrupt" {
        130
    } else {
        0
    })
}

pub fn eval(
    dir: &Path,
    split: &str,
    limit: Option<usize>,
    device: DeviceChoice,
    json: bool,
) -> Result<i32> {
    let split = match split {
        "test" => EvalSplit::Test,
        _ => EvalSplit::Valid,
    };
    let r = train::eval_run(dir, split, limit, device, None)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} NLL: {:.4} {} ({:.3} nats/image) over {} images, checkpoint step {}",
            r.split, r.nll, r.unit, r.nats_per_image, r.images, r.step
        );
        println!("data: {}", r.data);
    }
    Ok(0)
}

pub fn doctor(json: bool) -> Result<i32> {
    let cuda = tch::Cuda::is_available();
    let devices = if cuda { tch::Cuda::device_count() } else { 0 };
    let gpu_name = if cuda { gpu_name() } else { None };
    let (ort_version, providers, ort_error) = match crate::runtime::dylib_path() {
        Ok(_) => {
            let (v, p) = crate::runtime::version_and_providers();
            (Some(v), p, None)
        }
        Err(e) => (None, vec![], Some(e.to_string())),
    };
    let data = crate::data::find_datasets(&Default::default());
    let threads = torch::threads();
    if json {
        let ds: Vec<_> = data
            .iter()
            .map(|(n, p)| serde_json::json!({"name": n, "path": p.as_ref().map(|p| p.display().to_string())}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "pixc": env!("CARGO_PKG_VERSION"),
                "libtorch": env!("PIXC_LIBTORCH_VERSION"),
                "libtorch_path": env!("PIXC_LIBTORCH_LIB"),
                "torch_threads": threads,
                "cuda_available": cuda,
                "cuda_devices": devices,
                "cuda_device_name": gpu_name,
                "onnxruntime": ort_version,
                "onnxruntime_providers": providers,
                "onnxruntime_error": ort_error,
                "datasets": ds,
            })
        );
        return Ok(0);
    }
    println!("pixc          {}", env!("CARGO_PKG_VERSION"));
    println!(
        "libtorch      {} ({})",
        env!("PIXC_LIBTORCH_VERSION"),
        env!("PIXC_LIBTORCH_LIB")
    );
    println!("threads       {threads}");
    match (cuda, gpu_name) {
        (true, Some(n)) => println!("CUDA          available: {devices} device(s), {n}"),
        (true, None) => println!("CUDA          available: {devices} device(s)"),
        (false, _) => {
            println!("CUDA          not available (training and inference run on the CPU)")
        }
    }
    match ort_version {
        Some(v) => println!("ONNX Runtime  {v}, providers: {}", providers.join(", ")),
        None => println!("ONNX Runtime  not found: {}", ort_error.unwrap_or_default()),
    }
    println!("data sets:");
    for (n, p) in data {
        match p {
            Some(p) => println!("  {n:<26} {}", p.display()),
            None => println!("  {n:<26} missing"),
        }
    }
    let _ = torch::device_name(tch::Device::Cpu);
    Ok(0)
}

/// The GPU's marketing name via nvidia-smi, when present (libtorch's C API does not expose it).
fn gpu_name() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}
