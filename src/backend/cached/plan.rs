//! The cached sampler's plan: per node, the weights in CPU layout (masks applied, from the
//! IR's parameter descriptors), the taps that can be nonzero, the rows to cache, and which
//! colours a pixel's cached values depend on.

use super::engine::matacc_one;
use super::{CachedModel, Diag, Gate, Kernel, LowResMap, Mat, Node};
use crate::backend::simd::lstm;
use crate::ir::validate::Model;
use crate::ir::{param_named, Mask, NodeId, Op};
use crate::weights::Weights;
use anyhow::{bail, Result};

/// The taps of a masked `[out, cin, kh, kw]` weight that can be nonzero, as
/// `(dy, dx, [cin][out])`: rows below the centre (zero under every mask) and all-zero taps
/// are dropped. Under masks A and B that leaves the taps up to the centre in raster order;
/// the vertical-stack masks keep taps right of the centre in the rows they read.
fn conv_taps(w: &[f32], s: &[usize]) -> Vec<(isize, isize, Mat)> {
    let (out, cin, kh, kw) = (s[0], s[1], s[2], s[3]);
    let (ch, cw) = (kh / 2, kw / 2);
    let mut taps = Vec::new();
    for y in 0..kh {
        for x in 0..kw {
            if y > ch {
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
            lstm(&gates, &pc[idx(r, k)..idx(r, k) + h], &mut hn, &mut cn);
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

/// The padding-edge states of Diagonal BiLSTM node `id`, per direction (0 = left to
/// right, 1 = right to left): `(h, c)` to the left of column 0 of every row, each `[H][h]`,
/// from `h0`, `c0` and the state-to-state weights alone (the padding zone's input is
/// zero). The cached sampler starts each row from them; the ONNX export bakes them in, so
/// its recurrence runs over the image's states only.
pub(crate) fn diag_edges(
    model: &Model,
    weights: &Weights,
    id: NodeId,
) -> [(Vec<f32>, Vec<f32>); 2] {
    let prm = NodeParams { model, weights, id };
    let Op::DiagBiLstm { hidden: h, .. } = model.graph().node(id).op else {
        panic!("node {id} is not a Diagonal BiLSTM");
    };
    edges_from(&prm, h, model.graph().image.height, &prm.diag_ss(h))
}

/// `diag_edges` from the node's state-to-state taps (`NodeParams::diag_ss`).
fn edges_from(
    prm: &NodeParams<'_>,
    h: usize,
    height: usize,
    ss: &[[Mat; 2]; 2],
) -> [(Vec<f32>, Vec<f32>); 2] {
    let (h0, c0) = (prm.data("h0"), prm.data("c0"));
    let dir = |d: usize| {
        let (lo, hi) = (d * h * height, (d + 1) * h * height);
        padding_edge(h, height, &h0[lo..hi], &c0[lo..hi], &ss[d])
    };
    [dir(0), dir(1)]
}

/// One node's parameters as the sampler reads them: by name, masked where the
/// descriptor says so, with their shapes.
struct NodeParams<'a> {
    model: &'a Model,
    weights: &'a Weights,
    id: NodeId,
}

impl NodeParams<'_> {
    /// Parameter `name` (masked if it is a masked weight) and its shape.
    fn get(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let p = param_named(self.model.shapes().params(self.id), name)
            .unwrap_or_else(|| panic!("params_of gives no `{name}` for node {}", self.id));
        (
            self.weights.effective(self.model, self.id, p),
            p.shape.clone(),
        )
    }

    fn data(&self, name: &str) -> Vec<f32> {
        self.get(name).0
    }

    /// A conditional model's `class_weight` (`[gates][classes]`) as one row of gates per
    /// class, `[classes][gates]`; `None` for an unconditional model.
    fn class_rows(&self) -> Option<Vec<f32>> {
        param_named(self.model.shapes().params(self.id), "class_weight")?;
        let (w, s) = self.get("class_weight");
        let (gates, classes) = (s[0], s[1]);
        Some(
            (0..classes)
                .flat_map(|y| (0..gates).map(move |g| (g, y)))
                .map(|(g, y)| w[g * classes + y])
                .collect(),
        )
    }

    /// A low-res model's `low_res_weight` as `[maps][gates]`; `None` without one.
    fn low_res(&self) -> Option<Mat> {
        param_named(self.model.shapes().params(self.id), "low_res_weight")?;
        Some(self.one_by_one("low_res_weight"))
    }

    /// A Diagonal BiLSTM's state-to-state taps: `[d][t]` for direction d (0 = left to
    /// right), tap t (0 = the row above, 1 = the same row), each `[h][4h]`.
    fn diag_ss(&self, h: usize) -> [[Mat; 2]; 2] {
        let ssw = self.data("ss_weight");
        let tap = |d: usize, t: usize| conv1d_tap(&ssw, 8 * h, h, 2, t, d * 4 * h, 4 * h);
        [[tap(0, 0), tap(0, 1)], [tap(1, 0), tap(1, 1)]]
    }

    /// The single tap of a masked 1x1 weight as `[cin][out]` (all zero if masked out).
    fn one_by_one(&self, name: &str) -> Mat {
        let (w, s) = self.get(name);
        match conv_taps(&w, &s).pop() {
            Some((0, 0, m)) => m,
            _ => Mat {
                rows: s[1],
                cols: s[0],
                w: vec![0.0; s[0] * s[1]],
            },
        }
    }
}

impl CachedModel {
    /// Plans every op of a validated model: weights to the CPU layout the engine reads,
    /// masks applied, rows to cache. Fails for a model whose samples would not be a valid
    /// autoregressive draw (a leak let through for a demonstration).
    pub fn new(model: &Model, weights: &Weights) -> Result<CachedModel> {
        weights
            .check_against(model)
            .map_err(|e| anyhow::anyhow!("weights do not fit the model: {e}"))?;
        let g = model.graph();
        let image = g.image;
        let (height, width) = (image.height, image.width);
        let mut nodes: Vec<Node> = Vec::with_capacity(g.len());
        for id in g.nodes() {
            let inputs: Vec<usize> = g.inputs(id).iter().map(|i| i.index()).collect();
            let prm = NodeParams { model, weights, id };
            let kernel = match g.node(id).op {
                Op::Input => Kernel::Input,
                Op::LowRes { factor, maps } => Kernel::LowRes(Box::new(LowResMap {
                    factor,
                    maps,
                    cin: image.channels,
                    w: prm.data("weight"),
                    bias: prm.data("bias"),
                })),
                Op::Conv { .. } | Op::Head { .. } => {
                    let (w, s) = prm.get("weight");
                    Kernel::Conv {
                        taps: conv_taps(&w, &s),
                        bias: prm.data("bias"),
                    }
                }
                Op::GatedConv {
                    hidden: h, mask, ..
                } => {
                    let (w, s) = prm.get("weight");
                    Kernel::Gate(Box::new(Gate {
                        h,
                        taps: conv_taps(&w, &s),
                        bias: prm.data("bias"),
                        link: param_named(model.shapes().params(id), "link_weight")
                            .map(|_| prm.one_by_one("link_weight")),
                        class: prm.class_rows(),
                        low_res: prm.low_res(),
                        rowwise: matches!(mask, Mask::Above | Mask::AboveRow),
                    }))
                }
                Op::Relu => Kernel::Relu,
                Op::Add => Kernel::Add,
                Op::SkipSum => Kernel::SkipSum {
                    projs: (1..inputs.len())
                        .map(|i| {
                            (
                                prm.one_by_one(&format!("proj{i}_weight")),
                                prm.data(&format!("proj{i}_bias")),
                            )
                        })
                        .collect(),
                },
                Op::RowLstm { hidden: h, .. } => {
                    let (w, s) = prm.get("is_weight");
                    let taps = conv_taps(&w, &s)
                        .into_iter()
                        .map(|(_, dx, m)| (dx, m))
                        .collect();
                    let ssw = prm.data("ss_weight");
                    let ss = (0..3)
                        .map(|t| conv1d_tap(&ssw, 4 * h, h, 3, t, 0, 4 * h))
                        .collect();
                    let (h0p, c0p) = (prm.data("h0"), prm.data("c0"));
                    let mut h0 = vec![0f32; width * h];
                    let mut c0 = vec![0f32; width * h];
                    for c in 0..width {
                        for q in 0..h {
                            h0[c * h + q] = h0p[q * width + c];
                            c0[c * h + q] = c0p[q * width + c];
                        }
                    }
                    Kernel::RowLstm {
                        h,
                        taps,
                        bias: prm.data("is_bias"),
                        class: prm.class_rows(),
                        low_res: prm.low_res(),
                        ss,
                        h0,
                        c0,
                    }
                }
                Op::DiagBiLstm {
                    hidden: h,
                    shift,
                    full_context,
                } => {
                    if !shift {
                        bail!(
                            "node {id} is a Diagonal BiLSTM without the shift of its right-to-left output: it sees future pixels, so its samples are not a valid autoregressive draw"
                        );
                    }
                    let ss = prm.diag_ss(h);
                    let [(e0h, e0c), (e1h, e1c)] = edges_from(&prm, h, height, &ss);
                    Kernel::Diag(Box::new(Diag {
                        h,
                        is: prm.one_by_one("is_weight"),
                        bias: prm.data("is_bias"),
                        class: prm.class_rows(),
                        low_res: prm.low_res(),
                        ix: full_context.then(|| prm.one_by_one("ix_weight")),
                        ss,
                        edge_h: [e0h, e1h],
                        edge_c: [e0c, e1c],
                    }))
                }
            };
            nodes.push(Node {
                kernel,
                inputs,
                channels: model.shapes().channels(id),
                rows: 1,
            });
        }
        // Ring sizes: a conv of half-height kh/2 reads that many rows above.
        for id in g.nodes() {
            // The low-res map is computed whole when a draw starts.
            if let Op::LowRes { .. } = g.node(id).op {
                nodes[id.index()].rows = height;
            }
            if let Op::Conv { kh, .. } = g.node(id).op {
                for j in g.inputs(id) {
                    nodes[j.index()].rows = nodes[j.index()].rows.max(1 + kh / 2);
                }
            }
            // A gated conv's masked conv reads slot 0 like a conv (the link, slot 1, reads
            // the pixel's own row only).
            if let Op::GatedConv { kh, .. } = g.node(id).op {
                let j = g.inputs(id)[0].index();
                nodes[j].rows = nodes[j].rows.max(1 + kh / 2);
            }
            // The full-context Diagonal BiLSTM reads the image one row above.
            if let Op::DiagBiLstm {
                full_context: true, ..
            } = g.node(id).op
            {
                let j = g.inputs(id)[1].index();
                nodes[j].rows = nodes[j].rows.max(2);
            }
        }
        let output = model.output().index();
        let head = model.head_kind();
        let stale = centre_dependence(&nodes, image.channels, output);
        Ok(CachedModel {
            nodes,
            output,
            channels: image.channels,
            height,
            width,
            levels: image.levels,
            head,
            per: crate::ir::logits_per_sub_pixel(head, image.levels),
            stale,
        })
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
            // Given before the draw: no colour drawn at a pixel changes it.
            Kernel::LowRes(_) => (vec![0u8; node.channels], 0),
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
            Kernel::Gate(gt) => {
                let mut g = vec![0u8; 2 * gt.h];
                for (dy, dx, m) in &gt.taps {
                    if (*dy, *dx) == (0, 0) {
                        g = through(m, input(0));
                    }
                }
                if let Some(l) = &gt.link {
                    g.iter_mut()
                        .zip(through(l, input(1)))
                        .for_each(|(a, b)| *a |= b);
                }
                // Output j multiplies halves j and h + j.
                ((0..gt.h).map(|j| g[j] | g[gt.h + j]).collect(), 0)
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
