#!/usr/bin/env bash
# scripts/demo.sh - `make demo`: the main job end to end on one machine, no account needed.
#
# runcell-emulator (the local Managed Agents API) plays a scripted agent (examples/demo-scenario.json).
# When the session starts it delivers a signed webhook to an unprivileged nginx on loopback, which
# passes it to runcell-fcgi (running as nobody); runcell-fcgi verifies it, claims the work item and
# hands it to runcell-launcher (root), whose shim starts a locked-down runc container from the
# minimal snapshot; runcell-runner inside executes the agent's tool calls through the broker and
# posts the results. The demo prints each tool call and its result, the verdict, and checks that
# nothing is left behind. Everything lives under build/demo/ and is removed at the end
# (DEMO_KEEP=1 keeps it). Needs root (containers, network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
D=$(pwd)/$BUILD/demo
SCENARIO=examples/demo-scenario.json
PIDS=()

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'make demo: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local p
    for p in $(pgrep -f -- "--shim --snapshot" 2>/dev/null); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$BUILD/runcell-launcher")" ] &&
            kill -TERM "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    for m in $(awk -v p="$D/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null
    done
    if [ -z "${DEMO_KEEP:-}" ]; then rm -rf "$D"; else echo "(kept $D)"; fi
}

[ "$(id -u)" = 0 ] || die "needs root (it starts runc containers and network namespaces)"
for b in runcell-emulator runcell-fcgi runcell-launcher runcell-runner runcell; do
    [ -x "$BUILD/$b" ] || die "$BUILD/$b is not built (run make)"
done
for t in nginx runc curl jq setpriv python3; do
    command -v "$t" >/dev/null || die "$t not installed (scripts/install-deps.sh)"
done
rm -rf "$D"
mkdir -p "$D/fcgi" "$D/nginx/tmp" "$D/state" "$D/run"
chmod 0755 "$D"
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { local end=$((SECONDS + $1)); shift; until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.1; done; }

say "building the minimal snapshot (busybox, bash, runcell-runner, the demo's tool manifest)"
cat >"$D/tools.json" <<'EOF'
{"version": 1, "tools": [{"name": "run_tests", "description": "Run the project's tests",
  "input_schema": {"type": "object", "properties": {"filter": {"type": "string"}}},
  "shell": true, "program": "/bin/sh",
  "script": "echo \"running ${1:-all} tests in $(pwd)\"; echo '3 passed, 0 failed'",
  "argv": [{"input": "filter", "optional": true}], "timeout_ms": 60000}]}
EOF
BUILD=$BUILD scripts/build-snapshot.sh --base minimal --out "$D/snapshot" --tools "$D/tools.json" >"$D/digest"
echo "    snapshot $(cat "$D/digest")"

say "starting runcell-emulator (the local Managed Agents API)"
NGX_PORT=$(free_port)
mkdir -p "$D/scenarios"
cp "$SCENARIO" "$D/scenarios/"
"$BUILD/runcell-emulator" --listen 127.0.0.1:0 --scenarios "$D/scenarios" \
    --webhook-url "http://127.0.0.1:$NGX_PORT/webhook" >"$D/emulator.out" 2>"$D/emulator.log" &
PIDS+=($!)
wait_for 10 grep -q '^ANTHROPIC_WEBHOOK_SIGNING_KEY=' "$D/emulator.out" || die "emulator did not start"
BASE=$(sed -n 's/^ANTHROPIC_BASE_URL=//p' "$D/emulator.out")
(umask 077; sed -n 's/^ANTHROPIC_API_KEY=/x-api-key: /p' "$D/emulator.out" >"$D/api.hdr")
echo "    $BASE"
api() { # api METHOD PATH [BODY]: the backend's calls, API key from a header file (never argv)
    curl -sS -m 20 -X "$1" -H "@$D/api.hdr" -H 'anthropic-version: 2023-06-01' \
        -H 'anthropic-beta: managed-agents-2026-04-01' ${3:+-H 'content-type: application/json' --data-binary "$3"} "$BASE$2"
}

say "creating an environment and its environment key (the Console's job on the real API)"
ENV_ID=$(api POST /v1/environments '{"name":"demo","config":{"type":"self_hosted"}}' | jq -r .id)
(umask 077; api POST "/_emulator/v1/environments/$ENV_ID/keys" | jq -r .key >"$D/envkey")
echo "    $ENV_ID"

say "starting runcell-launcher (root, holds no API key) and runcell-fcgi (nobody) behind nginx"
L_SOCK=$D/fcgi/launcher.sock F_SOCK=$D/fcgi/fcgi.sock
chown 65534:65534 "$D/fcgi"
(umask 077; {
    printf 'export ANTHROPIC_BASE_URL=%q\nexport ANTHROPIC_ENVIRONMENT_ID=%q\n' "$BASE" "$ENV_ID"
    printf 'export ANTHROPIC_ENVIRONMENT_KEY=%q\n' "$(cat "$D/envkey")"
    printf 'export ANTHROPIC_WEBHOOK_SIGNING_KEY=%q\n' "$(sed -n 's/^ANTHROPIC_WEBHOOK_SIGNING_KEY=//p' "$D/emulator.out")"
    printf 'export RUNCELL_LAUNCHER_SOCKET=%q\n' "$L_SOCK"
} >"$D/fcgi/fcgi.env")
chown 65534:65534 "$D/fcgi/fcgi.env"
printf '#!/bin/sh\n. %s\nexec "$@"\n' "$D/fcgi/fcgi.env" >"$D/fcgi/with-env"
chmod 0755 "$D/fcgi/with-env"
env RUNCELL_STATE_DIR="$D/state" RUNCELL_RUN_DIR="$D/run" RUNCELL_LAUNCHER_SOCKET="$L_SOCK" \
    RUNCELL_FCGI_UID=65534 ANTHROPIC_BASE_URL="$BASE" RUNCELL_SNAPSHOT="$D/snapshot.tar" \
    RUNCELL_TOOLS_MANIFEST=/etc/runcell/tools.json RUNCELL_MAX_IDLE_MS=2000 \
    "$BUILD/runcell-launcher" >"$D/launcher.log" 2>&1 &
PIDS+=($!)
wait_for 60 test -S "$L_SOCK" || die "launcher did not start: $(tail -n 3 "$D/launcher.log")"
setpriv --reuid=65534 --regid=65534 --clear-groups "$D/fcgi/with-env" "$BUILD/runcell-fcgi" \
    --socket "$F_SOCK" >"$D/fcgi.log" 2>&1 &
PIDS+=($!)
wait_for 10 test -S "$F_SOCK" || die "runcell-fcgi did not start: $(tail -n 3 "$D/fcgi.log")"
chown -R 65534:65534 "$D/nginx"
cat >"$D/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $D/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $D/nginx/tmp/body;
    fastcgi_temp_path $D/nginx/tmp/fastcgi;
    proxy_temp_path $D/nginx/tmp/proxy;
    uwsgi_temp_path $D/nginx/tmp/uwsgi;
    scgi_temp_path $D/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGX_PORT;
        location = /webhook {
            limit_except POST { deny all; }
            client_max_body_size 1m;
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:$F_SOCK;
        }
        location / { return 404; }
    }
}
EOF
setpriv --reuid=65534 --regid=65534 --clear-groups nginx -p "$D/nginx" -c "$D/nginx/nginx.conf" \
    -e stderr >"$D/nginx.log" 2>&1 &
PIDS+=($!)
wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$NGX_PORT/" || die "nginx did not start"
echo "    webhook endpoint http://127.0.0.1:$NGX_PORT/webhook"

say "creating the agent and a session (the emulator plays $(jq -r .name "$SCENARIO") and sends the webhook)"
AGENT=$(api POST /v1/agents "$(jq -c '{name: "demo agent", model: "claude-sonnet-4-6", tools: .agent.tools}' "$SCENARIO")" | jq -r .id)
SID=$(api POST /v1/sessions "$(jq -cn --arg a "$AGENT" --arg e "$ENV_ID" '{agent: $a, environment_id: $e, metadata: {scenario: "demo"}}')" | jq -r .id)
echo "    agent $AGENT, session $SID"

state=running
for _ in $(seq 600); do
    state=$(api GET "/_emulator/v1/sessions/$SID/verdict" | jq -r .state)
    [ "$state" = running ] || break
    sleep 0.2
done
"$BUILD/runcell" status 2>/dev/null | sed 's/^/    runcell status: /' || true

say "what the agent asked for and what the container answered"
api GET "/v1/sessions/$SID/events?limit=1000" | jq -r '
    .data[] |
    if .type == "agent.tool_use" or .type == "agent.custom_tool_use" then
        "  -> \(.name) \(.input | tojson)"
    elif .type == "user.tool_result" or .type == "user.custom_tool_result" then
        "  <- \(if .is_error then "error: " else "" end)\([.content[]? | select(.type == "text") | .text] | join("") | gsub("\n"; "\n     "))"
    elif .type == "agent.message" then
        "  agent: \([.content[]? | .text // empty] | join(""))"
    else empty end'

say "verdict: $state"
api GET "/_emulator/v1/sessions/$SID/verdict" | jq -r '.steps[] | select(.passed | not) | "    step \(.turn).\(.step): \(.detail)"'
left=""
for _ in $(seq 100); do
    left=$(find "$D/run/sessions" "$D/state/bundles" -mindepth 1 -maxdepth 1 2>/dev/null)
    [ -z "$left" ] && break
    sleep 0.3
done
if [ -n "$left" ]; then echo "    left behind: $left"; else echo "    container, netns and bundle removed; work item stopped"; fi
if grep -rqs 'sk-ant-' "$D/launcher.log" "$D/fcgi.log" "$D/state/sessions"; then
    echo "    WARNING: a credential was found in a log"; state=failed
else
    echo "    no credential in any log of the launcher, the shim, the broker or runcell-fcgi"
fi
[ "$state" = passed ]
