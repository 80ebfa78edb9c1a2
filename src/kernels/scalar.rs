//! Scalar reference kernels: the definition every SIMD kernel is tested against.

use crate::quant::{BlockQ4_0, BlockQ8_0, QK};
use half::{bf16, f16};

/// Σ w·x over Q8_0 weight blocks and Q8_0 activation blocks.
pub fn dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (bw, bx) in w.iter().zip(x) {
        let mut isum = 0i32;
        for j in 0..QK {
            isum += bw.qs[j] as i32 * bx.qs[j] as i32;
        }
        sum += isum as f32 * (bw.d.to_f32() * bx.d.to_f32());
    }
    sum
}

/// Σ w·x over Q4_0 weight blocks and Q8_0 activation blocks.
pub fn dot_q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (bw, bx) in w.iter().zip(x) {
        let mut isum = 0i32;
        for j in 0..QK / 2 {
            let lo = (bw.qs[j] & 0x0f) as i32 - 8;
            let hi = (bw.qs[j] >> 4) as i32 - 8;
            isum += lo * bx.qs[j] as i32 + hi * bx.qs[j + QK / 2] as i32;
        }
        sum += isum as f32 * (bw.d.to_f32() * bx.d.to_f32());
    }
    sum
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
    panel: None,
};
