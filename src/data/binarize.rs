//! Stochastic binarization of 8-bit gray images: the fixed-seed static binarization used for
//! binarized MNIST (the PixelRNN paper's protocol) and the per-epoch dynamic variant.
//!
//! The exact rule is spelled out so that anyone can reproduce the static dataset bit for bit
//! without pixc: pixel value `v` in `0..=255` becomes 1 iff `u * 255 < v * 2^32`, where `u`
//! is the next `u32` from the generator (`RngCore::next_u32`), computed in 64-bit integers.
//! That is `u / 2^32 < v / 255`, i.e. Bernoulli(v/255) up to 2^-32, with no floating point
//! (so no platform rounding differences), and exact at the ends: 0 never fires, 255 always.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seed of the static binarization. The ChaCha8 key is this value's 8 little-endian bytes
/// followed by 24 zero bytes (`ChaCha8Rng::from_seed`, stream 0, from word 0). We build the
/// key by hand instead of using `seed_from_u64` so the key does not depend on how
/// `rand_core` expands a `u64`.
///
/// Changing it changes the dataset, which makes likelihoods incomparable with earlier runs;
/// it is also written into the cache header so old caches are rebuilt.
pub const BINARIZE_SEED: u64 = 0x5EED_B1A2_2016_0001;

/// The generator of the static binarization, at the start of its stream.
pub(crate) fn static_rng() -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&BINARIZE_SEED.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// The Bernoulli(v/255) decision for one pixel given one uniform `u32` (see module docs).
#[inline]
fn pixel_on(u: u32, v: u8) -> u8 {
    u8::from(u64::from(u) * 255 < u64::from(v) << 32)
}

/// Appends the binarization of `gray` to `out`, drawing one `u32` per value in order.
pub(crate) fn binarize_into<R: RngCore + ?Sized>(gray: &[u8], rng: &mut R, out: &mut Vec<u8>) {
    out.reserve(gray.len());
    out.extend(gray.iter().map(|&v| pixel_on(rng.next_u32(), v)));
}

/// The static binarization of `gray` (values 0..=255, any layout): a fresh generator seeded
/// with [`BINARIZE_SEED`], one draw per value in slice order. For MNIST, `gray` is the 60,000
/// training images followed by the 10,000 test images, each in raster order, exactly as
/// they appear in the IDX files; [`crate::data::load`] does this (and caches the result).
pub fn binarize_static(gray: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    binarize_into(gray, &mut static_rng(), &mut out);
    out
}

/// A fresh binarization of `gray` with the caller's generator, for the dynamic option: the
/// trainer calls this on [`crate::data::Dataset::train_gray`] once per epoch. Same rule as
/// the static binarization; one `next_u32` per value.
pub fn binarize_dynamic(gray: &[u8], rng: &mut impl rand::Rng) -> Vec<u8> {
    let mut out = Vec::new();
    binarize_into(gray, rng, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_exact() {
        for u in [0u32, 1, 12345, u32::MAX - 1, u32::MAX] {
            assert_eq!(pixel_on(u, 0), 0);
            assert_eq!(pixel_on(u, 255), 1);
        }
        // v = 128: fires iff u < ceil(128 * 2^32 / 255).
        let t = (128u64 << 32).div_ceil(255);
        assert_eq!(pixel_on((t - 1) as u32, 128), 1);
        assert_eq!(pixel_on(t as u32, 128), 0);
    }

    #[test]
    fn static_is_deterministic_and_roughly_right() {
        let gray: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
        let a = binarize_static(&gray);
        assert_eq!(a, binarize_static(&gray));
        let ones: usize = a.iter().map(|&b| b as usize).sum();
        let frac = ones as f64 / a.len() as f64;
        assert!((frac - 0.5).abs() < 0.01, "{frac}");
        // Pinned values, so an accidental change of the rule or the seed is caught.
        assert_eq!(
            binarize_static(&[128; 16]),
            [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0]
        );
    }
}
