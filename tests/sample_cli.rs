//! `pixc sample`, `pixc complete` and `pixc plot` end to end on a small run folder made
//! here (spec, checkpoint, metrics, a PNG data set), through the clap argument structs of
//! src/cli/sample_cmds.rs and the library functions behind them.

// sample_cmds.rs names library items as `crate::...`; these imports make that resolve here.
use pixc::{app, device, front};

#[path = "../src/cli/sample_cmds.rs"]
mod sample_cmds;

use clap::Parser;
use pixc::app::sample::{self as run, CompleteOptions, SampleOptions};
use pixc::front::Syntax;
use pixc::weights::Weights;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "pixc")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    Sample(sample_cmds::SampleArgs),
    Complete(sample_cmds::CompleteArgs),
    Plot(sample_cmds::PlotArgs),
}

fn cli(args: &[&str]) -> anyhow::Result<i32> {
    let mut v = vec!["pixc"];
    v.extend_from_slice(args);
    match Cli::try_parse_from(v)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .cmd
    {
        Cmd::Sample(a) => sample_cmds::sample(a),
        Cmd::Complete(a) => sample_cmds::complete(a),
        Cmd::Plot(a) => sample_cmds::plot(a),
    }
}

const H: usize = 8;
const W: usize = 7;

fn spec_text(data: &Path, hidden: usize) -> String {
    format!(
        "model: tiny_diag\ninput: {{channels: 1, height: {H}, width: {W}, levels: 256}}\nlayers:\n  - conv: {{out: 6, kernel: 3, mask: A}}\n  - diag_bilstm: {{hidden: {hidden}}}\n  - relu\n  - head: softmax\ntrain:\n  data: \"png:{}\"\n",
        data.display()
    )
}

/// A PNG from `f(y, x)`; colour files add `tint * k` to channel k.
fn write_png(
    path: &Path,
    w: usize,
    h: usize,
    colour: bool,
    tint: u8,
    f: impl Fn(usize, usize) -> u8,
) {
    let c = if colour { 3 } else { 1 };
    let mut px = Vec::with_capacity(w * h * c);
    for y in 0..h {
        for x in 0..w {
            for k in 0..c {
                px.push(f(y, x).wrapping_add(k as u8 * tint));
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(if colour {
            png::ColorType::Rgb
        } else {
            png::ColorType::Grayscale
        });
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(&px).unwrap();
    }
    std::fs::write(path, out).unwrap();
}

fn decode_png(path: &Path) -> (usize, usize, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    (info.width as usize, info.height as usize, buf)
}

/// A run folder with a spec, a best checkpoint (random weights, step 20) and metrics,
/// trained on a folder of 20 PNGs.
struct Run {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
}

fn make_run() -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    for i in 0..20 {
        write_png(
            &data.join(format!("img{i:02}.png")),
            W,
            H,
            false,
            0,
            |y, x| ((y * 31 + x * 17 + i * 5) % 256) as u8,
        );
    }
    let dir = root.join("run");
    std::fs::create_dir(&dir).unwrap();
    let text = spec_text(&data, 3);
    std::fs::write(dir.join("spec.yaml"), &text).unwrap();
    let (_, model) = pixc::compile_str(&text, Syntax::Yaml).unwrap();
    let w = Weights::init(&model, 5);
    let meta = HashMap::from([("step".to_string(), "20".to_string())]);
    std::fs::write(dir.join("best.safetensors"), w.to_safetensors(Some(meta))).unwrap();
    let metrics = [
        r#"{"step":10,"wall_seconds":3.5,"train_nll":5.1,"valid_nll":5.3,"unit":"bits/dim"}"#,
        r#"{"step":20,"wall_seconds":7.0,"train_nll":4.6,"valid_nll":4.9,"unit":"bits/dim"}"#,
        r#"{"step":30,"wall_seconds":10.2,"train_nll":null,"valid_nll":4.7,"unit":"bits/dim"}"#,
    ];
    std::fs::write(dir.join("metrics.jsonl"), metrics.join("\n") + "\n").unwrap();
    Run {
        _tmp: tmp,
        root,
        dir,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Parses a `.npy` file: (header dict text, data offset).
fn npy_header(bytes: &[u8]) -> (String, usize) {
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "magic and version 1.0");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0, "data starts 64-byte aligned");
    assert_eq!(bytes[10 + len - 1], b'\n', "header ends with a newline");
    (
        String::from_utf8(bytes[10..10 + len].to_vec()).unwrap(),
        10 + len,
    )
}

#[test]
fn sample_writes_the_grid_npy_and_netpbm_files() {
    let run = make_run();
    let out = run.root.join("grid.png");
    let npy = run.root.join("s.npy");
    let pgm = run.root.join("pgm");
    let code = cli(&[
        "sample",
        s(&run.dir),
        "-n",
        "5",
        "--seed",
        "3",
        "-o",
        s(&out),
        "--npy",
        s(&npy),
        "--pgm",
        s(&pgm),
    ])
    .unwrap();
    assert_eq!(code, 0);
    // 5 images -> 3 columns, 2 rows; 8 x 7 pixels drawn 14 x 14 (112 / 8), 1-pixel gutters.
    let (w, h, _) = decode_png(&out);
    assert_eq!((w, h), (3 * (W * 14 + 1) + 1, 2 * (H * 14 + 1) + 1));
    let bytes = std::fs::read(&npy).unwrap();
    let (header, off) = npy_header(&bytes);
    for field in [
        "'descr': '|u1'",
        "'fortran_order': False",
        "'shape': (5, 1, 8, 7)",
    ] {
        assert!(header.contains(field), "{header}");
    }
    assert_eq!(bytes.len() - off, 5 * H * W);
    // The same seed through the library gives the same values; the PGMs hold them too.
    let o = SampleOptions {
        n: 5,
        seed: 3,
        out: run.root.join("again.png"),
        ..Default::default()
    };
    let rep = run::sample_run(&run.dir, &o).unwrap();
    assert_eq!(&bytes[off..], &rep.images[..]);
    assert_eq!(rep.step, Some(20));
    for k in 0..5 {
        let p = std::fs::read(pgm.join(format!("sample_{k:03}.pgm"))).unwrap();
        let head = format!("P5\n{W} {H}\n255\n");
        assert!(p.starts_with(head.as_bytes()));
        assert_eq!(&p[head.len()..], &rep.images[k * H * W..(k + 1) * H * W]);
    }
}

#[test]
fn reference_flag_draws_the_same_images() {
    let run = make_run();
    let (a, b) = (run.root.join("a.npy"), run.root.join("b.npy"));
    let png = run.root.join("x.png");
    cli(&[
        "sample",
        s(&run.dir),
        "-n",
        "3",
        "--seed",
        "9",
        "-o",
        s(&png),
        "--npy",
        s(&a),
    ])
    .unwrap();
    cli(&[
        "sample",
        s(&run.dir),
        "-n",
        "3",
        "--seed",
        "9",
        "-o",
        s(&png),
        "--npy",
        s(&b),
        "--reference",
        "--device",
        "cpu",
    ])
    .unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

#[test]
fn complete_keeps_the_kept_rows_exactly() {
    let run = make_run();
    let out = run.root.join("c.png");
    let o = CompleteOptions {
        from_test: 2,
        keep_rows: Some(3),
        samples: 3,
        out: out.clone(),
        ..Default::default()
    };
    let rep = run::complete_run(&run.dir, &o).unwrap();
    assert_eq!((rep.images, rep.samples, rep.keep_rows), (2, 3, 3));
    let size = H * W;
    for i in 0..2 {
        for k in 0..3 {
            let c = &rep.completions[(i * 3 + k) * size..(i * 3 + k + 1) * size];
            assert_eq!(
                &c[..3 * W],
                &rep.originals[i * size..i * size + 3 * W],
                "image {i} completion {k}"
            );
        }
    }
    // Completions differ from each other below the kept rows (random weights, 256 levels).
    assert_ne!(
        &rep.completions[3 * W..size],
        &rep.completions[size + 3 * W..2 * size]
    );
    // One row per image: original, occluded, 3 completions.
    let scale = 14;
    let (w, h, px) = decode_png(&out);
    assert_eq!((w, h), (5 * (W * scale + 1) + 1, 2 * (H * scale + 1) + 1));
    // The occluded cell of row 0 is mid-gray below the kept rows.
    let (x, y) = ((W * scale + 1) + 1 + 2, 1 + 5 * scale + 2);
    assert_eq!(&px[(y * w + x) * 3..(y * w + x) * 3 + 3], &[128, 128, 128]);
    // And the CLI path writes the same figure.
    let out2 = run.root.join("c2.png");
    cli(&[
        "complete",
        s(&run.dir),
        "--from-test",
        "2",
        "--keep-rows",
        "3",
        "-o",
        s(&out2),
    ])
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn complete_a_users_image_resized_or_rejected() {
    let run = make_run();
    let big = run.root.join("big.png");
    write_png(&big, 2 * W, 2 * H, false, 0, |y, x| (y * 16 + x) as u8);
    let o = CompleteOptions {
        image: Some(big),
        keep_rows: Some(4),
        samples: 2,
        out: run.root.join("u.png"),
        ..Default::default()
    };
    let rep = run::complete_run(&run.dir, &o).unwrap();
    assert!(
        rep.notes.iter().any(|n| n.contains("nearest neighbour")),
        "{:?}",
        rep.notes
    );
    // Nearest neighbour: pixel (y, x) comes from (2y, 2x).
    for y in 0..4 {
        for x in 0..W {
            assert_eq!(rep.originals[y * W + x], (2 * y * 16 + 2 * x) as u8);
            assert_eq!(rep.completions[y * W + x], rep.originals[y * W + x]);
        }
    }
    let rgb = run.root.join("rgb.png");
    write_png(&rgb, W, H, true, 40, |_, _| 7);
    let o = CompleteOptions {
        image: Some(rgb),
        out: run.root.join("v.png"),
        ..Default::default()
    };
    let e = format!("{:#}", run::complete_run(&run.dir, &o).unwrap_err());
    assert!(e.contains("colour") && e.contains("grayscale"), "{e}");
    assert!(!run.root.join("v.png").exists());
    // An RGB file with equal channels is a grayscale image.
    let gray = run.root.join("gray_rgb.png");
    write_png(&gray, W, H, true, 0, |y, x| (y * 30 + x) as u8);
    let o = CompleteOptions {
        image: Some(gray),
        samples: 1,
        out: run.root.join("g.png"),
        ..Default::default()
    };
    let rep = run::complete_run(&run.dir, &o).unwrap();
    assert_eq!(rep.originals[W + 2], 32);
}

#[test]
fn plot_draws_the_curves() {
    let run = make_run();
    let out = run.root.join("curves.png");
    // A last line cut short by a crash is skipped with a warning, not fatal.
    let mut m = std::fs::read_to_string(run.dir.join("metrics.jsonl")).unwrap();
    m.push_str("{\"step\":40,\"wall");
    std::fs::write(run.dir.join("metrics.jsonl"), m).unwrap();
    let rep = run::plot_run(&run.dir, &out).unwrap();
    assert_eq!(rep.points, 3);
    assert_eq!(rep.skipped.len(), 1);
    let (w, h, px) = decode_png(&out);
    assert_eq!((w, h), (1200, 500));
    // Something was drawn in both colours of the legend (train blue, validation red).
    let has = |c: [u8; 3]| px.chunks_exact(3).any(|p| p == c);
    assert!(has([31, 119, 180]) && has([214, 39, 40]));
    assert_eq!(cli(&["plot", s(&run.dir), "-o", s(&out)]).unwrap(), 0);
    // No metrics: a clear error.
    std::fs::remove_file(run.dir.join("metrics.jsonl")).unwrap();
    let e = format!("{:#}", run::plot_run(&run.dir, &out).unwrap_err());
    assert!(e.contains("metrics.jsonl"), "{e}");
}

#[test]
fn bad_inputs_give_clear_errors_and_write_nothing() {
    let run = make_run();
    let out = run.root.join("never.png");
    let err = |args: &[&str]| format!("{:#}", cli(args).unwrap_err());
    let d = s(&run.dir);
    let o = s(&out);
    // Flags are checked when parsed, with the rules of front::flags.
    assert!(err(&["sample", d, "-n", "0", "-o", o]).contains("from 1 to 1024, found `0`"));
    assert!(err(&["sample", d, "-n", "1025", "-o", o]).contains("1024"));
    assert!(err(&["sample", d, "--temperature", "0", "-o", o]).contains("temperature"));
    assert!(err(&["sample", d, "--temperature", "nan", "-o", o]).contains("temperature"));
    let missing = run.root.join("no/such/folder/x.png");
    assert!(err(&["sample", d, "-o", s(&missing)]).contains("does not exist"));
    assert!(err(&["sample", d, "-o", s(&run.root)]).contains("is a folder"));
    assert!(err(&["sample", s(&run.root.join("nope")), "-o", o]).contains("not a folder"));
    assert!(
        err(&["sample", "-o", o]).contains("required"),
        "a run or --onnx is required"
    );
    assert!(err(&["complete", d, "--keep-rows", "9", "-o", o]).contains("keep-rows"));
    assert!(err(&["complete", d, "--from-test", "3", "-o", o]).contains("test split"));
    assert!(err(&["complete", d, "--samples", "0", "-o", o]).contains("integer >= 1"));
    assert!(!out.exists());

    // A spec that does not match the checkpoint.
    let data = run.root.join("data");
    std::fs::write(run.dir.join("spec.yaml"), spec_text(&data, 4)).unwrap();
    assert!(err(&["sample", d, "-o", o]).contains("does not match"));
    // No checkpoint at all.
    std::fs::remove_file(run.dir.join("best.safetensors")).unwrap();
    assert!(err(&["sample", d, "-o", o]).contains("no checkpoint"));
    // Not a run folder.
    std::fs::remove_file(run.dir.join("spec.yaml")).unwrap();
    assert!(err(&["sample", d, "-o", o]).contains("spec.yaml"));
    assert!(!out.exists());
    // Nothing half-written: no temp files left behind either.
    let leftovers: Vec<_> = std::fs::read_dir(&run.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn help_texts_have_examples() {
    for cmd in ["sample", "complete", "plot"] {
        let e = match Cli::try_parse_from(["pixc", cmd, "--help"]) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("--help parsed"),
        };
        assert!(e.contains(&format!("pixc {cmd} runs/mnist")), "{cmd}: {e}");
    }
}

#[test]
fn onnx_sampling_uses_the_same_draws() {
    if let Err(e) = pixc::runtime::dylib_path() {
        eprintln!("skipped: no ONNX Runtime here ({e})");
        return;
    }
    let run = make_run();
    let text = std::fs::read_to_string(run.dir.join("spec.yaml")).unwrap();
    let (_, model) = pixc::compile_str(&text, Syntax::Yaml).unwrap();
    let w = Weights::init(&model, 5);
    let bytes = pixc::backend::onnx::export(
        &model,
        &w,
        &pixc::backend::onnx::ExportMeta::new(text.clone()),
    )
    .unwrap();
    let f = run.root.join("m.onnx");
    std::fs::write(&f, bytes).unwrap();
    let (a, b) = (run.root.join("a.npy"), run.root.join("b.npy"));
    let png = run.root.join("x.png");
    cli(&[
        "sample",
        "--onnx",
        s(&f),
        "-n",
        "3",
        "--seed",
        "4",
        "--device",
        "cpu",
        "-o",
        s(&png),
        "--npy",
        s(&a),
    ])
    .unwrap();
    cli(&[
        "sample",
        s(&run.dir),
        "-n",
        "3",
        "--seed",
        "4",
        "-o",
        s(&png),
        "--npy",
        s(&b),
    ])
    .unwrap();
    // ONNX Runtime and libtorch round differently; a flipped draw is possible in principle
    // but not for this seed.
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}
