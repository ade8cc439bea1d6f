//! Runs side by side: `pixc runs` (a table of a folder's runs, with the test NLL a
//! whole-split `pixc eval` recorded), `pixc plot RUN RUN` (overlaid curves) and
//! `pixc completions`.

use std::path::Path;
use std::process::{Command, Output};

fn pixc_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pixc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("pixc runs")
}

fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn runs_are_listed_plotted_together_and_completions_print() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny.yaml");
    let tiny = tiny.to_str().unwrap();
    for steps in ["2", "1"] {
        let args = [
            "train",
            tiny,
            "--steps",
            steps,
            "--valid-images",
            "8",
            "--threads",
            "1",
            "--device",
            "cpu",
        ];
        ok(&pixc_in(d, &args));
    }
    // A test score of the whole split is kept in the run and shown.
    let rec = serde_json::json!({"nll": 99.5, "unit": "nats/image", "nats_per_image": 99.5,
        "images": 10000, "split": "test", "step": 2, "checkpoint": "x", "data": "d"});
    std::fs::write(d.join("runs/tiny/eval_test.json"), rec.to_string()).unwrap();
    let table = ok(&pixc_in(d, &["runs"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("run ") && lines[0].contains("best valid"),
        "{table}"
    );
    let cols = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    let a = cols(lines[1]);
    let b = cols(lines[2]);
    assert_eq!(
        (a[0].as_str(), a[1].as_str(), a[2].as_str()),
        ("runs/tiny", "tiny", "2")
    );
    assert_eq!(a[4], "99.5000", "{table}");
    assert_eq!(a.last().unwrap(), "done");
    assert_eq!(
        (b[0].as_str(), b[2].as_str(), b[4].as_str()),
        ("runs/tiny-2", "1", "-")
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&pixc_in(d, &["runs", "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["test_nll"], 99.5);
    assert!(json[0]["best_valid_nll"].is_number());

    let out = ok(&pixc_in(
        d,
        &["plot", "runs/tiny", "runs/tiny-2", "-o", "both.png"],
    ));
    assert!(
        out.contains("wrote both.png (2 validation points)"),
        "{out}"
    );
    assert!(std::fs::read(d.join("both.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));

    // What `sample --pgm` writes, `complete --image` reads.
    let args = [
        "sample",
        "runs/tiny",
        "-n",
        "1",
        "--pgm",
        "pgm",
        "-o",
        "s.png",
    ];
    ok(&pixc_in(d, &args));
    let args = [
        "complete",
        "runs/tiny",
        "--image",
        "pgm/sample_000.pgm",
        "--samples",
        "1",
        "-o",
        "c.png",
    ];
    ok(&pixc_in(d, &args));
    assert!(d.join("c.png").is_file());
    // More rows kept than the image has: a usage error, nothing written.
    let o = pixc_in(
        d,
        &["complete", "runs/tiny", "--keep-rows", "100", "-o", "k.png"],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!d.join("k.png").exists());

    for shell in ["bash", "zsh", "fish"] {
        let s = ok(&pixc_in(d, &["completions", shell]));
        assert!(s.contains("pixc") && s.contains("resume"), "{shell}");
    }
}

/// One `pixc train` at a time writes a run folder: a second one is refused with who holds
/// it, `pixc runs` says `running` meanwhile, and the lock goes with the process.
#[test]
fn a_run_being_trained_is_locked_and_listed_as_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny.yaml");
    let mut first = Command::new(env!("CARGO_BIN_EXE_pixc"))
        .args(["train", tiny.to_str().unwrap(), "--steps", "1000000"])
        .args(["--valid-images", "8", "--threads", "1", "--device", "cpu"])
        .args(["--out", "long", "--json", "--valid-every", "5"])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = || {
        let table = ok(&pixc_in(d, &["runs", "."]));
        table.lines().any(|l| l.ends_with(" running"))
    };
    // Running, and past its first checkpoint (so that a resume gets as far as the lock).
    let t0 = std::time::Instant::now();
    while !(running() && d.join("long/state.json").is_file()) {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first training ended early"
        );
        assert!(
            t0.elapsed().as_secs() < 300,
            "the run never showed as running with a checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A second training of the same folder, here a resume, is refused.
    let o = pixc_in(d, &["train", "--resume", "long", "--steps", "3"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let holder = format!("another process (pixc train, pid {}, since ", first.id());
    assert!(
        err.contains("long is being trained by") && err.contains(&holder),
        "{err}"
    );
    // `pixc fsck` says a training is writing the folder.
    let fsck = String::from_utf8_lossy(&pixc_in(d, &["fsck", "long"]).stdout).into_owned();
    assert!(
        fsck.contains("train.lock") && fsck.contains("held by pixc train, pid"),
        "{fsck}"
    );
    // SIGTERM: the first one saves and exits, and its lock goes with it.
    // SAFETY: a plain kill(2) of the child this test started.
    assert_eq!(
        unsafe { libc::kill(first.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    first.wait().unwrap();
    assert!(!running());
    let table = ok(&pixc_in(d, &["runs", "."]));
    assert!(table.contains(" stopped"), "{table}");
    let fsck = ok(&pixc_in(d, &["fsck", "long"]));
    assert!(fsck.contains("not held: no training is writing"), "{fsck}");
}

/// What is given where a run folder goes, when it is not one: a spec, an ONNX file, a
/// missing path, a folder without a run. Each an error (exit 1) saying what it is and
/// what to give instead.
#[test]
fn not_a_run_folder_says_what_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("m.onnx"), [8u8, 10]).unwrap();
    std::fs::write(d.join("s.yaml"), "model: m\n").unwrap();
    for (arg, says) in [
        ("s.yaml", "is a file, not a run folder"),
        ("s.yaml", "a spec is trained first"),
        ("m.onnx", "`pixc eval --onnx FILE`"),
        ("gone", "gone does not exist"),
        (".", "has no spec.yaml"),
    ] {
        let o = pixc_in(d, &["eval", arg]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{arg}: {err}");
        assert!(err.contains(says), "{arg}: {err}");
    }
}
