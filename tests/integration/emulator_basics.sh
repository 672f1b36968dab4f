#!/usr/bin/env bash
# tests/integration/emulator_basics.sh - runcell-emulator: start-up lines, transport rules
# (protocol.md 2.2-2.6, 3.1, 22), error shapes, and the backend endpoints (environments, agents,
# sessions: 19.1-19.3, 8.1) with real curl. Bad requests must get the real error shape and change
# no state.
. "$(dirname "$0")/emulator_lib.sh"

em_start

# ---- start-up ----
check startup_lines grep -q '^ANTHROPIC_BASE_URL=http://127.0.0.1:' "$EM_DIR/out"
check startup_api_key grep -q '^ANTHROPIC_API_KEY=sk-ant-' "$EM_DIR/out"
check startup_webhook_key grep -q '^ANTHROPIC_WEBHOOK_SIGNING_KEY=whsec_' "$EM_DIR/out"
check help_exits_0 bash -c "'$EMU' --help >/dev/null"
if "$EMU" --bogus >/dev/null 2>&1; then t_fail bad_option_fails; else t_ok bad_option_fails; fi
check api_key_not_logged bash -c "! grep -qF '$API_KEY' '$EM_DIR/log'"

# ---- transport and credentials ----
api GET /v1/environments
check_status api_key_as_x_api_key 200
req apibearer GET /v1/environments
check_status api_key_as_bearer 200
req none GET /v1/environments
check_error no_credential_401 401 authentication_error
cred_file badkey "x-api-key: sk-ant-api03-notavalidkey"
req badkey GET /v1/environments
check_error unknown_api_key_401 401 authentication_error
bearer badbearer sk-ant-api03-notavalidkey
req badbearer GET /v1/environments
check_error unknown_bearer_401 401 authentication_error
cred_file both "x-api-key: $API_KEY"
printf 'Authorization: Bearer %s\n' "$API_KEY" >>"$EM_DIR/cred.both"
req both GET /v1/environments
check_error both_credential_headers_400 400 invalid_request_error
cred_file basic "Authorization: Basic Zm9vOmJhcg=="
req basic GET /v1/environments
check_error non_bearer_scheme_401 401 authentication_error
NOBETA=1 api GET /v1/environments
check_error missing_beta_400 400 invalid_request_error
NOBETA=1 api GET /v1/environments "" -H "anthropic-beta: other-beta-2025-01-01, $BETA"
check_status beta_in_comma_list 200
NOBETA=1 api GET /v1/environments "" -H "anthropic-beta: $BETA" -H "anthropic-version: 2026-10-21"
check_status version_2026_10_21 200
NOBETA=1 api GET /v1/environments "" -H "anthropic-beta: $BETA"
check_status version_missing_accepted 200
NOBETA=1 api GET /v1/environments "" -H "anthropic-beta: $BETA" -H "anthropic-version: 1999-01-01"
check_error version_unknown_400 400 invalid_request_error
api GET "/v1/environments?beta=true&whatever=1"
check_status beta_true_and_unknown_query_ignored 200
api GET /v1/nothing-here
check_error unknown_route_404 404 not_found_error
api PUT /v1/environments
check_error wrong_method_405 405 invalid_request_error
check request_id_header test -n "$(hdr request-id)"

# ---- bodies ----
api POST /v1/environments '{"name": "x",'
check_error malformed_json_400 400 invalid_request_error
api POST /v1/environments '["name"]'
check_error non_object_body_400 400 invalid_request_error
api POST /v1/environments "$(printf '{"name":"\xff\xfe"}')"
check_error invalid_utf8_400 400 invalid_request_error
api POST /v1/environments '{"name":"x"} trailing'
check_error trailing_garbage_400 400 invalid_request_error
head -c $((5 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$EM_DIR/big"
api POST /v1/environments "@$EM_DIR/big"
check_error body_over_cap_413 413 request_too_large
api POST /v1/environments "$(printf '%0.s[' $(seq 200))"
check_error too_deep_400 400 invalid_request_error
api GET /v1/environments
check bad_requests_created_nothing test "$(jb '.data | length')" = 0

# ---- environments (19.1) ----
api POST /v1/environments '{"name":"env-a","config":{"type":"self_hosted"},"description":"d","metadata":{"team":"infra"}}'
check_status env_create 200
ENV_A=$(jb .id)
check env_shape test "$(jb '[.type,.config.type,.scope,.metadata.team,(.archived_at==null)]|@csv')" = '"environment","self_hosted","organization","infra",true'
check env_id_shape grep -qE '^env_[A-Za-z0-9]{24}$' <<<"$ENV_A"
api POST /v1/environments '{"name":"env-b","config":{"type":"cloud"}}'
check_error env_cloud_refused 400 invalid_request_error
api POST /v1/environments '{"config":{"type":"self_hosted"}}'
check_error env_name_required 400 invalid_request_error
api POST /v1/environments '{"name":"x","bogus":1}'
check_error env_extra_field_400 400 invalid_request_error
api POST /v1/environments '{"name":"x","metadata":{"k":1}}'
check_error env_bad_metadata 400 invalid_request_error invalid_metadata
api GET "/v1/environments/$ENV_A"
check_status env_get 200
api GET /v1/environments/env_doesnotexist
check_error env_unknown_404 404 not_found_error environment_not_found
api POST "/v1/environments/$ENV_A" '{"metadata":{"team":null,"new":"v"}}'
check env_update_merge_patch test "$(jb '.metadata|keys|join(",")')" = new
api POST "/v1/environments/$ENV_A" '{"config":{"type":"cloud"}}'
check_error env_config_type_change 400 invalid_request_error invalid_config_type_change
for i in 1 2 3 4 5; do api POST /v1/environments "{\"name\":\"p$i\"}"; done
api GET "/v1/environments?limit=2"
check env_list_page1 test "$(jb '(.data|length|tostring) + " " + (.next_page!=null|tostring)')" = "2 true"
p2=$(jb .next_page)
api GET "/v1/environments?limit=2&page=$p2"
p3=$(jb .next_page)
api GET "/v1/environments?limit=2&page=$p3"
check env_list_last_page_null test "$(jb '(.data|length|tostring) + " " + (.next_page|tostring)')" = "2 null"
api GET "/v1/environments?limit=0"
check_error list_limit_0_400 400 invalid_request_error
api GET "/v1/environments?limit=1001"
check_error list_limit_1001_400 400 invalid_request_error
api GET "/v1/environments?page=garbage"
check_error list_bad_cursor_400 400 invalid_request_error
mk_env ENV_ARCH arch
api POST "/v1/environments/$ENV_ARCH/archive"
check env_archive test "$(jb '.archived_at!=null')" = true
api GET /v1/environments?limit=100
check env_list_hides_archived test "$(jb "[.data[].id]|index(\"$ENV_ARCH\")")" = null
api GET "/v1/environments?limit=100&include_archived=true"
check env_list_include_archived test "$(jb "[.data[].id]|index(\"$ENV_ARCH\")")" != null
mk_env ENV_DEL del
api DELETE "/v1/environments/$ENV_DEL"
check env_delete test "$(jb '.type')" = environment_deleted
api GET "/v1/environments/$ENV_DEL"
check_error env_deleted_404 404 not_found_error environment_not_found

# ---- agents (19.2, 17.13) ----
api POST /v1/agents '{"name":"Toolset Agent","model":{"id":"claude-sonnet-4-6"},"tools":[{"type":"agent_toolset_20260401","default_config":{"enabled":true,"permission_policy":{"type":"always_allow"}},"configs":[{"name":"web_fetch","enabled":false},{"name":"bash","permission_policy":{"type":"always_ask"}}]}]}'
check_status agent_create 200
AGENT=$(jb .id)
check agent_resolves_configs test "$(jb '.tools[0].configs|map(.name+":"+(.enabled|tostring)+":"+.permission_policy.type)|join(",")')" = "web_fetch:false:always_allow,bash:true:always_ask"
check agent_shape test "$(jb '[.type,.version,.model.id,(.skills|length),(.mcp_servers|length)]|@csv')" = '"agent",1,"claude-sonnet-4-6",0,0'
api POST /v1/agents '{"name":"a","model":"claude-sonnet-4-6"}'
check agent_model_string_to_object test "$(jb .model.id)" = claude-sonnet-4-6
api POST /v1/agents '{"name":"a"}'
check_error agent_model_required 400 invalid_request_error
bad_tool() { # NAME TOOLS-JSON
    api POST /v1/agents "{\"name\":\"a\",\"model\":\"m\",\"tools\":$2}"
    check_error "$1" 400 invalid_request_error
}
schema='"input_schema":{"type":"object"}'
bad_tool custom_name_chars "[{\"type\":\"custom\",\"name\":\"bad name\",$schema}]"
bad_tool custom_name_too_long "[{\"type\":\"custom\",\"name\":\"$(printf 'a%.0s' $(seq 129))\",$schema}]"
bad_tool custom_name_builtin "[{\"type\":\"custom\",\"name\":\"bash\",$schema}]"
bad_tool custom_name_mcp_prefix "[{\"type\":\"custom\",\"name\":\"mcp__x\",$schema}]"
bad_tool custom_name_duplicate "[{\"type\":\"custom\",\"name\":\"t\",$schema},{\"type\":\"custom\",\"name\":\"t\",$schema}]"
bad_tool custom_schema_not_object '[{"type":"custom","name":"t","input_schema":{"type":"string"}}]'
bad_tool custom_schema_ref '[{"type":"custom","name":"t","input_schema":{"type":"object","properties":{"a":{"$ref":"#/x"}}}}]'
bad_tool custom_schema_top_oneof '[{"type":"custom","name":"t","input_schema":{"type":"object","oneOf":[]}}]'
bad_tool toolset_config_unknown_name '[{"type":"agent_toolset_20260401","configs":[{"name":"nope"}]}]'
bad_tool toolset_config_duplicate '[{"type":"agent_toolset_20260401","configs":[{"name":"bash"},{"name":"bash"}]}]'
bad_tool toolset_bad_policy '[{"type":"agent_toolset_20260401","default_config":{"permission_policy":{"type":"sometimes"}}}]'
bad_tool unknown_tool_type '[{"type":"web_search_20250305"}]'
many=$(jq -cn "[range(257) | {type:\"custom\",name:(\"t\"+(.|tostring)),input_schema:{type:\"object\"}}]")
bad_tool too_many_tools "$many"
api POST "/v1/agents/$AGENT" '{"name":"renamed","version":1}'
check agent_update_new_version test "$(jb '(.version|tostring)+" "+.name')" = "2 renamed"
api POST "/v1/agents/$AGENT" '{"name":"x","version":1}'
check_error agent_update_stale_version_409 409 conflict_error
api GET "/v1/agents/$AGENT?version=1"
check agent_get_old_version test "$(jb .name)" = "Toolset Agent"
api GET /v1/agents/agent_nope
check_error agent_unknown_404 404 not_found_error

# ---- sessions (19.3, 8.1) ----
mk_env ENV_S sess
api POST /v1/sessions "{\"agent\":\"$AGENT\",\"environment_id\":\"$ENV_S\",\"title\":\"t\",\"metadata\":{\"input_bundle\":\"s3://b/k\"}}"
check_status session_create 200
SID=$(jb .id)
check session_shape test "$(jb '[.type,.status,.environment_id,.title,.metadata.input_bundle,.agent.type,.agent.version,(.resources|length),(.vault_ids|length),(.outcome_evaluations|length),(.archived_at==null)]|@csv')" = "\"session\",\"idle\",\"$ENV_S\",\"t\",\"s3://b/k\",\"agent\",2,0,0,0,true"
check session_agent_fields test "$(jb '.agent|has("skills") and has("mcp_servers") and has("multiagent") and has("tools") and has("model") and has("system")')" = true
api GET "/v1/environments/$ENV_S/work"
check session_create_queues_work test "$(jb '.data|length')" = 1
api POST /v1/sessions "{\"agent\":{\"type\":\"agent\",\"id\":\"$AGENT\",\"version\":1},\"environment_id\":\"$ENV_S\"}"
check session_agent_version_pin test "$(jb .agent.version)" = 1
api POST /v1/sessions "{\"agent\":\"agent_nope\",\"environment_id\":\"$ENV_S\"}"
check_error session_unknown_agent_404 404 not_found_error
api POST /v1/sessions "{\"agent\":\"$AGENT\",\"environment_id\":\"env_nope\"}"
check_error session_unknown_env_404 404 not_found_error environment_not_found
api POST /v1/sessions "{\"agent\":\"$AGENT\",\"environment_id\":\"$ENV_ARCH\"}"
check_error session_archived_env_400 400 invalid_request_error environment_archived
api POST /v1/sessions "{\"agent\":\"$AGENT\",\"environment_id\":\"$ENV_S\",\"resources\":[{\"type\":\"file\",\"file_id\":\"f\"}]}"
check_error session_file_resource_400 400 invalid_request_error
api POST /v1/sessions "{\"agent\":\"$AGENT\",\"environment_id\":\"$ENV_S\",\"metadata\":{\"scenario\":\"no-such\"}}"
check_error session_unknown_scenario_400 400 invalid_request_error
api GET "/v1/environments/$ENV_S/work"
check refused_sessions_queue_nothing test "$(jb '.data|length')" = 2
api GET "/v1/sessions/$SID"
check_status session_get 200
api POST "/v1/sessions/$SID" '{"title":"new","metadata":{"input_bundle":null,"k":"v"}}'
check session_update test "$(jb '.title+" "+(.metadata|keys|join(","))')" = "new k"
api GET /v1/sessions?limit=1
check session_list_paginates test "$(jb '(.data|length|tostring)+" "+(.next_page!=null|tostring)')" = "1 true"
api POST /v1/sessions "{\"agent\":\"$AGENT\",\"environment_id\":\"$ENV_S\",\"initial_events\":[{\"type\":\"user.message\",\"content\":\"hello\"}]}"
check session_initial_events_running test "$(jb .status)" = running
api POST "/v1/sessions/$SID/archive"
check session_archive_terminated test "$(jb '.status+" "+(.archived_at!=null|tostring)')" = "terminated true"
api DELETE "/v1/sessions/$SID"
check session_delete test "$(jb .type)" = session_deleted
api GET "/v1/sessions/$SID"
check_error session_deleted_404 404 not_found_error

# ---- endpoints that are not emulated ----
api GET /v1/skills/skill_x/versions/latest
check_error skills_not_emulated_404 404 not_found_error
t_done
