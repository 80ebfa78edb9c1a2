//! Element-wise and row-wise operations of the Gemma blocks, in f32.
//!
//! On encoder-sized inputs they run across the thread pool (each element or row is computed
//! by one call whatever the thread count, so results do not depend on it); on a decoder
//! step's single row they stay on the calling thread.

use rayon::prelude::*;

/// Elements from which an operation is split across threads, and the least each task gets.
const PAR_MIN: usize = 1 << 15;

/// Chunk length for splitting `len` elements in whole `unit`s across threads, or `None` when
/// `len` is too small to be worth it.
fn par_chunk(len: usize, unit: usize) -> Option<usize> {
    (len >= PAR_MIN).then(|| PAR_MIN.div_ceil(4 * unit).max(1) * unit)
}

/// Applies `f` to chunks of `x` of `unit`-multiple lengths, across threads when `x` is large.
fn for_chunks(x: &mut [f32], unit: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
    match par_chunk(x.len(), unit) {
        None => f(x),
        Some(chunk) => x.par_chunks_mut(chunk).for_each(f),
    }
}

/// Applies `f` to matching chunks of `x` and `y` (equal lengths), across threads when large.
fn zip_chunks(x: &mut [f32], y: &[f32], f: impl Fn(&mut [f32], &[f32]) + Sync) {
    assert_eq!(x.len(), y.len());
    match par_chunk(x.len(), 1) {
        None => f(x, y),
        Some(chunk) => x
            .par_chunks_mut(chunk)
            .zip(y.par_chunks(chunk))
            .for_each(|(a, b)| f(a, b)),
    }
}

/// Gemma RMSNorm over each row of `x` (length `w.len()`), in place: `x / rms(x) * (1 + w)`.
pub fn rmsnorm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    for_chunks(x, n, |x| crate::kernels::vec_f32::rmsnorm_rows(x, w, eps));
}

/// [`rmsnorm_inplace`] of each row of `x` into `out` (the same length), without copying first.
pub fn rmsnorm_into(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    let n = w.len();
    match par_chunk(x.len(), n) {
        None => crate::kernels::vec_f32::rmsnorm_rows_into(x, w, eps, out),
        Some(chunk) => out
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(o, x)| crate::kernels::vec_f32::rmsnorm_rows_into(x, w, eps, o)),
    }
}

/// The end of a sandwich-normed sublayer, row by row: `y = rmsnorm(y)` in place, then
/// `x += y`, in one pass over each row where separate passes read every row three times.
pub fn add_rmsnormed(x: &mut [f32], y: &mut [f32], w: &[f32], eps: f32) {
    assert_eq!(x.len(), y.len());
    let n = w.len();
    match par_chunk(x.len(), n) {
        None => crate::kernels::vec_f32::add_rmsnormed_rows(x, y, w, eps),
        Some(chunk) => x
            .par_chunks_mut(chunk)
            .zip(y.par_chunks_mut(chunk))
            .for_each(|(x, y)| crate::kernels::vec_f32::add_rmsnormed_rows(x, y, w, eps)),
    }
}

/// `1 / sqrt(mean(row²) + eps)`, the sum of squares in 16 lanes (element i in lane i % 16,
/// lanes added pairwise) so it vectorizes; a row's result depends only on the row.
#[inline(always)]
fn rms_inverse(row: &[f32], eps: f32) -> f32 {
    const L: usize = 16;
    let mut lanes = [0.0f32; L];
    let chunks = row.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        for (s, v) in lanes.iter_mut().zip(c) {
            *s += v * v;
        }
    }
    for (s, v) in lanes.iter_mut().zip(tail) {
        *s += v * v;
    }
    let mut width = L;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    let mean_sq = lanes[0] / row.len() as f32;
    1.0 / (mean_sq + eps).sqrt()
}

/// [`rmsnorm_inplace`] of whole rows on one thread.
#[inline(always)]
pub(crate) fn rmsnorm_body(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let inv = rms_inverse(row, eps);
        for (v, g) in row.iter_mut().zip(w) {
            *v = *v * inv * (1.0 + g);
        }
    }
}

/// [`rmsnorm_into`] of whole rows on one thread (the bits of [`rmsnorm_body`]).
#[inline(always)]
pub(crate) fn rmsnorm_into_body(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    for (row, o) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        let inv = rms_inverse(row, eps);
        for ((o, v), g) in o.iter_mut().zip(row).zip(w) {
            *o = *v * inv * (1.0 + g);
        }
    }
}

/// [`add_rmsnormed`] of whole rows on one thread (the bits of [`rmsnorm_body`], then the add).
#[inline(always)]
pub(crate) fn add_rmsnormed_body(x: &mut [f32], y: &mut [f32], w: &[f32], eps: f32) {
    for (xr, yr) in x.chunks_exact_mut(w.len()).zip(y.chunks_exact_mut(w.len())) {
        let inv = rms_inverse(yr, eps);
        for ((a, v), g) in xr.iter_mut().zip(yr.iter_mut()).zip(w) {
            *v = *v * inv * (1.0 + g);
            *a += *v;
        }
    }
}

/// Gemma RMSNorm from `x` into `out`.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    rmsnorm_into(x, w, eps, out);
}

/// `e^x` in f32 without a libm call (Cephes' polynomial, within 2 ulp of libm; exactly 0 at
/// -inf). Branch-free, so loops over it vectorize: the encoder spends its non-matrix time in
/// GELU and softmax exponentials. Its multiply-adds are fused (`mul_add`, exactly rounded, so
/// the same bits on every CPU): callers in hot loops are compiled with FMA
/// (`kernels::vec_f32`); elsewhere on x86 each is a libm call.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = x.clamp(-87.0, 88.0);
    let shifted = xc.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    // r = x - n·ln 2, with ln 2 split in two so that the first product is exact.
    let r = n.mul_add(-0.693_359_4, xc);
    let r = n.mul_add(2.121_944_4e-4, r);
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 0.166_666_65);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    // 2^n from the integer n held in `shifted`'s low mantissa bits (|n| ≤ 127 < 2^22): the
    // same value as `n as i32`, in integer operations that vectorize (a float-to-int cast
    // saturates, and compilers scalarize it).
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    let scaled = y * f32::from_bits(biased << 23);
    if x == f32::NEG_INFINITY {
        0.0
    } else {
        scaled
    }
}

/// `tanh(x)` through [`exp_f32`] (absolute error below 1e-7).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let e = exp_f32(2.0 * x);
    (e - 1.0) / (e + 1.0)
}

/// GELU, tanh approximation (`gelu_pytorch_tanh`): `0.5 x (1 + tanh(z))`, computed as the
/// equal `x / (1 + e^(-2z))`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let z = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    x / (1.0 + exp_f32(-2.0 * z))
}

/// `gate = gelu_tanh(gate) * up`, element-wise.
pub fn gelu_gate_inplace(gate: &mut [f32], up: &[f32]) {
    zip_chunks(gate, up, crate::kernels::vec_f32::gelu_gate);
}

/// Soft-capping `tanh(x / cap) * cap`, in place.
pub fn softcap_inplace(x: &mut [f32], cap: f32) {
    crate::kernels::vec_f32::softcap(x, cap)
}

/// `x += y`.
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    zip_chunks(x, y, |x, y| {
        for (a, b) in x.iter_mut().zip(y) {
            *a += b;
        }
    });
}

/// Numerically stable softmax in place; an all-masked row (every entry -inf) becomes uniform
/// rather than NaN, as transformers' additive finfo.min masks make it.
pub fn softmax_inplace(x: &mut [f32]) {
    crate::kernels::vec_f32::softmax_inplace(x)
}

/// [`softmax_inplace`]'s arithmetic, compiled once per instruction set by `kernels::vec_f32`.
#[inline(always)]
pub(crate) fn softmax_body(x: &mut [f32]) {
    // 32 running lanes (element i in lane i % 32), so the max and the sum run as a few
    // independent vector chains; the result depends only on the row, not on threads or
    // kernel levels. Whole chunks of L, then the tail into lanes 0..: loops of a fixed length
    // vectorize (a `chunks(L)` loop, whose last chunk may be short, ran element by element).
    const L: usize = 32;
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    // The maximum is the same in any order; a plain comparison (NaN never wins) compiles to
    // one instruction where `f32::max` needs three.
    let mut m = [f32::NEG_INFINITY; L];
    for c in chunks {
        for (m, &v) in m.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    for (m, &v) in m.iter_mut().zip(tail) {
        *m = if v > *m { v } else { *m };
    }
    let max = m.into_iter().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        let u = 1.0 / x.len() as f32;
        x.iter_mut().for_each(|v| *v = u);
        return;
    }
    // The exponentials, then their sum: two simple loops vectorize at the full width (one
    // loop doing both was vectorized eight lanes at a time with shuffles).
    x.iter_mut().for_each(|v| *v = exp_f32(*v - max));
    let mut sums = [0.0f32; L];
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        for (s, v) in sums.iter_mut().zip(c) {
            *s += *v;
        }
    }
    for (s, v) in sums.iter_mut().zip(tail) {
        *s += *v;
    }
    // Lanes added pairwise: l and l + 16, then l and l + 8, ...
    let mut width = L;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            sums[i] += sums[i + width];
        }
    }
    let inv = 1.0 / sums[0];
    x.iter_mut().for_each(|v| *v *= inv);
}

/// Rotary position embedding tables for one head size and one frequency setting.
#[derive(Clone, Debug)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    /// `inv_freq[k] = theta^(-2k/hd) / scaling_factor` (linear scaling divides the frequencies).
    pub fn new(head_dim: usize, theta: f32, linear_factor: f32) -> Self {
        let half = head_dim / 2;
        let inv_freq = (0..half)
            .map(|k| {
                // transformers computes the exponent in float32 from an int64 arange.
                let exponent = (2 * k) as f32 / head_dim as f32;
                1.0 / theta.powf(exponent) / linear_factor
            })
            .collect();
        Rope { inv_freq }
    }

    /// Rotates one head vector (half-split "NeoX" layout) for position `pos`, in place.
    pub fn apply(&self, x: &mut [f32], pos: usize) {
        let table = self.table(pos, 1);
        rotate(x, &table.cos, &table.sin);
    }

    /// The `cos` and `sin` of every frequency's angle at positions `pos0..pos0 + n`.
    pub fn table(&self, pos0: usize, n: usize) -> RopeTable {
        let mut table = RopeTable {
            half: 0,
            cos: Vec::new(),
            sin: Vec::new(),
        };
        self.table_into(pos0, n, &mut table);
        table
    }

    /// [`table`](Self::table) into `table`, reusing its memory.
    pub fn table_into(&self, pos0: usize, n: usize, table: &mut RopeTable) {
        let half = self.inv_freq.len();
        table.half = half;
        let (cos, sin) = (&mut table.cos, &mut table.sin);
        // Every element is written below.
        cos.resize(n * half, 0.0);
        sin.resize(n * half, 0.0);
        let fill = |t: usize, (cos, sin): (&mut [f32], &mut [f32])| {
            for ((c, s), f) in cos.iter_mut().zip(sin.iter_mut()).zip(&self.inv_freq) {
                (*s, *c) = ((pos0 + t) as f32 * f).sin_cos();
            }
        };
        if n * half < PAR_MIN || half == 0 {
            cos.chunks_exact_mut(half.max(1))
                .zip(sin.chunks_exact_mut(half.max(1)))
                .enumerate()
                .for_each(|(t, rows)| fill(t, rows));
        } else {
            cos.par_chunks_exact_mut(half)
                .zip(sin.par_chunks_exact_mut(half))
                .enumerate()
                .for_each(|(t, rows)| fill(t, rows));
        }
    }

    /// Rotates every head of `n` rows of `x` (`n_heads * head_dim` wide), row `t` being at
    /// position `pos0 + t`: the same values as [`apply`](Self::apply) per head.
    pub fn apply_rows(&self, x: &mut [f32], n_heads: usize, pos0: usize) {
        let n = x.len() / (2 * self.inv_freq.len() * n_heads).max(1);
        self.table(pos0, n).apply_rows(x, n_heads);
    }
}

/// RoPE `cos`/`sin` for a run of positions ([`Rope::table`]): computed once and applied to the
/// queries and keys of every layer that shares the frequencies.
#[derive(Clone, Debug)]
pub struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// Rotates every head of the rows of `x` (`n_heads * head_dim` wide); row `t` takes the
    /// table's position `t`, and `x` has at most as many rows as the table.
    pub fn apply_rows(&self, x: &mut [f32], n_heads: usize) {
        let half = self.half;
        let width = n_heads * 2 * half;
        if width == 0 {
            return;
        }
        assert!(
            x.len() / width * half <= self.cos.len(),
            "more rows than table positions"
        );
        let rotate_row = |(row, (cos, sin)): (&mut [f32], (&[f32], &[f32]))| {
            for head in row.chunks_exact_mut(2 * half) {
                rotate(head, cos, sin);
            }
        };
        if x.len() < PAR_MIN {
            x.chunks_exact_mut(width)
                .zip(self.cos.chunks_exact(half).zip(self.sin.chunks_exact(half)))
                .for_each(rotate_row);
        } else {
            x.par_chunks_exact_mut(width)
                .zip(
                    self.cos
                        .par_chunks_exact(half)
                        .zip(self.sin.par_chunks_exact(half)),
                )
                .for_each(rotate_row);
        }
    }
}

/// The rotation of one head by precomputed `cos`/`sin`.
#[inline]
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    debug_assert_eq!(x.len(), 2 * half);
    let (lo, hi) = x.split_at_mut(half);
    for k in 0..half {
        let (a, b) = (lo[k], hi[k]);
        lo[k] = a * cos[k] - b * sin[k];
        hi[k] = b * cos[k] + a * sin[k];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_tanh_and_gelu_match_libm() {
        let mut worst = (0.0f32, 0.0f32, 0.0f32);
        for i in -200_000..=200_000 {
            let x = i as f32 * 4.35e-4; // -87 .. 87 (below -87 the result is clamped near 1e-38)
            let rel = (exp_f32(x) - x.exp()).abs() / x.exp();
            worst.0 = worst.0.max(rel);
            let t = i as f32 * 1e-4;
            worst.1 = worst.1.max((tanh_f32(t) - t.tanh()).abs());
            let reference = 0.5 * t * (1.0 + (0.797_884_6f32 * (t + 0.044715 * t * t * t)).tanh());
            worst.2 = worst
                .2
                .max((gelu_tanh(t) - reference).abs() / t.abs().max(1.0));
        }
        assert!(worst.0 < 3e-7, "exp relative error {}", worst.0);
        assert!(worst.1 < 2e-7, "tanh absolute error {}", worst.1);
        assert!(worst.2 < 3e-7, "gelu error {}", worst.2);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(-100.0) < 2e-38);
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(-100.0), -1.0);
    }

    #[test]
    fn rmsnorm_uses_one_plus_weight() {
        let mut x = vec![3.0f32, 4.0];
        rmsnorm_inplace(&mut x, &[0.0, 1.0], 0.0);
        let rms = (12.5f32).sqrt();
        assert!((x[0] - 3.0 / rms).abs() < 1e-6);
        assert!((x[1] - 2.0 * 4.0 / rms).abs() < 1e-6);
    }

    #[test]
    fn softmax_of_all_masked_row_is_uniform() {
        let mut x = vec![f32::NEG_INFINITY; 4];
        softmax_inplace(&mut x);
        assert!(x.iter().all(|&v| v == 0.25));
    }

    #[test]
    fn rope_at_zero_is_identity_and_preserves_norm() {
        let rope = Rope::new(8, 10000.0, 1.0);
        let x0: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
        let mut x = x0.clone();
        rope.apply(&mut x, 0);
        assert_eq!(x, x0);
        rope.apply(&mut x, 17);
        let n0: f32 = x0.iter().map(|v| v * v).sum();
        let n1: f32 = x.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-3);
    }
}

#[cfg(test)]
mod parallel_tests {
    //! Inputs past `PAR_MIN` take the multi-threaded path: it must give exactly what the
    //! single-threaded path gives row by row (the model tests' fixtures are too small to
    //! reach it).
    use super::*;

    const N: usize = 640;

    fn data(len: usize, k: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * k % 101) as f32 - 50.0) * 0.1)
            .collect()
    }

    fn row_by_row(x: &[f32], f: impl Fn(&mut [f32], usize)) -> Vec<f32> {
        let mut out = x.to_vec();
        for (r, row) in out.chunks_mut(N).enumerate() {
            f(row, r);
        }
        out
    }

    #[test]
    fn large_inputs_match_row_by_row() {
        let len = N * 200;
        assert!(len >= PAR_MIN);
        let (x, y) = (data(len, 37), data(len, 53));
        let w = data(N, 7);

        let mut big = x.clone();
        rmsnorm_inplace(&mut big, &w, 1e-6);
        assert_eq!(big, row_by_row(&x, |row, _| rmsnorm_inplace(row, &w, 1e-6)));

        let mut big = x.clone();
        gelu_gate_inplace(&mut big, &y);
        let want = row_by_row(&x, |row, r| gelu_gate_inplace(row, &y[r * N..(r + 1) * N]));
        assert_eq!(big, want);

        let mut big = x.clone();
        add_inplace(&mut big, &y);
        let want = row_by_row(&x, |row, r| add_inplace(row, &y[r * N..(r + 1) * N]));
        assert_eq!(big, want);

        let rope = Rope::new(64, 10_000.0, 1.0);
        let mut big = x.clone();
        rope.apply_rows(&mut big, N / 64, 3);
        let want = row_by_row(&x, |row, r| rope.apply_rows(row, N / 64, 3 + r));
        assert_eq!(big, want);
        assert_ne!(big, x);
    }
}
