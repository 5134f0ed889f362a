//! The `data` section: dataset, split, normalisation and augmentation settings.

use crate::dataset::DatasetKind;
use crate::error::UnknownName;
use crate::toggle::Toggle;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// How `u8` pixels become `f32` network inputs. Every mode first scales pixels to
/// `x = p / 255` in `[0, 1]`; statistics are fitted on the training split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// `(x - mean[c]) / std[c]`, per-channel mean and population std (the official code's
    /// choice).
    #[default]
    MeanStd,
    /// `x - mean_image[c, y, x]`: subtract the mean training image.
    PerPixelMean,
    /// `x - mean[c]`: subtract the per-channel mean.
    PerChannelMean,
    /// `x` only (pixels / 255).
    None,
}

impl Normalize {
    /// All modes.
    pub const ALL: [Normalize; 4] = [
        Normalize::MeanStd,
        Normalize::PerPixelMean,
        Normalize::PerChannelMean,
        Normalize::None,
    ];

    /// Canonical snake_case name, as in a spec: `mean_std`, `per_pixel_mean`,
    /// `per_channel_mean`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Normalize::MeanStd => "mean_std",
            Normalize::PerPixelMean => "per_pixel_mean",
            Normalize::PerChannelMean => "per_channel_mean",
            Normalize::None => "none",
        }
    }
}

impl fmt::Display for Normalize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Normalize {
    type Err = UnknownName;

    /// Parses the names of [`Normalize::as_str`] (case-insensitive, `-` accepted for `_`).
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        let norm = s.to_ascii_lowercase().replace('-', "_");
        Normalize::ALL
            .into_iter()
            .find(|m| m.as_str() == norm)
            .ok_or_else(|| UnknownName {
                what: "normalisation mode",
                name: s.to_string(),
                expected: "mean_std, per_pixel_mean, per_channel_mean, none",
            })
    }
}

/// How the border of a padded random crop is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PadMode {
    /// Mirror without repeating the edge pixel (numpy/PyTorch `reflect`: `padded[-1] = x[1]`).
    #[default]
    Reflect,
    /// Zero-valued pixels.
    Zero,
}

impl PadMode {
    /// Canonical name: `reflect` or `zero`.
    pub fn as_str(self) -> &'static str {
        match self {
            PadMode::Reflect => "reflect",
            PadMode::Zero => "zero",
        }
    }
}

impl fmt::Display for PadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PadMode {
    type Err = UnknownName;

    /// Parses `reflect` or `zero` (case-insensitive; `zeros` and `constant` also mean zero).
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s.to_ascii_lowercase().as_str() {
            "reflect" => Ok(PadMode::Reflect),
            "zero" | "zeros" | "constant" => Ok(PadMode::Zero),
            _ => Err(UnknownName {
                what: "pad mode",
                name: s.to_string(),
                expected: "reflect, zero",
            }),
        }
    }
}

/// Which random crop [`Crop`] draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CropKind {
    /// Pad by `padding` pixels, then cut a window of the image's size at a random offset
    /// (the CIFAR recipe).
    #[default]
    Padded,
    /// torchvision's `RandomResizedCrop` at the image's own size: a window of 8% to 100% of
    /// the area with aspect ratio in [3/4, 4/3] (10 tries, then a centre crop), resized back
    /// bilinearly. For large images; `padding` and `mode` are not used. Written
    /// `crop: random_resized` (shorthand for `crop: {kind: random_resized}`).
    RandomResized,
}

impl CropKind {
    /// The spec word: `padded` or `random_resized`.
    pub fn as_str(self) -> &'static str {
        match self {
            CropKind::Padded => "padded",
            CropKind::RandomResized => "random_resized",
        }
    }
}

/// Random crop settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Crop {
    /// Pixels of padding on each side; offsets cover all 2p+1 positions per axis.
    pub padding: usize,
    /// How the border is filled.
    pub mode: PadMode,
    /// Which crop (default: the padded crop).
    pub kind: CropKind,
}

impl Default for Crop {
    fn default() -> Self {
        Crop {
            padding: 4,
            mode: PadMode::Reflect,
            kind: CropKind::Padded,
        }
    }
}

impl Crop {
    /// torchvision's `RandomResizedCrop` ([`CropKind::RandomResized`]; `padding` and `mode`
    /// keep their unused defaults, as when parsed from `crop: random_resized`).
    pub const RANDOM_RESIZED: Crop = Crop {
        padding: 4,
        mode: PadMode::Reflect,
        kind: CropKind::RandomResized,
    };
}

impl Serialize for Crop {
    /// A padded crop as its mapping `{padding, mode}`; a random resized crop as the word
    /// `random_resized`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match self.kind {
            CropKind::RandomResized => s.serialize_str(self.kind.as_str()),
            CropKind::Padded => {
                let mut st = s.serialize_struct("Crop", 2)?;
                st.serialize_field("padding", &self.padding)?;
                st.serialize_field("mode", &self.mode)?;
                st.end()
            }
        }
    }
}

/// `data.augment.cutout`: one `size x size` square per training image set to zero after
/// normalisation (DeVries & Taylor 2017), its centre uniform over the image and the square
/// clipped at the borders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cutout {
    /// Side of the square in pixels.
    pub size: usize,
}

/// What random erasing writes into the erased rectangle (after normalisation): a number or
/// the word `random`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EraseValue {
    /// One constant for every erased value (0: the mean pixel).
    Constant(f64),
    /// `random`: each erased value drawn from a standard normal (torchvision's
    /// `value='random'`).
    Random,
}

impl Serialize for EraseValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EraseValue::Constant(v) => s.serialize_f64(*v),
            EraseValue::Random => s.serialize_str("random"),
        }
    }
}

impl<'de> Deserialize<'de> for EraseValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EraseValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or `random`")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<EraseValue, E> {
                Ok(EraseValue::Constant(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EraseValue, E> {
                Ok(EraseValue::Constant(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EraseValue, E> {
                Ok(EraseValue::Constant(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EraseValue, E> {
                if v == "random" {
                    Ok(EraseValue::Random)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `data.augment.random_erasing`: Zhong et al.'s random erasing with torchvision's
/// `RandomErasing` semantics, applied after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomErasing {
    /// Probability that an image is erased.
    pub p: f64,
    /// Range of the erased area as a fraction of the image.
    pub scale: [f64; 2],
    /// Range of the rectangle's aspect ratio (height / width), drawn log-uniformly.
    pub ratio: [f64; 2],
    /// The value written.
    pub value: EraseValue,
}

impl Default for RandomErasing {
    fn default() -> Self {
        RandomErasing {
            p: 0.5,
            scale: [0.02, 0.33],
            ratio: [0.3, 3.3],
            value: EraseValue::Constant(0.0),
        }
    }
}

/// `data.augment.mixup` or `data.augment.cutmix`: mixing each training batch with itself
/// reversed, as timm's `Mixup` in its default `batch` mode (mixup: Zhang et al. 2018;
/// CutMix: Yun et al. 2019). `prob` and `switch_prob` are shared by the two: when both are
/// on, a value may be given in either block (in both only if equal).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mixing {
    /// The Beta(alpha, alpha) distribution of the mixing weight lambda (must be > 0).
    pub alpha: f64,
    /// Probability that a batch is mixed at all (timm's `mix_prob`; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prob: Option<f64>,
    /// Probability of cutmix instead of mixup when both are on (timm's `switch_prob`;
    /// default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_prob: Option<f64>,
}

/// The resolved batch mixing of [`Augment::mixing`]: timm's `Mixup(mixup_alpha,
/// cutmix_alpha, prob, switch_prob, mode='batch', correct_lam=True)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchMix {
    /// Mixup's alpha (0: mixup off).
    pub mixup_alpha: f64,
    /// CutMix's alpha (0: cutmix off).
    pub cutmix_alpha: f64,
    /// Probability that a batch is mixed.
    pub prob: f64,
    /// Probability of cutmix instead of mixup when both are on.
    pub switch_prob: f64,
}

impl BatchMix {
    /// timm's default `mix_prob`.
    pub const DEFAULT_PROB: f64 = 1.0;
    /// timm's default `switch_prob`.
    pub const DEFAULT_SWITCH_PROB: f64 = 0.5;
}

/// `data.augment.policy`: an automatic augmentation policy applied to the `u8` image after
/// the crop and flip, before normalisation (torchvision's `AutoAugment`, `RandAugment`,
/// `TrivialAugmentWide` with nearest interpolation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AugmentPolicy {
    /// The CIFAR-10 AutoAugment policy of Cubuk et al. 2019 (25 sub-policies of two ops,
    /// torchvision's `AutoAugmentPolicy.CIFAR10`).
    #[serde(rename = "autoaugment_cifar10")]
    AutoAugmentCifar10,
    /// RandAugment (Cubuk et al. 2020): `n` ops drawn uniformly from 14, each at magnitude
    /// bin `m` of 31 (settings in [`Augment::randaugment`]).
    #[serde(rename = "randaugment")]
    RandAugment,
    /// TrivialAugment (Müller & Hutter 2021), torchvision's `TrivialAugmentWide`: one op
    /// drawn uniformly from 14 at a magnitude bin drawn uniformly from 31.
    #[serde(rename = "trivialaugment")]
    TrivialAugment,
}

impl AugmentPolicy {
    /// All policies.
    pub const ALL: [AugmentPolicy; 3] = [
        AugmentPolicy::AutoAugmentCifar10,
        AugmentPolicy::RandAugment,
        AugmentPolicy::TrivialAugment,
    ];

    /// The spec word: `autoaugment_cifar10`, `randaugment` or `trivialaugment`.
    pub fn as_str(self) -> &'static str {
        match self {
            AugmentPolicy::AutoAugmentCifar10 => "autoaugment_cifar10",
            AugmentPolicy::RandAugment => "randaugment",
            AugmentPolicy::TrivialAugment => "trivialaugment",
        }
    }
}

impl fmt::Display for AugmentPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `data.augment.randaugment`: RandAugment's number of ops per image and magnitude bin
/// (torchvision's `num_ops` and `magnitude`, defaults 2 and 9, of 31 bins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandAugment {
    /// Ops applied one after the other (1 to [`RandAugment::MAX_N`]).
    pub n: usize,
    /// The magnitude bin of every op (0 to 30).
    pub m: usize,
}

impl RandAugment {
    /// The largest `n` accepted.
    pub const MAX_N: usize = 10;
    /// The number of magnitude bins (torchvision's `num_magnitude_bins` default), so `m` is
    /// at most `BINS - 1`.
    pub const BINS: usize = 31;
}

impl Default for RandAugment {
    fn default() -> Self {
        RandAugment { n: 2, m: 9 }
    }
}

/// Training-time augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Random crop with independent x and y offsets, or `none`.
    pub crop: Toggle<Crop>,
    /// Random horizontal flip with probability 0.5.
    pub flip: bool,
    /// Cutout (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutout: Option<Cutout>,
    /// Random erasing (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub random_erasing: Option<RandomErasing>,
    /// Mixup of each batch with itself reversed (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixup: Option<Mixing>,
    /// CutMix of each batch with itself reversed (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutmix: Option<Mixing>,
    /// An automatic augmentation policy on the `u8` image after crop and flip (off when
    /// absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<AugmentPolicy>,
    /// RandAugment's settings (only with `policy: randaugment`; defaults `n: 2, m: 9` when
    /// absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub randaugment: Option<RandAugment>,
    /// The grey level (0 to 255, every channel) of the pixels a policy's shear, translation
    /// or rotation uncovers (torchvision's `fill`; absent: 0, black).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_fill: Option<usize>,
}

impl Default for Augment {
    fn default() -> Self {
        Augment::standard(PadMode::Reflect)
    }
}

impl Augment {
    /// No augmentation at all.
    pub const NONE: Augment = Augment {
        crop: Toggle::Off,
        flip: false,
        cutout: None,
        random_erasing: None,
        mixup: None,
        cutmix: None,
        policy: None,
        randaugment: None,
        policy_fill: None,
    };

    /// The usual CIFAR recipe: a crop with padding 4 filled by `mode`, plus flips.
    pub fn standard(mode: PadMode) -> Self {
        Augment {
            crop: Toggle::On(Crop {
                padding: 4,
                mode,
                kind: CropKind::Padded,
            }),
            flip: true,
            ..Augment::NONE
        }
    }

    /// The padding of the padded random crop in pixels (0: no padded crop).
    pub fn crop_padding(&self) -> usize {
        self.crop
            .on()
            .filter(|c| c.kind == CropKind::Padded)
            .map_or(0, |c| c.padding)
    }

    /// Whether a random resized crop ([`CropKind::RandomResized`]) is drawn.
    pub fn random_resized(&self) -> bool {
        self.crop
            .on()
            .is_some_and(|c| c.kind == CropKind::RandomResized)
    }

    /// The batch mixing (mixup, cutmix or both), when either is on. `prob` and
    /// `switch_prob` are taken from whichever block gives them (mixup's first), else timm's
    /// defaults; the spec's validation refuses two different values.
    pub fn mixing(&self) -> Option<BatchMix> {
        if self.mixup.is_none() && self.cutmix.is_none() {
            return None;
        }
        let both = [self.mixup, self.cutmix];
        let first = |f: fn(&Mixing) -> Option<f64>| both.iter().flatten().find_map(f);
        Some(BatchMix {
            mixup_alpha: self.mixup.map_or(0.0, |m| m.alpha),
            cutmix_alpha: self.cutmix.map_or(0.0, |m| m.alpha),
            prob: first(|m| m.prob).unwrap_or(BatchMix::DEFAULT_PROB),
            switch_prob: first(|m| m.switch_prob).unwrap_or(BatchMix::DEFAULT_SWITCH_PROB),
        })
    }

    /// `true` when the settings never change an image (of a single image: batch mixing,
    /// [`Augment::mixing`], is not counted).
    pub fn is_identity(&self) -> bool {
        self.crop_padding() == 0
            && !self.flip
            && !self.random_resized()
            && self.cutout.is_none()
            && self.random_erasing.is_none()
            && self.policy.is_none()
    }

    /// RandAugment's settings: those given, else the defaults.
    pub fn randaugment_settings(&self) -> RandAugment {
        self.randaugment.unwrap_or_default()
    }

    /// The fill grey level of the policy's geometric ops (0 unless `policy_fill` says).
    pub fn fill(&self) -> u8 {
        self.policy_fill.map_or(0, |v| v.min(255) as u8)
    }

    /// `true` when some augmentation acts on the normalised image (cutout, random erasing).
    pub fn masks(&self) -> bool {
        self.cutout.is_some() || self.random_erasing.is_some()
    }
}

/// How a folder's images are brought to `model.input`'s `H x W` (once, when decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Scale each axis to the target (the aspect ratio is not kept).
    #[default]
    Stretch,
    /// Scale, keeping the aspect ratio, until the image covers the target (its shorter side
    /// relative to the target fits exactly), then cut the centre `H x W`.
    ShorterSide,
    /// Scale, keeping the aspect ratio, until the image fits inside the target, then centre
    /// it on black (zero) pixels.
    Pad,
}

/// The resampling filter of a resize (the `image` crate's `FilterType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// Nearest neighbour.
    Nearest,
    /// Linear (bilinear; antialiased when shrinking).
    #[default]
    Triangle,
    /// Cubic (Catmull-Rom).
    CatmullRom,
    /// Lanczos with window 3.
    Lanczos3,
}

/// `data.resize`: how images of another size are brought to `model.input`'s `H x W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Resize {
    /// How the aspect ratio is handled.
    pub mode: ResizeMode,
    /// Resampling filter.
    pub filter: ResizeFilter,
}

impl Resize {
    /// Whether these are the defaults (`stretch`, `triangle`).
    pub fn is_default(&self) -> bool {
        *self == Resize::default()
    }
}

/// `data.bad_images`: what a folder's image that cannot be decoded does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BadImages {
    /// Stop with an error naming the file.
    #[default]
    Error,
    /// Leave the file out and report how many were left out, and which.
    Skip,
}

impl BadImages {
    /// Whether this is the default (`error`).
    pub fn is_default(&self) -> bool {
        *self == BadImages::Error
    }
}

/// The `data` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset.
    pub dataset: DatasetKind,
    /// Folder of the dataset's files (default: where `wrnc data fetch` puts it).
    pub root: Option<String>,
    /// Records held out of the training set for validation (0: none; then the test set is
    /// evaluated each epoch in its place, as the official code does).
    pub val_size: usize,
    /// Seed of the validation split.
    pub split_seed: u64,
    /// Input normalisation.
    pub normalize: Normalize,
    /// Augmentation, or `none`.
    pub augment: Toggle<Augment>,
    /// Shuffle the training set each epoch (false: file order).
    pub shuffle: bool,
    /// Batches prepared ahead on the background thread.
    pub prefetch: usize,
    /// How a folder's images are brought to `model.input`'s size (folder datasets only).
    #[serde(skip_serializing_if = "Resize::is_default")]
    pub resize: Resize,
    /// What an undecodable image of a folder does (folder datasets only).
    #[serde(skip_serializing_if = "BadImages::is_default")]
    pub bad_images: BadImages,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetKind::Cifar10,
            root: None,
            val_size: 0,
            split_seed: 456,
            normalize: Normalize::MeanStd,
            augment: Toggle::On(Augment::default()),
            shuffle: true,
            prefetch: 3,
            resize: Resize::default(),
            bad_images: BadImages::Error,
        }
    }
}

impl DataConfig {
    /// The folder the dataset's files are read from: `root` when given, else the dataset's
    /// default ([`DatasetKind::default_root`], e.g. `data/cifar-10-batches-bin`); `.` for
    /// the embedded digits, which read no files.
    pub fn root_dir(&self) -> PathBuf {
        match (&self.root, self.dataset.default_root()) {
            (Some(r), _) => PathBuf::from(r),
            (None, Some(d)) => PathBuf::from(d),
            (None, None) => PathBuf::from("."),
        }
    }

    /// The augmentation applied to training batches ([`Augment::NONE`] when switched off).
    pub fn augmentation(&self) -> Augment {
        self.augment.on().copied().unwrap_or(Augment::NONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Normalize::ALL {
            assert_eq!(m.as_str().parse::<Normalize>().ok(), Some(m));
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        assert!("zca".parse::<Normalize>().is_err());
        assert_eq!("Zero".parse::<PadMode>().ok(), Some(PadMode::Zero));
        assert!("wrap".parse::<PadMode>().is_err());
    }

    #[test]
    fn root_dir_and_augmentation() {
        let mut d = DataConfig::default();
        assert_eq!(d.root_dir(), PathBuf::from("data/cifar-10-batches-bin"));
        d.root = Some("elsewhere".into());
        assert_eq!(d.root_dir(), PathBuf::from("elsewhere"));
        assert_eq!(d.augmentation(), Augment::standard(PadMode::Reflect));
        assert_eq!(d.augmentation().crop_padding(), 4);
        d.augment = Toggle::Off;
        assert!(d.augmentation().is_identity());
        let d = DataConfig {
            dataset: DatasetKind::Digits,
            ..DataConfig::default()
        };
        assert_eq!(d.root_dir(), PathBuf::from("."));
    }

    #[test]
    fn crop_words() {
        let a: Augment = serde_yaml::from_str("crop: random_resized\nflip: true").unwrap();
        assert!(a.random_resized() && a.crop_padding() == 0 && !a.is_identity());
        assert_eq!(a.crop, Toggle::On(Crop::RANDOM_RESIZED));
        let back = serde_yaml::to_string(&a).unwrap();
        assert_eq!(back, "crop: random_resized\nflip: true\n");
        let a: Augment = serde_yaml::from_str("crop: {kind: random_resized}").unwrap();
        assert!(a.random_resized());
        let a: Augment = serde_yaml::from_str("crop: {padding: 2, mode: zero}").unwrap();
        assert_eq!(a.crop_padding(), 2);
        assert_eq!(
            serde_yaml::to_string(&a).unwrap(),
            "crop:\n  padding: 2\n  mode: zero\nflip: true\n"
        );
        let e = serde_yaml::from_str::<Augment>("crop: random_resize")
            .unwrap_err()
            .to_string();
        assert!(e.contains("random_resized"), "{e}");
        let e = serde_yaml::from_str::<Augment>("crop: maybe")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`none`, `padded` or `random_resized`"), "{e}");
        // Settings without a `kind` keep the general message.
        let e = serde_yaml::from_str::<DataConfig>("augment: maybe")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mapping of settings"), "{e}");
    }

    #[test]
    fn policy_words() {
        for p in AugmentPolicy::ALL {
            let a: Augment = serde_yaml::from_str(&format!("policy: {p}")).unwrap();
            assert_eq!(a.policy, Some(p));
            assert!(!a.is_identity());
            assert_eq!(a.randaugment_settings(), RandAugment { n: 2, m: 9 });
            assert_eq!(a.fill(), 0);
        }
        let a: Augment =
            serde_yaml::from_str("policy: randaugment\nrandaugment: {n: 3}\npolicy_fill: 128")
                .unwrap();
        assert_eq!(a.randaugment_settings(), RandAugment { n: 3, m: 9 });
        assert_eq!(a.fill(), 128);
        assert_eq!(
            serde_yaml::to_string(&a).unwrap(),
            "crop:\n  padding: 4\n  mode: reflect\nflip: true\npolicy: randaugment\n\
             randaugment:\n  n: 3\n  m: 9\npolicy_fill: 128\n"
        );
        let e = serde_yaml::from_str::<Augment>("policy: autoaugment")
            .unwrap_err()
            .to_string();
        assert!(e.contains("autoaugment_cifar10"), "{e}");
        // Without a policy nothing new is written, so existing specs print as before.
        let y = serde_yaml::to_string(&Augment::default()).unwrap();
        assert!(!y.contains("policy") && !y.contains("randaugment"), "{y}");
    }

    #[test]
    fn resize_and_bad_image_words() {
        let r: Resize = serde_yaml::from_str("{mode: shorter_side, filter: catmull_rom}").unwrap();
        assert_eq!(r.mode, ResizeMode::ShorterSide);
        assert_eq!(r.filter, ResizeFilter::CatmullRom);
        let r: Resize = serde_yaml::from_str("{mode: pad, filter: lanczos3}").unwrap();
        assert_eq!(
            (r.mode, r.filter),
            (ResizeMode::Pad, ResizeFilter::Lanczos3)
        );
        assert!(Resize::default().is_default());
        let b: BadImages = serde_yaml::from_str("skip").unwrap();
        assert_eq!(b, BadImages::Skip);
        // The defaults are not written, so specs without them print as before.
        let y = serde_yaml::to_string(&DataConfig::default()).unwrap();
        assert!(!y.contains("resize") && !y.contains("bad_images"), "{y}");
    }
}
