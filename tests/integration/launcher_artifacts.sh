#!/usr/bin/env bash
# tests/integration/launcher_artifacts.sh - RUNCELL_ARTIFACTS through the whole chain (issue 12):
# the agent writes files into /workspace, among them a symlink to /etc/shadow; when the session
# ends the shim copies the files matching the globs to $RUNCELL_STATE_DIR/artifacts/<sid>/<time>/
# before the workspace is unmounted. The matching regular files arrive with their content (0600
# files, 0700 dirs, owned by root), the file no glob names stays behind, the symlink is never
# followed (no trace of /etc/shadow in the export), and the summary line counts the export.
# The walk itself (loops, FIFOs, hard links, caps) is tested in tests/unit/test_artifacts.c.
# shellcheck source=tests/integration/launcher_lib.sh
. "$(dirname "$0")/launcher_lib.sh"

LT_LAUNCHER_ENV=(RUNCELL_ARTIFACTS='out/*.txt,report.md' RUNCELL_ARTIFACTS_MAX_BYTES=1M)
lt_setup "$@"

# scenario NAME STEPS-JSON: load a scenario into the emulator (the admin extension).
scenario() {
    admin POST /scenarios "$(jq -cn --arg n "$1" --argjson s "$2" '{name: $n,
        agent: {tools: [{type: "agent_toolset_20260401",
                         default_config: {enabled: true, permission_policy: {type: "always_allow"}}}]},
        turns: [{user: "go", steps: $s}]}')"
    [ "$ST" = 200 ] || t_fail "scenario_$1" "HTTP $ST: $(head -c 200 "$EM_DIR/body")"
}

# session NAME: an agent and a session playing NAME; prints the session id.
session() {
    api POST /v1/agents '{"name":"art","model":"claude-sonnet-4-6","tools":[{"type":"agent_toolset_20260401","default_config":{"enabled":true,"permission_policy":{"type":"always_allow"}}}]}'
    local agent
    agent=$(jb .id)
    api POST /v1/sessions "$(jq -cn --arg a "$agent" --arg e "$ENV" --arg s "$1" \
        '{agent: $a, environment_id: $e, metadata: {scenario: $s}}')"
    jb .id
}

bash_step() { # bash_step COMMAND EXPECTED-TEXT
    jq -cn --arg c "$1" --arg t "$2" '{tool: "bash", input: {command: $c}, expect: {is_error: false, text: $t}}'
}

scenario art-write "[
  $(bash_step 'mkdir -p /workspace/out && echo alpha-artifact > /workspace/out/a.txt && echo ok' ok),
  $(bash_step 'printf "# Report\nall good\n" > /workspace/report.md && echo ok' ok),
  $(bash_step 'echo do-not-export > /workspace/secret.bin && echo ok' ok),
  $(bash_step 'ln -s /etc/shadow /workspace/out/evil.txt && echo ok' ok)
]"

sid=$(session art-write)
v=$(wait_verdict "$sid" 60)
if [ "$v" = passed ]; then
    t_ok session_passed
else
    api GET "/_emulator/v1/sessions/$sid/verdict"
    t_fail session_passed "verdict $v: $(jq -c '[.steps[] | select(.passed != true)]' "$EM_DIR/body")"
fi
if left=$(wait_clean 40); then t_ok nothing_left; else t_fail nothing_left "$left"; fi

summary() { grep "\"session_id\":\"$sid\".*session ended:" "$LT_LOG" | tail -n 1; }
wait_for 20 bash -c "grep -q '\"session_id\":\"$sid\".*session ended:' '$LT_LOG'"
if summary | grep -q ' artifacts=2 artifact_bytes=[1-9]'; then
    t_ok summary_counts_artifacts
else
    t_fail summary_counts_artifacts "$(summary)"
fi
check skip_reason_logged bash -c "grep '\"session_id\":\"$sid\"' '$LT_LOG' | grep -q 'artifacts: 2 files.*symlink=1 '"

# Exactly one export directory for the session: <artifacts>/<sid>/<UTC time>/.
exports=$(find "$LT_STATE/artifacts/$sid" -mindepth 1 -maxdepth 1 -type d 2>/dev/null)
if [ "$(printf '%s\n' "$exports" | grep -c .)" = 1 ]; then
    t_ok one_export_dir
else
    t_fail one_export_dir "found: $(find "$LT_STATE/artifacts" 2>/dev/null | tr '\n' ' ')"
fi
X=$exports
check a_txt_exported test "$(cat "$X/out/a.txt" 2>/dev/null)" = alpha-artifact
check report_exported test "$(cat "$X/report.md" 2>/dev/null)" = "$(printf '# Report\nall good')"
check secret_not_exported test ! -e "$X/secret.bin"
check symlink_not_exported test ! -e "$X/out/evil.txt" -a ! -L "$X/out/evil.txt"
check only_two_files test "$(find "$X" -type f | wc -l)" = 2
check nothing_but_files_and_dirs test -z "$(find "$X" ! -type f ! -type d)"
check file_modes test "$(stat -c '%a %u' "$X/out/a.txt" "$X/report.md" | sort -u)" = "600 0"
check dir_modes test "$(stat -c '%a %u' "$X" "$X/out" "$LT_STATE/artifacts/$sid" | sort -u)" = "700 0"
# No byte of the host's /etc/shadow in the export (compare every exported file with it).
leak=
if [ -r /etc/shadow ] && [ -s /etc/shadow ]; then
    while IFS= read -r f; do cmp -s "$f" /etc/shadow && leak+=" $f"; done < <(find "$X" -type f)
    first=$(head -n 1 /etc/shadow)
    grep -rqF -- "$first" "$X" && leak+=" (first line of /etc/shadow found)"
fi
check shadow_not_leaked test -z "$leak"
# A bad glob is a configuration error, caught at start.
check bad_glob_refused bash -c "! RUNCELL_ARTIFACTS='../etc/*' RUNCELL_SNAPSHOT=x '$LAUNCHER' --check-config 2>/dev/null"
t_done
