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

/// What a spec is; the help of every "not spec text" diagnostic starts with it.
const SPEC_IS: &str = "a spec is a YAML (.yaml) or pixc DSL (.pixc) text file";

/// What a binary file named `name` is, when it is one of the files pixc writes or reads
/// beside specs (an easy mix-up on a command line), and where such a file goes instead
/// ("" when nowhere on pixc's command line).
fn binary_kind(name: &str, bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    let safetensors = bytes.len() > 8
        && bytes[8] == b'{'
        && u64::from_le_bytes(bytes[..8].try_into().ok()?) < bytes.len() as u64;
    if name.ends_with(".onnx") {
        Some((
            "an ONNX model",
            "an ONNX model is read by `pixc sample --onnx FILE` and `pixc eval --onnx FILE`; for a run, give its folder",
        ))
    } else if safetensors {
        Some((
            "a safetensors file (weights)",
            "for a run's or model's weights, give the folder that holds them (its spec.yaml is beside them)",
        ))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("a PNG image", ""))
    } else if bytes.starts_with(b"\x93NUMPY") {
        Some(("a NumPy array (.npy)", ""))
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        Some((
            "a gzip archive",
            "data files go to `--data` or `--mnist-dir`",
        ))
    } else {
        None
    }
}

/// A binary file named `name` that pixc knows as something other than a spec: what it
/// is, at 1:1 (its bytes are no source line to show). None for text, and for binary
/// data of no known kind (`check_text` reports those).
pub fn not_a_spec(name: &str, bytes: &[u8]) -> Option<Diagnostic> {
    let text = std::str::from_utf8(bytes);
    let binary = text.map_or(true, |t| {
        t.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    });
    let (what, instead) = binary.then(|| binary_kind(name, bytes)).flatten()?;
    let help = match instead {
        "" => SPEC_IS.to_string(),
        _ => format!("{SPEC_IS}; {instead}"),
    };
    Some(
        Diagnostic::new(Span::new(0, 0), format!("this is {what}, not a spec"))
            .label("not spec text")
            .help(help),
    )
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
            .help(SPEC_IS)]);
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
        .help(SPEC_IS)]);
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

#[cfg(test)]
mod tests {
    use super::not_a_spec;

    #[test]
    fn known_binary_files_are_named_and_text_is_left_to_the_parser() {
        let named = |name: &str, bytes: &[u8]| not_a_spec(name, bytes).map(|d| d.message);
        let is = |what: &str| Some(format!("this is {what}, not a spec"));
        assert_eq!(
            named("x.npy", b"\x93NUMPY\x01\x00"),
            is("a NumPy array (.npy)")
        );
        assert_eq!(named("x.gz", &[0x1f, 0x8b, 8, 0]), is("a gzip archive"));
        assert_eq!(named("x", b"\x89PNG\r\n\x1a\n\0"), is("a PNG image"));
        assert_eq!(named("m.onnx", &[8, 10, 0xff]), is("an ONNX model"));
        // A text file is the parser's to judge, whatever its name; unknown binary data is
        // `check_text`'s.
        assert_eq!(named("m.onnx", b"model: m\n"), None);
        assert_eq!(named("x.yaml", &[0xff, 0xfe, 0]), None);
    }
}
