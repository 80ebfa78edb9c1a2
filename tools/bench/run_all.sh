#!/usr/bin/env bash
# Runs `t5g bench` (release build) and its peers at the settings of the "Fast on every CPU"
# issue (512 input tokens, 64 new tokens, 2 threads) and prints one comparison table.
#
#   tools/bench/run_all.sh [OUT_DIR]        (default: $TMPDIR/t5g-bench-results)
#
# Environment: PYTHON (default /work/venv/bin/python, else python3), THREADS (2), INPUT (512),
# NEW (64), RUNS (t5g repetitions, best of; 2), RUNS_2B (for 2b-2b; 1), ROUNDS (interleaved
# CTranslate2 / t5g encoder rounds; 5), LLAMA_PYTHONPATH (a
# directory holding another llama_cpp build, e.g. one built with GGML_NATIVE=ON via
# `pip install --target DIR`), SKIP="ct2 llama hf t5g2b t1" to leave parts out.
# Every part writes OUT_DIR/NAME.json; compare.py reads whatever is there.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-${TMPDIR:-/tmp}/t5g-bench-results}
PYTHON=${PYTHON:-$( [ -x /work/venv/bin/python ] && echo /work/venv/bin/python || echo python3 )}
THREADS=${THREADS:-2}
INPUT=${INPUT:-512}
NEW=${NEW:-64}
RUNS=${RUNS:-2}
RUNS_2B=${RUNS_2B:-1}
SKIP=${SKIP:-}
mkdir -p "$OUT"
skip() { [[ " $SKIP " == *" $1 "* ]]; }
log() { echo "[$(date +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] $*" >&2; }

{
    echo "{\"date\": \"$(date -Is)\","
    echo " \"cpu\": \"$(lscpu | sed -n 's/^Model name: *//p' | head -1)\","
    echo " \"cpus\": $(nproc),"
    echo " \"ram_bytes\": $(free -b | awk '/^Mem:/ {print $2}'),"
    echo " \"load_before\": \"$(cut -d' ' -f1-3 /proc/loadavg)\","
    echo " \"git\": \"$(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty)\"}"
} > "$OUT/machine.json"

cargo build --release --bin t5g >&2
# The build leaves hundreds of MB of dirty pages; their writeback took a core from the first
# two-thread timing below (270m encoder 1,700-1,870 tok/s in the script, 2,150-2,260 by hand).
sync
T5G=target/release/t5g
bench() { # NAME RUNS ARGS...
    local name=$1 runs=$2; shift 2
    log "t5g bench $* --runs $runs"
    "$T5G" bench "$@" --input-tokens "$INPUT" --new-tokens "$NEW" --runs "$runs" --json > "$OUT/$name.json"
}
# A VM idle for a while runs its first seconds of work slowly (the 270m encoder at ~2,450
# instead of ~2,800 tok/s, 2026-12-01): a few untimed passes first.
log "warm-up (untimed)"
"$T5G" bench --synthetic t5gemma2-270m-270m --type q4_0 -t "$THREADS" --input-tokens "$INPUT" \
    --new-tokens 2 --runs 8 --no-ceilings > /dev/null
bench t5g_270m "$RUNS" --synthetic t5gemma2-270m-270m --type q4_0 -t "$THREADS"
skip t1 || bench t5g_270m_1t "$RUNS" --synthetic t5gemma2-270m-270m --type q4_0 -t 1 --no-ceilings
skip t5g2b || bench t5g_2b "$RUNS_2B" --synthetic t5gemma-2b-2b --type q4_0 -t "$THREADS"

if ! skip ct2; then
    log "ctranslate2_encoder.py"
    # Then ROUNDS (5) rounds alternating with t5g, seconds apart (see the script).
    "$PYTHON" tools/bench/ctranslate2_encoder.py --tokens "$INPUT" --threads "$THREADS" \
        --interleave-with "$T5G" --rounds "${ROUNDS:-5}" > "$OUT/ct2.json"
fi
if ! skip llama; then
    log "llamacpp_generate.py"
    PYTHONPATH="${LLAMA_PYTHONPATH:-}${PYTHONPATH:+:$PYTHONPATH}" \
        "$PYTHON" tools/bench/llamacpp_generate.py --prompt-tokens "$INPUT" --new-tokens "$NEW" --threads "$THREADS" > "$OUT/llama.json"
fi
if ! skip hf; then
    log "transformers_cpu.py"
    "$PYTHON" tools/bench/transformers_cpu.py --tokens "$INPUT" --new-tokens "$NEW" --threads "$THREADS" > "$OUT/hf.json"
fi
sed -i "s/}\$/, \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}/" "$OUT/machine.json"
"$PYTHON" tools/bench/compare.py "$OUT"
