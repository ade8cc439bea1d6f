//! Sampling: draws images sub-pixel by sub-pixel (raster order, R then G then B), and
//! writes PNG grids.
//!
//! Randomness is one pre-drawn uniform per sub-pixel, consumed by inverse CDF, so every
//! sampler given the same seed draws the same image.
//!
//! | sampler | where | cost per image |
//! | --- | --- | --- |
//! | `sample_reference` | libtorch, any device | one full forward pass per sub-pixel |
//! | `sample_fast` (default) | `backend::cached`: plain f32 loops, CPU threads | each layer's output at the new pixel only |
//! | `onnx::sample_onnx` | ONNX Runtime | one full run per sub-pixel |
//!
//! Around them: `complete` (image completion and its figure), `plot` (training curves),
//! `png_grid` and `raw` (outputs), `run` (the `pixc sample / complete / plot` commands).

pub mod complete;
pub mod onnx;
pub mod png_grid;
pub mod raw;

use crate::backend::cached::CachedModel;
use crate::backend::torch::TorchModel;
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use tch::Kind;

/// One uniform in [0, 1) per sub-pixel, laid out N x C x H x W.
pub fn uniforms(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * c * h * w).map(|_| rng.random::<f32>()).collect()
}

pub use crate::ir::head::{draw, draw_scaled};

/// The most images one sampling call draws (a grid of 32 x 32).
pub const MAX_SAMPLES: usize = crate::front::flags::MAX_SAMPLES;

/// Checks a sampling request: `1..=MAX_SAMPLES` images, a finite temperature above 0.
pub fn check_request(n: usize, temperature: f64) -> Result<()> {
    if n == 0 {
        bail!(crate::usage::usage(
            "asked for 0 samples: ask for at least 1 (-n 16 draws a 4 x 4 grid)"
        ));
    }
    if n > MAX_SAMPLES {
        bail!(crate::usage::usage(format!("asked for {n} samples, more than the {MAX_SAMPLES} one call draws; ask for fewer, or run several times with different --seed")));
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        bail!(crate::usage::usage(format!("the temperature must be a number above 0 (1 = the model's own distribution, below 1 = more conservative), got {temperature}")));
    }
    Ok(())
}

fn check_keep(tm: &TorchModel, n: usize, keep: Option<(&[u8], &[bool])>) -> Result<()> {
    let im = tm.model().graph().image;
    if let Some(l) = im.low_res {
        // The low-res image is the model's input, not something it draws.
        let (c, h, w) = (im.channels, im.height, im.width);
        let given = keep.is_some_and(|(_, m)| {
            m.len() == n * c * h * w
                && (0..n * c * h * w).all(|i| m[i] || !l.holds((i / w) % h, i % w))
        });
        if !given {
            bail!(
                "the model draws an image given its low-res subsample (rows and columns divisible by {}): give those pixels (`pixc sample` takes them from the test set's images)",
                l.factor
            );
        }
    }
    if let Some((v, m)) = keep {
        let size = n * tm.dims();
        if v.len() != size || m.len() != size {
            bail!("the given sub-pixels hold {} values and {} mask entries, expected {size} for {n} images", v.len(), m.len());
        }
        if let Some(&bad) = v.iter().find(|&&x| x as usize >= tm.levels) {
            bail!(
                "a given sub-pixel has value {bad}, but the model has only {} levels (0..{})",
                tm.levels,
                tm.levels - 1
            );
        }
    }
    Ok(())
}

/// What a low-res model draws given: the low-res pixels of `images` (`n` of them,
/// N x C x H x W) as `(values, mask)` for a sampler's `keep`, other pixels 0 and free.
/// None for a model without a low-res input.
pub fn low_res_keep(
    im: &crate::ir::ImageSpec,
    images: &[u8],
    n: usize,
) -> Option<(Vec<u8>, Vec<bool>)> {
    let l = im.low_res?;
    let (h, w) = (im.height, im.width);
    let mask: Vec<bool> = (0..n * im.dims())
        .map(|i| l.holds((i / w) % h, i % w))
        .collect();
    let vals = images
        .iter()
        .zip(&mask)
        .map(|(&v, &m)| if m { v } else { 0 })
        .collect();
    Some((vals, mask))
}

/// Full-size images (N x C x H x W, zeros elsewhere) holding `small` (N x C x H/f x W/f)
/// at the low-res pixels: a multi-scale model's first stage, placed for the second.
pub fn place_low_res(im: &crate::ir::ImageSpec, small: &[u8], n: usize) -> Vec<u8> {
    let f = im.low_res.map_or(1, |l| l.factor);
    place_low_res_at(f, im.channels, im.height, im.width, small, n)
}

/// `place_low_res` for factor `f` and `n` images of `c x h x w`.
pub fn place_low_res_at(f: usize, c: usize, h: usize, w: usize, small: &[u8], n: usize) -> Vec<u8> {
    let (hs, ws) = (h.div_ceil(f), w.div_ceil(f));
    let mut out = vec![0u8; n * c * h * w];
    for b in 0..n {
        for ch in 0..c {
            for r in 0..hs {
                for col in 0..ws {
                    out[((b * c + ch) * h + r * f) * w + col * f] =
                        small[((b * c + ch) * hs + r) * ws + col];
                }
            }
        }
    }
    out
}

/// A conditional model (`classes` > 0) draws each image of a class: it needs `n` labels,
/// each below `classes`; an unconditional one takes none.
pub fn check_labels(classes: usize, n: usize, labels: Option<&[u16]>) -> Result<()> {
    match (classes, labels) {
        (0, None) => Ok(()),
        (0, Some(_)) => bail!("the model is not class-conditional: it takes no class"),
        (k, None) => bail!(
            "the model is class-conditional ({k} classes): give a class (`--class 0..{}`)",
            k - 1
        ),
        (k, Some(l)) => {
            if l.len() != n {
                bail!("{} labels given for {n} images", l.len());
            }
            if let Some(&y) = l.iter().find(|&&y| y as usize >= k) {
                bail!(
                    "class {y} is out of range: the model has {k} classes (0..{})",
                    k - 1
                );
            }
            Ok(())
        }
    }
}

/// The reference sampler: a full forward pass per sub-pixel. `keep` fixes sub-pixels that
/// are given (completion): `Some((values, mask))`, both N x C x H x W, `mask` true where
/// the value is kept. `labels`: a conditional model's class of each image.
pub fn sample_reference(
    tm: &TorchModel,
    n: usize,
    seed: u64,
    temperature: f64,
    keep: Option<(&[u8], &[bool])>,
    labels: Option<&[u16]>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<u8>> {
    check_request(n, temperature)?;
    check_keep(tm, n, keep)?;
    check_labels(tm.classes(), n, labels)?;
    let y = labels.map(TorchModel::labels_tensor);
    let (c, h, w) = (tm.channels, tm.height, tm.width);
    let u = uniforms(n, c, h, w, seed);
    let mut img = vec![0u8; n * c * h * w];
    if let Some((vals, _)) = keep {
        img.copy_from_slice(vals);
    }
    let l = crate::ir::logits_per_sub_pixel(tm.head, tm.levels);
    let total = h * w * c;
    tch::no_grad(|| -> Result<()> {
        for r in 0..h {
            for col in 0..w {
                for ch in 0..c {
                    let step = (r * w + col) * c + ch;
                    progress(step, total);
                    if let Some((_, mask)) = keep {
                        if (0..n).all(|b| mask[((b * c + ch) * h + r) * w + col]) {
                            continue;
                        }
                    }
                    let x = tm.images_to_tensor(&img, n);
                    let logits = tm.forward_labeled(&x, y.as_ref());
                    // Logits of this sub-pixel for every image: N x L.
                    let sel = logits
                        .narrow(1, (ch * l) as i64, l as i64)
                        .select(2, r as i64)
                        .select(2, col as i64)
                        .to_device(tch::Device::Cpu)
                        .to_kind(Kind::Float)
                        .contiguous();
                    let mut v = vec![0f32; n * l];
                    sel.copy_data(&mut v, n * l);
                    for b in 0..n {
                        let i = ((b * c + ch) * h + r) * w + col;
                        if let Some((_, mask)) = keep {
                            if mask[i] {
                                continue;
                            }
                        }
                        img[i] = draw_scaled(&v[b * l..(b + 1) * l], tm.head, temperature, u[i]);
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(img)
}

/// What to draw, as every sampler takes it: `n` images from `seed` at `temperature`, with
/// the sub-pixels of `keep` given (completion) and a conditional model's `labels`.
#[derive(Clone, Copy, Debug)]
pub struct Draw<'a> {
    pub n: usize,
    pub seed: u64,
    pub temperature: f64,
    pub keep: Option<(&'a [u8], &'a [bool])>,
    pub labels: Option<&'a [u16]>,
}

/// Draws with the reference sampler (`reference`) or the cached one.
pub fn sample_with(
    tm: &TorchModel,
    d: &Draw,
    reference: bool,
    progress: impl FnMut(usize, usize),
) -> Result<Vec<u8>> {
    let Draw {
        n,
        seed,
        temperature,
        keep,
        labels,
    } = *d;
    if reference {
        sample_reference(tm, n, seed, temperature, keep, labels, progress)
    } else {
        sample_fast(tm, n, seed, temperature, keep, labels, progress)
    }
}

/// Threads the cached sampler uses by default: the machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The cached ("fast") sampler (`backend::cached`): same arguments and, for the same seed, the
/// same images as `sample_reference`, computing only what each new pixel changes. Runs
/// on the CPU whatever device `tm` is on.
pub fn sample_fast(
    tm: &TorchModel,
    n: usize,
    seed: u64,
    temperature: f64,
    keep: Option<(&[u8], &[bool])>,
    labels: Option<&[u16]>,
    progress: impl FnMut(usize, usize),
) -> Result<Vec<u8>> {
    Ok(sample_fast_with_logits(
        tm,
        n,
        seed,
        temperature,
        keep,
        labels,
        false,
        default_threads(),
        progress,
    )?
    .0)
}

/// `sample_fast`, optionally also returning the raw logits it drew every sub-pixel from
/// (N x C*L x H x W like the model's output; NaN where nothing was drawn), for checking
/// them against a full forward pass.
#[allow(clippy::too_many_arguments)]
pub fn sample_fast_with_logits(
    tm: &TorchModel,
    n: usize,
    seed: u64,
    temperature: f64,
    keep: Option<(&[u8], &[bool])>,
    labels: Option<&[u16]>,
    record: bool,
    threads: usize,
    progress: impl FnMut(usize, usize),
) -> Result<(Vec<u8>, Option<Vec<f32>>)> {
    check_request(n, temperature)?;
    check_keep(tm, n, keep)?;
    check_labels(tm.classes(), n, labels)?;
    let cm = CachedModel::new(tm.model(), &tm.to_weights())?;
    let u = uniforms(n, tm.channels, tm.height, tm.width, seed);
    cm.sample_with(n, &u, temperature, keep, labels, record, threads, progress)
}

/// Labels 0, 1, ..., classes-1, 0, 1, ... for `n` images of a conditional model (`None`
/// for an unconditional one): what benchmarks and progress grids draw.
pub fn cycle_labels(classes: usize, n: usize) -> Option<Vec<u16>> {
    (classes > 0).then(|| (0..n).map(|i| (i % classes) as u16).collect())
}

/// Times both samplers on `n` images from `seed` (temperature 1): returns
/// `(reference_seconds, fast_seconds)`. The cached sampler runs `torch::threads()` threads
/// over the samples; the reference runs on libtorch's intra-op pool.
/// The fast time includes preparing the weights. Fails if the two disagree (a bug, or a
/// draw flipped by float rounding: then try another seed).
pub fn bench_sampling(tm: &TorchModel, n: usize, seed: u64) -> Result<(f64, f64)> {
    let threads = crate::backend::torch::threads();
    let t0 = std::time::Instant::now();
    let y = cycle_labels(tm.classes(), n);
    let y = y.as_deref();
    let fast = sample_fast_with_logits(tm, n, seed, 1.0, None, y, false, threads, |_, _| {})?.0;
    let tf = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let reference = sample_reference(tm, n, seed, 1.0, None, y, |_, _| {})?;
    let tr = t1.elapsed().as_secs_f64();
    if fast != reference {
        let diff = fast.iter().zip(&reference).filter(|(a, b)| a != b).count();
        bail!(
            "the cached and reference samplers disagree on {diff} of {} sub-pixels (seed {seed})",
            fast.len()
        );
    }
    Ok((tr, tf))
}

/// Writes a small sample grid into a run folder (`samples/step_NNNNNNN.png`), with the
/// cached sampler. The trainer calls this at each validation when asked to.
pub fn grid_for_run(tm: &TorchModel, dir: &Path, step: u64, valid: &[u8]) -> Result<()> {
    let n = 8;
    let y = cycle_labels(tm.classes(), n);
    // A low-res model draws the rest of the first validation images' low-res pixels.
    let im = tm.model().graph().image;
    let given = match im.low_res {
        Some(_) => {
            let have = valid.len() / im.dims().max(1);
            if have < n {
                bail!("the validation split has {have} images; the grid needs {n}");
            }
            low_res_keep(&im, &valid[..n * im.dims()], n)
        }
        None => None,
    };
    let keep = given.as_ref().map(|(v, m)| (&v[..], &m[..]));
    let imgs = sample_fast(tm, n, step, 1.0, keep, y.as_deref(), |_, _| {})?;
    let d = dir.join("samples");
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let grid = png_grid::grid(&imgs, n, tm.channels, tm.height, tm.width, tm.levels, 4, 2)?;
    crate::util::write_atomic(&d.join(format!("step_{step:07}.png")), &grid)?;
    Ok(())
}
