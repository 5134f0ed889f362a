//! Thumbnails as inline PNG (`data:` URLs), enlarged with nearest-neighbour sampling so the
//! pixels of small images stay visible.

use crate::data::Thumbnail;
use crate::error::{ReportError, Result};
use base64::Engine;
use image::{DynamicImage, GrayImage, RgbImage};

/// The displayed side of a thumbnail, in pixels (images are enlarged by a whole factor up to it).
pub const DISPLAY_SIDE: u32 = 64;

/// The thumbnail as a `data:image/png;base64,...` URL.
pub fn png_data_url(t: &Thumbnail) -> Result<String> {
    let (w, h) = (t.width as u32, t.height as u32);
    let plane = t.width * t.height;
    if t.pixels.len() != plane * t.channels || plane == 0 {
        return Err(ReportError::Image(format!(
            "{} pixel bytes do not make a {}x{}x{} image",
            t.pixels.len(),
            t.channels,
            t.height,
            t.width
        )));
    }
    let img = match t.channels {
        1 => GrayImage::from_raw(w, h, t.pixels.clone()).map(DynamicImage::ImageLuma8),
        3 => {
            let mut hwc = Vec::with_capacity(t.pixels.len());
            for i in 0..plane {
                for c in 0..3 {
                    hwc.push(t.pixels[c * plane + i]);
                }
            }
            RgbImage::from_raw(w, h, hwc).map(DynamicImage::ImageRgb8)
        }
        c => {
            return Err(ReportError::Image(format!(
                "{c} channels (1 or 3 can be shown)"
            )))
        }
    }
    .ok_or_else(|| ReportError::Image("the pixel buffer does not fit the image".into()))?;
    let scale = (DISPLAY_SIDE / w.max(h)).max(1);
    let img = img.resize(w * scale, h * scale, image::imageops::FilterType::Nearest);
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| ReportError::Image(e.to_string()))?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chw_rgb_image_becomes_an_enlarged_png_with_the_same_pixels() {
        // 2x1 image: a red and a blue pixel, stored channel-major.
        let t = Thumbnail {
            channels: 3,
            height: 1,
            width: 2,
            pixels: vec![255, 0, 0, 0, 0, 255],
        };
        let url = png_data_url(&t).unwrap();
        let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (64, 32));
        assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(63, 31).0, [0, 0, 255]);
        assert!(png_data_url(&Thumbnail { channels: 2, ..t }).is_err());
    }
}
