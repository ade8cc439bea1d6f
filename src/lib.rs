//! pixc: a compiler for declarative PixelRNN-family model specs.
//!
//! Pipeline (one module per stage):
//! `front` (YAML / DSL front ends -> AST) -> `ir::lower` (AST -> graph) -> `ir::validate`
//! (shapes, rules, causality proof -> `ir::validate::Model`) -> back ends.
//! See ARCHITECTURE.md for the code map and invariants.

pub mod app;
pub mod backend;
pub mod cli;
pub mod data;
pub mod device;
pub mod diag;
pub mod front;
pub mod integrity;
pub mod ir;
pub mod plot;
pub mod runtime;
pub mod sample;
pub mod shell;
pub mod snapshot;
pub mod train;
pub mod usage;
pub mod util;
pub mod weights;

use diag::Diagnostic;
use front::{ast::Spec, Syntax};
use ir::validate::{Model, Options};

/// Compiles spec text to a validated model.
pub fn compile_str(text: &str, syntax: Syntax) -> Result<(Spec, Model), Vec<Diagnostic>> {
    compile_with(text, syntax, Options::default())
}

/// As `compile_str`, with validation options.
pub fn compile_with(
    text: &str,
    syntax: Syntax,
    opts: Options,
) -> Result<(Spec, Model), Vec<Diagnostic>> {
    let spec = front::parse(text, syntax)?;
    let graph = ir::lower::lower(&spec).map_err(diag::dedup)?;
    let low_res = graph.image.low_res;
    let model = ir::validate::validate(graph, opts);
    // A multi-scale spec: its small model, compiled on its own (errors of both at once).
    let small = match (&spec.small, low_res) {
        (None, _) => None,
        (Some(s), None) => Some(Err(vec![Diagnostic::new(
            s.span,
            "`small` is the model of the low-res subsample, but `input` has no `low_res`",
        )
        .label("a small model of nothing")
        .help("add `low_res: 2` to `input` (the subsampling factor), or remove `small`")])),
        (Some(_), Some(l)) => {
            let small_spec = spec.small_spec(l.factor).expect("the spec has `small`");
            Some(ir::lower::lower(&small_spec).and_then(|g| ir::validate::validate(g, opts)))
        }
    };
    match (model, small) {
        (Ok(m), None) => Ok((spec, m)),
        (Ok(m), Some(Ok(s))) => Ok((spec, m.with_small(s))),
        (Err(mut e), Some(Err(se))) => {
            e.extend(se);
            Err(diag::dedup(e))
        }
        (Err(e), _) | (Ok(_), Some(Err(e))) => Err(diag::dedup(e)),
    }
}

/// A spec that failed to compile, with its diagnostics already rendered against the file.
#[derive(Debug)]
pub struct SpecError {
    pub rendered: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.rendered.trim_end())
    }
}

impl std::error::Error for SpecError {}

/// Reads and compiles a spec file (`.pixc` = DSL, anything else YAML).
pub fn compile_file(path: &std::path::Path) -> Result<(Spec, Model, String), SpecError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| SpecError {
        rendered: format!("{name}: error: cannot read the spec: {e}\n"),
        diagnostics: vec![],
    })?;
    compile_bytes(&name, &bytes, Options::default()).map(|(s, m, t)| (s, m, t.to_string()))
}

/// Compiles raw bytes named `name` (the name chooses the syntax and appears in errors).
pub fn compile_bytes<'a>(
    name: &str,
    bytes: &'a [u8],
    opts: Options,
) -> Result<(Spec, Model, &'a str), SpecError> {
    if let Some(d) = front::not_a_spec(name, bytes) {
        // No source snippet: the file's first "line" is binary.
        let help = d.help.as_deref().unwrap_or_default();
        return Err(SpecError {
            rendered: format!("{name}:1:1: error: {}\n  = help: {help}\n", d.message),
            diagnostics: vec![d],
        });
    }
    let text = front::check_text(bytes).map_err(|d| SpecError {
        rendered: diag::render(name, &String::from_utf8_lossy(bytes), &d),
        diagnostics: d,
    })?;
    let syntax = Syntax::from_path(name);
    compile_with(text, syntax, opts)
        .map(|(s, m)| (s, m, text))
        .map_err(|d| match syntax {
            // Hints in the file's own syntax.
            Syntax::Dsl => d.into_iter().map(front::dsl_hints::for_dsl).collect(),
            Syntax::Yaml => d,
        })
        .map_err(|d| SpecError {
            rendered: diag::render(name, text, &d),
            diagnostics: d,
        })
}
