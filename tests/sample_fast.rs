//! The cached sampler against the reference sampler: identical images for the same seed,
//! and the logits it draws from equal a full forward pass's, for every layer type, on
//! binary 1-channel and 256-level 3-channel images.
//!
//! Seeds: a draw could in principle flip when a uniform lies within float rounding of a
//! CDF boundary; none of the seeds below does (all were used as first chosen).

mod common;

use pixc::backend::cached::CachedModel;
use pixc::backend::torch::{tch, TorchModel};
use pixc::front::Syntax;
use pixc::sample;
use pixc::weights::Weights;
use tch::{Device, Kind};

/// Layer bodies, one per layer type (and a few combinations).
const BODIES: &[(&str, &str)] = &[
    (
        "pixelcnn",
        "
  - conv: {out: 12, kernel: 7, mask: A}
  - pixelcnn_block: {hidden: 6}
  - conv: {out: 12, kernel: [3, 5], mask: B}
  - relu
  - conv: {out: 12, kernel: 1, mask: B}
  - relu",
    ),
    (
        "row_lstm",
        "
  - conv: {out: 12, kernel: 5, mask: A}
  - residual:
      body:
        - row_lstm: {hidden: 6, kernel: 3}
        - conv: {out: 12, kernel: 1, mask: B}
  - row_lstm: {hidden: 6, kernel: 5}
  - relu",
    ),
    (
        "diag_bilstm",
        "
  - conv: {out: 12, kernel: 7, mask: A}
  - repeat:
      count: 2
      body:
        - residual:
            skip: true
            body:
              - diag_bilstm: {hidden: 6}
              - conv: {out: 12, kernel: 1, mask: B}
  - skip_sum
  - relu
  - conv: {out: 12, kernel: 3, mask: B}
  - relu",
    ),
    (
        // Vertical stacks computed a row at a time; a ReLU starts a new one.
        "gated_pixelcnn",
        "
  - gated_pixelcnn: {hidden: 6, mask: A}
  - gated_pixelcnn: {hidden: 6, kernel: 5, skip: true}
  - gated_pixelcnn: {hidden: 6, skip: true}
  - relu
  - gated_pixelcnn: {hidden: 6}
  - skip_sum
  - relu",
    ),
    (
        // Its right-to-left rows read the image's row above, drawn by then.
        "diag_bilstm_full_context",
        "
  - conv: {out: 12, kernel: 7, mask: A}
  - repeat:
      count: 2
      body:
        - residual:
            skip: true
            body:
              - diag_bilstm: {hidden: 6, full_context: true}
              - conv: {out: 12, kernel: 1, mask: B}
  - skip_sum
  - relu
  - conv: {out: 12, kernel: 1, mask: B}
  - relu",
    ),
];

fn spec(name: &str, body: &str, c: usize, h: usize, w: usize, levels: usize) -> String {
    let head = if levels == 2 { "bernoulli" } else { "softmax" };
    format!("model: {name}\ninput: {{channels: {c}, height: {h}, width: {w}, levels: {levels}}}\nlayers:{body}\n  - head: {head}\n")
}

fn model(text: &str, seed: u64) -> TorchModel {
    let (_, m) = pixc::compile_str(text, Syntax::Yaml).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let w = Weights::init(&m, seed);
    TorchModel::new(&m, &w, Device::Cpu).unwrap()
}

/// Reference and cached samples agree; the cached logits match the full forward pass.
fn check(tm: &TorchModel, n: usize, seed: u64, temperature: f64, what: &str) {
    check_with(tm, n, seed, temperature, what, true)
}

fn check_with(tm: &TorchModel, n: usize, seed: u64, temperature: f64, what: &str, causal: bool) {
    // A conditional model draws every class in turn.
    let labels = sample::cycle_labels(tm.classes(), n);
    let y = labels.as_deref();
    // A low-res model draws given pseudo-random low-res images.
    let im = tm.model().graph().image;
    let images: Vec<u8> = (0..n * im.dims())
        .map(|i| ((i * 7919 + seed as usize * 31) % 101 % im.levels) as u8)
        .collect();
    let given = sample::low_res_keep(&im, &images, n);
    let keep = given.as_ref().map(|(v, m)| (&v[..], &m[..]));
    let reference = sample::sample_reference(tm, n, seed, temperature, keep, y, |_, _| {}).unwrap();
    for threads in [1, 3] {
        let (fast, rec) = sample::sample_fast_with_logits(
            tm,
            n,
            seed,
            temperature,
            keep,
            y,
            true,
            threads,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(fast, reference, "{what}: images differ (threads {threads})");
        let rec = rec.unwrap();
        if !causal {
            continue;
        }
        let yt = y.map(TorchModel::labels_tensor);
        let full = tch::no_grad(|| tm.forward_labeled(&tm.images_to_tensor(&fast, n), yt.as_ref()));
        let full = full.to_kind(Kind::Float).contiguous();
        let len = full.numel();
        let mut v = vec![0f32; len];
        full.copy_data(&mut v, len);
        assert_eq!(v.len(), rec.len());
        let worst = v
            .iter()
            .zip(&rec)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-5,
            "{what}: cached logits differ from the forward pass by {worst}"
        );
    }
}

#[test]
fn cached_equals_reference_for_every_layer_binary() {
    for (i, (name, body)) in BODIES.iter().enumerate() {
        let tm = model(&spec(name, body, 1, 8, 8, 2), 10 + i as u64);
        check(&tm, 5, 7, 1.0, &format!("{name} 1x8x8 binary"));
    }
}

#[test]
fn cached_equals_reference_for_every_layer_rgb() {
    for (i, (name, body)) in BODIES.iter().enumerate() {
        let tm = model(&spec(name, body, 3, 6, 6, 256), 20 + i as u64);
        check(&tm, 3, 11, 1.0, &format!("{name} 3x6x6 256 levels"));
    }
}

#[test]
fn cached_equals_reference_with_uneven_colour_groups() {
    // 4, 5 and 7 channels split into R, G, B groups of unequal size.
    let body = "
  - conv: {out: 4, kernel: 5, mask: A}
  - residual:
      skip: true
      body:
        - diag_bilstm: {hidden: 5}
        - conv: {out: 4, kernel: 1, mask: B}
  - row_lstm: {hidden: 4, kernel: 3, skip: true}
  - skip_sum
  - relu
  - conv: {out: 7, kernel: 3, mask: B}
  - relu";
    let tm = model(&spec("uneven", body, 3, 6, 6, 256), 31);
    check(&tm, 3, 13, 1.0, "uneven RGB groups 3x6x6");
}

#[test]
fn cached_equals_reference_with_whole_vectors() {
    // Hidden sizes of 12 and 16: the LSTM and gated units run eight at a time in AVX2
    // (the bodies above, at 4 to 6, run the scalar loop only); 12 runs both at once.
    let body = "
  - conv: {out: 16, kernel: 7, mask: A}
  - residual:
      skip: true
      body:
        - diag_bilstm: {hidden: 12}
        - conv: {out: 16, kernel: 1, mask: B}
  - row_lstm: {hidden: 16, kernel: 3, skip: true}
  - gated_pixelcnn: {hidden: 16, skip: true}
  - skip_sum
  - relu
  - conv: {out: 12, kernel: 1, mask: B}
  - relu";
    for (c, levels) in [(1, 2), (3, 256)] {
        let tm = model(&spec("whole_vectors", body, c, 7, 7, levels), 41);
        check(&tm, 5, 17, 1.0, &format!("hidden 12 and 16, {c} channels"));
    }
}

#[test]
fn cached_equals_reference_on_non_square_images() {
    // Taller than wide and wider than tall: the Diagonal BiLSTM's skew and padding zone
    // depend on both.
    for (h, w) in [(9, 5), (4, 10)] {
        for (name, body) in BODIES {
            let tm = model(&spec(name, body, 1, h, w, 2), 3);
            check(&tm, 3, 5, 1.0, &format!("{name} 1x{h}x{w}"));
        }
    }
}

#[test]
fn temperature_is_applied_the_same_way() {
    let (name, body) = BODIES[2];
    let tm = model(&spec(name, body, 3, 5, 5, 256), 4);
    check(&tm, 2, 3, 0.7, "temperature 0.7");
    // Cold samples are less diverse than hot ones: count distinct values.
    let distinct = |t: f64| {
        let imgs = sample::sample_fast(&tm, 8, 1, t, None, None, |_, _| {}).unwrap();
        let mut seen = [false; 256];
        imgs.iter().for_each(|&v| seen[v as usize] = true);
        seen.iter().filter(|&&s| s).count()
    };
    let (cold, hot) = (distinct(0.05), distinct(3.0));
    assert!(
        cold < hot,
        "temperature 0.05 gave {cold} distinct values, 3.0 gave {hot}"
    );
}

#[test]
fn trained_like_weights_with_nonzero_initial_state() {
    // Learned h0/c0 are zero at init; make them nonzero so the Diagonal BiLSTM's padding
    // zone (computed once from h0/c0) and the Row LSTM's first row are really exercised.
    for (name, body) in &BODIES[1..] {
        let text = spec(name, body, 1, 7, 7, 2);
        let (_, m) = pixc::compile_str(&text, Syntax::Yaml).unwrap();
        let mut w = Weights::init(&m, 9);
        common::set_initial_states(&mut w, 9);
        let tm = TorchModel::new(&m, &w, Device::Cpu).unwrap();
        check(&tm, 4, 2, 1.0, &format!("{name} with nonzero h0/c0"));
    }
}

/// A low-res model (every layer kind that reads the map), given its low-res images: both
/// samplers draw the same images and keep the low-res pixels; without them, a clear error.
#[test]
fn cached_equals_reference_for_low_res_models() {
    let body = "
  - conv: {out: 6, kernel: 5, mask: A}
  - diag_bilstm: {hidden: 6}
  - diag_bilstm: {hidden: 6, full_context: true}
  - row_lstm: {hidden: 6, kernel: 3}
  - gated_pixelcnn: {hidden: 6}
  - relu";
    for (c, levels, f) in [(1, 2, 2), (3, 256, 2), (1, 2, 4)] {
        let text = spec("low_res", body, c, 8, 8, levels).replacen(
            "}\nlayers:",
            &format!(", low_res: {f}, low_res_maps: 5}}\nlayers:"),
            1,
        );
        let tm = model(&text, 3);
        check(&tm, 4, 11, 1.0, &format!("low_res {c}x8x8 factor {f}"));
        let e = sample::sample_fast(&tm, 2, 1, 1.0, None, None, |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("low-res subsample"), "{e}");
    }
}

#[test]
fn completion_keeps_given_pixels_in_both_samplers() {
    let (name, body) = BODIES[2];
    let tm = model(&spec(name, body, 1, 8, 8, 2), 1);
    let n = 4;
    let size = 64;
    let given: Vec<u8> = (0..n * size).map(|i| ((i * 7) % 3 == 0) as u8).collect();
    let mask: Vec<bool> = (0..n * size).map(|i| (i % size) < 3 * 8).collect();
    let a =
        sample::sample_reference(&tm, n, 5, 1.0, Some((&given, &mask)), None, |_, _| {}).unwrap();
    let b = sample::sample_fast(&tm, n, 5, 1.0, Some((&given, &mask)), None, |_, _| {}).unwrap();
    assert_eq!(a, b);
    for i in 0..n * size {
        if mask[i] {
            assert_eq!(b[i], given[i]);
        }
    }
}

#[test]
fn cached_model_rejects_nothing_valid_and_bad_requests_fail_cleanly() {
    let (name, body) = BODIES[0];
    let tm = model(&spec(name, body, 1, 4, 4, 2), 1);
    assert!(CachedModel::new(tm.model(), &tm.to_weights()).is_ok());
    for (n, t) in [
        (0, 1.0),
        (1025, 1.0),
        (1, 0.0),
        (1, -1.0),
        (1, f64::NAN),
        (1, f64::INFINITY),
    ] {
        let e = sample::sample_fast(&tm, n, 0, t, None, None, |_, _| {}).unwrap_err();
        assert!(!format!("{e}").is_empty());
        assert!(sample::sample_reference(&tm, n, 0, t, None, None, |_, _| {}).is_err());
    }
}

#[test]
fn pixels_are_recomputed_when_cached_values_see_the_last_colour() {
    // Mask B on the first layer is a causality leak (rejected unless allowed): every
    // feature at a pixel then sees that pixel's own value, so the cached sampler must
    // recompute the pixel after the draw. Both samplers still draw the same images (the
    // logits are not those of a forward pass on the final images: they saw the pixel).
    let body = "
  - conv: {out: 6, kernel: 5, mask: B}
  - relu
  - conv: {out: 6, kernel: 3, mask: B}
  - relu";
    for (c, levels) in [(1, 2), (3, 256)] {
        let text = spec("leaky", body, c, 5, 6, levels);
        let opts = pixc::ir::validate::Options { allow_leaks: true };
        let (_, m) =
            pixc::compile_with(&text, Syntax::Yaml, opts).unwrap_or_else(|e| panic!("{e:?}"));
        // Large weights, so that a stale cache would change the draws.
        let mut w = Weights::init(&m, 2);
        w.tensors
            .values_mut()
            .for_each(|t| t.data.iter_mut().for_each(|x| *x *= 6.0));
        let tm = TorchModel::new(&m, &w, Device::Cpu).unwrap();
        check_with(&tm, 3, 4, 1.0, &format!("leaky, {c} channel(s)"), false);
    }
}
