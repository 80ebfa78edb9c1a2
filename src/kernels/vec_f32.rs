//! f32 vector helpers with one fixed order of operations, so they return the same bits on
//! every CPU and at every [`KernelLevel`](super::KernelLevel): the decoder's attention (the
//! scores and weighted values of a query's heads) and the encoder's softmax and GELU gate use
//! them, and greedy output must not depend on the level. Wider instruction sets only make the
//! same lane-by-lane arithmetic faster, without fused multiply-adds or reassociation: the
//! element-wise helpers are compiled once per instruction set from one body; the attention
//! helpers have an AVX2 kernel (memory-bound, so AVX-512 CPUs run it too) beside the portable
//! loop that is their reference.

use super::gemm_f32::Strided;

/// Lanes of the running sums: element `i` goes to lane `i % LANES`.
const LANES: usize = 16;

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    dot_finish([0.0; LANES], a, b)
}

/// Adds the products of `a`, `b` into `acc` lane by lane (element i into lane i % LANES), then
/// combines the lanes pairwise: l and l + 8, then l and l + 4, ...
#[inline(always)]
fn dot_finish(mut acc: [f32; LANES], a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ta.iter().zip(tb).enumerate() {
        acc[l] += x * y;
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0]
}

#[inline(always)]
fn axpy_body(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * *x;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Strided, LANES};
    use std::arch::x86_64::*;

    /// [`super::dots_heads`] in ymm: per row, up to four heads at a time.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dots_heads_avx2(
        q: &[f32],
        head_dim: usize,
        m: &[f32],
        stride: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        let heads = q.len() / head_dim;
        let n = out.len() / heads;
        for j in 0..n {
            let key = &m[j * stride..][..head_dim];
            let mut h0 = 0;
            while h0 < heads {
                let take = (heads - h0).min(4);
                let qs = &q[h0 * head_dim..][..take * head_dim];
                let sums: [f32; 4] = match take {
                    4 => dots_one_row::<4>(qs, key),
                    3 => pad(dots_one_row::<3>(qs, key)),
                    2 => pad(dots_one_row::<2>(qs, key)),
                    _ => pad(dots_one_row::<1>(qs, key)),
                };
                for (h, s) in sums.iter().take(take).enumerate() {
                    out[(h0 + h) * n + j] = s * scale;
                }
                h0 += take;
            }
        }
    }

    fn pad<const H: usize>(v: [f32; H]) -> [f32; 4] {
        std::array::from_fn(|i| if i < H { v[i] } else { 0.0 })
    }

    /// The dots of `H` query heads (`q`: `H` rows of `key.len()`) with one key: lanes 0..8 and
    /// 8..16 of [`super::dot_finish`] in two ymm per head, the key loaded once for all heads.
    #[inline(always)]
    unsafe fn dots_one_row<const H: usize>(q: &[f32], key: &[f32]) -> [f32; H] {
        let hd = key.len();
        let full = hd - hd % LANES;
        let (mut lo, mut hi) = ([_mm256_setzero_ps(); H], [_mm256_setzero_ps(); H]);
        let kp = key.as_ptr();
        for i in (0..full).step_by(LANES) {
            let (ka, kb) = (_mm256_loadu_ps(kp.add(i)), _mm256_loadu_ps(kp.add(i + 8)));
            for h in 0..H {
                let qp = q.as_ptr().add(h * hd + i);
                lo[h] = _mm256_add_ps(lo[h], _mm256_mul_ps(_mm256_loadu_ps(qp), ka));
                hi[h] = _mm256_add_ps(hi[h], _mm256_mul_ps(_mm256_loadu_ps(qp.add(8)), kb));
            }
        }
        std::array::from_fn(|h| {
            if full == hd {
                combine_lanes(lo[h], hi[h])
            } else {
                let mut lanes = [0.0f32; LANES];
                _mm256_storeu_ps(lanes.as_mut_ptr(), lo[h]);
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi[h]);
                super::dot_finish(lanes, &q[h * hd + full..(h + 1) * hd], &key[full..])
            }
        })
    }

    /// [`super::dot_finish`]'s pairwise combination of 16 lanes held as `lo` (0..8) and `hi`
    /// (8..16): l + (l + 8), then l + (l + 4), l + (l + 2), 0 + 1.
    #[inline(always)]
    unsafe fn combine_lanes(lo: __m256, hi: __m256) -> f32 {
        let v = _mm256_add_ps(lo, hi);
        let x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let x = _mm_add_ss(x, _mm_shuffle_ps::<1>(x, x));
        _mm_cvtss_f32(x)
    }

    /// [`super::weighted_rows_heads`] in ymm, row after row: each row streams from memory
    /// once (in order, which the prefetchers follow best) and is added into every head's sums
    /// while it sits in L1; the sums live in `out` (too many for registers). Blocking rows to
    /// keep the sums in registers was slower here (5.3–7.2 against 8.3 GB/s from memory).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn weighted_rows_heads_avx2(
        out: &mut [f32],
        w: Strided,
        m: &[f32],
        stride: usize,
    ) {
        let d = out.len() / w.rows;
        let full = d - d % 8;
        for j in 0..w.cols {
            let row = &m[j * stride..][..d];
            for (h, o) in out.chunks_exact_mut(d).enumerate() {
                let wj = w.data[h * w.row_stride + j * w.col_stride];
                let wv = _mm256_set1_ps(wj);
                let (po, pr) = (o.as_mut_ptr(), row.as_ptr());
                for c in (0..full).step_by(8) {
                    let p = _mm256_mul_ps(wv, _mm256_loadu_ps(pr.add(c)));
                    _mm256_storeu_ps(po.add(c), _mm256_add_ps(_mm256_loadu_ps(po.add(c)), p));
                }
                super::axpy_body(&mut o[full..], wj, &row[full..]);
            }
        }
    }
}

/// Runs `$body` compiled for AVX-512 or AVX2 (with FMA) when the CPU has it, else as is: the
/// same arithmetic in the same order, so the same bits (the compiler fuses no multiply-add on
/// its own; explicit `mul_add`s are exactly rounded everywhere, in hardware here).
macro_rules! multiversion {
    ($name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? $body
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? $body
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has every feature the function is compiled for.
                return unsafe { avx512($($arg),*) };
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: as above.
                return unsafe { avx2($($arg),*) };
            }
        }
        fn portable($($arg: $ty),*) $(-> $ret)? $body
        portable($($arg),*)
    }};
}

/// `x = softmax(x)` with [`crate::ops::softmax_inplace`]'s arithmetic, vectorized for the CPU.
pub fn softmax_inplace(x: &mut [f32]) {
    multiversion!(softmax(x: &mut [f32]) { crate::ops::softmax_body(x) })
}

/// Gemma RMSNorm of each whole row of `x` (rows of `w.len()`) with
/// [`crate::ops::rmsnorm_inplace`]'s arithmetic, vectorized for the CPU.
pub fn rmsnorm_rows(x: &mut [f32], w: &[f32], eps: f32) {
    multiversion!(rmsnorm(x: &mut [f32], w: &[f32], eps: f32) {
        crate::ops::rmsnorm_body(x, w, eps)
    })
}

/// [`crate::ops::rmsnorm_into`] of whole rows, vectorized for the CPU.
pub fn rmsnorm_rows_into(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    multiversion!(rmsnorm_into(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        crate::ops::rmsnorm_into_body(x, w, eps, out)
    })
}

/// [`crate::ops::add_rmsnormed`] of whole rows, vectorized for the CPU.
pub fn add_rmsnormed_rows(x: &mut [f32], y: &mut [f32], w: &[f32], eps: f32) {
    multiversion!(add_rmsnormed(x: &mut [f32], y: &mut [f32], w: &[f32], eps: f32) {
        crate::ops::add_rmsnormed_body(x, y, w, eps)
    })
}

/// `x = tanh(x / cap) · cap` with [`crate::ops::tanh_f32`], vectorized for the CPU.
pub fn softcap(x: &mut [f32], cap: f32) {
    multiversion!(softcap(x: &mut [f32], cap: f32) {
        for v in x.iter_mut() {
            *v = crate::ops::tanh_f32(*v / cap) * cap;
        }
    })
}

/// `gate = gelu_tanh(gate) * up` with [`crate::ops::gelu_tanh`], vectorized for the CPU.
pub fn gelu_gate(gate: &mut [f32], up: &[f32]) {
    multiversion!(gelu(gate: &mut [f32], up: &[f32]) {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = crate::ops::gelu_tanh(*g) * u;
        }
    })
}

/// Attention scores of several query heads against the same rows:
/// `out[h * n + j] = (Σ_i q[h * head_dim + i] · m[j * stride + i]) · scale` for every head
/// `h < q.len() / head_dim` and row `j < n = out.len() / heads`. Each sum runs in 16 lanes
/// (element i in lane i % 16) combined pairwise, whatever the CPU; each row of `m` is read
/// from memory once for all the heads.
pub fn dots_heads(
    q: &[f32],
    head_dim: usize,
    m: &[f32],
    stride: usize,
    scale: f32,
    out: &mut [f32],
) {
    assert!(
        head_dim > 0 && q.len().is_multiple_of(head_dim),
        "q is whole heads"
    );
    let heads = q.len() / head_dim;
    if heads == 0 || out.is_empty() {
        return;
    }
    assert_eq!(out.len() % heads, 0, "out is one row of scores per head");
    let n = out.len() / heads;
    let end = (n - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(head_dim));
    assert!(end.is_some_and(|e| e <= m.len()), "rows out of bounds");
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has the feature; every slice is indexed with bounds checks.
        return unsafe { x86::dots_heads_avx2(q, head_dim, m, stride, scale, out) };
    }
    for j in 0..n {
        let key = &m[j * stride..][..head_dim];
        for (h, qh) in q.chunks_exact(head_dim).enumerate() {
            out[h * n + j] = dot_body(qh, key) * scale;
        }
    }
}

/// Weighted sums of the same rows for several heads: for head `h` (row `h` of `out`,
/// `d = out.len() / w.rows` wide), `out_h[i] += Σ_j w[h, j] · m[j * stride + i]`, adding row
/// after row (`out_h[i] += w[h, j] · m[..]`, multiply then add, j ascending), whatever the
/// CPU; each row of `m` is read from memory once for all the heads. `w` is one row of
/// `w.cols` weights per head, read in place (the probability rows of a score matrix).
pub fn weighted_rows_heads(out: &mut [f32], w: Strided, m: &[f32], stride: usize) {
    let n = w.cols;
    if w.rows == 0 || n == 0 {
        return;
    }
    assert_eq!(out.len() % w.rows, 0, "out is one row per head");
    let last_weight = (w.rows - 1) * w.row_stride + (n - 1) * w.col_stride;
    assert!(last_weight < w.data.len(), "weights out of bounds");
    let d = out.len() / w.rows;
    if d == 0 {
        return;
    }
    let end = (n - 1).checked_mul(stride).and_then(|v| v.checked_add(d));
    assert!(end.is_some_and(|e| e <= m.len()), "rows out of bounds");
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has the feature; every slice is indexed with bounds checks.
        return unsafe { x86::weighted_rows_heads_avx2(out, w, m, stride) };
    }
    for j in 0..n {
        let row = &m[j * stride..][..d];
        for (h, o) in out.chunks_exact_mut(d).enumerate() {
            axpy_body(o, w.data[h * w.row_stride + j * w.col_stride], row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_gelu_softcap_and_rmsnorm_give_the_portable_bits() {
        let x: Vec<f32> = (0..517)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.037)
            .chain([f32::NEG_INFINITY, 88.0, -90.0, 0.0, -0.0])
            .collect();
        for n in [1, 7, 8, 9, 64, 522] {
            let (mut a, mut b) = (x[..n].to_vec(), x[..n].to_vec());
            softmax_inplace(&mut a);
            crate::ops::softmax_body(&mut b);
            assert_eq!(a, b, "softmax {n}");
            let up: Vec<f32> = x[..n].iter().map(|v| v * 0.5 + 1.0).collect();
            let (mut g1, mut g2) = (x[..n].to_vec(), x[..n].to_vec());
            gelu_gate(&mut g1, &up);
            for (g, u) in g2.iter_mut().zip(&up) {
                *g = crate::ops::gelu_tanh(*g) * u;
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&g1), bits(&g2), "gelu {n}");
            let (mut c1, mut c2) = (x[..n].to_vec(), x[..n].to_vec());
            softcap(&mut c1, 5.0);
            c2.iter_mut()
                .for_each(|v| *v = crate::ops::tanh_f32(*v / 5.0) * 5.0);
            assert_eq!(bits(&c1), bits(&c2), "softcap {n}");
            // Two rows of n through RMSNorm, the gains far from zero.
            let w: Vec<f32> = x[..n].iter().map(|v| v * 0.1 - 0.7).collect();
            let rows: Vec<f32> = x.iter().rev().cycle().take(2 * n).copied().collect();
            let (mut r1, mut r2) = (rows.clone(), rows);
            let (rows, mut into) = (r1.clone(), vec![0.0; r1.len()]);
            rmsnorm_rows(&mut r1, &w, 1e-6);
            crate::ops::rmsnorm_body(&mut r2, &w, 1e-6);
            assert_eq!(bits(&r1), bits(&r2), "rmsnorm {n}");
            // The same norm into another buffer, and added to a residual.
            rmsnorm_rows_into(&rows, &w, 1e-6, &mut into);
            assert_eq!(bits(&into), bits(&r2), "rmsnorm into {n}");
            let residual: Vec<f32> = rows.iter().map(|v| v * 0.25 - 1.0).collect();
            let (mut x1, mut y1) = (residual.clone(), rows.clone());
            let (mut x2, mut y2) = (residual, rows);
            add_rmsnormed_rows(&mut x1, &mut y1, &w, 1e-6);
            crate::ops::add_rmsnormed_body(&mut x2, &mut y2, &w, 1e-6);
            assert_eq!(bits(&y1), bits(&r2), "add_rmsnormed's norm {n}");
            assert_eq!(bits(&x1), bits(&x2), "add_rmsnormed {n}");
        }
    }

    #[test]
    fn dot_lanes_stay_close_to_the_exact_sum() {
        let a: Vec<f32> = (0..301)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let b: Vec<f32> = (0..301)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) * 0.7)
            .collect();
        for n in [0, 1, 15, 16, 17, 256, 301] {
            let (a, b) = (&a[..n], &b[..n]);
            let exact: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let got = dot_body(a, b) as f64;
            assert!((got - exact).abs() <= 1e-4 * (1.0 + exact.abs()), "{n}");
        }
    }

    /// Values spread over many binades, so that any other order of additions shows in the bits.
    fn spread(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let k = (i * 7919 + seed * 104_729) % 2003;
                (k as f32 - 1001.0) * 0.37 * 1.5f32.powi((k % 23) as i32 - 11)
            })
            .collect()
    }

    #[test]
    fn dots_heads_give_the_portable_bits() {
        // Head counts around the four-at-a-time grouping; head dims with and without a ragged
        // rest of 16 lanes; rows inside a wider stride.
        for heads in 1..=6 {
            for hd in [1, 15, 16, 17, 48, 256, 301] {
                for n in [1, 2, 5] {
                    let stride = hd + 3;
                    let q = spread(heads * hd, 1);
                    let m = spread((n - 1) * stride + hd, 2);
                    let mut got = vec![f32::NAN; heads * n];
                    dots_heads(&q, hd, &m, stride, 0.125, &mut got);
                    for h in 0..heads {
                        for j in 0..n {
                            let want = dot_body(&q[h * hd..][..hd], &m[j * stride..][..hd]) * 0.125;
                            assert_eq!(
                                got[h * n + j].to_bits(),
                                want.to_bits(),
                                "heads {heads} hd {hd} n {n}: head {h} row {j}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn weighted_rows_heads_give_the_portable_bits() {
        for heads in 1..=5 {
            for d in [1, 7, 8, 9, 64, 150] {
                for n in [1, 2, 7] {
                    let stride = d + 5;
                    let m = spread((n - 1) * stride + d, 3);
                    // The heads' weights as rows of a wider matrix, as in a score buffer.
                    let w_stride = n + 3;
                    let w_all = spread(heads * w_stride, 10 + heads);
                    let w = Strided {
                        data: &w_all,
                        rows: heads,
                        cols: n,
                        row_stride: w_stride,
                        col_stride: 1,
                    };
                    let start = spread(heads * d, 4);
                    let mut got = start.clone();
                    weighted_rows_heads(&mut got, w, &m, stride);
                    let mut want = start;
                    for (h, o) in want.chunks_exact_mut(d).enumerate() {
                        for (j, &wj) in w_all[h * w_stride..][..n].iter().enumerate() {
                            axpy_body(o, wj, &m[j * stride..][..d]);
                        }
                    }
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "heads {heads} d {d} n {n}");
                }
            }
        }
    }
}
