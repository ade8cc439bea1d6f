//! `pixc train`, `pixc eval` and `pixc doctor`.

use crate::device::Device;
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
    device: Device,
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
    let r = crate::app::doctor::doctor();
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(0);
    }
    println!("pixc          {}", r.pixc);
    println!("libtorch      {} ({})", r.libtorch, r.libtorch_path);
    println!("threads       {}", r.torch_threads);
    let devices = r.cuda_devices;
    match (r.cuda_available, &r.cuda_device_name) {
        (true, Some(n)) => println!("CUDA          available: {devices} device(s), {n}"),
        (true, None) => println!("CUDA          available: {devices} device(s)"),
        (false, _) => {
            println!("CUDA          not available (training and inference run on the CPU)")
        }
    }
    match &r.onnxruntime {
        Some(v) => println!(
            "ONNX Runtime  {v}, providers: {}",
            r.onnxruntime_providers.join(", ")
        ),
        None => println!(
            "ONNX Runtime  not found: {}",
            r.onnxruntime_error.clone().unwrap_or_default()
        ),
    }
    println!("data sets:");
    for d in &r.datasets {
        match &d.path {
            Some(p) => println!("  {:<26} {p}", d.name),
            None => println!("  {:<26} missing", d.name),
        }
    }
    Ok(0)
}
