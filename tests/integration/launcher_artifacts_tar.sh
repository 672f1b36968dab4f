#!/usr/bin/env bash
# tests/integration/launcher_artifacts_tar.sh - RUNCELL_ARTIFACTS_FORMAT=tar and
# RUNCELL_ARTIFACTS_KEEP_DAYS through the whole chain (issue 12): the agent writes files into
# /workspace; when the session ends the shim exports the matching ones and packs them into
# $RUNCELL_STATE_DIR/artifacts/<sid>/<UTC time>.tar.gz (no directory left, no .partial), which
# GNU tar lists and unpacks with the agent's content; then it prunes exports older than the
# cut-off (an old export of another session and its empty session directory go, a recent one and
# a file that is not an export stay). The pack and prune rules themselves are unit-tested in
# tests/unit/test_artifacts_pack.c.
# shellcheck source=tests/integration/launcher_lib.sh
. "$(dirname "$0")/launcher_lib.sh"

LT_LAUNCHER_ENV=(RUNCELL_ARTIFACTS='out/**' RUNCELL_ARTIFACTS_FORMAT=tar
    RUNCELL_ARTIFACTS_KEEP_DAYS=2)
lt_setup "$@"

# Exports already there: an old one (10 days) of another session, a recent one (1 day), and a
# file the operator put there that only looks old.
A=$LT_STATE/artifacts
mkdir -p "$A/sesn_old/20200101T000000.000Z/out" "$A/sesn_recent" "$A/sesn_notes"
echo old >"$A/sesn_old/20200101T000000.000Z/out/x"
echo recent >"$A/sesn_recent/20200102T000000.000Z.tar.gz"
echo mine >"$A/sesn_notes/README"
touch -d '10 days ago' "$A/sesn_old/20200101T000000.000Z" "$A/sesn_notes/README"
touch -d '1 day ago' "$A/sesn_recent/20200102T000000.000Z.tar.gz"

admin POST /scenarios "$(jq -cn '{name: "art-tar",
    agent: {tools: [{type: "agent_toolset_20260401",
                     default_config: {enabled: true, permission_policy: {type: "always_allow"}}}]},
    turns: [{user: "go", steps: [
      {tool: "bash", input: {command: "mkdir -p /workspace/out/sub && echo alpha > /workspace/out/a.txt && echo beta > /workspace/out/sub/b.txt && echo skip > /workspace/c.txt && echo ok"},
       expect: {is_error: false, text: "ok"}}]}]}')"
[ "$ST" = 200 ] || t_fail scenario "HTTP $ST: $(head -c 200 "$EM_DIR/body")"
api POST /v1/agents '{"name":"art","model":"claude-sonnet-4-6","tools":[{"type":"agent_toolset_20260401","default_config":{"enabled":true,"permission_policy":{"type":"always_allow"}}}]}'
agent=$(jb .id)
api POST /v1/sessions "$(jq -cn --arg a "$agent" --arg e "$ENV" \
    '{agent: $a, environment_id: $e, metadata: {scenario: "art-tar"}}')"
sid=$(jb .id)

v=$(wait_verdict "$sid" 60)
check session_passed test "$v" = passed
if left=$(wait_clean 40); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
wait_for 20 bash -c "grep -q '\"session_id\":\"$sid\".*session ended:' '$LT_LOG'"

shopt -s nullglob
tars=("$A/$sid"/*.tar.gz)
check one_archive test "${#tars[@]}" = 1
check no_directory_left test -z "$(find "$A/$sid" -mindepth 1 -type d)"
check no_partial_left test -z "$(find "$A" -name '*.partial')"
T=${tars[0]:-/nonexistent}
check archive_name bash -c "basename '$T' | grep -Eq '^[0-9]{8}T[0-9]{6}\\.[0-9]{3}Z\\.tar\\.gz$'"
check archive_mode test "$(stat -c '%a %u' "$T" 2>/dev/null)" = "600 0"
check archive_lists test "$(tar -tzf "$T" 2>/dev/null | sort | tr '\n' ' ')" = "out/ out/a.txt out/sub/ out/sub/b.txt "
X=$(mktemp -d)
tar -xzf "$T" -C "$X" 2>/dev/null
check archive_content test "$(cat "$X/out/a.txt" "$X/out/sub/b.txt" 2>/dev/null | tr '\n' ' ')" = "alpha beta "
rm -rf "$X"
check log_names_archive bash -c "grep '\"session_id\":\"$sid\"' '$LT_LOG' | grep -q 'artifacts: 2 files.* in [^ ]*\\.tar\\.gz;'"

check old_export_pruned test ! -e "$A/sesn_old"
check recent_export_kept test -e "$A/sesn_recent/20200102T000000.000Z.tar.gz"
check operator_file_kept test -e "$A/sesn_notes/README"
check prune_logged bash -c "grep -q 'artifacts: pruned 1 exports older than 2 days' '$LT_LOG'"
check bad_format_refused bash -c "! RUNCELL_ARTIFACTS_FORMAT=zip RUNCELL_SNAPSHOT=x '$LAUNCHER' --check-config 2>/dev/null"
t_done
