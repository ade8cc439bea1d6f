//! Training forward/backward that mixes libtorch autograd with the CPU kernels (the
//! recurrences' in `fused.rs`, the convolutional ops' in `conv_kernels.rs`), which
//! autograd cannot see, and the data-parallel training step.
//!
//! tch cannot register custom autograd functions, so the graph is cut at every step's
//! output: each step reads detached leaves of its inputs, and `grads` walks the steps in
//! reverse topological order. A step's output gradient is complete when it is reached
//! (every consumer comes later in the order and has already added to it). An ordinary
//! step is then differentiated by `run_backward` through `sum(out * grad)`, whose
//! gradient is exactly `grad`; a fused step runs its hand-written backward. Cutting at
//! every step (not only around the kernels) means no part of the graph is traversed
//! twice. Gradients are returned rather than accumulated into `.grad()`, so replicas can
//! share the parameters.

use super::conv_kernels::{self as ck, Packed, Plane, Store};
use super::fused::{self, Geom, InConv, Layout, Params, Saved};
use super::{layers, Step, TorchModel};
use crate::ir::{mask::Crop, Op};
use tch::{Kind, Tensor};

enum Seg {
    /// Ordinary libtorch op: its output, with its autograd graph.
    Plain(Tensor),
    /// Fused recurrence: what it read and its saved state.
    Fused { fi: FusedInputs, saved: Saved },
    /// A convolutional op run by `conv_kernels`.
    Kernel(KernelSaved),
}

/// How `conv_kernels` runs an op in training.
enum KernelOp {
    /// Sum of conv terms (`(input slot, weight name, bias name)`), plus slot 0 itself
    /// when `residual`; with `relu`, the ReLU that is its only reader applied too
    /// (`Store::Relu`; that ReLU's step is then a `Pass`); with `relu_in`, the ReLU that
    /// its single term alone reads applied to that term's input (`conv_kernels::Input`;
    /// that ReLU's step is then a `Pass` too).
    Convs {
        terms: Vec<(usize, String, String)>,
        residual: bool,
        relu: bool,
        relu_in: bool,
    },
    Relu,
    Add,
    /// A ReLU whose conv already applied it: its input, as it is.
    Pass,
}

/// The op's kernel, or None for an op libtorch runs; a conv gets `relu` and `relu_in` as
/// `FusedRelus` decided them (both false while deciding).
fn kernel_op(st: &Step, relu: bool, relu_in: bool) -> Option<KernelOp> {
    let conv = |name: &str| KernelOp::Convs {
        terms: vec![(0, format!("{name}weight"), format!("{name}bias"))],
        residual: false,
        relu,
        relu_in,
    };
    match st.op {
        Op::Conv { .. } | Op::Head { .. } => Some(conv("")),
        Op::SkipSum => Some(KernelOp::Convs {
            terms: (1..st.inputs.len())
                .map(|i| (i, format!("proj{i}_weight"), format!("proj{i}_bias")))
                .collect(),
            residual: true,
            relu,
            relu_in,
        }),
        Op::Relu => Some(KernelOp::Relu),
        Op::Add => Some(KernelOp::Add),
        // Recurrences have their own kernels (`geom`); the rest stay libtorch ops, the
        // same math, just not fused.
        Op::Input
        | Op::LowRes { .. }
        | Op::RowLstm { .. }
        | Op::DiagBiLstm { .. }
        | Op::GatedConv { .. } => None,
    }
}

/// What a `conv_kernels` op's backward pass reads.
struct KernelSaved {
    op: KernelOp,
    /// The contiguous data of each input slot.
    ins: Vec<Tensor>,
    /// What the op's kind keeps besides.
    kept: Kept,
}

enum Kept {
    /// A ReLU's output.
    Out(Tensor),
    /// Each conv term's packed weight, in `terms` order, and the output of a conv that
    /// applied its ReLU (`relu`), whose gradient it masks.
    Packs {
        packs: Vec<Packed>,
        relu_out: Option<Tensor>,
    },
    Nothing,
}

/// Which ReLUs run inside a conv rather than as steps of their own, decided once per
/// model (`TorchModel::new`) from its steps: see `relu_after` and `relu_before`.
pub(crate) struct FusedRelus {
    /// Per step: the ReLU it applies to its output (`Store::Relu`).
    after: Vec<Option<usize>>,
    /// Per step: the ReLU it applies to its input (`conv_kernels::Input::relu`).
    before: Vec<Option<usize>>,
    /// Per step: a ReLU that one of the above runs, so its own step passes its input on.
    inside: Vec<bool>,
}

impl FusedRelus {
    pub(crate) fn of(steps: &[Step], output: usize) -> FusedRelus {
        let readers = readers(steps);
        let after = relu_after(steps, &readers, output);
        let before = relu_before(steps, &readers, output, &after);
        let mut inside = vec![false; steps.len()];
        for &j in after.iter().chain(&before).flatten() {
            inside[j] = true;
        }
        FusedRelus {
            after,
            before,
            inside,
        }
    }

    /// Step `i`'s kernel with the ReLUs it runs; `Pass` for a ReLU a conv runs.
    fn kernel_op(&self, i: usize, st: &Step) -> Option<KernelOp> {
        if self.inside[i] {
            return Some(KernelOp::Pass);
        }
        kernel_op(st, self.after[i].is_some(), self.before[i].is_some())
    }
}

/// For each step, whether it is a single conv term read by one ReLU alone (not the
/// model's output), which then runs inside the conv (`Store::Relu`): `Some(j)`, the
/// ReLU's step.
fn relu_after(steps: &[Step], readers: &[Vec<usize>], output: usize) -> Vec<Option<usize>> {
    steps
        .iter()
        .enumerate()
        .map(|(i, st)| match readers[i][..] {
            [j] if single_conv(st) && i != output && matches!(steps[j].op, Op::Relu) => Some(j),
            _ => None,
        })
        .collect()
}

/// For each step, whether it is a single conv term whose input is a ReLU's output read by
/// it alone, not the model's output and not already applied by the conv before it
/// (`relu_after`): `Some(j)`, the ReLU's step, which then runs inside this conv, on its
/// input (`conv_kernels::Input`). A PixelCNN block's first ReLU is such a one: the block's
/// input is read by it and by the residual sum.
fn relu_before(
    steps: &[Step],
    readers: &[Vec<usize>],
    output: usize,
    after: &[Option<usize>],
) -> Vec<Option<usize>> {
    steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let &j = st.inputs.first()?;
            let only_reader = readers[j][..] == [i];
            let free = j != output && !after.contains(&Some(j));
            (single_conv(st) && matches!(steps[j].op, Op::Relu) && only_reader && free).then_some(j)
        })
        .collect()
}

/// The steps that read each step's output.
fn readers(steps: &[Step]) -> Vec<Vec<usize>> {
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (j, st) in steps.iter().enumerate() {
        for &i in &st.inputs {
            readers[i].push(j);
        }
    }
    readers
}

/// Whether a step runs as one conv term of its input, without a residual term.
fn single_conv(st: &Step) -> bool {
    matches!(
        kernel_op(st, false, false),
        Some(KernelOp::Convs { ref terms, residual: false, .. }) if terms.len() == 1
    )
}

/// One training forward pass, ready for `TorchModel::backward`.
pub struct Tape {
    mode: Mode,
}

enum Mode {
    /// No fused kernels: one ordinary autograd graph.
    Whole(Tensor),
    Cut {
        segs: Vec<Seg>,
        /// Detached, grad-requiring copies of each step's output.
        leaves: Vec<Tensor>,
        output: usize,
    },
}

impl Tape {
    /// The logits (N x C*levels-or-C x H x W); compute the loss from these.
    pub fn logits(&self) -> &Tensor {
        match &self.mode {
            Mode::Whole(t) => t,
            Mode::Cut { leaves, output, .. } => &leaves[*output],
        }
    }
}

/// Views a contiguous CPU f32 tensor's data.
///
/// # Safety
/// `t` must be contiguous, f32, on the CPU, and not written while the slice lives.
unsafe fn as_slice(t: &Tensor) -> &[f32] {
    debug_assert!(t.is_contiguous() && t.kind() == Kind::Float);
    std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel())
}

/// Views a contiguous CPU f32 tensor's data for writing.
///
/// # Safety
/// As `as_slice`, and nothing else may read or write `t` while the slice lives.
#[allow(clippy::mut_from_ref)]
unsafe fn as_mut_slice(t: &Tensor) -> &mut [f32] {
    debug_assert!(t.is_contiguous() && t.kind() == Kind::Float);
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, t.numel())
}

/// What a fused recurrence step reads. The Diagonal BiLSTM's 1x1 input conv runs inside
/// the recurrence kernel, so that kernel reads the layer input x and adds what its map
/// gets besides (`layers::diag_extra`: conditioning, the full-context image term). The
/// Row LSTM's 1 x k conv runs in `conv_kernels` just before, into S, which the kernel
/// reads.
pub(crate) struct FusedInputs {
    /// Contiguous data the recurrence kernel reads: x or S.
    data: Tensor,
    conv: InputConv,
    ss: Tensor,
    h0: Tensor,
    c0: Tensor,
}

/// Where a recurrence's input-to-state conv runs, and what its backward pass reads.
enum InputConv {
    /// Inside the recurrence kernel (Diagonal BiLSTM).
    InKernel {
        /// Detached data of the masked weight and of the bias.
        w: Tensor,
        b: Tensor,
        /// The term added to the conv's output (with its autograd graph) and its
        /// contiguous data.
        extra: Option<(Tensor, Tensor)>,
    },
    /// In `conv_kernels`, before the recurrence kernel (Row LSTM).
    Before {
        pk: Packed,
        /// The layer input's contiguous data.
        x: Tensor,
        /// The term added to the conv's output, with its autograd graph (`layers::row_extra`).
        extra: Option<Tensor>,
    },
}

impl FusedInputs {
    /// `ins`: the step's inputs in slot order (the layer input, a `full_context` Diagonal
    /// BiLSTM's image, a low-res model's map); `cond`: a conditional model's one-hot labels.
    fn new(
        st: &Step,
        ins: &[&Tensor],
        cond: Option<&Tensor>,
        plane: Plane,
        threads: usize,
    ) -> FusedInputs {
        let x = ins[0].detach().contiguous();
        let (data, conv) = match st.op {
            Op::DiagBiLstm { hidden, .. } => {
                let w = st.weight("is_weight").detach().contiguous();
                let b = st.param("is_bias").detach().contiguous();
                let extra = layers::diag_extra(st, ins, cond, hidden as i64).map(|e| {
                    let data = e.detach().contiguous();
                    (e, data)
                });
                (x, InputConv::InKernel { w, b, extra })
            }
            // Only recurrences have a fused step (`geom`): the rest is the Row LSTM.
            _ => {
                let pk = pack(st, "is_weight");
                let bias = st.param("is_bias").detach().contiguous();
                let extra = layers::row_extra(st, ins, cond);
                let n = x.size()[0];
                let s = Tensor::empty(
                    [
                        n,
                        bias.numel() as i64,
                        plane.height as i64,
                        plane.width as i64,
                    ],
                    (Kind::Float, tch::Device::Cpu),
                );
                // SAFETY: contiguous f32 CPU tensors; `s` is fresh and written only here.
                unsafe {
                    ck::conv_forward_par(
                        threads,
                        &pk,
                        as_slice(&bias),
                        ck::Input::plain(as_slice(&x)),
                        plane,
                        as_mut_slice(&s),
                        Store::Write,
                    );
                }
                let s = match &extra {
                    Some(e) => (s + e.detach()).contiguous(),
                    None => s,
                };
                (s, InputConv::Before { pk, x, extra })
            }
        };
        let param = |name: &str| st.param(name).detach().contiguous();
        FusedInputs {
            data,
            conv,
            ss: param("ss_weight"),
            h0: param("h0"),
            c0: param("c0"),
        }
    }

    /// The kernel's view of the parameters.
    ///
    /// # Safety
    /// The tensors are contiguous f32 on the CPU (fused runs only there) and only read.
    unsafe fn params(&self) -> Params<'_> {
        let (conv, extra) = match &self.conv {
            InputConv::InKernel { w, b, extra, .. } => (
                Some(InConv {
                    w: as_slice(w),
                    b: as_slice(b),
                    cin: (w.numel() / b.numel()),
                }),
                extra.as_ref().map(|(_, d)| as_slice(d)),
            ),
            InputConv::Before { .. } => (None, None),
        };
        Params {
            ss: as_slice(&self.ss),
            h0: as_slice(&self.h0),
            c0: as_slice(&self.c0),
            conv,
            extra,
        }
    }

    /// The data of the term the recurrence kernel adds to its own conv, whose gradient
    /// its backward pass returns.
    fn kernel_extra(&self) -> Option<&Tensor> {
        match &self.conv {
            InputConv::InKernel { extra, .. } => extra.as_ref().map(|(_, d)| d),
            InputConv::Before { .. } => None,
        }
    }
}

impl TorchModel {
    /// The geometry of a fused recurrence step for a batch of `n`.
    pub(crate) fn geom(&self, st: &Step, n: usize) -> Option<Geom> {
        let (layout, hidden) = match st.op {
            Op::RowLstm { hidden, .. } => (Layout::Row, hidden),
            Op::DiagBiLstm { hidden, shift, .. } => (Layout::Diag { shift }, hidden),
            // Every other op runs as plain libtorch ops: the same math, just not fused, so
            // a new op needs nothing here.
            _ => return None,
        };
        Some(Geom {
            layout,
            batch: n,
            hidden,
            height: self.height,
            width: self.width,
        })
    }

    /// Runs a recurrence step with the fused kernel: (what it read, Y, saved state).
    pub(crate) fn fused_step(
        &self,
        st: &Step,
        g: Geom,
        ins: &[&Tensor],
        cond: Option<&Tensor>,
        save: bool,
    ) -> (FusedInputs, Tensor, Option<Saved>) {
        let fi = FusedInputs::new(st, ins, cond, self.plane(), self.threads());
        let y = Tensor::zeros(
            [
                g.batch as i64,
                g.hidden as i64,
                g.height as i64,
                g.width as i64,
            ],
            (Kind::Float, tch::Device::Cpu),
        );
        // SAFETY: contiguous f32 CPU tensors; `y` is fresh and written only here.
        let saved = unsafe {
            fused::forward(
                g,
                as_slice(&fi.data),
                fi.params(),
                self.threads(),
                save,
                as_mut_slice(&y),
            )
        };
        (fi, y, saved)
    }

    fn threads(&self) -> usize {
        super::threads()
    }

    /// Runs a convolutional op with `conv_kernels`: its output and what backward reads.
    fn kernel_step(&self, st: &Step, op: KernelOp, ins: &[&Tensor]) -> (Tensor, KernelSaved) {
        let data: Vec<Tensor> = ins.iter().map(|t| t.detach().contiguous()).collect();
        let size = data[0].size();
        let opts = (Kind::Float, tch::Device::Cpu);
        // SAFETY: contiguous f32 CPU tensors; `out` is fresh and written only here.
        let (out, kept) = unsafe {
            match &op {
                KernelOp::Relu => {
                    let out = Tensor::empty(size.as_slice(), opts);
                    ck::relu_forward(as_slice(&data[0]), as_mut_slice(&out));
                    let kept = Kept::Out(out.shallow_clone());
                    (out, kept)
                }
                KernelOp::Pass => (data[0].shallow_clone(), Kept::Nothing),
                KernelOp::Add => {
                    // The first two summed in one pass (not a copy, then an add over it).
                    let out = Tensor::empty(size.as_slice(), opts);
                    let o = as_mut_slice(&out);
                    match &data[..] {
                        [a, b, rest @ ..] => {
                            o.iter_mut()
                                .zip(as_slice(a).iter().zip(as_slice(b)))
                                .for_each(|(o, (a, b))| *o = a + b);
                            for d in rest {
                                o.iter_mut().zip(as_slice(d)).for_each(|(a, b)| *a += b);
                            }
                        }
                        [a] => o.copy_from_slice(as_slice(a)),
                        [] => o.fill(0.0), // the empty sum
                    }
                    (out, Kept::Nothing)
                }
                KernelOp::Convs {
                    terms,
                    residual,
                    relu,
                    relu_in,
                } => {
                    let cout = st.param(&terms[0].2).size()[0];
                    let out = if *residual {
                        data[0].copy()
                    } else {
                        Tensor::empty([size[0], cout, size[2], size[3]], opts)
                    };
                    let mut packs = Vec::with_capacity(terms.len());
                    for (j, (slot, w, b)) in terms.iter().enumerate() {
                        let pk = pack(st, w);
                        ck::conv_forward_par(
                            self.threads(),
                            &pk,
                            as_slice(&st.param(b).detach().contiguous()),
                            ck::Input {
                                x: as_slice(&data[*slot]),
                                relu: *relu_in,
                            },
                            self.plane(),
                            as_mut_slice(&out),
                            match (*relu, *residual || j > 0) {
                                (true, _) => Store::Relu,
                                (false, true) => Store::Add,
                                (false, false) => Store::Write,
                            },
                        );
                        packs.push(pk);
                    }
                    let relu_out = relu.then(|| out.shallow_clone());
                    (out, Kept::Packs { packs, relu_out })
                }
            }
        };
        let saved = KernelSaved {
            op,
            ins: data,
            kept,
        };
        (out, saved)
    }

    /// The size of one image plane, for `conv_kernels`.
    fn plane(&self) -> Plane {
        Plane {
            height: self.height,
            width: self.width,
        }
    }

    /// Forward pass for training: call `grads` or `backward` with the loss computed from
    /// `tape.logits()`. `x` is the scaled input (see `forward_scaled`); it may require grad.
    /// `cond`: a conditional model's one-hot labels (`one_hot`).
    pub fn forward_tape(&self, x: &Tensor, cond: Option<&Tensor>) -> Tape {
        // Without the CPU kernels (CUDA, `PIXC_FUSED=0`), cutting the graph would only add
        // work.
        if !self.fused {
            return Tape {
                mode: Mode::Whole(self.forward_scaled(x, cond)),
            };
        }
        let n = x.size()[0] as usize;
        let mut segs: Vec<Seg> = Vec::with_capacity(self.steps.len());
        let mut leaves: Vec<Tensor> = Vec::with_capacity(self.steps.len());
        let relus = &self.relus;
        for (i, st) in self.steps.iter().enumerate() {
            let seg = match (&st.op, self.geom(st, n)) {
                (Op::Input, _) => Seg::Plain(x.shallow_clone()),
                (_, Some(g)) => {
                    let ins: Vec<&Tensor> = st.inputs.iter().map(|&i| &leaves[i]).collect();
                    let (fi, y, saved) = self.fused_step(st, g, &ins, cond, true);
                    leaves.push(y.set_requires_grad(true));
                    segs.push(Seg::Fused {
                        fi,
                        saved: saved.expect("saved when asked"),
                    });
                    continue;
                }
                _ => {
                    let ins: Vec<&Tensor> = st.inputs.iter().map(|&i| &leaves[i]).collect();
                    if let Some(op) = relus.kernel_op(i, st) {
                        let (y, saved) = self.kernel_step(st, op, &ins);
                        leaves.push(y.set_requires_grad(true));
                        segs.push(Seg::Kernel(saved));
                        continue;
                    }
                    Seg::Plain(layers::apply(st, &ins, cond, self.height, self.width))
                }
            };
            let Seg::Plain(out) = &seg else {
                unreachable!()
            };
            leaves.push(out.detach().set_requires_grad(true));
            segs.push(seg);
        }
        Tape {
            mode: Mode::Cut {
                segs,
                leaves,
                output: self.output,
            },
        }
    }

    /// Backpropagates `loss` (a scalar computed from `tape.logits()`) into the parameters'
    /// `.grad()` and, when `x` (the scaled input given to `forward_tape`) requires grad,
    /// into `x.grad()`.
    pub fn backward(&self, tape: Tape, loss: &Tensor, x: &Tensor) {
        let input = x.requires_grad().then_some(x);
        let (params, gx) = self.grads(tape, loss, input);
        let mut pairs: Vec<(&Tensor, Tensor)> = self.parameters().into_iter().zip(params).collect();
        if let (Some(x), Some(g)) = (input, gx) {
            pairs.push((x, g));
        }
        accumulate(&pairs);
    }

    /// Gradients of `loss` (a scalar computed from `tape.logits()`) for every parameter
    /// (`parameters()` order; zeros where the loss does not depend on one) and, if given,
    /// for the input `x` of `forward_tape`. Nothing is accumulated into `.grad()`, so
    /// replicas may run this on the same parameters at once.
    pub fn grads(
        &self,
        tape: Tape,
        loss: &Tensor,
        x: Option<&Tensor>,
    ) -> (Vec<Tensor>, Option<Tensor>) {
        let params = self.parameters();
        let mut pg: Vec<Option<Tensor>> = (0..params.len()).map(|_| None).collect();
        let mut gx = None;
        match tape.mode {
            Mode::Whole(_) => {
                let mut wrt: Vec<&Tensor> = params.clone();
                wrt.extend(x);
                let mut g = Tensor::run_backward(&[loss], &wrt, false, false);
                if x.is_some() {
                    gx = g.pop().filter(|t| t.defined());
                }
                for (slot, t) in pg.iter_mut().zip(g) {
                    *slot = t.defined().then_some(t);
                }
            }
            Mode::Cut {
                segs,
                leaves,
                output,
            } => {
                let mut lg: Vec<Option<Tensor>> = (0..leaves.len()).map(|_| None).collect();
                lg[output] =
                    Some(Tensor::run_backward(&[loss], &[&leaves[output]], false, false).remove(0));
                for (i, seg) in segs.into_iter().enumerate().rev() {
                    let Some(g) = lg[i].take() else {
                        continue; // nothing downstream used this output
                    };
                    let st = &self.steps[i];
                    let first = self.param_base[i];
                    match seg {
                        Seg::Plain(out) => {
                            if matches!(st.op, Op::Input) {
                                if x.is_some() {
                                    gx = Some(g);
                                }
                                continue;
                            }
                            if !out.requires_grad() {
                                continue;
                            }
                            let sur = (&out * &g).sum(Kind::Float);
                            self.through(st, first, &sur, &leaves, &mut lg, &mut pg);
                        }
                        Seg::Kernel(ks) => {
                            // The image's gradient is wanted only when `x` is given.
                            let wanted = |slot: usize| {
                                let j = st.inputs[slot];
                                x.is_some() || !matches!(self.steps[j].op, Op::Input)
                            };
                            self.kernel_backward(st, first, ks, &g, wanted, &mut lg, &mut pg);
                        }
                        Seg::Fused { fi, saved } => {
                            let dy = g.contiguous();
                            let d_input = fi.data.empty_like();
                            let d_extra = fi.kernel_extra().map(|d| d.empty_like());
                            // SAFETY: contiguous f32 CPU tensors; `d_input` and `d_extra`
                            // are fresh and written only here.
                            let gr = unsafe {
                                fused::backward(
                                    saved,
                                    as_slice(&dy),
                                    fi.params(),
                                    as_mut_slice(&d_input),
                                    d_extra.as_ref().map(|t| as_mut_slice(t)),
                                )
                            };
                            // The parameter `name`'s gradient slot and its value shaped
                            // like the parameter.
                            let slot = |name: &str| first + st.index(name);
                            let like = |v: &[f32], name: &str| {
                                Tensor::from_slice(v).reshape(st.param(name).size())
                            };
                            add_to(&mut pg[slot("ss_weight")], like(&gr.dss, "ss_weight"));
                            add_to(&mut pg[slot("h0")], like(&gr.dh0, "h0"));
                            add_to(&mut pg[slot("c0")], like(&gr.dc0, "c0"));
                            // The extra term's inputs and weights (labels, low-res map,
                            // image; class, low-res and image weights) go through
                            // libtorch, with dS as their gradient.
                            // As for the conv ops: the image's gradient only when `x`
                            // is given.
                            let want_input =
                                x.is_some() || !matches!(self.steps[st.inputs[0]].op, Op::Input);
                            let (extra, ds) = match &fi.conv {
                                InputConv::InKernel { extra, .. } => {
                                    // The kernel's input was the layer input itself; its
                                    // weight gradient is the masked weight's, masked.
                                    let dw = like(&gr.dw, "is_weight");
                                    let dw = match st.mask("is_weight") {
                                        Some(m) => dw * m,
                                        None => dw,
                                    };
                                    add_to(&mut pg[slot("is_weight")], dw);
                                    add_to(&mut pg[slot("is_bias")], like(&gr.db, "is_bias"));
                                    if want_input {
                                        add_to(&mut lg[st.inputs[0]], d_input);
                                    }
                                    (extra.as_ref().map(|(e, _)| e), d_extra)
                                }
                                InputConv::Before { pk, x, extra } => {
                                    // The kernel's input was S: `conv_kernels` turns dS
                                    // into the conv's gradients.
                                    let dx = want_input.then(|| x.empty_like());
                                    let mut dw = vec![0.0; pk.grad_len()];
                                    let mut db = vec![0.0; st.param("is_bias").numel()];
                                    // SAFETY: contiguous f32 CPU tensors; `dx` is fresh
                                    // and written only here.
                                    unsafe {
                                        ck::conv_backward_par(
                                            self.threads(),
                                            pk,
                                            ck::Input::plain(as_slice(x)),
                                            self.plane(),
                                            as_slice(&d_input),
                                            None,
                                            dx.as_ref().map(|t| as_mut_slice(t)),
                                            &mut dw,
                                            &mut db,
                                        );
                                    }
                                    add_unpacked(&mut pg, first, st, "is_weight", pk, &dw);
                                    add_to(&mut pg[slot("is_bias")], Tensor::from_slice(&db));
                                    if let Some(dx) = dx {
                                        add_to(&mut lg[st.inputs[0]], dx);
                                    }
                                    (extra.as_ref(), Some(d_input))
                                }
                            };
                            if let (Some(e), Some(de)) = (extra, ds) {
                                if e.requires_grad() {
                                    let sur = (e * de).sum(Kind::Float);
                                    self.through(st, first, &sur, &leaves, &mut lg, &mut pg);
                                }
                            }
                        }
                    }
                }
            }
        }
        let grads = pg
            .into_iter()
            .zip(&params)
            .map(|(g, p)| g.unwrap_or_else(|| p.zeros_like()))
            .collect();
        (grads, gx)
    }

    /// The backward pass of a `conv_kernels` op: adds into its inputs' and parameters'
    /// gradient slots. `wanted(slot)`: whether that input's gradient is needed.
    #[allow(clippy::too_many_arguments)]
    fn kernel_backward(
        &self,
        st: &Step,
        first: usize,
        ks: KernelSaved,
        g: &Tensor,
        wanted: impl Fn(usize) -> bool,
        lg: &mut [Option<Tensor>],
        pg: &mut [Option<Tensor>],
    ) {
        let dy = g.contiguous();
        match (&ks.op, &ks.kept) {
            (KernelOp::Relu, Kept::Out(out)) => {
                let dx = dy.empty_like();
                // SAFETY: contiguous f32 CPU tensors; `dx` is fresh and written only here.
                unsafe { ck::relu_backward(as_slice(out), as_slice(&dy), as_mut_slice(&dx)) };
                add_to(&mut lg[st.inputs[0]], dx);
            }
            (KernelOp::Add, _) => {
                for &j in &st.inputs {
                    add_to(&mut lg[j], dy.shallow_clone());
                }
            }
            // The ReLU's own gradient rule runs in its conv's backward (`relu_out`, or
            // `Input::relu` for the conv after it).
            (KernelOp::Pass, _) => add_to(&mut lg[st.inputs[0]], dy.shallow_clone()),
            (
                KernelOp::Convs {
                    terms,
                    residual,
                    relu_in,
                    ..
                },
                Kept::Packs { packs, relu_out },
            ) => {
                if *residual {
                    add_to(&mut lg[st.inputs[0]], dy.shallow_clone());
                }
                for ((slot, w, b), pk) in terms.iter().zip(packs) {
                    let x = &ks.ins[*slot];
                    let dx = wanted(*slot).then(|| x.empty_like());
                    let mut dw = vec![0.0; pk.grad_len()];
                    let mut db = vec![0.0; st.param(b).numel()];
                    // SAFETY: contiguous f32 CPU tensors; `dx` is fresh and written only
                    // here.
                    unsafe {
                        ck::conv_backward_par(
                            self.threads(),
                            pk,
                            ck::Input {
                                x: as_slice(x),
                                relu: *relu_in,
                            },
                            self.plane(),
                            as_slice(&dy),
                            relu_out.as_ref().map(|t| as_slice(t)),
                            dx.as_ref().map(|t| as_mut_slice(t)),
                            &mut dw,
                            &mut db,
                        );
                    }
                    add_unpacked(pg, first, st, w, pk, &dw);
                    add_to(&mut pg[first + st.index(b)], Tensor::from_slice(&db));
                    if let Some(dx) = dx {
                        add_to(&mut lg[st.inputs[*slot]], dx);
                    }
                }
            }
            // `kernel_step` keeps an output for a ReLU and packs for convs.
            (KernelOp::Relu | KernelOp::Convs { .. }, _) => {
                unreachable!("kernel_step kept what this op needs")
            }
        }
    }

    /// Differentiates `sur` (a scalar built from step `st`'s inputs and parameters) with
    /// respect to both, adding into the leaves' and parameters' gradient slots.
    fn through(
        &self,
        st: &Step,
        first: usize,
        sur: &Tensor,
        leaves: &[Tensor],
        lg: &mut [Option<Tensor>],
        pg: &mut [Option<Tensor>],
    ) {
        // An input named twice (a skip_sum of its own input) is one leaf: ask once.
        let mut ins: Vec<usize> = st.inputs.clone();
        ins.sort_unstable();
        ins.dedup();
        let mut wrt: Vec<&Tensor> = ins.iter().map(|&j| &leaves[j]).collect();
        wrt.extend(st.params.iter());
        let g = Tensor::run_backward(&[sur], &wrt, false, false);
        let (gi, gp) = g.split_at(ins.len());
        for (&j, t) in ins.iter().zip(gi) {
            if t.defined() {
                add_to(&mut lg[j], t.shallow_clone());
            }
        }
        for (k, t) in gp.iter().enumerate() {
            if t.defined() {
                add_to(&mut pg[first + k], t.shallow_clone());
            }
        }
    }

    /// One replica's share of a batch of `n`: its summed NLL / n, and its flat gradient.
    fn replica(&self, imgs: &Tensor, labels: Option<&Tensor>, n: usize) -> (Tensor, Tensor) {
        let cond = self.one_hot(labels);
        let tape = self.forward_tape(&self.scale(imgs), cond.as_ref());
        let loss = self.nll_from_logits(tape.logits(), imgs).sum(Kind::Float) / n as f64;
        let (g, _) = self.grads(tape, &loss, None);
        let flat: Vec<Tensor> = g.iter().map(|t| t.reshape([-1])).collect();
        (loss.detach(), Tensor::cat(&flat, 0))
    }

    /// Mean NLL of a batch of raw images (nats per image) and its gradient, laid out like
    /// `flat_parameters()`: the training step's forward and backward.
    ///
    /// On the CPU with several threads the batch is split over replicas, one thread each
    /// (libtorch's intra-op pool and the fused kernels then run single-threaded in each):
    /// small convolutions parallelise poorly inside an op, and this way the libtorch ops
    /// around the fused recurrences run in parallel too. Each replica returns its
    /// gradients instead of accumulating them, and they are summed in a fixed order, so a
    /// step is reproducible bit for bit.
    ///
    /// `labels`: a conditional model's labels (int64, N), split with the images.
    pub fn nll_grads(&self, images: &Tensor, labels: Option<&Tensor>) -> (Tensor, Tensor) {
        let n = images.size()[0] as usize;
        let k = if self.device == tch::Device::Cpu && self.data_parallel {
            super::threads().min(n)
        } else {
            1
        };
        if k <= 1 {
            return self.replica(images, labels, n);
        }
        let shared = &Shared(self);
        let chunks: Vec<Shared<(Tensor, Option<Tensor>)>> = fused::split(n, k)
            .into_iter()
            .map(|(a, c)| {
                let part = |t: &Tensor| t.narrow(0, a as i64, c as i64);
                Shared((part(images), labels.map(part)))
            })
            .collect();
        let parts = crate::util::on_threads(chunks, |chunk| {
            let (imgs, labels) = chunk.0;
            // One thread inside each replica: libtorch's pool (set per thread) and
            // the fused kernels.
            tch::set_num_threads(1);
            super::with_threads(1, || shared.get().replica(&imgs, labels.as_ref(), n))
        });
        // This thread's libtorch ops between steps (the gradient sum, the optimizer) are
        // small: with an OpenMP team of its own, the team's worker kept spinning through
        // the next step's replicas and took a core from them (PixelCNN on 2 cores: 440
        // images/s, against 605 with one thread here). `evaluate` restores the policy.
        tch::set_num_threads(1);
        let mut it = parts.into_iter();
        let (mut loss, mut grad) = it.next().expect("one replica at least");
        for (l, g) in it {
            loss += l;
            grad += g;
        }
        (loss, grad)
    }
}

/// A conv term's weight `name`, masked and packed for `conv_kernels`.
fn pack(st: &Step, name: &str) -> Packed {
    let w = st.weight(name).detach().contiguous();
    let dims = w.size();
    let shape = [0, 1, 2, 3].map(|i| dims[i] as usize);
    let crop = Crop::of(shape[2], shape[3]);
    // SAFETY: contiguous f32 CPU tensors, only read.
    unsafe {
        Packed::new(
            as_slice(&w),
            st.mask(name).map(|m| as_slice(m)),
            shape,
            crop.pad_top,
            crop.pad_side,
        )
    }
}

/// Adds a conv term's packed weight gradient `dw`, scattered to the full shape of the
/// parameter `name` and masked, into its gradient slot.
fn add_unpacked(
    pg: &mut [Option<Tensor>],
    first: usize,
    st: &Step,
    name: &str,
    pk: &Packed,
    dw: &[f32],
) {
    // SAFETY: masks are contiguous f32 CPU tensors, only read.
    let mask = st.mask(name).map(|m| unsafe { as_slice(m) });
    let full = Tensor::from_slice(&pk.unpack_grad(dw, mask));
    add_to(
        &mut pg[first + st.index(name)],
        full.reshape(st.param(name).size()),
    );
}

/// Adds `t` into a gradient slot.
fn add_to(slot: &mut Option<Tensor>, t: Tensor) {
    *slot = Some(match slot.take() {
        Some(s) => s + t,
        None => t,
    });
}

/// Adds each gradient into its tensor's `.grad()` with one backward pass over
/// `sum(p * g)`, whose gradient with respect to `p` is exactly `g`.
fn accumulate(pairs: &[(&Tensor, Tensor)]) {
    let mut sur: Option<Tensor> = None;
    for (p, g) in pairs {
        let t = (*p * g).sum(Kind::Float);
        sur = Some(match sur {
            Some(s) => s + t,
            None => t,
        });
    }
    if let Some(s) = sur {
        s.backward();
    }
}

/// Lets the training replicas share the model and hand tensors across threads.
///
/// SAFETY: tch's `Tensor` is `Send` but not `Sync` only because libtorch tensors are not
/// safe to *mutate* from several threads. The replicas only read the parameters, masks
/// and input images (forward ops and `run_backward`, which does not accumulate into
/// `.grad()`); libtorch's autograd is itself thread-safe for that.
struct Shared<T>(T);
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The wrapped value (a method, so closures capture the whole wrapper, not its field).
    fn get(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ReLU of the MNIST PixelCNN runs inside a conv: in each block the two after a
    /// conv read by them alone (`relu_after`) and the block input's, which the residual
    /// sum also reads, inside the conv after it (`relu_before`); after the blocks, one of
    /// each kind.
    #[test]
    fn the_pixelcnn_runs_every_relu_inside_a_conv() {
        let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/pixelcnn_7_mnist.yaml");
        let (_, model, _) = crate::compile_file(std::path::Path::new(spec)).unwrap();
        let w = crate::weights::Weights::init(&model, 1);
        let tm = TorchModel::new(&model, &w, tch::Device::Cpu).unwrap();
        let relus: Vec<usize> = (0..tm.steps.len())
            .filter(|&i| matches!(tm.steps[i].op, Op::Relu))
            .collect();
        assert_eq!(relus.len(), 7 * 3 + 2);
        let r = &tm.relus;
        assert!(relus.iter().all(|&i| r.inside[i]), "a ReLU runs on its own");
        let count = |v: &[Option<usize>]| v.iter().flatten().count();
        // 15 + 8 = 23: each ReLU taken by one conv only.
        assert_eq!((count(&r.after), count(&r.before)), (7 * 2 + 1, 7 + 1));
    }
}
