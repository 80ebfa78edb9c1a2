//! Dense f32 matrix products on strided views: our own tile kernels where the right-hand side
//! has contiguous rows (x86 AVX2/AVX-512, aarch64 NEON; one order of operations), else
//! the `gemm` crate (runtime-dispatched SIMD). Used by attention, whose operands are heads laid
//! out inside wider rows.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86;

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
/// thread (callers parallelize over heads and row blocks). On x86 (AVX2 + FMA or AVX-512) and
/// on aarch64, with a right-hand side of contiguous rows (`rhs.col_stride == 1`), a kernel of
/// ours runs it, in one order of operations whatever the CPU and the row split (see
/// `gemm_f32/x86.rs`, `gemm_f32/aarch64.rs`); else the `gemm` crate.
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
    #[cfg(target_arch = "x86_64")]
    if let Some(width) = x86::width().filter(|_| rhs.col_stride == 1) {
        // SAFETY: `width` is what this CPU has; the asserts above keep the views in bounds,
        // and m, n, k > 0.
        return unsafe { x86::matmul(width, dst, dst_row_stride, accumulate, lhs, rhs, scale) };
    }
    #[cfg(target_arch = "aarch64")]
    if rhs.col_stride == 1 {
        // SAFETY: the asserts above keep the views in bounds, and m, n, k > 0.
        return unsafe { aarch64::matmul(dst, dst_row_stride, accumulate, lhs, rhs, scale) };
    }
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

/// The tiling of our kernels (x86 and aarch64): the right-hand side, whose rows are contiguous,
/// is copied one panel of `NR` columns at a time to `k` contiguous rows — rows of a wide matrix
/// lie a power of two apart as often as not, and read in place they would fight over a few L1
/// sets — and the `m` rows are then taken in tiles of at most `max_rows`:
/// `tile(first row, rows, panel, first column, columns)`. Past `n`, the last panel's columns
/// keep the previous panel's values (or zeros): computed, never stored. Inlined into each
/// kernel, so that it is compiled with the kernel's target features.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn for_each_tile<const NR: usize>(
    m: usize,
    rhs: Strided,
    max_rows: usize,
    mut tile: impl FnMut(usize, usize, &[f32], usize, usize),
) {
    let (k, n) = (rhs.rows, rhs.cols);
    let mut panel = vec![0.0f32; k * NR];
    for c0 in (0..n).step_by(NR) {
        let nc = (n - c0).min(NR);
        for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
            let src = &rhs.data[kk * rhs.row_stride + c0..][..nc];
            if nc == NR {
                // A constant length compiles to a few vector moves; a slice copy of variable
                // length is a `memmove` call per row.
                let row: &mut [f32; NR] = row.try_into().expect("chunks of NR");
                *row = src.try_into().expect("NR columns");
            } else {
                row[..nc].copy_from_slice(src);
            }
        }
        for r0 in (0..m).step_by(max_rows) {
            tile(r0, (m - r0).min(max_rows), &panel, c0, nc);
        }
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

    /// Test value `i` of stream `s`, in [-1, 1].
    fn val(i: usize, s: usize) -> f32 {
        ((i * 7919 + s * 104729) % 2003) as f32 / 1001.0 - 1.0
    }

    /// Every shape's tails (rows past a 12-row tile, columns past a 32-column one), strided
    /// left-hand sides and outputs, with and without accumulation, against f64 sums; and, where
    /// our kernels run (x86, aarch64), each row's bits the same whether the rows are computed
    /// together or one call per row (the attention splits rows between threads by their
    /// number).
    #[test]
    fn products_of_every_shape_match_f64_and_do_not_depend_on_the_row_split() {
        #[cfg(target_arch = "x86_64")]
        let ours = x86::width().is_some();
        #[cfg(target_arch = "aarch64")]
        let ours = true;
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let ours = false;
        for (m, n, k) in [
            (1, 1, 1),
            (13, 33, 7),
            (12, 32, 64),
            (25, 70, 3),
            (5, 16, 300),
        ] {
            for rhs_rows_contiguous in [true, false] {
                let (lrs, lcs) = (k + 3, 1);
                let a: Vec<f32> = (0..m * lrs).map(|i| val(i, 1)).collect();
                let lhs = Strided {
                    data: &a,
                    rows: m,
                    cols: k,
                    row_stride: lrs,
                    col_stride: lcs,
                };
                let (rrs, rcs) = if rhs_rows_contiguous {
                    (n + 5, 1)
                } else {
                    (1, k + 2)
                };
                let b: Vec<f32> = (0..(k + 2) * (n + 5)).map(|i| val(i, 2)).collect();
                let rhs = Strided {
                    data: &b,
                    rows: k,
                    cols: n,
                    row_stride: rrs,
                    col_stride: rcs,
                };
                let ldc = n + 4;
                let start: Vec<f32> = (0..m * ldc).map(|i| val(i, 3)).collect();
                for accumulate in [false, true] {
                    let mut whole = start.clone();
                    matmul_f32(&mut whole, ldc, accumulate, lhs, rhs, 0.25);
                    for r in 0..m {
                        for c in 0..ldc {
                            let got = whole[r * ldc + c];
                            if c >= n {
                                assert_eq!(got, start[r * ldc + c], "column {c} past the view");
                                continue;
                            }
                            let dot: f64 = (0..k)
                                .map(|i| a[r * lrs + i] as f64 * b[i * rrs + c * rcs] as f64)
                                .sum();
                            let base = if accumulate {
                                start[r * ldc + c] as f64
                            } else {
                                0.0
                            };
                            let want = base + 0.25 * dot;
                            assert!(
                                (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                                "{m}x{n}x{k} ({r}, {c}): {got} vs {want}"
                            );
                        }
                        // (The `gemm` crate's rows can change in the last bit with the
                        // number of rows; only our kernel promises this.)
                        if !(rhs_rows_contiguous && ours) {
                            continue;
                        }
                        let mut one = start[r * ldc..][..ldc].to_vec();
                        let row = Strided {
                            data: &a[r * lrs..],
                            rows: 1,
                            ..lhs
                        };
                        matmul_f32(&mut one, ldc, accumulate, row, rhs, 0.25);
                        assert_eq!(one, whole[r * ldc..][..ldc], "{m}x{n}x{k} row {r} alone");
                    }
                }
            }
        }
    }

    /// The AVX2 and AVX-512 kernels give the same bits (one order of operations per element),
    /// on every tail.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_x86_widths_give_the_same_bits() {
        if !is_x86_feature_detected!("avx512f") {
            return; // Only an AVX-512 CPU runs both.
        }
        for (m, n, k) in [
            (1, 1, 1),
            (13, 33, 7),
            (12, 32, 64),
            (25, 70, 3),
            (7, 17, 300),
        ] {
            let a: Vec<f32> = (0..m * (k + 1)).map(|i| val(i, 1)).collect();
            let b: Vec<f32> = (0..k * (n + 2)).map(|i| val(i, 2)).collect();
            let lhs = Strided {
                data: &a,
                rows: m,
                cols: k,
                row_stride: k + 1,
                col_stride: 1,
            };
            let rhs = Strided {
                data: &b,
                rows: k,
                cols: n,
                row_stride: n + 2,
                col_stride: 1,
            };
            let start: Vec<f32> = (0..m * n).map(|i| val(i, 3)).collect();
            for accumulate in [false, true] {
                let [mut y, mut z] = [start.clone(), start.clone()];
                // SAFETY: the CPU has AVX-512F (so AVX2 and FMA); the views are in bounds.
                unsafe {
                    x86::matmul(x86::Width::Ymm, &mut y, n, accumulate, lhs, rhs, 0.5);
                    x86::matmul(x86::Width::Zmm, &mut z, n, accumulate, lhs, rhs, 0.5);
                }
                assert_eq!(y, z, "{m}x{n}x{k}");
            }
        }
    }
}
