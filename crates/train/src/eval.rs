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

/// Test-time augmentation of `wrnc eval --tta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tta {
    /// Each image as it is.
    #[default]
    None,
    /// The mean of the softmax of each image and of its horizontal mirror: the loss is the
    /// cross-entropy of the averaged probabilities, the prediction their arg-max.
    Flip,
}

impl Tta {
    /// The name used on the command line and in `--json`.
    pub fn name(self) -> &'static str {
        match self {
            Tta::None => "none",
            Tta::Flip => "flip",
        }
    }
}

/// Evaluates `model` (inference mode) on `data` with `batch_size` images per forward pass.
pub fn evaluate_model(
    model: &mut Model,
    data: Arc<Dataset>,
    norm: Arc<Normalizer>,
    batch_size: usize,
    split: Split,
) -> Result<EvalResult> {
    eval_loop(model, data, norm, batch_size, split, Tta::None, None)
}

/// The scores the batch `x` is judged by: its logits, or with [`Tta::Flip`] the log of the
/// mean of the softmax of `x` and of `x` mirrored along its width (the last axis), computed
/// stably as `log((exp(a) + exp(b)) / 2)` of the two log-softmaxes. Both give the same
/// cross-entropy, arg-max and softmax as the probabilities they stand for.
fn scores(model: &mut Model, x: &Tensor, tta: Tta) -> Result<Tensor> {
    let logits = model.logits(x, Mode::Eval)?;
    match tta {
        Tta::None => Ok(logits),
        Tta::Flip => {
            let w = x.dim(3)?;
            let rev: Vec<u32> = (0..w as u32).rev().collect();
            let rev = Tensor::from_vec(rev, w, x.device())?;
            let mirrored = model.logits(&x.index_select(&rev, 3)?, Mode::Eval)?;
            let a = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, 1)?;
            let b = candle_nn::ops::log_softmax(&mirrored.to_dtype(DType::F32)?, 1)?;
            let m = a.maximum(&b)?;
            let sum = (a.broadcast_sub(&m)?.exp()? + b.broadcast_sub(&m)?.exp()?)?;
            Ok((m + (sum * 0.5)?.log()?)?)
        }
    }
}

/// The evaluation loop; with `predictions`, also records every image's prediction.
fn eval_loop(
    model: &mut Model,
    data: Arc<Dataset>,
    norm: Arc<Normalizer>,
    batch_size: usize,
    split: Split,
    tta: Tta,
    mut predictions: Option<&mut Vec<Prediction>>,
) -> Result<EvalResult> {
    let batches =
        eval_batches(data, norm, batch_size.max(1)).map_err(|e| TrainError::Data(e.to_string()))?;
    let (mut loss_sum, mut correct, mut count) = (0f64, 0usize, 0usize);
    for b in batches {
        let x = model.input_tensor(&b.images, b.len)?;
        let logits = scores(model, &x, tta)?;
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
    evaluate_detailed_tta(graph, weights, recipe, split, device, Tta::None)
}

/// [`evaluate_detailed`] with test-time augmentation `tta` (scores, predictions and their
/// probabilities are those of the averaged softmax).
pub fn evaluate_detailed_tta(
    graph: &Graph,
    weights: &Weights,
    recipe: &Recipe,
    split: Split,
    device: DeviceKind,
    tta: Tta,
) -> Result<DetailedEvaluation> {
    let meta = CheckpointMeta::from_metadata(&weights.metadata)?;
    let dev = select_device(device)?;
    let run_data = load_run_data(graph, recipe)?;
    let normalizer = input_normalizer(&meta, graph.input_shape(), || {
        Ok(Normalizer::clone(&run_data.norm))
    })?;
    let mut model = Model::new(graph, weights, &dev, DType::F32)?;
    let data = run_data.split(split)?;
    let batch = recipe.train.eval_batch_size;
    evaluate_model_detailed(&mut model, data, normalizer, batch, split, tta)
}

/// [`evaluate_model`] with test-time augmentation `tta`, recording every image's prediction
/// ([`evaluate_detailed_tta`] on a model already built; the trainer's last evaluation).
pub(crate) fn evaluate_model_detailed(
    model: &mut Model,
    data: Arc<Dataset>,
    normalizer: InputNormalizer,
    batch_size: usize,
    split: Split,
    tta: Tta,
) -> Result<DetailedEvaluation> {
    let mut rows = Vec::with_capacity(data.len());
    let result = eval_loop(
        model,
        Arc::clone(&data),
        Arc::clone(&normalizer.normalizer),
        batch_size,
        split,
        tta,
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

/// Inference-mode probabilities of `n` already-normalised images (`n x C x H x W` f32
/// values), on the CPU, row-major `[n, classes]`: the softmax of the logits, or with
/// [`Tta::Flip`] the mean of the softmax of each image and of its mirror (the computation of
/// `wrnc eval --tta flip`, which an ONNX file exported with `export.tta: flip` does inside
/// its graph).
pub fn predict_probabilities(
    graph: &Graph,
    weights: &Weights,
    images: &[f32],
    n: usize,
    tta: Tta,
) -> Result<Vec<f32>> {
    let mut model = Model::new(graph, weights, &Device::Cpu, DType::F32)?;
    let x = model.input_tensor(images, n)?;
    let s = scores(&mut model, &x, tta)?.to_dtype(DType::F32)?;
    let p = candle_nn::ops::softmax(&s, 1)?;
    Ok(p.flatten_all()?.to_vec1()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::init_weights;
    use wrnc_testkit::graphs::{conv, conv_bn_classifier};

    /// Softmax of one row, in f64.
    fn softmax(row: &[f32]) -> Vec<f64> {
        let m = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn flip_tta_scores_are_the_log_of_the_mean_softmax_of_image_and_mirror() {
        let (c, h, w, n, k) = (2, 5, 6, 3, 4);
        let g = conv_bn_classifier([c, h, w], conv(4, 3, 1), k, true);
        let weights = init_weights(&g, 5);
        let images: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        // The mirror, built on the host: column x of each row becomes column w-1-x.
        let mut mirrored = images.clone();
        for row in 0..n * c * h {
            mirrored[row * w..(row + 1) * w].reverse();
        }
        let plain = predict_logits(&g, &weights, &images, n).unwrap();
        let flipped = predict_logits(&g, &weights, &mirrored, n).unwrap();
        assert_ne!(plain, flipped, "the test image must not be symmetric");

        let mut model = Model::new(&g, &weights, &Device::Cpu, DType::F32).unwrap();
        let x = model.input_tensor(&images, n).unwrap();
        let got: Vec<Vec<f32>> = scores(&mut model, &x, Tta::Flip)
            .unwrap()
            .to_vec2()
            .unwrap();
        for i in 0..n {
            let a = softmax(&plain[i * k..(i + 1) * k]);
            let b = softmax(&flipped[i * k..(i + 1) * k]);
            for j in 0..k {
                let want = ((a[j] + b[j]) / 2.0).ln();
                assert!(
                    (got[i][j] as f64 - want).abs() < 1e-5,
                    "image {i} class {j}: {} vs {want}",
                    got[i][j]
                );
            }
        }
        let none: Vec<f32> = scores(&mut model, &x, Tta::None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(none, plain);
    }
}
