use pixc::backend::onnx::{export, ExportMeta};
#[test]
fn probe() {
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
        let b = export(&model, &w, &ExportMeta::new(text.clone())).unwrap();
        std::fs::write(format!("/tmp/onnxprobe/{f}.onnx"), &b).unwrap();
    }
}
