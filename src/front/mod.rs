//! Spec front ends: YAML and the pixc DSL, both lowered to one AST (see `ast`).
//!
//! Pipeline: text -> `tree::Node` (per syntax) -> `build` (shared checks) -> `ast::Spec`.
//! `fmt` prints an AST back as canonical YAML or DSL, with the comments `comments` found.

pub mod ast;
pub mod build;
pub mod comments;
pub mod dsl;
pub mod dsl_hints;
pub mod flags;
pub mod fmt;
pub mod schema;
pub mod tree;
pub mod yaml;

use crate::diag::{Diagnostic, Span};

/// The two surface syntaxes of a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Yaml,
    Dsl,
}

impl Syntax {
    /// `.pixc` files are DSL; everything else is read as YAML.
    pub fn from_path(path: &str) -> Syntax {
        if path.ends_with(".pixc") {
            Syntax::Dsl
        } else {
            Syntax::Yaml
        }
    }
}

/// Checks that raw bytes can be a spec at all: size, UTF-8, no control characters.
pub fn check_text(bytes: &[u8]) -> Result<&str, Vec<Diagnostic>> {
    if bytes.len() > tree::MAX_SPEC_BYTES {
        return Err(vec![Diagnostic::new(
            Span::new(0, 1),
            format!(
                "the spec is {} bytes; a spec may be at most {} bytes",
                bytes.len(),
                tree::MAX_SPEC_BYTES
            ),
        )
        .label("file too large")
        .help("is this really a spec file? real specs are a few KiB")]);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            return Err(vec![Diagnostic::new(
                Span::new(at, at + 1),
                format!("the spec is not UTF-8 text (invalid byte at offset {at})"),
            )
            .label("invalid byte")
            .help("a spec is a YAML (.yaml) or pixc DSL (.pixc) text file")]);
        }
    };
    if let Some(pos) = text
        .char_indices()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        .map(|(i, _)| i)
    {
        return Err(vec![Diagnostic::new(
            Span::new(pos, pos + 1),
            "the spec contains a control character (binary data?)",
        )
        .label("control character")
        .help("a spec is a YAML (.yaml) or pixc DSL (.pixc) text file")]);
    }
    Ok(text)
}

/// Parses spec text in the given syntax.
pub fn parse(text: &str, syntax: Syntax) -> Result<ast::Spec, Vec<Diagnostic>> {
    let tree = match syntax {
        Syntax::Yaml => yaml::parse(text),
        Syntax::Dsl => dsl::parse(text),
    };
    tree.and_then(|t| build::build(&t))
        .map_err(|d| clamp_spans(d, text.len()))
}

/// Keeps every span inside the text (errors at end of input may point one past it).
pub fn clamp_spans(mut diags: Vec<Diagnostic>, len: usize) -> Vec<Diagnostic> {
    for d in &mut diags {
        d.span.start = d.span.start.min(len);
        d.span.end = d.span.end.clamp(d.span.start, len);
    }
    diags
}
