//! Carving a validation split out of the training set.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, Result};

/// Train / validation / test splits ready for training.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits {
    /// Training records (the official training set minus the validation records).
    pub train: Dataset,
    /// Validation records, `None` when `val_size == 0`.
    pub val: Option<Dataset>,
    /// The official test set.
    pub test: Dataset,
}

/// Indices `(train, val)` of a seeded validation split of `n` records.
///
/// A [`ChaCha8Rng`] seeded with `split_seed` shuffles `0..n`; the first
/// `val_size` shuffled indices form the validation set. Both index lists are
/// returned in ascending (file) order. `val_size >= n` is an error
/// (`val_size == 0` gives an empty validation list).
pub fn split_indices(
    n: usize,
    val_size: usize,
    split_seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if val_size >= n && val_size > 0 {
        return Err(DataError::ValTooLarge {
            val_size,
            train_size: n,
        });
    }
    if val_size == 0 {
        return Ok(((0..n).collect(), Vec::new()));
    }
    let mut perm: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(split_seed);
    perm.shuffle(&mut rng);
    let mut val = perm[..val_size].to_vec();
    let mut train = perm[val_size..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Ok((train, val))
}

/// Splits `data.train` into train and validation parts (see [`split_indices`])
/// and keeps `data.test` as the test set.
pub fn make_splits(data: TrainTest, val_size: usize, split_seed: u64) -> Result<Splits> {
    if val_size == 0 {
        return Ok(Splits {
            train: data.train,
            val: None,
            test: data.test,
        });
    }
    let (train_idx, val_idx) = split_indices(data.train.len(), val_size, split_seed)?;
    Ok(Splits {
        train: data.train.subset(&train_idx)?,
        val: Some(data.train.subset(&val_idx)?),
        test: data.test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(n: usize) -> Dataset {
        // Image i is a single pixel of value i, label i % 2.
        Dataset::new(
            (0..n as u8).collect(),
            (0..n as u32).map(|i| i % 2).collect(),
            [1, 1, 1],
            vec!["a".into(), "b".into()],
        )
        .unwrap()
    }

    /// 10 training and 3 test images of [`tiny`].
    fn tiny_data() -> TrainTest {
        TrainTest {
            train: tiny(10),
            test: tiny(3),
        }
    }

    #[test]
    fn disjoint_cover_and_deterministic() {
        let (t, v) = split_indices(100, 30, 7).unwrap();
        assert_eq!((t.len(), v.len()), (70, 30));
        let mut all: Vec<usize> = t.iter().chain(v.iter()).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(split_indices(100, 30, 7).unwrap(), (t.clone(), v.clone()));
        let (_, v2) = split_indices(100, 30, 8).unwrap();
        assert_ne!(v, v2, "different seeds should give different splits");
        // Not simply the first or last records.
        assert_ne!(v, (0..30).collect::<Vec<_>>());
        assert_ne!(v, (70..100).collect::<Vec<_>>());
    }

    #[test]
    fn make_splits_subsets() {
        let data = tiny_data();
        let s = make_splits(data.clone(), 4, 1).unwrap();
        let val = s.val.unwrap();
        assert_eq!((s.train.len(), val.len(), s.test.len()), (6, 4, 3));
        // Pixel value == original index, so the union of pixels is 0..10.
        let mut px: Vec<u8> = s
            .train
            .images()
            .iter()
            .chain(val.images())
            .copied()
            .collect();
        px.sort_unstable();
        assert_eq!(px, (0..10).collect::<Vec<u8>>());
        for (p, l) in val.images().iter().zip(val.labels()) {
            assert_eq!(u32::from(*p) % 2, *l);
        }
        let none = make_splits(data.clone(), 0, 1).unwrap();
        assert!(none.val.is_none());
        assert_eq!(none.train, data.train);
    }

    #[test]
    fn too_large() {
        let data = tiny_data();
        let e = make_splits(data.clone(), 10, 1).unwrap_err();
        assert!(
            e.to_string().contains("val_size 10") && e.to_string().contains("10"),
            "{e}"
        );
        assert!(make_splits(data, 11, 1).is_err());
    }
}
