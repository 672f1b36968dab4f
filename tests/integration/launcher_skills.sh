#!/usr/bin/env bash
# tests/integration/launcher_skills.sh - a session's skills through the whole chain (issue 12,
# protocol.md 15): the emulator serves two skills (a tar.gz with a wrapper directory and a
# script, and a zip), the agent names them (one by `latest`, one by its concrete version) plus
# one that does not exist; the shim downloads them on the host with the session token and binds
# them read-only at /workspace/skills. The agent reads them, runs the script, cannot write there,
# and finds no token anywhere; the missing skill does not block the others; after the session the
# host copy is gone.
# shellcheck source=tests/integration/launcher_lib.sh
. "$(dirname "$0")/launcher_lib.sh"

lt_setup "$@"
W=$LT/skills-src
mkdir -p "$W/pdf" "$W/notes"
printf -- '---\nname: pdf\ndescription: read PDFs\n---\nUse pdftotext.\n' >"$W/pdf/SKILL.md"
printf '#!/bin/sh\necho extracted\n' >"$W/pdf/extract.sh"
chmod 755 "$W/pdf/extract.sh"
tar -C "$W" -czf "$W/pdf.tgz" pdf
printf -- '---\nname: notes\n---\nTake notes.\n' >"$W/notes/SKILL.md"
(cd "$W" && python3 -c 'import zipfile; z = zipfile.ZipFile("notes.zip", "w"); z.write("notes/SKILL.md"); z.close()')

# skill NAME ARCHIVE: create it in the emulator; prints "skill_id version".
skill() {
    base64 -w0 "$2" >"$W/b64"
    jq -n --arg n "$1" --rawfile c "$W/b64" '{name: $n, description: "test", content_base64: $c}' >"$W/body.json"
    admin POST /skills "@$W/body.json"
    jb '"\(.skill_id) \(.id)"'
}
read -r PDF _ < <(skill pdf "$W/pdf.tgz")
read -r NOTES NOTES_V < <(skill notes "$W/notes.zip")
check skills_created test -n "$PDF" -a -n "$NOTES_V"

step() { # step COMMAND EXPECTED-TEXT
    jq -cn --arg c "$1" --arg t "$2" '{tool: "bash", input: {command: $c}, expect: {is_error: false, text: $t}}'
}
admin POST /scenarios "$(jq -cn --argjson s "[
  $(step 'cat /workspace/skills/pdf/SKILL.md | tail -n 1' 'Use pdftotext.'),
  $(step '/workspace/skills/pdf/extract.sh' extracted),
  $(step 'tail -n 1 /workspace/skills/notes/SKILL.md' 'Take notes.'),
  $(step 'ls /workspace/skills' "$(printf 'notes\npdf')"),
  $(step 'touch /workspace/skills/pdf/x 2>/dev/null; echo $?' 1),
  $(step 'grep -rl sk-ant- /workspace/skills 2>/dev/null | wc -l' 0)
]" '{name: "skills-e2e",
     agent: {tools: [{type: "agent_toolset_20260401",
                      default_config: {enabled: true, permission_policy: {type: "always_allow"}}}]},
     turns: [{user: "use your skills", steps: $s}]}')"
check scenario_loaded test "$ST" = 200

api POST /v1/agents "$(jq -cn --arg p "$PDF" --arg n "$NOTES" --arg v "$NOTES_V" '{name: "skills",
    model: "claude-sonnet-4-6",
    tools: [{type: "agent_toolset_20260401",
             default_config: {enabled: true, permission_policy: {type: "always_allow"}}}],
    skills: [{type: "custom", skill_id: $p, version: "latest"},
             {type: "custom", skill_id: "skill_doesnotexist", version: "latest"},
             {type: "custom", skill_id: $n, version: $v}]}')"
AGENT_ID=$(jb .id)
api POST /v1/sessions "$(jq -cn --arg a "$AGENT_ID" --arg e "$ENV" \
    '{agent: $a, environment_id: $e, metadata: {scenario: "skills-e2e"}}')"
SID=$(jb .id)
v=$(wait_verdict "$SID" 60)
if [ "$v" = passed ]; then
    t_ok skills_used_in_container
else
    api GET "/_emulator/v1/sessions/$SID/verdict"
    t_fail skills_used_in_container "verdict $v: $(jq -c '[.steps[] | select(.passed != true)]' "$EM_DIR/body")"
    grep -i skill "$LT_LOG" | tail -n 5 | sed 's/^/#     /'
fi
check missing_skill_logged grep -q "skill_doesnotexist" "$LT_LOG"
check skills_ready_logged grep -q "skills: 2 ready, 1 failed" "$LT_LOG"
if left=$(wait_clean 40); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
check host_copy_removed test ! -e "$LT_STATE/skills/$SID"
check no_token_in_logs bash -c "! grep -rqs 'sk-ant-' '$LT_LOG' '$LT_STATE/sessions'"
t_done
