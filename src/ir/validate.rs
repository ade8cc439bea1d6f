//! Validation: every rule a model must satisfy before a back end may see it, checked with
//! located diagnostics (all problems at once), ending with the causality proof.
//!
//! A `Model` can only be made here, so "back ends take only a validated IR" is enforced by
//! the type system.

use super::causality::{self, Causality};
use super::shape::{self, Shapes};
use super::{Graph, HeadKind, Mask, NodeId, Op};
use crate::diag::Diagnostic;

/// Most parameters a model may have (a typo guard: the paper's largest is ~ 50M).
pub const MAX_PARAMS: usize = 1 << 31;

/// A validated, causal model: the graph with its side tables.
#[derive(Clone, Debug)]
pub struct Model {
    graph: Graph,
    shapes: Shapes,
    causality: Causality,
    /// A multi-scale model's small model (the unconditional model of the low-res
    /// subsample this one is conditioned on), validated on its own.
    small: Option<Box<Model>>,
}

impl Model {
    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    pub fn shapes(&self) -> &Shapes {
        &self.shapes
    }
    pub fn causality(&self) -> &Causality {
        &self.causality
    }
    /// The head node (validation guarantees there is exactly one, last).
    pub fn output(&self) -> NodeId {
        self.graph.output.expect("validated models have a head")
    }
    /// A multi-scale model's small model; None for a single-scale one.
    pub fn small(&self) -> Option<&Model> {
        self.small.as_deref()
    }
    /// This (low-res conditional) model with `small`, the model of its low-res subsample.
    pub fn with_small(mut self, small: Model) -> Model {
        self.small = Some(Box::new(small));
        self
    }
    pub fn head_kind(&self) -> HeadKind {
        match self.graph.node(self.output()).op {
            Op::Head { kind } => kind,
            _ => HeadKind::Bernoulli,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Accept a model whose causality check fails. Only for demonstrating leaks (tests that
    /// show the numerical check catches what the static pass catches); never for training.
    pub allow_leaks: bool,
}

/// Validates a lowered graph and proves it causal.
pub fn validate(graph: Graph, opts: Options) -> Result<Model, Vec<Diagnostic>> {
    let shapes = shape::infer(&graph);
    let mut errors = Vec::new();
    check_head(&graph, &mut errors);
    let first_masked = check_nodes(&graph, &shapes, &mut errors);
    let total = shapes.total_params();
    if total > MAX_PARAMS {
        errors.push(
            Diagnostic::new(
                graph.node(graph.input).span,
                format!("the model has {total} parameters, more than the limit of {MAX_PARAMS}"),
            )
            .label("model too large")
            .help("reduce hidden sizes or depth"),
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let causality = causality::analyze(&graph, &shapes);
    if let Some(leak) = &causality.leak {
        if !opts.allow_leaks {
            return Err(vec![leak_diagnostic(&graph, leak, first_masked)]);
        }
    }
    Ok(Model {
        graph,
        shapes,
        causality,
        small: None,
    })
}

/// The head: exactly one, last, and matching the image's levels.
fn check_head(graph: &Graph, errors: &mut Vec<Diagnostic>) {
    let image = graph.image;
    let heads: Vec<NodeId> = graph
        .nodes()
        .filter(|&n| matches!(graph.node(n).op, Op::Head { .. }))
        .collect();
    let last = graph.nodes().last().unwrap_or(graph.input);
    match heads.as_slice() {
        [] => errors.push(
            Diagnostic::new(graph.node(last).span, "the model has no output head")
                .label("the last layer")
                .help(if image.levels == 2 {
                    "end the layers with `head: bernoulli`"
                } else {
                    "end the layers with `head: softmax`"
                }),
        ),
        [h, rest @ ..] => {
            for extra in rest {
                errors.push(
                    Diagnostic::new(graph.node(*extra).span, "a model has one head")
                        .label("second head")
                        .help("remove this head; the first one ends the model"),
                );
            }
            if graph.output != Some(*h) && rest.is_empty() {
                // Something follows the head.
                let after = graph
                    .nodes()
                    .find(|n| n.index() > h.index())
                    .unwrap_or(last);
                errors.push(
                    Diagnostic::new(
                        graph.node(after).span,
                        "layers after the head are never used",
                    )
                    .label("after the head")
                    .help("the head must be the last layer"),
                );
            }
            if let Op::Head { kind } = graph.node(*h).op {
                match (kind, image.levels) {
                    (HeadKind::Bernoulli, l) if l != 2 => errors.push(
                        Diagnostic::new(
                            graph.node(*h).span,
                            format!("the bernoulli head models binary images, but `levels` is {l}"),
                        )
                        .label("head does not match levels")
                        .help("use `head: softmax` for multi-level images, or `levels: 2`"),
                    ),
                    (HeadKind::Softmax, 2) => errors.push(
                        Diagnostic::new(
                            graph.node(*h).span,
                            "binary images (levels 2) use the bernoulli head",
                        )
                        .label("head does not match levels")
                        .help("use `head: bernoulli`, or set `levels: 256`"),
                    ),
                    _ => {}
                }
            }
        }
    }
}

/// The per-layer rules (mask A first only, colour groups, kernel sizes, residual widths).
/// Returns the first masked layer.
fn check_nodes(graph: &Graph, shapes: &Shapes, errors: &mut Vec<Diagnostic>) -> Option<NodeId> {
    let image = graph.image;
    let groups = image.groups();
    let mut first_masked: Option<NodeId> = None;
    for id in graph.nodes() {
        let node = graph.node(id);
        let ins = graph.inputs(id);
        let in_ch: Vec<usize> = ins.iter().map(|&i| shapes.channels(i)).collect();
        // A layer is masked when one of its parameters is (`params_of` says which).
        let masked = shapes.params(id).iter().any(|p| p.mask.is_some());
        if masked && first_masked.is_none() {
            first_masked = Some(id);
        }
        match node.op {
            Op::Conv { out, kh, kw, mask } => {
                if mask == Mask::A && first_masked != Some(id) {
                    errors.push(
                        Diagnostic::new(node.span, "mask A belongs on the first layer only")
                            .label("mask A after the first masked layer")
                            .help("use `mask: B` here: later layers may see their own colour group at the centre"),
                    );
                }
                if groups == 3 && out < 3 {
                    errors.push(
                        Diagnostic::new(node.span, format!("RGB models split channels into R, G, B groups, but `out` is {out}: a group would have no channel"))
                            .label("fewer channels than colours")
                            .help("use at least 3 (one channel per colour group)"),
                    );
                }
                if kh > 2 * image.height - 1 || kw > 2 * image.width - 1 {
                    errors.push(
                        Diagnostic::new(
                            node.span,
                            format!(
                                "a {kh}x{kw} kernel is larger than the {}x{} image can use",
                                image.height, image.width
                            ),
                        )
                        .label("kernel too large")
                        .help(format!(
                            "use a kernel of at most {}x{}",
                            2 * image.height - 1,
                            2 * image.width - 1
                        )),
                    );
                }
            }
            // The horizontal stack of the first gated layer: its vertical stack (slot 1)
            // is created just before it, so that is the first masked node.
            Op::GatedConv {
                mask: Mask::A,
                link: true,
                ..
            } if first_masked != ins.get(1).copied() => {
                errors.push(
                    Diagnostic::new(node.span, "mask A belongs on the first layer only")
                        .label("mask A after the first masked layer")
                        .help("use `mask: B` here (the default): later layers may see their own colour group at the centre"),
                );
            }
            Op::RowLstm { hidden, .. }
            | Op::DiagBiLstm { hidden, .. }
            | Op::GatedConv { hidden, .. }
                if groups == 3 && hidden < 3 =>
            {
                errors.push(
                        Diagnostic::new(node.span, format!("RGB models split each gate's channels into R, G, B groups, but `hidden` is {hidden}: a group would have no channel"))
                            .label("fewer channels than colours")
                            .help("use at least 3 (one channel per colour group)"),
                    );
            }
            Op::Add if in_ch.iter().any(|&c| c != in_ch[0]) => {
                let (msg, help) = if node.path.ends_with(".gated.add") {
                    (
                        format!(
                            "a gated_pixelcnn with mask B adds its input ({} channels) to its output (hidden = {} channels)",
                            in_ch[0], in_ch[1]
                        ),
                        format!(
                            "use hidden: {} here, or `mask: A` if this layer reads the image (the first layer adds nothing)",
                            in_ch[0]
                        ),
                    )
                } else if node.path.ends_with(".pixelcnn.add") {
                    (
                            format!(
                                "a pixelcnn_block adds its input ({} channels) to its output (2 x hidden = {} channels)",
                                in_ch[0], in_ch[1]
                            ),
                            if in_ch[0].is_multiple_of(2) {
                                format!("a pixelcnn_block with hidden h needs 2h input channels: use hidden: {}", in_ch[0] / 2)
                            } else {
                                "a pixelcnn_block needs an even number of input channels (2 x hidden)".to_string()
                            },
                        )
                } else {
                    (
                            format!(
                                "a residual block must keep its width: its input has {} channels, its body's output {}",
                                in_ch[0], in_ch[1]
                            ),
                            format!("end the body with `conv: {{out: {}, kernel: 1, mask: B}}` to project back", in_ch[0]),
                        )
                };
                errors.push(
                    Diagnostic::new(node.span, msg)
                        .label("shape mismatch")
                        .help(help),
                );
            }
            _ => {}
        }
    }
    first_masked
}

/// The diagnostic for a model that sees the future: where, what it sees, and the fix.
fn leak_diagnostic(
    graph: &Graph,
    leak: &causality::Leak,
    first_masked: Option<NodeId>,
) -> Diagnostic {
    let image = graph.image;
    let node = graph.node(leak.node);
    let (r, c, g) = leak.at;
    let (r2, c2, ch) = leak.sees;
    let colour = |k: usize| {
        if image.channels == 3 {
            ["R", "G", "B"][k].to_string()
        } else {
            "the value".to_string()
        }
    };
    let what = if (r2, c2) == (r, c) {
        format!("{} at the same pixel", colour(ch))
    } else {
        format!("{} of the later pixel ({r2}, {c2})", colour(ch))
    };
    let help = match node.op {
        Op::Conv { mask: Mask::B, .. } if Some(leak.node) == first_masked => {
            "the first masked layer must use `mask: A`".to_string()
        }
        Op::GatedConv {
            mask: Mask::B,
            link: true,
            ..
        } if graph.inputs(leak.node).get(1).copied() == first_masked => {
            "the first gated_pixelcnn layer must use `mask: A`".to_string()
        }
        Op::DiagBiLstm { shift: false, .. } => {
            "the right-to-left direction must be shifted down one row: remove `shift: false`"
                .to_string()
        }
        _ if Some(leak.node) == first_masked => {
            "start the model with a mask-A convolution, e.g. `conv: {out: 2*h, kernel: 7, mask: A}`"
                .to_string()
        }
        _ => "every layer must see only earlier sub-pixels".to_string(),
    };
    let group = if image.channels == 3 {
        format!(" colour {}", ["R", "G", "B"][g])
    } else {
        String::new()
    };
    Diagnostic::new(
        node.span,
        format!(
            "`{}` ({}) is not causal: its output at pixel ({r}, {c}){group} depends on {what}",
            node.op.name(),
            node.path
        ),
    )
    .label("sees the future")
    .help(help)
}
