#!/usr/bin/env bash
# tests/integration/reliability_envfaults.sh - issue 9, environment faults, through the whole
# chain of launcher_lib.sh (emulator -> nginx -> runcell-fcgi -> launcher -> shim -> runc ->
# runner). Each case asserts a clear error naming the cause, the work item's end state, and that
# nothing is left behind (lt_leftovers: containers, mounts, netns, cgroups, bundles, session dirs,
# work files; plus loop devices and live shims), and that the next session works once the fault
# is gone.
#
#   disk_full      the launcher's state dir is a 32 MiB tmpfs made by the test (the minimal
#                  snapshot takes 24 MiB of it), filled to the last block: a delivered session
#                  fails to start with "No space left on device" (the work file) in the launcher
#                  log, its item is force-stopped (protocol 14.4, "item failed"), no partial file
#                  is left; a new snapshot cannot be imported (the launcher refuses to start, the
#                  store is unchanged); nearly full (96 KiB: room for the small files, not for
#                  mkfs.ext4 of the workspace image) likewise; after freeing space the next
#                  session passes.
#   disk_full_running  the disk fills while a session runs: the container output the shim cannot
#                  write is dropped and counted (output_bytes_dropped), the session goes on and
#                  passes, nothing is left.
#   runc_missing   RUNCELL_RUNC names a runc that disappears while the launcher runs: start
#                  fails naming the path, item stopped, nothing left; with runc back the next
#                  session passes. A launcher started without runc (a missing RUNCELL_RUNC path,
#                  or none on PATH) refuses to start naming it; a delivery meanwhile is answered
#                  503 launcher_unavailable, the item stays queued and is claimed later.
#   snapshot       truncated, garbled, and two escaping (`../`, a symlink to /) snapshot
#                  tarballs: the launcher refuses to start naming the problem, the store is
#                  unchanged, nothing is written outside it; the item queued meanwhile is claimed
#                  once a launcher with a good snapshot is up. The imported runner made
#                  non-executable in the store: start fails quoting runc, item stopped.
#   api_down       the API unreachable: runcell-fcgi and the launcher (so every shim and runner)
#                  reach the emulator through a TCP relay the test kills (connection refused,
#                  open streams cut) and restarts. A webhook during the outage is answered
#                  503 poll_failed (the sender retries), the item stays queued and the re-drain
#                  claims it once the API is back. An outage while a call runs: the runner
#                  retries the result and the stream, the session passes with one shim. An
#                  outage from the shim's start, longer than the 10 s lease: the runner retries
#                  its session read until the lease is lost (exit 3, the item not stopped), the
#                  item is queued again and re-claimed; the session passes. Every tool use
#                  answered exactly once.
#   bash_kill9     kill -9 of the agent's persistent bash during a long command: the call gets
#                  an error result ("bash session terminated") at once, the next call gets a
#                  fresh shell, the session passes with one shim (runner_executor.sh kills the
#                  tool executor between calls; reliability_faults.sh has no process kill).
#
# Needs what launcher_lib.sh needs (root, runc, nginx, busybox-static, ...) plus mkfs.ext4 and
# fallocate. About 2 minutes. RUNCELL_LONG=1 adds api_down_long: an outage (25 s) longer than
# the lease (10 s) while a call runs: the runner gives the lease up (exit 3, no stop), the item
# is queued again, re-claimed after the outage, and the session passes. EF_CASES="..." runs
# only the named cases.
# shellcheck source=tests/integration/launcher_lib.sh
. "$(dirname "$0")/launcher_lib.sh"
ef_cleanup() {
    relay_down
    [ -n "${LT_KEEP:-}" ] && cp -r "$LT_STATE/sessions" "$LT/kept-sessions" 2>/dev/null
    lt_cleanup
}
trap ef_cleanup EXIT

STATE_FS_SIZE=32m
SCN=$LT/scenarios
EF_SESSIONS=() # every session of the test, for the final check

# ---- setup ------------------------------------------------------------------------------------

ef_require() {
    lt_require
    command -v mkfs.ext4 >/dev/null 2>&1 || { t_skip all "mkfs.ext4 not installed"; exit 0; }
    command -v fallocate >/dev/null 2>&1 || { t_skip all "fallocate not installed"; exit 0; }
}

# The API relay: runcell-fcgi and the launcher (and so every shim and runner) reach the emulator
# through it; relay_down closes the port (connection refused) and cuts every open connection,
# relay_up listens again on the same port.
write_relay() {
    cat >"$LT/relay.py" <<'EOF'
import asyncio, socket, sys
port, target = int(sys.argv[1]), int(sys.argv[2])
async def pipe(r, w):
    try:
        while True:
            b = await r.read(65536)
            if not b:
                break
            w.write(b)
            await w.drain()
    except Exception:
        pass
    finally:
        try:
            w.close()
        except Exception:
            pass
async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", target)
    except Exception:
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
async def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    srv = await asyncio.start_server(handle, sock=s)
    print("ready", flush=True)
    await srv.serve_forever()
asyncio.run(main())
EOF
}
RELAY_PID=
relay_up() {
    [ -n "$RELAY_PID" ] && return 0 # up already
    python3 "$LT/relay.py" "$RELAY_PORT" "$EMU_PORT" >"$LT/relay.out" 2>&1 &
    RELAY_PID=$!
    wait_for 10 grep -qs ready "$LT/relay.out" || { t_fail relay_up "$(cat "$LT/relay.out")"; exit 1; }
}
relay_down() {
    [ -n "$RELAY_PID" ] && kill -9 "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
    RELAY_PID=
    : >"$LT/relay.out"
}

# ef_launcher_start [VAR=VALUE...]: the launcher, its API through the relay.
ef_launcher_start() {
    local B=$RELAY_URL # lt_env reads B
    lt_launcher_start RUNCELL_WORKSPACE_SIZE=16M RUNCELL_PURGE_WORKSPACE=1 "$@"
}

ef_setup() {
    ef_require
    lt_snapshot minimal
    mkdir -p "$LT_STATE" "$SCN"
    mount -t tmpfs -o "size=$STATE_FS_SIZE,mode=0755" rc-envfaults "$LT_STATE" || {
        t_skip all "cannot mount a tmpfs"
        exit 0
    }
    write_scenarios
    local port
    port=$(free_port)
    em_start --scenarios "$SCN" --webhook-url "http://127.0.0.1:$port/webhook" \
        --webhook-backoff-ms 300,600
    mk_env ENV envfaults
    mk_key ek "$ENV"
    EMU_PORT=${B##*:}
    RELAY_PORT=$(free_port)
    RELAY_URL=http://127.0.0.1:$RELAY_PORT
    write_relay
    relay_up
    B=$RELAY_URL fcgi_env "$ENV"
    ef_launcher_start
    fcgi_start
    nginx_start "$port"
}

# ---- scenarios --------------------------------------------------------------------------------

# scenario NAME STEPS-JSON: one turn of STEPS with the default toolset.
scenario() {
    jq -n --arg n "$1" --argjson s "$2" '{name: $n, description: "reliability_envfaults.sh",
        agent: {tools: [{type: "agent_toolset_20260401",
            default_config: {enabled: true, permission_policy: {type: "always_allow"}}}]},
        turns: [{user: "go", steps: $s}]}' >"$SCN/$1.json"
}
write_scenarios() {
    cp tests/scenarios/bash-echo.json "$SCN/"
    # Three calls that each take a few seconds: an outage lands while one runs.
    scenario ef-slow '[
        {"tool": "bash", "input": {"command": "touch started-1; sleep 3; echo one >> n.txt; wc -l < n.txt"},
         "expect": {"is_error": false, "text": "1"}},
        {"tool": "bash", "input": {"command": "sleep 3; echo two >> n.txt; wc -l < n.txt"},
         "expect": {"is_error": false, "text": "2"}},
        {"tool": "bash", "input": {"command": "sleep 1; echo three >> n.txt; wc -l < n.txt"},
         "expect": {"is_error": false, "text": "3"}}]'
    # The same, but the first call ends only once the test created go-1 (at most 20 s), so its
    # result is posted inside an outage the test started, however busy the machine.
    # shellcheck disable=SC2016 # $(seq) is for the agent's bash
    scenario ef-hold '[
        {"tool": "bash", "input": {"command": "touch started-1; for i in $(seq 200); do [ -e go-1 ] && break; sleep 0.1; done; echo one >> n.txt; wc -l < n.txt"},
         "expect": {"is_error": false, "text": "1"}},
        {"tool": "bash", "input": {"command": "sleep 3; echo two >> n.txt; wc -l < n.txt"},
         "expect": {"is_error": false, "text": "2"}},
        {"tool": "bash", "input": {"command": "sleep 1; echo three >> n.txt; wc -l < n.txt"},
         "expect": {"is_error": false, "text": "3"}}]'
    # Calls that write nothing to the workspace (its image lives on the state dir too).
    # shellcheck disable=SC2016 # jq's $i
    scenario ef-quiet "$(jq -cn '[{tool: "bash", input: {command: "sleep 3; echo one"},
        expect: {is_error: false, text: "one"}}] + [range(2; 26) | tostring as $i |
        {tool: "bash", input: {command: ("echo call-" + $i)}, expect: {is_error: false, text: ("call-" + $i)}}]')"
    scenario ef-idem '[
        {"tool": "bash", "input": {"command": "touch started-1; sleep 3; echo one"},
         "expect": {"is_error": false, "text": "one", "wait_ms": 120000}},
        {"tool": "bash", "input": {"command": "echo two"}, "expect": {"is_error": false, "text": "two"}}]'
    # A long command whose shell the test kills, then a call that needs a fresh shell.
    # shellcheck disable=SC2016 # ${MARK} is for the agent's bash
    scenario ef-bash-kill '[
        {"tool": "bash", "input": {"command": "export MARK=set; echo ef-long-marker; sleep 60; echo done"},
         "expect": {"is_error": true, "text": "bash: bash session terminated", "wait_ms": 90000}},
        {"tool": "bash", "input": {"command": "echo \"alive:${MARK:-unset}\""},
         "expect": {"is_error": false, "text": "alive:unset"}}]'
}

# ef_session VAR SCENARIO: an agent with the scenario's tools and a session playing it.
ef_session() {
    local file=$SCN/$2.json tools agent
    tools=$(jq -c '.agent.tools' "$file")
    api POST /v1/agents "$(jq -cn --arg n "ef-$2" --argjson t "$tools" \
        '{name: $n, model: "claude-sonnet-4-6", tools: $t}')"
    agent=$(jb .id)
    api POST /v1/sessions "$(jq -cn --arg a "$agent" --arg e "$ENV" --arg s "$2" \
        '{agent: $a, environment_id: $e, metadata: {scenario: $s}}')"
    printf -v "$1" '%s' "$(jb .id)"
    EF_SESSIONS+=("$(jb .id)")
}

# ---- checks -----------------------------------------------------------------------------------

# What is left of the test's sessions: lt_leftovers (minus the state tmpfs itself), loop devices
# backed by a file of the test, live shims.
ef_leftovers() {
    local left
    left=$(lt_leftovers)
    left=${left//"mount:$LT_STATE "/}
    left+=$(losetup -a 2>/dev/null | awk -v p="$LT/" 'index($0, p) {print "loop:" $1}' | tr '\n' ' ')
    left+=$(shim_pids | sed 's/^/shim:/' | tr '\n' ' ')
    echo "$left"
}
ef_wait_clean() { # ef_wait_clean SECONDS: until nothing is left; prints what is
    local end=$((SECONDS + $1)) left
    while :; do
        left=$(ef_leftovers)
        [ -z "${left// /}" ] && return 0
        [ $SECONDS -ge $end ] && break
        sleep 0.3
    done
    echo "$left"
    return 1
}
# no_leak CASE: nothing left on the host, nothing claimed at the API.
no_leak() {
    local left
    if left=$(ef_wait_clean 30); then t_ok "$1.nothing_left"; else t_fail "$1.nothing_left" "$left"; fi
    check "$1.nothing_claimed" test -z "$(claimed_items)"
}
# log_has SID REGEX: a launcher log line of that session matches.
log_has() { grep -q "\"session_id\":\"$1\".*$2" "$LT_LOG"; }
wait_ended() { wait_for "${2:-40}" log_has "$1" "session ended"; }
session_log() { grep "\"session_id\":\"$1\"" "$LT_LOG" | tail -n "${2:-4}" | sed 's/^/#     /'; }
# passes CASE SID [SECONDS]: the verdict is passed and the session's item stopped.
passes() {
    local v
    v=$(wait_verdict "$2" "${3:-60}")
    if [ "$v" = passed ]; then t_ok "$1.passed"; else
        t_fail "$1.passed" "verdict $v (session $2, items: $(session_work_states "$2"))"
        api GET "/_emulator/v1/sessions/$2/verdict"
        jq -c '[.steps[]? | select(.passed != true)]' "$EM_DIR/body" 2>/dev/null | head -c 800 | sed 's/^/#     /'
        echo
        session_log "$2" 6
    fi
    wait_session_items 15 "$2" stopped:1
    check "$1.item_stopped" test "$(session_work_states "$2")" = stopped:1
}
# start_failed CASE SID REGEX: the shim logged `session start failed: ...REGEX`, its summary
# says start_failed and stopped, the item is stopped.
start_failed() {
    wait_ended "$2" 40
    if log_has "$2" "session start failed: .*$3"; then t_ok "$1.clear_error"; else
        t_fail "$1.clear_error" "no 'session start failed: ...$3' line"
        session_log "$2" 6
    fi
    check "$1.summary" log_has "$2" "session ended: end=start_failed .*work_item=stopped"
    wait_session_items 15 "$2" stopped:1
    check "$1.item_stopped" test "$(session_work_states "$2")" = stopped:1
}
wait_phase() { # wait_phase SID PHASE SECONDS
    wait_for "$3" bash -c "jq -e --arg p '$2' '.phase == \$p' '$LT_RUN/sessions/$1/state.json' >/dev/null 2>&1"
}
avail_bytes() { df --output=avail -B1 "$LT_STATE" | tail -n 1 | tr -d ' '; }

# ---- disk full on the state dir ---------------------------------------------------------------

case_disk_full() {
    local s1 s2 s3
    # Every block taken: the first file the shim writes there (the work file) fails.
    fallocate -l "$(avail_bytes)" "$LT_STATE/filler" 2>/dev/null
    dd if=/dev/zero of="$LT_STATE/filler2" bs=4k 2>/dev/null
    check disk_full.is_full test "$(avail_bytes)" -lt 8192
    ef_session s1 bash-echo
    start_failed disk_full "$s1" "[Nn]o space left on device"
    check disk_full.no_partial_file test -z "$(find "$LT_STATE" -name '*.tmp' 2>/dev/null)"
    no_leak disk_full

    # A new snapshot to import on the full disk: the launcher refuses to start naming ENOSPC, and
    # the store is left as it was (the partial tree under tmp/ and its lock removed).
    local before
    before=$(store_listing)
    cp "$LT_TAR" "$LT/other.tar"
    echo "another snapshot" >"$LT/other-marker"
    tar -C "$LT" -rf "$LT/other.tar" other-marker
    lt_launcher_stop
    launcher_refuses disk_full.import "$LT/import-full.log" RUNCELL_SNAPSHOT="$LT/other.tar"
    check disk_full.import.error grep -q "snapshot import failed: .*No space left on device" "$LT/import-full.log"
    check disk_full.import.store_unchanged test "$(store_listing)" = "$before"
    ef_launcher_start

    # Nearly full: the small files fit, the workspace image does not.
    rm -f "$LT_STATE/filler" "$LT_STATE/filler2"
    fallocate -l $(($(avail_bytes) - 96 * 1024)) "$LT_STATE/filler"
    ef_session s2 bash-echo
    start_failed disk_full_nearly "$s2" "[Nn]o space left on device"
    no_leak disk_full_nearly
    check disk_full_nearly.no_partial_image test -z "$(find "$LT_STATE" -name 'fs.img*' 2>/dev/null)"

    # Space freed: the next session works.
    rm -f "$LT_STATE/filler"
    ef_session s3 bash-echo
    passes disk_full.after_freeing "$s3"
    no_leak disk_full.after_freeing
}

# The disk fills while a session runs: writes to the container's output log (kept on the state
# dir) fail. The session goes on: oci/runc.c log_out() drops and counts what it cannot write
# (before that fix the shim's wait failed on the ENOSPC and ended the session, end=wait_failed).
case_disk_full_running() {
    local s1
    ef_session s1 ef-quiet
    if ! wait_phase "$s1" running 30; then
        t_fail disk_full_running "session never reached running"; session_log "$s1" 6; return
    fi
    sleep 1
    fallocate -l "$(avail_bytes)" "$LT_STATE/filler" 2>/dev/null
    dd if=/dev/zero of="$LT_STATE/filler2" bs=4k 2>/dev/null
    wait_ended "$s1" 60
    passes disk_full_running "$s1" 30
    check disk_full_running.dropped_counted log_has "$s1" "session ended: end=exit exit=0 .*output_bytes_dropped=[1-9]"
    check disk_full_running.warned log_has "$s1" "container output not kept"
    rm -f "$LT_STATE/filler" "$LT_STATE/filler2"
    no_leak disk_full_running
}

# ---- runc missing -----------------------------------------------------------------------------

# launcher_refuses NAME LOG VAR=VALUE...: the launcher, started with these settings, exits 1 at
# once (before listening) and its log goes to LOG.
launcher_refuses() {
    local name=$1 log=$2 rc=0
    shift 2
    rm -f "$L_SOCK"
    (
        B=$RELAY_URL lt_env
        exec timeout 60 env RUNCELL_SNAPSHOT="$LT_TAR" "$@" "$LAUNCHER"
    ) >"$log" 2>&1 || rc=$?
    check "$name.refuses_to_start" test "$rc" = 1
    check "$name.not_listening" test ! -S "$L_SOCK"
}

# A delivery while no launcher runs: runcell-fcgi answers 503 launcher_unavailable (the sender
# retries), nothing is claimed; the item waits queued. (runcell-fcgi's re-drain backs off while
# the launcher is down, 1 s doubling to 30 s: keep the outage short.)
delivery_while_down() { # delivery_while_down NAME SID-VAR
    local before
    before=$(grep -c ': 503 unavailable (launcher_unavailable)' "$F_DIR/fcgi.log")
    ef_session "$2" bash-echo
    if wait_for 15 bash -c "test \"\$(grep -c ': 503 unavailable (launcher_unavailable)' '$F_DIR/fcgi.log')\" -gt $before"; then
        t_ok "$1.webhook_503"
    else
        t_fail "$1.webhook_503" "no 503 launcher_unavailable: $(tail -n 3 "$F_DIR/fcgi.log")"
    fi
    check "$1.item_queued" test "$(session_work_states "${!2}")" = queued:1
}

case_runc_missing() {
    local s1 s2 s3
    mkdir -p "$LT/bin"
    ln -sf "$(command -v runc)" "$LT/bin/runc"
    lt_launcher_stop
    ef_launcher_start RUNCELL_RUNC="$LT/bin/runc"
    # runc disappears under a running launcher (a package removed, a bad deploy).
    rm -f "$LT/bin/runc"
    ef_session s1 bash-echo
    start_failed runc_missing "$s1" "runc not executable at $LT/bin/runc: No such file or directory"
    no_leak runc_missing
    ln -sf "$(command -v runc)" "$LT/bin/runc"
    ef_session s2 bash-echo
    passes runc_missing.restored "$s2"
    no_leak runc_missing.restored

    # A launcher started without runc refuses to run, naming it; deliveries meanwhile are
    # answered 503 and their items stay queued, then a launcher with runc claims them.
    lt_launcher_stop
    delivery_while_down runc_missing.down s3
    launcher_refuses runc_missing.at_start "$LT/norunc.log" RUNCELL_RUNC="$LT/bin/nope"
    check runc_missing.at_start.error grep -q "no session can start (RUNCELL_RUNC): runc not executable at $LT/bin/nope" "$LT/norunc.log"
    launcher_refuses runc_missing.not_on_path "$LT/norunc2.log" PATH=/nonexistent
    check runc_missing.not_on_path.error grep -q "runc not found on PATH" "$LT/norunc2.log"
    ef_launcher_start
    passes runc_missing.claimed_later "$s3" 60
    no_leak runc_missing.claimed_later
}

# ---- snapshot corrupt --------------------------------------------------------------------------

# The store as names, types and sizes (the last-use stamps' times left out).
store_listing() {
    find "$LT_STATE/snapshots" -mindepth 1 -printf '%P %y %s\n' 2>/dev/null | sort
}
# bad_tarballs: a truncated copy, random bytes, and archives whose members climb out of the tree
# (../ and a symlink to / followed by a file through it). Sets ESCAPE (the name to look for).
bad_tarballs() {
    head -c $((1048576 + 77)) "$LT_TAR" >"$LT/truncated.tar" # in the middle of an entry
    head -c 262144 /dev/urandom >"$LT/garbled.tar"
    ESCAPE=ef-escape-$RANDOM$RANDOM
    python3 - "$LT/escape-dotdot.tar" "$LT/escape-symlink.tar" "$ESCAPE" <<'PY'
import io, sys, tarfile
def add(t, name, data=b"x", **kw):
    i = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(i, k, v)
    i.size = len(data) if i.type == tarfile.REGTYPE else 0
    t.addfile(i, io.BytesIO(data) if i.type == tarfile.REGTYPE else None)
with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT) as t:
    add(t, "etc/ok", b"fine")
    add(t, "../../../../../../../../" + sys.argv[3], b"escaped")
with tarfile.open(sys.argv[2], "w", format=tarfile.GNU_FORMAT) as t:
    add(t, "etc/ok", b"fine")
    add(t, "up", type=tarfile.SYMTYPE, linkname="/")
    add(t, "up/tmp/" + sys.argv[3], b"escaped")
PY
}

case_snapshot() {
    local s1 s2 before kind
    bad_tarballs
    before=$(store_listing)
    lt_launcher_stop
    delivery_while_down snapshot.down s1
    for kind in truncated garbled escape-dotdot escape-symlink; do
        launcher_refuses "snapshot.$kind" "$LT/snap-$kind.log" RUNCELL_SNAPSHOT="$LT/$kind.tar"
        if grep -q '"level":"error".*msg' "$LT/snap-$kind.log"; then
            echo "# $kind: $(grep '"level":"error"' "$LT/snap-$kind.log" | tail -n 1 | jq -r .msg)"
            t_ok "snapshot.$kind.error_logged"
        else
            t_fail "snapshot.$kind.error_logged" "$(tail -n 2 "$LT/snap-$kind.log")"
        fi
        check "snapshot.$kind.store_unchanged" test "$(store_listing)" = "$before"
    done
    check snapshot.truncated.names_it grep -qi 'truncat' "$LT/snap-truncated.log"
    check snapshot.nothing_outside_store bash -c "! ls /$ESCAPE /tmp/$ESCAPE '$LT/$ESCAPE' 2>/dev/null &&
        test -z \"\$(find '$LT' /tmp -maxdepth 6 -name '$ESCAPE' 2>/dev/null)\""
    ef_launcher_start
    passes snapshot.claimed_with_good_snapshot "$s1" 60
    no_leak snapshot

    # The imported tree damaged afterwards: the runner is no longer executable.
    local runner
    runner=$(find "$LT_STATE/snapshots/sha256" -path '*/rootfs/*' -name runcell-runner -type f | head -n 1)
    if [ -z "$runner" ]; then
        t_fail snapshot.runner_not_executable "no runner in the store"
        return
    fi
    chmod 0644 "$runner"
    ef_session s2 bash-echo
    start_failed snapshot.runner_not_executable "$s2" "runcell-runner.*permission denied"
    chmod 0755 "$runner"
    no_leak snapshot.runner_not_executable
}

# ---- API unreachable ---------------------------------------------------------------------------

# Tool uses of a session without exactly one result: "id count" lines (none = good).
unanswered_or_twice() {
    api GET "/v1/sessions/$1/events?limit=1000"
    jq -r '.data as $d
        | ([$d[] | select(.type == "agent.tool_use") | .id]) as $uses
        | ([$d[] | select(.type == "user.tool_result") | .tool_use_id]) as $res
        | $uses[] as $u | ([$res[] | select(. == $u)] | length) as $n
        | select($n != 1) | "\($u) \($n)"' "$EM_DIR/body"
}
tool_uses() {
    api GET "/v1/sessions/$1/events?limit=1000"
    jq '[.data[] | select(.type == "agent.tool_use")] | length' "$EM_DIR/body"
}
webhook_responses() { # the emulator's count of webhook answers with that status
    api GET /_emulator/v1/stats
    jq --arg c "$1" '.webhooks.responses[$c] // 0' "$EM_DIR/body"
}
answered_once() { # answered_once CASE SID
    local bad
    bad=$(unanswered_or_twice "$2")
    if [ -z "$bad" ] && [ "$(tool_uses "$2")" -gt 0 ]; then t_ok "$1.answered_once"; else
        t_fail "$1.answered_once" "tool uses without exactly one result: ${bad:-no tool use}"
    fi
}

case_api_down() {
    local s1 before t
    # A webhook while the API is unreachable: runcell-fcgi cannot poll and answers 503
    # (poll_failed), the sender retries, nothing is claimed; the re-drain claims the item once
    # the API is back.
    before=$(webhook_responses 503)
    relay_down
    ef_session s1 bash-echo
    if wait_for 15 grep -q "\"session_id\":\"$s1\".*webhook .*: 503 .*(poll_failed)" "$F_DIR/fcgi.log"; then
        t_ok api_down.webhook.answer_503_poll_failed
    else
        t_fail api_down.webhook.answer_503_poll_failed "$(grep "$s1" "$F_DIR/fcgi.log" | tail -n 2)"
    fi
    sleep 1.5 # the sender's retries (300 and 600 ms apart) meet the outage too
    check api_down.webhook.sender_retried test "$(webhook_responses 503)" -ge $((before + 2))
    check api_down.webhook.item_queued test "$(session_work_states "$s1")" = queued:1
    t=$SECONDS
    relay_up
    passes api_down.webhook "$s1" 60
    echo "# api_down.webhook: passed $((SECONDS - t)) s after the API came back"
    no_leak api_down.webhook
}

case_api_down_running() {
    local s2 mark
    # An outage while a call runs: its result cannot be posted, heartbeats fail, the stream is
    # cut and its reconnects refused. The runner keeps trying within its limits (results and
    # heartbeats for the lease TTL); every call runs and is answered once (each step counts its
    # runs in the workspace).
    ef_session s2 ef-hold
    mark=$LT_STATE/workspaces/$s2/data/started-1 # the first call has begun
    if wait_for 40 test -e "$mark"; then
        relay_down
        touch "$LT_STATE/workspaces/$s2/data/go-1" # the call ends now, inside the outage
        sleep 6
        relay_up
        passes api_down.mid_session "$s2" 60
        answered_once api_down.mid_session "$s2"
        check api_down.mid_session.one_shim test "$(grep -c "\"session_id\":\"$s2\".*shim started (pid" "$LT_LOG")" = 1
        check api_down.mid_session.runner_retried grep -q "attempt 1 got HTTP 502" "$LT_STATE/sessions/$s2/output.log"
    else
        t_fail api_down.mid_session "the first call never started"; session_log "$s2" 6
    fi
    no_leak api_down.mid_session
}

# An outage from the moment the shim starts, longer than the lease (12 s against 10 s): the
# runner's first heartbeat and its session read meet it. The runner retries the read (14.3.5 with
# the lease-TTL window of 13.9) until its heartbeat assumes the lease lost, then exits 3 and the
# shim does not stop the item (work_item=skipped_lease_lost); the API queues it again when the
# lease expires and runcell-fcgi's re-drain (still backing off from its failed polls) claims it
# once the API is back. The session passes; every call answered once.
case_api_down_start() {
    local s3 shims
    api POST /_emulator/v1/faults '{"lease_ttl_seconds": 10}'
    ef_session s3 ef-slow
    if wait_for 30 log_has "$s3" "shim started (pid"; then
        relay_down
        sleep 12
        relay_up
        passes api_down.at_start "$s3" 90
        answered_once api_down.at_start "$s3"
        shims=$(grep -c "\"session_id\":\"$s3\".*shim started (pid" "$LT_LOG")
        if log_has "$s3" "session ended: end=exit exit=3 .*work_item=skipped_lease_lost"; then
            check api_down.at_start.reclaimed test "$shims" -ge 2
            echo "# api_down.at_start: the first runner retried its session read until the lease was lost (exit 3, item not stopped), re-claimed after the lease; $shims shims"
        else
            echo "# api_down.at_start: the outage missed the runner's start; $shims shim(s)"
        fi
    else
        t_fail api_down.at_start "no shim started"
    fi
    api POST /_emulator/v1/faults '{}'
    no_leak api_down.at_start
}

# RUNCELL_LONG: the same with an outage (4 s) shorter than the lease (10 s). The runner retries
# its session read through the outage and serves the turn itself: one shim, the item never
# stopped before the turn is served, every call answered once.
case_api_down_start_short() {
    local s1
    api POST /_emulator/v1/faults '{"lease_ttl_seconds": 10}'
    ef_session s1 ef-slow
    if ! wait_for 30 log_has "$s1" "shim started (pid"; then
        t_fail api_down_short "no shim started"; api POST /_emulator/v1/faults '{}'; return
    fi
    relay_down
    sleep 4
    relay_up
    passes api_down_short "$s1" 60
    api POST /_emulator/v1/faults '{}'
    answered_once api_down_short "$s1"
    check api_down_short.one_shim test "$(grep -c "\"session_id\":\"$s1\".*shim started (pid" "$LT_LOG")" = 1
    if grep -q "session fetch failed (attempt" "$LT_STATE/sessions/$s1/output.log" 2>/dev/null; then
        t_ok api_down_short.read_retried
    else
        echo "# api_down_short: the outage missed the runner's session read"
    fi
    no_leak api_down_short
}

# RUNCELL_LONG: an outage longer than the lease (10 s) while a call runs. No heartbeat gets
# through within the TTL, so the runner assumes the lease lost, posts nothing more and exits 3;
# the shim does not stop the item (14.4: work_item=skipped_lease_lost); the emulator queues it
# again; once the API is back the re-drain claims it, the new runner runs the call whose result
# never landed again (14.6.2; the steps are idempotent) and the session passes.
case_api_down_long() {
    local s1 shims
    api POST /_emulator/v1/faults '{"lease_ttl_seconds": 10}'
    ef_session s1 ef-idem
    if wait_for 40 test -e "$LT_STATE/workspaces/$s1/data/started-1"; then
        relay_down
        sleep 25
        relay_up
        passes api_down_long "$s1" 120
        answered_once api_down_long "$s1"
        check api_down_long.lease_given_up log_has "$s1" "session ended: end=exit exit=3 .*work_item=skipped_lease_lost"
        shims=$(grep -c "\"session_id\":\"$s1\".*shim started (pid" "$LT_LOG")
        check api_down_long.reclaimed test "$shims" -ge 2
    else
        t_fail api_down_long "the first call never started"; session_log "$s1" 6
    fi
    api POST /_emulator/v1/faults '{}'
    no_leak api_down_long
}

# ---- kill -9 of the agent's bash during a long command ---------------------------------------

# The host pid of a container process whose command line is exactly CMD (NUL-separated argv).
container_pid_of() {
    local sid=$1 want=$2 p
    for p in $(runc --root "$LT_STATE/runc" ps --format json "$sid" 2>/dev/null | jq -r '.[]?'); do
        [ "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" = "$want " ] && { echo "$p"; return 0; }
    done
    return 1
}

case_bash_kill9() {
    local s1 sleeper shell t
    ef_session s1 ef-bash-kill
    if ! wait_for 40 container_pid_of "$s1" "sleep 60" >/dev/null; then
        t_fail bash_kill9 "the long command never started"; session_log "$s1" 6; return
    fi
    sleeper=$(container_pid_of "$s1" "sleep 60")
    shell=$(awk '{print $4}' "/proc/$sleeper/stat")
    check bash_kill9.target_is_bash test "$(readlink "/proc/$shell/exe" | sed 's,.*/,,')" = bash
    t=$SECONDS
    kill -9 "$shell"
    passes bash_kill9 "$s1" 60 # the call: "bash session terminated"; the next: a fresh shell
    check bash_kill9.answered_at_once test $((SECONDS - t)) -lt 30
    answered_once bash_kill9 "$s1"
    check bash_kill9.one_shim test "$(grep -c "\"session_id\":\"$s1\".*shim started (pid" "$LT_LOG")" = 1
    wait_ended "$s1" 20
    check bash_kill9.runner_exit_0 log_has "$s1" "session ended: end=exit exit=0 "
    no_leak bash_kill9
}

# ---- main -------------------------------------------------------------------------------------

ef_setup
T0=$SECONDS
CASES="disk_full disk_full_running runc_missing snapshot api_down api_down_running api_down_start bash_kill9"
[ -n "${RUNCELL_LONG:-}" ] && CASES+=" api_down_long api_down_start_short"
for c in ${EF_CASES:-$CASES}; do
    t=$SECONDS
    "case_$c"
    echo "# $c: $((SECONDS - t)) s"
done
check all.nothing_claimed test -z "$(claimed_items)"
bad_items=
for sid in "${EF_SESSIONS[@]}"; do
    [ -n "$sid" ] || continue
    states=$(session_work_states "$sid")
    echo "$states" | tr ' ' '\n' | grep -qv '^stopped:' && bad_items+=" $sid($states)"
done
check all.items_stopped test -z "$bad_items"
check no_token_in_logs bash -c "! grep -rqs --exclude=work 'sk-ant-' '$LT_LOG' '$LT_STATE/sessions' '$F_DIR/fcgi.log'"
echo "# total $((SECONDS - T0)) s"
relay_down
t_done
