//! The `train` section: optimiser, schedule, precision and device.

use serde::{Deserialize, Serialize};

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
    /// Epochs of linear warm-up, per optimiser step: with `n = warmup_epochs * steps per
    /// epoch`, step `s` (from 0) uses `lr * ((s + 1) / n)` for `s < n` (0: none).
    pub warmup_epochs: usize,
    /// Drop the last incomplete batch of each epoch.
    pub drop_last: bool,
    /// Compute precision.
    pub precision: Precision,
    /// Allow TF32 matmuls on CUDA.
    pub tf32: bool,
    /// Device.
    pub device: DeviceKind,
    /// Also write the scalars as TensorBoard event files under `RUN_DIR/tb/` (written into
    /// the resolved spec only when on).
    #[serde(skip_serializing_if = "is_false")]
    pub tensorboard: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
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
            tensorboard: false,
        }
    }
}
