//! Pixel normalisation fitted on the training split.

use serde::{Deserialize, Serialize};
use wrnc_recipe::Normalize;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// Normalisation statistics plus the image shape they apply to.
///
/// Which vectors are used depends on the mode (unused ones are empty):
///
/// | mode               | `mean()` | `std()` | `mean_image()` |
/// |--------------------|----------|---------|----------------|
/// | `MeanStd`          | C        | C       | empty          |
/// | `PerChannelMean`   | C        | empty   | empty          |
/// | `PerPixelMean`     | empty    | empty   | C*H*W (CHW)    |
/// | `None`             | empty    | empty   | empty          |
///
/// All statistics are in `[0, 1]` pixel units. [`Normalizer::from_parts`]
/// rebuilds a normaliser from these values.
///
/// A normaliser serialises itself (serde) as
/// `{"mode", "shape": [C, H, W], "mean", "std", "mean_image"}`; deserialising checks the
/// values as [`Normalizer::from_parts`] does. This is the form recorded in weights metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NormalizerRecord", into = "NormalizerRecord")]
pub struct Normalizer {
    mode: Normalize,
    channels: usize,
    height: usize,
    width: usize,
    mean: Vec<f32>,
    std: Vec<f32>,
    mean_image: Vec<f32>,
}

/// The serialised form of a [`Normalizer`].
#[derive(Serialize, Deserialize)]
struct NormalizerRecord {
    mode: Normalize,
    shape: [usize; 3],
    #[serde(default)]
    mean: Vec<f32>,
    #[serde(default)]
    std: Vec<f32>,
    #[serde(default)]
    mean_image: Vec<f32>,
}

impl From<Normalizer> for NormalizerRecord {
    fn from(n: Normalizer) -> Self {
        NormalizerRecord {
            mode: n.mode,
            shape: [n.channels, n.height, n.width],
            mean: n.mean,
            std: n.std,
            mean_image: n.mean_image,
        }
    }
}

impl TryFrom<NormalizerRecord> for Normalizer {
    type Error = DataError;

    fn try_from(r: NormalizerRecord) -> Result<Self> {
        let [c, h, w] = r.shape;
        Normalizer::from_parts(r.mode, [c, h, w], r.mean, r.std, r.mean_image)
    }
}

impl Normalizer {
    /// Computes the statistics of `mode` over every pixel of `train`.
    ///
    /// The std is the population std (divide by N). A channel whose std is 0
    /// (constant channel) gets std 1 so that normalisation stays finite.
    /// An empty dataset is an error unless the mode is `None`.
    pub fn fit(mode: Normalize, train: &Dataset) -> Result<Self> {
        let (c, h, w) = (train.channels(), train.height(), train.width());
        let plane = h * w;
        let n = train.len();
        if n == 0 && mode != Normalize::None {
            return Err(DataError::invalid(
                "normalizer",
                "cannot compute statistics of an empty training set",
            ));
        }
        let mut out = Normalizer {
            mode,
            channels: c,
            height: h,
            width: w,
            mean: Vec::new(),
            std: Vec::new(),
            mean_image: Vec::new(),
        };
        match mode {
            Normalize::None => {}
            Normalize::PerPixelMean => {
                let mut sums = vec![0u64; c * plane];
                for img in train.images().chunks_exact(c * plane) {
                    for (s, &p) in sums.iter_mut().zip(img) {
                        *s += u64::from(p);
                    }
                }
                out.mean_image = sums
                    .iter()
                    .map(|&s| (s as f64 / (n as f64 * 255.0)) as f32)
                    .collect();
            }
            Normalize::MeanStd | Normalize::PerChannelMean => {
                // Exact integer sums of p and p^2 per channel.
                let mut sum = vec![0u64; c];
                let mut sumsq = vec![0u64; c];
                for img in train.images().chunks_exact(c * plane) {
                    for (ch, px) in img.chunks_exact(plane).enumerate() {
                        for &p in px {
                            let p = u64::from(p);
                            sum[ch] += p;
                            sumsq[ch] += p * p;
                        }
                    }
                }
                let count = (n * plane) as f64;
                for ch in 0..c {
                    let m = sum[ch] as f64 / count;
                    let var = (sumsq[ch] as f64 / count - m * m).max(0.0);
                    out.mean.push((m / 255.0) as f32);
                    if mode == Normalize::MeanStd {
                        let sd = var.sqrt() / 255.0;
                        out.std.push(if sd > 0.0 { sd as f32 } else { 1.0 });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Rebuilds a normaliser from stored values for images of `shape` `[C, H, W]`; the vector
    /// lengths must match the table in the type documentation, values must be finite and
    /// std > 0.
    pub fn from_parts(
        mode: Normalize,
        shape: [usize; 3],
        mean: Vec<f32>,
        std: Vec<f32>,
        mean_image: Vec<f32>,
    ) -> Result<Self> {
        let [channels, height, width] = shape;
        let size = channels * height * width;
        if size == 0 {
            return Err(DataError::invalid(
                "normalizer",
                "image shape has a zero dimension",
            ));
        }
        let (want_mean, want_std, want_img) = match mode {
            Normalize::MeanStd => (channels, channels, 0),
            Normalize::PerChannelMean => (channels, 0, 0),
            Normalize::PerPixelMean => (0, 0, size),
            Normalize::None => (0, 0, 0),
        };
        let check = |name: &str, v: &[f32], want: usize| -> Result<()> {
            if v.len() != want {
                return Err(DataError::invalid(
                    "normalizer",
                    format!(
                        "mode {mode}: {name} has {} values, expected {want}",
                        v.len()
                    ),
                ));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(DataError::invalid(
                    "normalizer",
                    format!("{name} has non-finite values"),
                ));
            }
            Ok(())
        };
        check("mean", &mean, want_mean)?;
        check("std", &std, want_std)?;
        check("mean_image", &mean_image, want_img)?;
        if std.iter().any(|&s| s <= 0.0) {
            return Err(DataError::invalid("normalizer", "std values must be > 0"));
        }
        Ok(Normalizer {
            mode,
            channels,
            height,
            width,
            mean,
            std,
            mean_image,
        })
    }

    /// The mode.
    pub fn mode(&self) -> Normalize {
        self.mode
    }

    /// Image shape `(C, H, W)` this normaliser applies to.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.channels, self.height, self.width)
    }

    /// Per-channel means (`[0, 1]` units), empty if unused by the mode.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Per-channel population stds (`[0, 1]` units), empty if unused by the mode.
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// The mean image in CHW order (`[0, 1]` units), empty if unused by the mode.
    pub fn mean_image(&self) -> &[f32] {
        &self.mean_image
    }

    /// Number of values per image, `C * H * W`.
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Normalises one CHW `image` into `out`; both must hold `C * H * W` values.
    pub fn apply_into(&self, image: &[u8], out: &mut [f32]) -> Result<()> {
        let size = self.image_size();
        if image.len() != size || out.len() != size {
            return Err(DataError::invalid(
                "normalizer input",
                format!(
                    "image has {} values and output {}, expected {size}",
                    image.len(),
                    out.len()
                ),
            ));
        }
        let plane = self.height * self.width;
        const INV: f32 = 1.0 / 255.0;
        match self.mode {
            Normalize::None => {
                for (o, &p) in out.iter_mut().zip(image) {
                    *o = f32::from(p) * INV;
                }
            }
            Normalize::PerPixelMean => {
                for ((o, &p), &m) in out.iter_mut().zip(image).zip(&self.mean_image) {
                    *o = f32::from(p) * INV - m;
                }
            }
            Normalize::PerChannelMean | Normalize::MeanStd => {
                for ch in 0..self.channels {
                    let m = self.mean[ch];
                    let inv_sd = self.std.get(ch).map_or(1.0, |s| 1.0 / s);
                    let range = ch * plane..(ch + 1) * plane;
                    for (o, &p) in out[range.clone()].iter_mut().zip(&image[range]) {
                        *o = (f32::from(p) * INV - m) * inv_sd;
                    }
                }
            }
        }
        Ok(())
    }

    /// The inverse of [`Normalizer::apply_into`] for viewing: maps normalised CHW `values`
    /// back to pixels, rounded and clamped to `0..=255`.
    pub fn denormalize_into(&self, values: &[f32], out: &mut [u8]) -> Result<()> {
        let size = self.image_size();
        if values.len() != size || out.len() != size {
            return Err(DataError::invalid(
                "denormalize input",
                format!(
                    "{} values and output {}, expected {size}",
                    values.len(),
                    out.len()
                ),
            ));
        }
        let plane = self.height * self.width;
        for (i, (o, &v)) in out.iter_mut().zip(values).enumerate() {
            let ch = i / plane;
            let x = match self.mode {
                Normalize::None => v,
                Normalize::PerPixelMean => v + self.mean_image[i],
                Normalize::PerChannelMean | Normalize::MeanStd => {
                    v * self.std.get(ch).copied().unwrap_or(1.0) + self.mean[ch]
                }
            };
            *o = (x * 255.0).round().clamp(0.0, 255.0) as u8;
        }
        Ok(())
    }

    /// Normalises one CHW `image` into a new vector.
    pub fn apply(&self, image: &[u8]) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.image_size()];
        self.apply_into(image, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 2-channel 1x2 images:
    /// img0: ch0 [0, 255], ch1 [51, 51]; img1: ch0 [255, 255], ch1 [102, 0].
    fn data() -> Dataset {
        Dataset::new(
            vec![0, 255, 51, 51, 255, 255, 102, 0],
            vec![0, 1],
            [2, 1, 2],
            vec!["a".into(), "b".into()],
        )
        .unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn denormalize_inverts_every_mode() {
        let d = data();
        let imgs: [&[u8]; 2] = [&[0, 255, 51, 51], &[255, 255, 102, 0]];
        for mode in Normalize::ALL {
            let n = Normalizer::fit(mode, &d).unwrap();
            for img in imgs {
                let mut back = [0u8; 4];
                n.denormalize_into(&n.apply(img).unwrap(), &mut back)
                    .unwrap();
                assert_eq!(&back, img, "{mode}");
            }
            // 0 after normalisation is the mean pixel: ch0 mean 191.25 -> 191 (mean_std).
            let mut mean = [0u8; 4];
            n.denormalize_into(&[0.0; 4], &mut mean).unwrap();
            if mode == Normalize::MeanStd {
                assert_eq!(mean, [191, 191, 51, 51]);
            }
            assert!(n.denormalize_into(&[0.0; 3], &mut mean).is_err());
        }
    }

    #[test]
    fn mean_std() {
        let n = Normalizer::fit(Normalize::MeanStd, &data()).unwrap();
        // ch0 in [0,1] units: 0,1,1,1 -> mean 0.75, var 0.75 - 0.5625 = 0.1875.
        // ch1: 0.2,0.2,0.4,0 -> mean 0.2, var (0+0+0.04+0.04)/4 = 0.02.
        close(n.mean(), &[0.75, 0.2]);
        close(n.std(), &[0.1875f32.sqrt(), 0.02f32.sqrt()]);
        assert!(n.mean_image().is_empty());
        let out = n.apply(&[0, 255, 51, 51]).unwrap();
        close(
            &out,
            &[-0.75 / 0.1875f32.sqrt(), 0.25 / 0.1875f32.sqrt(), 0.0, 0.0],
        );
        // -0.75 / 0.4330127 = -1.7320508
        assert!((out[0] + 1.732_050_8).abs() < 1e-5);
    }

    #[test]
    fn per_channel_mean() {
        let n = Normalizer::fit(Normalize::PerChannelMean, &data()).unwrap();
        close(n.mean(), &[0.75, 0.2]);
        assert!(n.std().is_empty());
        close(
            &n.apply(&[255, 255, 102, 0]).unwrap(),
            &[0.25, 0.25, 0.2, -0.2],
        );
    }

    #[test]
    fn per_pixel_mean() {
        let n = Normalizer::fit(Normalize::PerPixelMean, &data()).unwrap();
        close(n.mean_image(), &[0.5, 1.0, 0.3, 0.1]);
        close(
            &n.apply(&[0, 255, 51, 51]).unwrap(),
            &[-0.5, 0.0, -0.1, 0.1],
        );
    }

    #[test]
    fn none_mode() {
        let n = Normalizer::fit(Normalize::None, &data()).unwrap();
        assert!(n.mean().is_empty() && n.std().is_empty() && n.mean_image().is_empty());
        close(&n.apply(&[0, 255, 51, 102]).unwrap(), &[0.0, 1.0, 0.2, 0.4]);
    }

    #[test]
    fn constant_channel_gets_unit_std() {
        let d = Dataset::new(
            vec![10, 10, 10, 10],
            vec![0, 0],
            [1, 1, 2],
            vec!["a".into()],
        )
        .unwrap();
        let n = Normalizer::fit(Normalize::MeanStd, &d).unwrap();
        close(n.std(), &[1.0]);
        close(&n.apply(&[10, 10]).unwrap(), &[0.0, 0.0]);
    }

    #[test]
    fn round_trip_and_validation() {
        let n = Normalizer::fit(Normalize::MeanStd, &data()).unwrap();
        let (c, h, w) = n.shape();
        let back = Normalizer::from_parts(
            n.mode(),
            [c, h, w],
            n.mean().to_vec(),
            n.std().to_vec(),
            n.mean_image().to_vec(),
        )
        .unwrap();
        assert_eq!(back, n);
        // Wrong lengths, a zero std, a short mean image.
        let bad = [
            (Normalize::MeanStd, vec![0.5], vec![1.0, 1.0], vec![]),
            (Normalize::MeanStd, vec![0.5; 2], vec![0.0, 1.0], vec![]),
            (Normalize::PerPixelMean, vec![], vec![], vec![0.0; 3]),
        ];
        for (mode, mean, std, image) in bad {
            assert!(Normalizer::from_parts(mode, [2, 1, 2], mean, std, image).is_err());
        }
        assert!(n.apply(&[1, 2, 3]).is_err());
    }

    #[test]
    fn serde_round_trip_and_validation() {
        for mode in Normalize::ALL {
            let n = Normalizer::fit(mode, &data()).unwrap();
            let json = serde_json::to_string(&n).unwrap();
            assert!(json.contains(&format!("\"mode\":\"{mode}\"")), "{json}");
            assert_eq!(serde_json::from_str::<Normalizer>(&json).unwrap(), n);
        }
        // The form written by earlier versions (keys in another order) still reads.
        let old =
            r#"{"mean":[0.5],"mean_image":[],"mode":"mean_std","shape":[1,2,2],"std":[0.25]}"#;
        let n: Normalizer = serde_json::from_str(old).unwrap();
        assert_eq!(
            (n.mode(), n.shape(), n.std()),
            (Normalize::MeanStd, (1, 2, 2), &[0.25][..])
        );
        // Values are checked as by from_parts.
        let bad = r#"{"mean":[0.5],"mean_image":[],"mode":"mean_std","shape":[1,2,2],"std":[0.0]}"#;
        assert!(serde_json::from_str::<Normalizer>(bad).is_err());
    }
}
