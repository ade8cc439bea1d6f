//! The pixc IR: a typed dataflow graph of image-to-image ops, held in petgraph.
//!
//! Every op maps a `C x H x W` feature map (per image) to another of the same height and
//! width. Nodes carry the source span they came from, so every later pass can point at the
//! spec. Edges carry the input slot. The IR does no I/O and knows nothing of tch or protobuf:
//! back ends read it, together with the side tables the passes produce:
//!
//! | pass | module | side table |
//! | --- | --- | --- |
//! | AST -> IR (evaluate sizes, expand repeat/residual/blocks) | `lower` | the `Graph` |
//! | shape inference, parameter counts | `shape` | `Shapes` |
//! | validation | `validate` | `Validated` (a proof token) |
//! | causality / receptive field | `causality` | `Causality` |
//!
//! Invariant: a back end only accepts a `Validated` graph, and may then return errors but
//! never panics on it.

pub mod causality;
pub mod dump;
pub mod lower;
pub mod mask;
pub mod shape;
pub mod validate;

use crate::diag::Span;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

pub use crate::spec::ast::{HeadKind, Mask};

/// A node of the graph. Node ids are dense and follow creation order, which is a
/// topological order (every input is created before its user).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub NodeIndex<u32>);

impl NodeId {
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{}", self.0.index())
    }
}

/// The input slot an edge feeds.
pub type Slot = u32;

/// The image the model is a density over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// 1 (grayscale / binary) or 3 (RGB).
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Values per sub-pixel: 2 for binary images, 256 for 8-bit.
    pub levels: usize,
}

impl ImageSpec {
    /// Colour groups feature maps are split into: 3 for RGB, 1 otherwise (groups collapse).
    pub fn groups(&self) -> usize {
        if self.channels == 3 {
            3
        } else {
            1
        }
    }
    /// Sub-pixels per image (the dimensions an NLL in bits/dim is divided by).
    pub fn dims(&self) -> usize {
        self.channels * self.height * self.width
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The image, scaled to [0, 1] as `value / (levels - 1)`.
    Input,
    /// Masked convolution with bias, zero padding keeping H x W, kernel centred.
    Conv {
        out: usize,
        kh: usize,
        kw: usize,
        mask: Mask,
    },
    /// Row LSTM: 1 x k mask-B input-to-state conv, 1 x 3 state-to-state conv on the row above.
    RowLstm {
        hidden: usize,
        k: usize,
    },
    /// Diagonal BiLSTM: both directions, right-to-left shifted down a row when `shift`.
    DiagBiLstm {
        hidden: usize,
        shift: bool,
    },
    Relu,
    /// Element-wise sum of all inputs (residual connections).
    Add,
    /// Slot 0 is the stream; each further slot a skip source, projected by a learned 1x1
    /// mask-B conv to the stream's channels and added.
    SkipSum,
    /// 1x1 mask-B conv to logits: `channels` (Bernoulli) or `channels * levels` (softmax).
    Head {
        kind: HeadKind,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Conv { .. } => "conv",
            Op::RowLstm { .. } => "row_lstm",
            Op::DiagBiLstm { .. } => "diag_bilstm",
            Op::Relu => "relu",
            Op::Add => "add",
            Op::SkipSum => "skip_sum",
            Op::Head { .. } => "head",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub span: Span,
    /// Where in the spec this node comes from, e.g. `layers[2].repeat[3].residual[0]`.
    pub path: String,
}

/// A learned tensor of an op: its name (unique within the node) and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl ParamSpec {
    fn new(name: impl Into<String>, shape: &[usize]) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Channels of the logits a head produces for an image.
pub fn head_out_channels(kind: HeadKind, image: &ImageSpec) -> usize {
    match kind {
        HeadKind::Bernoulli => image.channels,
        HeadKind::Softmax => image.channels * image.levels,
    }
}

/// The learned tensors of an op, given its input channel counts (slot order). This is the
/// single source of truth for parameter names and shapes: the shape pass counts them, the
/// libtorch back end creates exactly these, and the ONNX exporter reads them.
///
/// Layouts the back ends rely on:
/// - LSTM input-to-state outputs are gate chunks `[o, f, i, g]` of `hidden` channels each
///   (Diagonal BiLSTM: left-to-right chunks, then right-to-left), and every chunk is split
///   into colour groups like any feature map (see `mask`).
/// - `ss_weight` is a conv1d weight over the state (Diagonal BiLSTM: groups = 2 directions).
/// - `h0`/`c0` are the learned initial state, per channel and position along the state.
pub fn params_of(op: &Op, inputs: &[usize], image: &ImageSpec) -> Vec<ParamSpec> {
    let cin = inputs.first().copied().unwrap_or(0);
    match *op {
        Op::Input | Op::Relu | Op::Add => vec![],
        Op::Conv { out, kh, kw, .. } => vec![
            ParamSpec::new("weight", &[out, cin, kh, kw]),
            ParamSpec::new("bias", &[out]),
        ],
        Op::RowLstm { hidden: h, k } => vec![
            ParamSpec::new("is_weight", &[4 * h, cin, 1, k]),
            ParamSpec::new("is_bias", &[4 * h]),
            ParamSpec::new("ss_weight", &[4 * h, h, 3]),
            ParamSpec::new("h0", &[h, image.width]),
            ParamSpec::new("c0", &[h, image.width]),
        ],
        Op::DiagBiLstm { hidden: h, .. } => vec![
            ParamSpec::new("is_weight", &[8 * h, cin, 1, 1]),
            ParamSpec::new("is_bias", &[8 * h]),
            ParamSpec::new("ss_weight", &[8 * h, h, 2]),
            ParamSpec::new("h0", &[2 * h, image.height]),
            ParamSpec::new("c0", &[2 * h, image.height]),
        ],
        Op::SkipSum => {
            let mut v = Vec::new();
            for (i, &c) in inputs.iter().enumerate().skip(1) {
                v.push(ParamSpec::new(format!("proj{i}_weight"), &[cin, c, 1, 1]));
                v.push(ParamSpec::new(format!("proj{i}_bias"), &[cin]));
            }
            v
        }
        Op::Head { kind } => {
            let out = head_out_channels(kind, image);
            vec![
                ParamSpec::new("weight", &[out, cin, 1, 1]),
                ParamSpec::new("bias", &[out]),
            ]
        }
    }
}

/// A model spec lowered to ops.
#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    pub image: ImageSpec,
    g: DiGraph<Node, Slot>,
    pub input: NodeId,
    /// The head; set by `lower` when the spec has one.
    pub output: Option<NodeId>,
}

impl Graph {
    pub fn new(name: String, image: ImageSpec, input_span: Span) -> Graph {
        let mut g = DiGraph::new();
        let input = NodeId(g.add_node(Node {
            op: Op::Input,
            span: input_span,
            path: "input".into(),
        }));
        Graph {
            name,
            image,
            g,
            input,
            output: None,
        }
    }

    pub fn add(&mut self, op: Op, span: Span, path: String, inputs: &[NodeId]) -> NodeId {
        let id = NodeId(self.g.add_node(Node { op, span, path }));
        for (slot, i) in inputs.iter().enumerate() {
            self.g.add_edge(i.0, id.0, slot as Slot);
        }
        id
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id.0]
    }

    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// All nodes in creation order, which is topological.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices().map(NodeId)
    }

    /// Inputs of a node, in slot order.
    pub fn inputs(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<(Slot, NodeId)> = self
            .g
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| (*e.weight(), NodeId(e.source())))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// Number of nodes that read this node's output.
    pub fn users(&self, id: NodeId) -> usize {
        self.g.edges_directed(id.0, Direction::Outgoing).count()
    }

    /// The petgraph graph, for generic algorithms (e.g. DOT output).
    pub fn petgraph(&self) -> &DiGraph<Node, Slot> {
        &self.g
    }
}
