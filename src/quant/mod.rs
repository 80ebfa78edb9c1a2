//! Weight block formats with ggml's exact layouts, and their reference (scalar) quantizers.
//!
//! The reference functions here are the *definition* of each format: they are bit-identical to
//! ggml's `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref` (checked against gguf-py's
//! `gguf.quants` in `tests/quant_fixtures.rs`), and every SIMD kernel is tested against them.

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufFile, TensorView};
use bytemuck::{Pod, Zeroable};
use half::{bf16, f16};

/// Elements per Q8_0 / Q4_0 block.
pub const QK: usize = 32;

/// Q8_0: one f16 scale and 32 signed bytes; value = qs\[i\] * d.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quantized values.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// Q4_0: one f16 scale and 16 bytes of nibbles; byte j holds element j (low nibble) and
/// element j+16 (high nibble); value = (q - 8) * d.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// ggml's `quantize_row_q8_0_ref`. `x.len()` must be a multiple of [`QK`].
pub fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        out.len() * QK,
        "q8_0: row length must be blocks * 32"
    );
    for (block, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f16::from_f32(d);
        for (q, &v) in block.qs.iter_mut().zip(xs) {
            *q = round_half_away(v * id) as i8;
        }
    }
}

/// C's `roundf` (halves away from zero) for |x| < 2^23, without a libm call, so the loop
/// vectorizes; NaN becomes 0 (`as` saturates), where C would be undefined.
#[inline(always)]
fn round_half_away(x: f32) -> f32 {
    let t = (x as i32) as f32;
    let f = x - t; // exact: t is x truncated
    if f >= 0.5 {
        t + 1.0
    } else if f <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// ggml's `quantize_row_q4_0_ref`. `x.len()` must be a multiple of [`QK`].
pub fn quantize_row_q4_0(x: &[f32], out: &mut [BlockQ4_0]) {
    assert_eq!(
        x.len(),
        out.len() * QK,
        "q4_0: row length must be blocks * 32"
    );
    for (block, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        // The signed value of largest magnitude (first one on ties) sets the scale, so that it
        // maps exactly onto -8 and the asymmetric range [-8, 7] is used in full.
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in xs {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f16::from_f32(d);
        for j in 0..QK / 2 {
            // C's `(int8_t)(x + 8.5f)` truncates toward zero.
            let lo = ((xs[j] * id + 8.5) as i8).min(15) as u8;
            let hi = ((xs[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
            block.qs[j] = lo | (hi << 4);
        }
    }
}

/// Expands Q8_0 blocks into f32.
pub fn dequantize_row_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) {
    assert_eq!(out.len(), blocks.len() * QK);
    for (block, ys) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block.d.to_f32();
        for (y, &q) in ys.iter_mut().zip(&block.qs) {
            *y = q as f32 * d;
        }
    }
}

/// Expands Q4_0 blocks into f32.
pub fn dequantize_row_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) {
    assert_eq!(out.len(), blocks.len() * QK);
    for (block, ys) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = block.d.to_f32();
        for j in 0..QK / 2 {
            ys[j] = ((block.qs[j] & 0x0f) as i32 - 8) as f32 * d;
            ys[j + QK / 2] = ((block.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// f32 -> f16, round to nearest even (ggml's `GGML_FP32_TO_FP16`).
pub fn f32_to_f16(x: f32) -> f16 {
    f16::from_f32(x)
}

/// f32 -> bf16 as ggml's `ggml_compute_fp32_to_bf16`: round to nearest even, NaN kept quiet.
pub fn f32_to_bf16(x: f32) -> bf16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return bf16::from_bits(((u >> 16) | 64) as u16);
    }
    bf16::from_bits((u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16)
}

/// Byte offsets of the f16 scales inside one block of `ty`, or `None` for types without
/// block scales (plain floats).
fn f16_scale_offsets(ty: GgmlType) -> Option<&'static [usize]> {
    match ty {
        GgmlType::Q8_0 | GgmlType::Q4_0 => Some(&[0]),
        // block_q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales, 128 bytes of nibbles.
        GgmlType::Q4K => Some(&[0, 2]),
        // block_q6_K: 128 + 64 bytes of quants, 16 i8 scales, then f16 d.
        GgmlType::Q6K => Some(&[208]),
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => None,
    }
}

/// Checks that every f16 block scale of a quantized tensor is finite.
///
/// The GGUF reader validates where a tensor lies but cannot judge its contents; a NaN or
/// infinite scale (a corrupt or hostile file) would silently turn whole rows of every matrix
/// product into NaN. This reads the 2-byte scale of each Q8_0 / Q4_0 block (2 of every 34 or
/// 18 bytes; `d` and `dmin` of Q4_K, `d` of Q6_K) without any alignment assumption. Plain
/// float tensors pass unchecked: judging them would mean reading every byte. Although it
/// reads about 1/17 of the bytes, the blocks are smaller than a cache line, so on a cold map
/// it faults in every page of the tensor once: call it at load time when that one pass is
/// acceptable (see [`validate_all_quantized_scales`]).
///
/// The error names the tensor, the block, its row, and the scale found.
pub fn validate_quantized_scales(view: &TensorView<'_>) -> Result<()> {
    let Some(offsets) = f16_scale_offsets(view.ty) else {
        return Ok(());
    };
    let block_bytes = view.ty.block_bytes();
    let blocks_per_row = (view.shape.first().copied().unwrap_or(0) / view.ty.block_len()).max(1);
    for (i, block) in view.data.chunks_exact(block_bytes).enumerate() {
        for &at in offsets {
            let bits = u16::from_le_bytes([block[at], block[at + 1]]);
            let d = f16::from_bits(bits);
            if !d.is_finite() {
                return Err(Error::tensor(
                    view.name,
                    format!(
                        "{} block {i} (row {}) has a non-finite scale {} (f16 bits {bits:#06x}); \
                         the file is corrupt",
                        view.ty,
                        i / blocks_per_row,
                        d.to_f32()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Runs [`validate_quantized_scales`] over every tensor of a file, tensors in parallel.
pub fn validate_all_quantized_scales(file: &GgufFile) -> Result<()> {
    use rayon::prelude::*;
    file.tensors()
        .par_iter()
        .try_for_each(|info| validate_quantized_scales(&file.view(info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_roundtrip_is_close() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.1)
            .collect();
        let mut b = vec![BlockQ8_0::zeroed(); 2];
        quantize_row_q8_0(&x, &mut b);
        let mut y = vec![0.0; 64];
        dequantize_row_q8_0(&b, &mut y);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1.1 / 127.0 * 0.5 + 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn q4_0_maps_signed_max_to_minus_eight() {
        let mut x = vec![0.5f32; 32];
        x[3] = -4.0;
        let mut b = vec![BlockQ4_0::zeroed(); 1];
        quantize_row_q4_0(&x, &mut b);
        assert_eq!(b[0].qs[3] & 0x0f, 0);
        let mut y = vec![0.0; 32];
        dequantize_row_q4_0(&b, &mut y);
        assert_eq!(y[3], -4.0);
    }

    #[test]
    fn zero_block_has_zero_scale() {
        let x = vec![0.0f32; 32];
        let mut b8 = vec![BlockQ8_0::zeroed(); 1];
        quantize_row_q8_0(&x, &mut b8);
        assert_eq!(b8[0].d.to_f32(), 0.0);
        assert!(b8[0].qs.iter().all(|&q| q == 0));
        let mut b4 = vec![BlockQ4_0::zeroed(); 1];
        quantize_row_q4_0(&x, &mut b4);
        assert!(b4[0].qs.iter().all(|&q| q == 0x88));
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0).to_bits(), 0x3f80);
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to even.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)).to_bits(), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)).to_bits(), 0x3f82);
        assert!(f32_to_bf16(f32::NAN).to_f32().is_nan());
    }

    #[test]
    fn scale_validation_reads_each_formats_scale_position() {
        use crate::gguf::TensorView;
        let nan = 0x7e00u16.to_le_bytes();
        let check = |ty: GgmlType, data: &[u8]| {
            let shape = [ty.block_len() * (data.len() / ty.block_bytes())];
            validate_quantized_scales(&TensorView {
                name: "t",
                ty,
                shape: &shape,
                data,
            })
        };
        // Q6_K keeps its f16 d at the end of the block; byte 0 is a quant, not a scale.
        let mut q6 = vec![0u8; 2 * 210];
        q6[210..212].copy_from_slice(&nan);
        check(GgmlType::Q6K, &q6).unwrap();
        q6[210 + 208..210 + 210].copy_from_slice(&nan);
        let msg = check(GgmlType::Q6K, &q6).unwrap_err().to_string();
        assert!(msg.contains("block 1"), "{msg}");
        // Q4_K has two scales, d and dmin.
        let mut q4k = vec![0u8; 144];
        q4k[2..4].copy_from_slice(&nan);
        assert!(check(GgmlType::Q4K, &q4k).is_err());
        // A view at an odd address: scales are read bytewise, never through an aligned cast.
        let mut buf = [0u8; 2 + 34];
        let odd = 1 - buf.as_ptr() as usize % 2;
        buf[odd + 1] = 0x7c;
        assert!(check(GgmlType::Q8_0, &buf[odd..odd + 34]).is_err());
        check(GgmlType::F32, &[0xff; 8]).unwrap();
    }
}
