//! Value tree -> AST: checks keys, types and required fields, with "did you mean" help.
//!
//! Shared by both front ends, so YAML and the DSL accept exactly the same specs and give the
//! same diagnostics. Errors are collected, not returned at the first one.

use super::ast::*;
use super::tree::{Key, Node, Value};
use crate::diag::{did_you_mean, Diagnostic, Span};
use nom::branch::alt;
use nom::bytes::complete::take_while1;
use nom::character::complete::{char, digit1, space0};
use nom::sequence::delimited;
use nom::{IResult, Parser};

pub const LAYER_TYPES: &[&str] = &[
    "conv",
    "row_lstm",
    "diag_bilstm",
    "pixelcnn_block",
    "gated_pixelcnn",
    "relu",
    "residual",
    "repeat",
    "skip_sum",
    "head",
];
/// What a key holds: how the builder reads it, and its type in the JSON Schema
/// (`front::schema`, `pixc schema`), which is generated from the tables below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A model name: letters, digits, `_`, `-`, `.`.
    ModelName,
    /// `params`: names mapped to sizes.
    Params,
    /// `input`: the `INPUT_KEYS` mapping.
    Input,
    /// A list of layers (`layers`, a `body`).
    Layers,
    /// `train`: the `TRAIN_KEYS` mapping.
    Train,
    /// An integer or an integer expression over `params` (`16`, `2*h`, `h/2`).
    Size,
    /// A kernel: a size (square), `KHxKW`, or `[KH, KW]`.
    Kernel,
    /// A conv mask: `A` or `B`.
    Mask,
    /// `true` or `false` (`yes` / `no` also read).
    Bool,
    /// A positive number.
    PositiveFloat,
    /// A positive number, or `none` for no clipping.
    Clip,
    /// A number >= 0.
    NonNegativeFloat,
    /// A number in (0, 1].
    Fraction,
    /// One of `SCHEDULES`.
    Schedule,
    /// An integer at least this large.
    Count(u64),
    /// One of `OPTIMIZERS`.
    Optimizer,
    /// A data set name (`pixc::data`).
    DataSet,
    /// One of `HEAD_KINDS`.
    HeadKind,
}

/// One key a spec mapping may hold: the builder's list of allowed keys and the schema.
#[derive(Clone, Copy, Debug)]
pub struct KeyDef {
    pub name: &'static str,
    pub kind: KeyKind,
    pub required: bool,
    /// The value the builder uses when the key is absent, as YAML text.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

const fn key(name: &'static str, kind: KeyKind, doc: &'static str) -> KeyDef {
    KeyDef {
        name,
        kind,
        required: false,
        default: None,
        doc,
    }
}

const fn required(name: &'static str, kind: KeyKind, doc: &'static str) -> KeyDef {
    KeyDef {
        required: true,
        ..key(name, kind, doc)
    }
}

const fn defaulted(
    name: &'static str,
    kind: KeyKind,
    default: &'static str,
    doc: &'static str,
) -> KeyDef {
    KeyDef {
        default: Some(default),
        ..key(name, kind, doc)
    }
}

pub const OPTIMIZERS: &[&str] = &["rmsprop", "adam"];
pub const SCHEDULES: &[&str] = &["constant", "exponential", "cosine"];
/// `sigmoid` is read as `bernoulli`.
pub const HEAD_KINDS: &[&str] = &["bernoulli", "softmax", "sigmoid"];
/// Lower case is read too.
pub const MASKS: &[&str] = &["A", "B", "a", "b"];
pub const TRUE_WORDS: &[&str] = &["true", "yes"];
pub const FALSE_WORDS: &[&str] = &["false", "no"];

pub const TOP_KEYS: &[KeyDef] = &[
    defaulted(
        "model",
        KeyKind::ModelName,
        "model",
        "The model's name (letters, digits, `_`, `-`, `.`; at most 128): names runs, files and graphs.",
    ),
    key(
        "params",
        KeyKind::Params,
        "Named integer sizes that size expressions may use, e.g. `h: 16` for `out: 2*h`.",
    ),
    required(
        "input",
        KeyKind::Input,
        "The images: channels (1 or 3), height, width and levels (2 for binary, 256 for 8-bit).",
    ),
    required(
        "layers",
        KeyKind::Layers,
        "The layers in order, from a mask-A conv to a `head`.",
    ),
    key(
        "small",
        KeyKind::Layers,
        "A multi-scale model: the layers of the unconditional model of the low-res subsample (needs `input.low_res`); `layers` is then its conditional model of the rest, and `pixc train` trains both.",
    ),
    key(
        "train",
        KeyKind::Train,
        "Training settings for `pixc train` (command-line flags override them).",
    ),
];

pub const INPUT_KEYS: &[KeyDef] = &[
    required(
        "channels",
        KeyKind::Size,
        "Colour channels: 1 (grey) or 3 (RGB; every feature map is then split into R, G, B groups: channel c of n is in group floor(3c/n), at least 3 channels).",
    ),
    required("height", KeyKind::Size, "Image height in pixels."),
    required("width", KeyKind::Size, "Image width in pixels."),
    required(
        "levels",
        KeyKind::Size,
        "Values per sub-pixel: 2 (binary, `head: bernoulli`) or 256 (`head: softmax`).",
    ),
    key(
        "classes",
        KeyKind::Size,
        "A class-conditional model: the number of classes (2 or more) a label names; every LSTM layer adds a learned per-class vector to its input-to-state map, and training, scoring and sampling take a label per image.",
    ),
    key(
        "low_res",
        KeyKind::Size,
        "A low-res conditional model: the image's strided subsample `x[::f, ::f]` (f = this factor, 2 or more, dividing height and width) is given, upsampled by a transposed conv and added through a 1x1 conv to every LSTM's input-to-state map and every gated conv's gates; its pixels are context, neither scored nor drawn.",
    ),
    key(
        "low_res_maps",
        KeyKind::Size,
        "Channels of the upsampled low-res map (default 16); needs `low_res`.",
    ),
];

pub const TRAIN_KEYS: &[KeyDef] = &[
    defaulted(
        "optimizer",
        KeyKind::Optimizer,
        "adam",
        "`rmsprop` (the paper's) or `adam`.",
    ),
    defaulted("lr", KeyKind::PositiveFloat, "0.001", "Learning rate."),
    defaulted(
        "schedule",
        KeyKind::Schedule,
        "constant",
        "Learning-rate schedule: `constant`, `exponential` (`lr * decay_rate^(step / decay_steps)`) or `cosine` (half a cosine from `lr` to `min_lr` at step `decay_steps`).",
    ),
    defaulted(
        "warmup_steps",
        KeyKind::Count(0),
        "0",
        "Raise the learning rate linearly from `lr / warmup_steps` to `lr` over this many first steps; the decay starts after them.",
    ),
    key(
        "decay_rate",
        KeyKind::Fraction,
        "`schedule: exponential` (required there): the factor, in (0, 1], the learning rate is multiplied by every `decay_steps` steps.",
    ),
    key(
        "decay_steps",
        KeyKind::Count(1),
        "Exponential: steps per `decay_rate` factor (default: one epoch). Cosine: the step, warm-up included, at which the learning rate reaches `min_lr` (default: the run's planned steps). `pixc train` writes the resolved number into the run's spec.yaml.",
    ),
    defaulted(
        "min_lr",
        KeyKind::NonNegativeFloat,
        "0.0",
        "The floor of an `exponential` or `cosine` schedule; below `lr`.",
    ),
    defaulted("batch", KeyKind::Count(1), "16", "Images per training step."),
    key(
        "epochs",
        KeyKind::Count(1),
        "Train this many passes over the training split.",
    ),
    key(
        "steps",
        KeyKind::Count(1),
        "Train this many optimizer steps in total.",
    ),
    defaulted(
        "clip",
        KeyKind::Clip,
        "1.0",
        "Clip the gradient's norm to this; `none` turns clipping off.",
    ),
    defaulted(
        "seed",
        KeyKind::Count(0),
        "0",
        "Seed for the initial weights and the data order.",
    ),
    defaulted(
        "data",
        KeyKind::DataSet,
        "mnist-binarized",
        "Data set: `mnist-binarized`, `mnist-binarized-dynamic`, `mnist-256`, `fashion-mnist-256`, `fashion-mnist-binarized`, `cifar10:DIR` or `png:DIR`.",
    ),
    defaulted(
        "valid_every",
        KeyKind::Count(1),
        "500",
        "Validate (and checkpoint) every this many steps.",
    ),
    key(
        "subsample",
        KeyKind::Count(2),
        "Train and score on the data set's strided subsample x[::f, ::f] (f = this, 2 or more): what the small model of a multi-scale spec is trained on.",
    ),
];

const SKIP: KeyDef = defaulted(
    "skip",
    KeyKind::Bool,
    "false",
    "Also feed this layer's output to `skip_sum` (a learned 1x1 projection added to the stream).",
);
const BODY: KeyDef = required("body", KeyKind::Layers, "The layers inside, in order.");

/// A layer type: its keys and what it does.
#[derive(Clone, Copy, Debug)]
pub struct LayerDef {
    pub name: &'static str,
    pub keys: &'static [KeyDef],
    pub doc: &'static str,
}

pub const LAYERS: &[LayerDef] = &[
    LayerDef {
        name: "conv",
        keys: &[
            required("out", KeyKind::Size, "Output channels."),
            required(
                "kernel",
                KeyKind::Kernel,
                "Kernel size: `7`, `1x3` or `[1, 3]`; odd sizes only.",
            ),
            defaulted(
                "mask",
                KeyKind::Mask,
                "B",
                "`A` on the first layer (a pixel does not see itself), `B` after it.",
            ),
            SKIP,
        ],
        doc: "Masked convolution.",
    },
    LayerDef {
        name: "row_lstm",
        keys: &[
            required("hidden", KeyKind::Size, "Hidden state channels (h)."),
            defaulted(
                "kernel",
                KeyKind::Size,
                "3",
                "Width k >= 3 of the input-to-state and state-to-state convolutions.",
            ),
            SKIP,
        ],
        doc: "Row LSTM: one row at a time, with a triangular receptive field.",
    },
    LayerDef {
        name: "diag_bilstm",
        keys: &[
            required("hidden", KeyKind::Size, "Hidden state channels (h) per direction."),
            defaulted(
                "shift",
                KeyKind::Bool,
                "true",
                "Shift the right-to-left direction down one row; `false` makes the model see the future (pixc check rejects it).",
            ),
            defaulted(
                "full_context",
                KeyKind::Bool,
                "false",
                "Also feed the image's current row, all of it, to the right-to-left direction (its output is shifted down a row, so that row is past): every output then sees its whole context, the last pixel of the row above included, which the paper's layer misses. Adds a 1x1 weight from the image.",
            ),
            SKIP,
        ],
        doc: "Diagonal BiLSTM: two directions along the diagonals, the whole context.",
    },
    LayerDef {
        name: "pixelcnn_block",
        keys: &[
            required("hidden", KeyKind::Size, "Channels of the inner 3x3 conv (h)."),
            SKIP,
        ],
        doc: "PixelCNN residual block: ReLU-1x1, ReLU-3x3, ReLU-1x1 with a residual add.",
    },
    LayerDef {
        name: "gated_pixelcnn",
        keys: &[
            required("hidden", KeyKind::Size, "Channels of both stacks (h); with mask B also the input's, for the residual add."),
            defaulted(
                "kernel",
                KeyKind::Size,
                "3",
                "Odd width k: the vertical stack's k x k kernel over the rows above, the horizontal stack's 1 x k along the row.",
            ),
            defaulted(
                "mask",
                KeyKind::Mask,
                "B",
                "`A` on the first layer (reads the image; no residual add), `B` after it.",
            ),
            SKIP,
        ],
        doc: "Gated PixelCNN layer: vertical and horizontal stacks with tanh x sigmoid gates, no blind spot; consecutive layers share the vertical stack.",
    },
    LayerDef {
        name: "relu",
        keys: &[SKIP],
        doc: "ReLU.",
    },
    LayerDef {
        name: "residual",
        keys: &[BODY, SKIP],
        doc: "Adds its input to its body's output (`residual: [...]` is short for `residual: {body: [...]}`).",
    },
    LayerDef {
        name: "repeat",
        keys: &[
            required("count", KeyKind::Size, "How many copies of the body."),
            BODY,
        ],
        doc: "Its body, `count` times in a row.",
    },
    LayerDef {
        name: "skip_sum",
        keys: &[SKIP],
        doc: "Adds the learned 1x1 projections of every `skip: true` layer's output to the stream.",
    },
    LayerDef {
        name: "head",
        keys: &[required(
            "kind",
            KeyKind::HeadKind,
            "`bernoulli` (binary images) or `softmax` (a `levels`-way softmax per colour).",
        )],
        doc: "The output layer: `head: bernoulli` or `head: softmax`.",
    },
];

fn names(defs: &[KeyDef]) -> Vec<&'static str> {
    defs.iter().map(|k| k.name).collect()
}

struct Ctx {
    errors: Vec<Diagnostic>,
}

/// Builds the AST from a parsed tree. All problems found are returned together.
pub fn build(root: &Node) -> Result<Spec, Vec<Diagnostic>> {
    let mut cx = Ctx { errors: Vec::new() };
    let spec = cx.spec(root);
    match spec {
        Some(s) if cx.errors.is_empty() => Ok(s),
        _ => Err(cx.errors),
    }
}

fn unknown_key(key: &Key, what: &str, allowed: &[&str]) -> Diagnostic {
    let d = Diagnostic::new(key.span, format!("unknown key `{}` in {what}", key.name))
        .label("unknown key");
    match did_you_mean(&key.name, allowed) {
        Some(s) => d.help(format!("did you mean `{s}`?")),
        None => d.help(format!("{what} takes: {}", allowed.join(", "))),
    }
}

/// A layer's arguments: its type key, the mapping, and the scalar given in place of the
/// positional argument (`repeat: 3`, `head: softmax`).
struct Args<'a> {
    tkey: &'a Key,
    map: &'a [(Key, Node)],
    positional: Option<&'static str>,
    scalar: Option<&'a Node>,
}

impl<'a> Args<'a> {
    fn get(&self, name: &str) -> Option<&'a Node> {
        if Some(name) == self.positional && self.scalar.is_some() {
            return self.scalar;
        }
        self.map
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }
}

impl Ctx {
    fn err(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    fn map<'a>(&mut self, node: &'a Node, what: &str, example: &str) -> Option<&'a [(Key, Node)]> {
        match &node.value {
            Value::Map(m) => Some(m),
            _ => {
                self.err(
                    Diagnostic::new(
                        node.span,
                        format!("{what} must be a mapping, found {}", node.kind_name()),
                    )
                    .label("expected `key: value` pairs")
                    .help(format!("for example: {example}")),
                );
                None
            }
        }
    }

    /// Rejects keys not in `allowed`; returns a lookup closure's data.
    fn check_keys(&mut self, entries: &[(Key, Node)], what: &str, allowed: &[&str]) {
        for (k, _) in entries {
            if !allowed.contains(&k.name.as_str()) {
                self.err(unknown_key(k, what, allowed));
            }
        }
    }

    fn spec(&mut self, root: &Node) -> Option<Spec> {
        let entries = self.map(
            root,
            "a spec",
            "`input: {channels: 1, height: 28, width: 28, levels: 2}` and `layers: [...]`",
        )?;
        self.check_keys(entries, "a spec", &names(TOP_KEYS));
        let get = |name: &str| entries.iter().find(|(k, _)| k.name == name);

        let name = match get("model") {
            Some((_, n)) => {
                let s = self.string(n, "model")?;
                if let Some(help) = super::flags::model_name_problem(&s.node) {
                    self.err(
                        Diagnostic::new(n.span, format!("`{}` is not a valid model name", s.node))
                            .label("bad name")
                            .help(help),
                    );
                }
                s
            }
            None => Sp::new("model".to_string(), Span::new(0, 0)),
        };
        let mut params = Vec::new();
        if let Some((_, pn)) = get("params") {
            if let Some(m) = self.map(pn, "`params`", "`params: {h: 16}`") {
                for (k, v) in m {
                    if !is_ident(&k.name) {
                        self.err(
                            Diagnostic::new(k.span, format!("`{}` is not a valid parameter name", k.name))
                                .label("bad name")
                                .help("parameter names are letters, digits and `_`, starting with a letter"),
                        );
                        continue;
                    }
                    if let Some(e) = self.expr(v, "a parameter value") {
                        params.push(Param {
                            name: Sp::new(k.name.clone(), k.span),
                            value: e,
                        });
                    }
                }
            }
        }
        let input = match get("input") {
            Some((_, n)) => self.input(n),
            None => {
                self.err(
                    Diagnostic::new(Span::new(0, 0), "the spec has no `input`")
                        .label("missing")
                        .help("add `input: {channels: 1, height: 28, width: 28, levels: 2}`"),
                );
                None
            }
        };
        let layers = match get("layers") {
            Some((_, n)) => self.layers(n, 0),
            None => {
                self.err(
                    Diagnostic::new(Span::new(0, 0), "the spec has no `layers`")
                        .label("missing")
                        .help("add a `layers:` list, from a mask-A conv to a `head`"),
                );
                None
            }
        };
        let small = match get("small") {
            Some((_, n)) => Some(Sp::new(self.layers(n, 0)?, n.span)),
            None => None,
        };
        let train = match get("train") {
            Some((_, n)) => self.train(n),
            None => None,
        };
        Some(Spec {
            name,
            params,
            input: input?,
            layers: layers?,
            small,
            train,
        })
    }

    fn input(&mut self, node: &Node) -> Option<Input> {
        let m = self.map(
            node,
            "`input`",
            "`input: {channels: 1, height: 28, width: 28, levels: 2}`",
        )?;
        self.check_keys(m, "`input`", &names(INPUT_KEYS));
        let field = |cx: &mut Ctx, name: &str| -> Option<Sp<Expr>> {
            match m.iter().find(|(k, _)| k.name == name) {
                Some((_, v)) => cx.expr(v, name),
                None => {
                    cx.err(
                        Diagnostic::new(node.span, format!("`input` is missing `{name}`"))
                            .label("incomplete input")
                            .help("`input` needs channels (1 or 3), height, width and levels (2 or 256)"),
                    );
                    None
                }
            }
        };
        let channels = field(self, "channels");
        let height = field(self, "height");
        let width = field(self, "width");
        let levels = field(self, "levels");
        let mut optional = |name: &str| -> Option<Option<Sp<Expr>>> {
            match m.iter().find(|(k, _)| k.name == name) {
                Some((_, v)) => Some(Some(self.expr(v, name)?)),
                None => Some(None),
            }
        };
        let classes = optional("classes")?;
        let low_res = optional("low_res")?;
        let low_res_maps = optional("low_res_maps")?;
        Some(Input {
            channels: channels?,
            height: height?,
            width: width?,
            levels: levels?,
            classes,
            low_res,
            low_res_maps,
            span: node.span,
        })
    }

    fn train(&mut self, node: &Node) -> Option<Train> {
        let m = self.map(
            node,
            "`train`",
            "`train: {optimizer: rmsprop, lr: 0.001, batch: 16, epochs: 10}`",
        )?;
        self.check_keys(m, "`train`", &names(TRAIN_KEYS));
        let mut t = Train {
            span: node.span,
            ..Train::default()
        };
        // Spans of the schedule's keys, for the checks across keys below.
        let mut sched_spans: Vec<(&str, Span)> = Vec::new();
        for (k, v) in m {
            match k.name.as_str() {
                "optimizer" => {
                    if let Some(s) = self.string(v, "optimizer") {
                        match s.node.as_str() {
                            "rmsprop" => t.optimizer = Optimizer::RmsProp,
                            "adam" => t.optimizer = Optimizer::Adam,
                            other => {
                                let d =
                                    Diagnostic::new(v.span, format!("unknown optimizer `{other}`"))
                                        .label("not an optimizer");
                                self.err(match did_you_mean(other, OPTIMIZERS) {
                                    Some(s) => d.help(format!("did you mean `{s}`?")),
                                    None => d.help("use `rmsprop` (the paper's) or `adam`"),
                                });
                            }
                        }
                    }
                }
                "lr" => {
                    if let Some(x) = self.positive_float(v, "lr") {
                        t.lr = x;
                    }
                }
                "schedule" => {
                    sched_spans.push(("schedule", v.span));
                    if let Some(s) = self.string(v, "schedule") {
                        match s.node.as_str() {
                            "constant" => t.schedule.kind = ScheduleKind::Constant,
                            "exponential" => t.schedule.kind = ScheduleKind::Exponential,
                            "cosine" => t.schedule.kind = ScheduleKind::Cosine,
                            other => {
                                let d =
                                    Diagnostic::new(v.span, format!("unknown schedule `{other}`"))
                                        .label("not a schedule");
                                self.err(match did_you_mean(other, SCHEDULES) {
                                    Some(s) => d.help(format!("did you mean `{s}`?")),
                                    None => d.help("use `constant`, `exponential` or `cosine`"),
                                });
                            }
                        }
                    }
                }
                "warmup_steps" => {
                    t.schedule.warmup_steps = self.uint(v, "warmup_steps", 0).unwrap_or(0)
                }
                "decay_rate" => {
                    sched_spans.push(("decay_rate", v.span));
                    t.schedule.decay_rate = self.fraction(v, "decay_rate");
                }
                "decay_steps" => {
                    sched_spans.push(("decay_steps", v.span));
                    t.schedule.decay_steps = self.uint(v, "decay_steps", 1);
                }
                "min_lr" => {
                    sched_spans.push(("min_lr", v.span));
                    if let Some(x) = self.non_negative_float(v, "min_lr") {
                        t.schedule.min_lr = x;
                    }
                }
                "clip" => {
                    if matches!(&v.value, Value::Scalar(s) if s == "none" || s == "false") {
                        t.clip = None;
                    } else if let Some(x) = self.positive_float(v, "clip") {
                        t.clip = Some(x);
                    }
                }
                "batch" => t.batch = self.uint(v, "batch", 1).unwrap_or(t.batch),
                "epochs" => t.epochs = self.uint(v, "epochs", 1),
                "steps" => t.steps = self.uint(v, "steps", 1),
                "seed" => t.seed = self.uint(v, "seed", 0).unwrap_or(0),
                "valid_every" => {
                    t.valid_every = self.uint(v, "valid_every", 1).unwrap_or(t.valid_every)
                }
                "subsample" => t.subsample = self.uint(v, "subsample", 2),
                "data" => {
                    if let Some(s) = self.string(v, "data") {
                        match super::flags::data_set(&s.node) {
                            Ok(_) => t.data = s.node,
                            Err((message, help)) => self.err(
                                Diagnostic::new(v.span, message)
                                    .label("not a data set")
                                    .help(help),
                            ),
                        }
                    }
                }
                _ => {}
            }
        }
        if t.steps.is_some() && t.epochs.is_some() {
            let at = m
                .iter()
                .find(|(k, _)| k.name == "epochs")
                .map(|(k, _)| k.span)
                .unwrap_or(node.span);
            self.err(
                Diagnostic::new(at, "`steps` and `epochs` both set")
                    .label("second limit")
                    .help("keep one: `steps` counts optimizer steps, `epochs` passes over the training set"),
            );
        }
        self.check_schedule(&t, &sched_spans);
        Some(t)
    }

    /// The schedule's keys must fit together: each key means something for the chosen
    /// kind, an exponential decay has a rate, the floor is below `lr`, and a cosine
    /// decays after its warm-up.
    fn check_schedule(&mut self, t: &Train, spans: &[(&str, Span)]) {
        let s = &t.schedule;
        let at = |name: &str| spans.iter().find(|(n, _)| *n == name).map(|(_, sp)| *sp);
        let kind = s.kind.name();
        let unused: &[&str] = match s.kind {
            ScheduleKind::Constant => &["decay_rate", "decay_steps", "min_lr"],
            ScheduleKind::Exponential => &[],
            ScheduleKind::Cosine => &["decay_rate"],
        };
        for name in unused {
            // `min_lr: 0` (its default) written out is harmless.
            if *name == "min_lr" && s.min_lr == 0.0 {
                continue;
            }
            if let Some(sp) = at(name) {
                self.err(
                    Diagnostic::new(sp, format!("`{name}` has no effect with `schedule: {kind}`"))
                        .label("unused")
                        .help(match s.kind {
                            ScheduleKind::Cosine => "a cosine schedule decays to `min_lr` at step `decay_steps`; remove `decay_rate`",
                            _ => "set `schedule: exponential` or `schedule: cosine`, or remove the key",
                        }),
                );
            }
        }
        if s.kind == ScheduleKind::Exponential
            && s.decay_rate.is_none()
            && at("decay_rate").is_none()
        {
            self.err(
                Diagnostic::new(at("schedule").unwrap_or(t.span), "`schedule: exponential` needs `decay_rate`")
                    .label("no decay rate")
                    .help("for example `decay_rate: 0.5` halves the learning rate every `decay_steps` steps (default: every epoch)"),
            );
        }
        if s.kind != ScheduleKind::Constant && s.min_lr >= t.lr {
            if let Some(sp) = at("min_lr") {
                self.err(
                    Diagnostic::new(
                        sp,
                        format!("`min_lr` ({}) must be below `lr` ({})", s.min_lr, t.lr),
                    )
                    .label("not below lr")
                    .help("the schedule decays from `lr` down to `min_lr`"),
                );
            }
        }
        if let (ScheduleKind::Cosine, Some(n)) = (s.kind, s.decay_steps) {
            if n <= s.warmup_steps {
                self.err(
                    Diagnostic::new(
                        at("decay_steps").unwrap_or(t.span),
                        format!(
                            "`decay_steps` ({n}) must be more than `warmup_steps` ({})",
                            s.warmup_steps
                        ),
                    )
                    .label("ends before the warm-up does")
                    .help("the cosine decays from the end of the warm-up to step `decay_steps`"),
                );
            }
        }
    }

    fn layers(&mut self, node: &Node, depth: usize) -> Option<Vec<Layer>> {
        let items = match &node.value {
            Value::Seq(items) => items,
            _ => {
                self.err(
                    Diagnostic::new(
                        node.span,
                        format!("layers must be a list, found {}", node.kind_name()),
                    )
                    .label("expected a list")
                    .help("write one `- layer: {...}` per line"),
                );
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for it in items {
            match self.layer(it, depth) {
                Some(l) => out.push(l),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn layer(&mut self, node: &Node, depth: usize) -> Option<Layer> {
        let (tkey, args) = self.layer_type(node)?;
        let ty = tkey.name.as_str();
        if !LAYER_TYPES.contains(&ty) {
            let d = Diagnostic::new(tkey.span, format!("unknown layer type `{ty}`"))
                .label("unknown layer");
            self.err(match did_you_mean(ty, LAYER_TYPES) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("layer types: {}", LAYER_TYPES.join(", "))),
            });
            return None;
        }
        // Normalise arguments: none, a scalar (the positional argument) or a mapping.
        let positional = super::dsl::positional_key(ty);
        let empty: Vec<(Key, Node)> = Vec::new();
        let mut scalar_arg: Option<&Node> = None;
        let args_map: &[(Key, Node)] = match args {
            None => &empty,
            Some(n) => match &n.value {
                Value::Null => &empty,
                Value::Map(m) => m,
                Value::Scalar(_) if positional.is_some() => {
                    scalar_arg = Some(n);
                    &empty
                }
                Value::Seq(_) if ty == "residual" => {
                    // `residual: [...]` shorthand for `residual: {body: [...]}`.
                    let body = self.layers_nested(n, depth)?;
                    return Some(Layer {
                        kind: LayerKind::Residual { body },
                        span: node.span,
                        skip: false,
                    });
                }
                _ => {
                    self.err(
                        Diagnostic::new(
                            n.span,
                            format!(
                                "`{ty}` takes a mapping of arguments, found {}",
                                n.kind_name()
                            ),
                        )
                        .label("expected `{key: value}`")
                        .help(layer_example(ty)),
                    );
                    return None;
                }
            },
        };
        let allowed = names(layer_keys(ty));
        for (k, _) in args_map {
            if !allowed.contains(&k.name.as_str()) {
                self.err(unknown_key(k, &format!("`{ty}`"), &allowed));
            }
        }
        let args = Args {
            tkey: &tkey,
            map: args_map,
            positional,
            scalar: scalar_arg,
        };
        let skip = match args.get("skip") {
            Some(v) => self.boolean(v, "skip")?,
            None => false,
        };
        let kind = self.layer_kind(&args, depth)?;
        Some(Layer {
            kind,
            span: node.span,
            skip,
        })
    }

    /// A layer item's type key and its arguments: `- relu` (a bare name) or
    /// `- conv: {...}` (one key: the layer type).
    fn layer_type<'n>(&mut self, node: &'n Node) -> Option<(Key, Option<&'n Node>)> {
        match &node.value {
            Value::Scalar(s) => Some((
                Key {
                    name: s.clone(),
                    span: node.span,
                },
                None,
            )),
            Value::Map(m) if m.len() == 1 => Some((m[0].0.clone(), Some(&m[0].1))),
            Value::Map(m) if m.len() > 1 => {
                let names: Vec<&str> = m.iter().map(|(k, _)| k.name.as_str()).collect();
                let hint = if names.iter().any(|n| LAYER_TYPES.contains(n)) {
                    "indent the layer's arguments under its type, e.g. `- conv: {out: 32, kernel: 1}`"
                } else {
                    "each list item is one layer: `- TYPE: {arguments}`"
                };
                self.err(
                    Diagnostic::new(
                        m[1].0.span,
                        format!("a layer has one type, found keys {}", names.join(", ")),
                    )
                    .label("second key")
                    .help(hint),
                );
                None
            }
            _ => {
                self.err(
                    Diagnostic::new(
                        node.span,
                        format!("expected a layer, found {}", node.kind_name()),
                    )
                    .label("not a layer")
                    .help(format!("a layer is one of: {}", LAYER_TYPES.join(", "))),
                );
                None
            }
        }
    }

    /// A required size argument of the layer, or an error naming it.
    fn required(&mut self, args: &Args<'_>, name: &str) -> Option<Sp<Expr>> {
        let ty = args.tkey.name.as_str();
        match args.get(name) {
            Some(v) => self.expr(v, name),
            None => {
                self.err(
                    Diagnostic::new(args.tkey.span, format!("`{ty}` needs `{name}`"))
                        .label(format!("missing `{name}`"))
                        .help(layer_example(ty)),
                );
                None
            }
        }
    }

    /// The `body` of a `residual` or `repeat`, or an error naming it.
    fn body(&mut self, args: &Args<'_>, depth: usize) -> Option<Vec<Layer>> {
        let ty = args.tkey.name.as_str();
        match args.get("body") {
            Some(b) => self.layers_nested(b, depth),
            None => {
                self.err(
                    Diagnostic::new(args.tkey.span, format!("`{ty}` needs a `body`"))
                        .label("missing `body`")
                        .help(layer_example(ty)),
                );
                None
            }
        }
    }

    /// The layer's kind from its (known) type and arguments.
    fn layer_kind(&mut self, args: &Args<'_>, depth: usize) -> Option<LayerKind> {
        let tkey = args.tkey;
        let ty = tkey.name.as_str();
        let arg = |name: &str| args.get(name);
        let kind = match ty {
            "conv" => {
                let out = self.required(args, "out");
                let kernel = match arg("kernel") {
                    Some(v) => self.kernel(v),
                    None => {
                        self.err(
                            Diagnostic::new(tkey.span, "`conv` needs `kernel`")
                                .label("missing `kernel`")
                                .help(layer_example(ty)),
                        );
                        None
                    }
                };
                let mask = match arg("mask") {
                    Some(v) => self.mask(v)?,
                    None => Mask::B,
                };
                LayerKind::Conv {
                    out: out?,
                    kernel: kernel?,
                    mask,
                }
            }
            "row_lstm" => {
                let hidden = self.required(args, "hidden");
                let kernel = match arg("kernel") {
                    Some(v) => self.expr(v, "kernel"),
                    None => Some(Sp::new(Expr::Int(3), tkey.span)),
                };
                LayerKind::RowLstm {
                    hidden: hidden?,
                    kernel: kernel?,
                }
            }
            "diag_bilstm" => {
                let hidden = self.required(args, "hidden");
                let shift = match arg("shift") {
                    Some(v) => self.boolean(v, "shift")?,
                    None => true,
                };
                let full_context = match arg("full_context") {
                    Some(v) => self.boolean(v, "full_context")?,
                    None => false,
                };
                LayerKind::DiagBiLstm {
                    hidden: hidden?,
                    shift,
                    full_context,
                }
            }
            "pixelcnn_block" => LayerKind::PixelCnnBlock {
                hidden: self.required(args, "hidden")?,
            },
            "gated_pixelcnn" => {
                let hidden = self.required(args, "hidden");
                let kernel = match arg("kernel") {
                    Some(v) => self.expr(v, "kernel"),
                    None => Some(Sp::new(Expr::Int(3), tkey.span)),
                };
                let mask = match arg("mask") {
                    Some(v) => self.mask(v)?,
                    None => Mask::B,
                };
                LayerKind::GatedPixelCnn {
                    hidden: hidden?,
                    kernel: kernel?,
                    mask,
                }
            }
            "relu" => LayerKind::Relu,
            "skip_sum" => LayerKind::SkipSum,
            "residual" => LayerKind::Residual {
                body: self.body(args, depth)?,
            },
            "repeat" => {
                let count = self.required(args, "count");
                let body = self.body(args, depth);
                LayerKind::Repeat {
                    count: count?,
                    body: body?,
                }
            }
            "head" => {
                let v = match arg("kind") {
                    Some(v) => v,
                    None => {
                        self.err(
                            Diagnostic::new(tkey.span, "`head` needs a kind")
                                .label("missing kind")
                                .help("write `head: bernoulli` (levels 2) or `head: softmax` (levels 256)"),
                        );
                        return None;
                    }
                };
                let s = self.string(v, "head kind")?;
                let kind = match s.node.as_str() {
                    "bernoulli" | "sigmoid" => HeadKind::Bernoulli,
                    "softmax" => HeadKind::Softmax,
                    other => {
                        let d = Diagnostic::new(v.span, format!("unknown head `{other}`"))
                            .label("unknown head");
                        self.err(match did_you_mean(other, &["bernoulli", "softmax"]) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(
                                "use `bernoulli` for binary images or `softmax` for 256 levels",
                            ),
                        });
                        return None;
                    }
                };
                LayerKind::Head {
                    kind: Sp::new(kind, s.span),
                }
            }
            _ => return None,
        };
        Some(kind)
    }

    fn layers_nested(&mut self, node: &Node, depth: usize) -> Option<Vec<Layer>> {
        if depth + 1 > super::tree::MAX_DEPTH {
            self.err(
                Diagnostic::new(node.span, "layers are nested too deeply")
                    .label("too deep")
                    .help("flatten the spec"),
            );
            return None;
        }
        self.layers(node, depth + 1)
    }

    fn scalar_text<'a>(&mut self, node: &'a Node, what: &str) -> Option<&'a str> {
        match &node.value {
            Value::Scalar(s) => Some(s),
            _ => {
                self.err(
                    Diagnostic::new(
                        node.span,
                        format!(
                            "`{what}` must be a single value, found {}",
                            node.kind_name()
                        ),
                    )
                    .label("expected a value"),
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Sp<String>> {
        self.scalar_text(node, what)
            .map(|s| Sp::new(s.to_string(), node.span))
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match self.scalar_text(node, what)? {
            "true" | "yes" => Some(true),
            "false" | "no" => Some(false),
            other => {
                self.err(
                    Diagnostic::new(
                        node.span,
                        format!("`{what}` must be true or false, found `{other}`"),
                    )
                    .label("not a boolean")
                    .help(format!("write `{what}: true` or `{what}: false`")),
                );
                None
            }
        }
    }

    fn positive_float(&mut self, node: &Node, what: &str) -> Option<f64> {
        let s = self.scalar_text(node, what)?;
        match super::flags::positive_float(what, s) {
            Ok(x) => Some(x),
            Err(message) => {
                self.err(
                    Diagnostic::new(node.span, message)
                        .label("not a positive number")
                        .help(format!("for example `{what}: 0.001`")),
                );
                None
            }
        }
    }

    fn non_negative_float(&mut self, node: &Node, what: &str) -> Option<f64> {
        let s = self.scalar_text(node, what)?;
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Some(x),
            _ => {
                self.err(
                    Diagnostic::new(
                        node.span,
                        format!("`{what}` must be a number >= 0, found `{s}`"),
                    )
                    .label("not a number >= 0")
                    .help(format!("for example `{what}: 0.00001`")),
                );
                None
            }
        }
    }

    fn fraction(&mut self, node: &Node, what: &str) -> Option<f64> {
        let s = self.scalar_text(node, what)?;
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 && x <= 1.0 => Some(x),
            _ => {
                self.err(
                    Diagnostic::new(
                        node.span,
                        format!("`{what}` must be a number in (0, 1], found `{s}`"),
                    )
                    .label("not in (0, 1]")
                    .help(format!(
                        "for example `{what}: 0.5` halves the learning rate each time"
                    )),
                );
                None
            }
        }
    }

    fn uint(&mut self, node: &Node, what: &str, min: u64) -> Option<u64> {
        let s = self.scalar_text(node, what)?;
        match super::flags::count(what, s, min) {
            Ok(x) => Some(x),
            Err(message) => {
                self.err(
                    Diagnostic::new(node.span, message)
                        .label("not a valid count")
                        .help(format!(
                            "write a whole number of at least {min}, e.g. `{what}: {}`",
                            min.max(1)
                        )),
                );
                None
            }
        }
    }

    fn mask(&mut self, node: &Node) -> Option<Mask> {
        match self.scalar_text(node, "mask")? {
            "A" | "a" => Some(Mask::A),
            "B" | "b" => Some(Mask::B),
            other => {
                self.err(
                    Diagnostic::new(node.span, format!("unknown mask `{other}`"))
                        .label("not a mask")
                        .help("use `A` on the first layer and `B` everywhere after it"),
                );
                None
            }
        }
    }

    fn kernel(&mut self, node: &Node) -> Option<Sp<Kernel>> {
        // `7`, `"7x7"`, `1x3` or `[1, 3]`.
        if let Value::Seq(items) = &node.value {
            if items.len() != 2 {
                self.err(
                    Diagnostic::new(
                        node.span,
                        format!("a kernel list has 2 sizes, found {}", items.len()),
                    )
                    .label("expected [height, width]")
                    .help("write `kernel: 7`, `kernel: 1x3` or `kernel: [1, 3]`"),
                );
                return None;
            }
            let h = self.expr(&items[0], "kernel height");
            let w = self.expr(&items[1], "kernel width");
            return Some(Sp::new(
                Kernel {
                    h: h?.node,
                    w: w?.node,
                },
                node.span,
            ));
        }
        let s = self.scalar_text(node, "kernel")?;
        let base = node.span.start;
        // A whole expression (which may name a parameter containing `x`) is a square kernel.
        if let Ok(e) = parse_expr(s) {
            return Some(Sp::new(Kernel { h: e.clone(), w: e }, node.span));
        }
        // Otherwise `KHxKW`: the first split at an `x` where both sides are expressions.
        for (i, _) in s.match_indices('x') {
            if let (Ok(h), Ok(w)) = (parse_expr(&s[..i]), parse_expr(&s[i + 1..])) {
                return Some(Sp::new(Kernel { h, w }, node.span));
            }
        }
        let parts: Vec<&str> = s.split('x').collect();
        match parts.as_slice() {
            [one] => {
                let e = self.parse_expr_at(one, base, node.span, "kernel")?;
                Some(Sp::new(Kernel { h: e.clone(), w: e }, node.span))
            }
            [a, b] => {
                let h = self.parse_expr_at(a, base, node.span, "kernel");
                let w = self.parse_expr_at(b, base + a.len() + 1, node.span, "kernel");
                Some(Sp::new(Kernel { h: h?, w: w? }, node.span))
            }
            _ => {
                self.err(
                    Diagnostic::new(node.span, format!("malformed kernel `{s}`"))
                        .label("expected `K` or `KHxKW`")
                        .help("write `kernel: 7` or `kernel: 1x3`"),
                );
                None
            }
        }
    }

    fn expr(&mut self, node: &Node, what: &str) -> Option<Sp<Expr>> {
        let s = self.scalar_text(node, what)?;
        let e = self.parse_expr_at(s, node.span.start, node.span, what)?;
        Some(Sp::new(e, node.span))
    }

    fn parse_expr_at(&mut self, text: &str, base: usize, span: Span, what: &str) -> Option<Expr> {
        match parse_expr(text) {
            Ok(e) => Some(e),
            Err(at) => {
                let at = (base + at).min(span.end.max(base));
                self.err(
                    Diagnostic::new(
                        Span::new(at, at + 1),
                        format!("`{what}` is not a valid size expression: `{text}`"),
                    )
                    .label("unexpected here")
                    .help("sizes are integers or expressions over params, e.g. `16`, `2*h`, `h/2`"),
                );
                None
            }
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// The keys of a layer type (none for an unknown type).
pub fn layer_keys(ty: &str) -> &'static [KeyDef] {
    LAYERS.iter().find(|l| l.name == ty).map_or(&[], |l| l.keys)
}

fn layer_example(ty: &str) -> String {
    match ty {
        "conv" => "for example `- conv: {out: 32, kernel: 7, mask: A}`",
        "row_lstm" => "for example `- row_lstm: {hidden: 16, kernel: 3}`",
        "diag_bilstm" => "for example `- diag_bilstm: {hidden: 16}`",
        "pixelcnn_block" => "for example `- pixelcnn_block: {hidden: 16}`",
        "gated_pixelcnn" => "for example `- gated_pixelcnn: {hidden: 32, kernel: 3, mask: B}`",
        "residual" => "for example `- residual: {body: [...]}`",
        "repeat" => "for example `- repeat: {count: 7, body: [...]}`",
        "head" => "for example `- head: bernoulli`",
        _ => "see grammar/pixc.ebnf",
    }
    .to_string()
}

// ---- size expressions (nom) ----

fn atom(i: &str) -> IResult<&str, Expr> {
    delimited(
        space0,
        alt((
            digit1.map_res(|d: &str| d.parse::<i64>().map(Expr::Int)),
            nom::combinator::verify(
                take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_'),
                |s: &str| is_ident(s),
            )
            .map(|s: &str| Expr::Param(s.to_string())),
            delimited(char('('), sum, char(')')),
        )),
        space0,
    )
    .parse(i)
}

fn fold(first: Expr, rest: Vec<(char, Expr)>) -> Expr {
    rest.into_iter().fold(first, |acc, (op, e)| {
        let op = match op {
            '+' => BinOp::Add,
            '-' => BinOp::Sub,
            '*' => BinOp::Mul,
            _ => BinOp::Div,
        };
        Expr::Bin(Box::new(acc), op, Box::new(e))
    })
}

fn product(i: &str) -> IResult<&str, Expr> {
    let (i, first) = atom(i)?;
    let (i, rest) = nom::multi::many0((alt((char('*'), char('/'))), atom)).parse(i)?;
    Ok((i, fold(first, rest)))
}

fn sum(i: &str) -> IResult<&str, Expr> {
    let (i, first) = product(i)?;
    let (i, rest) = nom::multi::many0((alt((char('+'), char('-'))), product)).parse(i)?;
    Ok((i, fold(first, rest)))
}

/// Parses a whole size expression; on failure returns the byte offset of the problem.
pub fn parse_expr(text: &str) -> Result<Expr, usize> {
    match sum(text) {
        Ok(("", e)) => Ok(e),
        Ok((rest, _)) => Err(text.len() - rest.len()),
        Err(_) => Err(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_print_canonically() {
        for (src, want) in [
            ("2*h", "2*h"),
            ("2 * (h+1)", "2*(h+1)"),
            ("a-(b-c)", "a-(b-c)"),
            ("(a*b)*c", "a*b*c"),
        ] {
            assert_eq!(parse_expr(src).unwrap().to_string(), want);
        }
        assert!(parse_expr("2**h").is_err());
    }
}
