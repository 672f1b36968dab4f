#!/usr/bin/env bash
# tests/integration/runner_lifecycle.sh - runcell-runner's lifecycle against runcell-emulator,
# checked through the emulator's request log (protocol 14.3-14.5, 7):
#   request_order       heartbeat (NO_HEARTBEAT) -> session -> stream -> list -> result ->
#                       force-stop, all with the sessions token; the runner exits by itself
#                       after the idle window with status 0; one JSON log line per tool call
#   terminated_session  a terminated session runs no tools: no stream, no list, force-stop
#   lease_lost          heartbeat 412: exit 3, no stop; a later runner finishes the session
#   session_outage      the session read answers 503 for ~3 s at start: the runner retries
#                       (14.3.5 with the lease-TTL window of 13.9) and serves the turn; a 404
#                       (fatal) fails the item at once
#   sigterm_mid_tool    SIGTERM while bash sleeps: the tool's process group dies, its error
#                       result is posted, the item is force-stopped, exit 0 within 30 s
#   config_errors       bad configuration or manifest: exit 2 and nothing claimed
#   heartbeat_on_time   a long bash command (RUNNER_LONG_CMD_S, default 60 s) never delays the
#                       heartbeat: every gap between beats stays under the lease TTL (4 s)
. "$(dirname "$0")/runner_lib.sh"

LONG_S=${RUNNER_LONG_CMD_S:-60}
rl_start --scenarios tests/scenarios
MANIFEST=$RL_DIR/tools.json
rl_write_manifest "$MANIFEST"

# The request log after sequence number $1 (exclusive) into $RL_DIR/requests.json (all pages).
log_since() {
    local since=$1 all='[]' more=true
    while [ "$more" = true ]; do
        rl_req api GET "/_emulator/v1/requests?since=$since"
        all=$(jq -c --argjson acc "$all" '$acc + .data' "$RL_DIR/body")
        more=$(rl_jb .has_more)
        since=$(rl_jb .last_seq)
    done
    printf '%s\n' "$all" >"$RL_DIR/requests.json"
}
last_seq() {
    rl_req api GET "/_emulator/v1/requests?since=999999999"
    rl_jb .last_seq
}
# q JQ: a query over the logged requests of this work item and session.
q() {
    jq -r --arg w "$RL_WID" --arg s "$RL_SID" \
        "[.[] | select((.path | contains(\$w)) or (.path | contains(\$s)))] | $1" \
        "$RL_DIR/requests.json"
}
load_scenario() {
    rl_req api POST /_emulator/v1/scenarios "$1"
    [ "$RL_ST" = 200 ]
}

# ---- request order, idle exit --------------------------------------------------------------

test_request_order() {
    local seq0 rc kinds
    rl_setup bash-echo || return 1
    rl_claim || {
        t_fail request_order "no work item"
        return
    }
    seq0=$(last_seq) # after the harness's own poll and ack
    RL_MAX_IDLE_MS=1000 rl_runner_start "$RL_DIR/order/workdir" "$RL_DIR/order.log"
    rl_runner_wait 30
    rc=$RL_RUNNER_RC
    log_since "$seq0"
    # method + last path segment (+ "first" for the NO_HEARTBEAT claim), in order
    kinds=$(q 'map(.method + " " + (.path | split("/") | last) +
                   (if (.query // "") | test("NO_HEARTBEAT") then " first" else "" end)) | join(",")')
    t_check request_order.exit_status [ "$rc" = 0 ]
    case "$kinds" in
    "POST heartbeat first,GET sesn_"*",GET stream,GET events,POST events,"*"POST stop")
        t_ok request_order.sequence
        ;;
    *) t_fail request_order.sequence "got: $kinds" ;;
    esac
    t_check request_order.token_only [ "$(q 'map(select(.credential != "session_token")) | length')" = 0 ]
    t_check request_order.stop_forced [ "$(q '[.[] | select(.path | endswith("/stop"))][0].body')" = '{"force":true}' ]
    t_check request_order.stop_status [ "$(q '[.[] | select(.path | endswith("/stop"))][0].status')" = 204 ]
    t_check request_order.idle_exit_logged grep -q 'session idle after its turn ended' "$RL_DIR/order.log"
    t_check request_order.tool_log_line jq -se 'map(select(.msg == "tool call")) | .[0]
        | .tool == "bash" and .is_error == false and (.duration_ms | type) == "number"
          and (.output_bytes | type) == "number"' "$RL_DIR/order.log"
}

# ---- terminated session --------------------------------------------------------------------

test_terminated_session() {
    local seq0 end rc
    load_scenario '{"name":"rl-terminated","agent":{"tools":[{"type":"agent_toolset_20260401"}]},
        "turns":[{"user":"go","steps":[{"terminate":true}],"end":"none"}]}' || {
        t_fail terminated_session "cannot load scenario: $(head -c 200 "$RL_DIR/body")"
        return
    }
    rl_setup rl-terminated tests/scenarios/bash-echo.json || return 1
    end=$((SECONDS + 10))
    while [ $SECONDS -lt $end ]; do
        rl_req api GET "/v1/sessions/$RL_SID"
        [ "$(rl_jb .status)" = terminated ] && break
        sleep 0.1
    done
    seq0=$(last_seq)
    if ! rl_claim; then
        t_skip terminated_session "the emulator queues no work for a terminated session"
        return
    fi
    rl_runner_start "$RL_DIR/term/workdir" "$RL_DIR/term.log"
    rl_runner_wait 30
    rc=$RL_RUNNER_RC
    log_since "$seq0"
    t_check terminated_session.exit_status [ "$rc" = 0 ]
    t_check terminated_session.no_stream [ "$(q 'map(select(.path | endswith("/stream") or endswith("/events"))) | length')" = 0 ]
    t_check terminated_session.stopped [ "$(q 'map(select(.path | endswith("/stop"))) | length')" = 1 ]
}

# ---- lease lost ----------------------------------------------------------------------------

test_lease_lost() {
    local seq0 rc
    seq0=$(last_seq)
    rl_setup fault-heartbeat-412 || return 1
    rl_claim || {
        t_fail lease_lost "no work item"
        return
    }
    # the same workdir for the runner that takes over (the scenario counts its bash calls)
    rl_runner_start "$RL_DIR/lost2/workdir" "$RL_DIR/lost.log" "$MANIFEST"
    rl_runner_wait 30
    rc=$RL_RUNNER_RC
    rl_req api POST /_emulator/v1/faults '{}'
    log_since "$seq0"
    t_check lease_lost.exit_status [ "$rc" = 3 ]
    t_check lease_lost.got_412 [ "$(q 'map(select((.path | endswith("/heartbeat")) and .status == 412)) | length')" = 1 ]
    t_check lease_lost.no_stop [ "$(q 'map(select(.path | endswith("/stop"))) | length')" = 0 ]
    # the item went back to the queue: a new runner claims it, reconciles, and finishes the
    # session without running the first call again
    rl_play tests/scenarios/fault-heartbeat-412.json "$RL_DIR/lost2" "$MANIFEST"
    t_check lease_lost.reclaimed_and_passed [ "$RL_VERDICT" = passed ]
}

# ---- the session read fails at start --------------------------------------------------------

test_session_outage() {
    local seq0 fault
    seq0=$(last_seq)
    rl_setup bash-echo tests/scenarios/bash-echo.json || return 1
    rl_claim || {
        t_fail session_outage "no work item"
        return
    }
    fault=$(jq -cn --arg p "/v1/sessions/$RL_SID"         '{http_error_rate: 1, http_error_statuses: [503], http_error_paths: [$p]}')
    rl_req api POST /_emulator/v1/faults "$fault"
    rl_runner_start "$RL_DIR/outage/workdir" "$RL_DIR/outage.log" "$MANIFEST"
    sleep 3
    rl_req api POST /_emulator/v1/faults '{}'
    rl_runner_wait 40
    log_since "$seq0"
    rl_verdict
    t_check session_outage.passed [ "$RL_VERDICT" = passed ]
    t_check session_outage.exit_status [ "$RL_RUNNER_RC" = 0 ]
    t_check session_outage.retried [ "$(q "map(select(.path == \"/v1/sessions/$RL_SID\" and .status == 503)) | length")" -ge 4 ]
    t_check session_outage.logged grep -q 'session fetch failed (attempt' "$RL_DIR/outage.log"

    seq0=$(last_seq)
    rl_setup bash-echo tests/scenarios/bash-echo.json || return 1
    rl_claim || {
        t_fail session_outage.fatal "no work item"
        return
    }
    fault=$(jq -cn --arg p "/v1/sessions/$RL_SID"         '{http_error_rate: 1, http_error_statuses: [404], http_error_paths: [$p]}')
    rl_req api POST /_emulator/v1/faults "$fault"
    rl_runner_start "$RL_DIR/fatal/workdir" "$RL_DIR/fatal.log" "$MANIFEST"
    rl_runner_wait 20
    rl_req api POST /_emulator/v1/faults '{}'
    log_since "$seq0"
    t_check session_outage.fatal_exit_status [ "$RL_RUNNER_RC" = 1 ]
    t_check session_outage.fatal_not_retried [ "$(q "map(select(.path == \"/v1/sessions/$RL_SID\")) | length")" = 1 ]
    t_check session_outage.fatal_stopped [ "$(q 'map(select(.path | endswith("/stop"))) | length')" = 1 ]
}

# ---- SIGTERM mid-tool ----------------------------------------------------------------------

test_sigterm_mid_tool() {
    local seq0 t0 elapsed rc end marker=31.4159
    load_scenario "{\"name\":\"rl-sigterm\",\"agent\":{\"tools\":[{\"type\":\"agent_toolset_20260401\"}]},
        \"turns\":[{\"user\":\"go\",\"steps\":[
          {\"tool\":\"bash\",\"input\":{\"command\":\"echo started; sleep $marker; echo finished\"},
           \"expect\":{\"is_error\":true,\"contains\":\"tool call cancelled: worker shutting down\",
                      \"not_contains\":\"finished\",\"wait_ms\":30000}}]}]}" || {
        t_fail sigterm_mid_tool "cannot load scenario: $(head -c 200 "$RL_DIR/body")"
        return
    }
    rl_setup rl-sigterm tests/scenarios/bash-echo.json || return 1
    seq0=$(last_seq)
    rl_claim || {
        t_fail sigterm_mid_tool "no work item"
        return
    }
    rl_runner_start "$RL_DIR/term2/workdir" "$RL_DIR/sigterm.log"
    end=$((SECONDS + 15))
    # "slee[p]": the pattern must not match the command line of the shell that runs pgrep
    while [ $SECONDS -lt $end ] && ! pgrep -f "slee[p] $marker" >/dev/null; do sleep 0.1; done
    t_check sigterm_mid_tool.tool_running bash -c "pgrep -f 'slee[p] $marker' >/dev/null"
    t0=$(date +%s%N)
    kill -TERM "$RL_RUNNER_PID"
    rl_runner_wait 35
    rc=$RL_RUNNER_RC
    elapsed=$((($(date +%s%N) - t0) / 1000000))
    sleep 0.3
    log_since "$seq0"
    t_check sigterm_mid_tool.exit_status [ "$rc" = 0 ]
    t_check sigterm_mid_tool.within_30s [ "$elapsed" -lt 30000 ]
    echo "# SIGTERM to exit: ${elapsed} ms"
    t_check sigterm_mid_tool.process_group_killed bash -c "! pgrep -f 'slee[p] $marker' >/dev/null"
    t_check sigterm_mid_tool.result_posted [ "$(q 'map(select(.method == "POST" and (.path | endswith("/events")) and .status == 200)) | length')" = 1 ]
    t_check sigterm_mid_tool.stopped [ "$(q 'map(select(.path | endswith("/stop"))) | length')" = 1 ]
    rl_verdict
    t_check sigterm_mid_tool.verdict_step_passed [ "$(jq -r '.steps[0].passed' "$RL_DIR/verdict.json")" = true ]
}

# ---- configuration errors ------------------------------------------------------------------

test_config_errors() {
    local seq0 rc
    rl_setup bash-echo || return 1
    rl_claim || {
        t_fail config_errors "no work item"
        return
    }
    seq0=$(last_seq)
    printf '{"version":1,"tools":[{"name":"bash","program":"/bin/true"}]}' >"$RL_DIR/bad.json"
    rl_runner_start "$RL_DIR/cfg/workdir" "$RL_DIR/badmanifest.log" "$RL_DIR/bad.json"
    rl_runner_wait 10
    t_check config_errors.bad_manifest_exit_2 [ "$RL_RUNNER_RC" = 2 ]
    t_check config_errors.bad_manifest_message grep -q 'custom tools manifest' "$RL_DIR/badmanifest.log"
    (
        export ANTHROPIC_BASE_URL=$RL_B ANTHROPIC_ENVIRONMENT_ID=$RL_ENV \
            ANTHROPIC_WORK_ID=not-a-work-id ANTHROPIC_SESSION_ID=$RL_SID
        read -r ANTHROPIC_WORK_SECRET <"$RL_DIR/secret"
        export ANTHROPIC_WORK_SECRET
        exec "$RL_RUNNER"
    ) >"$RL_DIR/badid.log" 2>&1
    rc=$?
    t_check config_errors.bad_id_exit_2 [ "$rc" = 2 ]
    t_check config_errors.bad_id_names_variable grep -q 'ANTHROPIC_WORK_ID is not a valid id' "$RL_DIR/badid.log"
    t_check config_errors.no_secret_in_logs bash -c "! grep -qF \"\$(cat '$RL_DIR/secret')\" '$RL_DIR/badid.log' '$RL_DIR/badmanifest.log'"
    log_since "$seq0"
    t_check config_errors.nothing_claimed [ "$(q 'length')" = 0 ]
    # the item stays acked but never heartbeated; the emulator's lease expiry re-queues it
}

# ---- heartbeat during a long command -------------------------------------------------------

test_heartbeat_on_time() {
    local seq0 gaps max beats
    load_scenario "{\"name\":\"rl-long\",\"agent\":{\"tools\":[{\"type\":\"agent_toolset_20260401\"}]},
        \"turns\":[{\"user\":\"go\",\"steps\":[
          {\"tool\":\"bash\",\"input\":{\"command\":\"sleep $LONG_S; echo slept\",\"timeout_ms\":$(((LONG_S + 30) * 1000))},
           \"expect\":{\"is_error\":false,\"text\":\"slept\",\"wait_ms\":$(((LONG_S + 30) * 1000))}}]}]}" || {
        t_fail heartbeat_on_time "cannot load scenario: $(head -c 200 "$RL_DIR/body")"
        return
    }
    rl_setup rl-long tests/scenarios/bash-echo.json || return 1
    rl_req api POST /_emulator/v1/faults '{"lease_ttl_seconds":4}'
    seq0=$(last_seq)
    rl_claim || {
        t_fail heartbeat_on_time "no work item"
        return
    }
    RL_MAX_IDLE_MS=500 rl_runner_start "$RL_DIR/long/workdir" "$RL_DIR/long.log"
    rl_runner_wait $((LONG_S + 40))
    rl_req api POST /_emulator/v1/faults '{}'
    log_since "$seq0"
    # seconds of day of every heartbeat, then the largest gap (ms)
    gaps=$(q '[.[] | select(.path | endswith("/heartbeat")) | .time
               | capture("T(?<h>[0-9]+):(?<m>[0-9]+):(?<s>[0-9.]+)")
               | (.h | tonumber) * 3600 + (.m | tonumber) * 60 + (.s | tonumber)]
              | [range(1; length) as $i | .[$i] - .[$i - 1]] | (max // 0) * 1000 | floor')
    beats=$(q 'map(select(.path | endswith("/heartbeat"))) | length')
    max=${gaps:-99999}
    echo "# ${LONG_S} s command: $beats heartbeats, largest gap ${max} ms (interval 2000 ms, TTL 4000 ms)"
    t_check heartbeat_on_time.exit_status [ "$RL_RUNNER_RC" = 0 ]
    t_check heartbeat_on_time.enough_beats [ "$beats" -ge $((LONG_S / 2 - 2)) ]
    t_check heartbeat_on_time.gap_under_ttl [ "$max" -lt 4000 ]
    t_check heartbeat_on_time.all_200 [ "$(q 'map(select((.path | endswith("/heartbeat")) and .status != 200)) | length')" = 0 ]
    rl_verdict
    t_check heartbeat_on_time.verdict [ "$RL_VERDICT" = passed ]
}

test_request_order
test_terminated_session
test_lease_lost
test_session_outage
test_sigterm_mid_tool
test_config_errors
test_heartbeat_on_time
t_done
