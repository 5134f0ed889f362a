//! The targets and the train accuracy of a batch mixed by mixup or CutMix
//! ([`wrnc_data::mix`]): timm's `mixup_target` and the dominant label.

/// timm's `mixup_target`: per image `i` of the `n` labels, `lam * t(y_i) + (1 - lam) *
/// t(y_{n-1-i})`, where `t(y)` is the one-hot vector of `y` smoothed by `eps` (off value
/// `eps / classes`, on value `1 - eps + eps / classes`). Row-major `n x classes` values.
pub fn mixup_targets(labels: &[u32], classes: usize, lam: f64, eps: f64) -> Vec<f32> {
    let n = labels.len();
    let off = eps / classes as f64;
    let on = 1.0 - eps + off;
    let mut out = vec![0f32; n * classes];
    for (i, row) in out.chunks_exact_mut(classes).enumerate() {
        let (own, other) = (labels[i] as usize, labels[n - 1 - i] as usize);
        for (j, v) in row.iter_mut().enumerate() {
            let a = if j == own { on } else { off };
            let b = if j == other { on } else { off };
            *v = (lam * a + (1.0 - lam) * b) as f32;
        }
    }
    out
}

/// The label a mixed image's prediction is scored against for the train accuracy: its own
/// when `lam >= 0.5` (its own image dominates), else its partner's (`n - 1 - i`).
pub fn dominant_labels(labels: &[u32], lam: f64) -> Vec<u32> {
    if lam >= 0.5 {
        labels.to_vec()
    } else {
        labels.iter().rev().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_timms_mixup_target() {
        // labels [2, 0, 1], 3 classes, lam 0.7, eps 0.3: off 0.1, on 0.8. Row 0 mixes label 2
        // with label 1 (its partner is the last image): [0.1, 0.7 * 0.1 + 0.3 * 0.8,
        // 0.7 * 0.8 + 0.3 * 0.1] = [0.1, 0.31, 0.59]; the middle row is its own partner.
        let t = mixup_targets(&[2, 0, 1], 3, 0.7, 0.3);
        let want = [0.1, 0.31, 0.59, 0.8, 0.1, 0.1, 0.1, 0.59, 0.31];
        for (a, b) in t.iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-7, "{t:?}");
        }
        // Every row is a distribution; without smoothing and lam 1 it is the one-hot label.
        for r in mixup_targets(&[4, 1, 3, 3], 5, 0.35, 0.1).chunks(5) {
            assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert_eq!(
            mixup_targets(&[1, 0], 2, 1.0, 0.0),
            vec![0.0, 1.0, 1.0, 0.0]
        );
    }

    #[test]
    fn dominant_label_switches_at_one_half() {
        assert_eq!(dominant_labels(&[1, 2, 3], 0.5), vec![1, 2, 3]);
        assert_eq!(dominant_labels(&[1, 2, 3], 0.49), vec![3, 2, 1]);
    }
}
