//! An exponential moving average of every float tensor of the model, parameters and BN
//! running statistics (timm's `ModelEmaV2`; `ModelEmaV3`'s warm-up on request), started from
//! the initial weights and updated after every optimiser step:
//! `ema = d * ema + (1 - d) * value`.

use crate::error::{Result, TrainError};
use crate::model::{to_host, Model};
use candle_core::{DType, Tensor};
use wrnc_ir::{ParamId, Weights};
use wrnc_recipe::Ema;

/// The averaged tensors (f32, on the model's device) and their settings.
#[derive(Debug)]
pub struct EmaState {
    cfg: Ema,
    values: Vec<Tensor>,
}

/// The decay of update number `update` (from 1): `decay`, or with timm V3's warm-up
/// (`warmup_gamma` 1, `warmup_power` 2/3, `update_after_step` 0) 0 for the first update and
/// `min(decay, 1 - (1 + s)^(-2/3))` with `s = update - 1` after it.
pub fn ema_decay(cfg: &Ema, update: u64) -> f64 {
    if !cfg.warmup {
        return cfg.decay;
    }
    let s = update.saturating_sub(1);
    if s == 0 {
        return 0.0;
    }
    let d = 1.0 - (1.0 + s as f64).powf(-2.0 / 3.0);
    d.min(cfg.decay).max(0.0)
}

impl EmaState {
    /// The average started from `model`'s current tensors (timm copies the model).
    pub fn new(cfg: &Ema, model: &Model) -> Result<EmaState> {
        let values = (0..model.graph().params.len())
            .map(|i| {
                let t = model
                    .param_tensor(ParamId(i))
                    .ok_or_else(|| TrainError::Internal(format!("no parameter {i}")))?;
                Ok(t.to_dtype(DType::F32)?.detach().copy()?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EmaState {
            cfg: cfg.clone(),
            values,
        })
    }

    /// The average restored from `weights` (saved by [`EmaState::to_weights`]).
    pub fn from_weights(cfg: &Ema, model: &Model, weights: &Weights) -> Result<EmaState> {
        let mut values = Vec::new();
        for p in &model.graph().params {
            let t = weights.tensors.get(&p.name).filter(|t| t.shape == p.shape);
            let t = t.ok_or_else(|| {
                TrainError::Invalid(format!(
                    "the EMA weights lack `{}` {:?} (was the run started without train.ema?)",
                    p.name, p.shape
                ))
            })?;
            values.push(Tensor::from_slice(
                &t.data,
                t.shape.as_slice(),
                model.device(),
            )?);
        }
        Ok(EmaState {
            cfg: cfg.clone(),
            values,
        })
    }

    /// Update number `update` (from 1: the optimiser steps taken so far) from `model`.
    pub fn update(&mut self, model: &Model, update: u64) -> Result<()> {
        let d = ema_decay(&self.cfg, update);
        for (i, e) in self.values.iter_mut().enumerate() {
            let v = model
                .param_tensor(ParamId(i))
                .ok_or_else(|| TrainError::Internal(format!("no parameter {i}")))?
                .to_dtype(DType::F32)?
                .detach();
            // detached: arithmetic on the model's variable would record it, and each average
            // would keep the previous one (and its inputs) alive, one model's worth per step
            *e = (e.affine(d, 0.0)? + v.affine(1.0 - d, 0.0)?)?;
        }
        Ok(())
    }

    /// The average as host weights (names of the graph).
    pub fn to_weights(&self, model: &Model) -> Result<Weights> {
        let mut w = Weights::default();
        for (p, t) in model.graph().params.iter().zip(&self.values) {
            w.tensors.insert(p.name.clone(), to_host(t, &p.shape)?);
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use wrnc_testkit::graphs::{conv_bias, conv_bn_classifier};

    /// An average computed from the model's variables recorded them (and the previous
    /// average) for Candle's autograd: every update kept the last one alive, a model's worth
    /// of memory per step.
    #[test]
    fn the_average_keeps_no_autograd_graph() {
        let g = conv_bn_classifier([1, 1, 2], conv_bias(1, 1, 1), 2, false);
        let w0 = crate::init::init_weights(&g, 1);
        let model = Model::new(&g, &w0, &Device::Cpu, DType::F32).unwrap();
        let mut ema = EmaState::new(
            &Ema {
                decay: 0.9,
                warmup: false,
            },
            &model,
        )
        .unwrap();
        for u in 1..=3 {
            ema.update(&model, u).unwrap();
        }
        assert_eq!(ema.values.len(), g.params.len());
        for (p, v) in g.params.iter().zip(&ema.values) {
            assert!(!v.track_op(), "`{}`'s average records its inputs", p.name);
        }
    }

    #[test]
    fn averages_parameters_and_buffers_like_an_f64_recurrence() {
        let g = conv_bn_classifier([1, 1, 2], conv_bias(1, 1, 1), 2, false);
        let w0 = crate::init::init_weights(&g, 1);
        let mut model = Model::new(&g, &w0, &Device::Cpu, DType::F32).unwrap();
        for warmup in [false, true] {
            let cfg = Ema { decay: 0.9, warmup };
            let mut ema = EmaState::new(&cfg, &model).unwrap();
            let mut want: Vec<Vec<f64>> = g
                .params
                .iter()
                .map(|p| w0.tensors[&p.name].data.iter().map(|&v| v as f64).collect())
                .collect();
            for u in 1..=4u64 {
                // every tensor (buffers included) moves to value * 1.5 + u
                for i in 0..g.params.len() {
                    let t = model
                        .param_tensor(ParamId(i))
                        .unwrap()
                        .affine(1.5, u as f64)
                        .unwrap();
                    model.set_param(ParamId(i), &t).unwrap();
                }
                ema.update(&model, u).unwrap();
                let d = match (warmup, u) {
                    (false, _) => 0.9,
                    (true, 1) => 0.0,
                    (true, u) => (1.0 - (u as f64).powf(-2.0 / 3.0)).min(0.9),
                };
                let now = model.to_weights().unwrap();
                for (p, e) in g.params.iter().zip(want.iter_mut()) {
                    for (x, &v) in e.iter_mut().zip(&now.tensors[&p.name].data) {
                        *x = d * *x + (1.0 - d) * v as f64;
                    }
                }
            }
            let got = ema.to_weights(&model).unwrap();
            for (p, e) in g.params.iter().zip(&want) {
                for (x, y) in got.tensors[&p.name].data.iter().zip(e) {
                    assert!(
                        (*x as f64 - y).abs() < 1e-4 * y.abs().max(1.0),
                        "{}: {x} vs {y}",
                        p.name
                    );
                }
            }
            let back = EmaState::from_weights(&cfg, &model, &got).unwrap();
            assert_eq!(back.to_weights(&model).unwrap().tensors, got.tensors);
            model = Model::new(&g, &w0, &Device::Cpu, DType::F32).unwrap();
        }
    }
}
