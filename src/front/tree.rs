//! The spanned value tree both front ends produce before the AST is built from it.
//!
//! YAML and the DSL differ only in surface syntax; lowering both into this tree first means
//! one builder checks keys, types and "did you mean" for both, so they accept the same specs.

use crate::diag::Span;

/// A mapping key with its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar kept as text: numbers, names and expressions are interpreted by the builder.
    Scalar(String),
    Map(Vec<(Key, Node)>),
    Seq(Vec<Node>),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Scalar(_) => "a scalar",
            Value::Map(_) => "a mapping",
            Value::Seq(_) => "a list",
            Value::Null => "nothing",
        }
    }
}

/// Deepest nesting of lists and mappings a spec may use. Far beyond any real model, low
/// enough that recursive passes over the tree can never exhaust the stack.
pub const MAX_DEPTH: usize = 48;

/// Largest spec file accepted. Real specs are a few KiB; refusing early keeps errors fast.
pub const MAX_SPEC_BYTES: usize = 1 << 20;
