//! A bounds-checked wrapper around the `gemm` crate's f32 matrix product.

/// A matrix operand: its data and its row and column strides (in elements).
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Distance between rows.
    pub rs: usize,
    /// Distance between columns.
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Mat::rows(data, cols).t()
    }

    /// The transpose (the same data, strides swapped).
    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Whether a `rows x cols` matrix with these strides lies inside `data`.
    pub(super) fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Whether a row-major `m x n` destination with rows `dst_rs` apart fits rows that long
/// (`dst_rs >= n`) and lies inside `len` values (`m` and `n` at least 1).
pub(super) fn dst_fits(m: usize, n: usize, len: usize, dst_rs: usize) -> bool {
    dst_rs >= n && len >= (m - 1) * dst_rs + n
}

/// `dst[m x n] = (accumulate ? dst : 0) + lhs[m x k] * rhs[k x n]`, `dst` row-major with rows
/// `dst_rs` elements apart (`dst_rs >= n`; the gaps are left alone), on the calling thread.
/// Panics (a programming error, never user input) when an operand is too short.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst_fits(m, n, dst.len(), dst_rs));
    assert!(lhs.fits(m, k) && rhs.fits(k, n));
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_rs).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the assertion above proves that every element the product reads or writes lies
    // inside the slices, and `dst` is borrowed mutably so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_with_transposes_and_accumulation() {
        // A = [[1,2,3],[4,5,6]] (2x3), B = [[1,0],[0,1],[1,1]] (3x2) -> [[4,5],[10,11]]
        let a = [1., 2., 3., 4., 5., 6.];
        let b = [1., 0., 0., 1., 1., 1.];
        let mut d = [0f32; 4];
        matmul_strided(
            2,
            2,
            3,
            &mut d,
            2,
            false,
            Mat::rows(&a, 3),
            Mat::rows(&b, 2),
        );
        assert_eq!(d, [4., 5., 10., 11.]);
        // B^T stored as a 2x3 row-major matrix
        let bt = [1., 0., 1., 0., 1., 1.];
        matmul_strided(
            2,
            2,
            3,
            &mut d,
            2,
            true,
            Mat::rows(&a, 3),
            Mat::transposed(&bt, 3),
        );
        assert_eq!(d, [8., 10., 20., 22.]);
    }

    #[test]
    fn strided_destination_leaves_the_gaps_alone() {
        let a = [1., 2., 3., 4., 5., 6.];
        let b = [1., 0., 0., 1., 1., 1.];
        let mut d = [-1f32; 7];
        matmul_strided(
            2,
            2,
            3,
            &mut d,
            4,
            false,
            Mat::rows(&a, 3),
            Mat::rows(&b, 2),
        );
        assert_eq!(d, [4., 5., -1., -1., 10., 11., -1.]);
    }
}
