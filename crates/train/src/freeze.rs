//! `train.freeze: [patterns]`: trainable tensors kept fixed, as PyTorch parameters with
//! `requires_grad = False`. The patterns are globs over parameter names, as `--init-skip`'s
//! ([`crate::finetune`]). A frozen tensor's gradient is dropped before anything uses it, so
//! it gets no optimiser step, no weight decay and no optimiser state, is left out of
//! `clip_grad_norm_`'s norm and of SAM's perturbation; BN running statistics (not trainable)
//! still update, and the EMA still averages every tensor.

use crate::error::{Result, TrainError};
use glob::Pattern;
use wrnc_ir::Graph;

/// Which trainable parameters of `graph` (indexed by `ParamId`) the patterns freeze. A
/// malformed pattern is an error; a pattern matching nothing is refused by the spec's
/// validation (with its line), not here.
pub fn frozen_params(graph: &Graph, patterns: &[String]) -> Result<Vec<bool>> {
    let pats = patterns
        .iter()
        .map(|s| {
            Pattern::new(s).map_err(|e| {
                TrainError::Invalid(format!(
                    "train.freeze: `{s}` is not a valid glob pattern ({e}); use `*` for any \
                     run of characters, e.g. `conv0.*`"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(graph
        .params
        .iter()
        .map(|p| p.trainable && pats.iter().any(|q| q.matches(&p.name)))
        .collect())
}

/// How much of a network `train.freeze` holds fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrozenCount {
    /// Frozen tensors.
    pub tensors: usize,
    /// Their scalar parameters.
    pub params: usize,
}

/// The frozen tensors of `graph` under `patterns` and their parameter count.
pub fn frozen_count(graph: &Graph, patterns: &[String]) -> Result<FrozenCount> {
    let mask = frozen_params(graph, patterns)?;
    let mut c = FrozenCount::default();
    for (p, _) in graph.params.iter().zip(&mask).filter(|(_, &f)| f) {
        c.tensors += 1;
        c.params += p.shape.iter().product::<usize>();
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::init_weights;
    use crate::model::{Mode, Model};
    use crate::optim::Optimizer;
    use crate::sam::step_grads_for;
    use crate::step::Targets;
    use candle_core::{DType, Device};
    use std::collections::BTreeMap;
    use wrnc_recipe::{OptimizerKind, Sgd, TrainConfig};
    use wrnc_testkit::graphs::{conv, conv_bn_classifier};

    #[test]
    fn patterns_select_trainable_tensors_only() {
        let g = conv_bn_classifier([2, 6, 6], conv(4, 3, 1), 3, true);
        let names = |pats: &[&str]| -> Vec<String> {
            let pats: Vec<String> = pats.iter().map(|s| s.to_string()).collect();
            let mask = frozen_params(&g, &pats).unwrap();
            g.params
                .iter()
                .zip(mask)
                .filter(|(_, f)| *f)
                .map(|(p, _)| p.name.clone())
                .collect()
        };
        // The running statistics match `bn.*` but are not trainable: never frozen.
        assert_eq!(names(&["bn.*"]), ["bn.weight", "bn.bias"]);
        assert_eq!(names(&["*.bias"]), ["bn.bias", "fc.bias"]);
        assert!(names(&[]).is_empty());
        let c = frozen_count(&g, &["conv.*".into(), "fc.bias".into()]).unwrap();
        assert_eq!(
            c,
            FrozenCount {
                tensors: 2,
                params: 4 * 2 * 9 + 3
            }
        );
        assert!(frozen_params(&g, &["[".into()]).is_err());
    }

    /// Runs 3 optimiser steps of `tc` on the fast kernels and on Candle's reference ops and
    /// returns the weights after each run (by name).
    fn train(tc: &TrainConfig, reference: bool) -> (BTreeMap<String, Vec<f32>>, Vec<f64>) {
        let g = conv_bn_classifier([2, 6, 6], conv(4, 3, 1), 3, true);
        let w = init_weights(&g, 7);
        let n = 6;
        let mut m = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
        m.set_reference_ops(reference);
        let mut opt = Optimizer::new(&tc.optimizer, &g);
        let mut norms = Vec::new();
        for step in 0..3u64 {
            let images: Vec<f32> = (0..n * 72)
                .map(|i| (((i + 13 * step as usize) * 29 % 97) as f32 / 40.0) - 1.2)
                .collect();
            let x = m.input_tensor(&images, n).unwrap();
            let t = crate::mixup::mixup_targets(&[0, 2, 1, 1, 0, 2], 3, 0.65, 0.1);
            let mode = Mode::Train { seed: 1, step };
            let s = step_grads_for(&mut m, &x, Targets::Soft(&t), mode, tc).unwrap();
            norms.extend(s.norm);
            opt.step_with(&mut m, |p| s.grads.get(p), 0.1).unwrap();
        }
        let w = m.to_weights().unwrap();
        let out = w
            .tensors
            .into_iter()
            .map(|(k, t)| (k, t.data.clone()))
            .collect();
        (out, norms)
    }

    /// Frozen tensors end bit-identical to their init under SGD (momentum, Nesterov, weight
    /// decay), SAM and AdamW with clipping; the others and the BN running statistics move;
    /// the fast path and Candle's reference ops agree; the clipped norm leaves the frozen
    /// gradients out.
    #[test]
    fn frozen_tensors_never_move() {
        let g = conv_bn_classifier([2, 6, 6], conv(4, 3, 1), 3, true);
        let init: BTreeMap<String, Vec<f32>> = init_weights(&g, 7)
            .tensors
            .into_iter()
            .map(|(k, t)| (k, t.data.clone()))
            .collect();
        for kind in [OptimizerKind::Sgd, OptimizerKind::Sam, OptimizerKind::Adamw] {
            let mut tc = TrainConfig {
                grad_clip: Some(0.3),
                freeze: vec!["conv.*".into(), "bn.w*".into()],
                ..TrainConfig::default()
            };
            tc.optimizer = Sgd {
                kind,
                nesterov: kind != OptimizerKind::Adamw,
                weight_decay: 5e-3,
                ..Sgd::default()
            };
            let (fast, norms) = train(&tc, false);
            let (reference, _) = train(&tc, true);
            for (name, v) in &fast {
                let frozen = name == "conv.weight" || name == "bn.weight";
                if frozen {
                    assert_eq!(v, &init[name], "{kind:?}: {name} moved");
                } else {
                    assert_ne!(v, &init[name], "{kind:?}: {name} did not move");
                }
                let r = &reference[name];
                let scale = r.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
                for (a, b) in v.iter().zip(r) {
                    assert!((a - b).abs() <= 1e-4 * scale, "{kind:?} {name}: {a} vs {b}");
                }
            }
            // The first step's norm is that of the unfrozen gradients alone.
            let mut m = Model::new(&g, &init_weights(&g, 7), &Device::Cpu, DType::F32).unwrap();
            let images: Vec<f32> = (0..6 * 72)
                .map(|i| ((i * 29 % 97) as f32 / 40.0) - 1.2)
                .collect();
            let x = m.input_tensor(&images, 6).unwrap();
            let t = crate::mixup::mixup_targets(&[0, 2, 1, 1, 0, 2], 3, 0.65, 0.1);
            let mode = Mode::Train { seed: 1, step: 0 };
            let all = m.loss_and_grads_soft(&x, &t, mode).unwrap();
            let mut sq = 0f64;
            for (id, v) in m.trainable() {
                let name = &g.params[id.0].name;
                if name != "conv.weight" && name != "bn.weight" {
                    let gv: Vec<f32> = all
                        .grads
                        .get(v.as_tensor())
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    sq += gv.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
                }
            }
            assert!(
                (norms[0] - sq.sqrt()).abs() < 1e-5 * sq.sqrt(),
                "{} vs {}",
                norms[0],
                sq.sqrt()
            );
        }
    }
}
