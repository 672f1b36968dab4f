#!/usr/bin/env bash
# tests/integration/runner_executor.sh - runcell-runner's tool executor and per-call log line,
# against runcell-emulator (issue 4, "Privilege separation" and "Structured JSON logs"):
#   tool_user        (root only) RUNCELL_TOOL_UID/GID=65534: the executor process runs as
#                    65534:65534, a file written by `write` is owned by 65534, a 0600 root file
#                    cannot be read, the runner's /proc files are closed to the tool user
#   executor_fds     the executor holds only its socket (fd 0) and /dev/null, no other socket
#                    (no API channel), and no ANTHROPIC_* or RUNCELL_* variable
#   executor_restart kill -9 of the executor between two calls: the runner logs the restart and
#                    the session goes on (the next file tools pass)
#   call_log         one "tool call" JSON line per call with tool, duration_ms, output_bytes,
#                    is_error and exit_status (bash `sh -c 'exit 3'` -> 3, custom tool failing -> 1,
#                    file tools -> null); no credential in the log
#   same_uid         without RUNCELL_TOOL_UID the executor is still a separate process
. "$(dirname "$0")/runner_lib.sh"

rl_start --scenarios tests/scenarios
MANIFEST=$RL_DIR/tools.json
rl_write_manifest "$MANIFEST"

# scenario NAME WITH-SECRET-READ: writes, an unreadable read (when asked), bash exit 3, a failing
# custom tool, a pause (the test kills the executor then), then more file tools.
scenario() {
    local secret_step=''
    [ "$2" = 1 ] && secret_step='{"tool":"read","input":{"file_path":"secret.txt"},"expect":{"is_error":true,"contains":"secret.txt"}},'
    cat <<EOF
{"name":"$1","agent":{"tools":[
  {"type":"agent_toolset_20260401","default_config":{"enabled":true,"permission_policy":{"type":"always_allow"}}},
  {"type":"custom","name":"run_tests","description":"Run the project's tests",
   "input_schema":{"type":"object","properties":{"filter":{"type":"string"}}}}]},
 "turns":[{"user":"go","steps":[
  {"tool":"write","input":{"file_path":"owned.txt","content":"hi"},"expect":{"is_error":false,"text":"wrote 2 bytes to owned.txt"}},
  $secret_step
  {"tool":"bash","input":{"command":"sh -c 'exit 3'"},"expect":{"is_error":true,"text":"exit 3"}},
  {"custom_tool":"run_tests","input":{"filter":"fail"},"expect":{"is_error":true,"contains":"1 failed"}},
  {"sleep_ms":3000},
  {"tool":"write","input":{"file_path":"after.txt","content":"ok"},"expect":{"is_error":false,"text":"wrote 2 bytes to after.txt"}},
  {"tool":"read","input":{"file_path":"after.txt"},"expect":{"is_error":false,"contains":"ok"}}]}]}
EOF
}

# Wait until the runner log holds N "tool call" lines (or the runner is gone).
wait_calls() {
    local log=$1 n=$2 end=$((SECONDS + 30))
    while [ $SECONDS -lt $end ] && kill -0 "$RL_RUNNER_PID" 2>/dev/null; do
        [ "$(grep -c '"msg":"tool call"' "$log" 2>/dev/null)" -ge "$n" ] && return 0
        sleep 0.1
    done
    return 1
}

executor_pid() {
    pgrep -P "$RL_RUNNER_PID" -f -- '--tool-executor' | head -n 1
}

# fds of pid: "0 socket:[..]" lines, one per fd
fd_links() {
    local f
    for f in /proc/"$1"/fd/*; do
        printf '%s %s\n' "${f##*/}" "$(readlink "$f")"
    done
}

check_fds() {
    local name=$1 pid=$2 links
    links=$(fd_links "$pid")
    printf '%s\n' "$links" >"$RL_DIR/$name.fds"
    t_check "$name.fd0_socket" grep -q '^0 socket:\[' "$RL_DIR/$name.fds"
    t_check "$name.fd1_devnull" grep -qx '1 /dev/null' "$RL_DIR/$name.fds"
    t_check "$name.fd2_devnull" grep -qx '2 /dev/null' "$RL_DIR/$name.fds"
    t_check "$name.one_socket" [ "$(grep -c 'socket:\[' "$RL_DIR/$name.fds")" = 1 ]
    t_check "$name.only_socket_pipes_devnull" [ "$(grep -vc -e 'socket:\[' -e ' pipe:\[' -e ' /dev/null$' "$RL_DIR/$name.fds")" = 0 ]
    t_check "$name.env_scrubbed" [ "$(tr '\0' '\n' <"/proc/$pid/environ" | grep -c -e '^ANTHROPIC_' -e '^RUNCELL_')" = 0 ]
}

# run_case NAME TOOL-UID: play the scenario with one runner; checks everything above.
run_case() {
    local name=$1 tool_uid=$2 dir=$RL_DIR/$1 log pid1 pid2 uid_line rc
    log=$dir/runner.log
    rl_req api POST /_emulator/v1/scenarios "$(scenario "rx-$name" "$([ -n "$tool_uid" ] && echo 1 || echo 0)")"
    [ "$RL_ST" = 200 ] || {
        t_fail "$name.scenario" "cannot load scenario: $(head -c 300 "$RL_DIR/body")"
        return
    }
    rl_setup "rx-$name" tests/scenarios/bash-echo.json || return 1
    rl_claim || {
        t_fail "$name.claim" "no work item"
        return
    }
    mkdir -p "$dir/workdir"
    if [ -n "$tool_uid" ]; then
        chmod 711 "$RL_DIR" "$dir"
        chown "$tool_uid:$tool_uid" "$dir/workdir"
        (umask 077 && echo 'root only' >"$dir/workdir/secret.txt")
        RUNCELL_TOOL_UID=$tool_uid RUNCELL_TOOL_GID=$tool_uid RL_MAX_IDLE_MS=1000 \
            rl_runner_start "$dir/workdir" "$log" "$MANIFEST"
    else
        RL_MAX_IDLE_MS=1000 rl_runner_start "$dir/workdir" "$log" "$MANIFEST"
    fi
    local before=3
    [ -n "$tool_uid" ] && before=4
    if ! wait_calls "$log" "$before"; then
        t_fail "$name.first_calls" "$(tail -n 5 "$log")"
        rl_runner_wait 1
        return
    fi
    pid1=$(executor_pid)
    if [ -z "$pid1" ]; then
        t_fail "$name.executor_running" "no --tool-executor child of $RL_RUNNER_PID"
    else
        t_ok "$name.executor_running"
        uid_line=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid1/status")
        if [ -n "$tool_uid" ]; then
            t_check "$name.executor_uid" [ "$uid_line" = "$tool_uid $tool_uid $tool_uid $tool_uid" ]
            t_check "$name.executor_gid" [ "$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$pid1/status")" = "$tool_uid $tool_uid $tool_uid $tool_uid" ]
            t_check "$name.executor_groups" [ "$(awk '/^Groups:/ {print $2}' "/proc/$pid1/status")" = "$tool_uid" ]
            if command -v setpriv >/dev/null 2>&1; then
                t_check "$name.runner_proc_closed" bash -c "! setpriv --reuid=$tool_uid --regid=$tool_uid --clear-groups cat /proc/$RL_RUNNER_PID/environ >/dev/null 2>&1"
            fi
        else
            t_check "$name.executor_uid" [ "$uid_line" = "$(id -u) $(id -u) $(id -u) $(id -u)" ]
        fi
        t_check "$name.runner_not_dumpable" [ "$(stat -c %u "/proc/$RL_RUNNER_PID/mem")" = 0 ]
        check_fds "$name" "$pid1"
        kill -9 "$pid1"
    fi
    rl_runner_wait 40
    rc=$RL_RUNNER_RC
    rl_verdict
    t_check "$name.exit_status" [ "$rc" = 0 ]
    if [ "$RL_VERDICT" = passed ]; then t_ok "$name.verdict"; else
        t_fail "$name.verdict" "$RL_VERDICT: $(jq -c '[.steps[]? | select(.passed == false)]' "$RL_DIR/verdict.json" 2>/dev/null | head -c 600)"
    fi
    pid2=$(grep -o '"msg":"tool executor restarted (pid [0-9]*)"' "$log" | tail -n 1 | grep -o '[0-9][0-9]*')
    t_check "$name.restart_logged" grep -q 'tool executor exited (killed by signal 9); restarting it' "$log"
    if [ -n "$pid2" ] && [ "$pid2" != "$pid1" ]; then t_ok "$name.new_executor"; else
        t_fail "$name.new_executor" "first $pid1, after the restart ${pid2:-none}"
    fi
    if [ -n "$tool_uid" ]; then
        t_check "$name.write_owned_by_tool_user" [ "$(stat -c %u:%g "$dir/workdir/owned.txt")" = "$tool_uid:$tool_uid" ]
        t_check "$name.after_restart_owned" [ "$(stat -c %u "$dir/workdir/after.txt")" = "$tool_uid" ]
    fi
    check_call_log "$name" "$log"
}

check_call_log() {
    local name=$1 log=$2 secret
    jq -c 'select(.msg? == "tool call")' "$log" >"$RL_DIR/$name.calls" 2>/dev/null
    t_check "$name.log.every_field" jq -se 'length >= 5 and all(.[];
        (.tool | type) == "string" and (.duration_ms | type) == "number"
        and (.output_bytes | type) == "number" and (.is_error | type) == "boolean"
        and has("exit_status"))' "$RL_DIR/$name.calls"
    t_check "$name.log.bash_exit_3" jq -se 'map(select(.tool == "bash"))[0]
        | .exit_status == 3 and .is_error == true' "$RL_DIR/$name.calls"
    t_check "$name.log.custom_exit_1" jq -se 'map(select(.tool == "run_tests"))[0]
        | .exit_status == 1 and .is_error == true and .kind == "custom"' "$RL_DIR/$name.calls"
    t_check "$name.log.file_tool_null" jq -se 'map(select(.tool == "write"))[0]
        | .exit_status == null and .is_error == false and .output_bytes == 26' "$RL_DIR/$name.calls"
    read -r secret <"$RL_DIR/secret"
    # shellcheck disable=SC2016 # expanded by the inner bash
    t_check "$name.log.no_secret" bash -c '! grep -qF -- "$1" "$2"' _ "$secret" "$log"
}

if [ "$(id -u)" = 0 ]; then
    run_case tool_user 65534
else
    t_skip tool_user "needs root to switch to uid 65534"
fi
run_case same_uid ""
t_done
