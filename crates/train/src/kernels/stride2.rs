//! The patch rows of a stride-2 convolution on narrow maps, in AVX-512 registers.
//!
//! im2col copies, for every input channel, kernel row and output row, `k` strided runs of the
//! same input row (one per kernel column), and col2im adds them back: on the 7-28 pixel wide
//! maps of a WRN those runs are 4-14 elements long, and the loop overhead of a strided copy
//! outweighs the copy. Here an input row of at most 32 values is loaded once (two masked
//! loads), split into its even and odd columns by two permutations, and each kernel column's
//! patch row is one more permutation of one of them (shifted, with zeros where the window
//! leaves the map) and one masked store. col2im runs the same steps backwards: the kernel
//! columns' rows are summed into the even and odd columns, which are interleaved and added
//! onto the input row once.
//!
//! Used when the CPU has AVX-512 (see [`simd_level`]), the stride is 2, the input is at most
//! 32 wide and the output at most 16; everything else keeps the generic loops of
//! [`super::conv`].

use super::conv::ConvGeom;
use super::simd::{simd_level, SimdLevel};

/// Lanes of an AVX-512 register of f32.
const L: usize = 16;

/// The permutation and lane mask that turn a row's even or odd columns into one kernel
/// column's patch row.
#[derive(Debug, Clone, Copy)]
struct Column {
    /// Whether the kernel column reads the odd input columns.
    odd: bool,
    /// Per output column `ox`: the position in the even or odd columns it reads.
    index: [i32; L],
    /// The output columns whose input lies inside the row (the others are zero padding).
    valid: u16,
    /// The inverse for col2im: per even or odd column `j`, the output column that reads it.
    back: [i32; L],
    /// The even or odd columns some valid output column reads.
    targets: u16,
}

/// The per-column steps of one stride-2 geometry (the same for every row of a call).
#[derive(Debug, Clone)]
pub(super) struct Plan {
    columns: Vec<Column>,
    /// Lanes of an output row (`ow` of them).
    out_mask: u16,
    /// Lanes of the first and second half of an input row.
    in_masks: [u16; 2],
}

/// `n` low bits set.
fn low_bits(n: usize) -> u16 {
    if n >= L {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

impl Plan {
    /// The plan for `g` when the vector path serves it: stride 2, an input at most 32 wide,
    /// an output at most 16 wide, and AVX-512.
    pub(super) fn new(g: &ConvGeom) -> Option<Plan> {
        if g.stride != 2 || g.w > 2 * L || g.ow > L || simd_level() < SimdLevel::Avx512 {
            return None;
        }
        let columns = (0..g.k)
            .map(|kx| {
                // input column 2·ox + kx - pad = 2·(ox + shift) + parity
                let d = kx as isize - g.pad as isize;
                let (shift, odd) = (d.div_euclid(2), d.rem_euclid(2) == 1);
                let (x0, x1) = g.valid(kx, g.w, g.ow);
                let lane = |i: isize| i.clamp(0, L as isize - 1) as i32;
                // the valid output columns x0..x1 read x0 + shift..x1 + shift
                let (t0, t1) = (x0 as isize + shift, x1 as isize + shift);
                Column {
                    odd,
                    index: std::array::from_fn(|ox| lane(ox as isize + shift)),
                    valid: low_bits(x1) & !low_bits(x0),
                    back: std::array::from_fn(|j| lane(j as isize - shift)),
                    targets: if x1 > x0 {
                        low_bits(t1 as usize) & !low_bits(t0 as usize)
                    } else {
                        0
                    },
                }
            })
            .collect();
        Some(Plan {
            columns,
            out_mask: low_bits(g.ow),
            in_masks: [low_bits(g.w), low_bits(g.w.saturating_sub(L))],
        })
    }

    /// Panics unless an input row of `row` values holds the `w` the plan reads or writes and
    /// `patches` values hold the `k` patch rows `stride` apart.
    fn check_lengths(&self, row: usize, patches: usize, stride: usize) {
        let w = self
            .in_masks
            .iter()
            .map(|m| m.count_ones() as usize)
            .sum::<usize>();
        let ow = self.out_mask.count_ones() as usize;
        let k = self.columns.len();
        assert!(row >= w && (k == 0 || patches >= (k - 1) * stride + ow));
    }

    /// Writes the `k` patch rows of input row `src` (`w` values): kernel column `kx`'s row
    /// goes to `out[kx * stride..][..ow]`.
    pub(super) fn im2col_row(&self, src: &[f32], out: &mut [f32], stride: usize) {
        self.check_lengths(src.len(), out.len(), stride);
        // SAFETY: `Plan::new` saw AVX-512; the masked loads read the row's `w` values and the
        // masked stores write `ow` values per kernel column, both inside the slices (asserted
        // above).
        unsafe { im2col_row_avx512(self, src, out, stride) }
    }

    /// Adds the `k` patch rows `col[kx * stride..][..ow]` back onto input row `dst` (`w`
    /// values).
    pub(super) fn col2im_row(&self, col: &[f32], dst: &mut [f32], stride: usize) {
        self.check_lengths(dst.len(), col.len(), stride);
        // SAFETY: as in `im2col_row`, with the roles of source and destination swapped.
        unsafe { col2im_row_avx512(self, col, dst, stride) }
    }
}

/// Indices of the even and odd columns of a 32-value row held in two registers.
const EVEN: [i32; L] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
const ODD: [i32; L] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
/// Indices interleaving even (0-15) and odd (16-31) columns back into a row's two halves.
const LOW: [i32; L] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
const HIGH: [i32; L] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn im2col_row_avx512(plan: &Plan, src: &[f32], out: &mut [f32], stride: usize) {
    use std::arch::x86_64::*;
    let p = src.as_ptr();
    let lo = _mm512_maskz_loadu_ps(plan.in_masks[0], p);
    let hi = _mm512_maskz_loadu_ps(plan.in_masks[1], p.add(L));
    let even = _mm512_permutex2var_ps(lo, _mm512_loadu_si512(EVEN.as_ptr().cast()), hi);
    let odd = _mm512_permutex2var_ps(lo, _mm512_loadu_si512(ODD.as_ptr().cast()), hi);
    for (kx, c) in plan.columns.iter().enumerate() {
        let phase = if c.odd { odd } else { even };
        let idx = _mm512_loadu_si512(c.index.as_ptr().cast());
        let row = _mm512_maskz_permutexvar_ps(c.valid, idx, phase);
        _mm512_mask_storeu_ps(out.as_mut_ptr().add(kx * stride), plan.out_mask, row);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn col2im_row_avx512(plan: &Plan, col: &[f32], dst: &mut [f32], stride: usize) {
    use std::arch::x86_64::*;
    let mut even = _mm512_setzero_ps();
    let mut odd = _mm512_setzero_ps();
    for (kx, c) in plan.columns.iter().enumerate() {
        let row = _mm512_maskz_loadu_ps(c.valid, col.as_ptr().add(kx * stride));
        // through the inverse permutation: output column ox feeds position ox + shift
        let back =
            _mm512_maskz_permutexvar_ps(c.targets, _mm512_loadu_si512(c.back.as_ptr().cast()), row);
        if c.odd {
            odd = _mm512_add_ps(odd, back);
        } else {
            even = _mm512_add_ps(even, back);
        }
    }
    let lo = _mm512_permutex2var_ps(even, _mm512_loadu_si512(LOW.as_ptr().cast()), odd);
    let hi = _mm512_permutex2var_ps(even, _mm512_loadu_si512(HIGH.as_ptr().cast()), odd);
    let p = dst.as_mut_ptr();
    let [m0, m1] = plan.in_masks;
    _mm512_mask_storeu_ps(p, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, p), lo));
    _mm512_mask_storeu_ps(
        p.add(L),
        m1,
        _mm512_add_ps(_mm512_maskz_loadu_ps(m1, p.add(L)), hi),
    );
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn im2col_row_avx512(_: &Plan, _: &[f32], _: &mut [f32], _: usize) {
    unreachable!("Plan::new needs AVX-512")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn col2im_row_avx512(_: &Plan, _: &[f32], _: &mut [f32], _: usize) {
    unreachable!("Plan::new needs AVX-512")
}
