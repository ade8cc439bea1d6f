//! `pixc check` and `pixc fmt --check` on several specs or a folder, and `check --json`
//! on an invalid spec (diagnostics as JSON objects, one a line).

use std::path::Path;
use std::process::{Command, Output};

fn pixc_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pixc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("pixc runs")
}

fn tiny() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny.yaml"))
        .unwrap()
}

#[test]
fn check_json_prints_an_invalid_specs_diagnostics_as_json() {
    let dir = tempfile::tempdir().unwrap();
    // Line 11 of tiny.yaml is the first conv; an even kernel is an error there.
    let bad = tiny().replace("kernel: 7, mask: A", "kernel: 8, mask: A");
    std::fs::write(dir.path().join("bad.yaml"), &bad).unwrap();
    let o = pixc_in(dir.path(), &["check", "--json", "bad.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    let out = String::from_utf8_lossy(&o.stdout);
    let first: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("a JSON line")).unwrap();
    let line = bad.lines().position(|l| l.contains("kernel: 8")).unwrap() + 1;
    assert_eq!(first["file"], "bad.yaml");
    assert_eq!(first["line"], line);
    assert!(first["column"].as_u64().unwrap() >= 1);
    assert!(
        first["message"].as_str().unwrap().contains("kernel"),
        "{out}"
    );
    assert!(first.get("help").is_some());
}

#[test]
fn check_and_fmt_check_take_several_specs_or_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("specs")).unwrap();
    std::fs::write(d.join("specs/a.yaml"), tiny()).unwrap();
    std::fs::write(
        d.join("specs/b.yaml"),
        tiny().replace("model: tiny", "model: b"),
    )
    .unwrap();
    let o = pixc_in(d, &["check", "specs"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("ok  specs/a.yaml") && out.contains("ok  specs/b.yaml"),
        "{out}"
    );
    let o = pixc_in(d, &["check", "specs/a.yaml", "specs/b.yaml", "--json"]);
    let n = String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!((o.status.code(), n), (Some(0), 2));
    // One invalid spec among them: exit 2, the other still reported.
    std::fs::write(d.join("specs/c.yaml"), "model: c\n").unwrap();
    let o = pixc_in(d, &["check", "specs"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok  specs/b.yaml"));
    std::fs::remove_file(d.join("specs/c.yaml")).unwrap();
    // fmt --check: the shipped example is canonical; a reordered copy is not (exit 1).
    let o = pixc_in(d, &["fmt", "--check", "specs/a.yaml", "specs/b.yaml"]);
    let canonical = o.status.code();
    std::fs::write(d.join("specs/b.yaml"), format!("{}\n\n", tiny())).unwrap();
    let o2 = pixc_in(d, &["fmt", "--check", "specs"]);
    assert_eq!(
        o2.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o2.stderr)
    );
    assert!(String::from_utf8_lossy(&o2.stderr).contains("specs/b.yaml: not in canonical form"));
    // Several files without --check: a usage error.
    let o3 = pixc_in(d, &["fmt", "specs"]);
    assert_eq!(o3.status.code(), Some(2));
    assert_eq!(canonical, Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn every_data_set_the_spec_rule_accepts_is_one_the_loader_knows() {
    for name in pixc::front::flags::DATA_SETS {
        if *name == "cifar10" {
            continue; // reads PIXC_CIFAR10_DIR, unset here
        }
        assert!(pixc::data::DataSource::parse(name).is_ok(), "{name}");
    }
    // What `check` used to pass and `train` refused.
    let dir = tempfile::tempdir().unwrap();
    let text = tiny().replace("data: mnist-binarized", "data: mnist");
    std::fs::write(dir.path().join("m.yaml"), text).unwrap();
    let o = pixc_in(dir.path(), &["check", "m.yaml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown data set `mnist`"), "{err}");
    // Both step limits: one is dropped silently no more.
    let text = tiny().replace("steps: 200", "steps: 200\n  epochs: 2");
    std::fs::write(dir.path().join("both.yaml"), text).unwrap();
    let o = pixc_in(dir.path(), &["check", "both.yaml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("`steps` and `epochs` both set"), "{err}");
}

#[test]
fn every_command_has_examples_in_its_help() {
    let dir = tempfile::tempdir().unwrap();
    let top = String::from_utf8_lossy(&pixc_in(dir.path(), &["--help"]).stdout).into_owned();
    // The command list: indented lines between "Commands:" and the next section.
    let cmds: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect();
    assert!(cmds.len() >= 15, "{cmds:?}");
    for c in &cmds {
        let help =
            String::from_utf8_lossy(&pixc_in(dir.path(), &[c, "--help"]).stdout).into_owned();
        assert!(
            help.contains(&format!("pixc {c}")),
            "{c} --help has no example:\n{help}"
        );
    }
}
