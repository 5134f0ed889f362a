//! The validate phase: fills the defaults that depend on other fields, then checks ranges and
//! consistency, each problem naming its field.

use crate::expand::{bottleneck_stages, wrn_param_counts};
use crate::model::{Block, Shortcut, SpecFile, Stem, WrnSpec};
use wrnc_ir::builder::check_param_budget;
use wrnc_recipe::Schedule;

/// A semantic problem: the dotted field path and what is wrong / valid.
pub type Problem = (String, String);

fn p(field: &str, msg: String) -> Problem {
    (field.to_string(), msg)
}

/// The valid values of a number field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Range {
    /// A finite number above 0.
    Positive,
    /// A finite number of at least 0.
    NonNegative,
    /// [0, 1).
    UnitOpen,
    /// [0, 1].
    Unit,
}

impl Range {
    /// None when `v` is in the range, else the message `must be in [0, 1)<note>, got <v>`.
    pub(crate) fn refuse(self, v: f64, note: &str) -> Option<String> {
        let (ok, text) = match self {
            Range::Positive => (v > 0.0 && v.is_finite(), "> 0"),
            Range::NonNegative => (v >= 0.0 && v.is_finite(), ">= 0"),
            Range::UnitOpen => ((0.0..1.0).contains(&v), "in [0, 1)"),
            Range::Unit => ((0.0..=1.0).contains(&v), "in [0, 1]"),
        };
        (!ok).then(|| format!("must be {text}{note}, got {v}"))
    }
}

/// What the paper uses or what a value means, said after a range.
const PAPER_DROPOUT: &str = " (the paper uses 0.3)";
const PAPER_GAMMA: &str = " (the paper uses 0.2)";
const BN_MOMENTUM: &str = " (PyTorch meaning: new = (1-m) old + m batch)";

/// Checks that number `field` (value `v`) is in `range`; `note` follows the range in the
/// message.
fn number(field: &str, v: f64, range: Range, note: &str) -> Result<(), Problem> {
    match range.refuse(v, note) {
        Some(message) => Err(p(field, message)),
        None => Ok(()),
    }
}

/// The validate phase. In: the typed spec as written and the name to use when it has none.
/// Out: the spec with the defaults that depend on other fields filled in (name, model input and
/// classes, data root: see [`fill_defaults`]), checked by [`validate`]; or the first problem.
pub fn resolve(mut spec: SpecFile, default_name: &str) -> Result<SpecFile, Problem> {
    fill_defaults(&mut spec, default_name);
    validate(&spec)?;
    Ok(spec)
}

/// Fills the defaults that depend on other fields: the name (`default_name`), and the model's
/// input shape and classes and the data root (the dataset's).
pub fn fill_defaults(spec: &mut SpecFile, default_name: &str) {
    if spec.name.is_none() {
        spec.name = Some(default_name.to_string());
    }
    let ds = spec.data.dataset;
    if spec.model.input.is_none() {
        spec.model.input = Some(ds.input_shape().to_vec());
    }
    if spec.model.classes.is_none() {
        spec.model.classes = Some(ds.classes());
    }
    if spec.data.root.is_none() {
        spec.data.root = ds.default_root().map(str::to_string);
    }
}

/// The valid WRN depths nearest to `d`.
pub fn nearest_depths(d: usize) -> Vec<usize> {
    if d < 10 {
        return vec![10];
    }
    let below = (d - 4) / 6 * 6 + 4;
    let above = below + 6;
    if below == d {
        vec![d]
    } else if below < 10 {
        vec![above]
    } else {
        vec![below, above]
    }
}

/// Largest depth accepted (far beyond any published WRN; bounds the graph's size).
pub const MAX_DEPTH: usize = 1000;

/// Checks that `model.wrn`'s block, stem and options form one of the two networks of the
/// paper: the CIFAR form (`block: basic`, `stem: cifar`, dropout and shortcut variants) or the
/// ImageNet form (`block: bottleneck`, `stem: imagenet`, torchvision's `wide_resnet50_2`
/// layout, which has neither).
fn wrn_form(w: &WrnSpec) -> Result<(), Problem> {
    match (w.block, w.stem) {
        (Block::Basic, Stem::Cifar) | (Block::Bottleneck, Stem::Imagenet) => {}
        (Block::Bottleneck, Stem::Cifar) => {
            return Err(p(
                "model.wrn.stem",
                "`block: bottleneck` is the paper's ImageNet network and needs \
                 `stem: imagenet` (7x7 stride-2 conv, 3x3 stride-2 max pool); the CIFAR stem \
                 goes with `block: basic`"
                    .into(),
            ))
        }
        (Block::Basic, Stem::Imagenet) => {
            return Err(p(
                "model.wrn.stem",
                "`stem: imagenet` goes with `block: bottleneck` (the paper's ImageNet \
                 network, e.g. WRN-50-2: depth 50, width 2); `block: basic` uses \
                 `stem: cifar`"
                    .into(),
            ))
        }
    }
    if w.block == Block::Bottleneck {
        if w.dropout != 0.0 {
            return Err(p(
                "model.wrn.dropout",
                format!(
                    "applies to basic blocks only: bottleneck blocks (torchvision's \
                     wide_resnet50_2) have no dropout; use 0, got {}",
                    w.dropout
                ),
            ));
        }
        if w.shortcut != Shortcut::Preact {
            return Err(p(
                "model.wrn.shortcut",
                "applies to basic (pre-activation) blocks only: a bottleneck's shortcut is a \
                 1x1 conv + BN of the block input where the shape changes, else the input; \
                 remove the key"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Checks everything that can be checked without building the graph. The spec must already
/// have `model.input` and `model.classes` resolved.
pub fn validate(s: &SpecFile) -> Result<(), Problem> {
    if let Some(name) = &s.name {
        if name.is_empty()
            || name.contains(['/', '\\'])
            || name == "."
            || name == ".."
            || name.chars().any(|c| c.is_control())
        {
            return Err(p(
                "name",
                format!("`{name}` cannot name a run directory: use letters, digits, `-`, `_`, `.`"),
            ));
        }
    }
    let m = &s.model;
    match (&m.wrn, &m.layers) {
        (Some(_), Some(_)) => {
            return Err(p(
                "model",
                "give either `wrn` (the WRN macro) or `layers` (a generic list), not both".into(),
            ))
        }
        (None, None) => {
            return Err(p(
                "model",
                "missing the network: add `wrn: {depth: 28, width: 10}` or a `layers:` list".into(),
            ))
        }
        _ => {}
    }
    let ds = s.data.dataset;
    let input = m.input.clone().unwrap_or_default();
    if input.len() != 3 || input.contains(&0) {
        return Err(p(
            "model.input",
            format!("must be [C, H, W] with every entry at least 1, got {input:?}"),
        ));
    }
    if input.iter().any(|&d| d > 65_536) {
        return Err(p(
            "model.input",
            format!("{input:?} is absurdly large; each dimension may be at most 65536"),
        ));
    }
    let classes = m.classes.unwrap_or(0);
    if classes < 2 {
        return Err(p(
            "model.classes",
            format!("must be at least 2, got {classes}"),
        ));
    }
    // Until the `folder` dataset (issue 13 item 1) can hold ImageNet-sized images, the
    // ImageNet form is checked against its data when training loads it, not here.
    let imagenet_form = m.wrn.as_ref().is_some_and(|w| w.stem == Stem::Imagenet);
    if input != ds.input_shape() && !imagenet_form {
        return Err(p(
            "model.input",
            format!(
                "{input:?} does not match the images of data.dataset `{}`, which are {:?}",
                ds,
                ds.input_shape()
            ),
        ));
    }
    if classes != ds.classes() && !imagenet_form {
        return Err(p(
            "model.classes",
            format!(
                "{classes} does not match data.dataset `{}`, which has {} classes",
                ds,
                ds.classes()
            ),
        ));
    }
    if let Some(w) = &m.wrn {
        wrn_form(w)?;
        if w.block == Block::Bottleneck {
            if bottleneck_stages(w.depth).is_none() {
                return Err(p(
                    "model.wrn.depth",
                    format!(
                        "{} is not a bottleneck depth: use 50, 101 or 152 (torchvision's \
                         ResNet-50/101/152 stages: 3-4-6-3, 3-4-23-3, 3-8-36-3 blocks)",
                        w.depth
                    ),
                ));
            }
        } else if w.depth < 10 || (w.depth - 4) % 6 != 0 || w.depth > MAX_DEPTH {
            let near: Vec<String> = nearest_depths(w.depth.min(MAX_DEPTH))
                .iter()
                .map(|d| d.to_string())
                .collect();
            return Err(p(
                "model.wrn.depth",
                format!(
                    "{} is not a WRN depth: depth must be 6N+4 with N >= 1 (10, 16, 22, 28, 34, \
                     40, ...) and at most {MAX_DEPTH}; nearest valid: {}",
                    w.depth,
                    near.join(" or ")
                ),
            ));
        }
        if w.width < 1 {
            let widths = match w.block {
                Block::Basic => "group widths are 16k, 32k, 64k",
                Block::Bottleneck => "bottleneck widths are 64k, 128k, 256k, 512k",
            };
            return Err(p(
                "model.wrn.width",
                format!("must be at least 1 ({widths}), got {}", w.width),
            ));
        }
        number(
            "model.wrn.dropout",
            w.dropout,
            Range::UnitOpen,
            PAPER_DROPOUT,
        )?;
        number("model.wrn.bn_eps", w.bn_eps, Range::Positive, "")?;
        number(
            "model.wrn.bn_momentum",
            w.bn_momentum,
            Range::Unit,
            BN_MOMENTUM,
        )?;
        if w.stem == Stem::Cifar && (input[1] < 4 || input[2] < 4) {
            return Err(p(
                "model.input",
                format!(
                    "{input:?} is too small for the two stride-2 stages of a WRN: height and \
                     width must be at least 4"
                ),
            ));
        }
        let (trainable, buffers) = wrn_param_counts(w, input[0], classes);
        if let Err(e) = check_param_budget(trainable + buffers) {
            return Err(p("model.wrn", e.to_string()));
        }
    }
    let d = &s.data;
    let n = ds.train_size();
    if d.val_size >= n {
        return Err(p(
            "data.val_size",
            format!(
                "{} leaves no training data: {ds} has {n} training images",
                d.val_size
            ),
        ));
    }
    if d.prefetch == 0 || d.prefetch > 64 {
        return Err(p(
            "data.prefetch",
            format!("must be between 1 and 64, got {}", d.prefetch),
        ));
    }
    if let Some(a) = d.augment.on() {
        if let Some(c) = a.crop.on() {
            let min = input[1].min(input[2]);
            if c.padding >= min {
                return Err(p(
                    "data.augment.crop.padding",
                    format!(
                        "{} is too large for {min}-pixel images: it must be less than {min}",
                        c.padding
                    ),
                ));
            }
        }
    }
    let t = &s.train;
    if t.epochs == 0 || t.epochs > 100_000 {
        return Err(p(
            "train.epochs",
            format!("must be between 1 and 100000, got {}", t.epochs),
        ));
    }
    for (f, v) in [
        ("train.batch_size", t.batch_size),
        ("train.eval_batch_size", t.eval_batch_size),
    ] {
        if v == 0 || v > 65_536 {
            return Err(p(f, format!("must be between 1 and 65536, got {v}")));
        }
    }
    let o = &t.optimizer;
    if !(o.lr > 0.0 && o.lr.is_finite()) {
        return Err(p(
            "train.optimizer.lr",
            format!("must be a positive number, got {}", o.lr),
        ));
    }
    number("train.optimizer.momentum", o.momentum, Range::UnitOpen, "")?;
    number("train.optimizer.dampening", o.dampening, Range::Unit, "")?;
    if o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0) {
        return Err(p(
            "train.optimizer.nesterov",
            "Nesterov momentum requires momentum > 0 and dampening 0 (as in PyTorch)".into(),
        ));
    }
    number(
        "train.optimizer.weight_decay",
        o.weight_decay,
        Range::NonNegative,
        "",
    )?;
    match &t.schedule {
        Schedule::Multistep { milestones, gamma } => {
            if milestones.windows(2).any(|w| w[0] >= w[1]) {
                return Err(p(
                    "train.schedule.milestones",
                    format!("must be strictly increasing epochs, got {milestones:?}"),
                ));
            }
            number("train.schedule.gamma", *gamma, Range::Positive, PAPER_GAMMA)?;
        }
        Schedule::Cosine { min_lr } => {
            if !(*min_lr >= 0.0 && *min_lr < o.lr) {
                return Err(p(
                    "train.schedule.min_lr",
                    format!(
                        "must be >= 0 and below train.optimizer.lr ({}), got {min_lr}",
                        o.lr
                    ),
                ));
            }
        }
        Schedule::Constant => {}
    }
    if t.warmup_epochs >= t.epochs {
        return Err(p(
            "train.warmup_epochs",
            format!(
                "{} must be less than train.epochs ({})",
                t.warmup_epochs, t.epochs
            ),
        ));
    }
    let e = &s.export;
    if !(13..=17).contains(&e.opset) {
        return Err(p(
            "export.opset",
            format!("{} is not supported: use 13 to 17 (default 17)", e.opset),
        ));
    }
    if e.file.is_empty() || e.file.contains(['/', '\\']) {
        return Err(p(
            "export.file",
            format!(
                "`{}` must be a plain file name inside the run directory",
                e.file
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_depths_are_6n_plus_4() {
        assert_eq!(nearest_depths(27), vec![22, 28]);
        assert_eq!(nearest_depths(29), vec![28, 34]);
        assert_eq!(nearest_depths(5), vec![10]);
        assert_eq!(nearest_depths(12), vec![10, 16]);
        assert_eq!(nearest_depths(28), vec![28]);
    }
}
