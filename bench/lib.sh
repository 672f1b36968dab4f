# shellcheck shell=bash
# bench/lib.sh - helpers shared by the bench/*.sh benchmarks: statistics over a file of numbers,
# the result rows (figure, runcell, anchor, ratio, target, met) every benchmark prints and
# bench/run.sh gathers, a private runcell-emulator, and processes tracked by pid.
#
# Sourced, not run. A benchmark sets BN_NAME before sourcing it. Each benchmark measures its
# figure and its anchor in the same run and prints the ratio runcell / anchor, because absolute
# times on a shared machine drift; a ratio below 1 means runcell is faster or smaller.
#
# Environment: BUILD (default build), BENCH_OUT (default $BUILD/bench), BENCH_SCALE (default 1;
# 2, 5, ... multiply the number of samples and the run time), BENCH_KEEP=1 keeps the scratch dir.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

BUILD=${BUILD:-build}
BENCH_OUT=${BENCH_OUT:-$BUILD/bench}
BENCH_SCALE=${BENCH_SCALE:-1}
BN_NAME=${BN_NAME:-bench}
BN_ROWS=$BENCH_OUT/$BN_NAME.tsv
BN_BETA=managed-agents-2026-04-01
BN_PIDS=()
BN_CLEANUPS=()

case "$BENCH_SCALE" in
'' | *[!0-9]* | 0)
    echo "BENCH_SCALE must be a positive integer" >&2
    exit 2
    ;;
esac

mkdir -p "$BENCH_OUT"
: >"$BN_ROWS"
BN_DIR=$(mktemp -d "/tmp/rc-bench-$BN_NAME.XXXXXX")

# bn_track PID: kill PID (TERM, then KILL) when the benchmark exits.
bn_track() { BN_PIDS+=("$1"); }
# bn_at_exit CMD: run CMD (a string, eval'd) at exit, before the tracked processes are killed.
bn_at_exit() { BN_CLEANUPS+=("$1"); }

bn_stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# shellcheck disable=SC2317 # called from the EXIT trap
bn_cleanup() {
    local c p
    for c in "${BN_CLEANUPS[@]}"; do eval "$c" >/dev/null 2>&1; done
    for p in "${BN_PIDS[@]}"; do bn_stop_pid "$p"; done
    if [ -n "${BENCH_KEEP:-}" ]; then echo "# scratch kept in $BN_DIR" >&2; else rm -rf --one-file-system "$BN_DIR"; fi
}
trap bn_cleanup EXIT
trap 'exit 130' INT TERM

BN_T0=$(date +%s.%N)
# bn_log MESSAGE: a progress line on stderr, with the seconds since the benchmark started.
bn_log() { echo "# $BN_NAME [+$(awk -v a="$BN_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s]: $*" >&2; }

# ---- statistics -----------------------------------------------------------------------------

# bn_stats FILE: "N P50 P95 MEAN" of the numbers in FILE, one a line (nearest-rank
# percentiles; 3 decimals below 10, 1 above); "0 - - -" for an empty file.
bn_stats() {
    sort -g "$1" | awk '
        { v[NR] = $1; s += $1 }
        function pct(p,   k) { k = int(p * NR + 0.999999); if (k < 1) k = 1; if (k > NR) k = NR; return v[k] }
        function fmt(x) { return sprintf(x >= 10 || x <= -10 ? "%.1f" : "%.3f", x) }
        END {
            if (NR == 0) { print "0 - - -"; exit }
            print NR, fmt(pct(0.50)), fmt(pct(0.95)), fmt(s / NR)
        }'
}

# bn_field "N P50 P95 MEAN" INDEX (1-based).
bn_field() { echo "$1" | awk -v i="$2" '{ print $i }'; }

# bn_ratio A B: A / B with two decimals, "-" when either is missing or B is 0.
bn_ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) { print "-"; exit }
        printf "%.2f\n", a / b }'
}

# bn_le A B: true when both are numbers and A <= B.
bn_le() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "" || b == "" || a == "-" || b == "-") exit 1
        exit !(a + 0 <= b + 0) }'
}

# bn_ratio_le A B LIMIT: true when both are numbers, B > 0 and A / B <= LIMIT (unrounded).
bn_ratio_le() {
    awk -v a="$1" -v b="$2" -v l="$3" 'BEGIN {
        if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) exit 1
        exit !(a / b <= l + 0) }'
}

# ---- result rows ----------------------------------------------------------------------------

# bn_row FIGURE RUNCELL ANCHOR RATIO TARGET MET: one result row ("yes", "no", or "-" for a
# figure with no target). Printed at once, kept for the table.
bn_row() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BN_ROWS"
    printf '# %s: %s | runcell %s | anchor %s | ratio %s | target %s | met %s\n' "$BN_NAME" "$@" >&2
}

# bn_skip FIGURE REASON: a row for a figure that could not be measured here.
bn_skip() { bn_row "$1" "skipped: $2" - - - -; }

# bn_yesno CONDITION-COMMAND...: "yes" when it succeeds, "no" otherwise.
bn_yesno() { if "$@"; then echo yes; else echo no; fi; }

# bn_table [TSV...]: the rows as a markdown table (default: this benchmark's rows).
bn_table() {
    [ $# -gt 0 ] || set -- "$BN_ROWS"
    echo "| figure | runcell | anchor | ratio | target | met |"
    echo "|---|---|---|---|---|---|"
    cat "$@" | awk -F '\t' 'NF >= 6 { printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }'
}

# bn_machine: one line describing this machine and its load now.
bn_machine() {
    local cpus model load mem
    cpus=$(nproc 2>/dev/null)
    model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
    load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
    mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
    echo "$cpus cores (${model:-unknown CPU}), $mem RAM, $(uname -sr), load average $load"
}

# ---- processes ------------------------------------------------------------------------------

# bn_rss_kib PID: VmRSS of PID in KiB (empty when it is gone).
bn_rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# bn_pss_kib PID: proportional set size of PID in KiB (shared pages divided among sharers).
bn_pss_kib() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null; }

# bn_uss_kib PID: unique set size of PID in KiB (its private pages: what one more costs).
bn_uss_kib() { awk '/^Private_(Clean|Dirty):/ { s += $2 } END { if (NR) print s }' "/proc/$1/smaps_rollup" 2>/dev/null; }

# bn_descendants PID: PID and every descendant, one a line (one `ps` call).
bn_descendants() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END {
            q[1] = root; n = 1
            for (i = 1; i <= n; i++) {
                print q[i]
                m = split(kids[q[i]], k, " ")
                for (j = 1; j <= m; j++) q[++n] = k[j]
            }
        }'
}

# bn_tree_kib PID rss|pss|uss: the sum over PID and its descendants.
bn_tree_kib() {
    local total=0 p v
    for p in $(bn_descendants "$1"); do
        v=$("bn_$2_kib" "$p")
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# bn_unit VALUE UNIT: "VALUE UNIT", or "-" when VALUE is missing.
bn_unit() { if [ -z "$1" ] || [ "$1" = - ]; then echo -; else echo "$1 $2"; fi; }

# bn_mib KIB: KiB as MiB with one decimal.
bn_mib() { awk -v k="$1" 'BEGIN { if (k == "" || k == "-") print "-"; else printf "%.1f\n", k / 1024 }'; }

# ---- the emulator ---------------------------------------------------------------------------

# bn_emulator_start [ARGS...]: start runcell-emulator on a free port; sets BN_B (base URL) and
# writes the API key header to $BN_DIR/cred.api (never on a command line).
bn_emulator_start() {
    local emu=${EMULATOR:-$BUILD/runcell-emulator} key
    [ -x "$emu" ] || return 1
    "$emu" --listen 127.0.0.1:0 "$@" >"$BN_DIR/emu.out" 2>"$BN_DIR/emu.log" &
    BN_EMU_PID=$!
    bn_track "$BN_EMU_PID"
    for _ in $(seq 200); do
        grep -q '^ANTHROPIC_API_KEY=' "$BN_DIR/emu.out" 2>/dev/null && break
        kill -0 "$BN_EMU_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    BN_B=$(sed -n 's/^ANTHROPIC_BASE_URL=//p' "$BN_DIR/emu.out" | tr -d "'\"")
    key=$(sed -n 's/^ANTHROPIC_API_KEY=//p' "$BN_DIR/emu.out" | tr -d "'\"")
    [ -n "$BN_B" ] && [ -n "$key" ] || return 1
    BN_B=${BN_B%/}
    bn_cred api "x-api-key: $key"
}

# bn_cred NAME HEADER-LINE: a credential header file (printf is a builtin: no argv exposure).
bn_cred() { (umask 077 && printf '%s\n' "$2" >"$BN_DIR/cred.$1"); }

# bn_req CRED METHOD PATH [BODY]: BN_ST = HTTP status, body in $BN_DIR/body.
# shellcheck disable=SC2034 # BN_ST is read by the benchmarks
bn_req() {
    local cred=$1 method=$2 path=$3 body=${4-}
    local args=(-sS -m 30 -o "$BN_DIR/body" -w '%{http_code}' -X "$method" -H "@$BN_DIR/cred.$cred"
        -H "anthropic-beta: $BN_BETA" -H "anthropic-version: 2023-06-01")
    [ -n "$body" ] && args+=(-H "content-type: application/json" --data-binary "$body")
    BN_ST=$(curl "${args[@]}" "$BN_B$path" 2>"$BN_DIR/curl.err") || BN_ST=000
}
bn_jb() { jq -r "$1" "$BN_DIR/body" 2>/dev/null; }
