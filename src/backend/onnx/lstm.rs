//! Row LSTM and Diagonal BiLSTM lowered to ONNX with their recurrences unrolled.
//!
//! The ONNX LSTM op does not fit (its state-to-state map is dense, ours a convolution),
//! and Loop/Scan cost more per step in ONNX Runtime than straight-line nodes, so every row
//! (Row LSTM) or skewed column (Diagonal BiLSTM) becomes its own small block of nodes. The
//! shapes are fixed by the spec (only the batch is dynamic), which makes unrolling exact.
//! See docs/semantics.md for the maths each block implements.

use super::builder::Builder;
use super::lower::Params;

/// One LSTM step from pre-activation gates (chunks `[o, f, i, g]` of `h` along `axis`):
/// `c = f * c_prev + i * g`, `h = o * tanh(c)`. Returns `(h, c)`.
fn cell(b: &mut Builder, p: &str, gates: &str, c_prev: &str, axis: i64, h: usize) -> (String, String) {
    // One Sigmoid over the three sigmoid chunks, one Tanh over g: fewer nodes than four.
    let parts = b.split(&format!("{p}.chunks"), gates, axis, &[3 * h, h], &["ofi_pre".into(), "g_pre".into()]);
    let sig = b.unary("Sigmoid", &format!("{p}.ofi"), &parts[0]);
    let ofi = b.split(&format!("{p}.gate"), &sig, axis, &[h, h, h], &["o".into(), "f".into(), "i".into()]);
    let g = b.unary("Tanh", &format!("{p}.g"), &parts[1]);
    let fc = b.binary("Mul", &format!("{p}.f_c"), &ofi[1], c_prev);
    let ig = b.binary("Mul", &format!("{p}.i_g"), &ofi[2], &g);
    let c = b.binary("Add", &format!("{p}.c"), &fc, &ig);
    let tc = b.unary("Tanh", &format!("{p}.tanh_c"), &c);
    let hh = b.binary("Mul", &format!("{p}.h"), &ofi[0], &tc);
    (hh, c)
}

/// Row LSTM `{hidden h, k}` on `x` (`N x cin x H x W`); returns the `N x h x H x W` output,
/// named `out`.
#[allow(clippy::too_many_arguments)]
pub fn row_lstm(b: &mut Builder, p: &str, x: &str, prm: &Params, h: usize, k: usize, height: usize, width: usize, out: &str) -> String {
    // 1. Input-to-state: 1 x k masked conv over the whole image at once.
    let is = b.conv(&format!("{p}.is"), x, &prm["is_weight"], Some(&prm["is_bias"]), &[1, k], &[0, k / 2, 0, k / 2], 1);
    // The state is kept 4-D (N x h x 1 x W) so the 1-D state conv is a 1 x 3 Conv and rows
    // concatenate straight back into the image.
    let ss_w = b.reshape(&format!("{p}.ss_weight.1x3"), &prm["ss_weight"], &[(4 * h) as i64, h as i64, 1, 3]);
    // h0, c0 (h x W) broadcast over the batch.
    let mut h_prev = b.reshape(&format!("{p}.h0.4d"), &prm["h0"], &[1, h as i64, 1, width as i64]);
    let mut c_prev = b.reshape(&format!("{p}.c0.4d"), &prm["c0"], &[1, h as i64, 1, width as i64]);
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
        let ss = b.conv(&format!("{q}.ss"), &h_prev, &ss_w, None, &[1, 3], &[0, 1, 0, 1], 1);
        let gates = b.binary("Add", &format!("{q}.gates"), row, &ss);
        let (hh, c) = cell(b, &q, &gates, &c_prev, 1, h);
        outs.push(hh.clone());
        h_prev = hh;
        c_prev = c;
    }
    b.op_to("Concat", &format!("{p}.rows"), &outs.iter().map(|s| s.as_str()).collect::<Vec<_>>(), out, vec![super::builder::attr_int("axis", 2)])
}

/// Skews `N x c x H x W` to `N x c x H x (W+H-1)`, row `r` shifted right by `r`: pad each
/// row by H zeros, flatten, keep the first `H*(W+H-1)` values, and re-read them as rows one
/// shorter. Pure data movement, so bit-exact.
fn skew(b: &mut Builder, p: &str, m: &str, c: usize, height: usize, width: usize) -> String {
    let (c, hh, w) = (c as i64, height as i64, width as i64);
    let padded = b.pad(&format!("{p}.skew.pad"), m, &[0, 0, 0, 0, 0, 0, 0, hh]);
    let flat = b.reshape(&format!("{p}.skew.flat"), &padded, &[0, c, hh * (w + hh)]);
    let cut = b.slice(&format!("{p}.skew.cut"), &flat, &[0], &[hh * (w + hh - 1)], &[2], &[1]);
    b.reshape(&format!("{p}.skewed"), &cut, &[0, c, hh, w + hh - 1])
}

/// The inverse of `skew`: `out[r, c] = skewed[r, r + c]`.
fn unskew(b: &mut Builder, p: &str, s: &str, c: usize, height: usize, width: usize) -> String {
    let (c, hh, w) = (c as i64, height as i64, width as i64);
    let flat = b.reshape(&format!("{p}.unskew.flat"), s, &[0, c, hh * (w + hh - 1)]);
    let padded = b.pad(&format!("{p}.unskew.pad"), &flat, &[0, 0, 0, 0, 0, hh]);
    let rows = b.reshape(&format!("{p}.unskew.rows"), &padded, &[0, c, hh, w + hh]);
    b.slice(&format!("{p}.unskewed"), &rows, &[0], &[w], &[3], &[1])
}

/// Mirrors the columns (`x'[..., c] = x[..., W-1-c]`) with a step -1 Slice over the width.
fn mirror(b: &mut Builder, name: &str, x: &str) -> String {
    b.slice(name, x, &[-1], &[i64::MIN], &[3], &[-1])
}

/// Diagonal BiLSTM `{hidden h, shift}`; returns the `N x h x H x W` output, named `out`.
///
/// The recurrence runs column-major: the skewed map is transposed once to
/// `W' x 8h x H x N`, so each column is one contiguous block (splitting the innermost axis
/// of `N x 8h x H x W'` into single columns copies element by element, and was most of the
/// run time). In that layout the grouped 2-tap state conv of a column is one batched MatMul
/// per direction, `[4h x 2h] @ [2h x H*N]`, over the stack (h one row up, h): two large
/// products instead of 2N tiny convolutions, and the one-row shift moves whole runs of N.
#[allow(clippy::too_many_arguments)]
pub fn diag_bilstm(
    b: &mut Builder,
    p: &str,
    x: &str,
    prm: &Params,
    h: usize,
    shift: bool,
    height: usize,
    width: usize,
    out: &str,
) -> String {
    let cols = width + height - 1;
    let (hi, hh, ci) = (h as i64, height as i64, cols as i64);
    // 1. Input-to-state 1x1 conv for both directions: [0, 4h) left-to-right, [4h, 8h) right-to-left.
    let is = b.conv(&format!("{p}.is"), x, &prm["is_weight"], Some(&prm["is_bias"]), &[1, 1], &[0, 0, 0, 0], 1);
    // 2. Mirror the right-to-left half; both halves then run side by side as 8h channels.
    let dirs = b.split(&format!("{p}.is.dir"), &is, 1, &[4 * h, 4 * h], &["l2r".into(), "r2l".into()]);
    let r2l = mirror(b, &format!("{p}.is.r2l.mirror"), &dirs[1]);
    let both = b.concat(&format!("{p}.is.both"), &[dirs[0].clone(), r2l], 1);
    // 3. Skew, then go column-major: W' x (8h * H * N). The flattening Reshape also keeps
    // ORT's transpose optimizer from pushing the Transpose through the Split (which would
    // turn one transpose into one per column).
    let skewed = skew(b, p, &both, 8 * h, height, width);
    let by_col = b.transpose(&format!("{p}.skewed.by_col"), &skewed, &[3, 1, 2, 0]);
    let by_col = b.reshape(&format!("{p}.skewed.by_col.flat"), &by_col, &[ci, -1]);
    let inputs = b.split(
        &format!("{p}.skewed.cols"),
        &by_col,
        0,
        &vec![1; cols],
        &(0..cols).map(|k| format!("col{k}")).collect::<Vec<_>>(),
    );
    // 4. ss_weight [8h, h, 2] (output d*4h + q, input j, tap t) as per-direction matrices
    // [2, 4h, 2h] with column t*h + j, matching the stack (tap 0 = row r-1, tap 1 = row r).
    let w4 = b.reshape(&format!("{p}.ss_weight.dir"), &prm["ss_weight"], &[2, 4 * hi, hi, 2]);
    let wt = b.transpose(&format!("{p}.ss_weight.taps"), &w4, &[0, 1, 3, 2]);
    let ss_w = b.reshape(&format!("{p}.ss_weight.mat"), &wt, &[2, 4 * hi, 2 * hi]);
    // State per direction as [2, h, H, N]; h0, c0 ([2h, H]) broadcast over N.
    let mut h_prev = b.reshape(&format!("{p}.h0.dir"), &prm["h0"], &[2, hi, hh, 1]);
    let mut c_prev = b.reshape(&format!("{p}.c0.dir"), &prm["c0"], &[2, hi, hh, 1]);
    let mut outs = Vec::with_capacity(cols);
    for (k, col) in inputs.iter().enumerate() {
        let q = format!("{p}.col{k}");
        // 5. gates = column + ss_weight taps over (h one row up, zero at the top; h).
        let padded = b.pad(&format!("{q}.h_up.pad"), &h_prev, &[0, 0, 1, 0, 0, 0, 0, 0]);
        let up = b.slice(&format!("{q}.h_up"), &padded, &[0], &[hh], &[2], &[1]);
        let stack = b.concat(&format!("{q}.taps"), &[up, h_prev.clone()], 1);
        let flat = b.reshape(&format!("{q}.taps.flat"), &stack, &[2, 2 * hi, -1]);
        let ss = b.binary("MatMul", &format!("{q}.ss"), &ss_w, &flat);
        let ss = b.reshape(&format!("{q}.ss.rows"), &ss, &[2, 4 * hi, hh, -1]);
        let xin = b.reshape(&format!("{q}.in"), col, &[2, 4 * hi, hh, -1]);
        let gates = b.binary("Add", &format!("{q}.gates"), &xin, &ss);
        let (hn, c) = cell(b, &q, &gates, &c_prev, 1, h);
        outs.push(b.reshape(&format!("{q}.h.flat"), &hn, &[1, -1]));
        h_prev = hn;
        c_prev = c;
    }
    // Back to N x 2h x H x W' (channel d*h + j), then unskew both directions at once.
    let stacked = b.concat(&format!("{p}.out.cols"), &outs, 0);
    let stacked = b.reshape(&format!("{p}.out.cols.4d"), &stacked, &[ci, 2 * hi, hh, -1]);
    let skewed_out = b.transpose(&format!("{p}.skewed_out"), &stacked, &[3, 1, 2, 0]);
    // 6. Unskew.
    let unskewed = unskew(b, p, &skewed_out, 2 * h, height, width);
    let dirs = b.split(&format!("{p}.out.dir"), &unskewed, 1, &[h, h], &["l2r".into(), "r2l".into()]);
    // 7. Mirror the right-to-left output back, then shift it down one row.
    let mut r2l = mirror(b, &format!("{p}.out.r2l.mirror"), &dirs[1]);
    if shift {
        let padded = b.pad(&format!("{p}.out.r2l.shift.pad"), &r2l, &[0, 0, 1, 0, 0, 0, 0, 0]);
        r2l = b.slice(&format!("{p}.out.r2l.shifted"), &padded, &[0], &[height as i64], &[2], &[1]);
    }
    // 8. Sum of the directions.
    b.op_to("Add", &format!("{p}.sum"), &[&dirs[0], &r2l], out, vec![])
}
