//! The validate phase: fills the defaults that depend on other fields, then checks ranges and
//! consistency, each problem naming its field.

use crate::expand::{bottleneck_stages, wrn_param_counts};
use crate::model::{Block, Shortcut, SpecFile, Stem, WrnSpec};
use wrnc_ir::builder::check_param_budget;
use wrnc_recipe::{OptimizerKind, Schedule};

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

/// Checks cutout's size and random erasing's `p`, `scale` and `ratio` against the
/// `C x H x W` input.
fn validate_masks(a: &wrnc_recipe::Augment, input: &[usize]) -> Result<(), Problem> {
    if let Some(c) = a.cutout {
        let side = input[1].max(input[2]);
        if c.size == 0 || c.size > side {
            return Err(p(
                "data.augment.cutout.size",
                format!(
                    "must be between 1 and the image side {side}, got {} \
                     (the cutout paper uses 16 on CIFAR-10, 8 on CIFAR-100)",
                    c.size
                ),
            ));
        }
    }
    if let Some(e) = a.random_erasing {
        number("data.augment.random_erasing.p", e.p, Range::Unit, "")?;
        let [lo, hi] = e.scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(p(
                "data.augment.random_erasing.scale",
                format!(
                    "must be [a, b] with 0 < a <= b <= 1 (default [0.02, 0.33]), got [{lo}, {hi}]"
                ),
            ));
        }
        let [lo, hi] = e.ratio;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(p(
                "data.augment.random_erasing.ratio",
                format!("must be [a, b] with 0 < a <= b (default [0.3, 3.3]), got [{lo}, {hi}]"),
            ));
        }
        if let wrnc_recipe::EraseValue::Constant(v) = e.value {
            if !v.is_finite() {
                return Err(p(
                    "data.augment.random_erasing.value",
                    format!("must be a finite number or `random`, got {v}"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks mixup's and CutMix's `alpha`, `prob` and `switch_prob`: `alpha > 0`, the
/// probabilities in [0, 1], the shared `prob` / `switch_prob` not given two different values,
/// and `switch_prob` only when both are on.
fn validate_mixing(a: &wrnc_recipe::Augment) -> Result<(), Problem> {
    const ALPHA: &str = " (timm's usual values: mixup 0.8, cutmix 1.0; the mixup paper uses \
                         0.2 to 0.4 on ImageNet, 1 on CIFAR-10)";
    let blocks = [("mixup", a.mixup), ("cutmix", a.cutmix)];
    for (name, m) in blocks {
        let Some(m) = m else { continue };
        number(
            &format!("data.augment.{name}.alpha"),
            m.alpha,
            Range::Positive,
            ALPHA,
        )?;
        if let Some(v) = m.prob {
            number(&format!("data.augment.{name}.prob"), v, Range::Unit, "")?;
        }
        if let Some(v) = m.switch_prob {
            number(
                &format!("data.augment.{name}.switch_prob"),
                v,
                Range::Unit,
                "",
            )?;
            let other = if name == "mixup" { "cutmix" } else { "mixup" };
            if a.mixup.is_none() || a.cutmix.is_none() {
                return Err(p(
                    &format!("data.augment.{name}.switch_prob"),
                    format!(
                        "chooses between mixup and cutmix, so it needs both on; add \
                         `data.augment.{other}: {{alpha: A}}` or remove switch_prob"
                    ),
                ));
            }
        }
    }
    if let (Some(x), Some(y)) = (a.mixup, a.cutmix) {
        for (key, vx, vy) in [
            ("prob", x.prob, y.prob),
            ("switch_prob", x.switch_prob, y.switch_prob),
        ] {
            if let (Some(vx), Some(vy)) = (vx, vy) {
                if vx != vy {
                    return Err(p(
                        &format!("data.augment.cutmix.{key}"),
                        format!(
                            "is {vy} but data.augment.mixup.{key} is {vx}: mixup and cutmix \
                             share one {key} (timm's Mixup); give it once"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks `train.freeze` against the parameters of the lowered `graph`: every pattern a glob
/// that matches at least one trainable parameter, else the problem of `train.freeze[i]` with
/// the names closest to it.
pub fn freeze_patterns(s: &SpecFile, graph: &wrnc_ir::Graph) -> Result<(), Problem> {
    let names: Vec<&str> = graph
        .params
        .iter()
        .filter(|q| q.trainable)
        .map(|q| q.name.as_str())
        .collect();
    for (i, pat) in s.train.freeze.iter().enumerate() {
        let field = format!("train.freeze[{i}]");
        let glob = glob::Pattern::new(pat).map_err(|e| {
            p(
                &field,
                format!(
                    "`{pat}` is not a valid glob pattern ({e}); use `*` for any run of \
                     characters and `?` for one, e.g. `conv0.*`"
                ),
            )
        })?;
        if names.iter().any(|n| glob.matches(n)) {
            continue;
        }
        // Candidates: every name and `prefix.*` for every dotted prefix of one
        // (`group0.*`, `group0.block0.*`, ...).
        let mut prefixes: Vec<String> = Vec::new();
        for n in &names {
            for (i, _) in n.match_indices('.') {
                let g = format!("{}.*", &n[..i]);
                if !prefixes.contains(&g) {
                    prefixes.push(g);
                }
            }
        }
        let mut cands: Vec<&str> = names.clone();
        cands.extend(prefixes.iter().map(String::as_str));
        let near = crate::suggest::hint(pat, &cands);
        let examples: Vec<String> = prefixes
            .iter()
            .filter(|g| g.matches('.').count() == 1)
            .take(3)
            .map(|g| format!("`{g}`"))
            .collect();
        return Err(p(
            &field,
            format!(
                "`{pat}` matches no trainable parameter of the model{near} (parameter names \
                 look like `{}`; patterns such as {} or `{}`; see `wrnc summary`)",
                names.first().copied().unwrap_or("fc.weight"),
                examples.join(", "),
                names.last().copied().unwrap_or("fc.bias"),
            ),
        ));
    }
    Ok(())
}

/// Checks the augmentation policy's settings: `randaugment` only with `policy: randaugment`,
/// `n` and `m` in range, `policy_fill` a grey level, and a 1- or 3-channel input.
fn validate_policy(a: &wrnc_recipe::Augment, input: &[usize]) -> Result<(), Problem> {
    use wrnc_recipe::{AugmentPolicy, RandAugment};
    if let Some(ra) = a.randaugment {
        if a.policy != Some(AugmentPolicy::RandAugment) {
            let now = a
                .policy
                .map_or("no policy".to_string(), |p| format!("policy {p}"));
            return Err(p(
                "data.augment.randaugment",
                format!("applies only with `policy: randaugment` (the spec has {now})"),
            ));
        }
        if ra.n == 0 || ra.n > RandAugment::MAX_N {
            return Err(p(
                "data.augment.randaugment.n",
                format!(
                    "must be between 1 and {}, got {} (torchvision's default is 2)",
                    RandAugment::MAX_N,
                    ra.n
                ),
            ));
        }
        if ra.m >= RandAugment::BINS {
            return Err(p(
                "data.augment.randaugment.m",
                format!(
                    "must be a magnitude bin between 0 and {}, got {} (torchvision's default is 9)",
                    RandAugment::BINS - 1,
                    ra.m
                ),
            ));
        }
    }
    if let Some(f) = a.policy_fill {
        if a.policy.is_none() {
            return Err(p(
                "data.augment.policy_fill",
                "applies only with a `policy` (autoaugment_cifar10, randaugment, trivialaugment)"
                    .into(),
            ));
        }
        if f > 255 {
            return Err(p(
                "data.augment.policy_fill",
                format!("must be a grey level between 0 and 255, got {f}"),
            ));
        }
    }
    if let Some(pol) = a.policy {
        if input[0] != 1 && input[0] != 3 {
            return Err(p(
                "data.augment.policy",
                format!(
                    "{pol} works on 1- or 3-channel images (as torchvision's), the model input has {} channels",
                    input[0]
                ),
            ));
        }
    }
    Ok(())
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
        spec.model.input = ds.input_shape().map(|s| s.to_vec());
    }
    if spec.model.classes.is_none() {
        spec.model.classes = ds.classes();
    }
    if spec.data.root.is_none() {
        spec.data.root = ds.default_root().map(str::to_string);
    }
}

/// Checks `model.labels`: one non-empty, unique name per class.
fn check_labels(labels: &[String], classes: usize) -> Result<(), Problem> {
    if labels.len() != classes {
        return Err(p(
            "model.labels",
            format!(
                "{} names for {classes} classes: give one name per class, in label order",
                labels.len()
            ),
        ));
    }
    for (i, l) in labels.iter().enumerate() {
        let field = format!("model.labels[{i}]");
        if l.trim().is_empty() || l.chars().any(char::is_control) {
            return Err(p(
                &field,
                format!(
                    "{l:?} cannot name a class: give a non-empty name without control characters"
                ),
            ));
        }
        if let Some(j) = labels[..i].iter().position(|o| o == l) {
            return Err(p(
                &field,
                format!("`{l}` already names class {j}: class names must be unique"),
            ));
        }
    }
    Ok(())
}

/// The keys a folder dataset needs (`data.root`, `model.input` with 1 or 3 channels,
/// `model.classes`), and the folder-only keys refused for the built-in datasets.
fn folder_keys(s: &SpecFile) -> Result<(), Problem> {
    if s.data.root.as_deref().is_none_or(str::is_empty) {
        return Err(p(
            "data.root",
            "is required with data.dataset `folder`: the folder holding train/<class>/<images> \
             (and optionally val/ and test/)"
                .into(),
        ));
    }
    match &s.model.input {
        None => {
            return Err(p(
                "model.input",
                "is required with data.dataset `folder`: give [C, H, W], e.g. [3, 32, 32]; \
                 images are converted to C channels (1: grey, 3: RGB) and resized to H x W"
                    .into(),
            ))
        }
        Some(i) if i.first().is_some_and(|&c| c != 1 && c != 3) => {
            return Err(p(
                "model.input",
                format!(
                    "{i:?}: images of a folder can be read as 1 (grey) or 3 (RGB) channels, \
                     not {}",
                    i[0]
                ),
            ))
        }
        Some(_) => {}
    }
    if s.model.classes.is_none() {
        return Err(p(
            "model.classes",
            "is required with data.dataset `folder`: the number of class folders under \
             data.root/train"
                .into(),
        ));
    }
    Ok(())
}

/// Refuses the folder-only keys (`data.resize`, `data.bad_images`) for a built-in dataset,
/// whose images are read as they are.
fn builtin_keys(s: &SpecFile) -> Result<(), Problem> {
    let d = &s.data;
    let ds = d.dataset;
    if !d.resize.is_default() {
        return Err(p(
            "data.resize",
            format!(
                "applies only to data.dataset `folder`; the images of `{ds}` already have \
                 the model's size"
            ),
        ));
    }
    if !d.bad_images.is_default() {
        return Err(p(
            "data.bad_images",
            format!("applies only to data.dataset `folder`; `{ds}` has no image files"),
        ));
    }
    Ok(())
}

/// The keys of one optimiser kind (SAM's `rho`/`adaptive`, AdamW's `betas`/`eps`), label
/// smoothing, gradient clipping and EMA.
fn optimizer_extras(t: &wrnc_recipe::TrainConfig) -> Result<(), Problem> {
    let o = &t.optimizer;
    let kind = match o.kind {
        OptimizerKind::Sgd => "sgd",
        OptimizerKind::Sam => "sam",
        OptimizerKind::Adamw => "adamw",
    };
    let only = |field: &str, valid: &str| {
        p(
            field,
            format!(
                "applies only to train.optimizer.kind {valid}, but the kind is {kind}; \
                 remove it or set kind: {valid}"
            ),
        )
    };
    if o.kind != OptimizerKind::Sam {
        if o.rho.is_some() {
            return Err(only("train.optimizer.rho", "sam"));
        }
        if o.adaptive {
            return Err(only("train.optimizer.adaptive", "sam"));
        }
    }
    if o.kind != OptimizerKind::Adamw {
        if o.betas.is_some() {
            return Err(only("train.optimizer.betas", "adamw"));
        }
        if o.eps.is_some() {
            return Err(only("train.optimizer.eps", "adamw"));
        }
    }
    if let Some(rho) = o.rho {
        number(
            "train.optimizer.rho",
            rho,
            Range::Positive,
            " (davda54/sam: 0.05; ASAM: 2.0)",
        )?;
    }
    if let Some([b1, b2]) = o.betas {
        for (i, b) in [b1, b2].into_iter().enumerate() {
            if let Some(m) = Range::UnitOpen.refuse(b, " (PyTorch: [0.9, 0.999])") {
                return Err(p(&format!("train.optimizer.betas[{i}]"), m));
            }
        }
    }
    if let Some(eps) = o.eps {
        number(
            "train.optimizer.eps",
            eps,
            Range::Positive,
            " (PyTorch: 1e-8)",
        )?;
    }
    number(
        "train.label_smoothing",
        t.label_smoothing,
        Range::Unit,
        " (0.1 is usual)",
    )?;
    if let Some(c) = t.grad_clip {
        number("train.grad_clip", c, Range::Positive, "")?;
    }
    if let Some(ema) = &t.ema {
        number(
            "train.ema.decay",
            ema.decay,
            Range::UnitOpen,
            " (0.999 or 0.9999 are usual)",
        )?;
    }
    Ok(())
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
    if ds.is_folder() {
        folder_keys(s)?;
    } else {
        builtin_keys(s)?;
    }
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
    if let Some(shape) = ds.input_shape() {
        if input != shape {
            return Err(p(
                "model.input",
                format!(
                    "{input:?} does not match the images of data.dataset `{ds}`, which are \
                     {shape:?}"
                ),
            ));
        }
    }
    if let Some(n) = ds.classes() {
        if classes != n {
            return Err(p(
                "model.classes",
                format!("{classes} does not match data.dataset `{ds}`, which has {n} classes"),
            ));
        }
    }
    if let Some(labels) = &m.labels {
        check_labels(labels, classes)?;
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
    if let Some(n) = ds.train_size() {
        if d.val_size >= n {
            return Err(p(
                "data.val_size",
                format!(
                    "{} leaves no training data: {ds} has {n} training images",
                    d.val_size
                ),
            ));
        }
    }
    if d.prefetch == 0 || d.prefetch > 64 {
        return Err(p(
            "data.prefetch",
            format!("must be between 1 and 64, got {}", d.prefetch),
        ));
    }
    if let Some(a) = d.augment.on() {
        if let Some(c) = a.crop.on().filter(|_| a.crop_padding() > 0) {
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
        validate_masks(a, &input)?;
        validate_mixing(a)?;
        validate_policy(a, &input)?;
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
    optimizer_extras(t)?;
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
    if e.weights == Some(wrnc_recipe::ExportWeights::Ema) && t.ema.is_none() {
        return Err(p(
            "export.weights",
            "is `ema`, but train.ema is off; set train.ema: {decay: 0.999} or use `raw`".into(),
        ));
    }
    check_quantize(e)
}

/// `export.quantize` and its calibration keys.
fn check_quantize(e: &wrnc_recipe::ExportConfig) -> Result<(), Problem> {
    if e.calibration == Some(0) {
        return Err(p(
            "export.calibration",
            "must be at least 1 image (default 512)".into(),
        ));
    }
    if e.quantize.is_none() && (e.calibrate.is_some() || e.calibration.is_some()) {
        let key = if e.calibrate.is_some() {
            "export.calibrate"
        } else {
            "export.calibration"
        };
        return Err(p(key, "applies only with export.quantize: int8".into()));
    }
    if e.quantize.is_some() && !e.onnx {
        return Err(p(
            "export.quantize",
            "needs export.onnx: true (the int8 file is made from the float export)".into(),
        ));
    }
    if e.quantize.is_some() && !e.tta.is_none() {
        return Err(p(
            "export.quantize",
            format!(
                "cannot be combined with export.tta: {} yet (the int8 file is verified \
                 against the network's logits; a test-time augmentation file outputs \
                 probabilities): remove one of the two",
                e.tta.as_str()
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
