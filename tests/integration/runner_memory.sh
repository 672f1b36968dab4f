#!/usr/bin/env bash
# tests/integration/runner_memory.sh - runcell-runner's memory stores (protocol 16, 14.3 steps 7,
# 9, 11, 13.2) against runcell-emulator, the runner on the host in direct mode:
#   sync            one session with a read-write store (explicit mount_path) and a read-only
#                   store (mount_path null: {workdir}/memory/<name>); the scripted agent checks
#                   the download (marker, files), writes a new file with the write tool, is
#                   refused a write into the read-only store, deletes a file and edits another
#                   with bash while the test changes it and a second memory on the server;
#                   later calls see the remote changes pulled and the conflict won by the
#                   server; the delete goes out only on a later sync than the one that saw the
#                   file missing (RUNCELL_MEMORY_DELETE_DELAY_MS=3000, a test-only shortening of
#                   the 30 s rule); a file written last is pushed by the final sync at the idle
#                   exit; the read-only store gets no write request at all; every memory call
#                   carries the sessions token and the memory beta; both folders are removed
#   preexisting     a folder already at the mount path: the item fails (exit 1), the folder is
#                   left untouched, the item is force-stopped
#   bad_mount_path  a mount_path with "..": the item fails, nothing is created
#   no_token        the environment key only (no sessions token): the item fails before any
#                   memory call
#   symlinks        the agent replaces a store's directory with a symlink to a directory
#                   outside and plants a symlinked file: the pull of a remote change below it
#                   writes nothing outside, the symlinked file is never uploaded, and removing
#                   the folder at the end leaves the outside directory alone
#   sigterm_flush   SIGTERM while a tool runs: no final sync (not a clean end), but the
#                   push-only flush still uploads the file written before, the folder is
#                   removed, the item is force-stopped, exit 0
#   tool_user       (root only) RUNCELL_TOOL_UID/GID=65534: the runner does the folder's file
#                   operations with the tool user's filesystem ids, so the folder and the
#                   downloaded files belong to 65534; the write tool's file is pushed
#   broker          the runner in socket mode behind the broker's API channel
#                   (tests/tools/apichan), which learns the session's stores from the session
#                   answer it relays: the download and a write go through; a memory path of
#                   another store is refused with 403, its own store's is forwarded (skipped
#                   when the tool is not built)
. "$(dirname "$0")/runner_lib.sh"

APICHAN=${APICHAN:-$BUILD/tests/tools/apichan}
CH_PID=
ch_stop() {
    [ -n "$CH_PID" ] && kill "$CH_PID" 2>/dev/null && wait "$CH_PID" 2>/dev/null
    CH_PID=
}
trap 'ch_stop; rl_cleanup' EXIT

MBETA="agent-memory-2026-07-22"
rl_start

# mem_req CRED METHOD PATH [BODY]: like rl_req with the memory beta.
mem_req() {
    local cred=$1 method=$2 path=$3 body=${4-}
    local args=(-sS -m 20 -o "$RL_DIR/body" -w '%{http_code}' -X "$method" -H "@$RL_DIR/cred.$cred"
        -H "anthropic-beta: $MBETA" -H "anthropic-version: 2023-06-01")
    [ -n "$body" ] && args+=(-H "content-type: application/json" --data-binary "$body")
    RL_ST=$(curl "${args[@]}" "$RL_B$path" 2>"$RL_DIR/curl.err") || RL_ST=000
}

new_store() {
    mem_req api POST /v1/memory_stores "{\"name\":\"$1\"}"
    rl_jb .id
}

# put STORE PATH CONTENT: create a memory (API key).
put() {
    mem_req api POST "/v1/memory_stores/$1/memories" \
        "$(jq -cn --arg p "$2" --arg c "$3" '{path: $p, content: $c}')"
    [ "$RL_ST" = 200 ] || t_fail "put_$2" "status $RL_ST: $(cat "$RL_DIR/body")"
}

# content STORE PATH: the memory's content on the server ("<none>" when absent), with "|" after
# it so a trailing newline survives the command substitution.
content() {
    mem_req api GET "/v1/memory_stores/$1/memories?view=full&limit=20"
    jq -j --arg p "$2" '([.data[] | select(.path == $p) | .content] + ["<none>"])[0] + "|"' \
        "$RL_DIR/body"
}

# memory_id STORE PATH
memory_id() {
    mem_req api GET "/v1/memory_stores/$1/memories?view=basic&limit=100"
    jq -r --arg p "$2" '.data[] | select(.path == $p) | .id' "$RL_DIR/body"
}

# session AGENT RESOURCES-JSON [SCENARIO]: sets RL_SID.
session() {
    rl_req api POST /v1/sessions "$(jq -cn --arg a "$1" --arg e "$RL_ENV" --arg s "${3-}" \
        --argjson r "$2" '{agent: $a, environment_id: $e, resources: $r}
                          + (if $s == "" then {} else {metadata: {scenario: $s}} end)')"
    RL_SID=$(rl_jb .id)
    [ "$RL_ST" = 200 ] && [ -n "$RL_SID" ] && [ "$RL_SID" != null ]
}

env_and_agent() {
    rl_req api POST /v1/environments "{\"name\":\"memory-$1\",\"config\":{\"type\":\"self_hosted\"}}"
    RL_ENV=$(rl_jb .id)
    rl_req api POST "/_emulator/v1/environments/$RL_ENV/keys" '{}'
    rl_cred envkey "Authorization: Bearer $(rl_jb .key)"
    rl_req api POST /v1/agents \
        '{"name":"memory","model":"claude-sonnet-4-6","tools":[{"type":"agent_toolset_20260401"}]}'
    AGENT=$(rl_jb .id)
}

requests_since() {
    local since=$1 all='[]' more=true
    while [ "$more" = true ]; do
        rl_req api GET "/_emulator/v1/requests?since=$since"
        all=$(jq -c --argjson acc "$all" '$acc + .data' "$RL_DIR/body")
        more=$(rl_jb .has_more)
        since=$(rl_jb .last_seq)
    done
    printf '%s\n' "$all" >"$RL_DIR/requests.json"
}
last_seq() {
    rl_req api GET "/_emulator/v1/requests?since=999999999"
    rl_jb .last_seq
}
mq() { jq -r "$1" "$RL_DIR/requests.json"; }
# all CMD1 -- CMD2 -- ...: true when every test command is true (for t_check).
all() {
    local cmd=() a
    for a in "$@" --; do
        if [ "$a" = -- ]; then
            "${cmd[@]}" || return 1
            cmd=()
        else
            cmd+=("$a")
        fi
    done
}

# The scripted agent of the sync test; M = the read-write store's folder, R = the read-only's.
sync_scenario() {
    jq -n --arg M "$1" --arg R "$2" --arg id "$3" '
      def bash($c): {tool: "bash", input: {command: $c}};
      {name: "memory-sync",
       agent: {tools: [{type: "agent_toolset_20260401",
                        default_config: {enabled: true,
                                         permission_policy: {type: "always_allow"}}}]},
       turns: [{user: "use your memory",
                steps: [
         (bash("cat \"" + $M + "/.anthropic-memory-store\"; echo; cat \"" + $M + "/a.md\" \"" + $M
               + "/docs/b.md\" \"" + $R + "/ro.md\"")
          + {expect: {is_error: false, text: ("version 1\n" + $id + "\nalpha\nbeta\nreadonly")}}),
         {tool: "write", input: {file_path: ($M + "/new.md"), content: "new file\n"},
          expect: {is_error: false}},
         {tool: "write", input: {file_path: ($R + "/x.md"), content: "nope\n"},
          expect: {is_error: true, contains: "is inside read-only directory"}},
         (bash("rm \"" + $M + "/del.md\"; printf \"local edit\\n\" > \"" + $M + "/conflict.md\"; echo edited")
          + {expect: {is_error: false, text: "edited"}}),
         {sleep_ms: 6000},
         (bash("true") + {expect: {is_error: false}}),
         {sleep_ms: 5500},
         (bash("cat \"" + $M + "/a.md\" \"" + $M + "/conflict.md\"; test -e \"" + $M
               + "/del.md\" || echo del-gone")
          + {expect: {is_error: false, text: "alpha remote\nremote wins\ndel-gone"}}),
         (bash("printf \"final\\n\" > \"" + $M + "/final.md\"; printf \"bash edit\\n\" > \"" + $R
               + "/ro.md\"; echo ok")
          + {expect: {is_error: false, text: "ok"}}),
         {message: "done"}],
                end: "end_turn"}]}'
}

test_sync() {
    local RW RO M R W seq0 ok=true
    env_and_agent sync
    RW=$(new_store notes)
    RO=$(new_store reference)
    put "$RW" /a.md $'alpha\n'
    put "$RW" /docs/b.md $'beta\n'
    put "$RW" /conflict.md $'base\n'
    put "$RW" /del.md $'to delete\n'
    put "$RO" /ro.md $'readonly\n'
    W=$RL_DIR/sync/workdir
    M=$RL_DIR/sync/mnt/notes
    R=$W/memory/reference
    mkdir -p "$W"
    rl_req api POST /_emulator/v1/scenarios "$(sync_scenario "$M" "$R" "$RW")"
    [ "$RL_ST" = 200 ] || {
        t_fail sync "scenario refused: $(cat "$RL_DIR/body")"
        return
    }
    session "$AGENT" "$(jq -cn --arg rw "$RW" --arg ro "$RO" --arg m "$M" '[
        {type: "memory_store", memory_store_id: $rw, access: "read_write", mount_path: $m},
        {type: "memory_store", memory_store_id: $ro, access: "read_only", mount_path: null}]')" \
        memory-sync || {
        t_fail sync "session not created: $(cat "$RL_DIR/body")"
        return
    }
    seq0=$(last_seq)
    rl_claim || {
        t_fail sync "no work item"
        return
    }
    export RUNCELL_MEMORY_SYNC_INTERVAL_MS=5000 RUNCELL_MEMORY_DELETE_DELAY_MS=3000
    rl_runner_start "$W" "$RL_DIR/sync.log"
    unset RUNCELL_MEMORY_SYNC_INTERVAL_MS RUNCELL_MEMORY_DELETE_DELAY_MS
    # The remote side of the conflict and a remote-only change, once bash has edited the file.
    local end=$((SECONDS + 20)) id
    while [ $SECONDS -lt $end ]; do
        grep -q 'local edit' "$M/conflict.md" 2>/dev/null && break
        sleep 0.1
    done
    id=$(memory_id "$RW" /conflict.md)
    mem_req api POST "/v1/memory_stores/$RW/memories/$id" '{"content":"remote wins\n"}'
    id=$(memory_id "$RW" /a.md)
    mem_req api POST "/v1/memory_stores/$RW/memories/$id" '{"content":"alpha remote\n"}'
    rl_runner_wait 60
    requests_since "$seq0"
    cp "$RL_DIR/requests.json" "$RL_DIR/sync.requests.json"
    rl_verdict
    t_check sync.exit_status [ "$RL_RUNNER_RC" = 0 ]
    if [ "$RL_VERDICT" = passed ]; then t_ok sync.scenario; else
        t_fail sync.scenario "verdict $RL_VERDICT: $(jq -c '.failures // .' "$RL_DIR/verdict.json" | head -c 600)"
        ok=false
    fi
    t_check sync.pushed_write [ "$(content "$RW" /new.md)" = $'new file\n|' ]
    t_check sync.final_sync_push [ "$(content "$RW" /final.md)" = $'final\n|' ]
    t_check sync.conflict_server_wins [ "$(content "$RW" /conflict.md)" = $'remote wins\n|' ]
    t_check sync.remote_change_kept [ "$(content "$RW" /a.md)" = $'alpha remote\n|' ]
    t_check sync.untouched [ "$(content "$RW" /docs/b.md)" = $'beta\n|' ]
    t_check sync.deleted [ "$(content "$RW" /del.md)" = "<none>|" ]
    t_check sync.read_only_unchanged [ "$(content "$RO" /ro.md)" = $'readonly\n|' ]
    t_check sync.read_only_nothing_new [ "$(content "$RO" /x.md)" = "<none>|" ]
    t_check sync.read_only_no_writes [ "$(jq -r --arg ro "$RO" '[.[] | select((.path |
        contains($ro)) and .method != "GET")] | length' "$RL_DIR/requests.json")" = 0 ]
    # The delete went out on a later sync than the first one that listed the store after the
    # file was removed: at least two basic listings of the store come before it.
    local del_at listings
    del_at=$(jq -r --arg rw "$RW" '[.[] | select(.method == "DELETE" and (.path | contains($rw)))]
        | (.[0].seq // -1)' "$RL_DIR/requests.json")
    listings=$(jq -r --arg rw "$RW" --argjson d "$del_at" '[.[] | select(.method == "GET" and
        (.path | endswith($rw + "/memories")) and ((.query // "") | contains("view=basic"))
        and .credential == "session_token" and .seq < $d)] | length' "$RL_DIR/requests.json")
    t_check sync.delete_delayed all [ "$del_at" != -1 ] -- [ "${listings:-0}" -ge 2 ]
    # The test's own calls use the API key; everything else must be the sessions token.
    t_check sync.memory_calls_token all [ "$(jq -r '[.[] | select(.path | contains("/memories"))
        | select(.credential != "session_token" and .credential != "api_key")] | length' \
        "$RL_DIR/requests.json")" = 0 ] -- [ "$(jq -r '[.[] | select(.path | contains("/memories"))
        | select(.credential == "session_token")] | length' "$RL_DIR/requests.json")" -ge 5 ]
    t_check sync.memory_beta [ "$(jq -r --arg b "$MBETA" '[.[] | select(.path | contains("/memories"))
        | select((.header_values["anthropic-beta"] // "") | contains($b) | not)] | length' \
        "$RL_DIR/requests.json")" = 0 ]
    t_check sync.download_full_view [ "$(jq -r '[.[] | select((.path | endswith("/memories"))
        and .method == "GET" and ((.query // "") | contains("view=full")))] | length' \
        "$RL_DIR/requests.json")" -ge 2 ]
    t_check sync.folders_removed all [ ! -e "$M" ] -- [ ! -e "$R" ]
    t_check sync.stopped [ "$(jq -r '[.[] | select(.path | endswith("/stop"))] | length' \
        "$RL_DIR/requests.json")" -ge 1 ]
    [ "$ok" = true ] || echo "# runner log: $(grep -i memor "$RL_DIR/sync.log" | tail -n 5)"
}

symlink_scenario() {
    jq -n --arg M "$1" --arg O "$2" --arg S "$3" '
      def bash($c): {tool: "bash", input: {command: $c}};
      {name: "memory-symlinks",
       agent: {tools: [{type: "agent_toolset_20260401",
                        default_config: {enabled: true,
                                         permission_policy: {type: "always_allow"}}}]},
       turns: [{user: "plant symlinks",
                steps: [
         (bash("rm -rf \"" + $M + "/docs\" && ln -s \"" + $O + "\" \"" + $M + "/docs\" && ln -s \""
               + $S + "\" \"" + $M + "/leak.md\" && echo planted")
          + {expect: {is_error: false, text: "planted"}}),
         {sleep_ms: 5500},
         (bash("true") + {expect: {is_error: false}}),
         {message: "done"}],
                end: "end_turn"}]}'
}

test_symlinks() {
    local st W M O S id
    env_and_agent symlinks
    st=$(new_store links)
    put "$st" /docs/b.md $'beta\n'
    W=$RL_DIR/symlink/workdir
    M=$RL_DIR/symlink/mnt/notes
    O=$RL_DIR/symlink/outside
    S=$RL_DIR/symlink/secret.txt
    mkdir -p "$W" "$O"
    echo sentinel >"$O/keep.txt"
    echo "not for the server" >"$S"
    rl_req api POST /_emulator/v1/scenarios "$(symlink_scenario "$M" "$O" "$S")"
    session "$AGENT" "$(jq -cn --arg s "$st" --arg m "$M" \
        '[{type: "memory_store", memory_store_id: $s, mount_path: $m}]')" memory-symlinks || {
        t_fail symlinks "session not created: $(cat "$RL_DIR/body")"
        return
    }
    rl_claim || {
        t_fail symlinks "no work item"
        return
    }
    export RUNCELL_MEMORY_SYNC_INTERVAL_MS=5000
    rl_runner_start "$W" "$RL_DIR/symlinks.log"
    unset RUNCELL_MEMORY_SYNC_INTERVAL_MS
    local end=$((SECONDS + 20))
    while [ $SECONDS -lt $end ] && [ ! -L "$M/leak.md" ]; do sleep 0.1; done
    id=$(memory_id "$st" /docs/b.md)
    mem_req api POST "/v1/memory_stores/$st/memories/$id" '{"content":"escaped?\n"}'
    rl_runner_wait 40
    rl_verdict
    t_check symlinks.exit_status [ "$RL_RUNNER_RC" = 0 ]
    t_check symlinks.scenario [ "$RL_VERDICT" = passed ]
    t_check symlinks.nothing_written_outside all [ ! -e "$O/b.md" ] -- \
        [ "$(find "$O" -mindepth 1 | wc -l)" = 1 ]
    t_check symlinks.outside_kept [ "$(cat "$O/keep.txt")" = sentinel ]
    t_check symlinks.secret_not_uploaded [ "$(content "$st" /leak.md)" = "<none>|" ]
    t_check symlinks.remote_kept [ "$(content "$st" /docs/b.md)" = $'escaped?\n|' ]
    t_check symlinks.folder_removed [ ! -e "$M" ]
}

test_sigterm_flush() {
    local st W M end
    env_and_agent sigterm
    st=$(new_store flushed)
    put "$st" /a.md $'alpha\n'
    W=$RL_DIR/sigterm/workdir
    M=$RL_DIR/sigterm/mnt/notes
    mkdir -p "$W"
    rl_req api POST /_emulator/v1/scenarios "$(jq -n --arg M "$M" '
      {name: "memory-sigterm",
       agent: {tools: [{type: "agent_toolset_20260401",
                        default_config: {enabled: true,
                                         permission_policy: {type: "always_allow"}}}]},
       turns: [{user: "write then wait",
                steps: [{tool: "bash",
                         input: {command: ("printf \"unsaved\\n\" > \"" + $M + "/late.md\"; sleep 60")},
                         expect: {is_error: true}},
                        {message: "done"}],
                end: "end_turn"}]}')"
    session "$AGENT" "$(jq -cn --arg s "$st" --arg m "$M" \
        '[{type: "memory_store", memory_store_id: $s, mount_path: $m}]')" memory-sigterm || {
        t_fail sigterm_flush "session not created: $(cat "$RL_DIR/body")"
        return
    }
    rl_claim || {
        t_fail sigterm_flush "no work item"
        return
    }
    rl_runner_start "$W" "$RL_DIR/sigterm.log"
    end=$((SECONDS + 20))
    while [ $SECONDS -lt $end ] && [ ! -e "$M/late.md" ]; do sleep 0.1; done
    sleep 0.3
    kill -TERM "$RL_RUNNER_PID"
    rl_runner_wait 35
    t_check sigterm_flush.exit_status [ "$RL_RUNNER_RC" = 0 ]
    t_check sigterm_flush.flushed [ "$(content "$st" /late.md)" = $'unsaved\n|' ]
    t_check sigterm_flush.folder_removed [ ! -e "$M" ]
    t_check sigterm_flush.logged grep -q 'work item force-stopped' "$RL_DIR/sigterm.log"
}

test_tool_user() {
    local st base M
    if [ "$(id -u)" != 0 ]; then
        t_skip tool_user "needs root to switch to uid 65534"
        return
    fi
    env_and_agent tooluser
    st=$(new_store owned)
    put "$st" /a.md $'alpha\n'
    base=$RL_DIR/tooluser
    M=$base/mnt/notes
    mkdir -p "$base/workdir" "$base/mnt"
    chmod 711 "$RL_DIR" "$base"
    chown 65534:65534 "$base/workdir" "$base/mnt"
    rl_req api POST /_emulator/v1/scenarios "$(jq -n --arg M "$M" '
      {name: "memory-tooluser",
       agent: {tools: [{type: "agent_toolset_20260401",
                        default_config: {enabled: true,
                                         permission_policy: {type: "always_allow"}}}]},
       turns: [{user: "whose files",
                steps: [{tool: "bash", input: {command: ("stat -c %u \"" + $M + "\" \"" + $M + "/a.md\"")},
                         expect: {is_error: false, text: "65534\n65534"}},
                        {tool: "write", input: {file_path: ($M + "/mine.md"), content: "tool user\n"},
                         expect: {is_error: false}},
                        {message: "done"}],
                end: "end_turn"}]}')"
    session "$AGENT" "$(jq -cn --arg s "$st" --arg m "$M" \
        '[{type: "memory_store", memory_store_id: $s, mount_path: $m}]')" memory-tooluser || {
        t_fail tool_user "session not created: $(cat "$RL_DIR/body")"
        return
    }
    rl_claim || {
        t_fail tool_user "no work item"
        return
    }
    export RUNCELL_TOOL_UID=65534 RUNCELL_TOOL_GID=65534
    rl_runner_start "$base/workdir" "$RL_DIR/tooluser.log"
    unset RUNCELL_TOOL_UID RUNCELL_TOOL_GID
    rl_runner_wait 40
    rl_verdict
    t_check tool_user.exit_status [ "$RL_RUNNER_RC" = 0 ]
    t_check tool_user.owned_by_tool_user [ "$RL_VERDICT" = passed ]
    t_check tool_user.pushed [ "$(content "$st" /mine.md)" = $'tool user\n|' ]
    t_check tool_user.folder_removed [ ! -e "$M" ]
}

# fail_case NAME RESOURCES [ENVKEY-ONLY]: a session whose memory cannot be mounted.
fail_case() {
    local name=$1 res=$2 envkey=${3-} seq0
    env_and_agent "$name"
    session "$AGENT" "$res" || {
        t_fail "$name" "session not created: $(cat "$RL_DIR/body")"
        return 1
    }
    seq0=$(last_seq)
    rl_claim || {
        t_fail "$name" "no work item"
        return 1
    }
    if [ -n "$envkey" ]; then
        (
            export ANTHROPIC_BASE_URL=$RL_B ANTHROPIC_ENVIRONMENT_ID=$RL_ENV \
                ANTHROPIC_WORK_ID=$RL_WID ANTHROPIC_SESSION_ID=$RL_SID \
                RUNCELL_WORKDIR=$RL_DIR/$name/workdir
            mkdir -p "$RUNCELL_WORKDIR"
            ANTHROPIC_ENVIRONMENT_KEY=$(sed -n 's/^Authorization: Bearer //p' "$RL_DIR/cred.envkey")
            export ANTHROPIC_ENVIRONMENT_KEY
            exec "$RL_RUNNER"
        ) >"$RL_DIR/$name.log" 2>&1 &
        RL_RUNNER_PID=$!
    else
        rl_runner_start "$RL_DIR/$name/workdir" "$RL_DIR/$name.log"
    fi
    rl_runner_wait 30
    requests_since "$seq0"
    t_check "$name.exit_status" [ "$RL_RUNNER_RC" = 1 ]
    t_check "$name.logged" grep -q 'the work item fails' "$RL_DIR/$name.log"
    t_check "$name.stopped" [ "$(mq '[.[] | select(.path | endswith("/stop"))] | length')" -ge 1 ]
    t_check "$name.no_stream" [ "$(mq '[.[] | select(.path | endswith("/events/stream"))] | length')" = 0 ]
}

test_preexisting() {
    local st dir=$RL_DIR/pre/mnt/notes
    mkdir -p "$dir"
    echo "leftover" >"$dir/keep.txt"
    env_and_agent pre-store
    st=$(new_store pre)
    put "$st" /a.md 'a'
    fail_case preexisting "$(jq -cn --arg s "$st" --arg m "$dir" \
        '[{type: "memory_store", memory_store_id: $s, mount_path: $m}]')" || return
    t_check preexisting.folder_untouched all [ "$(cat "$dir/keep.txt")" = leftover ] -- \
        [ "$(find "$dir" -mindepth 1 | wc -l)" = 1 ]
    t_check preexisting.no_memory_calls [ "$(mq '[.[] | select(.path | contains("/memories"))] | length')" = 0 ]
}

test_bad_mount_path() {
    local st
    env_and_agent bad-mount
    st=$(new_store bad)
    fail_case bad_mount_path "$(jq -cn --arg s "$st" --arg m "$RL_DIR/bad/x/../y" \
        '[{type: "memory_store", memory_store_id: $s, mount_path: $m}]')" || return
    t_check bad_mount_path.nothing_created [ ! -e "$RL_DIR/bad" ]
}

test_no_token() {
    local st
    env_and_agent no-token
    st=$(new_store tokenless)
    fail_case no_token "$(jq -cn --arg s "$st" --arg m "$RL_DIR/notoken/mnt" \
        '[{type: "memory_store", memory_store_id: $s, mount_path: $m}]')" envkey || return
    t_check no_token.no_memory_calls [ "$(mq '[.[] | select(.path | contains("/memories"))] | length')" = 0 ]
    t_check no_token.nothing_created [ ! -e "$RL_DIR/notoken" ]
}

broker_scenario() {
    jq -n --arg M "$1" '
      {name: "memory-broker",
       agent: {tools: [{type: "agent_toolset_20260401",
                        default_config: {enabled: true,
                                         permission_policy: {type: "always_allow"}}}]},
       turns: [{user: "use your memory",
                steps: [
         {tool: "bash", input: {command: ("cat \"" + $M + "/a.md\"")},
          expect: {is_error: false, text: "alpha"}},
         {tool: "write", input: {file_path: ($M + "/via-broker.md"), content: "through the channel\n"},
          expect: {is_error: false}},
         {message: "done"}],
                end: "end_turn"}]}'
}

test_broker() {
    local st other M W dir=$RL_DIR/broker code
    if [ ! -x "$APICHAN" ]; then
        t_skip broker "$APICHAN not built"
        return
    fi
    env_and_agent broker
    st=$(new_store via-broker)
    other=$(new_store not-attached)
    put "$st" /a.md $'alpha\n'
    W=$dir/workdir
    M=$dir/mnt/notes
    mkdir -p "$W"
    rl_req api POST /_emulator/v1/scenarios "$(broker_scenario "$M")"
    session "$AGENT" "$(jq -cn --arg s "$st" --arg m "$M" \
        '[{type: "memory_store", memory_store_id: $s, mount_path: $m}]')" memory-broker || {
        t_fail broker "session not created: $(cat "$RL_DIR/body")"
        return
    }
    rl_claim || {
        t_fail broker "no work item"
        return
    }
    (
        read -r ANTHROPIC_WORK_SECRET <"$RL_DIR/secret"
        export ANTHROPIC_WORK_SECRET
        exec "$APICHAN" --socket "$dir/api.sock" --allowed-uid "$(id -u)" --base-url "$RL_B" \
            --environment-id "$RL_ENV" --work-id "$RL_WID" --session-id "$RL_SID" \
            --audit-file "$dir/audit"
    ) >"$dir/channel.out" 2>>"$dir/channel.log" &
    CH_PID=$!
    for _ in $(seq 100); do
        grep -q '^ready' "$dir/channel.out" 2>/dev/null && break
        sleep 0.05
    done
    (
        unset ANTHROPIC_WORK_SECRET ANTHROPIC_ENVIRONMENT_KEY ANTHROPIC_BASE_URL
        export ANTHROPIC_ENVIRONMENT_ID=$RL_ENV ANTHROPIC_WORK_ID=$RL_WID \
            ANTHROPIC_SESSION_ID=$RL_SID RUNCELL_API_SOCKET=$dir/api.sock RUNCELL_WORKDIR=$W \
            RUNCELL_MAX_IDLE_MS=1000
        exec "$RL_RUNNER"
    ) >"$dir/runner.log" 2>&1 &
    RL_RUNNER_PID=$!
    rl_runner_wait 40
    t_check broker.exit_status [ "$RL_RUNNER_RC" = 0 ]
    t_check broker.pushed [ "$(content "$st" /via-broker.md)" = $'through the channel\n|' ]
    t_check broker.folder_removed [ ! -e "$M" ]
    code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$dir/api.sock" \
        -H "anthropic-beta: $MBETA" "http://api/v1/memory_stores/$other/memories?view=basic")
    t_check broker.other_store_refused [ "$code" = 403 ]
    code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$dir/api.sock" \
        -H "anthropic-beta: $MBETA" "http://api/v1/memory_stores/$st/memories?view=basic")
    # Forwarded (the emulator answers 401: the item is stopped, its token revoked), not 403.
    t_check broker.own_store_forwarded all [ "$code" != 403 ] -- [ "$code" != 000 ]
    ch_stop
}

# Skip when the emulator has no memory endpoints (protocol 16.2.7 allows a 404).
mem_req api POST /v1/memory_stores '{"name":"probe"}'
if [ "$RL_ST" != 200 ]; then
    t_skip all "the emulator has no memory store endpoints (status $RL_ST)"
    exit 0
fi

test_sync
test_preexisting
test_bad_mount_path
test_no_token
test_symlinks
test_sigterm_flush
test_tool_user
test_broker
t_done
