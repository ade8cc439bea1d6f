//! The JSON Schema (`pixc schema`) against an independent validator (the `jsonschema`
//! crate), on YAML read by yaml-rust2's own loader rather than pixc's front end: every
//! shipped spec validates, the bad specs with unknown keys or wrong types do not, and the
//! tables it is generated from agree with what the builder does.

use pixc::front::build::{layer_keys, KeyDef, LAYERS, LAYER_TYPES, TOP_KEYS, TRAIN_KEYS};
use pixc::front::fmt::to_yaml;
use pixc::front::schema::schema;
use pixc::front::{parse, Syntax};
use serde_json::Value;
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// YAML as the JSON a YAML language server hands the schema.
fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .map_or_else(|_| Value::String(s.clone()), Value::from),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML value {other:?}"),
    }
}

fn json_of(text: &str) -> Value {
    let docs = YamlLoader::load_from_str(text).expect("YAML");
    to_json(&docs[0])
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft7::new(&schema()).expect("the schema is a valid draft-07 schema")
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn every_shipped_spec_validates() {
    let v = validator();
    let mut n = 0;
    for dir in ["specs", "examples"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            // DSL examples validate as the YAML `pixc fmt --to yaml` prints.
            let yaml = match p.extension().and_then(|e| e.to_str()) {
                Some("yaml") => text,
                Some("pixc") => to_yaml(&parse(&text, Syntax::Dsl).unwrap()),
                _ => continue,
            };
            let errs = errors(&v, &json_of(&yaml));
            assert!(errs.is_empty(), "{}: {errs:#?}", p.display());
            n += 1;
        }
    }
    assert!(n >= 24, "only {n} specs");
}

#[test]
fn bad_specs_with_unknown_keys_or_wrong_types_are_rejected() {
    let v = validator();
    for name in [
        "type_bad_boolean",
        "type_layer_args_list",
        "type_layers_mapping",
        "type_list_for_mapping",
        "type_string_for_number",
        "type_train_batch_word",
        "unknown_layer_key",
        "unknown_layer_type",
        "unknown_optimizer",
        "unknown_top_key",
        "missing_input",
        "missing_input_field",
        "kernel_malformed",
    ] {
        let path = root().join("tests/bad_specs").join(format!("{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        // pixc rejects it too.
        assert!(parse(&text, Syntax::Yaml).is_err(), "{name}");
        assert!(!v.is_valid(&json_of(&text)), "{name} passes the schema");
    }
}

#[test]
fn pixc_schema_prints_the_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pixc"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, schema());
}

/// Every key of every table is in the schema with its description, and defaults are there.
#[test]
fn the_schema_covers_every_key_with_a_description() {
    let s = schema();
    let check = |props: &Value, keys: &[KeyDef], what: &str| {
        let props = props.as_object().unwrap_or_else(|| panic!("{what}"));
        assert_eq!(props.len(), keys.len(), "{what}");
        for k in keys {
            let p = &props[k.name];
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{what}.{}",
                k.name
            );
            assert_eq!(
                p.get("default").is_some(),
                k.default.is_some(),
                "{what}.{}",
                k.name
            );
        }
    };
    check(&s["properties"], TOP_KEYS, "top");
    check(&s["properties"]["train"]["properties"], TRAIN_KEYS, "train");
    let layers = &s["definitions"]["layer"]["anyOf"][1]["properties"];
    assert_eq!(layers.as_object().unwrap().len(), LAYER_TYPES.len());
    for t in LAYER_TYPES {
        let forms = &layers[t]["anyOf"];
        check(&forms[0]["properties"], layer_keys(t), t);
    }
    let names: Vec<&str> = LAYERS.iter().map(|l| l.name).collect();
    assert_eq!(names, LAYER_TYPES);
}

/// The defaults in the tables are the builder's: a spec without the key and one with the
/// table's default give the same AST.
#[test]
fn table_defaults_are_what_the_builder_uses() {
    let head = "input: {channels: 1, height: 8, width: 8, levels: 2}\nlayers:\n  - conv: {out: 4, kernel: 7, mask: A}\n";
    let tail = "  - head: bernoulli\n";
    let same = |a: String, b: String, what: &str| {
        let pa = parse(&a, Syntax::Yaml).unwrap_or_else(|d| panic!("{what}: {d:?}\n{a}"));
        let pb = parse(&b, Syntax::Yaml).unwrap_or_else(|d| panic!("{what}: {d:?}\n{b}"));
        assert_eq!(to_yaml(&pa), to_yaml(&pb), "{what}");
    };
    let mut n = 0;
    for l in LAYERS {
        for k in l.keys.iter().filter(|k| k.default.is_some()) {
            let d = k.default.unwrap();
            let args = |extra: &str| match l.name {
                "conv" => format!("{{out: 4, kernel: 3{extra}}}"),
                "row_lstm" | "diag_bilstm" | "pixelcnn_block" | "gated_pixelcnn" => {
                    format!("{{hidden: 4{extra}}}")
                }
                "residual" => format!("{{body: [relu]{extra}}}"),
                _ => format!("{{{}}}", extra.trim_start_matches(", ")),
            };
            let without = format!("{head}  - {}: {}\n{tail}", l.name, args(""));
            let with = format!(
                "{head}  - {}: {}\n{tail}",
                l.name,
                args(&format!(", {}: {d}", k.name))
            );
            same(without, with, &format!("{}.{}", l.name, k.name));
            n += 1;
        }
    }
    let body = format!("{head}{tail}");
    for k in TRAIN_KEYS.iter().filter(|k| k.default.is_some()) {
        same(
            format!("{body}train: {{}}\n"),
            format!("{body}train: {{{}: {}}}\n", k.name, k.default.unwrap()),
            &format!("train.{}", k.name),
        );
        n += 1;
    }
    assert!(n >= 12, "{n}");
    let model = TOP_KEYS.iter().find(|k| k.name == "model").unwrap();
    assert_eq!(
        Some(parse(&body, Syntax::Yaml).unwrap().name.node.as_str()),
        model.default
    );
}
