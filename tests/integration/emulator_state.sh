#!/usr/bin/env bash
# tests/integration/emulator_state.sh - runcell-emulator --state-dir: environments, agents,
# environment keys (and revocations) and the generated credentials survive a restart; the state
# file is private (0600); sessions are not persisted.
. "$(dirname "$0")/emulator_lib.sh"

SD=$EM_DIR/state
em_start --state-dir "$SD"
KEY1=$API_KEY
WH1=$WH_KEY
mk_env ENV keep
mk_key ek "$ENV"
mk_key ekrev "$ENV"
mk_agent AGENT
api POST "/v1/agents/$AGENT" '{"name":"v2"}'
mk_session SID "$AGENT" "$ENV"
printf '{"key":"%s"}' "$(sed -n 's/^Authorization: Bearer //p' "$EM_DIR/cred.ekrev")" >"$EM_DIR/revoke.json"
admin POST /keys/revoke "@$EM_DIR/revoke.json"
check state_file_private test "$(stat -c %a "$SD/state.json")" = 600
check state_dir_private test "$(stat -c %a "$SD")" = 700

kill "$EM_PID" && wait "$EM_PID"
EM_PID=
em_start --state-dir "$SD"
check api_key_kept test "$API_KEY" = "$KEY1"
check webhook_key_kept test "$WH_KEY" = "$WH1"
api GET "/v1/environments/$ENV"
check environment_kept test "$ST $(jb .name)" = "200 keep"
api GET "/v1/agents/$AGENT"
check agent_versions_kept test "$ST $(jb .version) $(jb .name)" = "200 2 v2"
req ek GET "/v1/environments/$ENV/work/poll"
check env_key_kept test "$ST" = 204
req ekrev GET "/v1/environments/$ENV/work/poll"
check_error revocation_kept 401 authentication_error
api GET "/v1/sessions/$SID"
check_error sessions_not_persisted 404 not_found_error

kill "$EM_PID" && wait "$EM_PID"
EM_PID=
em_start --state-dir "$SD" --api-key sk-ant-api03-given-on-command-line
check given_api_key_wins test "$API_KEY" = sk-ant-api03-given-on-command-line
t_done
