#!/usr/bin/env bash
# tests/check/fuzz_quick.sh - every libFuzzer target runs briefly without findings (the full
# 60 s run is `make fuzz-smoke`). Skips when clang's libFuzzer runtime is not installed.
cd "$(dirname "$0")/../.."
. tests/lib.sh
BUILD=${BUILD:-build}
secs=${FUZZ_QUICK_SECONDS:-5}
shopt -s nullglob
targets=("$BUILD"/fuzz/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
    t_skip fuzz_targets "no fuzz targets in $BUILD/fuzz (make test and make fuzz build them with clang)"
fi
for fz in "${targets[@]}"; do
    name=$(basename "$fz")
    if out=$(scripts/fuzz-smoke.sh "$secs" "$fz" 2>&1); then t_ok "$name"; else t_fail "$name" "$out"; fi
done
t_done
