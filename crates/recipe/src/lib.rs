//! # wrnc-recipe: the configuration vocabulary of wrnc
//!
//! Every configuration word is defined here once, with its serde name: the dataset kinds
//! ([`DatasetKind`], with their shapes, classes, split sizes and folders), the normalisation
//! mode ([`Normalize`]), the crop padding mode ([`PadMode`]), augmentation ([`Augment`]),
//! and the spec's `data`, `train` and `export` sections, gathered in [`Recipe`].
//!
//! The spec crate deserialises these types from YAML and checks their ranges (it knows the
//! field paths and lines); the data, training, ONNX crates and the CLI use them directly.
//! `Default`s are the paper's CIFAR recipe (official PyTorch code): SGD Nesterov 0.9, lr 0.1,
//! weight decay 5e-4 on all trainable parameters, batch 128, lr x0.2 at epochs 60/120/160,
//! 200 epochs, reflect-pad-4 random crop with independent offsets plus flip.

pub mod data;
pub mod dataset;
pub mod error;
pub mod export;
pub mod toggle;
pub mod train;

pub use data::{
    Augment, AugmentPolicy, BadImages, BatchMix, Crop, CropKind, Cutout, DataConfig, EraseValue,
    Mixing, Normalize, PadMode, RandAugment, RandomErasing, Resize, ResizeFilter, ResizeMode,
};
pub use dataset::{
    DatasetKind, CIFAR100_CLASSES, CIFAR100_DIR, CIFAR10_CLASSES, CIFAR10_DIR, DATA_DIR,
    DIGITS_CLASSES,
};
pub use dataset::{
    FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, FASHION_MNIST_SYSTEM_DIR, MNIST_CLASSES, MNIST_DIR,
};
pub use error::UnknownName;
pub use export::{
    CalibrationMethod, ExportConfig, ExportTta, ExportWeights, Quantize, DEFAULT_CALIBRATION_IMAGES,
};
pub use toggle::Toggle;
pub use train::{
    DecayOn, DeviceKind, Ema, OptimizerKind, Precision, Schedule, Sgd, TrainConfig,
    DEFAULT_ADAM_BETAS, DEFAULT_ADAM_EPS, DEFAULT_SAM_RHO,
};

use serde::{Deserialize, Serialize};

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
