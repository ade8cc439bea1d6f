//! The spec AST: what a model spec says, with spans, before sizes are evaluated.
//!
//! Both front ends (YAML, DSL) produce this; `fmt` prints it back in either syntax, and the
//! IR builder evaluates its expressions and expands `repeat`, `residual` and blocks.

use crate::diag::Span;

/// A value with the span of the text it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Sp<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Sp<T> {
    pub fn new(node: T, span: Span) -> Sp<T> {
        Sp { node, span }
    }
}

/// Integer size expressions over named parameters: `2*h`, `h/2+1`, `(h+1)*3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Int(i64),
    Param(String),
    Bin(Box<Expr>, BinOp, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> char {
        match self {
            BinOp::Add => '+',
            BinOp::Sub => '-',
            BinOp::Mul => '*',
            BinOp::Div => '/',
        }
    }
    fn precedence(self) -> u8 {
        match self {
            BinOp::Add | BinOp::Sub => 1,
            BinOp::Mul | BinOp::Div => 2,
        }
    }
}

impl std::fmt::Display for Expr {
    /// Canonical text: no spaces, parentheses only where precedence needs them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn go(
            e: &Expr,
            parent: u8,
            right: bool,
            f: &mut std::fmt::Formatter<'_>,
        ) -> std::fmt::Result {
            match e {
                Expr::Int(v) => write!(f, "{v}"),
                Expr::Param(p) => write!(f, "{p}"),
                Expr::Bin(a, op, b) => {
                    let p = op.precedence();
                    let paren = p < parent || (right && p == parent);
                    if paren {
                        write!(f, "(")?;
                    }
                    go(a, p, false, f)?;
                    write!(f, "{}", op.symbol())?;
                    go(b, p, true, f)?;
                    if paren {
                        write!(f, ")")?;
                    }
                    Ok(())
                }
            }
        }
        go(self, 0, false, f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// First layer: a colour group never sees itself at the centre pixel.
    A,
    /// Later layers: a group also sees itself at the centre.
    B,
    /// IR only (a spec cannot write it): every tap of the rows above the centre, none of
    /// the centre row. A gated PixelCNN's vertical stack where it starts, reading a map
    /// whose pixels may see the rest of their own row.
    Above,
    /// IR only: every tap of the rows above and of the centre row, right of the centre
    /// too. Sound only on a map that sees nothing of its own row (a vertical stack
    /// continued); the causality pass proves each use.
    AboveRow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    /// One logit per sub-pixel, for binary images (levels = 2).
    Bernoulli,
    /// `levels` logits per sub-pixel, a softmax per colour.
    Softmax,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub h: Expr,
    pub w: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub kind: LayerKind,
    /// The whole layer's text, for diagnostics naming it.
    pub span: Span,
    /// Route this layer's output to the output through a learned 1x1 conv (`skip_sum`).
    pub skip: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LayerKind {
    /// Masked convolution; `mask` defaults to B.
    Conv {
        out: Sp<Expr>,
        kernel: Sp<Kernel>,
        mask: Mask,
    },
    /// Row LSTM with a 1 x `kernel` mask-B input-to-state convolution (default 3).
    RowLstm {
        hidden: Sp<Expr>,
        kernel: Sp<Expr>,
    },
    /// Diagonal BiLSTM. `shift: false` omits the right-to-left shift-down: it leaks, and is
    /// only useful to demonstrate that the causality pass catches it. `full_context: true`
    /// also feeds the image's row to the right-to-left direction (docs/semantics.md), which
    /// closes the paper's layer's one gap: the last pixel of the row above.
    DiagBiLstm {
        hidden: Sp<Expr>,
        shift: bool,
        full_context: bool,
    },
    /// PixelCNN residual block: ReLU-1x1 (2h->h), ReLU-3x3 (h), ReLU-1x1 (h->2h), add.
    PixelCnnBlock {
        hidden: Sp<Expr>,
    },
    /// Gated PixelCNN layer (van den Oord et al. 2016, "Conditional Image Generation with
    /// PixelCNN Decoders"): a vertical stack (k x k over the rows above) and a horizontal
    /// stack (1 x k along the row, `mask`), each gated `tanh(a) * sigmoid(b)`, the vertical
    /// stack feeding the horizontal one through a 1x1 link, then a 1x1 conv and, with mask
    /// B, a residual add. Consecutive layers share one vertical stack.
    GatedPixelCnn {
        hidden: Sp<Expr>,
        kernel: Sp<Expr>,
        mask: Mask,
    },
    Relu,
    /// `body` whose output is added to its input (shapes must match).
    Residual {
        body: Vec<Layer>,
    },
    Repeat {
        count: Sp<Expr>,
        body: Vec<Layer>,
    },
    /// Adds the learned 1x1 projections of all earlier `skip` outputs to the stream.
    SkipSum,
    /// The output layer: a 1x1 mask-B conv to logits, then the likelihood.
    Head {
        kind: Sp<HeadKind>,
    },
}

impl LayerKind {
    pub fn name(&self) -> &'static str {
        match self {
            LayerKind::Conv { .. } => "conv",
            LayerKind::RowLstm { .. } => "row_lstm",
            LayerKind::DiagBiLstm { .. } => "diag_bilstm",
            LayerKind::PixelCnnBlock { .. } => "pixelcnn_block",
            LayerKind::GatedPixelCnn { .. } => "gated_pixelcnn",
            LayerKind::Relu => "relu",
            LayerKind::Residual { .. } => "residual",
            LayerKind::Repeat { .. } => "repeat",
            LayerKind::SkipSum => "skip_sum",
            LayerKind::Head { .. } => "head",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Sp<String>,
    pub value: Sp<Expr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub channels: Sp<Expr>,
    pub height: Sp<Expr>,
    pub width: Sp<Expr>,
    pub levels: Sp<Expr>,
    /// Class-conditional models: the number of classes a label may name (`classes: 10`).
    pub classes: Option<Sp<Expr>>,
    /// Low-res conditional models: the subsampling factor of the given low-res image
    /// (`low_res: 2`), and the channels of its upsampled map (`low_res_maps: 16`).
    pub low_res: Option<Sp<Expr>>,
    pub low_res_maps: Option<Sp<Expr>>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    RmsProp,
    Adam,
}

impl Optimizer {
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::RmsProp => "rmsprop",
            Optimizer::Adam => "adam",
        }
    }
}

/// How the learning rate moves over a run (`train: schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleKind {
    /// `lr` at every step (after any warm-up).
    Constant,
    /// `lr * decay_rate^(steps / decay_steps)`, floored at `min_lr`.
    Exponential,
    /// Half a cosine from `lr` down to `min_lr`, reached at step `decay_steps`.
    Cosine,
}

impl ScheduleKind {
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Exponential => "exponential",
            ScheduleKind::Cosine => "cosine",
        }
    }
}

/// The learning-rate schedule: the lr of every step is a pure function of the step
/// (`train::schedule`), so a resumed run uses exactly the rates of an uninterrupted one.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    /// Linear warm-up: step t (0-based) of the first `warmup_steps` uses `lr * (t+1) / warmup_steps`.
    pub warmup_steps: u64,
    /// Exponential: the factor per `decay_steps` steps, in (0, 1].
    pub decay_rate: Option<f64>,
    /// Exponential: steps per `decay_rate` factor (default: one epoch). Cosine: the step
    /// at which the lr reaches `min_lr`, warm-up included (default: the run's planned
    /// steps). `pixc train` writes the resolved number into the run's spec.yaml.
    pub decay_steps: Option<u64>,
    /// The floor of a decaying schedule.
    pub min_lr: f64,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            kind: ScheduleKind::Constant,
            warmup_steps: 0,
            decay_rate: None,
            decay_steps: None,
            min_lr: 0.0,
        }
    }
}

/// How to train this model; every field has a default so a spec may omit the section.
#[derive(Clone, Debug, PartialEq)]
pub struct Train {
    pub optimizer: Optimizer,
    pub lr: f64,
    /// How `lr` changes over the run; constant by default.
    pub schedule: Schedule,
    pub batch: u64,
    pub epochs: Option<u64>,
    pub steps: Option<u64>,
    /// Gradient-norm clipping; None = no clipping.
    pub clip: Option<f64>,
    pub seed: u64,
    /// Data set name as `pixc::data` understands it, e.g. `mnist-binarized`.
    pub data: String,
    /// Validate (and checkpoint) every this many steps.
    pub valid_every: u64,
    /// Train and score on the data set's strided subsample `x[::f, ::f]` (the small model
    /// of a multi-scale spec); None = the images as they are.
    pub subsample: Option<u64>,
    pub span: Span,
}

impl Default for Train {
    fn default() -> Train {
        Train {
            optimizer: Optimizer::Adam,
            lr: 1e-3,
            schedule: Schedule::default(),
            batch: 16,
            epochs: None,
            steps: None,
            clip: Some(1.0),
            seed: 0,
            data: "mnist-binarized".into(),
            valid_every: 500,
            subsample: None,
            span: Span::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub name: Sp<String>,
    pub params: Vec<Param>,
    pub input: Input,
    pub layers: Vec<Layer>,
    /// A multi-scale spec's small model (`small:`): the unconditional model of the
    /// low-res subsample (`input.low_res`), which `layers` is conditioned on.
    pub small: Option<Sp<Vec<Layer>>>,
    pub train: Option<Train>,
}

impl Spec {
    /// A multi-scale spec's small model as a spec of its own: the `small` layers over the
    /// low-res subsample (`height / factor` x `width / factor`, the same channels, levels
    /// and classes), trained on the data set's subsample (`train.subsample`), named
    /// `<name>_small`. None without `small`.
    pub fn small_spec(&self, factor: usize) -> Option<Spec> {
        let small = self.small.as_ref()?;
        let div = |e: &Sp<Expr>| {
            Sp::new(
                Expr::Bin(
                    Box::new(e.node.clone()),
                    BinOp::Div,
                    Box::new(Expr::Int(factor as i64)),
                ),
                e.span,
            )
        };
        let mut train = self.train.clone().unwrap_or_default();
        train.subsample = Some(factor as u64);
        Some(Spec {
            name: Sp::new(format!("{}_small", self.name.node), self.name.span),
            params: self.params.clone(),
            input: Input {
                height: div(&self.input.height),
                width: div(&self.input.width),
                low_res: None,
                low_res_maps: None,
                ..self.input.clone()
            },
            layers: small.node.clone(),
            small: None,
            train: Some(train),
        })
    }
}
