#!/usr/bin/env python3
"""Prints the comparison table of a `run_all.sh` results directory against the issue's targets.

Usage: compare.py RESULTS_DIR [--markdown]
Reads machine.json, t5g_270m.json, t5g_270m_1t.json, t5g_2b.json, ct2.json, llama.json, hf.json
(whichever exist) and prints one row per target: t5g's figure, its ceiling or peer, the ratio,
the target, and whether it is met.
"""

import json
import os
import statistics
import sys


def load(d, name):
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        text = f.read().strip()
    return json.loads(text) if text else None


def main():
    d = sys.argv[1]
    md = "--markdown" in sys.argv
    m = load(d, "machine") or {}
    r270 = load(d, "t5g_270m")
    r270_1 = load(d, "t5g_270m_1t")
    r2b = load(d, "t5g_2b")
    ct2 = load(d, "ct2")
    llama = load(d, "llama")
    hf = load(d, "hf")
    rows = []

    def row(what, ours, ref, ratio, target, unit=""):
        met = "n/a" if ratio is None else ("yes" if ratio >= target else "NO")
        rows.append(
            (
                what,
                "n/a" if ours is None else f"{ours:,.1f}{unit}",
                "n/a" if ref is None else ref,
                "n/a" if ratio is None else f"{ratio:.2f}",
                f">= {target}",
                met,
            )
        )

    def get(r, k):
        return None if r is None else r.get(k)

    # t5gemma2-270m q4_0
    if r270:
        frac = r270.get("encoder_int8_peak_fraction")
        peak = r270.get("int8_peak_gops")
        row(
            "270m encoder linear GOPS / int8 peak (whole pass)",
            r270["encoder_linear_gops"],
            None if peak is None else f"peak {peak:,.0f} GOPS",
            frac,
            0.4,
        )
        if "encoder_linear_only_gops" in r270:
            row(
                "270m encoder matmuls alone GOPS / int8 peak",
                r270["encoder_linear_only_gops"],
                None if peak is None else f"peak {peak:,.0f} GOPS",
                r270.get("encoder_linear_only_peak_fraction"),
                0.4,
            )
        c = get(ct2, "encode_tokens_per_s")
        row(
            "270m encoder tok/s vs CTranslate2 int8",
            r270["encode_tokens_per_s"],
            None if c is None else f"ct2 {c:,.1f} tok/s",
            None if c is None else r270["encode_tokens_per_s"] / c,
            2.0,
        )
        inter = get(ct2, "interleaved")
        if inter:
            rs = inter["rounds"]
            row(
                f"  same, interleaved: median of {len(rs)} rounds' ratios (min-max)",
                statistics.median(r["t5g_tokens_per_s"] for r in rs),
                f"ct2 {statistics.median(r['ct2_tokens_per_s'] for r in rs):,.1f} tok/s; "
                f"ratios {inter['min_ratio']:.2f}-{inter['max_ratio']:.2f}",
                inter["median_ratio"],
                2.0,
            )
        bw = r270.get("read_bandwidth_bytes_per_s")
        bound = None if bw is None else bw / r270["decode_weight_bytes_per_token"]
        row(
            "270m decode tok/s / bandwidth bound",
            r270["decode_tokens_per_s"],
            None if bw is None else f"bound {bound:,.1f} tok/s ({bw / 1e9:.1f} GB/s)",
            r270.get("decode_bandwidth_fraction"),
            0.6,
        )
        g = get(llama, "generate_tokens_per_s")
        row(
            "270m decode tok/s vs llama.cpp Gemma 3 270M",
            r270["decode_tokens_per_s"],
            None if g is None else f"llama.cpp {g:,.1f} tok/s",
            None if g is None else r270["decode_tokens_per_s"] / g,
            1.2,
        )
        if r270_1:
            row(
                "270m encoder speedup 1 -> 2 threads",
                r270["encode_tokens_per_s"],
                f"1 thread {r270_1['encode_tokens_per_s']:,.1f} tok/s",
                r270["encode_tokens_per_s"] / r270_1["encode_tokens_per_s"],
                1.8,
            )
    if r2b:
        e = get(hf, "encode_tokens_per_s")
        row(
            "2b-2b encoder tok/s vs transformers bf16",
            r2b["encode_tokens_per_s"],
            None if e is None else f"hf {e:,.2f} tok/s",
            None if e is None else r2b["encode_tokens_per_s"] / e,
            2.0,
        )
        g = get(hf, "decode_tokens_per_s")
        row(
            "2b-2b decode tok/s vs transformers bf16",
            r2b["decode_tokens_per_s"],
            None if g is None else f"hf {g:,.2f} tok/s",
            None if g is None else r2b["decode_tokens_per_s"] / g,
            2.5,
        )
        rss = r2b.get("peak_rss_bytes")
        if rss:
            limit = 1.15 * r2b["file_bytes"] + r2b["decoder_cache_bytes"]
            row(
                "2b-2b peak RSS within 1.15 x file + caches",
                rss / 2**30,
                f"limit {limit / 2**30:.2f} GiB (file {r2b['file_bytes'] / 2**30:.2f} GiB)",
                limit / rss,
                1.0,
                " GiB",
            )
        bw = r2b.get("decode_bandwidth_fraction")
        if bw is not None:
            row("2b-2b decode / bandwidth bound", r2b["decode_tokens_per_s"], "", bw, 0.6)

    header = ("figure", "t5g", "ceiling / peer", "ratio", "target", "met")
    print(
        f"machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, "
        f"{(m.get('ram_bytes') or 0) / 2**30:.1f} GiB; {m.get('date', '?')}; "
        f"load {m.get('load_before', '?')} -> {m.get('load_after', '?')}; git {m.get('git', '?')}"
    )
    for r in (r270, r2b):
        if r:
            print(
                f"t5g {r.get('preset')} {r['type']}: kernel {r.get('kernel')}, threads {r['threads']}, "
                f"encode {r['encode_tokens_per_s']:.1f} tok/s, decode {r['decode_tokens_per_s']:.2f} tok/s, "
                f"file {r['file_bytes'] / 2**30:.2f} GiB, peak RSS {(r.get('peak_rss_bytes') or 0) / 2**30:.2f} GiB"
            )
    if md:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(str(x[i])) for x in [header] + rows) for i in range(len(header))]
        for r in [header] + rows:
            print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


if __name__ == "__main__":
    main()
