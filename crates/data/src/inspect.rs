//! `wrnc data inspect DIR`: what an image-folder dataset holds, before training on it.
//!
//! The layout is `DIR/<split>/<class>/...` with the splits `train`, `val` and `test` (each
//! optional; other folders at the top are ignored and listed). Every file under a class
//! folder (sub-folders included) is looked at: hidden files (a name starting with `.`) and
//! files whose extension is not `.png`, `.jpg` or `.jpeg` (any case) are skipped, files
//! directly inside a split folder (outside any class) too; every other file is decoded in
//! full (in parallel, with the same limits as `wrnc predict`: at most 32,768 pixels a side and
//! 512 MiB of decoder memory; a file over 512 MiB is not read), and one that does not decode
//! is corrupt. The report
//! ([`InspectReport`]) gives the image count of each class in each split, a histogram of
//! the image sizes and pixel modes, the skipped and corrupt files, the files whose content
//! (SHA-256) appears in more than one split, and a spec snippet to start from
//! ([`InspectReport::spec_snippet`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// The split folders looked for, in order.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];
/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// Largest image side decoded, in pixels (as `wrnc predict`).
pub const MAX_SIDE: u32 = 32_768;
/// Most decoder memory per image, in bytes (as `wrnc predict`).
pub const MAX_DECODER_BYTES: u64 = 512 << 20;

/// Why a file was not read as an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Its name starts with `.`.
    Hidden,
    /// Its extension is not `.png`, `.jpg` or `.jpeg`.
    NotAnImage,
    /// It lies directly in a split folder, outside every class folder.
    OutsideClass,
}

impl SkipReason {
    /// Short description.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Hidden => "hidden",
            SkipReason::NotAnImage => "not PNG/JPEG",
            SkipReason::OutsideClass => "outside a class folder",
        }
    }
}

/// A skipped file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Path relative to the dataset folder.
    pub path: String,
    /// Why.
    pub reason: SkipReason,
}

/// A file that did not decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Corrupt {
    /// Path relative to the dataset folder.
    pub path: String,
    /// The decoder's message.
    pub error: String,
}

/// How many images have one size and pixel mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShapeCount {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel mode as decoded: `L8`, `LA8`, `RGB8`, `RGBA8`, `L16`, `LA16`, `RGB16`, `RGBA16`,
    /// ...
    pub mode: String,
    /// Number of images.
    pub count: usize,
}

/// Square input sides [`InspectReport::suggested_input`] chooses from for images of varied
/// sizes (MNIST's 28, CIFAR's 32, ImageNet's 224, and the usual steps between).
pub const STANDARD_SIDES: [usize; 11] = [8, 16, 28, 32, 48, 64, 96, 128, 160, 224, 256];

impl ShapeCount {
    /// `32x32 RGB8`.
    pub fn label(&self) -> String {
        format!("{}x{} {}", self.width, self.height, self.mode)
    }

    /// The channels a network takes for this mode: 1 for grey (with or without alpha), 3
    /// otherwise (alpha dropped).
    pub fn channels(&self) -> usize {
        if self.mode.starts_with('L') {
            1
        } else {
            3
        }
    }
}

/// One split folder: images per class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitReport {
    /// `train`, `val` or `test`.
    pub name: String,
    /// Decoded images per class folder (sorted by class; a class folder without images
    /// counts 0).
    pub classes: BTreeMap<String, usize>,
}

impl SplitReport {
    /// Decoded images in the split.
    pub fn images(&self) -> usize {
        self.classes.values().sum()
    }
}

/// Everything `wrnc data inspect` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InspectReport {
    /// The dataset folder.
    pub root: PathBuf,
    /// The split folders found, in `train`, `val`, `test` order.
    pub splits: Vec<SplitReport>,
    /// Every class folder name of any split, sorted.
    pub classes: Vec<String>,
    /// Image sizes and modes, most frequent first.
    pub shapes: Vec<ShapeCount>,
    /// Files not read as images.
    pub skipped: Vec<Skipped>,
    /// Files that did not decode.
    pub corrupt: Vec<Corrupt>,
    /// Groups of files with the same content in more than one split (paths relative to the
    /// dataset folder, sorted).
    pub cross_split_duplicates: Vec<Vec<String>>,
    /// Top-level entries that are not split folders.
    pub ignored: Vec<String>,
}

/// One file to decode: its split, class and path relative to the root.
struct Candidate {
    split: usize,
    class: String,
    rel: String,
    path: PathBuf,
}

/// What decoding one file found.
enum Outcome {
    Image {
        width: u32,
        height: u32,
        mode: String,
        hash: [u8; 32],
    },
    Corrupt(String),
}

fn io(action: &'static str, path: &Path, e: std::io::Error) -> DataError {
    DataError::Io {
        action,
        path: path.to_path_buf(),
        source: e,
    }
}

/// The entries of a folder, sorted by name.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, std::fs::FileType)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io("listing", dir, e))? {
        let e = e.map_err(|e| io("listing", dir, e))?;
        let ft = e.file_type().map_err(|err| io("reading", &e.path(), err))?;
        v.push((e.file_name().to_string_lossy().into_owned(), e.path(), ft));
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// `rel/name` with `/` separators.
fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// The decision for one file name: skipped (why) or read.
fn classify(name: &str) -> Option<SkipReason> {
    if name.starts_with('.') {
        return Some(SkipReason::Hidden);
    }
    let ext = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext {
        Some(e) if IMAGE_EXTENSIONS.contains(&e.as_str()) => None,
        _ => Some(SkipReason::NotAnImage),
    }
}

/// Collects the files under a class folder (recursively), sorting them into candidates and
/// skipped files. Hidden folders are skipped whole (and counted as one entry).
fn walk_class(
    dir: &Path,
    rel: &str,
    split: usize,
    class: &str,
    out: &mut Vec<Candidate>,
    skipped: &mut Vec<Skipped>,
) -> Result<()> {
    for (name, path, ft) in entries(dir)? {
        let r = join(rel, &name);
        if ft.is_dir() {
            if name.starts_with('.') {
                skipped.push(Skipped {
                    path: r,
                    reason: SkipReason::Hidden,
                });
            } else {
                walk_class(&path, &r, split, class, out, skipped)?;
            }
            continue;
        }
        match classify(&name) {
            Some(reason) => skipped.push(Skipped { path: r, reason }),
            None => out.push(Candidate {
                split,
                class: class.to_string(),
                rel: r,
                path,
            }),
        }
    }
    Ok(())
}

/// Decodes one file in full with the decoder limits, hashing its bytes.
fn decode(path: &Path) -> Outcome {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_DECODER_BYTES => {
            return Outcome::Corrupt(format!(
                "{} bytes, more than the {MAX_DECODER_BYTES}-byte limit of an image file",
                m.len()
            ))
        }
        Ok(_) => {}
        Err(e) => return Outcome::Corrupt(format!("cannot read: {e}")),
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Outcome::Corrupt(format!("cannot read: {e}")),
    };
    let hash: [u8; 32] = Sha256::digest(&bytes).into();
    let mut reader =
        match image::ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format() {
            Ok(r) => r,
            Err(e) => return Outcome::Corrupt(e.to_string()),
        };
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODER_BYTES);
    reader.limits(limits);
    match reader.decode() {
        Ok(img) => Outcome::Image {
            width: img.width(),
            height: img.height(),
            mode: format!("{:?}", img.color()).to_ascii_uppercase(),
            hash,
        },
        Err(e) => Outcome::Corrupt(e.to_string()),
    }
}

/// Decodes every candidate on all cores; results in candidate order.
fn decode_all(cands: &[Candidate]) -> Vec<Outcome> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(cands.len().max(1));
    let chunk = cands.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = cands
            .chunks(chunk)
            .map(|part| {
                let h = s.spawn(move || part.iter().map(|c| decode(&c.path)).collect::<Vec<_>>());
                (part.len(), h)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(n, h)| {
                // A decoder that panicked marks its whole chunk, keeping the order.
                h.join().unwrap_or_else(|_| {
                    (0..n)
                        .map(|_| Outcome::Corrupt("the decoder failed".into()))
                        .collect()
                })
            })
            .collect()
    })
}

/// Inspects the image-folder dataset in `dir` (see the module docs). Fails when `dir` cannot
/// be listed or holds none of `train/`, `val/`, `test/`.
pub fn inspect(dir: &Path) -> Result<InspectReport> {
    let mut splits = Vec::new();
    let mut ignored = Vec::new();
    let mut skipped = Vec::new();
    let mut cands = Vec::new();
    let top = entries(dir)?;
    for (name, _, ft) in &top {
        if !(ft.is_dir() && SPLITS.contains(&name.as_str())) {
            ignored.push(name.clone());
        }
    }
    for split in SPLITS {
        let Some((_, path, _)) = top.iter().find(|(n, _, ft)| n == split && ft.is_dir()) else {
            continue;
        };
        let index = splits.len();
        let mut classes = BTreeMap::new();
        for (name, p, ft) in entries(path)? {
            let rel = join(split, &name);
            if !ft.is_dir() {
                skipped.push(Skipped {
                    path: rel,
                    reason: classify(&name).unwrap_or(SkipReason::OutsideClass),
                });
            } else if name.starts_with('.') {
                skipped.push(Skipped {
                    path: rel,
                    reason: SkipReason::Hidden,
                });
            } else {
                classes.insert(name.clone(), 0usize);
                walk_class(&p, &rel, index, &name, &mut cands, &mut skipped)?;
            }
        }
        splits.push(SplitReport {
            name: split.to_string(),
            classes,
        });
    }
    if splits.is_empty() {
        return Err(DataError::invalid(
            "image folder",
            format!(
                "{} holds none of the split folders train/, val/, test/ (the layout is \
                 DIR/train/<class>/*.png)",
                dir.display()
            ),
        ));
    }

    let outcomes = decode_all(&cands);
    let mut corrupt = Vec::new();
    let mut shapes: HashMap<(u32, u32, String), usize> = HashMap::new();
    let mut by_hash: HashMap<[u8; 32], Vec<(usize, String)>> = HashMap::new();
    for (i, c) in cands.iter().enumerate() {
        match outcomes.get(i) {
            Some(Outcome::Image {
                width,
                height,
                mode,
                hash,
            }) => {
                *shapes.entry((*width, *height, mode.clone())).or_default() += 1;
                if let Some(n) = splits[c.split].classes.get_mut(&c.class) {
                    *n += 1;
                }
                by_hash
                    .entry(*hash)
                    .or_default()
                    .push((c.split, c.rel.clone()));
            }
            Some(Outcome::Corrupt(e)) => corrupt.push(Corrupt {
                path: c.rel.clone(),
                error: e.clone(),
            }),
            None => corrupt.push(Corrupt {
                path: c.rel.clone(),
                error: "the decoder failed".into(),
            }),
        }
    }
    let mut shapes: Vec<ShapeCount> = shapes
        .into_iter()
        .map(|((width, height, mode), count)| ShapeCount {
            width,
            height,
            mode,
            count,
        })
        .collect();
    shapes.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then((a.width, a.height).cmp(&(b.width, b.height)))
            .then(a.mode.cmp(&b.mode))
    });
    let mut dups: Vec<Vec<String>> = by_hash
        .into_values()
        .filter(|files| files.iter().any(|(s, _)| *s != files[0].0))
        .map(|files| {
            let mut v: Vec<String> = files.into_iter().map(|(_, r)| r).collect();
            v.sort();
            v
        })
        .collect();
    dups.sort();
    let mut classes: Vec<String> = splits
        .iter()
        .flat_map(|s| s.classes.keys().cloned())
        .collect();
    classes.sort();
    classes.dedup();
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(InspectReport {
        root: dir.to_path_buf(),
        splits,
        classes,
        shapes,
        skipped,
        corrupt,
        cross_split_duplicates: dups,
        ignored,
    })
}

impl InspectReport {
    /// The split named `name`, when the folder has it.
    pub fn split(&self, name: &str) -> Option<&SplitReport> {
        self.splits.iter().find(|s| s.name == name)
    }

    /// Decoded images in all splits.
    pub fn images(&self) -> usize {
        self.splits.iter().map(SplitReport::images).sum()
    }

    /// The most frequent size and mode (None when no image decoded).
    pub fn most_common(&self) -> Option<&ShapeCount> {
        self.shapes.first()
    }

    /// The classes missing from some split: `(split, classes)` for each split that lacks
    /// some of [`InspectReport::classes`].
    pub fn missing_classes(&self) -> Vec<(String, Vec<String>)> {
        self.splits
            .iter()
            .filter_map(|s| {
                let missing: Vec<String> = self
                    .classes
                    .iter()
                    .filter(|c| !s.classes.contains_key(*c))
                    .cloned()
                    .collect();
                (!missing.is_empty()).then(|| (s.name.clone(), missing))
            })
            .collect()
    }

    /// The `model.input` to suggest, `[C, H, W]`, and whether the images are too varied for
    /// one size to stand for them: the most common size and mode when it covers at least
    /// half of the images; else a square side, the standard size ([`STANDARD_SIDES`])
    /// nearest to the median shorter side, with the most common mode's channels (the
    /// images are then best brought to it with `resize: {mode: shorter_side}`).
    pub fn suggested_input(&self) -> Option<([usize; 3], bool)> {
        let top = self.most_common()?;
        let total: usize = self.shapes.iter().map(|s| s.count).sum();
        if 2 * top.count >= total {
            return Some((
                [top.channels(), top.height as usize, top.width as usize],
                false,
            ));
        }
        let mut sides: Vec<(u32, usize)> = self
            .shapes
            .iter()
            .map(|s| (s.width.min(s.height), s.count))
            .collect();
        sides.sort_unstable();
        let mut seen = 0;
        let median = sides
            .iter()
            .find(|(_, n)| {
                seen += n;
                2 * seen >= total
            })
            .map_or(top.width.min(top.height), |(side, _)| *side);
        let side = STANDARD_SIDES
            .iter()
            .copied()
            .min_by_key(|&s| (s as i64 - median as i64).abs())
            .unwrap_or(32);
        Some(([top.channels(), side, side], true))
    }

    /// A spec to start from: a WRN-16-4 on `dataset: folder` at this root, with
    /// [`InspectReport::suggested_input`] as `model.input` and the class count of the folder
    /// (None when no image decoded).
    pub fn spec_snippet(&self) -> Option<String> {
        let s = self.most_common()?;
        let ([c, h, w], varied) = self.suggested_input()?;
        let name = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "my-images".into());
        let root = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        let why = if varied {
            format!(
                "the images vary in size: a standard side near their median shorter side ({} \
                 are {})",
                s.count,
                s.label()
            )
        } else {
            format!("the most common images: {}", s.label())
        };
        let mut text = format!(
            "name: {}\nmodel:\n  wrn: {{depth: 16, width: 4}}\n  input: [{c}, {h}, {w}]   # \
             {why}\n  classes: {}\ndata:\n  dataset: folder\n  root: {}\n",
            yaml_quoted(&name),
            self.classes.len(),
            yaml_quoted(&root.display().to_string()),
        );
        if varied {
            text.push_str(
                "  resize: {mode: shorter_side, filter: triangle}   # scale, then centre crop\n",
            );
        }
        if self.split("val").is_none() {
            let train = self.split("train").map_or(0, SplitReport::images);
            text.push_str(&format!(
                "  val_size: {}   # no val/ folder: held out of train/\n",
                (train / 10).max(1)
            ));
        }
        if self.shapes.len() > 1 && !varied {
            text.push_str("  # images of other sizes are resized to model.input (data.resize)\n");
        }
        if !self.corrupt.is_empty() {
            text.push_str(&format!(
                "  # {} files do not decode: remove them, or skip them with data.bad_images: skip\n",
                self.corrupt.len()
            ));
        }
        Some(text)
    }
}

/// `s` as a double-quoted YAML scalar.
fn yaml_quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an `w`x`h` image whose pixels depend on `seed` (grey when `grey`) to `path`,
    /// as PNG or JPEG by the extension.
    fn img(path: &Path, w: u32, h: u32, grey: bool, seed: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if grey {
            image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 7 + y * 3) as u8 ^ seed]))
                .save(path)
                .unwrap();
        } else {
            image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([x as u8 ^ seed, y as u8, seed.wrapping_mul(3)])
            })
            .save(path)
            .unwrap();
        }
    }

    fn folder() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for i in 0..3 {
            img(&r.join(format!("train/cat/{i}.png")), 8, 8, false, i);
        }
        img(&r.join("train/cat/photo.JPG"), 8, 8, false, 9);
        std::fs::write(r.join("train/cat/.DS_Store"), b"x").unwrap();
        std::fs::write(r.join("train/cat/notes.txt"), b"x").unwrap();
        img(&r.join("train/dog/a.png"), 8, 8, true, 1);
        img(&r.join("train/dog/deeper/b.png"), 8, 8, true, 2);
        std::fs::write(r.join("train/dog/broken.png"), b"\x89PNG not really").unwrap();
        std::fs::write(r.join("train/README.md"), b"x").unwrap();
        img(&r.join("train/loose.png"), 8, 8, true, 3);
        std::fs::create_dir_all(r.join("test/cat")).unwrap();
        std::fs::copy(r.join("train/cat/0.png"), r.join("test/cat/copy.png")).unwrap();
        img(&r.join("test/dog/wide.png"), 16, 8, true, 4);
        img(&r.join("test/bird/x.png"), 8, 8, false, 5);
        std::fs::create_dir_all(r.join("extra")).unwrap();
        d
    }

    #[test]
    fn images_of_varied_sizes_suggest_a_standard_square_input_and_a_shorter_side_resize() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        // shorter sides 20, 25, ..., 50 (median 35): no size holds half of the images
        for (i, side) in (20u32..=50).step_by(5).enumerate() {
            for class in ["a", "b"] {
                img(
                    &r.join(format!("train/{class}/{i}.png")),
                    side + 7,
                    side,
                    false,
                    1,
                );
            }
        }
        let rep = inspect(r).unwrap();
        assert_eq!(rep.suggested_input(), Some(([3, 32, 32], true)));
        let snippet = rep.spec_snippet().unwrap();
        assert!(snippet.contains("input: [3, 32, 32]"), "{snippet}");
        assert!(snippet.contains("resize: {mode: shorter_side"), "{snippet}");
        // one size for most images: that size, no resize suggested
        for i in 0..20 {
            img(&r.join(format!("train/a/same{i}.png")), 40, 30, true, 2);
        }
        let rep = inspect(r).unwrap();
        assert_eq!(rep.suggested_input(), Some(([1, 30, 40], false)));
        assert!(!rep.spec_snippet().unwrap().contains("resize:"));
    }

    #[test]
    fn reports_counts_shapes_skips_corruption_and_duplicates() {
        let d = folder();
        let rep = inspect(d.path()).unwrap();
        let names: Vec<&str> = rep.splits.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["train", "test"]);
        let train = rep.split("train").unwrap();
        assert_eq!(train.classes["cat"], 4);
        assert_eq!(train.classes["dog"], 2);
        let test = rep.split("test").unwrap();
        assert_eq!((test.classes["cat"], test.classes["dog"]), (1, 1));
        assert_eq!(rep.classes, ["bird", "cat", "dog"]);
        assert_eq!(
            rep.missing_classes(),
            vec![("train".to_string(), vec!["bird".to_string()])]
        );
        let shapes: Vec<(String, usize)> =
            rep.shapes.iter().map(|s| (s.label(), s.count)).collect();
        assert_eq!(
            shapes,
            [
                ("8x8 RGB8".to_string(), 6),
                ("8x8 L8".to_string(), 2),
                ("16x8 L8".to_string(), 1)
            ]
        );
        let skipped: Vec<(&str, SkipReason)> = rep
            .skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason))
            .collect();
        assert_eq!(
            skipped,
            [
                ("train/README.md", SkipReason::NotAnImage),
                ("train/cat/.DS_Store", SkipReason::Hidden),
                ("train/cat/notes.txt", SkipReason::NotAnImage),
                ("train/loose.png", SkipReason::OutsideClass),
            ]
        );
        assert_eq!(rep.corrupt.len(), 1);
        assert_eq!(rep.corrupt[0].path, "train/dog/broken.png");
        assert_eq!(
            rep.cross_split_duplicates,
            vec![vec![
                "test/cat/copy.png".to_string(),
                "train/cat/0.png".to_string()
            ]]
        );
        assert_eq!(rep.ignored, ["extra"]);
        assert_eq!(rep.images(), 9);

        let snippet = rep.spec_snippet().unwrap();
        assert!(snippet.contains("input: [3, 8, 8]"), "{snippet}");
        assert!(snippet.contains("classes: 3"), "{snippet}");
        assert!(snippet.contains("dataset: folder"), "{snippet}");
        assert!(snippet.contains("val_size: 1 "), "{snippet}");
        assert!(snippet.contains("data.resize"), "{snippet}");
        assert!(snippet.contains("1 files do not decode"), "{snippet}");
    }

    #[test]
    fn a_folder_without_splits_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        img(&d.path().join("cat/a.png"), 4, 4, true, 0);
        let e = inspect(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("train/") && e.contains(&d.path().display().to_string()),
            "{e}"
        );
        assert!(inspect(&d.path().join("nope")).is_err());
    }

    #[test]
    fn huge_files_are_not_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("train/cat/huge.png");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        // Sparse: no disk used, and the check must not read it.
        std::fs::File::create(&p)
            .unwrap()
            .set_len(MAX_DECODER_BYTES + 1)
            .unwrap();
        let rep = inspect(d.path()).unwrap();
        assert_eq!(rep.corrupt.len(), 1);
        assert!(rep.corrupt[0].error.contains("limit"), "{:?}", rep.corrupt);
        assert_eq!(rep.split("train").unwrap().classes["cat"], 0);
        assert!(rep.spec_snippet().is_none());
    }

    #[test]
    fn quoting() {
        assert_eq!(yaml_quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(yaml_quoted("true"), "\"true\"");
    }
}
