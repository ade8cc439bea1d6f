//! Sampler timings on the MNIST specs (random-init weights), cached vs reference.
//!
//! Timing needs a release build and minutes of CPU, so it only runs when asked:
//! `PIXC_SAMPLE_BENCH=16 cargo test --release --test sample_bench -- --nocapture`
//! (the value is the number of samples). Without the variable the test only checks that
//! `bench_sampling` works, on a tiny model.

use pixc::backend::torch::{tch, TorchModel};
use pixc::spec::Syntax;
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
    pixc::backend::torch::set_threads(None);
    for name in [
        "diag_bilstm_7_mnist",
        "row_lstm_7_mnist",
        "pixelcnn_7_mnist",
    ] {
        let path = format!("{}/specs/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let tm = model_from(&std::fs::read_to_string(path).unwrap());
        let (r, f) = pixc::sample::bench_sampling(&tm, n, 1).unwrap();
        println!(
            "{name}: {n} samples, reference {r:.2} s, cached {f:.3} s, {:.0}x faster (threads: torch {}, cached {})",
            r / f,
            tch::get_num_threads(),
            pixc::sample::default_threads()
        );
    }
}
