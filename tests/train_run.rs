//! Training on real MNIST end to end: resume is bit-for-bit, NaN stops cleanly keeping the
//! last good checkpoint, corrupt or missing checkpoints give clear errors.

mod common;

use common::{serial, TINY};

use pixc::front::Syntax;
use pixc::train::{self, EvalSplit, TrainOptions};
use std::path::Path;

fn opts(out: &Path) -> TrainOptions {
    TrainOptions {
        out: out.to_path_buf(),
        valid_images: 8,
        threads: Some(1),
        device: Some(pixc::device::Device::Cpu),
        json: true,
        ..Default::default()
    }
}

#[test]
fn resume_is_bit_for_bit_and_eval_works() {
    let _turn = serial();
    resume_matches_an_uninterrupted_run(TINY, TINY);
}

/// A cosine schedule with warm-up: the resumed run takes every step at the rate of the
/// uninterrupted one, although its first part was told to stop at step 2 and the resume
/// is given the spec without a schedule (the run's own spec.yaml decides).
#[test]
fn resume_honours_the_runs_learning_rate_schedule() {
    let _turn = serial();
    let scheduled = TINY.replace(
        "lr: 0.01,",
        "lr: 0.01, schedule: cosine, warmup_steps: 1, decay_steps: 4, min_lr: 0.001,",
    );
    let (a, _dir) = resume_matches_an_uninterrupted_run(&scheduled, TINY);
    let lrs: Vec<f64> = std::fs::read_to_string(a.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["lr"]
                .as_f64()
                .unwrap()
        })
        .collect();
    // Steps 2 and 4 (t = 1, 3): the end of the warm-up, then 2/3 of the way down:
    // 0.001 + 0.009 * (1 + cos(2 pi / 3)) / 2.
    let want = [0.01, 0.001 + 0.009 * 0.25];
    assert_eq!(lrs.len(), 2);
    for (g, w) in lrs.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{lrs:?}");
    }
    assert!(std::fs::read_to_string(a.join("spec.yaml"))
        .unwrap()
        .contains("schedule: cosine"));

    // Without `decay_steps` the cosine spans the run's planned steps, written into the
    // run's spec.yaml so that a resume decays over the same length.
    let planned = scheduled.replace(" decay_steps: 4,", "");
    let (spec, model) = pixc::compile_str(&planned, Syntax::Yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    train::train(
        &spec,
        &model,
        &TrainOptions {
            steps: Some(3),
            ..opts(&c)
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(c.join("spec.yaml")).unwrap();
    assert!(text.contains("decay_steps: 3"), "{text}");
}

/// The README's main job (`scripts/train-mnist.sh`: the shipped Diagonal BiLSTM spec,
/// `--minutes` only) starts and trains.
#[test]
fn the_shipped_mnist_spec_trains_by_minutes() {
    let _turn = serial();
    let path = format!(
        "{}/specs/diag_bilstm_7_mnist.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let (spec, model, _) = pixc::compile_file(Path::new(&path)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = train::train(
        &spec,
        &model,
        &TrainOptions {
            minutes: Some(0.005),
            ..opts(&run)
        },
    )
    .unwrap();
    assert!(r.steps >= 1 && r.stopped_by == "time", "{r:?}");
    // 20 epochs of 50,000 images at batch 16.
    let written = std::fs::read_to_string(run.join("spec.yaml")).unwrap();
    assert!(written.contains("decay_steps: 62500"), "{written}");
}

/// A run limited by --minutes alone plans its cosine schedule over the spec's own
/// `steps` (or `epochs`), not over nothing (which refused the README's main job, a
/// five-minute run of the shipped MNIST spec), and stops where the rate reaches zero. A
/// finished cosine run (min_lr 0) cannot be resumed past its schedule's end, by steps or
/// by time, where every further step would train at a zero rate: a clear error, not
/// hours of nothing.
#[test]
fn cosine_runs_end_with_their_schedule() {
    let _turn = serial();
    let text = TINY.replace("lr: 0.01,", "lr: 0.01, schedule: cosine,");
    let (spec, model) = pixc::compile_str(&text, Syntax::Yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let go = |steps: Option<u64>, minutes: Option<f64>, resume: bool| {
        train::train(
            &spec,
            &model,
            &TrainOptions {
                steps,
                minutes,
                resume,
                ..opts(&run)
            },
        )
    };
    let r = go(None, Some(0.2), false).unwrap();
    assert_eq!((r.steps, r.stopped_by.as_str()), (4, "steps"));
    let written = std::fs::read_to_string(run.join("spec.yaml")).unwrap();
    assert!(written.contains("decay_steps: 4"), "{written}");
    let e = format!("{:#}", go(Some(5), None, true).unwrap_err());
    assert!(
        e.contains("reaches min_lr (0) at step 4") && e.contains("--steps 4 at most"),
        "{e}"
    );
    let e = format!("{:#}", go(None, Some(0.2), true).unwrap_err());
    assert!(
        e.contains("reached its zero rate at step 4") && e.contains("in a new run"),
        "{e}"
    );
}

/// `--data` is recorded in the run's spec.yaml like any override: `pixc eval` scores the
/// data the run was trained on (it read the spec's), and a resume that would train on
/// other data (the spec given again without `--data`) is refused.
#[test]
fn a_data_override_is_the_runs_data() {
    let _turn = serial();
    let (spec, model) = pixc::compile_str(TINY, Syntax::Yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let go = |steps: u64, data: Option<&str>, resume: bool| {
        train::train(
            &spec,
            &model,
            &TrainOptions {
                steps: Some(steps),
                data: data.map(String::from),
                resume,
                ..opts(&run)
            },
        )
    };
    go(2, Some("mnist-binarized-dynamic"), false).unwrap();
    let written = std::fs::read_to_string(run.join("spec.yaml")).unwrap();
    assert!(
        written.contains("data: mnist-binarized-dynamic"),
        "{written}"
    );
    let r = train::eval_run(
        &run,
        EvalSplit::Valid,
        Some(8),
        pixc::device::Device::Cpu,
        None,
    )
    .unwrap();
    assert!(r.data.starts_with("mnist-binarized-dynamic"), "{}", r.data);
    let e = format!("{:#}", go(4, None, true).unwrap_err());
    assert!(
        e.contains("the run was trained on `mnist-binarized-dynamic`"),
        "{e}"
    );
    assert_eq!(
        go(4, Some("mnist-binarized-dynamic"), true).unwrap().steps,
        4
    );
}

/// Trains `text` 4 steps in one go (run `a`) and 2 + 2 steps with a resume given
/// `resume_text` (run `b`); the weights and optimizer state must be equal. Returns `a`.
fn resume_matches_an_uninterrupted_run(
    text: &str,
    resume_text: &str,
) -> (std::path::PathBuf, tempfile::TempDir) {
    let (spec, model) = pixc::compile_str(text, Syntax::Yaml).unwrap();
    let (resume_spec, _) = pixc::compile_str(resume_text, Syntax::Yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let ra = train::train(
        &spec,
        &model,
        &TrainOptions {
            steps: Some(4),
            ..opts(&a)
        },
    )
    .unwrap();
    assert_eq!(ra.steps, 4);
    train::train(
        &spec,
        &model,
        &TrainOptions {
            steps: Some(2),
            ..opts(&b)
        },
    )
    .unwrap();
    // Starting again without --resume refuses to overwrite the run.
    let again = train::train(
        &spec,
        &model,
        &TrainOptions {
            steps: Some(4),
            ..opts(&b)
        },
    );
    assert!(format!("{:#}", again.unwrap_err()).contains("--resume"));
    train::train(
        &resume_spec,
        &model,
        &TrainOptions {
            steps: Some(4),
            resume: true,
            ..opts(&b)
        },
    )
    .unwrap();
    let load = |p: std::path::PathBuf| pixc::weights::Weights::load(&p).unwrap().0;
    // Tensor data compared exactly (the files' metadata order is not significant).
    assert!(
        load(a.join("last.safetensors")) == load(b.join("last.safetensors")),
        "resumed weights differ from an uninterrupted run"
    );
    assert!(
        load(a.join("last.optim.safetensors")) == load(b.join("last.optim.safetensors")),
        "resumed optimizer state differs"
    );
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    let r = train::eval_run(
        &a,
        EvalSplit::Test,
        Some(8),
        pixc::device::Device::Cpu,
        None,
    )
    .unwrap();
    assert!(r.nll.is_finite() && r.nll > 0.0 && r.unit == "nats/image");
    let lr_of = |run: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["lr"].clone())
            .collect()
    };
    assert_eq!(lr_of(&a), lr_of(&b), "the logged learning rates differ");
    (a, dir)
}

#[test]
fn nan_loss_stops_and_keeps_the_last_good_checkpoint() {
    let _turn = serial();
    let text = TINY
        .replace("lr: 0.01", "lr: 1.0e30")
        .replace("clip: 1.0", "clip: none")
        .replace("valid_every: 2", "valid_every: 1");
    let (spec, model) = pixc::compile_str(&text, Syntax::Yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let err = train::train(
        &spec,
        &model,
        &TrainOptions {
            steps: Some(20),
            ..opts(&out)
        },
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("loss became") && msg.contains("last good checkpoint"),
        "{msg}"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("state.json")).unwrap()).unwrap();
    let saved = state["saved_step"].as_u64().unwrap();
    assert!(saved >= 1);
    // The kept checkpoint loads.
    let r = train::eval_run(
        &out,
        EvalSplit::Valid,
        Some(4),
        pixc::device::Device::Cpu,
        None,
    );
    assert!(r.is_ok(), "{:?}", r.err());
}

#[test]
fn corrupt_and_missing_checkpoints_are_clear_errors() {
    let _turn = serial();
    let (spec, model) = pixc::compile_str(TINY, Syntax::Yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    train::train(
        &spec,
        &model,
        &TrainOptions {
            steps: Some(2),
            ..opts(&out)
        },
    )
    .unwrap();
    let best = out.join("best.safetensors");
    let bytes = std::fs::read(&best).unwrap();
    std::fs::write(&best, &bytes[..bytes.len() / 2]).unwrap();
    let e = train::eval_run(
        &out,
        EvalSplit::Valid,
        Some(4),
        pixc::device::Device::Cpu,
        None,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("corrupt"), "{e:#}");
    let e = train::eval_run(
        &dir.path().join("nope"),
        EvalSplit::Valid,
        None,
        pixc::device::Device::Cpu,
        None,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("run folder"), "{e:#}");
    // A run whose weights do not fit its spec.
    std::fs::write(&best, &bytes).unwrap();
    std::fs::write(out.join("spec.yaml"), TINY.replace("h: 2", "h: 3")).unwrap();
    let e = train::eval_run(
        &out,
        EvalSplit::Valid,
        Some(4),
        pixc::device::Device::Cpu,
        None,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("does not match"), "{e:#}");
}

#[test]
fn cuda_requested_without_a_gpu_is_a_clear_error() {
    let _turn = serial();
    if tch::Cuda::is_available() {
        return;
    }
    let (spec, model) = pixc::compile_str(TINY, Syntax::Yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = TrainOptions {
        device: Some(pixc::device::Device::Cuda),
        ..opts(&dir.path().join("r"))
    };
    let e = train::train(&spec, &model, &o).unwrap_err();
    assert!(format!("{e:#}").contains("CUDA"), "{e:#}");
}

/// A run made before the resume fingerprint (its state.json holds the hash of the IR dump
/// plus the settings) still resumes, and continues exactly as an uninterrupted run.
#[test]
fn runs_from_before_the_fingerprint_still_resume() {
    let _turn = serial();
    let (spec, model) = pixc::compile_str(TINY, Syntax::Yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let run = |out: &Path, steps: u64, resume: bool| {
        train::train(
            &spec,
            &model,
            &TrainOptions {
                steps: Some(steps),
                resume,
                ..opts(out)
            },
        )
    };
    run(&a, 4, false).unwrap();
    run(&b, 2, false).unwrap();
    // Rewrite b's state as the old format had it.
    let legacy = format!(
        "{}\noptimizer=adam batch=4 seed=3 data=mnist-binarized",
        pixc::ir::dump::ir_text(&model)
    );
    let state_path = b.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    state["spec_sha256"] = pixc::train::checkpoint::sha256(&legacy).into();
    std::fs::write(&state_path, serde_json::to_string(&state).unwrap()).unwrap();
    run(&b, 4, true).unwrap();
    let load = |p: std::path::PathBuf| pixc::weights::Weights::load(&p).unwrap().0;
    assert!(load(a.join("last.safetensors")) == load(b.join("last.safetensors")));
    // Migrated: the state now holds the new key, as a fresh run's does.
    let key = |p: &Path| {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("state.json")).unwrap()).unwrap();
        s["spec_sha256"].as_str().unwrap().to_string()
    };
    assert_eq!(key(&a), key(&b));
    // A different key is still refused.
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    state["spec_sha256"] = "0".repeat(64).into();
    std::fs::write(&state_path, serde_json::to_string(&state).unwrap()).unwrap();
    let e = run(&b, 6, true).unwrap_err();
    assert!(format!("{e:#}").contains("differ from the run"), "{e:#}");
}
