//! Classifying images with an exported model.
//!
//! Preprocessing follows the file's metadata: the image is converted to the model's channel
//! count (grey via the `image` crate's luma conversion for 1 channel, RGB for 3; alpha is
//! dropped), resized to the metadata's `[H, W]` with the Triangle (bilinear) filter when its
//! size differs (aspect ratio is not kept), laid out CHW, scaled by `normalization.scale`
//! (1/255) and normalised with the recorded mode and statistics.
//!
//! Images are handled one at a time: decoded (within [`image_limits`]), preprocessed to the
//! model's small input and dropped before the next one is read, so memory does not grow with
//! the number of images.

use crate::error::{Result, VerifyError};
use crate::model::{ModelSource, TractModel};
use image::imageops::FilterType;
use image::DynamicImage;
use std::path::{Path, PathBuf};
use wrnc_onnx::{ModelInfo, Normalization};

/// Largest image width and height accepted by the decoder.
pub const MAX_IMAGE_SIDE: u32 = 32_768;

/// Most bytes the decoder may allocate for one image (the `image` crate's default, 512 MiB).
pub const MAX_IMAGE_ALLOC: u64 = 512 << 20;

/// File extensions (lower case) taken from folders by [`collect_images`].
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The decoder's limits: at most [`MAX_IMAGE_SIDE`] pixels a side and [`MAX_IMAGE_ALLOC`]
/// bytes per image.
pub fn image_limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(MAX_IMAGE_SIDE);
    l.max_image_height = Some(MAX_IMAGE_SIDE);
    l.max_alloc = Some(MAX_IMAGE_ALLOC);
    l
}

/// The resize filter used by [`preprocess`].
pub const RESIZE_FILTER: FilterType = FilterType::Triangle;

/// One ranked class.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Class index.
    pub class: usize,
    /// Class label from the metadata.
    pub label: String,
    /// Softmax probability.
    pub probability: f32,
}

/// Decodes a PNG or JPEG from memory (format guessed from the bytes, within
/// [`image_limits`]).
pub fn decode_image(bytes: &[u8], name: &Path) -> Result<DynamicImage> {
    decode(image::ImageReader::new(std::io::Cursor::new(bytes)), name)
}

fn decode<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
    name: &Path,
) -> Result<DynamicImage> {
    let mut reader = reader
        .with_guessed_format()
        .map_err(|e| VerifyError::Image {
            path: name.to_path_buf(),
            message: e.to_string(),
        })?;
    reader.limits(image_limits());
    reader.decode().map_err(|e| VerifyError::Image {
        path: name.to_path_buf(),
        message: format!("cannot decode the image (PNG and JPEG are supported): {e}"),
    })
}

/// Reads and decodes an image file, streaming it from disk (the file is not read whole
/// first, so a huge or endless file costs no more than the decoder's limits).
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let f = std::fs::File::open(path).map_err(|source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(image::ImageReader::new(std::io::BufReader::new(f)), path)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn has_image_extension(p: &Path) -> bool {
    p.extension().is_some_and(|e| {
        let e = e.to_string_lossy().to_ascii_lowercase();
        IMAGE_EXTENSIONS.contains(&e.as_str())
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let io = |source| VerifyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io)?;
    entries.sort();
    for p in entries.into_iter().filter(|p| !is_hidden(p)) {
        if p.is_dir() {
            walk(&p, out)?;
        } else if has_image_extension(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// The image files named by `paths`: a file as given, a folder replaced by the PNG and JPEG
/// files ([`IMAGE_EXTENSIONS`], any case) under it, recursively, in sorted order, skipping
/// hidden files and folders (names starting with `.`). A folder that cannot be listed is an
/// error.
pub fn collect_images<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let p = p.as_ref();
        if p.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.to_path_buf());
        }
    }
    Ok(out)
}

/// Converts an image to normalised CHW floats of shape `[C, H, W]` (see the module docs).
/// `norm = None` only scales pixels by 1/255.
pub fn preprocess(
    img: &DynamicImage,
    shape: [usize; 3],
    norm: Option<&Normalization>,
) -> Result<Vec<f32>> {
    let [c, h, w] = shape;
    let (Ok(h32), Ok(w32)) = (u32::try_from(h), u32::try_from(w)) else {
        return Err(VerifyError::Input(format!(
            "input shape {shape:?} is too large"
        )));
    };
    let resize = |i: DynamicImage| {
        if i.width() == w32 && i.height() == h32 {
            i
        } else {
            i.resize_exact(w32, h32, RESIZE_FILTER)
        }
    };
    let mut chw = vec![0.0f32; c * h * w];
    match c {
        1 => {
            let g = resize(DynamicImage::ImageLuma8(img.to_luma8())).to_luma8();
            for (i, p) in g.pixels().enumerate() {
                chw[i] = p.0[0] as f32;
            }
        }
        3 => {
            let rgb = resize(DynamicImage::ImageRgb8(img.to_rgb8())).to_rgb8();
            let plane = h * w;
            for (i, p) in rgb.pixels().enumerate() {
                for ch in 0..3 {
                    chw[ch * plane + i] = p.0[ch] as f32;
                }
            }
        }
        _ => {
            return Err(VerifyError::Input(format!(
                "the model takes {c}-channel images; only 1 (grey) and 3 (RGB) can be made \
                 from image files"
            )))
        }
    }
    match norm {
        Some(n) => n.apply(&mut chw, shape)?,
        None => chw.iter_mut().for_each(|v| *v /= 255.0),
    }
    Ok(chw)
}

/// The `k` most probable classes of one row of probabilities, most probable first.
pub fn top_k(probabilities: &[f32], k: usize, info: &ModelInfo) -> Vec<Prediction> {
    let mut idx: Vec<usize> = (0..probabilities.len()).collect();
    idx.sort_by(|&a, &b| {
        probabilities[b]
            .partial_cmp(&probabilities[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    idx.into_iter()
        .take(k)
        .map(|i| Prediction {
            class: i,
            label: info.label(i),
            probability: probabilities[i],
        })
        .collect()
}

/// A model ready to classify images.
#[derive(Debug, Clone)]
pub struct Predictor {
    model: TractModel,
    normalization: Option<Normalization>,
}

impl Predictor {
    /// Loads a model with a symbolic batch size.
    pub fn load<'a>(source: impl Into<ModelSource<'a>>) -> Result<Self> {
        Ok(Self::from_model(TractModel::load(source, None)?))
    }

    /// Wraps an already loaded model.
    pub fn from_model(model: TractModel) -> Self {
        let normalization = model.info().normalization.clone();
        Predictor {
            model,
            normalization,
        }
    }

    /// Uses `n` as the input normalisation instead of the file's (for files that record
    /// none); it must fit the model's input shape.
    pub fn with_normalization(mut self, n: Normalization) -> Result<Self> {
        n.validate(self.model.info().input_shape)?;
        self.normalization = Some(n);
        Ok(self)
    }

    /// The input normalisation used: the file's, or the one given with
    /// [`Predictor::with_normalization`]; None means pixels are only scaled by 1/255.
    pub fn normalization(&self) -> Option<&Normalization> {
        self.normalization.as_ref()
    }

    /// The model's metadata.
    pub fn info(&self) -> &ModelInfo {
        self.model.info()
    }

    /// The underlying tract model.
    pub fn model(&self) -> &TractModel {
        &self.model
    }

    /// Preprocesses one image for this model.
    pub fn preprocess(&self, img: &DynamicImage) -> Result<Vec<f32>> {
        let info = self.model.info();
        preprocess(img, info.input_shape, self.normalization.as_ref())
    }

    /// Classifies a batch of images, returning the top `k` classes of each.
    pub fn predict_images(
        &self,
        images: &[DynamicImage],
        k: usize,
    ) -> Result<Vec<Vec<Prediction>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let [c, h, w] = self.model.info().input_shape;
        let mut input = Vec::with_capacity(images.len() * c * h * w);
        for img in images {
            input.extend(self.preprocess(img)?);
        }
        let (_, probs) = self.model.run(&input, [images.len(), c, h, w])?;
        let classes = probs.len() / images.len();
        Ok(probs
            .chunks(classes.max(1))
            .map(|row| top_k(row, k, self.model.info()))
            .collect())
    }

    /// Classifies one image file (PNG or JPEG): decodes it, preprocesses it, drops the
    /// decoded image and runs the model on the small input.
    pub fn predict_file(&self, path: &Path, k: usize) -> Result<Vec<Prediction>> {
        let input = self.preprocess(&load_image(path)?)?;
        let [c, h, w] = self.model.info().input_shape;
        let (_, probs) = self.model.run(&input, [1, c, h, w])?;
        Ok(top_k(&probs, k, self.model.info()))
    }

    /// Classifies image files one at a time (see [`Predictor::predict_file`]), returning the
    /// top `k` classes of each; the first failure ends it.
    pub fn predict_files<P: AsRef<Path>>(
        &self,
        paths: &[P],
        k: usize,
    ) -> Result<Vec<Vec<Prediction>>> {
        paths
            .iter()
            .map(|p| self.predict_file(p.as_ref(), k))
            .collect()
    }
}
