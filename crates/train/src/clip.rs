//! Gradient clipping by the global L2 norm, as PyTorch's `clip_grad_norm_`:
//! `total = ||(||g_1||, ..., ||g_n||)||`, `coef = max_norm / (total + 1e-6)`, and every gradient
//! is multiplied by `min(coef, 1)`.

use crate::error::Result;
use crate::model::Model;
use crate::step::Gradients;
use candle_core::{DType, Tensor};
use std::collections::HashMap;

/// The global L2 norm of the gradients of `model`'s trainable parameters, each weighted
/// element-wise by `|p|` when `by_weight` (ASAM's norm).
pub fn grad_norm(model: &Model, grads: &Gradients, by_weight: bool) -> Result<f64> {
    let mut sum = 0f64;
    for (_, var) in model.trainable() {
        if let Some(g) = grads.get(var.as_tensor()) {
            let mut g = g.to_dtype(DType::F32)?;
            if by_weight {
                g = (g * var.as_tensor().to_dtype(DType::F32)?.abs()?)?;
            }
            let n = f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?).sqrt();
            sum += n * n;
        }
    }
    Ok(sum.sqrt())
}

/// Clips `grads` to global norm `max_norm`; returns the norm before clipping and the
/// clipped gradients when they change (`coef < 1`).
pub fn clip_grad_norm(
    model: &Model,
    grads: &Gradients,
    max_norm: f64,
) -> Result<(f64, Option<Gradients>)> {
    let total = grad_norm(model, grads, false)?;
    let coef = max_norm / (total + 1e-6);
    if coef >= 1.0 {
        return Ok((total, None));
    }
    let mut out = HashMap::new();
    for (_, var) in model.trainable() {
        let t: &Tensor = var.as_tensor();
        if let Some(g) = grads.get(t) {
            out.insert(t.id(), g.affine(coef, 0.0)?);
        }
    }
    Ok((total, Some(Gradients::Tape(out))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use wrnc_testkit::graphs::{conv_bias, conv_bn_classifier};

    #[test]
    fn clips_to_the_global_norm_like_clip_grad_norm() {
        let g = conv_bn_classifier([1, 1, 2], conv_bias(1, 1, 1), 2, false);
        let w = crate::init::init_weights(&g, 2);
        let model = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
        // gradient = 2 p + 0.5 for every trainable parameter
        let mut map = HashMap::new();
        let mut want = 0f64;
        for (_, var) in model.trainable() {
            let t = var.as_tensor();
            let gr = t.affine(2.0, 0.5).unwrap();
            for v in gr.flatten_all().unwrap().to_vec1::<f32>().unwrap() {
                want += (v as f64).powi(2);
            }
            map.insert(t.id(), gr);
        }
        let want = want.sqrt();
        let grads = Gradients::Tape(map);
        let (norm, clipped) = clip_grad_norm(&model, &grads, want * 2.0).unwrap();
        assert!((norm - want).abs() < 1e-5 * want && clipped.is_none());
        let (_, clipped) = clip_grad_norm(&model, &grads, 0.5).unwrap();
        let clipped = clipped.unwrap();
        let coef = 0.5 / (want + 1e-6);
        for (_, var) in model.trainable() {
            let a: Vec<f32> = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let b: Vec<f32> = clipped
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!((*x as f64 * coef - *y as f64).abs() < 1e-6);
            }
        }
        assert!((grad_norm(&model, &clipped, false).unwrap() - 0.5).abs() < 1e-5);
    }
}
