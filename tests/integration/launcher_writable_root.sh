#!/usr/bin/env bash
# tests/integration/launcher_writable_root.sh - RUNCELL_WRITABLE_ROOT=1 through the whole chain
# (issue 5's operator option, wired into the launcher): a session's agent can install into
# /usr/local and /opt and its home, cannot touch what the snapshot shipped (/etc, /usr/bin, the
# runner), and the shared snapshot tree is unchanged afterwards; a second session does not see
# the first one's files. The overlay itself is tested in oci_overlay.sh.
# shellcheck source=tests/integration/launcher_lib.sh
. "$(dirname "$0")/launcher_lib.sh"

LT_LAUNCHER_ENV=(RUNCELL_WRITABLE_ROOT=1)
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
    api POST /v1/agents '{"name":"wr","model":"claude-sonnet-4-6","tools":[{"type":"agent_toolset_20260401","default_config":{"enabled":true,"permission_policy":{"type":"always_allow"}}}]}'
    local agent
    agent=$(jb .id)
    api POST /v1/sessions "$(jq -cn --arg a "$agent" --arg e "$ENV" --arg s "$1" \
        '{agent: $a, environment_id: $e, metadata: {scenario: $s}}')"
    jb .id
}

bash_step() { # bash_step COMMAND EXPECTED-TEXT
    jq -cn --arg c "$1" --arg t "$2" '{tool: "bash", input: {command: $c}, expect: {is_error: false, text: $t}}'
}

scenario wr-install "[
  $(bash_step 'mkdir -p /usr/local/lib/pkg && echo v1 > /usr/local/lib/pkg/VERSION && cat /usr/local/lib/pkg/VERSION' v1),
  $(bash_step 'echo ok > /opt/tool && cat /opt/tool' ok),
  $(bash_step 'echo note > ~/note && cat ~/note' note),
  $(bash_step 'touch /etc/evil 2>/dev/null; echo $?' 1),
  $(bash_step 'touch /usr/bin/evil 2>/dev/null; echo $?' 1),
  $(bash_step 'rm -f /usr/local/bin/runcell-runner 2>/dev/null; test -x /usr/local/bin/runcell-runner && echo intact' intact),
  $(bash_step '{ echo x > /usr/local/bin/runcell-runner; } 2>/dev/null; echo $?' 1)
]"
scenario wr-other "[
  $(bash_step 'ls /usr/local/lib/pkg /opt/tool ~/note 2>&1 | grep -c "No such file"' 3)
]"

snap_sum() { # a digest of the shared snapshot trees (names, modes, sizes)
    find "$LT_STATE"/snapshots -mindepth 1 -printf '%P %m %s\n' 2>/dev/null | sort | sha256sum
}
before=$(snap_sum)

sid=$(session wr-install)
v=$(wait_verdict "$sid" 60)
if [ "$v" = passed ]; then
    t_ok install_passed
else
    api GET "/_emulator/v1/sessions/$sid/verdict"
    t_fail install_passed "verdict $v: $(jq -c '[.steps[] | select(.passed != true)]' "$EM_DIR/body")"
fi
sid2=$(session wr-other)
check other_session_sees_nothing test "$(wait_verdict "$sid2" 60)" = passed
if left=$(wait_clean 40); then t_ok nothing_left; else t_fail nothing_left "$left"; fi
check snapshot_unchanged test "$(snap_sum)" = "$before"
check snapshot_has_no_agent_files bash -c "! find '$LT_STATE'/snapshots -path '*usr/local/lib/pkg*' | grep -q ."
t_done
