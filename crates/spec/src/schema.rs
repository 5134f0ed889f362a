//! Every key path a spec may hold (`train.optimizer.lr`, `model.wrn.depth`, ...), taken from
//! the typed spec itself, so a misplaced key can be pointed to where it belongs.

use crate::model::{ModelSection, SpecFile, WrnSpec};
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::sync::OnceLock;
use wrnc_recipe::{Augment, Crop, Schedule, Toggle};

/// Batch mixing with every key present.
const MIXING: wrnc_recipe::Mixing = wrnc_recipe::Mixing {
    alpha: 1.0,
    prob: Some(1.0),
    switch_prob: Some(0.5),
};

/// The dotted paths of every mapping key of the spec schema, sections included (`train`,
/// `train.optimizer`, `train.optimizer.lr`, ...). The items of `model.layers` are not
/// included (their keys are suggested among their siblings).
pub fn key_paths() -> &'static [String] {
    static PATHS: OnceLock<Vec<String>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let mut out = BTreeSet::new();
        let schedules = [
            Schedule::default(),
            Schedule::Cosine { min_lr: 0.0 },
            Schedule::Constant,
        ];
        for schedule in schedules {
            // Every optional part present, so that every key is serialised.
            let mut s = SpecFile {
                name: Some(String::new()),
                model: ModelSection {
                    input: Some(Vec::new()),
                    classes: Some(0),
                    wrn: Some(WrnSpec::default()),
                    layers: Some(Vec::new()),
                    labels: Some(Vec::new()),
                },
                ..SpecFile::default()
            };
            s.data.root = Some(String::new());
            s.data.augment = Toggle::On(Augment {
                crop: Toggle::On(Crop::default()),
                flip: true,
                cutout: Some(wrnc_recipe::Cutout { size: 1 }),
                random_erasing: Some(wrnc_recipe::RandomErasing::default()),
                mixup: Some(MIXING),
                cutmix: Some(MIXING),
                policy: Some(wrnc_recipe::AugmentPolicy::RandAugment),
                randaugment: Some(wrnc_recipe::RandAugment::default()),
                policy_fill: Some(0),
            });
            s.train.schedule = schedule;
            // The keys that are left unsaid when off.
            s.train.optimizer.kind = wrnc_recipe::OptimizerKind::Sam;
            s.train.optimizer.rho = Some(0.0);
            s.train.optimizer.adaptive = true;
            s.train.optimizer.betas = Some([0.0; 2]);
            s.train.optimizer.eps = Some(0.0);
            s.train.label_smoothing = 1.0;
            s.train.deterministic = false;
            s.train.grad_clip = Some(0.0);
            s.train.freeze = vec![String::new()];
            s.train.ema = Some(wrnc_recipe::Ema {
                decay: 0.0,
                warmup: true,
            });
            s.export.weights = Some(wrnc_recipe::ExportWeights::Raw);
            s.export.tta = wrnc_recipe::ExportTta::Flip;
            if let Ok(v) = serde_yaml::to_value(&s) {
                collect(&v, "", &mut out);
            }
        }
        out.into_iter().collect()
    })
}

fn collect(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Mapping(m) = v {
        for (k, child) in m {
            if let Value::String(k) = k {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect(child, &path, out);
                out.insert(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_keys_of_every_section() {
        let p = key_paths();
        for k in [
            "name",
            "model.wrn.depth",
            "model.layers",
            "data.root",
            "data.augment.crop.padding",
            "data.augment.cutout.size",
            "data.augment.random_erasing.p",
            "data.augment.random_erasing.scale",
            "data.augment.random_erasing.ratio",
            "data.augment.random_erasing.value",
            "data.augment.policy",
            "data.augment.randaugment.n",
            "data.augment.randaugment.m",
            "data.augment.policy_fill",
            "train.optimizer.lr",
            "train.schedule.kind",
            "train.schedule.milestones",
            "train.schedule.min_lr",
            "train.optimizer.kind",
            "train.optimizer.rho",
            "train.optimizer.betas",
            "train.label_smoothing",
            "train.grad_clip",
            "train.ema.decay",
            "train.ema.warmup",
            "export.weights",
            "export.opset",
            "export.tta",
        ] {
            assert!(p.iter().any(|x| x == k), "{k} missing from {p:?}");
        }
    }
}
