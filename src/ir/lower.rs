//! AST -> IR: evaluates size expressions over the spec's params and expands `repeat`,
//! `residual`, `pixelcnn_block` and skip connections into plain ops.

use super::{Graph, ImageSpec, LowRes, NodeId, Op};
use crate::diag::{did_you_mean, Diagnostic, Span};
use crate::front::ast::{BinOp, Expr, Layer, LayerKind, Mask, Sp, Spec};
use std::collections::HashMap;

/// Upper bounds that keep a typo (`hidden: 16000000`) from allocating the machine away.
pub const MAX_CHANNELS: i64 = 1 << 16;
pub const MAX_SIDE: i64 = 1024;
pub const MAX_KERNEL: i64 = 63;
pub const MAX_REPEAT: i64 = 1000;
pub const MAX_NODES: usize = 20_000;
/// Channels of the upsampled low-res map when the spec does not say (`low_res_maps`).
pub const DEFAULT_LOW_RES_MAPS: i64 = 16;

struct Lower {
    env: HashMap<String, i64>,
    errors: Vec<Diagnostic>,
    g: Graph,
    /// Outputs marked `skip: true` not yet consumed by a `skip_sum`.
    skips: Vec<(NodeId, Span)>,
    /// The last gated PixelCNN layer's (output, vertical stack): a gated layer whose input
    /// is that output continues that vertical stack.
    vstack: Option<(NodeId, NodeId)>,
    /// A low-res conditional model's `Op::LowRes` node: the last input of every LSTM and
    /// gated node.
    low_res: Option<NodeId>,
    too_big: bool,
}

/// Lowers a spec to a graph. Size errors are reported with the span of the expression.
pub fn lower(spec: &Spec) -> Result<Graph, Vec<Diagnostic>> {
    let mut lw = Lower {
        env: HashMap::new(),
        errors: Vec::new(),
        g: Graph::new(
            spec.name.node.clone(),
            ImageSpec {
                channels: 0,
                height: 0,
                width: 0,
                levels: 0,
                classes: 0,
                low_res: None,
            },
            spec.input.span,
        ),
        skips: Vec::new(),
        vstack: None,
        low_res: None,
        too_big: false,
    };
    for p in &spec.params {
        if lw.env.contains_key(&p.name.node) {
            lw.errors.push(
                Diagnostic::new(
                    p.name.span,
                    format!("parameter `{}` is defined twice", p.name.node),
                )
                .label("second definition")
                .help("give each parameter one value"),
            );
            continue;
        }
        if let Some(v) = lw.eval(&p.value) {
            lw.env.insert(p.name.node.clone(), v);
        }
    }
    let inp = &spec.input;
    let channels = lw.size(&inp.channels, "channels", 1, 3);
    let height = lw.size(&inp.height, "height", 1, MAX_SIDE);
    let width = lw.size(&inp.width, "width", 1, MAX_SIDE);
    let levels = lw.size(&inp.levels, "levels", 2, 256);
    let classes = match &inp.classes {
        Some(c) => lw.size(c, "classes", 2, 65_536),
        None => Some(0),
    };
    let low_res = match &inp.low_res {
        Some(f) => lw.size(f, "low_res", 2, MAX_SIDE).map(Some),
        None => Some(None),
    };
    let low_res_maps = match &inp.low_res_maps {
        Some(m) => lw.size(m, "low_res_maps", 1, MAX_CHANNELS).map(Some),
        None => Some(None),
    };
    if let (Some(m), Some(None)) = (&inp.low_res_maps, &low_res) {
        lw.errors.push(
            Diagnostic::new(m.span, "`low_res_maps` without `low_res`")
                .label("no low-res input to upsample")
                .help("add `low_res: 2` (the subsampling factor), or remove `low_res_maps`"),
        );
    }
    if channels == Some(2) {
        lw.errors.push(
            Diagnostic::new(inp.channels.span, "input channels must be 1 or 3, got 2")
                .label("unsupported channel count")
                .help("use 1 for grayscale or binary images, 3 for RGB"),
        );
    }
    let (
        Some(channels),
        Some(height),
        Some(width),
        Some(levels),
        Some(classes),
        Some(low_res),
        Some(low_res_maps),
    ) = (
        channels,
        height,
        width,
        levels,
        classes,
        low_res,
        low_res_maps,
    )
    else {
        return Err(lw.errors);
    };
    if let (Some(f), Some(e)) = (low_res, &inp.low_res) {
        for (side, what) in [(height, "height"), (width, "width")] {
            if side % f != 0 || side / f < 2 {
                let fits: Vec<String> = (2..=side / 2)
                    .filter(|&d| height % d == 0 && width % d == 0)
                    .map(|d| d.to_string())
                    .collect();
                let help = if fits.is_empty() {
                    format!("no factor of 2 or more divides a {height}x{width} image")
                } else {
                    format!(
                        "use a factor that divides {height} and {width}: {}",
                        fits.join(", ")
                    )
                };
                lw.errors.push(
                    Diagnostic::new(
                        e.span,
                        format!("a low-res factor of {f} does not divide the image {what} {side} into 2 or more rows"),
                    )
                    .label(format!("low_res = {f}"))
                    .help(help),
                );
                return Err(lw.errors);
            }
        }
    }
    lw.g.image = ImageSpec {
        channels: channels as usize,
        height: height as usize,
        width: width as usize,
        levels: levels as usize,
        classes: classes as usize,
        low_res: low_res.map(|f| LowRes {
            factor: f as usize,
            maps: low_res_maps.unwrap_or(DEFAULT_LOW_RES_MAPS) as usize,
        }),
    };
    let input = lw.g.input;
    if let Some(l) = lw.g.image.low_res {
        let span = inp.low_res.as_ref().map_or(inp.span, |e| e.span);
        lw.low_res = lw.add(
            Op::LowRes {
                factor: l.factor,
                maps: l.maps,
            },
            span,
            "input.low_res".into(),
            &[input],
        );
    }
    let out = lw.layers(&spec.layers, input, "layers");
    for (_, span) in &lw.skips {
        lw.errors.push(
            Diagnostic::new(*span, "this layer's skip output is never used")
                .label("`skip: true` here")
                .help("add a `skip_sum` layer after it, before the output layers"),
        );
    }
    if let Some(out) = out {
        if matches!(lw.g.node(out).op, Op::Head { .. }) {
            lw.g.output = Some(out);
        }
    }
    if lw.errors.is_empty() {
        Ok(lw.g)
    } else {
        Err(lw.errors)
    }
}

impl Lower {
    fn eval(&mut self, e: &Sp<Expr>) -> Option<i64> {
        match eval_expr(&e.node, &self.env) {
            Ok(v) => Some(v),
            Err(msg) => {
                let d = Diagnostic::new(e.span, msg.0).label("in this expression");
                let d = match msg.1 {
                    Some(h) => d.help(h),
                    None => d,
                };
                self.errors.push(d);
                None
            }
        }
    }

    /// Evaluates a size and checks it lies in `[lo, hi]`.
    fn size(&mut self, e: &Sp<Expr>, what: &str, lo: i64, hi: i64) -> Option<i64> {
        let v = self.eval(e)?;
        if v < lo || v > hi {
            let why = if v < lo {
                format!("`{what}` must be at least {lo}, got {v}")
            } else {
                format!("`{what}` is {v}, more than the limit of {hi}")
            };
            self.errors.push(
                Diagnostic::new(e.span, why)
                    .label(format!("{what} = {v}"))
                    .help(format!("use a value between {lo} and {hi}")),
            );
            return None;
        }
        Some(v)
    }

    fn kernel_side(&mut self, e: &Expr, span: Span, what: &str) -> Option<usize> {
        let v = self.size(&Sp::new(e.clone(), span), what, 1, MAX_KERNEL)?;
        // A square kernel is one number: its height and width are one mistake, said once.
        let said = |d: &Diagnostic| d.span == span && d.label == "even kernel size";
        if v % 2 == 0 && self.errors.iter().any(said) {
            return None;
        }
        if v % 2 == 0 {
            self.errors.push(
                Diagnostic::new(
                    span,
                    format!("a masked kernel needs a centre pixel, but {what} {v} is even"),
                )
                .label("even kernel size")
                .help(format!("use {} or {}", v - 1, v + 1)),
            );
            return None;
        }
        Some(v as usize)
    }

    fn add(&mut self, op: Op, span: Span, path: String, inputs: &[NodeId]) -> Option<NodeId> {
        if self.g.len() >= MAX_NODES {
            if !self.too_big {
                self.too_big = true;
                self.errors.push(
                    Diagnostic::new(span, format!("the model has more than {MAX_NODES} ops"))
                        .label("while expanding this layer")
                        .help("reduce `repeat` counts"),
                );
            }
            return None;
        }
        Some(self.g.add(op, span, path, inputs))
    }

    /// `add` for an LSTM or gated node: a low-res conditional model's `Op::LowRes` becomes
    /// its last input.
    fn add_conditioned(
        &mut self,
        op: Op,
        span: Span,
        path: String,
        inputs: &[NodeId],
    ) -> Option<NodeId> {
        let mut inputs = inputs.to_vec();
        inputs.extend(self.low_res);
        self.add(op, span, path, &inputs)
    }

    /// Lowers a list of layers applied to `x`; returns the last output.
    fn layers(&mut self, layers: &[Layer], mut x: NodeId, path: &str) -> Option<NodeId> {
        let mut ok = true;
        for (i, l) in layers.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match self.layer(l, x, &p) {
                Some(y) => {
                    if l.skip {
                        self.skips.push((y, l.span));
                    }
                    x = y;
                }
                None => {
                    ok = false;
                    if self.too_big {
                        return None;
                    }
                }
            }
        }
        ok.then_some(x)
    }

    fn layer(&mut self, l: &Layer, x: NodeId, path: &str) -> Option<NodeId> {
        let span = l.span;
        match &l.kind {
            LayerKind::Conv { out, kernel, mask } => {
                let out = self.size(out, "out", 1, MAX_CHANNELS);
                let kh = self.kernel_side(&kernel.node.h, kernel.span, "kernel height");
                let kw = self.kernel_side(&kernel.node.w, kernel.span, "kernel width");
                let op = Op::Conv {
                    out: out? as usize,
                    kh: kh?,
                    kw: kw?,
                    mask: *mask,
                };
                self.add(op, span, path.to_string(), &[x])
            }
            LayerKind::RowLstm { hidden, kernel } => {
                let hidden = self.size(hidden, "hidden", 1, MAX_CHANNELS);
                let k = self.kernel_side(&kernel.node, kernel.span, "kernel");
                let k = k?;
                if k < 3 {
                    self.errors.push(
                        Diagnostic::new(kernel.span, format!("the Row LSTM input-to-state kernel must be at least 3 wide, got {k}"))
                            .label("too narrow")
                            .help("the paper uses k = 3"),
                    );
                    return None;
                }
                let op = Op::RowLstm {
                    hidden: hidden? as usize,
                    k,
                };
                self.add_conditioned(op, span, path.to_string(), &[x])
            }
            LayerKind::DiagBiLstm {
                hidden,
                shift,
                full_context,
            } => {
                let hidden = self.size(hidden, "hidden", 1, MAX_CHANNELS)? as usize;
                // The full-context variant also reads the image (slot 1).
                let image = self.g.input;
                let inputs: &[NodeId] = if *full_context { &[x, image] } else { &[x] };
                self.add_conditioned(
                    Op::DiagBiLstm {
                        hidden,
                        shift: *shift,
                        full_context: *full_context,
                    },
                    span,
                    path.to_string(),
                    inputs,
                )
            }
            LayerKind::PixelCnnBlock { hidden } => {
                let h = self.size(hidden, "hidden", 1, MAX_CHANNELS)? as usize;
                let p = |s: &str| format!("{path}.pixelcnn.{s}");
                let a = self.add(Op::Relu, span, p("relu0"), &[x])?;
                let b = self.add(conv(h, 1), span, p("conv1x1_in"), &[a])?;
                let c = self.add(Op::Relu, span, p("relu1"), &[b])?;
                let d = self.add(conv(h, 3), span, p("conv3x3"), &[c])?;
                let e = self.add(Op::Relu, span, p("relu2"), &[d])?;
                let f = self.add(conv(2 * h, 1), span, p("conv1x1_out"), &[e])?;
                self.add(Op::Add, span, p("add"), &[x, f])
            }
            LayerKind::GatedPixelCnn {
                hidden,
                kernel,
                mask,
            } => {
                let h = self.size(hidden, "hidden", 1, MAX_CHANNELS);
                let k = self.kernel_side(&kernel.node, kernel.span, "kernel");
                let (h, k) = (h? as usize, k?);
                let p = |s: &str| format!("{path}.gated.{s}");
                // The vertical stack sees only rows above its pixel. Started on `x` (whose
                // pixels may see the rest of their row) it reads the rows above alone;
                // continued from the last gated layer's stack it may also read that
                // stack's own row, right of the pixel too.
                let (v_in, v_mask) = match self.vstack {
                    Some((out, v)) if out == x => (v, Mask::AboveRow),
                    _ => (x, Mask::Above),
                };
                let v = Op::GatedConv {
                    hidden: h,
                    kh: k,
                    kw: k,
                    mask: v_mask,
                    link: false,
                };
                let v = self.add_conditioned(v, span, p("vertical"), &[v_in])?;
                let hz = Op::GatedConv {
                    hidden: h,
                    kh: 1,
                    kw: k,
                    mask: *mask,
                    link: true,
                };
                let hz = self.add_conditioned(hz, span, p("horizontal"), &[x, v])?;
                let o = self.add(conv(h, 1), span, p("conv1x1"), &[hz])?;
                // Mask A reads the image: nothing to add the output to.
                let y = match mask {
                    Mask::B => self.add(Op::Add, span, p("add"), &[x, o])?,
                    _ => o,
                };
                self.vstack = Some((y, v));
                Some(y)
            }
            LayerKind::Relu => self.add(Op::Relu, span, path.to_string(), &[x]),
            LayerKind::Residual { body } => {
                let y = self.layers(body, x, &format!("{path}.residual"))?;
                if y == x {
                    self.errors.push(
                        Diagnostic::new(span, "a residual block needs at least one layer")
                            .label("empty body")
                            .help("put the layers whose output is added to the input in `body`"),
                    );
                    return None;
                }
                self.add(Op::Add, span, format!("{path}.residual.add"), &[x, y])
            }
            LayerKind::Repeat { count, body } => {
                let n = self.size(count, "count", 1, MAX_REPEAT)?;
                let mut y = x;
                for i in 0..n {
                    y = self.layers(body, y, &format!("{path}.repeat{i}"))?;
                }
                Some(y)
            }
            LayerKind::SkipSum => {
                if self.skips.is_empty() {
                    self.errors.push(
                        Diagnostic::new(span, "`skip_sum` has no skip outputs to add")
                            .label("nothing to sum")
                            .help("mark earlier layers with `skip: true`, or remove this layer"),
                    );
                    return None;
                }
                let mut inputs = vec![x];
                inputs.extend(self.skips.drain(..).map(|(n, _)| n));
                self.add(Op::SkipSum, span, path.to_string(), &inputs)
            }
            LayerKind::Head { kind } => {
                self.add(Op::Head { kind: kind.node }, span, path.to_string(), &[x])
            }
        }
    }
}

fn conv(out: usize, k: usize) -> Op {
    Op::Conv {
        out,
        kh: k,
        kw: k,
        mask: Mask::B,
    }
}

/// An evaluation failure: the message and an optional help text.
pub struct EvalError(pub String, pub Option<String>);

/// Evaluates a size expression with checked arithmetic; division must be exact.
pub fn eval_expr(e: &Expr, env: &HashMap<String, i64>) -> Result<i64, EvalError> {
    match e {
        Expr::Int(v) => Ok(*v),
        Expr::Param(p) => env.get(p).copied().ok_or_else(|| {
            let names: Vec<&str> = env.keys().map(|s| s.as_str()).collect();
            let help = match did_you_mean(p, &names) {
                Some(s) => format!("did you mean `{s}`?"),
                None if names.is_empty() => {
                    format!("define it under `params:`, e.g. `params: {{{p}: 16}}`")
                }
                None => {
                    let mut n = names.clone();
                    n.sort();
                    format!("defined parameters: {}", n.join(", "))
                }
            };
            EvalError(format!("unknown parameter `{p}`"), Some(help))
        }),
        Expr::Bin(a, op, b) => {
            let (x, y) = (eval_expr(a, env)?, eval_expr(b, env)?);
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div => {
                    if y == 0 {
                        return Err(EvalError("division by zero".into(), None));
                    }
                    if x % y != 0 {
                        return Err(EvalError(
                            format!("{x}/{y} is not a whole number"),
                            Some("sizes must divide exactly".into()),
                        ));
                    }
                    Some(x / y)
                }
            };
            r.ok_or_else(|| {
                EvalError(
                    "size arithmetic overflows".into(),
                    Some("use smaller sizes".into()),
                )
            })
        }
    }
}
