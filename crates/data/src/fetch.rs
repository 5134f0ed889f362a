//! Downloading and installing the official CIFAR archives.
//!
//! The work is split in two: [`download_to`] streams a URL into a writer
//! (the only network code), and [`install_archive`] verifies a local
//! `.tar.gz` against an MD5 digest and unpacks it atomically into a
//! destination folder. [`fetch`] combines them.
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

use wrnc_recipe::{DatasetKind, CIFAR100_DIR, CIFAR10_DIR};

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

/// The archive of a dataset kind (`None` for the embedded digits).
pub fn archive_spec(kind: DatasetKind) -> Option<&'static ArchiveSpec> {
    match kind {
        DatasetKind::Cifar10 => Some(&CIFAR10_ARCHIVE),
        DatasetKind::Cifar100 => Some(&CIFAR100_ARCHIVE),
        DatasetKind::Digits | DatasetKind::Folder => None,
    }
}

/// The folder `dest/<archive dir>` that [`fetch`] fills for `kind`
/// (`None` for digits).
pub fn dataset_dir(kind: DatasetKind, dest: &Path) -> Option<PathBuf> {
    archive_spec(kind).map(|s| dest.join(s.dir_name))
}

/// `true` if every file the reader expects for `kind` is present in
/// `dest/<archive dir>` (always `true` for the embedded digits).
pub fn is_installed(kind: DatasetKind, dest: &Path) -> bool {
    let Some(dir) = dataset_dir(kind, dest) else {
        return true;
    };
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
/// absolute or `..` paths are rejected.
pub fn install_archive(archive: &Path, expected_md5: &str, dest: &Path) -> Result<Vec<PathBuf>> {
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

    let mut tops: Vec<PathBuf> = std::fs::read_dir(&staging)
        .map_err(|e| DataError::io("listing", &staging, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| DataError::io("listing", &staging, e))?;
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

/// Downloads the official archive of `kind` into a temporary file inside
/// `dest`, verifies its MD5 and installs it with [`install_archive`].
/// Returns the dataset folder, `dest/<archive dir>`. The archive is deleted
/// afterwards. Fails for the embedded digits dataset.
pub fn fetch(
    kind: DatasetKind,
    dest: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf> {
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
}
