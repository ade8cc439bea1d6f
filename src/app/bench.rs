//! `pixc bench`: training throughput and peak memory of pixc (libtorch from Rust) beside
//! the eager PyTorch reference (python/pixc_ref.py) on the same models, weights and batch.
//!
//! Each model is measured in a child process (`pixc bench-one`) so its peak RSS is its own.

use crate::backend::torch::{self, TorchModel};
use crate::device::Device;
use crate::train::optim::{clip_grad_norm, Optimizer};
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tch::Kind;

pub const DEFAULT_SPECS: &[&str] = &[
    "specs/diag_bilstm_7_mnist.yaml",
    "specs/row_lstm_7_mnist.yaml",
    "specs/pixelcnn_7_mnist.yaml",
];

/// Peak resident memory of this process in MiB (Linux VmHWM).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// A deterministic batch: the first `n` images of the spec's data set when it loads,
/// else seeded random images.
fn batch_images(
    model: &crate::ir::validate::Model,
    spec: &crate::front::ast::Spec,
    n: usize,
) -> Vec<u8> {
    let im = model.graph().image;
    let t = spec.train.clone().unwrap_or_default();
    if let Ok(src) = crate::data::DataSource::parse(&t.data) {
        if let Ok(ds) = crate::data::load(&src, &Default::default()) {
            if ds.train.n >= n && ds.channels * ds.height * ds.width == im.dims() {
                return ds.train.images[..n * im.dims()].to_vec();
            }
        }
    }
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    (0..n * im.dims())
        .map(|_| rng.random_range(0..im.levels) as u8)
        .collect()
}

/// The labels of a class-conditional model's timed batch, in `bench-one --dump`'s folder
/// (int64, one per image), for the reference's NLL.
const LABELS_NPY: &str = "labels.npy";

/// The most timed steps of one measurement, pixc's and the reference's alike: steps run
/// until `--seconds` have passed, at least 3 and at most this many.
const MAX_STEPS: usize = 1000;

/// Measures one spec in this process (`pixc bench-one`, run by `bench` as a child so its
/// peak RSS is its own).
pub fn bench_one(
    spec_path: &Path,
    batch: usize,
    seconds: f64,
    device: Device,
    threads: Option<usize>,
    dump: Option<&Path>,
) -> Result<Value> {
    let (spec, model, _) = crate::compile_file(spec_path)?;
    torch::set_threads(threads);
    crate::runtime::set_threads(threads);
    let dev = torch::resolve_device(device)?;
    let w = Weights::init(&model, 0);
    let tm = TorchModel::new(&model, &w, dev)?;
    let imgs = batch_images(&model, &spec, batch);
    let x = tm.images_to_tensor(&imgs, batch);
    // A conditional model is timed with labels, its class vectors included.
    let label_values = crate::sample::cycle_labels(tm.classes(), batch);
    let labels = label_values.as_deref().map(TorchModel::labels_tensor);
    // The loss on the fixed batch with the initial weights, for the identical-math check.
    let loss0 =
        tch::no_grad(|| f64::try_from(tm.nll_labeled(&x, labels.as_ref()).mean(Kind::Double)))?;
    if let Some(d) = dump {
        std::fs::create_dir_all(d)?;
        std::fs::write(d.join("weights.safetensors"), w.to_safetensors(None))?;
        std::fs::write(
            d.join("images.npy"),
            crate::sample::raw::npy_u8(
                &imgs,
                &[
                    batch,
                    model.graph().image.channels,
                    model.graph().image.height,
                    model.graph().image.width,
                ],
            )?,
        )?;
        std::fs::write(
            d.join("ir.json"),
            serde_json::to_vec(&crate::ir::dump::check_json(&model))?,
        )?;
        if let Some(l) = &label_values {
            let v: Vec<i64> = l.iter().map(|&y| i64::from(y)).collect();
            std::fs::write(d.join(LABELS_NPY), crate::sample::raw::npy_i64(&v)?)?;
        }
    }
    let params = tm.parameters();
    let mut opt = Optimizer::new(crate::front::ast::Optimizer::Adam, 1e-3, &params);
    let mut step = || -> Result<()> {
        let (_loss, grad) = tm.nll_grads(&x, labels.as_ref());
        clip_grad_norm(&grad, 1.0);
        opt.step(tm.flat_parameters(), &grad);
        if dev != tch::Device::Cpu {
            tch::Cuda::synchronize(0);
        }
        Ok(())
    };
    // Warm-up: allocator and kernel selection.
    step()?;
    step()?;
    let t0 = Instant::now();
    let mut steps = 0;
    while steps < 3 || (t0.elapsed().as_secs_f64() < seconds && steps < MAX_STEPS) {
        step()?;
        steps += 1;
    }
    let dt = t0.elapsed().as_secs_f64();
    let im = model.graph().image;
    let images_per_second = (steps * batch) as f64 / dt;
    let flops = crate::ir::flops::train_flops_per_image(&model);
    let gflops = images_per_second * flops / 1e9;
    let peak = if dev == tch::Device::Cpu {
        cpu_peak_gflops(torch::threads())
    } else {
        None
    };
    Ok(json!({
            "model": model.graph().name,
            "params": tm.param_count(),
            "device": torch::device_name(dev),
            "threads": torch::threads(),
            "batch": batch,
            "steps": steps,
            "seconds": dt,
            "images_per_second": (steps * batch) as f64 / dt,
            "peak_rss_mib": peak_rss_mib(),
            "train_gflop_per_image": flops / 1e9,
            "gflops": gflops,
            "peak_gflops": peak.as_ref().map(|p| p.0),
            "peak_basis": peak.as_ref().map(|p| p.1.clone()),
            "share_of_peak": peak.as_ref().map(|p| gflops / p.0),
            "loss_nats_per_image": loss0,
        "loss_nats_per_dim": loss0 / im.dims() as f64,
    }))
}

/// The fp32 peak of `threads` cores in GFLOP/s, and how it was found: `PIXC_PEAK_GFLOPS`
/// when set (per core), else the higher of `measure_fma_peak` and the figure derived from
/// /proc/cpuinfo as cores x nominal clock x FLOPs per cycle,
/// with 32 FLOPs per cycle for AVX2 + FMA (two 256-bit FMA units: 2 x 8 lanes x 2), which
/// is also what AMD's double-pumped AVX-512 gives; 16 with AVX alone, and on AMD's Zen 1,
/// whose FMA units are 128 bits wide; 8 otherwise. CPUs
/// with two full 512-bit FMA units reach twice the AVX2 figure: set the variable there.
pub fn cpu_peak_gflops(threads: usize) -> Option<(f64, String)> {
    if let Some(per_core) = std::env::var("PIXC_PEAK_GFLOPS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        return Some((
            per_core * threads as f64,
            format!("{threads} x {per_core} GFLOP/s (PIXC_PEAK_GFLOPS)"),
        ));
    }
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let Some((mhz, per_cycle, isa)) = cpu_clock_and_width(&info) else {
        let m = measure_fma_peak(threads)?;
        return Some((m, format!("{threads} threads x an FMA loop, measured")));
    };
    let ghz = mhz / 1000.0;
    let derived = threads as f64 * ghz * per_cycle;
    let basis = format!("{threads} cores x {ghz:.2} GHz x {per_cycle} FLOP/cycle ({isa})");
    // The clock /proc/cpuinfo gives is the nominal one (in a VM, the host's base clock);
    // cores boost past it, so the FMA loop's rate is the real ceiling when it is higher.
    match measure_fma_peak(threads) {
        Some(m) if m > derived => Some((
            m,
            format!(
                "{threads} threads x an FMA loop, measured ({:.1} GFLOP/s per core; {basis} would say {derived:.0})",
                m / threads as f64
            ),
        )),
        _ => Some((derived, basis)),
    }
}

/// From /proc/cpuinfo's text: the first core's nominal clock in MHz, its fp32 FLOPs per
/// cycle, and the instruction set that figure is for. None without a clock.
fn cpu_clock_and_width(info: &str) -> Option<(f64, f64, &'static str)> {
    let field = |name: &str| {
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim())
    };
    let mhz: f64 = field("cpu MHz")?.parse().ok()?;
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let number = |name: &str| field(name).and_then(|v| v.parse::<u32>().ok());
    // AMD's Zen 1 and Zen+ (family 17h, models below 30h) run each 256-bit FMA as two
    // halves on 128-bit units: half the FLOPs per cycle of every later AVX2 core.
    let zen1 = field("vendor_id") == Some("AuthenticAMD")
        && number("cpu family") == Some(0x17)
        && number("model").is_some_and(|m| m < 0x30);
    let (per_cycle, isa) = if has("avx2") && has("fma") && zen1 {
        (16.0, "AVX2+FMA on 128-bit units, Zen 1")
    } else if has("avx2") && has("fma") {
        (32.0, "AVX2+FMA")
    } else if has("avx") {
        (16.0, "AVX")
    } else {
        (8.0, "SSE")
    };
    Some((mhz, per_cycle, isa))
}

/// The fp32 FLOP rate of `threads` threads each running a loop of independent fused
/// multiply-adds (12 accumulators, enough to fill two FMA pipes), in GFLOP/s: the best of
/// three runs of about 0.1 s, with AVX-512 too when the CPU has it. None without AVX2 and
/// FMA. Measured, not derived, because boost clocks differ from the nominal one; on a
/// busy machine it reads low, as every figure of `pixc bench` does.
pub fn measure_fma_peak(threads: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            return None;
        }
        let wide = std::arch::is_x86_feature_detected!("avx512f");
        let iters: u64 = 40_000_000;
        let mut best = 0f64;
        for _ in 0..3 {
            for use512 in [false, true] {
                if use512 && !wide {
                    continue;
                }
                let t = std::time::Instant::now();
                let flops: f64 = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..threads.max(1))
                        .map(|_| {
                            s.spawn(move || {
                                // SAFETY: the features were detected above.
                                let (r, lanes) = unsafe {
                                    if use512 {
                                        (fma::loop512(iters), 16)
                                    } else {
                                        (fma::loop256(iters), 8)
                                    }
                                };
                                std::hint::black_box(r);
                                (iters * 12 * lanes * 2) as f64
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
                });
                best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
            }
        }
        Some(best)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = threads;
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod fma {
    use std::arch::x86_64::*;

    /// `iters` rounds of 12 independent 8-lane FMAs.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn loop256(iters: u64) -> f32 {
        let mut a = [_mm256_set1_ps(1.0); 12];
        let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..iters {
            for x in a.iter_mut() {
                *x = _mm256_fmadd_ps(*x, m, c);
            }
        }
        let mut o = [0f32; 8];
        let s = a
            .iter()
            .fold(_mm256_setzero_ps(), |s, x| _mm256_add_ps(s, *x));
        _mm256_storeu_ps(o.as_mut_ptr(), s);
        o.iter().sum()
    }

    /// `iters` rounds of 12 independent 16-lane FMAs.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn loop512(iters: u64) -> f32 {
        let mut a = [_mm512_set1_ps(1.0); 12];
        let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..iters {
            for x in a.iter_mut() {
                *x = _mm512_fmadd_ps(*x, m, c);
            }
        }
        a.iter().map(|x| _mm512_reduce_add_ps(*x)).sum()
    }
}

fn run_json(cmd: &mut Command) -> Result<Value> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("parsing the output of {cmd:?}: {text}"))
}

fn python() -> PathBuf {
    let venv = crate::util::source_path(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// The whole benchmark: each spec through pixc and through the PyTorch reference.
/// `on_row` sees each row as it is measured; returns `{batch, threads, rows}`.
#[allow(clippy::too_many_arguments)]
pub fn bench(
    specs: &[PathBuf],
    batch: usize,
    seconds: f64,
    rounds: usize,
    device: Device,
    threads: Option<usize>,
    pytorch: bool,
    mut on_row: impl FnMut(&Value),
) -> Result<Value> {
    let threads_n = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let cfg = Measure {
        exe: std::env::current_exe()?,
        reference: crate::util::source_path("python/pixc_ref.py"),
        batch,
        seconds,
        device,
        threads_n,
        pytorch,
    };
    let mut rows = Vec::new();
    // Round after round over every spec, pixc then the reference each time, so that a
    // shared machine's slow spells fall on both sides alike.
    for round in 1..=rounds.max(1) {
        for spec in specs {
            let row = measure(spec, round, rows.len(), &cfg)?;
            on_row(&row);
            rows.push(row);
        }
    }
    let summary = summarize(&rows);
    Ok(
        json!({"batch": batch, "threads": threads_n, "rounds": rounds.max(1), "rows": rows, "summary": summary}),
    )
}

/// What every measurement of a `bench` run shares.
struct Measure {
    exe: PathBuf,
    reference: PathBuf,
    batch: usize,
    seconds: f64,
    device: Device,
    threads_n: usize,
    pytorch: bool,
}

/// One row of `bench`: `spec` measured by `pixc bench-one` in a child process and, when
/// asked, by the eager reference on the same weights and batch, with the identical-math
/// check in the first round (every round has the same weights and batch, so later rounds
/// would only repeat it). `index`: the row's place in the run, which names its temp folder.
fn measure(spec: &Path, round: usize, index: usize, cfg: &Measure) -> Result<Value> {
    let Measure {
        batch,
        seconds,
        device,
        threads_n,
        pytorch,
        ..
    } = *cfg;
    let reference = &cfg.reference;
    let tmp = std::env::temp_dir().join(format!("pixc-bench-{}-{}", std::process::id(), index));
    let mut c = Command::new(&cfg.exe);
    c.arg("bench-one")
        .arg(spec)
        .arg("--batch")
        .arg(batch.to_string())
        .arg("--seconds")
        .arg(seconds.to_string());
    c.arg("--threads")
        .arg(threads_n.to_string())
        .arg("--device")
        .arg(match device {
            Device::Auto => "auto",
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        });
    c.arg("--dump").arg(&tmp);
    let p = run_json(&mut c)?;
    let mut row = json!({"spec": spec.display().to_string(), "round": round, "pixc": p});
    if pytorch && !reference.exists() {
        row["pytorch_error"] = json!(format!(
            "the PyTorch reference {} is not there; run pixc bench from pixc's source tree, or pass --no-pytorch",
            reference.display()
        ));
    } else if pytorch {
        let dev = if p["device"].as_str().unwrap_or("cpu").starts_with("cuda") {
            "cuda"
        } else {
            "cpu"
        };

        // The reference's subcommand `sub` on the dumped model and weights.
        let reference_cmd = |sub: &str| {
            let mut c = Command::new(python());
            c.arg(reference)
                .arg(sub)
                .arg("--ir")
                .arg(tmp.join("ir.json"))
                .arg("--weights")
                .arg(tmp.join("weights.safetensors"));
            c
        };
        let mut pc = reference_cmd("bench");
        pc.arg("--batch")
            .arg(batch.to_string())
            .arg("--threads")
            .arg(threads_n.to_string())
            .arg("--device")
            .arg(dev);
        pc.arg("--steps")
            .arg(MAX_STEPS.to_string())
            .arg("--seconds")
            .arg(seconds.to_string())
            .arg("--json");
        match run_json(&mut pc) {
            Ok(r) => row["pytorch"] = r,
            Err(e) => row["pytorch_error"] = json!(format!("{e:#}")),
        }
        // Identical math: the reference's NLL on the same batch and weights, which are
        // the same every round, so the first round checks it.
        if round == 1 {
            let mut nc = reference_cmd("nll");
            let out = tmp.join("nll.npy");
            nc.arg("--images")
                .arg(tmp.join("images.npy"))
                .arg("--out")
                .arg(&out);
            if tmp.join(LABELS_NPY).is_file() {
                nc.arg("--labels").arg(tmp.join(LABELS_NPY));
            }
            let checked = nc.output().map_err(anyhow::Error::from).and_then(|o| {
                if !o.status.success() {
                    let err = String::from_utf8_lossy(&o.stderr);
                    bail!("{}", err.trim().lines().last().unwrap_or("no message"));
                }
                read_npy_f32_mean(&out).context("its NLL file is unreadable")
            });
            match checked {
                Ok(v) => {
                    let dims = p["loss_nats_per_image"].as_f64().unwrap_or(0.0)
                        / p["loss_nats_per_dim"].as_f64().unwrap_or(1.0);
                    row["pytorch_loss_nats_per_image"] = json!(v);
                    row["loss_diff_nats_per_dim"] =
                        json!((v - p["loss_nats_per_image"].as_f64().unwrap_or(0.0)).abs() / dims);
                }
                // Said, not skipped: the check is what makes the timing a fair comparison.
                Err(e) => row["pytorch_loss_error"] = json!(format!("{e:#}")),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(row)
}

/// The median, least and greatest of `v` (None when empty); the median of an even count
/// is the mean of the middle two.
pub(crate) fn spread(mut v: Vec<f64>) -> Option<Value> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(json!({"median": median, "min": v[0], "max": v[n - 1], "n": n}))
}

/// Per spec, over its rounds: the spread of pixc's images/s, its share of the FLOP peak,
/// the reference's images/s and the ratio of the two within each round. The shares are
/// taken against the highest peak any measurement found, not each one's own: a measured
/// peak only reads low (another process took the core), and each child measures its own.
pub fn summarize(rows: &[Value]) -> Vec<Value> {
    let best_peak = rows
        .iter()
        .filter_map(|r| r["pixc"]["peak_gflops"].as_f64())
        .fold(f64::NAN, f64::max);
    let mut specs: Vec<&str> = Vec::new();
    for r in rows {
        if let Some(s) = r["spec"].as_str() {
            if !specs.contains(&s) {
                specs.push(s);
            }
        }
    }
    specs
        .into_iter()
        .map(|spec| {
            let mine: Vec<&Value> = rows.iter().filter(|r| r["spec"] == spec).collect();
            let col = |f: &dyn Fn(&Value) -> Option<f64>| -> Vec<f64> {
                mine.iter().filter_map(|r| f(r)).collect()
            };
            let pix = |r: &Value| r["pixc"]["images_per_second"].as_f64();
            let eager = |r: &Value| r["pytorch"]["images_per_s"].as_f64();
            json!({
                "spec": spec,
                "model": mine[0]["pixc"]["model"],
                "pixc_images_per_second": spread(col(&pix)),
                "share_of_peak": spread(col(&|r| Some(r["pixc"]["gflops"].as_f64()? / best_peak))),
                "pytorch_images_per_s": spread(col(&eager)),
                "ratio": spread(col(&|r| Some(pix(r)? / eager(r)?))),
                // From the first round, the only one that checks it.
                "loss_diff_nats_per_dim": mine.iter().find_map(|r| r["loss_diff_nats_per_dim"].as_f64()),
            })
        })
        .collect()
}

/// `pixc bench --inference`: ONNX export figures and libtorch vs ONNX Runtime NLL
/// throughput (`app::deploy::bench_inference`) for each spec. Without specs: inference for
/// the three MNIST models, export figures only for the other shipped specs.
/// `on_row` sees each row as it is measured; returns `{rows}`.
pub fn bench_inference(
    specs: Vec<PathBuf>,
    batches: &[usize],
    (seconds, rounds): (f64, usize),
    device: Device,
    threads: Option<usize>,
    mut on_row: impl FnMut(&Value),
) -> Result<Value> {
    if batches.is_empty() || batches.contains(&0) {
        bail!("--batches needs sizes of at least 1, e.g. --batches 16,256");
    }
    torch::set_threads(threads);
    crate::runtime::set_threads(threads);
    let jobs: Vec<(PathBuf, bool)> = if specs.is_empty() {
        let dir = crate::util::source_path("specs");
        let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading the shipped specs in {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        all.sort();
        all.into_iter()
            .map(|p| {
                let infer = DEFAULT_SPECS.iter().any(|d| p.ends_with(d));
                (p, !infer)
            })
            .collect()
    } else {
        specs.into_iter().map(|p| (p, false)).collect()
    };
    let mut rows = Vec::new();
    for (spec, export_only) in jobs {
        let r = crate::app::deploy::bench_inference(
            &spec,
            batches,
            (seconds, rounds),
            device,
            export_only,
        )?;
        on_row(&r);
        rows.push(r);
    }
    Ok(json!({"rows": rows}))
}

/// The mean of a `.npy` file of f32 or f64 values (the PyTorch reference's losses).
fn read_npy_f32_mean(path: &Path) -> Option<f64> {
    use ndarray_npy::ReadNpyExt;
    let f = || std::fs::File::open(path).ok();
    let v: Vec<f64> = match ndarray::ArrayD::<f64>::read_npy(f()?) {
        Ok(a) => a.iter().copied().collect(),
        Err(_) => ndarray::ArrayD::<f32>::read_npy(f()?)
            .ok()?
            .iter()
            .map(|&x| x as f64)
            .collect(),
    };
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::{cpu_clock_and_width, summarize};
    use serde_json::json;

    /// Per spec, in first-seen order: medians (the mean of the middle two for an even
    /// count), ranges, and the ratio taken within each round, not of the medians; a round
    /// whose reference failed counts for pixc's figures only.
    #[test]
    fn rounds_summarize_per_spec() {
        let row = |spec: &str, pix: f64, eager: Option<f64>| {
            // Each measurement's own peak differs; shares are against the best, 1000.
            let peak = if pix == 10.0 { 1000.0 } else { 800.0 };
            let mut r = json!({"spec": spec, "pixc": {"model": spec, "images_per_second": pix, "gflops": pix, "peak_gflops": peak}});
            if let Some(e) = eager {
                r["pytorch"] = json!({"images_per_s": e});
            }
            r
        };
        let mut rows = [
            row("b", 100.0, Some(50.0)),
            row("a", 10.0, Some(10.0)),
            row("b", 300.0, Some(100.0)),
            row("a", 30.0, None),
            row("b", 200.0, Some(200.0)),
            row("a", 20.0, Some(5.0)),
        ];
        // The identical-math check, made in spec "b"'s first round only.
        rows[0]["loss_diff_nats_per_dim"] = json!(1e-8);
        let s = summarize(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["loss_diff_nats_per_dim"], 1e-8);
        assert!(s[1]["loss_diff_nats_per_dim"].is_null());
        assert_eq!(s[0]["spec"], "b");
        let fig = |v: &serde_json::Value| {
            (
                v["median"].as_f64().unwrap(),
                v["min"].as_f64().unwrap(),
                v["max"].as_f64().unwrap(),
                v["n"].as_u64().unwrap(),
            )
        };
        assert_eq!(
            fig(&s[0]["pixc_images_per_second"]),
            (200.0, 100.0, 300.0, 3)
        );
        assert_eq!(fig(&s[0]["pytorch_images_per_s"]), (100.0, 50.0, 200.0, 3));
        // Round ratios 2, 3, 1: median 2, which the medians' ratio (200 / 100) only
        // happens to equal; spec "a" tells them apart.
        assert_eq!(fig(&s[0]["ratio"]), (2.0, 1.0, 3.0, 3));
        assert_eq!(fig(&s[1]["pixc_images_per_second"]), (20.0, 10.0, 30.0, 3));
        assert_eq!(fig(&s[1]["pytorch_images_per_s"]), (7.5, 5.0, 10.0, 2));
        assert_eq!(fig(&s[1]["ratio"]), (2.5, 1.0, 4.0, 2));
        assert_eq!(fig(&s[1]["share_of_peak"]), (0.02, 0.01, 0.03, 3));
    }

    fn info(vendor: &str, family: u32, model: u32, flags: &str) -> String {
        format!(
            "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n\
             model name\t: Some CPU\ncpu MHz\t\t: 2000.000\nflags\t\t: fpu sse2 {flags}\n"
        )
    }

    /// FLOPs per cycle by core: Zen 1 / Zen+ have 128-bit FMA units, Zen 2 on and
    /// Intel's AVX2 cores 256-bit ones; no clock, no figure.
    #[test]
    fn flops_per_cycle_follow_the_core() {
        for (vendor, family, model, flags, per_cycle) in [
            ("AuthenticAMD", 23, 1, "avx avx2 fma", 16.0),
            ("AuthenticAMD", 23, 8, "avx avx2 fma", 16.0),
            ("AuthenticAMD", 23, 49, "avx avx2 fma", 32.0),
            ("AuthenticAMD", 25, 17, "avx avx2 fma avx512f", 32.0),
            ("GenuineIntel", 6, 1, "avx avx2 fma", 32.0),
            ("GenuineIntel", 6, 42, "avx", 16.0),
            ("GenuineIntel", 6, 26, "", 8.0),
        ] {
            let got = cpu_clock_and_width(&info(vendor, family, model, flags));
            assert_eq!(
                got.map(|x| (x.0, x.1)),
                Some((2000.0, per_cycle)),
                "{vendor} family {family} model {model}"
            );
        }
        assert_eq!(cpu_clock_and_width("flags\t: avx2 fma\n"), None);
    }
}
