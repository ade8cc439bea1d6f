//! Training CPU kernels for the convolutional ops (masked conv, head, skip sum, ReLU,
//! add): forward and backward written out in plain Rust f32 over `gemm.rs`'s GEMMs,
//! on NCHW data, one thread per slice of the batch.
//!
//! Why: a PixelCNN's convs are small (16 to 32 channels at 28 x 28), and in libtorch each
//! one paid oneDNN's layout reorders in and out, a separate ReLU pass and autograd
//! bookkeeping around a short kernel: about half its training step. Here a conv is one
//! GEMM per image over only the taps its mask leaves nonzero (`Packed`), a 1x1 conv reads
//! its input in place, and backward recomputes the im2col columns instead of keeping them.
//!
//! The math is exactly `layers::apply`'s (docs/semantics.md); `tests/fused_kernels.rs`
//! checks outputs and every gradient against it. Pure Rust: no tch here; `tape.rs` joins
//! these kernels to libtorch's autograd.

use super::fused::{give, take};
use super::gemm::{gemm, gemm_stacked, View};

/// One kernel tap: its offset from the output pixel and its place in the full kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tap {
    dy: isize,
    dx: isize,
    /// `ky * kw + kx`.
    at: usize,
}

/// A masked conv's weight as the kernels use it: only the taps its mask leaves nonzero
/// for some channel pair, packed `[out][in * taps]` (row `c * taps + t` of the im2col
/// columns is input channel `c` at tap `t`).
pub struct Packed {
    cout: usize,
    cin: usize,
    /// The full kernel's size, to scatter gradients back.
    kh: usize,
    kw: usize,
    taps: Vec<Tap>,
    w: Vec<f32>,
}

impl Packed {
    /// `w`: the masked weight, row-major `[cout][cin][kh][kw]`; `mask`: its mask, the same
    /// shape (None: unmasked). `pad_top` and `pad_side` place the kernel over the input
    /// (`ir::mask::Crop`): tap (ky, kx) reads pixel (y + ky - pad_top, x + kx - pad_side).
    pub fn new(
        w: &[f32],
        mask: Option<&[f32]>,
        [cout, cin, kh, kw]: [usize; 4],
        pad_top: usize,
        pad_side: usize,
    ) -> Packed {
        let kk = kh * kw;
        assert_eq!(w.len(), cout * cin * kk, "weight shape");
        // A tap is kept when the mask lets any channel pair through it.
        let live = |at: usize| match mask {
            Some(m) => (0..cout * cin).any(|oc| m[oc * kk + at] != 0.0),
            None => true,
        };
        let taps: Vec<Tap> = (0..kk)
            .filter(|&at| live(at))
            .map(|at| Tap {
                dy: (at / kw) as isize - pad_top as isize,
                dx: (at % kw) as isize - pad_side as isize,
                at,
            })
            .collect();
        let t = taps.len();
        let mut packed = vec![0.0; cout * cin * t];
        for o in 0..cout {
            for c in 0..cin {
                for (j, tap) in taps.iter().enumerate() {
                    packed[(o * cin + c) * t + j] = w[(o * cin + c) * kk + tap.at];
                }
            }
        }
        Packed {
            cout,
            cin,
            kh,
            kw,
            taps,
            w: packed,
        }
    }

    /// Floats in the packed weight, and so in its gradient.
    pub fn grad_len(&self) -> usize {
        self.w.len()
    }

    /// Rows of the im2col columns (the GEMM's inner dimension).
    fn k(&self) -> usize {
        self.cin * self.taps.len()
    }

    /// A 1x1 conv (or any kernel whose only live tap is the centre): the columns are the
    /// input itself.
    fn pointwise(&self) -> bool {
        matches!(self.taps.as_slice(), [Tap { dy: 0, dx: 0, .. }])
    }

    /// A packed weight gradient scattered into the full `[cout][cin][kh][kw]` shape and
    /// masked: the gradient of the stored (unmasked) parameter.
    pub fn unpack_grad(&self, dp: &[f32], mask: Option<&[f32]>) -> Vec<f32> {
        let kk = self.kh * self.kw;
        let t = self.taps.len();
        let mut full = vec![0.0; self.cout * self.cin * kk];
        for oc in 0..self.cout * self.cin {
            for (j, tap) in self.taps.iter().enumerate() {
                full[oc * kk + tap.at] = dp[oc * t + j];
            }
        }
        if let Some(m) = mask {
            full.iter_mut().zip(m).for_each(|(g, m)| *g *= m);
        }
        full
    }
}

/// The size of one image plane.
#[derive(Clone, Copy, Debug)]
pub struct Plane {
    pub height: usize,
    pub width: usize,
}

impl Plane {
    fn len(self) -> usize {
        self.height * self.width
    }
}

/// `dst[x + dx] += row[x]` where `x + dx` falls inside the row: the adjoint of one row of
/// `shift_plane`.
fn shift_add(dst: &mut [f32], row: &[f32], dx: isize) {
    let w = row.len();
    let d = dx.unsigned_abs().min(w);
    let (to, from) = if dx >= 0 {
        (&mut dst[d..], &row[..w - d])
    } else {
        (&mut dst[..w - d], &row[d..])
    };
    to.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

/// The im2col columns of one image `x` (`cin` planes): `cols[c * T + t][y * W + x] =
/// x[c][y + dy_t][x + dx_t]`, zero outside the image.
fn im2col(pk: &Packed, x: &[f32], pl: Plane, cols: &mut [f32]) {
    let p = pl.len();
    let t = pk.taps.len();
    for c in 0..pk.cin {
        let xc = &x[c * p..(c + 1) * p];
        for (j, tap) in pk.taps.iter().enumerate() {
            let dst = &mut cols[(c * t + j) * p..(c * t + j + 1) * p];
            shift_plane(dst, xc, pl, tap.dy, tap.dx);
        }
    }
}

/// `dst[y][x] = src[y + dy][x + dx]`, zero where that falls outside the plane.
///
/// Why not row by row: a PixelCNN's planes are 28 floats wide, and a copy
/// and a fill per row were two library calls per 28 floats, about a tenth of a training
/// step in `memmove` and `memset`. Shifted by `dy` rows and `dx` columns, the plane is one
/// contiguous copy at offset `dy * W + dx`; only the `|dx|` columns that wrapped in from
/// the neighbouring row need zeroing after it.
fn shift_plane(dst: &mut [f32], src: &[f32], pl: Plane, dy: isize, dx: isize) {
    let (h, w) = (pl.height as isize, pl.width as isize);
    if dx.abs() >= w || dy.abs() >= h {
        dst.fill(0.0);
        return;
    }
    // Rows y0..y1 read rows inside the plane; the source index of k = y * W + x is
    // k + off, which leaves the plane only at the ends (by |dx| at most).
    let (y0, y1) = ((-dy).max(0), (h - dy).min(h));
    let off = dy * w + dx;
    let (a, b) = (y0 * w, y1 * w);
    let (lo, hi) = (a.max(-off), b.min(h * w - off));
    let u = |i: isize| i as usize;
    dst[..u(lo)].fill(0.0);
    dst[u(hi)..].fill(0.0);
    dst[u(lo)..u(hi)].copy_from_slice(&src[u(lo + off)..u(hi + off)]);
    let d = u(dx.abs());
    if d > 0 {
        for row in dst[u(a)..u(b)].chunks_exact_mut(u(w)) {
            let edge = if dx > 0 {
                &mut row[u(w) - d..]
            } else {
                &mut row[..d]
            };
            edge.iter_mut().for_each(|v| *v = 0.0);
        }
    }
}

/// Adds the columns' gradient into one image's input gradient: `im2col`'s adjoint.
fn col2im_add(pk: &Packed, dcols: &[f32], pl: Plane, dx: &mut [f32]) {
    let (p, w) = (pl.len(), pl.width);
    let t = pk.taps.len();
    for c in 0..pk.cin {
        let dxc = &mut dx[c * p..(c + 1) * p];
        for (j, tap) in pk.taps.iter().enumerate() {
            let src = &dcols[(c * t + j) * p..(c * t + j + 1) * p];
            for (y, row) in src.chunks_exact(w).enumerate() {
                let sy = y as isize + tap.dy;
                if sy >= 0 && sy < pl.height as isize {
                    let s = sy as usize * w;
                    shift_add(&mut dxc[s..s + w], row, tap.dx);
                }
            }
        }
    }
}

/// How `conv_forward` stores its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Written over `out`.
    Write,
    /// Added into `out`.
    Add,
    /// Written over `out`, then `max(0, .)` of each image while it is still in cache: a
    /// conv whose only reader is a ReLU (two of a PixelCNN block's three), so that the
    /// ReLU costs no pass of its own over memory (the ReLUs' passes were about a tenth of
    /// a PixelCNN step). Its backward masks `dY` with this output (`conv_backward`).
    Relu,
}

/// A conv's input (`imgs x cin x plane`), and whether the conv applies `max(0, .)` to it
/// first: a ReLU whose only reader is this conv (`tape::relu_before`), run on each image
/// while it is in cache instead of as a pass of its own over memory, with a gradient of
/// its own to sum (4% of a PixelCNN step at one thread, median of seven pairs). Backward
/// then zeroes dx where the input is not positive (libtorch's rule at 0).
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub x: &'a [f32],
    pub relu: bool,
}

impl<'a> Input<'a> {
    /// The input as it is.
    pub fn plain(x: &'a [f32]) -> Input<'a> {
        Input { x, relu: false }
    }

    /// Images `first..first + count`, `per` floats each.
    fn images(self, first: usize, count: usize, per: usize) -> Input<'a> {
        Input {
            x: &self.x[first * per..(first + count) * per],
            ..self
        }
    }

    /// Image `i` (`per` floats) as stored, before any ReLU.
    fn raw(self, i: usize, per: usize) -> &'a [f32] {
        &self.x[i * per..(i + 1) * per]
    }

    /// Image `i` (`per` floats) as the conv reads it: in place, or through `scratch`
    /// with the ReLU applied.
    fn image<'s>(self, i: usize, per: usize, scratch: &'s mut [f32]) -> &'s [f32]
    where
        'a: 's,
    {
        let xi = self.raw(i, per);
        if self.relu {
            relu_forward(xi, scratch);
            scratch
        } else {
            xi
        }
    }
}

/// `conv_forward` with the images split over `threads` threads.
pub fn conv_forward_par(
    threads: usize,
    pk: &Packed,
    bias: &[f32],
    x: Input,
    pl: Plane,
    out: &mut [f32],
    store: Store,
) {
    let (per_in, per_out) = (pk.cin * pl.len(), pk.cout * pl.len());
    let parts = super::fused::split(out.len() / per_out, threads);
    let mut rest = out;
    let mut jobs = Vec::with_capacity(parts.len());
    for &(first, count) in &parts {
        let (o, r) = rest.split_at_mut(count * per_out);
        rest = r;
        jobs.push((x.images(first, count, per_in), o));
    }
    crate::util::on_threads(jobs, |(x, o)| conv_forward(pk, bias, x, pl, o, store));
}

/// `conv_backward` with the images split over `threads` threads; the weight and bias
/// gradients are summed over the threads in a fixed order.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward_par(
    threads: usize,
    pk: &Packed,
    x: Input,
    pl: Plane,
    dy: &[f32],
    relu_out: Option<&[f32]>,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
) {
    let (per_in, per_out) = (pk.cin * pl.len(), pk.cout * pl.len());
    let parts = super::fused::split(dy.len() / per_out, threads);
    let mut rest = dx;
    let mut jobs = Vec::with_capacity(parts.len());
    for &(first, count) in &parts {
        let d = rest.take().map(|r| {
            let (d, r) = r.split_at_mut(count * per_in);
            rest = Some(r);
            d
        });
        let span = |per: usize| first * per..(first + count) * per;
        let r = relu_out.map(|r| &r[span(per_out)]);
        jobs.push((x.images(first, count, per_in), &dy[span(per_out)], r, d));
    }
    let (nw, nb) = (dw.len(), db.len());
    let partials = crate::util::on_threads(jobs, |(x, dy, r, d)| {
        let mut w = vec![0.0; nw];
        let mut b = vec![0.0; nb];
        conv_backward(pk, x, pl, dy, r, d, &mut w, &mut b);
        (w, b)
    });
    for (w, b) in partials {
        dw.iter_mut().zip(&w).for_each(|(a, v)| *a += v);
        db.iter_mut().zip(&b).for_each(|(a, v)| *a += v);
    }
}

/// One conv term of an op: `conv(x, w) + b` over `imgs` images, stored into `out` as
/// `store` says.
pub fn conv_forward(pk: &Packed, bias: &[f32], x: Input, pl: Plane, out: &mut [f32], store: Store) {
    let p = pl.len();
    let (k, co) = (pk.k(), pk.cout);
    let imgs = out.len() / (co * p);
    // Scratch from the pool, not zeroed: `im2col` and `relu_forward` write every
    // element.
    let mut cols = take(if pk.pointwise() { 0 } else { k * p });
    let mut xr = take(if x.relu { pk.cin * p } else { 0 });
    let beta = if store == Store::Add { 1.0 } else { 0.0 };
    for i in 0..imgs {
        let xi = x.image(i, pk.cin * p, &mut xr);
        let oi = &mut out[i * co * p..(i + 1) * co * p];
        let b: &[f32] = if pk.pointwise() {
            xi
        } else {
            im2col(pk, xi, pl, &mut cols);
            &cols
        };
        // The bias starts the tiles' sums: no separate pass over the output.
        let rows = [(View::rows(b, p), k)];
        gemm_stacked(co, p, View::rows(&pk.w, k), &rows, Some(bias), beta, oi, p);
        if store == Store::Relu {
            relu_in_place(oi);
        }
    }
    give(cols);
    give(xr);
}

/// The backward pass of `conv_forward` for its `imgs` images: adds the packed weight's
/// gradient into `dw` (`cout x k`) and the bias's into `db`, and, when given, writes the
/// input's into `dx`. `relu_out`: the output of a `Store::Relu` conv, whose `dy` is then
/// the ReLU's output gradient, zeroed here image by image where the output is not
/// positive (`relu_backward`'s rule).
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    pk: &Packed,
    x: Input,
    pl: Plane,
    dy: &[f32],
    relu_out: Option<&[f32]>,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
) {
    let p = pl.len();
    let (k, co) = (pk.k(), pk.cout);
    let imgs = dy.len() / (co * p);
    // Scratch from the pool, not zeroed: `im2col`, the dcols GEMM (beta 0) and
    // `relu_backward` write every element they later read.
    let cols_len = if pk.pointwise() { 0 } else { k * p };
    let mut cols = take(cols_len);
    let mut dcols = take(cols_len);
    let mut masked = take(if relu_out.is_some() { co * p } else { 0 });
    let mut xr = take(if x.relu { pk.cin * p } else { 0 });
    let mut dx = dx;
    for i in 0..imgs {
        let xi = x.image(i, pk.cin * p, &mut xr);
        let span = i * co * p..(i + 1) * co * p;
        let dyi = match relu_out {
            Some(out) => {
                relu_backward(&out[span.clone()], &dy[span], &mut masked);
                &masked[..]
            }
            None => &dy[span],
        };
        let b: &[f32] = if pk.pointwise() {
            xi
        } else {
            im2col(pk, xi, pl, &mut cols);
            &cols
        };
        // dW += dY (co x p) * cols^T (p x k).
        gemm(
            co,
            p,
            k,
            View::rows(dyi, p),
            View::transposed(b, p),
            1.0,
            dw,
            k,
        );
        for (row, g) in dyi.chunks_exact(p).zip(db.iter_mut()) {
            *g += sum(row);
        }
        if let Some(dx) = dx.as_deref_mut() {
            let dxi = &mut dx[i * pk.cin * p..(i + 1) * pk.cin * p];
            // dcols = W^T (k x co) * dY (co x p).
            let wt = View::transposed(&pk.w, k);
            if pk.pointwise() {
                gemm(k, co, p, wt, View::rows(dyi, p), 0.0, dxi, p);
            } else {
                gemm(k, co, p, wt, View::rows(dyi, p), 0.0, &mut dcols, p);
                dxi.fill(0.0);
                col2im_add(pk, &dcols, pl, dxi);
            }
            if x.relu {
                relu_mask(x.raw(i, pk.cin * p), dxi);
            }
        }
    }
    for v in [cols, dcols, masked, xr] {
        give(v);
    }
}

/// The sum of `v` in eight lanes: a plain running sum is one long chain of dependent
/// adds, which cost as much as the conv's GEMM for a bias over 784 pixels.
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        acc.iter_mut().zip(c).for_each(|(a, b)| *a += b);
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `out = max(x, 0)`.
pub fn relu_forward(x: &[f32], out: &mut [f32]) {
    out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.max(0.0));
}

/// `v = max(v, 0)`.
fn relu_in_place(v: &mut [f32]) {
    v.iter_mut().for_each(|o| *o = o.max(0.0));
}

/// `d = 0` where `x` (a ReLU's input) is not positive (libtorch's rule at 0).
fn relu_mask(x: &[f32], d: &mut [f32]) {
    d.iter_mut()
        .zip(x)
        .for_each(|(d, &v)| *d = if v > 0.0 { *d } else { 0.0 });
}

/// `dx = dy` where the ReLU's output is positive, else 0 (libtorch's rule at 0).
pub fn relu_backward(out: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.iter_mut()
        .zip(out.iter().zip(dy))
        .for_each(|(d, (&o, &g))| *d = if o > 0.0 { g } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conv by its definition: every tap of the full kernel, zero padding.
    fn naive(
        w: &[f32],
        [co, ci, kh, kw]: [usize; 4],
        x: &[f32],
        pl: Plane,
        top: usize,
        side: usize,
    ) -> Vec<f32> {
        let (h, wd) = (pl.height as isize, pl.width as isize);
        let mut out = vec![0.0; co * pl.len()];
        for o in 0..co {
            for y in 0..h {
                for xx in 0..wd {
                    let mut s = 0.0;
                    for c in 0..ci {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let sy = y + ky as isize - top as isize;
                                let sx = xx + kx as isize - side as isize;
                                if sy >= 0 && sy < h && sx >= 0 && sx < wd {
                                    s += w[((o * ci + c) * kh + ky) * kw + kx]
                                        * x[(c as isize * h + sy) as usize * pl.width
                                            + sx as usize];
                                }
                            }
                        }
                    }
                    out[o * pl.len() + (y * wd + xx) as usize] = s;
                }
            }
        }
        out
    }

    /// Every shift, inside and past the plane's edges, on wide, tall and one-pixel-thin
    /// planes, against the definition.
    #[test]
    fn shifted_planes_match_the_definition() {
        for (h, w) in [(5usize, 7usize), (7, 5), (1, 4), (4, 1), (3, 3)] {
            let pl = Plane {
                height: h,
                width: w,
            };
            let src = values(h * w, 5);
            for dy in -(h as isize) - 1..=h as isize + 1 {
                for dx in -(w as isize) - 1..=w as isize + 1 {
                    let mut got = vec![f32::NAN; h * w];
                    shift_plane(&mut got, &src, pl, dy, dx);
                    for y in 0..h as isize {
                        for x in 0..w as isize {
                            let (sy, sx) = (y + dy, x + dx);
                            let inside =
                                (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                            let want = if inside {
                                src[(sy * w as isize + sx) as usize]
                            } else {
                                0.0
                            };
                            let g = got[(y * w as isize + x) as usize];
                            assert_eq!(g, want, "{h}x{w} shifted by ({dy}, {dx}) at ({y}, {x})");
                        }
                    }
                }
            }
        }
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn forward_matches_the_definition_and_backward_is_its_adjoint() {
        let pl = Plane {
            height: 5,
            width: 4,
        };
        let shape = [3, 2, 3, 5];
        let n = 3 * 2 * 15;
        // A mask that kills the bottom row and one more tap.
        let mask: Vec<f32> = (0..n)
            .map(|i| {
                let at = i % 15;
                if at >= 10 || at == 7 {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let w: Vec<f32> = values(n, 1).iter().zip(&mask).map(|(a, m)| a * m).collect();
        let pk = Packed::new(&w, Some(&mask), shape, 1, 2);
        assert_eq!(pk.taps.len(), 9);
        let x = values(2 * pl.len(), 7);
        let mut out = vec![0.0; 3 * pl.len()];
        conv_forward(&pk, &[0.0; 3], Input::plain(&x), pl, &mut out, Store::Write);
        let want = naive(&w, shape, &x, pl, 1, 2);
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // <dy, conv(x)> = <conv^T(dy), x> and = <dW, w>: backward is the adjoint.
        let dy = values(out.len(), 3);
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; pk.w.len()];
        let mut db = vec![0.0; 3];
        let xin = Input::plain(&x);
        conv_backward(&pk, xin, pl, &dy, None, Some(&mut dx), &mut dw, &mut db);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f32>();
        let lhs = dot(&dy, &out);
        assert!((lhs - dot(&dx, &x)).abs() < 1e-3);
        assert!((lhs - dot(&dw, &pk.w)).abs() < 1e-3);
        let full = pk.unpack_grad(&dw, Some(&mask));
        assert!((lhs - dot(&full, &w)).abs() < 1e-3);
        assert!(full.iter().zip(&mask).all(|(g, m)| *m != 0.0 || *g == 0.0));
    }
}
