//! Raw sample values on disk: NumPy `.npy` (uint8, N x C x H x W) and Netpbm files (one
//! `.pgm` per grayscale image, `.ppm` per colour image), values unscaled (maxval =
//! levels - 1).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A `.npy` file holding `data` as uint8 with the given C-order shape.
pub fn npy_u8(data: &[u8], shape: &[usize]) -> Result<Vec<u8>> {
    use ndarray_npy::WriteNpyExt;
    let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), data.to_vec())
        .context("the values do not fill the shape")?;
    let mut out = Vec::with_capacity(128 + data.len());
    a.write_npy(&mut out).context("cannot encode .npy")?;
    Ok(out)
}

/// One image (C x H x W, C = 1 or 3) as binary PGM (P5) or PPM (P6) with maxval
/// `levels - 1`.
pub fn netpbm(image: &[u8], c: usize, h: usize, w: usize, levels: usize) -> Result<Vec<u8>> {
    let maxval = levels.saturating_sub(1).clamp(1, 255);
    let (magic, body) = match c {
        1 => ("P5", image[..h * w].to_vec()),
        3 => {
            let mut b = Vec::with_capacity(3 * h * w);
            for p in 0..h * w {
                for ch in 0..3 {
                    b.push(image[ch * h * w + p]);
                }
            }
            ("P6", b)
        }
        _ => bail!("Netpbm files hold 1 or 3 channels, not {c}"),
    };
    let mut out = format!("{magic}\n{w} {h}\n{maxval}\n").into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Writes `sample_000.pgm` (or `.ppm`) ... into `dir` (created if missing), each file
/// atomically. Returns the paths written.
pub fn write_netpbm_dir(
    dir: &Path,
    images: &[u8],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    levels: usize,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let ext = if c == 3 { "ppm" } else { "pgm" };
    let digits = (n.max(1) - 1).to_string().len().max(3);
    let size = c * h * w;
    let mut paths = Vec::with_capacity(n);
    for k in 0..n {
        let p = dir.join(format!("sample_{k:0digits$}.{ext}"));
        let bytes = netpbm(&images[k * size..(k + 1) * size], c, h, w, levels)?;
        crate::util::write_atomic(&p, &bytes)
            .with_context(|| format!("cannot write {}", p.display()))?;
        paths.push(p);
    }
    Ok(paths)
}
