//! Loading the recipe's dataset through wrnc-data: splits, the normaliser fitted on the
//! training split, and the training batch configuration.

use crate::error::{Result, TrainError};
use crate::observer::{Silent, TrainObserver};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use wrnc_data::{BatchConfig, Dataset, Normalizer};
use wrnc_ir::Graph;
use wrnc_recipe::Recipe;

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
    /// All splits.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

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

/// The training batch configuration of a recipe.
pub fn train_batch_config(recipe: &Recipe) -> BatchConfig {
    BatchConfig {
        batch_size: recipe.train.batch_size,
        shuffle: recipe.data.shuffle,
        drop_last: recipe.train.drop_last,
        augment: recipe.data.augmentation(),
        prefetch: recipe.data.prefetch.max(1),
    }
}

/// Loads and splits the dataset, fits the normaliser and checks that the graph takes the
/// dataset's images and predicts its number of classes (see [`load_run_data_with`]).
pub fn load_run_data(graph: &Graph, recipe: &Recipe) -> Result<RunData> {
    load_run_data_with(graph, recipe, &mut Silent)
}

/// [`load_run_data`], telling `observer` how decoding a folder dataset progresses and what
/// was loaded ([`TrainObserver::decode_progress`], [`TrainObserver::data_loaded`]).
pub fn load_run_data_with(
    graph: &Graph,
    recipe: &Recipe,
    observer: &mut dyn TrainObserver,
) -> Result<RunData> {
    let d = &recipe.data;
    let input: [usize; 3] = graph.input_shape().try_into().map_err(|_| {
        TrainError::Invalid(format!(
            "model `{}` takes input {:?}, not images [C, H, W]",
            graph.name,
            graph.input_shape()
        ))
    })?;
    let loaded = wrnc_data::load_config_data(d, input, &mut |p| observer.decode_progress(&p));
    let (splits, report) = loaded.map_err(|e| match e {
        // The spec asks for more validation records than the folder the user named holds:
        // the user's setting, like the same check against the official sizes at spec time.
        wrnc_data::DataError::ValTooLarge { .. } => {
            TrainError::Invalid(format!("data.val_size: {e}"))
        }
        // A folder dataset the user named is missing, badly laid out or has bad images.
        e if e.is_user_input() => TrainError::Invalid(format!("data.root: {e}")),
        e => TrainError::Data(e.to_string()),
    })?;
    if let Some(r) = &report {
        observer.data_loaded(r);
    }
    let norm =
        Normalizer::fit(d.normalize, &splits.train).map_err(|e| TrainError::Data(e.to_string()))?;
    let t = &splits.train;
    let shape = [t.channels(), t.height(), t.width()];
    if graph.input_shape() != shape {
        return Err(TrainError::Invalid(format!(
            "model `{}` takes input {:?} but {} images are {shape:?}",
            graph.name,
            graph.input_shape(),
            d.dataset
        )));
    }
    if let (Some(r), true) = (&report, graph.classes() != t.classes()) {
        return Err(TrainError::Invalid(format!(
            "model.classes: model `{}` predicts {} classes but the folder {} has {} class \
             folders ({}); set model.classes: {}",
            graph.name,
            graph.classes(),
            r.root.display(),
            t.classes(),
            t.class_names().join(", "),
            t.classes()
        )));
    }
    if graph.classes() != t.classes() {
        return Err(TrainError::Invalid(format!(
            "model `{}` predicts {} classes but {} has {}",
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
