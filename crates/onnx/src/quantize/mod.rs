//! Quantized and half-precision forms of an exported model.
//!
//! * [`qdq`]: static post-training int8 quantization in QDQ form (`wrnc export --quantize
//!   int8`): [`qdq::plan`] names the activations to calibrate, [`calibrate`] turns their
//!   statistics into ranges, [`qdq::rewrite`] inserts the Q/DQ nodes.
//! * [`fp16`]: the float16 form (`wrnc export --dtype fp16`).
//!
//! Both rewrite a float model as [`crate::export`] writes it and record what they did in the
//! `quantization` metadata ([`QuantizationInfo`]). See `docs/onnx.md`.

pub mod calibrate;
pub mod fp16;
pub mod qdq;

use crate::metadata::MetaKey;
use crate::proto::{ModelProto, StringStringEntryProto};
use serde::{Deserialize, Serialize};

/// The `quantization` metadata of an int8 or float16 file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizationInfo {
    /// `int8` or `float16`.
    pub dtype: String,
    /// `qdq` for int8 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// How weights are stored.
    pub weights: String,
    /// How activations are computed.
    pub activations: String,
    /// Element type of the file's input and outputs.
    pub io: String,
    /// Ops that run in float (int8 files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub float_ops: Vec<String>,
    /// The calibration (int8 files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationInfo>,
    /// The file's accuracy next to the float32 model's, when measured at export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<AccuracyInfo>,
}

/// How an int8 file's activation ranges were calibrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// `minmax`, `percentile` or `entropy`.
    pub method: String,
    /// Images run.
    pub images: usize,
    /// Where they came from (`digits train split`, a folder, ...).
    pub source: String,
}

/// Accuracy of a quantized file and of the float32 file of the same weights, both in tract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyInfo {
    /// The split measured (`test`).
    pub split: String,
    /// Images measured.
    pub images: usize,
    /// Top-1 accuracy of the float32 file, a fraction.
    pub float32: f64,
    /// Top-1 accuracy of this file.
    pub quantized: f64,
    /// Fraction of images where both files predict the same class.
    pub agreement: f64,
}

impl QuantizationInfo {
    /// The description of an int8 QDQ file (without calibration and accuracy).
    pub fn int8(float_ops: Vec<String>) -> Self {
        QuantizationInfo {
            dtype: "int8".into(),
            scheme: Some("qdq".into()),
            weights: "int8 symmetric per output channel (axis 0), int32 biases".into(),
            activations: "uint8 asymmetric per tensor (QuantizeLinear/DequantizeLinear)".into(),
            io: "float32".into(),
            float_ops,
            calibration: None,
            accuracy: None,
        }
    }

    /// The description of a float16 file.
    pub fn float16() -> Self {
        QuantizationInfo {
            dtype: "float16".into(),
            scheme: None,
            weights: "float16".into(),
            activations: "float16".into(),
            io: "float32 (Cast at the input and the outputs)".into(),
            float_ops: Vec::new(),
            calibration: None,
            accuracy: None,
        }
    }

    /// Reads the `quantization` entry of a model: None when absent, an error text when it
    /// is not valid JSON of this form.
    pub fn from_model(model: &ModelProto) -> Result<Option<Self>, String> {
        match model.metadata(MetaKey::Quantization.as_str()) {
            None => Ok(None),
            Some(s) => serde_json::from_str(s)
                .map(Some)
                .map_err(|e| format!("metadata `{}`: {e}", MetaKey::Quantization)),
        }
    }

    /// Writes (or replaces) the `quantization` entry of `model`.
    pub fn store(&self, model: &mut ModelProto) {
        let key = MetaKey::Quantization.as_str();
        model
            .metadata_props
            .retain(|e| e.key.as_deref() != Some(key));
        model.metadata_props.push(StringStringEntryProto {
            key: Some(key.into()),
            value: Some(serde_json::to_string(self).unwrap_or_default()),
        });
    }
}
