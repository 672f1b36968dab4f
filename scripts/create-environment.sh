#!/usr/bin/env bash
# scripts/create-environment.sh - step 1 of the adoption path (docs/DEPLOYMENT.md): creates a
# self-hosted Managed Agents environment and prints the variables for the env file.
#
# Usage: scripts/create-environment.sh [--name NAME] [--mint-key auto|yes|no]
#
#   --name NAME      the environment's name (default "runcell")
#   --mint-key MODE  also create the environment key through the emulator's
#                    POST /_emulator/v1/environments/{id}/keys (the real API has no such call:
#                    the key is created in the Console). auto (default): only when
#                    ANTHROPIC_BASE_URL points at this machine (localhost, 127.x, ::1).
#
# Environment:
#   ANTHROPIC_BASE_URL  API base URL; default http://127.0.0.1:8787 (runcell-emulator's default
#                       address; `eval "$(scripts/stack.sh up)"` sets it for the local stack)
#   ANTHROPIC_API_KEY   the organisation API key (required); never printed, never on a command
#                       line (curl reads it from a pipe)
#   ANTHROPIC_BETA      beta header value (default managed-agents-2026-04-01)
#
# Output: on stdout, lines for `eval` or for /etc/runcell/runcell.env:
#   export ANTHROPIC_ENVIRONMENT_ID=env_...
#   export ANTHROPIC_ENVIRONMENT_KEY=...      (only when the key was minted: the emulator)
# Progress and next steps go to stderr. Exit status: 0 ok, 1 API failure, 2 usage.
# Needs: curl, jq.
set -euo pipefail

name=runcell mint=auto
prog=create-environment

die() { echo "$prog: $*" >&2; exit 1; }
usage_die() { echo "$prog: $* (see --help)" >&2; exit 2; }
say() { echo "$prog: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --mint-key) mint=${2:?--mint-key needs auto, yes or no}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage_die "unknown argument: $1" ;;
    esac
done
case "$mint" in auto | yes | no) ;; *) usage_die "--mint-key must be auto, yes or no" ;; esac
for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install $tool)"
done
[ -n "${ANTHROPIC_API_KEY:-}" ] || usage_die "ANTHROPIC_API_KEY is not set"
if [ -z "${ANTHROPIC_BASE_URL:-}" ]; then
    ANTHROPIC_BASE_URL=http://127.0.0.1:8787
    say "ANTHROPIC_BASE_URL is not set: using $ANTHROPIC_BASE_URL (the emulator's default address)"
fi
base=${ANTHROPIC_BASE_URL%/}
beta=${ANTHROPIC_BETA:-managed-agents-2026-04-01}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# api METHOD PATH [BODY-FILE]: one request; the status in ST, the answer in $tmp/body. The API
# key reaches curl through a pipe (printf is a shell builtin), never through argv.
api() {
    local args=(-sS -m 30 -o "$tmp/body" -w '%{http_code}' -X "$1"
        -H "anthropic-version: 2023-06-01" -H "anthropic-beta: $beta")
    [ -n "${3:-}" ] && args+=(-H "content-type: application/json" --data-binary "@$3")
    ST=$(curl "${args[@]}" -H @<(printf 'x-api-key: %s\n' "$ANTHROPIC_API_KEY") "$base$2" \
        2>"$tmp/curl.err") || ST=000
}
# api_error WHAT: a one-line description of the failed call (the API's message, never a key).
api_error() {
    if [ "$ST" = 000 ]; then
        echo "$1: cannot reach $base: $(head -c 300 "$tmp/curl.err")"
    else
        echo "$1: HTTP $ST: $(jq -r '.error.message // empty' "$tmp/body" 2>/dev/null | head -c 300)"
    fi
}
is_loopback() {
    case "$base" in
    http://localhost[:/]* | http://localhost | http://127.* | http://\[::1\]*) return 0 ;;
    https://localhost[:/]* | https://localhost | https://127.* | https://\[::1\]*) return 0 ;;
    *) return 1 ;;
    esac
}

jq -n --arg name "$name" '{name: $name, config: {type: "self_hosted"}}' >"$tmp/req"
api POST /v1/environments "$tmp/req"
case "$ST" in 2??) ;; *) die "$(api_error "POST /v1/environments")" ;; esac
env_id=$(jq -r '.id // empty' "$tmp/body")
[[ $env_id =~ ^env_[A-Za-z0-9]+$ ]] || die "POST /v1/environments: the answer has no valid id"
say "created environment $env_id (\"$name\", self_hosted) at $base"
echo "export ANTHROPIC_ENVIRONMENT_ID=$env_id"

if [ "$mint" = yes ] || { [ "$mint" = auto ] && is_loopback; }; then
    api POST "/_emulator/v1/environments/$env_id/keys"
    case "$ST" in
    2??)
        key=$(jq -r '.key // empty' "$tmp/body")
        [ -n "$key" ] || die "the emulator's key answer has no key"
        echo "export ANTHROPIC_ENVIRONMENT_KEY=$key"
        say "minted its environment key through the emulator"
        ;;
    404) [ "$mint" = yes ] && die "$(api_error "POST /_emulator/v1/environments/$env_id/keys") (not the emulator?)"
        mint=no ;;
    *) die "$(api_error "POST /_emulator/v1/environments/$env_id/keys")" ;;
    esac
else
    mint=no
fi

if [ "$mint" = no ]; then
    say "next: create the environment key for $env_id in the Console and put it in"
    say "      /etc/runcell/runcell.env as ANTHROPIC_ENVIRONMENT_KEY (never on a command line)"
fi
say "next: scripts/create-agent.sh (the agent's tools come from the tools manifest)"
