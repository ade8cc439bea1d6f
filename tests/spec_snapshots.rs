//! Snapshot tests: the `pixc check` table and the IR dump of every shipped spec
//! (`specs/*.yaml`) and every valid example (`examples/*.yaml`, `examples/*.pixc`), in the
//! format `pixc snapshot` writes (one code path: `pixc::snapshot`), and `pixc snapshot`
//! itself. Each snapshot's header names its input file.
//!
//! Update after an intended change with `INSTA_UPDATE=always cargo test --test
//! spec_snapshots` (or `cargo insta review`), then read the diff.

use pixc::ir::validate::{Model, Options};
use std::path::Path;
use std::process::Command;

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

/// Snapshots what one spec compiles to under `prefix`, with the body `pixc snapshot`
/// writes (`pixc::snapshot::body`: the check table, then the IR dump).
fn snapshot(path: &Path, prefix: &str) {
    if is_leaky(path) {
        return;
    }
    let model = compile(path);
    let name = short_name(path);
    insta::with_settings!({
        description => format!("what {name} compiles to: the check table, then the IR"),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(prefix, pixc::snapshot::body(&model));
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

fn pixc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pixc"))
        .args(args)
        .output()
        .expect("run pixc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn snap_body(path: &Path) -> String {
    let snap = insta::Snapshot::from_file(path)
        .unwrap_or_else(|e| panic!("insta cannot read {}: {e}", path.display()));
    snap.as_text().expect("a text snapshot").to_string()
}

/// The loop a spec author runs: a new spec gets a snapshot, an unchanged one passes, a
/// change prints a unified diff and exits 1 (leaving `.snap.new` for review), `--accept`
/// takes it; insta reads the files, and their body is the one pixc's own tests pin.
#[test]
fn pixc_snapshot_writes_compares_and_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("tiny.yaml");
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny.yaml"))
            .unwrap();
    std::fs::write(&spec, &src).unwrap();
    let folder = dir.path().display().to_string();
    let snap = dir.path().join("snapshots/tiny.yaml.snap");
    let pending = dir.path().join("snapshots/tiny.yaml.snap.new");

    let (code, out, err) = pixc(&["snapshot", &folder]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("new snapshot written"), "{out}");
    let meta = insta::Snapshot::from_file(&snap).unwrap();
    assert_eq!(
        meta.metadata().input_file(),
        Some(spec.display().to_string().as_str())
    );
    assert_eq!(meta.metadata().source(), Some("pixc snapshot"));
    // The same body as this suite's own snapshot of examples/tiny.yaml.
    let ours = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/spec_snapshots__examples@tiny.yaml.snap");
    assert_eq!(snap_body(&snap), snap_body(&ours));

    let (code, out, err) = pixc(&["snapshot", &folder]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("1 unchanged"), "{err}");

    // h: 4 -> 5 changes shapes and parameter counts.
    std::fs::write(&spec, src.replace("h: 4", "h: 5")).unwrap();
    let before = std::fs::read_to_string(&snap).unwrap();
    let (code, out, err) = pixc(&["snapshot", &spec.display().to_string()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("@@ "), "no unified diff: {out}");
    assert!(out.contains("\n-parameters: 1,441\n"), "{out}");
    assert!(out.contains("\n+parameters: "), "{out}");
    assert_eq!(std::fs::read_to_string(&snap).unwrap(), before);
    assert!(pending.is_file());

    let (code, out, err) = pixc(&["snapshot", &folder, "--accept"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!pending.exists());
    let (code, _, err) = pixc(&["snapshot", &folder]);
    assert_eq!(code, 0, "{err}");
    assert!(snap_body(&snap).contains("parameters: "));
    assert_ne!(std::fs::read_to_string(&snap).unwrap(), before);
}

/// Bad input gets the diagnostics `pixc check` prints, and exit code 2.
#[test]
fn pixc_snapshot_reports_invalid_specs_like_check() {
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_specs/unknown_layer_key.yaml");
    let bad = bad.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let (code, out, err) = pixc(&["snapshot", &bad, "--dir", &d]);
    assert_eq!(code, 2, "{out}{err}");
    let (check_code, _, check_err) = pixc(&["check", &bad]);
    assert_eq!(check_code, 2);
    assert!(err.starts_with(&check_err), "{err}\n---\n{check_err}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written"
    );
}
