//! The in-memory [`Dataset`] type.

use crate::error::{DataError, Result};

/// A labelled image dataset held in memory.
///
/// Images are `u8` pixels stored contiguously in CHW order per image, i.e. the
/// buffer has shape `N x C x H x W`. Labels are `u32` in `0..classes`.
/// The invariants (buffer sizes, label range, number of class names) are
/// checked by [`Dataset::new`] and hold for every value of this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    images: Vec<u8>,
    labels: Vec<u32>,
    channels: usize,
    height: usize,
    width: usize,
    class_names: Vec<String>,
}

impl Dataset {
    /// Creates a dataset of images shaped `shape` `[C, H, W]` after checking that
    /// `images.len() == labels.len() * C * H * W`, that every label is `< class_names.len()`,
    /// and that the shape and class list are non-empty.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u32>,
        shape: [usize; 3],
        class_names: Vec<String>,
    ) -> Result<Self> {
        let [channels, height, width] = shape;
        if channels == 0 || height == 0 || width == 0 {
            return Err(DataError::invalid(
                "dataset",
                format!("image shape {channels}x{height}x{width} has a zero dimension"),
            ));
        }
        if class_names.is_empty() {
            return Err(DataError::invalid("dataset", "no classes"));
        }
        let image_size = channels
            .checked_mul(height)
            .and_then(|v| v.checked_mul(width))
            .ok_or_else(|| DataError::invalid("dataset", "image shape overflows"))?;
        if labels.len().checked_mul(image_size) != Some(images.len()) {
            return Err(DataError::invalid(
                "dataset",
                format!(
                    "{} pixel bytes do not match {} labels of {channels}x{height}x{width} images",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= class_names.len())
        {
            return Err(DataError::invalid(
                "dataset",
                format!(
                    "label {l} of record {i} is >= {} classes",
                    class_names.len()
                ),
            ));
        }
        Ok(Dataset {
            images,
            labels,
            channels,
            height,
            width,
            class_names,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` when the dataset holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of channels `C`.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Image height `H`.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width `W`.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// Class names in label order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of pixel values per image, `C * H * W`.
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// All pixels, `N x C x H x W`.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// All labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The pixels of image `i` (CHW), or `None` if out of range.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let s = self.image_size();
        self.images.get(i * s..(i + 1) * s)
    }

    /// The label of image `i`, or `None` if out of range.
    pub fn label(&self, i: usize) -> Option<u32> {
        self.labels.get(i).copied()
    }

    /// Number of images per class (length = `classes()`).
    pub fn class_histogram(&self) -> Vec<usize> {
        let mut h = vec![0usize; self.classes()];
        for &l in &self.labels {
            h[l as usize] += 1;
        }
        h
    }

    /// A new dataset made of the images at `indices`, in that order.
    /// Fails if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let s = self.image_size();
        let mut images = Vec::with_capacity(indices.len() * s);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let img = self.image(i).ok_or_else(|| {
                DataError::invalid(
                    "subset",
                    format!("index {i} out of range 0..{}", self.len()),
                )
            })?;
            images.extend_from_slice(img);
            labels.push(self.labels[i]);
        }
        Ok(Dataset {
            images,
            labels,
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
        })
    }

    /// Consumes the dataset, returning `(images, labels)`.
    pub fn into_parts(self) -> (Vec<u8>, Vec<u32>) {
        (self.images, self.labels)
    }
}

/// The official train and test sets of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainTest {
    /// The full official training set.
    pub train: Dataset,
    /// The official test set.
    pub test: Dataset,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    #[test]
    fn new_validates() {
        assert!(Dataset::new(vec![0; 8], vec![0, 1], [1, 2, 2], names(2)).is_ok());
        assert!(Dataset::new(vec![0; 7], vec![0, 1], [1, 2, 2], names(2)).is_err());
        assert!(Dataset::new(vec![0; 8], vec![0, 2], [1, 2, 2], names(2)).is_err());
        assert!(Dataset::new(vec![], vec![], [0, 2, 2], names(2)).is_err());
        assert!(Dataset::new(vec![], vec![], [1, 2, 2], vec![]).is_err());
    }

    #[test]
    fn subset_and_accessors() {
        let ds = Dataset::new((0..12).collect(), vec![0, 1, 2], [1, 2, 2], names(3)).unwrap();
        assert_eq!(ds.image(1), Some(&[4u8, 5, 6, 7][..]));
        assert_eq!(ds.image(3), None);
        let sub = ds.subset(&[2, 0]).unwrap();
        assert_eq!(sub.images(), &[8, 9, 10, 11, 0, 1, 2, 3]);
        assert_eq!(sub.labels(), &[2, 0]);
        assert_eq!(sub.class_histogram(), vec![1, 0, 1]);
        assert!(ds.subset(&[3]).is_err());
    }
}
