//! Image files to model pixels: decoding PNG and JPEG, converting to the model's channel
//! count and resizing to its `H x W`. Training on a folder ([`crate::folder`]) and
//! `wrnc predict` use these same functions, so a deployed model sees what training saw.
//!
//! Rules (documented in docs/data.md):
//! * 8- and 16-bit images are brought to 8 bits first (16-bit values `v` become
//!   `round(v / 257)`, the `image` crate's conversion).
//! * To 1 channel (grey): colour images become luma with the `image` crate's weights
//!   (Rec. 709: `0.2126 R + 0.7152 G + 0.0722 B`); grey stays grey.
//! * To 3 channels (RGB): grey values are copied into R, G and B; RGB stays RGB.
//! * An alpha channel is dropped: colour values are used as stored, not composited.
//! * Then the image is resized to `H x W` by [`Resize`] (nothing happens when it already
//!   has that size), and laid out channel by channel (CHW).

use std::path::Path;

use image::imageops::FilterType;
use image::DynamicImage;
use wrnc_recipe::{Resize, ResizeFilter, ResizeMode};

/// Largest image width and height accepted by the decoder.
pub const MAX_IMAGE_SIDE: u32 = 32_768;

/// Most bytes the decoder may allocate for one image (the `image` crate's default, 512 MiB).
pub const MAX_IMAGE_ALLOC: u64 = 512 << 20;

/// File extensions (lower case) of the image files wrnc reads from folders.
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

/// Whether `path` ends in one of the [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        let e = e.to_string_lossy().to_ascii_lowercase();
        IMAGE_EXTENSIONS.contains(&e.as_str())
    })
}

/// Whether the file or folder name of `path` starts with `.` (hidden).
pub fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The `image` crate's filter for a spec's [`ResizeFilter`].
pub fn filter_type(f: ResizeFilter) -> FilterType {
    match f {
        ResizeFilter::Nearest => FilterType::Nearest,
        ResizeFilter::Triangle => FilterType::Triangle,
        ResizeFilter::CatmullRom => FilterType::CatmullRom,
        ResizeFilter::Lanczos3 => FilterType::Lanczos3,
    }
}

/// Decodes a PNG or JPEG image file (format guessed from its bytes) within
/// [`image_limits`]. The error is a message without the path (callers name the file).
pub fn decode_file(path: &Path) -> Result<DynamicImage, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    decode_reader(image::ImageReader::new(std::io::BufReader::new(f)))
}

/// Decodes an image from an [`image::ImageReader`] (see [`decode_file`]).
pub fn decode_reader<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
) -> Result<DynamicImage, String> {
    let mut reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
    reader.limits(image_limits());
    reader
        .decode()
        .map_err(|e| format!("cannot decode the image (PNG and JPEG are supported): {e}"))
}

/// The size `(width, height)` an image of `(w, h)` is scaled to before the crop or pad of
/// `mode` into `(tw, th)`.
fn scaled_size(mode: ResizeMode, (w, h): (u32, u32), (tw, th): (u32, u32)) -> (u32, u32) {
    let sx = f64::from(tw) / f64::from(w);
    let sy = f64::from(th) / f64::from(h);
    let scale = |v: u32, s: f64| ((f64::from(v) * s).round() as u32).max(1);
    match mode {
        ResizeMode::Stretch => (tw, th),
        ResizeMode::ShorterSide => {
            let s = sx.max(sy);
            (scale(w, s).max(tw), scale(h, s).max(th))
        }
        ResizeMode::Pad => {
            let s = sx.min(sy);
            (scale(w, s).min(tw), scale(h, s).min(th))
        }
    }
}

/// Resizes `img` to `(tw, th)` by `r` (see [`wrnc_recipe::ResizeMode`]); the crop of
/// `shorter_side` and the placement of `pad` are centred, their offsets rounded down.
pub fn resize(img: DynamicImage, tw: u32, th: u32, r: Resize) -> DynamicImage {
    if img.width() == tw && img.height() == th {
        return img;
    }
    let f = filter_type(r.filter);
    let (nw, nh) = scaled_size(r.mode, (img.width(), img.height()), (tw, th));
    let scaled = if (nw, nh) == (img.width(), img.height()) {
        img
    } else {
        img.resize_exact(nw, nh, f)
    };
    match r.mode {
        ResizeMode::Stretch => scaled,
        ResizeMode::ShorterSide => scaled.crop_imm((nw - tw) / 2, (nh - th) / 2, tw, th),
        ResizeMode::Pad => {
            let mut canvas = DynamicImage::new(tw, th, scaled.color());
            let (x, y) = ((tw - nw) / 2, (th - nh) / 2);
            image::imageops::replace(&mut canvas, &scaled, i64::from(x), i64::from(y));
            canvas
        }
    }
}

/// Converts a decoded image to `shape = [C, H, W]` (C 1 or 3) `u8` pixels in CHW order by
/// the rules of the module docs: channels first, then [`resize`].
pub fn to_model_pixels(
    img: &DynamicImage,
    shape: [usize; 3],
    r: Resize,
) -> Result<Vec<u8>, String> {
    let [c, h, w] = shape;
    let (Ok(th), Ok(tw)) = (u32::try_from(h), u32::try_from(w)) else {
        return Err(format!("input shape {shape:?} is too large"));
    };
    let mut out = vec![0u8; c * h * w];
    match c {
        1 => {
            let g = resize(DynamicImage::ImageLuma8(img.to_luma8()), tw, th, r).into_luma8();
            out.copy_from_slice(g.as_raw());
        }
        3 => {
            let rgb = resize(DynamicImage::ImageRgb8(img.to_rgb8()), tw, th, r).into_rgb8();
            let plane = h * w;
            for (i, p) in rgb.pixels().enumerate() {
                for ch in 0..3 {
                    out[ch * plane + i] = p.0[ch];
                }
            }
        }
        _ => {
            return Err(format!(
                "the model takes {c}-channel images; only 1 (grey) and 3 (RGB) can be made \
                 from image files"
            ))
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};

    fn r(mode: ResizeMode, filter: ResizeFilter) -> Resize {
        Resize { mode, filter }
    }

    #[test]
    fn channel_rules() {
        let rgba: ImageBuffer<Rgba<u8>, Vec<u8>> =
            ImageBuffer::from_pixel(1, 1, Rgba([200, 100, 50, 0]));
        let img = DynamicImage::ImageRgba8(rgba);
        // Alpha dropped, colour kept.
        assert_eq!(
            to_model_pixels(&img, [3, 1, 1], Resize::default()).unwrap(),
            vec![200, 100, 50]
        );
        // Rec. 709 luma: 0.2126*200 + 0.7152*100 + 0.0722*50 = 117.65.
        assert_eq!(
            to_model_pixels(&img, [1, 1, 1], Resize::default()).unwrap(),
            vec![118]
        );
        let ga: ImageBuffer<LumaA<u8>, Vec<u8>> = ImageBuffer::from_pixel(1, 1, LumaA([77, 9]));
        assert_eq!(
            to_model_pixels(&DynamicImage::ImageLumaA8(ga), [3, 1, 1], Resize::default()).unwrap(),
            vec![77, 77, 77]
        );
        // 16-bit: round(v / 257).
        let g16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(1, 1, Luma([51400]));
        assert_eq!(
            to_model_pixels(
                &DynamicImage::ImageLuma16(g16),
                [1, 1, 1],
                Resize::default()
            )
            .unwrap(),
            vec![200]
        );
        let rgb: ImageBuffer<Rgb<u8>, Vec<u8>> = ImageBuffer::from_pixel(1, 1, Rgb([1, 2, 3]));
        assert!(
            to_model_pixels(&DynamicImage::ImageRgb8(rgb), [2, 1, 1], Resize::default()).is_err()
        );
    }

    /// A 4 x 2 grey image (width 4, height 2): values 10 20 30 40 / 50 60 70 80.
    fn wide() -> DynamicImage {
        DynamicImage::ImageLuma8(
            GrayImage::from_raw(4, 2, vec![10, 20, 30, 40, 50, 60, 70, 80]).unwrap(),
        )
    }

    #[test]
    fn resize_modes() {
        let nearest = |mode| r(mode, ResizeFilter::Nearest);
        // shorter_side to 2x2: the height already fits, the centre 2 columns are kept.
        let p = to_model_pixels(&wide(), [1, 2, 2], nearest(ResizeMode::ShorterSide)).unwrap();
        assert_eq!(p, vec![20, 30, 60, 70]);
        // pad to 4x4: the image fits as it is, centred with one black row above and below.
        let p = to_model_pixels(&wide(), [1, 4, 4], nearest(ResizeMode::Pad)).unwrap();
        assert_eq!(
            p,
            vec![0, 0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 0, 0, 0, 0]
        );
        // stretch to 2x4 (H=4, W=2): rows doubled, columns halved.
        let p = to_model_pixels(&wide(), [1, 4, 2], nearest(ResizeMode::Stretch)).unwrap();
        assert_eq!(p.len(), 8);
        assert_eq!(p[0], p[2]); // rows 0 and 1 come from source row 0
                                // Same size: untouched by any mode and filter.
        for mode in [
            ResizeMode::Stretch,
            ResizeMode::ShorterSide,
            ResizeMode::Pad,
        ] {
            let p = to_model_pixels(&wide(), [1, 2, 4], r(mode, ResizeFilter::Lanczos3)).unwrap();
            assert_eq!(p, vec![10, 20, 30, 40, 50, 60, 70, 80]);
        }
        // Sizes of the intermediate image.
        assert_eq!(
            scaled_size(ResizeMode::ShorterSide, (640, 480), (224, 224)),
            (299, 224)
        );
        assert_eq!(
            scaled_size(ResizeMode::Pad, (640, 480), (224, 224)),
            (224, 168)
        );
    }

    #[test]
    fn file_names() {
        assert!(has_image_extension(Path::new("a/b.JPG")));
        assert!(has_image_extension(Path::new("b.png")));
        assert!(!has_image_extension(Path::new("b.txt")));
        assert!(is_hidden(Path::new("x/.DS_Store")));
        assert!(!is_hidden(Path::new(".hidden/x.png")));
    }
}
