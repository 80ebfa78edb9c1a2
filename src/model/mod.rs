//! Models: configuration from GGUF metadata, weights viewed in place, and the forward passes.
//!
//! One file per family ([`t5gemma`], [`t5gemma2`]) holds its weights and its encoder and
//! decoder passes, reading top to bottom; [`blocks`] holds the sublayers they share.

mod blocks;
pub mod config;
pub mod t5gemma;
pub mod t5gemma2;

pub use config::{Family, LayerKind, ModelConfig, RopeParams, StackConfig};

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufFile};
use crate::tokenizer::Tokenizer;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A loaded model: the mapped file, its configuration, and handles to every weight.
///
/// `Model` is `Send + Sync`: one instance serves any number of concurrent [`DecoderState`]s.
pub struct Model {
    file: GgufFile,
    config: ModelConfig,
    /// Rebuilt from the file's tokenizer metadata; `None` for ids-only files.
    tokenizer: Option<Tokenizer>,
    weights: FamilyWeights,
    cross_kv_computations: AtomicUsize,
}

enum FamilyWeights {
    T5Gemma(t5gemma::Weights),
    T5Gemma2(t5gemma2::Weights),
}

/// The encoder's final hidden states for one input.
#[derive(Clone, Debug)]
pub struct EncoderOutput {
    /// `n_tokens × width` rows, after the encoder's final norm.
    pub hidden: Vec<f32>,
    /// Input tokens.
    pub n_tokens: usize,
    /// Encoder width.
    pub width: usize,
}

/// Per-request decoder state: position, self-attention caches, and the cross-attention keys
/// and values computed once from the encoder output.
#[derive(Clone, Debug)]
pub struct DecoderState {
    pos: usize,
    layers: Vec<LayerCache>,
}

impl DecoderState {
    /// Decoder tokens consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes held by the caches (cross-attention keys and values counted in full, though
    /// clones of a state share them).
    pub fn cache_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| 4 * (l.k.capacity() + l.v.capacity() + l.cross_k.len() + l.cross_v.len()))
            .sum()
    }
}

/// One decoder layer's caches.
#[derive(Clone, Debug)]
pub(crate) struct LayerCache {
    /// `Some(W)` on sliding layers: only keys with `pos - key_pos < W` are ever read.
    window: Option<usize>,
    /// Position of the first key kept.
    start: usize,
    kv_dim: usize,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Shared between clones of a state (beam search), never recomputed.
    cross_k: Arc<[f32]>,
    cross_v: Arc<[f32]>,
    n_cross: usize,
}

impl LayerCache {
    pub(crate) fn new(
        window: Option<usize>,
        kv_dim: usize,
        cross_k: Vec<f32>,
        cross_v: Vec<f32>,
        n_cross: usize,
    ) -> Self {
        LayerCache {
            window,
            start: 0,
            kv_dim,
            k: Vec::new(),
            v: Vec::new(),
            cross_k: cross_k.into(),
            cross_v: cross_v.into(),
            n_cross,
        }
    }

    /// Keys held.
    pub(crate) fn len(&self) -> usize {
        self.k.len() / self.kv_dim
    }

    /// Appends the keys and values of new positions.
    pub(crate) fn append(&mut self, k: &[f32], v: &[f32]) {
        self.k.extend_from_slice(k);
        self.v.extend_from_slice(v);
    }

    /// The cached keys a query at `q_pos` may read: causal, and within the window on sliding
    /// layers (`q_pos - key_pos < W`).
    pub(crate) fn visible(&self, q_pos: usize) -> Range<usize> {
        let first = match self.window {
            Some(w) => (q_pos + 1).saturating_sub(w).max(self.start),
            None => self.start,
        };
        (first - self.start)..(q_pos + 1 - self.start).min(self.len())
    }

    /// Drops keys no future query can see. Trimming waits until twice the window is held, so
    /// the copy it costs is amortized to O(1) per token.
    pub(crate) fn trim(&mut self, next_pos: usize) {
        let Some(w) = self.window else { return };
        if self.len() <= 2 * w {
            return;
        }
        let first_needed = (next_pos + 1).saturating_sub(w);
        let drop = first_needed - self.start;
        self.k.drain(..drop * self.kv_dim);
        self.v.drain(..drop * self.kv_dim);
        self.start = first_needed;
    }
}

impl Model {
    /// Memory-maps and validates a model file. No weight is copied.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_gguf(GgufFile::open(path)?)
    }

    /// Builds a model over an already opened file.
    pub fn from_gguf(file: GgufFile) -> Result<Self> {
        let config = ModelConfig::from_gguf(&file)?;
        let weights = match config.family {
            Family::T5Gemma => FamilyWeights::T5Gemma(t5gemma::Weights::load(&file, &config)?),
            Family::T5Gemma2 => FamilyWeights::T5Gemma2(t5gemma2::Weights::load(&file, &config)?),
        };
        let tokenizer = match file.get("tokenizer.ggml.tokens") {
            Some(_) => {
                let tokenizer = Tokenizer::from_gguf(&file)?;
                if tokenizer.vocab_size() > config.vocab_size {
                    return Err(Error::metadata(
                        "tokenizer.ggml.tokens",
                        format!(
                            "{} pieces for an embedding of {} rows",
                            tokenizer.vocab_size(),
                            config.vocab_size
                        ),
                    ));
                }
                Some(tokenizer)
            }
            None => None,
        };
        Ok(Model {
            file,
            config,
            tokenizer,
            weights,
            cross_kv_computations: AtomicUsize::new(0),
        })
    }

    /// Hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The tokenizer stored in the file, if it has one.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    /// The tokenizer, or an error saying the file was converted without one.
    pub fn require_tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::invalid(format!(
                "{} has no tokenizer (it was converted without tokenizer.model); pass token ids instead",
                self.file.path().display()
            ))
        })
    }

    /// The underlying file (metadata, tokenizer keys, tensor list).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// Runs the encoder over a whole input at once.
    pub fn encode(&self, ids: &[u32]) -> Result<EncoderOutput> {
        if ids.is_empty() {
            return Err(Error::invalid("the encoder input is empty"));
        }
        let hidden = match &self.weights {
            FamilyWeights::T5Gemma(w) => t5gemma::encode(&self.file, &self.config, w, ids)?,
            FamilyWeights::T5Gemma2(w) => t5gemma2::encode(&self.file, &self.config, w, ids)?,
        };
        Ok(EncoderOutput {
            hidden,
            n_tokens: ids.len(),
            width: self.config.encoder.hidden,
        })
    }

    /// Prepares a decoder for one encoded input: computes every layer's cross-attention keys
    /// and values once; they are reused by every step.
    pub fn start_decoder(&self, encoded: &EncoderOutput) -> Result<DecoderState> {
        if encoded.width != self.config.encoder.hidden
            || encoded.hidden.len() != encoded.n_tokens * encoded.width
        {
            return Err(Error::invalid("encoder output does not match this model"));
        }
        self.cross_kv_computations.fetch_add(1, Ordering::Relaxed);
        let layers = match &self.weights {
            FamilyWeights::T5Gemma(w) => {
                t5gemma::cross_caches(&self.file, &self.config, w, encoded)
            }
            FamilyWeights::T5Gemma2(w) => {
                t5gemma2::cross_caches(&self.file, &self.config, w, encoded)
            }
        };
        Ok(DecoderState { pos: 0, layers })
    }

    /// Feeds `tokens` to the decoder (one at a time when generating, or a whole teacher-forced
    /// sequence at once) and returns their logits, `tokens.len() × vocab`.
    pub fn decode(&self, state: &mut DecoderState, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let logits = match &self.weights {
            FamilyWeights::T5Gemma(w) => {
                t5gemma::decode(&self.file, &self.config, w, state, tokens)?
            }
            FamilyWeights::T5Gemma2(w) => {
                t5gemma2::decode(&self.file, &self.config, w, state, tokens)?
            }
        };
        if logits.iter().any(|x| x.is_nan()) {
            // NaN/Inf weights (a corrupt or hostile file) poison every later step; say so
            // instead of printing garbage.
            return Err(Error::format(
                self.file.path(),
                "the model produced NaN logits: its weights are corrupt (check with `t5g info --verify`)",
            ));
        }
        state.pos += tokens.len();
        for layer in &mut state.layers {
            layer.trim(state.pos);
        }
        Ok(logits)
    }

    /// How many times cross-attention keys/values were computed (once per [`start_decoder`](Self::start_decoder)).
    pub fn cross_kv_computations(&self) -> usize {
        self.cross_kv_computations.load(Ordering::Relaxed)
    }

    /// Bytes of weights read for one decoder step (every decoder matrix and the LM head).
    pub fn decode_weight_bytes_per_token(&self) -> usize {
        match &self.weights {
            FamilyWeights::T5Gemma(w) => w.decode_weight_bytes(),
            FamilyWeights::T5Gemma2(w) => w.decode_weight_bytes(),
        }
    }

    /// Scans every quantized block scale for NaN/Inf (reads the whole file once).
    pub fn verify_weights(&self) -> Result<()> {
        crate::quant::validate_all_quantized_scales(&self.file)
    }

    /// Count of tensors per storage type.
    pub fn tensor_types(&self) -> Vec<(GgmlType, usize)> {
        let mut counts: Vec<(GgmlType, usize)> = Vec::new();
        for t in self.file.tensors() {
            match counts.iter_mut().find(|(ty, _)| *ty == t.ty) {
                Some(c) => c.1 += 1,
                None => counts.push((t.ty, 1)),
            }
        }
        counts
    }
}
