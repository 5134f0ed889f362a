//! Matrix products with few rows or small operands, for the convolutions of narrow layers.
//!
//! `M_p = U_p · V_p` with 16 output channels is a 16 x C x tiles product: the gemm crate runs
//! it at about half the speed of wider ones (its kernels want 64 rows), and packs both
//! operands first. [`product`] reads the right operand's rows where they lie (they are
//! contiguous), broadcasts eight rows of the left operand one value at a time, and keeps 8 x 32
//! results in sixteen AVX-512 registers over the whole sum. [`product_nt`] serves the weight
//! gradients, whose operands both run along the pixels or tiles (`dW += dY · Xᵀ`): 4 x 4 dot
//! products at a time, 16 partial sums each, the four sums of a row added in registers.
//! [`try_product`] picks one of them or leaves the product to the gemm crate.
//!
//! Both have an AVX2+FMA version for CPUs without AVX-512 (6 x 16 results in twelve
//! registers; 4 x 3 dot products of eight partial sums), picked at run time.

use super::gemm::{dst_fits, Mat};
use super::simd::{simd_level, Isa, SimdLevel};

/// Lanes of an AVX-512 register of f32.
const L: usize = 16;

/// Whether [`product`] and [`product_nt`] run on this CPU: with AVX-512 or with AVX2 and
/// FMA (not capped below that by `WRNC_SIMD`).
pub(super) fn available() -> bool {
    simd_level() >= SimdLevel::Avx2
}

/// Bytes of the right operand up to which [`product`] serves any number of rows: it reads
/// that operand once per 8 rows, so it must stay in the core's L2 cache (the gemm crate packs
/// and blocks larger ones).
const RIGHT_BYTES: usize = 256 << 10;

/// Dot-product length from which [`product_nt`] beats the gemm crate: below it the final
/// additions of its partial sums weigh too much (k = 16: 22 against 47 GMAC/s; k = 64: even).
const NT_MIN_SUM: usize = 64;

/// Rows (output channels) up to which the AVX2 [`product_nt`] serves a product: with more,
/// the gemm crate's AVX2 kernels were faster (128 x 576 x 196: 49 against 32-44 GMAC/s; 64
/// rows: 39-45 against 48).
const NT_AVX2_ROWS: usize = 64;

/// Rows up to which [`product`] serves a right operand of any size.
const ANY_RIGHT_ROWS: usize = 64;

/// Runs the f32 product `dst[m x n] = (accumulate ? dst : 0) + lhs[m x k] · rhs[k x n]` (`dst`
/// rows `dst_rs` apart) through this module's kernels when one serves it on this CPU, and
/// says whether it did: [`product`] for contiguous right rows without accumulation and few
/// rows or a right operand that stays in L2; [`product_nt`] for a left operand with
/// contiguous rows and a transposed right one (the weight gradients) and sums of at least
/// [`NT_MIN_SUM`] products. Measured
/// single-threaded on Zen 4 on the convolution shapes of WRN-10-2 to WRN-16-4: 48-58 GMAC/s
/// against the gemm crate's 6-56.
#[allow(clippy::too_many_arguments)]
pub(super) fn try_product(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
) -> bool {
    if !available() {
        return false;
    }
    if rhs.cs == 1 && !accumulate && (m <= ANY_RIGHT_ROWS || k * n * 4 <= RIGHT_BYTES) {
        product(m, n, k, dst, dst_rs, lhs, rhs);
        return true;
    }
    if lhs.cs == 1
        && rhs.rs == 1
        && k >= NT_MIN_SUM
        && (Isa::widest() == Isa::Avx512 || m <= NT_AVX2_ROWS)
    {
        product_nt(m, n, k, dst, dst_rs, accumulate, lhs, rhs.t());
        return true;
    }
    false
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
    product_with(Isa::widest(), m, n, k, dst, dst_rs, lhs, rhs)
}

/// [`product`] with the kernels of `isa`.
#[allow(clippy::too_many_arguments)]
fn product_with(
    isa: Isa,
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
    assert!(rhs.cs == 1 && isa.present());
    assert!(dst_fits(m, n, dst.len(), dst_rs));
    assert!(lhs.fits(m, k) && rhs.fits(k, n));
    let (a, b) = (
        (lhs.data.as_ptr(), lhs.rs, lhs.cs),
        (rhs.data.as_ptr(), rhs.rs),
    );
    let d = dst.as_mut_ptr();
    // SAFETY: the instruction set is present (simd_level) and every index the kernel forms
    // lies inside the slices (checked above).
    unsafe {
        match isa {
            Isa::Avx512 => avx512::product(m, n, k, d, dst_rs, a, b),
            Isa::Avx2 => avx2::product(m, n, k, d, dst_rs, a, b),
        }
    }
}

/// `dst[m x n] = (accumulate ? dst : 0) + lhs[m x k] · rhs_tᵀ`, `rhs_t` the `[n x k]`
/// transpose of the right operand: both operands read along contiguous rows (`cs == 1`),
/// each result a dot product of length `k` (the weight gradients: `dW += dY · colᵀ`, with `k`
/// the output pixels). Blocks of 4 x 4 results keep 16 partial sums each in 16 registers (a
/// row's four sums are added together at the end), the right operand is taken in panels that
/// stay in L2, and the last `k % 16` values are read through masked loads.
///
/// Panics when an operand is too short, a row is strided or [`available`] is false.
#[allow(clippy::too_many_arguments)]
pub(super) fn product_nt(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat,
    rhs_t: Mat,
) {
    product_nt_with(Isa::widest(), m, n, k, dst, dst_rs, accumulate, lhs, rhs_t)
}

/// [`product_nt`] with the kernels of `isa`.
#[allow(clippy::too_many_arguments)]
fn product_nt_with(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat,
    rhs_t: Mat,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(lhs.cs == 1 && rhs_t.cs == 1 && isa.present());
    assert!(dst_fits(m, n, dst.len(), dst_rs));
    assert!(lhs.fits(m, k) && rhs_t.fits(n, k));
    let (a, b) = ((lhs.data.as_ptr(), lhs.rs), (rhs_t.data.as_ptr(), rhs_t.rs));
    let d = dst.as_mut_ptr();
    // SAFETY: the instruction set is present (simd_level) and every index the kernel forms
    // lies inside the slices (checked above).
    unsafe {
        match isa {
            Isa::Avx512 => avx512::product_nt((m, n, k), d, dst_rs, accumulate, a, b),
            Isa::Avx2 => avx2::product_nt((m, n, k), d, dst_rs, accumulate, a, b),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{L, RIGHT_BYTES};
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

    /// Rows of each operand per block of [`product_nt`]: 4 x 4 sums in 16 registers (4 x 6 and
    /// 5 x 4 ran at half the speed: with their operands they spill).
    const NT_A: usize = 4;
    const NT_B: usize = 4;

    /// The lane sums of four registers, `[Σ a, Σ b, Σ c, Σ d]`: pairs interleaved and added
    /// twice, then the four 128-bit quarters added.
    #[inline(always)]
    fn sum4([a, b, c, d]: [__m512; 4]) -> __m128 {
        // SAFETY: register-only AVX-512 operations (the callers run with AVX-512 enabled).
        unsafe {
            // per quarter: [a0+a2, b0+b2, a1+a3, b1+b3], the same for c and d
            let ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
            let cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
            let (ab, cd) = (_mm512_castps_pd(ab), _mm512_castps_pd(cd));
            // per quarter: [a, b, c, d] partial sums
            let q = _mm512_add_ps(
                _mm512_castpd_ps(_mm512_unpacklo_pd(ab, cd)),
                _mm512_castpd_ps(_mm512_unpackhi_pd(ab, cd)),
            );
            let h = _mm512_add_ps(q, _mm512_shuffle_f32x4::<0b01_00_11_10>(q, q));
            _mm_add_ps(_mm512_castps512_ps128(h), _mm512_extractf32x4_ps::<1>(h))
        }
    }

    /// Adds the products of the 16 values from `l` on (those `mask` selects when `MASKED`)
    /// to the block's sums.
    ///
    /// Safety: AVX-512; the values read lie inside the caller's slices.
    #[inline(always)]
    unsafe fn nt_step<const RA: usize, const RB: usize, const MASKED: bool>(
        acc: &mut [[__m512; RB]; RA],
        (a, a_rs): (*const f32, usize),
        (b, b_rs): (*const f32, usize),
        l: usize,
        mask: __mmask16,
    ) {
        // SAFETY (all): the caller's contract.
        unsafe {
            let load = |p: *const f32| {
                if MASKED {
                    _mm512_maskz_loadu_ps(mask, p)
                } else {
                    _mm512_loadu_ps(p)
                }
            };
            let v: [__m512; RB] = std::array::from_fn(|j| load(b.add(j * b_rs + l)));
            for (i, row) in acc.iter_mut().enumerate() {
                let u = load(a.add(i * a_rs + l));
                for (j, x) in row.iter_mut().enumerate() {
                    *x = _mm512_fmadd_ps(u, v[j], *x);
                }
            }
        }
    }

    /// One `RA x RB` block of [`product_nt`]: `a` and `b` point at its first rows of the
    /// left operand and of the transposed right one.
    ///
    /// Safety: AVX-512; the block's operands and results lie inside the caller's slices.
    #[inline(always)]
    unsafe fn block_nt<const RA: usize, const RB: usize>(
        k: usize,
        dst: *mut f32,
        dst_rs: usize,
        accumulate: bool,
        a: (*const f32, usize),
        b: (*const f32, usize),
    ) {
        let ((a, a_rs), (b, b_rs)) = (a, b);
        // SAFETY (all): the caller's contract; loads past `k` are masked off.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); RB]; RA];
            let mut l = 0;
            while l + L <= k {
                nt_step::<RA, RB, false>(&mut acc, (a, a_rs), (b, b_rs), l, 0xFFFF);
                l += L;
            }
            if l < k {
                let mask = ((1u32 << (k - l)) - 1) as __mmask16;
                nt_step::<RA, RB, true>(&mut acc, (a, a_rs), (b, b_rs), l, mask);
            }
            for (i, row) in acc.iter().enumerate() {
                let d = dst.add(i * dst_rs);
                if RB == 4 {
                    // the row's four sums at once, stored together
                    let sums = sum4([row[0], row[1], row[2], row[3]]);
                    let sums = if accumulate {
                        _mm_add_ps(_mm_loadu_ps(d), sums)
                    } else {
                        sums
                    };
                    _mm_storeu_ps(d, sums);
                } else {
                    for (j, x) in row.iter().enumerate() {
                        let sum = _mm512_reduce_add_ps(*x);
                        *d.add(j) = if accumulate { *d.add(j) + sum } else { sum };
                    }
                }
            }
        }
    }

    /// See [`super::product_nt`]. Safety: AVX-512; the operands and results lie inside the
    /// caller's slices.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product_nt(
        (m, n, k): (usize, usize, usize),
        dst: *mut f32,
        dst_rs: usize,
        accumulate: bool,
        (ap, a_rs): (*const f32, usize),
        (bp, b_rs): (*const f32, usize),
    ) {
        // panels of the right operand's rows that stay in L2 while every left block passes
        let panel = (RIGHT_BYTES / (4 * k.max(1))).max(NT_B) / NT_B * NT_B;
        for p0 in (0..n).step_by(panel) {
            let p1 = (p0 + panel).min(n);
            nt_panel(
                (m, p0, p1, k),
                dst,
                dst_rs,
                accumulate,
                (ap, a_rs),
                (bp, b_rs),
            );
        }
    }

    /// The columns `p0..p1` of [`product_nt`]. Safety: as [`product_nt`].
    #[inline(always)]
    unsafe fn nt_panel(
        (m, p0, p1, k): (usize, usize, usize, usize),
        dst: *mut f32,
        dst_rs: usize,
        accumulate: bool,
        (ap, a_rs): (*const f32, usize),
        (bp, b_rs): (*const f32, usize),
    ) {
        let mut i0 = 0;
        while i0 < m {
            let rows = NT_A.min(m - i0);
            let mut j0 = p0;
            while j0 < p1 {
                let cols = NT_B.min(p1 - j0);
                // SAFETY (all): block (i0, j0) lies inside the product (the caller's contract).
                unsafe {
                    let d = |i: usize, j: usize| dst.add(i * dst_rs + j);
                    let a = |i: usize| (ap.add(i * a_rs), a_rs);
                    let b = |j: usize| (bp.add(j * b_rs), b_rs);
                    match (rows == NT_A, cols == NT_B) {
                        (true, true) => {
                            block_nt::<NT_A, NT_B>(k, d(i0, j0), dst_rs, accumulate, a(i0), b(j0))
                        }
                        (true, false) => (j0..j0 + cols).for_each(|j| {
                            block_nt::<NT_A, 1>(k, d(i0, j), dst_rs, accumulate, a(i0), b(j))
                        }),
                        (false, true) => (i0..i0 + rows).for_each(|i| {
                            block_nt::<1, NT_B>(k, d(i, j0), dst_rs, accumulate, a(i), b(j0))
                        }),
                        (false, false) => (i0..i0 + rows).for_each(|i| {
                            (j0..j0 + cols).for_each(|j| {
                                block_nt::<1, 1>(k, d(i, j), dst_rs, accumulate, a(i), b(j))
                            })
                        }),
                    }
                }
                j0 += cols;
            }
            i0 += rows;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::RIGHT_BYTES;
    use std::arch::x86_64::*;

    /// Lanes of an AVX2 register of f32.
    const L: usize = 8;
    /// Rows of the left operand per block of [`product`]: 6 x 16 results in 12 registers, two
    /// for the right operand's values and one for the broadcast (16 in all).
    const R: usize = 6;

    /// The mask of the first `n` (< 8) lanes, for `maskload` / `maskstore`.
    #[inline(always)]
    fn lanes(n: usize) -> __m256i {
        // SAFETY: register-only AVX operations (the callers run with AVX2 enabled).
        unsafe {
            _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        }
    }

    /// One block of `ROWS` rows and `8·W` columns of the product (see the AVX-512 `block`);
    /// with `MASKED` (and `W == 1`) only the columns `tail` selects are read and written.
    ///
    /// Safety: AVX2 and FMA; the block's operands and selected results lie inside the
    /// caller's slices.
    #[inline(always)]
    unsafe fn block<const ROWS: usize, const W: usize, const MASKED: bool>(
        k: usize,
        dst: *mut f32,
        dst_rs: usize,
        a: (*const f32, usize, usize),
        b: (*const f32, usize),
        tail: __m256i,
    ) {
        let ((a, a_rs, a_cs), (b, b_rs)) = (a, b);
        // SAFETY (all): the caller's contract.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); W]; ROWS];
            for l in 0..k {
                let v: [__m256; W] = std::array::from_fn(|w| {
                    let p = b.add(l * b_rs + w * L);
                    if MASKED {
                        _mm256_maskload_ps(p, tail)
                    } else {
                        _mm256_loadu_ps(p)
                    }
                });
                for (i, row) in acc.iter_mut().enumerate() {
                    let u = _mm256_set1_ps(*a.add(i * a_rs + l * a_cs));
                    for (w, x) in row.iter_mut().enumerate() {
                        *x = _mm256_fmadd_ps(u, v[w], *x);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (w, x) in row.iter().enumerate() {
                    let p = dst.add(i * dst_rs + w * L);
                    if MASKED {
                        _mm256_maskstore_ps(p, tail, *x);
                    } else {
                        _mm256_storeu_ps(p, *x);
                    }
                }
            }
        }
    }

    /// The block of `ROWS` rows and `cols` (at most 16) columns from `dst`: 16 columns in
    /// two registers per row, 8 to 15 in one (the rest in the next block), fewer masked.
    ///
    /// Safety: as [`block`].
    #[inline(always)]
    unsafe fn columns<const ROWS: usize>(
        cols: usize,
        k: usize,
        dst: *mut f32,
        dst_rs: usize,
        a: (*const f32, usize, usize),
        b: (*const f32, usize),
        tail: __m256i,
    ) {
        // SAFETY (all): the caller's contract.
        unsafe {
            match cols {
                16 => block::<ROWS, 2, false>(k, dst, dst_rs, a, b, tail),
                8.. => block::<ROWS, 1, false>(k, dst, dst_rs, a, b, tail),
                _ => block::<ROWS, 1, true>(k, dst, dst_rs, a, b, tail),
            }
        }
    }

    /// See [`super::product`]. Safety: AVX2 and FMA; the operands and results lie inside the
    /// caller's slices.
    #[target_feature(enable = "avx2,fma")]
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
                let tail = lanes(cols.min(L));
                // SAFETY (all): block (i0, j0) lies inside the product (the caller's contract);
                // a block of fewer than 8 columns reads and writes only those.
                unsafe {
                    let d = dst.add(i0 * dst_rs + j0);
                    let a = (ap.add(i0 * a_rs), a_rs, a_cs);
                    let b = (bp.add(j0), b_rs);
                    match rows {
                        6 => columns::<6>(cols, k, d, dst_rs, a, b, tail),
                        5 => columns::<5>(cols, k, d, dst_rs, a, b, tail),
                        4 => columns::<4>(cols, k, d, dst_rs, a, b, tail),
                        3 => columns::<3>(cols, k, d, dst_rs, a, b, tail),
                        2 => columns::<2>(cols, k, d, dst_rs, a, b, tail),
                        _ => columns::<1>(cols, k, d, dst_rs, a, b, tail),
                    }
                }
                j0 += if cols == 2 * L { 2 * L } else { cols.min(L) };
            }
            i0 += rows;
        }
    }

    /// Rows of each operand per block of [`product_nt`]: 4 x 3 sums in 12 registers, three
    /// for the right operand's values and one for the left's (3 x 3 ran at 43-45 GMAC/s on
    /// long sums, 4 x 3 at 48-52).
    const NT_A: usize = 4;
    const NT_B: usize = 3;

    /// The sum of a register's eight lanes.
    #[inline(always)]
    fn sum(x: __m256) -> f32 {
        // SAFETY: register-only AVX operations (the callers run with AVX2 enabled).
        unsafe {
            let q = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
            let h = _mm_add_ps(q, _mm_movehl_ps(q, q));
            _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)))
        }
    }

    /// The lane sums of four registers, `[Σ a, Σ b, Σ c, Σ d]`: three horizontal additions
    /// and the two halves added.
    #[inline(always)]
    fn sum4([a, b, c, d]: [__m256; 4]) -> __m128 {
        // SAFETY: register-only AVX operations (the callers run with AVX2 enabled).
        unsafe {
            let abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
            _mm_add_ps(
                _mm256_castps256_ps128(abcd),
                _mm256_extractf128_ps::<1>(abcd),
            )
        }
    }

    /// Adds the products of the 8 values from `l` on (those `mask` selects when `MASKED`) to
    /// the block's sums.
    ///
    /// Safety: AVX2 and FMA; the values read lie inside the caller's slices.
    #[inline(always)]
    unsafe fn nt_step<const RA: usize, const RB: usize, const MASKED: bool>(
        acc: &mut [[__m256; RB]; RA],
        (a, a_rs): (*const f32, usize),
        (b, b_rs): (*const f32, usize),
        l: usize,
        mask: __m256i,
    ) {
        // SAFETY (all): the caller's contract.
        unsafe {
            let load = |p: *const f32| {
                if MASKED {
                    _mm256_maskload_ps(p, mask)
                } else {
                    _mm256_loadu_ps(p)
                }
            };
            let v: [__m256; RB] = std::array::from_fn(|j| load(b.add(j * b_rs + l)));
            for (i, row) in acc.iter_mut().enumerate() {
                let u = load(a.add(i * a_rs + l));
                for (j, x) in row.iter_mut().enumerate() {
                    *x = _mm256_fmadd_ps(u, v[j], *x);
                }
            }
        }
    }

    /// One `RA x RB` block of [`product_nt`]: `a` and `b` point at its first rows of the
    /// left operand and of the transposed right one.
    ///
    /// Safety: AVX2 and FMA; the block's operands and results lie inside the caller's slices.
    #[inline(always)]
    unsafe fn block_nt<const RA: usize, const RB: usize>(
        k: usize,
        dst: *mut f32,
        dst_rs: usize,
        accumulate: bool,
        a: (*const f32, usize),
        b: (*const f32, usize),
    ) {
        let ((a, a_rs), (b, b_rs)) = (a, b);
        // SAFETY (all): the caller's contract; loads past `k` are masked off.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); RB]; RA];
            let mut l = 0;
            let all = lanes(L);
            while l + L <= k {
                nt_step::<RA, RB, false>(&mut acc, (a, a_rs), (b, b_rs), l, all);
                l += L;
            }
            if l < k {
                nt_step::<RA, RB, true>(&mut acc, (a, a_rs), (b, b_rs), l, lanes(k - l));
            }
            for (i, row) in acc.iter().enumerate() {
                let d = dst.add(i * dst_rs);
                if RB == NT_B {
                    // the row's three sums at once (a fourth, zero register fills the vector)
                    let three = _mm256_castsi256_si128(lanes(NT_B));
                    let regs = std::array::from_fn(|j| row.get(j).copied());
                    let sums = sum4(regs.map(|r| r.unwrap_or(_mm256_setzero_ps())));
                    let sums = if accumulate {
                        _mm_add_ps(_mm_maskload_ps(d, three), sums)
                    } else {
                        sums
                    };
                    _mm_maskstore_ps(d, three, sums);
                } else {
                    for (j, x) in row.iter().enumerate() {
                        let s = sum(*x);
                        *d.add(j) = if accumulate { *d.add(j) + s } else { s };
                    }
                }
            }
        }
    }

    /// See [`super::product_nt`]. Safety: AVX2 and FMA; the operands and results lie inside
    /// the caller's slices.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product_nt(
        (m, n, k): (usize, usize, usize),
        dst: *mut f32,
        dst_rs: usize,
        accumulate: bool,
        (ap, a_rs): (*const f32, usize),
        (bp, b_rs): (*const f32, usize),
    ) {
        // panels of the right operand's rows that stay in L2 while every left block passes
        let panel = (RIGHT_BYTES / (4 * k.max(1))).max(NT_B) / NT_B * NT_B;
        for p0 in (0..n).step_by(panel) {
            let p1 = (p0 + panel).min(n);
            let mut i0 = 0;
            while i0 < m {
                let rows = NT_A.min(m - i0);
                let mut j0 = p0;
                while j0 < p1 {
                    let cols = NT_B.min(p1 - j0);
                    // SAFETY (all): block (i0, j0) lies inside the product (the caller's
                    // contract).
                    unsafe {
                        let d = |i: usize, j: usize| dst.add(i * dst_rs + j);
                        let a = |i: usize| (ap.add(i * a_rs), a_rs);
                        let b = |j: usize| (bp.add(j * b_rs), b_rs);
                        match (rows == NT_A, cols == NT_B) {
                            (true, true) => block_nt::<NT_A, NT_B>(
                                k,
                                d(i0, j0),
                                dst_rs,
                                accumulate,
                                a(i0),
                                b(j0),
                            ),
                            (true, false) => (j0..j0 + cols).for_each(|j| {
                                block_nt::<NT_A, 1>(k, d(i0, j), dst_rs, accumulate, a(i0), b(j))
                            }),
                            (false, true) => (i0..i0 + rows).for_each(|i| {
                                block_nt::<1, NT_B>(k, d(i, j0), dst_rs, accumulate, a(i), b(j0))
                            }),
                            (false, false) => (i0..i0 + rows).for_each(|i| {
                                (j0..j0 + cols).for_each(|j| {
                                    block_nt::<1, 1>(k, d(i, j), dst_rs, accumulate, a(i), b(j))
                                })
                            }),
                        }
                    }
                    j0 += cols;
                }
                i0 += rows;
            }
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

    pub(super) unsafe fn product_nt(
        _: (usize, usize, usize),
        _: *mut f32,
        _: usize,
        _: bool,
        _: (*const f32, usize),
        _: (*const f32, usize),
    ) {
        unreachable!("narrow_gemm::available() is false off x86-64")
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
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

    pub(super) unsafe fn product_nt(
        _: (usize, usize, usize),
        _: *mut f32,
        _: usize,
        _: bool,
        _: (*const f32, usize),
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
            // 12 = 8 + 4 and 20 = 16 + 4 (AVX2's 8- and 16-column blocks), 6 and 7 rows
            (6, 12, 4),
            (7, 20, 70),
        ] {
            let (a_rs, a_cs, b_rs, dst_rs) = (3 * k + 2, 2, n + 5, n + 7);
            let a: Vec<f32> = (0..m * a_rs + 1)
                .map(|i| ((i * 7) % 13) as f32 - 6.0)
                .collect();
            let b: Vec<f32> = (0..k.max(1) * b_rs)
                .map(|i| ((i * 5) % 11) as f32 * 0.5)
                .collect();
            let lhs = Mat {
                data: &a,
                rs: a_rs,
                cs: a_cs,
            };
            let rhs = Mat::rows(&b, b_rs);
            let mut want = vec![f32::NAN; (m - 1) * dst_rs + n];
            matmul_strided(m, n, k, &mut want, dst_rs, false, lhs, rhs);
            for isa in Isa::all_present() {
                // the gaps between destination rows keep their NaN (nothing else is written)
                let mut got = vec![f32::NAN; (m - 1) * dst_rs + n];
                product_with(isa, m, n, k, &mut got, dst_rs, lhs, rhs);
                for i in 0..m {
                    for j in 0..dst_rs.min(got.len() - i * dst_rs) {
                        let (g, w) = (got[i * dst_rs + j], want[i * dst_rs + j]);
                        if j >= n {
                            assert!(g.is_nan(), "{isa:?} ({m}, {n}, {k}) [{i}][{j}] written");
                            continue;
                        }
                        assert!(
                            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                            "{isa:?} ({m}, {n}, {k}) [{i}][{j}]: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn transposed_products_match_f64_dot_products() {
        // rows off the 4 x 4 blocks, sums off the 16 lanes, strided rows, several panels of
        // the right operand (k = 5000 leaves 12 rows per panel), with and without accumulation
        for (m, n, k, accumulate) in [
            (4, 4, 16, false),
            (7, 10, 37, true),
            (13, 6, 5, false),
            (9, 30, 5000, true),
            (64, 33, 196, true),
            (3, 2, 0, true),
        ] {
            let (a_rs, b_rs, dst_rs) = (k + 3, k + 5, n + 2);
            let a: Vec<f32> = (0..m * a_rs)
                .map(|i| ((i * 7) % 13) as f32 * 0.37 - 2.0)
                .collect();
            let b: Vec<f32> = (0..n * b_rs)
                .map(|i| ((i * 5) % 11) as f32 * 0.29 - 1.5)
                .collect();
            let start: Vec<f32> = (0..m * dst_rs).map(|i| (i % 3) as f32).collect();
            for isa in Isa::all_present() {
                let mut got = start.clone();
                product_nt_with(
                    isa,
                    m,
                    n,
                    k,
                    &mut got,
                    dst_rs,
                    accumulate,
                    Mat::rows(&a, a_rs),
                    Mat::rows(&b, b_rs),
                );
                check_nt(
                    isa,
                    (m, n, k, accumulate),
                    (&a, a_rs),
                    (&b, b_rs),
                    &start,
                    &got,
                    dst_rs,
                );
            }
        }
    }

    /// Checks a [`product_nt`] result `got` (from `start`) against f64 dot products.
    fn check_nt(
        isa: Isa,
        (m, n, k, accumulate): (usize, usize, usize, bool),
        (a, a_rs): (&[f32], usize),
        (b, b_rs): (&[f32], usize),
        start: &[f32],
        got: &[f32],
        dst_rs: usize,
    ) {
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|l| f64::from(a[i * a_rs + l]) * f64::from(b[j * b_rs + l]))
                    .sum();
                let base = if accumulate {
                    f64::from(start[i * dst_rs + j])
                } else {
                    0.0
                };
                let (g, w) = (f64::from(got[i * dst_rs + j]), base + dot);
                assert!(
                    (g - w).abs() <= 1e-5 * (k as f64 + 1.0) * w.abs().max(1.0),
                    "{isa:?} ({m}, {n}, {k}) [{i}][{j}]: {g} vs {w}"
                );
            }
            // the gaps between destination rows are left alone
            for j in n..dst_rs.min(start.len() - i * dst_rs) {
                assert_eq!(got[i * dst_rs + j], start[i * dst_rs + j], "{isa:?}");
            }
        }
    }
}
