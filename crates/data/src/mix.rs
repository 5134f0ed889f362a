//! Batch mixing: mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) as timm's `Mixup`
//! in its default `batch` mode, applied to the normalised batch after every per-image
//! augmentation.
//!
//! Per batch (timm's `_params_per_batch`): a uniform draw `< prob` decides whether the batch
//! is mixed; if so, with both on a second uniform draw `< switch_prob` picks CutMix over
//! mixup; then `lam ~ Beta(alpha, alpha)` of the chosen one. Unmixed batches have `lam = 1`.
//! Image `i` of the `n` images is mixed with image `n - 1 - i` (timm's `x.flip(0)`):
//!
//! - mixup: `x_i = lam * x_i + (1 - lam) * x_{n-1-i}`;
//! - CutMix (timm's `rand_bbox` with `correct_lam`): `r = sqrt(1 - lam)`, `ch = floor(H r)`,
//!   `cw = floor(W r)`, centre `cy` uniform in `[0, H)` then `cx` in `[0, W)`; the box is rows
//!   `clip(cy - ch/2, 0, H) .. clip(cy + ch/2, 0, H)` and the same for columns (integer
//!   halving), copied from the partner image in every channel; then
//!   `lam = 1 - box area / (H W)`.
//!
//! The draws come from [`mix_rng`]`(seed, step)`, a generator of its own keyed by the run's
//! seed and the global step, so mixing is reproducible under resume and leaves the epoch's
//! shuffle and per-image augmentation draws exactly as without it. The targets (one-hot,
//! label smoothing, `lam * t_i + (1 - lam) * t_{n-1-i}`) are the trainer's.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use wrnc_recipe::BatchMix;

use crate::augment::Window;

/// How one batch was mixed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mixed {
    /// The weight of each image's own label in its target (1: the batch is not mixed; for
    /// CutMix the value recomputed from the box's area).
    pub lam: f64,
    /// CutMix's box, taken from the partner image (`None`: mixup, or not mixed).
    pub window: Option<Window>,
}

impl Mixed {
    /// An unmixed batch.
    pub const NONE: Mixed = Mixed {
        lam: 1.0,
        window: None,
    };

    /// The index of image `i`'s partner in a batch of `n`: `n - 1 - i`.
    pub fn partner(i: usize, n: usize) -> usize {
        n - 1 - i
    }
}

/// The key of the mixing generator (a ChaCha8 key distinct from [`crate::epoch_rng`]'s).
const MIX_TAG: &[u8; 8] = b"wrnc-mix";

/// The generator of batch `step` (the run's global step, from 0) of a run seeded `seed`:
/// ChaCha8 keyed by the seed and a tag, on stream `step`.
pub fn mix_rng(seed: u64, step: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(MIX_TAG);
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(step);
    rng
}

/// A `Beta(alpha, alpha)` draw (`alpha > 0`, checked by the spec; 1 otherwise).
fn beta<R: Rng + ?Sized>(alpha: f64, rng: &mut R) -> f64 {
    Beta::new(alpha, alpha).map_or(1.0, |b| b.sample(rng))
}

/// Draws how a batch of `height x width` images is mixed (see the module docs for the order
/// of the draws).
pub fn draw<R: Rng + ?Sized>(mix: &BatchMix, height: usize, width: usize, rng: &mut R) -> Mixed {
    if rng.random::<f64>() >= mix.prob {
        return Mixed::NONE;
    }
    let (mixup, cutmix) = (mix.mixup_alpha > 0.0, mix.cutmix_alpha > 0.0);
    let use_cutmix = match (mixup, cutmix) {
        (true, true) => rng.random::<f64>() < mix.switch_prob,
        (false, true) => true,
        (_, false) => false,
    };
    let alpha = if use_cutmix {
        mix.cutmix_alpha
    } else {
        mix.mixup_alpha
    };
    if alpha <= 0.0 {
        return Mixed::NONE;
    }
    let lam = beta(alpha, rng);
    if lam == 1.0 {
        return Mixed::NONE;
    }
    if !use_cutmix {
        return Mixed { lam, window: None };
    }
    let cy = rng.random_range(0..height);
    let cx = rng.random_range(0..width);
    let window = cutmix_box(lam, cy, cx, height, width);
    let area = (window.height * window.width) as f64;
    Mixed {
        lam: 1.0 - area / (height * width) as f64,
        window: Some(window),
    }
}

/// timm's `rand_bbox` for `lam` with centre `(cy, cx)`: side `floor(H sqrt(1 - lam))`, rows
/// `cy - side/2 .. cy + side/2` clipped to the image (columns alike).
pub fn cutmix_box(lam: f64, cy: usize, cx: usize, height: usize, width: usize) -> Window {
    let ratio = (1.0 - lam).max(0.0).sqrt();
    let half_h = ((height as f64 * ratio) as usize) / 2;
    let half_w = ((width as f64 * ratio) as usize) / 2;
    let (top, bottom) = (cy.saturating_sub(half_h), (cy + half_h).min(height));
    let (left, right) = (cx.saturating_sub(half_w), (cx + half_w).min(width));
    Window {
        top,
        left,
        height: bottom.saturating_sub(top),
        width: right.saturating_sub(left),
    }
}

/// Mixes the `n` CHW images of `images` (`n x channels x height x width`, normalised) as
/// `mixed` says, each with its partner [`Mixed::partner`], in place.
pub fn apply(
    images: &mut [f32],
    n: usize,
    channels: usize,
    height: usize,
    width: usize,
    mixed: &Mixed,
) {
    let size = channels * height * width;
    debug_assert_eq!(images.len(), n * size);
    if mixed.lam == 1.0 && mixed.window.is_none() {
        return;
    }
    let (lam, rest) = (mixed.lam as f32, (1.0 - mixed.lam) as f32);
    for i in 0..n.div_ceil(2) {
        let j = Mixed::partner(i, n);
        if i == j {
            // The middle image of an odd batch is its own partner.
            if mixed.window.is_none() {
                for v in &mut images[i * size..(i + 1) * size] {
                    *v = *v * lam + *v * rest;
                }
            }
            continue;
        }
        let (head, tail) = images.split_at_mut(j * size);
        let a = &mut head[i * size..(i + 1) * size];
        let b = &mut tail[..size];
        match mixed.window {
            None => {
                for (p, q) in a.iter_mut().zip(b.iter_mut()) {
                    let (x, y) = (*p, *q);
                    *p = x * lam + y * rest;
                    *q = y * lam + x * rest;
                }
            }
            Some(win) => {
                for c in 0..channels {
                    for y in win.top..win.top + win.height {
                        let start = c * height * width + y * width + win.left;
                        let range = start..start + win.width;
                        a[range.clone()].swap_with_slice(&mut b[range]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(mixup: f64, cutmix: f64, prob: f64, switch_prob: f64) -> BatchMix {
        BatchMix {
            mixup_alpha: mixup,
            cutmix_alpha: cutmix,
            prob,
            switch_prob,
        }
    }

    #[test]
    fn cutmix_box_is_timms_rand_bbox() {
        // lam 0.75 on 32x32: ratio 0.5, cut 16, half 8; centre (10, 3): rows 2..18, columns
        // 0..11 (clipped).
        let w = cutmix_box(0.75, 10, 3, 32, 32);
        assert_eq!((w.top, w.height, w.left, w.width), (2, 16, 0, 11));
        // lam 0.5 on 7x5: r = 0.7071, cut 4 x 3, halves 2 x 1; centre (6, 4): rows 4..7,
        // columns 3..5.
        let w = cutmix_box(0.5, 6, 4, 7, 5);
        assert_eq!((w.top, w.height, w.left, w.width), (4, 3, 3, 2));
        // lam near 1: a box of zero area.
        assert_eq!(cutmix_box(0.999, 5, 5, 10, 10).height, 0);
    }

    #[test]
    fn corrected_lambda_is_one_minus_the_box_area() {
        let m = mix(0.0, 1.0, 1.0, 0.5);
        let mut rng = mix_rng(3, 0);
        let mut mean = 0.0;
        for _ in 0..4000 {
            let d = draw(&m, 12, 10, &mut rng);
            let area = d.window.map_or(0, |w| w.height * w.width) as f64;
            // f64 recomputation of timm's correct_lam.
            assert!((d.lam - (1.0 - area / 120.0)).abs() < 1e-12, "{d:?}");
            mean += d.lam;
        }
        // Beta(1, 1) is uniform; clipping and the floor shrink boxes, so lam >= the draw on
        // average: a mean over 1/2.
        mean /= 4000.0;
        assert!((0.5..0.75).contains(&mean), "{mean}");
    }

    #[test]
    fn draws_follow_prob_switch_and_beta() {
        let mut rng = mix_rng(1, 7);
        // prob 0: never mixed, and only the one uniform draw is used.
        assert!((0..100).all(|_| draw(&mix(1.0, 1.0, 0.0, 0.5), 8, 8, &mut rng) == Mixed::NONE));
        // Both on, switch 0.25: about a quarter of the batches are CutMix.
        let m = mix(0.4, 1.0, 1.0, 0.25);
        let cuts = (0..4000)
            .filter(|_| draw(&m, 8, 8, &mut rng).window.is_some())
            .count();
        assert!(cuts.abs_diff(1000) < 110, "{cuts}");
        // Mixup alone with alpha 0.4: Beta(0.4, 0.4) has mean 1/2 and variance
        // 1 / (4 (2 alpha + 1)) = 0.1389.
        let m = mix(0.4, 0.0, 1.0, 0.5);
        let lams: Vec<f64> = (0..8000).map(|_| draw(&m, 8, 8, &mut rng).lam).collect();
        let mean = lams.iter().sum::<f64>() / 8000.0;
        let var = lams.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / 8000.0;
        assert!((mean - 0.5).abs() < 0.015, "{mean}");
        assert!((var - 1.0 / 7.2).abs() < 0.01, "{var}");
        // prob 0.3: about 30% mixed.
        let m = mix(1.0, 0.0, 0.3, 0.5);
        let mixed = (0..4000)
            .filter(|_| draw(&m, 8, 8, &mut rng) != Mixed::NONE)
            .count();
        assert!(mixed.abs_diff(1200) < 110, "{mixed}");
    }

    #[test]
    fn the_generator_depends_on_seed_and_step_only() {
        let m = mix(1.0, 1.0, 1.0, 0.5);
        let a = draw(&m, 32, 32, &mut mix_rng(5, 41));
        assert_eq!(a, draw(&m, 32, 32, &mut mix_rng(5, 41)));
        let others = [mix_rng(5, 42), mix_rng(6, 41)];
        for mut r in others {
            assert_ne!(a, draw(&m, 32, 32, &mut r));
        }
    }

    #[test]
    fn apply_mixes_with_the_reversed_batch() {
        // 3 images of 1 x 2 x 2 with values 10 i + pixel.
        let base: Vec<f32> = (0..3)
            .flat_map(|i| (0..4).map(move |p| (10 * i + p) as f32))
            .collect();
        let mut x = base.clone();
        let lam = 0.3;
        apply(&mut x, 3, 1, 2, 2, &Mixed { lam, window: None });
        for i in 0..3 {
            for p in 0..4 {
                let own = f64::from(base[i * 4 + p]);
                let other = f64::from(base[(2 - i) * 4 + p]);
                let want = lam * own + (1.0 - lam) * other;
                assert!((f64::from(x[i * 4 + p]) - want).abs() < 1e-5);
            }
        }
        // CutMix: the box (row 1, columns 0..2) comes from the partner, the rest stays.
        let mut x = base.clone();
        let window = Some(Window {
            top: 1,
            left: 0,
            height: 1,
            width: 2,
        });
        apply(&mut x, 3, 1, 2, 2, &Mixed { lam: 0.5, window });
        assert_eq!(
            x,
            vec![0., 1., 22., 23., 10., 11., 12., 13., 20., 21., 2., 3.]
        );
        // lam 1 leaves the batch alone.
        let mut x = base.clone();
        apply(&mut x, 3, 1, 2, 2, &Mixed::NONE);
        assert_eq!(x, base);
    }
}
