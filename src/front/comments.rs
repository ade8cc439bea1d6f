//! Comments for `pixc fmt`: found in the source, attached to the spec element they annotate,
//! and handed back to the printers in `fmt`, so formatting never drops a comment.
//!
//! The front ends skip comments, so they are found here with a scanner per syntax, then
//! attached by position to an `Anchor`: a syntax-neutral name for a printed element (the
//! model line, a parameter, a layer by its path through the bodies, the end of a body, a
//! `train` key, ...). Both printers print the same anchors, so YAML -> DSL -> YAML carries
//! every comment across. A full-line comment annotates the element that follows it; a
//! trailing comment the element its line starts. What cannot be told apart from a value,
//! or cannot be placed, is an error naming its line: text is never lost silently.

use super::tree::{Node, Value};
use super::Syntax;
use crate::diag::{Diagnostic, Span};
use std::collections::BTreeMap;

/// One comment as written: `text` starts with `#` and has no trailing white space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub text: String,
    /// Byte offset of the `#`.
    pub offset: usize,
    /// 1-based line and 0-based byte column of the `#`.
    pub line: usize,
    pub col: usize,
    /// Alone on its line (else it follows something on the line).
    pub full_line: bool,
}

/// A printed element of a spec, the same in both syntaxes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Anchor {
    Model,
    /// The `params:` header (YAML only; in the DSL its comments go before the first `param`).
    Params,
    Param(String),
    Input,
    /// The `layers:` / `layers {` line.
    Layers,
    /// A multi-scale spec's `small:` / `small {` line; its layers' paths start with
    /// `SMALL`.
    Small,
    /// A layer: its index in `layers`, then in each enclosing body.
    Layer(Vec<usize>),
    /// The end of a body (`[]`: of `layers`), the DSL's closing `}`.
    BodyEnd(Vec<usize>),
    Train,
    /// One `train` key (YAML only; the DSL's `train` is one line).
    TrainKey(String),
    /// After everything.
    End,
}

/// The first path index of a `small` block's layers and body end (a `layers` index never
/// reaches it), so one `Anchor::Layer` space holds both lists.
pub const SMALL: usize = usize::MAX;

/// The comments attached to one anchor, in source order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attached {
    /// Full-line comments printed before the element.
    pub leading: Vec<Comment>,
    /// Comments on the element's line(s), printed at the end of its (first) line.
    pub trailing: Vec<Comment>,
}

impl Attached {
    pub fn is_empty(&self) -> bool {
        self.leading.is_empty() && self.trailing.is_empty()
    }

    /// Everything as full-line comments, in order (for elements with no line of their own).
    pub fn into_lines(self) -> Vec<Comment> {
        let mut v = self.leading;
        v.extend(self.trailing);
        v
    }
}

/// Comments of one spec, keyed by anchor; the printers take them out as they print.
#[derive(Clone, Debug, Default)]
pub struct Comments {
    map: BTreeMap<Anchor, Attached>,
}

impl Comments {
    /// No comments: the printers then print exactly the canonical text.
    pub fn none() -> Comments {
        Comments::default()
    }

    pub fn is_empty(&self) -> bool {
        self.map.values().all(Attached::is_empty)
    }

    /// Takes the comments of `anchor` (empty if it has none).
    pub fn take(&mut self, anchor: &Anchor) -> Attached {
        self.map.remove(anchor).unwrap_or_default()
    }

    /// Comments the printer did not place: each is an error naming its line.
    pub fn leftover(self) -> Vec<Comment> {
        let mut v: Vec<Comment> = self
            .map
            .into_values()
            .flat_map(Attached::into_lines)
            .collect();
        v.sort_by_key(|c| c.offset);
        v
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// 1-based line of a byte offset.
fn line_of(starts: &[usize], offset: usize) -> usize {
    starts.partition_point(|&s| s <= offset)
}

/// Finds the comments of a text in either syntax.
pub fn scan(text: &str, syntax: Syntax) -> Vec<Comment> {
    let mut out = Vec::new();
    let mut start = 0;
    for (n, raw) in text.split('\n').enumerate() {
        let found = match syntax {
            Syntax::Yaml => yaml_comment_start(raw),
            Syntax::Dsl => dsl_comment_start(raw),
        };
        if let Some(col) = found {
            out.push(Comment {
                text: raw[col..].trim_end().to_string(),
                offset: start + col,
                line: n + 1,
                col,
                full_line: raw[..col].trim().is_empty(),
            });
        }
        start += raw.len() + 1;
    }
    out
}

/// YAML: `#` at the start of a line or after a blank, outside quoted scalars.
fn yaml_comment_start(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(b'"') => {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    quote = None;
                }
            }
            Some(_) => {
                // `''` inside a single-quoted scalar is an escaped quote.
                if c == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 1;
                    } else {
                        quote = None;
                    }
                }
            }
            None => match c {
                b'#' if i == 0 || matches!(b[i - 1], b' ' | b'\t') => return Some(i),
                b'"' | b'\'' => {
                    // A quote opens a scalar only where a scalar can start (`it's` is plain).
                    let prev = line[..i].trim_end().as_bytes().last().copied();
                    if matches!(prev, None | Some(b':' | b'-' | b'[' | b'{' | b',' | b'?')) {
                        quote = Some(c);
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// DSL: the first `#` outside a parenthesised group (groups may hold `#`, see the grammar).
fn dsl_comment_start(line: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in line.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '#' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// Where an anchor's element starts in the source.
struct Pos {
    offset: usize,
    line: usize,
    anchor: Anchor,
}

/// A body (layer list) in the source: for YAML's end-of-body comments.
struct Body {
    path: Vec<usize>,
    span: Span,
    /// Column of its items' `-` (YAML), where an end-of-body comment is written.
    col: usize,
}

struct Walk<'a> {
    text: &'a str,
    starts: Vec<usize>,
    syntax: Syntax,
    pos: Vec<Pos>,
    bodies: Vec<Body>,
}

impl Walk<'_> {
    fn at(&mut self, offset: usize, anchor: Anchor) {
        let offset = offset.min(self.text.len());
        let line = line_of(&self.starts, offset);
        self.pos.push(Pos {
            offset,
            line,
            anchor,
        });
    }

    fn root(&mut self, root: &Node) {
        let Value::Map(entries) = &root.value else {
            return;
        };
        for (k, v) in entries {
            match k.name.as_str() {
                "model" => self.at(k.span.start, Anchor::Model),
                "params" => {
                    if self.syntax == Syntax::Yaml {
                        self.at(k.span.start, Anchor::Params);
                    }
                    if let Value::Map(m) = &v.value {
                        for (pk, _) in m {
                            self.at(pk.span.start, Anchor::Param(pk.name.clone()));
                        }
                    }
                }
                "input" => {
                    self.at(k.span.start, Anchor::Input);
                    self.keys(v, |_| Anchor::Input);
                }
                "layers" => {
                    self.at(k.span.start, Anchor::Layers);
                    self.body(v, Vec::new());
                }
                "small" => {
                    self.at(k.span.start, Anchor::Small);
                    self.body(v, vec![SMALL]);
                }
                "train" => {
                    self.at(k.span.start, Anchor::Train);
                    self.keys(v, |name| Anchor::TrainKey(name.to_string()));
                }
                _ => {}
            }
        }
    }

    fn keys(&mut self, node: &Node, anchor: impl Fn(&str) -> Anchor) {
        if let Value::Map(m) = &node.value {
            for (k, _) in m {
                self.at(k.span.start, anchor(&k.name));
            }
        }
    }

    fn body(&mut self, node: &Node, path: Vec<usize>) {
        let Value::Seq(items) = &node.value else {
            return;
        };
        if self.syntax == Syntax::Dsl {
            // A DSL body's span ends just after its closing brace.
            let close = node.span.end.saturating_sub(1);
            if self.text.as_bytes().get(close) == Some(&b'}') {
                self.at(close, Anchor::BodyEnd(path.clone()));
            }
        }
        // A block list's span starts at its first `-` (a flow list's at `[`: then the
        // first item's column stands for it).
        let start = if self.text.as_bytes().get(node.span.start) == Some(&b'-') {
            node.span.start
        } else {
            items.first().map_or(node.span.start, |f| f.span.start)
        };
        let start = start.min(self.text.len());
        let col = start - self.starts[line_of(&self.starts, start) - 1];
        self.bodies.push(Body {
            path: path.clone(),
            span: node.span,
            col,
        });
        for (i, item) in items.iter().enumerate() {
            let mut p = path.clone();
            p.push(i);
            self.at(item.span.start, Anchor::Layer(p.clone()));
            if let Value::Map(m) = &item.value {
                for (tk, args) in m {
                    self.at(tk.span.start, Anchor::Layer(p.clone()));
                    match &args.value {
                        Value::Map(am) => {
                            for (ak, av) in am {
                                self.at(ak.span.start, Anchor::Layer(p.clone()));
                                if ak.name == "body" {
                                    self.body(av, p.clone());
                                }
                            }
                        }
                        Value::Seq(_) => self.body(args, p.clone()),
                        _ => {}
                    }
                }
            }
        }
    }
}

fn error(c: &Comment, message: String, help: &str) -> Diagnostic {
    Diagnostic::new(Span::new(c.offset, c.offset + 1), message)
        .label("this comment")
        .help(help)
}

/// Counts `#` in the tree's keys and values (a `#` in the text is in a value or a comment).
fn hashes_in_tree(node: &Node) -> usize {
    match &node.value {
        Value::Scalar(s) => s.matches('#').count(),
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| k.name.matches('#').count() + hashes_in_tree(v))
            .sum(),
        Value::Seq(items) => items.iter().map(hashes_in_tree).sum(),
        Value::Null => 0,
    }
}

/// Finds the comments of `text` (parsed as `tree`) and attaches each to an anchor.
pub fn attach(text: &str, syntax: Syntax, tree: &Node) -> Result<Comments, Vec<Diagnostic>> {
    let found = scan(text, syntax);
    // Every `#` of the text must be in a value or in a comment found here; if not, the
    // scanner misread a line (a `#` in a multi-line quoted or block scalar): refuse it
    // rather than drop or invent text.
    let in_comments: usize = found.iter().map(|c| c.text.matches('#').count()).sum();
    if text.matches('#').count() != in_comments + hashes_in_tree(tree) {
        let starts = line_starts(text);
        let suspect = found.first().map_or_else(
            || {
                let at = text.find('#').unwrap_or(0);
                Comment {
                    text: String::new(),
                    offset: at,
                    line: line_of(&starts, at),
                    col: 0,
                    full_line: true,
                }
            },
            Clone::clone,
        );
        return Err(vec![error(
            &suspect,
            format!(
                "cannot tell comments from values containing `#` (near line {})",
                suspect.line
            ),
            "pixc fmt keeps every comment; write `#` inside values only in single-line quoted (YAML) or parenthesised (DSL) values",
        )]);
    }
    let mut w = Walk {
        text,
        starts: line_starts(text),
        syntax,
        pos: Vec::new(),
        bodies: Vec::new(),
    };
    w.root(tree);
    let mut comments = Comments::none();
    for c in found {
        let on_line = || w.pos.iter().find(|p| p.line == c.line);
        let (anchor, trailing) = if !c.full_line {
            match on_line().or_else(|| w.pos.iter().rev().find(|p| p.offset < c.offset)) {
                Some(p) => (p.anchor.clone(), true),
                None => (next_anchor(&w, &c), false),
            }
        } else {
            (next_anchor(&w, &c), false)
        };
        let a = comments.map.entry(anchor).or_default();
        if trailing {
            a.trailing.push(c);
        } else {
            a.leading.push(c);
        }
    }
    Ok(comments)
}

/// The anchor a full-line comment annotates: the next element, or in YAML the end of the
/// body just closed when the comment is indented as that body's items.
fn next_anchor(w: &Walk<'_>, c: &Comment) -> Anchor {
    if w.syntax == Syntax::Yaml {
        let prev = w
            .pos
            .iter()
            .filter(|p| p.offset < c.offset)
            .max_by_key(|p| p.offset);
        if let Some(prev) = prev {
            let body = w
                .bodies
                .iter()
                .filter(|b| {
                    b.span.start <= prev.offset
                        && prev.offset < b.span.end
                        && b.span.end <= c.offset
                        && b.col <= c.col
                })
                .max_by_key(|b| b.path.len());
            if let Some(b) = body {
                return Anchor::BodyEnd(b.path.clone());
            }
        }
    }
    let mut best: Option<&Pos> = None;
    for p in &w.pos {
        if p.line > c.line && best.is_none_or(|b| p.line < b.line) {
            best = Some(p);
        }
    }
    best.map_or(Anchor::End, |p| p.anchor.clone())
}

/// Checks that every comment of the input is in the output (as text, in any place):
/// the last guard against losing a comment.
pub fn check_kept(input: &[Comment], output: &str, to: Syntax) -> Result<(), Vec<Diagnostic>> {
    let mut out: Vec<String> = scan(output, to).into_iter().map(|c| c.text).collect();
    let mut errors = Vec::new();
    for c in input {
        match out.iter().position(|t| *t == c.text) {
            Some(i) => {
                out.swap_remove(i);
            }
            None => errors.push(error(
                c,
                format!(
                    "the comment on line {} cannot be placed in the formatted spec",
                    c.line
                ),
                "move it onto its own line before the layer or key it describes",
            )),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Leftover comments (attached to something the printer did not print) as errors.
pub fn unplaced(left: Vec<Comment>) -> Result<(), Vec<Diagnostic>> {
    if left.is_empty() {
        return Ok(());
    }
    Err(left
        .iter()
        .map(|c| {
            error(
                c,
                format!(
                    "the comment on line {} cannot be placed in the formatted spec",
                    c.line
                ),
                "move it onto its own line before the layer or key it describes",
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scanner_skips_hashes_in_values() {
        let src = "a: \"x # y\"  # real\nb: it's # also\nc: x#y\n  # full\n";
        let c = scan(src, Syntax::Yaml);
        let texts: Vec<_> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["# real", "# also", "# full"]);
        assert!(c[2].full_line && !c[0].full_line);
    }

    #[test]
    fn dsl_scanner_skips_hashes_in_groups() {
        let src = "train data=(a # b) # real\nrelu# tight\n";
        let texts: Vec<_> = scan(src, Syntax::Dsl).into_iter().map(|c| c.text).collect();
        assert_eq!(texts, ["# real", "# tight"]);
    }
}
