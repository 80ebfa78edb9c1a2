#!/usr/bin/env python3
"""CTranslate2 int8 encoder throughput at T5Gemma 2 270m-270m shapes (random weights).

CTranslate2 (>= 4.7) converts `T5Gemma2ForConditionalGeneration` through its own
`T5Gemma2Loader`. Its `Translator` has no encoder-only entry point, so this script:

1. builds a random-weight T5Gemma 2 model of the 270m-270m text shapes with transformers
   (a one-layer, 32-wide vision tower: the class requires one; text-only runs never touch it),
2. runs CTranslate2's own loader on it to get the full seq2seq spec (proving the model
   converts), then wraps that spec's *encoder* in a `TransformerEncoderModelSpec` and saves it
   quantized to int8: the very layers the translator would run, without the decoder,
3. times `ctranslate2.Encoder.forward_batch` on one sequence of --tokens ids with
   intra_threads=--threads, and reports the best of --repeat runs after one warm-up.

With --interleave-with T5G it then alternates, --rounds times, a best of --repeat CTranslate2
passes with `T5G bench` (the same shapes, q4_0, best of --repeat passes, a fresh process each
time), so that both engines are timed within seconds of each other: on a shared VM whose speed
drifts by ±15% over minutes, the ratio of two timings taken minutes apart measures the drift as
much as the engines. Reports each round's ratio, their median, and the best against the best.

With --translator it also saves the full model and times `translate_batch` with
max_decoding_length 1 and 2 (encoder + cross K/V + one or two decoder steps), whose difference
gives an estimate of one decoder step, as a cross-check of the encoder-only figure.

Prints one JSON object. Needs: pip install ctranslate2 transformers torch.
"""

import argparse
import json
import os
import tempfile
import time


def build_model(args):
    import torch
    from transformers import T5Gemma2Config, T5Gemma2ForConditionalGeneration

    torch.manual_seed(0)
    text = dict(
        vocab_size=args.vocab,
        hidden_size=640,
        intermediate_size=2048,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        query_pre_attn_scalar=256,
        sliding_window=512,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
        },
        layer_types=[
            "full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
            for i in range(args.layers)
        ],
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    cfg = T5Gemma2Config(
        encoder=dict(text_config=text, vision_config=vision, mm_tokens_per_image=4),
        decoder=dict(text),
    )
    model = T5Gemma2ForConditionalGeneration(cfg).eval()
    return model


class FakeTokenizer:
    """Just enough of a tokenizer for CTranslate2's loader: a vocabulary and special tokens."""

    def __init__(self, vocab):
        self.vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
        for i in range(4, vocab):
            self.vocab[f"t{i}"] = i
        self.bos_token, self.eos_token, self.unk_token = "<bos>", "<eos>", "<unk>"

    def get_vocab(self):
        return self.vocab


def encoder_times(encoder, tokens, repeat):
    """Seconds of each of `repeat` encoder passes over `tokens`."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        _ = encoder.forward_batch([tokens]).last_hidden_state
        times.append(time.perf_counter() - t)
    return times


def interleave(args, encoder, tokens):
    """Rounds of (CTranslate2 best of --repeat, t5g best of --repeat), adjacent in time."""
    import statistics
    import subprocess

    cmd = [
        args.interleave_with, "bench", "--synthetic", "t5gemma2-270m-270m", "--type", "q4_0",
        "-t", str(args.threads), "--input-tokens", str(args.tokens), "--new-tokens", "2",
        "--runs", str(args.repeat), "--no-ceilings", "--json",
    ]
    if args.layers != 18:
        cmd += ["--layers", str(args.layers)]
    rounds = []
    for _ in range(args.rounds):
        ct2 = args.tokens / min(encoder_times(encoder, tokens, args.repeat))
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        t5g = json.loads(out)["encode_tokens_per_s"]
        rounds.append({"ct2_tokens_per_s": ct2, "t5g_tokens_per_s": t5g, "ratio": t5g / ct2})
    ratios = [r["ratio"] for r in rounds]
    return {
        "command": " ".join(cmd),
        "rounds": rounds,
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "best_vs_best": max(r["t5g_tokens_per_s"] for r in rounds)
        / max(r["ct2_tokens_per_s"] for r in rounds),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--layers", type=int, default=18)
    p.add_argument("--vocab", type=int, default=262144)
    p.add_argument("--quantization", default="int8")
    p.add_argument("--dir", default=None, help="where to save the converted model (default: temp)")
    p.add_argument("--translator", action="store_true", help="also time translate_batch")
    p.add_argument("--interleave-with", metavar="T5G", help="a t5g binary to alternate with")
    p.add_argument("--rounds", type=int, default=5, help="rounds of --interleave-with")
    args = p.parse_args()

    import ctranslate2
    from ctranslate2.converters.transformers import T5Gemma2Loader
    from ctranslate2.specs import transformer_spec

    t0 = time.time()
    model = build_model(args)
    tok = FakeTokenizer(args.vocab)
    loader = T5Gemma2Loader()
    out_dir = args.dir or tempfile.mkdtemp(prefix="t5g-ct2-")

    class Conv(ctranslate2.converters.Converter):
        def __init__(self, make_spec):
            self.make_spec = make_spec

        def _load(self):
            return self.make_spec()

    def encoder_spec():
        # The loader consumes the model (it deletes converted submodules).
        full = loader(model, tok)  # the seq2seq spec CTranslate2 would translate with
        spec = transformer_spec.TransformerEncoderModelSpec(full.encoder)
        spec.register_vocabulary(list(tok.vocab))  # insertion order is id order
        spec.config.layer_norm_epsilon = full.config.layer_norm_epsilon
        return spec

    enc_dir = os.path.join(out_dir, "encoder")
    Conv(encoder_spec).convert(enc_dir, quantization=args.quantization, force=True)
    convert_s = time.time() - t0

    ids = [4 + (i * 7919) % (min(args.vocab, 256000) - 4) for i in range(args.tokens)]
    tokens = [f"t{i}" for i in ids]
    encoder = ctranslate2.Encoder(
        enc_dir, device="cpu", compute_type=args.quantization, inter_threads=1, intra_threads=args.threads
    )
    encoder.forward_batch([tokens])  # warm-up
    times = encoder_times(encoder, tokens, args.repeat)
    best = min(times)
    result = {
        "peer": "ctranslate2",
        "ctranslate2_version": ctranslate2.__version__,
        "shapes": f"t5gemma2-270m-270m text ({args.layers} layers, vocab {args.vocab}), random weights",
        "api": "ctranslate2.Encoder.forward_batch on the T5Gemma2Loader encoder spec",
        "compute_type": args.quantization,
        "threads": args.threads,
        "input_tokens": args.tokens,
        "encode_s": best,
        "encode_s_all": times,
        "encode_tokens_per_s": args.tokens / best,
        "convert_s": convert_s,
    }

    if args.interleave_with:
        result["interleaved"] = interleave(args, encoder, tokens)

    if args.translator:
        full_dir = os.path.join(out_dir, "seq2seq")
        Conv(lambda: loader(build_model(args), tok)).convert(full_dir, quantization=args.quantization, force=True)
        tr = ctranslate2.Translator(
            full_dir, device="cpu", compute_type=args.quantization, inter_threads=1, intra_threads=args.threads
        )

        def run(n):
            kw = dict(beam_size=1, max_decoding_length=n, min_decoding_length=n, max_input_length=0)
            tr.translate_batch([tokens], **kw)
            best = float("inf")
            for _ in range(args.repeat):
                t = time.perf_counter()
                tr.translate_batch([tokens], **kw)
                best = min(best, time.perf_counter() - t)
            return best

        t1, t2 = run(1), run(2)
        result["translate_1_step_s"] = t1
        result["translate_2_steps_s"] = t2
        result["translator_encoder_estimate_s"] = t1 - (t2 - t1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
