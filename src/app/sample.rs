//! The `pixc sample`, `pixc complete` and `pixc plot` commands as library functions, on
//! plain option structs (the clap layer in `cli::sample_cmds` only converts arguments).
//!
//! Every output path is checked for writability before any sampling starts, and every
//! file is written atomically, so a bad path fails fast and nothing is left half-written.

use crate::backend::torch::{self, TorchModel};
use crate::device::Device;
use crate::plot;
use crate::sample::{self as samplers, complete, png_grid, raw};
use crate::train::checkpoint;
use crate::util::write_atomic;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `pixc sample`.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    pub n: usize,
    pub seed: u64,
    pub temperature: f64,
    /// The PNG grid.
    pub out: PathBuf,
    /// Raw values as `.npy` (uint8, N x C x H x W).
    pub npy: Option<PathBuf>,
    /// A folder for one `.pgm` / `.ppm` per image.
    pub pgm: Option<PathBuf>,
    /// Use the reference sampler (a full forward pass per sub-pixel).
    pub reference: bool,
    /// Device for the reference sampler and ONNX Runtime (the cached sampler runs on the CPU).
    pub device: Device,
    /// Grid columns (default: a square-ish grid).
    pub cols: Option<usize>,
    /// Pixel size in the grid (default: about 112 pixels per image).
    pub scale: Option<usize>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// A class-conditional model: draw every image of this class. Without it such a
    /// model's grid has one row per class (`cols` images each, default n / classes).
    pub class: Option<u16>,
    /// A low-res model: the low-res images to draw the rest of (`.npy`, uint8,
    /// `[N, C, H/f, W/f]` or one image `[C, H/f, W/f]` / `[H/f, W/f]` for all `n`).
    /// Without it a run takes its small model's draws or the test set's.
    pub low_res: Option<PathBuf>,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            n: 16,
            class: None,
            low_res: None,
            seed: 0,
            temperature: 1.0,
            out: PathBuf::from("samples.png"),
            npy: None,
            pgm: None,
            reference: false,
            device: Device::Auto,
            cols: None,
            scale: None,
            progress: false,
        }
    }
}

/// What `sample_run` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SampleReport {
    pub n: usize,
    pub sampler: String,
    pub device: String,
    pub seconds: f64,
    /// The checkpoint's step (None for ONNX files).
    pub step: Option<u64>,
    pub written: Vec<String>,
    /// The images themselves (N x C x H x W), for callers; not serialized.
    #[serde(skip)]
    pub images: Vec<u8>,
}

/// Fails unless `path` can be created or replaced: its folder exists and is writable and
/// it is not itself a folder. Called before sampling so a typo costs nothing.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if path.is_dir() {
        bail!(
            "{} is a folder; give a file name for the output",
            path.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "cannot write {}: the folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    let probe = dir.join(format!(".pixc-write-check.{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| {
        format!(
            "cannot write {}: the folder {} is not writable",
            path.display(),
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn check_dir_writable(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a folder", dir.display());
    }
    if dir.is_dir() {
        check_writable(&dir.join("probe"))
    } else {
        // It will be created next to existing folders: its parent must be writable.
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!(
                "cannot create the folder {}: {} does not exist",
                dir.display(),
                parent.display()
            );
        }
        check_writable(&dir.with_extension("probe"))
    }
}

/// A progress bar over sub-pixels (hidden when not wanted or stderr is not a terminal).
pub fn progress_bar(total: usize, show: bool, what: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::new(total as u64);
    if !show {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(&format!(
        "{{bar:30}} {{pos}}/{{len}} {what}  {{elapsed}}  eta {{eta}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn grid_layout(
    n: usize,
    h: usize,
    w: usize,
    cols: Option<usize>,
    scale: Option<usize>,
) -> (usize, usize) {
    let cols = cols
        .unwrap_or_else(|| (n as f64).sqrt().ceil() as usize)
        .max(1);
    (
        cols,
        scale.unwrap_or_else(|| png_grid::auto_scale(h, w)).max(1),
    )
}

fn check_outputs(o: &SampleOptions) -> Result<()> {
    samplers::check_request(o.n, o.temperature)?;
    check_writable(&o.out)?;
    if let Some(p) = &o.npy {
        check_writable(p)?;
    }
    if let Some(d) = &o.pgm {
        check_dir_writable(d)?;
    }
    Ok(())
}

/// Writes the grid and the raw outputs; returns the paths written.
fn write_outputs(
    o: &SampleOptions,
    images: &[u8],
    (c, h, w, levels): (usize, usize, usize, usize),
) -> Result<Vec<String>> {
    let n = o.n;
    let (cols, scale) = grid_layout(n, h, w, o.cols, o.scale);
    let grid = png_grid::grid(images, n, c, h, w, levels, cols, scale)?;
    let mut written = Vec::new();
    if let Some(p) = &o.npy {
        write_atomic(p, &raw::npy_u8(images, &[n, c, h, w])?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        written.push(p.display().to_string());
    }
    if let Some(d) = &o.pgm {
        for p in raw::write_netpbm_dir(d, images, n, c, h, w, levels)? {
            written.push(p.display().to_string());
        }
    }
    write_atomic(&o.out, &grid).with_context(|| format!("cannot write {}", o.out.display()))?;
    written.insert(0, o.out.display().to_string());
    Ok(written)
}

/// Loads a run's spec and best checkpoint on `device`.
pub fn load_run(
    run: &Path,
    device: Device,
) -> Result<(
    TorchModel,
    u64,
    crate::front::ast::Spec,
    crate::ir::validate::Model,
)> {
    if !run.is_dir() {
        bail!(
            "{} is not a folder: give a run folder made by `pixc train --out DIR`",
            run.display()
        );
    }
    let (spec, model) = checkpoint::load_spec(run)?;
    let dev = torch::resolve_device(device)?;
    let (tm, step, _) = checkpoint::load_best(run, &model, dev)?;
    Ok((tm, step, spec, model))
}

/// The labels `pixc sample` draws for a model with `classes` (0: unconditional, `None`):
/// `--class` for every image, else one grid row per class (setting `o.cols`).
fn run_labels(classes: usize, o: &mut SampleOptions) -> Result<Option<Vec<u16>>> {
    if let Some(l) = class_flag(classes, o.class, o.n)? {
        return Ok(Some(l));
    }
    if classes == 0 {
        return Ok(None);
    }
    let cols = *o.cols.get_or_insert(o.n.div_ceil(classes));
    Ok(Some(
        (0..o.n).map(|i| ((i / cols) % classes) as u16).collect(),
    ))
}

/// `--class K` for `n` images, checked against the model's `classes`; `None` without it.
fn class_flag(classes: usize, class: Option<u16>, n: usize) -> Result<Option<Vec<u16>>> {
    let Some(y) = class else {
        return Ok(None);
    };
    if classes == 0 {
        bail!(crate::usage::usage(
            "the model is not class-conditional: drop --class".to_string()
        ));
    }
    if y as usize >= classes {
        bail!(crate::usage::usage(format!(
            "--class {y} is out of range: the model has {classes} classes (0..{})",
            classes - 1
        )));
    }
    Ok(Some(vec![y; n]))
}

/// Mixed into the seed of a multi-scale model's second stage, so its uniforms are not
/// those the first stage used.
const SECOND_STAGE: u64 = 0x5eed_0f5c_a1e2_0002;

/// `pixc sample RUN_DIR`: draws `o.n` images from the run's best checkpoint (a
/// multi-scale run's small model first, then its conditional model).
pub fn sample_run(run: &Path, o: &SampleOptions) -> Result<SampleReport> {
    check_outputs(o)?;
    // The cached sampler runs on the CPU: do not put the weights on a GPU for nothing.
    let device = if o.reference { o.device } else { Device::Cpu };
    torch::set_threads(None);
    let (tm, step, spec, model) = load_run(run, device)?;
    let mut o = o.clone();
    let labels = run_labels(tm.classes(), &mut o)?;
    let o = &o;
    let im = model.graph().image;
    let factor = im.low_res.map_or(0, |l| l.factor);
    let file = low_res_flag(o, factor, (im.channels, im.height, im.width), im.levels)?;
    let given = match (im.low_res, model.small()) {
        // Low-res images from a file: every model with a low-res input takes them.
        (Some(_), _) if let Some(small) = file.as_deref() => {
            samplers::low_res_keep(&im, &samplers::place_low_res(&im, small, o.n), o.n)
        }
        // A multi-scale model: its small model draws the low-res images first (with the
        // same sampler, from a seed of its own), then this one draws the rest given them.
        (Some(_), Some(_)) => {
            let (stm, _, _, _) = load_run(&run.join("small"), device).with_context(|| {
                format!(
                    "cannot load the multi-scale run's small model from {}",
                    run.join("small").display()
                )
            })?;
            let first = samplers::Draw {
                n: o.n,
                seed: o.seed,
                temperature: o.temperature,
                keep: None,
                labels: labels.as_deref(),
            };
            let small = samplers::sample_with(&stm, &first, o.reference, |_, _| {})?;
            samplers::low_res_keep(&im, &samplers::place_low_res(&im, &small, o.n), o.n)
        }
        // A low-res model alone draws each image given a low-res image: the first n test
        // images'.
        (Some(_), None) => {
            let (imgs, _) = complete::test_images(&spec, &model, o.n, None)?;
            samplers::low_res_keep(&im, &imgs, o.n)
        }
        (None, _) => None,
    };
    let total = tm.dims();
    let bar = progress_bar(total, o.progress, "sub-pixels");
    let t0 = Instant::now();
    let prog = |i: usize, _: usize| bar.set_position(i as u64 + 1);
    let draw = samplers::Draw {
        n: o.n,
        // A multi-scale model's second stage after its first: uniforms of their own. Given
        // low-res images from a file, the seed is used as it is (as `sample --onnx` does).
        seed: if model.small().is_some() && file.is_none() {
            o.seed ^ SECOND_STAGE
        } else {
            o.seed
        },
        temperature: o.temperature,
        keep: given.as_ref().map(|(v, m)| (&v[..], &m[..])),
        labels: labels.as_deref(),
    };
    let images = samplers::sample_with(&tm, &draw, o.reference, prog)?;
    let seconds = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let written = write_outputs(o, &images, (tm.channels, tm.height, tm.width, tm.levels))?;
    Ok(SampleReport {
        n: o.n,
        sampler: if o.reference { "reference" } else { "cached" }.into(),
        device: if o.reference {
            torch::device_name(tm.device)
        } else {
            "cpu".into()
        },
        seconds,
        step: Some(step),
        written,
        images,
    })
}

/// `--low-res FILE` for a model with subsampling factor `factor` (0: no low-res input, so
/// the flag is refused) over `c x h x w` images: the low-res images (`read_low_res`).
fn low_res_flag(
    o: &SampleOptions,
    factor: usize,
    (c, h, w): (usize, usize, usize),
    levels: usize,
) -> Result<Option<Vec<u8>>> {
    match (factor, &o.low_res) {
        (_, None) => Ok(None),
        (0, Some(_)) => bail!(crate::usage::usage(
            "the model has no low-res input: drop --low-res".to_string()
        )),
        (f, Some(p)) => Ok(Some(read_low_res(p, o.n, (c, h / f, w / f), levels)?)),
    }
}

/// `--low-res FILE`: `n` low-res images of `c x h x w` (the model's `C x H/f x W/f`) from a
/// uint8 `.npy` file holding `[N >= n, c, h, w]` (the first `n` are used), or one image
/// (`[c, h, w]`, or `[h, w]` when c = 1) for all `n`; every value below `levels`.
fn read_low_res(
    path: &Path,
    n: usize,
    (c, h, w): (usize, usize, usize),
    levels: usize,
) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (shape, values) =
        raw::read_npy_u8(&bytes).with_context(|| format!("cannot read {}", path.display()))?;
    let one = c * h * w;
    let want = format!("[N, {c}, {h}, {w}] (or one image [{c}, {h}, {w}])");
    let out = match shape.as_slice() {
        [m, cc, hh, ww] if (*cc, *hh, *ww) == (c, h, w) => {
            if *m < n {
                bail!(
                    "{} holds {m} low-res images, fewer than the {n} asked for: ask for -n {m} or fewer",
                    path.display()
                );
            }
            values[..n * one].to_vec()
        }
        [cc, hh, ww] if (*cc, *hh, *ww) == (c, h, w) => values.repeat(n),
        [hh, ww] if c == 1 && (*hh, *ww) == (h, w) => values.repeat(n),
        other => bail!(
            "{} holds an array of shape {other:?}; the model's low-res images are {want}",
            path.display()
        ),
    };
    if let Some(&v) = out.iter().find(|&&v| v as usize >= levels) {
        bail!(
            "{} holds the value {v}, but the model has {levels} levels (0..{}): give raw values, as `pixc sample --npy` writes them",
            path.display(),
            levels - 1
        );
    }
    Ok(out)
}

/// `pixc sample --onnx FILE`: the reference method through ONNX Runtime.
pub fn sample_onnx_file(path: &Path, o: &SampleOptions) -> Result<SampleReport> {
    check_outputs(o)?;
    let dev = o.device;
    let (mut model, provider) = crate::runtime::OnnxModel::load(path, dev)
        .with_context(|| format!("cannot load {}", path.display()))?;
    let info = model.info().clone();
    let mut o = o.clone();
    let labels = run_labels(info.classes, &mut o)?;
    let o = &o;
    let bar = progress_bar(info.dims(), o.progress, "sub-pixels");
    let t0 = Instant::now();
    let low_res = low_res_flag(
        o,
        info.low_res,
        (info.channels, info.height, info.width),
        info.levels,
    )?;
    let images = samplers::onnx::sample_onnx(
        &mut model,
        o.n,
        o.seed,
        o.temperature,
        labels.as_deref(),
        low_res.as_deref(),
        |i, _| bar.set_position(i as u64 + 1),
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let written = write_outputs(
        o,
        &images,
        (info.channels, info.height, info.width, info.levels),
    )?;
    Ok(SampleReport {
        n: o.n,
        sampler: "reference (ONNX Runtime)".into(),
        device: provider.to_string(),
        seconds,
        step: None,
        written,
        images,
    })
}

/// Options of `pixc complete`.
#[derive(Clone, Debug)]
pub struct CompleteOptions {
    /// Complete the first N test images of the run's data set (ignored with `image`).
    pub from_test: usize,
    /// Complete this PNG instead.
    pub image: Option<PathBuf>,
    /// Rows kept from the top (default: half the image).
    pub keep_rows: Option<usize>,
    /// Completions per image.
    pub samples: usize,
    pub seed: u64,
    pub temperature: f64,
    pub out: PathBuf,
    pub reference: bool,
    pub device: Device,
    pub scale: Option<usize>,
    pub progress: bool,
    /// Where MNIST is read from (default: the usual lookup).
    pub mnist_dir: Option<PathBuf>,
    /// A class-conditional model: complete every image as this class (default: each test
    /// image's own label; required with `image`).
    pub class: Option<u16>,
}

impl Default for CompleteOptions {
    fn default() -> Self {
        CompleteOptions {
            from_test: 8,
            image: None,
            keep_rows: None,
            samples: 3,
            seed: 0,
            temperature: 1.0,
            out: PathBuf::from("completions.png"),
            reference: false,
            device: Device::Auto,
            scale: None,
            progress: false,
            mnist_dir: None,
            class: None,
        }
    }
}

/// What `complete_run` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompleteReport {
    pub images: usize,
    pub samples: usize,
    pub keep_rows: usize,
    pub seconds: f64,
    pub out: String,
    /// A class-conditional model's class of each image (its completions share it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<u16>>,
    /// Things the user should know (e.g. the image was resized), for stderr.
    pub notes: Vec<String>,
    /// Originals (K x C x H x W) and completions (K*S images, image-major); not serialized.
    #[serde(skip)]
    pub originals: Vec<u8>,
    #[serde(skip)]
    pub completions: Vec<u8>,
}

/// `pixc complete RUN_DIR`: keeps the top rows of test images (or of `o.image`), samples
/// the rest `o.samples` times, and writes the figure.
pub fn complete_run(run: &Path, o: &CompleteOptions) -> Result<CompleteReport> {
    check_writable(&o.out)?;
    let k = if o.image.is_some() { 1 } else { o.from_test };
    if o.samples == 0 || k == 0 {
        bail!(crate::usage::usage(format!(
            "nothing to complete: {k} image(s), {} completion(s) each; both must be at least 1",
            o.samples
        )));
    }
    samplers::check_request(1, o.temperature)?;
    if k.saturating_mul(o.samples) > samplers::MAX_SAMPLES {
        bail!(crate::usage::usage(format!(
            "{k} images x {} completions is more than the {} samples one call draws; use fewer --from-test images or --samples",
            o.samples,
            samplers::MAX_SAMPLES
        )));
    }
    let device = if o.reference { o.device } else { Device::Cpu };
    torch::set_threads(None);
    let (tm, _, spec, model) = load_run(run, device)?;
    let (c, h, w, levels) = (tm.channels, tm.height, tm.width, tm.levels);
    let keep_rows = o.keep_rows.unwrap_or(h / 2);
    if keep_rows > h {
        bail!(crate::usage::usage(format!(
            "--keep-rows {keep_rows} is more than the image's {h} rows"
        )));
    }
    let mut notes = Vec::new();
    let (originals, k, own_labels) = match &o.image {
        Some(p) => {
            let (img, n) = complete::load_image(p, c, h, w, levels)?;
            notes.extend(n);
            (img, 1, None)
        }
        None => {
            let (img, labels) =
                complete::test_images(&spec, &model, o.from_test, o.mnist_dir.clone())?;
            (img, o.from_test, labels)
        }
    };
    let labels = complete_labels(tm.classes(), o.class, own_labels, k)?;
    if let Some(l) = &labels {
        let shown: Vec<String> = l.iter().map(u16::to_string).collect();
        notes.push(format!("classes, one per row: {}", shown.join(" ")));
    }
    let total = tm.dims();
    let bar = progress_bar(total, o.progress, "sub-pixels");
    let t0 = Instant::now();
    let completions = complete::complete(
        &tm,
        &originals,
        k,
        keep_rows,
        o.samples,
        o.seed,
        o.temperature,
        o.reference,
        labels.as_deref(),
        |i, _| bar.set_position(i as u64 + 1),
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let scale = o.scale.unwrap_or_else(|| png_grid::auto_scale(h, w)).max(1);
    let fig = complete::figure(
        &originals,
        k,
        &completions,
        o.samples,
        (c, h, w, levels),
        keep_rows,
        scale,
    )?;
    write_atomic(&o.out, &fig).with_context(|| format!("cannot write {}", o.out.display()))?;
    Ok(CompleteReport {
        images: k,
        samples: o.samples,
        keep_rows,
        seconds,
        out: o.out.display().to_string(),
        classes: labels,
        notes,
        originals,
        completions,
    })
}

/// The classes `pixc complete` conditions on, one per image: `--class` for all, else the
/// test images' own labels; none for an unconditional model.
fn complete_labels(
    classes: usize,
    class: Option<u16>,
    own: Option<Vec<u16>>,
    k: usize,
) -> Result<Option<Vec<u16>>> {
    if let Some(l) = class_flag(classes, class, k)? {
        return Ok(Some(l));
    }
    match (classes, own) {
        (0, _) => Ok(None),
        (_, Some(own)) => Ok(Some(own)),
        (_, None) => bail!(crate::usage::usage(format!(
            "the model is class-conditional ({classes} classes): give the class to complete the image as, `--class 0..{}`",
            classes - 1
        ))),
    }
}

/// What `plot_run` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlotReport {
    pub points: usize,
    pub out: String,
    /// Unreadable `metrics.jsonl` lines: `(line, why)`.
    pub skipped: Vec<(usize, String)>,
}

/// `pixc plot RUN_DIR`: training curves from `metrics.jsonl`.
/// `pixc plot RUN RUN...`: the runs' curves over each other, the legend naming each run
/// by its folder; thick lines validation, thin lines training.
pub fn plot_runs(runs: &[PathBuf], out: &Path) -> Result<PlotReport> {
    check_writable(out)?;
    let mut all = Vec::new();
    let mut skipped = Vec::new();
    for run in runs {
        let mut curves = plot::read_metrics(run)?;
        let name = run
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| run.display().to_string());
        skipped.append(&mut curves.skipped);
        all.push((name, curves));
    }
    let title = format!(
        "negative log-likelihood ({}); thick: validation, thin: training",
        all[0].1.unit
    );
    let png = plot::overlay::plot_overlay(&all, &title, 1200, 500)?;
    write_atomic(out, &png).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(PlotReport {
        points: all.iter().map(|(_, c)| c.points.len()).sum(),
        out: out.display().to_string(),
        skipped,
    })
}

pub fn plot_run(run: &Path, out: &Path) -> Result<PlotReport> {
    check_writable(out)?;
    let curves = plot::read_metrics(run)?;
    let model = checkpoint::load_spec(run).ok().map(|(_, m)| m);
    let name = match &model {
        Some(m) => m.graph().name.clone(),
        None => run
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    // A multi-scale run: both parts' curves, overlaid (each its own NLL, which add up).
    if let Some(small) = model.as_ref().and_then(|m| m.small()) {
        if run.join("small").join("metrics.jsonl").is_file() {
            let mut parts = plot::read_metrics(&run.join("small"))?;
            let si = small.graph().image;
            let mut skipped = std::mem::take(&mut parts.skipped);
            let all = vec![
                (
                    format!("small: the {}x{} subsample", si.height, si.width),
                    parts,
                ),
                ("the rest, given it".to_string(), curves),
            ];
            skipped.extend(all[1].1.skipped.iter().cloned());
            let title = format!(
                "{name}: both parts' NLL ({}, they add up); thick: validation, thin: training",
                all[0].1.unit
            );
            let png = plot::overlay::plot_overlay(&all, &title, 1200, 500)?;
            write_atomic(out, &png).with_context(|| format!("cannot write {}", out.display()))?;
            return Ok(PlotReport {
                points: all.iter().map(|(_, c)| c.points.len()).sum(),
                out: out.display().to_string(),
                skipped,
            });
        }
    }
    let title = format!("{name}: negative log-likelihood ({})", curves.unit);
    let png = plot::plot(&curves, &title, 1200, 500)?;
    write_atomic(out, &png).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(PlotReport {
        points: curves.points.len(),
        out: out.display().to_string(),
        skipped: curves.skipped,
    })
}
