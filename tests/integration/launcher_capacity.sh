#!/usr/bin/env bash
# tests/integration/launcher_capacity.sh - capacity through the real chain: with
# RUNCELL_CAPACITY=2 and 5 sessions queued, 2 run and 3 stay queued (runcell-fcgi's reservation
# is refused, so it claims nothing: the items remain for another host); as slots free up, later
# deliveries claim the rest, and none is lost: all 5 sessions reach `passed` and nothing is left.
# (Slots freeing up do not trigger a delivery by themselves; the test sends a signed delivery
# every few seconds, standing in for the webhooks of other sessions.)
. "$(dirname "$0")/launcher_lib.sh"

LT_MAX_IDLE_MS=4000
LT_LAUNCHER_ENV=(RUNCELL_CAPACITY=2)
lt_setup

rc_cli() { (lt_env && "$RUNCELL_CLI" "$@"); }
status_active2() { rc_cli status | grep -qx 'active 2'; }
live_sessions() { find "$LT_RUN/sessions" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l; }

SIDS=()
for i in 1 2 3 4 5; do
    lt_session s bash-echo
    SIDS+=("$s")
done

wait_for 30 test "$(live_sessions)" -ge 2
if [ -x "$RUNCELL_CLI" ]; then
    check status_full status_active2
fi
max=0
for _ in $(seq 15); do # 3 s of samples
    n=$(live_sessions)
    [ "$n" -gt "$max" ] && max=$n
    sleep 0.2
done
check two_run test "$max" = 2
check three_stay_queued test "$(queue_stats "$ENV")" = "3 0"

# Deliveries keep coming (other sessions' webhooks): the queued items are claimed as slots free.
n=0
end=$((SECONDS + 150))
while [ $SECONDS -lt $end ]; do
    done_n=0
    for s in "${SIDS[@]}"; do
        v=$(verdict "$s")
        [ "$v" = passed ] || [ "$v" = failed ] && done_n=$((done_n + 1))
    done
    [ $done_n = 5 ] && break
    l=$(live_sessions)
    [ "$l" -gt "$max" ] && max=$l
    n=$((n + 1))
    envelope "whe_nudge$n" session.status_run_started "${SIDS[0]}" >"$F_DIR/nudge.json"
    deliver "$F_DIR/nudge.json" "whe_nudge$n"
    sleep 2
done
passed=0
for s in "${SIDS[@]}"; do [ "$(verdict "$s")" = passed ] && passed=$((passed + 1)); done
check all_five_passed test "$passed" = 5
check never_more_than_two test "$max" -le 2
if left=$(wait_clean 40); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
check queue_empty test "$(queue_stats "$ENV")" = "0 0"
t_done
