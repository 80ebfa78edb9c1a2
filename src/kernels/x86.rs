//! x86-64 kernels: AVX2 + FMA + F16C, AVX-512 F/BW/VL, AVX-512 VNNI.
//!
//! Every `unsafe fn` here needs the CPU features named in its `#[target_feature]` and inputs
//! whose bounds its safe wrapper has checked. The wrappers are reachable only through the tables
//! [`kernels`] returns, and it returns a table only for a level the CPU supports.

use super::{
    check_panel, check_quantize, KernelLevel, Kernels, Panel, PanelKernels, PanelRef, QActs,
};
use crate::quant::{BlockQ4_0, BlockQ8_0};
use half::{bf16, f16};
use std::arch::x86_64::*;

/// The table of `level`, if it is an x86 level this CPU supports.
pub(super) fn kernels(level: KernelLevel) -> Option<&'static Kernels> {
    if !level.is_supported() {
        return None;
    }
    match level {
        KernelLevel::Avx2 => Some(&AVX2),
        KernelLevel::Avx512 => Some(&AVX512),
        KernelLevel::Avx512Vnni => Some(&AVX512_VNNI),
        _ => None,
    }
}

static AVX2: Kernels = Kernels {
    dot_f32: avx2::dot_f32,
    dot_f16: avx2::dot_f16,
    dot_bf16: avx2::dot_bf16,
    dot_q8_0: avx2::dot_q8_0,
    dot_q4_0: avx2::dot_q4_0,
    dot_q8_0_seq: avx2::dot_q8_0_seq,
    dot_q4_0_seq: avx2::dot_q4_0_seq,
    rows_q8_0: Some(avx2::rows_q8_0),
    rows_q4_0: Some(avx2::rows_q4_0),
    quantize_q8_0,
    panel: Some(PanelKernels {
        rows: 16,
        tokens: 2,
        q4_0: avx2::panel_q4_0,
        // maddubs would saturate on 255 · 127 · 2.
        q8_0: None,
        pack_q4_0: pack_q4_0_ymm,
        pack_q8_0: pack_q8_0_ymm,
        quantize: quantize_q8_0_panel,
    }),
};

static AVX512: Kernels = Kernels {
    dot_f32: avx512::dot_f32,
    dot_f16: avx512::dot_f16,
    dot_bf16: avx512::dot_bf16,
    // The one-row quantized dots are 256-bit code; AVX-512 CPUs run AVX2's.
    dot_q8_0: avx2::dot_q8_0,
    dot_q4_0: avx2::dot_q4_0,
    dot_q8_0_seq: avx2::dot_q8_0_seq,
    dot_q4_0_seq: avx2::dot_q4_0_seq,
    rows_q8_0: Some(avx2::rows_q8_0),
    rows_q4_0: Some(avx2::rows_q4_0),
    quantize_q8_0: quantize_q8_0_zmm,
    panel: Some(PanelKernels {
        rows: 32,
        tokens: 4,
        q4_0: avx512::panel_q4_0,
        q8_0: None,
        pack_q4_0: pack_q4_0_zmm,
        pack_q8_0: pack_q8_0_zmm,
        quantize: quantize_q8_0_panel_zmm,
    }),
};

static AVX512_VNNI: Kernels = Kernels {
    dot_f32: avx512::dot_f32,
    dot_f16: avx512::dot_f16,
    dot_bf16: avx512::dot_bf16,
    dot_q8_0: vnni::dot_q8_0,
    dot_q4_0: vnni::dot_q4_0,
    dot_q8_0_seq: vnni::dot_q8_0_seq,
    dot_q4_0_seq: vnni::dot_q4_0_seq,
    rows_q8_0: Some(vnni::rows_q8_0),
    rows_q4_0: Some(vnni::rows_q4_0),
    quantize_q8_0: quantize_q8_0_zmm,
    panel: Some(PanelKernels {
        rows: 32,
        tokens: 6,
        q4_0: vnni::panel_q4_0,
        q8_0: Some(vnni::panel_q8_0),
        pack_q4_0: pack_q4_0_zmm,
        pack_q8_0: pack_q8_0_zmm,
        quantize: quantize_q8_0_panel_zmm,
    }),
};

/// Packs a panel of Q4_0 rows (see `Panel`) at AVX2 levels; a full panel (a multiple of 8
/// rows) by transposing 8 rows at a time: each row's 16 quant bytes of a block are one load, and
/// a 4-byte-group transpose of the rows yields groups `j` (low nibbles) and `j + 4` (high
/// nibbles) of every row at once. Partial panels take the generic path.
fn pack_q4_0_ymm(p: &mut Panel, rows: usize, bpr: usize, w: &[BlockQ4_0]) {
    let simd = pack_transposed_8::<BlockQ4_0, true> as PackFn<BlockQ4_0>;
    pack_with(
        p,
        (rows, bpr, w),
        Panel::Q4_0_OFFSET,
        Panel::pack_q4_0,
        (simd, 8),
    )
}

/// [`pack_q4_0_ymm`] at AVX-512 levels, 16 rows at a time.
fn pack_q4_0_zmm(p: &mut Panel, rows: usize, bpr: usize, w: &[BlockQ4_0]) {
    let simd = pack_transposed_16::<BlockQ4_0, true> as PackFn<BlockQ4_0>;
    pack_with(
        p,
        (rows, bpr, w),
        Panel::Q4_0_OFFSET,
        Panel::pack_q4_0,
        (simd, 16),
    )
}

/// [`pack_q4_0_ymm`] for Q8_0 rows: quant bytes 0..16 and 16..32 transposed apart, biased by 128.
fn pack_q8_0_ymm(p: &mut Panel, rows: usize, bpr: usize, w: &[BlockQ8_0]) {
    let simd = pack_transposed_8::<BlockQ8_0, false> as PackFn<BlockQ8_0>;
    pack_with(
        p,
        (rows, bpr, w),
        Panel::Q8_0_OFFSET,
        Panel::pack_q8_0,
        (simd, 8),
    )
}

/// [`pack_q8_0_ymm`] at AVX-512 levels, 16 rows at a time.
fn pack_q8_0_zmm(p: &mut Panel, rows: usize, bpr: usize, w: &[BlockQ8_0]) {
    let simd = pack_transposed_16::<BlockQ8_0, false> as PackFn<BlockQ8_0>;
    pack_with(
        p,
        (rows, bpr, w),
        Panel::Q8_0_OFFSET,
        Panel::pack_q8_0,
        (simd, 16),
    )
}

/// A transposing packer of one width: `(panel, blocks per row, full panel of rows)`.
type PackFn<B> = unsafe fn(&mut Panel, usize, &[B]);

/// A full panel (a multiple of the packer's width of rows) through the transposing packer
/// `simd`, a partial one through `generic`.
fn pack_with<B>(
    p: &mut Panel,
    (rows, bpr, w): (usize, usize, &[B]),
    offset: i32,
    generic: fn(&mut Panel, usize, usize, &[B]),
    (simd, width): (PackFn<B>, usize),
) {
    if w.len() != rows * bpr || rows == 0 || rows % width != 0 {
        return generic(p, rows, bpr, w);
    }
    p.reset(rows, bpr, offset, rows);
    // SAFETY: the 8-row packer needs AVX2 (every x86 level) and the 16-row one is only in the
    // AVX-512 levels' tables (handed out after feature detection); `w` holds `rows` rows of
    // `bpr` blocks and the panel was sized for them just above.
    unsafe { simd(p, bpr, w) }
}

/// Both block types start with the f16 scale; the quants follow at byte 2.
const QS_OFFSET: usize = 2;

/// `out[j]` = 4-byte group `j` of rows 0..16, from 16 rows of 4 groups.
#[inline(always)]
unsafe fn transpose_16x4(r: [__m128i; 16]) -> [__m512i; 4] {
    let quad = |i: usize| {
        let z = _mm512_castsi128_si512(r[i]);
        let z = _mm512_inserti32x4::<1>(z, r[i + 1]);
        let z = _mm512_inserti32x4::<2>(z, r[i + 2]);
        _mm512_inserti32x4::<3>(z, r[i + 3])
    };
    // quad(i): element 4k + j = group j of row i + k.
    let (a, b, c, d) = (quad(0), quad(4), quad(8), quad(12));
    // Groups 0 and 1 (2 and 3) of 8 rows: [g of rows 0..8 | g + 1 of rows 0..8].
    let even = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    let odd = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
    let (ab01, cd01) = (
        _mm512_permutex2var_epi32(a, even, b),
        _mm512_permutex2var_epi32(c, even, d),
    );
    let (ab23, cd23) = (
        _mm512_permutex2var_epi32(a, odd, b),
        _mm512_permutex2var_epi32(c, odd, d),
    );
    // Low 256 bits of both (rows 0..8, rows 8..16), then the high 256 bits.
    [
        _mm512_shuffle_i64x2::<0b01_00_01_00>(ab01, cd01),
        _mm512_shuffle_i64x2::<0b11_10_11_10>(ab01, cd01),
        _mm512_shuffle_i64x2::<0b01_00_01_00>(ab23, cd23),
        _mm512_shuffle_i64x2::<0b11_10_11_10>(ab23, cd23),
    ]
}

/// `out[j]` = 4-byte group `j` of rows 0..8, from 8 rows of 4 groups.
#[inline(always)]
unsafe fn transpose_8x4(r: [__m128i; 8]) -> [__m256i; 4] {
    // 128-bit lane 0 holds rows 0..4, lane 1 rows 4..8; then a 4 × 4 transpose per lane.
    let pair = |i: usize| _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(r[i]), r[i + 4]);
    let (a, b, c, d) = (pair(0), pair(1), pair(2), pair(3));
    let (t0, t1) = (_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    let (t2, t3) = (_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
    [
        _mm256_unpacklo_epi64(t0, t2),
        _mm256_unpackhi_epi64(t0, t2),
        _mm256_unpacklo_epi64(t1, t3),
        _mm256_unpackhi_epi64(t1, t3),
    ]
}

/// Writes the f32 scales of block `blk` of 16 rows `row_bytes` apart to `d`.
#[inline(always)]
unsafe fn scales_16(blk: *const u8, row_bytes: usize, d: *mut f32) {
    // Offsets up to 15 · row_bytes: far below i32::MAX for any real row length.
    let rows = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(row_bytes as i32),
    );
    let scales = _mm512_i32gather_epi32::<1>(rows, blk as *const _);
    _mm512_storeu_ps(d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(scales)));
}

/// [`scales_16`] for 8 rows.
#[inline(always)]
unsafe fn scales_8(blk: *const u8, row_bytes: usize, d: *mut f32) {
    let rows = _mm256_mullo_epi32(
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        _mm256_set1_epi32(row_bytes as i32),
    );
    let scales = _mm256_i32gather_epi32::<1>(blk as *const _, rows);
    let scales = _mm256_and_si256(scales, _mm256_set1_epi32(0xffff));
    let halves = _mm_packus_epi32(
        _mm256_castsi256_si128(scales),
        _mm256_extracti128_si256(scales, 1),
    );
    _mm256_storeu_ps(d, _mm256_cvtph_ps(halves));
}

/// The transposing packers (see [`pack_q4_0`]), once per vector width: `Q4` picks the block
/// type's group layout (nibbles split into groups j and j + 4, or bytes biased by 128).
macro_rules! transposing_packer {
    ($name:ident, $feat:literal, $rows:literal, $vi:ty, $scales:ident, $transpose:ident,
     $set1:ident, $and:ident, $srli:ident, $xor:ident, $store:ident) => {
        /// Packs the panel's `p.rows` rows (a multiple of the width) a width at a time.
        #[target_feature(enable = $feat)]
        unsafe fn $name<B, const Q4: bool>(p: &mut Panel, bpr: usize, w: &[B]) {
            let block = std::mem::size_of::<B>();
            let (qs, d, panel_rows) = (p.qs.as_mut_ptr(), p.d.as_mut_ptr(), p.rows);
            for r0 in (0..panel_rows).step_by($rows) {
                // Rows r0..r0 + width: their lanes of every group and scale vector.
                let base = (w.as_ptr() as *const u8).add(r0 * bpr * block);
                let dst =
                    |b: usize, k: usize| qs.add(((b * 8 + k) * panel_rows + r0) * 4) as *mut $vi;
                let d = d.add(r0);
                for b in 0..bpr {
                    // SAFETY (of every read below): row i's block b is the `block` bytes at
                    // (i · bpr + b) · block of `w`; the scale gather reads its bytes 0..4 and the
                    // quant loads bytes QS_OFFSET..QS_OFFSET + 16 (and + 16..32 for Q8_0's 34).
                    let blk = base.add(b * block);
                    $scales(blk, bpr * block, d.add(b * panel_rows));
                    let quants = |at: usize| {
                        std::array::from_fn(|i| {
                            let row = blk.add(i * bpr * block + QS_OFFSET + at);
                            _mm_loadu_si128(row as *const __m128i)
                        })
                    };
                    if Q4 {
                        let nibbles = $set1(0x0f0f_0f0f);
                        for (j, g) in $transpose(quants(0)).into_iter().enumerate() {
                            $store(dst(b, j), $and(g, nibbles));
                            $store(dst(b, j + 4), $and($srli::<4>(g), nibbles));
                        }
                    } else {
                        let bias = $set1(0x8080_8080u32 as i32);
                        for half in 0..2 {
                            for (j, g) in $transpose(quants(16 * half)).into_iter().enumerate() {
                                $store(dst(b, 4 * half + j), $xor(g, bias));
                            }
                        }
                    }
                }
            }
        }
    };
}

transposing_packer!(
    pack_transposed_16,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
    16,
    __m512i,
    scales_16,
    transpose_16x4,
    _mm512_set1_epi32,
    _mm512_and_si512,
    _mm512_srli_epi32,
    _mm512_xor_si512,
    _mm512_storeu_si512
);
transposing_packer!(
    pack_transposed_8,
    "avx2,fma,f16c",
    8,
    __m256i,
    scales_8,
    transpose_8x4,
    _mm256_set1_epi32,
    _mm256_and_si256,
    _mm256_srli_epi32,
    _mm256_xor_si256,
    _mm256_storeu_si256
);

/// Prefetches every cache line of `bytes` into L2.
pub(super) fn prefetch_l2(bytes: &[u8]) {
    for line in bytes.chunks(64) {
        // SAFETY: SSE is part of x86-64; a prefetch of an address inside a live slice neither
        // faults nor changes memory.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr() as *const i8) }
    }
}

/// Generates the safe entry points of one module's kernels; panel kernels take 1..=4 tokens a
/// call, or 1..=6 with `tokens = 6`.
macro_rules! safe_entries {
    (rows = $rows:literal, panels only, $( $panel:ident => $inner:ident ),*) => {
        safe_entries!(rows = $rows, tokens = 4, panels only, $( $panel => $inner ),*);
    };
    (rows = $rows:literal, tokens = $tokens:literal, panels only,
     $( $panel:ident => $inner:ident ),*) => {
        $(
            pub(super) fn $panel(p: &PanelRef, x: &QActs, t0: usize, nt: usize, out: &mut [f32]) {
                super::check_panel(p, x, t0, nt, out, $rows, $tokens);
                // SAFETY: features checked by dispatch; bounds checked by check_panel.
                unsafe {
                    match nt {
                        1 => $inner::<1>(p, x, t0, out),
                        2 => $inner::<2>(p, x, t0, out),
                        3 => $inner::<3>(p, x, t0, out),
                        4 => $inner::<4>(p, x, t0, out),
                        5 if $tokens > 4 => $inner::<5>(p, x, t0, out),
                        6 if $tokens > 4 => $inner::<6>(p, x, t0, out),
                        _ => unreachable!("checked by check_panel"),
                    }
                }
            }
        )*
    };
    (rows = $rows:literal, tokens = $tokens:literal, $( $panel:ident => $inner:ident ),*) => {
        safe_entries!(rows = $rows, tokens = $tokens, panels only, $( $panel => $inner ),*);
        safe_entries!(@dots);
    };
    (rows = $rows:literal, $( $panel:ident => $inner:ident ),*) => {
        safe_entries!(rows = $rows, tokens = 4, $( $panel => $inner ),*);
    };
    (@dots) => {
        pub(super) fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
            assert_eq!(w.len(), x.len());
            // SAFETY: the table holding this fn is only handed out after feature detection.
            unsafe { dot_q8_0_impl::<false>(w, x) }
        }
        pub(super) fn dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
            assert_eq!(w.len(), x.len());
            // SAFETY: the table holding this fn is only handed out after feature detection.
            unsafe { dot_q4_0_impl::<false>(w, x) }
        }
        pub(super) fn dot_q8_0_seq(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
            assert_eq!(w.len(), x.len());
            // SAFETY: the table holding this fn is only handed out after feature detection.
            unsafe { dot_q8_0_impl::<true>(w, x) }
        }
        pub(super) fn dot_q4_0_seq(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
            assert_eq!(w.len(), x.len());
            // SAFETY: the table holding this fn is only handed out after feature detection.
            unsafe { dot_q4_0_impl::<true>(w, x) }
        }
        pub(super) fn rows_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0], out: &mut [f32]) {
            assert_eq!(w.len(), out.len() * x.len());
            // SAFETY: features checked by dispatch; `w` holds `out.len()` rows of `x.len()`.
            unsafe { rows_q8_0_impl(w, x, out) }
        }
        pub(super) fn rows_q4_0(
            w: &[BlockQ4_0],
            x: &[BlockQ8_0],
            x_sums: &[i32],
            out: &mut [f32],
        ) {
            assert_eq!(w.len(), out.len() * x.len());
            assert_eq!(x_sums.len(), x.len());
            // SAFETY: features checked by dispatch; `w` holds `out.len()` rows of `x.len()`,
            // `x_sums` one value per block of `x`.
            unsafe { rows_q4_0_impl(w, x, x_sums, out) }
        }
    };
}

/// Generates f32 / f16 / bf16 dot entry points from a generic `dot_f` and three loaders.
macro_rules! float_entries {
    () => {
        pub(super) fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len());
            // SAFETY: features checked by dispatch; lengths equal.
            unsafe { dot_f32_impl(w, x) }
        }
        pub(super) fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len());
            // SAFETY: features checked by dispatch; lengths equal.
            unsafe { dot_f16_impl(w, x) }
        }
        pub(super) fn dot_bf16(w: &[bf16], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len());
            // SAFETY: features checked by dispatch; lengths equal.
            unsafe { dot_bf16_impl(w, x) }
        }
    };
}

/// Horizontal sum of 8 floats.
#[inline(always)]
unsafe fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The 32 nibbles of a Q4_0 block as bytes 0..=15, in element order.
#[inline(always)]
unsafe fn q4_bytes(qs: &[u8; 16]) -> __m256i {
    let t = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
    let v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
}

#[inline(always)]
unsafe fn load_q8(qs: &[i8; 32]) -> __m256i {
    _mm256_loadu_si256(qs.as_ptr() as *const __m256i)
}

/// Σ over blocks of `block(w, x)` (8 i32 partial sums) · d_w · d_x; two accumulators so the
/// FMA latency does not serialize the loop.
#[inline(always)]
unsafe fn dot_blocks<const SEQ: bool, B>(
    w: &[B],
    x: &[BlockQ8_0],
    wd: impl Fn(&B) -> f16,
    block: impl Fn(&B, &BlockQ8_0) -> __m256i,
) -> f32 {
    // Each block's integer sum is exact and is scaled and added as the scalar reference does
    // it, so every level returns the same bits: sequentially with one fused multiply-add per
    // block (SEQ), or into lane b % 8 (see `scalar`).
    if SEQ {
        let mut sum = 0.0f32;
        for (bw, bx) in w.iter().zip(x) {
            sum = (hsum_epi32(block(bw, bx)) as f32).mul_add(scale1(wd(bw), bx.d), sum);
        }
        return sum;
    }
    let n = w.len();
    let full = n - n % 8;
    let mut acc = _mm256_setzero_ps();
    let d16 = |k: usize, f: &dyn Fn(usize) -> f16| f(k).to_bits() as i16;
    for b in (0..full).step_by(8) {
        let v = |k: usize| block(&w[b + k], &x[b + k]);
        let isums = sum8_lanes([v(0), v(1), v(2), v(3), v(4), v(5), v(6), v(7)]);
        let dw = |k: usize| d16(k, &|k| wd(&w[b + k]));
        let dx = |k: usize| d16(k, &|k| x[b + k].d);
        let dw = _mm256_cvtph_ps(_mm_set_epi16(
            dw(7),
            dw(6),
            dw(5),
            dw(4),
            dw(3),
            dw(2),
            dw(1),
            dw(0),
        ));
        let dx = _mm256_cvtph_ps(_mm_set_epi16(
            dx(7),
            dx(6),
            dx(5),
            dx(4),
            dx(3),
            dx(2),
            dx(1),
            dx(0),
        ));
        let p = _mm256_mul_ps(_mm256_cvtepi32_ps(isums), _mm256_mul_ps(dw, dx));
        acc = _mm256_add_ps(acc, p);
    }
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
    for (lane, (bw, bx)) in lanes.iter_mut().zip(w[full..].iter().zip(&x[full..])) {
        *lane += hsum_epi32(block(bw, bx)) as f32 * scale1(wd(bw), bx.d);
    }
    super::scalar::combine_lanes(lanes)
}

/// One f16 → f32 (exact) with F16C.
#[inline(always)]
unsafe fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

/// How far ahead [`dot_rows8`] prefetches, in bytes (rounded up to whole 8-row groups).
/// Measured on the 262144 × 640 Q4_0 LM head, 2 threads: prefetching 6 KiB ahead into L1 gave
/// 20 GiB/s, into L2 30 GiB/s; into L2 11 KiB ahead 33 GiB/s, 23 KiB ahead 26 GiB/s.
const PREFETCH_BYTES: usize = 12 << 10;

/// The decoder-order dots of 8 consecutive rows (`w` = 8 rows of `x.len()` blocks), lane r =
/// row r. `isums(rows, x block, block index)` gives the 8 rows' exact integer sums of one
/// block. Each block's sum is scaled like the scalar reference's and added into accumulator
/// `b % 8`; the accumulators
/// are then combined as [`super::scalar::combine_lanes`] combines lanes, so every row gets
/// the bits of its one-row dot while `x` is read once for 8 rows. `isums` may return the rows
/// in another lane order: lane k holding row `order[k]` (the scales follow the same order, and
/// the result is put back in row order at the end).
#[inline(always)]
unsafe fn dot_rows8<B>(
    w: &[B],
    x: &[BlockQ8_0],
    order: [usize; 8],
    wd: impl Fn(&B) -> f16,
    isums: impl Fn([&B; 8], &BlockQ8_0, usize) -> __m256i,
) -> __m256 {
    let bpr = x.len();
    debug_assert_eq!(w.len(), 8 * bpr);
    let wp = w.as_ptr();
    // The 8 rows are 8 interleaved streams, which the hardware prefetchers follow poorly:
    // each step asks (into L2) for its share of the group ~`PREFETCH_BYTES` ahead (the cache
    // lines of consecutive groups are contiguous). Prefetches never fault, so addresses past
    // the end of the matrix are harmless.
    let lines_per_step = (8 * std::mem::size_of::<B>()).div_ceil(64);
    let group_bytes = 8 * bpr * std::mem::size_of::<B>();
    let ahead_groups = PREFETCH_BYTES.div_ceil(group_bytes.max(1));
    let ahead = (wp as *const u8).wrapping_add(ahead_groups * group_bytes);
    let step = |b: usize, acc: &mut __m256| {
        // SAFETY: b < bpr (every caller below checks), so the reads stay inside `w` and `x`.
        rows8_step(
            wp,
            bpr,
            x,
            b,
            order,
            ahead,
            lines_per_step,
            &wd,
            &isums,
            acc,
        )
    };
    let mut acc = [_mm256_setzero_ps(); 8];
    {
        // Named accumulators, constant lane per step: they stay in registers.
        let [a0, a1, a2, a3, a4, a5, a6, a7] = &mut acc;
        for b in (0..bpr).step_by(8) {
            step(b, a0);
            if b + 8 <= bpr {
                step(b + 1, a1);
                step(b + 2, a2);
                step(b + 3, a3);
                step(b + 4, a4);
                step(b + 5, a5);
                step(b + 6, a6);
                step(b + 7, a7);
            } else {
                let tail = [
                    &mut *a1, &mut *a2, &mut *a3, &mut *a4, &mut *a5, &mut *a6, &mut *a7,
                ];
                for (k, a) in tail.into_iter().enumerate() {
                    if b + 1 + k < bpr {
                        step(b + 1 + k, a);
                    }
                }
            }
        }
    }
    let add = |a: __m256, b: __m256| _mm256_add_ps(a, b);
    let sums = add(
        add(add(acc[0], acc[4]), add(acc[2], acc[6])),
        add(add(acc[1], acc[5]), add(acc[3], acc[7])),
    );
    // Lane k holds row order[k]: row r comes from the lane where order[k] == r.
    let mut back = [0i32; 8];
    for (k, &r) in order.iter().enumerate() {
        back[r] = k as i32;
    }
    _mm256_permutevar8x32_ps(sums, _mm256_loadu_si256(back.as_ptr() as *const __m256i))
}

/// Natural lane order: lane r holds row r.
const ROWS_IN_ORDER: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
/// The lane order of [`q4_pair_isums`]: even rows in the low half, odd rows in the high half.
const ROWS_PAIRED: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Exact `Σ (q - 8)·x` of 8 Q4_0 rows, two rows per vector: one 256-bit load holds the
/// nibbles of rows 2p (low half) and 2p + 1 (high half); their low nibbles (elements 0..16)
/// meet `x[0..16]`, their high nibbles `x[16..32]`, both broadcast to the two halves. Three
/// rounds of adds then give lane order [`ROWS_PAIRED`], and `x_sum` (`-8·Σx`, the same for
/// every row) is added once. `halves(u, s, v, t)` returns the 4-byte dot products of unsigned
/// `u` with signed `s` plus those of `v` with `t` (all bytes of `u` and `v` at most 15).
#[inline(always)]
unsafe fn q4_pair_isums(
    rows: [&BlockQ4_0; 8],
    bx: &BlockQ8_0,
    x_sum: i32,
    halves: impl Fn(__m256i, __m256i, __m256i, __m256i) -> __m256i,
) -> __m256i {
    let xp = bx.qs.as_ptr() as *const __m128i;
    let x_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(xp));
    let x_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(xp.add(1)));
    let nibbles = _mm256_set1_epi8(0x0f);
    let pair = |p: usize| {
        let (a, b) = (rows[2 * p], rows[2 * p + 1]);
        let v = _mm256_loadu2_m128i(
            b.qs.as_ptr() as *const __m128i,
            a.qs.as_ptr() as *const __m128i,
        );
        let lo = _mm256_and_si256(v, nibbles);
        let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibbles);
        halves(lo, x_lo, hi, x_hi)
    };
    let (v0, v1, v2, v3) = (pair(0), pair(1), pair(2), pair(3));
    // Per 128-bit half h, lane p ends up with the 4 partial sums of v_p (row 2p + h): two
    // rounds of interleave-and-add (cheaper than `hadd`, which is 3-4 micro-ops on AMD).
    let add_halves =
        |a, b| _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    let (s01, s23) = (add_halves(v0, v1), add_halves(v2, v3));
    let sums = _mm256_add_epi32(
        _mm256_unpacklo_epi64(s01, s23),
        _mm256_unpackhi_epi64(s01, s23),
    );
    _mm256_add_epi32(sums, _mm256_set1_epi32(x_sum))
}

/// One block of [`dot_rows8`]: prefetch, the 8 rows' block sums, scaled into `acc`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rows8_step<B>(
    wp: *const B,
    bpr: usize,
    x: &[BlockQ8_0],
    b: usize,
    order: [usize; 8],
    ahead: *const u8,
    lines_per_step: usize,
    wd: &impl Fn(&B) -> f16,
    isums: &impl Fn([&B; 8], &BlockQ8_0, usize) -> __m256i,
    acc: &mut __m256,
) {
    for i in 0..lines_per_step {
        let line = ahead.wrapping_add((b * lines_per_step + i) * 64);
        _mm_prefetch::<_MM_HINT_T1>(line as *const i8);
    }
    let rows: [&B; 8] = std::array::from_fn(|r| &*wp.add(r * bpr + b));
    let bx = x.get_unchecked(b);
    let d = |k: usize| wd(rows[order[k]]).to_bits() as i16;
    let dw = _mm256_cvtph_ps(_mm_set_epi16(
        d(7),
        d(6),
        d(5),
        d(4),
        d(3),
        d(2),
        d(1),
        d(0),
    ));
    let s = _mm256_mul_ps(dw, _mm256_set1_ps(f16_to_f32(bx.d)));
    let p = _mm256_mul_ps(_mm256_cvtepi32_ps(isums(rows, bx, b)), s);
    *acc = _mm256_add_ps(*acc, p);
}

/// `out[r]` = the decoder-order dot of row r of `w` with `x`: 8 rows at a time through
/// [`dot_rows8`], the last `out.len() % 8` rows through the one-row `dot`.
#[inline(always)]
unsafe fn dot_rows<B>(
    w: &[B],
    x: &[BlockQ8_0],
    out: &mut [f32],
    rows8: impl Fn(&[B]) -> __m256,
    dot: impl Fn(&[B]) -> f32,
) {
    let bpr = x.len();
    let full = out.len() - out.len() % 8;
    for r in (0..full).step_by(8) {
        _mm256_storeu_ps(out.as_mut_ptr().add(r), rows8(&w[r * bpr..(r + 8) * bpr]));
    }
    for r in full..out.len() {
        out[r] = dot(&w[r * bpr..(r + 1) * bpr]);
    }
}

/// [`crate::quant::quantize_row_q8_0`] in AVX2, bit for bit (NaN inputs quantize to 0 and
/// are left out of the maximum, as there).
pub(super) fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    check_quantize(x, out, None);
    // SAFETY: every x86 kernel level includes AVX2 and F16C; lengths checked above.
    unsafe { quantize_q8_0_impl::<false>(x, out, &mut [], &mut [], 0) }
}

/// [`quantize_q8_0`], also writing what the panel kernels read per block (see `QActs`): the
/// scale as f32 and `-offset · Σ q`.
pub(super) fn quantize_q8_0_panel(
    x: &[f32],
    out: &mut [BlockQ8_0],
    d: &mut [f32],
    sum: &mut [i32],
    offset: i32,
) {
    check_quantize(x, out, Some((d, sum)));
    // SAFETY: every x86 kernel level includes AVX2 and F16C; lengths checked above.
    unsafe { quantize_q8_0_impl::<true>(x, out, d, sum, offset) }
}

/// [`quantize_q8_0`] in AVX-512 (the AVX-512 levels), bit for bit.
pub(super) fn quantize_q8_0_zmm(x: &[f32], out: &mut [BlockQ8_0]) {
    check_quantize(x, out, None);
    // SAFETY: the AVX-512 tables are only handed out on CPUs with AVX-512 F/BW/VL (and AVX2,
    // F16C); lengths checked above.
    unsafe { quantize_q8_0_zmm_impl::<false>(x, out, &mut [], &mut [], 0) }
}

/// [`quantize_q8_0_panel`] in AVX-512 (the AVX-512 levels), bit for bit.
pub(super) fn quantize_q8_0_panel_zmm(
    x: &[f32],
    out: &mut [BlockQ8_0],
    d: &mut [f32],
    sum: &mut [i32],
    offset: i32,
) {
    check_quantize(x, out, Some((d, sum)));
    // SAFETY: as in `quantize_q8_0_zmm`.
    unsafe { quantize_q8_0_zmm_impl::<true>(x, out, d, sum, offset) }
}

/// Σ of a block's 32 signed quants: Σ (q + 128) by `vpsadbw`, then the bias taken back out.
#[inline(always)]
unsafe fn sum_i8x32(q8: __m256i) -> i32 {
    let biased = _mm256_xor_si256(q8, _mm256_set1_epi8(-128));
    let s = _mm256_sad_epu8(biased, _mm256_setzero_si256());
    let s = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    let s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    _mm_cvtsi128_si32(s) - 32 * 128
}

/// The sixteen vectors `v[j]` reduced to one whose lane `j` combines the sixteen lanes of
/// `v[j]` (`combine` must be associative and commutative: max, integer sum): a transposing
/// tree of 15 combines and 30 shuffles, a third of what sixteen horizontal reductions take.
#[inline(always)]
unsafe fn reduce_16x16(v: [__m512; 16], combine: impl Fn(__m512, __m512) -> __m512) -> __m512 {
    // Halves: b[p] holds block 2p in its low 256 bits, block 2p + 1 in its high ones.
    let b: [__m512; 8] = std::array::from_fn(|p| {
        let (x, y) = (v[2 * p], v[2 * p + 1]);
        combine(
            _mm512_shuffle_f32x4::<0x44>(x, y),
            _mm512_shuffle_f32x4::<0xee>(x, y),
        )
    });
    // Quarters: c[r] holds blocks 4r..4r + 4, one per 128 bits.
    let c: [__m512; 4] = std::array::from_fn(|r| {
        let (x, y) = (b[2 * r], b[2 * r + 1]);
        combine(
            _mm512_shuffle_f32x4::<0x88>(x, y),
            _mm512_shuffle_f32x4::<0xdd>(x, y),
        )
    });
    // Pairs of lanes: in quarter q of e[s], lanes 0-1 hold block 8s + q, lanes 2-3 block
    // 8s + 4 + q.
    let e: [__m512; 2] = std::array::from_fn(|s| {
        let (x, y) = (_mm512_castps_pd(c[2 * s]), _mm512_castps_pd(c[2 * s + 1]));
        combine(
            _mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)),
        )
    });
    // Lane 4q + k holds block 4k + q: a 4 × 4 transpose (its own inverse) puts block j in lane j.
    let f = combine(
        _mm512_shuffle_ps::<0x88>(e[0], e[1]),
        _mm512_shuffle_ps::<0xdd>(e[0], e[1]),
    );
    let transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(transpose, f)
}

/// Sixteen blocks at a time, as the AVX2 version does eight: each block's maximum |x| as a
/// vector of sixteen partial maxima, all sixteen reduced together ([`reduce_16x16`]), their
/// scales by one vector division, then each block's 32 quants from two zmm. Rounding halves
/// away from zero is `trunc(s + copysign(0.5⁻, s))` with 0.5⁻ the float below one half: exact
/// for every |s| ≤ 128 (the sum rounds up to the next integer exactly when s's fraction is at
/// least one half), five instructions where truncating and correcting took nine. The blocks
/// past the last sixteen go through the AVX2 version.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn quantize_q8_0_zmm_impl<const PANEL: bool>(
    x: &[f32],
    out: &mut [BlockQ8_0],
    d_out: &mut [f32],
    sum_out: &mut [i32],
    offset: i32,
) {
    const G: usize = 16;
    let full = out.len() - out.len() % G;
    let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
    let sign_mask = _mm512_set1_epi32(i32::MIN);
    let below_half = _mm512_castps_si512(_mm512_set1_ps(f32::from_bits(0.5f32.to_bits() - 1)));
    let transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (c, (blocks, xs)) in out[..full]
        .chunks_exact_mut(G)
        .zip(x.chunks_exact(G * 32))
        .enumerate()
    {
        let maxima: [__m512; G] = std::array::from_fn(|j| {
            let p = xs.as_ptr().add(32 * j);
            // vmaxps returns its second operand when either is NaN: NaN lanes are skipped,
            // as f32::max does; max is exact in any order.
            let abs =
                |v: __m512| _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask));
            let (a, b) = (abs(_mm512_loadu_ps(p)), abs(_mm512_loadu_ps(p.add(16))));
            _mm512_max_ps(b, _mm512_max_ps(a, _mm512_setzero_ps()))
        });
        let amax = reduce_16x16(maxima, |a, b| _mm512_max_ps(a, b));
        let d = _mm512_div_ps(amax, _mm512_set1_ps(127.0));
        let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(d, _mm512_setzero_ps());
        let id = _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0), d);
        let dh = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(d);
        let (mut ids, mut d16) = ([0.0f32; G], [0u16; G]);
        _mm512_storeu_ps(ids.as_mut_ptr(), id);
        _mm256_storeu_si256(d16.as_mut_ptr() as *mut __m256i, dh);
        if PANEL {
            _mm512_storeu_ps(d_out.as_mut_ptr().add(c * G), _mm512_cvtph_ps(dh));
        }
        let quants = |j: usize| {
            let p = xs.as_ptr().add(32 * j);
            let idv = _mm512_set1_ps(ids[j]);
            [0, 16].map(|o| {
                // Clamped as `as i8` saturates (NaN passes through min/max as their second
                // operand), rounded as above, NaN lanes zeroed by the conversion's mask.
                let s = _mm512_mul_ps(_mm512_loadu_ps(p.add(o)), idv);
                let s = _mm512_max_ps(
                    _mm512_set1_ps(-128.0),
                    _mm512_min_ps(_mm512_set1_ps(127.0), s),
                );
                let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(s, s);
                // (s & sign) | 0.5⁻
                let half = _mm512_ternarylogic_epi32::<0xea>(
                    _mm512_castps_si512(s),
                    sign_mask,
                    below_half,
                );
                _mm512_maskz_cvttps_epi32(ordered, _mm512_add_ps(s, _mm512_castsi512_ps(half)))
            })
        };
        let mut sums = [_mm512_setzero_ps(); G];
        for j in (0..G).step_by(2) {
            let (a, b) = (quants(j), quants(j + 1));
            // Two blocks narrowed together (already in -128..=127: saturation never acts):
            // the packs leave, in each 128 bits, 4-byte groups of a's lows and highs, then
            // b's; the 4 × 4 transpose puts a's 32 bytes, then b's, in order.
            let packed = _mm512_packs_epi16(
                _mm512_packs_epi32(a[0], a[1]),
                _mm512_packs_epi32(b[0], b[1]),
            );
            let q8 = _mm512_permutexvar_epi32(transpose, packed);
            blocks[j].d = f16::from_bits(d16[j]);
            blocks[j + 1].d = f16::from_bits(d16[j + 1]);
            let (lo, hi) = (
                _mm512_castsi512_si256(q8),
                _mm512_extracti64x4_epi64::<1>(q8),
            );
            _mm256_storeu_si256(blocks[j].qs.as_mut_ptr() as *mut __m256i, lo);
            _mm256_storeu_si256(blocks[j + 1].qs.as_mut_ptr() as *mut __m256i, hi);
            if PANEL {
                sums[j] = _mm512_castsi512_ps(_mm512_add_epi32(a[0], a[1]));
                sums[j + 1] = _mm512_castsi512_ps(_mm512_add_epi32(b[0], b[1]));
            }
        }
        if PANEL {
            let sum = reduce_16x16(sums, |a, b| {
                _mm512_castsi512_ps(_mm512_add_epi32(
                    _mm512_castps_si512(a),
                    _mm512_castps_si512(b),
                ))
            });
            let sum = _mm512_mullo_epi32(_mm512_castps_si512(sum), _mm512_set1_epi32(-offset));
            _mm512_storeu_si512(sum_out.as_mut_ptr().add(c * G) as *mut _, sum);
        }
    }
    let (x, out) = (&x[full * 32..], &mut out[full..]);
    if PANEL {
        quantize_q8_0_impl::<true>(x, out, &mut d_out[full..], &mut sum_out[full..], offset);
    } else {
        quantize_q8_0_impl::<false>(x, out, &mut [], &mut [], 0);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_0_impl<const PANEL: bool>(
    x: &[f32],
    out: &mut [BlockQ8_0],
    d_out: &mut [f32],
    sum_out: &mut [i32],
    offset: i32,
) {
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    // Eight blocks at a time: their maxima first, then their scales by one vector division
    // each, then their quants. (Block by block, each block's quants waited on a chain of two
    // scalar divisions, and the scheduler held too few blocks to hide it: ~60 cycles a block.)
    for (c, (blocks, xs)) in out.chunks_mut(8).zip(x.chunks(8 * 32)).enumerate() {
        let mut amax = [0.0f32; 8];
        for (a, xs) in amax.iter_mut().zip(xs.chunks_exact(32)) {
            let p = xs.as_ptr();
            // |v| with NaN lanes zeroed (f32::max ignores NaN); max is exact in any order.
            let v = [0, 8, 16, 24].map(|o| {
                let v = _mm256_loadu_ps(p.add(o));
                let ordered = _mm256_cmp_ps::<_CMP_ORD_Q>(v, v);
                _mm256_and_ps(_mm256_and_ps(v, abs_mask), ordered)
            });
            let m = _mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3]));
            let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            *a = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        }
        // d = amax / 127 and id = 1 / d (0 where d is 0), lane by lane as the reference's
        // scalar divisions; the f16 scale rounds to nearest even.
        let d = _mm256_div_ps(_mm256_loadu_ps(amax.as_ptr()), _mm256_set1_ps(127.0));
        let nonzero = _mm256_cmp_ps::<_CMP_NEQ_OQ>(d, _mm256_setzero_ps());
        let id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0), d), nonzero);
        let dh = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(d);
        let (mut ids, mut d16, mut d32) = ([0.0f32; 8], [0u16; 8], [0.0f32; 8]);
        _mm256_storeu_ps(ids.as_mut_ptr(), id);
        _mm_storeu_si128(d16.as_mut_ptr() as *mut __m128i, dh);
        _mm256_storeu_ps(d32.as_mut_ptr(), _mm256_cvtph_ps(dh));
        for (j, (block, xs)) in blocks.iter_mut().zip(xs.chunks_exact(32)).enumerate() {
            let p = xs.as_ptr();
            let v = [0, 8, 16, 24].map(|o| _mm256_loadu_ps(p.add(o)));
            block.d = f16::from_bits(d16[j]);
            let idv = _mm256_set1_ps(ids[j]);
            // Halves away from zero, as `round_half_away`: truncate, then step by the remainder.
            let q = v.map(|v| {
                // Clamped to the i8 range first (NaN passes through as the second operand):
                // with a subnormal scale `id` is infinite, and the reference's `as` casts
                // saturate.
                let s = _mm256_mul_ps(v, idv);
                let s = _mm256_max_ps(
                    _mm256_set1_ps(-128.0),
                    _mm256_min_ps(_mm256_set1_ps(127.0), s),
                );
                let ordered = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_ORD_Q>(s, s));
                let t = _mm256_and_si256(_mm256_cvttps_epi32(s), ordered);
                let f = _mm256_sub_ps(s, _mm256_cvtepi32_ps(t));
                let up = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(f, _mm256_set1_ps(0.5)));
                let down =
                    _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(f, _mm256_set1_ps(-0.5)));
                _mm256_add_epi32(_mm256_sub_epi32(t, up), down)
            });
            let q16 = _mm256_packs_epi16(
                _mm256_packs_epi32(q[0], q[1]),
                _mm256_packs_epi32(q[2], q[3]),
            );
            let q8 = _mm256_permutevar8x32_epi32(q16, order);
            _mm256_storeu_si256(block.qs.as_mut_ptr() as *mut __m256i, q8);
            if PANEL {
                let i = c * 8 + j;
                d_out[i] = d32[j];
                sum_out[i] = -offset * sum_i8x32(q8);
            }
        }
    }
}

/// Lane k of the result = the sum of the 8 lanes of `v[k]` (exact integer adds).
#[inline(always)]
unsafe fn sum8_lanes(v: [__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    // Per 128-bit half: [v0, v1, v2, v3] (and [v4..v7]) partial sums of that half.
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    let lo = _mm256_permute2x128_si256(h0123, h4567, 0x20);
    let hi = _mm256_permute2x128_si256(h0123, h4567, 0x31);
    _mm256_add_epi32(lo, hi)
}

/// Horizontal sum of 8 i32 (exact: block sums are far below overflow).
#[inline(always)]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// `d_w · d_x` in f32, both converted by one F16C instruction.
#[inline(always)]
unsafe fn scale1(a: f16, b: f16) -> f32 {
    let bits = a.to_bits() as u32 | (b.to_bits() as u32) << 16;
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    _mm_cvtss_f32(_mm_mul_ss(v, _mm_movehdup_ps(v)))
}

/// Signed bytes · signed bytes, pairwise summed to 8 × i32, with `maddubs` (|w| ≤ 128 and
/// |x| ≤ 127 keep the i16 pair sums below saturation).
#[inline(always)]
unsafe fn mul_sum_i8_avx2(w: __m256i, x: __m256i) -> __m256i {
    let aw = _mm256_sign_epi8(w, w);
    let sx = _mm256_sign_epi8(x, w);
    _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1))
}

/// Σ w·x over f32 lanes, 4 × 8 accumulators; `load` turns 8 weights into f32.
#[inline(always)]
unsafe fn dot_f_avx2<T: Copy>(
    w: &[T],
    x: &[f32],
    load: impl Fn(*const T) -> __m256,
    tail: impl Fn(T) -> f32,
) -> f32 {
    let n = w.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, a) in acc.iter_mut().enumerate() {
            let o = i + 8 * j;
            *a = _mm256_fmadd_ps(load(wp.add(o)), _mm256_loadu_ps(xp.add(o)), *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(load(wp.add(i)), _mm256_loadu_ps(xp.add(i)), acc[0]);
        i += 8;
    }
    let mut s = hsum256(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ));
    for j in i..n {
        s += tail(w[j]) * x[j];
    }
    s
}

/// Σ w·x over f32 lanes, 4 × 16 accumulators; `load` turns 16 weights into f32.
#[inline(always)]
unsafe fn dot_f_avx512<T: Copy>(
    w: &[T],
    x: &[f32],
    load: impl Fn(*const T) -> __m512,
    tail: impl Fn(T) -> f32,
) -> f32 {
    let n = w.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (j, a) in acc.iter_mut().enumerate() {
            let o = i + 16 * j;
            *a = _mm512_fmadd_ps(load(wp.add(o)), _mm512_loadu_ps(xp.add(o)), *a);
        }
        i += 64;
    }
    while i + 16 <= n {
        acc[0] = _mm512_fmadd_ps(load(wp.add(i)), _mm512_loadu_ps(xp.add(i)), acc[0]);
        i += 16;
    }
    let mut s = _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc[0], acc[1]),
        _mm512_add_ps(acc[2], acc[3]),
    ));
    for j in i..n {
        s += tail(w[j]) * x[j];
    }
    s
}

/// The `maddubs` panel micro-kernel (see [`Panel`]): `R = 2 · lanes` rows (two vectors) × `T`
/// tokens, written once as a macro over the vector width; each token's 4 bytes of x are
/// broadcast once for both halves of the rows. `$dot4(pairs, w, x)` adds one 4-byte group of
/// every row of a half to a block's i16 pair sums, kept in i16 for the whole block (8 groups: at
/// most 8 · 2 · 15 · 128 = 30720 < 2^15, exact); `$finish(pairs, offset term)` widens them once
/// by `madd` and adds the offset term, so a block costs 8 `maddubs` + 1 `madd` instead of 8 of
/// each. (16 rows × 2 tokens in ymm read 100–108 GMAC/s on one core of the Xeon, 8 rows × 4
/// tokens 90–93: the same arithmetic with half the broadcasts. The `vpdpbusd` kernel, which
/// accumulates in i32, is written out in `vnni`.)
macro_rules! panel_kernel {
    ($name:ident, $feat:literal, $lanes:literal, $vi:ty, $zero_i:ident, $set1_i:ident,
     $loadu_i:ident, $dot4:ident, $finish:ident, $zero_f:ident, $set1_f:ident, $loadu_f:ident,
     $storeu_f:ident, $mul:ident, $fmadd:ident, $cvt:ident) => {
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name<const T: usize>(
            p: &PanelRef,
            x: &QActs,
            t0: usize,
            out: &mut [f32],
        ) {
            const ROWS: usize = 2 * $lanes;
            let bpr = p.bpr;
            let wq = p.qs.as_ptr();
            let wd = p.d.as_ptr();
            let xq = x.q.as_ptr().add(t0 * bpr);
            let xd = x.d.as_ptr().add(t0 * bpr);
            let xs = x.sum.as_ptr().add(t0 * bpr);
            let mut acc_lo = [$zero_f(); T];
            let mut acc_hi = [$zero_f(); T];
            for b in 0..bpr {
                // One chain per (half, token): an i16 add's latency is one cycle.
                let mut lo: [$vi; T] = [$zero_i(); T];
                let mut hi = lo;
                for k in 0..8 {
                    let group = wq.add((b * 8 + k) * ROWS * 4);
                    let w_lo = $loadu_i(group as *const _);
                    let w_hi = $loadu_i(group.add($lanes * 4) as *const _);
                    for t in 0..T {
                        let xp = (*xq.add(t * bpr + b)).qs.as_ptr().add(4 * k) as *const i32;
                        let xv = $set1_i(xp.read_unaligned());
                        lo[t] = $dot4(lo[t], w_lo, xv);
                        hi[t] = $dot4(hi[t], w_hi, xv);
                    }
                }
                let dw_lo = $loadu_f(wd.add(b * ROWS));
                let dw_hi = $loadu_f(wd.add(b * ROWS + $lanes));
                for t in 0..T {
                    let offset_term = *xs.add(t * bpr + b);
                    let dx = $set1_f(*xd.add(t * bpr + b));
                    let (i_lo, i_hi) = ($finish(lo[t], offset_term), $finish(hi[t], offset_term));
                    acc_lo[t] = $fmadd($cvt(i_lo), $mul(dw_lo, dx), acc_lo[t]);
                    acc_hi[t] = $fmadd($cvt(i_hi), $mul(dw_hi, dx), acc_hi[t]);
                }
            }
            for t in 0..T {
                $storeu_f(out.as_mut_ptr().add(t * ROWS), acc_lo[t]);
                $storeu_f(out.as_mut_ptr().add(t * ROWS + $lanes), acc_hi[t]);
            }
        }
    };
}

mod avx2 {
    use super::*;

    safe_entries!(rows = 16, tokens = 2, panel_q4_0 => panel_q4_0_impl);
    float_entries!();

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_q8_0_impl<const SEQ: bool>(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        dot_blocks::<SEQ, _>(
            w,
            x,
            |b| b.d,
            |bw, bx| mul_sum_i8_avx2(load_q8(&bw.qs), load_q8(&bx.qs)),
        )
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_q4_0_impl<const SEQ: bool>(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        dot_blocks::<SEQ, _>(
            w,
            x,
            |b| b.d,
            |bw, bx| {
                let q = _mm256_sub_epi8(q4_bytes(&bw.qs), _mm256_set1_epi8(8));
                mul_sum_i8_avx2(q, load_q8(&bx.qs))
            },
        )
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_q8_0_impl(w: &[BlockQ8_0], x: &[BlockQ8_0], out: &mut [f32]) {
        let rows8 = |w: &[BlockQ8_0]| {
            dot_rows8(
                w,
                x,
                ROWS_IN_ORDER,
                |b| b.d,
                |rows, bx, _| {
                    let xv = load_q8(&bx.qs);
                    sum8_lanes(rows.map(|b| mul_sum_i8_avx2(load_q8(&b.qs), xv)))
                },
            )
        };
        dot_rows(w, x, out, rows8, |w| dot_q8_0_impl::<false>(w, x));
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_q4_0_impl(w: &[BlockQ4_0], x: &[BlockQ8_0], x_sums: &[i32], out: &mut [f32]) {
        // The two halves' pair sums (each at most 2 · 15 · 128) are added in i16 and widened
        // once: exact, and one `madd` instead of two.
        let halves = |u, s, v, t| {
            let pairs = _mm256_add_epi16(_mm256_maddubs_epi16(u, s), _mm256_maddubs_epi16(v, t));
            _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
        };
        let rows8 = |w: &[BlockQ4_0]| {
            dot_rows8(
                w,
                x,
                ROWS_PAIRED,
                |b| b.d,
                |rows, bx, b| q4_pair_isums(rows, bx, *x_sums.get_unchecked(b), halves),
            )
        };
        dot_rows(w, x, out, rows8, |w| dot_q4_0_impl::<false>(w, x));
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_f32_impl(w: &[f32], x: &[f32]) -> f32 {
        dot_f_avx2(w, x, |p| _mm256_loadu_ps(p), |v| v)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_f16_impl(w: &[f16], x: &[f32]) -> f32 {
        dot_f_avx2(
            w,
            x,
            |p| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
            |v| v.to_f32(),
        )
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_bf16_impl(w: &[bf16], x: &[f32]) -> f32 {
        dot_f_avx2(
            w,
            x,
            |p| {
                let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
                _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
            },
            |v| v.to_f32(),
        )
    }

    // A block's i16 pair sums (see `panel_kernel!`); w is 0..=15.
    #[inline(always)]
    unsafe fn dot4(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        _mm256_add_epi16(acc, _mm256_maddubs_epi16(w, x))
    }
    #[inline(always)]
    unsafe fn finish(pairs: __m256i, offset_term: i32) -> __m256i {
        let wide = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
        _mm256_add_epi32(wide, _mm256_set1_epi32(offset_term))
    }

    panel_kernel!(
        panel_q4_0_impl,
        "avx2,fma,f16c",
        8,
        __m256i,
        _mm256_setzero_si256,
        _mm256_set1_epi32,
        _mm256_loadu_si256,
        dot4,
        finish,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_mul_ps,
        _mm256_fmadd_ps,
        _mm256_cvtepi32_ps
    );
}

mod avx512 {
    use super::*;

    // The quantized dots are 256-bit code: this level uses AVX2's (see the AVX512 table).
    safe_entries!(rows = 32, tokens = 4, panels only, panel_q4_0 => panel_q4_0_impl);
    float_entries!();

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn dot_f32_impl(w: &[f32], x: &[f32]) -> f32 {
        dot_f_avx512(w, x, |p| _mm512_loadu_ps(p), |v| v)
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn dot_f16_impl(w: &[f16], x: &[f32]) -> f32 {
        dot_f_avx512(
            w,
            x,
            |p| _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
            |v| v.to_f32(),
        )
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn dot_bf16_impl(w: &[bf16], x: &[f32]) -> f32 {
        dot_f_avx512(
            w,
            x,
            |p| {
                let h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
                _mm512_castsi512_ps(_mm512_slli_epi32(h, 16))
            },
            |v| v.to_f32(),
        )
    }

    // A block's i16 pair sums (see `panel_kernel!`); w is 0..=15.
    #[inline(always)]
    unsafe fn dot4(acc: __m512i, w: __m512i, x: __m512i) -> __m512i {
        _mm512_add_epi16(acc, _mm512_maddubs_epi16(w, x))
    }
    #[inline(always)]
    unsafe fn finish(pairs: __m512i, offset_term: i32) -> __m512i {
        let wide = _mm512_madd_epi16(pairs, _mm512_set1_epi16(1));
        _mm512_add_epi32(wide, _mm512_set1_epi32(offset_term))
    }

    panel_kernel!(
        panel_q4_0_impl,
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl",
        16,
        __m512i,
        _mm512_setzero_si512,
        _mm512_set1_epi32,
        _mm512_loadu_si512,
        dot4,
        finish,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_mul_ps,
        _mm512_fmadd_ps,
        _mm512_cvtepi32_ps
    );
}

mod vnni {
    use super::*;

    safe_entries!(rows = 32, tokens = 6, panel_q4_0 => panel_impl,
                  // Same kernel: Q8_0 panels hold q + 128 with offset 128.
                  panel_q8_0 => panel_impl);

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot_q8_0_impl<const SEQ: bool>(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        dot_blocks::<SEQ, _>(
            w,
            x,
            |b| b.d,
            |bw, bx| {
                let (wv, xv) = (load_q8(&bw.qs), load_q8(&bx.qs));
                let aw = _mm256_sign_epi8(wv, wv);
                let sx = _mm256_sign_epi8(xv, wv);
                _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx)
            },
        )
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot_q4_0_impl<const SEQ: bool>(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        dot_blocks::<SEQ, _>(
            w,
            x,
            |b| b.d,
            |bw, bx| {
                // Σ (q - 8)·x = Σ q·x - Σ 8·x, both unsigned·signed.
                let xv = load_q8(&bx.qs);
                let z = _mm256_setzero_si256();
                let qx = _mm256_dpbusd_epi32(z, q4_bytes(&bw.qs), xv);
                let ex = _mm256_dpbusd_epi32(z, _mm256_set1_epi8(8), xv);
                _mm256_sub_epi32(qx, ex)
            },
        )
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn rows_q8_0_impl(w: &[BlockQ8_0], x: &[BlockQ8_0], out: &mut [f32]) {
        let rows8 = |w: &[BlockQ8_0]| {
            dot_rows8(
                w,
                x,
                ROWS_IN_ORDER,
                |b| b.d,
                |rows, bx, _| {
                    let xv = load_q8(&bx.qs);
                    sum8_lanes(rows.map(|b| {
                        let wv = load_q8(&b.qs);
                        let (aw, sx) = (_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
                        _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx)
                    }))
                },
            )
        };
        dot_rows(w, x, out, rows8, |w| dot_q8_0_impl::<false>(w, x));
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn rows_q4_0_impl(w: &[BlockQ4_0], x: &[BlockQ8_0], x_sums: &[i32], out: &mut [f32]) {
        let rows8 = |w: &[BlockQ4_0]| {
            dot_rows8(
                w,
                x,
                ROWS_PAIRED,
                |b| b.d,
                |rows, bx, b| {
                    q4_pair_isums(rows, bx, *x_sums.get_unchecked(b), |u, s, v, t| {
                        let z = _mm256_setzero_si256();
                        _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, u, s), v, t)
                    })
                },
            )
        };
        dot_rows(w, x, out, rows8, |w| dot_q4_0_impl::<false>(w, x));
    }

    /// The panel micro-kernel (see [`Panel`]) with `vpdpbusd`: 32 rows (two zmm) × `T ≤ 6`
    /// tokens, each token's 4 bytes of x broadcast once for both halves of the rows. Per block,
    /// each (half, token) sum starts at the offset term and accumulates 8 groups in i32 (exact),
    /// then is scaled into f32 in the reference's order: `fma(float(isum), d_w · d_x, acc)`.
    /// (16 rows × 4 tokens read 172 GMAC/s on one core of the Xeon, this 242: the x
    /// broadcasts and the float epilogue are shared by, or spread over, twice the rows.)
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn panel_impl<const T: usize>(p: &PanelRef, x: &QActs, t0: usize, out: &mut [f32]) {
        let bpr = p.bpr;
        let wq = p.qs.as_ptr();
        let wd = p.d.as_ptr();
        let xq = x.q.as_ptr().add(t0 * bpr);
        let xd = x.d.as_ptr().add(t0 * bpr);
        let xs = x.sum.as_ptr().add(t0 * bpr);
        let mut acc_lo = [_mm512_setzero_ps(); T];
        let mut acc_hi = [_mm512_setzero_ps(); T];
        for b in 0..bpr {
            let mut lo: [__m512i; T] =
                std::array::from_fn(|t| _mm512_set1_epi32(*xs.add(t * bpr + b)));
            let mut hi = lo;
            for k in 0..8 {
                let group = wq.add((b * 8 + k) * 32 * 4);
                let (w_lo, w_hi) = (
                    _mm512_loadu_si512(group as *const _),
                    _mm512_loadu_si512(group.add(64) as *const _),
                );
                for t in 0..T {
                    let xp = (*xq.add(t * bpr + b)).qs.as_ptr().add(4 * k) as *const i32;
                    let xv = _mm512_set1_epi32(xp.read_unaligned());
                    lo[t] = _mm512_dpbusd_epi32(lo[t], w_lo, xv);
                    hi[t] = _mm512_dpbusd_epi32(hi[t], w_hi, xv);
                }
            }
            let (dw_lo, dw_hi) = (
                _mm512_loadu_ps(wd.add(b * 32)),
                _mm512_loadu_ps(wd.add(b * 32 + 16)),
            );
            for t in 0..T {
                let dx = _mm512_set1_ps(*xd.add(t * bpr + b));
                let (s_lo, s_hi) = (_mm512_mul_ps(dw_lo, dx), _mm512_mul_ps(dw_hi, dx));
                acc_lo[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo[t]), s_lo, acc_lo[t]);
                acc_hi[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi[t]), s_hi, acc_hi[t]);
            }
        }
        for t in 0..T {
            _mm512_storeu_ps(out.as_mut_ptr().add(t * 32), acc_lo[t]);
            _mm512_storeu_ps(out.as_mut_ptr().add(t * 32 + 16), acc_hi[t]);
        }
    }
}

/// The int8 peak loop of `level` (see `ceiling`): independent accumulators, more than the
/// multiply's latency times its ports keep busy (8 ymm, the most 16 registers hold beside the
/// operands; 16 zmm: `vpdpbusd` has a latency of 5 and two ports on Intel server cores, where
/// 8 accumulators read 0.72 of the peak); returns MACs.
pub(super) fn int8_peak_loop(level: KernelLevel, iters: u64) -> Option<u64> {
    if !level.is_supported() {
        return None;
    }
    // SAFETY: the level (and so each loop's features) was checked just above.
    unsafe {
        match level {
            KernelLevel::Avx512Vnni => Some(peak_vnni(iters / 16) * 64 * 16),
            KernelLevel::Avx512 => Some(peak_avx512(iters / 16) * 64 * 16),
            KernelLevel::Avx2 => Some(peak_avx2(iters / 8) * 32 * 8),
            _ => None,
        }
    }
}

macro_rules! peak_loop {
    ($name:ident, $feat:literal, $acc:literal, $zero:ident, $set1:ident, $op:expr, $add:ident,
     $store:ident, $vi:ty) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name(n: u64) -> u64 {
            let mut a = $set1(std::hint::black_box(0x0102_0304));
            let step = $set1(std::hint::black_box(1));
            let mut bs: [$vi; 8] = [$zero(); 8];
            for (i, b) in bs.iter_mut().enumerate() {
                *b = $set1(std::hint::black_box(0x0101_0101 * i as i32));
            }
            let mut acc: [$vi; $acc] = [$zero(); $acc];
            for _ in 0..n {
                // A new operand every iteration, so products cannot be hoisted out of the
                // loop. (An add, not `black_box`: a round trip through memory each iteration
                // put a store-forwarding latency on the loop and read ~2/3 of the real peak.)
                a = $add(a, step);
                for (i, x) in acc.iter_mut().enumerate() {
                    *x = $op(*x, a, bs[i % 8]);
                }
            }
            let mut out = [0i32; 8 * $acc];
            for (i, x) in acc.iter().enumerate() {
                $store(out.as_mut_ptr().add(i * 8) as *mut _, *x);
            }
            std::hint::black_box(out);
            n
        }
    };
}

// `maddubs` accumulating its pair sums in i16, as the panel kernels do within a block: the
// multiply instruction's own throughput. (Widening every product with `madd`, as the loop did
// before, put a second multiply-pipe instruction on each and read half the peak on Zen 2.)
#[inline(always)]
unsafe fn maddubs256(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi16(acc, _mm256_maddubs_epi16(a, b))
}

#[inline(always)]
unsafe fn maddubs512(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    _mm512_add_epi16(acc, _mm512_maddubs_epi16(a, b))
}

#[inline(always)]
unsafe fn store_lo256(p: *mut __m256i, v: __m512i) {
    _mm256_storeu_si256(p, _mm512_castsi512_si256(v))
}

peak_loop!(
    peak_avx2,
    "avx2,fma",
    8,
    _mm256_setzero_si256,
    _mm256_set1_epi32,
    maddubs256,
    _mm256_add_epi32,
    _mm256_storeu_si256,
    __m256i
);
peak_loop!(
    peak_avx512,
    "avx2,fma,avx512f,avx512bw,avx512vl",
    16,
    _mm512_setzero_si512,
    _mm512_set1_epi32,
    maddubs512,
    _mm512_add_epi32,
    store_lo256,
    __m512i
);
peak_loop!(
    peak_vnni,
    "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni",
    16,
    _mm512_setzero_si512,
    _mm512_set1_epi32,
    _mm512_dpbusd_epi32,
    _mm512_add_epi32,
    store_lo256,
    __m512i
);
