//! [`super::matmul_f32`] for a right-hand side whose rows are contiguous (the attention's
//! transposed keys and its values), in AVX-512 (`12 × 32` tiles in 24 zmm accumulators) or
//! AVX2 + FMA (`6 × 16` tiles in 12 ymm): the right-hand side is copied one column panel at a
//! time to contiguous rows (a tile row's columns are two loads) and each left-hand element is
//! broadcast once per tile row and step.
//! Every element sums its `k` products in order in one accumulator (`acc = fma(a, b, acc)`),
//! then is scaled and added to the output: the same arithmetic at both widths, so the result
//! depends neither on the tiling, nor on how callers split rows between threads, nor on the
//! CPU. `gemm_f32/aarch64.rs` does the same arithmetic in NEON. (The `gemm` crate, which has
//! no AVX-512 kernels on stable Rust, remains the path for other layouts and CPUs without
//! AVX2; its rows can change in the last bit with the number of rows.)

use super::{for_each_tile, Strided};
use std::arch::x86_64::*;

/// Which kernel [`matmul`] runs: zmm at the AVX-512 [kernel levels](crate::kernels::level),
/// ymm at the others where the CPU has AVX2 and FMA (a forced `avx2` level then benchmarks what
/// an AVX2 machine runs; both give the same bits).
pub(super) fn width() -> Option<Width> {
    use crate::kernels::KernelLevel;
    let level = crate::kernels::level();
    if matches!(level, KernelLevel::Avx512 | KernelLevel::Avx512Vnni)
        && is_x86_feature_detected!("avx512f")
    {
        Some(Width::Zmm)
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Some(Width::Ymm)
    } else {
        None
    }
}

/// The vector width of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    /// AVX2 + FMA, 8 lanes.
    Ymm,
    /// AVX-512F, 16 lanes.
    Zmm,
}

/// `dst[r, c] (+)= scale · Σ_k lhs[r, k] · rhs[k, c]` with `rhs.col_stride == 1`.
///
/// # Safety
/// The CPU has the features of `width` (as [`width`] reports them); the views are in bounds of
/// their slices (checked by `matmul_f32`) and `m, n, k > 0`.
pub(super) unsafe fn matmul(
    width: Width,
    dst: &mut [f32],
    ldc: usize,
    accumulate: bool,
    lhs: Strided,
    rhs: Strided,
    scale: f32,
) {
    debug_assert_eq!(rhs.col_stride, 1);
    match width {
        Width::Zmm => zmm::matmul(dst, ldc, accumulate, lhs, rhs, scale),
        Width::Ymm => ymm::matmul(dst, ldc, accumulate, lhs, rhs, scale),
    }
}

/// A tile's operands: its first left-hand element and the view (for its strides and depth),
/// the packed right-hand panel and its row stride, its first output element and row stride, the
/// columns it covers (1..=2 vectors), whether to add to the output, and the scale.
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

/// One width's tiled product: `$mr` rows × two vectors of `$lanes` columns.
macro_rules! tile_kernel {
    ($feat:literal, $lanes:literal, $mr:literal, $vf:ty, $lanes_mask:ident, $zero:ident,
     $set1:ident, $fmadd:ident, $mul:ident, $add:ident, $loadu:ident, $load:ident,
     $store:ident) => {
        use super::*;

        const NR: usize = 2 * $lanes;

        #[target_feature(enable = $feat)]
        pub(super) unsafe fn matmul(
            dst: &mut [f32],
            ldc: usize,
            accumulate: bool,
            lhs: Strided,
            rhs: Strided,
            scale: f32,
        ) {
            let c = dst.as_mut_ptr();
            for_each_tile::<NR>(lhs.rows, rhs, $mr, |r0, mr, panel, c0, nc| {
                let a = lhs.data.as_ptr().add(r0 * lhs.row_stride);
                let out = c.add(r0 * ldc + c0);
                tiles(
                    mr,
                    (a, lhs, panel.as_ptr(), NR, out, ldc, nc, accumulate, scale),
                );
            });
        }

        /// Dispatches `mr` (1..=MR) rows to the tile of that height.
        #[target_feature(enable = $feat)]
        unsafe fn tiles(mr: usize, args: TileArgs) {
            match mr {
                12 if $mr >= 12 => tile::<12>(args),
                11 if $mr >= 11 => tile::<11>(args),
                10 if $mr >= 10 => tile::<10>(args),
                9 if $mr >= 9 => tile::<9>(args),
                8 if $mr >= 8 => tile::<8>(args),
                7 if $mr >= 7 => tile::<7>(args),
                6 => tile::<6>(args),
                5 => tile::<5>(args),
                4 => tile::<4>(args),
                3 => tile::<3>(args),
                2 => tile::<2>(args),
                _ => tile::<1>(args),
            }
        }

        /// One `R × NR` tile; output columns past `nc` are neither read nor written (masked
        /// loads and stores touch no memory in masked-off lanes).
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn tile<const R: usize>(
            (a, lhs, b, ldb, out, ldc, nc, accumulate, scale): TileArgs,
        ) {
            let (m0, m1) = ($lanes_mask(nc, 0), $lanes_mask(nc, $lanes));
            let mut lo: [$vf; R] = [$zero(); R];
            let mut hi: [$vf; R] = [$zero(); R];
            for kk in 0..lhs.cols {
                // A packed row of NR columns (see `matmul` for those past the matrix).
                let row = b.add(kk * ldb);
                let b0 = $loadu(row);
                let b1 = $loadu(row.add($lanes));
                let ak = a.add(kk * lhs.col_stride);
                for r in 0..R {
                    let av = $set1(*ak.add(r * lhs.row_stride));
                    lo[r] = $fmadd(av, b0, lo[r]);
                    hi[r] = $fmadd(av, b1, hi[r]);
                }
            }
            let sv = $set1(scale);
            for r in 0..R {
                let o = out.add(r * ldc);
                let o1 = o.wrapping_add($lanes);
                let (mut v0, mut v1) = ($mul(lo[r], sv), $mul(hi[r], sv));
                if accumulate {
                    v0 = $add(v0, $load(o, m0));
                    v1 = $add(v1, $load(o1, m1));
                }
                $store(o, m0, v0);
                $store(o1, m1, v1);
            }
        }
    };
}

mod zmm {
    tile_kernel!(
        "avx512f",
        16,
        12,
        __m512,
        lanes_mask,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_mul_ps,
        _mm512_add_ps,
        _mm512_loadu_ps,
        load,
        store
    );

    /// The lanes of columns `from..nc` of a vector of columns starting at `from`.
    #[inline(always)]
    fn lanes_mask(nc: usize, from: usize) -> __mmask16 {
        let n = nc.saturating_sub(from).min(16);
        ((1u32 << n) - 1) as __mmask16
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load(p: *const f32, m: __mmask16) -> __m512 {
        _mm512_maskz_loadu_ps(m, p)
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store(p: *mut f32, m: __mmask16, v: __m512) {
        _mm512_mask_storeu_ps(p, m, v)
    }
}

mod ymm {
    // 12 accumulators, two right-hand vectors and a broadcast: 15 of 16 registers.
    tile_kernel!(
        "avx2,fma",
        8,
        6,
        __m256,
        lanes_mask,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_mul_ps,
        _mm256_add_ps,
        _mm256_loadu_ps,
        load,
        store
    );

    /// The lanes of columns `from..nc` of a vector of columns starting at `from` (all bits
    /// set in a lane that is loaded and stored).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn lanes_mask(nc: usize, from: usize) -> __m256i {
        let n = nc.saturating_sub(from).min(8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load(p: *const f32, m: __m256i) -> __m256 {
        _mm256_maskload_ps(p, m)
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn store(p: *mut f32, m: __m256i, v: __m256) {
        _mm256_maskstore_ps(p, m, v)
    }
}
