//! Sampler timings on the MNIST specs (random-init weights), cached vs reference.
//!
//! Timing needs a release build and minutes of CPU, so it only runs when asked:
//! `PIXC_SAMPLE_BENCH=16 cargo test --release --test sample_bench -- --nocapture`
//! (the value is the number of samples; PIXC_SAMPLE_BENCH_THREADS=1 for one core each). Without the variable the test only checks that
//! `bench_sampling` works, on a tiny model.

use pixc::backend::torch::{tch, TorchModel};
use pixc::front::Syntax;
use pixc::weights::Weights;

fn model_from(text: &str) -> TorchModel {
    let (_, m) = pixc::compile_str(text, Syntax::Yaml).unwrap();
    TorchModel::new(&m, &Weights::init(&m, 0), tch::Device::Cpu).unwrap()
}

#[test]
fn bench_sampling_on_the_mnist_specs() {
    let n: usize = match std::env::var("PIXC_SAMPLE_BENCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => n,
        None => {
            let tm = model_from(
                "model: t\ninput: {channels: 1, height: 4, width: 4, levels: 2}\nlayers:\n  - conv: {out: 4, kernel: 3, mask: A}\n  - head: bernoulli\n",
            );
            let (r, f) = pixc::sample::bench_sampling(&tm, 2, 0).unwrap();
            assert!(r > 0.0 && f > 0.0);
            return;
        }
    };
    // PIXC_SAMPLE_BENCH_THREADS=1 compares one core against one core (steadier on a
    // loaded machine, where OpenMP barriers in libtorch spin); default: all cores.
    let threads = std::env::var("PIXC_SAMPLE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    pixc::backend::torch::set_threads(threads);
    libtorch_small_op_cost();
    for name in [
        "diag_bilstm_7_mnist",
        "row_lstm_7_mnist",
        "pixelcnn_7_mnist",
    ] {
        let path = format!("{}/specs/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let tm = model_from(&std::fs::read_to_string(path).unwrap());
        let (r, f) = pixc::sample::bench_sampling(&tm, n, 1).unwrap();
        println!(
            "{name}: {n} samples, reference {r:.2} s, cached {f:.3} s, {:.0}x faster ({} thread(s) each)",
            r / f,
            tch::get_num_threads(),
        );
    }
}

/// What a cached sampler written in libtorch ops would cost: the time of one small op of
/// the kind it needs per pixel (batch 16, MNIST model sizes), averaged over a mix.
fn libtorch_small_op_cost() {
    use tch::{Device, Kind, Tensor};
    let opts = (Kind::Float, Device::Cpu);
    let x = Tensor::randn([16, 32], opts);
    let w = Tensor::randn([32, 128], opts);
    let b = Tensor::randn([128], opts);
    let h = Tensor::randn([16, 16], opts);
    let ss = Tensor::randn([16, 64], opts);
    let iters = 2000;
    let t = std::time::Instant::now();
    tch::no_grad(|| {
        for _ in 0..iters {
            // One LSTM step at one pixel: 2 matmuls, gates, state update (10 ops).
            let g = b.addmm(&x, &w);
            let r = g.narrow(1, 0, 64) + h.matmul(&ss);
            let s = r.narrow(1, 0, 48).sigmoid();
            let gg = r.narrow(1, 48, 16).tanh();
            let c = s.narrow(1, 16, 16) * &h + s.narrow(1, 32, 16) * gg;
            let _hn = s.narrow(1, 0, 16) * c.tanh();
        }
    });
    let per_op = t.elapsed().as_secs_f64() / (iters * 10) as f64;
    // The MNIST Diagonal BiLSTM needs about 16 such ops per layer and pixel (7 layers) plus
    // the first and last layers: ~120 per pixel, 784 pixels.
    println!(
        "libtorch small ops: {:.1} us each; a libtorch cached sampler would spend >= {:.2} s on the ~94k ops of 16 MNIST samples",
        per_op * 1e6,
        per_op * 120.0 * 784.0
    );
}
