//! Located diagnostics: byte spans into a spec's text, rendered as `file:line:column` with a caret.
//!
//! Every stage that can reject user input (front ends, IR building, validation, causality)
//! reports `Diagnostic`s with a span, so the user always sees where and what would be right.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::NoColor, Chars, Config};

/// A half-open byte range `[start, end)` in the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start,
            end: end.max(start),
        }
    }
    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// One problem found in a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong: lowercase, no trailing period.
    pub message: String,
    pub span: Span,
    /// Short text shown under the caret.
    pub label: String,
    /// What would be right.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span,
            label: String::new(),
            help: None,
        }
    }
    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = clamp_to_char_boundary(source, offset);
    let before = &source[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

fn clamp_to_char_boundary(source: &str, offset: usize) -> usize {
    let mut o = offset.min(source.len());
    while o > 0 && !source.is_char_boundary(o) {
        o -= 1;
    }
    o
}

/// Renders diagnostics the way compilers do: a `file:line:col: error: message` header line
/// (easy to grep and to click in editors), then the source line with a caret and the help.
pub fn render(file_name: &str, source: &str, diags: &[Diagnostic]) -> String {
    // Never echo control characters (a NUL draws no caret, an ESC sequence would drive the
    // terminal); replace each by as many `?` as it has bytes so offsets stay valid.
    let shown: String = source
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' && c != '\r' {
                "?".repeat(c.len_utf8())
            } else {
                c.to_string()
            }
        })
        .collect();
    let source = shown.as_str();
    let file = SimpleFile::new(file_name, source);
    let config = Config {
        chars: Chars::ascii(),
        ..Config::default()
    };
    let mut out = String::new();
    for d in diags {
        let start = clamp_to_char_boundary(source, d.span.start);
        let end = clamp_to_char_boundary(source, d.span.end).max(start);
        let (line, col) = line_col(source, start);
        out.push_str(&format!("{file_name}:{line}:{col}: error: {}\n", d.message));
        let mut cs = CsDiagnostic::error()
            .with_message(&d.message)
            .with_labels(vec![Label::primary((), start..end).with_message(&d.label)]);
        if let Some(h) = &d.help {
            cs = cs.with_notes(vec![format!("help: {h}")]);
        }
        let mut buf = NoColor::new(Vec::new());
        if term::emit(&mut buf, &config, &file, &cs).is_ok() {
            let text = String::from_utf8_lossy(&buf.into_inner()).into_owned();
            // codespan repeats the message on its first line; our header already has it.
            let body: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
            out.push_str(&body);
        }
    }
    if diags.len() > 1 {
        out.push_str(&format!("{} errors\n", diags.len()));
    }
    out
}

/// Edit distance, for "did you mean" suggestions.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (levenshtein(&word.to_lowercase(), c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `diags` without repeats: a layer inside `repeat` is checked once per pass, and each
/// pass finds the same problem at the same place; it is reported once.
pub fn dedup(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diags.len());
    for d in diags {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// Diagnostics as JSON objects, one per problem, in the manner of cargo's
/// `--message-format=json`: file, 1-based line and column of the start and end, message,
/// label and help (`pixc check --json` on an invalid spec).
pub fn to_json(file_name: &str, source: &str, diags: &[Diagnostic]) -> Vec<serde_json::Value> {
    diags
        .iter()
        .map(|d| {
            let (line, column) = line_col(source, d.span.start);
            let (end_line, end_column) = line_col(source, d.span.end);
            serde_json::json!({
                "reason": "diagnostic",
                "severity": "error",
                "file": file_name,
                "line": line,
                "column": column,
                "end_line": end_line,
                "end_column": end_column,
                "message": d.message,
                "label": d.label,
                "help": d.help,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let s = "ab\ncd\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 4), (2, 2));
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("kernal", &["kernel", "out"]), Some("kernel"));
        assert_eq!(did_you_mean("zzz", &["kernel", "out"]), None);
    }
}
