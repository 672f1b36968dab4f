#!/usr/bin/env bash
# tests/integration/launcher_memory.sh - memory stores (issue 12, protocol.md 16) through the
# whole chain with the default read-only root: emulator -> nginx -> runcell-fcgi -> launcher ->
# shim -> runc -> runner. The session has a read-write store with one memory and a read-only
# store. Inside the container the stores are folders under /mnt/memory (a tmpfs of the tool
# user, since the snapshot import makes the mount point): the marker file and the memory are
# there, owned by the agent; a `write` into the read-write store reaches the API (through the
# broker's API channel, which lets the runner reach only this session's stores); a `write` into
# the read-only store is refused and nothing is sent for it; the folders are gone afterwards and
# nothing is left on the host. The sync rules themselves are tested in
# tests/integration/runner_memory.sh and tests/unit/test_memory.c.
# shellcheck source=tests/integration/launcher_lib.sh
. "$(dirname "$0")/launcher_lib.sh"

lt_setup "$@"

mem_api() { BETA=agent-memory-2026-07-22 api "$@"; }
api POST /v1/memory_stores '{"name":"notes"}'
RW=$(jb .id)
api POST /v1/memory_stores '{"name":"policies"}'
RO=$(jb .id)
mem_api POST "/v1/memory_stores/$RW/memories" '{"path":"/a.md","content":"alpha\n"}'
check seed_memory test "$ST" = 200
mem_api POST "/v1/memory_stores/$RO/memories" '{"path":"/rules.md","content":"be kind\n"}'

steps=$(jq -cn --arg id "$RW" '[
  {tool: "bash", input: {command: "cat /mnt/memory/notes/.anthropic-memory-store; echo; cat /mnt/memory/notes/a.md; [ \"$(stat -c %u /mnt/memory/notes/a.md)\" = \"$(id -u)\" ] && echo owned; cat /mnt/memory/policies/rules.md; stat -f -c %T /mnt/memory"},
   expect: {is_error: false, text: ("version 1\n" + $id + "\nalpha\nowned\nbe kind\ntmpfs")}},
  {tool: "write", input: {file_path: "/mnt/memory/notes/new.md", content: "from container\n"},
   expect: {is_error: false}},
  {tool: "write", input: {file_path: "/mnt/memory/policies/rules.md", content: "be evil\n"},
   expect: {is_error: true}},
  {message: "done"}]')
admin POST /scenarios "$(jq -cn --argjson s "$steps" '{name: "mem-chain",
    agent: {tools: [{type: "agent_toolset_20260401",
                     default_config: {enabled: true, permission_policy: {type: "always_allow"}}}]},
    turns: [{user: "go", steps: $s, end: "end_turn"}]}')"
check scenario_loaded test "$ST" = 200
api POST /v1/agents '{"name":"mem","model":"claude-sonnet-4-6","tools":[{"type":"agent_toolset_20260401","default_config":{"enabled":true,"permission_policy":{"type":"always_allow"}}}]}'
agent=$(jb .id)
api POST /v1/sessions "$(jq -cn --arg a "$agent" --arg e "$ENV" --arg rw "$RW" --arg ro "$RO" \
    '{agent: $a, environment_id: $e, metadata: {scenario: "mem-chain"},
      resources: [{type: "memory_store", memory_store_id: $rw, access: "read_write"},
                  {type: "memory_store", memory_store_id: $ro, access: "read_only"}]}')"
sid=$(jb .id)

v=$(wait_verdict "$sid" 90)
if [ "$v" = passed ]; then
    t_ok session_passed
else
    api GET "/_emulator/v1/sessions/$sid/verdict"
    t_fail session_passed "verdict $v: $(jq -c '[.steps[]? | select(.passed != true)]' "$EM_DIR/body" | head -c 600)"
fi
if left=$(wait_clean 60); then t_ok nothing_left; else t_fail nothing_left "$left"; fi

# What the API holds now: the agent's file in the read-write store, the read-only one unchanged.
mem_api GET "/v1/memory_stores/$RW/memories?view=full"
check pushed_new_file test "$(jq -r '.data[] | select(.path == "/new.md") | .content' "$EM_DIR/body")" = "from container"
mem_api GET "/v1/memory_stores/$RO/memories?view=full"
check read_only_unchanged test "$(jq -r '.data[] | select(.path == "/rules.md") | .content' "$EM_DIR/body")" = "be kind"
admin GET "/requests?since=0&limit=20000"
# The session (its token, through the broker) read both stores and wrote only to the read-write one.
by_token() { # by_token STORE METHOD-REGEX: requests with the session token
    jq --arg s "$1" --arg m "$2" '[.data[] | select(.credential == "session_token"
        and (.path | startswith("/v1/memory_stores/" + $s + "/memories")) and (.method | test($m)))]
        | length' "$EM_DIR/body" 2>/dev/null
}
check session_read_both_stores test "$(by_token "$RW" '^GET$')" -ge 1 -a "$(by_token "$RO" '^GET$')" -ge 1
check session_pushed_to_read_write test "$(by_token "$RW" '^POST$')" -ge 1
check no_push_to_read_only test "$(by_token "$RO" '^(POST|DELETE)$')" = 0
check summary_logged bash -c "grep -q '\"session_id\":\"$sid\".*session ended:' '$LT_LOG'"
leaks=$(grep -rl --exclude-dir=snapshots 'sk-ant-' "$LT_STATE" "$LT_LOG" 2>/dev/null)
check no_token_in_state_dir test -z "$leaks"
[ -z "$leaks" ] || echo "# files with a key: $leaks"
t_done
