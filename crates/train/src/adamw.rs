//! AdamW with exactly `torch.optim.AdamW`'s update rule (amsgrad off, one step count):
//!
//! ```text
//! t = t + 1
//! p = p * (1 - lr * wd)                         (if the parameter decays)
//! m = m + (1 - beta1) * (g - m)                 (torch's lerp)
//! v = beta2 * v + (1 - beta2) * g * g
//! p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//! ```
//!
//! The moments are the optimiser state; the step count is the run's global step.

use crate::error::{Result, TrainError};
use crate::model::{to_host, Model};
use crate::optim::decays;
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;
use wrnc_ir::weights::Tensor as HostTensor;
use wrnc_ir::Graph;
use wrnc_recipe::Sgd;

/// Name prefix of the first moments in the optimiser state file.
pub const EXP_AVG: &str = "exp_avg.";
/// Name prefix of the second moments in the optimiser state file.
pub const EXP_AVG_SQ: &str = "exp_avg_sq.";

/// AdamW with its two moments per trainable parameter once it has been stepped.
#[derive(Debug)]
pub struct AdamWOptimizer {
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    decay: Vec<bool>,
    steps: u64,
    moments: Vec<Option<(Tensor, Tensor)>>,
}

impl AdamWOptimizer {
    /// A fresh optimiser for `graph`'s parameters (`lr` comes with each step; `betas`, `eps`,
    /// `weight_decay` and `weight_decay_on` from `cfg`).
    pub fn new(cfg: &Sgd, graph: &Graph) -> AdamWOptimizer {
        AdamWOptimizer {
            betas: cfg.adam_betas(),
            eps: cfg.adam_eps(),
            weight_decay: cfg.weight_decay,
            decay: graph
                .params
                .iter()
                .map(|p| decays(p, cfg.weight_decay_on))
                .collect(),
            steps: 0,
            moments: vec![None; graph.params.len()],
        }
    }

    /// One update with learning rate `lr` of every trainable parameter with a gradient.
    pub fn step_with(
        &mut self,
        model: &mut Model,
        grad_of: impl Fn(&Tensor) -> Option<Tensor>,
        lr: f64,
    ) -> Result<()> {
        let updates = model.trainable_with_grads(grad_of);
        self.steps += 1;
        let [b1, b2] = self.betas;
        let t = self.steps as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let step_size = lr / bc1;
        for (id, p, grad) in updates {
            let grad = grad.to_dtype(DType::F32)?;
            let mut p = p.to_dtype(DType::F32)?;
            if self.decay[id.0] && self.weight_decay != 0.0 {
                p = p.affine(1.0 - lr * self.weight_decay, 0.0)?;
            }
            let (m, v) = match self.moments[id.0].take() {
                Some(mv) => mv,
                None => (grad.zeros_like()?, grad.zeros_like()?),
            };
            let m = (&m + (&grad - &m)?.affine(1.0 - b1, 0.0)?)?;
            let v = (v.affine(b2, 0.0)? + grad.sqr()?.affine(1.0 - b2, 0.0)?)?;
            let denom = v.sqrt()?.affine(1.0 / bc2_sqrt, self.eps)?;
            let p = (p - (m.affine(step_size, 0.0)? / denom)?)?;
            model.set_param(id, &p)?;
            self.moments[id.0] = Some((m, v));
        }
        Ok(())
    }

    /// The moments as host f32 tensors named `exp_avg.<param>` and `exp_avg_sq.<param>`.
    pub fn state(&self, graph: &Graph) -> Result<BTreeMap<String, HostTensor>> {
        let mut out = BTreeMap::new();
        for (p, mv) in graph.params.iter().zip(&self.moments) {
            if let Some((m, v)) = mv {
                for (prefix, t) in [(EXP_AVG, m), (EXP_AVG_SQ, v)] {
                    out.insert(format!("{prefix}{}", p.name), to_host(t, &p.shape)?);
                }
            }
        }
        Ok(out)
    }

    /// Restores moments saved by [`AdamWOptimizer::state`] after `steps` optimiser steps.
    pub fn load_state(
        &mut self,
        model: &Model,
        state: &BTreeMap<String, HostTensor>,
        steps: u64,
    ) -> Result<()> {
        let graph = model.graph();
        let mut loaded: Vec<[Option<Tensor>; 2]> = vec![[None, None]; graph.params.len()];
        for (key, t) in state {
            let (slot, name) = match key.strip_prefix(EXP_AVG_SQ) {
                Some(n) => (1, n),
                None => match key.strip_prefix(EXP_AVG) {
                    Some(n) => (0, n),
                    None => {
                        return Err(TrainError::Invalid(format!(
                            "optimizer state has `{key}`, which is not an AdamW moment \
                             (was the run started with another train.optimizer.kind?)"
                        )))
                    }
                },
            };
            let (id, p) = graph
                .param_by_name(name)
                .filter(|(_, p)| p.trainable && p.shape == t.shape)
                .ok_or_else(|| {
                    TrainError::Invalid(format!(
                        "optimizer state: `{key}` matches no trainable parameter of that shape"
                    ))
                })?;
            let _ = p;
            loaded[id.0][slot] = Some(Tensor::from_slice(
                &t.data,
                t.shape.as_slice(),
                model.device(),
            )?);
        }
        for (i, [m, v]) in loaded.into_iter().enumerate() {
            match (m, v) {
                (Some(m), Some(v)) => self.moments[i] = Some((m, v)),
                (None, None) => {}
                _ => {
                    return Err(TrainError::Invalid(format!(
                        "optimizer state: `{}` has one AdamW moment but not the other",
                        graph.params[i].name
                    )))
                }
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use wrnc_recipe::{DecayOn, OptimizerKind};
    use wrnc_testkit::graphs::{conv_bias, conv_bn_classifier};

    /// Three AdamW steps with gradients `0.3 p + 0.1 k - 0.05` against the same recurrence in
    /// f64, decay on weights only, with moments that keep no autograd graph; then the state
    /// round-trips.
    #[test]
    fn matches_an_f64_recurrence_and_round_trips() {
        let g = conv_bn_classifier([1, 1, 2], conv_bias(1, 1, 1), 2, false);
        let w = crate::init::init_weights(&g, 4);
        let cfg = Sgd {
            kind: OptimizerKind::Adamw,
            weight_decay: 0.05,
            weight_decay_on: DecayOn::Weights,
            ..Sgd::default()
        };
        let mut model = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
        let mut opt = AdamWOptimizer::new(&cfg, &g);
        let lrs = [1e-3, 2e-3, 5e-4];
        for (k, lr) in lrs.iter().enumerate() {
            let grad = |t: &Tensor| t.affine(0.3, 0.1 * k as f64 - 0.05).ok();
            opt.step_with(&mut model, grad, *lr).unwrap();
        }
        // the gradients come from the model's variables: moments computed from them would
        // record them for Candle's autograd and keep each step's inputs alive
        for (m, v) in opt.moments.iter().flatten() {
            assert!(!m.track_op() && !v.track_op());
        }
        let got = model.to_weights().unwrap();
        for p in &g.params {
            let start = &w.tensors[&p.name].data;
            let end = &got.tensors[&p.name].data;
            for (i, &x0) in start.iter().enumerate() {
                let mut x = x0 as f64;
                if !p.trainable {
                    assert_eq!(end[i], x0, "{} is a buffer", p.name);
                    continue;
                }
                let wd = if p.decay { 0.05 } else { 0.0 };
                let (mut m, mut v) = (0.0f64, 0.0f64);
                for (k, lr) in lrs.iter().enumerate() {
                    let gr = 0.3 * x + 0.1 * k as f64 - 0.05;
                    let t = (k + 1) as i32;
                    x *= 1.0 - lr * wd;
                    m = 0.9 * m + 0.1 * gr;
                    v = 0.999 * v + 0.001 * gr * gr;
                    let denom = v.sqrt() / (1.0 - 0.999f64.powi(t)).sqrt() + 1e-8;
                    x -= lr / (1.0 - 0.9f64.powi(t)) * m / denom;
                }
                assert!(
                    (end[i] as f64 - x).abs() < 1e-6,
                    "{}[{i}]: {} vs {x}",
                    p.name,
                    end[i]
                );
            }
        }
        let st = opt.state(&g).unwrap();
        assert_eq!(st.len(), 10);
        let mut again = AdamWOptimizer::new(&cfg, &g);
        again.load_state(&model, &st, 3).unwrap();
        assert_eq!(again.state(&g).unwrap(), st);
        assert_eq!(again.steps, 3);
    }
}
