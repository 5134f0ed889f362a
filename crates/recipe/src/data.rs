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

/// Random crop settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Crop {
    /// Pixels of padding on each side; offsets cover all 2p+1 positions per axis.
    pub padding: usize,
    /// How the border is filled.
    pub mode: PadMode,
}

impl Default for Crop {
    fn default() -> Self {
        Crop {
            padding: 4,
            mode: PadMode::Reflect,
        }
    }
}

/// Training-time augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Random crop with independent x and y offsets, or `none`.
    pub crop: Toggle<Crop>,
    /// Random horizontal flip with probability 0.5.
    pub flip: bool,
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
    };

    /// The usual CIFAR recipe: a crop with padding 4 filled by `mode`, plus flips.
    pub fn standard(mode: PadMode) -> Self {
        Augment {
            crop: Toggle::On(Crop { padding: 4, mode }),
            flip: true,
        }
    }

    /// The crop padding in pixels (0: no random crop).
    pub fn crop_padding(&self) -> usize {
        self.crop.on().map_or(0, |c| c.padding)
    }

    /// `true` when the settings never change an image.
    pub fn is_identity(&self) -> bool {
        self.crop_padding() == 0 && !self.flip
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
}
