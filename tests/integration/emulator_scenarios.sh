#!/usr/bin/env bash
# tests/integration/emulator_scenarios.sh - runcell-emulator's scenario player and its own
# endpoints (scenario.md §1-§3) with real curl standing in for the worker: verdicts for passing,
# failing, mispaired and timed-out steps, permission ask/deny, no_result, two turns with a pause
# (a new work item for the dormant session), terminate; then the request log, fault injection
# and stats.
. "$(dirname "$0")/emulator_lib.sh"

mkdir -p "$EM_DIR/sc"
TOOLS='[{"type":"agent_toolset_20260401"},{"type":"custom","name":"run_tests","description":"Run tests","input_schema":{"type":"object","properties":{"filter":{"type":"string"}}}}]'
cat >"$EM_DIR/sc/basic.json" <<EOF
{"name":"basic","description":"one of each step kind",
 "agent":{"tools":$TOOLS},"session":{"metadata":{"from":"scenario"}},
 "turns":[{"user":"go","steps":[
   {"tool":"bash","input":{"command":"echo hi"},"expect":{"is_error":false,"text":"hi"}},
   {"custom_tool":"run_tests","input":{"filter":"unit"},"expect":{"contains":"passed","matches":"^[0-9]+ passed"}},
   {"tool":"frobnicate","input":{},"expect":{"no_result":true,"wait_ms":300}},
   {"sleep_ms":100},
   {"message":"All done."}]}]}
EOF
cat >"$EM_DIR/sc/bad.txt" <<EOF
not a scenario (ignored: not *.json)
EOF
em_start --scenarios "$EM_DIR/sc"

mk_env ENV sc
mk_key ek "$ENV"
mk_agent AGENT
W="/v1/environments/$ENV/work"

events() { api GET "/v1/sessions/$1/events?limit=1000${2:+&types%5B%5D=$2}"; }
# wait_events SID TYPE N: until the session has N events of TYPE
wait_events() {
    local end=$((SECONDS + ${4:-5}))
    while [ $SECONDS -le $end ]; do
        events "$1" "$2"
        [ "$(jb '.data|length')" -ge "$3" ] && return 0
        sleep 0.05
    done
    return 1
}
last_call() {
    events "$1" "$2"
    jb '.data[-1].id'
}
verdict() { admin GET "/sessions/$1/verdict"; }
wait_verdict() {
    local end=$((SECONDS + ${2:-5}))
    while [ $SECONDS -le $end ]; do
        verdict "$1"
        [ "$(jb .state)" != running ] && return 0
        sleep 0.05
    done
    return 1
}
result() { # CRED SID TYPE IDKEY ID IS_ERROR TEXT
    req "$1" POST "/v1/sessions/$2/events" "{\"events\":[{\"type\":\"$3\",\"$4\":\"$5\",\"is_error\":$6,\"content\":[{\"type\":\"text\",\"text\":\"$7\"}]}]}"
}
claim() { # ENV CRED -> WID, token cred "tok"
    poll_item "$2" "$1" WID TOK
    bearer tok "$TOK"
    req "$2" POST "/v1/environments/$1/work/$WID/ack"
    req tok POST "/v1/environments/$1/work/$WID/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"
}
scenario() { # NAME TURNS-JSON: load through the admin endpoint
    admin POST /scenarios "{\"name\":\"$1\",\"agent\":{\"tools\":$TOOLS},\"turns\":$2}"
}

# ---- a passing scenario, driven by a curl "worker" ----
mk_session SID "$AGENT" "$ENV" '"metadata":{"scenario":"basic"}'
check scenario_session_created test "$ST" = 200
check scenario_metadata_merged test "$(jb '.metadata.scenario+" "+.metadata.from')" = "basic scenario"
check scenario_tools_on_session test "$(jb '[.agent.tools[].type]|join(",")')" = "agent_toolset_20260401,custom"
claim "$ENV" ek
check scenario_queued_work test "$WID" != ""
events "$SID"
check scenario_first_events test "$(jb '[.data[].type]|join(",")')" = "user.message,session.status_running,agent.tool_use,session.status_idle"
check scenario_user_text test "$(jb '.data[0].content[0].text')" = go
C1=$(last_call "$SID" agent.tool_use)
verdict "$SID"
check verdict_running test "$(jb '.scenario+" "+.state')" = "basic running"
result tok "$SID" user.tool_result tool_use_id "$C1" false hi
check scenario_result_accepted test "$ST" = 200
wait_events "$SID" agent.custom_tool_use 1
C2=$(last_call "$SID" agent.custom_tool_use)
check custom_call_input test "$(jb '.data[-1]|.name+" "+.input.filter')" = "run_tests unit"
result tok "$SID" user.custom_tool_result custom_tool_use_id "$C2" false "12 passed, 0 failed"
wait_events "$SID" agent.tool_use 2
check unknown_tool_emitted test "$(jb '.data[-1].name')" = frobnicate
check scenario_passes wait_verdict "$SID" 3
check verdict_passed test "$(jb '.state+" "+(.steps|length|tostring)+" "+(all(.steps[]; .passed)|tostring)')" = "passed 5 true"
check verdict_step_indices test "$(jb '[.steps[]|"\(.turn).\(.step)"]|join(",")')" = "0.0,0.1,0.2,0.3,0.4"
events "$SID"
check scenario_ends_end_turn test "$(jb '.data[-1]|.type+" "+.stop_reason.type')" = "session.status_idle end_turn"
check scenario_message_step test "$(jb '[.data[]|select(.type=="agent.message")|.content[0].text]|join(",")')" = "All done."
result tok "$SID" user.tool_result tool_use_id "$(jb '[.data[]|select(.type=="agent.tool_use")][-1].id')" false late
verdict "$SID"
check late_result_for_no_result_call_fails test "$(jb .state)" = failed

# ---- the admin scenario endpoint ----
admin POST /scenarios '{"name":"bad name!","agent":{"tools":[]},"turns":[]}'
check_error scenario_invalid_400 400 invalid_request_error
admin POST /scenarios '{"name":"x","agent":{"tools":[{"type":"custom","name":"bash","input_schema":{"type":"object"}}]},"turns":[{"user":"u","steps":[]}]}'
check_error scenario_bad_agent_tools_400 400 invalid_request_error
scenario expect-fail '[{"user":"u","steps":[{"tool":"bash","input":{"command":"echo hi"},"expect":{"text":"hi"}}]}]'
check scenario_loaded test "$ST $(jb .name)" = "200 expect-fail"

# ---- failing expectation ----
mk_env E2 fail
mk_key ek2 "$E2"
mk_session S2 "$AGENT" "$E2" '"metadata":{"scenario":"expect-fail"}'
claim "$E2" ek2
result tok "$S2" user.tool_result tool_use_id "$(last_call "$S2" agent.tool_use)" false nope
wait_verdict "$S2" 3
check verdict_failed test "$(jb '.state+" "+(.steps[0].passed|tostring)')" = "failed false"
check verdict_failure_detail test -n "$(jb '.steps[0].detail')"

# ---- wrong pairing fails the scenario (and the send) ----
mk_session S3 "$AGENT" "$E2" '"metadata":{"scenario":"expect-fail"}'
C3=$(last_call "$S3" agent.tool_use)
api POST "/v1/sessions/$S3/events" "{\"events\":[{\"type\":\"user.custom_tool_result\",\"custom_tool_use_id\":\"$C3\",\"is_error\":false,\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}"
check_error wrong_pairing_refused 400 invalid_request_error
verdict "$S3"
check wrong_pairing_fails_verdict test "$(jb .state)" = failed

# ---- a result that never comes ----
scenario timeout '[{"user":"u","steps":[{"tool":"bash","input":{"command":"true"},"expect":{"wait_ms":300}}]}]'
mk_session S4 "$AGENT" "$E2" '"metadata":{"scenario":"timeout"}'
check timeout_fails wait_verdict "$S4" 3
check timeout_detail test "$(jb '.state+" "+.steps[0].detail')" = "failed no result within 300 ms"
events "$S4"
check timeout_ends_turn test "$(jb '.data[-1].stop_reason.type')" = end_turn

# ---- permission ask: the emulator confirms; deny resolves server-side ----
scenario ask '[{"user":"u","steps":[
  {"tool":"bash","input":{"command":"echo a"},"permission":"ask","confirm":"allow","expect":{"text":"a"}},
  {"tool":"bash","input":{"command":"echo b"},"permission":"ask","confirm":"deny","expect":{"no_result":true,"wait_ms":200}},
  {"tool":"bash","input":{"command":"echo c"},"permission":"deny","expect":{"no_result":true,"wait_ms":200}}]}]'
scenario ask-ext '[{"user":"u","steps":[{"tool":"bash","input":{"command":"echo x"},"permission":"ask","expect":{"text":"x","wait_ms":5000}}]}]'
mk_session S9 "$AGENT" "$E2" '"metadata":{"scenario":"ask-ext"}'
A0=$(last_call "$S9" agent.tool_use)
check ask_evaluated test "$(jb '.data[-1].evaluated_permission+" "+.data[-1].evaluation.type')" = "ask always_ask"
result api "$S9" user.tool_result tool_use_id "$A0" false x
check_error ask_result_before_confirmation_400 400 invalid_request_error
api POST "/v1/sessions/$S9/events" "{\"events\":[{\"type\":\"user.tool_confirmation\",\"tool_use_id\":\"$A0\",\"result\":\"allow\"}]}"
check external_confirmation_200 test "$ST" = 200
result api "$S9" user.tool_result tool_use_id "$A0" false x
check result_after_confirmation_200 test "$ST" = 200
wait_verdict "$S9" 3
check early_result_counts_against_scenario test "$(jb .state)" = failed
mk_session S5 "$AGENT" "$E2" '"metadata":{"scenario":"ask"}'
A1=$(last_call "$S5" agent.tool_use)
wait_events "$S5" user.tool_confirmation 1
check emulator_confirms_allow test "$(jb '.data[0]|.tool_use_id+" "+.result')" = "$A1 allow"
result api "$S5" user.tool_result tool_use_id "$A1" false a
wait_events "$S5" user.tool_confirmation 2
check emulator_confirms_deny test "$(jb '.data[1].result')" = deny
check ask_scenario_passes wait_verdict "$S5" 3
check ask_verdict test "$(jb .state)" = passed
events "$S5" agent.tool_use
check deny_call_evaluated_deny test "$(jb '.data[2].evaluated_permission')" = deny
events "$S5" user.tool_result
check denials_get_synthetic_results test "$(jb '[.data[]|select(.is_error)]|length')" = 2

# ---- two turns with a pause: the dormant session gets a new work item ----
scenario two-turns '[{"user":"one","steps":[{"tool":"bash","input":{"command":"echo 1"},"expect":{"text":"1"}}],"pause_after_ms":400},
                     {"user":"two","steps":[{"tool":"bash","input":{"command":"echo 2"},"expect":{"text":"2"}}]}]'
mk_env E6 turns
mk_key ek6 "$E6"
mk_session S6 "$AGENT" "$E6" '"metadata":{"scenario":"two-turns"}'
claim "$E6" ek6
W6=$WID
result tok "$S6" user.tool_result tool_use_id "$(last_call "$S6" agent.tool_use)" false 1
req tok POST "/v1/environments/$E6/work/$W6/stop" '{"force":true}'
check turn1_worker_stops test "$ST" = 204
check second_turn_starts wait_events "$S6" user.message 2 3
api GET "/v1/environments/$E6/work"
check second_turn_queues_new_item test "$(jb '[.data[].state]|join(",")')" = "stopped,queued"
claim "$E6" ek6
check second_item_differs test "$WID" != "$W6"
wait_events "$S6" agent.tool_use 2
result tok "$S6" user.tool_result tool_use_id "$(last_call "$S6" agent.tool_use)" false 2
check two_turns_pass wait_verdict "$S6" 3
check two_turns_verdict test "$(jb .state)" = passed

# ---- terminate mid-turn ----
scenario term '[{"user":"u","steps":[{"message":"bye"},{"terminate":true},{"message":"never"}],"end":"none"}]'
mk_session S7 "$AGENT" "$E6" '"metadata":{"scenario":"term"}'
verdict "$S7"
check terminate_passes test "$(jb .state)" = passed
api GET "/v1/sessions/$S7"
check terminate_status test "$(jb .status)" = terminated
events "$S7"
check terminate_event_last test "$(jb '.data[-1].type')" = session.status_terminated

admin GET /sessions/sesn_nope/verdict
check_error verdict_unknown_session_404 404 not_found_error
mk_session PLAIN "$AGENT" "$E6"
admin GET "/sessions/$PLAIN/verdict"
check_error verdict_without_scenario_404 404 not_found_error

# ---- request log ----
admin GET "/requests?since=0"
check requests_log_status test "$ST" = 200
check requests_have_seq test "$(jb '.data[0].seq')" = 1
check requests_cred_kinds test "$(jb '[.data[].credential]|unique|join(",")')" = "api_key,environment_key,session_token"
check requests_have_header_names test "$(jb '[.data[]|select(.credential=="session_token")][0].headers|index("authorization")!=null')" = true
N=$(jb .last_seq)
api GET /v1/environments
admin GET "/requests?since=$N"
check requests_since test "$(jb '.data|length') $(jb '.data[0].path')" = "1 /v1/environments"
admin GET "/requests?since=0"
cp "$EM_DIR/body" "$EM_DIR/reqlog"
check requests_log_has_no_api_key bash -c "! grep -qF '$API_KEY' '$EM_DIR/reqlog'"
check requests_log_has_no_env_key bash -c "! grep -qF \"\$(sed -n 's/^Authorization: Bearer //p' '$EM_DIR/cred.ek')\" '$EM_DIR/reqlog'"
check requests_log_has_no_token bash -c "! grep -qF \"\$(sed -n 's/^Authorization: Bearer //p' '$EM_DIR/cred.tok')\" '$EM_DIR/reqlog'"
check requests_log_excludes_admin test "$(jq '[.data[]|select(.path|startswith("/_emulator"))]|length' "$EM_DIR/reqlog")" = 0

# ---- faults ----
admin POST /faults '{"bogus":1}'
check_error faults_unknown_key_400 400 invalid_request_error
admin POST /faults '{"http_error_rate":2}'
check_error faults_bad_rate_400 400 invalid_request_error
admin POST /faults '{"http_error_statuses":[200]}'
check_error faults_bad_status_400 400 invalid_request_error
admin POST /faults '{"http_error_rate":1,"http_error_statuses":[429],"http_error_paths":["/events"],"seed":1}'
check faults_set test "$ST $(jb .http_error_rate)" = "200 1"
api GET "/v1/sessions/$S7/events"
check_error fault_429 429 rate_limit_error
check fault_429_retry_after test "$(hdr retry-after)" = 1
api GET "/v1/sessions/$S7"
check fault_path_filter test "$ST" = 200
admin POST /faults '{"http_error_rate":1,"http_error_statuses":[503]}'
req ek6 GET "/v1/environments/$E6/work/poll"
check_error fault_all_paths_503 503 api_error
admin POST /faults '{}'
api GET "/v1/sessions/$S7/events"
check faults_cleared test "$ST" = 200
admin POST /faults '{"latency_ms":300}'
start=$(date +%s%N)
api GET /v1/environments
ms=$((($(date +%s%N) - start) / 1000000))
check fault_latency test "$ms" -ge 290
admin POST /faults '{"stream_drop_after_events":2}'
mk_session S8 "$AGENT" "$E6"
curl -sS -N -m 10 -H "@$EM_DIR/cred.api" -H "anthropic-beta: $BETA" "$B/v1/sessions/$S8/events/stream" >"$EM_DIR/drop" 2>/dev/null &
DROP_PID=$!
BG_PIDS+=($DROP_PID)
sleep 0.3
api POST "/v1/sessions/$S8/events" '{"events":[{"type":"user.message","content":"hello"}]}'
for _ in $(seq 60); do kill -0 "$DROP_PID" 2>/dev/null || break; sleep 0.05; done
check fault_stream_drop_closes bash -c "! kill -0 $DROP_PID 2>/dev/null"
check fault_stream_drop_after_2 test "$(grep -c '^event: ' "$EM_DIR/drop")" = 2
admin POST /faults '{}'

# ---- stats ----
admin GET /stats
check stats_shape test "$(jb '[(.sessions|has("idle") and has("running") and has("terminated")),(.work_items|has("queued") and has("active") and has("stopped")),(.webhooks|has("delivered")),(.streams_open|type)]|@csv')" = 'true,true,true,"number"'
check stats_scenarios test "$(jb '.scenarios.passed >= 3 and .scenarios.failed >= 3')" = true
check stats_terminated test "$(jb '.sessions.terminated >= 1')" = true
t_done
