//! The activation math every CPU kernel shares (training's fused recurrences, the cached
//! sampler): e^x, sigmoid and tanh written once, as scalar functions and as their AVX2 +
//! FMA forms with the same formulas, so a vector lane and the scalar tail beside it
//! compute the same thing, whichever kernel runs them.

/// Whether this CPU runs the AVX2 + FMA code paths (`avx`, `gemm`'s micro-kernels).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_fma() -> bool {
    // The macro caches the CPUID answer: one relaxed load per call.
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// e^x for x in about [-87, 88]: Cody-Waite range reduction and a degree-6 polynomial
/// (relative error ~2e-7), branch-free so that LLVM vectorises the loops that call it
/// (`avx::exp` is its AVX2 form). glibc's `expf` is a call per value and was a sixth of
/// a cached Diagonal BiLSTM draw.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let k = x * std::f32::consts::LOG2_E + EXP_MAGIC;
    let n = k - EXP_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let [c6, c5, c4, c3, c2, c1, c0] = EXP_POLY;
    let p = c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * c6)))));
    // Integer ops on the bits (not an `as i32` cast, which LLVM scalarises for its
    // saturation) build 2^n.
    let scale = f32::from_bits(k.to_bits().wrapping_sub(EXP_BIAS) << 23);
    p * scale
}

/// 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
const EXP_MAGIC: f32 = 12_582_912.0;
/// ln 2 in two parts (Cody-Waite): n * LN2_HI is exact for the n that occur.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// e^r on [-ln2/2, ln2/2], highest power first: the Taylor terms to r^6.
const EXP_POLY: [f32; 7] = [
    0.001_388_889,
    0.008_333_334,
    0.041_666_668,
    0.166_666_67,
    0.5,
    1.0,
    1.0,
];
/// MAGIC's bits less the exponent bias: (bits(k) - this) << 23 is 2^n.
const EXP_BIAS: u32 = 0x4B40_0000 - 127;

#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    // tanh(x) = 1 - 2/(e^{2x}+1): no cancellation for large |x|, absolute error ~1e-7
    // near 0 (where libtorch's is relative), which the tests' tolerances allow.
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// One LSTM update at one position: gates `g` = pre-activations `[o, f, i, g]` (h each),
/// the previous cell `cp`; writes the new hidden `hn` and cell `cn` (h = `hn.len()`):
/// `c = f cp + i g`, `h = o tanh(c)`.
pub(crate) fn lstm(g: &[f32], cp: &[f32], hn: &mut [f32], cn: &mut [f32]) {
    let h = hn.len();
    assert!(g.len() >= 4 * h && cp.len() >= h && cn.len() >= h);
    // Units the vector path did (none without it); the scalar loop does the rest.
    #[allow(unused_mut)]
    let mut from = 0;
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has the features `avx` is compiled for; lengths checked above.
        from = unsafe { avx::lstm(g, cp, hn, cn) };
    }
    for j in from..h {
        let o = sigmoid(g[j]);
        let f = sigmoid(g[h + j]);
        let i = sigmoid(g[2 * h + j]);
        let c = f * cp[j] + i * tanh(g[3 * h + j]);
        cn[j] = c;
        hn[j] = o * tanh(c);
    }
}

/// A gated unit at one position: `y = tanh(a) * sigmoid(b)`, `g` = `[a, b]` (h each,
/// h = `y.len()`).
pub(crate) fn gated(g: &[f32], y: &mut [f32]) {
    let h = y.len();
    assert!(g.len() >= 2 * h);
    #[allow(unused_mut)]
    let mut from = 0;
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has the features `avx` is compiled for; length checked above.
        from = unsafe { avx::gated(g, y) };
    }
    for j in from..h {
        y[j] = tanh(g[j]) * sigmoid(g[h + j]);
    }
}

/// The functions above eight lanes at a time in AVX2 + FMA intrinsics: the same formulas,
/// their multiply-adds fused. Left to LLVM, the training kernels' gate loop got no FMAs
/// (it does not contract `a * b + c`) and reloaded its constants around spills.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn exp(x: __m256) -> __m256 {
        // The clamp with x second: maxps and minps return their second operand when
        // either is NaN, so a NaN gate stays NaN (as `f32::clamp` keeps it) instead of
        // becoming a finite activation that would hide a diverged model.
        let x = _mm256_min_ps(
            _mm256_set1_ps(88.0),
            _mm256_max_ps(_mm256_set1_ps(-87.0), x),
        );
        let magic = _mm256_set1_ps(super::EXP_MAGIC);
        let k = _mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), magic);
        let n = _mm256_sub_ps(k, magic);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(super::LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(super::LN2_LO), r);
        let [c6, c5, c4, c3, c2, c1, c0] = super::EXP_POLY;
        let mut p = _mm256_fmadd_ps(r, _mm256_set1_ps(c6), _mm256_set1_ps(c5));
        for c in [c4, c3, c2, c1, c0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let bits = _mm256_sub_epi32(
            _mm256_castps_si256(k),
            _mm256_set1_epi32(super::EXP_BIAS as i32),
        );
        _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(bits)))
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn sigmoid(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_div_ps(one, _mm256_add_ps(one, e))
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn tanh(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let e = exp(_mm256_add_ps(x, x));
        _mm256_sub_ps(
            one,
            _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, one)),
        )
    }

    /// `super::lstm`, eight units per pass; returns how many units it did.
    ///
    /// # Safety
    /// AVX2 and FMA present; `g` holds 4h, `cp` and `cn` h (h = `hn.len()`).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn lstm(g: &[f32], cp: &[f32], hn: &mut [f32], cn: &mut [f32]) -> usize {
        let h = hn.len();
        let w8 = h / 8 * 8;
        let g = g.as_ptr();
        let mut j = 0;
        // SAFETY: j + 8 <= h, so every load and store stays in the slices.
        unsafe {
            while j < w8 {
                let ld = |p: *const f32| _mm256_loadu_ps(p.add(j));
                let o = sigmoid(ld(g));
                let f = sigmoid(ld(g.add(h)));
                let i = sigmoid(ld(g.add(2 * h)));
                let c =
                    _mm256_fmadd_ps(f, ld(cp.as_ptr()), _mm256_mul_ps(i, tanh(ld(g.add(3 * h)))));
                _mm256_storeu_ps(cn.as_mut_ptr().add(j), c);
                _mm256_storeu_ps(hn.as_mut_ptr().add(j), _mm256_mul_ps(o, tanh(c)));
                j += 8;
            }
        }
        w8
    }

    /// `super::gated`, eight units per pass; returns how many units it did.
    ///
    /// # Safety
    /// AVX2 and FMA present; `g` holds 2h (h = `y.len()`).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn gated(g: &[f32], y: &mut [f32]) -> usize {
        let h = y.len();
        let w8 = h / 8 * 8;
        let g = g.as_ptr();
        let mut j = 0;
        // SAFETY: j + 8 <= h, so every load and store stays in the slices.
        unsafe {
            while j < w8 {
                let a = tanh(_mm256_loadu_ps(g.add(j)));
                let b = sigmoid(_mm256_loadu_ps(g.add(h + j)));
                _mm256_storeu_ps(y.as_mut_ptr().add(j), _mm256_mul_ps(a, b));
                j += 8;
            }
        }
        w8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f32;
        let mut x = -80.0f32;
        while x < 80.0 {
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert!((tanh(0.3) - 0.3f32.tanh()).abs() < 3e-7);
        assert!((sigmoid(-3.0) - 1.0 / (1.0 + 3f32.exp())).abs() < 3e-7);
    }

    /// The one-position LSTM and gated units against their definitions in f64, at sizes
    /// with and without whole vectors (the vector path and the scalar tail), and NaN kept.
    #[test]
    fn position_units_match_their_definitions() {
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        for h in [1usize, 6, 8, 16, 21] {
            let g: Vec<f32> = (0..4 * h)
                .map(|k| ((k as f32) * 0.731).sin() * 4.0)
                .collect();
            let cp: Vec<f32> = (0..h).map(|k| ((k as f32) * 1.37).cos() * 2.0).collect();
            let (mut hn, mut cn) = (vec![0f32; h], vec![0f32; h]);
            lstm(&g, &cp, &mut hn, &mut cn);
            let mut y = vec![0f32; h];
            gated(&g[..2 * h], &mut y);
            for j in 0..h {
                let gd = |q: usize| g[q * h + j] as f64;
                let c = sig(gd(1)) * cp[j] as f64 + sig(gd(2)) * gd(3).tanh();
                let hh = sig(gd(0)) * c.tanh();
                assert!(
                    (cn[j] as f64 - c).abs() < 1e-6,
                    "h {h} unit {j}: c {} vs {c}",
                    cn[j]
                );
                assert!(
                    (hn[j] as f64 - hh).abs() < 1e-6,
                    "h {h} unit {j}: h {} vs {hh}",
                    hn[j]
                );
                let yy = gd(0).tanh() * sig(gd(1));
                assert!(
                    (y[j] as f64 - yy).abs() < 1e-6,
                    "h {h} unit {j}: y {} vs {yy}",
                    y[j]
                );
            }
            let mut bad = g.clone();
            bad[3 * h] = f32::NAN;
            lstm(&bad, &cp, &mut hn, &mut cn);
            assert!(
                cn[0].is_nan() && hn[0].is_nan(),
                "h {h}: a NaN gate must give NaN"
            );
        }
    }
}
