#[test]
fn bench() {
    for f in [
        "diag_bilstm_7_mnist",
        "row_lstm_7_mnist",
        "pixelcnn_7_mnist",
    ] {
        let text = std::fs::read_to_string(format!("specs/{f}.yaml")).unwrap();
        let model = pixc::compile_str(&text, pixc::spec::Syntax::Yaml)
            .unwrap()
            .1;
        let w = pixc::weights::Weights::init(&model, 0);
        for (b, it) in [(16, 20), (256, 3)] {
            let r =
                pixc::runtime::bench_onnx(&model, &w, b, it, pixc::runtime::Device::Cpu).unwrap();
            println!(
                "{f} batch {b}: export {:.3}s bytes {} load {:.2}s {:.1} img/s",
                r.export_seconds, r.file_bytes, r.load_seconds, r.images_per_sec
            );
        }
    }
}
