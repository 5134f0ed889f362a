//! Inference-mode evaluation of weights on a dataset split, and raw logits for verification.

use crate::checkpoint::{input_normalizer, CheckpointMeta, InputNormalizer};
use crate::data::{load_run_data, Split};
use crate::device::select_device;
use crate::error::{Result, TrainError};
use crate::model::{Mode, Model};
use crate::ops::{count_correct, cross_entropy};
use crate::predictions::{Prediction, Predictions};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use std::sync::Arc;
use wrnc_data::{eval_batches, Dataset, Normalizer};
use wrnc_ir::{Graph, Weights};
use wrnc_recipe::{DeviceKind, Recipe};

/// Loss and accuracy of a model on one split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalResult {
    /// The split evaluated.
    pub split: Split,
    /// Number of images.
    pub count: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of images classified correctly, in [0, 1].
    pub accuracy: f64,
}

/// Evaluates `model` (inference mode) on `data` with `batch_size` images per forward pass.
pub fn evaluate_model(
    model: &mut Model,
    data: Arc<Dataset>,
    norm: Arc<Normalizer>,
    batch_size: usize,
    split: Split,
) -> Result<EvalResult> {
    eval_loop(model, data, norm, batch_size, split, None)
}

/// The evaluation loop; with `predictions`, also records every image's prediction.
fn eval_loop(
    model: &mut Model,
    data: Arc<Dataset>,
    norm: Arc<Normalizer>,
    batch_size: usize,
    split: Split,
    mut predictions: Option<&mut Vec<Prediction>>,
) -> Result<EvalResult> {
    let batches =
        eval_batches(data, norm, batch_size.max(1)).map_err(|e| TrainError::Data(e.to_string()))?;
    let (mut loss_sum, mut correct, mut count) = (0f64, 0usize, 0usize);
    for b in batches {
        let x = model.input_tensor(&b.images, b.len)?;
        let logits = model.logits(&x, Mode::Eval)?;
        let labels = Tensor::from_slice(&b.labels, b.len, model.device())?;
        let loss: f64 = cross_entropy(&logits, &labels)?
            .to_dtype(DType::F64)?
            .to_scalar()?;
        loss_sum += loss * b.len as f64;
        correct += count_correct(&logits, &b.labels)?;
        if let Some(out) = predictions.as_deref_mut() {
            let rows: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
            for (row, &label) in rows.iter().zip(&b.labels) {
                let index = out.len();
                out.push(Prediction::from_logits(index, label, row));
            }
        }
        count += b.len;
    }
    Ok(EvalResult {
        split,
        count,
        loss: if count > 0 {
            loss_sum / count as f64
        } else {
            0.0
        },
        accuracy: if count > 0 {
            correct as f64 / count as f64
        } else {
            0.0
        },
    })
}

/// The result of [`evaluate`]: the scores and the normaliser they were measured with.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Loss and accuracy.
    pub result: EvalResult,
    /// The input normaliser used (recorded in the weights, or fitted: then warn the user).
    pub normalizer: InputNormalizer,
    /// The class names of the dataset evaluated, index = class id.
    pub class_names: Vec<String>,
}

/// Evaluates `weights` on `split` of the recipe's dataset (same split and batch size as
/// training uses), on `device`, with the input normaliser recorded in the weights (fitted on
/// the training split when they record none; see [`input_normalizer`]).
pub fn evaluate(
    graph: &Graph,
    weights: &Weights,
    recipe: &Recipe,
    split: Split,
    device: DeviceKind,
) -> Result<Evaluation> {
    let meta = CheckpointMeta::from_metadata(&weights.metadata)?;
    let dev = select_device(device)?;
    let data = load_run_data(graph, recipe)?;
    let normalizer = input_normalizer(&meta, graph.input_shape(), || {
        Ok(Normalizer::clone(&data.norm))
    })?;
    let mut model = Model::new(graph, weights, &dev, DType::F32)?;
    let result = evaluate_model(
        &mut model,
        data.split(split)?,
        Arc::clone(&normalizer.normalizer),
        recipe.train.eval_batch_size,
        split,
    )?;
    Ok(Evaluation {
        result,
        normalizer,
        class_names: data.train.class_names().to_vec(),
    })
}

/// The result of [`evaluate_detailed`]: the scores, every image's prediction and the split's
/// images (for thumbnails).
#[derive(Debug, Clone)]
pub struct DetailedEvaluation {
    /// Loss, accuracy and the normaliser used.
    pub evaluation: Evaluation,
    /// One prediction per image of the split, in the split's order, with the class names.
    pub predictions: Predictions,
    /// The evaluated split's images and labels.
    pub data: Arc<Dataset>,
}

/// [`evaluate`], also recording every image's prediction (for a confusion matrix, per-class
/// scores, top-5 accuracy and a predictions file).
pub fn evaluate_detailed(
    graph: &Graph,
    weights: &Weights,
    recipe: &Recipe,
    split: Split,
    device: DeviceKind,
) -> Result<DetailedEvaluation> {
    let meta = CheckpointMeta::from_metadata(&weights.metadata)?;
    let dev = select_device(device)?;
    let run_data = load_run_data(graph, recipe)?;
    let normalizer = input_normalizer(&meta, graph.input_shape(), || {
        Ok(Normalizer::clone(&run_data.norm))
    })?;
    let mut model = Model::new(graph, weights, &dev, DType::F32)?;
    let data = run_data.split(split)?;
    let mut rows = Vec::with_capacity(data.len());
    let result = eval_loop(
        &mut model,
        Arc::clone(&data),
        Arc::clone(&normalizer.normalizer),
        recipe.train.eval_batch_size,
        split,
        Some(&mut rows),
    )?;
    let class_names = data.class_names().to_vec();
    let predictions = Predictions::new(class_names.clone(), rows);
    Ok(DetailedEvaluation {
        evaluation: Evaluation {
            result,
            normalizer,
            class_names,
        },
        predictions,
        data,
    })
}

/// Inference-mode logits of `n` already-normalised images (`n x C x H x W` f32 values), on
/// the CPU, row-major `[n, classes]`.
pub fn predict_logits(
    graph: &Graph,
    weights: &Weights,
    images: &[f32],
    n: usize,
) -> Result<Vec<f32>> {
    let mut model = Model::new(graph, weights, &Device::Cpu, DType::F32)?;
    let x = model.input_tensor(images, n)?;
    let logits = model.logits(&x, Mode::Eval)?;
    Ok(logits.flatten_all()?.to_vec1()?)
}
