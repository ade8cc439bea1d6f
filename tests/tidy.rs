//! Tidy checks: every source file says what it is for, and the IR stays free of back ends.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_source_file_starts_with_a_doc_line() {
    let mut files = Vec::new();
    for d in ["src", "tests"] {
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(d), &mut files);
    }
    let missing: Vec<String> = files
        .iter()
        .filter(|p| {
            !std::fs::read_to_string(p)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:?}"
    );
}

#[test]
fn the_ir_and_front_ends_know_nothing_of_back_ends() {
    let mut files = Vec::new();
    for d in ["src/ir", "src/spec"] {
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(d), &mut files);
    }
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        for banned in [
            "tch::",
            "ort::",
            "protobuf::",
            "onnx_protobuf",
            "std::fs",
            "std::io",
        ] {
            assert!(
                !text.contains(banned),
                "{} mentions `{banned}`",
                p.display()
            );
        }
    }
}
