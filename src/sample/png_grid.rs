//! PNG grids of images (grayscale or RGB), scaled up with nearest-neighbour pixels.

use anyhow::{bail, Context, Result};

/// Image `k` of a batch (N x C x H x W, values 0..levels-1) as 8-bit RGB, H x W x 3.
pub fn to_rgb(images: &[u8], k: usize, c: usize, h: usize, w: usize, levels: usize) -> Vec<u8> {
    let max = (levels - 1).max(1) as f32;
    let v = |cc: usize, y: usize, x: usize| {
        (images[((k * c + cc) * h + y) * w + x] as f32 / max * 255.0).round() as u8
    };
    let mut out = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            if c == 3 {
                out.extend_from_slice(&[v(0, y, x), v(1, y, x), v(2, y, x)]);
            } else {
                let g = v(0, y, x);
                out.extend_from_slice(&[g, g, g]);
            }
        }
    }
    out
}

/// Encodes 8-bit RGB pixels (width x height x 3) as PNG.
pub fn encode_rgb(rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    if rgb.len() != width * height * 3 || width == 0 || height == 0 {
        bail!(
            "cannot encode a {width} x {height} PNG from {} bytes",
            rgb.len()
        );
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().context("encoding PNG")?;
        wr.write_image_data(rgb).context("encoding PNG")?;
    }
    Ok(out)
}

/// Size in pixels of a grid of `rows` x `cols` cells of `h` x `w` pixels drawn `scale`
/// times larger, with 1-pixel gutters: (width, height).
pub fn grid_size(rows: usize, cols: usize, h: usize, w: usize, scale: usize) -> (usize, usize) {
    (cols * (w * scale + 1) + 1, rows * (h * scale + 1) + 1)
}

/// Lays out RGB cells (each `h x w x 3`, `None` = left empty) in `cols` columns, row-major,
/// each pixel drawn `scale` x `scale`, with 1-pixel gray gutters; returns PNG bytes.
pub fn grid_rgb(
    cells: &[Option<Vec<u8>>],
    h: usize,
    w: usize,
    cols: usize,
    scale: usize,
) -> Result<Vec<u8>> {
    let n = cells.len();
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let scale = scale.max(1);
    let (gw, gh) = grid_size(rows, cols, h, w, scale);
    let (cw, ch) = (w * scale + 1, h * scale + 1);
    let mut rgb = vec![128u8; gw * gh * 3];
    for (k, cell) in cells.iter().enumerate() {
        let Some(cell) = cell else { continue };
        let (gx, gy) = ((k % cols) * cw + 1, (k / cols) * ch + 1);
        for y in 0..h {
            for x in 0..w {
                let px = &cell[(y * w + x) * 3..(y * w + x) * 3 + 3];
                for dy in 0..scale {
                    let o = ((gy + y * scale + dy) * gw + gx + x * scale) * 3;
                    for dx in 0..scale {
                        rgb[o + dx * 3..o + dx * 3 + 3].copy_from_slice(px);
                    }
                }
            }
        }
    }
    encode_rgb(&rgb, gw, gh)
}

/// Encodes `n` images (N x C x H x W, values 0..levels-1) as one PNG grid with `cols`
/// columns, each pixel drawn `scale` x `scale`, with 1-pixel gray gutters.
#[allow(clippy::too_many_arguments)]
pub fn grid(
    images: &[u8],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    levels: usize,
    cols: usize,
    scale: usize,
) -> Result<Vec<u8>> {
    if images.len() < n * c * h * w {
        bail!(
            "{} values cannot hold {n} images of {c} x {h} x {w}",
            images.len()
        );
    }
    let cells: Vec<Option<Vec<u8>>> = (0..n)
        .map(|k| Some(to_rgb(images, k, c, h, w, levels)))
        .collect();
    grid_rgb(&cells, h, w, cols, scale)
}

/// A scale that draws an `h x w` image about 112 pixels across (28 x 28 -> 4).
pub fn auto_scale(h: usize, w: usize) -> usize {
    (112 / h.max(w).max(1)).max(1)
}
