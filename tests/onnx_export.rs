//! ONNX export checked end to end: the onnx checker, ONNX Runtime (CPU), causality through
//! ORT, the in-graph NLL, the shipped specs, and (when present) the PyTorch reference.

mod common;

use pixc::backend::onnx::{export, export_proto, meta_keys, ExportMeta, IR_VERSION, OPSET};
use pixc::front::Syntax;
use pixc::ir::validate::{Model, Options};
use pixc::runtime::{self, Device, OnnxModel, Provider};
use pixc::weights::Weights;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

fn compile(text: &str) -> Model {
    pixc::compile_str(text, Syntax::Yaml)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
        .1
}

fn compile_leaky(text: &str) -> Model {
    pixc::compile_with(text, Syntax::Yaml, Options { allow_leaks: true })
        .unwrap_or_else(|e| panic!("{e:?}"))
        .1
}

fn spec(name: &str, c: usize, h: usize, w: usize, levels: usize, layers: &str) -> String {
    format!("model: {name}\ninput: {{channels: {c}, height: {h}, width: {w}, levels: {levels}}}\nlayers:\n{layers}")
}

/// Small models covering every layer type, 1 and 3 channels, both heads, non-square images
/// (so a swapped H/W shows), even and odd kernel widths in the Row LSTM.
fn small_specs() -> Vec<(&'static str, String)> {
    vec![
        (
            "pixelcnn_1ch",
            spec(
                "pixelcnn_1ch",
                1,
                6,
                5,
                2,
                "  - conv: {out: 6, kernel: 5, mask: A}\n  - pixelcnn_block: {hidden: 3}\n  - relu\n  - conv: {out: 6, kernel: 3x5, mask: B}\n  - relu\n  - head: bernoulli\n",
            ),
        ),
        (
            "row_lstm_1ch",
            spec(
                "row_lstm_1ch",
                1,
                5,
                6,
                2,
                "  - conv: {out: 4, kernel: 3, mask: A}\n  - residual:\n      skip: true\n      body:\n        - row_lstm: {hidden: 2, kernel: 3}\n        - conv: {out: 4, kernel: 1, mask: B}\n  - residual:\n      skip: true\n      body:\n        - row_lstm: {hidden: 2, kernel: 5}\n        - conv: {out: 4, kernel: 1, mask: B}\n  - skip_sum\n  - relu\n  - head: bernoulli\n",
            ),
        ),
        (
            "diag_bilstm_1ch",
            spec(
                "diag_bilstm_1ch",
                1,
                5,
                4,
                2,
                "  - conv: {out: 4, kernel: 3, mask: A}\n  - repeat:\n      count: 2\n      body:\n        - residual:\n            skip: true\n            body:\n              - diag_bilstm: {hidden: 2}\n              - conv: {out: 4, kernel: 1, mask: B}\n  - skip_sum\n  - relu\n  - conv: {out: 4, kernel: 1, mask: B}\n  - relu\n  - head: bernoulli\n",
            ),
        ),
        (
            // Columns' inputs (2 channels and the bias's 1) narrower than the state (5).
            "diag_bilstm_narrow",
            spec(
                "diag_bilstm_narrow",
                1,
                4,
                5,
                2,
                "  - conv: {out: 2, kernel: 3, mask: A}\n  - diag_bilstm: {hidden: 5}\n  - relu\n  - head: bernoulli\n",
            ),
        ),
        (
            "diag_bilstm_full_rgb",
            spec(
                "diag_bilstm_full_rgb",
                3,
                5,
                4,
                256,
                "  - conv: {out: 6, kernel: 3, mask: A}\n  - residual:\n      skip: true\n      body:\n        - diag_bilstm: {hidden: 3, full_context: true}\n        - conv: {out: 6, kernel: 1, mask: B}\n  - skip_sum\n  - relu\n  - head: softmax\n",
            ),
        ),
        (
            "rgb_mixed",
            spec(
                "rgb_mixed",
                3,
                4,
                5,
                4,
                "  - conv: {out: 6, kernel: 3, mask: A}\n  - residual:\n      skip: true\n      body:\n        - row_lstm: {hidden: 3, kernel: 3}\n        - conv: {out: 6, kernel: 1, mask: B}\n  - residual:\n      skip: true\n      body:\n        - diag_bilstm: {hidden: 3}\n        - conv: {out: 6, kernel: 1, mask: B}\n  - pixelcnn_block: {hidden: 3}\n  - skip_sum\n  - relu\n  - head: softmax\n",
            ),
        ),
        (
            "gated_rgb",
            spec(
                "gated_rgb",
                3,
                5,
                4,
                256,
                "  - gated_pixelcnn: {hidden: 4, mask: A}\n  - gated_pixelcnn: {hidden: 4, kernel: 5, skip: true}\n  - relu\n  - gated_pixelcnn: {hidden: 4, skip: true}\n  - skip_sum\n  - relu\n  - head: softmax\n",
            ),
        ),
        (
            "rgb_pixelcnn_256",
            spec(
                "rgb_pixelcnn_256",
                3,
                4,
                4,
                256,
                "  - conv: {out: 6, kernel: 3, mask: A}\n  - relu\n  - conv: {out: 6, kernel: 3, mask: B}\n  - relu\n  - head: softmax\n",
            ),
        ),
        (
            "low_res_1ch",
            spec(
                "low_res_1ch",
                1,
                6,
                4,
                2,
                LOW_RES_LAYERS,
            )
            .replacen("levels: 2}", "levels: 2, low_res: 2, low_res_maps: 3}", 1),
        ),
        (
            "low_res_rgb",
            spec(
                "low_res_rgb",
                3,
                4,
                6,
                256,
                &LOW_RES_LAYERS.replace("bernoulli", "softmax"),
            )
            .replacen("levels: 256}", "levels: 256, low_res: 2}", 1),
        ),
    ]
}

/// Every layer kind that reads a low-res model's map.
const LOW_RES_LAYERS: &str = "  - conv: {out: 6, kernel: 3, mask: A}\n  - diag_bilstm: {hidden: 3}\n  - diag_bilstm: {hidden: 3, full_context: true}\n  - row_lstm: {hidden: 3, kernel: 3}\n  - gated_pixelcnn: {hidden: 3}\n  - relu\n  - head: bernoulli\n";

/// The deliberately leaking model: the right-to-left direction is not shifted down.
fn leaky_spec() -> String {
    spec(
        "leaky",
        1,
        5,
        5,
        2,
        "  - conv: {out: 8, kernel: 3, mask: A}\n  - diag_bilstm: {hidden: 4, shift: false}\n  - relu\n  - head: bernoulli\n",
    )
}

/// `Weights::init`, with the learned initial states made nonzero so their path is tested too.
fn weights(model: &Model, seed: u64) -> Weights {
    let mut w = Weights::init(model, seed);
    common::set_initial_states(&mut w, seed as u32);
    w
}

fn export_bytes(model: &Model, w: &Weights, text: &str) -> Vec<u8> {
    export(model, w, &ExportMeta::new(text)).expect("export")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    root().join(".venv/bin/python")
}

/// Runs `onnx.checker.check_model(full_check=True)` over the files (one interpreter for
/// all), and ONNX shape inference: every dimension of every value must be a number or the
/// graph's symbolic `batch`. An unknown dimension (`unk__N`: a Reshape merging the batch
/// with another axis, an Expand to a shape computed at run time) is not wrong, but ONNX
/// Runtime's set-up grows with them: the MNIST Diagonal BiLSTM with 3,700 of them took a
/// minute to load, against 2 s without.
fn onnx_check(files: &[PathBuf]) {
    let script = r#"
import sys, onnx
for p in sys.argv[1:]:
    m = onnx.load(p)
    onnx.checker.check_model(m, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True).graph
    bad = []
    for v in list(inferred.value_info) + list(inferred.output):
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
        if not t.HasField("shape") or any(d != "batch" and not isinstance(d, int) for d in dims):
            bad.append(f"{v.name} {dims if t.HasField('shape') else 'unknown rank'}")
    if bad:
        sys.exit(f"{p}: {len(bad)} values with an unknown dimension, first: {bad[:5]}")
    print('ok', p)
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(files)
        .current_dir(root())
        .output()
        .expect("run .venv/bin/python (run scripts/setup.sh)");
    assert!(
        out.status.success(),
        "onnx checker failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn load_cpu(bytes: &[u8], name: &str) -> OnnxModel {
    let (m, p) =
        OnnxModel::from_bytes(bytes, Device::Cpu, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(p, Provider::Cpu);
    m
}

fn random_images(rng: &mut ChaCha8Rng, n: usize, dims: usize, levels: usize) -> Vec<f32> {
    (0..n * dims)
        .map(|_| rng.random_range(0..levels) as f32)
        .collect()
}

#[test]
fn exports_pass_the_onnx_checker() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut all = small_specs();
    all.push(("leaky", leaky_spec()));
    for (name, text) in &all {
        let model = if *name == "leaky" {
            compile_leaky(text)
        } else {
            compile(text)
        };
        let w = weights(&model, 0);
        let proto = export_proto(&model, &w, &ExportMeta::new(text.clone())).unwrap();
        assert_eq!(proto.ir_version, IR_VERSION);
        assert_eq!(proto.opset_import[0].version, OPSET);
        let graph = proto.graph.as_ref().unwrap();
        // Node names are unique and say which IR node they come from.
        let mut names: Vec<&str> = graph.node.iter().map(|n| n.name.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with('n') || n.starts_with("nll")),
            "{names:?}"
        );
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "{name}: duplicate node names");
        assert!(graph
            .input
            .iter()
            .chain(&graph.output)
            .all(|v| !v.doc_string.is_empty()));
        let meta: std::collections::HashMap<_, _> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(meta[meta_keys::SPEC], text.as_str());
        assert_eq!(meta[meta_keys::PIXC_VERSION], env!("CARGO_PKG_VERSION"));
        assert_eq!(meta[meta_keys::NLL_UNITS], "nats per image");
        let p = dir.path().join(format!("{name}.onnx"));
        std::fs::write(&p, export_bytes(&model, &w, text)).unwrap();
        files.push(p);
    }
    onnx_check(&files);
}

#[test]
fn weights_are_checked_and_masks_baked_in() {
    let (_, text) = &small_specs()[0];
    let model = compile(text);
    let mut w = weights(&model, 1);
    let proto = export_proto(&model, &w, &ExportMeta::new(text.clone())).unwrap();
    // The first conv is 5x5 mask A on one channel: the centre and everything after are
    // zero, and the all-zero rows below the centre are not stored.
    let t = proto
        .graph
        .initializer
        .iter()
        .find(|t| t.name == "n1.weight")
        .unwrap();
    assert_eq!(t.dims, vec![6, 1, 3, 5]);
    let vals: Vec<f32> = t
        .raw_data
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for o in 0..6 {
        let k = &vals[o * 15..(o + 1) * 15];
        assert!(k[..12].iter().all(|v| *v != 0.0));
        assert!(k[12..].iter().all(|v| *v == 0.0));
    }
    w.tensors.remove("n1.bias");
    let e = export(&model, &w, &ExportMeta::new(text.clone())).unwrap_err();
    assert!(e.to_string().contains("n1.bias"), "{e}");
}

#[test]
fn runs_in_ort_with_a_dynamic_batch_and_no_warnings() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (name, text) in small_specs() {
        let model = compile(&text);
        let im = model.graph().image;
        let bytes = export_bytes(&model, &weights(&model, 2), &text);
        let mut m = load_cpu(&bytes, name);
        let info = m.info().clone();
        assert_eq!(
            (info.channels, info.height, info.width, info.levels),
            (im.channels, im.height, im.width, im.levels)
        );
        let d = im.dims();
        let lc = info.logit_channels();
        let x5 = random_images(&mut rng, 5, d, im.levels);
        let out5 = m.run(&x5, 5, None).unwrap();
        assert_eq!(out5.logits.len(), 5 * lc * im.height * im.width);
        assert_eq!(out5.nll.len(), 5);
        assert!(out5.logits.iter().chain(&out5.nll).all(|v| v.is_finite()));
        // Each image alone gives the same answer as in the batch.
        let per = lc * im.height * im.width;
        for i in [0, 3] {
            let out1 = m.run(&x5[i * d..(i + 1) * d], 1, None).unwrap();
            for (a, b) in out1.logits.iter().zip(&out5.logits[i * per..(i + 1) * per]) {
                assert!((a - b).abs() <= 1e-5, "{name}: batch 1 vs 5: {a} {b}");
            }
            assert!((out1.nll[0] - out5.nll[i]).abs() <= 1e-4);
        }
        assert!(m.run(&x5[..d - 1], 1, None).is_err());
        // The ndarray entry point agrees with the slice one.
        let arr = ndarray::ArrayView4::from_shape((5, im.channels, im.height, im.width), &x5[..])
            .unwrap();
        let (la, na) = m.run_array(arr, None).unwrap();
        assert_eq!(la.as_slice().unwrap(), &out5.logits[..]);
        assert_eq!(na.to_vec(), out5.nll);
    }
    let log = runtime::take_log();
    assert!(log.is_empty(), "ONNX Runtime warnings:\n{}", log.join("\n"));
}

/// A low-res model's file takes the given pixels as the input `low_res`
/// (`[batch, C, H/f, W/f]`, described in `metadata_props`): they replace `image`'s there,
/// so what `image` holds at those pixels does not matter, and `low_res` does.
#[test]
fn low_res_models_take_the_low_res_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for (name, text) in small_specs()
        .into_iter()
        .filter(|(n, _)| n.starts_with("low_res"))
    {
        let model = compile(&text);
        let im = model.graph().image;
        let f = im.low_res.expect("a low-res model").factor;
        let w = weights(&model, 4);
        let proto = export_proto(&model, &w, &ExportMeta::new(text.clone())).unwrap();
        let g = proto.graph.as_ref().unwrap();
        let names: Vec<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["image", "low_res"], "{name}");
        let dims: Vec<String> = match &g.input[1].type_.as_ref().unwrap().value {
            Some(onnx_protobuf::type_proto::Value::TensorType(t)) => t
                .shape
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(onnx_protobuf::tensor_shape_proto::dimension::Value::DimValue(v)) => {
                        v.to_string()
                    }
                    Some(onnx_protobuf::tensor_shape_proto::dimension::Value::DimParam(p)) => {
                        p.clone()
                    }
                    _ => "?".into(),
                })
                .collect(),
            _ => panic!("{name}: `low_res` is not a tensor"),
        };
        let want = [
            "batch".to_string(),
            im.channels.to_string(),
            (im.height / f).to_string(),
            (im.width / f).to_string(),
        ];
        assert_eq!(dims, want, "{name}");
        let meta = |k: &str| {
            proto
                .metadata_props
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.clone())
        };
        assert_eq!(meta(meta_keys::LOW_RES), Some(f.to_string()), "{name}");

        let mut m = load_cpu(&export_bytes(&model, &w, &text), name);
        let (c, h, wd) = (im.channels, im.height, im.width);
        let n = 3;
        let x = random_images(&mut rng, n, im.dims(), im.levels);
        let small = |x: &[f32]| -> Vec<f32> {
            (0..n * c)
                .flat_map(|p| {
                    (0..h).step_by(f).flat_map(move |r| {
                        (0..wd).step_by(f).map(move |col| (p * h + r) * wd + col)
                    })
                })
                .map(|i| x[i])
                .collect()
        };
        let own = m.run(&x, n, None).unwrap();
        // `image` with other values at the given pixels, `low_res` holding the right ones:
        // the same outputs, bit for bit.
        let mut scrambled = x.clone();
        let mut other = x.clone();
        for (i, v) in scrambled.iter_mut().enumerate() {
            if (i / wd) % h % f == 0 && i % wd % f == 0 {
                *v = ((*v as usize + 1) % im.levels) as f32;
                other[i] = *v;
            }
        }
        let given = m.run_given(&scrambled, n, None, Some(&small(&x))).unwrap();
        assert_eq!(
            given.logits, own.logits,
            "{name}: `image` at the given pixels was read"
        );
        assert_eq!(given.nll, own.nll, "{name}");
        // Other low-res pixels change the outputs: the input is read.
        let moved = m.run_given(&x, n, None, Some(&small(&other))).unwrap();
        assert_ne!(moved.logits, own.logits, "{name}: `low_res` was not read");
        assert!(m.run_given(&x, n, None, Some(&small(&x)[1..])).is_err());
    }
}

/// Index of sub-pixel `s` (raster order, colours within a pixel) in a C x H x W image.
fn chw_index(s: usize, c: usize, h: usize, w: usize) -> usize {
    let (pix, ch) = (s / c, s % c);
    ch * h * w + pix
}

/// For each position p: logits at sub-pixels <= p from x and from x with every later
/// sub-pixel changed. Returns (any future change showed, any past change showed).
fn causality_probe(
    model: &Model,
    bytes: &[u8],
    name: &str,
    positions: &[usize],
    seed: u64,
) -> (bool, bool) {
    let im = model.graph().image;
    let (c, h, w, l) = (im.channels, im.height, im.width, im.levels);
    let d = im.dims();
    let per_colour = if l == 2 { 1 } else { l };
    let mut m = load_cpu(bytes, name);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = positions.len();
    let x = random_images(&mut rng, n, d, l);
    let change = |rng: &mut ChaCha8Rng, v: f32| ((v as usize + rng.random_range(1..l)) % l) as f32;
    // future[i]: x[i] with every sub-pixel after positions[i] changed; past[i]: every one before.
    let mut future = x.clone();
    let mut past = x.clone();
    for (i, &p) in positions.iter().enumerate() {
        for s in 0..d {
            let k = i * d + chw_index(s, c, h, w);
            // A low-res model's low-res pixels are context: every output may see them.
            if !im.scored(s / c / w, (s / c) % w) {
                continue;
            }
            if s > p {
                future[k] = change(&mut rng, x[k]);
            } else if s < p {
                past[k] = change(&mut rng, x[k]);
            }
        }
    }
    // Same batch size and layout in every run, so equal inputs give bit-equal outputs.
    let a = m.logits(&x, n, None).unwrap();
    let b = m.logits(&future, n, None).unwrap();
    let cc = m.logits(&past, n, None).unwrap();
    let per = c * per_colour * h * w;
    let (mut leaked, mut sees_past) = (false, false);
    for (i, &p) in positions.iter().enumerate() {
        for s in 0..=p {
            let (pix, ch) = (s / c, s % c);
            for v in 0..per_colour {
                let k = i * per + (ch * per_colour + v) * h * w + pix;
                if a[k].to_bits() != b[k].to_bits() {
                    leaked = true;
                }
                if s == p && a[k] != cc[k] {
                    sees_past = true;
                }
            }
        }
    }
    (leaked, sees_past)
}

#[test]
fn causal_through_onnx_runtime() {
    for (name, text) in small_specs() {
        let model = compile(&text);
        let d = model.graph().image.dims();
        let bytes = export_bytes(&model, &weights(&model, 3), &text);
        // First, mid-image, an edge and the last sub-pixel; every colour for RGB.
        let mut positions = vec![0, 1, 2, d / 2, d / 2 + 1, d - 1];
        positions.extend((d / 3)..(d / 3 + 4));
        let (leaked, sees_past) = causality_probe(&model, &bytes, name, &positions, 11);
        assert!(
            !leaked,
            "{name}: a logit changed when only later sub-pixels did"
        );
        assert!(
            sees_past,
            "{name}: no logit depends on earlier sub-pixels (the probe is vacuous)"
        );
    }
    let text = leaky_spec();
    let model = compile_leaky(&text);
    let d = model.graph().image.dims();
    let bytes = export_bytes(&model, &weights(&model, 3), &text);
    let positions: Vec<usize> = (0..d - 1).collect();
    let (leaked, _) = causality_probe(&model, &bytes, "leaky", &positions, 12);
    assert!(
        leaked,
        "the unshifted Diagonal BiLSTM must show its leak through ORT"
    );
}

/// NLL in nats from logits, in f64, straight from docs/semantics.md.
/// The NLL over the pixels `scored` marks (per pixel, `H * W`).
fn nll_from_logits(
    logits: &[f32],
    images: &[f32],
    c: usize,
    scored: &[bool],
    levels: usize,
) -> f64 {
    let hw = scored.len();
    let mut total = 0f64;
    if levels == 2 {
        for (i, (l, t)) in logits.iter().zip(images).enumerate() {
            if !scored[i % hw] {
                continue;
            }
            let (l, t) = (*l as f64, *t as f64);
            total += l.max(0.0) - l * t + (-l.abs()).exp().ln_1p();
        }
    } else {
        for ch in 0..c {
            for p in (0..hw).filter(|&p| scored[p]) {
                let z: Vec<f64> = (0..levels)
                    .map(|v| logits[(ch * levels + v) * hw + p] as f64)
                    .collect();
                let mx = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = mx + z.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
                total += lse - z[images[ch * hw + p] as usize];
            }
        }
    }
    total
}

#[test]
fn nll_output_matches_the_logits() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (name, text) in small_specs() {
        let model = compile(&text);
        let im = model.graph().image;
        let bytes = export_bytes(&model, &weights(&model, 4), &text);
        let mut m = load_cpu(&bytes, name);
        let n = 4;
        let d = im.dims();
        let x = random_images(&mut rng, n, d, im.levels);
        let out = m.run(&x, n, None).unwrap();
        let per = out.logits.len() / n;
        for i in 0..n {
            // A low-res model does not score its given low-res pixels.
            let scored: Vec<bool> = (0..im.height * im.width)
                .map(|p| im.scored(p / im.width, p % im.width))
                .collect();
            let want = nll_from_logits(
                &out.logits[i * per..(i + 1) * per],
                &x[i * d..(i + 1) * d],
                im.channels,
                &scored,
                im.levels,
            );
            let got = out.nll[i] as f64;
            assert!(
                (got - want).abs() <= 1e-4,
                "{name}: image {i}: nll {got}, from logits {want}"
            );
        }
        // The NLL-only path agrees with the full run.
        assert_eq!(m.nll(&x, n, None).unwrap(), out.nll);
    }
}

fn zero_weights(model: &Model) -> Weights {
    let mut w = Weights::default();
    for id in model.graph().nodes() {
        for p in model.shapes().params(id) {
            let t = pixc::weights::Tensor {
                shape: p.shape.clone(),
                data: vec![0.0; p.numel()],
            };
            w.tensors
                .insert(pixc::weights::param_key(id.index(), &p.name), t);
        }
    }
    w
}

#[test]
fn shipped_specs_export_and_pass_the_checker() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut specs: Vec<PathBuf> = std::fs::read_dir(root().join("specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 8);
    for path in &specs {
        // Shrink the 32x32 / 64x64 RGB models to 8x8; everything else stays as shipped.
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("height: 32, width: 32", "height: 8, width: 8")
            .replace("height: 64, width: 64", "height: 8, width: 8");
        let model = compile(&text);
        // Seeded random weights, except for the two ImageNet models (40M and 76M parameters),
        // whose random initialisation alone would take 10 s in a debug build: zeros export
        // through exactly the same code.
        let w = if model.shapes().total_params() < 20_000_000 {
            Weights::init(&model, 0)
        } else {
            zero_weights(&model)
        };
        let mut meta = ExportMeta::new(text.clone());
        meta.spec_name = path.file_name().map(|f| f.to_string_lossy().into_owned());
        let bytes = export(&model, &w, &meta).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let out = dir
            .path()
            .join(path.file_stem().unwrap())
            .with_extension("onnx");
        std::fs::write(&out, &bytes).unwrap();
        files.push(out);
    }
    onnx_check(&files);
}

// ---- comparison with the PyTorch reference (python/pixc_ref.py), when it exists ----

fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

fn read_npy_f32(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let (hlen, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = String::from_utf8_lossy(&b[start..start + hlen]);
    assert!(
        header.contains("'<f4'") && header.contains("False"),
        "unexpected npy header {header}"
    );
    b[start + hlen..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn matches_the_pytorch_reference() {
    let script = root().join("python/pixc_ref.py");
    if !script.exists() {
        eprintln!(
            "note: {} is missing; skipping the comparison with the PyTorch reference",
            script.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let n = 3;
    // (name, model, weights, images, output path), and one argument list per model for a
    // single Python process (importing torch once instead of once per model).
    let mut cases = Vec::new();
    let mut calls = Vec::new();
    // Low-res models included: both sides take the low-res input from the image.
    // (python/test_pixc_ref.py compares class-conditional models, labels given.)
    for (name, text) in small_specs() {
        let model = compile(&text);
        let im = model.graph().image;
        let w = weights(&model, 6);
        let spec_path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&spec_path, &text).unwrap();
        let ir = Command::new(env!("CARGO_BIN_EXE_pixc"))
            .arg("check")
            .arg(&spec_path)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            ir.status.success(),
            "{}",
            String::from_utf8_lossy(&ir.stderr)
        );
        let ir_path = dir.path().join(format!("{name}.json"));
        std::fs::write(&ir_path, &ir.stdout).unwrap();
        let w_path = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&w_path, w.to_safetensors(None)).unwrap();
        let x = random_images(&mut rng, n, im.dims(), im.levels);
        let img_path = dir.path().join(format!("{name}.npy"));
        write_npy_f32(&img_path, &[n, im.channels, im.height, im.width], &x);
        let out_path = dir.path().join(format!("{name}.out.npy"));
        let args: Vec<String> = vec![
            "logits".into(),
            "--ir".into(),
            ir_path.display().to_string(),
            "--weights".into(),
            w_path.display().to_string(),
            "--images".into(),
            img_path.display().to_string(),
            "--out".into(),
            out_path.display().to_string(),
        ];
        calls.push(args);
        cases.push((name, text, model, w, x, out_path));
    }
    let driver = "import json, sys\nsys.path.insert(0, 'python')\nimport pixc_ref\nfor a in json.loads(sys.argv[1]):\n    rc = pixc_ref.main(a)\n    assert not rc, (a, rc)\n";
    let r = Command::new(python())
        .arg("-c")
        .arg(driver)
        .arg(serde_json::to_string(&calls).unwrap())
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "pixc_ref.py failed:\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    for (name, text, model, w, x, out_path) in cases {
        let want = read_npy_f32(&out_path);
        let mut m = load_cpu(&export_bytes(&model, &w, &text), name);
        let got = m.logits(&x, n, None).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{name}: ORT vs PyTorch reference, max |logit difference| {worst:.2e}");
        assert!(
            worst <= 1e-4,
            "{name}: ORT and the PyTorch reference differ by {worst}"
        );
    }
}
