//! Scalar reference kernels: the definition every SIMD kernel is tested against.

use crate::quant::{BlockQ4_0, BlockQ8_0, QK};
use half::{bf16, f16};

/// Exact integer Σ over one Q8_0 × Q8_0 block.
fn isum_q8_0(bw: &BlockQ8_0, bx: &BlockQ8_0) -> i32 {
    (0..QK).map(|j| bw.qs[j] as i32 * bx.qs[j] as i32).sum()
}

/// Exact integer Σ over one Q4_0 × Q8_0 block.
fn isum_q4_0(bw: &BlockQ4_0, bx: &BlockQ8_0) -> i32 {
    (0..QK / 2)
        .map(|j| {
            let lo = (bw.qs[j] & 0x0f) as i32 - 8;
            let hi = (bw.qs[j] >> 4) as i32 - 8;
            lo * bx.qs[j] as i32 + hi * bx.qs[j + QK / 2] as i32
        })
        .sum()
}

// Two summation orders define every quantized kernel, so that each level returns the same
// bits: each block's exact integer sum `isum` is scaled by `d_w * d_x` (one rounding), and
// blocks are added either
// - one by one in order, `sum = fma(isum as f32, d_w * d_x, sum)` (`*_seq`: the encoder's
//   panel order; one fused multiply-add where the panel kernels' epilogue shares two ports
//   with the integer multiplies), or
// - `isum as f32 * (d_w * d_x)` into lane `b % 8`, the lanes then combined as
//   [`combine_lanes`] says (the decoder's order, which SIMD kernels can follow at full width).

/// How the eight lanes of the decoder order combine (what an x86 horizontal add does).
pub fn combine_lanes(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

fn dot_lanes<B>(
    w: &[B],
    x: &[BlockQ8_0],
    wd: impl Fn(&B) -> f16,
    isum: impl Fn(&B, &BlockQ8_0) -> i32,
) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    let mut lanes = [0.0f32; 8];
    for (b, (bw, bx)) in w.iter().zip(x).enumerate() {
        lanes[b % 8] += isum(bw, bx) as f32 * (wd(bw).to_f32() * bx.d.to_f32());
    }
    combine_lanes(lanes)
}

fn dot_seq<B>(
    w: &[B],
    x: &[BlockQ8_0],
    wd: impl Fn(&B) -> f16,
    isum: impl Fn(&B, &BlockQ8_0) -> i32,
) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (bw, bx) in w.iter().zip(x) {
        // `mul_add` rounds once on every target (a libm call where the CPU lacks FMA).
        sum = (isum(bw, bx) as f32).mul_add(wd(bw).to_f32() * bx.d.to_f32(), sum);
    }
    sum
}

/// Σ w·x over Q8_0 weight blocks and Q8_0 activation blocks, decoder (8-lane) order.
pub fn dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    dot_lanes(w, x, |b| b.d, isum_q8_0)
}

/// Σ w·x over Q4_0 weight blocks and Q8_0 activation blocks, decoder (8-lane) order.
pub fn dot_q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    dot_lanes(w, x, |b| b.d, isum_q4_0)
}

/// [`dot_q8_0_q8_0`] in sequential (encoder panel) order.
pub fn dot_q8_0_q8_0_seq(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    dot_seq(w, x, |b| b.d, isum_q8_0)
}

/// [`dot_q4_0_q8_0`] in sequential (encoder panel) order.
pub fn dot_q4_0_q8_0_seq(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    dot_seq(w, x, |b| b.d, isum_q4_0)
}

/// Σ w·x in f32.
pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

/// Σ w·x with f16 weights.
pub fn dot_f16_f32(w: &[f16], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a.to_f32() * b).sum()
}

/// Σ w·x with bf16 weights.
pub fn dot_bf16_f32(w: &[bf16], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a.to_f32() * b).sum()
}

/// The scalar level's table.
pub(crate) static KERNELS: super::Kernels = super::Kernels {
    dot_f32,
    dot_f16: dot_f16_f32,
    dot_bf16: dot_bf16_f32,
    dot_q8_0: dot_q8_0_q8_0,
    dot_q4_0: dot_q4_0_q8_0,
    dot_q8_0_seq: dot_q8_0_q8_0_seq,
    dot_q4_0_seq: dot_q4_0_q8_0_seq,
    rows_q8_0: None,
    rows_q4_0: None,
    quantize_q8_0: crate::quant::quantize_row_q8_0,
    panel: None,
};
