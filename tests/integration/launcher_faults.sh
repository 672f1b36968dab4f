#!/usr/bin/env bash
# tests/integration/launcher_faults.sh - the launcher when things go wrong, through the real
# chain (launcher_lib.sh):
#   - kill -9 of a shim in the middle of a session: the daemon notices (pidfd), force-stops the
#     item with the token from the root-only work file (its lease is still ours: a heartbeat
#     echoing the recorded last_heartbeat passes), keeps output.log, and leaves no container,
#     mount or netns;
#   - `runcell stop SESSION_ID`: the shim stops the container, force-stops the item, cleans up;
#   - `runcell status` / `runcell sessions` read the daemon's state;
#   - kill -9 of the launcher itself: the running shim carries on; a new launcher adopts it;
#   - kill -9 of the launcher and then of the shim: the restarted launcher cleans the orphan;
#   - kill -9 of runcell-fcgi mid-session: the session carries on, a restarted runcell-fcgi serves
#     the next webhook;
#   - kill -9 of the runner (the container's init): the shim force-stops the item, cleans up;
#   - a snapshot whose runner cannot start (runc fails): the item is force-stopped, the error is
#     logged, nothing is left;
#   - the wall-clock limit: container stopped, item stopped, summary line `end=wall_limit`.
# After each: no container, mount, netns, cgroup, bundle, work file or claimed item is left.
. "$(dirname "$0")/launcher_lib.sh"

# shellcheck disable=SC2034 # read by launcher_lib.sh
LT_MAX_IDLE_MS=30000 # sessions stay up (dormant) long enough to be hit
lt_setup

rc_cli() { (lt_env && "$RUNCELL_CLI" "$@"); }
sessions_has() { rc_cli sessions | grep -q "$1.*running.*live"; }
status_active() { rc_cli status | grep -qx "active $1"; }

# wait_phase SID PHASE SECONDS
wait_phase() {
    wait_for "$3" bash -c "jq -e --arg p '$2' '.phase == \$p' '$LT_RUN/sessions/$1/state.json' >/dev/null 2>&1"
}
shim_of() { jq -r .pid "$LT_RUN/sessions/$1/state.json" 2>/dev/null; }
# The runner's first heartbeat went through the API channel (S/sessions/<sid>/heartbeat): from
# then on a reconcile can prove the lease is ours and stops the item (launcher_reclaim.sh tests
# the other cases).
heartbeat_recorded() { wait_for 30 test -s "$LT_STATE/sessions/$1/heartbeat"; }
item_of() { jq -r .work_id "$LT_RUN/sessions/$1/state.json" 2>/dev/null; }

# ---- kill -9 of a shim ----
lt_session S1 bash-echo
if wait_phase "$S1" running 30; then
    W1=$(item_of "$S1")
    P1=$(shim_of "$S1")
    check sessions_lists_it sessions_has "$S1"
    check status_active_1 status_active 1
    check work_file_root_only test "$(stat -c %a "$LT_STATE/sessions/$S1/work")" = 600
    check work_dir_root_only test "$(stat -c %a "$LT_STATE/sessions/$S1")" = 700
    check shim_kill9.heartbeat_recorded heartbeat_recorded "$S1"
    kill -9 "$P1"
    if left=$(wait_clean 30); then t_ok shim_kill9.nothing_left; else t_fail shim_kill9.nothing_left "$left"; fi
    wait_item 10 "$W1" stopped
    check shim_kill9.item_stopped test "$(work_state "$ENV" "$W1")" = stopped
    check shim_kill9.logged grep -q "the shim ended without its teardown" "$LT_LOG"
    check shim_kill9.nothing_claimed test -z "$(claimed_items)"
    check shim_kill9.output_kept test -s "$LT_STATE/sessions/$S1/output.log"
else
    t_fail shim_kill9 "session never reached running: $(tail -n 5 "$LT_LOG")"
fi

# ---- runcell stop ----
lt_session S2 bash-echo
if [ ! -x "$RUNCELL_CLI" ]; then
    t_skip runcell_stop "$RUNCELL_CLI not built"
elif wait_phase "$S2" running 30; then
    W2=$(item_of "$S2")
    check runcell_stop.ok rc_cli stop "$S2" --wait
    if left=$(wait_clean 30); then t_ok runcell_stop.nothing_left; else t_fail runcell_stop.nothing_left "$left"; fi
    check runcell_stop.item_stopped test "$(work_state "$ENV" "$W2")" = stopped
    check runcell_stop.summary grep -q "\"session_id\":\"$S2\".*session ended: end=signal.*work_item=\\(stopped\\|released_by_runner\\)" "$LT_LOG"
else
    t_fail runcell_stop "session never reached running"
fi

# ---- kill -9 of the launcher: the shim lives on and is adopted ----
lt_session S3 bash-echo
if wait_phase "$S3" running 30; then
    P3=$(shim_of "$S3")
    kill -9 "$LAUNCHER_REAL_PID"
    wait "$LAUNCHER_REAL_PID" 2>/dev/null
    LAUNCHER_REAL_PID=
    sleep 0.5
    check launcher_kill9.shim_survives kill -0 "$P3"
    lt_launcher_start
    check launcher_kill9.adopted grep -q "adopted the live shim of $S3" "$LT_LOG"
    kill -TERM "$P3" # end it (as runcell stop would)
    if left=$(wait_clean 30); then t_ok launcher_kill9.nothing_left; else t_fail launcher_kill9.nothing_left "$left"; fi
    check launcher_kill9.nothing_claimed test -z "$(claimed_items)"
else
    t_fail launcher_kill9 "session never reached running"
fi

# ---- kill -9 of the launcher, then of the shim while no launcher runs: the container is
# orphaned; the next launcher finds the session's traces with no live shim and cleans up ----
lt_session S9 bash-echo
if wait_phase "$S9" running 30; then
    W9=$(item_of "$S9")
    P9=$(shim_of "$S9")
    check both_kill9.heartbeat_recorded heartbeat_recorded "$S9"
    kill -9 "$LAUNCHER_REAL_PID"
    wait "$LAUNCHER_REAL_PID" 2>/dev/null
    LAUNCHER_REAL_PID=
    kill -9 "$P9"
    wait_for 5 bash -c "! kill -0 $P9 2>/dev/null"
    lt_launcher_start
    check both_kill9.reconciled grep -q "reconcile: cleaned 1 abandoned session" "$LT_LOG"
    if left=$(wait_clean 30); then t_ok both_kill9.nothing_left; else t_fail both_kill9.nothing_left "$left"; fi
    wait_item 10 "$W9" stopped
    check both_kill9.item_stopped test "$(work_state "$ENV" "$W9")" = stopped
    check both_kill9.nothing_claimed test -z "$(claimed_items)"
    check both_kill9.output_kept test -s "$LT_STATE/sessions/$S9/output.log"
    check both_kill9.logged_stop grep -q "reconcile $S9: work item $W9 force-stopped" "$LT_LOG"
else
    t_fail both_kill9 "session never reached running: $(tail -n 5 "$LT_LOG")"
fi

# ---- kill -9 of runcell-fcgi mid-session: the session carries on; a restarted runcell-fcgi
# serves the next webhooks ----
lt_session S5 bash-echo
if wait_phase "$S5" running 30; then
    kill -9 "$FCGI_PID"
    wait "$FCGI_PID" 2>/dev/null
    FCGI_PID=
    check fcgi_kill9.session_continues test "$(wait_verdict "$S5" 60)" = passed
    check fcgi_kill9.shim_alive kill -0 "$(shim_of "$S5")"
    # A session created while runcell-fcgi is down: its webhook fails (nginx answers 502, the
    # emulator gives up after its retries); the restarted runcell-fcgi's first re-drain claims it.
    lt_session S6 bash-echo
    sleep 3
    check fcgi_kill9.queued_while_down test "$(session_work_states "$S6")" = queued:1
    fcgi_start
    check fcgi_kill9.claimed_after_restart test "$(wait_verdict "$S6" 60)" = passed
    lt_session S10 bash-echo
    check fcgi_kill9.next_webhook_served test "$(wait_verdict "$S10" 60)" = passed
    for s in "$S5" "$S6" "$S10"; do kill -TERM "$(shim_of "$s")" 2>/dev/null; done
    if left=$(wait_clean 40); then t_ok fcgi_kill9.nothing_left; else t_fail fcgi_kill9.nothing_left "$left"; fi
    check fcgi_kill9.nothing_claimed test -z "$(claimed_items)"
else
    t_fail fcgi_kill9 "session never reached running: $(tail -n 5 "$LT_LOG")"
fi

# ---- kill -9 of the runner (the container's init) mid-session: the shim sees it die, force-stops
# the item, and cleans up ----
lt_session S7 bash-echo
if wait_phase "$S7" running 30; then
    W7=$(item_of "$S7")
    P7=$(runc --root "$LT_STATE/runc" state "$S7" 2>/dev/null | jq -r .pid)
    check runner_kill9.is_the_runner test "$(readlink "/proc/$P7/exe" 2>/dev/null | sed 's,.*/,,')" = runcell-runner
    kill -9 "$P7"
    wait_for 30 grep -q "\"session_id\":\"$S7\".*session ended" "$LT_LOG"
    check runner_kill9.summary grep -q "\"session_id\":\"$S7\".*session ended: end=exit exit=137 .*work_item=stopped" "$LT_LOG"
    wait_item 10 "$W7" stopped
    check runner_kill9.item_stopped test "$(work_state "$ENV" "$W7")" = stopped
    if left=$(wait_clean 30); then t_ok runner_kill9.nothing_left; else t_fail runner_kill9.nothing_left "$left"; fi
    check runner_kill9.nothing_claimed test -z "$(claimed_items)"
else
    t_fail runner_kill9 "session never reached running: $(tail -n 5 "$LT_LOG")"
fi

# ---- a snapshot without the runner: runc cannot start the process ----
lt_launcher_stop
mkdir -p "$LT/bad/bin" "$LT/bad/etc"
cp "$(command -v busybox)" "$LT/bad/bin/"
tar -C "$LT/bad" --numeric-owner --owner=0 --group=0 -cf "$LT/bad.tar" .
LT_SNAPSHOT=$LT/bad.tar lt_launcher_start
lt_session S4 bash-echo
wait_for 30 grep -q "\"session_id\":\"$S4\".*session ended" "$LT_LOG"
check bad_snapshot.error_logged grep -q "\"session_id\":\"$S4\".*session start failed: .*runc" "$LT_LOG"
check bad_snapshot.summary grep -q "\"session_id\":\"$S4\".*session ended: end=start_failed.*work_item=stopped" "$LT_LOG"
wait_session_items 10 "$S4" stopped:1
check bad_snapshot.item_stopped test "$(session_work_states "$S4")" = stopped:1
if left=$(wait_clean 30); then t_ok bad_snapshot.nothing_left; else t_fail bad_snapshot.nothing_left "$left"; fi

# ---- the wall-clock limit: a session still up after RUNCELL_SESSION_WALL_LIMIT_S has its
# container stopped (SIGTERM, then SIGKILL), its item stopped, and a summary with the reason ----
lt_launcher_stop
lt_launcher_start RUNCELL_SESSION_WALL_LIMIT_S=4
lt_session S8 bash-echo # dormant for RUNCELL_MAX_IDLE_MS (30 s): well past the limit
if wait_phase "$S8" running 30; then
    W8=$(item_of "$S8")
    wait_for 30 grep -q "\"session_id\":\"$S8\".*session ended" "$LT_LOG"
    check wall_limit.logged grep -q "\"session_id\":\"$S8\".*wall-clock limit of 4 s reached" "$LT_LOG"
    check wall_limit.summary grep -q "\"session_id\":\"$S8\".*session ended: end=wall_limit .*work_item=\(stopped\|released_by_runner\)" "$LT_LOG"
    wait_item 10 "$W8" stopped
    check wall_limit.item_stopped test "$(work_state "$ENV" "$W8")" = stopped
    if left=$(wait_clean 30); then t_ok wall_limit.nothing_left; else t_fail wall_limit.nothing_left "$left"; fi
else
    t_fail wall_limit "session never reached running: $(tail -n 5 "$LT_LOG")"
fi
check all.nothing_claimed test -z "$(claimed_items)"
t_done
