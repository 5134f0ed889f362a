//! Matrix products with bf16 inputs and f32 accumulation (AVX-512 BF16's `vdpbf16ps`), for
//! `train.precision: bf16` on the CPU.
//!
//! `vdpbf16ps` multiplies 32 bf16 pairs and adds each lane's two products to an f32
//! accumulator: twice the multiplications of an f32 FMA per instruction. The operands are
//! packed once into the layout the instruction reads, with the inner dimension `k` in pairs:
//!
//! - [`PackedA`]: the left matrix (`m x k`), row by row, each `u32` one pair
//!   `(a[i][2q], a[i][2q+1])`, rows padded to a multiple of [`MR`] with zeros;
//! - [`PackedB`]: the right matrix (`k x n`) in panels of [`NR`] columns, each panel pair by
//!   pair: `(b[2q][j], b[2q+1][j])` for its columns `j`, columns padded with zeros.
//!
//! An odd `k` gets a zero partner. f32 values are rounded to the nearest bf16 (ties to even),
//! as PyTorch's conversion does; the products are exact in f32 and summed in f32.

use super::gemm::{matmul_strided, Mat};
use super::narrow_gemm;
use super::simd::{multiversion, simd_level, SimdLevel};
use super::winograd::Math;

/// Rows of the left matrix one micro-kernel call computes.
pub const MR: usize = 8;
/// Columns of the right matrix one panel holds (two vectors of 16 lanes).
pub const NR: usize = 32;

/// Whether this CPU runs [`matmul`]: AVX-512 with the BF16 extension, and `WRNC_SIMD` not
/// capping the kernels below AVX-512.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd_level() == SimdLevel::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Why [`available`] is false, in words for an error message (`None` when it is true).
pub fn unavailable_reason() -> Option<&'static str> {
    if available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    let has = std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bf16");
    #[cfg(not(target_arch = "x86_64"))]
    let has = false;
    Some(if has {
        "WRNC_SIMD caps wrnc's kernels below avx512"
    } else {
        "this CPU has no AVX-512 BF16 (avx512_bf16)"
    })
}

/// `x` rounded to the nearest bf16 (ties to even; NaN stays NaN), as its 16 bits. Branch
/// free, so that the conversion loops vectorise.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u32 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16;
    if b & 0x7fff_ffff > 0x7f80_0000 {
        0x7fc0
    } else {
        rounded
    }
}

/// `x` rounded to bf16 and back: the value the products see.
#[cfg(test)]
pub fn round_bf16(x: f32) -> f32 {
    f32::from_bits(bf16_bits(x) << 16)
}

/// Two values as one bf16 pair, the first in the low half.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | (bf16_bits(hi) << 16)
}

multiversion! {
    /// `out[j] = pair(lo[j], hi[j])`: two rows of `k` interleaved.
    fn convert_pairs(lo: &[f32], hi: &[f32], out: &mut [u32]) {
        for ((d, &l), &h) in out.iter_mut().zip(lo).zip(hi) {
            *d = pair(l, h);
        }
    }
}

multiversion! {
    /// `out[q] = pair(src[2q], src[2q + 1])`, a zero partner for an odd last element: one row
    /// along `k`.
    fn convert_row(src: &[f32], out: &mut [u32]) {
        let whole = src.chunks_exact(2);
        let tail = whole.remainder().first().copied();
        let n = whole.len();
        for (d, s) in out.iter_mut().zip(whole) {
            *d = pair(s[0], s[1]);
        }
        if let Some(last) = tail {
            out[n] = pair(last, 0.0);
        }
    }
}

/// A left operand in pairs along `k` (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct PackedA {
    data: Vec<u32>,
    m: usize,
    kp: usize,
}

impl PackedA {
    /// Packs the `m x k` matrix `a` into `self` (reusing its buffer).
    pub fn pack(&mut self, m: usize, k: usize, a: Mat) {
        let kp = k.div_ceil(2);
        let rows = m.next_multiple_of(MR);
        self.data.clear();
        self.data.resize(rows * kp, 0);
        self.m = m;
        self.kp = kp;
        let at = |i: usize, kk: usize| {
            if kk < k {
                a.data[i * a.rs + kk * a.cs]
            } else {
                0.0
            }
        };
        for (i, row) in self.data.chunks_exact_mut(kp.max(1)).take(m).enumerate() {
            if a.cs == 1 {
                convert_row(&a.data[i * a.rs..][..k], row);
            } else {
                for (q, d) in row.iter_mut().enumerate() {
                    *d = pair(at(i, 2 * q), at(i, 2 * q + 1));
                }
            }
        }
    }

    /// A packed copy of the `m x k` matrix `a`.
    pub fn new(m: usize, k: usize, a: Mat) -> PackedA {
        let mut p = PackedA::default();
        p.pack(m, k, a);
        p
    }
}

/// A right operand in column panels, pairs along `k` (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct PackedB {
    data: Vec<u32>,
    n: usize,
    kp: usize,
}

impl PackedB {
    /// Packs the `k x n` matrix `b` into `self` (reusing its buffer).
    pub fn pack(&mut self, k: usize, n: usize, b: Mat) {
        let kp = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        self.data.clear();
        self.data.resize(panels * kp * NR, 0);
        self.n = n;
        self.kp = kp;
        let mut row = Vec::new();
        for (pi, panel) in self.data.chunks_exact_mut((kp * NR).max(1)).enumerate() {
            let j0 = pi * NR;
            let cols = NR.min(n - j0);
            if b.cs == 1 {
                // rows along n: two rows of the panel's columns per pair
                for (q, dst) in panel.chunks_exact_mut(NR).enumerate() {
                    let r0 = &b.data[2 * q * b.rs + j0..][..cols];
                    if 2 * q + 1 < k {
                        let r1 = &b.data[(2 * q + 1) * b.rs + j0..][..cols];
                        convert_pairs(r0, r1, &mut dst[..cols]);
                    } else {
                        convert_pairs(r0, &vec![0.0; cols], &mut dst[..cols]);
                    }
                }
            } else {
                // columns along k (a transposed matrix, `rs == 1`): each column converted
                // whole, then spread over the pairs
                row.resize(kp, 0);
                for j in 0..cols {
                    let col: Vec<f32>;
                    let src = if b.rs == 1 {
                        &b.data[(j0 + j) * b.cs..][..k]
                    } else {
                        col = (0..k)
                            .map(|kk| b.data[kk * b.rs + (j0 + j) * b.cs])
                            .collect();
                        &col
                    };
                    convert_row(src, &mut row);
                    for (q, &v) in row.iter().enumerate() {
                        panel[q * NR + j] = v;
                    }
                }
            }
        }
    }

    /// A packed copy of the `k x n` matrix `b`.
    #[cfg(test)]
    pub fn new(k: usize, n: usize, b: Mat) -> PackedB {
        let mut p = PackedB::default();
        p.pack(k, n, b);
        p
    }
}

/// The left operand of [`product`]: an f32 matrix, packed on the fly, or one packed already
/// (weights shared by many products).
#[derive(Clone, Copy)]
pub enum Lhs<'a> {
    /// An f32 matrix.
    Plain(Mat<'a>),
    /// A matrix packed by [`PackedA::new`].
    Packed(&'a PackedA),
}

thread_local! {
    /// This worker's packing buffers, kept across calls.
    static SCRATCH: std::cell::RefCell<(PackedA, PackedB)> = Default::default();
}

/// [`product_in`], except that the f32 products [`narrow_gemm::try_product`] serves run
/// through its kernels (the im2col and 1x1 convolutions, every weight gradient; the Winograd
/// forward and input gradient choose their kernel themselves).
#[allow(clippy::too_many_arguments)]
pub(super) fn product_narrow_first(
    math: Math,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Lhs,
    rhs: Mat,
) {
    if let (Math::F32, Lhs::Plain(a)) = (math, lhs) {
        if narrow_gemm::try_product(m, n, k, dst, dst_rs, accumulate, a, rhs) {
            return;
        }
    }
    product_in(math, m, n, k, dst, dst_rs, accumulate, lhs, rhs)
}

/// `dst[m x n] = (accumulate ? dst : 0) + lhs[m x k] · rhs[k x n]` in `math`'s precision,
/// `dst` rows `dst_rs` apart: f32 through the gemm crate, bf16 through [`product`] (an
/// already packed `lhs` is bf16 whatever `math` says).
#[allow(clippy::too_many_arguments)]
pub fn product_in(
    math: Math,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Lhs,
    rhs: Mat,
) {
    match (math, lhs) {
        (Math::F32, Lhs::Plain(a)) => matmul_strided(m, n, k, dst, dst_rs, accumulate, a, rhs),
        (_, lhs) => product(m, n, k, dst, dst_rs, accumulate, lhs, rhs),
    }
}

/// `dst[m x n] = (accumulate ? dst : 0) + lhs[m x k] · rhs[k x n]` with bf16 products (see
/// [`matmul`]), `dst` rows `dst_rs` apart; the f32 operands are packed into this thread's
/// buffers.
#[allow(clippy::too_many_arguments)]
pub fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Lhs,
    rhs: Mat,
) {
    SCRATCH.with(|cell| {
        let (pa, pb) = &mut *cell.borrow_mut();
        pb.pack(k, n, rhs);
        let a = match lhs {
            Lhs::Packed(a) => a,
            Lhs::Plain(a) => {
                pa.pack(m, k, a);
                &*pa
            }
        };
        matmul(dst, dst_rs, accumulate, a, pb);
    })
}

/// `dst[m x n] = (accumulate ? dst : 0) + a · b` with bf16 products summed in f32, `dst`
/// row-major with rows `dst_rs` apart. Panics (a programming error) when the operands' inner
/// sizes differ, `dst` is too short, or [`available`] is false.
pub fn matmul(dst: &mut [f32], dst_rs: usize, accumulate: bool, a: &PackedA, b: &PackedB) {
    let (m, n) = (a.m, b.n);
    assert_eq!(a.kp, b.kp, "bf16 matmul: inner sizes differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst_rs >= n && dst.len() > (m - 1) * dst_rs + n - 1);
    assert!(available(), "bf16 matmul needs AVX-512 BF16");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: available() saw the CPU report AVX-512 F and BF16; the bounds are checked above
    // and in the kernel's slicing.
    unsafe {
        kernel(dst, dst_rs, accumulate, a, b)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
fn kernel(dst: &mut [f32], dst_rs: usize, accumulate: bool, a: &PackedA, b: &PackedB) {
    use std::arch::x86_64::*;
    let (m, n, kp) = (a.m, b.n, a.kp);
    for (pi, panel) in b.data.chunks_exact((kp * NR).max(1)).enumerate() {
        let j0 = pi * NR;
        let cols = NR.min(n - j0);
        // lanes of the two vectors inside the matrix
        let masks: [__mmask16; 2] = std::array::from_fn(|v| {
            let c = cols.saturating_sub(16 * v).min(16);
            ((1u32 << c) - 1) as __mmask16
        });
        for i0 in (0..m).step_by(MR) {
            let rows = MR.min(m - i0);
            let ablock = &a.data[i0 * kp..][..MR * kp];
            // SAFETY: loads and stores are masked to the columns inside `dst` (checked by the
            // caller's assertion), rows beyond `rows` are neither loaded nor stored; the
            // packed operands hold `MR * kp` and `kp * NR` values for this block and panel.
            unsafe {
                let mut acc = [[_mm512_setzero_ps(); 2]; MR];
                if accumulate {
                    for (r, accr) in acc.iter_mut().enumerate().take(rows) {
                        let p = dst.as_ptr().add((i0 + r) * dst_rs + j0);
                        for (v, x) in accr.iter_mut().enumerate() {
                            *x = _mm512_maskz_loadu_ps(masks[v], p.add(16 * v));
                        }
                    }
                }
                let bp = panel.as_ptr();
                let ap = ablock.as_ptr();
                for q in 0..kp {
                    let b0: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(bp.add(q * NR).cast()));
                    let b1: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(bp.add(q * NR + 16).cast()));
                    for (r, accr) in acc.iter_mut().enumerate() {
                        let x: __m512bh =
                            std::mem::transmute(_mm512_set1_epi32(*ap.add(r * kp + q) as i32));
                        accr[0] = _mm512_dpbf16_ps(accr[0], x, b0);
                        accr[1] = _mm512_dpbf16_ps(accr[1], x, b1);
                    }
                }
                for (r, accr) in acc.iter().enumerate().take(rows) {
                    let p = dst.as_mut_ptr().add((i0 + r) * dst_rs + j0);
                    for (v, x) in accr.iter().enumerate() {
                        _mm512_mask_storeu_ps(p.add(16 * v), masks[v], *x);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::rand_vec as rand;

    #[test]
    fn rounding_is_to_nearest_even_and_keeps_nan() {
        assert_eq!(round_bf16(1.0), 1.0);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0)
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round_bf16(-2.5), -2.5);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn products_match_f64_on_rounded_inputs_across_edges() {
        if !available() {
            eprintln!("skipped: no AVX-512 BF16 on this CPU");
            return;
        }
        // odd k, rows not a multiple of MR, columns not a multiple of NR, strided operands
        for (m, k, n, seed) in [
            (13, 7, 45, 1),
            (8, 64, 32, 2),
            (1, 1, 1, 3),
            (20, 33, 70, 4),
        ] {
            let a = rand(m * k, seed);
            let bt = rand(n * k, seed + 10); // b stored transposed: n x k
            let dst_rs = n + 3;
            let mut dst = vec![0.5f32; m * dst_rs];
            let pa = PackedA::new(m, k, Mat::rows(&a, k));
            let pb = PackedB::new(k, n, Mat::transposed(&bt, k));
            for accumulate in [false, true] {
                let before = dst.clone();
                matmul(&mut dst, dst_rs, accumulate, &pa, &pb);
                for i in 0..m {
                    for j in 0..dst_rs {
                        let got = dst[i * dst_rs + j];
                        if j >= n {
                            assert_eq!(got, before[i * dst_rs + j], "gap ({i}, {j}) written");
                            continue;
                        }
                        let mut want: f64 = if accumulate {
                            f64::from(before[i * dst_rs + j])
                        } else {
                            0.0
                        };
                        for kk in 0..k {
                            want += f64::from(round_bf16(a[i * k + kk]))
                                * f64::from(round_bf16(bt[j * k + kk]));
                        }
                        assert!(
                            (f64::from(got) - want).abs() < 1e-5 * (1.0 + want.abs()),
                            "({m},{k},{n}) [{i},{j}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
