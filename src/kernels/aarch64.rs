//! aarch64 kernels: Advanced SIMD (`smull` + `sadalp`) and the dot-product extension (`sdot`,
//! through inline assembly because `vdotq_s32` is not stable in Rust).
//!
//! NEON is part of the aarch64 baseline; the `dotprod` functions need the feature, and are only
//! reachable through the table [`kernels`] returns after `is_aarch64_feature_detected!`.

use super::{
    check_panel, check_quantize, KernelLevel, Kernels, Panel, PanelKernels, PanelRef, QActs,
};
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
    panel: Some(PanelKernels {
        rows: PANEL_ROWS,
        tokens: PANEL_TOKENS,
        q4_0: neon_panel_q4_0,
        // i16 sums of 8 products of up to 128 · 127 would overflow.
        q8_0: None,
        pack_q4_0: Panel::pack_q4_0,
        pack_q8_0: Panel::pack_q8_0,
        quantize: quantize_q8_0_panel,
    }),
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
    panel: Some(PanelKernels {
        rows: PANEL_ROWS,
        tokens: PANEL_TOKENS,
        q4_0: sdot_panel_q4_0,
        q8_0: Some(sdot_panel_q8_0),
        pack_q4_0: Panel::pack_q4_0,
        pack_q8_0: Panel::pack_q8_0,
        quantize: quantize_q8_0_panel,
    }),
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

/// [`crate::quant::quantize_row_q8_0`], also writing what the panel kernels read per block
/// (see `QActs`): the scale as f32 and `-offset · Σ q`.
fn quantize_q8_0_panel(
    x: &[f32],
    out: &mut [BlockQ8_0],
    d: &mut [f32],
    sum: &mut [i32],
    offset: i32,
) {
    check_quantize(x, out, Some((d, sum)));
    crate::quant::quantize_row_q8_0(x, out);
    for ((blk, d), sum) in out.iter().zip(d).zip(sum) {
        *d = blk.d.to_f32();
        // SAFETY: NEON is part of the aarch64 baseline.
        let s = unsafe {
            let (lo, hi) = q8_values(&blk.qs);
            vaddlvq_s8(lo) as i32 + vaddlvq_s8(hi) as i32
        };
        *sum = -offset * s;
    }
}

/// Rows of the panels: two vectors of four i32 lanes.
const PANEL_ROWS: usize = 8;
/// Most tokens per panel call: 4 tokens' sums (8 vectors of i32 for `sdot`, 16 of i16 for
/// NEON), their 8 f32 sums and the operands fit the 32 vector registers.
const PANEL_TOKENS: usize = 4;

/// A safe panel entry: checks the call, then runs `$inner::<nt>` (1..=4 tokens).
macro_rules! panel_entry {
    ($name:ident => $inner:ident $(, $flip:literal)?) => {
        fn $name(p: &PanelRef, x: &QActs, t0: usize, nt: usize, out: &mut [f32]) {
            check_panel(p, x, t0, nt, out, PANEL_ROWS, PANEL_TOKENS);
            // SAFETY: the table holding this fn is only handed out after feature detection
            // (NEON is baseline); bounds checked by check_panel.
            unsafe {
                match nt {
                    1 => $inner::<1 $(, $flip)?>(p, x, t0, out),
                    2 => $inner::<2 $(, $flip)?>(p, x, t0, out),
                    3 => $inner::<3 $(, $flip)?>(p, x, t0, out),
                    _ => $inner::<4 $(, $flip)?>(p, x, t0, out),
                }
            }
        }
    };
}

panel_entry!(sdot_panel_q4_0 => sdot_panel_impl, false);
panel_entry!(sdot_panel_q8_0 => sdot_panel_impl, true);
panel_entry!(neon_panel_q4_0 => neon_panel_impl);

/// What the aarch64 panel kernels share around their integer work: for every block `b`,
/// `block_sums(b)` gives each token's exact sums of the 8 rows (two halves, offset term
/// included), scaled into f32 in the reference's order, `fma(float(isum), d_w · d_x, acc)`;
/// token `t`'s 8 rows are then stored at `out[t * 8..]`.
#[inline(always)]
unsafe fn panel_blocks<const T: usize>(
    p: &PanelRef,
    x: &QActs,
    t0: usize,
    out: &mut [f32],
    block_sums: impl Fn(usize) -> ([int32x4_t; T], [int32x4_t; T]),
) {
    let bpr = p.bpr;
    let wd = p.d.as_ptr();
    let xd = x.d.as_ptr().add(t0 * bpr);
    let mut acc_lo = [vdupq_n_f32(0.0); T];
    let mut acc_hi = acc_lo;
    for b in 0..bpr {
        let (lo, hi) = block_sums(b);
        let dw = wd.add(b * PANEL_ROWS);
        let (dw_lo, dw_hi) = (vld1q_f32(dw), vld1q_f32(dw.add(4)));
        for t in 0..T {
            let dx = *xd.add(t * bpr + b);
            let (s_lo, s_hi) = (vmulq_n_f32(dw_lo, dx), vmulq_n_f32(dw_hi, dx));
            acc_lo[t] = vfmaq_f32(acc_lo[t], vcvtq_f32_s32(lo[t]), s_lo);
            acc_hi[t] = vfmaq_f32(acc_hi[t], vcvtq_f32_s32(hi[t]), s_hi);
        }
    }
    for t in 0..T {
        vst1q_f32(out.as_mut_ptr().add(t * PANEL_ROWS), acc_lo[t]);
        vst1q_f32(out.as_mut_ptr().add(t * PANEL_ROWS + 4), acc_hi[t]);
    }
}

/// The 4 bytes of group `k` of token `t`'s block `b` of x, in every 32-bit lane.
#[inline(always)]
unsafe fn x_group(xq: *const BlockQ8_0, bpr: usize, t: usize, b: usize, k: usize) -> int8x16_t {
    // Blocks are 34 bytes: the group is only 2-byte aligned, so it is read unaligned (one
    // `ldr` + `dup`, or an `ld1r`).
    let p = (*xq.add(t * bpr + b)).qs.as_ptr().add(4 * k);
    vreinterpretq_s8_s32(vdupq_n_s32((p as *const i32).read_unaligned()))
}

/// The NEON panel micro-kernel (Q4_0 only; see [`Panel`]): 8 rows × `T ≤ 4` tokens with
/// widening multiply-adds. Each (token, quarter of rows) keeps i16 sums per byte position for a
/// whole block (8 groups of nibble 0..=15 times |x| ≤ 127: at most 15240, exact), then two
/// pairwise adds give each row's block sum, started at the offset term and scaled as the
/// reference does.
#[inline(always)]
unsafe fn neon_panel_impl<const T: usize>(p: &PanelRef, x: &QActs, t0: usize, out: &mut [f32]) {
    let bpr = p.bpr;
    let wq = p.qs.as_ptr() as *const i8;
    let xq = x.q.as_ptr().add(t0 * bpr);
    let xs = x.sum.as_ptr().add(t0 * bpr);
    panel_blocks::<T>(p, x, t0, out, |b| {
        // [t][q]: rows 2q, 2q + 1, four byte positions each.
        let mut s = [[vdupq_n_s16(0); 4]; T];
        for k in 0..8 {
            let group = wq.add((b * 8 + k) * PANEL_ROWS * 4);
            let (w0, w1) = (vld1q_s8(group), vld1q_s8(group.add(16)));
            for (t, s) in s.iter_mut().enumerate() {
                let xv = x_group(xq, bpr, t, b, k);
                s[0] = vmlal_s8(s[0], vget_low_s8(w0), vget_low_s8(xv));
                s[1] = vmlal_high_s8(s[1], w0, xv);
                s[2] = vmlal_s8(s[2], vget_low_s8(w1), vget_low_s8(xv));
                s[3] = vmlal_high_s8(s[3], w1, xv);
            }
        }
        let rows = |s: &[int16x8_t; 4], t: usize, h: usize| {
            let pairs = vpaddq_s32(vpaddlq_s16(s[2 * h]), vpaddlq_s16(s[2 * h + 1]));
            vaddq_s32(pairs, vdupq_n_s32(*xs.add(t * bpr + b)))
        };
        (
            std::array::from_fn(|t| rows(&s[t], t, 0)),
            std::array::from_fn(|t| rows(&s[t], t, 1)),
        )
    });
}

/// `acc += 4-byte dot products of w with bytes 4·LANE..4·LANE + 4 of x` in every lane
/// (`sdot` by element).
#[inline(always)]
unsafe fn sdot_lane<const LANE: i32>(mut acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    asm!(
        "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{lane}]",
        acc = inout(vreg) acc,
        w = in(vreg) w,
        x = in(vreg) x,
        lane = const LANE,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// One 4-byte group of a panel block (`group`: 4 bytes of each of 8 rows) into every token's
/// two halves of i32 sums, against lane `LANE` of each token's x vector. Q8_0 panels (`FLIP`)
/// hold q + 128: one `eor` per vector, shared by the tokens, gives q back for the signed `sdot`.
#[inline(always)]
unsafe fn sdot_group<const T: usize, const LANE: i32, const FLIP: bool>(
    lo: &mut [int32x4_t; T],
    hi: &mut [int32x4_t; T],
    group: *const u8,
    x: &[int8x16_t; T],
) {
    let (mut w_lo, mut w_hi) = (vld1q_u8(group), vld1q_u8(group.add(16)));
    if FLIP {
        w_lo = veorq_u8(w_lo, vdupq_n_u8(0x80));
        w_hi = veorq_u8(w_hi, vdupq_n_u8(0x80));
    }
    let (w_lo, w_hi) = (vreinterpretq_s8_u8(w_lo), vreinterpretq_s8_u8(w_hi));
    for t in 0..T {
        lo[t] = sdot_lane::<LANE>(lo[t], w_lo, x[t]);
        hi[t] = sdot_lane::<LANE>(hi[t], w_hi, x[t]);
    }
}

/// The panel micro-kernel (see [`Panel`]) with `sdot` by element: 8 rows (two vectors) × `T ≤ 4`
/// tokens; each weight vector is loaded once for the `T` tokens and each token's block of x once
/// for the 8 rows. Per block, each (half, token) sum starts at the offset term (Q4_0: nibbles
/// 0..=15 are valid signed bytes) or at zero (Q8_0, `FLIP`), accumulates 8 groups in i32 (exact),
/// then is scaled into f32 in the reference's order: `fma(float(isum), d_w · d_x, acc)`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_panel_impl<const T: usize, const FLIP: bool>(
    p: &PanelRef,
    x: &QActs,
    t0: usize,
    out: &mut [f32],
) {
    let bpr = p.bpr;
    let wq = p.qs.as_ptr();
    let xq = x.q.as_ptr().add(t0 * bpr);
    let xs = x.sum.as_ptr().add(t0 * bpr);
    panel_blocks::<T>(p, x, t0, out, |b| {
        let mut lo: [int32x4_t; T] =
            std::array::from_fn(|t| vdupq_n_s32(if FLIP { 0 } else { *xs.add(t * bpr + b) }));
        let mut hi = lo;
        // Elements 0..16 (groups 0..4) and 16..32 (groups 4..8) of each token's block.
        let x_lo: [int8x16_t; T] =
            std::array::from_fn(|t| vld1q_s8((*xq.add(t * bpr + b)).qs.as_ptr()));
        let x_hi: [int8x16_t; T] =
            std::array::from_fn(|t| vld1q_s8((*xq.add(t * bpr + b)).qs.as_ptr().add(16)));
        let group = |k: usize| wq.add((b * 8 + k) * PANEL_ROWS * 4);
        sdot_group::<T, 0, FLIP>(&mut lo, &mut hi, group(0), &x_lo);
        sdot_group::<T, 1, FLIP>(&mut lo, &mut hi, group(1), &x_lo);
        sdot_group::<T, 2, FLIP>(&mut lo, &mut hi, group(2), &x_lo);
        sdot_group::<T, 3, FLIP>(&mut lo, &mut hi, group(3), &x_lo);
        sdot_group::<T, 0, FLIP>(&mut lo, &mut hi, group(4), &x_hi);
        sdot_group::<T, 1, FLIP>(&mut lo, &mut hi, group(5), &x_hi);
        sdot_group::<T, 2, FLIP>(&mut lo, &mut hi, group(6), &x_hi);
        sdot_group::<T, 3, FLIP>(&mut lo, &mut hi, group(7), &x_hi);
        (lo, hi)
    });
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
