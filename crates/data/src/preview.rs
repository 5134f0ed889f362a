//! `wrnc data preview`: a grid of augmented training images, upscaled with nearest
//! neighbour, as one CHW `u8` canvas.

use crate::error::{DataError, Result};

/// Grey level of the gaps between the cells.
const GAP_GREY: u8 = 128;
/// Pixels between cells and around the grid.
pub const GAP: usize = 2;

/// The geometry of a grid of `count` images of `height x width`, each upscaled `scale` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Cells per row.
    pub cols: usize,
    /// Rows of cells.
    pub rows: usize,
    /// Upscaling factor of each image.
    pub scale: usize,
    /// Canvas height in pixels.
    pub height: usize,
    /// Canvas width in pixels.
    pub width: usize,
}

impl Grid {
    /// A near-square grid for `count` images whose cells are at least `min_cell` pixels on
    /// their longer side (integer nearest-neighbour upscaling).
    pub fn new(count: usize, height: usize, width: usize, min_cell: usize) -> Grid {
        let cols = (count as f64).sqrt().ceil().max(1.0) as usize;
        let rows = count.div_ceil(cols).max(1);
        let scale = min_cell.div_ceil(height.max(width).max(1)).max(1);
        Grid {
            cols,
            rows,
            scale,
            height: rows * (height * scale + GAP) + GAP,
            width: cols * (width * scale + GAP) + GAP,
        }
    }
}

/// Lays out the CHW `u8` `images` (each `channels x height x width`) on a grid (see
/// [`Grid::new`]) and returns it with the CHW canvas.
pub fn grid(
    images: &[Vec<u8>],
    channels: usize,
    height: usize,
    width: usize,
    min_cell: usize,
) -> (Grid, Vec<u8>) {
    let g = Grid::new(images.len(), height, width, min_cell);
    let plane = g.height * g.width;
    let mut canvas = vec![GAP_GREY; channels * plane];
    for (k, img) in images.iter().enumerate() {
        let (r, c) = (k / g.cols, k % g.cols);
        let (y0, x0) = (
            GAP + r * (height * g.scale + GAP),
            GAP + c * (width * g.scale + GAP),
        );
        for ch in 0..channels {
            for y in 0..height * g.scale {
                for x in 0..width * g.scale {
                    let v = img[ch * height * width + (y / g.scale) * width + x / g.scale];
                    canvas[ch * plane + (y0 + y) * g.width + x0 + x] = v;
                }
            }
        }
    }
    (g, canvas)
}

/// Encodes the CHW `canvas` of `g` as a PNG: grey for 1 channel, RGB for 3 (other counts
/// show their first channels, the last one repeated).
pub fn encode_png(g: &Grid, channels: usize, canvas: &[u8]) -> Result<Vec<u8>> {
    let plane = g.width * g.height;
    if channels == 0 || canvas.len() != channels * plane {
        return Err(DataError::invalid(
            "preview grid",
            format!("{} values for {channels} channels of {plane}", canvas.len()),
        ));
    }
    let (w, h) = (g.width as u32, g.height as u32);
    let img: image::DynamicImage = if channels == 1 {
        image::GrayImage::from_raw(w, h, canvas.to_vec())
            .map(Into::into)
            .ok_or_else(|| DataError::invalid("preview grid", "size mismatch"))?
    } else {
        let hwc: Vec<u8> = (0..plane)
            .flat_map(|i| (0..3).map(move |ch: usize| canvas[ch.min(channels - 1) * plane + i]))
            .collect();
        image::RgbImage::from_raw(w, h, hwc)
            .map(Into::into)
            .ok_or_else(|| DataError::invalid("preview grid", "size mismatch"))?
    };
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| DataError::invalid("preview grid", format!("PNG encoding failed: {e}")))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_layout_and_nearest_upscaling() {
        // Three 1x2 images, cells of at least 4 px: scale 2, 2 columns, 2 rows.
        let imgs = vec![vec![10u8, 20], vec![30, 40], vec![50, 60]];
        let (g, c) = grid(&imgs, 1, 1, 2, 4);
        assert_eq!((g.cols, g.rows, g.scale), (2, 2, 2));
        assert_eq!((g.height, g.width), (2 * 4 + 2, 2 * 6 + 2));
        // First cell: rows 2..4, columns 2..6 = 10 10 20 20.
        assert_eq!(&c[2 * g.width + 2..2 * g.width + 6], &[10, 10, 20, 20]);
        assert_eq!(&c[3 * g.width + 2..3 * g.width + 6], &[10, 10, 20, 20]);
        // Second cell starts at column 2 + 4 + 2 = 8.
        assert_eq!(&c[2 * g.width + 8..2 * g.width + 12], &[30, 30, 40, 40]);
        // Third cell: second row of cells, rows 6..8.
        assert_eq!(&c[6 * g.width + 2..6 * g.width + 6], &[50, 50, 60, 60]);
        assert_eq!(c[0], GAP_GREY);
        assert_eq!(c[6 * g.width + 8], GAP_GREY);
    }
}
