//! DSL front end: the line-oriented pixc language (grammar in grammar/pixc.ebnf) -> value tree.
//!
//! Statements are parsed with nom; block structure (`{` ... `}`) is tracked with an explicit
//! stack rather than recursion, so nesting depth is checked and never exhausts the stack.

use super::tree::{Key, Node, Value, MAX_DEPTH};
use crate::diag::{Diagnostic, Span};
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, space0, space1};
use nom::combinator::{opt, recognize};
use nom::multi::many0;
use nom::sequence::preceded;
use nom::{IResult, Parser};

/// Top-level statements and the tree key each one fills.
const TOP_LEVEL: &[&str] = &["model", "param", "input", "layers", "small", "train"];

/// The key a layer's first bare argument stands for (`conv 7x7` means `kernel: 7x7`).
pub fn positional_key(layer: &str) -> Option<&'static str> {
    match layer {
        "conv" => Some("kernel"),
        "repeat" => Some("count"),
        "head" => Some("kind"),
        _ => None,
    }
}

/// One parsed line: `word item* [{]` or a lone `}`.
#[derive(Debug)]
struct Line<'a> {
    word: &'a str,
    items: Vec<Item<'a>>,
    opens_block: bool,
}

#[derive(Debug)]
enum Item<'a> {
    /// `key=value`
    Attr(&'a str, &'a str),
    /// a bare word: a positional value or a flag
    Bare(&'a str),
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '{' | '}' | '=' | '#' | '(' | ')')
}

fn ident(i: &str) -> IResult<&str, &str> {
    take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_')(i)
}

/// A value: a run of word characters, or a parenthesised expression that may hold spaces.
fn value(i: &str) -> IResult<&str, &str> {
    recognize(many0(alt((take_while1(is_word_char), paren_group))))
        .parse(i)
        .and_then(|(rest, v)| {
            if v.is_empty() {
                Err(nom::Err::Error(nom::error::Error::new(
                    i,
                    nom::error::ErrorKind::TakeWhile1,
                )))
            } else {
                Ok((rest, v))
            }
        })
}

/// A balanced parenthesised group on one line (nesting allowed, no braces inside).
fn paren_group(i: &str) -> IResult<&str, &str> {
    let err = || nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Char));
    if !i.starts_with('(') {
        return Err(err());
    }
    let mut depth = 0usize;
    for (k, c) in i.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((&i[k + 1..], &i[..k + 1]));
                }
            }
            '\n' | '{' | '}' => return Err(err()),
            _ => {}
        }
    }
    Err(err())
}

fn item(i: &str) -> IResult<&str, Item<'_>> {
    alt((
        (ident, preceded((space0, char('='), space0), value)).map(|(k, v)| Item::Attr(k, v)),
        value.map(Item::Bare),
    ))
    .parse(i)
}

fn comment(i: &str) -> IResult<&str, &str> {
    recognize((char('#'), take_while(|c| c != '\n'))).parse(i)
}

fn line(i: &str) -> IResult<&str, Line<'_>> {
    let (i, word) = ident(i)?;
    let (i, items) = many0(preceded(space1, item)).parse(i)?;
    let (i, brace) = opt(preceded(space0, tag("{"))).parse(i)?;
    Ok((
        i,
        Line {
            word,
            items,
            opens_block: brace.is_some(),
        },
    ))
}

struct Open {
    /// The layer (or `layers`) that opened the block.
    word: String,
    head: Node,
    items: Vec<Node>,
    span_start: usize,
}

/// Parses DSL text into the same value tree the YAML front end produces.
pub fn parse(source: &str) -> Result<Node, Vec<Diagnostic>> {
    let mut p = LineParser {
        source,
        errors: Vec::new(),
        root: Vec::new(),
        params: Vec::new(),
        params_span: None,
        stack: Vec::new(),
    };
    let mut pos = 0usize;
    while pos < source.len() {
        let end = source[pos..]
            .find('\n')
            .map(|e| pos + e)
            .unwrap_or(source.len());
        let raw = &source[pos..end];
        let line_start = pos;
        pos = end + 1;
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        let body = trimmed.trim_end();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let at = line_start + indent;
        if let Some(rest) = body.strip_prefix('}') {
            p.close_brace(rest, at);
            continue;
        }
        let Some(l) = p.statement(body, at) else {
            continue;
        };
        let word_span = Span::new(p.off(l.word), p.off(l.word) + l.word.len());
        let line_span = Span::new(at, at + body.len());
        if p.stack.is_empty() {
            p.top_level(&l, word_span, line_span, at);
        } else if p.layer_line(&l, word_span, line_span, at).is_err() {
            return Err(p.errors);
        }
    }
    p.finish()
}

/// Byte offset in `source` of `s`, a slice of it.
fn offset(source: &str, s: &str) -> usize {
    s.as_ptr() as usize - source.as_ptr() as usize
}

/// The DSL parser's state between lines: the top-level entries, the parameters, and the
/// blocks still open.
struct LineParser<'s> {
    source: &'s str,
    errors: Vec<Diagnostic>,
    root: Vec<(Key, Node)>,
    params: Vec<(Key, Node)>,
    params_span: Option<Span>,
    stack: Vec<Open>,
}

impl<'s> LineParser<'s> {
    /// Byte offset in the source of a slice of it.
    fn off(&self, s: &str) -> usize {
        offset(self.source, s)
    }

    /// A line starting with `}` at `at`; `rest` is what follows the brace.
    fn close_brace(&mut self, rest: &str, at: usize) {
        let rest = rest.trim();
        if !rest.is_empty() && !rest.starts_with('#') {
            let s = self.off(rest);
            self.errors.push(
                Diagnostic::new(Span::new(s, s + rest.len()), "unexpected text after `}`")
                    .label("put this on its own line")
                    .help("a closing brace stands alone on its line"),
            );
        }
        match self.stack.pop() {
            None => self.errors.push(
                Diagnostic::new(Span::new(at, at + 1), "unmatched `}`")
                    .label("no block is open here")
                    .help("remove it, or open a block with `layers {` or `repeat N {`"),
            ),
            Some(open) => {
                let small = open.word == "small";
                let node = close_block(open, at + 1);
                if small && self.stack.is_empty() {
                    push_top(&mut self.root, "small", node.span, node, &mut self.errors);
                } else {
                    attach(&mut self.stack, &mut self.root, node, &mut self.errors);
                }
            }
        }
    }

    /// A statement line (name, arguments, maybe `{`), or None with its error reported.
    fn statement<'a>(&mut self, body: &'a str, at: usize) -> Option<Line<'a>> {
        let Ok((rest, l)) = line(body) else {
            self.errors.push(
                Diagnostic::new(Span::new(at, at + 1), "expected a statement name")
                    .label("here")
                    .help("a line starts with a name such as `conv`, `relu`, `param` or `input`"),
            );
            return None;
        };
        let rest_t = rest.trim_start();
        if !rest_t.is_empty() && comment(rest_t).is_err() {
            let s = self.off(rest_t);
            let what = rest_t.chars().next().unwrap_or(' ');
            self.errors.push(
                Diagnostic::new(Span::new(s, s + what.len_utf8()), format!("unexpected `{what}`"))
                    .label("not understood")
                    .help("write arguments as `key=value` separated by spaces; a block opens with `{` at the end of the line"),
            );
            return None;
        }
        Some(l)
    }

    /// A statement outside every block: `model`, `param`, `input`, `train`, `layers {`.
    fn top_level(&mut self, l: &Line<'_>, word_span: Span, line_span: Span, at: usize) {
        match l.word {
            "model" => {
                let v = match l.items.as_slice() {
                    [Item::Bare(name)] => scalar(name, self.off(name)),
                    _ => {
                        self.errors.push(
                            Diagnostic::new(line_span, "`model` takes one name")
                                .label("here")
                                .help("write `model my_model_name`"),
                        );
                        return;
                    }
                };
                push_top(&mut self.root, "model", word_span, v, &mut self.errors);
            }
            "param" => self.param(l, line_span),
            "input" | "train" => {
                let src = self.source;
                let m = attrs_map(l.word, &l.items, |s| offset(src, s), &mut self.errors);
                let node = Node {
                    value: Value::Map(m),
                    span: line_span,
                };
                push_top(&mut self.root, l.word, word_span, node, &mut self.errors);
                if l.opens_block {
                    self.errors.push(
                        Diagnostic::new(line_span, format!("`{}` does not take a block", l.word))
                            .label("remove the `{`"),
                    );
                }
            }
            "layers" | "small" => {
                if !l.items.is_empty() || !l.opens_block {
                    self.errors.push(
                        Diagnostic::new(line_span, format!("`{}` opens a block", l.word))
                            .label("here")
                            .help(format!(
                                "write `{} {{`, then one layer per line, then `}}`",
                                l.word
                            )),
                    );
                    // A bare `layers` is a forgotten `{`: read on as if it were there,
                    // so the layers and the `}` after it are not reported as well.
                    if !l.items.is_empty() {
                        return;
                    }
                }
                self.stack.push(Open {
                    word: l.word.into(),
                    head: Node {
                        value: Value::Null,
                        span: word_span,
                    },
                    items: Vec::new(),
                    span_start: at,
                });
            }
            other => {
                let mut d = Diagnostic::new(word_span, format!("unknown statement `{other}`"))
                    .label("not a top-level statement");
                d = match crate::diag::did_you_mean(other, TOP_LEVEL) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(
                        "top-level statements are `model`, `param`, `input`, `layers { ... }` and `train`; layers go inside `layers { ... }`",
                    ),
                };
                self.errors.push(d);
            }
        }
    }

    /// `param h = 16` (the item parser sees `h = 16` as an attribute).
    fn param(&mut self, l: &Line<'_>, line_span: Span) {
        match l.items.as_slice() {
            [Item::Attr(k, v)] => {
                let ks = self.off(k);
                let key = Key {
                    name: k.to_string(),
                    span: Span::new(ks, ks + k.len()),
                };
                if self.params.iter().any(|(p, _)| p.name == key.name) {
                    self.errors.push(
                        Diagnostic::new(key.span, format!("parameter `{k}` is defined twice"))
                            .label("second definition")
                            .help("give each parameter one value"),
                    );
                }
                self.params.push((key, scalar(v, self.off(v))));
                self.params_span = Some(self.params_span.map_or(line_span, |s| s.join(line_span)));
            }
            _ => self.errors.push(
                Diagnostic::new(line_span, "malformed parameter")
                    .label("here")
                    .help("write `param NAME = VALUE`, e.g. `param h = 16`"),
            ),
        }
    }

    /// A layer inside a block, maybe opening a block of its own. Err: nesting too deep,
    /// where parsing stops.
    fn layer_line(
        &mut self,
        l: &Line<'_>,
        word_span: Span,
        line_span: Span,
        at: usize,
    ) -> Result<(), ()> {
        let src = self.source;
        let node = layer_node(
            l,
            word_span,
            line_span,
            |s| offset(src, s),
            &mut self.errors,
        );
        if l.opens_block {
            // A DSL block costs about three YAML levels (layer, arguments, body), so the
            // same limit in both syntaxes keeps every DSL spec convertible to YAML.
            if self.stack.len() >= MAX_DEPTH / 3 {
                self.errors.push(
                    Diagnostic::new(
                        line_span,
                        format!("blocks are nested deeper than {} levels", MAX_DEPTH / 3),
                    )
                    .label("too deep")
                    .help("flatten the spec; `repeat` expresses repeated layers"),
                );
                return Err(());
            }
            self.stack.push(Open {
                word: l.word.to_string(),
                head: node,
                items: Vec::new(),
                span_start: at,
            });
        } else if let Some(top) = self.stack.last_mut() {
            top.items.push(node);
        }
        Ok(())
    }

    /// Reports blocks left open and builds the tree.
    fn finish(mut self) -> Result<Node, Vec<Diagnostic>> {
        while let Some(open) = self.stack.pop() {
            self.errors.push(
                Diagnostic::new(
                    Span::new(open.span_start, open.span_start + open.word.len()),
                    format!("block `{}` is never closed", open.word),
                )
                .label("opened here")
                .help("add a line with `}`"),
            );
        }
        if !self.params.is_empty() {
            let span = self.params_span.unwrap_or_default();
            self.root.insert(
                0,
                (
                    Key {
                        name: "params".into(),
                        span,
                    },
                    Node {
                        value: Value::Map(self.params),
                        span,
                    },
                ),
            );
        }
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        if self.root.is_empty() {
            return Err(vec![Diagnostic::new(Span::new(0, 0), "the spec is empty")
                .label("nothing here")
                .help(
                    "a spec needs at least `input ...` and `layers { ... }`; see examples/tiny.pixc",
                )]);
        }
        Ok(Node {
            value: Value::Map(self.root),
            span: Span::new(0, self.source.len()),
        })
    }
}

fn scalar(text: &str, start: usize) -> Node {
    Node {
        value: Value::Scalar(unparen(text).to_string()),
        span: Span::new(start, start + text.len()),
    }
}

/// `(png:my dir)` -> `png:my dir`: parentheses that wrap a whole value only protect its
/// spaces (the printer adds them); they are not part of the value.
fn unparen(text: &str) -> &str {
    match paren_group(text) {
        Ok(("", _)) => &text[1..text.len() - 1],
        _ => text,
    }
}

fn push_top(
    root: &mut Vec<(Key, Node)>,
    name: &str,
    span: Span,
    node: Node,
    errors: &mut Vec<Diagnostic>,
) {
    if root.iter().any(|(k, _)| k.name == name) {
        errors.push(
            Diagnostic::new(span, format!("`{name}` appears twice"))
                .label("second occurrence")
                .help(format!("a spec has one `{name}` line")),
        );
        return;
    }
    root.push((
        Key {
            name: name.into(),
            span,
        },
        node,
    ));
}

fn attrs_map(
    word: &str,
    items: &[Item<'_>],
    off: impl Fn(&str) -> usize,
    errors: &mut Vec<Diagnostic>,
) -> Vec<(Key, Node)> {
    let mut m: Vec<(Key, Node)> = Vec::new();
    let mut positional_used = false;
    for it in items {
        let (k, v, kspan) = match it {
            Item::Attr(k, v) => (
                k.to_string(),
                scalar(v, off(v)),
                Span::new(off(k), off(k) + k.len()),
            ),
            Item::Bare(b) => {
                let s = off(b);
                let span = Span::new(s, s + b.len());
                match positional_key(word) {
                    Some(pk) if !positional_used => {
                        positional_used = true;
                        (pk.to_string(), scalar(b, s), span)
                    }
                    _ => {
                        // A bare word is a flag: `residual skip` means `skip=true`.
                        let flag = Node {
                            value: Value::Scalar("true".into()),
                            span,
                        };
                        (b.to_string(), flag, span)
                    }
                }
            }
        };
        if m.iter().any(|(key, _)| key.name == k) {
            errors.push(
                Diagnostic::new(kspan, format!("`{k}` is given twice"))
                    .label("second occurrence")
                    .help("give each argument once"),
            );
            continue;
        }
        m.push((
            Key {
                name: k,
                span: kspan,
            },
            v,
        ));
    }
    m
}

fn layer_node(
    l: &Line<'_>,
    word_span: Span,
    line_span: Span,
    off: impl Fn(&str) -> usize,
    errors: &mut Vec<Diagnostic>,
) -> Node {
    let key = Key {
        name: l.word.to_string(),
        span: word_span,
    };
    if l.items.is_empty() && !l.opens_block {
        return Node {
            value: Value::Scalar(l.word.to_string()),
            span: word_span,
        };
    }
    if let ([Item::Bare(b)], false, Some(_)) =
        (l.items.as_slice(), l.opens_block, positional_key(l.word))
    {
        if l.word == "head" {
            return Node {
                value: Value::Map(vec![(key, scalar(b, off(b)))]),
                span: line_span,
            };
        }
    }
    let m = attrs_map(l.word, &l.items, off, errors);
    Node {
        value: Value::Map(vec![(
            key,
            Node {
                value: Value::Map(m),
                span: line_span,
            },
        )]),
        span: line_span,
    }
}

fn close_block(open: Open, end: usize) -> Node {
    let span = Span::new(open.span_start, end);
    let body = Node {
        value: Value::Seq(open.items),
        span,
    };
    if open.word == "layers" || open.word == "small" {
        return body;
    }
    // Put the body into the layer's argument map under `body`.
    let mut head = open.head;
    head.span = span;
    if let Value::Map(outer) = &mut head.value {
        if let Some((k, inner)) = outer.first_mut() {
            if let Value::Map(args) = &mut inner.value {
                args.push((
                    Key {
                        name: "body".into(),
                        span: k.span,
                    },
                    body,
                ));
            }
        }
    } else if let Value::Scalar(name) = &head.value {
        let k = Key {
            name: name.clone(),
            span: head.span,
        };
        let bk = Key {
            name: "body".into(),
            span: head.span,
        };
        head.value = Value::Map(vec![(
            k,
            Node {
                value: Value::Map(vec![(bk, body)]),
                span,
            },
        )]);
    }
    head
}

fn attach(
    stack: &mut [Open],
    root: &mut Vec<(Key, Node)>,
    node: Node,
    errors: &mut Vec<Diagnostic>,
) {
    match stack.last_mut() {
        Some(top) => top.items.push(node),
        None => push_top(root, "layers", node.span, node, errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_block() {
        let src = "model m\nparam h = 4\ninput channels=1 height=8 width=8 levels=2\nlayers {\n  conv 7x7 mask=A out=2*h\n  repeat 2 {\n    relu\n  }\n  head bernoulli\n}\n";
        let n = parse(src).unwrap();
        let Value::Map(m) = n.value else { panic!() };
        let names: Vec<_> = m.iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(names, ["params", "model", "input", "layers"]);
    }

    #[test]
    fn unclosed_block_is_reported() {
        let e = parse("layers {\n relu\n").unwrap_err();
        assert!(e[0].message.contains("never closed"));
    }
}
