#!/usr/bin/env bash
# tests/integration/deploy_scripts.sh - the setup scripts of the adoption path (issue 8) against
# the emulator, with real curl: scripts/create-environment.sh creates a self-hosted environment
# and (on loopback) mints its key through /_emulator/v1/environments/{id}/keys; its output is
# eval-able and the key works for polling. scripts/create-agent.sh builds the agent's tools from
# the tools manifest (built-in toolset + every custom tool, schemas copied exactly), records the
# manifest's digest, and GET /v1/agents/{id} shows exactly those tools. The API key is never
# printed and never on curl's command line (checked with a logging curl wrapper). Failures
# (bad key, unreachable API, manifest without schemas) exit non-zero with a message. shellcheck
# is clean on the deployment scripts.
# shellcheck disable=SC2317,SC2030,SC2031,SC2119 # functions called through check; subshell envs on purpose
# shellcheck source=tests/integration/emulator_lib.sh
. "$(dirname "$0")/emulator_lib.sh" # cd to the repo root, tests/lib.sh, em_start, api, jb, check

SCRIPTS=(scripts/create-environment.sh scripts/create-agent.sh scripts/render-nginx-test-conf.sh)
W=$(mktemp -d /tmp/rc-deploy-scripts.XXXXXX)
trap 'rm -rf "$W"; em_cleanup' EXIT

if command -v shellcheck >/dev/null 2>&1; then
    for s in "${SCRIPTS[@]}"; do
        if shellcheck "$s" >"$W/sc.out" 2>&1; then t_ok "shellcheck_${s##*/}"; else t_fail "shellcheck_${s##*/}" "$(head -n 5 "$W/sc.out")"; fi
    done
else
    t_skip shellcheck "shellcheck not installed"
fi
for s in "${SCRIPTS[@]}"; do
    check "help_${s##*/}" bash -c "'$s' --help | grep -q '^Usage: '"
done

em_start
MANIFEST=examples/tools-manifest.json

# A curl that logs its argv (one line per call) before running the real one.
mkdir -p "$W/bin"
REAL_CURL=$(command -v curl)
cat >"$W/bin/curl" <<EOF
#!/bin/sh
printf '%s\n' "\$*" >>"$W/curl-argv.log"
exec "$REAL_CURL" "\$@"
EOF
chmod 0755 "$W/bin/curl"
# run NAME SCRIPT ARGS...: the script with the emulator's URL and key; stdout in $W/NAME.out,
# stderr in $W/NAME.err, exit status in RC.
run() {
    local name=$1
    shift
    (
        export PATH="$W/bin:$PATH" ANTHROPIC_BASE_URL="$B" ANTHROPIC_API_KEY="$API_KEY"
        exec "$@"
    ) >"$W/$name.out" 2>"$W/$name.err"
    RC=$?
}
no_api_key_in() { ! grep -qF -- "$API_KEY" "$@"; }

# ---- create-environment -------------------------------------------------------------------------
run env scripts/create-environment.sh --name deploy-test
check env_exit_0 test "$RC" = 0
check env_output_is_exports bash -c "! grep -qv '^export ANTHROPIC_ENVIRONMENT_\(ID\|KEY\)=' '$W/env.out'"
ENV_ID=$(sed -n 's/^export ANTHROPIC_ENVIRONMENT_ID=//p' "$W/env.out")
ENV_KEY=$(sed -n 's/^export ANTHROPIC_ENVIRONMENT_KEY=//p' "$W/env.out")
check env_id_printed bash -c "[[ '$ENV_ID' =~ ^env_[A-Za-z0-9]+$ ]]"
check env_key_minted test -n "$ENV_KEY"
api GET "/v1/environments/$ENV_ID"
check env_exists_self_hosted bash -c "[ '$ST' = 200 ] && [ \"\$(jq -r '.config.type + \" \" + .name' '$EM_DIR/body')\" = 'self_hosted deploy-test' ]"
# The output evals, and the minted key is a working environment key (an empty queue: 204).
check env_output_evals bash -c "eval \"\$(cat '$W/env.out')\" && [ \"\$ANTHROPIC_ENVIRONMENT_ID\" = '$ENV_ID' ]"
bearer ek "$ENV_KEY"
req ek GET "/v1/environments/$ENV_ID/work/poll"
check env_key_polls test "$ST" = 204

run env_nokey scripts/create-environment.sh --mint-key no
check env_mint_no_exit_0 test "$RC" = 0
check env_mint_no_prints_id_only bash -c "[ \$(wc -l <'$W/env_nokey.out') = 1 ] && grep -q '^export ANTHROPIC_ENVIRONMENT_ID=env_' '$W/env_nokey.out'"
check env_mint_no_says_console grep -q 'Console' "$W/env_nokey.err"

# ---- create-agent --------------------------------------------------------------------------------
run agent scripts/create-agent.sh --tools "$MANIFEST" --name deploy-agent
check agent_exit_0 test "$RC" = 0
AGENT_ID=$(sed -n 's/^export ANTHROPIC_AGENT_ID=//p' "$W/agent.out")
check agent_id_printed bash -c "[[ '$AGENT_ID' =~ ^agent_[A-Za-z0-9]+$ ]] && [ \$(wc -l <'$W/agent.out') = 1 ]"
api GET "/v1/agents/$AGENT_ID"
cp "$EM_DIR/body" "$W/agent.json"
check agent_get_200 test "$ST" = 200
check agent_has_builtin_toolset bash -c "jq -e '[.tools[] | select(.type == \"agent_toolset_20260401\")] | length == 1' '$W/agent.json' >/dev/null"
# Every custom tool of the manifest, in manifest order, with its description and schema exactly.
check agent_custom_tools_match_manifest bash -c "diff \
    <(jq -S '[.tools[] | {name, description, input_schema}]' '$MANIFEST') \
    <(jq -S '[.tools[] | select(.type == \"custom\") | {name, description, input_schema}]' '$W/agent.json') >/dev/null"
check agent_tool_count test "$(jq '.tools | length' "$W/agent.json")" = "$(($(jq '.tools | length' "$MANIFEST") + 1))"
check agent_records_manifest_digest test "$(jq -r '.metadata.runcell_tools_manifest_sha256' "$W/agent.json")" = \
    "$(sha256sum <"$MANIFEST" | cut -d' ' -f1)"
check agent_name test "$(jq -r .name "$W/agent.json")" = deploy-agent
check agent_lists_tools_on_stderr bash -c "grep -q 'run_shell' '$W/agent.err' && grep -q 'show_diff' '$W/agent.err'"

run agent_custom scripts/create-agent.sh --tools "$MANIFEST" --no-toolset
A2=$(sed -n 's/^export ANTHROPIC_AGENT_ID=//p' "$W/agent_custom.out")
api GET "/v1/agents/$A2"
check agent_no_toolset bash -c "[ '$ST' = 200 ] && jq -e '[.tools[].type] | unique == [\"custom\"]' '$EM_DIR/body' >/dev/null"

run agent_builtin scripts/create-agent.sh --tools none
A3=$(sed -n 's/^export ANTHROPIC_AGENT_ID=//p' "$W/agent_builtin.out")
api GET "/v1/agents/$A3"
check agent_builtin_only bash -c "[ '$ST' = 200 ] && jq -e '[.tools[].type] == [\"agent_toolset_20260401\"] and (.metadata.runcell_tools_manifest_sha256 == null)' '$EM_DIR/body' >/dev/null"

# The agent plays: a session of it in the environment gets a work item (queued for a worker).
api POST /v1/sessions "{\"agent\":\"$AGENT_ID\",\"environment_id\":\"$ENV_ID\"}"
check agent_and_environment_make_a_session test "$ST" = 200
req ek GET "/v1/environments/$ENV_ID/work/poll"
check session_item_queued test "$ST $(jb .data.type)" = "200 session"

# --dry-run needs no API at all and prints the request body.
(unset ANTHROPIC_API_KEY ANTHROPIC_BASE_URL && scripts/create-agent.sh --dry-run --tools "$MANIFEST") >"$W/dry.out" 2>"$W/dry.err"
check dry_run_prints_body bash -c "jq -e '.tools | length == 6' '$W/dry.out' >/dev/null"

# ---- failures ------------------------------------------------------------------------------------
jq '.tools[0] |= del(.input_schema)' "$MANIFEST" >"$W/noschema.json"
run noschema scripts/create-agent.sh --tools "$W/noschema.json"
check no_schema_refused bash -c "[ '$RC' = 1 ] && grep -q 'no input_schema for: run_shell' '$W/noschema.err'"
run notfound scripts/create-agent.sh --tools "$W/nonexistent.json"
check missing_manifest_usage_error test "$RC" = 2
run nothing scripts/create-agent.sh --tools none --no-toolset
check no_tools_usage_error test "$RC" = 2
run badopt scripts/create-environment.sh --bogus
check unknown_option_usage_error test "$RC" = 2
(
    export PATH="$W/bin:$PATH" ANTHROPIC_BASE_URL="$B" ANTHROPIC_API_KEY=sk-ant-api03-not-a-real-key
    exec scripts/create-agent.sh
) >"$W/badkey.out" 2>"$W/badkey.err"
RC=$?
check bad_key_fails_with_401 bash -c "[ '$RC' = 1 ] && grep -q 'HTTP 401' '$W/badkey.err' && ! grep -q 'not-a-real-key' '$W/badkey.err' '$W/badkey.out'"
(
    export ANTHROPIC_BASE_URL=http://127.0.0.1:1 ANTHROPIC_API_KEY="$API_KEY"
    exec scripts/create-environment.sh
) >"$W/down.out" 2>"$W/down.err"
RC=$?
check unreachable_api_fails bash -c "[ '$RC' = 1 ] && grep -q 'cannot reach' '$W/down.err' && [ ! -s '$W/down.out' ]"
(unset ANTHROPIC_API_KEY && scripts/create-environment.sh) >/dev/null 2>"$W/nokey.err"
check missing_api_key_usage_error test $? = 2

# ---- the API key never shows -----------------------------------------------------------------------
check api_key_never_printed no_api_key_in "$W"/*.out "$W"/*.err
check curl_calls_logged test -s "$W/curl-argv.log"
check api_key_never_in_curl_argv no_api_key_in "$W/curl-argv.log"

t_done
