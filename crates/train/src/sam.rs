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
use crate::model::{Mode, Model};
use crate::step::{Gradients, StepOutput};
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

/// Runs the forward and backward pass(es) of one training step of `tc`'s optimiser on batch
/// `x` / `labels`.
pub fn step_grads(
    model: &mut Model,
    x: &Tensor,
    labels: &[u32],
    mode: Mode,
    tc: &TrainConfig,
) -> Result<StepGrads> {
    let eps = tc.label_smoothing;
    let mut first = model.loss_and_grads_smoothed(x, labels, mode, eps)?;
    let grads = std::mem::replace(&mut first.grads, Gradients::Tape(Default::default()));
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
        let p = var.as_tensor();
        if let Some(g) = grads.get(p) {
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
                saved.push((ParamId(i), t.copy()?));
            }
        }
    }
    for (id, p) in &perturbed {
        model.set_param(*id, p)?;
    }
    drop(perturbed);
    let second = model.loss_and_grads_smoothed(x, labels, mode, eps)?;
    for (id, t) in &saved {
        model.set_param(*id, t)?;
    }
    let (grads, _) = clipped(model, second.grads, tc.grad_clip)?;
    Ok(StepGrads { first, grads, norm })
}
