//! Training-time augmentation: random padded crop and horizontal flip on `u8` CHW images.
//!
//! A crop with padding `p` is defined as "pad the image by `p` on every side,
//! then cut a window of the original size whose top-left corner is at
//! `(oy, ox)` in padded coordinates", with `ox` and `oy` drawn independently
//! and uniformly from `0..=2p`. It is computed directly, without building the
//! padded image. Padding is either zeros (black pixels, as torchvision's
//! `RandomCrop(padding=p)` on a raw image) or `reflect` in the numpy/PyTorch
//! sense: the edge pixel is not repeated, so `padded[-1] = x[1]`.
//!
//! The random resized crop ([`wrnc_recipe::CropKind::RandomResized`]) follows torchvision's
//! `RandomResizedCrop(size=(H, W))`: up to 10 tries draw an area fraction uniformly in
//! [0.08, 1] and a log-uniform aspect ratio (w/h) in [3/4, 4/3], giving
//! `w = round(sqrt(area * ratio))`, `h = round(sqrt(area / ratio))`; the first window that
//! fits is placed uniformly; otherwise the centre crop of the image clamped to the ratio
//! range is taken. The window is resized back to `H x W` bilinearly (half-pixel centres, as
//! PyTorch's `interpolate(mode="bilinear", align_corners=False)`; the window is never larger
//! than the image, so no antialiasing applies), rounding to the nearest `u8`. Every size works:
//! images need not be square.

use rand::Rng;
use wrnc_recipe::{Augment, PadMode};

use crate::error::{DataError, Result};
use crate::imageops::Shape;
use crate::mask;
use crate::policy::{self, PolicyDraw};

/// The random choices for one image: crop offsets in padded coordinates
/// (`0..=2p`; `p, p` is the identity) or the window of a random resized crop, and whether to
/// flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AugmentParams {
    /// Horizontal offset of the crop window in padded coordinates.
    pub ox: usize,
    /// Vertical offset of the crop window in padded coordinates.
    pub oy: usize,
    /// Whether the cropped image is flipped left-right.
    pub flip: bool,
    /// The window of a random resized crop (`None` for the padded crop).
    pub resized: Option<Window>,
    /// The cutout square (zeroed after normalisation), when cutout is on.
    pub cutout: Option<Window>,
    /// The random erasing rectangle (filled after normalisation), when one is erased.
    pub erase: Option<Window>,
    /// The ops of the augmentation policy (applied after the flip), when a policy is on.
    pub policy: Option<PolicyDraw>,
}

/// A window of an image: top-left corner `(top, left)` and size `height x width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// torchvision's `RandomResizedCrop` defaults: the area fraction and aspect ratio ranges and
/// the number of tries.
const RRC_SCALE: (f64, f64) = (0.08, 1.0);
const RRC_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
const RRC_TRIES: usize = 10;

/// Draws the window of a random resized crop of a `height x width` image (see the module
/// docs). RNG use per try: the area fraction, then the log ratio, then (for the window that
/// fits) the top and left offsets.
pub fn random_resized_window<R: Rng + ?Sized>(height: usize, width: usize, rng: &mut R) -> Window {
    let area = (height * width) as f64;
    let (lo, hi) = (RRC_RATIO.0.ln(), RRC_RATIO.1.ln());
    for _ in 0..RRC_TRIES {
        let target = area * rng.random_range(RRC_SCALE.0..RRC_SCALE.1);
        let ratio = rng.random_range(lo..hi).exp();
        let w = (target * ratio).sqrt().round() as usize;
        let h = (target / ratio).sqrt().round() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return Window {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < RRC_RATIO.0 {
        (
            width,
            ((width as f64 / RRC_RATIO.0).round() as usize).clamp(1, height),
        )
    } else if in_ratio > RRC_RATIO.1 {
        (
            ((height as f64 * RRC_RATIO.1).round() as usize).clamp(1, width),
            height,
        )
    } else {
        (width, height)
    };
    Window {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// The source index and weight of the second neighbour for output index `i` of a bilinear
/// resize from `n_in` to `n_out` (PyTorch's `align_corners=False` source index).
fn bilinear_tap(i: usize, n_in: usize, n_out: usize) -> (usize, usize, f32) {
    let scale = n_in as f32 / n_out as f32;
    let src = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
    let i0 = (src as usize).min(n_in - 1);
    let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
    (i0, i1, src - i0 as f32)
}

/// Cuts `win` out of the CHW image `src` (`channels x height x width`) and resizes it
/// bilinearly to `height x width` into `dst`.
pub fn resized_crop(
    src: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    win: Window,
    dst: &mut [u8],
) -> Result<()> {
    check_sizes(src, dst, channels, height, width)?;
    if win.height == 0
        || win.width == 0
        || win.top + win.height > height
        || win.left + win.width > width
    {
        return Err(DataError::invalid(
            "crop",
            format!("window {win:?} outside the {height}x{width} image"),
        ));
    }
    let cols: Vec<(usize, usize, f32)> = (0..width)
        .map(|x| bilinear_tap(x, win.width, width))
        .collect();
    let plane = height * width;
    for ch in 0..channels {
        let s = &src[ch * plane..(ch + 1) * plane];
        for y in 0..height {
            let (y0, y1, ly) = bilinear_tap(y, win.height, height);
            let r0 = &s[(win.top + y0) * width + win.left..];
            let r1 = &s[(win.top + y1) * width + win.left..];
            let row = &mut dst[ch * plane + y * width..ch * plane + (y + 1) * width];
            for (o, &(x0, x1, lx)) in row.iter_mut().zip(&cols) {
                let top = f32::from(r0[x0]) * (1.0 - lx) + f32::from(r0[x1]) * lx;
                let bottom = f32::from(r1[x0]) * (1.0 - lx) + f32::from(r1[x1]) * lx;
                *o = (top * (1.0 - ly) + bottom * ly).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Ok(())
}

/// Checks that `aug` suits `height x width` images: reflect padding needs `p < height` and
/// `p < width`.
pub fn check_fits(aug: &Augment, height: usize, width: usize) -> Result<()> {
    if let Some(crop) = aug.crop.on() {
        check_crop(crop.padding, crop.mode, height, width)?;
    }
    Ok(())
}

fn check_crop(pad: usize, mode: PadMode, height: usize, width: usize) -> Result<()> {
    if pad > 0 && mode == PadMode::Reflect && (pad >= height || pad >= width) {
        return Err(DataError::invalid(
            "augmentation",
            format!("reflect padding {pad} must be smaller than the image size {height}x{width}"),
        ));
    }
    Ok(())
}

/// Draws the parameters for one `height x width` image. RNG use, in order: `ox` then `oy`
/// (each uniform in `0..=2p`, only if the crop padding `p > 0`) or the random resized crop's
/// window ([`random_resized_window`], only with that crop), then the flip (a Bernoulli(0.5),
/// only if `aug.flip`), then the policy's ops ([`crate::policy::sample`], only with a
/// policy), then the cutout centre ([`crate::mask::cutout_window`], only with
/// cutout), then random erasing's draws ([`crate::mask::erase_window`], only with it).
pub fn sample<R: Rng + ?Sized>(
    aug: &Augment,
    height: usize,
    width: usize,
    rng: &mut R,
) -> AugmentParams {
    let resized = aug
        .random_resized()
        .then(|| random_resized_window(height, width, rng));
    let p = aug.crop_padding();
    let (ox, oy) = if p > 0 {
        let ox = rng.random_range(0..=2 * p);
        let oy = rng.random_range(0..=2 * p);
        (ox, oy)
    } else {
        (0, 0)
    };
    let flip = aug.flip && rng.random_bool(0.5);
    let policy = policy::sample(aug, rng);
    let cutout = aug
        .cutout
        .map(|c| mask::cutout_window(c, height, width, rng));
    let erase = aug
        .random_erasing
        .and_then(|re| mask::erase_window(&re, height, width, rng));
    AugmentParams {
        ox,
        oy,
        flip,
        resized,
        cutout,
        erase,
        policy,
    }
}

/// Applies the parts of `params` that act on the normalised CHW image `img`: zeroes the
/// cutout square, then fills the random erasing rectangle with `aug`'s value (standard
/// normal draws from `rng` for `value: random`).
pub fn apply_masks<R: Rng + ?Sized>(
    aug: &Augment,
    params: &AugmentParams,
    img: &mut [f32],
    channels: usize,
    height: usize,
    width: usize,
    rng: &mut R,
) -> Result<()> {
    if img.len() != channels * height * width {
        return Err(DataError::invalid(
            "mask input",
            format!("{} values, expected {channels}x{height}x{width}", img.len()),
        ));
    }
    if let Some(win) = params.cutout {
        mask::fill_window(img, channels, height, width, win, || 0.0);
    }
    if let (Some(win), Some(re)) = (params.erase, aug.random_erasing) {
        mask::erase(img, channels, height, width, win, re.value, rng);
    }
    Ok(())
}

/// Applies `params` drawn for `aug` to the CHW image `src` (`channels x height x width`),
/// writing `dst`: the crop, the flip, then the policy's ops.
pub fn apply(
    aug: &Augment,
    params: AugmentParams,
    src: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    dst: &mut [u8],
) -> Result<()> {
    match (params.resized, aug.crop.on()) {
        (Some(win), _) => resized_crop(src, channels, height, width, win, dst)?,
        (None, Some(crop)) if aug.crop_padding() > 0 => crop_padded(
            src,
            channels,
            height,
            width,
            crop.padding,
            crop.mode,
            params.ox,
            params.oy,
            dst,
        )?,
        _ => {
            check_sizes(src, dst, channels, height, width)?;
            dst.copy_from_slice(src);
        }
    }
    if params.flip {
        hflip_in_place(dst, channels, height, width)?;
    }
    if let Some(draw) = &params.policy {
        policy::check_channels(aug, channels)?;
        let s = Shape {
            c: channels,
            h: height,
            w: width,
        };
        policy::apply(aug, draw, dst, s);
    }
    Ok(())
}

fn check_sizes(src: &[u8], dst: &[u8], channels: usize, height: usize, width: usize) -> Result<()> {
    let size = channels * height * width;
    if src.len() != size || dst.len() != size {
        return Err(DataError::invalid(
            "augmentation input",
            format!(
                "source has {} values and destination {}, expected {channels}x{height}x{width} = {size}",
                src.len(),
                dst.len()
            ),
        ));
    }
    Ok(())
}

/// Maps a padded coordinate `i - p` (here `i` may be negative or `>= n`) to a
/// source index, or `None` for a zero pixel.
fn source_index(i: isize, n: usize, mode: PadMode) -> Option<usize> {
    let n = n as isize;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PadMode::Zero => None,
        PadMode::Reflect => {
            let r = if i < 0 { -i } else { 2 * (n - 1) - i };
            // Guaranteed in range when p < n; clamp defensively otherwise.
            Some(r.clamp(0, n - 1) as usize)
        }
    }
}

/// Pads the CHW image `src` by `pad` on every side with `mode` and copies the
/// `height x width` window whose top-left corner is `(oy, ox)` in padded
/// coordinates into `dst`. `ox, oy` must be in `0..=2*pad`; reflect padding
/// requires `pad < height` and `pad < width`.
#[allow(clippy::too_many_arguments)]
pub fn crop_padded(
    src: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    pad: usize,
    mode: PadMode,
    ox: usize,
    oy: usize,
    dst: &mut [u8],
) -> Result<()> {
    check_sizes(src, dst, channels, height, width)?;
    if ox > 2 * pad || oy > 2 * pad {
        return Err(DataError::invalid(
            "crop",
            format!("offsets ({ox}, {oy}) outside 0..={}", 2 * pad),
        ));
    }
    check_crop(pad, mode, height, width)?;
    let plane = height * width;
    let p = pad as isize;
    let cols: Vec<Option<usize>> = (0..width)
        .map(|x| source_index(x as isize + ox as isize - p, width, mode))
        .collect();
    for ch in 0..channels {
        let s = &src[ch * plane..(ch + 1) * plane];
        let d = &mut dst[ch * plane..(ch + 1) * plane];
        for y in 0..height {
            let row = &mut d[y * width..(y + 1) * width];
            match source_index(y as isize + oy as isize - p, height, mode) {
                None => row.fill(0),
                Some(sy) => {
                    let srow = &s[sy * width..(sy + 1) * width];
                    for (o, c) in row.iter_mut().zip(&cols) {
                        *o = c.map_or(0, |sx| srow[sx]);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Flips a CHW image left-right in place.
pub fn hflip_in_place(img: &mut [u8], channels: usize, height: usize, width: usize) -> Result<()> {
    if img.len() != channels * height * width {
        return Err(DataError::invalid(
            "flip input",
            format!("{} values, expected {channels}x{height}x{width}", img.len()),
        ));
    }
    for row in img.chunks_exact_mut(width) {
        row.reverse();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use wrnc_recipe::{Crop, CropKind, Toggle};

    /// 3x3 single-channel image
    /// 1 2 3
    /// 4 5 6
    /// 7 8 9
    const IMG: [u8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];

    fn crop(pad: usize, mode: PadMode, ox: usize, oy: usize) -> Vec<u8> {
        let mut out = vec![0u8; 9];
        crop_padded(&IMG, 1, 3, 3, pad, mode, ox, oy, &mut out).unwrap();
        out
    }

    /// `(mode, pad, ox, oy, expected crop of IMG)`. Reflect-padded with p=1, IMG is
    /// 5 4 5 6 5 / 2 1 2 3 2 / 5 4 5 6 5 / 8 7 8 9 8 / 5 4 5 6 5; with p=2, rows/cols
    /// -2,-1,0 reflect to 2,1,0 and cols 2,3,4 to 2,1,0.
    const CROPS: &[(PadMode, usize, usize, usize, [u8; 9])] = &[
        (PadMode::Reflect, 1, 0, 0, [5, 4, 5, 2, 1, 2, 5, 4, 5]),
        (PadMode::Reflect, 1, 2, 1, [2, 3, 2, 5, 6, 5, 8, 9, 8]),
        (PadMode::Reflect, 1, 1, 2, [4, 5, 6, 7, 8, 9, 4, 5, 6]),
        (PadMode::Reflect, 1, 1, 1, IMG),
        (PadMode::Reflect, 2, 0, 0, [9, 8, 7, 6, 5, 4, 3, 2, 1]),
        (PadMode::Reflect, 2, 4, 2, [3, 2, 1, 6, 5, 4, 9, 8, 7]),
        (PadMode::Zero, 1, 0, 0, [0, 0, 0, 0, 1, 2, 0, 4, 5]),
        (PadMode::Zero, 1, 2, 2, [5, 6, 0, 8, 9, 0, 0, 0, 0]),
        (PadMode::Zero, 1, 2, 0, [0, 0, 0, 2, 3, 0, 5, 6, 0]),
        (PadMode::Zero, 2, 4, 4, [9, 0, 0, 0, 0, 0, 0, 0, 0]),
        (PadMode::Zero, 1, 1, 1, IMG),
    ];

    /// Checks every case of [`CROPS`] whose mode and padding `pick` selects (at least one).
    fn check_crops(pick: impl Fn(PadMode, usize) -> bool) {
        let cases: Vec<_> = CROPS.iter().filter(|c| pick(c.0, c.1)).collect();
        assert!(!cases.is_empty());
        for &&(mode, pad, ox, oy, want) in &cases {
            let got = crop(pad, mode, ox, oy);
            assert_eq!(got, want, "{mode:?} pad {pad} at ({ox}, {oy})");
        }
    }

    #[test]
    fn reflect_crop_pad1() {
        check_crops(|mode, pad| mode == PadMode::Reflect && pad == 1);
    }

    #[test]
    fn reflect_crop_pad2() {
        check_crops(|mode, pad| mode == PadMode::Reflect && pad == 2);
    }

    #[test]
    fn zero_crop() {
        check_crops(|mode, _| mode == PadMode::Zero);
    }

    #[test]
    fn crop_multichannel_and_errors() {
        // Channel 1 = channel 0 + 10; the same window applies to both.
        let src: Vec<u8> = IMG
            .iter()
            .chain(IMG.iter())
            .enumerate()
            .map(|(i, &v)| v + if i >= 9 { 10 } else { 0 })
            .collect();
        let mut out = vec![0u8; 18];
        crop_padded(&src, 2, 3, 3, 1, PadMode::Zero, 2, 2, &mut out).unwrap();
        assert_eq!(
            out,
            vec![5, 6, 0, 8, 9, 0, 0, 0, 0, 15, 16, 0, 18, 19, 0, 0, 0, 0]
        );
        assert!(crop_padded(&src, 2, 3, 3, 1, PadMode::Zero, 3, 0, &mut out).is_err());
        assert!(crop_padded(&src, 2, 3, 3, 3, PadMode::Reflect, 0, 0, &mut out).is_err());
        assert!(crop_padded(&src[..17], 2, 3, 3, 1, PadMode::Zero, 0, 0, &mut out).is_err());
        // Zero padding larger than the image is fine.
        crop_padded(&src, 2, 3, 3, 3, PadMode::Zero, 0, 0, &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 0));
    }

    #[test]
    fn flip() {
        let mut img = IMG.to_vec();
        hflip_in_place(&mut img, 1, 3, 3).unwrap();
        assert_eq!(img, vec![3, 2, 1, 6, 5, 4, 9, 8, 7]);
        let cfg = Augment {
            crop: Toggle::On(Crop {
                padding: 1,
                mode: PadMode::Zero,
                kind: CropKind::Padded,
            }),
            flip: true,
            ..Augment::NONE
        };
        let mut out = vec![0u8; 9];
        // Crop first (window at 2,2) then flip.
        apply(
            &cfg,
            AugmentParams {
                ox: 2,
                oy: 2,
                flip: true,
                resized: None,
                cutout: None,
                erase: None,
                policy: None,
            },
            &IMG,
            1,
            3,
            3,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, vec![0, 6, 5, 0, 9, 8, 0, 0, 0]);
        apply(
            &Augment::NONE,
            AugmentParams {
                ox: 0,
                oy: 0,
                flip: false,
                resized: None,
                cutout: None,
                erase: None,
                policy: None,
            },
            &IMG,
            1,
            3,
            3,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, IMG.to_vec());
    }

    #[test]
    fn offsets_uniform_and_independent() {
        let p = 2;
        let k = 2 * p + 1;
        let cfg = Augment {
            crop: Toggle::On(Crop {
                padding: p,
                mode: PadMode::Reflect,
                kind: CropKind::Padded,
            }),
            flip: true,
            ..Augment::NONE
        };
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let per_cell = 400;
        let n = k * k * per_cell;
        let mut joint = vec![0usize; k * k];
        let mut flips = 0;
        for _ in 0..n {
            let a = sample(&cfg, 32, 32, &mut rng);
            assert!(a.ox < k && a.oy < k);
            joint[a.oy * k + a.ox] += 1;
            flips += usize::from(a.flip);
        }
        // Every one of the 25 pairs occurs, each close to n/25 (sd ~ 19.6):
        // a uniform joint distribution means uniform, independent marginals.
        for (i, &c) in joint.iter().enumerate() {
            assert!(c.abs_diff(per_cell) < 100, "pair {i}: {c}");
        }
        // Chi-square test of independence on the 5x5 contingency table
        // (16 degrees of freedom; 99.9% quantile is 39.25).
        let rows: Vec<f64> = (0..k)
            .map(|y| joint[y * k..(y + 1) * k].iter().sum::<usize>() as f64)
            .collect();
        let cols: Vec<f64> = (0..k)
            .map(|x| (0..k).map(|y| joint[y * k + x]).sum::<usize>() as f64)
            .collect();
        let mut chi2 = 0.0;
        for y in 0..k {
            for x in 0..k {
                let e = rows[y] * cols[x] / n as f64;
                chi2 += (joint[y * k + x] as f64 - e).powi(2) / e;
            }
        }
        assert!(chi2 < 39.25, "chi2 {chi2}");
        // Flip probability 0.5 (sd = 50).
        assert!(flips.abs_diff(n / 2) < 250, "flips {flips}");
        // A degenerate generator with ox == oy would fail the test above.
        assert!(joint[1] > 0 && joint[k] > 0);
    }

    #[test]
    fn disabled_draws_nothing() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = sample(&Augment::NONE, 3, 3, &mut rng);
        assert_eq!(
            a,
            AugmentParams {
                ox: 0,
                oy: 0,
                flip: false,
                resized: None,
                cutout: None,
                erase: None,
                policy: None,
            }
        );
        // A crop of padding 0 draws nothing either.
        let zero_crop = Augment {
            crop: Toggle::On(Crop {
                padding: 0,
                mode: PadMode::Reflect,
                kind: CropKind::Padded,
            }),
            flip: false,
            ..Augment::NONE
        };
        assert!(zero_crop.is_identity());
        assert_eq!(sample(&zero_crop, 3, 3, &mut rng), a);
        assert!(check_fits(&Augment::standard(PadMode::Reflect), 3, 3).is_err());
        assert!(check_fits(&Augment::standard(PadMode::Zero), 3, 3).is_ok());
    }

    #[test]
    fn policy_draws_come_after_the_crop_and_flip_and_only_with_a_policy() {
        use wrnc_recipe::{AugmentPolicy, Cutout};
        let base = Augment {
            cutout: Some(Cutout { size: 2 }),
            ..Augment::standard(PadMode::Reflect)
        };
        let with = Augment {
            policy: Some(AugmentPolicy::TrivialAugment),
            ..base
        };
        for seed in 0..20 {
            let mut a = ChaCha8Rng::seed_from_u64(seed);
            let mut b = a.clone();
            let plain = sample(&base, 8, 8, &mut a);
            let pol = sample(&with, 8, 8, &mut b);
            // The crop and flip draws are the same; the policy's come next.
            assert_eq!((plain.ox, plain.oy, plain.flip), (pol.ox, pol.oy, pol.flip));
            assert!(plain.policy.is_none() && pol.policy.is_some());
            // Without a policy, the cutout draw follows the flip directly.
            let mut c = ChaCha8Rng::seed_from_u64(seed);
            let (_, _): (usize, usize) = (c.random_range(0..=8), c.random_range(0..=8));
            let _: bool = c.random_bool(0.5);
            let win = mask::cutout_window(Cutout { size: 2 }, 8, 8, &mut c);
            assert_eq!(plain.cutout, Some(win));
        }
        // An image whose policy drew AutoContrast: the image stretched to 0..255.
        let aug = Augment {
            policy: Some(AugmentPolicy::TrivialAugment),
            ..Augment::NONE
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let params = (0..1000)
            .map(|_| sample(&aug, 3, 3, &mut rng))
            .find(|p| {
                p.policy.is_some_and(|d| {
                    d.ops()
                        .all(|o| o.op == crate::policy::PolicyOp::AutoContrast)
                })
            })
            .unwrap();
        let mut out = [0u8; 9];
        apply(&aug, params, &IMG, 1, 3, 3, &mut out).unwrap();
        let mut want = IMG;
        crate::imageops::autocontrast(&mut want, Shape { c: 1, h: 3, w: 3 });
        assert_eq!(out, want);
        // (The maximum becomes 254 in f32, as in torchvision.)
        assert_eq!((out[0], out[8]), (0, 254));
    }

    #[test]
    fn padded_crop_and_flip_at_any_size() {
        // A 2-channel 3x5 (H x W) image: pixel value 10*y + x (+100 in channel 1).
        let (h, w) = (3usize, 5usize);
        let src: Vec<u8> = (0..2 * h * w)
            .map(|i| {
                let (c, y, x) = (i / (h * w), i % (h * w) / w, i % w);
                (100 * c + 10 * y + x) as u8
            })
            .collect();
        let aug = Augment::standard(PadMode::Zero);
        let mut out = vec![0u8; src.len()];
        // Window shifted one right and one down, then flipped.
        let p = AugmentParams {
            ox: 5,
            oy: 5,
            flip: true,
            resized: None,
            cutout: None,
            erase: None,
            policy: None,
        };
        apply(&aug, p, &src, 2, h, w, &mut out).unwrap();
        assert_eq!(&out[..w], &[0, 14, 13, 12, 11]);
        assert_eq!(&out[h * w..h * w + w], &[0, 114, 113, 112, 111]);
        assert_eq!(&out[2 * w..3 * w], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn random_resized_crop() {
        // Identity window: the image is unchanged.
        let src: Vec<u8> = (0..24).collect();
        let mut out = vec![0u8; 24];
        let full = Window {
            top: 0,
            left: 0,
            height: 4,
            width: 6,
        };
        resized_crop(&src, 1, 4, 6, full, &mut out).unwrap();
        assert_eq!(out, src);
        // A 2x2 window of a 4x4 image, upsampled x2 with half-pixel centres:
        // source x = (i + 0.5) / 2 - 0.5 -> 0, 0.25, 0.75, 1 (clamped at the edges).
        let src: Vec<u8> = vec![0, 100, 0, 0, 200, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut out = vec![0u8; 16];
        let win = Window {
            top: 0,
            left: 0,
            height: 2,
            width: 2,
        };
        resized_crop(&src, 1, 4, 4, win, &mut out).unwrap();
        assert_eq!(&out[..4], &[0, 25, 75, 100]);
        assert_eq!(&out[12..], &[200, 160, 80, 40]);
        // Row 1 (source y 0.25): 0.75 * row 0 + 0.25 * row 3.
        assert_eq!(out[4], 50);
        let bad = Window { top: 3, ..win };
        assert!(resized_crop(&src, 1, 4, 4, bad, &mut out).is_err());
        // Windows: inside the image, ratio and area in range, deterministic per seed.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..500 {
            let w = random_resized_window(48, 64, &mut rng);
            assert!(w.top + w.height <= 48 && w.left + w.width <= 64);
            assert!(w.height > 0 && w.width > 0);
        }
        let draw = |seed| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            sample(
                &Augment {
                    crop: Toggle::On(Crop::RANDOM_RESIZED),
                    flip: true,
                    ..Augment::NONE
                },
                40,
                30,
                &mut r,
            )
        };
        assert_eq!(draw(3), draw(3));
        assert!(draw(3).resized.is_some());
        // A very wide image falls back to the centre crop at the largest ratio when no try
        // fits: at 1 x 100 no window of area >= 8 pixels has height 1 and ratio <= 4/3.
        let w = random_resized_window(1, 100, &mut rng);
        assert_eq!((w.height, w.width, w.left), (1, 1, 49));
    }
}
