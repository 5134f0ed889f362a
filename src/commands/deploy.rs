//! What the deployment commands share: loading weights against a spec, the dataset of a
//! spec, and the ONNX metadata (labels, normalisation, training result) a deployer needs.

use crate::exit::UsageError;
use anyhow::Result;
use std::path::Path;
use wrnc_data::Normalizer;
use wrnc_ir::{Graph, Weights};
use wrnc_onnx::{EvalSplit, ExportMetadata, Normalization, SelectedOn, TrainingSummary};
use wrnc_recipe::{DataConfig, Normalize};
use wrnc_train::{
    input_normalizer, CheckpointMeta, InputNormalizer, Split, TrainError, TrainOutcome,
};

/// Loads a weights file and checks it matches the graph and that its metadata reads; a
/// mismatch is a usage error that lists the tensors (the first mismatching tensor first).
pub fn load_weights(path: &Path, graph: &Graph) -> Result<Weights> {
    let w = Weights::load_for(path, graph).map_err(|e| UsageError(e.to_string()))?;
    w.check_against(graph, &path.display().to_string())
        .map_err(|e| UsageError(e.to_string()))?;
    checkpoint_meta(&w, path)?;
    Ok(w)
}

/// The typed metadata of a weights file read from `path`; unreadable values are a usage error.
pub fn checkpoint_meta(weights: &Weights, path: &Path) -> Result<CheckpointMeta> {
    Ok(CheckpointMeta::from_metadata(&weights.metadata)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?)
}

/// Converts the data crate's fitted normaliser to the ONNX metadata form.
pub fn to_metadata(n: &Normalizer) -> Normalization {
    let (c, _, _) = n.shape();
    match n.mode() {
        Normalize::MeanStd => Normalization::mean_std(n.mean().to_vec(), n.std().to_vec()),
        Normalize::PerChannelMean => Normalization::per_channel_mean(n.mean().to_vec()),
        Normalize::PerPixelMean => Normalization::per_pixel_mean(n.mean_image().to_vec()),
        Normalize::None => Normalization::none(c),
    }
}

/// Fits the spec's normaliser on a training split (for weights that record none).
pub fn fit_on(d: &DataConfig, splits: &wrnc_data::Splits) -> wrnc_train::Result<Normalizer> {
    Normalizer::fit(d.normalize, &splits.train).map_err(|e| TrainError::Data(e.to_string()))
}

/// The input normaliser of `weights` for the spec's network through the one lookup
/// ([`wrnc_train::input_normalizer`]): the recorded one, else fitted on the spec's training
/// split (loaded only then), with a warning printed.
pub fn normalizer_for(spec: &wrnc_spec::Spec, weights: &Weights) -> Result<InputNormalizer> {
    let d = &spec.resolved.data;
    let meta = CheckpointMeta::from_metadata(&weights.metadata)?;
    let n = input_normalizer(&meta, spec.graph.input_shape(), || {
        let splits =
            wrnc_data::load_config_splits(d).map_err(|e| TrainError::Data(e.to_string()))?;
        fit_on(d, &splits)
    })?;
    warn_if_fitted(&n);
    Ok(n)
}

/// Prints the lookup's warning when the normaliser had to be fitted.
pub fn warn_if_fitted(n: &InputNormalizer) {
    if let Some(w) = n.warning() {
        eprintln!("warning: {w}");
    }
}

/// Builds the metadata of an export: class labels, normalisation (the one recorded in the
/// weights by `wrnc train`, else fitted on the spec's training split; mode `none` with a
/// warning when neither is available, e.g. fresh weights without the dataset), the resolved
/// spec and the training result recorded in the weights.
pub fn export_metadata(spec: &wrnc_spec::Spec, weights: &Weights) -> Result<ExportMetadata> {
    let d = &spec.resolved.data;
    let meta = CheckpointMeta::from_metadata(&weights.metadata)?;
    let normalization = match normalizer_for(spec, weights) {
        Ok(n) => Some(to_metadata(&n.normalizer)),
        Err(e) => {
            eprintln!(
                "warning: the input normalisation could not be computed ({e}); the file \
                 records mode `none`"
            );
            None
        }
    };
    let training = meta.epoch.map(|_| weights_summary(&meta));
    // The dataset's class names, where they name the network's classes (a stand-in dataset
    // of `model.wrn`'s ImageNet form does not): else none, and the file numbers its classes.
    let names = d.dataset.class_names();
    let names = if names.len() == spec.graph.classes() {
        names
    } else {
        &[]
    };
    Ok(ExportMetadata {
        class_labels: names.iter().map(|s| s.to_string()).collect(),
        normalization,
        spec_yaml: Some(spec.resolved_yaml()),
        training,
        doc_string: None,
        weights_file: None,
        extra: Default::default(),
    })
}

/// The ONNX split of a training split (`train` is never evaluated per epoch).
fn eval_split(s: Split) -> Option<EvalSplit> {
    match s {
        Split::Val => Some(EvalSplit::Val),
        Split::Test => Some(EvalSplit::Test),
        Split::Train => None,
    }
}

/// The training summary of one weights file (`wrnc export`): the epoch it was saved after,
/// and, for a `best.safetensors`, the accuracy that chose it and the split it was measured on.
/// Whether other weights were last is unknown here, so `selected_on` is only set for a best.
pub fn weights_summary(meta: &CheckpointMeta) -> TrainingSummary {
    let split = meta.val_accuracy.and(meta.val_split).and_then(eval_split);
    TrainingSummary {
        epochs_completed: None,
        epoch: meta.epoch,
        selected_on: split.map(|s| match s {
            EvalSplit::Val => SelectedOn::Val,
            EvalSplit::Test => SelectedOn::Test,
        }),
        eval_split: split,
        eval_accuracy: split.and(meta.val_accuracy),
        test_accuracy: (split == Some(EvalSplit::Test))
            .then_some(meta.val_accuracy)
            .flatten(),
    }
}

/// The training summary of the file `wrnc train` exports at the end of a run: with a
/// validation split the best epoch on it (`best.safetensors`), else the last epoch
/// (`last.safetensors`) with its test accuracy.
pub fn run_summary(outcome: &TrainOutcome) -> TrainingSummary {
    match outcome.eval_split {
        Split::Val => TrainingSummary {
            epochs_completed: Some(outcome.epochs_done),
            epoch: outcome.best.map(|b| b.1),
            selected_on: Some(SelectedOn::Val),
            eval_split: Some(EvalSplit::Val),
            eval_accuracy: outcome.best.map(|b| b.0),
            test_accuracy: None,
        },
        Split::Test | Split::Train => {
            let acc = outcome.last.as_ref().map(|m| m.val_acc);
            let split = eval_split(outcome.eval_split);
            TrainingSummary {
                epochs_completed: Some(outcome.epochs_done),
                epoch: Some(outcome.epochs_done),
                selected_on: Some(SelectedOn::Last),
                eval_split: split,
                eval_accuracy: split.and(acc),
                test_accuracy: (split == Some(EvalSplit::Test)).then_some(acc).flatten(),
            }
        }
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

impl From<DeviceArg> for wrnc_recipe::DeviceKind {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => wrnc_recipe::DeviceKind::Auto,
            DeviceArg::Cpu => wrnc_recipe::DeviceKind::Cpu,
            DeviceArg::Cuda => wrnc_recipe::DeviceKind::Cuda,
        }
    }
}
