//! Generation flags shared by `generate` and `summarize`.

use crate::CliError;
use clap::Args;
use t5g::generate::{BeamParams, GenerateOptions, SamplingParams, Strategy, MAX_BEAMS};

/// Upper bound on `-n`: far beyond any use, small enough that caches stay allocatable.
pub const MAX_NEW_TOKENS: usize = 1 << 16;

/// How tokens are chosen.
#[derive(Args, Debug, Clone)]
pub struct GenerationFlags {
    /// Greedy decoding (the default unless --temp or --beams is given).
    #[arg(long, conflicts_with_all = ["temp", "beams"])]
    pub greedy: bool,
    /// Sample with this temperature.
    #[arg(long, value_name = "T")]
    pub temp: Option<f32>,
    /// Sampling: keep the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub top_k: usize,
    /// Sampling: nucleus probability.
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    pub top_p: f32,
    /// Sampling: drop tokens below this fraction of the top probability.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub min_p: f32,
    /// Sampling seed (same seed, same output).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Beam search with K beams.
    #[arg(long, value_name = "K", conflicts_with = "temp")]
    pub beams: Option<usize>,
    /// Beam search: score = logprob / length^penalty.
    #[arg(long, default_value_t = 1.0)]
    pub length_penalty: f32,
    /// Beam search: keep searching after K hypotheses finished, while one could still win.
    #[arg(long)]
    pub no_early_stopping: bool,
    /// Penalize tokens already generated (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Never repeat an n-gram of this size (0 = off).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub no_repeat_ngram_size: usize,
    /// Stop when the output contains this text (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
}

impl GenerationFlags {
    /// Builds validated options; bad values are usage errors naming the flag.
    pub fn options(&self, max_new_tokens: usize) -> Result<GenerateOptions, CliError> {
        if max_new_tokens == 0 || max_new_tokens > MAX_NEW_TOKENS {
            return Err(CliError::Usage(format!(
                "-n must be between 1 and {MAX_NEW_TOKENS}, got {max_new_tokens}"
            )));
        }
        let strategy = match (self.greedy, self.temp, self.beams) {
            (true, _, _) | (false, None, None) | (false, None, Some(1)) => Strategy::Greedy,
            (false, _, Some(k)) if k == 0 || k > MAX_BEAMS => {
                return Err(CliError::Usage(format!(
                    "--beams must be between 1 and {MAX_BEAMS}, got {k}"
                )))
            }
            (false, _, Some(k)) => Strategy::Beam(BeamParams {
                beams: k,
                length_penalty: self.length_penalty,
                early_stopping: !self.no_early_stopping,
            }),
            (false, Some(t), None) => Strategy::Sample(SamplingParams {
                temperature: t,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                seed: self.seed,
            }),
        };
        let opts = GenerateOptions {
            max_new_tokens,
            strategy,
            repetition_penalty: self.repetition_penalty,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
        };
        opts.validate()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(opts)
    }
}
