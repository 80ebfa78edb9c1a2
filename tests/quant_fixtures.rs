//! The reference quantizers against gguf-py's `gguf.quants` (bytes committed by
//! `tools/make_reference.py`): bit-identical Q8_0 / Q4_0 blocks, f16 and bf16 conversions,
//! and dequantization.

use std::path::Path;
use t5g::quant::{self, BlockQ4_0, BlockQ8_0, QK};

fn read(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/quant")
            .join(name),
    )
    .unwrap()
}

fn f32s(name: &str) -> Vec<f32> {
    read(name)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn q8_0_and_q4_0_blocks_are_bit_identical_to_gguf_py() {
    let input = f32s("input.f32");
    assert_eq!(input.len() % QK, 0);
    let mut q8 = vec![bytemuck::Zeroable::zeroed(); input.len() / QK];
    quant::quantize_row_q8_0(&input, &mut q8);
    assert_eq!(
        bytemuck::cast_slice::<BlockQ8_0, u8>(&q8),
        read("q8_0.bin").as_slice()
    );
    let mut q4 = vec![bytemuck::Zeroable::zeroed(); input.len() / QK];
    quant::quantize_row_q4_0(&input, &mut q4);
    assert_eq!(
        bytemuck::cast_slice::<BlockQ4_0, u8>(&q4),
        read("q4_0.bin").as_slice()
    );

    let mut back = vec![0.0f32; input.len()];
    quant::dequantize_row_q8_0(&q8, &mut back);
    assert_eq!(back, f32s("q8_0_dequant.f32"));
    quant::dequantize_row_q4_0(&q4, &mut back);
    assert_eq!(back, f32s("q4_0_dequant.f32"));
}

/// NaN payloads may differ (numpy keeps signaling NaNs' bits, `half` quiets them; the
/// converter refuses NaN weights anyway): NaN must stay NaN, everything else bit-identical.
#[test]
fn f16_and_bf16_conversions_match_gguf_py() {
    for (input, f16_file, bf16_file) in [
        ("input.f32", "f16.bin", "bf16.bin"),
        ("special.f32", "special_f16.bin", "special_bf16.bin"),
    ] {
        let x = f32s(input);
        let want_f16: Vec<u16> = read(f16_file)
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let want_bf16: Vec<u16> = read(bf16_file)
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        for (i, &v) in x.iter().enumerate() {
            let (h, b) = (quant::f32_to_f16(v), quant::f32_to_bf16(v));
            if v.is_nan() {
                assert!(
                    h.is_nan() && half::f16::from_bits(want_f16[i]).is_nan(),
                    "{input}[{i}] f16 NaN"
                );
                assert!(
                    b.is_nan() && half::bf16::from_bits(want_bf16[i]).is_nan(),
                    "{input}[{i}] bf16 NaN"
                );
            } else {
                assert_eq!(h.to_bits(), want_f16[i], "{input}[{i}] = {v:e} -> f16");
                assert_eq!(b.to_bits(), want_bf16[i], "{input}[{i}] = {v:e} -> bf16");
            }
        }
    }
}
