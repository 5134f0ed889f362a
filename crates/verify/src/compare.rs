//! Comparing two sets of outputs (e.g. a reference executor's logits and tract's).

use crate::error::{Result, VerifyError};

/// Denominator floor of [`max_rel_diff`], so that values near zero do not blow it up.
pub const REL_FLOOR: f32 = 1e-6;

/// Summary of how far two `[n, classes]` arrays are apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Number of rows (samples).
    pub samples: usize,
    /// Largest `|a - b|` (infinite when either side has a NaN or infinity).
    pub max_abs_diff: f32,
    /// Largest `|a - b| / max(|a|, |b|, REL_FLOOR)`.
    pub max_rel_diff: f32,
    /// Rows whose arg-max agrees.
    pub top1_agree: usize,
}

impl Comparison {
    /// Fraction of rows whose arg-max agrees (1 for no rows).
    pub fn top1_agreement(&self) -> f64 {
        if self.samples == 0 {
            1.0
        } else {
            self.top1_agree as f64 / self.samples as f64
        }
    }
}

fn same_len(a: &[f32], b: &[f32]) -> Result<()> {
    if a.len() != b.len() {
        return Err(VerifyError::Input(format!(
            "cannot compare arrays of {} and {} values",
            a.len(),
            b.len()
        )));
    }
    Ok(())
}

fn abs_diff(x: f32, y: f32) -> f32 {
    let d = (x - y).abs();
    if d.is_nan() {
        f32::INFINITY
    } else {
        d
    }
}

/// Largest absolute difference; NaN or infinite differences count as infinite.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> Result<f32> {
    same_len(a, b)?;
    Ok(a.iter()
        .zip(b)
        .map(|(&x, &y)| abs_diff(x, y))
        .fold(0.0, f32::max))
}

/// Largest relative difference `|a - b| / max(|a|, |b|, REL_FLOOR)`.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> Result<f32> {
    same_len(a, b)?;
    Ok(a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = abs_diff(x, y);
            if d.is_infinite() {
                d
            } else {
                d / x.abs().max(y.abs()).max(REL_FLOOR)
            }
        })
        .fold(0.0, f32::max))
}

/// Index of the largest value (the first one on ties; NaN never wins). None when empty.
pub fn argmax(row: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// Rows of `classes` values whose arg-max agrees between `a` and `b`.
pub fn top1_agreement(a: &[f32], b: &[f32], classes: usize) -> Result<usize> {
    same_len(a, b)?;
    if classes == 0 || !a.len().is_multiple_of(classes) {
        return Err(VerifyError::Input(format!(
            "{} values are not rows of {classes} classes",
            a.len()
        )));
    }
    Ok(a.chunks(classes)
        .zip(b.chunks(classes))
        .filter(|(x, y)| argmax(x).is_some() && argmax(x) == argmax(y))
        .count())
}

/// All measures at once for two `[n, classes]` arrays.
pub fn compare(a: &[f32], b: &[f32], classes: usize) -> Result<Comparison> {
    let top1_agree = top1_agreement(a, b, classes)?;
    Ok(Comparison {
        samples: a.len() / classes,
        max_abs_diff: max_abs_diff(a, b)?,
        max_rel_diff: max_rel_diff(a, b)?,
        top1_agree,
    })
}

/// Relative tolerance of [`normalization_difference`] (the statistics go through JSON as
/// `f32`, so equal ones compare exactly; the tolerance only absorbs formatting).
pub const NORMALIZATION_RTOL: f32 = 1e-6;

/// How two input normalisations differ, or None when they are the same (same mode and scale,
/// statistics equal within [`NORMALIZATION_RTOL`]).
pub fn normalization_difference(
    file: &wrnc_onnx::Normalization,
    weights: &wrnc_onnx::Normalization,
) -> Option<String> {
    if file.mode != weights.mode {
        return Some(format!(
            "mode `{}` in the file, `{}` in the weights",
            file.mode, weights.mode
        ));
    }
    let close =
        |a: f32, b: f32| (a - b).abs() <= NORMALIZATION_RTOL * a.abs().max(b.abs()).max(1.0);
    if !close(file.scale as f32, weights.scale as f32) {
        return Some(format!(
            "scale {} in the file, {} in the weights",
            file.scale, weights.scale
        ));
    }
    for (what, a, b) in [
        ("mean", &file.mean, &weights.mean),
        ("std", &file.std, &weights.std),
        ("mean_image", &file.mean_image, &weights.mean_image),
    ] {
        if a.len() != b.len() {
            return Some(format!(
                "{what} has {} values in the file, {} in the weights",
                a.len(),
                b.len()
            ));
        }
        if let Some(i) = (0..a.len()).find(|&i| !close(a[i], b[i])) {
            return Some(format!(
                "{what}[{i}] is {} in the file, {} in the weights",
                a[i], b[i]
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures() {
        let a = [1.0, 2.0, 0.0, 5.0];
        let b = [1.5, 1.0, 0.0, 4.0];
        let c = compare(&a, &b, 2).unwrap();
        assert_eq!(c.max_abs_diff, 1.0);
        assert_eq!(c.max_rel_diff, 0.5);
        assert_eq!(c.top1_agree, 1);
        assert_eq!(c.top1_agreement(), 0.5);
        assert!(compare(&a, &b[..3], 2).is_err());
        assert!(compare(&a, &b, 3).is_err());
        assert_eq!(max_abs_diff(&[f32::NAN], &[1.0]).unwrap(), f32::INFINITY);
        assert_eq!(argmax(&[f32::NAN, 1.0, 3.0, 3.0]), Some(2));
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn normalizations() {
        use wrnc_onnx::Normalization;
        let a = Normalization::mean_std(vec![0.5], vec![0.25]);
        assert_eq!(normalization_difference(&a, &a.clone()), None);
        let b = Normalization::mean_std(vec![0.5], vec![0.5]);
        assert!(normalization_difference(&a, &b).unwrap().contains("std[0]"));
        let n = Normalization::none(1);
        assert!(normalization_difference(&a, &n).unwrap().contains("mode"));
    }
}
