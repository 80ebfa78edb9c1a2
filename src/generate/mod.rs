//! Turning logits into tokens: greedy decoding, stop conditions and streaming.

use crate::error::Result;
use crate::model::Model;
use std::time::{Duration, Instant};

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-sequence id was produced (it is included in the output).
    Eos,
    /// `max_new_tokens` were produced.
    Length,
    /// The token callback asked to stop.
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
    /// Time spent in the encoder.
    pub encode_time: Duration,
    /// Time spent decoding.
    pub decode_time: Duration,
}

/// Greedy decoding: the argmax at every step (soft-caps are monotonic, so capped and uncapped
/// logits agree). Calls `on_token` with each id as it is produced.
pub fn greedy(
    model: &Model,
    input_ids: &[u32],
    max_new_tokens: usize,
    on_token: &mut dyn FnMut(u32) -> Flow,
) -> Result<Generation> {
    let cfg = model.config();
    let t0 = Instant::now();
    let encoded = model.encode(input_ids)?;
    let mut state = model.start_decoder(&encoded)?;
    let encode_time = t0.elapsed();
    let t1 = Instant::now();
    let mut ids = Vec::with_capacity(max_new_tokens);
    let mut token = cfg.decoder_start_token_id;
    let mut stop = StopReason::Length;
    while ids.len() < max_new_tokens {
        let logits = model.decode(&mut state, &[token])?;
        token = argmax(&logits);
        ids.push(token);
        if on_token(token) == Flow::Stop {
            stop = StopReason::Callback;
            break;
        }
        if cfg.eos_token_ids.contains(&token) {
            stop = StopReason::Eos;
            break;
        }
    }
    Ok(Generation { ids, stop, encode_time, decode_time: t1.elapsed() })
}

/// Index of the largest value (the first one on ties, as torch's argmax).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}
