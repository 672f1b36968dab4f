#!/usr/bin/env bash
# bench/cold_start.sh - cold start through the whole chain, snapshot cached: from the webhook POST
# received by nginx to (a) the runner's first heartbeat at the emulator and (b) the first tool
# result at the emulator, p50/p95 over 50 sessions (BENCH_QUICK=1: 10), one session at a time.
# Needs root (skipped otherwise).
#
# Chain (bench/chain_lib.sh): emulator -> nginx -> runcell-fcgi -> runcell-launcher -> shim ->
# runc -> runcell-runner, the minimal snapshot imported once at the launcher's start (so every
# measured session is a "snapshot cached" start). Each session plays tests/scenarios/bash-echo
# (one bash call); the next starts only once the previous shim has gone (idle exit after 300 ms),
# so the sessions do not overlap. Two warm-up sessions are not counted.
#
# Stamps: nginx's access log gives the webhook's arrival ($msec - $request_time, millisecond
# resolution); the emulator's request log gives the heartbeat's and the ack's arrival, and the
# session's events the tool result's processed_at (microseconds). All are the same host clock.
#
# Anchors, in the same run: bare `runc run` of /bin/true on the same extracted snapshot root
# (one after each session), and the official SDK worker (Node 22, @anthropic-ai/sdk) from its
# process start (just before exec) to its first heartbeat and to its first tool result, with a
# session already queued (10 runs; BENCH_QUICK: 3).
#
# Profile: one more session with the machine's fork/exec tracepoints recorded (perf; strace on
# the launcher without it) gives when the shim, runc create, runc init, runc start and the runner
# were exec'd, after the webhook's arrival.
#
# Target (DESIGN.md section 5): webhook -> first heartbeat p50 <= 120 ms.
#
# Environment: BUILD, BENCH_OUT, BENCH_SCALE (sessions x scale), BENCH_KEEP (bench/lib.sh);
# BENCH_QUICK=1 (fewer sessions); BENCH_SKIP_SDK=1; CONFORMANCE_DEPS (Node 22 + SDK).
set -u
BN_NAME=cold_start
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=bench/chain_lib.sh
. bench/chain_lib.sh

if [ -n "${BENCH_QUICK:-}" ]; then N=$((10 * BENCH_SCALE)) NSDK=3; else N=$((50 * BENCH_SCALE)) NSDK=10; fi
WARMUP=2
SCEN=bash-echo

skip_all() {
    bn_skip "cold start (webhook -> first heartbeat)" "$1"
    bn_table
    exit 0
}

# ms A B: (B - A) in milliseconds, one decimal (A, B in epoch seconds).
ms() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") exit 1; printf "%.1f\n", (b - a) * 1000 }'; }

# nginx_arrival SID: when nginx began reading the webhook naming SID (epoch seconds).
nginx_arrival() {
    grep -F "$1" "$F_DIR/nginx/logs/access.log" 2>/dev/null | grep ' /webhook ' | head -n 1 |
        awk '{ printf "%.3f\n", $1 - $2 }'
}

# first_of SINCE-FILE ENV WHAT: epoch seconds of the first request to .../work/<id>/WHAT of ENV.
first_of() {
    jq -r --arg e "$2" --arg w "$3" "$BC_JQ_T"' [.[] | select(.path | test("^/v1/environments/\($e)/work/[^/]+/\($w)$"))
        | .time | t] | min // empty' "$1"
}

wait_passed() { # SID SECONDS
    local end=$((SECONDS + $2)) v
    while [ $SECONDS -lt $end ]; do
        api GET "/_emulator/v1/sessions/$1/verdict"
        v=$(jb .state)
        [ "$v" = passed ] && return 0
        [ "$v" = failed ] && return 1
        sleep 0.05
    done
    return 1
}

# shellcheck disable=SC2317 # called through wait_for
no_shims() { [ -z "$(shim_pids)" ]; }

# one_session I: a session through the chain; appends to the sample files unless a warm-up.
one_session() {
    local i=$1 sid seq0 t_ng t_ack t_hb t_tr f=$BN_DIR/req.$1.json
    seq0=$(bc_last_seq)
    bc_session sid "$SCEN" || { bn_log "session create failed: $ST"; return 1; }
    wait_passed "$sid" 30 || { bn_log "session $sid did not pass; launcher: $(tail -n 3 "$LT_LOG")"; return 1; }
    t_tr=$(bc_first_tool_result "$sid")
    wait_for 30 no_shims || { bn_log "shim of $sid still alive after 30 s"; return 1; }
    bc_requests "$seq0" "$f" || return 1
    t_ng=$(nginx_arrival "$sid")
    t_ack=$(first_of "$f" "$ENV" ack)
    t_hb=$(first_of "$f" "$ENV" heartbeat)
    rm -f "$f"
    if [ -z "$t_ng" ] || [ -z "$t_hb" ] || [ -z "$t_tr" ]; then
        bn_log "session $sid: a stamp is missing (nginx '$t_ng', heartbeat '$t_hb', result '$t_tr')"
        return 1
    fi
    [ "$i" -lt "$WARMUP" ] && return 0
    ms "$t_ng" "$t_hb" >>"$BN_DIR/hb.ms"
    ms "$t_ng" "$t_tr" >>"$BN_DIR/tr.ms"
    [ -n "$t_ack" ] && ms "$t_ng" "$t_ack" >>"$BN_DIR/ack.ms"
    [ -n "$t_ack" ] && ms "$t_ack" "$t_hb" >>"$BN_DIR/ack_hb.ms"
    return 0
}

# sdk_run I: the SDK worker from process start to first heartbeat / first tool result.
sdk_run() {
    local i=$1 sid seq0 t_hb t_tr f=$BN_DIR/sdkreq.json end
    seq0=$(bc_last_seq)
    bc_session sid "$SCEN" "$SDK_ENV" || return 1
    bc_sdk_start "$SDK_ENV" sdkkey "$BN_DIR/sdk/wd$i" "$BN_DIR/sdk/worker$i.log"
    wait_passed "$sid" 60 || { bn_log "sdk: session $sid did not pass: $(tail -n 3 "$BN_DIR/sdk/worker$i.log")"; return 1; }
    t_tr=$(bc_first_tool_result "$sid")
    end=$((SECONDS + 10))
    t_hb=
    while [ -z "$t_hb" ] && [ $SECONDS -lt $end ]; do
        bc_requests "$seq0" "$f" || return 1
        t_hb=$(first_of "$f" "$SDK_ENV" heartbeat)
        [ -n "$t_hb" ] || sleep 0.2
    done
    bn_stop_pid "$BC_SDK_PID"
    [ -n "$t_hb" ] || { bn_log "sdk: no heartbeat seen"; return 1; }
    ms "$BC_SDK_T0" "$t_hb" >>"$BN_DIR/sdk_hb.ms"
    ms "$BC_SDK_T0" "$t_tr" >>"$BN_DIR/sdk_tr.ms"
}

# profile_session: one more session with the fork and exec events of the whole machine recorded
# (`perf record -e sched:sched_process_fork,sched_process_exec -a`, monotonic clock, converted
# to wall time), kept for the launcher's descendants: when the shim, runc create, runc init, runc
# start and the runner were exec'd, relative to the webhook's arrival. Tracepoints cost little,
# so this is close to an unprofiled start. Without perf: `strace -f -e trace=execve` on the
# launcher, which slows every syscall (a breakdown only).
profile_session() {
    local sid seq0 t_ng t_ack t_hb f=$BN_DIR/req.prof.json tool=strace ppid off
    seq0=$(bc_last_seq)
    if command -v perf >/dev/null 2>&1; then
        tool=perf
        perf record -q -e sched:sched_process_fork -e sched:sched_process_exec -a -k monotonic \
            -o "$BN_DIR/perf.data" >/dev/null 2>&1 &
    else
        strace -f -ttt -qq -e trace=execve -e signal=none -o "$BN_DIR/strace.out" \
            -p "$LAUNCHER_REAL_PID" 2>/dev/null &
    fi
    ppid=$!
    sleep 1
    bc_session sid "$SCEN" || return 1
    wait_passed "$sid" 30 || return 1
    wait_for 30 no_shims
    kill -INT "$ppid" 2>/dev/null
    wait "$ppid" 2>/dev/null
    bc_requests "$seq0" "$f" || return 1
    t_ng=$(nginx_arrival "$sid")
    t_ack=$(first_of "$f" "$ENV" ack)
    t_hb=$(first_of "$f" "$ENV" heartbeat)
    [ -n "$t_ng" ] && [ -n "$t_hb" ] || return 1
    if [ "$tool" = perf ]; then
        off=$(python3 -c 'import time; print(time.time() - time.clock_gettime(time.CLOCK_MONOTONIC))')
        # "TIME LABEL" of each exec by a descendant of the launcher (forks followed in order).
        perf script -i "$BN_DIR/perf.data" -F pid,time,event,trace 2>/dev/null |
            awk -v root="$LAUNCHER_REAL_PID" -v off="$off" '
                { t = $2; sub(/:$/, "", t) }
                /sched_process_fork/ { p = $0; sub(/.* pid=/, "", p); sub(/ .*/, "", p)
                    c = $0; sub(/.*child_pid=/, "", c); sub(/ .*/, "", c)
                    if (p == root || (p in mine)) mine[c] = 1 }
                /sched_process_exec/ && ($1 in mine) { w = $0; sub(/.*filename=/, "", w); sub(/ .*/, "", w)
                    printf "%.6f %s\n", t + off, w }' |
            awk '{ w = $2; sub(/.*\//, "", w); print $1, w }' >"$BN_DIR/profile.exec"
        # perf cannot see argv: runc's subcommands are in exec order (create, then start); the
        # shim is the launcher's binary; runc init is runc's /proc/self/exe and then its sealed
        # copy, /proc/self/fd/N.
        awk '$2 == "runc" { n++; $2 = (n == 1 ? "runc_create" : n == 2 ? "runc_start" : "runc_" n) }
             $2 == "runcell-launcher" { $2 = "shim" }
             $2 == "exe" || $2 ~ /^[0-9]+$/ { $2 = "runc_init" } { print }' "$BN_DIR/profile.exec" \
            >"$BN_DIR/profile.exec2" && mv "$BN_DIR/profile.exec2" "$BN_DIR/profile.exec"
    else
        awk '/execve\(/ && !/= -1/ {
                w = $3; sub(/^execve\("/, "", w); sub(/",.*$/, "", w); sub(/.*\//, "", w)
                if (w == "runc" && match($0, /"(create|start|delete|run|state|kill)"/)) w = "runc_" substr($0, RSTART + 1, RLENGTH - 2)
                if (w == "runcell-launcher") w = "shim"
                if (w == "exe") w = ($0 ~ /"--shim"/) ? "shim" : "runc_init"
                print $2, w }' "$BN_DIR/strace.out" >"$BN_DIR/profile.exec"
    fi
    {
        echo "ack $(ms "$t_ng" "$t_ack")"
        while read -r t w; do
            awk -v a="$t" -v b="$t_hb" 'BEGIN { exit !(a <= b) }' && echo "$w $(ms "$t_ng" "$t")"
        done <"$BN_DIR/profile.exec"
        echo "first_heartbeat $(ms "$t_ng" "$t_hb")"
    } >"$BN_DIR/profile"
    PROFILE_TOOL=$tool
    bn_log "profile ($tool; ms after the webhook reached nginx):"
    sed 's/^/#   /' "$BN_DIR/profile" >&2
}

stat_of() { bn_stats "$BN_DIR/$1.ms" 2>/dev/null || echo "0 - - -"; }

report() {
    local hb tr bare sh st ack ackhb
    hb=$(stat_of hb) tr=$(stat_of tr) bare=$(stat_of bare) sh=$(stat_of sdk_hb) st=$(stat_of sdk_tr)
    ack=$(stat_of ack) ackhb=$(stat_of ack_hb)
    bn_row "cold start: webhook at nginx -> runner's first heartbeat, p50 (n=$(bn_field "$hb" 1))" \
        "$(bn_unit "$(bn_field "$hb" 2)" ms)" "$(bn_unit "$(bn_field "$bare" 2)" ms) (bare runc run /bin/true)" \
        "$(bn_ratio "$(bn_field "$hb" 2)" "$(bn_field "$bare" 2)")" "p50 <= 120 ms" \
        "$(bn_yesno bn_le "$(bn_field "$hb" 2)" 120)"
    bn_row "cold start: webhook -> first heartbeat, p95" "$(bn_unit "$(bn_field "$hb" 3)" ms)" \
        "$(bn_unit "$(bn_field "$bare" 3)" ms) (bare runc)" "$(bn_ratio "$(bn_field "$hb" 3)" "$(bn_field "$bare" 3)")" - -
    bn_row "cold start: webhook -> first heartbeat vs SDK worker process start -> first heartbeat, p50 (SDK n=$(bn_field "$sh" 1))" \
        "$(bn_unit "$(bn_field "$hb" 2)" ms)" "$(bn_unit "$(bn_field "$sh" 2)" ms) (SDK worker)" \
        "$(bn_ratio "$(bn_field "$hb" 2)" "$(bn_field "$sh" 2)")" - -
    bn_row "cold start: webhook -> first tool result (bash echo), p50" "$(bn_unit "$(bn_field "$tr" 2)" ms)" \
        "$(bn_unit "$(bn_field "$st" 2)" ms) (SDK start -> result)" "$(bn_ratio "$(bn_field "$tr" 2)" "$(bn_field "$st" 2)")" - -
    bn_row "cold start: webhook -> first tool result, p95" "$(bn_unit "$(bn_field "$tr" 3)" ms)" \
        "$(bn_unit "$(bn_field "$st" 3)" ms) (SDK)" "$(bn_ratio "$(bn_field "$tr" 3)" "$(bn_field "$st" 3)")" - -
    bn_row "  of which webhook -> ack (runcell-fcgi claims), p50" "$(bn_unit "$(bn_field "$ack" 2)" ms)" - - - -
    bn_row "  of which ack -> first heartbeat (launcher, shim, runc, runner), p50" \
        "$(bn_unit "$(bn_field "$ackhb" 2)" ms)" "$(bn_unit "$(bn_field "$bare" 2)" ms) (bare runc)" \
        "$(bn_ratio "$(bn_field "$ackhb" 2)" "$(bn_field "$bare" 2)")" - -
    if [ -s "$BN_DIR/profile" ]; then
        bn_row "  profile, one more session ($PROFILE_TOOL): ms after the webhook at nginx" \
            "$(awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }' "$BN_DIR/profile")" - - - -
    fi
}

# ---- main -------------------------------------------------------------------------------------

why=$(bc_why_not)
[ -z "$why" ] || skip_all "$why"
[ -n "${EPOCHREALTIME:-}" ] || skip_all "bash 5 needed (\$EPOCHREALTIME)"
sdk_why=$(bc_sdk_prepare)
chmod 755 "$BN_DIR"
bn_at_exit bc_bare_cleanup
LT_MAX_IDLE_MS=300
bn_log "starting the chain (snapshot build + import)"
# shellcheck disable=SC2119 # no emulator options here
bc_setup
bc_bare_bundle "$BN_DIR/bare" || skip_all "runc spec / snapshot root not found"
mkdir -p "$BN_DIR/runc-bare" "$BN_DIR/sdk"
bn_log "chain up; $N sessions (+$WARMUP warm-up), one at a time"
status=0
for ((i = 0; i < N + WARMUP; i++)); do
    one_session "$i" || { status=1; break; }
    b=$(bc_bare_run "$BN_DIR/bare" "bare$$_$i") || { bn_log "bare runc failed: $(tail -n 2 "$BN_DIR/runc.err")"; status=1; break; }
    [ "$i" -ge "$WARMUP" ] && echo "$b" >>"$BN_DIR/bare.ms"
    [ $((i % 10)) = 9 ] && bn_log "$((i + 1)) sessions"
done
if [ -z "$sdk_why" ]; then
    bc_sdk_env SDK_ENV sdkkey
    bn_log "SDK worker anchor: $NSDK runs (Node $("$NODE" --version))"
    for ((i = 0; i < NSDK; i++)); do sdk_run "$i" || { status=1; break; }; done
else
    bn_log "SDK worker skipped: $sdk_why"
fi
PROFILE_TOOL=
if { command -v perf || command -v strace; } >/dev/null 2>&1 && [ "$status" = 0 ]; then
    profile_session || bn_log "the profiled session failed"
fi
report
[ -n "$sdk_why" ] && bn_row "SDK worker anchor" "skipped: $sdk_why" - - - -
bn_table
exit $status
