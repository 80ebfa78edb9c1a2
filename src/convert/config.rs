//! Hugging Face `config.json` (and `generation_config.json`) -> the hyperparameters t5g
//! writes into a GGUF file. Absent optional fields take transformers' class defaults, so a
//! config converts exactly as transformers would load it; absent dimensions are errors.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Which model family a checkpoint belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// T5Gemma (Gemma 2 blocks), `model_type: "t5gemma"`.
    T5Gemma,
    /// T5Gemma 2 (Gemma 3 blocks), `model_type: "t5gemma2"`.
    T5Gemma2,
}

impl Family {
    /// `general.architecture` value.
    pub fn arch(self) -> &'static str {
        match self {
            Family::T5Gemma => "t5gemma",
            Family::T5Gemma2 => "t5gemma2",
        }
    }
}

/// Attention kind of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerType {
    /// Local attention within `sliding_window`.
    Sliding,
    /// Global attention.
    Full,
}

impl LayerType {
    /// The spelling used by transformers and in the GGUF file.
    pub fn name(self) -> &'static str {
        match self {
            LayerType::Sliding => "sliding_attention",
            LayerType::Full => "full_attention",
        }
    }
}

/// RoPE parameters of one kind of layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    /// Base frequency theta.
    pub theta: f32,
    /// Linear position scaling factor (inverse frequencies are divided by it); 1 = none.
    pub factor: f32,
}

/// Hyperparameters of the encoder or the decoder stack.
#[derive(Clone, Debug, PartialEq)]
pub struct StackConfig {
    /// Embedding rows.
    pub vocab_size: usize,
    /// Hidden size H.
    pub hidden_size: usize,
    /// MLP width I.
    pub intermediate_size: usize,
    /// Layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Attention scores are scaled by its -1/2 power.
    pub query_pre_attn_scalar: f32,
    /// Sliding window W.
    pub sliding_window: usize,
    /// Per-layer attention kind.
    pub layer_types: Vec<LayerType>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Attention-score soft-cap (v1 only).
    pub attn_logit_softcapping: Option<f32>,
    /// Final logit soft-cap (used from the decoder only).
    pub final_logit_softcapping: Option<f32>,
    /// RoPE of full-attention layers.
    pub rope_full: Rope,
    /// RoPE of sliding-window layers.
    pub rope_sliding: Rope,
    /// `cross_attention_hidden_size` when the config states it (v1 decoder).
    pub cross_attention_hidden_size: Option<usize>,
}

/// Everything the converter takes from `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Model family.
    pub family: Family,
    /// Encoder stack (v2: `encoder.text_config`).
    pub encoder: StackConfig,
    /// Decoder stack.
    pub decoder: StackConfig,
    /// Vocabulary size (rows of every embedding).
    pub vocab_size: usize,
    /// `bos_token_id`, if stated.
    pub bos_token_id: Option<i64>,
    /// `eos_token_id` (int or list), if stated.
    pub eos_token_ids: Vec<i64>,
    /// `pad_token_id`, if stated.
    pub pad_token_id: Option<i64>,
    /// `decoder_start_token_id`, if stated.
    pub decoder_start_token_id: Option<i64>,
    /// v2: the id whose embedding is replaced by the eoi embedding.
    pub eoi_token_id: Option<i64>,
    /// v2: a `vision_config` is present.
    pub has_vision: bool,
    /// Things the converter should tell the user (ignored settings and the like).
    pub notes: Vec<String>,
}

/// A JSON object together with where it came from, for error messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    file: &'a Path,
    /// Dotted path of this object inside the file (`encoder.`), empty at the top.
    prefix: String,
}

impl<'a> Obj<'a> {
    fn err(&self, key: &str, msg: &str) -> Error {
        Error::format(self.file, format!("`{}{key}`: {msg}", self.prefix))
    }

    /// `Some(value)` when present and not null.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn child(&self, key: &str) -> Result<Option<Obj<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map,
                file: self.file,
                prefix: format!("{}{key}.", self.prefix),
            })),
            Some(_) => Err(self.err(key, "expected an object")),
        }
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| self.err(key, &format!("expected a non-negative integer, found {v}")))?;
        usize::try_from(n)
            .map(Some)
            .map_err(|_| self.err(key, "value too large"))
    }

    fn req_usize(&self, key: &str) -> Result<usize> {
        match self.opt_usize(key)? {
            Some(0) => Err(self.err(key, "must be positive")),
            Some(n) => Ok(n),
            None => Err(self.err(key, "missing required key")),
        }
    }

    fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err(key, &format!("expected an integer, found {v}"))),
        }
    }

    /// An integer or a list of integers.
    fn i64_list(&self, key: &str) -> Result<Vec<i64>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| self.err(key, &format!("expected integers, found {v}")))
                })
                .collect(),
            Some(v) => v
                .as_i64()
                .map(|x| vec![x])
                .ok_or_else(|| self.err(key, &format!("expected an integer or a list, found {v}"))),
        }
    }

    /// Absent -> `default`; present but null -> `None`.
    fn nullable_f32(&self, key: &str, default: Option<f32>) -> Result<Option<f32>> {
        match self.map.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(_) => self.opt_f32(key),
        }
    }

    fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|f| Some(f as f32))
                .ok_or_else(|| self.err(key, &format!("expected a number, found {v}"))),
        }
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(key, &format!("expected a string, found {v}"))),
        }
    }
}

/// Reads and parses a JSON file into a top-level object.
pub(crate) fn read_json(path: &Path) -> Result<Map<String, Value>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_json(&bytes, path)
}

/// Parses the bytes of a JSON file into a top-level object; `path` is used in error messages.
/// serde_json refuses nesting deeper than 128 levels, so hostile files cannot overflow the stack.
pub(crate) fn parse_json(bytes: &[u8], path: &Path) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::format(
            path,
            "expected a JSON object at the top level",
        )),
        Err(e) => Err(Error::format(path, format!("invalid JSON: {e}"))),
    }
}

impl ModelConfig {
    /// Reads `config.json` from a checkpoint directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let map = read_json(&path)?;
        Self::from_json(&map, &path)
    }

    /// Parses the bytes of a `config.json`; `file` is used in error messages.
    pub fn from_bytes(bytes: &[u8], file: &Path) -> Result<Self> {
        Self::from_json(&parse_json(bytes, file)?, file)
    }

    /// Parses an already-read `config.json` object; `file` is used in error messages.
    pub fn from_json(map: &Map<String, Value>, file: &Path) -> Result<Self> {
        let top = Obj {
            map,
            file,
            prefix: String::new(),
        };
        let model_type = top
            .opt_str("model_type")?
            .ok_or_else(|| top.err("model_type", "missing required key"))?;
        let family = match model_type {
            "t5gemma" => Family::T5Gemma,
            "t5gemma2" => Family::T5Gemma2,
            other => {
                return Err(top.err(
                    "model_type",
                    &format!(
                        "unsupported model_type \"{other}\" (t5g converts t5gemma and t5gemma2)"
                    ),
                ))
            }
        };
        let mut notes = Vec::new();
        let top_vocab = top.opt_usize("vocab_size")?;
        let enc_obj = top
            .child("encoder")?
            .ok_or_else(|| top.err("encoder", "missing required key"))?;
        let dec_obj = top
            .child("decoder")?
            .ok_or_else(|| top.err("decoder", "missing required key"))?;
        let (encoder, decoder, has_vision, eoi) = match family {
            Family::T5Gemma => {
                let e = parse_stack(&enc_obj, family, top_vocab, &mut notes)?;
                let d = parse_stack(&dec_obj, family, top_vocab, &mut notes)?;
                (e, d, false, None)
            }
            Family::T5Gemma2 => {
                let text = enc_obj
                    .child("text_config")?
                    .ok_or_else(|| enc_obj.err("text_config", "missing required key"))?;
                let e = parse_stack(&text, family, top_vocab, &mut notes)?;
                let d = parse_stack(&dec_obj, family, top_vocab, &mut notes)?;
                let has_vision = enc_obj.get("vision_config").is_some();
                let eoi = match top.opt_i64("eoi_token_index")? {
                    Some(id) => id,
                    None => enc_obj.opt_i64("eoi_token_index")?.unwrap_or(256000),
                };
                if e.hidden_size != d.hidden_size {
                    return Err(top.err(
                        "decoder.hidden_size",
                        &format!(
                            "t5gemma2 needs equal encoder and decoder widths, found {} and {}",
                            e.hidden_size, d.hidden_size
                        ),
                    ));
                }
                (e, d, has_vision, Some(eoi))
            }
        };
        if encoder.vocab_size != decoder.vocab_size {
            return Err(top.err(
                "decoder.vocab_size",
                &format!(
                    "encoder and decoder vocabularies differ ({} vs {})",
                    encoder.vocab_size, decoder.vocab_size
                ),
            ));
        }
        if let Some(cross) = decoder.cross_attention_hidden_size {
            if family == Family::T5Gemma && cross != encoder.hidden_size {
                return Err(top.err(
                    "decoder.cross_attention_hidden_size",
                    &format!(
                        "{cross} differs from encoder.hidden_size {}",
                        encoder.hidden_size
                    ),
                ));
            }
        }
        let ids_from = |key: &str| -> Result<Option<i64>> {
            Ok(match top.opt_i64(key)? {
                Some(v) => Some(v),
                None => dec_obj.opt_i64(key)?,
            })
        };
        let mut eos_token_ids = top.i64_list("eos_token_id")?;
        if eos_token_ids.is_empty() {
            eos_token_ids = dec_obj.i64_list("eos_token_id")?;
        }
        Ok(ModelConfig {
            family,
            vocab_size: decoder.vocab_size,
            bos_token_id: ids_from("bos_token_id")?,
            pad_token_id: ids_from("pad_token_id")?,
            decoder_start_token_id: top.opt_i64("decoder_start_token_id")?,
            eos_token_ids,
            eoi_token_id: eoi,
            has_vision,
            encoder,
            decoder,
            notes,
        })
    }
}

fn parse_stack(
    o: &Obj<'_>,
    family: Family,
    top_vocab: Option<usize>,
    notes: &mut Vec<String>,
) -> Result<StackConfig> {
    let vocab_size = match o.opt_usize("vocab_size")? {
        Some(v) => v,
        None => top_vocab.unwrap_or(match family {
            Family::T5Gemma => 256000,
            Family::T5Gemma2 => 262208,
        }),
    };
    if vocab_size == 0 {
        return Err(o.err("vocab_size", "must be positive"));
    }
    for key in ["hidden_activation", "hidden_act"] {
        if let Some(act) = o.opt_str(key)? {
            if act != "gelu_pytorch_tanh" {
                return Err(o.err(
                    key,
                    &format!("unsupported activation \"{act}\" (T5Gemma uses gelu_pytorch_tanh)"),
                ));
            }
        }
    }
    let num_layers = o.req_usize("num_hidden_layers")?;
    let num_heads = o.req_usize("num_attention_heads")?;
    let num_kv_heads = o.req_usize("num_key_value_heads")?;
    if num_heads % num_kv_heads != 0 {
        return Err(o.err(
            "num_key_value_heads",
            &format!("{num_kv_heads} does not divide num_attention_heads {num_heads}"),
        ));
    }
    let head_dim = o.req_usize("head_dim")?;
    let layer_types = match o.get("layer_types") {
        None => (0..num_layers)
            .map(|i| match family {
                Family::T5Gemma => {
                    if i % 2 == 0 {
                        LayerType::Sliding
                    } else {
                        LayerType::Full
                    }
                }
                Family::T5Gemma2 => {
                    let pattern = o
                        .opt_usize("sliding_window_pattern")
                        .ok()
                        .flatten()
                        .unwrap_or(6)
                        .max(1);
                    if (i + 1) % pattern != 0 {
                        LayerType::Sliding
                    } else {
                        LayerType::Full
                    }
                }
            })
            .collect(),
        Some(Value::Array(items)) => {
            if items.len() != num_layers {
                return Err(o.err(
                    "layer_types",
                    &format!("{} entries for {num_layers} layers", items.len()),
                ));
            }
            items
                .iter()
                .map(|v| match v.as_str() {
                    Some("sliding_attention") => Ok(LayerType::Sliding),
                    Some("full_attention") => Ok(LayerType::Full),
                    _ => Err(o.err(
                        "layer_types",
                        &format!(
                            "unknown layer type {v} (expected sliding_attention or full_attention)"
                        ),
                    )),
                })
                .collect::<Result<Vec<_>>>()?
        }
        Some(v) => return Err(o.err("layer_types", &format!("expected a list, found {v}"))),
    };
    let (attn_cap, final_cap) = match family {
        Family::T5Gemma => (
            o.nullable_f32("attn_logit_softcapping", Some(50.0))?,
            o.nullable_f32("final_logit_softcapping", Some(30.0))?,
        ),
        Family::T5Gemma2 => {
            if let Some(cap) = o.nullable_f32("attn_logit_softcapping", None)? {
                notes.push(format!(
                    "{}attn_logit_softcapping = {cap} ignored: T5Gemma 2 applies no attention soft-cap",
                    o.prefix
                ));
            }
            (None, o.nullable_f32("final_logit_softcapping", None)?)
        }
    };
    let (rope_full, rope_sliding) = parse_rope(o, family)?;
    Ok(StackConfig {
        vocab_size,
        hidden_size: o.req_usize("hidden_size")?,
        intermediate_size: o.req_usize("intermediate_size")?,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        query_pre_attn_scalar: o.opt_f32("query_pre_attn_scalar")?.unwrap_or(256.0),
        sliding_window: o.opt_usize("sliding_window")?.unwrap_or(4096),
        layer_types,
        rms_norm_eps: o.opt_f32("rms_norm_eps")?.unwrap_or(1e-6),
        attn_logit_softcapping: attn_cap,
        final_logit_softcapping: final_cap,
        rope_full,
        rope_sliding,
        cross_attention_hidden_size: o.opt_usize("cross_attention_hidden_size")?,
    })
}

/// One `{rope_type, rope_theta, factor}` object (also the legacy `rope_scaling` spelling with
/// `type`). `theta` is the fallback when the object has no `rope_theta`.
fn parse_rope_params(o: &Obj<'_>, theta: f32) -> Result<Rope> {
    let theta = o.opt_f32("rope_theta")?.unwrap_or(theta);
    let ty = match o.opt_str("rope_type")? {
        Some(t) => t,
        None => o.opt_str("type")?.unwrap_or("default"),
    };
    let factor = match ty {
        "default" => 1.0,
        "linear" => o
            .opt_f32("factor")?
            .ok_or_else(|| o.err("factor", "missing required key for linear RoPE scaling"))?,
        other => {
            return Err(o.err(
                "rope_type",
                &format!("unsupported RoPE type \"{other}\" (t5g supports default and linear)"),
            ))
        }
    };
    if theta <= 0.0 || factor <= 0.0 {
        return Err(o.err("rope_theta", "theta and factor must be positive"));
    }
    Ok(Rope { theta, factor })
}

/// Returns (full-attention rope, sliding-attention rope).
fn parse_rope(o: &Obj<'_>, family: Family) -> Result<(Rope, Rope)> {
    let (def_full, def_sliding) = match family {
        Family::T5Gemma => (10_000.0, 10_000.0),
        Family::T5Gemma2 => (1_000_000.0, 10_000.0),
    };
    if let Some(params) = o.child("rope_parameters")? {
        let full = params.child("full_attention")?;
        let sliding = params.child("sliding_attention")?;
        if full.is_some() || sliding.is_some() {
            let full = match full {
                Some(p) => parse_rope_params(&p, def_full)?,
                None => Rope {
                    theta: def_full,
                    factor: 1.0,
                },
            };
            let sliding = match sliding {
                Some(p) => parse_rope_params(&p, def_sliding)?,
                None => Rope {
                    theta: def_sliding,
                    factor: 1.0,
                },
            };
            return Ok((full, sliding));
        }
        let rope = parse_rope_params(&params, def_full)?;
        return Ok(match family {
            // v1 uses one RoPE for local and global layers.
            Family::T5Gemma => (rope, rope),
            Family::T5Gemma2 => (
                rope,
                Rope {
                    theta: o.opt_f32("rope_local_base_freq")?.unwrap_or(def_sliding),
                    factor: 1.0,
                },
            ),
        });
    }
    // Legacy flat keys: `rope_theta`, `rope_scaling`, and (Gemma 3) `rope_local_base_freq`.
    let theta = o.opt_f32("rope_theta")?.unwrap_or(def_full);
    let full = match o.child("rope_scaling")? {
        Some(s) => parse_rope_params(&s, theta)?,
        None => Rope { theta, factor: 1.0 },
    };
    Ok(match family {
        Family::T5Gemma => (full, full),
        Family::T5Gemma2 => (
            full,
            Rope {
                theta: o.opt_f32("rope_local_base_freq")?.unwrap_or(def_sliding),
                factor: 1.0,
            },
        ),
    })
}

/// What `generation_config.json` says, when the checkpoint has one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationConfig {
    /// `eos_token_id` (int or list).
    pub eos_token_ids: Vec<i64>,
    /// `bos_token_id`.
    pub bos_token_id: Option<i64>,
    /// `decoder_start_token_id`.
    pub decoder_start_token_id: Option<i64>,
}

impl GenerationConfig {
    /// Reads `generation_config.json` if the directory has one.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("generation_config.json");
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Self::from_bytes(&bytes, &path).map(Some)
    }

    /// Parses the bytes of a `generation_config.json`; `file` is used in error messages.
    pub fn from_bytes(bytes: &[u8], file: &Path) -> Result<Self> {
        let map = parse_json(bytes, file)?;
        let o = Obj {
            map: &map,
            file,
            prefix: String::new(),
        };
        Ok(GenerationConfig {
            eos_token_ids: o.i64_list("eos_token_id")?,
            bos_token_id: o.opt_i64("bos_token_id")?,
            decoder_start_token_id: o.opt_i64("decoder_start_token_id")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stack() -> Value {
        json!({
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "query_pre_attn_scalar": 32, "sliding_window": 8, "vocab_size": 100,
            "hidden_activation": "gelu_pytorch_tanh"
        })
    }

    fn parse(v: Value) -> Result<ModelConfig> {
        ModelConfig::from_json(v.as_object().unwrap(), Path::new("config.json"))
    }

    #[test]
    fn v1_defaults_and_legacy_rope() {
        let mut dec = stack();
        dec["rope_theta"] = json!(5000.0);
        dec["final_logit_softcapping"] = Value::Null;
        let c = parse(json!({"model_type": "t5gemma", "encoder": stack(), "decoder": dec, "eos_token_id": [1, 107]})).unwrap();
        assert_eq!(c.family, Family::T5Gemma);
        assert_eq!(
            c.encoder.layer_types,
            vec![LayerType::Sliding, LayerType::Full]
        );
        assert_eq!(c.encoder.attn_logit_softcapping, Some(50.0));
        assert_eq!(c.decoder.final_logit_softcapping, None);
        assert_eq!(
            c.decoder.rope_full,
            Rope {
                theta: 5000.0,
                factor: 1.0
            }
        );
        assert_eq!(c.decoder.rope_sliding, c.decoder.rope_full);
        assert_eq!(c.encoder.rope_full.theta, 10000.0);
        assert_eq!(c.eos_token_ids, vec![1, 107]);
    }

    #[test]
    fn v2_rope_per_layer_type() {
        let mut text = stack();
        text["rope_parameters"] = json!({
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}
        });
        text["num_hidden_layers"] = json!(6);
        let mut dec = stack();
        dec["rope_theta"] = json!(1e6);
        dec["rope_local_base_freq"] = json!(1e4);
        dec["rope_scaling"] = json!({"rope_type": "linear", "factor": 4.0});
        let c = parse(json!({
            "model_type": "t5gemma2", "eoi_token_index": 99,
            "encoder": {"text_config": text, "vision_config": {}}, "decoder": dec
        }))
        .unwrap();
        assert!(c.has_vision);
        assert_eq!(c.eoi_token_id, Some(99));
        assert_eq!(
            c.encoder.rope_full,
            Rope {
                theta: 1e6,
                factor: 8.0
            }
        );
        assert_eq!(
            c.encoder.rope_sliding,
            Rope {
                theta: 1e4,
                factor: 1.0
            }
        );
        assert_eq!(
            c.decoder.rope_full,
            Rope {
                theta: 1e6,
                factor: 4.0
            }
        );
        assert_eq!(
            c.encoder
                .layer_types
                .iter()
                .filter(|t| **t == LayerType::Full)
                .count(),
            1
        );
        assert_eq!(c.encoder.layer_types[5], LayerType::Full);
        assert_eq!(c.decoder.attn_logit_softcapping, None);
    }

    #[test]
    fn errors_name_file_and_key() {
        let mut enc = stack();
        enc.as_object_mut().unwrap().remove("head_dim");
        let err = parse(json!({"model_type": "t5gemma", "encoder": enc, "decoder": stack()}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.json: `encoder.head_dim`: missing required key"
        );
        let err = parse(json!({"model_type": "bert"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported model_type \"bert\""), "{err}");
        let mut enc = stack();
        enc["hidden_activation"] = json!("relu");
        let err = parse(json!({"model_type": "t5gemma", "encoder": enc, "decoder": stack()}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("relu"), "{err}");
        let mut enc = stack();
        enc["rope_parameters"] = json!({"rope_type": "yarn", "rope_theta": 1.0});
        let err = parse(json!({"model_type": "t5gemma", "encoder": enc, "decoder": stack()}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("yarn"), "{err}");
    }
}
