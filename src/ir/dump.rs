//! Stable text renderings of a validated model: the IR dump (for snapshots), the `check`
//! table, a JSON summary and Graphviz DOT.

use super::validate::Model;
use super::{Attr, Op};
use serde_json::json;

/// One-line description of an op with its attributes: `name key=value ...` from
/// `Op::attrs`, with the spec's own spelling where it has one (a kernel as `7x7`, the
/// default `shift` left out), so a new op needs nothing here.
pub fn op_text(op: &Op) -> String {
    match *op {
        Op::Conv { out, kh, kw, mask } => {
            format!("conv {kh}x{kw} mask={} out={out}", mask.name())
        }
        Op::DiagBiLstm {
            hidden,
            shift: true,
            full_context: false,
        } => format!("diag_bilstm hidden={hidden}"),
        Op::DiagBiLstm {
            hidden,
            shift: true,
            full_context: true,
        } => format!("diag_bilstm hidden={hidden} full_context=true"),
        Op::GatedConv {
            hidden,
            kh,
            kw,
            mask,
            link,
        } => format!(
            "gated_conv {kh}x{kw} mask={} hidden={hidden}{}",
            mask.name(),
            if link { " link" } else { "" }
        ),
        Op::Head { kind } => format!("head {}", kind.name()),
        _ => {
            let mut s = op.name().to_string();
            for (k, v) in op.attrs() {
                s.push_str(&format!(" {k}={v}"));
            }
            s
        }
    }
}

/// The IR as stable text: one node per line with inputs, shape, parameters and origin (a
/// multi-scale model's small model after it).
pub fn ir_text(m: &Model) -> String {
    with_small(m, ir_text_one)
}

fn ir_text_one(m: &Model) -> String {
    let g = m.graph();
    let im = g.image;
    let mut classes = match im.classes {
        0 => String::new(),
        k => format!(" classes={k}"),
    };
    if let Some(l) = im.low_res {
        classes.push_str(&format!(" low_res={} low_res_maps={}", l.factor, l.maps));
    }
    let mut s = format!(
        "model {} image={}x{}x{} levels={}{classes}\n",
        g.name, im.channels, im.height, im.width, im.levels
    );
    for id in g.nodes() {
        let n = g.node(id);
        let ins: Vec<String> = g.inputs(id).iter().map(|i| i.to_string()).collect();
        let params: Vec<String> = m
            .shapes()
            .params(id)
            .iter()
            .map(|p| {
                let dims: Vec<String> = p.shape.iter().map(|d| d.to_string()).collect();
                format!("{}[{}]", p.name, dims.join(","))
            })
            .collect();
        s.push_str(&format!(
            "{id} = {}({}) -> {}x{}x{}",
            op_text(&n.op),
            ins.join(", "),
            m.shapes().channels(id),
            im.height,
            im.width
        ));
        if !params.is_empty() {
            s.push_str(&format!(" params {}", params.join(" ")));
        }
        s.push_str(&format!("  # {}\n", n.path));
    }
    s.push_str(&format!("output {}\n", m.output()));
    s.push_str(&format!("parameters {}\n", m.shapes().total_params()));
    s
}

fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The human table `pixc check` prints, plus totals and the receptive-field summary; a
/// multi-scale model's small model after it.
pub fn check_table(m: &Model) -> String {
    with_small(m, check_table_one)
}

/// `one(m)`, then for a multi-scale model a header and `one` of its small model.
fn with_small(m: &Model, one: fn(&Model) -> String) -> String {
    let mut s = one(m);
    if let Some(small) = m.small() {
        let im = small.graph().image;
        s.push_str(&format!(
            "\nsmall model (multi-scale: the {}x{} low-res subsample the model above is given, drawn first; trained into RUN/small):\n",
            im.height, im.width
        ));
        s.push_str(&one(small));
    }
    s
}

fn check_table_one(m: &Model) -> String {
    let g = m.graph();
    let im = g.image;
    let rows: Vec<[String; 5]> = g
        .nodes()
        .map(|id| {
            let n = g.node(id);
            [
                id.to_string(),
                n.path.clone(),
                op_text(&n.op),
                format!("{}x{}x{}", m.shapes().channels(id), im.height, im.width),
                group_digits(m.shapes().param_count(id)),
            ]
        })
        .collect();
    let head = ["node", "layer", "op", "output", "params"];
    let mut w = head.map(|h| h.len());
    for r in &rows {
        for (k, c) in r.iter().enumerate() {
            w[k] = w[k].max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )
    };
    let mut conditional = match im.classes {
        0 => String::new(),
        k => format!(", class-conditional ({k} classes)"),
    };
    if let Some(l) = im.low_res {
        conditional.push_str(&format!(
            ", given its {}x{} low-res subsample (rows and columns divisible by {})",
            im.height / l.factor,
            im.width / l.factor,
            l.factor
        ));
    }
    let mut s = format!(
        "model {}: {}x{}x{} images, {} levels, {} head{conditional}\n\n",
        g.name,
        im.channels,
        im.height,
        im.width,
        im.levels,
        m.head_kind().name()
    );
    s.push_str(&line(head));
    for r in &rows {
        s.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    s.push_str(&format!(
        "\nparameters: {}\n",
        group_digits(m.shapes().total_params())
    ));
    s.push_str(&receptive_text(m));
    s
}

/// The causality verdict and how much of the allowed context the outputs see.
pub fn receptive_text(m: &Model) -> String {
    let c = m.causality();
    let sm = &c.summary;
    let im = c.image;
    let mut s = String::new();
    if c.proxy {
        s.push_str(&format!(
            "(analysed on a {}x{} proxy of the {}x{} image: exact maps grow as (H*W)^2)\n",
            im.height,
            im.width,
            m.graph().image.height,
            m.graph().image.width
        ));
    }
    match &c.leak {
        None => s.push_str("causality: proved (no output sees its own or a later sub-pixel)\n"),
        Some(l) => s.push_str(&format!(
            "causality: LEAKS at {} (output {:?} sees input {:?})\n",
            l.node, l.at, l.sees
        )),
    }
    let classes = m.graph().image.classes;
    if classes > 0 {
        // The label is given with the image, never generated: every output may see it,
        // which is why the proof above is over the image's sub-pixels only.
        s.push_str(&format!(
            "conditioning: the class label (0..{}) is given context, seen by every output; the proof covers the generated image\n",
            classes - 1
        ));
    }
    if let Some(l) = m.graph().image.low_res {
        // Its pixels are given, never drawn: every output may see all of them.
        s.push_str(&format!(
            "conditioning: the low-res image (the pixels at rows and columns divisible by {}) is given context, seen by every output and not scored; the proof covers the generated pixels\n",
            l.factor
        ));
    }
    s.push_str(&format!(
        "receptive field: {:.2}% of the allowed context seen on average; {} of {} sub-pixels see all of it\n",
        100.0 * sm.mean_fraction,
        group_digits(sm.full_context),
        group_digits(sm.sub_pixels)
    ));
    let (r, col) = (im.height / 2, im.width / 2);
    let last = im.channels - 1;
    let seen = c.deps(r, col, last).len();
    let allowed = (r * im.width + col) * im.channels + last;
    s.push_str(&format!(
        "field of output ({r}, {col}) {}: {seen} of {allowed} earlier sub-pixels ('#' seen, '+' partly, '.' missed, 'o' this pixel)\n",
        c.colour_name(last)
    ));
    for l in c.field_map(r, col, last).lines() {
        s.push_str(&format!("  |{l}|\n"));
    }
    s
}

/// An op's attributes as JSON (for tools such as the PyTorch reference in python/).
pub fn op_attrs(op: &Op) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = op
        .attrs()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Attr::Int(i) => json!(i),
                Attr::Bool(b) => json!(b),
                Attr::Name(n) => json!(n),
            };
            (k.to_string(), v)
        })
        .collect();
    serde_json::Value::Object(map)
}

/// Machine-readable summary for `pixc check --json`.
pub fn check_json(m: &Model) -> serde_json::Value {
    let g = m.graph();
    let im = g.image;
    let c = m.causality();
    let layers: Vec<serde_json::Value> = g
        .nodes()
        .map(|id| {
            let n = g.node(id);
            json!({
                "node": id.to_string(),
                "layer": n.path,
                "op": op_text(&n.op),
                "kind": n.op.name(),
                "attrs": op_attrs(&n.op),
                "param_shapes": m.shapes().params(id).iter().map(|p| (p.name.clone(), p.shape.clone())).collect::<std::collections::BTreeMap<_, _>>(),
                "inputs": g.inputs(id).iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "output": [m.shapes().channels(id), im.height, im.width],
                "params": m.shapes().param_count(id),
            })
        })
        .collect();
    let mut v = json!({
        "model": g.name,
        "image": {"channels": im.channels, "height": im.height, "width": im.width, "levels": im.levels, "classes": im.classes, "low_res": im.low_res.map(|l| json!({"factor": l.factor, "maps": l.maps}))},
        "layers": layers,
        "parameters": m.shapes().total_params(),
        "causal": c.leak.is_none(),
        "receptive_field": {
            "mean_fraction": c.summary.mean_fraction,
            "full_context_sub_pixels": c.summary.full_context,
            "sub_pixels": c.summary.sub_pixels,
            "seen": c.summary.seen,
            "allowed": c.summary.allowed,
        }
    });
    if let Some(small) = m.small() {
        v["small"] = check_json(small);
    }
    v
}

/// Graphviz DOT of the IR.
pub fn dot(m: &Model) -> String {
    let g = m.graph();
    let im = g.image;
    let mut s = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
        g.name
    );
    for id in g.nodes() {
        let n = g.node(id);
        s.push_str(&format!(
            "  {id} [label=\"{id}: {}\\n{}x{}x{}\\n{}\"];\n",
            op_text(&n.op),
            m.shapes().channels(id),
            im.height,
            im.width,
            n.path
        ));
    }
    for id in g.nodes() {
        for (slot, i) in g.inputs(id).iter().enumerate() {
            if slot == 0 {
                s.push_str(&format!("  {i} -> {id};\n"));
            } else {
                s.push_str(&format!("  {i} -> {id} [label=\"{slot}\"];\n"));
            }
        }
    }
    s.push_str("}\n");
    s
}
