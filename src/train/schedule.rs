//! Learning-rate schedules: the lr of every optimizer step as a pure function of the step.
//!
//! The formulas (t = the number of steps already taken, 0 for the first step; W =
//! `warmup_steps`; N = `decay_steps`; u = t - W, the steps since the warm-up):
//!
//! - warm-up, t < W: `lr * (t + 1) / W` (every kind);
//! - `constant`: `lr`;
//! - `exponential`: `max(min_lr, lr * decay_rate^(u / N))` (a smooth decay, not a
//!   staircase);
//! - `cosine`: `min_lr + (lr - min_lr) * (1 + cos(pi * min(1, u / (N - W)))) / 2`: `lr` at
//!   the end of the warm-up, `min_lr` from step N on.
//!
//! A run resolves `decay_steps` once, when it starts (the spec's number, else one epoch
//! for `exponential` and the run's planned steps for `cosine`) and writes it into its
//! spec.yaml; `--resume` reads the schedule back from there, so a resumed run uses
//! exactly the rates of an uninterrupted one whatever step limit the resumed command has.

use crate::front::ast::{Schedule, ScheduleKind};
use anyhow::{bail, Result};

/// A schedule with everything resolved: `lr_at` needs nothing else.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    pub lr: f64,
    pub kind: ScheduleKind,
    pub warmup_steps: u64,
    pub decay_rate: f64,
    pub decay_steps: u64,
    pub min_lr: f64,
}

impl LrSchedule {
    /// The learning rate of the step taken after `t` steps (t = 0: the first step).
    pub fn lr_at(&self, t: u64) -> f64 {
        if t < self.warmup_steps {
            return self.lr * (t + 1) as f64 / self.warmup_steps as f64;
        }
        let u = (t - self.warmup_steps) as f64;
        match self.kind {
            ScheduleKind::Constant => self.lr,
            ScheduleKind::Exponential => {
                let x = self.lr * self.decay_rate.powf(u / self.decay_steps as f64);
                x.max(self.min_lr)
            }
            ScheduleKind::Cosine => {
                let span = self.decay_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let p = (u / span).min(1.0);
                self.min_lr
                    + (self.lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}

/// Fills in the schedule's `decay_steps` where the spec leaves it to the run: one epoch
/// (`per_epoch` steps) for `exponential`, the run's planned steps for `cosine`.
/// `constant` keeps `None`, so a spec without a schedule is written back unchanged.
pub fn resolve(s: &Schedule, per_epoch: u64, planned_steps: Option<u64>) -> Result<Schedule> {
    let mut s = s.clone();
    if s.decay_steps.is_none() {
        s.decay_steps = match s.kind {
            ScheduleKind::Constant => None,
            ScheduleKind::Exponential => Some(per_epoch.max(1)),
            ScheduleKind::Cosine => match planned_steps {
                Some(n) => Some(n),
                None => bail!(
                    "`schedule: cosine` decays over the run's planned steps, but this run has none (--minutes alone, and the spec gives no `steps` or `epochs`): give `steps`, `epochs` or `decay_steps` in the spec"
                ),
            },
        };
    }
    if let (ScheduleKind::Cosine, Some(n)) = (s.kind, s.decay_steps) {
        if n <= s.warmup_steps {
            bail!(
                "the cosine schedule would end at step {n}, within its {} warm-up steps: give more steps or a larger `decay_steps`",
                s.warmup_steps
            );
        }
    }
    Ok(s)
}

/// The resolved schedule of a run whose base learning rate is `lr`.
pub fn for_run(s: &Schedule, lr: f64) -> Result<LrSchedule> {
    if s.kind != ScheduleKind::Constant && s.min_lr >= lr {
        bail!(
            "`min_lr` ({}) must be below the learning rate ({lr}); lower `min_lr` or raise --lr",
            s.min_lr
        );
    }
    Ok(LrSchedule {
        lr,
        kind: s.kind,
        warmup_steps: s.warmup_steps,
        decay_rate: s.decay_rate.unwrap_or(1.0),
        decay_steps: s.decay_steps.unwrap_or(1).max(1),
        min_lr: s.min_lr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: ScheduleKind, warmup: u64, rate: f64, n: u64, min_lr: f64) -> LrSchedule {
        LrSchedule {
            lr: 0.01,
            kind,
            warmup_steps: warmup,
            decay_rate: rate,
            decay_steps: n,
            min_lr,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-15 * b.abs().max(1e-300)
    }

    #[test]
    fn constant_is_lr_after_a_linear_warmup() {
        let s = sched(ScheduleKind::Constant, 4, 1.0, 1, 0.0);
        let got: Vec<f64> = (0..6).map(|t| s.lr_at(t)).collect();
        let want = [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01];
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, w), "{got:?}");
        }
        let plain = sched(ScheduleKind::Constant, 0, 1.0, 1, 0.0);
        assert_eq!(plain.lr_at(0), 0.01);
        assert_eq!(plain.lr_at(1_000_000), 0.01);
    }

    #[test]
    fn exponential_follows_the_formula_and_its_floor() {
        // Halves every 100 steps after 10 warm-up steps.
        let s = sched(ScheduleKind::Exponential, 10, 0.5, 100, 1e-4);
        assert!(close(s.lr_at(9), 0.01));
        assert!(close(s.lr_at(10), 0.01));
        assert!(close(s.lr_at(110), 0.005));
        assert!(close(s.lr_at(210), 0.0025));
        assert!(close(s.lr_at(60), 0.01 * 0.5f64.powf(0.5)));
        // 0.01 * 0.5^10 < 1e-4: the floor.
        assert_eq!(s.lr_at(1010), 1e-4);
    }

    #[test]
    fn cosine_goes_from_lr_to_the_floor_at_decay_steps() {
        let s = sched(ScheduleKind::Cosine, 100, 1.0, 1100, 1e-5);
        assert!(close(s.lr_at(49), 0.005));
        assert!(close(s.lr_at(100), 0.01));
        // Halfway through the decay: the mean of lr and min_lr.
        assert!(close(s.lr_at(600), (0.01 + 1e-5) / 2.0));
        // A quarter of the way: (1 + cos(pi/4)) / 2 of the range.
        let q = 1e-5 + (0.01 - 1e-5) * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
        assert!(close(s.lr_at(350), q));
        assert!(close(s.lr_at(1100), 1e-5));
        assert!(close(s.lr_at(5000), 1e-5));
        // Never rises while it decays.
        assert!((100..1100).all(|t| s.lr_at(t + 1) <= s.lr_at(t)));
    }

    #[test]
    fn resolving_fills_decay_steps_for_the_run() {
        let cos = Schedule {
            kind: ScheduleKind::Cosine,
            warmup_steps: 5,
            ..Schedule::default()
        };
        assert_eq!(resolve(&cos, 3125, Some(40)).unwrap().decay_steps, Some(40));
        assert!(resolve(&cos, 3125, None).is_err());
        assert!(resolve(&cos, 3125, Some(5)).is_err());
        let exp = Schedule {
            kind: ScheduleKind::Exponential,
            decay_rate: Some(0.9),
            ..Schedule::default()
        };
        assert_eq!(resolve(&exp, 3125, None).unwrap().decay_steps, Some(3125));
        let fixed = Schedule {
            decay_steps: Some(7),
            ..exp
        };
        assert_eq!(resolve(&fixed, 3125, Some(1)).unwrap().decay_steps, Some(7));
        assert_eq!(
            resolve(&Schedule::default(), 3125, Some(9)).unwrap(),
            Schedule::default()
        );
        assert!(for_run(&cos, 0.0).is_err());
    }
}
