//! The f32 GEMM under the CPU training kernels: AVX2 + FMA micro-kernels that read both
//! operands where they lie, with `matrixmultiply` as the fallback for other CPUs and
//! other layouts.
//!
//! Why not `matrixmultiply` alone: it packs both operands into its own panels on every
//! call. The kernels' GEMMs are thin (16 to 64 rows, 32 to 288 deep, a few hundred to a
//! few thousand columns), so that copy cost a third as much again as the arithmetic (13%
//! of a PixelCNN step against 40% in its kernel). The two shapes the kernels use read
//! well in place:
//! - **NN**, `B` row-major (unit column stride): a 6 x 16 tile of `C` is twelve vector
//!   accumulators, each `k` one row of 16 floats of `B` and six broadcasts of `A`
//!   (any strides: the forward conv, the recurrence's step, and `W^T dY`).
//! - **NT**, both operands contiguous along `k` (`A` rows, `B` columns): a 4 x 3 tile is
//!   twelve accumulators of 8 lanes along `k`, summed across at the end (the weight
//!   gradients `dY X^T`). When `k` is short (a recurrence step's columns), those sums
//!   are not amortised: `B` is then copied row-major through 8 x 8 register transposes
//!   and the NN tiles run on it (`nt_by_nn`).
//!
//! `cargo bench --bench gemm` prints their GFLOP/s on the kernels' shapes.
//!
//! Sums run in a different order than `matrixmultiply`'s, so results differ from it by
//! rounding only; `tests/fused_kernels.rs` holds every kernel to plain libtorch.

/// A matrix operand: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major with `ld` floats per row.
    pub fn rows(data: &'a [f32], ld: usize) -> View<'a> {
        View {
            data,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `ld` floats per row.
    pub fn transposed(data: &'a [f32], ld: usize) -> View<'a> {
        View {
            data,
            rs: 1,
            cs: ld,
        }
    }

    /// Panics unless every element of an `r x c` matrix lies inside `data`.
    fn check(&self, r: usize, c: usize, what: &str) {
        assert!(
            self.data.len() > (r - 1) * self.rs + (c - 1) * self.cs,
            "gemm: {what} ({r} x {c}, strides {} {}) outside its slice of {}",
            self.rs,
            self.cs,
            self.data.len()
        );
    }
}

/// `C (m x n, ldc floats per row) = A (m x k) * B (k x n) + beta * C`; with `beta` 0,
/// `C` is written without being read.
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, k: usize, n: usize, a: View, b: View, beta: f32, c: &mut [f32], ldc: usize) {
    gemm_stacked(m, n, a, &[(b, k)], None, beta, c, ldc);
}

/// The most blocks of rows `gemm_stacked` takes for `B`.
pub const MAX_BLOCKS: usize = 4;

/// `C (m x n) = A (m x K) * [B_1; B_2; ...] + bias + beta * C`: `B` is given as blocks of
/// rows `(B_i, k_i)` that lie in different buffers (K = the sum of the `k_i`), so a
/// GEMM over stacked operands needs no copy to stack them; `bias` (m floats) is added
/// to each row. The recurrences' steps use it to fold the input conv into the step:
/// `[W_in | W_ss] [x_t; X(h_{t-1})] + b`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_stacked(
    m: usize,
    n: usize,
    a: View,
    b: &[(View, usize)],
    bias: Option<&[f32]>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() >= (m - 1) * ldc + n && ldc >= n,
        "gemm: C outside its slice"
    );
    if let Some(bias) = bias {
        assert!(bias.len() >= m, "gemm: bias shorter than m");
    }
    assert!(
        b.len() <= MAX_BLOCKS,
        "gemm: more than {MAX_BLOCKS} blocks of B"
    );
    let k: usize = b.iter().map(|&(_, k)| k).sum();
    if k > 0 {
        a.check(m, k, "A");
    }
    for &(bv, ki) in b.iter().filter(|&&(_, ki)| ki > 0) {
        bv.check(ki, n, "B");
    }
    #[cfg(target_arch = "x86_64")]
    if crate::backend::simd::avx2_fma() && k > 0 {
        if b.iter().all(|(bv, _)| bv.cs == 1) {
            // On the stack: this runs once per recurrence step, so no heap allocation per
            // call (its cost was not measured; it is simply not needed).
            let mut segs = [avx::Seg {
                b: std::ptr::null(),
                rs: 0,
                k: 0,
            }; MAX_BLOCKS];
            let mut count = 0;
            for &(bv, ki) in b.iter().filter(|&&(_, ki)| ki > 0) {
                segs[count] = avx::Seg {
                    b: bv.data.as_ptr(),
                    rs: bv.rs,
                    k: ki,
                };
                count += 1;
            }
            // SAFETY: the features were detected; the checks above keep every index
            // inside the slices.
            unsafe { avx::nn(m, n, a, &segs[..count], bias, beta, c, ldc) };
            return;
        }
        if a.cs == 1 && b.len() == 1 && b[0].0.rs == 1 && bias.is_none() {
            if k <= NT_BY_NN_MAX_K && n.is_multiple_of(8) {
                nt_by_nn(m, k, n, a, b[0].0, beta, c, ldc);
            } else {
                // SAFETY: as above.
                unsafe { avx::nt(m, k, n, a, b[0].0, beta, c, ldc) };
            }
            return;
        }
    }
    // The portable path: one `matrixmultiply` call per block of rows of B, each adding
    // to what the one before wrote, then the bias.
    let mut first = true;
    let mut off = 0;
    for &(bv, ki) in b {
        if ki == 0 {
            continue;
        }
        // SAFETY: the checks above keep every index the strides reach inside the slices.
        unsafe {
            matrixmultiply::sgemm(
                m,
                ki,
                n,
                1.0,
                a.data.as_ptr().add(off * a.cs),
                a.rs as isize,
                a.cs as isize,
                bv.data.as_ptr(),
                bv.rs as isize,
                bv.cs as isize,
                if first { beta } else { 1.0 },
                c.as_mut_ptr(),
                ldc as isize,
                1,
            );
        }
        first = false;
        off += ki;
    }
    for (i, row) in c.chunks_mut(ldc).take(m).enumerate() {
        if first {
            // No rows of B at all (a conv its mask removes entirely): C = beta C.
            scale(&mut row[..n], beta);
        }
        if let Some(bias) = bias {
            row[..n].iter_mut().for_each(|v| *v += bias[i]);
        }
    }
}

/// The deepest NT product (`dY X^T`) that `nt_by_nn` takes. The NT tiles sum each of
/// their twelve accumulators across its lanes at the end, which a short `k` (a
/// recurrence step's 8 to 448 columns) does not amortise. Measured (best of seven rounds,
/// M = 64, N = 64, one core of a Zen 4 VM): at `k` = 32 the NT tiles ran at 33-40
/// GFLOP/s and the copy plus NN tiles at 70-74; at `k` = 112, 56-66 against 82-85; they
/// meet near `k` = 448, and at 784 (a conv's weight gradient over one 28 x 28 image) the
/// NT tiles win, 78-100 against 56-85.
#[cfg(target_arch = "x86_64")]
const NT_BY_NN_MAX_K: usize = 384;

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// `nt_by_nn`'s copy of `B`, kept per thread so that a recurrence's steps do not
    /// allocate.
    static BT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `C = A B + beta C` with `A`'s rows and `B`'s columns contiguous (`B` = X^T for a
/// row-major X, n x k): `B` is copied row-major (8 x 8 register transposes) and the NN
/// tiles run on it.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn nt_by_nn(m: usize, k: usize, n: usize, a: View, b: View, beta: f32, c: &mut [f32], ldc: usize) {
    BT.with(|buf| {
        let mut bt = buf.borrow_mut();
        if bt.len() < k * n {
            bt.resize(k * n, 0.0);
        }
        // SAFETY: AVX2 and FMA were detected by the caller; `gemm_stacked` checked that B
        // (k x n at strides 1, b.cs) lies inside its slice, and `bt` holds k x n.
        unsafe {
            avx::transpose_rows(&mut bt[..k * n], b.data, b.cs, n, k);
            let seg = [avx::Seg {
                b: bt.as_ptr(),
                rs: n,
                k,
            }];
            avx::nn(m, n, a, &seg, None, beta, c, ldc);
        }
    });
}

/// `v *= beta`, with `beta` 0 writing zeros over whatever `v` held (NaN included).
fn scale(v: &mut [f32], beta: f32) {
    if beta == 0.0 {
        v.fill(0.0);
    } else if beta != 1.0 {
        v.iter_mut().for_each(|x| *x *= beta);
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx {
    use super::View;
    use crate::backend::simd::avx::{hsum, transpose8};
    use std::arch::x86_64::*;

    /// `c = acc + beta * c` for `L` floats at `c`, `beta` 0 not reading `c`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store(c: *mut f32, acc: __m256, beta: f32) {
        unsafe {
            let v = if beta == 0.0 {
                acc
            } else {
                _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c), acc)
            };
            _mm256_storeu_ps(c, v);
        }
    }

    /// One `c` element from its sum.
    #[inline]
    fn put(c: &mut f32, s: f32, beta: f32) {
        *c = if beta == 0.0 { s } else { s + beta * *c };
    }

    /// A block of rows of `B` (row-major, `rs` floats per row, `k` rows), from where
    /// the GEMM's columns start.
    #[derive(Clone, Copy)]
    pub struct Seg {
        pub b: *const f32,
        pub rs: usize,
        pub k: usize,
    }

    /// An `MR x 8*NV` tile of `C = A B (+ bias)` with `B` row-major, starting at column
    /// `j` of each block of `B`: per `k`, `NV` vectors of `B`'s row and `MR` broadcasts
    /// of `A`'s column.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn nn_tile<const MR: usize, const NV: usize>(
        (a, rsa, csa): (*const f32, usize, usize),
        (segs, j): (&[Seg], usize),
        bias: Option<*const f32>,
        beta: f32,
        (c, ldc): (*mut f32, usize),
    ) {
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); NV]; MR];
            if let Some(bias) = bias {
                for (r, row) in acc.iter_mut().enumerate() {
                    *row = [_mm256_set1_ps(*bias.add(r)); NV];
                }
            }
            let mut a = a;
            for seg in segs {
                for p in 0..seg.k {
                    let bp = seg.b.add(p * seg.rs + j);
                    let mut bv = [_mm256_setzero_ps(); NV];
                    for (v, x) in bv.iter_mut().enumerate() {
                        *x = _mm256_loadu_ps(bp.add(8 * v));
                    }
                    let ap = a.add(p * csa);
                    for (r, row) in acc.iter_mut().enumerate() {
                        let av = _mm256_set1_ps(*ap.add(r * rsa));
                        for (x, bx) in row.iter_mut().zip(&bv) {
                            *x = _mm256_fmadd_ps(av, *bx, *x);
                        }
                    }
                }
                a = a.add(seg.k * csa);
            }
            for (r, row) in acc.iter().enumerate() {
                for (v, x) in row.iter().enumerate() {
                    store(c.add(r * ldc + 8 * v), *x, beta);
                }
            }
        }
    }

    /// The rows `0..m` of one column block `8*NV` wide, six rows at a time.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn nn_block<const NV: usize>(
        m: usize,
        (a, rsa, csa): (*const f32, usize, usize),
        b: (&[Seg], usize),
        bias: Option<*const f32>,
        beta: f32,
        (c, ldc): (*mut f32, usize),
    ) {
        unsafe {
            let mut i = 0;
            let bias_at = |i: usize| bias.map(|p| p.add(i));
            while i + 6 <= m {
                let at = (a.add(i * rsa), rsa, csa);
                nn_tile::<6, NV>(at, b, bias_at(i), beta, (c.add(i * ldc), ldc));
                i += 6;
            }
            let at = (a.add(i * rsa), rsa, csa);
            let ct = (c.add(i * ldc), ldc);
            let bi = bias_at(i);
            match m - i {
                0 => {}
                1 => nn_tile::<1, NV>(at, b, bi, beta, ct),
                2 => nn_tile::<2, NV>(at, b, bi, beta, ct),
                3 => nn_tile::<3, NV>(at, b, bi, beta, ct),
                4 => nn_tile::<4, NV>(at, b, bi, beta, ct),
                _ => nn_tile::<5, NV>(at, b, bi, beta, ct),
            }
        }
    }

    /// `gemm_stacked` with every block of `B` row-major. Column blocks outermost, so
    /// one block's `k x 16` panel of `B` stays in L1 while every row of `A` passes over
    /// it.
    ///
    /// # Safety
    /// AVX2 and FMA present; `gemm_stacked`'s checks passed; `segs` hold at least one
    /// row.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn nn(
        m: usize,
        n: usize,
        a: View,
        segs: &[Seg],
        bias: Option<&[f32]>,
        beta: f32,
        c: &mut [f32],
        ldc: usize,
    ) {
        let (ap, cp) = (a.data.as_ptr(), c.as_mut_ptr());
        let at = (ap, a.rs, a.cs);
        let bias = bias.map(|b| b.as_ptr());
        let mut j = 0;
        unsafe {
            while j + 16 <= n {
                nn_block::<2>(m, at, (segs, j), bias, beta, (cp.add(j), ldc));
                j += 16;
            }
            if j + 8 <= n {
                nn_block::<1>(m, at, (segs, j), bias, beta, (cp.add(j), ldc));
                j += 8;
            }
        }
        // The last columns (fewer than 8): B's and C's copied into panels 8 wide, so the
        // same vector tiles run on them (a recurrence's step has any number of columns).
        let r = n - j;
        if r > 0 {
            let k: usize = segs.iter().map(|s| s.k).sum();
            let mut bt = vec![0.0f32; k * 8];
            let mut rows = bt.chunks_exact_mut(8);
            for seg in segs {
                for p in 0..seg.k {
                    let row = rows.next().expect("k rows");
                    // SAFETY: `gemm_stacked` checked that each block's k x n lies in its
                    // slice.
                    let src = unsafe { std::slice::from_raw_parts(seg.b.add(p * seg.rs + j), r) };
                    row[..r].copy_from_slice(src);
                }
            }
            let mut ct = vec![0.0f32; m * 8];
            if beta != 0.0 {
                for (i, row) in ct.chunks_exact_mut(8).enumerate() {
                    row[..r].copy_from_slice(&c[i * ldc + j..i * ldc + n]);
                }
            }
            let panel = [Seg {
                b: bt.as_ptr(),
                rs: 8,
                k,
            }];
            unsafe { nn_block::<1>(m, at, (&panel, 0), bias, beta, (ct.as_mut_ptr(), 8)) };
            for (i, row) in ct.chunks_exact(8).enumerate() {
                c[i * ldc + j..i * ldc + n].copy_from_slice(&row[..r]);
            }
        }
    }

    /// `out` (k x n, row-major) = the transpose of `src`'s n rows of k floats, `ld` apart;
    /// `n` a multiple of 8.
    ///
    /// # Safety
    /// AVX present; `src[(n - 1) * ld + k - 1]` inside `src`, `out` at least k x n.
    #[target_feature(enable = "avx")]
    pub unsafe fn transpose_rows(out: &mut [f32], src: &[f32], ld: usize, n: usize, k: usize) {
        debug_assert!(n.is_multiple_of(8) && out.len() >= k * n);
        let (s, d) = (src.as_ptr(), out.as_mut_ptr());
        let k8 = k / 8 * 8;
        for j0 in (0..n).step_by(8) {
            unsafe {
                for p0 in (0..k8).step_by(8) {
                    let rows: [__m256; 8] =
                        std::array::from_fn(|r| _mm256_loadu_ps(s.add((j0 + r) * ld + p0)));
                    for (p, v) in transpose8(rows).into_iter().enumerate() {
                        _mm256_storeu_ps(d.add((p0 + p) * n + j0), v);
                    }
                }
                for p in k8..k {
                    for r in 0..8 {
                        *d.add(p * n + j0 + r) = *s.add((j0 + r) * ld + p);
                    }
                }
            }
        }
    }

    /// An `MR x NR` tile of `C = A B` with `A`'s rows and `B`'s columns contiguous: `MR *
    /// NR` accumulators along `k`, eight lanes at a time, then the tail of `k`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn nt_tile<const MR: usize, const NR: usize>(
        k: usize,
        (a, rsa): (*const f32, usize),
        (b, csb): (*const f32, usize),
        beta: f32,
        (c, ldc): (*mut f32, usize),
    ) {
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); NR]; MR];
            let k8 = k / 8 * 8;
            let mut p = 0;
            while p < k8 {
                let mut bv = [_mm256_setzero_ps(); NR];
                for (j, x) in bv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(b.add(j * csb + p));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_loadu_ps(a.add(i * rsa + p));
                    for (x, bx) in row.iter_mut().zip(&bv) {
                        *x = _mm256_fmadd_ps(av, *bx, *x);
                    }
                }
                p += 8;
            }
            if k8 < k {
                // The last (fewer than 8) of k, through a lane mask.
                let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((k - k8) as i32), lanes);
                let mut bv = [_mm256_setzero_ps(); NR];
                for (j, x) in bv.iter_mut().enumerate() {
                    *x = _mm256_maskload_ps(b.add(j * csb + k8), mask);
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_maskload_ps(a.add(i * rsa + k8), mask);
                    for (x, bx) in row.iter_mut().zip(&bv) {
                        *x = _mm256_fmadd_ps(av, *bx, *x);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, x) in row.iter().enumerate() {
                    put(&mut *c.add(i * ldc + j), hsum(*x), beta);
                }
            }
        }
    }

    /// The rows `0..m` of `NR` columns, four rows at a time.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn nt_block<const NR: usize>(
        m: usize,
        k: usize,
        (a, rsa): (*const f32, usize),
        (b, csb): (*const f32, usize),
        beta: f32,
        (c, ldc): (*mut f32, usize),
    ) {
        unsafe {
            let mut i = 0;
            while i + 4 <= m {
                nt_tile::<4, NR>(
                    k,
                    (a.add(i * rsa), rsa),
                    (b, csb),
                    beta,
                    (c.add(i * ldc), ldc),
                );
                i += 4;
            }
            let at = (a.add(i * rsa), rsa);
            let ct = (c.add(i * ldc), ldc);
            match m - i {
                0 => {}
                1 => nt_tile::<1, NR>(k, at, (b, csb), beta, ct),
                2 => nt_tile::<2, NR>(k, at, (b, csb), beta, ct),
                _ => nt_tile::<3, NR>(k, at, (b, csb), beta, ct),
            }
        }
    }

    /// `gemm` with `A`'s rows and `B`'s columns contiguous (`dY X^T`). Three columns of
    /// `C` outermost, so their three rows of `B^T` stay in L1 while `A` passes over them.
    ///
    /// # Safety
    /// AVX2 and FMA present; `gemm`'s checks passed.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn nt(
        m: usize,
        k: usize,
        n: usize,
        a: View,
        b: View,
        beta: f32,
        c: &mut [f32],
        ldc: usize,
    ) {
        debug_assert!(a.cs == 1 && b.rs == 1);
        let (ap, bp, cp) = (a.data.as_ptr(), b.data.as_ptr(), c.as_mut_ptr());
        let mut j = 0;
        unsafe {
            while j + 3 <= n {
                nt_block::<3>(
                    m,
                    k,
                    (ap, a.rs),
                    (bp.add(j * b.cs), b.cs),
                    beta,
                    (cp.add(j), ldc),
                );
                j += 3;
            }
            let bt = (bp.add(j * b.cs), b.cs);
            match n - j {
                0 => {}
                1 => nt_block::<1>(m, k, (ap, a.rs), bt, beta, (cp.add(j), ldc)),
                _ => nt_block::<2>(m, k, (ap, a.rs), bt, beta, (cp.add(j), ldc)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Every shape class (tails of rows, columns and depth; both kernels and the
    /// fallback; beta 0 over NaN, 1 and other) against the definition in f64.
    #[test]
    fn every_layout_matches_the_definition() {
        let mut seed = 1;
        for &(m, k, n) in &[
            (1, 1, 1),
            (6, 5, 16),
            (7, 9, 23),
            (13, 17, 40),
            (32, 160, 784),
            (64, 32, 97),
            (5, 0, 9),
            (3, 31, 8),
            (11, 8, 5),
            // k past NT_BY_NN_MAX_K with n a multiple of 8: the NT tiles, not the copy.
            (5, 400, 16),
        ] {
            // (A row-major, B row-major), (A transposed, B row-major): NN;
            // (A row-major, B transposed): NT; (A transposed, B transposed): fallback.
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for beta in [0.0f32, 1.0, 0.5] {
                    seed += 1;
                    let ad = values(m * k.max(1), seed);
                    let bd = values(k.max(1) * n, seed + 100);
                    let a = if ta {
                        View::transposed(&ad, m)
                    } else {
                        View::rows(&ad, k)
                    };
                    let b = if tb {
                        View::transposed(&bd, k)
                    } else {
                        View::rows(&bd, n)
                    };
                    let ldc = n + 3;
                    let c0 = values(m * ldc, seed + 200);
                    let mut c = c0.clone();
                    if beta == 0.0 {
                        c.iter_mut().for_each(|x| *x = f32::NAN);
                    }
                    gemm(m, k, n, a, b, beta, &mut c, ldc);
                    for i in 0..m {
                        for j in 0..ldc {
                            let got = c[i * ldc + j];
                            if j >= n {
                                let kept = if beta == 0.0 {
                                    f32::NAN
                                } else {
                                    c0[i * ldc + j]
                                };
                                assert!(got.to_bits() == kept.to_bits(), "padding written");
                                continue;
                            }
                            let mut want = (0..k)
                                .map(|p| {
                                    a.data[i * a.rs + p * a.cs] as f64
                                        * b.data[p * b.rs + j * b.cs] as f64
                                })
                                .sum::<f64>();
                            want += beta as f64 * c0[i * ldc + j] as f64;
                            assert!(
                                (got as f64 - want).abs() < 1e-4 * (1.0 + k as f64),
                                "{m}x{k}x{n} ta {ta} tb {tb} beta {beta} at ({i}, {j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Blocks of B in separate buffers (different row strides, one empty), with and
    /// without the bias, against the definition in f64: the AVX path (row-major
    /// blocks) and the portable one (a transposed block).
    #[test]
    fn stacked_blocks_and_bias_match_the_definition() {
        let mut seed = 500;
        for &(m, n) in &[(1, 1), (7, 5), (13, 23), (64, 40), (6, 16)] {
            for transposed in [false, true] {
                for (bias_on, beta) in [(false, 0.0f32), (true, 0.0), (true, 1.0)] {
                    seed += 1;
                    let ks = [3usize, 0, 9, 4];
                    let k: usize = ks.iter().sum();
                    let ad = values(m * k, seed);
                    let a = View::rows(&ad, k);
                    // Block i is ks[i] x n, stored with n + i spare columns per row, or
                    // transposed (the last block only, to take the portable path).
                    let datas: Vec<Vec<f32>> = ks
                        .iter()
                        .enumerate()
                        .map(|(i, &ki)| values(ki.max(1) * (n + i), seed + 10 * i as u32))
                        .collect();
                    let views: Vec<(View, usize)> = ks
                        .iter()
                        .zip(&datas)
                        .enumerate()
                        .map(|(i, (&ki, d))| {
                            let v = if transposed && i == ks.len() - 1 {
                                View::transposed(d, ki)
                            } else {
                                View::rows(d, n + i)
                            };
                            (v, ki)
                        })
                        .collect();
                    let bias = values(m, seed + 77);
                    let ldc = n + 2;
                    let c0 = values(m * ldc, seed + 99);
                    let mut c = c0.clone();
                    let b = bias_on.then_some(&bias[..]);
                    gemm_stacked(m, n, a, &views, b, beta, &mut c, ldc);
                    for i in 0..m {
                        for j in 0..n {
                            let mut want = 0f64;
                            let mut off = 0;
                            for &(v, ki) in &views {
                                for p in 0..ki {
                                    want += ad[i * k + off + p] as f64
                                        * v.data[p * v.rs + j * v.cs] as f64;
                                }
                                off += ki;
                            }
                            if bias_on {
                                want += bias[i] as f64;
                            }
                            want += beta as f64 * c0[i * ldc + j] as f64;
                            let got = c[i * ldc + j] as f64;
                            assert!(
                                (got - want).abs() < 1e-4 * (1.0 + k as f64),
                                "{m}x{n} transposed {transposed} bias {bias_on} at ({i}, {j}): {got} vs {want}"
                            );
                        }
                        for j in n..ldc {
                            assert_eq!(c[i * ldc + j], c0[i * ldc + j], "padding written");
                        }
                    }
                }
            }
        }
    }
}
