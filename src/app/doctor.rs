//! `pixc doctor`: what this machine offers pixc (libtorch, CUDA, ONNX Runtime, data sets).

use crate::backend::torch;
use crate::runtime::{self, Provider};

/// The facts `pixc doctor` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DoctorReport {
    pub pixc: &'static str,
    pub libtorch: &'static str,
    /// The folder libtorch was loaded from (the build's folder when it cannot be read).
    pub libtorch_path: String,
    pub torch_threads: usize,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cuda_device_name: Option<String>,
    pub onnxruntime: Option<String>,
    pub onnxruntime_providers: Vec<String>,
    /// Whether the CUDA provider's library is beside ONNX Runtime's (the providers list
    /// names CUDA in any build of the library, installed or not).
    pub onnxruntime_cuda_provider_installed: Option<bool>,
    /// Each of `onnxruntime_providers`, with whether pixc can use it and its library is there.
    pub onnxruntime_provider_status: Vec<ProviderStatus>,
    pub onnxruntime_error: Option<String>,
    pub datasets: Vec<DatasetFound>,
}

/// One execution provider the ONNX Runtime library was built with.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProviderStatus {
    pub name: String,
    /// Whether pixc runs on it (`--device cpu` or `cuda`); ONNX Runtime may offer more.
    pub used_by_pixc: bool,
    /// For a provider that ships as a library of its own: whether that file is installed
    /// beside ONNX Runtime's (`None`: built into ONNX Runtime's own library).
    pub library_installed: Option<bool>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DatasetFound {
    pub name: String,
    pub path: Option<String>,
    /// How to make a missing data set available.
    pub fix: Option<String>,
}

/// What makes data set `name` available, for `doctor`'s "missing" lines.
fn fix_for(name: &str) -> String {
    if name.starts_with("fashion") {
        "apt-get install dataset-fashion-mnist, or set PIXC_FASHION_DIR to a folder of the 4 idx files".into()
    } else if name.starts_with("mnist") {
        "restore the vendored copy (git checkout -- data/mnist), or set PIXC_MNIST_DIR to a folder of the 4 idx files".into()
    } else {
        format!("set {} to the folder of the binary version's data_batch_*.bin and test_batch.bin (or train with --data cifar10:DIR)", crate::data::cifar_env_dir())
    }
}

pub fn doctor() -> DoctorReport {
    let cuda = tch::Cuda::is_available();
    let cuda_devices = if cuda { tch::Cuda::device_count() } else { 0 };
    let (onnxruntime, onnxruntime_providers, onnxruntime_error, dylib) = match runtime::dylib_path()
    {
        Ok(path) => {
            let (v, p) = runtime::version_and_providers();
            (Some(v), p, None, Some(path))
        }
        Err(e) => (None, vec![], Some(e.to_string()), None),
    };
    // A CPU-only onnxruntime still lists the CUDA provider among those it was built with,
    // so whether a provider's library is there is a question for the file system.
    let installed = |provider: &str| {
        let lib = runtime::provider_library(dylib.as_deref()?, provider)?;
        Some(lib.exists())
    };
    let pixc_uses = [Provider::Cpu, Provider::Cuda].map(Provider::ort_name);
    let onnxruntime_provider_status = onnxruntime_providers
        .iter()
        .map(|p| ProviderStatus {
            name: p.clone(),
            used_by_pixc: pixc_uses.contains(&p.as_str()),
            library_installed: installed(p),
        })
        .collect();
    let datasets = crate::data::find_datasets(&Default::default())
        .into_iter()
        .map(|(n, p)| DatasetFound {
            fix: p.is_none().then(|| fix_for(&n)),
            name: n,
            path: p.map(|p| p.display().to_string()),
        })
        .collect();
    DoctorReport {
        pixc: env!("CARGO_PKG_VERSION"),
        libtorch: env!("PIXC_LIBTORCH_VERSION"),
        libtorch_path: loaded_libtorch_dir().unwrap_or_else(|| env!("PIXC_LIBTORCH_LIB").into()),
        torch_threads: torch::threads(),
        cuda_available: cuda,
        cuda_devices,
        cuda_device_name: if cuda { gpu_name() } else { None },
        onnxruntime,
        onnxruntime_providers,
        onnxruntime_cuda_provider_installed: installed(Provider::Cuda.ort_name()),
        onnxruntime_provider_status,
        onnxruntime_error,
        datasets,
    }
}

/// The folder of the `libtorch_cpu.so` this process mapped (`/proc/self/maps`): the one
/// the loader found, which differs from the build's when the binary runs elsewhere with
/// LD_LIBRARY_PATH.
fn loaded_libtorch_dir() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let path = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))?;
    Some(std::path::Path::new(path).parent()?.display().to_string())
}

/// The GPU's marketing name via nvidia-smi, when present (libtorch's C API does not expose it).
fn gpu_name() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}
