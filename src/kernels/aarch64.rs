//! aarch64 kernels: Advanced SIMD (`smull` + `sadalp`) and the dot-product extension (`sdot`,
//! through inline assembly because `vdotq_s32` is not stable in Rust).
//!
//! NEON is part of the aarch64 baseline; the `dotprod` functions need the feature, and are only
//! reachable through the table [`kernels`] returns after `is_aarch64_feature_detected!`.

use super::{KernelLevel, Kernels};
use crate::quant::{BlockQ4_0, BlockQ8_0};
use half::{bf16, f16};
use std::arch::aarch64::*;
use std::arch::asm;

/// The table of `level`, if it is an aarch64 level this CPU supports.
pub(super) fn kernels(level: KernelLevel) -> Option<&'static Kernels> {
    if !level.is_supported() {
        return None;
    }
    match level {
        KernelLevel::Neon => Some(&NEON),
        KernelLevel::Dotprod => Some(&DOTPROD),
        _ => None,
    }
}

static NEON: Kernels = Kernels {
    dot_f32,
    dot_f16,
    dot_bf16,
    dot_q8_0: neon_dot_q8_0,
    dot_q4_0: neon_dot_q4_0,
    // aarch64 kernels agree with the scalar ones to rounding, not bit for bit.
    dot_q8_0_seq: neon_dot_q8_0,
    dot_q4_0_seq: neon_dot_q4_0,
    rows_q8_0: None,
    rows_q4_0: None,
    quantize_q8_0: crate::quant::quantize_row_q8_0,
    panel: None,
};

static DOTPROD: Kernels = Kernels {
    dot_f32,
    dot_f16,
    dot_bf16,
    dot_q8_0: sdot_dot_q8_0,
    dot_q4_0: sdot_dot_q4_0,
    dot_q8_0_seq: sdot_dot_q8_0,
    dot_q4_0_seq: sdot_dot_q4_0,
    rows_q8_0: None,
    rows_q4_0: None,
    quantize_q8_0: crate::quant::quantize_row_q8_0,
    panel: None,
};

/// The 32 nibbles of a Q4_0 block as signed values q - 8, elements 0..16 and 16..32.
#[inline(always)]
unsafe fn q4_values(qs: &[u8; 16]) -> (int8x16_t, int8x16_t) {
    let v = vld1q_u8(qs.as_ptr());
    let eight = vdupq_n_s8(8);
    let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), eight);
    let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)), eight);
    (lo, hi)
}

#[inline(always)]
unsafe fn q8_values(qs: &[i8; 32]) -> (int8x16_t, int8x16_t) {
    (vld1q_s8(qs.as_ptr()), vld1q_s8(qs.as_ptr().add(16)))
}

/// Σ over blocks of `block(w, x)` (4 i32 partial sums) · d_w · d_x, two accumulators.
#[inline(always)]
unsafe fn dot_blocks<B>(
    w: &[B],
    x: &[BlockQ8_0],
    wd: impl Fn(&B) -> f16,
    block: impl Fn(&B, &BlockQ8_0) -> int32x4_t,
) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut acc0 = vdupq_n_f32(0.0);
    let mut acc1 = vdupq_n_f32(0.0);
    let mut w2 = w.chunks_exact(2);
    let mut x2 = x.chunks_exact(2);
    for (wp, xp) in (&mut w2).zip(&mut x2) {
        let p0 = vcvtq_f32_s32(block(&wp[0], &xp[0]));
        let p1 = vcvtq_f32_s32(block(&wp[1], &xp[1]));
        acc0 = vfmaq_n_f32(acc0, p0, wd(&wp[0]).to_f32() * xp[0].d.to_f32());
        acc1 = vfmaq_n_f32(acc1, p1, wd(&wp[1]).to_f32() * xp[1].d.to_f32());
    }
    if let (Some(wb), Some(xb)) = (w2.remainder().first(), x2.remainder().first()) {
        let p = vcvtq_f32_s32(block(wb, xb));
        acc0 = vfmaq_n_f32(acc0, p, wd(wb).to_f32() * xb.d.to_f32());
    }
    vaddvq_f32(vaddq_f32(acc0, acc1))
}

/// Σ a·b over 32 signed bytes with widening multiplies (no overflow: |a·b| ≤ 2^14).
#[inline(always)]
unsafe fn mul_sum_neon(a: (int8x16_t, int8x16_t), b: (int8x16_t, int8x16_t)) -> int32x4_t {
    let mut p = vdupq_n_s32(0);
    p = vpadalq_s16(p, vmull_s8(vget_low_s8(a.0), vget_low_s8(b.0)));
    p = vpadalq_s16(p, vmull_high_s8(a.0, b.0));
    p = vpadalq_s16(p, vmull_s8(vget_low_s8(a.1), vget_low_s8(b.1)));
    vpadalq_s16(p, vmull_high_s8(a.1, b.1))
}

/// `acc += 4-byte dot products of a and b` (the `sdot` instruction).
#[inline(always)]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

fn neon_dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    // SAFETY: NEON is part of the aarch64 baseline; lengths are checked in dot_blocks.
    unsafe {
        dot_blocks(
            w,
            x,
            |b| b.d,
            |bw, bx| mul_sum_neon(q8_values(&bw.qs), q8_values(&bx.qs)),
        )
    }
}

fn neon_dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    // SAFETY: NEON is part of the aarch64 baseline; lengths are checked in dot_blocks.
    unsafe {
        dot_blocks(
            w,
            x,
            |b| b.d,
            |bw, bx| mul_sum_neon(q4_values(&bw.qs), q8_values(&bx.qs)),
        )
    }
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_q8_0_impl(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    dot_blocks(
        w,
        x,
        |b| b.d,
        |bw, bx| {
            let (a, b) = (q8_values(&bw.qs), q8_values(&bx.qs));
            sdot(sdot(vdupq_n_s32(0), a.0, b.0), a.1, b.1)
        },
    )
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_q4_0_impl(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    dot_blocks(
        w,
        x,
        |b| b.d,
        |bw, bx| {
            let (a, b) = (q4_values(&bw.qs), q8_values(&bx.qs));
            sdot(sdot(vdupq_n_s32(0), a.0, b.0), a.1, b.1)
        },
    )
}

fn sdot_dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    // SAFETY: the dotprod table is only handed out after feature detection.
    unsafe { sdot_q8_0_impl(w, x) }
}

fn sdot_dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    // SAFETY: the dotprod table is only handed out after feature detection.
    unsafe { sdot_q4_0_impl(w, x) }
}

/// Σ w·x with 4 × 4 f32 accumulators; `load` turns 4 weights into f32.
#[inline(always)]
unsafe fn dot_f<T: Copy>(
    w: &[T],
    x: &[f32],
    load: impl Fn(*const T) -> float32x4_t,
    tail: impl Fn(T) -> f32,
) -> f32 {
    assert_eq!(w.len(), x.len());
    let n = w.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (j, a) in acc.iter_mut().enumerate() {
            let o = i + 4 * j;
            *a = vfmaq_f32(*a, load(wp.add(o)), vld1q_f32(xp.add(o)));
        }
        i += 16;
    }
    while i + 4 <= n {
        acc[0] = vfmaq_f32(acc[0], load(wp.add(i)), vld1q_f32(xp.add(i)));
        i += 4;
    }
    let mut s = vaddvq_f32(vaddq_f32(
        vaddq_f32(acc[0], acc[1]),
        vaddq_f32(acc[2], acc[3]),
    ));
    for j in i..n {
        s += tail(w[j]) * x[j];
    }
    s
}

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    // SAFETY: NEON is baseline; dot_f checks the lengths and reads only whole in-bounds lanes.
    unsafe { dot_f(w, x, |p| vld1q_f32(p), |v| v) }
}

fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    // SAFETY: NEON is baseline; dot_f checks the lengths and reads only whole in-bounds lanes.
    unsafe {
        dot_f(
            w,
            x,
            |p| {
                let h = vld1_u16(p as *const u16);
                let out: float32x4_t;
                // fcvtl (half -> single) is base ARMv8 FP; the intrinsic needs unstable f16 types.
                asm!(
                    "fcvtl {o:v}.4s, {h:v}.4h",
                    o = out(vreg) out,
                    h = in(vreg) h,
                    options(pure, nomem, nostack, preserves_flags)
                );
                out
            },
            |v| v.to_f32(),
        )
    }
}

fn dot_bf16(w: &[bf16], x: &[f32]) -> f32 {
    // SAFETY: NEON is baseline; dot_f checks the lengths and reads only whole in-bounds lanes.
    unsafe {
        dot_f(
            w,
            x,
            |p| vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p as *const u16))),
            |v| v.to_f32(),
        )
    }
}

/// The int8 peak loop of `level` (see `ceiling`): 8 independent accumulators; returns MACs.
pub(super) fn int8_peak_loop(level: KernelLevel, iters: u64) -> Option<u64> {
    if !level.is_supported() {
        return None;
    }
    let n = iters / 8;
    // SAFETY: the level (and so the loop's features) was checked just above.
    unsafe {
        match level {
            KernelLevel::Dotprod => Some(peak_sdot(n) * 16 * 8),
            KernelLevel::Neon => Some(peak_neon(n) * 8 * 8),
            _ => None,
        }
    }
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn peak_sdot(n: u64) -> u64 {
    let a = vdupq_n_s8(std::hint::black_box(3));
    let b = vdupq_n_s8(std::hint::black_box(5));
    let mut acc = [vdupq_n_s32(0); 8];
    for _ in 0..n {
        for x in acc.iter_mut() {
            *x = sdot(*x, a, b);
        }
    }
    std::hint::black_box(acc);
    n
}

unsafe fn peak_neon(n: u64) -> u64 {
    let a = vdupq_n_s8(std::hint::black_box(3));
    let b = vdupq_n_s8(std::hint::black_box(5));
    let mut acc = [vdupq_n_s32(0); 8];
    for _ in 0..n {
        for x in acc.iter_mut() {
            // Not `pure`: the product must not be hoisted out of the loop.
            asm!(
                "smull {t:v}.8h, {a:v}.8b, {b:v}.8b",
                "sadalp {acc:v}.4s, {t:v}.8h",
                acc = inout(vreg) *x,
                a = in(vreg) a,
                b = in(vreg) b,
                t = out(vreg) _,
                options(nomem, nostack, preserves_flags)
            );
        }
    }
    std::hint::black_box(acc);
    n
}
