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

/// Which optimiser updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// PyTorch `torch.optim.SGD` (momentum, dampening, Nesterov, L2 weight decay).
    #[default]
    Sgd,
    /// Sharpness-aware minimisation (Foret et al. 2021; davda54/sam) around the SGD step:
    /// ascend to `w + rho * g / ||g||`, take the gradient there, return to `w` and step.
    Sam,
    /// PyTorch `torch.optim.AdamW` (decoupled weight decay, bias correction, no amsgrad).
    Adamw,
}

impl OptimizerKind {
    /// Whether this is the default (SGD), which the resolved spec leaves unsaid.
    pub fn is_sgd(&self) -> bool {
        *self == OptimizerKind::Sgd
    }
}

/// Default SAM neighbourhood radius (davda54/sam).
pub const DEFAULT_SAM_RHO: f64 = 0.05;
/// Default AdamW betas (PyTorch).
pub const DEFAULT_ADAM_BETAS: [f64; 2] = [0.9, 0.999];
/// Default AdamW epsilon (PyTorch).
pub const DEFAULT_ADAM_EPS: f64 = 1e-8;

fn is_false(b: &bool) -> bool {
    !*b
}

/// Optimiser settings: SGD (PyTorch `torch.optim.SGD` semantics) by default, SAM around it,
/// or AdamW (`kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sgd {
    /// Which optimiser (absent from the resolved spec when SGD).
    #[serde(skip_serializing_if = "OptimizerKind::is_sgd")]
    pub kind: OptimizerKind,
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
    /// SAM only: neighbourhood radius (None: [`DEFAULT_SAM_RHO`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    /// SAM only: ASAM's element-wise `|w|`-scaled perturbation.
    #[serde(skip_serializing_if = "is_false")]
    pub adaptive: bool,
    /// AdamW only: `[beta1, beta2]` (None: [`DEFAULT_ADAM_BETAS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    /// AdamW only: epsilon (None: [`DEFAULT_ADAM_EPS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
}

impl Sgd {
    /// SAM's radius.
    pub fn sam_rho(&self) -> f64 {
        self.rho.unwrap_or(DEFAULT_SAM_RHO)
    }

    /// AdamW's betas.
    pub fn adam_betas(&self) -> [f64; 2] {
        self.betas.unwrap_or(DEFAULT_ADAM_BETAS)
    }

    /// AdamW's epsilon.
    pub fn adam_eps(&self) -> f64 {
        self.eps.unwrap_or(DEFAULT_ADAM_EPS)
    }
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
            kind: OptimizerKind::Sgd,
            rho: None,
            adaptive: false,
            betas: None,
            eps: None,
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
    /// bf16 compute with f32 master weights and BN statistics (CUDA), or bf16 convolution
    /// products with f32 sums (a CPU with AVX-512 BF16).
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

/// `train.ema`: an exponential moving average of the weights (timm `ModelEmaV2`/`V3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ema {
    /// Decay `d`: after every optimiser step, `ema = d * ema + (1 - d) * value`.
    pub decay: f64,
    /// timm `ModelEmaV3`'s warm-up: update `u` (from 1) uses
    /// `min(d, 1 - (1 + (u - 1))^(-2/3))`, and 0 (a copy) for the first update.
    #[serde(default, skip_serializing_if = "is_false")]
    pub warmup: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
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
    /// Only deterministic cuDNN convolution algorithms on CUDA (bit-identical runs and
    /// resumes); `false` allows the fastest. Written into the resolved spec only when off.
    #[serde(skip_serializing_if = "is_true")]
    pub deterministic: bool,
    /// Device.
    pub device: DeviceKind,
    /// Label smoothing epsilon of the training loss (PyTorch `cross_entropy`'s
    /// `label_smoothing`; 0: none).
    #[serde(skip_serializing_if = "is_zero")]
    pub label_smoothing: f64,
    /// Clip the global L2 norm of the gradients to this value (PyTorch `clip_grad_norm_`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    /// Exponential moving average of the weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ema: Option<Ema>,
    /// Glob patterns over parameter names (as `--init-skip`'s, e.g. `conv0.*`): the matching
    /// trainable tensors are frozen, as PyTorch's `requires_grad = False` (no gradient, no
    /// weight decay, no optimiser state; BN running statistics still update).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<String>,
    /// Also write the scalars as TensorBoard event files under `RUN_DIR/tb/` (written into
    /// the resolved spec only when on).
    #[serde(skip_serializing_if = "is_false")]
    pub tensorboard: bool,
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
            deterministic: true,
            device: DeviceKind::Auto,
            label_smoothing: 0.0,
            grad_clip: None,
            ema: None,
            freeze: Vec::new(),
            tensorboard: false,
        }
    }
}
