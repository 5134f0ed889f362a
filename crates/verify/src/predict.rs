//! Classifying images with an exported model.
//!
//! Preprocessing follows the file's metadata and is the one training used
//! ([`wrnc_data::pixels`]): the image is converted to the model's channel count (grey via the
//! `image` crate's luma conversion for 1 channel, RGB for 3; alpha is dropped), resized to the
//! metadata's `[H, W]` by its `resize` entry (mode and filter of the spec's `data.resize`;
//! files without one: `stretch` with the Triangle filter, the aspect ratio not kept) when its
//! size differs, laid out CHW, scaled by `normalization.scale` (1/255) and normalised with the
//! recorded mode and statistics.
//!
//! Images are handled one at a time: decoded (within [`image_limits`]), preprocessed to the
//! model's small input and dropped before the next one is read, so memory does not grow with
//! the number of images.

use crate::error::{Result, VerifyError};
use crate::model::{ModelSource, TractModel};
use image::imageops::FilterType;
use image::DynamicImage;
use std::path::{Path, PathBuf};
use wrnc_data::pixels;
pub use wrnc_data::pixels::{image_limits, IMAGE_EXTENSIONS, MAX_IMAGE_ALLOC, MAX_IMAGE_SIDE};
use wrnc_onnx::{ModelInfo, Normalization};
use wrnc_recipe::Resize;

/// The resize filter used by [`preprocess`] and for files that record no `resize` entry.
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
    pixels::decode_reader(image::ImageReader::new(std::io::Cursor::new(bytes))).map_err(|message| {
        VerifyError::Image {
            path: name.to_path_buf(),
            message,
        }
    })
}

/// Reads and decodes an image file, streaming it from disk (the file is not read whole
/// first, so a huge or endless file costs no more than the decoder's limits).
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let f = std::fs::File::open(path).map_err(|source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    pixels::decode_reader(image::ImageReader::new(std::io::BufReader::new(f))).map_err(|message| {
        VerifyError::Image {
            path: path.to_path_buf(),
            message,
        }
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
    for p in entries.into_iter().filter(|p| !pixels::is_hidden(p)) {
        if p.is_dir() {
            walk(&p, out)?;
        } else if pixels::has_image_extension(&p) {
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

/// Converts an image to normalised CHW floats of shape `[C, H, W]` (see the module docs),
/// resizing with the default `stretch` / Triangle; see [`preprocess_with`].
pub fn preprocess(
    img: &DynamicImage,
    shape: [usize; 3],
    norm: Option<&Normalization>,
) -> Result<Vec<f32>> {
    preprocess_with(img, shape, Resize::default(), norm)
}

/// Converts an image to normalised CHW floats of shape `[C, H, W]`, resizing by `resize`
/// (see the module docs). `norm = None` only scales pixels by 1/255.
pub fn preprocess_with(
    img: &DynamicImage,
    shape: [usize; 3],
    resize: Resize,
    norm: Option<&Normalization>,
) -> Result<Vec<f32>> {
    let px = pixels::to_model_pixels(img, shape, resize).map_err(VerifyError::Input)?;
    let mut chw: Vec<f32> = px.into_iter().map(f32::from).collect();
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

    /// The resize applied to images of another size: the file's `resize` entry, else
    /// `stretch` with the Triangle filter.
    pub fn resize(&self) -> Resize {
        self.model
            .info()
            .resize
            .map(|r| r.resize())
            .unwrap_or_default()
    }

    /// Preprocesses one image for this model.
    pub fn preprocess(&self, img: &DynamicImage) -> Result<Vec<f32>> {
        let info = self.model.info();
        preprocess_with(
            img,
            info.input_shape,
            self.resize(),
            self.normalization.as_ref(),
        )
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
        let probs = self
            .model
            .run_probabilities(&input, [images.len(), c, h, w])?;
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
        let probs = self.model.run_probabilities(&input, [1, c, h, w])?;
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
