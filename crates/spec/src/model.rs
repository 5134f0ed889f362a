//! The typed spec file: what `spec.yaml` deserialises into.

use serde::{Deserialize, Serialize};
pub use wrnc_ir::OpKind;
use wrnc_recipe::{DataConfig, ExportConfig, TrainConfig};

/// A whole spec file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// Model name (default: the file name without extension). Names the run directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The network.
    pub model: ModelSection,
    /// Dataset, split, normalisation, augmentation.
    #[serde(default)]
    pub data: DataConfig,
    /// Optimiser, schedule, epochs.
    #[serde(default)]
    pub train: TrainConfig,
    /// ONNX export.
    #[serde(default)]
    pub export: ExportConfig,
}

/// The `model` section: a WRN macro or a generic layer list, plus input and classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Input shape `[C, H, W]` (default: the dataset's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<usize>>,
    /// Number of classes (default: the dataset's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Class names, index = class id (default: the dataset's): recorded in the run
    /// directory, the weights and the ONNX file, printed by `eval --json` and `predict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// The Wide Residual Network macro.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrn: Option<WrnSpec>,
    /// A generic list of layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerSpec>>,
}

/// Where the 1x1 shortcut conv of a channel-changing block reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Shortcut {
    /// relu(bn0(x)), as the official PyTorch code does.
    #[default]
    Preact,
    /// The raw block input x, as the seed notebook's Keras code does.
    Input,
}

/// The residual block of `model.wrn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Block {
    /// The paper's CIFAR block: pre-activation BN-ReLU-conv3x3-BN-ReLU-conv3x3.
    #[default]
    Basic,
    /// The paper's ImageNet block, laid out as torchvision's `wide_resnet50_2`
    /// (post-activation ResNet v1.5): conv1x1-BN-ReLU-conv3x3 (the stride)-BN-ReLU-conv1x1
    /// (4x the stage's base width)-BN, plus the shortcut, then ReLU.
    Bottleneck,
}

/// The stem of `model.wrn`: the layers before the first residual stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// One 3x3 stride-1 conv with 16 channels (CIFAR-sized images).
    #[default]
    Cifar,
    /// A 7x7 stride-2 conv with 64 channels, BN, ReLU and a 3x3 stride-2 max pool with
    /// padding 1 (ImageNet-sized images: 4x smaller feature maps).
    Imagenet,
}

/// `model.wrn`: WRN-depth-width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WrnSpec {
    /// Number of layers with weights: n = 6N + 4 for basic blocks; 50, 101 or 152 for
    /// bottleneck blocks (stages of 3-4-6-3, 3-4-23-3, 3-8-36-3 blocks).
    pub depth: usize,
    /// Widening factor k: group widths 16k, 32k, 64k (basic); inner widths 64k, 128k,
    /// 256k, 512k of the bottlenecks (bottleneck; their outputs stay 256, 512, 1024, 2048).
    pub width: usize,
    /// The residual block (`basic` unless written; omitted from the resolved spec then).
    #[serde(skip_serializing_if = "is_default")]
    pub block: Block,
    /// The stem (`cifar` unless written; omitted from the resolved spec then).
    #[serde(skip_serializing_if = "is_default")]
    pub stem: Stem,
    /// Dropout between the two 3x3 convs of each block (0 = none).
    pub dropout: f64,
    /// Shortcut variant.
    pub shortcut: Shortcut,
    /// BatchNorm epsilon.
    pub bn_eps: f64,
    /// BatchNorm momentum, PyTorch meaning (new running = (1-m) old + m batch).
    pub bn_momentum: f64,
}

/// Whether `v` is its type's default (a key left out of the resolved spec).
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Default for WrnSpec {
    fn default() -> Self {
        WrnSpec {
            depth: 28,
            width: 10,
            block: Block::Basic,
            stem: Stem::Cifar,
            dropout: 0.0,
            shortcut: Shortcut::Preact,
            bn_eps: 1e-5,
            bn_momentum: 0.1,
        }
    }
}

/// `from:` — the layer(s) a layer reads: one layer name, or a list (two for `add`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerInputs {
    /// One layer.
    One(String),
    /// Several layers.
    Many(Vec<String>),
}

impl LayerInputs {
    /// The names as a list.
    pub fn names(&self) -> Vec<String> {
        match self {
            LayerInputs::One(s) => vec![s.clone()],
            LayerInputs::Many(v) => v.clone(),
        }
    }
}

/// One entry of `model.layers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// The op (the IR's op kind: one list of op names for specs and the IR).
    pub op: OpKind,
    /// Unique name (default `<op><index>`); parameters are named `<name>.weight` etc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Input layer(s) (default: the previous layer; `input` is the network input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<LayerInputs>,
    /// conv: output channels; linear: output features (default: model.classes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<usize>,
    /// conv / avg_pool / max_pool: window size (conv default 3, pools default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<usize>,
    /// conv / avg_pool / max_pool: stride (conv default 1, pools default = kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// conv / avg_pool / max_pool: padding (conv default kernel/2, pools default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<usize>,
    /// conv / linear: whether there is a bias (conv default false, linear default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<bool>,
    /// batch_norm: epsilon (default 1e-5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// batch_norm: momentum, PyTorch meaning (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// dropout: drop probability in [0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
}

impl LayerSpec {
    /// A layer of `op` with every option unset.
    pub fn new(op: OpKind, name: &str) -> Self {
        LayerSpec {
            op,
            name: Some(name.to_string()),
            from: None,
            out: None,
            kernel: None,
            stride: None,
            padding: None,
            bias: None,
            eps: None,
            momentum: None,
            p: None,
        }
    }

    /// Keys set on this layer besides op/name/from.
    pub fn set_keys(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let pairs: [(&'static str, bool); 8] = [
            ("out", self.out.is_some()),
            ("kernel", self.kernel.is_some()),
            ("stride", self.stride.is_some()),
            ("padding", self.padding.is_some()),
            ("bias", self.bias.is_some()),
            ("eps", self.eps.is_some()),
            ("momentum", self.momentum.is_some()),
            ("p", self.p.is_some()),
        ];
        for (k, set) in pairs {
            if set {
                v.push(k);
            }
        }
        v
    }
}
