//! IR -> ONNX nodes: one function per op, plus the in-graph negative log-likelihood.
//!
//! IR node `n{i}` becomes a run of ONNX nodes named `n{i}.*` whose final value is named
//! `n{i}` (the head's is `logits`). Masked weights are stored pre-multiplied by their mask
//! under the parameter's own name (`n3.weight`), so the file holds exactly what runs.

use super::builder::{attr_int, attr_ints, Builder};
use super::lstm;
use crate::ir::mask::Crop;
use crate::ir::validate::Model;
use crate::ir::{HeadKind, NodeId, Op};
use crate::weights::{param_key, Weights};
use std::collections::HashMap;

/// Parameter name (`is_weight`) -> initializer name (`n5.is_weight`) for one node.
pub type Params = HashMap<String, String>;

/// Name of the value holding an IR node's output.
pub fn value_of(model: &Model, id: NodeId) -> String {
    if id == model.output() {
        "logits".to_string()
    } else {
        format!("n{}", id.index())
    }
}

/// Adds a node's parameters as initializers, each masked weight multiplied by its mask
/// (`Weights::effective`, from the descriptor) and cut to the kernel rows `Crop` keeps
/// (for 1-row kernels, all of them).
fn add_params(b: &mut Builder, model: &Model, id: NodeId, weights: &Weights) -> Params {
    let mut out = Params::new();
    let op = &model.graph().node(id).op;
    for p in model.shapes().params(id) {
        if baked_in(op, &p.name) {
            continue;
        }
        let key = param_key(id.index(), &p.name);
        // `check_against` ran before lowering, so every tensor is present with this shape.
        let data = weights.effective(model, id, p);
        let s = &p.shape;
        if p.mask.is_some() {
            // `lower_nodes` pads the top alone, as the libtorch back end does.
            let crop = Crop::of(s[2], s[3]);
            b.init_f32(
                &key,
                &[s[0], s[1], crop.rows, s[3]],
                &crop.apply(&data, s[2]),
            );
        } else {
            b.init_f32(&key, s, &data);
        }
        out.insert(p.name.clone(), key);
    }
    out
}

/// Parameters the export does not store as they are: the Diagonal BiLSTM's initial states
/// reach its outputs only through the padding-edge states (`cached::diag_edges`), which
/// are stored instead (`lstm::diag_bilstm`).
fn baked_in(op: &Op, name: &str) -> bool {
    matches!(op, Op::DiagBiLstm { .. }) && matches!(name, "h0" | "c0")
}

/// Lowers every IR node after the input (which `export` has already scaled into `n0`).
pub fn lower_nodes(b: &mut Builder, model: &Model, weights: &Weights) {
    let g = model.graph();
    let (height, width) = (g.image.height, g.image.width);
    let im_channels = g.image.channels;
    for id in g.nodes() {
        let node = g.node(id);
        if matches!(node.op, Op::Input) {
            continue;
        }
        b.doc = format!("{} ({})", node.path, node.op.name());
        let prm = add_params(b, model, id, weights);
        let p = format!("n{}", id.index());
        let out = value_of(model, id);
        let ins: Vec<String> = g.inputs(id).iter().map(|&i| value_of(model, i)).collect();
        let x = ins[0].as_str();
        // A low-res conditional model's 1x1 conv of the low-res map (the last input) into
        // this node's gates: `[N, gates, H, W]`; None for nodes without one.
        let low_res = prm.get("low_res_weight").map(|w| {
            b.conv(
                &format!("{p}.low_res"),
                ins.last().expect("the low-res map"),
                w,
                None,
                &[1, 1],
                &[0, 0, 0, 0],
                1,
            )
        });
        match node.op {
            Op::Input => {}
            Op::LowRes { factor, .. } => {
                // The strided subsample, then ConvTranspose (kernel 3f, stride f, padding f).
                let f = factor as i64;
                let small = b.slice(
                    &format!("{p}.subsample"),
                    x,
                    &[0, 0],
                    &[i64::MAX, i64::MAX],
                    &[2, 3],
                    &[f, f],
                );
                b.op_to(
                    "ConvTranspose",
                    &format!("{p}.deconv"),
                    &[&small, &prm["weight"], &prm["bias"]],
                    &out,
                    vec![
                        attr_ints("kernel_shape", &[3 * f, 3 * f]),
                        attr_ints("strides", &[f, f]),
                        attr_ints("pads", &[f, f, f, f]),
                    ],
                );
            }
            Op::Conv { kh, kw, .. } => {
                // Only the kernel rows `Crop` keeps (see `add_params`).
                let crop = Crop::of(kh, kw);
                let pads = [crop.pad_top, crop.pad_side, 0, crop.pad_side];
                conv_to(
                    b,
                    &format!("{p}.conv"),
                    x,
                    &prm["weight"],
                    &prm["bias"],
                    &[crop.rows, kw],
                    &pads,
                    &out,
                );
            }
            Op::GatedConv { hidden, kh, kw, .. } => {
                let crop = Crop::of(kh, kw);
                let pads = [crop.pad_top, crop.pad_side, 0, crop.pad_side];
                let mut pre = b.conv(
                    &format!("{p}.conv"),
                    x,
                    &prm["weight"],
                    Some(&prm["bias"]),
                    &[crop.rows, kw],
                    &pads,
                    1,
                );
                if let Some(link) = prm.get("link_weight") {
                    let v = b.conv(
                        &format!("{p}.link"),
                        &ins[1],
                        link,
                        None,
                        &[1, 1],
                        &[0, 0, 0, 0],
                        1,
                    );
                    pre = b.binary("Add", &format!("{p}.pre"), &pre, &v);
                }
                if let Some(v) = lstm::class_vectors(b, &p, &prm) {
                    // [N, 2h] -> [N, 2h, 1, 1]: the class vector at every position.
                    let v = b.reshape(
                        &format!("{p}.class.4d"),
                        &v,
                        &[0, (2 * hidden) as i64, 1, 1],
                    );
                    pre = b.binary("Add", &format!("{p}.pre.class"), &pre, &v);
                }
                if let Some(u) = &low_res {
                    pre = b.binary("Add", &format!("{p}.pre.low_res"), &pre, u);
                }
                let halves = b.split(
                    &format!("{p}.gate"),
                    &pre,
                    1,
                    &[hidden, hidden],
                    &["a".to_string(), "b".to_string()],
                );
                let t = b.unary("Tanh", &format!("{p}.tanh"), &halves[0]);
                let s = b.unary("Sigmoid", &format!("{p}.sigmoid"), &halves[1]);
                b.op_to("Mul", &format!("{p}.mul"), &[&t, &s], &out, vec![]);
            }
            Op::Relu => {
                b.op_to("Relu", &format!("{p}.relu"), &[x], &out, vec![]);
            }
            Op::Add => sum_chain(b, &p, &ins, &out),
            Op::SkipSum => {
                let mut terms = vec![ins[0].clone()];
                for (i, src) in ins.iter().enumerate().skip(1) {
                    let (w, bias) = (
                        &prm[&format!("proj{i}_weight")],
                        &prm[&format!("proj{i}_bias")],
                    );
                    terms.push(b.conv(
                        &format!("{p}.proj{i}"),
                        src,
                        w,
                        Some(bias),
                        &[1, 1],
                        &[0, 0, 0, 0],
                        1,
                    ));
                }
                sum_chain(b, &p, &terms, &out);
            }
            Op::Head { .. } => {
                conv_to(
                    b,
                    &format!("{p}.head"),
                    x,
                    &prm["weight"],
                    &prm["bias"],
                    &[1, 1],
                    &[0, 0, 0, 0],
                    &out,
                );
            }
            Op::RowLstm { hidden, k } => {
                lstm::row_lstm(b, &p, x, &prm, low_res, hidden, k, height, width, &out);
            }
            Op::DiagBiLstm {
                hidden,
                shift,
                full_context,
            } => {
                let cin = model.shapes().channels(g.inputs(id)[0]);
                // The full-context variant's slot 1: the image, scaled.
                let image = full_context.then(|| (ins[1].as_str(), im_channels));
                // The padding-zone states, from the weights (as the cached sampler has them).
                let edges = crate::backend::cached::diag_edges(model, weights, id);
                lstm::diag_bilstm(
                    b, &p, x, cin, image, low_res, &prm, &edges, hidden, shift, height, width, &out,
                );
            }
        }
    }
    b.doc.clear();
}

/// A Conv whose output value is named `out` (the IR node's value).
#[allow(clippy::too_many_arguments)]
fn conv_to(
    b: &mut Builder,
    name: &str,
    x: &str,
    w: &str,
    bias: &str,
    kernel: &[usize],
    pads: &[usize],
    out: &str,
) {
    let k: Vec<i64> = kernel.iter().map(|&v| v as i64).collect();
    let p: Vec<i64> = pads.iter().map(|&v| v as i64).collect();
    b.op_to(
        "Conv",
        name,
        &[x, w, bias],
        out,
        vec![attr_ints("kernel_shape", &k), attr_ints("pads", &p)],
    );
}

/// `((t0 + t1) + t2) + ...` in slot order (binary Adds keep the summation order fixed, which
/// a variadic Sum does not promise); one term becomes an Identity.
fn sum_chain(b: &mut Builder, p: &str, terms: &[String], out: &str) {
    if terms.len() == 1 {
        b.op_to(
            "Identity",
            &format!("{p}.identity"),
            &[&terms[0]],
            out,
            vec![],
        );
        return;
    }
    let mut acc = terms[0].clone();
    for (i, t) in terms.iter().enumerate().skip(1) {
        let name = format!("{p}.add{i}");
        acc = if i + 1 == terms.len() {
            b.op_to("Add", &name, &[&acc, t], out, vec![])
        } else {
            b.binary("Add", &name, &acc, t)
        };
    }
}

/// A low-res conditional model's scored pixels as a constant of `rank` dims ending in
/// `H, W` (1 where a pixel is scored, 0 at the given low-res image's); None otherwise.
fn scored_mask(b: &mut Builder, im: &crate::ir::ImageSpec, rank: usize) -> Option<String> {
    let m = im.scored_mask()?;
    let mut dims = vec![1; rank - 2];
    dims.extend([im.height, im.width]);
    Some(b.init_f32("nll.scored", &dims, &m))
}

/// The raw image a low-res model reads (value `n0.given`, part of the input node n0): `image` with its pixels at
/// rows and columns divisible by `f` replaced by the `low_res` input's. Data movement and
/// a multiplication by 0 or 1, so it is exact: `image * free + placed`, where `placed` is
/// `low_res` spread to full size with zeros between (Unsqueeze, Pad, Reshape).
pub fn place_low_res(b: &mut Builder, im: &crate::ir::ImageSpec, f: usize) -> String {
    b.doc = "the low-res pixels of `image` replaced by the `low_res` input".to_string();
    let (c, h, w, f) = (
        im.channels as i64,
        im.height as i64,
        im.width as i64,
        f as i64,
    );
    let axes = b.i64s(&[3, 5]);
    let split = b.op(
        "Unsqueeze",
        "n0.low_res.blocks",
        &[super::LOW_RES_INPUT, &axes],
        vec![],
    );
    // [N, C, H/f, 1, W/f, 1] -> [N, C, H/f, f, W/f, f], the given pixel first in each block.
    let padded = b.pad(
        "n0.low_res.spread",
        &split,
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, f - 1, 0, f - 1],
    );
    let placed = b.reshape("n0.low_res.placed", &padded, &[0, c, h, w]);
    let free = im.scored_mask().expect("a low-res model");
    let free = b.init_f32("n0.free", &[1, 1, im.height, im.width], &free);
    let kept = b.binary("Mul", "n0.free_pixels", "image", &free);
    let out = b.binary("Add", "n0.given", &kept, &placed);
    b.doc.clear();
    out
}

/// The per-image NLL in nats from `logits` and the raw `image`, as value `nll` (`[N]`);
/// a low-res model's given pixels are not scored.
pub fn nll(b: &mut Builder, model: &Model, image: &str, scaled: &str) {
    let im = model.graph().image;
    b.doc = "negative log-likelihood per image, nats".to_string();
    match model.head_kind() {
        HeadKind::Bernoulli => {
            // BCEWithLogits(l, t) = max(l, 0) - l*t + log(1 + exp(-|l|)), the overflow-free
            // form; the target is the scaled image (exactly 0 or 1).
            let abs = b.unary("Abs", "nll.abs", "logits");
            let neg = b.unary("Neg", "nll.neg_abs", &abs);
            let sp = b.unary("Softplus", "nll.log1p_exp", &neg);
            let relu = b.unary("Relu", "nll.relu", "logits");
            let lt = b.binary("Mul", "nll.logit_x_target", "logits", scaled);
            let d = b.binary("Sub", "nll.relu_minus", &relu, &lt);
            let mut e = b.binary("Add", "nll.bce", &d, &sp);
            if let Some(m) = scored_mask(b, &im, 4) {
                e = b.binary("Mul", "nll.bce.scored", &e, &m);
            }
            let axes = b.i64s(&[1, 2, 3]);
            b.op(
                "ReduceSum",
                "nll",
                &[&e, &axes],
                vec![attr_int("keepdims", 0)],
            );
        }
        HeadKind::Softmax => {
            let (c, l, h, w) = (
                im.channels as i64,
                im.levels as i64,
                im.height as i64,
                im.width as i64,
            );
            // Channel c*levels + v -> [N, C, levels, H, W]: log-softmax over the levels axis.
            let l5 = b.reshape("nll.logits.levels", "logits", &[0, c, l, h, w]);
            let logp = b.op(
                "LogSoftmax",
                "nll.log_softmax",
                &[&l5],
                vec![attr_int("axis", 2)],
            );
            let t = b.op(
                "Cast",
                "nll.target",
                &[image],
                vec![attr_int("to", super::builder::INT64 as i64)],
            );
            let ax = b.i64s(&[2]);
            let t5 = b.op("Unsqueeze", "nll.target.levels", &[&t, &ax], vec![]);
            let mut picked = b.op(
                "GatherElements",
                "nll.log_p",
                &[&logp, &t5],
                vec![attr_int("axis", 2)],
            );
            if let Some(m) = scored_mask(b, &im, 5) {
                picked = b.binary("Mul", "nll.log_p.scored", &picked, &m);
            }
            let axes = b.i64s(&[1, 2, 3, 4]);
            let s = b.op(
                "ReduceSum",
                "nll.sum_log_p",
                &[&picked, &axes],
                vec![attr_int("keepdims", 0)],
            );
            b.op("Neg", "nll", &[&s], vec![]);
        }
    }
    b.doc.clear();
}
