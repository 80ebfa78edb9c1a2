#!/usr/bin/env python3
"""Open t5g GGUF files with gguf-py (the GGUF ecosystem's reader) and check them.

    python tools/check_gguf_py.py [--against HF_DIR] FILE.gguf [FILE.gguf ...]

For every file: gguf-py must open it; every tensor's name, type, shape and offset as gguf-py
reads them must equal what the header lists (parsed here independently with `struct`); every
tensor's bytes must lie inside the file, 32-byte aligned, sized as its type and shape require;
every metadata value must be readable; and for t5gemma / t5gemma2 files the keys and tensor
names of docs/FORMAT.md must be there (1-D tensors f32). With `--against HF_DIR`, every tensor
must also equal, byte for byte, gguf-py's own conversion (`gguf.quants.quantize`) of the
checkpoint tensor it came from. Exit status 1 on any failure.

Needs only `pip install gguf numpy`.
"""

import json
import os
import re
import struct
import sys

import gguf
import numpy as np

# GGUF value type id -> struct format of a scalar (strings and arrays handled apart).
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class Header:
    """The header of a GGUF v3 file, parsed without gguf-py."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        magic, version = self.take("<II")
        if magic != 0x46554747 or version not in (2, 3):
            raise ValueError(f"bad magic/version {magic:#x}/{version}")
        n_tensors, n_kv = self.take("<QQ")
        self.meta = {}
        for _ in range(n_kv):
            key = self.string()
            (vtype,) = self.take("<I")
            self.meta[key] = self.value(vtype)
        self.tensors = []
        for _ in range(n_tensors):
            name = self.string()
            (n_dims,) = self.take("<I")
            dims = list(self.take(f"<{n_dims}Q"))
            ttype, offset = self.take("<IQ")
            self.tensors.append((name, dims, ttype, offset))
        align = self.meta.get("general.alignment", 32)
        self.data_start = (self.pos + align - 1) // align * align
        self.alignment = align

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"header runs past the end at byte {self.pos}")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def string(self):
        (n,) = self.take("<Q")
        if self.pos + n > len(self.data):
            raise ValueError(f"string runs past the end at byte {self.pos}")
        s = bytes(self.data[self.pos:self.pos + n]).decode("utf-8")
        self.pos += n
        return s

    def value(self, vtype):
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, n = self.take("<IQ")
            return [self.value(etype) for _ in range(n)]
        if vtype not in SCALAR:
            raise ValueError(f"unknown value type {vtype}")
        return self.take("<" + SCALAR[vtype])[0]


STACK_KEYS = [
    "block_count", "embedding_length", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "attention.key_length", "attention.value_length",
    "attention.query_pre_attn_scalar", "attention.sliding_window", "attention.layer_types",
    "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.scaling.factor",
    "rope.freq_base_swa", "rope.scaling_swa.factor",
]

BLOCK_TENSORS = (
    r"attn_norm|post_attention_norm|attn_q|attn_k|attn_v|attn_output|attn_q_norm|attn_k_norm"
    r"|cross_attn_norm|post_cross_attn_norm|cross_attn_q|cross_attn_k|cross_attn_v"
    r"|cross_attn_output|ffn_norm|post_ffw_norm|ffn_gate|ffn_up|ffn_down"
)
TENSOR_NAME = re.compile(
    rf"^((enc|dec)\.blk\.\d+\.({BLOCK_TENSORS})\.weight|(enc|dec)\.output_norm\.weight"
    r"|enc\.token_embd\.weight|dec\.token_embd\.weight|output\.weight"
    r"|token_embd\.weight|token_embd_eoi\.weight)$"
)


def check_t5g(meta, tensors, fail):
    arch = meta.get("general.architecture")
    if arch not in ("t5gemma", "t5gemma2"):
        return
    required = ["general.name", "general.file_type", "general.quantization_version",
                f"{arch}.vocab_size", f"{arch}.decoder_start_token_id", f"{arch}.eos_token_ids"]
    if arch == "t5gemma2":
        required += [f"{arch}.vision_tensors_skipped", f"{arch}.eoi_token_id"]
    for stack in ("encoder", "decoder"):
        required += [f"{arch}.{stack}.{k}" for k in STACK_KEYS]
    for key in required:
        if key not in meta:
            fail(f"missing metadata key {key}")
    names = {t[0] for t in tensors}
    for name, dims, ttype, _ in tensors:
        if not TENSOR_NAME.match(name):
            fail(f"tensor {name}: not a t5g tensor name")
        if len(dims) == 1 and ttype != gguf.GGMLQuantizationType.F32:
            fail(f"tensor {name}: 1-D tensors must be f32, found type {ttype}")
    for stack, short in (("encoder", "enc"), ("decoder", "dec")):
        n = meta.get(f"{arch}.{stack}.block_count", 0)
        for i in range(n):
            for t in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
                if f"{short}.blk.{i}.{t}.weight" not in names:
                    fail(f"missing tensor {short}.blk.{i}.{t}.weight")
        if f"{short}.output_norm.weight" not in names:
            fail(f"missing tensor {short}.output_norm.weight")
    embd = ["enc.token_embd.weight", "dec.token_embd.weight"] if arch == "t5gemma" else \
        ["token_embd.weight", "token_embd_eoi.weight"]
    for name in embd:
        if name not in names:
            fail(f"missing tensor {name}")
    tokens = meta.get("tokenizer.ggml.tokens")
    if tokens is not None:
        vocab = meta.get(f"{arch}.vocab_size")
        for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            if len(meta.get(key, [])) != len(tokens):
                fail(f"{key} has {len(meta.get(key, []))} entries for {len(tokens)} tokens")
        if len(tokens) != vocab:
            fail(f"{len(tokens)} tokens for vocab_size {vocab}")


HF_BLOCK = {
    "attn_norm": "pre_self_attn_layernorm", "post_attention_norm": "post_self_attn_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "cross_attn_norm": "pre_cross_attn_layernorm",
    "post_cross_attn_norm": "post_cross_attn_layernorm", "cross_attn_q": "cross_attn.q_proj",
    "cross_attn_k": "cross_attn.k_proj", "cross_attn_v": "cross_attn.v_proj",
    "cross_attn_output": "cross_attn.o_proj", "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
STACK = {"enc": "encoder", "dec": "decoder"}


def load_safetensors(hf_dir):
    """Every tensor of a checkpoint directory as float32 numpy arrays (numpy only)."""
    out = {}
    for f in sorted(os.listdir(hf_dir)):
        if not f.endswith(".safetensors"):
            continue
        raw = np.fromfile(os.path.join(hf_dir, f), dtype=np.uint8)
        (n,) = struct.unpack_from("<Q", raw, 0)
        header = json.loads(bytes(raw[8:8 + n]))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            s, e = info["data_offsets"]
            b = raw[8 + n + s:8 + n + e]
            if info["dtype"] == "BF16":
                x = (b.view("<u2").astype(np.uint32) << 16).view(np.float32)
            elif info["dtype"] == "F16":
                x = b.view("<f2").astype(np.float32)
            elif info["dtype"] == "F32":
                x = b.view("<f4")
            else:
                continue
            out[name] = x.reshape(info["shape"])
    return out


def hf_name(name, src):
    if name == "token_embd.weight":
        k = "model.encoder.embed_tokens.weight"
    elif name == "token_embd_eoi.weight":
        k = "model.encoder.embed_tokens.eoi_embedding"
    elif name == "output.weight":
        k = "lm_head.out_proj.weight"
    elif name.endswith("token_embd.weight"):
        k = f"model.{STACK[name[:3]]}.embed_tokens.weight"
    elif name.endswith("output_norm.weight"):
        k = f"model.{STACK[name[:3]]}.norm.weight"
    else:
        stack, _, i, kind, _ = name.split(".")
        k = f"model.{STACK[stack]}.layers.{i}.{HF_BLOCK[kind]}.weight"
    if k not in src:
        k = k.replace("model.encoder.", "model.encoder.text_model.", 1)
    return k


def compare(reader, src, fail):
    for t in reader.tensors:
        try:
            x = src[hf_name(t.name, src)]
        except (KeyError, ValueError):
            fail(f"tensor {t.name}: no checkpoint tensor maps to it")
            continue
        qt = gguf.GGMLQuantizationType(int(t.tensor_type))
        expected = x if qt == gguf.GGMLQuantizationType.F32 else gguf.quants.quantize(x, qt)
        if expected.tobytes() != np.asarray(t.data).tobytes():
            fail(f"tensor {t.name}: differs from gguf-py's {qt.name} conversion of the checkpoint")


def check(path, src=None):
    errors = []

    def fail(msg):
        errors.append(msg)

    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # noqa: BLE001 - any failure to open is the finding
        return [f"gguf-py cannot open it: {type(e).__name__}: {e}"]
    data = reader.data
    try:
        header = Header(data)
    except Exception as e:  # noqa: BLE001
        return [f"header: {e}"]

    # Metadata: every value readable through gguf-py, equal to the independent parse.
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            value = field.contents()
        except Exception as e:  # noqa: BLE001
            fail(f"metadata {key}: unreadable by gguf-py: {e}")
            continue
        mine = header.meta.get(key)
        if isinstance(mine, float) or (isinstance(mine, list) and mine and isinstance(mine[0], float)):
            same = struct.pack(f"<{len(mine) if isinstance(mine, list) else 1}f",
                               *(mine if isinstance(mine, list) else [mine])) == \
                struct.pack(f"<{len(value) if isinstance(value, list) else 1}f",
                            *(value if isinstance(value, list) else [value]))
        else:
            same = mine == value
        if not same:
            fail(f"metadata {key}: gguf-py reads {str(value)[:80]!r}, the header has {str(mine)[:80]!r}")
    if set(header.meta) != {k for k in reader.fields if not k.startswith("GGUF.")}:
        fail("metadata keys differ between gguf-py and the header")

    # Tensors: name, type, shape, offset, size.
    if len(reader.tensors) != len(header.tensors):
        fail(f"gguf-py sees {len(reader.tensors)} tensors, the header lists {len(header.tensors)}")
    for t, (name, dims, ttype, offset) in zip(reader.tensors, header.tensors):
        if t.name != name:
            fail(f"tensor {name}: gguf-py names it {t.name}")
            continue
        if int(t.tensor_type) != ttype:
            fail(f"tensor {name}: gguf-py type {t.tensor_type}, header type {ttype}")
        if [int(d) for d in t.shape] != dims:
            fail(f"tensor {name}: gguf-py shape {list(t.shape)}, header shape {dims}")
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
        n = 1
        for d in dims:
            n *= d
        if dims[0] % block:
            fail(f"tensor {name}: row of {dims[0]} is not a whole number of {block}-blocks")
        size = n // block * type_size
        if int(t.n_bytes) != size:
            fail(f"tensor {name}: gguf-py says {t.n_bytes} bytes, type and shape need {size}")
        start = header.data_start + offset
        if start % header.alignment:
            fail(f"tensor {name}: data at {start} is not {header.alignment}-byte aligned")
        if int(t.data_offset) != start:
            fail(f"tensor {name}: gguf-py data offset {t.data_offset}, header {start}")
        if start + size > len(data):
            fail(f"tensor {name}: data runs past the end of the file")
        if t.data.nbytes != size:
            fail(f"tensor {name}: gguf-py data view has {t.data.nbytes} bytes, expected {size}")

    check_t5g(header.meta, header.tensors, fail)
    if src is not None:
        compare(reader, src, fail)
    if not errors:
        arch = header.meta.get("general.architecture", "?")
        print(f"ok {path}: {arch}, {len(header.tensors)} tensors, {len(header.meta)} metadata keys")
    return errors


def main():
    args = sys.argv[1:]
    src = None
    if args[:1] == ["--against"] and len(args) >= 2:
        src = load_safetensors(args[1])
        args = args[2:]
    if not args:
        print("usage: check_gguf_py.py [--against HF_DIR] FILE.gguf [FILE.gguf ...]", file=sys.stderr)
        return 2
    bad = 0
    for path in args:
        errors = check(path, src)
        for e in errors[:20]:
            print(f"error: {path}: {e}", file=sys.stderr)
        if len(errors) > 20:
            print(f"error: {path}: ... {len(errors) - 20} more", file=sys.stderr)
        bad += bool(errors)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
