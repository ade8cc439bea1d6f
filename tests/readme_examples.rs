//! Every `$ pixc ...` example in README.md and examples/README.md is run, and its output
//! compared with the one printed in the docs (as trycmd does: a line `...` stands for
//! any lines), so the docs cannot drift from the tool.

use std::path::Path;
use std::process::Command;

/// One documented example: where it is, the command line, the output shown.
struct Example {
    at: String,
    args: Vec<String>,
    expected: Vec<String>,
}

/// The ``` blocks whose first line is `$ pixc ...`.
fn examples(doc: &str) -> Vec<Example> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].starts_with("```") && lines.get(i + 1).is_some_and(|l| l.starts_with("$ pixc "))
        {
            let cmd = &lines[i + 1][2..];
            let mut expected = Vec::new();
            let mut j = i + 2;
            while j < lines.len() && !lines[j].starts_with("```") {
                expected.push(lines[j].trim_end().to_string());
                j += 1;
            }
            out.push(Example {
                at: format!("{doc}:{}", i + 2),
                args: cmd.split_whitespace().skip(1).map(String::from).collect(),
                expected,
            });
            i = j;
        }
        i += 1;
    }
    out
}

/// Whether `got` matches `want`, where a `...` line in `want` matches any lines.
fn matches(want: &[String], got: &[String]) -> bool {
    match want.split_first() {
        None => got.is_empty(),
        Some((w, rest)) if w == "..." => (0..=got.len()).any(|k| matches(rest, &got[k..])),
        Some((w, rest)) => got
            .split_first()
            .is_some_and(|(g, grest)| g == w && matches(rest, grest)),
    }
}

#[test]
fn the_documented_examples_print_what_the_docs_show() {
    let all: Vec<Example> = ["README.md", "examples/README.md"]
        .iter()
        .flat_map(|d| examples(d))
        .collect();
    assert!(all.len() >= 3, "examples found: {}", all.len());
    // The examples name paths from the repository root; runs/ is made here, as the docs
    // make it (`pixc train examples/tiny.yaml --out runs/tiny`).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
        d.join("examples"),
    )
    .unwrap();
    let pixc = |args: &[String]| {
        let o = Command::new(env!("CARGO_BIN_EXE_pixc"))
            .args(args)
            .current_dir(d)
            .output()
            .expect("pixc runs");
        let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&o.stderr));
        text
    };
    if all.iter().any(|e| e.args.iter().any(|a| a == "runs/tiny")) {
        let train: Vec<String> =
            "train examples/tiny.yaml --out runs/tiny --valid-images 100 --threads 1 --device cpu"
                .split(' ')
                .map(String::from)
                .collect();
        pixc(&train);
    }
    let mut failures = Vec::new();
    for e in &all {
        let got: Vec<String> = pixc(&e.args)
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect();
        let mut want = e.expected.clone();
        // Rendered diagnostics end with a blank line the docs leave out.
        let mut got = got;
        while got.last().is_some_and(|l| l.is_empty()) {
            got.pop();
        }
        while want.last().is_some_and(|l| l.is_empty()) {
            want.pop();
        }
        if !matches(&want, &got) {
            failures.push(format!(
                "{}: pixc {}\n--- docs\n{}\n--- got\n{}",
                e.at,
                e.args.join(" "),
                want.join("\n"),
                got.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn dots_stand_for_any_lines() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(matches(&s(&["a", "...", "d"]), &s(&["a", "b", "c", "d"])));
    assert!(matches(&s(&["a", "...", "d"]), &s(&["a", "d"])));
    assert!(!matches(&s(&["a", "...", "d"]), &s(&["a", "b"])));
    assert!(!matches(&s(&["a"]), &s(&["a", "b"])));
}
