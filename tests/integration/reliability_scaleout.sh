#!/usr/bin/env bash
# tests/integration/reliability_scaleout.sh - issue 9, "Scale-out across hosts": three complete
# runcell hosts (each its own network namespace with nginx, runcell-fcgi, runcell-launcher and
# runc containers; tests/integration/scaleout_lib.sh) serve ONE emulator environment behind ONE
# front nginx whose `upstream` spreads the webhooks. No host knows another: the work queue's
# atomic claims and leases are the only coordination.
#
# N sessions (SCALEOUT_SESSIONS, default 30; RUNCELL_LONG=1 -> 100; four fifths at once, the
# rest once the victim's items are back in the queue, SCALEOUT_TAIL) are created, each
# playing a generated scenario (bash, the custom tool run_tests, bash; about 4 s of calls, then
# end_turn). Capacities (SCALEOUT_CAPACITIES, "3 3 3") are far below N, so every host runs full
# and leaves work queued for the others. Once the victim host (SCALEOUT_VICTIM, 2) has finished
# one session and has a tool call in flight, the machine "dies": every process in its netns and
# uid range is killed with SIGKILL and its containers' kernel state deleted (no teardown, no
# force-stop). Its items stay claimed until the lease TTL (SCALEOUT_TTL, 15 s) runs out, go back
# to the queue, and a surviving host claims and finishes them.
#
# Asserts, from the emulator's request log and state and from each host's logs:
#   - every session's verdict is passed and its last status is idle with end_turn;
#   - the victim's in-flight items are those it claimed whose lease ran out (a live holder keeps
#     its lease: a lease lost on a surviving host fails the test); there is at least one;
#   - every work item was acked (claimed) exactly once, the victim's in-flight items exactly
#     twice: the second time after the kill, by exactly one surviving host;
#   - every tool use has exactly one result; every call ran exactly once, except calls of the
#     victim's in-flight sessions that ran again because no result had landed (counted);
#   - each host served > 0 sessions, no host ever ran more sessions than its capacity, and the
#     hosts answered "at capacity" (work left queued for the others);
#   - no work item left claimed or queued;
#   - nothing left on any host (containers, mounts, netns, bundles, work files, cgroups,
#     processes), the victim after a "reboot" (its run dir emptied as a tmpfs would be, its
#     launcher started once: reconcile cleans its files and stops nothing that is still live).
# Knobs: SCALEOUT_SESSIONS, SCALEOUT_CAPACITIES, SCALEOUT_TTL, SCALEOUT_VICTIM, SCALEOUT_TAIL,
# SCALEOUT_REBOOT_EARLY (see below), SO_KEEP=1 (keep the logs in /tmp/rc-scaleout.*).
# Figures are printed as TAP comments (for docs/RELIABILITY.md).
# shellcheck source=tests/integration/scaleout_lib.sh
. "$(dirname "$0")/scaleout_lib.sh"

N=${SCALEOUT_SESSIONS:-30}
[ -n "${RUNCELL_LONG:-}" ] && N=${SCALEOUT_SESSIONS:-100}
TTL=${SCALEOUT_TTL:-15}
read -ra CAPS <<<"${SCALEOUT_CAPACITIES:-3 3 3}"
VICTIM=${SCALEOUT_VICTIM:-2}
# Sessions created only once the victim's items are back in the queue (work keeps arriving, as
# in production). SCALEOUT_SESSIONS=12 SCALEOUT_TAIL=0 shows the first caveat of the scale-out
# section of docs/DEPLOYMENT.md: a re-queued item gets no webhook, and survivors with free slots
# and no session ending never poll, so it waits.
TAIL=${SCALEOUT_TAIL:-$((N / 5))}
WAIT_S=$((150 + 2 * N)) # liveness bound for all verdicts on a loaded 2-core host
STEP_WAIT_MS=$(((TTL + 90) * 1000))

so_require
so_snapshot
so_network || { t_fail network "bridge $SO_BR: could not be set up"; exit 1; }

# ---- the scenario -----------------------------------------------------------------------------
mkdir -p "$SO/scenarios"
jq -n --argjson w "$STEP_WAIT_MS" '{
    name: "scaleout",
    description: "reliability_scaleout.sh generated",
    agent: {tools: [
        {type: "agent_toolset_20260401",
         default_config: {enabled: true, permission_policy: {type: "always_allow"}}},
        {type: "custom", name: "run_tests", description: "Run the project'"'"'s tests",
         input_schema: {type: "object", properties: {filter: {type: "string"}}}}]},
    turns: [{user: "go", end: "end_turn", steps: [
        {tool: "bash", input: {command: "sleep 1; echo one"},
         expect: {is_error: false, text: "one", wait_ms: $w}},
        {custom_tool: "run_tests", input: {filter: "scaleout"},
         expect: {is_error: false, text: "3 passed, 0 failed (filter: scaleout)", wait_ms: $w}},
        {tool: "bash", input: {command: "sleep 2; echo three"},
         expect: {is_error: false, text: "three", wait_ms: $w}},
        {message: "done"}]}]}' >"$SO/scenarios/scaleout.json"

FRONT_PORT=$(so_free_port)
so_emulator --scenarios "$SO/scenarios" --webhook-url "http://127.0.0.1:$FRONT_PORT/webhook" \
    --webhook-backoff-ms 300,1000 --lease-ttl "$TTL"
mk_env ENV scaleout
api POST "/_emulator/v1/environments/$ENV/keys"
ENV_KEY=$(jb .key)
if [ -z "$ENV" ] || [ -z "$ENV_KEY" ]; then
    t_fail environment "no environment or key"
    exit 1
fi

t_setup=$SECONDS
for i in "${!CAPS[@]}"; do so_host_up $((i + 1)) "${CAPS[$i]}" "$ENV" "$ENV_KEY"; done
so_front_up "$FRONT_PORT"
t_ok hosts_up
echo "# ${#CAPS[@]} hosts up in $((SECONDS - t_setup)) s (capacities ${CAPS[*]}, lease TTL $TTL s, network $SO_NET.0/24)"

api POST /v1/agents "$(jq -c .agent.tools "$SO/scenarios/scaleout.json" |
    jq -c '{name: "scaleout", model: "claude-sonnet-4-6", tools: .}')"
AGENT=$(jb .id)

# ---- helpers ----------------------------------------------------------------------------------
# The emulator keeps its last 20000 requests: collect them as the run goes.
REQ_SEQ=0
collect_requests() {
    local more=true
    while [ "$more" = true ]; do
        admin GET "/requests?since=$REQ_SEQ&limit=1000"
        [ "$ST" = 200 ] || return 1
        jq -c '.data[] | {seq, time, method, path, status}' "$EM_DIR/body" >>"$SO/requests.jsonl"
        REQ_SEQ=$(jb .last_seq)
        more=$(jb .has_more)
    done
}
verdict() {
    api GET "/_emulator/v1/sessions/$1/verdict"
    jb .state
}
declare -A V DONE_AT
poll_verdicts() {
    local s v
    LEFT=0
    for s in "${SIDS[@]}"; do
        [ -n "${V[$s]:-}" ] && continue
        v=$(verdict "$s")
        if [ "$v" = passed ] || [ "$v" = failed ]; then
            V[$s]=$v DONE_AT[$s]=$((SECONDS - t0))
        else
            LEFT=$((LEFT + 1))
        fi
    done
}
# log_work_ids FILE MSG-SUFFIX: the work_id of every JSON log line whose msg ends with it.
log_work_ids() {
    jq -rR --arg m "$2" 'fromjson? | select((.msg // "") | endswith($m)) | .work_id // empty' "$1" 2>/dev/null
}
ended_work_ids() {
    jq -rR 'fromjson? | select((.msg // "") | startswith("session ended:")) | .work_id // empty' "$1" 2>/dev/null
}
# victim_ready: one of the victim's sessions is in a tool call (its runner logged the start of a
# call and not yet its end, and the emulator holds a call without a result), and (for the first
# 20 s) the victim has finished a session already, so it dies with work done and work in flight.
victim_ready() {
    local h f sid d started ended
    h=$(so_dir "$VICTIM")
    [ "$(ended_work_ids "$h/launcher.log" | wc -l)" -ge 1 ] || [ $((SECONDS - t0)) -gt 20 ] || return 1
    for f in "$h"/run/sessions/*/state.json; do
        sid=$(jq -r .session_id "$f" 2>/dev/null)
        d=$h/state/bundles/$sid
        # Its runner is inside a call: more calls started than ended...
        started=$(grep -cs 'executing tool' "$d/output.log")
        ended=$(grep -cs '"msg":"tool call"' "$d/output.log")
        [ "${started:-0}" -gt "${ended:-0}" ] || continue
        # ... and the emulator still waits for a result.
        api GET "/v1/sessions/$sid/events?limit=1000"
        jq -e '([.data[] | select(.type == "agent.tool_use" or .type == "agent.custom_tool_use") | .id]
                - [.data[] | select(.type == "user.tool_result") | .tool_use_id]
                - [.data[] | select(.type == "user.custom_tool_result") | .custom_tool_use_id])
               | length > 0' "$EM_DIR/body" >/dev/null && return 0
    done
    return 1
}

# victim_reboot: the victim comes back. Mounts and the run dir (a tmpfs) are gone, the state
# dir is kept; its launcher starts once and its reconcile cleans the files of the sessions it
# held, stopping only items whose lease is still its own (its heartbeats echoing the recorded
# value answer 412 for re-queued / re-claimed ones). Sets REBOOT_STOPS (stop
# requests it sent, "status:count") and REBOOT_STOPS_LIVE (those that stopped a live item: 204).
REBOOTED='' REBOOT_STOPS='' REBOOT_STOPS_LIVE=0
victim_reboot() {
    local m h seq
    h=$(so_dir "$VICTIM")
    # shellcheck disable=SC2013 # mount points are [A-Za-z0-9/._-] paths
    for m in $(awk -v p="$h/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null
    done
    rm -rf --one-file-system "${h:?}/run"
    mkdir -p "$h/run"
    chmod 0711 "$h/run"
    [ -f "$h/launcher.before-kill.log" ] || mv "$h/launcher.log" "$h/launcher.before-kill.log"
    collect_requests
    seq=$REQ_SEQ
    if so_launcher_start "$VICTIM" &&
        so_wait_for 30 test -z "$(find "$h/state/sessions" -name work 2>/dev/null)"; then
        t_ok victim_reboot_reconciled
    else
        t_fail victim_reboot_reconciled "reconcile did not finish: $(tail -n 5 "$h/launcher.log")"
    fi
    so_host_stop "$VICTIM"
    collect_requests
    REBOOTED=1
    # The survivors' shims stop their own items too: only the victim's in-flight items count.
    REBOOT_STOPS=$(jq -r --argjson q "$seq" --arg w " $VICTIM_CLAIMED" '(.path | split("/")[5]) as $id
        | select(.seq > $q and .method == "POST" and (.path | endswith("/stop"))
                 and ($w | contains(" " + $id + " ")))
        | .status' "$SO/requests.jsonl" | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}')
    REBOOT_STOPS_LIVE=$(tr ' ' '\n' <<<"$REBOOT_STOPS" | awk -F: '$1 == 204 || $1 == 200 {s += $2} END {print s + 0}')
    echo "# victim rebooted at $((SECONDS - t0)) s: its reconcile's stops of the items it held: ${REBOOT_STOPS:-none}"
}

# ---- run --------------------------------------------------------------------------------------
new_sessions() { # new_sessions COUNT: appended to SIDS
    local i
    for ((i = 0; i < $1; i++)); do
        api POST /v1/sessions "$(jq -cn --arg a "$AGENT" --arg e "$ENV" \
            '{agent: $a, environment_id: $e, metadata: {scenario: "scaleout"}}')"
        SIDS+=("$(jb .id)")
    done
}
# requeued_all: every item the victim claimed is settled in the emulator's log: stopped (its
# session had ended) or back in the queue (the lease ran out).
requeued_all() {
    local w
    for w in $VICTIM_CLAIMED; do
        grep -Eq "work $w(: stop .*-> stopped| re-queued)" "$EM_DIR/log" || return 1
    done
}

collect_requests
t0=$SECONDS
SIDS=()
new_sessions $((N - TAIL))
t_created=$((SECONDS - t0))
TAIL_AT=''

declare -A MAXLIVE
KILLED='' KILL_SEQ='' KILL_AT='' VICTIM_CLAIMED='' max_depth=0
end=$((t0 + WAIT_S))
while [ $SECONDS -lt $end ]; do
    collect_requests
    poll_verdicts
    for n in "${SO_HOSTS[@]}"; do
        l=$(so_live_sessions "$n")
        [ "$l" -gt "${MAXLIVE[$n]:-0}" ] && MAXLIVE[$n]=$l
    done
    api GET "/v1/environments/$ENV/work/stats"
    d=$(jb .depth)
    [ "${d:-0}" -gt "$max_depth" ] && max_depth=$d
    if [ -z "$KILLED" ] && { victim_ready || [ $((SECONDS - t0)) -gt 90 ]; }; then
        collect_requests
        KILL_SEQ=$REQ_SEQ KILL_AT=$((SECONDS - t0))
        so_kill_host "$VICTIM"
        KILLED=1
        VICTIM_CLAIMED=$(log_work_ids "$(so_dir "$VICTIM")/fcgi.log" ": claimed" | sort -u | tr '\n' ' ')
        echo "# host $VICTIM killed at $KILL_AT s (the kill took $((SECONDS - t0 - KILL_AT)) s)"
    fi
    if [ -n "$KILLED" ] && [ -z "$TAIL_AT" ] && { requeued_all || [ $((SECONDS - t0 - KILL_AT)) -gt $((TTL + 10)) ]; }; then
        # SCALEOUT_REBOOT_EARLY=1: the victim comes back while its items wait in the queue
        # (the reconcile must leave the re-queued / re-claimed items alone: its heartbeats
        # answer 412, it sends no stop).
        [ -n "${SCALEOUT_REBOOT_EARLY:-}" ] && victim_reboot
        TAIL_AT=$((SECONDS - t0))
        new_sessions "$TAIL"
        echo "# the victim's items are back in the queue at $TAIL_AT s; $TAIL more sessions created"
    fi
    # Done when every verdict is in and no item is claimed or queued any more (the victim's
    # items are re-queued only when their lease runs out, then served again elsewhere).
    if [ "$LEFT" = 0 ] && [ -n "$KILLED" ]; then
        admin GET /stats
        [ "$(jb '.work_items | .queued + .starting + .active + .stopping')" = 0 ] && break
    fi
    sleep 1
done
t_run=$((SECONDS - t0))
collect_requests

passed=0 slowest=0
for s in "${SIDS[@]}"; do
    if [ "${V[$s]:-}" = passed ]; then
        passed=$((passed + 1))
        [ "${DONE_AT[$s]}" -gt "$slowest" ] && slowest=${DONE_AT[$s]}
    else
        api GET "/_emulator/v1/sessions/$s/verdict"
        echo "# session $s: ${V[$s]:-running} $(jq -c '[.steps[]? | select(.passed != true)] | .[0:2]' "$EM_DIR/body")"
    fi
done
check all_sessions_passed test "$passed" = "$N"
# The items the victim held when it died are the ones whose lease ran out: a live holder keeps
# its lease. A lease that ran out anywhere else is a failure of its own.
lease_lost=$(grep -o 'work work_[A-Za-z0-9]*: lease expired' "$EM_DIR/log" | awk '{print $2}' | tr -d : | sort -u)
INFLIGHT_AT_KILL=$(comm -12 <(tr ' ' '\n' <<<"$VICTIM_CLAIMED" | sort) <(echo "$lease_lost") | tr '\n' ' ')
other_lost=$(comm -13 <(tr ' ' '\n' <<<"$VICTIM_CLAIMED" | sort) <(echo "$lease_lost") | tr '\n' ' ')
check victim_killed_mid_session test -n "$INFLIGHT_AT_KILL"
check no_lease_lost_on_live_hosts test -z "${other_lost// /}"
[ -n "${other_lost// /}" ] && echo "#   leases lost on a live host: $other_lost"

# ---- claims, from the emulator's request log and the hosts' logs --------------------------------
check request_log_complete test "$(jq -s 'map(.seq) | (max - min + 1) == length and min == 1' "$SO/requests.jsonl")" = true
# "WORK_ID SEQ STATUS" for every ack of our environment.
jq -r --arg env "$ENV" 'select(.method == "POST" and (.path | test("^/v1/environments/\($env)/work/work_[A-Za-z0-9]+/ack$")))
    | "\(.path | split("/")[5]) \(.seq) \(.status)"' "$SO/requests.jsonl" >"$SO/acks"
awk '$3 == 200 {print $1}' "$SO/acks" | sort | uniq -c | awk '{print $2, $1}' >"$SO/acks_per_item"
acks_ok=$(awk '$3 == 200' "$SO/acks" | wc -l)
acks_409=$(awk '$3 == 409' "$SO/acks" | wc -l)
items=$(wc -l <"$SO/acks_per_item")

VH=$(so_dir "$VICTIM")
VICTIM_INFLIGHT=$INFLIGHT_AT_KILL
VICTIM_SIDS=$(for w in $VICTIM_INFLIGHT; do
    jq -rR --arg w "$w" 'fromjson? | select(.work_id == $w) | .session_id // empty' "$VH/fcgi.log" | head -n 1
done | tr '\n' ' ')
declare -A HOST_OF_CLAIM # work_id -> hosts that claimed it
for n in "${SO_HOSTS[@]}"; do
    while read -r w; do HOST_OF_CLAIM[$w]+="$n "; done < <(log_work_ids "$(so_dir "$n")/fcgi.log" ": claimed")
done
bad_claims='' RECLAIM_DELAYS=''
reclaimed=0
while read -r w c; do
    if [[ " $VICTIM_INFLIGHT " == *" $w "* ]]; then
        # Claimed by the victim, then exactly once more, after the kill, by a survivor, after the
        # lease expired.
        second=$(awk -v w="$w" '$1 == w && $3 == 200 {print $2}' "$SO/acks" | sort -n | tail -n 1)
        if [ "$c" != 2 ] || [ "${second:-0}" -le "${KILL_SEQ:-0}" ] ||
            ! grep -q "work $w: lease expired" "$EM_DIR/log" ||
            [ "$(tr ' ' '\n' <<<"${HOST_OF_CLAIM[$w]:-}" | grep -cvx -e "$VICTIM" -e '')" != 1 ]; then
            bad_claims+=" $w:acks=$c,second_seq=${second:-none},kill_seq=$KILL_SEQ,hosts=${HOST_OF_CLAIM[$w]:-}"
        else
            reclaimed=$((reclaimed + 1))
            rq=$(grep -h "work $w re-queued" "$EM_DIR/log" | tail -n 1 | jq -r .ts)
            ra=$(jq -r --argjson q "$second" 'select(.seq == $q) | .time' "$SO/requests.jsonl")
            RECLAIM_DELAYS+=" $(python3 -c 'import sys, datetime as d
p = lambda t: d.datetime.fromisoformat(t.rstrip("Z")[:26])
print("%.1f" % (p(sys.argv[2]) - p(sys.argv[1])).total_seconds())' "$rq" "$ra" 2>/dev/null || echo '?')s"
        fi
    elif [ "$c" != 1 ]; then
        bad_claims+=" $w:acks=$c,hosts=${HOST_OF_CLAIM[$w]:-}"
    fi
done <"$SO/acks_per_item"
check every_item_claimed_once_per_lease test -z "$bad_claims"
[ -n "$bad_claims" ] && echo "#   claims:$bad_claims"
check every_session_has_an_item test "$items" -ge "$N"
inflight_n=$(wc -w <<<"$VICTIM_INFLIGHT")
check victim_items_reclaimed_elsewhere test "$reclaimed" = "$inflight_n" -a "$inflight_n" -ge 1

# Sessions per host (hand-offs its runcell-fcgi made), capacity respected, at_capacity answered.
served_line='' capped_line='' all_served=1 over_cap=''
for n in "${SO_HOSTS[@]}"; do
    h=$(so_dir "$n")
    s=$(log_work_ids "$h/fcgi.log" ": handed_off" | wc -l)
    a=$(grep -c 'at_capacity' "$h/fcgi.log")
    served_line+=" host$n=$s"
    capped_line+=" host$n=$a"
    [ "$s" -gt 0 ] || all_served=0
    [ "${MAXLIVE[$n]:-0}" -le "${SO_CAP[$n]}" ] || over_cap+=" host$n:${MAXLIVE[$n]}>${SO_CAP[$n]}"
done
check each_host_served_sessions test "$all_served" = 1
check no_host_over_capacity test -z "$over_cap"
check hosts_at_capacity_left_work_queued test "$max_depth" -gt 0 -a "$(cat "$SO"/h*/fcgi.log | grep -c at_capacity)" -gt 0

# ---- sessions and tool calls --------------------------------------------------------------------
session_events() {
    local sid=$1 out=$2 page=
    : >"$out"
    while :; do
        api GET "/v1/sessions/$sid/events?limit=1000${page:+&page=$page}"
        [ "$ST" = 200 ] || return 1
        jq -c '.data[]' "$EM_DIR/body" >>"$out"
        page=$(jb '.next_page // empty')
        [ -n "$page" ] || return 0
    done
}
# Every run of each call on every host ("executing tool" when it starts; "tool call" with its
# outcome when it ends): the victim's in-flight sessions' logs are still in its bundles.
cat "$SO"/h*/state/sessions/*/output.log "$SO"/h*/state/bundles/*/output.log 2>/dev/null |
    jq -rR 'fromjson? | select(.msg != null) |
        if (.msg | startswith("executing tool ")) then "start \(.msg | capture("\\(call (?<id>[^)]+)\\)").id) \(.ts)"
        elif .msg == "tool call" then "end \(.tool_use_id) \(.ts) \(.outcome)" else empty end' >"$SO/runs"
calls=0 unanswered='' not_idle='' not_run='' rerun=0 bad_rerun=''
mkdir -p "$SO/events"
for s in "${SIDS[@]}"; do
    session_events "$s" "$SO/events/$s.jsonl" || { unanswered+=" $s:events_HTTP_$ST"; continue; }
    bad=$(jq -rs '
        ([.[] | select(.type == "agent.tool_use" or .type == "agent.custom_tool_use") | .id]) as $uses
        | ([.[] | select(.type == "user.tool_result") | .tool_use_id]
           + [.[] | select(.type == "user.custom_tool_result") | .custom_tool_use_id]) as $res
        | $uses[] as $u | ([$res[] | select(. == $u)] | length) as $k | select($k != 1) | "\($u)=\($k)"' \
        "$SO/events/$s.jsonl")
    [ -z "$bad" ] || unanswered+=" $s:$bad"
    last=$(jq -rs '[.[] | select(.type | startswith("session.status_"))] | last | "\(.type) \(.stop_reason.type // "")"' \
        "$SO/events/$s.jsonl")
    [ "$last" = "session.status_idle end_turn" ] || not_idle+=" $s:$last"
    while read -r id; do
        calls=$((calls + 1))
        k=$(grep -c "^start $id " "$SO/runs")
        if [ "$k" = 0 ]; then
            not_run+=" $id"
        elif [ "$k" -gt 1 ]; then
            rerun=$((rerun + k - 1))
            # A second run is allowed only for a call the dead host was running and whose
            # result had not landed: no earlier run ended `posted`.
            if [[ " $VICTIM_SIDS " != *" $s "* ]] ||
                grep "^end $id " "$SO/runs" | sort -k3 | head -n -1 | grep -q ' posted$'; then
                bad_rerun+=" $id:ran_$k($(grep "^end $id " "$SO/runs" | sort -k3 | awk '{printf "%s,", $4}'))"
            fi
        fi
    done < <(jq -r 'select(.type == "agent.tool_use" or .type == "agent.custom_tool_use") | .id' "$SO/events/$s.jsonl")
done
check every_tool_use_answered_once test -z "$unanswered"
[ -n "$unanswered" ] && echo "#   unanswered or answered twice:$unanswered"
check every_session_idle_end_turn test -z "$not_idle"
[ -n "$not_idle" ] && echo "#   not idle/end_turn:$not_idle"
check every_call_ran test -z "$not_run"
[ -n "$not_run" ] && echo "#   never ran (no log line):$not_run"
check reruns_only_without_result test -z "$bad_rerun"
[ -n "$bad_rerun" ] && echo "#   re-run although a result had been posted:$bad_rerun"

# ---- nothing claimed, nothing left ----------------------------------------------------------------
admin GET /stats
held=$(jb '.work_items | .starting + .active + .stopping')
queued=$(jb '.work_items.queued')
check nothing_claimed test "$held" = 0
check nothing_queued test "$queued" = 0
echo "# emulator work items: $(jq -c .work_items "$EM_DIR/body"), sessions: $(jq -c .sessions "$EM_DIR/body")"

for n in "${SO_HOSTS[@]}"; do
    [ "$n" = "$VICTIM" ] || so_host_stop "$n"
done
if [ -z "$REBOOTED" ]; then
    victim_reboot
    check victim_reboot_stopped_nothing_live test "$REBOOT_STOPS_LIVE" = 0
fi
for n in "${SO_HOSTS[@]}"; do
    left=$(so_leftovers "$n")
    if [ -z "${left// /}" ]; then t_ok "host$n.nothing_left"; else t_fail "host$n.nothing_left" "$left"; fi
done

# ---- figures -------------------------------------------------------------------------------------
front=$(awk '$1 != "-" {print $1}' "$SO/front/access.log" 2>/dev/null | tr -d ',' | sort | uniq -c |
    awk '{printf " %s=%s", $2, $1}')
echo "# sessions: $N created in $t_created s, passed $passed; all done ${t_run} s after creation (slowest verdict ${slowest} s; bound ${WAIT_S} s)"
echo "# sessions per host (hand-offs):$served_line; most at once per host: $(for n in "${SO_HOSTS[@]}"; do printf ' host%s=%s/%s' "$n" "${MAXLIVE[$n]:-0}" "${SO_CAP[$n]}"; done); fcgi at_capacity lines:$capped_line; deepest queue $max_depth"
echo "# claims: $acks_ok successful acks for $items work items, $acks_409 acks answered 409; victim host $VICTIM killed at ${KILL_AT:-never} s holding $inflight_n item(s) ($VICTIM_INFLIGHT), $reclaimed re-claimed by a survivor after the lease expired (TTL $TTL s), re-queue to re-claim:${RECLAIM_DELAYS:- n/a}; $TAIL sessions created after the re-queue (at ${TAIL_AT:-never} s)"
echo "# tool calls: $calls; sessions with a call not answered exactly once: $(wc -w <<<"$unanswered"); $rerun re-executions (calls the dead host was running, no result posted)"
echo "# webhooks through the front nginx, by upstream:${front:- none}; emulator deliveries: $(admin GET /stats >/dev/null; jq -c '.webhooks | {delivered, failed, responses}' "$EM_DIR/body")"
t_done
