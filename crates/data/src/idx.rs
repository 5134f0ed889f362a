//! Reader for the IDX files of MNIST and Fashion-MNIST.
//!
//! A dataset folder holds four files, each plain or gzipped (`NAME` or `NAME.gz`; a file is
//! treated as gzip when it starts with the gzip magic bytes, whatever its name):
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
//! `t10k-labels-idx1-ubyte` ([`IDX_FILES`]).
//!
//! The IDX format (big-endian): a 4-byte magic `0x00 0x00 TYPE NDIMS` (type `0x08` = unsigned
//! byte), then `NDIMS` 32-bit sizes, then the data. Images are `0x00000803` with sizes
//! `[count, rows, cols]`; labels `0x00000801` with `[count]`. Every header is checked before
//! anything is allocated: the magic, the dimensions (the dataset's 28x28), the size the
//! header implies against the file's size (plain files) or against the decompressed stream,
//! read no further than that size plus one byte (gzipped files), and the image and label
//! counts of a split against each other. Errors name the file.
//!
//! Pixels are used as stored, `0..=255` with no inversion: in both datasets 0 is the
//! background and 255 the ink (MNIST) or the brightest part of the garment (Fashion-MNIST).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use wrnc_recipe::DatasetKind;

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, MissingFiles, Result};

/// Magic number of an IDX file of unsigned-byte images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Training images.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// Training labels.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// Test images.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// Test labels.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// The four files of an IDX dataset folder (each may also be `NAME.gz`).
pub const IDX_FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];
/// Largest IDX payload accepted (1 GiB, plain or decompressed); the official training images
/// are 47 MB.
pub const MAX_IDX_BYTES: u64 = 1 << 30;

/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The images of one IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count x rows x cols` pixels, row-major per image.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Number of images.
    pub fn count(&self) -> usize {
        self.pixels.len() / (self.rows * self.cols).max(1)
    }
}

fn bad(path: &Path, detail: impl Into<String>) -> DataError {
    DataError::BadIdx {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// An opened IDX file: a reader of its (decompressed) bytes, and the file's size when it is
/// plain (`None` when gzipped).
fn open(path: &Path) -> Result<(Box<dyn Read>, Option<u64>)> {
    let mut file = File::open(path).map_err(|e| DataError::io("opening", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| DataError::io("reading metadata of", path, e))?
        .len();
    let mut head = [0u8; 2];
    let n = read_full(&mut file, &mut head).map_err(|e| DataError::io("reading", path, e))?;
    let prefix = std::io::Cursor::new(head[..n].to_vec());
    let raw = BufReader::with_capacity(1 << 16, prefix.chain(file));
    if n == 2 && head == GZIP_MAGIC {
        let gz = flate2::read::GzDecoder::new(raw);
        Ok((Box::new(gz), None))
    } else {
        if size > MAX_IDX_BYTES {
            return Err(DataError::FileTooLarge {
                path: path.to_path_buf(),
                size,
                limit: MAX_IDX_BYTES,
            });
        }
        Ok((Box::new(raw), Some(size)))
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The stream error of a gzipped file, or a plain read error.
fn read_err(path: &Path, gz: bool, e: std::io::Error) -> DataError {
    if gz {
        bad(path, format!("the gzip stream is corrupt: {e}"))
    } else {
        DataError::io("reading", path, e)
    }
}

/// Reads the header of an IDX file with magic `magic`: its sizes.
fn header(r: &mut dyn Read, path: &Path, gz: bool, magic: u32) -> Result<Vec<usize>> {
    let ndims = (magic & 0xff) as usize;
    let mut buf = vec![0u8; 4 + 4 * ndims];
    let n = read_full(r, &mut buf).map_err(|e| read_err(path, gz, e))?;
    if n < 4 {
        return Err(bad(
            path,
            format!("{n} bytes is too short for an IDX header"),
        ));
    }
    let found = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if found != magic {
        let what = if magic == IMAGES_MAGIC {
            "images"
        } else {
            "labels"
        };
        return Err(bad(
            path,
            format!(
                "magic number 0x{found:08x} is not that of IDX unsigned-byte {what} \
                 (0x{magic:08x})"
            ),
        ));
    }
    if n < buf.len() {
        return Err(bad(
            path,
            format!(
                "the header is cut short: {n} of its {} bytes are present",
                buf.len()
            ),
        ));
    }
    Ok(buf[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect())
}

/// Reads exactly `body` bytes of data after a header of `header_bytes` bytes, refusing a file
/// whose size disagrees with the header; `what` describes the data in messages.
fn body(
    r: &mut dyn Read,
    path: &Path,
    plain_size: Option<u64>,
    header_bytes: u64,
    body: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let implied = header_bytes + body;
    if implied > MAX_IDX_BYTES {
        return Err(bad(
            path,
            format!(
                "the header announces {what} ({implied} bytes), more than the limit of \
                 {MAX_IDX_BYTES} bytes"
            ),
        ));
    }
    if let Some(size) = plain_size {
        if size != implied {
            return Err(bad(
                path,
                format!(
                    "size {size} bytes does not match the header, which announces {what} \
                     ({implied} bytes)"
                ),
            ));
        }
    }
    let gz = plain_size.is_none();
    // The buffer grows with the data actually read, never beyond `body + 1` bytes: a hostile
    // header cannot make the reader allocate more than the stream holds.
    let mut data = Vec::with_capacity(body.min(1 << 20) as usize);
    r.take(body + 1)
        .read_to_end(&mut data)
        .map_err(|e| read_err(path, gz, e))?;
    let got = data.len() as u64;
    if got < body {
        return Err(bad(
            path,
            format!(
                "the data ends after {} bytes, but the header announces {what} ({implied} bytes)",
                header_bytes + got
            ),
        ));
    }
    if got > body {
        return Err(bad(
            path,
            format!("the data goes on past the {implied} bytes the header announces ({what})"),
        ));
    }
    Ok(data)
}

/// Reads an IDX images file (plain or gzipped).
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let (mut r, plain) = open(path)?;
    let dims = header(&mut *r, path, plain.is_none(), IMAGES_MAGIC)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if count == 0 || rows == 0 || cols == 0 {
        return Err(bad(
            path,
            format!("the header announces {count} images of {rows}x{cols}: no image data"),
        ));
    }
    let total = (count as u64)
        .checked_mul(rows as u64)
        .and_then(|v| v.checked_mul(cols as u64))
        .unwrap_or(u64::MAX - 16);
    let what = format!("{count} images of {rows}x{cols}");
    let pixels = body(&mut *r, path, plain, 16, total, &what)?;
    Ok(IdxImages { rows, cols, pixels })
}

/// Reads an IDX labels file (plain or gzipped).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let (mut r, plain) = open(path)?;
    let dims = header(&mut *r, path, plain.is_none(), LABELS_MAGIC)?;
    let count = dims[0];
    if count == 0 {
        return Err(bad(path, "the header announces 0 labels"));
    }
    body(
        &mut *r,
        path,
        plain,
        8,
        count as u64,
        &format!("{count} labels"),
    )
}

/// The file `name` or `name.gz` in `dir` (the plain one when both exist).
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// Reads one split (an images and a labels file) of `kind`, checking the image size and that
/// the counts agree.
pub fn read_idx_split(kind: DatasetKind, images: &Path, labels: &Path) -> Result<Dataset> {
    let (Some([c, h, w]), Some(class_names)) = (kind.input_shape(), kind.class_names()) else {
        return Err(DataError::invalid(
            "dataset kind",
            format!("{kind} has no IDX files"),
        ));
    };
    let img = read_idx_images(images)?;
    if (img.rows, img.cols) != (h, w) {
        return Err(bad(
            images,
            format!(
                "the images are {}x{}, but {kind} images are {h}x{w}",
                img.rows, img.cols
            ),
        ));
    }
    let lab = read_idx_labels(labels)?;
    if lab.len() != img.count() {
        return Err(bad(
            labels,
            format!(
                "holds {} labels, but {} holds {} images",
                lab.len(),
                images.display(),
                img.count()
            ),
        ));
    }
    let classes = class_names.len();
    if let Some((i, &l)) = lab.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
        return Err(DataError::BadLabel {
            path: labels.to_path_buf(),
            record: i,
            label: u32::from(l),
            classes,
        });
    }
    let names = class_names.iter().map(|s| s.to_string()).collect();
    Dataset::new(
        img.pixels,
        lab.into_iter().map(u32::from).collect(),
        [c, h, w],
        names,
    )
}

/// Loads the official train and test sets of an IDX dataset (`fashion_mnist`, `mnist`) from
/// `dir`. When a file is missing (neither `NAME` nor `NAME.gz`), the error lists the expected
/// files and says how to get them.
pub fn load_idx(kind: DatasetKind, dir: &Path) -> Result<TrainTest> {
    let found: Vec<Option<PathBuf>> = IDX_FILES.iter().map(|f| find_file(dir, f)).collect();
    let missing: Vec<String> = IDX_FILES
        .iter()
        .zip(&found)
        .filter(|(_, p)| p.is_none())
        .map(|(f, _)| format!("{f}[.gz]"))
        .collect();
    let [Some(train_images), Some(train_labels), Some(test_images), Some(test_labels)] =
        <[Option<PathBuf>; 4]>::try_from(found).unwrap_or([None, None, None, None])
    else {
        let archive_dir = kind.archive_dir().unwrap_or("");
        return Err(DataError::MissingFiles(Box::new(MissingFiles {
            kind: kind.name(),
            dir: dir.to_path_buf(),
            expected: IDX_FILES.iter().map(|f| format!("{f}[.gz]")).collect(),
            missing,
            fetch_dir: crate::cifar::fetch_dir_for(dir, archive_dir),
            archive_dir,
            package: kind.system_package(),
        })));
    };
    let train = read_idx_split(kind, &train_images, &train_labels)?;
    let test = read_idx_split(kind, &test_images, &test_labels)?;
    Ok(TrainTest { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The bytes of an IDX images file of `n` images of `r`x`c` with pixel `i` = `i % 251`.
    fn images_bytes(n: u32, r: u32, c: u32) -> Vec<u8> {
        let mut b = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [n, r, c] {
            b.extend(d.to_be_bytes());
        }
        b.extend((0..(n * r * c) as usize).map(|i| (i % 251) as u8));
        b
    }

    fn labels_bytes(labels: &[u8]) -> Vec<u8> {
        let mut b = LABELS_MAGIC.to_be_bytes().to_vec();
        b.extend((labels.len() as u32).to_be_bytes());
        b.extend_from_slice(labels);
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Writes a small Fashion-MNIST folder: 3 training and 2 test images; the training
    /// files gzipped when `gz`.
    fn write_set(dir: &Path, gz: bool) {
        let w = |name: &str, bytes: Vec<u8>, gz: bool| {
            if gz {
                std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        };
        w(TRAIN_IMAGES, images_bytes(3, 28, 28), gz);
        w(TRAIN_LABELS, labels_bytes(&[9, 0, 4]), gz);
        w(TEST_IMAGES, images_bytes(2, 28, 28), false);
        w(TEST_LABELS, labels_bytes(&[1, 2]), false);
    }

    #[test]
    fn reads_plain_and_gzipped_sets_alike() {
        let plain = tempfile::tempdir().unwrap();
        write_set(plain.path(), false);
        let gz = tempfile::tempdir().unwrap();
        write_set(gz.path(), true);
        let a = load_idx(DatasetKind::FashionMnist, plain.path()).unwrap();
        let b = load_idx(DatasetKind::FashionMnist, gz.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.train.labels(), &[9, 0, 4]);
        assert_eq!(a.test.labels(), &[1, 2]);
        assert_eq!(
            (a.train.channels(), a.train.height(), a.train.width()),
            (1, 28, 28)
        );
        // Pixels as stored, image after image.
        assert_eq!(a.train.image(1).unwrap()[0], (784 % 251) as u8);
        assert_eq!(a.train.class_names()[9], "Ankle boot");
        let m = load_idx(DatasetKind::Mnist, gz.path()).unwrap();
        assert_eq!(m.train.class_names()[9], "9");
    }

    #[test]
    fn missing_files_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let set = dir.path().join("fashion-mnist");
        std::fs::create_dir(&set).unwrap();
        std::fs::write(set.join(TRAIN_IMAGES), images_bytes(1, 28, 28)).unwrap();
        let e = load_idx(DatasetKind::FashionMnist, &set)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t10k-labels-idx1-ubyte[.gz]") && !e.contains("missing train-images"),
            "{e}"
        );
        let fetch = format!(
            "wrnc data fetch fashion_mnist --dir {}",
            dir.path().display()
        );
        assert!(e.contains(&fetch), "{e}");
        assert!(e.contains("apt-get install dataset-fashion-mnist"), "{e}");
    }

    /// Reading a folder whose file `name` holds `bytes` (the others valid) fails naming the
    /// file and every needle.
    fn refused(name: &str, bytes: Vec<u8>, needles: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), false);
        for f in IDX_FILES {
            if name.starts_with(f) {
                std::fs::remove_file(dir.path().join(f)).unwrap();
            }
        }
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let e = load_idx(DatasetKind::FashionMnist, dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains(name), "{e}");
        for n in needles {
            assert!(e.contains(n), "`{n}` not in: {e}");
        }
    }

    #[test]
    fn bad_headers_are_refused_naming_the_file() {
        // Labels where images belong: the magic names both.
        refused(
            TRAIN_IMAGES,
            labels_bytes(&[1]),
            &["0x00000801", "0x00000803"],
        );
        // A header cut short.
        refused(TRAIN_IMAGES, vec![0, 0, 8, 3, 0, 0], &["cut short"]);
        refused(TRAIN_LABELS, vec![0, 0], &["too short"]);
        // One pixel missing, one too many.
        let mut short = images_bytes(3, 28, 28);
        short.pop();
        refused(TRAIN_IMAGES, short, &["2367", "2368"]);
        let mut long = images_bytes(3, 28, 28);
        long.push(0);
        refused(TRAIN_IMAGES, long, &["2369", "3 images of 28x28"]);
        // The wrong image size for the dataset.
        refused(TEST_IMAGES, images_bytes(2, 32, 32), &["32x32", "28x28"]);
        // Counts that disagree: the message names both files.
        refused(
            TEST_LABELS,
            labels_bytes(&[1, 2, 3]),
            &["3 labels", TEST_IMAGES],
        );
        // A label out of range.
        refused(
            TEST_LABELS,
            labels_bytes(&[1, 10]),
            &["label 10", "10 classes"],
        );
        // Zero images.
        refused(TEST_IMAGES, images_bytes(0, 28, 28), &["0 images"]);
    }

    #[test]
    fn bad_gzip_files_are_refused_naming_the_file() {
        // A truncated gzip stream.
        let mut gz = gzip(&images_bytes(3, 28, 28));
        gz.truncate(gz.len() / 2);
        refused(&format!("{TRAIN_IMAGES}.gz"), gz, &["gzip"]);
        // Valid gzip of a file with one pixel missing.
        let mut short = images_bytes(3, 28, 28);
        short.pop();
        refused(
            &format!("{TRAIN_IMAGES}.gz"),
            gzip(&short),
            &["ends after 2367 bytes"],
        );
        // Extra data after the announced size.
        let mut long = labels_bytes(&[1, 2, 3]);
        long.extend([0u8; 100]);
        refused(
            &format!("{TRAIN_LABELS}.gz"),
            gzip(&long),
            &["goes on past"],
        );
    }

    #[test]
    fn hostile_counts_allocate_nothing() {
        // A 24-byte file that announces 4 billion images: refused from the header alone.
        let mut b = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [u32::MAX, 28, 28] {
            b.extend(d.to_be_bytes());
        }
        b.extend([0u8; 8]);
        refused(TRAIN_IMAGES, b.clone(), &["limit"]);
        // The same gzipped, and one just under the limit: the stream ends long before.
        refused(&format!("{TRAIN_IMAGES}.gz"), gzip(&b), &["limit"]);
        let mut b = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [1_000_000u32, 28, 28] {
            b.extend(d.to_be_bytes());
        }
        refused(
            &format!("{TRAIN_IMAGES}.gz"),
            gzip(&b),
            &["ends after 16 bytes"],
        );
        refused(TRAIN_IMAGES, b, &["size 16 bytes"]);
    }
}
