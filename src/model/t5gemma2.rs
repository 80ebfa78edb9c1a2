//! T5Gemma 2 (text part): Gemma 3 blocks in an encoder-decoder. QK-norm before RoPE, RoPE per
//! layer type, no attention soft-cap, one embedding shared by encoder, decoder and LM head, and
//! a decoder whose single *merged* attention runs one softmax over its own causal keys and the
//! encoder's keys (projected with the same k/v weights and k-norm, without RoPE).
//!
//! Encoder layer:  x += post_attn(SelfAttn(pre_attn(x)));  x += post_ffw(MLP(pre_ffw(x)))
//! Decoder layer:  y += post_attn(MergedAttn(pre_attn(y), enc_out));  y += post_ffw(MLP(pre_ffw(y)))
//! See `shared/reference/T5GEMMA_ARCHITECTURE.md` §2 for the exact math.

use super::blocks;
use super::blocks::{
    add_post_normed, attention, embed_scale, embed_tokens_into, feed_forward, resized, AttnProj,
    Heads, KeySegment, Linear, Mlp, Norm, RopeTables, Scratch, Vector,
};
use super::config::{LayerKind, ModelConfig, StackConfig};
use super::{AttentionPrecision, DecoderState, EncoderOutput, LayerCache};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::kernels::MatRef;
use crate::ops;

/// One layer (encoder and decoder layers have the same weights in T5Gemma 2).
pub(crate) struct Layer {
    kind: LayerKind,
    pre_attn: Norm,
    attn: AttnProj,
    q_norm: Norm,
    k_norm: Norm,
    post_attn: Norm,
    pre_ffw: Norm,
    mlp: Mlp,
    post_ffw: Norm,
}

impl Layer {
    fn load(file: &GgufFile, prefix: &str, s: &StackConfig, kind: LayerKind) -> Result<Self> {
        let norm = |name: &str, len: usize| {
            Norm::load(
                file,
                &format!("{prefix}.{name}.weight"),
                len,
                s.rms_norm_eps,
            )
        };
        Ok(Layer {
            kind,
            pre_attn: norm("attn_norm", s.hidden)?,
            attn: AttnProj::load(
                file,
                &format!("{prefix}.attn"),
                s.hidden,
                s.hidden,
                s.q_dim(),
                s.kv_dim(),
            )?,
            q_norm: norm("attn_q_norm", s.head_dim)?,
            k_norm: norm("attn_k_norm", s.head_dim)?,
            post_attn: norm("post_attention_norm", s.hidden)?,
            pre_ffw: norm("ffn_norm", s.hidden)?,
            mlp: Mlp::load(file, prefix, s.hidden, s.ffn)?,
            post_ffw: norm("post_ffw_norm", s.hidden)?,
        })
    }
}

/// Handles to every weight of a T5Gemma 2 file.
pub struct Weights {
    /// Shared by the encoder input, the decoder input and the LM head.
    embed: Linear,
    /// Replaces (unscaled) the embedding row of `eoi_token_id`.
    eoi: Option<Vector>,
    enc_layers: Vec<Layer>,
    enc_norm: Norm,
    dec_layers: Vec<Layer>,
    dec_norm: Norm,
}

impl Weights {
    pub(crate) fn load(file: &GgufFile, cfg: &ModelConfig) -> Result<Self> {
        let (e, d) = (&cfg.encoder, &cfg.decoder);
        let eoi = match cfg.eoi_token_id {
            Some(_) => Some(Vector::load(file, "token_embd_eoi.weight", e.hidden)?),
            None => None,
        };
        Ok(Weights {
            embed: Linear::load(file, "token_embd.weight", cfg.vocab_size, e.hidden)?,
            eoi,
            enc_layers: (0..e.n_layers)
                .map(|i| Layer::load(file, &format!("enc.blk.{i}"), e, e.layer_kinds[i]))
                .collect::<Result<_>>()?,
            enc_norm: Norm::load(file, "enc.output_norm.weight", e.hidden, e.rms_norm_eps)?,
            dec_layers: (0..d.n_layers)
                .map(|i| Layer::load(file, &format!("dec.blk.{i}"), d, d.layer_kinds[i]))
                .collect::<Result<_>>()?,
            dec_norm: Norm::load(file, "dec.output_norm.weight", d.hidden, d.rms_norm_eps)?,
        })
    }

    /// The encoder's matrix products, grouped as the forward pass calls them (see
    /// [`blocks::encoder_layer_matmuls`]).
    pub(crate) fn encoder_matmuls<'a>(&self, file: &'a GgufFile) -> Vec<Vec<MatRef<'a>>> {
        self.enc_layers
            .iter()
            .flat_map(|l| blocks::encoder_layer_matmuls(file, &l.attn, &l.mlp))
            .collect()
    }

    /// The weights one decoder step reads: every decoder projection and the LM head.
    pub(crate) fn decode_weights(&self) -> Vec<&Linear> {
        let layers = self.dec_layers.iter().flat_map(|l| {
            let (a, m) = (&l.attn, &l.mlp);
            [&a.q, &a.k, &a.v, &a.o, &m.gate, &m.up, &m.down]
        });
        layers.chain([&self.embed]).collect()
    }
}

fn heads(s: &StackConfig) -> Heads {
    Heads {
        n_heads: s.n_heads,
        n_kv_heads: s.n_kv_heads,
        head_dim: s.head_dim,
    }
}

/// `E[ids] * sqrt(H)` into `x`, with the eoi row replaced by the (unscaled) eoi vector.
fn embed_into(
    file: &GgufFile,
    cfg: &ModelConfig,
    w: &Weights,
    ids: &[u32],
    x: &mut Vec<f32>,
) -> Result<()> {
    let hidden = cfg.encoder.hidden;
    embed_tokens_into(file, &w.embed, ids, embed_scale(hidden), hidden, x)?;
    if let (Some(eoi_id), Some(eoi)) = (cfg.eoi_token_id, &w.eoi) {
        for (&id, row) in ids.iter().zip(x.chunks_exact_mut(hidden)) {
            if id == eoi_id {
                row.copy_from_slice(eoi.get(file));
            }
        }
    }
    Ok(())
}

/// Projects the pre-attention norm of `x` to queries, keys and values, normalizes each query
/// and key head, and applies RoPE from `pos0` (`staging`: see [`AttnProj::normed_qkv_into`]).
fn project_qkv(
    file: &GgufFile,
    s: &StackConfig,
    layer: &Layer,
    (x, n, rope): (&[f32], usize, &RopeTables),
    staging: &mut Vec<f32>,
    qkv: &mut [Vec<f32>; 3],
) {
    layer
        .attn
        .normed_qkv_into(file, (&layer.pre_attn, x, n), staging, qkv);
    let [q, k, _] = qkv;
    layer.q_norm.apply(file, q);
    layer.k_norm.apply(file, k);
    rope.apply(layer.kind, q, s.n_heads);
    rope.apply(layer.kind, k, s.n_kv_heads);
}

/// Encoder: all tokens at once; sliding layers see the asymmetric window
/// `j ∈ [i - ((W+1)/2 - 1), i + W/2]` (W keys).
pub(crate) fn encode(
    file: &GgufFile,
    cfg: &ModelConfig,
    w: &Weights,
    ids: &[u32],
    precision: AttentionPrecision,
    s: &mut Scratch,
) -> Result<Vec<f32>> {
    let e = &cfg.encoder;
    let n = ids.len();
    let mut x = Vec::new();
    embed_into(file, cfg, w, ids, &mut x)?;
    let left = e.sliding_window.div_ceil(2) - 1;
    let right = e.sliding_window / 2;
    let rope = RopeTables::new(e, 0, n);
    for layer in &w.enc_layers {
        project_qkv(file, e, layer, (&x, n, &rope), &mut s.normed, &mut s.qkv);
        let [q, k, v] = &s.qkv;
        let sliding = layer.kind == LayerKind::Sliding;
        let visible = move |i: usize, _: usize| {
            if sliding {
                i.saturating_sub(left)..i + right + 1
            } else {
                0..n
            }
        };
        let keys = [KeySegment { k, v, len: n }];
        attention(
            q,
            n,
            &keys,
            heads(e),
            (e.attn_scale(), None),
            &visible,
            precision,
            &mut s.attn,
            resized(&mut s.ctx, n * e.q_dim()),
        );
        layer.attn.o.forward_into(file, &s.ctx, n, &mut s.out);
        add_post_normed(file, &layer.post_attn, &mut s.out, &mut x);
        let ffw = (&layer.pre_ffw, &layer.mlp, &layer.post_ffw);
        feed_forward(file, &mut x, n, ffw, s);
    }
    w.enc_norm.apply(file, &mut x);
    Ok(x)
}

/// The encoder part of every decoder layer's merged attention: keys through the layer's own
/// k-projection and k-norm (no RoPE), values through its v-projection. Computed once per input.
pub(crate) fn cross_caches(
    file: &GgufFile,
    cfg: &ModelConfig,
    w: &Weights,
    enc: &EncoderOutput,
) -> Vec<LayerCache> {
    let d = &cfg.decoder;
    let pairs: Vec<_> = w
        .dec_layers
        .iter()
        .map(|layer| (&layer.attn.k, &layer.attn.v))
        .collect();
    let kv = Linear::forward_pairs(file, &pairs, &enc.hidden, enc.n_tokens);
    w.dec_layers
        .iter()
        .zip(kv)
        .map(|(layer, (mut ck, cv))| {
            layer.k_norm.apply(file, &mut ck);
            let window = (layer.kind == LayerKind::Sliding).then_some(d.sliding_window);
            LayerCache::new(window, d.kv_dim(), ck, cv, enc.n_tokens)
        })
        .collect()
}

/// Decoder: feeds `tokens` at positions `state.pos..` and writes their logits into `logits`.
pub(crate) fn decode(
    file: &GgufFile,
    cfg: &ModelConfig,
    w: &Weights,
    state: &mut DecoderState,
    tokens: &[u32],
    logits: &mut Vec<f32>,
) -> Result<()> {
    let d = &cfg.decoder;
    let n = tokens.len();
    let pos0 = state.pos;
    if cfg.eoi_token_id.is_some() && w.eoi.is_none() {
        return Err(Error::tensor("token_embd_eoi.weight", "missing"));
    }
    let DecoderState {
        layers, scratch, ..
    } = state;
    embed_into(file, cfg, w, tokens, &mut scratch.x)?;
    let (y, s, rope) = scratch.for_positions(d, pos0, n);
    for (layer, cache) in w.dec_layers.iter().zip(layers) {
        project_qkv(file, d, layer, (y, n, rope), &mut s.normed, &mut s.qkv);
        let [q, k, v] = &s.qkv;
        cache.append(k, v);
        {
            // One softmax over [own causal keys ; encoder keys].
            let cache = &*cache;
            let keys = [
                KeySegment {
                    k: &cache.k,
                    v: &cache.v,
                    len: cache.len(),
                },
                KeySegment {
                    k: &cache.cross_k,
                    v: &cache.cross_v,
                    len: cache.n_cross,
                },
            ];
            let visible = |i: usize, segment: usize| {
                if segment == 1 {
                    0..cache.n_cross
                } else {
                    cache.visible(pos0 + i)
                }
            };
            attention(
                q,
                n,
                &keys,
                heads(d),
                (d.attn_scale(), None),
                &visible,
                AttentionPrecision::F32,
                &mut s.attn,
                resized(&mut s.ctx, n * d.q_dim()),
            );
        }
        layer.attn.o.forward_into(file, &s.ctx, n, &mut s.out);
        add_post_normed(file, &layer.post_attn, &mut s.out, y);
        let ffw = (&layer.pre_ffw, &layer.mlp, &layer.post_ffw);
        feed_forward(file, y, n, ffw, s);
    }
    w.dec_norm.apply(file, y);
    w.embed.forward_into(file, y, n, logits);
    if let Some(cap) = cfg.final_logit_softcapping {
        ops::softcap_inplace(logits, cap);
    }
    Ok(())
}
