//! Per-epoch learning rates: PyTorch's MultiStepLR, CosineAnnealingLR (closed form) and a
//! constant rate, with optional linear warmup.

use wrnc_recipe::{Schedule, TrainConfig};

/// The learning rate of epoch `epoch` (counted from 0).
///
/// During warmup (`epoch < warmup`) the rate is `lr0 * (epoch + 1) / warmup`. After it:
/// * multistep: `lr0 * gamma^(number of milestones <= epoch)`; milestones are absolute epoch
///   numbers (as written in the spec), warmup or not,
/// * cosine: `min_lr + (lr0 - min_lr) * (1 + cos(pi * e / T)) / 2` with `e = epoch - warmup`
///   and `T = epochs - warmup`,
/// * constant: `lr0`.
pub fn lr_at(schedule: &Schedule, lr0: f64, epochs: usize, warmup: usize, epoch: usize) -> f64 {
    if epoch < warmup {
        return lr0 * (epoch + 1) as f64 / warmup as f64;
    }
    match schedule {
        Schedule::Multistep { milestones, gamma } => {
            let passed = milestones.iter().filter(|&&m| m <= epoch).count();
            lr0 * gamma.powi(passed as i32)
        }
        Schedule::Cosine { min_lr } => {
            let t = epochs.saturating_sub(warmup).max(1) as f64;
            let e = ((epoch - warmup) as f64).min(t);
            min_lr + (lr0 - min_lr) * (1.0 + (std::f64::consts::PI * e / t).cos()) / 2.0
        }
        Schedule::Constant => lr0,
    }
}

/// [`lr_at`] with the settings of a `train` section.
pub fn lr_for_epoch(train: &TrainConfig, epoch: usize) -> f64 {
    lr_at(
        &train.schedule,
        train.optimizer.lr,
        train.epochs,
        train.warmup_epochs,
        epoch,
    )
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

    #[test]
    fn warmup_then_schedule() {
        let s = Schedule::Cosine { min_lr: 0.0 };
        // 2 warmup epochs, then cosine over T = 8.
        check(&s, 0.2, 10, 2, &[(0, 0.1), (1, 0.2), (2, 0.2), (6, 0.1)]);
        let m = Schedule::Multistep {
            milestones: vec![2],
            gamma: 0.5,
        };
        // milestones are absolute epochs
        check(&m, 0.4, 10, 1, &[(0, 0.4), (1, 0.4), (2, 0.2)]);
        check(&m, 0.4, 10, 4, &[(0, 0.1), (3, 0.4), (4, 0.2)]);
        check(&Schedule::Constant, 0.3, 10, 0, &[(9, 0.3)]);
    }
}
