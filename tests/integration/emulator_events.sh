#!/usr/bin/env bash
# tests/integration/emulator_events.sh - runcell-emulator's session events with real curl: the
# SSE stream (9.2: headers at once, named events, no replay, pings, session.deleted closes),
# stream-first-then-list (9.2.8), list pagination and filters (9.1), send with echo and the
# pairing rules (9.3), permission gating (11.7), interrupt (19.4.2), termination (19.3.3) and the
# default agent's "run <command>" convention (19.8).
. "$(dirname "$0")/emulator_lib.sh"

em_start --ping-interval-ms 300

mk_env ENV ev
mk_env ENV2 other
mk_key ek "$ENV"
mk_key ek2 "$ENV2"
mk_agent AGENT
mk_session SID "$AGENT" "$ENV"

# stream NAME CRED SESSION: open an SSE stream in the background (raw output with headers).
stream() {
    curl -sS -N -i -m 60 -H "@$EM_DIR/cred.$2" -H "anthropic-beta: $BETA" \
        "$B/v1/sessions/$3/events/stream" >"$EM_DIR/stream.$1" 2>/dev/null &
    BG_PIDS+=($!)
    printf -v "PID_$1" '%s' $!
}
# wait_for FILE PATTERN [SECONDS]
wait_for() {
    local end=$((SECONDS + ${3:-5}))
    while [ $SECONDS -le $end ]; do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
# frames FILE: the data of every named frame as JSON lines {"event":..,"data":..}
frames() {
    tr -d '\r' <"$1" | awk '
        /^event: / { ev = substr($0, 8) }
        /^data: / { data = substr($0, 7) }
        /^$/ { if (data != "") { printf "{\"event\":\"%s\",\"data\":%s}\n", ev, data }; ev = ""; data = "" }'
}
ids_on_stream() { frames "$1" | jq -r 'select(.event != "ping") | .data.id'; }
msg() { printf '{"events":[{"type":"user.message","content":[{"type":"text","text":"%s"}]}]}' "$1"; }

# ---- the stream opens at once ----
start=$(date +%s%N)
stream A api "$SID"
check stream_headers_at_once wait_for "$EM_DIR/stream.A" '^HTTP/1.1 200' 1
ms=$((($(date +%s%N) - start) / 1000000))
check stream_headers_under_500ms test "$ms" -lt 500
check stream_content_type grep -qi '^content-type: text/event-stream' "$EM_DIR/stream.A"
check stream_no_cache grep -qi '^cache-control: no-cache' "$EM_DIR/stream.A"
check stream_pings wait_for "$EM_DIR/stream.A" '^event: ping' 2

# ---- send, echo, default agent ----
api POST "/v1/sessions/$SID/events" "$(msg 'run echo hi')"
check send_user_message_200 test "$ST" = 200
check echo_shape test "$(jb '.data[0]|[.type,(.id|startswith("sevt_")),(.processed_at==null),.content[0].text]|@csv')" = '"user.message",true,true,"run echo hi"'
check stream_gets_tool_use wait_for "$EM_DIR/stream.A" '^event: agent.tool_use' 3
wait_for "$EM_DIR/stream.A" 'requires_action' 3
CALL=$(frames "$EM_DIR/stream.A" | jq -r 'select(.event=="agent.tool_use")|.data.id' | head -n1)
check tool_use_is_bash_with_command test "$(frames "$EM_DIR/stream.A" | jq -r 'select(.event=="agent.tool_use")|.data|.name+" "+.input.command+" "+.evaluated_permission')" = "bash echo hi allow"
check every_frame_named bash -c "tr -d '\r' <'$EM_DIR/stream.A' | awk '/^data: /{ if (!named) bad=1 } /^event: /{named=1} /^\$/{named=0} END{exit bad}'"
check event_name_equals_type test "$(frames "$EM_DIR/stream.A" | jq -r 'select(.event!="ping" and .event!=.data.type)' | wc -l)" = 0
check frames_carry_id_line grep -q '^id: sevt_' "$EM_DIR/stream.A"
check idle_lists_call test "$(frames "$EM_DIR/stream.A" | jq -r "select(.event==\"session.status_idle\")|.data.stop_reason|.type+\" \"+(.event_ids|join(\",\"))" | tail -n1)" = "requires_action $CALL"
api GET "/v1/sessions/$SID"
check session_idle_requires_action test "$(jb .status)" = idle

# ---- stream first, then list: every streamed event is in the list ----
api GET "/v1/sessions/$SID/events?limit=1000"
ids_on_stream "$EM_DIR/stream.A" | sort >"$EM_DIR/streamed"
jb '.data[].id' | sort >"$EM_DIR/listed"
check streamed_events_are_listed test -z "$(comm -23 "$EM_DIR/streamed" "$EM_DIR/listed")"
check list_order_chronological test "$(jb '[.data[].type]|join(",")')" = "user.message,session.status_running,agent.tool_use,session.status_idle"
check list_next_page_null test "$(jb .next_page)" = null

# ---- no replay on a new stream ----
stream C api "$SID"
wait_for "$EM_DIR/stream.C" '^HTTP/1.1 200' 2
sleep 0.2

# ---- pairing rules: refused sends change nothing ----
n_events=$(jb '.data|length')
api POST "/v1/sessions/$SID/events" "{\"events\":[{\"type\":\"user.custom_tool_result\",\"custom_tool_use_id\":\"$CALL\",\"is_error\":false,\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]}"
check_error wrong_pairing_400 400 invalid_request_error
api POST "/v1/sessions/$SID/events" '{"events":[{"type":"user.tool_result","tool_use_id":"sevt_unknown","is_error":false,"content":[{"type":"text","text":"x"}]}]}'
check_error unknown_tool_use_id_400 400 invalid_request_error
api POST "/v1/sessions/$SID/events" "{\"events\":[{\"type\":\"user.tool_result\",\"tool_use_id\":\"$CALL\",\"is_error\":true,\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"AA==\"}}]}]}"
check_error error_result_must_be_text_400 400 invalid_request_error
api POST "/v1/sessions/$SID/events" "{\"events\":[{\"type\":\"user.tool_result\",\"tool_use_id\":\"$CALL\",\"is_error\":true,\"content\":[]}]}"
check_error error_result_must_not_be_empty_400 400 invalid_request_error
api POST "/v1/sessions/$SID/events" "{\"events\":[{\"type\":\"user.tool_result\",\"tool_use_id\":\"$CALL\",\"is_error\":false,\"content\":[{\"type\":\"text\",\"text\":\"\"}]}]}"
check_error empty_text_block_400 400 invalid_request_error
api POST "/v1/sessions/$SID/events" "{\"events\":[{\"type\":\"user.tool_result\",\"tool_use_id\":\"$CALL\",\"is_error\":\"no\"}]}"
check_error is_error_not_bool_400 400 invalid_request_error
ok_result="{\"type\":\"user.tool_result\",\"tool_use_id\":\"$CALL\",\"is_error\":false,\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}"
api POST "/v1/sessions/$SID/events" "{\"events\":[$ok_result,$ok_result]}"
check_error duplicate_in_one_request_400 400 invalid_request_error
api POST "/v1/sessions/$SID/events" '{"events":[]}'
check_error empty_events_400 400 invalid_request_error
api POST "/v1/sessions/$SID/events" '{"events":[{"type":"agent.message","content":[]}]}'
check_error agent_event_cannot_be_sent_400 400 invalid_request_error
req ek POST "/v1/sessions/$SID/events" "$(msg hello)"
check_error env_key_cannot_send_user_message_403 403 permission_error
req ek2 POST "/v1/sessions/$SID/events" "{\"events\":[$ok_result]}"
check_error env_key_of_other_env_cannot_send_403 403 permission_error
api GET "/v1/sessions/$SID/events?limit=1000"
check refused_sends_changed_nothing test "$(jb '.data|length')" = "$n_events"

# ---- a good result (environment key), then the duplicate ----
req ek POST "/v1/sessions/$SID/events" "{\"events\":[$ok_result]}"
check result_accepted test "$ST $(jb '.data[0]|.type+" "+(.processed_at!=null|tostring)+" "+(.id|startswith("sevt_")|tostring)')" = "200 user.tool_result true true"
req ek POST "/v1/sessions/$SID/events" "{\"events\":[$ok_result]}"
check_error duplicate_result_400 400 invalid_request_error
check default_agent_quotes_result wait_for "$EM_DIR/stream.A" 'Result:\\nhi' 3
check turn_ends_end_turn wait_for "$EM_DIR/stream.A" '"stop_reason":{"type":"end_turn"}' 3
check new_stream_no_replay bash -c "! grep -q 'agent.tool_use' '$EM_DIR/stream.C'"
check new_stream_gets_new_events grep -q '^event: user.tool_result' "$EM_DIR/stream.C"

# ---- list: pagination, order, filters ----
api GET "/v1/sessions/$SID/events?limit=2"
check list_page_1 test "$(jb '(.data|length|tostring)+" "+(.next_page!=null|tostring)')" = "2 true"
all=0
page=""
while :; do
    api GET "/v1/sessions/$SID/events?limit=2${page:+&page=$page}"
    all=$((all + $(jb '.data|length')))
    page=$(jb '.next_page // empty')
    [ -n "$page" ] || break
    [ "$(jb '.data|length')" -gt 0 ] || { t_fail list_no_empty_page_with_cursor; break; }
done
api GET "/v1/sessions/$SID/events?limit=1000"
total=$(jb '.data|length')
check list_pages_cover_all test "$all" = "$total"
first=$(jb '.data[0].id')
last=$(jb '.data[-1].id')
api GET "/v1/sessions/$SID/events?limit=1000&order=desc"
check list_order_desc test "$(jb '.data[0].id') $(jb '.data[-1].id')" = "$last $first"
api GET "/v1/sessions/$SID/events?order=sideways"
check_error list_bad_order_400 400 invalid_request_error
api GET "/v1/sessions/$SID/events?types%5B%5D=agent.tool_use&types%5B%5D=user.tool_result"
check list_types_filter test "$(jb '[.data[].type]|join(",")')" = "agent.tool_use,user.tool_result"
api GET "/v1/sessions/$SID/events?created_at%5Bgt%5D=2999-01-01T00%3A00%3A00Z"
check list_created_at_filter test "$(jb '.data|length')" = 0
api GET "/v1/sessions/$SID/events?created_at%5Bgt%5D=yesterday"
check_error list_bad_bound_400 400 invalid_request_error

# ---- permission gating: always_ask (11.7) ----
mk_agent ASK '[{"type":"agent_toolset_20260401","default_config":{"permission_policy":{"type":"always_ask"}}}]'
mk_session SA "$ASK" "$ENV"
api POST "/v1/sessions/$SA/events" "$(msg 'run echo ask')"
sleep 0.2
api GET "/v1/sessions/$SA/events?types%5B%5D=agent.tool_use"
ACALL=$(jb '.data[0].id')
check ask_call_evaluated_ask test "$(jb '.data[0]|.evaluated_permission+" "+.evaluation.type')" = "ask always_ask"
api POST "/v1/sessions/$SA/events" "{\"events\":[{\"type\":\"user.tool_result\",\"tool_use_id\":\"$ACALL\",\"is_error\":false,\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]}"
check_error result_before_allow_400 400 invalid_request_error
api POST "/v1/sessions/$SA/events" '{"events":[{"type":"user.tool_confirmation","tool_use_id":"sevt_nope","result":"allow"}]}'
check_error confirmation_unknown_call_400 400 invalid_request_error
api POST "/v1/sessions/$SA/events" "{\"events\":[{\"type\":\"user.tool_confirmation\",\"tool_use_id\":\"$ACALL\",\"result\":\"maybe\"}]}"
check_error confirmation_bad_result_400 400 invalid_request_error
api POST "/v1/sessions/$SA/events" "{\"events\":[{\"type\":\"user.tool_confirmation\",\"tool_use_id\":\"$ACALL\",\"result\":\"deny\",\"deny_message\":\"no\"}]}"
check confirmation_deny_200 test "$ST" = 200
sleep 0.1
api GET "/v1/sessions/$SA/events?limit=1000"
check deny_synthetic_error_result test "$(jb "[.data[]|select(.type==\"user.tool_result\" and .tool_use_id==\"$ACALL\")|.is_error]|@csv")" = true
api POST "/v1/sessions/$SA/events" "{\"events\":[{\"type\":\"user.tool_confirmation\",\"tool_use_id\":\"$ACALL\",\"result\":\"allow\"}]}"
check_error confirmation_twice_400 400 invalid_request_error

# ---- interrupt (19.4.2) and dormant sessions ----
mk_session SI "$AGENT" "$ENV"
api POST "/v1/sessions/$SI/events" "$(msg 'run sleep 100')"
sleep 0.2
api POST "/v1/sessions/$SI/events" '{"events":[{"type":"user.interrupt"}]}'
check interrupt_200 test "$ST" = 200
api GET "/v1/sessions/$SI/events?limit=1000"
check interrupt_ends_turn test "$(jb '.data[-1]|.type+" "+.stop_reason.type')" = "session.status_idle end_turn"

# ---- stream errors, termination, deletion ----
req none GET "/v1/sessions/$SID/events/stream"
check_error stream_without_credential_401 401 authentication_error
req ek2 GET "/v1/sessions/$SID/events/stream"
check_error stream_other_env_key_403 403 permission_error
api GET /v1/sessions/sesn_nope/events/stream
check_error stream_unknown_session_404 404 not_found_error
stream T api "$SI"
wait_for "$EM_DIR/stream.T" '^HTTP/1.1 200' 2
api POST "/v1/sessions/$SI/archive"
check archive_emits_terminated wait_for "$EM_DIR/stream.T" '^event: session.status_terminated' 3
api POST "/v1/sessions/$SI/events" "$(msg again)"
check_error send_to_terminated_400 400 invalid_request_error
api DELETE "/v1/sessions/$SID"
check delete_emits_session_deleted wait_for "$EM_DIR/stream.A" '^event: session.deleted' 3
for _ in $(seq 40); do kill -0 "$PID_A" 2>/dev/null || break; sleep 0.05; done
check delete_closes_stream bash -c "! kill -0 $PID_A 2>/dev/null"
api GET "/v1/sessions/$SID/events"
check_error events_of_deleted_session_404 404 not_found_error
t_done
