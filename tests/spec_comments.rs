//! `pixc fmt` keeps comments: every shipped spec and example keeps all its comment text in
//! its own syntax and across YAML -> DSL -> YAML, formatting is a fixpoint, a proptest
//! inserts comments at random lines and finds none lost, and a `#` that cannot be told
//! from a value is an error naming its line.

mod common;

use common::{root, shipped};

use pixc::front::comments::scan;
use pixc::front::fmt::format;
use pixc::front::Syntax;
use proptest::prelude::*;
use std::path::Path;
use std::process::Command;

fn syntax_of(p: &Path) -> Syntax {
    Syntax::from_path(&p.display().to_string())
}

fn other(s: Syntax) -> Syntax {
    match s {
        Syntax::Yaml => Syntax::Dsl,
        Syntax::Dsl => Syntax::Yaml,
    }
}

/// The comment texts of a text, sorted (placement may change, text may not).
fn texts(text: &str, syntax: Syntax) -> Vec<String> {
    let mut v: Vec<String> = scan(text, syntax).into_iter().map(|c| c.text).collect();
    v.sort();
    v
}

fn fmt_ok(text: &str, from: Syntax, to: Syntax, what: &str) -> String {
    format(text, from, to).unwrap_or_else(|d| panic!("{what}: fmt failed: {d:#?}\n---\n{text}"))
}

/// Formats in the own syntax and across and back; every comment survives each step, the
/// own-syntax result is a fixpoint, and the trip across lands on the same text.
fn keeps_comments(text: &str, syntax: Syntax, what: &str) {
    let want = texts(text, syntax);
    let own = fmt_ok(text, syntax, syntax, what);
    assert_eq!(texts(&own, syntax), want, "{what}: own syntax\n{own}");
    assert_eq!(
        fmt_ok(&own, syntax, syntax, what),
        own,
        "{what}: fmt is not a fixpoint"
    );
    let across = fmt_ok(&own, syntax, other(syntax), what);
    assert_eq!(
        texts(&across, other(syntax)),
        want,
        "{what}: across\n{across}"
    );
    let back = fmt_ok(&across, other(syntax), syntax, what);
    assert_eq!(texts(&back, syntax), want, "{what}: back\n{back}");
    // Back again, the text is stable: a second trip changes nothing.
    let across2 = fmt_ok(&back, syntax, other(syntax), what);
    assert_eq!(across2, across, "{what}: the trip across is not stable");
}

#[test]
fn shipped_specs_keep_their_comments() {
    let mut with_comments = 0;
    for path in shipped() {
        let what = path.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        if !scan(&text, syntax_of(&path)).is_empty() {
            with_comments += 1;
        }
        keeps_comments(&text, syntax_of(&path), &what);
    }
    // The notes are back in every spec and example (see examples/README.md).
    assert_eq!(with_comments, shipped().len());
}

/// Every shipped spec is canonical, comments included: `pixc fmt FILE --check` passes.
#[test]
fn shipped_specs_are_canonical_with_their_comments() {
    for path in shipped() {
        let what = path.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let s = syntax_of(&path);
        assert_eq!(
            fmt_ok(&text, s, s, &what),
            text,
            "{what} is not canonical; run `pixc fmt {what} --write`"
        );
    }
}

const TINY_YAML: &str = "\
# a tiny model
model: m  # its name
params:  # sizes
  # the width
  h: 4
input: {channels: 1, height: 8, width: 8, levels: 2}
layers:
  # first
  - conv: {out: 2*h, kernel: 7, mask: A}  # mask A first
  - repeat:
      count: 2  # twice
      body:
        - residual:
            body:
              - relu  # inner
              # end of the residual body
        # end of the repeat body
  - relu
  # end of layers
train:
  # the optimizer
  optimizer: adam  # fast
  lr: 0.001
# the end
";

#[test]
fn comments_attach_to_what_they_annotate() {
    let own = fmt_ok(TINY_YAML, Syntax::Yaml, Syntax::Yaml, "tiny");
    for line in [
        "# a tiny model\nmodel: m  # its name\n",
        "  - conv: {out: 2*h, kernel: 7, mask: A}  # mask A first\n",
        "              - relu  # inner\n              # end of the residual body\n        # end of the repeat body\n  - relu\n  # end of layers\ntrain:\n",
        "# the end\n",
    ] {
        assert!(own.contains(line), "missing {line:?} in\n{own}");
    }
    // A comment on an argument's line goes to its layer's line.
    assert!(own.contains("  - repeat:  # twice\n"), "{own}");
    let dsl = fmt_ok(TINY_YAML, Syntax::Yaml, Syntax::Dsl, "tiny");
    for line in [
        "conv 7 out=2*h mask=A  # mask A first\n",
        "      relu  # inner\n      # end of the residual body\n    }\n    # end of the repeat body\n  }\n",
        "  relu\n  # end of layers\n}\n",
        "# the optimizer\n# fast\ntrain ",
    ] {
        assert!(dsl.contains(line), "missing {line:?} in\n{dsl}");
    }
    keeps_comments(TINY_YAML, Syntax::Yaml, "tiny");
}

#[test]
fn files_without_comments_print_exactly_as_before() {
    for path in shipped() {
        let text = std::fs::read_to_string(&path).unwrap();
        let s = syntax_of(&path);
        let spec = pixc::front::parse(&text, s).unwrap();
        let bare: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{}\n", l.split("  #").next().unwrap()))
            .collect();
        for to in [Syntax::Yaml, Syntax::Dsl] {
            let old = match to {
                Syntax::Yaml => pixc::front::fmt::to_yaml(&spec),
                Syntax::Dsl => pixc::front::fmt::to_dsl(&spec),
            };
            assert_eq!(fmt_ok(&bare, s, to, "bare"), old, "{}", path.display());
        }
    }
}

#[test]
fn a_hash_inside_a_multi_line_value_is_an_error_naming_its_line() {
    let text = "input: {channels: 1, height: 8, width: 8, levels: 2}\nlayers:\n  - conv: {out: 4, kernel: 7, mask: A}\n  - head: bernoulli\ntrain:\n  data: \"png:a\n    #b\"\n";
    pixc::compile_str(text, Syntax::Yaml).expect("a valid spec");
    let e = format(text, Syntax::Yaml, Syntax::Yaml).unwrap_err();
    assert!(e[0].message.contains("line 7"), "{e:?}");
    assert_eq!(&text[e[0].span.start..e[0].span.start + 1], "#");
}

/// Inserts `comments` into `text`: each (line index, trailing?, text).
fn insert(text: &str, syntax: Syntax, comments: &[(usize, bool, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (at, trailing, c) in comments {
        let i = at % (lines.len() + 1);
        let c = format!("# {c}");
        if *trailing && i < lines.len() && scan(&lines[i], syntax).is_empty() {
            lines[i] = format!("{}  {c}", lines[i]);
        } else {
            let indent = lines
                .get(i)
                .map(|l| l.len() - l.trim_start().len())
                .unwrap_or(0);
            lines.insert(i, format!("{}{c}", " ".repeat(indent)));
        }
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn inserted_comments_are_never_lost(
        which in 0usize..64,
        comments in proptest::collection::vec(
            (0usize..200, any::<bool>(), "[ -~]{0,16}"),
            1..6,
        ),
    ) {
        let files = shipped();
        let path = &files[which % files.len()];
        let syntax = syntax_of(path);
        let text = insert(&std::fs::read_to_string(path).unwrap(), syntax, &comments);
        // Still the same spec.
        prop_assert!(pixc::front::parse(&text, syntax).is_ok(), "{}", text);
        let want = texts(&text, syntax);
        prop_assert_eq!(want.len(), texts(&std::fs::read_to_string(path).unwrap(), syntax).len() + comments.len());
        for to in [syntax, other(syntax)] {
            let out = format(&text, syntax, to);
            prop_assert!(out.is_ok(), "{:?}\n{}", out, text);
            let out = out.unwrap();
            prop_assert_eq!(texts(&out, to), want.clone(), "{}\n---\n{}", text, out);
            // And the output formats to itself.
            prop_assert_eq!(format(&out, to, to).unwrap(), out);
        }
    }
}

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

#[test]
fn fmt_write_keeps_the_comments_of_a_spec() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("diag_bilstm_12.yaml");
    let src = std::fs::read_to_string(root().join("specs/diag_bilstm_12.yaml")).unwrap();
    // Not canonical (extra spaces), with its comments.
    std::fs::write(&copy, src.replace("model: ", "model:    ")).unwrap();
    let copy_s = copy.display().to_string();
    let (code, _, err) = pixc(&["fmt", &copy_s, "--check"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = pixc(&["fmt", &copy_s, "--write"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), src);
    for f in ["specs/diag_bilstm_12.yaml", "examples/diag_bilstm_12.pixc"] {
        let (code, _, err) = pixc(&["fmt", f, "--check"]);
        assert_eq!(code, 0, "{f}: {err}");
    }
}

#[test]
fn fmt_refuses_what_it_cannot_keep_with_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("m.yaml");
    let text = "input: {channels: 1, height: 8, width: 8, levels: 2}\nlayers:\n  - conv: {out: 4, kernel: 7, mask: A}\n  - head: bernoulli\ntrain:\n  data: \"png:a\n    #b\"\n";
    std::fs::write(&copy, text).unwrap();
    let copy_s = copy.display().to_string();
    let (code, out, err) = pixc(&["fmt", &copy_s, "--write"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&format!("{copy_s}:7:5: error:")), "{err}");
    // The file is untouched.
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), text);
}
