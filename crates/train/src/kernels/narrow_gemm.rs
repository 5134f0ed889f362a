//! Matrix products with few rows, for the Winograd products of narrow layers.
//!
//! `M_p = U_p · V_p` with 16 output channels is a 16 x C x tiles product: the gemm crate runs
//! it at about half the speed of wider ones (its kernels want 64 rows), and packs both
//! operands first. Here the right operand's rows are read where they lie (they are
//! contiguous), eight rows of the left operand are broadcast one value at a time, and 8 x 32
//! results stay in sixteen AVX-512 registers over the whole sum.

use super::gemm::Mat;
use super::simd::{simd_level, SimdLevel};

/// Lanes of an AVX-512 register of f32.
const L: usize = 16;

/// Whether [`product`] runs on this CPU (AVX-512, not capped by `WRNC_SIMD`).
pub(super) fn available() -> bool {
    simd_level() == SimdLevel::Avx512
}

/// Bytes of the right operand up to which [`product`] serves any number of rows: it reads
/// that operand once per 8 rows, so it must stay in the core's L2 cache (the gemm crate packs
/// and blocks larger ones).
const RIGHT_BYTES: usize = 256 << 10;

/// Rows up to which [`product`] serves a right operand of any size.
const ANY_RIGHT_ROWS: usize = 64;

/// Whether [`product`] should serve the f32 product `[m x k] · [k x n]` with right operand
/// `rhs`: on this CPU, for contiguous right rows, when few rows or a right operand that stays
/// in L2 (measured single-threaded on Zen 4: 52-58 GMAC/s against the gemm crate's 37-56 on
/// the convolution shapes of WRN-10-2 to WRN-16-4, 16-576 rows).
pub(super) fn serves(m: usize, n: usize, k: usize, rhs: &Mat) -> bool {
    available() && rhs.cs == 1 && (m <= ANY_RIGHT_ROWS || k * n * 4 <= RIGHT_BYTES)
}

/// `dst[m x n] = lhs[m x k] · rhs[k x n]`, `dst` row-major with rows `dst_rs` apart; `rhs`
/// rows contiguous (`rhs.cs == 1`). The last `n % 16` columns run through masked loads and
/// stores.
///
/// Panics when an operand is too short, `rhs` has strided rows or [`available`] is false.
pub(super) fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: Mat,
    rhs: Mat,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(rhs.cs == 1 && available());
    assert!(dst_rs >= n && dst.len() >= (m - 1) * dst_rs + n);
    assert!(lhs.fits(m, k) && rhs.fits(k, n));
    // SAFETY: AVX-512 is present and every index the kernel forms lies inside the slices
    // (checked above).
    unsafe {
        avx512::product(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_rs,
            (lhs.data.as_ptr(), lhs.rs, lhs.cs),
            (rhs.data.as_ptr(), rhs.rs),
        )
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::L;
    use std::arch::x86_64::*;

    /// Rows of the left operand per block.
    const R: usize = 8;

    /// One block of `ROWS` rows and `16·W` columns of the product: `dst`, `a` and `b` point
    /// at its first result, its first row of the left operand and its first columns of the
    /// right one. With `MASKED` (and `W == 1`) only the columns `tail` selects are read and
    /// written.
    ///
    /// Safety: AVX-512; the block's operands and selected results lie inside the caller's
    /// slices.
    #[inline(always)]
    unsafe fn block<const ROWS: usize, const W: usize, const MASKED: bool>(
        k: usize,
        dst: *mut f32,
        dst_rs: usize,
        a: (*const f32, usize, usize),
        b: (*const f32, usize),
        tail: __mmask16,
    ) {
        let ((a, a_rs, a_cs), (b, b_rs)) = (a, b);
        // SAFETY (all): the caller's contract.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); W]; ROWS];
            for l in 0..k {
                let v: [__m512; W] = std::array::from_fn(|w| {
                    let p = b.add(l * b_rs + w * L);
                    if MASKED {
                        _mm512_maskz_loadu_ps(tail, p)
                    } else {
                        _mm512_loadu_ps(p)
                    }
                });
                for (i, row) in acc.iter_mut().enumerate() {
                    let u = _mm512_set1_ps(*a.add(i * a_rs + l * a_cs));
                    for (w, x) in row.iter_mut().enumerate() {
                        *x = _mm512_fmadd_ps(u, v[w], *x);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (w, x) in row.iter().enumerate() {
                    let p = dst.add(i * dst_rs + w * L);
                    if MASKED {
                        _mm512_mask_storeu_ps(p, tail, *x);
                    } else {
                        _mm512_storeu_ps(p, *x);
                    }
                }
            }
        }
    }

    /// See [`super::product`]. Safety: AVX-512; the operands and results lie inside the
    /// caller's slices.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product(
        m: usize,
        n: usize,
        k: usize,
        dst: *mut f32,
        dst_rs: usize,
        a: (*const f32, usize, usize),
        b: (*const f32, usize),
    ) {
        let (ap, a_rs, a_cs) = a;
        let (bp, b_rs) = b;
        let mut i0 = 0;
        while i0 < m {
            let rows = R.min(m - i0);
            let mut j0 = 0;
            while j0 < n {
                let cols = (n - j0).min(2 * L);
                let tail = ((1u32 << cols.min(L)) - 1) as __mmask16;
                // SAFETY (all): block (i0, j0) lies inside the product (the caller's contract);
                // a block of fewer than 16 columns reads and writes only those.
                unsafe {
                    let d = dst.add(i0 * dst_rs + j0);
                    let bj = (bp.add(j0), b_rs);
                    let ai = |i: usize| (ap.add(i * a_rs), a_rs, a_cs);
                    let row = |i: usize| dst.add(i * dst_rs + j0);
                    match (rows == R, cols) {
                        (true, 32) => block::<R, 2, false>(k, d, dst_rs, ai(i0), bj, tail),
                        (true, 16..) => block::<R, 1, false>(k, d, dst_rs, ai(i0), bj, tail),
                        (true, _) => block::<R, 1, true>(k, d, dst_rs, ai(i0), bj, tail),
                        (false, 32) => (i0..i0 + rows)
                            .for_each(|i| block::<1, 2, false>(k, row(i), dst_rs, ai(i), bj, tail)),
                        (false, 16..) => (i0..i0 + rows)
                            .for_each(|i| block::<1, 1, false>(k, row(i), dst_rs, ai(i), bj, tail)),
                        (false, _) => (i0..i0 + rows)
                            .for_each(|i| block::<1, 1, true>(k, row(i), dst_rs, ai(i), bj, tail)),
                    }
                }
                j0 += if cols == 2 * L { 2 * L } else { cols.min(L) };
            }
            i0 += rows;
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    pub(super) unsafe fn product(
        _: usize,
        _: usize,
        _: usize,
        _: *mut f32,
        _: usize,
        _: (*const f32, usize, usize),
        _: (*const f32, usize),
    ) {
        unreachable!("narrow_gemm::available() is false off x86-64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::{matmul_strided, Mat};

    #[test]
    fn matches_the_gemm_crate_on_ragged_shapes() {
        if !available() {
            eprintln!("skipped: no AVX-512 (or WRNC_SIMD caps it)");
            return;
        }
        // rows not a multiple of 8, columns not a multiple of 32, strided left operand and
        // destination rows
        for (m, n, k) in [
            (16, 128, 16),
            (10, 48, 9),
            (3, 16, 1),
            (24, 80, 33),
            (8, 32, 0),
            // ragged columns: 49 = 32 + 16 + 1, 196 = 6·32 + 4, fewer than 16
            (64, 49, 64),
            (13, 196, 32),
            (9, 7, 5),
        ] {
            let (a_rs, a_cs, b_rs, dst_rs) = (3 * k + 2, 2, n + 5, n + 7);
            let a: Vec<f32> = (0..m * a_rs + 1)
                .map(|i| ((i * 7) % 13) as f32 - 6.0)
                .collect();
            let b: Vec<f32> = (0..k.max(1) * b_rs)
                .map(|i| ((i * 5) % 11) as f32 * 0.5)
                .collect();
            let mut got = vec![f32::NAN; (m - 1) * dst_rs + n];
            let lhs = Mat {
                data: &a,
                rs: a_rs,
                cs: a_cs,
            };
            let rhs = Mat::rows(&b, b_rs);
            product(m, n, k, &mut got, dst_rs, lhs, rhs);
            let mut want = got.clone();
            let lhs = Mat {
                data: &a,
                rs: a_rs,
                cs: a_cs,
            };
            matmul_strided(
                m,
                n,
                k,
                &mut want,
                dst_rs,
                false,
                lhs,
                Mat {
                    data: &b,
                    rs: b_rs,
                    cs: 1,
                },
            );
            for i in 0..m {
                for j in 0..n {
                    let (g, w) = (got[i * dst_rs + j], want[i * dst_rs + j]);
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                        "({m}, {n}, {k}) [{i}][{j}]: {g} vs {w}"
                    );
                }
            }
        }
    }
}
