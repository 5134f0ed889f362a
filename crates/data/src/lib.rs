//! # wrnc-data
//!
//! Datasets, normalisation, augmentation and batching for the wrnc model
//! compiler. This crate deals only in plain `Vec<u8>` / `Vec<f32>` buffers and
//! has no dependency on any tensor library; of the wrnc crates it uses only
//! `wrnc-recipe`, whose words ([`DatasetKind`], [`wrnc_recipe::Normalize`],
//! [`wrnc_recipe::Augment`]) it takes as its settings.
//!
//! ## Overview
//!
//! * [`Dataset`]: `u8` images in `N x C x H x W` (CHW per image) order, `u32`
//!   labels, shape and class names. [`DatasetKind`] names
//!   the supported datasets (`cifar10`, `cifar100`, `digits`, `fashion_mnist`, `mnist`)
//!   and their facts.
//! * Loading ([`load`]):
//!   * CIFAR-10 / CIFAR-100 official binary files ([`cifar::load_cifar`],
//!     [`cifar::read_cifar_file`]). Files may hold any positive whole number
//!     of records; sizes are checked from metadata before reading.
//!   * Fashion-MNIST / MNIST IDX files, plain or gzipped ([`idx::load_idx`]);
//!     headers are checked against the file sizes before anything is allocated.
//!   * the embedded UCI optical digits ([`digits::load_digits`]): 1797 8x8
//!     greyscale images, pixels rescaled from `0..=16` to `round(v*255/16)`;
//!     the first 1437 images are the training set, the last 360 the test set.
//! * Validation split ([`make_splits`]): `val_size` training records chosen by
//!   a `ChaCha8Rng` seeded with `split_seed` form the validation set.
//! * Normalisation ([`Normalizer`], mode [`wrnc_recipe::Normalize`]): fitted on the training
//!   split only; it serialises itself (serde) for storage in model metadata.
//! * Augmentation ([`augment`], settings [`wrnc_recipe::Augment`]): random
//!   padded crop with independent uniform x/y offsets in `0..=2p` (reflect or
//!   zero padding) and horizontal flip with probability 0.5, then an automatic augmentation
//!   policy on the `u8` pixels ([`policy`]: AutoAugment's CIFAR-10 policy, RandAugment,
//!   TrivialAugmentWide, with torchvision's ops, [`imageops`]); cutout and random erasing
//!   after normalisation ([`mask`]).
//! * Batching ([`epoch_batches`], [`eval_batches`]): an iterator of
//!   [`Batch`]es prepared on a background thread with a bounded prefetch
//!   queue; the order and augmentation of epoch `e` depend only on
//!   `(seed, e)` ([`epoch_rng`]), so resumed runs reproduce the same batches.
//! * Image folders ([`folder`], `data.dataset: folder`): `root/train/<class>/*` (and
//!   optional `val/`, `test/`) PNG and JPEG files decoded in parallel, converted and resized
//!   to the model's input ([`pixels`]) once, into a decode cache ([`cache`]).
//! * Downloading ([`fetch`]): [`fetch::fetch`] downloads and verifies the
//!   official CIFAR archives; [`fetch::install_archive`] installs a local
//!   archive atomically after checking its MD5. The archives unpack to
//!   [`DatasetKind::archive_dir`] (`cifar-10-batches-bin`, `cifar-100-binary`).
//! * Inspecting an image folder ([`inspect::inspect`], `wrnc data inspect`): images per
//!   class and split, sizes and modes, skipped, corrupt and cross-split duplicate files.
//! * Test utility (only with the `testing` feature, which dev-dependencies
//!   enable): `testutil::write_cifar_like` writes small synthetic, learnable
//!   datasets in the CIFAR layouts.
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use wrnc_data::{epoch_batches, load, make_splits, BatchConfig, Normalizer};
//! use wrnc_recipe::{Augment, DatasetKind, Normalize, PadMode};
//!
//! # fn main() -> Result<(), wrnc_data::DataError> {
//! let data = load(DatasetKind::Digits, std::path::Path::new("unused"))?;
//! let splits = make_splits(data, 100, 42)?;
//! let norm = Arc::new(Normalizer::fit(Normalize::MeanStd, &splits.train)?);
//! let train = Arc::new(splits.train);
//! let cfg = BatchConfig::train(64, Augment::standard(PadMode::Zero));
//! for batch in epoch_batches(train, norm, &cfg, 0, 1234)? {
//!     assert_eq!(batch.images.len(), batch.len * 64);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! All errors are [`DataError`] values; nothing panics on bad input files.

pub mod augment;
pub mod batch;
pub mod cache;
pub mod cifar;
pub mod dataset;
pub mod digits;
pub mod error;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod imageops;
pub mod inspect;
pub mod mask;
pub mod mix;
pub mod normalize;
pub mod pixels;
pub mod policy;
pub mod preview;
pub mod split;
#[cfg(any(test, feature = "testing"))]
pub mod testutil;

use std::path::Path;

use wrnc_recipe::{DataConfig, DatasetKind};

pub use augment::AugmentParams;
pub use batch::{
    epoch_batches, epoch_rng, eval_batches, num_batches, Batch, BatchConfig, BatchIter,
};
pub use dataset::{Dataset, TrainTest};
pub use error::{DataError, MissingFiles, Result};
pub use folder::{load_folder, DecodeProgress, FolderOptions, FolderReport};
pub use mix::Mixed;
pub use normalize::Normalizer;
pub use split::{make_splits, split_indices, Splits};

/// Loads the official train and test sets of `kind`.
///
/// For CIFAR, `root` is the folder holding the `.bin` files (e.g.
/// `data/cifar-10-batches-bin`); for Fashion-MNIST and MNIST the folder holding the four
/// IDX files; for the embedded digits it is ignored. A folder dataset needs the model's
/// input shape: see [`load_config_data`].
pub fn load(kind: DatasetKind, root: &Path) -> Result<TrainTest> {
    match kind {
        DatasetKind::Digits => digits::load_digits(),
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => cifar::load_cifar(kind, root),
        DatasetKind::FashionMnist | DatasetKind::Mnist => idx::load_idx(kind, root),
        DatasetKind::Folder => Err(DataError::invalid(
            "dataset kind",
            "a folder dataset is decoded to the model's input shape: use load_config_data",
        )),
    }
}

/// Convenience: [`load`] followed by [`make_splits`].
pub fn load_splits(
    kind: DatasetKind,
    root: &Path,
    val_size: usize,
    split_seed: u64,
) -> Result<Splits> {
    make_splits(load(kind, root)?, val_size, split_seed)
}

/// [`load_splits`] of the dataset a `data` section names, from its root folder
/// ([`DataConfig::root_dir`]) with its validation split (built-in datasets only; see
/// [`load_config_data`]).
pub fn load_config_splits(cfg: &DataConfig) -> Result<Splits> {
    load_splits(cfg.dataset, &cfg.root_dir(), cfg.val_size, cfg.split_seed)
}

/// The splits of the dataset a `data` section names, for a model taking `shape` images: a
/// built-in dataset through [`load_config_splits`], a folder through [`load_folder`]
/// (decoded to `shape`, `progress` called while decoding), with its report.
pub fn load_config_data(
    cfg: &DataConfig,
    shape: [usize; 3],
    progress: &mut dyn FnMut(DecodeProgress),
) -> Result<(Splits, Option<FolderReport>)> {
    if cfg.dataset.is_folder() {
        let (s, r) = load_folder(&FolderOptions::from_config(cfg, shape), progress)?;
        Ok((s, Some(r)))
    } else {
        Ok((load_config_splits(cfg)?, None))
    }
}
