//! Round trips between the two syntaxes: for every spec in `specs/` and `examples/`,
//! YAML -> AST -> DSL text -> AST -> YAML text keeps the IR identical, and the canonical
//! printers are fixpoints. Also `pixc fmt --check` on canonical and non-canonical files.
//! (That comments survive all of this is tests/spec_comments.rs.)

mod common;

use common::{root, shipped};

use pixc::front::ast::Spec;
use pixc::front::fmt::{format, to_dsl, to_yaml};
use pixc::front::{parse, Syntax};
use pixc::ir::dump::ir_text;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The examples, which must all be canonical (see examples/README.md).
fn canonical_examples() -> Vec<PathBuf> {
    shipped()
        .into_iter()
        .filter(|p| p.parent().unwrap().ends_with("examples"))
        .collect()
}

fn syntax_of(p: &Path) -> Syntax {
    Syntax::from_path(&p.display().to_string())
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

fn parse_ok(text: &str, syntax: Syntax, what: &str) -> Spec {
    parse(text, syntax).unwrap_or_else(|d| panic!("{what} does not parse: {d:#?}\n---\n{text}"))
}

fn ir_of(text: &str, syntax: Syntax, what: &str) -> String {
    match pixc::compile_str(text, syntax) {
        Ok((_, m)) => ir_text(&m),
        Err(d) => panic!("{what} does not compile: {d:#?}\n---\n{text}"),
    }
}

/// The DSL copies of `specs/*.yaml` in `examples/`: their round trip is their original's
/// (`dsl_examples_match_their_yaml_originals` checks they are its exact DSL text).
fn is_copy_of_a_shipped_spec(p: &Path) -> bool {
    syntax_of(p) == Syntax::Dsl
        && root()
            .join("specs")
            .join(format!("{}.yaml", p.file_stem().unwrap().to_string_lossy()))
            .is_file()
}

/// YAML -> AST -> DSL text -> AST -> YAML text: the IR dump of the result equals the
/// original's, and the texts are stable.
fn round_trip_keeps_the_ir(path: &Path) {
    let name = rel(path);
    let text = std::fs::read_to_string(path).unwrap();
    let syntax = syntax_of(path);
    let ir0 = ir_of(&text, syntax, &name);

    let yaml0 = to_yaml(&parse_ok(&text, syntax, &name));
    let ast_y = parse_ok(&yaml0, Syntax::Yaml, &format!("{name} as YAML"));
    let dsl = to_dsl(&ast_y);
    let ast_d = parse_ok(&dsl, Syntax::Dsl, &format!("{name} as DSL"));
    let yaml2 = to_yaml(&ast_d);

    assert_eq!(
        ir_of(&yaml2, Syntax::Yaml, &name),
        ir0,
        "{name}: round-tripped YAML"
    );
    // The intermediate forms hold the same model: their text is canonical and equal to
    // the round-tripped one, so compiling them again would prove nothing more.
    assert_eq!(
        yaml2, yaml0,
        "{name}: YAML text changed over the DSL round trip"
    );
    assert_eq!(
        to_dsl(&ast_d),
        dsl,
        "{name}: DSL text changed over the round trip"
    );
}

#[test]
fn shipped_specs_round_trip() {
    for path in shipped()
        .iter()
        .filter(|p| p.parent().unwrap().ends_with("specs"))
    {
        round_trip_keeps_the_ir(path);
    }
}

#[test]
fn examples_round_trip() {
    for path in canonical_examples()
        .iter()
        .filter(|p| !is_copy_of_a_shipped_spec(p))
    {
        round_trip_keeps_the_ir(path);
    }
}

#[test]
fn printers_are_fixpoints() {
    for path in shipped() {
        let name = rel(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        let spec = parse_ok(&text, syntax_of(&path), &name);

        let y = to_yaml(&spec);
        assert_eq!(
            to_yaml(&parse_ok(&y, Syntax::Yaml, &name)),
            y,
            "{name}: to_yaml"
        );
        let d = to_dsl(&spec);
        assert_eq!(
            to_dsl(&parse_ok(&d, Syntax::Dsl, &name)),
            d,
            "{name}: to_dsl"
        );
        // And across: the DSL of the YAML is the DSL, and back.
        assert_eq!(
            to_dsl(&parse_ok(&y, Syntax::Yaml, &name)),
            d,
            "{name}: yaml -> dsl"
        );
        assert_eq!(
            to_yaml(&parse_ok(&d, Syntax::Dsl, &name)),
            y,
            "{name}: dsl -> yaml"
        );
    }
}

/// The two syntaxes give the same AST modulo spans: compare through both printers.
#[test]
fn both_front_ends_build_the_same_ast() {
    for path in shipped() {
        let name = rel(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        let spec = parse_ok(&text, syntax_of(&path), &name);
        let from_yaml = parse_ok(&to_yaml(&spec), Syntax::Yaml, &name);
        let from_dsl = parse_ok(&to_dsl(&spec), Syntax::Dsl, &name);
        assert_eq!(from_yaml.name.node, from_dsl.name.node, "{name}");
        assert_eq!(from_yaml.params.len(), from_dsl.params.len(), "{name}");
        for (a, b) in from_yaml.params.iter().zip(&from_dsl.params) {
            assert_eq!(
                (&a.name.node, &a.value.node),
                (&b.name.node, &b.value.node),
                "{name}"
            );
        }
        assert_eq!(
            format!(
                "{:?}",
                from_yaml.train.as_ref().map(|t| (
                    t.optimizer,
                    t.lr,
                    t.batch,
                    t.epochs,
                    t.steps,
                    t.clip,
                    t.seed,
                    &t.data,
                    t.valid_every
                ))
            ),
            format!(
                "{:?}",
                from_dsl.train.as_ref().map(|t| (
                    t.optimizer,
                    t.lr,
                    t.batch,
                    t.epochs,
                    t.steps,
                    t.clip,
                    t.seed,
                    &t.data,
                    t.valid_every
                ))
            ),
            "{name}: train"
        );
    }
}

/// Every example is canonical: what `pixc fmt FILE --check` verifies, done in-process.
#[test]
fn examples_are_canonical() {
    for path in canonical_examples() {
        let name = rel(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        // `pixc fmt`'s own path, which keeps the comments.
        let canonical = format(&text, syntax_of(&path), syntax_of(&path))
            .unwrap_or_else(|d| panic!("{name}: {d:#?}"));
        assert_eq!(
            canonical, text,
            "{name} is not canonical; run `pixc fmt {name} --write`"
        );
    }
}

/// Pairs that describe the same model: `examples/X.pixc` and `specs/X.yaml` (generated with
/// `pixc fmt --to dsl`), and the starter pairs `examples/X.yaml` / `examples/X.pixc`.
#[test]
fn dsl_examples_match_their_yaml_originals() {
    let mut pairs = 0;
    for dsl in canonical_examples()
        .into_iter()
        .filter(|p| syntax_of(p) == Syntax::Dsl)
    {
        let stem = dsl.file_stem().unwrap().to_string_lossy().into_owned();
        let yaml = [root().join("specs"), root().join("examples")]
            .into_iter()
            .map(|d| d.join(format!("{stem}.yaml")))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{} has no YAML original", rel(&dsl)));
        let y = std::fs::read_to_string(&yaml).unwrap();
        let d = std::fs::read_to_string(&dsl).unwrap();
        // The same op graph (the IR before validation; shapes and the causality proof are
        // functions of it, and the round-trip tests compare full IR dumps).
        assert_eq!(
            graph_text(&y, Syntax::Yaml),
            graph_text(&d, Syntax::Dsl),
            "{} and {} differ",
            rel(&yaml),
            rel(&dsl)
        );
        // The DSL file is exactly what `pixc fmt YAML --to dsl` prints, comments included.
        assert_eq!(
            format(&y, Syntax::Yaml, Syntax::Dsl).unwrap_or_else(|e| panic!("{e:#?}")),
            d,
            "{}",
            rel(&dsl)
        );
        pairs += 1;
    }
    assert_eq!(pairs, 12);
}

/// The lowered op graph as text, without spans (which differ between syntaxes).
fn graph_text(text: &str, syntax: Syntax) -> String {
    let spec = parse_ok(text, syntax, "spec");
    let g = pixc::ir::lower::lower(&spec).unwrap_or_else(|d| panic!("{d:#?}"));
    let mut s = format!("{} {:?}\n", g.name, g.image);
    for id in g.nodes() {
        let n = g.node(id);
        s.push_str(&format!("{id} {:?} {:?} {}\n", n.op, g.inputs(id), n.path));
    }
    s
}

// ---- the binary ----

fn pixc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pixc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run pixc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The binary agrees on a few files of each syntax (the in-process test covers them all).
#[test]
fn fmt_check_passes_on_canonical_files() {
    for f in [
        "examples/tiny.yaml",
        "examples/tiny.pixc",
        "examples/pixelcnn_7_mnist.pixc",
    ] {
        let (code, out, err) = pixc(&["fmt", f, "--check"]);
        assert_eq!(code, 0, "{f}: {err}");
        assert!(out.is_empty(), "{f}: --check printed {out}");
    }
}

#[test]
fn fmt_check_fails_on_non_canonical_copies() {
    let dir = tempfile::tempdir().unwrap();
    for (f, edit) in [
        // Extra spaces and a reordered mapping: same model, not canonical. (A comment no
        // longer makes a file non-canonical: `pixc fmt` keeps it, see tests/spec_comments.rs.)
        ("tiny.yaml", ("model: tiny\n", "model:   tiny\n")),
        (
            "tiny.pixc",
            ("conv 7 out=2*h mask=A", "conv   mask=A 7 out=(2 * h)"),
        ),
    ] {
        let src = std::fs::read_to_string(root().join("examples").join(f)).unwrap();
        assert!(src.contains(edit.0), "{f}: the edit no longer applies");
        let copy = dir.path().join(f);
        std::fs::write(&copy, src.replacen(edit.0, edit.1, 1)).unwrap();
        let copy_s = copy.display().to_string();

        // Still the same model...
        let (code, _, err) = pixc(&["check", &copy_s]);
        assert_eq!(code, 0, "{f}: the edited copy should still compile: {err}");
        // ...but not canonical: exit 1, and the message names the file.
        let (code, out, err) = pixc(&["fmt", &copy_s, "--check"]);
        assert_eq!(
            code, 1,
            "{f}: fmt --check exit code (stdout {out}, stderr {err})"
        );
        assert!(err.contains("not in canonical form"), "{f}: {err}");
        // `fmt --write` makes it canonical again, identical to the original.
        let (code, _, err) = pixc(&["fmt", &copy_s, "--write"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            std::fs::read_to_string(&copy).unwrap(),
            src,
            "{f}: --write result"
        );
        let (code, _, _) = pixc(&["fmt", &copy_s, "--check"]);
        assert_eq!(code, 0, "{f}: canonical after --write");
    }
}

#[test]
fn fmt_converts_between_syntaxes() {
    let (code, dsl, err) = pixc(&["fmt", "examples/tiny.yaml", "--to", "dsl"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        dsl,
        std::fs::read_to_string(root().join("examples/tiny.pixc")).unwrap()
    );
    let (code, yaml, err) = pixc(&["fmt", "examples/tiny.pixc", "--to", "yaml"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        yaml,
        std::fs::read_to_string(root().join("examples/tiny.yaml")).unwrap()
    );
}

// ---- regression tests for bugs found by these tests ----

/// Compiles `yaml`, converts it to the DSL and back, and requires the same IR and YAML.
fn assert_round_trips(yaml: &str) {
    let spec = parse_ok(yaml, Syntax::Yaml, "input");
    let ir0 = ir_of(yaml, Syntax::Yaml, "input");
    let y = to_yaml(&spec);
    assert_eq!(ir_of(&y, Syntax::Yaml, "to_yaml output"), ir0);
    let d = to_dsl(&spec);
    assert_eq!(ir_of(&d, Syntax::Dsl, "to_dsl output"), ir0);
    assert_eq!(to_yaml(&parse_ok(&d, Syntax::Dsl, "to_dsl output")), y);
}

const HEAD: &str = "input: {channels: 1, height: 8, width: 8, levels: 2}\n";

#[test]
fn model_name_with_a_space_is_rejected_clearly() {
    // Names are identifiers (they become file and graph names), so neither syntax has to quote them.
    let e = pixc::compile_str(
        &format!("model: \"my model\"\n{HEAD}layers:\n  - conv: {{out: 4, kernel: 7, mask: A}}\n  - head: bernoulli\n"),
        Syntax::Yaml,
    )
    .unwrap_err();
    assert!(e[0].message.contains("not a valid model name"), "{e:?}");
}

#[test]
fn data_path_with_a_space_round_trips() {
    assert_round_trips(&format!(
        "model: m\n{HEAD}layers:\n  - conv: {{out: 4, kernel: 7, mask: A}}\n  - head: bernoulli\ntrain: {{data: \"png:my dir\"}}\n"
    ));
}

#[test]
fn kernel_parameter_containing_x_round_trips() {
    assert_round_trips(&format!(
        "model: m\nparams: {{kx: 3}}\n{HEAD}layers:\n  - conv: {{out: 4, kernel: 7, mask: A}}\n  - conv: {{out: 4, kernel: [kx, kx]}}\n  - head: bernoulli\n"
    ));
}

#[test]
fn deep_dsl_spec_converts_to_yaml() {
    // The DSL allows as many nested blocks as YAML can express (16).
    let n = 15;
    let mut d = String::from(
        "model deep\ninput channels=1 height=8 width=8 levels=2\nlayers {\n  conv 7 out=4 mask=A\n",
    );
    for _ in 0..n {
        d.push_str("residual {\n");
    }
    d.push_str("relu\n");
    for _ in 0..n {
        d.push_str("}\n");
    }
    d.push_str("head bernoulli\n}\n");
    let spec = parse_ok(&d, Syntax::Dsl, "deep DSL");
    let y = to_yaml(&spec);
    assert_eq!(
        ir_of(&y, Syntax::Yaml, "its YAML"),
        ir_of(&d, Syntax::Dsl, "deep DSL")
    );
}

#[test]
fn nested_parentheses_parse_in_the_dsl() {
    let d = "param h = 2\ninput channels=1 height=8 width=8 levels=2\nlayers {\n  conv 7 out=((h+h)*1) mask=A\n  head bernoulli\n}\n";
    let y = "params: {h: 2}\ninput: {channels: 1, height: 8, width: 8, levels: 2}\nlayers:\n  - conv: {out: ((h+h)*1), kernel: 7, mask: A}\n  - head: bernoulli\n";
    assert_eq!(ir_of(d, Syntax::Dsl, "DSL"), ir_of(y, Syntax::Yaml, "YAML"));
}

#[test]
fn learning_rate_schedules_round_trip() {
    for train in [
        "{lr: 0.002, schedule: cosine, warmup_steps: 500, min_lr: 1.0e-5}",
        "{lr: 0.002, schedule: cosine, decay_steps: 20000}",
        "{schedule: exponential, decay_rate: 0.9, decay_steps: 3125, min_lr: 0.0001}",
        "{schedule: exponential, decay_rate: 0.5}",
        "{schedule: constant, warmup_steps: 100}",
    ] {
        assert_round_trips(&format!(
            "model: m\n{HEAD}layers:\n  - conv: {{out: 4, kernel: 7, mask: A}}\n  - head: bernoulli\ntrain: {train}\n"
        ));
    }
}
