#!/usr/bin/env bash
# Runs cargo-fuzz targets, one after another, each for a fixed time.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS defaults to 60; TARGETs default to every fuzz/fuzz_targets/*.rs. Each run starts from
# the committed seeds (fuzz/seeds/TARGET, read only) and the local corpus (fuzz/corpus/TARGET,
# gitignored, grows across runs), uses fuzz/TARGET.dict when it exists, and is niced (NICE,
# default 10) with one libFuzzer job, so it can share a machine. Extra libFuzzer flags can be
# given in FUZZ_FLAGS. Crashers land in fuzz/artifacts/TARGET/; the script exits 1 if any
# target failed. Needs the nightly toolchain and `cargo install cargo-fuzz`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$root"/fuzz/fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

failed=()
for t in "${targets[@]}"; do
    corpus="$root/fuzz/corpus/$t"
    seeds="$root/fuzz/seeds/$t"
    mkdir -p "$corpus" "$seeds"
    flags=(-max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
    [ -f "$root/fuzz/$t.dict" ] && flags+=(-dict="$root/fuzz/$t.dict")
    echo "== fuzzing $t for ${secs}s"
    # -a: debug assertions, so integer overflow panics instead of wrapping silently.
    if ! (cd "$root" && nice -n "${NICE:-10}" cargo +nightly fuzz run -a "$t" "$corpus" "$seeds" \
        -- "${flags[@]}" ${FUZZ_FLAGS:-}); then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz targets with findings: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
