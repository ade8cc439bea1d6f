//! Running exported models with ONNX Runtime (via `ort`, library loaded at run time).
//!
//! `OnnxModel::load` opens a pixc ONNX file on a `Device` and reports the execution provider
//! that really runs it: `Cuda` and `Auto` try the CUDA provider (TF32 off, so results match
//! libtorch's float32) with registration errors surfaced instead of silently ignored; `Auto`
//! then falls back to the CPU, `Cuda` fails with the reason. The CPU provider always works.
//! The image geometry and levels come from the file's own metadata (see
//! `backend::onnx::meta_keys`), so the spec is not needed at inference time.

mod env;

pub use env::{dylib_path, nvidia_driver_present, provider_library, take_log, DEFAULT_DYLIB};

use crate::backend::onnx::{meta_keys, LABEL_INPUT, LOW_RES_INPUT};
use ort::ep::{ExecutionProvider, CPU, CUDA};
use ort::logging::LogLevel;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{OutputSelector, RunOptions, Session};
use ort::value::TensorRef;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found: {0}")]
    LibraryNotFound(String),
    #[error("{0}")]
    Init(String),
    #[error("the CUDA execution provider is unavailable: {0}")]
    Cuda(String),
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    #[error("{0} is not a pixc ONNX model: {1}")]
    NotPixc(String, String),
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    #[error("bad input: {0}")]
    Input(String),
    #[error(transparent)]
    Export(#[from] crate::backend::onnx::ExportError),
}

fn ort_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Ort(e.to_string())
}

pub use crate::device::Device;

/// The execution provider a session actually runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
}

impl Provider {
    /// ONNX Runtime's own name, e.g. `CUDAExecutionProvider`.
    pub fn ort_name(self) -> &'static str {
        match self {
            Provider::Cpu => CPU::NAME,
            Provider::Cuda => CUDA::NAME,
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.ort_name())
    }
}

/// What a pixc ONNX file says about itself (its `metadata_props`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub model_name: String,
    pub pixc_version: String,
    pub levels: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `bernoulli` or `softmax`.
    pub head: String,
    pub spec_text: Option<String>,
    /// A class-conditional model's class count (it then takes the input `label`); 0 if not.
    pub classes: usize,
    /// A low-res conditional model's subsampling factor (`pixc.low_res`); 0 if none. Its
    /// graph takes the given pixels as the input `low_res`, which this runtime fills from
    /// the same pixels of the images it is given, and leaves them out of `nll`.
    pub low_res: usize,
}

impl ModelInfo {
    /// Sub-pixels per image.
    pub fn dims(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// Sub-pixels per image that `nll` scores (all but a low-res model's given ones).
    pub fn scored_dims(&self) -> usize {
        match self.low_res {
            0 => self.dims(),
            f => self.dims() - self.channels * self.height.div_ceil(f) * self.width.div_ceil(f),
        }
    }
    /// Values per image of the `low_res` input (`C x H/f x W/f`); 0 without one.
    pub fn low_res_dims(&self) -> usize {
        match self.low_res {
            0 => 0,
            f => self.channels * (self.height / f) * (self.width / f),
        }
    }
    /// Logit channels per image: C (Bernoulli) or C * levels (softmax).
    pub fn logit_channels(&self) -> usize {
        if self.head == "softmax" {
            self.channels * self.levels
        } else {
            self.channels
        }
    }
}

/// Both outputs of one run.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// `n x logit_channels x H x W`, row-major.
    pub logits: Vec<f32>,
    /// Per-image NLL in nats.
    pub nll: Vec<f32>,
}

/// On the CPU, the most images one session runs at once; a larger slice of a batch runs in
/// pieces of this size, one after another. The unrolled recurrences make a pass over every
/// intermediate tensor per node, so a piece whose tensors stay in the core's cache runs
/// faster than a large batch that streams them from memory, and a smaller one pays the
/// per-node overhead on fewer images. The MNIST Diagonal BiLSTM at batch 256 on 2 threads,
/// since its input conv is folded into the column GEMMs (ORT 1.31, `pixc bench --inference
/// --batches 256 --rounds 3`, alternated, three runs each): 414-485 images/s in pieces of
/// 16, 522-536 in pieces of 32, 294-513 whole; the Row LSTM 871-927 / 887-922, the
/// PixelCNN the same within noise. `PIXC_ORT_CHUNK` overrides it (0: no limit).
pub const CPU_RUN_CHUNK: usize = 32;

/// A loaded pixc ONNX model.
pub struct OnnxModel {
    session: Session,
    /// On the CPU with several threads: more sessions of the same model, one intra-op
    /// thread each (as `session` then has), and a batch is split over all of them, run at
    /// once (see `from_bytes`). Empty otherwise.
    replicas: Vec<Session>,
    /// Most images one session runs at once (0: no limit); see `CPU_RUN_CHUNK`.
    run_chunk: usize,
    info: ModelInfo,
    provider: Provider,
    cuda_error: Option<String>,
}

impl OnnxModel {
    /// Loads a file; returns the model and the provider it runs on.
    pub fn load(path: &Path, device: Device) -> Result<(OnnxModel, Provider), RuntimeError> {
        let bytes =
            std::fs::read(path).map_err(|e| RuntimeError::Io(path.display().to_string(), e))?;
        OnnxModel::from_bytes(&bytes, device, &path.display().to_string())
    }

    /// Loads serialized ONNX bytes (`name` is used in errors only).
    /// ONNX Runtime's intra-op pool gets `set_threads`'s count (default: every core).
    pub fn from_bytes(
        bytes: &[u8],
        device: Device,
        name: &str,
    ) -> Result<(OnnxModel, Provider), RuntimeError> {
        let (env, dylib) = env::environment()?;
        let threads = threads();
        let builder_with =
            |threads: usize| -> Result<ort::session::builder::SessionBuilder, RuntimeError> {
                Session::builder(&env)
                    .map_err(ort_err)?
                    .with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(ort_err)?
                    .with_intra_threads(threads)
                    .map_err(ort_err)?
                    // Spinning workers win a little on an idle machine but lose badly when the
                    // cores are shared (measured about 2x slower for the unrolled recurrences,
                    // which are thousands of small nodes), so workers sleep between nodes.
                    .with_config_entry("session.intra_op.allow_spinning", "0")
                    .map_err(ort_err)?
                    .with_log_level(LogLevel::Warning)
                    .map_err(ort_err)
            };
        let builder = || builder_with(threads);
        let try_cuda = match device {
            Device::Cpu => false,
            Device::Cuda => true,
            Device::Auto => env::nvidia_driver_present(),
        };
        let mut cuda_error = None;
        if try_cuda {
            env::preload_cuda(&dylib);
            let ep = CUDA::default().with_tf32(false).build().error_on_failure();
            let attempt = builder().and_then(|b| {
                b.with_execution_providers([ep])
                    .map_err(|e| RuntimeError::Cuda(e.to_string()))?
                    .commit_from_memory(bytes)
                    .map_err(|e| RuntimeError::Cuda(e.to_string()))
            });
            match attempt {
                Ok(s) => return OnnxModel::wrap(s, Provider::Cuda, name, None),
                Err(e) if device == Device::Cuda => {
                    return Err(match e {
                        RuntimeError::Cuda(m) => RuntimeError::Cuda(explain_cuda_failure(
                            &m,
                            &dylib,
                            env::nvidia_driver_present(),
                        )),
                        other => other,
                    })
                }
                Err(e) => cuda_error = Some(e),
            }
        }
        // On the CPU, one single-threaded session per thread, each running a slice of the
        // batch: the unrolled recurrences are thousands of small nodes, and one session's
        // intra-op threads meet at every node, which costs more than the node at small
        // batches (as libtorch's replicas in training). `PIXC_ORT_DATA_PARALLEL=0` keeps
        // one session with every thread.
        let replicate =
            threads > 1 && std::env::var("PIXC_ORT_DATA_PARALLEL").map_or(true, |v| v != "0");
        let per_session = if replicate { 1 } else { threads };
        let sessions = (0..if replicate { threads } else { 1 })
            .map(|_| {
                builder_with(per_session)?
                    .commit_from_memory(bytes)
                    .map_err(|e| {
                        let tried = match &cuda_error {
                            Some(c) => format!(" (CUDA was tried first: {c})"),
                            None => String::new(),
                        };
                        RuntimeError::Ort(format!("cannot load {name}: {e}{tried}"))
                    })
            })
            .collect::<Result<Vec<Session>, RuntimeError>>()?;
        let mut sessions = sessions.into_iter();
        let session = sessions.next().expect("at least one session");
        let (mut m, p) = OnnxModel::wrap(
            session,
            Provider::Cpu,
            name,
            cuda_error.map(|e| e.to_string()),
        )?;
        m.replicas = sessions.collect();
        m.run_chunk = std::env::var("PIXC_ORT_CHUNK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CPU_RUN_CHUNK);
        Ok((m, p))
    }

    fn wrap(
        session: Session,
        provider: Provider,
        name: &str,
        cuda_error: Option<String>,
    ) -> Result<(OnnxModel, Provider), RuntimeError> {
        let info =
            read_info(&session).map_err(|why| RuntimeError::NotPixc(name.to_string(), why))?;
        Ok((
            OnnxModel {
                session,
                replicas: Vec::new(),
                run_chunk: 0,
                info,
                provider,
                cuda_error,
            },
            provider,
        ))
    }

    /// Sets the most images one session runs at once (0: no limit); the default is
    /// `CPU_RUN_CHUNK` on the CPU, or `PIXC_ORT_CHUNK`.
    pub fn set_run_chunk(&mut self, images: usize) {
        self.run_chunk = images;
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// With `Device::Auto`, why CUDA was not used when it was tried (for a `--verbose` note).
    pub fn cuda_fallback_reason(&self) -> Option<&str> {
        self.cuda_error.as_deref()
    }

    /// The `label` input of a conditional model (`None` for an unconditional one), checked
    /// against the model: `n` labels, each below its class count.
    fn label_input(
        &self,
        labels: Option<&[u16]>,
        n: usize,
    ) -> Result<Option<Vec<i64>>, RuntimeError> {
        let k = self.info.classes;
        match (k, labels) {
            (0, None) => Ok(None),
            (0, Some(_)) => Err(RuntimeError::Input(
                "labels given, but the model is not class-conditional".into(),
            )),
            (k, None) => Err(RuntimeError::Input(format!(
                "the model is class-conditional ({k} classes): give a label per image"
            ))),
            (k, Some(l)) => {
                if l.len() != n {
                    return Err(RuntimeError::Input(format!(
                        "{} labels given for {n} images",
                        l.len()
                    )));
                }
                if let Some(&y) = l.iter().find(|&&y| y as usize >= k) {
                    return Err(RuntimeError::Input(format!(
                        "label {y} is out of range: the model has {k} classes"
                    )));
                }
                Ok(Some(l.iter().map(|&y| i64::from(y)).collect()))
            }
        }
    }

    fn check_input(&self, images: &[f32], n: usize) -> Result<[usize; 4], RuntimeError> {
        let i = &self.info;
        let shape = [n, i.channels, i.height, i.width];
        if images.len() != n * i.dims() {
            return Err(RuntimeError::Input(format!(
                "{} values given for {n} images of {} x {} x {} ({} expected)",
                images.len(),
                i.channels,
                i.height,
                i.width,
                n * i.dims()
            )));
        }
        Ok(shape)
    }

    /// Runs `n` images (raw values `0..levels-1`, `n x C x H x W`) in one batch; returns
    /// logits and NLL. `labels`: a class-conditional model's label of each image.
    pub fn run(
        &mut self,
        images: &[f32],
        n: usize,
        labels: Option<&[u16]>,
    ) -> Result<Outputs, RuntimeError> {
        self.run_given(images, n, labels, None)
    }

    /// `run` with a low-res model's `low_res` input given apart (`n x C x H/f x W/f` raw
    /// values; `None`: the images' own pixels at rows and columns divisible by f). The
    /// graph reads the given pixels from it, whatever `images` holds there.
    pub fn run_given(
        &mut self,
        images: &[f32],
        n: usize,
        labels: Option<&[u16]>,
        low_res: Option<&[f32]>,
    ) -> Result<Outputs, RuntimeError> {
        if let Some(l) = low_res {
            let f = self.info.low_res;
            if f == 0 {
                return Err(RuntimeError::Input(
                    "a low-res input given, but the model has none".into(),
                ));
            }
            let want = n * self.info.low_res_dims();
            if l.len() != want {
                return Err(RuntimeError::Input(format!(
                    "{} low-res values given for {n} images, expected {want}",
                    l.len()
                )));
            }
        }
        let mut out = self.run_split(images, n, labels, low_res, &["logits", "nll"])?;
        let nll = out.pop().expect("two outputs");
        let logits = out.pop().expect("two outputs");
        Ok(Outputs { logits, nll })
    }

    /// `run` on an `N x C x H x W` array (any memory layout); returns logits
    /// (`N x logit_channels x H x W`) and the per-image NLL.
    pub fn run_array(
        &mut self,
        images: ndarray::ArrayView4<'_, f32>,
        labels: Option<&[u16]>,
    ) -> Result<(ndarray::Array4<f32>, ndarray::Array1<f32>), RuntimeError> {
        let n = images.shape()[0];
        let contiguous = images.as_standard_layout();
        let flat = contiguous
            .as_slice()
            .expect("standard layout is contiguous");
        let out = self.run(flat, n, labels)?;
        let i = &self.info;
        let logits =
            ndarray::Array4::from_shape_vec((n, i.logit_channels(), i.height, i.width), out.logits)
                .map_err(|e| RuntimeError::Ort(format!("unexpected logits shape: {e}")))?;
        Ok((logits, ndarray::Array1::from(out.nll)))
    }

    /// The logits of `n` images, `n x logit_channels x H x W`.
    pub fn logits(
        &mut self,
        images: &[f32],
        n: usize,
        labels: Option<&[u16]>,
    ) -> Result<Vec<f32>, RuntimeError> {
        self.run_one(images, n, labels, "logits")
    }

    /// Per-image NLL in nats of `n` images (one batch). Only `nll` is copied out.
    pub fn nll(
        &mut self,
        images: &[f32],
        n: usize,
        labels: Option<&[u16]>,
    ) -> Result<Vec<f32>, RuntimeError> {
        self.run_one(images, n, labels, "nll")
    }

    /// Per-image NLL of `n` images, run `batch` at a time (the last batch may be smaller).
    pub fn nll_batched(
        &mut self,
        images: &[f32],
        n: usize,
        labels: Option<&[u16]>,
        batch: usize,
    ) -> Result<Vec<f32>, RuntimeError> {
        self.check_input(images, n)?;
        self.label_input(labels, n)?;
        let d = self.info.dims();
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(batch.max(1)) {
            let m = batch.max(1).min(n - start);
            let y = labels.map(|l| &l[start..start + m]);
            out.extend(self.nll(&images[start * d..(start + m) * d], m, y)?);
        }
        Ok(out)
    }

    fn run_one(
        &mut self,
        images: &[f32],
        n: usize,
        labels: Option<&[u16]>,
        output: &str,
    ) -> Result<Vec<f32>, RuntimeError> {
        Ok(self
            .run_split(images, n, labels, None, &[output])?
            .pop()
            .expect("one output"))
    }

    /// The named outputs of `n` images, the batch split in order over the session and its
    /// replicas, run at once; each output's slices are joined back in batch order (every
    /// output is batch-major).
    fn run_split(
        &mut self,
        images: &[f32],
        n: usize,
        labels: Option<&[u16]>,
        low_res: Option<&[f32]>,
        outputs: &[&str],
    ) -> Result<Vec<Vec<f32>>, RuntimeError> {
        self.check_input(images, n)?;
        let y = self.label_input(labels, n)?;
        let d = self.info.dims();
        let ld = self.info.low_res_dims();
        let mut sessions: Vec<&mut Session> = std::iter::once(&mut self.session)
            .chain(self.replicas.iter_mut())
            .collect();
        let k = sessions.len().min(n).max(1);
        sessions.truncate(k);
        let chunk = n.div_ceil(k);
        let info = &self.info;
        // Each session runs its slice in pieces of at most `run_chunk` images.
        let piece = match self.run_chunk {
            0 => chunk.max(1),
            c => c,
        };
        let y = y.as_deref();
        let parts: Vec<Result<Vec<Vec<f32>>, RuntimeError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = sessions
                .into_iter()
                .enumerate()
                .map(|(i, session)| {
                    let (from, to) = ((i * chunk).min(n), ((i + 1) * chunk).min(n));
                    scope.spawn(move || {
                        let pieces = (from..to).step_by(piece).map(|a| {
                            let b = (a + piece).min(to);
                            run_session(
                                session,
                                info,
                                &images[a * d..b * d],
                                b - a,
                                y.map(|y| &y[a..b]),
                                low_res.map(|l| &l[a * ld..b * ld]),
                                outputs,
                            )
                        });
                        join_in_order(outputs.len(), pieces)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(RuntimeError::Ort(
                            "an ONNX Runtime worker thread panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        join_in_order(outputs.len(), parts)
    }
}

/// Each of `outputs` outputs' values from every part, joined in the parts' order (every
/// output is batch-major); the first error if a part failed.
fn join_in_order(
    outputs: usize,
    parts: impl IntoIterator<Item = Result<Vec<Vec<f32>>, RuntimeError>>,
) -> Result<Vec<Vec<f32>>, RuntimeError> {
    let mut joined: Vec<Vec<f32>> = vec![Vec::new(); outputs];
    for p in parts {
        for (all, v) in joined.iter_mut().zip(p?) {
            all.extend(v);
        }
    }
    Ok(joined)
}

/// One session's run of `n` images (`n` may be 0: nothing to run) for the named outputs.
fn run_session(
    session: &mut Session,
    info: &ModelInfo,
    images: &[f32],
    n: usize,
    labels: Option<&[i64]>,
    low_res: Option<&[f32]>,
    outputs: &[&str],
) -> Result<Vec<Vec<f32>>, RuntimeError> {
    if n == 0 {
        return Ok(vec![Vec::new(); outputs.len()]);
    }
    let shape = [n, info.channels, info.height, info.width];
    let input = TensorRef::from_array_view((shape, images)).map_err(ort_err)?;
    let mut sel = OutputSelector::no_default();
    for o in outputs {
        sel = sel.with(*o);
    }
    let opts = RunOptions::new().map_err(ort_err)?.with_outputs(sel);
    let mut inputs: Vec<(
        std::borrow::Cow<'_, str>,
        ort::session::SessionInputValue<'_>,
    )> = vec![("image".into(), input.into())];
    if let Some(y) = labels {
        let label = TensorRef::from_array_view(([n], y)).map_err(ort_err)?;
        inputs.push((LABEL_INPUT.into(), label.into()));
    }
    // By default the given pixels are the images' own: the graph places them back where
    // they are.
    let own;
    if info.low_res > 0 {
        let f = info.low_res;
        let (hs, ws) = (info.height / f, info.width / f);
        let small = match low_res {
            Some(l) => l,
            None => {
                own = subsample(images, n * info.channels, info.height, info.width, f);
                &own[..]
            }
        };
        let t = TensorRef::from_array_view(([n, info.channels, hs, ws], small)).map_err(ort_err)?;
        inputs.push((LOW_RES_INPUT.into(), t.into()));
    }
    let out = session.run_with_options(inputs, &opts).map_err(ort_err)?;
    outputs
        .iter()
        .map(|o| {
            Ok(out[*o]
                .try_extract_tensor::<f32>()
                .map_err(ort_err)?
                .1
                .to_vec())
        })
        .collect()
}

/// The pixels at rows and columns divisible by `f` of `planes` planes of `h x w` values.
fn subsample(x: &[f32], planes: usize, h: usize, w: usize, f: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(planes * (h / f) * (w / f));
    for p in 0..planes {
        for r in (0..h).step_by(f) {
            out.extend(x[(p * h + r) * w..(p * h + r + 1) * w].iter().step_by(f));
        }
    }
    out
}

/// Widens 8-bit images to the float32 the model takes (values unchanged: no scaling).
pub fn images_to_f32(images: &[u8]) -> Vec<f32> {
    images.iter().map(|&v| v as f32).collect()
}

/// Why `--device cuda` could not start ONNX Runtime's CUDA provider, most basic cause
/// first: no driver; no provider library beside the ORT library (a CPU-only onnxruntime);
/// else the CUDA / cuDNN libraries the provider loads. `m` is ORT's own message.
fn explain_cuda_failure(m: &str, dylib: &Path, driver_present: bool) -> String {
    let provider = env::cuda_provider_library(dylib);
    if !driver_present {
        format!("this machine has no NVIDIA driver (no /proc/driver/nvidia); use --device cpu or --device auto ({m})")
    } else if !provider.exists() {
        format!(
            "ONNX Runtime's CUDA provider is not installed beside {} (no {}): set ORT_DYLIB_PATH to the libonnxruntime.so of an onnxruntime-gpu 1.31 install (scripts/setup.sh makes one in .venv), or use --device cpu ({m})",
            dylib.display(),
            provider.display()
        )
    } else {
        format!(
            "{m}; the CUDA provider needs an NVIDIA driver, CUDA 13 and cuDNN 9 libraries (pixc looks in {}; set PIXC_CUDA_LIB_DIRS or LD_LIBRARY_PATH to their folders), or use --device cpu",
            describe_dirs(&env::cuda_lib_dirs(dylib))
        )
    }
}

fn describe_dirs(d: &[std::path::PathBuf]) -> String {
    if d.is_empty() {
        "no nvidia/*/lib folder next to the ONNX Runtime wheel".to_string()
    } else {
        d.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn read_info(session: &Session) -> Result<ModelInfo, String> {
    let md = session.metadata().map_err(|e| e.to_string())?;
    let get = |k: &str| md.custom(k);
    let num = |k: &str| -> Result<usize, String> {
        get(k)
            .ok_or_else(|| {
                format!("metadata `{k}` is missing (was it exported by `pixc export`?)")
            })?
            .parse::<usize>()
            .map_err(|_| format!("metadata `{k}` is not a number"))
    };
    let classes = match get(meta_keys::CLASSES) {
        Some(_) => num(meta_keys::CLASSES)?,
        None => 0,
    };
    let low_res = match get(meta_keys::LOW_RES) {
        Some(_) => num(meta_keys::LOW_RES)?,
        None => 0,
    };
    let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    let mut want = vec!["image"];
    if classes > 0 {
        want.push(LABEL_INPUT);
    }
    if low_res > 0 {
        want.push(LOW_RES_INPUT);
    }
    if names != want {
        return Err(format!("expected the inputs {want:?}, found {names:?}"));
    }
    for o in ["logits", "nll"] {
        if !session.outputs().iter().any(|x| x.name() == o) {
            return Err(format!("output `{o}` is missing"));
        }
    }
    Ok(ModelInfo {
        model_name: get(meta_keys::MODEL_NAME).unwrap_or_default(),
        pixc_version: get(meta_keys::PIXC_VERSION).unwrap_or_default(),
        levels: num(meta_keys::LEVELS)?,
        channels: num(meta_keys::CHANNELS)?,
        height: num(meta_keys::HEIGHT)?,
        width: num(meta_keys::WIDTH)?,
        head: get(meta_keys::HEAD).ok_or("metadata `pixc.head` is missing")?,
        spec_text: get(meta_keys::SPEC),
        classes,
        low_res,
    })
}

/// Threads ONNX Runtime sessions use; 0 = every core (the default).
static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets the intra-op threads of sessions loaded after this (`None`: every core), so a
/// command's `--threads` holds for ONNX Runtime as for libtorch.
pub fn set_threads(n: Option<usize>) {
    THREADS.store(n.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
}

/// The intra-op threads a session loaded now gets.
pub fn threads() -> usize {
    match THREADS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    }
}

/// ONNX Runtime's version and the execution providers its library offers, for `pixc doctor`.
/// Errors (e.g. no library) are returned as the version string's explanation.
pub fn version_and_providers() -> (String, Vec<String>) {
    match env::version_and_providers() {
        Ok(v) => v,
        Err(e) => (format!("unavailable: {e}"), vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::explain_cuda_failure;

    #[test]
    fn a_cuda_failure_names_its_most_basic_cause() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&lib, b"").unwrap();
        let no_driver = explain_cuda_failure("ort says", &lib, false);
        assert!(no_driver.contains("no NVIDIA driver"), "{no_driver}");
        let no_provider = explain_cuda_failure("ort says", &lib, true);
        assert!(
            no_provider.contains("CUDA provider is not installed")
                && no_provider.contains("libonnxruntime_providers_cuda.so")
                && no_provider.contains("ort says"),
            "{no_provider}"
        );
        std::fs::write(dir.path().join("libonnxruntime_providers_cuda.so"), b"").unwrap();
        let libs = explain_cuda_failure("ort says", &lib, true);
        assert!(
            libs.starts_with("ort says; the CUDA provider needs"),
            "{libs}"
        );
    }
}
