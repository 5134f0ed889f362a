//! The `export` section: the ONNX file written at the end of training.

use serde::{Deserialize, Serialize};

/// Which weights the export (and the run's best-epoch selection) uses when `train.ema` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportWeights {
    /// The exponential moving average (the default when `train.ema` is on).
    Ema,
    /// The trained weights themselves.
    Raw,
}

/// Test-time augmentation built into the exported ONNX graph (`export.tta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportTta {
    /// The plain network: outputs `logits` and `probabilities`.
    #[default]
    None,
    /// The mean of the softmax of each image and of its horizontal mirror, computed inside
    /// the graph; the file's one output is `probabilities` (there are no logits).
    Flip,
}

impl ExportTta {
    /// The spec word: `none` or `flip`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportTta::None => "none",
            ExportTta::Flip => "flip",
        }
    }

    /// Whether this is [`ExportTta::None`] (the key is then left out of a resolved spec).
    pub fn is_none(&self) -> bool {
        *self == ExportTta::None
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
    /// `ema` or `raw` (None: `ema` when `train.ema` is on, else `raw`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<ExportWeights>,
    /// Test-time augmentation inside the exported graph (default `none`).
    #[serde(skip_serializing_if = "ExportTta::is_none")]
    pub tta: ExportTta,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            onnx: true,
            file: "model.onnx".into(),
            opset: 17,
            fold_bn: true,
            weights: None,
            tta: ExportTta::None,
        }
    }
}
