#!/usr/bin/env bash
# tests/integration/fcgi_webhooks.sh - runcell-fcgi behind a real nginx 1.22 (unprivileged, own
# prefix, loopback port), against the emulator, with real curl: every kind of delivery gets the
# answer of docs/FCGI.md ("Endpoints and answers", protocol 18.8) and claims nothing when it
# should not. Good delivery (claimed, handed off, item starting); bad signature, missing
# headers, stale, future, tampered body, duplicate signature / id / timestamp headers, a
# comma-joined signature value -> 401; a multi-entry signature is accepted; wrong method -> 405
# with Allow: POST; 413 from runcell-fcgi (1.5 MiB) and from nginx (3 MiB); non-JSON, no
# data.type -> 400; other types -> 200 ignored; a replayed id -> 200 duplicate, nothing polled;
# a chunked body; an empty queue; /healthz, /metrics, 404. Neither key in any log or in the
# process environment.
. "$(dirname "$0")/fcgi_lib.sh"

fcgi_setup
B1=$F_DIR/body.json

# ---- a good delivery: one session queued, claimed and handed off ---------------------------
mk_session SID "$AGENT" "$ENV"
envelope whe_good1 session.status_run_started "$SID" >"$B1"
deliver "$B1" whe_good1
expect good_delivery_200 200 .status drained
check good_delivery_summary test "$(answer '"\(.claimed) \(.handed_off) \(.refused) \(.stopped) \(.polls)"')" = "1 1 0 0 2"
check good_delivery_no_store test "$(ahdr cache-control)" = no-store
check good_delivery_json test "$(ahdr content-type)" = application/json
check good_delivery_item_starting test "$(item_state "$SID")" = starting
check good_delivery_queue_empty test "$(queue_stats)" = "0 0"
check good_delivery_reached_launcher test "$(launch_of "$SID")" = "accepted true"
check good_delivery_launch_ids test "$(jq -r -s '.[0] | "\(.environment_id) \(.work_id | startswith("work_"))"' "$L_LOG")" = "$ENV true"

# ---- refusals: SID2's item stays queued (depth 1, pending 0) and no poll is made -------------
mk_session SID2 "$AGENT" "$ENV"
MARK=$(req_mark)

# The same id again: already handled -> 200 duplicate, nothing polled.
deliver "$B1" whe_good1
expect replayed_id_200_duplicate 200 .status duplicate

now=$(date +%s)
envelope whe_bad1 session.status_run_started "$SID2" >"$B1"
sig=$(sign whe_bad1 "$now" <"$B1")
bad_sig="v1,$(head -c 32 /dev/urandom | base64)"
H=(-H 'content-type: application/json')

# post NAME WANT CURL-ARGS...: a hand-built request to the webhook route.
post() {
    local name=$1 want=$2
    shift 2
    http "$@" "$NGX/webhook"
    if [ "$WST" = "$want" ]; then t_ok "$name"; else t_fail "$name" "status $WST, want $want: $(head -c 200 "$ANS")"; fi
}

post bad_signature_401 401 "${H[@]}" -H "webhook-id: whe_bad1" -H "webhook-timestamp: $now" \
    -H "webhook-signature: $bad_sig" --data-binary "@$B1"
check bad_signature_body test "$(answer .error)" = "invalid signature"
post missing_signature_401 401 "${H[@]}" -H "webhook-id: whe_bad1" -H "webhook-timestamp: $now" \
    --data-binary "@$B1"
post missing_timestamp_401 401 "${H[@]}" -H "webhook-id: whe_bad1" -H "webhook-signature: $sig" \
    --data-binary "@$B1"
post missing_id_401 401 "${H[@]}" -H "webhook-timestamp: $now" -H "webhook-signature: $sig" \
    --data-binary "@$B1"
deliver "$B1" whe_bad1 $((now - 400))
expect stale_timestamp_401 401 .error "invalid signature"
deliver "$B1" whe_bad1 $((now + 400))
expect future_timestamp_401 401 .error "invalid signature"
sed 's/status_run_started/status_idled/' "$B1" >"$F_DIR/tampered.json"
post tampered_body_401 401 "${H[@]}" -H "webhook-id: whe_bad1" -H "webhook-timestamp: $now" \
    -H "webhook-signature: $sig" --data-binary "@$F_DIR/tampered.json"
# Duplicate headers: nginx 1.22 passes them as repeated FastCGI parameters.
post duplicate_signature_headers_401 401 "${H[@]}" -H "webhook-id: whe_bad1" \
    -H "webhook-timestamp: $now" -H "webhook-signature: $sig" -H "Webhook-Signature: $sig" \
    --data-binary "@$B1"
post duplicate_signature_headers_one_bad_401 401 "${H[@]}" -H "webhook-id: whe_bad1" \
    -H "webhook-timestamp: $now" -H "webhook-signature: $bad_sig" -H "webhook-signature: $sig" \
    --data-binary "@$B1"
# What nginx 1.23+ would make of two headers: one value joined with ", ".
post joined_signature_value_401 401 "${H[@]}" -H "webhook-id: whe_bad1" \
    -H "webhook-timestamp: $now" -H "webhook-signature: $sig, $sig" --data-binary "@$B1"
post duplicate_id_headers_401 401 "${H[@]}" -H "webhook-id: whe_bad1" -H "webhook-id: whe_bad1" \
    -H "webhook-timestamp: $now" -H "webhook-signature: $sig" --data-binary "@$B1"
post duplicate_timestamp_headers_401 401 "${H[@]}" -H "webhook-id: whe_bad1" \
    -H "webhook-timestamp: $now" -H "webhook-timestamp: $now" -H "webhook-signature: $sig" \
    --data-binary "@$B1"
# webhook_signature (underscore) must not alias webhook-signature (nginx drops it).
post underscore_header_not_aliased_401 401 "${H[@]}" -H "webhook-id: whe_bad1" \
    -H "webhook-timestamp: $now" -H "webhook_signature: $sig" --data-binary "@$B1"

# Several space-separated entries, one valid: accepted (18.4.2). An ignored type, so the answer
# (200 ignored, decided after verification) proves acceptance without claiming anything.
envelope whe_multi session.status_idled "$SID2" >"$F_DIR/multi.json"
msig=$(sign whe_multi "$now" <"$F_DIR/multi.json")
post multi_entry_signature_accepted 200 "${H[@]}" -H "webhook-id: whe_multi" \
    -H "webhook-timestamp: $now" -H "webhook-signature: $bad_sig $msig" \
    --data-binary "@$F_DIR/multi.json"
check multi_entry_signature_ignored_type test "$(answer .status)" = ignored

# Wrong method: 405 with Allow: POST (before anything else is looked at).
http -X GET "$NGX/webhook"
expect wrong_method_get_405 405 .error "method not allowed"
check wrong_method_allow_post test "$(ahdr allow)" = POST
http -X PUT "${H[@]}" --data-binary "@$B1" "$NGX/webhook"
expect wrong_method_put_405 405
check wrong_method_put_allow_post test "$(ahdr allow)" = POST

# Oversize: 1.5 MiB passes nginx (client_max_body_size 2m) and meets runcell-fcgi's 1 MiB cap;
# 3 MiB is refused by nginx itself. The cap comes before the signature check.
head -c 1572864 /dev/zero | tr '\0' 'a' >"$F_DIR/big.json"
post oversize_413_from_fcgi 413 "${H[@]}" -H "webhook-id: whe_big" -H "webhook-timestamp: $now" \
    -H "webhook-signature: $bad_sig" --data-binary "@$F_DIR/big.json"
check oversize_413_fcgi_answer test "$(answer .error)" = "request body too large"
head -c 3145728 /dev/zero | tr '\0' 'a' >"$F_DIR/huge.json"
post oversize_413_from_nginx 413 "${H[@]}" -H "webhook-id: whe_huge" -H "webhook-timestamp: $now" \
    -H "webhook-signature: $bad_sig" --data-binary "@$F_DIR/huge.json"
check oversize_413_nginx_page test "$(ahdr content-type)" = text/html

# Verified but not an envelope: 400, nothing claimed.
printf 'not json at all' >"$F_DIR/nonjson"
deliver "$F_DIR/nonjson" whe_nonjson
expect non_json_400 400 .error "malformed envelope"
printf '{"type":"event","id":"whe_nodata","data":{"id":"%s"}}' "$SID2" >"$F_DIR/nodata"
deliver "$F_DIR/nodata" whe_nodata
expect missing_data_type_400 400 .error "malformed envelope"
printf '{"type":"event","id":"whe_nodataobj"}' >"$F_DIR/nodataobj"
deliver "$F_DIR/nodataobj" whe_nodataobj
expect missing_data_400 400 .error "malformed envelope"
long_id=whe_$(printf 'x%.0s' $(seq 130))
envelope "$long_id" session.status_run_started "$SID2" >"$F_DIR/longid.json"
deliver "$F_DIR/longid.json" "$long_id"
expect webhook_id_over_128_400 400 .error "malformed envelope"

# Another event type: 200 ignored.
envelope whe_ign session.status_idled "$SID2" >"$F_DIR/ign.json"
deliver "$F_DIR/ign.json" whe_ign
expect ignored_type_200 200 .status ignored

check refusals_polled_nothing test "$(polls_since "$MARK")" = 0
check refusals_claimed_nothing test "$(queue_stats)" = "1 0"
check refusals_item_still_queued test "$(item_state "$SID2")" = queued
check refusals_reached_no_launcher test "$(launches)" = 1

# ---- a good delivery for SID2, a chunked one, an empty queue --------------------------------
envelope whe_good2 session.status_run_started "$SID2" >"$B1"
deliver "$B1" whe_good2
expect second_good_delivery_200 200 '"\(.status) \(.claimed) \(.handed_off)"' "drained 1 1"
check both_items_starting test "$(work_states)" = "starting:2"

# A chunked request body: nginx buffers it and passes its length in CONTENT_LENGTH.
mk_session SID3 "$AGENT" "$ENV"
envelope whe_chunked session.status_run_started "$SID3" >"$B1"
deliver "$B1" whe_chunked "" -H 'Transfer-Encoding: chunked'
expect chunked_body_200 200 '"\(.status) \(.handed_off)"' "drained 1"
check chunked_item_starting test "$(item_state "$SID3")" = starting

# Nothing queued: one poll, 200 drained, nothing claimed (18.6.2).
envelope whe_empty session.status_run_started "$SID2" >"$B1"
deliver "$B1" whe_empty
expect empty_queue_200 200 '"\(.status) \(.claimed) \(.polls)"' "drained 0 1"

# ---- the other routes ------------------------------------------------------------------------
http "$NGX/healthz"
expect healthz_200 200 .status ok
http -I "$NGX/healthz"
expect healthz_head_200 200
http -X POST --data-binary x "$NGX/healthz"
expect healthz_post_405 405
http "$NGX/nothing-here"
expect unknown_path_404 404 .error "not found"
check unknown_path_no_store test "$(ahdr cache-control)" = no-store

metrics
expect metrics_200 200
check metrics_content_type grep -qi '^content-type: text/plain; version=0.0.4' "$ANS.hdr"
check metrics_drained test "$(metric 'runcell_fcgi_webhooks_total{outcome="drained"}')" = 4
check metrics_bad_signature test "$(metric 'runcell_fcgi_webhooks_total{outcome="bad_signature"}')" = 13
check metrics_too_large_only_fcgi test "$(metric 'runcell_fcgi_webhooks_total{outcome="too_large"}')" = 1
check metrics_bad_request test "$(metric 'runcell_fcgi_webhooks_total{outcome="bad_request"}')" = 4
check metrics_ignored test "$(metric 'runcell_fcgi_webhooks_total{outcome="ignored"}')" = 2
check metrics_duplicate test "$(metric 'runcell_fcgi_webhooks_total{outcome="duplicate"}')" = 1
check metrics_method test "$(metric 'runcell_fcgi_webhooks_total{outcome="method_not_allowed"}')" = 2
check metrics_claims test "$(metric runcell_fcgi_claims_total)" = 3
check metrics_handoffs test "$(metric 'runcell_fcgi_handoffs_total{result="accepted"}')" = 3
check metrics_launcher_up test "$(metric runcell_launcher_up)" = 1
check metrics_active_sessions test "$(metric runcell_active_sessions)" = 3
check metrics_in_flight_zero test "$(metric runcell_fcgi_webhooks_in_flight)" = 0
check metrics_latency_histogram test "$(metric 'runcell_fcgi_webhook_duration_seconds_count')" = 27

# ---- hygiene ---------------------------------------------------------------------------------
# The log line of each refusal names the check that failed (and so proves which one did).
reasons() { grep -c "401 bad_signature ($1)" "$F_LOG"; }
check log_no_matching_signature test "$(reasons 'No matching signature found')" = 2
check log_missing_headers test "$(reasons 'Missing required headers')" = 4
check log_timestamp_too_old test "$(reasons 'Message timestamp too old')" = 1
check log_timestamp_too_new test "$(reasons 'Message timestamp too new')" = 1
check log_duplicate_signature test "$(reasons 'duplicate webhook-signature header')" = 3
check log_duplicate_id test "$(reasons 'duplicate webhook-id header')" = 1
check log_duplicate_timestamp test "$(reasons 'duplicate webhook-timestamp header')" = 1
fcgi_hygiene hygiene
fcgi_stop sigterm
t_done
