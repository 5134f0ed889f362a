//! SGD with exactly `torch.optim.SGD`'s update rule:
//!
//! ```text
//! g = grad + wd * p                      (if the parameter decays)
//! buf = g                                (first step)
//! buf = momentum * buf + (1 - dampening) * g
//! g = g + momentum * buf   (nesterov)    or   g = buf
//! p = p - lr * g
//! ```
//!
//! Running statistics are never touched; the momentum buffers are the optimiser state.

use crate::error::{Result, TrainError};
use crate::kernels::sgd::{sgd_step, SgdStep};
use crate::model::{to_host, Model};
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use std::collections::BTreeMap;
use wrnc_ir::weights::Tensor as HostTensor;
use wrnc_ir::{Graph, Param};
use wrnc_recipe::{DecayOn, OptimizerKind, Sgd};

/// Whether weight decay applies to `p` under `on` (never to buffers).
pub fn decays(p: &Param, on: DecayOn) -> bool {
    p.trainable
        && match on {
            DecayOn::All => true,
            DecayOn::Weights => p.decay,
        }
}

/// SGD with momentum buffers, one per trainable parameter once it has been stepped.
#[derive(Debug)]
pub struct SgdOptimizer {
    cfg: Sgd,
    decay: Vec<bool>,
    buffers: Vec<Option<Tensor>>,
}

impl SgdOptimizer {
    /// A fresh optimiser (no momentum buffers yet) for `graph`'s parameters.
    pub fn new(cfg: &Sgd, graph: &Graph) -> SgdOptimizer {
        SgdOptimizer {
            cfg: cfg.clone(),
            decay: graph
                .params
                .iter()
                .map(|p| decays(p, cfg.weight_decay_on))
                .collect(),
            buffers: vec![None; graph.params.len()],
        }
    }

    /// Applies one update with learning rate `lr` to every trainable parameter of `model`
    /// that has a gradient in `grads` (parameters without one are skipped, as in PyTorch).
    pub fn step(&mut self, model: &mut Model, grads: &GradStore, lr: f64) -> Result<()> {
        self.step_with(model, |t| grads.get(t).cloned(), lr)
    }

    /// [`SgdOptimizer::step`] with gradients looked up by a function of the parameter tensor.
    pub fn step_with(
        &mut self,
        model: &mut Model,
        grad_of: impl Fn(&Tensor) -> Option<Tensor>,
        lr: f64,
    ) -> Result<()> {
        let updates = model.trainable_with_grads(grad_of);
        let (m, d, wd) = (self.cfg.momentum, self.cfg.dampening, self.cfg.weight_decay);
        let fast = model.uses_fast_kernels();
        for (id, p, grad) in updates {
            let buf = self.buffers[id.0].as_ref();
            if fast && (m == 0.0 || buf.is_some()) {
                // Fused in-place update (the same arithmetic, one pass per tensor).
                let step = SgdStep {
                    lr: lr as f32,
                    momentum: m as f32,
                    dampening: d as f32,
                    weight_decay: if self.decay[id.0] { wd as f32 } else { 0.0 },
                    nesterov: self.cfg.nesterov,
                };
                sgd_step(&p, &grad, buf, step)?;
                continue;
            }
            let mut g = grad;
            if wd != 0.0 && self.decay[id.0] {
                g = (g + p.affine(wd, 0.0)?)?;
            }
            if m != 0.0 {
                let buf = match self.buffers[id.0].take() {
                    None => g.copy()?,
                    Some(b) => (b.affine(m, 0.0)? + g.affine(1.0 - d, 0.0)?)?,
                };
                g = if self.cfg.nesterov {
                    (g + buf.affine(m, 0.0)?)?
                } else {
                    buf.clone()
                };
                self.buffers[id.0] = Some(buf);
            }
            let new_p = (p - g.affine(lr, 0.0)?)?;
            model.set_param(id, &new_p)?;
        }
        Ok(())
    }

    /// The momentum buffers as host f32 tensors keyed by parameter name.
    pub fn state(&self, graph: &Graph) -> Result<BTreeMap<String, HostTensor>> {
        let mut out = BTreeMap::new();
        for (p, b) in graph.params.iter().zip(&self.buffers) {
            if let Some(b) = b {
                out.insert(p.name.clone(), to_host(b, &p.shape)?);
            }
        }
        Ok(out)
    }

    /// Restores momentum buffers saved by [`SgdOptimizer::state`].
    pub fn load_state(
        &mut self,
        model: &Model,
        state: &BTreeMap<String, HostTensor>,
    ) -> Result<()> {
        let graph = model.graph();
        for (name, t) in state {
            let (id, p) = graph.param_by_name(name).ok_or_else(|| {
                TrainError::Invalid(format!(
                    "optimizer state has a momentum buffer for `{name}`, which is not a \
                     parameter of the model"
                ))
            })?;
            if t.shape != p.shape || !p.trainable {
                return Err(TrainError::Invalid(format!(
                    "optimizer state: momentum buffer `{name}` has shape {:?}, the parameter \
                     needs {:?}",
                    t.shape, p.shape
                )));
            }
            let tensor = Tensor::from_slice(&t.data, t.shape.as_slice(), model.device())?
                .to_dtype(model.dtype())?;
            self.buffers[id.0] = Some(tensor);
        }
        Ok(())
    }
}

/// The run's optimiser: SGD (also SAM's base optimiser) or AdamW.
#[derive(Debug)]
pub enum Optimizer {
    /// `torch.optim.SGD` (kinds `sgd` and `sam`).
    Sgd(SgdOptimizer),
    /// `torch.optim.AdamW`.
    AdamW(crate::adamw::AdamWOptimizer),
}

impl Optimizer {
    /// A fresh optimiser of `cfg.kind` for `graph`.
    pub fn new(cfg: &Sgd, graph: &Graph) -> Optimizer {
        match cfg.kind {
            OptimizerKind::Sgd | OptimizerKind::Sam => {
                Optimizer::Sgd(SgdOptimizer::new(cfg, graph))
            }
            OptimizerKind::Adamw => Optimizer::AdamW(crate::adamw::AdamWOptimizer::new(cfg, graph)),
        }
    }

    /// One update with learning rate `lr`.
    pub fn step_with(
        &mut self,
        model: &mut Model,
        grad_of: impl Fn(&Tensor) -> Option<Tensor>,
        lr: f64,
    ) -> Result<()> {
        match self {
            Optimizer::Sgd(o) => o.step_with(model, grad_of, lr),
            Optimizer::AdamW(o) => o.step_with(model, grad_of, lr),
        }
    }

    /// The optimiser state as host tensors.
    pub fn state(&self, graph: &Graph) -> Result<BTreeMap<String, HostTensor>> {
        match self {
            Optimizer::Sgd(o) => o.state(graph),
            Optimizer::AdamW(o) => o.state(graph),
        }
    }

    /// Restores the state saved by [`Optimizer::state`] after `steps` optimiser steps.
    pub fn load_state(
        &mut self,
        model: &Model,
        state: &BTreeMap<String, HostTensor>,
        steps: u64,
    ) -> Result<()> {
        match self {
            Optimizer::Sgd(o) => o.load_state(model, state),
            Optimizer::AdamW(o) => o.load_state(model, state, steps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use wrnc_ir::ParamId;
    use wrnc_testkit::graphs::{conv_bias, conv_bn_classifier};

    /// conv(1->1, 1x1, bias) -> bn -> gap -> flatten -> linear(2, no bias): tiny and inspectable.
    fn graph() -> Graph {
        conv_bn_classifier([1, 1, 2], conv_bias(1, 1, 1), 2, false)
    }

    /// Runs two SGD steps with constant gradients and returns the final parameter values
    /// by name; gradients: every element of every parameter gets grad `gval`.
    fn run(cfg: &Sgd, gval: f32) -> BTreeMap<String, Vec<f32>> {
        let g = graph();
        let w = crate::init::init_weights(&g, 0);
        let mut w2 = w.clone();
        for (name, t) in w2.tensors.iter_mut() {
            if !name.contains("running") {
                t.data.iter_mut().for_each(|v| *v = 1.0);
            }
        }
        let mut model = Model::new(&g, &w2, &Device::Cpu, DType::F32).unwrap();
        let mut opt = SgdOptimizer::new(cfg, &g);
        for _ in 0..2 {
            let grad = |t: &Tensor| t.ones_like().unwrap().affine(gval as f64, 0.0).ok();
            opt.step_with(&mut model, grad, 0.1).unwrap();
        }
        model
            .to_weights()
            .unwrap()
            .tensors
            .into_iter()
            .map(|(k, t)| (k, t.data))
            .collect()
    }

    /// SGD with learning rate 0.1 and the given momentum, dampening, nesterov and decay.
    fn sgd(momentum: f64, dampening: f64, nesterov: bool, weight_decay: f64, on: DecayOn) -> Sgd {
        Sgd {
            lr: 0.1,
            momentum,
            dampening,
            nesterov,
            weight_decay,
            weight_decay_on: on,
            ..Sgd::default()
        }
    }

    fn close(a: f32, b: f64) {
        assert!((a as f64 - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn nesterov_with_weight_decay_two_steps() {
        let out = run(&sgd(0.9, 0.0, true, 0.01, DecayOn::All), 0.5);
        // p0 = 1. step 1: g = 0.5 + 0.01 = 0.51; buf = 0.51; g = 0.51 + 0.9*0.51 = 0.969;
        // p1 = 1 - 0.0969 = 0.9031.
        // step 2: g = 0.5 + 0.01*0.9031 = 0.509031; buf = 0.9*0.51 + 0.509031 = 0.968031;
        // g = 0.509031 + 0.9*0.968031 = 1.3802589; p2 = 0.9031 - 0.13802589 = 0.76507411.
        for name in [
            "conv.weight",
            "conv.bias",
            "bn.weight",
            "bn.bias",
            "fc.weight",
        ] {
            for &v in &out[name] {
                close(v, 0.765_074_11);
            }
        }
        // running statistics are untouched
        assert_eq!(out["bn.running_mean"], vec![0.0]);
        assert_eq!(out["bn.running_var"], vec![1.0]);
    }

    #[test]
    fn plain_momentum_with_dampening() {
        let out = run(&sgd(0.9, 0.5, false, 0.0, DecayOn::All), 1.0);
        // step 1: buf = 1 (no dampening on the first step); p = 1 - 0.1 = 0.9.
        // step 2: buf = 0.9*1 + 0.5*1 = 1.4; p = 0.9 - 0.14 = 0.76.
        close(out["conv.weight"][0], 0.76);
        close(out["bn.bias"][0], 0.76);
    }

    #[test]
    fn decay_on_weights_skips_bn_and_biases() {
        let out = run(&sgd(0.9, 0.0, true, 0.01, DecayOn::Weights), 0.5);
        // decayed: as in the nesterov test
        close(out["conv.weight"][0], 0.765_074_11);
        close(out["fc.weight"][1], 0.765_074_11);
        // not decayed: g = 0.5 each step; step1: buf=.5, g=.95, p=.905;
        // step2: buf=.45+.5=.95, g=.5+.855=1.355, p=.905-.1355=.7695
        for name in ["conv.bias", "bn.weight", "bn.bias"] {
            close(out[name][0], 0.7695);
        }
    }

    /// Asserts that every tensor of `a` agrees with its namesake in `b` within 1e-6 relative.
    fn assert_tensors_close(a: &BTreeMap<String, HostTensor>, b: &BTreeMap<String, HostTensor>) {
        for (name, t) in a {
            for (x, y) in t.data.iter().zip(&b[name].data) {
                assert!(
                    (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                    "{name}: {x} vs {y}"
                );
            }
        }
    }

    /// Three steps with the fused in-place update against the reference arithmetic, for
    /// every combination of momentum, nesterov, dampening and decay.
    #[test]
    fn fused_update_matches_reference() {
        for (momentum, nesterov, dampening) in
            [(0.9, true, 0.0), (0.9, false, 0.3), (0.0, false, 0.0)]
        {
            let cfg = sgd(momentum, dampening, nesterov, 5e-4, DecayOn::Weights);
            let g = graph();
            let w = crate::init::init_weights(&g, 3);
            let mut results = Vec::new();
            for reference in [true, false] {
                let mut model = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
                model.set_reference_ops(reference);
                let mut opt = SgdOptimizer::new(&cfg, &g);
                for k in 0..3 {
                    let grad = |t: &Tensor| t.affine(0.3, 0.1 * k as f64 - 0.05).ok();
                    opt.step_with(&mut model, grad, 0.1).unwrap();
                }
                results.push((model.to_weights().unwrap(), opt.state(&g).unwrap()));
            }
            let [(w0, s0), (w1, s1)] = &results[..] else {
                unreachable!("two runs")
            };
            assert_tensors_close(&w0.tensors, &w1.tensors);
            assert_eq!(s0.len(), s1.len());
            assert_tensors_close(s0, s1);
        }
    }

    /// Arithmetic on a model variable records its inputs for Candle's autograd: a momentum
    /// buffer computed from the variable kept the previous buffer, the gradient and a scaled
    /// copy of the weights alive (a model's worth of memory per step on the reference path,
    /// twice the model once on the fast one). Gradients here are themselves computed from
    /// the variables, as the worst case.
    #[test]
    fn momentum_buffers_keep_no_autograd_graph() {
        let g = graph();
        let w = crate::init::init_weights(&g, 5);
        for reference in [true, false] {
            let mut model = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
            model.set_reference_ops(reference);
            let mut opt = SgdOptimizer::new(&sgd(0.9, 0.0, true, 5e-4, DecayOn::All), &g);
            for k in 0..3 {
                let grad = |t: &Tensor| t.affine(0.3, 0.1 * k as f64).ok();
                opt.step_with(&mut model, grad, 0.1).unwrap();
            }
            let buffers: Vec<&Tensor> = opt.buffers.iter().flatten().collect();
            assert!(!buffers.is_empty());
            for b in buffers {
                assert!(
                    !b.track_op(),
                    "reference {reference}: a buffer records its inputs"
                );
            }
            for i in 0..g.params.len() {
                let t = model.param_tensor(ParamId(i)).unwrap();
                assert!(t.is_variable() || !t.track_op(), "parameter {i}");
            }
        }
    }

    #[test]
    fn state_round_trips() {
        let g = graph();
        let w = crate::init::init_weights(&g, 1);
        let mut model = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
        let mut opt = SgdOptimizer::new(&Sgd::default(), &g);
        assert!(opt.state(&g).unwrap().is_empty());
        opt.step_with(&mut model, |t| t.ones_like().ok(), 0.1)
            .unwrap();
        let st = opt.state(&g).unwrap();
        assert_eq!(st.len(), 5);
        let mut opt2 = SgdOptimizer::new(&Sgd::default(), &g);
        opt2.load_state(&model, &st).unwrap();
        assert_eq!(opt2.state(&g).unwrap(), st);
    }
}
