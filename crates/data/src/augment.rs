//! Training-time augmentation: random padded crop and horizontal flip on `u8` CHW images.
//!
//! A crop with padding `p` is defined as "pad the image by `p` on every side,
//! then cut a window of the original size whose top-left corner is at
//! `(oy, ox)` in padded coordinates", with `ox` and `oy` drawn independently
//! and uniformly from `0..=2p`. It is computed directly, without building the
//! padded image. Padding is either zeros (black pixels, as torchvision's
//! `RandomCrop(padding=p)` on a raw image) or `reflect` in the numpy/PyTorch
//! sense: the edge pixel is not repeated, so `padded[-1] = x[1]`.

use rand::Rng;
use wrnc_recipe::{Augment, PadMode};

use crate::error::{DataError, Result};

/// The random choices for one image: crop offsets in padded coordinates
/// (`0..=2p`; `p, p` is the identity) and whether to flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AugmentParams {
    /// Horizontal offset of the crop window in padded coordinates.
    pub ox: usize,
    /// Vertical offset of the crop window in padded coordinates.
    pub oy: usize,
    /// Whether the cropped image is flipped left-right.
    pub flip: bool,
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

/// Draws the parameters for one image. RNG use, in order: `ox` then `oy`
/// (each uniform in `0..=2p`, only if the crop padding `p > 0`), then the flip
/// (a Bernoulli(0.5), only if `aug.flip`).
pub fn sample<R: Rng + ?Sized>(aug: &Augment, rng: &mut R) -> AugmentParams {
    let p = aug.crop_padding();
    let (ox, oy) = if p > 0 {
        let ox = rng.random_range(0..=2 * p);
        let oy = rng.random_range(0..=2 * p);
        (ox, oy)
    } else {
        (0, 0)
    };
    let flip = aug.flip && rng.random_bool(0.5);
    AugmentParams { ox, oy, flip }
}

/// Applies `params` drawn for `aug` to the CHW image `src` (`channels x height x width`),
/// writing `dst`.
pub fn apply(
    aug: &Augment,
    params: AugmentParams,
    src: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    dst: &mut [u8],
) -> Result<()> {
    match aug.crop.on() {
        Some(crop) if crop.padding > 0 => crop_padded(
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
    use wrnc_recipe::{Crop, Toggle};

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
            }),
            flip: true,
        };
        let mut out = vec![0u8; 9];
        // Crop first (window at 2,2) then flip.
        apply(
            &cfg,
            AugmentParams {
                ox: 2,
                oy: 2,
                flip: true,
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
            }),
            flip: true,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let per_cell = 400;
        let n = k * k * per_cell;
        let mut joint = vec![0usize; k * k];
        let mut flips = 0;
        for _ in 0..n {
            let a = sample(&cfg, &mut rng);
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
        let a = sample(&Augment::NONE, &mut rng);
        assert_eq!(
            a,
            AugmentParams {
                ox: 0,
                oy: 0,
                flip: false
            }
        );
        // A crop of padding 0 draws nothing either.
        let zero_crop = Augment {
            crop: Toggle::On(Crop {
                padding: 0,
                mode: PadMode::Reflect,
            }),
            flip: false,
        };
        assert!(zero_crop.is_identity());
        assert_eq!(sample(&zero_crop, &mut rng), a);
        assert!(check_fits(&Augment::standard(PadMode::Reflect), 3, 3).is_err());
        assert!(check_fits(&Augment::standard(PadMode::Zero), 3, 3).is_ok());
    }
}
