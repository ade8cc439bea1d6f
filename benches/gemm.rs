//! `cargo bench --bench gemm`: GFLOP/s of `gemm.rs` on the shapes the training kernels
//! give it (a Diagonal BiLSTM step at h = 16 and its weight gradients, a conv's weight
//! gradient over one 28 x 28 image, a PixelCNN's convs over one image), to compare
//! kernels and pick `gemm`'s thresholds.
//! Figures only, no pass or fail: `pixc bench` is the measure of a whole training step.

use pixc::backend::torch::gemm::{gemm, gemm_stacked, View};
use std::time::Instant;

/// The best GFLOP/s of seven rounds of at least 80 ms each: the best, because a shared
/// VM's noise only ever slows a round down.
fn best(flops: f64, mut f: impl FnMut()) -> f64 {
    let mut reps = 1usize;
    loop {
        let t = Instant::now();
        (0..reps).for_each(|_| f());
        if t.elapsed().as_secs_f64() > 0.08 {
            break;
        }
        reps *= 2;
    }
    (0..7)
        .map(|_| {
            let t = Instant::now();
            (0..reps).for_each(|_| f());
            flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn values(n: usize, modulus: usize) -> Vec<f32> {
    (0..n).map(|i| (i % modulus) as f32 * 0.01).collect()
}

fn main() {
    // A Diagonal BiLSTM step, h = 16: gates (4h x n) = [W_in | W_ss] (4h x 4h) over x_t
    // (2h x n) and X(h) (2h x n); n = the step's columns (states x images per worker).
    let (m, kx, kh, ld) = (64, 32, 32, 448);
    let w = values(m * (kx + kh), 7);
    let (xs, xh) = (values(kx * ld, 5), values(kh * ld, 3));
    let bias = vec![0.1f32; m];
    let (mut c, mut dx, mut dw) = (vec![0f32; m * ld], vec![0f32; 64 * ld], vec![0f32; m * 64]);
    println!("Diagonal BiLSTM step, h = 16, GFLOP/s (best of 7):");
    for n in [32usize, 112, 224, 448] {
        let fl = 2.0 * (m * (kx + kh) * n) as f64;
        let fwd = best(fl, || {
            let blocks = [(View::rows(&xs, ld), kx), (View::rows(&xh, ld), kh)];
            let a = View::rows(&w, kx + kh);
            gemm_stacked(m, n, a, &blocks, Some(&bias), 0.0, &mut c, ld);
        });
        let wt = View::transposed(&w, kx + kh);
        let back = best(fl, || {
            gemm(kh + kx, m, n, wt, View::rows(&c, ld), 0.0, &mut dx, ld)
        });
        let grad = best(fl, || {
            let b = View::transposed(&dx, ld);
            gemm(m, n, 64, View::rows(&c, ld), b, 1.0, &mut dw, 64)
        });
        println!(
            "  n = {n:3}: forward W X {fwd:6.1}   dX = W^T dG {back:6.1}   dW = dG X^T {grad:6.1}"
        );
    }
    println!("dW = dY X^T (m x k . k x n), GFLOP/s (best of 7):");
    for (m, k, n) in [
        (16usize, 784usize, 32usize),
        (32, 784, 144),
        (64, 784, 64),
        (64, 2000, 64),
    ] {
        let (a, b) = (values(m * k, 7), values(n * k, 5));
        let mut c = vec![0f32; m * n];
        let g = best(2.0 * (m * k * n) as f64, || {
            gemm(
                m,
                k,
                n,
                View::rows(&a, k),
                View::transposed(&b, k),
                1.0,
                &mut c,
                n,
            )
        });
        println!("  {m} x {k} x {n}: {g:6.1}");
    }
    // A PixelCNN conv over one 28 x 28 image: Y (cout x 784) = W (cout x K) X (K x 784),
    // K = cin x the mask's live taps; and the same shapes with A read transposed, as
    // backward's dX = W^T dY reads the weight (m = cin x taps, k = cout).
    println!("PixelCNN conv, one 28 x 28 image, Y = W X (m x k . k x 784), GFLOP/s (best of 7):");
    for (m, k) in [
        (32usize, 24usize),
        (16, 32),
        (16, 80),
        (32, 16),
        (80, 16),
        (32, 32),
    ] {
        let n = 784;
        let (a, b) = (values(m * k, 7), values(k * n, 5));
        let mut c = vec![0f32; m * n];
        let at = values(k * m, 3);
        let [g, gt] = [View::rows(&a, k), View::transposed(&at, m)].map(|av| {
            best(2.0 * (m * k * n) as f64, || {
                gemm(m, k, n, av, View::rows(&b, n), 0.0, &mut c, n)
            })
        });
        println!("  {m:2} x {k:2} x {n}: A row-major {g:6.1}   A = W^T {gt:6.1}");
    }
}
