//! What wrnc records in a weights file's metadata ([`CheckpointMeta`], one writer and one
//! reader for every key), and the one lookup of the input normaliser that weights are used
//! with ([`input_normalizer`]).
//!
//! | key | value |
//! |---|---|
//! | `model` | the graph's name |
//! | `spec` | the spec's name |
//! | `normalization` | JSON of the fitted [`Normalizer`] the weights were trained with |
//! | `epoch` | epochs completed (`last`) or the epoch of the best accuracy (`best`), from 1 |
//! | `batches_into_next_epoch` | batches of the next epoch already trained |
//! | `step` | optimiser steps taken |
//! | `val_accuracy` | accuracy (fraction) that made the file `best.safetensors` |
//! | `val_split` | the split that accuracy was measured on (`val` or `test`) |
//! | `init_seed` | the seed of freshly initialised weights (`wrnc init`) |
//! | `class_names` | JSON array of the class names, index = class id (absent in older files) |
//!
//! The run directory's own keys (the commit tag, the optimiser state) belong to
//! [`crate::rundir`].

use crate::data::Split;
use crate::error::{Result, TrainError};
use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;
use wrnc_data::Normalizer;

/// The keys of [`CheckpointMeta`], each spelled once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Model,
    Spec,
    Normalization,
    Epoch,
    BatchesIntoNextEpoch,
    Step,
    ValAccuracy,
    ValSplit,
    InitSeed,
    ClassNames,
}

impl Key {
    fn as_str(self) -> &'static str {
        match self {
            Key::Model => "model",
            Key::Spec => "spec",
            Key::Normalization => "normalization",
            Key::Epoch => "epoch",
            Key::BatchesIntoNextEpoch => "batches_into_next_epoch",
            Key::Step => "step",
            Key::ValAccuracy => "val_accuracy",
            Key::ValSplit => "val_split",
            Key::InitSeed => "init_seed",
            Key::ClassNames => "class_names",
        }
    }
}

/// A metadata value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("weights metadata `{key}` is malformed: {message}")]
pub struct CheckpointMetaError {
    /// The key.
    pub key: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

impl From<CheckpointMetaError> for TrainError {
    fn from(e: CheckpointMetaError) -> Self {
        TrainError::Invalid(e.to_string())
    }
}

/// The metadata wrnc records in a weights file (the safetensors header), typed. Absent keys
/// are `None`; keys wrnc does not know are ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointMeta {
    /// The graph's name.
    pub model: Option<String>,
    /// The spec's name.
    pub spec: Option<String>,
    /// The input normaliser the weights were trained with.
    pub normalizer: Option<Normalizer>,
    /// Epochs completed, or the epoch (from 1) of the best accuracy.
    pub epoch: Option<usize>,
    /// Batches of the next epoch already trained.
    pub batches_into_next_epoch: Option<usize>,
    /// Optimiser steps taken.
    pub step: Option<u64>,
    /// The evaluation accuracy (fraction) of the weights.
    pub val_accuracy: Option<f64>,
    /// The split `val_accuracy` was measured on.
    pub val_split: Option<Split>,
    /// The seed of freshly initialised weights.
    pub init_seed: Option<u64>,
    /// The class names, index = class id (None in files written before wrnc recorded them).
    pub class_names: Option<Vec<String>>,
}

impl CheckpointMeta {
    /// Writes the present fields into `metadata` (other entries are kept).
    pub fn write_to(&self, metadata: &mut BTreeMap<String, String>) {
        let mut put = |k: Key, v: Option<String>| {
            if let Some(v) = v {
                metadata.insert(k.as_str().to_string(), v);
            }
        };
        put(Key::Model, self.model.clone());
        put(Key::Spec, self.spec.clone());
        put(
            Key::Normalization,
            self.normalizer
                .as_ref()
                .and_then(|n| serde_json::to_string(n).ok()),
        );
        put(Key::Epoch, self.epoch.map(|v| v.to_string()));
        put(
            Key::BatchesIntoNextEpoch,
            self.batches_into_next_epoch.map(|v| v.to_string()),
        );
        put(Key::Step, self.step.map(|v| v.to_string()));
        put(Key::ValAccuracy, self.val_accuracy.map(|v| v.to_string()));
        put(Key::ValSplit, self.val_split.map(|v| v.name().to_string()));
        put(Key::InitSeed, self.init_seed.map(|v| v.to_string()));
        put(
            Key::ClassNames,
            self.class_names
                .as_ref()
                .and_then(|n| serde_json::to_string(n).ok()),
        );
    }

    /// Reads the fields from `metadata`; a present but unreadable value is an error.
    pub fn from_metadata(
        metadata: &BTreeMap<String, String>,
    ) -> Result<CheckpointMeta, CheckpointMetaError> {
        let get = |k: Key| metadata.get(k.as_str());
        fn parse<T: std::str::FromStr>(
            k: Key,
            v: Option<&String>,
        ) -> Result<Option<T>, CheckpointMetaError>
        where
            T::Err: std::fmt::Display,
        {
            v.map(|s| {
                s.trim().parse().map_err(|e: T::Err| CheckpointMetaError {
                    key: k.as_str(),
                    message: format!("`{s}`: {e}"),
                })
            })
            .transpose()
        }
        let normalizer = get(Key::Normalization)
            .map(|s| {
                serde_json::from_str(s).map_err(|e| CheckpointMetaError {
                    key: Key::Normalization.as_str(),
                    message: e.to_string(),
                })
            })
            .transpose()?;
        let val_split = get(Key::ValSplit)
            .map(|s| {
                Split::ALL
                    .into_iter()
                    .find(|split| split.name() == s.as_str())
                    .ok_or_else(|| CheckpointMetaError {
                        key: Key::ValSplit.as_str(),
                        message: format!("`{s}` is not one of train, val, test"),
                    })
            })
            .transpose()?;
        let class_names = get(Key::ClassNames)
            .map(|s| {
                serde_json::from_str::<Vec<String>>(s).map_err(|e| CheckpointMetaError {
                    key: Key::ClassNames.as_str(),
                    message: format!("expected a JSON array of strings: {e}"),
                })
            })
            .transpose()?;
        Ok(CheckpointMeta {
            model: get(Key::Model).cloned(),
            spec: get(Key::Spec).cloned(),
            normalizer,
            epoch: parse(Key::Epoch, get(Key::Epoch))?,
            batches_into_next_epoch: parse(
                Key::BatchesIntoNextEpoch,
                get(Key::BatchesIntoNextEpoch),
            )?,
            step: parse(Key::Step, get(Key::Step))?,
            val_accuracy: parse(Key::ValAccuracy, get(Key::ValAccuracy))?,
            val_split,
            init_seed: parse(Key::InitSeed, get(Key::InitSeed))?,
            class_names,
        })
    }
}

/// Where the input normaliser used with a weights file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormalizerSource {
    /// Recorded in the weights by `wrnc train`.
    Recorded,
    /// The weights record none: fitted on the spec's training split.
    Fitted,
}

/// The input normaliser to use with a weights file, and where it came from.
#[derive(Debug, Clone)]
pub struct InputNormalizer {
    /// The normaliser.
    pub normalizer: Arc<Normalizer>,
    /// Where it came from.
    pub source: NormalizerSource,
}

impl InputNormalizer {
    /// The warning to show the user when the normaliser had to be fitted (None when the
    /// weights recorded it).
    pub fn warning(&self) -> Option<String> {
        (self.source == NormalizerSource::Fitted).then(|| {
            format!(
                "the weights record no input normalisation; using `{}` fitted on the spec's \
                 training split (weights trained with another normalisation score poorly)",
                self.normalizer.mode()
            )
        })
    }
}

/// The one normaliser lookup of every command that feeds images to weights: the normaliser
/// recorded in the weights' metadata when there is one, else `fit()` (reported as
/// [`NormalizerSource::Fitted`] so that the caller can warn). A recorded normaliser for
/// images of another shape than `input_shape` is an error.
pub fn input_normalizer(
    meta: &CheckpointMeta,
    input_shape: &[usize],
    fit: impl FnOnce() -> Result<Normalizer>,
) -> Result<InputNormalizer> {
    let (normalizer, source) = match &meta.normalizer {
        Some(n) => (n.clone(), NormalizerSource::Recorded),
        None => (fit()?, NormalizerSource::Fitted),
    };
    let (c, h, w) = normalizer.shape();
    if input_shape != [c, h, w] {
        return Err(TrainError::Invalid(format!(
            "the weights' input normalisation is for {c}x{h}x{w} images, but the model takes \
             {input_shape:?}"
        )));
    }
    Ok(InputNormalizer {
        normalizer: Arc::new(normalizer),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrnc_data::Dataset;
    use wrnc_recipe::Normalize;

    fn normalizer(mode: Normalize) -> Normalizer {
        let d = Dataset::new(vec![0, 255, 51, 51], vec![0], [1, 2, 2], vec!["a".into()]).unwrap();
        Normalizer::fit(mode, &d).unwrap()
    }

    #[test]
    fn round_trip() {
        let meta = CheckpointMeta {
            model: Some("wrn".into()),
            spec: Some("quickstart".into()),
            normalizer: Some(normalizer(Normalize::MeanStd)),
            epoch: Some(3),
            batches_into_next_epoch: Some(0),
            step: Some(42),
            val_accuracy: Some(0.975),
            val_split: Some(Split::Test),
            init_seed: None,
            class_names: Some(vec!["T-shirt/top".into(), "a \"quoted\", name".into()]),
        };
        let mut map = BTreeMap::from([("other".to_string(), "kept".to_string())]);
        meta.write_to(&mut map);
        assert_eq!(map["epoch"], "3");
        assert_eq!(map["val_accuracy"], "0.975");
        assert_eq!(map["val_split"], "test");
        assert_eq!(map["other"], "kept");
        assert!(!map.contains_key("init_seed"));
        assert_eq!(CheckpointMeta::from_metadata(&map).unwrap(), meta);
        assert_eq!(
            CheckpointMeta::from_metadata(&BTreeMap::new()).unwrap(),
            CheckpointMeta::default()
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        for (k, v) in [
            ("epoch", "three"),
            ("val_accuracy", "high"),
            ("val_split", "dev"),
            ("normalization", "{}"),
            ("class_names", "[1, 2]"),
            ("class_names", "cat,dog"),
        ] {
            let map = BTreeMap::from([(k.to_string(), v.to_string())]);
            let e = CheckpointMeta::from_metadata(&map).unwrap_err();
            assert_eq!(e.key, k);
        }
    }

    #[test]
    fn lookup_prefers_the_recorded_normalizer() {
        let recorded = CheckpointMeta {
            normalizer: Some(normalizer(Normalize::None)),
            ..CheckpointMeta::default()
        };
        let n = input_normalizer(&recorded, &[1, 2, 2], || {
            panic!("a recorded normaliser needs no fit")
        })
        .unwrap();
        assert_eq!(n.source, NormalizerSource::Recorded);
        assert_eq!(n.normalizer.mode(), Normalize::None);
        assert!(n.warning().is_none());

        let fitted = input_normalizer(&CheckpointMeta::default(), &[1, 2, 2], || {
            Ok(normalizer(Normalize::MeanStd))
        })
        .unwrap();
        assert_eq!(fitted.source, NormalizerSource::Fitted);
        assert!(fitted.warning().unwrap().contains("mean_std"));

        assert!(input_normalizer(&recorded, &[3, 2, 2], || unreachable!()).is_err());
    }
}
