//! Canonical printers: AST -> YAML and AST -> DSL, so `pixc fmt` converts losslessly.
//!
//! "Lossless" means the AST (hence the IR) is identical after a round trip; comments and
//! layout are normalised. Both printers emit every non-default value.

use super::ast::*;

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
        ("batch", t.batch.to_string()),
    ];
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
        LayerKind::DiagBiLstm { hidden, shift } => {
            let mut v = vec![("hidden", hidden.node.to_string())];
            if !shift {
                v.push(("shift", "false".into()));
            }
            v
        }
        LayerKind::PixelCnnBlock { hidden } => vec![("hidden", hidden.node.to_string())],
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

pub fn to_yaml(spec: &Spec) -> String {
    let mut o = String::new();
    o.push_str(&format!("model: {}\n", yaml_scalar(&spec.name.node)));
    if !spec.params.is_empty() {
        o.push_str("params:\n");
        for p in &spec.params {
            o.push_str(&format!(
                "  {}: {}\n",
                p.name.node,
                yaml_scalar(&p.value.node.to_string())
            ));
        }
    }
    let i = &spec.input;
    o.push_str(&format!(
        "input: {{channels: {}, height: {}, width: {}, levels: {}}}\n",
        yaml_scalar(&i.channels.node.to_string()),
        yaml_scalar(&i.height.node.to_string()),
        yaml_scalar(&i.width.node.to_string()),
        yaml_scalar(&i.levels.node.to_string())
    ));
    o.push_str("layers:\n");
    yaml_layers(&spec.layers, 1, &mut o);
    if let Some(t) = &spec.train {
        let pairs: Vec<String> = train_pairs(t)
            .into_iter()
            .map(|(k, v)| format!("{k}: {}", yaml_scalar(&v)))
            .collect();
        o.push_str("train:\n");
        for p in pairs {
            o.push_str(&format!("  {p}\n"));
        }
    }
    o
}

fn yaml_layers(layers: &[Layer], depth: usize, o: &mut String) {
    let pad = "  ".repeat(depth);
    for l in layers {
        let name = l.kind.name();
        match &l.kind {
            LayerKind::Relu | LayerKind::SkipSum if !l.skip => {
                o.push_str(&format!("{pad}- {name}\n"));
            }
            LayerKind::Head { kind } => {
                o.push_str(&format!("{pad}- head: {}\n", head_text(kind.node)));
            }
            LayerKind::Residual { body } => {
                o.push_str(&format!("{pad}- residual:\n"));
                if l.skip {
                    o.push_str(&format!("{pad}    skip: true\n"));
                }
                o.push_str(&format!("{pad}    body:\n"));
                yaml_layers(body, depth + 3, o);
            }
            LayerKind::Repeat { count, body } => {
                o.push_str(&format!("{pad}- repeat:\n"));
                o.push_str(&format!(
                    "{pad}    count: {}\n",
                    yaml_scalar(&count.node.to_string())
                ));
                o.push_str(&format!("{pad}    body:\n"));
                yaml_layers(body, depth + 3, o);
            }
            _ => {
                let args: Vec<String> = layer_args(l)
                    .into_iter()
                    .map(|(k, v)| format!("{k}: {}", yaml_scalar(&v)))
                    .collect();
                o.push_str(&format!("{pad}- {name}: {{{}}}\n", args.join(", ")));
            }
        }
    }
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
    let mut o = String::new();
    o.push_str(&format!("model {}\n", spec.name.node));
    for p in &spec.params {
        o.push_str(&format!("param {} = {}\n", p.name.node, p.value.node));
    }
    let i = &spec.input;
    o.push_str(&format!(
        "input channels={} height={} width={} levels={}\n",
        i.channels.node, i.height.node, i.width.node, i.levels.node
    ));
    o.push_str("layers {\n");
    dsl_layers(&spec.layers, 1, &mut o);
    o.push_str("}\n");
    if let Some(t) = &spec.train {
        let pairs: Vec<String> = train_pairs(t)
            .into_iter()
            .map(|(k, v)| format!("{k}={}", dsl_value(&v)))
            .collect();
        o.push_str(&format!("train {}\n", pairs.join(" ")));
    }
    o
}

fn dsl_layers(layers: &[Layer], depth: usize, o: &mut String) {
    let pad = "  ".repeat(depth);
    for l in layers {
        let name = l.kind.name();
        match &l.kind {
            LayerKind::Head { kind } => {
                o.push_str(&format!("{pad}head {}\n", head_text(kind.node)))
            }
            LayerKind::Residual { body } => {
                let skip = if l.skip { " skip" } else { "" };
                o.push_str(&format!("{pad}residual{skip} {{\n"));
                dsl_layers(body, depth + 1, o);
                o.push_str(&format!("{pad}}}\n"));
            }
            LayerKind::Repeat { count, body } => {
                o.push_str(&format!(
                    "{pad}repeat {} {{\n",
                    dsl_value(&count.node.to_string())
                ));
                dsl_layers(body, depth + 1, o);
                o.push_str(&format!("{pad}}}\n"));
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
                o.push_str(&format!(
                    "{pad}conv {} {}\n",
                    dsl_value(&kernel.unwrap_or_default()),
                    rest.join(" ")
                ));
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
                    o.push_str(&format!("{pad}{name}\n"));
                } else {
                    o.push_str(&format!("{pad}{name} {}\n", args.join(" ")));
                }
            }
        }
    }
}
