//! Augmentations on the normalised `f32` image: cutout and random erasing. Both act after
//! normalisation, so a zero is the mean pixel.
//!
//! Cutout (DeVries & Taylor 2017, `uoguelph-mlrg/Cutout`): the centre `(y, x)` is uniform
//! over `[0, H) x [0, W)`; the `S x S` square with top-left `(y - S/2, x - S/2)` (integer
//! halving) is zeroed in every channel, clipped at the borders. For even `S` this is exactly
//! the paper's code; for odd `S` the paper's code zeroes `S - 1` rows and columns, here `S`.
//!
//! Random erasing follows torchvision's `RandomErasing`: with probability `p` (a uniform
//! draw `< p`), up to 10 tries draw an area `U(scale) * H * W` and a log-uniform ratio
//! `r`, giving `h = round(sqrt(area * r))`, `w = round(sqrt(area / r))` (round half to
//! even, as Python's `round`); the first with `h < H` and `w < W` is placed with its
//! top-left uniform in `[0, H - h] x [0, W - w]`. If no try fits, the image is unchanged.
//! The rectangle gets the constant value in every channel, or with `value: random` one
//! standard normal draw per erased value (channel, row, column order).

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use wrnc_recipe::{Cutout, EraseValue, RandomErasing};

use crate::augment::Window;

/// Number of tries of random erasing (torchvision's).
const ERASE_TRIES: usize = 10;

/// Draws the cutout square of a `height x width` image (see the module docs): the centre
/// row, then the centre column. The window is clipped to the image (never empty, as the
/// centre is inside the image and `size >= 1`).
pub fn cutout_window<R: Rng + ?Sized>(
    cut: Cutout,
    height: usize,
    width: usize,
    rng: &mut R,
) -> Window {
    let y = rng.random_range(0..height);
    let x = rng.random_range(0..width);
    cutout_at(cut.size, y, x, height, width)
}

/// The cutout square of side `size` centred at `(y, x)`, clipped to `height x width`.
pub fn cutout_at(size: usize, y: usize, x: usize, height: usize, width: usize) -> Window {
    let half = size / 2;
    let (y0, x0) = (y.saturating_sub(half), x.saturating_sub(half));
    let (y1, x1) = (
        (y + size - half).min(height).max(y0),
        (x + size - half).min(width).max(x0),
    );
    Window {
        top: y0,
        left: x0,
        height: y1 - y0,
        width: x1 - x0,
    }
}

/// Draws random erasing's rectangle for a `height x width` image, or `None` when the image
/// is left unchanged. RNG use: the Bernoulli(p) draw (none when `p = 0`), then per try the area fraction and the
/// log ratio, then (for the rectangle that fits) the top and left offsets.
pub fn erase_window<R: Rng + ?Sized>(
    re: &RandomErasing,
    height: usize,
    width: usize,
    rng: &mut R,
) -> Option<Window> {
    // `p = 0` draws nothing, so the other augmentations' draws stay as without erasing.
    if re.p <= 0.0 || rng.random::<f64>() >= re.p {
        return None;
    }
    let area = (height * width) as f64;
    let (lo, hi) = (re.ratio[0].ln(), re.ratio[1].ln());
    for _ in 0..ERASE_TRIES {
        let target = area * uniform(rng, re.scale[0], re.scale[1]);
        let ratio = uniform(rng, lo, hi).exp();
        let h = (target * ratio).sqrt().round_ties_even() as usize;
        let w = (target / ratio).sqrt().round_ties_even() as usize;
        if h < height && w < width {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return Some(Window {
                top,
                left,
                height: h,
                width: w,
            });
        }
    }
    None
}

/// A uniform draw in `[lo, hi)`, or `lo` when the range is a single point.
fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// Sets `win` of every channel of the CHW image `img` (`channels x height x width`) to the
/// values `fill` yields, in channel, row, column order.
pub fn fill_window(
    img: &mut [f32],
    channels: usize,
    height: usize,
    width: usize,
    win: Window,
    mut fill: impl FnMut() -> f32,
) {
    debug_assert_eq!(img.len(), channels * height * width);
    for plane in img.chunks_exact_mut(height * width).take(channels) {
        for row in plane.chunks_exact_mut(width).skip(win.top).take(win.height) {
            for v in &mut row[win.left..win.left + win.width] {
                *v = fill();
            }
        }
    }
}

/// Fills random erasing's rectangle with `value`: the constant, or standard normal draws
/// from `rng`.
pub fn erase<R: Rng + ?Sized>(
    img: &mut [f32],
    channels: usize,
    height: usize,
    width: usize,
    win: Window,
    value: EraseValue,
    rng: &mut R,
) {
    match value {
        EraseValue::Constant(v) => fill_window(img, channels, height, width, win, || v as f32),
        EraseValue::Random => fill_window(img, channels, height, width, win, || {
            StandardNormal.sample(rng)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn zeroed(win: Window, h: usize, w: usize) -> Vec<(usize, usize)> {
        let mut img = vec![1f32; h * w];
        fill_window(&mut img, 1, h, w, win, || 0.0);
        (0..h * w)
            .filter(|&i| img[i] == 0.0)
            .map(|i| (i / w, i % w))
            .collect()
    }

    #[test]
    fn cutout_square_inside_and_clipped() {
        // Size 2 centred at (2, 3) of a 5x6 image: rows 1..3, columns 2..4.
        let win = cutout_at(2, 2, 3, 5, 6);
        assert_eq!(zeroed(win, 5, 6), vec![(1, 2), (1, 3), (2, 2), (2, 3)]);
        // Size 4 centred at the corner (0, 0): only the 2x2 corner survives the clipping.
        let win = cutout_at(4, 0, 0, 5, 6);
        assert_eq!(zeroed(win, 5, 6), vec![(0, 0), (0, 1), (1, 0), (1, 1)]);
        // Size 3 at the bottom-right (4, 5): rows 3..5, columns 4..6.
        let win = cutout_at(3, 4, 5, 5, 6);
        assert_eq!(zeroed(win, 5, 6), vec![(3, 4), (3, 5), (4, 4), (4, 5)]);
        // A square larger than the image covers all of it.
        assert_eq!(zeroed(cutout_at(20, 2, 2, 5, 6), 5, 6).len(), 30);
    }

    #[test]
    fn cutout_draw_is_the_first_two_uniforms() {
        // The centre is the generator's next two draws in [0, H) and [0, W).
        let mut a = ChaCha8Rng::seed_from_u64(9);
        let mut b = a.clone();
        let win = cutout_window(Cutout { size: 4 }, 8, 8, &mut a);
        let (y, x) = (b.random_range(0..8usize), b.random_range(0..8usize));
        assert_eq!(win, cutout_at(4, y, x, 8, 8));
        // Every centre occurs over many draws, and every square holds at most 4x4 pixels.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = [false; 64];
        for _ in 0..2000 {
            let w = cutout_window(Cutout { size: 4 }, 8, 8, &mut rng);
            assert!(w.top + w.height <= 8 && w.left + w.width <= 8);
            assert!((2..=4).contains(&w.height) && (2..=4).contains(&w.width));
            // Recover the centre: top = y - 2 unless clipped at 0.
            let y = if w.top == 0 { w.height - 2 } else { w.top + 2 };
            let x = if w.left == 0 { w.width - 2 } else { w.left + 2 };
            seen[y * 8 + x] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn erasing_in_bounds_and_area_in_range() {
        let re = RandomErasing {
            p: 1.0,
            ..RandomErasing::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (h, w) = (32usize, 32usize);
        let mut erased = 0;
        for _ in 0..2000 {
            if let Some(win) = erase_window(&re, h, w, &mut rng) {
                erased += 1;
                assert!(win.top + win.height <= h && win.left + win.width <= w);
                assert!(win.height < h && win.width < w);
                // Rounding each side moves the area by at most (h + w) / 2 + 1/4 pixels.
                let area = (win.height * win.width) as f64;
                let slack = (win.height + win.width) as f64 / 2.0 + 0.25;
                let (lo, hi) = (0.02 * 1024.0, 0.33 * 1024.0);
                assert!(area >= lo - slack && area <= hi + slack, "{win:?}");
                let r = win.height as f64 / win.width.max(1) as f64;
                assert!(win.width == 0 || (0.2..=5.0).contains(&r), "{win:?}");
            }
        }
        // On 32x32 almost every draw fits within 10 tries.
        assert!(erased > 1950, "{erased}");
    }

    #[test]
    fn erasing_probability_and_p0() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let off = RandomErasing {
            p: 0.0,
            ..RandomErasing::default()
        };
        assert!((0..500).all(|_| erase_window(&off, 8, 8, &mut rng).is_none()));
        let half = RandomErasing::default();
        let n = (0..4000)
            .filter(|_| erase_window(&half, 32, 32, &mut rng).is_some())
            .count();
        // p = 0.5 (sd ~ 32).
        assert!(n.abs_diff(2000) < 160, "{n}");
        // When no try fits (here every rectangle is 4x4, not smaller than the image), the
        // image stays unchanged.
        let big = RandomErasing {
            p: 1.0,
            scale: [0.9, 1.0],
            ratio: [1.0, 1.0],
            ..RandomErasing::default()
        };
        assert!(erase_window(&big, 4, 4, &mut rng).is_none());
    }

    #[test]
    fn erasing_hand_computed() {
        // Fixed draws: scale [0.25, 0.25], ratio [1, 1] on 4x4 -> area 4, h = w = 2; the
        // top-left is the generator's two draws in 0..=2 after the p draw.
        let re = RandomErasing {
            p: 1.0,
            scale: [0.25, 0.25],
            ratio: [1.0, 1.0],
            value: EraseValue::Constant(-1.5),
        };
        let mut a = ChaCha8Rng::seed_from_u64(11);
        let mut b = a.clone();
        let win = erase_window(&re, 4, 4, &mut a).unwrap();
        let _p: f64 = b.random();
        let (top, left) = (b.random_range(0..=2usize), b.random_range(0..=2usize));
        assert_eq!(
            win,
            Window {
                top,
                left,
                height: 2,
                width: 2
            }
        );
        let mut img = vec![0.5f32; 2 * 16];
        erase(&mut img, 2, 4, 4, win, re.value, &mut a);
        for c in 0..2 {
            for y in 0..4 {
                for x in 0..4 {
                    let inside = (top..top + 2).contains(&y) && (left..left + 2).contains(&x);
                    let want = if inside { -1.5 } else { 0.5 };
                    assert_eq!(img[c * 16 + y * 4 + x], want, "({c}, {y}, {x})");
                }
            }
        }
        // `random`: standard normal values, different from each other, only inside.
        let mut img = vec![9.0f32; 16];
        let win = Window {
            top: 1,
            left: 1,
            height: 2,
            width: 3,
        };
        erase(&mut img, 1, 4, 4, win, EraseValue::Random, &mut a);
        let inside: Vec<f32> = [5, 6, 7, 9, 10, 11].iter().map(|&i| img[i]).collect();
        assert!(inside.iter().all(|v| v.abs() < 6.0));
        assert!(inside.windows(2).all(|p| p[0] != p[1]));
        assert_eq!(img.iter().filter(|&&v| v == 9.0).count(), 10);
    }
}
