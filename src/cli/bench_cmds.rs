//! `pixc bench` and `pixc bench-one`: printing the rows `app::bench` measures.

use crate::app::bench;
use crate::device::Device;
use anyhow::Result;
use serde_json::Value;
use std::path::PathBuf;

pub use bench::DEFAULT_SPECS;

pub fn bench_one(
    spec: &std::path::Path,
    batch: usize,
    seconds: f64,
    device: Device,
    threads: Option<usize>,
    dump: Option<&std::path::Path>,
) -> Result<i32> {
    println!(
        "{}",
        bench::bench_one(spec, batch, seconds, device, threads, dump)?
    );
    Ok(0)
}

/// `pixc bench`'s options (training throughput).
pub struct Opts {
    pub batch: usize,
    pub seconds: f64,
    pub rounds: usize,
    pub device: Device,
    pub threads: Option<usize>,
    pub pytorch: bool,
    pub json: bool,
}

pub fn bench(specs: &[PathBuf], o: &Opts) -> Result<i32> {
    let rounds = o.rounds.max(1);
    let all = bench::bench(
        specs,
        o.batch,
        o.seconds,
        rounds,
        o.device,
        o.threads,
        o.pytorch,
        |row| {
            if !o.json {
                if rounds > 1 {
                    print!("round {}/{rounds}  ", row["round"]);
                }
                print_row(row)
            }
        },
    )?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    if rounds > 1 {
        println!("median (least - greatest) of {rounds} rounds; shares of the highest peak the run measured:");
        for s in all["summary"].as_array().into_iter().flatten() {
            print_summary(s);
        }
    }
    if let Some(basis) = all["rows"][0]["pixc"]["peak_basis"].as_str() {
        println!("GFLOP/s: the training step's arithmetic counted from the IR (ir::flops: 3 forward passes, 2 FLOPs per multiply-add) times images/s; peak: {basis}");
    }
    Ok(0)
}

/// One spec's figures over its rounds: median (least - greatest).
fn print_summary(s: &Value) {
    let fig = |v: &Value, scale: f64, digits: usize| match (
        v["median"].as_f64(),
        v["min"].as_f64(),
        v["max"].as_f64(),
    ) {
        (Some(m), Some(a), Some(b)) => format!(
            "{:.digits$} ({:.digits$} - {:.digits$})",
            m * scale,
            a * scale,
            b * scale
        ),
        _ => "-".into(),
    };
    print!(
        "{:<22} pixc {} img/s = {}% of peak",
        s["model"].as_str().unwrap_or("?"),
        fig(&s["pixc_images_per_second"], 1.0, 1),
        fig(&s["share_of_peak"], 100.0, 1)
    );
    if !s["pytorch_images_per_s"].is_null() {
        print!(
            "  | PyTorch eager {} img/s  | ratio {}x",
            fig(&s["pytorch_images_per_s"], 1.0, 1),
            fig(&s["ratio"], 1.0, 2)
        );
    }
    if let Some(d) = s["loss_diff_nats_per_dim"].as_f64() {
        print!("  | loss diff {d:.1e} nats/dim");
    }
    println!();
}

pub fn bench_inference(
    specs: Vec<PathBuf>,
    batches: &[usize],
    (seconds, rounds): (f64, usize),
    device: Device,
    threads: Option<usize>,
    json_out: bool,
) -> Result<i32> {
    if !json_out {
        println!("ONNX export (best of 3) and NLL evaluation, images/s; libtorch = pixc's path (fused recurrence kernels on the CPU), plain = libtorch ops only; medians over {rounds} round(s), every path in turn, ratios taken within each round (range in brackets)");
    }
    let all = bench::bench_inference(specs, batches, (seconds, rounds), device, threads, |r| {
        if !json_out {
            print_inference_row(r)
        }
    })?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(0)
}

fn print_row(r: &Value) {
    let p = &r["pixc"];
    let name = p["model"].as_str().unwrap_or("?");
    let pix = p["images_per_second"].as_f64().unwrap_or(f64::NAN);
    print!(
        "{name:<22} {:>8} params  pixc {pix:>8.1} img/s  peak {:>6.0} MiB",
        p["params"],
        p["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
    );
    if let (Some(g), Some(share)) = (p["gflops"].as_f64(), p["share_of_peak"].as_f64()) {
        print!("  {g:>6.1} GFLOP/s = {:>4.1}% of peak", 100.0 * share);
    }
    if let Some(t) = r["pytorch"]["images_per_s"].as_f64() {
        print!(
            "  | PyTorch eager {t:>7.1} img/s  peak {:>6.0} MiB  | ratio {:>5.2}x",
            r["pytorch"]["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
            pix / t
        );
    }
    if let Some(d) = r["loss_diff_nats_per_dim"].as_f64() {
        print!("  | loss diff {d:.1e} nats/dim");
    }
    if let Some(e) = r["pytorch_error"].as_str() {
        print!("  | PyTorch reference failed: {e}");
    }
    if let Some(e) = r["pytorch_loss_error"].as_str() {
        print!("  | the reference's loss check failed: {e}");
    }
    println!();
}

fn print_inference_row(r: &Value) {
    println!(
        "{:<24} export {:>7.1} ms  {:>8.2} MB",
        r["model"].as_str().unwrap_or("?"),
        r["export_seconds"].as_f64().unwrap_or(f64::NAN) * 1e3,
        r["onnx_bytes"].as_f64().unwrap_or(f64::NAN) / 1e6
    );
    for b in r["batches"].as_array().into_iter().flatten() {
        let f = |k: &str| b[k].as_f64().unwrap_or(f64::NAN);
        // A ratio's range over the rounds, when there were several.
        let range = |k: &str, percent: bool| match (b["rounds"].as_u64(), &b[k]) {
            (Some(n), Value::Array(v)) if n > 1 && v.len() == 2 => {
                let g = |i: usize| v[i].as_f64().unwrap_or(f64::NAN);
                match percent {
                    true => format!(" ({:.0}-{:.0}%)", 100.0 * g(0), 100.0 * g(1)),
                    false => format!(" ({:.2}-{:.2}x)", g(0), g(1)),
                }
            }
            _ => String::new(),
        };
        println!(
            "    batch {:>4}  libtorch {:>8.1}  plain {:>8.1}  onnxruntime ({}) {:>8.1}  ORT/libtorch {:>5.2}x{}  ORT/plain {:>5.2}x  sampler {:>7.1} = {:>3.0}% of libtorch{}",
            b["batch"],
            f("libtorch_images_per_second"),
            f("libtorch_plain_images_per_second"),
            r["provider"].as_str().unwrap_or("?"),
            f("onnxruntime_images_per_second"),
            f("onnxruntime_vs_libtorch"),
            range("onnxruntime_vs_libtorch_range", false),
            f("onnxruntime_vs_libtorch_plain"),
            f("sampler_images_per_second"),
            100.0 * f("sampler_vs_libtorch"),
            range("sampler_vs_libtorch_range", true),
        );
    }
}
