#!/usr/bin/env python3
"""Independent check of the reference fixtures: the T5Gemma / T5Gemma 2 forward pass written from
shared/reference/T5GEMMA_ARCHITECTURE.md in plain numpy (float64, no transformers), run on the
safetensors + config.json of every fixture model and compared with reference.json.

    python tools/check_reference_numpy.py [DIR]      # DIR defaults to tests/fixtures

It checks `cases` (encoder states and logits), `alt_window` (v1, encoder |i-j| < W), `q4_0`
(weights through gguf's Q4_0 round trip) and that `greedy` outputs are the argmax of the
teacher-forced logits. Also a compact second implementation for readers of the Rust code.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

TOL = 2e-3


def load_weights(d: Path) -> dict[str, np.ndarray]:
    w = {}
    for f in sorted(d.glob("*.safetensors")):
        try:
            part = load_file(f)
        except TypeError:  # bf16 is not a numpy dtype: read it through torch
            import torch
            from safetensors.torch import load_file as load_torch

            part = {k: v.to(torch.float32).numpy() for k, v in load_torch(f).items()}
        w.update(part)
    return {k: v.astype(np.float64) for k, v in w.items()}


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * (1.0 + w)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def mlp(x, w, p):
    return (gelu_tanh(x @ w[p + "gate_proj.weight"].T) * (x @ w[p + "up_proj.weight"].T)) @ w[p + "down_proj.weight"].T


def rope(x, inv_freq):
    """x: [heads, L, hd], positions 0..L-1, half-split rotation."""
    pos = np.arange(x.shape[1], dtype=np.float64)
    ang = pos[:, None] * inv_freq[None, :]
    ang = np.concatenate([ang, ang], axis=-1)
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * np.cos(ang) + rot * np.sin(ang)


def inv_freq(rp: dict, hd: int) -> np.ndarray:
    f = 1.0 / (rp["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    if rp.get("rope_type", "default") == "linear":
        f = f / rp["factor"]
    else:
        assert rp.get("rope_type", "default") == "default", rp
    return f


def heads(x, n, hd):
    return x.reshape(x.shape[0], n, hd).transpose(1, 0, 2)


def attend(q, k, v, allowed, scale, softcap):
    """q [nH, Lq, hd], k/v [nKV, Lk, hd]; query head h uses kv head h // (nH / nKV)."""
    group = q.shape[0] // k.shape[0]
    k = np.repeat(k, group, axis=0)
    v = np.repeat(v, group, axis=0)
    s = q @ k.transpose(0, 2, 1) * scale
    if softcap:
        s = np.tanh(s / softcap) * softcap
    s = np.where(allowed[None], s, -np.inf)
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    o = p @ v
    return o.transpose(1, 0, 2).reshape(q.shape[1], -1)


def causal(L, window=None):
    i = np.arange(L)[:, None]
    j = np.arange(L)[None, :]
    ok = j <= i
    if window is not None:
        ok &= (i - j) < window
    return ok


def enc_window(L, W, family, alt=False):
    i = np.arange(L)[:, None]
    j = np.arange(L)[None, :]
    if family == "t5gemma":
        return np.abs(i - j) < W if alt else np.abs(i - j) <= W
    return (j >= i - ((W + 1) // 2 - 1)) & (j <= i + W // 2)


def stack_rope(cfg: dict, family: str) -> dict:
    if family == "t5gemma":
        rp = cfg.get("rope_parameters") or {"rope_type": "default", "rope_theta": cfg["rope_theta"]}
        return {"sliding_attention": rp, "full_attention": rp}
    return cfg["rope_parameters"]


def self_qkv(x, w, p, c, rp, family, eps):
    nH, nKV, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    q = heads(x @ w[p + "q_proj.weight"].T, nH, hd)
    k = heads(x @ w[p + "k_proj.weight"].T, nKV, hd)
    v = heads(x @ w[p + "v_proj.weight"].T, nKV, hd)
    if family == "t5gemma2":
        q = rmsnorm(q, w[p + "q_norm.weight"], eps)
        k = rmsnorm(k, w[p + "k_norm.weight"], eps)
    f = inv_freq(rp, hd)
    return rope(q, f), rope(k, f), v


def encoder(w, cfg, family, ids, alt=False):
    c = cfg["encoder"] if family == "t5gemma" else cfg["encoder"]["text_config"]
    eps, H, L = c["rms_norm_eps"], c["hidden_size"], len(ids)
    E = w["model.encoder.embed_tokens.weight"]
    x = E[ids] * np.float64(np.float32(H**0.5))
    if family == "t5gemma2":
        x[np.array(ids) == cfg["eoi_token_index"]] = w["model.encoder.embed_tokens.eoi_embedding"]
    ropes = stack_rope(c, family)
    cap = c.get("attn_logit_softcapping") if family == "t5gemma" else None
    scale = c["query_pre_attn_scalar"] ** -0.5
    for i, lt in enumerate(c["layer_types"]):
        p = f"model.encoder.layers.{i}."
        h = rmsnorm(x, w[p + "pre_self_attn_layernorm.weight"], eps)
        q, k, v = self_qkv(h, w, p + "self_attn.", c, ropes[lt], family, eps)
        allowed = enc_window(L, c["sliding_window"], family, alt) if lt == "sliding_attention" else np.ones((L, L), bool)
        a = attend(q, k, v, allowed, scale, cap) @ w[p + "self_attn.o_proj.weight"].T
        x = x + rmsnorm(a, w[p + "post_self_attn_layernorm.weight"], eps)
        h = rmsnorm(x, w[p + "pre_feedforward_layernorm.weight"], eps)
        x = x + rmsnorm(mlp(h, w, p + "mlp."), w[p + "post_feedforward_layernorm.weight"], eps)
    return rmsnorm(x, w["model.encoder.norm.weight"], eps)


def decoder(w, cfg, family, enc, ids):
    c = cfg["decoder"]
    eps, H, L = c["rms_norm_eps"], c["hidden_size"], len(ids)
    nH, nKV, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    E = w["model.decoder.embed_tokens.weight"] if family == "t5gemma" else w["model.encoder.embed_tokens.weight"]
    x = E[ids] * np.float64(np.float32(H**0.5))
    if family == "t5gemma2":
        x[np.array(ids) == cfg["eoi_token_index"]] = w["model.encoder.embed_tokens.eoi_embedding"]
    ropes = stack_rope(c, family)
    cap = c.get("attn_logit_softcapping") if family == "t5gemma" else None
    scale = c["query_pre_attn_scalar"] ** -0.5
    Le = enc.shape[0]
    for i, lt in enumerate(c["layer_types"]):
        p = f"model.decoder.layers.{i}."
        self_ok = causal(L, c["sliding_window"] if lt == "sliding_attention" else None)
        h = rmsnorm(x, w[p + "pre_self_attn_layernorm.weight"], eps)
        q, k, v = self_qkv(h, w, p + "self_attn.", c, ropes[lt], family, eps)
        if family == "t5gemma":
            a = attend(q, k, v, self_ok, scale, cap) @ w[p + "self_attn.o_proj.weight"].T
            x = x + rmsnorm(a, w[p + "post_self_attn_layernorm.weight"], eps)
            h = rmsnorm(x, w[p + "pre_cross_attn_layernorm.weight"], eps)
            cq = heads(h @ w[p + "cross_attn.q_proj.weight"].T, nH, hd)
            ck = heads(enc @ w[p + "cross_attn.k_proj.weight"].T, nKV, hd)
            cv = heads(enc @ w[p + "cross_attn.v_proj.weight"].T, nKV, hd)
            a = attend(cq, ck, cv, np.ones((L, Le), bool), scale, cap) @ w[p + "cross_attn.o_proj.weight"].T
            x = x + rmsnorm(a, w[p + "post_cross_attn_layernorm.weight"], eps)
        else:
            ck = rmsnorm(heads(enc @ w[p + "self_attn.k_proj.weight"].T, nKV, hd), w[p + "self_attn.k_norm.weight"], eps)
            cv = heads(enc @ w[p + "self_attn.v_proj.weight"].T, nKV, hd)
            K = np.concatenate([k, ck], axis=1)
            V = np.concatenate([v, cv], axis=1)
            ok = np.concatenate([self_ok, np.ones((L, Le), bool)], axis=1)
            a = attend(q, K, V, ok, scale, None) @ w[p + "self_attn.o_proj.weight"].T
            x = x + rmsnorm(a, w[p + "post_self_attn_layernorm.weight"], eps)
        h = rmsnorm(x, w[p + "pre_feedforward_layernorm.weight"], eps)
        x = x + rmsnorm(mlp(h, w, p + "mlp."), w[p + "post_feedforward_layernorm.weight"], eps)
    h = rmsnorm(x, w["model.decoder.norm.weight"], eps)
    logits = h @ E.T
    fcap = c.get("final_logit_softcapping")
    if fcap:
        logits = np.tanh(logits / fcap) * fcap
    return logits


def q4_0_roundtrip(w: dict) -> dict:
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    out = {}
    for k, v in w.items():
        if v.ndim == 2 and "vision_tower" not in k and "multi_modal_projector" not in k:
            a = v.astype(np.float32)
            out[k] = dequantize(quantize(a, GGMLQuantizationType.Q4_0), GGMLQuantizationType.Q4_0).reshape(a.shape)
            out[k] = out[k].astype(np.float64)
        else:
            out[k] = v
    return out


def check_model(d: Path) -> float:
    cfg = json.loads((d / "config.json").read_text())
    ref = json.loads((d / "reference.json").read_text())
    family = ref["family"]
    assert cfg["model_type"] == family
    w = load_weights(d)
    worst = 0.0

    def cmp(a, b, what):
        nonlocal worst
        diff = float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())
        worst = max(worst, diff)
        assert diff < TOL, f"{d.name} {what}: max |diff| {diff}"

    for c in ref["cases"]:
        enc = encoder(w, cfg, family, c["input_ids"])
        cmp(enc, c["encoder_last_hidden_state"], f"{c['name']} encoder")
        cmp(decoder(w, cfg, family, enc, c["decoder_input_ids"]), c["logits"], f"{c['name']} logits")
    for c, a in zip(ref["cases"], ref.get("alt_window", {}).get("cases", [])):
        enc = encoder(w, cfg, family, c["input_ids"], alt=True)
        cmp(enc, a["encoder_last_hidden_state"], f"alt {a['name']} encoder")
        cmp(decoder(w, cfg, family, enc, c["decoder_input_ids"]), a["logits"], f"alt {a['name']} logits")
    for g in ref["greedy"]:
        enc = encoder(w, cfg, family, g["input_ids"])
        out = g["output_ids"]
        logits = decoder(w, cfg, family, enc, [2] + out[:-1])
        assert [int(t) for t in logits.argmax(-1)] == out, f"{d.name} greedy"
    wq = q4_0_roundtrip(w)
    for c, qc in zip(ref["cases"], ref["q4_0"]["cases"]):
        enc = encoder(wq, cfg, family, c["input_ids"])
        cmp(decoder(wq, cfg, family, enc, c["decoder_input_ids"]), qc["logits"], f"q4_0 {qc['name']} logits")
    return worst


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "tests" / "fixtures"
    models = sorted(p.parent for p in root.glob("*/reference.json"))
    assert models, f"no reference.json under {root}"
    for d in models:
        print(f"{d.name}: ok, max |numpy - reference| = {check_model(d):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
