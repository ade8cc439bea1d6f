//! Optimizers (RMSProp, Adam) and gradient clipping, written on tensors so their state can
//! be checkpointed with the weights and training resumes bit for bit.

use crate::backend::torch::views;
use crate::front::ast::Optimizer as Kind_;
use tch::{Kind, Tensor};

pub struct Optimizer {
    pub kind: Kind_,
    pub lr: f64,
    /// Steps taken (Adam's bias correction needs it).
    pub t: u64,
    /// First moments (Adam) or unused (RMSProp), flat, laid out like the model's
    /// `flat_parameters()`.
    m: Tensor,
    /// Second moments (Adam) / mean squares (RMSProp), flat.
    v: Tensor,
    /// Shape of each parameter, in order: the layout of the flat tensors.
    shapes: Vec<Vec<i64>>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ALPHA: f64 = 0.99;
const EPS: f64 = 1e-8;
/// Elements updated per group of ops: bounds the temporaries for big models (a few
/// hundred MB of parameters) while a small model is one group.
const CHUNK: i64 = 1 << 22;

impl Optimizer {
    /// State for `params` (the model's `parameters()`, in order), all zero.
    pub fn new(kind: Kind_, lr: f64, params: &[&Tensor]) -> Optimizer {
        let shapes: Vec<Vec<i64>> = params.iter().map(|p| p.size()).collect();
        let n: i64 = params.iter().map(|p| p.numel() as i64).sum();
        let device = params.first().map_or(tch::Device::Cpu, |p| p.device());
        let zeros = || Tensor::zeros([n], (Kind::Float, device));
        Optimizer {
            kind,
            lr,
            t: 0,
            m: zeros(),
            v: zeros(),
            shapes,
        }
    }

    /// One update of `params` (the model's `flat_parameters()`) with the flat gradient `g`.
    pub fn step(&mut self, params: &Tensor, g: &Tensor) {
        self.t += 1;
        let bc1 = 1.0 - BETA1.powi(self.t as i32);
        let bc2 = 1.0 - BETA2.powi(self.t as i32);
        let n = params.numel() as i64;
        tch::no_grad(|| {
            let mut at = 0;
            while at < n {
                let len = CHUNK.min(n - at);
                let mut p = params.narrow(0, at, len);
                let g = g.narrow(0, at, len);
                let mut v = self.v.narrow(0, at, len);
                match self.kind {
                    Kind_::Adam => {
                        let mut m = self.m.narrow(0, at, len);
                        let _ = m.g_mul_scalar_(BETA1).g_add_(&(&g * (1.0 - BETA1)));
                        let _ = v.g_mul_scalar_(BETA2).g_add_(&(&g * &g * (1.0 - BETA2)));
                        let denom = (&v / bc2).sqrt() + EPS;
                        let _ = p.g_sub_(&(&m / denom * (self.lr / bc1)));
                    }
                    Kind_::RmsProp => {
                        let _ = v.g_mul_scalar_(ALPHA).g_add_(&(&g * &g * (1.0 - ALPHA)));
                        let _ = p.g_sub_(&(&g / (v.sqrt() + EPS) * self.lr));
                    }
                }
                at += len;
            }
        });
    }

    /// Each parameter's state, (first moment, second moment), as views of the flat state.
    pub fn moments(&self) -> Vec<(Tensor, Tensor)> {
        views(&self.m, &self.shapes)
            .into_iter()
            .zip(views(&self.v, &self.shapes))
            .collect()
    }

    /// State tensors by name, for checkpoints.
    pub fn state(&self, names: &[&str]) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (n, (m, s)) in names.iter().zip(self.moments()) {
            v.push((format!("m.{n}"), m));
            v.push((format!("v.{n}"), s));
        }
        v
    }
}

/// Scales the flat gradient `g` so its L2 norm is at most `max`; returns the norm before.
pub fn clip_grad_norm(g: &Tensor, max: f64) -> f64 {
    tch::no_grad(|| {
        let norm = f64::try_from(g.norm()).unwrap_or(f64::NAN);
        if norm.is_finite() && norm > max {
            let _ = g.shallow_clone().g_mul_scalar_(max / (norm + 1e-6));
        }
        norm
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's documented Adam / RMSprop (no weight decay, no momentum), per scalar,
    /// in f64.
    fn reference(kind: Kind_, lr: f64, p: &mut [f64], grads: &[Vec<f64>]) {
        let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..p.len() {
                match kind {
                    Kind_::Adam => {
                        m[i] = BETA1 * m[i] + (1.0 - BETA1) * g[i];
                        v[i] = BETA2 * v[i] + (1.0 - BETA2) * g[i] * g[i];
                        let mh = m[i] / (1.0 - BETA1.powi(t));
                        let vh = v[i] / (1.0 - BETA2.powi(t));
                        p[i] -= lr * mh / (vh.sqrt() + EPS);
                    }
                    Kind_::RmsProp => {
                        v[i] = ALPHA * v[i] + (1.0 - ALPHA) * g[i] * g[i];
                        p[i] -= lr * g[i] / (v[i].sqrt() + EPS);
                    }
                }
            }
        }
    }

    #[test]
    fn flat_updates_match_the_documented_formulas() {
        // Two parameters viewed out of one buffer, as TorchModel lays them out.
        let init: Vec<f32> = (0..10).map(|i| (i as f32 * 0.37).sin()).collect();
        let grads: Vec<Vec<f64>> = (0..4)
            .map(|s| {
                (0..10)
                    .map(|i| ((i * 7 + s * 3) as f64 * 0.61).cos())
                    .collect()
            })
            .collect();
        for kind in [Kind_::Adam, Kind_::RmsProp] {
            let flat = Tensor::from_slice(&init);
            let a = flat.narrow(0, 0, 6).view([2, 3]);
            let b = flat.narrow(0, 6, 4);
            let mut opt = Optimizer::new(kind, 0.01, &[&a, &b]);
            for g in &grads {
                let g32: Vec<f32> = g.iter().map(|&x| x as f32).collect();
                opt.step(&flat, &Tensor::from_slice(&g32));
            }
            let mut want: Vec<f64> = init.iter().map(|&x| x as f64).collect();
            reference(kind, 0.01, &mut want, &grads);
            let got = Vec::<f32>::try_from(&flat).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-6, "{kind:?}: {g} vs {w}");
            }
            // The per-parameter views used by checkpoints see the same state.
            let (m, v) = &opt.moments()[1];
            assert_eq!(m.size(), vec![4]);
            assert!(f64::try_from(v.sum(Kind::Double)).unwrap() > 0.0);
        }
    }

    #[test]
    fn clipping_scales_to_the_limit_and_reports_the_norm_before() {
        let g = Tensor::from_slice(&[3.0f32, 4.0]);
        let n = clip_grad_norm(&g, 1.0);
        assert!((n - 5.0).abs() < 1e-6);
        let after = f64::try_from(g.norm()).unwrap();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        let small = Tensor::from_slice(&[0.3f32, 0.4]);
        assert!((clip_grad_norm(&small, 1.0) - 0.5).abs() < 1e-6);
        assert_eq!(Vec::<f32>::try_from(&small).unwrap(), vec![0.3, 0.4]);
    }
}
