//! The training recipe: data, training and export settings as plain data.
//!
//! These types are what the spec's `data`, `train` and `export` sections deserialise into.
//! Their `Default`s are the paper's CIFAR recipe (official PyTorch code): SGD Nesterov 0.9,
//! lr 0.1, weight decay 5e-4 on all trainable parameters, batch 128, lr x0.2 at epochs
//! 60/120/160, 200 epochs, reflect-pad-4 random crop with independent offsets plus flip.
//! Range checks live in the spec crate, which knows the field paths and YAML lines.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// A feature that is either switched off (`none` or `false` in YAML) or configured.
#[derive(Debug, Clone, PartialEq)]
pub enum Toggle<T> {
    /// Switched off.
    Off,
    /// Switched on with settings.
    On(T),
}

impl<T> Toggle<T> {
    /// The settings when on.
    pub fn on(&self) -> Option<&T> {
        match self {
            Toggle::Off => None,
            Toggle::On(t) => Some(t),
        }
    }
}

impl<T: Serialize> Serialize for Toggle<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Toggle::Off => s.serialize_str("none"),
            Toggle::On(t) => t.serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Toggle<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`none`, `false` or a mapping of settings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "none" | "off" => Ok(Toggle::Off),
                    other => Err(E::invalid_value(
                        de::Unexpected::Str(other),
                        &"`none`, `false` or a mapping of settings",
                    )),
                }
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    Err(E::invalid_value(
                        de::Unexpected::Bool(true),
                        &"`none`, `false` or a mapping of settings",
                    ))
                } else {
                    Ok(Toggle::Off)
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Toggle::Off)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Toggle::On)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Which dataset to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// CIFAR-10, official binary layout.
    #[default]
    Cifar10,
    /// CIFAR-100, official binary layout (fine labels).
    Cifar100,
    /// The embedded UCI optical digits set (8x8, 1 channel).
    Digits,
}

impl DatasetKind {
    /// Image shape `[C, H, W]` of the dataset.
    pub fn input_shape(self) -> [usize; 3] {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => [3, 32, 32],
            DatasetKind::Digits => [1, 8, 8],
        }
    }

    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Digits => 10,
            DatasetKind::Cifar100 => 100,
        }
    }

    /// Default data folder (where `wrnc data fetch` unpacks); None for embedded data.
    pub fn default_root(self) -> Option<&'static str> {
        match self {
            DatasetKind::Cifar10 => Some("data/cifar-10-batches-bin"),
            DatasetKind::Cifar100 => Some("data/cifar-100-binary"),
            DatasetKind::Digits => None,
        }
    }
}

/// Input normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Per-channel mean and std of the training split (the official code's choice).
    #[default]
    MeanStd,
    /// Subtract the mean image of the training split.
    PerPixelMean,
    /// Subtract the per-channel mean of the training split.
    PerChannelMean,
    /// Pixels / 255 only.
    None,
}

/// Padding mode of the random crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PadMode {
    /// Mirror without repeating the edge (numpy/PyTorch `reflect`).
    #[default]
    Reflect,
    /// Zero padding.
    Zero,
}

/// Random crop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Random crop with independent x and y offsets, or `none`.
    pub crop: Toggle<Crop>,
    /// Random horizontal flip with probability 0.5.
    pub flip: bool,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            crop: Toggle::On(Crop::default()),
            flip: true,
        }
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

/// Which trainable parameters get weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecayOn {
    /// Every trainable parameter (the official code).
    #[default]
    All,
    /// Conv and linear weights only (BN and biases exempt).
    Weights,
}

/// SGD settings (PyTorch `torch.optim.SGD` semantics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sgd {
    /// Initial learning rate.
    pub lr: f64,
    /// Momentum.
    pub momentum: f64,
    /// Dampening (PyTorch's; 0 in the paper).
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
    /// Which parameters decay.
    pub weight_decay_on: DecayOn,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            nesterov: true,
            weight_decay: 5e-4,
            weight_decay_on: DecayOn::All,
        }
    }
}

/// Learning-rate schedule, stepped per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// PyTorch MultiStepLR: epoch e uses lr0 * gamma^(number of milestones <= e).
    Multistep {
        /// Epochs (counted from 0) at which the lr is multiplied by gamma.
        #[serde(default = "default_milestones")]
        milestones: Vec<usize>,
        /// Factor.
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// PyTorch CosineAnnealingLR over all epochs (T_max = epochs - warmup).
    Cosine {
        /// Final learning rate (eta_min).
        #[serde(default)]
        min_lr: f64,
    },
    /// Constant learning rate.
    Constant,
}

fn default_milestones() -> Vec<usize> {
    vec![60, 120, 160]
}

fn default_gamma() -> f64 {
    0.2
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Multistep {
            milestones: default_milestones(),
            gamma: default_gamma(),
        }
    }
}

/// Numeric precision of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 everywhere.
    #[default]
    F32,
    /// bf16 compute with f32 master weights and BN statistics (CUDA only).
    Bf16,
}

/// Where to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// CUDA when built in and present, else CPU.
    #[default]
    Auto,
    /// CPU.
    Cpu,
    /// CUDA GPU 0.
    Cuda,
}

/// The `train` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Number of epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Batch size for evaluation passes.
    pub eval_batch_size: usize,
    /// Seed of init, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Optimiser.
    pub optimizer: Sgd,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Epochs of linear warmup from lr/warmup_epochs... to lr (0: none).
    pub warmup_epochs: usize,
    /// Drop the last incomplete batch of each epoch.
    pub drop_last: bool,
    /// Compute precision.
    pub precision: Precision,
    /// Allow TF32 matmuls on CUDA.
    pub tf32: bool,
    /// Device.
    pub device: DeviceKind,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 200,
            batch_size: 128,
            eval_batch_size: 256,
            seed: 0,
            optimizer: Sgd::default(),
            schedule: Schedule::default(),
            warmup_epochs: 0,
            drop_last: false,
            precision: Precision::F32,
            tf32: false,
            device: DeviceKind::Auto,
        }
    }
}

/// The `export` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// Export ONNX at the end of training.
    pub onnx: bool,
    /// File name inside the run directory.
    pub file: String,
    /// ONNX opset (13..=17).
    pub opset: i64,
    /// Fold BatchNormalization into the preceding conv where possible.
    pub fold_bn: bool,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            onnx: true,
            file: "model.onnx".into(),
            opset: 17,
            fold_bn: true,
        }
    }
}

/// Everything a back end needs besides the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// Data settings.
    pub data: DataConfig,
    /// Training settings.
    pub train: TrainConfig,
    /// Export settings.
    pub export: ExportConfig,
}
