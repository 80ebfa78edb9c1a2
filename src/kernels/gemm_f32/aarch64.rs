//! [`super::matmul_f32`] on aarch64 for a right-hand side whose rows are contiguous (the
//! attention's transposed keys and its values): NEON `6 × 16` tiles in 24 accumulators over
//! the x86 kernels' panels (`for_each_tile`), each left-hand element loaded once per tile row
//! and step as a broadcast.
//! The arithmetic of the x86 kernels (`gemm_f32/x86.rs`): every element sums its `k` products
//! in order in one accumulator (`fmla`, fused as x86's `vfmadd` is), then is scaled and added
//! to the output. So the result depends neither on the tiling nor on how callers split rows
//! between threads. (The `gemm` crate, used here before, could change a row's last bit with
//! the number of rows in the call.)

use super::{for_each_tile, Strided};
use std::arch::aarch64::*;

/// Columns of a tile: four vectors of 4 lanes.
const NR: usize = 16;
/// Rows of a full tile: 6 × 4 accumulators, 4 right-hand vectors and a broadcast fit the 32
/// vector registers.
const MR: usize = 6;

/// `dst[r, c] (+)= scale · Σ_k lhs[r, k] · rhs[k, c]` with `rhs.col_stride == 1`.
///
/// # Safety
/// The views are in bounds of their slices (checked by `matmul_f32`) and `m, n, k > 0`.
pub(super) unsafe fn matmul(
    dst: &mut [f32],
    ldc: usize,
    accumulate: bool,
    lhs: Strided,
    rhs: Strided,
    scale: f32,
) {
    debug_assert_eq!(rhs.col_stride, 1);
    let c = dst.as_mut_ptr();
    for_each_tile::<NR>(lhs.rows, rhs, MR, |r0, mr, panel, c0, nc| {
        // SAFETY: rows r0..r0 + mr of the left-hand view and of the output, columns
        // c0..c0 + nc of the output, are in bounds (checked by `matmul_f32`).
        unsafe {
            let a = lhs.data.as_ptr().add(r0 * lhs.row_stride);
            let out = c.add(r0 * ldc + c0);
            let tile = (a, lhs, panel.as_ptr(), out, ldc, nc, accumulate, scale);
            match mr {
                6 => tile_rows::<6>(tile),
                5 => tile_rows::<5>(tile),
                4 => tile_rows::<4>(tile),
                3 => tile_rows::<3>(tile),
                2 => tile_rows::<2>(tile),
                _ => tile_rows::<1>(tile),
            }
        }
    });
}

/// A tile's operands: its first left-hand element and the view (for its strides and depth),
/// the packed right-hand panel (rows of [`NR`]), its first output element and the output's
/// row stride, the columns it covers (1..=NR), whether to add to the output, and the scale.
type Tile<'a> = (
    *const f32,
    Strided<'a>,
    *const f32,
    *mut f32,
    usize,
    usize,
    bool,
    f32,
);

/// One `R × NR` tile; output columns past `nc` are neither read nor written.
///
/// # Safety
/// As [`matmul`], for this tile's rows and columns.
#[inline(always)]
unsafe fn tile_rows<const R: usize>((a, lhs, b, out, ldc, nc, accumulate, scale): Tile) {
    // SAFETY: NEON is part of every aarch64 target Rust builds for; the pointers address
    // the tile's elements, in bounds per the caller.
    unsafe {
        let mut acc = [[vdupq_n_f32(0.0); 4]; R];
        for kk in 0..lhs.cols {
            let row = b.add(kk * NR);
            let bv = [
                vld1q_f32(row),
                vld1q_f32(row.add(4)),
                vld1q_f32(row.add(8)),
                vld1q_f32(row.add(12)),
            ];
            let ak = a.add(kk * lhs.col_stride);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = vld1q_dup_f32(ak.add(r * lhs.row_stride));
                for (acc_rj, &bj) in acc_r.iter_mut().zip(&bv) {
                    *acc_rj = vfmaq_f32(*acc_rj, av, bj);
                }
            }
        }
        let sv = vdupq_n_f32(scale);
        for (r, acc_r) in acc.iter().enumerate() {
            let o = out.add(r * ldc);
            if nc == NR {
                for (j, &v) in acc_r.iter().enumerate() {
                    let mut v = vmulq_f32(v, sv);
                    if accumulate {
                        v = vaddq_f32(v, vld1q_f32(o.add(4 * j)));
                    }
                    vst1q_f32(o.add(4 * j), v);
                }
            } else {
                // The same multiply and add, element by element, for the columns that exist.
                let mut scaled = [0.0f32; NR];
                for (j, &v) in acc_r.iter().enumerate() {
                    vst1q_f32(scaled.as_mut_ptr().add(4 * j), vmulq_f32(v, sv));
                }
                for (col, &v) in scaled[..nc].iter().enumerate() {
                    let o = o.add(col);
                    *o = if accumulate { v + *o } else { v };
                }
            }
        }
    }
}
