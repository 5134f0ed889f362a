//! Moving the rows of 16 Winograd tiles between the transforms' lane order and the images'
//! row-major planes, four values at a time.
//!
//! The tile transforms compute on `[row][column][lane]` arrays, one SIMD lane per tile. Filling
//! them from a plane (and writing them back) one value per lane costs a gather, or 16 scalar
//! moves, per window position; on AMD's Zen 4 a 16-lane gather takes about seven cycles. Here
//! each tile's row is one 128-bit load or store, and four of them become four lane-ordered
//! columns by a 4x4 transpose inside every 128-bit lane (eight shuffles): lane `4q + k` of the
//! transform belongs to tile `4q + k`, whose row sits in 128-bit lane `q` of register `k`.
//!
//! AVX-512 only; callers keep their generic loops for other CPUs (see [`available`]).

use super::simd::{simd_level, SimdLevel};

/// Tiles per call, one per lane of an AVX-512 register of f32.
pub(super) const L: usize = 16;

type Lanes = [f32; L];

/// Whether this CPU runs the functions of this module (AVX-512, not capped by `WRNC_SIMD`).
pub(super) fn available() -> bool {
    simd_level() == SimdLevel::Avx512
}

/// The 4x4 blocks of 16 tiles in a plane: where each starts and which of its values lie
/// inside the map (a tile at the right or bottom edge of a map whose sides are not multiples
/// of 4 covers only part of its block).
#[derive(Debug, Clone, Copy)]
pub(super) struct Blocks {
    at: [usize; L],
    /// Distance between rows.
    stride: usize,
    /// `masks[r][l]`: the columns of tile `l`'s row `r` inside the map (bit `s` for column `s`).
    masks: [[u8; L]; 4],
    /// One past the last value any block covers.
    end: usize,
}

impl Blocks {
    /// Blocks starting at `at[l]` with `rows[l]` rows and `cols[l]` columns (each at most 4)
    /// inside the map, rows `stride` apart.
    pub(super) fn new(at: [usize; L], rows: [usize; L], cols: [usize; L], stride: usize) -> Blocks {
        let mut masks = [[0u8; L]; 4];
        let mut end = 0;
        for l in 0..L {
            let (nr, nc) = (rows[l].min(4), cols[l].min(4));
            if nr == 0 || nc == 0 {
                continue;
            }
            for row in &mut masks[..nr] {
                row[l] = (1u8 << nc) - 1;
            }
            end = end.max(at[l] + (nr - 1) * stride + nc);
        }
        Blocks {
            at,
            stride,
            masks,
            end,
        }
    }

    /// The same blocks `by` values further on (the next channels' planes).
    #[inline(always)]
    pub(super) fn shifted(&self, by: usize) -> Blocks {
        Blocks {
            at: self.at.map(|a| a + by),
            end: self.end + by,
            ..*self
        }
    }
}

/// `d[r][s][l] = src[at[l] + r·stride + s]` for the 6x6 windows of 16 tiles starting at `at`.
///
/// Panics when a window reaches past `src` or when [`available`] is false.
pub(super) fn load_windows(src: &[f32], at: &[usize; L], stride: usize, d: &mut [[Lanes; 6]; 6]) {
    let last = at.iter().max().copied().unwrap_or(0) + 5 * stride + 5;
    assert!(last < src.len() && available());
    // SAFETY: AVX-512 is present (checked above); every row read, 4 values at
    // `at[l] + r·stride` and 4 from 2 further, ends at or before `last`.
    unsafe { avx512::load_windows(src.as_ptr(), at, stride, d) }
}

/// `d[r][s][l] = src[at + r·stride + s]` for the values of 16 blocks inside the map, zero for
/// the others.
///
/// Panics when a block reaches past `src` or when [`available`] is false.
pub(super) fn load_blocks(src: &[f32], b: &Blocks, d: &mut [[Lanes; 4]; 4]) {
    assert!(b.end <= src.len() && available());
    // SAFETY: AVX-512 is present and every value the masks select lies below `b.end`
    // (checked above); masked-off values are not read.
    unsafe { avx512::load_blocks(src.as_ptr(), b, d) }
}

/// `y[at + r·stride + s] = d[r][s][l]` for the values of 16 blocks inside the map (the others
/// are left alone).
///
/// Panics when a block reaches past `y` or when [`available`] is false.
pub(super) fn store_blocks<T: Copy>(d: &[[Lanes; 4]; 4], b: &Blocks, y: &mut [T]) {
    assert!(std::mem::size_of::<T>() == 4 && std::mem::align_of::<T>() <= 4);
    assert!(b.end <= y.len() && available());
    // SAFETY: AVX-512 is present and every value the masks select lies below `b.end`
    // (checked above); `T` is a 4-byte type (f32 or MaybeUninit<f32>) that every f32 may be
    // written into; masked-off values are not written.
    unsafe { avx512::store_blocks(d, b, y.as_mut_ptr().cast()) }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Blocks, Lanes, L};
    use std::arch::x86_64::*;

    /// The 4x4 transpose inside each 128-bit lane: `out[k][4q + j] = a[j][4q + k]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose(a: [__m512; 4]) -> [__m512; 4] {
        let t0 = _mm512_unpacklo_ps(a[0], a[1]);
        let t1 = _mm512_unpackhi_ps(a[0], a[1]);
        let t2 = _mm512_unpacklo_ps(a[2], a[3]);
        let t3 = _mm512_unpackhi_ps(a[2], a[3]);
        [
            _mm512_shuffle_ps::<0x44>(t0, t2),
            _mm512_shuffle_ps::<0xEE>(t0, t2),
            _mm512_shuffle_ps::<0x44>(t1, t3),
            _mm512_shuffle_ps::<0xEE>(t1, t3),
        ]
    }

    /// Four registers from 16 rows of four values, `row(l)` giving tile `l`'s: register `k`
    /// holds tiles `k, 4 + k, 8 + k, 12 + k` in its 128-bit lanes, and the transpose puts
    /// column `j` of tile `l` in lane `l` of register `j`.
    #[inline(always)]
    fn columns4(row: impl Fn(usize) -> __m128) -> [__m512; 4] {
        let reg = |k: usize| {
            // SAFETY: this module is compiled for callers with AVX-512 (the functions below).
            unsafe {
                let z = _mm512_castps128_ps512(row(k));
                let z = _mm512_insertf32x4::<1>(z, row(4 + k));
                let z = _mm512_insertf32x4::<2>(z, row(8 + k));
                _mm512_insertf32x4::<3>(z, row(12 + k))
            }
        };
        // SAFETY: as above.
        unsafe { transpose([reg(0), reg(1), reg(2), reg(3)]) }
    }

    /// See [`super::load_windows`]. Safety: AVX-512; 6 rows of 6 values at `p + at[l]`,
    /// `stride` apart, are readable.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn load_windows(
        p: *const f32,
        at: &[usize; L],
        stride: usize,
        d: &mut [[Lanes; 6]; 6],
    ) {
        for (r, drow) in d.iter_mut().enumerate() {
            // SAFETY: the caller's contract.
            let first = columns4(|l| unsafe { _mm_loadu_ps(p.add(at[l] + r * stride)) });
            // columns 2..6; the last two are the window's columns 4 and 5
            // SAFETY: the caller's contract.
            let last = columns4(|l| unsafe { _mm_loadu_ps(p.add(at[l] + r * stride + 2)) });
            for (s, col) in first.iter().chain(&last[2..]).enumerate() {
                // SAFETY: `drow[s]` is 16 f32.
                unsafe { _mm512_storeu_ps(drow[s].as_mut_ptr(), *col) };
            }
        }
    }

    /// See [`super::load_blocks`]. Safety: AVX-512 (with VL); the values `b`'s masks select are
    /// readable.
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn load_blocks(p: *const f32, b: &Blocks, d: &mut [[Lanes; 4]; 4]) {
        for (r, drow) in d.iter_mut().enumerate() {
            let cols = columns4(|l| {
                // SAFETY: the caller's contract; masked-off values are not read (the address
                // is formed with wrapping arithmetic as it may lie outside the plane).
                unsafe { _mm_maskz_loadu_ps(b.masks[r][l], p.wrapping_add(b.at[l] + r * b.stride)) }
            });
            for (s, col) in cols.iter().enumerate() {
                // SAFETY: `drow[s]` is 16 f32.
                unsafe { _mm512_storeu_ps(drow[s].as_mut_ptr(), *col) };
            }
        }
    }

    /// See [`super::store_blocks`]. Safety: AVX-512 (with VL); the values `b`'s masks select
    /// are writable.
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn store_blocks(d: &[[Lanes; 4]; 4], b: &Blocks, y: *mut f32) {
        for (r, drow) in d.iter().enumerate() {
            // SAFETY: `drow[j]` is 16 f32.
            let cols = drow
                .each_ref()
                .map(|c| unsafe { _mm512_loadu_ps(c.as_ptr()) });
            // rows[k] holds tiles k, 4 + k, 8 + k, 12 + k in its 128-bit lanes
            let rows = transpose(cols);
            for (k, row) in rows.iter().enumerate() {
                let parts = [
                    _mm512_castps512_ps128(*row),
                    _mm512_extractf32x4_ps::<1>(*row),
                    _mm512_extractf32x4_ps::<2>(*row),
                    _mm512_extractf32x4_ps::<3>(*row),
                ];
                for (q, part) in parts.into_iter().enumerate() {
                    let l = 4 * q + k;
                    let to = y.wrapping_add(b.at[l] + r * b.stride);
                    // SAFETY: the caller's contract; masked-off values are not written.
                    unsafe { _mm_mask_storeu_ps(to, b.masks[r][l], part) };
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    use super::{Blocks, Lanes, L};

    pub(super) unsafe fn load_windows(
        _: *const f32,
        _: &[usize; L],
        _: usize,
        _: &mut [[Lanes; 6]; 6],
    ) {
        unreachable!("tile_rows::available() is false off x86-64")
    }

    pub(super) unsafe fn load_blocks(_: *const f32, _: &Blocks, _: &mut [[Lanes; 4]; 4]) {
        unreachable!("tile_rows::available() is false off x86-64")
    }

    pub(super) unsafe fn store_blocks(_: &[[Lanes; 4]; 4], _: &Blocks, _: *mut f32) {
        unreachable!("tile_rows::available() is false off x86-64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip() -> bool {
        let skip = !available();
        if skip {
            eprintln!("skipped: no AVX-512 (or WRNC_SIMD caps it)");
        }
        skip
    }

    #[test]
    fn windows_put_every_tile_in_its_lane() {
        if skip() {
            return;
        }
        let src: Vec<f32> = (0..600).map(|i| i as f32).collect();
        // scattered, overlapping windows in a 40-wide plane
        let at: [usize; L] = std::array::from_fn(|l| (l * 37) % 150 + (l % 3) * 40);
        let mut d = [[[0f32; L]; 6]; 6];
        load_windows(&src, &at, 40, &mut d);
        for l in 0..L {
            for r in 0..6 {
                for s in 0..6 {
                    assert_eq!(d[r][s][l], src[at[l] + r * 40 + s], "tile {l} ({r}, {s})");
                }
            }
        }
    }

    /// 16 non-overlapping blocks of a 64-wide plane, out of order, some cut by the map's edge.
    fn blocks() -> (Blocks, [usize; L], [usize; L]) {
        let at = std::array::from_fn(|l| ((l * 7) % L) * 4 + (l / 8) * 4 * 64);
        let rows = std::array::from_fn(|l| [4, 4, 3, 1, 4, 2][l % 6]);
        let cols = std::array::from_fn(|l| [4, 2, 4, 3, 1, 4, 4][l % 7]);
        (Blocks::new(at, rows, cols, 64), rows, cols)
    }

    #[test]
    fn block_stores_write_the_values_inside_the_map_and_nothing_else() {
        if skip() {
            return;
        }
        let (b, rows, cols) = blocks();
        let d: [[Lanes; 4]; 4] = std::array::from_fn(|r| {
            std::array::from_fn(|s| std::array::from_fn(|l| (1000 * l + 10 * r + s) as f32))
        });
        let mut y = vec![-1f32; 64 * 8];
        store_blocks(&d, &b, &mut y);
        let mut want = vec![-1f32; 64 * 8];
        for l in 0..L {
            for r in 0..rows[l] {
                for s in 0..cols[l] {
                    want[b.at[l] + r * 64 + s] = d[r][s][l];
                }
            }
        }
        assert_eq!(y, want);
    }

    #[test]
    fn block_loads_read_the_values_inside_the_map_and_zeros() {
        if skip() {
            return;
        }
        let (b, rows, cols) = blocks();
        let src: Vec<f32> = (0..64 * 8).map(|i| i as f32 + 1.0).collect();
        let mut d = [[[f32::NAN; L]; 4]; 4];
        load_blocks(&src, &b, &mut d);
        for l in 0..L {
            for r in 0..4 {
                for s in 0..4 {
                    let inside = r < rows[l] && s < cols[l];
                    let want = if inside {
                        src[b.at[l] + r * 64 + s]
                    } else {
                        0.0
                    };
                    assert_eq!(d[r][s][l], want, "tile {l} ({r}, {s})");
                }
            }
        }
    }

    #[test]
    #[should_panic]
    fn a_window_past_the_end_panics() {
        if !available() {
            panic!("no AVX-512: nothing to check");
        }
        let src = vec![0f32; 100];
        let mut at = [0usize; L];
        at[9] = 100 - 5;
        load_windows(&src, &at, 10, &mut [[[0f32; L]; 6]; 6]);
    }

    #[test]
    #[should_panic]
    fn a_block_past_the_end_panics() {
        if !available() {
            panic!("no AVX-512: nothing to check");
        }
        let (b, _, _) = blocks();
        load_blocks(&vec![0f32; 64 * 4], &b, &mut [[[0f32; L]; 4]; 4]);
    }
}
