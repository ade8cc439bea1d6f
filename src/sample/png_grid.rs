//! PNG grids of images (grayscale or RGB), scaled up with nearest-neighbour pixels.

use anyhow::{Context, Result};

/// Encodes `n` images (N x C x H x W, values 0..levels-1) as one PNG grid with `cols`
/// columns, each pixel drawn `scale` x `scale`, with 1-pixel gray gutters.
pub fn grid(images: &[u8], n: usize, c: usize, h: usize, w: usize, levels: usize, cols: usize, scale: usize) -> Result<Vec<u8>> {
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let gut = 1;
    let (cw, ch) = (w * scale + gut, h * scale + gut);
    let (gw, gh) = (cols * cw + gut, rows * ch + gut);
    let mut rgb = vec![128u8; gw * gh * 3];
    let max = (levels - 1).max(1) as f32;
    for k in 0..n {
        let (gx, gy) = ((k % cols) * cw + gut, (k / cols) * ch + gut);
        for y in 0..h {
            for x in 0..w {
                let px: [u8; 3] = if c == 3 {
                    let v = |cc: usize| (images[((k * c + cc) * h + y) * w + x] as f32 / max * 255.0).round() as u8;
                    [v(0), v(1), v(2)]
                } else {
                    let v = (images[(k * h + y) * w + x] as f32 / max * 255.0).round() as u8;
                    [v, v, v]
                };
                for dy in 0..scale {
                    for dx in 0..scale {
                        let o = ((gy + y * scale + dy) * gw + gx + x * scale + dx) * 3;
                        rgb[o..o + 3].copy_from_slice(&px);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, gw as u32, gh as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().context("encoding PNG")?;
        wr.write_image_data(&rgb).context("encoding PNG")?;
    }
    Ok(out)
}
