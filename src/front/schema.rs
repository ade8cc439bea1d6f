//! JSON Schema of the YAML spec (`pixc schema`), generated from the builder's key tables.
//!
//! Every key, type, enum, default and description comes from `build::{TOP_KEYS,
//! INPUT_KEYS, TRAIN_KEYS, LAYERS}` and the value lists beside them, the tables the builder
//! checks specs against, so the schema cannot drift from what `pixc check` accepts. Editors
//! with a YAML language server read it from a `# yaml-language-server: $schema=...` line.

use super::build::{
    KeyDef, KeyKind, FALSE_WORDS, HEAD_KINDS, INPUT_KEYS, LAYERS, MASKS, OPTIMIZERS, SCHEDULES,
    TOP_KEYS, TRAIN_KEYS, TRUE_WORDS,
};
use serde_json::{json, Map, Value};

/// A size expression as text: integers and parameter names joined by `+ - * /`, with
/// parentheses (their balance is left to `pixc check`).
const EXPR: &str = r"[\s(]*([0-9]+|[A-Za-z_][A-Za-z0-9_]*)[\s)]*([-+*/][\s(]*([0-9]+|[A-Za-z_][A-Za-z0-9_]*)[\s)]*)*";

fn expr_pattern() -> String {
    format!("^{EXPR}$")
}

/// `KHxKW`, or one expression for a square kernel.
fn kernel_pattern() -> String {
    format!("^{EXPR}(x{EXPR})?$")
}

/// The schema (JSON Schema draft-07, which YAML language servers support best).
pub fn schema() -> Value {
    let mut root = object(TOP_KEYS);
    let root_map = root.as_object_mut().expect("an object schema");
    root_map.insert(
        "$schema".into(),
        json!("http://json-schema.org/draft-07/schema#"),
    );
    root_map.insert("title".into(), json!("pixc model spec"));
    root_map.insert(
        "description".into(),
        json!("A PixelRNN-family model for pixc (YAML form; `pixc fmt --to dsl` prints the DSL form). `pixc check` validates it fully: shapes, sizes and the causality proof."),
    );
    root_map.insert("definitions".into(), definitions());
    root
}

/// The schema as pretty JSON text with a final newline.
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).expect("a JSON value");
    s.push('\n');
    s
}

fn definitions() -> Value {
    let mut d = Map::new();
    d.insert(
        "size".into(),
        json!({
            "description": "An integer, or an integer expression over `params` such as `2*h` or `h/2`.",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": expr_pattern()},
            ],
        }),
    );
    d.insert(
        "layers".into(),
        json!({
            "type": "array",
            "items": {"$ref": "#/definitions/layer"},
        }),
    );
    d.insert("layer".into(), layer());
    Value::Object(d)
}

/// A layer: a bare type name (types without required keys), or `TYPE: {arguments}`.
fn layer() -> Value {
    let bare: Vec<&str> = LAYERS
        .iter()
        .filter(|l| l.keys.iter().all(|k| !k.required))
        .map(|l| l.name)
        .collect();
    let mut props = Map::new();
    for l in LAYERS {
        let mut forms = vec![object(l.keys)];
        let required: Vec<&KeyDef> = l.keys.iter().filter(|k| k.required).collect();
        if required.is_empty() {
            // `- relu:` with nothing after it.
            forms.push(json!({"type": "null"}));
        }
        if let [only] = required.as_slice() {
            // The positional argument alone: `head: softmax`.
            if super::dsl::positional_key(l.name) == Some(only.name) {
                forms.push(value(only));
            }
            // `residual: [...]` for `residual: {body: [...]}`.
            if only.kind == KeyKind::Layers {
                forms.push(json!({"$ref": "#/definitions/layers"}));
            }
        }
        let mut s = Map::new();
        s.insert("description".into(), json!(l.doc));
        s.insert("anyOf".into(), Value::Array(forms));
        props.insert(l.name.into(), Value::Object(s));
    }
    let types: Vec<&str> = LAYERS.iter().map(|l| l.name).collect();
    json!({
        "description": format!("A layer: one of {}.", types.join(", ")),
        "anyOf": [
            {"type": "string", "enum": bare},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": false,
                "properties": props,
            },
        ],
    })
}

/// A mapping with exactly these keys.
fn object(keys: &[KeyDef]) -> Value {
    let mut props = Map::new();
    for k in keys {
        props.insert(k.name.into(), value(k));
    }
    let required: Vec<&str> = keys.iter().filter(|k| k.required).map(|k| k.name).collect();
    let mut o = Map::new();
    o.insert("type".into(), json!("object"));
    o.insert("additionalProperties".into(), json!(false));
    o.insert("properties".into(), Value::Object(props));
    if !required.is_empty() {
        o.insert("required".into(), json!(required));
    }
    Value::Object(o)
}

/// The schema of one key's value, with its description and default.
fn value(k: &KeyDef) -> Value {
    let mut s = match kind(k.kind) {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("allOf".into(), json!([other]));
            m
        }
    };
    s.insert("description".into(), json!(k.doc));
    if let Some(d) = k.default {
        s.insert("default".into(), default_value(k.kind, d));
    }
    Value::Object(s)
}

/// A default (YAML text) as the JSON value a YAML reader would make of it.
fn default_value(kind: KeyKind, text: &str) -> Value {
    match kind {
        KeyKind::Bool => json!(TRUE_WORDS.contains(&text)),
        KeyKind::PositiveFloat | KeyKind::Clip | KeyKind::NonNegativeFloat | KeyKind::Fraction => {
            text.parse::<f64>()
                .map_or_else(|_| json!(text), |x| json!(x))
        }
        KeyKind::Count(_) | KeyKind::Size => text
            .parse::<u64>()
            .map_or_else(|_| json!(text), |x| json!(x)),
        _ => json!(text),
    }
}

fn kind(kind: KeyKind) -> Value {
    let size = json!({"$ref": "#/definitions/size"});
    match kind {
        KeyKind::ModelName => json!({"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}$"}),
        KeyKind::Params => json!({
            "type": "object",
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "additionalProperties": size,
        }),
        KeyKind::Input => object(INPUT_KEYS),
        KeyKind::Train => object(TRAIN_KEYS),
        // Wrapped: draft-07 ignores the keywords beside a `$ref` (the description).
        KeyKind::Layers => json!({"allOf": [{"$ref": "#/definitions/layers"}]}),
        KeyKind::Size => json!({"allOf": [size]}),
        KeyKind::Kernel => json!({
            "anyOf": [
                size,
                {"type": "string", "pattern": kernel_pattern()},
                {"type": "array", "items": size, "minItems": 2, "maxItems": 2},
            ],
        }),
        KeyKind::Mask => json!({"type": "string", "enum": MASKS}),
        KeyKind::Bool => {
            let words: Vec<&str> = TRUE_WORDS.iter().chain(FALSE_WORDS).copied().collect();
            json!({"anyOf": [{"type": "boolean"}, {"type": "string", "enum": words}]})
        }
        KeyKind::PositiveFloat => json!({"type": "number", "exclusiveMinimum": 0}),
        KeyKind::Clip => json!({
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"enum": ["none", "false", false]},
            ],
        }),
        KeyKind::NonNegativeFloat => json!({"type": "number", "minimum": 0}),
        KeyKind::Fraction => json!({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
        KeyKind::Schedule => json!({"type": "string", "enum": SCHEDULES}),
        KeyKind::Count(min) => json!({"type": "integer", "minimum": min}),
        KeyKind::Optimizer => json!({"type": "string", "enum": OPTIMIZERS}),
        KeyKind::DataSet => json!({"type": "string", "minLength": 1}),
        KeyKind::HeadKind => json!({"type": "string", "enum": HEAD_KINDS}),
    }
}
