#!/usr/bin/env bash
# tests/integration/fcgi_drain.sh - runcell-fcgi's drain (protocol 14.2, docs/FCGI.md "The
# drain") and its hand-off, through a real nginx, against the emulator and the fake launcher (a
# test double answering accepted / at_capacity / refused / dropping the connection):
# a full launcher -> nothing polled or claimed; capacity 1 -> one claimed, the other queued;
# refused and dropped hand-offs end with the item stopped; launcher down -> 503, nothing
# claimed, and the retry of the same id is drained; a healthcheck item is acked and stopped
# while one delivery drains several sessions; an item without a secret ends stopped; the
# per-delivery cap, and the background re-drain claiming what it left; 503 in_flight while the
# same id is still being handled.
# (Deliveries made by the emulator itself are in fcgi_activation.sh.)
. "$(dirname "$0")/fcgi_lib.sh"

fcgi_setup
HB=$F_DIR/hook.json
n=0

# hook NAME [SID]: a delivery with a fresh id (whe_NAME<n>) for session SID (default $SID).
hook() {
    n=$((n + 1))
    envelope "whe_$1$n" session.status_run_started "${2:-$SID}" >"$HB"
    deliver "$HB" "whe_$1$n"
}

# ---- launcher full: nothing is polled or claimed ---------------------------------------------
launcher_mode at_capacity
mk_session SID "$AGENT" "$ENV"
mk_session SID_B "$AGENT" "$ENV"
MARK=$(req_mark)
hook full
expect at_capacity_200 200 .status at_capacity
check at_capacity_nothing_claimed test "$(answer '"\(.claimed) \(.polls)"')" = "0 0"
check at_capacity_nothing_polled test "$(polls_since "$MARK")" = 0
check at_capacity_items_stay_queued test "$(queue_stats)" = "2 0"
check at_capacity_no_launch test "$(launches)" = 0

# ---- capacity 1: one claimed and handed off, then at_capacity; the other stays queued ---------
launcher_stop
launcher_start accepted --capacity 1
hook cap1
expect capacity_one_claims_one 200 '"\(.status) \(.claimed) \(.handed_off)"' "at_capacity 1 1"
check capacity_one_other_queued test "$(queue_stats)" = "1 0"
check capacity_one_states test "$(work_states)" = "queued:1 starting:1"
check capacity_one_one_launch test "$(launches)" = 1

# ---- refused hand-off: acked, refused, force-stopped -----------------------------------------
launcher_stop
launcher_start refused
hook refused
expect refused_200 200 '"\(.status) \(.claimed) \(.refused) \(.stopped)"' "drained 1 1 1"
check refused_item_stopped test "$(work_states)" = "starting:1 stopped:1"
check refused_launcher_was_asked test "$(jq -r -s '.[-1].answer' "$L_LOG")" = refused
check refused_queue_empty test "$(queue_stats)" = "0 0"

# ---- the connection drops after the ack (no answer to launch): force-stopped -----------------
launcher_mode drop
mk_session SID "$AGENT" "$ENV"
hook dropped
expect dropped_200 200 '"\(.claimed) \(.handoff_failed) \(.stopped)"' "1 1 1"
check dropped_item_stopped test "$(item_state "$SID")" = stopped
check dropped_launch_seen test "$(launch_of "$SID")" = "dropped true"
check dropped_states test "$(work_states)" = "starting:1 stopped:2"

# ---- launcher down: 503, nothing claimed; the retry of the same id is drained ---------------
launcher_stop
mk_session SID "$AGENT" "$ENV"
envelope whe_down session.status_run_started "$SID" >"$HB"
MARK=$(req_mark)
deliver "$HB" whe_down
expect launcher_down_503 503 '"\(.status) \(.claimed) \(.polls)"' "launcher_unavailable 0 0"
check launcher_down_nothing_polled test "$(polls_since "$MARK")" = 0
check launcher_down_item_queued test "$(queue_stats)" = "1 0"
metrics
check launcher_down_metrics_up_0 test "$(metric runcell_launcher_up)" = 0
check launcher_down_metrics_no_gauges test -z "$(metric runcell_active_sessions)"
check launcher_down_metrics_unavailable test "$(metric 'runcell_fcgi_webhooks_total{outcome="unavailable"}')" = 1
http "$NGX/healthz"
expect launcher_down_healthz_still_200 200 .status ok
launcher_start accepted
deliver "$HB" whe_down
expect launcher_back_retry_drained 200 '"\(.status) \(.claimed) \(.handed_off)"' "drained 1 1"
check launcher_back_item_starting test "$(item_state "$SID")" = starting

# ---- a healthcheck item and three sessions: one delivery drains all four --------------------
admin POST "/environments/$ENV/healthcheck"
HC=$(jb .id)
SIDS=()
for i in 1 2 3; do
    mk_session S "$AGENT" "$ENV"
    SIDS+=("$S")
done
hook many "${SIDS[0]}"
expect one_delivery_drains_all 200 \
    '"\(.status) \(.claimed) \(.handed_off) \(.not_session) \(.stopped) \(.polls)"' "drained 4 3 1 1 5"
check healthcheck_item_stopped test "$(item_state "$HC")" = stopped
check healthcheck_not_launched test "$(jq -s --arg w "$HC" '[.[] | select(.work_id == $w)] | length' "$L_LOG")" = 0
for i in 0 1 2; do
    check "many_session_${i}_handed_off" test "$(launch_of "${SIDS[$i]}") $(item_state "${SIDS[$i]}")" = "accepted true starting"
done
check many_queue_empty test "$(queue_stats)" = "0 0"
check launches_carry_decodable_secrets test \
    "$(jq -s '[.[] | select(.answer == "accepted") | .token_ok] | all' "$L_LOG")" = true

# ---- an item without a secret: passed on as null, the launcher refuses it, it ends stopped -----
faults '{"secret":"null"}'
mk_session SID "$AGENT" "$ENV"
faults '{}'
hook nosecret
expect no_secret_refused_and_stopped 200 '"\(.claimed) \(.refused) \(.stopped)"' "1 1 1"
check no_secret_item_stopped test "$(item_state "$SID")" = stopped
check no_secret_passed_as_null test \
    "$(jq -r -s --arg s "$SID" '[.[] | select(.session_id == $s)] | .[0] | "\(.has_secret) \(.answer)"' "$L_LOG")" = \
    "false refused"

# ---- the per-delivery cap (RUNCELL_DRAIN_MAX_ITEMS=2) -----------------------------------------
fcgi_stop first_instance
fcgi_start RUNCELL_DRAIN_MAX_ITEMS=2
for i in 1 2 3; do mk_session SID "$AGENT" "$ENV"; done
hook capped
expect cap_reached 200 '"\(.status) \(.claimed) \(.handed_off)"' "limit_reached 2 2"
check cap_leaves_rest_queued test "$(queue_stats)" = "1 0"
hook capped
expect next_delivery_takes_rest 200 '"\(.status) \(.claimed)"' "drained 1"
check cap_all_claimed test "$(queue_stats)" = "0 0"

# ---- the re-drain (RUNCELL_REDRAIN_INTERVAL_MS): what a capped delivery left queued is claimed
# with no further delivery. The first round at start finds the queue empty (the counter counts
# rounds that polled), only then are the sessions created. ---------------------------------------
fcgi_stop capped_instance
fcgi_start RUNCELL_DRAIN_MAX_ITEMS=2 RUNCELL_REDRAIN_INTERVAL_MS=200
redrains() { metrics >/dev/null && metric runcell_fcgi_redrains_total; }
round_done() { [ "$(redrains)" = 1 ]; }
queue_empty() { [ "$(queue_stats)" = "0 0" ]; }
wait_for 10 round_done || t_fail redrain_start_round "no re-drain round at start"
for i in 1 2 3; do mk_session SID "$AGENT" "$ENV"; done
hook redrain
expect redrain_delivery_capped 200 '"\(.status) \(.claimed)"' "limit_reached 2"
wait_for 10 queue_empty
check redrain_claims_the_rest test "$(queue_stats)" = "0 0"
check redrain_counted test "$(redrains)" -ge 2
check redrain_logged grep -q 're-drain: drained, claimed 1, handed off 1' "$F_LOG"
fcgi_stop redrain_instance

# ---- the idle re-drain (RUNCELL_REDRAIN_IDLE_MS): work queued with no webhook at all (as after a
# lease expired on a dead host) is claimed by a periodic round; with it off, it stays queued. ----
fcgi_start RUNCELL_REDRAIN_INTERVAL_MS=200 RUNCELL_REDRAIN_IDLE_MS=0
wait_for 10 round_done || t_fail idle_off_start_round "no re-drain round at start"
mk_session SID "$AGENT" "$ENV"
sleep 3
check idle_off_item_stays_queued test "$(queue_stats)" = "1 0"
fcgi_stop idle_off_instance
fcgi_start RUNCELL_REDRAIN_INTERVAL_MS=200 RUNCELL_REDRAIN_IDLE_MS=1000
wait_for 10 queue_empty
check idle_redrain_claims_unannounced_work test "$(queue_stats)" = "0 0"
check idle_redrain_handed_off test "$(launch_of "$SID")" = "accepted true"
mk_session SID "$AGENT" "$ENV"
wait_for 10 queue_empty
check idle_redrain_keeps_going test "$(launch_of "$SID")" = "accepted true"
fcgi_stop idle_instance
fcgi_start

# ---- 503 while the same id is in flight (a slow API makes the first drain take seconds) ------
faults '{"latency_ms":1000}'
mk_session SID "$AGENT" "$ENV"
envelope whe_slow session.status_run_started "$SID" >"$HB"
cp "$HB" "$F_DIR/slow.json"
(
    ANS=$F_DIR/slow.answer
    deliver "$F_DIR/slow.json" whe_slow
    printf '%s %s\n' "$WST" "$(answer '"\(.status) \(.handed_off)"')" >"$F_DIR/slow.result"
) &
SLOW=$!
F_BG_PIDS+=("$SLOW")
# in_flight_now: the first delivery is being served (the /metrics gauge says so).
in_flight_now() { metrics && [ "$(metric runcell_fcgi_webhooks_in_flight)" = 1 ]; }
wait_for 10 in_flight_now || t_fail in_flight_started "the first delivery never showed in the in-flight gauge"
sleep 0.2 # past the dedupe claim, which follows the signature check at once
deliver "$HB" whe_slow
expect same_id_in_flight_503 503 .status in_flight
check same_id_in_flight_retry_after test "$(ahdr retry-after)" = 5
wait "$SLOW"
F_BG_PIDS=()
check first_of_same_id_completes test "$(cat "$F_DIR/slow.result" 2>/dev/null)" = "200 drained 1"
faults '{}'
deliver "$HB" whe_slow
expect same_id_after_done_duplicate 200 .status duplicate
check same_id_handed_off_once test "$(launch_of "$SID")" = "accepted true"

fcgi_hygiene hygiene
fcgi_stop sigterm
t_done
