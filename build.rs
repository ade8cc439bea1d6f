//! Build script: gives the pixc binaries an rpath to libtorch (torch-sys does not) and keeps
//! libtorch_cuda linked even though no symbol of it is referenced (otherwise CUDA is never seen).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // torch-sys (`links = "tch"`) exports the folder holding libtorch*.so.
    let mut version = String::from("unknown");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-env=PIXC_LIBTORCH_LIB={lib}");
        // <torch>/lib -> <torch>/version.py holds `__version__ = '2.11.0+cu130'`.
        if let Ok(v) = std::fs::read_to_string(Path::new(&lib).join("../version.py")) {
            if let Some(line) = v.lines().find(|l| l.starts_with("__version__")) {
                version = line.split('\'').nth(1).unwrap_or("unknown").to_string();
            }
        }
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        let cuda = Path::new(&lib).join("libtorch_cuda.so");
        if cuda.exists() {
            // The linker would drop libtorch_cuda as unneeded: CUDA would then be "unavailable".
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-ltorch");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
    println!("cargo:rustc-env=PIXC_LIBTORCH_VERSION={version}");
    if std::env::var("DEP_TCH_LIBTORCH_LIB").is_err() {
        println!("cargo:rustc-env=PIXC_LIBTORCH_LIB=unknown");
    }
    // Where the set-up's ONNX Runtime library lives; the runtime also honours ORT_DYLIB_PATH.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let ort = Path::new(&manifest).join(".venv").join("libonnxruntime.so");
    println!("cargo:rustc-env=PIXC_DEFAULT_ORT_DYLIB={}", ort.display());
}
