//! YAML front end: text -> spanned value tree, via yaml-rust2's event parser (which gives marks).

use super::tree::{Key, Node, Value, MAX_DEPTH};
use crate::diag::{Diagnostic, Span};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Parses YAML text into a tree; a syntax error is reported with its location.
pub fn parse(source: &str) -> Result<Node, Vec<Diagnostic>> {
    let offsets = CharOffsets::new(source);
    let mut b = Builder {
        source,
        stack: Vec::new(),
        root: None,
        offsets: &offsets,
        errors: Vec::new(),
        skipped_depth: 0,
        docs: 0,
    };
    // Pull events one at a time: `Parser::load` recurses once per nesting level and a
    // hostile file could overflow the stack before our depth check ran.
    let mut parser = Parser::new_from_str(source);
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => {
                b.on_event(ev, mark);
                if b.skipped_depth > 0 {
                    // Too deep: the error is recorded; nothing after it matters.
                    break;
                }
            }
            Err(e) => {
                let at = offsets.byte(e.marker().index()).min(source.len());
                return Err(vec![Diagnostic::new(
                    Span::new(at, (at + 1).min(source.len().max(at))),
                    format!("invalid YAML: {}", e.info()),
                )
                .label("here")
                .help(
                    "check indentation and that every `key: value` and `- item` is well formed",
                )]);
            }
        }
    }
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    match b.root {
        Some(root) => Ok(root),
        None => Err(vec![Diagnostic::new(Span::new(0, 0), "the spec is empty")
            .label("nothing here")
            .help(
                "a spec needs at least `input:` and `layers:`; see examples/tiny.yaml",
            )]),
    }
}

/// yaml-rust2 marks positions in characters; diagnostics use byte offsets.
struct CharOffsets {
    /// None when the text is ASCII (char index == byte offset).
    table: Option<Vec<u32>>,
    len: usize,
}

impl CharOffsets {
    fn new(s: &str) -> CharOffsets {
        let table = if s.is_ascii() {
            None
        } else {
            Some(s.char_indices().map(|(i, _)| i as u32).collect())
        };
        CharOffsets {
            table,
            len: s.len(),
        }
    }
    fn byte(&self, char_index: usize) -> usize {
        match &self.table {
            None => char_index.min(self.len),
            Some(t) => t.get(char_index).map(|&b| b as usize).unwrap_or(self.len),
        }
    }
}

enum Frame {
    Seq(Vec<Node>, usize),
    Map(Vec<(Key, Node)>, Option<Key>, usize),
}

struct Builder<'a> {
    source: &'a str,
    stack: Vec<Frame>,
    root: Option<Node>,
    offsets: &'a CharOffsets,
    errors: Vec<Diagnostic>,
    /// Depth of nested containers being ignored after MAX_DEPTH was exceeded.
    skipped_depth: usize,
    docs: usize,
}

impl Builder<'_> {
    fn source_byte(&self, at: usize) -> Option<u8> {
        self.source.as_bytes().get(at).copied()
    }

    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _)) => match pending.take() {
                None => {
                    // A key. Only scalar keys make sense in a spec.
                    let name = match &node.value {
                        Value::Scalar(s) => s.clone(),
                        Value::Null => String::new(),
                        _ => {
                            self.errors.push(
                                Diagnostic::new(node.span, "a mapping key must be a plain name")
                                    .label("complex key")
                                    .help("write keys as `name: value`"),
                            );
                            String::from("?")
                        }
                    };
                    *pending = Some(Key {
                        name,
                        span: node.span,
                    });
                }
                Some(key) => {
                    if entries.iter().any(|(k, _)| k.name == key.name) {
                        self.errors.push(
                            Diagnostic::new(key.span, format!("duplicate key `{}`", key.name))
                                .label("second occurrence")
                                .help("each key may appear once in a mapping"),
                        );
                    }
                    entries.push((key, node));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = self.offsets.byte(mark.index());
        if self.skipped_depth > 0 {
            match ev {
                Event::SequenceStart(..) | Event::MappingStart(..) => self.skipped_depth += 1,
                Event::SequenceEnd | Event::MappingEnd => self.skipped_depth -= 1,
                _ => {}
            }
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.docs += 1;
                if self.docs == 2 {
                    self.errors.push(
                        Diagnostic::new(
                            Span::new(at, at + 3),
                            "a spec file holds one YAML document",
                        )
                        .label("second document starts here")
                        .help("put each model in its own file"),
                    );
                }
            }
            Event::Scalar(text, style, _, _) => {
                let len = text.len().max(1);
                let value = if style == TScalarStyle::Plain
                    && (text.is_empty() || text == "~" || text == "null")
                {
                    Value::Null
                } else {
                    Value::Scalar(text)
                };
                let span = if style == TScalarStyle::Plain {
                    Span::new(at, at + len)
                } else {
                    // Quoted: the mark is at the opening quote.
                    Span::new(at, at + len + 2)
                };
                self.push_value(Node { value, span });
            }
            Event::Alias(_) => {
                self.errors.push(
                    Diagnostic::new(
                        Span::new(at, at + 1),
                        "YAML aliases are not supported in specs",
                    )
                    .label("alias")
                    .help("use `params:` and `repeat:` to share sizes and layers"),
                );
                self.push_value(Node {
                    value: Value::Null,
                    span: Span::new(at, at + 1),
                });
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.errors.push(
                        Diagnostic::new(
                            Span::new(at, at + 1),
                            format!("nesting is deeper than {MAX_DEPTH} levels"),
                        )
                        .label("too deep")
                        .help("flatten the spec; `repeat:` expresses repeated layers"),
                    );
                    self.skipped_depth = 1;
                    return;
                }
                if matches!(ev, Event::SequenceStart(..)) {
                    self.stack.push(Frame::Seq(Vec::new(), at));
                } else {
                    self.stack.push(Frame::Map(Vec::new(), None, at));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                // A block container's end mark is the next token, often on a later line:
                // end the span at its last child instead, so carets stay on the text.
                let node = match self.stack.pop() {
                    Some(Frame::Seq(items, start)) => Node {
                        span: Span::new(
                            start,
                            items.last().map_or(at, |n| n.span.end).max(start + 1),
                        ),
                        value: Value::Seq(items),
                    },
                    Some(Frame::Map(entries, _, start)) => {
                        let end = entries.last().map_or(at, |(_, n)| n.span.end);
                        // Flow mappings (`{...}`) include their closing brace.
                        let end = if self.source_byte(at) == Some(b'}') {
                            at + 1
                        } else {
                            end
                        };
                        Node {
                            span: Span::new(start, end.max(start + 1)),
                            value: Value::Map(entries),
                        }
                    }
                    None => return,
                };
                self.push_value(node);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_scalars() {
        let src = "a: 1\nb:\n  - x\n";
        let n = parse(src).unwrap();
        let Value::Map(m) = n.value else { panic!() };
        assert_eq!(&src[m[1].0.span.start..m[1].0.span.end], "b");
        let Value::Seq(s) = &m[1].1.value else {
            panic!()
        };
        assert_eq!(&src[s[0].span.start..s[0].span.end], "x");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = "[".repeat(100_000);
        assert!(parse(&src).is_err());
    }
}
