//! The deploy commands of the application layer (`app::deploy`) run: export to a file,
//! evaluate it, read its metadata, the inference benchmark, doctor lines.

use pixc::app::deploy as onnx_cmds;
use pixc::{runtime, weights};

use pixc::front::Syntax;
use rand::{Rng, SeedableRng};
use runtime::{Device, Provider};

const SPEC: &str = "model: tiny_row\ninput: {channels: 1, height: 6, width: 5, levels: 2}\nlayers:\n  - conv: {out: 4, kernel: 3, mask: A}\n  - row_lstm: {hidden: 2, kernel: 3}\n  - relu\n  - head: bernoulli\n";

#[test]
fn export_eval_info_bench_doctor() {
    let (_, model) = pixc::compile_str(SPEC, Syntax::Yaml).unwrap();
    let w = weights::Weights::init(&model, 0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let rep = onnx_cmds::export(&model, &w, SPEC, &out).unwrap();
    assert_eq!(rep.bytes as u64, std::fs::metadata(&out).unwrap().len());
    assert!(rep.to_string().contains("m.onnx"));

    let (info, provider) = onnx_cmds::onnx_info(&out, Device::Cpu).unwrap();
    assert_eq!(provider, Provider::Cpu);
    assert_eq!(
        (info.channels, info.height, info.width, info.levels),
        (1, 6, 5, 2)
    );
    assert_eq!(info.spec_text.as_deref(), Some(SPEC));

    // eval_onnx over 7 images in batches of 3 equals one direct run.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let n = 7;
    let imgs: Vec<u8> = (0..n * 30).map(|_| rng.random_range(0..2u8)).collect();
    let ev = onnx_cmds::eval_onnx(&out, &imgs, n, None, Device::Cpu, 3).unwrap();
    let (mut m, _) = runtime::OnnxModel::load(&out, Device::Cpu).unwrap();
    let direct = m.nll(&runtime::images_to_f32(&imgs), n, None).unwrap();
    let mean = direct.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    assert!(
        (ev.nll_mean - mean).abs() < 1e-4,
        "{} vs {mean}",
        ev.nll_mean
    );
    assert!((ev.bits_per_dim - mean / (30.0 * std::f64::consts::LN_2)).abs() < 1e-6);
    assert_eq!(
        m.nll_batched(&runtime::images_to_f32(&imgs), n, None, 3)
            .unwrap()
            .len(),
        n
    );
    // Values outside the levels are refused with a reason, not an ORT index error.
    let mut bad = imgs.clone();
    bad[4] = 2;
    let e = onnx_cmds::eval_onnx(&out, &bad, n, None, Device::Cpu, 3).unwrap_err();
    assert!(e.to_string().contains("value 2"), "{e}");
    // A truncated file: ORT's parse error, and which file it was.
    let cut = dir.path().join("cut.onnx");
    let bytes = std::fs::read(&out).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = onnx_cmds::onnx_info(&cut, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot load") && e.contains("cut.onnx"), "{e}");

    // Auto runs on CUDA where a driver is, else the CPU; Cuda without one explains itself.
    let t = std::time::Instant::now();
    let (_, auto) = onnx_cmds::onnx_info(&out, Device::Auto).unwrap();
    let cuda = onnx_cmds::onnx_info(&out, Device::Cuda);
    eprintln!(
        "auto: {auto}, cuda: {:?} ({:.2} s)",
        cuda.as_ref().map(|c| c.1).map_err(|e| e.to_string()),
        t.elapsed().as_secs_f64()
    );
    if runtime::nvidia_driver_present() {
        assert_eq!(auto, Provider::Cuda);
        assert_eq!(cuda.unwrap().1, Provider::Cuda);
    } else {
        assert_eq!(auto, Provider::Cpu);
        let e = cuda.unwrap_err().to_string();
        assert!(e.contains("CUDA") && e.contains("--device cpu"), "{e}");
    }

    // The inference benchmark: export figures, then the same NLL from all three paths.
    let spec_path = dir.path().join("tiny_row.yaml");
    std::fs::write(&spec_path, SPEC).unwrap();
    let b = onnx_cmds::bench_inference(&spec_path, &[2, 3], (0.05, 2), Device::Cpu, false).unwrap();
    assert!(b["export_seconds"].as_f64().unwrap() > 0.0);
    assert!(b["onnx_bytes"].as_u64().unwrap() > 0);
    let rows = b["batches"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        for k in [
            "libtorch_images_per_second",
            "libtorch_plain_images_per_second",
            "onnxruntime_images_per_second",
        ] {
            assert!(r[k].as_f64().unwrap() > 0.0, "{k}: {r}");
        }
        // Two rounds, every path measured in each; a ratio's median lies in its range.
        assert_eq!(r["rounds"], 2, "{r}");
        for k in ["libtorch", "libtorch_plain", "onnxruntime", "sampler"] {
            let v = r["images_per_second_by_round"][k].as_array().unwrap();
            assert_eq!(v.len(), 2, "{k}: {r}");
            assert!(v.iter().all(|x| x.as_f64().unwrap() > 0.0), "{k}: {r}");
        }
        for k in ["onnxruntime_vs_libtorch", "sampler_vs_libtorch"] {
            let (m, lim) = (r[k].as_f64().unwrap(), &r[format!("{k}_range")]);
            let (lo, hi) = (lim[0].as_f64().unwrap(), lim[1].as_f64().unwrap());
            assert!(0.0 < lo && lo <= m && m <= hi, "{k}: {r}");
        }
        let nll = &r["nll_nats_per_image"];
        let ort = nll["onnxruntime"].as_f64().unwrap();
        for k in ["libtorch", "libtorch_plain"] {
            assert!((nll[k].as_f64().unwrap() - ort).abs() < 1e-3, "{r}");
        }
    }
    let export_only =
        onnx_cmds::bench_inference(&spec_path, &[2], (0.05, 1), Device::Cpu, true).unwrap();
    assert!(export_only.get("batches").is_none());

    let doc = pixc::app::doctor::doctor();
    assert!(
        doc.onnxruntime
            .as_deref()
            .is_some_and(|v| v.starts_with("1.")),
        "{doc:?}"
    );
    assert!(
        doc.onnxruntime_providers
            .iter()
            .any(|p| p == "CPUExecutionProvider"),
        "{doc:?}"
    );
    // One status per provider, in the same order; the CPU provider is built in and pixc's.
    let names: Vec<&str> = doc
        .onnxruntime_provider_status
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, doc.onnxruntime_providers, "{doc:?}");
    let cpu = doc
        .onnxruntime_provider_status
        .iter()
        .find(|p| p.name == "CPUExecutionProvider");
    assert!(
        cpu.is_some_and(|p| p.used_by_pixc && p.library_installed.is_none()),
        "{doc:?}"
    );
}

/// A wrong ORT_DYLIB_PATH gives an error naming it and the fix. Run in a child process (this
/// test binary again), because the library is loaded once per process.
#[test]
fn missing_library_is_explained() {
    if std::env::var_os("PIXC_ONNX_CLI_CHILD").is_some() {
        let (_, model) = pixc::compile_str(SPEC, Syntax::Yaml).unwrap();
        let bytes = pixc::backend::onnx::export(
            &model,
            &weights::Weights::init(&model, 0),
            &Default::default(),
        )
        .unwrap();
        let e = runtime::OnnxModel::from_bytes(&bytes, Device::Cpu, "x")
            .err()
            .expect("must fail");
        let msg = e.to_string();
        assert!(
            msg.contains("ORT_DYLIB_PATH is /nonexistent/libonnxruntime.so"),
            "{msg}"
        );
        assert!(msg.contains("scripts/setup.sh"), "{msg}");
        let (v, p) = runtime::version_and_providers();
        assert!(v.starts_with("unavailable") && p.is_empty());
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "missing_library_is_explained", "--nocapture"])
        .env("PIXC_ONNX_CLI_CHILD", "1")
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pixc eval --onnx --stride K` scores every K-th image of the split, as the libtorch
/// `pixc eval --stride K` does: images 0, 500, ..., 9500 of MNIST's test split.
#[test]
fn onnx_eval_takes_every_kth_image() {
    let spec = "model: tiny_mnist\ninput: {channels: 1, height: 28, width: 28, levels: 2}\nlayers:\n  - conv: {out: 4, kernel: 3, mask: A}\n  - relu\n  - head: bernoulli\n";
    let (_, model) = pixc::compile_str(spec, Syntax::Yaml).unwrap();
    let w = weights::Weights::init(&model, 0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    onnx_cmds::export(&model, &w, spec, &out).unwrap();
    let strided = onnx_cmds::eval_onnx_data(&out, None, "test", 500, None, Device::Cpu).unwrap();
    assert_eq!(strided.report.n, 20);
    assert!(strided.data.contains("every 500th"), "{}", strided.data);

    let ds =
        pixc::data::load(&pixc::data::DataSource::MnistBinarized, &Default::default()).unwrap();
    let picked: Vec<u8> = (0..20)
        .flat_map(|k| ds.test.image(k * 500, 784).unwrap().to_vec())
        .collect();
    let by_hand = onnx_cmds::eval_onnx(&out, &picked, 20, None, Device::Cpu, 256).unwrap();
    assert!(
        (strided.report.nll_mean - by_hand.nll_mean).abs() < 1e-6,
        "{} vs {}",
        strided.report.nll_mean,
        by_hand.nll_mean
    );
    // With --limit 3: the first 3 of those.
    let three = onnx_cmds::eval_onnx_data(&out, None, "test", 500, Some(3), Device::Cpu).unwrap();
    let by_hand =
        onnx_cmds::eval_onnx(&out, &picked[..3 * 784], 3, None, Device::Cpu, 256).unwrap();
    assert_eq!(three.report.n, 3);
    assert!((three.report.nll_mean - by_hand.nll_mean).abs() < 1e-6);
}
