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
//! | validation | `validate` | `Model` (only `validate` makes one) |
//! | causality / receptive field | `causality` | `Causality` |
//!
//! Invariant: a back end only accepts a validated `Model`, and may then return errors but
//! never panics on it. Every fact about an op's parameters (names, shapes, masks,
//! initialisation) is in `params_of`; the kernel crop rule is `mask::Crop`.

pub mod causality;
pub mod dump;
pub mod fingerprint;
pub mod flops;
pub mod head;
pub mod lower;
pub mod mask;
pub mod shape;
pub mod validate;

use crate::diag::Span;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

pub use crate::front::ast::{HeadKind, Mask};
pub use head::{head_out_channels, logits_per_sub_pixel};

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
    /// Class-conditional models: the number of classes a label names; 0 = unconditional.
    /// A label is context, not part of the image: it is given, never generated.
    pub classes: usize,
    /// Low-resolution conditioning (`low_res: f`): the model is a density over the image's
    /// pixels given its strided subsample `x[::f, ::f]` (the pixels at rows and columns
    /// that are multiples of `f`), which it reads through `Op::LowRes`. Those pixels are
    /// context, never scored or drawn. None = no low-res input.
    pub low_res: Option<LowRes>,
}

/// A model's low-resolution conditioning input (`ImageSpec::low_res`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowRes {
    /// The subsampling stride: the low-res image is `H/f x W/f` (`f` divides both).
    pub factor: usize,
    /// Channels of the upsampled map every LSTM and gated layer reads (`low_res_maps`).
    pub maps: usize,
}

impl LowRes {
    /// Whether pixel `(r, c)` is one of the low-res image's (context, not scored).
    pub fn holds(&self, r: usize, c: usize) -> bool {
        r.is_multiple_of(self.factor) && c.is_multiple_of(self.factor)
    }
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
    /// Sub-pixels per image.
    pub fn dims(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// Sub-pixels the model scores and draws (the dimensions an NLL in bits/dim is divided
    /// by): all of them, less the low-res image's, which are given.
    pub fn scored_dims(&self) -> usize {
        match self.low_res {
            Some(l) => {
                let given = self.height.div_ceil(l.factor) * self.width.div_ceil(l.factor);
                self.dims() - self.channels * given
            }
            None => self.dims(),
        }
    }
    /// Whether sub-pixels at `(r, c)` are scored and drawn (false for the low-res image's).
    pub fn scored(&self, r: usize, c: usize) -> bool {
        !self.low_res.is_some_and(|l| l.holds(r, c))
    }
    /// A low-res model's NLL mask, `H x W` row-major: 1 where a pixel is scored, 0 at the
    /// given low-res pixels; None when every pixel is scored. Both back ends' NLL read it.
    pub fn scored_mask(&self) -> Option<Vec<f32>> {
        self.low_res?;
        Some(
            (0..self.height * self.width)
                .map(|p| f32::from(u8::from(self.scored(p / self.width, p % self.width))))
                .collect(),
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The image, scaled to [0, 1] as `value / (levels - 1)`.
    Input,
    /// The low-resolution conditioning map (`ImageSpec::low_res`): the image's strided
    /// subsample `x[::f, ::f]` (slot 0 is the image), upsampled by a transposed
    /// convolution (kernel `3f`, stride `f`, padding `f`: each output pixel reads the 3 x 3
    /// low-res pixels around its own block) to `maps` channels at full size. Unmasked: the
    /// low-res pixels are given, so it is context and carries no dependency. Every LSTM
    /// and gated node of the model takes it as its last input slot.
    LowRes {
        factor: usize,
        maps: usize,
    },
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
    /// With `full_context` the node has a second input, the image (`Op::Input`), whose
    /// row r the right-to-left direction also reads at row r (docs/semantics.md).
    DiagBiLstm {
        hidden: usize,
        shift: bool,
        full_context: bool,
    },
    /// Gated masked convolution (the gated PixelCNN's unit): a `kh x kw` masked conv of
    /// slot 0 to `2 * hidden` channels (two chunks `a`, `b`, each split into colour groups
    /// like LSTM gates), plus with `link` an unmasked 1x1 conv of slot 1 (the vertical
    /// stack, which sees only rows above: no colour of its own pixel), plus a conditional
    /// model's class vector; out `tanh(a) * sigmoid(b)`, `hidden` channels.
    GatedConv {
        hidden: usize,
        kh: usize,
        kw: usize,
        mask: Mask,
        link: bool,
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

/// The kind of an op, without its fields: for tables and tests that must cover every op
/// (`ALL`), such as the numeric causality test's one example per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Input,
    LowRes,
    Conv,
    RowLstm,
    DiagBiLstm,
    GatedConv,
    Relu,
    Add,
    SkipSum,
    Head,
}

impl OpKind {
    /// Every kind. A new `Op` variant fails to compile in `Op::kind`; add its kind here too.
    pub const ALL: [OpKind; 10] = [
        OpKind::Input,
        OpKind::LowRes,
        OpKind::Conv,
        OpKind::RowLstm,
        OpKind::DiagBiLstm,
        OpKind::GatedConv,
        OpKind::Relu,
        OpKind::Add,
        OpKind::SkipSum,
        OpKind::Head,
    ];

    /// The op's name in the spec language and in IR dumps.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Input => "input",
            OpKind::LowRes => "low_res",
            OpKind::Conv => "conv",
            OpKind::RowLstm => "row_lstm",
            OpKind::DiagBiLstm => "diag_bilstm",
            OpKind::GatedConv => "gated_conv",
            OpKind::Relu => "relu",
            OpKind::Add => "add",
            OpKind::SkipSum => "skip_sum",
            OpKind::Head => "head",
        }
    }
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Input => OpKind::Input,
            Op::LowRes { .. } => OpKind::LowRes,
            Op::Conv { .. } => OpKind::Conv,
            Op::RowLstm { .. } => OpKind::RowLstm,
            Op::DiagBiLstm { .. } => OpKind::DiagBiLstm,
            Op::GatedConv { .. } => OpKind::GatedConv,
            Op::Relu => OpKind::Relu,
            Op::Add => OpKind::Add,
            Op::SkipSum => OpKind::SkipSum,
            Op::Head { .. } => OpKind::Head,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Every field of the op, named as in the spec language, in a fixed order: what the
    /// resume fingerprint and the JSON summaries are written from.
    pub fn attrs(&self) -> Vec<(&'static str, Attr)> {
        use Attr::{Bool, Int, Name};
        match *self {
            Op::Input | Op::Relu | Op::Add | Op::SkipSum => vec![],
            Op::LowRes { factor, maps } => vec![("factor", Int(factor)), ("maps", Int(maps))],
            Op::Conv { out, kh, kw, mask } => vec![
                ("out", Int(out)),
                ("kh", Int(kh)),
                ("kw", Int(kw)),
                ("mask", Name(mask.name())),
            ],
            Op::RowLstm { hidden, k } => vec![("hidden", Int(hidden)), ("k", Int(k))],
            Op::DiagBiLstm {
                hidden,
                shift,
                full_context,
            } => {
                let mut v = vec![("hidden", Int(hidden)), ("shift", Bool(shift))];
                // Listed only when set: the fingerprints (and so the resume keys) of every
                // model without it stay what they were.
                if full_context {
                    v.push(("full_context", Bool(true)));
                }
                v
            }
            Op::GatedConv {
                hidden,
                kh,
                kw,
                mask,
                link,
            } => vec![
                ("hidden", Int(hidden)),
                ("kh", Int(kh)),
                ("kw", Int(kw)),
                ("mask", Name(mask.name())),
                ("link", Bool(link)),
            ],
            Op::Head { kind } => vec![("kind", Name(kind.name()))],
        }
    }
}

impl Mask {
    /// As written in specs: `A` or `B`; the IR-only vertical-stack masks as in dumps.
    pub fn name(self) -> &'static str {
        match self {
            Mask::A => "A",
            Mask::B => "B",
            Mask::Above => "above",
            Mask::AboveRow => "above_row",
        }
    }
}

impl HeadKind {
    /// As written in specs: `bernoulli` or `softmax`.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Bernoulli => "bernoulli",
            HeadKind::Softmax => "softmax",
        }
    }
}

/// The value of one op field (`Op::attrs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    Int(usize),
    Bool(bool),
    Name(&'static str),
}

impl std::fmt::Display for Attr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attr::Int(v) => write!(f, "{v}"),
            Attr::Bool(v) => write!(f, "{v}"),
            Attr::Name(v) => f.write_str(v),
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

/// What a learned tensor is to its op: how back ends wire it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A convolution weight `[out, cin, kh, kw]` (LSTM input-to-state maps, skip
    /// projections and the head included).
    Weight,
    /// The bias added after that weight, `[out]`.
    Bias,
    /// An LSTM's state-to-state conv1d weight `[gates, hidden, taps]`.
    StateToState,
    /// A learned initial LSTM hidden state, per channel and position along the state.
    InitialHidden,
    /// A learned initial LSTM cell state, same layout.
    InitialCell,
    /// A class-conditional model's per-class vector added to an LSTM's input-to-state map
    /// at every position, `[gates, classes]`: column `y` for label `y` (the papers' 1x1
    /// unmasked projection of a one-hot label map). Gated convs add it to their gate
    /// pre-activations the same way.
    ClassWeight,
    /// A transposed convolution's weight `[cin, out, kh, kw]` (`Op::LowRes`'s upsampling).
    Deconv,
    /// A low-res conditional model's unmasked 1x1 conv `[gates, maps, 1, 1]` of the
    /// upsampled low-res map (the node's last input) into an LSTM's input-to-state map or
    /// a gated conv's pre-activations.
    LowResWeight,
}

/// How a `[out, cin, kh, kw]` weight is masked (see `mask`): the mask kind at the centre
/// tap, and the number of equal output chunks (LSTM gates) each split into colour groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaskSpec {
    pub kind: Mask,
    pub out_chunks: usize,
}

/// How a tensor starts: seeded uniform like PyTorch's convolution defaults, or zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Uniform in ±1/sqrt(fan_in).
    Uniform {
        fan_in: usize,
    },
    /// Uniform in ±1/sqrt(fan_in), plus 1 on the forget-gate chunk (gate chunks
    /// `[o, f, i, g]` of `hidden` channels, repeated per direction): lets gradients through
    /// long recurrences early in training.
    ForgetBias {
        fan_in: usize,
        hidden: usize,
    },
    Zeros,
}

/// A learned tensor of an op, with every fact a back end needs about it: its name (unique
/// within the node), shape, role, mask and initialisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
    /// The mask of a masked weight; None for tensors used as they are.
    pub mask: Option<MaskSpec>,
    pub init: Init,
}

impl ParamSpec {
    fn new(name: impl Into<String>, shape: &[usize], role: Role, init: Init) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
            role,
            mask: None,
            init,
        }
    }

    /// A masked conv weight `[out, cin, kh, kw]` and its bias, both initialised from the
    /// weight's fan-in.
    fn masked_conv(
        prefix: &str,
        shape: [usize; 4],
        kind: Mask,
        out_chunks: usize,
        bias_init: impl FnOnce(usize) -> Init,
    ) -> [ParamSpec; 2] {
        let fan_in = shape[1] * shape[2] * shape[3];
        let mut w = ParamSpec::new(
            format!("{prefix}weight"),
            &shape,
            Role::Weight,
            Init::Uniform { fan_in },
        );
        w.mask = Some(MaskSpec { kind, out_chunks });
        let b = ParamSpec::new(
            format!("{prefix}bias"),
            &[shape[0]],
            Role::Bias,
            bias_init(fan_in),
        );
        [w, b]
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The 0/1 mask of this weight (row-major, its own shape) for `groups` colour groups;
    /// None when it is unmasked.
    pub fn mask_values(&self, groups: usize) -> Option<Vec<f32>> {
        let m = self.mask?;
        let s = &self.shape;
        Some(mask::conv_mask(
            s[0],
            s[1],
            s[2],
            s[3],
            m.kind,
            groups,
            m.out_chunks,
        ))
    }
}

/// The learned tensors of an op, given its input channel counts (slot order). This is the
/// single source of truth for every fact about an op's parameters: names, shapes, which
/// are masked and how, and their initialisation. The shape pass counts them, validation
/// finds the masked layers, `Weights::init` draws them, and the libtorch, ONNX and cached
/// sampler back ends read them by name.
///
/// Layouts the back ends rely on:
/// - LSTM input-to-state outputs are gate chunks `[o, f, i, g]` of `hidden` channels each
///   (Diagonal BiLSTM: left-to-right chunks, then right-to-left), and every chunk is split
///   into colour groups like any feature map (see `mask`).
/// - `ss_weight` is a conv1d weight over the state (Diagonal BiLSTM: groups = 2 directions).
/// - `h0`/`c0` are the learned initial state, per channel and position along the state.
/// - A gated conv's `weight`, `link_weight` and `class_weight` outputs are chunks
///   `[a, b]` of `hidden` channels: the output is `tanh(a) * sigmoid(b)`.
pub fn params_of(op: &Op, inputs: &[usize], image: &ImageSpec) -> Vec<ParamSpec> {
    let cin = inputs.first().copied().unwrap_or(0);
    let uniform = |fan_in| Init::Uniform { fan_in };
    let class = |gates: usize| {
        // Zeros: an untrained conditional model is the unconditional one.
        (image.classes > 0).then(|| {
            ParamSpec::new(
                "class_weight",
                &[gates, image.classes],
                Role::ClassWeight,
                Init::Zeros,
            )
        })
    };
    // The 1x1 conv of the low-res map (the last input) into the gates: unmasked, since the
    // low-res image is context.
    let low_res = |gates: usize| {
        image.low_res.map(|l| {
            ParamSpec::new(
                "low_res_weight",
                &[gates, l.maps, 1, 1],
                Role::LowResWeight,
                uniform(l.maps),
            )
        })
    };
    let lstm = |is_shape: [usize; 4], h: usize, ss: &[usize], state: &[usize]| {
        let [w, b] = ParamSpec::masked_conv("is_", is_shape, Mask::B, is_shape[0] / h, |f| {
            Init::ForgetBias {
                fan_in: f,
                hidden: h,
            }
        });
        let ss_fan_in = ss[1] * ss[2];
        let mut p = vec![
            w,
            b,
            ParamSpec::new("ss_weight", ss, Role::StateToState, uniform(ss_fan_in)),
            ParamSpec::new("h0", state, Role::InitialHidden, Init::Zeros),
            ParamSpec::new("c0", state, Role::InitialCell, Init::Zeros),
        ];
        p.extend(class(is_shape[0]));
        p.extend(low_res(is_shape[0]));
        p
    };
    match *op {
        Op::Input | Op::Relu | Op::Add => vec![],
        Op::LowRes { factor, maps } => {
            let k = 3 * factor;
            // Each output pixel sums 3 x 3 taps per input channel.
            let fan_in = 9 * cin;
            vec![
                ParamSpec::new("weight", &[cin, maps, k, k], Role::Deconv, uniform(fan_in)),
                ParamSpec::new("bias", &[maps], Role::Bias, uniform(fan_in)),
            ]
        }
        Op::GatedConv {
            hidden: h,
            kh,
            kw,
            mask,
            link,
        } => {
            // Two chunks (tanh and sigmoid halves), grouped separately: output channel j
            // pairs a_j with b_j, which must be one colour group.
            let mut p = ParamSpec::masked_conv("", [2 * h, cin, kh, kw], mask, 2, uniform).to_vec();
            if link {
                // Unmasked: the vertical stack at a pixel sees only rows above it.
                let c = inputs.get(1).copied().unwrap_or(0);
                p.push(ParamSpec::new(
                    "link_weight",
                    &[2 * h, c, 1, 1],
                    Role::Weight,
                    uniform(c),
                ));
            }
            p.extend(class(2 * h));
            p.extend(low_res(2 * h));
            p
        }
        Op::Conv { out, kh, kw, mask } => {
            ParamSpec::masked_conv("", [out, cin, kh, kw], mask, 1, uniform).to_vec()
        }
        Op::RowLstm { hidden: h, k } => {
            lstm([4 * h, cin, 1, k], h, &[4 * h, h, 3], &[h, image.width])
        }
        Op::DiagBiLstm {
            hidden: h,
            full_context,
            ..
        } => {
            let mut p = lstm(
                [8 * h, cin, 1, 1],
                h,
                &[8 * h, h, 2],
                &[2 * h, image.height],
            );
            if full_context {
                // The image (slot 1) into the right-to-left gates: unmasked, since that
                // direction's output at row r is used from row r+1 on, where all of row r,
                // every colour, is context.
                let c = inputs.get(1).copied().unwrap_or(image.channels);
                p.push(ParamSpec::new(
                    "ix_weight",
                    &[4 * h, c, 1, 1],
                    Role::Weight,
                    uniform(c),
                ));
            }
            p
        }
        Op::SkipSum => inputs
            .iter()
            .enumerate()
            .skip(1)
            .flat_map(|(i, &c)| {
                ParamSpec::masked_conv(&format!("proj{i}_"), [cin, c, 1, 1], Mask::B, 1, uniform)
            })
            .collect(),
        Op::Head { kind } => {
            let out = head_out_channels(kind, image);
            ParamSpec::masked_conv("", [out, cin, 1, 1], Mask::B, 1, uniform).to_vec()
        }
    }
}

/// Channels of an op's output, given its input channel counts (slot order). Every op keeps
/// height and width.
pub fn out_channels(op: &Op, inputs: &[usize], image: &ImageSpec) -> usize {
    match *op {
        Op::Input => image.channels,
        Op::LowRes { maps, .. } => maps,
        Op::Conv { out, .. } => out,
        Op::RowLstm { hidden, .. }
        | Op::DiagBiLstm { hidden, .. }
        | Op::GatedConv { hidden, .. } => hidden,
        Op::Relu | Op::Add | Op::SkipSum => inputs.first().copied().unwrap_or(0),
        Op::Head { kind } => head_out_channels(kind, image),
    }
}

/// The parameter `name` of a node's descriptors (`params_of`); None when it has none.
pub fn param_named<'a>(params: &'a [ParamSpec], name: &str) -> Option<&'a ParamSpec> {
    params.iter().find(|p| p.name == name)
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
