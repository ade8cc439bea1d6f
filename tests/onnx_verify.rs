//! libtorch and ONNX Runtime agree on every shipped spec (shrunk to 7x7): logits within
//! 1e-4 and per-image NLL within 1e-3 nats, on the same weights and images.

mod common;

use pixc::backend::onnx::{export, ExportMeta};
use pixc::backend::torch::TorchModel;
use pixc::front::Syntax;
use pixc::runtime::{images_to_f32, Device, OnnxModel};
use pixc::weights::Weights;
use rand::{Rng, SeedableRng};
use tch::Kind;

fn to_vec(t: &tch::Tensor) -> Vec<f32> {
    let c = t.to_kind(Kind::Float).contiguous();
    let mut v = vec![0f32; c.numel()];
    let n = v.len();
    c.copy_data(&mut v, n);
    v
}

#[test]
fn every_shipped_spec_agrees_with_onnx_runtime() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/specs");
    let mut specs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    specs.sort();
    for p in specs {
        let text = common::shrink(&std::fs::read_to_string(&p).unwrap());
        agrees(&text, &p.display().to_string());
    }
}

/// The full-context Diagonal BiLSTM (the image into its right-to-left gates), grey and RGB,
/// square, wide, tall, one column and one row.
#[test]
fn full_context_diag_bilstm_agrees_with_onnx_runtime() {
    for (c, h, w, levels, head, k) in [
        (1, 7, 7, 2, "bernoulli", 7),
        (1, 6, 9, 2, "bernoulli", 7),
        (1, 9, 6, 2, "bernoulli", 5),
        (1, 4, 1, 2, "bernoulli", 1),
        (1, 1, 4, 2, "bernoulli", 1),
        (3, 7, 7, 256, "softmax", 7),
    ] {
        let text = format!(
            "model: full\ninput: {{channels: {c}, height: {h}, width: {w}, levels: {levels}}}\nlayers:\n  - conv: {{out: 12, kernel: {k}, mask: A}}\n  - residual:\n      skip: true\n      body:\n        - diag_bilstm: {{hidden: 6, full_context: true}}\n        - conv: {{out: 12, kernel: 1}}\n  - diag_bilstm: {{hidden: 6, full_context: true, skip: true}}\n  - skip_sum\n  - relu\n  - head: {head}\n"
        );
        agrees(&text, &format!("full context {c}x{h}x{w}"));
    }
}

#[test]
fn uneven_rgb_colour_groups_agree_with_onnx_runtime() {
    // 4, 5 and 7 channels: R, G, B groups of unequal size in maps and LSTM gates.
    let text = "model: uneven\ninput: {channels: 3, height: 6, width: 6, levels: 256}\nlayers:\n  - conv: {out: 8, kernel: 5, mask: A}\n  - residual:\n      skip: true\n      body:\n        - diag_bilstm: {hidden: 7}\n        - conv: {out: 8, kernel: 1}\n  - row_lstm: {hidden: 5, kernel: 3, skip: true}\n  - skip_sum\n  - relu\n  - conv: {out: 10, kernel: 1}\n  - pixelcnn_block: {hidden: 5}\n  - conv: {out: 7, kernel: 3}\n  - relu\n  - head: softmax\n";
    agrees(text, "uneven RGB groups");
}

/// libtorch and ONNX Runtime logits within 1e-4, NLL within 1e-3 nats.
fn agrees(text: &str, what: &str) {
    let (_, model) = pixc::compile_str(text, Syntax::Yaml).unwrap();
    let w = Weights::init(&model, 5);
    let tm = TorchModel::new(&model, &w, tch::Device::Cpu).unwrap();
    let bytes = export(&model, &w, &ExportMeta::new(text.to_string())).unwrap();
    let (mut ort, _) = OnnxModel::from_bytes(&bytes, Device::Cpu, "t").unwrap();
    let im = model.graph().image;
    let n = 3;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let imgs: Vec<u8> = (0..n * im.dims())
        .map(|_| rng.random_range(0..im.levels) as u8)
        .collect();
    let x = tm.images_to_tensor(&imgs, n);
    // A class-conditional spec: every class in turn.
    let labels = pixc::sample::cycle_labels(im.classes, n);
    let y = labels.as_deref().map(TorchModel::labels_tensor);
    let (l, nll) = tch::no_grad(|| {
        let l = tm.forward_labeled(&x, y.as_ref());
        let nll = tm.nll_from_logits(&l, &x);
        (l, nll)
    });
    let out = ort
        .run(&images_to_f32(&imgs), n, labels.as_deref())
        .unwrap();
    let dl = to_vec(&l)
        .iter()
        .zip(&out.logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let dn = to_vec(&nll)
        .iter()
        .zip(&out.nll)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(dl <= 1e-4, "{what}: logits differ by {dl}");
    assert!(dn <= 1e-3, "{what}: NLL differs by {dn} nats");
}

/// A batch run in pieces per session (`set_run_chunk`) gives each image the outputs it gets
/// in one piece, in batch order: a class-conditional model, so the labels are sliced too.
#[test]
fn a_batch_run_in_pieces_equals_one_run() {
    let text = "model: pieces\ninput: {channels: 1, height: 5, width: 6, levels: 2, classes: 3}\nlayers:\n  - conv: {out: 6, kernel: 3, mask: A}\n  - diag_bilstm: {hidden: 4}\n  - relu\n  - head: bernoulli\n";
    let (_, model) = pixc::compile_str(text, Syntax::Yaml).unwrap();
    let mut w = Weights::init(&model, 2);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    // The class vectors drawn too (their init is zero): a piece given the wrong labels
    // would then show.
    for (name, t) in w.tensors.iter_mut() {
        if name.ends_with(".class_weight") {
            t.data
                .iter_mut()
                .for_each(|v| *v = rng.random_range(-1.0..1.0));
        }
    }
    let bytes = export(&model, &w, &ExportMeta::new(text.to_string())).unwrap();
    let (mut ort, _) = OnnxModel::from_bytes(&bytes, Device::Cpu, "t").unwrap();
    let im = model.graph().image;
    let n = 11;
    let imgs: Vec<f32> = (0..n * im.dims())
        .map(|_| rng.random_range(0..2) as f32)
        .collect();
    let labels = pixc::sample::cycle_labels(im.classes, n);
    ort.set_run_chunk(0);
    let whole = ort.run(&imgs, n, labels.as_deref()).unwrap();
    for chunk in [1, 2, 4] {
        ort.set_run_chunk(chunk);
        let parts = ort.run(&imgs, n, labels.as_deref()).unwrap();
        assert_eq!(parts.nll.len(), n);
        for (a, b) in whole.nll.iter().zip(&parts.nll) {
            assert!((a - b).abs() <= 1e-5, "chunk {chunk}: NLL {a} vs {b}");
        }
        for (a, b) in whole.logits.iter().zip(&parts.logits) {
            assert!((a - b).abs() <= 1e-5, "chunk {chunk}: logit {a} vs {b}");
        }
    }
}
