//! Beam search with transformers' scoring: hypotheses ranked by
//! `sum_logprob / length^length_penalty`, where the length counts generated tokens.

use super::{
    apply_repetition_controls, log_softmax_inplace, BeamParams, Flow, GenerateOptions, StopReason,
};
use crate::error::Result;
use crate::model::{DecoderState, Model};

struct Beam {
    history: Vec<u32>,
    score: f32,
    state: DecoderState,
}

struct Finished {
    ids: Vec<u32>,
    score: f32,
}

pub(super) fn search(
    model: &Model,
    state: DecoderState,
    opts: &GenerateOptions,
    params: &BeamParams,
    on_token: &mut dyn FnMut(u32) -> Flow,
) -> Result<(Vec<u32>, StopReason)> {
    let cfg = model.config();
    let k = params.beams;
    let normalize =
        |score: f32, len: usize| score / (len.max(1) as f32).powf(params.length_penalty);
    let mut beams = vec![Beam {
        history: vec![cfg.decoder_start_token_id],
        score: 0.0,
        state,
    }];
    let mut finished: Vec<Finished> = Vec::new();
    let mut step = 0;
    while step < opts.max_new_tokens {
        step += 1;
        // Candidates (beam index, token, total log-probability) from every live beam.
        let mut candidates: Vec<(usize, u32, f32)> = Vec::new();
        for (b, beam) in beams.iter_mut().enumerate() {
            let last = *beam
                .history
                .last()
                .expect("history starts with the start token");
            let mut logits = model.decode(&mut beam.state, &[last])?;
            apply_repetition_controls(&mut logits, &beam.history, opts);
            log_softmax_inplace(&mut logits);
            let mut top: Vec<(u32, f32)> = logits
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_finite())
                .map(|(i, &l)| (i as u32, l))
                .collect();
            let keep = (2 * k).min(top.len());
            if keep == 0 {
                continue;
            }
            top.select_nth_unstable_by(keep - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            top.truncate(keep);
            candidates.extend(top.into_iter().map(|(t, l)| (b, t, beam.score + l)));
        }
        if candidates.is_empty() {
            break;
        }
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        let mut next: Vec<Beam> = Vec::with_capacity(k);
        for (rank, &(b, token, score)) in candidates.iter().enumerate() {
            if cfg.eos_token_ids.contains(&token) {
                // As in transformers, an end only counts from the top `k` candidates.
                if rank < k {
                    let mut ids = beams[b].history[1..].to_vec();
                    ids.push(token);
                    finished.push(Finished {
                        score: normalize(score, ids.len()),
                        ids,
                    });
                }
            } else {
                let mut history = beams[b].history.clone();
                history.push(token);
                next.push(Beam {
                    history,
                    score,
                    state: beams[b].state.clone(),
                });
            }
            if next.len() == k {
                break;
            }
        }
        beams = next;
        finished.sort_by(|a, b| b.score.total_cmp(&a.score));
        finished.truncate(k);
        if beams.is_empty() {
            break;
        }
        if finished.len() == k {
            if params.early_stopping {
                break;
            }
            // Done when no live beam can beat the worst kept hypothesis.
            let best_live = beams
                .iter()
                .map(|b| normalize(b.score, step))
                .fold(f32::NEG_INFINITY, f32::max);
            if finished[k - 1].score >= best_live {
                break;
            }
        }
    }
    for beam in &beams {
        let ids = beam.history[1..].to_vec();
        finished.push(Finished {
            score: normalize(beam.score, ids.len()),
            ids,
        });
    }
    finished.sort_by(|a, b| b.score.total_cmp(&a.score));
    let best = finished
        .into_iter()
        .next()
        .map(|f| f.ids)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(best.len());
    for &id in &best {
        out.push(id);
        if on_token(id) == Flow::Stop {
            return Ok((out, StopReason::Callback));
        }
    }
    let stop = match out.last() {
        Some(id) if cfg.eos_token_ids.contains(id) => StopReason::Eos,
        _ => StopReason::Length,
    };
    Ok((out, stop))
}
