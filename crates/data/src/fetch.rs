//! Downloading and installing the official CIFAR archives and IDX files.
//!
//! The work is split in two: [`download_to`] streams a URL into a writer
//! (the only network code), and [`install_archive`] verifies a local
//! `.tar.gz` against an MD5 digest and unpacks it atomically into a
//! destination folder. [`fetch`] combines them. Fashion-MNIST and MNIST are
//! four gzipped IDX files each ([`IdxSpec`]), checked one by one
//! ([`verify_idx_file`]) and installed together into one folder
//! ([`install_idx_files`] from a local folder, [`fetch`] from the network).
//!
//! Atomicity: the archive is unpacked into a temporary folder created inside
//! the destination; each top-level entry is then moved into place with a
//! rename (an existing entry of the same name is moved aside first and
//! deleted afterwards). On any error the temporary folder is removed, so no
//! half-written dataset is ever visible.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use wrnc_recipe::{DatasetKind, CIFAR100_DIR, CIFAR10_DIR, FASHION_MNIST_DIR, MNIST_DIR};

use crate::error::{DataError, Result};
/// Largest download accepted (512 MiB; the CIFAR archives are ~165 MB).
pub const MAX_DOWNLOAD_BYTES: u64 = 512 << 20;

/// Where an official archive lives and what it contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveSpec {
    /// Dataset the archive holds.
    pub kind: DatasetKind,
    /// Download URL.
    pub url: &'static str,
    /// Expected MD5 of the archive (lower-case hex).
    pub md5: &'static str,
    /// File name of the archive.
    pub file_name: &'static str,
    /// Folder the archive unpacks to.
    pub dir_name: &'static str,
}

/// The official CIFAR-10 binary archive.
pub const CIFAR10_ARCHIVE: ArchiveSpec = ArchiveSpec {
    kind: DatasetKind::Cifar10,
    url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    md5: "c32a1d4ab5d03f1284b67883e8d87530",
    file_name: "cifar-10-binary.tar.gz",
    dir_name: CIFAR10_DIR,
};

/// The official CIFAR-100 binary archive.
pub const CIFAR100_ARCHIVE: ArchiveSpec = ArchiveSpec {
    kind: DatasetKind::Cifar100,
    url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    md5: "03b5dce01913d631647c71ecec9e9cb8",
    file_name: "cifar-100-binary.tar.gz",
    dir_name: CIFAR100_DIR,
};

/// The archive of a dataset kind (`None` for the embedded digits and the IDX sets, which
/// have [`idx_spec`]).
pub fn archive_spec(kind: DatasetKind) -> Option<&'static ArchiveSpec> {
    match kind {
        DatasetKind::Cifar10 => Some(&CIFAR10_ARCHIVE),
        DatasetKind::Cifar100 => Some(&CIFAR100_ARCHIVE),
        DatasetKind::Digits
        | DatasetKind::FashionMnist
        | DatasetKind::Mnist
        | DatasetKind::Folder => None,
    }
}

/// One gzipped IDX file of an official download, with its two MD5 digests (lower-case hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdxFile {
    /// File name, `NAME.gz`.
    pub file_name: &'static str,
    /// MD5 of the official `.gz` file.
    pub gz_md5: &'static str,
    /// MD5 of its decompressed content (accepts re-compressed copies, e.g. Debian's).
    pub raw_md5: &'static str,
}

/// Where the four IDX files of a dataset are downloaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdxSpec {
    /// Dataset the files hold.
    pub kind: DatasetKind,
    /// Base URLs (ending in `/`), tried in order for each file.
    pub mirrors: &'static [&'static str],
    /// The four files.
    pub files: [IdxFile; 4],
    /// Folder the files are installed into.
    pub dir_name: &'static str,
}

/// The official Fashion-MNIST files (Zalando Research, MIT licence): the digests of the
/// project's README and torchvision.
pub const FASHION_MNIST_FILES: IdxSpec = IdxSpec {
    kind: DatasetKind::FashionMnist,
    mirrors: &[
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    files: [
        IdxFile {
            file_name: "train-images-idx3-ubyte.gz",
            gz_md5: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            raw_md5: "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        },
        IdxFile {
            file_name: "train-labels-idx1-ubyte.gz",
            gz_md5: "25c81989df183df01b3e8a0aad5dffbe",
            raw_md5: "9018921c3c673c538a1fc5bad174d6f9",
        },
        IdxFile {
            file_name: "t10k-images-idx3-ubyte.gz",
            gz_md5: "bef4ecab320f06d8554ea6380940ec79",
            raw_md5: "8181f5470baa50b63fa0f6fddb340f0a",
        },
        IdxFile {
            file_name: "t10k-labels-idx1-ubyte.gz",
            gz_md5: "bb300cfdad3c16e7a12a480ee83cd310",
            raw_md5: "15d484375f8d13e6eb1aabb0c3f46965",
        },
    ],
    dir_name: FASHION_MNIST_DIR,
};

/// The official MNIST files, from the mirror torchvision uses (the original site no longer
/// serves them reliably).
pub const MNIST_FILES: IdxSpec = IdxSpec {
    kind: DatasetKind::Mnist,
    mirrors: &["https://ossci-datasets.s3.amazonaws.com/mnist/"],
    files: [
        IdxFile {
            file_name: "train-images-idx3-ubyte.gz",
            gz_md5: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            raw_md5: "6bbc9ace898e44ae57da46a324031adb",
        },
        IdxFile {
            file_name: "train-labels-idx1-ubyte.gz",
            gz_md5: "d53e105ee54ea40749a09fcbcd1e9432",
            raw_md5: "a25bea736e30d166cdddb491f175f624",
        },
        IdxFile {
            file_name: "t10k-images-idx3-ubyte.gz",
            gz_md5: "9fb629c4189551a2d022fa330f9573f3",
            raw_md5: "2646ac647ad5339dbf082846283269ea",
        },
        IdxFile {
            file_name: "t10k-labels-idx1-ubyte.gz",
            gz_md5: "ec29112dd5afa0611ce80d1b7f02629c",
            raw_md5: "27ae3e4e09519cfbb04c329615203637",
        },
    ],
    dir_name: MNIST_DIR,
};

/// The IDX files of a dataset kind (`None` for the CIFAR archives and the embedded digits).
pub fn idx_spec(kind: DatasetKind) -> Option<&'static IdxSpec> {
    match kind {
        DatasetKind::FashionMnist => Some(&FASHION_MNIST_FILES),
        DatasetKind::Mnist => Some(&MNIST_FILES),
        DatasetKind::Cifar10
        | DatasetKind::Cifar100
        | DatasetKind::Digits
        | DatasetKind::Folder => None,
    }
}

/// The folder `dest/<archive dir>` that [`fetch`] fills for `kind`
/// (`None` for digits).
pub fn dataset_dir(kind: DatasetKind, dest: &Path) -> Option<PathBuf> {
    kind.archive_dir().map(|d| dest.join(d))
}

/// `true` if every file the reader expects for `kind` is present in
/// `dest/<archive dir>` (always `true` for the embedded digits).
pub fn is_installed(kind: DatasetKind, dest: &Path) -> bool {
    let Some(dir) = dataset_dir(kind, dest) else {
        return true;
    };
    if idx_spec(kind).is_some() {
        return crate::idx::IDX_FILES
            .iter()
            .all(|f| crate::idx::find_file(&dir, f).is_some());
    }
    let (train, test) = crate::cifar::expected_files(kind);
    train
        .iter()
        .chain(test.iter())
        .all(|f| dir.join(f).is_file())
}

/// Lower-case hex MD5 of everything `reader` yields.
fn md5_reader(mut reader: impl Read, path: &Path) -> Result<String> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| DataError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Lower-case hex MD5 digest of a file, computed in a streaming fashion.
pub fn md5_file(path: &Path) -> Result<String> {
    let f = File::open(path).map_err(|e| DataError::io("opening", path, e))?;
    md5_reader(f, path)
}

fn archive_err(path: &Path, detail: impl Into<String>) -> DataError {
    DataError::Archive {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// Verifies that `archive` (a `.tar.gz`) has MD5 `expected_md5` and unpacks
/// it atomically into `dest` (created if needed).
///
/// Returns the installed top-level paths (e.g. `dest/cifar-10-batches-bin`),
/// sorted. A digest mismatch is an error naming both digests, and nothing is
/// written. Only regular files and directories are unpacked; entries with
/// absolute or `..` paths are rejected. A `dest` folder created for a failed install is
/// removed again.
pub fn install_archive(archive: &Path, expected_md5: &str, dest: &Path) -> Result<Vec<PathBuf>> {
    undo_new_folder_on_error(dest, || unpack_archive(archive, expected_md5, dest))
}

/// [`install_archive`] without the clean-up of a new, empty `dest`.
fn unpack_archive(archive: &Path, expected_md5: &str, dest: &Path) -> Result<Vec<PathBuf>> {
    let actual = md5_file(archive)?;
    let expected = expected_md5.trim().to_ascii_lowercase();
    if actual != expected {
        return Err(DataError::Md5Mismatch {
            path: archive.to_path_buf(),
            expected,
            actual,
        });
    }
    std::fs::create_dir_all(dest).map_err(|e| DataError::io("creating", dest, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".wrnc-unpack-")
        .tempdir_in(dest)
        .map_err(|e| DataError::io("creating a temporary folder in", dest, e))?;
    let staging = tmp.path().join("new");
    std::fs::create_dir(&staging).map_err(|e| DataError::io("creating", &staging, e))?;

    let file = File::open(archive).map_err(|e| DataError::io("opening", archive, e))?;
    let gz = flate2::read::GzDecoder::new(BufReader::new(file));
    let mut tar = tar::Archive::new(gz);
    let entries = tar
        .entries()
        .map_err(|e| archive_err(archive, e.to_string()))?;
    let mut count = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_err(archive, e.to_string()))?;
        let kind = entry.header().entry_type();
        let name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "<bad path>".into());
        if !(kind.is_file() || kind.is_dir()) {
            // Links, devices, pax headers etc. are not needed for datasets.
            continue;
        }
        let inside = entry
            .unpack_in(&staging)
            .map_err(|e| archive_err(archive, format!("{name}: {e}")))?;
        if !inside {
            return Err(archive_err(
                archive,
                format!("entry {name} escapes the destination"),
            ));
        }
        count += 1;
    }
    if count == 0 {
        return Err(archive_err(archive, "archive holds no files"));
    }
    move_into_place(tmp, &staging, dest)
}

/// Moves every top-level entry of `staging` (inside the temporary folder `tmp`, itself
/// inside `dest`) to `dest` with a rename, moving an existing entry of the same name aside
/// first, then removes `tmp`. Returns the installed paths, sorted.
fn move_into_place(tmp: tempfile::TempDir, staging: &Path, dest: &Path) -> Result<Vec<PathBuf>> {
    let mut tops: Vec<PathBuf> = std::fs::read_dir(staging)
        .map_err(|e| DataError::io("listing", staging, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| DataError::io("listing", staging, e))?;
    tops.sort();
    let old = tmp.path().join("old");
    std::fs::create_dir(&old).map_err(|e| DataError::io("creating", &old, e))?;
    let mut installed = Vec::with_capacity(tops.len());
    for src in tops {
        let Some(name) = src.file_name() else {
            continue;
        };
        let target = dest.join(name);
        if target.exists() {
            let aside = old.join(name);
            std::fs::rename(&target, &aside)
                .map_err(|e| DataError::io("moving aside", &target, e))?;
        }
        std::fs::rename(&src, &target)
            .map_err(|e| DataError::io("moving into place", &target, e))?;
        installed.push(target);
    }
    tmp.close()
        .map_err(|e| DataError::io("removing temporary folder in", dest, e))?;
    Ok(installed)
}

/// Streams `url` into `out`, calling `progress(bytes_done, total)` after each
/// chunk (`total` is the Content-Length when the server sends one).
/// Returns the number of bytes written. Downloads above
/// [`MAX_DOWNLOAD_BYTES`] are refused.
pub fn download_to(
    url: &str,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<u64> {
    let dl_err = |detail: String| DataError::Download {
        url: url.to_string(),
        detail,
    };
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut resp = agent.get(url).call().map_err(|e| dl_err(e.to_string()))?;
    let total = resp.body().content_length();
    if let Some(t) = total {
        if t > MAX_DOWNLOAD_BYTES {
            return Err(dl_err(format!(
                "{t} bytes exceeds the limit of {MAX_DOWNLOAD_BYTES}"
            )));
        }
    }
    let mut reader = resp
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD_BYTES)
        .reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    progress(0, total);
    loop {
        let n = reader.read(&mut buf).map_err(|e| dl_err(e.to_string()))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| dl_err(format!("writing: {e}")))?;
        done += n as u64;
        progress(done, total);
    }
    out.flush().map_err(|e| dl_err(format!("writing: {e}")))?;
    Ok(done)
}

/// Checks one IDX file against the official digests of `file`: a gzipped file passes when
/// its own MD5 is the official `.gz` digest or the MD5 of its decompressed content is the
/// official content digest (re-compressed copies such as Debian's); a plain file when its MD5
/// is the content digest. A mismatch is [`DataError::Md5Mismatch`].
pub fn verify_idx_file(path: &Path, file: &IdxFile) -> Result<()> {
    let actual = md5_file(path)?;
    if actual == file.gz_md5 || actual == file.raw_md5 {
        return Ok(());
    }
    let mut head = [0u8; 2];
    let mut f = File::open(path).map_err(|e| DataError::io("opening", path, e))?;
    let is_gz = f.read_exact(&mut head).is_ok() && head == [0x1f, 0x8b];
    if is_gz {
        let f = File::open(path).map_err(|e| DataError::io("opening", path, e))?;
        let gz = flate2::read::GzDecoder::new(BufReader::new(f));
        // Bounded like the reader: no more than the largest IDX payload is decompressed.
        if let Ok(raw) = md5_reader(gz.take(crate::idx::MAX_IDX_BYTES + 1), path) {
            if raw == file.raw_md5 {
                return Ok(());
            }
        }
    }
    Err(DataError::Md5Mismatch {
        path: path.to_path_buf(),
        expected: format!("{} (or content {})", file.gz_md5, file.raw_md5),
        actual,
    })
}

/// Installs the four IDX files of `spec` from the folder `src` (each `NAME.gz` or plain
/// `NAME`, e.g. Debian's `/usr/share/datasets/fashion-mnist`) into `dest/<dir>`, atomically:
/// every file is checked with [`verify_idx_file`] and copied into a temporary folder first,
/// and the folder is moved into place only when all four passed. Returns `dest/<dir>`. A
/// `dest` folder created for a failed install is removed again.
pub fn install_idx_files(src: &Path, spec: &IdxSpec, dest: &Path) -> Result<PathBuf> {
    undo_new_folder_on_error(dest, || copy_idx_files(src, spec, dest))
}

/// [`install_idx_files`] without the clean-up of a new, empty `dest`.
fn copy_idx_files(src: &Path, spec: &IdxSpec, dest: &Path) -> Result<PathBuf> {
    let mut found = Vec::with_capacity(4);
    for f in &spec.files {
        let base = f.file_name.trim_end_matches(".gz");
        let path = crate::idx::find_file(src, base).ok_or_else(|| {
            DataError::invalid(
                "IDX folder",
                format!("{} holds neither {base} nor {}", src.display(), f.file_name),
            )
        })?;
        verify_idx_file(&path, f)?;
        found.push(path);
    }
    let (tmp, folder) = staging_folder(spec, dest)?;
    for path in &found {
        let Some(name) = path.file_name() else {
            continue;
        };
        let to = folder.join(name);
        std::fs::copy(path, &to).map_err(|e| DataError::io("copying", path, e))?;
    }
    let staging = tmp.path().join("new");
    move_into_place(tmp, &staging, dest)?;
    Ok(dest.join(spec.dir_name))
}

/// A temporary folder inside `dest` (created if needed) with `new/<dir>` made, for an
/// atomic install of `spec`'s files: returns the folder and `new/<dir>`.
fn staging_folder(spec: &IdxSpec, dest: &Path) -> Result<(tempfile::TempDir, PathBuf)> {
    std::fs::create_dir_all(dest).map_err(|e| DataError::io("creating", dest, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".wrnc-unpack-")
        .tempdir_in(dest)
        .map_err(|e| DataError::io("creating a temporary folder in", dest, e))?;
    let folder = tmp.path().join("new").join(spec.dir_name);
    std::fs::create_dir_all(&folder).map_err(|e| DataError::io("creating", &folder, e))?;
    Ok((tmp, folder))
}

/// Downloads the four files of `spec` (each from the first mirror that serves it), checks
/// them and installs them atomically into `dest/<dir>`.
fn fetch_idx(
    spec: &IdxSpec,
    dest: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf> {
    let (tmp, folder) = staging_folder(spec, dest)?;
    for f in &spec.files {
        let path = folder.join(f.file_name);
        let mut last = None;
        for mirror in spec.mirrors {
            let url = format!("{mirror}{}", f.file_name);
            let out = File::create(&path).map_err(|e| DataError::io("creating", &path, e))?;
            let mut w = std::io::BufWriter::new(out);
            match download_to(&url, &mut w, progress).and_then(|_| verify_idx_file(&path, f)) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
    }
    let staging = tmp.path().join("new");
    move_into_place(tmp, &staging, dest)?;
    Ok(dest.join(spec.dir_name))
}

/// Downloads the official archive of `kind` into a temporary file inside
/// `dest`, verifies its MD5 and installs it with [`install_archive`]
/// (Fashion-MNIST, MNIST: the four IDX files, each checked, installed
/// together). Returns the dataset folder, `dest/<archive dir>`. The archive
/// is deleted afterwards. Fails for the embedded digits dataset. A failed fetch leaves no
/// trace: a `dest` folder it had to create is removed again (when still empty).
pub fn fetch(
    kind: DatasetKind,
    dest: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf> {
    undo_new_folder_on_error(dest, || fetch_into(kind, dest, progress))
}

/// Runs `work`, which may create `dest`; when `work` fails and `dest` did not exist before,
/// removes `dest` again if it is empty (never anything inside it).
fn undo_new_folder_on_error<T>(dest: &Path, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let existed = dest.exists();
    let result = work();
    if result.is_err() && !existed {
        // `remove_dir` only removes an empty folder; anything else stays as it is.
        let _ = std::fs::remove_dir(dest);
    }
    result
}

/// [`fetch`] without the clean-up of a new, empty `dest`.
fn fetch_into(
    kind: DatasetKind,
    dest: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf> {
    if let Some(spec) = idx_spec(kind) {
        return fetch_idx(spec, dest, progress);
    }
    let spec = archive_spec(kind).ok_or_else(|| {
        DataError::invalid(
            "fetch",
            format!("{kind} is embedded in wrnc and needs no download"),
        )
    })?;
    std::fs::create_dir_all(dest).map_err(|e| DataError::io("creating", dest, e))?;
    let mut part = tempfile::Builder::new()
        .prefix(&format!(".{}.", spec.file_name))
        .suffix(".part")
        .tempfile_in(dest)
        .map_err(|e| DataError::io("creating a temporary file in", dest, e))?;
    {
        let mut w = std::io::BufWriter::new(part.as_file_mut());
        download_to(spec.url, &mut w, progress)?;
    }
    install_archive(part.path(), spec.md5, dest)?;
    let dir = dest.join(spec.dir_name);
    if !dir.is_dir() {
        return Err(archive_err(
            part.path(),
            format!("archive did not contain the folder {}", spec.dir_name),
        ));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::write_cifar_like;

    /// Packs every file of `src_dir` under `prefix/` into a tar.gz at `out`.
    fn make_tar_gz(src_dir: &Path, prefix: &str, out: &Path) {
        let f = File::create(out).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        b.append_dir_all(prefix, src_dir).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }

    /// A synthetic `kind` dataset (`write_cifar_like` with `(records per training file, test
    /// records, seed)`) in `work/src`, packed under the official folder name into
    /// `work/archive.tar.gz`: returns the work folder, the source folder, the archive and its
    /// MD5.
    fn synthetic_archive(
        kind: DatasetKind,
        (train, test, seed): (usize, usize, u64),
    ) -> (tempfile::TempDir, PathBuf, PathBuf, String) {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        write_cifar_like(&src, kind, train, test, seed).unwrap();
        let archive = work.path().join("archive.tar.gz");
        make_tar_gz(&src, archive_spec(kind).unwrap().dir_name, &archive);
        let md5 = md5_file(&archive).unwrap();
        (work, src, archive, md5)
    }

    #[test]
    fn a_failed_fetch_removes_the_folder_it_created_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let fail = || -> Result<()> { Err(DataError::invalid("fetch", "no network")) };
        // A folder the fetch created (and left empty) goes again.
        let new = root.path().join("data");
        let r = undo_new_folder_on_error(&new, || {
            std::fs::create_dir_all(&new).unwrap();
            fail()
        });
        assert!(r.is_err());
        assert!(!new.exists());
        // A folder that existed before stays, even empty.
        let old = root.path().join("old");
        std::fs::create_dir(&old).unwrap();
        assert!(undo_new_folder_on_error(&old, fail).is_err());
        assert!(old.is_dir());
        // A new folder with something in it is not emptied.
        let busy = root.path().join("busy");
        let r = undo_new_folder_on_error(&busy, || {
            std::fs::create_dir_all(&busy).unwrap();
            std::fs::write(busy.join("keep"), b"x").unwrap();
            fail()
        });
        assert!(r.is_err());
        assert!(busy.join("keep").is_file());
        // Success keeps the new folder.
        let ok = root.path().join("ok");
        undo_new_folder_on_error(&ok, || {
            std::fs::create_dir_all(&ok).unwrap();
            Ok(())
        })
        .unwrap();
        assert!(ok.is_dir());
    }

    #[test]
    fn md5_known_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(md5_file(&p).unwrap(), "d41d8cd98f00b204e9800998ecf8427e");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(md5_file(&p).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn install_and_read_back() {
        let (work, src, archive, md5) = synthetic_archive(DatasetKind::Cifar10, (3, 4, 9));
        let dest = work.path().join("data");
        assert!(!is_installed(DatasetKind::Cifar10, &dest));
        let installed = install_archive(&archive, &md5.to_uppercase(), &dest).unwrap();
        assert_eq!(installed, vec![dest.join(CIFAR10_DIR)]);
        assert!(is_installed(DatasetKind::Cifar10, &dest));
        // Only the dataset folder is left; the temporary folder is gone.
        let names: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CIFAR10_DIR)]);

        let tt = crate::cifar::load_cifar(DatasetKind::Cifar10, &dest.join(CIFAR10_DIR)).unwrap();
        assert_eq!(tt.train.len(), 15);
        assert_eq!(tt.test.len(), 4);
        let orig = crate::cifar::load_cifar(DatasetKind::Cifar10, &src).unwrap();
        assert_eq!(orig, tt);

        // Re-installing replaces the folder (a stray file disappears).
        std::fs::write(dest.join(CIFAR10_DIR).join("stray"), b"x").unwrap();
        install_archive(&archive, &md5, &dest).unwrap();
        assert!(!dest.join(CIFAR10_DIR).join("stray").exists());
        assert!(is_installed(DatasetKind::Cifar10, &dest));
    }

    #[test]
    fn wrong_md5_writes_nothing() {
        let (work, _, archive, actual) = synthetic_archive(DatasetKind::Cifar100, (2, 2, 1));
        let dest = work.path().join("data");
        let e = install_archive(&archive, CIFAR100_ARCHIVE.md5, &dest).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(CIFAR100_ARCHIVE.md5) && msg.contains(&actual),
            "{msg}"
        );
        assert!(!dest.exists());
    }

    #[test]
    fn corrupt_archive_leaves_no_trace() {
        let work = tempfile::tempdir().unwrap();
        let archive = work.path().join("bad.tar.gz");
        std::fs::write(&archive, b"this is not gzip").unwrap();
        let md5 = md5_file(&archive).unwrap();
        let dest = work.path().join("data");
        assert!(install_archive(&archive, &md5, &dest).is_err());
        // The folder the install created is gone again; one that existed stays, empty.
        assert!(!dest.exists());
        std::fs::create_dir(&dest).unwrap();
        assert!(install_archive(&archive, &md5, &dest).is_err());
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    }

    #[test]
    fn specs() {
        assert_eq!(
            archive_spec(DatasetKind::Cifar10).map(|s| s.dir_name),
            Some("cifar-10-batches-bin")
        );
        assert_eq!(
            archive_spec(DatasetKind::Cifar100).map(|s| s.dir_name),
            Some("cifar-100-binary")
        );
        assert!(archive_spec(DatasetKind::Digits).is_none());
        assert!(archive_spec(DatasetKind::Mnist).is_none());
        assert_eq!(
            idx_spec(DatasetKind::FashionMnist).map(|s| s.dir_name),
            Some("fashion-mnist")
        );
        assert_eq!(
            dataset_dir(DatasetKind::Mnist, Path::new("data")),
            Some(PathBuf::from("data/mnist"))
        );
        assert_eq!(
            dataset_dir(DatasetKind::Cifar10, Path::new("data")),
            Some(PathBuf::from("data/cifar-10-batches-bin"))
        );
        assert!(fetch(
            DatasetKind::Digits,
            Path::new("/nonexistent"),
            &mut |_, _| {}
        )
        .is_err());
    }

    /// The official files' names with the digests of `bytes` gzipped (four copies of one
    /// synthetic set): a spec under which `bytes` passes.
    fn fake_spec(gz: &[u8], raw: &[u8], dir: &Path) -> IdxSpec {
        fn leak(s: String) -> &'static str {
            Box::leak(s.into_boxed_str())
        }
        let md5 = |b: &[u8]| {
            let p = dir.join("digest");
            std::fs::write(&p, b).unwrap();
            md5_file(&p).unwrap()
        };
        let (g, r) = (leak(md5(gz)), leak(md5(raw)));
        let mut spec = FASHION_MNIST_FILES;
        for f in &mut spec.files {
            f.gz_md5 = g;
            f.raw_md5 = r;
        }
        spec
    }

    #[test]
    fn idx_files_install_atomically_and_check_digests() {
        use std::io::Write;
        let work = tempfile::tempdir().unwrap();
        let raw = b"not really IDX, digests only".to_vec();
        let gzip = |level| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            e.write_all(&raw).unwrap();
            e.finish().unwrap()
        };
        let (official, recompressed) = (gzip(1), gzip(9));
        assert_ne!(official, recompressed);
        let spec = fake_spec(&official, &raw, work.path());
        let src = work.path().join("src");
        std::fs::create_dir(&src).unwrap();
        // Two official .gz, one re-compressed .gz, one plain file: all pass.
        let names: Vec<&str> = spec.files.iter().map(|f| f.file_name).collect();
        std::fs::write(src.join(names[0]), &official).unwrap();
        std::fs::write(src.join(names[1]), &official).unwrap();
        std::fs::write(src.join(names[2]), &recompressed).unwrap();
        std::fs::write(src.join(names[3].trim_end_matches(".gz")), &raw).unwrap();
        let dest = work.path().join("data");
        let dir = install_idx_files(&src, &spec, &dest).unwrap();
        assert_eq!(dir, dest.join("fashion-mnist"));
        assert!(is_installed(DatasetKind::FashionMnist, &dest));
        assert_eq!(std::fs::read(dir.join(names[2])).unwrap(), recompressed);
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 1);

        // One changed byte: refused, naming the file and the digests; nothing is replaced.
        let mut bad = raw.clone();
        bad[0] ^= 1;
        std::fs::write(src.join(names[3].trim_end_matches(".gz")), &bad).unwrap();
        let e = install_idx_files(&src, &spec, &dest)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t10k-labels-idx1-ubyte") && e.contains(spec.files[3].raw_md5),
            "{e}"
        );
        assert_eq!(std::fs::read(dir.join(names[2])).unwrap(), recompressed);
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 1);
        // A missing file is named.
        std::fs::remove_file(src.join(names[0])).unwrap();
        let e = install_idx_files(&src, &spec, &dest)
            .unwrap_err()
            .to_string();
        assert!(e.contains("train-images-idx3-ubyte"), "{e}");
    }

    #[test]
    fn the_debian_copy_passes_the_official_digests() {
        let sys = Path::new(wrnc_recipe::FASHION_MNIST_SYSTEM_DIR);
        if !sys.is_dir() {
            eprintln!("skipped: {} is not installed", sys.display());
            return;
        }
        for f in &FASHION_MNIST_FILES.files {
            verify_idx_file(&sys.join(f.file_name), f).unwrap();
        }
    }
}
