//! Counter-based random numbers for dropout masks: Philox4x32-10 (Salmon et al., "Parallel
//! random numbers: as easy as 1, 2, 3", SC'11).
//!
//! A counter-based generator maps `(counter, key)` to random bits with no state, so any
//! element of any mask can be drawn on its own: masks are the same whatever the thread count
//! or chunking, a resumed run draws exactly the masks it would have drawn, and a GPU kernel
//! computing the same function draws the same masks as the CPU.
//!
//! # The dropout scheme (the contract every back end follows)
//! - key = `(seed as u32, (seed >> 32) as u32)` — the training seed;
//! - counter = `(block, node, step as u32, (step >> 32) as u32)` where `block = element / 4`
//!   (the element's index in the row-major mask of one dropout node at one step), `node` the
//!   node's index in the graph and `step` the global optimiser step from 0;
//! - the element takes word `element % 4` of the Philox output, `x`; its uniform draw is
//!   `(x >> 8) / 2^24`, and it is kept (scaled by `1 / (1 - p)`) when
//!   `(x >> 8) < keep_threshold(p)`, else zeroed.

/// First Philox multiplier.
const M0: u32 = 0xD251_1F53;
/// Second Philox multiplier.
const M1: u32 = 0xCD9E_8D57;
/// First Weyl key increment (golden ratio).
const W0: u32 = 0x9E37_79B9;
/// Second Weyl key increment (sqrt(3) - 1).
const W1: u32 = 0xBB67_AE85;

/// The high and low 32-bit halves of the 64-bit product `a * b`.
#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds: four random 32-bit words for `counter` under `key`.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The 24-bit threshold below which an element is kept with dropout rate `p`:
/// `ceil((1 - p) * 2^24)`, so that `P(keep) = threshold / 2^24` is `1 - p` rounded up to the
/// next multiple of 2^-24 (exact for every rate the spec accepts up to that resolution).
pub fn keep_threshold(p: f64) -> u32 {
    ((1.0 - p) * 16_777_216.0).ceil().clamp(0.0, 16_777_216.0) as u32
}

/// The Philox key and the fixed counter words of dropout node `node` at `step`.
#[inline]
fn dropout_stream(seed: u64, step: u64, node: usize) -> ([u32; 2], [u32; 3]) {
    (
        [seed as u32, (seed >> 32) as u32],
        [node as u32, step as u32, (step >> 32) as u32],
    )
}

/// Fills `out` with the inverted-dropout mask values of elements `start .. start + out.len()`
/// of dropout node `node` at `step` under `seed`: `1 / (1 - p)` for kept elements, `0` for
/// dropped ones (the scheme in the module documentation). Any split of a mask into ranges
/// gives the same values as one call over the whole mask.
pub fn fill_dropout_mask(seed: u64, step: u64, node: usize, p: f64, start: usize, out: &mut [f32]) {
    let (key, [c1, c2, c3]) = dropout_stream(seed, step, node);
    let threshold = keep_threshold(p);
    let scale = (1.0 / (1.0 - p)) as f32;
    let mut e = start;
    let end = start + out.len();
    let mut i = 0;
    while e < end {
        let block = e / 4;
        let words = philox4x32_10([block as u32, c1, c2, c3], key);
        let lane_end = ((block + 1) * 4).min(end);
        for &word in &words[(e % 4)..(lane_end - block * 4)] {
            out[i] = if (word >> 8) < threshold { scale } else { 0.0 };
            i += 1;
        }
        e = lane_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Philox4x32-10 published with Random123 (kat_vectors).
    #[test]
    fn matches_the_published_known_answers() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn any_split_of_a_mask_gives_the_same_values() {
        let mut whole = vec![0f32; 103];
        fill_dropout_mask(7, 12, 3, 0.3, 0, &mut whole);
        for split in [1, 2, 3, 5, 50, 102] {
            let mut parts = vec![0f32; 103];
            let (a, b) = parts.split_at_mut(split);
            fill_dropout_mask(7, 12, 3, 0.3, 0, a);
            fill_dropout_mask(7, 12, 3, 0.3, split, b);
            assert_eq!(parts, whole, "split at {split}");
        }
    }

    #[test]
    fn masks_keep_the_right_fraction_and_scale() {
        let n = 200_000;
        let mut m = vec![0f32; n];
        fill_dropout_mask(1, 0, 5, 0.3, 0, &mut m);
        let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        // Binomial standard deviation at n = 200k is about 0.001.
        assert!((kept - 0.7).abs() < 0.005, "kept fraction {kept}");
        assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        // The mean of an inverted-dropout mask is 1.
        let mean = m.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn seed_step_and_node_each_change_the_mask() {
        let draw = |seed, step, node| {
            let mut m = vec![0f32; 256];
            fill_dropout_mask(seed, step, node, 0.5, 0, &mut m);
            m
        };
        let base = draw(1, 2, 3);
        assert_eq!(base, draw(1, 2, 3));
        assert_ne!(base, draw(2, 2, 3));
        assert_ne!(base, draw(1, 3, 3));
        assert_ne!(base, draw(1, 2, 4));
        assert_ne!(
            base,
            draw(1, 2 + (1 << 32), 3),
            "the step's high word counts"
        );
        assert_ne!(
            base,
            draw(1 + (1 << 32), 2, 3),
            "the seed's high word counts"
        );
    }

    #[test]
    fn thresholds_at_the_edges() {
        assert_eq!(keep_threshold(0.0), 1 << 24);
        assert_eq!(keep_threshold(1.0), 0);
        assert_eq!(keep_threshold(0.5), 1 << 23);
    }
}
