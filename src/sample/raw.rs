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

/// A one-dimensional `.npy` file of int64 values (labels, as NumPy reads them).
pub fn npy_i64(values: &[i64]) -> Result<Vec<u8>> {
    use ndarray_npy::WriteNpyExt;
    let mut out = Vec::with_capacity(128 + 8 * values.len());
    ndarray::Array1::from(values.to_vec())
        .write_npy(&mut out)
        .context("cannot encode .npy")?;
    Ok(out)
}

/// Reads a `.npy` file of uint8 values (as `npy_u8` writes): `(shape, values in C order)`.
pub fn read_npy_u8(bytes: &[u8]) -> Result<(Vec<usize>, Vec<u8>)> {
    use ndarray_npy::ReadNpyExt;
    let a = ndarray::ArrayD::<u8>::read_npy(bytes).map_err(|e| {
        anyhow::anyhow!(
            "not a .npy file of uint8 values ({e}); `pixc sample --npy FILE` writes one"
        )
    })?;
    let shape = a.shape().to_vec();
    let values = a.as_standard_layout().iter().copied().collect();
    Ok((shape, values))
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

/// Reads a binary PGM (P5) or PPM (P6) file with maxval at most 255, as `netpbm` writes:
/// `(channels, height, width, maxval, values C x H x W)`.
pub fn read_netpbm(bytes: &[u8]) -> Result<(usize, usize, usize, usize, Vec<u8>)> {
    let c = match bytes.get(..2) {
        Some(b"P5") => 1,
        Some(b"P6") => 3,
        _ => bail!("not a binary PGM (P5) or PPM (P6) file"),
    };
    // Header: magic, width, height, maxval, separated by white space (and `#` comments),
    // then one white-space byte before the pixels.
    let mut fields = Vec::new();
    let mut i = 2;
    while fields.len() < 3 {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'#') {
            if bytes[i] == b'#' {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let n: usize = std::str::from_utf8(&bytes[start..i])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("malformed PGM/PPM header"))?;
        fields.push(n);
    }
    let (w, h, maxval) = (fields[0], fields[1], fields[2]);
    if !(1..=255).contains(&maxval) || w == 0 || h == 0 || w.saturating_mul(h) > 1 << 26 {
        bail!("unsupported PGM/PPM: {w}x{h}, maxval {maxval} (1 to 255 is read)");
    }
    let body = &bytes[(i + 1).min(bytes.len())..];
    if body.len() < c * h * w {
        bail!(
            "the PGM/PPM file is cut short: {} of {} bytes",
            body.len(),
            c * h * w
        );
    }
    let mut out = vec![0u8; c * h * w];
    for p in 0..h * w {
        for ch in 0..c {
            let v = body[p * c + ch];
            if v as usize > maxval {
                bail!("a value {v} is above the file's maxval {maxval}");
            }
            out[ch * h * w + p] = v;
        }
    }
    Ok((c, h, w, maxval, out))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netpbm_files_read_back() {
        let img: Vec<u8> = (0..2 * 3 * 3).map(|i| (i % 4) as u8).collect();
        for c in [1, 3] {
            let bytes = netpbm(&img[..c * 6], c, 2, 3, 4).unwrap();
            let (rc, h, w, maxval, v) = read_netpbm(&bytes).unwrap();
            assert_eq!((rc, h, w, maxval), (c, 2, 3, 3));
            assert_eq!(v, img[..c * 6]);
        }
        assert!(read_netpbm(b"P5\n2 2\n255\n\x00").is_err());
        assert!(read_netpbm(b"\x89PNG").is_err());
    }
}
