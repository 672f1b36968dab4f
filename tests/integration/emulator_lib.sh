# tests/integration/emulator_lib.sh - helpers shared by the emulator_*.sh integration tests:
# start a private runcell-emulator on a free port (--listen 127.0.0.1:0, the URL is read from
# the ANTHROPIC_BASE_URL line it prints), send requests with real curl, check statuses and
# error shapes. Credentials go to curl through header files (-H @file), never through argv.
#
# Sourced, not run: tests/run.sh also executes every tests/integration/*.sh, so running this
# file directly does nothing.
[ "${BASH_SOURCE[0]}" = "$0" ] && exit 0

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. tests/lib.sh

BUILD=${BUILD:-build}
EMU=${EMULATOR:-$BUILD/runcell-emulator}
BETA=managed-agents-2026-04-01
EM_DIR=$(mktemp -d /tmp/rc-emu-test.XXXXXX)
EM_PID=
BG_PIDS=()

em_cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    [ -n "$EM_PID" ] && kill "$EM_PID" 2>/dev/null && wait "$EM_PID" 2>/dev/null
    # EMU_LOG_DIR keeps the emulator's log (e.g. to look for sanitizer reports).
    [ -n "${EMU_LOG_DIR:-}" ] && [ -f "$EM_DIR/log" ] && cp "$EM_DIR/log" "$EMU_LOG_DIR/$T_SUITE.log"
    rm -rf "$EM_DIR"
}
trap em_cleanup EXIT

em_require() {
    for tool in curl jq; do
        command -v "$tool" >/dev/null 2>&1 || {
            t_skip all "$tool not installed"
            exit 0
        }
    done
    [ -x "$EMU" ] || {
        t_fail emulator_built "$EMU not built"
        exit 1
    }
}

# em_start [ARGS...]: start the emulator; sets B (base URL), API_KEY, WH_KEY.
em_start() {
    em_require
    "$EMU" --listen 127.0.0.1:0 "$@" >"$EM_DIR/out" 2>"$EM_DIR/log" &
    EM_PID=$!
    for _ in $(seq 100); do
        grep -q '^ANTHROPIC_WEBHOOK_SIGNING_KEY=' "$EM_DIR/out" 2>/dev/null && break
        kill -0 "$EM_PID" 2>/dev/null || break
        sleep 0.05
    done
    B=$(sed -n 's/^ANTHROPIC_BASE_URL=//p' "$EM_DIR/out")
    API_KEY=$(sed -n 's/^ANTHROPIC_API_KEY=//p' "$EM_DIR/out")
    WH_KEY=$(sed -n 's/^ANTHROPIC_WEBHOOK_SIGNING_KEY=//p' "$EM_DIR/out")
    if [ -z "$B" ] || [ -z "$API_KEY" ]; then
        t_fail emulator_start "emulator did not start: $(tail -n 5 "$EM_DIR/log")"
        exit 1
    fi
    cred_file api "x-api-key: $API_KEY"
    cred_file apibearer "Authorization: Bearer $API_KEY"
    printf '' >"$EM_DIR/cred.none"
}

# cred_file NAME HEADER-LINE: store a credential header for req (printf is a builtin: no argv).
cred_file() {
    (umask 077 && printf '%s\n' "$2" >"$EM_DIR/cred.$1")
}
bearer() { cred_file "$1" "Authorization: Bearer $2"; }

# req CRED METHOD PATH [BODY] [EXTRA-CURL-ARGS...]: ST = status, body in $EM_DIR/body,
# response headers in $EM_DIR/hdr. Sends the beta and version headers unless NOBETA=1.
req() {
    local cred=$1 method=$2 path=$3 body=${4-}
    shift 3
    [ $# -gt 0 ] && shift
    local args=(-sS -m 20 -o "$EM_DIR/body" -D "$EM_DIR/hdr" -w '%{http_code}' -X "$method"
        -H "@$EM_DIR/cred.$cred")
    [ -z "${NOBETA:-}" ] && args+=(-H "anthropic-beta: $BETA" -H "anthropic-version: 2023-06-01")
    [ -n "$body" ] && args+=(-H "content-type: application/json" --data-binary "$body")
    ST=$(curl "${args[@]}" "$@" "$B$path" 2>"$EM_DIR/curl.err") || ST=000
}
api() { req api "$@"; }

jb() { jq -r "$1" "$EM_DIR/body" 2>/dev/null; }
hdr() { grep -i "^$1:" "$EM_DIR/hdr" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }

# check_status NAME WANT: ok when the last request answered WANT.
check_status() {
    if [ "$ST" = "$2" ]; then t_ok "$1"; else t_fail "$1" "status $ST, want $2: $(head -c 300 "$EM_DIR/body")"; fi
}

# check_error NAME STATUS TYPE [ERROR_CODE]: the standard error body (protocol.md 2.6.1).
check_error() {
    local name=$1 status=$2 type=$3 code=${4-}
    local ok=1
    [ "$ST" = "$status" ] || ok=0
    [ "$(jb .type)" = error ] || ok=0
    [ "$(jb .error.type)" = "$type" ] || ok=0
    [ -n "$(jb .error.message)" ] || ok=0
    [ "$(jb .request_id | cut -c1-4)" = req_ ] || ok=0
    [ -z "$code" ] || [ "$(jb .error.details.error_code)" = "$code" ] || ok=0
    hdr content-type | grep -q application/json || ok=0
    if [ $ok = 1 ]; then t_ok "$name"; else t_fail "$name" "status $ST, want $status $type $code: $(head -c 300 "$EM_DIR/body")"; fi
}

# check NAME EXPR...: ok when the test expression holds.
check() {
    local n=$1
    shift
    if "$@"; then t_ok "$n"; else t_fail "$n" "failed: $*"; fi
}

# Setup helpers: each sets the named variable.
mk_env() {
    api POST /v1/environments "{\"name\":\"${2:-test}\",\"config\":{\"type\":\"self_hosted\"}}"
    printf -v "$1" '%s' "$(jb .id)"
}
mk_key() {
    api POST "/_emulator/v1/environments/$2/keys"
    bearer "$1" "$(jb .key)"
}
mk_agent() {
    local tools=${2:-'[{"type":"agent_toolset_20260401"}]'}
    api POST /v1/agents "{\"name\":\"a\",\"model\":\"claude-sonnet-4-6\",\"tools\":$tools}"
    printf -v "$1" '%s' "$(jb .id)"
}
mk_session() {
    api POST /v1/sessions "{\"agent\":\"$2\",\"environment_id\":\"$3\"${4:+,$4}}"
    printf -v "$1" '%s' "$(jb .id)"
}

# poll_item CRED ENV VAR_WID VAR_TOKEN: poll once and decode the item's sessions token.
poll_item() {
    req "$1" GET "/v1/environments/$2/work/poll"
    printf -v "$3" '%s' "$(jb .id)"
    local secret
    secret=$(jb .secret)
    printf -v "$4" '%s' "$(printf '%s' "$secret" | tr '_-' '/+' | awk '{ while (length($0) % 4) $0 = $0 "="; print }' | base64 -d 2>/dev/null | jq -r .sessions_token)"
}

# admin METHOD PATH [BODY]: an /_emulator/v1 call with the API key.
admin() { NOBETA=1 req api "$1" "/_emulator/v1$2" "${3-}"; }
