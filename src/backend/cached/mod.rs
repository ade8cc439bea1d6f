//! The cached-sampler back end: draws images computing, for each new pixel, only what that
//! pixel changes.
//!
//! Like `torch` and `onnx`, it is built from a validated `Model` and its `Weights`, and
//! reads every parameter fact (names, masks) from the IR's descriptors. `plan` decides,
//! per node, what to compute and cache (weights in CPU layout, taps, ring sizes);
//! `engine` runs the per-pixel loops.
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
//! - `GatedConv`, horizontal stack: a masked conv like `Conv`, plus the vertical stack at
//!   `p` through the link. Vertical stack: its taps reach right of `p` (the rows above,
//!   and with `AboveRow` its input's own row), but its output at row r depends only on
//!   rows < r, so when row r starts its whole row r is computed at once (a chain of
//!   vertical stacks in topological order, each reading the row just computed).
//! - `DiagBiLstm`, right-to-left: mirrored, its state at `(r, c)` reads `(r-1, c)` and
//!   `(r, c+1)`, i.e. the whole of row r. Its output is shifted down a row, so pixel
//!   `(r, c)` needs only row r-1 of it, which depends on rows <= r-1 of the input. So when
//!   row r starts, row r-1 is complete and its right-to-left states are computed once,
//!   right to left, for the whole row. The full-context variant's right-to-left gates
//!   also read the image at row r-1, all of which is drawn by then.
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

mod engine;
mod plan;

pub(crate) use plan::diag_edges;

use crate::ir::HeadKind;

/// A weight matrix laid out `[in][out]`, for `y[out] += x[in] * w[in][out]`.
pub(crate) struct Mat {
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
pub(crate) enum Kernel {
    Input,
    /// A low-res model's upsampled low-res map: computed for the whole image when a draw
    /// starts (the low-res pixels are given), never per pixel.
    LowRes(Box<LowResMap>),
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
        /// A conditional model's class vectors, `[classes][4h]`, added to `bias` per sample.
        class: Option<Vec<f32>>,
        /// A low-res model's 1x1 conv of the low-res map (the last input), `[maps][4h]`.
        low_res: Option<Mat>,
        /// State-to-state taps for columns c-1, c, c+1: `[h][4h]` each.
        ss: Vec<Mat>,
        /// `h0`, `c0` transposed to `[W][h]`.
        h0: Vec<f32>,
        c0: Vec<f32>,
    },
    Diag(Box<Diag>),
    Gate(Box<Gate>),
}

/// A gated conv: `tanh(a) * sigmoid(b)` of its masked conv, link and class vector.
pub(crate) struct Gate {
    h: usize,
    /// The masked conv's nonzero taps over slot 0, `(dy, dx, [cin][2h])`; a vertical
    /// stack's reach right of the centre too.
    taps: Vec<(isize, isize, Mat)>,
    bias: Vec<f32>,
    /// The 1x1 link from the vertical stack (slot 1), `[cv][2h]`.
    link: Option<Mat>,
    /// A conditional model's class vectors, `[classes][2h]`, added to `bias` per sample.
    class: Option<Vec<f32>>,
    /// A low-res model's 1x1 conv of the low-res map (the last input), `[maps][2h]`.
    low_res: Option<Mat>,
    /// A vertical stack (it sees only rows above): computed for a whole row when the row
    /// starts, since its taps reach right of the pixel.
    rowwise: bool,
}

/// `Op::LowRes`: the transposed conv of the image's strided subsample.
pub(crate) struct LowResMap {
    factor: usize,
    maps: usize,
    /// The image's channels.
    cin: usize,
    /// `[cin][maps][3f][3f]`, as stored.
    w: Vec<f32>,
    bias: Vec<f32>,
}

pub(crate) struct Diag {
    h: usize,
    /// Input-to-state 1x1 conv `[cin][8h]`.
    is: Mat,
    bias: Vec<f32>,
    /// A conditional model's class vectors, `[classes][8h]`, added to `bias` per sample.
    class: Option<Vec<f32>>,
    /// A low-res model's 1x1 conv of the low-res map (the last input), `[maps][8h]`; the
    /// right-to-left half reaches those states through `isr`, like the rest of `is`.
    low_res: Option<Mat>,
    /// Full context: the image's 1x1 conv into the right-to-left gates, `[C][4h]`; the
    /// node's slot 1 is the image. Read when a row's right-to-left states are computed,
    /// from the image row just completed (never cached per pixel, so no colour drawn at a
    /// pixel makes a cached value there stale).
    ix: Option<Mat>,
    /// `ss[d][t]`: direction d (0 = left-to-right, 1 = right-to-left), tap t (0 = the row
    /// above, 1 = the same row), each `[h][4h]`.
    ss: [[Mat; 2]; 2],
    /// `edge_h[d][r]`, `edge_c[d][r]`: the state to the left of column 0 of row r in
    /// direction d's skewed map (`h0`/`c0` for row 0, the left padding zone otherwise);
    /// `[H][h]`, the same for every sample.
    edge_h: [Vec<f32>; 2],
    edge_c: [Vec<f32>; 2],
}

pub(crate) struct Node {
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
