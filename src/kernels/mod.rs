//! Matrix kernels over weights stored in the file's own formats.
//!
//! A [`MatRef`] is a zero-copy view of a `[rows, cols]` weight (torch layout: out × in) in any
//! supported type. [`matmul`] computes `y[t, r] = Σ_c W[r, c] · x[t, c]` for a batch of token
//! rows; quantized weights are multiplied against activations quantized once per call to Q8_0.

pub mod gemm_f32;
pub mod scalar;

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, TensorView};
use crate::quant::{self, BlockQ4_0, BlockQ8_0, QK};
use half::{bf16, f16};
use rayon::prelude::*;

/// A 2-D weight matrix view: `rows` outputs, each a contiguous row of `cols` inputs.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// Storage type.
    pub ty: GgmlType,
    /// Output features.
    pub rows: usize,
    /// Input features (row length).
    pub cols: usize,
    /// Row-major data, `rows * row_bytes(cols)` bytes.
    pub data: &'a [u8],
}

impl<'a> MatRef<'a> {
    /// Views a 2-D tensor; its ggml shape is `[cols, rows]`.
    pub fn from_view(view: TensorView<'a>) -> Result<Self> {
        if view.shape.len() != 2 {
            return Err(Error::tensor(
                view.name,
                format!("expected a matrix, found shape {:?}", view.shape),
            ));
        }
        if !matches!(
            view.ty,
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0 | GgmlType::Q4_0
        ) {
            return Err(Error::tensor(
                view.name,
                format!("type {} is not supported for matrices", view.ty),
            ));
        }
        Ok(MatRef {
            ty: view.ty,
            rows: view.shape[1],
            cols: view.shape[0],
            data: view.data,
        })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.cols).expect("validated at load")
    }

    /// The raw bytes of row `r`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Expands row `r` into f32 (embedding lookups).
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.cols);
        let raw = self.row(r);
        match self.ty {
            GgmlType::F32 => out.copy_from_slice(bytemuck::cast_slice(raw)),
            GgmlType::F16 => {
                for (o, h) in out.iter_mut().zip(cast::<f16>(raw)) {
                    *o = h.to_f32();
                }
            }
            GgmlType::BF16 => {
                for (o, h) in out.iter_mut().zip(cast::<bf16>(raw)) {
                    *o = h.to_f32();
                }
            }
            GgmlType::Q8_0 => quant::dequantize_row_q8_0(cast(raw), out),
            GgmlType::Q4_0 => quant::dequantize_row_q4_0(cast(raw), out),
            other => unreachable!("{other} rejected by MatRef::from_view"),
        }
    }
}

fn cast<T: bytemuck::Pod>(raw: &[u8]) -> &[T] {
    // Tensor data is 32-byte aligned in the file and rows are whole blocks, so this cannot fail
    // for validated views; a misaligned buffer would be a bug, not bad input.
    bytemuck::cast_slice(raw)
}

/// Quantizes each of `n_tokens` activation rows of length `cols` to Q8_0.
pub fn quantize_activations(x: &[f32], cols: usize) -> Vec<BlockQ8_0> {
    let mut blocks = vec![bytemuck::Zeroable::zeroed(); x.len() / QK];
    blocks
        .par_chunks_mut(cols / QK)
        .zip(x.par_chunks(cols))
        .for_each(|(b, row)| quant::quantize_row_q8_0(row, b));
    blocks
}

/// `y[t * rows + r] = Σ_c W[r, c] · x[t * cols + c]` for `t < n_tokens`.
pub fn matmul(w: &MatRef, x: &[f32], n_tokens: usize, y: &mut [f32]) {
    assert_eq!(x.len(), n_tokens * w.cols, "matmul: activation shape");
    assert_eq!(y.len(), n_tokens * w.rows, "matmul: output shape");
    let xq = match w.ty {
        GgmlType::Q8_0 | GgmlType::Q4_0 => quantize_activations(x, w.cols),
        _ => Vec::new(),
    };
    let bpr = w.cols / QK;
    let dot = |r: usize, t: usize| -> f32 {
        let raw = w.row(r);
        match w.ty {
            GgmlType::F32 => scalar::dot_f32(cast(raw), &x[t * w.cols..(t + 1) * w.cols]),
            GgmlType::F16 => scalar::dot_f16_f32(cast(raw), &x[t * w.cols..(t + 1) * w.cols]),
            GgmlType::BF16 => scalar::dot_bf16_f32(cast(raw), &x[t * w.cols..(t + 1) * w.cols]),
            GgmlType::Q8_0 => {
                scalar::dot_q8_0_q8_0(cast::<BlockQ8_0>(raw), &xq[t * bpr..(t + 1) * bpr])
            }
            GgmlType::Q4_0 => {
                scalar::dot_q4_0_q8_0(cast::<BlockQ4_0>(raw), &xq[t * bpr..(t + 1) * bpr])
            }
            other => unreachable!("{other} rejected by MatRef::from_view"),
        }
    };
    if n_tokens == 1 {
        y.par_chunks_mut(64).enumerate().for_each(|(chunk, ys)| {
            for (i, yv) in ys.iter_mut().enumerate() {
                *yv = dot(chunk * 64 + i, 0);
            }
        });
    } else {
        y.par_chunks_mut(w.rows).enumerate().for_each(|(t, ys)| {
            for (r, yv) in ys.iter_mut().enumerate() {
                *yv = dot(r, t);
            }
        });
    }
}
