#!/usr/bin/env python3
"""Writes the committed seeds of the converter and tokenizer fuzz targets (fuzz/seeds/):

  safetensors_config/  each fixture config.json alone, and tiny whole checkpoints (config.json,
                       model.safetensors, generation_config.json, tokenizer.model,
                       tokenizer_config.json, shard index) joined by the separator that
                       tests/gguf_builder/exercise_convert.rs splits on
  sentencepiece_model/ a tiny tokenizer.model with byte-fallback, control and user pieces
  tokenizer/           a few corpus lines (multi-byte UTF-8, whitespace runs, markup) and ids

Standard library only; run from anywhere: python3 tools/make_fuzz_seeds.py
"""
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
SEP = b"\n--t5g-file--\n"


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def varint(v):
    out = bytearray()
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_len(n, data):
    return varint(n << 3 | 2) + varint(len(data)) + data


def field_varint(n, v):
    return varint(n << 3) + varint(v)


def sp_model(pieces, byte_fallback=True):
    """pieces: (text, type) with type 1 normal, 2 unknown, 3 control, 4 user, 5 unused, 6 byte."""
    out = b""
    for i, (p, t) in enumerate(pieces):
        sub = field_len(1, p.encode()) + varint(2 << 3 | 5) + struct.pack("<f", -float(i))
        sub += field_varint(3, t)
        out += field_len(1, sub)
    trainer = field_varint(3, 2) + field_varint(35, int(byte_fallback))
    trainer += field_varint(40, 3) + field_varint(41, 2) + field_varint(42, 1) + field_varint(43, 0)
    out += field_len(2, trainer)
    norm = field_len(1, b"identity") + field_varint(3, 0) + field_varint(4, 0) + field_varint(5, 1)
    out += field_len(3, norm)
    return out


PIECES = [("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 2), ("<start_of_turn>", 4),
          ("<end_of_turn>", 4), ("<unused0>", 5)]
PIECES += [("<0x%02X>" % b, 6) for b in (0x00, 0x0A, 0x41, 0xC3, 0xA9)]
PIECES += [(w, 1) for w in ["▁", "▁t", "▁th", "▁the", "▁a", "he", "t", "h", "e", "a", "é"]]


def safetensors(tensors):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def bf16(n, seed):
    out = b""
    x = seed * 2654435761 % 2**32 | 1
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2**31
        out += struct.pack("<f", (x / 2**31) * 0.2 - 0.1)[2:]
    return out


def stack(h, i, layers, hd, vocab):
    return {"hidden_size": h, "intermediate_size": i, "num_hidden_layers": layers,
            "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": hd,
            "query_pre_attn_scalar": hd, "sliding_window": 4, "vocab_size": vocab,
            "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
            "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "layer_types": ["sliding_attention", "full_attention"][:layers]}


def add_stack(t, prefix, s, cross, qk_norm):
    h, i, hd = s["hidden_size"], s["intermediate_size"], s["head_dim"]
    def add(name, shape):
        n = 1
        for d in shape:
            n *= d
        t[name] = ("BF16", shape, bf16(n, len(t) + 7))
    for l in range(s["num_hidden_layers"]):
        p = f"{prefix}.layers.{l}"
        for n in ["pre_self_attn_layernorm", "post_self_attn_layernorm",
                  "pre_feedforward_layernorm", "post_feedforward_layernorm"]:
            add(f"{p}.{n}.weight", [h])
        for n, shape in [("q", [hd, h]), ("k", [hd, h]), ("v", [hd, h]), ("o", [h, hd])]:
            add(f"{p}.self_attn.{n}_proj.weight", shape)
        if qk_norm:
            add(f"{p}.self_attn.q_norm.weight", [hd])
            add(f"{p}.self_attn.k_norm.weight", [hd])
        if cross:
            add(f"{p}.pre_cross_attn_layernorm.weight", [h])
            add(f"{p}.post_cross_attn_layernorm.weight", [h])
            for n, shape in [("q", [hd, h]), ("k", [hd, h]), ("v", [hd, h]), ("o", [h, hd])]:
                add(f"{p}.cross_attn.{n}_proj.weight", shape)
        add(f"{p}.mlp.gate_proj.weight", [i, h])
        add(f"{p}.mlp.up_proj.weight", [i, h])
        add(f"{p}.mlp.down_proj.weight", [h, i])
    add(f"{prefix}.norm.weight", [h])
    return add


def v1(vocab):
    enc, dec = stack(4, 4, 1, 4, vocab), stack(4, 4, 1, 4, vocab)
    dec["cross_attention_hidden_size"] = 4
    cfg = {"model_type": "t5gemma", "encoder": enc, "decoder": dec, "vocab_size": vocab,
           "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}
    t = {}
    add = add_stack(t, "model.encoder", enc, False, False)
    add_stack(t, "model.decoder", dec, True, False)
    add("model.encoder.embed_tokens.weight", [vocab, 4])
    add("model.decoder.embed_tokens.weight", [vocab, 4])
    return cfg, t


def v2(vocab):
    text = stack(4, 4, 2, 4, vocab)
    text["rope_parameters"] = {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}}
    text["attn_logit_softcapping"] = None
    text["final_logit_softcapping"] = None
    cfg = {"model_type": "t5gemma2", "eoi_token_index": vocab - 1, "vocab_size": vocab,
           "encoder": {"text_config": text, "vision_config": {"hidden_size": 4}},
           "decoder": text, "eos_token_id": [1, 3]}
    t = {}
    add = add_stack(t, "model.encoder.text_model", text, False, True)
    add_stack(t, "model.decoder", text, False, True)
    add("model.encoder.text_model.embed_tokens.weight", [vocab, 4])
    add("model.encoder.text_model.embed_tokens.eoi_embedding", [4])
    add("model.encoder.vision_tower.post_layernorm.weight", [4])
    return cfg, t


def main():
    for d in sorted(os.listdir(os.path.join(ROOT, "tests", "fixtures"))):
        p = os.path.join(ROOT, "tests", "fixtures", d, "config.json")
        if os.path.exists(p):
            write("safetensors_config", f"config_{d}", open(p, "rb").read())
    vocab = len(PIECES)
    tok = sp_model(PIECES)
    tc = json.dumps({"add_bos_token": True, "add_eos_token": False, "bos_token": "<bos>",
                     "eos_token": {"content": "<eos>"}, "pad_token": "<pad>",
                     "chat_template": "{{ bos_token }}X"}).encode()
    gen = json.dumps({"eos_token_id": [1, 5], "bos_token_id": 2}).encode()
    for name, (cfg, t) in [("v1", v1(vocab)), ("v2", v2(vocab))]:
        c = json.dumps(cfg).encode()
        st = safetensors(t)
        write("safetensors_config", f"checkpoint_{name}", SEP.join([c, st]))
        write("safetensors_config", f"checkpoint_{name}_tokenizer", SEP.join([c, st, gen, tok, tc]))
    c, t = v1(vocab)
    index = json.dumps({"metadata": {}, "weight_map": {k: "model.safetensors" for k in t}}).encode()
    write("safetensors_config", "checkpoint_v1_index",
          SEP.join([json.dumps(c).encode(), safetensors(t), gen, tok, tc, index]))

    write("sentencepiece_model", "tiny_bpe", tok)
    write("sentencepiece_model", "no_byte_fallback", sp_model(PIECES[:4] + PIECES[12:], False))

    lines = [json.loads(l) for l in open(os.path.join(ROOT, "tests", "fixtures", "tokenizer", "corpus.jsonl"), encoding="utf-8") if l.strip()]
    picks = [l for l in lines if any(ord(ch) > 0x7F for ch in l)][:6] + [l for l in lines if "  " in l][:2]
    picks += ["<start_of_turn>user\nHi ▁ there<end_of_turn>\n<eos><bos><0x41>", "a\u0000b\tc\r\n😀"]
    for i, text in enumerate(picks):
        write("tokenizer", f"text_{i}", text.encode())
    write("tokenizer", "ids", struct.pack("<8I", 2, 106, 5, 300, 1, 0, 4000000000, 262143))


main()
