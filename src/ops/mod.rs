//! Element-wise and row-wise operations of the Gemma blocks, in f32.

/// Gemma RMSNorm over each row of `x` (length `w.len()`), in place: `x / rms(x) * (1 + w)`.
pub fn rmsnorm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    for row in x.chunks_exact_mut(n) {
        let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        for (v, g) in row.iter_mut().zip(w) {
            *v = *v * inv * (1.0 + g);
        }
    }
}

/// Gemma RMSNorm from `x` into `out`.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    out.copy_from_slice(x);
    rmsnorm_inplace(out, w, eps);
}

/// `e^x` in f32 without a libm call (Cephes' polynomial, within 2 ulp of libm; exactly 0 at
/// -inf). Branch-free, so loops over it vectorize: the encoder spends its non-matrix time in
/// GELU and softmax exponentials.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = x.clamp(-87.0, 88.0);
    let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let scaled = y * f32::from_bits(((n as i32 + 127) as u32) << 23);
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
    for (g, u) in gate.iter_mut().zip(up) {
        *g = gelu_tanh(*g) * u;
    }
}

/// Soft-capping `tanh(x / cap) * cap`, in place.
pub fn softcap_inplace(x: &mut [f32], cap: f32) {
    for v in x {
        *v = tanh_f32(*v / cap) * cap;
    }
}

/// `x += y`.
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Numerically stable softmax in place; an all-masked row (every entry -inf) becomes uniform
/// rather than NaN, as transformers' additive finfo.min masks make it.
pub fn softmax_inplace(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        let u = 1.0 / x.len() as f32;
        x.iter_mut().for_each(|v| *v = u);
        return;
    }
    for v in x.iter_mut() {
        *v = exp_f32(*v - max);
    }
    let sum: f32 = x.iter().sum();
    let inv = 1.0 / sum;
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
        let half = self.inv_freq.len();
        debug_assert_eq!(x.len(), 2 * half);
        for k in 0..half {
            let angle = pos as f32 * self.inv_freq[k];
            let (sin, cos) = angle.sin_cos();
            let a = x[k];
            let b = x[k + half];
            x[k] = a * cos - b * sin;
            x[k + half] = b * cos + a * sin;
        }
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
