//! Test utility: synthetic datasets in the official CIFAR binary layouts.
//!
//! Intended for tests in this and other crates; the data is random but
//! learnable (class-dependent), and deterministic for a given seed.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use wrnc_recipe::DatasetKind;

use crate::cifar::{expected_files, CIFAR_IMAGE_BYTES};
use crate::error::{DataError, Result};

/// The noise-free 3x32x32 prototype of class `class`: a class-specific
/// background colour plus a class-specific 8x8 square of the complementary
/// colour (the square's cell in a 4x4 grid is `class % 16`).
pub fn class_prototype(class: usize) -> Vec<u8> {
    const MULT: [usize; 3] = [71, 113, 29];
    let mut img = vec![0u8; CIFAR_IMAGE_BYTES];
    let cell = class % 16;
    let (cy, cx) = (cell / 4, cell % 4);
    for (ch, plane) in img.chunks_exact_mut(1024).enumerate() {
        let base = 40 + (class * MULT[ch] + ch * 50) % 176;
        for y in 0..32 {
            for x in 0..32 {
                let in_square = y / 8 == cy && x / 8 == cx;
                plane[y * 32 + x] = if in_square {
                    (255 - base) as u8
                } else {
                    base as u8
                };
            }
        }
    }
    img
}

/// Writes a synthetic dataset of `kind` (CIFAR-10 or CIFAR-100) into `dir`
/// (created if needed) using the official file names and record layout:
///
/// * CIFAR-10: `data_batch_1.bin`..`data_batch_5.bin` with
///   `n_train_records_per_file` records each, and `test_batch.bin` with `n_test`.
/// * CIFAR-100: `train.bin` with `n_train_records_per_file` records and
///   `test.bin` with `n_test` (coarse label = fine label / 5).
///
/// Labels cycle through all classes (balanced, then shuffled within each
/// file); each image is [`class_prototype`] plus uniform noise in `-24..=24`.
/// Every file needs at least one record, so both counts must be > 0.
/// Returns the paths written. Deterministic for a given `seed`.
pub fn write_cifar_like(
    dir: &Path,
    kind: DatasetKind,
    n_train_records_per_file: usize,
    n_test: usize,
    seed: u64,
) -> Result<Vec<PathBuf>> {
    let record_bytes = crate::cifar::record_bytes(kind).ok_or_else(|| {
        DataError::invalid("write_cifar_like", format!("{kind} is not a CIFAR dataset"))
    })?;
    if n_train_records_per_file == 0 || n_test == 0 {
        return Err(DataError::invalid(
            "write_cifar_like",
            "record counts must be > 0 (empty files are invalid)",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| DataError::io("creating", dir, e))?;
    let classes = kind.classes().unwrap_or(1);
    let protos: Vec<Vec<u8>> = (0..classes).map(class_prototype).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (train, test) = expected_files(kind);
    let files = train
        .iter()
        .map(|f| (*f, n_train_records_per_file))
        .chain(test.iter().map(|f| (*f, n_test)));
    let mut written = Vec::new();
    let mut offset = 0usize;
    for (name, n) in files {
        let mut labels: Vec<usize> = (0..n).map(|i| (i + offset) % classes).collect();
        offset += n;
        labels.shuffle(&mut rng);
        let mut bytes = Vec::with_capacity(n * record_bytes);
        for &label in &labels {
            if kind == DatasetKind::Cifar100 {
                bytes.push((label / 5) as u8);
            }
            bytes.push(label as u8);
            bytes.extend(protos[label].iter().map(|&p| {
                let noisy = i32::from(p) + rng.random_range(-24..=24);
                noisy.clamp(0, 255) as u8
            }));
        }
        let path = dir.join(name);
        std::fs::write(&path, &bytes).map_err(|e| DataError::io("writing", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cifar::load_cifar;

    #[test]
    fn cifar10_like_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_cifar_like(dir.path(), DatasetKind::Cifar10, 4, 6, 3).unwrap();
        assert_eq!(files.len(), 6);
        assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), 4 * 3073);
        let tt = load_cifar(DatasetKind::Cifar10, dir.path()).unwrap();
        assert_eq!((tt.train.len(), tt.test.len()), (20, 6));
        // 20 balanced training labels over 10 classes.
        assert_eq!(tt.train.class_histogram(), vec![2; 10]);
        // Images stay within the noise band of their class prototype.
        for i in 0..tt.train.len() {
            let img = tt.train.image(i).unwrap();
            let proto = class_prototype(tt.train.labels()[i] as usize);
            assert!(img.iter().zip(&proto).all(|(&a, &b)| a.abs_diff(b) <= 24));
        }
        // Deterministic.
        let dir2 = tempfile::tempdir().unwrap();
        write_cifar_like(dir2.path(), DatasetKind::Cifar10, 4, 6, 3).unwrap();
        assert_eq!(load_cifar(DatasetKind::Cifar10, dir2.path()).unwrap(), tt);
    }

    #[test]
    fn cifar100_like_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar_like(dir.path(), DatasetKind::Cifar100, 200, 100, 0).unwrap();
        let tt = load_cifar(DatasetKind::Cifar100, dir.path()).unwrap();
        assert_eq!(tt.train.class_histogram(), vec![2; 100]);
        let raw = std::fs::read(dir.path().join("train.bin")).unwrap();
        assert_eq!(raw[0], raw[1] / 5, "coarse label");
        assert!(write_cifar_like(dir.path(), DatasetKind::Digits, 1, 1, 0).is_err());
        assert!(write_cifar_like(dir.path(), DatasetKind::Cifar10, 0, 1, 0).is_err());
        // Prototypes of different classes differ.
        assert_ne!(class_prototype(0), class_prototype(1));
        assert_ne!(class_prototype(3), class_prototype(19));
    }
}
