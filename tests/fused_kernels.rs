//! The fused CPU kernels (the recurrences, and the convs, ReLUs, adds, skip sums and heads
//! around them) against plain libtorch ops: same logits, same loss, same gradient for
//! every parameter and for the input, on Row LSTM, Diagonal BiLSTM and PixelCNN models
//! (grayscale and RGB, odd sizes, batches that split unevenly over threads).

mod common;

use pixc::backend::torch::{self, tch, TorchModel};
use pixc::front::Syntax;
use pixc::ir::validate::Model;
use pixc::weights::Weights;
use tch::{Device, Kind, Tensor};

fn compile(text: &str) -> Model {
    pixc::compile_str(text, Syntax::Yaml)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .1
}

fn spec(channels: usize, h: usize, w: usize, body: &str) -> String {
    let (levels, head) = if channels == 1 {
        (2, "bernoulli")
    } else {
        (256, "softmax")
    };
    format!(
        "input: {{channels: {channels}, height: {h}, width: {w}, levels: {levels}}}\nlayers:\n  - conv: {{out: 6, kernel: 5, mask: A}}\n{body}  - relu\n  - head: {head}\n"
    )
}

fn max_abs(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap()
}

/// Random raw images for a model (values in 0..levels), from a local seeded generator
/// (libtorch's global one is shared with the tests running beside this one).
fn images(tm: &TorchModel, n: usize, seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<u8> = (0..n * tm.dims())
        .map(|_| rng.random_range(0..tm.levels) as u8)
        .collect();
    tm.images_to_tensor(&v, n)
}

/// Loss and gradients (parameters, then the scaled input) of one model.
fn grads(tm: &TorchModel, imgs: &Tensor) -> (f64, Vec<Tensor>) {
    let x = tm.scale(imgs).set_requires_grad(true);
    let tape = tm.forward_tape(&x, None);
    let loss = tm.nll_from_logits(tape.logits(), imgs).mean(Kind::Float);
    let lv = f64::try_from(&loss).unwrap();
    tm.backward(tape, &loss, &x);
    let mut g: Vec<Tensor> = tm
        .parameters()
        .iter()
        .map(|p| {
            let g = p.grad();
            if g.defined() {
                g.copy()
            } else {
                p.zeros_like()
            }
        })
        .collect();
    g.push(x.grad().copy());
    (lv, g)
}

fn compare(text: &str, batch: usize, threads: usize) {
    torch::set_threads(Some(threads));
    let model = compile(text);
    let mut w = Weights::init(&model, 7);
    let set = common::set_initial_states(&mut w, 7);
    assert_eq!(
        set > 0,
        text.contains("lstm:"),
        "the model's initial states were not set"
    );
    let mut plain = TorchModel::new(&model, &w, Device::Cpu).unwrap();
    plain.set_fused(false);
    let mut fused = TorchModel::new(&model, &w, Device::Cpu).unwrap();
    fused.set_fused(true);
    assert!(fused.fused() && !plain.fused());
    let imgs = images(&plain, batch, 11);

    let (lp, lf) = tch::no_grad(|| (plain.forward(&imgs), fused.forward(&imgs)));
    let d = max_abs(&(&lp - &lf));
    assert!(
        d <= 1e-5 * (1.0 + max_abs(&lp)),
        "logits differ by {d}\n{text}"
    );

    let (loss_p, gp) = grads(&plain, &imgs);
    let (loss_f, gf) = grads(&fused, &imgs);
    let dims = plain.dims() as f64;
    assert!(
        (loss_p - loss_f).abs() / dims <= 1e-6,
        "loss {loss_p} vs {loss_f}\n{text}"
    );
    let mut names: Vec<String> = plain
        .parameter_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.push("input".into());
    for ((a, b), name) in gp.iter().zip(&gf).zip(&names) {
        let scale = max_abs(a).max(1e-3);
        let d = max_abs(&(a - b));
        assert!(
            d <= 2e-4 * scale,
            "gradient of {name}: max difference {d} (largest {scale})\n{text}"
        );
    }
}

#[test]
fn diag_bilstm_matches_libtorch() {
    let body = "  - residual:\n      body:\n        - diag_bilstm: {hidden: 4}\n        - conv: {out: 6, kernel: 1}\n  - diag_bilstm: {hidden: 3}\n";
    compare(&spec(1, 7, 9, body), 5, 2);
    compare(&spec(1, 9, 6, body), 3, 3);
    compare(&spec(1, 8, 8, body), 1, 2);
    // 9 and 10 images per thread: the state copies' 8-float chunks and their remainder.
    compare(&spec(1, 6, 5, body), 19, 2);
    // 8 and 16 images per thread (what the benches run): every state a whole vector of
    // eight, the gate pass's blocks of vectors with no scalar tail.
    compare(&spec(1, 6, 5, body), 16, 2);
    compare(&spec(1, 5, 7, body), 16, 1);
}

#[test]
fn diag_bilstm_rgb_matches_libtorch() {
    let body = "  - diag_bilstm: {hidden: 6}\n";
    compare(&spec(3, 6, 7, body), 4, 2);
    compare(&spec(3, 5, 4, body), 16, 2);
}

/// The full-context variant: libtorch computes its input-to-state map (with the image
/// term), the kernel the recurrence; gradients reach the image's weight through both.
#[test]
fn full_context_diag_bilstm_matches_libtorch() {
    let body = "  - residual:\n      body:\n        - diag_bilstm: {hidden: 4, full_context: true}\n        - conv: {out: 6, kernel: 1}\n  - diag_bilstm: {hidden: 3, full_context: true}\n";
    compare(&spec(1, 7, 9, body), 5, 2);
    compare(&spec(1, 8, 8, body), 1, 2);
    compare(
        &spec(
            3,
            6,
            7,
            "  - diag_bilstm: {hidden: 6, full_context: true}\n",
        ),
        4,
        2,
    );
}

/// A low-res model: the recurrences' input-to-state maps also read the upsampled low-res
/// map (libtorch ops feeding the kernels); gradients reach the upsampling's weights.
#[test]
fn low_res_recurrences_match_libtorch() {
    let body = "  - diag_bilstm: {hidden: 4}\n  - diag_bilstm: {hidden: 3, full_context: true}\n  - row_lstm: {hidden: 3, kernel: 3}\n";
    let lr = |t: String| t.replacen("}\nlayers:", ", low_res: 2, low_res_maps: 3}\nlayers:", 1);
    compare(&lr(spec(1, 8, 6, body)), 5, 2);
    compare(&lr(spec(3, 6, 8, body)), 3, 1);
}

#[test]
fn row_lstm_matches_libtorch() {
    let body = "  - row_lstm: {hidden: 4, kernel: 3}\n  - row_lstm: {hidden: 3, kernel: 5}\n";
    compare(&spec(1, 7, 9, body), 5, 2);
    compare(
        &spec(3, 6, 5, "  - row_lstm: {hidden: 6, kernel: 3}\n"),
        3,
        1,
    );
}

/// Conv-only models run entirely in the conv kernels (but the head's loss): PixelCNN
/// blocks, skip connections, kernels wider than tall, RGB masks that cut taps per colour.
#[test]
fn conv_models_match_libtorch() {
    let blocks = "  - pixelcnn_block: {hidden: 3}\n  - pixelcnn_block: {hidden: 3}\n";
    compare(&spec(1, 7, 9, blocks), 5, 1);
    compare(&spec(1, 6, 5, blocks), 3, 2);
    let skips = "  - repeat:\n      count: 2\n      body:\n        - residual:\n            skip: true\n            body:\n              - relu\n              - conv: {out: 4, kernel: [3, 5], mask: B}\n              - relu\n              - conv: {out: 6, kernel: 1, mask: B}\n  - skip_sum\n";
    compare(&spec(1, 8, 7, skips), 4, 1);
    compare(&spec(3, 6, 7, skips), 3, 1);
    compare(&spec(3, 5, 6, blocks), 2, 1);
}

#[test]
fn shipped_conv_specs_shrunk_match_libtorch() {
    for name in [
        "pixelcnn_7_mnist",
        "pixelcnn_12_mnist",
        "pixelcnn_15_cifar10",
        "pixelcnn_7_fashion256",
    ] {
        let path = format!("{}/specs/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = common::shrink(&std::fs::read_to_string(path).unwrap());
        compare(&text, 4, 1);
    }
}

#[test]
fn shipped_recurrent_specs_shrunk_match_libtorch() {
    for name in [
        "diag_bilstm_7_mnist",
        "diag_bilstm_7_mnist_full",
        "row_lstm_7_mnist",
        "diag_bilstm_12",
        "row_lstm_12_cifar10",
    ] {
        let path = format!("{}/specs/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = common::shrink(&std::fs::read_to_string(path).unwrap());
        compare(&text, 4, 2);
    }
}

/// The training step's gradients with the batch split over replicas equal one pass over
/// the whole batch (up to float summation order), for fused and plain models.
#[test]
fn data_parallel_replicas_match_one_pass() {
    torch::set_threads(Some(2));
    let diag = spec(1, 7, 8, "  - diag_bilstm: {hidden: 3}\n");
    let cnn = spec(1, 7, 8, "  - pixelcnn_block: {hidden: 3}\n");
    for text in [diag, cnn] {
        let model = compile(&text);
        let w = Weights::init(&model, 5);
        let grads_of = |split: bool| {
            let mut tm = TorchModel::new(&model, &w, Device::Cpu).unwrap();
            tm.set_data_parallel(split);
            let imgs = images(&tm, 5, 3);
            let (loss, grad) = tm.nll_grads(&imgs, None);
            let loss = f64::try_from(loss).unwrap();
            let g: Vec<Tensor> = tm.unflatten(&grad);
            (loss, g)
        };
        let (l1, g1) = grads_of(false);
        let (l2, g2) = grads_of(true);
        assert!((l1 - l2).abs() < 1e-4, "loss {l1} vs {l2}");
        for (a, b) in g1.iter().zip(&g2) {
            let d = max_abs(&(a - b));
            assert!(
                d <= 1e-6 + 1e-5 * max_abs(a),
                "gradients differ by {d}\n{text}"
            );
        }
    }
}
