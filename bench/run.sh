#!/usr/bin/env bash
# bench/run.sh [NAME...] - runs the benchmarks (`make bench`): tool_roundtrip, container_start,
# egress, egress_tls, webhook, cold_start, sessions, or the named ones, one after the other, and writes every
# result row into one markdown table, $BUILD/bench/results.md (or $BENCH_OUT/results.md), headed
# by the machine, its load and the commit. Each figure sits next to its anchor measured in the
# same run, with the ratio runcell / anchor, the target and whether it was met. A missed target
# does not fail the run; a benchmark that breaks does (exit 1). Never part of `make test`.
#
# A run of every benchmark (no NAME given) also puts the table into docs/BENCHMARKS.md, between
# the lines "<!-- bench:results:begin -->" and "<!-- bench:results:end -->" (appended when they
# are missing), so the document always shows the last full run; BENCH_NO_DOC=1 leaves it alone.
#
# Environment: BUILD (default build), BENCH_OUT (default $BUILD/bench), BENCH_SCALE (default 1;
# larger = more samples, longer), BENCH_QUICK=1 (fewer sessions in cold_start, webhook and
# sessions: minutes instead of ~25), BENCH_KEEP=1 keeps each benchmark's scratch dir
# (bench/lib.sh), BENCH_NO_DOC=1.
set -u
cd "$(dirname "$0")/.." || exit 1

BUILD=${BUILD:-build}
OUT=${BENCH_OUT:-$BUILD/bench}
ALL=(tool_roundtrip container_start egress egress_tls webhook cold_start sessions)
DOC=docs/BENCHMARKS.md
export BUILD BENCH_OUT=$OUT

names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
for n in "${names[@]}"; do
    [ -x "bench/$n.sh" ] || {
        echo "bench/run.sh: no benchmark '$n' (have: ${ALL[*]})" >&2
        exit 2
    }
done

# update_doc RESULTS DOC: RESULTS (without its title) between the markers in DOC.
update_doc() {
    local begin='<!-- bench:results:begin -->' end='<!-- bench:results:end -->' tmp=$2.tmp.$$
    if ! grep -qF "$begin" "$2" || ! grep -qF "$end" "$2"; then
        # shellcheck disable=SC2016 # backquotes are markdown
        printf '\n## Last full run of `make bench`\n\n%s\n%s\n' "$begin" "$end" >>"$2"
    fi
    awk -v b="$begin" -v e="$end" -v res="$1" '
        $0 == b { print; while ((getline l < res) > 0) if (l !~ /^# /) print l; skip = 1; next }
        $0 == e { skip = 0 }
        !skip { print }' "$2" >"$tmp" && mv "$tmp" "$2"
}

mkdir -p "$OUT"
BN_NAME=run
. bench/lib.sh
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
status=0
run_t0=$SECONDS
rows=()
for n in "${names[@]}"; do
    echo "## $n" >&2
    t0=$SECONDS
    if ! "bench/$n.sh" >"$OUT/$n.out"; then
        echo "bench/run.sh: $n failed (see above; its table is in $OUT/$n.out)" >&2
        status=1
    fi
    echo "# $n: $((SECONDS - t0)) s" >&2
    rows+=("$OUT/$n.tsv")
done

{
    echo "# runcell benchmarks"
    echo
    echo "- run: $started, commit $(git describe --always --dirty 2>/dev/null || echo unknown), BENCH_SCALE=$BENCH_SCALE"
    echo "- machine: $(bn_machine)"
    echo "- load average before the run: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- mode: ${BENCH_QUICK:+BENCH_QUICK=1 (fewer sessions), }${BENCH_RAISE_KEYS:+BENCH_RAISE_KEYS=1, }total $((SECONDS - run_t0)) s"
    echo "- ratio = runcell / anchor, both measured in this run (below 1: runcell is faster or smaller)"
    echo
    bn_table "${rows[@]}"
} >"$OUT/results.md"
rm -f "$BN_ROWS"
echo >&2
cat "$OUT/results.md"
echo >&2
echo "written to $OUT/results.md" >&2
if [ $# -eq 0 ] && [ -z "${BENCH_NO_DOC:-}" ] && [ -f "$DOC" ]; then
    update_doc "$OUT/results.md" "$DOC" && echo "and into $DOC" >&2
fi
exit $status
