#!/usr/bin/env bash
# tests/integration/launcher_scenarios.sh [SCENARIO...] - every scenario in tests/scenarios (or
# the named ones) through the whole control plane: emulator webhook -> nginx -> runcell-fcgi ->
# runcell-launcher -> shim -> runc -> runcell-runner. Multi-turn scenarios need their dormant
# session re-claimed by a new shim; fault scenarios need the chain to ride out the injected
# failures (429/5xx on polls and heartbeats, dropped streams, lost leases, latency).
#
# To stay within a few minutes: the scenarios without faults are all started at once on a
# launcher with capacity 6 (RUNCELL_CAPACITY, LT_SCENARIO_CAPACITY), so most of them wait queued
# and are claimed by runcell-fcgi's re-drain as slots free; the fault scenarios then run one at a
# time, because the emulator's faults are global (each with its own .faults.json set).
#
# One TAP line per scenario: ok when the verdict is `passed` (or failed only on the known
# custom-tool differences that tests/integration/runner_scenarios.sh describes: a manifest tool
# cannot return an image block). Then: every work item of every session ended `stopped`, nothing
# claimed, nothing left on the host (containers, mounts, netns, cgroups, bundles, work files),
# one summary line per shim, no token in any log.
. "$(dirname "$0")/launcher_lib.sh"

# shellcheck disable=SC2034 # read by launcher_lib.sh
LT_LAUNCHER_ENV=(RUNCELL_CAPACITY="${LT_SCENARIO_CAPACITY:-6}")
lt_setup

# Failed steps of a verdict that are NOT known custom-tool differences (same rule as
# runner_scenarios.sh).
unexpected_failures() {
    local file=$1 verdict=$2
    jq -r --slurpfile sc "$file" '
        .steps[]? | select(.passed != true) | . as $s
        | ($sc[0].turns[$s.turn].steps[$s.step]) as $def
        | select(($def.custom_tool // "") != "run_tests"
                 or (["fail","crash","image"] | index($def.input.filter // "") | not))
        | "turn \($s.turn) step \($s.step): \($s.detail)"' "$verdict" 2>/dev/null
}

# report NAME SID: the TAP line for one finished (or timed-out) session.
report() {
    local name=$1 sid=$2 bad
    api GET "/_emulator/v1/sessions/$sid/verdict"
    cp "$EM_DIR/body" "$LT/verdict.$name.json"
    case "$(jb .state)" in
    passed) t_ok "$name" ;;
    failed)
        bad=$(unexpected_failures "tests/scenarios/$name.json" "$LT/verdict.$name.json")
        if [ -z "$bad" ]; then
            t_ok "$name # known custom-tool difference only"
        else
            t_fail "$name" "verdict failed (session $sid)"
            printf '%s\n' "$bad" | sed 's/^/#   /'
        fi
        ;;
    *)
        t_fail "$name" "no verdict in time (state $(jb .state), session $sid, items: $(session_work_states "$sid"))"
        grep "\"session_id\":\"$sid\"" "$LT_LOG" | tail -n 5 | sed 's/^/#     /'
        ;;
    esac
}

final() { [ "$1" = passed ] || [ "$1" = failed ]; }

names=() fault_names=()
if [ $# -gt 0 ]; then
    all=("$@")
else
    all=()
    for f in tests/scenarios/*.json; do
        case "$f" in *.faults.json) continue ;; esac
        all+=("$(basename "$f" .json)")
    done
fi
for n in "${all[@]}"; do
    if [ ! -f "tests/scenarios/$n.json" ]; then
        t_skip "$n" "no such scenario"
    elif [ -f "tests/scenarios/$n.faults.json" ]; then
        fault_names+=("$n")
    else
        names+=("$n")
    fi
done

declare -A SID_OF
T0=$SECONDS

# ---- phase 1: the scenarios without faults, all at once -------------------------------------
api POST /_emulator/v1/faults '{}'
longest=0
for n in "${names[@]}"; do
    lt_session sid "$n"
    SID_OF[$n]=$sid
    t=$(rl_scenario_timeout "tests/scenarios/$n.json")
    [ "$t" -gt "$longest" ] && longest=$t
done
# Queued sessions wait for a slot: allow the longest scenario plus a share of the queue.
end=$((SECONDS + longest + 4 * ${#names[@]}))
pending=("${names[@]}")
while [ ${#pending[@]} -gt 0 ] && [ $SECONDS -lt $end ]; do
    still=()
    for n in "${pending[@]}"; do
        final "$(verdict "${SID_OF[$n]}")" || still+=("$n")
    done
    pending=("${still[@]}")
    [ ${#pending[@]} -gt 0 ] && sleep 1
done
for n in "${names[@]}"; do report "$n" "${SID_OF[$n]}"; done
echo "# phase 1: ${#names[@]} scenarios in $((SECONDS - T0)) s"

# ---- phase 2: fault scenarios, one at a time ------------------------------------------------
T1=$SECONDS
for n in "${fault_names[@]}"; do
    api POST /_emulator/v1/faults "$(cat "tests/scenarios/$n.faults.json")"
    lt_session sid "$n"
    SID_OF[$n]=$sid
    wait_verdict "$sid" "$(rl_scenario_timeout "tests/scenarios/$n.json")" >/dev/null
    api POST /_emulator/v1/faults '{}'
    report "$n" "$sid"
done
echo "# phase 2: ${#fault_names[@]} fault scenarios in $((SECONDS - T1)) s"

# ---- afterwards: nothing claimed, nothing left ----------------------------------------------
# A session whose scenario ends waiting for input the scenario never gives (an unanswered
# permission request, a custom tool no client serves) keeps its runner waiting, not idle: like
# runner_scenarios.sh, the test ends it once the verdict is in, here with `runcell stop`.
sleep 3 # RUNCELL_MAX_IDLE_MS (2 s): the others end by themselves
for d in "$LT_RUN"/sessions/sesn_*; do
    [ -d "$d" ] || continue
    echo "# still running after its verdict, stopped: ${d##*/}"
    (lt_env && timeout 60 "$RUNCELL_CLI" stop "${d##*/}" --wait >/dev/null 2>&1)
done
if left=$(wait_clean 60); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
check nothing_claimed test -z "$(claimed_items)"
bad_items=
for n in "${!SID_OF[@]}"; do
    states=$(session_work_states "${SID_OF[$n]}")
    echo "$states" | tr ' ' '\n' | grep -qv '^stopped:' && bad_items+=" $n($states)"
done
check all_items_stopped test -z "$bad_items" || echo "# items not stopped:$bad_items"
started=$(grep -c 'shim started (pid' "$LT_LOG")
ended=$(grep -c 'session ended: end=' "$LT_LOG")
check one_summary_per_shim test "$started" = "$ended"
check no_start_failed bash -c "! grep -q 'end=start_failed' '$LT_LOG'"
check no_token_in_logs bash -c "! grep -rqs 'sk-ant-' '$LT_LOG' '$LT_STATE/sessions' '$F_DIR/fcgi.log'"
echo "# total $((SECONDS - T0)) s"
t_done
