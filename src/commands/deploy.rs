//! What the deployment commands share: loading weights against a spec, the dataset of a
//! spec, and the ONNX metadata (labels, normalisation, training result) a deployer needs.

use crate::exit::UsageError;
use anyhow::Result;
use std::path::{Path, PathBuf};
use wrnc_data::{DatasetKind, NormMode as DataNorm, Normalizer};
use wrnc_ir::recipe::{self, DataConfig};
use wrnc_ir::{Graph, Weights};
use wrnc_onnx::{ExportMetadata, Normalization, TrainingSummary};

/// Weights metadata keys written by the trainer and read back here.
pub mod keys {
    /// Epochs trained when the weights were saved.
    pub const EPOCH: &str = "epoch";
    /// Evaluation accuracy (fraction) recorded with `best.safetensors`.
    pub const VAL_ACCURACY: &str = "val_accuracy";
}

/// Loads a weights file and checks it matches the graph; a mismatch is a usage error that
/// lists the tensors (the first mismatching tensor first).
pub fn load_weights(path: &Path, graph: &Graph) -> Result<Weights> {
    let w = Weights::load(path).map_err(|e| UsageError(e.to_string()))?;
    w.check_against(graph, &path.display().to_string())
        .map_err(|e| UsageError(e.to_string()))?;
    Ok(w)
}

/// The data crate's name for the spec's dataset.
pub fn dataset_kind(d: &DataConfig) -> DatasetKind {
    match d.dataset {
        recipe::DatasetKind::Cifar10 => DatasetKind::Cifar10,
        recipe::DatasetKind::Cifar100 => DatasetKind::Cifar100,
        recipe::DatasetKind::Digits => DatasetKind::Digits,
    }
}

/// The dataset folder of a spec (unused for the embedded digits).
pub fn data_root(d: &DataConfig) -> PathBuf {
    PathBuf::from(d.root.clone().unwrap_or_else(|| "data".into()))
}

/// The spec's normalisation mode in the data crate's terms.
pub fn norm_mode(d: &DataConfig) -> DataNorm {
    match d.normalize {
        recipe::Normalize::MeanStd => DataNorm::MeanStd,
        recipe::Normalize::PerPixelMean => DataNorm::PerPixelMean,
        recipe::Normalize::PerChannelMean => DataNorm::PerChannelMean,
        recipe::Normalize::None => DataNorm::None,
    }
}

/// Converts the data crate's fitted normaliser to the ONNX metadata form.
pub fn to_metadata(n: &Normalizer) -> Normalization {
    let (c, _, _) = n.shape();
    match n.mode() {
        DataNorm::MeanStd => Normalization::mean_std(n.mean().to_vec(), n.std().to_vec()),
        DataNorm::PerChannelMean => Normalization::per_channel_mean(n.mean().to_vec()),
        DataNorm::PerPixelMean => Normalization::per_pixel_mean(n.mean_image().to_vec()),
        DataNorm::None => Normalization::none(c),
    }
}

/// Loads the spec's dataset split as training does (same validation hold-out).
pub fn load_splits(d: &DataConfig) -> Result<wrnc_data::Splits> {
    Ok(wrnc_data::load_splits(
        dataset_kind(d),
        &data_root(d),
        d.val_size,
        d.split_seed,
    )?)
}

/// Fits the spec's normaliser on a training split.
pub fn fit_on(d: &DataConfig, splits: &wrnc_data::Splits) -> Result<Normalizer> {
    Ok(Normalizer::fit(norm_mode(d), &splits.train)?)
}

/// Fits the spec's normaliser on its training split. Fails when the dataset is absent.
pub fn fit_normalizer(d: &DataConfig) -> Result<Normalizer> {
    fit_on(d, &load_splits(d)?)
}

/// The normaliser recorded in a weights file by `wrnc train` (None when absent or unreadable).
pub fn recorded_normalizer(weights: &Weights) -> Option<Normalizer> {
    let v: serde_json::Value =
        serde_json::from_str(weights.metadata.get(wrnc_train::NORMALIZATION_KEY)?).ok()?;
    let floats = |k: &str| -> Option<Vec<f32>> {
        v[k].as_array()?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect()
    };
    let shape: Vec<usize> = v["shape"]
        .as_array()?
        .iter()
        .map(|x| x.as_u64().map(|u| u as usize))
        .collect::<Option<_>>()?;
    let [c, h, w] = shape.as_slice() else {
        return None;
    };
    let mode: DataNorm = v["mode"].as_str()?.parse().ok()?;
    Normalizer::from_parts(
        mode,
        *c,
        *h,
        *w,
        floats("mean")?,
        floats("std")?,
        floats("mean_image")?,
    )
    .ok()
}

/// Builds the metadata of an export: class labels, normalisation (the one recorded in the
/// weights by `wrnc train`, else fitted on the spec's training split; mode `none` with a
/// warning when neither is available, e.g. fresh weights without the dataset), the resolved
/// spec and the training result recorded in the weights.
pub fn export_metadata(spec: &wrnc_spec::Spec, weights: &Weights) -> ExportMetadata {
    let d = &spec.resolved.data;
    let kind = dataset_kind(d);
    let normalization = match recorded_normalizer(weights)
        .map(Ok)
        .unwrap_or_else(|| fit_normalizer(d))
    {
        Ok(n) => Some(to_metadata(&n)),
        Err(e) => {
            eprintln!(
                "warning: the input normalisation could not be computed ({e}); the file \
                 records mode `none`"
            );
            None
        }
    };
    let get = |k: &str| weights.metadata.get(k);
    let training = if get(keys::EPOCH).is_some() {
        let acc = get(keys::VAL_ACCURACY).and_then(|v| v.parse().ok());
        let epoch = get(keys::EPOCH).and_then(|v| v.parse().ok());
        Some(TrainingSummary {
            epochs: epoch,
            best_val_accuracy: acc,
            best_epoch: acc.and(epoch),
            test_accuracy: None,
        })
    } else {
        None
    };
    ExportMetadata {
        class_labels: kind.class_names().iter().map(|s| s.to_string()).collect(),
        normalization,
        spec_yaml: Some(spec.resolved_yaml()),
        training,
        doc_string: None,
        extra: Default::default(),
    }
}

/// Checks an `--opset` value, as a usage error when out of range.
pub fn check_opset(opset: i64) -> Result<i64> {
    if (wrnc_onnx::MIN_OPSET..=wrnc_onnx::MAX_OPSET).contains(&opset) {
        Ok(opset)
    } else {
        Err(UsageError(format!(
            "--opset {opset} is not supported: wrnc writes opsets {} to {} (default {})",
            wrnc_onnx::MIN_OPSET,
            wrnc_onnx::MAX_OPSET,
            wrnc_onnx::DEFAULT_OPSET
        ))
        .into())
    }
}

/// `--device` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum DeviceArg {
    /// CUDA when built in and present, else CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA GPU 0 (needs a build with `--features cuda`).
    Cuda,
}

impl From<DeviceArg> for recipe::DeviceKind {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => recipe::DeviceKind::Auto,
            DeviceArg::Cpu => recipe::DeviceKind::Cpu,
            DeviceArg::Cuda => recipe::DeviceKind::Cuda,
        }
    }
}
