//! Optimizers (RMSProp, Adam) and gradient clipping, written on tensors so their state can
//! be checkpointed with the weights and training resumes bit for bit.

use crate::spec::ast::Optimizer as Kind_;
use tch::{Kind, Tensor};

pub struct Optimizer {
    pub kind: Kind_,
    pub lr: f64,
    /// Steps taken (Adam's bias correction needs it).
    pub t: u64,
    /// First moments (Adam) or unused (RMSProp), one per parameter.
    pub m: Vec<Tensor>,
    /// Second moments (Adam) / mean squares (RMSProp).
    pub v: Vec<Tensor>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ALPHA: f64 = 0.99;
const EPS: f64 = 1e-8;

impl Optimizer {
    pub fn new(kind: Kind_, lr: f64, params: &[&Tensor]) -> Optimizer {
        let zeros = |p: &&Tensor| p.zeros_like().set_requires_grad(false);
        Optimizer {
            kind,
            lr,
            t: 0,
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
        }
    }

    /// One update with the gradients currently in `params`; clears them.
    pub fn step(&mut self, params: &[&Tensor]) {
        self.t += 1;
        tch::no_grad(|| {
            for (k, p) in params.iter().enumerate() {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                match self.kind {
                    Kind_::Adam => {
                        let _ = self.m[k].g_mul_scalar_(BETA1).g_add_(&(&g * (1.0 - BETA1)));
                        let _ = self.v[k]
                            .g_mul_scalar_(BETA2)
                            .g_add_(&(&g * &g * (1.0 - BETA2)));
                        let bc1 = 1.0 - BETA1.powi(self.t as i32);
                        let bc2 = 1.0 - BETA2.powi(self.t as i32);
                        let denom = (&self.v[k] / bc2).sqrt() + EPS;
                        let upd = &self.m[k] / denom * (self.lr / bc1);
                        let mut p = p.shallow_clone();
                        let _ = p.g_sub_(&upd);
                    }
                    Kind_::RmsProp => {
                        let _ = self.v[k]
                            .g_mul_scalar_(ALPHA)
                            .g_add_(&(&g * &g * (1.0 - ALPHA)));
                        let upd = &g / (self.v[k].sqrt() + EPS) * self.lr;
                        let mut p = p.shallow_clone();
                        let _ = p.g_sub_(&upd);
                    }
                }
                let _ = g.zero_();
            }
        });
    }

    /// State tensors by name, for checkpoints.
    pub fn state(&self, names: &[&str]) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (k, n) in names.iter().enumerate() {
            v.push((format!("m.{n}"), self.m[k].shallow_clone()));
            v.push((format!("v.{n}"), self.v[k].shallow_clone()));
        }
        v
    }
}

/// Scales gradients so their global L2 norm is at most `max`; returns the norm before.
pub fn clip_grad_norm(params: &[&Tensor], max: f64) -> f64 {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params
            .iter()
            .map(|p| p.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let sq: Vec<Tensor> = grads
            .iter()
            .map(|g| g.pow_tensor_scalar(2).sum(Kind::Float))
            .collect();
        let norm = f64::try_from(Tensor::stack(&sq, 0).sum(Kind::Float).sqrt()).unwrap_or(f64::NAN);
        if norm.is_finite() && norm > max {
            let s = max / (norm + 1e-6);
            for g in &grads {
                let mut g = g.shallow_clone();
                let _ = g.g_mul_scalar_(s);
            }
        }
        norm
    })
}
