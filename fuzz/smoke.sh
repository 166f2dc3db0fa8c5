#!/usr/bin/env bash
# A short run of every fuzz target (FUZZ_SECONDS each, 10 by default), for the test
# suite. Needs the nightly toolchain and cargo-fuzz; without them it says why and exits 0.
# Exits non-zero when a target finds a crash (the input is kept in fuzz/artifacts/).
# The first run builds lodge and wasmtime with sanitizers: expect many minutes once.
#
#   fuzz/smoke.sh                 # every target
#   fuzz/smoke.sh sse config      # some
#   FUZZ_SECONDS=180 fuzz/smoke.sh routes
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
seconds="${FUZZ_SECONDS:-10}"
all_targets=(routes sse storage_keys config)
targets=("${@:-${all_targets[@]}}")

skip() {
    echo "fuzz smoke: skipped: $*"
    exit 0
}
command -v cargo >/dev/null 2>&1 || skip "cargo is not on PATH"
cargo +nightly --version >/dev/null 2>&1 ||
    skip "no nightly toolchain (rustup toolchain install nightly)"
cargo +nightly fuzz --version >/dev/null 2>&1 ||
    skip "cargo-fuzz is not installed (cargo install cargo-fuzz)"

cd "$here"
if ! build_log="$(cargo +nightly fuzz build 2>&1)"; then
    echo "$build_log" | tail -n 40
    echo "fuzz smoke: FAILED: the fuzz targets do not build"
    exit 1
fi
failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    args=(-max_total_time="$seconds" -print_final_stats=1)
    [[ -f "dict/$target.dict" ]] && args+=(-dict="dict/$target.dict")
    [[ "$target" == config ]] && args+=(-max_len=8192)
    echo "fuzz smoke: $target for ${seconds}s"
    log="$(mktemp)"
    # One process (one core); the corpus grows in fuzz/corpus/ (not versioned), the seeds
    # in fuzz/seeds/ are read only.
    corpora=("corpus/$target")
    [[ -d "seeds/$target" ]] && corpora+=("seeds/$target")
    if cargo +nightly fuzz run "$target" "${corpora[@]}" -- "${args[@]}" >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$log" | sed "s/^/  /"
    else
        tail -n 40 "$log"
        failed+=("$target")
    fi
    rm -f "$log"
done
if ((${#failed[@]})); then
    echo "fuzz smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "fuzz smoke: ok (${targets[*]})"
