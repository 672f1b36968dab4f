#!/usr/bin/env bash
# tests/integration/launcher_e2e.sh [SCENARIO...] - end to end through the real chain (emulator
# webhook -> nginx -> runcell-fcgi -> runcell-launcher -> shim -> runc -> runcell-runner -> API
# channel -> emulator): each scenario reaches `passed`, every work item of the session ends
# `stopped` (the shim force-stops it even when the runner already did: 409 is success), and once
# the session is over nothing is left on the host: no container, mount, netns, bundle, session
# dir or token file. Also: no token in the launcher's or shims' log or the kept output/audit files.
. "$(dirname "$0")/launcher_lib.sh"

lt_setup

run_one() {
    local name=$1 sid v left
    lt_session sid "$name"
    if [ -z "$sid" ] || [ "$sid" = null ]; then
        t_fail "$name" "session not created: $(head -c 200 "$EM_DIR/body")"
        return
    fi
    v=$(wait_verdict "$sid" "$(rl_scenario_timeout "tests/scenarios/$name.json")")
    if [ "$v" = passed ]; then
        t_ok "$name"
    else
        t_fail "$name" "verdict $v (session $sid)"
        tail -n 8 "$LT_LOG" | sed 's/^/#     /'
    fi
    if left=$(wait_clean 40); then
        t_ok "$name.nothing_left"
    else
        t_fail "$name.nothing_left" "$left"
    fi
    local states
    states=$(session_work_states "$sid")
    if [ -n "$states" ] && ! echo "$states" | tr ' ' '\n' | grep -qv '^stopped:'; then
        t_ok "$name.items_stopped"
    else
        t_fail "$name.items_stopped" "work items: $states"
    fi
    if grep -q "\"session_id\":\"$sid\".*session ended: end=exit" "$LT_LOG"; then
        t_ok "$name.summary_line"
    else
        t_fail "$name.summary_line" "no summary line for $sid"
    fi
}

if [ $# -gt 0 ]; then names=("$@"); else names=(bash-echo two-turns-quick); fi
for n in "${names[@]}"; do
    if [ -f "tests/scenarios/$n.json" ]; then run_one "$n"; else t_skip "$n" "no such scenario"; fi
done

# No credential anywhere on the host side we write: the emulator's session tokens start with
# sk-ant-; the launcher's and shims' log, the kept container output and the audit logs have none.
check no_token_in_logs bash -c "! grep -rqs 'sk-ant-' '$LT_LOG' '$LT_STATE/sessions'"
check container_output_kept bash -c "ls '$LT_STATE'/sessions/*/output.log >/dev/null 2>&1"
t_done
