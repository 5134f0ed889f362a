//! The image ops of the augmentation policies ([`crate::policy`]) on `u8` CHW images of 1 or
//! 3 channels, with the semantics of torchvision's tensor kernels
//! (`torchvision.transforms.v2.functional` on `uint8` tensors):
//!
//! * colour ops compute in `f32` as those kernels do and convert back by truncation
//!   (`tensor.to(uint8)`), after clamping to `[0, 255]`; the grey image of `Color` and
//!   `Contrast` is `floor(0.2989 R + 0.587 G + 0.114 B)`, and a 1-channel image is its own
//!   grey (`Color` leaves it unchanged);
//! * geometric ops ([`affine`], [`rotate`]) sample with nearest interpolation on
//!   `grid_sample`'s grid (`align_corners=False`, the centre of the image as origin, the
//!   inverse matrix of torchvision's `_get_inverse_affine_matrix`); pixels that fall outside
//!   the image get `fill`. Rotations by multiples of 90 degrees take torchvision's exact fast
//!   paths.
//!
//! The `image` and `imageproc` crates have affine warps, histogram equalisation and contrast
//! stretching, but with other centre, rounding and look-up-table conventions, so these ops are
//! written here against torchvision's definitions (tests compare them with torchvision's
//! output, `tests/fixtures/augment_ops.*`).

/// The shape of a CHW image: channels (1 or 3), height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Channels.
    pub c: usize,
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
}

impl Shape {
    fn plane(self) -> usize {
        self.h * self.w
    }
}

/// Converts an `f32` kernel result back to `u8` as `clamp(0, 255).to(uint8)` does
/// (truncation toward zero).
fn to_u8(v: f32) -> u8 {
    v.clamp(0.0, 255.0) as u8
}

/// `image1 * ratio + image2 * (1 - ratio)` clamped and truncated (torchvision's `_blend`).
fn blend(p: u8, other: f32, ratio: f32) -> u8 {
    to_u8(f32::from(p) * ratio + other * (1.0 - ratio))
}

/// The grey image `floor(0.2989 R + 0.587 G + 0.114 B)` of a 3-channel image, or the image
/// itself for 1 channel.
fn grey(img: &[u8], s: Shape) -> Vec<f32> {
    let n = s.plane();
    if s.c == 1 {
        return img.iter().map(|&p| f32::from(p)).collect();
    }
    (0..n)
        .map(|i| {
            let (r, g, b) = (
                f32::from(img[i]),
                f32::from(img[n + i]),
                f32::from(img[2 * n + i]),
            );
            (r * 0.2989 + g * 0.587 + b * 0.114).floor()
        })
        .collect()
}

/// `adjust_brightness(factor)`: every value times `factor`.
pub fn brightness(img: &mut [u8], factor: f64) {
    let f = factor as f32;
    for p in img {
        *p = to_u8(f32::from(*p) * f);
    }
}

/// `adjust_saturation(factor)` (the policies' `Color`): a blend with the grey image; a
/// 1-channel image is left unchanged.
pub fn color(img: &mut [u8], s: Shape, factor: f64) {
    if s.c == 1 {
        return;
    }
    let g = grey(img, s);
    let n = s.plane();
    for (i, p) in img.iter_mut().enumerate() {
        *p = blend(*p, g[i % n], factor as f32);
    }
}

/// `adjust_contrast(factor)`: a blend with the mean of the grey image.
pub fn contrast(img: &mut [u8], s: Shape, factor: f64) {
    let g = grey(img, s);
    let mean = (g.iter().map(|&v| f64::from(v)).sum::<f64>() / g.len().max(1) as f64) as f32;
    for p in img {
        *p = blend(*p, mean, factor as f32);
    }
}

/// `adjust_sharpness(factor)`: the interior pixels blend with the rounded 3x3 smoothing
/// `[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`; the border keeps its pixels. Images of 2 or
/// fewer rows or columns are left unchanged.
pub fn sharpness(img: &mut [u8], s: Shape, factor: f64) {
    if s.h <= 2 || s.w <= 2 {
        return;
    }
    let (a, b) = (1.0f32 / 13.0, 5.0f32 / 13.0);
    let alpha = (1.0 - factor) as f32;
    let w = s.w;
    for plane in img.chunks_exact_mut(s.plane()) {
        let src: Vec<f32> = plane.iter().map(|&p| f32::from(p)).collect();
        for y in 1..s.h - 1 {
            for x in 1..w - 1 {
                let mut acc = 0.0f32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let k = if dy == 1 && dx == 1 { b } else { a };
                        acc += src[(y + dy - 1) * w + x + dx - 1] * k;
                    }
                }
                let v = src[y * w + x];
                plane[y * w + x] = to_u8(v + alpha * (acc.round_ties_even() - v));
            }
        }
    }
}

/// `posterize(bits)`: keeps the `bits` highest bits of every value (`bits` >= 8: unchanged).
pub fn posterize(img: &mut [u8], bits: u32) {
    if bits >= 8 {
        return;
    }
    let mask = !(0xffu8 >> bits);
    for p in img {
        *p &= mask;
    }
}

/// `solarize(threshold)`: inverts every value `>= threshold` (compared in `f32`).
pub fn solarize(img: &mut [u8], threshold: f64) {
    let t = threshold as f32;
    for p in img {
        if f32::from(*p) >= t {
            *p = 255 - *p;
        }
    }
}

/// `invert`: `255 - p`.
pub fn invert(img: &mut [u8]) {
    for p in img {
        *p = 255 - *p;
    }
}

/// `autocontrast`: each channel stretched linearly so that its minimum becomes 0 and its
/// maximum 255 (a constant channel is unchanged).
pub fn autocontrast(img: &mut [u8], s: Shape) {
    for plane in img.chunks_exact_mut(s.plane()) {
        let (lo, hi) = plane
            .iter()
            .fold((255u8, 0u8), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        if lo == hi {
            continue;
        }
        let min = f32::from(lo);
        let inv_scale = (f32::from(hi) - min) * (1.0f32 / 255.0);
        for p in plane.iter_mut() {
            *p = to_u8((f32::from(*p) - min) / inv_scale);
        }
    }
}

/// `equalize`: each channel's histogram equalised with PIL's look-up table, as torchvision:
/// `step = (pixels - count of the largest value) / 255` (integer division), `lut[0] = 0`,
/// `lut[k] = min(255, (cumulative count below k + step / 2) / step)`; a channel with
/// `step = 0` is unchanged.
pub fn equalize(img: &mut [u8], s: Shape) {
    for plane in img.chunks_exact_mut(s.plane()) {
        let mut hist = [0usize; 256];
        for &p in plane.iter() {
            hist[p as usize] += 1;
        }
        let last = hist.iter().rposition(|&n| n > 0).unwrap_or(0);
        let step = (plane.len() - hist[last]) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut cum = 0usize;
        for k in 1..256 {
            cum += hist[k - 1];
            lut[k] = ((cum + step / 2) / step).min(255) as u8;
        }
        for p in plane.iter_mut() {
            *p = lut[*p as usize];
        }
    }
}

/// torchvision's `_get_inverse_affine_matrix(center, angle, translate, scale, shear)` (angles
/// in degrees, centre relative to the image centre): the matrix taking output coordinates to
/// input coordinates, `[a, b, c, d, e, f]` for `x' = a x + b y + c`, `y' = d x + e y + f`.
pub fn inverse_affine_matrix(
    center: [f64; 2],
    angle: f64,
    translate: [f64; 2],
    scale: f64,
    shear: [f64; 2],
) -> [f64; 6] {
    let rot = angle.to_radians();
    let (sx, sy) = (shear[0].to_radians(), shear[1].to_radians());
    let [cx, cy] = center;
    let [tx, ty] = translate;
    let cos_sy = sy.cos();
    let tan_sx = sx.tan();
    let a = (rot - sy).cos() / cos_sy;
    let b = -(a * tan_sx + rot.sin());
    let c = (rot - sy).sin() / cos_sy;
    let d = rot.cos() - c * tan_sx;
    let mut m = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0];
    m[2] += cx - m[0] * (cx + tx) - m[1] * (cy + ty);
    m[5] += cy - m[3] * (cx + tx) - m[4] * (cy + ty);
    m
}

/// Warps `img` by the inverse matrix `m` (output to input coordinates, origin at the image
/// centre) with nearest interpolation, as torchvision's `_affine_grid` and `grid_sample`
/// (`align_corners=False`, `f32`, ties rounded to even); pixels mapped outside the image get
/// `fill`.
pub fn warp(img: &mut [u8], s: Shape, m: [f64; 6], fill: u8) {
    let (w, h) = (s.w as f32, s.h as f32);
    let t: Vec<f32> = m.iter().map(|&v| v as f32).collect();
    let (hw, hh) = (0.5 * w, 0.5 * h);
    // The rescaled theta: the input coordinates come out normalised to [-1, 1].
    let r = [
        [t[0] / hw, t[3] / hh],
        [t[1] / hw, t[4] / hh],
        [t[2] / hw, t[5] / hh],
    ];
    let src = img.to_vec();
    let plane = s.plane();
    for oy in 0..s.h {
        let by = oy as f32 - (h - 1.0) * 0.5;
        for ox in 0..s.w {
            let bx = ox as f32 - (w - 1.0) * 0.5;
            let gx = bx * r[0][0] + by * r[1][0] + r[2][0];
            let gy = bx * r[0][1] + by * r[1][1] + r[2][1];
            let ix = ((gx + 1.0) * hw - 0.5).round_ties_even();
            let iy = ((gy + 1.0) * hh - 0.5).round_ties_even();
            let inside = ix >= 0.0 && iy >= 0.0 && ix < w && iy < h;
            for ch in 0..s.c {
                img[ch * plane + oy * s.w + ox] = if inside {
                    src[ch * plane + iy as usize * s.w + ix as usize]
                } else {
                    fill
                };
            }
        }
    }
}

/// `affine(angle=0, translate, scale=1, shear, center)` with nearest interpolation and
/// `fill`: `center` in pixel coordinates (`None`: the image centre), `translate` in pixels,
/// `shear` in degrees.
pub fn affine(
    img: &mut [u8],
    s: Shape,
    translate: [f64; 2],
    shear: [f64; 2],
    center: Option<[f64; 2]>,
    fill: u8,
) {
    let c = center.map_or([0.0, 0.0], |[x, y]| {
        [x - s.w as f64 * 0.5, y - s.h as f64 * 0.5]
    });
    let m = inverse_affine_matrix(c, 0.0, translate, 1.0, shear);
    warp(img, s, m, fill);
}

/// `rotate(angle, fill)` about the image centre (degrees, counter-clockwise), nearest
/// interpolation, the image's size kept, `fill` where nothing maps. 0 and 180 degrees (and
/// 90 and 270 on square images) are exact pixel rearrangements, as torchvision's fast paths.
pub fn rotate(img: &mut [u8], s: Shape, angle: f64, fill: u8) -> RotateKind {
    // Python's `angle % 360`: in [0, 360).
    let angle = angle.rem_euclid(360.0);
    let quarter = if angle == 0.0 {
        Some(0)
    } else if angle == 180.0 {
        Some(2)
    } else if s.h == s.w && angle == 90.0 {
        Some(1)
    } else if s.h == s.w && angle == 270.0 {
        Some(3)
    } else {
        None
    };
    if let Some(k) = quarter {
        rot90(img, s, k);
        return RotateKind::Exact;
    }
    let m = inverse_affine_matrix([0.0, 0.0], -angle, [0.0, 0.0], 1.0, [0.0, 0.0]);
    warp(img, s, m, fill);
    RotateKind::Warp
}

/// Which path [`rotate`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateKind {
    /// A rearrangement of the pixels by a multiple of 90 degrees.
    Exact,
    /// A nearest-neighbour warp.
    Warp,
}

/// `torch.rot90(k)` over the last two axes (counter-clockwise; `k` 1 and 3 need a square
/// image).
fn rot90(img: &mut [u8], s: Shape, k: u8) {
    if k == 0 {
        return;
    }
    let src = img.to_vec();
    let (h, w) = (s.h, s.w);
    for (d, p) in img
        .chunks_exact_mut(s.plane())
        .zip(src.chunks_exact(s.plane()))
    {
        for y in 0..h {
            for x in 0..w {
                d[y * w + x] = match k {
                    1 => p[x * w + (w - 1 - y)],
                    2 => p[(h - 1 - y) * w + (w - 1 - x)],
                    _ => p[(h - 1 - x) * w + y],
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Shape = Shape { c: 1, h: 3, w: 3 };

    #[test]
    fn point_ops_by_hand() {
        let mut v = vec![0u8, 100, 200, 255];
        brightness(&mut v, 1.5);
        assert_eq!(v, [0, 150, 255, 255]);
        let mut v = vec![0u8, 127, 128, 255];
        posterize(&mut v, 1);
        assert_eq!(v, [0, 0, 128, 128]);
        let mut v = vec![0u8, 127, 128, 255];
        solarize(&mut v, 128.0);
        assert_eq!(v, [0, 127, 127, 0]);
        invert(&mut v);
        assert_eq!(v, [255, 128, 128, 255]);
    }

    #[test]
    fn autocontrast_and_equalize_by_hand() {
        // 50..=90 stretched to 0..=255: (p - 50) / (40 * (1 / 255)) in f32, truncated; the
        // maximum lands just below 255 and becomes 254, as in torchvision.
        let mut v = vec![50u8, 60, 70, 80, 90, 50, 60, 70, 80];
        autocontrast(&mut v, G);
        assert_eq!(v, [0, 63, 127, 191, 254, 0, 63, 127, 191]);
        // Constant channels are unchanged.
        let mut v = vec![7u8; 9];
        autocontrast(&mut v, G);
        assert_eq!(v, [7; 9]);
        equalize(&mut v, G);
        assert_eq!(v, [7; 9]);
    }

    #[test]
    fn rotations_by_quarters_rearrange() {
        let mut v: Vec<u8> = (1..=9).collect();
        assert_eq!(rotate(&mut v, G, 90.0, 0), RotateKind::Exact);
        // Counter-clockwise: the right column becomes the top row.
        assert_eq!(v, [3, 6, 9, 2, 5, 8, 1, 4, 7]);
        assert_eq!(rotate(&mut v, G, -90.0, 0), RotateKind::Exact);
        assert_eq!(v, (1..=9).collect::<Vec<u8>>());
        assert_eq!(rotate(&mut v, G, 180.0, 0), RotateKind::Exact);
        assert_eq!(v, [9, 8, 7, 6, 5, 4, 3, 2, 1]);
        // The warp at 90 degrees agrees with the rearrangement.
        let mut a: Vec<u8> = (1..=9).collect();
        let mut b = a.clone();
        rot90(&mut a, G, 1);
        let m = inverse_affine_matrix([0.0; 2], -90.0, [0.0; 2], 1.0, [0.0; 2]);
        warp(&mut b, G, m, 0);
        assert_eq!(a, b);
    }

    #[test]
    fn translation_shifts_and_fills() {
        let s = Shape { c: 1, h: 2, w: 4 };
        let mut v = vec![1u8, 2, 3, 4, 5, 6, 7, 8];
        affine(&mut v, s, [1.0, 0.0], [0.0, 0.0], None, 9);
        assert_eq!(v, [9, 1, 2, 3, 9, 5, 6, 7]);
    }
}
