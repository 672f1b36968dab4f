#!/usr/bin/env bash
# scripts/demo.sh - `make demo`: the main job end to end on one machine, no account needed.
#
#   1. scripts/stack.sh up: runcell-emulator (the local Managed Agents API, an environment and its
#      key), an unprivileged nginx on loopback, runcell-fcgi (as nobody), runcell-launcher (root),
#      the minimal snapshot (built when missing).
#   2. scripts/test-e2e.sh: an agent and a session playing examples/demo-scenario.json (bash, the
#      file tools and the custom tool run_tests). The emulator delivers a signed webhook to nginx;
#      runcell-fcgi verifies it, claims the work item and hands it to the launcher, whose shim
#      starts a locked-down runc container; runcell-runner inside executes the tool calls through
#      the broker. The transcript shows each call, its input, its result and how long it took.
#   3. A one-screen summary: tool calls, verdict, times, and the checks that the container, its
#      netns and bundle are gone, the work item is stopped and no credential reached a log.
#   4. scripts/stack.sh down, also when interrupted (Ctrl-C) or when a step fails; then a check
#      that no process, mount or directory of the stack is left.
#
# Everything lives under $BUILD/demo (RUNCELL_STACK_DIR) and is removed at the end, also when
# interrupted (DEMO_KEEP=1, or a failed session, keeps the logs but not the keys; the next run
# removes them). Needs root (containers, network namespaces). Exit status 0 when the session
# passed and nothing was left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
case "$BUILD" in /*) RUNCELL_STACK_DIR=${RUNCELL_STACK_DIR:-$BUILD/demo} ;; *) RUNCELL_STACK_DIR=${RUNCELL_STACK_DIR:-$(pwd)/$BUILD/demo} ;; esac
export RUNCELL_STACK_DIR
D=$RUNCELL_STACK_DIR
SCENARIO=${DEMO_SCENARIO:-examples/demo-scenario.json}

bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
say() { bold "==> $*"; }
die() { printf 'make demo: %s\n' "$*" >&2; exit 1; }
indent() { sed 's/^/    /'; }

T0=$SECONDS
STOPPED=0 RESULT=failed INTERRUPTED=0
tmp=""
# The stack is stopped whatever happens: normal end, a failed step, Ctrl-C or SIGTERM.
stop_stack() {
    [ "$STOPPED" = 1 ] && return 0
    STOPPED=1
    say "stopping the stack (scripts/stack.sh down)"
    # A failed demo keeps the logs (never the keys) for a look; the next run removes them.
    if [ -n "${DEMO_KEEP:-}" ] || { [ "$RESULT" != passed ] && [ "$INTERRUPTED" = 0 ]; }; then
        scripts/stack.sh down --keep 2>&1 | indent || true
    else
        scripts/stack.sh down 2>&1 | indent || true
    fi
}
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    stop_stack
    [ -z "$tmp" ] || rm -rf "$tmp"
    exit "$rc"
}
on_signal() {
    echo
    say "interrupted"
    INTERRUPTED=1
    exit 130
}

[ "$(id -u)" = 0 ] || die "needs root (it starts runc containers and network namespaces): sudo make demo"
for t in nginx runc curl jq setpriv python3; do
    command -v "$t" >/dev/null || die "$t not installed (scripts/install-deps.sh)"
done
tmp=$(mktemp -d)
trap on_exit EXIT
trap on_signal INT TERM

# ---- 1. the stack ------------------------------------------------------------------------------

say "starting the local stack on loopback (scripts/stack.sh up)"
t=$SECONDS
scripts/stack.sh up 2> >(sed -u 's/^stack.sh: /    /' >&2) >"$tmp/env"
wait # the progress filter
# shellcheck disable=SC1091 # the lines stack.sh printed
. "$tmp/env"
T_UP=$((SECONDS - t))
echo "    API $ANTHROPIC_BASE_URL, environment $ANTHROPIC_ENVIRONMENT_ID"
echo "    webhook endpoint $RUNCELL_WEBHOOK_URL (nginx -> runcell-fcgi -> runcell-launcher)"

# ---- 2. the session ----------------------------------------------------------------------------

say "running scripts/test-e2e.sh: a session playing $(jq -r .name "$SCENARIO") ($SCENARIO)"
rc=0
scripts/test-e2e.sh --scenario "$SCENARIO" --json "$tmp/e2e.json" 2> >(sed -u 's/^test-e2e: /    /' >&2) || rc=$?
wait
[ -f "$tmp/e2e.json" ] || die "test-e2e.sh failed before creating a session"
SID=$(jq -r .session_id "$tmp/e2e.json")
[ $rc = 0 ] && RESULT=passed

# ---- 3. nothing left behind, no credential in a log --------------------------------------------

say "checking what the session left behind"
# The runner leaves 2 s after end_turn (RUNCELL_MAX_IDLE_MS); the shim then stops the work item,
# removes the container, its netns and bundle.
left=""
for _ in $(seq 60); do
    left=$(find "$D/run/sessions" "$D/state/bundles" "$D/run/netns" -mindepth 1 -maxdepth 1 2>/dev/null || true)
    if [ -d "$D/state/runc" ]; then left+=$(runc --root "$D/state/runc" list -q 2>/dev/null || true); fi
    [ -z "$left" ] && break
    sleep 0.25
done
CLEAN="container, netns and bundle removed"
if [ -n "$left" ]; then CLEAN="LEFT BEHIND: $(echo "$left" | tr '\n' ' ')"; RESULT=failed; fi
(umask 077 && printf 'x-api-key: %s\n' "$ANTHROPIC_API_KEY" >"$tmp/api.hdr") # never argv
WORK=$(curl -sS -m 10 -H "@$tmp/api.hdr" -H 'anthropic-beta: managed-agents-2026-04-01' \
    -H 'anthropic-version: 2023-06-01' "$ANTHROPIC_BASE_URL/v1/environments/$ANTHROPIC_ENVIRONMENT_ID/work?limit=100" |
    jq -r --arg s "$SID" '[.data[] | select(.data.id == $s) | .state] | group_by(.) | map("\(.[0]) x\(length)") | join(", ")' || echo "?")
case "$WORK" in stopped*) ;; *) RESULT=failed ;; esac
SECRETS="no credential in the logs of the emulator, nginx, runcell-fcgi, the launcher, shims and broker"
if grep -rqsE 'sk-ant-|whsec_' \
    "$D"/*.log "$D/state/sessions" 2>/dev/null; then
    SECRETS="A CREDENTIAL WAS FOUND IN A LOG"
    RESULT=failed
fi
STATUS=$(env -i PATH="$PATH" "$BUILD/runcell" --env-file "$D/launcher.env" status 2>/dev/null | paste -sd' ' || true)

# ---- summary, then stop ------------------------------------------------------------------------

stop_stack
GONE="stack stopped, $D removed"
if [ -n "${DEMO_KEEP:-}" ] || [ "$RESULT" != passed ]; then GONE="stack stopped, logs kept in $D"; elif [ -e "$D" ]; then GONE="$D STILL EXISTS"; RESULT=failed; fi
if grep -q " $D/" /proc/self/mountinfo; then GONE="MOUNTS LEFT under $D"; RESULT=failed; fi

say "summary"
jq -r --arg up "$T_UP" --arg total "$((SECONDS - T0))" --arg clean "$CLEAN" --arg work "$WORK" \
    --arg secrets "$SECRETS" --arg status "$STATUS" --arg gone "$GONE" --arg res "$RESULT" '
    "    session     \(.session_id) (agent \(.agent_id), scenario \(.scenario))",
    "    tool calls  \(.tool_calls), \(.tool_errors) answered with an error: " +
        (.tools | group_by(.) | map(if length > 1 then "\(.[0]) x\(length)" else .[0] end) | join(", ")),
    "    verdict     \(.result)" + (if .result == "passed" then " (every step as expected, then end_turn)" else "" end),
    "    time        stack up \($up) s, session \(.seconds) s, demo \($total) s in all",
    "    launcher    \($status)",
    "    cleanup     \($clean); work item \($work)",
    "    secrets     \($secrets)",
    "    afterwards  \($gone)",
    "",
    "    DEMO \($res | ascii_upcase)"' "$tmp/e2e.json"
[ "$RESULT" = passed ]
