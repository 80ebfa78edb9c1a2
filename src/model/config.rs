//! Hyperparameters read from GGUF metadata (keys in `docs/FORMAT.md`), checked for sanity
//! before any weight is touched.

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// Which model family a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// T5Gemma (v1): Gemma 2 blocks, separate cross-attention, soft-caps.
    T5Gemma,
    /// T5Gemma 2: Gemma 3 blocks, QK-norm, merged self+cross attention, one embedding.
    T5Gemma2,
}

impl Family {
    /// The `general.architecture` string.
    pub fn arch(self) -> &'static str {
        match self {
            Family::T5Gemma => "t5gemma",
            Family::T5Gemma2 => "t5gemma2",
        }
    }
}

/// Attention span of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Attends within the sliding window.
    Sliding,
    /// Attends to every position.
    Full,
}

/// Rotary embedding settings for one layer kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeParams {
    /// Base frequency theta.
    pub theta: f32,
    /// Linear scaling factor (frequencies are divided by it; 1 = none).
    pub linear_factor: f32,
}

/// One stack (encoder or decoder).
#[derive(Clone, Debug, PartialEq)]
pub struct StackConfig {
    /// Layers.
    pub n_layers: usize,
    /// Hidden width H.
    pub hidden: usize,
    /// MLP width I.
    pub ffn: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (GQA: query head h reads kv head h / (n_heads / n_kv_heads)).
    pub n_kv_heads: usize,
    /// Head size.
    pub head_dim: usize,
    /// Scores are multiplied by `query_pre_attn_scalar^-1/2`.
    pub query_pre_attn_scalar: f32,
    /// Sliding window W.
    pub sliding_window: usize,
    /// Per-layer attention kind.
    pub layer_kinds: Vec<LayerKind>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Attention logit soft-cap (v1 only).
    pub attn_logit_softcapping: Option<f32>,
    /// RoPE of full-attention layers.
    pub rope_full: RopeParams,
    /// RoPE of sliding layers.
    pub rope_sliding: RopeParams,
}

impl StackConfig {
    /// The attention score scale.
    pub fn attn_scale(&self) -> f32 {
        self.query_pre_attn_scalar.powf(-0.5)
    }

    /// Query width `n_heads * head_dim` (not necessarily the hidden width).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Key/value width `n_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// RoPE settings for a layer.
    pub fn rope(&self, kind: LayerKind) -> RopeParams {
        match kind {
            LayerKind::Sliding => self.rope_sliding,
            LayerKind::Full => self.rope_full,
        }
    }

    fn read(file: &GgufFile, arch: &str, stack: &str) -> Result<Self> {
        let key = |k: &str| format!("{arch}.{stack}.{k}");
        let get = |k: &str| file.get_usize(&key(k));
        let n_layers = get("block_count")?;
        let kinds_key = key("attention.layer_types");
        let layer_kinds = file
            .get_str_array(&kinds_key)?
            .iter()
            .map(|s| match *s {
                "sliding_attention" => Ok(LayerKind::Sliding),
                "full_attention" => Ok(LayerKind::Full),
                other => Err(Error::metadata(
                    &kinds_key,
                    format!("unknown layer type `{other}`"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let theta = file.get_f32(&key("rope.freq_base"))?;
        let rope_full = RopeParams {
            theta,
            linear_factor: file.opt_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0),
        };
        let rope_sliding = RopeParams {
            theta: file.opt_f32(&key("rope.freq_base_swa"))?.unwrap_or(theta),
            linear_factor: file
                .opt_f32(&key("rope.scaling_swa.factor"))?
                .unwrap_or(1.0),
        };
        let head_dim = get("attention.key_length")?;
        let cfg = StackConfig {
            n_layers,
            hidden: get("embedding_length")?,
            ffn: get("feed_forward_length")?,
            n_heads: get("attention.head_count")?,
            n_kv_heads: get("attention.head_count_kv")?,
            head_dim,
            query_pre_attn_scalar: file
                .opt_f32(&key("attention.query_pre_attn_scalar"))?
                .unwrap_or(head_dim as f32),
            sliding_window: get("attention.sliding_window")?,
            layer_kinds,
            rms_norm_eps: file.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            attn_logit_softcapping: file.opt_f32(&key("attn_logit_softcapping"))?,
            rope_full,
            rope_sliding,
        };
        cfg.validate(&|k| key(k))?;
        Ok(cfg)
    }

    fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<()> {
        let bad = |k: &str, msg: String| Err(Error::metadata(key(k), msg));
        const MAX_WIDTH: usize = 1 << 20;
        if self.n_layers == 0 || self.n_layers > 1024 {
            return bad("block_count", format!("{} layers", self.n_layers));
        }
        if self.layer_kinds.len() != self.n_layers {
            return bad(
                "attention.layer_types",
                format!(
                    "{} entries for {} layers",
                    self.layer_kinds.len(),
                    self.n_layers
                ),
            );
        }
        for (k, v) in [
            ("embedding_length", self.hidden),
            ("feed_forward_length", self.ffn),
            ("attention.head_count", self.n_heads),
            ("attention.head_count_kv", self.n_kv_heads),
            ("attention.key_length", self.head_dim),
        ] {
            if v == 0 || v > MAX_WIDTH {
                return bad(k, format!("implausible value {v}"));
            }
        }
        if self.n_heads % self.n_kv_heads != 0 {
            return bad(
                "attention.head_count_kv",
                format!(
                    "{} kv heads do not divide {} query heads",
                    self.n_kv_heads, self.n_heads
                ),
            );
        }
        if self.head_dim % 2 != 0 {
            return bad(
                "attention.key_length",
                format!("head_dim {} is odd (RoPE needs pairs)", self.head_dim),
            );
        }
        if self.sliding_window == 0 {
            return bad("attention.sliding_window", "window must be positive".into());
        }
        if !(self.query_pre_attn_scalar.is_finite() && self.query_pre_attn_scalar > 0.0) {
            return bad(
                "attention.query_pre_attn_scalar",
                format!("{}", self.query_pre_attn_scalar),
            );
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return bad(
                "attention.layer_norm_rms_epsilon",
                format!("{}", self.rms_norm_eps),
            );
        }
        if let Some(c) = self.attn_logit_softcapping {
            if !(c.is_finite() && c > 0.0) {
                return bad("attn_logit_softcapping", format!("{c}"));
            }
        }
        for (k, r) in [
            ("rope.freq_base", self.rope_full),
            ("rope.freq_base_swa", self.rope_sliding),
        ] {
            if !(r.theta.is_finite()
                && r.theta > 0.0
                && r.linear_factor.is_finite()
                && r.linear_factor > 0.0)
            {
                return bad(k, format!("theta {} factor {}", r.theta, r.linear_factor));
            }
        }
        Ok(())
    }
}

/// Everything the forward pass needs to know about a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Model family.
    pub family: Family,
    /// Embedding rows.
    pub vocab_size: usize,
    /// Encoder stack.
    pub encoder: StackConfig,
    /// Decoder stack.
    pub decoder: StackConfig,
    /// Soft-cap applied to the final logits.
    pub final_logit_softcapping: Option<f32>,
    /// First decoder token.
    pub decoder_start_token_id: u32,
    /// Ids that end generation.
    pub eos_token_ids: Vec<u32>,
    /// v1 encoder window semantics: `|i-j| <= W` (true, transformers 5.24) or `< W` (false).
    pub encoder_window_inclusive: bool,
    /// v2: the id whose embedding row is replaced by the `eoi` vector.
    pub eoi_token_id: Option<u32>,
}

impl ModelConfig {
    /// Reads and validates the hyperparameters of a t5g GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.get_str("general.architecture")?;
        let family = match arch {
            "t5gemma" => Family::T5Gemma,
            "t5gemma2" => Family::T5Gemma2,
            other => {
                return Err(Error::metadata(
                    "general.architecture",
                    format!(
                        "`{other}` is not an encoder-decoder family t5g runs (t5gemma, t5gemma2)"
                    ),
                ))
            }
        };
        let encoder = StackConfig::read(file, arch, "encoder")?;
        let decoder = StackConfig::read(file, arch, "decoder")?;
        let vocab_key = format!("{arch}.vocab_size");
        let vocab_size = file.get_usize(&vocab_key)?;
        if vocab_size == 0 || vocab_size > u32::MAX as usize {
            return Err(Error::metadata(
                vocab_key,
                format!("implausible vocabulary size {vocab_size}"),
            ));
        }
        let token = |key: String| -> Result<Option<u32>> {
            match file.opt_usize(&key)? {
                Some(id) if id < vocab_size => Ok(Some(id as u32)),
                Some(id) => Err(Error::metadata(
                    key,
                    format!("id {id} outside the vocabulary of {vocab_size}"),
                )),
                None => Ok(None),
            }
        };
        let decoder_start_token_id = token(format!("{arch}.decoder_start_token_id"))?.unwrap_or(2);
        let eos_key = format!("{arch}.eos_token_ids");
        let eos_token_ids = match file.get(&eos_key) {
            Some(_) => file
                .get_i64_array(&eos_key)?
                .into_iter()
                .map(|id| {
                    u32::try_from(id)
                        .ok()
                        .filter(|&id| (id as usize) < vocab_size)
                        .ok_or_else(|| {
                            Error::metadata(&eos_key, format!("id {id} outside the vocabulary"))
                        })
                })
                .collect::<Result<Vec<_>>>()?,
            None => vec![token("tokenizer.ggml.eos_token_id".into())?.unwrap_or(1)],
        };
        let final_logit_softcapping =
            file.opt_f32(&format!("{arch}.decoder.final_logit_softcapping"))?;
        if let Some(c) = final_logit_softcapping {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::metadata(
                    format!("{arch}.decoder.final_logit_softcapping"),
                    format!("{c}"),
                ));
            }
        }
        let cfg = ModelConfig {
            family,
            vocab_size,
            encoder_window_inclusive: file
                .opt_bool("t5gemma.encoder.attention.sliding_window_inclusive")?
                .unwrap_or(true),
            eoi_token_id: match family {
                Family::T5Gemma => None,
                Family::T5Gemma2 => token(format!("{arch}.eoi_token_id"))?,
            },
            encoder,
            decoder,
            final_logit_softcapping,
            decoder_start_token_id,
            eos_token_ids,
        };
        if family == Family::T5Gemma2 && cfg.encoder.hidden != cfg.decoder.hidden {
            return Err(Error::metadata(
                "t5gemma2.decoder.embedding_length",
                "T5Gemma 2 shares one embedding, so encoder and decoder widths must match",
            ));
        }
        Ok(cfg)
    }
}
