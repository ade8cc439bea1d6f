//! `pixc train`, `pixc eval` and `pixc doctor`.

use crate::device::Device;
use crate::train::{self, run_dir, EvalSplit, TrainOptions};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// `pixc train SPEC_OR_RUN [--out RUN]`: `opts.out` is filled in here (the default run
/// folder needs the model's name).
pub fn train(spec_or_run: &Path, out: Option<PathBuf>, mut opts: TrainOptions) -> Result<i32> {
    let (spec_path, out) = run_dir::locate(spec_or_run, out.as_deref(), opts.resume)?;
    let (spec, model, _) = crate::compile_file(&spec_path)?;
    opts.out = out.unwrap_or_else(|| {
        run_dir::default_out(Path::new(run_dir::RUNS), &model.graph().name, opts.resume)
    });
    if !opts.json {
        let im = model.graph().image;
        let small = model
            .small()
            .map(|s| {
                let si = s.graph().image;
                format!(
                    "; multi-scale, with a {}x{} small model of {} parameters",
                    si.height,
                    si.width,
                    s.shapes().total_params()
                )
            })
            .unwrap_or_default();
        eprintln!(
            "training {} ({} parameters, {}x{}x{}, {} levels{small}) -> {}",
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
        if let Some(s) = &rep.small {
            if let Some(b) = s.best_valid {
                println!(
                    "small model (multi-scale, {}): best validation NLL {b:.4} {}",
                    s.out, s.unit
                );
            }
        }
        if let Some(b) = rep.best_valid {
            println!("best validation NLL: {b:.4} {}", rep.unit);
        }
        eprintln!(
            "next: pixc eval {} --split test",
            crate::shell::quote(Path::new(&rep.out))
        );
    }
    Ok(train::signals::exit_code(&rep.stopped_by).unwrap_or(0))
}

/// The images `pixc eval RUN` scores, from its flags.
pub fn eval_selection(
    stride: usize,
    limit: Option<usize>,
    binarization: &str,
    seed: Option<u64>,
) -> Result<train::EvalSelection> {
    let rebinarize = match (binarization, seed) {
        ("dynamic", seed) => Some(seed.unwrap_or(0)),
        (_, Some(_)) => {
            return Err(crate::usage::usage(
                "--seed draws a dynamic binarization: add `--binarization dynamic`",
            ))
        }
        _ => None,
    };
    Ok(train::EvalSelection {
        stride,
        limit,
        rebinarize,
        marginal: false,
    })
}

pub fn eval(
    dir: &Path,
    split: &str,
    sel: &train::EvalSelection,
    device: Device,
    json: bool,
) -> Result<i32> {
    let split = match split {
        "test" => EvalSplit::Test,
        _ => EvalSplit::Valid,
    };
    let r = train::eval_run_with(dir, split, sel, device, None, &mut eval_progress(json))?;
    if sel.is_whole_split() {
        // A whole-split score is kept for `pixc runs`; a read-only run folder only warns.
        if let Err(e) = crate::app::runs::record_eval(dir, &r) {
            eprintln!("warning: {e:#}");
        }
    }
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let nats = super::nats_aside(&r.unit, r.nats_per_image);
        let every = crate::data::every_note(r.stride);
        println!(
            "{} NLL: {:.4} ± {:.4} {}{nats} over {} images{every}, checkpoint step {}",
            r.split, r.nll, r.std_error, r.unit, r.images, r.step
        );
        match r.binarization.as_str() {
            "none" => println!("data: {}", r.data),
            b => println!("data: {}, {b} binarization", r.data),
        }
        if let Some(l) = &r.labels {
            println!("class-conditional: {l}");
        }
        for (p, what) in r.parts.iter().zip([
            "small model (the low-res subsample)",
            "conditional model (the rest, given it)",
        ]) {
            println!(
                "  {what}: {:.4} ± {:.4} {} ({:.3} nats/image), checkpoint step {}",
                p.nll, p.std_error, p.unit, p.nats_per_image, p.step
            );
        }
    }
    Ok(0)
}

/// What `pixc eval` shows while it scores: a bar on a terminal, else a plain line every
/// few seconds (nothing with --json, whose stdout is for the report).
fn eval_progress(json: bool) -> impl FnMut(usize, usize) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} images  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut ticker =
        (bar.is_hidden() && !json).then(|| train::progress::Ticker::new(train::progress::EVERY));
    let t0 = std::time::Instant::now();
    move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if done >= total {
            bar.finish_and_clear();
        }
        if ticker.as_mut().is_some_and(|t| t.due()) && done < total {
            let rate = done as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "eval {done}/{total} images  {rate:.0} img/s  eta {}",
                train::progress::human((total - done) as f64 / rate)
            );
        }
    }
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
        Some(v) => {
            let providers: Vec<String> = r
                .onnxruntime_provider_status
                .iter()
                .map(|p| {
                    let name = &p.name;
                    match (p.used_by_pixc, p.library_installed) {
                        (_, Some(false)) => {
                            format!("{name} (built in, but its library is not installed)")
                        }
                        (false, _) => format!("{name} (not used by pixc)"),
                        (true, _) => name.clone(),
                    }
                })
                .collect();
            println!("ONNX Runtime  {v}, providers: {}", providers.join(", "))
        }
        None => println!(
            "ONNX Runtime  not found: {}",
            r.onnxruntime_error.clone().unwrap_or_default()
        ),
    }
    println!("data sets:");
    for d in &r.datasets {
        match &d.path {
            Some(p) => println!("  {:<26} {p}", d.name),
            None => println!(
                "  {:<26} missing: {}",
                d.name,
                d.fix.clone().unwrap_or_default()
            ),
        }
    }
    Ok(0)
}
