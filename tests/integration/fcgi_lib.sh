# tests/integration/fcgi_lib.sh - helpers shared by the fcgi_*.sh integration tests.
#
# The test bed: a private runcell-emulator (through emulator_lib.sh), the fake launcher
# (tests/tools/fake_launcher.c, a test double of the launcher's hand-off endpoint), runcell-fcgi,
# and a real nginx started unprivileged with its own prefix in a temporary directory, listening
# on a free loopback port and passing /webhook, /healthz, /metrics (and every other path, so
# runcell-fcgi's own 404 is what answers) over FastCGI to runcell-fcgi's unix socket.
# nginx, runcell-fcgi and the fake launcher run as nobody (setpriv), so the tests need root and
# exercise the unprivileged path the design asks for.
#
# Keys stay off every command line: runcell-fcgi gets them through its environment (exported in
# a subshell, `export` being a builtin), runcell-webhook sign through ANTHROPIC_WEBHOOK_SIGNING_KEY,
# and the log and /proc checks read the key from a process substitution (grep -f).
#
# Every process started here is stopped by PID in fcgi_cleanup (EXIT trap), never by name.
# FCGI_LOG_DIR=DIR keeps the runcell-fcgi, nginx and launcher logs of each run there.
#
# Sourced, not run: tests/run.sh skips *_lib.sh; running this file directly does nothing.
[ "${BASH_SOURCE[0]}" = "$0" ] && exit 0

# emulator_lib.sh: cd to the repo root, tests/lib.sh, BUILD, EMU, EM_DIR, em_start, api, admin,
# mk_env / mk_key / mk_agent / mk_session, jb, check.
. "$(dirname "${BASH_SOURCE[0]}")/emulator_lib.sh"

FCGI=${FCGI:-$BUILD/runcell-fcgi}
WEBHOOK_TOOL=${WEBHOOK_TOOL:-$BUILD/runcell-webhook}
FAKE_LAUNCHER=${FAKE_LAUNCHER:-$BUILD/tests/tools/fake_launcher}
NGINX=${NGINX:-$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)}
NOBODY=65534
AS_NOBODY=(setpriv "--reuid=$NOBODY" "--regid=$NOBODY" --clear-groups)

F_DIR=$(mktemp -d /tmp/rc-fcgi-test.XXXXXX)
F_SOCK=$F_DIR/fcgi.sock
L_SOCK=$F_DIR/launcher.sock
L_LOG=$F_DIR/launches.jsonl
L_MODE=$F_DIR/launcher.mode
F_LOG=$F_DIR/fcgi.log
N_LOG=$F_DIR/nginx.log
ANS=$F_DIR/answer
FCGI_PID= NGINX_PID= LAUNCHER_PID=
F_BG_PIDS=()
ENV_KEY=
NGX=

# ---- processes -------------------------------------------------------------------------------

# alive PID: the process exists and is not a zombie.
alive() {
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st%% *}" != Z ]
}

# stop_pid PID [SECONDS]: SIGTERM, SIGKILL after SECONDS (default 15); returns the exit status.
stop_pid() {
    local pid=$1 n=$((${2:-15} * 20)) rc
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    while [ $n -gt 0 ] && alive "$pid"; do
        sleep 0.05
        n=$((n - 1))
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rc=$?
    return $rc
}

fcgi_cleanup() {
    local p
    for p in "${F_BG_PIDS[@]}"; do stop_pid "$p" 2; done
    stop_pid "$NGINX_PID" 5
    stop_pid "$FCGI_PID" 20
    stop_pid "$LAUNCHER_PID" 5
    if [ -n "${FCGI_LOG_DIR:-}" ]; then
        for p in fcgi.log nginx.log launcher.out launches.jsonl; do
            [ -f "$F_DIR/$p" ] && cp "$F_DIR/$p" "$FCGI_LOG_DIR/$T_SUITE.$p"
        done
    fi
    rm -rf "$F_DIR"
    em_cleanup
}
trap fcgi_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

skip_all() {
    t_skip all "$1"
    exit 0
}
fatal() {
    t_fail "$1" "$2"
    exit 1
}

# fcgi_require: skip (with the reason) when the test bed cannot be built here.
fcgi_require() {
    local tool b
    [ "$(id -u)" = 0 ] || skip_all "needs root (nginx, runcell-fcgi and the fake launcher run as nobody)"
    for tool in curl jq python3 setpriv; do
        command -v "$tool" >/dev/null 2>&1 || skip_all "$tool not installed"
    done
    [ -x "$NGINX" ] || skip_all "nginx not installed"
    [ -x "$EMU" ] || skip_all "$EMU not built (the emulator is needed)"
    for b in "$FCGI" "$WEBHOOK_TOOL" "$FAKE_LAUNCHER"; do
        [ -x "$b" ] || fatal built "$b not built"
    done
    "${AS_NOBODY[@]}" test -x "$FCGI" -a -x "$FAKE_LAUNCHER" -a -r /etc/nginx/fastcgi_params ||
        skip_all "nobody cannot reach $FCGI (a parent directory is not searchable)"
    chown $NOBODY:$NOBODY "$F_DIR"
    chmod 0700 "$F_DIR"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for SECONDS CMD...: run CMD every 50 ms until it succeeds.
wait_for() {
    local n=$(($1 * 20))
    shift
    while [ $n -gt 0 ]; do
        "$@" && return 0
        sleep 0.05
        n=$((n - 1))
    done
    return 1
}

# ---- the fake launcher -----------------------------------------------------------------------

# launcher_start [MODE] [ARGS...]: the fake launcher on $L_SOCK. MODE (accepted, at_capacity,
# refused, drop) goes to $L_MODE, which it re-reads before every request (launcher_mode).
# Launches are appended to $L_LOG, one JSON line each, across restarts.
launcher_start() {
    printf '%s\n' "${1:-accepted}" >"$L_MODE"
    [ $# -gt 0 ] && shift
    touch "$L_LOG"
    chown $NOBODY:$NOBODY "$L_LOG" "$L_MODE"
    "${AS_NOBODY[@]}" "$FAKE_LAUNCHER" --socket "$L_SOCK" --answer-file "$L_MODE" --log "$L_LOG" \
        "$@" >>"$F_DIR/launcher.out" 2>&1 &
    LAUNCHER_PID=$!
    wait_for 5 test -S "$L_SOCK" ||
        fatal launcher_start "fake launcher did not start: $(tail -n 3 "$F_DIR/launcher.out")"
}
launcher_mode() { printf '%s\n' "$1" >"$L_MODE"; }
launcher_stop() {
    stop_pid "$LAUNCHER_PID" 5
    LAUNCHER_PID=
}
# launches: how many launch requests the fake launcher saw (all runs).
launches() { jq -s length "$L_LOG"; }
# launch_of SID: "answer token_ok" of every launch of that session, space-separated.
launch_of() {
    jq -r -s --arg s "$1" '[.[] | select(.session_id == $s) | "\(.answer) \(.token_ok)"] | join(",")' "$L_LOG"
}

# ---- runcell-fcgi --------------------------------------------------------------------------

# fcgi_env_export [NAME=VALUE...]: export runcell-fcgi's environment (call in a subshell only).
fcgi_env_export() {
    local kv
    export ANTHROPIC_BASE_URL="$B" ANTHROPIC_ENVIRONMENT_ID="$ENV" \
        ANTHROPIC_ENVIRONMENT_KEY="$ENV_KEY" ANTHROPIC_WEBHOOK_SIGNING_KEY="$WH_KEY" \
        RUNCELL_LAUNCHER_SOCKET="$L_SOCK" RUNCELL_FCGI_THREADS=4 RUNCELL_LOG_LEVEL=debug \
        RUNCELL_REDRAIN_INTERVAL_MS=0 # claims only on deliveries: each test counts them
    for kv in "$@"; do export "${kv?}"; done
}

# fcgi_start [NAME=VALUE...]: runcell-fcgi as nobody on its own socket $F_SOCK.
fcgi_start() {
    (
        fcgi_env_export "$@"
        exec "${AS_NOBODY[@]}" "$FCGI" --socket "$F_SOCK"
    ) >>"$F_LOG" 2>&1 &
    FCGI_PID=$!
    wait_for 5 test -S "$F_SOCK" || fatal fcgi_start "runcell-fcgi did not start: $(tail -n 5 "$F_LOG")"
}

# fcgi_stop NAME: SIGTERM; checks the exit status is 0 and the log holds no sanitizer report.
fcgi_stop() {
    local rc
    stop_pid "$FCGI_PID" 20
    rc=$?
    FCGI_PID=
    check "$1_exit_status_0" test "$rc" = 0
    fcgi_sanitizer_check "$1"
}

# fcgi_sanitizer_check NAME: runcell-fcgi's log holds no ASan / LSan / UBSan report.
fcgi_sanitizer_check() {
    if grep -q 'Sanitizer\|runtime error:' "$F_LOG"; then
        t_fail "$1_no_sanitizer_report" "$(grep -m 3 'Sanitizer\|runtime error:' "$F_LOG")"
    else
        t_ok "$1_no_sanitizer_report"
    fi
}

# no_key_in NAME FILE: neither key (nor the whsec_ key's base64 part) occurs in FILE.
no_key_in() {
    if grep -qaF -f <(printf '%s\n%s\n' "$ENV_KEY" "${WH_KEY#whsec_}") "$2" 2>/dev/null; then
        t_fail "$1" "a key occurs in $2"
    else
        t_ok "$1"
    fi
}

# fcgi_hygiene PREFIX: while runcell-fcgi runs: no key in its initial environment block
# (values wiped in place), in its log, nginx's log or the launcher's; no capability, uid nobody,
# no_new_privs.
fcgi_hygiene() {
    local p=$1
    if [ -r "/proc/$FCGI_PID/environ" ]; then
        no_key_in "${p}_no_key_in_proc_environ" <(tr '\0' '\n' <"/proc/$FCGI_PID/environ")
    else
        t_fail "${p}_no_key_in_proc_environ" "/proc/$FCGI_PID/environ not readable"
    fi
    no_key_in "${p}_no_key_in_fcgi_log" "$F_LOG"
    no_key_in "${p}_no_key_in_nginx_log" "$N_LOG"
    no_key_in "${p}_no_key_in_launcher_log" "$L_LOG"
    check "${p}_runs_as_nobody" test "$(awk '/^Uid:/ {print $2 $3}' "/proc/$FCGI_PID/status")" = "$NOBODY$NOBODY"
    check "${p}_no_capabilities" test "$(awk '/^CapEff:|^CapPrm:/ {print $2}' "/proc/$FCGI_PID/status" | sort -u)" = 0000000000000000
    check "${p}_no_new_privs" test "$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$FCGI_PID/status")" = 1
}

# ---- nginx ---------------------------------------------------------------------------------

nginx_conf() {
    local port=$1 p=$2
    cat <<EOF
daemon off;
worker_processes 1;
pid $p/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $p/tmp/body;
    fastcgi_temp_path $p/tmp/fastcgi;
    proxy_temp_path $p/tmp/proxy;
    uwsgi_temp_path $p/tmp/uwsgi;
    scgi_temp_path $p/tmp/scgi;
    client_max_body_size 2m;
    server {
        listen 127.0.0.1:$port;
        location = /webhook {
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:$F_SOCK;
            fastcgi_read_timeout 30s;
        }
        location = /healthz {
            allow 127.0.0.1; deny all;
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:$F_SOCK;
        }
        location = /metrics {
            allow 127.0.0.1; deny all;
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:$F_SOCK;
        }
        location = /nginx-ready { return 204; }
        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:$F_SOCK;
        }
    }
}
EOF
}

# nginx_try PORT: start nginx on 127.0.0.1:PORT; fails when it does not come up.
nginx_try() {
    local port=$1 p=$F_DIR/nginx
    mkdir -p "$p/tmp"
    nginx_conf "$port" "$p" >"$p/nginx.conf"
    chown -R $NOBODY:$NOBODY "$p"
    "${AS_NOBODY[@]}" "$NGINX" -p "$p" -c "$p/nginx.conf" -e stderr >>"$N_LOG" 2>&1 &
    NGINX_PID=$!
    NGX="http://127.0.0.1:$port"
    local n=100
    while [ $n -gt 0 ]; do
        [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$NGX/nginx-ready")" = 204 ] && return 0
        alive "$NGINX_PID" || break
        sleep 0.05
        n=$((n - 1))
    done
    stop_pid "$NGINX_PID" 2
    NGINX_PID=
    return 1
}

# nginx_start [PORT]: nginx on PORT, else on a free port (three tries, ports can be taken
# between the probe and nginx's bind). Sets NGX.
nginx_start() {
    local i
    if [ -n "${1:-}" ]; then
        nginx_try "$1" || fatal nginx_start "nginx did not start: $(tail -n 3 "$N_LOG")"
        return
    fi
    for i in 1 2 3; do
        nginx_try "$(free_port)" && return
    done
    fatal nginx_start "nginx did not start: $(tail -n 3 "$N_LOG")"
}

# ---- requests ------------------------------------------------------------------------------

# envelope ID TYPE SESSION: a webhook body (18.5).
envelope() {
    printf '{"type":"event","id":"%s","created_at":"2026-05-01T12:00:00Z","data":{"type":"%s","id":"%s","organization_id":"org_test","workspace_id":"wrkspc_test"}}' \
        "$1" "$2" "$3"
}

# sign ID TS < BODY: the webhook-signature value (the key reaches the tool through its env).
sign() {
    ANTHROPIC_WEBHOOK_SIGNING_KEY=$WH_KEY "$WEBHOOK_TOOL" sign --id "$1" --timestamp "$2"
}

# http CURL-ARGS...: one request with real curl; WST = status, body in $ANS, headers in $ANS.hdr.
http() {
    WST=$(curl -sS -m 30 -o "$ANS" -D "$ANS.hdr" -w '%{http_code}' "$@" 2>"$F_DIR/curl.err") || WST=000
}

# deliver FILE ID [TS] [CURL-ARGS...]: a correctly signed POST of FILE through nginx.
deliver() {
    local file=$1 id=$2 ts=${3:-} sig
    shift 2
    [ $# -gt 0 ] && shift
    [ -n "$ts" ] || ts=$(date +%s)
    sig=$(sign "$id" "$ts" <"$file")
    http -H 'content-type: application/json' -H "webhook-id: $id" -H "webhook-timestamp: $ts" \
        -H "webhook-signature: $sig" --data-binary "@$file" "$@" "$NGX/webhook"
}

answer() { jq -r "$1" "$ANS" 2>/dev/null; }
# ahdr NAME: a header of the last answer.
ahdr() { grep -i "^$1:" "$ANS.hdr" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }

# expect NAME STATUS [JQ-EXPR EXPECTED]: the last answer had STATUS (and EXPR gave EXPECTED).
expect() {
    local name=$1 want=$2 expr=${3-} exp=${4-}
    if [ "$WST" = "$want" ] && { [ -z "$expr" ] || [ "$(answer "$expr")" = "$exp" ]; }; then
        t_ok "$name"
    else
        t_fail "$name" "status $WST (want $want)${expr:+, $expr = '$(answer "$expr")' (want '$exp')}: $(head -c 300 "$ANS")"
    fi
}

# ---- the emulator's view -------------------------------------------------------------------

# queue_stats: "depth pending" of the environment's queue.
queue_stats() {
    api GET "/v1/environments/$ENV/work/stats"
    jb '"\(.depth) \(.pending)"'
}
# work_states: "state:count ..." of every work item of the environment, sorted by state.
work_states() {
    api GET "/v1/environments/$ENV/work?limit=100"
    jb '[.data[].state] | group_by(.) | map("\(.[0]):\(length)") | join(" ")'
}
# item_state SID_OR_WID: the state of that work item (or of the newest item of that session).
item_state() {
    api GET "/v1/environments/$ENV/work?limit=100"
    jq -r --arg i "$1" '[.data[] | select(.id == $i or .data.id == $i)] | sort_by(.created_at) | last | .state' "$EM_DIR/body"
}
# req_mark: the emulator's last request sequence number (for polls_since).
req_mark() {
    admin GET '/requests?since=1000000000000&limit=1'
    jb .last_seq
}
# polls_since MARK: poll requests the emulator saw after MARK.
polls_since() {
    admin GET "/requests?since=$1"
    jb '[.data[] | select(.path | endswith("/work/poll"))] | length'
}
faults() { admin POST /faults "$1"; }

# metric NAME-WITH-LABELS: its value in the last /metrics answer in $ANS.
metric() { awk -v m="$1" '$1 == m {print $2}' "$ANS"; }
metrics() { http "$NGX/metrics"; }

# ---- set-up ----------------------------------------------------------------------------------

# fcgi_world [EMULATOR-ARGS...]: emulator, environment, its key, an agent. Sets ENV, ENV_KEY, AGENT.
fcgi_world() {
    em_start "$@"
    mk_env ENV fcgi
    mk_key ek "$ENV"
    mk_agent AGENT
    ENV_KEY=$(sed -n 's/^Authorization: Bearer //p' "$EM_DIR/cred.ek")
    [ -n "$ENV" ] && [ -n "$ENV_KEY" ] && [ -n "$AGENT" ] && [ -n "$WH_KEY" ] ||
        fatal setup "could not create the environment, its key and an agent"
}

# fcgi_setup: the whole bed: fcgi_world, the fake launcher (accepted), runcell-fcgi, nginx.
fcgi_setup() {
    fcgi_require
    fcgi_world
    launcher_start accepted
    fcgi_start
    nginx_start
}
