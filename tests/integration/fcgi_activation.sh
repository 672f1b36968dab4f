#!/usr/bin/env bash
# tests/integration/fcgi_activation.sh - runcell-fcgi under a real systemd-socket-activate (the
# socket passed as fd 3, exec'd on the first connection), receiving the emulator's own signed
# session.status_run_started deliveries through a real nginx (--webhook-url): with the
# webhook_duplicates fault every delivery is sent twice, and every item is still claimed and
# handed off exactly once. Then SIGTERM while a delivery is being drained: that request is
# finished (its item handed off, a complete answer), the process exits 0, nginx answers 502.
. "$(dirname "$0")/fcgi_lib.sh"

fcgi_require
SSA=$(command -v systemd-socket-activate 2>/dev/null) || skip_all "systemd-socket-activate not installed"

# nginx's port is fixed first: the emulator needs the webhook URL at start.
PORT=$(free_port)
fcgi_world --webhook-url "http://127.0.0.1:$PORT/webhook" --webhook-backoff-ms 300,600
launcher_start accepted

# The variables runcell-fcgi needs are named with -E (values come from the environment of
# systemd-socket-activate, which passes on only what it is told to).
(
    fcgi_env_export
    pass=()
    for v in $(compgen -e | grep -E '^(ANTHROPIC_|RUNCELL_|ASAN_OPTIONS$|UBSAN_OPTIONS$|LSAN_OPTIONS$)'); do
        pass+=(-E "$v")
    done
    exec "${AS_NOBODY[@]}" "$SSA" -l "$F_SOCK" --fdname=fcgi "${pass[@]}" "$FCGI"
) >>"$F_LOG" 2>&1 &
FCGI_PID=$!
wait_for 5 test -S "$F_SOCK" || fatal activator_start "systemd-socket-activate did not start: $(tail -n 3 "$F_LOG")"
check activator_waits_for_a_connection test "$(readlink "/proc/$FCGI_PID/exe")" = "$(readlink -f "$SSA")"
nginx_start "$PORT"

# ---- the first connection execs runcell-fcgi with the socket as fd 3 --------------------------
http "$NGX/healthz"
expect activated_healthz_200 200 .status ok
check activated_same_pid_is_fcgi test "$(readlink "/proc/$FCGI_PID/exe")" = "$(readlink -f "$FCGI")"
check activated_log_says_so grep -q 'listening on the socket passed by socket activation (fd 3)' "$F_LOG"
check activated_fd3_is_the_socket test "$(readlink "/proc/$FCGI_PID/fd/3" | cut -d: -f1)" = socket
check activated_created_no_socket_of_its_own bash -c "! grep -q 'listening on /' '$F_LOG'"

# ---- the emulator's deliveries, each sent twice ---------------------------------------------
faults '{"webhook_duplicates":2}'
# message SID: a user message makes the session run -> one signed webhook (x2).
message() {
    api POST "/v1/sessions/$1/events" \
        '{"events":[{"type":"user.message","content":[{"type":"text","text":"hello"}]}]}'
}
mk_session S1 "$AGENT" "$ENV"
mk_session S2 "$AGENT" "$ENV"
message "$S1"
message "$S2"
# settled: all 4 deliveries made and answered (2xx, or given up).
settled() {
    admin GET /stats
    [ "$(jb '.webhooks | .enqueued >= 4 and (.delivered + .failed + .dropped) >= .enqueued')" = true ]
}
wait_for 20 settled || t_fail emulator_deliveries_settled "stats: $(jb .webhooks)"
check emulator_sent_four_deliveries test "$(jb .webhooks.enqueued)" = 4
check emulator_deliveries_all_2xx test "$(jb '.webhooks | "\(.delivered) \(.failed) \(.dropped)"')" = "4 0 0"
check emulator_saw_only_200_or_503 test \
    "$(jb '[.webhooks.responses | keys[] | select(. != "200" and . != "503")] | length')" = 0
check each_item_handed_off_once test "$(launch_of "$S1") / $(launch_of "$S2")" = "accepted true / accepted true"
check nothing_else_launched test "$(launches)" = 2
check both_items_starting test "$(item_state "$S1") $(item_state "$S2")" = "starting starting"
check queue_empty test "$(queue_stats)" = "0 0"
metrics
check duplicates_recognised test \
    "$(($(metric 'runcell_fcgi_webhooks_total{outcome="duplicate"}') + $(metric 'runcell_fcgi_webhooks_total{outcome="in_flight"}')))" -ge 2
check claims_two test "$(metric runcell_fcgi_claims_total)" = 2

fcgi_hygiene hygiene

# ---- SIGTERM while a delivery is being drained ----------------------------------------------
# Every API answer takes 1 s, so the drain (poll, ack, hand-off, poll) takes seconds; SIGTERM
# lands during its first poll. The drain then acks and hands off the item it got, takes nothing
# new, and answers; only then does the process exit.
faults '{"latency_ms":1000}'
mk_session S3 "$AGENT" "$ENV"
envelope whe_term session.status_run_started "$S3" >"$F_DIR/term.json"
(
    ANS=$F_DIR/term.answer
    deliver "$F_DIR/term.json" whe_term
    printf '%s %s\n' "$WST" "$(answer '"\(.status) \(.claimed) \(.handed_off)"')" >"$F_DIR/term.result"
) &
INFLIGHT=$!
F_BG_PIDS+=("$INFLIGHT")
in_flight_now() { metrics && [ "$(metric runcell_fcgi_webhooks_in_flight)" = 1 ]; }
wait_for 10 in_flight_now || t_fail in_flight_started "the delivery never showed in the in-flight gauge"
sleep 0.3
kill -TERM "$FCGI_PID"
start=$SECONDS
wait "$FCGI_PID"
rc=$?
elapsed=$((SECONDS - start))
FCGI_PID=
wait "$INFLIGHT"
F_BG_PIDS=()
check sigterm_exit_status_0 test "$rc" = 0
check sigterm_exits_promptly test "$elapsed" -le 15
# Interrupted before the queue was known to be empty: 503 shutting_down (the sender retries,
# the retry finds the item claimed); the item it had taken was handed off all the same.
result=$(cat "$F_DIR/term.result" 2>/dev/null)
check sigterm_in_flight_answered test "$result" = "503 shutting_down 1 1"
check sigterm_item_handed_off test "$(launch_of "$S3") $(item_state "$S3")" = "accepted true starting"
check sigterm_logged grep -q 'finishing in-flight requests' "$F_LOG"
check sigterm_workers_finished grep -q 'all workers finished; exiting' "$F_LOG"
fcgi_sanitizer_check sigterm
faults '{}'
http "$NGX/healthz"
check gone_after_exit test "$WST" = 502
t_done
