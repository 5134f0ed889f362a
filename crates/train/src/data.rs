//! Loading the recipe's dataset through wrnc-data: splits, the normaliser fitted on the
//! training split, and the training batch configuration.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use wrnc_data::{AugmentConfig, BatchConfig, Dataset, NormMode, Normalizer};
use wrnc_ir::recipe::{DataConfig, DatasetKind, Normalize, PadMode, Recipe, Toggle};
use wrnc_ir::Graph;

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training split (after the validation records are held out).
    Train,
    /// The validation split (`data.val_size` records held out of the training set).
    Val,
    /// The official test set.
    Test,
}

impl Split {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The loaded data of a run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Training split.
    pub train: Arc<Dataset>,
    /// Validation split, when `val_size > 0`.
    pub val: Option<Arc<Dataset>>,
    /// Test split.
    pub test: Arc<Dataset>,
    /// Normaliser fitted on the training split.
    pub norm: Arc<Normalizer>,
}

impl RunData {
    /// The dataset of `split`; `Val` without a validation split is an error.
    pub fn split(&self, split: Split) -> Result<Arc<Dataset>> {
        match split {
            Split::Train => Ok(Arc::clone(&self.train)),
            Split::Test => Ok(Arc::clone(&self.test)),
            Split::Val => self.val.clone().ok_or_else(|| {
                TrainError::Data(
                    "there is no validation split (data.val_size is 0); evaluate `test` instead"
                        .into(),
                )
            }),
        }
    }

    /// The split evaluated after every epoch: `Val`, or `Test` when `val_size` is 0 (as
    /// the official WRN code does).
    pub fn epoch_eval_split(&self) -> Split {
        if self.val.is_some() {
            Split::Val
        } else {
            Split::Test
        }
    }
}

fn kind(k: DatasetKind) -> wrnc_data::DatasetKind {
    match k {
        DatasetKind::Cifar10 => wrnc_data::DatasetKind::Cifar10,
        DatasetKind::Cifar100 => wrnc_data::DatasetKind::Cifar100,
        DatasetKind::Digits => wrnc_data::DatasetKind::Digits,
    }
}

fn norm_mode(n: Normalize) -> NormMode {
    match n {
        Normalize::MeanStd => NormMode::MeanStd,
        Normalize::PerPixelMean => NormMode::PerPixelMean,
        Normalize::PerChannelMean => NormMode::PerChannelMean,
        Normalize::None => NormMode::None,
    }
}

/// The augmentation of a `data` section.
pub fn augment_config(data: &DataConfig) -> AugmentConfig {
    match data.augment.on() {
        None => AugmentConfig::none(),
        Some(a) => {
            let (crop_padding, pad_mode) = match &a.crop {
                Toggle::Off => (0, wrnc_data::PadMode::Reflect),
                Toggle::On(c) => (
                    c.padding,
                    match c.mode {
                        PadMode::Reflect => wrnc_data::PadMode::Reflect,
                        PadMode::Zero => wrnc_data::PadMode::Zero,
                    },
                ),
            };
            AugmentConfig {
                crop_padding,
                pad_mode,
                hflip: a.flip,
            }
        }
    }
}

/// The training batch configuration of a recipe.
pub fn train_batch_config(recipe: &Recipe) -> BatchConfig {
    BatchConfig {
        batch_size: recipe.train.batch_size,
        shuffle: recipe.data.shuffle,
        drop_last: recipe.train.drop_last,
        augment: augment_config(&recipe.data),
        prefetch: recipe.data.prefetch.max(1),
    }
}

/// Where the dataset files are read from.
pub fn data_root(data: &DataConfig) -> PathBuf {
    PathBuf::from(
        data.root
            .clone()
            .or_else(|| data.dataset.default_root().map(str::to_string))
            .unwrap_or_else(|| ".".into()),
    )
}

/// Loads and splits the dataset, fits the normaliser and checks that the graph takes the
/// dataset's images and predicts its number of classes.
pub fn load_run_data(graph: &Graph, recipe: &Recipe) -> Result<RunData> {
    let d = &recipe.data;
    let splits = wrnc_data::load_splits(kind(d.dataset), &data_root(d), d.val_size, d.split_seed)
        .map_err(|e| TrainError::Data(e.to_string()))?;
    let norm = Normalizer::fit(norm_mode(d.normalize), &splits.train)
        .map_err(|e| TrainError::Data(e.to_string()))?;
    let t = &splits.train;
    let shape = [t.channels(), t.height(), t.width()];
    if graph.input_shape() != shape {
        return Err(TrainError::Invalid(format!(
            "model `{}` takes input {:?} but {:?} images are {shape:?}",
            graph.name,
            graph.input_shape(),
            d.dataset
        )));
    }
    if graph.classes() != t.classes() {
        return Err(TrainError::Invalid(format!(
            "model `{}` predicts {} classes but {:?} has {}",
            graph.name,
            graph.classes(),
            d.dataset,
            t.classes()
        )));
    }
    Ok(RunData {
        train: Arc::new(splits.train),
        val: splits.val.map(Arc::new),
        test: Arc::new(splits.test),
        norm: Arc::new(norm),
    })
}
