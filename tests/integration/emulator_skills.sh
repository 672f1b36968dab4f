#!/usr/bin/env bash
# tests/integration/emulator_skills.sh - the emulator's skills (protocol.md 15; emulator/skills.c)
# with real curl: a skill created through the admin extension is listed, retrieved by id and by
# the alias `latest`, and its archive served byte for byte by concrete version id only; a second
# version becomes `latest`; every credential may read (API key, environment key, sessions token)
# with or without a beta header; an agent naming the skill shows it in the session's agent;
# unknown skills and versions answer 404, bad admin bodies 400 and nothing is created.
# shellcheck source=tests/integration/emulator_lib.sh
. "$(dirname "$0")/emulator_lib.sh"

# shellcheck disable=SC2119 # no emulator arguments
em_start
W=$EM_DIR/skill
mkdir -p "$W/pdf"
printf -- '---\nname: pdf\ndescription: read PDFs\n---\nUse pdftotext.\n' >"$W/pdf/SKILL.md"
printf '#!/bin/sh\necho extract\n' >"$W/pdf/extract.sh"
chmod 755 "$W/pdf/extract.sh"
tar -C "$W" -czf "$W/v1.tgz" pdf
head -c 200000 /dev/urandom >"$W/pdf/blob.bin"
tar -C "$W" -cf "$W/v2.tar" pdf

# create_skill NAME ARCHIVE [SKILL_ID]: the admin extension; the body goes through a file.
create_skill() {
    base64 -w0 "$2" >"$W/b64"
    jq -n --arg n "$1" --rawfile c "$W/b64" --arg id "${3-}" \
        '{name: $n, description: "read PDFs", content_base64: $c} + (if $id != "" then {skill_id: $id} else {} end)' \
        >"$W/body.json"
    NOBETA=1 req api POST /_emulator/v1/skills "@$W/body.json"
}

create_skill pdf "$W/v1.tgz"
check_status admin_create_200 200
SKILL=$(jb .skill_id)
V1=$(jb .id)
check admin_create_shape test "$(jb '"\(.type) \(.name) \(.description)"')" = "skill_version pdf read PDFs"
check skill_id_prefix test "${SKILL#skill_}" != "$SKILL"
check version_id_numeric grep -qE '^[0-9]+$' <<<"$V1"

NOBETA=1 api GET "/v1/skills/$SKILL/versions/latest"
check_status latest_200_without_beta 200
check latest_is_v1 test "$(jb .id)" = "$V1"
NOBETA=1 api GET "/v1/skills/$SKILL/versions/$V1"
check_status by_id_200 200
check by_id_skill test "$(jb .skill_id)" = "$SKILL"

NOBETA=1 req api GET "/v1/skills/$SKILL/versions/$V1/content" "" -H 'Accept: application/binary'
cp "$EM_DIR/body" "$W/got1"
check_status content_200 200
check content_bytes_equal cmp -s "$W/got1" "$W/v1.tgz"
check content_type_binary test "$(hdr content-type)" = application/octet-stream
NOBETA=1 api GET "/v1/skills/$SKILL/versions/latest/content"
check_error content_by_alias_404 404 not_found_error

create_skill pdf "$W/v2.tar" "$SKILL"
check_status second_version_200 200
V2=$(jb .id)
check second_version_newer test "$V2" -gt "$V1"
api GET "/v1/skills/$SKILL/versions/latest"
check latest_is_v2_with_beta test "$(jb .id)" = "$V2"
NOBETA=1 req api GET "/v1/skills/$SKILL/versions/$V2/content"
cp "$EM_DIR/body" "$W/got2"
check content_v2_bytes_equal cmp -s "$W/got2" "$W/v2.tar"
NOBETA=1 api GET "/v1/skills/$SKILL/versions"
check_status list_200 200
check list_newest_first test "$(jb '[.data[].id] | join(" ")')" = "$V2 $V1"
check list_last_page test "$(jb .next_page)" = null
NOBETA=1 api GET "/v1/skills/$SKILL/versions?limit=1"
check list_paginated test "$(jb '"\(.data | length) \(.next_page != null)"')" = "1 true"

# Every credential reads (15.4): the environment key and a sessions token.
mk_env ENV skills
mk_key ek "$ENV"
mk_agent AGENT
api POST "/v1/agents/$AGENT" "{\"version\":1,\"skills\":[{\"type\":\"custom\",\"skill_id\":\"$SKILL\",\"version\":\"latest\"}]}"
check_status agent_with_skill_200 200
mk_session SID "$AGENT" "$ENV"
api GET "/v1/sessions/$SID"
check session_agent_names_skill test "$(jb '.agent.skills[0].skill_id')" = "$SKILL"
poll_item ek "$ENV" WID TOKEN
bearer tok "$TOKEN"
NOBETA=1 req ek GET "/v1/skills/$SKILL/versions/latest"
check_status env_key_reads 200
NOBETA=1 req tok GET "/v1/skills/$SKILL/versions/$V2/content"
check_status token_reads_content 200
cp "$EM_DIR/body" "$W/got3"
check token_content_equal cmp -s "$W/got3" "$W/v2.tar"
cred_file nobody "x-api-key: sk-ant-not-a-key"
NOBETA=1 req nobody GET "/v1/skills/$SKILL/versions/latest"
check_error bad_credential_401 401 authentication_error

# Unknown skill, unknown version, and admin refusals (nothing created).
NOBETA=1 api GET /v1/skills/skill_nope/versions/latest
check_error unknown_skill_404 404 not_found_error
NOBETA=1 api GET "/v1/skills/$SKILL/versions/123"
check_error unknown_version_404 404 not_found_error
NOBETA=1 req api POST /_emulator/v1/skills '{"name":"x"}'
check_error admin_missing_content_400 400 invalid_request_error
NOBETA=1 req api POST /_emulator/v1/skills '{"name":"x","content_base64":"not base64!"}'
check_error admin_bad_base64_400 400 invalid_request_error
NOBETA=1 req api POST /_emulator/v1/skills '{"content_base64":"AAAA"}'
check_error admin_missing_name_400 400 invalid_request_error
NOBETA=1 req api POST /_emulator/v1/skills '{"name":"x","content_base64":"AAAA","skill_id":"skill_nope"}'
check_error admin_unknown_skill_404 404 not_found_error
NOBETA=1 api GET "/v1/skills/$SKILL/versions"
check admin_refusals_added_nothing test "$(jb '.data | length')" = 2
t_done
