//! Deployment metadata stored in `metadata_props`, and its parsed form.
//!
//! Keys written by [`crate::export`] are the [`MetaKey`]s (values are strings; JSON where
//! noted):
//!
//! | key | value |
//! |-----|-------|
//! | `wrnc_version` | version of the wrnc that wrote the file |
//! | `model_name` | the spec's model name |
//! | `class_labels` | JSON array of class names, index = class id |
//! | `num_classes` | number of classes |
//! | `input_name` | `input` |
//! | `input_layout` | `NCHW` |
//! | `input_shape` | JSON `[C, H, W]` |
//! | `outputs` | JSON `["logits", "probabilities"]` (`["probabilities"]` with `tta`) |
//! | `normalization` | JSON [`Normalization`] |
//! | `bn_folded` | `true` / `false` |
//! | `spec` | the resolved spec YAML (when known) |
//! | `training` | JSON [`TrainingSummary`] (when known) |
//! | `weights_file` | the run directory's weights file exported by `wrnc train` (when known) |
//! | `resize` | JSON [`ResizeInfo`]: how images of another size are brought to `input_shape` (when known) |
//! | `tta` | `flip`: the graph averages the softmax of each image and its mirror and outputs only `probabilities` (absent: no test-time augmentation) |
//!
//! plus any [`ExportMetadata::extra`] entries.

use crate::error::{OnnxError, Result};
use crate::proto::{Dim, ModelProto};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use wrnc_recipe::{ExportTta, Normalize, Resize, ResizeFilter, ResizeMode};

/// A metadata key wrnc writes into an ONNX file's `metadata_props`. The key strings are
/// defined here and nowhere else; [`ExportMetadata::extra`] may not use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// `wrnc_version`: version of the wrnc that wrote the file.
    WrncVersion,
    /// `model_name`: the spec's model name.
    ModelName,
    /// `class_labels`: JSON array of class names.
    ClassLabels,
    /// `num_classes`: number of classes.
    NumClasses,
    /// `input_name`: name of the graph input.
    InputName,
    /// `input_layout`: `NCHW`.
    InputLayout,
    /// `input_shape`: JSON `[C, H, W]`.
    InputShape,
    /// `outputs`: JSON names of the outputs.
    Outputs,
    /// `normalization`: JSON [`Normalization`].
    Normalization,
    /// `bn_folded`: `true` / `false`.
    BnFolded,
    /// `spec`: the resolved spec YAML.
    Spec,
    /// `training`: JSON [`TrainingSummary`].
    Training,
    /// `weights_file`: the weights file of the run directory that was exported.
    WeightsFile,
    /// `resize`: JSON [`ResizeInfo`], the resize of images to the input size.
    Resize,
    /// `quantization`: JSON [`crate::QuantizationInfo`] of an int8 or float16 file.
    Quantization,
    /// `tta`: the test-time augmentation built into the graph (`flip`; see [`crate::tta`]).
    Tta,
}

impl MetaKey {
    /// Every key, in the order the exporter writes them.
    pub const ALL: [MetaKey; 16] = [
        MetaKey::WrncVersion,
        MetaKey::ModelName,
        MetaKey::ClassLabels,
        MetaKey::NumClasses,
        MetaKey::InputName,
        MetaKey::InputLayout,
        MetaKey::InputShape,
        MetaKey::Outputs,
        MetaKey::Normalization,
        MetaKey::BnFolded,
        MetaKey::Spec,
        MetaKey::Training,
        MetaKey::WeightsFile,
        MetaKey::Resize,
        MetaKey::Quantization,
        MetaKey::Tta,
    ];

    /// The key as stored in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaKey::WrncVersion => "wrnc_version",
            MetaKey::ModelName => "model_name",
            MetaKey::ClassLabels => "class_labels",
            MetaKey::NumClasses => "num_classes",
            MetaKey::InputName => "input_name",
            MetaKey::InputLayout => "input_layout",
            MetaKey::InputShape => "input_shape",
            MetaKey::Outputs => "outputs",
            MetaKey::Normalization => "normalization",
            MetaKey::BnFolded => "bn_folded",
            MetaKey::Spec => "spec",
            MetaKey::Training => "training",
            MetaKey::WeightsFile => "weights_file",
            MetaKey::Resize => "resize",
            MetaKey::Quantization => "quantization",
            MetaKey::Tta => "tta",
        }
    }

    /// The wrnc key spelled `key`, if any.
    pub fn parse(key: &str) -> Option<MetaKey> {
        MetaKey::ALL.into_iter().find(|k| k.as_str() == key)
    }
}

impl fmt::Display for MetaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Input normalisation: first `x = pixel * scale` (pixel in 0..=255), then the mode's
/// formula. Statistics are in scaled units (`[0, 1]` with the default scale 1/255).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mode (the spec's `data.normalize` word).
    pub mode: Normalize,
    /// Factor applied to raw 0..=255 pixels first (1/255).
    pub scale: f64,
    /// Per-channel mean (`mean_std`, `per_channel_mean`; zeros for `none`).
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel std (`mean_std`; ones for the other per-channel modes).
    #[serde(default)]
    pub std: Vec<f32>,
    /// Mean image, CHW order (`per_pixel_mean` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mean_image: Vec<f32>,
}

impl Normalization {
    /// The default pixel scale, 1/255.
    pub const SCALE: f64 = 1.0 / 255.0;

    /// `(x - mean) / std` per channel.
    pub fn mean_std(mean: Vec<f32>, std: Vec<f32>) -> Self {
        Normalization {
            mode: Normalize::MeanStd,
            scale: Self::SCALE,
            mean,
            std,
            mean_image: Vec::new(),
        }
    }

    /// `x - mean` per channel (std written as ones so that `(x - mean) / std` still holds).
    pub fn per_channel_mean(mean: Vec<f32>) -> Self {
        let std = vec![1.0; mean.len()];
        Normalization {
            mode: Normalize::PerChannelMean,
            scale: Self::SCALE,
            mean,
            std,
            mean_image: Vec::new(),
        }
    }

    /// `x - mean_image` (CHW).
    pub fn per_pixel_mean(mean_image: Vec<f32>) -> Self {
        Normalization {
            mode: Normalize::PerPixelMean,
            scale: Self::SCALE,
            mean: Vec::new(),
            std: Vec::new(),
            mean_image,
        }
    }

    /// Pixels / 255 only (mean zeros and std ones for `channels` channels).
    pub fn none(channels: usize) -> Self {
        Normalization {
            mode: Normalize::None,
            scale: Self::SCALE,
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
            mean_image: Vec::new(),
        }
    }

    /// Checks the statistics fit an input of shape `[C, H, W]`.
    pub fn validate(&self, shape: [usize; 3]) -> Result<()> {
        let [c, h, w] = shape;
        let bad = |m: String| {
            Err(OnnxError::Metadata(format!(
                "{}: {m}",
                MetaKey::Normalization
            )))
        };
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return bad(format!(
                "scale must be a positive number, got {}",
                self.scale
            ));
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !finite(&self.mean) || !finite(&self.std) || !finite(&self.mean_image) {
            return bad("statistics contain NaN or infinity".into());
        }
        match self.mode {
            Normalize::MeanStd | Normalize::PerChannelMean | Normalize::None => {
                let need_std = self.mode == Normalize::MeanStd;
                if self.mean.len() != c && !(self.mode == Normalize::None && self.mean.is_empty()) {
                    return bad(format!(
                        "mode {} needs {c} means (one per channel), got {}",
                        self.mode.as_str(),
                        self.mean.len()
                    ));
                }
                if (need_std || !self.std.is_empty()) && self.std.len() != c {
                    return bad(format!(
                        "mode {} needs {c} stds (one per channel), got {}",
                        self.mode.as_str(),
                        self.std.len()
                    ));
                }
                if self.std.iter().any(|&s| s <= 0.0) {
                    return bad("every std must be positive".into());
                }
            }
            Normalize::PerPixelMean => {
                if self.mean_image.len() != c * h * w {
                    return bad(format!(
                        "mode per_pixel_mean needs a mean image of {c}x{h}x{w} = {} values, \
                         got {}",
                        c * h * w,
                        self.mean_image.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Normalises raw 0..=255 pixel values of one image in CHW order, in place.
    /// Call [`Normalization::validate`] with the same shape first.
    pub fn apply(&self, chw: &mut [f32], shape: [usize; 3]) -> Result<()> {
        self.validate(shape)?;
        let [c, h, w] = shape;
        if chw.len() != c * h * w {
            return Err(OnnxError::Metadata(format!(
                "image has {} values, expected {c}x{h}x{w}",
                chw.len()
            )));
        }
        let plane = h * w;
        for (i, v) in chw.iter_mut().enumerate() {
            let x = (*v as f64 * self.scale) as f32;
            let ch = i / plane;
            *v = match self.mode {
                Normalize::PerPixelMean => x - self.mean_image[i],
                _ => {
                    let m = self.mean.get(ch).copied().unwrap_or(0.0);
                    let s = self.std.get(ch).copied().unwrap_or(1.0);
                    (x - m) / s
                }
            };
        }
        Ok(())
    }
}

/// How an image of another size is brought to the model's input size, as training did
/// (the `resize` metadata entry): `{"mode": "stretch" | "shorter_side" | "pad", "filter":
/// "nearest" | "triangle" | "catmull_rom" | "lanczos3", "size": [H, W]}`. See docs/data.md
/// for the modes and docs/onnx.md for the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeInfo {
    /// The spec's `data.resize.mode`.
    pub mode: ResizeMode,
    /// The spec's `data.resize.filter`.
    pub filter: ResizeFilter,
    /// Target `[H, W]` (the input shape's).
    pub size: [usize; 2],
}

impl ResizeInfo {
    /// The resize settings.
    pub fn resize(&self) -> Resize {
        Resize {
            mode: self.mode,
            filter: self.filter,
        }
    }
}

/// The split a [`TrainingSummary`] accuracy was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    /// The validation split held out of the training data (`data.val_size` > 0).
    Val,
    /// The official test set.
    Test,
}

/// How the exported weights were chosen among a run's epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectedOn {
    /// The epoch with the best validation accuracy (`best.safetensors`).
    Val,
    /// The epoch with the best test accuracy (a `best.safetensors` of a run without a
    /// validation split, exported with `wrnc export`: chosen on the test set).
    Test,
    /// The last completed epoch (`last.safetensors`; what `wrnc train` exports without a
    /// validation split, so that the test set never chooses the model).
    Last,
}

/// What training achieved, for the `training` metadata entry (JSON; absent fields are
/// unknown). Every accuracy is a fraction in [0, 1] of the exported weights, never of another
/// epoch's. See docs/onnx.md.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Epochs the run had completed when the file was exported (`wrnc train`; unknown to
    /// `wrnc export`, which sees one weights file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs_completed: Option<usize>,
    /// The epoch (from 1) after which the exported weights were saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<usize>,
    /// How the exported weights were chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_on: Option<SelectedOn>,
    /// The split [`TrainingSummary::eval_accuracy`] was measured on: the split evaluated
    /// after each epoch (`val`, or `test` when `data.val_size` is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_split: Option<EvalSplit>,
    /// Accuracy of the exported weights on `eval_split`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_accuracy: Option<f64>,
    /// Accuracy of the exported weights on the test set, when it was measured (training
    /// evaluates on the test set only without a validation split; otherwise run
    /// `wrnc eval --split test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
}

/// Everything the exporter writes besides the graph and weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportMetadata {
    /// Class names, one per output; empty means `"0"`, `"1"`, ...
    pub class_labels: Vec<String>,
    /// Input normalisation; None writes mode `none` (pixels / 255).
    pub normalization: Option<Normalization>,
    /// The resolved spec YAML.
    pub spec_yaml: Option<String>,
    /// Training result.
    pub training: Option<TrainingSummary>,
    /// Model description (ModelProto and GraphProto `doc_string`); a default is generated
    /// when None, naming the network as [`ExportMetadata::description`] says.
    pub doc_string: Option<String>,
    /// What the network is, for the generated `doc_string` (e.g. `Wide Residual Network
    /// WRN-16-4`); None: described from the graph (`network of 7 layers (2 convolutions,
    /// 1 linear)`).
    pub description: Option<String>,
    /// The run directory's weights file that was exported (`best.safetensors`, ...).
    pub weights_file: Option<String>,
    /// How images of another size are resized to the input (the spec's `data.resize`);
    /// written as the `resize` entry with the input's `[H, W]` when given.
    pub resize: Option<Resize>,
    /// Further metadata entries; they may not use a [`MetaKey`].
    pub extra: BTreeMap<String, String>,
}

/// What a deployer needs to know about an ONNX file, read back from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// IR version.
    pub ir_version: i64,
    /// Default-domain opset.
    pub opset: i64,
    /// Producer name (`wrnc` for our files).
    pub producer: String,
    /// Name of the graph input.
    pub input_name: String,
    /// `[C, H, W]` from the metadata, else from the input's declared shape.
    pub input_shape: [usize; 3],
    /// Class labels (`"0"`, `"1"`, ... when the file has none).
    pub class_labels: Vec<String>,
    /// Input normalisation, when recorded.
    pub normalization: Option<Normalization>,
    /// Training summary, when recorded.
    pub training: Option<TrainingSummary>,
    /// The resize training used, when recorded (its `size` is the input's `[H, W]`).
    pub resize: Option<ResizeInfo>,
    /// The test-time augmentation built into the graph (`tta` entry; absent: none). With
    /// [`ExportTta::Flip`] the model outputs probabilities only, no logits.
    pub tta: ExportTta,
    /// All metadata entries.
    pub metadata: BTreeMap<String, String>,
}

/// Most classes [`ModelInfo::from_model`] accepts in `num_classes` metadata.
pub const MAX_CLASSES: usize = 1 << 20;

impl ModelInfo {
    /// Reads the info from a decoded model. Fails when the input shape cannot be determined
    /// or a JSON metadata entry is malformed.
    pub fn from_model(model: &ModelProto) -> Result<ModelInfo> {
        let bad = |k: MetaKey, e: String| OnnxError::Metadata(format!("metadata `{k}`: {e}"));
        let metadata: BTreeMap<String, String> = model
            .metadata_props
            .iter()
            .filter_map(|e| Some((e.key.clone()?, e.value.clone().unwrap_or_default())))
            .collect();
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| OnnxError::Invalid(vec!["the model has no graph".into()]))?;
        let init: std::collections::HashSet<&str> = graph
            .initializer
            .iter()
            .filter_map(|t| t.name.as_deref())
            .collect();
        let input = graph
            .input
            .iter()
            .find(|i| !init.contains(i.name.as_deref().unwrap_or("")))
            .ok_or_else(|| OnnxError::Invalid(vec!["the graph has no input".into()]))?;
        let input_name = input.name.clone().unwrap_or_default();
        let input_shape = match metadata.get(MetaKey::InputShape.as_str()) {
            Some(s) => {
                let v: Vec<usize> =
                    serde_json::from_str(s).map_err(|e| bad(MetaKey::InputShape, e.to_string()))?;
                <[usize; 3]>::try_from(v.as_slice()).map_err(|_| {
                    bad(
                        MetaKey::InputShape,
                        format!("expected [C, H, W], got {v:?}"),
                    )
                })?
            }
            None => match input.dims().as_deref() {
                Some([_, Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(w)]) => [*c, *h, *w],
                other => {
                    let declared = match other {
                        Some(dims) => {
                            let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                            format!("[{}]", dims.join(", "))
                        }
                        None => "without a tensor shape".into(),
                    };
                    return Err(OnnxError::Metadata(format!(
                        "cannot tell the input shape: no `{}` metadata and the input \
                         `{input_name}` is declared {declared}, not [N, C, H, W]",
                        MetaKey::InputShape
                    )));
                }
            },
        };
        if input_shape.contains(&0) {
            return Err(bad(
                MetaKey::InputShape,
                "dimensions must be positive".into(),
            ));
        }
        // A hostile file must not make a reader allocate without bound.
        let elems = input_shape
            .iter()
            .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128));
        if elems.is_none_or(|n| n > wrnc_ir::builder::MAX_VALUE_ELEMS) {
            return Err(bad(
                MetaKey::InputShape,
                format!(
                    "{input_shape:?} is too large: an image may have at most {} values",
                    wrnc_ir::builder::MAX_VALUE_ELEMS
                ),
            ));
        }
        let mut class_labels: Vec<String> = match metadata.get(MetaKey::ClassLabels.as_str()) {
            Some(s) => {
                serde_json::from_str(s).map_err(|e| bad(MetaKey::ClassLabels, e.to_string()))?
            }
            None => Vec::new(),
        };
        if class_labels.is_empty() {
            if let Some(n) = metadata
                .get(MetaKey::NumClasses.as_str())
                .and_then(|s| s.parse::<usize>().ok())
            {
                if n > MAX_CLASSES {
                    return Err(bad(
                        MetaKey::NumClasses,
                        format!("{n} is more than the {MAX_CLASSES} classes a model may have"),
                    ));
                }
                class_labels = (0..n).map(|i| i.to_string()).collect();
            }
        }
        let normalization: Option<Normalization> =
            match metadata.get(MetaKey::Normalization.as_str()) {
                Some(s) => {
                    let n: Normalization = serde_json::from_str(s)
                        .map_err(|e| bad(MetaKey::Normalization, e.to_string()))?;
                    n.validate(input_shape)?;
                    Some(n)
                }
                None => None,
            };
        let training = match metadata.get(MetaKey::Training.as_str()) {
            Some(s) => {
                Some(serde_json::from_str(s).map_err(|e| bad(MetaKey::Training, e.to_string()))?)
            }
            None => None,
        };
        let resize = match metadata.get(MetaKey::Resize.as_str()) {
            Some(s) => {
                let r: ResizeInfo =
                    serde_json::from_str(s).map_err(|e| bad(MetaKey::Resize, e.to_string()))?;
                if r.size != [input_shape[1], input_shape[2]] {
                    return Err(bad(
                        MetaKey::Resize,
                        format!(
                            "size {:?} differs from the input's [H, W] {:?}",
                            r.size,
                            [input_shape[1], input_shape[2]]
                        ),
                    ));
                }
                Some(r)
            }
            None => None,
        };
        let tta = match metadata.get(MetaKey::Tta.as_str()).map(String::as_str) {
            None => ExportTta::None,
            Some("flip") => ExportTta::Flip,
            Some(other) => {
                return Err(bad(
                    MetaKey::Tta,
                    format!("`{other}` is not a test-time augmentation wrnc knows (`flip`)"),
                ))
            }
        };
        Ok(ModelInfo {
            resize,
            tta,
            ir_version: model.ir_version.unwrap_or(0),
            opset: model.default_opset().unwrap_or(0),
            producer: model.producer_name.clone().unwrap_or_default(),
            input_name,
            input_shape,
            class_labels,
            normalization,
            training,
            metadata,
        })
    }

    /// The label of class `i` (its index when the file has no label for it).
    pub fn label(&self, i: usize) -> String {
        self.class_labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_formulas() {
        let n = Normalization::mean_std(vec![0.5], vec![0.25]);
        let mut px = vec![255.0, 0.0];
        n.apply(&mut px, [1, 1, 2]).unwrap();
        assert!((px[0] - 2.0).abs() < 1e-6 && (px[1] + 2.0).abs() < 1e-6);
        let n = Normalization::per_pixel_mean(vec![0.1, 0.2]);
        let mut px = vec![255.0, 255.0];
        n.apply(&mut px, [1, 1, 2]).unwrap();
        assert!((px[0] - 0.9).abs() < 1e-6 && (px[1] - 0.8).abs() < 1e-6);
        assert!(Normalization::mean_std(vec![0.5], vec![0.0])
            .validate([1, 1, 1])
            .is_err());
        assert!(Normalization::per_pixel_mean(vec![0.0; 3])
            .validate([1, 2, 2])
            .is_err());
        let json = serde_json::to_string(&Normalization::none(3)).unwrap();
        assert_eq!(
            json,
            r#"{"mode":"none","scale":0.00392156862745098,"mean":[0.0,0.0,0.0],"std":[1.0,1.0,1.0]}"#
        );
    }

    #[test]
    fn keys_are_distinct_and_parse() {
        let mut names: Vec<&str> = MetaKey::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MetaKey::ALL.len());
        for k in MetaKey::ALL {
            assert_eq!(MetaKey::parse(k.as_str()), Some(k));
        }
        assert_eq!(MetaKey::parse("custom"), None);
    }
}
