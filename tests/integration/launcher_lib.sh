# tests/integration/launcher_lib.sh - helpers for the launcher_*.sh integration tests (issue 7):
# the whole chain on one host, as root. The emulator delivers signed webhooks to a real,
# unprivileged nginx, which passes them to runcell-fcgi (as nobody), which claims each item and
# hands it to the real runcell-launcher (root), whose shim starts a real runc container from the
# minimal snapshot; the runner inside talks only to the shim's API channel. Everything lives
# under one private state dir and run dir, and the cleanup checks nothing is left behind.
#
# Sourced, not run: tests/run.sh also executes every tests/integration/*.sh, so running this
# file directly only reports itself as skipped.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "ok - launcher_lib.sourced_helper # SKIP helper sourced by launcher_*.sh"
    exit 0
fi

. "$(dirname "${BASH_SOURCE[0]}")/emulator_lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/runner_lib.sh" # rl_write_manifest, rl_scenario_timeout
trap 'lt_cleanup' EXIT

# ---- runcell-fcgi (as nobody) behind a real nginx: self-contained, so the fcgi tests' helpers
# can change freely ----
FCGI=${FCGI:-$BUILD/runcell-fcgi}
WEBHOOK_TOOL=$BUILD/runcell-webhook
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
F_DIR=$(mktemp -d /tmp/rc-lt-fcgi.XXXXXX)
chmod 0755 "$F_DIR"
FCGI_PID= NGINX_PID=
AS_USER=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
    AS_USER=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    chown 65534:65534 "$F_DIR"
fi
F_SOCK=$F_DIR/fcgi.sock
L_SOCK=$F_DIR/launcher.sock

fcgi_require() {
    local tool b
    for tool in curl jq python3; do
        command -v "$tool" >/dev/null 2>&1 || { t_skip all "$tool not installed"; exit 0; }
    done
    [ -x "$NGINX" ] || { t_skip all "nginx not installed"; exit 0; }
    for b in "$EMU" "$FCGI" "$WEBHOOK_TOOL"; do
        [ -x "$b" ] || { t_skip all "$b not built"; exit 0; }
    done
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for() { # wait_for SECONDS CMD...
    local end=$((SECONDS + $1))
    shift
    while [ $SECONDS -le $end ]; do
        "$@" && return 0
        sleep 0.05
    done
    return 1
}
# The environment key reaches runcell-fcgi through a 0600 file sourced by a wrapper (never argv).
fcgi_env() {
    local key
    key=$(sed -n 's/^Authorization: Bearer //p' "$EM_DIR/cred.ek")
    (
        umask 077
        {
            printf 'export ANTHROPIC_BASE_URL=%q\n' "$B"
            printf 'export ANTHROPIC_ENVIRONMENT_ID=%q\n' "$1"
            printf 'export ANTHROPIC_ENVIRONMENT_KEY=%q\n' "$key"
            printf 'export ANTHROPIC_WEBHOOK_SIGNING_KEY=%q\n' "$WH_KEY"
            printf 'export RUNCELL_LAUNCHER_SOCKET=%q\n' "$L_SOCK"
            printf 'export RUNCELL_FCGI_THREADS=4\n'
        } >"$F_DIR/fcgi.env"
    )
    [ ${#AS_USER[@]} -gt 0 ] && chown 65534:65534 "$F_DIR/fcgi.env"
    printf '#!/bin/sh\n. %s\nexec "$@"\n' "$F_DIR/fcgi.env" >"$F_DIR/with-env"
    chmod 0755 "$F_DIR/with-env"
}
fcgi_start() {
    "${AS_USER[@]}" "$F_DIR/with-env" "$FCGI" --socket "$F_SOCK" >>"$F_DIR/fcgi.log" 2>&1 &
    FCGI_PID=$!
    wait_for 5 test -S "$F_SOCK" || {
        t_fail fcgi_start "runcell-fcgi did not start: $(tail -n 5 "$F_DIR/fcgi.log")"
        exit 1
    }
}
nginx_start() {
    local port=$1 p=$F_DIR/nginx
    mkdir -p "$p/tmp" "$p/logs"
    [ ${#AS_USER[@]} -gt 0 ] && chown -R 65534:65534 "$p"
    cat >"$p/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $p/nginx.pid;
error_log stderr info;
events { worker_connections 128; }
http {
    access_log off;
    client_body_temp_path $p/tmp/body;
    fastcgi_temp_path $p/tmp/fastcgi;
    proxy_temp_path $p/tmp/proxy;
    uwsgi_temp_path $p/tmp/uwsgi;
    scgi_temp_path $p/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location = /webhook {
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:$F_SOCK;
            fastcgi_read_timeout 30s;
        }
        location / { return 404; }
    }
}
EOF
    "${AS_USER[@]}" "$NGINX" -p "$p" -c "$p/nginx.conf" -e stderr >"$F_DIR/nginx.log" 2>&1 &
    NGINX_PID=$!
    NGX="http://127.0.0.1:$port"
    wait_for 5 curl -s -o /dev/null "$NGX/nothing" || {
        t_fail nginx_start "nginx did not start: $(tail -n 5 "$F_DIR/nginx.log")"
        exit 1
    }
}
# envelope ID TYPE SESSION; deliver BODY-FILE ID: a signed delivery through nginx (WST = status).
envelope() {
    printf '{"type":"event","id":"%s","created_at":"2026-05-01T12:00:00Z","data":{"type":"%s","id":"%s","organization_id":"org","workspace_id":"ws"}}' "$1" "$2" "$3"
}
deliver() {
    local file=$1 id=$2 ts sig
    ts=$(date +%s)
    sig=$(ANTHROPIC_WEBHOOK_SIGNING_KEY=$WH_KEY "$WEBHOOK_TOOL" sign --id "$id" --timestamp "$ts" <"$file")
    WST=$(curl -sS -m 30 -o "$F_DIR/answer" -w '%{http_code}' -H 'content-type: application/json' \
        -H "webhook-id: $id" -H "webhook-timestamp: $ts" -H "webhook-signature: $sig" \
        --data-binary "@$file" "$NGX/webhook" 2>"$F_DIR/curl.err") || WST=000
}
queue_stats() { # "depth pending"
    api GET "/v1/environments/$1/work/stats"
    jb '"\(.depth) \(.pending)"'
}
work_state() {
    api GET "/v1/environments/$1/work/$2"
    jb .state
}
fcgi_cleanup() {
    local p
    for p in "$NGINX_PID" "$FCGI_PID"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    [ -n "${LT_KEEP:-}" ] && cp "$F_DIR/fcgi.log" "$F_DIR/nginx.log" "$LT/" 2>/dev/null
    rm -rf "$F_DIR"
    em_cleanup
}

LAUNCHER=${LAUNCHER:-$BUILD/runcell-launcher}
RUNCELL_CLI=${RUNCELL_CLI:-$BUILD/runcell}
LT=$(mktemp -d /tmp/rc-launcher-test.XXXXXX)
chmod 0711 "$LT"
LT_STATE=$LT/state
LT_RUN=$LT/run
LT_LOG=$LT/launcher.log
LAUNCHER_REAL_PID=

# The launcher's environment (no API key: it holds none).
lt_env() {
    export RUNCELL_STATE_DIR=$LT_STATE RUNCELL_RUN_DIR=$LT_RUN RUNCELL_LAUNCHER_SOCKET=$L_SOCK \
        ANTHROPIC_BASE_URL=$B RUNCELL_TOOLS_MANIFEST=/etc/runcell/tools.json \
        RUNCELL_MAX_IDLE_MS=${LT_MAX_IDLE_MS:-2000} RUNCELL_STOP_GRACE_MS=3000 \
        RUNCELL_SESSION_LOCK_WAIT_MS=30000
    [ ${#AS_USER[@]} -gt 0 ] && export RUNCELL_FCGI_UID=65534
    return 0
}

lt_require() {
    local why=
    if [ "$(id -u)" != 0 ]; then why="needs root"
    elif ! command -v runc >/dev/null; then why="runc not installed"
    elif [ ! -x "$LAUNCHER" ]; then why="$LAUNCHER not built"
    elif [ ! -x "$RL_RUNNER" ]; then why="$RL_RUNNER not built"
    elif ! command -v busybox >/dev/null || ldd "$(command -v busybox)" >/dev/null 2>&1; then
        why="busybox-static not installed"
    fi
    if [ -n "$why" ]; then
        t_skip all "$why"
        exit 0
    fi
    fcgi_require
}

# lt_snapshot [NAME]: the minimal snapshot with the runner and the scenarios' tool manifest;
# sets LT_TAR.
lt_snapshot() {
    rl_write_manifest "$LT/tools.json"
    if ! BUILD=$BUILD scripts/build-snapshot.sh --base minimal --out "$LT/${1:-minimal}" \
        --tools "$LT/tools.json" >/dev/null 2>"$LT/snapshot.err"; then
        t_fail snapshot_build "$(tail -n 3 "$LT/snapshot.err")"
        exit 1
    fi
    LT_TAR=$LT/${1:-minimal}.tar
}

# lt_launcher_start [VAR=VALUE...]: the real launcher, as root, on $L_SOCK.
lt_launcher_start() {
    rm -f "$L_SOCK" # a killed launcher leaves its socket behind
    (
        lt_env
        export RUNCELL_SNAPSHOT=${LT_SNAPSHOT:-$LT_TAR}
        exec env "$@" "$LAUNCHER"
    ) >>"$LT_LOG" 2>&1 &
    LAUNCHER_REAL_PID=$!
    wait_for 60 test -S "$L_SOCK" || {
        t_fail launcher_start "runcell-launcher did not start: $(tail -n 5 "$LT_LOG")"
        exit 1
    }
}
lt_launcher_stop() {
    [ -n "$LAUNCHER_REAL_PID" ] && kill "$LAUNCHER_REAL_PID" 2>/dev/null &&
        wait "$LAUNCHER_REAL_PID" 2>/dev/null
    LAUNCHER_REAL_PID=
}

# The whole chain: emulator (delivering webhooks to nginx), launcher, fcgi, nginx. Sets ENV.
lt_setup() {
    lt_require
    lt_snapshot
    local port
    port=$(free_port)
    em_start --scenarios tests/scenarios --webhook-url "http://127.0.0.1:$port/webhook" \
        --webhook-backoff-ms 300,600 "$@"
    mk_env ENV launcher
    mk_key ek "$ENV"
    fcgi_env "$ENV"
    lt_launcher_start "${LT_LAUNCHER_ENV[@]}"
    fcgi_start
    nginx_start "$port"
}

# lt_session VAR NAME: an agent with the scenario's tools and a session playing it (which goes
# running at once: the emulator delivers the webhook).
lt_session() {
    local file=tests/scenarios/$2.json tools agent
    tools=$(jq -c '.agent.tools' "$file")
    api POST /v1/agents "$(jq -cn --arg n "lt-$2" --argjson t "$tools" \
        '{name: $n, model: "claude-sonnet-4-6", tools: $t}')"
    agent=$(jb .id)
    api POST /v1/sessions "$(jq -cn --arg a "$agent" --arg e "$ENV" --arg s "$2" \
        '{agent: $a, environment_id: $e, metadata: {scenario: $s}}')"
    printf -v "$1" '%s' "$(jb .id)"
}

verdict() {
    api GET "/_emulator/v1/sessions/$1/verdict"
    jb .state
}

# wait_verdict SID SECONDS: the final verdict (passed/failed) or "running" after SECONDS.
wait_verdict() {
    local end=$((SECONDS + $2)) v=running
    while [ $SECONDS -lt $end ]; do
        v=$(verdict "$1")
        [ "$v" = passed ] || [ "$v" = failed ] && break
        sleep 0.3
    done
    echo "$v"
}

# Work items of a session: "state:count ..." sorted.
session_work_states() {
    api GET "/v1/environments/$ENV/work?limit=100"
    jq -r --arg s "$1" '[.data[] | select(.data.id == $s) | .state] | group_by(.) |
        map("\(.[0]):\(length)") | join(" ")' "$EM_DIR/body"
}

# Leftovers on the host: containers in our runc root, mounts under $LT, netns files, bundles,
# session run dirs, work files. Prints what it finds (empty = clean).
lt_leftovers() {
    local what=
    if [ -d "$LT_STATE/runc" ]; then
        what+=$(runc --root "$LT_STATE/runc" list -q 2>/dev/null | sed 's/^/container:/' | tr '\n' ' ')
    fi
    what+=$(awk -v p="$LT/" 'index($5, p) == 1 && $5 != p "run/netns" {print "mount:" $5}' /proc/self/mountinfo | tr '\n' ' ')
    what+=$(find "$LT_RUN/netns" -mindepth 1 2>/dev/null | sed 's/^/netns:/' | tr '\n' ' ')
    what+=$(find "$LT_RUN/sessions" "$LT_STATE/bundles" -mindepth 1 -maxdepth 1 2>/dev/null | sed 's/^/dir:/' | tr '\n' ' ')
    what+=$(find "$LT_STATE/sessions" -name work 2>/dev/null | sed 's/^/work:/' | tr '\n' ' ')
    what+=$(lt_cgroups | sed 's/^/cgroup:/' | tr '\n' ' ')
    echo "$what"
}

# Cgroups left for this test's sessions (their ids are the kept dirs under $LT_STATE/sessions):
# /sys/fs/cgroup/*/runcell/<sid> (v1 controllers) and /sys/fs/cgroup/runcell/<sid> (v2).
lt_cgroups() {
    local d sid
    for d in "$LT_STATE"/sessions/sesn_*; do
        [ -d "$d" ] || continue
        sid=${d##*/}
        find /sys/fs/cgroup -maxdepth 4 -type d -name "$sid" 2>/dev/null
    done
}

# wait_item SECONDS WORK_ID STATE: until the work item is in STATE (re-read each time: note that
# `wait_for N test "$(work_state ...)" = x` would read the state once, before waiting).
wait_item() {
    local end=$((SECONDS + $1))
    until [ "$(work_state "$ENV" "$2")" = "$3" ]; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.2
    done
}
# wait_session_items SECONDS SID STATES: until session_work_states SID prints STATES.
wait_session_items() {
    local end=$((SECONDS + $1))
    until [ "$(session_work_states "$2")" = "$3" ]; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.2
    done
}

# Work items of $ENV that are claimed (neither queued nor stopped): "work_id:state ...".
claimed_items() {
    api GET "/v1/environments/$ENV/work?limit=100"
    jq -r '[.data[] | select(.state != "queued" and .state != "stopped") | "\(.id):\(.state)"] |
        join(" ")' "$EM_DIR/body"
}

# wait_clean SECONDS: until nothing is left (or the time is up); prints the leftovers.
wait_clean() {
    local end=$((SECONDS + $1)) left
    while :; do
        left=$(lt_leftovers)
        [ -z "${left// /}" ] && return 0
        [ $SECONDS -ge $end ] && break
        sleep 0.3
    done
    echo "$left"
    return 1
}

# Live shims (processes running the launcher binary with --shim).
shim_pids() {
    local p
    for p in $(pgrep -f -- "--shim --snapshot" 2>/dev/null); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$LAUNCHER")" ] && echo "$p"
    done
}

lt_cleanup() {
    local p s m
    # Shims we started (their exe is our launcher binary) and their containers.
    for p in $(shim_pids); do kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 50); do [ -z "$(shim_pids)" ] && break; sleep 0.2; done
    for p in $(shim_pids); do kill -9 "$p" 2>/dev/null; done
    lt_launcher_stop
    if [ -d "$LT_STATE/runc" ]; then
        for s in $(runc --root "$LT_STATE/runc" list -q 2>/dev/null); do
            runc --root "$LT_STATE/runc" delete --force "$s" 2>/dev/null
        done
    fi
    for m in $(awk -v p="$LT/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null
    done
    if [ -n "${LT_KEEP:-}" ]; then
        echo "# launcher test files kept in $LT" >&2
        cp "$F_DIR/fcgi.log" "$LT/" 2>/dev/null
        cp "$EM_DIR/log" "$LT/emulator.log" 2>/dev/null
    elif [ -z "$(awk -v p="$LT/" 'index($5, p) == 1' /proc/self/mountinfo)" ]; then
        rm -rf "$LT"
    fi
    fcgi_cleanup
    rl_cleanup
}
