//! Matrix kernels over weights stored in the file's own formats.
//!
//! A [`MatRef`] is a zero-copy view of a `[rows, cols]` weight (torch layout: out × in) in any
//! supported type. [`matmul`] computes `y[t, r] = Σ_c W[r, c] · x[t, c]` for a batch of token
//! rows; quantized weights are multiplied against activations quantized once per call to Q8_0.

//!
//! Kernels come in [`KernelLevel`]s (scalar, AVX2, AVX-512, AVX-512 VNNI, NEON, dotprod), chosen
//! at run time from the CPU's features ([`level`], [`set_level`], `T5G_KERNEL`). Every level
//! computes each output element in one thread in a fixed order, so results do not depend on the
//! thread count; levels differ from each other only by fp32 rounding (the integer block sums
//! are exact).
//!
//! Two paths for quantized weights:
//! - *dot*: one row · one activation vector, block by block like ggml's `vec_dot_q4_0_q8_0`.
//!   Used for the decoder step (`n_tokens` < [`PANEL_MIN_TOKENS`]), where reading each weight
//!   byte once is all that matters; rows are split across threads in a few big chunks. On x86
//!   the *rows* kernels do 8 rows per pass (lane r = row r, the activation block loaded once
//!   for all 8) with the same bits as the one-row dot, and prefetch the rows two groups ahead:
//!   8 interleaved row streams are more than the hardware prefetchers follow.
//! - *panel*: for the encoder, `R` (8, 16 or 32) weight rows are repacked per call into a
//!   lane-interleaved, nibble-expanded panel that stays in L1 while every token streams past it;
//!   the micro-kernel (`vpdpbusd`/`maddubs` on x86, `sdot` by element or `smlal` on aarch64)
//!   produces `R` rows × 2–6 tokens at once.
//!
//! `q8_products` runs the same panel kernels on two activation matrices quantized on the fly
//! (the encoder's int8 attention).

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod ceiling;
pub mod gemm_f32;
mod level;
pub(crate) mod q8_products;
pub mod scalar;
pub mod vec_f32;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use level::{detect, level, set_level, supported_levels, KernelLevel};

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, TensorView};
use crate::quant::{self, BlockQ4_0, BlockQ8_0, QK};
use half::{bf16, f16};
use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;

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
    let k = kernels_for(level()).expect("level() only returns supported levels");
    quantize_into(k, x, cols, &mut blocks);
    blocks
}

fn quantize_into(k: &Kernels, x: &[f32], cols: usize, blocks: &mut [BlockQ8_0]) {
    let bpr = cols / QK;
    if x.len() <= 64 * cols {
        (k.quantize_q8_0)(x, blocks);
    } else {
        blocks
            .par_chunks_mut(16 * bpr)
            .zip(x.par_chunks(16 * cols))
            .for_each(|(b, rows)| (k.quantize_q8_0)(rows, b));
    }
}

/// Activations quantized once per matmul call, plus what the panel kernels need per block.
#[derive(Default)]
pub(crate) struct QActs {
    /// Blocks per token.
    pub bpr: usize,
    /// `n_tokens * bpr` blocks.
    pub q: Vec<BlockQ8_0>,
    /// The block scales as f32 (panel path only).
    pub d: Vec<f32>,
    /// `-offset · Σ qs` of each block (panel path only): the exact correction for the panel's
    /// unsigned weights (`offset` = [`Panel::offset`] of the weight type), where the panel
    /// kernels start each block's integer sum.
    pub sum: Vec<i32>,
    /// The offset `sum` was made for (0 without panel data).
    pub offset: i32,
}

impl QActs {
    /// Quantizes `x`; `panel_offset` (the weight type's [`Panel::offset`]) also fills `d` and
    /// `sum` for the panel kernels.
    fn quantize(&mut self, k: &Kernels, x: &[f32], cols: usize, panel_offset: Option<i32>) {
        let n = x.len() / QK;
        let (Some(offset), Some(panel)) = (panel_offset, k.panel) else {
            self.reset_for(n, cols, None);
            return quantize_into(k, x, cols, &mut self.q);
        };
        self.reset_for(n, cols, Some(offset));
        let per_task = 16 * self.bpr;
        if n <= 4 * per_task {
            return (panel.quantize)(x, &mut self.q, &mut self.d, &mut self.sum, offset);
        }
        self.q
            .par_chunks_mut(per_task)
            .zip(self.d.par_chunks_mut(per_task))
            .zip(self.sum.par_chunks_mut(per_task))
            .zip(x.par_chunks(per_task * QK))
            .for_each(|(((q, d), sum), x)| (panel.quantize)(x, q, d, sum, offset));
    }

    /// [`quantize`](Self::quantize) in this thread alone, for callers that already run in
    /// parallel.
    fn quantize_here(&mut self, k: &Kernels, x: &[f32], cols: usize, panel_offset: Option<i32>) {
        let n = x.len() / QK;
        match (panel_offset, k.panel) {
            (Some(offset), Some(panel)) => {
                self.reset_for(n, cols, Some(offset));
                (panel.quantize)(x, &mut self.q, &mut self.d, &mut self.sum, offset)
            }
            _ => {
                self.reset_for(n, cols, None);
                (k.quantize_q8_0)(x, &mut self.q)
            }
        }
    }

    /// Sizes the buffers for `n` blocks of rows of `cols`, with panel data for `panel_offset`.
    /// What the last call left in them stays (only new elements are zeroed): every quantizer
    /// overwrites all `n` blocks.
    fn reset_for(&mut self, n: usize, cols: usize, panel_offset: Option<i32>) {
        self.bpr = cols / QK;
        self.q.resize(n, bytemuck::Zeroable::zeroed());
        self.offset = panel_offset.unwrap_or(0);
        let panel_len = if panel_offset.is_some() { n } else { 0 };
        self.d.resize(panel_len, 0.0);
        self.sum.resize(panel_len, 0);
    }

    /// [`quantize`](Self::quantize) for the panel kernels of an input that `produce` computes,
    /// a run of tokens at a time into this thread's buffer (see [`matmul_many_produced`]).
    fn quantize_produced(
        &mut self,
        panel: &PanelKernels,
        n_tokens: usize,
        cols: usize,
        offset: i32,
        produce: Producer,
    ) {
        let n = n_tokens * (cols / QK);
        self.reset_for(n, cols, Some(offset));
        if n == 0 {
            return;
        }
        let run = (PRODUCED_VALUES / cols).max(1);
        let per_task = run * self.bpr;
        self.q
            .par_chunks_mut(per_task)
            .zip(self.d.par_chunks_mut(per_task))
            .zip(self.sum.par_chunks_mut(per_task))
            .enumerate()
            .for_each(|(i, ((q, d), sum))| {
                let tokens = i * run..i * run + q.len() / (cols / QK);
                with_buffer(&PRODUCED, |buf| {
                    if buf.len() < tokens.len() * cols {
                        buf.resize(tokens.len() * cols, 0.0);
                    }
                    let x = &mut buf[..tokens.len() * cols];
                    produce(tokens, x);
                    (panel.quantize)(x, q, d, sum, offset);
                })
            });
    }
}

/// Quantized weight rows repacked for a panel micro-kernel: for block `b`, 4-byte group `k`
/// (elements `4k..4k+4`) and panel row `i`, the unsigned bytes sit at `((b * 8 + k) * R + i) * 4`,
/// so one vector load holds the same 4 elements of `R` rows. Q4_0 nibbles are stored as 0..=15
/// (offset 8), Q8_0 bytes as `q ^ 0x80` = q + 128 (offset 128); the kernels subtract
/// `offset * Σ x` per block, exactly, in integers.
#[derive(Default)]
pub(crate) struct Panel {
    /// Rows per panel (the vector width in i32 lanes).
    pub rows: usize,
    /// Blocks per row.
    pub bpr: usize,
    /// 8 for Q4_0, 128 for Q8_0.
    pub offset: i32,
    /// `bpr * 32 * rows` bytes.
    pub qs: Vec<u8>,
    /// `bpr * rows` weight scales, `[b][i]`.
    pub d: Vec<f32>,
}

impl Panel {
    /// [`Panel::offset`] of Q4_0 weights: nibbles stored as 0..=15.
    pub const Q4_0_OFFSET: i32 = 8;
    /// [`Panel::offset`] of Q8_0 weights: bytes stored as q + 128.
    pub const Q8_0_OFFSET: i32 = 128;

    /// The offset of a quantized weight type's panel.
    fn offset_for(ty: GgmlType) -> i32 {
        if ty == GgmlType::Q4_0 {
            Self::Q4_0_OFFSET
        } else {
            Self::Q8_0_OFFSET
        }
    }

    /// Sizes the panel for `filled` of `rows` rows; rows past `filled` must read as zero.
    fn reset(&mut self, rows: usize, bpr: usize, offset: i32, filled: usize) {
        self.rows = rows;
        self.bpr = bpr;
        self.offset = offset;
        if filled < rows {
            self.qs.clear();
            self.d.clear();
        }
        self.qs.resize(bpr * QK * rows, 0);
        self.d.resize(bpr * rows, 0.0);
    }

    /// Fills the panel group by group in the order it is laid out: `group(blk, k)` gives the
    /// 4 unsigned bytes of elements `4k..4k + 4` of a weight block, as a little-endian u32.
    fn pack<B>(&mut self, w: &[B], d: impl Fn(&B) -> f16, group: impl Fn(&B, usize) -> u32) {
        let (rows, bpr) = (self.rows, self.bpr);
        let filled = w.len() / bpr;
        for b in 0..bpr {
            for i in 0..filled {
                self.d[b * rows + i] = d(&w[i * bpr + b]).to_f32();
            }
            for k in 0..8 {
                let dst = &mut self.qs[(b * 8 + k) * rows * 4..][..filled * 4];
                for (i, d4) in dst.chunks_exact_mut(4).enumerate() {
                    d4.copy_from_slice(&group(&w[i * bpr + b], k).to_le_bytes());
                }
            }
        }
    }

    /// The whole panel, as the micro-kernels read it.
    pub fn view(&self) -> PanelRef<'_> {
        self.blocks(0..self.bpr)
    }

    /// Blocks `blocks` of every row: a product over just those columns of the weight.
    pub fn blocks(&self, blocks: Range<usize>) -> PanelRef<'_> {
        let rows = self.rows;
        PanelRef {
            rows,
            bpr: blocks.len(),
            offset: self.offset,
            qs: &self.qs[blocks.start * QK * rows..blocks.end * QK * rows],
            d: &self.d[blocks.start * rows..blocks.end * rows],
        }
    }

    /// Packs `w.len() / bpr` (≤ rows) Q4_0 rows; missing rows stay zero.
    pub fn pack_q4_0(&mut self, rows: usize, bpr: usize, w: &[BlockQ4_0]) {
        self.reset(rows, bpr, Self::Q4_0_OFFSET, w.len() / bpr);
        // Groups 0..4 are low nibbles of bytes 4k.., groups 4..8 the high nibbles.
        self.pack(
            w,
            |blk| blk.d,
            |blk, k| {
                let j = 4 * (k % 4);
                let v =
                    u32::from_le_bytes([blk.qs[j], blk.qs[j + 1], blk.qs[j + 2], blk.qs[j + 3]]);
                (if k < 4 { v } else { v >> 4 }) & 0x0f0f_0f0f
            },
        );
    }

    /// Packs `w.len() / bpr` (≤ rows) Q8_0 rows; missing rows stay zero.
    pub fn pack_q8_0(&mut self, rows: usize, bpr: usize, w: &[BlockQ8_0]) {
        self.reset(rows, bpr, Self::Q8_0_OFFSET, w.len() / bpr);
        self.pack(
            w,
            |blk| blk.d,
            |blk, k| {
                let q = &blk.qs[4 * k..4 * k + 4];
                u32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]) ^ 0x8080_8080
            },
        );
    }
}

/// A run of consecutive blocks of a [`Panel`] (all of them, or a slice of the columns): what
/// the micro-kernels read, laid out as in the panel.
#[derive(Clone, Copy)]
pub(crate) struct PanelRef<'a> {
    /// Rows per panel.
    pub rows: usize,
    /// Blocks per row in this run.
    pub bpr: usize,
    /// See [`Panel::offset`].
    pub offset: i32,
    /// `bpr * 32 * rows` bytes.
    pub qs: &'a [u8],
    /// `bpr * rows` weight scales.
    pub d: &'a [f32],
}

/// `out[t * R + i] = Σ_b float(isum(b, i, t0 + t)) · d_w · d_x` for `t < nt` (1 to the
/// level's [`PanelKernels::tokens`]).
pub(crate) type PanelFn = fn(p: &PanelRef, x: &QActs, t0: usize, nt: usize, out: &mut [f32]);

/// Checks everything a panel micro-kernel reads and writes, so the kernels may use raw pointers.
pub(crate) fn check_panel(
    p: &PanelRef,
    x: &QActs,
    t0: usize,
    nt: usize,
    out: &[f32],
    rows: usize,
    tokens: usize,
) {
    let bpr = p.bpr;
    assert_eq!(p.rows, rows, "panel rows");
    assert_eq!(p.qs.len(), bpr * 32 * rows, "panel bytes");
    assert_eq!(p.d.len(), bpr * rows, "panel scales");
    assert_eq!(x.bpr, bpr, "activation blocks per token");
    assert_eq!(
        x.offset, p.offset,
        "activation sums made for this weight type"
    );
    assert!((1..=tokens).contains(&nt), "1..={tokens} tokens per call");
    let end = (t0 + nt) * bpr;
    assert!(
        x.q.len() >= end && x.d.len() >= end && x.sum.len() >= end,
        "tokens"
    );
    assert!(out.len() >= nt * rows, "panel output");
}

/// The lengths the quantizers' safe entries check: 32 values per block and, for the panel
/// kernels (`panel`), one scale and one sum per block.
pub(crate) fn check_quantize(x: &[f32], out: &[BlockQ8_0], panel: Option<(&[f32], &[i32])>) {
    assert_eq!(
        x.len(),
        out.len() * 32,
        "q8_0: row length must be blocks * 32"
    );
    if let Some((d, sum)) = panel {
        assert!(
            d.len() == out.len() && sum.len() == out.len(),
            "one d and sum per block"
        );
    }
}

/// Quantizes activation rows to Q8_0 and writes each block's f32 scale and `-offset · Σ q`
/// (see [`QActs`]): `(x, blocks, d, sum, offset)`.
pub(crate) type QuantizePanelFn = fn(&[f32], &mut [BlockQ8_0], &mut [f32], &mut [i32], i32);

/// The panel micro-kernels of one level.
#[derive(Clone, Copy)]
pub(crate) struct PanelKernels {
    /// Rows per panel.
    pub rows: usize,
    /// Most tokens per micro-kernel call (the tile's width).
    pub tokens: usize,
    /// Q4_0 weights.
    pub q4_0: PanelFn,
    /// Q8_0 weights, where the level can do it without saturating.
    pub q8_0: Option<PanelFn>,
    /// Packs `w.len() / bpr` (≤ rows) Q4_0 rows (a faster [`Panel::pack_q4_0`]).
    pub pack_q4_0: fn(&mut Panel, usize, usize, &[BlockQ4_0]),
    /// Packs Q8_0 rows (a faster [`Panel::pack_q8_0`]).
    pub pack_q8_0: fn(&mut Panel, usize, usize, &[BlockQ8_0]),
    /// Activation quantization that also fills [`QActs::d`] and [`QActs::sum`] for `offset`.
    pub quantize: QuantizePanelFn,
}

/// `out[r] = dot(w[r * x.len()..(r + 1) * x.len()], x)` for every row r of `w`.
pub(crate) type RowsQ8Fn = fn(w: &[BlockQ8_0], x: &[BlockQ8_0], out: &mut [f32]);

/// [`RowsQ8Fn`] for Q4_0 rows, given `x_sums[b] = -8 · Σ x[b].qs` (as [`QActs::sum`] holds it
/// for offset 8), the correction for the rows' unsigned nibbles, made once per call.
pub(crate) type RowsQ4Fn = fn(w: &[BlockQ4_0], x: &[BlockQ8_0], x_sums: &[i32], out: &mut [f32]);

/// The kernels of one level. Safe function pointers: the tables of SIMD levels are only handed
/// out by [`kernels_for`] after the CPU was checked for the level's features.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    pub dot_f16: fn(&[f16], &[f32]) -> f32,
    pub dot_bf16: fn(&[bf16], &[f32]) -> f32,
    /// Decoder order (see `scalar`): block b into lane b % 8.
    pub dot_q8_0: fn(&[BlockQ8_0], &[BlockQ8_0]) -> f32,
    pub dot_q4_0: fn(&[BlockQ4_0], &[BlockQ8_0]) -> f32,
    /// Sequential order, the panel kernels' order, for encoder calls without a panel.
    pub dot_q8_0_seq: fn(&[BlockQ8_0], &[BlockQ8_0]) -> f32,
    pub dot_q4_0_seq: fn(&[BlockQ4_0], &[BlockQ8_0]) -> f32,
    /// Decoder order for `out.len()` consecutive rows against one activation vector, with the
    /// bits of `dot_q8_0` per row (`None`: row by row through the dot).
    pub rows_q8_0: Option<RowsQ8Fn>,
    /// The same for Q4_0 weights (only in tables with a `panel`, whose quantizer makes the
    /// block sums it takes).
    pub rows_q4_0: Option<RowsQ4Fn>,
    /// Activation quantization, bit for bit [`quant::quantize_row_q8_0`].
    pub quantize_q8_0: fn(&[f32], &mut [BlockQ8_0]),
    pub panel: Option<PanelKernels>,
}

/// The kernel table of `level`, or an error if this CPU cannot run it.
pub(crate) fn kernels_for(level: KernelLevel) -> Result<&'static Kernels> {
    let table = match level {
        KernelLevel::Scalar => Some(&scalar::KERNELS),
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx2 | KernelLevel::Avx512 | KernelLevel::Avx512Vnni => x86::kernels(level),
        #[cfg(target_arch = "aarch64")]
        KernelLevel::Neon | KernelLevel::Dotprod => aarch64::kernels(level),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    table
        .ok_or_else(|| Error::invalid(format!("kernel level {level} is not supported by this CPU")))
}

/// From this many tokens on, quantized weights go through the panel kernels.
pub const PANEL_MIN_TOKENS: usize = 4;
/// Tasks per thread of one encoder-sized matrix product: the last task of a product runs
/// while other threads may already wait, so finer tasks shorten that tail (8 rather than 4:
/// 270m encoder +4–6% on 2 threads, interleaved A/B; 16 was no better than 8).
const PANEL_TASKS_PER_THREAD: usize = 8;
/// Tokens streamed past one packed panel before the next panel is packed.
const TOKEN_TILE: usize = 256;

thread_local! {
    static ACTS: Cell<QActs> = Cell::new(QActs::default());
    static PRODUCED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static PANEL: Cell<Panel> = Cell::new(Panel::default());
    static PAIRED_PANEL: Cell<Panel> = Cell::new(Panel::default());
}

/// Runs `f` with this thread's reusable buffer, taken out of its cell so that a nested call
/// (rayon work stealing inside `f`) finds an empty one instead of a borrowed one.
fn with_buffer<T: Default, R>(
    key: &'static std::thread::LocalKey<Cell<T>>,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    let mut buf = key.with(Cell::take);
    let r = f(&mut buf);
    key.with(|c| c.set(buf));
    r
}

/// `y[t * rows + r] = Σ_c W[r, c] · x[t * cols + c]` for `t < n_tokens`, at the current
/// [`level`].
pub fn matmul(w: &MatRef, x: &[f32], n_tokens: usize, y: &mut [f32]) {
    let k = kernels_for(level()).expect("level() only returns supported levels");
    matmul_with(k, w, x, n_tokens, y);
}

/// [`matmul`] at a given level (tests and benchmarks compare levels with it).
pub fn matmul_at(
    level: KernelLevel,
    w: &MatRef,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
) -> Result<()> {
    matmul_with(kernels_for(level)?, w, x, n_tokens, y);
    Ok(())
}

fn matmul_with(k: &Kernels, w: &MatRef, x: &[f32], n_tokens: usize, y: &mut [f32]) {
    check_shapes(w, x, n_tokens, y);
    if n_tokens == 0 || w.rows == 0 {
        return;
    }
    let cols = w.cols;
    match w.ty {
        GgmlType::F32 => {
            let wd: &[f32] = cast(w.data);
            for_rows_tokens(w.rows, n_tokens, y, |r, t| {
                (k.dot_f32)(&wd[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols])
            })
        }
        GgmlType::F16 => {
            let wd: &[f16] = cast(w.data);
            for_rows_tokens(w.rows, n_tokens, y, |r, t| {
                (k.dot_f16)(&wd[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols])
            })
        }
        GgmlType::BF16 => {
            let wd: &[bf16] = cast(w.data);
            for_rows_tokens(w.rows, n_tokens, y, |r, t| {
                (k.dot_bf16)(&wd[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols])
            })
        }
        GgmlType::Q8_0 | GgmlType::Q4_0 => quantized_matmuls(k, &[*w], x, n_tokens, &mut [y]),
        other => unreachable!("{other} rejected by MatRef::from_view"),
    }
}

/// [`matmul`] of several weights against the same activations: `ys[i] = ws[i] · x`. Weights
/// of one quantized type and width share one quantization of `x`, and encoder-sized calls run
/// all their panels in one parallel loop (the q/k/v projections, the MLP's gate and up).
pub fn matmul_many(ws: &[MatRef], x: &[f32], n_tokens: usize, ys: &mut [&mut [f32]]) {
    let k = kernels_for(level()).expect("level() only returns supported levels");
    matmul_many_with(k, ws, x, n_tokens, ys)
}

fn matmul_many_with(k: &Kernels, ws: &[MatRef], x: &[f32], n_tokens: usize, ys: &mut [&mut [f32]]) {
    assert_eq!(ws.len(), ys.len(), "matmul_many: one output per weight");
    let shared = ws.first().is_some_and(|w0| {
        matches!(w0.ty, GgmlType::Q4_0 | GgmlType::Q8_0)
            && ws.iter().all(|w| w.ty == w0.ty && w.cols == w0.cols)
    });
    if !shared {
        for (w, y) in ws.iter().zip(ys.iter_mut()) {
            matmul_with(k, w, x, n_tokens, y);
        }
        return;
    }
    for (w, y) in ws.iter().zip(ys.iter()) {
        check_shapes(w, x, n_tokens, y);
    }
    if n_tokens > 0 {
        quantized_matmuls(k, ws, x, n_tokens, ys);
    }
}

/// An input that is computed rather than stored: `produce(tokens, out)` writes the activations
/// of a run of tokens (`tokens.len() * cols` values) into `out`, on whichever thread calls it.
pub type Producer<'a> = &'a (dyn Fn(Range<usize>, &mut [f32]) + Sync);

/// Values of f32 input produced per task of [`matmul_many_produced`] (32 KiB: an L1's worth).
const PRODUCED_VALUES: usize = 8192;

/// [`matmul_many`] of an input of `n_tokens × cols` that `produce` computes (a norm of the
/// residual stream, the gated GELU) instead of a stored matrix. On the panel path each run of
/// tokens is produced into a small per-thread buffer and quantized while it is in L1, so the
/// f32 input is never written out whole nor read back from another core's cache (quantizing
/// stored inputs took 7% of an encode). Elsewhere (decoder-sized calls, levels without panel
/// kernels) the input is produced into `staging` and goes through [`matmul_many`]. The same bits
/// either way.
pub fn matmul_many_produced(
    ws: &[MatRef],
    n_tokens: usize,
    cols: usize,
    produce: Producer,
    staging: &mut Vec<f32>,
    ys: &mut [&mut [f32]],
) {
    let k = kernels_for(level()).expect("level() only returns supported levels");
    matmul_many_produced_with(k, ws, (produce, n_tokens, cols), staging, ys)
}

fn matmul_many_produced_with(
    k: &Kernels,
    ws: &[MatRef],
    (produce, n_tokens, cols): (Producer, usize, usize),
    staging: &mut Vec<f32>,
    ys: &mut [&mut [f32]],
) {
    assert_eq!(
        ws.len(),
        ys.len(),
        "matmul_many_produced: one output per weight"
    );
    let panel = ws.first().and_then(|w0| {
        let same = ws.iter().all(|w| w.ty == w0.ty && w.cols == cols);
        panel_for(k, w0.ty, n_tokens).filter(|_| same)
    });
    let Some((p, f, offset)) = panel else {
        staging.clear();
        staging.resize(n_tokens * cols, 0.0);
        produce(0..n_tokens, staging);
        return matmul_many_with(k, ws, staging, n_tokens, ys);
    };
    for (w, y) in ws.iter().zip(ys.iter()) {
        assert_eq!(y.len(), n_tokens * w.rows, "matmul: output shape");
        assert_eq!(w.data.len(), w.rows * w.row_bytes(), "matmul: weight size");
    }
    with_buffer(&ACTS, |acts| {
        acts.quantize_produced(&p, n_tokens, cols, offset, produce);
        gemm_panels(ws, acts, n_tokens, &p, f, ys)
    })
}

/// `y = combine(x·aᵀ, x·bᵀ)` for two weights of one shape (a gated MLP's gate and up, with
/// `combine(a_out, b_out)` writing its result into `a_out`), for an input that `produce`
/// computes as in [`matmul_many_produced`]. On the panel path each task packs the same panel
/// of both weights and combines their tiles while they are in L1, so neither product is
/// written out whole nor read back; elsewhere both go through [`matmul_many_produced`] (into
/// `y` and `b_out`) and are combined after. The same bits either way.
pub fn matmul_pair_produced(
    pair: [&MatRef; 2],
    input: (Producer, usize, usize),
    combine: fn(&mut [f32], &[f32]),
    staging: &mut Vec<f32>,
    b_out: &mut [f32],
    y: &mut [f32],
) {
    let k = kernels_for(level()).expect("level() only returns supported levels");
    matmul_pair_produced_with(k, pair, input, combine, staging, b_out, y)
}

fn matmul_pair_produced_with(
    k: &Kernels,
    [a, b]: [&MatRef; 2],
    (produce, n_tokens, cols): (Producer, usize, usize),
    combine: fn(&mut [f32], &[f32]),
    staging: &mut Vec<f32>,
    b_out: &mut [f32],
    y: &mut [f32],
) {
    assert!(
        a.ty == b.ty && a.rows == b.rows && a.cols == cols && b.cols == cols,
        "matmul_pair_produced: the two weights differ in type or shape"
    );
    assert_eq!(y.len(), n_tokens * a.rows, "matmul: output shape");
    let Some((p, f, offset)) = panel_for(k, a.ty, n_tokens) else {
        let input = (produce, n_tokens, cols);
        matmul_many_produced_with(k, &[*a, *b], input, staging, &mut [&mut *y, &mut *b_out]);
        return combine(y, b_out);
    };
    for w in [a, b] {
        assert_eq!(w.data.len(), w.rows * w.row_bytes(), "matmul: weight size");
    }
    with_buffer(&ACTS, |acts| {
        acts.quantize_produced(&p, n_tokens, cols, offset, produce);
        gemm_panel_pairs([a, b], acts, n_tokens, (&p, f), combine, y)
    })
}

/// The panel kernels of `k` and their micro-kernel for weights of type `ty`, with the offset
/// the activations' block sums are made for, where the level has them and a call of
/// `n_tokens` takes the panel path.
fn panel_for(k: &Kernels, ty: GgmlType, n_tokens: usize) -> Option<(PanelKernels, PanelFn, i32)> {
    let p = k.panel.filter(|_| n_tokens >= PANEL_MIN_TOKENS)?;
    let f = match ty {
        GgmlType::Q4_0 => Some(p.q4_0),
        GgmlType::Q8_0 => p.q8_0,
        _ => None,
    }?;
    Some((p, f, Panel::offset_for(ty)))
}

fn check_shapes(w: &MatRef, x: &[f32], n_tokens: usize, y: &[f32]) {
    assert_eq!(x.len(), n_tokens * w.cols, "matmul: activation shape");
    assert_eq!(y.len(), n_tokens * w.rows, "matmul: output shape");
    assert_eq!(w.data.len(), w.rows * w.row_bytes(), "matmul: weight size");
}

/// Products of quantized weights of one type and width (shapes checked by the caller) with
/// `x`, quantized once.
fn quantized_matmuls(
    k: &Kernels,
    ws: &[MatRef],
    x: &[f32],
    n_tokens: usize,
    ys: &mut [&mut [f32]],
) {
    let (ty, cols) = (ws[0].ty, ws[0].cols);
    let panel = panel_for(k, ty, n_tokens);
    // Calls the panel would take follow the panel's (sequential) order.
    let seq = n_tokens >= PANEL_MIN_TOKENS;
    let rows_q4_0 = k.rows_q4_0.filter(|_| !seq && ty == GgmlType::Q4_0);
    with_buffer(&ACTS, |acts| {
        let offset = Panel::offset_for(ty);
        let sums = panel.is_some() || rows_q4_0.is_some();
        acts.quantize(k, x, cols, sums.then_some(offset));
        if let Some((p, f, _)) = panel {
            return gemm_panels(ws, acts, n_tokens, &p, f, ys);
        }
        let acts: &QActs = acts;
        let bpr = cols / QK;
        let token = |t: usize| t * bpr..(t + 1) * bpr;
        for (w, y) in ws.iter().zip(ys.iter_mut()).filter(|(w, _)| w.rows > 0) {
            if ty == GgmlType::Q4_0 {
                let dot = if seq { k.dot_q4_0_seq } else { k.dot_q4_0 };
                let rows = rows_q4_0.map(|rows| {
                    move |w: &[BlockQ4_0], t, out: &mut [f32]| {
                        rows(w, &acts.q[token(t)], &acts.sum[token(t)], out)
                    }
                });
                matmul_blocks(w, &acts.q, n_tokens, rows, dot, y)
            } else {
                let dot = if seq { k.dot_q8_0_seq } else { k.dot_q8_0 };
                let rows = k.rows_q8_0.filter(|_| !seq).map(|rows| {
                    move |w: &[BlockQ8_0], t, out: &mut [f32]| rows(w, &acts.q[token(t)], out)
                });
                matmul_blocks(w, &acts.q, n_tokens, rows, dot, y)
            }
        }
    })
}

/// Quantized weights without a panel kernel: the 8-row kernel where the level has one and the
/// call is decoder-sized (`rows(weight rows, token, out)`), else one dot per (row, token) in
/// `dot`'s order.
fn matmul_blocks<B: bytemuck::Pod + Sync>(
    w: &MatRef,
    xq: &[BlockQ8_0],
    n_tokens: usize,
    rows: Option<impl Fn(&[B], usize, &mut [f32]) + Sync>,
    dot: fn(&[B], &[BlockQ8_0]) -> f32,
    y: &mut [f32],
) {
    let wd: &[B] = cast(w.data);
    let bpr = w.cols / QK;
    match rows {
        Some(rows) => for_row_blocks(w.rows, bpr, n_tokens, y, |r0, t, out| {
            rows(&wd[r0 * bpr..][..out.len() * bpr], t, out)
        }),
        None => for_rows_tokens(w.rows, n_tokens, y, |r, t| {
            dot(&wd[r * bpr..(r + 1) * bpr], &xq[t * bpr..(t + 1) * bpr])
        }),
    }
}

/// The output matrix written by several threads, each at indices no other thread writes.
struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: only used to write disjoint elements from different threads (see `set`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn new(y: &mut [f32]) -> Self {
        SharedOut {
            ptr: y.as_mut_ptr(),
            len: y.len(),
        }
    }

    /// # Safety
    /// No other thread reads or writes index `i` during the parallel section.
    unsafe fn set(&self, i: usize, v: f32) {
        assert!(i < self.len);
        // SAFETY: in bounds (checked above); exclusive per the caller's contract.
        unsafe { *self.ptr.add(i) = v }
    }

    /// Writes `run` at indices `i..i + run.len()`.
    ///
    /// # Safety
    /// No other thread reads or writes those indices during the parallel section.
    unsafe fn write_run(&self, i: usize, run: &[f32]) {
        assert!(i + run.len() <= self.len);
        // SAFETY: in bounds (checked above); exclusive per the caller's contract; `run` is a
        // thread-local tile, so it cannot overlap the output.
        unsafe {
            let (src, dst) = (run.as_ptr(), self.ptr.add(i));
            // Whole-panel runs as fixed-size copies (inlined moves, not a `memcpy` call).
            match run.len() {
                32 => std::ptr::copy_nonoverlapping(src.cast::<[f32; 32]>(), dst.cast(), 1),
                16 => std::ptr::copy_nonoverlapping(src.cast::<[f32; 16]>(), dst.cast(), 1),
                8 => std::ptr::copy_nonoverlapping(src.cast::<[f32; 8]>(), dst.cast(), 1),
                n => std::ptr::copy_nonoverlapping(src, dst, n),
            }
        }
    }
}

/// Asks the CPU to bring `bytes` into its caches ahead of use: a hint that changes no result.
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch_l2(bytes);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Row chunks for `rows` outputs: a few per thread (so a descheduled thread on a busy machine
/// costs little), aligned to `align` rows, at least `min` rows.
fn row_chunk(rows: usize, align: usize, min: usize) -> usize {
    let parts = rayon::current_num_threads() * 4;
    rows.div_ceil(parts).max(min).div_ceil(align) * align
}

/// `y[t * rows + r] = f(r, t)` with rows split across threads; every element is computed by
/// exactly one call, whatever the thread count.
fn for_rows_tokens(
    rows: usize,
    n_tokens: usize,
    y: &mut [f32],
    f: impl Fn(usize, usize) -> f32 + Sync,
) {
    if n_tokens == 1 {
        let chunk = row_chunk(rows, 16, 64);
        y.par_chunks_mut(chunk).enumerate().for_each(|(c, ys)| {
            for (i, v) in ys.iter_mut().enumerate() {
                *v = f(c * chunk + i, 0);
            }
        });
        return;
    }
    let out = SharedOut::new(y);
    let chunk = row_chunk(rows, 4, 4);
    (0..rows.div_ceil(chunk)).into_par_iter().for_each(|c| {
        let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(rows));
        for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
            for r in r0..r1 {
                for t in t0..(t0 + TOKEN_TILE).min(n_tokens) {
                    // SAFETY: row r belongs to this task alone.
                    unsafe { out.set(t * rows + r, f(r, t)) }
                }
            }
        }
    });
}

/// For each token `t` (a few: decoder-sized calls), `f(r0, t, out)` fills
/// `out = y[t * rows + r0..][..n]` for runs of rows split across threads.
fn for_row_blocks(
    rows: usize,
    bpr: usize,
    n_tokens: usize,
    y: &mut [f32],
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    // A run of rows is at least ~16 KiB of weights, so a thread's wake-up is worth it.
    let min_rows = (16384 / (bpr * 18).max(1)).max(16);
    let chunk = row_chunk(rows, 16, min_rows);
    for (t, yt) in y.chunks_mut(rows).enumerate().take(n_tokens) {
        if rows <= chunk {
            f(0, t, yt);
            continue;
        }
        yt.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, out)| f(c * chunk, t, out));
    }
}

/// The products of several weights with the same quantized activations, every panel of every
/// weight one item of a single parallel loop (`ys[i]` receives `ws[i]`'s product).
fn gemm_panels(
    ws: &[MatRef],
    acts: &QActs,
    n_tokens: usize,
    kernels: &PanelKernels,
    kernel: PanelFn,
    ys: &mut [&mut [f32]],
) {
    let prows = kernels.rows;
    let outs: Vec<SharedOut> = ys.iter_mut().map(|y| SharedOut::new(y)).collect();
    // Tasks: runs of panels of one weight, a few per thread over all the weights.
    let total: usize = ws.iter().map(|w| w.rows.div_ceil(prows)).sum();
    let per_task = panels_per_task(total);
    let tasks: Vec<(usize, Range<usize>)> = ws
        .iter()
        .enumerate()
        .flat_map(|(i, w)| {
            let n_panels = w.rows.div_ceil(prows);
            (0..n_panels)
                .step_by(per_task)
                .map(move |p| (i, p..(p + per_task).min(n_panels)))
        })
        .collect();
    tasks.into_par_iter().for_each(|(i, panels)| {
        let (w, out) = (&ws[i], &outs[i]);
        let (rows, bpr, row_bytes) = (w.rows, w.cols / QK, w.row_bytes());
        with_buffer(&PANEL, |panel| {
            let mut tile = vec![0.0f32; kernels.tokens * prows];
            // Each panel is packed once and every token streams past it: packing costs
            // about as much as a few tokens' worth of multiply-adds. The next panel's
            // weights are fetched while this one computes, so packing does not wait on
            // memory.
            let panel_rows = |p: usize| p * prows..((p + 1) * prows).min(rows);
            let panel_bytes = |p: usize| {
                let r = panel_rows(p);
                &w.data[r.start * row_bytes..r.end * row_bytes]
            };
            for p in panels.clone() {
                let r = panel_rows(p);
                pack_panel(kernels, w, bpr, panel_bytes(p), panel);
                if p + 1 < panels.end {
                    prefetch(panel_bytes(p + 1));
                }
                let packed = panel.view();
                for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
                    let t_end = (t0 + TOKEN_TILE).min(n_tokens);
                    for t in (t0..t_end).step_by(kernels.tokens) {
                        let nt = (t_end - t).min(kernels.tokens);
                        kernel(&packed, acts, t, nt, &mut tile);
                        for dt in 0..nt {
                            let run = &tile[dt * prows..][..r.len()];
                            // SAFETY: these rows of weight i belong to this task alone.
                            unsafe { out.write_run((t + dt) * rows + r.start, run) }
                        }
                    }
                }
            }
        })
    });
}

/// Panels per task when `total` panels are split into a few tasks per thread.
fn panels_per_task(total: usize) -> usize {
    total
        .div_ceil(rayon::current_num_threads() * PANEL_TASKS_PER_THREAD)
        .max(1)
}

/// Packs one panel of `w`'s rows (`bytes`, whole rows of `bpr` blocks) for `kernels`.
fn pack_panel(kernels: &PanelKernels, w: &MatRef, bpr: usize, bytes: &[u8], panel: &mut Panel) {
    if w.ty == GgmlType::Q4_0 {
        (kernels.pack_q4_0)(panel, kernels.rows, bpr, cast(bytes));
    } else {
        (kernels.pack_q8_0)(panel, kernels.rows, bpr, cast(bytes));
    }
}

/// [`gemm_panels`] of two weights of one shape whose products meet in `combine` (see
/// [`matmul_pair_produced`]): each task packs panel `p` of both and writes only the combined
/// tile.
fn gemm_panel_pairs(
    ws: [&MatRef; 2],
    acts: &QActs,
    n_tokens: usize,
    (kernels, kernel): (&PanelKernels, PanelFn),
    combine: fn(&mut [f32], &[f32]),
    y: &mut [f32],
) {
    let prows = kernels.rows;
    let (rows, bpr, row_bytes) = (ws[0].rows, ws[0].cols / QK, ws[0].row_bytes());
    let out = SharedOut::new(y);
    let n_panels = rows.div_ceil(prows);
    let per_task = panels_per_task(n_panels);
    (0..n_panels.div_ceil(per_task))
        .into_par_iter()
        .for_each(|task| {
            let panels = task * per_task..((task + 1) * per_task).min(n_panels);
            with_buffer(&PANEL, |panel_a| {
                with_buffer(&PAIRED_PANEL, |panel_b| {
                    let mut tiles = vec![0.0f32; 2 * kernels.tokens * prows];
                    let (tile_a, tile_b) = tiles.split_at_mut(kernels.tokens * prows);
                    for p in panels.clone() {
                        let r = p * prows..((p + 1) * prows).min(rows);
                        let bytes = r.start * row_bytes..r.end * row_bytes;
                        pack_panel(kernels, ws[0], bpr, &ws[0].data[bytes.clone()], panel_a);
                        pack_panel(kernels, ws[1], bpr, &ws[1].data[bytes], panel_b);
                        let (view_a, view_b) = (panel_a.view(), panel_b.view());
                        for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
                            let t_end = (t0 + TOKEN_TILE).min(n_tokens);
                            for t in (t0..t_end).step_by(kernels.tokens) {
                                let nt = (t_end - t).min(kernels.tokens);
                                kernel(&view_a, acts, t, nt, tile_a);
                                kernel(&view_b, acts, t, nt, tile_b);
                                // Rows past a partial panel hold products of zero weights.
                                combine(&mut tile_a[..nt * prows], &tile_b[..nt * prows]);
                                for dt in 0..nt {
                                    let run = &tile_a[dt * prows..][..r.len()];
                                    // SAFETY: these rows belong to this task alone.
                                    unsafe { out.write_run((t + dt) * rows + r.start, run) }
                                }
                            }
                        }
                    }
                })
            })
        });
}

#[cfg(test)]
mod tests;
