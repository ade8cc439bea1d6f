//! The trained models in `models/` work right after set-up and score what their cards say:
//! each is evaluated on an even slice of its test set (every 20th image), and the figure
//! must lie within four standard errors of the whole test split's NLL stated in the card
//! (and match the slice figure the card records, to float rounding). Each model is also
//! sampled with the cached sampler, which reads the same weights.

use pixc::device::Device;
use pixc::train::{self, EvalSelection, EvalSplit};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn models() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("card.json").is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn number(card: &Value, key: &str) -> f64 {
    card[key]
        .as_f64()
        .unwrap_or_else(|| panic!("card.json has no number `{key}`"))
}

/// The model in `dir` scored on its test split's `sel`, on the CPU.
fn test_score(dir: &Path, sel: &EvalSelection) -> train::EvalReport {
    train::eval_run_with(dir, EvalSplit::Test, sel, Device::Cpu, None, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()))
}

#[test]
fn every_shipped_model_scores_what_its_card_states() {
    let all = models();
    assert!(!all.is_empty(), "no models/*/card.json found");
    for dir in all {
        let card: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("card.json")).unwrap()).unwrap();
        let stride = card["slice"]["stride"].as_u64().unwrap() as usize;
        let sel = EvalSelection {
            stride,
            ..EvalSelection::default()
        };
        let r = test_score(&dir, &sel);
        let stated = number(&card, "test_nll");
        // The slice is a sample of the test split: its mean may differ from the whole
        // split's by chance, by about its standard error.
        let tol = 4.0 * r.std_error;
        assert!(
            (r.nll - stated).abs() <= tol,
            "{}: slice of {} test images scores {:.4} {}, card states {stated:.4} (tolerance {tol:.4})",
            dir.display(),
            r.images,
            r.nll,
            r.unit
        );
        assert_eq!(r.unit, card["unit"].as_str().unwrap());
        let slice = card["slice"]["nll"].as_f64().unwrap();
        assert!(
            (r.nll - slice).abs() < 1e-3 * slice.abs().max(1.0),
            "{}: the slice scores {:.6}, the card recorded {slice:.6}",
            dir.display(),
            r.nll
        );
        assert_eq!(r.step, card["best_step"].as_u64().unwrap());
        // The card's README states the same number.
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let shown = if r.unit == "nats/image" {
            format!("{stated:.2} {}", r.unit)
        } else {
            format!("{stated:.4} {}", r.unit)
        };
        assert!(
            readme.contains(&shown),
            "{}: README.md does not state {shown}",
            dir.display()
        );
    }
}

/// `pixc sample models/<name>` and `pixc export --onnx models/<name>` work on every shipped
/// model with no training: two images each, drawn by the cached sampler, all in range, and
/// an ONNX file from the best checkpoint.
#[test]
fn every_shipped_model_samples_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in models() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let o = pixc::app::sample::SampleOptions {
            n: 2,
            out: tmp.path().join(format!("{name}.png")),
            progress: false,
            ..Default::default()
        };
        let r = pixc::app::sample::sample_run(&dir, &o).unwrap();
        let card: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("card.json")).unwrap()).unwrap();
        let levels = if card["unit"] == "nats/image" { 2 } else { 256 };
        assert!(r.images.iter().all(|&v| (v as usize) < levels), "{name}");
        assert!(tmp.path().join(format!("{name}.png")).is_file());
        let onnx = tmp.path().join(format!("{name}.onnx"));
        pixc::app::deploy::export_target(&dir, Some(&onnx), 0).unwrap();
        assert!(std::fs::metadata(&onnx).unwrap().len() > 1000, "{name}");
    }
}

/// `pixc complete` on the shipped class-conditional model: each test image is completed as
/// its own class by default, or as `--class K`; a class out of range, a class for an
/// unconditional model, and a user's image without a class are clear errors.
#[test]
fn complete_conditions_on_the_class() {
    use pixc::app::sample::{complete_run, CompleteOptions};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let cond = root.join("diag_bilstm_7_mnist_classes");
    let tmp = tempfile::tempdir().unwrap();
    let opts = |class: Option<u16>| CompleteOptions {
        from_test: 3,
        samples: 1,
        out: tmp.path().join("c.png"),
        class,
        progress: false,
        ..Default::default()
    };
    // The first MNIST test digits are 7, 2, 1.
    let own = complete_run(&cond, &opts(None)).unwrap();
    assert_eq!(own.classes, Some(vec![7, 2, 1]));
    let eights = complete_run(&cond, &opts(Some(8))).unwrap();
    assert_eq!(eights.classes, Some(vec![8, 8, 8]));
    // Same seed, same kept rows, other classes: other completions.
    assert_ne!(own.completions, eights.completions);
    let err = |run: &Path, o: CompleteOptions| format!("{:#}", complete_run(run, &o).unwrap_err());
    assert!(err(&cond, opts(Some(10))).contains("out of range"));
    let plain = root.join("diag_bilstm_7_mnist");
    assert!(err(&plain, opts(Some(3))).contains("not class-conditional"));
    let png = tmp.path().join("digit.png");
    pixc::app::sample::sample_run(
        &plain,
        &pixc::app::sample::SampleOptions {
            n: 1,
            out: png.clone(),
            progress: false,
            ..Default::default()
        },
    )
    .unwrap();
    let mut o = opts(None);
    o.image = Some(png);
    assert!(err(&cond, o).contains("--class"));
}

/// `pixc eval --binarization dynamic`: a fresh Bernoulli draw of the gray test images,
/// the same for a seed and another for another seed, reported as what it scored (the
/// gray set it drew from, not the run's static binarization).
#[test]
fn dynamic_binarization_redraws_the_gray_images_by_seed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/pixelcnn_7_mnist");
    let score = |rebinarize: Option<u64>| {
        let sel = EvalSelection {
            stride: 50,
            rebinarize,
            ..EvalSelection::default()
        };
        test_score(&dir, &sel)
    };
    let (fixed, a, again, b) = (score(None), score(Some(0)), score(Some(0)), score(Some(1)));
    assert_eq!(fixed.binarization, "static");
    assert!(fixed.data.starts_with("mnist-binarized"), "{}", fixed.data);
    assert_eq!(a.binarization, "dynamic (seed 0)");
    assert!(a.data.starts_with("mnist-256"), "{}", a.data);
    assert_eq!(a.nll, again.nll);
    assert!(a.nll != b.nll && a.nll != fixed.nll);
    assert_eq!(a.images, fixed.images);
}
