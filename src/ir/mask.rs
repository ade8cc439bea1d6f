//! Convolution masks with R/G/B colour groups: the one definition both back ends use.
//!
//! Feature maps are split into `groups` contiguous blocks (R, G, B for colour input, one
//! block for grayscale). A tap before the centre pixel (raster order) sees every group;
//! at the centre, output group g sees input groups < g (mask A) or <= g (mask B); taps
//! after the centre see nothing. Outputs made of several chunks (LSTM gates) are grouped
//! within each chunk, so splitting gates keeps colours apart.

use super::Mask;

/// Colour group of channel `ch` among `total` channels made of `chunks` equal chunks.
pub fn group_of(ch: usize, total: usize, chunks: usize, groups: usize) -> usize {
    let chunk = (total / chunks.max(1)).max(1);
    ((ch % chunk) * groups) / chunk
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
    let (ch, cw) = (kh / 2, kw / 2);
    let mut m = vec![0f32; out * cin * kh * kw];
    for o in 0..out {
        let go = group_of(o, out, out_chunks, groups);
        for i in 0..cin {
            let gi = group_of(i, cin, 1, groups);
            let centre_ok = match mask {
                Mask::A => gi < go,
                Mask::B => gi <= go,
            };
            for y in 0..kh {
                for x in 0..kw {
                    let before = y < ch || (y == ch && x < cw);
                    let centre = y == ch && x == cw;
                    if before || (centre && centre_ok) {
                        m[((o * cin + i) * kh + y) * kw + x] = 1.0;
                    }
                }
            }
        }
    }
    m
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
    fn gate_chunks_are_grouped_separately() {
        // 4 chunks of 3 channels: each chunk is R, G, B.
        let groups: Vec<usize> = (0..12).map(|c| group_of(c, 12, 4, 3)).collect();
        assert_eq!(groups, vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }
}
