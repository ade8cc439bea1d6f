//! The activation math every CPU kernel shares (training's fused recurrences, the cached
//! sampler): e^x, sigmoid, tanh and the LSTM cell written once, as scalar functions and as
//! their AVX2 + FMA forms with the same formulas, so a vector lane and the scalar tail
//! beside it compute the same thing, whichever kernel runs them; and the register
//! shuffles (`avx::transpose8`, `avx::hsum`) the kernels share.

/// Whether this CPU runs the AVX2 + FMA code paths (`avx`, `gemm`'s micro-kernels).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_fma() -> bool {
    // The macro caches the CPUID answer: one relaxed load per call.
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// e^x for x in about [-87, 88]: Cody-Waite range reduction and a degree-6 polynomial
/// (relative error ~2e-7), branch-free. Every multiply-add is fused, in the order
/// `avx::exp` takes, so a lane and this give the same bits; where the CPU has FMA the
/// callers run it inside their AVX2 + FMA functions, where `mul_add` is one instruction
/// (elsewhere it is libm's `fmaf`, slower but the same bits). glibc's `expf`, a call per
/// value, was a sixth of a cached Diagonal BiLSTM draw.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let k = x.mul_add(std::f32::consts::LOG2_E, EXP_MAGIC);
    let n = k - EXP_MAGIC;
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let [c6, c5, c4, c3, c2, c1, c0] = EXP_POLY;
    let mut p = r.mul_add(c6, c5);
    for c in [c4, c3, c2, c1, c0] {
        p = p.mul_add(r, c);
    }
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

/// One LSTM cell: its gates' activations, the new cell `c = f cp + i g`, `tc = tanh(c)`
/// and `h = o tc`.
pub(crate) struct Cell {
    pub o: f32,
    pub f: f32,
    pub i: f32,
    pub g: f32,
    pub c: f32,
    pub tc: f32,
    pub h: f32,
}

/// The cell from its gate pre-activations `[o, f, i, g]` and the previous cell `cp`: what
/// the sampler's `lstm` and the training kernels' gate pass (`fused`) both compute, so
/// they cannot drift apart. `avx::cell_n` is the same, eight lanes at a time.
#[inline(always)]
pub(crate) fn cell([o, f, i, g]: [f32; 4], cp: f32) -> Cell {
    let (o, f, i, g) = (sigmoid(o), sigmoid(f), sigmoid(i), tanh(g));
    let c = f.mul_add(cp, i * g);
    let tc = tanh(c);
    Cell {
        o,
        f,
        i,
        g,
        c,
        tc,
        h: o * tc,
    }
}

/// One LSTM update at one position: gates `g` = pre-activations `[o, f, i, g]` (h each),
/// the previous cell `cp`; writes the new hidden `hn` and cell `cn` (h = `hn.len()`):
/// `c = f cp + i g`, `h = o tanh(c)`. The same bits on every CPU (see `exp`).
pub(crate) fn lstm(g: &[f32], cp: &[f32], hn: &mut [f32], cn: &mut [f32]) {
    assert!(g.len() >= 4 * hn.len() && cp.len() >= hn.len() && cn.len() >= hn.len());
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has the features `avx` is compiled for; lengths checked above.
        unsafe { avx::lstm(g, cp, hn, cn) };
        return;
    }
    lstm_from(0, g, cp, hn, cn);
}

/// `lstm`'s units `from..h`, one at a time.
#[inline(always)]
fn lstm_from(from: usize, g: &[f32], cp: &[f32], hn: &mut [f32], cn: &mut [f32]) {
    let h = hn.len();
    for j in from..h {
        let k = cell([g[j], g[h + j], g[2 * h + j], g[3 * h + j]], cp[j]);
        cn[j] = k.c;
        hn[j] = k.h;
    }
}

/// A gated unit at one position: `y = tanh(a) * sigmoid(b)`, `g` = `[a, b]` (h each,
/// h = `y.len()`). The same bits on every CPU (see `exp`).
pub(crate) fn gated(g: &[f32], y: &mut [f32]) {
    assert!(g.len() >= 2 * y.len());
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has the features `avx` is compiled for; length checked above.
        unsafe { avx::gated(g, y) };
        return;
    }
    gated_from(0, g, y);
}

/// `gated`'s units `from..h`, one at a time.
#[inline(always)]
fn gated_from(from: usize, g: &[f32], y: &mut [f32]) {
    let h = y.len();
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

    /// `super::exp`, eight lanes (`exp_all` of one vector).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn exp(x: __m256) -> __m256 {
        let mut v = [[x]];
        exp_all(&mut v);
        v[0][0]
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn sigmoid(x: __m256) -> __m256 {
        sigmoid_of_exp(exp(sigmoid_arg(x)))
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn tanh(x: __m256) -> __m256 {
        tanh_of_exp(exp(tanh_arg(x)))
    }

    /// sigmoid(x) = `sigmoid_of_exp(exp(sigmoid_arg(x)))`, split so that `cell_n` can
    /// interleave the `exp`s.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn sigmoid_arg(x: __m256) -> __m256 {
        _mm256_sub_ps(_mm256_setzero_ps(), x)
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn sigmoid_of_exp(e: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        _mm256_div_ps(one, _mm256_add_ps(one, e))
    }

    /// tanh(x) = `tanh_of_exp(exp(tanh_arg(x)))`, as for the sigmoid.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn tanh_arg(x: __m256) -> __m256 {
        _mm256_add_ps(x, x)
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn tanh_of_exp(e: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        _mm256_sub_ps(
            one,
            _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, one)),
        )
    }

    /// Rows become columns: out[c] lane r = rows[r] lane c.
    #[target_feature(enable = "avx")]
    #[inline]
    pub(crate) fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// The sum of a vector's eight lanes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// `super::Cell`, eight lanes.
    pub(crate) struct Cell {
        pub o: __m256,
        pub f: __m256,
        pub i: __m256,
        pub g: __m256,
        pub c: __m256,
        pub tc: __m256,
        pub h: __m256,
    }

    /// `exp` of each vector of `x`, in place, each step of it done for all of them
    /// before the next: the same operations on every lane (the same bits), but
    /// independent dependency chains side by side in the instruction stream, so the
    /// CPU's window holds work it can overlap (one `exp` is a chain of about a dozen
    /// dependent operations, which one at a time left most of the core idle).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn exp_all<const L: usize, const N: usize>(x: &mut [[__m256; L]; N]) {
        let (hi, lo) = (_mm256_set1_ps(88.0), _mm256_set1_ps(-87.0));
        let magic = _mm256_set1_ps(super::EXP_MAGIC);
        let mut k = *x;
        let mut r = *x;
        for v in 0..N {
            for l in 0..L {
                // The clamp with x second: maxps and minps return their second operand
                // when either is NaN, so a NaN gate stays NaN (as `f32::clamp` keeps it)
                // instead of becoming a finite activation that would hide a diverged
                // model.
                r[v][l] = _mm256_min_ps(hi, _mm256_max_ps(lo, x[v][l]));
                k[v][l] = _mm256_fmadd_ps(r[v][l], _mm256_set1_ps(std::f32::consts::LOG2_E), magic);
            }
        }
        for v in 0..N {
            for l in 0..L {
                let n = _mm256_sub_ps(k[v][l], magic);
                let t = _mm256_fnmadd_ps(n, _mm256_set1_ps(super::LN2_HI), r[v][l]);
                r[v][l] = _mm256_fnmadd_ps(n, _mm256_set1_ps(super::LN2_LO), t);
            }
        }
        let [c6, c5, c4, c3, c2, c1, c0] = super::EXP_POLY;
        for v in 0..N {
            for l in 0..L {
                x[v][l] = _mm256_fmadd_ps(r[v][l], _mm256_set1_ps(c6), _mm256_set1_ps(c5));
            }
        }
        for c in [c4, c3, c2, c1, c0] {
            for v in 0..N {
                for l in 0..L {
                    x[v][l] = _mm256_fmadd_ps(x[v][l], r[v][l], _mm256_set1_ps(c));
                }
            }
        }
        for v in 0..N {
            for l in 0..L {
                let bits = _mm256_sub_epi32(
                    _mm256_castps_si256(k[v][l]),
                    _mm256_set1_epi32(super::EXP_BIAS as i32),
                );
                x[v][l] =
                    _mm256_mul_ps(x[v][l], _mm256_castsi256_ps(_mm256_slli_epi32::<23>(bits)));
            }
        }
    }

    /// `super::cell` for `N` sets of eight cells, the steps of their 4N gate activations
    /// and then of their N tanh(c) interleaved (`exp_all`): the same bits as `cell` on
    /// each lane.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn cell_n<const N: usize>(pre: [[__m256; 4]; N], cp: [__m256; N]) -> [Cell; N] {
        let mut act = pre;
        for g in act.iter_mut() {
            for x in &mut g[..3] {
                *x = sigmoid_arg(*x);
            }
            g[3] = tanh_arg(g[3]);
        }
        exp_all(&mut act);
        for g in act.iter_mut() {
            for x in &mut g[..3] {
                *x = sigmoid_of_exp(*x);
            }
            g[3] = tanh_of_exp(g[3]);
        }
        let mut c = cp;
        let mut tc = [[_mm256_setzero_ps()]; N];
        for v in 0..N {
            let [_, f, i, g] = act[v];
            c[v] = _mm256_fmadd_ps(f, c[v], _mm256_mul_ps(i, g));
            tc[v][0] = tanh_arg(c[v]);
        }
        exp_all(&mut tc);
        std::array::from_fn(|v| {
            let [o, f, i, g] = act[v];
            let tc = tanh_of_exp(tc[v][0]);
            Cell {
                o,
                f,
                i,
                g,
                c: c[v],
                tc,
                h: _mm256_mul_ps(o, tc),
            }
        })
    }

    /// `super::lstm`, sixteen units per pass (two vectors through `cell_n`), then eight,
    /// then the last h % 8 one at a time (with hardware FMA here).
    ///
    /// # Safety
    /// AVX2 and FMA present; `g` holds 4h, `cp` and `cn` h (h = `hn.len()`).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn lstm(g: &[f32], cp: &[f32], hn: &mut [f32], cn: &mut [f32]) {
        let h = hn.len();
        let w8 = h / 8 * 8;
        // SAFETY (the loads and stores): j + 8 <= h; g holds 4h, the others h.
        let load = |j: usize| unsafe {
            let pre = std::array::from_fn(|q| _mm256_loadu_ps(g.as_ptr().add(q * h + j)));
            (pre, _mm256_loadu_ps(cp.as_ptr().add(j)))
        };
        let (hp, cnp) = (hn.as_mut_ptr(), cn.as_mut_ptr());
        let store = |j: usize, k: &Cell| unsafe {
            _mm256_storeu_ps(cnp.add(j), k.c);
            _mm256_storeu_ps(hp.add(j), k.h);
        };
        // Two vectors at a time through `cell_n` (their chains side by side), then one.
        let mut j = 0;
        while j + 16 <= w8 {
            let [(p0, c0), (p1, c1)] = [load(j), load(j + 8)];
            let [k0, k1] = cell_n([p0, p1], [c0, c1]);
            store(j, &k0);
            store(j + 8, &k1);
            j += 16;
        }
        if j < w8 {
            let (p0, c0) = load(j);
            let [k0] = cell_n([p0], [c0]);
            store(j, &k0);
        }
        super::lstm_from(w8, g, cp, hn, cn);
    }

    /// `super::gated`, eight units per pass and the last h % 8 one at a time.
    ///
    /// # Safety
    /// AVX2 and FMA present; `g` holds 2h (h = `y.len()`).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn gated(g: &[f32], y: &mut [f32]) {
        let h = y.len();
        let w8 = h / 8 * 8;
        for j in (0..w8).step_by(8) {
            // SAFETY: j + 8 <= h; g holds 2h.
            unsafe {
                let a = tanh(_mm256_loadu_ps(g.as_ptr().add(j)));
                let b = sigmoid(_mm256_loadu_ps(g.as_ptr().add(h + j)));
                _mm256_storeu_ps(y.as_mut_ptr().add(j), _mm256_mul_ps(a, b));
            }
        }
        super::gated_from(w8, g, y);
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

    /// The vector forms give the scalar forms' bits (what keeps a seed's samples the same
    /// on CPUs with and without AVX2), NaN included.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_and_scalar_forms_give_the_same_bits() {
        if !avx2_fma() {
            return;
        }
        let g: Vec<f32> = (0..4 * 40)
            .map(|k| ((k as f32) * 0.917).sin() * 30.0 * (k % 5) as f32 / 4.0)
            .collect();
        let cp: Vec<f32> = (0..40).map(|k| ((k as f32) * 1.37).cos() * 3.0).collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for h in [8usize, 16, 40] {
            let (mut hv, mut cv) = (vec![0f32; h], vec![0f32; h]);
            let (mut hs, mut cs) = (vec![0f32; h], vec![0f32; h]);
            // SAFETY: checked above that the CPU has AVX2 and FMA.
            unsafe { avx::lstm(&g, &cp, &mut hv, &mut cv) };
            lstm_from(0, &g, &cp, &mut hs, &mut cs);
            assert_eq!(bits(&hv), bits(&hs), "lstm h, h = {h}");
            assert_eq!(bits(&cv), bits(&cs), "lstm c, h = {h}");
            let (mut yv, mut ys) = (vec![0f32; h], vec![0f32; h]);
            // SAFETY: as above.
            unsafe { avx::gated(&g, &mut yv) };
            gated_from(0, &g, &mut ys);
            assert_eq!(bits(&yv), bits(&ys), "gated, h = {h}");
        }
        let mut xs: Vec<f32> = (0..4000).map(|k| (k as f32 - 2000.0) * 0.05).collect();
        xs.extend([f32::NAN, 100.0, -100.0, 0.0, -0.0, 1e-30]);
        for x in xs {
            use std::arch::x86_64::*;
            // SAFETY: as above.
            let v = unsafe {
                let mut out = [0f32; 8];
                _mm256_storeu_ps(out.as_mut_ptr(), avx::exp(_mm256_set1_ps(x)));
                out[3]
            };
            assert_eq!(v.to_bits(), exp(x).to_bits(), "exp({x})");
        }
    }

    /// `avx::cell_n` (the training kernels' gate pass, several vectors interleaved) gives
    /// every lane the scalar `cell`'s bits, saturated gates included, and NaN where it
    /// gives NaN.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn interleaved_cells_give_the_scalar_bits() {
        use std::arch::x86_64::*;
        if !avx2_fma() {
            return;
        }
        const N: usize = 3;
        let val = |k: usize| match k % 23 {
            0 => f32::NAN,
            1 => 95.0,
            2 => -95.0,
            _ => ((k as f32) * 0.731).sin() * 12.0,
        };
        let pre: [[[f32; 8]; 4]; N] = std::array::from_fn(|v| {
            std::array::from_fn(|q| std::array::from_fn(|l| val(v * 97 + q * 31 + l * 5 + 3)))
        });
        let cp: [[f32; 8]; N] =
            std::array::from_fn(|v| std::array::from_fn(|l| val(v * 13 + l * 7 + 11) / 4.0));
        // SAFETY: checked above that the CPU has AVX2 and FMA.
        let out = unsafe {
            let ld = |x: &[f32; 8]| _mm256_loadu_ps(x.as_ptr());
            avx::cell_n::<N>(pre.map(|g| g.map(|x| ld(&x))), cp.map(|x| ld(&x)))
        };
        let lanes = |v: __m256| {
            let mut o = [0f32; 8];
            // SAFETY: as above; o holds 8 floats.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), v) };
            o
        };
        for (v, got) in out.iter().enumerate() {
            for l in 0..8 {
                let want = cell(std::array::from_fn(|q| pre[v][q][l]), cp[v][l]);
                let pairs = [
                    (got.o, want.o),
                    (got.f, want.f),
                    (got.i, want.i),
                    (got.g, want.g),
                    (got.c, want.c),
                    (got.tc, want.tc),
                    (got.h, want.h),
                ];
                for (k, (g, w)) in pairs.into_iter().enumerate() {
                    // A NaN's sign may differ (x86 makes a positive one where libm's
                    // scalar path keeps the operand's); it is a NaN either way.
                    let g = lanes(g)[l];
                    if g.is_nan() && w.is_nan() {
                        continue;
                    }
                    assert_eq!(g.to_bits(), w.to_bits(), "vector {v} lane {l} output {k}");
                }
            }
        }
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
