#!/usr/bin/env bash
# tests/integration/launcher_capacity.sh - capacity through the real chain: with
# RUNCELL_CAPACITY=2 and 5 sessions queued, 2 run and 3 stay queued (runcell-fcgi's reservation
# is refused, so it claims nothing: the items remain for another host); as slots free up,
# runcell-fcgi's background re-drain claims the rest with NO further webhook (nginx is stopped
# once the first two run, so no delivery reaches runcell-fcgi any more), and none is
# lost: all 5 sessions reach `passed`, never more than two at once, and nothing is left
# (containers, mounts, netns, cgroups, bundles, work files, claimed items).
. "$(dirname "$0")/launcher_lib.sh"

# shellcheck disable=SC2034 # read by launcher_lib.sh
LT_MAX_IDLE_MS=8000 # the first two stay up (dormant) while the queue is checked
# shellcheck disable=SC2034
LT_LAUNCHER_ENV=(RUNCELL_CAPACITY=2)
lt_setup

rc_cli() { (lt_env && "$RUNCELL_CLI" "$@"); }
status_active2() { rc_cli status | grep -qx 'active 2'; }
live_sessions() { find "$LT_RUN/sessions" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l; }

SIDS=()
for _ in 1 2 3 4 5; do
    lt_session s bash-echo
    SIDS+=("$s")
done

two_live() { [ "$(live_sessions)" -ge 2 ]; }
wait_for 30 two_live
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

# No delivery from here on: nginx goes away, so the emulator's later webhooks (a session goes
# running again when its tool results arrive) cannot reach runcell-fcgi; only the re-drain
# can claim the three queued items.
kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
NGINX_PID=
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
    sleep 0.5
done
check redrain_logged grep -q 're-drain: .*claimed 1' "$F_DIR/fcgi.log"
passed=0
for s in "${SIDS[@]}"; do [ "$(verdict "$s")" = passed ] && passed=$((passed + 1)); done
check all_five_passed test "$passed" = 5
check never_more_than_two test "$max" -le 2
if left=$(wait_clean 40); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
check queue_empty test "$(queue_stats "$ENV")" = "0 0"
check nothing_claimed test -z "$(claimed_items)"
t_done
