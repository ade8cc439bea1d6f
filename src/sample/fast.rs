//! The cached ("fast") sampler: computes, for each new pixel, only what that pixel changes.
//!
//! The reference sampler runs the whole network once per sub-pixel. Here every node keeps
//! its output map as a cache, and at pixel `p = (r, c)` each node computes its output at
//! `p` only, in topological order, from its inputs' caches. This is exact because every op
//! is causal (docs/semantics.md): an op's output at `p` reads its inputs only at `p` and
//! at earlier positions in raster order, which are already final.
//!
//! What each op needs at `p`:
//! - masked `Conv`, `Head`, `SkipSum`, `Relu`, `Add`: the taps before the centre (earlier
//!   rows, and earlier columns of row r) and the centre itself; taps after the centre are
//!   masked out and never read.
//! - `RowLstm`: its input-to-state conv at `p` (row r, columns c-k/2..c), the state row
//!   above at columns c-1..c+1 (`h0`/`c0` for row 0) and the cell state above. All local.
//! - `DiagBiLstm`, left-to-right: in the skewed map the state at `(r, k = r + c)` reads
//!   column `k-1` at rows r-1 and r, i.e. positions `(r-1, c)` and `(r, c-1)`. At c = 0
//!   the left neighbour `(r, k = r-1)` lies in the left padding zone of the skewed map
//!   (`k < r`), where the input is zero: the states there depend only on `h0`, `c0` and
//!   the state-to-state weights, never on the image, so they are computed once per model
//!   (`Diag::edge_h`, `edge_c`), not per sample.
//! - `DiagBiLstm`, right-to-left: mirrored, its state at `(r, c)` reads `(r-1, c)` and
//!   `(r, c+1)`, i.e. the whole of row r. Its output is shifted down a row, so pixel
//!   `(r, c)` needs only row r-1 of it, which depends on rows <= r-1 of the input. So when
//!   row r starts, row r-1 is complete and its right-to-left states are computed once,
//!   right to left, for the whole row.
//!
//! With colour images the pixel is recomputed after each colour is drawn (G's logits read
//! the R just drawn). After the last draw only the input's cache at `p` is refreshed: no
//! other cached value at `p` depends on the last colour at `p` (mask A at the first
//! layer, mask B after it). That is checked per model from the masked centre taps
//! (`centre_dependence`), and a model where it fails (a leaky one) gets a recompute.
//!
//! Everything runs in plain f32 loops on weights copied to the CPU (with masks applied).
//! libtorch ops on tensors this small cost about 5 us each (tests/sample_bench.rs), and a
//! pixel of the MNIST Diagonal BiLSTM needs ~120 of them: libtorch would spend longer on
//! op overhead alone than these loops take in total.
//! Samples are independent, so the batch is split over threads. Caches are ring buffers
//! holding only the rows later nodes read (1 + the largest kernel half-height of their
//! users), so memory stays small even for wide models.

use super::{draw_scaled, per_sub_pixel};
use crate::backend::torch::{Step, TorchModel};
use crate::ir::{HeadKind, Op};
use anyhow::{bail, Result};

/// A weight matrix laid out `[in][out]`, for `y[out] += x[in] * w[in][out]`.
struct Mat {
    rows: usize,
    cols: usize,
    w: Vec<f32>,
}

impl Mat {
    fn is_zero(&self) -> bool {
        self.w.iter().all(|&v| v == 0.0)
    }
}

/// How one node is computed at a pixel, with its weights in CPU layout.
enum Kernel {
    Input,
    /// Masked conv (also the head): the taps that may be nonzero, `(dy, dx, [cin][out])`.
    Conv {
        taps: Vec<(isize, isize, Mat)>,
        bias: Vec<f32>,
    },
    Relu,
    Add,
    SkipSum {
        projs: Vec<(Mat, Vec<f32>)>,
    },
    RowLstm {
        h: usize,
        taps: Vec<(isize, Mat)>,
        bias: Vec<f32>,
        /// State-to-state taps for columns c-1, c, c+1: `[h][4h]` each.
        ss: Vec<Mat>,
        /// `h0`, `c0` transposed to `[W][h]`.
        h0: Vec<f32>,
        c0: Vec<f32>,
    },
    Diag(Box<Diag>),
}

struct Diag {
    h: usize,
    /// Input-to-state 1x1 conv `[cin][8h]`.
    is: Mat,
    bias: Vec<f32>,
    /// `ss[d][t]`: direction d (0 = left-to-right, 1 = right-to-left), tap t (0 = the row
    /// above, 1 = the same row), each `[h][4h]`.
    ss: [[Mat; 2]; 2],
    /// `edge_h[d][r]`, `edge_c[d][r]`: the state to the left of column 0 of row r in
    /// direction d's skewed map (`h0`/`c0` for row 0, the left padding zone otherwise);
    /// `[H][h]`, the same for every sample.
    edge_h: [Vec<f32>; 2],
    edge_c: [Vec<f32>; 2],
}

struct Node {
    kernel: Kernel,
    inputs: Vec<usize>,
    channels: usize,
    /// Rows of this node's output that its users read (ring buffer size).
    rows: usize,
}

/// A model prepared for cached sampling: weights on the CPU, masks applied, per-op plans.
pub struct CachedModel {
    nodes: Vec<Node>,
    output: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub levels: usize,
    pub head: HeadKind,
    /// Logits per sub-pixel: 1 (Bernoulli) or `levels` (softmax).
    per: usize,
    /// `stale[ch]`: some cached value at a pixel (other than the input itself) depends on
    /// colour `ch` of that same pixel, so drawing `ch` requires recomputing the pixel.
    /// False for the last colour in every causal model (mask A at the first layer).
    stale: Vec<bool>,
}

use crate::backend::torch::to_vec_f32 as to_vec;

fn masked(st: &Step, k: usize) -> (Vec<f32>, Vec<usize>) {
    let t = match &st.masks[k] {
        Some(m) => &st.params[k] * m,
        None => st.params[k].shallow_clone(),
    };
    let shape = t.size().iter().map(|&d| d as usize).collect();
    (to_vec(&t), shape)
}

fn param(st: &Step, k: usize) -> Vec<f32> {
    to_vec(&st.params[k])
}

/// The causal taps of a masked `[out, cin, kh, kw]` weight, as `(dy, dx, [cin][out])`;
/// taps after the centre (always masked) and all-zero taps are dropped.
fn conv_taps(w: &[f32], s: &[usize]) -> Vec<(isize, isize, Mat)> {
    let (out, cin, kh, kw) = (s[0], s[1], s[2], s[3]);
    let (ch, cw) = (kh / 2, kw / 2);
    let mut taps = Vec::new();
    for y in 0..kh {
        for x in 0..kw {
            if y > ch || (y == ch && x > cw) {
                continue;
            }
            let mut m = vec![0f32; cin * out];
            for o in 0..out {
                for i in 0..cin {
                    m[i * out + o] = w[((o * cin + i) * kh + y) * kw + x];
                }
            }
            let mat = Mat {
                rows: cin,
                cols: out,
                w: m,
            };
            if !mat.is_zero() {
                taps.push((y as isize - ch as isize, x as isize - cw as isize, mat));
            }
        }
    }
    taps
}

/// Tap `t` of a conv1d weight `[out, cin, k]` (rows `lo..lo+out` only) as `[cin][out]`.
fn conv1d_tap(
    w: &[f32],
    out_total: usize,
    cin: usize,
    k: usize,
    t: usize,
    lo: usize,
    out: usize,
) -> Mat {
    debug_assert!(lo + out <= out_total);
    let mut m = vec![0f32; cin * out];
    for o in 0..out {
        for i in 0..cin {
            m[i * out + o] = w[((lo + o) * cin + i) * k + t];
        }
    }
    Mat {
        rows: cin,
        cols: out,
        w: m,
    }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// LSTM update from gates `[o, f, i, g]` (h each): new (h, c).
#[inline]
fn lstm(g: &[f32], cp: &[f32], hn: &mut [f32], cn: &mut [f32], h: usize) {
    for j in 0..h {
        let o = sigmoid(g[j]);
        let f = sigmoid(g[h + j]);
        let i = sigmoid(g[2 * h + j]);
        let gg = g[3 * h + j].tanh();
        let c = f * cp[j] + i * gg;
        cn[j] = c;
        hn[j] = o * c.tanh();
    }
}

/// `y[lo..hi] += x · m[.., lo..hi]` for one sample (`y` has `hi - lo` entries).
#[inline]
fn matacc_one(y: &mut [f32], x: &[f32], m: &Mat, lo: usize, hi: usize) {
    for (i, &xv) in x.iter().enumerate().take(m.rows) {
        // Skipping exact zeros (ReLU outputs, binary pixels) does not change the sum.
        if xv == 0.0 {
            continue;
        }
        let row = &m.w[i * m.cols + lo..i * m.cols + hi];
        for (yo, &wo) in y.iter_mut().zip(row) {
            *yo += xv * wo;
        }
    }
}

/// Batched `matacc_one`: `x` is `[nb][m.rows]`, `y` is `[nb][hi - lo]`.
#[inline]
fn matacc(y: &mut [f32], x: &[f32], m: &Mat, lo: usize, hi: usize, nb: usize) {
    let ys = hi - lo;
    for b in 0..nb {
        matacc_one(
            &mut y[b * ys..(b + 1) * ys],
            &x[b * m.rows..(b + 1) * m.rows],
            m,
            lo,
            hi,
        );
    }
}

/// The state to the left of column 0 of every row, for one direction of a Diagonal
/// BiLSTM: the left padding zone of the skewed map (input zero), computed from `h0`, `c0`
/// and the state-to-state taps. Returns `([H][h], [H][h])`.
fn padding_edge(
    h: usize,
    height: usize,
    h0: &[f32],
    c0: &[f32],
    ss: &[Mat; 2],
) -> (Vec<f32>, Vec<f32>) {
    // ph[r][j] for j = k + 1 = 0..=r: the state at skewed column k = j - 1 (k = -1 is h0).
    let idx = |r: usize, j: usize| (r * height + j) * h;
    let mut ph = vec![0f32; height * height * h];
    let mut pc = vec![0f32; height * height * h];
    for r in 0..height {
        for q in 0..h {
            ph[idx(r, 0) + q] = h0[q * height + r];
            pc[idx(r, 0) + q] = c0[q * height + r];
        }
    }
    let mut gates = vec![0f32; 4 * h];
    let mut hn = vec![0f32; h];
    let mut cn = vec![0f32; h];
    for k in 0..height {
        for r in (k + 1)..height {
            gates.iter_mut().for_each(|g| *g = 0.0);
            // Row r-1 at column k-1 (j = k): still in the padding zone (or h0 when k = 0).
            matacc_one(
                &mut gates,
                &ph[idx(r - 1, k)..idx(r - 1, k) + h],
                &ss[0],
                0,
                4 * h,
            );
            matacc_one(&mut gates, &ph[idx(r, k)..idx(r, k) + h], &ss[1], 0, 4 * h);
            lstm(&gates, &pc[idx(r, k)..idx(r, k) + h], &mut hn, &mut cn, h);
            ph[idx(r, k + 1)..idx(r, k + 1) + h].copy_from_slice(&hn);
            pc[idx(r, k + 1)..idx(r, k + 1) + h].copy_from_slice(&cn);
        }
    }
    let mut eh = vec![0f32; height * h];
    let mut ec = vec![0f32; height * h];
    for r in 0..height {
        eh[r * h..(r + 1) * h].copy_from_slice(&ph[idx(r, r)..idx(r, r) + h]);
        ec[r * h..(r + 1) * h].copy_from_slice(&pc[idx(r, r)..idx(r, r) + h]);
    }
    (eh, ec)
}

impl CachedModel {
    /// Copies the model's weights (masked) to the CPU and plans every op.
    pub fn new(tm: &TorchModel) -> Result<CachedModel> {
        let (height, width) = (tm.height, tm.width);
        let steps = tm.steps();
        let mut nodes: Vec<Node> = Vec::with_capacity(steps.len());
        tch::no_grad(|| -> Result<()> {
            for (idx, st) in steps.iter().enumerate() {
                let in_ch = |k: usize| nodes[st.inputs[k]].channels;
                let (kernel, channels) = match &st.op {
                    Op::Input => (Kernel::Input, tm.channels),
                    Op::Conv { .. } | Op::Head { .. } => {
                        let (w, s) = masked(st, 0);
                        let out = s[0];
                        (
                            Kernel::Conv {
                                taps: conv_taps(&w, &s),
                                bias: param(st, 1),
                            },
                            out,
                        )
                    }
                    Op::Relu => (Kernel::Relu, in_ch(0)),
                    Op::Add => (Kernel::Add, in_ch(0)),
                    Op::SkipSum => {
                        let mut projs = Vec::new();
                        for k in 1..st.inputs.len() {
                            let p = 2 * (k - 1);
                            let (w, s) = masked(st, p);
                            let mut taps = conv_taps(&w, &s);
                            let mat = match taps.pop() {
                                Some((0, 0, m)) => m,
                                _ => Mat {
                                    rows: s[1],
                                    cols: s[0],
                                    w: vec![0.0; s[0] * s[1]],
                                },
                            };
                            projs.push((mat, param(st, p + 1)));
                        }
                        (Kernel::SkipSum { projs }, in_ch(0))
                    }
                    Op::RowLstm { hidden, .. } => {
                        let h = *hidden;
                        let (w, s) = masked(st, 0);
                        let taps = conv_taps(&w, &s)
                            .into_iter()
                            .map(|(_, dx, m)| (dx, m))
                            .collect();
                        let ssw = param(st, 2);
                        let ss = (0..3)
                            .map(|t| conv1d_tap(&ssw, 4 * h, h, 3, t, 0, 4 * h))
                            .collect();
                        let (h0p, c0p) = (param(st, 3), param(st, 4));
                        let mut h0 = vec![0f32; width * h];
                        let mut c0 = vec![0f32; width * h];
                        for c in 0..width {
                            for q in 0..h {
                                h0[c * h + q] = h0p[q * width + c];
                                c0[c * h + q] = c0p[q * width + c];
                            }
                        }
                        (
                            Kernel::RowLstm {
                                h,
                                taps,
                                bias: param(st, 1),
                                ss,
                                h0,
                                c0,
                            },
                            h,
                        )
                    }
                    Op::DiagBiLstm { hidden, shift } => {
                        if !shift {
                            bail!(
                                "node n{idx} is a Diagonal BiLSTM without the shift of its right-to-left output: it sees future pixels, so its samples are not a valid autoregressive draw"
                            );
                        }
                        let h = *hidden;
                        let (w, s) = masked(st, 0);
                        let mut taps = conv_taps(&w, &s);
                        let is = match taps.pop() {
                            Some((0, 0, m)) => m,
                            _ => Mat {
                                rows: s[1],
                                cols: s[0],
                                w: vec![0.0; s[0] * s[1]],
                            },
                        };
                        let ssw = param(st, 2);
                        let tap =
                            |d: usize, t: usize| conv1d_tap(&ssw, 8 * h, h, 2, t, d * 4 * h, 4 * h);
                        let ss = [[tap(0, 0), tap(0, 1)], [tap(1, 0), tap(1, 1)]];
                        let (h0, c0) = (param(st, 3), param(st, 4));
                        let dir = |d: usize| {
                            let lo = d * h * height;
                            let hi = (d + 1) * h * height;
                            padding_edge(h, height, &h0[lo..hi], &c0[lo..hi], &ss[d])
                        };
                        let (e0h, e0c) = dir(0);
                        let (e1h, e1c) = dir(1);
                        (
                            Kernel::Diag(Box::new(Diag {
                                h,
                                is,
                                bias: param(st, 1),
                                ss,
                                edge_h: [e0h, e1h],
                                edge_c: [e0c, e1c],
                            })),
                            h,
                        )
                    }
                };
                nodes.push(Node {
                    kernel,
                    inputs: st.inputs.clone(),
                    channels,
                    rows: 1,
                });
            }
            Ok(())
        })?;
        // Ring sizes: a conv of half-height kh/2 reads that many rows above.
        for st in steps {
            if let Op::Conv { kh, .. } = st.op {
                for &j in &st.inputs {
                    nodes[j].rows = nodes[j].rows.max(1 + kh / 2);
                }
            }
        }
        let per = per_sub_pixel(tm);
        let stale = centre_dependence(&nodes, tm.channels, tm.output_index());
        Ok(CachedModel {
            nodes,
            output: tm.output_index(),
            channels: tm.channels,
            height,
            width,
            levels: tm.levels,
            head: tm.head,
            per,
            stale,
        })
    }

    /// Samples `n` images. `u` holds one uniform per sub-pixel (N x C x H x W), `keep`
    /// fixes given sub-pixels (values and mask, N x C x H x W). Returns the images and,
    /// when `record`, the raw logits used for every drawn sub-pixel (laid out like the
    /// model's logits, N x C*L x H x W; NaN where nothing was drawn). Fails if `u` or
    /// `keep` do not hold `n` images.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_with(
        &self,
        n: usize,
        u: &[f32],
        temperature: f64,
        keep: Option<(&[u8], &[bool])>,
        record: bool,
        threads: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(Vec<u8>, Option<Vec<f32>>)> {
        let size = self.channels * self.height * self.width;
        let lsize = self.channels * self.per * self.height * self.width;
        if u.len() != n * size {
            bail!(
                "{} uniforms given for {n} images of {size} sub-pixels",
                u.len()
            );
        }
        if let Some((v, m)) = keep {
            if v.len() != n * size || m.len() != n * size {
                bail!("the given sub-pixels do not hold {n} images of {size} sub-pixels");
            }
        }
        if n == 0 {
            return Ok((Vec::new(), record.then(Vec::new)));
        }
        let threads = threads.clamp(1, n.max(1));
        let chunk = n.div_ceil(threads);
        let ranges: Vec<(usize, usize)> = (0..threads)
            .map(|t| (t * chunk, ((t + 1) * chunk).min(n)))
            .filter(|(a, b)| a < b)
            .collect();
        let run = |(a, b): (usize, usize), prog: &mut dyn FnMut(usize, usize)| {
            let nb = b - a;
            let k = keep.map(|(v, m)| (&v[a * size..b * size], &m[a * size..b * size]));
            let mut eng = Engine::new(self, nb, record);
            eng.run(&u[a * size..b * size], temperature, k, prog);
            (eng.img, eng.rec)
        };
        let mut parts: Vec<(Vec<u8>, Option<Vec<f32>>)> = Vec::with_capacity(ranges.len());
        std::thread::scope(|s| {
            let handles: Vec<_> = ranges[1..]
                .iter()
                .map(|&r| s.spawn(move || run(r, &mut |_, _| {})))
                .collect();
            parts.push(run(ranges[0], &mut progress));
            for h in handles {
                parts.push(h.join().expect("sampler thread panicked"));
            }
        });
        let mut img = Vec::with_capacity(n * size);
        let mut rec = if record {
            Some(Vec::with_capacity(n * lsize))
        } else {
            None
        };
        for (i, r) in parts {
            img.extend_from_slice(&i);
            if let (Some(all), Some(r)) = (rec.as_mut(), r) {
                all.extend_from_slice(&r);
            }
        }
        Ok((img, rec))
    }
}

/// Which colours of a pixel the cached values at that same pixel depend on, through the
/// centre taps: per node and channel a bit set of input colours. Returns, per colour,
/// whether any cached value (outputs and recurrent states, the input and the head
/// excepted) depends on it.
fn centre_dependence(nodes: &[Node], colours: usize, output: usize) -> Vec<bool> {
    // Bits of the input colours feeding each output channel of `m` at the centre.
    fn through(m: &Mat, dep_in: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; m.cols];
        for (i, &d) in dep_in.iter().enumerate().take(m.rows) {
            if d == 0 {
                continue;
            }
            for (o, dst) in out.iter_mut().enumerate() {
                if m.w[i * m.cols + o] != 0.0 {
                    *dst |= d;
                }
            }
        }
        out
    }
    fn gates_to_h(g: &[u8], h: usize) -> Vec<u8> {
        (0..h)
            .map(|j| g[j] | g[h + j] | g[2 * h + j] | g[3 * h + j])
            .collect()
    }
    let mut deps: Vec<Vec<u8>> = Vec::with_capacity(nodes.len());
    let mut any = 0u8;
    for (i, node) in nodes.iter().enumerate() {
        let input = |k: usize| &deps[node.inputs[k]];
        let (d, internal): (Vec<u8>, u8) = match &node.kernel {
            Kernel::Input => ((0..colours).map(|c| 1u8 << c).collect(), 0),
            Kernel::Conv { taps, .. } => {
                let mut d = vec![0u8; node.channels];
                for (dy, dx, m) in taps {
                    if (*dy, *dx) == (0, 0) {
                        d = through(m, input(0));
                    }
                }
                (d, 0)
            }
            Kernel::Relu => (input(0).clone(), 0),
            Kernel::Add => {
                let mut d = input(0).clone();
                for k in 1..node.inputs.len() {
                    d.iter_mut().zip(input(k)).for_each(|(a, b)| *a |= b);
                }
                (d, 0)
            }
            Kernel::SkipSum { projs } => {
                let mut d = input(0).clone();
                for (k, (m, _)) in projs.iter().enumerate() {
                    d.iter_mut()
                        .zip(through(m, input(k + 1)))
                        .for_each(|(a, b)| *a |= b);
                }
                (d, 0)
            }
            Kernel::RowLstm { h, taps, .. } => {
                let mut g = vec![0u8; 4 * h];
                for (dx, m) in taps {
                    if *dx == 0 {
                        g = through(m, input(0));
                    }
                }
                (gates_to_h(&g, *h), 0)
            }
            Kernel::Diag(dg) => {
                let g = through(&dg.is, input(0));
                let h = dg.h;
                // The right-to-left half of `is` is cached for the next row.
                let internal = g[4 * h..].iter().fold(0, |a, b| a | b);
                (gates_to_h(&g[..4 * h], h), internal)
            }
        };
        if i != output && !matches!(node.kernel, Kernel::Input) {
            any |= d.iter().fold(internal, |a, b| a | b);
        }
        deps.push(d);
    }
    (0..colours).map(|c| any & (1 << c) != 0).collect()
}

/// A ring buffer of `rows` rows of a feature map: per position `[nb][channels]`.
struct Ring {
    rows: usize,
    width: usize,
    stride: usize,
    data: Vec<f32>,
}

impl Ring {
    fn new(rows: usize, width: usize, stride: usize) -> Ring {
        Ring {
            rows,
            width,
            stride,
            data: vec![0.0; rows * width * stride],
        }
    }
    #[inline]
    fn off(&self, r: usize, c: usize) -> usize {
        ((r % self.rows) * self.width + c) * self.stride
    }
    #[inline]
    fn at(&self, r: usize, c: usize) -> &[f32] {
        let o = self.off(r, c);
        &self.data[o..o + self.stride]
    }
    #[inline]
    fn at_mut(&mut self, r: usize, c: usize) -> &mut [f32] {
        let o = self.off(r, c);
        &mut self.data[o..o + self.stride]
    }
}

/// Recurrent state of one node.
enum State {
    None,
    Row {
        h: Ring,
        c: Ring,
    },
    Diag {
        hl: Ring,
        cl: Ring,
        hr: Ring,
        cr: Ring,
        /// The right-to-left half of the input-to-state map, rows r-1 and r.
        isr: Ring,
        /// Rows whose right-to-left states are computed.
        r2l_rows: usize,
    },
}

/// The caches of one batch of samples.
struct Engine<'a> {
    m: &'a CachedModel,
    nb: usize,
    outs: Vec<Ring>,
    states: Vec<State>,
    /// Scratch buffers: gates / is (nb x 8h), h and c (nb x h), a projection (nb x C).
    s_gates: Vec<f32>,
    s_is: Vec<f32>,
    s_h: Vec<f32>,
    s_c: Vec<f32>,
    s_proj: Vec<f32>,
    /// Logits of the sub-pixel being drawn: nb x per.
    logits: Vec<f32>,
    img: Vec<u8>,
    rec: Option<Vec<f32>>,
}

impl<'a> Engine<'a> {
    fn new(m: &'a CachedModel, nb: usize, record: bool) -> Engine<'a> {
        let w = m.width;
        let mut outs = Vec::with_capacity(m.nodes.len());
        let mut states = Vec::with_capacity(m.nodes.len());
        let mut max_ch = 1;
        let mut max_h = 1;
        for (i, node) in m.nodes.iter().enumerate() {
            max_ch = max_ch.max(node.channels);
            let stride = if i == m.output { 0 } else { nb * node.channels };
            outs.push(Ring::new(node.rows, w, stride));
            states.push(match &node.kernel {
                Kernel::RowLstm { h, .. } => {
                    max_h = max_h.max(*h);
                    State::Row {
                        h: Ring::new(2, w, nb * h),
                        c: Ring::new(2, w, nb * h),
                    }
                }
                Kernel::Diag(d) => {
                    max_h = max_h.max(d.h);
                    let s = nb * d.h;
                    State::Diag {
                        hl: Ring::new(2, w, s),
                        cl: Ring::new(2, w, s),
                        hr: Ring::new(2, w, s),
                        cr: Ring::new(2, w, s),
                        isr: Ring::new(2, w, 4 * s),
                        r2l_rows: 0,
                    }
                }
                _ => State::None,
            });
        }
        let size = m.channels * m.height * m.width;
        Engine {
            m,
            nb,
            outs,
            states,
            s_gates: vec![0.0; nb * 8 * max_h],
            s_is: vec![0.0; nb * 8 * max_h],
            s_h: vec![0.0; nb * max_h],
            s_c: vec![0.0; nb * max_h],
            s_proj: vec![0.0; nb * max_ch],
            logits: vec![0.0; nb * m.per],
            img: vec![0; nb * size],
            rec: if record {
                Some(vec![f32::NAN; nb * m.channels * m.per * m.height * m.width])
            } else {
                None
            },
        }
    }

    fn run(
        &mut self,
        u: &[f32],
        temperature: f64,
        keep: Option<(&[u8], &[bool])>,
        progress: &mut dyn FnMut(usize, usize),
    ) {
        let m = self.m;
        let (c_n, h_n, w_n) = (m.channels, m.height, m.width);
        if let Some((vals, _)) = keep {
            self.img.copy_from_slice(vals);
        }
        let total = h_n * w_n * c_n;
        let idx = |b: usize, ch: usize, r: usize, c: usize| ((b * c_n + ch) * h_n + r) * w_n + c;
        for r in 0..h_n {
            for c in 0..w_n {
                let mut last = None;
                for ch in 0..c_n {
                    progress((r * w_n + c) * c_n + ch, total);
                    if let Some((_, mask)) = keep {
                        if (0..self.nb).all(|b| mask[idx(b, ch, r, c)]) {
                            continue;
                        }
                    }
                    self.pixel(r, c, Some(ch));
                    last = Some(ch);
                    let per = m.per;
                    for b in 0..self.nb {
                        let i = idx(b, ch, r, c);
                        let lg = &self.logits[b * per..(b + 1) * per];
                        if let Some(rec) = self.rec.as_mut() {
                            for (l, &v) in lg.iter().enumerate() {
                                rec[((b * c_n * per + ch * per + l) * h_n + r) * w_n + c] = v;
                            }
                        }
                        if let Some((_, mask)) = keep {
                            if mask[i] {
                                continue;
                            }
                        }
                        self.img[i] = draw_scaled(lg, m.head, temperature, u[i]);
                    }
                }
                // Cached values at p must see every colour they depend on: recompute if the
                // colour drawn last feeds any (never in a model with mask A first), then
                // store the finished pixel in the input's cache.
                match last {
                    Some(ch) if !m.stale[ch] => self.input_at(r, c),
                    _ => self.pixel(r, c, None),
                }
            }
        }
    }

    /// Refreshes the input's cache at (r, c) from the image.
    fn input_at(&mut self, r: usize, c: usize) {
        for (i, node) in self.m.nodes.iter().enumerate() {
            if matches!(node.kernel, Kernel::Input) {
                write_input(self.m, self.nb, &self.img, &mut self.outs[i], r, c);
            }
        }
    }

    /// Computes every node's output at (r, c); the head only when `head_ch` is given
    /// (its logits for that colour go to `self.logits`).
    fn pixel(&mut self, r: usize, c: usize, head_ch: Option<usize>) {
        let m = self.m;
        let nb = self.nb;
        let w_n = m.width;
        for (i, node) in m.nodes.iter().enumerate() {
            let (before, after) = self.outs.split_at_mut(i);
            let out = &mut after[0];
            match &node.kernel {
                Kernel::Input => write_input(m, nb, &self.img, out, r, c),
                Kernel::Conv { taps, bias } => {
                    let (lo, hi, y): (usize, usize, &mut [f32]) = if i == m.output {
                        match head_ch {
                            Some(ch) => (ch * m.per, (ch + 1) * m.per, &mut self.logits[..]),
                            None => continue,
                        }
                    } else {
                        (0, node.channels, out.at_mut(r, c))
                    };
                    let ys = hi - lo;
                    for b in 0..nb {
                        y[b * ys..(b + 1) * ys].copy_from_slice(&bias[lo..hi]);
                    }
                    let x = &before[node.inputs[0]];
                    for (dy, dx, mat) in taps {
                        let rr = r as isize + dy;
                        let cc = c as isize + dx;
                        if rr < 0 || cc < 0 || cc >= w_n as isize {
                            continue;
                        }
                        matacc(y, x.at(rr as usize, cc as usize), mat, lo, hi, nb);
                    }
                }
                Kernel::Relu => {
                    let x = before[node.inputs[0]].at(r, c);
                    for (yo, &xv) in out.at_mut(r, c).iter_mut().zip(x) {
                        *yo = xv.max(0.0);
                    }
                }
                Kernel::Add => {
                    let y = out.at_mut(r, c);
                    y.copy_from_slice(before[node.inputs[0]].at(r, c));
                    for &j in &node.inputs[1..] {
                        for (yo, &xv) in y.iter_mut().zip(before[j].at(r, c)) {
                            *yo += xv;
                        }
                    }
                }
                Kernel::SkipSum { projs } => {
                    let co = node.channels;
                    let y = out.at_mut(r, c);
                    y.copy_from_slice(before[node.inputs[0]].at(r, c));
                    for (k, (mat, bias)) in projs.iter().enumerate() {
                        let p = &mut self.s_proj[..nb * co];
                        for b in 0..nb {
                            p[b * co..(b + 1) * co].copy_from_slice(bias);
                        }
                        matacc(p, before[node.inputs[k + 1]].at(r, c), mat, 0, co, nb);
                        for (yo, &pv) in y.iter_mut().zip(p.iter()) {
                            *yo += pv;
                        }
                    }
                }
                Kernel::RowLstm {
                    h,
                    taps,
                    bias,
                    ss,
                    h0,
                    c0,
                } => {
                    let h = *h;
                    let State::Row { h: hs, c: cs } = &mut self.states[i] else {
                        unreachable!("row lstm state")
                    };
                    let g = &mut self.s_gates[..nb * 4 * h];
                    for b in 0..nb {
                        g[b * 4 * h..(b + 1) * 4 * h].copy_from_slice(bias);
                    }
                    let x = &before[node.inputs[0]];
                    for (dx, mat) in taps {
                        let cc = c as isize + dx;
                        if cc < 0 || cc >= w_n as isize {
                            continue;
                        }
                        matacc(g, x.at(r, cc as usize), mat, 0, 4 * h, nb);
                    }
                    for (t, mat) in ss.iter().enumerate() {
                        let cc = c as isize + t as isize - 1;
                        if cc < 0 || cc >= w_n as isize {
                            continue;
                        }
                        let cc = cc as usize;
                        if r == 0 {
                            for b in 0..nb {
                                matacc_one(
                                    &mut g[b * 4 * h..(b + 1) * 4 * h],
                                    &h0[cc * h..(cc + 1) * h],
                                    mat,
                                    0,
                                    4 * h,
                                );
                            }
                        } else {
                            matacc(g, hs.at(r - 1, cc), mat, 0, 4 * h, nb);
                        }
                    }
                    let (hn, cn) = (&mut self.s_h[..nb * h], &mut self.s_c[..nb * h]);
                    for b in 0..nb {
                        let cp = if r == 0 {
                            &c0[c * h..(c + 1) * h]
                        } else {
                            &cs.at(r - 1, c)[b * h..(b + 1) * h]
                        };
                        lstm(
                            &g[b * 4 * h..(b + 1) * 4 * h],
                            cp,
                            &mut hn[b * h..(b + 1) * h],
                            &mut cn[b * h..(b + 1) * h],
                            h,
                        );
                    }
                    hs.at_mut(r, c).copy_from_slice(hn);
                    cs.at_mut(r, c).copy_from_slice(cn);
                    out.at_mut(r, c).copy_from_slice(hn);
                }
                Kernel::Diag(d) => {
                    let h = d.h;
                    let State::Diag {
                        hl,
                        cl,
                        hr,
                        cr,
                        isr,
                        r2l_rows,
                    } = &mut self.states[i]
                    else {
                        unreachable!("diag state")
                    };
                    if r >= 1 && *r2l_rows < r {
                        right_to_left_row(
                            d,
                            r - 1,
                            nb,
                            w_n,
                            hr,
                            cr,
                            isr,
                            &mut self.s_gates,
                            &mut self.s_h,
                            &mut self.s_c,
                        );
                        *r2l_rows = r;
                    }
                    // Input-to-state at p, both directions.
                    let is = &mut self.s_is[..nb * 8 * h];
                    for b in 0..nb {
                        is[b * 8 * h..(b + 1) * 8 * h].copy_from_slice(&d.bias);
                    }
                    matacc(is, before[node.inputs[0]].at(r, c), &d.is, 0, 8 * h, nb);
                    {
                        let dst = isr.at_mut(r, c);
                        for b in 0..nb {
                            dst[b * 4 * h..(b + 1) * 4 * h]
                                .copy_from_slice(&is[b * 8 * h + 4 * h..(b + 1) * 8 * h]);
                        }
                    }
                    // Left-to-right: reads (r-1, c) and (r, c-1).
                    let g = &mut self.s_gates[..nb * 4 * h];
                    for b in 0..nb {
                        g[b * 4 * h..(b + 1) * 4 * h]
                            .copy_from_slice(&is[b * 8 * h..b * 8 * h + 4 * h]);
                    }
                    if r >= 1 {
                        matacc(g, hl.at(r - 1, c), &d.ss[0][0], 0, 4 * h, nb);
                    }
                    if c == 0 {
                        let e = &d.edge_h[0][r * h..(r + 1) * h];
                        for b in 0..nb {
                            matacc_one(
                                &mut g[b * 4 * h..(b + 1) * 4 * h],
                                e,
                                &d.ss[0][1],
                                0,
                                4 * h,
                            );
                        }
                    } else {
                        matacc(g, hl.at(r, c - 1), &d.ss[0][1], 0, 4 * h, nb);
                    }
                    let (hn, cn) = (&mut self.s_h[..nb * h], &mut self.s_c[..nb * h]);
                    for b in 0..nb {
                        let cp = if c == 0 {
                            &d.edge_c[0][r * h..(r + 1) * h]
                        } else {
                            &cl.at(r, c - 1)[b * h..(b + 1) * h]
                        };
                        lstm(
                            &g[b * 4 * h..(b + 1) * 4 * h],
                            cp,
                            &mut hn[b * h..(b + 1) * h],
                            &mut cn[b * h..(b + 1) * h],
                            h,
                        );
                    }
                    hl.at_mut(r, c).copy_from_slice(hn);
                    cl.at_mut(r, c).copy_from_slice(cn);
                    let y = out.at_mut(r, c);
                    y.copy_from_slice(hn);
                    // The right-to-left output, shifted down one row.
                    if r >= 1 {
                        for (yo, &v) in y.iter_mut().zip(hr.at(r - 1, c)) {
                            *yo += v;
                        }
                    }
                }
            }
        }
    }
}

/// The model input at (r, c): raw values / (levels - 1).
fn write_input(m: &CachedModel, nb: usize, img: &[u8], out: &mut Ring, r: usize, c: usize) {
    let scale = (m.levels as f32 - 1.0).max(1.0);
    let (ch_n, h_n, w_n) = (m.channels, m.height, m.width);
    let y = out.at_mut(r, c);
    for b in 0..nb {
        for ch in 0..ch_n {
            y[b * ch_n + ch] = img[((b * ch_n + ch) * h_n + r) * w_n + c] as f32 / scale;
        }
    }
}

/// The right-to-left states of row `q` (complete in the input), right to left: the state
/// at (q, c) reads (q-1, c) and (q, c+1); left of the mirrored column 0 is the padding edge.
#[allow(clippy::too_many_arguments)]
fn right_to_left_row(
    d: &Diag,
    q: usize,
    nb: usize,
    w_n: usize,
    hr: &mut Ring,
    cr: &mut Ring,
    isr: &Ring,
    s_gates: &mut [f32],
    s_h: &mut [f32],
    s_c: &mut [f32],
) {
    let h = d.h;
    for c in (0..w_n).rev() {
        let g = &mut s_gates[..nb * 4 * h];
        g.copy_from_slice(isr.at(q, c));
        if q >= 1 {
            matacc(g, hr.at(q - 1, c), &d.ss[1][0], 0, 4 * h, nb);
        }
        let edge = c == w_n - 1;
        if edge {
            let e = &d.edge_h[1][q * h..(q + 1) * h];
            for b in 0..nb {
                matacc_one(&mut g[b * 4 * h..(b + 1) * 4 * h], e, &d.ss[1][1], 0, 4 * h);
            }
        } else {
            matacc(g, hr.at(q, c + 1), &d.ss[1][1], 0, 4 * h, nb);
        }
        let (hn, cn) = (&mut s_h[..nb * h], &mut s_c[..nb * h]);
        for b in 0..nb {
            let cp = if edge {
                &d.edge_c[1][q * h..(q + 1) * h]
            } else {
                &cr.at(q, c + 1)[b * h..(b + 1) * h]
            };
            lstm(
                &g[b * 4 * h..(b + 1) * 4 * h],
                cp,
                &mut hn[b * h..(b + 1) * h],
                &mut cn[b * h..(b + 1) * h],
                h,
            );
        }
        hr.at_mut(q, c).copy_from_slice(hn);
        cr.at_mut(q, c).copy_from_slice(cn);
    }
}
