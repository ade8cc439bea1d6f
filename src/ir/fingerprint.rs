//! A canonical, versioned fingerprint of a validated model: what a run's resume identity
//! is built from, independent of the human-readable IR dump (which may change freely).
//!
//! The text hashed is an explicit, exhaustive serialisation of the image and of every node
//! (op and all its fields, inputs by slot, output channels). Bump `VERSION` only when the
//! meaning of a model changes; formatting changes elsewhere never touch it.

use super::validate::Model;
use super::Op;
use std::fmt::Write;

/// The fingerprint format; part of the text hashed.
pub const VERSION: u32 = 1;

/// The canonical text of a model (what `fingerprint` hashes).
pub fn canonical(model: &Model) -> String {
    let g = model.graph();
    let im = g.image;
    let mut s = format!(
        "pixc-model-fingerprint v{VERSION}\nimage {} {} {} {}\n",
        im.channels, im.height, im.width, im.levels
    );
    // Only conditional models have the line, so every unconditional fingerprint (and the
    // runs keyed by it) stays what it was.
    if im.classes > 0 {
        let _ = writeln!(s, "classes {}", im.classes);
    }
    if let Some(l) = im.low_res {
        let _ = writeln!(s, "low_res {} {}", l.factor, l.maps);
    }
    for id in g.nodes() {
        let ins: Vec<String> = g.inputs(id).iter().map(|i| i.index().to_string()).collect();
        let _ = writeln!(
            s,
            "{} {} in=[{}] ch={}",
            id.index(),
            op_text(&g.node(id).op),
            ins.join(","),
            model.shapes().channels(id)
        );
    }
    s
}

/// One op with all its fields (`Op::attrs`, which is exhaustive over ops).
fn op_text(op: &Op) -> String {
    let mut s = op.name().to_string();
    for (k, v) in op.attrs() {
        let _ = write!(s, " {k}={v}");
    }
    s
}

/// SHA-256 (hex) of `canonical(model)`.
pub fn fingerprint(model: &Model) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(canonical(model).as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}
