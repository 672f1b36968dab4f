#!/usr/bin/env bash
# tests/integration/reliability_faults.sh - issue 9, "Faults": many sessions at once against one
# emulator whose fault injection is on for all of them, each served by runcell-runner (as a host
# process; the container path adds nothing to these faults: they are on the API side), claimed
# and re-claimed by the runner_lib harness like the control plane does.
#
# Two phases, each N sessions at once (RELIABILITY_SESSIONS, default 12; RUNCELL_LONG=1 -> 50):
#   chaos  streams dropped every 3 events, 15 % of events/heartbeat requests answered 500/503/429,
#          20 ms added to every response, a dormant gap between two turns. Every scenario step
#          counts its own runs (`echo x >> count.txt; wc -l`), so the verdict `passed` already
#          means each call ran exactly once; this test also requires it from the event log and
#          the runners' logs: every tool use answered exactly once, executed exactly once.
#   lease  the 2nd heartbeat of every work item answers 412 (lease lost, item re-queued) with a
#          4 s lease TTL, while calls run. Every tool use is answered exactly once; a call may be
#          executed again only when its earlier run's result never landed (outcome not
#          `posted`), and those re-executions are counted and reported.
#   term   one call each, then the runner is stopped with SIGTERM while it waits (the harness
#          does so once the verdict is final; the idle window is 60 s here): every item must
#          still end stopped (the runner's own force-stop must not be cancelled by its shutdown).
# After each phase: no session stuck (every verdict final), no work item left claimed
# (starting/active/stopping), no runner still running, no runner exit status other than 0
# (released) or 3 (lease lost). Figures go to the TAP comments (and docs/RELIABILITY.md).
# shellcheck source=tests/integration/runner_lib.sh
. "$(dirname "$0")/runner_lib.sh"

N=${RELIABILITY_SESSIONS:-12}
# N sessions share two cores with their faults' retries: a generous bound per session (a bound
# on liveness, not a speed check).
export RL_BASE_TIMEOUT=${RL_BASE_TIMEOUT:-120}
[ -n "${RUNCELL_LONG:-}" ] && N=${RELIABILITY_SESSIONS:-50}
SCN=$RL_DIR/scenarios
mkdir -p "$SCN"
MANIFEST=$RL_DIR/tools.json

# count_step N: a bash step that appends to count.txt and must see N lines (ran exactly once).
count_step() {
    jq -cn --arg n "$1" '{tool: "bash", input: {command: "echo x >> count.txt; wc -l < count.txt"},
                          expect: {is_error: false, text: $n}}'
}

# write_scenario NAME PHASE: the generated scenario (and its faults sidecar) for one session.
write_scenario() {
    local name=$1 phase=$2 t1 t2 faults pause=5000
    if [ "$phase" = chaos ]; then
        t1=$(jq -cn --argjson a "$(count_step 1)" --argjson b "$(count_step 2)" --argjson c "$(count_step 3)" '
            [$a, $b,
             {tool: "write", input: {file_path: "notes/a.txt", content: "alpha\nbeta\n"},
              expect: {is_error: false, text: "wrote 11 bytes to notes/a.txt"}},
             {tool: "read", input: {file_path: "notes/a.txt"},
              expect: {is_error: false, contains: "beta"}},
             {custom_tool: "run_tests", input: {filter: "chaos"},
              expect: {is_error: false, text: "3 passed, 0 failed (filter: chaos)"}},
             $c]')
        t2=$(jq -cn --argjson d "$(count_step 4)" --argjson e "$(count_step 5)" '
            [$d,
             {tool: "edit", input: {file_path: "notes/a.txt", old_string: "beta", new_string: "gamma"},
              expect: {is_error: false, text: "edited notes/a.txt (1 replacement(s))"}},
             {tool: "grep", input: {pattern: "gamma", path: "notes"},
              expect: {is_error: false, contains: "gamma"}},
             $e]')
        faults='{"stream_drop_after_events": 3, "http_error_rate": 0.15,
                 "http_error_statuses": [500, 503, 429], "http_error_paths": ["/events", "/heartbeat"],
                 "latency_ms": 20, "seed": 7}'
    elif [ "$phase" = term ]; then
        # One call, then the runner waits (a long idle window) until the harness's SIGTERM.
        t1=$(jq -cn --argjson a "$(count_step 1)" '[$a]')
        t2='[]'
        faults='{"latency_ms": 5, "seed": 5}'
    else
        # Calls that outlive a heartbeat interval (TTL 4 s -> a beat every 2 s), so the 412 of
        # the 2nd beat lands while one runs or between two.
        t1=$(jq -cn '[
            {tool: "bash", input: {command: "sleep 1.5; echo one"}, expect: {is_error: false, text: "one"}},
            {tool: "bash", input: {command: "sleep 1.5; echo two"}, expect: {is_error: false, text: "two"}},
            {tool: "bash", input: {command: "sleep 1.5; echo three"}, expect: {is_error: false, text: "three"}},
            {custom_tool: "run_tests", input: {filter: "lease"},
             expect: {is_error: false, text: "3 passed, 0 failed (filter: lease)"}}]')
        t2='[]'
        faults='{"heartbeat_412_on": 2, "lease_ttl_seconds": 4, "latency_ms": 5, "seed": 3}'
    fi
    jq -n --arg name "$name" --argjson t1 "$t1" --argjson t2 "$t2" --arg phase "$phase" \
        --argjson pause "$pause" '{
        name: $name,
        description: "reliability_faults.sh generated (\($phase))",
        agent: {tools: [
            {type: "agent_toolset_20260401",
             default_config: {enabled: true, permission_policy: {type: "always_allow"}}},
            {type: "custom", name: "run_tests", description: "Run the project'"'"'s tests",
             input_schema: {type: "object", properties: {filter: {type: "string"}}}}]},
        turns: (if ($t2 | length) > 0
                then [{user: "go", steps: $t1, pause_after_ms: $pause}, {user: "again", steps: $t2}]
                else [{user: "go", steps: $t1}] end)
    }' >"$SCN/$name.json"
    printf '%s\n' "$faults" >"$SCN/$name.faults.json"
}

# play_one NAME: one session in its own harness directory (rl_* keep their files in RL_DIR).
# Writes "SID VERDICT RUNS" to $RL_DIR/s-NAME/result.
play_one() {
    local name=$1
    RL_DIR=$RL_DIR/s-$name
    mkdir -p "$RL_DIR"
    cp "$BASE_DIR/cred.api" "$RL_DIR/"
    RL_RUNNER_PID=
    if ! rl_setup "$name" "$SCN/$name.json"; then
        echo "- setup_failed $RL_ST" >"$RL_DIR/result"
        return
    fi
    rl_play "$SCN/$name.json" "$RL_DIR/play" "$MANIFEST"
    echo "$RL_SID $RL_VERDICT$RL_RUNS" >"$RL_DIR/result"
}

# session_events SID FILE: every event of the session (all pages), one JSON object per line.
session_events() {
    local sid=$1 out=$2 page=
    : >"$out"
    while :; do
        rl_req api GET "/v1/sessions/$sid/events?limit=1000${page:+&page=$page}"
        [ "$RL_ST" = 200 ] || return 1
        jq -c '.data[]' "$RL_DIR/body" >>"$out"
        page=$(rl_jb '.next_page // empty')
        [ -n "$page" ] || return 0
    done
}

# Tool uses that did not get exactly one result: "id count" lines (none = good).
unanswered_or_twice() {
    jq -rs '
        ([.[] | select(.type == "agent.tool_use" or .type == "agent.custom_tool_use") | .id]) as $uses
        | ([.[] | select(.type == "user.tool_result") | .tool_use_id]
           + [.[] | select(.type == "user.custom_tool_result") | .custom_tool_use_id]) as $res
        | $uses[] as $u | ([$res[] | select(. == $u)] | length) as $n
        | select($n != 1) | "\($u) \($n)"' "$1"
}

# Runs of each call across all the session's runners, from their "tool call" log lines:
# "id runs outcome-of-each-run..." for calls run more than once.
reexecutions() {
    cat "$1"/runner.*.log 2>/dev/null | jq -rR 'fromjson? | select(.msg == "tool call")
        | "\(.tool_use_id) \(.outcome)"' |
        awk '{n[$1]++; o[$1] = o[$1] " " $2} END {for (k in n) if (n[k] > 1) print k, n[k] o[k]}'
}

# run_phase PHASE: N sessions at once, then every check. Sets the phase's figures.
run_phase() {
    local phase=$1 i name pids=() sid verdict runs calls=0 answered=0 rerun=0 bad stuck=0
    local lost_ok=0 t0=$SECONDS
    for i in $(seq "$N"); do write_scenario "$phase-$i" "$phase"; done
    # The emulator loads scenarios at start: restart it on this phase's directory.
    [ -n "$RL_EMU_PID" ] && kill "$RL_EMU_PID" 2>/dev/null && wait "$RL_EMU_PID" 2>/dev/null
    RL_EMU_PID=
    rl_start --scenarios "$SCN"
    rl_req api POST /_emulator/v1/faults "$(cat "$SCN/$phase-1.faults.json")"
    for i in $(seq "$N"); do
        play_one "$phase-$i" &
        pids+=($!)
    done
    wait "${pids[@]}"
    # Faults off for the checks themselves (they are on /events too), then the event logs.
    rl_req api POST /_emulator/v1/faults '{}'
    cp "$RL_DIR/emu.log" "$RL_DIR/$phase.emu.log"
    for i in $(seq "$N"); do
        name=$phase-$i
        read -r sid verdict runs <"$RL_DIR/s-$name/result" || { sid=- verdict=missing runs=; }
        if [ "$verdict" != passed ]; then
            t_fail "$phase.$name.passed" "verdict $verdict (session $sid, runner exits: $runs)"
            tail -n 3 "$RL_DIR/s-$name/play"/runner.*.log 2>/dev/null | sed 's/^/#     /'
            [ "$verdict" = running ] && stuck=$((stuck + 1))
            continue
        fi
        case " $runs " in
        *" 1 "* | *" 2 "* | *" 124 "*) t_fail "$phase.$name.exit_status" "runner exits:$runs" ;;
        esac
        session_events "$sid" "$RL_DIR/s-$name/events.jsonl" ||
            { t_fail "$phase.$name.events" "events list HTTP $RL_ST"; continue; }
        calls=$((calls + $(jq -s '[.[] | select(.type == "agent.tool_use" or .type == "agent.custom_tool_use")] | length' "$RL_DIR/s-$name/events.jsonl")))
        bad=$(unanswered_or_twice "$RL_DIR/s-$name/events.jsonl")
        if [ -n "$bad" ]; then
            t_fail "$phase.$name.answered_once" "tool uses without exactly one result: $bad"
        else
            answered=$((answered + 1))
        fi
        while read -r id n outcomes; do
            [ -n "$id" ] || continue
            rerun=$((rerun + n - 1))
            # A re-execution is allowed only after a lease loss and only when no earlier run's
            # result landed: every run but the last must not be `posted`.
            if [ "$phase" = chaos ] || [[ " ${outcomes% *} " == *" posted "* ]]; then
                t_fail "$phase.$name.executed_once" "$id ran $n times:$outcomes"
            else
                lost_ok=$((lost_ok + 1))
            fi
        done < <(reexecutions "$RL_DIR/s-$name/play")
    done
    check_no_claimed "$phase"
    t_check "$phase.sessions_answered_exactly_once" test "$answered" = "$N"
    t_check "$phase.no_session_stuck" test "$stuck" = 0
    echo "# $phase: $N sessions, $calls tool calls, answered exactly once in $answered sessions," \
        "$rerun re-executions ($lost_ok after a lost lease with no result), $((SECONDS - t0)) s"
}

# No work item of the phase's emulator is left claimed, and no runner is left running.
check_no_claimed() {
    local phase=$1 held left
    rl_req api GET /_emulator/v1/stats
    held=$(rl_jb '.work_items | .starting + .active + .stopping')
    t_check "$phase.no_item_left_claimed" test "$held" = 0
    left=$(pgrep -f -- "$(readlink -f "$RL_RUNNER")" | grep -vx "$$" || true)
    left=$(for p in $left; do [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$RL_RUNNER")" ] && echo "$p"; done)
    t_check "$phase.no_runner_left" test -z "$left"
}

rl_require
BASE_DIR=$RL_DIR
rl_write_manifest "$MANIFEST"
for phase in ${RELIABILITY_PHASES:-chaos lease term}; do
    if [ "$phase" = term ]; then RL_MAX_IDLE_MS=60000 run_phase "$phase"; else run_phase "$phase"; fi
done
t_done
