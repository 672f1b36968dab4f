#!/usr/bin/env bash
# bench/sessions.sh - idle sessions through the whole chain: memory per session and in total,
# and density (the largest number of concurrent sessions with no missed heartbeat). Needs root
# (skipped otherwise).
#
# Chain (bench/chain_lib.sh): emulator (lease TTL 10 s, so the runners beat every 5 s; 4 HTTP
# threads) -> nginx -> runcell-fcgi -> runcell-launcher (capacity 4096) -> one shim per session
# -> runc -> runcell-runner. Every session plays tests/scenarios/bash-echo (one bash call, then
# end_turn) and then idles: the runner keeps its lease (idle window 1 h), its persistent bash and
# its event stream, exactly like a session between two turns.
#
# Steps: sessions are added up to 50, 100, 200, 400, 800, ... (BENCH_QUICK: 10, 20, 40, ...)
# while the time budget lasts (BENCH_DENSITY_BUDGET_S, default 900; quick 240). At each step,
# once every session has passed its scenario, a 30 s window (quick 20 s) is watched in the
# emulator's request log: a step holds when every one of its work items beat inside the window
# with no gap above 7.5 s (1.5 x the 5 s interval, edges of the window included) and no
# heartbeat answered other than 200. Density = the largest step that held; the first step that
# fails (or a start that times out) ends the climb.
#
# Memory, at the step of BENCH_SESSIONS_MEM (default 200; quick 20) sessions: per session the
# median RSS and PSS (smaps_rollup) of the shim (which also runs the session's broker: the API
# channel and the egress proxy are threads of the shim, not a process), of the runner and of its
# persistent bash; and the host's MemAvailable drop from before the first session, divided by
# the sessions. Anchor: the official SDK worker (Node 22, @anthropic-ai/sdk) idle after the same
# scenario, measured in the same run.
#
# Targets (DESIGN.md section 5): shim + runner <= 5 MiB RSS per idle session and >= 10x below the
# SDK worker's process; >= 200 concurrent sessions with no heartbeat missed.
#
# Limit found here: every container's new session keyring counts against the runner host uid's
# key quota (kernel.keys.maxkeys, 200 by default, shared by every session): BENCH_RAISE_KEYS=1
# raises it for the run and restores it at exit.
#
# Environment: BUILD, BENCH_OUT, BENCH_KEEP (bench/lib.sh); BENCH_QUICK=1; BENCH_SESSIONS_MEM;
# BENCH_RAISE_KEYS=1;
# BENCH_DENSITY_BUDGET_S; BENCH_DENSITY_MAX (stop after this step, default 3200);
# BENCH_SKIP_SDK=1; CONFORMANCE_DEPS (Node 22 + SDK).
set -u
BN_NAME=sessions
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=bench/chain_lib.sh
. bench/chain_lib.sh

if [ -n "${BENCH_QUICK:-}" ]; then
    FIRST=10 MEM_N=${BENCH_SESSIONS_MEM:-20} BUDGET=${BENCH_DENSITY_BUDGET_S:-240} WINDOW=20
else
    FIRST=50 MEM_N=${BENCH_SESSIONS_MEM:-200} BUDGET=${BENCH_DENSITY_BUDGET_S:-900} WINDOW=30
fi
MAXN=${BENCH_DENSITY_MAX:-3200}
TTL=10
GAP_LIMIT=7.5
SCEN=bash-echo
LIVE=0
HELD=0

skip_all() {
    bn_skip "idle sessions (memory, density)" "$1"
    bn_table
    exit 0
}

mem_available_kib() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }

# add_sessions TARGET: start sessions until TARGET exist, in batches of 20 (each batch waits until
# its sessions have passed their scenario, so no session waits in a burst longer than the
# scenario's 60 s result time-out). Returns 1 on a time-out or a failed scenario.
add_sessions() {
    local target=$1 sid i
    while [ "$LIVE" -lt "$target" ]; do
        for ((i = 0; i < 20 && LIVE < target; i++)); do
            bc_session sid "$SCEN" || { bn_log "session create failed: $ST"; return 1; }
            echo "$sid" >>"$BN_DIR/sids"
            LIVE=$((LIVE + 1))
        done
        wait_passed_count "$LIVE" || return 1
    done
}

# wait_passed_count N: until N sessions (besides the SDK's) have passed.
wait_passed_count() {
    local want=$(($1 + SDK_RUNS)) passed=0 failed end=$((SECONDS + 90))
    while [ $SECONDS -lt $end ]; do
        api GET /_emulator/v1/stats
        passed=$(jb .scenarios.passed) failed=$(jb .scenarios.failed)
        [ "${failed:-0}" -gt 0 ] && { bn_log "$failed scenarios failed: $(failed_details)"; return 1; }
        [ "${passed:-0}" -ge "$want" ] && return 0
        sleep 0.5
    done
    bn_log "only $((passed - SDK_RUNS)) of $1 sessions passed in time"
    return 1
}

# failed_details: the first failed step of each failed session (at most 3).
failed_details() {
    local sid n=0
    while read -r sid; do
        api GET "/_emulator/v1/sessions/$sid/verdict"
        [ "$(jb .state)" = failed ] || continue
        printf '%s: %s; ' "$sid" "$(jq -c '[.steps[] | select(.passed == false)][0]' "$EM_DIR/body" | head -c 300)"
        n=$((n + 1))
        [ $n -ge 3 ] && break
    done <"$BN_DIR/sids"
}

# cpu_busy_pct FROM TO: share of non-idle CPU time between two /proc/stat "cpu" lines.
cpu_line() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }

# sessions_cpu_ticks: CPU ticks (user + system, reaped children included) of every shim and its
# descendants (broker threads, runc's leftovers, the runner, its bash).
sessions_cpu_ticks() {
    local shims
    shims=$(shim_pids | tr '\n' ' ')
    ps -e -o pid=,ppid= | awk -v roots="$shims" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) mine[r[i]] = 1 }
        { pp[$1] = $2 }
        END {
            do { more = 0; for (p in pp) if (!(p in mine) && (pp[p] in mine)) { mine[p] = 1; more = 1 } } while (more)
            for (p in mine) print "/proc/" p "/stat"
        }' | xargs -r cat 2>/dev/null | awk '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}

# watch_window N: a WINDOW-second watch of the heartbeats; sets W_SEEN W_MAXGAP W_BAD W_CPU
# W_BEATS W_OURS (% of one core used by the sessions themselves). Returns 0 when the step held.
watch_window() {
    local n=$1 seq0 ta tb c0 c1 o0 o1 f=$BN_DIR/window.json
    seq0=$(bc_last_seq)
    BC_LAST_SEQ=$seq0
    ta=$EPOCHREALTIME
    c0=$(cpu_line)
    o0=$(sessions_cpu_ticks)
    sleep "$WINDOW"
    o1=$(sessions_cpu_ticks)
    c1=$(cpu_line)
    tb=$EPOCHREALTIME
    W_OURS=$(awk -v a="$o0" -v b="$o1" -v hz="$(getconf CLK_TCK)" -v w="$(awk -v a="$ta" -v b="$tb" 'BEGIN { print b - a }')" \
        'BEGIN { printf "%.1f\n", 100 * (b - a) / hz / w }')
    bc_requests "$seq0" "$f" || return 1
    read -r W_SEEN W_MAXGAP W_BAD W_BEATS < <(jq -r --arg e "$ENV" --argjson ta "$ta" --argjson tb "$tb" "$BC_JQ_T"'
        [.[] | select(.path | test("^/v1/environments/\($e)/work/[^/]+/heartbeat$"))
            | {w: (.path | split("/")[5]), t: (.time | t), s: .status}] as $hb
        | ($hb | group_by(.w) | map([$ta] + (map(.t) | sort) + [$tb]
            | [range(1; length) as $i | .[$i] - .[$i - 1]] | max)) as $gaps
        | "\($hb | map(.w) | unique | length) \(($gaps | max // 0) * 1000 | round / 1000) \($hb | map(select(.s != 200)) | length) \($hb | length)"' "$f")
    W_CPU=$(awk -v a="$c0" -v b="$c1" 'BEGIN { split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2]; if (busy + idle > 0) printf "%.0f\n", 100 * busy / (busy + idle); else print "-" }')
    rm -f "$f"
    [ "${W_SEEN:-0}" -ge "$n" ] && [ "${W_BAD:-1}" = 0 ] && awk -v g="${W_MAXGAP:-99}" -v l="$GAP_LIMIT" 'BEGIN { exit !(g <= l) }'
}

# runner_pid SHIM: the container's runcell-runner below the shim (its first descendant by that name).
runner_pid() {
    local p
    for p in $(bn_descendants "$1"); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = runcell-runner ] && { echo "$p"; return; }
    done
}
# bash_pids RUNNER: the runner's descendants (its persistent bash).
bash_kib() {
    local p total=0 v
    for p in $(bn_descendants "$1" | tail -n +2); do
        v=$("bn_$2_kib" "$p")
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# measure_memory N: per-session medians into $BN_DIR/mem.*, MemAvailable drop.
measure_memory() {
    local n=$1 s r
    for s in $(shim_pids); do
        r=$(runner_pid "$s")
        [ -n "$r" ] || continue
        bn_rss_kib "$s" >>"$BN_DIR/mem.shim_rss"
        bn_pss_kib "$s" >>"$BN_DIR/mem.shim_pss"
        bn_rss_kib "$r" >>"$BN_DIR/mem.runner_rss"
        bn_pss_kib "$r" >>"$BN_DIR/mem.runner_pss"
        bash_kib "$r" rss >>"$BN_DIR/mem.bash_rss"
        bash_kib "$r" pss >>"$BN_DIR/mem.bash_pss"
        echo $(($(bn_rss_kib "$s") + $(bn_rss_kib "$r"))) >>"$BN_DIR/mem.pair_rss"
        echo $(($(bn_pss_kib "$s") + $(bn_pss_kib "$r"))) >>"$BN_DIR/mem.pair_pss"
    done
    MEM_AFTER=$(mem_available_kib)
    MEM_SESSIONS=$n
}

# sdk_idle: the SDK worker after the same scenario, idle; SDK_RSS, SDK_PSS (KiB), SDK_TREE_RSS.
sdk_idle() {
    local sid i
    bc_sdk_env SDK_ENV sdkkey
    bc_session sid "$SCEN" "$SDK_ENV" || return 1
    bc_sdk_start "$SDK_ENV" sdkkey "$BN_DIR/sdk/wd" "$BN_DIR/sdk/worker.log"
    SDK_RUNS=1
    for ((i = 0; i < 600; i++)); do
        api GET "/_emulator/v1/sessions/$sid/verdict"
        [ "$(jb .state)" = passed ] && break
        sleep 0.1
    done
    [ "$(jb .state)" = passed ] || { bn_log "sdk: $(tail -n 3 "$BN_DIR/sdk/worker.log")"; return 1; }
    sleep 3
    for i in 1 2 3; do
        bn_rss_kib "$BC_SDK_PID" >>"$BN_DIR/sdk.rss"
        bn_pss_kib "$BC_SDK_PID" >>"$BN_DIR/sdk.pss"
        bn_tree_kib "$BC_SDK_PID" rss >>"$BN_DIR/sdk.tree_rss"
        sleep 0.3
    done
    bn_stop_pid "$BC_SDK_PID"
}

med() { bn_field "$(bn_stats "$BN_DIR/$1" 2>/dev/null || echo "0 - - -")" 2 | cut -d. -f1; }

report_memory() {
    local pr pp sr sp rr rp br bp ar ap at delta per
    pr=$(med mem.pair_rss) pp=$(med mem.pair_pss) sr=$(med mem.shim_rss) sp=$(med mem.shim_pss)
    rr=$(med mem.runner_rss) rp=$(med mem.runner_pss) br=$(med mem.bash_rss) bp=$(med mem.bash_pss)
    ar=$(med sdk.rss) ap=$(med sdk.pss) at=$(med sdk.tree_rss)
    local n=${MEM_SESSIONS:-0} met=no
    [ "$pr" != - ] && [ "$ar" != - ] && bn_le "$(bn_mib "$pr")" 5 && bn_ratio_le "$pr" "$ar" 0.10 && met=yes
    bn_row "idle session RSS, shim + runner, median over $n idle sessions" "$(bn_unit "$(bn_mib "$pr")" MiB)" \
        "$(bn_unit "$(bn_mib "$ar")" MiB) (SDK worker process)" "$(bn_ratio "$pr" "$ar")" \
        "<= 5 MiB, ratio <= 0.10" "$met"
    bn_row "idle session PSS, shim + runner" "$(bn_unit "$(bn_mib "$pp")" MiB)" \
        "$(bn_unit "$(bn_mib "$ap")" MiB) (SDK, PSS)" "$(bn_ratio "$pp" "$ap")" - -
    bn_row "  shim (with its broker threads): RSS / PSS" "$(bn_mib "$sr") / $(bn_mib "$sp") MiB" - - - -
    bn_row "  runner: RSS / PSS" "$(bn_mib "$rr") / $(bn_mib "$rp") MiB" - - - -
    bn_row "  runner's persistent bash: RSS / PSS (not in the figure)" "$(bn_mib "$br") / $(bn_mib "$bp") MiB" \
        "$(bn_unit "$(bn_mib "$at")" MiB) (SDK tree RSS)" - - -
    if [ -n "${MEM_AFTER:-}" ] && [ "$n" -gt 0 ]; then
        delta=$((MEM_BEFORE - MEM_AFTER))
        per=$((delta / n))
        bn_row "host memory for $n idle sessions (MemAvailable drop)" "$(bn_unit "$(bn_mib "$delta")" MiB)" \
            "$(bn_unit "$(bn_mib "$((ar * n))")" MiB) ($n x SDK worker RSS)" "$(bn_ratio "$delta" "$((ar * n))")" - -
        bn_row "  per session (everything: shim, runner, bash, runc state, kernel)" "$(bn_unit "$(bn_mib "$per")" MiB)" \
            "$(bn_unit "$(bn_mib "$ar")" MiB) (SDK RSS)" "$(bn_ratio "$per" "$ar")" - -
    fi
}

# stop_all: SIGTERM to every shim, wait for all to go (each stops its container and its item).
stop_all() {
    local p t0=$SECONDS
    for p in $(shim_pids); do kill -TERM "$p" 2>/dev/null; done
    wait_for 300 no_shims
    bn_log "stopped every session in $((SECONDS - t0)) s"
}
# shellcheck disable=SC2317 # called through wait_for
no_shims() { [ -z "$(shim_pids)" ]; }

# ---- main -------------------------------------------------------------------------------------

why=$(bc_why_not)
[ -z "$why" ] || skip_all "$why"
[ -n "${EPOCHREALTIME:-}" ] || skip_all "bash 5 needed (\$EPOCHREALTIME)"
sdk_why=$(bc_sdk_prepare)
# Each container gets a new session keyring owned by the runner's host uid (RUNCELL_UID_BASE,
# the same for every session), and the kernel allows a non-root uid kernel.keys.maxkeys keys
# (200 by default): past that, runc create fails with EDQUOT. BENCH_RAISE_KEYS=1 raises the
# limit for the run (restored at exit) to measure what else limits density.
KEYS_MAX=$(cat /proc/sys/kernel/keys/maxkeys 2>/dev/null || echo "?")
KEYS_NOTE="kernel.keys.maxkeys $KEYS_MAX"
if [ -n "${BENCH_RAISE_KEYS:-}" ] && [ "$KEYS_MAX" != "?" ] && [ "$KEYS_MAX" -lt $((2 * MAXN + 1000)) ]; then
    old_bytes=$(cat /proc/sys/kernel/keys/maxbytes)
    bn_at_exit "echo $KEYS_MAX >/proc/sys/kernel/keys/maxkeys; echo $old_bytes >/proc/sys/kernel/keys/maxbytes"
    echo $((2 * MAXN + 1000)) >/proc/sys/kernel/keys/maxkeys
    echo $(((2 * MAXN + 1000) * 100)) >/proc/sys/kernel/keys/maxbytes
    KEYS_NOTE="kernel.keys.maxkeys raised from $KEYS_MAX to $((2 * MAXN + 1000)) for the run (BENCH_RAISE_KEYS=1)"
fi
LT_MAX_IDLE_MS=3600000
LT_LAUNCHER_ENV=(RUNCELL_CAPACITY=4096 RUNCELL_RUNNER_LOG_LEVEL=warn)
bn_log "starting the chain (snapshot build + import)"
bc_setup --lease-ttl "$TTL" --threads 4
mkdir -p "$BN_DIR/sdk"
bn_at_exit stop_all
SDK_RUNS=0
if [ -z "$sdk_why" ]; then
    bn_log "SDK worker anchor (Node $("$NODE" --version))"
    sdk_idle || sdk_why="the SDK worker did not pass the scenario"
fi
sleep 2
MEM_BEFORE=$(mem_available_kib)
T0=$SECONDS
status=0
n=$FIRST
fail_note=
while [ "$n" -le "$MAXN" ]; do
    if [ $((SECONDS - T0)) -ge "$BUDGET" ]; then
        fail_note="time budget (${BUDGET} s) spent before $n"
        break
    fi
    # The memory step is taken exactly.
    if [ "$LIVE" -lt "$MEM_N" ] && [ "$n" -gt "$MEM_N" ]; then n=$MEM_N; fi
    bn_log "step $n: starting $((n - LIVE)) sessions"
    t_start=$SECONDS
    if ! add_sessions "$n"; then
        fail_note="$n sessions did not all start within the time-out"
        break
    fi
    bn_log "step $n: all passed in $((SECONDS - t_start)) s; $(shim_pids | wc -l) shims; watching ${WINDOW} s"
    sleep 2
    # Memory at every step up to MEM_N: the report shows the largest one measured.
    if [ "$n" -le "$MEM_N" ]; then
        rm -f "$BN_DIR"/mem.*
        measure_memory "$n"
    fi
    if watch_window "$n"; then
        HELD=$n
        bn_log "step $n held: $W_SEEN items beat ($W_BEATS beats), max gap $W_MAXGAP s, machine CPU busy $W_CPU %, sessions' own CPU $W_OURS % of a core"
        echo "$n $W_SEEN $W_MAXGAP $W_CPU held $W_OURS" >>"$BN_DIR/steps"
    else
        bn_log "step $n FAILED: $W_SEEN of $n items beat, max gap $W_MAXGAP s, $W_BAD bad answers, CPU $W_CPU %"
        echo "$n $W_SEEN $W_MAXGAP $W_CPU failed $W_OURS" >>"$BN_DIR/steps"
        fail_note="at $n: $W_SEEN of $n items beat, max gap ${W_MAXGAP} s, $W_BAD non-200"
        break
    fi
    n=$((n * 2))
done
report_memory
steps=$(awk '{ printf "%s%s: %s (max gap %s s, machine CPU %s%%, sessions %s%% of a core)", (NR > 1 ? "; " : ""), $1, $5, $3, $4, $6 }' "$BN_DIR/steps" 2>/dev/null)
bn_row "density: concurrent idle sessions with no missed heartbeat (5 s beats, ${WINDOW} s watch)" \
    "$HELD" - - ">= 200" "$(bn_yesno bn_le 200 "$HELD")"
bn_row "  steps: ${steps:-none}${fail_note:+; stopped: $fail_note}; $KEYS_NOTE" - - - - -
[ -n "$sdk_why" ] && bn_row "SDK worker anchor" "skipped: $sdk_why" - - - -
stop_all
bn_table
exit $status
