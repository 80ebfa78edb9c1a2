//! f32 vector helpers with one fixed order of operations, so they return the same bits on
//! every CPU and at every [`KernelLevel`](super::KernelLevel): the decoder's attention (dot,
//! weighted rows) and the encoder's softmax and GELU gate use them, and greedy output must not
//! depend on the level. Wider instruction sets only make the same lane-by-lane arithmetic
//! faster: each function is compiled once per instruction set from one body, without fused
//! multiply-adds or reassociation.

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

#[inline(always)]
fn weighted_rows_body(out: &mut [f32], w: &[f32], m: &[f32], stride: usize) {
    for (j, &wj) in w.iter().enumerate() {
        axpy_body(out, wj, &m[j * stride..][..out.len()]);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// The whole 16-element chunks in one zmm (unfused multiply, then add), the rest as
    /// [`super::dot_finish`] does it.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let full = a.len() - a.len() % LANES;
        let mut acc = _mm512_setzero_ps();
        for i in (0..full).step_by(LANES) {
            let p = _mm512_mul_ps(
                _mm512_loadu_ps(a.as_ptr().add(i)),
                _mm512_loadu_ps(b.as_ptr().add(i)),
            );
            acc = _mm512_add_ps(acc, p);
        }
        let mut lanes = [0.0f32; LANES];
        _mm512_storeu_ps(lanes.as_mut_ptr(), acc);
        super::dot_finish(lanes, &a[full..], &b[full..])
    }

    /// [`super::dots`] over one instruction set's dot, so the row loop is compiled with it.
    macro_rules! dots_with {
        ($name:ident, $feat:literal, $dot:ident) => {
            #[doc = concat!("[`super::dots`] with [`", stringify!($dot), "`].")]
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $name(
                q: &[f32],
                m: &[f32],
                stride: usize,
                scale: f32,
                out: &mut [f32],
            ) {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = $dot(q, &m[j * stride..][..q.len()]) * scale;
                }
            }
        };
    }
    dots_with!(dots_avx512, "avx512f", dot_avx512);
    dots_with!(dots_avx2, "avx2", dot_avx2);

    /// As [`dot_avx512`], lanes 0..8 and 8..16 in two ymm.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let full = a.len() - a.len() % LANES;
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..full).step_by(LANES) {
            let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
            lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb)));
            hi = _mm256_add_ps(
                hi,
                _mm256_mul_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8))),
            );
        }
        let mut lanes = [0.0f32; LANES];
        _mm256_storeu_ps(lanes.as_mut_ptr(), lo);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi);
        super::dot_finish(lanes, &a[full..], &b[full..])
    }

    /// 64 output elements at a time held in four zmm across all rows, the rest by the body.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_rows_avx512(
        out: &mut [f32],
        w: &[f32],
        m: &[f32],
        stride: usize,
    ) {
        let n = out.len();
        let full = n - n % 64;
        for d0 in (0..full).step_by(64) {
            let po = out.as_mut_ptr().add(d0);
            let mut acc = [0, 16, 32, 48].map(|o| _mm512_loadu_ps(po.add(o)));
            for (j, &wj) in w.iter().enumerate() {
                let wv = _mm512_set1_ps(wj);
                let pm = m.as_ptr().add(j * stride + d0);
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(wv, _mm512_loadu_ps(pm.add(16 * k))));
                }
            }
            for (k, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(po.add(16 * k), *a);
            }
        }
        if full < n {
            super::weighted_rows_body(&mut out[full..], w, &m[full..], stride);
        }
    }

    /// As [`weighted_rows_avx512`], in eight ymm.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn weighted_rows_avx2(out: &mut [f32], w: &[f32], m: &[f32], stride: usize) {
        let n = out.len();
        let full = n - n % 64;
        for d0 in (0..full).step_by(64) {
            let po = out.as_mut_ptr().add(d0);
            let mut acc = [0, 8, 16, 24, 32, 40, 48, 56].map(|o| _mm256_loadu_ps(po.add(o)));
            for (j, &wj) in w.iter().enumerate() {
                let wv = _mm256_set1_ps(wj);
                let pm = m.as_ptr().add(j * stride + d0);
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, _mm256_loadu_ps(pm.add(8 * k))));
                }
            }
            for (k, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(po.add(8 * k), *a);
            }
        }
        if full < n {
            super::weighted_rows_body(&mut out[full..], w, &m[full..], stride);
        }
    }
}

/// Runs `$body` compiled for AVX-512 or AVX2 when the CPU has it, else as is: the same
/// arithmetic in the same order (no fused multiply-adds), so the same bits.
macro_rules! multiversion {
    ($name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? $body
            #[target_feature(enable = "avx2")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? $body
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
            {
                // SAFETY: the CPU has every feature the function is compiled for.
                return unsafe { avx512($($arg),*) };
            }
            if is_x86_feature_detected!("avx2") {
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

/// `gate = gelu_tanh(gate) * up` with [`crate::ops::gelu_tanh`], vectorized for the CPU.
pub fn gelu_gate(gate: &mut [f32], up: &[f32]) {
    multiversion!(gelu(gate: &mut [f32], up: &[f32]) {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = crate::ops::gelu_tanh(*g) * u;
        }
    })
}

/// `out[j] = (Σ_i q[i] · m[j * stride + i]) · scale` for every j (attention scores): each sum
/// in 16 lanes (element i in lane i % 16) combined pairwise; one dispatch for all rows.
pub fn dots(q: &[f32], m: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    let end = (out.len() - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(q.len()));
    assert!(end.is_some_and(|e| e <= m.len()), "rows out of bounds");
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature; the slices are bounds-checked inside.
            return unsafe { x86::dots_avx512(q, m, stride, scale, out) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { x86::dots_avx2(q, m, stride, scale, out) };
        }
    }
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot_body(q, &m[j * stride..][..q.len()]) * scale;
    }
}

/// `out[d] += Σ_j w[j] · m[j * stride + d]` for `d < out.len()`, adding row after row
/// (`out[d] += w[j] · m[..]`, multiply then add, j ascending).
pub fn weighted_rows(out: &mut [f32], w: &[f32], m: &[f32], stride: usize) {
    if w.is_empty() {
        return;
    }
    let end = (w.len() - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(out.len()));
    assert!(end.is_some_and(|e| e <= m.len()), "rows out of bounds");
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature; every row read is in bounds (asserted above).
            return unsafe { x86::weighted_rows_avx512(out, w, m, stride) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { x86::weighted_rows_avx2(out, w, m, stride) };
        }
    }
    weighted_rows_body(out, w, m, stride)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_gelu_and_rmsnorm_give_the_portable_bits() {
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
            // Two rows of n through RMSNorm, the gains far from zero.
            let w: Vec<f32> = x[..n].iter().map(|v| v * 0.1 - 0.7).collect();
            let rows: Vec<f32> = x.iter().rev().cycle().take(2 * n).copied().collect();
            let (mut r1, mut r2) = (rows.clone(), rows);
            rmsnorm_rows(&mut r1, &w, 1e-6);
            crate::ops::rmsnorm_body(&mut r2, &w, 1e-6);
            assert_eq!(bits(&r1), bits(&r2), "rmsnorm {n}");
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let a: Vec<f32> = (0..301)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let b: Vec<f32> = (0..301)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) * 0.7)
            .collect();
        for n in [0, 1, 15, 16, 17, 256, 301] {
            let (a, b) = (&a[..n], &b[..n]);
            let want = dot_body(a, b);
            if n > 0 {
                let mut got = [0.0f32; 2];
                dots(a, &b.repeat(2), n, 0.5, &mut got);
                assert_eq!(
                    got.map(f32::to_bits),
                    [(want * 0.5).to_bits(); 2],
                    "dots {n}"
                );
            }
            let exact: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!(
                (want as f64 - exact).abs() <= 1e-4 * (1.0 + exact.abs()),
                "{n}"
            );
            if n > 0 {
                // Rows of 150 within a stride of 151 (64-wide blocks and a ragged rest).
                let rows = n.min(2);
                let m: Vec<f32> = (0..(rows - 1) * 151 + 150)
                    .map(|i| (i as f32).sin())
                    .collect();
                let w = &a[..rows];
                let (mut o1, mut o2) = (vec![0.5f32; 150], vec![0.5f32; 150]);
                weighted_rows(&mut o1, w, &m, 151);
                for (j, &wj) in w.iter().enumerate() {
                    axpy_body(&mut o2, wj, &m[j * 151..][..150]);
                }
                assert_eq!(o1, o2, "weighted_rows {n}");
            }
        }
    }
}
