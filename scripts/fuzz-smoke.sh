#!/usr/bin/env bash
# scripts/fuzz-smoke.sh SECONDS FUZZER... - runs each libFuzzer target for SECONDS, seeded from
# tests/fuzz/corpus/<name>/ when present, with its working corpus in build/fuzz-corpus/<name>/.
# Exit 1 if any target reports a finding (crash, leak, timeout, sanitizer error).
set -u
secs=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
for fz in "$@"; do
    name=$(basename "$fz")
    work="$root/build/fuzz-corpus/$name"
    art="$root/build/fuzz-artifacts/$name/"
    mkdir -p "$work" "$art"
    seeds=()
    [ -d "$root/tests/fuzz/corpus/$name" ] && seeds+=("$root/tests/fuzz/corpus/$name")
    log="$root/build/fuzz-artifacts/$name.log"
    if "$fz" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
        -artifact_prefix="$art" "$work" "${seeds[@]}" >"$log" 2>&1; then
        echo "fuzz $name: ${secs}s, no findings ($(grep -c . "$log") log lines)"
    else
        echo "fuzz $name: FINDING, see $log and $art"
        tail -n 30 "$log"
        status=1
    fi
done
exit $status
