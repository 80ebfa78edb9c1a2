//! Dense f32 matrix products on strided views, through the `gemm` crate (runtime-dispatched
//! SIMD). Used by attention, whose operands are heads laid out inside wider rows.

/// A read-only strided matrix inside a slice: element `(r, c)` is at
/// `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    /// The backing slice (starting at element (0, 0)).
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between consecutive rows.
    pub row_stride: usize,
    /// Distance between consecutive columns.
    pub col_stride: usize,
}

impl Strided<'_> {
    fn last_index(&self) -> usize {
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
    }
}

/// `dst[r, c] (+)= scale · Σ_k lhs[r, k] · rhs[k, c]`, where `dst` is row-major with
/// `dst_row_stride` and adds to its old contents when `accumulate` is set. Runs on the calling
/// thread (callers parallelize over heads and row blocks).
pub fn matmul_f32(
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    lhs: Strided,
    rhs: Strided,
    scale: f32,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_row_stride..r * dst_row_stride + n].fill(0.0);
            }
        }
        return;
    }
    assert!(lhs.last_index() < lhs.data.len(), "lhs view out of bounds");
    assert!(rhs.last_index() < rhs.data.len(), "rhs view out of bounds");
    assert!(
        (m - 1) * dst_row_stride + n <= dst.len(),
        "dst view out of bounds"
    );
    // SAFETY: the three asserts above keep every element the views address inside their
    // slices; `dst` is borrowed mutably and cannot alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            scale,
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
    fn strided_product_matches_naive() {
        // lhs: 3x2 inside rows of 5 starting at column 1; rhs^T: 4 keys of width 2, stride 3.
        let a: Vec<f32> = (0..15).map(|i| i as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..12).map(|i| (i as f32).sin()).collect();
        let lhs = Strided {
            data: &a[1..],
            rows: 3,
            cols: 2,
            row_stride: 5,
            col_stride: 1,
        };
        let rhs = Strided {
            data: &b,
            rows: 2,
            cols: 4,
            row_stride: 1,
            col_stride: 3,
        };
        let mut dst = vec![1.0f32; 3 * 6];
        matmul_f32(&mut dst, 6, true, lhs, rhs, 0.5);
        for r in 0..3 {
            for c in 0..4 {
                let want: f32 =
                    1.0 + 0.5 * (0..2).map(|k| a[1 + r * 5 + k] * b[k + c * 3]).sum::<f32>();
                assert!((dst[r * 6 + c] - want).abs() < 1e-5);
            }
            assert_eq!(dst[r * 6 + 4], 1.0);
        }
    }
}
