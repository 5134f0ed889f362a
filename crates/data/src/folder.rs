//! Image-folder datasets (`data.dataset: folder`): `root/train/<class>/<image>`, optionally
//! `root/val/<class>/<image>` and `root/test/<class>/<image>`.
//!
//! * Classes are the sub-folder names of `train/`, sorted (byte order); `val/` and `test/`
//!   must have the same class folders.
//! * Images are the PNG and JPEG files ([`crate::pixels::IMAGE_EXTENSIONS`], any case) under a
//!   class folder, searched recursively, in sorted path order. Hidden files and folders (names
//!   starting with `.`), other files, and files directly in a split folder are ignored and
//!   counted.
//! * Every image is decoded once, in parallel, converted and resized to the model's
//!   `[C, H, W]` ([`crate::pixels`]) and stored in the decode cache ([`crate::cache`]); later
//!   loads read the cache.
//! * An image that cannot be decoded is an error naming it, or is left out and reported with
//!   [`BadImages::Skip`].
//! * Without `val/`, `val_size` images are held out of `train/` as for the built-in datasets
//!   (with `val/`, `val_size` must be 0). Without `test/`, the validation split is also the
//!   test split (a note says so); a folder with neither and `val_size` 0 is refused.

use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use rayon::prelude::*;
use wrnc_recipe::{BadImages, DataConfig, Resize};

use crate::cache::{self, CacheKey, Decoded, FileStamp};
use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, Result};
use crate::pixels;
use crate::split::{make_splits, Splits};

/// The split folders, in order.
pub const SPLIT_DIRS: [&str; 3] = ["train", "val", "test"];

/// Files shown by name in reports of ignored or skipped files.
pub const SHOWN_FILES: usize = 5;

/// Images decoded between two progress reports.
const CHUNK: usize = 256;

/// Deepest folder nesting searched under a class folder (a symbolic-link loop stops here
/// with an error instead of recursing for ever).
pub const MAX_DEPTH: usize = 32;

/// How to load a folder dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderOptions {
    /// The dataset folder (`data.root`).
    pub root: PathBuf,
    /// `[C, H, W]` the images are brought to (`model.input`; C is 1 or 3).
    pub shape: [usize; 3],
    /// How images of another size are resized.
    pub resize: Resize,
    /// What an undecodable image does.
    pub bad_images: BadImages,
    /// Images held out of `train/` for validation when there is no `val/`.
    pub val_size: usize,
    /// Seed of that split.
    pub split_seed: u64,
}

impl FolderOptions {
    /// The options of a `data` section for a model taking `shape` images.
    pub fn from_config(cfg: &DataConfig, shape: [usize; 3]) -> Self {
        FolderOptions {
            root: cfg.root_dir(),
            shape,
            resize: cfg.resize,
            bad_images: cfg.bad_images,
            val_size: cfg.val_size,
            split_seed: cfg.split_seed,
        }
    }
}

/// One image file found under a class folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// Index into [`SPLIT_DIRS`].
    pub split: usize,
    /// Class index.
    pub label: u32,
    /// Path relative to the root, `/`-separated.
    pub rel: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 when unknown).
    pub mtime_ns: i128,
}

/// What [`scan`] finds in a dataset folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The dataset folder.
    pub root: PathBuf,
    /// Class names (the class folders of `train/`, sorted).
    pub classes: Vec<String>,
    /// Which split folders exist (`train`, `val`, `test`).
    pub present: [bool; 3],
    /// The image files, split by split, class by class, in sorted path order.
    pub files: Vec<ImageFile>,
    /// Ignored entries: hidden files and folders, non-image files, files outside class
    /// folders.
    pub ignored: Vec<PathBuf>,
}

impl Scan {
    /// The full path of `f`.
    pub fn path(&self, f: &ImageFile) -> PathBuf {
        self.root.join(&f.rel)
    }
}

/// Decoding progress, reported after each chunk of images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeProgress {
    /// Images decoded so far.
    pub done: usize,
    /// Images to decode.
    pub total: usize,
}

/// How the decode cache was used.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheOutcome {
    /// The cache file.
    pub path: PathBuf,
    /// Its size in bytes (0 when it could not be written).
    pub bytes: u64,
    /// Images decoded by this load (0 when the cache was read).
    pub decoded: usize,
    /// Seconds spent decoding (0 when the cache was read).
    pub decode_seconds: f64,
    /// Why the cache could not be written, when it could not (training goes on).
    pub write_error: Option<String>,
}

impl CacheOutcome {
    /// Whether the images came from the cache, without decoding.
    pub fn hit(&self) -> bool {
        self.decoded == 0
    }

    /// Images decoded per second (0 when nothing was decoded).
    pub fn images_per_sec(&self) -> f64 {
        if self.decode_seconds > 0.0 {
            self.decoded as f64 / self.decode_seconds
        } else {
            0.0
        }
    }
}

/// What loading a folder found, for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderReport {
    /// The dataset folder.
    pub root: PathBuf,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Images used from `train/`, `val/` and `test/`.
    pub counts: [usize; 3],
    /// Ignored entries (hidden, not PNG/JPEG, outside class folders).
    pub ignored: Vec<PathBuf>,
    /// Images that could not be decoded and were skipped, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// The decode cache.
    pub cache: CacheOutcome,
    /// Things the user should know (e.g. no `test/` folder).
    pub notes: Vec<String>,
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |e| DataError::io("listing", dir, e);
    let mut v = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io)?;
    v.sort();
    Ok(v)
}

fn rel_path(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The image files under `dir` (recursively), and what was ignored there.
fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    files: &mut Vec<(String, u64, i128)>,
    ignored: &mut Vec<PathBuf>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(DataError::folder(
            dir,
            format!(
                "folders are nested more than {MAX_DEPTH} deep under a class folder (a \
                 symbolic link to a parent folder?)"
            ),
        ));
    }
    for p in read_dir_sorted(dir)? {
        if pixels::is_hidden(&p) {
            ignored.push(p);
        } else if p.is_dir() {
            walk(root, &p, depth + 1, files, ignored)?;
        } else if pixels::has_image_extension(&p) {
            let m = std::fs::metadata(&p).map_err(|e| DataError::io("reading", &p, e))?;
            files.push((rel_path(root, &p), m.len(), mtime_ns(&m)));
        } else {
            ignored.push(p);
        }
    }
    Ok(())
}

/// The class folders of a split folder, sorted, with their image files; entries that are not
/// class folders are ignored.
type ClassFiles = Vec<(String, Vec<(String, u64, i128)>)>;

fn scan_split(root: &Path, dir: &Path, ignored: &mut Vec<PathBuf>) -> Result<ClassFiles> {
    let mut classes = Vec::new();
    for p in read_dir_sorted(dir)? {
        if pixels::is_hidden(&p) || !p.is_dir() {
            ignored.push(p);
            continue;
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut files = Vec::new();
        walk(root, &p, 0, &mut files, ignored)?;
        classes.push((name, files));
    }
    Ok(classes)
}

fn backticked(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The class names of a dataset folder: the class folders of `root/train`, sorted.
pub fn class_names(root: &Path) -> Result<Vec<String>> {
    Ok(scan(root)?.classes)
}

/// Finds the classes and image files of the dataset folder `root`, checking its layout:
/// `train/` exists with at least 2 class folders, each split folder has the same class
/// folders, and every class folder holds at least one image.
pub fn scan(root: &Path) -> Result<Scan> {
    const LAYOUT: &str = "a folder dataset is laid out as ROOT/train/<class>/<image> (PNG or \
                          JPEG), with optional ROOT/val/<class>/... and ROOT/test/<class>/...";
    if !root.is_dir() {
        return Err(DataError::folder(
            root,
            format!(
                "the dataset folder (data.root) {}; {LAYOUT}",
                if root.exists() {
                    "is not a folder"
                } else {
                    "does not exist"
                }
            ),
        ));
    }
    let train_dir = root.join(SPLIT_DIRS[0]);
    if !train_dir.is_dir() {
        return Err(DataError::folder(
            root,
            format!("there is no train/ folder; {LAYOUT}"),
        ));
    }
    let mut ignored = Vec::new();
    let mut present = [false; 3];
    let mut per_split: Vec<(usize, ClassFiles)> = Vec::new();
    for (i, name) in SPLIT_DIRS.iter().enumerate() {
        let dir = root.join(name);
        if !dir.is_dir() {
            continue;
        }
        present[i] = true;
        per_split.push((i, scan_split(root, &dir, &mut ignored)?));
    }
    let classes: Vec<String> = per_split[0].1.iter().map(|(c, _)| c.clone()).collect();
    match classes.len() {
        0 => {
            return Err(DataError::folder(
                &train_dir,
                format!("holds no class folders; {LAYOUT}"),
            ))
        }
        1 => {
            return Err(DataError::folder(
                &train_dir,
                format!(
                    "holds one class folder (`{}`); a classifier needs at least 2 classes",
                    classes[0]
                ),
            ))
        }
        _ => {}
    }
    let mut files = Vec::new();
    for (split, class_files) in &per_split {
        let dir = root.join(SPLIT_DIRS[*split]);
        let names: Vec<&String> = class_files.iter().map(|(c, _)| c).collect();
        if names.iter().copied().ne(classes.iter()) {
            let missing: Vec<&String> = classes.iter().filter(|c| !names.contains(c)).collect();
            let extra: Vec<&String> = names
                .iter()
                .copied()
                .filter(|c| !classes.contains(c))
                .collect();
            let mut what = Vec::new();
            if !missing.is_empty() {
                what.push(format!("missing {}", backticked(&missing)));
            }
            if !extra.is_empty() {
                what.push(format!("extra {}", backticked(&extra)));
            }
            return Err(DataError::folder(
                &dir,
                format!(
                    "its class folders differ from train/'s: {}; every split folder must \
                     have the same class folders ({})",
                    what.join("; "),
                    backticked(&classes.iter().collect::<Vec<_>>())
                ),
            ));
        }
        for (label, (class, list)) in class_files.iter().enumerate() {
            if list.is_empty() {
                return Err(DataError::folder(
                    dir.join(class),
                    "this class folder holds no PNG or JPEG images; every class needs at \
                     least one image in every split folder",
                ));
            }
            files.extend(list.iter().map(|(rel, size, mtime_ns)| ImageFile {
                split: *split,
                label: label as u32,
                rel: rel.clone(),
                size: *size,
                mtime_ns: *mtime_ns,
            }));
        }
    }
    Ok(Scan {
        root: root.to_path_buf(),
        classes,
        present,
        files,
        ignored,
    })
}

/// The cache key of decoding the scanned files to `shape` with `resize`.
pub fn cache_key(scan: &Scan, shape: [usize; 3], resize: Resize) -> CacheKey {
    cache::key(
        shape,
        resize,
        scan.files.iter().map(|f| FileStamp {
            split: SPLIT_DIRS[f.split],
            class: &scan.classes[f.label as usize],
            rel: &f.rel,
            size: f.size,
            mtime_ns: f.mtime_ns,
        }),
    )
}

/// Decodes every scanned file to `shape` (in parallel, `progress` called after each chunk on
/// the calling thread).
fn decode_all(
    scan: &Scan,
    shape: [usize; 3],
    resize: Resize,
    progress: &mut dyn FnMut(DecodeProgress),
) -> Decoded {
    let total = scan.files.len();
    let size: usize = shape.iter().product();
    let mut pixels = Vec::with_capacity(total * size);
    let mut failed = Vec::new();
    progress(DecodeProgress { done: 0, total });
    for (c, chunk) in scan.files.chunks(CHUNK).enumerate() {
        let out: Vec<std::result::Result<Vec<u8>, String>> = chunk
            .par_iter()
            .map(|f| {
                let img = pixels::decode_file(&scan.path(f))?;
                pixels::to_model_pixels(&img, shape, resize)
            })
            .collect();
        for (i, r) in out.into_iter().enumerate() {
            match r {
                Ok(p) => pixels.extend_from_slice(&p),
                Err(m) => failed.push((c * CHUNK + i, m)),
            }
        }
        progress(DecodeProgress {
            done: (c * CHUNK + chunk.len()).min(total),
            total,
        });
    }
    Decoded { pixels, failed }
}

/// Loads the folder dataset of `opts`: scans it, reads the decode cache or decodes (and
/// writes the cache), applies the bad-image policy and makes the splits.
pub fn load_folder(
    opts: &FolderOptions,
    progress: &mut dyn FnMut(DecodeProgress),
) -> Result<(Splits, FolderReport)> {
    let [c, _, _] = opts.shape;
    if c != 1 && c != 3 {
        return Err(DataError::invalid(
            "folder dataset",
            format!(
                "model.input has {c} channels; images can be read as 1 (grey) or 3 (RGB) \
                 channels"
            ),
        ));
    }
    let scan = scan(&opts.root)?;
    if scan.present[1] && opts.val_size > 0 {
        return Err(DataError::folder(
            scan.root.join(SPLIT_DIRS[1]),
            format!(
                "the folder has a val/ folder, so data.val_size must be 0 (got {}): the \
                 validation images come from val/",
                opts.val_size
            ),
        ));
    }
    if !scan.present[1] && !scan.present[2] && opts.val_size == 0 {
        return Err(DataError::folder(
            &scan.root,
            "there is neither a val/ nor a test/ folder, so nothing to evaluate on: add one, \
             or set data.val_size to hold images of train/ out for validation",
        ));
    }
    let key = cache_key(&scan, opts.shape, opts.resize);
    let cache_path = key.path(&scan.root);
    let n = scan.files.len();
    let (decoded, outcome) = match cache::read(&cache_path, &key, opts.shape, n) {
        Some(d) => {
            let bytes = std::fs::metadata(&cache_path).map_or(0, |m| m.len());
            let outcome = CacheOutcome {
                path: cache_path,
                bytes,
                decoded: 0,
                decode_seconds: 0.0,
                write_error: None,
            };
            (d, outcome)
        }
        None => {
            let t = Instant::now();
            let d = decode_all(&scan, opts.shape, opts.resize, progress);
            let decode_seconds = t.elapsed().as_secs_f64().max(1e-9);
            let (path, bytes, write_error) = match cache::write(&scan.root, &key, opts.shape, n, &d)
            {
                Ok((p, b)) => (p, b, None),
                Err(e) => (cache_path, 0, Some(e.to_string())),
            };
            let outcome = CacheOutcome {
                path,
                bytes,
                decoded: n,
                decode_seconds,
                write_error,
            };
            (d, outcome)
        }
    };
    if let Some((i, m)) = decoded.failed.first() {
        if opts.bad_images == BadImages::Error {
            return Err(DataError::BadImage {
                path: scan.path(&scan.files[*i]),
                message: m.clone(),
                others: decoded.failed.len() - 1,
            });
        }
    }
    let skipped: Vec<(PathBuf, String)> = decoded
        .failed
        .iter()
        .map(|(i, m)| (scan.path(&scan.files[*i]), m.clone()))
        .collect();
    let (sets, counts) = assemble(&scan, opts.shape, &decoded)?;
    let mut notes = Vec::new();
    let [train, val, test] = sets;
    let train = train.ok_or_else(|| DataError::invalid("folder dataset", "no train/ split"))?;
    let splits = match (val, test) {
        (Some(val), Some(test)) => Splits {
            train,
            val: Some(val),
            test,
        },
        (Some(val), None) => {
            notes.push(format!(
                "{} has no test/ folder: the val/ images are also the test split",
                scan.root.display()
            ));
            Splits {
                train,
                val: Some(val.clone()),
                test: val,
            }
        }
        (None, test) => {
            let has_test = test.is_some();
            // A stand-in test set while splitting; replaced below when there is no test/.
            let test = test.unwrap_or_else(|| train.clone());
            let mut s = make_splits(TrainTest { train, test }, opts.val_size, opts.split_seed)?;
            if !has_test {
                if let Some(v) = &s.val {
                    notes.push(format!(
                        "{} has no test/ folder: the {} validation images held out of train/ \
                         are also the test split",
                        scan.root.display(),
                        v.len()
                    ));
                    s.test = v.clone();
                }
            }
            s
        }
    };
    Ok((
        splits,
        FolderReport {
            root: scan.root.clone(),
            classes: scan.classes.clone(),
            counts,
            ignored: scan.ignored.clone(),
            skipped,
            cache: outcome,
            notes,
        },
    ))
}

/// The datasets of the split folders that exist, from the decoded pixels (skipped files
/// left out), and their image counts; a class left without images is an error.
fn assemble(
    scan: &Scan,
    shape: [usize; 3],
    decoded: &Decoded,
) -> Result<([Option<Dataset>; 3], [usize; 3])> {
    let size: usize = shape.iter().product();
    let mut images: [Vec<u8>; 3] = Default::default();
    let mut labels: [Vec<u32>; 3] = Default::default();
    let mut failed = decoded.failed.iter().map(|(i, _)| *i).peekable();
    let mut next = 0usize;
    for (i, f) in scan.files.iter().enumerate() {
        if failed.peek() == Some(&i) {
            failed.next();
            continue;
        }
        let px = decoded
            .pixels
            .get(next * size..(next + 1) * size)
            .ok_or_else(|| DataError::invalid("decode cache", "fewer pixels than images"))?;
        images[f.split].extend_from_slice(px);
        labels[f.split].push(f.label);
        next += 1;
    }
    let mut sets: [Option<Dataset>; 3] = Default::default();
    let mut counts = [0usize; 3];
    for s in 0..3 {
        if !scan.present[s] {
            continue;
        }
        let ds = Dataset::new(
            std::mem::take(&mut images[s]),
            std::mem::take(&mut labels[s]),
            shape,
            scan.classes.clone(),
        )?;
        if let Some(empty) = ds.class_histogram().iter().position(|&n| n == 0) {
            return Err(DataError::folder(
                scan.root.join(SPLIT_DIRS[s]).join(&scan.classes[empty]),
                "none of this class folder's images could be decoded; every class needs at \
                 least one image in every split folder",
            ));
        }
        counts[s] = ds.len();
        sets[s] = Some(ds);
    }
    Ok((sets, counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma};

    /// Writes a `size x size` grey PNG of value `v`.
    fn png(path: &Path, size: u32, v: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        GrayImage::from_pixel(size, size, Luma([v]))
            .save(path)
            .unwrap();
    }

    fn opts(root: &Path) -> FolderOptions {
        FolderOptions {
            root: root.to_path_buf(),
            shape: [1, 4, 4],
            resize: Resize::default(),
            bad_images: BadImages::Error,
            val_size: 0,
            split_seed: 1,
        }
    }

    /// train/{a,b} with 3 images each, test/{a,b} with 1 each, plus ignored files.
    fn sample(root: &Path) {
        for (i, class) in ["a", "b"].iter().enumerate() {
            for k in 0..3 {
                png(
                    &root.join(format!("train/{class}/{k}.png")),
                    8,
                    100 * i as u8 + k,
                );
            }
            png(&root.join(format!("test/{class}/t.png")), 4, 7);
        }
        std::fs::write(root.join("train/a/notes.txt"), "x").unwrap();
        std::fs::write(root.join("train/b/.DS_Store"), "x").unwrap();
        std::fs::write(root.join("train/README"), "x").unwrap();
    }

    fn load(o: &FolderOptions) -> Result<(Splits, FolderReport)> {
        load_folder(o, &mut |_| {})
    }

    #[test]
    fn loads_layout_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let (s, r) = load(&opts(dir.path())).unwrap();
        assert_eq!(r.classes, vec!["a", "b"]);
        assert_eq!(s.train.len(), 6);
        assert_eq!(s.test.len(), 2);
        assert!(s.val.is_none());
        assert_eq!(s.train.labels(), &[0, 0, 0, 1, 1, 1]);
        // 8x8 -> 4x4 of a flat image keeps its value.
        assert!(s.train.image(4).unwrap().iter().all(|&v| v == 101));
        assert_eq!(r.ignored.len(), 3);
        assert_eq!(r.cache.decoded, 8);
        assert!(r.cache.bytes > 0 && r.cache.path.exists());
        // The second load reads the cache.
        let (s2, r2) = load(&opts(dir.path())).unwrap();
        assert!(r2.cache.hit());
        assert_eq!(s2, s);
        // Touching (rewriting) one file decodes everything again.
        png(&dir.path().join("train/a/0.png"), 8, 55);
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join("train/a/0.png"))
            .unwrap();
        f.set_modified(t).unwrap();
        let (s3, r3) = load(&opts(dir.path())).unwrap();
        assert_eq!(r3.cache.decoded, 8);
        assert!(s3.train.image(0).unwrap().iter().all(|&v| v == 55));
        // Only one cache file of these settings is kept.
        let caches = std::fs::read_dir(dir.path().join(cache::CACHE_DIR))
            .unwrap()
            .count();
        assert_eq!(caches, 1);
    }

    #[test]
    fn bad_images_and_splits() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        std::fs::write(dir.path().join("train/b/broken.png"), b"not a png").unwrap();
        let e = load(&opts(dir.path())).unwrap_err();
        assert!(e.is_user_input());
        let m = e.to_string();
        assert!(
            m.contains("broken.png") && m.contains("bad_images: skip"),
            "{m}"
        );
        let o = FolderOptions {
            bad_images: BadImages::Skip,
            val_size: 2,
            ..opts(dir.path())
        };
        let (s, r) = load(&o).unwrap();
        assert_eq!(r.skipped.len(), 1);
        assert!(r.skipped[0].0.ends_with("train/b/broken.png"));
        assert_eq!((s.train.len(), s.val.as_ref().unwrap().len()), (4, 2));
        // No test/: the validation split is the test split too, with a note.
        std::fs::remove_dir_all(dir.path().join("test")).unwrap();
        let (s, r) = load(&o).unwrap();
        assert_eq!(s.val.as_ref(), Some(&s.test));
        assert!(r.notes[0].contains("no test/"), "{:?}", r.notes);
        // Neither val/ nor test/ nor val_size: nothing to evaluate on.
        let e = load(&FolderOptions {
            val_size: 0,
            ..o.clone()
        })
        .unwrap_err();
        assert!(e.to_string().contains("neither a val/ nor a test/"), "{e}");
    }

    #[test]
    fn layout_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let msg = |o: &FolderOptions| load(o).unwrap_err().to_string();
        assert!(msg(&opts(&root.join("nope"))).contains("does not exist"));
        assert!(msg(&opts(root)).contains("no train/ folder"));
        png(&root.join("train/a/1.png"), 4, 1);
        png(&root.join("test/a/1.png"), 4, 1);
        assert!(msg(&opts(root)).contains("one class folder (`a`)"));
        std::fs::create_dir_all(root.join("train/b")).unwrap();
        let m = msg(&opts(root));
        assert!(
            m.contains("train/b") && m.contains("holds no PNG or JPEG"),
            "{m}"
        );
        png(&root.join("train/b/1.png"), 4, 1);
        png(&root.join("test/c/1.png"), 4, 1);
        let m = msg(&opts(root));
        assert!(m.contains("missing `b`") && m.contains("extra `c`"), "{m}");
        let e = load(&FolderOptions {
            shape: [2, 4, 4],
            ..opts(root)
        })
        .unwrap_err();
        assert!(e.to_string().contains("2 channels"), "{e}");
        // A symbolic link to a parent folder is an error, not an endless walk.
        #[cfg(unix)]
        {
            std::fs::remove_dir_all(root.join("test/c")).unwrap();
            std::os::unix::fs::symlink(root.join("train"), root.join("train/a/loop")).unwrap();
            let m = msg(&opts(root));
            assert!(m.contains("nested more than"), "{m}");
        }
    }
}
