//! Source rows (bf16/f16/f32) -> output rows (f32/f16/q8_0/q4_0), in parallel over rows and in
//! bounded groups, so memory stays a few tens of megabytes whatever the tensor size.

use super::weights::{decode_floats, float_dtype_size};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::quant::{self, BlockQ4_0, BlockQ8_0, QK};
use bytemuck::Zeroable;
use rayon::prelude::*;
use safetensors::Dtype;
use std::io::Write;

/// Source elements converted per group (each group is converted in parallel, then written).
const GROUP_ELEMENTS: usize = 4 << 20;

/// Converts one tensor of `row_len`-element rows and writes it to `out`. Non-finite source
/// values are refused (naming the element), as are values that overflow f16 when the output
/// is f16. `progress` is called with the source bytes done after each group.
pub fn write_tensor(
    name: &str,
    dtype: Dtype,
    src: &[u8],
    row_len: usize,
    ty: GgmlType,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let in_size = float_dtype_size(dtype)
        .ok_or_else(|| Error::tensor(name, format!("dtype {dtype:?} is not supported")))?;
    let out_row = ty
        .row_bytes(row_len)
        .filter(|_| {
            matches!(
                ty,
                GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0 | GgmlType::Q4_0
            )
        })
        .ok_or_else(|| Error::tensor(name, format!("cannot write rows of {row_len} as {ty}")))?;
    let in_row = row_len * in_size;
    if row_len == 0 || src.len() % in_row != 0 {
        return Err(Error::tensor(name, "data is not a whole number of rows"));
    }
    let rows_per_group = (GROUP_ELEMENTS / row_len).max(1);
    let mut buf = Vec::new();
    for (g, group) in src.chunks(rows_per_group * in_row).enumerate() {
        let rows = group.len() / in_row;
        buf.clear();
        buf.resize(rows * out_row, 0u8);
        let first_row = g * rows_per_group;
        buf.par_chunks_mut(out_row)
            .zip(group.par_chunks(in_row))
            .enumerate()
            .try_for_each_init(
                || vec![0f32; row_len],
                |x, (r, (dst, s))| -> std::result::Result<(), (usize, f32, &'static str)> {
                    decode_floats(dtype, s, x);
                    if let Some(c) = x.iter().position(|v| !v.is_finite()) {
                        return Err((r * row_len + c, x[c], "non-finite weights are refused"));
                    }
                    encode_row(x, ty, dst)
                        .map_err(|c| (r * row_len + c, x[c], "overflows f16; use --type f32"))
                },
            )
            .map_err(|(i, v, why)| {
                Error::tensor(
                    name,
                    format!("element {} is {v}: {why}", first_row * row_len + i),
                )
            })?;
        out.write_all(&buf)
            .map_err(|e| Error::io("<gguf output>", e))?;
        progress(group.len() as u64);
    }
    Ok(())
}

/// Encodes one row; on f16 overflow returns the offending column.
fn encode_row(x: &[f32], ty: GgmlType, dst: &mut [u8]) -> std::result::Result<(), usize> {
    match ty {
        GgmlType::F32 => {
            for (d, v) in dst.chunks_exact_mut(4).zip(x) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (c, (d, v)) in dst.chunks_exact_mut(2).zip(x).enumerate() {
                let h = quant::f32_to_f16(*v);
                if h.is_infinite() {
                    return Err(c);
                }
                d.copy_from_slice(&h.to_bits().to_le_bytes());
            }
        }
        GgmlType::Q8_0 => {
            let mut blocks = vec![BlockQ8_0::zeroed(); x.len() / QK];
            quant::quantize_row_q8_0(x, &mut blocks);
            dst.copy_from_slice(bytemuck::cast_slice(&blocks));
        }
        GgmlType::Q4_0 => {
            let mut blocks = vec![BlockQ4_0::zeroed(); x.len() / QK];
            quant::quantize_row_q4_0(x, &mut blocks);
            dst.copy_from_slice(bytemuck::cast_slice(&blocks));
        }
        // `write_tensor` only calls with the four types above.
        _ => return Err(0),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dtype: Dtype, src: &[u8], row: usize, ty: GgmlType) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut done = 0;
        write_tensor("t", dtype, src, row, ty, &mut out, &mut |n| done += n)?;
        assert_eq!(done as usize, src.len());
        Ok(out)
    }

    #[test]
    fn bf16_to_f32_is_exact() {
        let vals: Vec<u16> = (0..64u16).map(|i| 0x3f80 + i * 3).collect();
        let src: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let out = run(Dtype::BF16, &src, 32, GgmlType::F32).unwrap();
        for (i, v) in vals.iter().enumerate() {
            let got = f32::from_le_bytes(out[i * 4..i * 4 + 4].try_into().unwrap());
            assert_eq!(got.to_bits(), u32::from(*v) << 16);
        }
    }

    #[test]
    fn q8_0_matches_the_reference_quantizer() {
        let x: Vec<f32> = (0..128)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let out = run(Dtype::F32, &src, 64, GgmlType::Q8_0).unwrap();
        let mut blocks = vec![BlockQ8_0::zeroed(); 4];
        quant::quantize_row_q8_0(&x, &mut blocks);
        assert_eq!(out, bytemuck::cast_slice::<_, u8>(&blocks));
    }

    #[test]
    fn non_finite_and_overflow_are_refused() {
        let mut x = vec![1.0f32; 64];
        x[40] = f32::NAN;
        let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let err = run(Dtype::F32, &src, 32, GgmlType::Q8_0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("element 40"), "{err}");
        x[40] = 1e6;
        let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let err = run(Dtype::F32, &src, 32, GgmlType::F16)
            .unwrap_err()
            .to_string();
        assert!(err.contains("overflows f16"), "{err}");
        assert!(run(Dtype::F32, &src, 32, GgmlType::F32).is_ok());
    }
}
