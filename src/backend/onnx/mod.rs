//! ONNX export: a validated model and its weights -> an ONNX `ModelProto` (IR 10, opset 21).
//!
//! Built directly with onnx-protobuf from the IR (no PyTorch involved), following
//! docs/semantics.md op by op. The file's contract:
//!
//! | | name | type | meaning |
//! | --- | --- | --- | --- |
//! | input | `image` | float32 `[batch, C, H, W]` | raw values `0..levels-1`; the graph divides by `levels - 1` itself |
//! | input (class-conditional models) | `label` | int64 `[batch]` | the class of each image, `0..classes-1` |
//! | input (low-res models) | `low_res` | float32 `[batch, C, H/f, W/f]` | the given pixels `x[:, :, ::f, ::f]`, raw; they replace `image`'s there |
//! | output | `logits` | float32 `[batch, C, H, W]` (Bernoulli) or `[batch, C*levels, H, W]` (softmax, channel `c*levels + v`) | the head's logits |
//! | output | `nll` | float32 `[batch]` | negative log-likelihood of each image in nats, from `image` |
//!
//! `batch` is symbolic; C, H, W are fixed by the spec. Recurrences are unrolled (see
//! `lstm`). Metadata (`metadata_props`, keys in `meta_keys`) records the pixc version, the
//! spec text, the image geometry and levels, the input scaling and the NLL units, so a
//! runtime can use the file without the spec.
//!
//! Op mapping:
//!
//! | IR op | ONNX ops |
//! | --- | --- |
//! | Input | Div (by `levels - 1`); a low-res model first: Unsqueeze, Pad, Reshape (`low_res` placed at full size), Mul, Add (merged into `image`) |
//! | Conv, Head | Conv (explicit pads, masked weights) |
//! | Relu / Add | Relu / chained Add |
//! | SkipSum | Conv 1x1 per skip source, chained Add |
//! | RowLstm | Conv 1 x k (input-to-state), Split into rows; per row: Conv 1x3 (state), Add, LSTM cell; Concat |
//! | DiagBiLstm | Reshape, Transpose (pixels as `[pixel, N, c]`; the `full_context` image too), Where (a ones column for the bias), Concat, Gather x2 (every skewed column's pixels, skewed and mirrored by index tables), Unsqueeze, Concat, Split into columns; per skewed column: the previous column's states as they are or Sliced, Concat with the baked-in padding-zone edge (Where-broadcast to the batch) and the zero row, Concat (taps and pixels), Einsum (the 2-tap state conv and the input-to-state 1x1 conv with its bias: one GEMM per direction), Add (only a class vector or low-res map), LSTM cell; then Concat, Pad (zero slot), Split, Gather x2 (unskew, mirror back, shift down), Add, Squeeze, Transpose, Reshape |
//! | LSTM cell | Split (o, f, i, g), Sigmoid x3, Tanh, Mul, Mul, Add, Tanh, Mul |
//! | nll (Bernoulli) | Abs, Neg, Softplus, Relu, Mul, Sub, Add, ReduceSum |
//! | nll (softmax) | Reshape, LogSoftmax, Cast, Unsqueeze, GatherElements, ReduceSum, Neg |

mod builder;
mod lower;
mod lstm;

use crate::ir::validate::Model;
use crate::ir::HeadKind;
use crate::weights::Weights;
use builder::{value_info, Builder, Dim, FLOAT, INT64};
use onnx_protobuf::{GraphProto, Message, ModelProto, OperatorSetIdProto, StringStringEntryProto};

/// ONNX IR version written (onnx-protobuf's onnx.proto is IR 10).
pub const IR_VERSION: i64 = 10;
/// The name of a low-res model's second input (`meta_keys::LOW_RES`).
pub const LOW_RES_INPUT: &str = "low_res";
/// The name of a class-conditional model's extra input (`meta_keys::CLASSES`).
pub use lstm::LABEL_INPUT;
/// Default-domain opset written. Split/Pad/Slice/Unsqueeze/ReduceSum take sizes as inputs.
pub const OPSET: i64 = 21;
/// Protobuf messages cannot exceed 2 GiB; larger models would need external data files.
pub const MAX_BYTES: usize = (1usize << 31) - 1;

/// Keys of the `metadata_props` the exporter writes (the runtime reads them back).
pub mod meta_keys {
    pub const PIXC_VERSION: &str = "pixc.version";
    pub const MODEL_NAME: &str = "pixc.model";
    pub const SPEC: &str = "pixc.spec";
    pub const SPEC_NAME: &str = "pixc.spec_name";
    pub const LEVELS: &str = "pixc.levels";
    pub const CHANNELS: &str = "pixc.channels";
    pub const HEIGHT: &str = "pixc.height";
    pub const WIDTH: &str = "pixc.width";
    pub const HEAD: &str = "pixc.head";
    pub const INPUT_SCALING: &str = "pixc.input_scaling";
    pub const LOGITS_LAYOUT: &str = "pixc.logits_layout";
    pub const NLL_UNITS: &str = "pixc.nll_units";
    pub const PARAMETERS: &str = "pixc.parameters";
    pub const WEIGHTS_SOURCE: &str = "pixc.weights_source";
    /// A class-conditional model: its class count; the graph then has the input `label`.
    pub const CLASSES: &str = "pixc.classes";
    /// A low-res conditional model's subsampling factor f: the graph then has the input
    /// `low_res` (`[batch, C, H/f, W/f]`), the given pixels at rows and columns divisible
    /// by f (they replace `image`'s there; read by the graph, not scored in `nll`).
    pub const LOW_RES: &str = "pixc.low_res";
}

/// What the exporter records about where the model came from, besides the IR.
#[derive(Clone, Debug, Default)]
pub struct ExportMeta {
    /// The spec's source text, stored verbatim (so the file can be traced and re-checked).
    pub spec_text: String,
    /// The spec's file name, if it came from a file.
    pub spec_name: Option<String>,
    /// Where the weights came from (a path, or "init seed 0"), if known.
    pub weights_source: Option<String>,
    /// Free-form text for the model's `doc_string` (e.g. training summary).
    pub doc: Option<String>,
    /// Further `metadata_props` (e.g. `("pixc.train.step", "12000")`); keys must not
    /// collide with `meta_keys`.
    pub extra: Vec<(String, String)>,
}

impl ExportMeta {
    pub fn new(spec_text: impl Into<String>) -> ExportMeta {
        ExportMeta {
            spec_text: spec_text.into(),
            ..ExportMeta::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the weights do not match the model: {0}")]
    Weights(String),
    #[error("the ONNX file would be {bytes} bytes, over protobuf's 2 GiB limit (external weight files are not supported yet); reduce hidden sizes or depth")]
    TooLarge { bytes: usize },
    #[error("extra metadata key `{0}` collides with a key pixc writes")]
    MetadataKey(String),
    #[error("internal exporter error: {0}")]
    Internal(String),
}

/// Exports `model` with `weights` as serialized ONNX bytes.
pub fn export(model: &Model, weights: &Weights, meta: &ExportMeta) -> Result<Vec<u8>, ExportError> {
    let proto = export_proto(model, weights, meta)?;
    let size = proto.compute_size() as usize;
    if size > MAX_BYTES {
        return Err(ExportError::TooLarge { bytes: size });
    }
    proto
        .write_to_bytes()
        .map_err(|e| ExportError::Internal(e.to_string()))
}

/// As `export`, returning the `ModelProto` itself (for inspection in tests and tools).
pub fn export_proto(
    model: &Model,
    weights: &Weights,
    meta: &ExportMeta,
) -> Result<ModelProto, ExportError> {
    weights.check_against(model).map_err(ExportError::Weights)?;
    let g = model.graph();
    let im = g.image;
    // Estimate before building: the weights dominate, and building 2 GiB only to refuse it
    // would waste minutes.
    let weight_bytes = weights.numel() * 4;
    if weight_bytes > MAX_BYTES {
        return Err(ExportError::TooLarge {
            bytes: weight_bytes,
        });
    }

    let mut b = Builder::new();
    // The input: raw values, scaled to [0, 1] in-graph exactly as the semantics say
    // (a division, not a multiplication by the reciprocal, which can differ in the last bit).
    b.doc = "input: image / (levels - 1)".into();
    let denom = b.f32_scalar((im.levels - 1) as f32);
    let scaled = lower::value_of(model, g.input);
    // A low-res model's given pixels come from its `low_res` input, placed into the image
    // before anything reads it, so the two inputs can never disagree.
    let given = match im.low_res {
        Some(l) => lower::place_low_res(&mut b, &im, l.factor),
        None => "image".to_string(),
    };
    b.doc = "input: image / (levels - 1)".into();
    b.op_to("Div", "n0.scale", &[&given, &denom], &scaled, vec![]);
    b.doc.clear();
    lower::lower_nodes(&mut b, model, weights);
    lower::nll(&mut b, model, &given, &scaled);
    if let Some(d) = &b.duplicate {
        return Err(ExportError::Internal(format!("duplicate ONNX name `{d}`")));
    }

    let head = model.head_kind();
    let out_c = crate::ir::head_out_channels(head, &im);
    let (c, h, w) = (
        Dim::Fixed(im.channels),
        Dim::Fixed(im.height),
        Dim::Fixed(im.width),
    );
    let batch = Dim::Symbolic("batch");
    let scaling = format!(
        "`image` holds raw sub-pixel values 0..{} as float32 (not pre-scaled); the graph divides by {} to get [0, 1]",
        im.levels - 1,
        im.levels - 1
    );
    let layout = match head {
        HeadKind::Bernoulli => {
            "[batch, C, H, W]: the logit of p(value = 1) per sub-pixel".to_string()
        }
        HeadKind::Softmax => format!(
            "[batch, C*{l}, H, W]: channel c*{l} + v holds the logit of value v for colour c",
            l = im.levels
        ),
    };

    let mut graph = GraphProto::new();
    graph.name = g.name.clone();
    graph.doc_string = format!(
        "pixc model `{}`: {} x {} x {} images with {} levels, {} head",
        g.name,
        im.channels,
        im.height,
        im.width,
        im.levels,
        head_name(head)
    );
    graph.input.push(value_info(
        "image",
        FLOAT,
        &[batch.clone(), c.clone(), h.clone(), w.clone()],
        &scaling,
    ));
    if im.classes > 0 {
        graph.input.push(value_info(
            lstm::LABEL_INPUT,
            INT64,
            std::slice::from_ref(&batch),
            &format!(
                "class label of each image, 0..{} (a class-conditional model)",
                im.classes - 1
            ),
        ));
    }
    if let Some(l) = im.low_res {
        graph.input.push(value_info(
            LOW_RES_INPUT,
            FLOAT,
            &[
                batch.clone(),
                c.clone(),
                Dim::Fixed(im.height / l.factor),
                Dim::Fixed(im.width / l.factor),
            ],
            &format!(
                "the given low-res image x[:, :, ::{f}, ::{f}], raw values as in `image`; it replaces `image`'s pixels at rows and columns divisible by {f}, which are read but not scored",
                f = l.factor
            ),
        ));
    }
    graph.output.push(value_info(
        "logits",
        FLOAT,
        &[batch.clone(), Dim::Fixed(out_c), h, w],
        &format!("logits {layout}"),
    ));
    graph.output.push(value_info(
        "nll",
        FLOAT,
        &[batch],
        "negative log-likelihood of each image in nats (sum over all sub-pixels, less a low-res model's given ones); bits/dim = nll / (scored sub-pixels * ln 2)",
    ));
    graph.node = std::mem::take(&mut b.nodes);
    graph.initializer = std::mem::take(&mut b.initializers);

    let mut m = ModelProto::new();
    m.ir_version = IR_VERSION;
    let mut opset = OperatorSetIdProto::new();
    opset.domain = String::new();
    opset.version = OPSET;
    m.opset_import.push(opset);
    m.producer_name = "pixc".into();
    m.producer_version = env!("CARGO_PKG_VERSION").into();
    m.domain = "org.pixc".into();
    m.model_version = 1;
    m.doc_string = meta.doc.clone().unwrap_or_else(|| graph.doc_string.clone());
    m.graph = Some(graph).into();

    use meta_keys as k;
    let mut props: Vec<(&str, String)> = vec![
        (k::PIXC_VERSION, env!("CARGO_PKG_VERSION").to_string()),
        (k::MODEL_NAME, g.name.clone()),
        (k::SPEC, meta.spec_text.clone()),
        (k::LEVELS, im.levels.to_string()),
        (k::CHANNELS, im.channels.to_string()),
        (k::HEIGHT, im.height.to_string()),
        (k::WIDTH, im.width.to_string()),
        (k::HEAD, head_name(head).to_string()),
        (k::INPUT_SCALING, scaling.clone()),
        (k::LOGITS_LAYOUT, layout),
        (k::NLL_UNITS, "nats per image".to_string()),
        (k::PARAMETERS, weights.numel().to_string()),
    ];
    if im.classes > 0 {
        props.push((k::CLASSES, im.classes.to_string()));
    }
    if let Some(l) = im.low_res {
        props.push((k::LOW_RES, l.factor.to_string()));
    }
    if let Some(n) = &meta.spec_name {
        props.push((k::SPEC_NAME, n.clone()));
    }
    if let Some(s) = &meta.weights_source {
        props.push((k::WEIGHTS_SOURCE, s.clone()));
    }
    for (key, value) in props {
        m.metadata_props.push(entry(key, &value));
    }
    for (key, value) in &meta.extra {
        if m.metadata_props.iter().any(|e| &e.key == key) {
            return Err(ExportError::MetadataKey(key.clone()));
        }
        m.metadata_props.push(entry(key, value));
    }
    Ok(m)
}

fn head_name(h: HeadKind) -> &'static str {
    match h {
        HeadKind::Bernoulli => "bernoulli",
        HeadKind::Softmax => "softmax",
    }
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    let mut e = StringStringEntryProto::new();
    e.key = key.to_string();
    e.value = value.to_string();
    e
}
