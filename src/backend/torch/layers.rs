//! The ops of docs/semantics.md in libtorch: masked and gated convs, Row LSTM, Diagonal
//! BiLSTM.
//!
//! Recurrences loop over rows / skewed columns; everything that does not depend on the
//! state (input-to-state convs, skew, mirror) is computed for the whole image at once.
//! The Diagonal BiLSTM runs both directions as one recurrence (a grouped conv1d).

use super::Step;
use crate::ir::{mask::Crop, Op};
use tch::Tensor;

/// Applies one op to its inputs.
/// `cond`: a conditional model's one-hot labels (N x classes), which LSTM layers read.
pub fn apply(
    st: &Step,
    ins: &[&Tensor],
    cond: Option<&Tensor>,
    height: usize,
    width: usize,
) -> Tensor {
    let x = ins[0];
    match st.op {
        Op::Input => x.shallow_clone(),
        Op::LowRes { factor, .. } => {
            // The image's strided subsample, then the transposed conv (kernel 3f, stride f,
            // padding f) back to full size.
            let f = factor as i64;
            let small = x.slice(2, 0, None, f).slice(3, 0, None, f);
            small.conv_transpose2d(
                &st.weight("weight"),
                Some(st.param("bias")),
                [f, f],
                [f, f],
                [0, 0],
                1,
                [1, 1],
            )
        }
        Op::Conv { kh, kw, .. } => masked_conv(st, x, kh, kw),
        Op::GatedConv { hidden, kh, kw, .. } => {
            let pre = add_low_res(st, add_class(st, masked_conv(st, x, kh, kw), cond), ins);
            // The link from the vertical stack, out of place (autograd keeps `pre`).
            let pre = if st.has("link_weight") {
                let v = ins[1].conv2d::<Tensor>(
                    &st.weight("link_weight"),
                    None,
                    [1, 1],
                    [0, 0],
                    [1, 1],
                    1,
                );
                pre + v
            } else {
                pre
            };
            let h = hidden as i64;
            pre.narrow(1, 0, h).tanh() * pre.narrow(1, h, h).sigmoid()
        }
        Op::Head { .. } => x.conv2d(
            &st.weight("weight"),
            Some(st.param("bias")),
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        ),
        Op::Relu => x.relu(),
        Op::Add => ins[1..].iter().fold(x.shallow_clone(), |acc, t| &acc + *t),
        Op::SkipSum => {
            // Sum out of place: `x` is another node's output that autograd still needs.
            let projected: Vec<Tensor> = ins
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, src)| {
                    src.conv2d(
                        &st.weight(&format!("proj{i}_weight")),
                        Some(st.param(&format!("proj{i}_bias"))),
                        [1, 1],
                        [0, 0],
                        [1, 1],
                        1,
                    )
                })
                .collect();
            projected.iter().fold(x.shallow_clone(), |acc, p| &acc + p)
        }
        Op::RowLstm { hidden, .. } => row_lstm(st, ins, cond, hidden as i64, height as i64),
        Op::DiagBiLstm { hidden, shift, .. } => diag_bilstm(
            st,
            ins,
            cond,
            hidden as i64,
            shift,
            height as i64,
            width as i64,
        ),
    }
}

/// Adds a low-res conditional model's `low_res_weight` (an unmasked 1x1 conv) of the
/// upsampled low-res map, the node's last input, to an input-to-state map or gate
/// pre-activations; out of place. Nodes without one are returned as they are.
pub fn add_low_res(st: &Step, pre: Tensor, ins: &[&Tensor]) -> Tensor {
    match low_res_term(st, ins) {
        Some(t) => pre + t,
        None => pre,
    }
}

/// A low-res model's 1x1 conv of its map (the last input) into this node's gates,
/// `N x gates x H x W`; None for a node without `low_res_weight`.
fn low_res_term(st: &Step, ins: &[&Tensor]) -> Option<Tensor> {
    let u = ins.last().filter(|_| st.has("low_res_weight"))?;
    Some(u.conv2d::<Tensor>(
        &st.weight("low_res_weight"),
        None,
        [1, 1],
        [0, 0],
        [1, 1],
        1,
    ))
}

/// A masked conv with its bias (`weight`, `bias`), over only the kernel rows that may be
/// nonzero and an input padded at the top (`Crop`). The parameter keeps its full shape;
/// its cut rows get zero gradient, as the mask gave them before.
fn masked_conv(st: &Step, x: &Tensor, kh: usize, kw: usize) -> Tensor {
    let crop = Crop::of(kh, kw);
    let w = st.weight("weight").narrow(2, 0, crop.rows as i64);
    let x = if crop.pad_top > 0 {
        x.constant_pad_nd([0, 0, crop.pad_top as i64, 0])
    } else {
        x.shallow_clone()
    };
    x.conv2d(
        &w,
        Some(st.param("bias")),
        [1, 1],
        [0, crop.pad_side as i64],
        [1, 1],
        1,
    )
}

/// Gates `[o, f, i, g]` along `dim` -> new (h, c).
fn lstm_update(gates: &Tensor, c_prev: &Tensor, dim: i64, h: i64) -> (Tensor, Tensor) {
    let sig = gates.narrow(dim, 0, 3 * h).sigmoid();
    let g = gates.narrow(dim, 3 * h, h).tanh();
    let o = sig.narrow(dim, 0, h);
    let f = sig.narrow(dim, h, h);
    let i = sig.narrow(dim, 2 * h, h);
    // addcmul: one kernel for f*c + i*g instead of three.
    let c = (f * c_prev).addcmul(&i, &g);
    let hn = o * c.tanh();
    (hn, c)
}

/// The input-to-state convolution of a Row LSTM (1 x k along the row, mask B) or
/// Diagonal BiLSTM (1x1, mask B), for the whole image at once: the recurrences' input.
pub fn input_to_state(st: &Step, x: &Tensor) -> Tensor {
    let w = st.weight("is_weight");
    // A 1 x k kernel along the row, centred: k/2 columns of padding on each side.
    let pad = w.size()[3] / 2;
    x.conv2d(&w, Some(st.param("is_bias")), [1, 1], [0, pad], [1, 1], 1)
}

/// Adds a conditional model's class vectors (`class_weight` times the one-hot labels) to
/// an input-to-state map or gate pre-activations `N x gates x H x W`, at every position;
/// out of place.
pub fn add_class(st: &Step, is: Tensor, cond: Option<&Tensor>) -> Tensor {
    match class_term(st, cond) {
        Some(t) => is + t,
        None => is,
    }
}

/// A conditional model's class vectors (`class_weight` times the one-hot labels) as
/// `N x gates x 1 x 1`; None without labels or `class_weight`.
fn class_term(st: &Step, cond: Option<&Tensor>) -> Option<Tensor> {
    let y = cond.filter(|_| st.has("class_weight"))?;
    let v = y.matmul(&st.param("class_weight").tr());
    Some(v.unsqueeze(-1).unsqueeze(-1))
}

/// The Row LSTM's input-to-state map with the class vectors and the low-res map, as the
/// recurrence reads it; `ins` are the node's inputs (slot 0 the layer input).
pub fn row_input_to_state(st: &Step, ins: &[&Tensor], cond: Option<&Tensor>) -> Tensor {
    let is = input_to_state(st, ins[0]);
    match row_extra(st, ins, cond) {
        Some(e) => is + e,
        None => is,
    }
}

/// What a Row LSTM's input-to-state map gets besides the 1 x k conv of its layer input
/// (None when nothing): a conditional model's class vectors and low-res map. Apart from
/// the conv so that the CPU training path can run the conv in `conv_kernels` and add
/// this (`tape::FusedInputs`).
pub fn row_extra(st: &Step, ins: &[&Tensor], cond: Option<&Tensor>) -> Option<Tensor> {
    let mut terms = class_term(st, cond)
        .into_iter()
        .chain(low_res_term(st, ins));
    let first = terms.next()?;
    Some(terms.fold(first, |a, t| a + t))
}

fn row_lstm(st: &Step, ins: &[&Tensor], cond: Option<&Tensor>, h: i64, height: i64) -> Tensor {
    let n = ins[0].size()[0];
    let is = row_input_to_state(st, ins, cond);
    let ss = st.param("ss_weight");
    let width = is.size()[3];
    let mut hs = st.param("h0").unsqueeze(0).expand([n, h, width], false);
    let mut cs = st.param("c0").unsqueeze(0).expand([n, h, width], false);
    let mut rows = Vec::with_capacity(height as usize);
    for r in 0..height {
        let gates = is.select(2, r) + hs.conv1d::<Tensor>(ss, None, [1], [1], [1], 1);
        let (hn, cn) = lstm_update(&gates, &cs, 1, h);
        rows.push(hn.shallow_clone());
        hs = hn;
        cs = cn;
    }
    Tensor::stack(&rows, 2)
}

/// Skews `N x C x H x W` to `N x C x H x (W+H-1)`: row r shifted right by r.
pub fn skew(t: &Tensor, height: i64, width: i64) -> Tensor {
    let s = t.size();
    let (n, c) = (s[0], s[1]);
    t.constant_pad_nd([0, height])
        .reshape([n, c, height * (width + height)])
        .narrow(2, 0, height * (width + height - 1))
        .reshape([n, c, height, width + height - 1])
}

/// Inverse of `skew`.
pub fn unskew(t: &Tensor, height: i64, width: i64) -> Tensor {
    let s = t.size();
    let (n, c) = (s[0], s[1]);
    t.reshape([n, c, height * (width + height - 1)])
        .constant_pad_nd([0, height])
        .reshape([n, c, height, width + height])
        .narrow(3, 0, width)
}

/// The Diagonal BiLSTM's input-to-state map, `N x 8h x H x W` (left-to-right gates, then
/// right-to-left, unmirrored): the 1x1 conv of the layer input plus `diag_extra`; `ins`
/// are the node's inputs.
pub fn diag_input_to_state(st: &Step, ins: &[&Tensor], cond: Option<&Tensor>, h: i64) -> Tensor {
    let is = input_to_state(st, ins[0]);
    match diag_extra(st, ins, cond, h) {
        Some(e) => is + e,
        None => is,
    }
}

/// What a Diagonal BiLSTM's input-to-state map gets besides the 1x1 conv of its layer
/// input, `N x 8h x H x W` (None when nothing): a conditional model's class vectors and
/// low-res map, in both halves, and a `full_context` node's image (slot 1) through
/// `ix_weight` (an unmasked 1x1 conv, no bias: `is_bias` is already there), in the
/// right-to-left half only. Apart from the conv so that the fused kernel can run the conv
/// itself and add this (`tape::FusedInputs`).
pub fn diag_extra(st: &Step, ins: &[&Tensor], cond: Option<&Tensor>, h: i64) -> Option<Tensor> {
    let x = ins[0];
    let (n, height, width) = (x.size()[0], x.size()[2], x.size()[3]);
    let mut terms: Vec<Tensor> = Vec::new();
    terms.extend(class_term(st, cond));
    terms.extend(low_res_term(st, ins));
    if let Op::DiagBiLstm {
        full_context: true, ..
    } = st.op
    {
        let ix = ins[1].conv2d::<Tensor>(&st.weight("ix_weight"), None, [1, 1], [0, 0], [1, 1], 1);
        // Into the right-to-left half: zeros for the first 4h channels.
        terms.push(ix.constant_pad_nd([0, 0, 0, 0, 4 * h, 0]));
    }
    let mut it = terms.into_iter();
    let first = it.next()?;
    let sum = it.fold(first, |a, t| a + t);
    Some(sum.expand([n, 8 * h, height, width], false))
}

fn diag_bilstm(
    st: &Step,
    ins: &[&Tensor],
    cond: Option<&Tensor>,
    h: i64,
    shift: bool,
    height: i64,
    width: i64,
) -> Tensor {
    let n = ins[0].size()[0];
    let is = diag_input_to_state(st, ins, cond, h);
    // Right-to-left = left-to-right on the mirrored map (the 1x1 conv commutes with it).
    let both = Tensor::cat(
        &[is.narrow(1, 0, 4 * h), is.narrow(1, 4 * h, 4 * h).flip([3])],
        1,
    );
    let sk = skew(&both, height, width);
    let ss = st.param("ss_weight");
    let mut hs = st
        .param("h0")
        .unsqueeze(0)
        .expand([n, 2 * h, height], false);
    let mut cs = st
        .param("c0")
        .reshape([1, 2, h, height])
        .expand([n, 2, h, height], false);
    let cols = width + height - 1;
    let mut outs = Vec::with_capacity(cols as usize);
    for k in 0..cols {
        // 2-tap state-to-state conv over rows r-1, r: pad the top only (never the bottom).
        let rec = hs
            .constant_pad_nd([1, 0])
            .conv1d::<Tensor>(ss, None, [1], [0], [1], 2);
        let gates = (sk.select(3, k) + rec).view([n, 2, 4 * h, height]);
        let (hn, cn) = lstm_update(&gates, &cs, 2, h);
        hs = hn.reshape([n, 2 * h, height]);
        outs.push(hs.shallow_clone());
        cs = cn;
    }
    let out = unskew(&Tensor::stack(&outs, 3), height, width);
    let lr = out.narrow(1, 0, h);
    let mut rl = out.narrow(1, h, h).flip([3]);
    if shift {
        // Row r of the right-to-left map has seen row r; move it to row r+1.
        rl = rl.constant_pad_nd([0, 0, 1, 0]).narrow(2, 0, height);
    }
    lr + rl
}
