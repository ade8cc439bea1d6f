//! The command line refuses bad numeric flags the way a spec refuses bad values: every
//! subcommand's numeric flags swept with 0, -1, a huge value, NaN and the empty string
//! exit 2 with a message, never panic, and leave no file behind. Also the run folder
//! defaults (`runs/<model>`, made unique) and `pixc train --resume RUN`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

/// Runs pixc in `dir`.
fn pixc_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pixc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("pixc runs")
}

/// Every path under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Values no count accepts. `--flag=VALUE` keeps `-1` a value rather than a flag.
const BAD_COUNTS: &[&str] = &["0", "-1", "99999999999999999999999", "NaN", ""];
/// Values no positive number accepts.
const BAD_FLOATS: &[&str] = &["0", "-1", "1e400", "NaN", "", "inf", "-0.5"];
/// For flags where 0 is a meaning (a seed, "the whole split", "keep no rows").
const BAD_FROM_ZERO: &[&str] = &["-1", "99999999999999999999999", "NaN", "", "1.5"];

#[test]
fn every_flag_with_a_rule_is_checked_before_anything_is_made() {
    let tiny = repo("examples/tiny.yaml");
    // A run folder is never reached: parsing refuses first. "run" does not exist, so a
    // value that slipped through would fail later with exit 1, not 2.
    let cases: Vec<(Vec<&str>, &str, &[&str])> = vec![
        (vec!["train", &tiny], "--epochs", BAD_COUNTS),
        (vec!["train", &tiny], "--steps", BAD_COUNTS),
        (vec!["train", &tiny], "--minutes", BAD_FLOATS),
        (vec!["train", &tiny], "--minutes", &["1e12"]),
        (vec!["train", &tiny], "--batch", BAD_COUNTS),
        (vec!["train", &tiny], "--lr", BAD_FLOATS),
        (vec!["train", &tiny], "--seed", BAD_FROM_ZERO),
        (vec!["train", &tiny], "--valid-every", BAD_COUNTS),
        (vec!["train", &tiny], "--valid-images", BAD_FROM_ZERO),
        (vec!["train", &tiny], "--threads", BAD_COUNTS),
        (vec!["train", &tiny], "--threads", &["100000"]),
        (vec!["eval", "run"], "--limit", BAD_COUNTS),
        (vec!["export", "--onnx", &tiny], "--seed", BAD_FROM_ZERO),
        (vec!["verify", &tiny], "--images", BAD_COUNTS),
        (vec!["verify", &tiny], "--seed", BAD_FROM_ZERO),
        (vec!["sample", "run"], "--num", BAD_COUNTS),
        (vec!["sample", "run"], "--num", &["1025"]),
        (vec!["sample", "run"], "--seed", BAD_FROM_ZERO),
        (vec!["sample", "run"], "--temperature", BAD_FLOATS),
        (vec!["sample", "run"], "--cols", BAD_COUNTS),
        (vec!["sample", "run"], "--scale", BAD_COUNTS),
        (vec!["sample", "run"], "--scale", &["100000"]),
        (vec!["complete", "run"], "--from-test", BAD_COUNTS),
        (vec!["complete", "run"], "--keep-rows", BAD_FROM_ZERO),
        (vec!["complete", "run"], "--samples", BAD_COUNTS),
        (vec!["complete", "run"], "--seed", BAD_FROM_ZERO),
        (vec!["complete", "run"], "--temperature", BAD_FLOATS),
        (vec!["complete", "run"], "--scale", BAD_COUNTS),
        (vec!["sample", "run"], "--out", &["grid.jpg", "grid.npy"]),
        (vec!["sample", "run"], "--npy", &["raw.png"]),
        (vec!["complete", "run"], "--out", &["grid.jpg"]),
        (vec!["plot", "run"], "--out", &["curves.svg"]),
        (vec!["bench", &tiny], "--batch", BAD_COUNTS),
        (vec!["bench", &tiny], "--seconds", BAD_FLOATS),
        (vec!["bench", &tiny], "--threads", BAD_COUNTS),
        (vec!["bench", &tiny], "--rounds", BAD_COUNTS),
        (vec!["bench", "--inference", &tiny], "--batches", BAD_COUNTS),
        (vec!["bench-one", &tiny], "--batch", BAD_COUNTS),
        (vec!["bench-one", &tiny], "--seconds", BAD_FLOATS),
    ];
    let mut failures = Vec::new();
    for (prefix, flag, values) in &cases {
        for v in *values {
            let dir = tempfile::tempdir().unwrap();
            let arg = format!("{flag}={v}");
            let mut args = prefix.clone();
            args.push(&arg);
            let o = pixc_in(dir.path(), &args);
            let err = String::from_utf8_lossy(&o.stderr);
            let left = files_under(dir.path());
            if o.status.code() != Some(2) || !err.contains("error") || !left.is_empty() {
                failures.push(format!(
                    "pixc {}: exit {:?}, files {left:?}, stderr: {err}",
                    args.join(" "),
                    o.status.code()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_flag_gets_the_message_of_the_spec_key_it_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let o = pixc_in(
        dir.path(),
        &["train", &repo("examples/tiny.yaml"), "--batch", "0"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    // The builder says the same of `batch: 0` in a spec.
    assert!(
        err.contains("`batch` must be an integer >= 1, found `0`"),
        "{err}"
    );
}

#[test]
fn fmt_to_another_syntax_with_write_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::copy(repo("examples/tiny.yaml"), &spec).unwrap();
    let before = std::fs::read(&spec).unwrap();
    let o = pixc_in(dir.path(), &["fmt", "s.yaml", "--to", "dsl", "--write"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&spec).unwrap(), before);
}

/// Trains examples/tiny.yaml for `steps` steps in `dir` with extra arguments.
fn train_tiny(dir: &Path, extra: &[&str]) -> Output {
    let tiny = repo("examples/tiny.yaml");
    let mut args = vec![
        "train",
        &tiny,
        "--valid-images",
        "8",
        "--threads",
        "1",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    pixc_in(dir, &args)
}

#[test]
fn run_folders_default_to_runs_model_and_resume_needs_only_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = train_tiny(d, &["--steps", "1"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(d.join("runs/tiny/state.json").is_file());
    // A second new run never touches the first.
    let o = train_tiny(d, &["--steps", "1"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(d.join("runs/tiny-2/state.json").is_file());
    // Resume from the folder alone, to more steps.
    let o = pixc_in(
        d,
        &[
            "train",
            "--resume",
            "runs/tiny",
            "--steps",
            "2",
            "--valid-images",
            "8",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--json",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("\"steps\":2"), "{out}");
    // The summary names the best validation NLL as metrics.jsonl does.
    assert!(
        out.contains("\"best_valid_nll\":") && !out.contains("\"best_valid\":"),
        "{out}"
    );
    // A run folder without --resume, or training into a run without it: usage errors.
    let o = pixc_in(d, &["train", "runs/tiny"]);
    assert_eq!(o.status.code(), Some(2));
    let o = train_tiny(d, &["--steps", "1", "--out", "runs/tiny"]);
    assert_eq!(o.status.code(), Some(2));
    // A batch larger than the training set is refused before a folder is made.
    let before = files_under(d);
    let o = train_tiny(d, &["--batch", "1000000", "--out", "big"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("training images"), "{err}");
    assert_eq!(files_under(d), before);
}

#[test]
fn sigterm_saves_and_exits_143_like_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let tiny = repo("examples/tiny.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixc"))
        .args([
            "train",
            &tiny,
            "--minutes",
            "10",
            "--valid-every",
            "1",
            "--valid-images",
            "8",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--json",
            "--out",
            "run",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first validation's JSON line: training (and its signal handling) has started.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("\"valid_nll\""), "{first}");
    // SAFETY: sends a signal to the child started above.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{rest:?}");
    let summary = rest.last().expect("a final summary");
    assert!(
        summary.contains("\"stopped_by\":\"terminate\""),
        "{summary}"
    );
    // Saved: the state names the step of the last checkpoint.
    let state = std::fs::read_to_string(dir.path().join("run/state.json")).unwrap();
    assert!(state.contains("\"step\""), "{state}");
}

#[test]
fn resuming_refuses_another_model_and_records_changed_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = train_tiny(d, &["--steps", "1", "--out", "run"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    // Off a terminal, progress comes as plain lines: step, loss, images/s, time left.
    assert!(
        err.contains("step 1/1  train ") && err.contains(" img/s  eta "),
        "{err}"
    );
    // Another architecture: refused before the checkpoint is read, with the difference.
    let wide = std::fs::read_to_string(repo("examples/tiny.yaml"))
        .unwrap()
        .replace("h: 4", "h: 8");
    std::fs::write(d.join("wide.yaml"), wide).unwrap();
    let o = pixc_in(d, &["train", "wide.yaml", "--out", "run", "--resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("trained from a different spec: its model differs"),
        "{err}"
    );
    assert!(err.contains("\n-  h: 4\n+  h: 8\n"), "{err}");
    // Allowed changes are made and recorded: history.jsonl, and spec.yaml's new values.
    let o = pixc_in(
        d,
        &[
            "train",
            "--resume",
            "run",
            "--steps",
            "2",
            "--lr",
            "0.002",
            "--valid-images",
            "8",
            "--threads",
            "1",
            "--device",
            "cpu",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let hist = std::fs::read_to_string(d.join("run/history.jsonl")).unwrap();
    assert!(
        hist.contains("\"resumed_at_step\":1")
            && hist.contains("\"lr\":{\"now\":\"0.002\",\"was\":\"0.001\"}"),
        "{hist}"
    );
    let spec = std::fs::read_to_string(d.join("run/spec.yaml")).unwrap();
    assert!(
        spec.contains("lr: 0.002") && spec.contains("steps: 2"),
        "{spec}"
    );
}

#[test]
fn a_model_name_that_is_a_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("examples/tiny.yaml"))
        .unwrap()
        .replace("model: tiny", "model: ..");
    std::fs::write(dir.path().join("dots.yaml"), text).unwrap();
    let o = pixc_in(dir.path(), &["check", "dots.yaml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("`..` is not a valid model name"), "{err}");
}
