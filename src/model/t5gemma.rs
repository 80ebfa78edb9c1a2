//! T5Gemma (v1): Gemma 2 blocks in an encoder-decoder, with a separate cross-attention
//! sublayer in every decoder layer and tanh soft-caps on attention scores and final logits.
//!
//! Encoder layer:  x += post_attn(SelfAttn(pre_attn(x)));  x += post_ffw(MLP(pre_ffw(x)))
//! Decoder layer:  y += post_self(SelfAttn_causal(pre_self(y)))
//!                 y += post_cross(CrossAttn(pre_cross(y), enc_out))
//!                 y += post_ffw(MLP(pre_ffw(y)))
//! See `shared/reference/T5GEMMA_ARCHITECTURE.md` §1 for the exact math.

use super::blocks;
use super::blocks::{
    add_post_normed, attention, embed_scale, embed_tokens, embed_tokens_into, feed_forward,
    resized, AttnProj, Heads, KeySegment, Linear, Mlp, Norm, RopeTables, Scratch,
};
use super::config::{LayerKind, ModelConfig, StackConfig};
use super::{AttentionPrecision, DecoderState, EncoderOutput, LayerCache};
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::kernels::MatRef;
use crate::ops;

/// One encoder layer.
pub(crate) struct EncoderLayer {
    kind: LayerKind,
    pre_attn: Norm,
    attn: AttnProj,
    post_attn: Norm,
    pre_ffw: Norm,
    mlp: Mlp,
    post_ffw: Norm,
}

/// One decoder layer.
pub(crate) struct DecoderLayer {
    kind: LayerKind,
    pre_self: Norm,
    self_attn: AttnProj,
    post_self: Norm,
    pre_cross: Norm,
    cross_attn: AttnProj,
    post_cross: Norm,
    pre_ffw: Norm,
    mlp: Mlp,
    post_ffw: Norm,
}

/// Handles to every weight of a T5Gemma file.
pub struct Weights {
    enc_embed: Linear,
    enc_layers: Vec<EncoderLayer>,
    enc_norm: Norm,
    dec_embed: Linear,
    dec_layers: Vec<DecoderLayer>,
    dec_norm: Norm,
    /// The decoder embedding (tied) unless the file stores a separate `output.weight`.
    lm_head: Linear,
}

impl Weights {
    pub(crate) fn load(file: &GgufFile, cfg: &ModelConfig) -> Result<Self> {
        let (e, d) = (&cfg.encoder, &cfg.decoder);
        let norm =
            |name: String, s: &StackConfig| Norm::load(file, &name, s.hidden, s.rms_norm_eps);
        let enc_layers = (0..e.n_layers)
            .map(|i| {
                let p = format!("enc.blk.{i}");
                Ok(EncoderLayer {
                    kind: e.layer_kinds[i],
                    pre_attn: norm(format!("{p}.attn_norm.weight"), e)?,
                    attn: AttnProj::load(
                        file,
                        &format!("{p}.attn"),
                        e.hidden,
                        e.hidden,
                        e.q_dim(),
                        e.kv_dim(),
                    )?,
                    post_attn: norm(format!("{p}.post_attention_norm.weight"), e)?,
                    pre_ffw: norm(format!("{p}.ffn_norm.weight"), e)?,
                    mlp: Mlp::load(file, &p, e.hidden, e.ffn)?,
                    post_ffw: norm(format!("{p}.post_ffw_norm.weight"), e)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dec_layers = (0..d.n_layers)
            .map(|i| {
                let p = format!("dec.blk.{i}");
                Ok(DecoderLayer {
                    kind: d.layer_kinds[i],
                    pre_self: norm(format!("{p}.attn_norm.weight"), d)?,
                    self_attn: AttnProj::load(
                        file,
                        &format!("{p}.attn"),
                        d.hidden,
                        d.hidden,
                        d.q_dim(),
                        d.kv_dim(),
                    )?,
                    post_self: norm(format!("{p}.post_attention_norm.weight"), d)?,
                    pre_cross: norm(format!("{p}.cross_attn_norm.weight"), d)?,
                    // Cross-attention keys and values read the encoder's width.
                    cross_attn: AttnProj::load(
                        file,
                        &format!("{p}.cross_attn"),
                        d.hidden,
                        e.hidden,
                        d.q_dim(),
                        d.kv_dim(),
                    )?,
                    post_cross: norm(format!("{p}.post_cross_attn_norm.weight"), d)?,
                    pre_ffw: norm(format!("{p}.ffn_norm.weight"), d)?,
                    mlp: Mlp::load(file, &p, d.hidden, d.ffn)?,
                    post_ffw: norm(format!("{p}.post_ffw_norm.weight"), d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dec_embed = Linear::load(file, "dec.token_embd.weight", cfg.vocab_size, d.hidden)?;
        let lm_head = match file.tensor_info("output.weight") {
            Some(_) => Linear::load(file, "output.weight", cfg.vocab_size, d.hidden)?,
            None => dec_embed.clone(),
        };
        Ok(Weights {
            enc_embed: Linear::load(file, "enc.token_embd.weight", cfg.vocab_size, e.hidden)?,
            enc_layers,
            enc_norm: norm("enc.output_norm.weight".into(), e)?,
            dec_embed,
            dec_layers,
            dec_norm: norm("dec.output_norm.weight".into(), d)?,
            lm_head,
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

    /// The weights one decoder step reads: every decoder projection (cross-attention keys and
    /// values excepted: they are computed once per input) and the LM head.
    pub(crate) fn decode_weights(&self) -> Vec<&Linear> {
        let layers = self.dec_layers.iter().flat_map(|l| {
            let (a, c, m) = (&l.self_attn, &l.cross_attn, &l.mlp);
            [&a.q, &a.k, &a.v, &a.o, &c.q, &c.o, &m.gate, &m.up, &m.down]
        });
        layers.chain([&self.lm_head]).collect()
    }
}

fn heads(s: &StackConfig) -> Heads {
    Heads {
        n_heads: s.n_heads,
        n_kv_heads: s.n_kv_heads,
        head_dim: s.head_dim,
    }
}

/// Encoder: all tokens at once, bidirectional; sliding layers see `|i - j| <= W` (transformers
/// 5.24) or `|i - j| < W` (the original training code), as the file records.
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
    let mut x = embed_tokens(file, &w.enc_embed, ids, embed_scale(e.hidden), e.hidden)?;
    let window = e.sliding_window;
    let inclusive = cfg.encoder_window_inclusive;
    let rope = RopeTables::new(e, 0, n);
    for layer in &w.enc_layers {
        let input = (&layer.pre_attn, &x[..], n);
        layer
            .attn
            .normed_qkv_into(file, input, &mut s.normed, &mut s.qkv);
        let [q, k, v] = &mut s.qkv;
        rope.apply(layer.kind, q, e.n_heads);
        rope.apply(layer.kind, k, e.n_kv_heads);
        let sliding = layer.kind == LayerKind::Sliding;
        // |i - j| <= W (transformers 5.24) or |i - j| < W (original).
        let reach = if inclusive { window } else { window - 1 };
        let visible = move |i: usize, _: usize| {
            if sliding {
                i.saturating_sub(reach)..i + reach + 1
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
            (e.attn_scale(), e.attn_logit_softcapping),
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

/// Cross-attention keys and values of every decoder layer, from the encoder output (no RoPE).
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
        .map(|layer| (&layer.cross_attn.k, &layer.cross_attn.v))
        .collect();
    let kv = Linear::forward_pairs(file, &pairs, &enc.hidden, enc.n_tokens);
    w.dec_layers
        .iter()
        .zip(kv)
        .map(|(layer, (ck, cv))| {
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
    let DecoderState {
        layers, scratch, ..
    } = state;
    let scale = embed_scale(d.hidden);
    embed_tokens_into(file, &w.dec_embed, tokens, scale, d.hidden, &mut scratch.x)?;
    let (y, s, rope) = scratch.for_positions(d, pos0, n);
    for (layer, cache) in w.dec_layers.iter().zip(layers) {
        // Causal self-attention over the cache, this call's positions included.
        let input = (&layer.pre_self, &y[..], n);
        layer
            .self_attn
            .normed_qkv_into(file, input, &mut s.normed, &mut s.qkv);
        let [q, k, v] = &mut s.qkv;
        rope.apply(layer.kind, q, d.n_heads);
        rope.apply(layer.kind, k, d.n_kv_heads);
        cache.append(k, v);
        {
            let cache = &*cache;
            let keys = [KeySegment {
                k: &cache.k,
                v: &cache.v,
                len: cache.len(),
            }];
            let visible = |i: usize, _: usize| cache.visible(pos0 + i);
            attention(
                q,
                n,
                &keys,
                heads(d),
                (d.attn_scale(), d.attn_logit_softcapping),
                &visible,
                AttentionPrecision::F32,
                &mut s.attn,
                resized(&mut s.ctx, n * d.q_dim()),
            );
        }
        layer.self_attn.o.forward_into(file, &s.ctx, n, &mut s.out);
        add_post_normed(file, &layer.post_self, &mut s.out, y);

        // Cross-attention: no RoPE, no window, same scale and soft-cap.
        layer.pre_cross.applied_into(file, y, &mut s.normed);
        let q = &mut s.qkv[0];
        layer.cross_attn.q.forward_into(file, &s.normed, n, q);
        let keys = [KeySegment {
            k: &cache.cross_k,
            v: &cache.cross_v,
            len: cache.n_cross,
        }];
        attention(
            q,
            n,
            &keys,
            heads(d),
            (d.attn_scale(), d.attn_logit_softcapping),
            &|_, _| 0..usize::MAX,
            AttentionPrecision::F32,
            &mut s.attn,
            resized(&mut s.ctx, n * d.q_dim()),
        );
        layer.cross_attn.o.forward_into(file, &s.ctx, n, &mut s.out);
        add_post_normed(file, &layer.post_cross, &mut s.out, y);
        let ffw = (&layer.pre_ffw, &layer.mlp, &layer.post_ffw);
        feed_forward(file, y, n, ffw, s);
    }
    w.dec_norm.apply(file, y);
    w.lm_head.forward_into(file, y, n, logits);
    if let Some(cap) = cfg.final_logit_softcapping {
        ops::softcap_inplace(logits, cap);
    }
    Ok(())
}
