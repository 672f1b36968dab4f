#!/usr/bin/env bash
# tests/integration/stack_e2e.sh - scripts/stack.sh and scripts/test-e2e.sh, as a user runs them
# (issue 8): `stack.sh up` brings the whole local stack up on loopback (emulator, nginx,
# runcell-fcgi as nobody, the launcher, runc containers from the minimal snapshot) and prints
# the eval lines; test-e2e.sh passes with the demo scenario and with the emulator's default agent
# ("run <command>"); `status` reports the daemons and the launcher; a second scenario
# (two-turns-quick, three turns) plays through a session created with metadata.scenario; `down`
# leaves nothing (no process, mount, netns, runc state, cgroup, directory) and a second `down`
# is fine. Needs root (skipped otherwise). Its own state dir (mktemp) and free ports, so it runs
# beside other tests; the stack's files are kept on failure when STACK_KEEP=1.
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/lib.sh
. tests/lib.sh
BUILD=${BUILD:-build}
export BUILD

skip_all() { t_skip all "$1"; exit 0; }
[ "$(id -u)" = 0 ] || skip_all "needs root"
for t in runc nginx curl jq setpriv setsid python3; do
    command -v "$t" >/dev/null 2>&1 || skip_all "$t not installed"
done
if ! command -v busybox >/dev/null || ldd "$(command -v busybox)" >/dev/null 2>&1; then
    skip_all "busybox-static not installed"
fi
for b in runcell-emulator runcell-fcgi runcell-launcher runcell-runner runcell; do
    [ -x "$BUILD/$b" ] || skip_all "$BUILD/$b not built"
done

T=$(mktemp -d /tmp/rc-stack-e2e.XXXXXX)
chmod 0711 "$T" # nobody (nginx, runcell-fcgi) must traverse it
export RUNCELL_STACK_DIR=$T/stack
SIDS=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local f
    if [ "$T_FAILED" != 0 ] && [ -d "$RUNCELL_STACK_DIR" ]; then
        for f in "$RUNCELL_STACK_DIR"/*.log; do
            echo "# --- $(basename "$f")"
            tail -n 6 "$f" | sed 's/^/#   /'
        done
    fi
    if [ -n "${STACK_KEEP:-}" ] && [ "$T_FAILED" != 0 ]; then
        scripts/stack.sh down --keep >/dev/null 2>&1
        echo "# stack files kept in $T" >&2
    else
        scripts/stack.sh down >/dev/null 2>&1
        rm -rf "$T"
    fi
}
trap cleanup EXIT

# ---- up ----------------------------------------------------------------------------------------

start=$SECONDS
if scripts/stack.sh up >"$T/env" 2>"$T/up.err"; then
    t_ok up
else
    t_fail up "$(tail -n 12 "$T/up.err")"
    t_done
fi
echo "# up in $((SECONDS - start)) s"
want="ANTHROPIC_BASE_URL ANTHROPIC_API_KEY ANTHROPIC_ENVIRONMENT_ID ANTHROPIC_ENVIRONMENT_KEY ANTHROPIC_WEBHOOK_SIGNING_KEY RUNCELL_WEBHOOK_URL"
missing=""
for v in $want; do grep -q "^export $v=." "$T/env" || missing+=" $v"; done
t_check env_lines test -z "$missing"
t_check env_lines_only_exports bash -c "! grep -qv '^export [A-Z_]*=' '$T/env'"
t_check env_file_0600 test "$(stat -c %a "$RUNCELL_STACK_DIR/env")" = 600
t_check env_file_same cmp -s "$T/env" "$RUNCELL_STACK_DIR/env"
# shellcheck disable=SC1091
. "$T/env"
t_check webhook_url_is_nginx bash -c "curl -s -o /dev/null -w '%{http_code}' '${RUNCELL_WEBHOOK_URL%/webhook}/nginx-ready' | grep -qx 204"
t_check fcgi_env_0600_nobody test "$(stat -c '%a %u' "$RUNCELL_STACK_DIR/fcgi/fcgi.env")" = "600 65534"
t_check launcher_env_has_no_key bash -c "! grep -q 'sk-ant-\|whsec_\|KEY=' '$RUNCELL_STACK_DIR/launcher.env'"
fcgi_pid=$(scripts/stack.sh pid fcgi)
nginx_pid=$(scripts/stack.sh pid nginx)
t_check fcgi_runs_as_nobody test "$(stat -c %u "/proc/$fcgi_pid" 2>/dev/null)" = 65534
t_check nginx_runs_as_nobody test "$(stat -c %u "/proc/$nginx_pid" 2>/dev/null)" = 65534
scripts/stack.sh up >"$T/env2" 2>/dev/null
t_check up_again_prints_same_env cmp -s "$T/env" "$T/env2"
PIDS=$(cat "$RUNCELL_STACK_DIR"/pids/* | cut -d' ' -f1 | tr '\n' ' ')

# ---- test-e2e.sh -------------------------------------------------------------------------------

if scripts/test-e2e.sh --json "$T/e2e.json" >"$T/e2e.out" 2>&1; then
    t_ok test_e2e_demo_scenario
else
    t_fail test_e2e_demo_scenario "$(tail -n 15 "$T/e2e.out")"
fi
SIDS+=("$(jq -r .session_id "$T/e2e.json" 2>/dev/null)")
t_check test_e2e_transcript bash -c "grep -q 'custom tool run_tests' '$T/e2e.out' && grep -q 'result, after [0-9]* ms' '$T/e2e.out' && grep -q 'idle: end_turn' '$T/e2e.out'"
t_check test_e2e_json bash -c "jq -e '.result == \"passed\" and .tool_calls == 9 and (.tools | index(\"run_tests\"))' '$T/e2e.json' >/dev/null"

# The emulator's default agent: a user message "run echo runcell-e2e-..." (what test-e2e.sh
# sends the real API, in the emulator's words).
if scripts/test-e2e.sh --scenario none --json "$T/msg.json" >"$T/msg.out" 2>&1; then
    t_ok test_e2e_message
else
    t_fail test_e2e_message "$(tail -n 10 "$T/msg.out")"
fi
SIDS+=("$(jq -r .session_id "$T/msg.json" 2>/dev/null)")

# A failing session makes test-e2e.sh fail: a scenario whose expectation cannot hold.
jq '.name = "stack-e2e-must-fail" | .turns[0].steps[0].expect = {"text": "something else"}' \
    tests/scenarios/bash-echo.json >"$T/fail.json"
scripts/test-e2e.sh --scenario "$T/fail.json" --timeout 60 --json "$T/fail.out.json" >"$T/fail.out" 2>&1
rc=$?
t_check test_e2e_fails_on_failed_verdict bash -c "[ $rc = 1 ] && grep -q 'FAILED' '$T/fail.out' && grep -q 'failed step' '$T/fail.out'"
SIDS+=("$(jq -r .session_id "$T/fail.out.json" 2>/dev/null)")

# ---- status ------------------------------------------------------------------------------------

scripts/stack.sh status >"$T/status" 2>&1
rc=$?
t_check status_exit_0 test "$rc" = 0
t_check status_daemons bash -c "[ \$(grep -c ': running (pid' '$T/status') = 4 ]"
t_check status_runcell bash -c "grep -q '^    capacity 4' '$T/status' && grep -q 'runcell sessions' '$T/status'"

# Restarting one daemon with changed settings (what launcher fault tests need): the second
# scenario below then runs through the new launcher.
old=$(scripts/stack.sh pid launcher)
kill -KILL "$old"
RUNCELL_STACK_LAUNCHER_ENV="RUNCELL_CAPACITY=3" scripts/stack.sh start launcher >"$T/restart.out" 2>&1
rc=$?
new=$(scripts/stack.sh pid launcher)
t_check launcher_restart bash -c "[ $rc = 0 ] && [ -n '$new' ] && [ '$new' != '$old' ]"
t_check launcher_restart_settings bash -c "scripts/stack.sh status | grep -q '^    capacity 3'"
PIDS+=" $new"

# ---- a second scenario, by metadata.scenario ---------------------------------------------------

(umask 077 && printf 'x-api-key: %s\n' "$ANTHROPIC_API_KEY" >"$T/api.hdr")
api() { # api METHOD PATH [BODY]
    curl -sS -m 20 -X "$1" -H "@$T/api.hdr" -H 'anthropic-version: 2023-06-01' \
        -H 'anthropic-beta: managed-agents-2026-04-01' ${3:+-H 'content-type: application/json' --data-binary "$3"} \
        "$ANTHROPIC_BASE_URL$2"
}
agent=$(api POST /v1/agents "$(jq -c '{name: "stack-e2e", model: "claude-sonnet-4-6", tools: .agent.tools}' tests/scenarios/two-turns-quick.json)" | jq -r .id)
sid=$(api POST /v1/sessions "$(jq -cn --arg a "$agent" --arg e "$ANTHROPIC_ENVIRONMENT_ID" \
    '{agent: $a, environment_id: $e, metadata: {scenario: "two-turns-quick"}}')" | jq -r .id)
SIDS+=("$sid")
verdict=running
for _ in $(seq 300); do
    verdict=$(api GET "/_emulator/v1/sessions/$sid/verdict" | jq -r .state)
    [ "$verdict" = running ] || break
    sleep 0.3
done
t_check second_scenario_passed test "$verdict" = passed
if [ "$verdict" != passed ]; then
    api GET "/_emulator/v1/sessions/$sid/verdict" | head -c 600 | sed 's/^/# /'
    echo
fi

# Every session's work item ends stopped once its runner idles out and its shim cleans up.
end=$((SECONDS + 30))
while :; do
    states=$(api GET "/v1/environments/$ANTHROPIC_ENVIRONMENT_ID/work?limit=100" |
        jq -r '[.data[].state] | unique | join(",")')
    left=$(find "$RUNCELL_STACK_DIR/run/sessions" "$RUNCELL_STACK_DIR/state/bundles" -mindepth 1 -maxdepth 1 2>/dev/null)
    [ "$states" = stopped ] && [ -z "$left" ] && break
    [ $SECONDS -ge $end ] && break
    sleep 0.3
done
t_check work_items_stopped test "$states" = stopped
t_check sessions_cleaned_up test -z "$left"
t_check no_credential_in_logs bash -c "! grep -rqsE 'sk-ant-|whsec_' '$RUNCELL_STACK_DIR'/*.log '$RUNCELL_STACK_DIR/state/sessions'"

# ---- down --------------------------------------------------------------------------------------

# One session still running when the stack goes down: `down` stops it too.
scripts/test-e2e.sh --message "run sleep 60" --timeout 2 --json "$T/live.json" >/dev/null 2>&1
SIDS+=("$(jq -r .session_id "$T/live.json" 2>/dev/null)")
for _ in $(seq 50); do
    [ -n "$(find "$RUNCELL_STACK_DIR/run/sessions" -mindepth 1 -maxdepth 1 2>/dev/null)" ] && break
    sleep 0.2
done
t_check live_session_before_down test -n "$(find "$RUNCELL_STACK_DIR/run/sessions" -mindepth 1 -maxdepth 1 2>/dev/null)"
t_check live_container_before_down test -n "$(runc --root "$RUNCELL_STACK_DIR/state/runc" list -q 2>/dev/null)"

if scripts/stack.sh down >"$T/down.out" 2>&1; then t_ok down; else t_fail down "$(tail -n 5 "$T/down.out")"; fi
alive=""
for p in $PIDS; do kill -0 "$p" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && alive+=" $p"; done
t_check down_no_daemon test -z "$alive"
procs=$(for p in /proc/[0-9]*; do
    grep -qs "$RUNCELL_STACK_DIR" "$p/cmdline" && echo "${p#/proc/}"
    find "$p/fd" -mindepth 1 -maxdepth 1 -lname "$RUNCELL_STACK_DIR/*" 2>/dev/null | head -n 1
done)
t_check down_no_process_in_dir test -z "$procs"
t_check down_no_mount bash -c "! grep -q ' $RUNCELL_STACK_DIR' /proc/self/mountinfo"
t_check down_dir_removed test ! -e "$RUNCELL_STACK_DIR"
cg=""
for s in "${SIDS[@]}"; do
    [[ $s == sesn_* ]] && cg+=$(find /sys/fs/cgroup -maxdepth 4 -name "$s" 2>/dev/null)
done
t_check down_no_cgroup test -z "$cg"
t_check down_twice bash -c "scripts/stack.sh down 2>/dev/null"
t_check status_after_down bash -c "! scripts/stack.sh status >/dev/null 2>&1"
t_done
