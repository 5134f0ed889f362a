//! [`DatasetKind`]: the datasets wrnc knows, with the facts every crate needs about them
//! (image shape, classes and their names, official split sizes, where their files live).

use crate::error::UnknownName;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

// The folder names are spelled once, in these macros, so that the constants below and the
// default roots (`data/<folder>`) are literals built from the same words.
macro_rules! data_dir {
    () => {
        "data"
    };
}
macro_rules! cifar10_dir {
    () => {
        "cifar-10-batches-bin"
    };
}
macro_rules! cifar100_dir {
    () => {
        "cifar-100-binary"
    };
}
macro_rules! fashion_mnist_dir {
    () => {
        "fashion-mnist"
    };
}
macro_rules! mnist_dir {
    () => {
        "mnist"
    };
}

/// Folder under which `wrnc data fetch` unpacks datasets by default.
pub const DATA_DIR: &str = data_dir!();
/// Folder the CIFAR-10 binary archive unpacks to.
pub const CIFAR10_DIR: &str = cifar10_dir!();
/// Folder the CIFAR-100 binary archive unpacks to.
pub const CIFAR100_DIR: &str = cifar100_dir!();

/// Folder `wrnc data fetch fashion_mnist` writes the four IDX files to.
pub const FASHION_MNIST_DIR: &str = fashion_mnist_dir!();
/// Folder `wrnc data fetch mnist` writes the four IDX files to.
pub const MNIST_DIR: &str = mnist_dir!();
/// Where Debian's `dataset-fashion-mnist` package installs the four gzipped IDX files
/// (`dpkg -L dataset-fashion-mnist`); the default root of `fashion_mnist` when it exists.
pub const FASHION_MNIST_SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

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

/// Fashion-MNIST class names, in label order (the dataset's README).
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// MNIST class names, in label order: the digits.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Which dataset to train on (`data.dataset` in a spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// CIFAR-10, official binary layout: 3x32x32, 10 classes.
    #[default]
    Cifar10,
    /// CIFAR-100, official binary layout (fine labels): 3x32x32, 100 classes.
    Cifar100,
    /// The embedded UCI optical digits set: 1x8x8, 10 classes.
    Digits,
    /// Fashion-MNIST, four IDX files (gzipped or not): 1x28x28, 10 classes.
    #[serde(rename = "fashion_mnist")]
    FashionMnist,
    /// MNIST handwritten digits, four IDX files (gzipped or not): 1x28x28, 10 classes.
    Mnist,
    /// The user's own images, one sub-folder per class under `data.root`
    /// (`train/<class>/*`, optionally `val/<class>/*` and `test/<class>/*`): shape from
    /// `model.input`, classes from the folder names.
    Folder,
}

impl DatasetKind {
    /// All kinds, in a fixed order.
    pub const ALL: [DatasetKind; 6] = [
        DatasetKind::Cifar10,
        DatasetKind::Cifar100,
        DatasetKind::Digits,
        DatasetKind::FashionMnist,
        DatasetKind::Mnist,
        DatasetKind::Folder,
    ];

    /// The canonical lower-case name (`cifar10`, `cifar100`, `digits`, `fashion_mnist`,
    /// `mnist`, `folder`), as in a spec.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Digits => "digits",
            DatasetKind::FashionMnist => "fashion_mnist",
            DatasetKind::Mnist => "mnist",
            DatasetKind::Folder => "folder",
        }
    }

    /// Whether the images are the user's own folder ([`DatasetKind::Folder`]), whose shape,
    /// classes and sizes are known only from the spec and the files.
    pub fn is_folder(self) -> bool {
        self == DatasetKind::Folder
    }

    /// Image shape `[C, H, W]` of the dataset (`None` for a folder: `model.input` says it).
    pub fn input_shape(self) -> Option<[usize; 3]> {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => Some([3, 32, 32]),
            DatasetKind::Digits => Some([1, 8, 8]),
            DatasetKind::FashionMnist | DatasetKind::Mnist => Some([1, 28, 28]),
            DatasetKind::Folder => None,
        }
    }

    /// Number of classes (`None` for a folder: its class sub-folders say it).
    pub fn classes(self) -> Option<usize> {
        self.class_names().map(<[&str]>::len)
    }

    /// Class names in label order (`None` for a folder: the sorted class sub-folder names).
    pub fn class_names(self) -> Option<&'static [&'static str]> {
        match self {
            DatasetKind::Cifar10 => Some(&CIFAR10_CLASSES),
            DatasetKind::Cifar100 => Some(&CIFAR100_CLASSES),
            DatasetKind::Digits => Some(&DIGITS_CLASSES),
            DatasetKind::FashionMnist => Some(&FASHION_MNIST_CLASSES),
            DatasetKind::Mnist => Some(&MNIST_CLASSES),
            DatasetKind::Folder => None,
        }
    }

    /// Images in the official training set (before a validation split); `None` for a
    /// folder.
    pub const fn train_size(self) -> Option<usize> {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => Some(50_000),
            DatasetKind::Digits => Some(1437),
            DatasetKind::FashionMnist | DatasetKind::Mnist => Some(60_000),
            DatasetKind::Folder => None,
        }
    }

    /// Images in the official test set; `None` for a folder.
    pub const fn test_size(self) -> Option<usize> {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => Some(10_000),
            DatasetKind::Digits => Some(360),
            DatasetKind::FashionMnist | DatasetKind::Mnist => Some(10_000),
            DatasetKind::Folder => None,
        }
    }

    /// Folder name the official archive unpacks to (for the IDX sets: the folder
    /// `wrnc data fetch` writes the four files to), or `None` for the embedded digits.
    pub fn archive_dir(self) -> Option<&'static str> {
        match self {
            DatasetKind::Cifar10 => Some(CIFAR10_DIR),
            DatasetKind::Cifar100 => Some(CIFAR100_DIR),
            DatasetKind::Digits | DatasetKind::Folder => None,
            DatasetKind::FashionMnist => Some(FASHION_MNIST_DIR),
            DatasetKind::Mnist => Some(MNIST_DIR),
        }
    }

    /// `data/<archive folder>`, where `wrnc data fetch` puts the dataset by default; None for
    /// embedded data and for a folder (whose `data.root` the spec must give).
    pub fn fetch_root(self) -> Option<&'static str> {
        match self {
            DatasetKind::Cifar10 => Some(concat!(data_dir!(), "/", cifar10_dir!())),
            DatasetKind::Cifar100 => Some(concat!(data_dir!(), "/", cifar100_dir!())),
            DatasetKind::Digits | DatasetKind::Folder => None,
            DatasetKind::FashionMnist => Some(concat!(data_dir!(), "/", fashion_mnist_dir!())),
            DatasetKind::Mnist => Some(concat!(data_dir!(), "/", mnist_dir!())),
        }
    }

    /// The folder a system package installs the dataset into, when one exists
    /// ([`FASHION_MNIST_SYSTEM_DIR`] for Fashion-MNIST), whether or not it is installed here.
    pub fn system_root(self) -> Option<&'static str> {
        match self {
            DatasetKind::FashionMnist => Some(FASHION_MNIST_SYSTEM_DIR),
            DatasetKind::Cifar10
            | DatasetKind::Cifar100
            | DatasetKind::Digits
            | DatasetKind::Mnist
            | DatasetKind::Folder => None,
        }
    }

    /// The system package that installs the dataset into [`DatasetKind::system_root`]
    /// (Debian's `dataset-fashion-mnist`), when there is one.
    pub fn system_package(self) -> Option<&'static str> {
        match self {
            DatasetKind::FashionMnist => Some("dataset-fashion-mnist"),
            DatasetKind::Cifar10
            | DatasetKind::Cifar100
            | DatasetKind::Digits
            | DatasetKind::Mnist
            | DatasetKind::Folder => None,
        }
    }

    /// Default data folder: the system package's folder ([`DatasetKind::system_root`]) when
    /// it exists on this machine, else [`DatasetKind::fetch_root`] (`data/<archive folder>`);
    /// None for embedded data and for a folder.
    pub fn default_root(self) -> Option<&'static str> {
        match self.system_root() {
            Some(sys) if std::path::Path::new(sys).is_dir() => Some(sys),
            _ => self.fetch_root(),
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = UnknownName;

    /// Parses the names of [`DatasetKind::name`] (case-insensitive; `-` and `_` are
    /// ignored, so `CIFAR-10` and `fashion-mnist` work too).
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        let norm = |s: &str| -> String {
            s.chars()
                .filter(|c| *c != '-' && *c != '_')
                .flat_map(char::to_lowercase)
                .collect()
        };
        let want = norm(s);
        DatasetKind::ALL
            .into_iter()
            .find(|k| norm(k.name()) == want)
            .ok_or_else(|| UnknownName {
                what: "dataset",
                name: s.to_string(),
                expected: "cifar10, cifar100, digits, fashion_mnist, mnist, folder",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_lists() {
        assert_eq!(CIFAR100_CLASSES.len(), 100);
        // The official fine label names are sorted alphabetically.
        let mut sorted = CIFAR100_CLASSES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, CIFAR100_CLASSES.to_vec());
        assert_eq!(CIFAR100_CLASSES[39], "keyboard");
        assert_eq!(CIFAR100_CLASSES[99], "worm");
        assert_eq!(DatasetKind::Cifar10.class_names().unwrap()[1], "automobile");
        assert_eq!(DatasetKind::Digits.classes(), Some(10));
        assert_eq!(DatasetKind::Folder.classes(), None);
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
        assert_eq!(
            "Fashion-MNIST".parse::<DatasetKind>().ok(),
            Some(DatasetKind::FashionMnist)
        );
        assert_eq!(
            "MNIST".parse::<DatasetKind>().ok(),
            Some(DatasetKind::Mnist)
        );
        let err = "svhn".parse::<DatasetKind>().unwrap_err().to_string();
        assert!(
            err.contains("svhn") && err.contains("fashion_mnist"),
            "{err}"
        );
        for k in DatasetKind::ALL {
            assert_eq!(k.name().parse::<DatasetKind>().ok(), Some(k));
        }
    }

    #[test]
    fn serde_names() {
        for k in DatasetKind::ALL {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.name())
            );
        }
    }

    #[test]
    fn facts() {
        assert_eq!(DatasetKind::Cifar100.classes(), Some(100));
        assert_eq!(DatasetKind::Cifar100.class_names().unwrap()[99], "worm");
        assert_eq!(DatasetKind::Digits.input_shape(), Some([1, 8, 8]));
        assert_eq!(
            DatasetKind::Digits.train_size().unwrap() + DatasetKind::Digits.test_size().unwrap(),
            1797
        );
        assert_eq!(
            "Folder".parse::<DatasetKind>().ok(),
            Some(DatasetKind::Folder)
        );
        assert!(DatasetKind::Folder.is_folder() && DatasetKind::Folder.default_root().is_none());
        assert_eq!(
            DatasetKind::Cifar10.default_root(),
            Some("data/cifar-10-batches-bin")
        );
        for k in DatasetKind::ALL {
            let joined = k.archive_dir().map(|d| format!("{DATA_DIR}/{d}"));
            assert_eq!(k.fetch_root().map(str::to_string), joined);
            let installed = k.system_root().filter(|s| std::path::Path::new(s).is_dir());
            assert_eq!(k.default_root(), installed.or(k.fetch_root()));
        }
        assert_eq!(DatasetKind::FashionMnist.input_shape(), Some([1, 28, 28]));
        assert_eq!(
            DatasetKind::FashionMnist.class_names().unwrap()[9],
            "Ankle boot"
        );
        assert_eq!(DatasetKind::Mnist.class_names().unwrap()[7], "7");
        assert_eq!(
            (
                DatasetKind::Mnist.train_size(),
                DatasetKind::Mnist.test_size()
            ),
            (Some(60_000), Some(10_000))
        );
        assert_eq!(
            DatasetKind::FashionMnist.fetch_root(),
            Some("data/fashion-mnist")
        );
        assert_eq!(DatasetKind::Mnist.default_root(), Some("data/mnist"));
    }
}
