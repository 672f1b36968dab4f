#!/usr/bin/env bash
# scripts/test-e2e.sh - step 4 of the adoption path (docs/DEPLOYMENT.md): one end-to-end session
# with a harmless job, through whatever serves the environment (the local stack of
# scripts/stack.sh, or your deployed webhook). Creates an agent (scripts/create-agent.sh), then a
# session in ANTHROPIC_ENVIRONMENT_ID, waits for the tool results and `end_turn`, prints a
# transcript (each tool call: tool, input, result, time to the result) and exits non-zero on any
# failure.
#
# Usage: scripts/test-e2e.sh [--scenario NAME|FILE | --message TEXT] [--tools MANIFEST|none]
#            [--no-toolset] [--timeout SECONDS] [--env-file FILE] [--json FILE] [--quiet]
#
#   Against the emulator (ANTHROPIC_BASE_URL on loopback), by default the session plays the
#   scenario examples/demo-scenario.json (bash, the file tools, the custom tool run_tests):
#   --scenario FILE is uploaded first (POST /_emulator/v1/scenarios); --scenario NAME names one
#   the emulator already loaded (scripts/stack.sh loads tests/scenarios/). The emulator's verdict
#   must be "passed".
#   Against the real API (any other ANTHROPIC_BASE_URL), with --message, or with --scenario none
#   (the emulator's default agent, which runs "run <command>" messages): the session gets one
#   user message asking for a harmless command (`echo runcell-e2e-<random>`); it passes when a tool
#   call returns that text without error and the session then goes idle with end_turn.
#   --tools FILE     the agent's custom tools (default $RUNCELL_STACK_DIR/tools.json when the
#                    stack is up, else examples/tools-manifest.json): the manifest your snapshot
#                    was built with. --no-toolset: no built-in toolset.
#   --timeout S      give up after S seconds (default 120)
#   --env-file FILE  source FILE first (the lines of `scripts/stack.sh up`); by default, when
#                    ANTHROPIC_API_KEY is unset, $RUNCELL_STACK_DIR/env or build/stack-run/env
#   --json FILE      also write {"session_id","agent_id","scenario","result","tool_calls",
#                    "tool_errors","seconds","tools":[names in call order]} there (`make demo`)
#   --quiet          the result line only, no transcript
#
# Environment: ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY (never printed, never on a command line),
# ANTHROPIC_ENVIRONMENT_ID (required), ANTHROPIC_BETA.
# Exit status: 0 passed, 1 failed (or timed out), 2 usage. Needs: curl, jq.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
prog=test-e2e
scenario="" message="" tools="" toolset=1 timeout=120 env_file="" json_out="" quiet=0

die() { echo "$prog: $*" >&2; exit 1; }
usage_die() { echo "$prog: $* (see --help)" >&2; exit 2; }
say() { [ "$quiet" = 1 ] || echo "$prog: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --scenario) scenario=${2:?--scenario needs a name or a file}; shift 2 ;;
    --message) message=${2:?--message needs a text}; shift 2 ;;
    --tools) tools=${2:?--tools needs a file or none}; shift 2 ;;
    --no-toolset) toolset=0; shift ;;
    --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
    --env-file) env_file=${2:?--env-file needs a file}; shift 2 ;;
    --json) json_out=${2:?--json needs a file}; shift 2 ;;
    --quiet) quiet=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage_die "unknown argument: $1" ;;
    esac
done
[[ $timeout =~ ^[1-9][0-9]*$ ]] || usage_die "--timeout must be a number of seconds"
[ -z "$scenario" ] || [ -z "$message" ] || usage_die "--scenario and --message exclude each other"
for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done

# ---- configuration -----------------------------------------------------------------------------

if [ -z "$env_file" ] && [ -z "${ANTHROPIC_API_KEY:-}" ]; then
    for f in "${RUNCELL_STACK_DIR:-}/env" "$top/build/stack-run/env"; do
        if [ -r "$f" ]; then env_file=$f; break; fi
    done
fi
if [ -n "$env_file" ]; then
    [ -r "$env_file" ] || usage_die "--env-file $env_file is not readable"
    grep -vqE '^(export [A-Z_]+=.*|#.*|)$' "$env_file" && usage_die "$env_file has lines other than export NAME=VALUE"
    # shellcheck disable=SC1090 # the lines of scripts/stack.sh up
    . "$env_file"
fi
[ -n "${ANTHROPIC_API_KEY:-}" ] || usage_die "ANTHROPIC_API_KEY is not set (eval \"\$(scripts/stack.sh up)\" first?)"
[ -n "${ANTHROPIC_ENVIRONMENT_ID:-}" ] || usage_die "ANTHROPIC_ENVIRONMENT_ID is not set"
base=${ANTHROPIC_BASE_URL:-http://127.0.0.1:8787}
base=${base%/}
beta=${ANTHROPIC_BETA:-managed-agents-2026-04-01}
export ANTHROPIC_BASE_URL=$base ANTHROPIC_API_KEY

is_loopback() {
    case "$base" in
    http://localhost[:/]* | http://localhost | http://127.* | http://\[::1\]*) return 0 ;;
    *) return 1 ;;
    esac
}
if [ -z "$tools" ]; then
    if [ -n "${RUNCELL_STACK_DIR:-}" ] && [ -f "$RUNCELL_STACK_DIR/tools.json" ]; then
        tools=$RUNCELL_STACK_DIR/tools.json
    else
        tools=$top/examples/tools-manifest.json
    fi
fi
mode=message
if [ "$scenario" = none ]; then
    scenario=""
elif [ -z "$message" ] && is_loopback; then
    mode=scenario
    [ -n "$scenario" ] || scenario=$top/examples/demo-scenario.json
fi
[ "$mode" = scenario ] || [ -z "$scenario" ] || usage_die "--scenario needs the emulator (a loopback ANTHROPIC_BASE_URL)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# api METHOD PATH [BODY-FILE]: see create-environment.sh (the key goes to curl through a pipe).
api() {
    local args=(-sS -m 30 -o "$tmp/body" -w '%{http_code}' -X "$1"
        -H "anthropic-version: 2023-06-01" -H "anthropic-beta: $beta")
    [ -n "${3:-}" ] && args+=(-H "content-type: application/json" --data-binary "@$3")
    ST=$(curl "${args[@]}" -H @<(printf 'x-api-key: %s\n' "$ANTHROPIC_API_KEY") "$base$2" \
        2>"$tmp/curl.err") || ST=000
}
api_ok() { # api_ok WHAT METHOD PATH [BODY-FILE]: the call, or die with the API's message
    local what=$1
    shift
    api "$@"
    case "$ST" in 2??) return 0 ;; esac
    if [ "$ST" = 000 ]; then
        die "$what: cannot reach $base: $(head -c 300 "$tmp/curl.err")"
    fi
    die "$what: HTTP $ST: $(jq -r '.error.message // empty' "$tmp/body" 2>/dev/null | head -c 300)"
}

# ---- agent and session -------------------------------------------------------------------------

t0=$(date +%s.%N)
if [ "$mode" = scenario ] && [ -f "$scenario" ]; then
    api_ok "loading scenario $scenario" POST /_emulator/v1/scenarios "$scenario"
    scenario=$(jq -r .name "$tmp/body")
fi

agent_args=(--tools "$tools" --name "runcell e2e test")
[ "$toolset" = 1 ] || agent_args+=(--no-toolset)
"$here/create-agent.sh" "${agent_args[@]}" >"$tmp/agent.env" 2>"$tmp/agent.err" ||
    die "create-agent.sh failed: $(tail -n 3 "$tmp/agent.err")"
agent=$(sed -n 's/^export ANTHROPIC_AGENT_ID=//p' "$tmp/agent.env")
[ -n "$agent" ] || die "create-agent.sh printed no agent id"

jq -n --arg a "$agent" --arg e "$ANTHROPIC_ENVIRONMENT_ID" --arg s "$scenario" '
    {agent: $a, environment_id: $e,
     metadata: ({purpose: "runcell end-to-end test"} + (if $s != "" then {scenario: $s} else {} end))}' \
    >"$tmp/session.req"
api_ok "POST /v1/sessions" POST /v1/sessions "$tmp/session.req"
sid=$(jq -r '.id // empty' "$tmp/body")
[[ $sid =~ ^sesn_[A-Za-z0-9]+$ ]] || die "POST /v1/sessions: the answer has no valid id"
if [ "$mode" = scenario ]; then
    say "agent $agent, session $sid in $ANTHROPIC_ENVIRONMENT_ID (scenario \"$scenario\")"
else
    token=runcell-e2e-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    if [ -z "$message" ]; then
        if is_loopback; then
            message="run echo $token" # the emulator's default agent: "run <command>"
        else
            message="Please run this harmless shell command with your bash tool and tell me its output: echo $token"
        fi
    fi
    case "$message" in *"$token"*) ;; *) token="" ;; esac # a custom message: any successful tool call
    jq -n --arg m "$message" '{events: [{type: "user.message", content: [{type: "text", text: $m}]}]}' \
        >"$tmp/msg.req"
    api_ok "POST /v1/sessions/$sid/events" POST "/v1/sessions/$sid/events" "$tmp/msg.req"
    say "agent $agent, session $sid in $ANTHROPIC_ENVIRONMENT_ID (message: $message)"
fi

# ---- wait --------------------------------------------------------------------------------------

# The events so far, in order, in $tmp/events (a JSON array).
fetch_events() {
    api GET "/v1/sessions/$sid/events?limit=1000&order=asc"
    case "$ST" in 2??) jq '.data' "$tmp/body" >"$tmp/events" ;; *) return 1 ;; esac
}
# The session is done when its last event is an idle with a stop reason other than
# requires_action (end_turn, or a failure), or it terminated.
last_stop() {
    jq -r '[.[] | select(.type == "session.status_idle" or .type == "session.status_terminated"
              or .type == "session.deleted")] | last |
           if . == null then "" elif .type == "session.status_idle" then .stop_reason.type
           else .type end' "$tmp/events"
}
# Message mode: did a tool call return the token (or anything, for a custom message) without error?
tool_ok() {
    jq -e --arg t "$token" '[.[] | select((.type == "user.tool_result" or .type == "user.custom_tool_result")
        and (.is_error | not) and ([.content[]? | select(.type == "text") | .text] | join("") | contains($t)))]
        | length > 0' "$tmp/events" >/dev/null
}

result="" verdict="" deadline=$((SECONDS + timeout))
while :; do
    fetch_events || true
    stop=""
    if [ -f "$tmp/events" ]; then stop=$(last_stop || true); fi
    if [ "$mode" = scenario ]; then
        api GET "/_emulator/v1/sessions/$sid/verdict"
        verdict=$(jq -r '.state // empty' "$tmp/body" 2>/dev/null || true)
        if [ "$verdict" = failed ]; then result=failed; break; fi
        if [ "$verdict" = passed ]; then
            case "$stop" in
            end_turn) result=passed; break ;;
            requires_action | "") ;;
            *) result=failed; break ;;
            esac
        fi
    else
        case "$stop" in
        end_turn) if tool_ok; then result=passed; else result=failed; fi; break ;;
        requires_action | "") ;;
        *) result=failed; break ;;
        esac
    fi
    if [ $SECONDS -ge $deadline ]; then result=timeout; break; fi
    sleep 0.3
done
fetch_events || true
[ -f "$tmp/events" ] || echo '[]' >"$tmp/events"
seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')

# ---- transcript --------------------------------------------------------------------------------

# One block per tool call (tool, input, result, time from the call to its result), the user's and
# the agent's messages, and the end of each turn; times relative to the first event.
transcript() {
    jq -r '
      def ts: (capture("^(?<s>[0-9T:-]+)(\\.(?<f>[0-9]+))?") // {s: "1970-01-01T00:00:00"}) as $m
              | ($m.s + "Z" | fromdateiso8601) + (("0." + ($m.f // "0")) | tonumber);
      def short($n): if length > $n then .[0:$n] + "..." else . end;
      def text: [.content[]? | select(.type == "text") | .text] | join("");
      def indent: gsub("\n+$"; "") | gsub("\n"; "\n           ");
      (map(select(.processed_at != null) | .processed_at | ts) | min // 0) as $t0
      | (map(select(.type == "user.tool_result" or .type == "user.custom_tool_result")
             | {key: (.tool_use_id // .custom_tool_use_id), value: .}) | from_entries) as $res
      | .[]
      | (if .processed_at then ((.processed_at | ts) - $t0) else 0 end) as $t
      | ($t * 10 | floor) as $d | ("  +\($d / 10 | floor).\($d % 10)s") as $at
      | if .type == "agent.tool_use" or .type == "agent.custom_tool_use" then
            ($res[.id]) as $r
            | "\($at)  \(if .type == "agent.custom_tool_use" then "custom tool" else "tool" end) \(.name)\n"
            + "           input:  \(.input | tojson | short(300))\n"
            + (if $r == null then "           result: (none)"
               else "           result\(if $r.is_error then " (error)" else "" end), after \((($r.processed_at | ts) - (.processed_at | ts)) * 1000 | floor) ms:\n"
                    + "           \($r | text | short(600) | indent)" end)
        elif .type == "user.message" then "\($at)  user: \(text | short(300) | indent)"
        elif .type == "agent.message" then "\($at)  agent: \(text | short(300) | indent)"
        elif .type == "session.status_idle" and .stop_reason.type != "requires_action" then
            "\($at)  idle: \(.stop_reason.type)"
        elif .type == "session.status_terminated" then "\($at)  terminated"
        else empty end' "$tmp/events"
}
counts=$(jq -r '[([.[] | select(.type == "agent.tool_use" or .type == "agent.custom_tool_use")] | length),
                 ([.[] | select((.type == "user.tool_result" or .type == "user.custom_tool_result") and .is_error)] | length)]
                | "\(.[0]) \(.[1])"' "$tmp/events")
calls=${counts% *} errors=${counts#* }

if [ "$quiet" = 0 ]; then
    echo "transcript of $sid:"
    transcript
    if [ "$mode" = scenario ] && [ "$result" != passed ]; then
        api GET "/_emulator/v1/sessions/$sid/verdict"
        jq -r '.steps[]? | select(.passed | not) | "  failed step \(.turn).\(.step): \(.detail)"' "$tmp/body" 2>/dev/null || true
    fi
fi
if [ -n "$json_out" ]; then
    jq -n --arg s "$sid" --arg a "$agent" --arg r "$result" --argjson c "$calls" --argjson e "$errors" \
        --argjson t "$seconds" --arg sc "$scenario" \
        --slurpfile ev "$tmp/events" \
        '{session_id: $s, agent_id: $a, scenario: $sc, result: $r, tool_calls: $c, tool_errors: $e, seconds: $t,
          tools: [$ev[0][] | select(.type == "agent.tool_use" or .type == "agent.custom_tool_use") | .name]}' >"$json_out"
fi
case "$result" in
passed) echo "$prog: PASSED: $sid, $calls tool calls ($errors returned an error), end_turn, ${seconds} s" ;;
timeout) echo "$prog: FAILED: $sid did not finish within $timeout s (last stop: ${stop:-none}${verdict:+, verdict $verdict})"; exit 1 ;;
*)
    if [ "$verdict" = failed ]; then
        echo "$prog: FAILED: $sid: the emulator's verdict is \"failed\" (a step above did not get what it expected)"
    else
        echo "$prog: FAILED: $sid ended with ${stop:-nothing}$( [ "$mode" = message ] && [ "$stop" = end_turn ] && echo ", but no tool call returned ${token:-a result} without error")"
    fi
    exit 1
    ;;
esac
