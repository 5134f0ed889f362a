//! Readers for the official CIFAR-10 / CIFAR-100 binary formats.
//!
//! * CIFAR-10: each record is 1 label byte followed by 3072 pixel bytes
//!   (1024 red, 1024 green, 1024 blue, each a row-major 32x32 plane).
//!   Training data is `data_batch_1.bin` .. `data_batch_5.bin`, test data
//!   `test_batch.bin`.
//! * CIFAR-100: each record is 1 coarse label byte, 1 fine label byte, then
//!   3072 pixel bytes. Training data is `train.bin`, test data `test.bin`.
//!   Only the fine label (100 classes) is used.
//!
//! Files of any positive whole number of records are accepted.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use wrnc_recipe::DatasetKind;

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, MissingFiles, Result};

/// Pixel bytes per CIFAR image (3 x 32 x 32).
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes per CIFAR-10 record (label + pixels).
pub const CIFAR10_RECORD_BYTES: usize = 1 + CIFAR_IMAGE_BYTES;
/// Bytes per CIFAR-100 record (coarse label + fine label + pixels).
pub const CIFAR100_RECORD_BYTES: usize = 2 + CIFAR_IMAGE_BYTES;
/// CIFAR-10 training file names, in reading order.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// CIFAR-10 test file name.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";
/// CIFAR-100 training file name.
pub const CIFAR100_TRAIN_FILE: &str = "train.bin";
/// CIFAR-100 test file name.
pub const CIFAR100_TEST_FILE: &str = "test.bin";
/// Largest dataset file accepted (1 GiB); the official files are ~30-150 MB.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Record layout of a CIFAR flavour.
#[derive(Debug, Clone, Copy)]
struct Layout {
    record_bytes: usize,
    /// Offset of the label byte used inside a record.
    label_offset: usize,
    /// Offset of the first pixel byte inside a record.
    pixel_offset: usize,
    classes: usize,
}

fn layout(kind: DatasetKind) -> Result<Layout> {
    match kind {
        DatasetKind::Cifar10 => Ok(Layout {
            record_bytes: CIFAR10_RECORD_BYTES,
            label_offset: 0,
            pixel_offset: 1,
            classes: 10,
        }),
        DatasetKind::Cifar100 => Ok(Layout {
            record_bytes: CIFAR100_RECORD_BYTES,
            label_offset: 1,
            pixel_offset: 2,
            classes: 100,
        }),
        DatasetKind::Digits
        | DatasetKind::FashionMnist
        | DatasetKind::Mnist
        | DatasetKind::Folder => Err(DataError::invalid(
            "dataset kind",
            format!("{kind} has no CIFAR binary files"),
        )),
    }
}

/// Record size in bytes of a CIFAR flavour (`None` for non-CIFAR kinds).
pub fn record_bytes(kind: DatasetKind) -> Option<usize> {
    layout(kind).ok().map(|l| l.record_bytes)
}

/// The training and test file names expected in a dataset directory.
/// Returns `(train_files, test_file)`; empty for the other kinds.
pub fn expected_files(kind: DatasetKind) -> (Vec<&'static str>, Option<&'static str>) {
    match kind {
        DatasetKind::Cifar10 => (CIFAR10_TRAIN_FILES.to_vec(), Some(CIFAR10_TEST_FILE)),
        DatasetKind::Cifar100 => (vec![CIFAR100_TRAIN_FILE], Some(CIFAR100_TEST_FILE)),
        DatasetKind::Digits
        | DatasetKind::FashionMnist
        | DatasetKind::Mnist
        | DatasetKind::Folder => (Vec::new(), None),
    }
}

/// Appends the records of one file to `images`/`labels`.
fn read_records(
    path: &Path,
    lay: Layout,
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<()> {
    let file = File::open(path).map_err(|e| DataError::io("opening", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| DataError::io("reading metadata of", path, e))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(DataError::FileTooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_FILE_BYTES,
        });
    }
    let rb = lay.record_bytes as u64;
    if size == 0 || size % rb != 0 {
        return Err(DataError::BadFileSize {
            path: path.to_path_buf(),
            size,
            record_size: lay.record_bytes,
        });
    }
    // Bounded by MAX_FILE_BYTES, so this fits in usize on every supported target.
    let n = usize::try_from(size / rb).map_err(|_| DataError::FileTooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_FILE_BYTES,
    })?;
    images.reserve(n * CIFAR_IMAGE_BYTES);
    labels.reserve(n);
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut rec = vec![0u8; lay.record_bytes];
    for i in 0..n {
        reader
            .read_exact(&mut rec)
            .map_err(|e| DataError::io("reading", path, e))?;
        let label = u32::from(rec[lay.label_offset]);
        if label as usize >= lay.classes {
            return Err(DataError::BadLabel {
                path: path.to_path_buf(),
                record: i,
                label,
                classes: lay.classes,
            });
        }
        labels.push(label);
        images.extend_from_slice(&rec[lay.pixel_offset..]);
    }
    Ok(())
}

fn class_names(kind: DatasetKind) -> Vec<String> {
    kind.class_names()
        .unwrap_or_default()
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Reads several CIFAR files of the same flavour into one dataset, in order.
pub fn read_cifar_files(paths: &[PathBuf], kind: DatasetKind) -> Result<Dataset> {
    let lay = layout(kind)?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for p in paths {
        read_records(p, lay, &mut images, &mut labels)?;
    }
    let shape = kind
        .input_shape()
        .ok_or_else(|| DataError::invalid("dataset", format!("{kind} has no fixed shape")))?;
    Dataset::new(images, labels, shape, class_names(kind))
}

/// Reads one CIFAR-10 or CIFAR-100 binary file.
///
/// Errors name the file: a missing or unreadable file, a size that is zero
/// or not a whole number of records, or a label `>= classes` (with the
/// record index).
pub fn read_cifar_file(path: &Path, kind: DatasetKind) -> Result<Dataset> {
    read_cifar_files(&[path.to_path_buf()], kind)
}

/// The directory to suggest to `wrnc data fetch --dir`: the parent of `dir`
/// if `dir` is named like the archive's folder, else `dir` itself.
pub(crate) fn fetch_dir_for(dir: &Path, archive_dir: &str) -> PathBuf {
    if dir.file_name().is_some_and(|n| n == archive_dir) {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    } else {
        dir.to_path_buf()
    }
}

/// Loads the official train and test sets of CIFAR-10 or CIFAR-100 from `dir`
/// (the folder holding the `.bin` files, e.g. `data/cifar-10-batches-bin`).
///
/// If any expected file is missing, the error lists the expected files and
/// suggests `wrnc data fetch <kind> --dir DIR`.
pub fn load_cifar(kind: DatasetKind, dir: &Path) -> Result<TrainTest> {
    layout(kind)?;
    let (train_files, test_file) = expected_files(kind);
    let mut expected: Vec<&str> = train_files.clone();
    expected.extend(test_file);
    let missing: Vec<String> = expected
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .map(|f| f.to_string())
        .collect();
    if !missing.is_empty() {
        let archive_dir = kind.archive_dir().unwrap_or("");
        return Err(DataError::MissingFiles(Box::new(MissingFiles {
            kind: kind.name(),
            dir: dir.to_path_buf(),
            expected: expected.iter().map(|s| s.to_string()).collect(),
            missing,
            fetch_dir: fetch_dir_for(dir, archive_dir),
            archive_dir,
            package: kind.system_package(),
        })));
    }
    let train_paths: Vec<PathBuf> = train_files.iter().map(|f| dir.join(f)).collect();
    let train = read_cifar_files(&train_paths, kind)?;
    let test_paths: Vec<PathBuf> = test_file.iter().map(|f| dir.join(f)).collect();
    let test = read_cifar_files(&test_paths, kind)?;
    Ok(TrainTest { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cifar10_record(label: u8, fill: impl Fn(usize) -> u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend((0..CIFAR_IMAGE_BYTES).map(fill));
        r
    }

    #[test]
    fn reads_cifar10_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        let mut bytes = cifar10_record(3, |i| (i % 251) as u8);
        bytes.extend(cifar10_record(9, |_| 7));
        std::fs::write(&p, &bytes).unwrap();
        let ds = read_cifar_file(&p, DatasetKind::Cifar10).unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.labels(), &[3, 9]);
        assert_eq!((ds.channels(), ds.height(), ds.width()), (3, 32, 32));
        let img0 = ds.image(0).unwrap();
        // Red plane starts at 0, green at 1024, blue at 2048.
        assert_eq!(img0[0], 0);
        assert_eq!(img0[1024], (1024 % 251) as u8);
        assert_eq!(img0[3071], (3071 % 251) as u8);
        assert!(ds.image(1).unwrap().iter().all(|&v| v == 7));
        assert_eq!(ds.class_names()[3], "cat");
    }

    #[test]
    fn reads_cifar100_fine_label() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.bin");
        let mut bytes = vec![4u8, 99];
        bytes.extend(std::iter::repeat_n(1u8, CIFAR_IMAGE_BYTES));
        bytes.extend([19u8, 0]);
        bytes.extend(std::iter::repeat_n(2u8, CIFAR_IMAGE_BYTES));
        std::fs::write(&p, &bytes).unwrap();
        let ds = read_cifar_file(&p, DatasetKind::Cifar100).unwrap();
        assert_eq!(ds.labels(), &[99, 0]);
        assert_eq!(ds.classes(), 100);
        assert_eq!(ds.image(1).unwrap()[0], 2);
    }

    #[test]
    fn bad_sizes_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        // Reading `name` holding `bytes` fails with a message naming the file and `needles`.
        let refused = |name: &str, bytes: &[u8], needles: &[&str]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let e = read_cifar_file(&path, DatasetKind::Cifar10)
                .unwrap_err()
                .to_string();
            assert!(e.contains(name), "{e}");
            assert!(needles.iter().all(|n| e.contains(n)), "{e}");
        };
        refused("empty.bin", &[], &["size 0", "3073"]);
        refused("partial.bin", &[0u8; 3073 + 5], &["3078", "3073"]);

        let badlabel = dir.path().join("badlabel.bin");
        let mut bytes = cifar10_record(1, |_| 0);
        bytes.extend(cifar10_record(10, |_| 0));
        std::fs::write(&badlabel, &bytes).unwrap();
        let e = read_cifar_file(&badlabel, DatasetKind::Cifar10).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::BadLabel {
                    record: 1,
                    label: 10,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("badlabel.bin"));

        let missing = dir.path().join("nope.bin");
        let e = read_cifar_file(&missing, DatasetKind::Cifar10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.bin"), "{e}");
    }

    #[test]
    fn missing_files_error_suggests_fetch() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("data_batch_1.bin"), cifar10_record(0, |_| 0)).unwrap();
        let e = load_cifar(DatasetKind::Cifar10, &dir).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("data_batch_5.bin") && msg.contains("test_batch.bin"),
            "{msg}"
        );
        let want = format!("wrnc data fetch cifar10 --dir {}", root.path().display());
        assert!(msg.contains(&want), "{msg}");
        match e {
            DataError::MissingFiles(m) => assert_eq!(m.missing.len(), 5),
            other => panic!("unexpected {other:?}"),
        }
        // Each file is named once.
        assert_eq!(msg.matches("data_batch_2.bin").count(), 1, "{msg}");
        assert!(msg.contains("5 of the 6 files"), "{msg}");
        assert!(!msg.contains("data.root"), "{msg}");
    }

    #[test]
    fn an_empty_folder_lists_the_files_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mine");
        let msg = load_cifar(DatasetKind::Cifar10, &dir)
            .unwrap_err()
            .to_string();
        assert_eq!(msg.matches("test_batch.bin").count(), 1, "{msg}");
        assert!(msg.contains("has none of the cifar10 files"), "{msg}");
        // The archive unpacks into a subfolder of the suggested --dir: the spec must name it.
        assert!(msg.contains("then set data.root to that folder"), "{msg}");
    }

    #[test]
    fn load_cifar10_concatenates_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for (i, f) in CIFAR10_TRAIN_FILES.iter().enumerate() {
            let mut bytes = cifar10_record(i as u8, |_| i as u8);
            bytes.extend(cifar10_record(i as u8 + 1, |_| 0));
            std::fs::write(dir.path().join(f), bytes).unwrap();
        }
        std::fs::write(dir.path().join(CIFAR10_TEST_FILE), cifar10_record(9, |_| 0)).unwrap();
        let tt = load_cifar(DatasetKind::Cifar10, dir.path()).unwrap();
        assert_eq!(tt.train.labels(), &[0, 1, 1, 2, 2, 3, 3, 4, 4, 5]);
        assert_eq!(tt.train.image(4).unwrap()[100], 2);
        assert_eq!(tt.test.labels(), &[9]);
    }
}
