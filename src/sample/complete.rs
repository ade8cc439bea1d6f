//! Image completion: keep the top rows of an image, sample the rest (several times), and
//! draw the paper's figure: original, occluded input, completions, one row per image.

use super::png_grid;
use crate::backend::torch::TorchModel;
use crate::front::ast::Spec;
use crate::ir::validate::Model;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Which sub-pixels to keep: every channel of rows `< keep_rows`, for `n` images.
pub fn keep_rows_mask(n: usize, c: usize, h: usize, w: usize, keep_rows: usize) -> Vec<bool> {
    let mut m = vec![false; n * c * h * w];
    for plane in 0..n * c {
        for r in 0..keep_rows.min(h) {
            m[(plane * h + r) * w..(plane * h + r + 1) * w].fill(true);
        }
    }
    m
}

/// Samples `samples` completions of each of the `k` images in `originals` (K x C x H x W),
/// keeping rows `< keep_rows` exactly. Returns K * samples images, image-major (all
/// completions of image 0 first). `reference` selects the full-forward sampler.
/// `labels`: a class-conditional model's class for each of the `k` images.
#[allow(clippy::too_many_arguments)]
pub fn complete(
    tm: &TorchModel,
    originals: &[u8],
    k: usize,
    keep_rows: usize,
    samples: usize,
    seed: u64,
    temperature: f64,
    reference: bool,
    labels: Option<&[u16]>,
    progress: impl FnMut(usize, usize),
) -> Result<Vec<u8>> {
    let size = tm.dims();
    super::check_labels(tm.classes(), k, labels)?;
    if originals.len() != k * size {
        bail!(
            "{} values given for {k} images of {size} sub-pixels",
            originals.len()
        );
    }
    if keep_rows > tm.height {
        bail!(
            "--keep-rows {keep_rows} is more than the image's {} rows",
            tm.height
        );
    }
    if samples == 0 || k == 0 {
        bail!(
            "nothing to complete: {k} image(s), {samples} sample(s) each (both must be at least 1)"
        );
    }
    let n = k * samples;
    if n > super::MAX_SAMPLES {
        bail!(
            "{k} images x {samples} completions = {n} samples, more than the {} one call draws; use fewer images or samples",
            super::MAX_SAMPLES
        );
    }
    let mut given = Vec::with_capacity(n * size);
    for i in 0..k {
        for _ in 0..samples {
            given.extend_from_slice(&originals[i * size..(i + 1) * size]);
        }
    }
    let mut mask = keep_rows_mask(n, tm.channels, tm.height, tm.width, keep_rows);
    // A low-res model also keeps the original's low-res pixels: they are its input.
    if let Some((_, lr)) = super::low_res_keep(&tm.model().graph().image, &given, n) {
        mask.iter_mut().zip(lr).for_each(|(m, l)| *m |= l);
    }
    // Hidden sub-pixels start at 0, as in unconditional sampling.
    for (v, &kept) in given.iter_mut().zip(&mask) {
        if !kept {
            *v = 0;
        }
    }
    // Every completion of image i has image i's class.
    let labels: Option<Vec<u16>> = labels.map(|l| {
        l.iter()
            .flat_map(|&y| std::iter::repeat_n(y, samples))
            .collect()
    });
    let draw = super::Draw {
        n,
        seed,
        temperature,
        keep: Some((&given, &mask)),
        labels: labels.as_deref(),
    };
    super::sample_with(tm, &draw, reference, progress)
}

/// Colour of the hidden part in the occluded column: mid-gray, or a red-ish gray for RGB.
pub fn hidden_colour(c: usize) -> [u8; 3] {
    if c == 3 {
        [176, 96, 96]
    } else {
        [128, 128, 128]
    }
}

/// The completion figure as PNG: one row per image with the original, the occluded input
/// (hidden rows in `hidden_colour`) and the `samples` completions.
#[allow(clippy::too_many_arguments)]
pub fn figure(
    originals: &[u8],
    k: usize,
    completions: &[u8],
    samples: usize,
    (c, h, w, levels): (usize, usize, usize, usize),
    keep_rows: usize,
    scale: usize,
) -> Result<Vec<u8>> {
    let size = c * h * w;
    if originals.len() < k * size || completions.len() < k * samples * size {
        bail!("not enough image data for {k} images and {samples} completions each");
    }
    let hidden = hidden_colour(c);
    let mut cells = Vec::with_capacity(k * (samples + 2));
    for i in 0..k {
        let orig = png_grid::to_rgb(originals, i, c, h, w, levels);
        let mut occluded = orig.clone();
        for px in occluded.chunks_exact_mut(3).skip(keep_rows.min(h) * w) {
            px.copy_from_slice(&hidden);
        }
        cells.push(Some(orig));
        cells.push(Some(occluded));
        for s in 0..samples {
            cells.push(Some(png_grid::to_rgb(
                completions,
                i * samples + s,
                c,
                h,
                w,
                levels,
            )));
        }
    }
    png_grid::grid_rgb(&cells, h, w, samples + 2, scale)
}

/// The first `k` test images of the run's data set (`train.data` of its spec), with their
/// class labels when the data set has them.
pub fn test_images(
    spec: &Spec,
    model: &Model,
    k: usize,
    mnist_dir: Option<PathBuf>,
) -> Result<(Vec<u8>, Option<Vec<u16>>)> {
    let name = spec
        .train
        .as_ref()
        .map(|t| t.data.clone())
        .unwrap_or_else(|| crate::front::ast::Train::default().data);
    let src = crate::data::DataSource::parse(&name)?;
    let im = model.graph().image;
    let opts = crate::data::LoadOptions {
        mnist_dir,
        png_size: Some((im.channels, im.height, im.width)),
        ..Default::default()
    };
    let ds = crate::data::load(&src, &opts)
        .with_context(|| format!("cannot load the run's data set `{name}`"))?;
    if (ds.channels, ds.height, ds.width, ds.levels)
        != (im.channels, im.height, im.width, im.levels)
    {
        bail!(
            "the data set {} has {}x{}x{} images with {} levels, but the model is {}x{}x{} with {} levels",
            ds.name,
            ds.channels,
            ds.height,
            ds.width,
            ds.levels,
            im.channels,
            im.height,
            im.width,
            im.levels
        );
    }
    if k == 0 {
        bail!("--from-test 0 selects no images: give at least 1");
    }
    if k > ds.test.n {
        bail!(
            "--from-test {k} asks for more images than the test split of {} holds ({})",
            ds.name,
            ds.test.n
        );
    }
    Ok((
        ds.test.images[..k * ds.image_size()].to_vec(),
        ds.test.labels.as_ref().map(|l| l[..k].to_vec()),
    ))
}

/// A user's PNG, PGM or PPM fitted to the model: `(values C x H x W, notes for stderr)`. Channels must
/// match (grayscale for 1 channel, RGB for 3; an RGB file with R = G = B everywhere counts
/// as grayscale; alpha is dropped); a different size is
/// resized with nearest neighbour; 8-bit values are mapped to the model's levels
/// (rounded, i.e. thresholded at 128 for binary models).
pub fn load_image(
    path: &Path,
    c: usize,
    h: usize,
    w: usize,
    levels: usize,
) -> Result<(Vec<u8>, Vec<String>)> {
    // PGM / PPM (what `pixc sample --pgm` writes) by their magic, anything else as PNG.
    let head = std::fs::read(path)
        .map(|b| b.get(..2).map(<[u8]>::to_vec))
        .unwrap_or_default();
    let (planes, ic, ih, iw, maxval) = match head.as_deref() {
        Some(b"P5") | Some(b"P6") => {
            let bytes = std::fs::read(path)?;
            let (ic, ih, iw, maxval, v) = super::raw::read_netpbm(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            (v, ic, ih, iw, maxval)
        }
        _ => {
            let (img, ih, iw) = crate::data::pngdir::decode(path, None)?;
            let ic = if img.gray { 1 } else { 3 };
            (img.planes, ic, ih, iw, 255)
        }
    };
    let plane = |ch: usize| &planes[ch * ih * iw..(ch + 1) * ih * iw];
    // An RGB file whose three channels are equal everywhere is a grayscale image.
    let gray_rgb = ic == 3 && plane(0) == plane(1) && plane(1) == plane(2);
    if ic != c && !(c == 1 && gray_rgb) {
        bail!(
            "{} is {} but the model draws {} images; convert it first (e.g. `convert in.png -colorspace {} out.png`)",
            path.display(),
            if ic == 1 { "grayscale (1 channel)" } else { "colour (RGB, 3 channels)" },
            if c == 1 { "grayscale (1-channel)" } else { "colour (3-channel)" },
            if c == 1 { "Gray" } else { "sRGB -type TrueColor" }
        );
    }
    let mut notes = Vec::new();
    if (ih, iw) != (h, w) {
        notes.push(format!(
            "{} is {iw}x{ih} pixels; resized to the model's {w}x{h} with nearest neighbour",
            path.display()
        ));
    }
    if maxval != levels - 1 {
        notes.push(format!(
            "values 0..{maxval} mapped to the model's {levels} levels (v * {} / {maxval}, rounded)",
            levels - 1
        ));
    }
    let mut out = vec![0u8; c * h * w];
    for y in 0..h {
        let sy = (y * ih / h).min(ih - 1);
        for x in 0..w {
            let sx = (x * iw / w).min(iw - 1);
            for ch in 0..c {
                let v = plane(ch)[sy * iw + sx] as usize;
                out[(ch * h + y) * w + x] = ((v * (levels - 1) + maxval / 2) / maxval) as u8;
            }
        }
    }
    Ok((out, notes))
}
