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
    /// Also write a quantized copy (`int8`: `model.int8.onnx` next to the file); None: no.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantize: Option<Quantize>,
    /// How the int8 activation ranges are calibrated (default `minmax`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibrate: Option<CalibrationMethod>,
    /// Training images the calibration runs (default [`DEFAULT_CALIBRATION_IMAGES`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<usize>,
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
            quantize: None,
            calibrate: None,
            calibration: None,
            tta: ExportTta::None,
        }
    }
}

/// Training images a calibration runs unless told otherwise.
pub const DEFAULT_CALIBRATION_IMAGES: usize = 512;

/// A quantized form of the exported model (`export.quantize`, `wrnc export --quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantize {
    /// Static post-training quantization in QDQ form: int8 weights per output channel,
    /// uint8 activations per tensor (see `docs/onnx.md`).
    Int8,
}

impl Quantize {
    /// Every value, in the order shown in messages.
    pub const ALL: [Quantize; 1] = [Quantize::Int8];

    /// The word used in specs and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantize::Int8 => "int8",
        }
    }

    /// The file name of the quantized copy of `file`: `model.onnx` -> `model.int8.onnx`.
    pub fn file_name(self, file: &str) -> String {
        match file.strip_suffix(".onnx") {
            Some(stem) => format!("{stem}.{}.onnx", self.as_str()),
            None => format!("{file}.{}.onnx", self.as_str()),
        }
    }
}

impl std::fmt::Display for Quantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Quantize {
    type Err = crate::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantize::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| crate::UnknownName {
                what: "quantization",
                name: s.into(),
                expected: "int8",
            })
    }
}

/// How the range of an activation tensor is chosen from the calibration images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// The smallest and largest value seen.
    #[default]
    Minmax,
    /// The 99.99th percentile of |x| (values beyond it saturate).
    Percentile,
    /// The |x| threshold whose 128-level quantized histogram has the least KL divergence
    /// from the observed one (TensorRT's entropy calibration).
    Entropy,
}

impl CalibrationMethod {
    /// Every method, in the order shown in messages.
    pub const ALL: [CalibrationMethod; 3] = [
        CalibrationMethod::Minmax,
        CalibrationMethod::Percentile,
        CalibrationMethod::Entropy,
    ];

    /// The word used in specs and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            CalibrationMethod::Minmax => "minmax",
            CalibrationMethod::Percentile => "percentile",
            CalibrationMethod::Entropy => "entropy",
        }
    }
}

impl std::fmt::Display for CalibrationMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CalibrationMethod {
    type Err = crate::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CalibrationMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| crate::UnknownName {
                what: "calibration method",
                name: s.into(),
                expected: "minmax, percentile, entropy",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_file_name_sits_next_to_the_export() {
        assert_eq!(Quantize::Int8.file_name("model.onnx"), "model.int8.onnx");
        assert_eq!(Quantize::Int8.file_name("net"), "net.int8.onnx");
    }

    #[test]
    fn words_round_trip_and_unknown_ones_are_refused() {
        for m in CalibrationMethod::ALL {
            assert_eq!(m.as_str().parse::<CalibrationMethod>().unwrap(), m);
        }
        let e = "kl".parse::<CalibrationMethod>().unwrap_err().to_string();
        assert!(e.contains("minmax") && e.contains("entropy"), "{e}");
        assert!("int4".parse::<Quantize>().is_err());
    }
}
