//! The embedded UCI optical digits dataset (1797 greyscale 8x8 images, 10 classes).
//!
//! Source: UCI ML Optical Recognition of Handwritten Digits (E. Alpaydin,
//! C. Kaynak), as shipped by scikit-learn (`load_digits`); licence CC BY 4.0.
//! See `assets/README.md` for the binary layout.
//!
//! Original pixel values `v` in `0..=16` are rescaled to `round(v * 255 / 16)`.
//! The split is fixed: the first [`DIGITS_TRAIN`] images are the training set,
//! the last [`DIGITS_TEST`] the test set.

use wrnc_recipe::DatasetKind;

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, Result};

/// The embedded binary: 1797 records of 64 pixel bytes (`0..=16`) + 1 label byte.
const DIGITS_BIN: &[u8] = include_bytes!("../assets/digits.bin");

/// Total number of digit images.
pub const DIGITS_COUNT: usize = 1797;
/// Number of images in the fixed test split (the last ones).
pub const DIGITS_TEST: usize = match DatasetKind::Digits.test_size() {
    Some(n) => n,
    None => 0,
};
/// Number of images in the fixed training split (the first ones).
pub const DIGITS_TRAIN: usize = match DatasetKind::Digits.train_size() {
    Some(n) => n,
    None => 0,
};
const _: () = assert!(DIGITS_TRAIN + DIGITS_TEST == DIGITS_COUNT);
/// Pixels per digit image (8 x 8).
const PIXELS: usize = 64;

/// Maps an original digit value in `0..=16` to `round(v * 255 / 16)`
/// (values above 16 saturate to 255).
pub fn scale_digit_value(v: u8) -> u8 {
    let v = u32::from(v.min(16));
    // Integer form of round-half-up; exact because the divisor is 16.
    ((v * 255 + 8) / 16) as u8
}

/// Decodes the embedded records into one dataset of all 1797 images.
pub fn load_digits_all() -> Result<Dataset> {
    let rec = PIXELS + 1;
    if DIGITS_BIN.len() != DIGITS_COUNT * rec {
        return Err(DataError::invalid(
            "embedded digits",
            format!(
                "{} bytes, expected {}",
                DIGITS_BIN.len(),
                DIGITS_COUNT * rec
            ),
        ));
    }
    let mut images = Vec::with_capacity(DIGITS_COUNT * PIXELS);
    let mut labels = Vec::with_capacity(DIGITS_COUNT);
    for r in DIGITS_BIN.chunks_exact(rec) {
        images.extend(r[..PIXELS].iter().map(|&v| scale_digit_value(v)));
        labels.push(u32::from(r[PIXELS]));
    }
    let names = wrnc_recipe::DIGITS_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    Dataset::new(images, labels, [1, 8, 8], names)
}

/// The fixed train (first 1437) / test (last 360) split of the digits set.
pub fn load_digits() -> Result<TrainTest> {
    let all = load_digits_all()?;
    let train_idx: Vec<usize> = (0..DIGITS_TRAIN).collect();
    let test_idx: Vec<usize> = (DIGITS_TRAIN..DIGITS_COUNT).collect();
    Ok(TrainTest {
        train: all.subset(&train_idx)?,
        test: all.subset(&test_idx)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling() {
        assert_eq!(scale_digit_value(0), 0);
        assert_eq!(scale_digit_value(16), 255);
        assert_eq!(scale_digit_value(5), 80); // 79.6875
        assert_eq!(scale_digit_value(8), 128); // 127.5 rounds up
        assert_eq!(scale_digit_value(13), 207); // 207.1875
    }

    #[test]
    fn embedded_digits() {
        let all = load_digits_all().unwrap();
        assert_eq!(all.len(), 1797);
        assert_eq!((all.channels(), all.height(), all.width()), (1, 8, 8));
        // Class counts of scikit-learn's load_digits.
        let hist = all.class_histogram();
        assert_eq!(hist, vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        assert_eq!(hist.iter().sum::<usize>(), 1797);
        // First image row 0 is 0,0,5,13,9,1,0,0 in 0..16 units.
        let row0: Vec<u8> = [0u8, 0, 5, 13, 9, 1, 0, 0]
            .iter()
            .map(|&v| scale_digit_value(v))
            .collect();
        assert_eq!(&all.image(0).unwrap()[..8], &row0[..]);
        assert_eq!(&all.image(0).unwrap()[..8], &[0, 0, 80, 207, 143, 16, 0, 0]);
        // Second image row 0 is 0,0,0,12,13,5,0,0 -> 191.25, 207.19, 79.69.
        assert_eq!(&all.image(1).unwrap()[..8], &[0, 0, 0, 191, 207, 80, 0, 0]);
        assert_eq!(all.labels()[..3], [0, 1, 2]);
    }

    #[test]
    fn fixed_split() {
        let tt = load_digits().unwrap();
        assert_eq!(tt.train.len(), 1437);
        assert_eq!(tt.test.len(), 360);
        let all = load_digits_all().unwrap();
        assert_eq!(tt.test.image(0), all.image(1437));
        let h: usize = tt.train.class_histogram().iter().sum::<usize>()
            + tt.test.class_histogram().iter().sum::<usize>();
        assert_eq!(h, 1797);
    }
}
