//! libtorch back end: lowers a validated model to a tch computation (CPU or CUDA).
//!
//! The math is docs/semantics.md, op for op; parameter names and shapes are
//! `ir::params_of`'s, masks `ir::mask`'s. Parameters live in plain tensors owned by
//! `TorchModel` (not a VarStore: pixc names contain dots and the optimizer is pixc's own,
//! so its state can be checkpointed and resumed bit for bit).

pub mod conv_kernels;
pub mod fused;
pub mod gemm;
pub mod layers;
pub mod tape;

pub use tape::Tape;

use crate::device::Device as DeviceChoice;
use crate::ir::validate::Model;
use crate::ir::{HeadKind, Op, ParamSpec};
use crate::weights::{param_key, Tensor as WTensor, Weights};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

pub use tch;

/// Resolves a device choice; asking for CUDA where libtorch sees none is an error.
pub fn resolve_device(choice: DeviceChoice) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                anyhow::bail!(
                    "--device cuda was requested, but libtorch sees no CUDA device (no GPU, no driver, or a CPU-only libtorch); use --device cpu or auto"
                )
            }
        }
    }
}

pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

/// The CPU threads pixc works with (`set_threads`); 0 = not set yet.
static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets the CPU threads to use: `n`, or the machine's cores (libtorch's own default can
/// oversubscribe containers whose CPU quota is below the host's core count). libtorch's
/// intra-op pool gets them too, until a model with fused recurrences is built (see
/// `TorchModel::new`).
pub fn set_threads(n: Option<usize>) {
    tune_allocator();
    let n = n.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    THREADS.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    tch::set_num_threads(n as i32);
}

thread_local! {
    /// A per-thread override of `threads()` (0 = none), for work already split over
    /// threads, such as the training replicas.
    static LOCAL_THREADS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The CPU threads pixc works with: `set_threads`'s value, else the machine's cores.
pub fn threads() -> usize {
    let local = LOCAL_THREADS.with(|c| c.get());
    if local > 0 {
        return local;
    }
    match THREADS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Runs `f` with `threads()` = `n` on this thread.
pub(crate) fn with_threads<T>(n: usize, f: impl FnOnce() -> T) -> T {
    let prev = LOCAL_THREADS.with(|c| c.replace(n));
    let r = f();
    LOCAL_THREADS.with(|c| c.set(prev));
    r
}

/// Keeps freed large blocks in the process instead of returning them to the OS.
///
/// Why: a training step allocates and frees the same few hundred MB of activations every
/// time. glibc serves large blocks (over 128 KB by default, adaptively raised) with fresh
/// mmaps, so each step paid page faults and kernel page zeroing for all of it, about a
/// fifth of a Diagonal BiLSTM step on the CPU. Raising the mmap threshold to its maximum
/// and the trim threshold well above a step's footprint lets the heap reuse the pages.
///
/// One arena for all threads: each training replica's thread otherwise allocates from an
/// arena of its own, made of 64 MB heaps that glibc unmaps as soon as one is wholly free,
/// whatever the trim threshold; a replica frees its whole step at the end, so every step
/// faulted its activations in again. At batch 64 on 2 cores that was 30-45% of the CPU
/// time in the kernel and halved the PixelCNN's images/s (426 against 857, `pixc bench
/// --batch 64`; at batch 16 too, 8-11% more). The price is one lock: a PixelCNN replica
/// allocates about 4,400 times per step (counted with a uprobe on malloc), one call every
/// 4-5 microseconds, a short critical section against that.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; called once, early.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        });
    }
}

/// Consecutive views of the 1-D tensor `flat`, one per shape, in order: how parameters,
/// their gradients and optimizer state share one flat buffer.
pub fn views(flat: &Tensor, shapes: &[Vec<i64>]) -> Vec<Tensor> {
    let mut offset = 0;
    shapes
        .iter()
        .map(|dims| {
            let n: i64 = dims.iter().product();
            let v = flat.narrow(0, offset, n).view(dims.as_slice());
            offset += n;
            v
        })
        .collect()
}

/// One lowered op, with its parameters and precomputed masks on the device.
pub struct Step {
    pub op: Op,
    pub inputs: Vec<usize>,
    /// The op's parameter descriptors (`ir::params_of`), in order.
    pub specs: Vec<ParamSpec>,
    /// Parameter tensors, same order as `specs`.
    pub params: Vec<Tensor>,
    /// Masks for masked weights, same order (None = unmasked).
    pub masks: Vec<Option<Tensor>>,
}

impl Step {
    /// Position of parameter `name` among this step's parameters.
    ///
    /// Back ends name only the parameters `params_of` gives the op, so a miss is a bug in
    /// pixc, not bad input.
    pub fn index(&self, name: &str) -> usize {
        self.specs
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("`{}` has no parameter `{name}`", self.op.name()))
    }

    /// Parameter `name`, as stored (autograd flows to it).
    pub fn param(&self, name: &str) -> &Tensor {
        &self.params[self.index(name)]
    }

    /// Parameter `name` with its mask applied, if it has one (autograd flows to the
    /// parameter).
    pub fn weight(&self, name: &str) -> Tensor {
        let k = self.index(name);
        match &self.masks[k] {
            Some(m) => &self.params[k] * m,
            None => self.params[k].shallow_clone(),
        }
    }

    /// Whether the op has parameter `name` (a conditional model's `class_weight`).
    pub fn has(&self, name: &str) -> bool {
        self.specs.iter().any(|p| p.name == name)
    }

    /// The mask of parameter `name`, if it is masked.
    pub fn mask(&self, name: &str) -> Option<&Tensor> {
        self.masks[self.index(name)].as_ref()
    }
}

/// A model lowered to libtorch.
pub struct TorchModel {
    /// The validated model this was built from (the cached sampler plans from it).
    model: Model,
    /// Every parameter, concatenated in `parameters()` order; the parameters are views.
    flat: Tensor,
    pub(crate) steps: Vec<Step>,
    pub(crate) names: Vec<(usize, usize, String)>,
    pub device: Device,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub levels: usize,
    pub head: HeadKind,
    output: usize,
    /// Train with the CPU kernels (`fused.rs` for the recurrences, `conv_kernels.rs` for
    /// the convolutional ops) instead of libtorch ops, and run the recurrences with them
    /// outside training. On by default on the CPU; `PIXC_FUSED=0` turns it off.
    pub(crate) fused: bool,
    /// Has a Row LSTM or Diagonal BiLSTM.
    pub(crate) recurrent: bool,
    /// Index in `parameters()` of each step's first parameter.
    pub(crate) param_base: Vec<usize>,
    /// Split training batches over replicas on the CPU (see `nll_grads`); on by
    /// default, `PIXC_DATA_PARALLEL=0` turns it off.
    pub(crate) data_parallel: bool,
    /// A low-res conditional model's scored pixels, `1 x 1 x H x W` (0 at the low-res
    /// image's, which are given): what the NLL sums over. None: every pixel is scored.
    scored: Option<Tensor>,
    /// The ReLUs the CPU kernels run inside a conv (`tape::FusedRelus`).
    pub(crate) relus: tape::FusedRelus,
}

impl TorchModel {
    /// Builds the model with the given weights (checked against the spec).
    pub fn new(model: &Model, weights: &Weights, device: Device) -> anyhow::Result<TorchModel> {
        weights
            .check_against(model)
            .map_err(|e| anyhow::anyhow!("weights do not fit the model: {e}"))?;
        let g = model.graph();
        let image = g.image;
        let groups = image.groups();
        let mut steps = Vec::new();
        let mut names = Vec::new();
        let mut param_base = Vec::new();
        // All parameters in one buffer, in `parameters()` order; each parameter is a view
        // of it, so the optimizer updates them all with a handful of ops instead of a
        // dozen per tensor (a PixelCNN has 48 of them).
        let mut all: Vec<f32> = Vec::new();
        let mut shapes: Vec<Vec<i64>> = Vec::new();
        for id in g.nodes() {
            let op = g.node(id).op.clone();
            let inputs: Vec<usize> = g.inputs(id).iter().map(|i| i.index()).collect();
            let specs = model.shapes().params(id).to_vec();
            param_base.push(shapes.len());
            let mut masks = Vec::new();
            for (k, p) in specs.iter().enumerate() {
                let key = param_key(id.index(), &p.name);
                let w = &weights.tensors[&key];
                let dims: Vec<i64> = w.shape.iter().map(|&d| d as i64).collect();
                all.extend_from_slice(&w.data);
                shapes.push(dims.clone());
                names.push((steps.len(), k, key));
                masks.push(
                    p.mask_values(groups)
                        .map(|m| Tensor::from_slice(&m).reshape(&dims).to_device(device)),
                );
            }
            steps.push(Step {
                op,
                inputs,
                specs,
                params: Vec::new(),
                masks,
            });
        }
        let flat = Tensor::from_slice(&all).to_device(device);
        for ((s, _, _), view) in names.iter().zip(views(&flat, &shapes)) {
            // A view of a buffer that does not require grad is itself a leaf.
            steps[*s].params.push(view.set_requires_grad(true));
        }
        let fused = device == Device::Cpu && std::env::var("PIXC_FUSED").map_or(true, |v| v != "0");
        let recurrent = steps
            .iter()
            .any(|s| matches!(s.op, Op::RowLstm { .. } | Op::DiagBiLstm { .. }));
        // With fused recurrences, pixc's kernel threads do the heavy work and libtorch's
        // remaining ops are small: its OpenMP pool then costs more than it gives (workers
        // spin after each op, starving the kernel threads), so it gets one thread.
        // Measured on 2 cores, Diagonal BiLSTM training: 56 images/s with libtorch at 1
        // thread against 44 at 2.
        let output = model.output().index();
        let relus = tape::FusedRelus::of(&steps, output);
        let tm = TorchModel {
            model: model.clone(),
            flat,
            steps,
            names,
            device,
            channels: image.channels,
            height: image.height,
            width: image.width,
            levels: image.levels,
            head: model.head_kind(),
            output,
            fused,
            recurrent,
            param_base,
            data_parallel: std::env::var("PIXC_DATA_PARALLEL").map_or(true, |v| v != "0"),
            scored: image.scored_mask().map(|m| {
                Tensor::from_slice(&m)
                    .reshape([1, 1, image.height as i64, image.width as i64])
                    .to_device(device)
            }),
            relus,
        };
        tm.apply_thread_policy();
        Ok(tm)
    }

    /// Applies this model's libtorch thread policy (again, after another model changed
    /// the process-wide setting).
    pub fn apply_thread_policy(&self) {
        if self.device == Device::Cpu {
            let libtorch = if self.fused && self.recurrent {
                1
            } else {
                threads()
            };
            tch::set_num_threads(libtorch as i32);
        }
    }

    /// The validated model this was built from.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The lowered ops in topological order (node index = position), for tools that
    /// evaluate the model differently, e.g. the cached sampler.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Index of the head (the logits) in `steps`.
    pub fn output_index(&self) -> usize {
        self.output
    }

    /// All learned tensors, in a stable order.
    pub fn parameters(&self) -> Vec<&Tensor> {
        self.names
            .iter()
            .map(|(s, k, _)| &self.steps[*s].params[*k])
            .collect()
    }

    /// All parameters as one flat tensor (`parameters()` are views of it): what the
    /// optimizer updates.
    pub fn flat_parameters(&self) -> &Tensor {
        &self.flat
    }

    /// Splits a flat tensor laid out like `flat_parameters()` (a flat gradient, say) into
    /// views shaped like `parameters()`.
    pub fn unflatten(&self, flat: &Tensor) -> Vec<Tensor> {
        let shapes: Vec<Vec<i64>> = self.parameters().iter().map(|p| p.size()).collect();
        views(flat, &shapes)
    }

    /// Parameter names, same order as `parameters`.
    pub fn parameter_names(&self) -> Vec<&str> {
        self.names.iter().map(|(_, _, n)| n.as_str()).collect()
    }

    pub fn param_count(&self) -> usize {
        self.parameters().iter().map(|t| t.numel()).sum()
    }

    /// Copies the current parameters out as backend-neutral weights.
    pub fn to_weights(&self) -> Weights {
        let mut tensors = BTreeMap::new();
        for (t, name) in self.parameters().into_iter().zip(self.parameter_names()) {
            let shape = t.size().iter().map(|&d| d as usize).collect();
            let data = to_vec_f32(t);
            tensors.insert(name.to_string(), WTensor { shape, data });
        }
        Weights { tensors }
    }

    /// Overwrites parameters from weights (same model).
    pub fn load_weights(&mut self, w: &Weights) -> anyhow::Result<()> {
        tch::no_grad(|| -> anyhow::Result<()> {
            for (s, k, name) in &self.names {
                let src = w
                    .tensors
                    .get(name)
                    .ok_or_else(|| anyhow::anyhow!("tensor `{name}` missing"))?;
                let dst = &mut self.steps[*s].params[*k];
                let dims = dst.size();
                let t = Tensor::from_slice(&src.data)
                    .reshape(&dims)
                    .to_device(self.device);
                dst.copy_(&t);
            }
            Ok(())
        })
    }

    /// Converts raw image values (0..levels-1, N x C x H x W) to the model input.
    pub fn images_to_tensor(&self, images: &[u8], n: usize) -> Tensor {
        Tensor::from_slice(images)
            .reshape([
                n as i64,
                self.channels as i64,
                self.height as i64,
                self.width as i64,
            ])
            .to_device(self.device)
    }

    /// Whether the fused CPU kernels are on (see `set_fused`).
    pub fn fused(&self) -> bool {
        self.fused
    }

    /// Turns the fused CPU kernels (recurrences, and convs in training) on or off (they
    /// exist only on the CPU);
    /// off means every step is plain libtorch ops, the reference the kernels are tested
    /// against.
    pub fn set_fused(&mut self, on: bool) {
        self.fused = on && self.device == Device::Cpu;
        self.apply_thread_policy();
    }

    /// Turns the data-parallel training replicas (`nll_grads`) on or off.
    pub fn set_data_parallel(&mut self, on: bool) {
        self.data_parallel = on;
    }

    /// Raw image values (0..levels-1) to the model's input scale, value / (levels - 1).
    pub fn scale(&self, images: &Tensor) -> Tensor {
        images.to_kind(Kind::Float) / (self.levels as f64 - 1.0)
    }

    /// Logits for raw image values (uint8 tensor N x C x H x W).
    pub fn forward(&self, images: &Tensor) -> Tensor {
        self.forward_labeled(images, None)
    }

    /// As `forward`, with a class-conditional model's labels (int64, N). Without labels a
    /// conditional model adds no class vector (its untrained, unconditional part); the
    /// commands always give them (`data` checks a conditional model's data set has them).
    pub fn forward_labeled(&self, images: &Tensor, labels: Option<&Tensor>) -> Tensor {
        self.forward_scaled(&self.scale(images), self.one_hot(labels).as_ref())
    }

    /// Class labels as the int64 tensor (N) that `forward_labeled` and `nll_labeled` take.
    pub fn labels_tensor(labels: &[u16]) -> Tensor {
        let v: Vec<i64> = labels.iter().map(|&y| i64::from(y)).collect();
        Tensor::from_slice(&v)
    }

    /// The classes a label may name; 0 for an unconditional model.
    pub fn classes(&self) -> usize {
        self.model.graph().image.classes
    }

    /// Labels (int64, N) as the float one-hot rows (N x classes) the layers read; `None`
    /// for an unconditional model.
    pub fn one_hot(&self, labels: Option<&Tensor>) -> Option<Tensor> {
        let k = self.classes();
        match labels {
            Some(y) if k > 0 => Some(
                y.to_device(self.device)
                    .to_kind(Kind::Int64)
                    .one_hot(k as i64)
                    .to_kind(Kind::Float),
            ),
            _ => None,
        }
    }

    /// Logits for an already scaled float input (values / (levels - 1)); the causality
    /// tests differentiate with respect to this. Under `tch::no_grad` the recurrences use
    /// the fused kernels when enabled; with autograd on they are libtorch ops (for
    /// training use `forward_tape`, which differentiates through the kernels too).
    /// `cond`: the labels' one-hot rows (`one_hot`).
    pub fn forward_scaled(&self, x: &Tensor, cond: Option<&Tensor>) -> Tensor {
        let fast = self.fused && !grad_enabled();
        let n = x.size()[0] as usize;
        let mut outs: Vec<Option<Tensor>> = Vec::with_capacity(self.steps.len());
        for st in &self.steps {
            let y = match &st.op {
                Op::Input => x.shallow_clone(),
                _ if fast && self.geom(st, n).is_some() => {
                    let g = self.geom(st, n).expect("checked");
                    let ins: Vec<&Tensor> = st
                        .inputs
                        .iter()
                        .map(|&i| outs[i].as_ref().expect("topological"))
                        .collect();
                    self.fused_step(st, g, &ins, cond, false).1
                }
                _ => {
                    let ins: Vec<&Tensor> = st
                        .inputs
                        .iter()
                        .map(|&i| outs[i].as_ref().expect("topological"))
                        .collect();
                    layers::apply(st, &ins, cond, self.height, self.width)
                }
            };
            outs.push(Some(y));
        }
        outs[self.output].take().expect("output computed")
    }

    /// Per-image negative log-likelihood in nats, from logits and raw image values. A
    /// low-res conditional model's low-res pixels are given, so they are not scored.
    pub fn nll_from_logits(&self, logits: &Tensor, images: &Tensor) -> Tensor {
        let n = logits.size()[0];
        let only_scored = |t: Tensor| match &self.scored {
            Some(m) => t * m,
            None => t,
        };
        match self.head {
            HeadKind::Bernoulli => {
                let target = images.to_kind(Kind::Float);
                only_scored(logits.binary_cross_entropy_with_logits::<Tensor>(
                    &target,
                    None,
                    None,
                    tch::Reduction::None,
                ))
                .reshape([n, -1])
                .sum_dim_intlist(1, false, Kind::Float)
            }
            HeadKind::Softmax => {
                let (c, l, h, w) = (
                    self.channels as i64,
                    self.levels as i64,
                    self.height as i64,
                    self.width as i64,
                );
                let lp = logits.reshape([n, c, l, h, w]).log_softmax(2, Kind::Float);
                let t = images.to_kind(Kind::Int64).unsqueeze(2);
                let picked = lp.gather(2, &t, false).squeeze_dim(2);
                -only_scored(picked)
                    .reshape([n, -1])
                    .sum_dim_intlist(1, false, Kind::Float)
            }
        }
    }

    /// Per-image NLL in nats.
    pub fn nll(&self, images: &Tensor) -> Tensor {
        self.nll_labeled(images, None)
    }

    /// Per-image NLL in nats, given a conditional model's labels.
    pub fn nll_labeled(&self, images: &Tensor, labels: Option<&Tensor>) -> Tensor {
        let logits = self.forward_labeled(images, labels);
        self.nll_from_logits(&logits, images)
    }

    /// Sub-pixels per image.
    pub fn dims(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Whether libtorch's autograd is recording (false inside `tch::no_grad`).
pub fn grad_enabled() -> bool {
    // SAFETY: plain calls into libtorch's thread-local grad mode; set, then restore.
    unsafe {
        let prev = torch_sys::at_grad_set_enabled(1);
        torch_sys::at_grad_set_enabled(prev);
        prev != 0
    }
}

/// A tensor's values as f32 on the CPU, row-major (detached; any device or dtype).
pub fn to_vec_f32(t: &Tensor) -> Vec<f32> {
    let c = t
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    let n = c.numel();
    let mut v = vec![0f32; n];
    c.copy_data(&mut v, n);
    v
}

/// The unit NLLs are reported in: nats per image for binary data, bits/dim otherwise.
pub fn nll_unit(levels: usize) -> &'static str {
    if levels == 2 {
        "nats/image"
    } else {
        "bits/dim"
    }
}

/// Converts a mean per-image NLL in nats to the reporting unit for this data.
pub fn report_nll(nats_per_image: f64, levels: usize, dims: usize) -> f64 {
    if levels == 2 {
        nats_per_image
    } else {
        nats_per_image / (dims as f64 * std::f64::consts::LN_2)
    }
}
