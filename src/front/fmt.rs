//! Canonical printers: AST -> YAML and AST -> DSL, so `pixc fmt` converts losslessly.
//!
//! "Lossless" means the AST (hence the IR) is identical after a round trip, and every
//! comment is kept (`format`; `comments` attaches them to what they annotate); layout is
//! normalised. Both printers emit every non-default value.

use super::ast::*;
use super::comments::{Anchor, Attached, Comment, Comments, SMALL};
use super::Syntax;
use crate::diag::Diagnostic;

fn kernel_text(k: &Kernel) -> String {
    if k.h == k.w {
        k.h.to_string()
    } else {
        format!("{}x{}", k.h, k.w)
    }
}

fn mask_text(m: Mask) -> &'static str {
    match m {
        Mask::A => "A",
        Mask::B => "B",
        // Never in an AST (the builder reads only A and B); named for exhaustiveness.
        Mask::Above => "above",
        Mask::AboveRow => "above_row",
    }
}

fn head_text(h: HeadKind) -> &'static str {
    match h {
        HeadKind::Bernoulli => "bernoulli",
        HeadKind::Softmax => "softmax",
    }
}

fn float_text(x: f64) -> String {
    // Rust prints the shortest text that reads back to the same f64.
    let s = format!("{x}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// The `train` section as ordered (key, value) pairs, shared by both printers.
fn train_pairs(t: &Train) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("optimizer", t.optimizer.name().to_string()),
        ("lr", float_text(t.lr)),
    ];
    // Only a schedule other than the default is printed, so specs without one print as
    // they always did.
    let sc = &t.schedule;
    if sc.kind != ScheduleKind::Constant {
        v.push(("schedule", sc.kind.name().to_string()));
    }
    if sc.warmup_steps > 0 {
        v.push(("warmup_steps", sc.warmup_steps.to_string()));
    }
    if let Some(r) = sc.decay_rate {
        v.push(("decay_rate", float_text(r)));
    }
    if let Some(n) = sc.decay_steps {
        v.push(("decay_steps", n.to_string()));
    }
    if sc.min_lr != 0.0 {
        v.push(("min_lr", float_text(sc.min_lr)));
    }
    v.push(("batch", t.batch.to_string()));
    if let Some(e) = t.epochs {
        v.push(("epochs", e.to_string()));
    }
    if let Some(s) = t.steps {
        v.push(("steps", s.to_string()));
    }
    v.push((
        "clip",
        t.clip.map(float_text).unwrap_or_else(|| "none".into()),
    ));
    v.push(("seed", t.seed.to_string()));
    v.push(("data", t.data.clone()));
    v.push(("valid_every", t.valid_every.to_string()));
    if let Some(f) = t.subsample {
        v.push(("subsample", f.to_string()));
    }
    v
}

/// Layer arguments as ordered (key, value) pairs, shared by both printers.
fn layer_args(l: &Layer) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = match &l.kind {
        LayerKind::Conv { out, kernel, mask } => vec![
            ("out", out.node.to_string()),
            ("kernel", kernel_text(&kernel.node)),
            ("mask", mask_text(*mask).to_string()),
        ],
        LayerKind::RowLstm { hidden, kernel } => vec![
            ("hidden", hidden.node.to_string()),
            ("kernel", kernel.node.to_string()),
        ],
        LayerKind::DiagBiLstm {
            hidden,
            shift,
            full_context,
        } => {
            let mut v = vec![("hidden", hidden.node.to_string())];
            if !shift {
                v.push(("shift", "false".into()));
            }
            // Printed only when set, so the paper's specs print as before.
            if *full_context {
                v.push(("full_context", "true".into()));
            }
            v
        }
        LayerKind::PixelCnnBlock { hidden } => vec![("hidden", hidden.node.to_string())],
        LayerKind::GatedPixelCnn {
            hidden,
            kernel,
            mask,
        } => vec![
            ("hidden", hidden.node.to_string()),
            ("kernel", kernel.node.to_string()),
            ("mask", mask_text(*mask).to_string()),
        ],
        _ => vec![],
    };
    if l.skip {
        v.push(("skip", "true".into()));
    }
    v
}

/// A YAML scalar, quoted when YAML would otherwise read it as something else.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '+' | '/' | '(' | ')')
        })
        && !matches!(s, "null" | "~" | "yes" | "no" | "on" | "off")
        && !s.starts_with('-');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Text being printed, with the comments still to place.
struct Out<'c> {
    s: String,
    comments: &'c mut Comments,
    /// Comments of elements that have no line in this syntax, printed before the next line.
    pending: Vec<Comment>,
}

impl<'c> Out<'c> {
    fn new(comments: &'c mut Comments) -> Out<'c> {
        Out {
            s: String::new(),
            comments,
            pending: Vec::new(),
        }
    }

    /// A line that is no element of its own (`body:`, `}` of a block without comments).
    fn plain(&mut self, pad: &str, text: &str) {
        self.s.push_str(pad);
        self.s.push_str(text);
        self.s.push('\n');
    }

    /// The line of `anchor`, with its comments.
    fn line(&mut self, anchor: Anchor, pad: &str, text: &str) {
        let a = self.comments.take(&anchor);
        self.line_with(a, pad, text);
    }

    fn line_with(&mut self, a: Attached, pad: &str, text: &str) {
        let mut lead = std::mem::take(&mut self.pending);
        lead.extend(a.leading);
        let mut trailing = a.trailing;
        // One comment fits at the end of the line; any others go above it, in order.
        let last = trailing.pop();
        lead.extend(trailing);
        for c in lead {
            self.plain(pad, &c.text);
        }
        self.s.push_str(pad);
        self.s.push_str(text);
        if let Some(c) = last {
            self.s.push_str("  ");
            self.s.push_str(&c.text);
        }
        self.s.push('\n');
    }

    /// An element with no line in this syntax: its comments go before the next line.
    fn defer(&mut self, anchor: Anchor) {
        let a = self.comments.take(&anchor);
        self.pending.extend(a.into_lines());
    }

    /// An element that is only a place (the end of a YAML body, the end of the file): its
    /// comments, and any pending ones, as full-line comments here.
    fn lines_only(&mut self, anchor: Anchor, pad: &str) {
        let mut v = std::mem::take(&mut self.pending);
        v.extend(self.comments.take(&anchor).into_lines());
        for c in v {
            self.plain(pad, &c.text);
        }
    }

    fn finish(mut self) -> String {
        self.lines_only(Anchor::End, "");
        self.s
    }
}

pub fn to_yaml(spec: &Spec) -> String {
    to_yaml_with(spec, &mut Comments::none())
}

/// Canonical YAML with `comments` placed; what it could not place stays in `comments`.
pub fn to_yaml_with(spec: &Spec, comments: &mut Comments) -> String {
    let mut o = Out::new(comments);
    o.line(
        Anchor::Model,
        "",
        &format!("model: {}", yaml_scalar(&spec.name.node)),
    );
    if !spec.params.is_empty() {
        o.line(Anchor::Params, "", "params:");
        for p in &spec.params {
            o.line(
                Anchor::Param(p.name.node.clone()),
                "  ",
                &format!(
                    "{}: {}",
                    p.name.node,
                    yaml_scalar(&p.value.node.to_string())
                ),
            );
        }
    } else {
        o.defer(Anchor::Params);
    }
    let i = &spec.input;
    o.line(
        Anchor::Input,
        "",
        &format!(
            "input: {{channels: {}, height: {}, width: {}, levels: {}{}}}",
            yaml_scalar(&i.channels.node.to_string()),
            yaml_scalar(&i.height.node.to_string()),
            yaml_scalar(&i.width.node.to_string()),
            yaml_scalar(&i.levels.node.to_string()),
            optional_input_keys(i)
                .map(|(k, v)| format!(", {k}: {}", yaml_scalar(&v)))
                .collect::<String>()
        ),
    );
    if let Some(small) = &spec.small {
        o.line(Anchor::Small, "", "small:");
        yaml_layers(&small.node, 1, &mut vec![SMALL], &mut o);
    }
    o.line(Anchor::Layers, "", "layers:");
    yaml_layers(&spec.layers, 1, &mut Vec::new(), &mut o);
    if let Some(t) = &spec.train {
        o.line(Anchor::Train, "", "train:");
        for (k, v) in train_pairs(t) {
            o.line(
                Anchor::TrainKey(k.to_string()),
                "  ",
                &format!("{k}: {}", yaml_scalar(&v)),
            );
        }
    }
    o.finish()
}

fn yaml_layers(layers: &[Layer], depth: usize, path: &mut Vec<usize>, o: &mut Out<'_>) {
    let pad = "  ".repeat(depth);
    for (n, l) in layers.iter().enumerate() {
        path.push(n);
        let anchor = Anchor::Layer(path.clone());
        let name = l.kind.name();
        match &l.kind {
            LayerKind::Relu | LayerKind::SkipSum if !l.skip => {
                o.line(anchor, &pad, &format!("- {name}"));
            }
            LayerKind::Head { kind } => {
                o.line(anchor, &pad, &format!("- head: {}", head_text(kind.node)));
            }
            LayerKind::Residual { body } => {
                o.line(anchor, &pad, "- residual:");
                if l.skip {
                    o.plain(&pad, "    skip: true");
                }
                o.plain(&pad, "    body:");
                yaml_layers(body, depth + 3, path, o);
            }
            LayerKind::Repeat { count, body } => {
                o.line(anchor, &pad, "- repeat:");
                o.plain(
                    &pad,
                    &format!("    count: {}", yaml_scalar(&count.node.to_string())),
                );
                o.plain(&pad, "    body:");
                yaml_layers(body, depth + 3, path, o);
            }
            _ => {
                let args: Vec<String> = layer_args(l)
                    .into_iter()
                    .map(|(k, v)| format!("{k}: {}", yaml_scalar(&v)))
                    .collect();
                o.line(anchor, &pad, &format!("- {name}: {{{}}}", args.join(", ")));
            }
        }
        path.pop();
    }
    // YAML has no line for the end of a body: its comments stay at the items' indentation.
    o.lines_only(Anchor::BodyEnd(path.clone()), &pad);
}

/// A DSL value: parenthesised if it contains characters that would split it.
fn dsl_value(s: &str) -> String {
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, '{' | '}' | '=' | '#'))
    {
        format!("({s})")
    } else {
        s.to_string()
    }
}

pub fn to_dsl(spec: &Spec) -> String {
    to_dsl_with(spec, &mut Comments::none())
}

/// Canonical DSL with `comments` placed; what it could not place stays in `comments`.
pub fn to_dsl_with(spec: &Spec, comments: &mut Comments) -> String {
    let mut o = Out::new(comments);
    o.line(Anchor::Model, "", &format!("model {}", spec.name.node));
    // The DSL has no `params` header: its comments go before the first `param`.
    o.defer(Anchor::Params);
    for p in &spec.params {
        o.line(
            Anchor::Param(p.name.node.clone()),
            "",
            &format!("param {} = {}", p.name.node, p.value.node),
        );
    }
    let i = &spec.input;
    o.line(
        Anchor::Input,
        "",
        &format!(
            "input channels={} height={} width={} levels={}{}",
            i.channels.node,
            i.height.node,
            i.width.node,
            i.levels.node,
            optional_input_keys(i)
                .map(|(k, v)| format!(" {k}={v}"))
                .collect::<String>()
        ),
    );
    if let Some(small) = &spec.small {
        o.line(Anchor::Small, "", "small {");
        dsl_layers(&small.node, 1, &mut vec![SMALL], &mut o);
        dsl_close(0, &[SMALL], &mut o);
    }
    o.line(Anchor::Layers, "", "layers {");
    dsl_layers(&spec.layers, 1, &mut Vec::new(), &mut o);
    dsl_close(0, &[], &mut o);
    if let Some(t) = &spec.train {
        let pairs = train_pairs(t);
        // `train` is one line: the comments of its keys go above it.
        let mut a = o.comments.take(&Anchor::Train);
        for (k, _) in &pairs {
            let key = o.comments.take(&Anchor::TrainKey(k.to_string()));
            a.leading.extend(key.into_lines());
        }
        let pairs: Vec<String> = pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={}", dsl_value(&v)))
            .collect();
        o.line_with(a, "", &format!("train {}", pairs.join(" ")));
    }
    o.finish()
}

fn dsl_layers(layers: &[Layer], depth: usize, path: &mut Vec<usize>, o: &mut Out<'_>) {
    let pad = "  ".repeat(depth);
    for (n, l) in layers.iter().enumerate() {
        path.push(n);
        let anchor = Anchor::Layer(path.clone());
        let name = l.kind.name();
        match &l.kind {
            LayerKind::Head { kind } => {
                o.line(anchor, &pad, &format!("head {}", head_text(kind.node)))
            }
            LayerKind::Residual { body } => {
                let skip = if l.skip { " skip" } else { "" };
                o.line(anchor, &pad, &format!("residual{skip} {{"));
                dsl_block(body, depth, path, o);
            }
            LayerKind::Repeat { count, body } => {
                o.line(
                    anchor,
                    &pad,
                    &format!("repeat {} {{", dsl_value(&count.node.to_string())),
                );
                dsl_block(body, depth, path, o);
            }
            LayerKind::Conv { .. } => {
                // The kernel is the positional argument: `conv 7x7 out=32 mask=A`.
                let args = layer_args(l);
                let kernel = args
                    .iter()
                    .find(|(k, _)| *k == "kernel")
                    .map(|(_, v)| v.clone());
                let rest: Vec<String> = args
                    .iter()
                    .filter(|(k, _)| *k != "kernel")
                    .map(|(k, v)| {
                        if v == "true" {
                            k.to_string()
                        } else {
                            format!("{k}={}", dsl_value(v))
                        }
                    })
                    .collect();
                o.line(
                    anchor,
                    &pad,
                    &format!(
                        "conv {} {}",
                        dsl_value(&kernel.unwrap_or_default()),
                        rest.join(" ")
                    ),
                );
            }
            _ => {
                let args: Vec<String> = layer_args(l)
                    .iter()
                    .map(|(k, v)| {
                        if v == "true" {
                            k.to_string()
                        } else {
                            format!("{k}={}", dsl_value(v))
                        }
                    })
                    .collect();
                if args.is_empty() {
                    o.line(anchor, &pad, name);
                } else {
                    o.line(anchor, &pad, &format!("{name} {}", args.join(" ")));
                }
            }
        }
        path.pop();
    }
}

/// The body of a block layer at `path`, then its closing brace.
fn dsl_block(body: &[Layer], depth: usize, path: &mut Vec<usize>, o: &mut Out<'_>) {
    dsl_layers(body, depth + 1, path, o);
    dsl_close(depth, path, o);
}

/// The `}` closing the body at `path` (the body's end anchor), indented by `depth`.
fn dsl_close(depth: usize, path: &[usize], o: &mut Out<'_>) {
    let end = o.comments.take(&Anchor::BodyEnd(path.to_vec()));
    // Comments before the brace stay inside the block, at its items' indentation.
    let inner = "  ".repeat(depth + 1);
    let mut lead = std::mem::take(&mut o.pending);
    lead.extend(end.leading);
    for c in lead {
        o.plain(&inner, &c.text);
    }
    o.line_with(
        Attached {
            leading: Vec::new(),
            trailing: end.trailing,
        },
        &"  ".repeat(depth),
        "}",
    );
}

/// `pixc fmt`: `text` (valid, in syntax `from`) printed canonically in syntax `to`, with
/// every comment kept, attached to the element it annotates. A comment that cannot be
/// placed is an error naming its line; the result never silently loses one.
pub fn format(text: &str, from: Syntax, to: Syntax) -> Result<String, Vec<Diagnostic>> {
    let spec = super::parse(text, from)?;
    let tree = match from {
        Syntax::Yaml => super::yaml::parse(text)?,
        Syntax::Dsl => super::dsl::parse(text)?,
    };
    let found = super::comments::scan(text, from);
    let mut comments = super::comments::attach(text, from, &tree)?;
    let out = match to {
        Syntax::Yaml => to_yaml_with(&spec, &mut comments),
        Syntax::Dsl => to_dsl_with(&spec, &mut comments),
    };
    super::comments::unplaced(comments.leftover())?;
    super::comments::check_kept(&found, &out, to)?;
    Ok(out)
}

/// The optional `input` keys a spec sets, in canonical order, with their expressions.
fn optional_input_keys(
    i: &crate::front::ast::Input,
) -> impl Iterator<Item = (&'static str, String)> + '_ {
    [
        ("classes", &i.classes),
        ("low_res", &i.low_res),
        ("low_res_maps", &i.low_res_maps),
    ]
    .into_iter()
    .filter_map(|(k, e)| e.as_ref().map(|e| (k, e.node.to_string())))
}
