#!/usr/bin/env bash
# tests/integration/runner_scenarios.sh [SCENARIO...] - every scenario in tests/scenarios (or
# the named ones) played by runcell-emulator with runcell-runner as the worker: the harness
# claims each work item like the control plane (poll + ack with the environment key) and starts
# a runner with the item's secret, again for every item the session queues (a lost lease, a
# later turn), until the verdict is final. One TAP line per scenario, ok when the verdict is
# `passed`, and a check that no runner exited with a failure status.
#
# Known differences: custom tools served from a manifest run commands, so they cannot return an
# image block, and a failing command's text ends with its "[exit status N]" line. Steps of
# tests/scenarios that expect those exact results from the conformance worker's JavaScript tool
# (filters fail, crash, image) are reported as such, not as runner failures.
. "$(dirname "$0")/runner_lib.sh"

rl_start --scenarios tests/scenarios
MANIFEST=$RL_DIR/tools.json
rl_write_manifest "$MANIFEST"

# Failed steps of a verdict that are NOT known custom-tool differences ("turn.step" list).
unexpected_failures() {
    local file=$1 verdict=$2
    jq -r --slurpfile sc "$file" '
        .steps[]? | select(.passed != true) | . as $s
        | ($sc[0].turns[$s.turn].steps[$s.step]) as $def
        | select(($def.custom_tool // "") != "run_tests"
                 or (["fail","crash","image"] | index($def.input.filter // "") | not))
        | "turn \($s.turn) step \($s.step): \($s.detail)"' "$verdict" 2>/dev/null
}

run_one() {
    local file=$1 name dir bad
    name=$(jq -r .name "$file")
    dir=$RL_DIR/$name
    if ! rl_setup "$name" "$file"; then
        t_fail "$name" "setup failed (HTTP $RL_ST): $(head -c 200 "$RL_DIR/body")"
        return
    fi
    rl_play "$file" "$dir" "$MANIFEST"
    case "$RL_VERDICT" in
    passed) t_ok "$name" ;;
    failed)
        bad=$(unexpected_failures "$file" "$dir/verdict.json")
        if [ -z "$bad" ]; then
            t_ok "$name # known custom-tool difference only (see the header)"
        else
            t_fail "$name" "verdict failed (session $RL_SID)"
            printf '%s\n' "$bad" | sed 's/^/#   /'
            tail -n 5 "$dir"/runner.*.log 2>/dev/null | sed 's/^/#     /'
        fi
        ;;
    *)
        t_fail "$name" "no verdict in time (state $RL_VERDICT, session $RL_SID, runs:$RL_RUNS)"
        tail -n 8 "$dir"/runner.*.log 2>/dev/null | sed 's/^/#     /'
        ;;
    esac
    # Exit statuses: 0 (released), 3 (lease lost: the 412 scenario); never 1 or 2, and a
    # runner still running at the end was stopped with SIGTERM (0 as well).
    case " $RL_RUNS " in
    *" 1 "* | *" 2 "* | *" 124 "*) t_fail "$name.exit_status" "runner exit statuses:$RL_RUNS" ;;
    *) t_ok "$name.exit_status" ;;
    esac
}

rl_req api POST /_emulator/v1/faults '{}'
files=()
if [ $# -gt 0 ]; then
    for n in "$@"; do files+=("tests/scenarios/$n.json"); done
else
    for f in tests/scenarios/*.json; do
        case "$f" in *.faults.json) continue ;; esac
        files+=("$f")
    done
fi
for f in "${files[@]}"; do
    run_one "$f"
done
t_done
