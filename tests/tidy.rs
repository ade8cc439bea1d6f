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
    for d in ["src/ir", "src/front"] {
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

/// The top-level module a `src/` file belongs to (`src/ir/shape.rs` -> `ir`).
fn top_module(p: &Path) -> String {
    let rel = p
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    use std::collections::{BTreeMap, BTreeSet};
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let modules: BTreeSet<String> = files.iter().map(|p| top_module(p)).collect();
    // Which top-level modules each one names as `crate::<module>`.
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &files {
        let from = top_module(p);
        let text = std::fs::read_to_string(p).unwrap();
        for m in &modules {
            if *m != from && text.contains(&format!("crate::{m}")) {
                uses.entry(from.clone()).or_default().insert(m.clone());
            }
        }
    }
    // Depth-first search for a cycle in the module graph.
    fn visit(
        m: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|x| x == m) {
            panic!(
                "modules import each other: {} -> {m}",
                path[i..].join(" -> ")
            );
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for n in uses.get(m).into_iter().flatten() {
            visit(n, uses, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in &modules {
        visit(m, &uses, &mut Vec::new(), &mut done);
    }
}
