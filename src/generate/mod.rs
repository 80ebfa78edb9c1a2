//! Turning logits into tokens: greedy decoding, sampling (temperature, top-k, top-p, min-p),
//! beam search, repetition controls, stop conditions and streaming.
//!
//! Logits processors run in transformers' order: repetition penalty, no-repeat n-grams, then
//! (sampling only) temperature, top-k, top-p, min-p.

mod beam;
mod sampling;
mod stop;

pub use sampling::SamplingParams;
pub use stop::StopStrings;

use crate::error::{Error, Result};
use crate::model::{DecoderState, Model, MAX_RESERVED_POSITIONS};
use std::time::{Duration, Instant};

/// How the next token is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// The argmax at every step.
    Greedy,
    /// Seeded random sampling.
    Sample(SamplingParams),
    /// Beam search.
    Beam(BeamParams),
}

/// Beam search settings (transformers' semantics).
#[derive(Clone, Debug, PartialEq)]
pub struct BeamParams {
    /// Hypotheses kept per step.
    pub beams: usize,
    /// Finished hypotheses are ranked by `sum_logprob / length^length_penalty`.
    pub length_penalty: f32,
    /// Stop as soon as `beams` hypotheses have finished.
    pub early_stopping: bool,
}

/// Everything that controls one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens to produce.
    pub max_new_tokens: usize,
    /// Token choice.
    pub strategy: Strategy,
    /// Divides positive (multiplies negative) logits of tokens already generated; 1 = off.
    pub repetition_penalty: f32,
    /// Forbids repeating any n-gram of this size; 0 = off.
    pub no_repeat_ngram_size: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 64,
            strategy: Strategy::Greedy,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
        }
    }
}

/// Largest beam width accepted.
pub const MAX_BEAMS: usize = 64;

impl GenerateOptions {
    /// Checks ranges; every bad value is named.
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            return Err(Error::invalid("max_new_tokens must be at least 1"));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(Error::invalid(format!(
                "repetition penalty must be positive, got {}",
                self.repetition_penalty
            )));
        }
        match &self.strategy {
            Strategy::Greedy => Ok(()),
            Strategy::Sample(p) => p.validate(),
            Strategy::Beam(b) => {
                if b.beams == 0 || b.beams > MAX_BEAMS {
                    return Err(Error::invalid(format!(
                        "beams must be between 1 and {MAX_BEAMS}, got {}",
                        b.beams
                    )));
                }
                if !b.length_penalty.is_finite() {
                    return Err(Error::invalid("length penalty must be finite"));
                }
                Ok(())
            }
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-sequence id was produced (it is included in the output).
    Eos,
    /// `max_new_tokens` were produced.
    Length,
    /// The token callback asked to stop (a stop string, a cancellation).
    Callback,
}

/// What the token callback tells the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep generating.
    Continue,
    /// Stop after this token.
    Stop,
}

/// The result of one generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated ids after the decoder start token (an end id, if produced, is last).
    pub ids: Vec<u32>,
    /// Why it stopped.
    pub stop: StopReason,
    /// Time spent in the encoder (including the cross-attention keys and values).
    pub encode_time: Duration,
    /// Time spent decoding.
    pub decode_time: Duration,
}

/// Generates from `input_ids`. `on_token` sees each id as it is produced (beam search, which
/// only knows its answer at the end, reports the winning ids then).
pub fn generate(
    model: &Model,
    input_ids: &[u32],
    opts: &GenerateOptions,
    on_token: &mut dyn FnMut(u32) -> Flow,
) -> Result<Generation> {
    opts.validate()?;
    let beams = match &opts.strategy {
        Strategy::Beam(b) => b.beams,
        _ => 1,
    };
    model.check_request(input_ids.len(), opts.max_new_tokens, beams)?;
    let t0 = Instant::now();
    let encoded = model.encode(input_ids)?;
    let state = model.start_decoder(&encoded)?;
    let encode_time = t0.elapsed();
    let t1 = Instant::now();
    let (ids, stop) = match &opts.strategy {
        Strategy::Beam(b) if b.beams > 1 => beam::search(model, state, opts, b, on_token)?,
        _ => step_by_step(model, state, opts, on_token)?,
    };
    Ok(Generation {
        ids,
        stop,
        encode_time,
        decode_time: t1.elapsed(),
    })
}

/// Greedy decoding; shorthand for [`generate`] with default options.
pub fn greedy(
    model: &Model,
    input_ids: &[u32],
    max_new_tokens: usize,
    on_token: &mut dyn FnMut(u32) -> Flow,
) -> Result<Generation> {
    let opts = GenerateOptions {
        max_new_tokens,
        ..GenerateOptions::default()
    };
    generate(model, input_ids, &opts, on_token)
}

fn step_by_step(
    model: &Model,
    mut state: DecoderState,
    opts: &GenerateOptions,
    on_token: &mut dyn FnMut(u32) -> Flow,
) -> Result<(Vec<u32>, StopReason)> {
    let cfg = model.config();
    let mut sampler = match &opts.strategy {
        Strategy::Sample(p) => Some(sampling::Sampler::new(p.clone())),
        _ => None,
    };
    // The decoder's history as transformers' logits processors see it: start token included.
    let mut history = Vec::with_capacity(opts.max_new_tokens.min(MAX_RESERVED_POSITIONS) + 1);
    history.push(cfg.decoder_start_token_id);
    state.reserve(opts.max_new_tokens.min(MAX_RESERVED_POSITIONS));
    let mut logits = Vec::new();
    while history.len() <= opts.max_new_tokens {
        model.decode_into(&mut state, &history[history.len() - 1..], &mut logits)?;
        apply_repetition_controls(&mut logits, &history, opts);
        let token = match &mut sampler {
            Some(s) => s.sample(&mut logits),
            None => argmax(&logits),
        };
        history.push(token);
        if on_token(token) == Flow::Stop {
            return Ok((history.split_off(1), StopReason::Callback));
        }
        if cfg.eos_token_ids.contains(&token) {
            return Ok((history.split_off(1), StopReason::Eos));
        }
    }
    Ok((history.split_off(1), StopReason::Length))
}

/// Repetition penalty and no-repeat n-grams over the decoder history.
pub(crate) fn apply_repetition_controls(
    logits: &mut [f32],
    history: &[u32],
    opts: &GenerateOptions,
) {
    if opts.repetition_penalty != 1.0 {
        let mut seen = history.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for &id in &seen {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l < 0.0 {
                    *l * opts.repetition_penalty
                } else {
                    *l / opts.repetition_penalty
                };
            }
        }
    }
    let n = opts.no_repeat_ngram_size;
    if n > 0 && history.len() + 1 >= n {
        let prefix = &history[history.len() + 1 - n..];
        for window in history.windows(n) {
            if window[..n - 1] == *prefix {
                if let Some(l) = logits.get_mut(window[n - 1] as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// Index of the largest value (the first one on ties, as torch's argmax).
pub fn argmax(xs: &[f32]) -> u32 {
    // The maximum in 8 lanes (vectorizes; a 262k-entry LM head row is read once per step),
    // then its first position. NaN entries are never the maximum.
    let mut lanes = [f32::NEG_INFINITY; 8];
    for c in xs.chunks(8) {
        for (m, &x) in lanes.iter_mut().zip(c) {
            if x > *m {
                *m = x;
            }
        }
    }
    let max = lanes
        .into_iter()
        .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
    xs.iter().position(|&x| x == max).unwrap_or(0) as u32
}

/// `log_softmax` of a row, in place.
pub(crate) fn log_softmax_inplace(xs: &mut [f32]) {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = xs.iter().map(|x| (x - max).exp()).sum();
    let log_sum = max + sum.ln();
    xs.iter_mut().for_each(|x| *x -= log_sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_penalty_follows_transformers_sign_rule() {
        let mut logits = vec![2.0, -2.0, 1.0];
        let opts = GenerateOptions {
            repetition_penalty: 2.0,
            ..Default::default()
        };
        apply_repetition_controls(&mut logits, &[0, 1], &opts);
        assert_eq!(logits, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn no_repeat_ngram_bans_completions() {
        let mut logits = vec![0.0; 5];
        let opts = GenerateOptions {
            no_repeat_ngram_size: 3,
            ..Default::default()
        };
        // history 1 2 3 1 2 -> the trigram (1,2,3) exists, so 3 is banned after (1,2).
        apply_repetition_controls(&mut logits, &[1, 2, 3, 1, 2], &opts);
        assert_eq!(logits[3], f32::NEG_INFINITY);
        assert!(logits.iter().enumerate().all(|(i, &l)| i == 3 || l == 0.0));
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        // Ties in different lanes, past the first chunk, with a NaN and -inf around.
        let mut xs = vec![-1.0f32; 37];
        xs[5] = f32::NAN;
        xs[30] = 2.0;
        xs[13] = 2.0;
        xs[0] = f32::NEG_INFINITY;
        assert_eq!(argmax(&xs), 13);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 9]), 0);
        assert_eq!(argmax(&[]), 0);
    }
}
