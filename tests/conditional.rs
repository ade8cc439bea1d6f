//! Class-conditional models (`input: {..., classes: K}`): the label reaches every LSTM and
//! gated layer
//! in every back end alike (libtorch with and without the fused kernels, ONNX Runtime, the
//! cached sampler), it is context that never breaks causality, and bad classes and labels
//! are errors with a place and a fix.

mod common;

use pixc::backend::torch::{tch, TorchModel};
use pixc::front::Syntax;
use pixc::ir::validate::Model;
use pixc::sample;
use pixc::weights::Weights;
use rand::{Rng, SeedableRng};
use tch::{Device, Kind, Tensor};

/// Both recurrences and a skip path, `classes` classes, 6x6 binary or 3x4x4 RGB images.
fn spec(classes: usize, rgb: bool) -> String {
    let (c, side, levels, head) = if rgb {
        (3, 4, 256, "softmax")
    } else {
        (1, 6, 2, "bernoulli")
    };
    format!(
        "model: cond
input: {{channels: {c}, height: {side}, width: {side}, levels: {levels}, classes: {classes}}}
layers:
  - conv: {{out: 6, kernel: 3, mask: A}}
  - row_lstm: {{hidden: 3}}
  - conv: {{out: 6, kernel: 1, mask: B}}
  - diag_bilstm: {{hidden: 3}}
  - conv: {{out: 6, kernel: 1, mask: B}}
  - diag_bilstm: {{hidden: 3, full_context: true}}
  - gated_pixelcnn: {{hidden: 3}}
  - gated_pixelcnn: {{hidden: 3, kernel: 5}}
  - relu
  - head: {head}
"
    )
}

fn compile(text: &str) -> Model {
    pixc::compile_str(text, Syntax::Yaml)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
        .1
}

/// Seeded weights with the class vectors drawn too (their init is zero, which would hide
/// a back end that ignores them).
fn weights(model: &Model, seed: u64) -> Weights {
    let mut w = Weights::init(model, seed);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 1000);
    let mut n = 0;
    for (name, t) in w.tensors.iter_mut() {
        if name.ends_with(".class_weight") {
            t.data
                .iter_mut()
                .for_each(|v| *v = rng.random_range(-1.0..1.0));
            n += 1;
        }
    }
    // One per LSTM layer, and per gated conv (each gated layer has two: its vertical and
    // its horizontal stack).
    assert_eq!(n, 3 + 4, "one class_weight per LSTM layer and gated conv");
    w
}

fn random_images(model: &Model, n: usize, seed: u64) -> Vec<u8> {
    let im = model.graph().image;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n * im.dims())
        .map(|_| rng.random_range(0..im.levels) as u8)
        .collect()
}

#[test]
fn the_label_changes_the_logits_and_fused_equals_plain() {
    for rgb in [false, true] {
        let model = compile(&spec(4, rgb));
        let w = weights(&model, 1);
        let mut fused = TorchModel::new(&model, &w, Device::Cpu).unwrap();
        fused.set_fused(true);
        let mut plain = TorchModel::new(&model, &w, Device::Cpu).unwrap();
        plain.set_fused(false);
        let n = 4;
        let x = fused.images_to_tensor(&random_images(&model, n, 2), n);
        let a = TorchModel::labels_tensor(&[0, 1, 2, 3]);
        let b = TorchModel::labels_tensor(&[3, 2, 1, 0]);
        let la = tch::no_grad(|| fused.forward_labeled(&x, Some(&a)));
        let lb = tch::no_grad(|| fused.forward_labeled(&x, Some(&b)));
        let pa = tch::no_grad(|| plain.forward_labeled(&x, Some(&a)));
        let diff = |p: &Tensor, q: &Tensor| f64::try_from((p - q).abs().max()).unwrap();
        assert!(diff(&la, &lb) > 1e-3, "rgb {rgb}: the label has no effect");
        assert!(
            diff(&la, &pa) < 1e-4,
            "rgb {rgb}: fused and plain differ by {}",
            diff(&la, &pa)
        );
        // The training path (forward and backward through the fused kernels) agrees with
        // plain autograd on the loss and the gradients, class vectors included.
        let (l1, g1) = fused.nll_grads(&x, Some(&a));
        let (l2, g2) = plain.nll_grads(&x, Some(&a));
        assert!(diff(&l1, &l2) < 1e-3 * f64::try_from(l2.abs()).unwrap().max(1.0));
        assert!(
            diff(&g1, &g2) < 1e-3,
            "gradients differ by {}",
            diff(&g1, &g2)
        );
        // Each class vector gets a gradient from the classes present only.
        let names = fused.parameter_names();
        let grads: Vec<Tensor> = fused.unflatten(&g1);
        let mut seen = 0;
        for (name, g) in names.iter().zip(&grads) {
            if name.ends_with(".class_weight") {
                seen += 1;
                let per_class = g.abs().sum_dim_intlist(0, false, Kind::Float);
                assert!(
                    (0..4).all(|k| f64::try_from(per_class.get(k)).unwrap() > 0.0),
                    "{name}: a class present in the batch got no gradient"
                );
            }
        }
        assert_eq!(seen, 3 + 4);
    }
}

/// The label is context: with random labels and class vectors, no output's gradient
/// reaches a later sub-pixel (the static proof still covers the image).
#[test]
fn conditional_models_stay_causal_numerically() {
    for rgb in [false, true] {
        let model = compile(&spec(3, rgb));
        let im = model.graph().image;
        let (c, h, w) = (im.channels as i64, im.height as i64, im.width as i64);
        let per = if im.levels == 2 { 1 } else { im.levels as i64 };
        let outs = (c * h * w) as usize;
        for fused in [true, false] {
            let mut tm = TorchModel::new(&model, &weights(&model, 3), Device::Cpu).unwrap();
            tm.set_fused(fused);
            tch::manual_seed(4);
            let x = (Tensor::randn([outs as i64, c, h, w], (Kind::Float, Device::Cpu)) * 3.0)
                .set_requires_grad(true);
            let y = Tensor::randint(3, [outs as i64], (Kind::Int64, Device::Cpu));
            let cond = tm.one_hot(Some(&y));
            let tape = tm.forward_tape(&x, cond.as_ref());
            let logits = tape
                .logits()
                .reshape([outs as i64, c, per, h, w])
                .sum_dim_intlist(2, false, Kind::Float);
            // Row b selects output sub-pixel b: (r*W + col)*C + colour.
            let mut sel = vec![0f32; outs * outs];
            for b in 0..outs {
                sel[b * outs + b] = 1.0;
            }
            let sel = Tensor::from_slice(&sel)
                .reshape([outs as i64, h, w, c])
                .permute([0, 3, 1, 2]);
            tm.backward(tape, &(logits * sel).sum(Kind::Float), &x);
            let g = x
                .grad()
                .permute([0, 2, 3, 1])
                .reshape([outs as i64, outs as i64]);
            let mut gv = vec![0f32; outs * outs];
            g.abs().copy_data(&mut gv, outs * outs);
            for out in 0..outs {
                for inp in out..outs {
                    assert_eq!(
                        gv[out * outs + inp],
                        0.0,
                        "rgb {rgb}, fused {fused}: output {out} sees sub-pixel {inp}"
                    );
                }
            }
            // And it does see the past (the test is not vacuous).
            assert!(gv[(outs - 1) * outs] != 0.0);
        }
    }
}

#[test]
fn onnx_runtime_and_the_cached_sampler_read_the_label_as_libtorch_does() {
    // A low-res model too: the ONNX Diagonal BiLSTM then adds the class vector to the
    // low-res map before its columns are gathered, instead of to each column's gates.
    for (rgb, low_res) in [(false, false), (true, false), (false, true)] {
        let text = match low_res {
            true => spec(5, rgb).replacen("classes: 5}", "classes: 5, low_res: 2}", 1),
            false => spec(5, rgb),
        };
        let model = compile(&text);
        let w = weights(&model, 5);
        let tm = TorchModel::new(&model, &w, Device::Cpu).unwrap();
        let n = 5;
        let imgs = random_images(&model, n, 6);
        let y: Vec<u16> = vec![4, 0, 3, 1, 2];
        let x = tm.images_to_tensor(&imgs, n);
        let (tl, tn) = tch::no_grad(|| {
            let l = tm.forward_labeled(&x, Some(&TorchModel::labels_tensor(&y)));
            let nl = tm.nll_from_logits(&l, &x);
            (l, nl)
        });
        let bytes = pixc::backend::onnx::export(
            &model,
            &w,
            &pixc::backend::onnx::ExportMeta::new(text.clone()),
        )
        .unwrap();
        let (mut ort, _) =
            pixc::runtime::OnnxModel::from_bytes(&bytes, pixc::device::Device::Cpu, "cond")
                .unwrap();
        assert_eq!(ort.info().classes, 5);
        let out = ort
            .run(&pixc::runtime::images_to_f32(&imgs), n, Some(&y))
            .unwrap();
        let to_vec = pixc::backend::torch::to_vec_f32;
        let worst = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        };
        assert!(
            worst(&to_vec(&tl), &out.logits) <= 1e-4,
            "rgb {rgb}, low_res {low_res}: logits differ"
        );
        assert!(
            worst(&to_vec(&tn), &out.nll) <= 1e-3,
            "rgb {rgb}, low_res {low_res}: NLL differs"
        );
        // Without labels, or with one out of range, ONNX Runtime is refused a clear error.
        let e = ort
            .run(&pixc::runtime::images_to_f32(&imgs), n, None)
            .unwrap_err();
        assert!(e.to_string().contains("class-conditional"), "{e}");
        let e = ort
            .run(
                &pixc::runtime::images_to_f32(&imgs),
                n,
                Some(&[5, 0, 0, 0, 0]),
            )
            .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");

        if low_res {
            // The case is for the export's path; the samplers are checked on the other two.
            continue;
        }
        // The cached sampler equals the reference sampler for a seed, per class.
        let labels = [0u16, 4, 2];
        let a = sample::sample_reference(&tm, 3, 7, 1.0, None, Some(&labels), |_, _| {}).unwrap();
        let b = sample::sample_fast(&tm, 3, 7, 1.0, None, Some(&labels), |_, _| {}).unwrap();
        assert_eq!(a, b, "rgb {rgb}: cached and reference samples differ");
        let other = sample::sample_fast(&tm, 3, 7, 1.0, None, Some(&[1, 1, 1]), |_, _| {}).unwrap();
        assert_ne!(a, other, "rgb {rgb}: the class does not change the draw");
        assert!(sample::sample_fast(&tm, 3, 7, 1.0, None, None, |_, _| {}).is_err());
        assert!(sample::sample_fast(&tm, 3, 7, 1.0, None, Some(&[0, 5, 0]), |_, _| {}).is_err());
    }
}

#[test]
fn unconditional_models_take_no_label_and_keep_their_parameters() {
    let text = spec(2, false).replace(", classes: 2", "");
    let model = compile(&text);
    assert_eq!(model.graph().image.classes, 0);
    let w = Weights::init(&model, 0);
    assert!(w.tensors.keys().all(|k| !k.ends_with("class_weight")));
    let tm = TorchModel::new(&model, &w, Device::Cpu).unwrap();
    assert!(sample::sample_fast(&tm, 1, 0, 1.0, None, Some(&[0]), |_, _| {}).is_err());
}

#[test]
fn bad_class_counts_are_located_errors() {
    for (bad, want) in [("1", "at least 2"), ("0", "at least 2"), ("70000", "limit")] {
        let text = spec(2, false).replace("classes: 2", &format!("classes: {bad}"));
        let e = pixc::compile_str(&text, Syntax::Yaml).unwrap_err();
        let rendered = format!("{e:?}");
        assert!(rendered.contains(want), "classes {bad}: {rendered}");
        assert!(rendered.contains("classes"), "{rendered}");
    }
    // A YAML spec and its DSL form agree, and `fmt` keeps the key.
    let yaml = spec(10, false);
    let dsl = pixc::front::fmt::format(&yaml, Syntax::Yaml, Syntax::Dsl).unwrap();
    assert!(dsl.contains("classes=10"), "{dsl}");
    let a = pixc::ir::fingerprint::fingerprint(&compile(&yaml));
    let b = pixc::ir::fingerprint::fingerprint(&pixc::compile_str(&dsl, Syntax::Dsl).unwrap().1);
    assert_eq!(a, b);
    // Classes are part of the model's identity (a run cannot resume across them).
    let c = pixc::ir::fingerprint::fingerprint(&compile(&spec(9, false)));
    assert_ne!(a, c);
}

/// Training a conditional model on MNIST's labels end to end, and scoring it both ways:
/// given its labels, and as a model of the image alone (`--marginal`), which can never be
/// more than log K above the first (the mean over K classes includes the true one).
#[test]
fn a_conditional_run_trains_on_mnist_labels_and_scores_both_ways() {
    let _turn = common::serial();
    let text = common::TINY.replace("levels: 2}", "levels: 2, classes: 10}");
    let (spec, model) = pixc::compile_str(&text, Syntax::Yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    pixc::train::train(
        &spec,
        &model,
        &pixc::train::TrainOptions {
            out: out.clone(),
            steps: Some(4),
            valid_images: 8,
            threads: Some(1),
            device: Some(pixc::device::Device::Cpu),
            json: true,
            ..Default::default()
        },
    )
    .unwrap();
    let score = |marginal: bool| {
        let sel = pixc::train::EvalSelection {
            limit: Some(16),
            marginal,
            ..Default::default()
        };
        pixc::train::eval_run_with(
            &out,
            pixc::train::EvalSplit::Valid,
            &sel,
            pixc::device::Device::Cpu,
            None,
            &mut |_, _| {},
        )
        .unwrap()
    };
    let given = score(false);
    let marginal = score(true);
    assert_eq!(given.labels.as_deref(), Some("given labels"));
    assert_eq!(marginal.labels.as_deref(), Some("marginal over 10 classes"));
    assert!(
        marginal.nll <= given.nll + 10f64.ln() + 1e-6,
        "marginal {} vs given {}",
        marginal.nll,
        given.nll
    );
    assert!(marginal.nll.is_finite() && marginal.nll > 0.0);
    // The run's classes are in its fingerprint: the unconditional spec cannot resume it.
    let plain = pixc::compile_str(common::TINY, Syntax::Yaml).unwrap();
    let e = pixc::train::train(
        &plain.0,
        &plain.1,
        &pixc::train::TrainOptions {
            out: out.clone(),
            steps: Some(6),
            resume: true,
            threads: Some(1),
            device: Some(pixc::device::Device::Cpu),
            ..Default::default()
        },
    );
    assert!(e.is_err());
}

/// `pixc bench` times a class-conditional model beside the PyTorch reference, which gets
/// the same batch, weights and labels: the two losses agree.
#[test]
fn bench_runs_the_reference_on_a_class_conditional_model() {
    let python = common::root().join(".venv/bin/python");
    if !python.exists() {
        eprintln!(
            "note: {} is missing (scripts/setup.sh makes it); skipping",
            python.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cond.yaml");
    std::fs::write(&path, spec(3, false)).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pixc"))
        .arg("bench")
        .arg(&path)
        .args([
            "--seconds",
            "0.2",
            "--threads",
            "1",
            "--batch",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = &v["rows"][0];
    assert!(row["pytorch"]["images_per_s"].is_number(), "{row}");
    let diff = row["loss_diff_nats_per_dim"]
        .as_f64()
        .expect("the loss check ran");
    assert!(
        diff < 1e-6,
        "pixc and the reference differ by {diff}: {row}"
    );
}
