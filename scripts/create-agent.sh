#!/usr/bin/env bash
# scripts/create-agent.sh - step 2 of the adoption path (docs/DEPLOYMENT.md): creates an agent
# whose tools are the built-in toolset plus the custom tools of the tools manifest, so the
# schemas the agent sees and the implementations the runner executes come from one file and
# cannot drift apart (docs/CUSTOM_TOOLS.md).
#
# Usage: scripts/create-agent.sh [--tools MANIFEST|none] [--no-toolset] [--name NAME]
#            [--model MODEL] [--system TEXT | --system-file FILE] [--description TEXT]
#            [--dry-run]
#
#   --tools FILE     the custom tools manifest (default: examples/tools-manifest.json next to
#                    this script). Build the snapshot from the SAME file
#                    (scripts/build-snapshot.sh --tools FILE). "none": no custom tools.
#   --no-toolset     leave out the built-in toolset (agent_toolset_20260401: bash, read, write,
#                    edit, glob, grep, web_fetch, web_search); default: included
#   --name NAME      default "runcell agent"
#   --model MODEL    default claude-sonnet-4-6
#   --system TEXT, --system-file FILE   the system prompt (default: a short one, below)
#   --description TEXT
#   --dry-run        print the request body (the agent definition) on stdout and stop
#
# Each custom tool is {"type":"custom", name, description, input_schema} of its manifest entry
# (what rc_custom_tools_agent_json() produces for manifests whose tools declare input_schema;
# a tool without one is refused here: write its schema into the manifest). The manifest's
# SHA-256 is recorded in the agent's metadata (runcell_tools_manifest_sha256), next to the one
# build-snapshot.sh records in the snapshot's manifest, so a reviewer can check both came from the
# same file. After creating the agent, its tools are read back (GET /v1/agents/{id}) and compared.
#
# Environment: ANTHROPIC_BASE_URL (default http://127.0.0.1:8787, the emulator), ANTHROPIC_API_KEY
# (required; never printed, never on a command line), ANTHROPIC_BETA (default
# managed-agents-2026-04-01).
#
# Output: on stdout  export ANTHROPIC_AGENT_ID=agent_...  (for eval, or your session-creating
# code); the tool list and next steps on stderr. Exit status: 0 ok, 1 failure, 2 usage.
# Needs: curl, jq, sha256sum.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
prog=create-agent
manifest=$(cd "$here/.." && pwd)/examples/tools-manifest.json
toolset=1 name="runcell agent" model=claude-sonnet-4-6 description="" dry_run=0
system="You are a coding assistant working in a Linux container through the tools you have. \
Run commands to find things out rather than guessing, and show the relevant output."

die() { echo "$prog: $*" >&2; exit 1; }
usage_die() { echo "$prog: $* (see --help)" >&2; exit 2; }
say() { echo "$prog: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --tools) manifest=${2:?--tools needs a file or none}; shift 2 ;;
    --no-toolset) toolset=0; shift ;;
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --model) model=${2:?--model needs a value}; shift 2 ;;
    --system) system=${2:?--system needs a value}; shift 2 ;;
    --system-file)
        [ -f "${2:?--system-file needs a file}" ] || usage_die "--system-file: $2 not found"
        system=$(cat -- "$2"); shift 2 ;;
    --description) description=${2:?--description needs a value}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage_die "unknown argument: $1" ;;
    esac
done
for tool in curl jq sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- the tool list -----------------------------------------------------------------------------

if [ "$manifest" = none ]; then
    echo '[]' >"$tmp/custom"
    digest=""
else
    [ -f "$manifest" ] || usage_die "tools manifest $manifest not found"
    jq -e 'type == "object" and (.tools | type == "array")' "$manifest" >/dev/null 2>&1 ||
        die "$manifest: not a tools manifest (a JSON object with a \"tools\" array)"
    missing=$(jq -r '[.tools[] | select((.input_schema | type) != "object") | .name // "?"] | join(", ")' "$manifest")
    [ -z "$missing" ] || die "$manifest: no input_schema for: $missing (declare one in the manifest; docs/CUSTOM_TOOLS.md)"
    bad=$(jq -r '[.tools[] | select((.name | type) != "string" or (.name | test("^[A-Za-z0-9_-]{1,128}$") | not) or (.description | type) != "string") | .name // "?"] | join(", ")' "$manifest")
    [ -z "$bad" ] || die "$manifest: tools with a bad name or no description: $bad"
    jq '[.tools[] | {type: "custom", name, description, input_schema}]' "$manifest" >"$tmp/custom"
    digest=$(sha256sum <"$manifest" | cut -d' ' -f1)
fi
jq --argjson toolset "$toolset" \
    'if $toolset == 1 then [{type: "agent_toolset_20260401"}] + . else . end' "$tmp/custom" >"$tmp/tools"
[ "$(jq length "$tmp/tools")" -gt 0 ] || usage_die "no tools at all (--no-toolset with --tools none)"

jq -n --arg name "$name" --arg model "$model" --arg system "$system" --arg desc "$description" \
    --arg digest "$digest" --slurpfile tools "$tmp/tools" '
    {name: $name, model: $model, system: $system, tools: $tools[0]}
    + (if $desc != "" then {description: $desc} else {} end)
    + (if $digest != "" then {metadata: {runcell_tools_manifest_sha256: $digest}} else {} end)' >"$tmp/req"

if [ "$dry_run" = 1 ]; then
    cat "$tmp/req"
    exit 0
fi

# ---- the API -----------------------------------------------------------------------------------

[ -n "${ANTHROPIC_API_KEY:-}" ] || usage_die "ANTHROPIC_API_KEY is not set"
if [ -z "${ANTHROPIC_BASE_URL:-}" ]; then
    ANTHROPIC_BASE_URL=http://127.0.0.1:8787
    say "ANTHROPIC_BASE_URL is not set: using $ANTHROPIC_BASE_URL (the emulator's default address)"
fi
base=${ANTHROPIC_BASE_URL%/}
beta=${ANTHROPIC_BETA:-managed-agents-2026-04-01}

# api METHOD PATH [BODY-FILE]: see create-environment.sh (the key goes to curl through a pipe).
api() {
    local args=(-sS -m 30 -o "$tmp/body" -w '%{http_code}' -X "$1"
        -H "anthropic-version: 2023-06-01" -H "anthropic-beta: $beta")
    [ -n "${3:-}" ] && args+=(-H "content-type: application/json" --data-binary "@$3")
    ST=$(curl "${args[@]}" -H @<(printf 'x-api-key: %s\n' "$ANTHROPIC_API_KEY") "$base$2" \
        2>"$tmp/curl.err") || ST=000
}
api_error() {
    if [ "$ST" = 000 ]; then
        echo "$1: cannot reach $base: $(head -c 300 "$tmp/curl.err")"
    else
        echo "$1: HTTP $ST: $(jq -r '.error.message // empty' "$tmp/body" 2>/dev/null | head -c 300)"
    fi
}

api POST /v1/agents "$tmp/req"
case "$ST" in 2??) ;; *) die "$(api_error "POST /v1/agents")" ;; esac
agent_id=$(jq -r '.id // empty' "$tmp/body")
[[ $agent_id =~ ^agent_[A-Za-z0-9]+$ ]] || die "POST /v1/agents: the answer has no valid id"

# Read it back: every tool sent must be on the agent as the API stores it.
api GET "/v1/agents/$agent_id"
case "$ST" in 2??) ;; *) die "$(api_error "GET /v1/agents/$agent_id")" ;; esac
sent=$(jq -r '[.[] | if .type == "custom" then .name else .type end] | sort | join(" ")' "$tmp/tools")
got=$(jq -r '[.tools[] | if .type == "custom" then .name else .type end] | sort | join(" ")' "$tmp/body")
[ "$sent" = "$got" ] || die "agent $agent_id has tools [$got], expected [$sent]"

say "created agent $agent_id (\"$name\", $model, version $(jq -r '.version // "?"' "$tmp/body"))"
if [ "$toolset" = 1 ]; then say "  built-in toolset: agent_toolset_20260401"; fi
if [ -n "$digest" ]; then
    say "  custom tools from $manifest (sha256 $digest):"
    jq -r '.[] | "    \(.name)"' "$tmp/custom" >&2
fi
echo "export ANTHROPIC_AGENT_ID=$agent_id"
say "next: scripts/build-snapshot.sh --tools $manifest (the same manifest), then scripts/test-e2e.sh"
