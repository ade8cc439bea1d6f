//! Checkpoint integrity end to end: a flipped byte in any checkpoint is an error naming the
//! file (through the real `pixc` binary), files without a checksum still load, a failed
//! save keeps the previous checkpoint and the run resumes bit for bit, and the NaN stop
//! names the checkpoint that is really kept.

mod common;

use common::{serial, TINY};

use pixc::front::Syntax;
use pixc::train::{self, TrainOptions};
use pixc::weights::Weights;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn opts(out: &Path, steps: u64) -> TrainOptions {
    TrainOptions {
        out: out.to_path_buf(),
        steps: Some(steps),
        valid_images: 8,
        threads: Some(1),
        device: Some(pixc::device::Device::Cpu),
        json: true,
        ..Default::default()
    }
}

/// A run of `steps` steps of TINY (text `spec`) in `out`, trained in this process.
fn train_run(spec: &str, out: &Path, steps: u64) -> anyhow::Result<train::TrainReport> {
    let (spec, model) = pixc::compile_str(spec, Syntax::Yaml).unwrap();
    train::train(&spec, &model, &opts(out, steps))
}

fn pixc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pixc"))
        .args(args)
        .output()
        .expect("pixc runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Flips one bit of a byte inside the tensor data (past the header), the kind of damage
/// that leaves a plausible float.
fn flip_in_data(path: &Path) -> Vec<u8> {
    let orig = std::fs::read(path).unwrap();
    let header = u64::from_le_bytes(orig[..8].try_into().unwrap()) as usize;
    let data_start = 8 + header;
    assert!(orig.len() > data_start + 16, "no tensor data in {path:?}");
    let mut b = orig.clone();
    let at = data_start + (orig.len() - data_start) / 2;
    b[at] ^= 0x01;
    std::fs::write(path, &b).unwrap();
    orig
}

/// Asserts a failed command: exit 1, an error naming `file`, no panic.
fn assert_names(o: &Output, file: &str, what: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{what}: {e}");
    assert!(e.contains(file) && e.contains("corrupt"), "{what}: {e}");
    assert!(!e.contains("panicked"), "{what}: {e}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_flipped_byte_in_any_checkpoint_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    {
        let _turn = serial();
        train_run(TINY, &run, 2).unwrap();
    }
    let ok = pixc(&["fsck", s(&run)]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));

    // best.safetensors: every command that loads a model from a run folder.
    let best = run.join("best.safetensors");
    let orig = flip_in_data(&best);
    let onnx = dir.path().join("m.onnx");
    let png = dir.path().join("s.png");
    for (what, args) in [
        (
            "eval",
            vec!["eval", s(&run), "--limit", "4", "--device", "cpu"],
        ),
        ("export", vec!["export", "--onnx", s(&run), "-o", s(&onnx)]),
        ("verify", vec!["verify", s(&run), "--images", "2"]),
        ("sample", vec!["sample", s(&run), "-n", "1", "-o", s(&png)]),
    ] {
        assert_names(&pixc(&args), "best.safetensors", what);
    }
    let f = pixc(&["fsck", s(&run), "--json"]);
    assert_eq!(f.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&f.stdout).unwrap();
    let bad: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "error")
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(bad, ["best.safetensors"], "{v}");
    assert!(!onnx.exists() && !png.exists());
    std::fs::write(&best, orig).unwrap();

    // The last checkpoint and the optimizer state: --resume.
    let spec = run.join("spec.yaml");
    for file in ["last.safetensors", "last.optim.safetensors"] {
        let p = run.join(file);
        let orig = flip_in_data(&p);
        let o = pixc(&[
            "train",
            s(&spec),
            "--out",
            s(&run),
            "--resume",
            "--steps",
            "4",
            "--threads",
            "1",
            "--device",
            "cpu",
        ]);
        assert_names(&o, file, "resume");
        let f = pixc(&["fsck", s(&run)]);
        assert_eq!(f.status.code(), Some(1));
        let out = String::from_utf8_lossy(&f.stdout).into_owned();
        let line = out.lines().find(|l| l.contains(file)).unwrap_or("");
        assert!(line.trim_start().starts_with("error"), "{out}");
        std::fs::write(&p, orig).unwrap();
    }
    let ok = pixc(&["fsck", s(&run)]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
}

/// Rewrites a pixc safetensors file as one written before checksums: same tensors and
/// metadata, no `pixc_sha256`.
fn strip_checksum(path: &Path) {
    let (w, mut meta) = Weights::load(path).unwrap();
    assert!(meta.remove(pixc::integrity::KEY).is_some());
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = w
        .tensors
        .iter()
        .map(|(k, t)| {
            let b = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), b, t.shape.clone())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, b, sh)| {
            let v = safetensors::tensor::TensorView::new(
                safetensors::tensor::Dtype::F32,
                sh.clone(),
                b,
            )
            .unwrap();
            (k.clone(), v)
        })
        .collect();
    std::fs::write(
        path,
        safetensors::tensor::serialize(views, Some(meta)).unwrap(),
    )
    .unwrap();
}

#[test]
fn files_without_a_checksum_still_load_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    {
        let _turn = serial();
        train_run(TINY, &run, 2).unwrap();
    }
    for f in [
        "best.safetensors",
        "last.safetensors",
        "last.optim.safetensors",
    ] {
        strip_checksum(&run.join(f));
    }
    let o = pixc(&["eval", s(&run), "--limit", "4", "--device", "cpu"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    let notes: Vec<&str> = e.lines().filter(|l| l.contains("no checksum")).collect();
    assert_eq!(notes.len(), 1, "{e}");
    assert!(notes[0].starts_with("note:") && notes[0].contains("best.safetensors"));
    let f = pixc(&["fsck", s(&run)]);
    let out = String::from_utf8_lossy(&f.stdout).into_owned();
    assert_eq!(f.status.code(), Some(0), "{out}");
    assert_eq!(out.matches("no-checksum").count(), 3, "{out}");
    // --resume reads the old weights and optimizer state, and writes checksummed files.
    let o = pixc(&[
        "train",
        s(&run.join("spec.yaml")),
        "--out",
        s(&run),
        "--resume",
        "--steps",
        "4",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--valid-images",
        "8",
        "--json",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert_eq!(e.matches("no checksum").count(), 2, "{e}");
    let (_, meta) = Weights::load(&run.join("last.safetensors")).unwrap();
    assert!(Weights::has_checksum(&meta));
}

fn saved_step(run: &Path) -> u64 {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("state.json")).unwrap()).unwrap();
    v["saved_step"].as_u64().unwrap()
}

#[test]
fn a_failed_save_keeps_the_previous_checkpoint_and_the_run_resumes_bit_for_bit() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    train_run(TINY, &a, 4).unwrap();
    train_run(TINY, &b, 2).unwrap();
    // The save at step 4 fails when it writes the weights, after the optimizer state was
    // written: a directory stands where the weights' temp file goes. (A read-only folder
    // does not stop root, who runs CI.)
    let blocker: PathBuf = pixc::util::temp_path(&b, "last.safetensors");
    std::fs::create_dir(&blocker).unwrap();
    let (spec, model) = pixc::compile_str(TINY, Syntax::Yaml).unwrap();
    let resume = TrainOptions {
        resume: true,
        ..opts(&b, 4)
    };
    let e = format!("{:#}", train::train(&spec, &model, &resume).unwrap_err());
    for want in [
        "step 4",
        "last.safetensors",
        "checkpoint of step 2",
        "intact",
        "--resume",
    ] {
        assert!(e.contains(want), "`{want}` missing from: {e}");
    }
    std::fs::remove_dir(&blocker).unwrap();
    // Nothing was replaced, and no temp file is left.
    assert_eq!(saved_step(&b), 2);
    let step_of = |f: &str| Weights::load(&b.join(f)).unwrap().1["step"].clone();
    assert_eq!(step_of("last.safetensors"), "2");
    assert_eq!(step_of("last.optim.safetensors"), "2");
    let left: Vec<String> = std::fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let r = pixc::train::fsck::fsck(&b).unwrap();
    assert!(r.ok, "{r}");
    // The command the message gives continues the run to the same bits as `a`.
    train::train(&spec, &model, &resume).unwrap();
    let load = |p: PathBuf| Weights::load(&p).unwrap().0;
    for f in ["last.safetensors", "last.optim.safetensors"] {
        assert!(
            load(a.join(f)) == load(b.join(f)),
            "{f} differs after resume"
        );
    }
}

#[test]
fn the_nan_stop_names_the_checkpoint_really_kept() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let wild = TINY
        .replace("lr: 0.01", "lr: 1.0e30")
        .replace("clip: 1.0", "clip: none");
    // No validation before the loss blows up: nothing was saved, and the message says so.
    let none = dir.path().join("none");
    let e = format!(
        "{:#}",
        train_run(
            &wild.replace("valid_every: 2", "valid_every: 100"),
            &none,
            20
        )
        .unwrap_err()
    );
    assert!(e.contains("No checkpoint was saved yet"), "{e}");
    assert!(e.contains("--valid-every") && !e.contains("is kept"), "{e}");
    assert!(!none.join("state.json").exists() && !none.join("last.safetensors").exists());
    // A validation every step: the step named is the one on disk.
    let some = dir.path().join("some");
    let e = format!(
        "{:#}",
        train_run(&wild.replace("valid_every: 2", "valid_every: 1"), &some, 20).unwrap_err()
    );
    let saved = saved_step(&some);
    assert!(saved >= 1);
    assert!(
        e.contains(&format!("checkpoint of step {saved} in")),
        "state.json says {saved}: {e}"
    );
    assert!(e.contains("--resume"), "{e}");
}
