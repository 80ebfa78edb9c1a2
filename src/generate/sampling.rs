//! Seeded sampling with temperature, top-k, top-p and min-p.

use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Sampling settings. A given seed gives the same tokens on every run, thread count and kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Logits are divided by it (must be > 0).
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p; 1 = off.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p ×` the top probability; 0 = off.
    pub min_p: f32,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::invalid(format!(
                "temperature must be positive, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid(format!(
                "top-p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(Error::invalid(format!(
                "min-p must be in [0, 1], got {}",
                self.min_p
            )));
        }
        Ok(())
    }
}

pub(crate) struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub(crate) fn new(params: SamplingParams) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Sampler {
            params,
            rng,
            candidates: Vec::new(),
        }
    }

    /// Draws one token from processed logits.
    pub(crate) fn sample(&mut self, logits: &mut [f32]) -> u32 {
        let p = &self.params;
        self.candidates.clear();
        self.candidates.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_finite())
                .map(|(i, &l)| (i as u32, l / p.temperature)),
        );
        if self.candidates.is_empty() {
            return super::argmax(logits);
        }
        // Descending by logit, ties by id, so the order (and the draw) is deterministic.
        self.candidates
            .sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            self.candidates.truncate(p.top_k);
        }
        let max = self.candidates[0].1;
        let mut total = 0.0f64;
        for c in &mut self.candidates {
            c.1 = (c.1 - max).exp();
            total += c.1 as f64;
        }
        if p.top_p < 1.0 {
            let mut cumulative = 0.0f64;
            let mut keep = self.candidates.len();
            for (i, c) in self.candidates.iter().enumerate() {
                cumulative += c.1 as f64 / total;
                if cumulative >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            self.candidates.truncate(keep);
        }
        if p.min_p > 0.0 {
            // Probabilities relative to the top one: the top candidate has weight 1.
            self.candidates.retain(|c| c.1 >= p.min_p);
        }
        let total: f64 = self.candidates.iter().map(|c| c.1 as f64).sum();
        let mut r = self.rng.random::<f64>() * total;
        for c in &self.candidates {
            r -= c.1 as f64;
            if r <= 0.0 {
                return c.0;
            }
        }
        self.candidates.last().map(|c| c.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws() {
        let params = SamplingParams {
            seed: 7,
            ..Default::default()
        };
        let draw = |params: &SamplingParams| {
            let mut s = Sampler::new(params.clone());
            (0..20)
                .map(|_| s.sample(&mut [0.1, 0.5, 0.3, 0.2]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(&params), draw(&params));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplingParams {
            top_k: 1,
            seed: 3,
            ..Default::default()
        });
        for _ in 0..10 {
            assert_eq!(s.sample(&mut [0.1, 2.0, 1.9]), 1);
        }
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let mut s = Sampler::new(SamplingParams {
            min_p: 0.5,
            seed: 1,
            ..Default::default()
        });
        // exp(-5) relative to the top: always dropped.
        for _ in 0..50 {
            assert_ne!(s.sample(&mut [5.0, 0.0, 4.9]), 1);
        }
    }
}
