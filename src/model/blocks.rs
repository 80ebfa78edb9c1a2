//! Building blocks shared by the model families: weight handles that point into the mapped
//! file, and the Gemma sublayers (sandwich-normed attention and gated MLP).

use super::config::{LayerKind, StackConfig};
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufFile};
use crate::kernels::gemm_f32::{matmul_f32, Strided};
use crate::kernels::q8_products::{Q8Matrix, Q8Rows};
use crate::kernels::{self, vec_f32, MatRef};
use crate::model::AttentionPrecision;
use crate::ops::{self, Rope, RopeTable};
use crate::quant::QK;
use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;

/// A 2-D weight `[rows, cols]` (torch `[out, in]`) located in the file; never copied.
#[derive(Clone, Debug)]
pub(crate) struct Linear {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    range: Range<usize>,
}

impl Linear {
    /// Looks up `name` and checks it is `[rows, cols]` in a matrix type.
    pub(crate) fn load(file: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<Self> {
        let info = file
            .tensor_info(name)
            .ok_or_else(|| Error::tensor(name, "missing from the file"))?;
        if info.shape != [cols, rows] {
            return Err(Error::tensor(
                name,
                format!(
                    "expected ggml shape [{cols}, {rows}] (torch [{rows}, {cols}]), found {:?}",
                    info.shape
                ),
            ));
        }
        let view = file.view(info);
        MatRef::from_view(view)?;
        Ok(Linear {
            ty: info.ty,
            rows,
            cols,
            range: info.range.clone(),
        })
    }

    /// The zero-copy matrix view.
    pub(crate) fn mat<'a>(&self, file: &'a GgufFile) -> MatRef<'a> {
        MatRef {
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            data: file.bytes(self.range.clone()),
        }
    }

    /// `x [n, cols] -> y [n, rows]`, reusing `y`'s allocation.
    pub(crate) fn forward_into(&self, file: &GgufFile, x: &[f32], n: usize, y: &mut Vec<f32>) {
        kernels::matmul(&self.mat(file), x, n, resized(y, n * self.rows));
    }

    /// [`forward_into`](Self::forward_into) of several weights over the same input: it is quantized once
    /// and, for whole inputs, every weight's work shares one parallel loop.
    pub(crate) fn forward_many(
        file: &GgufFile,
        linears: &[&Linear],
        x: &[f32],
        n: usize,
    ) -> Vec<Vec<f32>> {
        let mats: Vec<MatRef> = linears.iter().map(|l| l.mat(file)).collect();
        let mut ys: Vec<Vec<f32>> = linears.iter().map(|l| vec![0.0; n * l.rows]).collect();
        kernels::matmul_many(
            &mats,
            x,
            n,
            &mut ys.iter_mut().map(|y| &mut y[..]).collect::<Vec<_>>(),
        );
        ys
    }

    /// [`forward_many`](Self::forward_many) of a fixed number of weights into `ys`, reusing
    /// their allocations (a decoder step allocates nothing), for an input that `produce` computes
    /// run by run (see [`kernels::matmul_many_produced`]); `staging` holds it where it has to be
    /// stored whole.
    pub(crate) fn forward_many_produced_into<const N: usize>(
        file: &GgufFile,
        linears: [&Linear; N],
        (produce, n, cols): (kernels::Producer, usize, usize),
        staging: &mut Vec<f32>,
        ys: [&mut Vec<f32>; N],
    ) {
        let mats = linears.map(|l| l.mat(file));
        let mut rows = linears.map(|l| l.rows).into_iter();
        let mut outs = ys.map(|y| resized(y, n * rows.next().expect("one row count per output")));
        kernels::matmul_many_produced(&mats, n, cols, produce, staging, &mut outs);
    }

    /// Each `(keys, values)` projection pair of `x`, every pair quantizing `x` once and sharing
    /// one parallel loop (all decoder layers' cross-attention keys and values of one encoder
    /// output).
    pub(crate) fn forward_pairs(
        file: &GgufFile,
        pairs: &[(&Linear, &Linear)],
        x: &[f32],
        n: usize,
    ) -> Vec<(Vec<f32>, Vec<f32>)> {
        let linears: Vec<&Linear> = pairs.iter().flat_map(|&(k, v)| [k, v]).collect();
        let mut ys = Linear::forward_many(file, &linears, x, n).into_iter();
        pairs
            .iter()
            .map(|_| (ys.next().expect("keys"), ys.next().expect("values")))
            .collect()
    }

    /// Output features.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of weights it holds.
    pub(crate) fn n_bytes(&self) -> usize {
        self.range.len()
    }

    /// Where its bytes lie in the file.
    pub(crate) fn range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// Embedding lookup: row `id` in f32, times `scale`.
    pub(crate) fn embed(&self, file: &GgufFile, id: u32, scale: f32, out: &mut [f32]) {
        self.mat(file).row_to_f32(id as usize, out);
        out.iter_mut().for_each(|v| *v *= scale);
    }
}

/// A 1-D f32 weight (norm gains) located in the file.
#[derive(Clone, Debug)]
pub(crate) struct Vector {
    range: Range<usize>,
}

impl Vector {
    /// Looks up `name` and checks it is an f32 vector of length `len`.
    pub(crate) fn load(file: &GgufFile, name: &str, len: usize) -> Result<Self> {
        let info = file
            .tensor_info(name)
            .ok_or_else(|| Error::tensor(name, "missing from the file"))?;
        if info.shape != [len] || info.ty != GgmlType::F32 {
            return Err(Error::tensor(
                name,
                format!("expected f32 [{len}], found {} {:?}", info.ty, info.shape),
            ));
        }
        Ok(Vector {
            range: info.range.clone(),
        })
    }

    /// The values, viewed in place.
    pub(crate) fn get<'a>(&self, file: &'a GgufFile) -> &'a [f32] {
        // Validated f32 tensors are 32-byte aligned whole multiples of 4 bytes.
        bytemuck::cast_slice(file.bytes(self.range.clone()))
    }
}

/// A Gemma RMSNorm gain vector with its epsilon.
#[derive(Clone, Debug)]
pub(crate) struct Norm {
    weight: Vector,
    eps: f32,
}

impl Norm {
    pub(crate) fn load(file: &GgufFile, name: &str, len: usize, eps: f32) -> Result<Self> {
        Ok(Norm {
            weight: Vector::load(file, name, len)?,
            eps,
        })
    }

    /// Normalizes every row of `x` in place.
    pub(crate) fn apply(&self, file: &GgufFile, x: &mut [f32]) {
        ops::rmsnorm_inplace(x, self.weight.get(file), self.eps);
    }

    /// Normalizes whole rows of `x` into `out` on this thread (a [`kernels::Producer`]'s work).
    pub(crate) fn rows_into(&self, file: &GgufFile, x: &[f32], out: &mut [f32]) {
        vec_f32::rmsnorm_rows_into(x, self.weight.get(file), self.eps, out);
    }

    /// A normalized copy of `x` in `y`, reusing its allocation.
    pub(crate) fn applied_into(&self, file: &GgufFile, x: &[f32], y: &mut Vec<f32>) {
        ops::rmsnorm_into(x, self.weight.get(file), self.eps, resized(y, x.len()));
    }
}

/// `v` with length `len`, reusing its allocation; the contents are to be overwritten. A first
/// allocation comes zeroed from the allocator's zero pages; a buffer that must grow grows at
/// least twofold, so one that grows a little every decoder step (the attention scores, one
/// key wider each step) is reallocated a logarithmic number of times, not every step.
pub(crate) fn resized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.capacity() == 0 {
        *v = vec![0.0; len];
    } else {
        // Only a grown tail needs initializing.
        v.truncate(len);
        v.reserve(len - v.len());
        v.resize(len, 0.0);
    }
    v
}

/// One layer's activations, reused by the next layer of a whole-input pass (the encoder) and,
/// kept in a [`StepScratch`], by every layer of every decoder step: allocated afresh, each
/// layer's megabytes went back to the kernel and came again as newly zeroed pages (page faults
/// serialize threads on the address space), and a decoder step allocated every time.
#[derive(Default)]
pub(crate) struct Scratch {
    /// A normalized copy of the residual stream.
    pub normed: Vec<f32>,
    /// Queries, keys and values.
    pub qkv: [Vec<f32>; 3],
    /// Attention output, before the output projection.
    pub ctx: Vec<f32>,
    /// A sublayer's output, before its post-norm.
    pub out: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// A decoder step's attention buffers.
    pub attn: AttnScratch,
}

impl Scratch {
    /// Bytes these buffers hold (their f32 activations; the attention's quantized copies,
    /// a fraction of its keys, are left out).
    pub(crate) fn heap_bytes(&self) -> usize {
        let [q, k, v] = &self.qkv;
        let f32s = [
            &self.normed,
            q,
            k,
            v,
            &self.ctx,
            &self.out,
            &self.gate,
            &self.up,
        ]
        .into_iter()
        .chain(&self.attn.keys_t)
        .chain([&self.attn.scores, &self.attn.parts])
        .map(Vec::capacity)
        .sum::<usize>();
        f32s * std::mem::size_of::<f32>()
    }
}

/// The end of every sandwich-normed sublayer: `x += post(out)`.
pub(crate) fn add_post_normed(file: &GgufFile, post: &Norm, out: &mut [f32], x: &mut [f32]) {
    ops::add_rmsnormed(x, out, post.weight.get(file), post.eps);
}

/// The feed-forward sublayer of every Gemma block: `x += post(MLP(pre(x)))`.
pub(crate) fn feed_forward(
    file: &GgufFile,
    x: &mut [f32],
    n: usize,
    (pre, mlp, post): (&Norm, &Mlp, &Norm),
    s: &mut Scratch,
) {
    // The normed input is never stored: each run of tokens is computed where it is quantized
    // (see `kernels::matmul_many_produced`); gate and up meet in their tiles.
    let hidden = x.len() / n.max(1);
    let residual: &[f32] = x;
    let normed = |t: Range<usize>, out: &mut [f32]| {
        pre.rows_into(file, &residual[t.start * hidden..t.end * hidden], out)
    };
    let ffn = mlp.gate.rows;
    kernels::matmul_pair_produced(
        [&mlp.gate.mat(file), &mlp.up.mat(file)],
        (&normed, n, hidden),
        vec_f32::gelu_gate,
        &mut s.normed,
        resized(&mut s.up, n * ffn),
        resized(&mut s.gate, n * ffn),
    );
    mlp.down.forward_into(file, &s.gate, n, &mut s.out);
    add_post_normed(file, post, &mut s.out, x);
}

/// The gated GELU MLP: `down(gelu_tanh(gate(x)) * up(x))`.
#[derive(Clone, Debug)]
pub(crate) struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    pub(crate) fn load(file: &GgufFile, prefix: &str, hidden: usize, ffn: usize) -> Result<Self> {
        Ok(Mlp {
            gate: Linear::load(file, &format!("{prefix}.ffn_gate.weight"), ffn, hidden)?,
            up: Linear::load(file, &format!("{prefix}.ffn_up.weight"), ffn, hidden)?,
            down: Linear::load(file, &format!("{prefix}.ffn_down.weight"), hidden, ffn)?,
        })
    }
}

/// Query/key/value/output projections of one attention module.
#[derive(Clone, Debug)]
pub(crate) struct AttnProj {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
}

impl AttnProj {
    /// The query, key and value projections of `norm(x)` into `qkv`, the input quantized once
    /// and normed where it is quantized (see [`kernels::matmul_many_produced`]); `staging`
    /// holds it where it has to be stored whole.
    pub(crate) fn normed_qkv_into(
        &self,
        file: &GgufFile,
        (norm, x, n): (&Norm, &[f32], usize),
        staging: &mut Vec<f32>,
        qkv: &mut [Vec<f32>; 3],
    ) {
        let hidden = x.len() / n.max(1);
        let normed = |t: Range<usize>, out: &mut [f32]| {
            norm.rows_into(file, &x[t.start * hidden..t.end * hidden], out)
        };
        let [q, k, v] = qkv;
        let input = (&normed as kernels::Producer, n, hidden);
        Linear::forward_many_produced_into(
            file,
            [&self.q, &self.k, &self.v],
            input,
            staging,
            [q, k, v],
        );
    }

    /// `{prefix}.{q,k,v,output}.weight` with `q_in` and `kv_in` input widths.
    pub(crate) fn load(
        file: &GgufFile,
        prefix: &str,
        hidden: usize,
        kv_in: usize,
        q_dim: usize,
        kv_dim: usize,
    ) -> Result<Self> {
        Ok(AttnProj {
            q: Linear::load(file, &format!("{prefix}_q.weight"), q_dim, hidden)?,
            k: Linear::load(file, &format!("{prefix}_k.weight"), kv_dim, kv_in)?,
            v: Linear::load(file, &format!("{prefix}_v.weight"), kv_dim, kv_in)?,
            o: Linear::load(file, &format!("{prefix}_output.weight"), hidden, q_dim)?,
        })
    }
}

/// One encoder layer's matrix products as the forward pass groups them (one call each):
/// q/k/v, the output projection, gate/up, down.
pub(crate) fn encoder_layer_matmuls<'a>(
    file: &'a GgufFile,
    attn: &AttnProj,
    mlp: &Mlp,
) -> [Vec<MatRef<'a>>; 4] {
    [
        vec![attn.q.mat(file), attn.k.mat(file), attn.v.mat(file)],
        vec![attn.o.mat(file)],
        vec![mlp.gate.mat(file), mlp.up.mat(file)],
        vec![mlp.down.mat(file)],
    ]
}

/// Head layout of one attention module.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Keys and values of a run of positions, `len` rows of `n_kv_heads * head_dim`.
pub(crate) struct KeySegment<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub len: usize,
}

/// Most query rows × 2 per attention task over its query-head group: bounds the score buffer
/// at `2 · ROWS × keys` floats.
const ATTENTION_ROWS: usize = 64;

/// Which keys a query row may see: for query row `i` and key segment `s`, the range of key
/// indices it attends to. Every T5Gemma mask (bidirectional or causal windows, full layers,
/// cross-attention) is one contiguous range per segment, and every query sees at least one key.
pub(crate) type Visible<'a> = &'a (dyn Fn(usize, usize) -> Range<usize> + Sync);

/// Multi-head attention of `n_q` query rows against one or more key segments, with one softmax
/// across all of them. Scores are scaled, then soft-capped (if set), then masked — the order
/// transformers uses. Query head `h` reads kv head `h / (n_heads / n_kv_heads)`.
///
/// Work is split into blocks of query rows (several per thread); for each kv head a block
/// computes the scores and weighted values of the query heads sharing it as two f32 matrix
/// products over just the keys some row of the block can see, so sliding windows cost their
/// width, not the input length.
/// A single query row (a decoder step) goes to [`attention_one_query`].
///
/// With [`AttentionPrecision::Int8`] (and more than one query row) both products run in int8
/// ([`attend_group_int8`]); the keys and the transposed values are quantized once per call.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    q: &[f32],
    n_q: usize,
    segments: &[KeySegment],
    heads: Heads,
    (scale, softcap): (f32, Option<f32>),
    visible: Visible,
    precision: AttentionPrecision,
    scratch: &mut AttnScratch,
    out: &mut [f32],
) {
    let Heads {
        n_heads,
        n_kv_heads,
        head_dim: hd,
    } = heads;
    let q_dim = n_heads * hd;
    let kv_dim = n_kv_heads * hd;
    let group = n_heads / n_kv_heads;
    debug_assert_eq!(q.len(), n_q * q_dim);
    debug_assert_eq!(out.len(), n_q * q_dim);
    if n_q == 1 {
        return attention_one_query(q, segments, heads, scale, softcap, visible, scratch, out);
    }
    // Tasks are blocks of query rows, each writing its own rows of `out` for every head: the
    // visible ranges are worked out once per block, and nothing is gathered afterwards. The
    // query heads that share a kv head go through one pair of matrix products (their rows
    // stacked), so each block reads and packs every key and value once per kv head.
    let max_rows = (ATTENTION_ROWS * 2 / group).max(16);
    let block_rows = (n_q / (rayon::current_num_threads() * 4)).clamp(16, max_rows);
    let int8 = precision == AttentionPrecision::Int8;
    if int8 {
        quantize_keys_values(segments, heads, scratch);
    } else {
        // Every segment's keys transposed once, `[kv head][dim][key]`: each block's score
        // product then reads rows of consecutive keys, which f32 kernels stream without
        // packing.
        scratch.keys_t.resize_with(segments.len(), Vec::new);
        for (seg, kt) in segments.iter().zip(&mut scratch.keys_t) {
            transpose_keys_into(seg.k, seg.len, kv_dim, kt);
        }
    }
    let keys_t = &scratch.keys_t[..if int8 { 0 } else { segments.len() }];
    let (keys_q8, values_q8) = (&scratch.keys_q8, &scratch.values_q8);
    out.par_chunks_mut(block_rows * q_dim)
        .enumerate()
        .for_each(|(b, out_rows)| {
            let r0 = b * block_rows;
            let rows = out_rows.len() / q_dim;
            // Per segment: each row's visible range, and their union (the columns computed).
            let ranges: Vec<Vec<Range<usize>>> = segments
                .iter()
                .enumerate()
                .map(|(s, seg)| {
                    (0..rows)
                        .map(|i| {
                            let r = visible(r0 + i, s);
                            r.start.min(seg.len)..r.end.min(seg.len)
                        })
                        .collect()
                })
                .collect();
            let unions: Vec<Range<usize>> = ranges
                .iter()
                .zip(segments)
                .map(|(rs, seg)| {
                    let lo = rs.iter().filter(|r| !r.is_empty()).map(|r| r.start).min();
                    let hi = rs.iter().map(|r| r.end).max();
                    match (lo, hi) {
                        // The int8 products take whole blocks of keys: the union widened to
                        // multiples of 32 (the extra keys are masked like any other).
                        (Some(lo), Some(hi)) if int8 => {
                            lo / QK * QK..hi.next_multiple_of(QK).min(padded_keys(seg.len))
                        }
                        (Some(lo), Some(hi)) => lo..hi,
                        _ => 0..0,
                    }
                })
                .collect();
            let width: usize = unions.iter().map(|u| u.len()).sum();
            // Each thread's buffers live on between blocks and layers (taken out of the cell, so
            // that a nested task on this thread would find empty ones): fresh ones per block
            // went back to the kernel and came again as faulted-in pages.
            let mut bufs = BLOCK_BUFFERS.with(Cell::take);
            let scores = resized(&mut bufs.scores, rows * group * width);
            let q_rows = &q[r0 * q_dim..][..rows * q_dim];
            // With one kv head, row i's heads are consecutive: the block already is
            // [rows · group, hd]. Otherwise each group's heads are gathered and scattered back.
            let direct = n_kv_heads == 1;
            let staged = if direct { 0 } else { rows * group * hd };
            let q_group = resized(&mut bufs.q_group, staged);
            let out_group = resized(&mut bufs.out_group, staged);
            for g in 0..n_kv_heads {
                let heads = g * group * hd..(g + 1) * group * hd;
                if !direct {
                    for (dst, src) in q_group
                        .chunks_exact_mut(group * hd)
                        .zip(q_rows.chunks_exact(q_dim))
                    {
                        dst.copy_from_slice(&src[heads.clone()]);
                    }
                }
                let (q_g, out_g): (&[f32], &mut [f32]) = if direct {
                    (q_rows, &mut *out_rows)
                } else {
                    (q_group, out_group)
                };
                if int8 {
                    let n_kv = n_kv_heads;
                    let mats: Vec<(&Q8Matrix, &Q8Matrix)> = (0..segments.len())
                        .map(|s| (&keys_q8[s * n_kv + g], &values_q8[s * n_kv + g]))
                        .collect();
                    attend_group_int8(
                        (q_g, rows, group, hd),
                        &mats,
                        &ranges,
                        &unions,
                        (scale, softcap),
                        &mut bufs.int8,
                        scores,
                        out_g,
                    );
                } else {
                    attend_group(
                        q_g,
                        rows,
                        group,
                        segments,
                        keys_t,
                        g * hd,
                        kv_dim,
                        hd,
                        &ranges,
                        &unions,
                        (scale, softcap),
                        scores,
                        out_g,
                    );
                }
                if !direct {
                    for (dst, src) in out_rows
                        .chunks_exact_mut(q_dim)
                        .zip(out_group.chunks_exact(group * hd))
                    {
                        dst[heads.clone()].copy_from_slice(src);
                    }
                }
            }
            BLOCK_BUFFERS.with(|c| c.set(bufs));
        });
}

/// One thread's buffers for [`attention`]'s blocks of query rows.
#[derive(Default)]
struct BlockBuffers {
    scores: Vec<f32>,
    q_group: Vec<f32>,
    out_group: Vec<f32>,
    int8: Int8Buffers,
}

/// The buffers of [`attend_group_int8`].
#[derive(Default)]
struct Int8Buffers {
    /// Queries padded to whole blocks, or one segment's probabilities gathered.
    staged: Vec<f32>,
    queries: Q8Rows,
    probs: Q8Rows,
}

thread_local! {
    static BLOCK_BUFFERS: Cell<BlockBuffers> = Cell::new(BlockBuffers::default());
}

/// The query heads of one kv head for one block of query rows (see [`attention`]), stacked as
/// `rows · group` rows of `hd` in `q` and `out` (row `i · group + h` = head `h` of query row
/// `i`): scores against the union of the visible keys, masked per query row, soft-capped,
/// softmaxed, then the weighted sum of values.
#[allow(clippy::too_many_arguments)]
fn attend_group(
    q: &[f32],
    rows: usize,
    group: usize,
    segments: &[KeySegment],
    keys_t: &[Vec<f32>],
    kv_off: usize,
    kv_dim: usize,
    hd: usize,
    ranges: &[Vec<Range<usize>>],
    unions: &[Range<usize>],
    (scale, softcap): (f32, Option<f32>),
    scores: &mut [f32],
    out: &mut [f32],
) {
    let width: usize = unions.iter().map(|u| u.len()).sum();
    let m = rows * group;
    if width == 0 {
        // Unreachable with T5Gemma's masks: rows that see no key attend to nothing.
        out[..m * hd].fill(0.0);
        return;
    }
    let q_view = Strided {
        data: q,
        rows: m,
        cols: hd,
        row_stride: hd,
        col_stride: 1,
    };
    let mut col = 0;
    for ((seg, kt), u) in segments.iter().zip(keys_t).zip(unions) {
        if u.is_empty() {
            continue;
        }
        // Dimension d of key j at kt[(kv_off + d) * len + j].
        let keys_t = Strided {
            data: &kt[kv_off * seg.len + u.start..],
            rows: hd,
            cols: u.len(),
            row_stride: seg.len,
            col_stride: 1,
        };
        matmul_f32(&mut scores[col..], width, false, q_view, keys_t, scale);
        col += u.len();
    }
    mask_softmax(&mut scores[..m * width], group, ranges, unions, softcap);
    let mut col = 0;
    let mut first = true;
    for (seg, u) in segments.iter().zip(unions).filter(|(_, u)| !u.is_empty()) {
        let probs = Strided {
            data: &scores[col..],
            rows: m,
            cols: u.len(),
            row_stride: width,
            col_stride: 1,
        };
        let values = Strided {
            data: &seg.v[u.start * kv_dim + kv_off..],
            rows: u.len(),
            cols: hd,
            row_stride: kv_dim,
            col_stride: 1,
        };
        matmul_f32(out, hd, !first, probs, values, 1.0);
        first = false;
        col += u.len();
    }
}

/// Rows `i · group + h` of `scores` (the columns of the unions side by side) become
/// probabilities: columns of the union that query row `i` cannot see are masked, the rest
/// soft-capped (if set), then each row is softmaxed.
fn mask_softmax(
    scores: &mut [f32],
    group: usize,
    ranges: &[Vec<Range<usize>>],
    unions: &[Range<usize>],
    softcap: Option<f32>,
) {
    let width: usize = unions.iter().map(|u| u.len()).sum();
    for (r, row) in scores.chunks_exact_mut(width).enumerate() {
        let i = r / group;
        let mut c0 = 0;
        for (rs, u) in ranges.iter().zip(unions) {
            let seg = &mut row[c0..c0 + u.len()];
            let r = &rs[i];
            let (lo, hi) = if r.is_empty() {
                (0, 0)
            } else {
                (r.start - u.start, r.end - u.start)
            };
            seg[..lo].fill(f32::NEG_INFINITY);
            seg[hi..].fill(f32::NEG_INFINITY);
            if let Some(c) = softcap {
                ops::softcap_inplace(&mut seg[lo..hi], c);
            }
            c0 += u.len();
        }
        debug_assert!(row.iter().any(|s| s.is_finite()), "a query row sees no key");
        ops::softmax_inplace(row);
    }
}

/// Keys per segment rounded up to whole blocks: the rows of the quantized keys and the
/// columns of the quantized transposed values (the padding is zeros, always masked).
fn padded_keys(len: usize) -> usize {
    len.next_multiple_of(QK)
}

/// For [`attend_group_int8`]: every (segment, kv head)'s keys as a Q8_0 matrix
/// `[padded keys, head_dim padded to 32]` and its values transposed, `[head_dim, padded keys]`,
/// at `scratch.keys_q8` / `values_q8[segment · n_kv_heads + kv head]`.
fn quantize_keys_values(segments: &[KeySegment], heads: Heads, scratch: &mut AttnScratch) {
    let (n_kv, hd) = (heads.n_kv_heads, heads.head_dim);
    let kv_dim = n_kv * hd;
    let hd_cols = hd.next_multiple_of(QK);
    let n = segments.len() * n_kv;
    scratch.keys_q8.resize_with(n, Q8Matrix::default);
    scratch.values_q8.resize_with(n, Q8Matrix::default);
    for (s, seg) in segments.iter().enumerate() {
        let keys = padded_keys(seg.len);
        for g in 0..n_kv {
            let off = g * hd;
            scratch.keys_q8[s * n_kv + g].fill(keys, hd_cols, |rows, out| {
                for (j, row) in rows.zip(out.chunks_exact_mut(hd_cols)) {
                    if j < seg.len {
                        row[..hd].copy_from_slice(&seg.k[j * kv_dim + off..][..hd]);
                        row[hd..].fill(0.0);
                    } else {
                        row.fill(0.0);
                    }
                }
            });
            scratch.values_q8[s * n_kv + g].fill(hd, keys, |dims, out| {
                let v = &seg.v[off + dims.start..];
                transpose_into(v, kv_dim, seg.len, dims.len(), out, keys);
                for row in out.chunks_exact_mut(keys) {
                    row[seg.len..].fill(0.0);
                }
            });
        }
    }
}

/// [`attend_group`] with both products in int8: the block's queries (padded to whole blocks)
/// are quantized once, scored against each segment's quantized keys over the block-aligned
/// `unions`, masked, soft-capped and softmaxed in f32 as in [`attend_group`]; each segment's
/// probabilities are then quantized and multiplied by its quantized transposed values.
/// `mats[s]` = (keys, transposed values) of segment `s` for this kv head.
#[allow(clippy::too_many_arguments)]
fn attend_group_int8(
    (q, rows, group, hd): (&[f32], usize, usize, usize),
    mats: &[(&Q8Matrix, &Q8Matrix)],
    ranges: &[Vec<Range<usize>>],
    unions: &[Range<usize>],
    (scale, softcap): (f32, Option<f32>),
    bufs: &mut Int8Buffers,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let width: usize = unions.iter().map(|u| u.len()).sum();
    let m = rows * group;
    let out = &mut out[..m * hd];
    if width == 0 {
        out.fill(0.0);
        return;
    }
    let hd_cols = hd.next_multiple_of(QK);
    let queries = if hd_cols == hd {
        &q[..m * hd]
    } else {
        let staged = resized(&mut bufs.staged, m * hd_cols);
        for (dst, src) in staged.chunks_exact_mut(hd_cols).zip(q.chunks_exact(hd)) {
            dst[..hd].copy_from_slice(src);
            dst[hd..].fill(0.0);
        }
        staged
    };
    bufs.queries.quantize(mats[0].0, queries, hd_cols);
    let scores = &mut scores[..m * width];
    let mut col = 0;
    for (&(keys, _), u) in mats.iter().zip(unions).filter(|(_, u)| !u.is_empty()) {
        let blocks = 0..hd_cols / QK;
        keys.product(
            &bufs.queries,
            u.clone(),
            blocks,
            scale,
            false,
            &mut scores[col..],
            width,
        );
        col += u.len();
    }
    mask_softmax(scores, group, ranges, unions, softcap);
    let mut col = 0;
    let mut first = true;
    for (&(_, values), u) in mats.iter().zip(unions).filter(|(_, u)| !u.is_empty()) {
        let probs = if u.len() == width {
            &scores[..]
        } else {
            let staged = resized(&mut bufs.staged, m * u.len());
            for (dst, src) in staged
                .chunks_exact_mut(u.len())
                .zip(scores.chunks_exact(width))
            {
                dst.copy_from_slice(&src[col..col + u.len()]);
            }
            staged
        };
        bufs.probs.quantize(values, probs, u.len());
        let blocks = u.start / QK..u.end / QK;
        values.product(&bufs.probs, 0..hd, blocks, 1.0, !first, out, hd);
        first = false;
        col += u.len();
    }
}

/// `len` rows of `kv_dim` keys, transposed into `kt` (reusing its memory): element `(j, d)` at
/// `d * len + j`. Tiles of 16 dimensions × 16 keys, so that every cache line read and written
/// is used whole while it is in L1.
fn transpose_keys_into(k: &[f32], len: usize, kv_dim: usize, kt: &mut Vec<f32>) {
    const DIMS: usize = 16;
    let kt = resized(kt, len * kv_dim);
    if kt.is_empty() {
        return;
    }
    kt.par_chunks_mut(DIMS * len)
        .enumerate()
        .for_each(|(blk, rows)| {
            let dims = rows.len() / len;
            transpose_into(&k[blk * DIMS..], kv_dim, len, dims, rows, len)
        });
}

/// `dst[c * dst_stride + r] = src[r * src_stride + c]` for `r < rows`, `c < cols`, a tile of
/// 16 × 16 at a time: every cache line read and written is used whole while it is in L1, and
/// the tile's copies have fixed lengths the compiler unrolls.
fn transpose_into(
    src: &[f32],
    src_stride: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    const T: usize = 16;
    let mut tile = [[0.0f32; T]; T];
    for r0 in (0..rows).step_by(T) {
        let nr = T.min(rows - r0);
        for c0 in (0..cols).step_by(T) {
            let nc = T.min(cols - c0);
            if nr == T && nc == T {
                for (i, t) in tile.iter_mut().enumerate() {
                    t.copy_from_slice(&src[(r0 + i) * src_stride + c0..][..T]);
                }
                for c in 0..T {
                    let d: &mut [f32; T] = (&mut dst[(c0 + c) * dst_stride + r0..][..T])
                        .try_into()
                        .expect("a tile row");
                    for (o, t) in d.iter_mut().zip(&tile) {
                        *o = t[c];
                    }
                }
                continue;
            }
            for (i, t) in tile.iter_mut().enumerate().take(nr) {
                t[..nc].copy_from_slice(&src[(r0 + i) * src_stride + c0..][..nc]);
            }
            for c in 0..nc {
                let d = &mut dst[(c0 + c) * dst_stride + r0..][..nr];
                for (o, t) in d.iter_mut().zip(&tile) {
                    *o = t[c];
                }
            }
        }
    }
}

/// Keys per score task, and the fewest head dimensions per value task, of
/// [`attention_one_query`].
const KEY_CHUNK: usize = 64;
const MIN_DIM_CHUNK: usize = 64;

/// The buffers of [`attention_one_query`], kept between decoder steps so that a step
/// allocates nothing.
#[derive(Default)]
pub(crate) struct AttnScratch {
    /// Per key segment: the keys the query sees, and where they start among the score columns.
    ranges: Vec<Range<usize>>,
    col0: Vec<usize>,
    /// (kv head, segment, key chunk) of each score task.
    score_tasks: Vec<(usize, usize, Range<usize>)>,
    /// (kv head, dimension chunk) of each weighted-values task.
    value_tasks: Vec<(usize, Range<usize>)>,
    /// One fixed-size slot per task, for its results.
    parts: Vec<f32>,
    /// `[n_heads][visible keys]`, scores then probabilities.
    scores: Vec<f32>,
    /// Per key segment, its keys transposed (whole-input attention).
    keys_t: Vec<Vec<f32>>,
    /// Per (key segment, kv head), its keys and its transposed values quantized (int8
    /// whole-input attention).
    keys_q8: Vec<Q8Matrix>,
    values_q8: Vec<Q8Matrix>,
}

/// [`attention`] for a decoder step's single query row. The query heads that share a kv
/// head are computed by the same task, row by row, so each key and each value row is read
/// from memory once per step for all of them; work is split over key chunks (scores) and
/// head-dimension chunks (the weighted sum of values), each output computed by one task in a
/// fixed order. Every buffer comes from `scratch`.
#[allow(clippy::too_many_arguments)]
fn attention_one_query(
    q: &[f32],
    segments: &[KeySegment],
    heads: Heads,
    scale: f32,
    softcap: Option<f32>,
    visible: Visible,
    scratch: &mut AttnScratch,
    out: &mut [f32],
) {
    let Heads {
        n_heads,
        n_kv_heads,
        head_dim: hd,
    } = heads;
    let group = n_heads / n_kv_heads;
    let kv_dim = n_kv_heads * hd;
    let AttnScratch {
        ranges,
        col0,
        score_tasks,
        value_tasks,
        parts,
        scores,
        keys_t: _,
        keys_q8: _,
        values_q8: _,
    } = scratch;
    ranges.clear();
    ranges.extend(segments.iter().enumerate().map(|(s, seg)| {
        let r = visible(0, s);
        r.start.min(seg.len)..r.end.min(seg.len).max(r.start.min(seg.len))
    }));
    col0.clear();
    col0.extend(ranges.iter().scan(0, |c, r| {
        let start = *c;
        *c += r.len();
        Some(start)
    }));
    let width: usize = ranges.iter().map(|r| r.len()).sum();
    debug_assert!(width > 0, "a query row sees no key");
    if width == 0 {
        // Unreachable with T5Gemma's masks; a row with no keys attends to nothing.
        out.fill(0.0);
        return;
    }

    // Scores: task = (kv head, segment, key chunk) -> [group][chunk] in the task's slot.
    score_tasks.clear();
    score_tasks.extend((0..n_kv_heads).flat_map(|g| {
        ranges.iter().enumerate().flat_map(move |(s, r)| {
            r.clone()
                .step_by(KEY_CHUNK)
                .map(move |j0| (g, s, j0..(j0 + KEY_CHUNK).min(r.end)))
        })
    }));
    let slot = group * KEY_CHUNK;
    let score_parts = resized(parts, score_tasks.len() * slot);
    score_parts
        .par_chunks_mut(slot)
        .zip(score_tasks.par_iter())
        .for_each(|(part, (g, s, keys))| {
            let seg = &segments[*s];
            let first_key = &seg.k[keys.start * kv_dim + g * hd..];
            let q_group = &q[g * group * hd..][..group * hd];
            let part = &mut part[..group * keys.len()];
            vec_f32::dots_heads(q_group, hd, first_key, kv_dim, scale, part);
        });
    let scores = resized(scores, n_heads * width);
    for ((g, s, keys), part) in score_tasks.iter().zip(score_parts.chunks_exact(slot)) {
        let at = col0[*s] + keys.start - ranges[*s].start;
        let part = &part[..group * keys.len()];
        for (i, p) in part.chunks_exact(keys.len()).enumerate() {
            scores[(g * group + i) * width + at..][..keys.len()].copy_from_slice(p);
        }
    }
    for row in scores.chunks_exact_mut(width) {
        if let Some(c) = softcap {
            ops::softcap_inplace(row, c);
        }
        ops::softmax_inplace(row);
    }

    // Weighted values: task = (kv head, dimension chunk) -> [group][chunk]. The chunks are as
    // wide as the threads allow (whole rows on one thread), so that values stream from memory
    // in long runs; every output element sums its rows in the same order whatever the split.
    let per_head = rayon::current_num_threads().div_ceil(n_kv_heads);
    let dim_chunk = hd
        .div_ceil(per_head)
        .max(MIN_DIM_CHUNK)
        .next_multiple_of(16);
    value_tasks.clear();
    value_tasks.extend((0..n_kv_heads).flat_map(|g| {
        (0..hd)
            .step_by(dim_chunk)
            .map(move |d0| (g, d0..(d0 + dim_chunk).min(hd)))
    }));
    let slot = group * dim_chunk;
    let value_parts = resized(parts, value_tasks.len() * slot);
    let (scores, ranges, col0) = (&*scores, &*ranges, &*col0);
    value_parts
        .par_chunks_mut(slot)
        .zip(value_tasks.par_iter())
        .for_each(|(part, (g, dims))| {
            let part = &mut part[..group * dims.len()];
            part.fill(0.0);
            for ((seg, r), &c0) in segments.iter().zip(ranges).zip(col0) {
                if !r.is_empty() {
                    // The group's probability rows over this segment's keys, read in place.
                    let probs = Strided {
                        data: &scores[g * group * width + c0..],
                        rows: group,
                        cols: r.len(),
                        row_stride: width,
                        col_stride: 1,
                    };
                    let values = &seg.v[r.start * kv_dim + g * hd + dims.start..];
                    vec_f32::weighted_rows_heads(part, probs, values, kv_dim);
                }
            }
        });
    for ((g, dims), part) in value_tasks.iter().zip(value_parts.chunks_exact(slot)) {
        let part = &part[..group * dims.len()];
        for (i, p) in part.chunks_exact(dims.len()).enumerate() {
            out[(g * group + i) * hd + dims.start..][..dims.len()].copy_from_slice(p);
        }
    }
}

/// RoPE tables of both layer kinds for the positions of one call: the angles depend only on
/// the kind, so a pass computes them once rather than for every layer's queries and keys.
pub(crate) struct RopeTables {
    sliding: (Rope, RopeTable),
    full: (Rope, RopeTable),
}

impl RopeTables {
    /// Tables for positions `pos0..pos0 + n` of stack `s`.
    pub(crate) fn new(s: &StackConfig, pos0: usize, n: usize) -> Self {
        let kind = |kind| {
            let p = s.rope(kind);
            let rope = Rope::new(s.head_dim, p.theta, p.linear_factor);
            let table = rope.table(pos0, n);
            (rope, table)
        };
        RopeTables {
            sliding: kind(LayerKind::Sliding),
            full: kind(LayerKind::Full),
        }
    }

    /// Recomputes the tables for positions `pos0..pos0 + n`, reusing their memory.
    pub(crate) fn refill(&mut self, pos0: usize, n: usize) {
        for (rope, table) in [&mut self.sliding, &mut self.full] {
            rope.table_into(pos0, n, table);
        }
    }

    /// Rotates every head of the rows of `x` (`n_heads` heads) for a layer of `kind`.
    pub(crate) fn apply(&self, kind: LayerKind, x: &mut [f32], n_heads: usize) {
        match kind {
            LayerKind::Sliding => self.sliding.1.apply_rows(x, n_heads),
            LayerKind::Full => self.full.1.apply_rows(x, n_heads),
        }
    }
}

/// What a decoder call needs besides the caches, kept in the decoder state: once the first
/// step has sized them, a generation step allocates nothing.
#[derive(Default)]
pub(crate) struct StepScratch {
    /// The residual stream of the tokens fed.
    pub x: Vec<f32>,
    /// The layers' buffers.
    pub layer: Scratch,
    /// RoPE angles of the positions fed (made by the first call).
    pub rope: Option<RopeTables>,
}

impl StepScratch {
    /// The residual stream, the layers' buffers, and the RoPE tables of stack `s` for
    /// positions `pos0..pos0 + n`.
    pub(crate) fn for_positions(
        &mut self,
        s: &StackConfig,
        pos0: usize,
        n: usize,
    ) -> (&mut Vec<f32>, &mut Scratch, &RopeTables) {
        match &mut self.rope {
            Some(tables) => tables.refill(pos0, n),
            None => self.rope = Some(RopeTables::new(s, pos0, n)),
        }
        let rope = self.rope.as_ref().expect("made just above");
        (&mut self.x, &mut self.layer, rope)
    }
}

/// Buffers are not state: a clone (a beam of beam search) starts with none.
impl Clone for StepScratch {
    fn clone(&self) -> Self {
        StepScratch::default()
    }
}

impl std::fmt::Debug for StepScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepScratch")
    }
}

/// Embeds `ids` into `[n, width]` rows scaled by `scale` in `x` (reusing its allocation),
/// refusing ids outside the vocabulary.
pub(crate) fn embed_tokens_into(
    file: &GgufFile,
    table: &Linear,
    ids: &[u32],
    scale: f32,
    width: usize,
    x: &mut Vec<f32>,
) -> Result<()> {
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= table.rows()) {
        return Err(Error::invalid(format!(
            "token id {id} is out of range (vocabulary size {})",
            table.rows()
        )));
    }
    let x = resized(x, ids.len() * width);
    for (&id, row) in ids.iter().zip(x.chunks_exact_mut(width)) {
        table.embed(file, id, scale, row);
    }
    Ok(())
}

/// [`embed_tokens_into`] a new buffer.
pub(crate) fn embed_tokens(
    file: &GgufFile,
    table: &Linear,
    ids: &[u32],
    scale: f32,
    width: usize,
) -> Result<Vec<f32>> {
    let mut x = Vec::new();
    embed_tokens_into(file, table, ids, scale, width, &mut x)?;
    Ok(x)
}

/// The Gemma embedding normalizer `sqrt(H)`, rounded to f32 as transformers' f32 models do.
pub(crate) fn embed_scale(hidden: usize) -> f32 {
    (hidden as f64).sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    /// Int8 attention against f32 attention on the shapes its block alignment must handle:
    /// head sizes that are not whole blocks, grouped and single kv heads, two key segments of
    /// ragged lengths (windowed self part, full cross part: the decoder's merged attention),
    /// a sliding window narrower than the input, a soft-cap. Row by row, the two agree to
    /// int8 precision; a misplaced block or mask would not.
    #[test]
    fn int8_attention_follows_f32_attention() {
        let shapes = [
            // (n_heads, n_kv_heads, head_dim, query rows, segment lengths, window, softcap)
            (4, 2, 48, 37, vec![45, 70], 9, Some(5.0)),
            (6, 1, 32, 100, vec![100], 33, None),
            (2, 2, 16, 20, vec![20], 100, Some(8.0)),
        ];
        for (seed, (n_heads, n_kv_heads, hd, n_q, lens, window, softcap)) in
            shapes.into_iter().enumerate()
        {
            let heads = Heads {
                n_heads,
                n_kv_heads,
                head_dim: hd,
            };
            let kv_dim = n_kv_heads * hd;
            let seed = seed as u64 * 10;
            let q: Vec<f32> = values(n_q * n_heads * hd, seed)
                .iter()
                .map(|v| 2.0 * v)
                .collect();
            let kvs: Vec<(Vec<f32>, Vec<f32>)> = lens
                .iter()
                .enumerate()
                .map(|(s, &len)| {
                    let k = values(len * kv_dim, seed + 2 * s as u64 + 1);
                    (k, values(len * kv_dim, seed + 2 * s as u64 + 2))
                })
                .collect();
            let segments: Vec<KeySegment> = kvs
                .iter()
                .zip(&lens)
                .map(|((k, v), &len)| KeySegment { k, v, len })
                .collect();
            let visible = |i: usize, s: usize| {
                if s == 0 {
                    i.saturating_sub(window)..i + window / 2 + 1
                } else {
                    0..usize::MAX
                }
            };
            let run = |precision| {
                let mut out = vec![0.0; n_q * n_heads * hd];
                let mut scratch = AttnScratch::default();
                let rule = (1.0 / (hd as f32).sqrt(), softcap);
                attention(
                    &q,
                    n_q,
                    &segments,
                    heads,
                    rule,
                    &visible,
                    precision,
                    &mut scratch,
                    &mut out,
                );
                out
            };
            let (exact, int8) = (run(AttentionPrecision::F32), run(AttentionPrecision::Int8));
            for (i, (a, b)) in exact.chunks(hd).zip(int8.chunks(hd)).enumerate() {
                let cos = cosine(a, b);
                assert!(
                    cos > 0.999,
                    "shape {seed}: row {} head {}: cosine {cos}",
                    i / n_heads,
                    i % n_heads
                );
            }
        }
    }
}
