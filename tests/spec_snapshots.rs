//! Snapshot tests: the IR dump (`ir_text`) and the `pixc check` table (`check_table`) of
//! every shipped spec (`specs/*.yaml`) and every valid example (`examples/*.yaml`,
//! `examples/*.pixc`). Each snapshot's header names its input file.
//!
//! Update after an intended change with `INSTA_UPDATE=always cargo test --test
//! spec_snapshots` (or `cargo insta review`), then read the diff.

use pixc::ir::dump::{check_table, ir_text};
use pixc::ir::validate::{Model, Options};
use std::path::Path;

/// The examples that are invalid on purpose (see examples/README.md).
fn is_leaky(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("leaky_"))
}

/// `examples/tiny.yaml` for `/abs/path/to/repo/examples/tiny.yaml`.
fn short_name(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn compile(path: &Path) -> Model {
    let bytes = std::fs::read(path).expect("read spec");
    let name = short_name(path);
    match pixc::compile_bytes(&name, &bytes, Options::default()) {
        Ok((_, model, _)) => model,
        Err(e) => panic!("{name} does not compile:\n{}", e.rendered),
    }
}

/// Snapshots the IR dump and the check table of one spec under `prefix_ir` / `prefix_check`.
fn snapshot(path: &Path, prefix: &str) {
    if is_leaky(path) {
        return;
    }
    let model = compile(path);
    let name = short_name(path);
    insta::with_settings!({
        description => format!("IR dump (`pixc check --ir {name}`)"),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(format!("{prefix}_ir"), ir_text(&model));
    });
    insta::with_settings!({
        description => format!("check table (`pixc check {name}`)"),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(format!("{prefix}_check"), check_table(&model));
    });
}

#[test]
fn shipped_specs() {
    insta::glob!("../specs", "*.yaml", |path| snapshot(path, "specs"));
}

#[test]
fn example_yaml_specs() {
    insta::glob!("../examples", "*.yaml", |path| snapshot(path, "examples"));
}

#[test]
fn example_dsl_specs() {
    insta::glob!("../examples", "*.pixc", |path| snapshot(path, "examples"));
}

/// The glob tests above skip the leaky examples; make sure that is all they skip, and
/// that there is something to snapshot.
#[test]
fn every_example_but_the_leaky_ones_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut valid = 0;
    let mut leaky = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "yaml" | "pixc") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let r = pixc::compile_bytes(&short_name(&path), &bytes, Options::default());
        if is_leaky(&path) {
            assert!(r.is_err(), "{} should be rejected", path.display());
            leaky += 1;
        } else {
            if let Err(e) = r {
                panic!("{}", e.rendered);
            }
            valid += 1;
        }
    }
    assert_eq!(leaky, 2);
    assert!(valid >= 14, "only {valid} valid examples");
}
