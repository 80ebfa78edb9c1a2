//! [`super::matmul_f32`] in AVX-512 for a right-hand side whose rows are contiguous (the
//! attention's transposed keys and its values): `12 × 32` tiles of the product held in 24 zmm
//! accumulators, the right-hand side read in place (its 32 columns of a row are two loads), each
//! left-hand element broadcast once per tile row and step. Every element sums its `k` products in
//! order in one accumulator, so the result does not depend on the tiling (nor on how callers
//! split rows between threads). The `gemm` crate, which has no AVX-512 kernels on stable Rust,
//! remains the path for other CPUs and layouts.

use super::Strided;
use std::arch::x86_64::*;

/// Columns per tile: two zmm.
const NR: usize = 32;
/// Rows per tile: 24 accumulators, two right-hand vectors and a broadcast fit 32 registers.
const MR: usize = 12;

/// Whether [`matmul`] can run here.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// `dst[r, c] (+)= scale · Σ_k lhs[r, k] · rhs[k, c]` with `rhs.col_stride == 1`.
///
/// # Safety
/// The CPU has AVX-512F ([`available`]); the views are in bounds of their slices (checked by
/// `matmul_f32`) and `m, n, k > 0`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn matmul(
    dst: &mut [f32],
    ldc: usize,
    accumulate: bool,
    lhs: Strided,
    rhs: Strided,
    scale: f32,
) {
    debug_assert_eq!(rhs.col_stride, 1);
    let (m, n) = (lhs.rows, rhs.cols);
    let c = dst.as_mut_ptr();
    for c0 in (0..n).step_by(NR) {
        let nc = (n - c0).min(NR);
        let mut r0 = 0;
        while r0 < m {
            let mr = (m - r0).min(MR);
            let a = lhs.data.as_ptr().add(r0 * lhs.row_stride);
            let b = rhs.data.as_ptr().add(c0);
            let out = c.add(r0 * ldc + c0);
            let args = (a, lhs, b, rhs.row_stride, out, ldc, nc, accumulate, scale);
            match mr {
                12 => tile::<12>(args),
                11 => tile::<11>(args),
                10 => tile::<10>(args),
                9 => tile::<9>(args),
                8 => tile::<8>(args),
                7 => tile::<7>(args),
                6 => tile::<6>(args),
                5 => tile::<5>(args),
                4 => tile::<4>(args),
                3 => tile::<3>(args),
                2 => tile::<2>(args),
                _ => tile::<1>(args),
            }
            r0 += mr;
        }
    }
}

/// A tile's operands: its first left-hand element and the view (for its strides and depth),
/// its first right-hand element and row stride, its first output element and row stride, the
/// columns it covers (1..=32), whether to add to the output, and the scale.
type TileArgs<'a> = (
    *const f32,
    Strided<'a>,
    *const f32,
    usize,
    *mut f32,
    usize,
    usize,
    bool,
    f32,
);

/// The lanes of columns `from..nc` of a 16-column half starting at `from`.
#[inline(always)]
fn lanes(nc: usize, from: usize) -> __mmask16 {
    let n = nc.saturating_sub(from).min(16);
    ((1u32 << n) - 1) as __mmask16
}

/// One `R × 32` tile (`R ≤ MR`); columns past `nc` are neither read nor written.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize>((a, lhs, b, ldb, out, ldc, nc, accumulate, scale): TileArgs) {
    let (m0, m1) = (lanes(nc, 0), lanes(nc, 16));
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    for kk in 0..lhs.cols {
        // Masked loads read no element past the view's columns (the last row may end there).
        let row = b.add(kk * ldb);
        let b0 = _mm512_maskz_loadu_ps(m0, row);
        let b1 = _mm512_maskz_loadu_ps(m1, row.wrapping_add(16));
        let ak = a.add(kk * lhs.col_stride);
        for r in 0..R {
            let av = _mm512_set1_ps(*ak.add(r * lhs.row_stride));
            lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
        }
    }
    let sv = _mm512_set1_ps(scale);
    for r in 0..R {
        let o = out.add(r * ldc);
        let o1 = o.wrapping_add(16);
        let (mut v0, mut v1) = (_mm512_mul_ps(lo[r], sv), _mm512_mul_ps(hi[r], sv));
        if accumulate {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, o));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, o1));
        }
        _mm512_mask_storeu_ps(o, m0, v0);
        _mm512_mask_storeu_ps(o1, m1, v1);
    }
}
