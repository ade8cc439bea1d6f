//! Row LSTM and Diagonal BiLSTM lowered to ONNX with their recurrences unrolled.
//!
//! The ONNX LSTM op does not fit (its state-to-state map is dense, ours a convolution),
//! and Loop/Scan cost more per step in ONNX Runtime than straight-line nodes, so every row
//! (Row LSTM) or skewed column (Diagonal BiLSTM) becomes its own small block of nodes. The
//! shapes are fixed by the spec (only the batch is dynamic), which makes unrolling exact.
//! See docs/semantics.md for the maths each block implements.

use super::builder::{attr_int, attr_str, Builder};
use super::lower::Params;

/// The graph input holding a conditional model's class label of each image (int64, N).
pub const LABEL_INPUT: &str = "label";

/// A conditional model's class vector of each image, `[N, gates]`: row `label` of
/// `class_weight` transposed (`[classes, gates]`), gathered with the `label` input.
/// `None` when the node has no `class_weight` (an unconditional model).
pub(super) fn class_vectors(b: &mut Builder, p: &str, prm: &Params) -> Option<String> {
    let w = prm.get("class_weight")?;
    let wt = b.transpose(&format!("{p}.class_weight.t"), w, &[1, 0]);
    Some(b.op(
        "Gather",
        &format!("{p}.class"),
        &[&wt, LABEL_INPUT],
        vec![attr_int("axis", 0)],
    ))
}

/// One LSTM step from pre-activation gates (chunks `[o, f, i, g]` of `h` along `axis`):
/// `c = f * c_prev + i * g`, `h = o * tanh(c)`. Returns `(h, c)`.
fn cell(
    b: &mut Builder,
    p: &str,
    gates: &str,
    c_prev: &str,
    axis: i64,
    h: usize,
) -> (String, String) {
    // One Split into the four chunks, then a Sigmoid each on o, f, i: one pass fewer over
    // the gates than a Sigmoid over the three together between two Splits (the Diagonal
    // BiLSTM's graph 1-3% faster on ORT 1.31, one thread, batch 8 and 16; the Row LSTM's
    // unchanged).
    let parts = b.split(
        &format!("{p}.chunks"),
        gates,
        axis,
        &[h, h, h, h],
        &[
            "o_pre".into(),
            "f_pre".into(),
            "i_pre".into(),
            "g_pre".into(),
        ],
    );
    let ofi: Vec<String> = ["o", "f", "i"]
        .iter()
        .enumerate()
        .map(|(j, n)| b.unary("Sigmoid", &format!("{p}.{n}"), &parts[j]))
        .collect();
    let g = b.unary("Tanh", &format!("{p}.g"), &parts[3]);
    let fc = b.binary("Mul", &format!("{p}.f_c"), &ofi[1], c_prev);
    let ig = b.binary("Mul", &format!("{p}.i_g"), &ofi[2], &g);
    let c = b.binary("Add", &format!("{p}.c"), &fc, &ig);
    let tc = b.unary("Tanh", &format!("{p}.tanh_c"), &c);
    let hh = b.binary("Mul", &format!("{p}.h"), &ofi[0], &tc);
    (hh, c)
}

/// Row LSTM `{hidden h, k}` on `x` (`N x cin x H x W`); returns the `N x h x H x W` output,
/// named `out`.
///
/// Rows stay in the image layout (`N x c x 1 x W`): splitting along H moves runs of W
/// values, and ORT's per-row 1x3 Conv is efficient. (A pixel-major variant with the state
/// conv as one MatMul per row, like the Diagonal BiLSTM's, measured about 30% slower: the
/// state conv is a small share of the work here, and the transposes cost more than it saved.)
#[allow(clippy::too_many_arguments)]
pub fn row_lstm(
    b: &mut Builder,
    p: &str,
    x: &str,
    prm: &Params,
    low_res: Option<String>,
    h: usize,
    k: usize,
    height: usize,
    width: usize,
    out: &str,
) -> String {
    // 1. Input-to-state: 1 x k masked conv over the whole image at once.
    let is = b.conv(
        &format!("{p}.is"),
        x,
        &prm["is_weight"],
        Some(&prm["is_bias"]),
        &[1, k],
        &[0, k / 2, 0, k / 2],
        1,
    );
    // A conditional model's class vector [N, 4h], at every position: + [N, 4h, 1, 1].
    let is = match class_vectors(b, p, prm) {
        Some(v) => {
            let v = b.reshape(&format!("{p}.class.4d"), &v, &[0, (4 * h) as i64, 1, 1]);
            b.binary("Add", &format!("{p}.is.class"), &is, &v)
        }
        None => is,
    };
    // A low-res model's map through its 1x1 conv, [N, 4h, H, W].
    let is = match low_res {
        Some(u) => b.binary("Add", &format!("{p}.is.low_res"), &is, &u),
        None => is,
    };
    // The state is kept 4-D (N x h x 1 x W) so the 1-D state conv is a 1 x 3 Conv and rows
    // concatenate straight back into the image.
    let ss_w = b.reshape(
        &format!("{p}.ss_weight.1x3"),
        &prm["ss_weight"],
        &[(4 * h) as i64, h as i64, 1, 3],
    );
    // h0, c0 (h x W) broadcast over the batch.
    let mut h_prev = b.reshape(
        &format!("{p}.h0.4d"),
        &prm["h0"],
        &[1, h as i64, 1, width as i64],
    );
    let mut c_prev = b.reshape(
        &format!("{p}.c0.4d"),
        &prm["c0"],
        &[1, h as i64, 1, width as i64],
    );
    let rows = b.split(
        &format!("{p}.is.rows"),
        &is,
        2,
        &vec![1; height],
        &(0..height).map(|r| format!("row{r}")).collect::<Vec<_>>(),
    );
    let mut outs = Vec::with_capacity(height);
    for (r, row) in rows.iter().enumerate() {
        let q = format!("{p}.row{r}");
        // conv1d over the row above's h with zero padding (1, 1).
        let ss = b.conv(
            &format!("{q}.ss"),
            &h_prev,
            &ss_w,
            None,
            &[1, 3],
            &[0, 1, 0, 1],
            1,
        );
        let gates = b.binary("Add", &format!("{q}.gates"), row, &ss);
        let (hh, c) = cell(b, &q, &gates, &c_prev, 1, h);
        outs.push(hh.clone());
        h_prev = hh;
        c_prev = c;
    }
    b.op_to(
        "Concat",
        &format!("{p}.rows"),
        &outs.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        out,
        vec![attr_int("axis", 2)],
    )
}

/// One column of the Diagonal BiLSTM's skewed states as exported: the names of its h and
/// c tensors and the rows `lo..=top` they hold.
struct Column {
    h: String,
    c: String,
    lo: usize,
    top: usize,
}

/// Diagonal BiLSTM `{hidden h, shift}` on `x` (`N x cin x H x W`); returns the
/// `N x h x H x W` output, named `out`.
///
/// The semantics' skew / mirror / unskew / shift are pure data movement, so they are done
/// here by index tables (Gather) instead, and the recurrence runs in a layout where every
/// per-column step moves whole blocks: `[2 directions, H rows, N, channels]`. Measured on
/// ONNX Runtime 1.31 (CPU), the alternatives are all slower:
/// - working in `N x C x H x (W+H-1)` and splitting the innermost axis into columns copies
///   element by element (about 5x slower overall);
/// - any transpose but a single-axis move is ORT's slow general path (5-8x slower).
///
/// Every shape is static but the symbolic `batch`, which ONNX shape inference carries
/// through the whole graph (`tests/onnx_export.rs` checks it): no Reshape merges the batch
/// with another axis and no shape is computed at run time. A graph of this size with
/// unknown dimensions takes ONNX Runtime a minute to load (the MNIST model had 3,700 of
/// them: 60-76 s per session, against 2 s now).
///
/// Steps (numbered as in docs/semantics.md):
/// - 1: the input-to-state 1x1 conv (masked `is_weight` `[cin, 4h]` per direction, plus
///   bias; with `image` (`full_context`), `ix_weight` `[C, 4h]` on the image's pixel, into
///   direction 1, right to left, only) has no pass of its own: it is folded into each
///   column's GEMM (4-5), which reads the column's pixels `[x; (image); 1]` beside its
///   states.
/// - 2-3: only the image's states are computed, as the fused kernel does: skewed column
///   `k` holds rows `max(0, k-W+1)..=min(H-1, k)`, row `r` pixel `r*W + (k - r)` (left to
///   right) or, for the mirrored right-to-left map, pixel `r*W + W-1-(k - r)`. One Gather
///   per direction, index tables `x.cols.idx.l2r` / `.r2l`. The states left of the image
///   (the skew's padding zone, input zero) depend on the weights alone: `edges` (the
///   cached sampler's, `cached::diag_edges`) are stored per row and read where a column
///   starts a row; `h0` and `c0` reach the output only through them. The states right of
///   the image, which no image state reads, are not computed at all: half the work of the
///   whole skewed map on a square image.
/// - 4-5: a column's gates are, per direction, one GEMM `[n rows * N, K] @ [K, 4h]` (an
///   Einsum) over the stack (h one row up, zero above row 0; h; the pixel's features and a
///   1 for the bias), K = 2h + cin (+ C) + 1, the states read straight from the previous
///   column's where they cover them all (a Slice only where it drops a row). A class
///   vector or a low-res map, which are not functions of the pixel, is added after it.
/// - 6-8: unskew, mirror back, shift down: one Gather per direction from the stacked
///   column outputs (row 0 of the shifted direction reads a zero slot), then the sum.
#[allow(clippy::too_many_arguments)]
pub fn diag_bilstm(
    b: &mut Builder,
    p: &str,
    x: &str,
    cin: usize,
    image: Option<(&str, usize)>,
    low_res: Option<String>,
    prm: &Params,
    edges: &[(Vec<f32>, Vec<f32>); 2],
    h: usize,
    shift: bool,
    height: usize,
    width: usize,
    out: &str,
) -> String {
    let cols = width + height - 1;
    let hw = height * width;
    let (hi, hh, wi, ci) = (h as i64, height as i64, width as i64, cin as i64);
    let dir_names = ["l2r".to_string(), "r2l".to_string()];
    // An N x c x H x W map as [pixel, N, c].
    let by_pixel = |b: &mut Builder, what: &str, t: &str, c: i64| {
        let f = b.reshape(&format!("{p}.{what}.flat"), t, &[0, c, hw as i64]);
        b.transpose(&format!("{p}.{what}.by_pixel"), &f, &[2, 0, 1])
    };
    // The two directions' halves (left to right, right to left) of `t`'s 8h-wide `axis`.
    let halves = |b: &mut Builder, what: &str, t: &str, axis: i64| {
        b.split(
            &format!("{p}.{what}.dir"),
            t,
            axis,
            &[4 * h, 4 * h],
            &dir_names,
        )
    };
    let never = b.bool1(false);
    // 1, 5. The input-to-state 1x1 conv is not a pass of its own: each column's GEMM
    // reads the column's pixels beside its states, `[h up; h; x; (image); 1]`, against
    // `[ss taps; is_weight; (ix_weight); is_bias]`. The 4h-wide input map is never
    // written, gathered or added (measured on ORT 1.31: 1.08-1.28x the whole graph's
    // speed, three alternated pairs, against a MatMul over every pixel, then a Gather of
    // its columns and an Add per column). Per direction the weight is [K, 4h]; the
    // pixels' features are gathered once per direction, K' = cin (+ C) + 1 wide.
    let xt = by_pixel(b, "x", x, ci);
    let mut feats = vec![xt.clone()];
    // is_weight [8h, cin, 1, 1] as [2, cin, 4h].
    let w_is = b.reshape(
        &format!("{p}.is_weight.dir"),
        &prm["is_weight"],
        &[2, 4 * hi, ci],
    );
    let mut blocks = vec![b.transpose(&format!("{p}.is_weight.t"), &w_is, &[0, 2, 1])];
    if let Some((img, c)) = image {
        // Full context: ix_weight [4h, C, 1, 1] on the image's pixel feeds the right-to-left
        // direction only, so the left-to-right direction's rows of it are zero.
        feats.push(by_pixel(b, "image", img, c as i64));
        let w_ix = b.reshape(
            &format!("{p}.ix_weight.dir"),
            &prm["ix_weight"],
            &[1, 4 * hi, c as i64],
        );
        let w_ix = b.transpose(&format!("{p}.ix_weight.t"), &w_ix, &[0, 2, 1]);
        let zero = b.init_f32(
            &format!("{p}.ix_weight.l2r"),
            &[1, c, 4 * h],
            &vec![0.0; c * 4 * h],
        );
        blocks.push(b.concat(&format!("{p}.ix_weight.both"), &[zero, w_ix], 0));
    }
    // The bias's column: ones of [pixel, N, 1] (a never-true Where over x's first channel
    // takes its shape, batch included).
    let first = b.slice(&format!("{p}.x.first"), &xt, &[0], &[1], &[2], &[1]);
    let one = b.f32_scalar(1.0);
    feats.push(b.op(
        "Where",
        &format!("{p}.ones"),
        &[&never, &first, &one],
        vec![],
    ));
    blocks.push(b.reshape(
        &format!("{p}.is_bias.dir"),
        &prm["is_bias"],
        &[2, 1, 4 * hi],
    ));
    let xa = b.concat(&format!("{p}.x.aug"), &feats, 2);
    // Terms of the gates that are not a function of the pixel's features: a conditional
    // model's class vector [N, 8h] and a low-res model's map through its 1x1 conv
    // ([N, 8h, H, W]); the two are summed into one map when both are present.
    let class = class_vectors(b, p, prm);
    let extra_map = low_res.map(|u| {
        let u = by_pixel(b, "low_res", &u, 8 * hi);
        match &class {
            Some(v) => b.binary("Add", &format!("{p}.low_res.class"), &u, v),
            None => u,
        }
    });
    // Without a map, the class vector is added per column as [2, 1, N, 4h].
    let extra_vec = match (&extra_map, class) {
        (None, Some(v)) => {
            let v = b.reshape(&format!("{p}.class.dir"), &v, &[0, 2, 4 * hi]);
            let v = b.transpose(&format!("{p}.class.dir_major"), &v, &[1, 0, 2]);
            let axis1 = b.i64s(&[1]);
            Some(b.op(
                "Unsqueeze",
                &format!("{p}.class.row"),
                &[&v, &axis1],
                vec![],
            ))
        }
        _ => None,
    };
    // 4. ss_weight [8h, h, 2] (output d*4h + q, input j, tap t) as per-direction matrices
    // [2, 2h, 4h] with row t*h + j, matching the stack (tap 0 = row r-1, tap 1 = row r).
    let w4 = b.reshape(
        &format!("{p}.ss_weight.dir"),
        &prm["ss_weight"],
        &[2, 4 * hi, hi, 2],
    );
    let wt = b.transpose(&format!("{p}.ss_weight.taps"), &w4, &[0, 3, 2, 1]);
    let w_ss = b.reshape(&format!("{p}.ss_weight.mat"), &wt, &[2, 2 * hi, 4 * hi]);
    blocks.insert(0, w_ss);
    let w_step = b.concat(&format!("{p}.step_weight"), &blocks, 1);
    // Only the image's states are computed: skewed column k holds rows lo(k)..=hi(k).
    let rows = |k: usize| (k.saturating_sub(width - 1), k.min(height - 1));
    // 2-3. Every column of both directions at once: one Gather per direction with a
    // column-major table of the image pixels on each skewed column, then one Split into
    // per-column [2, n(k), N, K'] inputs. (Per-column Gathers cost three nodes a column;
    // ORT's per-node overhead dominates this graph.)
    let (mut il, mut ir) = (Vec::with_capacity(hw), Vec::with_capacity(hw));
    let mut sizes = Vec::with_capacity(cols);
    let mut offset = Vec::with_capacity(cols);
    for k in 0..cols {
        let (lo, top) = rows(k);
        offset.push(il.len());
        sizes.push(top - lo + 1);
        for r in lo..=top {
            let c = (k - r) as i64;
            il.push(r as i64 * wi + c);
            ir.push(r as i64 * wi + (wi - 1 - c));
        }
    }
    let names: Vec<String> = (0..cols).map(|k| format!("col{k}")).collect();
    let axis0 = b.i64s(&[0]);
    // `dirs` ([pixel, N, c] per direction) as per-column [2, n(k), N, c] pieces.
    let columns = |b: &mut Builder, what: &str, dirs: &[String]| {
        let [gl, gr] = gather_dirs(b, &format!("{p}.{what}.cols"), dirs, 0, &il, &ir);
        let [gl, gr] =
            [gl, gr].map(|g| b.op("Unsqueeze", &format!("{g}.dir"), &[&g, &axis0], vec![]));
        let both = b.concat(&format!("{p}.{what}.cols"), &[gl, gr], 0);
        let pieces = b.split(&format!("{p}.{what}.in"), &both, 1, &sizes, &names);
        (both, pieces)
    };
    let (both, col_in) = columns(b, "x", &[xa.clone(), xa]);
    let col_extra = extra_map.map(|m| {
        let m = halves(b, "extra", &m, 2);
        columns(b, "extra", &m).1
    });
    // The state left of column 0 of row r (the padding zone, whose input is zero) depends
    // on the weights alone: `edges`, baked in as [2, 1, 1, h] per row and broadcast to the
    // batch where a column first reads it; zero above row 0. The broadcast is a `Where`
    // whose condition is always false, so it takes the batch dimension from `like` (a
    // [2, 1, N, 1] slice whose values it never reads, one channel wide because the
    // columns' inputs may be narrower than h): every shape in the graph stays static but
    // the symbolic batch. (An Expand to a shape computed at run time leaves ONNX Runtime
    // thousands of unknown dimensions, and it then took a minute to load.)
    let like = b.slice(
        &format!("{p}.batch_like"),
        &both,
        &[0, 0],
        &[1, 1],
        &[1, 3],
        &[1, 1],
    );
    let edge = |b: &mut Builder, name: &str, vals: [&[f32]; 2], r: usize| {
        let mut v = Vec::with_capacity(2 * h);
        for d in vals {
            v.extend_from_slice(&d[r * h..(r + 1) * h]);
        }
        let t = b.init_f32(&format!("{p}.edge.{name}{r}"), &[2, 1, 1, h], &v);
        let name = format!("{p}.edge.{name}{r}.batch");
        b.op("Where", &name, &[&never, &like, &t], vec![])
    };
    let zero = b.init_f32(&format!("{p}.zero_row"), &[2, 1, 1, h], &vec![0.0; 2 * h]);
    let zero = b.op(
        "Where",
        &format!("{p}.zero_row.batch"),
        &[&never, &like, &zero],
        vec![],
    );
    let (eh, ec) = (
        [edges[0].0.as_slice(), edges[1].0.as_slice()],
        [edges[0].1.as_slice(), edges[1].1.as_slice()],
    );
    // The previous column's states (none before column 0).
    let mut prev: Option<Column> = None;
    let mut outs = Vec::with_capacity(cols);
    for (k, xin) in col_in.iter().enumerate() {
        let q = format!("{p}.col{k}");
        let (lo, top) = rows(k);
        // Rows `from..=to` of the previous column's states: the tensor itself when that is
        // all of it (no node), else a Slice; none when the range is empty.
        let rows_of = |b: &mut Builder, t: &str, name: &str, from: usize, to: Option<usize>| {
            let pc = prev.as_ref()?;
            let to = to?;
            if from > to {
                return None;
            }
            if (from, to) == (pc.lo, pc.top) {
                return Some(t.to_string());
            }
            let (a, e) = ((from - pc.lo) as i64, (to - pc.lo + 1) as i64);
            Some(b.slice(&format!("{q}.{name}"), t, &[a], &[e], &[1], &[1]))
        };
        let cat = |b: &mut Builder, parts: Vec<String>, name: &str| match parts.len() {
            1 => parts.into_iter().next().unwrap_or_default(),
            _ => b.concat(&format!("{q}.{name}"), &parts, 1),
        };
        let (ph, pc) = match &prev {
            Some(pv) => (pv.h.clone(), pv.c.clone()),
            None => (String::new(), String::new()),
        };
        // Same row, one column back: the previous column's rows lo..=top, the last of
        // them (row k, while k < H) the padding zone's edge state instead.
        let last_prev = if k < height {
            top.checked_sub(1)
        } else {
            Some(top)
        };
        let mut same: Vec<String> = rows_of(b, &ph, "h_same", lo, last_prev)
            .into_iter()
            .collect();
        let mut c_same: Vec<String> = rows_of(b, &pc, "c_same", lo, last_prev)
            .into_iter()
            .collect();
        if k < height {
            same.push(edge(b, "h", eh, k));
            c_same.push(edge(b, "c", ec, k));
        }
        let same = cat(b, same, "h_same.cat");
        let c_same = cat(b, c_same, "c_same.cat");
        // One row up, one column back: the previous column's rows lo-1..=top-1, zero
        // above row 0.
        let mut up = Vec::new();
        if lo == 0 {
            up.push(zero.clone());
        }
        up.extend(rows_of(b, &ph, "h_up", lo.max(1) - 1, top.checked_sub(1)));
        let up = cat(b, up, "h_up.cat");
        // 5. gates = [ss taps; is_weight; (ix_weight); is_bias] over (h one row up; h; the
        // column's pixels).
        let stack = b.concat(&format!("{q}.taps"), &[up, same, xin.clone()], 3);
        // One GEMM per direction over the column's (row, image) rows: an Einsum, which ORT
        // runs as one GEMM per direction, where a MatMul over [2, n, N, 2h] would run one
        // per row (about 20% slower) and a Reshape merging rows and images would lose the
        // symbolic batch (and take a minute to load). Its per-call overhead costs about 6%
        // of the whole graph's time against Reshape-MatMul-Reshape (measured on ORT 1.31);
        // a Split into directions, a MatMul each by a 2-D weight and a Concat measured no
        // faster (104-111 against 101-111 images/s, one thread, batch 16).
        let ss = b.op(
            "Einsum",
            &format!("{q}.ss"),
            &[&stack, &w_step],
            vec![attr_str("equation", "dnbk,dkq->dnbq")],
        );
        let gates = match (&col_extra, &extra_vec) {
            (Some(m), _) => b.binary("Add", &format!("{q}.gates"), &ss, &m[k]),
            (None, Some(v)) => b.binary("Add", &format!("{q}.gates"), &ss, v),
            (None, None) => ss,
        };
        let (hn, c) = cell(b, &q, &gates, &c_same, 3, h);
        outs.push(hn.clone());
        prev = Some(Column { h: hn, c, lo, top });
    }
    // Column outputs stacked as [2, H*W + 1 (zero slot), N, h]: (r, k) at offset(k) + r - lo(k).
    let skewed = b.concat(&format!("{p}.out.skewed"), &outs, 1);
    let skewed = b.pad(
        &format!("{p}.out.zero_slot"),
        &skewed,
        &[0, 0, 0, 0, 0, 1, 0, 0],
    );
    let dirs = b.split(
        &format!("{p}.out.dir"),
        &skewed,
        0,
        &[1, 1],
        &["l2r".into(), "r2l".into()],
    );
    // 6-7. Output (r, c): left to right from column r + c, row r; right to left, mirrored
    // back, from column r' + W-1-c, row r', where r' = r - 1 when shifted down (row 0 then
    // reads the zero slot).
    let at = |r: usize, k: usize| (offset[k] + r - rows(k).0) as i64;
    let (mut il, mut ir) = (Vec::with_capacity(hw), Vec::with_capacity(hw));
    for r in 0..height {
        for c in 0..width {
            il.push(at(r, r + c));
            let rs = if shift { r.checked_sub(1) } else { Some(r) };
            ir.push(match rs {
                Some(rs) => at(rs, rs + width - 1 - c),
                None => hw as i64,
            });
        }
    }
    let [l, r] = gather_dirs(b, &format!("{p}.out"), &dirs, 1, &il, &ir);
    // 8. Sum of the directions ([1, H*W, N, h]), back to N x h x H x W.
    let sum = b.binary("Add", &format!("{p}.sum"), &l, &r);
    let axes = b.i64s(&[0]);
    let sum = b.op(
        "Squeeze",
        &format!("{p}.sum.squeeze"),
        &[&sum, &axes],
        vec![],
    );
    let nchw = b.transpose(&format!("{p}.sum.batch_major"), &sum, &[1, 2, 0]);
    b.reshape_to(&format!("{p}.out"), &nchw, &[0, hi, hh, wi], out)
}

/// Gathers along `axis` of each direction's tensor (`dirs`: left-to-right, right-to-left)
/// with its own index table: nodes `{q}.l2r` and `{q}.r2l`, tables `{q}.idx.*`.
fn gather_dirs(
    b: &mut Builder,
    q: &str,
    dirs: &[String],
    axis: i64,
    l2r: &[i64],
    r2l: &[i64],
) -> [String; 2] {
    let mut one = |d: &str, idx: &[i64], x: &str| {
        let t = b.i64_tensor(&format!("{q}.idx.{d}"), &[idx.len()], idx);
        b.op(
            "Gather",
            &format!("{q}.{d}"),
            &[x, &t],
            vec![attr_int("axis", axis)],
        )
    };
    [one("l2r", l2r, &dirs[0]), one("r2l", r2l, &dirs[1])]
}
