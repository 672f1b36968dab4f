#!/usr/bin/env bash
# tests/integration/launcher_reclaim.sh - the launcher's reconcile after a crash must stop only
# an item whose lease is still this host's (docs/LAUNCHER.md "Reconcile"), through the real
# chain (launcher_lib.sh):
#   - the session's API channel keeps the last 200 heartbeat answer in the root-only record
#     S/sessions/<sid>/heartbeat (last_heartbeat, TTL, time; never the token);
#   - plain crash (kill -9 of the launcher, then of the shim; restart within the lease): the
#     reconcile's heartbeat echoing the record answers 200, the item is force-stopped as before,
#     and the container's output.log is kept like at a normal end;
#   - crash, lease lost and re-claimed elsewhere (the lease is expired through the emulator, the
#     re-queued item is polled, acked and heartbeated with the environment key and the item's
#     token, as another host would): the restarted launcher's reconcile gets 412, does NOT stop
#     the item (it stays active under the new claim, whose next heartbeat still succeeds) and
#     logs "was claimed again elsewhere"; output.log is kept and nothing is left on the host;
#   - no record (a crash before the runner's first heartbeat): not stopped, logged;
#   - the host comes back after the lease (4 s here) ran out: no stop, logged; the item is queued.
. "$(dirname "$0")/launcher_lib.sh"

# shellcheck disable=SC2034 # read by launcher_lib.sh
LT_MAX_IDLE_MS=60000 # the runner stays up (dormant) after its turn, its shim alive
lt_setup

# wait_phase SID PHASE SECONDS
wait_phase() {
    wait_for "$3" bash -c "jq -e --arg p '$2' '.phase == \$p' '$LT_RUN/sessions/$1/state.json' >/dev/null 2>&1"
}
shim_of() { jq -r .pid "$LT_RUN/sessions/$1/state.json" 2>/dev/null; }
item_of() { jq -r .work_id "$LT_RUN/sessions/$1/state.json" 2>/dev/null; }
record_of() { printf '%s' "$LT_STATE/sessions/$1/heartbeat"; }
quiet() { "$@" >/dev/null; }

# crash SID: kill -9 the launcher, then the session's shim (its container is orphaned).
crash() {
    local pid
    pid=$(shim_of "$1")
    kill -9 "$LAUNCHER_REAL_PID"
    wait "$LAUNCHER_REAL_PID" 2>/dev/null
    LAUNCHER_REAL_PID=
    kill -9 "$pid"
    wait_for 5 bash -c "! kill -0 $pid 2>/dev/null"
}

# A session up, its runner past the first heartbeat (the record exists).
start_session() { # start_session VAR
    local sid
    lt_session sid bash-echo
    printf -v "$1" '%s' "$sid"
    wait_phase "$sid" running 30 && wait_for 30 test -s "$(record_of "$sid")"
}

# ---- the record ----
if start_session S1; then
    W1=$(item_of "$S1")
    R1=$(record_of "$S1")
    check record.root_only test "$(stat -c %a "$R1")" = 600
    check record.has_last_heartbeat quiet jq -e '.last_heartbeat | length > 0' "$R1"
    check record.has_ttl quiet jq -e '.ttl_seconds > 0' "$R1"
    # shellcheck disable=SC2016 # jq variables
    check record.has_time quiet jq -e --argjson now "$(date +%s%3N)" '.at_ms > $now - 120000 and .at_ms <= $now + 1000' "$R1"
    check record.no_token_field quiet jq -e 'keys == ["at_ms","last_heartbeat","state","ttl_seconds"]' "$R1"
    # The value is the one the API holds: a heartbeat echoing it (as the reconcile does) passes.
    # (Not sent here: it would move the runner's expected value.)

    # ---- plain crash: restart within the lease -> the item is stopped, as before ----
    check crash.session_passed test "$(wait_verdict "$S1" 60)" = passed
    crash "$S1"
    lt_launcher_start
    wait_item 20 "$W1" stopped
    check crash.item_stopped test "$(work_state "$ENV" "$W1")" = stopped
    check crash.logged_stop grep -q "reconcile $S1: work item $W1 force-stopped" "$LT_LOG"
    check crash.no_lease_lost_line bash -c "! grep -q 'work item $W1 was claimed again elsewhere' '$LT_LOG'"
    if left=$(wait_clean 30); then t_ok crash.nothing_left; else t_fail crash.nothing_left "$left"; fi
    check crash.output_kept test -s "$LT_STATE/sessions/$S1/output.log"
    check crash.record_removed test ! -e "$R1"
else
    t_fail crash "session never reached running with a heartbeat record: $(tail -n 5 "$LT_LOG")"
fi

# ---- crash, lease lost, item re-claimed by "another host" -> the reconcile leaves it alone ----
if start_session S2; then
    W2=$(item_of "$S2")
    check reclaim.session_passed test "$(wait_verdict "$S2" 60)" = passed
    # Nothing on this host may claim the item meanwhile: runcell-fcgi goes too.
    kill -9 "$FCGI_PID"
    wait "$FCGI_PID" 2>/dev/null
    FCGI_PID=
    crash "$S2"
    # The lease runs out (now, through the emulator) and the item goes back to the queue ...
    admin POST "/environments/$ENV/work/$W2/expire_lease"
    check_status reclaim.lease_expired 200
    check reclaim.requeued test "$(work_state "$ENV" "$W2")" = queued
    # ... and another worker claims it: poll, ack and first heartbeat.
    poll_item ek "$ENV" PW TOK
    check reclaim.polled_it test "$PW" = "$W2"
    req ek POST "/v1/environments/$ENV/work/$W2/ack"
    check_status reclaim.acked 200
    bearer tok "$TOK"
    req tok POST "/v1/environments/$ENV/work/$W2/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"
    check_status reclaim.new_holder_beats 200
    NEWHB=$(jb .last_heartbeat)
    check reclaim.active test "$(work_state "$ENV" "$W2")" = active
    # The crashed host comes back.
    lt_launcher_start
    wait_for 20 grep -q "work item $W2 " "$LT_LOG"
    check reclaim.logged grep -q "reconcile: work item $W2 was claimed again elsewhere (lease lost); not stopping it" "$LT_LOG"
    check reclaim.not_force_stopped bash -c "! grep -q 'reconcile $S2: work item $W2 force-stopped' '$LT_LOG'"
    check reclaim.still_active test "$(work_state "$ENV" "$W2")" = active
    # The new holder's lease is intact: its next heartbeat, echoing its own value, passes.
    req tok POST "/v1/environments/$ENV/work/$W2/heartbeat?expected_last_heartbeat=$(jq -rn --arg v "$NEWHB" '$v | @uri')"
    check_status reclaim.new_holder_still_holds 200
    check reclaim.new_holder_state test "$(jb .state)" = active
    if left=$(wait_clean 30); then t_ok reclaim.nothing_left; else t_fail reclaim.nothing_left "$left"; fi
    check reclaim.output_kept test -s "$LT_STATE/sessions/$S2/output.log"
    # The "other host" ends its claim.
    req tok POST "/v1/environments/$ENV/work/$W2/stop" '{"force":true}'
    check_status reclaim.new_holder_stops 204
    fcgi_start
else
    t_fail reclaim "session never reached running with a heartbeat record: $(tail -n 5 "$LT_LOG")"
fi

# ---- crash before the first heartbeat (no record): not stopped; the lease lapses by itself ----
if start_session S3; then
    W3=$(item_of "$S3")
    check norecord.session_passed test "$(wait_verdict "$S3" 60)" = passed
    crash "$S3"
    rm -f "$(record_of "$S3")" # as if the runner had never beaten
    lt_launcher_start
    wait_for 20 grep -q "work item $W3 " "$LT_LOG"
    check norecord.logged grep -q "reconcile: work item $W3 has no heartbeat on record" "$LT_LOG"
    check norecord.not_stopped test "$(work_state "$ENV" "$W3")" = active
    if left=$(wait_clean 30); then t_ok norecord.nothing_left; else t_fail norecord.nothing_left "$left"; fi
    api POST "/v1/environments/$ENV/work/$W3/stop" '{"force":true}' # (the test's own tidy-up)
else
    t_fail norecord "session never reached running with a heartbeat record: $(tail -n 5 "$LT_LOG")"
fi

# ---- crash, and the host comes back after the lease ran out: no heartbeat, no stop ----
admin POST /faults '{"lease_ttl_seconds":4}'
check_status expired.short_ttl 200
if start_session S4 && wait_for 20 quiet jq -e '.ttl_seconds == 4' "$(record_of "$S4")"; then
    W4=$(item_of "$S4")
    check expired.session_passed test "$(wait_verdict "$S4" 60)" = passed
    kill -9 "$FCGI_PID" # nothing here re-claims the item
    wait "$FCGI_PID" 2>/dev/null
    FCGI_PID=
    crash "$S4"
    AT=$(jq -r .at_ms "$(record_of "$S4")")
    # 4 s of lease + the reconcile's 10 s margin, on the record's clock.
    wait_for 30 bash -c "[ \$(date +%s%3N) -gt $((AT + 15000)) ]"
    lt_launcher_start
    wait_for 20 grep -q "work item $W4" "$LT_LOG"
    check expired.logged grep -q "reconcile: work item $W4: its lease ran out .*; not stopping it" "$LT_LOG"
    check expired.not_stopped test "$(work_state "$ENV" "$W4")" = queued
    if left=$(wait_clean 30); then t_ok expired.nothing_left; else t_fail expired.nothing_left "$left"; fi
    api POST "/v1/environments/$ENV/work/$W4/stop" '{"force":true}'
else
    t_fail expired "session never reached running with a 4 s lease: $(tail -n 5 "$LT_LOG")"
fi
admin POST /faults '{}'
check all.nothing_claimed test -z "$(claimed_items)"
t_done
