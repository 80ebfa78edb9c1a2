//! Which Hugging Face tensor becomes which GGUF tensor, with which shape and type — decided and
//! validated for every tensor before a single byte is written.

use super::config::{Family, ModelConfig, StackConfig};
use super::weights::{decode_floats, float_dtype_size, Checkpoint, SourceTensor};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use std::collections::BTreeSet;

/// One tensor of the output file.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedTensor {
    /// Name in the GGUF file.
    pub name: String,
    /// Name in the checkpoint, as stored.
    pub source: String,
    /// Output element type.
    pub ty: GgmlType,
    /// Shape in ggml order (`[in, out]` for a torch `[out, in]` weight).
    pub shape: Vec<usize>,
}

/// The whole output, decided.
#[derive(Debug, Default)]
pub struct Plan {
    /// Tensors to write, in file order.
    pub tensors: Vec<PlannedTensor>,
    /// Checkpoint tensors deliberately left out (vision tower, tied copies).
    pub skipped: Vec<String>,
    /// How many of `skipped` belong to the vision tower / projector.
    pub vision_skipped: usize,
    /// Things to tell the user.
    pub notes: Vec<String>,
}

/// HF prefixes of the T5Gemma 2 image side, which a text-only runtime leaves out.
const VISION_PREFIXES: [&str; 2] = [
    "model.encoder.vision_tower.",
    "model.encoder.multi_modal_projector.",
];

/// The output type of a tensor of torch shape `shape` when `--type ty` was asked for.
pub fn choose_type(ty: GgmlType, shape: &[usize]) -> GgmlType {
    if shape.len() < 2 {
        return GgmlType::F32;
    }
    let row = shape[shape.len() - 1];
    match ty {
        GgmlType::Q8_0 | GgmlType::Q4_0 if row % ty.block_len() != 0 => GgmlType::F16,
        other => other,
    }
}

struct Want {
    gguf: String,
    hf: String,
    shape: Vec<usize>,
}

fn want(list: &mut Vec<Want>, gguf: String, hf: String, shape: Vec<usize>) {
    list.push(Want { gguf, hf, shape });
}

/// Block tensors shared by every stack: self-attention, MLP and their sandwich norms.
fn stack_wants(list: &mut Vec<Want>, cfg: &ModelConfig, s: &StackConfig, short: &str, long: &str) {
    let (h, hd) = (s.hidden_size, s.head_dim);
    let q = s.num_heads * hd;
    let kv = s.num_kv_heads * hd;
    for i in 0..s.num_layers {
        let g = |n: &str| format!("{short}.blk.{i}.{n}.weight");
        let f = |n: &str| format!("model.{long}.layers.{i}.{n}.weight");
        want(list, g("attn_norm"), f("pre_self_attn_layernorm"), vec![h]);
        want(list, g("attn_q"), f("self_attn.q_proj"), vec![q, h]);
        want(list, g("attn_k"), f("self_attn.k_proj"), vec![kv, h]);
        want(list, g("attn_v"), f("self_attn.v_proj"), vec![kv, h]);
        if cfg.family == Family::T5Gemma2 {
            want(list, g("attn_q_norm"), f("self_attn.q_norm"), vec![hd]);
            want(list, g("attn_k_norm"), f("self_attn.k_norm"), vec![hd]);
        }
        want(list, g("attn_output"), f("self_attn.o_proj"), vec![h, q]);
        want(
            list,
            g("post_attention_norm"),
            f("post_self_attn_layernorm"),
            vec![h],
        );
        if cfg.family == Family::T5Gemma && short == "dec" {
            let he = cfg.encoder.hidden_size;
            want(
                list,
                g("cross_attn_norm"),
                f("pre_cross_attn_layernorm"),
                vec![h],
            );
            want(list, g("cross_attn_q"), f("cross_attn.q_proj"), vec![q, h]);
            want(
                list,
                g("cross_attn_k"),
                f("cross_attn.k_proj"),
                vec![kv, he],
            );
            want(
                list,
                g("cross_attn_v"),
                f("cross_attn.v_proj"),
                vec![kv, he],
            );
            want(
                list,
                g("cross_attn_output"),
                f("cross_attn.o_proj"),
                vec![h, q],
            );
            want(
                list,
                g("post_cross_attn_norm"),
                f("post_cross_attn_layernorm"),
                vec![h],
            );
        }
        want(list, g("ffn_norm"), f("pre_feedforward_layernorm"), vec![h]);
        want(
            list,
            g("ffn_gate"),
            f("mlp.gate_proj"),
            vec![s.intermediate_size, h],
        );
        want(
            list,
            g("ffn_up"),
            f("mlp.up_proj"),
            vec![s.intermediate_size, h],
        );
        want(
            list,
            g("ffn_down"),
            f("mlp.down_proj"),
            vec![h, s.intermediate_size],
        );
        want(
            list,
            g("post_ffw_norm"),
            f("post_feedforward_layernorm"),
            vec![h],
        );
    }
    want(
        list,
        format!("{short}.output_norm.weight"),
        format!("model.{long}.norm.weight"),
        vec![h],
    );
}

fn wants(cfg: &ModelConfig) -> Vec<Want> {
    let v = cfg.vocab_size;
    let mut list = Vec::new();
    match cfg.family {
        Family::T5Gemma => {
            want(
                &mut list,
                "enc.token_embd.weight".into(),
                "model.encoder.embed_tokens.weight".into(),
                vec![v, cfg.encoder.hidden_size],
            );
            stack_wants(&mut list, cfg, &cfg.encoder, "enc", "encoder");
            want(
                &mut list,
                "dec.token_embd.weight".into(),
                "model.decoder.embed_tokens.weight".into(),
                vec![v, cfg.decoder.hidden_size],
            );
            stack_wants(&mut list, cfg, &cfg.decoder, "dec", "decoder");
        }
        Family::T5Gemma2 => {
            let h = cfg.encoder.hidden_size;
            want(
                &mut list,
                "token_embd.weight".into(),
                "model.encoder.embed_tokens.weight".into(),
                vec![v, h],
            );
            want(
                &mut list,
                "token_embd_eoi.weight".into(),
                "model.encoder.embed_tokens.eoi_embedding".into(),
                vec![h],
            );
            stack_wants(&mut list, cfg, &cfg.encoder, "enc", "encoder");
            stack_wants(&mut list, cfg, &cfg.decoder, "dec", "decoder");
        }
    }
    list
}

/// Finds a tensor by its canonical HF name, accepting `model.encoder.text_model.*` as a
/// spelling of `model.encoder.*` for T5Gemma 2.
fn lookup<'a>(
    ck: &'a Checkpoint,
    family: Family,
    hf: &str,
) -> Result<Option<(&'a str, &'a SourceTensor)>> {
    let direct = ck.tensors.get_key_value(hf);
    let alt = match (family, hf.strip_prefix("model.encoder.")) {
        (Family::T5Gemma2, Some(rest)) => ck
            .tensors
            .get_key_value(&format!("model.encoder.text_model.{rest}")),
        _ => None,
    };
    match (direct, alt) {
        (Some(_), Some((alt_name, _))) => Err(Error::tensor(
            hf,
            format!("stored twice, also as `{alt_name}`"),
        )),
        (Some((k, t)), None) | (None, Some((k, t))) => Ok(Some((k.as_str(), t))),
        (None, None) => Ok(None),
    }
}

fn check(ck: &Checkpoint, name: &str, t: &SourceTensor, shape: &[usize]) -> Result<()> {
    if t.shape != shape {
        return Err(Error::tensor(
            name,
            format!(
                "expected shape {shape:?} from config.json, found {:?} in {}",
                t.shape,
                ck.path_of(t).display()
            ),
        ));
    }
    if float_dtype_size(t.dtype).is_none() {
        return Err(Error::tensor(
            name,
            format!(
                "dtype {:?} in {} is not supported (bf16, f16 and f32 are)",
                t.dtype,
                ck.path_of(t).display()
            ),
        ));
    }
    Ok(())
}

/// Whether two stored tensors hold the same values (bit for bit, after widening to f32).
pub fn same_values(ck: &Checkpoint, a: &SourceTensor, b: &SourceTensor) -> bool {
    if a.shape != b.shape {
        return false;
    }
    let (ba, bb) = (ck.bytes(a), ck.bytes(b));
    if a.dtype == b.dtype {
        return ba == bb;
    }
    let (Some(sa), Some(sb)) = (float_dtype_size(a.dtype), float_dtype_size(b.dtype)) else {
        return false;
    };
    const CHUNK: usize = 1 << 16;
    let (mut xa, mut xb) = (vec![0f32; CHUNK], vec![0f32; CHUNK]);
    let n = a.n_elements();
    let mut i = 0;
    while i < n {
        let m = CHUNK.min(n - i);
        decode_floats(a.dtype, &ba[i * sa..(i + m) * sa], &mut xa[..m]);
        decode_floats(b.dtype, &bb[i * sb..(i + m) * sb], &mut xb[..m]);
        if xa[..m]
            .iter()
            .zip(&xb[..m])
            .any(|(x, y)| x.to_bits() != y.to_bits())
        {
            return false;
        }
        i += m;
    }
    true
}

/// Decides and validates the output: every expected tensor present with the shape the config
/// implies and a convertible dtype, tied copies recognised, vision tensors skipped, nothing
/// unexplained left over.
pub fn plan(cfg: &ModelConfig, ck: &Checkpoint, ty: GgmlType) -> Result<Plan> {
    let mut out = Plan::default();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for w in wants(cfg) {
        let Some((stored, t)) = lookup(ck, cfg.family, &w.hf)? else {
            return Err(Error::tensor(
                &w.hf,
                format!(
                    "missing from the checkpoint ({} expects it)",
                    cfg.family.arch()
                ),
            ));
        };
        check(ck, stored, t, &w.shape)?;
        used.insert(stored);
        out.tensors.push(PlannedTensor {
            name: w.gguf,
            source: stored.to_owned(),
            ty: choose_type(ty, &w.shape),
            shape: w.shape.iter().rev().copied().collect(),
        });
    }

    // Tied copies: stored duplicates of a tensor we already write.
    let (embed, tied): (&str, Vec<&str>) = match cfg.family {
        Family::T5Gemma => (
            "model.decoder.embed_tokens.weight",
            vec!["lm_head.out_proj.weight"],
        ),
        Family::T5Gemma2 => (
            "model.encoder.embed_tokens.weight",
            vec![
                "lm_head.out_proj.weight",
                "model.decoder.embed_tokens.weight",
            ],
        ),
    };
    let mut copies = vec![];
    for name in tied {
        copies.push((name, embed));
    }
    if cfg.family == Family::T5Gemma2 {
        copies.push((
            "model.decoder.embed_tokens.eoi_embedding",
            "model.encoder.embed_tokens.eoi_embedding",
        ));
    }
    for (copy, original) in copies {
        let Some((stored, t)) = ck.tensors.get_key_value(copy) else {
            continue;
        };
        let Some((_, orig)) = lookup(ck, cfg.family, original)? else {
            continue;
        };
        check(ck, stored, t, &orig.shape)?;
        used.insert(stored);
        if same_values(ck, t, orig) {
            out.skipped.push(stored.clone());
            out.notes.push(format!(
                "`{stored}` is a tied copy of `{original}`: not stored twice"
            ));
        } else if cfg.family == Family::T5Gemma && copy == "lm_head.out_proj.weight" {
            out.notes.push(format!(
                "`{stored}` differs from `{original}`: stored as output.weight"
            ));
            out.tensors.push(PlannedTensor {
                name: "output.weight".into(),
                source: stored.clone(),
                ty: choose_type(ty, &t.shape),
                shape: t.shape.iter().rev().copied().collect(),
            });
        } else {
            return Err(Error::tensor(
                stored,
                format!("differs from `{original}`, but t5gemma2 ties them (untied weights are not supported)"),
            ));
        }
    }

    let mut unexpected = Vec::new();
    for name in ck.tensors.keys() {
        if used.contains(name.as_str()) {
            continue;
        }
        if cfg.family == Family::T5Gemma2 && VISION_PREFIXES.iter().any(|p| name.starts_with(p)) {
            out.skipped.push(name.clone());
            out.vision_skipped += 1;
            continue;
        }
        unexpected.push(name);
    }
    if let Some(first) = unexpected.first() {
        let t = &ck.tensors[first.as_str()];
        return Err(Error::tensor(
            first.as_str(),
            format!(
                "unexpected tensor in {} (no place for it in a {} model with this config.json){}",
                ck.path_of(t).display(),
                cfg.family.arch(),
                if unexpected.len() > 1 {
                    format!("; {} unexpected tensors in all", unexpected.len())
                } else {
                    String::new()
                }
            ),
        ));
    }
    if out.vision_skipped > 0 {
        out.notes.push(format!(
            "{} vision tower / projector tensors skipped (text-only runtime)",
            out.vision_skipped
        ));
    }
    let fallback = out
        .tensors
        .iter()
        .filter(|t| t.shape.len() >= 2 && t.ty != ty)
        .count();
    if fallback > 0 {
        out.notes.push(format!(
            "{fallback} 2-D tensors have rows that are not a multiple of 32: stored as f16 instead of {ty}"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_choice() {
        assert_eq!(choose_type(GgmlType::Q4_0, &[64]), GgmlType::F32);
        assert_eq!(choose_type(GgmlType::Q4_0, &[48, 64]), GgmlType::Q4_0);
        assert_eq!(choose_type(GgmlType::Q8_0, &[64, 48]), GgmlType::F16);
        assert_eq!(choose_type(GgmlType::F32, &[64, 48]), GgmlType::F32);
        assert_eq!(choose_type(GgmlType::F16, &[64, 48]), GgmlType::F16);
    }
}
