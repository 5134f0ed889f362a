//! Automatic augmentation policies (`data.augment.policy`) on the `u8` image, after the crop
//! and flip and before normalisation, as torchvision's `transforms.v2` `AutoAugment`
//! (`AutoAugmentPolicy.CIFAR10`), `RandAugment` and `TrivialAugmentWide` with nearest
//! interpolation:
//!
//! * `autoaugment_cifar10`: one of the 25 sub-policies of Cubuk et al. 2019 ([`CIFAR10`]) is
//!   drawn; each of its two ops is applied with its probability at its magnitude bin of 10;
//! * `randaugment`: `n` ops drawn uniformly (with repetition) from [`OPS`], each at bin `m`
//!   of 31;
//! * `trivialaugment`: one op drawn uniformly from [`OPS`] at a bin drawn uniformly from 31,
//!   on the wider ranges of [`Space::Wide`].
//!
//! A signed op (shear, translation, rotation, brightness, colour, contrast, sharpness) has its
//! magnitude negated with probability 1/2. The magnitude tables are torchvision's
//! (`torch.linspace` in `f32`; see [`magnitude`]).
//!
//! Random numbers come from the epoch's generator, in the record's draw order (see
//! [`crate::augment::sample`]), only when a policy is on. Per image: AutoAugment draws the
//! sub-policy index, then per op a uniform `u` (applied when `u <= p`) and, for an applied
//! signed op, the sign (`u <= 0.5`: negative); RandAugment draws per op the op index and, for
//! a signed op, the sign; TrivialAugment draws the op index, then for an op with magnitudes
//! the bin and, if signed, the sign. These are torchvision's draws in its order (from another
//! generator).

use rand::Rng;
use wrnc_recipe::{Augment, AugmentPolicy};

use crate::error::{DataError, Result};
use crate::imageops::{self, Shape};

/// An op of the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyOp {
    /// The image unchanged.
    Identity,
    /// Horizontal shear by `atan(magnitude)`, about the top-left corner.
    ShearX,
    /// Vertical shear by `atan(magnitude)`, about the top-left corner.
    ShearY,
    /// Horizontal shift by `int(magnitude)` pixels.
    TranslateX,
    /// Vertical shift by `int(magnitude)` pixels.
    TranslateY,
    /// Rotation by `magnitude` degrees about the centre.
    Rotate,
    /// `adjust_brightness(1 + magnitude)`.
    Brightness,
    /// `adjust_saturation(1 + magnitude)`.
    Color,
    /// `adjust_contrast(1 + magnitude)`.
    Contrast,
    /// `adjust_sharpness(1 + magnitude)`.
    Sharpness,
    /// Keep `int(magnitude)` bits.
    Posterize,
    /// Invert the values `>= 255 * magnitude`.
    Solarize,
    /// Stretch each channel to the full range.
    AutoContrast,
    /// Equalise each channel's histogram.
    Equalize,
    /// `255 - p`.
    Invert,
}

impl PolicyOp {
    /// torchvision's name of the op.
    pub fn name(self) -> &'static str {
        match self {
            PolicyOp::Identity => "Identity",
            PolicyOp::ShearX => "ShearX",
            PolicyOp::ShearY => "ShearY",
            PolicyOp::TranslateX => "TranslateX",
            PolicyOp::TranslateY => "TranslateY",
            PolicyOp::Rotate => "Rotate",
            PolicyOp::Brightness => "Brightness",
            PolicyOp::Color => "Color",
            PolicyOp::Contrast => "Contrast",
            PolicyOp::Sharpness => "Sharpness",
            PolicyOp::Posterize => "Posterize",
            PolicyOp::Solarize => "Solarize",
            PolicyOp::AutoContrast => "AutoContrast",
            PolicyOp::Equalize => "Equalize",
            PolicyOp::Invert => "Invert",
        }
    }

    /// Whether the magnitude gets a random sign.
    pub fn signed(self) -> bool {
        matches!(
            self,
            PolicyOp::ShearX
                | PolicyOp::ShearY
                | PolicyOp::TranslateX
                | PolicyOp::TranslateY
                | PolicyOp::Rotate
                | PolicyOp::Brightness
                | PolicyOp::Color
                | PolicyOp::Contrast
                | PolicyOp::Sharpness
        )
    }

    /// Whether the op takes a magnitude.
    pub fn has_magnitude(self) -> bool {
        !matches!(
            self,
            PolicyOp::Identity | PolicyOp::AutoContrast | PolicyOp::Equalize | PolicyOp::Invert
        )
    }
}

/// The op set of RandAugment and TrivialAugmentWide, in torchvision's order (the index drawn
/// uniformly picks from it).
pub const OPS: [PolicyOp; 14] = [
    PolicyOp::Identity,
    PolicyOp::ShearX,
    PolicyOp::ShearY,
    PolicyOp::TranslateX,
    PolicyOp::TranslateY,
    PolicyOp::Rotate,
    PolicyOp::Brightness,
    PolicyOp::Color,
    PolicyOp::Contrast,
    PolicyOp::Sharpness,
    PolicyOp::Posterize,
    PolicyOp::Solarize,
    PolicyOp::AutoContrast,
    PolicyOp::Equalize,
];

/// One op of an AutoAugment sub-policy: the op, its probability and its magnitude bin (of
/// [`AUTOAUGMENT_BINS`]; unused by ops without a magnitude).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyStep {
    /// The op.
    pub op: PolicyOp,
    /// The probability that it is applied.
    pub p: f32,
    /// Its magnitude bin.
    pub bin: u8,
}

/// The magnitude bins of AutoAugment's policies.
pub const AUTOAUGMENT_BINS: usize = 10;
/// The magnitude bins of RandAugment and TrivialAugmentWide.
pub const WIDE_BINS: usize = 31;

const fn st(op: PolicyOp, p: f32, bin: u8) -> PolicyStep {
    PolicyStep { op, p, bin }
}

use PolicyOp as O;

/// The CIFAR-10 AutoAugment policy (Cubuk et al. 2019, table 7 of the arXiv version;
/// torchvision's `AutoAugmentPolicy.CIFAR10`): 25 sub-policies of two ops.
pub const CIFAR10: [[PolicyStep; 2]; 25] = [
    [st(O::Invert, 0.1, 0), st(O::Contrast, 0.2, 6)],
    [st(O::Rotate, 0.7, 2), st(O::TranslateX, 0.3, 9)],
    [st(O::Sharpness, 0.8, 1), st(O::Sharpness, 0.9, 3)],
    [st(O::ShearY, 0.5, 8), st(O::TranslateY, 0.7, 9)],
    [st(O::AutoContrast, 0.5, 0), st(O::Equalize, 0.9, 0)],
    [st(O::ShearY, 0.2, 7), st(O::Posterize, 0.3, 7)],
    [st(O::Color, 0.4, 3), st(O::Brightness, 0.6, 7)],
    [st(O::Sharpness, 0.3, 9), st(O::Brightness, 0.7, 9)],
    [st(O::Equalize, 0.6, 0), st(O::Equalize, 0.5, 0)],
    [st(O::Contrast, 0.6, 7), st(O::Sharpness, 0.6, 5)],
    [st(O::Color, 0.7, 7), st(O::TranslateX, 0.5, 8)],
    [st(O::Equalize, 0.3, 0), st(O::AutoContrast, 0.4, 0)],
    [st(O::TranslateY, 0.4, 3), st(O::Sharpness, 0.2, 6)],
    [st(O::Brightness, 0.9, 6), st(O::Color, 0.2, 8)],
    [st(O::Solarize, 0.5, 2), st(O::Invert, 0.0, 0)],
    [st(O::Equalize, 0.2, 0), st(O::AutoContrast, 0.6, 0)],
    [st(O::Equalize, 0.2, 0), st(O::Equalize, 0.6, 0)],
    [st(O::Color, 0.9, 9), st(O::Equalize, 0.6, 0)],
    [st(O::AutoContrast, 0.8, 0), st(O::Solarize, 0.2, 8)],
    [st(O::Brightness, 0.1, 3), st(O::Color, 0.7, 0)],
    [st(O::Solarize, 0.4, 5), st(O::AutoContrast, 0.9, 0)],
    [st(O::TranslateY, 0.9, 9), st(O::TranslateY, 0.7, 9)],
    [st(O::AutoContrast, 0.9, 0), st(O::Solarize, 0.8, 3)],
    [st(O::Equalize, 0.8, 0), st(O::Invert, 0.1, 0)],
    [st(O::TranslateY, 0.7, 9), st(O::AutoContrast, 0.9, 0)],
];

/// The magnitude ranges of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// AutoAugment's and RandAugment's: shear 0..0.3, translation 0..150/331 of the side,
    /// rotation 0..30 degrees, enhancements 0..0.9, posterize 8..4 bits, solarize 1..0.
    Standard,
    /// TrivialAugmentWide's: shear 0..0.99, translation 0..32 pixels, rotation 0..135
    /// degrees, enhancements 0..0.99, posterize 8..2 bits, solarize 1..0.
    Wide,
}

/// `torch.linspace(start, end, steps)[i]` in `f32`, as ATen's CPU kernel computes it (from
/// the start in the first half, from the end in the second, each a fused multiply-add: the
/// compiled kernel contracts `start + step * i`, which decides ties such as
/// `linspace(1, 0, 10)[3]`).
pub fn linspace(start: f32, end: f32, steps: usize, i: usize) -> f32 {
    if steps <= 1 {
        return start;
    }
    let step = (end - start) / (steps - 1) as f32;
    if i < steps / 2 {
        step.mul_add(i as f32, start)
    } else {
        (-step).mul_add((steps - i - 1) as f32, end)
    }
}

/// The unsigned magnitude of `op` at bin `bin` of `bins` in `space` for an `h x w` image, as
/// torchvision's tables (`None` for ops without one).
pub fn magnitude(
    op: PolicyOp,
    space: Space,
    bins: usize,
    bin: usize,
    h: usize,
    w: usize,
) -> Option<f32> {
    let wide = space == Space::Wide;
    let lin = |end: f64| Some(linspace(0.0, end as f32, bins, bin));
    match op {
        PolicyOp::Identity | PolicyOp::AutoContrast | PolicyOp::Equalize | PolicyOp::Invert => None,
        PolicyOp::ShearX | PolicyOp::ShearY => lin(if wide { 0.99 } else { 0.3 }),
        PolicyOp::TranslateX | PolicyOp::TranslateY if wide => lin(32.0),
        PolicyOp::TranslateX => lin(150.0 / 331.0 * w as f64),
        PolicyOp::TranslateY => lin(150.0 / 331.0 * h as f64),
        PolicyOp::Rotate => lin(if wide { 135.0 } else { 30.0 }),
        PolicyOp::Brightness | PolicyOp::Color | PolicyOp::Contrast | PolicyOp::Sharpness => {
            lin(if wide { 0.99 } else { 0.9 })
        }
        PolicyOp::Posterize => {
            let div = ((bins - 1) as f64 / if wide { 6.0 } else { 4.0 }) as f32;
            Some((8.0 - bin as f32 / div).round_ties_even())
        }
        PolicyOp::Solarize => Some(linspace(1.0, 0.0, bins, bin)),
    }
}

/// Applies `op` at the signed `magnitude` (torchvision's `_apply_image_or_video_transform`)
/// to the CHW image `img`, with `fill` for the pixels a geometric op uncovers.
pub fn apply_op(img: &mut [u8], s: Shape, op: PolicyOp, magnitude: f64, fill: u8) {
    let shear = || magnitude.atan().to_degrees();
    match op {
        PolicyOp::Identity => {}
        PolicyOp::ShearX => {
            imageops::affine(img, s, [0.0; 2], [shear(), 0.0], Some([0.0; 2]), fill)
        }
        PolicyOp::ShearY => {
            imageops::affine(img, s, [0.0; 2], [0.0, shear()], Some([0.0; 2]), fill)
        }
        PolicyOp::TranslateX => {
            imageops::affine(img, s, [magnitude.trunc(), 0.0], [0.0; 2], None, fill)
        }
        PolicyOp::TranslateY => {
            imageops::affine(img, s, [0.0, magnitude.trunc()], [0.0; 2], None, fill)
        }
        PolicyOp::Rotate => {
            imageops::rotate(img, s, magnitude, fill);
        }
        PolicyOp::Brightness => imageops::brightness(img, 1.0 + magnitude),
        PolicyOp::Color => imageops::color(img, s, 1.0 + magnitude),
        PolicyOp::Contrast => imageops::contrast(img, s, 1.0 + magnitude),
        PolicyOp::Sharpness => imageops::sharpness(img, s, 1.0 + magnitude),
        PolicyOp::Posterize => imageops::posterize(img, magnitude.max(0.0) as u32),
        PolicyOp::Solarize => imageops::solarize(img, 255.0 * magnitude),
        PolicyOp::AutoContrast => imageops::autocontrast(img, s),
        PolicyOp::Equalize => imageops::equalize(img, s),
        PolicyOp::Invert => imageops::invert(img),
    }
}

/// The most ops one image gets (RandAugment's largest `n`).
pub const MAX_OPS: usize = wrnc_recipe::RandAugment::MAX_N;

/// One op drawn for an image: the op, its magnitude bin and whether the magnitude is negated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpDraw {
    /// The op.
    pub op: PolicyOp,
    /// Its magnitude bin.
    pub bin: u8,
    /// Whether the magnitude is negated.
    pub negative: bool,
}

/// The ops drawn for one image, applied in order (at most [`MAX_OPS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolicyDraw {
    ops: [Option<OpDraw>; MAX_OPS],
}

impl PolicyDraw {
    /// The ops, in order.
    pub fn ops(&self) -> impl Iterator<Item = OpDraw> + '_ {
        self.ops.iter().flatten().copied()
    }

    fn push(&mut self, d: OpDraw) {
        if let Some(slot) = self.ops.iter_mut().find(|o| o.is_none()) {
            *slot = Some(d);
        }
    }
}

/// The magnitude space and number of bins of `policy`.
pub fn space(policy: AugmentPolicy) -> (Space, usize) {
    match policy {
        AugmentPolicy::AutoAugmentCifar10 => (Space::Standard, AUTOAUGMENT_BINS),
        AugmentPolicy::RandAugment => (Space::Standard, WIDE_BINS),
        AugmentPolicy::TrivialAugment => (Space::Wide, WIDE_BINS),
    }
}

/// Draws the sign of a signed op (`u <= 0.5`: negative, as torchvision).
fn sign<R: Rng + ?Sized>(op: PolicyOp, rng: &mut R) -> bool {
    op.signed() && rng.random::<f32>() <= 0.5
}

/// Draws the ops of `aug`'s policy for one image (nothing is drawn without a policy; the
/// order is in the module docs).
pub fn sample<R: Rng + ?Sized>(aug: &Augment, rng: &mut R) -> Option<PolicyDraw> {
    let policy = aug.policy?;
    let mut d = PolicyDraw::default();
    match policy {
        AugmentPolicy::AutoAugmentCifar10 => {
            let sub = &CIFAR10[rng.random_range(0..CIFAR10.len())];
            for step in sub {
                if rng.random::<f32>() <= step.p {
                    let negative = sign(step.op, rng);
                    d.push(OpDraw {
                        op: step.op,
                        bin: step.bin,
                        negative,
                    });
                }
            }
        }
        AugmentPolicy::RandAugment => {
            let ra = aug.randaugment_settings();
            for _ in 0..ra.n.min(MAX_OPS) {
                let op = OPS[rng.random_range(0..OPS.len())];
                let negative = sign(op, rng);
                d.push(OpDraw {
                    op,
                    bin: ra.m as u8,
                    negative,
                });
            }
        }
        AugmentPolicy::TrivialAugment => {
            let op = OPS[rng.random_range(0..OPS.len())];
            let (bin, negative) = if op.has_magnitude() {
                let bin = rng.random_range(0..WIDE_BINS) as u8;
                (bin, sign(op, rng))
            } else {
                (0, false)
            };
            d.push(OpDraw { op, bin, negative });
        }
    }
    Some(d)
}

/// Checks that a policy can act on images of `channels` channels (1 or 3, as torchvision's
/// kernels).
pub fn check_channels(aug: &Augment, channels: usize) -> Result<()> {
    match aug.policy {
        Some(p) if channels != 1 && channels != 3 => Err(DataError::invalid(
            "augmentation",
            format!("policy {p} works on 1- or 3-channel images, not {channels} channels"),
        )),
        _ => Ok(()),
    }
}

/// Applies the ops of `draw` for `aug`'s policy to the CHW `u8` image `img` (`s`).
pub fn apply(aug: &Augment, draw: &PolicyDraw, img: &mut [u8], s: Shape) {
    let Some(policy) = aug.policy else {
        return;
    };
    let (space, bins) = space(policy);
    for d in draw.ops() {
        let m = magnitude(d.op, space, bins, d.bin as usize, s.h, s.w).map_or(0.0, f64::from);
        let m = if d.negative { -m } else { m };
        apply_op(img, s, d.op, m, aug.fill());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use wrnc_recipe::RandAugment;

    fn with(policy: AugmentPolicy) -> Augment {
        Augment {
            policy: Some(policy),
            ..Augment::NONE
        }
    }

    #[test]
    fn no_policy_draws_nothing() {
        let mut a = ChaCha8Rng::seed_from_u64(1);
        let b = a.clone();
        assert!(sample(&Augment::NONE, &mut a).is_none());
        assert_eq!(a, b);
    }

    #[test]
    fn randaugment_draws_n_ops_at_bin_m() {
        let aug = Augment {
            randaugment: Some(RandAugment { n: 3, m: 17 }),
            ..with(AugmentPolicy::RandAugment)
        };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let d = sample(&aug, &mut rng).unwrap();
            assert_eq!(d.ops().count(), 3);
            for o in d.ops() {
                assert_eq!(o.bin, 17);
                assert!(!o.negative || o.op.signed());
                seen.insert(o.op);
            }
        }
        assert_eq!(seen.len(), OPS.len());
    }

    #[test]
    fn trivialaugment_draws_one_op_and_every_bin() {
        let aug = with(AugmentPolicy::TrivialAugment);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut bins = [false; WIDE_BINS];
        let mut negative = 0;
        for _ in 0..3000 {
            let d = sample(&aug, &mut rng).unwrap();
            let ops: Vec<_> = d.ops().collect();
            assert_eq!(ops.len(), 1);
            if ops[0].op.has_magnitude() {
                bins[ops[0].bin as usize] = true;
            }
            negative += usize::from(ops[0].negative);
        }
        assert!(bins.iter().all(|&b| b));
        // 9 of 14 ops are signed, half of those negated: about 3000 * 9 / 28 = 964.
        assert!(negative.abs_diff(964) < 120, "{negative}");
    }

    #[test]
    fn autoaugment_applies_ops_with_their_probability() {
        let aug = with(AugmentPolicy::AutoAugmentCifar10);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let n = 20_000;
        let applied: usize = (0..n)
            .map(|_| sample(&aug, &mut rng).unwrap().ops().count())
            .sum();
        // The expected number of ops per image is the mean over sub-policies of p1 + p2.
        let want: f32 = CIFAR10.iter().map(|s| s[0].p + s[1].p).sum::<f32>() / 25.0;
        let got = applied as f32 / n as f32;
        assert!((got - want).abs() < 0.02, "{got} vs {want}");
    }

    #[test]
    fn magnitudes_at_the_ends_of_the_ranges() {
        let m = |op, sp, bins, bin| magnitude(op, sp, bins, bin, 32, 32).unwrap();
        assert_eq!(m(O::Rotate, Space::Standard, 10, 9), 30.0);
        assert_eq!(m(O::Rotate, Space::Wide, 31, 30), 135.0);
        assert_eq!(m(O::Posterize, Space::Standard, 31, 30), 4.0);
        assert_eq!(m(O::Posterize, Space::Wide, 31, 30), 2.0);
        assert_eq!(m(O::Solarize, Space::Wide, 31, 0), 1.0);
        assert_eq!(m(O::Solarize, Space::Wide, 31, 30), 0.0);
        assert!((m(O::TranslateX, Space::Standard, 10, 9) - 150.0 / 331.0 * 32.0).abs() < 1e-5);
        assert!(magnitude(O::Equalize, Space::Wide, 31, 3, 32, 32).is_none());
    }
}
