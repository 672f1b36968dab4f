#!/usr/bin/env bash
# tests/integration/emulator_work.sh - runcell-emulator's work API with real curl: credential
# scoping (3.2), poll (5.2: block_ms, reclaim, empty forms, the secret), ack (5.3), heartbeat
# (5.4: NO_HEARTBEAT, exact echo, 412 with current_state, lease expiry re-queue), stop (5.5),
# stats and list (5.6, 5.7), retrieve/update (5.8) and the fault knobs that bend them.
. "$(dirname "$0")/emulator_lib.sh"

em_start

mk_env ENV work
mk_env ENV2 other
mk_key ek "$ENV"
mk_key ek2 "$ENV2"
mk_agent AGENT
W="/v1/environments/$ENV/work"

# ---- credentials ----
req ek GET "$W/poll"
check_status empty_poll_204 204
check empty_poll_no_body test ! -s "$EM_DIR/body"
req ek2 GET "$W/poll"
check_error env_key_of_other_env_403 403 permission_error
api GET "$W/poll"
check_status api_key_on_poll_tolerated 204
req none GET "$W/poll"
check_error poll_without_credential_401 401 authentication_error
req ek GET /v1/environments/env_nope/work/poll
check_error poll_unknown_env_404 404 not_found_error environment_not_found
req ek GET /v1/environments
check_error env_key_on_backend_call_403 403 permission_error

# ---- poll parameters ----
for bad in 0 1000 abc -5 1.5; do
    req ek GET "$W/poll?block_ms=$bad"
    check_error "block_ms_${bad}_400" 400 invalid_request_error
done
req ek GET "$W/poll?reclaim_older_than_ms=0"
check_error reclaim_0_400 400 invalid_request_error
start=$(date +%s%N)
req ek GET "$W/poll?block_ms=300"
ms=$((($(date +%s%N) - start) / 1000000))
check_status long_poll_empty_204 204
check long_poll_waits_block_ms test "$ms" -ge 280 -a "$ms" -lt 1500

# ---- a work item: poll, secret, reclaim ----
mk_session SID "$AGENT" "$ENV"
req ek GET "$W/poll?block_ms=999" "" -H "Anthropic-Worker-ID: host-1"
check_status poll_hands_out_item 200
WID=$(jb .id)
check poll_item_shape test "$(jb '[.type,.state,.data.type,.data.id,.environment_id]|@csv')" = "\"work\",\"queued\",\"session\",\"$SID\",\"$ENV\""
secret=$(jb .secret)
payload=$(printf '%s' "$secret" | tr '_-' '/+' | awk '{ while (length($0) % 4) $0 = $0 "="; print }' | base64 -d)
check secret_is_unpadded_base64url bash -c "! grep -q '[=+/]' <<<'$secret'"
check secret_carries_sessions_token bash -c "jq -e '.sessions_token|startswith(\"sk-ant-req-\")' >/dev/null <<<'$payload'"
bearer tok "$(jq -r .sessions_token <<<"$payload")"
check poll_content_type_json bash -c "grep -qi '^content-type: application/json' '$EM_DIR/hdr'"
req ek GET "$W/poll"
check_status second_poll_in_reclaim_window_empty 204
req ek GET "$W/stats"
check stats_pending test "$(jb '[.type,.depth,.pending,.workers_polling,(.oldest_queued_at!=null)]|@csv')" = '"work_queue_stats",0,1,1,true'
sleep 0.05
req ek GET "$W/poll?reclaim_older_than_ms=10"
check reclaim_hands_out_again test "$ST $(jb .id)" = "200 $WID"
req tok GET "$W/poll"
check_error token_on_poll_403 403 permission_error

# ---- ack ----
req ek2 POST "$W/$WID/ack"
check_error ack_other_env_key_403 403 permission_error
req ek POST "$W/$WID/ack"
check ack_starting test "$ST $(jb .state) $(jb .secret) $(jb '.acknowledged_at!=null')" = "200 starting null true"
req ek POST "$W/$WID/ack"
check_error ack_again_409 409 conflict_error
check ack_409_should_retry_false test "$(hdr x-should-retry)" = false
req ek POST "$W/work_nope/ack"
check_error ack_unknown_item_404 404 not_found_error

# ---- heartbeat ----
req tok POST "$W/$WID/heartbeat?expected_last_heartbeat=2026-01-01T00%3A00%3A00Z"
check_error heartbeat_wrong_first_412 412 invalid_request_error heartbeat_precondition_failed
check heartbeat_412_current_state test "$(jb '.error.details.current_state|[.state,(.last_heartbeat==null),.lease_extended]|@csv')" = '"starting",true,false'
req tok POST "$W/$WID/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"
check heartbeat_claims_lease test "$ST $(jb '[.type,.state,.lease_extended,.ttl_seconds]|@csv')" = '200 "work_heartbeat","active",true,300'
HB=$(jb .last_heartbeat)
check heartbeat_stamp_rfc3339_us grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z$' <<<"$HB"
req tok POST "$W/$WID/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"
check_error heartbeat_no_heartbeat_again_412 412 invalid_request_error heartbeat_precondition_failed
check heartbeat_412_shows_stored test "$(jb .error.details.current_state.last_heartbeat)" = "$HB"
req tok POST "$W/$WID/heartbeat?expected_last_heartbeat=$(jq -rn --arg v "$HB" '$v|@uri')"
check heartbeat_echo_extends test "$ST $(jb .lease_extended)" = "200 true"
HB2=$(jb .last_heartbeat)
check heartbeat_values_unique test "$HB2" != "$HB"
req ek POST "$W/$WID/heartbeat?expected_last_heartbeat=$(jq -rn --arg v "$HB2" '$v|@uri')&desired_ttl_seconds=5"
check heartbeat_env_key_and_ttl_clamp test "$ST $(jb .ttl_seconds)" = "200 10"
HB3=$(jb .last_heartbeat)
req ek2 POST "$W/$WID/heartbeat"
check_error heartbeat_other_env_key_403 403 permission_error
req api POST "$W/$WID/heartbeat"
check heartbeat_without_expected_unconditional test "$ST" = 200
HB4=$(jb .last_heartbeat)
api GET "$W/$WID"
check work_retrieve_fields test "$(jb '[.state,(.started_at!=null),(.latest_heartbeat_at!=null),(.secret==null)]|@csv')" = '"active",true,true,true'

# ---- token scope ----
mk_session SID2 "$AGENT" "$ENV"
poll_item ek "$ENV" WID2 TOK2
bearer tok2 "$TOK2"
req ek POST "$W/$WID2/ack"
req tok2 GET "/v1/sessions/$SID"
check_error token_for_other_session_403 403 permission_error
req tok2 POST "$W/$WID/heartbeat"
check_error token_for_other_item_403 403 permission_error
req tok GET "/v1/sessions/$SID"
check_status token_reads_own_session 200
req ek GET "/v1/sessions/$SID"
check_status env_key_reads_session_of_its_env 200
req ek2 GET "/v1/sessions/$SID"
check_error env_key_reads_session_of_other_env_403 403 permission_error
req tok POST "$W/$WID2/ack"
check_error token_acks_other_item_403 403 permission_error

# ---- stop ----
req tok POST "$W/$WID/stop" '{"force":"yes"}'
check_error stop_bad_force_400 400 invalid_request_error
api GET "$W/$WID"
check bad_stop_changed_nothing test "$(jb .state)" = active
req tok POST "$W/$WID/stop" '{}'
check_status stop_graceful_204 204
req tok POST "$W/$WID/heartbeat?expected_last_heartbeat=$(jq -rn --arg v "$HB4" '$v|@uri')"
check heartbeat_reports_stopping test "$ST $(jb .state) $(jb .lease_extended)" = "200 stopping true"
req tok POST "$W/$WID/stop"
check_error stop_graceful_again_409 409 conflict_error
check stop_409_should_retry_false test "$(hdr x-should-retry)" = false
req tok POST "$W/$WID/stop" '{"force":true}'
check_status stop_force_204 204
check stop_204_no_content_type test -z "$(hdr content-type)"
req ek POST "$W/$WID/stop" '{"force":true}'
check_error stop_stopped_409 409 conflict_error
req tok GET "/v1/sessions/$SID"
check_error token_after_stop_401 401 authentication_error
req ek POST "$W/$WID/heartbeat?expected_last_heartbeat=x"
check heartbeat_on_stopped test "$ST $(jb .state) $(jb .lease_extended)" = "200 stopped false"
api POST /_emulator/v1/faults '{"stop_status":200}'
req ek POST "$W/$WID2/stop" '{"force":true}'
check stop_200_work_object_option test "$ST $(jb .state)" = "200 stopped"
admin POST /faults '{}'

# ---- list, stats, retrieve, update ----
req ek GET "$W?limit=1"
check work_list_paginates test "$(jb '(.data|length|tostring)+" "+(.next_page!=null|tostring)+" "+(.data[0].secret|tostring)')" = "1 true null"
api GET "$W?limit=1000"
check work_list_api_key_tolerated test "$ST $(jb '.data|length') $(jb .next_page)" = "200 2 null"
req tok2 GET "$W"
check_error work_list_stopped_token_401 401 authentication_error
req ek GET "$W/$WID"
check_error work_retrieve_env_key_403 403 permission_error
api POST "$W/$WID" '{"metadata":{"k":"v","gone":null}}'
check work_update_metadata test "$ST $(jb .metadata.k)" = "200 v"
api POST "$W/$WID" '{"metadata":{"k":5}}'
check_error work_update_bad_metadata 400 invalid_request_error
api GET "$W/stats"
check stats_after_stop test "$(jb '[.depth,.pending]|@csv')" = '0,0'

# ---- dormant session: new input queues new work; a stop queues nothing (6.2.2, 6.5) ----
api GET "$W"
n_before=$(jb '.data|length')
api POST "/v1/sessions/$SID/events" '{"events":[{"type":"user.message","content":[{"type":"text","text":"again"}]}]}'
api GET "$W"
check user_message_requeues_dormant_session test "$(jb '.data|length')" = $((n_before + 1))
api POST "/v1/sessions/$SID/events" '{"events":[{"type":"user.message","content":[{"type":"text","text":"again"}]}]}'
api GET "$W"
check one_live_item_per_session test "$(jb '.data|length')" = $((n_before + 1))

# ---- lease expiry re-queues (6.2, 6.3) ----
admin POST /faults '{"lease_ttl_seconds":1}'
mk_env ENV3 lease
mk_key ek3 "$ENV3"
W3="/v1/environments/$ENV3/work"
mk_session SID3 "$AGENT" "$ENV3"
poll_item ek3 "$ENV3" WID3 TOK3
bearer tok3 "$TOK3"
req ek3 POST "$W3/$WID3/ack"
check lease_ttl_fault_on_ack test "$ST" = 200
req tok3 POST "$W3/$WID3/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"
check lease_ttl_fault_in_heartbeat test "$(jb .ttl_seconds)" = 1
sleep 1.3
api GET "$W3/$WID3"
check lease_expiry_requeues test "$(jb .state)" = queued
req tok3 POST "$W3/$WID3/heartbeat?expected_last_heartbeat=$(jb .latest_heartbeat_at)"
check_error old_holder_gets_412 412 invalid_request_error heartbeat_precondition_failed
check old_holder_412_state_queued test "$(jb '.error.details.current_state|[.state,(.last_heartbeat==null)]|@csv')" = '"queued",true'
req ek3 GET "$W3/poll"
check requeued_item_polled_again test "$ST $(jb .id)" = "200 $WID3"
req ek3 POST "$W3/$WID3/ack"
sleep 1.3
api GET "$W3/$WID3"
check acked_never_heartbeated_requeues test "$(jb .state)" = queued
req ek3 GET "$W3/poll?reclaim_older_than_ms=1"
req ek3 POST "$W3/$WID3/ack"
api POST "$W3/$WID3/stop" '{}'
check stop_graceful_by_api_key test "$ST" = 204
sleep 1.3
api GET "$W3/$WID3"
check stopping_without_holder_ends_stopped test "$(jb .state)" = stopped

# ---- heartbeat_412_on (the Nth heartbeat of an item loses the lease) ----
admin POST /faults '{"heartbeat_412_on":2}'
mk_env ENV4 hb412
mk_key ek4 "$ENV4"
W4="/v1/environments/$ENV4/work"
mk_session S4 "$AGENT" "$ENV4"
poll_item ek4 "$ENV4" WID4 TOK4
bearer tok4 "$TOK4"
req ek4 POST "$W4/$WID4/ack"
req tok4 POST "$W4/$WID4/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"
check fault_412_first_ok test "$ST" = 200
req tok4 POST "$W4/$WID4/heartbeat?expected_last_heartbeat=$(jq -rn --arg v "$(jb .last_heartbeat)" '$v|@uri')"
check_error fault_412_on_nth 412 invalid_request_error heartbeat_precondition_failed
api GET "$W4/$WID4"
check fault_412_requeues test "$(jb .state)" = queued
req ek4 GET "$W4/poll"
check fault_412_item_reclaimable test "$ST $(jb .id)" = "200 $WID4"

# ---- secrets: null and corrupt (4.4.3), empty poll forms (5.2.6) ----
mk_env ENV6 secrets
mk_key ek6 "$ENV6"
admin POST /faults '{"secret":"null"}'
mk_session S6 "$AGENT" "$ENV6"
req ek6 GET "/v1/environments/$ENV6/work/poll"
check secret_null_fault test "$ST $(jb .secret)" = "200 null"
admin POST /faults '{"secret":"corrupt"}'
mk_session S7 "$AGENT" "$ENV6"
req ek6 GET "/v1/environments/$ENV6/work/poll"
s7=$(jb .secret)
check secret_corrupt_fault bash -c "[ -n '$s7' ] && ! printf '%s' '$s7' | base64 -d 2>/dev/null | jq -e 'type==\"object\"' >/dev/null 2>&1"
admin POST /faults '{"empty_poll":"null"}'
mk_env ENV5 empty
mk_key ek5 "$ENV5"
req ek5 GET "/v1/environments/$ENV5/work/poll"
check empty_poll_null_form test "$ST $(cat "$EM_DIR/body") $(hdr content-type)" = "200 null application/json"
admin POST /faults '{"empty_poll":"empty"}'
req ek5 GET "/v1/environments/$ENV5/work/poll"
check empty_poll_empty_json_form test "$ST $(hdr content-length) $(hdr content-type)" = "200 0 application/json"
admin POST /faults '{}'

# ---- archived environment, revoked key, admin extensions ----
admin POST "/environments/$ENV2/healthcheck"
check healthcheck_item test "$ST $(jb .data.type)" = "200 healthcheck"
req ek2 GET "/v1/environments/$ENV2/work/poll"
check healthcheck_polled test "$(jb .data.type)" = healthcheck
HWID=$(jb .id)
req ek2 POST "/v1/environments/$ENV2/work/$HWID/ack"
admin POST "/environments/$ENV2/work/$HWID/expire_lease"
check admin_expire_lease test "$ST $(jb .state)" = "200 queued"
api POST "/v1/environments/$ENV2/archive"
req ek2 GET "/v1/environments/$ENV2/work/poll"
check_error archived_env_poll_400 400 invalid_request_error environment_archived
req ek2 GET "/v1/environments/$ENV2/work/stats"
check_status archived_env_stats_ok 200
printf '{"key":"%s"}' "$(sed -n 's/^Authorization: Bearer //p' "$EM_DIR/cred.ek")" >"$EM_DIR/revoke.json"
admin POST /keys/revoke "@$EM_DIR/revoke.json"
check_status revoke_key 200
req ek GET "$W/poll"
check_error revoked_key_401 401 authentication_error
t_done
