//! The gradients of one optimiser step: the loss (label smoothing included), gradient
//! clipping and sharpness-aware minimisation (davda54/sam's `SAM`, `adaptive` for ASAM):
//!
//! ```text
//! g = clip(grad L(w))                                   first pass, BN statistics updated
//! e = rho * (adaptive ? w^2 : 1) * g / (||(adaptive ? |w| : 1) * g|| + 1e-12)
//! g' = clip(grad L(w + e))                              second pass, BN statistics kept
//! w restored exactly; the base optimiser steps with g'
//! ```

use crate::clip::{clip_grad_norm, grad_norm};
use crate::error::Result;
use crate::freeze::frozen_params;
use crate::model::{Mode, Model};
use crate::step::{Gradients, StepOutput, Targets};
use candle_core::Tensor;
use wrnc_ir::ParamId;
use wrnc_recipe::{OptimizerKind, TrainConfig};

/// The gradients an optimiser step uses, with the first pass's output.
#[derive(Debug)]
pub struct StepGrads {
    /// The first (or only) forward/backward pass: its loss and logits are the step's.
    pub first: StepOutput,
    /// The gradients to step with (clipped; SAM's second-pass gradients).
    pub grads: Gradients,
    /// The global gradient norm of the first pass before clipping (when clipping is on).
    pub norm: Option<f64>,
}

fn clipped(model: &Model, grads: Gradients, clip: Option<f64>) -> Result<(Gradients, Option<f64>)> {
    match clip {
        None => Ok((grads, None)),
        Some(c) => {
            let (norm, out) = clip_grad_norm(model, &grads, c)?;
            Ok((out.unwrap_or(grads), Some(norm)))
        }
    }
}

/// Drops the gradients of the tensors `train.freeze` holds fixed ([`crate::freeze`]).
fn without_frozen(model: &Model, mut grads: Gradients, frozen: &[bool]) -> Gradients {
    if !frozen.contains(&true) {
        return grads;
    }
    for (id, var) in model.trainable() {
        if frozen.get(id.0).copied().unwrap_or(false) {
            grads.remove(var.as_tensor());
        }
    }
    grads
}

/// Runs the forward and backward pass(es) of one training step of `tc`'s optimiser on batch
/// `x` / `labels`.
pub fn step_grads(
    model: &mut Model,
    x: &Tensor,
    labels: &[u32],
    mode: Mode,
    tc: &TrainConfig,
) -> Result<StepGrads> {
    step_grads_for(model, x, Targets::Labels(labels), mode, tc)
}

/// [`step_grads`] against `targets`: labels (with `tc.label_smoothing`) or the soft targets
/// of a mixed batch. Tensors `tc.freeze` matches get no gradient (before clipping and SAM).
pub fn step_grads_for(
    model: &mut Model,
    x: &Tensor,
    targets: Targets<'_>,
    mode: Mode,
    tc: &TrainConfig,
) -> Result<StepGrads> {
    let eps = tc.label_smoothing;
    let frozen = frozen_params(model.graph(), &tc.freeze)?;
    let mut first = model.loss_and_grads_for(x, targets, mode, eps)?;
    let grads = std::mem::replace(&mut first.grads, Gradients::Tape(Default::default()));
    let grads = without_frozen(model, grads, &frozen);
    let (grads, norm) = clipped(model, grads, tc.grad_clip)?;
    if tc.optimizer.kind != OptimizerKind::Sam || !first.loss.is_finite() {
        return Ok(StepGrads { first, grads, norm });
    }
    let adaptive = tc.optimizer.adaptive;
    let scale = tc.optimizer.sam_rho() / (grad_norm(model, &grads, adaptive)? + 1e-12);
    // The weights to return to (exact copies; the optimiser updates them in place) and the
    // BN statistics the second pass must leave as they are.
    let mut saved: Vec<(ParamId, Tensor)> = Vec::new();
    let mut perturbed: Vec<(ParamId, Tensor)> = Vec::new();
    for (id, var) in model.trainable() {
        let p = &var.as_tensor().detach();
        if let Some(g) = grads.get(var.as_tensor()) {
            let g = g.to_dtype(p.dtype())?;
            let e = if adaptive {
                (p.sqr()? * g)?.affine(scale, 0.0)?
            } else {
                g.affine(scale, 0.0)?
            };
            saved.push((id, p.copy()?));
            perturbed.push((id, (p + e)?));
        }
    }
    for (i, p) in model.graph().params.iter().enumerate() {
        if !p.trainable {
            if let Some(t) = model.param_tensor(ParamId(i)) {
                saved.push((ParamId(i), t.detach().copy()?));
            }
        }
    }
    for (id, p) in &perturbed {
        model.set_param(*id, p)?;
    }
    drop(perturbed);
    let second = model.loss_and_grads_for(x, targets, mode, eps)?;
    for (id, t) in &saved {
        model.set_param(*id, t)?;
    }
    let second = without_frozen(model, second.grads, &frozen);
    let (grads, _) = clipped(model, second, tc.grad_clip)?;
    Ok(StepGrads { first, grads, norm })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::init_weights;
    use candle_core::{DType, Device};
    use wrnc_recipe::Sgd;
    use wrnc_testkit::graphs::conv_bn_classifier;

    /// SAM and ASAM with clipping and label smoothing: the fast kernels with the taped
    /// backward give the gradients of Candle's reference ops with autograd, the model's
    /// weights and running statistics afterwards are those of the first pass alone, and the
    /// second pass's gradients are clipped. (The perturbation itself is replayed against
    /// davda54's code by tools/torch_reference_check.py.)
    #[test]
    fn fast_and_reference_paths_agree_and_the_model_is_restored() {
        let g = conv_bn_classifier([2, 6, 6], wrnc_testkit::graphs::conv(4, 3, 1), 3, true);
        let w = init_weights(&g, 7);
        let n = 6;
        let images: Vec<f32> = (0..n * 72)
            .map(|i| ((i * 29 % 97) as f32 / 40.0) - 1.2)
            .collect();
        let labels = [0u32, 2, 1, 1, 0, 2];
        let mode = Mode::Train { seed: 1, step: 0 };
        for adaptive in [false, true] {
            let mut tc = TrainConfig {
                label_smoothing: 0.1,
                grad_clip: Some(0.5),
                ..TrainConfig::default()
            };
            tc.optimizer = Sgd {
                kind: OptimizerKind::Sam,
                rho: Some(if adaptive { 1.0 } else { 0.05 }),
                adaptive,
                ..Sgd::default()
            };
            let mut outs = Vec::new();
            for reference in [false, true] {
                let mut m = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
                m.set_reference_ops(reference);
                let x = m.input_tensor(&images, n).unwrap();
                let s = step_grads(&mut m, &x, &labels, mode, &tc).unwrap();
                // The weights are restored; the running statistics are the first pass's.
                let mut plain = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
                plain.set_reference_ops(reference);
                plain
                    .loss_and_grads_smoothed(&x, &labels, mode, 0.1)
                    .unwrap();
                assert_eq!(
                    m.to_weights().unwrap().tensors,
                    plain.to_weights().unwrap().tensors
                );
                let grads: Vec<Vec<f32>> = m
                    .trainable()
                    .into_iter()
                    .map(|(_, v)| {
                        let t = s.grads.get(v.as_tensor()).unwrap();
                        t.flatten_all().unwrap().to_vec1().unwrap()
                    })
                    .collect();
                outs.push((s.first.loss, s.norm.unwrap(), grads));
            }
            let (a, b) = (&outs[0], &outs[1]);
            assert!((a.0 - b.0).abs() < 1e-5 && (a.1 - b.1).abs() < 1e-4 * b.1);
            let mut total = 0f64;
            for (ga, gb) in a.2.iter().zip(&b.2) {
                let scale = gb.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                for (p, q) in ga.iter().zip(gb) {
                    assert!(
                        (p - q).abs() <= 1e-3 * scale,
                        "adaptive {adaptive}: {p} vs {q}"
                    );
                    total += f64::from(*q).powi(2);
                }
            }
            // the second pass's gradients are clipped too
            assert!(total.sqrt() <= 0.5 + 1e-4, "{}", total.sqrt());
        }
    }
}
