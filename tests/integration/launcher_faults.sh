#!/usr/bin/env bash
# tests/integration/launcher_faults.sh - the launcher when things go wrong, through the real
# chain (launcher_lib.sh):
#   - kill -9 of a shim in the middle of a session: the daemon notices (pidfd), force-stops the
#     item with the token from the root-only work file, and leaves no container, mount or netns;
#   - `runcell stop SESSION_ID`: the shim stops the container, force-stops the item, cleans up;
#   - `runcell status` / `runcell sessions` read the daemon's state;
#   - kill -9 of the launcher itself: the running shim carries on; a new launcher adopts it;
#   - a snapshot whose runner cannot start (runc fails): the item is force-stopped, the error is
#     logged, nothing is left.
. "$(dirname "$0")/launcher_lib.sh"

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
    kill -9 "$P1"
    if left=$(wait_clean 30); then t_ok shim_kill9.nothing_left; else t_fail shim_kill9.nothing_left "$left"; fi
    wait_for 10 test "$(work_state "$ENV" "$W1")" = stopped
    check shim_kill9.item_stopped test "$(work_state "$ENV" "$W1")" = stopped
    check shim_kill9.logged grep -q "the shim ended without its teardown" "$LT_LOG"
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
else
    t_fail launcher_kill9 "session never reached running"
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
wait_for 10 test "$(session_work_states "$S4")" = stopped:1
check bad_snapshot.item_stopped test "$(session_work_states "$S4")" = stopped:1
if left=$(wait_clean 30); then t_ok bad_snapshot.nothing_left; else t_fail bad_snapshot.nothing_left "$left"; fi
t_done
