//! Hints that need the spec's expressions, which the IR no longer holds: when an RGB
//! width written as an expression over one parameter (`out: 2*h`) is not a multiple of 3,
//! the fix is the parameter, so the hint names values of it rather than of the width.

use super::lower::eval_expr;
use crate::diag::Diagnostic;
use crate::front::ast::{Expr, Layer, LayerKind, Spec};
use std::collections::HashMap;

/// `diags` with the multiple-of-3 hints of widths written over one parameter rewritten.
pub fn refine(spec: &Spec, diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut env = HashMap::new();
    for p in &spec.params {
        if let Ok(v) = eval_expr(&p.value.node, &env) {
            env.insert(p.name.node.clone(), v);
        }
    }
    diags
        .into_iter()
        .map(|mut d| {
            if d.message.contains("not a multiple of 3") {
                if let Some(h) = find(&spec.layers, d.span).and_then(|e| param_hint(e, &env)) {
                    d.help = Some(h);
                }
            }
            d
        })
        .collect()
}

/// The width expression (`out` or `hidden`) of the layer at `span`.
fn find(layers: &[Layer], span: crate::diag::Span) -> Option<&Expr> {
    for l in layers {
        let own = match &l.kind {
            LayerKind::Conv { out, .. } => Some(&out.node),
            LayerKind::RowLstm { hidden, .. }
            | LayerKind::DiagBiLstm { hidden, .. }
            | LayerKind::PixelCnnBlock { hidden } => Some(&hidden.node),
            LayerKind::Residual { body } | LayerKind::Repeat { body, .. } => {
                if let Some(e) = find(body, span) {
                    return Some(e);
                }
                None
            }
            _ => None,
        };
        if l.span == span {
            if let Some(e) = own {
                return Some(e);
            }
        }
    }
    None
}

fn params_of(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Int(_) => {}
        Expr::Param(p) => {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        Expr::Bin(a, _, b) => {
            params_of(a, out);
            params_of(b, out);
        }
    }
}

/// For an expression over exactly one parameter: the nearest values of it, below and
/// above, that make the expression a positive multiple of 3.
fn param_hint(e: &Expr, env: &HashMap<String, i64>) -> Option<String> {
    let mut ps = Vec::new();
    params_of(e, &mut ps);
    let [p] = ps.as_slice() else {
        return None;
    };
    let v = *env.get(p)?;
    let ok = |x: i64| {
        let mut env = env.clone();
        env.insert(p.clone(), x);
        eval_expr(e, &env).is_ok_and(|r| r > 0 && r % 3 == 0)
    };
    let below = (1..v).rev().take(12).find(|&x| ok(x));
    let above = (v + 1..=v + 12).find(|&x| ok(x));
    let choices = match (below, above) {
        (Some(a), Some(b)) => format!("{a} or {b}"),
        (Some(a), None) | (None, Some(a)) => a.to_string(),
        (None, None) => return None,
    };
    let what = if matches!(e, Expr::Param(_)) {
        format!("`{p}` is {v}")
    } else {
        format!("`{e}` with `{p}` = {v}")
    };
    Some(format!(
        "{what}: set `{p}` to {choices}, so it is a multiple of 3"
    ))
}
