//! Fused CPU kernels for the two LSTM recurrences (Row LSTM, Diagonal BiLSTM): forward
//! and backward written out in plain Rust f32, one thread per slice of the batch.
//!
//! Why: in libtorch a recurrence step is about ten tiny ops (three times that in
//! backward), each paying microseconds of dispatch and autograd bookkeeping, so the
//! Diagonal BiLSTM ran at a few percent of the CPU's arithmetic peak. Here a step is one
//! small GEMM (`gemm.rs`; with the Diagonal BiLSTM's 1x1 input conv folded in) plus one
//! vectorised pass of gate math, the skew, mirror,
//! unskew and shift-down are index arithmetic (no copies), and images never synchronise.
//!
//! The math is exactly `layers::row_lstm` / `layers::diag_bilstm` (docs/semantics.md);
//! `tests/fused_kernels.rs` checks outputs and every gradient against them. Pure Rust: no
//! tch here; `tape.rs` connects these kernels to libtorch's autograd.

use super::gemm::{gemm, gemm_stacked, View};
use crate::backend::simd::cell;

/// Which recurrence, and so which index maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// State = one image row (length W), steps = rows; 3-tap state-to-state conv.
    Row,
    /// State = one skewed column (length H), steps = W+H-1 skewed columns; two directions,
    /// 2-tap state-to-state conv (rows r-1, r).
    Diag { shift: bool },
}

/// Sizes of one recurrence call.
#[derive(Clone, Copy, Debug)]
pub struct Geom {
    pub layout: Layout,
    pub batch: usize,
    pub hidden: usize,
    pub height: usize,
    pub width: usize,
}

impl Geom {
    pub fn dirs(&self) -> usize {
        match self.layout {
            Layout::Row => 1,
            Layout::Diag { .. } => 2,
        }
    }
    pub fn taps(&self) -> usize {
        match self.layout {
            Layout::Row => 3,
            Layout::Diag { .. } => 2,
        }
    }
    /// State length L (cells per state).
    pub fn cells(&self) -> usize {
        match self.layout {
            Layout::Row => self.width,
            Layout::Diag { .. } => self.height,
        }
    }
    pub fn steps(&self) -> usize {
        match self.layout {
            Layout::Row => self.height,
            Layout::Diag { .. } => self.width + self.height - 1,
        }
    }
    fn plane(&self) -> usize {
        self.height * self.width
    }
    /// The first state index computed at step `t`. For the Diagonal BiLSTM the indices
    /// below it lie past the image's right edge (skewed column t - s >= W): no later
    /// in-image state depends on them (state s reads s-1 and s of the previous step, and
    /// this bound rises by at most one per step), so they are skipped, a quarter of
    /// the work at 28 x 28. The padding on the other side (t - s < 0) is read by the
    /// first pixel of each row; see `image_end`.
    #[inline]
    fn active(&self, t: usize) -> usize {
        match self.layout {
            Layout::Row => 0,
            Layout::Diag { .. } => (t + 1).saturating_sub(self.width),
        }
    }
    /// One past the last state at step `t` that holds a pixel of the image. The Diagonal
    /// BiLSTM's states from here to L lie left of the image (skewed column t - s < 0):
    /// they read only each other, never an input, so they are the same for every image,
    /// a function of the weights and the initial state. A worker computes them once
    /// (`q = 1`, the `pad` buffers), instead of once per image, and copies into every
    /// image's columns the one state its next step reads: a third of the states computed at 28 x 28. Going back, their
    /// gradient is linear in what the image's states send into them, so that is summed
    /// over the images first and taken back through them once.
    #[inline]
    fn image_end(&self, t: usize) -> usize {
        match self.layout {
            Layout::Row => self.width,
            Layout::Diag { .. } => (t + 1).min(self.height),
        }
    }
    /// Whether `to_steps` / `from_steps`, and Y and dY between the steps, go through a
    /// pixel-major plane. The Diagonal
    /// BiLSTM's skewed runs read one float per row of each plane, which a direct gather
    /// pays an L1 miss for; the Row LSTM's runs are contiguous row segments, which the
    /// direct gather reads well, and the extra pass was measured to cost it 6-7% of a
    /// step at one thread (the Diagonal BiLSTM gained 2-7%).
    fn two_pass_layout(&self) -> bool {
        match self.layout {
            Layout::Row => false,
            Layout::Diag { .. } => true,
        }
    }
    /// Floats of the input-to-state map S (N x dirs*4h x H x W).
    pub fn s_len(&self) -> usize {
        self.batch * self.dirs() * 4 * self.hidden * self.plane()
    }
    /// Floats of the output Y (N x h x H x W).
    pub fn y_len(&self) -> usize {
        self.batch * self.hidden * self.plane()
    }
    /// Floats of S, the input-to-state map, per image (dirs*4h x H x W).
    pub fn s_per_image(&self) -> usize {
        self.dirs() * 4 * self.hidden * self.plane()
    }
    /// Floats of the state-to-state weight (dirs*4h x h x taps).
    pub fn w_len(&self) -> usize {
        self.dirs() * 4 * self.hidden * self.hidden * self.taps()
    }
    /// Floats of h0 / c0 (dirs*h x L).
    pub fn state_len(&self) -> usize {
        self.dirs() * self.hidden * self.cells()
    }

    /// Where direction `d` reads its input at step `t`: state indices `lo..hi` read plane
    /// offsets `base + s * stride`; the other state indices are the skew's padding (input
    /// zero). For the Diagonal BiLSTM, row s at skewed column t is image column t - s,
    /// mirrored for direction 1.
    #[inline]
    fn src_run(&self, d: usize, t: usize) -> Run {
        let (h, w) = (self.height as isize, self.width as isize);
        let t_ = t as isize;
        match self.layout {
            Layout::Row => Run {
                lo: 0,
                hi: self.width,
                base: t_ * w,
                stride: 1,
            },
            Layout::Diag { .. } => {
                let lo = (t_ - w + 1).max(0) as usize;
                let hi = (t_ + 1).min(h) as usize;
                if d == 0 {
                    Run {
                        lo,
                        hi,
                        base: t_,
                        stride: w - 1,
                    }
                } else {
                    Run {
                        lo,
                        hi,
                        base: w - 1 - t_,
                        stride: w + 1,
                    }
                }
            }
        }
    }

    /// Where direction `d`'s h at step `t` is added into the output plane. The
    /// right-to-left map lands one row lower (the shift-down that keeps it causal), so its
    /// last row is dropped.
    #[inline]
    fn dst_run(&self, d: usize, t: usize) -> Run {
        let r = self.src_run(d, t);
        match self.layout {
            Layout::Diag { shift: true } if d == 1 => Run {
                hi: r.hi.min(self.height - 1),
                base: r.base + self.width as isize,
                ..r
            },
            _ => r,
        }
    }
}

/// A run of state indices and the plane offsets they map to.
#[derive(Clone, Copy, Debug)]
struct Run {
    lo: usize,
    hi: usize,
    base: isize,
    stride: isize,
}

impl Run {
    #[inline]
    /// Plane offset of state `s` (meaningful for `lo <= s < hi`).
    fn at(&self, s: usize) -> usize {
        (self.base + s as isize * self.stride) as usize
    }
}

/// Parameters of one recurrence, as row-major f32 slices in `ir::params_of` shapes.
#[derive(Clone, Copy)]
pub struct Params<'a> {
    /// dirs*4h x h x taps.
    pub ss: &'a [f32],
    /// dirs*h x L.
    pub h0: &'a [f32],
    pub c0: &'a [f32],
    /// When set, the kernel's input is the layer input x (N x cin x H x W) and it
    /// computes S itself with this 1x1 convolution; otherwise its input is S.
    pub conv: Option<InConv<'a>>,
    /// With `conv`: a term added to S (N x dirs*4h x H x W), such as a conditional
    /// model's class vectors; `backward` then returns its gradient, dS.
    pub extra: Option<&'a [f32]>,
}

/// A 1x1 input-to-state convolution done inside the kernel (the Diagonal BiLSTM's),
/// folded into each step's GEMM (`Fold`), instead of a libtorch op, its autograd node and
/// a full-size S tensor with its surrogate.
#[derive(Clone, Copy)]
pub struct InConv<'a> {
    /// dirs*4h x cin, the mask already applied.
    pub w: &'a [f32],
    /// dirs*4h.
    pub b: &'a [f32],
    pub cin: usize,
}

/// Recycled f32 buffers. A training step allocates the same large buffers for every
/// layer, forward and backward; reusing them saves zeroing and page faults. A taken
/// buffer holds stale values: only buffers that are fully written before being read are
/// taken from here. `conv_kernels` takes its im2col scratch from here too.
static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// A buffer of `n` floats from the pool, holding stale values (zeros where it grew).
pub(crate) fn take(n: usize) -> Vec<f32> {
    if n == 0 {
        return Vec::new();
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, v)| v.capacity() >= n)
        .min_by_key(|(_, v)| v.capacity())
        .map(|(i, _)| i);
    let mut v = best.map_or_else(Vec::new, |i| pool.swap_remove(i));
    drop(pool);
    if v.len() >= n {
        v.truncate(n);
    } else {
        v.resize(n, 0.0);
    }
    v
}

/// Returns a buffer to the pool.
pub(crate) fn give(v: Vec<f32>) {
    if v.capacity() == 0 {
        return; // nothing to keep, and it would take a slot
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    // A training step keeps 8 buffers per worker and recurrent layer until its backward
    // pass (7 layers x 2 workers for the shipped MNIST models), and a few more in flight.
    if pool.len() < 160 {
        pool.push(v);
    }
}

/// What the forward pass keeps for the backward pass, per thread slice of the batch.
/// The backward pass consumes it (it overwrites the activations with their gradients).
pub struct Saved {
    geom: Geom,
    parts: Vec<Part>,
}

/// One worker's slice of the batch and its step-major buffers, each indexed
/// [dir][step][channel][state * images + image] so that a step reads and writes
/// contiguous (channels x M) matrices, M = images * L, and the states a step computes
/// (`Geom::active` onwards) are one contiguous block of columns.
struct Part {
    first: usize,
    count: usize,
    /// The image's states.
    main: Steps,
    /// The states left of the image (`Geom::image_end`), one image's worth
    /// (q = 1): [dir][step][channel][state].
    pad: Steps,
    /// With the input conv folded into the steps: x pixel-major, [cin][pixel][image].
    xp: Option<Vec<f32>>,
}

/// Step-major buffers of one recurrence.
struct Steps {
    /// Gate pre-activations, then activations o, f, i, g (4h per step); in backward,
    /// their gradients.
    act: Vec<f32>,
    /// Cell c, tanh(c) and hidden h (h per step each).
    c: Vec<f32>,
    tc: Vec<f32>,
    h: Vec<f32>,
}

impl Steps {
    /// Buffers for `n` cells per step (stale values: every step writes what it computes).
    fn take(dirs: usize, steps: usize, n: usize) -> Steps {
        Steps {
            act: take(dirs * steps * 4 * n),
            c: take(dirs * steps * n),
            tc: take(dirs * steps * n),
            h: take(dirs * steps * n),
        }
    }
    fn recycle(self) {
        give(self.act);
        give(self.c);
        give(self.tc);
        give(self.h);
    }
}

/// Gradients of one recurrence's parameters (the input's go to the caller's buffer).
pub struct Grads {
    pub dss: Vec<f32>,
    pub dh0: Vec<f32>,
    pub dc0: Vec<f32>,
    /// The input conv's weight and bias, when it ran in the kernel (else empty).
    pub dw: Vec<f32>,
    pub db: Vec<f32>,
}

/// Splits `n` images over at most `threads` workers: (first, count) per worker.
pub(crate) fn split(n: usize, threads: usize) -> Vec<(usize, usize)> {
    let k = threads.clamp(1, n.max(1));
    (0..k)
        .map(|w| {
            let a = n * w / k;
            let b = n * (w + 1) / k;
            (a, b - a)
        })
        .filter(|&(_, c)| c > 0)
        .collect()
}

/// Splits `v` into consecutive chunks of `per * count` floats for each part.
fn chunks_mut<'a>(
    mut v: &'a mut [f32],
    parts: &[(usize, usize)],
    per: usize,
) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(parts.len());
    for &(_, c) in parts {
        let (a, b) = v.split_at_mut(c * per);
        out.push(a);
        v = b;
    }
    out
}

/// `p.extra` is S-sized and comes only with the input conv.
fn check_extra(g: Geom, p: &Params) {
    if let Some(e) = p.extra {
        assert!(p.conv.is_some(), "an extra term needs the input conv");
        assert_eq!(
            e.len(),
            g.batch * g.s_per_image(),
            "the extra term has the wrong size"
        );
    }
}

/// Floats per image of the kernel's input: S, or x when the input conv runs inside.
fn input_per_image(g: Geom, p: &Params) -> usize {
    match p.conv {
        Some(cv) => cv.cin * g.plane(),
        None => g.s_per_image(),
    }
}

/// Forward pass: writes Y (N x h x H x W, the directions summed; `y` must be zero on
/// entry) and, when `save` is set, returns what `backward` needs. `input` is S, or x when
/// `p.conv` is set.
pub fn forward(
    g: Geom,
    input: &[f32],
    p: Params,
    threads: usize,
    save: bool,
    y: &mut [f32],
) -> Option<Saved> {
    let per = input_per_image(g, &p);
    assert_eq!(input.len(), g.batch * per, "the input has the wrong size");
    assert_eq!(y.len(), g.y_len(), "Y has the wrong size");
    assert_eq!(p.ss.len(), g.w_len());
    assert_eq!(p.h0.len(), g.state_len());
    assert_eq!(p.c0.len(), g.state_len());
    if let Some(cv) = p.conv {
        assert_eq!(cv.w.len(), g.dirs() * 4 * g.hidden * cv.cin);
        assert_eq!(cv.b.len(), g.dirs() * 4 * g.hidden);
    }
    check_extra(g, &p);
    let parts = split(g.batch, threads);
    let y_img = g.hidden * g.plane();
    let ys = chunks_mut(y, &parts, y_img);
    let work: Vec<_> = parts.iter().copied().zip(ys).collect();
    let saved: Vec<Part> = crate::util::on_threads(work, |((first, count), yc)| {
        let ic = &input[first * per..(first + count) * per];
        forward_part(g, first, count, ic, p, yc)
    });
    if save {
        Some(Saved {
            geom: g,
            parts: saved,
        })
    } else {
        for part in saved {
            part.recycle();
        }
        None
    }
}

impl Part {
    fn recycle(self) {
        self.main.recycle();
        self.pad.recycle();
        if let Some(xp) = self.xp {
            give(xp);
        }
    }
}

/// Builds the GEMM operand X (h*taps x M, row c*taps+tap) from the previous state, in
/// the columns of states `lo..hi`: X[c*T+tap][s*q + i] = h[c][(s+tap-1)*q + i] for q
/// images, zero outside the state.
#[allow(clippy::too_many_arguments)]
fn build_x(
    x: &mut [f32],
    h: &[f32],
    hid: usize,
    taps: usize,
    q: usize,
    len: usize,
    lo: usize,
    hi: usize,
) {
    let m = q * len;
    let (a, e) = (lo * q, hi * q);
    for c in 0..hid {
        let hc = &h[c * m..(c + 1) * m];
        for tap in 0..taps {
            let row = &mut x[(c * taps + tap) * m..(c * taps + tap + 1) * m];
            // Offset tap-1: -1 reads the previous state, +1 the next: a shift by q columns.
            match tap as isize - 1 {
                -1 => {
                    let from = a.max(q).min(e);
                    row[a..from].fill(0.0);
                    row[from..e].copy_from_slice(&hc[from - q..e - q]);
                }
                0 => row[a..e].copy_from_slice(&hc[a..e]),
                _ => {
                    let to = e.min(m - q).max(a);
                    row[a..to].copy_from_slice(&hc[a + q..to + q]);
                    row[to..e].fill(0.0);
                }
            }
        }
    }
}

/// What a step's gates get besides W_ss X(h_{t-1}).
#[derive(Clone, Copy)]
struct GateIn<'a> {
    /// What `act` holds already (the input-to-state map S, or an extra term), kept and
    /// added to; else the gates start from zero.
    add: bool,
    /// The input conv, folded into the step's GEMM.
    fold: Option<Fold<'a>>,
}

/// The 1x1 input-to-state conv done inside each step, as one GEMM with the
/// state-to-state conv: `[W_in | W_ss] [x_t; X(h_{t-1})] + b`. Each step reads only its
/// own pixels of x, so x is gathered into step order (`cin` channels) instead of S
/// (4h per direction): half the floats moved at `cin` = 2h (the MNIST models), no
/// full-size S, and the GEMM is twice as deep. Each step gathers its x_t from x
/// pixel-major just before its GEMM, so x_t is in cache and no step-ordered copy of x is
/// kept from the forward pass to the backward pass (3 MB per worker and layer at the
/// MNIST size, read back from memory).
#[derive(Clone, Copy)]
struct Fold<'a> {
    /// x pixel-major, [cin][pixel][image]; `forward_steps` gathers each step's x_t from
    /// it for `step_forward`.
    xp: &'a [f32],
    /// Where each step's x_t lies (`Geom::src_run` of direction `dir`).
    geom: Geom,
    dir: usize,
    cin: usize,
    /// [W_in | W_ss] for this direction, 4h x (cin + h*taps), row-major.
    w_cat: &'a [f32],
    /// The conv's bias for this direction (4h).
    b: &'a [f32],
}

/// Direction `d`'s `steps` steps, each over the states `states(t)` of q images, into the
/// step-major buffers `st`: the gates get `gin`'s input (see `GateIn`); `after(k, t,
/// st)` runs after each step (k = d * steps + t). The scratch buffers are X's and x_t's
/// (with `gin.fold`); the tuple holds W_d and the initial h and c (h x M each).
#[allow(clippy::too_many_arguments)]
fn forward_steps(
    st: &mut Steps,
    (x, xt): (&mut [f32], &mut [f32]),
    (w, h_init, c_init): (&[f32], &[f32], &[f32]),
    (d, steps): (usize, usize),
    shape: (usize, usize, usize, usize),
    states: impl Fn(usize) -> (usize, usize),
    gin: GateIn,
    mut after: impl FnMut(usize, usize, &Steps),
) {
    let (hid, _, q, len) = shape;
    let n = hid * q * len;
    for t in 0..steps {
        let k = d * steps + t;
        // Split the step-major buffers at this step: [..k] is the past.
        let (c_past, c_now) = st.c.split_at_mut(k * n);
        let (h_past, h_now) = st.h.split_at_mut(k * n);
        let (h_prev, c_prev) = if t == 0 {
            (h_init, c_init)
        } else {
            (&h_past[(k - 1) * n..], &c_past[(k - 1) * n..])
        };
        if let Some(f) = gin.fold {
            gather_channels(xt, f.xp, f.cin, f.geom.src_run(f.dir, t), q, false);
        }
        step_forward(
            w,
            (x, xt),
            h_prev,
            c_prev,
            (
                &mut st.act[k * 4 * n..(k + 1) * 4 * n],
                c_now,
                &mut st.tc[k * n..(k + 1) * n],
                h_now,
            ),
            shape,
            states(t),
            gin,
        );
        after(k, t, st);
    }
}

/// One step of the recurrence over states `lo..hi` of q images: the gates get W X(h_prev)
/// and `gin`'s input (with `gin.fold`, from the step's x_t in `xt`), then the cell update
/// writes c, tanh(c) and h. `gates` is 4h x M, the others h x M; `x` is X's scratch.
#[allow(clippy::too_many_arguments)]
fn step_forward(
    w: &[f32],
    (x, xt): (&mut [f32], &[f32]),
    h_prev: &[f32],
    c_prev: &[f32],
    out: (&mut [f32], &mut [f32], &mut [f32], &mut [f32]),
    (hid, taps, q, len): (usize, usize, usize, usize),
    (lo, hi): (usize, usize),
    gin: GateIn,
) {
    if lo >= hi {
        return;
    }
    let (gates, c, tc, h) = out;
    let m = q * len;
    let n = hid * m;
    let (a, e) = (lo * q, hi * q);
    build_x(x, h_prev, hid, taps, q, len, lo, hi);
    // gates[:, a..e] (+)= W_d (4h x h*taps) . X[:, a..e] (h*taps x (e - a)), from
    // column a of row-major arrays with M columns.
    let beta = if gin.add { 1.0 } else { 0.0 };
    let (wv, xv) = (View::rows(w, hid * taps), View::rows(&x[a..], m));
    match gin.fold {
        None => gemm(4 * hid, hid * taps, e - a, wv, xv, beta, &mut gates[a..], m),
        Some(f) => {
            // The states lo..hi are exactly the step's run of pixels (`Geom::src_run`),
            // so every column computed reads real input.
            let xt = View::rows(&xt[a..], m);
            let wc = View::rows(f.w_cat, f.cin + hid * taps);
            let blocks = [(xt, f.cin), (xv, hid * taps)];
            gemm_stacked(
                4 * hid,
                e - a,
                wc,
                &blocks,
                Some(f.b),
                beta,
                &mut gates[a..],
                m,
            );
        }
    }
    cell_forward(
        &mut gates[..4 * n],
        &c_prev[..n],
        &mut c[..n],
        &mut tc[..n],
        &mut h[..n],
        (m, a, e),
    );
}

/// One step back over states `lo..hi` of q images: `dgates` (the step's activations)
/// become the gate pre-activation gradients, `dw` accumulates W's gradient, `dc` becomes
/// the gradient reaching the previous cell (in these columns) and `dh` the one reaching
/// the previous h (all of it rewritten); `dy` is what reaches h from outside, and `db`
/// (when given) gets the gate gradients' sums (see `CellGrad`). `x` and `dx` are scratch
/// (h*taps x M).
#[allow(clippy::too_many_arguments)]
fn step_backward(
    (w, dw): (&[f32], &mut [f32]),
    (x, dx): (&mut [f32], &mut [f32]),
    dgates: &mut [f32],
    (tc, c_prev, h_prev): (&[f32], &[f32], &[f32]),
    (dh, dy): (&mut [f32], &[f32]),
    dc: &mut [f32],
    db: Option<&mut [f32]>,
    (hid, taps, q, len): (usize, usize, usize, usize),
    (lo, hi): (usize, usize),
) {
    if lo >= hi {
        dh.fill(0.0);
        return;
    }
    let m = q * len;
    let (a, e) = (lo * q, hi * q);
    let gr = CellGrad { dh, dy, dc, db };
    cell_backward(dgates, tc, c_prev, gr, (m, a, e));
    build_x(x, h_prev, hid, taps, q, len, lo, hi);
    let k = hid * taps;
    // dW += dG[:, a..e] (4h x (e - a)) . X[:, a..e]^T ((e - a) x h*taps)
    let (g, xt) = (View::rows(&dgates[a..], m), View::transposed(&x[a..], m));
    gemm(4 * hid, e - a, k, g, xt, 1.0, dw, k);
    // dX[:, a..e] (h*taps x (e - a)) = W^T . dG[:, a..e]
    gemm(
        k,
        4 * hid,
        e - a,
        View::transposed(w, k),
        g,
        0.0,
        &mut dx[a..],
        m,
    );
    // dh for the previous step: undo build_x's shifts (by q columns).
    dh.fill(0.0);
    for c in 0..hid {
        let dst = &mut dh[c * m..(c + 1) * m];
        for tap in 0..taps {
            let row = &dx[(c * taps + tap) * m..(c * taps + tap + 1) * m];
            match tap as isize - 1 {
                -1 => {
                    let from = a.max(q).min(e);
                    add_into(&mut dst[from - q..e - q], &row[from..e]);
                }
                0 => add_into(&mut dst[a..e], &row[a..e]),
                _ => {
                    let to = e.min(m - q).max(a);
                    add_into(&mut dst[a + q..to + q], &row[a..to]);
                }
            }
        }
    }
}

/// Broadcasts a (dirs*h x L) initial state of direction d to h x M (q images).
fn broadcast_state(dst: &mut [f32], src: &[f32], d: usize, hid: usize, q: usize, len: usize) {
    let m = q * len;
    for c in 0..hid {
        let from = &src[(d * hid + c) * len..(d * hid + c + 1) * len];
        for (s, &v) in from.iter().enumerate() {
            dst[c * m + s * q..c * m + (s + 1) * q].fill(v);
        }
    }
}

/// Copies image planes into step-major order: the H x W plane of image i, channel ch
/// (of `chans`), direction d starts at `src[at(i, ch, d)]`; `out[d][t][ch][s*imgs + i]`
/// gets its value at the step's run offset, zero off the run.
///
/// For the Diagonal BiLSTM in two passes per (direction, channel) (`two_pass_layout`),
/// because the skew makes a one-pass gather read one float from each of `imgs` planes
/// per state, missing L1 at every one (about 8 cycles a float, a fifth of a training
/// step): the planes are first transposed to pixel-major `[pixel][image]`
/// (`planes_to_pixels`, cache-blocked), then each state of each step is one contiguous
/// copy of `imgs` floats. The Row LSTM's runs are row segments: a direct gather.
fn to_steps(
    g: Geom,
    imgs: usize,
    chans: usize,
    out: &mut [f32],
    run: impl Fn(usize, usize) -> Run,
    src: &[f32],
    at: impl Fn(usize, usize, usize) -> usize,
) {
    let (len, steps, plane) = (g.cells(), g.steps(), g.plane());
    let m = imgs * len;
    let mut offs = vec![0; imgs];
    let two_pass = g.two_pass_layout();
    let mut px = take(if two_pass { plane * imgs } else { 0 });
    for d in 0..g.dirs() {
        for ch in 0..chans {
            offs.iter_mut()
                .enumerate()
                .for_each(|(i, o)| *o = at(i, ch, d));
            if two_pass {
                planes_to_pixels(&mut px, src, &offs, plane);
            }
            for t in 0..steps {
                let r = run(d, t);
                let row = &mut out[((d * steps + t) * chans + ch) * m..][..m];
                // Zero only what the run leaves: the copies below overwrite the rest.
                row[..r.lo * imgs].fill(0.0);
                row[r.hi * imgs..].fill(0.0);
                for s in r.lo..r.hi {
                    let o = r.at(s);
                    let dst = &mut row[s * imgs..(s + 1) * imgs];
                    if two_pass {
                        copy_short(dst, &px[o * imgs..(o + 1) * imgs]);
                    } else {
                        for (v, &p) in dst.iter_mut().zip(&offs) {
                            *v = src[p + o];
                        }
                    }
                }
            }
        }
    }
    give(px);
}

/// The inverse direction of `to_steps`: adds (or, with `assign`, stores) each step's
/// row `src[d][t][ch][s*imgs + i]` into the plane at `out[at(i, ch, d)]`, at the run's
/// offsets. For the Diagonal BiLSTM the same two passes in reverse: contiguous copies
/// into a pixel-major plane, then its transpose into the image planes. With `assign` the runs of each direction
/// must cover the whole plane (they do for `Geom::src_run`: each position is read by
/// exactly one step), since every position is stored.
fn from_steps(
    g: Geom,
    chans: usize,
    src: &[f32],
    run: impl Fn(usize, usize) -> Run,
    out: &mut [f32],
    at: impl Fn(usize, usize, usize) -> usize,
    assign: bool,
) {
    let (len, steps, plane) = (g.cells(), g.steps(), g.plane());
    let m = src.len() / (g.dirs() * steps * chans);
    let imgs = m / len;
    let mut offs = vec![0; imgs];
    let two_pass = g.two_pass_layout();
    let mut px = take(if two_pass { plane * imgs } else { 0 });
    let mut written = Vec::new();
    let mut unwritten = Vec::new();
    for d in 0..g.dirs() {
        if two_pass && !assign {
            // Positions no step of this direction writes (the shifted map's first row)
            // must add nothing; the copies overwrite every other pixel row of `px`, so
            // only these are zeroed, not all of `px` for every channel.
            written.clear();
            written.resize(plane, false);
            for t in 0..steps {
                let r = run(d, t);
                (r.lo..r.hi).for_each(|s| written[r.at(s)] = true);
            }
            unwritten.clear();
            unwritten.extend((0..plane).filter(|&o| !written[o]));
        }
        for ch in 0..chans {
            offs.iter_mut()
                .enumerate()
                .for_each(|(i, o)| *o = at(i, ch, d));
            for &o in &unwritten {
                px[o * imgs..(o + 1) * imgs].fill(0.0);
            }
            let mut covered = 0;
            for t in 0..steps {
                let r = run(d, t);
                let row = &src[((d * steps + t) * chans + ch) * m..][..m];
                for s in r.lo..r.hi {
                    let o = r.at(s);
                    let vals = &row[s * imgs..(s + 1) * imgs];
                    if two_pass {
                        copy_short(&mut px[o * imgs..(o + 1) * imgs], vals);
                    } else if assign {
                        for (&v, &p) in vals.iter().zip(&offs) {
                            out[p + o] = v;
                        }
                    } else {
                        for (&v, &p) in vals.iter().zip(&offs) {
                            out[p + o] += v;
                        }
                    }
                }
                covered += r.hi - r.lo;
            }
            debug_assert!(!assign || covered == plane, "assign needs full coverage");
            if two_pass {
                pixels_to_planes(out, &px, &offs, plane, assign);
            }
        }
    }
    give(px);
}

/// `dst.copy_from_slice(src)` for the few floats of one state (`imgs`, often 8 or 16),
/// inline: `copy_from_slice` calls `memmove`, whose call and size dispatch cost more than
/// the copy at this size.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (a, b) in (&mut d).zip(&mut s) {
        let b: [f32; 8] = b.try_into().expect("8 floats");
        a.copy_from_slice(&b);
    }
    for (a, &b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a = b;
    }
}

/// Puts the states `r.lo..r.hi` of a step row (`imgs` floats per state) at their
/// pixels of a pixel-major plane `px` ([pixel][image]): stored, or with `add` added.
fn scatter_run(px: &mut [f32], row: &[f32], r: Run, imgs: usize, add: bool) {
    for s in r.lo..r.hi {
        let o = r.at(s);
        let (dst, src) = (
            &mut px[o * imgs..(o + 1) * imgs],
            &row[s * imgs..(s + 1) * imgs],
        );
        if add {
            add_into(dst, src);
        } else {
            copy_short(dst, src);
        }
    }
}

/// `scatter_run`'s inverse: a step row gets the states `r.lo..r.hi` from their pixels of
/// a pixel-major plane; with `zero_rest`, zero elsewhere (else left as they are).
fn gather_run(row: &mut [f32], px: &[f32], r: Run, imgs: usize, zero_rest: bool) {
    if zero_rest {
        row[..r.lo * imgs].fill(0.0);
        row[r.hi * imgs..].fill(0.0);
    }
    for s in r.lo..r.hi {
        let o = r.at(s);
        copy_short(
            &mut row[s * imgs..(s + 1) * imgs],
            &px[o * imgs..(o + 1) * imgs],
        );
    }
}

/// Asks for the lines of the states `r.lo..r.hi` of a pixel-major plane `px` (if any) to
/// be brought into L1; nothing that is computed changes. The step's gathers and scatters
/// call it for the next channel before doing this one: a channel's runs of the MNIST
/// Diagonal BiLSTM's x, Y, dY and dx (1.6 MB, past L2) lie 1.7 kB apart, and their
/// copies waited on those lines (most of `gather_run`'s samples on its first load, in
/// `perf`). With it `gather_run` and `scatter_run` went from 13.2% to 7.7% of the
/// samples of a one-thread training run in `perf`, about 3% faster in wall time.
#[inline(always)]
fn prefetch_run(px: Option<&[f32]>, r: Run, imgs: usize) {
    let Some(px) = px else { return };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (px, r, imgs);
    #[cfg(target_arch = "x86_64")]
    for s in r.lo..r.hi {
        let o = r.at(s) * imgs;
        if let Some(last) = px.get(o + imgs - 1) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: a prefetch reads nothing into the program and cannot fault; both
            // addresses are inside `px`.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(px.as_ptr().add(o).cast());
                _mm_prefetch::<_MM_HINT_T0>((last as *const f32).cast());
            }
        }
    }
}

/// `gather_run` for each of `chans` channels: `rows` ([chans][M]) from `px`
/// ([chans][pixel][image]), each channel's copies after a prefetch of the next one's
/// pixels. A step's x_t is gathered without `zero_rest` (its GEMM reads only the run's
/// columns), its dY with it (the cell pass reads all of `active..image_end`).
fn gather_channels(
    rows: &mut [f32],
    px: &[f32],
    chans: usize,
    r: Run,
    imgs: usize,
    zero_rest: bool,
) {
    let (m, chan) = (rows.len() / chans, px.len() / chans);
    for (c, row) in rows.chunks_exact_mut(m).enumerate() {
        prefetch_run(px.get((c + 1) * chan..), r, imgs);
        gather_run(row, &px[c * chan..(c + 1) * chan], r, imgs, zero_rest);
    }
}

/// `scatter_run` for each of `chans` channels: `rows` ([chans][M]) into `px`
/// ([chans][pixel][image]), with the same prefetch as `gather_channels`.
fn scatter_channels(px: &mut [f32], rows: &[f32], chans: usize, r: Run, imgs: usize, add: bool) {
    let (m, chan) = (rows.len() / chans, px.len() / chans);
    for (c, row) in rows.chunks_exact(m).enumerate() {
        prefetch_run(px.get((c + 1) * chan..), r, imgs);
        scatter_run(&mut px[c * chan..(c + 1) * chan], row, r, imgs, add);
    }
}

/// Pixels per block of the scalar plane transposes: a block's `TILE` rows of `px` (`imgs`
/// floats each, one 64-byte line at 16 images) and its `TILE` floats of every plane stay
/// in L1 while it is done.
const TILE: usize = 16;

/// `px[p * imgs + i] = src[offs[i] + p]` for p < plane, i < imgs = offs.len().
///
/// With AVX, 8 x 8 blocks (8 images' runs of 8 pixels) are transposed in registers: the
/// scalar loop stored one float per instruction at a stride of `imgs` floats (with
/// `pixels_to_planes`, about 6% of the Diagonal BiLSTM's step in `perf` before). The rest (images past the last multiple
/// of 8, pixels past the last multiple of 8) goes through the scalar loop.
fn planes_to_pixels(px: &mut [f32], src: &[f32], offs: &[usize], plane: usize) {
    let imgs = offs.len();
    assert!(px.len() >= plane * imgs);
    assert!(offs.iter().all(|&o| o + plane <= src.len()));
    let (pf, ifull) = blocks8(plane, imgs);
    #[cfg(target_arch = "x86_64")]
    if pf > 0 && ifull > 0 {
        // SAFETY: `blocks8` is non-empty only when the CPU has AVX; the asserts above
        // keep every 8-float load and store in bounds.
        unsafe { t8::planes_to_pixels(px, src, offs, pf, ifull) };
    }
    planes_to_pixels_scalar(px, src, offs, pf..plane, 0..imgs);
    planes_to_pixels_scalar(px, src, offs, 0..pf, ifull..imgs);
}

fn planes_to_pixels_scalar(
    px: &mut [f32],
    src: &[f32],
    offs: &[usize],
    ps: std::ops::Range<usize>,
    is: std::ops::Range<usize>,
) {
    let imgs = offs.len();
    for p0 in ps.clone().step_by(TILE) {
        let p1 = (p0 + TILE).min(ps.end);
        for i in is.clone() {
            let from = &src[offs[i] + p0..offs[i] + p1];
            for (k, &v) in from.iter().enumerate() {
                px[(p0 + k) * imgs + i] = v;
            }
        }
    }
}

/// `planes_to_pixels` for every channel of images laid out `[image][channel][pixel]`
/// (`chans` channels of `plane` pixels): `px` gets them `[channel][pixel][image]`.
fn planes_to_pixels_all(px: &mut [f32], src: &[f32], chans: usize, plane: usize) {
    let imgs = px.len() / (chans * plane);
    let mut offs = vec![0; imgs];
    for ch in 0..chans {
        channel_starts(&mut offs, chans, ch, plane);
        planes_to_pixels(&mut px[ch * plane * imgs..], src, &offs, plane);
    }
}

/// Where channel `ch` of each image starts in planes laid out `[image][channel][pixel]`.
fn channel_starts(offs: &mut [usize], chans: usize, ch: usize, plane: usize) {
    for (i, o) in offs.iter_mut().enumerate() {
        *o = (i * chans + ch) * plane;
    }
}

/// `planes_to_pixels_all`'s inverse: `out` ([image][channel][pixel]) gets (with `assign`,
/// stored; else added) every channel of `px` ([channel][pixel][image]).
fn pixels_to_planes_all(out: &mut [f32], px: &[f32], chans: usize, plane: usize, assign: bool) {
    let imgs = px.len() / (chans * plane);
    let mut offs = vec![0; imgs];
    for ch in 0..chans {
        channel_starts(&mut offs, chans, ch, plane);
        pixels_to_planes(out, &px[ch * plane * imgs..], &offs, plane, assign);
    }
}

/// `out[offs[i] + p] (+)= px[p * imgs + i]`: the transpose of `planes_to_pixels`, with
/// the same 8 x 8 register blocks under AVX.
fn pixels_to_planes(out: &mut [f32], px: &[f32], offs: &[usize], plane: usize, assign: bool) {
    let imgs = offs.len();
    assert!(px.len() >= plane * imgs);
    assert!(offs.iter().all(|&o| o + plane <= out.len()));
    let (pf, ifull) = blocks8(plane, imgs);
    #[cfg(target_arch = "x86_64")]
    if pf > 0 && ifull > 0 {
        // SAFETY: as in `planes_to_pixels`.
        unsafe { t8::pixels_to_planes(out, px, offs, pf, ifull, assign) };
    }
    pixels_to_planes_scalar(out, px, offs, pf..plane, 0..imgs, assign);
    pixels_to_planes_scalar(out, px, offs, 0..pf, ifull..imgs, assign);
}

fn pixels_to_planes_scalar(
    out: &mut [f32],
    px: &[f32],
    offs: &[usize],
    ps: std::ops::Range<usize>,
    is: std::ops::Range<usize>,
    assign: bool,
) {
    let imgs = offs.len();
    for p0 in ps.clone().step_by(TILE) {
        let p1 = (p0 + TILE).min(ps.end);
        for i in is.clone() {
            let to = &mut out[offs[i] + p0..offs[i] + p1];
            if assign {
                for (k, v) in to.iter_mut().enumerate() {
                    *v = px[(p0 + k) * imgs + i];
                }
            } else {
                for (k, v) in to.iter_mut().enumerate() {
                    *v += px[(p0 + k) * imgs + i];
                }
            }
        }
    }
}

/// The pixels and images the 8 x 8 register transposes cover (`p < pf`, `i < ifull`):
/// whole blocks of 8 when the CPU has AVX, else none.
fn blocks8(plane: usize, imgs: usize) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        return (plane / 8 * 8, imgs / 8 * 8);
    }
    let _ = (plane, imgs);
    (0, 0)
}

/// 8 x 8 transposes in AVX registers for the plane <-> pixel-major copies.
#[cfg(target_arch = "x86_64")]
mod t8 {
    use crate::backend::simd::avx::transpose8 as transpose;
    use std::arch::x86_64::*;

    /// `super::planes_to_pixels` for p < pf, i < ifull (both multiples of 8).
    /// Safety: AVX, `px.len() >= plane * offs.len()` with `plane >= pf`, and
    /// `offs[i] + pf <= src.len()`.
    #[target_feature(enable = "avx")]
    pub unsafe fn planes_to_pixels(
        px: &mut [f32],
        src: &[f32],
        offs: &[usize],
        pf: usize,
        ifull: usize,
    ) {
        let imgs = offs.len();
        let (s, d) = (src.as_ptr(), px.as_mut_ptr());
        for p0 in (0..pf).step_by(8) {
            for i0 in (0..ifull).step_by(8) {
                let rows: [__m256; 8] =
                    std::array::from_fn(|r| unsafe { _mm256_loadu_ps(s.add(offs[i0 + r] + p0)) });
                for (k, v) in transpose(rows).into_iter().enumerate() {
                    _mm256_storeu_ps(d.add((p0 + k) * imgs + i0), v);
                }
            }
        }
    }

    /// `super::pixels_to_planes` for p < pf, i < ifull (both multiples of 8).
    /// Safety: AVX, `px.len() >= plane * offs.len()` with `plane >= pf`, and
    /// `offs[i] + pf <= out.len()`.
    #[target_feature(enable = "avx")]
    pub unsafe fn pixels_to_planes(
        out: &mut [f32],
        px: &[f32],
        offs: &[usize],
        pf: usize,
        ifull: usize,
        assign: bool,
    ) {
        let imgs = offs.len();
        let (s, d) = (px.as_ptr(), out.as_mut_ptr());
        for p0 in (0..pf).step_by(8) {
            for i0 in (0..ifull).step_by(8) {
                let rows: [__m256; 8] = std::array::from_fn(|k| unsafe {
                    _mm256_loadu_ps(s.add((p0 + k) * imgs + i0))
                });
                for (r, v) in transpose(rows).into_iter().enumerate() {
                    let at = d.add(offs[i0 + r] + p0);
                    let v = if assign {
                        v
                    } else {
                        _mm256_add_ps(_mm256_loadu_ps(at), v)
                    };
                    _mm256_storeu_ps(at, v);
                }
            }
        }
    }
}

fn forward_part(
    g: Geom,
    first: usize,
    imgs: usize,
    input: &[f32],
    p: Params,
    y: &mut [f32],
) -> Part {
    let (hid, len, taps, steps, dirs) = (g.hidden, g.cells(), g.taps(), g.steps(), g.dirs());
    let m = imgs * len;
    let n = hid * m;
    let plane = g.plane();
    let s_img = dirs * 4 * hid * plane;
    let y_img = hid * plane;
    let mut main = Steps::take(dirs, steps, n);
    // What the gates start from: S when it is the input, else the extra term (the
    // input conv is folded into the steps), else nothing.
    let s = match (p.conv, p.extra) {
        (None, _) => Some(input),
        (Some(_), Some(e)) => Some(&e[first * s_img..(first + imgs) * s_img]),
        (Some(_), None) => None,
    };
    if let Some(s) = s {
        to_steps(
            g,
            imgs,
            4 * hid,
            &mut main.act,
            |d, t| g.src_run(d, t),
            s,
            |i, gi, d| i * s_img + (d * 4 * hid + gi) * plane,
        );
    }
    let xp = p.conv.map(|cv| {
        let mut xp = take(cv.cin * plane * imgs);
        planes_to_pixels_all(&mut xp, input, cv.cin, plane);
        xp
    });
    let mut xt = take(p.conv.map_or(0, |cv| cv.cin * m));
    let w_cat = p.conv.map(|cv| w_cat(g, cv, p.ss));
    let mut x = take(hid * taps * m);
    let mut h_init = take(n);
    let mut c_init = take(n);
    // Y pixel-major, [channel][pixel][image], filled step by step (`two_pass_layout`;
    // else the direct scatter after the last step).
    let pixel_major = g.two_pass_layout();
    let mut yp = take(if pixel_major { hid * plane * imgs } else { 0 });
    let wsz = 4 * hid * hid * taps;
    let shape = (hid, taps, imgs, len);
    // The states left of the image, once for all of this worker's images (q = 1).
    let n1 = hid * len;
    let mut pad = Steps::take(dirs, steps, n1);
    let mut x1 = take(hid * taps * len);
    for d in 0..dirs {
        let w = &p.ss[d * wsz..(d + 1) * wsz];
        let (h0, c0) = (&p.h0[d * n1..(d + 1) * n1], &p.c0[d * n1..(d + 1) * n1]);
        let pad_shape = (hid, taps, 1, len);
        let to_image = |k: usize, t: usize, pad: &Steps| {
            // The next step's image states read one of these, the first (through both
            // its h and its cell): every image's columns of it get its values.
            let s = g.image_end(t);
            if s < len {
                for c in 0..hid {
                    let cols = k * n + c * m + s * imgs..k * n + c * m + (s + 1) * imgs;
                    main.h[cols.clone()].fill(pad.h[k * n1 + c * len + s]);
                    main.c[cols].fill(pad.c[k * n1 + c * len + s]);
                }
            }
        };
        let pad_states = |t| (g.image_end(t), len);
        forward_steps(
            &mut pad,
            (&mut x1, &mut []),
            (w, h0, c0),
            (d, steps),
            pad_shape,
            pad_states,
            GateIn {
                add: false,
                fold: None,
            },
            to_image,
        );
        broadcast_state(&mut h_init, p.h0, d, hid, imgs, len);
        broadcast_state(&mut c_init, p.c0, d, hid, imgs, len);
        let image_states = |t| (g.active(t), g.image_end(t));
        let fold = match (p.conv, &xp, &w_cat) {
            (Some(cv), Some(xp), Some(wc)) => {
                let (k, rows) = (cv.cin + hid * taps, 4 * hid);
                Some(Fold {
                    xp,
                    geom: g,
                    dir: d,
                    cin: cv.cin,
                    w_cat: &wc[d * rows * k..(d + 1) * rows * k],
                    b: &cv.b[d * rows..(d + 1) * rows],
                })
            }
            _ => None,
        };
        let gin = GateIn {
            add: s.is_some(),
            fold,
        };
        // Y: each step's h put at the positions it covers while it is still in cache.
        // Read back after the last step, the step buffers came from memory; doing this,
        // dY's gather and dx's scatter step by step made the MNIST Diagonal BiLSTM's
        // training step 4-8% faster (`pixc bench-one`, medians of three, 1 and 2
        // threads). Direction 0 covers every pixel.
        let mut scatter = |k: usize, t: usize, st: &Steps| {
            let h = &st.h[k * n..(k + 1) * n];
            scatter_channels(&mut yp, h, hid, g.dst_run(d, t), imgs, d > 0);
        };
        let mut nothing = |_: usize, _: usize, _: &Steps| {};
        let to_y: &mut dyn FnMut(usize, usize, &Steps) = if pixel_major {
            &mut scatter
        } else {
            &mut nothing
        };
        forward_steps(
            &mut main,
            (&mut x, &mut xt),
            (w, &h_init, &c_init),
            (d, steps),
            shape,
            image_states,
            gin,
            to_y,
        );
    }
    if pixel_major {
        pixels_to_planes_all(y, &yp, hid, plane, true);
    } else {
        from_steps(
            g,
            hid,
            &main.h,
            |d, t| g.dst_run(d, t),
            y,
            |i, c, _| i * y_img + c * plane,
            false,
        );
    }
    for b in [x, xt, x1, h_init, c_init, yp] {
        give(b);
    }
    if let Some(wc) = w_cat {
        give(wc);
    }
    Part {
        first,
        count: imgs,
        main,
        pad,
        xp,
    }
}

/// [W_in | W_ss] per direction (dirs x 4h x (cin + h*taps), row-major): the folded step
/// GEMM's left operand.
fn w_cat(g: Geom, cv: InConv, ss: &[f32]) -> Vec<f32> {
    let (rows, kss) = (g.dirs() * 4 * g.hidden, g.hidden * g.taps());
    let k = cv.cin + kss;
    let mut wc = take(rows * k);
    for r in 0..rows {
        wc[r * k..r * k + cv.cin].copy_from_slice(&cv.w[r * cv.cin..(r + 1) * cv.cin]);
        wc[r * k + cv.cin..(r + 1) * k].copy_from_slice(&ss[r * kss..(r + 1) * kss]);
    }
    wc
}

/// Gate math of one step over n = h*M cells, columns `a..e` of each of the h rows
/// (`cols` = (M, a, e)). `gates` holds pre-activations [o; f; i; g] (each n long) and
/// becomes the activations; writes the new cell, tanh(cell) and h.
fn cell_forward(
    gates: &mut [f32],
    c_prev: &[f32],
    c: &mut [f32],
    tc: &mut [f32],
    h: &mut [f32],
    (m, a, e): (usize, usize, usize),
) {
    #[cfg(target_arch = "x86_64")]
    if crate::backend::simd::avx2_fma() {
        // SAFETY: the CPU has the features the gate8 path is compiled for.
        unsafe { gate8::cell_forward(gates, c_prev, c, tc, h, (m, a, e)) };
        return;
    }
    cell_forward_from(0, gates, c_prev, c, tc, h, (m, a, e));
}

/// `cell_forward`'s scalar loop over cells `a + from..e` of each row: the whole pass on a
/// CPU without AVX2 + FMA, the last (e - a) % 8 cells inside `gate8` (where its
/// `mul_add`s are single instructions) on one with them.
#[inline(always)]
fn cell_forward_from(
    from: usize,
    gates: &mut [f32],
    c_prev: &[f32],
    c: &mut [f32],
    tc: &mut [f32],
    h: &mut [f32],
    (m, a, e): (usize, usize, usize),
) {
    let n = c.len();
    let (o, rest) = gates.split_at_mut(n);
    let (f, rest) = rest.split_at_mut(n);
    let (i, gg) = rest.split_at_mut(n);
    for r in 0..n / m {
        for k in r * m + a + from..r * m + e {
            let v = cell([o[k], f[k], i[k], gg[k]], c_prev[k]);
            (o[k], f[k], i[k], gg[k]) = (v.o, v.f, v.i, v.g);
            (c[k], tc[k], h[k]) = (v.c, v.tc, v.h);
        }
    }
}

/// The gate math in vectors of eight cells in AVX2 + FMA intrinsics (`simd::avx`'s
/// `cell_n`, the same formulas as the scalar loops'), with their multiply-adds fused.
#[cfg(target_arch = "x86_64")]
mod gate8 {
    use crate::backend::simd::avx::{cell_n, hsum, Cell};
    use std::arch::x86_64::*;

    /// Vectors of eight cells that `cell_forward` puts through `cell_n` at once. One at a
    /// time, the pass ran at 29-33 ns per eight cells (a one-thread micro-benchmark, 16
    /// rows of 224 columns, hot caches): a cell is one long chain of dependent
    /// operations, and the CPU's window held about one. Two at a time: 23-26 ns; three,
    /// four or six: 20-25 ns.
    const CELLS: usize = 4;

    /// `super::cell_forward`, `CELLS` vectors of eight cells per pass, then the last (e -
    /// a) % 8 of each row through the scalar loop.
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn cell_forward(
        gates: &mut [f32],
        c_prev: &[f32],
        c: &mut [f32],
        tc: &mut [f32],
        h: &mut [f32],
        (m, a, e): (usize, usize, usize),
    ) {
        let n = c.len();
        assert!(gates.len() >= 4 * n && c_prev.len() >= n && tc.len() >= n && h.len() >= n);
        assert!(a <= e && e <= m && n.is_multiple_of(m));
        let w8 = (e - a) / 8 * 8;
        let (g, cp) = (gates.as_mut_ptr(), c_prev.as_ptr());
        let (cw, tw, hw) = (c.as_mut_ptr(), tc.as_mut_ptr(), h.as_mut_ptr());
        // Where each row's whole vectors of eight cells start, row after row. They are
        // all independent, so `CELLS` at a time go through `cell_n` together (across row
        // ends too); the last few one at a time.
        let mut starts = (0..n / m).flat_map(|r| (0..w8 / 8).map(move |j| r * m + a + 8 * j));
        loop {
            let mut ks = [0usize; CELLS];
            let mut got = 0;
            for (slot, k) in ks.iter_mut().zip(starts.by_ref()) {
                *slot = k;
                got += 1;
            }
            // SAFETY (the loads and stores): a start k in row r has k + 8 <= r * m + e
            // <= n, and gates holds 4n.
            unsafe {
                let load = |k: usize| {
                    let pre = std::array::from_fn(|q| _mm256_loadu_ps(g.add(q * n + k)));
                    (pre, _mm256_loadu_ps(cp.add(k)))
                };
                if got < CELLS {
                    for &k in &ks[..got] {
                        let (pre, c0) = load(k);
                        let [v] = cell_n([pre], [c0]);
                        store(g, n, (cw, tw, hw), k, &v);
                    }
                    break;
                }
                let both = ks.map(load);
                let out = cell_n(both.map(|(pre, _)| pre), both.map(|(_, c0)| c0));
                for (&k, v) in ks.iter().zip(&out) {
                    store(g, n, (cw, tw, hw), k, v);
                }
            }
        }
        super::cell_forward_from(w8, gates, c_prev, c, tc, h, (m, a, e));
    }

    /// Stores one vector's cell at `k`: its activations over the gates (4 x n floats at
    /// `g`), and c, tanh(c) and h.
    ///
    /// # Safety
    /// AVX; k + 8 <= n, and the four buffers hold 4n, n, n, n floats.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store(
        g: *mut f32,
        n: usize,
        (c, tc, h): (*mut f32, *mut f32, *mut f32),
        k: usize,
        v: &Cell,
    ) {
        unsafe {
            _mm256_storeu_ps(g.add(k), v.o);
            _mm256_storeu_ps(g.add(n + k), v.f);
            _mm256_storeu_ps(g.add(2 * n + k), v.i);
            _mm256_storeu_ps(g.add(3 * n + k), v.g);
            _mm256_storeu_ps(c.add(k), v.c);
            _mm256_storeu_ps(tc.add(k), v.tc);
            _mm256_storeu_ps(h.add(k), v.h);
        }
    }

    /// `super::cell_backward`, eight cells per pass; returns how many cells of each row it
    /// did (the scalar loop does the last (e - a) % 8, and adds their part of the bias
    /// sums).
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn cell_backward(
        act: &mut [f32],
        tc: &[f32],
        c_prev: &[f32],
        gr: &mut super::CellGrad,
        (m, a, e): (usize, usize, usize),
    ) -> usize {
        let super::CellGrad { dh, dy, dc, db } = gr;
        let n = dc.len();
        assert!(act.len() >= 4 * n && tc.len() >= n && c_prev.len() >= n);
        assert!(dh.len() >= n && dy.len() >= n);
        assert!(a <= e && e <= m && n.is_multiple_of(m));
        if let Some(db) = db.as_deref() {
            assert!(db.len() >= 4 * (n / m));
        }
        let w8 = (e - a) / 8 * 8;
        let g = act.as_mut_ptr();
        let one = _mm256_set1_ps(1.0);
        unsafe {
            for r in 0..n / m {
                let mut sums = [_mm256_setzero_ps(); 4];
                let mut k = r * m + a;
                while k < r * m + a + w8 {
                    // SAFETY: k + 8 <= r * m + e <= n, and act holds 4n.
                    let ld = |p: *const f32| _mm256_loadu_ps(p.add(k));
                    let (ov, fv, iv, gv) =
                        (ld(g), ld(g.add(n)), ld(g.add(2 * n)), ld(g.add(3 * n)));
                    let t = ld(tc.as_ptr());
                    let dhv = _mm256_add_ps(ld(dh.as_ptr()), ld(dy.as_ptr()));
                    let dho = _mm256_mul_ps(dhv, ov);
                    // dc + dh o (1 - t^2)
                    let dcv = _mm256_fmadd_ps(dho, _mm256_fnmadd_ps(t, t, one), ld(dc.as_ptr()));
                    // x (1 - x): the sigmoid's derivative.
                    let dsig = |x: __m256| _mm256_fnmadd_ps(x, x, x);
                    let grads = [
                        _mm256_mul_ps(_mm256_mul_ps(dhv, t), dsig(ov)),
                        _mm256_mul_ps(_mm256_mul_ps(dcv, ld(c_prev.as_ptr())), dsig(fv)),
                        _mm256_mul_ps(_mm256_mul_ps(dcv, gv), dsig(iv)),
                        _mm256_mul_ps(_mm256_mul_ps(dcv, iv), _mm256_fnmadd_ps(gv, gv, one)),
                    ];
                    for (q, v) in grads.into_iter().enumerate() {
                        _mm256_storeu_ps(g.add(q * n + k), v);
                        sums[q] = _mm256_add_ps(sums[q], v);
                    }
                    _mm256_storeu_ps(dc.as_mut_ptr().add(k), _mm256_mul_ps(dcv, fv));
                    k += 8;
                }
                if let Some(db) = db.as_deref_mut() {
                    let h = n / m;
                    for (q, v) in sums.into_iter().enumerate() {
                        db[q * h + r] += hsum(v);
                    }
                }
            }
        }
        w8
    }
}

/// Backward pass, given dY (N x h x H x W): writes the input's gradient (dS, or dx when
/// the input conv ran inside) into `d_input`, dS into `d_extra` when `p.extra` was added
/// (it must be given exactly then), and returns the parameters'. Runs on the forward
/// pass's threads, and consumes what it saved (x in step order, when the conv ran inside).
pub fn backward(
    saved: Saved,
    dy: &[f32],
    p: Params,
    d_input: &mut [f32],
    d_extra: Option<&mut [f32]>,
) -> Grads {
    let g = saved.geom;
    assert_eq!(dy.len(), g.y_len(), "dY has the wrong size");
    let per = input_per_image(g, &p);
    assert_eq!(d_input.len(), g.batch * per);
    check_extra(g, &p);
    let s_img = g.s_per_image();
    assert_eq!(
        p.extra.is_some(),
        d_extra.is_some(),
        "dS is returned with an extra term"
    );
    let y_img = g.hidden * g.plane();
    let bounds: Vec<(usize, usize)> = saved.parts.iter().map(|p| (p.first, p.count)).collect();
    let d_parts = chunks_mut(d_input, &bounds, per);
    let e_parts: Vec<Option<&mut [f32]>> = match d_extra {
        Some(de) => {
            assert_eq!(de.len(), g.batch * s_img, "dS has the wrong size");
            chunks_mut(de, &bounds, s_img)
                .into_iter()
                .map(Some)
                .collect()
        }
        None => bounds.iter().map(|_| None).collect(),
    };
    let work: Vec<_> = saved.parts.into_iter().zip(d_parts).zip(e_parts).collect();
    let partials: Vec<Grads> = crate::util::on_threads(work, |((part, dpart), epart)| {
        let dyc = &dy[part.first * y_img..(part.first + part.count) * y_img];
        backward_part(g, part, dyc, p, dpart, epart)
    });
    // Sum the per-thread partials in a fixed order, so results are reproducible.
    let mut it = partials.into_iter();
    let mut total = it.next().expect("at least one part");
    for part in it {
        add_into(&mut total.dss, &part.dss);
        add_into(&mut total.dh0, &part.dh0);
        add_into(&mut total.dc0, &part.dc0);
        add_into(&mut total.dw, &part.dw);
        add_into(&mut total.db, &part.db);
    }
    total
}

/// The sum of `v` over eight interleaved partial sums, which LLVM keeps in one vector
/// register (a single running sum is a serial chain of dependent adds).
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn add_into(acc: &mut [f32], v: &[f32]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

fn backward_part(
    g: Geom,
    mut part: Part,
    dy: &[f32],
    p: Params,
    d_input: &mut [f32],
    d_extra: Option<&mut [f32]>,
) -> Grads {
    let imgs = part.count;
    assert_eq!(
        part.xp.is_some(),
        p.conv.is_some(),
        "backward's input conv differs from forward's"
    );
    let (hid, len, taps, steps, dirs) = (g.hidden, g.cells(), g.taps(), g.steps(), g.dirs());
    let m = imgs * len;
    let n = hid * m;
    let plane = g.plane();
    let s_img = dirs * 4 * hid * plane;
    let y_img = hid * plane;
    let wsz = 4 * hid * hid * taps;
    let mut dss = vec![0f32; g.w_len()];
    let mut dh0 = vec![0f32; g.state_len()];
    let mut dc0 = vec![0f32; g.state_len()];
    // What each step's h receives from the output. With `two_pass_layout`, dY
    // pixel-major ([channel][pixel][image]), from which each step gathers its part into
    // `dyt` while it is in cache (see `forward_part`'s Y); else a full step-ordered copy,
    // `dyk`, gathered directly before the first step.
    let pixel_major = g.two_pass_layout();
    let mut dyp = take(if pixel_major { hid * plane * imgs } else { 0 });
    let mut dyt = take(if pixel_major { n } else { 0 });
    let mut dyk = take(if pixel_major { 0 } else { dirs * steps * n });
    let y_at = |i, c, _| i * y_img + c * plane;
    if pixel_major {
        planes_to_pixels_all(&mut dyp, dy, hid, plane);
    } else {
        to_steps(g, imgs, hid, &mut dyk, |d, t| g.dst_run(d, t), dy, y_at);
    }
    let mut x = take(hid * taps * m);
    let mut dx = take(hid * taps * m);
    let mut dh = take(n);
    let mut dc = take(n);
    let mut h_init = take(n);
    let mut c_init = take(n);
    let shape = (hid, taps, imgs, len);
    // The states left of the image (q = 1, see `Geom::image_end`): what the image's
    // states send into them at each step, summed over the images, then their own pass.
    let n1 = hid * len;
    let (mut x1, mut dx1) = (take(hid * taps * len), take(hid * taps * len));
    let (mut pdh, mut pdc) = (take(n1), take(n1));
    let mut into_pad_h = take(steps * n1);
    let mut into_pad_c = take(steps * n1);
    // The folded input conv's gradients, dW_in and db, and each step's x_t (gathered
    // again, as forward did: `Fold`).
    let rows = dirs * 4 * hid;
    let cin = p.conv.map_or(0, |cv| cv.cin);
    let mut dw_in = vec![0f32; rows * cin];
    let mut db_in = vec![0f32; if cin > 0 { rows } else { 0 }];
    // dx pixel-major ([channel][pixel][image]), filled step by step from the step's
    // `dxt` while it is in cache (see `forward_part`'s Y); also no full step-ordered dx,
    // 3 MB per worker and layer at the MNIST size.
    let mut dxt = take(cin * m);
    let mut xt = take(cin * m);
    let mut dxp = take(cin * plane * imgs);
    for d in 0..dirs {
        broadcast_state(&mut h_init, p.h0, d, hid, imgs, len);
        broadcast_state(&mut c_init, p.c0, d, hid, imgs, len);
        let w = &p.ss[d * wsz..(d + 1) * wsz];
        let dw = &mut dss[d * wsz..(d + 1) * wsz];
        dh.fill(0.0);
        dc.fill(0.0);
        into_pad_h.fill(0.0);
        into_pad_c.fill(0.0);
        for t in (0..steps).rev() {
            let k = d * steps + t;
            let (h_prev, c_prev) = if t == 0 {
                (&h_init[..], &c_init[..])
            } else {
                (
                    &part.main.h[(k - 1) * n..k * n],
                    &part.main.c[(k - 1) * n..k * n],
                )
            };
            // Only the states `active(t)..image_end(t)` are computed here; the others
            // have no gradient in these columns (dh and dc stay zero there: the range
            // only grows going back, and what reaches the states left of the image is
            // moved out below). dY in step order is zero outside them too.
            let dy_t = if pixel_major {
                gather_channels(&mut dyt, &dyp, hid, g.dst_run(d, t), imgs, true);
                &dyt[..]
            } else {
                &dyk[k * n..(k + 1) * n]
            };
            let r = d * 4 * hid..(d + 1) * 4 * hid;
            step_backward(
                (w, &mut *dw),
                (&mut x, &mut dx),
                &mut part.main.act[k * 4 * n..(k + 1) * 4 * n],
                (&part.main.tc[k * n..(k + 1) * n], c_prev, h_prev),
                (&mut dh, dy_t),
                &mut dc,
                (cin > 0).then(|| &mut db_in[r]),
                shape,
                (g.active(t), g.image_end(t)),
            );
            if let (Some(cv), Some(xp)) = (p.conv, part.xp.as_ref()) {
                // The folded input conv: act now holds dG, 4h x M, in columns a..e.
                let (a, e) = (g.active(t) * imgs, g.image_end(t) * imgs);
                let dg = &part.main.act[k * 4 * n..(k + 1) * 4 * n];
                // The step's states are exactly its run of pixels; direction 0 covers
                // every pixel, the other adds to it.
                let run = g.src_run(d, t);
                gather_channels(&mut xt, xp, cin, run, imgs, false);
                let r = d * 4 * hid..(d + 1) * 4 * hid;
                let dgv = View::rows(&dg[a..], m);
                // dW_in += dG . x_t^T; dx_t = W_in^T dG (db was summed in the cell pass).
                let xtv = View::transposed(&xt[a..], m);
                let dwd = &mut dw_in[r.start * cin..r.end * cin];
                gemm(4 * hid, e - a, cin, dgv, xtv, 1.0, dwd, cin);
                let wt = View::transposed(&cv.w[r.start * cin..r.end * cin], cin);
                gemm(cin, 4 * hid, e - a, wt, dgv, 0.0, &mut dxt[a..], m);
                scatter_channels(&mut dxp, &dxt, cin, run, imgs, d > 0);
            }
            if t > 0 {
                // Only the first state left of the image at t - 1 was read by this step.
                let s = g.image_end(t - 1);
                if s < len {
                    for c in 0..hid {
                        let cols = c * m + s * imgs..c * m + (s + 1) * imgs;
                        let at = (t - 1) * n1 + c * len + s;
                        into_pad_h[at] += sum(&dh[cols.clone()]);
                        into_pad_c[at] += sum(&dc[cols.clone()]);
                        dh[cols.clone()].fill(0.0);
                        dc[cols].fill(0.0);
                    }
                }
            }
        }
        // What reaches step -1 is the gradient of the learned initial state.
        for c in 0..hid {
            let k = (d * hid + c) * len;
            for s in 0..len {
                let cols = c * m + s * imgs..c * m + (s + 1) * imgs;
                dh0[k + s] += dh[cols.clone()].iter().sum::<f32>();
                dc0[k + s] += dc[cols].iter().sum::<f32>();
            }
        }
        // The states left of the image, back once with the summed gradient.
        let (h0, c0) = (&p.h0[d * n1..(d + 1) * n1], &p.c0[d * n1..(d + 1) * n1]);
        pdh.fill(0.0);
        pdc.fill(0.0);
        for t in (0..steps).rev() {
            let k = d * steps + t;
            let (h_prev, c_prev) = if t == 0 {
                (h0, c0)
            } else {
                (
                    &part.pad.h[(k - 1) * n1..k * n1],
                    &part.pad.c[(k - 1) * n1..k * n1],
                )
            };
            add_into(&mut pdc, &into_pad_c[t * n1..(t + 1) * n1]);
            // The states left of the image get no input, so no bias either: no db.
            step_backward(
                (w, &mut *dw),
                (&mut x1, &mut dx1),
                &mut part.pad.act[k * 4 * n1..(k + 1) * 4 * n1],
                (&part.pad.tc[k * n1..(k + 1) * n1], c_prev, h_prev),
                (&mut pdh, &into_pad_h[t * n1..(t + 1) * n1]),
                &mut pdc,
                None,
                (hid, taps, 1, len),
                (g.image_end(t), len),
            );
        }
        add_into(&mut dh0[d * n1..(d + 1) * n1], &pdh);
        add_into(&mut dc0[d * n1..(d + 1) * n1], &pdc);
    }
    for b in [
        dyp, dyt, dyk, x, dx, dh, dc, h_init, c_init, x1, dx1, pdh, pdc, into_pad_h, into_pad_c,
    ] {
        give(b);
    }
    // dS: each step's gate gradients put back where the step read them (each position
    // is read by exactly one step, so this assigns every element). It is the input's
    // gradient when S was the input, the extra term's when one was added.
    let ds = match (p.conv, d_extra) {
        (None, _) => Some(&mut *d_input),
        (Some(_), de) => de,
    };
    if let Some(ds) = ds {
        from_steps(
            g,
            4 * hid,
            &part.main.act,
            |d, t| g.src_run(d, t),
            ds,
            |i, gi, d| i * s_img + (d * 4 * hid + gi) * plane,
            true,
        );
    }
    if p.conv.is_some() {
        pixels_to_planes_all(d_input, &dxp, cin, plane, true);
    }
    give(dxt);
    give(dxp);
    give(xt);
    part.recycle();
    Grads {
        dss,
        dh0,
        dc0,
        dw: dw_in,
        db: db_in,
    }
}

/// What `cell_backward` reads besides the step's saved values, and what it sums.
struct CellGrad<'a> {
    /// The gradient reaching h from the next step.
    dh: &'a [f32],
    /// The gradient reaching h from outside the recurrence (dY in step order), added to
    /// `dh` as it is read: a pass over `dh` saved.
    dy: &'a [f32],
    /// The gradient reaching c from the next step; on exit, the one reaching the
    /// previous c (columns `a..e` of each row).
    dc: &'a mut [f32],
    /// When the folded input conv's bias is trained: its 4h gradients, to which each
    /// gate row's sum over the columns is added (a pass over the gate gradients saved).
    db: Option<&'a mut [f32]>,
}

/// Backward of the gate math over columns `a..e` of each of the h rows (`cols` = (M,
/// a, e)), in place: `act` holds this step's activations [o; f; i; g] and becomes their
/// pre-activation gradients.
fn cell_backward(
    act: &mut [f32],
    tc: &[f32],
    c_prev: &[f32],
    mut gr: CellGrad,
    (m, a, e): (usize, usize, usize),
) {
    // As in `cell_forward`.
    #[allow(unused_mut)]
    let mut from = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::backend::simd::avx2_fma() {
        // SAFETY: the CPU has the features the gate8 path is compiled for.
        from = unsafe { gate8::cell_backward(act, tc, c_prev, &mut gr, (m, a, e)) };
    }
    let CellGrad { dh, dy, dc, mut db } = gr;
    let n = dc.len();
    let (o, rest) = act.split_at_mut(n);
    let (f, rest) = rest.split_at_mut(n);
    let (i, g) = rest.split_at_mut(n);
    for r in 0..n / m {
        let mut sums = [0f32; 4];
        for k in r * m + a + from..r * m + e {
            let (ov, fv, iv, gv, t) = (o[k], f[k], i[k], g[k], tc[k]);
            let dhv = dh[k] + dy[k];
            let dcv = dc[k] + dhv * ov * (1.0 - t * t);
            o[k] = dhv * t * ov * (1.0 - ov);
            f[k] = dcv * c_prev[k] * fv * (1.0 - fv);
            i[k] = dcv * gv * iv * (1.0 - iv);
            g[k] = dcv * iv * (1.0 - gv * gv);
            dc[k] = dcv * fv;
            for (acc, v) in sums.iter_mut().zip([o[k], f[k], i[k], g[k]]) {
                *acc += v;
            }
        }
        if let Some(db) = db.as_deref_mut() {
            let h = n / m;
            for (q, v) in sums.into_iter().enumerate() {
                db[q * h + r] += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector gate pass (`gate8`, the first 8 columns of each row) and the scalar
    /// loop (the 9th) give the same activations for the same pre-activations, and a NaN
    /// pre-activation gives a NaN h.
    #[test]
    fn gate_pass_forms_agree_and_keep_nan() {
        let (hid, m) = (5, 9);
        let n = hid * m;
        let mut gates: Vec<f32> = (0..4 * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0)
            .collect();
        let mut c_prev: Vec<f32> = (0..n)
            .map(|i| ((i * 53 % 61) as f32 - 30.0) / 7.0)
            .collect();
        // Column 8 of row r repeats column r % 8 of that row.
        let twin = |r: usize| r * m + r % 8;
        for r in 0..hid {
            for g in 0..4 {
                gates[g * n + r * m + 8] = gates[g * n + twin(r)];
            }
            c_prev[r * m + 8] = c_prev[twin(r)];
        }
        // Row 0's column 1 (not a twin) gets a NaN forget gate.
        gates[n + 1] = f32::NAN;
        let (mut c, mut tc, mut h) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        cell_forward(&mut gates, &c_prev, &mut c, &mut tc, &mut h, (m, 0, m));
        assert!(
            h[1].is_nan() && c[1].is_nan(),
            "a NaN gate was hidden: h {}",
            h[1]
        );
        for r in 0..hid {
            let (v, s) = (twin(r), r * m + 8);
            for (name, buf) in [("c", &c), ("tanh c", &tc), ("h", &h)] {
                assert!(
                    (buf[v] - buf[s]).abs() <= 1e-6,
                    "{name} row {r}: {} vs {}",
                    buf[v],
                    buf[s]
                );
            }
            for g in 0..4 {
                let (a, b) = (gates[g * n + v], gates[g * n + s]);
                assert!((a - b).abs() <= 1e-6, "gate {g} row {r}: {a} vs {b}");
            }
        }
    }

    /// The plane transposes against their definitions, for image counts and plane sizes
    /// with and without whole 8 x 8 blocks, at offsets that are not multiples of 8.
    #[test]
    fn plane_transposes_match_their_definitions() {
        for imgs in [1, 5, 8, 13, 16, 24] {
            for plane in [7, 30, 784] {
                let gap = plane + 3;
                let offs: Vec<usize> = (0..imgs).map(|i| 5 + (imgs - 1 - i) * gap).collect();
                let n = 5 + imgs * gap + 2;
                let src: Vec<f32> = (0..n).map(|k| (k as f32 * 0.37).sin()).collect();
                let mut px = vec![f32::NAN; plane * imgs];
                planes_to_pixels(&mut px, &src, &offs, plane);
                for p in 0..plane {
                    for i in 0..imgs {
                        assert_eq!(px[p * imgs + i], src[offs[i] + p], "{imgs} {plane} {p} {i}");
                    }
                }
                for assign in [true, false] {
                    let mut out = src.clone();
                    pixels_to_planes(&mut out, &px, &offs, plane, assign);
                    for (k, &v) in out.iter().enumerate() {
                        let hit = offs.iter().position(|&o| k >= o && k < o + plane);
                        let want = match hit {
                            None => src[k],
                            Some(_) if assign => src[k],
                            Some(_) => src[k] + src[k],
                        };
                        assert_eq!(v, want, "{imgs} {plane} {assign} {k}");
                    }
                }
            }
        }
    }

    #[test]
    fn split_covers_batch() {
        assert_eq!(split(16, 2), vec![(0, 8), (8, 8)]);
        assert_eq!(split(3, 8), vec![(0, 1), (1, 1), (2, 1)]);
        assert_eq!(split(1, 2), vec![(0, 1)]);
    }

    #[test]
    fn diag_maps_are_bijective_on_the_image() {
        let g = Geom {
            layout: Layout::Diag { shift: true },
            batch: 1,
            hidden: 1,
            height: 4,
            width: 5,
        };
        for d in 0..2 {
            let mut seen = vec![0; 20];
            for t in 0..g.steps() {
                let r = g.src_run(d, t);
                for s in r.lo..r.hi {
                    seen[r.at(s)] += 1;
                }
            }
            assert!(seen.iter().all(|&k| k == 1), "dir {d}: {seen:?}");
        }
    }
}
