//! Learning rates: PyTorch's MultiStepLR, CosineAnnealingLR (closed form) and a constant rate
//! per epoch, after an optional linear warm-up per optimiser step.

use wrnc_recipe::{Schedule, TrainConfig};

/// The learning rate of epoch `epoch` (counted from 0) after the warm-up, i.e. for
/// `epoch >= warmup` (the warm-up itself is per step: [`LrSchedule::lr`]):
/// * multistep: `lr0 * gamma^(number of milestones <= epoch)`; milestones are absolute epoch
///   numbers (as written in the spec), warmup or not,
/// * cosine: `min_lr + (lr0 - min_lr) * (1 + cos(pi * e / T)) / 2` with `e = epoch - warmup`
///   and `T = epochs - warmup`,
/// * constant: `lr0`.
pub fn lr_at(schedule: &Schedule, lr0: f64, epochs: usize, warmup: usize, epoch: usize) -> f64 {
    match schedule {
        Schedule::Multistep { milestones, gamma } => {
            let passed = milestones.iter().filter(|&&m| m <= epoch).count();
            lr0 * gamma.powi(passed as i32)
        }
        Schedule::Cosine { min_lr } => {
            let t = epochs.saturating_sub(warmup).max(1) as f64;
            let e = (epoch.saturating_sub(warmup) as f64).min(t);
            min_lr + (lr0 - min_lr) * (1.0 + (std::f64::consts::PI * e / t).cos()) / 2.0
        }
        Schedule::Constant => lr0,
    }
}

/// The learning rate of every optimiser step of a run: a linear warm-up over the first
/// `warmup_epochs * steps_per_epoch` steps, then the per-epoch schedule ([`lr_at`]).
///
/// Warm-up, with `n = warmup_epochs * steps_per_epoch` and `s` the run's step counted from 0
/// (`s = epoch * steps_per_epoch + step`): `lr(s) = lr0 * ((s + 1) / n)` for `s < n`. The first
/// step trains at `lr0 / n`, the last warm-up step at exactly `lr0`. This is PyTorch's
/// `LinearLR(start_factor = 1/n, end_factor = 1, total_iters = n - 1)` stepped after every
/// optimiser step, and the per-iteration gradual warm-up of Goyal et al. 2017 ("Accurate,
/// Large Minibatch SGD", which rises linearly from lr0/k to lr0 over 5 epochs). timm's
/// schedulers instead start at `warmup_lr_init` and reach `lr0` at step `warmup_t`, per epoch
/// unless `t_in_epochs=False`. The rate depends only on the settings and the step's position,
/// so a run resumed in the middle of the warm-up continues it exactly.
#[derive(Debug, Clone, Copy)]
pub struct LrSchedule<'a> {
    /// The schedule after the warm-up.
    pub schedule: &'a Schedule,
    /// The base learning rate (`train.optimizer.lr`).
    pub lr0: f64,
    /// Epochs of the run (`train.epochs`).
    pub epochs: usize,
    /// Epochs of linear warm-up (`train.warmup_epochs`; 0: none).
    pub warmup_epochs: usize,
    /// Optimiser steps per epoch.
    pub steps_per_epoch: usize,
}

impl<'a> LrSchedule<'a> {
    /// The schedule of a `train` section with `steps_per_epoch` steps per epoch.
    pub fn new(train: &'a TrainConfig, steps_per_epoch: usize) -> Self {
        LrSchedule {
            schedule: &train.schedule,
            lr0: train.optimizer.lr,
            epochs: train.epochs,
            warmup_epochs: train.warmup_epochs,
            steps_per_epoch,
        }
    }

    /// The learning rate of step `step` (counted from 0) of epoch `epoch` (counted from 0).
    pub fn lr(&self, epoch: usize, step: usize) -> f64 {
        let warmup_steps = self.warmup_epochs as u64 * self.steps_per_epoch as u64;
        let s = epoch as u64 * self.steps_per_epoch as u64 + step as u64;
        if s < warmup_steps {
            // The factor first, as PyTorch's LinearLR: the last warm-up step is exactly lr0.
            return self.lr0 * ((s + 1) as f64 / warmup_steps as f64);
        }
        lr_at(
            self.schedule,
            self.lr0,
            self.epochs,
            self.warmup_epochs,
            epoch,
        )
    }

    /// The learning rate `metrics.csv` records for epoch `epoch`: that of its last step.
    pub fn epoch_lr(&self, epoch: usize) -> f64 {
        self.lr(epoch, self.steps_per_epoch.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    /// Asserts `lr_at(s, lr0, epochs, warmup, epoch)` is `want` for each `(epoch, want)`.
    fn check(s: &Schedule, lr0: f64, epochs: usize, warmup: usize, cases: &[(usize, f64)]) {
        for &(epoch, want) in cases {
            let got = lr_at(s, lr0, epochs, warmup, epoch);
            assert!(close(got, want), "epoch {epoch}: {got} vs {want}");
        }
    }

    #[test]
    fn multistep_default_milestones() {
        let s = Schedule::default();
        check(
            &s,
            0.1,
            200,
            0,
            &[
                (0, 0.1),
                (59, 0.1),
                (60, 0.02),
                (119, 0.02),
                (120, 0.004),
                (160, 0.0008),
                (199, 0.0008),
            ],
        );
    }

    #[test]
    fn cosine_closed_form() {
        let s = Schedule::Cosine { min_lr: 0.0 };
        check(&s, 0.1, 10, 0, &[(0, 0.1), (5, 0.05)]);
        // (1 + cos(pi/10)) / 2 * 0.1 = 0.09755282581475769
        check(&s, 0.1, 10, 0, &[(1, 0.097_552_825_814_757_69)]);
        let s = Schedule::Cosine { min_lr: 0.01 };
        // 0.01 + 0.09 * (1 + cos(9 pi / 10)) / 2 = 0.01220246...
        assert!(close(
            lr_at(&s, 0.1, 10, 0, 9),
            0.01 + 0.09 * (1.0 + (0.9 * std::f64::consts::PI).cos()) / 2.0
        ));
        assert!((lr_at(&s, 0.1, 10, 0, 9) - 0.012_202_456_766_718_1).abs() < 1e-15);
    }

    /// The rate of `(epoch, step)` for each case, with `steps` steps per epoch.
    fn check_steps(
        s: &Schedule,
        (lr0, epochs, warmup, steps): (f64, usize, usize, usize),
        cases: &[(usize, usize, f64)],
    ) {
        let sched = LrSchedule {
            schedule: s,
            lr0,
            epochs,
            warmup_epochs: warmup,
            steps_per_epoch: steps,
        };
        for &(epoch, step, want) in cases {
            let got = sched.lr(epoch, step);
            assert!(
                close(got, want),
                "epoch {epoch} step {step}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn warmup_is_per_step_then_the_schedule_per_epoch() {
        let s = Schedule::Cosine { min_lr: 0.0 };
        // One warm-up epoch of 4 steps: lr0/4, 2 lr0/4, 3 lr0/4, lr0 (the last warm-up step
        // reaches lr0), then cosine over T = 9 from epoch 1 on.
        check_steps(
            &s,
            (0.2, 10, 1, 4),
            &[
                (0, 0, 0.05),
                (0, 1, 0.1),
                (0, 2, 0.15),
                (0, 3, 0.2),
                (1, 0, 0.2),
                (1, 3, 0.2),
                (2, 0, 0.1 * (1.0 + (std::f64::consts::PI / 9.0).cos())),
            ],
        );
        // Two warm-up epochs of 3 steps: the rate rises across the epoch boundary.
        check_steps(
            &s,
            (0.6, 10, 2, 3),
            &[
                (0, 0, 0.1),
                (0, 2, 0.3),
                (1, 0, 0.4),
                (1, 2, 0.6),
                (2, 0, 0.6),
            ],
        );
        // 2 warm-up epochs, then cosine over T = 8: epoch 6 is half-way.
        check_steps(
            &s,
            (0.2, 10, 2, 1),
            &[(0, 0, 0.1), (1, 0, 0.2), (6, 0, 0.1)],
        );
        let m = Schedule::Multistep {
            milestones: vec![2],
            gamma: 0.5,
        };
        // milestones are absolute epochs
        check_steps(
            &m,
            (0.4, 10, 1, 2),
            &[(0, 0, 0.2), (0, 1, 0.4), (1, 0, 0.4), (2, 0, 0.2)],
        );
        check_steps(
            &m,
            (0.4, 10, 4, 1),
            &[(0, 0, 0.1), (3, 0, 0.4), (4, 0, 0.2)],
        );
        check_steps(
            &Schedule::Constant,
            (0.3, 10, 0, 7),
            &[(0, 0, 0.3), (9, 6, 0.3)],
        );
        // Without warm-up every step of an epoch has the epoch's rate.
        for epoch in 0..10 {
            for step in 0..5 {
                check_steps(
                    &s,
                    (0.1, 10, 0, 5),
                    &[(epoch, step, lr_at(&s, 0.1, 10, 0, epoch))],
                );
            }
        }
        // metrics.csv records the rate of an epoch's last step.
        let sched = LrSchedule {
            schedule: &s,
            lr0: 0.2,
            epochs: 10,
            warmup_epochs: 1,
            steps_per_epoch: 4,
        };
        assert_eq!(sched.epoch_lr(0).to_bits(), 0.2f64.to_bits());
        assert_eq!(sched.epoch_lr(3), lr_at(&s, 0.2, 10, 1, 3));
    }
}
