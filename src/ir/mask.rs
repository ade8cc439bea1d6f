//! Convolution masks with R/G/B colour groups, and the kernel crop they allow: the one
//! definition every back end uses (through the parameter descriptors of `params_of`).
//!
//! Feature maps are split into `groups` contiguous blocks (R, G, B for colour input, one
//! block for grayscale): channel `c` of a chunk of `n` channels is in group
//! `floor(c * groups / n)`, so the blocks are as equal as the count allows (128 channels:
//! 43 R, 43 G, 42 B) and every group has a channel once `n >= groups`, which validation
//! requires. A tap before the centre pixel (raster order) sees every group;
//! at the centre, output group g sees input groups < g (mask A) or <= g (mask B); taps
//! after the centre see nothing. The gated PixelCNN's vertical-stack masks see every
//! group of the rows above (`Above`), or of the rows above and the whole centre row
//! (`AboveRow`, on a map that itself sees only rows above). Outputs made of several
//! chunks (LSTM gates, gate halves) are grouped within each chunk, so splitting gates
//! keeps colours apart. `tap` is the rule; the weight masks and the causality pass both
//! read it.

use super::Mask;

/// Colour group of channel `ch` among `total` channels made of `chunks` equal chunks.
pub fn group_of(ch: usize, total: usize, chunks: usize, groups: usize) -> usize {
    let chunk = (total / chunks.max(1)).max(1);
    ((ch % chunk) * groups) / chunk
}

/// What a kernel tap lets through, by its place relative to the centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    /// Every input channel.
    All,
    /// The colour groups the mask allows at the centre (`centre_sees`).
    Centre,
    /// Nothing: the weight is zero there.
    Nothing,
}

/// The rule of `mask` at tap `(y, x)` of a `kh x kw` kernel (centre `(kh/2, kw/2)`).
/// Rows below the centre are `Nothing` under every mask (`Crop` relies on it).
pub fn tap(mask: Mask, y: usize, x: usize, kh: usize, kw: usize) -> Tap {
    let (ch, cw) = (kh / 2, kw / 2);
    match mask {
        Mask::A | Mask::B => {
            if y < ch || (y == ch && x < cw) {
                Tap::All
            } else if y == ch && x == cw {
                Tap::Centre
            } else {
                Tap::Nothing
            }
        }
        Mask::Above if y < ch => Tap::All,
        Mask::AboveRow if y <= ch => Tap::All,
        Mask::Above | Mask::AboveRow => Tap::Nothing,
    }
}

/// Whether output group `go` sees input group `gi` at a `Tap::Centre`.
pub fn centre_sees(mask: Mask, go: usize, gi: usize) -> bool {
    match mask {
        Mask::A => gi < go,
        Mask::B => gi <= go,
        // These masks have no `Centre` tap.
        Mask::Above | Mask::AboveRow => false,
    }
}

/// The 0/1 mask of a `[out, cin, kh, kw]` weight, row-major.
pub fn conv_mask(
    out: usize,
    cin: usize,
    kh: usize,
    kw: usize,
    mask: Mask,
    groups: usize,
    out_chunks: usize,
) -> Vec<f32> {
    let mut m = vec![0f32; out * cin * kh * kw];
    for o in 0..out {
        let go = group_of(o, out, out_chunks, groups);
        for i in 0..cin {
            let gi = group_of(i, cin, 1, groups);
            for y in 0..kh {
                for x in 0..kw {
                    let on = match tap(mask, y, x, kh, kw) {
                        Tap::All => true,
                        Tap::Centre => centre_sees(mask, go, gi),
                        Tap::Nothing => false,
                    };
                    if on {
                        m[((o * cin + i) * kh + y) * kw + x] = 1.0;
                    }
                }
            }
        }
    }
    m
}

/// The rows of a masked `kh x kw` kernel that may be nonzero, and the padding that keeps
/// `H x W` when only those rows are convolved.
///
/// Every row below the centre is zero under every mask (kernels are odd, which validation
/// enforces), so back ends convolve only the top `kh/2 + 1` rows over an input padded at
/// the top only: the same result with 5/9 of the work for a 3x3 kernel and 4/7 for a 7x7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    /// Kernel rows kept (from the top).
    pub rows: usize,
    pub kw: usize,
    /// Zero rows added above the input.
    pub pad_top: usize,
    /// Zero columns added on each side.
    pub pad_side: usize,
}

impl Crop {
    pub fn of(kh: usize, kw: usize) -> Crop {
        Crop {
            rows: kh / 2 + 1,
            kw,
            pad_top: kh / 2,
            pad_side: kw / 2,
        }
    }

    /// Keeps the first `rows` rows of every `kh x kw` kernel of a row-major weight.
    pub fn apply(&self, data: &[f32], kh: usize) -> Vec<f32> {
        data.chunks(kh * self.kw)
            .flat_map(|k| k[..self.rows * self.kw].iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_channel_mask_a_hides_the_centre() {
        let m = conv_mask(1, 1, 3, 3, Mask::A, 1, 1);
        assert_eq!(m, vec![1., 1., 1., 1., 0., 0., 0., 0., 0.]);
        let m = conv_mask(1, 1, 3, 3, Mask::B, 1, 1);
        assert_eq!(m, vec![1., 1., 1., 1., 1., 0., 0., 0., 0.]);
    }

    #[test]
    fn colour_groups_at_the_centre() {
        // 3 in, 3 out, 1x1: mask A is strictly lower triangular, B lower triangular.
        let a = conv_mask(3, 3, 1, 1, Mask::A, 3, 1);
        assert_eq!(a, vec![0., 0., 0., 1., 0., 0., 1., 1., 0.]);
        let b = conv_mask(3, 3, 1, 1, Mask::B, 3, 1);
        assert_eq!(b, vec![1., 0., 0., 1., 1., 0., 1., 1., 1.]);
    }

    #[test]
    fn vertical_stack_masks() {
        // 3x3: `Above` keeps the top row, `AboveRow` the top two, whatever the groups.
        let a = conv_mask(1, 1, 3, 3, Mask::Above, 1, 1);
        assert_eq!(a, vec![1., 1., 1., 0., 0., 0., 0., 0., 0.]);
        let r = conv_mask(3, 3, 3, 3, Mask::AboveRow, 3, 1);
        for k in r.chunks(9) {
            assert_eq!(k, [1., 1., 1., 1., 1., 1., 0., 0., 0.]);
        }
    }

    #[test]
    fn gate_chunks_are_grouped_separately() {
        // 4 chunks of 3 channels: each chunk is R, G, B.
        let groups: Vec<usize> = (0..12).map(|c| group_of(c, 12, 4, 3)).collect();
        assert_eq!(groups, vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }
}
