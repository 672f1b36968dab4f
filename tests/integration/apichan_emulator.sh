#!/usr/bin/env bash
# tests/integration/apichan_emulator.sh - the broker's API channel (build/tests/tools/apichan) in
# front of a real runcell-emulator, driven with real curl over the unix socket:
#   - the socket is 0600 and owned by the allowed uid; another uid cannot open it (file mode),
#     and a process the file mode lets in but SO_PEERCRED does not (root against a channel for
#     uid 65534) is closed unanswered with an audit line, while uid 65534 itself is served;
#   - the work secret never reaches argv and is gone from the channel's /proc/PID/environ;
#   - allowed calls reach the emulator authenticated as the session token
#     (GET /_emulator/v1/requests says `session_token`), even when the client sends the API key
#     in both x-api-key and Authorization; none of those headers reach the emulator;
#   - the SSE stream's headers arrive before any event and events are relayed as they happen,
#     while other connections heartbeat and post; keep-alive reuses one connection;
#   - upstream errors (400, 412) pass through with status and body;
#   - other session, other work item, other environment, poll/ack, '..', %2e%2e, %2F, '//',
#     trailing '/', case tricks and query injection get 403 in the API's error shape, never reach
#     the emulator, and leave an audit line;
#   - the token appears nowhere the client can see (headers and bodies), nor in the audit log;
#   - a work item without a secret is refused unless RUNCELL_ALLOW_ENVIRONMENT_KEY_BROKERING=1,
#     in which case the environment key is injected (the emulator sees `environment_key`).
. "$(dirname "$0")/emulator_lib.sh"

APICHAN=${APICHAN:-$BUILD/tests/tools/apichan}
if [ ! -x "$APICHAN" ]; then
    t_skip all "$APICHAN not built"
    exit 0
fi
em_start

CH_DIR=$EM_DIR/ch
mkdir -p "$CH_DIR"
chmod 711 "$EM_DIR" "$CH_DIR" # uid 65534 must reach a socket in here (its own, later)
: >"$CH_DIR/seen"
ME=$(id -u)

# ch_start VAR SOCK UID [ARGS...]: start a channel for ENV/WID/SID; VAR gets its pid. The secret
# ($CH_SECRET_FILE) and the lines of $CH_ENVFILE reach it through its environment only.
ch_start() {
    local var=$1 sock=$2 uid=$3 pid
    shift 3
    (
        if [ -s "${CH_SECRET_FILE:-}" ]; then
            read -r ANTHROPIC_WORK_SECRET <"$CH_SECRET_FILE"
            export ANTHROPIC_WORK_SECRET
        fi
        if [ -n "${CH_ENVFILE:-}" ]; then
            while IFS= read -r line; do export "$line"; done <"$CH_ENVFILE"
        fi
        exec "$APICHAN" --socket "$sock" --allowed-uid "$uid" --base-url "$B" \
            --environment-id "$ENV" --work-id "$WID" --session-id "$SID" \
            --audit-file "$CH_DIR/audit" "$@"
    ) >"$sock.out" 2>"$sock.log" &
    pid=$!
    BG_PIDS+=("$pid")
    printf -v "$var" '%s' "$pid"
    for _ in $(seq 100); do
        grep -q '^ready' "$sock.out" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# ch_req SOCK METHOD PATH [BODY] [CURL-ARGS...]: CST = status, body/headers in $CH_DIR/body and
# $CH_DIR/hdr; everything the client saw is appended to $CH_DIR/seen.
ch_req() {
    local sock=$1 method=$2 path=$3 body=${4-}
    shift 3
    [ $# -gt 0 ] && shift
    local args=(-sS -m 20 --path-as-is --unix-socket "$sock" -o "$CH_DIR/body" -D "$CH_DIR/hdr"
        -w '%{http_code}' -X "$method" -H "anthropic-beta: $BETA" -H "anthropic-version: 2023-06-01"
        -H "$MARK")
    [ -n "$body" ] && args+=(-H "content-type: application/json" --data-binary "$body")
    rm -f "$CH_DIR/body" "$CH_DIR/hdr"
    CST=$(curl "${args[@]}" "$@" "http://localhost$path" 2>"$CH_DIR/curl.err") || CST=000
    cat "$CH_DIR/hdr" "$CH_DIR/body" >>"$CH_DIR/seen" 2>/dev/null
}
cjb() { jq -r "$1" "$CH_DIR/body" 2>/dev/null; }
chdr() { grep -i "^$1:" "$CH_DIR/hdr" 2>/dev/null | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }
ch_status() {
    if [ "$CST" = "$2" ]; then t_ok "$1"; else t_fail "$1" "status $CST, want $2: $(head -c 300 "$CH_DIR/body" 2>/dev/null) $(cat "$CH_DIR/curl.err")"; fi
}
# ch_forbidden NAME: the channel's own 403 in the API's error shape.
ch_forbidden() {
    local ok=1
    [ "$CST" = 403 ] || ok=0
    [ "$(cjb .type)" = error ] || ok=0
    [ "$(cjb .error.type)" = permission_error ] || ok=0
    [ "$(cjb .error.details.error_code)" = broker_forbidden ] || ok=0
    [ "$(cjb .request_id | cut -c1-11)" = req_broker_ ] || ok=0
    [ "$(chdr x-should-retry)" = false ] || ok=0
    chdr content-type | grep -q application/json || ok=0
    if [ $ok = 1 ]; then t_ok "$1"; else t_fail "$1" "status $CST: $(head -c 300 "$CH_DIR/body" 2>/dev/null)"; fi
}
# checkx NAME EXPRESSION: ok when the shell expression (evaluated here) holds.
checkx() {
    local n=$1
    shift
    if eval "$*"; then t_ok "$n"; else t_fail "$n" "failed: $*"; fi
}
em_last_seq() { admin GET "/requests?since=999999999"; jb .last_seq; }
# The requests that came through a channel carry this (allowlisted) marker header.
MARK="x-stainless-helper: apichan-test"
ch_seen() { jq --arg m apichan-test '[.data[] | select(.header_values["x-stainless-helper"] == $m)]' "$EM_DIR/body"; }

# ---- set-up: a session, its work item claimed like the control plane does --------------------
mk_env ENV
mk_key envkey "$ENV"
mk_env ENV2 other
mk_agent AGENT
mk_session SID "$AGENT" "$ENV"
req envkey GET "/v1/environments/$ENV/work/poll"
WID=$(jb .id)
(umask 077 && jb .secret >"$CH_DIR/secret")
TOKEN=$(tr '_-' '/+' <"$CH_DIR/secret" | awk '{ while (length($0) % 4) $0 = $0 "="; print }' |
    base64 -d 2>/dev/null | jq -r .sessions_token)
req envkey POST "/v1/environments/$ENV/work/$WID/ack"
checkx setup_claimed '[ "$ST" = 200 ] && [ -n "$TOKEN" ] && [ "$TOKEN" != null ]'
mk_session SID2 "$AGENT" "$ENV" # another session (its item stays queued)

S=$CH_DIR/api.sock
CH_SECRET_FILE=$CH_DIR/secret
if ! ch_start CH "$S" "$ME"; then
    t_fail channel_start "$(cat "$S.log")"
    exit 1
fi
t_ok channel_start

# ---- the socket file and the process ------------------------------------------------------
check socket_mode_0600 [ "$(stat -c %a "$S")" = 600 ]
check socket_owner [ "$(stat -c %u "$S")" = "$ME" ]
SECRET=$(cat "$CH_DIR/secret")
check secret_not_in_argv bash -c '! tr "\0" "\n" </proc/'"$CH"'/cmdline | grep -qF -- "$1"' _ "$SECRET"
check secret_not_in_environ bash -c '! tr "\0" "\n" </proc/'"$CH"'/environ | grep -qE "^ANTHROPIC_WORK_SECRET=." && ! grep -qF -- "$1" /proc/'"$CH"'/environ' _ "$SECRET"

# ---- allowed calls --------------------------------------------------------------------------
SEQ0=$(em_last_seq)
# The client sends the API key twice over: stripped, or the emulator would answer 400.
ch_req "$S" POST "/v1/environments/$ENV/work/$WID/heartbeat?expected_last_heartbeat=NO_HEARTBEAT" "" \
    -H "@$EM_DIR/cred.api" -H "@$EM_DIR/cred.apibearer" -H "Cookie: a=b"
ch_status heartbeat_first 200
LAST_HB=$(cjb .last_heartbeat)
check heartbeat_state [ "$(cjb .state)" = active ]
ch_req "$S" GET "/v1/sessions/$SID" "" -H "@$EM_DIR/cred.apibearer"
ch_status session_get 200
check session_get_id [ "$(cjb .id)" = "$SID" ]
ch_req "$S" GET "/v1/sessions/$SID/events?limit=1000"
ch_status events_list 200
check events_list_shape [ "$(cjb '.data | type')" = array ]

# Upstream errors pass through with their status and body.
ch_req "$S" POST "/v1/sessions/$SID/events" \
    '{"events":[{"type":"user.tool_result","tool_use_id":"sevt_unknown","content":[{"type":"text","text":"x"}]}]}'
checkx events_send_error_passthrough '[ "$CST" = 400 ] && [ "$(cjb .error.type)" = invalid_request_error ] &&
    [ "$(cjb .request_id | cut -c1-4)" = req_ ] && [ "$(cjb .request_id | cut -c1-11)" != req_broker_ ]'
ch_req "$S" POST "/v1/environments/$ENV/work/$WID/heartbeat?expected_last_heartbeat=2020-01-01T00%3A00%3A00.000000Z"
checkx heartbeat_412_passthrough '[ "$CST" = 412 ] && [ "$(cjb .error.details.error_code)" = heartbeat_precondition_failed ]'

# Keep-alive: two requests in one curl run share one connection.
KA=$(curl -sS -m 20 --unix-socket "$S" -H "anthropic-beta: $BETA" -H "$MARK" -o /dev/null -o /dev/null \
    -w '%{num_connects}\n' "http://localhost/v1/sessions/$SID" "http://localhost/v1/sessions/$SID/events?limit=1")
check keepalive_one_connection [ "$(echo "$KA" | tr -d '\n')" = 10 ]

# ---- the event stream: headers at once, events as they happen, other calls alongside ----------
T0=$(date +%s%N)
curl -sS -N -m 8 --unix-socket "$S" -H "anthropic-beta: $BETA" -H "@$EM_DIR/cred.api" -H "$MARK" \
    -D "$CH_DIR/stream.hdr" -o "$CH_DIR/stream.body" "http://localhost/v1/sessions/$SID/events/stream" \
    2>/dev/null &
SPID=$!
BG_PIDS+=("$SPID")
for _ in $(seq 100); do grep -q '^HTTP/1.1 200' "$CH_DIR/stream.hdr" 2>/dev/null && break; sleep 0.02; done
T1=$(date +%s%N)
check stream_headers_flushed grep -q '^HTTP/1.1 200' "$CH_DIR/stream.hdr"
check stream_headers_fast [ $(((T1 - T0) / 1000000)) -lt 1500 ]
check stream_content_type grep -qi '^content-type: text/event-stream' "$CH_DIR/stream.hdr"
check stream_no_event_yet [ ! -s "$CH_DIR/stream.body" ]
ch_req "$S" POST "/v1/environments/$ENV/work/$WID/heartbeat?expected_last_heartbeat=$(jq -rn --arg v "$LAST_HB" '$v|@uri')"
ch_status heartbeat_during_stream 200
api POST "/v1/sessions/$SID/events" '{"events":[{"type":"user.message","content":[{"type":"text","text":"hello channel"}]}]}'
check user_message_sent [ "$ST" = 200 ]
for _ in $(seq 150); do grep -q '^event: agent.message' "$CH_DIR/stream.body" 2>/dev/null && break; sleep 0.02; done
check stream_relays_events grep -q '^event: user.message' "$CH_DIR/stream.body"
check stream_relays_agent_reply grep -q '^event: agent.message' "$CH_DIR/stream.body"
ch_req "$S" GET "/v1/sessions/$SID/events?limit=1000"
checkx events_list_while_streaming '[ "$CST" = 200 ] && [ "$(cjb "[.data[] | select(.type == \"user.message\")] | length")" -ge 1 ]'
# Array and bracketed query keys reach the emulator as sent (and it filters by them).
ch_req "$S" GET "/v1/sessions/$SID/events?limit=1000&order=asc&types[]=user.message&types%5B%5D=agent.message"
checkx events_list_query_passthrough '[ "$CST" = 200 ] && [ "$(cjb "[.data[].type] | unique | join(\",\")")" = "agent.message,user.message" ]'
kill "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
cat "$CH_DIR/stream.hdr" "$CH_DIR/stream.body" >>"$CH_DIR/seen"

# ---- what the emulator saw -------------------------------------------------------------------
admin GET "/requests?since=$SEQ0"
ch_seen >"$CH_DIR/upstream.json"
check upstream_saw_channel_requests [ "$(jq length "$CH_DIR/upstream.json")" = 11 ]
check upstream_all_session_token [ "$(jq '[.[] | select(.credential != "session_token")] | length' "$CH_DIR/upstream.json")" = 0 ]
check upstream_no_api_key_header [ "$(jq '[.[] | .headers[] | ascii_downcase | select(. == "x-api-key" or . == "cookie")] | length' "$CH_DIR/upstream.json")" = 0 ]
OUTSIDE=$(jq --arg s "$SID" --arg w "$WID" \
    '[.[] | select((.path | startswith("/v1/sessions/\($s)") or endswith("/work/\($w)/heartbeat")) | not)] | length' "$CH_DIR/upstream.json")
check upstream_paths_scoped [ "$OUTSIDE" = 0 ]

# ---- refusals ------------------------------------------------------------------------------
SEQ1=$(em_last_seq)
H=/v1/environments/$ENV/work/$WID
while IFS='|' read -r name method path; do
    [ -z "$name" ] && continue
    ch_req "$S" "$method" "$path"
    ch_forbidden "refused_$name"
done <<EOF
other_session|GET|/v1/sessions/$SID2
other_session_events|GET|/v1/sessions/$SID2/events
other_session_stream|GET|/v1/sessions/$SID2/events/stream
other_session_send|POST|/v1/sessions/$SID2/events
other_work|POST|/v1/environments/$ENV/work/work_00000000000000000000000000/heartbeat
other_env|POST|/v1/environments/$ENV2/work/$WID/heartbeat
other_env_stop|POST|/v1/environments/$ENV2/work/$WID/stop
poll|GET|/v1/environments/$ENV/work/poll
ack|POST|$H/ack
work_retrieve|GET|$H
stats|GET|/v1/environments/$ENV/work/stats
session_create|POST|/v1/sessions
session_delete|DELETE|/v1/sessions/$SID
heartbeat_get|GET|$H/heartbeat
dotdot|GET|/v1/sessions/$SID/../$SID2
dotdot_env|POST|/v1/environments/$ENV2/../$ENV/work/$WID/heartbeat
dot|GET|/v1/sessions/$SID/./events
pct_dotdot|GET|/v1/sessions/$SID/%2e%2e/$SID2
pct_dotdot_upper|GET|/v1/sessions/$SID/%2E%2E/$SID2
pct_slash|GET|/v1/sessions/$SID%2Fevents
pct_slash_lower|GET|/v1/sessions/$SID%2fevents
pct_letter|GET|/v1/sessions/%73esn_${SID#sesn_}
double_slash|GET|/v1//sessions/$SID
leading_double_slash|GET|//v1/sessions/$SID
trailing_slash|GET|/v1/sessions/$SID/
trailing_slash_events|GET|/v1/sessions/$SID/events/
case_v1|GET|/V1/sessions/$SID
case_sessions|GET|/v1/Sessions/$SID
case_stream|GET|/v1/sessions/$SID/events/Stream
case_heartbeat|POST|$H/HEARTBEAT
query_duplicate|POST|$H/heartbeat?expected_last_heartbeat=NO_HEARTBEAT&expected_last_heartbeat=x
query_unknown|POST|$H/heartbeat?reclaim=1
query_wrong_route|GET|/v1/sessions/$SID?limit=1
query_raw_plus|POST|$H/heartbeat?expected_last_heartbeat=a+b
query_semicolon|POST|$H/heartbeat?expected_last_heartbeat=a;desired_ttl_seconds=1
query_crlf|POST|$H/heartbeat?expected_last_heartbeat=a%0d%0aAuthorization:%20x
query_nul|POST|$H/heartbeat?expected_last_heartbeat=%00
skills_disabled|GET|/v1/skills/skill_1/versions/latest
memory_disabled|GET|/v1/memory_stores/memstore_1/memories
emulator_admin|GET|/_emulator/v1/requests
EOF
check refused_never_upstream [ "$(em_last_seq)" = "$SEQ1" ]
check audit_has_denials grep -q '"decision":"deny","reason":"session id is not this channel' "$CH_DIR/audit"
check audit_reasons_named bash -c 'grep -q "\"reason\":\"work id is not this channel" "$1" &&
    grep -q "\"reason\":\"environment id is not this channel" "$1" &&
    grep -q "\"reason\":\"dot segment in the path\"" "$1" &&
    grep -q "\"reason\":\"percent-encoding is not allowed in the path\"" "$1" &&
    grep -q "\"reason\":\"query parameter given twice\"" "$1"' _ "$CH_DIR/audit"

# ---- the token never shows ---------------------------------------------------------------------
check token_absent_from_client_view bash -c '! grep -qF -- "$1" "$2"' _ "$TOKEN" "$CH_DIR/seen"
check token_absent_from_audit bash -c '! grep -qF -- "$1" "$2" && ! grep -qF -- "$3" "$2"' _ "$TOKEN" "$CH_DIR/audit" "$SECRET"
check token_absent_from_channel_log bash -c '! grep -qF -- "$1" "$2"' _ "$TOKEN" "$S.log"

# ---- other uids -------------------------------------------------------------------------------
if [ "$ME" = 0 ] && command -v setpriv >/dev/null; then
    NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    out=$("${NOBODY[@]}" curl -sS -m 5 --unix-socket "$S" -o /dev/null -w '%{http_code}' \
        "http://localhost/v1/sessions/$SID" 2>"$CH_DIR/nobody.err")
    checkx other_uid_cannot_open_socket '[ "$out" = 000 ] && grep -q "Permission denied\|Couldn.t connect" "$CH_DIR/nobody.err"'
    # A channel for uid 65534: that uid is served; root passes the file mode but not SO_PEERCRED.
    S2=$CH_DIR/nobody.sock
    if ch_start CH2 "$S2" 65534; then
        check peercred_socket_owner [ "$(stat -c %u "$S2")" = 65534 ]
        out=$("${NOBODY[@]}" curl -sS -m 5 --unix-socket "$S2" -H "anthropic-beta: $BETA" -o /dev/null \
            -w '%{http_code}' "http://localhost/v1/sessions/$SID" 2>/dev/null)
        check allowed_uid_served [ "$out" = 200 ]
        out=$(curl -sS -m 5 --unix-socket "$S2" -o /dev/null -w '%{http_code}' \
            "http://localhost/v1/sessions/$SID" 2>/dev/null)
        check peercred_refuses_root [ "$out" = 000 ]
        check peercred_audited grep -q '"event":"peer_refused".*"peer_uid":0' "$CH_DIR/audit"
        kill "$CH2" && wait "$CH2"
        check peercred_stats grep -q 'refused_peer=1' "$S2.out"
    else
        t_fail peercred_channel_start "$(cat "$S2.log")"
    fi
else
    t_skip other_uids "needs root and setpriv"
fi

# ---- no secret: refused, unless environment-key brokering is allowed --------------------------
: >"$CH_DIR/nosecret"
(umask 077 && printf 'ANTHROPIC_ENVIRONMENT_KEY=%s\n' "$(sed 's/^Authorization: Bearer //' "$EM_DIR/cred.envkey")" >"$CH_DIR/envkey.env")
if CH_SECRET_FILE=$CH_DIR/nosecret CH_ENVFILE=$CH_DIR/envkey.env ch_start CH3 "$CH_DIR/nokey.sock" "$ME"; then
    t_fail no_secret_refused "the channel started without a secret"
    kill "$CH3"
else
    wait "$CH3"
    check no_secret_refused [ $? = 3 ]
fi
check no_secret_refusal_logged grep -q 'environment-key brokering is not allowed' "$CH_DIR/nokey.sock.log"
cp "$CH_DIR/envkey.env" "$CH_DIR/envkey-allowed.env"
echo RUNCELL_ALLOW_ENVIRONMENT_KEY_BROKERING=1 >>"$CH_DIR/envkey-allowed.env"
SEQ2=$(em_last_seq)
if CH_SECRET_FILE=$CH_DIR/nosecret CH_ENVFILE=$CH_DIR/envkey-allowed.env ch_start CH4 "$CH_DIR/envkey.sock" "$ME"; then
    ch_req "$CH_DIR/envkey.sock" GET "/v1/sessions/$SID"
    ch_status envkey_brokered 200
    admin GET "/requests?since=$SEQ2"
    check envkey_injected [ "$(ch_seen | jq -r '[.[].credential] | join(",")')" = environment_key ]
    check envkey_audited grep -q 'credential: environment key' "$CH_DIR/audit"
    ch_req "$CH_DIR/envkey.sock" GET "/v1/environments/$ENV/work/poll"
    ch_forbidden envkey_same_scope
    kill "$CH4" && wait "$CH4"
else
    t_fail envkey_channel_start "$(cat "$CH_DIR/envkey.sock.log")"
fi

# ---- shutdown ---------------------------------------------------------------------------------
kill "$CH"
wait "$CH"
check clean_exit [ $? = 0 ]
check socket_removed [ ! -e "$S" ]
check stats_line grep -q '^stats accepted=[1-9]' "$S.out"
t_done
