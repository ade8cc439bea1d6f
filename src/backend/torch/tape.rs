//! Training forward/backward that mixes libtorch autograd with the fused CPU recurrence
//! kernels (`fused.rs`), which autograd cannot see.
//!
//! tch cannot register custom autograd functions, so the graph is cut at every step's
//! output: each step reads detached leaves of its inputs, and `backward` walks the steps
//! in reverse topological order. A step's output gradient is complete when it is reached
//! (every consumer comes later in the order and has already pushed into the leaf). An
//! ordinary step is then differentiated by autograd through the surrogate
//! `sum(out * grad)`, whose gradient is exactly `grad`; a fused step runs its hand-written
//! backward and feeds the results in the same way. Cutting at every step (not only around
//! the kernels) means no part of the graph is traversed twice.

use super::fused::{self, Geom, InConv, Layout, Params, Saved};
use super::{layers, Step, TorchModel};
use crate::ir::Op;
use tch::{Kind, Tensor};

enum Seg {
    /// Ordinary libtorch op: its output, with its autograd graph.
    Plain(Tensor),
    /// Fused recurrence: what it read and its saved state.
    Fused { fi: FusedInputs, saved: Saved },
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
/// the kernel, so it reads the layer input x; the Row LSTM's 1 x k conv stays a libtorch
/// op and the kernel reads its output S.
pub(crate) struct FusedInputs {
    /// x (a leaf of the tape) or S (with its autograd graph).
    input: Tensor,
    /// Contiguous data of `input`.
    data: Tensor,
    /// The masked input-conv weight (with graph) and the detached data of it and of the
    /// bias, when the conv runs in the kernel.
    conv: Option<(Tensor, Tensor, Tensor)>,
    ss: Tensor,
    h0: Tensor,
    c0: Tensor,
}

impl FusedInputs {
    fn new(st: &Step, x: &Tensor) -> FusedInputs {
        let (input, conv) = match st.op {
            Op::DiagBiLstm { .. } => {
                let wm = layers::masked_weight(st, 0);
                let w = wm.detach().contiguous();
                let b = st.params[1].detach().contiguous();
                (x.shallow_clone(), Some((wm, w, b)))
            }
            _ => (layers::input_to_state(st, x), None),
        };
        FusedInputs {
            data: input.detach().contiguous(),
            input,
            conv,
            ss: st.params[2].detach().contiguous(),
            h0: st.params[3].detach().contiguous(),
            c0: st.params[4].detach().contiguous(),
        }
    }

    /// The kernel's view of the parameters.
    ///
    /// # Safety
    /// The tensors are contiguous f32 on the CPU (fused runs only there) and only read.
    unsafe fn params(&self) -> Params<'_> {
        Params {
            ss: as_slice(&self.ss),
            h0: as_slice(&self.h0),
            c0: as_slice(&self.c0),
            conv: self.conv.as_ref().map(|(_, w, b)| InConv {
                w: as_slice(w),
                b: as_slice(b),
                cin: (w.numel() / b.numel()),
            }),
        }
    }
}

impl TorchModel {
    /// The geometry of a fused recurrence step for a batch of `n`.
    pub(crate) fn geom(&self, st: &Step, n: usize) -> Option<Geom> {
        let (layout, hidden) = match st.op {
            Op::RowLstm { hidden, .. } => (Layout::Row, hidden),
            Op::DiagBiLstm { hidden, shift } => (Layout::Diag { shift }, hidden),
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
        x: &Tensor,
        save: bool,
    ) -> (FusedInputs, Tensor, Option<Saved>) {
        let fi = FusedInputs::new(st, x);
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

    /// Forward pass for training: call `backward` with the loss computed from
    /// `tape.logits()`. `x` is the scaled input (see `forward_scaled`); it may require grad.
    pub fn forward_tape(&self, x: &Tensor) -> Tape {
        // Without a fused step, cutting the graph would only add work.
        if !(self.fused && self.recurrent) {
            return Tape {
                mode: Mode::Whole(self.forward_scaled(x)),
            };
        }
        let n = x.size()[0] as usize;
        let mut segs: Vec<Seg> = Vec::with_capacity(self.steps.len());
        let mut leaves: Vec<Tensor> = Vec::with_capacity(self.steps.len());
        for st in &self.steps {
            let seg = match (&st.op, self.geom(st, n)) {
                (Op::Input, _) => Seg::Plain(x.shallow_clone()),
                (_, Some(g)) => {
                    let (fi, y, saved) = self.fused_step(st, g, &leaves[st.inputs[0]], true);
                    leaves.push(y.set_requires_grad(true));
                    segs.push(Seg::Fused {
                        fi,
                        saved: saved.expect("saved when asked"),
                    });
                    continue;
                }
                _ => {
                    let ins: Vec<&Tensor> = st.inputs.iter().map(|&i| &leaves[i]).collect();
                    Seg::Plain(layers::apply(st, &ins, self.height, self.width))
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
    /// and the input's `.grad()`.
    pub fn backward(&self, tape: Tape, loss: &Tensor) {
        let (segs, leaves) = match tape.mode {
            Mode::Whole(_) => return loss.backward(),
            Mode::Cut { segs, leaves, .. } => (segs, leaves),
        };
        loss.backward();
        for (i, seg) in segs.into_iter().enumerate().rev() {
            let g = leaves[i].grad();
            if !g.defined() {
                continue; // nothing downstream used this output
            }
            match seg {
                Seg::Plain(out) => {
                    if out.requires_grad() {
                        (&out * &g).sum(Kind::Float).backward();
                    }
                }
                Seg::Fused { fi, saved } => {
                    let st = &self.steps[i];
                    let dy = g.contiguous();
                    let d_input = fi.data.empty_like();
                    // SAFETY: contiguous f32 CPU tensors; `d_input` is fresh and written
                    // only here.
                    let gr = unsafe {
                        fused::backward(
                            saved,
                            as_slice(&dy),
                            fi.params(),
                            as_slice(&fi.data),
                            as_mut_slice(&d_input),
                        )
                    };
                    let like = |v: &[f32], t: &Tensor| Tensor::from_slice(v).reshape(t.size());
                    let (ss, h0, c0) = (&st.params[2], &st.params[3], &st.params[4]);
                    let mut surrogate = (&fi.input * &d_input).sum(Kind::Float)
                        + (ss * like(&gr.dss, ss)).sum(Kind::Float)
                        + (h0 * like(&gr.dh0, h0)).sum(Kind::Float)
                        + (c0 * like(&gr.dc0, c0)).sum(Kind::Float);
                    if let Some((wm, _, _)) = &fi.conv {
                        let b = &st.params[1];
                        surrogate = surrogate
                            + (wm * like(&gr.dw, wm)).sum(Kind::Float)
                            + (b * like(&gr.db, b)).sum(Kind::Float);
                    }
                    surrogate.backward();
                }
            }
        }
    }

    /// Mean NLL of a batch of raw images (nats per image), with its gradient accumulated
    /// into the parameters: the training step's forward and backward.
    pub fn nll_backward(&self, images: &Tensor) -> Tensor {
        let tape = self.forward_tape(&self.scale(images));
        let loss = self
            .nll_from_logits(tape.logits(), images)
            .mean(Kind::Float);
        self.backward(tape, &loss);
        loss.detach()
    }
}
