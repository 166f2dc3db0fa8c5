#!/usr/bin/env bash
# A short run of every fuzz target (FUZZ_SECONDS each, 15 by default), as the last step of
# `cargo xtask test`. Exits non-zero when a target does not build or finds a crash (the
# input is kept in fuzz/artifacts/<target>/).
#
# cargo-fuzz asks rustc for unstable flags (-Zsanitizer=address). The machines we test on
# have one stable toolchain and cannot fetch nightly, so the run sets RUSTC_BOOTSTRAP=1,
# which lets that stable compiler accept them. It only applies to this separate workspace
# (fuzz/ and lodge-core), never to the product build. With a nightly toolchain,
# FUZZ_TOOLCHAIN=nightly uses it instead.
#
#   fuzz/smoke.sh                 # every target
#   fuzz/smoke.sh sse config      # some
#   FUZZ_SECONDS=180 fuzz/smoke.sh routes
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
seconds="${FUZZ_SECONDS:-15}"
all_targets=(routes sse storage_keys config response)
targets=("${@:-${all_targets[@]}}")

if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
    fuzz=(cargo "+$FUZZ_TOOLCHAIN" fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
if ! "${fuzz[@]}" --version >/dev/null 2>&1; then
    echo "fuzz smoke: FAILED: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
    exit 1
fi

cd "$here"
if ! build_log="$("${fuzz[@]}" build 2>&1)"; then
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
    # One process (one core). New inputs go to the first corpus folder, fuzz/corpus/
    # (not versioned); the seeds in fuzz/seeds/ are only read.
    corpora=("corpus/$target")
    [[ -d "seeds/$target" ]] && corpora+=("seeds/$target")
    if "${fuzz[@]}" run "$target" "${corpora[@]}" -- "${args[@]}" >"$log" 2>&1; then
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
