//! Moving the rows of 16 Winograd tiles between the transforms' lane order and the images'
//! row-major planes, four values at a time.
//!
//! The tile transforms compute on `[row][column][lane]` arrays, one SIMD lane per tile. Filling
//! them from a plane (and writing them back) one value per lane costs a gather, or 16 scalar
//! moves, per window position; on AMD's Zen 4 a 16-lane gather takes about seven cycles. Here
//! each tile's row is one 128-bit load or store, and four of them become four lane-ordered
//! columns by a 4x4 transpose inside every 128-bit lane (eight shuffles): lane `4q + k` of the
//! transform belongs to tile `4q + k`, whose row sits in 128-bit lane `q` of register `k`.
//! With AVX2 the same runs on 8 tiles at a time (two 128-bit lanes per register), and the
//! rows of tiles cut by the map's edge move value by value.
//!
//! AVX-512 or AVX2; callers keep their generic loops for other CPUs (see [`available`]).

use super::simd::{simd_level, Isa, SimdLevel};

/// Tiles per call, one per lane of an AVX-512 register of f32.
pub(super) const L: usize = 16;

type Lanes = [f32; L];

/// Whether this CPU runs the functions of this module (AVX-512 or AVX2, not capped below by
/// `WRNC_SIMD`).
pub(super) fn available() -> bool {
    simd_level() >= SimdLevel::Avx2
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
    load_windows_with(Isa::widest(), src, at, stride, d);
}

fn load_windows_with(
    isa: Isa,
    src: &[f32],
    at: &[usize; L],
    stride: usize,
    d: &mut [[Lanes; 6]; 6],
) {
    let last = at.iter().max().copied().unwrap_or(0) + 5 * stride + 5;
    assert!(last < src.len() && isa.present());
    // SAFETY: AVX-512 or AVX2 is present (checked above); every row read, 4 values at
    // `at[l] + r·stride` and 4 from 2 further, ends at or before `last`.
    unsafe {
        match isa {
            Isa::Avx512 => avx512::load_windows(src.as_ptr(), at, stride, d),
            Isa::Avx2 => avx2::load_windows(src.as_ptr(), at, stride, d),
        }
    }
}

/// `d[r][s][l] = src[at + r·stride + s]` for the values of 16 blocks inside the map, zero for
/// the others.
///
/// Panics when a block reaches past `src` or when [`available`] is false.
pub(super) fn load_blocks(src: &[f32], b: &Blocks, d: &mut [[Lanes; 4]; 4]) {
    load_blocks_with(Isa::widest(), src, b, d);
}

fn load_blocks_with(isa: Isa, src: &[f32], b: &Blocks, d: &mut [[Lanes; 4]; 4]) {
    assert!(b.end <= src.len() && isa.present());
    // SAFETY: AVX-512 or AVX2 is present and every value the masks select lies below
    // `b.end` (checked above); masked-off values are not read.
    unsafe {
        match isa {
            Isa::Avx512 => avx512::load_blocks(src.as_ptr(), b, d),
            Isa::Avx2 => avx2::load_blocks(src.as_ptr(), b, d),
        }
    }
}

/// `y[at + r·stride + s] = d[r][s][l]` for the values of 16 blocks inside the map (the others
/// are left alone).
///
/// Panics when a block reaches past `y` or when [`available`] is false.
pub(super) fn store_blocks<T: Copy>(d: &[[Lanes; 4]; 4], b: &Blocks, y: &mut [T]) {
    store_blocks_with(Isa::widest(), d, b, y);
}

fn store_blocks_with<T: Copy>(isa: Isa, d: &[[Lanes; 4]; 4], b: &Blocks, y: &mut [T]) {
    assert!(std::mem::size_of::<T>() == 4 && std::mem::align_of::<T>() <= 4);
    assert!(b.end <= y.len() && isa.present());
    // SAFETY: AVX-512 or AVX2 is present and every value the masks select lies below
    // `b.end` (checked above); `T` is a 4-byte type (f32 or MaybeUninit<f32>) that every f32
    // may be written into; masked-off values are not written.
    unsafe {
        match isa {
            Isa::Avx512 => avx512::store_blocks(d, b, y.as_mut_ptr().cast()),
            Isa::Avx2 => avx2::store_blocks(d, b, y.as_mut_ptr().cast()),
        }
    }
}

/// The 4x4 transpose inside each 128-bit lane of four registers, `out[k][4q + j] =
/// a[j][4q + k]`, written with one register width's unpack and shuffle intrinsics: rows 0 and
/// 1 (2 and 3) interleaved, then the pairs' halves combined.
#[cfg(target_arch = "x86_64")]
macro_rules! lane_transpose {
    ($a:expr, $unpacklo:ident, $unpackhi:ident, $shuffle:ident) => {{
        let a = $a;
        let t0 = $unpacklo(a[0], a[1]);
        let t1 = $unpackhi(a[0], a[1]);
        let t2 = $unpacklo(a[2], a[3]);
        let t3 = $unpackhi(a[2], a[3]);
        [
            $shuffle::<0x44>(t0, t2),
            $shuffle::<0xEE>(t0, t2),
            $shuffle::<0x44>(t1, t3),
            $shuffle::<0xEE>(t1, t3),
        ]
    }};
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Blocks, Lanes, L};
    use std::arch::x86_64::*;

    /// The 4x4 transpose inside each 128-bit lane: `out[k][4q + j] = a[j][4q + k]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose(a: [__m512; 4]) -> [__m512; 4] {
        lane_transpose!(a, _mm512_unpacklo_ps, _mm512_unpackhi_ps, _mm512_shuffle_ps)
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Blocks, Lanes, L};
    use std::arch::x86_64::*;

    /// Tiles per register pass (two 128-bit lanes of four).
    const H: usize = 8;

    /// The 4x4 transpose inside each 128-bit lane: `out[k][4q + j] = a[j][4q + k]`.
    #[inline]
    #[target_feature(enable = "avx")]
    fn transpose(a: [__m256; 4]) -> [__m256; 4] {
        lane_transpose!(a, _mm256_unpacklo_ps, _mm256_unpackhi_ps, _mm256_shuffle_ps)
    }

    /// Four registers from the rows of tiles `first..first + 8`: register `k` holds tiles
    /// `first + k` and `first + 4 + k`, and the transpose puts column `j` of tile `first + i`
    /// in lane `i` of register `j`.
    #[inline(always)]
    fn columns4(row: impl Fn(usize) -> __m128, first: usize) -> [__m256; 4] {
        let reg = |k: usize| {
            // SAFETY: this module is compiled for callers with AVX2 (the functions below).
            unsafe {
                let z = _mm256_castps128_ps256(row(first + k));
                _mm256_insertf128_ps::<1>(z, row(first + 4 + k))
            }
        };
        // SAFETY: as above.
        unsafe { transpose([reg(0), reg(1), reg(2), reg(3)]) }
    }

    /// Four values at `p`, those outside `mask` read as zero (value by value unless the mask is
    /// full). Safety: the values `mask` selects are readable.
    #[inline(always)]
    unsafe fn row_in(p: *const f32, mask: u8) -> __m128 {
        // SAFETY: the caller's contract.
        unsafe {
            if mask == 0xF {
                return _mm_loadu_ps(p);
            }
            let mut v = [0f32; 4];
            for (s, vs) in v.iter_mut().enumerate() {
                if mask & 1 << s != 0 {
                    *vs = *p.wrapping_add(s);
                }
            }
            _mm_loadu_ps(v.as_ptr())
        }
    }

    /// See [`super::load_windows`]. Safety: AVX2; 6 rows of 6 values at `p + at[l]`,
    /// `stride` apart, are readable.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn load_windows(
        p: *const f32,
        at: &[usize; L],
        stride: usize,
        d: &mut [[Lanes; 6]; 6],
    ) {
        for (r, drow) in d.iter_mut().enumerate() {
            for first in [0, H] {
                // SAFETY (both): the caller's contract.
                let row = |l: usize| unsafe { _mm_loadu_ps(p.add(at[l] + r * stride)) };
                let cols = columns4(row, first);
                // columns 2..6; the last two are the window's columns 4 and 5
                let row = |l: usize| unsafe { _mm_loadu_ps(p.add(at[l] + r * stride + 2)) };
                let last = columns4(row, first);
                for (s, col) in cols.iter().chain(&last[2..]).enumerate() {
                    // SAFETY: `drow[s]` is 16 f32, `first + 8 <= 16`.
                    unsafe { _mm256_storeu_ps(drow[s].as_mut_ptr().add(first), *col) };
                }
            }
        }
    }

    /// See [`super::load_blocks`]. Safety: AVX2; the values `b`'s masks select are readable.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn load_blocks(p: *const f32, b: &Blocks, d: &mut [[Lanes; 4]; 4]) {
        for (r, drow) in d.iter_mut().enumerate() {
            for first in [0, H] {
                let row = |l: usize| {
                    // SAFETY: the caller's contract; unselected values are not read (the
                    // address is formed with wrapping arithmetic as it may lie outside).
                    unsafe { row_in(p.wrapping_add(b.at[l] + r * b.stride), b.masks[r][l]) }
                };
                for (s, col) in columns4(row, first).iter().enumerate() {
                    // SAFETY: `drow[s]` is 16 f32, `first + 8 <= 16`.
                    unsafe { _mm256_storeu_ps(drow[s].as_mut_ptr().add(first), *col) };
                }
            }
        }
    }

    /// See [`super::store_blocks`]. Safety: AVX2; the values `b`'s masks select are writable.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn store_blocks(d: &[[Lanes; 4]; 4], b: &Blocks, y: *mut f32) {
        for (r, drow) in d.iter().enumerate() {
            for first in [0, H] {
                // SAFETY: `drow[j]` is 16 f32, `first + 8 <= 16`.
                let cols = drow
                    .each_ref()
                    .map(|c| unsafe { _mm256_loadu_ps(c.as_ptr().add(first)) });
                // rows[k] holds tiles first + k and first + 4 + k
                for (k, row) in transpose(cols).iter().enumerate() {
                    let parts = [
                        _mm256_castps256_ps128(*row),
                        _mm256_extractf128_ps::<1>(*row),
                    ];
                    for (q, part) in parts.into_iter().enumerate() {
                        let l = first + 4 * q + k;
                        let (to, mask) = (y.wrapping_add(b.at[l] + r * b.stride), b.masks[r][l]);
                        // SAFETY: the caller's contract; unselected values are not written.
                        unsafe {
                            if mask == 0xF {
                                _mm_storeu_ps(to, part);
                            } else {
                                let mut v = [0f32; 4];
                                _mm_storeu_ps(v.as_mut_ptr(), part);
                                for (s, &vs) in v.iter().enumerate() {
                                    if mask & 1 << s != 0 {
                                        *to.add(s) = vs;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Off x86-64 [`available`] is false and nothing here runs.
#[cfg(not(target_arch = "x86_64"))]
mod unsupported {
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
#[cfg(not(target_arch = "x86_64"))]
use unsupported as avx2;
#[cfg(not(target_arch = "x86_64"))]
use unsupported as avx512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_put_every_tile_in_its_lane() {
        let src: Vec<f32> = (0..600).map(|i| i as f32).collect();
        // scattered, overlapping windows in a 40-wide plane
        let at: [usize; L] = std::array::from_fn(|l| (l * 37) % 150 + (l % 3) * 40);
        for isa in Isa::all_present() {
            let mut d = [[[0f32; L]; 6]; 6];
            load_windows_with(isa, &src, &at, 40, &mut d);
            for l in 0..L {
                for r in 0..6 {
                    for s in 0..6 {
                        let want = src[at[l] + r * 40 + s];
                        assert_eq!(d[r][s][l], want, "{isa:?}: tile {l} ({r}, {s})");
                    }
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
        let (b, rows, cols) = blocks();
        let d: [[Lanes; 4]; 4] = std::array::from_fn(|r| {
            std::array::from_fn(|s| std::array::from_fn(|l| (1000 * l + 10 * r + s) as f32))
        });
        let mut want = vec![-1f32; 64 * 8];
        for l in 0..L {
            for r in 0..rows[l] {
                for s in 0..cols[l] {
                    want[b.at[l] + r * 64 + s] = d[r][s][l];
                }
            }
        }
        for isa in Isa::all_present() {
            let mut y = vec![-1f32; 64 * 8];
            store_blocks_with(isa, &d, &b, &mut y);
            assert_eq!(y, want, "{isa:?}");
        }
    }

    #[test]
    fn block_loads_read_the_values_inside_the_map_and_zeros() {
        let (b, rows, cols) = blocks();
        let src: Vec<f32> = (0..64 * 8).map(|i| i as f32 + 1.0).collect();
        for isa in Isa::all_present() {
            let mut d = [[[f32::NAN; L]; 4]; 4];
            load_blocks_with(isa, &src, &b, &mut d);
            for l in 0..L {
                for r in 0..4 {
                    for s in 0..4 {
                        let inside = r < rows[l] && s < cols[l];
                        let want = if inside {
                            src[b.at[l] + r * 64 + s]
                        } else {
                            0.0
                        };
                        assert_eq!(d[r][s][l], want, "{isa:?}: tile {l} ({r}, {s})");
                    }
                }
            }
        }
    }

    #[test]
    fn reads_and_writes_past_the_end_panic() {
        let mut at = [0usize; L];
        at[9] = 100 - 5;
        let (b, _, _) = blocks();
        for isa in Isa::all_present() {
            let windows = std::panic::catch_unwind(|| {
                load_windows_with(isa, &[0f32; 100], &at, 10, &mut [[[0f32; L]; 6]; 6])
            });
            assert!(windows.is_err(), "{isa:?}: window past the end");
            let blocks = std::panic::catch_unwind(|| {
                load_blocks_with(isa, &[0f32; 64 * 4], &b, &mut [[[0f32; L]; 4]; 4])
            });
            assert!(blocks.is_err(), "{isa:?}: block load past the end");
            let stores = std::panic::catch_unwind(|| {
                store_blocks_with(isa, &[[[0f32; L]; 4]; 4], &b, &mut [0f32; 64 * 4])
            });
            assert!(stores.is_err(), "{isa:?}: block store past the end");
        }
    }
}
