//! Products of two f32 matrices that are both quantized to Q8_0 on the fly: the int8 path of
//! the encoder's attention (scores = queries · keysᵀ, context = probabilities · values).
//!
//! The right-hand matrix ([`Q8Matrix`], keys or transposed values) is quantized row by row once
//! and, where the level has a Q8_0 panel kernel, packed into its panels; each product quantizes
//! its left-hand rows ([`Q8Rows`]) once and streams them past the panels of a range of rows,
//! over a range of blocks (the columns both operands share). Every element is
//! `Σ_b fma(float(isum_b), d_m · d_x, acc)` over the blocks in order, the sequential order of
//! the encoder's matrix products: levels without a Q8_0 panel kernel take the sequential dot,
//! and every level returns the scalar reference's bits.

use super::{kernels_for, level, with_buffer, Kernels, Panel, QActs};
use crate::quant::{BlockQ8_0, QK};
use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;

/// Whether this CPU's best kernel level multiplies int8 matrices with a Q8_0 panel kernel
/// measured faster than f32 attention: AVX-512 VNNI (about twice as fast on the Xeon). aarch64
/// dotprod has such a kernel too, but it has not been timed on hardware (and quantizes
/// activations with the scalar quantizer), so it is not counted here.
pub(crate) fn fast_on_this_cpu() -> bool {
    let best = *super::supported_levels()
        .last()
        .expect("scalar is always supported");
    best == super::KernelLevel::Avx512Vnni
        && kernels_for(best).is_ok_and(|k| k.panel.is_some_and(|p| p.q8_0.is_some()))
}

thread_local! {
    /// One panel's rows in f32, then quantized, while a [`Q8Matrix`] is filled.
    static FILL: Cell<(Vec<f32>, Vec<BlockQ8_0>)> = const { Cell::new((Vec::new(), Vec::new())) };
    /// A product's output tile.
    static TILE: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// A `[rows, cols]` f32 matrix quantized to Q8_0 row by row (`cols` a multiple of 32), in the
/// layout the products of one kernel level read. Reused between calls without reallocating.
#[derive(Default)]
pub(crate) struct Q8Matrix {
    rows: usize,
    bpr: usize,
    /// Rows per panel (0: the level has no Q8_0 panel kernel, `blocks` holds the rows).
    panel_rows: usize,
    blocks: Vec<BlockQ8_0>,
    panels: Vec<Panel>,
    kernels: Option<&'static Kernels>,
}

impl Q8Matrix {
    /// Quantizes a `[rows, cols]` matrix at the current [`level`]; `fill(rows, out)` writes rows
    /// `rows` into `out` (`rows.len() × cols`, row-major; it must write every element). Runs
    /// of rows are filled and quantized in parallel.
    pub(crate) fn fill(
        &mut self,
        rows: usize,
        cols: usize,
        fill: impl Fn(Range<usize>, &mut [f32]) + Sync,
    ) {
        let k = kernels_for(level()).expect("level() only returns supported levels");
        self.fill_with(k, rows, cols, fill)
    }

    /// [`fill`](Self::fill) with a given level's kernels.
    pub(crate) fn fill_with(
        &mut self,
        k: &'static Kernels,
        rows: usize,
        cols: usize,
        fill: impl Fn(Range<usize>, &mut [f32]) + Sync,
    ) {
        assert_eq!(cols % QK, 0, "Q8Matrix columns must be whole blocks");
        let bpr = cols / QK;
        let panel = k.panel.filter(|p| p.q8_0.is_some());
        self.rows = rows;
        self.bpr = bpr;
        self.kernels = Some(k);
        self.panel_rows = panel.map_or(0, |p| p.rows);
        // Panels (or, without them, runs of 32 rows) are the parallel tasks.
        let run = if self.panel_rows > 0 {
            self.panel_rows
        } else {
            32
        };
        let quantize_run = |r0: usize, f: &mut dyn FnMut(&[BlockQ8_0])| {
            let r = r0..(r0 + run).min(rows);
            with_buffer(&FILL, |(x, q)| {
                x.resize(r.len() * cols, 0.0);
                q.resize(r.len() * bpr, bytemuck::Zeroable::zeroed());
                fill(r, x);
                (k.quantize_q8_0)(x, q);
                f(q);
            })
        };
        match panel {
            Some(p) => {
                self.panels.resize_with(rows.div_ceil(run), Panel::default);
                self.panels
                    .par_iter_mut()
                    .enumerate()
                    .for_each(|(i, panel)| {
                        quantize_run(i * run, &mut |q| (p.pack_q8_0)(panel, run, bpr, q))
                    });
            }
            None => {
                self.blocks.resize(rows * bpr, bytemuck::Zeroable::zeroed());
                self.blocks
                    .par_chunks_mut(run * bpr)
                    .enumerate()
                    .for_each(|(i, dst)| quantize_run(i * run, &mut |q| dst.copy_from_slice(q)));
            }
        }
    }

    /// Rows that one panel holds (products over a range of rows start at a multiple of it),
    /// or 1 without panels.
    pub(crate) fn row_align(&self) -> usize {
        self.panel_rows.max(1)
    }

    /// `out[t * stride + (r - rows.start)] = alpha · Σ_{b ∈ blocks} dot(M[r, b], x[t])` for
    /// every row `r` in `rows` and token `t` of `x` (added to `out` with `accumulate`); `x`
    /// holds exactly the blocks `blocks` of each of its rows. `rows.start` must be a multiple
    /// of [`row_align`](Self::row_align).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn product(
        &self,
        x: &Q8Rows,
        rows: Range<usize>,
        blocks: Range<usize>,
        alpha: f32,
        accumulate: bool,
        out: &mut [f32],
        stride: usize,
    ) {
        let k = self.kernels.expect("product of a filled matrix");
        let acts = &x.acts;
        let n = x.n_rows;
        assert!(
            rows.end <= self.rows && blocks.end <= self.bpr,
            "product range"
        );
        assert_eq!(
            acts.bpr,
            blocks.len(),
            "left rows hold the product's blocks"
        );
        assert_eq!(rows.start % self.row_align(), 0, "rows start on a panel");
        assert!(
            n == 0 || out.len() >= (n - 1) * stride + rows.len(),
            "product output"
        );
        let put = |o: &mut f32, v: f32| {
            *o = if accumulate {
                *o + alpha * v
            } else {
                alpha * v
            }
        };
        let Some(p) = k.panel.filter(|_| self.panel_rows > 0) else {
            let bpr = self.bpr;
            for t in 0..n {
                let xt = &acts.q[t * acts.bpr..][..acts.bpr];
                for (r, o) in rows.clone().zip(&mut out[t * stride..][..rows.len()]) {
                    let row = &self.blocks[r * bpr..][blocks.clone()];
                    put(o, (k.dot_q8_0_seq)(row, xt));
                }
            }
            return;
        };
        let kernel = p.q8_0.expect("filled with a Q8_0 panel kernel");
        assert_eq!(
            acts.offset,
            Panel::Q8_0_OFFSET,
            "left rows quantized for the panels"
        );
        let pr = self.panel_rows;
        // Taken out of its cell as `with_buffer` does, but by hand: the tile loop inside a
        // `with_buffer` closure measured 3–4% slower over the whole encoder (A/B, 2026-12-01).
        let mut tile = TILE.with(Cell::take);
        tile.resize(p.tokens * pr, 0.0);
        for r0 in rows.clone().step_by(pr) {
            let view = self.panels[r0 / pr].blocks(blocks.clone());
            let width = pr.min(rows.end - r0);
            let col = r0 - rows.start;
            for t0 in (0..n).step_by(p.tokens) {
                let nt = p.tokens.min(n - t0);
                kernel(&view, acts, t0, nt, &mut tile);
                for dt in 0..nt {
                    let dst = &mut out[(t0 + dt) * stride + col..][..width];
                    for (o, &v) in dst.iter_mut().zip(&tile[dt * pr..][..width]) {
                        put(o, v);
                    }
                }
            }
        }
        TILE.with(|c| c.set(tile));
    }
}

/// The left-hand rows of [`Q8Matrix::product`]s, quantized once (in this thread) for all of
/// them. Reused between calls without reallocating.
#[derive(Default)]
pub(crate) struct Q8Rows {
    acts: QActs,
    n_rows: usize,
}

impl Q8Rows {
    /// Quantizes `x.len() / cols` rows of `cols` (a multiple of 32) for products with
    /// matrices of `m`'s level.
    pub(crate) fn quantize(&mut self, m: &Q8Matrix, x: &[f32], cols: usize) {
        let k = m.kernels.expect("quantized against a filled matrix");
        let offset = (m.panel_rows > 0).then_some(Panel::Q8_0_OFFSET);
        self.n_rows = x.len() / cols;
        self.acts.quantize_here(k, x, cols, offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{scalar, supported_levels};
    use proptest::prelude::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
                let v = ((h >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                if h.is_multiple_of(13) {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect()
    }

    /// Whether `got` is the reference's `want`: the same bits on x86 (every level scales and
    /// adds exact block sums in the scalar order and rounding), within rounding elsewhere
    /// (aarch64's dots sum in their own order); `scale` = Σ |terms| of the dot.
    fn agrees(got: f32, want: f32, scale: f32) -> bool {
        if cfg!(target_arch = "x86_64") {
            got.to_bits() == want.to_bits()
        } else {
            (got - want).abs() <= 1e-5 * scale + 1e-6 * want.abs() + f32::MIN_POSITIVE
        }
    }

    /// The product as the definition reads: both sides quantized by the scalar quantizer,
    /// one sequential dot per element; with each element's Σ |terms|.
    fn reference(
        m: &[f32],
        cols: usize,
        x: &[f32],
        rows: Range<usize>,
        blocks: Range<usize>,
    ) -> Vec<(f32, f32)> {
        let q = |v: &[f32]| {
            let mut b = vec![bytemuck::Zeroable::zeroed(); v.len() / QK];
            (scalar::KERNELS.quantize_q8_0)(v, &mut b);
            b
        };
        let abs_terms = |m: &[BlockQ8_0], x: &[BlockQ8_0]| -> f32 {
            let scaled = |b: &BlockQ8_0, i: usize| b.qs[i] as f32 * b.d.to_f32();
            m.iter()
                .zip(x)
                .map(|(a, b)| {
                    (0..QK)
                        .map(|i| (scaled(a, i) * scaled(b, i)).abs())
                        .sum::<f32>()
                })
                .sum()
        };
        let cols_x = blocks.len() * QK;
        let mut out = Vec::new();
        for xt in x.chunks_exact(cols_x) {
            let xq = q(xt);
            for r in rows.clone() {
                let mq = q(&m[r * cols..][..cols]);
                let row = &mq[blocks.clone()];
                out.push((
                    (scalar::KERNELS.dot_q8_0_seq)(row, &xq),
                    abs_terms(row, &xq),
                ));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// Every level, with or without panels, gives the reference's result (see [`agrees`])
        /// for any range of rows and blocks, including rows past a partial last panel.
        #[test]
        fn products_match_the_sequential_reference(
            rows in 1usize..80,
            bpr in 1usize..6,
            n in 1usize..14,
            seed in any::<u64>(),
        ) {
            let cols = bpr * QK;
            let m = values(rows * cols, seed);
            for &l in supported_levels() {
                let k = kernels_for(l).unwrap();
                let mut mat = Q8Matrix::default();
                mat.fill_with(k, rows, cols, |r, out| {
                    out.copy_from_slice(&m[r.start * cols..r.end * cols])
                });
                let align = mat.row_align();
                let r0 = ((seed as usize) % rows) / align * align;
                let b0 = (seed >> 8) as usize % bpr;
                let (rs, bs) = (r0..rows, b0..bpr);
                let x = values(n * bs.len() * QK, seed ^ 0x55);
                let mut left = Q8Rows::default();
                left.quantize(&mat, &x, bs.len() * QK);
                let stride = rs.len() + 3;
                let mut out = vec![1.0; n * stride];
                mat.product(&left, rs.clone(), bs.clone(), 1.0, false, &mut out, stride);
                let want = reference(&m, cols, &x, rs.clone(), bs.clone());
                // Scaled and accumulated too: 1 + 0.5 · product.
                let mut acc = vec![1.0; n * stride];
                mat.product(&left, rs.clone(), bs.clone(), 0.5, true, &mut acc, stride);
                for t in 0..n {
                    for j in 0..rs.len() {
                        let (want, scale) = want[t * rs.len() + j];
                        let got = out[t * stride + j];
                        prop_assert!(agrees(got, want, scale), "{l} token {t} row {j}: {got} {want}");
                        let got = acc[t * stride + j];
                        let want = 1.0 + 0.5 * want;
                        prop_assert!(agrees(got, want, scale), "{l} token {t} row {j}: {got} {want}");
                    }
                    prop_assert!(out[t * stride + rs.len()..][..3].iter().all(|&v| v == 1.0));
                }
            }
        }
    }
}
