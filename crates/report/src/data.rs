//! What a report shows, as plain data: the CLI gathers it from the run directory and an
//! evaluation, and [`crate::render`] draws it.

use serde::Serialize;

/// One row of the run's `metrics.csv` (accuracies as fractions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochRow {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Learning rate of the epoch.
    pub lr: f64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_acc: f64,
    /// Loss on the split evaluated each epoch.
    pub val_loss: f64,
    /// Accuracy on the split evaluated each epoch.
    pub val_acc: f64,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_sec: f64,
}

/// One row of the run's `steps.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepRow {
    /// Global step, from 1.
    pub step: u64,
    /// Epoch, from 1.
    pub epoch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Loss of the step's batch.
    pub loss: f64,
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassRow {
    /// The class name.
    pub name: String,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Images of the class.
    pub support: u64,
}

/// A small image in `C x H x W` u8 pixels (C is 1 or 3).
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    /// Channels (1: grey, 3: RGB).
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Pixels, channel-major.
    pub pixels: Vec<u8>,
}

/// A test image the model got wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Mistake {
    /// Its index in the test split.
    pub index: usize,
    /// The true class name.
    pub truth: String,
    /// The predicted class name.
    pub predicted: String,
    /// The probability the model gave its prediction.
    pub probability: f64,
    /// The image.
    pub image: Thumbnail,
}

/// The per-class results of the exported weights on a split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassResults {
    /// The weights file evaluated (e.g. `best.safetensors`).
    pub weights_file: String,
    /// The split (`test`).
    pub split: String,
    /// Images evaluated.
    pub count: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// Top-5 accuracy (more than five classes only).
    pub top5: Option<f64>,
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// `confusion_matrix[true][predicted]`.
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Per-class scores, in label order.
    pub per_class: Vec<ClassRow>,
}

/// Everything a report shows.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// The run's name (the spec's model name).
    pub title: String,
    /// The split evaluated each epoch (`val`, or `test` without a validation split).
    pub eval_split: String,
    /// `metrics.csv`.
    pub epochs: Vec<EpochRow>,
    /// `steps.csv`.
    pub steps: Vec<StepRow>,
    /// The exported weights on the test split (None when the dataset is not available).
    pub classes: Option<ClassResults>,
    /// Why there are no per-class results, when there are none.
    pub classes_missing: Option<String>,
    /// The most confidently wrong test images, most confident first.
    pub mistakes: Vec<Mistake>,
    /// Facts about the run, in order (name, value).
    pub facts: Vec<(String, String)>,
    /// Sentences the reader must see (how the best epoch was chosen, ...).
    pub notes: Vec<String>,
    /// The resolved spec (YAML).
    pub spec_yaml: String,
}
