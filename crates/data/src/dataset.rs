//! The in-memory [`Dataset`] type and the [`DatasetKind`] enumeration.

use std::fmt;
use std::str::FromStr;

use crate::error::{DataError, Result};

/// CIFAR-10 class names, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100 fine class names, in label order (the `fine_label_names` of the
/// official `meta` file).
pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// Digits class names, in label order.
pub const DIGITS_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// The datasets this crate knows how to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// CIFAR-10 (binary version), 3x32x32, 10 classes.
    Cifar10,
    /// CIFAR-100 (binary version, fine labels), 3x32x32, 100 classes.
    Cifar100,
    /// UCI optical digits embedded in this crate, 1x8x8, 10 classes.
    Digits,
}

impl DatasetKind {
    /// All kinds, in a fixed order.
    pub const ALL: [DatasetKind; 3] = [
        DatasetKind::Cifar10,
        DatasetKind::Cifar100,
        DatasetKind::Digits,
    ];

    /// The canonical lower-case name (`cifar10`, `cifar100`, `digits`).
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Digits => "digits",
        }
    }

    /// Number of classes.
    pub fn classes(self) -> usize {
        self.class_names().len()
    }

    /// Class names in label order.
    pub fn class_names(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Cifar10 => &CIFAR10_CLASSES,
            DatasetKind::Cifar100 => &CIFAR100_CLASSES,
            DatasetKind::Digits => &DIGITS_CLASSES,
        }
    }

    /// Image shape `(channels, height, width)`.
    pub fn shape(self) -> (usize, usize, usize) {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => (3, 32, 32),
            DatasetKind::Digits => (1, 8, 8),
        }
    }

    /// Folder name the official archive unpacks to, or `None` for the
    /// embedded digits dataset.
    pub fn archive_dir_name(self) -> Option<&'static str> {
        match self {
            DatasetKind::Cifar10 => Some(crate::fetch::CIFAR10_DIR),
            DatasetKind::Cifar100 => Some(crate::fetch::CIFAR100_DIR),
            DatasetKind::Digits => None,
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = DataError;

    /// Parses `cifar10`, `cifar100` or `digits` (case-insensitive; `-` and `_`
    /// are ignored, so `CIFAR-10` works too).
    fn from_str(s: &str) -> Result<Self> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        match norm.as_str() {
            "cifar10" => Ok(DatasetKind::Cifar10),
            "cifar100" => Ok(DatasetKind::Cifar100),
            "digits" => Ok(DatasetKind::Digits),
            _ => Err(DataError::UnknownName {
                what: "dataset",
                name: s.to_string(),
                expected: "cifar10, cifar100, digits",
            }),
        }
    }
}

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
    /// Creates a dataset after checking that `images.len() == labels.len() * C * H * W`,
    /// that every label is `< class_names.len()`, and that the shape and class list are
    /// non-empty.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u32>,
        channels: usize,
        height: usize,
        width: usize,
        class_names: Vec<String>,
    ) -> Result<Self> {
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
    fn class_lists() {
        assert_eq!(CIFAR100_CLASSES.len(), 100);
        // The official fine label names are sorted alphabetically.
        let mut sorted = CIFAR100_CLASSES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, CIFAR100_CLASSES.to_vec());
        assert_eq!(CIFAR100_CLASSES[39], "keyboard");
        assert_eq!(CIFAR100_CLASSES[99], "worm");
        assert_eq!(DatasetKind::Cifar10.class_names()[1], "automobile");
        assert_eq!(DatasetKind::Digits.classes(), 10);
    }

    #[test]
    fn parse_kind() {
        assert_eq!(
            "CIFAR-10".parse::<DatasetKind>().ok(),
            Some(DatasetKind::Cifar10)
        );
        assert_eq!(
            "cifar100".parse::<DatasetKind>().ok(),
            Some(DatasetKind::Cifar100)
        );
        assert_eq!(
            "digits".parse::<DatasetKind>().ok(),
            Some(DatasetKind::Digits)
        );
        let err = "mnist".parse::<DatasetKind>().unwrap_err().to_string();
        assert!(err.contains("mnist") && err.contains("cifar10"), "{err}");
        for k in DatasetKind::ALL {
            assert_eq!(k.name().parse::<DatasetKind>().ok(), Some(k));
        }
    }

    #[test]
    fn new_validates() {
        assert!(Dataset::new(vec![0; 8], vec![0, 1], 1, 2, 2, names(2)).is_ok());
        assert!(Dataset::new(vec![0; 7], vec![0, 1], 1, 2, 2, names(2)).is_err());
        assert!(Dataset::new(vec![0; 8], vec![0, 2], 1, 2, 2, names(2)).is_err());
        assert!(Dataset::new(vec![], vec![], 0, 2, 2, names(2)).is_err());
        assert!(Dataset::new(vec![], vec![], 1, 2, 2, vec![]).is_err());
    }

    #[test]
    fn subset_and_accessors() {
        let ds = Dataset::new((0..12).collect(), vec![0, 1, 2], 1, 2, 2, names(3)).unwrap();
        assert_eq!(ds.image(1), Some(&[4u8, 5, 6, 7][..]));
        assert_eq!(ds.image(3), None);
        let sub = ds.subset(&[2, 0]).unwrap();
        assert_eq!(sub.images(), &[8, 9, 10, 11, 0, 1, 2, 3]);
        assert_eq!(sub.labels(), &[2, 0]);
        assert_eq!(sub.class_histogram(), vec![1, 0, 1]);
        assert!(ds.subset(&[3]).is_err());
    }
}
