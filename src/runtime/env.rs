//! Finding, loading and initialising ONNX Runtime once per process, and its log.
//!
//! ort is built with `load-dynamic`: nothing is linked, the library is opened at run time.
//! Search order: `ORT_DYLIB_PATH`, then the `.venv/libonnxruntime.so` link that
//! `scripts/setup.sh` makes (its path is baked in by build.rs as `PIXC_DEFAULT_ORT_DYLIB`).

use super::RuntimeError;
use ort::environment::Environment;
use ort::logging::LogLevel;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The library build.rs points at (a symlink made by scripts/setup.sh).
pub const DEFAULT_DYLIB: &str = env!("PIXC_DEFAULT_ORT_DYLIB");

static ENV: OnceLock<Result<(Environment, PathBuf), String>> = OnceLock::new();
/// Warnings and errors ONNX Runtime logged, oldest first (bounded).
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
const LOG_CAP: usize = 1000;

/// The ONNX Runtime library this process uses (or would use): `ORT_DYLIB_PATH` if set,
/// else the set-up's link; the real file, links resolved, which every function below takes
/// as `ort_dylib`. (ORT finds its provider libraries, `libonnxruntime_providers_*.so`, next
/// to the path it was opened from, and a wheel keeps them beside the real file.)
pub fn dylib_path() -> Result<PathBuf, RuntimeError> {
    let real = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
    let default = PathBuf::from(DEFAULT_DYLIB);
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.exists() {
            return Ok(real(p));
        }
        return Err(RuntimeError::LibraryNotFound(format!(
            "ORT_DYLIB_PATH is {}, which does not exist; point it at libonnxruntime.so (1.31 or newer), or unset it to use {} (made by scripts/setup.sh)",
            p.display(),
            default.display()
        )));
    }
    if default.exists() {
        return Ok(real(default));
    }
    Err(RuntimeError::LibraryNotFound(format!(
        "ORT_DYLIB_PATH is not set and {} does not exist; run scripts/setup.sh (installs onnxruntime-gpu into .venv and links that file), or set ORT_DYLIB_PATH to a libonnxruntime.so (1.31 or newer)",
        default.display()
    )))
}

/// The process-wide ONNX Runtime environment, created on first use; returns it and the
/// library it came from (`dylib_path`).
pub fn environment() -> Result<(Environment, PathBuf), RuntimeError> {
    ENV.get_or_init(|| {
        let path = dylib_path().map_err(|e| e.to_string())?;
        let env = ort::init_from(&path)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?
            .with_name("pixc")
            .with_telemetry(false)
            .with_logger(Arc::new(log_message))
            .build()
            .map_err(|e| {
                format!(
                    "cannot initialise ONNX Runtime from {}: {e}",
                    path.display()
                )
            })?;
        // A custom logger starts at verbose; only warnings and worse are worth the calls.
        env.set_log_level(LogLevel::Warning);
        Ok((env, path))
    })
    .clone()
    .map_err(RuntimeError::Init)
}

/// Keeps warnings and errors for `take_log`; prints errors (and, with PIXC_ORT_LOG set,
/// warnings) to stderr. ORT's own stderr logger is replaced so benign warnings (e.g. CPU
/// placement of shape ops under CUDA) do not clutter every command.
fn log_message(level: LogLevel, category: &str, _id: &str, location: &str, message: &str) {
    if level < LogLevel::Warning {
        return;
    }
    let line = format!("onnxruntime {level:?} [{category}] {message} ({location})");
    if level >= LogLevel::Error || std::env::var_os("PIXC_ORT_LOG").is_some() {
        eprintln!("{line}");
    }
    if let Ok(mut log) = LOG.lock() {
        if log.len() < LOG_CAP {
            log.push(line);
        }
    }
}

/// Returns and clears the warnings and errors ONNX Runtime has logged so far.
pub fn take_log() -> Vec<String> {
    LOG.lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default()
}

/// Folders holding the CUDA 13 and cuDNN 9 libraries of an installed torch / nvidia wheel
/// set: `PIXC_CUDA_LIB_DIRS` (colon-separated) first, then `site-packages/nvidia/*/lib`
/// next to the ONNX Runtime wheel the library came from.
pub fn cuda_lib_dirs(ort_dylib: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PIXC_CUDA_LIB_DIRS")
        // `a:b:` has an empty last entry, which is no folder.
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    // .../site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1 -> .../site-packages
    if let Some(site) = ort_dylib
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
    {
        if let Ok(rd) = std::fs::read_dir(site.join("nvidia")) {
            let mut found: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path().join("lib"))
                .filter(|p| p.is_dir())
                .collect();
            found.sort();
            dirs.extend(found);
        }
    }
    dirs
}

/// Best effort: loads the CUDA and cuDNN libraries the CUDA provider needs from the wheel
/// folders, so it works without LD_LIBRARY_PATH (which cannot change after start). Libraries
/// that are missing are skipped: then the dynamic loader's own search decides. Returns the
/// libraries loaded.
pub fn preload_cuda(ort_dylib: &Path) -> Vec<PathBuf> {
    static DONE: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DONE.get_or_init(|| {
        let dirs = cuda_lib_dirs(ort_dylib);
        let mut loaded = Vec::new();
        // ort's lists are in dependency order (cudart before cublas, cudnn before its parts).
        for name in ort::ep::cuda::CUDA_DYLIBS
            .iter()
            .chain(ort::ep::cuda::CUDNN_DYLIBS)
        {
            if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.exists()) {
                if ort::util::preload_dylib(&p).is_ok() {
                    loaded.push(p);
                }
            }
        }
        loaded
    })
    .clone()
}

/// The providers that ship as a library of their own, `libonnxruntime_providers_<name>.so`
/// beside ONNX Runtime's (the CPU provider, and a few others, are built into the main one).
const SHARED_PROVIDERS: &[&str] = &[
    "cuda", "tensorrt", "rocm", "migraphx", "openvino", "dnnl", "vitisai",
];

/// Where ONNX Runtime looks for the library of `provider` (its own name, e.g.
/// `CUDAExecutionProvider`): beside the library it was loaded from (the real file); `None`
/// for a provider built into the main library.
pub fn provider_library(ort_dylib: &Path, provider: &str) -> Option<PathBuf> {
    let short = provider
        .strip_suffix("ExecutionProvider")?
        .to_ascii_lowercase();
    SHARED_PROVIDERS
        .contains(&short.as_str())
        .then(|| ort_dylib.with_file_name(library_file(&short)))
}

fn library_file(short: &str) -> String {
    format!("libonnxruntime_providers_{short}.so")
}

/// Where ONNX Runtime looks for its CUDA provider. Only onnxruntime-gpu installs it there.
pub fn cuda_provider_library(ort_dylib: &Path) -> PathBuf {
    ort_dylib.with_file_name(library_file("cuda"))
}

/// Whether an NVIDIA driver is present at all: without one, `Device::Auto` goes straight to
/// the CPU instead of loading gigabytes of CUDA libraries only to fail.
pub fn nvidia_driver_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidiactl").exists()
}

/// ONNX Runtime's version (from its build string, e.g. `1.31.1`) and the execution
/// providers the loaded library was built with.
pub fn version_and_providers() -> Result<(String, Vec<String>), RuntimeError> {
    let (_, path) = environment()?;
    let info = ort::info();
    let version = info
        .split(|c: char| c == ',' || c.is_whitespace())
        .find_map(|t| t.strip_prefix("git-branch=rel-"))
        .map(str::to_string)
        .or_else(|| {
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .and_then(|f| f.split_once(".so.").map(|(_, v)| v.to_string()))
        })
        .unwrap_or_else(|| info.to_string());
    Ok((version, available_providers()?))
}

/// `OrtApi::GetAvailableProviders` (ort wraps it only privately).
fn available_providers() -> Result<Vec<String>, RuntimeError> {
    let api = ort::api();
    let mut list: *mut *mut std::ffi::c_char = std::ptr::null_mut();
    let mut n: std::ffi::c_int = 0;
    // SAFETY: the API table comes from the loaded library; on success ORT owns `list` until
    // ReleaseAvailableProviders, and each entry is a NUL-terminated string.
    unsafe {
        let status = (api.GetAvailableProviders)(&mut list, &mut n);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
            return Err(RuntimeError::Ort("GetAvailableProviders failed".into()));
        }
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n.max(0) as usize {
            let p = *list.add(i);
            if !p.is_null() {
                out.push(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned());
            }
        }
        let status = (api.ReleaseAvailableProviders)(list, n);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::provider_library;
    use std::path::Path;

    #[test]
    fn a_provider_library_lies_beside_onnx_runtime_unless_built_in() {
        let ort = Path::new("/x/capi/libonnxruntime.so.1.31.1");
        let lib = |p| provider_library(ort, p).map(|l| l.display().to_string());
        assert_eq!(lib("CPUExecutionProvider"), None);
        assert_eq!(lib("XnnpackExecutionProvider"), None);
        assert_eq!(
            lib("CUDAExecutionProvider").as_deref(),
            Some("/x/capi/libonnxruntime_providers_cuda.so")
        );
        assert_eq!(
            lib("TensorrtExecutionProvider").as_deref(),
            Some("/x/capi/libonnxruntime_providers_tensorrt.so")
        );
        assert_eq!(lib("not a provider name"), None);
    }
}
