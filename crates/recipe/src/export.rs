//! The `export` section: the ONNX file written at the end of training.

use serde::{Deserialize, Serialize};

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
