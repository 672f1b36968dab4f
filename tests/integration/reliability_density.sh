#!/usr/bin/env bash
# tests/integration/reliability_density.sh - issue 9, "Load", density part: many concurrent idle
# sessions in real containers for minutes, through the whole chain as root (emulator -> nginx ->
# runcell-fcgi -> launcher -> shim -> runc -> runner; tests/integration/launcher_lib.sh).
#
# N sessions (DENSITY_SESSIONS, default 40; RUNCELL_LONG=1 -> 200) are opened in batches of 20
# (DENSITY_BATCH) with one user message each for the emulator's default agent ("run <command>"):
# turn 1 is one bash call, `export DENSITY_TOKEN=tokI; echo started $DENSITY_TOKEN`, which starts
# the runner's persistent bash. Then every session idles: its runner keeps the lease (idle
# window 1 h), its event stream and its bash, as between two turns. Once all N have answered
# turn 1, all N are held for RUNCELL_DENSITY_SECONDS (default 60; long 180). Then each session
# gets a second message, `echo "$DENSITY_TOKEN answered"`: the answer proves the session's own
# persistent bash outlived the idle minutes. Then every session is stopped with `runcell stop`.
#
# Asserts:
#   - all N containers running at once (runc list), at the start of the hold and at every sample
#     during it (every 15 s), N live shims, N work items active;
#   - every turn-1 and turn-2 tool call answered with the expected text (turn 2 within
#     DENSITY_ANSWER_S, 60 s, of its message);
#   - heartbeats on time, per work item from the emulator's request log (read every 2 s; the log
#     keeps 20000): no gap between the ack, the successful heartbeats and the item's first stop
#     above 1.5 x the runner's interval (TTL/2; DENSITY_TTL 20 s -> 15 s), so far from the lease
#     TTL; no heartbeat answered other than 200; one ack per item and one item per session (a lost
#     lease re-queues the item: a second ack); the emulator logged no "lease expired" nor
#     "re-queued" (and did log every ack, so its log was read);
#   - clean shutdown: every item stopped, none claimed, no shim, and nothing left: containers,
#     mounts (workspaces, netns), netns files, bundles, run dirs, work files, cgroups
#     (lt_leftovers), loop devices backed by the test's workspace images, processes in the
#     sessions' host uid range (a range of its own, RUNCELL_UID_BASE), runc processes of the
#     test's runc root; the kernel keys charged to the sessions' uid back to 0.
# Figures (TAP comments, for docs/RELIABILITY.md): sessions, ramp and hold durations, heartbeats,
# largest gaps against the interval and the TTL, host memory per session (MemAvailable drop, RSS
# and PSS of the session processes), the sessions' CPU during the hold, threads, loop devices and
# kernel keys in use, load average, stop time.
#
# Environment: DENSITY_SESSIONS, RUNCELL_DENSITY_SECONDS, DENSITY_BATCH, DENSITY_TTL,
# DENSITY_ANSWER_S, RUNCELL_LONG=1, BUILD, LT_KEEP (launcher_lib.sh).
# shellcheck source=tests/integration/launcher_lib.sh
. "$(dirname "$0")/launcher_lib.sh"

N=${DENSITY_SESSIONS:-40}
HOLD=${RUNCELL_DENSITY_SECONDS:-60}
if [ -n "${RUNCELL_LONG:-}" ]; then
    N=${DENSITY_SESSIONS:-200}
    HOLD=${RUNCELL_DENSITY_SECONDS:-180}
fi
BATCH=${DENSITY_BATCH:-20}
TTL=${DENSITY_TTL:-20}
ANSWER_S=${DENSITY_ANSWER_S:-60}
INTERVAL=$((TTL / 2)) # the runner beats every TTL/2 (at most 30 s, at least 1 s)
[ "$INTERVAL" -gt 30 ] && INTERVAL=30
[ "$INTERVAL" -lt 1 ] && INTERVAL=1
LATE=$(awk -v i="$INTERVAL" 'BEGIN { print 1.5 * i }')
UID_BASE=$((20000000 + ($$ % 200) * 65536)) # host ids of our own (process leak check), clear of attack_scenarios.sh's
START_BOUND=$((60 + 3 * BATCH)) # per batch: all its sessions answered turn 1

# ---- can it run here? ---------------------------------------------------------------------------
mem_avail_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
need_kib=$(((N * 40 + 1024) * 1024)) # 40 MiB a session (about 10 measured) + 1 GiB
if [ "$(mem_avail_kib)" -lt "$need_kib" ]; then
    t_skip all "needs $((need_kib / 1024)) MiB available for $N sessions, $(($(mem_avail_kib) / 1024)) MiB"
    exit 0
fi
if [ "$(df -Pk /tmp | awk 'NR == 2 {print $4}')" -lt $((N * 8 * 1024 + 2 * 1024 * 1024)) ]; then
    t_skip all "not enough disk in /tmp for $N workspace images"
    exit 0
fi
for tool in losetup ps; do
    command -v "$tool" >/dev/null 2>&1 || { t_skip all "$tool not installed"; exit 0; }
done
[ -n "${EPOCHREALTIME:-}" ] || { t_skip all "bash 5 needed"; exit 0; }

# ---- cleanup: stop every session gently first (200 shims need longer than lt_cleanup's 10 s) ----
STOPPED=
dn_cleanup() {
    local p
    if [ -z "$STOPPED" ] && [ -n "$(shim_pids)" ]; then
        for p in $(shim_pids); do kill -TERM "$p" 2>/dev/null; done
        wait_for 120 no_shims
    fi
    lt_cleanup
}
trap dn_cleanup EXIT
no_shims() { [ -z "$(shim_pids)" ]; }

# shellcheck disable=SC2034 # read by launcher_lib.sh
LT_MAX_IDLE_MS=3600000
# shellcheck disable=SC2034 # read by launcher_lib.sh
LT_LAUNCHER_ENV=(RUNCELL_CAPACITY=$((N + 4)) RUNCELL_RUNNER_LOG_LEVEL=warn "RUNCELL_UID_BASE=$UID_BASE")
lt_setup --lease-ttl "$TTL" --threads 4

rc_cli() { (lt_env && "$RUNCELL_CLI" "$@"); }
api POST /v1/agents '{"name":"density","model":"claude-sonnet-4-6","tools":[{"type":"agent_toolset_20260401","default_config":{"enabled":true,"permission_policy":{"type":"always_allow"}}}]}'
AGENT=$(jb .id)
if [ -z "$AGENT" ] || [ "$AGENT" = null ]; then t_fail agent_created "HTTP $ST"; t_done; fi

msg_json() { jq -cn --arg m "$1" '[{type: "user.message", content: [{type: "text", text: $m}]}]'; }
# new_session I: a session of the default agent, opened with turn 1; prints its id.
new_session() {
    api POST /v1/sessions "$(jq -cn --arg a "$AGENT" --arg e "$ENV" \
        --argjson ev "$(msg_json "run export DENSITY_TOKEN=tok$1; echo started \$DENSITY_TOKEN")" \
        '{agent: $a, environment_id: $e, initial_events: $ev}')"
    [ "$ST" = 200 ] && jb .id
}
# results SID: the session's tool results so far, one per line: "ok|error MS TEXT", MS = from the
# user message before it to the result (processed_at of both, by the emulator's clock).
# shellcheck disable=SC2016 # jq's variables
JQ_SECS='def secs: (.[0:19] + "Z" | fromdateiso8601) + ((.[19:] | ltrimstr(".") | rtrimstr("Z")) as $f
    | if $f == "" then 0 else ($f | tonumber) / pow(10; $f | length) end);'
results() {
    api GET "/v1/sessions/$1/events?limit=100&order=asc&types[]=user.message&types[]=user.tool_result"
    jq -r "$JQ_SECS"'
        reduce .data[] as $e ({m: null, out: []};
            if $e.type == "user.message" then .m = ($e.processed_at | if . == null then null else secs end)
            else .out += ["\(if $e.is_error then "error" else "ok" end) \(
                if .m == null or $e.processed_at == null then -1
                else (($e.processed_at | secs) - .m) * 1000 | floor end) \(
                [$e.content[]? | select(.type == "text") | .text] | join("") | gsub("\\s+$"; ""))"] end)
        | .out[]' "$EM_DIR/body" 2>/dev/null
}
# verdict_of RESULT: "STATUS TEXT" without the latency; ms_of RESULT: the latency.
verdict_of() { local a=${1%% *} rest=${1#* }; echo "$a ${rest#* }"; }
ms_of() { local rest=${1#* }; echo "${rest%% *}"; }

# The emulator keeps its last 20000 requests: collect them as the run goes.
REQ_SEQ=0
collect_requests() {
    local more=true
    while [ "$more" = true ]; do
        admin GET "/requests?since=$REQ_SEQ&limit=5000"
        [ "$ST" = 200 ] || return 1
        jq -c '.data[] | {seq, time, method, path, status}' "$EM_DIR/body" >>"$LT/requests.jsonl"
        REQ_SEQ=$(jb .last_seq)
        more=$(jb .has_more)
    done
}

running_containers() {
    runc --root "$LT_STATE/runc" list --format json 2>/dev/null |
        jq '[.[]? | select(.status == "running")] | length' 2>/dev/null || echo 0
}
active_items() {
    api GET "/v1/environments/$ENV/work?limit=1000"
    jq '[.data[] | select(.state == "active")] | length' "$EM_DIR/body"
}
all_items_claimed() { # work_id:state of every item neither queued nor stopped
    api GET "/v1/environments/$ENV/work?limit=1000"
    jq -r '[.data[] | select(.state != "queued" and .state != "stopped") | "\(.id):\(.state)"] | join(" ")' "$EM_DIR/body"
}
# session_pids: every shim and its descendants (runner, tool executor, bash).
session_pids() {
    ps -e -o pid=,ppid= | awk -v roots="$(shim_pids | tr '\n' ' ')" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) mine[r[i]] = 1 }
        { pp[$1] = $2 }
        END {
            do { more = 0; for (p in pp) if (!(p in mine) && (pp[p] in mine)) { mine[p] = 1; more = 1 } } while (more)
            for (p in mine) print p
        }'
}
# session_tree_kib: "RSS PSS" (KiB) summed over session_pids.
session_tree_kib() {
    session_pids | sed 's|.*|/proc/&/smaps_rollup|' | xargs -r cat 2>/dev/null |
        awk '/^Rss:/ {r += $2} /^Pss:/ {q += $2} END {print r + 0, q + 0}'
}
# session_ticks: CPU clock ticks (user + system, reaped children included) of session_pids.
session_ticks() {
    session_pids | sed 's|.*|/proc/&/stat|' | xargs -r cat 2>/dev/null |
        awk '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}
cpu_line() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; } # "busy idle"
uid_procs() { # processes whose host uid is in the sessions' range
    ps -e -o uid=,pid=,comm= | awk -v lo="$UID_BASE" -v hi=$((UID_BASE + 65536)) '$1 >= lo && $1 < hi'
}
our_loops() { losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v p="$LT/" 'index($2, p) == 1'; }
our_runc() { pgrep -f -- "runc --root $LT_STATE/runc" 2>/dev/null; }
uid_keys() { awk -v u="$UID_BASE:" '$1 == u {print $2 + 0}' /proc/key-users; }
load1() { cut -d' ' -f1 /proc/loadavg; }
used_mib() { free -m | awk '/^Mem:/ {print $3}'; }

# ---- ramp: N sessions in batches, each batch waits until its turn 1 is answered -----------------
collect_requests
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
MEM_BEFORE=$(mem_avail_kib) USED_BEFORE=$(used_mib) THREADS_BEFORE=$(ps -eL --no-headers | wc -l)
SIDS=()
declare -A TOK T1
t_ramp=$SECONDS
ramp_ok=1
while [ ${#SIDS[@]} -lt "$N" ] && [ $ramp_ok = 1 ]; do
    batch=()
    for ((i = 0; i < BATCH && ${#SIDS[@]} < N; i++)); do
        k=${#SIDS[@]}
        sid=$(new_session "$k")
        if [ -z "$sid" ]; then
            t_fail session_created "session $k: HTTP $ST $(head -c 200 "$EM_DIR/body")"
            ramp_ok=0
            break
        fi
        SIDS+=("$sid")
        TOK[$sid]=tok$k
        batch+=("$sid")
    done
    end=$((SECONDS + START_BOUND))
    while [ $ramp_ok = 1 ]; do
        left=0
        for sid in "${batch[@]}"; do
            [ -n "${T1[$sid]:-}" ] && continue
            r=$(results "$sid" | head -n 1)
            if [ -n "$r" ]; then T1[$sid]=$r; else left=$((left + 1)); fi
        done
        collect_requests
        [ $left = 0 ] && break
        if [ $SECONDS -ge $end ]; then
            t_fail ramp "$left of the batch up to ${#SIDS[@]} sessions had no turn-1 answer after ${START_BOUND} s; launcher log: $(grep -i 'error\|fail' "$LT_LOG" | tail -n 3)"
            ramp_ok=0
        fi
        sleep 1
    done
    echo "# ramp: ${#SIDS[@]} sessions answered turn 1 after $((SECONDS - t_ramp)) s (load $(load1), $(($(mem_avail_kib) / 1024)) MiB available)"
done
RAMP_S=$((SECONDS - t_ramp))
t1_ok=0 t1_slowest=0
for sid in "${SIDS[@]}"; do
    [ "$(verdict_of "${T1[$sid]:-x 0 none}")" = "ok started ${TOK[$sid]}" ] && t1_ok=$((t1_ok + 1))
    ms=$(ms_of "${T1[$sid]:-x 0 none}")
    [ "$ms" -gt "$t1_slowest" ] && t1_slowest=$ms
done
check turn1_all_answered test "$t1_ok" = "$N"
[ $ramp_ok = 1 ] || t_done

# ---- hold: all N up at once for HOLD seconds ----------------------------------------------------
all_running() { [ "$(running_containers)" = "$N" ]; }
wait_for 30 all_running # the last batch's containers are up (they answered)
c0=$(running_containers) s0=$(shim_pids | wc -l) a0=$(active_items)
check all_containers_running_at_once test "$c0" = "$N"
check all_shims_live test "$s0" = "$N"
check all_items_active test "$a0" = "$N"
MEM_FULL=$(mem_avail_kib) USED_FULL=$(used_mib)
read -r TREE_RSS TREE_PSS < <(session_tree_kib)
THREADS_FULL=$(ps -eL --no-headers | wc -l) LOOPS_FULL=$(our_loops | wc -l)
LOOP_NODES=$(find /dev -maxdepth 1 -name 'loop[0-9]*' | wc -l) KEYS_FULL=$(uid_keys)
echo "# all $N up after ${RAMP_S} s: $c0 containers running, $s0 shims, $a0 items active; holding ${HOLD} s"
t_hold=$SECONDS
TICKS0=$(session_ticks) CPU0=$(cpu_line) EPOCH0=$EPOCHREALTIME
min_c=$c0 max_load=$(load1) next_sample=$((SECONDS + 15)) samples=1
while [ $((SECONDS - t_hold)) -lt "$HOLD" ]; do
    sleep 2
    collect_requests
    max_load=$(awk -v a="$max_load" -v b="$(load1)" 'BEGIN { print (b > a ? b : a) }')
    if [ $SECONDS -ge $next_sample ]; then
        c=$(running_containers)
        samples=$((samples + 1))
        [ "$c" -lt "$min_c" ] && min_c=$c
        next_sample=$((SECONDS + 15))
    fi
done
c=$(running_containers)
[ "$c" -lt "$min_c" ] && min_c=$c
TICKS1=$(session_ticks) CPU1=$(cpu_line) EPOCH1=$EPOCHREALTIME
# The sessions' own CPU over the hold, in % of one core; the machine's busy share (all CPUs).
OURS_PCT=$(awk -v a="$TICKS0" -v b="$TICKS1" -v hz="$(getconf CLK_TCK)" -v t0="$EPOCH0" -v t1="$EPOCH1" \
    'BEGIN { printf "%.1f", 100 * (b - a) / hz / (t1 - t0) }')
BUSY_PCT=$(awk -v a="$CPU0" -v b="$CPU1" 'BEGIN { split(a, x, " "); split(b, y, " ");
    busy = y[1] - x[1]; idle = y[2] - x[2]; if (busy + idle > 0) printf "%.0f", 100 * busy / (busy + idle); else print "-" }')
HOLD_S=$((SECONDS - t_hold))
LOAD_HOLD=$(cut -d' ' -f1-3 /proc/loadavg)
check containers_stayed_up_through_hold test "$min_c" = "$N"

# ---- turn 2: every session's own persistent bash answers ----------------------------------------
declare -A T2
# shellcheck disable=SC2016 # $DENSITY_TOKEN is expanded by the session's bash
T2_EVENTS=$(jq -cn --argjson ev "$(msg_json 'run echo "$DENSITY_TOKEN answered"')" '{events: $ev}')
for sid in "${SIDS[@]}"; do
    api POST "/v1/sessions/$sid/events" "$T2_EVENTS"
    [ "$ST" = 200 ] || echo "# turn 2 message to $sid: HTTP $ST"
done
end=$((SECONDS + ANSWER_S + N / 4))
while :; do
    left=0
    for sid in "${SIDS[@]}"; do
        [ -n "${T2[$sid]:-}" ] && continue
        r=$(results "$sid" | sed -n 2p)
        if [ -n "$r" ]; then T2[$sid]=$r; else left=$((left + 1)); fi
    done
    collect_requests
    [ $left = 0 ] || [ $SECONDS -ge $end ] && break
    sleep 1
done
t2_ok=0 t2_slowest=0 t2_bad=
for sid in "${SIDS[@]}"; do
    r=${T2[$sid]:-x -1 none}
    ms=$(ms_of "$r")
    if [ "$(verdict_of "$r")" = "ok ${TOK[$sid]} answered" ] && [ "$ms" -ge 0 ] &&
        [ "$ms" -le $((ANSWER_S * 1000)) ]; then
        t2_ok=$((t2_ok + 1))
        [ "$ms" -gt "$t2_slowest" ] && t2_slowest=$ms
    elif [ -z "$t2_bad" ]; then
        t2_bad="$sid: $r"
    fi
done
check turn2_all_answered_by_their_own_bash test "$t2_ok" = "$N"
[ -n "$t2_bad" ] && echo "# first turn-2 failure: $t2_bad"

# ---- stop every session (runcell stop), then nothing may be left --------------------------------
t_stop=$SECONDS
for sid in "${SIDS[@]}"; do rc_cli stop "$sid" >/dev/null 2>&1 || echo "# runcell stop $sid failed"; done
wait_for 180 no_shims
STOPPED=1
STOP_S=$((SECONDS - t_stop))
check all_shims_ended no_shims
if left=$(wait_clean 60); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
check nothing_claimed test -z "$(all_items_claimed)"
api GET "/v1/environments/$ENV/work?limit=1000"
check every_item_stopped test "$(jq '[.data[] | select(.state == "stopped")] | length' "$EM_DIR/body")" = "$N"
check one_item_per_session test "$(jq '[.data[].data.id] | unique | length' "$EM_DIR/body")" = "$N"
wait_for 20 test -z "$(uid_procs)"
check no_session_process_left test -z "$(uid_procs)"
check no_loop_device_left test -z "$(our_loops)"
check no_runc_process_left test -z "$(our_runc)"
keys_left=$(uid_keys)
check no_kernel_keys_left test "${keys_left:-0}" = 0

# ---- heartbeats -------------------------------------------------------------------------------
sleep 1
collect_requests
check request_log_complete test "$(jq -s 'map(.seq) | (max - min + 1) == length and min == 1' "$LT/requests.jsonl")" = true
# Per work item, successful ack / heartbeats / stops in time order, cut at the first stop:
# "WID ACKS BEATS FIRST_GAP MAX_BEAT_GAP LAST_GAP" (-1 when absent).
jq -rs --arg env "$ENV" "$JQ_SECS"'
    [.[] | select(.method == "POST" and (.path | startswith("/v1/environments/\($env)/work/")))
         | (.path | split("/")) as $p | select(($p | length) == 7)
         | {w: $p[5], op: $p[6], t: (.time | secs), s: .status}
         | select(((.op == "ack" or .op == "heartbeat") and .s == 200)
                  or (.op == "stop" and (.s == 204 or .s == 200)))]
    | group_by(.w)[] | sort_by(.t) as $all
    | ($all | map(.op) | index("stop")) as $si
    | (if $si == null then $all else $all[0:$si + 1] end) as $ev
    | [range(1; $ev | length) | {gap: ($ev[.].t - $ev[. - 1].t), a: $ev[. - 1].op, b: $ev[.].op}] as $g
    | "\($ev[0].w) \($all | map(select(.op == "ack")) | length) \($ev | map(select(.op == "heartbeat")) | length) \(
        $g | map(select(.a == "ack")) | map(.gap) | max // -1) \(
        $g | map(select(.a == "heartbeat" and .b == "heartbeat")) | map(.gap) | max // -1) \(
        $g | map(select(.b == "stop")) | map(.gap) | max // -1)"
' "$LT/requests.jsonl" >"$LT/gaps" 2>"$LT/gaps.err"
items=$(wc -l <"$LT/gaps")
beats=$(awk '{s += $3} END {print s + 0}' "$LT/gaps")
acks_over=$(awk '$2 != 1' "$LT/gaps" | wc -l)
no_beat=$(awk '$3 == 0' "$LT/gaps" | wc -l)
fmax() { awk -v c="$1" 'BEGIN {m = 0} $c > m {m = $c} END {printf "%.2f", m}' "$LT/gaps"; }
max_first=$(fmax 4) max_gap=$(fmax 5) max_last=$(fmax 6)
late=$(awk -v l="$LATE" '$4 > l || $5 > l || $6 > l' "$LT/gaps" | wc -l)
bad_beats=$(jq -s --arg env "$ENV" '[.[] | select(.method == "POST" and .status != 200
    and (.path | test("^/v1/environments/\($env)/work/[^/]+/heartbeat$")))] | length' "$LT/requests.jsonl")
expired=$(grep -c 'lease expired\|re-queued' "$EM_DIR/log")
acked_logged=$(grep -c 'work [^ ]* acknowledged' "$EM_DIR/log")
check one_item_seen_per_session test "$items" = "$N"
check one_ack_per_item test "$acks_over" = 0
check every_item_heartbeat test "$no_beat" = 0
check no_heartbeat_refused test "$bad_beats" = 0
check emulator_log_read test "$acked_logged" = "$N" # so the next check is not vacuous
check no_lease_expired_or_requeued test "$expired" = 0
check heartbeats_on_time test "$late" = 0
awk -v l="$LATE" '$4 > l || $5 > l || $6 > l' "$LT/gaps" | head -n 3 | sed 's/^/# late: /'

# ---- figures ----------------------------------------------------------------------------------
mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f", k / 1024 }'; }
per_mib() { awk -v k="${1:-0}" -v n="$N" 'BEGIN { printf "%.1f", k / 1024 / n }'; }
echo "# sessions: $N at once (capacity $((N + 4)), batches of $BATCH), all answered turn 1 after ${RAMP_S} s (slowest first answer ${t1_slowest} ms after its message, container start included); held ${HOLD_S} s with all $N containers running ($samples samples, fewest $min_c); turn 2 answered by $t2_ok of $N, slowest ${t2_slowest} ms after its message; all stopped (runcell stop) in ${STOP_S} s"
echo "# heartbeats: $items work items, $beats successful beats, lease TTL $TTL s, interval $INTERVAL s, on-time bound $LATE s; largest gap between beats $max_gap s, ack -> first beat $max_first s, last beat -> stop $max_last s; refused $bad_beats, leases expired $expired"
echo "# memory with $N idle sessions: MemAvailable $(mib "$MEM_BEFORE") -> $(mib "$MEM_FULL") MiB ($(per_mib $((MEM_BEFORE - MEM_FULL))) MiB a session); free used $USED_BEFORE -> $USED_FULL MiB; shims + runners + tool executors + bash: RSS $(mib "$TREE_RSS") MiB ($(per_mib "$TREE_RSS") a session), PSS $(mib "$TREE_PSS") MiB ($(per_mib "$TREE_PSS") a session)"
echo "# CPU during the hold: the $N idle sessions (shims, runners, tool executors, bash) used $OURS_PCT % of one core; the machine (2 cores, other work included) was $BUSY_PCT % busy"
echo "# host: load average before $LOAD_BEFORE, end of hold $LOAD_HOLD, highest 1-min during hold $max_load; threads $THREADS_BEFORE -> $THREADS_FULL; loop devices of the test $LOOPS_FULL (/dev/loop* nodes $LOOP_NODES); kernel keys of the sessions' uid ${KEYS_FULL:-0} (kernel.keys.maxkeys $(cat /proc/sys/kernel/keys/maxkeys))"
echo "# total $((SECONDS - t_ramp)) s after the chain was up"
t_done
