//! Classifying images with an exported model.
//!
//! Preprocessing follows the file's metadata: the image is converted to the model's channel
//! count (grey via the `image` crate's luma conversion for 1 channel, RGB for 3; alpha is
//! dropped), resized to the metadata's `[H, W]` with the Triangle (bilinear) filter when its
//! size differs (aspect ratio is not kept), laid out CHW, scaled by `normalization.scale`
//! (1/255) and normalised with the recorded mode and statistics.

use crate::error::{Result, VerifyError};
use crate::model::{ModelSource, TractModel};
use image::imageops::FilterType;
use image::DynamicImage;
use std::path::Path;
use wrnc_onnx::{ModelInfo, Normalization};

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

/// Decodes a PNG or JPEG from memory (format guessed from the bytes).
pub fn decode_image(bytes: &[u8], name: &Path) -> Result<DynamicImage> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| VerifyError::Image {
            path: name.to_path_buf(),
            message: e.to_string(),
        })?
        .decode()
        .map_err(|e| VerifyError::Image {
            path: name.to_path_buf(),
            message: format!("cannot decode the image (PNG and JPEG are supported): {e}"),
        })
}

/// Reads and decodes an image file.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image(&bytes, path)
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
}

impl Predictor {
    /// Loads a model with a symbolic batch size.
    pub fn load<'a>(source: impl Into<ModelSource<'a>>) -> Result<Self> {
        Ok(Predictor {
            model: TractModel::load(source, None)?,
        })
    }

    /// Wraps an already loaded model.
    pub fn from_model(model: TractModel) -> Self {
        Predictor { model }
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
        preprocess(img, info.input_shape, info.normalization.as_ref())
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

    /// Classifies image files (PNG or JPEG), returning the top `k` classes of each.
    pub fn predict_files<P: AsRef<Path>>(
        &self,
        paths: &[P],
        k: usize,
    ) -> Result<Vec<Vec<Prediction>>> {
        let images = paths
            .iter()
            .map(|p| load_image(p.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        self.predict_images(&images, k)
    }
}
