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

/// GELU, tanh approximation (`gelu_pytorch_tanh`).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())
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
        *v = (*v / cap).tanh() * cap;
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
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
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
