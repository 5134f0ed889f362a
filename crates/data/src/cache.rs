//! The decode cache of a folder dataset: the decoded, resized `u8` pixels of every image in
//! one file, so that only the first run decodes.
//!
//! Location: `<root>/.wrnc-cache/<settings>-<content>.bin`. `settings` hashes the target
//! shape and the resize settings; `content` hashes, besides those, every image file's path
//! relative to the root, size and modification time (and its split and class). Any added,
//! removed, renamed, resized or touched file gives another `content`, so the whole cache is
//! decoded again; the new file replaces the older caches of the same settings (caches of other
//! shapes or resize settings are kept).
//!
//! Layout: the 8 bytes `WRNCDC01`, a little-endian `u64` header length, the JSON header
//! ([`Header`]: key, shape, number of files, the files that failed to decode with their
//! messages), then the pixels of the decoded images in file order (`C*H*W` bytes each).
//! A file that does not match exactly (other key, truncated, malformed) is ignored and
//! decoded again. It is written atomically (`wrnc_ir::atomic`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use wrnc_recipe::Resize;

/// Folder under the dataset root holding the cache files.
pub const CACHE_DIR: &str = ".wrnc-cache";

const MAGIC: &[u8; 8] = b"WRNCDC01";

/// Most header bytes read (a hostile header cannot make the reader allocate without bound).
const MAX_HEADER: u64 = 1 << 30;

/// What identifies a cache file: the settings part and the content part of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// Hex hash of the shape and resize settings.
    pub settings: String,
    /// Hex hash of the settings and every file's path, size and modification time.
    pub content: String,
}

impl CacheKey {
    /// The cache file of this key under `root`.
    pub fn path(&self, root: &Path) -> PathBuf {
        root.join(CACHE_DIR)
            .join(format!("{}-{}.bin", self.settings, self.content))
    }
}

/// One file as the key sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp<'a> {
    /// Split folder (`train`, `val`, `test`).
    pub split: &'a str,
    /// Class folder name.
    pub class: &'a str,
    /// Path relative to the root, `/`-separated.
    pub rel: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 when unknown).
    pub mtime_ns: i128,
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of decoding `files` (in this order) to `shape` with `resize`.
pub fn key<'a>(
    shape: [usize; 3],
    resize: Resize,
    files: impl IntoIterator<Item = FileStamp<'a>>,
) -> CacheKey {
    let mut h = Md5::new();
    h.update(format!(
        "wrnc decode cache 1 {shape:?} {:?} {:?}",
        resize.mode, resize.filter
    ));
    let settings = hex(&h.clone().finalize())[..16].to_string();
    for f in files {
        // Lengths first, so that no two different lists hash the same bytes.
        for part in [f.split, f.class, f.rel] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(f.size.to_le_bytes());
        h.update(f.mtime_ns.to_le_bytes());
    }
    CacheKey {
        settings,
        content: hex(&h.finalize()),
    }
}

/// The JSON header of a cache file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The content key ([`CacheKey::content`]).
    pub key: String,
    /// `[C, H, W]` of every image.
    pub shape: [usize; 3],
    /// Number of image files (decoded or not).
    pub files: usize,
    /// `(index, message)` of every file that could not be decoded, by file index.
    pub failed: Vec<(usize, String)>,
}

/// The decoded images of a folder: the pixels of the files that decoded, in file order, and
/// the files that did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// `C*H*W` bytes per decoded file, in file order.
    pub pixels: Vec<u8>,
    /// `(file index, message)` of every file that could not be decoded.
    pub failed: Vec<(usize, String)>,
}

/// Reads the cache file `path` when it holds exactly `files` images of `shape` for `key`;
/// `None` when it is absent, of another key or damaged in any way (then decode again).
pub fn read(path: &Path, key: &CacheKey, shape: [usize; 3], files: usize) -> Option<Decoded> {
    let mut f = std::fs::File::open(path).ok()?;
    let total = f.metadata().ok()?.len();
    let mut head = [0u8; 16];
    f.read_exact(&mut head).ok()?;
    if &head[..8] != MAGIC {
        return None;
    }
    let hlen = u64::from_le_bytes(head[8..16].try_into().ok()?);
    if hlen > MAX_HEADER || hlen > total.saturating_sub(16) {
        return None;
    }
    let mut hbytes = vec![0u8; hlen as usize];
    f.read_exact(&mut hbytes).ok()?;
    let header: Header = serde_json::from_slice(&hbytes).ok()?;
    if header.key != key.content || header.shape != shape || header.files != files {
        return None;
    }
    let ok = files.checked_sub(header.failed.len())?;
    let size = shape.iter().product::<usize>().checked_mul(ok)?;
    if 16 + hlen + size as u64 != total {
        return None;
    }
    let mut pixels = vec![0u8; size];
    f.read_exact(&mut pixels).ok()?;
    Some(Decoded {
        pixels,
        failed: header.failed,
    })
}

/// Writes `decoded` as the cache file of `key` under `root` (atomically), removes the older
/// cache files of the same settings, and returns the file's path and size in bytes.
pub fn write(
    root: &Path,
    key: &CacheKey,
    shape: [usize; 3],
    files: usize,
    decoded: &Decoded,
) -> std::io::Result<(PathBuf, u64)> {
    let dir = root.join(CACHE_DIR);
    std::fs::create_dir_all(&dir)?;
    let path = key.path(root);
    let header = serde_json::to_vec(&Header {
        key: key.content.clone(),
        shape,
        files,
        failed: decoded.failed.clone(),
    })
    .map_err(std::io::Error::other)?;
    wrnc_ir::atomic::write_atomic_with(&path, |f| {
        let mut w = std::io::BufWriter::new(f);
        w.write_all(MAGIC)?;
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        w.write_all(&decoded.pixels)?;
        w.flush()
    })?;
    let prefix = format!("{}-", key.settings);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(&prefix) && name.ends_with(".bin") && e.path() != path {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let bytes = std::fs::metadata(&path)?.len();
    Ok((path, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp<'a>(rel: &'a str, mtime_ns: i128) -> FileStamp<'a> {
        FileStamp {
            split: "train",
            class: "a",
            rel,
            size: 10,
            mtime_ns,
        }
    }

    #[test]
    fn key_follows_files_and_settings() {
        let r = Resize::default();
        let k1 = key([1, 2, 2], r, [stamp("train/a/1.png", 5)]);
        assert_eq!(k1, key([1, 2, 2], r, [stamp("train/a/1.png", 5)]));
        assert_ne!(k1, key([1, 2, 2], r, [stamp("train/a/1.png", 6)]));
        let more = key([1, 2, 2], r, [stamp("train/a/1.png", 5), stamp("x", 1)]);
        assert_ne!(k1.content, more.content);
        assert_eq!(k1.settings, more.settings);
        let other = key([3, 2, 2], r, [stamp("train/a/1.png", 5)]);
        assert_ne!(k1.settings, other.settings);
    }

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let k = key([1, 1, 2], Resize::default(), [stamp("a", 1)]);
        let d = Decoded {
            pixels: vec![1, 2, 3, 4],
            failed: vec![(1, "bad".into())],
        };
        let (path, bytes) = write(dir.path(), &k, [1, 1, 2], 3, &d).unwrap();
        assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(read(&path, &k, [1, 1, 2], 3), Some(d.clone()));
        assert_eq!(read(&path, &k, [1, 1, 2], 4), None);
        assert_eq!(read(&path, &k, [1, 2, 1], 3), None);
        // A newer cache of the same settings replaces it.
        let k2 = key([1, 1, 2], Resize::default(), [stamp("a", 2)]);
        let (path2, _) = write(dir.path(), &k2, [1, 1, 2], 3, &d).unwrap();
        assert!(!path.exists() && path2.exists());
        // Truncated: ignored.
        let len = std::fs::metadata(&path2).unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path2)
            .unwrap();
        f.set_len(len - 1).unwrap();
        assert_eq!(read(&path2, &k2, [1, 1, 2], 3), None);
    }
}
