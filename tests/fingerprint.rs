//! The resume identity: a canonical, versioned fingerprint of the validated model, not the
//! display dump; runs made before it existed still resume.

use pixc::front::Syntax;
use pixc::ir::fingerprint::{canonical, fingerprint};
use std::path::Path;

fn specs() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn the_same_model_in_either_syntax_has_one_fingerprint() {
    for p in specs() {
        let (_, m, _) = pixc::compile_file(&p).unwrap();
        let dsl = pixc::front::fmt::to_dsl(
            &pixc::front::parse(&std::fs::read_to_string(&p).unwrap(), Syntax::Yaml).unwrap(),
        );
        let (_, m2) = pixc::compile_str(&dsl, Syntax::Dsl).unwrap();
        assert_eq!(fingerprint(&m), fingerprint(&m2), "{}", p.display());
    }
}

#[test]
fn the_fingerprint_is_not_the_dump_and_is_pinned() {
    let p = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/specs/diag_bilstm_7_mnist.yaml"
    ));
    let (_, m, _) = pixc::compile_file(p).unwrap();
    let text = canonical(&m);
    // The display dump may change freely: the canonical text shares none of its lines.
    let dump = pixc::ir::dump::ir_text(&m);
    for line in dump.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            !text.contains(line),
            "the fingerprint text contains a dump line: {line}"
        );
    }
    // Pinned: a change here breaks `--resume` of every existing run, so it must be a
    // deliberate one (bump `fingerprint::VERSION` and keep accepting the old key).
    assert_eq!(
        fingerprint(&m),
        "33f708deb9e8d0a7a68dbe70012a28a35f8ee98df19790b52efdf5807f125496",
        "canonical text:\n{text}"
    );
}

#[test]
fn a_changed_model_changes_the_fingerprint() {
    let base = "input: {channels: 1, height: 8, width: 8, levels: 2}\nlayers:\n  - conv: {out: 4, kernel: 3, mask: A}\n  - diag_bilstm: {hidden: 2}\n  - head: bernoulli\n";
    let f = |t: &str| fingerprint(&pixc::compile_str(t, Syntax::Yaml).unwrap().1);
    let a = f(base);
    assert_ne!(a, f(&base.replace("hidden: 2", "hidden: 3")));
    assert_ne!(a, f(&base.replace("kernel: 3", "kernel: 5")));
    assert_ne!(a, f(&base.replace("height: 8", "height: 9")));
    // Names and comments are not the model.
    assert_eq!(a, f(&format!("# a comment\nmodel: renamed\n{base}")));
}
