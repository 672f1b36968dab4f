# tests/integration/launcher_lib.sh - helpers for the launcher_*.sh integration tests (issue 7):
# the whole chain on one host, as root. The emulator delivers signed webhooks to a real,
# unprivileged nginx, which passes them to runcell-fcgi (as nobody), which claims each item and
# hands it to the real runcell-launcher (root), whose shim starts a real runc container from the
# minimal snapshot; the runner inside talks only to the shim's API channel. Everything lives
# under one private state dir and run dir, and the cleanup checks nothing is left behind.
#
# lt_setup starts that chain with scripts/stack.sh (the same script as `make demo` and
# scripts/test-e2e.sh), its state dir this test's temp dir $LT, and lt_cleanup stops
# it with `scripts/stack.sh down`; the daemons' pids (LAUNCHER_REAL_PID, FCGI_PID, NGINX_PID), the
# paths (LT_STATE, LT_RUN, LT_LOG, L_SOCK, F_SOCK, $F_DIR/fcgi.log, $EM_DIR/log) and B, API_KEY,
# WH_KEY, ENV and cred.ek then point at that stack. lt_launcher_start/_stop and fcgi_start restart
# the stack's daemons (`scripts/stack.sh start|stop`). Tests that wire the chain piece by piece
# (em_start, fcgi_env, lt_launcher_start, fcgi_start, nginx_start, without lt_setup) get the
# daemons as this shell's children, as before. Several such tests can run at once: shim_pids and
# the cleanup only ever touch processes holding files under this test's $LT.
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
    if [ -n "${LT_STACK_UP:-}" ]; then # after lt_setup: the stack's runcell-fcgi
        lt_stack start fcgi >>"$LT/stack.log" 2>&1 || {
            t_fail fcgi_start "runcell-fcgi did not start: $(tail -n 5 "$LT/stack.log")"
            exit 1
        }
        FCGI_PID=$(lt_stack pid fcgi)
        return 0
    fi
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
LT_STACK=$LT # lt_setup's scripts/stack.sh state dir (RUNCELL_STACK_SHARED_DIR: the test's own)
LT_STACK_SH=$(pwd)/scripts/stack.sh
LT_STACK_UP=

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

# lt_launcher_start [VAR=VALUE...]: the real launcher, as root, on $L_SOCK (VAR=VALUE and
# LT_SNAPSHOT apply to this start only). After lt_setup: the stack's launcher, restarted with
# the settings lt_setup gave it (LT_LAUNCHER_ENV included) plus these.
lt_launcher_start() {
    if [ -n "$LT_STACK_UP" ]; then
        lt_stack_launcher_start "$@"
        return
    fi
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
    if [ -n "$LT_STACK_UP" ]; then
        lt_stack stop launcher >>"$LT/stack.log" 2>&1
        LAUNCHER_REAL_PID=
        return 0
    fi
    [ -n "$LAUNCHER_REAL_PID" ] && kill "$LAUNCHER_REAL_PID" 2>/dev/null &&
        wait "$LAUNCHER_REAL_PID" 2>/dev/null
    LAUNCHER_REAL_PID=
}

# The whole chain: emulator (delivering webhooks to nginx), launcher, fcgi, nginx. Sets ENV.
# scripts/stack.sh up, its state dir $LT_STACK (= $LT): the emulator with tests/scenarios and
# --webhook-backoff-ms 300,600 plus the arguments; the launcher with the snapshot LT_SNAPSHOT (or
# the minimal one of rl_write_manifest's tools, cached in $BUILD/snapshots), RUNCELL_MAX_IDLE_MS =
# LT_MAX_IDLE_MS (2000) and LT_LAUNCHER_ENV (NAME=VALUE words, no spaces in a value; "NAME="
# removes a setting); nginx without limit_req (lt_nginx_conf_template).
lt_setup() {
    lt_require
    local port snap
    port=$(free_port)
    rl_write_manifest "$LT/lt-tools.json"
    lt_nginx_conf_template "$LT/nginx.conf.in"
    snap=${LT_SNAPSHOT:-}
    case "$snap" in "" | /* | sha256:*) ;; *) snap=$(pwd)/$snap ;; esac
    # The launcher's own default capacity (16) unless LT_LAUNCHER_ENV sets one: "NAME=" drops
    # the stack's default.
    LT_STACK_UP=starting
    if ! RUNCELL_STACK_PORT=$port RUNCELL_STACK_SCENARIOS=tests/scenarios \
        RUNCELL_STACK_EMULATOR_ARGS="--webhook-backoff-ms 300,600 $*" \
        RUNCELL_STACK_TOOLS=$LT/lt-tools.json RUNCELL_STACK_SNAPSHOT=$snap \
        RUNCELL_STACK_NGINX_CONF=$LT/nginx.conf.in \
        RUNCELL_STACK_LAUNCHER_ENV="RUNCELL_CAPACITY= RUNCELL_MAX_IDLE_MS=${LT_MAX_IDLE_MS:-2000} ${LT_LAUNCHER_ENV[*]}" \
        lt_stack up >/dev/null 2>>"$LT/stack.log"; then
        t_fail lt_setup "scripts/stack.sh up failed: $(tail -n 12 "$LT/stack.log")"
        exit 1
    fi
    LT_STACK_UP=1
    lt_stack_adopt "$port"
}

# lt_stack ARGS...: scripts/stack.sh on this test's stack (its dir, binaries and nginx only; any
# RUNCELL_STACK_* of the caller's environment not passed on).
lt_stack() {
    env -u RUNCELL_STACK_KEEP -u RUNCELL_STACK_DEBUG -u RUNCELL_STACK_FCGI_ENV \
        -u RUNCELL_STACK_CAPACITY RUNCELL_STACK_SHARED_DIR=1 RUNCELL_STACK_DIR="$LT_STACK" \
        BUILD="$BUILD" NGINX="$NGINX" \
        "$LT_STACK_SH" "$@"
}

# lt_stack_adopt PORT: the variables the tests use, pointed at the stack that is up.
lt_stack_adopt() {
    local key
    LT_STATE=$LT_STACK/state LT_RUN=$LT_STACK/run LT_LOG=$LT_STACK/launcher.log
    L_SOCK=$LT_STACK/run/launcher.sock F_SOCK=$LT_STACK/fcgi/fcgi.sock
    NGX=http://127.0.0.1:$1
    B=$(lt_stack_env ANTHROPIC_BASE_URL)
    API_KEY=$(lt_stack_env ANTHROPIC_API_KEY)
    WH_KEY=$(lt_stack_env ANTHROPIC_WEBHOOK_SIGNING_KEY)
    ENV=$(lt_stack_env ANTHROPIC_ENVIRONMENT_ID)
    key=$(lt_stack_env ANTHROPIC_ENVIRONMENT_KEY)
    cred_file api "x-api-key: $API_KEY"
    cred_file apibearer "Authorization: Bearer $API_KEY"
    bearer ek "$key"
    printf '' >"$EM_DIR/cred.none"
    LT_TAR=$(sed -n 's/^RUNCELL_SNAPSHOT=//p' "$LT_STACK/launcher.env")
    (umask 077 && cp "$LT_STACK/launcher.env" "$LT/launcher.env.base")
    # The logs where the tests look for them.
    ln -sfn "$LT_STACK/fcgi.log" "$F_DIR/fcgi.log"
    ln -sfn "$LT_STACK/nginx.log" "$F_DIR/nginx.log"
    ln -sfn "$LT_STACK/nginx" "$F_DIR/nginx"
    ln -sfn "$LT_STACK/emulator.log" "$EM_DIR/log"
    LAUNCHER_REAL_PID=$(lt_stack pid launcher)
    FCGI_PID=$(lt_stack pid fcgi)
    NGINX_PID=$(lt_stack pid nginx)
}
lt_stack_env() { sed -n "s/^export $1=//p" "$LT_STACK/env"; }

# lt_stack_launcher_start [VAR=VALUE...]: the stack's launcher again (after a kill or a stop),
# with lt_setup's settings plus VAR=VALUE and LT_SNAPSHOT, for this start only.
lt_stack_launcher_start() {
    local old snap=${LT_SNAPSHOT:-$LT_TAR}
    old=$(lt_stack pid launcher)
    [ -z "$old" ] || wait_for 10 lt_pid_gone "$old"
    case "$snap" in /* | sha256:*) ;; *) snap=$(pwd)/$snap ;; esac
    cp "$LT/launcher.env.base" "$LT_STACK/launcher.env"
    if ! RUNCELL_STACK_LAUNCHER_ENV="RUNCELL_SNAPSHOT=$snap RUNCELL_MAX_IDLE_MS=${LT_MAX_IDLE_MS:-2000} $*" \
        lt_stack start launcher >>"$LT/stack.log" 2>&1; then
        t_fail launcher_start "runcell-launcher did not start: $(tail -n 5 "$LT/stack.log")"
        exit 1
    fi
    LAUNCHER_REAL_PID=$(lt_stack pid launcher)
}
lt_pid_gone() { ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

# lt_stack_down: `scripts/stack.sh down` (the dir is $LT: lt_cleanup removes it unless LT_KEEP);
# the logs the tests' other helpers read are copied out of it first.
lt_stack_down() {
    local l
    [ -n "$LT_STACK_UP" ] || return 0
    lt_stack down >>"$LT/stack.log" 2>&1
    LT_STACK_UP='' LAUNCHER_REAL_PID='' FCGI_PID='' NGINX_PID=''
    for l in "$EM_DIR/log" "$F_DIR/fcgi.log" "$F_DIR/nginx.log"; do
        [ -L "$l" ] && cp --remove-destination "$(readlink "$l")" "$l" 2>/dev/null
    done
    rm -f "$F_DIR/nginx"
    return 0
}

# lt_nginx_conf_template FILE: the nginx.conf lt_setup's stack runs (RUNCELL_STACK_NGINX_CONF):
# /webhook and /healthz to runcell-fcgi, no limit_req (a flood reaches runcell-fcgi), the
# placeholders filled in by scripts/stack.sh. bench/chain_lib.sh replaces it.
lt_nginx_conf_template() {
    cat >"$1" <<'CONF'
daemon off;
worker_processes 1;
pid @PREFIX@/nginx.pid;
error_log stderr info;
events { worker_connections 128; }
http {
    access_log off;
    client_body_temp_path @PREFIX@/tmp/body;
    fastcgi_temp_path @PREFIX@/tmp/fastcgi;
    proxy_temp_path @PREFIX@/tmp/proxy;
    uwsgi_temp_path @PREFIX@/tmp/uwsgi;
    scgi_temp_path @PREFIX@/tmp/scgi;
    server {
        listen 127.0.0.1:@PORT@;
        location = /webhook {
            include @PREFIX@/fastcgi_params;
            fastcgi_pass unix:@FCGI_SOCKET@;
            fastcgi_read_timeout 30s;
        }
        location = /healthz {
            include @PREFIX@/fastcgi_params;
            fastcgi_pass unix:@FCGI_SOCKET@;
            fastcgi_read_timeout 5s;
        }
        location / { return 404; }
    }
}
CONF
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
    what+=$(awk -v p="$LT/" -v n="$LT_RUN/netns" 'index($5, p) == 1 && $5 != n {print "mount:" $5}' /proc/self/mountinfo | tr '\n' ' ')
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

# Live shims of this test (processes running the launcher binary with --shim that hold a file
# under $LT open: the session lock, the launcher log they inherit). Other tests' shims, running
# at the same time from the same binary, are not listed.
shim_pids() {
    local p exe
    exe=$(readlink -f "$LAUNCHER")
    for p in $(pgrep -f -- "--shim --snapshot" 2>/dev/null); do
        case "$(readlink "/proc/$p/exe" 2>/dev/null)" in
        "$exe" | "$exe (deleted)") lt_holds_file "$p" && echo "$p" ;; # (deleted): rebuilt since
        esac
    done
}
# lt_holds_file PID: the process has a file under $LT open.
lt_holds_file() {
    find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -lname "$LT/*" 2>/dev/null | grep -q .
}

lt_cleanup() {
    local p s m
    lt_stack_down
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
