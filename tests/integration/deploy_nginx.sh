#!/usr/bin/env bash
# tests/integration/deploy_nginx.sh - the nginx side of the deployment (issue 8).
#
# Static: `nginx -t` accepts nginx/runcell.conf, unmodified, included in a minimal server (with the
# documented limit_req_zone line in http {}; without it nginx refuses the snippet), and the
# rendered nginx/test.conf; the render script refuses bad values.
#
# Live (as root; everything else runs as nobody): the emulator (delivering its own signed
# webhooks to nginx), the launcher test double, runcell-fcgi, and a real nginx started from the
# rendered test.conf, so the production locations are what answers: POST only (405 from nginx),
# the body cap (413 from nginx), signed deliveries drained and handed off, runcell-fcgi's JSON
# errors passed through, chunked bodies buffered, underscore header aliases dropped, /healthz and
# /metrics GET-only, the limit_req zone answering 429 under a flood. runcell-fcgi runs under
# strace: every system call it made is in systemd's @system-service set (the SystemCallFilter= of
# runcell-fcgi.service) and every socket it opened is AF_UNIX, AF_INET or AF_INET6
# (RestrictAddressFamilies=).
# shellcheck disable=SC2317 # functions called through traps, check and wait_for
# shellcheck source=tests/integration/emulator_lib.sh
. "$(dirname "$0")/emulator_lib.sh" # cd to the repo root, tests/lib.sh, em_start, api, mk_*, jb

FCGI=$BUILD/runcell-fcgi
WEBHOOK_TOOL=$BUILD/runcell-webhook
FAKE_LAUNCHER=$BUILD/tests/tools/fake_launcher
NGINX=${NGINX:-$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)}
NOBODY=65534
AS_NOBODY=(setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups)
D=$(mktemp -d /tmp/rc-deploy-nginx.XXXXXX)
chmod 0755 "$D"
FCGI_PID="" NGINX_PID="" LAUNCHER_PID="" STRACE_PID=""

# stop_pid PID [SECONDS]: SIGTERM, SIGKILL after SECONDS (default 10); returns the exit status.
stop_pid() {
    local pid=$1 n=$((${2:-10} * 20))
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    while [ "$n" -gt 0 ] && kill -0 "$pid" 2>/dev/null; do
        sleep 0.05
        n=$((n - 1))
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}
cleanup() {
    stop_pid "$NGINX_PID" 5
    stop_pid "$FCGI_PID" 20
    stop_pid "$STRACE_PID" 5
    stop_pid "$LAUNCHER_PID" 5
    rm -rf "$D"
    em_cleanup
}
trap cleanup EXIT
wait_for() { # wait_for SECONDS CMD...
    local n=$(($1 * 20))
    shift
    while [ $n -gt 0 ]; do
        "$@" && return 0
        sleep 0.05
        n=$((n - 1))
    done
    return 1
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
nginx_t() { "$NGINX" -t -q -p "$1" -c "$1/nginx.conf" -e stderr >"$1/t.out" 2>&1; }

if [ ! -x "$NGINX" ]; then
    t_skip all "nginx not installed"
    t_done
fi

# ---- static: the snippet in a minimal server -----------------------------------------------------
M=$D/min
mkdir -p "$M"
cp /etc/nginx/fastcgi_params "$M/" 2>/dev/null ||
    scripts/render-nginx-test-conf.sh --prefix "$D/params" --port 1 --fcgi-socket /x --fastcgi-params /nonexistent >/dev/null
[ -f "$M/fastcgi_params" ] || cp "$D/params/fastcgi_params" "$M/"
# shellcheck disable=SC2016 # $binary_remote_addr is nginx's variable
ZONE_LINE='limit_req_zone $binary_remote_addr zone=runcell_webhook:1m rate=10r/s;'
minimal_conf() { # minimal_conf WITH_ZONE
    cat <<EOF
pid $M/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path $M/tmp;
    fastcgi_temp_path $M/tmp;
    $([ "$1" = 1 ] && echo "$ZONE_LINE")
    server {
        listen 127.0.0.1:$(free_port);
        server_name example.test;
        include $PWD/nginx/runcell.conf;
    }
}
EOF
}
minimal_conf 1 >"$M/nginx.conf"
if nginx_t "$M"; then t_ok snippet_in_minimal_server; else t_fail snippet_in_minimal_server "$(cat "$M/t.out")"; fi
minimal_conf 0 >"$M/nginx.conf"
if nginx_t "$M"; then
    t_fail snippet_needs_the_zone_line "nginx accepted the snippet without limit_req_zone"
else
    check snippet_needs_the_zone_line grep -q 'runcell_webhook' "$M/t.out"
fi

# ---- static: the rendered test configuration ---------------------------------------------------
R=$D/render
out=$(scripts/render-nginx-test-conf.sh --prefix "$R" --port 18080 --fcgi-socket "$D/fcgi.sock")
check render_prints_conf_path test "$out" = "$R/nginx.conf"
check render_no_placeholder_left bash -c "! grep -q '@[A-Z_]*@' '$R/nginx.conf'"
check render_listens_on_loopback grep -q 'listen 127.0.0.1:18080;' "$R/nginx.conf"
check render_snippet_differs_only_in_socket bash -c \
    "diff nginx/runcell.conf '$R/runcell.conf' | grep '^[<>]' | sort | tr -s ' ' |
     diff - <(printf '%s\n' '< fastcgi_pass unix:/run/runcell/fcgi.sock;' '< fastcgi_pass unix:/run/runcell/fcgi.sock;' \
        '< fastcgi_pass unix:/run/runcell/fcgi.sock;' '> fastcgi_pass unix:$D/fcgi.sock;' \
        '> fastcgi_pass unix:$D/fcgi.sock;' '> fastcgi_pass unix:$D/fcgi.sock;') >/dev/null"
if nginx_t "$R"; then t_ok rendered_test_conf; else t_fail rendered_test_conf "$(cat "$R/t.out")"; fi
for bad in "--port 0" "--port 70000" "--port x" "--prefix relative" "--fcgi-socket /a;b" "--prefix /a/b{c}"; do
    # shellcheck disable=SC2086 # word splitting of "$bad" is the point
    set -- --prefix "$D/bad" --port 1 --fcgi-socket /x $bad
    scripts/render-nginx-test-conf.sh "$@" >/dev/null 2>&1
    rc=$?
    check "render_refuses_$(printf '%s' "$bad" | tr -c 'a-z0-9' '_' | tr -s '_' | sed 's/^_//')" test "$rc" = 2
done

# ---- live -----------------------------------------------------------------------------------------
why=""
if [ "$(id -u)" != 0 ]; then why="needs root (the services run as nobody)"
elif ! command -v setpriv >/dev/null || ! command -v python3 >/dev/null; then why="setpriv or python3 missing"
elif ! [ -x "$EMU" ] || ! [ -x "$FCGI" ] || ! [ -x "$WEBHOOK_TOOL" ] || ! [ -x "$FAKE_LAUNCHER" ]; then
    why="$EMU, $FCGI, $WEBHOOK_TOOL or $FAKE_LAUNCHER not built"
elif ! "${AS_NOBODY[@]}" test -x "$FCGI"; then why="nobody cannot reach $FCGI"
fi
if [ -n "$why" ]; then
    t_skip live "$why"
    t_done
fi

L=$D/live
mkdir -p "$L"
chown $NOBODY:$NOBODY "$L"
chmod 0700 "$L"
F_SOCK=$L/fcgi.sock
L_SOCK=$L/launcher.sock
PORT=$(free_port)
NGX=http://127.0.0.1:$PORT
em_start --webhook-url "$NGX/webhook" --webhook-backoff-ms 200,400
mk_env ENV deploy
mk_key ek "$ENV"
mk_agent AGENT
ENV_KEY=$(sed -n 's/^Authorization: Bearer //p' "$EM_DIR/cred.ek")
if [ -z "$ENV" ] || [ -z "$ENV_KEY" ] || [ -z "$WH_KEY" ]; then
    t_fail setup "no environment or key"
    t_done
fi

touch "$L/launches.jsonl"
chown $NOBODY:$NOBODY "$L/launches.jsonl"
"${AS_NOBODY[@]}" "$FAKE_LAUNCHER" --socket "$L_SOCK" --log "$L/launches.jsonl" >"$D/launcher.log" 2>&1 &
LAUNCHER_PID=$!
wait_for 5 test -S "$L_SOCK" || { t_fail launcher_start "$(tail -n 3 "$D/launcher.log")"; t_done; }

# runcell-fcgi as nobody, under strace when it is installed: every call plus a summary (-C), with
# no string contents (-s 0), so no key or body is ever written to the trace. The keys travel in
# the environment of a subshell (export is a builtin).
STRACE=()
if command -v strace >/dev/null 2>&1; then STRACE=(strace -f -C -s 0 -o "$L/strace.out" --); fi
(
    export ANTHROPIC_BASE_URL="$B" ANTHROPIC_ENVIRONMENT_ID="$ENV" ANTHROPIC_ENVIRONMENT_KEY="$ENV_KEY" \
        ANTHROPIC_WEBHOOK_SIGNING_KEY="$WH_KEY" RUNCELL_LAUNCHER_SOCKET="$L_SOCK" RUNCELL_FCGI_THREADS=4
    exec "${AS_NOBODY[@]}" "${STRACE[@]}" "$FCGI" --socket "$F_SOCK"
) >"$D/fcgi.log" 2>&1 &
STRACE_PID=$!
wait_for 10 test -S "$F_SOCK" || { t_fail fcgi_start "$(tail -n 5 "$D/fcgi.log")"; t_done; }
if [ ${#STRACE[@]} -gt 0 ]; then
    FCGI_PID=$(ps -o pid= --ppid "$STRACE_PID" | tr -d ' ' | head -n 1)
else
    FCGI_PID=$STRACE_PID STRACE_PID=""
fi

N=$L/nginx
mkdir -p "$N"
scripts/render-nginx-test-conf.sh --prefix "$N" --port "$PORT" --fcgi-socket "$F_SOCK" >/dev/null
chown -R $NOBODY:$NOBODY "$N"
"${AS_NOBODY[@]}" "$NGINX" -p "$N" -c "$N/nginx.conf" -e stderr >"$D/nginx.log" 2>&1 &
NGINX_PID=$!
wait_for 10 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $NGX/nginx-ready)\" = 204 ]" ||
    { t_fail nginx_start "$(tail -n 5 "$D/nginx.log")"; t_done; }

ANS=$D/answer
http() { WST=$(curl -sS -m 30 -o "$ANS" -D "$ANS.hdr" -w '%{http_code}' "$@" 2>"$D/curl.err") || WST=000; }
ahdr() { grep -i "^$1:" "$ANS.hdr" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }
envelope() {
    printf '{"type":"event","id":"%s","created_at":"2026-05-01T12:00:00Z","data":{"type":"session.status_run_started","id":"%s","organization_id":"org_test","workspace_id":"wrkspc_test"}}' "$1" "$2"
}
sign() { ANTHROPIC_WEBHOOK_SIGNING_KEY=$WH_KEY "$WEBHOOK_TOOL" sign --id "$1" --timestamp "$2"; }
# deliver FILE ID [CURL-ARGS...]: a correctly signed POST through nginx.
deliver() {
    local file=$1 id=$2 ts sig
    shift 2
    ts=$(date +%s)
    sig=$(sign "$id" "$ts" <"$file")
    http -H 'content-type: application/json' -H "webhook-id: $id" -H "webhook-timestamp: $ts" \
        -H "webhook-signature: $sig" --data-binary "@$file" "$@" "$NGX/webhook"
}
fcgi_requests() {
    curl -s "$NGX/metrics" | awk '$1 == "runcell_fcgi_requests_total" {print $2}'
}
# launch_of SID: "answer token_ok" of every launch of that session.
launch_of() {
    jq -r -s --arg s "$1" '[.[] | select(.session_id == $s) | "\(.answer) \(.token_ok)"] | join(",")' "$L/launches.jsonl"
}

# -- method: only POST reaches runcell-fcgi
before=$(fcgi_requests)
for m in GET PUT DELETE; do
    http -X "$m" "$NGX/webhook"
    check "webhook_${m}_405_from_nginx" bash -c "[ '$WST' = 405 ] && grep -q '<center>nginx</center>' '$ANS'"
done
check webhook_405_allow_post test "$(ahdr allow)" = POST
# (the metrics scrape itself is one request)
check non_post_never_reaches_fcgi test "$(fcgi_requests)" = $((before + 1))

# -- body cap: 1 MiB + 1 is refused by nginx itself
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' 'a' >"$D/big"
http -H 'content-type: application/json' --data-binary "@$D/big" "$NGX/webhook"
check oversize_413_from_nginx bash -c "[ '$WST' = 413 ] && grep -q '<center>nginx</center>' '$ANS'"

# -- a signed delivery for a queued session: drained, claimed and handed off once
mk_session S1 "$AGENT" "$ENV"
envelope whe_deploy1 "$S1" >"$D/e1.json"
deliver "$D/e1.json" whe_deploy1
check signed_delivery_200 test "$WST" = 200
check signed_delivery_json_from_fcgi bash -c "[ \"\$(jq -r .status '$ANS')\" = drained ]"
wait_for 10 bash -c "[ \"\$(jq -r -s --arg s '$S1' '[.[] | select(.session_id == \$s)] | length' '$L/launches.jsonl')\" -ge 1 ]"
check session_handed_off_once_with_token test "$(launch_of "$S1")" = "accepted true"

# -- runcell-fcgi's own answers pass through unchanged
http -H 'content-type: application/json' -H 'webhook-id: whe_bad' -H "webhook-timestamp: $(date +%s)" \
    -H 'webhook-signature: v1,AAAA' --data-binary "@$D/e1.json" "$NGX/webhook"
check bad_signature_401_json_passed_through bash -c "[ '$WST' = 401 ] && [ \"\$(jq -r .error '$ANS')\" = 'invalid signature' ]"
ts=$(date +%s)
envelope whe_dup "$S1" >"$D/e2.json"
sig=$(sign whe_dup "$ts" <"$D/e2.json")
http -H 'content-type: application/json' -H 'webhook-id: whe_dup' -H "webhook-timestamp: $ts" \
    -H "webhook-signature: $sig" -H "webhook-signature: $sig" --data-binary "@$D/e2.json" "$NGX/webhook"
check duplicate_signature_header_401 test "$WST" = 401
# An underscore alias of the signature header is dropped by nginx (underscores_in_headers off).
http -H 'content-type: application/json' -H 'webhook-id: whe_alias' -H "webhook-timestamp: $ts" \
    -H "webhook_signature: $sig" --data-binary "@$D/e2.json" "$NGX/webhook"
check underscore_alias_not_passed test "$WST" = 401

# -- a chunked body is buffered by nginx and verified like any other
mk_session S2 "$AGENT" "$ENV"
envelope whe_chunked "$S2" >"$D/e3.json"
deliver "$D/e3.json" whe_chunked -H 'transfer-encoding: chunked'
check chunked_delivery_200 bash -c "[ '$WST' = 200 ] && [ -n \"\$(jq -r .status '$ANS')\" ]"
wait_for 10 bash -c "[ -n \"\$(jq -r -s --arg s '$S2' '.[] | select(.session_id == \$s) | .answer' '$L/launches.jsonl')\" ]"
check chunked_session_handed_off test "$(launch_of "$S2")" = "accepted true"

# -- the emulator's own deliveries (it signs with the same key) reach runcell-fcgi through nginx:
# a user message makes the session run, which sends a signed session.status_run_started webhook
mk_session S3 "$AGENT" "$ENV"
api POST "/v1/sessions/$S3/events" '{"events":[{"type":"user.message","content":[{"type":"text","text":"hello"}]}]}'
stats_ok() {
    admin GET /stats
    [ "$(jb '.webhooks.delivered >= 1 and .webhooks.failed == 0 and .webhooks.dropped == 0')" = true ]
}
if wait_for 15 stats_ok; then
    t_ok emulator_delivery_accepted
else
    t_fail emulator_delivery_accepted "emulator webhook stats: $(jq -c .webhooks "$EM_DIR/body")"
fi
wait_for 10 bash -c "[ -n \"\$(jq -r -s --arg s '$S3' '.[] | select(.session_id == \$s) | .answer' '$L/launches.jsonl')\" ]"
check emulator_delivered_session_handed_off test "$(launch_of "$S3")" = "accepted true"
check every_item_claimed_once test "$(jq -s 'group_by(.session_id) | map(length) | max' "$L/launches.jsonl")" = 1

# -- /healthz and /metrics: GET (and HEAD) only, from loopback
http "$NGX/healthz"
check healthz_200 bash -c "[ '$WST' = 200 ] && [ \"\$(jq -r .status '$ANS')\" = ok ]"
http -I "$NGX/healthz"
check healthz_head_200 test "$WST" = 200
http -X POST "$NGX/healthz"
check healthz_post_403 test "$WST" = 403
http "$NGX/metrics"
check metrics_200 bash -c "[ '$WST' = 200 ] && grep -q '^runcell_fcgi_webhooks_total' '$ANS'"
http -X POST --data x "$NGX/metrics"
check metrics_post_403 test "$WST" = 403
check internal_locations_loopback_only bash -c \
    "[ \$(grep -c 'deny all;' nginx/runcell.conf) -ge 2 ] && awk '/location = \\/(healthz|metrics)/,/^}/' nginx/runcell.conf |
     grep -E '^[[:space:]]*allow ' | sort -u | tr -s ' ' | diff - <(printf '%s\n' ' allow 127.0.0.1;' ' allow ::1;') >/dev/null"
http "$NGX/other"
check other_paths_not_passed test "$WST" = 404

# -- the limit_req zone: a flood of POSTs is cut down to rate + burst, the excess answered 429
curl -s -Z --parallel-max 60 -o /dev/null -w '%{http_code}\n' -X POST "$NGX/webhook?n=[1-600]" >"$D/flood" 2>/dev/null
n429=$(grep -c '^429$' "$D/flood")
n401=$(grep -c '^401$' "$D/flood")
echo "# flood of 600 unsigned POSTs: $n429 x 429 (nginx), $n401 x 401 (runcell-fcgi)"
check flood_limited_429 test "$n429" -gt 0
check flood_some_passed test "$n401" -gt 0
check flood_nothing_else test $((n429 + n401)) = 600

check nginx_log_has_no_key bash -c "! grep -qaF -e '$ENV_KEY' -e '${WH_KEY#whsec_}' '$D/nginx.log'"

# -- SIGTERM: runcell-fcgi exits 0; the system calls it made are all in @system-service
kill -TERM "$FCGI_PID"
if [ -n "$STRACE_PID" ]; then
    wait "$STRACE_PID"
    rc=$?
    STRACE_PID=""
else
    wait "$FCGI_PID"
    rc=$?
fi
FCGI_PID=""
check fcgi_exit_0_on_sigterm test "$rc" = 0

# expand_filter @GROUP: every system call name systemd puts into a filter group, recursively.
expand_filter() {
    systemd-analyze syscall-filter "$1" | sed -n '2,$p' | sed 's/#.*//; s/^[[:space:]]*//; /^$/d' |
        while read -r name; do
            case "$name" in @*) expand_filter "$name" ;; *) echo "$name" ;; esac
        done
}
if [ ! -s "$L/strace.out" ]; then
    t_skip fcgi_syscalls_within_system_service "strace not installed"
elif ! command -v systemd-analyze >/dev/null 2>&1; then
    t_skip fcgi_syscalls_within_system_service "systemd-analyze not installed"
else
    expand_filter @system-service | sort -u >"$D/allowed"
    # The summary table at the end: from its "% time" header, the last column of each row.
    sed -n '/^% time/,$p' "$L/strace.out" | awk '$NF ~ /^[a-z_0-9]+$/ && $NF != "total" && $NF != "syscall" {print $NF}' |
        sort -u >"$D/used"
    outside=$(comm -23 "$D/used" "$D/allowed" | grep -vx execve | tr '\n' ' ')
    echo "# runcell-fcgi used $(wc -l <"$D/used") distinct system calls"
    check fcgi_syscalls_seen test "$(wc -l <"$D/used")" -gt 10
    check fcgi_syscalls_within_system_service test -z "$outside"
    [ -z "${VERBOSE:-}" ] || echo "# used: $(tr '\n' ' ' <"$D/used")"
    [ -z "$outside" ] || echo "#   outside @system-service: $outside"
    families=$(grep -o 'socket(AF_[A-Z0-9]*' "$L/strace.out" | cut -d'(' -f2 | sort -u | tr '\n' ' ')
    echo "# socket families: $families"
    check fcgi_socket_families_allowed bash -c "[ -n '$families' ] &&
        ! printf '%s\n' $families | grep -qvx -e AF_UNIX -e AF_INET -e AF_INET6"
fi
[ -s "$L/strace.out" ] && check strace_has_no_key bash -c "! grep -qaF -e '$ENV_KEY' -e '${WH_KEY#whsec_}' '$L/strace.out'"
check fcgi_log_has_no_key bash -c "! grep -qaF -e '$ENV_KEY' -e '${WH_KEY#whsec_}' '$D/fcgi.log'"

t_done
