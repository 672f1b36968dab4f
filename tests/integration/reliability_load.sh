#!/usr/bin/env bash
# tests/integration/reliability_load.sh - issue 9, "Load", first part: a webhook flood through
# nginx while N sessions run in real containers (the whole chain as root: emulator -> nginx ->
# runcell-fcgi -> launcher -> runc -> runner; tests/integration/launcher_lib.sh).
#
# N sessions (RELIABILITY_LOAD_SESSIONS, default 12; RUNCELL_LONG=1 -> 50; launcher capacity N+4)
# each play a generated scenario of several bash steps with short sleeps (alive ~20-30 s). While
# they run, wrk floods nginx's /webhook for RELIABILITY_LOAD_FLOOD_S (15) seconds with one thread
# and 8 connections (tests/integration/reliability_load_wrk.lua): 9 in 10 deliveries carry a wrong
# signature (401), 1 in 10 a valid one with a fresh webhook-id (runcell-fcgi drains: 200). The
# nginx of launcher_lib.sh has no limit_req, so the whole flood reaches runcell-fcgi (the
# production nginx/runcell.conf would answer the excess 429 itself).
#
# Asserts (liveness bounds, not speed checks):
#   - every session passes (bash steps' outputs as expected, within the wait bound);
#   - for every work item, from the emulator's request log: no gap between consecutive
#     successful heartbeats, nor between the ack and the first one, exceeds the lease TTL
#     (RELIABILITY_LOAD_TTL, 20 s: the runner beats every TTL/2); the largest gap is reported;
#   - runcell-fcgi answered the flood: requests/s and status counts are reported, 401s and 200s
#     both seen, no 5xx but 503 (runcell-fcgi's own answer when a webhook-id is in flight or a
#     poll failed), no socket errors beyond a few;
#   - runcell-fcgi's RSS after the flood <= RSS before + 16 MiB (both reported, and its peak);
#   - nothing left: containers, mounts, netns, cgroups, bundles, work files, claimed items.
# Figures are printed as TAP comments (docs/RELIABILITY.md).
# shellcheck source=tests/integration/launcher_lib.sh
. "$(dirname "$0")/launcher_lib.sh"

N=${RELIABILITY_LOAD_SESSIONS:-12}
[ -n "${RUNCELL_LONG:-}" ] && N=${RELIABILITY_LOAD_SESSIONS:-50}
TTL=${RELIABILITY_LOAD_TTL:-20}
FLOOD_S=${RELIABILITY_LOAD_FLOOD_S:-15}
RSS_BOUND_KIB=$((16 * 1024))
WAIT_S=$((90 + 2 * N)) # per-run bound for all verdicts (liveness, on a loaded 2-core host)
WRK_LUA=tests/integration/reliability_load_wrk.lua
# Spare slots: with all N running, a valid delivery still reserves a slot and polls (an empty
# poll: "drained") instead of stopping at "at_capacity" without a poll.
CAPACITY=${RELIABILITY_LOAD_CAPACITY:-$((N + 4))}

command -v wrk >/dev/null 2>&1 || { t_skip all "wrk not installed"; exit 0; }

# shellcheck disable=SC2034 # read by launcher_lib.sh
LT_LAUNCHER_ENV=(RUNCELL_CAPACITY="$CAPACITY")
lt_setup --lease-ttl "$TTL"

# ---- the scenario -----------------------------------------------------------------------------
bash_step() { # bash_step COMMAND EXPECTED-TEXT
    jq -cn --arg c "$1" --arg t "$2" '{tool: "bash", input: {command: $c}, expect: {is_error: false, text: $t}}'
}
steps="[$(bash_step 'sleep 3; echo one' one)"
for k in two three four five six; do
    steps+=",$(bash_step "sleep 3; echo $k" "$k")"
done
steps+=",$(bash_step 'echo x >> n.txt; wc -l < n.txt' 1)]"
admin POST /scenarios "$(jq -cn --argjson s "$steps" '{name: "load-sleepy",
    agent: {tools: [{type: "agent_toolset_20260401",
                     default_config: {enabled: true, permission_policy: {type: "always_allow"}}}]},
    turns: [{user: "go", steps: $s}]}')"
[ "$ST" = 200 ] || { t_fail scenario_loaded "HTTP $ST: $(head -c 200 "$EM_DIR/body")"; t_done; }

api POST /v1/agents '{"name":"load","model":"claude-sonnet-4-6","tools":[{"type":"agent_toolset_20260401","default_config":{"enabled":true,"permission_policy":{"type":"always_allow"}}}]}'
AGENT=$(jb .id)
new_session() {
    api POST /v1/sessions "$(jq -cn --arg a "$AGENT" --arg e "$ENV" \
        '{agent: $a, environment_id: $e, metadata: {scenario: "load-sleepy"}}')"
    jb .id
}

# ---- helpers ----------------------------------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$FCGI_PID/status" 2>/dev/null; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$FCGI_PID/status" 2>/dev/null; }

# sign_many FILE COUNT PREFIX: FILE = an envelope line, then COUNT "ID TS SIG" lines (the key goes
# to python through its environment, never argv).
sign_many() {
    envelope whe_load session.status_run_started sesn_load >"$1"
    echo >>"$1"
    ANTHROPIC_WEBHOOK_SIGNING_KEY=$WH_KEY python3 - "$1" "$2" "$3" <<'EOF'
import base64, hashlib, hmac, os, sys, time
path, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
key = os.environ["ANTHROPIC_WEBHOOK_SIGNING_KEY"]
key = base64.b64decode(key[len("whsec_"):] if key.startswith("whsec_") else key)
with open(path) as f:
    body = f.readline().rstrip("\n")
ts = str(int(time.time()))
with open(path, "a") as f:
    for i in range(count):
        wid = "%s%d" % (prefix, i)
        mac = hmac.new(key, ("%s.%s.%s" % (wid, ts, body)).encode(), hashlib.sha256).digest()
        f.write("%s %s v1,%s\n" % (wid, ts, base64.b64encode(mac).decode()))
EOF
}

# The emulator keeps its last 20000 requests: collect them as the run goes (appended to
# $LT/requests.jsonl, one object per line, only the fields needed).
REQ_SEQ=0
collect_requests() {
    local more=true
    while [ "$more" = true ]; do
        admin GET "/requests?since=$REQ_SEQ&limit=1000"
        [ "$ST" = 200 ] || return 1
        jq -c '.data[] | {seq, time, method, path, status}' "$EM_DIR/body" >>"$LT/requests.jsonl"
        REQ_SEQ=$(jb .last_seq)
        more=$(jb .has_more)
    done
}

# ---- run --------------------------------------------------------------------------------------
sign_many "$LT/signed" 40000 "msg_load_"
collect_requests
FIRST_SEQ=$REQ_SEQ
rss_before=$(rss_kib)
t0=$SECONDS
SIDS=()
for _ in $(seq "$N"); do SIDS+=("$(new_session)"); done

# Flood once the first session runs (its container is up), so the flood overlaps the sessions.
first_running() { [ -n "$(claimed_items)" ]; }
wait_for 60 first_running
wrk -t1 -c8 -d"${FLOOD_S}s" --timeout 10s -s "$WRK_LUA" "$NGX/webhook" -- "$LT/signed" 10 \
    >"$LT/wrk.out" 2>&1 &
WRK_PID=$!
BG_PIDS+=("$WRK_PID")
# poll_verdicts: records each session's final verdict and when it was first seen (seconds since
# the sessions were created); LEFT = sessions still without one.
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
hwm=0
while kill -0 "$WRK_PID" 2>/dev/null; do
    collect_requests
    poll_verdicts
    r=$(rss_kib)
    [ "${r:-0}" -gt "$hwm" ] && hwm=$r
    sleep 1
done
wait "$WRK_PID"
sleep 1
rss_after=$(rss_kib)

# Verdicts, collecting the request log meanwhile.
end=$((t0 + WAIT_S))
while [ $SECONDS -lt $end ]; do
    poll_verdicts
    collect_requests
    [ "$LEFT" = 0 ] && break
    sleep 1
done
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

# ---- heartbeats -------------------------------------------------------------------------------
if left=$(wait_clean 60); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
check nothing_claimed test -z "$(claimed_items)"
collect_requests
# Per work item: the ack and the successful heartbeats, in order; the gaps between them.
jq -rs --arg env "$ENV" --argjson first "$FIRST_SEQ" '
    def secs: (.[0:19] + "Z" | fromdateiso8601) + ((.[19:] | ltrimstr(".") | rtrimstr("Z")) as $f
              | if $f == "" then 0 else ($f | tonumber) / pow(10; $f | length) end);
    [.[] | select(.seq > $first and .method == "POST" and .status == 200
                  and (.path | startswith("/v1/environments/\($env)/work/")))
         | (.path | split("/")) as $p | select(($p | length) == 7)
         | {w: $p[5], op: $p[6], t: (.time | secs)}
         | select(.op == "ack" or .op == "heartbeat")]
    | group_by(.w)[] | sort_by(.t) as $ev
    | [range(1; $ev | length) | {gap: ($ev[.].t - $ev[. - 1].t), first: ($ev[. - 1].op == "ack")}]
    | "\($ev[0].w) \($ev | map(select(.op == "heartbeat")) | length) \(
        map(select(.first)) | map(.gap) | max // -1) \(map(select(.first | not)) | map(.gap) | max // -1)"
' "$LT/requests.jsonl" >"$LT/gaps" 2>"$LT/gaps.err"
items=$(wc -l <"$LT/gaps")
beats=$(awk '{s += $2} END {print s + 0}' "$LT/gaps")
max_first=$(awk 'BEGIN {m = 0} $3 > m {m = $3} END {printf "%.1f", m}' "$LT/gaps")
max_gap=$(awk 'BEGIN {m = 0} $4 > m {m = $4} END {printf "%.1f", m}' "$LT/gaps")
no_beat=$(awk '$2 == 0' "$LT/gaps" | wc -l)
# The log was read completely: no gap in the sequence numbers (the emulator keeps the last 20000).
check request_log_complete test "$(jq -s 'map(.seq) | (max - min + 1) == length and min == 1' "$LT/requests.jsonl")" = true
check every_session_item_seen test "$items" -ge "$N"
check every_item_heartbeat test "$no_beat" = 0
check ack_to_first_heartbeat_within_ttl awk -v m="$max_first" -v t="$TTL" 'BEGIN {exit !(m <= t)}'
check heartbeat_gaps_within_ttl awk -v m="$max_gap" -v t="$TTL" 'BEGIN {exit !(m <= t)}'

# ---- the flood --------------------------------------------------------------------------------
read -r _ W_N W_S W_ERR W_WRAP W_VALID W_ST < <(grep '^RESULT' "$LT/wrk.out")
count_of() { tr ' ' '\n' <<<"${W_ST:-}" | sed -n "s/^s$1://p"; }
n401=$(count_of 401) n200=$(count_of 200) n503=$(count_of 503)
n5xx=$(tr ' ' '\n' <<<"${W_ST:-}" | awk -F: '/^s5/ && $1 != "s503" {s += $2} END {print s + 0}')
rps=$(awk -v n="${W_N:-0}" -v s="${W_S:-0}" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print 0 }')
check flood_ran test "${W_N:-0}" -gt 0
check flood_401s test "${n401:-0}" -gt 0
check flood_200s test "${n200:-0}" -gt 0
check flood_no_5xx_but_503 test "$n5xx" = 0
check flood_few_socket_errors test "${W_ERR:-1}" -le 8
check fcgi_alive kill -0 "$FCGI_PID"
check fcgi_rss_bounded test "${rss_after:-999999999}" -le "$((rss_before + RSS_BOUND_KIB))"

echo "# sessions: $N at once (capacity $CAPACITY), passed $passed; slowest verdict ${slowest} s after its creation (the scenario sleeps 18 s; bound ${WAIT_S} s)"
echo "# flood: ${W_N:-0} requests in ${W_S:-?} s = $rps req/s (wrk -t1 -c8, 1 in 10 valid: ${W_VALID:-0} sent, ids reused: ${W_WRAP:-?}); statuses:${W_ST:-none}; socket errors ${W_ERR:-?}; 401 ${n401:-0}, 200 ${n200:-0}, 503 ${n503:-0}"
echo "# heartbeats: $items work items, $beats successful beats, lease TTL $TTL s (interval $((TTL / 2)) s); largest gap between beats $max_gap s, largest ack -> first beat $max_first s"
mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo "# runcell-fcgi RSS: before the flood $(mib "$rss_before"), after $(mib "$rss_after"), highest sample during it $(mib "$hwm") (VmHWM $(mib "$(hwm_kib)")), at the end $(mib "$(rss_kib)"); bound: after <= before + 16 MiB"
outcomes=$(grep -o 'msg":"webhook [^ ]*: [0-9]* [a-z_]*' "$F_DIR/fcgi.log" | awk '{print $4}' |
    sort | uniq -c | sort -rn | awk '{printf " %s %s", $2, $1}')
admin GET /stats
echo "# runcell-fcgi outcomes (its log):$outcomes; the emulator's own deliveries: $(jq -c '.webhooks | {delivered, failed, responses}' "$EM_DIR/body")"
polls=$(grep -c '/work/poll"' "$LT/requests.jsonl")
echo "# emulator requests during the run: $(($(wc -l <"$LT/requests.jsonl"))) ($polls polls)"
echo "# total $((SECONDS - t0)) s"
t_done
