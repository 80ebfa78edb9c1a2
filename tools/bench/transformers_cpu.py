#!/usr/bin/env python3
"""Hugging Face transformers bfloat16 CPU baseline at T5Gemma 2b-2b shapes (random weights).

Builds `T5GemmaForConditionalGeneration` with the released t5gemma-2b-2b dimensions directly in
bfloat16 (about 11 GB), then with `torch.set_num_threads(--threads)`:

- encoder: the best of --repeat passes of `model.get_encoder()` over --tokens ids (one warm-up);
- decoder: `generate` greedy with the encoder output given, forced to exactly N new tokens
  (min_new_tokens = max_new_tokens = N). The first step (which also projects cross-attention
  keys/values) is excluded as in `t5g bench`: decode tok/s = (N - 1) / (T(N) - T(1)).

--layers shrinks both stacks for a quick functional run. Prints one JSON object.
Needs: pip install torch transformers.
"""

import argparse
import json
import resource
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--layers", type=int, default=26)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = p.parse_args()

    import torch
    import transformers
    from transformers import T5GemmaConfig, T5GemmaForConditionalGeneration

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    stack = dict(
        vocab_size=256000,
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        query_pre_attn_scalar=256,
        sliding_window=4096,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(args.layers)],
    )
    cfg = T5GemmaConfig(encoder=dict(stack), decoder=dict(stack), vocab_size=256000)
    t = time.time()
    # Allocate on the meta device and fill with uniform noise: transformers' own initializer
    # takes minutes for 5.6B parameters, and the values do not matter for timing.
    with torch.device("meta"):
        model = T5GemmaForConditionalGeneration._from_config(cfg, dtype=dtype)
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1:
                param.uniform_(-0.1, 0.1)  # norm gains, used as (1 + w)
            else:
                param.uniform_(-0.035, 0.035)  # std 0.02
        model.tie_weights()
    build_s = time.time() - t
    n_params = sum(x.numel() for x in model.parameters())

    ids = torch.tensor([[3 + (i * 7919) % 255990 for i in range(args.tokens)]])
    mask = torch.ones_like(ids)
    encoder = model.get_encoder()
    with torch.inference_mode():
        encoder(input_ids=ids, attention_mask=mask)  # warm-up
        enc_times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            enc = encoder(input_ids=ids, attention_mask=mask)
            enc_times.append(time.perf_counter() - t)

        def gen(n):
            t = time.perf_counter()
            out = model.generate(
                encoder_outputs=enc,
                attention_mask=mask,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                num_beams=1,
            )
            dt = time.perf_counter() - t
            assert out.shape[1] >= n, out.shape
            return dt

        gen(2)  # warm-up
        t1 = min(gen(1) for _ in range(args.repeat))
        tn = min(gen(args.new_tokens) for _ in range(args.repeat))
    enc_s = min(enc_times)
    decode_s = tn - t1
    print(
        json.dumps(
            {
                "peer": "transformers",
                "transformers_version": transformers.__version__,
                "torch_version": torch.__version__,
                "shapes": f"t5gemma-2b-2b ({args.layers} layers per stack), random weights",
                "dtype": args.dtype,
                "params": n_params,
                "threads": args.threads,
                "input_tokens": args.tokens,
                "new_tokens": args.new_tokens,
                "build_s": build_s,
                "encode_s": enc_s,
                "encode_s_all": enc_times,
                "encode_tokens_per_s": args.tokens / enc_s,
                "generate_1_s": t1,
                "generate_n_s": tn,
                "decode_s": decode_s,
                "decode_tokens_per_s": (args.new_tokens - 1) / decode_s,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
